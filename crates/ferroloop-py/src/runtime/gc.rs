//! GC traversal that composes.
//!
//! Every pyclass holding Python objects takes part in the cyclic GC, and
//! most of them hold those objects inside enums, options, queues and boxes.
//! [`Traverse`] is implemented once for each container shape, so a type's
//! `__traverse__` names its fields (or calls `traverse` on its state) instead
//! of matching every variant by hand; a new variant that holds an object and
//! forgets to visit it no longer compiles silently, because the variant's
//! payload must itself be `Traverse`.

use std::collections::VecDeque;

use pyo3::{Py, PyTraverseError, PyVisit};

pub(crate) trait Traverse {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
}

impl<T> Traverse for Py<T> {
    #[inline]
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self)
    }
}

impl<T: Traverse> Traverse for Option<T> {
    #[inline]
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Some(v) => v.traverse(visit),
            None => Ok(()),
        }
    }
}

impl<T: Traverse + ?Sized> Traverse for &T {
    #[inline]
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        (**self).traverse(visit)
    }
}

impl<T: Traverse + ?Sized> Traverse for Box<T> {
    #[inline]
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        (**self).traverse(visit)
    }
}

impl<T: Traverse> Traverse for [T] {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.iter().try_for_each(|v| v.traverse(visit))
    }
}

impl<T: Traverse> Traverse for Vec<T> {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.as_slice().traverse(visit)
    }
}

impl<T: Traverse> Traverse for VecDeque<T> {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.iter().try_for_each(|v| v.traverse(visit))
    }
}

impl<A: Traverse, B: Traverse> Traverse for (A, B) {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.0.traverse(visit)?;
        self.1.traverse(visit)
    }
}

/// `traverse!(visit; a, b, c)`: visit each field, stopping at the first
/// error (the shape every `__traverse__` has).
macro_rules! traverse {
    ($visit:expr; $($field:expr),+ $(,)?) => {{
        $( $crate::runtime::gc::Traverse::traverse(&$field, $visit)?; )+
    }};
}
pub(crate) use traverse;

/// Visit what `obj` itself references, through its type's `tp_traverse`:
/// how an owner reports the references of an object it alone holds and has
/// untracked (see `aio::task::OwnedContext`), as if they were its own.
///
/// # Safety
/// `obj` is a live object whose type has `tp_traverse`, held by the caller
/// for the duration; called from within a `tp_traverse` (under the GIL).
pub(crate) unsafe fn traverse_contents(obj: *mut pyo3::ffi::PyObject, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
    struct Relay<'v, 'a> {
        visit: &'v PyVisit<'a>,
        err: Option<PyTraverseError>,
    }
    unsafe extern "C" fn relay(o: *mut pyo3::ffi::PyObject, arg: *mut std::ffi::c_void) -> std::ffi::c_int {
        // SAFETY: `arg` is the Relay below, alive for the tp_traverse call;
        // `o` is a live object the traversed object references; wrapping it
        // without a new reference and never dropping it leaves its count as
        // it was.
        unsafe {
            let r = &mut *arg.cast::<Relay<'_, '_>>();
            let py = pyo3::Python::assume_attached();
            let o = std::mem::ManuallyDrop::new(pyo3::Bound::<pyo3::PyAny>::from_owned_ptr_or_opt(py, o));
            match r.visit.call(o.as_ref().map(|b| b.as_unbound())) {
                Ok(()) => 0,
                Err(e) => {
                    r.err = Some(e);
                    1
                }
            }
        }
    }
    // SAFETY: the caller's contract; tp_traverse of the object's own type.
    unsafe {
        let Some(tp_traverse) = (*pyo3::ffi::Py_TYPE(obj)).tp_traverse else {
            return Ok(());
        };
        let mut r = Relay { visit, err: None };
        if tp_traverse(obj, relay, (&mut r as *mut Relay<'_, '_>).cast()) != 0 {
            if let Some(e) = r.err.take() {
                return Err(e);
            }
        }
    }
    Ok(())
}
