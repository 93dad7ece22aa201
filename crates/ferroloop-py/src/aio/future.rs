//! The native `Future` and its await iterator.
//!
//! Semantics follow `asyncio.Future` (and the C `_asyncio.Future`):
//! callbacks are scheduled on the loop when the future finishes, each in
//! the context captured by `add_done_callback`. Two fast paths:
//!
//! * on a ferroloop loop, finishing a future queues [`Job`]s directly in the
//!   loop's ready queue instead of calling `loop.call_soon`;
//! * native code waiting on a future (a Task awaiting it) registers a
//!   [`Callback::Native`] — no bound-method object, no context copy — which
//!   becomes a native job of the waiter's own kind.
//!
//! On any other loop (for instance CPython's `test_utils.TestLoop`) the
//! future behaves like the C one and calls `loop.call_soon(cb, fut,
//! context=ctx)`.
//!
//! `await fut` iterates the future itself ([`future_am_await`]: no iterator
//! object per await); `fut.__await__()` and `iter(fut)` called from Python
//! return a [`FutureIter`]. Both fill `tp_as_async.am_send` by hand (PyO3 has
//! no `am_send`): a finished future returns its result from `am_send`
//! without raising StopIteration.

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::gil::GilCell;
use crate::runtime::imports::imports;
use crate::runtime::util::copy_context;
use crate::sched::job::{Job, JobKind};
use crate::sched::loop_core::LoopCore;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    Pending,
    Cancelled,
    Finished,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "PENDING",
            State::Cancelled => "CANCELLED",
            State::Finished => "FINISHED",
        }
    }
}

pub(crate) enum Callback {
    /// `shared`: `ctx` is a loop's shared snapshot (contexts.rs).
    Py { cb: Py<PyAny>, ctx: Option<Py<PyAny>>, shared: bool },
    /// Native work to queue when the future is done:
    /// `Job::Native { kind, target, obj: fut }` (a Task's wake-up).
    Native { kind: &'static JobKind, target: Py<PyAny> },
    /// Loop bookkeeping run at once when the future is done (asyncio's
    /// `_sock_read_done`, a functools.partial there): not listed in
    /// `_callbacks`, compared as None by remove_done_callback.
    Now { run: fn(&Bound<'_, PyAny>, &Bound<'_, PyAny>, i32), target: Py<PyAny>, arg: i32 },
}

impl Callback {
    fn clone_ref(&self, py: Python<'_>) -> Callback {
        match self {
            Callback::Py { cb, ctx, shared } => {
                Callback::Py { cb: cb.clone_ref(py), ctx: ctx.as_ref().map(|c| c.clone_ref(py)), shared: *shared }
            }
            Callback::Native { kind, target } => Callback::Native { kind, target: target.clone_ref(py) },
            Callback::Now { run, target, arg } => Callback::Now { run: *run, target: target.clone_ref(py), arg: *arg },
        }
    }

    /// The callable and context asyncio would hold for this entry; None for
    /// loop bookkeeping.
    fn as_python<'py>(&self, py: Python<'py>) -> PyResult<Option<(Bound<'py, PyAny>, Option<Py<PyAny>>)>> {
        match self {
            Callback::Py { cb, ctx, .. } => Ok(Some((cb.bind(py).clone(), ctx.as_ref().map(|c| c.clone_ref(py))))),
            Callback::Native { kind, target } => match kind.as_callback {
                Some(f) => f(target.bind(py)).map(Some),
                None => Ok(None),
            },
            Callback::Now { .. } => Ok(None),
        }
    }
}

impl Traverse for Callback {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Callback::Py { cb, ctx, .. } => {
                traverse!(visit; cb, ctx);
                Ok(())
            }
            Callback::Native { target, .. } | Callback::Now { target, .. } => target.traverse(visit),
        }
    }
}

pub(crate) struct FutState {
    pub loop_: Option<Py<PyAny>>,
    pub native: Option<Py<LoopCore>>,
    pub state: State,
    pub result: Option<Py<PyAny>>,
    pub exception: Option<Py<PyAny>>,
    pub exception_tb: Option<Py<PyAny>>,
    pub callbacks: Vec<Callback>,
    /// `callbacks[0]` is in the C Future's first-callback slot
    /// (`fut_callback0`): the first callback added to an empty future goes
    /// there, later ones to its list. Only remove_done_callback's count in
    /// re-entrant cases depends on the difference.
    pub slot0: bool,
    pub cancel_message: Option<Py<PyAny>>,
    pub cancelled_exc: Option<Py<PyAny>>,
    pub source_tb: Option<Py<PyAny>>,
    pub log_tb: bool,
    pub blocking: bool,
}

