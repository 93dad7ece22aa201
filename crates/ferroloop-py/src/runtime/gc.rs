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
