//! The duration buckets of the loop metrics (`loop.metrics()`): decades
//! from 10 µs to 1 s, fixed so that histograms of different loops, runs and
//! versions can be compared and added.

/// Number of buckets: < 10 µs, < 100 µs, < 1 ms, < 10 ms, < 100 ms, < 1 s, ≥ 1 s.
pub const BUCKETS: usize = 7;

/// Upper bounds (exclusive) of all buckets but the last, in nanoseconds.
pub const BOUNDS_NS: [u64; BUCKETS - 1] = [10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000];

/// The bucket of a duration in nanoseconds.
#[inline]
pub fn bucket(ns: u64) -> usize {
    BOUNDS_NS.iter().position(|&b| ns < b).unwrap_or(BUCKETS - 1)
}

/// Seconds between two clock readings as whole nanoseconds. A negative or
/// NaN difference (which a monotonic clock should not give) is 0.
#[inline]
pub fn ns_between(t0: f64, t1: f64) -> u64 {
    // `as` saturates: negative and NaN become 0, huge values u64::MAX.
    ((t1 - t0) * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_decades_from_10us_to_1s() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(9_999), 0);
        assert_eq!(bucket(10_000), 1);
        assert_eq!(bucket(999_999), 2);
        assert_eq!(bucket(1_000_000), 3);
        assert_eq!(bucket(50_000_000), 4);
        assert_eq!(bucket(999_999_999), 5);
        assert_eq!(bucket(1_000_000_000), 6);
        assert_eq!(bucket(u64::MAX), 6);
    }

    #[test]
    fn ns_between_never_goes_negative() {
        assert_eq!(ns_between(2.0, 1.0), 0);
        assert_eq!(ns_between(0.0, f64::NAN), 0);
        assert_eq!(ns_between(1.0, 1.5), 500_000_000);
        assert_eq!(ns_between(0.0, f64::INFINITY), u64::MAX);
    }
}