impl FutState {
    pub(crate) fn empty() -> Self {
        FutState {
            loop_: None,
            native: None,
            state: State::Pending,
            result: None,
            exception: None,
            exception_tb: None,
            callbacks: Vec::new(),
            slot0: false,
            cancel_message: None,
            cancelled_exc: None,
            source_tb: None,
            log_tb: false,
            blocking: false,
        }
    }

}

impl Traverse for FutState {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        traverse!(visit; self.loop_, self.native, self.result, self.exception, self.exception_tb,
            self.callbacks, self.cancel_message, self.cancelled_exc, self.source_tb);
        Ok(())
    }
}

#[pyclass(frozen, subclass, weakref, dict, module = "ferroloop._ferroloop")]
pub struct Future {
    pub(crate) st: GilCell<FutState>,
}

fn not_initialized() -> PyErr {
    PyRuntimeError::new_err("Future object is not initialized.")
}

pub(crate) fn invalid_state(py: Python<'_>, msg: String) -> PyErr {
    PyErr::from_type(imports(py).invalid_state_error.bind(py).cast::<PyType>().expect("type").clone(), msg)
}

impl Future {
    pub(crate) fn new_state(loop_: &Bound<'_, PyAny>) -> PyResult<FutState> {
        let py = loop_.py();
        let native = loop_.cast::<LoopCore>().ok().map(|l| l.clone().unbind());
        let debug = match &native {
            Some(l) => l.get().debug(),
            None => loop_.call_method0("get_debug")?.is_truthy()?,
        };
        let mut st = FutState::empty();
        st.loop_ = Some(loop_.clone().unbind());
        st.native = native;
        if debug {
            st.source_tb = crate::runtime::util::source_traceback(py)?;
        }
        Ok(st)
    }

