//! The watchdog (`loop.set_watchdog(seconds)`, `FERROLOOP_WATCHDOG`): a
//! thread that reports a callback still running after `seconds`, with the
//! loop thread's Python stack at that moment.
//!
//! While it is on, the loop times each job (as for callback timing) and
//! publishes the job's start in an atomic. The thread wakes a few times per
//! threshold, reads that without the GIL, and takes the GIL only to report
//! an overrunning job, once per job: it then calls `loop._watchdog_report`,
//! which reads the loop thread's frames (`sys._current_frames`) and logs. So
//! the loop thread is disturbed only by waiting for the GIL while a report
//! is written. Off (the default), no thread exists and the loop pays one
//! relaxed load per iteration.
//!
//! The thread runs while `run_forever` does: started when it starts (or by
//! `set_watchdog` during a run), stopped and joined, with the GIL released,
//! when it returns, when the loop is closed, or by `set_watchdog(None)`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ferroloop_engine::clock;
use pyo3::prelude::*;

use crate::runtime::gil::GilCell;

fn now_ns() -> u64 {
    // `as` saturates (no panic on a clock that says something odd).
    (clock::monotonic() * 1e9) as u64
}

struct Shared {
    /// Report a job running longer than this; 0: off.
    threshold_ns: AtomicU64,
    /// Monotonic nanoseconds when the running job started; 0: none running.
    job_start_ns: AtomicU64,
    /// Bumped per job, so that one job is reported once.
    job_seq: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    thread: GilCell<Option<JoinHandle<()>>>,
}

impl Watchdog {
    pub(crate) fn new() -> Self {
        Watchdog {
            shared: Arc::new(Shared {
                threshold_ns: AtomicU64::new(0),
                job_start_ns: AtomicU64::new(0),
                job_seq: AtomicU64::new(0),
                stop: Mutex::new(false),
                wake: Condvar::new(),
            }),
            thread: GilCell::new(None),
        }
    }

    /// On: the loop must time its jobs and call `job_started`/`job_done`.
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.shared.threshold_ns.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn threshold(&self) -> Option<f64> {
        let t = self.shared.threshold_ns.load(Ordering::Relaxed);
        (t != 0).then(|| t as f64 * 1e-9)
    }

    pub(crate) fn set_threshold(&self, seconds: Option<f64>) {
        let ns = match seconds {
            // At least 1 ns, so that a tiny positive threshold is still on.
            Some(s) if s > 0.0 => ((s * 1e9) as u64).max(1),
            _ => 0,
        };
        self.shared.threshold_ns.store(ns, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn job_started(&self, t0: f64) {
        self.shared.job_seq.fetch_add(1, Ordering::Relaxed);
        self.shared.job_start_ns.store(((t0 * 1e9) as u64).max(1), Ordering::Release);
    }

    #[inline]
    pub(crate) fn job_done(&self) {
        self.shared.job_start_ns.store(0, Ordering::Release);
    }

    /// Start the thread if the watchdog is on and it is not running.
    pub(crate) fn start(&self, loop_: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.on() || self.thread.borrow().is_some() {
            return Ok(());
        }
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = false;
        let shared = Arc::clone(&self.shared);
        let target = loop_.clone().unbind();
        let handle = std::thread::Builder::new()
            .name("ferroloop-watchdog".into())
            .spawn(move || watch(shared, target))
            .map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("cannot start the watchdog thread: {e}")))?;
        *self.thread.borrow_mut() = Some(handle);
        Ok(())
    }

    /// Stop and join the thread (with the GIL released: it may be waiting
    /// for the GIL to report).
    pub(crate) fn stop(&self, py: Python<'_>) {
        let Some(handle) = self.thread.borrow_mut().take() else { return };
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        py.detach(move || {
            let _ = handle.join();
        });
    }
}

fn watch(shared: Arc<Shared>, loop_: Py<PyAny>) {
    let mut reported = u64::MAX;
    let mut stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let threshold = shared.threshold_ns.load(Ordering::Relaxed);
        // A few looks per threshold: an overrun is seen within a quarter of
        // it late, and a long threshold does not mean idle wake-ups.
        let tick = Duration::from_nanos((threshold / 4).clamp(1_000_000, 250_000_000));
        stop = shared.wake.wait_timeout(stop, tick).unwrap_or_else(|e| e.into_inner()).0;
        if *stop {
            break;
        }
        let start = shared.job_start_ns.load(Ordering::Acquire);
        let seq = shared.job_seq.load(Ordering::Relaxed);
        if threshold == 0 || start == 0 || seq == reported {
            continue;
        }
        let elapsed = now_ns().saturating_sub(start);
        if elapsed < threshold {
            continue;
        }
        reported = seq;
        // Not holding the mutex while waiting for the GIL: stop() takes it
        // with the GIL held.
        drop(stop);
        let _ = Python::try_attach(|py| {
            // Still the same job (it may have ended while we waited).
            if shared.job_start_ns.load(Ordering::Acquire) == start && shared.job_seq.load(Ordering::Relaxed) == seq {
                let elapsed = now_ns().saturating_sub(start) as f64 * 1e-9;
                if let Err(e) = loop_.bind(py).call_method1("_watchdog_report", (elapsed,)) {
                    e.write_unraisable(py, Some(loop_.bind(py)));
                }
            }
        });
        stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    }
    drop(stop);
    // The loop reference is released with the GIL held when possible; at
    // interpreter shutdown it is left to PyO3's deferred reference pool.
    let _ = Python::try_attach(move |_py| drop(loop_));
}
