//! ferroloop's engine: the parts of an asyncio event loop that do not touch
//! Python, each tested here with plain values.
//!
//! * [`clock`] — the loop clock, `CLOCK_MONOTONIC` (Python's
//!   `time.monotonic()`), so `loop.time()` agrees with user code.
//! * [`ReadyQueue`] — FIFO of jobs that run on the next iteration.
//! * [`TimerHeap`] — deadlines ordered by `(when, insertion order)`.
//! * [`iteration`] — the policy of one iteration: cancelled-timer sweep and
//!   heap compaction, the poll timeout (or no poll), the due-timer window.
//! * [`fdtable::FdTable`] — reader/writer/owner slots per descriptor and the
//!   reactor interest changes they imply.
//! * [`edge::EdgeReader`] — level-triggered stream reading on edge-triggered
//!   readiness.
//! * [`histogram`] — the fixed duration buckets of the loop metrics.
//! * [`reactor::Reactor`] — a mio `Poll`; [`reactor::Wake`] interrupts it
//!   from another thread.
//!
//! The item types are generic: the engine never inspects a job or a waiter,
//! it only stores, orders and hands them back. That keeps it free of pyo3.

pub mod clock;
pub mod edge;
pub mod fdtable;
pub mod histogram;
pub mod iteration;
pub mod reactor;
mod timers;

pub use timers::TimerHeap;

/// The ready queue is a plain ring buffer: asyncio's `_ready` deque semantics
/// (append at the back, run from the front, a fixed count per iteration).
pub type ReadyQueue<T> = std::collections::VecDeque<T>;
