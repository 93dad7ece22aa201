//! Native stream-socket transport core (TCP and Unix stream sockets).
//!
//! `ferroloop._transports.SocketTransport` (Python, deriving from
//! `asyncio.Transport`) owns a [`TransportCore`] and binds its hot methods
//! (`write`, `pause_reading`, ...) onto itself; cold paths (the exception
//! handler, `connection_lost`, repr) stay in Python. The semantics are those
//! of asyncio's `_SelectorSocketTransport`, step for step.
//!
//! Readiness comes straight from the reactor: the descriptor is registered
//! once, for reading and writing, and its events become
//! `Job::TransportRead`/`Job::TransportWrite` — no `Handle`, no Python-level
//! dispatch. mio is edge-triggered while asyncio's transports rely on
//! level-triggered readiness, so:
//! * a read that fills the whole buffer queues another read for the next
//!   iteration (more data may be waiting); a shorter read drained the socket,
//!   and new data will raise a new edge;
//! * an edge that arrives while reading is paused is remembered and acted on
//!   when reading resumes;
//! * writes go out until `EAGAIN`, after which the kernel promises an edge.

use std::cell::RefCell;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};

use crate::gil::GilCell;
use crate::loop_core::{Job, LoopCore};
use crate::util::is_fatal;
use crate::recv::{recv_new_bytes, stream_read_size};
use crate::wbuf::WriteBuf;

/// asyncio's `_SelectorTransport.max_size`: bytes asked of one `recv`.
const MAX_SIZE: usize = 256 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// Reads at least this large suggest the next one will be large too: then
/// the data is received straight into a `bytes` object (one copy) instead of
/// the shared buffer (two copies).
const LARGE_READ: usize = 16 * 1024;

thread_local! {
    /// One receive buffer per thread, shared by all transports: data is
    /// copied out into a `bytes` object right after `recv`.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0u8; MAX_SIZE]);
}

struct CoreState {
    loop_: Option<Py<LoopCore>>,
    /// The Python `SocketTransport` wrapping this core.
    transport: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    buffered: bool,
    wbuf: WriteBuf,
    eof: bool,
    closing: bool,
    /// pause_reading() was called.
    paused: bool,
    /// asyncio's "reader registered": reads are dispatched.
    reading: bool,
    /// A readable edge arrived while not reading.
    read_pending: bool,
    /// The reactor reported the peer's close: after a short read, read
    /// again (the EOF may sit behind the data that came with the edge).
    peer_closed: bool,
    /// Unsent data is waiting for a writable edge.
    want_write: bool,
    conn_lost: u32,
    protocol_paused: bool,
    high_water: usize,
    low_water: usize,
    empty_waiter: Option<Py<PyAny>>,
    registered: bool,
    /// The protocol kept the transport open after EOF (eof_received()
    /// returned true): nothing more is read, so the reactor needs the
    /// transport only while a write waits (see `park`).
    read_side_done: bool,
    /// Size of the last read, to pick the receive strategy.
    last_read: usize,
    /// The context current when the transport was made: protocol callbacks
    /// driven by readiness run in it, as asyncio's reader handle does.
    context: Option<Py<PyAny>>,
}

impl CoreState {
    fn buffered_len(&self) -> usize {
        self.wbuf.len()
    }

    fn clear_buffer(&mut self) {
        self.wbuf.clear();
    }
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct TransportCore {
    st: GilCell<CoreState>,
    fd: i32,
}

fn last_os_error() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

impl TransportCore {
    fn loop_of(&self, py: Python<'_>) -> Option<Py<LoopCore>> {
        self.st.borrow().loop_.as_ref().map(|l| l.clone_ref(py))
    }

    fn wrapper<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st.borrow().transport.as_ref().map(|t| t.bind(py).clone())
    }

    fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st.borrow().protocol.as_ref().map(|t| t.bind(py).clone())
    }

    /// `transport._fatal_error(exc, message)` (Python: exception handler or
    /// debug log, then `_force_close`). SystemExit/KeyboardInterrupt escape.
    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_fatal(py, &err) {
            return Err(err);
        }
        let exc = crate::util::exc_value(py, err);
        match self.wrapper(py) {
            Some(t) => t.call_method1("_fatal_error", (exc, message)).map(drop),
            None => Ok(()),
        }
    }

    /// Reactor readiness for this descriptor: queue the work it calls for.
    pub(crate) fn on_ready(slf: &Bound<'_, TransportCore>, readable: bool, writable: bool, read_closed: bool, out: &mut Vec<Job>) {
        let this = slf.get();
        let mut st = this.st.borrow_mut();
        st.peer_closed |= read_closed;
        if readable {
            if st.reading {
                out.push(Job::TransportRead(slf.clone().unbind()));
            } else {
                st.read_pending = true;
            }
        }
        if writable && st.want_write {
            out.push(Job::TransportWrite(slf.clone().unbind()));
        }
    }

    fn queue_read(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        if let Some(l) = slf.get().loop_of(slf.py()) {
            l.get().push_job(Job::TransportRead(slf.clone().unbind()))?;
        }
        Ok(())
    }

    fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().context.as_ref().map(|c| c.clone_ref(py))
    }

    /// A reactor-driven job, run in the transport's context.
    pub(crate) fn run_job(slf: &Bound<'_, TransportCore>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().context(py);
        crate::util::run_in_context(py, ctx.as_ref(), || {
            if write {
                Self::write_ready(slf)
            } else {
                Self::read_ready(slf)
            }
        })
    }

    /// asyncio's `_read_ready`.
    fn read_ready(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (buffered, protocol, large) = {
            let mut st = this.st.borrow_mut();
            if st.conn_lost > 0 {
                return Ok(());
            }
            if !st.reading {
                // Paused since this read was queued: with edge-triggered
                // readiness the data is still waiting and no new edge will
                // come, so resuming must read.
                st.read_pending = true;
                return Ok(());
            }
            match &st.protocol {
                Some(p) => (st.buffered, p.clone_ref(py).into_bound(py), st.last_read >= LARGE_READ),
                None => return Ok(()),
            }
        };
        if buffered {
            return Self::read_into_buffer(slf, &protocol);
        }
        let received = if large { recv_new_bytes(py, this.fd, stream_read_size(this.fd, MAX_SIZE))? } else { SCRATCH.with(|s| {
            let mut buf = s.borrow_mut();
            // SAFETY: `buf` is a valid writable region of MAX_SIZE bytes and
            // `this.fd` is the transport's socket.
            let n = unsafe { libc::recv(this.fd, buf.as_mut_ptr().cast(), MAX_SIZE, 0) };
            if n < 0 {
                Err(last_os_error())
            } else {
                Ok(PyBytes::new(py, &buf[..n as usize]))
            }
        }) };
        let data = match received {
            Ok(d) => d,
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) => return this.fatal(py, crate::util::os_error(e), "Fatal read error on socket transport"),
        };
        let n = data.as_bytes().len();
        this.st.borrow_mut().last_read = n;
        if n == 0 {
            return Self::on_eof(slf, &protocol);
        }
        if let Err(e) = protocol.call_method1(pyo3::intern!(py, "data_received"), (data,)) {
            return this.fatal(py, e, "Fatal error: protocol.data_received() call failed.");
        }
        if n == MAX_SIZE || this.st.borrow().peer_closed {
            Self::queue_read(slf)?;
        }
        Ok(())
    }

    /// asyncio's `_read_ready__get_buffer` (BufferedProtocol).
    fn read_into_buffer(slf: &Bound<'_, TransportCore>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let tls = crate::tls::is_tls_protocol(protocol);
        let buf = if tls {
            crate::tls::_tls_get_buffer(protocol, -1)
        } else {
            protocol.call_method1(pyo3::intern!(py, "get_buffer"), (-1,))
        };
        let got = buf.and_then(|buf| {
            let pb = PyBuffer::<u8>::get(&buf)?;
            if pb.item_count() == 0 {
                return Err(PyRuntimeError::new_err("get_buffer() returned an empty buffer"));
            }
            if pb.readonly() || !pb.is_c_contiguous() {
                return Err(PyTypeError::new_err("get_buffer() must return a writable contiguous buffer"));
            }
            Ok(pb)
        });
        let pb = match got {
            Ok(pb) => pb,
            Err(e) => return this.fatal(py, e, "Fatal error: protocol.get_buffer() call failed."),
        };
        let cap = pb.item_count();
        // SAFETY: the buffer is writable and C-contiguous with `cap` bytes,
        // and stays exported (held by `pb`) for the duration of recv.
        let n = unsafe { libc::recv(this.fd, pb.buf_ptr().cast(), cap, 0) };
        drop(pb);
        if n < 0 {
            let e = last_os_error();
            if would_block(&e) {
                return Ok(());
            }
            return this.fatal(py, crate::util::os_error(e), "Fatal read error on socket transport");
        }
        if n == 0 {
            return Self::on_eof(slf, protocol);
        }
        let updated = if tls {
            crate::tls::_tls_buffer_updated(protocol, n as usize)
        } else {
            protocol.call_method1(pyo3::intern!(py, "buffer_updated"), (n,)).map(drop)
        };
        if let Err(e) = updated {
            return this.fatal(py, e, "Fatal error: protocol.buffer_updated() call failed.");
        }
        if n as usize == cap || this.st.borrow().peer_closed {
            Self::queue_read(slf)?;
        }
        Ok(())
    }

    /// asyncio's `_read_ready__on_eof`.
    fn on_eof(slf: &Bound<'_, TransportCore>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let Some(l) = this.loop_of(py) {
            if l.get().debug() {
                if let Some(t) = this.wrapper(py) {
                    t.call_method0("_log_eof")?;
                }
            }
        }
        let keep_open = match protocol.call_method0("eof_received").and_then(|r| r.is_truthy()) {
            Ok(k) => k,
            Err(e) => return this.fatal(py, e, "Fatal error: protocol.eof_received() call failed."),
        };
        if keep_open {
            // The protocol may still write, but nothing more can be read.
            {
                let mut st = this.st.borrow_mut();
                st.reading = false;
                st.read_side_done = true;
            }
            Self::park_if_idle(slf)
        } else {
            Self::begin_close(slf)
        }
    }

    /// asyncio's `_write_ready`.
    fn write_ready(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let err = {
            let mut st = this.st.borrow_mut();
            if st.conn_lost > 0 || !st.want_write {
                return Ok(());
            }
            st.wbuf.flush(py, this.fd).err()
        };
        if let Some(e) = err {
            {
                let mut st = this.st.borrow_mut();
                st.want_write = false;
                st.clear_buffer();
            }
            let pyerr: PyErr = crate::util::os_error(e);
            let exc = pyerr.value(py).clone().into_any();
            this.fatal(py, pyerr, "Fatal write error on socket transport")?;
            let waiter = this.st.borrow().empty_waiter.as_ref().map(|w| w.clone_ref(py));
            if let Some(w) = waiter {
                w.call_method1(py, "set_exception", (exc,))?;
            }
            return Ok(());
        }
        Self::maybe_resume_protocol(slf)?; // may append to the buffer
        let (done, waiter, closing, eof) = {
            let mut st = this.st.borrow_mut();
            let done = st.buffered_len() == 0;
            if done {
                st.want_write = false;
            }
            (done, st.empty_waiter.as_ref().map(|w| w.clone_ref(py)), st.closing, st.eof)
        };
        if done {
            if let Some(w) = waiter {
                w.call_method1(py, "set_result", (py.None(),))?;
            }
            if closing {
                if let Some(t) = this.wrapper(py) {
                    t.call_method1("_call_connection_lost", (py.None(),))?;
                }
            } else {
                if eof {
                    // SAFETY: shutdown on our socket descriptor; errors ignored
                    // as the peer may already be gone.
                    unsafe { libc::shutdown(this.fd, libc::SHUT_WR) };
                }
                Self::park_if_idle(slf)?;
            }
        }
        Ok(())
    }

    /// asyncio's loop holds a transport only through its reader and writer
    /// handles. Once the read side is done (EOF kept open) and nothing waits
    /// to be written, ferroloop's reactor lets go of it too, so a transport
    /// the program drops without close() is collected and its socket closed
    /// (with asyncio's ResourceWarning) instead of living as long as the loop.
    fn park_if_idle(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let idle = {
            let st = slf.get().st.borrow();
            st.registered && (st.read_side_done || st.paused) && st.buffered_len() == 0 && !st.closing
        };
        if idle {
            Self::set_registered(slf, false)?;
        }
        Ok(())
    }

    /// Back into the reactor when a parked transport has to wait for a
    /// writable edge (registering reports the current readiness: no edge is
    /// lost).
    fn unpark(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        if !slf.get().st.borrow().registered {
            Self::set_registered(slf, true)?;
        }
        Ok(())
    }

    fn set_registered(slf: &Bound<'_, TransportCore>, on: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let l = this.st.borrow().loop_.as_ref().map(|l| l.clone_ref(py));
        let Some(l) = l else { return Ok(()) };
        if on {
            l.get().register_transport(py, this.fd, slf.clone().unbind())?;
        } else {
            l.get().unregister_transport(py, this.fd)?;
        }
        this.st.borrow_mut().registered = on;
        Ok(())
    }

    fn maybe_pause_protocol(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st.borrow_mut();
            if st.buffered_len() <= st.high_water || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(p) = protocol {
            let ctx = this.context(py);
            let r = crate::contexts::run_in_unless_entered(py, ctx.as_ref(), || p.call_method0(py, "pause_writing"));
            if let Err(e) = r {
                Self::report_flow_error(slf, e, "protocol.pause_writing() failed")?;
            }
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st.borrow_mut();
            if !(st.protocol_paused && st.buffered_len() <= st.low_water) {
                return Ok(());
            }
            st.protocol_paused = false;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(p) = protocol {
            let ctx = this.context(py);
            let r = crate::contexts::run_in_unless_entered(py, ctx.as_ref(), || p.call_method0(py, "resume_writing"));
            if let Err(e) = r {
                Self::report_flow_error(slf, e, "protocol.resume_writing() failed")?;
            }
        }
        Ok(())
    }

    fn report_flow_error(slf: &Bound<'_, TransportCore>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if is_fatal(py, &err) {
            return Err(err);
        }
        let this = slf.get();
        let Some(l) = this.loop_of(py) else { return Ok(()) };
        let d = PyDict::new(py);
        d.set_item("message", message)?;
        d.set_item("exception", crate::util::exc_value(py, err))?;
        d.set_item("transport", this.wrapper(py))?;
        d.set_item("protocol", this.protocol(py))?;
        LoopCore::report(l.bind(py).as_any(), d)
    }

    fn schedule_connection_lost(slf: &Bound<'_, TransportCore>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let (Some(l), Some(t)) = (this.loop_of(py), this.wrapper(py)) {
            // connection_lost runs in the transport's context, like every
            // other protocol callback of this transport.
            let kwargs = PyDict::new(py);
            kwargs.set_item("context", this.context(py))?;
            l.bind(py).call_method("call_soon", (t.getattr("_call_connection_lost")?, exc), Some(&kwargs))?;
        }
        Ok(())
    }

    fn begin_close(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let lost = {
            let mut st = slf.get().st.borrow_mut();
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            st.reading = false;
            if st.buffered_len() == 0 {
                st.conn_lost += 1;
                st.want_write = false;
                true
            } else {
                false
            }
        };
        if lost {
            Self::schedule_connection_lost(slf, None)?;
        }
        Ok(())
    }

    /// The bytes of a bytearray or memoryview, and whether they are
    /// C-contiguous (asyncio hands the object to `socket.send`, which
    /// refuses any other).
    fn bytes_of(data: &Bound<'_, PyAny>) -> PyResult<Option<(std::borrow::Cow<'static, [u8]>, bool)>> {
        // Borrowing across the call into Python is avoided by copying
        // non-bytes objects; bytes are read in place by the caller.
        if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            let pb = PyBuffer::<u8>::get(data)?;
            let contiguous = pb.is_c_contiguous();
            return Ok(Some((std::borrow::Cow::Owned(pb.to_vec(data.py())?), contiguous)));
        }
        Ok(None)
    }
}

