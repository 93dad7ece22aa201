//! `DatagramCore`: the native half of ferroloop's datagram (UDP, Unix
//! datagram) transport. The Python face is `DatagramTransport` in
//! `python/ferroloop/_transports.py`; behaviour follows asyncio's
//! `_SelectorDatagramTransport` of the running Python.
//!
//! The core occupies its descriptor's reader slot in the loop's fd table
//! (and the writer slot while datagrams are buffered), as asyncio's
//! transport holds `add_reader`/`add_writer` callbacks, so `add_reader` on
//! the descriptor is refused the same way. Readiness becomes a [`READ`] or
//! [`WRITE`] job — no Handle, no bound method. Flow control and closing are
//! the shared `transport_base`.
//!
//! asyncio receives one datagram per readable event per iteration
//! (level-triggered). On the edge-triggered reactor a read that got a
//! datagram queues another read for the next iteration, until `recvfrom`
//! says `EAGAIN`; after that a new edge is guaranteed. Writes drain the
//! buffer until `EAGAIN`, likewise.
//!
//! `recvfrom`/`sendto` go through the socket object's methods: the address
//! conversions are the socket module's, for every address family.
//!
//! Every protocol callback runs in the context current when the transport
//! was made (as uvloop does; asyncio runs `error_received` from `sendto` in
//! the caller's context and `connection_lost` in the closer's).

use std::collections::VecDeque;

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};

use crate::net::transport_base::{transport_base_methods, transport_job_kinds, Base, BaseState, TransportState};
use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::gil::GilCell;
use crate::sched::io::{IoWaiter, Waiter};
use crate::sched::job::Job;
use crate::sched::loop_core::LoopCore;

transport_job_kinds!(DatagramCore);

/// The transport in its descriptor's reader or writer slot.
struct SlotWaiter(Py<DatagramCore>);

impl IoWaiter for SlotWaiter {
    fn job(&self, loop_: &Bound<'_, PyAny>, _fd: i32, write: bool) -> Job {
        Job::native(if write { &WRITE } else { &READ }, self.0.clone_ref(loop_.py()).into_any(), None, 0)
    }
    fn shown(&self, py: Python<'_>) -> Py<PyAny> {
        self.0.clone_ref(py).into_any()
    }
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.0.traverse(visit)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// asyncio's `_SelectorTransport.max_size`.
const MAX_SIZE: usize = 256 * 1024;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

struct DgState {
    base: BaseState,
    sock: Option<Py<PyAny>>,
    /// The remote address given to create_datagram_endpoint, if any.
    address: Option<Py<PyAny>>,
    /// `extra['peername']` is truthy: send() instead of sendto().
    connected: bool,
    /// Connected to a peer without a name (`peername == ''`: a socketpair).
    nameless_peer: bool,
    buffer: VecDeque<(Py<PyAny>, Py<PyAny>)>,
    buffer_size: usize,
    reading: bool,
    writing: bool,
}

impl TransportState for DgState {
    fn base(&self) -> &BaseState {
        &self.base
    }
    fn base_mut(&mut self) -> &mut BaseState {
        &mut self.base
    }
    fn buffer_size(&self) -> usize {
        self.buffer_size
    }
}

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct DatagramCore {
    st: GilCell<DgState>,
    fd: i32,
}

enum Io {
    Done(Py<PyAny>),
    WouldBlock,
    /// An OSError: reported to `protocol.error_received`.
    OsErr(PyErr),
    /// Anything else: a fatal error of the transport.
    Other(PyErr),
}

fn classify(py: Python<'_>, r: PyResult<Bound<'_, PyAny>>) -> Io {
    match r {
        Ok(v) => Io::Done(v.unbind()),
        Err(e) if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) => Io::WouldBlock,
        Err(e) if e.is_instance_of::<PyOSError>(py) => Io::OsErr(e),
        Err(e) => Io::Other(e),
    }
}

