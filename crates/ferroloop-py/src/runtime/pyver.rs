//! The running interpreter's minor version, read once when the module is
//! imported. Where asyncio changed between versions, ferroloop follows the
//! running one, and the choice is made on this number — never by probing
//! for a feature, which can pick the wrong branch without anyone noticing.

use std::sync::atomic::{AtomicU8, Ordering};

use pyo3::prelude::*;

static MINOR: AtomicU8 = AtomicU8::new(0);
static PATCH: AtomicU8 = AtomicU8::new(0);

pub(crate) fn init(py: Python<'_>) {
    let v = py.version_info();
    MINOR.store(v.minor, Ordering::Relaxed);
    PATCH.store(v.patch, Ordering::Relaxed);
}

/// True on Python 3.`minor`.`patch` and later (for the rare change made in a
/// bugfix release).
pub(crate) fn at_least_patch(minor: u8, patch: u8) -> bool {
    let m = MINOR.load(Ordering::Relaxed);
    m > minor || (m == minor && PATCH.load(Ordering::Relaxed) >= patch)
}

/// True on Python 3.`minor` and later.
#[inline]
pub(crate) fn at_least(minor: u8) -> bool {
    MINOR.load(Ordering::Relaxed) >= minor
}