    pub(crate) fn new_for_loop<'py>(loop_: &Bound<'py, LoopCore>) -> PyResult<Bound<'py, Future>> {
        let st = Self::new_state(loop_.as_any())?;
        Bound::new(loop_.py(), Future { st: GilCell::new(st) })
    }

    #[inline]
    pub(crate) fn state(&self) -> State {
        self.st.borrow().state
    }

    pub(crate) fn loop_obj<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match &self.st.borrow().loop_ {
            Some(l) => Ok(l.bind(py).clone()),
            None => Err(not_initialized()),
        }
    }

    fn ensure_alive(&self) -> PyResult<()> {
        if self.st.borrow().loop_.is_none() {
            Err(not_initialized())
        } else {
            Ok(())
        }
    }

    /// asyncio's `_make_cancelled_error`.
    pub(crate) fn make_cancelled_error<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let (saved, msg) = {
            let mut st = self.st.borrow_mut();
            (st.cancelled_exc.take(), st.cancel_message.as_ref().map(|m| m.clone_ref(py)))
        };
        if let Some(exc) = saved {
            return Ok(exc.into_bound(py));
        }
        let cls = imports(py).cancelled_error.bind(py);
        match msg {
            None => cls.call0(),
            Some(m) => cls.call1((m,)),
        }
    }

    /// Schedule every registered callback; the list is emptied first so a
    /// callback that adds another sees a clean state.
    pub(crate) fn schedule_callbacks(slf: &Bound<'_, Future>) -> PyResult<()> {
        let py = slf.py();
        let (cbs, native, loop_) = {
            let mut st = slf.get().st.borrow_mut();
            if st.callbacks.is_empty() {
                return Ok(());
            }
            st.slot0 = false;
            (
                std::mem::take(&mut st.callbacks),
                st.native.as_ref().map(|n| n.clone_ref(py)),
                st.loop_.as_ref().map(|l| l.clone_ref(py)),
            )
        };
        let Some(loop_) = loop_ else { return Err(not_initialized()) };
        for cb in cbs {
            Self::schedule_one(py, slf.as_any(), native.as_ref(), loop_.bind(py), cb)?;
        }
        Ok(())
    }

    fn schedule_one(
        py: Python<'_>,
        fut: &Bound<'_, PyAny>,
        native: Option<&Py<LoopCore>>,
        loop_: &Bound<'_, PyAny>,
        cb: Callback,
    ) -> PyResult<()> {
        if let Callback::Now { run, target, arg } = cb {
            run(fut, target.bind(py), arg);
            return Ok(());
        }
        match native {
            Some(n) => n.get().push_job(match cb {
                Callback::Py { cb, ctx, shared } => Job::Callback { cb, arg: fut.clone().unbind(), ctx, shared },
                Callback::Native { kind, target } => Job::native(kind, target, Some(fut.clone().unbind()), 0),
                Callback::Now { .. } => return Ok(()),
            }),
            None => {
                let Some((cb, ctx)) = cb.as_python(py)? else { return Ok(()) };
                let kwargs = PyDict::new(py);
                kwargs.set_item("context", ctx)?;
                loop_.call_method("call_soon", (cb, fut), Some(&kwargs))?;
                Ok(())
            }
        }
    }

    /// What remove_done_callback compares an entry with: the callback, or
    /// for a native task's wake-up the bound method asyncio would hold
    /// (made only here, off the hot path). Loop bookkeeping (`Callback::Now`,
    /// a functools.partial in asyncio) is compared as None.
    fn compared(py: Python<'_>, cb: &Callback) -> PyResult<Py<PyAny>> {
        Ok(match cb.as_python(py)? {
            Some((c, _)) => c.unbind(),
            None => py.None(),
        })
    }

    /// PyObject_RichCompareBool, as the C Future: identity first.
    fn same_callback(py: Python<'_>, obj: &Py<PyAny>, r#fn: &Bound<'_, PyAny>) -> PyResult<bool> {
        let obj = obj.bind(py);
        Ok(obj.is(r#fn) || obj.eq(r#fn)?)
    }

    /// Empty the list part (the first-callback slot stays).
    fn clear_list(this: &Future) -> Vec<Callback> {
        let mut st = this.st.borrow_mut();
        let start = usize::from(st.slot0);
        st.callbacks.drain(start..).collect()
    }

    /// Register a callback; if the future is already done, schedule it now.
    pub(crate) fn add_callback(slf: &Bound<'_, Future>, cb: Callback) -> PyResult<()> {
        let py = slf.py();
        let mut st = slf.get().st.borrow_mut();
        if st.loop_.is_none() {
            return Err(PyRuntimeError::new_err("uninitialized Future object"));
        }
        if st.state == State::Pending {
            if st.callbacks.is_empty() && !st.slot0 {
                st.slot0 = true;
            }
            st.callbacks.push(cb);
            return Ok(());
        }
        let native = st.native.as_ref().map(|n| n.clone_ref(py));
        let loop_ = st.loop_.as_ref().map(|l| l.clone_ref(py)).expect("checked");
        drop(st);
        Self::schedule_one(py, slf.as_any(), native.as_ref(), loop_.bind(py), cb)
    }

    pub(crate) fn do_set_result(slf: &Bound<'_, Future>, result: Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut st = slf.get().st.borrow_mut();
            if st.loop_.is_none() {
                return Err(not_initialized());
            }
            if st.state != State::Pending {
                drop(st);
                return Err(invalid_state(py, "invalid state".into()));
            }
            st.result = Some(result);
            st.state = State::Finished;
        }
        Self::schedule_callbacks(slf)
    }

    pub(crate) fn do_set_exception(slf: &Bound<'_, Future>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        slf.get().ensure_alive()?;
        if slf.get().state() != State::Pending {
            return Err(invalid_state(py, "invalid state".into()));
        }
        // Only exception classes are instantiated (the C Future's rule).
        let is_exc_class = exception
            .cast::<PyType>()
            .is_ok_and(|t| t.is_subclass_of::<pyo3::exceptions::PyBaseException>().unwrap_or(false));
        let exc = if is_exc_class {
            exception.call0()?
        } else {
            exception.clone()
        };
        if !exc.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            return Err(PyTypeError::new_err("invalid exception object"));
        }
        const STOP_ITERATION_MSG: &str =
            "StopIteration interacts badly with generators and cannot be raised into a Future";
        let exc = if crate::runtime::pyver::at_least(13) {
            // 3.13 stores a RuntimeError caused by it (any StopIteration).
            if exc.is_instance_of::<PyStopIteration>() {
                let wrapped = PyRuntimeError::new_err(STOP_ITERATION_MSG).into_value(py).into_bound(py).into_any();
                wrapped.setattr("__cause__", &exc)?;
                wrapped.setattr("__context__", &exc)?;
                wrapped
            } else {
                exc
            }
        } else if exc.get_type().is(py.get_type::<PyStopIteration>()) {
            return Err(PyTypeError::new_err(STOP_ITERATION_MSG));
        } else {
            exc
        };
        let tb = exc.getattr("__traceback__")?;
        {
            let mut st = slf.get().st.borrow_mut();
            st.exception = Some(exc.unbind());
            st.exception_tb = (!tb.is_none()).then(|| tb.unbind());
            st.state = State::Finished;
            st.log_tb = true;
        }
        Self::schedule_callbacks(slf)
    }

    pub(crate) fn do_cancel(slf: &Bound<'_, Future>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        {
            let mut st = slf.get().st.borrow_mut();
            if st.loop_.is_none() {
                return Err(not_initialized());
            }
            st.log_tb = false;
            if st.state != State::Pending {
                return Ok(false);
            }
            st.state = State::Cancelled;
            let old = std::mem::replace(&mut st.cancel_message, msg);
            drop(st);
            drop(old);
        }
        Self::schedule_callbacks(slf)?;
        Ok(true)
    }

    /// The state check shared by `result()` and `exception()`: raise for a
    /// cancelled or pending future (`what` names the missing thing), mark
    /// the exception retrieved otherwise.
    fn finished_state<'a>(&'a self, py: Python<'_>, what: &str) -> PyResult<std::cell::RefMut<'a, FutState>> {
        let mut st = self.st.borrow_mut();
        match st.state {
            State::Cancelled => {
                drop(st);
                Err(PyErr::from_value(self.make_cancelled_error(py)?))
            }
            State::Pending => {
                let msg = if st.loop_.is_none() { "Future object is not initialized.".to_owned() } else { format!("{what} is not set.") };
                drop(st);
                Err(invalid_state(py, msg))
            }
            State::Finished => {
                st.log_tb = false;
                Ok(st)
            }
        }
    }

    /// `result()`: the value, or the exception raised with its traceback.
    pub(crate) fn get_result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.finished_state(py, "Result")?;
        if let Some(exc) = &st.exception {
            let exc = exc.bind(py).clone();
            let tb = st.exception_tb.as_ref().map(|t| t.clone_ref(py));
            drop(st);
            let tb_ptr = tb.as_ref().map_or(std::ptr::null_mut(), |t| t.as_ptr());
            // SAFETY: `exc` is an exception instance (checked in
            // set_exception); `tb` is a traceback or None.
            unsafe { ffi::PyException_SetTraceback(exc.as_ptr(), if tb_ptr.is_null() { ffi::Py_None() } else { tb_ptr }) };
            return Err(PyErr::from_value(exc));
        }
        Ok(st.result.as_ref().map_or_else(|| py.None().into_bound(py), |r| r.bind(py).clone()))
    }

    /// Shared by `Future.__del__` and `Task.__del__` (tp_finalize).
    pub(crate) fn finalize(slf: &Bound<'_, Future>) -> PyResult<()> {
        let py = slf.py();
        let (exc, tb, loop_) = {
            let mut st = slf.get().st.borrow_mut();
            if !st.log_tb {
                return Ok(());
            }
            st.log_tb = false;
            match (&st.exception, &st.loop_) {
                (Some(e), Some(l)) => (e.clone_ref(py), st.source_tb.as_ref().map(|t| t.clone_ref(py)), l.clone_ref(py)),
                _ => return Ok(()),
            }
        };
        let ctx = PyDict::new(py);
        ctx.set_item("message", format!("{} exception was never retrieved", slf.get_type().name()?))?;
        ctx.set_item("exception", exc)?;
        ctx.set_item("future", slf)?;
        if let Some(tb) = tb {
            ctx.set_item("source_traceback", tb)?;
        }
        loop_.bind(py).call_method1("call_exception_handler", (ctx,))?;
        Ok(())
    }

    fn callbacks_list<'py>(slf: &Bound<'py, Future>) -> PyResult<Option<Bound<'py, PyList>>> {
        let py = slf.py();
        let items: Vec<Callback> = {
            let st = slf.get().st.borrow();
            if st.callbacks.is_empty() {
                return Ok(None);
            }
            st.callbacks.iter().map(|c| c.clone_ref(py)).collect()
        };
        let list = PyList::empty(py);
        for c in &items {
            // Loop bookkeeping is not a callback anyone added.
            if let Some((cb, ctx)) = c.as_python(py)? {
                list.append(PyTuple::new(py, [cb.unbind(), ctx.unwrap_or_else(|| py.None())])?)?;
            }
        }
        if list.is_empty() {
            return Ok(None);
        }
        Ok(Some(list))
    }
}

