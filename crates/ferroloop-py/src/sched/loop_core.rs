//! `LoopCore`: the scheduler, the Rust half of `ferroloop.Loop`.
//!
//! `ferroloop.Loop` is a Python class deriving from `LoopCore` and
//! `asyncio.AbstractEventLoop`. Here: `call_soon`/`call_later`/`call_at`,
//! the ready queue and timer heap, and the iteration itself (`_run_once`).
//! The loop knows [`Job`]s, not the subsystems behind them: Futures and
//! Tasks (`aio`), transports and `sock_*` (`net`) hand it their work as jobs
//! and their descriptors to its [`IoDriver`], and add their own methods to
//! `LoopCore` from their modules (`create_future`, `create_task`,
//! `_sock_op_*`). Cold paths (exception handler, executors, async generator
//! hooks, `run_until_complete`) are in `python/ferroloop`.
//!
//! One iteration (`run_once`), in asyncio's order, with the policy of
//! `ferroloop_engine::iteration`:
//! 1. sweep cancelled timers (or rebuild the heap when most are cancelled);
//! 2. poll the reactor once — without blocking if anything is ready, until
//!    the next deadline otherwise — releasing the GIL while it blocks;
//! 3. move every timer due within one clock tick to the ready queue;
//! 4. run exactly the jobs that were ready at that point; jobs they schedule
//!    wait for the next iteration.

use std::sync::atomic::Ordering;

use ferroloop_engine::histogram::ns_between;
use ferroloop_engine::iteration::{due_window_end, plan_poll, sweep_cancelled, take_due, PollPlan};
use ferroloop_engine::{clock, ReadyQueue, TimerHeap};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::gil::GilCell;
use crate::runtime::util::is_fatal;
use crate::sched::handle::{make_handle, Handle, LoopLink, LOOP_LINK};
pub(crate) use crate::sched::io::closed_error;
use crate::sched::io::{fd_of, IoDriver};
use crate::sched::job::Job;
use crate::sched::metrics::Metrics;
use crate::sched::watchdog::Watchdog;

pub(crate) struct LoopState {
    pub(crate) ready: ReadyQueue<Job>,
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
    pub(crate) task_factory: Option<Py<PyAny>>,
    slow_callback_duration: f64,
    /// The handle `call_soon`/`call_later` returned last, kept until its
    /// caller has had the chance to drop it: the next call or iteration
    /// untracks it if the queue is then its only owner (see handle.rs).
    fresh: Option<Py<Handle>>,
}

#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct LoopCore {
    pub(crate) st: GilCell<LoopState>,
    pub(crate) io: IoDriver,
    clock_resolution: f64,
    /// The last context snapshot handed out (see contexts.rs).
    ctx_cache: GilCell<Option<Py<PyAny>>>,
    /// loop.metrics(): counters written without a borrow (see metrics.rs).
    pub(crate) metrics: Metrics,
    /// set_watchdog(): the thread reporting a job that runs too long.
    watchdog: Watchdog,
}

