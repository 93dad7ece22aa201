//! Native stream-socket transport core (TCP and Unix stream sockets).
//!
//! `ferroloop._transports.SocketTransport` (Python, deriving from
//! `asyncio.Transport`) owns a [`TransportCore`] and binds its hot methods
//! (`write`, `pause_reading`, ...) onto itself; cold paths (the exception
//! handler, `connection_lost`, repr) stay in Python. The semantics are those
//! of asyncio's `_SelectorSocketTransport`, step for step.
//!
//! Readiness comes straight from the reactor: the descriptor is registered
//! once, as the owner of its descriptor, for reading and writing, and its
//! events become [`READ`]/[`WRITE`] jobs — no `Handle`, no Python-level
//! dispatch. mio is edge-triggered while asyncio's transports rely on
//! level-triggered readiness; `ferroloop_engine::edge::EdgeReader` decides
//! when to read again (a full buffer, the peer's close, an edge that came
//! while paused). Writes go out until `EAGAIN`, after which the kernel
//! promises an edge. Flow control and closing are the shared
//! `transport_base`.

use std::cell::RefCell;

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};

use ferroloop_engine::edge::EdgeReader;
use ferroloop_engine::reactor::Readiness;

use crate::net::recv::{recv_new_bytes, stream_read_size};
use crate::net::transport_base::{transport_base_methods, transport_job_kinds, Base, BaseState, TransportState};
use crate::net::wbuf::WriteBuf;
use crate::runtime::gc::traverse;
use crate::runtime::gil::GilCell;
use crate::sched::io::Owner;
use crate::sched::job::Job;
use crate::sched::loop_core::{closed_error, LoopCore};

transport_job_kinds!(TransportCore);

/// The owner hook: readiness of the transport's descriptor.
fn owner_ready(core: &Bound<'_, PyAny>, ev: Readiness, out: &mut Vec<Job>) {
    if let Ok(c) = core.cast::<TransportCore>() {
        TransportCore::on_ready(c, ev, out);
    }
}

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
    base: BaseState,
    /// The protocol is a BufferedProtocol.
    buffered: bool,
    wbuf: WriteBuf,
    eof: bool,
    /// pause_reading() was called.
    paused: bool,
    /// Reading dispatched, edges remembered, writes waiting: see the module
    /// comment.
    edge: EdgeReader,
    empty_waiter: Option<Py<PyAny>>,
    registered: bool,
    /// The protocol kept the transport open after EOF (eof_received()
    /// returned true): nothing more is read, so the reactor needs the
    /// transport only while a write waits (see `park_if_idle`).
    read_side_done: bool,
    /// Size of the last read, to pick the receive strategy.
    last_read: usize,
}

