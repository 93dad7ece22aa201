//! `Handle` and `TimerHandle`: what `call_soon` and `call_later` return.
//!
//! They mirror `asyncio.Handle`/`asyncio.TimerHandle`. The loop's ready
//! queue and timer heap hold them directly; running one enters its context
//! and calls the callback, routing any exception (except SystemExit and
//! KeyboardInterrupt) to the loop's exception handler.
//!
//! **Handles the collector need not see.** Most callers drop the handle
//! `call_soon`/`call_later` return, leaving the loop's queue its only owner.
//! Such a handle is untracked by the cyclic GC ([`Handle::untrack_if_sole`]):
//! with a million callbacks pending, a million tracked handles made every
//! collection that reached them walk them all (~0.8 µs of collector work
//! per pending callback on 3.11). Its references still take part in the GC:
//! while the queue is its sole owner the loop's traverse reports them as its
//! own ([`Handle::traverse_owned`]), so a cycle through a pending handle of
//! a dropped loop is still collected. A handle someone else holds is never
//! untracked, and one that gains another owner while untracked (it can only
//! do so while the loop runs it, e.g. through an exception handler's
//! context) is tracked again before the loop lets go of it
//! ([`Handle::retrack_if_shared`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use pyo3::basic::CompareOp;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::runtime::gil::GilCell;
use crate::runtime::imports::imports;
use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::util::{call_in_context, is_fatal};

/// What a handle asks of the loop that made it. The loop is a floor up
/// (`loop_core` holds handles in its queues), so it installs these at
/// module init rather than this module naming it.
pub(crate) struct LoopLink {
    pub debug: fn(&Bound<'_, PyAny>) -> bool,
    /// A scheduled timer was cancelled (asyncio's `_timer_handle_cancelled`).
    pub timer_cancelled: fn(&Bound<'_, PyAny>),
}

/// Untracking is switched on at import once the weak-reference slot of
/// Handle and TimerHandle is found where [`has_weakrefs`] reads it.
static ANY_UNTRACK: AtomicBool = AtomicBool::new(false);

/// Whether `p` has weak references. Reads the slot at the type's
/// `tp_weaklistoffset`.
///
/// # Safety
/// `p` is a live Handle or TimerHandle, read under the GIL.
unsafe fn has_weakrefs(p: *mut ffi::PyObject) -> bool {
    let off = (*ffi::Py_TYPE(p)).tp_weaklistoffset;
    if off <= 0 {
        return true;
    }
    !(*(p.cast::<u8>().offset(off).cast::<*mut ffi::PyObject>())).is_null()
}

/// Check, on real objects, that a handle's weak-reference slot is where
/// [`has_weakrefs`] reads it, and only then allow untracking (otherwise
/// every handle stays tracked, as before).
pub(crate) fn verify_untrack(py: Python<'_>) -> PyResult<()> {
    let weakref = py.import("weakref")?.getattr("ref")?;
    for timer in [false, true] {
        let none = py.None();
        let h = make_handle(py, Handle::new_inner(none.clone_ref(py), PyTuple::empty(py).unbind(), none.clone_ref(py), false, none, None, 0.0), timer)?;
        // SAFETY: `h` is a live Handle/TimerHandle and we hold the GIL.
        let before = unsafe { has_weakrefs(h.as_ptr()) };
        let r = weakref.call1((&h,))?;
        // SAFETY: as above.
        let during = unsafe { has_weakrefs(h.as_ptr()) };
        drop(r);
        // SAFETY: as above.
        let after = unsafe { has_weakrefs(h.as_ptr()) };
        if before || !during || after {
            return Ok(());
        }
    }
    ANY_UNTRACK.store(true, Ordering::Relaxed);
    Ok(())
}

pub(crate) static LOOP_LINK: OnceLock<LoopLink> = OnceLock::new();

fn link() -> &'static LoopLink {
    LOOP_LINK.get().expect("installed by sched::loop_core::init at module import")
}

pub(crate) struct HandleInner {
    pub callback: Option<Py<PyAny>>,
    pub args: Option<Py<PyTuple>>,
    pub context: Option<Py<PyAny>>,
    /// `context` is a snapshot shared with other callbacks (see
    /// contexts.rs): it is copied before the callback runs in it.
    pub ctx_shared: bool,
    pub source_tb: Option<Py<PyAny>>,
    pub loop_: Option<Py<PyAny>>,
    /// In debug mode the repr is kept after cancel() clears the callback.
    pub repr: Option<String>,
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct Handle {
    pub(crate) inner: GilCell<HandleInner>,
    cancelled: AtomicBool,
    /// Deadline for timer handles; NaN for plain handles.
    pub(crate) when: f64,
    pub(crate) scheduled: AtomicBool,
    /// Untracked by the GC; the queue holding it reports its references.
    untracked: AtomicBool,
}

impl Handle {
    pub(crate) fn new_inner(
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        ctx_shared: bool,
        loop_: Py<PyAny>,
        source_tb: Option<Py<PyAny>>,
        when: f64,
    ) -> Handle {
        Handle {
            inner: GilCell::new(HandleInner {
                callback: Some(callback),
                args: Some(args),
                context: Some(context),
                ctx_shared,
                source_tb,
                loop_: Some(loop_),
                repr: None,
            }),
            cancelled: AtomicBool::new(false),
            when,
            scheduled: AtomicBool::new(false),
            untracked: AtomicBool::new(false),
        }
    }

