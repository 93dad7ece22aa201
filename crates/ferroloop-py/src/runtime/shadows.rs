//! Stand-in classes reported by `__class__` of the native Future, Task and
//! handles (see `Future.__class__` and docs/DIFFERENCES.md).

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

pub(crate) struct Shadows {
    pub future: Py<PyAny>,
    pub task: Py<PyAny>,
    pub handle: Py<PyAny>,
    pub timer_handle: Py<PyAny>,
}

/// Loaded on first use: `ferroloop._shadow` imports the extension module,
/// so it cannot be imported while the module initialises.
static SHADOWS: PyOnceLock<Shadows> = PyOnceLock::new();

pub(crate) fn shadow_classes(py: Python<'_>) -> PyResult<&'static Shadows> {
    SHADOWS.get_or_try_init(py, || {
        let m = py.import("ferroloop._shadow")?;
        Ok(Shadows {
            future: m.getattr("Future")?.unbind(),
            task: m.getattr("Task")?.unbind(),
            handle: m.getattr("Handle")?.unbind(),
            timer_handle: m.getattr("TimerHandle")?.unbind(),
        })
    })
}
