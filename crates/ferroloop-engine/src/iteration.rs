//! The policy of one loop iteration, apart from what it runs.
//!
//! asyncio's `BaseEventLoop._run_once` mixes three decisions into the code
//! that moves handles around: when to sweep cancelled timers (and whether to
//! rebuild the heap instead), how long the selector may block, and which
//! timers are due. They are pure functions of a few numbers, so they live
//! here and are unit-tested; the bindings' `run_once` only applies them.
//!
//! The constants are asyncio's, so a ferroloop loop wakes up when asyncio's
//! would and reclaims cancelled timers at the same points.

use std::time::Duration;

use crate::TimerHeap;

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: a poll never blocks longer.
pub const MAX_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;
/// asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`.
pub const MIN_SCHEDULED_FOR_COMPACTION: usize = 100;
/// asyncio's `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`.
pub const CANCELLED_FRACTION_FOR_COMPACTION: f64 = 0.5;

/// Rebuild the whole heap rather than pop cancelled timers off its top:
/// more than 100 timers of which more than half are cancelled.
pub fn should_compact(scheduled: usize, cancelled: usize) -> bool {
    scheduled > MIN_SCHEDULED_FOR_COMPACTION && cancelled as f64 / scheduled as f64 > CANCELLED_FRACTION_FOR_COMPACTION
}

/// Step 1 of an iteration: take cancelled timers out of `heap`. Either the
/// whole heap is filtered (see [`should_compact`]; the count restarts at 0)
/// or cancelled timers are popped from its top, each lowering `cancelled`.
/// The removed items are returned so that the caller drops them when no
/// borrow is held (their destructors may run arbitrary code).
pub fn sweep_cancelled<T>(heap: &mut TimerHeap<T>, cancelled: &mut usize, is_cancelled: impl Fn(&T) -> bool) -> Vec<T> {
    if should_compact(heap.len(), *cancelled) {
        *cancelled = 0;
        return heap.retain(|t| !is_cancelled(t));
    }
    let mut dead = Vec::new();
    while heap.peek().is_some_and(&is_cancelled) {
        let (_, t) = heap.pop().expect("peeked");
        *cancelled = cancelled.saturating_sub(1);
        dead.push(t);
    }
    dead
}

/// What the poll of an iteration should be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PollPlan {
    /// Nothing is registered but the waker and the poll must not block: the
    /// syscall could only report wake-ups, which the ready queue already
    /// holds, so it is skipped.
    Skip,
    /// Poll without blocking (there is work, or a timer is already due).
    NoWait,
    /// Block (without the GIL) for at most this long; `None`: until an event.
    Wait(Option<Duration>),
}

/// Step 2: asyncio's selector timeout. Zero when a job is ready or the loop
/// is stopping; otherwise until the earliest deadline (clamped to
/// [`MAX_SELECT_TIMEOUT`], never negative), or forever without timers.
/// `now` is only read when a deadline needs it.
pub fn plan_poll(has_ready: bool, stopping: bool, next_deadline: Option<f64>, now: impl FnOnce() -> f64, io_registered: bool) -> PollPlan {
    let timeout = if has_ready || stopping {
        Some(0.0)
    } else {
        next_deadline.map(|when| (when - now()).clamp(0.0, MAX_SELECT_TIMEOUT))
    };
    match timeout {
        Some(t) if t == 0.0 || t.is_nan() => {
            if io_registered {
                PollPlan::NoWait
            } else {
                PollPlan::Skip
            }
        }
        // clamp() keeps `t` finite and non-negative; try_ keeps a stray
        // value from panicking all the same.
        Some(t) => PollPlan::Wait(Some(Duration::try_from_secs_f64(t).unwrap_or(Duration::ZERO))),
        None => PollPlan::Wait(None),
    }
}

/// Step 3: the end of the due window. Timers with a deadline before it run
/// in this iteration: asyncio's `now + clock_resolution`, so a timer due
/// within one clock tick is not left for a needless extra poll.
pub fn due_window_end(now: f64, clock_resolution: f64) -> f64 {
    now + clock_resolution
}