impl DatagramCore {
    fn base(&self) -> Base<'_, DgState> {
        Base(&self.st)
    }

    fn loop_of(&self, py: Python<'_>) -> Option<Py<LoopCore>> {
        self.base().loop_of(py)
    }

    fn field(&self, py: Python<'_>, f: impl Fn(&DgState) -> &Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        f(&self.st.borrow()).as_ref().map(|o| o.clone_ref(py))
    }

    /// Call `protocol.<name>(*args)` in the transport's context.
    fn call_protocol<'py>(&self, py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<()> {
        self.base().call_protocol(py, name, args)
    }

    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        self.base().fatal(py, err, message)
    }

    /// What asyncio's Handle would do with an exception escaping the I/O
    /// callback: report it to the exception handler, carry on.
    fn report_callback_error(&self, py: Python<'_>, err: PyErr, what: &str) -> PyResult<()> {
        self.base().report(py, err, &format!("Exception in callback DatagramTransport.{what}()"))
    }

    fn set_slot(slf: &Bound<'_, DatagramCore>, write: bool, on: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(l) = this.loop_of(py) else { return Ok(()) };
        {
            let mut st = this.st.borrow_mut();
            let flag = if write { &mut st.writing } else { &mut st.reading };
            if *flag == on {
                return Ok(());
            }
            *flag = on;
        }
        let w = on.then(|| Waiter::Native(Box::new(SlotWaiter(slf.clone().unbind()))));
        let (old, r) = l.get().io.put(py, this.fd, write, w);
        drop(old);
        r
    }

    pub(crate) fn run_job(slf: &Bound<'_, DatagramCore>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().base().context(py);
        crate::runtime::util::run_in_context(py, ctx.as_ref(), || if write { Self::write_ready(slf) } else { Self::read_ready(slf) })
    }

    /// asyncio's `_read_ready`: one datagram.
    fn read_ready(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sock = {
            let st = this.st.borrow();
            if st.base.conn_lost > 0 || !st.reading {
                return Ok(());
            }
            match &st.sock {
                Some(s) => s.clone_ref(py),
                None => return Ok(()),
            }
        };
        let r = sock.bind(py).call_method1(pyo3::intern!(py, "recvfrom"), (MAX_SIZE,));
        let again = match classify(py, r) {
            Io::WouldBlock => false,
            Io::Done(pair) => {
                let pair = pair.bind(py);
                let (data, addr) = (pair.get_item(0)?, pair.get_item(1)?);
                if let Err(e) = this.call_protocol(py, "datagram_received", (data, addr)) {
                    this.report_callback_error(py, e, "_read_ready")?;
                }
                true
            }
            Io::OsErr(e) => {
                let exc = crate::runtime::util::exc_value(py, e);
                if let Err(e) = this.call_protocol(py, "error_received", (exc,)) {
                    this.report_callback_error(py, e, "_read_ready")?;
                }
                true
            }
            Io::Other(e) => {
                this.fatal(py, e, "Fatal read error on datagram transport")?;
                false
            }
        };
        if again {
            // Level-triggered emulation: more datagrams may be queued.
            let l = this.loop_of(py);
            if let (Some(l), true) = (l, this.st.borrow().reading) {
                l.get().push_job(Job::native(&READ, slf.clone().into_any().unbind(), None, 0))?;
            }
        }
        Ok(())
    }

    fn send_one(&self, py: Python<'_>, sock: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>, addr: &Bound<'_, PyAny>) -> Io {
        let (connected, nameless) = {
            let st = self.st.borrow();
            (st.connected, st.nameless_peer)
        };
        // A connected socket whose peer has no name (a socketpair) is sent
        // to with send() too: asyncio would call sendto(data, None), a
        // TypeError that kills the transport (see docs/DIFFERENCES.md).
        let r = if connected || (nameless && addr.is_none()) {
            sock.call_method1(pyo3::intern!(py, "send"), (data,))
        } else {
            sock.call_method1(pyo3::intern!(py, "sendto"), (data, addr))
        };
        classify(py, r)
    }

    /// asyncio's `_sendto_ready`. (3.13.0's subtracts only the payload of
    /// what it added with the header, so its size never returns to 0; here
    /// what leaves the buffer takes out what it put in.)
    fn write_ready(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(sock) = this.field(py, |s| &s.sock) else { return Ok(()) };
        loop {
            let Some((data, addr)) = this.st.borrow_mut().buffer.pop_front() else { break };
            let len = buffered_size(data.bind(py).len()?);
            this.st.borrow_mut().buffer_size -= len;
            match this.send_one(py, sock.bind(py), data.bind(py), addr.bind(py)) {
                Io::Done(_) => {}
                Io::WouldBlock => {
                    let mut st = this.st.borrow_mut();
                    st.buffer.push_front((data, addr));
                    st.buffer_size += len;
                    return Ok(());
                }
                Io::OsErr(e) => {
                    let exc = crate::runtime::util::exc_value(py, e);
                    if let Err(e) = this.call_protocol(py, "error_received", (exc,)) {
                        this.report_callback_error(py, e, "_sendto_ready")?;
                    }
                    return Ok(());
                }
                Io::Other(e) => return this.fatal(py, e, "Fatal write error on datagram transport"),
            }
        }
        Self::maybe_resume_protocol(slf)?; // may append to the buffer
        let (empty, closing) = {
            let st = this.st.borrow();
            (st.buffer.is_empty(), st.base.closing)
        };
        if empty {
            Self::set_slot(slf, true, false)?;
            if closing {
                if let Some(t) = this.base().wrapper(py) {
                    t.call_method1("_call_connection_lost", (py.None(),))?;
                }
            }
        }
        Ok(())
    }

    fn flow_call(slf: &Bound<'_, DatagramCore>, pause: bool) -> PyResult<()> {
        slf.get().base().flow(slf.py(), pause)
    }

    fn maybe_resume_protocol(slf: &Bound<'_, DatagramCore>) -> PyResult<()> {
        Self::flow_call(slf, false)
    }

    fn schedule_connection_lost(slf: &Bound<'_, DatagramCore>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        slf.get().base().schedule_connection_lost(slf.py(), exc)
    }
}