#[pymethods]
impl Future {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Future { st: GilCell::new(FutState::empty()) }
    }

    // *args only to word the error as the C Future does (PyO3 would name
    // `Future.__init__()` and count positional parameters).
    #[pyo3(signature = (*args, r#loop = None))]
    fn __init__(slf: &Bound<'_, Self>, args: &Bound<'_, PyTuple>, r#loop: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        if !args.is_empty() {
            return Err(PyTypeError::new_err("Future() takes no positional arguments"));
        }
        let py = slf.py();
        let loop_ = match r#loop.filter(|l| !l.is_none()) {
            Some(l) => l,
            None => imports(py).get_event_loop.bind(py).call0()?,
        };
        let new = Self::new_state(&loop_)?;
        let old = std::mem::replace(&mut *slf.get().st.borrow_mut(), new);
        drop(old);
        Ok(())
    }

    // result() and exception() of a future whose __init__ was skipped see
    // a pending future (InvalidStateError), as the C Future does.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get_result(py)
    }

    fn exception<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let st = self.finished_state(py, "Exception")?;
        Ok(st.exception.as_ref().map_or_else(|| py.None().into_bound(py), |e| e.bind(py).clone()))
    }

    #[pyo3(signature = (result, /))]
    fn set_result(slf: &Bound<'_, Self>, result: Py<PyAny>) -> PyResult<()> {
        Self::do_set_result(slf, result)
    }

    #[pyo3(signature = (exception, /))]
    fn set_exception(slf: &Bound<'_, Self>, exception: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::do_set_exception(slf, exception)
    }

    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        Self::do_cancel(slf, msg.filter(|m| !m.is_none(slf.py())))
    }

    // Like result(), these report an uninitialised future as pending.
    fn cancelled(&self) -> bool {
        self.state() == State::Cancelled
    }

    fn done(&self) -> bool {
        self.state() != State::Pending
    }

    fn get_loop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.loop_obj(py)
    }

    #[pyo3(signature = (r#fn, /, *, context = None))]
    fn add_done_callback(slf: &Bound<'_, Self>, r#fn: Py<PyAny>, context: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let native = slf.get().st.borrow().native.as_ref().map(|n| n.clone_ref(py));
        let (ctx, shared) = match (context.filter(|c| !c.is_none(py)), native) {
            (Some(c), _) => (c, false),
            (None, Some(n)) => n.get().snapshot_context(py)?,
            (None, None) => (copy_context(py)?, false),
        };
        Self::add_callback(slf, Callback::Py { cb: r#fn, ctx: Some(ctx), shared })
    }

    #[pyo3(signature = (r#fn, /))]
    fn remove_done_callback(slf: &Bound<'_, Self>, r#fn: &Bound<'_, PyAny>) -> PyResult<usize> {
        let py = slf.py();
        slf.get().ensure_alive()?;
        // The C Future's algorithm, step for step: `__eq__` is Python code
        // that may resolve the future (scheduling every callback), or add and
        // remove callbacks, while the list is being searched; what is
        // compared, what is kept and the count returned in those cases are
        // the C Future's. No borrow is held across a comparison.
        let this = slf.get();
        let mut cleared0 = 0;
        let slot0 = {
            let st = this.st.borrow();
            if st.slot0 { st.callbacks.first().map(|c| Self::compared(py, c)) } else { None }
        };
        if let Some(obj) = slot0 {
            if Self::same_callback(py, &obj?, r#fn)? {
                let gone = {
                    let mut st = this.st.borrow_mut();
                    if st.slot0 {
                        st.slot0 = false;
                        Some(st.callbacks.remove(0))
                    } else {
                        None
                    }
                };
                drop(gone);
                cleared0 = 1;
            }
        }
        let list_len = |this: &Future| {
            let st = this.st.borrow();
            st.callbacks.len() - usize::from(st.slot0)
        };
        let len = list_len(this);
        if len == 0 {
            return Ok(cleared0);
        }
        if len == 1 {
            let obj = {
                let st = this.st.borrow();
                st.callbacks.get(usize::from(st.slot0)).map(|c| Self::compared(py, c))
            };
            let Some(obj) = obj else { return Ok(cleared0) };
            if Self::same_callback(py, &obj?, r#fn)? {
                let gone = Self::clear_list(this);
                drop(gone);
                return Ok(1 + cleared0);
            }
            return Ok(cleared0);
        }
        // The entries kept, as the C Future's new list: it replaces the list
        // whatever the comparisons did to it meanwhile.
        let mut kept: Vec<Callback> = Vec::new();
        let mut i = 0;
        loop {
            let entry = {
                let st = this.st.borrow();
                st.callbacks.get(usize::from(st.slot0) + i).map(|c| (c.clone_ref(py), Self::compared(py, c)))
            };
            let Some((entry, obj)) = entry else { break };
            if !Self::same_callback(py, &obj?, r#fn)? {
                kept.push(entry);
            }
            i += 1;
        }
        if kept.is_empty() || list_len(this) == 0 {
            let gone = Self::clear_list(this);
            drop(gone);
            return Ok(len + cleared0);
        }
        let now = list_len(this);
        let j = kept.len();
        let mut gone = Vec::new();
        if j != now {
            let mut st = this.st.borrow_mut();
            let start = usize::from(st.slot0);
            gone = st.callbacks.drain(start..).collect();
            st.callbacks.extend(kept);
        }
        // Dropped after the list is settled: a destructor may run Python.
        drop(gone);
        Ok(now.saturating_sub(j) + cleared0)
    }

    fn _make_cancelled_error<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.make_cancelled_error(py)
    }

    fn __await__(slf: &Bound<'_, Self>) -> PyResult<FutureIter> {
        slf.get().ensure_alive()?;
        Ok(FutureIter { fut: GilCell::new(Some(slf.clone().unbind())) })
    }

    fn __iter__(slf: &Bound<'_, Self>) -> PyResult<FutureIter> {
        Self::__await__(slf)
    }

    fn _repr_info<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        imports(slf.py()).future_repr_info.bind(slf.py()).call1((slf,))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        slf.get().ensure_alive()?;
        let info = slf.call_method0("_repr_info")?;
        let parts: Vec<String> = info.extract()?;
        Ok(format!("<{} {}>", slf.get_type().name()?, parts.join(" ")))
    }

    /// The finalizer as a method, like the C Future's `__del__` slot
    /// wrapper: Python subclasses get it through their MRO (type_new wires
    /// `tp_finalize` to `__del__`), and may call `super().__del__()`.
    fn __del__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::finalize(slf)
    }

    #[classmethod]
    #[pyo3(signature = (item, /))]
    fn __class_getitem__<'py>(cls: &Bound<'py, PyType>, item: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        imports(cls.py()).generic_alias.bind(cls.py()).call1((cls, item))
    }

    /// See DIFFERENCES.md: instances of the exact native types report a
    /// stand-in class deriving from `asyncio.Future`/`asyncio.Task` so that
    /// `isinstance(fut, asyncio.Future)` holds; `type(fut)` is unchanged.
    #[getter]
    fn __class__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let ty = slf.get_type();
        let shadows = crate::runtime::shadows::shadow_classes(py)?;
        if ty.is(py.get_type::<Future>()) {
            return Ok(shadows.future.bind(py).clone());
        }
        Ok(ty.into_any())
    }

    #[getter]
    fn _state(&self) -> &'static str {
        self.state().name()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().loop_.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _result(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().result.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().exception.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _callbacks<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyList>>> {
        Self::callbacks_list(slf)
    }

    /// What Python 3.14's `asyncio.graph` reads: the futures awaiting this
    /// one (a frozenset, or None). Nothing is recorded on the hot path to
    /// answer it: `ferroloop.graph` derives the awaiters from the done
    /// callbacks when asked (docs/observability.md).
    #[getter]
    fn _asyncio_awaited_by<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        py.import(pyo3::intern!(py, "ferroloop.graph"))?
            .getattr(pyo3::intern!(py, "_awaited_by_set"))?
            .call1((slf,))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().source_tb.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter(_cancel_message)]
    fn get_cancel_message(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().cancel_message.as_ref().map(|l| l.clone_ref(py))
    }

    #[deleter(_cancel_message)]
    fn del_cancel_message(&self) -> PyResult<()> {
        Err(crate::runtime::util::cannot_delete())
    }

    #[setter(_cancel_message)]
    fn set_cancel_message(&self, v: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.st.borrow_mut().cancel_message, v);
        drop(old);
    }

    #[getter(_cancelled_exc)]
    fn get_cancelled_exc(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().cancelled_exc.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter(_asyncio_future_blocking)]
    fn get_blocking(&self) -> bool {
        self.st.borrow().blocking
    }

    #[deleter(_asyncio_future_blocking)]
    fn del_asyncio_future_blocking(&self) -> PyResult<()> {
        Err(crate::runtime::util::cannot_delete())
    }

    #[setter(_asyncio_future_blocking)]
    fn set_blocking(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = v.is_truthy()?;
        self.st.borrow_mut().blocking = v;
        Ok(())
    }

    #[getter(_log_traceback)]
    fn get_log_traceback(&self) -> bool {
        self.st.borrow().log_tb
    }

    #[deleter(_log_traceback)]
    fn del_log_traceback(&self) -> PyResult<()> {
        Err(crate::runtime::util::cannot_delete())
    }

    #[setter(_log_traceback)]
    fn set_log_traceback(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = v.is_truthy()?;
        if v {
            return Err(PyValueError::new_err("_log_traceback can only be set to False"));
        }
        self.st.borrow_mut().log_tb = false;
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            st.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = std::mem::replace(&mut *self.st.borrow_mut(), FutState::empty());
        drop(old);
    }
}