/// Step 3 applied: pop every timer due before `end`, in deadline order, into
/// `out`.
pub fn take_due<T>(heap: &mut TimerHeap<T>, end: f64, mut out: impl FnMut(T)) {
    while heap.peek_when().is_some_and(|w| w < end) {
        let (_, t) = heap.pop().expect("peeked");
        out(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_needs_more_than_100_timers_and_more_than_half_cancelled() {
        assert!(!should_compact(100, 100));
        assert!(!should_compact(101, 50));
        assert!(!should_compact(200, 100), "exactly half is not more than half");
        assert!(should_compact(101, 51));
        assert!(should_compact(1000, 501));
        assert!(!should_compact(0, 0));
    }

    #[test]
    fn sweep_pops_only_cancelled_timers_at_the_top() {
        let mut h = TimerHeap::new();
        // (deadline, cancelled)
        for (i, c) in [(1.0, true), (2.0, true), (3.0, false), (4.0, true)] {
            h.push(i, (i, c));
        }
        let mut count = 3;
        let dead = sweep_cancelled(&mut h, &mut count, |t| t.1);
        assert_eq!(dead.iter().map(|t| t.0).collect::<Vec<_>>(), vec![1.0, 2.0]);
        assert_eq!(count, 1, "the cancelled timer behind a live one stays counted");
        assert_eq!(h.len(), 2);
        assert_eq!(h.peek().map(|t| t.0), Some(3.0));
    }

    #[test]
    fn sweep_compacts_a_mostly_cancelled_heap_and_keeps_order() {
        let mut h = TimerHeap::new();
        for i in 0..300u32 {
            // Live timers are the multiples of 3: 100 live, 200 cancelled,
            // the earliest one live so that popping from the top would
            // reclaim nothing.
            h.push(f64::from(i), (i, i % 3 != 0));
        }
        let mut count = 200;
        let dead = sweep_cancelled(&mut h, &mut count, |t| t.1);
        assert_eq!(dead.len(), 200);
        assert_eq!(count, 0);
        let order: Vec<u32> = std::iter::from_fn(|| h.pop().map(|(_, t)| t.0)).collect();
        assert_eq!(order, (0..300).step_by(3).collect::<Vec<_>>());
    }

    #[test]
    fn sweep_count_never_goes_below_zero() {
        // A timer cancelled after it ran is counted by the Handle but never
        // found in the heap: the count saturates rather than wraps.
        let mut h = TimerHeap::new();
        h.push(1.0, true);
        let mut count = 0;
        assert_eq!(sweep_cancelled(&mut h, &mut count, |c| *c).len(), 1);
        assert_eq!(count, 0);
    }

    #[test]
    fn ready_work_polls_without_blocking_even_with_timers_far_away() {
        let plan = plan_poll(true, false, Some(1e9), || panic!("now is not needed"), true);
        assert_eq!(plan, PollPlan::NoWait);
        assert_eq!(plan_poll(false, true, None, || 0.0, true), PollPlan::NoWait, "stopping");
    }

    #[test]
    fn ready_work_without_descriptors_skips_the_syscall() {
        assert_eq!(plan_poll(true, false, None, || 0.0, false), PollPlan::Skip);
    }

    #[test]
    fn a_due_timer_is_a_zero_timeout() {
        assert_eq!(plan_poll(false, false, Some(5.0), || 7.0, true), PollPlan::NoWait);
        assert_eq!(plan_poll(false, false, Some(5.0), || 7.0, false), PollPlan::Skip);
        assert_eq!(plan_poll(false, false, Some(f64::NEG_INFINITY), || 7.0, true), PollPlan::NoWait);
    }

    #[test]
    fn a_future_timer_bounds_the_wait_and_is_clamped() {
        assert_eq!(plan_poll(false, false, Some(10.5), || 10.0, false), PollPlan::Wait(Some(Duration::from_millis(500))));
        assert_eq!(
            plan_poll(false, false, Some(1e12), || 0.0, true),
            PollPlan::Wait(Some(Duration::from_secs_f64(MAX_SELECT_TIMEOUT)))
        );
        assert_eq!(plan_poll(false, false, Some(f64::INFINITY), || 0.0, true), PollPlan::Wait(Some(Duration::from_secs_f64(MAX_SELECT_TIMEOUT))));
    }

    #[test]
    fn nothing_to_do_waits_forever() {
        assert_eq!(plan_poll(false, false, None, || 0.0, true), PollPlan::Wait(None));
        assert_eq!(plan_poll(false, false, None, || 0.0, false), PollPlan::Wait(None), "a wake-up ends it");
    }

    #[test]
    fn due_window_takes_timers_within_one_clock_tick() {
        let mut h = TimerHeap::new();
        for w in [1.0, 2.0, 2.0005, 2.002, 3.0] {
            h.push(w, w);
        }
        let mut got = Vec::new();
        take_due(&mut h, due_window_end(2.0, 0.001), |t| got.push(t));
        assert_eq!(got, vec![1.0, 2.0, 2.0005]);
        assert_eq!(h.len(), 2);
        take_due(&mut h, f64::NEG_INFINITY, |t| got.push(t));
        assert_eq!(got.len(), 3);
    }
}
