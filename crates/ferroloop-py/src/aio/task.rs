//! The native `Task`.
//!
//! A step (`Task::step`) is asyncio's `Task.__step`: enter the task into
//! `asyncio.tasks._current_tasks`, resume the coroutine with `PyIter_Send`
//! (or `throw` an exception into it), then act on what it yielded. When it
//! yields a native Future or Task, the wake-up is registered as a
//! [`Callback::Native`] of kind [`WAKEUP`] and later queued as that job: no
//! bound-method object, no context copy, no `loop.call_soon` call. Anything
//! else that looks like a future goes through the duck-typed path, exactly
//! like asyncio's (so Python subclasses and foreign futures work).
//!
//! On a loop that is not a ferroloop loop, steps are scheduled with
//! `loop.call_soon(task._step, context=task_context)`, which lets CPython's
//! own Task tests drive this type on their pure-Python `TestLoop`.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::aio::future::{invalid_state, Callback, Future, FutState, State};
use crate::runtime::gil::GilCell;
use crate::runtime::imports::imports;
use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::util::{copy_context, exc_value, is_fatal, run_in_context};
use crate::sched::job::{target_subject, Job, JobKind};
use crate::sched::loop_core::LoopCore;

/// A step of a native Task (`obj`: the exception to throw into it).
pub(crate) static STEP: JobKind = JobKind { run: run_step, subject: target_subject, as_callback: None };
/// A native Task's awaited future finished (`obj`: that future).
pub(crate) static WAKEUP: JobKind = JobKind { run: run_wakeup, subject: target_subject, as_callback: Some(wakeup_callback) };

fn run_step<'py>(task: Bound<'py, PyAny>, exc: Option<Bound<'py, PyAny>>, _: i32) -> PyResult<()> {
    Task::run_step_job(task.cast::<Task>()?, exc)
}

fn run_wakeup<'py>(task: Bound<'py, PyAny>, fut: Option<Bound<'py, PyAny>>, _: i32) -> PyResult<()> {
    match fut {
        Some(fut) => Task::run_wakeup_job(task.cast::<Task>()?, fut),
        None => Ok(()),
    }
}

/// The bound `task._wakeup` asyncio would have registered, in the task's
/// context.
fn wakeup_callback<'py>(task: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Option<Py<PyAny>>)> {
    let ctx = task.cast::<Task>()?.get().context(task.py());
    Ok((task.getattr(pyo3::intern!(task.py(), "_wakeup"))?, ctx))
}

static TASK_NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A task's context. asyncio gives every task its own copy of the context
/// it was created in, so a waiting task costs the collector its Context as
/// well. A copy the task made itself is untracked while the task is its
/// only holder, and the task's traverse reports what it references instead
/// (the same scheme as a pending handle's, see sched/handle.rs). Whoever
/// asks for the context object ([`OwnedContext::shared`]) gets it tracked
/// again, and it is always tracked again before the task lets go of it:
/// CPython's Context deallocator assumes a tracked object.
pub(crate) struct OwnedContext {
    obj: Py<PyAny>,
    /// 1 while untracked. A u8 rather than a bool: `Option<OwnedContext>`
    /// must keep its None in the pointer's niche, so that the all-zero
    /// state of a task whose memory the collector traverses before PyO3
    /// has written it (a collection during its allocation) reads as None.
    untracked: u8,
}

impl OwnedContext {
    /// A context handed in by the caller: shared, left as it is.
    fn given(obj: Py<PyAny>) -> Self {
        OwnedContext { obj, untracked: 0 }
    }

    /// A copy just made for this task, which nobody else holds yet.
    fn own_copy(obj: Py<PyAny>) -> Self {
        let p = obj.as_ptr();
        // SAFETY: `p` is live (we hold `obj`); the checks and the untrack
        // run under the GIL, on an exact Context (its traverse and
        // deallocator are CPython's).
        let untracked = unsafe {
            ffi::PyContext_CheckExact(p) != 0
                && ffi::Py_REFCNT(p) == 1
                && ffi::PyObject_GC_IsTracked(p) != 0
                && {
                    ffi::PyObject_GC_UnTrack(p.cast());
                    true
                }
        };
        OwnedContext { obj, untracked: untracked as u8 }
    }

    fn retrack(&mut self) {
        if std::mem::take(&mut self.untracked) != 0 {
            let p = self.obj.as_ptr();
            // SAFETY: live object, GIL held; tracked only if it is not.
            unsafe {
                if ffi::PyObject_GC_IsTracked(p) == 0 {
                    ffi::PyObject_GC_Track(p.cast());
                }
            }
        }
    }

