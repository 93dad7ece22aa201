//! What the stream and datagram transports share, written once: their
//! common state (loop, Python wrapper, protocol, closing, flow control
//! marks, the context protocol callbacks run in) and asyncio's shared
//! transport behaviour on it (`_fatal_error`, `_maybe_pause_protocol` /
//! `_maybe_resume_protocol`, reporting to the exception handler,
//! `_schedule_call_connection_lost`), as uvloop keeps them in its base
//! transport.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};

use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::gil::GilCell;
use crate::runtime::util::{exc_value, is_fatal};
use crate::sched::loop_core::LoopCore;

pub(crate) struct BaseState {
    pub loop_: Option<Py<LoopCore>>,
    /// The Python transport object wrapping the core.
    pub transport: Option<Py<PyAny>>,
    pub protocol: Option<Py<PyAny>>,
    pub closing: bool,
    pub conn_lost: u32,
    pub protocol_paused: bool,
    pub high_water: usize,
    pub low_water: usize,
    /// The context current when the transport was made: protocol callbacks
    /// driven by readiness run in it, as asyncio's reader handle does.
    pub context: Option<Py<PyAny>>,
}

impl BaseState {
    pub(crate) fn new(loop_: Py<LoopCore>, transport: Py<PyAny>, protocol: Py<PyAny>, context: Py<PyAny>) -> Self {
        BaseState {
            loop_: Some(loop_),
            transport: Some(transport),
            protocol: Some(protocol),
            closing: false,
            conn_lost: 0,
            protocol_paused: false,
            high_water: 64 * 1024,
            low_water: 16 * 1024,
            context: Some(context),
        }
    }
}

impl Traverse for BaseState {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        traverse!(visit; self.loop_, self.transport, self.protocol, self.context);
        Ok(())
    }
}

/// A transport's state: the shared part and the size of its write buffer.
pub(crate) trait TransportState {
    fn base(&self) -> &BaseState;
    fn base_mut(&mut self) -> &mut BaseState;
    fn buffer_size(&self) -> usize;
}

/// The shared behaviour, over a transport's state cell. No borrow of the
/// cell is held while Python code runs.
pub(crate) struct Base<'a, S>(pub &'a GilCell<S>);

impl<S: TransportState> Base<'_, S> {
    fn field(&self, py: Python<'_>, f: impl Fn(&BaseState) -> &Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        f(self.0.borrow().base()).as_ref().map(|o| o.clone_ref(py))
    }

    pub(crate) fn loop_of(&self, py: Python<'_>) -> Option<Py<LoopCore>> {
        self.0.borrow().base().loop_.as_ref().map(|l| l.clone_ref(py))
    }

    pub(crate) fn wrapper<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.field(py, |b| &b.transport).map(|t| t.into_bound(py))
    }

    pub(crate) fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.field(py, |b| &b.protocol).map(|t| t.into_bound(py))
    }

    pub(crate) fn context(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.field(py, |b| &b.context)
    }

    /// Call `protocol.<name>(*args)` in the transport's context (unless it
    /// is the current one already).
    pub(crate) fn call_protocol<'py>(&self, py: Python<'py>, name: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<()> {
        let Some(p) = self.protocol(py) else { return Ok(()) };
        let ctx = self.context(py);
        crate::runtime::contexts::run_in_unless_entered(py, ctx.as_ref(), || p.call_method1(name, args).map(drop))
    }

    /// `transport._fatal_error(exc, message)` (Python: exception handler or
    /// debug log, then `_force_close`). SystemExit/KeyboardInterrupt escape.
    pub(crate) fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_fatal(py, &err) {
            return Err(err);
        }
        match self.wrapper(py) {
            Some(t) => t.call_method1("_fatal_error", (exc_value(py, err), message)).map(drop),
            None => Ok(()),
        }
    }

    /// Report `err` to the loop's exception handler with this transport and
    /// its protocol, as asyncio does for a failing protocol callback.
    pub(crate) fn report(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_fatal(py, &err) {
            return Err(err);
        }
        let Some(l) = self.loop_of(py) else { return Ok(()) };
        let d = PyDict::new(py);
        d.set_item("message", message)?;
        d.set_item("exception", exc_value(py, err))?;
        d.set_item("transport", self.wrapper(py))?;
        d.set_item("protocol", self.protocol(py))?;
        crate::runtime::util::report(l.bind(py).as_any(), d)
    }

    /// asyncio's `_maybe_pause_protocol` (`pause`) and
    /// `_maybe_resume_protocol`: cross the high or low water mark once.
    pub(crate) fn flow(&self, py: Python<'_>, pause: bool) -> PyResult<()> {
        {
            let mut st = self.0.borrow_mut();
            let size = st.buffer_size();
            let b = st.base_mut();
            let cross = if pause { size > b.high_water && !b.protocol_paused } else { b.protocol_paused && size <= b.low_water };
            if !cross {
                return Ok(());
            }
            b.protocol_paused = pause;
        }
        let (name, msg) = if pause {
            ("pause_writing", "protocol.pause_writing() failed")
        } else {
            ("resume_writing", "protocol.resume_writing() failed")
        };
        match self.call_protocol(py, name, ()) {
            Ok(()) => Ok(()),
            Err(e) => self.report(py, e, msg),
        }
    }

    /// asyncio's `_schedule_call_connection_lost`: `connection_lost` runs
    /// in the transport's context, like every other protocol callback of it.
    pub(crate) fn schedule_connection_lost(&self, py: Python<'_>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        if let (Some(l), Some(t)) = (self.loop_of(py), self.wrapper(py)) {
            let kwargs = PyDict::new(py);
            kwargs.set_item("context", self.context(py))?;
            l.bind(py).call_method("call_soon", (t.getattr("_call_connection_lost")?, exc), Some(&kwargs))?;
        }
        Ok(())
    }

    /// asyncio's `set_write_buffer_limits` marks, then a pause if now over.
    pub(crate) fn set_limits(&self, py: Python<'_>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (high, low) = crate::runtime::util::water_marks(high, low)?;
        {
            let mut st = self.0.borrow_mut();
            let b = st.base_mut();
            b.high_water = high;
            b.low_water = low;
        }
        self.flow(py, true)
    }
}

