//! `max_connections`, `per_source` and `rate`, shared by every model. A
//! [`Permit`] is held for as long as a connection (or a forked child) is
//! open; [`SourceRates`] keeps a token bucket per source (network), in a
//! table of bounded size.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use lru::LruCache;

use crate::config::{RateConfig, canonical_ip};
use crate::rate::{Limit, TokenBucket};

#[derive(Debug)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max: usize,
    open: AtomicUsize,
    per_source: Option<(usize, Mutex<HashMap<IpAddr, usize>>)>,
}

/// The outcome of asking to open one more connection.
#[derive(Debug)]
pub enum Admission {
    Admitted(Permit),
    Full,
    /// The peer's address already has this many connections open.
    SourceFull(usize),
}

/// One open connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    source: Option<IpAddr>,
}

impl ConnLimiter {
    pub fn new(max: usize, per_source: Option<usize>) -> Self {
        ConnLimiter {
            inner: Arc::new(Inner {
                max,
                open: AtomicUsize::new(0),
                per_source: per_source.map(|n| (n, Mutex::new(HashMap::new()))),
            }),
        }
    }

    /// The most connections open at once.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    pub fn try_acquire(&self, ip: IpAddr) -> Admission {
        let inner = &self.inner;
        let taken = inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < inner.max).then_some(n + 1)
            });
        if taken.is_err() {
            return Admission::Full;
        }
        let mut source = None;
        if let Some((limit, counts)) = &inner.per_source {
            let ip = canonical_ip(ip);
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            let n = counts.entry(ip).or_insert(0);
            if *n >= *limit {
                drop(counts);
                inner.open.fetch_sub(1, Ordering::AcqRel);
                return Admission::SourceFull(*limit);
            }
            *n += 1;
            source = Some(ip);
        }
        Admission::Admitted(Permit {
            inner: inner.clone(),
            source,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let (Some(ip), Some((_, counts))) = (self.source, &self.inner.per_source) {
            let mut counts = counts.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `rate` and `burst` per source: a token bucket per source network (the
/// address cut to `source_prefix_v4`/`_v6` bits), in a table that keeps
/// the `rate_sources` sources seen most recently. A source evicted and
/// seen again starts with a full bucket: the table bounds memory, and a
/// flood from more sources than it holds is limited by `max_connections`.
#[derive(Debug)]
pub struct SourceRates {
    limit: Limit,
    prefix_v4: u8,
    prefix_v6: u8,
    table: Mutex<LruCache<IpAddr, TokenBucket>>,
}

impl SourceRates {
    pub fn new(config: &RateConfig) -> SourceRates {
        SourceRates {
            limit: Limit::new(config.rate, config.burst),
            prefix_v4: config.source_prefix_v4.min(32),
            prefix_v6: config.source_prefix_v6.min(128),
            table: Mutex::new(LruCache::new(
                NonZeroUsize::new(config.sources).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    /// The source `ip` is counted as: its network, cut to the prefix.
    pub fn source(&self, ip: IpAddr) -> IpAddr {
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_v4))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_v6))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    /// Whether one more event (a connection, a datagram) from `ip` is
    /// within the rate at `now`.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let source = self.source(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let limit = self.limit;
        table
            .get_or_insert_mut(source, || TokenBucket::full(limit, now))
            .take(limit, now)
    }

    /// Sources in the table now.
    pub fn sources(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::Rate;
    use std::time::Duration;

    fn rates(rate: &str, burst: u32, sources: usize) -> SourceRates {
        SourceRates::new(&RateConfig {
            rate: Rate::parse(rate).unwrap(),
            burst,
            source_prefix_v4: 32,
            source_prefix_v6: 64,
            sources,
        })
    }

    /// 100,000 distinct sources through a table of 1,000: it holds 1,000,
    /// the most recently seen; one that keeps coming stays (its bucket
    /// empty), and one not seen for long is evicted.
    #[test]
    fn the_source_table_stays_bounded_under_100000_sources() {
        let r = rates("1/h", 1, 1000);
        let now = Instant::now();
        let flooder: IpAddr = "192.0.2.1".parse().unwrap();
        let early: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(r.admit(early, now));
        assert!(r.admit(flooder, now));
        for i in 0..100_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            assert!(r.admit(ip, now), "a new source has its burst");
            if i % 100 == 0 {
                // Seen again and again: it stays in the table, refused.
                assert!(!r.admit(flooder, now), "at {i}");
            }
            assert!(r.sources() <= 1000);
        }
        assert_eq!(r.sources(), 1000);
        assert!(!r.admit(flooder, now), "still known, still empty");
        // `early` was evicted long ago: it starts afresh.
        assert!(r.admit(early, now));
    }

    /// Sources are networks: with prefix 24, two addresses of one /24 share
    /// a bucket, and IPv6 addresses of one /64 do too.
    #[test]
    fn sources_are_cut_to_their_prefix() {
        let mut config = RateConfig {
            rate: Rate::parse("1/h").unwrap(),
            burst: 1,
            source_prefix_v4: 24,
            source_prefix_v6: 64,
            sources: 16,
        };
        let r = SourceRates::new(&config);
        let now = Instant::now();
        assert!(r.admit("10.1.2.3".parse().unwrap(), now));
        assert!(!r.admit("10.1.2.99".parse().unwrap(), now));
        assert!(
            !r.admit("::ffff:10.1.2.7".parse().unwrap(), now),
            "mapped v4 too"
        );
        assert!(r.admit("10.1.3.1".parse().unwrap(), now));
        assert!(r.admit("2001:db8::1".parse().unwrap(), now));
        assert!(!r.admit("2001:db8::ffff:1".parse().unwrap(), now));
        assert!(r.admit("2001:db8:0:1::1".parse().unwrap(), now));
        config.source_prefix_v4 = 0;
        let all = SourceRates::new(&config);
        assert_eq!(
            all.source("192.0.2.77".parse().unwrap()),
            IpAddr::from([0, 0, 0, 0])
        );
    }

    /// The rate refills: a source refused now is admitted once a token is due.
    #[test]
    fn a_refused_source_is_admitted_again_when_a_token_is_due() {
        let r = rates("10/s", 2, 16);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(r.admit(ip, t0) && r.admit(ip, t0));
        assert!(!r.admit(ip, t0));
        assert!(r.admit(ip, t0 + Duration::from_millis(100)));
    }

    #[test]
    fn max_and_per_source() {
        let l = ConnLimiter::new(3, Some(2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = l.try_acquire(a);
        let p2 = l.try_acquire(a);
        assert!(matches!(l.try_acquire(a), Admission::SourceFull(2)));
        let p3 = l.try_acquire(b);
        assert!(matches!(l.try_acquire(b), Admission::Full));
        assert_eq!(l.open(), 3);
        drop((p1, p2, p3));
        assert_eq!(l.open(), 0);
        assert!(matches!(l.try_acquire(a), Admission::Admitted(_)));
    }

    #[test]
    fn mapped_v4_counts_as_v4() {
        let l = ConnLimiter::new(10, Some(1));
        let _p = l.try_acquire("127.0.0.1".parse().unwrap());
        assert!(matches!(
            l.try_acquire("::ffff:127.0.0.1".parse().unwrap()),
            Admission::SourceFull(1)
        ));
    }
}