    /// The context object for someone who may keep it.
    fn shared(&mut self, py: Python<'_>) -> Py<PyAny> {
        self.retrack();
        self.obj.clone_ref(py)
    }

    /// The context object for entering it around a step (released after).
    fn for_run(&self, py: Python<'_>) -> Py<PyAny> {
        self.obj.clone_ref(py)
    }
}

impl Drop for OwnedContext {
    fn drop(&mut self) {
        self.retrack();
    }
}

impl Traverse for OwnedContext {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let p = self.obj.as_ptr();
        // SAFETY: reading the count of a live object during a traverse.
        if self.untracked != 0 && unsafe { ffi::Py_REFCNT(p) } == 1 {
            // SAFETY: `p` is a live Context (has tp_traverse) that we hold.
            unsafe { crate::runtime::gc::traverse_contents(p, visit) }
        } else {
            self.obj.traverse(visit)
        }
    }
}

pub(crate) struct TaskState {
    coro: Option<Py<PyAny>>,
    context: Option<OwnedContext>,
    fut_waiter: Option<Py<PyAny>>,
    /// `None` until someone asks: the default name `Task-N` is only
    /// formatted when needed.
    name: Option<Py<PyAny>>,
    name_id: u64,
    must_cancel: bool,
    log_destroy_pending: bool,
    num_cancels_requested: u64,
}

impl TaskState {
    fn empty() -> Self {
        TaskState {
            coro: None,
            context: None,
            fut_waiter: None,
            name: None,
            name_id: 0,
            must_cancel: false,
            log_destroy_pending: false,
            num_cancels_requested: 0,
        }
    }
}

#[pyclass(frozen, extends = Future, subclass, module = "ferroloop._ferroloop")]
pub struct Task {
    st: GilCell<TaskState>,
}