    /// Untrack `h` if the loop's queue (plus `extra` references the caller
    /// itself holds) is all that owns it, and no weak reference could hand
    /// out another owner later. See the module docs.
    pub(crate) fn untrack_if_sole(h: &Py<Handle>, extra: isize) {
        let this = h.get();
        if this.untracked.load(Ordering::Relaxed) || this.is_cancelled() {
            return;
        }
        let p = h.as_ptr();
        // SAFETY: `p` is a live object (we hold `h`); the reference count
        // and the weak-reference slot are read under the GIL, and the slot
        // offset comes from the object's own type.
        unsafe {
            if !ANY_UNTRACK.load(Ordering::Relaxed) || ffi::Py_REFCNT(p) != 1 + extra || has_weakrefs(p) {
                return;
            }
            ffi::PyObject_GC_UnTrack(p.cast());
        }
        this.untracked.store(true, Ordering::Relaxed);
    }

    /// Track `h` again if it is untracked and someone besides the loop
    /// (and `extra` references of the caller) holds it: from now on its own
    /// traverse must report its references. Called wherever the loop lets
    /// go of a handle.
    pub(crate) fn retrack_if_shared(h: &Py<Handle>, extra: isize) {
        let this = h.get();
        if !this.untracked.load(Ordering::Relaxed) {
            return;
        }
        let p = h.as_ptr();
        // SAFETY: `p` is live (we hold `h`) and untracked (our flag, set only
        // by untrack_if_sole and cleared here, says so), so tracking it is
        // allowed; the reference count is read under the GIL.
        unsafe {
            if ffi::Py_REFCNT(p) > 1 + extra {
                if ffi::PyObject_GC_IsTracked(p) == 0 {
                    ffi::PyObject_GC_Track(p.cast());
                }
                this.untracked.store(false, Ordering::Relaxed);
            }
        }
    }

    /// The loop's traverse of a handle it holds: while the queue is its
    /// sole owner (it is untracked, and one reference), the handle's
    /// references are the loop's; otherwise the handle is visited (a
    /// tracked handle reports them itself; an untracked one that gained an
    /// owner reports nothing until it is tracked again, which may delay a
    /// collection but never frees what is still in use).
    pub(crate) fn traverse_owned(h: &Py<Handle>, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let this = h.get();
        // SAFETY: reading the reference count of a live object (the queue
        // holds it) during a traverse, which runs under the GIL.
        if this.untracked.load(Ordering::Relaxed) && unsafe { ffi::Py_REFCNT(h.as_ptr()) } == 1 {
            this.traverse_fields(visit)
        } else {
            h.traverse(visit)
        }
    }

    fn traverse_fields(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(inner) = self.inner.try_borrow() {
            traverse!(visit; inner.callback, inner.args, inner.context, inner.source_tb, inner.loop_);
        }
        Ok(())
    }

