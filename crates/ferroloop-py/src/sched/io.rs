//! The loop's I/O half: the reactor, its cross-thread wake-up, and the
//! descriptor table (`ferroloop_engine::fdtable`) with the Python-facing
//! waiters in its slots.
//!
//! A slot holds a [`Waiter`]: an `add_reader`/`add_writer` Handle, or a
//! native waiter of a subsystem above (a pending `sock_*` operation, a
//! datagram transport) behind the [`IoWaiter`] trait. A stream transport
//! owns its descriptor through an [`Owner`], told of every readiness edge.
//! Neither is named here: each subsystem says, through its trait object or
//! function pointer, which [`Job`] an edge becomes.
//!
//! The engine's table decides the reactor interest changes; [`IoDriver::apply`]
//! is the one place they reach the reactor.

use std::any::Any;
use std::sync::{Arc, Mutex};

use ferroloop_engine::fdtable::{Change, FdTable};
use ferroloop_engine::iteration::PollPlan;
use ferroloop_engine::reactor::{Reactor, Readiness, Wake};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyInt;
use pyo3::{PyTraverseError, PyVisit};

use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::gil::GilCell;
use crate::runtime::util::os_error;
use crate::sched::handle::Handle;
use crate::sched::job::Job;

/// A native subsystem's waiter in a reader or writer slot.
pub(crate) trait IoWaiter: Send + Sync + 'static {
    /// The job a readiness edge in this slot becomes. `loop_` is the loop
    /// whose table holds the waiter.
    fn job(&self, loop_: &Bound<'_, PyAny>, fd: i32, write: bool) -> Job;
    /// What `loop._fd_callbacks(fd)` shows for it.
    fn shown(&self, py: Python<'_>) -> Py<PyAny>;
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// Who waits on one direction of a descriptor.
pub(crate) enum Waiter {
    Handle(Py<Handle>),
    Native(Box<dyn IoWaiter>),
}

impl Traverse for Waiter {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Waiter::Handle(h) => h.traverse(visit),
            Waiter::Native(w) => w.traverse(visit),
        }
    }
}

impl Waiter {
    fn job(&self, loop_: &Bound<'_, PyAny>, fd: i32, write: bool) -> Job {
        match self {
            Waiter::Handle(h) => Job::Io { fd, handle: h.clone_ref(loop_.py()) },
            Waiter::Native(w) => w.job(loop_, fd, write),
        }
    }

    /// asyncio cancels the Handle a replaced or removed callback had; a
    /// replaced `sock_*` operation's Future just never completes, as there.
    pub(crate) fn discard(self, py: Python<'_>) {
        if let Waiter::Handle(h) = self {
            Handle::cancel_quiet(h.bind(py));
        }
    }

    /// The native waiter, if it is a `T`.
    pub(crate) fn native_ref<T: 'static>(&self) -> Option<&T> {
        match self {
            Waiter::Native(w) => w.as_any().downcast_ref(),
            Waiter::Handle(_) => None,
        }
    }
}

/// The owner of a descriptor (a stream transport): told of every edge.
pub(crate) struct Owner {
    pub target: Py<PyAny>,
    /// Push the jobs this readiness calls for; no Python code may run.
    pub on_ready: fn(&Bound<'_, PyAny>, Readiness, &mut Vec<Job>),
}

impl Traverse for Owner {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.target.traverse(visit)
    }
}

/// Per descriptor, besides its slots: the file object add_reader/add_writer
/// first got for it (None for a plain int), as asyncio's selector key keeps
/// it, so that remove_reader(sock) finds the registration after `sock.close()`.
type FileObj = Option<Py<PyAny>>;

struct IoState {
    table: FdTable<Waiter, Owner, FileObj>,
    /// close() released the reactor: registrations are refused or ignored.
    closed: bool,
}

