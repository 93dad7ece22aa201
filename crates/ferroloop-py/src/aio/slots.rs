//! Type slots PyO3 does not generate, filled in once the types exist:
//! `am_send` on the await iterator, and `tp_finalize` (with a dealloc
//! wrapper that calls it) on Future and Task, for the "exception was never
//! retrieved" and "Task was destroyed but it is pending!" logs.

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;

use crate::aio::future::{future_am_await, future_am_send, future_iter_am_send, future_iternext, Future, FutureIter};
use crate::aio::task::Task;
use crate::runtime::registry;

/// The deallocators PyO3 generated, called after the finalizer.
static FUTURE_DEALLOC: OnceLock<Option<ffi::destructor>> = OnceLock::new();
static TASK_DEALLOC: OnceLock<Option<ffi::destructor>> = OnceLock::new();

fn run_finalizer(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(t) = obj.cast::<Task>() {
        Task::finalize(t)
    } else if let Ok(f) = obj.cast::<Future>() {
        Future::finalize(f)
    } else {
        Ok(())
    }
}

/// Run `f` where no error can propagate (a finalizer): an exception, or a
/// Rust panic (a bug, but one that must be seen), goes to
/// `sys.unraisablehook` with `obj`.
fn guarded(obj: &Bound<'_, PyAny>, f: impl FnOnce() -> PyResult<()>) {
    let py = obj.py();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => e.write_unraisable(py, Some(obj)),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_owned());
            pyo3::panic::PanicException::new_err(format!("panic in ferroloop finalizer: {msg}")).write_unraisable(py, Some(obj));
        }
    }
}

/// tp_finalize for the exact Future and Task types.
unsafe extern "C" fn finalize(obj: *mut ffi::PyObject) {
    // SAFETY: CPython calls tp_finalize with the GIL held on a live object.
    let py = unsafe { Python::assume_attached() };
    // Like asyncio's WeakSet entry (weak references are cleared before the
    // collector runs finalizers), the task leaves the registry now, even if
    // the finalizer resurrects it.
    registry::remove(obj as usize);
    let saved = PyErr::take(py);
    // SAFETY: `obj` is live for the duration of this call.
    let bound = unsafe { Bound::from_borrowed_ptr(py, obj) };
    guarded(&bound, || run_finalizer(&bound));
    if let Some(e) = saved {
        e.restore(py);
    }
}

/// The panic guard of the finalizer, exercised: a test checks that a
/// panic reaches `sys.unraisablehook` instead of vanishing.
#[pyfunction]
pub(crate) fn _finalizer_guard_selftest(obj: &Bound<'_, PyAny>) {
    guarded(obj, || panic!("self-test"));
}

/// # Safety
/// Called as tp_dealloc: refcount zero, GIL held.
unsafe fn dealloc_with_finalizer(obj: *mut ffi::PyObject, orig: &OnceLock<Option<ffi::destructor>>, registered: bool) {
    // SAFETY: the tp_dealloc contract holds (see above). Running the
    // finalizer first is what CPython's own subtype_dealloc does; a
    // resurrected object must not be freed.
    unsafe {
        if ffi::PyObject_CallFinalizerFromDealloc(obj) < 0 {
            return;
        }
        if registered {
            // The registry entry goes while the object is still intact, and
            // only once the finalizer did not resurrect it.
            registry::remove(obj as usize);
        }
        if let Some(Some(f)) = orig.get() {
            f(obj);
        }
    }
}

unsafe extern "C" fn future_dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: forwarded tp_dealloc contract.
    unsafe { dealloc_with_finalizer(obj, &FUTURE_DEALLOC, false) }
}

unsafe extern "C" fn task_dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: forwarded tp_dealloc contract.
    unsafe { dealloc_with_finalizer(obj, &TASK_DEALLOC, true) }
}

pub(crate) fn patch_types(py: Python<'_>) {
    let fi = FutureIter::type_object_raw(py);
    let fut = Future::type_object_raw(py);
    let task = Task::type_object_raw(py);
    // SAFETY: these are heap types created by PyO3 that nothing has used
    // yet. For heap types tp_as_async points at the type's own
    // PyAsyncMethods, so writing am_send there is allowed; PyType_Modified
    // invalidates any cached lookups.
    unsafe {
        if !(*fi).tp_as_async.is_null() {
            (*(*fi).tp_as_async).am_send = Some(future_iter_am_send);
        }
        // `await fut` iterates the future itself (future.rs). The
        // `__await__` wrapper already in each type's dict keeps calling the
        // FutureIter-returning slot PyO3 installed, and Python subclasses
        // take their slots from that wrapper, so only `await` on exact
        // Future/Task objects changes.
        for ty in [fut, task] {
            if !(*ty).tp_as_async.is_null() {
                (*(*ty).tp_as_async).am_await = Some(future_am_await);
                (*(*ty).tp_as_async).am_send = Some(future_am_send);
                (*ty).tp_iternext = Some(future_iternext);
            }
        }
        FUTURE_DEALLOC.get_or_init(|| (*fut).tp_dealloc);
        TASK_DEALLOC.get_or_init(|| (*task).tp_dealloc);
        (*fut).tp_finalize = Some(finalize);
        (*task).tp_finalize = Some(finalize);
        (*fut).tp_dealloc = Some(future_dealloc);
        (*task).tp_dealloc = Some(task_dealloc);
        ffi::PyType_Modified(fi);
        ffi::PyType_Modified(fut);
        ffi::PyType_Modified(task);
    }
}