#[pymethods]
impl TransportCore {
    #[new]
    fn py_new(r#loop: Bound<'_, LoopCore>, transport: Bound<'_, PyAny>, sock: &Bound<'_, PyAny>, protocol: Bound<'_, PyAny>) -> PyResult<Self> {
        let py = r#loop.py();
        let fd: i32 = sock.call_method0("fileno")?.extract()?;
        let buffered = protocol.is_instance(&protocol.py().import("asyncio")?.getattr("BufferedProtocol")?)?;
        Ok(TransportCore {
            st: GilCell::new(CoreState {
                loop_: Some(r#loop.unbind()),
                transport: Some(transport.unbind()),
                protocol: Some(protocol.unbind()),
                buffered,
                wbuf: WriteBuf::default(),
                eof: false,
                closing: false,
                paused: false,
                reading: false,
                read_pending: false,
                peer_closed: false,
                want_write: false,
                conn_lost: 0,
                protocol_paused: false,
                high_water: 64 * 1024,
                low_water: 16 * 1024,
                empty_waiter: None,
                registered: false,
                read_side_done: false,
                last_read: 0,
                context: Some(crate::util::copy_context(py)?),
            }),
            fd,
        })
    }

    /// Register the descriptor with the reactor (done once, right after
    /// construction).
    fn _register(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let l = slf.get().loop_of(py).ok_or_else(crate::loop_core::closed_error)?;
        l.get().register_transport(py, slf.get().fd, slf.clone().unbind())?;
        slf.get().st.borrow_mut().registered = true;
        Ok(())
    }

    /// Start dispatching reads (asyncio: `_add_reader(fd, _read_ready)`,
    /// which a paused or closing transport ignores).
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let pending = {
            let mut st = slf.get().st.borrow_mut();
            if st.paused || st.closing || st.reading {
                return Ok(());
            }
            st.reading = true;
            std::mem::replace(&mut st.read_pending, false)
        };
        if pending {
            Self::queue_read(slf)?;
        }
        Ok(())
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (owned, contiguous) = if data.is_instance_of::<PyBytes>() {
            (None, true)
        } else if let Some((o, c)) = Self::bytes_of(data)? {
            (Some(o), c)
        } else {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        };
        let bytes: &[u8] = match &owned {
            Some(o) => o,
            None => data.cast::<PyBytes>()?.as_bytes(),
        };
        {
            let mut st = this.st.borrow_mut();
            if st.eof {
                return Err(PyRuntimeError::new_err("Cannot call write() after write_eof()"));
            }
            if st.empty_waiter.is_some() {
                return Err(PyRuntimeError::new_err("unable to write; sendfile is in progress"));
            }
            if bytes.is_empty() {
                return Ok(());
            }
            if st.conn_lost > 0 {
                let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                st.conn_lost += 1;
                drop(st);
                if warn {
                    py.import("asyncio.log")?.getattr("logger")?.call_method1("warning", ("socket.send() raised exception.",))?;
                }
                return Ok(());
            }
        }
        if !contiguous {
            // asyncio's socket.send() fails on such a view: a fatal write
            // error. 3.11 fails at once if data is already buffered (the
            // bytearray buffer refuses it); 3.12+ queues it and fails when
            // the queue is sent, which loses the queued data just as this
            // does now.
            if !crate::pyver::at_least(12) && this.st.borrow().buffered_len() > 0 {
                return Err(PyTypeError::new_err("can't set bytearray slice from memoryview"));
            }
            let err = pyo3::exceptions::PyBufferError::new_err("memoryview: underlying buffer is not C-contiguous");
            return this.fatal(py, err, "Fatal write error on socket transport");
        }
        let mut rest = bytes;
        if this.st.borrow().buffered_len() == 0 {
            // Try to send right away.
            while !rest.is_empty() {
                // SAFETY: `rest` is a valid initialised slice; `this.fd` is
                // the transport's socket.
                let n = unsafe { libc::send(this.fd, rest.as_ptr().cast(), rest.len(), libc::MSG_NOSIGNAL) };
                if n < 0 {
                    let e = last_os_error();
                    if would_block(&e) {
                        break;
                    }
                    return this.fatal(py, crate::util::os_error(e), "Fatal write error on socket transport");
                }
                rest = &rest[n as usize..];
            }
            if rest.is_empty() {
                return Ok(());
            }
            this.st.borrow_mut().want_write = true;
            Self::unpark(slf)?;
        }
        let shared = if owned.is_none() { Some(data.cast::<PyBytes>()?) } else { None };
        this.st.borrow_mut().wbuf.push(rest, shared);
        Self::maybe_pause_protocol(slf)
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let joined = PyBytes::new(slf.py(), b"").call_method1("join", (list_of_data,))?;
        Self::write(slf, &joined)
    }

