//! The loop's `sock_*` coroutines, native: `sock_recv`, `sock_recv_into`,
//! `sock_sendall` and `sock_accept`.
//!
//! asyncio's versions try the syscall, and on `EAGAIN` build a Future, a
//! `Handle` for `add_reader`, a `functools.partial` done-callback, and later
//! run a Python I/O callback plus a second callback that unregisters. Here
//! the Python coroutine (`python/ferroloop/_loop.py`) calls one native
//! method that makes the first attempt itself; only if the socket is not
//! ready does it register a [`SockOp`] in the descriptor's reader or writer
//! slot of the loop's I/O driver and return a native Future. When the
//! reactor reports the descriptor ready, a [`SOCK_READ`]/[`SOCK_WRITE`] job
//! retries the operation and completes the Future — no Handle, no
//! Python-level callback. The `_sock_op_*` loop methods are defined here.
//!
//! Readiness is edge-triggered: a waiter is only registered after the
//! syscall said `EAGAIN` (or, for a retry, the retry said it again), so a new
//! edge is guaranteed when the socket becomes ready; nothing is re-armed
//! after a retry. When an operation completes, its interest is left in the
//! reactor (the socket is likely to wait again soon, and `set_interest` when
//! it does re-checks readiness); an event with no waiter is ignored.
//!
//! Sockets of exactly `socket.socket` get the syscall straight from Rust on
//! their descriptor; anything else (subclasses, odd buffers, arguments the
//! `socket` methods would reject) goes through the socket's own method, so
//! errors and behaviour are the socket's, as in asyncio.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};

use crate::aio::future::{Callback, Future, State};
use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::util::{exc_value, is_fatal, os_error};
use crate::sched::io::{IoWaiter, Waiter};
use crate::sched::job::{Job, JobKind};
use crate::sched::loop_core::LoopCore;

pub(crate) enum SockKind {
    Recv(Py<PyAny>),
    RecvInto(Py<PyAny>),
    /// `view` is `memoryview(data)` once the first send was short (only
    /// for the method path, which sends slices of it).
    SendAll { data: Py<PyAny>, view: Option<Py<PyAny>>, pos: usize },
    Accept,
    /// `sock.connect(addr)`; once it said EINPROGRESS, readiness means the
    /// outcome is in SO_ERROR.
    Connect { addr: Py<PyAny>, started: bool },
    /// `sock.<method>(*args)`, the same call on every attempt (recvfrom,
    /// recvfrom_into, sendto).
    Call { method: &'static str, args: Py<pyo3::types::PyTuple> },
}

/// A pending `sock_*` operation, held in its descriptor's reader or writer
/// slot until it completes or its Future is cancelled.
pub(crate) struct SockOp {
    pub fut: Py<Future>,
    pub sock: Py<PyAny>,
    pub kind: SockKind,
}

impl Traverse for SockKind {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            SockKind::Recv(n) => n.traverse(visit),
            SockKind::RecvInto(b) => b.traverse(visit),
            SockKind::SendAll { data, view, .. } => {
                traverse!(visit; data, view);
                Ok(())
            }
            SockKind::Accept => Ok(()),
            SockKind::Connect { addr, .. } => addr.traverse(visit),
            SockKind::Call { args, .. } => args.traverse(visit),
        }
    }
}

impl IoWaiter for SockOp {
    fn job(&self, loop_: &Bound<'_, PyAny>, fd: i32, write: bool) -> Job {
        Job::native(if write { &SOCK_WRITE } else { &SOCK_READ }, loop_.clone().unbind(), None, fd)
    }
    fn shown(&self, py: Python<'_>) -> Py<PyAny> {
        self.fut.clone_ref(py).into_any()
    }
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        traverse!(visit; self.fut, self.sock, self.kind);
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// The descriptor of a pending operation is ready: `target` is the loop,
/// `arg` the descriptor.
pub(crate) static SOCK_READ: JobKind = JobKind { run: run_read, subject: subject_read, as_callback: None };
pub(crate) static SOCK_WRITE: JobKind = JobKind { run: run_write, subject: subject_write, as_callback: None };

fn run_read<'py>(loop_: Bound<'py, PyAny>, _: Option<Bound<'py, PyAny>>, fd: i32) -> PyResult<()> {
    retry(loop_.cast::<LoopCore>()?, fd, false)
}