impl TransportState for CoreState {
    fn base(&self) -> &BaseState {
        &self.base
    }
    fn base_mut(&mut self) -> &mut BaseState {
        &mut self.base
    }
    fn buffer_size(&self) -> usize {
        self.wbuf.len()
    }
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
    fn base(&self) -> Base<'_, CoreState> {
        Base(&self.st)
    }

    fn loop_of(&self, py: Python<'_>) -> Option<Py<LoopCore>> {
        self.base().loop_of(py)
    }

    fn wrapper<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.base().wrapper(py)
    }

    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        self.base().fatal(py, err, message)
    }

    /// Reactor readiness for this descriptor: queue the work it calls for.
    fn on_ready(slf: &Bound<'_, TransportCore>, ev: Readiness, out: &mut Vec<Job>) {
        let wants = slf.get().st.borrow_mut().edge.on_ready(ev.readable, ev.writable, ev.read_closed);
        if wants.read {
            out.push(Job::native(&READ, slf.clone().into_any().unbind(), None, 0));
        }
        if wants.write {
            out.push(Job::native(&WRITE, slf.clone().into_any().unbind(), None, 0));
        }
    }

    fn queue_read(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        if let Some(l) = slf.get().loop_of(slf.py()) {
            l.get().push_job(Job::native(&READ, slf.clone().into_any().unbind(), None, 0))?;
        }
        Ok(())
    }

    /// A reactor-driven job, run in the transport's context.
    pub(crate) fn run_job(slf: &Bound<'_, TransportCore>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().base().context(py);
        crate::runtime::util::run_in_context(py, ctx.as_ref(), || {
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
            if st.base.conn_lost > 0 {
                return Ok(());
            }
            if !st.edge.begin_read() {
                // Paused since this read was queued: resuming reads.
                return Ok(());
            }
            match &st.base.protocol {
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
            Err(e) => return this.fatal(py, crate::runtime::util::os_error(e), "Fatal read error on socket transport"),
        };
        let n = data.as_bytes().len();
        this.st.borrow_mut().last_read = n;
        if n == 0 {
            return Self::on_eof(slf, &protocol);
        }
        if let Err(e) = protocol.call_method1(pyo3::intern!(py, "data_received"), (data,)) {
            return this.fatal(py, e, "Fatal error: protocol.data_received() call failed.");
        }
        if this.st.borrow().edge.read_again(n, MAX_SIZE) {
            Self::queue_read(slf)?;
        }
        Ok(())
    }

    /// asyncio's `_read_ready__get_buffer` (BufferedProtocol).
    fn read_into_buffer(slf: &Bound<'_, TransportCore>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let tls = crate::net::tls::is_tls_protocol(protocol);
        let buf = if tls {
            crate::net::tls::_tls_get_buffer(protocol, -1)
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
        // A TLS record is copied out for the incoming BIO while the buffer
        // is still held, rather than looked up again through the protocol.
        let tls_copy = (tls && n > 0 && n as usize <= crate::net::tls::COPY_MAX).then(|| {
            // SAFETY: recv() initialised the first `n` bytes of the buffer,
            // still exported by `pb`.
            PyBytes::new(py, unsafe { std::slice::from_raw_parts(pb.buf_ptr() as *const u8, n as usize) })
        });
        drop(pb);
        if n < 0 {
            let e = last_os_error();
            if would_block(&e) {
                return Ok(());
            }
            return this.fatal(py, crate::runtime::util::os_error(e), "Fatal read error on socket transport");
        }
        if n == 0 {
            return Self::on_eof(slf, protocol);
        }
        let updated = if tls {
            crate::net::tls::buffer_updated(protocol, n as usize, tls_copy)
        } else {
            protocol.call_method1(pyo3::intern!(py, "buffer_updated"), (n,)).map(drop)
        };
        if let Err(e) = updated {
            return this.fatal(py, e, "Fatal error: protocol.buffer_updated() call failed.");
        }
        if this.st.borrow().edge.read_again(n as usize, cap) {
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
                st.edge.stop();
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
            if st.base.conn_lost > 0 || !st.edge.want_write() {
                return Ok(());
            }
            st.wbuf.flush(py, this.fd).err()
        };
        if let Some(e) = err {
            {
                let mut st = this.st.borrow_mut();
                st.edge.set_want_write(false);
                st.clear_buffer();
            }
            let pyerr: PyErr = crate::runtime::util::os_error(e);
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
                st.edge.set_want_write(false);
            }
            (done, st.empty_waiter.as_ref().map(|w| w.clone_ref(py)), st.base.closing, st.eof)
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
            st.registered && (st.read_side_done || st.paused) && st.buffered_len() == 0 && !st.base.closing
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
        let Some(l) = this.loop_of(py) else { return Ok(()) };
        if on {
            l.get().io.set_owner(py, this.fd, Self::owner(slf))?;
        } else {
            l.get().io.clear_owner(py, this.fd)?;
        }
        this.st.borrow_mut().registered = on;
        Ok(())
    }

    fn owner(slf: &Bound<'_, TransportCore>) -> Owner {
        Owner { target: slf.clone().into_any().unbind(), on_ready: owner_ready }
    }

    fn maybe_pause_protocol(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        slf.get().base().flow(slf.py(), true)
    }

    fn maybe_resume_protocol(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        slf.get().base().flow(slf.py(), false)
    }

    fn schedule_connection_lost(slf: &Bound<'_, TransportCore>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        slf.get().base().schedule_connection_lost(slf.py(), exc)
    }

    fn begin_close(slf: &Bound<'_, TransportCore>) -> PyResult<()> {
        let lost = {
            let mut st = slf.get().st.borrow_mut();
            if st.base.closing {
                return Ok(());
            }
            st.base.closing = true;
            st.edge.stop();
            if st.buffered_len() == 0 {
                st.base.conn_lost += 1;
                st.edge.set_want_write(false);
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
                base: BaseState::new(r#loop.unbind(), transport.unbind(), protocol.unbind(), crate::runtime::util::copy_context(py)?),
                buffered,
                wbuf: WriteBuf::default(),
                eof: false,
                paused: false,
                edge: EdgeReader::default(),
                empty_waiter: None,
                registered: false,
                read_side_done: false,
                last_read: 0,
            }),
            fd,
        })
    }

    /// Register the descriptor with the reactor (done once, right after
    /// construction).
    fn _register(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let l = slf.get().loop_of(py).ok_or_else(closed_error)?;
        l.get().io.set_owner(py, slf.get().fd, Self::owner(slf))?;
        slf.get().st.borrow_mut().registered = true;
        Ok(())
    }

    /// Start dispatching reads (asyncio: `_add_reader(fd, _read_ready)`,
    /// which a paused or closing transport ignores).
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let pending = {
            let mut st = slf.get().st.borrow_mut();
            if st.paused || st.base.closing || st.edge.reading() {
                return Ok(());
            }
            st.edge.start()
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
            if st.base.conn_lost > 0 {
                let warn = st.base.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                st.base.conn_lost += 1;
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
            if !crate::runtime::pyver::at_least(12) && this.st.borrow().buffered_len() > 0 {
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
                    return this.fatal(py, crate::runtime::util::os_error(e), "Fatal write error on socket transport");
                }
                rest = &rest[n as usize..];
            }
            if rest.is_empty() {
                return Ok(());
            }
            this.st.borrow_mut().edge.set_want_write(true);
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
        if st.base.closing || st.eof {
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

    fn is_reading(&self) -> bool {
        let st = self.st.borrow();
        !st.paused && !st.base.closing
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        {
            let mut st = slf.get().st.borrow_mut();
            if st.paused || st.base.closing {
                return Ok(false);
            }
            st.paused = true;
            st.edge.stop();
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
            if st.base.closing || !st.paused {
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
            if st.base.conn_lost > 0 {
                return Ok(());
            }
            if st.buffered_len() > 0 {
                st.clear_buffer();
                st.edge.set_want_write(false);
            }
            if !st.base.closing {
                st.base.closing = true;
                st.edge.stop();
            }
            st.base.conn_lost += 1;
        }
        Self::schedule_connection_lost(slf, exc)
    }

    fn set_protocol(&self, protocol: Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = protocol.is_instance(&protocol.py().import("asyncio")?.getattr("BufferedProtocol")?)?;
        let old = {
            let mut st = self.st.borrow_mut();
            st.buffered = buffered;
            st.base.protocol.replace(protocol.unbind())
        };
        drop(old);
        Ok(())
    }

    fn _set_empty_waiter(&self, waiter: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.st.borrow_mut().empty_waiter, waiter);
        drop(old);
    }

    /// Unregister from the reactor and drop references (after
    /// `connection_lost`, before the socket is closed).
    fn _detach(&self, py: Python<'_>) -> PyResult<()> {
        let (l, registered) = (self.loop_of(py), self.st.borrow().registered);
        if let (Some(l), true) = (l, registered) {
            l.get().io.clear_owner(py, self.fd)?;
        }
        let old = {
            let mut st = self.st.borrow_mut();
            st.registered = false;
            st.edge.stop();
            st.edge.set_want_write(false);
            (st.base.protocol.take(), st.base.transport.take(), st.base.loop_.take(), st.empty_waiter.take())
        };
        drop(old);
        Ok(())
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
        (st.edge.reading(), st.edge.want_write())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            traverse!(&visit; st.base, st.empty_waiter);
            st.wbuf.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = {
            let mut st = self.st.borrow_mut();
            let wbuf = std::mem::take(&mut st.wbuf);
            let b = &mut st.base;
            (b.loop_.take(), b.transport.take(), b.protocol.take(), b.context.take(), st.empty_waiter.take(), wbuf)
        };
        drop(old);
    }
}

transport_base_methods!(TransportCore);