enum Resumed<'py> {
    Yield(Bound<'py, PyAny>),
    Return(Bound<'py, PyAny>),
    Raise(PyErr),
}

fn is_coroutine(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    // SAFETY: PyCoro_CheckExact only reads the type pointer.
    if unsafe { ffi::PyCoro_CheckExact(obj.as_ptr()) } != 0 {
        return Ok(true);
    }
    imports(py).iscoroutine.bind(py).call1((obj,))?.is_truthy()
}

// Every step enters and leaves the task in asyncio's `_current_tasks` (that
// is what `asyncio.current_task()` reads), so each costs one dict lookup
// instead of asyncio's two: setdefault checks and stores at once, pop reads
// and removes at once. The errors and the dict's contents are asyncio's.
fn enter_task(py: Python<'_>, loop_: &Bound<'_, PyAny>, task: &Bound<'_, PyAny>) -> PyResult<()> {
    let current = imports(py).current_tasks.bind(py);
    let before = current.len();
    // SAFETY: the dict, key and default are live objects for the call; the
    // result is a borrowed reference to the stored value, turned into an
    // owned one before any other code can change the dict.
    let stored = unsafe { ffi::PyDict_SetDefault(current.as_ptr(), loop_.as_ptr(), task.as_ptr()) };
    if stored.is_null() {
        return Err(PyErr::fetch(py));
    }
    if current.len() > before {
        return Ok(());
    }
    // SAFETY: non-null and borrowed from the dict, which is not touched
    // between the call and here.
    let other = unsafe { Bound::from_borrowed_ptr(py, stored) };
    Err(PyRuntimeError::new_err(format!(
        "Cannot enter into task {} while another task {} is being executed.",
        task.repr()?,
        other.repr()?
    )))
}

/// Remove `key` from `dict`, returning its value if it was there.
fn dict_pop<'py>(dict: &Bound<'py, PyDict>, key: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = dict.py();
    #[cfg(Py_3_13)]
    {
        let mut out: *mut ffi::PyObject = std::ptr::null_mut();
        // SAFETY: live dict and key; on 1 `out` is a new reference.
        match unsafe { ffi::PyDict_Pop(dict.as_ptr(), key.as_ptr(), &mut out) } {
            r if r < 0 => Err(PyErr::fetch(py)),
            0 => Ok(None),
            // SAFETY: a new, non-null reference (see above).
            _ => Ok(Some(unsafe { Bound::from_owned_ptr(py, out) })),
        }
    }
    #[cfg(not(Py_3_13))]
    {
        extern "C" {
            // Exported by 3.11 and 3.12 (Include/cpython/dictobject.h);
            // replaced by the public PyDict_Pop in 3.13.
            fn _PyDict_Pop(dict: *mut ffi::PyObject, key: *mut ffi::PyObject, deflt: *mut ffi::PyObject) -> *mut ffi::PyObject;
        }
        let before = dict.len();
        // SAFETY: live dict, key and default (None, borrowed for the call);
        // the result is a new reference or null with an exception set.
        let out = unsafe { _PyDict_Pop(dict.as_ptr(), key.as_ptr(), ffi::Py_None()) };
        if out.is_null() {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: a new, non-null reference.
        let v = unsafe { Bound::from_owned_ptr(py, out) };
        // The length tells a stored None from the default.
        Ok((dict.len() < before).then_some(v))
    }
}

fn leave_task(py: Python<'_>, loop_: &Bound<'_, PyAny>, task: &Bound<'_, PyAny>) -> PyResult<()> {
    let current = imports(py).current_tasks.bind(py);
    let popped = dict_pop(current, loop_)?;
    match popped {
        Some(t) if t.is(task) => Ok(()),
        other => {
            // asyncio leaves the dict as it found it when it refuses.
            if let Some(o) = &other {
                current.set_item(loop_, o)?;
            }
            Err(PyRuntimeError::new_err(format!(
                "Leaving task {} does not match the current task {}.",
                task.repr()?,
                match other {
                    Some(o) => o.repr()?.to_string(),
                    None => "None".to_owned(),
                }
            )))
        }
    }
}

/// Resume `coro`, sending None or throwing `exc`.
fn resume<'py>(py: Python<'py>, coro: &Bound<'py, PyAny>, exc: Option<Bound<'py, PyAny>>) -> Resumed<'py> {
    match exc {
        None => {
            let mut out: *mut ffi::PyObject = std::ptr::null_mut();
            // SAFETY: `coro` is live; Py_None is a valid borrowed argument;
            // `out` receives a new reference on NEXT/RETURN.
            let r = unsafe { ffi::PyIter_Send(coro.as_ptr(), ffi::Py_None(), &mut out) };
            match r {
                // SAFETY: on NEXT/RETURN `out` is a new, non-NULL reference.
                ffi::PySendResult::PYGEN_NEXT => Resumed::Yield(unsafe { Bound::from_owned_ptr(py, out) }),
                ffi::PySendResult::PYGEN_RETURN => Resumed::Return(unsafe { Bound::from_owned_ptr(py, out) }),
                _ => Resumed::Raise(PyErr::fetch(py)),
            }
        }
        Some(e) => match coro.call_method1("throw", (e,)) {
            Ok(v) => Resumed::Yield(v),
            Err(err) if err.is_instance_of::<PyStopIteration>(py) => {
                let value = err.value(py).getattr("value").unwrap_or_else(|_| py.None().into_bound(py));
                Resumed::Return(value)
            }
            Err(err) => Resumed::Raise(err),
        },
    }
}