    /// The context this handle's callback runs in, made private first if
    /// it is a shared snapshot.
    pub(crate) fn own_context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let (ctx, shared) = {
            let inner = self.inner.borrow();
            (inner.context.as_ref().map(|c| c.clone_ref(py)), inner.ctx_shared)
        };
        match ctx {
            Some(c) if shared => {
                let own = crate::runtime::contexts::private_copy(py, &c)?;
                let old = {
                    let mut inner = self.inner.borrow_mut();
                    inner.ctx_shared = false;
                    inner.context.replace(own.clone_ref(py))
                };
                drop(old);
                Ok(Some(own))
            }
            other => Ok(other),
        }
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Run the callback. Errors other than SystemExit/KeyboardInterrupt are
    /// reported to the loop's exception handler; those two are returned.
    pub(crate) fn run(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.is_cancelled() {
            return Ok(());
        }
        let (cb, args) = {
            let inner = this.inner.borrow();
            match (&inner.callback, &inner.args) {
                (Some(cb), Some(args)) => (cb.clone_ref(py), args.clone_ref(py)),
                _ => return Ok(()),
            }
        };
        let ctx = this.own_context(py)?;
        let r = call_in_context(py, ctx.as_ref(), cb.bind(py), args.bind(py));
        match r {
            Ok(()) => Ok(()),
            Err(e) if is_fatal(py, &e) => Err(e),
            Err(e) => {
                let (loop_, tb) = {
                    let inner = this.inner.borrow();
                    (inner.loop_.as_ref().map(|l| l.clone_ref(py)), inner.source_tb.as_ref().map(|t| t.clone_ref(py)))
                };
                match loop_ {
                    Some(l) => Self::report_failure(slf, l.bind(py), cb, args, e, tb),
                    None => Ok(()),
                }
            }
        }
    }

    /// asyncio's `Handle._run` reporting a callback's exception: "Exception
    /// in callback <source>" with the handle (and its source traceback) to
    /// the loop's exception handler.
    pub(crate) fn report_failure(
        slf: &Bound<'_, Handle>,
        loop_: &Bound<'_, PyAny>,
        cb: Py<PyAny>,
        args: Py<PyTuple>,
        err: PyErr,
        source_tb: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let src = imports(py)
            .format_callback_source
            .call1(py, (cb, args))
            .and_then(|s| s.extract::<String>(py))
            .unwrap_or_else(|_| "<callback>".to_owned());
        let ctxd = PyDict::new(py);
        ctxd.set_item("message", format!("Exception in callback {src}"))?;
        ctxd.set_item("exception", crate::runtime::util::exc_value(py, err))?;
        ctxd.set_item("handle", slf)?;
        if let Some(tb) = source_tb {
            ctxd.set_item("source_traceback", tb)?;
        }
        crate::runtime::util::report(loop_, ctxd)
    }

    /// Cancel without the debug-mode repr (used for replaced I/O handles).
    pub(crate) fn cancel_quiet(slf: &Bound<'_, Handle>) {
        let this = slf.get();
        if this.cancelled.swap(true, Ordering::Relaxed) {
            return;
        }
        let dropped = {
            let mut inner = this.inner.borrow_mut();
            (inner.callback.take(), inner.args.take())
        };
        drop(dropped);
    }

    fn do_cancel(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let loop_ = this.inner.borrow().loop_.as_ref().map(|l| l.clone_ref(py));
        let debug = loop_.as_ref().is_some_and(|l| (link().debug)(l.bind(py)));
        if debug {
            // Keep the repr useful after the callback is dropped.
            let r = Self::repr_string(slf)?;
            this.inner.borrow_mut().repr = Some(r);
        }
        if let Some(l) = &loop_ {
            if this.scheduled.load(Ordering::Relaxed) {
                (link().timer_cancelled)(l.bind(py));
            }
        }
        // Drop the callback outside the borrow: its destructor may run code.
        let dropped = {
            let mut inner = this.inner.borrow_mut();
            (inner.callback.take(), inner.args.take())
        };
        drop(dropped);
        Ok(())
    }