pub(crate) struct IoDriver {
    st: GilCell<IoState>,
    /// `None` once the loop is closed: close() releases the epoll and
    /// waker descriptors right away, as asyncio closes its selector.
    reactor: Mutex<Option<Reactor>>,
    events: Mutex<Vec<Readiness>>,
    /// The owners' jobs of one poll, queued after the slots' jobs; kept
    /// between polls so that a poll with events allocates nothing.
    owned: GilCell<Vec<Job>>,
    wake: GilCell<Option<Arc<Wake>>>,
}

pub(crate) fn closed_error() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err("Event loop is closed")
}

impl IoDriver {
    pub(crate) fn new() -> PyResult<IoDriver> {
        let reactor = Reactor::new().map_err(os_error)?;
        let wake = Arc::new(Wake::new(reactor.waker()));
        Ok(IoDriver {
            st: GilCell::new(IoState { table: FdTable::default(), closed: false }),
            reactor: Mutex::new(Some(reactor)),
            events: Mutex::new(Vec::new()),
            owned: GilCell::new(Vec::new()),
            wake: GilCell::new(Some(wake)),
        })
    }

    /// Interrupt a blocking poll (from any thread, under the GIL).
    pub(crate) fn wake(&self) -> PyResult<()> {
        match self.wake.borrow().as_ref() {
            Some(w) => w.wake().map_err(os_error),
            None => Ok(()),
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

    /// Tell the reactor what a table change implies. The outer error is a
    /// closed loop, the inner one the OS's.
    fn apply(&self, py: Python<'_>, fd: i32, change: Change) -> PyResult<std::io::Result<()>> {
        match change {
            Change::None => Ok(Ok(())),
            Change::Deregister => self.with_reactor(py, |re| re.deregister(fd)),
            Change::Interest { interest, known } => self.with_reactor(py, |re| re.set_interest(fd, interest.read, interest.write, known)),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.st.borrow().closed
    }

    /// Put `w` into (or, with None, empty) one slot of `fd`. The replaced
    /// waiter comes back (even when the reactor refused the change) for the
    /// caller to drop or discard. A closed loop ignores it.
    pub(crate) fn put(&self, py: Python<'_>, fd: i32, write: bool, w: Option<Waiter>) -> (Option<Waiter>, PyResult<()>) {
        let (old, change) = {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return (w, Ok(()));
            }
            st.table.put(fd, write, w, |_| {})
        };
        let r = self.apply(py, fd, change).and_then(|r| r.map_err(os_error));
        (old, r)
    }

    /// `add_reader`/`add_writer`: the Handle into its slot, the file object
    /// remembered; if the reactor refuses the descriptor the slot is emptied
    /// again and the OS error raised.
    pub(crate) fn add_handle(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>, fd: i32, write: bool, h: Py<Handle>) -> PyResult<()> {
        let (old, change) = {
            let mut st = self.st.borrow_mut();
            let keep = (!fileobj.is_instance_of::<PyInt>()).then(|| fileobj.clone().unbind());
            st.table.put(fd, write, Some(Waiter::Handle(h)), |f| {
                if f.is_none() {
                    *f = keep;
                }
            })
        };
        if let Some(old) = old {
            old.discard(py);
        }
        if let Err(e) = self.apply(py, fd, change)? {
            let dropped = self.st.borrow_mut().table.put(fd, write, None, |_| {});
            drop(dropped);
            return Err(os_error(e));
        }
        Ok(())
    }

    /// `remove_reader`/`remove_writer`.
    pub(crate) fn remove(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>, write: bool) -> PyResult<bool> {
        let (fd, gone) = match fd_of(fileobj) {
            Ok(n) => (n, false),
            // A closed socket (fileno() -1): asyncio's selector searches its
            // keys for the object itself.
            Err(e) if e.is_instance_of::<PyValueError>(py) && !fileobj.is_instance_of::<PyInt>() => {
                let found = self.st.borrow().table.find(|e| e.extra.as_ref().is_some_and(|o| o.is(fileobj)));
                match found {
                    Some(n) => (n, true),
                    None => return Err(e),
                }
            }
            // A descriptor beyond C int range cannot be registered; asyncio's
            // selector, holding Python ints, simply does not find it.
            Err(e) if e.is_instance_of::<PyOverflowError>(py) => return Ok(false),
            Err(e) => return Err(e),
        };
        let (old, change) = {
            let mut st = self.st.borrow_mut();
            if st.closed || !st.table.contains(fd) {
                return Ok(false);
            }
            st.table.put(fd, write, None, |_| {})
        };
        let Some(old) = old else { return Ok(false) };
        old.discard(py);
        let res = self.apply(py, fd, change)?;
        if !gone {
            // (Closing the descriptor already took it out of epoll.)
            res.map_err(os_error)?;
        }
        Ok(true)
    }

    /// A native waiter into an empty-or-replaced slot (a `sock_*` operation
    /// starting); the replaced waiter is discarded.
    pub(crate) fn start_native(&self, py: Python<'_>, fd: i32, write: bool, w: Box<dyn IoWaiter>) -> PyResult<()> {
        if self.is_closed() {
            return Err(closed_error());
        }
        let (old, r) = self.put(py, fd, write, Some(Waiter::Native(w)));
        if let Some(old) = old {
            old.discard(py);
        }
        r
    }

    /// Take one slot's waiter out if `pred` accepts it (see
    /// `FdTable::take_if`: the reactor interest is left as it is).
    pub(crate) fn take_if(&self, fd: i32, write: bool, pred: impl FnOnce(&Waiter) -> bool) -> Option<Waiter> {
        self.st.borrow_mut().table.take_if(fd, write, pred)
    }

    /// Give a taken waiter its slot back unless the slot was filled meanwhile
    /// (the waiter is then dropped).
    pub(crate) fn restore(&self, fd: i32, write: bool, w: Waiter) {
        let rejected = self.st.borrow_mut().table.restore(fd, write, w);
        drop(rejected);
    }

    /// An owner takes `fd` over (a stream transport registering).
    pub(crate) fn set_owner(&self, py: Python<'_>, fd: i32, owner: Owner) -> PyResult<()> {
        let (old, stale, change) = {
            let mut st = self.st.borrow_mut();
            if st.closed {
                return Err(closed_error());
            }
            st.table.set_owner(fd, owner)
        };
        drop((old, stale));
        self.apply(py, fd, change)?.map_err(os_error)
    }

    /// The owner lets `fd` go; after close() there is no reactor to tell.
    pub(crate) fn clear_owner(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let (old, change) = self.st.borrow_mut().table.clear_owner(fd);
        drop(old);
        match self.apply(py, fd, change) {
            Ok(r) => r.map_err(os_error),
            Err(_) => Ok(()),
        }
    }

    /// Re-register `fd` with its current interest so that readiness still
    /// present after a level-triggered callback is reported again.
    pub(crate) fn rearm(&self, py: Python<'_>, fd: i32) -> PyResult<()> {
        let interest = self.st.borrow().table.rearm(fd);
        match interest {
            Some(i) => self.with_reactor(py, |re| re.set_interest(fd, i.read, i.write, true))?.map_err(os_error),
            None => Ok(()),
        }
    }

    /// `(reader, writer)` as `loop._fd_callbacks` shows them, or None.
    pub(crate) fn shown(&self, py: Python<'_>, fd: i32) -> Option<(Option<Py<PyAny>>, Option<Py<PyAny>>)> {
        let st = self.st.borrow();
        let show = |w: Option<&Waiter>| {
            w.map(|w| match w {
                Waiter::Handle(h) => h.clone_ref(py).into_any(),
                Waiter::Native(n) => n.shown(py),
            })
        };
        let e = st.table.get(fd).filter(|e| e.reader.is_some() || e.writer.is_some() || e.owner.is_some())?;
        Some((show(e.slot(false)), show(e.slot(true))))
    }

    /// Step 2 of an iteration: poll as `plan` says and hand the jobs the
    /// readiness calls for to `sink`, slot waiters in event order, then the
    /// owners' work.
    pub(crate) fn poll(&self, loop_: &Bound<'_, PyAny>, plan: PollPlan, mut sink: impl FnMut(Job)) -> PyResult<()> {
        let py = loop_.py();
        let (timeout, blocking) = match plan {
            PollPlan::Skip => {
                // Wake-ups since the last poll are in the ready queue already.
                if let Some(w) = self.wake.borrow().as_ref() {
                    w.clear();
                }
                return Ok(());
            }
            PollPlan::NoWait => (Some(std::time::Duration::ZERO), false),
            PollPlan::Wait(t) => (t, true),
        };
        let mut events = std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()));
        events.clear();
        let poll = |events: &mut Vec<Readiness>| match self.reactor.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(r) => r.poll(timeout, events),
            None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
        };
        let res = if blocking { py.detach(|| poll(&mut events)) } else { poll(&mut events) };
        if let Some(w) = self.wake.borrow().as_ref() {
            w.clear();
        }
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                // A signal: let Python run its handlers (KeyboardInterrupt
                // surfaces here), then carry on with the iteration.
                py.check_signals()?;
            }
            Err(e) => return Err(os_error(e)),
        }
        if !events.is_empty() {
            let mut owned = std::mem::take(&mut *self.owned.borrow_mut());
            let st = self.st.borrow();
            for ev in &events {
                let Some(e) = st.table.get(ev.fd) else { continue };
                if let Some(o) = &e.owner {
                    (o.on_ready)(o.target.bind(py), *ev, &mut owned);
                }
                if ev.readable {
                    if let Some(w) = e.slot(false) {
                        sink(w.job(loop_, ev.fd, false));
                    }
                }
                if ev.writable {
                    if let Some(w) = e.slot(true) {
                        sink(w.job(loop_, ev.fd, true));
                    }
                }
            }
            drop(st);
            owned.drain(..).for_each(&mut sink);
            *self.owned.borrow_mut() = owned;
        }
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = events;
        Ok(())
    }

    /// Anything registered besides the waker (else a non-blocking poll can
    /// be skipped).
    pub(crate) fn has_registrations(&self) -> bool {
        !self.st.borrow().table.is_empty()
    }

    /// Release the reactor and the waker (their descriptors close) and hand
    /// back the table's contents for the caller to drop.
    pub(crate) fn close(&self, py: Python<'_>) -> impl Sized {
        let entries = {
            let mut st = self.st.borrow_mut();
            st.closed = true;
            st.table.take_all()
        };
        let reactor = self.with_reactor(py, |_| ()).ok().and_then(|_| self.reactor.lock().unwrap_or_else(|e| e.into_inner()).take());
        let wake = self.wake.borrow_mut().take();
        (entries, reactor, wake)
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            for e in st.table.entries() {
                traverse!(visit; e.reader, e.writer, e.owner, e.extra);
            }
        }
        Ok(())
    }

    /// Empty the table for `__clear__`; dropped by the caller.
    pub(crate) fn clear(&self) -> impl Sized {
        self.st.borrow_mut().table.take_all()
    }
}

/// selectors' `_fileobj_to_fd`, then what `epoll.register` says of a
/// number that is no C int (asyncio's errors, in asyncio's order).
pub(crate) fn fd_of(obj: &Bound<'_, PyAny>) -> PyResult<i32> {
    if let Ok(fd) = obj.extract::<i32>() {
        if fd < 0 {
            return Err(PyValueError::new_err(format!("Invalid file descriptor: {fd}")));
        }
        return Ok(fd);
    }
    let py = obj.py();
    let invalid = || PyValueError::new_err(format!("Invalid file object: {}", obj.repr().map(|r| r.to_string()).unwrap_or_default()));
    let num = if obj.is_instance_of::<PyInt>() {
        obj.clone()
    } else {
        let r = obj.getattr("fileno").and_then(|f| f.call0()).and_then(|n| py.get_type::<PyInt>().call1((n,)));
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
    num.extract::<i32>().map_err(|_| PyOverflowError::new_err("Python int too large to convert to C int"))
}