/// The iterator `Future.__await__` returns.
#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct FutureIter {
    fut: GilCell<Option<Py<Future>>>,
}

pub(crate) enum SendOutcome<'py> {
    Yield(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
}

/// One step of `await fut`: yield the future while it is pending (once),
/// then return its result. The state lives in the future (`blocking`), so
/// the future itself can be the await iterator ([`future_am_await`]).
pub(crate) fn await_step<'py>(fut: &Bound<'py, Future>) -> PyResult<SendOutcome<'py>> {
    let py = fut.py();
    {
        let mut st = fut.get().st.borrow_mut();
        if st.state == State::Pending {
            if !st.blocking {
                st.blocking = true;
                drop(st);
                return Ok(SendOutcome::Yield(fut.clone().into_any()));
            }
            return Err(PyRuntimeError::new_err("await wasn't used with future"));
        }
    }
    Ok(SendOutcome::Return(fut.get().get_result(py)?))
}

impl FutureIter {
    pub(crate) fn advance<'py>(&self, py: Python<'py>) -> PyResult<SendOutcome<'py>> {
        let fut = match &*self.fut.borrow() {
            Some(f) => f.clone_ref(py).into_bound(py),
            None => return Ok(SendOutcome::Return(py.None().into_bound(py))),
        };
        let out = await_step(&fut)?;
        if let SendOutcome::Return(_) = out {
            let old = self.fut.borrow_mut().take();
            drop(old);
        }
        Ok(out)
    }
}