fn run_write<'py>(loop_: Bound<'py, PyAny>, _: Option<Bound<'py, PyAny>>, fd: i32) -> PyResult<()> {
    retry(loop_.cast::<LoopCore>()?, fd, true)
}

fn subject(py: Python<'_>, fd: i32, what: &str) -> Py<PyAny> {
    pyo3::types::PyString::new(py, &format!("<sock_* {what} on fd {fd}>")).into_any().unbind()
}

fn subject_read(l: &Bound<'_, PyAny>, fd: i32) -> Py<PyAny> {
    subject(l.py(), fd, "read")
}

fn subject_write(l: &Bound<'_, PyAny>, fd: i32) -> Py<PyAny> {
    subject(l.py(), fd, "write")
}

fn is_op_of(w: &Waiter, fut: Option<&Bound<'_, PyAny>>) -> bool {
    w.native_ref::<SockOp>().is_some_and(|op| fut.is_none_or(|f| op.fut.as_ptr() == f.as_ptr()))
}

/// Start a `sock_*` operation: try it now; if the socket is not ready,
/// register it and return the Future it will complete.
fn start(slf: &Bound<'_, LoopCore>, sock: &Bound<'_, PyAny>, mut kind: SockKind, write: bool) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    check_sock(sock, slf.get().debug())?;
    if let Outcome::Done(v) = SockOp::attempt(sock, &mut kind)? {
        return Ok(v);
    }
    let fut = Future::new_for_loop(slf)?;
    let fd: i32 = sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?;
    // asyncio's _ensure_fd_no_transport, called only when the descriptor is
    // in the transports' table at all (its `.data` is the plain dict behind
    // the WeakValueDictionary).
    let in_table = slf
        .getattr(pyo3::intern!(py, "_transports"))?
        .getattr(pyo3::intern!(py, "data"))?
        .cast_into::<PyDict>()?
        .contains(fd)?;
    if in_table {
        slf.call_method1(pyo3::intern!(py, "_ensure_fd_no_transport"), (fd,))?;
    }
    let op = Box::new(SockOp { fut: fut.clone().unbind(), sock: sock.clone().unbind(), kind });
    slf.get().io.start_native(py, fd, write, op)?;
    let done = Callback::Now { run: if write { write_done } else { read_done }, target: slf.clone().into_any().unbind(), arg: fd };
    Future::add_callback(&fut, done)?;
    Ok(fut.into_any().unbind())
}

/// The Future of an operation is done (asyncio's `_sock_read_done` /
/// `_sock_write_done`): if it still waits in its slot (it was cancelled),
/// take it out. Its reactor interest is left as it is (see the module note).
fn read_done(fut: &Bound<'_, PyAny>, loop_: &Bound<'_, PyAny>, fd: i32) {
    done(fut, loop_, fd, false);
}

fn write_done(fut: &Bound<'_, PyAny>, loop_: &Bound<'_, PyAny>, fd: i32) {
    done(fut, loop_, fd, true);
}

fn done(fut: &Bound<'_, PyAny>, loop_: &Bound<'_, PyAny>, fd: i32, write: bool) {
    if let Ok(l) = loop_.cast::<LoopCore>() {
        let old = l.get().io.take_if(fd, write, |w| is_op_of(w, Some(fut)));
        drop(old);
    }
}

/// The descriptor is ready: retry the operation waiting in its slot.
fn retry(slf: &Bound<'_, LoopCore>, fd: i32, write: bool) -> PyResult<()> {
    let py = slf.py();
    let io = &slf.get().io;
    let Some(Waiter::Native(w)) = io.take_if(fd, write, |w| is_op_of(w, None)) else { return Ok(()) };
    let Ok(mut op) = w.into_any().downcast::<SockOp>() else { return Ok(()) };
    let fut = op.fut.bind(py).clone();
    if fut.get().state() != State::Pending {
        return Ok(());
    }
    let sock = op.sock.bind(py).clone();
    match SockOp::attempt(&sock, &mut op.kind) {
        // Back into the slot, unless a callback run by the attempt (a socket
        // subclass's method) registered something else.
        Ok(Outcome::Pending) => {
            io.restore(fd, write, Waiter::Native(op));
            Ok(())
        }
        Ok(Outcome::Done(v)) => {
            drop(op);
            Future::do_set_result(&fut, v)
        }
        Err(e) if is_fatal(py, &e) => Err(e),
        Err(e) => {
            drop(op);
            Future::do_set_exception(&fut, &exc_value(py, e))
        }
    }
}

