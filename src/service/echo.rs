//! Echo, RFC 862: over TCP every byte goes back until the peer half-closes;
//! over UDP every datagram goes back to its sender.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ProtocolError, Session, Worker};

/// TCP echo, optionally tagging each reply chunk with the worker serving it
/// (`tag = "worker"`), as the seeds' forking and threading servers do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EchoService {
    pub tag_worker: bool,
}

impl EchoService {
    pub fn session(&self, worker: Worker<'_>) -> EchoSession {
        let prefix = self.tag_worker.then(|| match worker {
            Worker::Process(pid) => format!("{pid}: ").into_bytes(),
            Worker::Thread(name) => format!("{name}: ").into_bytes(),
        });
        EchoSession { prefix }
    }
}

#[derive(Debug)]
pub struct EchoSession {
    prefix: Option<Vec<u8>>,
}

impl Session for EchoSession {
    fn on_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        if let Some(prefix) = &self.prefix {
            out.extend_from_slice(prefix);
        }
        out.extend_from_slice(input);
        Ok(())
    }

    fn on_eof(&mut self, _out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        Ok(())
    }
}

/// UDP echo. Datagrams from the ports in `drop_source_ports` are dropped and
/// counted: another echo or chargen service answering ours would loop
/// forever, and a spoofed source port is how such loops are started.
#[derive(Debug, Clone)]
pub struct UdpEchoService {
    drop_source_ports: Arc<[u16]>,
    dropped: Arc<AtomicU64>,
}

impl UdpEchoService {
    /// Drops what comes from `drop_source_ports` (the configuration's
    /// default is `config::defaults::DROP_SOURCE_PORTS`).
    pub fn new(drop_source_ports: &[u16]) -> Self {
        UdpEchoService {
            drop_source_ports: drop_source_ports.into(),
            dropped: Arc::default(),
        }
    }

    /// The reply to a datagram, or `None` when it is dropped.
    pub fn respond<'a>(&self, source_port: u16, datagram: &'a [u8]) -> Option<&'a [u8]> {
        if self.drop_source_ports.contains(&source_port) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            Some(datagram)
        }
    }

    /// Datagrams dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Equal when they drop the same ports; the counter is state, not settings.
impl PartialEq for UdpEchoService {
    fn eq(&self, other: &Self) -> bool {
        self.drop_source_ports == other.drop_source_ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_every_chunk_untagged() {
        let mut s = EchoService::default().session(Worker::Thread("t"));
        let mut out = Vec::new();
        s.on_data(b"abc", &mut out).unwrap();
        s.on_data(b"", &mut out).unwrap();
        s.on_data(b"def", &mut out).unwrap();
        s.on_eof(&mut out).unwrap();
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn tags_each_chunk_with_the_worker() {
        let svc = EchoService { tag_worker: true };
        let mut out = Vec::new();
        let mut s = svc.session(Worker::Process(4242));
        s.on_data(b"Hello echo server!", &mut out).unwrap();
        assert_eq!(out, b"4242: Hello echo server!");
        out.clear();
        let mut s = svc.session(Worker::Thread("Thread-2"));
        s.on_data(b"a", &mut out).unwrap();
        s.on_data(b"b", &mut out).unwrap();
        assert_eq!(out, b"Thread-2: aThread-2: b");
    }

    #[test]
    fn udp_drops_reflection_ports_and_counts_them() {
        let svc = UdpEchoService::new(&[0, 7, 13, 19, 37]);
        assert_eq!(svc.respond(40000, b"hi"), Some(&b"hi"[..]));
        for port in [0, 7, 13, 19, 37] {
            assert_eq!(svc.respond(port, b"loop"), None);
        }
        assert_eq!(svc.dropped(), 5);
        let none = UdpEchoService::new(&[]);
        assert_eq!(none.respond(7, b"x"), Some(&b"x"[..]));
    }
}
