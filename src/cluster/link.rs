//! Whether the link to Redis is up, from its two connections' say (the
//! publisher's and the subscriber's): up when both are, down as soon as
//! one fails, and said once per change, so that members are told once.
//! Also the bounded backoff between attempts to reconnect.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Publisher,
    Subscriber,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Publisher => "the publishing connection",
            Side::Subscriber => "the subscription",
        })
    }
}

#[derive(Debug, Default)]
pub struct LinkState {
    publisher: Option<bool>,
    subscriber: Option<bool>,
    told: Option<bool>,
}

impl LinkState {
    /// `side` connected (`up`) or failed. Returns the link's new state when
    /// it changed: down once either side failed, up once both are up. A
    /// side that has not tried yet decides nothing.
    pub fn set(&mut self, side: Side, up: bool) -> Option<bool> {
        match side {
            Side::Publisher => self.publisher = Some(up),
            Side::Subscriber => self.subscriber = Some(up),
        }
        let now = match (self.publisher, self.subscriber) {
            (Some(false), _) | (_, Some(false)) => false,
            (Some(true), Some(true)) => true,
            _ => return None,
        };
        if self.told == Some(now) {
            return None;
        }
        self.told = Some(now);
        Some(now)
    }
}

/// Waits between reconnection attempts: doubling from `min` to `max`.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Connected: the next failure starts from the shortest wait again.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_changes_once_each_way() {
        let mut l = LinkState::default();
        // One side up is not the link up.
        assert_eq!(l.set(Side::Publisher, true), None);
        assert_eq!(l.set(Side::Subscriber, true), Some(true));
        assert_eq!(l.set(Side::Subscriber, true), None);
        // Both fail: down once.
        assert_eq!(l.set(Side::Subscriber, false), Some(false));
        assert_eq!(l.set(Side::Publisher, false), None);
        // Back when both are.
        assert_eq!(l.set(Side::Publisher, true), None);
        assert_eq!(l.set(Side::Subscriber, true), Some(true));
        // A failure before the other side ever connected is down.
        let mut l = LinkState::default();
        assert_eq!(l.set(Side::Subscriber, false), Some(false));
        assert_eq!(l.set(Side::Publisher, true), None);
    }

    #[test]
    fn backoff_doubles_to_its_bound_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
        assert_eq!(
            waits,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        b.reset();
        assert_eq!(b.next_wait(), ms(100));
    }
}