#[pymethods]
impl DatagramCore {
    #[new]
    #[pyo3(signature = (r#loop, transport, sock, protocol, address, connected, nameless_peer))]
    fn py_new(
        r#loop: Bound<'_, LoopCore>,
        transport: Bound<'_, PyAny>,
        sock: Bound<'_, PyAny>,
        protocol: Bound<'_, PyAny>,
        address: Option<Bound<'_, PyAny>>,
        connected: bool,
        nameless_peer: bool,
    ) -> PyResult<Self> {
        let py = r#loop.py();
        let fd: i32 = sock.call_method0("fileno")?.extract()?;
        Ok(DatagramCore {
            st: GilCell::new(DgState {
                base: BaseState::new(r#loop.unbind(), transport.unbind(), protocol.unbind(), crate::runtime::util::copy_context(py)?),
                sock: Some(sock.unbind()),
                address: address.filter(|a| a.is_truthy().unwrap_or(true)).map(Bound::unbind),
                connected,
                nameless_peer,
                buffer: VecDeque::new(),
                buffer_size: 0,
                reading: false,
                writing: false,
            }),
            fd,
        })
    }

    /// asyncio: `_add_reader(fd, _read_ready)`, scheduled after
    /// `connection_made`. A transport closed meanwhile does not start.
    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().st.borrow().base.closing {
            return Ok(());
        }
        Self::set_slot(slf, false, true)
    }

