//! Shared context snapshots.
//!
//! asyncio gives every `call_soon`/`call_later` handle and every implicit
//! `add_done_callback` its own `contextvars.copy_context()`. Each copy is a
//! GC-tracked object that lives until its callback runs, and with many
//! pending callbacks the cyclic collector's work grows with them.
//!
//! A copy's contents are an immutable HAMT: consecutive copies taken while
//! no context variable changed point at the same HAMT. So a loop keeps its
//! last snapshot and hands it out again while the current context's HAMT is
//! the same object. A shared snapshot is never entered: when its callback
//! runs it gets a private copy (`PyContext_Copy`, short-lived), so
//! callbacks stay isolated from one another exactly as with asyncio.
//!
//! The HAMT pointer is not public API; it is read through the layout of
//! CPython's `PyContext` (unchanged since 3.7). [`verify_layout`] checks
//! the layout against real behaviour at import; if it does not hold,
//! sharing stays off and every handle gets its own copy, as asyncio does.
//!
//! Comparing needs the current context's HAMT. Copying the context to read
//! it (an allocation and a free per callback) is avoided by reading the
//! thread state's `context` field, at the offset each supported version's
//! headers give; [`verify_layout`] checks that offset by entering contexts
//! and seeing the field follow, and without it the copy is taken.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::runtime::util::copy_context;

/// CPython's `struct _pycontextobject` (Include/internal/pycore_context.h).
#[repr(C)]
struct PyContextLayout {
    ob_base: ffi::PyObject,
    ctx_prev: *mut ffi::PyObject,
    ctx_vars: *mut ffi::PyObject,
    ctx_weakreflist: *mut ffi::PyObject,
    ctx_entered: std::os::raw::c_int,
}

static SHARING: AtomicBool = AtomicBool::new(false);

/// `offsetof(PyThreadState, context)` once verified, else 0.
static TSTATE_CONTEXT: AtomicUsize = AtomicUsize::new(0);

/// `offsetof(PyThreadState, context)` in Include/cpython/pystate.h of each
/// supported minor version, computed on x86-64 (the fields before it are
/// pointers and ints, the same on any LP64 platform; the import check
/// guards the rest). Another version copies the context instead.
fn tstate_context_offset(minor: u8) -> Option<usize> {
    match minor {
        11 => Some(224),
        12 | 13 => Some(208),
        _ => None,
    }
}

/// The word at `off` bytes into the current thread state.
fn tstate_word(off: usize) -> *mut ffi::PyObject {
    // SAFETY: we hold the GIL, so the thread state is live; `off` is the
    // offset of a pointer field inside PyThreadState for this version
    // (only ever a value from tstate_context_offset, below its size), so
    // the read stays inside the struct. The word is not dereferenced here.
    unsafe {
        let ts = ffi::PyThreadState_Get() as *const u8;
        *(ts.add(off) as *const *mut ffi::PyObject)
    }
}

/// The HAMT of the thread's current context, without copying it; None when
/// it cannot be read (no verified offset, or no context yet).
fn current_vars() -> Option<*mut ffi::PyObject> {
    let off = TSTATE_CONTEXT.load(Ordering::Relaxed);
    if off == 0 {
        return None;
    }
    let ctx = tstate_word(off);
    if ctx.is_null() {
        return None;
    }
    // SAFETY: verify_layout saw this field hold the entered Context, and
    // CPython only ever stores an exact Context there (PyContext_Enter,
    // context_get), whose layout is verified too.
    Some(unsafe { (*(ctx as *const PyContextLayout)).ctx_vars })
}

