//! What one generator thread measures, and how threads' measurements add up.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The run's clock: requests that complete in `[measure_from, end)` count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub(super) measure_from: Instant,
    pub(super) end: Instant,
}

impl Window {
    pub(super) fn new(start: Instant, warmup: Duration, duration: Duration) -> Self {
        let measure_from = start + warmup;
        Window {
            measure_from,
            end: measure_from + duration,
        }
    }

    pub(super) fn measuring(&self, now: Instant) -> bool {
        now >= self.measure_from && now < self.end
    }
}

/// Round trips are recorded in nanoseconds, up to a minute, with 3
/// significant digits: 0.1% resolution at any scale.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

#[derive(Debug, Clone)]
pub(super) struct Stats {
    pub(super) latency_ns: Histogram<u64>,
    /// Round trips completed in the measured window.
    pub(super) requests: u64,
    /// Broken connections, refused sends, replies that differ from the
    /// request, over the whole run.
    pub(super) errors: u64,
    /// UDP requests resent because no reply came in time.
    pub(super) lost: u64,
}

impl Stats {
    pub(super) fn new() -> Self {
        Stats {
            latency_ns: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            requests: 0,
            errors: 0,
            lost: 0,
        }
    }

    /// Counts a round trip that began at `sent_at` and ended `now`.
    pub(super) fn complete(&mut self, window: &Window, sent_at: Instant, now: Instant) {
        if window.measuring(now) {
            self.requests += 1;
            let ns = u64::try_from(now.duration_since(sent_at).as_nanos()).unwrap_or(u64::MAX);
            self.latency_ns.saturating_record(ns.max(1));
        }
    }

    pub(super) fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        self.requests += other.requests;
        self.errors += other.errors;
        self.lost += other.lost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_measured_window_counts() {
        let start = Instant::now();
        let window = Window::new(start, Duration::from_secs(1), Duration::from_secs(2));
        let mut stats = Stats::new();
        stats.complete(&window, start, start + Duration::from_millis(500));
        stats.complete(
            &window,
            start + Duration::from_millis(1100),
            start + Duration::from_millis(1200),
        );
        stats.complete(&window, start, start + Duration::from_secs(3));
        assert_eq!(stats.requests, 1);
        let p50 = stats.latency_ns.value_at_quantile(0.5);
        assert!((99_000_000..=101_000_000).contains(&p50), "{p50}");
    }

    #[test]
    fn merging_adds_counts_and_latencies() {
        let start = Instant::now();
        let window = Window::new(start, Duration::ZERO, Duration::from_secs(10));
        let mut a = Stats::new();
        let mut b = Stats::new();
        a.complete(&window, start, start + Duration::from_micros(10));
        b.complete(&window, start, start + Duration::from_micros(1000));
        b.errors = 2;
        b.lost = 1;
        a.merge(&b);
        assert_eq!((a.requests, a.errors, a.lost), (2, 2, 1));
        assert_eq!(a.latency_ns.len(), 2);
        assert!(a.latency_ns.max() >= 999_000);
    }
}
