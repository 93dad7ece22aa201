//! The steady-state data path of TLS connections, native.
//!
//! TLS is asyncio's `SSLProtocol` (memory BIOs around an `ssl.SSLObject`)
//! over ferroloop's native transport. Its handshake, shutdown, timeouts and
//! flow-control transitions stay asyncio's Python code; what runs for every
//! record once the connection is established — feed the received bytes to
//! the incoming BIO, read the plaintext out, hand it to the application,
//! encrypt what the application writes and pass the outgoing BIO to the
//! socket — is done here, from Rust, with the same steps and the same
//! objects (`SSLObject.read/write`, `MemoryBIO.write/read`). A Python
//! `SSLProtocol` runs about sixteen Python frames per echoed record; this
//! runs none unless a state change or a flow-control transition needs the
//! Python method, which is then called.
//!
//! Anything but the common case — a handshake or shutdown in progress,
//! paused application reading, a `BufferedProtocol` application, a write
//! backlog — goes to asyncio's own methods unchanged.
//! (python/ferroloop/_loop.py, `_SSLProtocol`, installs these functions.)

use pyo3::exceptions::{PyTypeError, PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyMemoryView, PySlice, PyType};

struct Names {
    wrapped: Py<PyAny>,
    do_handshake: Py<PyAny>,
    flushing: Py<PyAny>,
    shutdown: Py<PyAny>,
    again_errors: Py<PyAny>,
    ssl_object: Py<PyAny>,
    /// `ssl.SSLObject` has no class attribute `_sslobj`.
    inner_in_dict: bool,
}

static NAMES: PyOnceLock<Names> = PyOnceLock::new();

fn names(py: Python<'_>) -> PyResult<&'static Names> {
    NAMES.get_or_try_init(py, || -> PyResult<_> {
        let m = py.import("asyncio.sslproto")?;
        let st = m.getattr("SSLProtocolState")?;
        let inner_in_dict;
        Ok(Names {
            wrapped: st.getattr("WRAPPED")?.unbind(),
            do_handshake: st.getattr("DO_HANDSHAKE")?.unbind(),
            flushing: st.getattr("FLUSHING")?.unbind(),
            shutdown: st.getattr("SHUTDOWN")?.unbind(),
            again_errors: m.getattr("SSLAgainErrors")?.unbind(),
            ssl_object: {
                let cls = py.import("ssl")?.getattr("SSLObject")?;
                inner_in_dict = !cls.hasattr("_sslobj")?;
                cls.unbind()
            },
            inner_in_dict,
        })
    })
}

macro_rules! attr {
    ($obj:expr, $name:literal) => {
        $obj.getattr(pyo3::intern!($obj.py(), $name))
    };
}

/// The object whose `read`/`write`/`pending` do the work: for an
/// `ssl.SSLObject` itself, the `_ssl._SSLSocket` its methods forward to
/// unchanged (one Python frame less per call); a subclass (a context's
/// `sslobject_class`) keeps its own methods.
fn ssl_engine<'py>(sslobj: Bound<'py, PyAny>, n: &Names) -> PyResult<Bound<'py, PyAny>> {
    if sslobj.get_type().is(n.ssl_object.bind(sslobj.py())) {
        if let Ok(inner) = instance_attr(&sslobj, pyo3::intern!(sslobj.py(), "_sslobj"), n.inner_in_dict) {
            return Ok(inner);
        }
    }
    Ok(sslobj)
}

/// The instance attributes of the TLS protocol the record path reads. Read
/// from the instance `__dict__` (asyncio's `SSLProtocol` sets them all in
/// `__init__`): a generic `getattr` first searches the class's MRO for a data
/// descriptor, about three times the cost, and these are some forty lookups
/// per echoed record. `_register_tls_protocol` checks that the class defines
/// none of these names; if it does, every read is a plain `getattr`.
const FIELDS: &[&str] = &[
    "_ssl_buffer", "_ssl_buffer_view", "_incoming", "_outgoing", "_state", "_sslobj", "_transport",
    "_app_protocol", "_app_protocol_is_buffer", "_app_reading_paused", "_app_writing_paused",
    "_ssl_reading_paused", "_ssl_writing_paused", "_write_backlog", "_write_buffer_size",
    "_incoming_low_water", "_incoming_high_water", "_outgoing_low_water", "_outgoing_high_water",
];

