//! Small helpers shared by the pyclasses.

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::prelude::*;

/// Run `f` with `ctx` (a `contextvars.Context`) entered, like
/// `ctx.run(...)` but without building an argument tuple.
#[inline]
pub(crate) fn run_in_context<R>(
    py: Python<'_>,
    ctx: Option<&Py<PyAny>>,
    f: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    let Some(ctx) = ctx else { return f() };
    // SAFETY: `ctx` is a live object (we hold a reference); PyContext_Enter
    // type-checks it and sets an exception on failure (e.g. already entered).
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let r = f();
    // SAFETY: the context entered above is still the current one unless the
    // callback broke the nesting, in which case Exit reports an error.
    if unsafe { ffi::PyContext_Exit(ctx.as_ptr()) } < 0 {
        let exit_err = PyErr::fetch(py);
        return match r {
            Ok(_) => Err(exit_err),
            Err(e) => Err(e),
        };
    }
    r
}

/// Call `cb(*args)` in `ctx`. A `ctx` that is not a real Context is used the
/// way asyncio's Handle uses it: `ctx.run(cb, *args)`.
pub(crate) fn call_in_context(
    py: Python<'_>,
    ctx: Option<&Py<PyAny>>,
    cb: &Bound<'_, PyAny>,
    args: &Bound<'_, pyo3::types::PyTuple>,
) -> PyResult<()> {
    if let Some(c) = ctx {
        // SAFETY: PyContext_CheckExact only reads the type pointer.
        if unsafe { ffi::PyContext_CheckExact(c.as_ptr()) } == 0 {
            let mut full = vec![cb.clone()];
            full.extend(args.iter());
            c.bind(py).call_method1("run", pyo3::types::PyTuple::new(py, full)?)?;
            return Ok(());
        }
    }
    run_in_context(py, ctx, || cb.call1(args).map(drop))
}

/// A fresh copy of the current context (`contextvars.copy_context()`).
#[inline]
pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an
    // exception set; from_owned_ptr_or_err handles both.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()).map(Bound::unbind) }
}

/// Exceptions that must escape callbacks and stop the loop, as in asyncio.
#[inline]
pub(crate) fn is_fatal(py: Python<'_>, e: &PyErr) -> bool {
    e.is_instance_of::<PySystemExit>(py) || e.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// `loop.call_exception_handler(context)`; errors from the handler other
/// than SystemExit/KeyboardInterrupt are reported as unraisable.
pub(crate) fn report(loop_: &Bound<'_, PyAny>, context: Bound<'_, pyo3::types::PyDict>) -> PyResult<()> {
    match loop_.call_method1("call_exception_handler", (context,)) {
        Ok(_) => Ok(()),
        Err(e) if is_fatal(loop_.py(), &e) => Err(e),
        Err(e) => {
            write_unraisable(loop_.py(), e, Some(loop_));
            Ok(())
        }
    }
}

/// The stack at the Python caller (debug mode's `_source_traceback`): called
/// from native code, extract_stack() starts at the frame that called
/// call_soon or created the future.
pub(crate) fn source_traceback(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    Ok(Some(super::imports::imports(py).extract_stack.call0(py)?))
}

/// Report an error that cannot be raised anywhere (like a failing exception
/// handler) through `sys.unraisablehook`.
pub(crate) fn write_unraisable(py: Python<'_>, e: PyErr, obj: Option<&Bound<'_, PyAny>>) {
    e.write_unraisable(py, obj);
}

/// The exception object of `e`, with the traceback collected while it
/// propagated attached as `__traceback__` (PyErr::value leaves it off on
/// 3.11, which would drop the frames between raise and fetch).
#[inline]
pub(crate) fn exc_value(py: Python<'_>, e: PyErr) -> Bound<'_, PyAny> {
    e.into_value(py).into_bound(py).into_any()
}

/// An OS error as Python's `socket` module would raise it:
/// `OSError(errno, strerror)`, which CPython turns into the matching
/// subclass (ConnectionResetError, BrokenPipeError, ...) with `errno` and
/// `strerror` set. (PyO3's own conversion builds it from a message only.)
pub(crate) fn os_error(e: std::io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a NUL-terminated string
            // that stays valid until the next strerror call on this thread;
            // it is copied out immediately, under the GIL.
            let msg = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }.to_string_lossy().into_owned();
            pyo3::exceptions::PyOSError::new_err((code, msg))
        }
        None => e.into(),
    }
}

/// asyncio's `_FlowControlMixin._set_write_buffer_limits`: `(high, low)`
/// with asyncio's defaults (64 KiB, a quarter of high) and its ValueError.
pub(crate) fn water_marks(high: Option<i64>, low: Option<i64>) -> PyResult<(usize, usize)> {
    let high = high.unwrap_or(match low {
        None => 64 * 1024,
        Some(l) => 4 * l,
    });
    let low = low.unwrap_or(high / 4);
    if !(high >= low && low >= 0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("high ({high}) must be >= low ({low}) must be >= 0")));
    }
    Ok((high as usize, low as usize))
}

/// What asyncio's C Future and Task say when one of their settable
/// attributes is deleted (PyO3's own wording differs).
pub(crate) fn cannot_delete() -> PyErr {
    pyo3::exceptions::PyAttributeError::new_err("cannot delete attribute")
}
