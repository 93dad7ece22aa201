//! The running interpreter's minor version, read once when the module is
//! imported. Where asyncio changed between versions, ferroloop follows the
//! running one, and the choice is made on this number — never by probing
//! for a feature, which can pick the wrong branch without anyone noticing.

use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::prelude::*;

static MINOR: AtomicU8 = AtomicU8::new(0);

pub(crate) fn init(py: Python<'_>) {
    MINOR.store(py.version_info().minor, Ordering::Relaxed);
}

/// True on Python 3.`minor` and later.
#[inline]
pub(crate) fn at_least(minor: u8) -> bool {
    MINOR.load(Ordering::Relaxed) >= minor
}
