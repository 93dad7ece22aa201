//! The timer heap.
//!
//! asyncio keeps `TimerHandle`s in a `heapq` ordered by deadline. We order by
//! `(when, sequence)` so that timers with the same deadline fire in the order
//! they were scheduled — a stable refinement of asyncio's order, which for
//! equal deadlines is whatever the heap happens to produce.
//!
//! Cancelled timers are not searched for and removed on `cancel()` (that
//! would be O(n)); the owner skips them when they reach the top, and calls
//! [`TimerHeap::retain`] to rebuild the heap when most entries are dead, the
//! same policy asyncio uses.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry<T> {
    when: f64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    /// Schedule `item` at `when`. A NaN deadline is due at once: asyncio's
    /// `_run_once` treats a timer as due unless `when >= end_time`, which is
    /// false for NaN, so such a timer fires in the next iteration. It is
    /// kept here as `-inf` (the heap needs a total order) and reported so by
    /// [`peek_when`](Self::peek_when) and [`pop`](Self::pop); the caller
    /// keeps the original value for display.
    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let when = if when.is_nan() { f64::NEG_INFINITY } else { when };
        self.heap.push(Entry { when, seq, item });
    }

    /// Deadline of the earliest timer, cancelled or not.
    pub fn peek_when(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.when)
    }

    pub fn peek(&self) -> Option<&T> {
        self.heap.peek().map(|e| &e.item)
    }

    pub fn pop(&mut self) -> Option<(f64, T)> {
        self.heap.pop().map(|e| (e.when, e.item))
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }

    /// Keep only the entries for which `keep` is true, rebuilding the heap.
    /// The removed items are returned so the caller can drop them at a time
    /// of its choosing (for Python objects: outside any borrow).
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.heap.len());
        for e in std::mem::take(&mut self.heap).into_vec() {
            if keep(&e.item) {
                kept.push(e);
            } else {
                removed.push(e.item);
            }
        }
        self.heap = BinaryHeap::from(kept);
        removed
    }

    /// Remove everything (loop close).
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|e| e.item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_deadline_then_insertion() {
        let mut h = TimerHeap::new();
        h.push(3.0, "c");
        h.push(1.0, "a1");
        h.push(2.0, "b");
        h.push(1.0, "a2");
        h.push(-5.0, "past");
        let order: Vec<_> = std::iter::from_fn(|| h.pop().map(|(_, x)| x)).collect();
        assert_eq!(order, vec!["past", "a1", "a2", "b", "c"]);
    }

    #[test]
    fn equal_deadlines_are_fifo_at_scale() {
        let mut h = TimerHeap::new();
        for i in 0..10_000u32 {
            h.push(1.0, i);
        }
        for i in 0..10_000u32 {
            assert_eq!(h.pop().unwrap().1, i);
        }
        assert!(h.is_empty());
    }

    #[test]
    fn retain_rebuilds_and_returns_removed() {
        let mut h = TimerHeap::new();
        for i in 0..100u32 {
            h.push(f64::from(100 - i), i);
        }
        let removed = h.retain(|x| x % 2 == 0);
        assert_eq!(removed.len(), 50);
        assert_eq!(h.len(), 50);
        let mut last = f64::NEG_INFINITY;
        while let Some((when, x)) = h.pop() {
            assert!(when >= last);
            assert_eq!(x % 2, 0);
            last = when;
        }
    }

    #[test]
    fn nan_deadlines_are_due_first_in_fifo_order() {
        let mut h = TimerHeap::new();
        h.push(1.0, "a");
        h.push(f64::NAN, "nan1");
        h.push(f64::NEG_INFINITY, "neg_inf");
        h.push(-f64::NAN, "nan2");
        h.push(f64::INFINITY, "inf");
        assert_eq!(h.peek_when(), Some(f64::NEG_INFINITY));
        let order: Vec<_> = std::iter::from_fn(|| h.pop()).collect();
        let names: Vec<_> = order.iter().map(|(_, x)| *x).collect();
        assert_eq!(names, vec!["nan1", "neg_inf", "nan2", "a", "inf"]);
        assert!(order.iter().all(|(w, _)| !w.is_nan()));
    }

    #[test]
    fn peek_reports_earliest() {
        let mut h = TimerHeap::new();
        assert_eq!(h.peek_when(), None);
        h.push(5.0, 1);
        h.push(0.5, 2);
        assert_eq!(h.peek_when(), Some(0.5));
        assert_eq!(h.peek(), Some(&2));
    }
}
