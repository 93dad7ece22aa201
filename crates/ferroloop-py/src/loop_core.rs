//! `LoopCore`: the scheduling half of the event loop.
//!
//! `ferroloop.Loop` is a Python class deriving from `LoopCore` and
//! `asyncio.AbstractEventLoop`. Everything on the hot path lives here:
//! `call_soon`/`call_later`/`call_at`, `create_future`, `create_task` and the
//! iteration itself (`_run_once`). Cold paths (exception handler, executors,
//! async generator hooks, `run_until_complete`) are in `python/ferroloop`.
//!
//! One iteration (`run_once`), in asyncio's order:
//! 1. drop cancelled timers from the top of the heap (or rebuild the heap when
//!    more than half of it is cancelled);
//! 2. poll the reactor once — with timeout 0 if anything is ready, until the
//!    next deadline otherwise — releasing the GIL while it blocks;
//! 3. move every timer due before `now + clock_resolution` to the ready queue;
//! 4. run exactly the jobs that were ready at that point; jobs they schedule
//!    wait for the next iteration.
//!
//! The ready queue holds [`Job`]s rather than only `Handle` objects: a
//! Future's done callbacks and a Task's steps and wake-ups are queued as
//! plain Rust values, so the common path allocates no Python object.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroloop_engine::reactor::{Injector, Reactor, Readiness};
use ferroloop_engine::{clock, ReadyQueue, TimerHeap};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::future::Future;
use crate::gil::GilCell;
use crate::handle::{make_handle, Handle};
use crate::imports::imports;
use crate::task::Task;
use crate::datagram::DatagramCore;
use crate::sockops::{Outcome, SockKind, SockOp};
use crate::transport::TransportCore;
use crate::util::{call_in_context, copy_context, is_fatal, write_unraisable};

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`.
const MAX_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES` / `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
const MIN_SCHEDULED_FOR_COMPACTION: usize = 100;
const CANCELLED_FRACTION_FOR_COMPACTION: f64 = 0.5;

pub(crate) enum Job {
    /// A `call_soon`/`call_later` handle.
    Handle(Py<Handle>),
    /// A Future done-callback: `cb(arg)` inside `ctx`.
    Callback {
        cb: Py<PyAny>,
        arg: Py<PyAny>,
        ctx: Option<Py<PyAny>>,
        /// `ctx` is a shared snapshot: run in a private copy of it.
        shared: bool,
    },
    /// Run one step of a native Task, optionally throwing `exc` into it.
    Step { task: Py<Task>, exc: Option<Py<PyAny>> },
    /// A native Task's awaited future finished.
    Wakeup { task: Py<Task>, fut: Py<PyAny> },
    /// An `add_reader`/`add_writer` callback whose descriptor is ready; the
    /// descriptor is re-armed after the callback (level-triggered emulation).
    Io { fd: i32, handle: Py<Handle> },
    /// A native transport's socket is readable / writable.
    TransportRead(Py<TransportCore>),
    TransportWrite(Py<TransportCore>),
    /// The descriptor of a pending `sock_*` operation is ready (sockops.rs).
    SockIo { fd: i32, write: bool },
    /// A native datagram transport's socket is readable / writable.
    DgramIo { core: Py<DatagramCore>, write: bool },
}

/// Who waits on one direction of a descriptor.
pub(crate) enum Waiter {
    /// An `add_reader`/`add_writer` callback.
    Handle(Py<Handle>),
    /// A pending `sock_*` operation.
    Sock(Box<SockOp>),
    /// A native datagram transport (datagram.rs).
    Dgram(Py<DatagramCore>),
}

impl Waiter {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Waiter::Handle(h) => visit.call(h),
            Waiter::Sock(op) => op.traverse(visit),
            Waiter::Dgram(c) => visit.call(c),
        }
    }

    /// asyncio cancels the Handle a replaced or removed callback had; a
    /// replaced `sock_*` operation's Future just never completes, as there.
    fn discard(self, py: Python<'_>) {
        if let Waiter::Handle(h) = self {
            Handle::cancel_quiet(h.bind(py));
        }
    }
}

/// What is registered for one descriptor: `add_reader`/`add_writer`
/// callbacks and/or the native transport that owns it (sendfile adds a
/// writer callback on a transport's socket for a while).
#[derive(Default)]
struct FdEntry {
    reader: Option<Waiter>,
    writer: Option<Waiter>,
    transport: Option<Py<TransportCore>>,
    /// The file object add_reader/add_writer first got for this descriptor
    /// (None for a plain int): as asyncio's selector key keeps it, so that
    /// remove_reader(sock) finds the registration after `sock.close()`.
    fileobj: Option<Py<PyAny>>,
}

impl FdEntry {
    /// Reactor interest: a transport always listens both ways.
    fn interest(&self) -> (bool, bool) {
        let t = self.transport.is_some();
        (self.reader.is_some() || t, self.writer.is_some() || t)
    }

    fn is_empty(&self) -> bool {
        self.reader.is_none() && self.writer.is_none() && self.transport.is_none()
    }
}

impl Job {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Job::Handle(h) => visit.call(h),
            Job::Callback { cb, arg, ctx, .. } => {
                visit.call(cb)?;
                visit.call(arg)?;
                visit.call(ctx)
            }
            Job::Step { task, exc } => {
                visit.call(task)?;
                visit.call(exc)
            }
            Job::Wakeup { task, fut } => {
                visit.call(task)?;
                visit.call(fut)
            }
            Job::Io { handle, .. } => visit.call(handle),
            Job::TransportRead(t) | Job::TransportWrite(t) => visit.call(t),
            Job::SockIo { .. } => Ok(()),
            Job::DgramIo { core, .. } => visit.call(core),
        }
    }
}

pub(crate) struct LoopState {
    ready: ReadyQueue<Job>,
    timers: TimerHeap<Py<Handle>>,
    timer_cancelled: usize,
    stopping: bool,
    closed: bool,
    running: bool,
    debug: bool,
    /// What set_debug() was given (get_debug() returns it, as asyncio's
    /// does); `debug` is its truth value, read on the hot path.
    debug_value: Option<Py<PyAny>>,
    thread_id: u64,
    task_factory: Option<Py<PyAny>>,
    slow_callback_duration: f64,
    fds: HashMap<i32, FdEntry>,
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct LoopCore {
    st: GilCell<LoopState>,
    /// `None` once the loop is closed: close() releases the epoll and
    /// waker descriptors right away, as asyncio closes its selector.
    reactor: Mutex<Option<Reactor>>,
    io_events: Mutex<Vec<Readiness>>,
    injector: GilCell<Option<Arc<Injector<Job>>>>,
    clock_resolution: f64,
    /// The last context snapshot handed out (see contexts.rs).
    ctx_cache: GilCell<Option<Py<PyAny>>>,
}

/// Ready jobs beyond which `call_soon_threadsafe` from a foreign thread
/// yields the GIL: a burst up to it costs no switch, a storm is held to
/// about what the loop can run in a fraction of a millisecond.
const THREADSAFE_BACKLOG: usize = 1024;

fn current_thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions. It is the value Python's
    // threading.get_ident() returns on Linux.
    unsafe { libc::pthread_self() as u64 }
}

pub(crate) fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

impl LoopCore {
    #[inline]
    pub(crate) fn debug(&self) -> bool {
        self.st.borrow().debug
    }

    #[inline]
    pub(crate) fn running(&self) -> bool {
        self.st.borrow().running
    }

    pub(crate) fn timer_cancelled(&self) {
        self.st.borrow_mut().timer_cancelled += 1;
    }

    /// A context for a callback registered without `context=`: the loop's
    /// shared snapshot when the current context still matches it.
    #[inline]
    pub(crate) fn snapshot_context(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, bool)> {
        crate::contexts::snapshot(py, &self.ctx_cache)
    }

    /// Queue a job for the next iteration (the `call_soon` of native code).
    #[inline]
    pub(crate) fn push_job(&self, job: Job) -> PyResult<()> {
        let mut st = self.st.borrow_mut();
        if st.closed {
            drop(st);
            drop(job);
            return Err(closed_error());
        }
        st.ready.push_back(job);
        let other_thread = st.running && st.thread_id != current_thread_id();
        drop(st);
        if other_thread {
            self.wake()?;
        }
        Ok(())
    }

    fn wake(&self) -> PyResult<()> {
        match self.injector.borrow().as_ref() {
            Some(inj) => inj.wake().map_err(crate::util::os_error),
            None => Ok(()),
        }
    }

    /// `loop.call_exception_handler(context)`; errors from the handler other
    /// than SystemExit/KeyboardInterrupt are reported as unraisable.
    pub(crate) fn report(loop_: &Bound<'_, PyAny>, context: Bound<'_, PyDict>) -> PyResult<()> {
        match loop_.call_method1("call_exception_handler", (context,)) {
            Ok(_) => Ok(()),
            Err(e) if is_fatal(loop_.py(), &e) => Err(e),
            Err(e) => {
                write_unraisable(loop_.py(), e, Some(loop_));
                Ok(())
            }
        }
    }

    fn check_closed(&self) -> PyResult<()> {
        if self.st.borrow().closed {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    /// Validation shared by call_soon/call_at; `debug` adds asyncio's
    /// debug-mode checks (thread and coroutine-function).
    fn check_callback(py: Python<'_>, st_debug: bool, thread_id: u64, cb: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        if st_debug && thread_id != 0 && thread_id != current_thread_id() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        // SAFETY: PyCoro_CheckExact only reads the object's type pointer.
        let is_coro = unsafe { ffi::PyCoro_CheckExact(cb.as_ptr()) } != 0;
        if is_coro
            || (st_debug
                && py
                    .import("asyncio.coroutines")?
                    .call_method1("iscoroutinefunction", (cb,))?
                    .is_truthy()?)
        {
            return Err(PyTypeError::new_err(format!("coroutines cannot be used with {method}()")));
        }
        if !cb.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "a callable object was expected by {method}(), got {}",
                cb.repr()?
            )));
        }
        Ok(())
    }

    pub(crate) fn source_traceback(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        // Called from native code, extract_stack() starts at the Python
        // caller: the frame that called call_soon or created the future.
        Ok(Some(imports(py).extract_stack.call0(py)?))
    }

    fn new_handle<'py>(
        slf: &Bound<'py, LoopCore>,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
        method: &str,
        when: Option<f64>,
    ) -> PyResult<Bound<'py, Handle>> {
        let py = slf.py();
        let (closed, debug, thread_id) = {
            let st = slf.get().st.borrow();
            (st.closed, st.debug, st.thread_id)
        };
        if closed {
            return Err(closed_error());
        }
        Self::check_callback(py, debug, if method == "call_soon_threadsafe" { 0 } else { thread_id }, callback, method)?;
        let (ctx, shared) = match context {
            Some(c) if !c.is_none() => (c.unbind(), false),
            _ => slf.get().snapshot_context(py)?,
        };
        let tb = if debug { Self::source_traceback(py)? } else { None };
        let h = Handle::new_inner(
            callback.clone().unbind(),
            args.clone().unbind(),
            ctx,
            shared,
            slf.clone().unbind(),
            tb,
            when.unwrap_or(f64::NAN),
        );
        make_handle(py, h, when.is_some())
    }

    fn schedule_at<'py>(
        slf: &Bound<'py, Self>,
        when: f64,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
        method: &str,
    ) -> PyResult<Bound<'py, Handle>> {
        let h = Self::new_handle(slf, callback, args, context, method, Some(when))?;
        h.get().scheduled.store(true, Ordering::Relaxed);
        slf.get().st.borrow_mut().timers.push(when, h.clone().unbind());
        Ok(h)
    }

    /// Run one job popped from the ready queue.
    fn run_job(slf: &Bound<'_, LoopCore>, job: Job) -> PyResult<()> {
        let py = slf.py();
        match job {
            Job::Handle(h) => Handle::run(h.bind(py)),
            Job::Callback { cb, arg, ctx, shared } => {
                let ctx = match ctx {
                    Some(c) if shared => Some(crate::contexts::private_copy(py, &c)?),
                    other => other,
                };
                let r = call_in_context(py, ctx.as_ref(), cb.bind(py), &PyTuple::new(py, [arg.bind(py)])?);
                match r {
                    Ok(()) => Ok(()),
                    Err(e) if is_fatal(py, &e) => Err(e),
                    Err(e) => {
                        // Report through a Handle, as asyncio would have one.
                        let args = PyTuple::new(py, [arg])?;
                        let ctx = match ctx {
                            Some(c) => c,
                            None => copy_context(py)?,
                        };
                        let h = Handle::new_inner(cb.clone_ref(py), args.clone().unbind(), ctx, false, slf.clone().unbind(), None, f64::NAN);
                        let h = make_handle(py, h, false)?;
                        let src = imports(py)
                            .format_callback_source
                            .call1(py, (cb, args))
                            .and_then(|s| s.extract::<String>(py))
                            .unwrap_or_else(|_| "<callback>".to_owned());
                        let d = PyDict::new(py);
                        d.set_item("message", format!("Exception in callback {src}"))?;
                        d.set_item("exception", crate::util::exc_value(py, e))?;
                        d.set_item("handle", h)?;
                        Self::report(slf.as_any(), d)
                    }
                }
            }
            Job::Step { task, exc } => Task::run_step_job(task.bind(py), exc.map(|e| e.into_bound(py))),
            Job::Wakeup { task, fut } => Task::run_wakeup_job(task.bind(py), fut.into_bound(py)),
            Job::Io { fd, handle } => {
                let r = Handle::run(handle.bind(py));
                slf.get().rearm(py, fd)?;
                r
            }
            Job::TransportRead(t) => TransportCore::run_job(t.bind(py), false),
            Job::TransportWrite(t) => TransportCore::run_job(t.bind(py), true),
            Job::SockIo { fd, write } => Self::run_sock_job(slf, fd, write),
            Job::DgramIo { core, write } => DatagramCore::run_job(core.bind(py), write),
        }
    }

    /// Put `w` into (or, with None, empty) one slot of `fd` and update the
    /// reactor's interest.
    pub(crate) fn set_waiter(&self, py: Python<'_>, fd: i32, write: bool, w: Option<Waiter>) -> PyResult<()> {
        let (known, r, w, old) = {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return Ok(());
            }
            let known = st.fds.contains_key(&fd);
            if w.is_none() && !known {
                return Ok(());
            }
            let e = st.fds.entry(fd).or_default();
            let old = std::mem::replace(Self::slot(e, write), w);
            let (r, wr) = e.interest();
            if e.is_empty() {
                st.fds.remove(&fd);
            }
            (known, r, wr, old)
        };
        drop(old);
        let res = match (r, w) {
            (false, false) if known => self.with_reactor(py, |re| re.deregister(fd))?,
            (false, false) => Ok(()),
            (r, w) => self.with_reactor(py, |re| re.set_interest(fd, r, w, known))?,
        };
        res.map_err(crate::util::os_error)
    }

    fn waiter_job(py: Python<'_>, fd: i32, w: &Waiter, write: bool) -> Job {
        match w {
            Waiter::Handle(h) => Job::Io { fd, handle: h.clone_ref(py) },
            Waiter::Sock(_) => Job::SockIo { fd, write },
            Waiter::Dgram(c) => Job::DgramIo { core: c.clone_ref(py), write },
        }
    }

    fn slot(e: &mut FdEntry, write: bool) -> &mut Option<Waiter> {
        if write {
            &mut e.writer
        } else {
            &mut e.reader
        }
    }

    /// Start a `sock_*` operation: try it now; if the socket is not ready,
    /// register it and return the Future it will complete.
    pub(crate) fn sock_start(slf: &Bound<'_, LoopCore>, sock: &Bound<'_, PyAny>, mut kind: SockKind, write: bool) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        crate::sockops::check_sock(sock, slf.get().debug())?;
        if let Outcome::Done(v) = SockOp::attempt(sock, &mut kind)? {
            return Ok(v);
        }
        let fut = Future::new_for_loop(slf)?;
        let fd: i32 = sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
        // asyncio's _ensure_fd_no_transport, called only when the
        // descriptor is in the transports' table at all (its `.data` is
        // the plain dict behind the WeakValueDictionary).
        let in_table = slf
            .getattr(pyo3::intern!(py, "_transports"))?
            .getattr(pyo3::intern!(py, "data"))?
            .cast_into::<PyDict>()?
            .contains(fd)?;
        if in_table {
            slf.call_method1(pyo3::intern!(py, "_ensure_fd_no_transport"), (fd,))?;
        }
        let op = Waiter::Sock(Box::new(SockOp { fut: fut.clone().unbind(), sock: sock.clone().unbind(), kind }));
        let this = slf.get();
        let (known, r, w, old) = {
            let mut st = this.st.borrow_mut();
            if st.closed {
                return Err(closed_error());
            }
            let known = st.fds.contains_key(&fd);
            let e = st.fds.entry(fd).or_default();
            let old = Self::slot(e, write).replace(op);
            let (r, w) = e.interest();
            (known, r, w, old)
        };
        if let Some(old) = old {
            old.discard(py);
        }
        this.with_reactor(py, |re| re.set_interest(fd, r, w, known))?.map_err(crate::util::os_error)?;
        Future::add_callback(&fut, crate::future::Callback::SockDone { fd, write })?;
        Ok(fut.into_any().unbind())
    }

    /// The Future of a `sock_*` operation is done: if it still waits in its
    /// slot (it was cancelled), take it out. Its reactor interest is left
    /// as it is (see sockops.rs).
    pub(crate) fn sock_done(&self, fut: &Bound<'_, PyAny>, fd: i32, write: bool) {
        let old = {
            let mut st = self.st.borrow_mut();
            let Some(e) = st.fds.get_mut(&fd) else { return };
            let slot = Self::slot(e, write);
            match slot {
                Some(Waiter::Sock(op)) if op.fut.as_ptr() == fut.as_ptr() => slot.take(),
                _ => None,
            }
        };
        drop(old);
    }

    fn run_sock_job(slf: &Bound<'_, LoopCore>, fd: i32, write: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let op = {
            let mut st = this.st.borrow_mut();
            let Some(e) = st.fds.get_mut(&fd) else { return Ok(()) };
            let slot = Self::slot(e, write);
            match slot.take() {
                Some(Waiter::Sock(op)) => op,
                other => {
                    *slot = other;
                    return Ok(());
                }
            }
        };
        let mut op = op;
        let fut = op.fut.bind(py).clone();
        if fut.get().state() != crate::future::State::Pending {
            return Ok(());
        }
        let sock = op.sock.bind(py).clone();
        match SockOp::attempt(&sock, &mut op.kind) {
            Ok(Outcome::Pending) => {
                // Back into the slot, unless a callback run by the attempt
                // (a socket subclass's method) registered something else.
                let mut st = this.st.borrow_mut();
                if let Some(e) = st.fds.get_mut(&fd) {
                    let slot = Self::slot(e, write);
                    if slot.is_none() {
                        *slot = Some(Waiter::Sock(op));
                    }
                }
                Ok(())
            }
            Ok(Outcome::Done(v)) => {
                drop(op);
                Future::do_set_result(&fut, v)
            }
            Err(e) if is_fatal(py, &e) => Err(e),
            Err(e) => {
                drop(op);
                Future::do_set_exception(&fut, &crate::util::exc_value(py, e))
            }
        }
    }

    pub(crate) fn register_transport(&self, py: Python<'_>, fd: i32, core: Py<TransportCore>) -> PyResult<()> {
        let known = {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return Err(closed_error());
            }
            let known = st.fds.contains_key(&fd);
            let e = st.fds.entry(fd).or_default();
            // A stale entry for a reused descriptor number: its callbacks
            // belonged to a socket that no longer exists.
            let old = (e.reader.take(), e.writer.take(), e.transport.replace(core), e.fileobj.take());
            drop(st);
            drop(old);
            known
        };
        self.with_reactor(py, |re| re.set_interest(fd, true, true, known))?
            .map_err(crate::util::os_error)
    }

    pub(crate) fn unregister_transport(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let (old, interest) = {
            let mut st = self.st.borrow_mut();
            let Some(e) = st.fds.get_mut(&fd) else { return Ok(()) };
            let old = e.transport.take();
            if old.is_none() {
                return Ok(());
            }
            let interest = e.interest();
            if e.is_empty() {
                st.fds.remove(&fd);
            }
            (old, interest)
        };
        drop(old);
        let r = match interest {
            (false, false) => self.with_reactor(py, |re| re.deregister(fd)),
            (r, w) => self.with_reactor(py, |re| re.set_interest(fd, r, w, true)),
        };
        match r {
            Ok(r) => r.map_err(crate::util::os_error),
            Err(_) => Ok(()), // loop already closed: the reactor is gone
        }
    }

    /// Lock the reactor. If the loop thread is blocked in poll (holding the
    /// lock with the GIL released), wake it and wait without the GIL.
    fn with_reactor<R>(&self, py: Python<'_>, f: impl FnOnce(&mut Reactor) -> R) -> PyResult<R> {
        let call = |r: &mut Option<Reactor>| match r.as_mut() {
            Some(r) => Ok(f(r)),
            None => Err(closed_error()),
        };
        loop {
            match self.reactor.try_lock() {
                Ok(mut r) => return call(&mut r),
                Err(std::sync::TryLockError::Poisoned(p)) => return call(&mut p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => {
                    self.wake()?;
                    py.detach(std::thread::yield_now);
                }
            }
        }
    }

    /// Re-register `fd` with its current interest so that readiness still
    /// present after a callback is reported again.
    fn rearm(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let interest = {
            let st = self.st.borrow();
            st.fds.get(&fd).map(FdEntry::interest)
        };
        if let Some((r, w)) = interest {
            if r || w {
                self.with_reactor(py, |re| re.set_interest(fd, r, w, true))?
                    .map_err(crate::util::os_error)?;
            }
        }
        Ok(())
    }

    /// selectors' `_fileobj_to_fd`, then what `epoll.register` says of a
    /// number that is no C int (asyncio's errors, in asyncio's order).
    fn fd_of(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
        if let Ok(fd) = obj.extract::<i32>() {
            if fd < 0 {
                return Err(PyValueError::new_err(format!("Invalid file descriptor: {fd}")));
            }
            return Ok(fd);
        }
        let py = obj.py();
        let invalid = || PyValueError::new_err(format!("Invalid file object: {}", obj.repr().map(|r| r.to_string()).unwrap_or_default()));
        let num = if obj.is_instance_of::<pyo3::types::PyInt>() {
            obj.clone()
        } else {
            let r = obj.getattr("fileno").and_then(|f| f.call0()).and_then(|n| py.get_type::<pyo3::types::PyInt>().call1((n,)));
            match r {
                Ok(n) => n,
                Err(e)
                    if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py)
                        || e.is_instance_of::<PyTypeError>(py)
                        || e.is_instance_of::<PyValueError>(py) =>
                {
                    return Err(invalid())
                }
                Err(e) => return Err(e),
            }
        };
        if num.lt(0)? {
            return Err(PyValueError::new_err(format!("Invalid file descriptor: {}", num.str()?)));
        }
        num.extract::<i32>().map_err(|_| {
            pyo3::exceptions::PyOverflowError::new_err("Python int too large to convert to C int")
        })
    }

    fn add_io(
        slf: &Bound<'_, LoopCore>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        let fileobj = fd;
        let fd = Self::fd_of(fileobj)?;
        let h = Self::new_handle(slf, callback, args, None, if write { "add_writer" } else { "add_reader" }, None)?.unbind();
        let ret = h.clone_ref(py);
        let h = Waiter::Handle(h);
        let (known, r, w, old) = {
            let mut st = this.st.borrow_mut();
            let known = st.fds.contains_key(&fd);
            let e = st.fds.entry(fd).or_default();
            if e.fileobj.is_none() && !fileobj.is_instance_of::<pyo3::types::PyInt>() {
                e.fileobj = Some(fileobj.clone().unbind());
            }
            let old = if write { e.writer.replace(h) } else { e.reader.replace(h) };
            let (r, w) = e.interest();
            (known, r, w, old)
        };
        if let Some(old) = old {
            old.discard(py);
        }
        let res = this.with_reactor(py, |re| re.set_interest(fd, r, w, known))?;
        if let Err(e) = res {
            let dropped = {
                let mut st = this.st.borrow_mut();
                let e2 = st.fds.get_mut(&fd).and_then(|e| if write { e.writer.take() } else { e.reader.take() });
                if st.fds.get(&fd).is_some_and(FdEntry::is_empty) {
                    st.fds.remove(&fd);
                }
                e2
            };
            drop(dropped);
            return Err(crate::util::os_error(e));
        }
        Ok(ret)
    }

    fn remove_io(&self, py: Python<'_>, fd: &Bound<'_, PyAny>, write: bool) -> PyResult<bool> {
        let (fd, gone) = match Self::fd_of(fd) {
            Ok(n) => (n, false),
            // A closed socket (fileno() -1): asyncio's selector searches its
            // keys for the object itself.
            Err(e) if e.is_instance_of::<PyValueError>(py) && !fd.is_instance_of::<pyo3::types::PyInt>() => {
                let st = self.st.borrow();
                let found = st.fds.iter().find(|(_, e)| e.fileobj.as_ref().is_some_and(|o| o.is(fd))).map(|(n, _)| *n);
                match found {
                    Some(n) => (n, true),
                    None => return Err(e),
                }
            }
            // A descriptor beyond C int range cannot be registered; asyncio's
            // selector, holding Python ints, simply does not find it.
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(py) => return Ok(false),
            Err(e) => return Err(e),
        };
        let (old, r, w) = {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return Ok(false);
            }
            let Some(e) = st.fds.get_mut(&fd) else { return Ok(false) };
            let old = if write { e.writer.take() } else { e.reader.take() };
            let (r, w) = e.interest();
            if e.is_empty() {
                st.fds.remove(&fd);
            }
            (old, r, w)
        };
        let Some(old) = old else { return Ok(false) };
        old.discard(py);
        let res = self.with_reactor(py, |re| re.set_interest(fd, r, w, true))?;
        if !gone {
            // (Closing the descriptor already took it out of epoll.)
            res.map_err(crate::util::os_error)?;
        }
        Ok(true)
    }

    /// What a slow job is reported as, taken before it runs and formatted
    /// after (asyncio's `_format_handle`: a Task step shows the task).
    fn job_subject(py: Python<'_>, job: &Job) -> Py<PyAny> {
        match job {
            Job::Handle(h) | Job::Io { handle: h, .. } => {
                let h = h.bind(py);
                let owner = h.get().inner.borrow().callback.as_ref().and_then(|cb| cb.bind(py).getattr("__self__").ok());
                match owner {
                    Some(o) if o.is_instance_of::<Task>() => o.unbind(),
                    _ => h.clone().into_any().unbind(),
                }
            }
            Job::Callback { cb, .. } => cb.clone_ref(py),
            Job::Step { task, .. } | Job::Wakeup { task, .. } => task.clone_ref(py).into_any(),
            Job::TransportRead(t) | Job::TransportWrite(t) => t.clone_ref(py).into_any(),
            Job::DgramIo { core, .. } => core.clone_ref(py).into_any(),
            Job::SockIo { fd, write } => {
                let what = if *write { "write" } else { "read" };
                pyo3::types::PyString::new(py, &format!("<sock_* {what} on fd {fd}>")).into_any().unbind()
            }
        }
    }

    pub(crate) fn run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();

        // 1. cancelled timers, 2. timeout.
        let (timeout, dead) = {
            let mut st = this.st.borrow_mut();
            let mut dead = Vec::new();
            let n = st.timers.len();
            if n > MIN_SCHEDULED_FOR_COMPACTION
                && st.timer_cancelled as f64 / n as f64 > CANCELLED_FRACTION_FOR_COMPACTION
            {
                dead = st.timers.retain(|h| !h.get().is_cancelled());
                st.timer_cancelled = 0;
            } else {
                while st.timers.peek().is_some_and(|h| h.get().is_cancelled()) {
                    let (_, h) = st.timers.pop().expect("peeked");
                    st.timer_cancelled = st.timer_cancelled.saturating_sub(1);
                    dead.push(h);
                }
            }
            for h in &dead {
                h.get().scheduled.store(false, Ordering::Relaxed);
            }
            let timeout = if !st.ready.is_empty() || st.stopping {
                Some(0.0)
            } else if let Some(when) = st.timers.peek_when() {
                Some((when - clock::monotonic()).clamp(0.0, MAX_SELECT_TIMEOUT))
            } else {
                None
            };
            (timeout, dead)
        };
        drop(dead);

        // 2. poll. With nothing registered but the waker and no need to
        // block, the syscall would only report wake-ups, which the ready
        // queue already holds.
        let registered = !this.st.borrow().fds.is_empty();
        if timeout != Some(0.0) || registered {
            // Never NaN (the heap keys NaN deadlines as -inf); try_ keeps a
            // stray one from panicking all the same.
            let dur = timeout.map(|t| Duration::try_from_secs_f64(t).unwrap_or(Duration::ZERO));
            let mut events = std::mem::take(&mut *this.io_events.lock().unwrap_or_else(|e| e.into_inner()));
            events.clear();
            let poll = |events: &mut Vec<Readiness>| match this.reactor.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                Some(r) => r.poll(dur, events),
                None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            };
            let res = if timeout == Some(0.0) { poll(&mut events) } else { py.detach(|| poll(&mut events)) };
            match res {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    // A signal: let Python run its handlers (KeyboardInterrupt
                    // surfaces here), then carry on with the iteration.
                    py.check_signals()?;
                }
                Err(e) => return Err(crate::util::os_error(e)),
            }
            if !events.is_empty() {
                let mut transport_jobs = Vec::new();
                let mut st = this.st.borrow_mut();
                for ev in &events {
                    let Some(e) = st.fds.get(&ev.fd) else { continue };
                    if let Some(t) = &e.transport {
                        TransportCore::on_ready(t.bind(py), ev.readable, ev.writable, ev.read_closed, &mut transport_jobs);
                    }
                    let reader = e.reader.as_ref().filter(|_| ev.readable).map(|w| Self::waiter_job(py, ev.fd, w, false));
                    let writer = e.writer.as_ref().filter(|_| ev.writable).map(|w| Self::waiter_job(py, ev.fd, w, true));
                    for j in [reader, writer].into_iter().flatten() {
                        st.ready.push_back(j);
                    }
                }
                st.ready.extend(transport_jobs);
            }
            *this.io_events.lock().unwrap_or_else(|e| e.into_inner()) = events;
        }
        let injector = this.injector.borrow().clone();
        if let Some(inj) = injector.filter(|i| i.has_pending()) {
            let mut st = this.st.borrow_mut();
            inj.drain_into(&mut st.ready);
        }

        // 3. due timers.
        {
            let mut st = this.st.borrow_mut();
            let end_time = if st.timers.is_empty() { f64::NEG_INFINITY } else { clock::monotonic() + this.clock_resolution };
            while st.timers.peek_when().is_some_and(|w| w < end_time) {
                let (_, h) = st.timers.pop().expect("peeked");
                h.get().scheduled.store(false, Ordering::Relaxed);
                st.ready.push_back(Job::Handle(h));
            }
        }

        // 4. run what is ready now.
        let (ntodo, debug) = {
            let st = this.st.borrow();
            (st.ready.len(), st.debug)
        };
        for _ in 0..ntodo {
            let job = {
                let mut st = this.st.borrow_mut();
                match st.ready.pop_front() {
                    Some(j) => j,
                    None => break,
                }
            };
            if let Job::Handle(h) | Job::Io { handle: h, .. } = &job {
                if h.get().is_cancelled() {
                    continue;
                }
            }
            if debug {
                let subject = Self::job_subject(py, &job);
                let t0 = clock::monotonic();
                let r = Self::run_job(slf, job);
                let dt = clock::monotonic() - t0;
                let slow = this.st.borrow().slow_callback_duration;
                if dt >= slow {
                    slf.call_method1("_log_slow_callback", (subject, dt))?;
                }
                r?;
            } else {
                Self::run_job(slf, job)?;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let reactor = Reactor::new().map_err(crate::util::os_error)?;
        let injector = Arc::new(Injector::new(reactor.waker()));
        Ok(LoopCore {
            st: GilCell::new(LoopState {
                ready: ReadyQueue::new(),
                timers: TimerHeap::new(),
                timer_cancelled: 0,
                stopping: false,
                closed: false,
                running: false,
                debug: false,
                debug_value: None,
                thread_id: 0,
                task_factory: None,
                slow_callback_duration: 0.1,
                fds: HashMap::new(),
            }),
            reactor: Mutex::new(Some(reactor)),
            io_events: Mutex::new(Vec::new()),
            injector: GilCell::new(Some(injector)),
            clock_resolution: clock::resolution(),
            ctx_cache: GilCell::new(None),
        })
    }

    /// The loop clock: `time.monotonic()`.
    fn time(&self) -> f64 {
        clock::monotonic()
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        self.clock_resolution
    }

    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon<'py>(
        slf: &Bound<'py, Self>,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let h = Self::new_handle(slf, callback, args, context, "call_soon", None)?;
        slf.get().st.borrow_mut().ready.push_back(Job::Handle(h.clone().unbind()));
        Ok(h)
    }

    #[pyo3(signature = (callback, *args, context = None))]
    fn call_soon_threadsafe<'py>(
        slf: &Bound<'py, Self>,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let h = Self::new_handle(slf, callback, args, context, "call_soon_threadsafe", None)?;
        // Every access to the ready queue happens under the GIL, so another
        // thread may append to it directly; the waker then interrupts a
        // blocking poll. Appending (instead of a side queue) keeps the FIFO
        // order with call_soon, as asyncio does.
        let hand_on = {
            let mut st = slf.get().st.borrow_mut();
            st.ready.push_back(Job::Handle(h.clone().unbind()));
            st.ready.len() >= THREADSAFE_BACKLOG && !(st.running && st.thread_id == current_thread_id())
        };
        slf.get().wake()?;
        // A producer thread that is ahead of the loop hands the GIL on, as
        // asyncio's does on every call by writing to its self-pipe. A native
        // call never reaches the eval loop's switch point, so without this a
        // few producers in a tight loop keep the loop thread off the GIL for
        // whole switch intervals, pile up a backlog of hundreds of thousands
        // of handles, and delay its timers by as long as the backlog takes.
        if hand_on {
            slf.py().detach(std::thread::yield_now);
        }
        Ok(h)
    }

    #[pyo3(signature = (delay, callback, *args, context = None))]
    fn call_later<'py>(
        slf: &Bound<'py, Self>,
        delay: &Bound<'py, PyAny>,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let now = clock::monotonic();
        // asyncio computes `self.time() + delay`: ints and floats take the
        // fast path, anything else gets Python's own `+` (and its errors).
        let when = if delay.is_exact_instance_of::<pyo3::types::PyFloat>() || delay.is_instance_of::<pyo3::types::PyInt>() {
            now + delay.extract::<f64>()?
        } else {
            now.into_pyobject(slf.py())?.add(delay)?.extract::<f64>()?
        };
        // asyncio's call_later delegates to call_at, whose name its errors carry.
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    #[pyo3(signature = (when, callback, *args, context = None))]
    fn call_at<'py>(
        slf: &Bound<'py, Self>,
        when: &Bound<'py, PyAny>,
        callback: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when: f64 = match when.extract() {
            Ok(w) => w,
            // An int beyond float range (asyncio compares it exactly with
            // float times): as far away as a float can say.
            Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(slf.py())
                && when.is_instance_of::<pyo3::types::PyInt>() =>
            {
                if when.lt(0)? {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            Err(e) => return Err(e),
        };
        Self::schedule_at(slf, when, callback, args, context, "call_at")
    }

    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, Future>> {
        Future::new_for_loop(slf)
    }

    #[pyo3(signature = (coro, *, name = None, context = None, eager_start = None, **kwargs))]
    fn create_task<'py>(
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
                let forward_name = crate::pyver::at_least_patch(13, 3);
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

    fn set_task_factory(&self, py: Python<'_>, factory: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let factory = factory.filter(|f| !f.is_none());
        if let Some(f) = &factory {
            if !f.is_callable() {
                return Err(PyTypeError::new_err("task factory must be a callable or None"));
            }
        }
        let old = std::mem::replace(&mut self.st.borrow_mut().task_factory, factory.map(Bound::unbind));
        drop(old);
        let _ = py;
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().task_factory.as_ref().map(|f| f.clone_ref(py))
    }

    fn stop(&self) -> PyResult<()> {
        let running_elsewhere = {
            let mut st = self.st.borrow_mut();
            st.stopping = true;
            st.running && st.thread_id != current_thread_id()
        };
        if running_elsewhere {
            self.wake()?;
        }
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.st.borrow().running
    }

    fn is_closed(&self) -> bool {
        self.st.borrow().closed
    }

    fn get_debug(&self, py: Python<'_>) -> Py<PyAny> {
        let st = self.st.borrow();
        match &st.debug_value {
            Some(v) => v.clone_ref(py),
            None => pyo3::types::PyBool::new(py, st.debug).to_owned().into_any().unbind(),
        }
    }

    fn set_debug(&self, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let truth = enabled.is_truthy()?;
        let old = {
            let mut st = self.st.borrow_mut();
            st.debug = truth;
            st.debug_value.replace(enabled.clone().unbind())
        };
        drop(old);
        Ok(())
    }

    #[getter]
    fn get_slow_callback_duration(&self) -> f64 {
        self.st.borrow().slow_callback_duration
    }

    #[setter]
    fn set_slow_callback_duration(&self, v: f64) {
        self.st.borrow_mut().slow_callback_duration = v;
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.st.borrow().stopping
    }

    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        let t = self.st.borrow().thread_id;
        (t != 0).then_some(t)
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    /// Mark the loop running (or not) on the calling thread.
    fn _set_running(&self, running: bool) {
        let mut st = self.st.borrow_mut();
        st.running = running;
        st.thread_id = if running { current_thread_id() } else { 0 };
    }

    /// Iterate until `stop()` is called. Setup and teardown (running-loop
    /// registration, async generator hooks) are done by `Loop.run_forever`.
    fn _run_forever_core(slf: &Bound<'_, Self>) -> PyResult<()> {
        let r = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if slf.get().st.borrow().stopping {
                break Ok(());
            }
        };
        slf.get().st.borrow_mut().stopping = false;
        r
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::run_once(slf)
    }

    /// Drop everything queued and mark the loop closed.
    fn _close_core(&self, py: Python<'_>) -> PyResult<()> {
        let (ready, timers, factory, fds) = {
            let mut st = self.st.borrow_mut();
            st.closed = true;
            (std::mem::take(&mut st.ready), st.timers.drain(), st.task_factory.take(), std::mem::take(&mut st.fds))
        };
        for h in &timers {
            h.get().scheduled.store(false, Ordering::Relaxed);
        }
        let reactor = self.with_reactor(py, |_| ())
            .ok()
            .and_then(|_| self.reactor.lock().unwrap_or_else(|e| e.into_inner()).take());
        let injector = self.injector.borrow_mut().take();
        drop((reactor, injector)); // closes the epoll and waker descriptors
        let cached = self.ctx_cache.borrow_mut().take();
        drop((ready, timers, factory, fds, cached));
        Ok(())
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, callback: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Py<Handle>> {
        Self::add_io(slf, fd, callback, args, false)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>, callback: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<Py<Handle>> {
        Self::add_io(slf, fd, callback, args, true)
    }

    fn _remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_io(py, fd, false)
    }

    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_io(py, fd, true)
    }

    /// `(reader, writer)` registered for `fd` — a Handle, or the Future of
    /// a pending `sock_*` operation — or None.
    fn _fd_callbacks(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<(Option<Py<PyAny>>, Option<Py<PyAny>>)>> {
        let fd = Self::fd_of(fd)?;
        let st = self.st.borrow();
        let show = |w: &Option<Waiter>| {
            w.as_ref().map(|w| match w {
                Waiter::Handle(h) => h.clone_ref(py).into_any(),
                Waiter::Sock(op) => op.fut.clone_ref(py).into_any(),
                Waiter::Dgram(c) => c.clone_ref(py).into_any(),
            })
        };
        Ok(st.fds.get(&fd).filter(|e| !e.is_empty()).map(|e| (show(&e.reader), show(&e.writer))))
    }

    fn _sock_op_recv(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, n: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Self::sock_start(slf, sock, SockKind::Recv(n), false)
    }

    fn _sock_op_recv_into(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, buf: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Self::sock_start(slf, sock, SockKind::RecvInto(buf), false)
    }

    fn _sock_op_sendall(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, data: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Self::sock_start(slf, sock, SockKind::SendAll { data, view: None, pos: 0 }, true)
    }

    fn _sock_op_accept(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        Self::sock_start(slf, sock, SockKind::Accept, false)
    }

    /// asyncio's argument checks of the `sock_*` methods, for the Python
    /// side of those that do more before the operation.
    fn _check_sock(&self, sock: &Bound<'_, PyAny>) -> PyResult<()> {
        crate::sockops::check_sock(sock, self.debug())
    }

    /// The address is already resolved (the Python coroutine does that).
    fn _sock_op_connect(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, address: Py<PyAny>) -> PyResult<Py<PyAny>> {
        Self::sock_start(slf, sock, SockKind::Connect { addr: address, started: false }, true)
    }

    fn _sock_op_recvfrom(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, bufsize: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let args = PyTuple::new(slf.py(), [bufsize])?.unbind();
        Self::sock_start(slf, sock, SockKind::Call { method: "recvfrom", args }, false)
    }

    fn _sock_op_recvfrom_into(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, buf: Py<PyAny>, nbytes: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let args = PyTuple::new(slf.py(), [buf, nbytes])?.unbind();
        Self::sock_start(slf, sock, SockKind::Call { method: "recvfrom_into", args }, false)
    }

    fn _sock_op_sendto(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, data: Py<PyAny>, address: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let args = PyTuple::new(slf.py(), [data, address])?.unbind();
        Self::sock_start(slf, sock, SockKind::Call { method: "sendto", args }, true)
    }

    fn _write_to_self(&self) -> PyResult<()> {
        self.wake()
    }

    #[getter]
    fn _ready_count(&self) -> usize {
        self.st.borrow().ready.len()
    }

    #[getter]
    fn _timer_count(&self) -> usize {
        self.st.borrow().timers.len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            for j in st.ready.iter() {
                j.traverse(&visit)?;
            }
            for h in st.timers.iter() {
                visit.call(h)?;
            }
            visit.call(&st.task_factory)?;
            visit.call(&st.debug_value)?;
            for e in st.fds.values() {
                if let Some(w) = &e.reader {
                    w.traverse(&visit)?;
                }
                if let Some(w) = &e.writer {
                    w.traverse(&visit)?;
                }
                visit.call(&e.transport)?;
                visit.call(&e.fileobj)?;
            }
        }
        if let Some(c) = self.ctx_cache.try_borrow() {
            visit.call(&*c)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = {
            let mut st = self.st.borrow_mut();
            (
                std::mem::take(&mut st.ready),
                st.timers.drain(),
                (st.task_factory.take(), st.debug_value.take()),
                std::mem::take(&mut st.fds),
            )
        };
        let cached = self.ctx_cache.borrow_mut().take();
        drop((taken, cached));
    }
}