impl Task {
    /// The task's context, for a caller that may keep it.
    pub(crate) fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow_mut().context.as_mut().map(|c| c.shared(py))
    }

    /// The task's context, to run a step in.
    fn run_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().context.as_ref().map(|c| c.for_run(py))
    }

    fn fut<'a, 'py>(slf: &'a Bound<'py, Task>) -> &'a Bound<'py, Future> {
        slf.as_super()
    }

    /// Construct and start a task on a ferroloop loop (`loop.create_task`).
    pub(crate) fn new_for_loop<'py>(
        loop_: &Bound<'py, LoopCore>,
        coro: &Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
        eager_start: bool,
    ) -> PyResult<Bound<'py, Task>> {
        let py = loop_.py();
        let fut = Future { st: GilCell::new(FutState::empty()) };
        let init = PyClassInitializer::from(fut).add_subclass(Task { st: GilCell::new(TaskState::empty()) });
        let task = Bound::new(py, init)?;
        Self::init(&task, coro, loop_.as_any(), name, context, eager_start)?;
        Ok(task)
    }

    fn init(
        slf: &Bound<'_, Task>,
        coro: &Bound<'_, PyAny>,
        loop_: &Bound<'_, PyAny>,
        name: Option<Bound<'_, PyAny>>,
        context: Option<Bound<'_, PyAny>>,
        eager_start: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let fstate = Future::new_state(loop_)?;
        let old = std::mem::replace(&mut *Self::fut(slf).get().st.borrow_mut(), fstate);
        drop(old);
        if !is_coroutine(py, coro)? {
            slf.get().st.borrow_mut().log_destroy_pending = false;
            return Err(PyTypeError::new_err(format!("a coroutine was expected, got {}", coro.repr()?)));
        }
        let name = match name.filter(|n| !n.is_none()) {
            None => None,
            Some(n) if n.is_exact_instance_of::<PyString>() => Some(n.unbind()),
            Some(n) => Some(n.str()?.into_any().unbind()),
        };
        let ctx = match context.filter(|c| !c.is_none()) {
            Some(c) => OwnedContext::given(c.unbind()),
            None => OwnedContext::own_copy(copy_context(py)?),
        };
        let old = std::mem::replace(
            &mut *slf.get().st.borrow_mut(),
            TaskState {
                coro: Some(coro.clone().unbind()),
                context: Some(ctx),
                fut_waiter: None,
                name_id: if name.is_none() { TASK_NAME_COUNTER.fetch_add(1, Ordering::Relaxed) + 1 } else { 0 },
                name,
                must_cancel: false,
                log_destroy_pending: true,
                num_cancels_requested: 0,
            },
        );
        drop(old);
        let running = match loop_.cast::<LoopCore>() {
            Ok(l) => l.get().running(),
            Err(_) => loop_.call_method0("is_running")?.is_truthy()?,
        };
        if crate::runtime::registry::enabled() && slf.get_type().is(py.get_type::<Task>()) {
            // Re-initialising an already registered task is harmless: a set.
            crate::runtime::registry::insert(slf.as_any());
        } else {
            imports(py).register_task.bind(py).call1((slf,))?;
        }
        if let Ok(l) = loop_.cast::<LoopCore>() {
            l.get().metrics.tasks_created.add(1);
        }
        if eager_start && running {
            Self::eager_start(slf)
        } else {
            Self::schedule_step(slf, None)
        }
    }

    /// Run the first step right now, inside the caller's turn, with this
    /// task swapped in as the current task (Python 3.12 semantics).
    fn eager_start(slf: &Bound<'_, Task>) -> PyResult<()> {
        let py = slf.py();
        let loop_ = Self::fut(slf).get().loop_obj(py)?;
        let current = imports(py).current_tasks.bind(py);
        let prev = current.get_item(&loop_)?;
        current.set_item(&loop_, slf)?;
        let ctx = slf.get().run_context(py);
        let r = run_in_context(py, ctx.as_ref(), || Self::step(slf, None, false));
        match prev {
            Some(p) => current.set_item(&loop_, p)?,
            None => current.del_item(&loop_)?,
        }
        if Self::fut(slf).get().state() != State::Pending {
            // A task finished by its eager step lets go of its coroutine
            // (asyncio 3.12+, gh-122332): get_coro() is None.
            let old = slf.get().st.borrow_mut().coro.take();
            drop(old);
        }
        r
    }

    /// Queue a step (asyncio: `loop.call_soon(self.__step, exc, context=...)`).
    fn schedule_step(slf: &Bound<'_, Task>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let native = Self::fut(slf).get().st.borrow().native.as_ref().map(|n| n.clone_ref(py));
        match native {
            Some(n) => n.get().push_job(Job::native(&STEP, slf.clone().into_any().unbind(), exc.map(Bound::unbind), 0)),
            None => {
                let loop_ = Self::fut(slf).get().loop_obj(py)?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("context", slf.get().context(py))?;
                let step = slf.getattr("_step")?;
                let args = match exc {
                    Some(e) => PyTuple::new(py, [step, e])?,
                    None => PyTuple::new(py, [step])?,
                };
                loop_.call_method("call_soon", args, Some(&kwargs))?;
                Ok(())
            }
        }
    }

    /// asyncio's `Task.__step`. Returns Err only for SystemExit and
    /// KeyboardInterrupt raised by the coroutine, and for misuse.
    fn step(slf: &Bound<'_, Task>, exc: Option<Bound<'_, PyAny>>, enter: bool) -> PyResult<()> {
        let py = slf.py();
        let fut = Self::fut(slf);
        if fut.get().state() != State::Pending {
            let e = exc.map(|e| e.repr().map(|r| r.to_string())).transpose()?.unwrap_or_else(|| "None".into());
            return Err(invalid_state(py, format!("_step(): already done: {}, {}", slf.repr()?, e)));
        }
        let mut exc = exc;
        if slf.get().st.borrow().must_cancel {
            let is_cancel = match &exc {
                Some(e) => e.is_instance(imports(py).cancelled_error.bind(py))?,
                None => false,
            };
            if !is_cancel {
                exc = Some(fut.get().make_cancelled_error(py)?);
            }
            slf.get().st.borrow_mut().must_cancel = false;
        }
        let (coro, old_waiter) = {
            let mut st = slf.get().st.borrow_mut();
            (st.coro.as_ref().map(|c| c.clone_ref(py)), st.fut_waiter.take())
        };
        drop(old_waiter);
        let Some(coro) = coro else {
            return Err(PyRuntimeError::new_err("Task has no coroutine"));
        };
        let loop_ = fut.get().loop_obj(py)?;
        if enter {
            enter_task(py, &loop_, slf.as_any())?;
        }
        let r = Self::handle_resumed(slf, resume(py, coro.bind(py), exc));
        // A task finishes only here: its coroutine returned or raised.
        if fut.get().state() != State::Pending {
            if let Some(l) = &fut.get().st.borrow().native {
                l.get().metrics.tasks_finished.add(1);
            }
        }
        if enter {
            leave_task(py, &loop_, slf.as_any())?;
        }
        r
    }

    fn handle_resumed(slf: &Bound<'_, Task>, resumed: Resumed<'_>) -> PyResult<()> {
        let py = slf.py();
        let fut = Self::fut(slf);
        match resumed {
            Resumed::Return(value) => {
                let must_cancel = std::mem::replace(&mut slf.get().st.borrow_mut().must_cancel, false);
                if must_cancel {
                    // Cancelled right before the coroutine returned.
                    let msg = fut.get().st.borrow().cancel_message.as_ref().map(|m| m.clone_ref(py));
                    Future::do_cancel(fut, msg).map(drop)
                } else {
                    Future::do_set_result(fut, value.unbind())
                }
            }
            Resumed::Raise(err) => {
                if err.is_instance(py, imports(py).cancelled_error.bind(py)) {
                    fut.get().st.borrow_mut().cancelled_exc = Some(exc_value(py, err).unbind());
                    Future::do_cancel(fut, None).map(drop)
                } else if is_fatal(py, &err) {
                    let v = exc_value(py, err);
                    Future::do_set_exception(fut, &v)?;
                    Err(PyErr::from_value(v))
                } else {
                    Future::do_set_exception(fut, &exc_value(py, err))
                }
            }
            Resumed::Yield(result) => Self::handle_yield(slf, result),
        }
    }

    fn handle_yield(slf: &Bound<'_, Task>, result: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let fut = Self::fut(slf);
        let rtype = result.get_type();
        // Exact native types: fields read directly, wake-up registered as a
        // Rust callback. Anything else that looks like a future goes through
        // its Python API, as asyncio's Task does.
        let native = rtype.is(py.get_type::<Future>()) || rtype.is(py.get_type::<Task>());
        let (same_loop, blocking) = if native {
            let rfut = result.cast::<Future>().expect("exact type checked");
            let rst = rfut.get().st.borrow();
            let fst = fut.get().st.borrow();
            let same = matches!((&rst.loop_, &fst.loop_), (Some(a), Some(b)) if a.is(b));
            (same, Some(rst.blocking))
        } else {
            match result.getattr_opt("_asyncio_future_blocking")? {
                Some(b) if !b.is_none() => {
                    let rloop = match result.getattr_opt("get_loop")? {
                        Some(get_loop) => get_loop.call0()?,
                        None => result.getattr("_loop")?,
                    };
                    (rloop.is(&fut.get().loop_obj(py)?), Some(b.is_truthy()?))
                }
                _ => (false, None),
            }
        };
        if let Some(blocking) = blocking {
            let problem = if !same_loop {
                Some(format!("Task {} got Future {} attached to a different loop", slf.repr()?, result.repr()?))
            } else if !blocking {
                Some(format!("yield was used instead of yield from in task {} with {}", slf.repr()?, result.repr()?))
            } else if result.is(slf) {
                Some(format!("Task cannot await on itself: {}", slf.repr()?))
            } else {
                None
            };
            if let Some(msg) = problem {
                return Self::schedule_step(slf, Some(exc_value(py, PyRuntimeError::new_err(msg))));
            }
            if native {
                let rfut = result.cast::<Future>().expect("exact type checked");
                rfut.get().st.borrow_mut().blocking = false;
                Future::add_callback(rfut, Callback::Native { kind: &WAKEUP, target: slf.clone().into_any().unbind() })?;
            } else {
                result.setattr("_asyncio_future_blocking", false)?;
                let kwargs = PyDict::new(py);
                kwargs.set_item("context", slf.get().context(py))?;
                result.call_method("add_done_callback", (slf.getattr("_wakeup")?,), Some(&kwargs))?;
            }
            return Self::after_wait_registered(slf, result);
        }
        if result.is_none() {
            // A bare `yield` gives up one loop iteration.
            return Self::schedule_step(slf, None);
        }
        let msg = if imports(py).isgenerator.bind(py).call1((&result,))?.is_truthy()? {
            format!(
                "yield was used instead of yield from for generator in task {} with {}",
                slf.repr()?,
                result.repr()?
            )
        } else {
            format!("Task got bad yield: {}", result.repr()?)
        };
        Self::schedule_step(slf, Some(exc_value(py, PyRuntimeError::new_err(msg))))
    }

    fn after_wait_registered(slf: &Bound<'_, Task>, waiter: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let must_cancel = {
            let mut st = slf.get().st.borrow_mut();
            st.fut_waiter = Some(waiter.clone().unbind());
            st.must_cancel
        };
        if must_cancel {
            let msg = Self::fut(slf).get().st.borrow().cancel_message.as_ref().map(|m| m.clone_ref(py));
            let kwargs = PyDict::new(py);
            kwargs.set_item("msg", msg)?;
            if waiter.call_method("cancel", (), Some(&kwargs))?.is_truthy()? {
                slf.get().st.borrow_mut().must_cancel = false;
            }
        }
        Ok(())
    }

    /// asyncio's `Task.__wakeup`.
    fn wakeup(slf: &Bound<'_, Task>, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let ftype = fut.get_type();
        let outcome = if ftype.is(py.get_type::<Future>()) || ftype.is(py.get_type::<Task>()) {
            fut.cast::<Future>().expect("exact type checked").get().get_result(py).map(drop)
        } else {
            fut.call_method0("result").map(drop)
        };
        match outcome {
            Ok(()) => Self::step(slf, None, true),
            Err(e) => Self::step(slf, Some(exc_value(py, e)), true),
        }
    }

    /// Route an unexpected error from a step to the exception handler, as
    /// asyncio's `Handle._run` would for `Task.__step`.
    fn report_step_error(slf: &Bound<'_, Task>, err: PyErr, what: &str) -> PyResult<()> {
        let py = slf.py();
        if is_fatal(py, &err) {
            return Err(err);
        }
        let loop_ = Self::fut(slf).get().loop_obj(py)?;
        let d = PyDict::new(py);
        d.set_item("message", format!("Exception in callback {}.{}()", slf.repr()?, what))?;
        d.set_item("exception", exc_value(py, err))?;
        crate::runtime::util::report(&loop_, d)
    }

    pub(crate) fn run_step_job(slf: &Bound<'_, Task>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().run_context(py);
        match run_in_context(py, ctx.as_ref(), || Self::step(slf, exc, true)) {
            Ok(()) => Ok(()),
            Err(e) => Self::report_step_error(slf, e, "__step"),
        }
    }

    pub(crate) fn run_wakeup_job(slf: &Bound<'_, Task>, fut: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().run_context(py);
        match run_in_context(py, ctx.as_ref(), || Self::wakeup(slf, &fut)) {
            Ok(()) => Ok(()),
            Err(e) => Self::report_step_error(slf, e, "__wakeup"),
        }
    }

    pub(crate) fn do_cancel(slf: &Bound<'_, Task>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        let py = slf.py();
        let fut = Self::fut(slf);
        {
            let mut fst = fut.get().st.borrow_mut();
            if fst.loop_.is_none() {
                return Err(PyRuntimeError::new_err("Future object is not initialized."));
            }
            fst.log_tb = false;
            if fst.state != State::Pending {
                return Ok(false);
            }
        }
        let waiter = {
            let mut st = slf.get().st.borrow_mut();
            st.num_cancels_requested += 1;
            st.fut_waiter.as_ref().map(|w| w.clone_ref(py))
        };
        if let Some(w) = waiter {
            let kwargs = PyDict::new(py);
            kwargs.set_item("msg", msg.as_ref().map(|m| m.clone_ref(py)))?;
            if w.bind(py).call_method("cancel", (), Some(&kwargs))?.is_truthy()? {
                return Ok(true);
            }
        }
        slf.get().st.borrow_mut().must_cancel = true;
        let old = std::mem::replace(&mut fut.get().st.borrow_mut().cancel_message, msg);
        drop(old);
        Ok(true)
    }

    pub(crate) fn finalize(slf: &Bound<'_, Task>) -> PyResult<()> {
        let py = slf.py();
        let fut = Self::fut(slf);
        let pending = fut.get().state() == State::Pending && slf.get().st.borrow().log_destroy_pending;
        if pending {
            let (loop_, tb) = {
                let st = fut.get().st.borrow();
                (st.loop_.as_ref().map(|l| l.clone_ref(py)), st.source_tb.as_ref().map(|t| t.clone_ref(py)))
            };
            if let Some(loop_) = loop_ {
                let d = PyDict::new(py);
                d.set_item("task", slf)?;
                d.set_item("message", "Task was destroyed but it is pending!")?;
                if let Some(tb) = tb {
                    d.set_item("source_traceback", tb)?;
                }
                loop_.bind(py).call_method1("call_exception_handler", (d,))?;
            }
        }
        Future::finalize(fut)
    }
}