/// Does the field at `off` follow PyContext_Enter/Exit? Only compares
/// the word with known pointers, never dereferences it.
fn verify_tstate_context(py: Python<'_>, off: usize) -> PyResult<bool> {
    let new_ctx = || -> PyResult<Bound<'_, PyAny>> { py.import("contextvars")?.getattr("Context")?.call0() };
    let (a, b) = (new_ctx()?, new_ctx()?);
    let mut ok = true;
    for c in [&a, &b] {
        // SAFETY: `c` is a fresh, never-entered Context.
        if unsafe { ffi::PyContext_Enter(c.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
        ok &= tstate_word(off) == c.as_ptr();
        // SAFETY: `c` is the context entered just above.
        if unsafe { ffi::PyContext_Exit(c.as_ptr()) } != 0 {
            return Err(PyErr::fetch(py));
        }
        ok &= tstate_word(off) != c.as_ptr();
    }
    Ok(ok)
}

fn vars_of(ctx: &Bound<'_, PyAny>) -> *mut ffi::PyObject {
    // SAFETY: only called on exact contextvars.Context objects (checked by
    // the callers through PyContext_CheckExact or by construction), whose
    // layout verify_layout() confirmed before SHARING was switched on.
    unsafe { (*(ctx.as_ptr() as *const PyContextLayout)).ctx_vars }
}

fn is_context(ctx: &Bound<'_, PyAny>) -> bool {
    // SAFETY: PyContext_CheckExact only reads the type pointer.
    unsafe { ffi::PyContext_CheckExact(ctx.as_ptr()) != 0 }
}

/// Check, with real contexts, that the assumed layout tracks their contents.
pub(crate) fn verify_layout(py: Python<'_>) -> PyResult<()> {
    let check = || -> PyResult<bool> {
        let a = copy_context(py)?.into_bound(py);
        let b = copy_context(py)?.into_bound(py);
        if !is_context(&a) || vars_of(&a).is_null() || vars_of(&a) != vars_of(&b) {
            return Ok(false);
        }
        let cv = py.import("contextvars")?.getattr("ContextVar")?.call1(("ferroloop-layout-probe",))?;
        a.call_method1("run", (cv.getattr("set")?, 1))?;
        let c = copy_context(py)?.into_bound(py);
        Ok(vars_of(&a) != vars_of(&b) && vars_of(&b) == vars_of(&c) && !vars_of(&a).is_null())
    };
    let sharing = check()?;
    SHARING.store(sharing, Ordering::Relaxed);
    let minor = py.version_info().minor;
    if let Some(off) = tstate_context_offset(minor).filter(|_| sharing) {
        if verify_tstate_context(py, off)? {
            TSTATE_CONTEXT.store(off, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Whether the current context is read in place (for the tests).
#[pyfunction]
pub(crate) fn _context_read_in_place() -> bool {
    TSTATE_CONTEXT.load(Ordering::Relaxed) != 0
}

pub(crate) fn sharing_enabled() -> bool {
    SHARING.load(Ordering::Relaxed)
}

/// A snapshot of the current context for a callback: `(context, shared)`.
/// `cache` is the loop's last snapshot.
pub(crate) fn snapshot(py: Python<'_>, cache: &crate::runtime::gil::GilCell<Option<Py<PyAny>>>) -> PyResult<(Py<PyAny>, bool)> {
    if let Some(vars) = current_vars() {
        let c = cache.borrow();
        if let Some(s) = c.as_ref().filter(|s| vars_of(s.bind(py)) == vars) {
            return Ok((s.clone_ref(py), true));
        }
    }
    let cur = copy_context(py)?;
    if !sharing_enabled() {
        return Ok((cur, false));
    }
    let reuse = {
        let c = cache.borrow();
        c.as_ref().filter(|s| vars_of(s.bind(py)) == vars_of(cur.bind(py))).map(|s| s.clone_ref(py))
    };
    if let Some(s) = reuse {
        // `cur` dies right here: allocated and freed, it never counts
        // towards a collection.
        return Ok((s, true));
    }
    let old = cache.borrow_mut().replace(cur.clone_ref(py));
    drop(old);
    Ok((cur, true))
}

/// Run `f` inside `ctx` unless `ctx` is already entered (then `f` runs
/// where it is: the context is on the current stack, typically because the
/// caller already runs in it). Falls back to running `f` directly when the
/// layout check failed.
pub(crate) fn run_in_unless_entered<R>(
    py: Python<'_>,
    ctx: Option<&Py<PyAny>>,
    f: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    match ctx {
        Some(c) if sharing_enabled() && is_context(c.bind(py)) => {
            // SAFETY: exact Context with the verified layout (as vars_of).
            let entered = unsafe { (*(c.as_ptr() as *const PyContextLayout)).ctx_entered } != 0;
            if entered {
                f()
            } else {
                crate::runtime::util::run_in_context(py, Some(c), f)
            }
        }
        _ => f(),
    }
}

/// A private copy of a shared snapshot, for one callback to run in.
pub(crate) fn private_copy(py: Python<'_>, shared: &Py<PyAny>) -> PyResult<Py<PyAny>> {
    // SAFETY: `shared` is a live Context; PyContext_Copy returns a new
    // reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_Copy(shared.as_ptr())).map(Bound::unbind) }
}

/// `fn(*args)` inside `ctx`, unless `ctx` is already entered (then where it
/// is). For Python-level transport code that calls a protocol from outside
/// the transport's context (python/ferroloop/_loop.py's SSLProtocol).
#[pyfunction]
#[pyo3(signature = (ctx, r#fn, *args))]
pub(crate) fn _run_in_context(ctx: Py<PyAny>, r#fn: Bound<'_, PyAny>, args: Bound<'_, pyo3::types::PyTuple>) -> PyResult<Py<PyAny>> {
    let py = r#fn.py();
    run_in_unless_entered(py, Some(&ctx), || r#fn.call1(args).map(Bound::unbind))
}
