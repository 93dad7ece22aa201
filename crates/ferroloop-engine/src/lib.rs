//! ferroloop's engine: everything an asyncio event loop needs that does not
//! touch Python.
//!
//! The bindings crate (`ferroloop-py`) owns one [`Engine`]-shaped set of parts
//! per Python loop and drives them from `Loop._run_once`:
//!
//! * [`clock`] — the loop clock. It is `CLOCK_MONOTONIC`, the same clock as
//!   Python's `time.monotonic()`, so `loop.time()` agrees with user code.
//! * [`ReadyQueue`] — FIFO of jobs that run on the next iteration.
//! * [`TimerHeap`] — deadlines ordered by `(when, insertion order)`, with lazy
//!   removal of cancelled entries and compaction when most are cancelled.
//! * [`reactor::Reactor`] — a mio `Poll` plus a `Waker`, so another thread can
//!   interrupt a blocking poll.
//! * [`reactor::Injector`] — the cross-thread queue behind
//!   `call_soon_threadsafe`: a mutex-protected vector plus a "wake pending"
//!   flag so that a burst of submissions costs one wake-up syscall.
//!
//! The item types are generic: the engine never inspects a job, it only
//! stores, orders and hands them back. That keeps it testable with plain
//! integers and free of pyo3.

pub mod clock;
pub mod reactor;
mod timers;

pub use timers::TimerHeap;

/// The ready queue is a plain ring buffer: asyncio's `_ready` deque semantics
/// (append at the back, run from the front, a fixed count per iteration).
pub type ReadyQueue<T> = std::collections::VecDeque<T>;
