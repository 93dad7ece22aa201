//! The scheduler: handles, the jobs of the ready queue, the I/O driver, and
//! the loop core that runs them. Floors within the room, each naming only
//! those below it: `handle` < `job` < `io` < `loop_core`, and `metrics` (counters)
//! and `watchdog` (its thread) below `loop_core`. Nothing here
//! names a Future, a Task or a transport.

pub(crate) mod handle;
pub(crate) mod io;
pub(crate) mod job;
pub(crate) mod loop_core;
pub(crate) mod metrics;
pub(crate) mod watchdog;