pub(crate) enum Outcome {
    Done(Py<PyAny>),
    /// Not ready: wait for the descriptor.
    Pending,
}

static SOCKET_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn is_plain_socket(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = sock.py();
    let ty = SOCKET_TYPE.get_or_try_init(py, || -> PyResult<_> {
        Ok(py.import("socket")?.getattr("socket")?.cast_into::<PyType>()?.unbind())
    })?;
    Ok(sock.get_type().is(ty.bind(py)))
}

/// asyncio's argument checks of every `sock_*` method: no `ssl.SSLSocket`
/// (`base_events._check_ssl_socket`), and in debug mode a non-blocking one.
pub(crate) fn check_sock(sock: &Bound<'_, PyAny>, debug: bool) -> PyResult<()> {
    let py = sock.py();
    if !is_plain_socket(sock)? {
        py.import("asyncio.base_events")?.getattr("_check_ssl_socket")?.call1((sock,))?;
    }
    if debug && !sock.call_method0(pyo3::intern!(py, "gettimeout"))?.eq(0)? {
        return Err(pyo3::exceptions::PyValueError::new_err("the socket must be non-blocking"));
    }
    Ok(())
}

/// The descriptor to use a syscall on directly, if `sock` is exactly a
/// `socket.socket` (whose methods are the plain syscalls).
fn direct_fd(sock: &Bound<'_, PyAny>) -> PyResult<Option<i32>> {
    let py = sock.py();
    if !is_plain_socket(sock)? {
        return Ok(None);
    }
    // A socket in blocking or timeout mode would make the syscall wait
    // while holding the GIL (Python's own methods release it).
    let timeout = sock.call_method0(pyo3::intern!(py, "gettimeout"))?;
    if timeout.is_none() || timeout.extract::<f64>()? != 0.0 {
        return Ok(None);
    }
    Ok(Some(sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?))
}

fn last_errno() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// `Ok(None)` for "try again later"; EINTR is retried here after running
/// signal handlers, as Python's socket methods do (PEP 475).
fn syscall(py: Python<'_>, mut f: impl FnMut() -> isize) -> PyResult<Option<usize>> {
    loop {
        let n = f();
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = last_errno();
        match e.raw_os_error() {
            Some(libc::EINTR) => py.check_signals()?,
            Some(libc::EAGAIN) => return Ok(None),
            #[allow(unreachable_patterns)]
            Some(libc::EWOULDBLOCK) => return Ok(None),
            _ => return Err(os_error(e)),
        }
    }
}

/// A method call whose BlockingIOError/InterruptedError means "not ready"
/// (asyncio's `except (BlockingIOError, InterruptedError)`).
fn not_ready<T>(py: Python<'_>, r: PyResult<T>) -> PyResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Above this, `sock_recv(n)` sizes its buffer by what a stream socket
/// holds rather than by `n` (see recv::stream_read_size).
const BIG_RECV: usize = 16 * 1024;

/// A stream socket: reading less than `n` leaves the rest queued. (A
/// datagram read must get the whole buffer, or the datagram is cut.)
fn is_stream(fd: i32) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_TYPE writes one int into `ty`, whose size `len` gives.
    let r = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_TYPE, (&mut ty as *mut libc::c_int).cast(), &mut len) };
    r == 0 && ty == libc::SOCK_STREAM
}

/// Reads above this size check first that Python could have allocated
/// them (below it the check cannot fail in practice and would cost a
/// malloc per read).
const ALLOC_PROBE: usize = 1 << 20;

/// `sock.recv(n)` allocates its `n` bytes before reading and raises
/// MemoryError when it cannot; a stream read here allocates only what has
/// arrived, so it asks the allocator for the whole `n` (mapped lazily,
/// released at once) to fail where Python would.
fn probe_allocation(n: usize) -> PyResult<()> {
    // What PyBytes_FromStringAndSize adds for the object header, rounded up.
    let Some(total) = n.checked_add(64).filter(|t| *t <= isize::MAX as usize) else {
        return Err(pyo3::exceptions::PyOverflowError::new_err("byte string is too large"));
    };
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(total).map_err(|_| pyo3::exceptions::PyMemoryError::new_err(()))
}