    fn repr_string(slf: &Bound<'_, Handle>) -> PyResult<String> {
        let py = slf.py();
        let this = slf.get();
        if let Some(r) = &this.inner.borrow().repr {
            return Ok(r.clone());
        }
        let mut info: Vec<String> = vec![slf.get_type().name()?.to_string()];
        if this.is_cancelled() {
            info.push("cancelled".into());
        }
        if !this.when.is_nan() {
            info.push(format!("when={}", this.when.into_pyobject(py)?.repr()?));
        }
        let (cb, args, tb) = {
            let inner = this.inner.borrow();
            (
                inner.callback.as_ref().map(|c| c.clone_ref(py)),
                inner.args.as_ref().map(|a| a.clone_ref(py)),
                inner.source_tb.as_ref().map(|t| t.clone_ref(py)),
            )
        };
        if let (Some(cb), Some(args)) = (cb, args) {
            let s = imports(py).format_callback_source.call1(py, (cb, args))?;
            info.push(s.extract::<String>(py)?);
        }
        if let Some(tb) = tb {
            let tb = tb.bind(py);
            if tb.len()? > 0 {
                let frame = tb.get_item(-1)?;
                info.push(format!("created at {}:{}", frame.get_item(0)?, frame.get_item(1)?));
            }
        }
        Ok(format!("<{}>", info.join(" ")))
    }
}

#[pymethods]
impl Handle {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_cancel(slf)
    }

    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.own_context(py)
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run(slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.borrow().callback.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
        self.inner.borrow().args.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.own_context(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.borrow().loop_.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.inner.borrow().source_tb.as_ref().map(|c| c.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        Self::repr_string(slf)
    }

    /// Exact Handle/TimerHandle instances report stand-in subclasses of
    /// `asyncio.Handle`/`asyncio.TimerHandle` (see Future.__class__).
    #[getter]
    fn __class__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let ty = slf.get_type();
        let shadows = crate::runtime::shadows::shadow_classes(py)?;
        if ty.is(py.get_type::<Handle>()) {
            return Ok(shadows.handle.bind(py).clone());
        }
        if ty.is(py.get_type::<TimerHandle>()) {
            return Ok(shadows.timer_handle.bind(py).clone());
        }
        Ok(ty.into_any())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.traverse_fields(&visit)
    }

    fn __clear__(&self) {
        let taken = {
            let mut inner = self.inner.borrow_mut();
            (inner.callback.take(), inner.args.take(), inner.context.take(), inner.source_tb.take(), inner.loop_.take())
        };
        drop(taken);
    }
}

/// A handle with a deadline, returned by `call_later`/`call_at`.
#[pyclass(frozen, extends = Handle, subclass, module = "ferroloop._ferroloop")]
pub struct TimerHandle;

#[pymethods]
impl TimerHandle {
    fn when(slf: &Bound<'_, Self>) -> f64 {
        slf.as_super().get().when
    }

    #[getter]
    fn _when(slf: &Bound<'_, Self>) -> f64 {
        slf.as_super().get().when
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().scheduled.load(Ordering::Relaxed)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        slf.as_super().get().when.into_pyobject(slf.py())?.hash()
    }

    fn __richcmp__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let a = slf.as_super().get();
        let b = other.as_super().get();
        let same = || -> PyResult<bool> {
            if a.when != b.when || a.is_cancelled() != b.is_cancelled() {
                return Ok(false);
            }
            let (ia, ib) = (a.inner.borrow(), b.inner.borrow());
            let eq = |x: Option<&Bound<'_, PyAny>>, y: Option<&Bound<'_, PyAny>>| -> PyResult<bool> {
                match (x, y) {
                    (None, None) => Ok(true),
                    (Some(x), Some(y)) => x.eq(y),
                    _ => Ok(false),
                }
            };
            Ok(eq(ia.callback.as_ref().map(|c| c.bind(py)), ib.callback.as_ref().map(|c| c.bind(py)))?
                && eq(ia.args.as_ref().map(|c| c.bind(py).as_any()), ib.args.as_ref().map(|c| c.bind(py).as_any()))?)
        };
        let r = match op {
            CompareOp::Lt => a.when < b.when,
            CompareOp::Gt => a.when > b.when,
            CompareOp::Le => a.when < b.when || same()?,
            CompareOp::Ge => a.when > b.when || same()?,
            CompareOp::Eq => same()?,
            CompareOp::Ne => !same()?,
        };
        Ok(r.into_pyobject(py)?.to_owned().into_any().unbind())
    }
}

/// Build a `Handle` (or `TimerHandle` when `when` is given) bound to `py`.
pub(crate) fn make_handle(
    py: Python<'_>,
    h: Handle,
    timer: bool,
) -> PyResult<Bound<'_, Handle>> {
    if timer {
        let init = PyClassInitializer::from(h).add_subclass(TimerHandle);
        Ok(Bound::new(py, init)?.into_super())
    } else {
        Bound::new(py, h)
    }
}
