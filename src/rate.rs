//! Rates (`"20/s"`) and token buckets, pure: a bucket has no clock of its
//! own (the caller says when it is), so admission in `server` and the chat
//! service's per-client message rate share it, and tests drive it with
//! made-up instants.

use std::fmt;
use std::time::{Duration, Instant};

/// So many events per period: `"20/s"`, `"600/m"`, `"1000/h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The units a rate may be given in.
    pub const UNITS: &'static str = "s (second), m (minute) or h (hour)";

    /// Parses `"N/s"`, `"N/m"` or `"N/h"` (N at least 1); the error says
    /// what was expected.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let expected = format!(
            "expected a count per unit such as \"20/s\", the unit one of {}",
            Rate::UNITS
        );
        let Some((count, unit)) = text.split_once('/') else {
            return Err(format!("{text:?} is not a rate; {expected}"));
        };
        let count: u32 = match count.trim().parse() {
            Ok(0) => return Err(format!("{text:?}: the count must be at least 1")),
            Ok(n) => n,
            Err(_) => return Err(format!("{text:?}: {count:?} is not a count; {expected}")),
        };
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => return Err(format!("{text:?}: unknown unit {other:?}; {expected}")),
        };
        Ok(Rate { count, per })
    }

    /// Events per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }

    /// The burst allowed when none is given: twice the count.
    pub fn default_burst(&self) -> u32 {
        self.count.saturating_mul(2)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A rate with the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Tokens added per second.
    pub per_second: f64,
    /// The most tokens a bucket holds: events allowed at once after a pause.
    pub burst: f64,
}

impl Limit {
    pub fn new(rate: Rate, burst: u32) -> Limit {
        Limit {
            per_second: rate.per_second(),
            burst: f64::from(burst.max(1)),
        }
    }
}

/// One source's (or client's) tokens: full at first, one taken per event,
/// refilled at the limit's rate up to its burst.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    pub fn full(limit: Limit, now: Instant) -> TokenBucket {
        TokenBucket {
            tokens: limit.burst,
            at: now,
        }
    }

    /// Takes a token if there is one: `true` when the event is within the
    /// limit. A clock that went backwards adds nothing.
    pub fn take(&mut self, limit: Limit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_their_unit_and_refuse_in_words() {
        assert_eq!(
            Rate::parse("20/s"),
            Ok(Rate {
                count: 20,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(Rate::parse("600/m").unwrap().per_second(), 10.0);
        assert_eq!(Rate::parse("3600/h").unwrap().per_second(), 1.0);
        assert_eq!(Rate::parse("20/s").unwrap().to_string(), "20/s");
        assert_eq!(Rate::parse("20/s").unwrap().default_burst(), 40);
        for (bad, says) in [
            ("20", "is not a rate"),
            ("0/s", "at least 1"),
            ("x/s", "is not a count"),
            ("-1/s", "is not a count"),
            ("5/day", "unknown unit"),
        ] {
            let e = Rate::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    /// A full bucket lets a burst through, then one event per 1/rate.
    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limit = Limit::new(Rate::parse("10/s").unwrap(), 5);
        let t0 = Instant::now();
        let mut b = TokenBucket::full(limit, t0);
        let burst = (0..20).filter(|_| b.take(limit, t0)).count();
        assert_eq!(burst, 5);
        // 100 ms later: one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(limit, t1));
        assert!(!b.take(limit, t1));
        // A long pause refills to the burst, not beyond.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(limit, t2)).count(), 5);
        // A clock going backwards adds nothing.
        assert!(!b.take(limit, t0));
    }
}
