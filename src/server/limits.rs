//! `max_connections` and `per_source`, shared by every model. A [`Permit`]
//! is held for as long as a connection (or a forked child) is open.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::canonical_ip;

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

#[cfg(test)]
mod tests {
    use super::*;

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