/// The Python methods every transport core answers from its shared state,
/// generated once for each core type (a `#[pymethods]` block of its own:
/// PyO3's `multiple-pymethods`). The type has `st: GilCell<S>` with
/// `S: TransportState` and a `base()` returning `Base<'_, S>`.
macro_rules! transport_base_methods {
    ($core:ty) => {
        #[pyo3::pymethods]
        impl $core {
            fn is_closing(&self) -> bool {
                self.st.borrow().base().closing
            }

            fn get_write_buffer_size(&self) -> usize {
                self.st.borrow().buffer_size()
            }

            fn get_write_buffer_limits(&self) -> (usize, usize) {
                let st = self.st.borrow();
                (st.base().low_water, st.base().high_water)
            }

            #[pyo3(signature = (high = None, low = None))]
            fn set_write_buffer_limits(slf: &pyo3::Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> pyo3::PyResult<()> {
                slf.get().base().set_limits(slf.py(), high, low)
            }

            fn get_protocol(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::PyAny>> {
                self.base().protocol(py).map(pyo3::Bound::unbind)
            }

            /// The context protocol callbacks run in (captured at creation).
            #[getter]
            fn _context(&self, py: pyo3::Python<'_>) -> Option<pyo3::Py<pyo3::PyAny>> {
                self.base().context(py)
            }

            #[getter]
            fn _conn_lost(&self) -> u32 {
                self.st.borrow().base().conn_lost
            }

            #[getter]
            fn _protocol_paused(&self) -> bool {
                self.st.borrow().base().protocol_paused
            }
        }
    };
}
pub(crate) use transport_base_methods;

/// The transport core's two job kinds, `READ` and `WRITE` (its socket is
/// readable / writable), running `$core::run_job(core, write)`.
macro_rules! transport_job_kinds {
    ($core:ty) => {
        pub(crate) static READ: $crate::sched::job::JobKind = $crate::sched::job::JobKind {
            run: |core, _, _| <$core>::run_job(core.cast::<$core>()?, false),
            subject: $crate::sched::job::target_subject,
            as_callback: None,
        };
        pub(crate) static WRITE: $crate::sched::job::JobKind = $crate::sched::job::JobKind {
            run: |core, _, _| <$core>::run_job(core.cast::<$core>()?, true),
            subject: $crate::sched::job::target_subject,
            as_callback: None,
        };
    };
}
pub(crate) use transport_job_kinds;
