//! PyO3 bindings of ferroloop: the `ferroloop._ferroloop` extension module.
//!
//! * [`loop_core`] — `LoopCore`, the Rust half of `ferroloop.Loop`: ready
//!   queue, timers, reactor polling, `call_soon` & co, `create_task`.
//! * [`handle`] — `Handle`/`TimerHandle`.
//! * [`future`] — native `Future` and its await iterator (with `am_send`).
//! * [`task`] — native `Task`.
//!
//! Two type slots PyO3 does not generate are filled here after the types
//! are created: `am_send` on the await iterator, and `tp_finalize` (with a
//! dealloc wrapper that calls it) on Future and Task, for the "exception was
//! never retrieved" and "Task was destroyed but it is pending!" logs.

mod contexts;
mod datagram;
mod future;
mod gil;
mod handle;
mod imports;
mod loop_core;
mod pyver;
mod recv;
mod registry;
mod sockops;
mod task;
mod tls;
mod transport;
mod util;
mod wbuf;

use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::type_object::PyTypeInfo;

use future::{Future, FutureIter};
use task::Task;

/// Stand-in classes reported by `__class__`: see `Future.__class__`.
pub(crate) struct Shadows {
    pub future: Py<PyAny>,
    pub task: Py<PyAny>,
    pub handle: Py<PyAny>,
    pub timer_handle: Py<PyAny>,
}

pub(crate) fn shadow_classes(py: Python<'_>) -> PyResult<&'static Shadows> {
    imports::imports(py).shadows.get_or_try_init(py, || {
        let m = py.import("ferroloop._shadow")?;
        Ok(Shadows {
            future: m.getattr("Future")?.unbind(),
            task: m.getattr("Task")?.unbind(),
            handle: m.getattr("Handle")?.unbind(),
            timer_handle: m.getattr("TimerHandle")?.unbind(),
        })
    })
}

static FUTURE_DEALLOC: OnceLock<usize> = OnceLock::new();
static TASK_DEALLOC: OnceLock<usize> = OnceLock::new();

pub(crate) fn run_finalizer(obj: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(t) = obj.cast::<Task>() {
        Task::finalize(t)
    } else if let Ok(f) = obj.cast::<Future>() {
        Future::finalize(f)
    } else {
        Ok(())
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
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_finalizer(&bound)));
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => e.write_unraisable(py, Some(&bound)),
        Err(_) => {}
    }
    if let Some(e) = saved {
        e.restore(py);
    }
}

unsafe fn dealloc_with_finalizer(obj: *mut ffi::PyObject, orig: &OnceLock<usize>) {
    // SAFETY: called as tp_dealloc: refcount is zero, GIL held. Running the
    // finalizer first is what CPython's own subtype_dealloc does; a
    // resurrected object must not be freed.
    unsafe {
        if ffi::PyObject_CallFinalizerFromDealloc(obj) < 0 {
            return;
        }
        let raw = *orig.get().expect("set at init");
        if raw != 0 {
            let f = std::mem::transmute::<usize, unsafe extern "C" fn(*mut ffi::PyObject)>(raw);
            f(obj);
        }
    }
}

unsafe extern "C" fn future_dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: forwarded tp_dealloc contract.
    unsafe { dealloc_with_finalizer(obj, &FUTURE_DEALLOC) }
}

unsafe extern "C" fn task_dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: forwarded tp_dealloc contract. The registry entry goes first,
    // while the object is still intact, and only once the finalizer did not
    // resurrect it.
    unsafe {
        if ffi::PyObject_CallFinalizerFromDealloc(obj) < 0 {
            return;
        }
        registry::remove(obj as usize);
        let raw = *TASK_DEALLOC.get().expect("set at init");
        if raw != 0 {
            let f = std::mem::transmute::<usize, unsafe extern "C" fn(*mut ffi::PyObject)>(raw);
            f(obj);
        }
    }
}

fn patch_types(py: Python<'_>) {
    let fi = FutureIter::type_object_raw(py);
    let fut = Future::type_object_raw(py);
    let task = Task::type_object_raw(py);
    // SAFETY: these are heap types created by PyO3 that nothing has used
    // yet. For heap types tp_as_async points at the type's own
    // PyAsyncMethods, so writing am_send there is allowed; PyType_Modified
    // invalidates any cached lookups.
    unsafe {
        if !(*fi).tp_as_async.is_null() {
            (*(*fi).tp_as_async).am_send = Some(future::future_iter_am_send);
        }
        FUTURE_DEALLOC.get_or_init(|| (*fut).tp_dealloc.map_or(0, |f| f as usize));
        TASK_DEALLOC.get_or_init(|| (*task).tp_dealloc.map_or(0, |f| f as usize));
        (*fut).tp_finalize = Some(finalize);
        (*task).tp_finalize = Some(finalize);
        (*fut).tp_dealloc = Some(future_dealloc);
        (*task).tp_dealloc = Some(task_dealloc);
        ffi::PyType_Modified(fi);
        ffi::PyType_Modified(fut);
        ffi::PyType_Modified(task);
    }
}

// Needs the GIL: every GilCell relies on it (gil.rs). On a free-threaded
// interpreter this makes the import re-enable the GIL instead of racing.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    pyver::init(py);
    imports::init(py)?;
    contexts::verify_layout(py)?;
    m.add_class::<loop_core::LoopCore>()?;
    m.add_class::<handle::Handle>()?;
    m.add_class::<handle::TimerHandle>()?;
    m.add_class::<Future>()?;
    m.add_class::<FutureIter>()?;
    m.add_class::<Task>()?;
    m.add_class::<transport::TransportCore>()?;
    m.add_class::<datagram::DatagramCore>()?;
    m.add_function(wrap_pyfunction!(registry::_enable_task_registry, m)?)?;
    m.add_function(wrap_pyfunction!(registry::_live_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(contexts::_run_in_context, m)?)?;
    m.add_function(wrap_pyfunction!(tls::_tls_buffer_updated, m)?)?;
    m.add_function(wrap_pyfunction!(tls::_tls_get_buffer, m)?)?;
    m.add_function(wrap_pyfunction!(tls::_tls_write, m)?)?;
    m.add_function(wrap_pyfunction!(tls::_register_tls_protocol, m)?)?;
    patch_types(py);
    Ok(())
}
