//! Deadlines from caller-given durations, which may be as long as
//! `Duration::MAX` ("wait forever"): the clock arithmetic must not overflow.

use std::time::{Duration, Instant};

/// As good as forever for a deadline, and well within any clock's range.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + timeout`, or a century from now when that overflows the clock.
pub(crate) fn after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FOREVER))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlong_timeout_is_far_in_the_future_not_a_panic() {
        let far = after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(365 * 24 * 3600));
        let soon = after(Duration::from_millis(5));
        assert!(soon <= Instant::now() + Duration::from_millis(5));
    }
}