/// Installs what handles ask of their loop (see `handle::LoopLink`).
pub(crate) fn init() {
    LOOP_LINK.get_or_init(|| LoopLink {
        debug: |l| l.cast::<LoopCore>().is_ok_and(|c| c.get().debug()),
        timer_cancelled: |l| {
            if let Ok(c) = l.cast::<LoopCore>() {
                c.get().st.borrow_mut().timer_cancelled += 1;
            }
        },
    });
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

impl LoopCore {
    #[inline]
    pub(crate) fn debug(&self) -> bool {
        self.st.borrow().debug
    }

    #[inline]
    pub(crate) fn running(&self) -> bool {
        self.st.borrow().running
    }

    /// A context for a callback registered without `context=`: the loop's
    /// shared snapshot when the current context still matches it.
    #[inline]
    pub(crate) fn snapshot_context(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, bool)> {
        crate::runtime::contexts::snapshot(py, &self.ctx_cache)
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
        self.io.wake()
    }

    pub(crate) fn check_closed(&self) -> PyResult<()> {
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
        let tb = if debug { crate::runtime::util::source_traceback(py)? } else { None };
        let h = Handle::new_inner(
            callback.clone().unbind(),
            args.clone().unbind(),
            ctx,
            shared,
            slf.clone().into_any().unbind(),
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
        let prev = {
            let mut st = slf.get().st.borrow_mut();
            st.timers.push(when, h.clone().unbind());
            Self::replace_fresh(&mut st, h.clone().unbind())
        };
        drop(prev);
        Ok(h)
    }

    fn add_io(
        slf: &Bound<'_, LoopCore>,
        fileobj: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        write: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let fd = fd_of(fileobj)?;
        let h = Self::new_handle(slf, callback, args, None, if write { "add_writer" } else { "add_reader" }, None)?.unbind();
        slf.get().io.add_handle(py, fileobj, fd, write, h.clone_ref(py))?;
        Ok(h)
    }

    /// Make `h` the fresh handle and settle the previous one: untracked
    /// if the queue alone holds it now. The previous handle is returned, to
    /// be dropped once the state is no longer borrowed.
    fn replace_fresh(st: &mut LoopState, h: Py<Handle>) -> Option<Py<Handle>> {
        let prev = st.fresh.replace(h);
        if let Some(p) = &prev {
            // The queue's reference and `prev` itself.
            Handle::untrack_if_sole(p, 1);
        }
        prev
    }

    pub(crate) fn run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
        let this = slf.get();
        let loop_ = slf.as_any();

        // 0. the last handle handed out, settled before its queue entry can
        // run; 1. cancelled timers, 2. the poll's plan.
        let (plan, dead, fresh) = {
            let mut st = this.st.borrow_mut();
            let st = &mut *st;
            let fresh = st.fresh.take();
            if let Some(p) = &fresh {
                Handle::untrack_if_sole(p, 1);
            }
            let dead = sweep_cancelled(&mut st.timers, &mut st.timer_cancelled, |h| h.get().is_cancelled());
            for h in &dead {
                h.get().scheduled.store(false, Ordering::Relaxed);
            }
            let plan = plan_poll(!st.ready.is_empty(), st.stopping, st.timers.peek_when(), clock::monotonic, this.io.has_registrations());
            (plan, dead, fresh)
        };
        drop((dead, fresh));

        // 2. poll. The clock is read around it (not around a skipped one)
        // for loop.metrics(); the first reading of an iteration also ends
        // the previous one's run phase.
        let t_poll = (!matches!(plan, PollPlan::Skip)).then(|| {
            let t = clock::monotonic();
            this.metrics.close(t);
            t
        });
        this.io.poll(loop_, plan, |job| this.st.borrow_mut().ready.push_back(job))?;
        let t_run = clock::monotonic();
        let poll_ns = match t_poll {
            Some(t) => ns_between(t, t_run),
            None => {
                this.metrics.close(t_run);
                0
            }
        };

        // 3. due timers (the reading after the poll is asyncio's `self.time()`
        // there).
        {
            let mut st = this.st.borrow_mut();
            if !st.timers.is_empty() {
                let end = due_window_end(t_run, this.clock_resolution);
                let st = &mut *st;
                take_due(&mut st.timers, end, |h| {
                    h.get().scheduled.store(false, Ordering::Relaxed);
                    st.ready.push_back(Job::Handle(h));
                });
            }
        }

        // 4. run what is ready now.
        let (ntodo, debug) = {
            let st = this.st.borrow();
            (st.ready.len(), st.debug)
        };
        let mut ran = 0u64;
        let r = Self::run_ready(slf, ntodo, debug, &mut ran);
        this.metrics.open(t_run, poll_ns, ran);
        r
    }

    /// Run the first `ntodo` ready jobs, counting those run in `ran` (also
    /// when one fails: the iteration is recorded either way).
    #[inline]
    fn run_ready(slf: &Bound<'_, LoopCore>, ntodo: usize, debug: bool, ran: &mut u64) -> PyResult<()> {
        let this = slf.get();
        // Per-job timing costs two clock reads per job: only in debug mode
        // (asyncio times every callback there), when switched on, or for
        // the watchdog.
        let timed = debug || this.metrics.timing() || this.watchdog.on();
        for _ in 0..ntodo {
            let job = {
                let mut st = this.st.borrow_mut();
                match st.ready.pop_front() {
                    Some(j) => j,
                    None => break,
                }
            };
            if job.is_cancelled() {
                continue;
            }
            *ran += 1;
            if timed {
                Self::run_timed(slf, job, debug)?;
            } else {
                Self::run_job(slf, job)?;
            }
        }
        Ok(())
    }

    /// Run one job with a clock read on each side: the duration goes to the
    /// metrics, and in debug mode a slow one is logged.
    fn run_timed(slf: &Bound<'_, LoopCore>, job: Job, debug: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // asyncio's slow-callback report names what the job was before it
        // ran (a cancelled handle has lost its callback after).
        let subject = if debug { Some(job.subject(py)) } else { None };
        let who = job.subject_ref(py);
        let watched = this.watchdog.on();
        let t0 = clock::monotonic();
        if watched {
            this.watchdog.job_started(t0);
        }
        let r = Self::run_job(slf, job);
        let dt = clock::monotonic() - t0;
        if watched {
            this.watchdog.job_done();
        }
        let ns = ns_between(0.0, dt);
        let mut interrupted = None;
        if this.metrics.timed_job(ns) {
            let subject = match &subject {
                Some(s) => s.clone_ref(py),
                None => who.subject(py),
            };
            // Text, not the object: the record must not keep a task alive.
            // A failure to describe it is not the program's error, but a
            // KeyboardInterrupt arriving meanwhile must not be lost.
            let what = match slf.call_method1("_describe_callback", (subject,)) {
                Ok(t) => t.extract::<String>().unwrap_or_else(|_| "<callback>".into()),
                Err(e) => {
                    if is_fatal(py, &e) {
                        interrupted = Some(e);
                    }
                    "<callback>".into()
                }
            };
            this.metrics.set_longest(ns, what);
        } else {
            drop(who);
        }
        r?;
        if let Some(e) = interrupted {
            return Err(e);
        }
        if let Some(subject) = subject {
            let slow = this.st.borrow().slow_callback_duration;
            if dt >= slow {
                slf.call_method1("_log_slow_callback", (subject, dt))?;
            }
        }
        Ok(())
    }

    /// An `add_reader`/`add_writer` callback re-arms its descriptor after it
    /// ran: readiness still present is reported again (level-triggered).
    #[inline]
    fn run_job(slf: &Bound<'_, LoopCore>, job: Job) -> PyResult<()> {
        match job {
            Job::Handle(h) => {
                let r = Handle::run(h.bind(slf.py()));
                // Someone may have kept it (an exception handler's context).
                Handle::retrack_if_shared(&h, 0);
                r
            }
            Job::Io { fd, handle } => {
                let r = Handle::run(handle.bind(slf.py()));
                slf.get().io.rearm(slf.py(), fd)?;
                r
            }
            job => job.run(slf.as_any()),
        }
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
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
                fresh: None,
            }),
            io: IoDriver::new()?,
            clock_resolution: clock::resolution(),
            ctx_cache: GilCell::new(None),
            metrics: Metrics::new(clock::monotonic()),
            watchdog: Watchdog::new(),
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
        let prev = {
            let mut st = slf.get().st.borrow_mut();
            st.ready.push_back(Job::Handle(h.clone().unbind()));
            Self::replace_fresh(&mut st, h.clone().unbind())
        };
        drop(prev);
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
        let (hand_on, prev) = {
            let mut st = slf.get().st.borrow_mut();
            st.ready.push_back(Job::Handle(h.clone().unbind()));
            let prev = Self::replace_fresh(&mut st, h.clone().unbind());
            (st.ready.len() >= THREADSAFE_BACKLOG && !(st.running && st.thread_id == current_thread_id()), prev)
        };
        drop(prev);
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
        slf.get().watchdog.start(slf.as_any())?;
        let r = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if slf.get().st.borrow().stopping {
                break Ok(());
            }
        };
        slf.get().st.borrow_mut().stopping = false;
        slf.get().metrics.close(clock::monotonic());
        slf.get().watchdog.stop(slf.py());
        r
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let r = Self::run_once(slf);
        slf.get().metrics.close(clock::monotonic());
        r
    }

    /// Drop everything queued and mark the loop closed.
    fn _close_core(&self, py: Python<'_>) -> PyResult<()> {
        self.watchdog.stop(py);
        let (ready, timers, factory) = {
            let mut st = self.st.borrow_mut();
            st.closed = true;
            (std::mem::take(&mut st.ready), st.timers.drain(), (st.task_factory.take(), st.fresh.take()))
        };
        for h in &timers {
            h.get().scheduled.store(false, Ordering::Relaxed);
        }
        let io = self.io.close(py); // closes the epoll and waker descriptors
        let cached = self.ctx_cache.borrow_mut().take();
        drop((ready, timers, factory, io, cached));
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
        self.io.remove(py, fd, false)
    }

    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.io.remove(py, fd, true)
    }

    /// `(reader, writer)` registered for `fd` — a Handle, or the Future of
    /// a pending `sock_*` operation — or None.
    fn _fd_callbacks(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<(Option<Py<PyAny>>, Option<Py<PyAny>>)>> {
        Ok(self.io.shown(py, fd_of(fd)?))
    }

    fn _write_to_self(&self) -> PyResult<()> {
        self.wake()
    }

    /// The counters behind `Loop.metrics()` (which builds the public object).
    fn _metrics_snapshot(&self) -> crate::sched::metrics::Snapshot {
        self.metrics.snapshot(self.debug())
    }

    fn _reset_metrics(&self) {
        self.metrics.reset(clock::monotonic());
    }

    /// Per-callback timing besides debug mode (`Loop.set_metrics`).
    #[getter]
    fn _callback_timing(&self) -> bool {
        self.metrics.timing()
    }

    fn _set_callback_timing(&self, on: bool) {
        self.metrics.set_timing(on);
    }

    /// Report jobs running longer than `seconds` (None or <= 0: off), from
    /// a thread that runs while the loop does (see watchdog.rs).
    #[pyo3(signature = (seconds))]
    fn _set_watchdog(slf: &Bound<'_, Self>, seconds: Option<f64>) -> PyResult<()> {
        let this = slf.get();
        this.watchdog.set_threshold(seconds);
        if !this.watchdog.on() {
            this.watchdog.stop(slf.py());
        } else if this.running() {
            this.watchdog.start(slf.as_any())?;
        }
        Ok(())
    }

    #[getter]
    fn _watchdog(&self) -> Option<f64> {
        self.watchdog.threshold()
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
            traverse!(&visit; st.ready, st.task_factory, st.debug_value, st.fresh);
            for h in st.timers.iter() {
                Handle::traverse_owned(h, &visit)?;
            }
        }
        self.io.traverse(&visit)?;
        if let Some(c) = self.ctx_cache.try_borrow() {
            c.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let taken = {
            let mut st = self.st.borrow_mut();
            (std::mem::take(&mut st.ready), st.timers.drain(), (st.task_factory.take(), st.debug_value.take(), st.fresh.take()))
        };
        let io = self.io.clear();
        let cached = self.ctx_cache.borrow_mut().take();
        drop((taken, io, cached));
    }
}