#[pymethods]
impl FutureIter {
    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.advance(py)? {
            SendOutcome::Yield(v) => Ok(v),
            SendOutcome::Return(v) => Err(PyStopIteration::new_err((v.unbind(),))),
        }
    }

    #[pyo3(signature = (value, /))]
    fn send<'py>(&self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let _ = value; // like the C iterator, the sent value is ignored
        self.__next__(py)
    }

    #[pyo3(signature = (typ, /, *rest))]
    fn throw(&self, py: Python<'_>, typ: &Bound<'_, PyAny>, rest: &Bound<'_, PyTuple>) -> PyResult<()> {
        if rest.len() > 2 {
            return Err(PyTypeError::new_err(format!("throw expected at most 3 arguments, got {}", rest.len() + 1)));
        }
        if !rest.is_empty() && crate::runtime::pyver::at_least(12) {
            // As generators' throw() since 3.12, counted by arguments given
            // (an explicit None included).
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyDeprecationWarning>(),
                c"the (type, exc, tb) signature of throw() is deprecated, use the single-arg signature instead.",
                1,
            )?;
        }
        let val = rest.get_item(0).ok().filter(|v| !v.is_none());
        let tb = rest.get_item(1).ok().filter(|t| !t.is_none());
        let (val, tb) = (val.as_ref(), tb.as_ref());
        if let Some(tb) = tb {
            if !tb.is_instance_of::<pyo3::types::PyTraceback>() {
                return Err(PyTypeError::new_err("throw() third argument must be a traceback"));
            }
        }
        let base = py.get_type::<pyo3::exceptions::PyBaseException>();
        let exc = if typ.is_instance_of::<PyType>() && typ.cast::<PyType>()?.is_subclass(&base)? {
            match val {
                Some(v) if v.is_instance(typ)? => v.clone(),
                Some(v) if v.is_instance_of::<PyTuple>() => typ.call1(v.cast::<PyTuple>()?)?,
                Some(v) => typ.call1((v,))?,
                None => typ.call0()?,
            }
        } else if typ.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            if val.is_some() {
                return Err(PyTypeError::new_err("instance exception may not have a separate value"));
            }
            typ.clone()
        } else {
            return Err(PyTypeError::new_err(format!(
                "exceptions must be classes deriving BaseException or instances of such a class, not {}",
                typ.get_type().name()?
            )));
        };
        if let Some(tb) = tb {
            exc.call_method1("with_traceback", (tb,))?;
        }
        let old = self.fut.borrow_mut().take();
        drop(old);
        Err(PyErr::from_value(exc))
    }

    fn close(&self) {
        let old = self.fut.borrow_mut().take();
        drop(old);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(f) = self.fut.try_borrow() {
            visit.call(&*f)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = self.fut.borrow_mut().take();
        drop(old);
    }
}