static FIELDS_IN_DICT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `getattr(proto, name)` for a name of [`FIELDS`].
fn field<'py>(proto: &Bound<'py, PyAny>, name: &Bound<'py, pyo3::types::PyString>) -> PyResult<Bound<'py, PyAny>> {
    instance_attr(proto, name, FIELDS_IN_DICT.load(std::sync::atomic::Ordering::Relaxed))
}

/// `getattr(obj, name)`, from the instance dict first when `in_dict` (the
/// caller knows the class has no attribute of that name).
fn instance_attr<'py>(obj: &Bound<'py, PyAny>, name: &Bound<'py, pyo3::types::PyString>, in_dict: bool) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if in_dict {
        // The dict is fetched each time: Python code run in between may have
        // replaced `obj.__dict__`.
        // SAFETY: `obj` is a live object; a NULL result (no dict, or an
        // error) is handled by the fallback below.
        let dict = unsafe { Bound::from_owned_ptr_or_opt(py, pyo3::ffi::PyObject_GenericGetDict(obj.as_ptr(), std::ptr::null_mut())) };
        match dict {
            Some(d) => {
                if let Some(v) = d.cast_into::<pyo3::types::PyDict>().ok().and_then(|d| d.get_item(name).ok().flatten()) {
                    return Ok(v);
                }
            }
            None => drop(PyErr::take(py)),
        }
    }
    obj.getattr(name)
}

macro_rules! field {
    ($obj:expr, $name:literal) => {
        field(&$obj, pyo3::intern!($obj.py(), $name))
    };
}

fn is_again(py: Python<'_>, e: &PyErr, n: &Names) -> bool {
    e.matches(py, n.again_errors.bind(py)).unwrap_or(false)
}

fn fatal(proto: &Bound<'_, PyAny>, e: PyErr) -> PyResult<()> {
    let py = proto.py();
    // asyncio's `except Exception`: BaseExceptions that are not Exceptions
    // (KeyboardInterrupt, SystemExit, CancelledError) propagate.
    if !e.is_instance_of::<pyo3::exceptions::PyException>(py)
        || e.is_instance_of::<PySystemExit>(py)
        || e.is_instance_of::<PyKeyboardInterrupt>(py)
    {
        return Err(e);
    }
    let exc = crate::runtime::util::exc_value(py, e);
    proto.call_method1(pyo3::intern!(py, "_fatal_error"), (exc, "Fatal error on SSL protocol"))?;
    Ok(())
}

/// Whether buffering `size` bytes makes a flow-control method of asyncio's
/// act: pause when not paused and at/over `high`, resume when paused and
/// at/under `low`.
fn crosses_water_mark(
    proto: &Bound<'_, PyAny>,
    size: usize,
    paused: &Bound<'_, pyo3::types::PyString>,
    low: &Bound<'_, pyo3::types::PyString>,
    high: &Bound<'_, pyo3::types::PyString>,
) -> PyResult<bool> {
    Ok(if field(proto, paused)?.is_truthy()? {
        size <= field(proto, low)?.extract::<usize>()?
    } else {
        size >= field(proto, high)?.extract::<usize>()?
    })
}

/// `_process_outgoing` + `_control_app_writing`: the Python method is only
/// called when the application's writing state must change.
fn process_outgoing(proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = proto.py();
    let outgoing = field!(proto, "_outgoing")?;
    let mut pending: usize = attr!(outgoing, "pending")?.extract()?;
    // An empty BIO reads as b"", which asyncio does not write: skip the call.
    if pending > 0 && !field!(proto, "_ssl_writing_paused")?.is_truthy()? {
        let data = outgoing.call_method0(pyo3::intern!(py, "read"))?;
        if data.len()? > 0 {
            field!(proto, "_transport")?.call_method1(pyo3::intern!(py, "write"), (data,))?;
        }
        pending = attr!(outgoing, "pending")?.extract()?;
    }
    let size: usize = pending + field!(proto, "_write_buffer_size")?.extract::<usize>()?;
    if crosses_water_mark(proto, size, pyo3::intern!(py, "_app_writing_paused"), pyo3::intern!(py, "_outgoing_low_water"), pyo3::intern!(py, "_outgoing_high_water"))? {
        proto.call_method0(pyo3::intern!(py, "_control_app_writing"))?;
    }
    Ok(())
}

/// `_control_ssl_reading`, calling the Python method only on a transition.
fn control_ssl_reading(proto: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = proto.py();
    let size: usize = attr!(field!(proto, "_incoming")?, "pending")?.extract()?;
    if crosses_water_mark(proto, size, pyo3::intern!(py, "_ssl_reading_paused"), pyo3::intern!(py, "_incoming_low_water"), pyo3::intern!(py, "_incoming_high_water"))? {
        proto.call_method0(pyo3::intern!(py, "_control_ssl_reading"))?;
    }
    Ok(())
}

