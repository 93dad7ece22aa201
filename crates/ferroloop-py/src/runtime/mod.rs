//! The ground floor: what every other room of the bindings uses and which
//! uses none of them. The GIL-guarded cell, the Python objects imported
//! once, the per-version switches, contexts, the task registry, GC
//! traversal, and small helpers for errors and reporting.

pub(crate) mod contexts;
pub(crate) mod gc;
pub(crate) mod gil;
pub(crate) mod imports;
pub(crate) mod pyver;
pub(crate) mod registry;
pub(crate) mod shadows;
pub(crate) mod util;