fn recv_bytes(py: Python<'_>, fd: i32, n: usize) -> PyResult<Option<Py<PyAny>>> {
    if n == 0 {
        // recv(fd, 0) on a stream socket reports nothing useful; Python's
        // sock.recv(0) returns b'' without waiting too.
        return Ok(Some(PyBytes::new(py, b"").into_any().unbind()));
    }
    let size = if n > BIG_RECV && is_stream(fd) {
        if n > ALLOC_PROBE {
            probe_allocation(n)?;
        }
        crate::net::recv::stream_read_size(fd, n)
    } else {
        n
    };
    loop {
        match crate::net::recv::recv_new_bytes(py, fd, size)? {
            Ok(b) => return Ok(Some(b.into_any().unbind())),
            Err(e) => match e.raw_os_error() {
                // PEP 475, as Python's socket methods: retry after handlers.
                Some(libc::EINTR) => py.check_signals()?,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(os_error(e)),
            },
        }
    }
}

impl SockOp {
    /// One attempt at the operation: `Ok(Done)` / `Ok(Pending)`, or the
    /// error the socket call raised.
    pub(crate) fn attempt(sock: &Bound<'_, PyAny>, kind: &mut SockKind) -> PyResult<Outcome> {
        let py = sock.py();
        let done = |v: Option<Py<PyAny>>| match v {
            Some(v) => Outcome::Done(v),
            None => Outcome::Pending,
        };
        match kind {
            SockKind::Recv(n) => {
                // Python's recv takes a Py_ssize_t: beyond it, or negative, its own
                // errors come from the call below.
                if let (Some(fd), Ok(size)) = (direct_fd(sock)?, n.extract::<isize>(py)) {
                    let Ok(size) = usize::try_from(size) else {
                        return not_ready(py, sock.call_method1(pyo3::intern!(py, "recv"), (n.bind(py),)).map(Bound::unbind)).map(done);
                    };
                    return recv_bytes(py, fd, size).map(done);
                }
                not_ready(py, sock.call_method1(pyo3::intern!(py, "recv"), (n.bind(py),)).map(Bound::unbind)).map(done)
            }
            SockKind::RecvInto(buf) => {
                if let Some(fd) = direct_fd(sock)? {
                    if let Ok(pb) = PyBuffer::<u8>::get(buf.bind(py)) {
                        if !pb.readonly() && pb.is_c_contiguous() {
                            let (ptr, cap) = (pb.buf_ptr(), pb.item_count());
                            // SAFETY: the buffer is writable and C-contiguous
                            // with `cap` bytes, exported (held by `pb`) for
                            // the whole call.
                            let r = syscall(py, || unsafe { libc::recv(fd, ptr.cast(), cap, 0) })?;
                            drop(pb);
                            return Ok(done(r.map(|n| n.into_pyobject(py).expect("int").into_any().unbind())));
                        }
                    }
                }
                not_ready(py, sock.call_method1(pyo3::intern!(py, "recv_into"), (buf.bind(py),)).map(Bound::unbind)).map(done)
            }
            SockKind::SendAll { data, view, pos } => {
                if view.is_none() {
                    if let Some(fd) = direct_fd(sock)? {
                        if let Ok(pb) = PyBuffer::<u8>::get(data.bind(py)) {
                            if pb.is_c_contiguous() {
                                let (ptr, len) = (pb.buf_ptr() as *const u8, pb.item_count());
                                while *pos < len {
                                    // SAFETY: `ptr` points at `len` readable
                                    // bytes kept exported by `pb`; `*pos < len`.
                                    let r = syscall(py, || unsafe {
                                        libc::send(fd, ptr.add(*pos).cast(), len - *pos, libc::MSG_NOSIGNAL)
                                    })?;
                                    match r {
                                        Some(n) => *pos += n,
                                        None => return Ok(Outcome::Pending),
                                    }
                                }
                                return Ok(Outcome::Done(py.None()));
                            }
                        }
                    }
                }
                // The method path, as asyncio: send(data) first, then
                // slices of memoryview(data), until all of it is sent.
                loop {
                    let (sent, total) = match view {
                        None => {
                            let d = data.bind(py);
                            let r = not_ready(py, sock.call_method1(pyo3::intern!(py, "send"), (d,)))?;
                            let n = match &r {
                                Some(n) => n.extract::<usize>()?,
                                None => 0,
                            };
                            let total = d.len()?;
                            if n == total {
                                return Ok(Outcome::Done(py.None()));
                            }
                            *view = Some(py.import("builtins")?.getattr("memoryview")?.call1((d,))?.unbind());
                            *pos = n;
                            if r.is_none() {
                                return Ok(Outcome::Pending);
                            }
                            continue;
                        }
                        Some(v) => {
                            let v = v.bind(py);
                            let rest = v.get_item(pyo3::types::PySlice::new(py, *pos as isize, isize::MAX, 1))?;
                            let r = not_ready(py, sock.call_method1(pyo3::intern!(py, "send"), (rest,)))?;
                            match r {
                                Some(n) => (n.extract::<usize>()?, v.len()?),
                                None => return Ok(Outcome::Pending),
                            }
                        }
                    };
                    *pos += sent;
                    if *pos >= total {
                        return Ok(Outcome::Done(py.None()));
                    }
                }
            }
            SockKind::Call { method, args } => {
                not_ready(py, sock.call_method1(*method, args.bind(py).clone()).map(Bound::unbind)).map(done)
            }
            SockKind::Connect { addr, started } => {
                if !*started {
                    let r = not_ready(py, sock.call_method1(pyo3::intern!(py, "connect"), (addr.bind(py),)))?;
                    *started = true;
                    return Ok(done(r.map(|_| py.None())));
                }
                // asyncio's _sock_connect_cb.
                let (sol, so_error) = (libc::SOL_SOCKET, libc::SO_ERROR);
                let r = not_ready(py, sock.call_method1(pyo3::intern!(py, "getsockopt"), (sol, so_error)))?;
                let Some(err) = r else { return Ok(Outcome::Pending) };
                let err: i32 = err.extract()?;
                if err != 0 {
                    let msg = format!("Connect call failed {}", addr.bind(py).str()?);
                    return Err(pyo3::exceptions::PyOSError::new_err((err, msg)));
                }
                Ok(Outcome::Done(py.None()))
            }
            SockKind::Accept => {
                // asyncio asks for the descriptor before accepting; an object
                // that is not a socket fails there, with that error.
                if !is_plain_socket(sock)? {
                    sock.call_method0(pyo3::intern!(py, "fileno"))?;
                }
                let r = not_ready(py, sock.call_method0(pyo3::intern!(py, "accept")))?;
                match r {
                    None => Ok(Outcome::Pending),
                    Some(pair) => {
                        pair.get_item(0)?.call_method1(pyo3::intern!(py, "setblocking"), (false,))?;
                        Ok(Outcome::Done(pair.unbind()))
                    }
                }
            }
        }
    }
}