/// `_do_read` for a non-buffered application whose reading is not paused
/// (the caller checked both), in the WRAPPED state.
fn read_wrapped(proto: &Bound<'_, PyAny>, n: &Names) -> PyResult<()> {
    let py = proto.py();
    let sslobj = ssl_engine(field!(proto, "_sslobj")?, n)?;
    let max_size = attr!(proto, "max_size")?;
    let incoming = field!(proto, "_incoming")?;
    let mut chunks: Vec<Bound<'_, PyAny>> = Vec::new();
    let mut close_notify = false;
    loop {
        // With nothing left in the incoming BIO and no decrypted bytes held
        // by the SSL object, read() could only raise SSLWantReadError (the
        // loop's usual end); skip building that exception.
        if !chunks.is_empty()
            && attr!(incoming, "pending")?.extract::<usize>()? == 0
            && sslobj.call_method0(pyo3::intern!(py, "pending"))?.extract::<usize>()? == 0
        {
            break;
        }
        match sslobj.call_method1(pyo3::intern!(py, "read"), (&max_size,)) {
            Ok(chunk) => {
                if !chunk.is_truthy()? {
                    close_notify = true;
                    break;
                }
                chunks.push(chunk);
            }
            Err(e) if is_again(py, &e, n) => break,
            Err(e) => return Err(e),
        }
    }
    if !chunks.is_empty() {
        let data = if chunks.len() == 1 {
            chunks.pop().expect("one")
        } else {
            PyBytes::new(py, b"").call_method1(pyo3::intern!(py, "join"), (PyList::new(py, chunks)?,))?
        };
        field!(proto, "_app_protocol")?.call_method1(pyo3::intern!(py, "data_received"), (data,))?;
    }
    if close_notify {
        proto.call_method0(pyo3::intern!(py, "_call_eof_received"))?;
        proto.call_method0(pyo3::intern!(py, "_start_shutdown"))?;
    }
    if field!(proto, "_write_backlog")?.is_truthy()? {
        proto.call_method0(pyo3::intern!(py, "_do_write"))?;
    } else {
        process_outgoing(proto)?;
    }
    Ok(())
}

/// The `SSLProtocol` subclass whose `get_buffer`/`buffer_updated` are the
/// functions below: the native transport calls them directly, without a
/// Python method call (python/ferroloop/_loop.py registers it).
static TLS_PROTOCOL_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

#[pyfunction]
pub(crate) fn _register_tls_protocol(cls: Bound<'_, PyType>) -> PyResult<()> {
    let py = cls.py();
    let mut in_dict = true;
    for name in FIELDS {
        in_dict &= !cls.hasattr(*name)?;
    }
    FIELDS_IN_DICT.store(in_dict, std::sync::atomic::Ordering::Relaxed);
    TLS_PROTOCOL_TYPE.get_or_init(py, || cls.unbind());
    Ok(())
}

/// `protocol` is exactly the registered TLS protocol class.
pub(crate) fn is_tls_protocol(protocol: &Bound<'_, PyAny>) -> bool {
    TLS_PROTOCOL_TYPE.get(protocol.py()).is_some_and(|t| protocol.get_type().is(t.bind(protocol.py())))
}

/// Records up to this size are handed to the incoming BIO as a bytes copy
/// rather than a memoryview slice (a GC-tracked object per record).
pub(crate) const COPY_MAX: usize = 16 * 1024;

/// `SSLProtocol.buffer_updated(nbytes)`.
#[pyfunction]
pub(crate) fn _tls_buffer_updated(proto: &Bound<'_, PyAny>, nbytes: usize) -> PyResult<()> {
    buffer_updated(proto, nbytes, None)
}

