//! Request bytes that change from one request to the next, so an echo of a
//! stale or misrouted request is caught, without building a buffer per
//! request: request `seq` is a window into a repeating pattern.

/// A prime period, so consecutive requests of any size differ.
const PERIOD: usize = 251;

#[derive(Debug, Clone)]
pub(super) struct Payload {
    pattern: Vec<u8>,
    size: usize,
}

impl Payload {
    pub(super) fn new(size: usize) -> Self {
        let pattern = (0..size + PERIOD).map(|i| (i % PERIOD) as u8).collect();
        Payload { pattern, size }
    }

    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The bytes of request number `seq`.
    pub(super) fn request(&self, seq: u64) -> &[u8] {
        let offset = (seq % PERIOD as u64) as usize;
        &self.pattern[offset..offset + self.size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_requests_differ_and_have_the_size() {
        let payload = Payload::new(64);
        assert_eq!(payload.request(0).len(), 64);
        assert_eq!(payload.request(u64::MAX).len(), 64);
        assert_ne!(payload.request(0), payload.request(1));
        assert_eq!(payload.request(0), payload.request(251));
        let one = Payload::new(1);
        assert_ne!(one.request(7), one.request(8));
    }
}