#[pymethods]
impl Task {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyClassInitializer<Self> {
        PyClassInitializer::from(Future { st: GilCell::new(FutState::empty()) })
            .add_subclass(Task { st: GilCell::new(TaskState::empty()) })
    }

    #[pyo3(signature = (coro, *, r#loop = None, name = None, context = None, eager_start = false))]
    fn __init__(
        slf: &Bound<'_, Self>,
        coro: &Bound<'_, PyAny>,
        r#loop: Option<Bound<'_, PyAny>>,
        name: Option<Bound<'_, PyAny>>,
        context: Option<Bound<'_, PyAny>>,
        eager_start: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let loop_ = match r#loop.filter(|l| !l.is_none()) {
            Some(l) => l,
            None => imports(py).get_event_loop.bind(py).call0()?,
        };
        Self::init(slf, coro, &loop_, name, context, eager_start)
    }

    #[pyo3(signature = (msg = None))]
    fn cancel(slf: &Bound<'_, Self>, msg: Option<Py<PyAny>>) -> PyResult<bool> {
        Self::do_cancel(slf, msg.filter(|m| !m.is_none(slf.py())))
    }

    fn cancelling(&self) -> u64 {
        self.st.borrow().num_cancels_requested
    }

    fn uncancel(&self) -> u64 {
        let mut st = self.st.borrow_mut();
        if st.num_cancels_requested > 0 {
            st.num_cancels_requested -= 1;
            // 3.13: withdrawing the last request also withdraws a cancel
            // not yet delivered (TaskGroup and timeout() rely on it).
            if st.num_cancels_requested == 0 && crate::runtime::pyver::at_least(13) {
                st.must_cancel = false;
            }
        }
        st.num_cancels_requested
    }

    #[pyo3(signature = (result, /))]
    fn set_result(&self, result: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = result;
        Err(PyRuntimeError::new_err("Task does not support set_result operation"))
    }

    #[pyo3(signature = (exception, /))]
    fn set_exception(&self, exception: &Bound<'_, PyAny>) -> PyResult<()> {
        let _ = exception;
        Err(PyRuntimeError::new_err("Task does not support set_exception operation"))
    }

    fn get_coro(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().coro.as_ref().map(|c| c.clone_ref(py))
    }

    fn get_context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context(py)
    }

    fn get_name(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut st = self.st.borrow_mut();
        if let Some(n) = &st.name {
            return Ok(n.clone_ref(py));
        }
        if st.name_id == 0 {
            return Ok(py.None()); // __init__ never ran
        }
        let n = PyString::new(py, &format!("Task-{}", st.name_id)).into_any().unbind();
        st.name = Some(n.clone_ref(py));
        Ok(n)
    }

    #[pyo3(signature = (value, /))]
    fn set_name(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = if value.is_exact_instance_of::<PyString>() { value.clone() } else { value.str()?.into_any() };
        let old = std::mem::replace(&mut self.st.borrow_mut().name, Some(v.unbind()));
        drop(old);
        Ok(())
    }

    #[pyo3(signature = (*, limit = None))]
    fn get_stack<'py>(slf: &Bound<'py, Self>, limit: Option<Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        imports(slf.py()).task_get_stack.bind(slf.py()).call1((slf, limit))
    }

    #[pyo3(signature = (*, limit = None, file = None))]
    fn print_stack<'py>(
        slf: &Bound<'py, Self>,
        limit: Option<Bound<'py, PyAny>>,
        file: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        imports(slf.py()).task_print_stack.bind(slf.py()).call1((slf, limit, file))
    }

    fn _repr_info<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        imports(slf.py()).task_repr_info.bind(slf.py()).call1((slf,))
    }

    #[pyo3(signature = (exc = None))]
    fn _step(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        Self::step(slf, exc.filter(|e| !e.is_none()), true)
    }

    #[pyo3(signature = (fut, /))]
    fn _wakeup(slf: &Bound<'_, Self>, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::wakeup(slf, fut)
    }

    #[getter]
    fn _coro(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.get_coro(py)
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context(py)
    }

    #[getter]
    fn _fut_waiter(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().fut_waiter.as_ref().map(|c| c.clone_ref(py))
    }

    #[getter]
    fn _must_cancel(&self) -> bool {
        self.st.borrow().must_cancel
    }

    #[getter]
    fn _num_cancels_requested(&self) -> u64 {
        self.st.borrow().num_cancels_requested
    }

    #[getter(_log_destroy_pending)]
    fn get_log_destroy_pending(&self) -> bool {
        self.st.borrow().log_destroy_pending
    }

    #[deleter(_log_destroy_pending)]
    fn del_log_destroy_pending(&self) -> PyResult<()> {
        Err(crate::runtime::util::cannot_delete())
    }

    #[setter(_log_destroy_pending)]
    fn set_log_destroy_pending(&self, v: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = v.is_truthy()?;
        self.st.borrow_mut().log_destroy_pending = v;
        Ok(())
    }

    /// Task's finalizer as a method (see `Future.__del__`).
    fn __del__(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::finalize(slf)
    }

    /// An exact native Task reports the stand-in subclass of `asyncio.Task`
    /// (see `Future.__class__`).
    #[getter]
    fn __class__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let ty = slf.get_type();
        if ty.is(py.get_type::<Task>()) {
            return Ok(crate::runtime::shadows::shadow_classes(py)?.task.bind(py).clone());
        }
        Ok(ty.into_any())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            traverse!(&visit; st.coro, st.context, st.fut_waiter, st.name);
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = {
            let mut st = self.st.borrow_mut();
            (st.coro.take(), st.context.take(), st.fut_waiter.take(), st.name.take())
        };
        drop(old);
    }
}

