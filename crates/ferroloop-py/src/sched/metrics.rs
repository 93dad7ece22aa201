//! Loop metrics (`loop.metrics()`): what people otherwise patch into a loop
//! to find out where its time goes.
//!
//! Two tiers, so that the always-on part costs integer increments:
//! * always on: iterations, jobs run, tasks created and finished, and per
//!   iteration the time blocked in the poll and the time spent running the
//!   ready jobs (the lag histogram is of the latter). That is one clock
//!   reading per iteration after the poll and one before it (none when the
//!   poll is skipped): an iteration's run phase ends at the next reading;
//! * switched on at run time (`set_metrics(callback_timing=True)`, and
//!   always in debug mode, which times every job anyway): each job timed,
//!   a histogram of job durations and the longest job with what it was.
//!
//! Counters are atomics only so that `LoopCore` stays `Sync` without a
//! borrow: every write happens on the thread holding the GIL, so a relaxed
//! load and store (plain moves on x86, no locked instruction) loses nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use ferroloop_engine::histogram::{bucket, ns_between, BUCKETS};

use crate::runtime::gil::GilCell;

#[derive(Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        // Single writer (the GIL holder): see the module comment.
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

pub(crate) struct Metrics {
    pub(crate) iterations: Counter,
    pub(crate) callbacks: Counter,
    pub(crate) tasks_created: Counter,
    pub(crate) tasks_finished: Counter,
    pub(crate) poll_ns: Counter,
    pub(crate) run_ns: Counter,
    lag: [Counter; BUCKETS],
    timing: AtomicBool,
    timed: Counter,
    durations: [Counter; BUCKETS],
    longest_ns: Counter,
    /// What the longest timed job was, as text (formatted when a job beats
    /// the record, which is rare after the first few).
    longest_what: GilCell<Option<String>>,
    /// Loop clock when counting started (creation or `reset_metrics`).
    since: GilCell<f64>,
    /// The last iteration, whose run phase ends at the next clock reading
    /// (the next iteration's first, or the end of the run): that saves a
    /// reading per iteration. `(run phase start, poll ns, jobs run)`.
    open: GilCell<Option<(f64, u64, u64)>>,
}

/// A copy of the counters for `loop.metrics()`.
pub(crate) type Snapshot = (
    (u64, u64, u64, u64),
    (f64, f64, [u64; BUCKETS]),
    (bool, u64, [u64; BUCKETS], f64, Option<String>),
    f64,
);

impl Metrics {
    pub(crate) fn new(now: f64) -> Self {
        Metrics {
            iterations: Counter::default(),
            callbacks: Counter::default(),
            tasks_created: Counter::default(),
            tasks_finished: Counter::default(),
            poll_ns: Counter::default(),
            run_ns: Counter::default(),
            lag: Default::default(),
            timing: AtomicBool::new(false),
            timed: Counter::default(),
            durations: Default::default(),
            longest_ns: Counter::default(),
            longest_what: GilCell::new(None),
            since: GilCell::new(now),
            open: GilCell::new(None),
        }
    }

    /// Callback timing switched on by the user (debug mode adds itself).
    #[inline]
    pub(crate) fn timing(&self) -> bool {
        self.timing.load(Relaxed)
    }

    pub(crate) fn set_timing(&self, on: bool) {
        self.timing.store(on, Relaxed);
    }

    /// An iteration ran `ran` jobs from `run_start` on, after `poll_ns` in
    /// the poll; it is recorded by the next `close`.
    #[inline]
    pub(crate) fn open(&self, run_start: f64, poll_ns: u64, ran: u64) {
        *self.open.borrow_mut() = Some((run_start, poll_ns, ran));
    }

    /// Record the open iteration, if any, as having run until `now`.
    #[inline]
    pub(crate) fn close(&self, now: f64) {
        let Some((start, poll_ns, ran)) = self.open.borrow_mut().take() else { return };
        let run_ns = ns_between(start, now);
        self.iterations.add(1);
        self.callbacks.add(ran);
        self.poll_ns.add(poll_ns);
        self.run_ns.add(run_ns);
        self.lag[bucket(run_ns)].add(1);
    }

    /// One timed job; true when it is the longest so far (the caller then
    /// describes it with `set_longest`, outside any borrow).
    #[inline]
    pub(crate) fn timed_job(&self, ns: u64) -> bool {
        self.timed.add(1);
        self.durations[bucket(ns)].add(1);
        ns > self.longest_ns.get()
    }

    pub(crate) fn set_longest(&self, ns: u64, what: String) {
        self.longest_ns.set(ns);
        let old = self.longest_what.borrow_mut().replace(what);
        drop(old);
    }

    pub(crate) fn reset(&self, now: f64) {
        for c in [&self.iterations, &self.callbacks, &self.tasks_created, &self.tasks_finished, &self.poll_ns, &self.run_ns, &self.timed, &self.longest_ns]
            .into_iter()
            .chain(self.lag.iter())
            .chain(self.durations.iter())
        {
            c.set(0);
        }
        let old = self.longest_what.borrow_mut().take();
        drop(old);
        *self.open.borrow_mut() = None;
        *self.since.borrow_mut() = now;
    }

    pub(crate) fn snapshot(&self, debug: bool) -> Snapshot {
        let secs = |c: &Counter| c.get() as f64 * 1e-9;
        let arr = |a: &[Counter; BUCKETS]| std::array::from_fn(|i| a[i].get());
        (
            (self.iterations.get(), self.callbacks.get(), self.tasks_created.get(), self.tasks_finished.get()),
            (secs(&self.poll_ns), secs(&self.run_ns), arr(&self.lag)),
            (
                debug || self.timing(),
                self.timed.get(),
                arr(&self.durations),
                secs(&self.longest_ns),
                self.longest_what.borrow().clone(),
            ),
            *self.since.borrow(),
        )
    }
}