    #[pyo3(signature = (data, addr = None))]
    fn sendto(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>, addr: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        }
        // Before 3.13 asyncio drops empty datagrams; 3.13 sends them.
        if !crate::runtime::pyver::at_least(13) && !data.is_truthy()? {
            return Ok(());
        }
        let mut addr = addr.unwrap_or_else(|| py.None().into_bound(py));
        let address = this.field(py, |s| &s.address);
        if let Some(a) = &address {
            let a = a.bind(py);
            if !addr.is_none() && !addr.eq(a)? {
                return Err(PyValueError::new_err(format!("Invalid address: must be None or {}", a.str()?)));
            }
            addr = a.clone();
            let lost = {
                let mut st = this.st.borrow_mut();
                let lost = st.base.conn_lost;
                if lost > 0 {
                    st.base.conn_lost += 1;
                }
                lost
            };
            if lost > 0 {
                if lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES {
                    py.import("asyncio.log")?.getattr("logger")?.call_method1("warning", ("socket.send() raised exception.",))?;
                }
                return Ok(());
            }
        }
        if this.st.borrow().buffer.is_empty() {
            let Some(sock) = this.field(py, |s| &s.sock) else { return Ok(()) };
            match this.send_one(py, sock.bind(py), data, &addr) {
                Io::Done(_) => return Ok(()),
                Io::WouldBlock => Self::set_slot(slf, true, true)?,
                Io::OsErr(e) => {
                    let exc = crate::runtime::util::exc_value(py, e);
                    return this.call_protocol(py, "error_received", (exc,));
                }
                Io::Other(e) => return this.fatal(py, e, "Fatal write error on datagram transport"),
            }
        }
        // What is buffered must not change under us.
        let owned = PyBytes::new(py, &pyo3::buffer::PyBuffer::<u8>::get(data)?.to_vec(py)?);
        let len = buffered_size(owned.len()?);
        {
            let mut st = this.st.borrow_mut();
            st.buffer.push_back((owned.into_any().unbind(), addr.unbind()));
            st.buffer_size += len;
        }
        Self::flow_call(slf, true)
    }

    /// asyncio's `_SelectorTransport.close`.
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let lost = {
            let mut st = slf.get().st.borrow_mut();
            if st.base.closing {
                return Ok(());
            }
            st.base.closing = true;
            let lost = st.buffer.is_empty();
            if lost {
                st.base.conn_lost += 1;
            }
            lost
        };
        Self::set_slot(slf, false, false)?;
        if lost {
            Self::set_slot(slf, true, false)?;
            Self::schedule_connection_lost(slf, None)?;
        }
        Ok(())
    }

    /// asyncio's `_force_close`.
    #[pyo3(signature = (exc = None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let (had_buffer, was_closing) = {
            let mut st = slf.get().st.borrow_mut();
            if st.base.conn_lost > 0 {
                return Ok(());
            }
            let had = !st.buffer.is_empty();
            let old = std::mem::take(&mut st.buffer);
            st.buffer_size = 0;
            let was_closing = st.base.closing;
            st.base.closing = true;
            st.base.conn_lost += 1;
            drop(st);
            drop(old);
            (had, was_closing)
        };
        if had_buffer {
            Self::set_slot(slf, true, false)?;
        }
        if !was_closing {
            Self::set_slot(slf, false, false)?;
        }
        Self::schedule_connection_lost(slf, exc)
    }

    fn set_protocol(&self, protocol: Py<PyAny>) {
        let old = self.st.borrow_mut().base.protocol.replace(protocol);
        drop(old);
    }

    /// Leave the fd table and drop references (after `connection_lost`,
    /// before the socket is closed).
    fn _detach(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::set_slot(slf, false, false)?;
        Self::set_slot(slf, true, false)?;
        let old = {
            let mut st = slf.get().st.borrow_mut();
            let st = &mut *st;
            let b = std::mem::take(&mut st.buffer);
            (st.base.protocol.take(), st.base.transport.take(), st.base.loop_.take(), st.sock.take(), b)
        };
        drop(old);
        Ok(())
    }

    /// (reader registered, writer registered)
    #[getter]
    fn _polling(&self) -> (bool, bool) {
        let st = self.st.borrow();
        (st.reading, st.writing)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.st.try_borrow() {
            traverse!(&visit; st.base, st.sock, st.address, st.buffer);
        }
        Ok(())
    }

    fn __clear__(&self) {
        let old = {
            let mut st = self.st.borrow_mut();
            let st = &mut *st;
            let b = std::mem::take(&mut st.buffer);
            let base = &mut st.base;
            (base.loop_.take(), base.transport.take(), base.protocol.take(), base.context.take(), st.sock.take(), st.address.take(), b)
        };
        drop(old);
    }
}

/// What one queued datagram adds to `get_write_buffer_size()`: its payload,
/// and from 3.13 on 8 bytes of header, as asyncio counts.
fn buffered_size(payload: usize) -> usize {
    if crate::runtime::pyver::at_least(13) {
        payload + 8
    } else {
        payload
    }
}

transport_base_methods!(DatagramCore);