/// `loop.create_task` (a method of `LoopCore`, defined here: the scheduler
/// does not name Task).
#[pymethods]
impl LoopCore {
    #[pyo3(signature = (coro, *, name = None, context = None, eager_start = None, **kwargs))]
    pub(crate) fn create_task<'py>(
        slf: &Bound<'py, Self>,
        coro: &Bound<'py, PyAny>,
        name: Option<Bound<'py, PyAny>>,
        context: Option<Bound<'py, PyAny>>,
        eager_start: Option<bool>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        slf.get().check_closed()?;
        let factory = slf.get().st.borrow().task_factory.as_ref().map(|f| f.clone_ref(py));
        let extra = kwargs.filter(|k| !k.is_empty());
        match factory {
            None => {
                if let Some(extra) = extra {
                    // asyncio 3.13.3+ hands them to Task(), which takes none.
                    let key = extra.keys().get_item(0)?;
                    return Err(PyTypeError::new_err(format!(
                        "create_task() got an unexpected keyword argument {}",
                        key.repr()?
                    )));
                }
                Ok(Task::new_for_loop(slf, coro, name, context, eager_start.unwrap_or(false))?.into_any())
            }
            Some(f) => {
                // Keyword arguments a custom factory understands reach it
                // (asyncio 3.13.3+ forwards all of them; ferroloop does on
                // every version, as it accepts eager_start everywhere).
                let fkwargs = match extra {
                    Some(e) => e.copy()?,
                    None => PyDict::new(py),
                };
                if let Some(c) = context.filter(|c| !c.is_none()) {
                    fkwargs.set_item("context", c)?;
                }
                if let Some(e) = eager_start {
                    fkwargs.set_item("eager_start", e)?;
                }
                let name = name.filter(|n| !n.is_none());
                let forward_name = crate::runtime::pyver::at_least_patch(13, 3);
                if forward_name {
                    if let Some(n) = &name {
                        fkwargs.set_item("name", n)?;
                    }
                }
                let task = f.bind(py).call((slf, coro), Some(&fkwargs))?;
                if !forward_name {
                    if let Some(n) = name {
                        if let Ok(set_name) = task.getattr("set_name") {
                            set_name.call1((n,))?;
                        }
                    }
                }
                Ok(task)
            }
        }
    }
}
