//! Registry of live native tasks, read by `asyncio.all_tasks()`.
//!
//! asyncio registers every task in a `WeakSet`: a GC-tracked weak reference
//! and two Python-level calls per task (add, and the removal callback when
//! the task dies). Exact `ferroloop.Task` instances are instead recorded here
//! by address — inserted at creation, removed in the type's deallocator
//! before anything else is torn down — and `ferroloop._loop` points
//! `asyncio.tasks._all_tasks` at a view that iterates both the WeakSet and
//! this registry. Python subclasses of Task (whose deallocation path we do
//! not own) keep using asyncio's WeakSet.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::runtime::gil::GilCell;

/// Object addresses are unique while registered; multiplying by a large odd
/// constant spreads their low (aligned) bits.
#[derive(Default)]
pub(crate) struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only usize keys are hashed")
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
}

type AddrSet = HashSet<usize, BuildHasherDefault<AddrHasher>>;

static ENABLED: AtomicBool = AtomicBool::new(false);
static LIVE: GilCell<Option<AddrSet>> = GilCell::new(None);

pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(crate) fn insert(obj: &Bound<'_, PyAny>) {
    LIVE.borrow_mut().get_or_insert_with(AddrSet::default).insert(obj.as_ptr() as usize);
}

/// Called from the Task deallocator with the GIL held.
pub(crate) fn remove(addr: usize) {
    if let Some(set) = LIVE.borrow_mut().as_mut() {
        set.remove(&addr);
    }
}

/// Switch native registration on (done once by `ferroloop._loop` after it
/// has installed the view asyncio's `all_tasks()` reads).
#[pyfunction]
pub(crate) fn _enable_task_registry() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Every live native task registered here, as a list.
#[pyfunction]
pub(crate) fn _live_tasks(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
    let addrs: Vec<usize> = match LIVE.borrow().as_ref() {
        Some(set) => set.iter().copied().collect(),
        None => Vec::new(),
    };
    let list = PyList::empty(py);
    for addr in addrs {
        // SAFETY: an address is in the registry only while its object is
        // alive: it is removed at the start of deallocation, before the
        // refcount-zero object is torn down, and everything here runs
        // under the GIL, so no deallocation interleaves with this loop.
        let obj = unsafe { Bound::from_borrowed_ptr(py, addr as *mut pyo3::ffi::PyObject) };
        list.append(obj)?;
    }
    Ok(list)
}