/// `tp_as_async.am_send` for [`FutureIter`]: return the result of a finished
/// future directly (PYGEN_RETURN) instead of raising StopIteration.
///
/// SAFETY (of the function contract): called by CPython with a live
/// `FutureIter` as `iter`, a borrowed `arg` and a valid `result` pointer,
/// with the GIL held.
pub(crate) unsafe extern "C" fn future_iter_am_send(
    iter: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: per the contract above we are attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `iter` is a borrowed, live object.
    let obj = unsafe { Bound::from_borrowed_ptr(py, iter) };
    let outcome = match obj.cast::<FutureIter>() {
        Ok(it) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.get().advance(py)))
            .unwrap_or_else(|_| Err(pyo3::panic::PanicException::new_err("panic in FutureIter.send"))),
        Err(e) => Err(e.into()),
    };
    // SAFETY: `result` is a valid out-pointer (the contract).
    unsafe { send_result(py, outcome, result) }
}

/// `tp_as_async.am_await` of Future and Task: `await fut` iterates the
/// future itself, so an await allocates nothing and leaves no extra object
/// for the collector to walk while a task waits. `fut.__await__()` and
/// `iter(fut)` called from Python still return a [`FutureIter`] (the
/// `__await__` wrapper in the type's dict keeps PyO3's slot function);
/// the future has no Python-visible `__next__`/`send`/`throw`, so a
/// coroutine's `throw()`/`close()` act at the await itself, exactly as
/// FutureIter's do.
///
/// SAFETY (of the function contract): called by CPython with a live object
/// of an exact Future/Task type, with the GIL held.
pub(crate) unsafe extern "C" fn future_am_await(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: per the contract above we are attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `obj` is a borrowed, live object.
    let b = unsafe { Bound::from_borrowed_ptr(py, obj) };
    let alive = match b.cast::<Future>() {
        Ok(f) => f.get().ensure_alive(),
        Err(e) => Err(e.into()),
    };
    match alive {
        Ok(()) => b.into_ptr(),
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

fn step_of(py: Python<'_>, obj: *mut ffi::PyObject) -> PyResult<SendOutcome<'_>> {
    // SAFETY: callers pass a borrowed, live object under the GIL.
    let b = unsafe { Bound::from_borrowed_ptr(py, obj) };
    let f = b.cast::<Future>()?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| await_step(f)))
        .unwrap_or_else(|_| Err(pyo3::panic::PanicException::new_err("panic in await")))
}

/// `tp_as_async.am_send` of Future and Task (used by 3.11's SEND).
///
/// SAFETY (of the function contract): as [`future_iter_am_send`].
pub(crate) unsafe extern "C" fn future_am_send(
    obj: *mut ffi::PyObject,
    _arg: *mut ffi::PyObject,
    result: *mut *mut ffi::PyObject,
) -> ffi::PySendResult {
    // SAFETY: per the contract we are attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `result` is a valid out-pointer (the contract).
    unsafe { send_result(py, step_of(py, obj), result) }
}

/// `tp_iternext` of Future and Task: what SEND calls from 3.12 on (and
/// what makes the future pass for an iterator in `await`). A result of None
/// is returned as exhaustion without an exception object, which SEND reads
/// as a return of None.
///
/// SAFETY (of the function contract): called by CPython with a live object
/// of an exact Future/Task type, with the GIL held.
pub(crate) unsafe extern "C" fn future_iternext(obj: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: per the contract above we are attached to the interpreter.
    let py = unsafe { Python::assume_attached() };
    match step_of(py, obj) {
        Ok(SendOutcome::Yield(v)) => v.into_ptr(),
        Ok(SendOutcome::Return(v)) => {
            if !v.is_none() {
                raise_stop_iteration(&v);
            }
            std::ptr::null_mut()
        }
        Err(e) => {
            e.restore(py);
            std::ptr::null_mut()
        }
    }
}

/// Raise `StopIteration(value)`, as a generator's return does. From 3.12 on
/// every `await` of a future with a result other than None ends here
/// (SEND calls `tp_iternext`), so the instance is made with one call instead
/// of through a lazy `PyErr` (a boxed closure, an argument tuple, then the
/// same call). One argument, never unpacked: a tuple result stays a tuple.
fn raise_stop_iteration(value: &Bound<'_, PyAny>) {
    // SAFETY: the GIL is held (a Bound proves it); PyExc_StopIteration is a
    // static type object; `value` is live for the call.
    unsafe {
        let exc = ffi::PyObject_CallOneArg(ffi::PyExc_StopIteration, value.as_ptr());
        if !exc.is_null() {
            // Sets the instance itself (with asyncio's implicit __context__),
            // taking its own reference.
            ffi::PyErr_SetObject(ffi::PyExc_StopIteration, exc);
            ffi::Py_DECREF(exc);
        }
    }
}

/// Hand a step's outcome to CPython as an am_send result.
///
/// # Safety
/// `result` is a valid out-pointer; the GIL is held.
unsafe fn send_result(py: Python<'_>, outcome: PyResult<SendOutcome<'_>>, result: *mut *mut ffi::PyObject) -> ffi::PySendResult {
    match outcome {
        Ok(SendOutcome::Yield(v)) => {
            // SAFETY: `result` is a valid out-pointer; we hand over a new reference.
            unsafe { *result = v.into_ptr() };
            ffi::PySendResult::PYGEN_NEXT
        }
        Ok(SendOutcome::Return(v)) => {
            // SAFETY: as above.
            unsafe { *result = v.into_ptr() };
            ffi::PySendResult::PYGEN_RETURN
        }
        Err(e) => {
            e.restore(py);
            // SAFETY: as above; NULL with an exception set means error.
            unsafe { *result = std::ptr::null_mut() };
            ffi::PySendResult::PYGEN_ERROR
        }
    }
}

/// The loop's factory of native futures (a method of `LoopCore`, defined
/// here: the scheduler does not name Future).
#[pymethods]
impl LoopCore {
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Future>> {
        Future::new_for_loop(slf)
    }
}