/// The first `nbytes` of the buffer `get_buffer()` returned hold received
/// bytes; `copy` is them as a bytes object when the caller still had the
/// buffer at hand (the native transport), else they are taken from the
/// protocol's buffer view.
pub(crate) fn buffer_updated<'py>(proto: &Bound<'py, PyAny>, nbytes: usize, copy: Option<Bound<'py, PyBytes>>) -> PyResult<()> {
    let py = proto.py();
    let n = names(py)?;
    let incoming = field!(proto, "_incoming")?;
    let copied = if copy.is_some() {
        copy
    } else if nbytes <= COPY_MAX {
        let view = field!(proto, "_ssl_buffer_view")?;
        pyo3::buffer::PyBuffer::<u8>::get(&view)
            .ok()
            .filter(|pb| pb.is_c_contiguous() && pb.item_count() >= nbytes)
            .map(|pb| {
                // SAFETY: the buffer is C-contiguous with at least `nbytes`
                // initialised bytes and stays exported while `pb` lives.
                let bytes = unsafe { std::slice::from_raw_parts(pb.buf_ptr() as *const u8, nbytes) };
                PyBytes::new(py, bytes)
            })
    } else {
        None
    };
    match copied {
        Some(b) => incoming.call_method1(pyo3::intern!(py, "write"), (b,))?,
        None => {
            let view = field!(proto, "_ssl_buffer_view")?;
            incoming.call_method1(pyo3::intern!(py, "write"), (view.get_item(PySlice::new(py, 0, nbytes as isize, 1))?,))?
        }
    };
    let state = field!(proto, "_state")?;
    if state.is(n.wrapped.bind(py)) {
        let common = !field!(proto, "_app_reading_paused")?.is_truthy()? && !field!(proto, "_app_protocol_is_buffer")?.is_truthy()?;
        if !common {
            proto.call_method0(pyo3::intern!(py, "_do_read"))?;
            return Ok(());
        }
        let r = read_wrapped(proto, n).and_then(|()| control_ssl_reading(proto));
        return match r {
            Ok(()) => Ok(()),
            Err(e) => fatal(proto, e),
        };
    }
    let method = if state.is(n.do_handshake.bind(py)) {
        "_do_handshake"
    } else if state.is(n.flushing.bind(py)) {
        "_do_flush"
    } else if state.is(n.shutdown.bind(py)) {
        "_do_shutdown"
    } else {
        return Ok(());
    };
    proto.call_method0(method)?;
    Ok(())
}

/// `_SSLProtocolTransport.write(data)` of the transport `proto` made.
#[pyfunction]
pub(crate) fn _tls_write(proto: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = proto.py();
    if !(data.is_instance_of::<PyBytes>() || data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
        return Err(PyTypeError::new_err(format!(
            "data: expecting a bytes-like instance, got {}",
            data.get_type().name()?
        )));
    }
    if !data.is_truthy()? {
        return Ok(());
    }
    let n = names(py)?;
    let common = field!(proto, "_state")?.is(n.wrapped.bind(py)) && !field!(proto, "_write_backlog")?.is_truthy()?;
    if !common {
        proto.call_method1(pyo3::intern!(py, "_write_appdata"), ((data,),))?;
        return Ok(());
    }
    // _write_appdata + _do_write with an empty backlog.
    let len = data.len()?;
    let r = (|| -> PyResult<()> {
        let rest = match ssl_engine(field!(proto, "_sslobj")?, n)?.call_method1(pyo3::intern!(py, "write"), (data,)) {
            Ok(count) => {
                let count: usize = count.extract()?;
                if count < len {
                    Some((data.get_item(PySlice::new(py, count as isize, isize::MAX, 1))?, len - count))
                } else {
                    None
                }
            }
            Err(e) if is_again(py, &e, n) => Some((data.clone(), len)),
            Err(e) => return Err(e),
        };
        if let Some((rest, left)) = rest {
            field!(proto, "_write_backlog")?.call_method1(pyo3::intern!(py, "append"), (rest,))?;
            let size: usize = field!(proto, "_write_buffer_size")?.extract()?;
            proto.setattr(pyo3::intern!(py, "_write_buffer_size"), size + left)?;
        }
        process_outgoing(proto)
    })();
    match r {
        Ok(()) => Ok(()),
        Err(e) => fatal(proto, e),
    }
}

/// `SSLProtocol.get_buffer(n)`.
#[pyfunction]
pub(crate) fn _tls_get_buffer<'py>(proto: &Bound<'py, PyAny>, n: isize) -> PyResult<Bound<'py, PyAny>> {
    let py = proto.py();
    let max_size: isize = attr!(proto, "max_size")?.extract()?;
    let want = if n <= 0 || n > max_size { max_size } else { n };
    if (field!(proto, "_ssl_buffer")?.len()? as isize) < want {
        let buf = PyByteArray::new(py, &vec![0u8; want as usize]);
        proto.setattr(pyo3::intern!(py, "_ssl_buffer_view"), PyMemoryView::from(buf.as_any())?)?;
        proto.setattr(pyo3::intern!(py, "_ssl_buffer"), buf)?;
    }
    field!(proto, "_ssl_buffer_view")
}