    fn write_eof(&self) {
        let mut st = self.st.borrow_mut();
        if st.closing || st.eof {
            return;
        }
        st.eof = true;
        if st.buffered_len() == 0 {
            // SAFETY: shutdown on our own descriptor.
            unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
        }
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::begin_close(slf)
    }

    fn is_closing(&self) -> bool {
        self.st.borrow().closing
    }

    fn is_reading(&self) -> bool {
        let st = self.st.borrow();
        !st.paused && !st.closing
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        {
            let mut st = slf.get().st.borrow_mut();
            if st.paused || st.closing {
                return Ok(false);
            }
            st.paused = true;
            st.reading = false;
        }
        // asyncio removes its reader: a paused transport with nothing to
        // write is no longer referenced by the loop, and one the program
        // drops is collected (ResourceWarning, socket closed).
        Self::park_if_idle(slf)?;
        Ok(true)
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let parked = {
            let mut st = slf.get().st.borrow_mut();
            if st.closing || !st.paused {
                return Ok(false);
            }
            st.paused = false;
            !st.read_side_done
        };
        if parked {
            // Registering reports the current readiness: data that arrived
            // while parked is seen.
            Self::unpark(slf)?;
        }
        Self::_start_reading(slf)?;
        Ok(true)
    }

    /// asyncio's `_force_close`: drop buffered data, stop reading, schedule
    /// `connection_lost(exc)`.
    #[pyo3(signature = (exc = None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        {
            let mut st = slf.get().st.borrow_mut();
            if st.conn_lost > 0 {
                return Ok(());
            }
            if st.buffered_len() > 0 {
                st.clear_buffer();
                st.want_write = false;
            }
            if !st.closing {
                st.closing = true;
                st.reading = false;
            }
            st.conn_lost += 1;
        }
        Self::schedule_connection_lost(slf, exc)
    }

    fn get_write_buffer_size(&self) -> usize {
        self.st.borrow().buffered_len()
    }

    fn get_write_buffer_limits(&self) -> (usize, usize) {
        let st = self.st.borrow();
        (st.low_water, st.high_water)
    }

    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (high, low) = crate::util::water_marks(high, low)?;
        {
            let mut st = slf.get().st.borrow_mut();
            st.high_water = high;
            st.low_water = low;
        }
        Self::maybe_pause_protocol(slf)
    }

    fn set_protocol(&self, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = protocol.is_instance(&protocol.py().import("asyncio")?.getattr("BufferedProtocol")?)?;
        let old = {
            let mut st = self.st.borrow_mut();
            st.buffered = buffered;
            st.protocol.replace(protocol.unbind())
        };
        drop(old);
        Ok(())
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st.borrow().protocol.as_ref().map(|p| p.clone_ref(py))
    }

    fn _set_empty_waiter(&self, waiter: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.st.borrow_mut().empty_waiter, waiter);
        drop(old);
    }

    /// Unregister from the reactor and drop references (after
    /// `connection_lost`, before the socket is closed).
    fn _detach(&self, py: Python<'_>) -> PyResult<()> {
        let (l, registered) = {
            let st = self.st.borrow();
            (st.loop_.as_ref().map(|l| l.clone_ref(py)), st.registered)
        };
        if let (Some(l), true) = (l, registered) {
            l.get().unregister_transport(py, self.fd)?;
        }
        let old = {
            let mut st = self.st.borrow_mut();
            st.registered = false;
            st.reading = false;
            st.want_write = false;
            (st.protocol.take(), st.transport.take(), st.loop_.take(), st.empty_waiter.take())
        };
        drop(old);
        Ok(())
    }

    /// The context protocol callbacks run in (captured at creation).
    #[getter]
    fn _context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.context(py)
    }

    #[getter]
    fn _conn_lost(&self) -> u32 {
        self.st.borrow().conn_lost
    }

    #[getter]
    fn _eof(&self) -> bool {
        self.st.borrow().eof
    }

    #[getter]
    fn _paused(&self) -> bool {
        self.st.borrow().paused
    }

    /// (reading dispatched, writes waiting for the reactor)
    #[getter]
    fn _polling(&self) -> (bool, bool) {
        let st = self.st.borrow();
        (st.reading, st.want_write)
    }

    #[getter]
    fn _protocol_paused(&self) -> bool {
        self.st.borrow().protocol_paused
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            visit.call(&st.loop_)?;
            visit.call(&st.transport)?;
            visit.call(&st.protocol)?;
            visit.call(&st.empty_waiter)?;
            visit.call(&st.context)?;
            st.wbuf.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = {
            let mut st = self.st.borrow_mut();
            let wbuf = std::mem::take(&mut st.wbuf);
            (st.loop_.take(), st.transport.take(), st.protocol.take(), st.empty_waiter.take(), st.context.take(), wbuf)
        };
        drop(old);
    }
}