/// The native halves of the loop's `sock_*` coroutines (`_loop.py`).
#[pymethods]
impl LoopCore {
    fn _sock_op_recv(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, n: Py<PyAny>) -> PyResult<Py<PyAny>> {
        start(slf, sock, SockKind::Recv(n), false)
    }

    fn _sock_op_recv_into(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, buf: Py<PyAny>) -> PyResult<Py<PyAny>> {
        start(slf, sock, SockKind::RecvInto(buf), false)
    }

    fn _sock_op_sendall(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, data: Py<PyAny>) -> PyResult<Py<PyAny>> {
        start(slf, sock, SockKind::SendAll { data, view: None, pos: 0 }, true)
    }

    fn _sock_op_accept(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        start(slf, sock, SockKind::Accept, false)
    }

    /// asyncio's argument checks of the `sock_*` methods, for the Python
    /// side of those that do more before the operation.
    fn _check_sock(&self, sock: &Bound<'_, PyAny>) -> PyResult<()> {
        check_sock(sock, self.debug())
    }

    /// The address is already resolved (the Python coroutine does that).
    fn _sock_op_connect(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, address: Py<PyAny>) -> PyResult<Py<PyAny>> {
        start(slf, sock, SockKind::Connect { addr: address, started: false }, true)
    }

    fn _sock_op_recvfrom(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, bufsize: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let args = PyTuple::new(slf.py(), [bufsize])?.unbind();
        start(slf, sock, SockKind::Call { method: "recvfrom", args }, false)
    }

    fn _sock_op_recvfrom_into(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, buf: Py<PyAny>, nbytes: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let args = PyTuple::new(slf.py(), [buf, nbytes])?.unbind();
        start(slf, sock, SockKind::Call { method: "recvfrom_into", args }, false)
    }

    fn _sock_op_sendto(slf: &Bound<'_, Self>, sock: &Bound<'_, PyAny>, data: Py<PyAny>, address: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let args = PyTuple::new(slf.py(), [data, address])?.unbind();
        start(slf, sock, SockKind::Call { method: "sendto", args }, true)
    }
}
