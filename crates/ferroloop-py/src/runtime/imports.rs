//! Python objects ferroloop needs at run time, looked up once.
//!
//! Task bookkeeping must be shared with asyncio itself so that
//! `asyncio.current_task()` and `asyncio.all_tasks()` see native tasks:
//! `_current_tasks` is the dict `_asyncio` keeps (loop -> running task), and
//! `_all_tasks` its WeakSet of live tasks.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

pub(crate) struct Imports {
    pub cancelled_error: Py<PyAny>,
    pub invalid_state_error: Py<PyAny>,
    pub current_tasks: Py<PyDict>,
    pub register_task: Py<PyAny>,
    pub iscoroutine: Py<PyAny>,
    pub isgenerator: Py<PyAny>,
    pub future_repr_info: Py<PyAny>,
    pub task_repr_info: Py<PyAny>,
    pub task_get_stack: Py<PyAny>,
    pub task_print_stack: Py<PyAny>,
    pub get_event_loop: Py<PyAny>,
    pub extract_stack: Py<PyAny>,
    pub format_callback_source: Py<PyAny>,
    pub generic_alias: Py<PyAny>,
    /// `asyncio.Task`: what a slow callback's `__self__` is checked against.
    pub task_class: Py<PyAny>,
}

static IMPORTS: PyOnceLock<Imports> = PyOnceLock::new();

fn load(py: Python<'_>) -> PyResult<Imports> {
    let attr = |module: &str, name: &str| -> PyResult<Py<PyAny>> {
        Ok(py.import(module)?.getattr(name)?.unbind())
    };
    let tasks = py.import("asyncio.tasks")?;
    Ok(Imports {
        cancelled_error: attr("asyncio.exceptions", "CancelledError")?,
        invalid_state_error: attr("asyncio.exceptions", "InvalidStateError")?,
        current_tasks: tasks.getattr("_current_tasks")?.cast_into::<PyDict>()?.unbind(),
        register_task: tasks.getattr("_register_task")?.unbind(),
        iscoroutine: attr("asyncio.coroutines", "iscoroutine")?,
        isgenerator: attr("inspect", "isgenerator")?,
        future_repr_info: attr("asyncio.base_futures", "_future_repr_info")?,
        task_repr_info: attr("asyncio.base_tasks", "_task_repr_info")?,
        task_get_stack: attr("asyncio.base_tasks", "_task_get_stack")?,
        task_print_stack: attr("asyncio.base_tasks", "_task_print_stack")?,
        get_event_loop: attr("asyncio.events", "get_event_loop")?,
        extract_stack: attr("asyncio.format_helpers", "extract_stack")?,
        format_callback_source: attr("asyncio.format_helpers", "_format_callback_source")?,
        generic_alias: attr("types", "GenericAlias")?,
        task_class: attr("asyncio.tasks", "Task")?,
    })
}

pub(crate) fn imports(py: Python<'_>) -> &'static Imports {
    IMPORTS
        .get_or_try_init(py, || load(py))
        .expect("ferroloop: asyncio internals could not be imported")
}

pub(crate) fn init(py: Python<'_>) -> PyResult<()> {
    IMPORTS.get_or_try_init(py, || load(py)).map(|_| ())
}
