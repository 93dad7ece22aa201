//! What the ready queue holds: [`Job`]s, plain Rust values.
//!
//! The scheduler knows four shapes of work and nothing of the subsystems
//! behind them:
//! * `Handle` — a `call_soon`/`call_later` handle;
//! * `Io` — an `add_reader`/`add_writer` callback whose descriptor is ready
//!   (the loop re-arms the descriptor after it, see `loop_core`);
//! * `Callback` — a Future done-callback `cb(fut)` in its context;
//! * `Native` — work of a native subsystem, described by a static
//!   [`JobKind`] (a run function, the subject of a slow-callback report):
//!   a Task step or wake-up (`aio::task`), a transport read or write
//!   (`net::stream`, `net::datagram`), a `sock_*` retry (`net::sockops`).
//!
//! A `Native` job costs what a match arm costs: one call through a static
//! function pointer, no allocation, no Python object per step.

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::runtime::gc::{traverse, Traverse};
use crate::runtime::imports::imports;
use crate::runtime::util::{call_in_context, copy_context, is_fatal};
use crate::sched::handle::{make_handle, Handle};

/// How to run one kind of native job. `target` is the object the job is
/// for (a Task, a transport core, the loop), `obj` an optional second object
/// (the exception thrown into a step, the future that woke a task), `arg` a
/// small number (a descriptor).
pub(crate) struct JobKind {
    pub run: for<'py> fn(Bound<'py, PyAny>, Option<Bound<'py, PyAny>>, i32) -> PyResult<()>,
    /// What a slow run of this job is reported as (asyncio's
    /// `_format_handle`): taken before the job runs, formatted after.
    pub subject: fn(&Bound<'_, PyAny>, i32) -> Py<PyAny>,
    /// The Python callable (and its context) asyncio would hold for this
    /// work, when a Future's done-callback list must show it or a loop that
    /// is not ferroloop's must run it (a Task's `_wakeup`); None: internal.
    pub as_callback: Option<for<'py> fn(&Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Option<Py<PyAny>>)>>,
}

/// The usual slow-callback subject: the job's target itself (a Task, a
/// transport core), as asyncio's `_format_handle` shows the task of a step.
pub(crate) fn target_subject(target: &Bound<'_, PyAny>, _: i32) -> Py<PyAny> {
    target.clone().unbind()
}

pub(crate) enum Job {
    Handle(Py<Handle>),
    Io { fd: i32, handle: Py<Handle> },
    Callback {
        cb: Py<PyAny>,
        arg: Py<PyAny>,
        ctx: Option<Py<PyAny>>,
        /// `ctx` is a shared snapshot: run in a private copy of it.
        shared: bool,
    },
    Native { kind: &'static JobKind, target: Py<PyAny>, obj: Option<Py<PyAny>>, arg: i32 },
}

impl Traverse for Job {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Job::Handle(h) => Handle::traverse_owned(h, visit),
            Job::Io { handle: h, .. } => h.traverse(visit),
            Job::Callback { cb, arg, ctx, .. } => {
                traverse!(visit; cb, arg, ctx);
                Ok(())
            }
            Job::Native { target, obj, .. } => {
                traverse!(visit; target, obj);
                Ok(())
            }
        }
    }
}

impl Job {
    /// A job for a native subsystem's target.
    #[inline]
    pub(crate) fn native(kind: &'static JobKind, target: Py<PyAny>, obj: Option<Py<PyAny>>, arg: i32) -> Job {
        Job::Native { kind, target, obj, arg }
    }

    /// A cancelled handle is skipped, as asyncio skips it.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        match self {
            Job::Handle(h) | Job::Io { handle: h, .. } => h.get().is_cancelled(),
            _ => false,
        }
    }

    /// Run the job (an `Io` job's re-arm is the loop's, after this).
    /// `loop_` reports a failing done-callback.
    #[inline]
    pub(crate) fn run(self, loop_: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = loop_.py();
        match self {
            Job::Handle(h) | Job::Io { handle: h, .. } => Handle::run(h.bind(py)),
            Job::Native { kind, target, obj, arg } => (kind.run)(target.into_bound(py), obj.map(|o| o.into_bound(py)), arg),
            Job::Callback { cb, arg, ctx, shared } => run_callback(loop_, cb, arg, ctx, shared),
        }
    }

    /// What a slow job is reported as.
    pub(crate) fn subject(&self, py: Python<'_>) -> Py<PyAny> {
        self.subject_ref(py).subject(py)
    }

    /// A reference to what the job will be reported as, cheap to take (no
    /// Python call, no allocation) before the job is consumed by running it,
    /// for when the report is only made if the job turns out slow.
    pub(crate) fn subject_ref(&self, py: Python<'_>) -> SubjectRef {
        match self {
            Job::Handle(h) | Job::Io { handle: h, .. } => SubjectRef::Handle(h.clone_ref(py)),
            Job::Callback { cb, .. } => SubjectRef::Obj(cb.clone_ref(py)),
            Job::Native { kind, target, arg, .. } => SubjectRef::Native(kind, target.clone_ref(py), *arg),
        }
    }
}

/// See [`Job::subject_ref`].
pub(crate) enum SubjectRef {
    Handle(Py<Handle>),
    Obj(Py<PyAny>),
    Native(&'static JobKind, Py<PyAny>, i32),
}

impl SubjectRef {
    pub(crate) fn subject(self, py: Python<'_>) -> Py<PyAny> {
        match self {
            SubjectRef::Handle(h) => {
                let hb = h.bind(py);
                let owner = hb.get().inner.borrow().callback.as_ref().map(|cb| cb.clone_ref(py));
                // asyncio's _format_handle shows the task a handle's bound
                // method belongs to. (The callback is taken out of the
                // borrow first: getattr can run Python code.)
                let owner = owner.and_then(|cb| cb.bind(py).getattr("__self__").ok());
                match owner {
                    Some(o) if o.is_instance(imports(py).task_class.bind(py)).unwrap_or(false) => o.unbind(),
                    _ => h.into_any(),
                }
            }
            SubjectRef::Obj(o) => o,
            SubjectRef::Native(kind, target, arg) => (kind.subject)(target.bind(py), arg),
        }
    }
}

/// A Future's done-callback: `cb(fut)` in its context.
fn run_callback(loop_: &Bound<'_, PyAny>, cb: Py<PyAny>, arg: Py<PyAny>, ctx: Option<Py<PyAny>>, shared: bool) -> PyResult<()> {
    let py = loop_.py();
    let ctx = match ctx {
        Some(c) if shared => Some(crate::runtime::contexts::private_copy(py, &c)?),
        other => other,
    };
    let r = call_in_context(py, ctx.as_ref(), cb.bind(py), &PyTuple::new(py, [arg.bind(py)])?);
    match r {
        Ok(()) => Ok(()),
        Err(e) if is_fatal(py, &e) => Err(e),
        Err(e) => {
            // Reported through a Handle, as asyncio would have one.
            let args = PyTuple::new(py, [arg])?.unbind();
            let ctx = match ctx {
                Some(c) => c,
                None => copy_context(py)?,
            };
            let h = Handle::new_inner(cb.clone_ref(py), args.clone_ref(py), ctx, false, loop_.clone().unbind(), None, f64::NAN);
            let h = make_handle(py, h, false)?;
            Handle::report_failure(&h, loop_, cb, args, e, None)
        }
    }
}
