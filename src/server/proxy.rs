//! The PROXY protocol (v1 text and v2 binary, as HAProxy specifies it): a
//! stage before admission. A connection from a balancer in `proxy_from`
//! waits here, unadmitted, until its header has come whole; the client
//! address in it is then the one admission, limits and logs see. The
//! header is peeked, not read, until it is whole, so a header that comes in
//! pieces costs no buffer per connection, and what follows it (a TLS
//! ClientHello, the first request) stays in the socket for the connection
//! proper. ppp parses the fields; the framing (where a header ends, how
//! long it may be) is checked here first, so nothing is sized by a length
//! before it is checked.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use slab::Slab;

/// The v2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1: "PROXY " then the rest of the line.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The longest v2 header accepted: its 16 bytes, addresses and TLVs.
pub(crate) const V2_MAX: usize = 4096;
/// Bytes looked at: enough for the longest header accepted.
pub(crate) const PEEK: usize = V2_MAX;

/// A whole header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Its length in bytes: what to read off the socket before the
    /// connection proper begins.
    pub len: usize,
    /// The client's address, `None` when the header carries none (v1
    /// `UNKNOWN`, v2 `LOCAL` such as a balancer's health check, or an
    /// address family other than IP): the connection's own peer is then
    /// the client.
    pub client: Option<SocketAddr>,
}

/// Reads the header at the start of `bytes`: `Ok(None)` while it is
/// incomplete, the reason in words when it is not a valid header.
pub(crate) fn parse(bytes: &[u8]) -> Result<Option<Header>, String> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let n = bytes.len().min(V2_SIGNATURE.len());
    if bytes[..n] == V2_SIGNATURE[..n] {
        return parse_v2(bytes);
    }
    let n = bytes.len().min(V1_PREFIX.len());
    if bytes[..n] == V1_PREFIX[..n] {
        return parse_v1(bytes);
    }
    Err(format!(
        "no PROXY protocol header: the connection began with {:?}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(16)])
    ))
}

fn parse_v1(bytes: &[u8]) -> Result<Option<Header>, String> {
    let window = &bytes[..bytes.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(format!(
                "PROXY v1 header without CRLF within {V1_MAX} bytes"
            ))
        } else {
            Ok(None)
        };
    };
    let len = end + 2;
    match ppp::v1::Header::try_from(&bytes[..len]) {
        Ok(h) => {
            let client = match h.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Ok(Some(Header { len, client }))
        }
        Err(e) => Err(format!(
            "malformed PROXY v1 header {:?}: {e}",
            String::from_utf8_lossy(&bytes[..len - 2])
        )),
    }
}

fn parse_v2(bytes: &[u8]) -> Result<Option<Header>, String> {
    if bytes.len() < 16 {
        return Ok(None);
    }
    let len = 16 + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    if len > V2_MAX {
        return Err(format!(
            "PROXY v2 header of {len} bytes; at most {V2_MAX} are accepted"
        ));
    }
    if bytes.len() < len {
        return Ok(None);
    }
    match ppp::v2::Header::try_from(&bytes[..len]) {
        Ok(h) => {
            let client = match (h.command, h.addresses) {
                (ppp::v2::Command::Local, _) => None,
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (ppp::v2::Command::Proxy, _) => None,
            };
            Ok(Some(Header { len, client }))
        }
        Err(e) => Err(format!("malformed PROXY v2 header: {e}")),
    }
}

/// What became of a connection waiting for its header.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Still incomplete: wait for more.
    Waiting,
    /// The header is whole and read off the socket: the connection goes on
    /// as from `client`.
    Ready {
        stream: TcpStream,
        client: SocketAddr,
        listener: usize,
    },
    /// Closed, for `why`.
    Failed {
        peer: SocketAddr,
        listener: usize,
        why: String,
    },
}

struct Waiting {
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
    since: Instant,
}

/// Connections from trusted balancers waiting for their header, on a poll
/// of their owner's (a reactor, an acceptor), with tokens from `base` up.
pub(crate) struct ProxyWait {
    waiting: Slab<Waiting>,
    base: usize,
    /// How long a header may take.
    pub timeout: Duration,
    /// The most connections waiting at once.
    max: usize,
}

impl ProxyWait {
    pub fn new(base: usize, timeout: Duration, max: usize) -> ProxyWait {
        ProxyWait {
            waiting: Slab::new(),
            base,
            timeout,
            max,
        }
    }

    /// Whether `token` is one of these.
    pub fn owns(&self, token: Token) -> bool {
        token.0 >= self.base && self.waiting.contains(token.0 - self.base)
    }

    pub fn is_full(&self) -> bool {
        self.waiting.len() >= self.max
    }

    /// Waits for the header of `stream` (non-blocking), from balancer
    /// `peer`, on listener `listener`; its first bytes may be there already.
    pub fn add(
        &mut self,
        registry: &Registry,
        stream: TcpStream,
        peer: SocketAddr,
        listener: usize,
        now: Instant,
    ) -> Outcome {
        let entry = self.waiting.vacant_entry();
        let key = entry.key();
        let mut waiting = Waiting {
            stream,
            peer,
            listener,
            since: now,
        };
        if let Err(e) = registry.register(
            &mut waiting.stream,
            Token(self.base + key),
            Interest::READABLE,
        ) {
            return Outcome::Failed {
                peer,
                listener,
                why: format!("cannot wait for its PROXY header: {e}"),
            };
        }
        entry.insert(waiting);
        self.readable(registry, Token(self.base + key))
    }

    /// The connection of `token` may have more of its header.
    pub fn readable(&mut self, registry: &Registry, token: Token) -> Outcome {
        let key = token.0 - self.base;
        let Some(w) = self.waiting.get_mut(key) else {
            return Outcome::Waiting;
        };
        let mut buf = [0u8; PEEK];
        let peeked = loop {
            match w.stream.peek(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other,
            }
        };
        let (peer, listener) = (w.peer, w.listener);
        let fail = |this: &mut ProxyWait, why: String| {
            let mut w = this.waiting.remove(key);
            let _ = registry.deregister(&mut w.stream);
            Outcome::Failed {
                peer,
                listener,
                why,
            }
        };
        let bytes = match peeked {
            Ok(0) => {
                return fail(self, "closed before its PROXY header was whole".into());
            }
            Ok(n) => &buf[..n],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Waiting,
            Err(e) => return fail(self, format!("reading its PROXY header: {e}")),
        };
        match parse(bytes) {
            Ok(None) => Outcome::Waiting,
            Err(why) => fail(self, why),
            Ok(Some(header)) => {
                let mut w = self.waiting.remove(key);
                let _ = registry.deregister(&mut w.stream);
                // The header is in the socket's queue: this read takes it
                // and nothing after it.
                let mut taken = 0;
                while taken < header.len {
                    match w.stream.read(&mut buf[taken..header.len]) {
                        Ok(0) => {
                            return Outcome::Failed {
                                peer,
                                listener,
                                why: "closed while its PROXY header was read".into(),
                            };
                        }
                        Ok(n) => taken += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Outcome::Failed {
                                peer,
                                listener,
                                why: format!("reading its PROXY header: {e}"),
                            };
                        }
                    }
                }
                Outcome::Ready {
                    stream: w.stream,
                    client: header.client.unwrap_or(peer),
                    listener,
                }
            }
        }
    }

    /// Closes those whose header is overdue, and says which.
    pub fn sweep(&mut self, registry: &Registry, now: Instant) -> Vec<(SocketAddr, usize)> {
        let overdue: Vec<usize> = self
            .waiting
            .iter()
            .filter(|(_, w)| now.duration_since(w.since) >= self.timeout)
            .map(|(k, _)| k)
            .collect();
        overdue
            .into_iter()
            .map(|k| {
                let mut w = self.waiting.remove(k);
                let _ = registry.deregister(&mut w.stream);
                (w.peer, w.listener)
            })
            .collect()
    }

    /// Closes every one (a stop).
    pub fn clear(&mut self, registry: &Registry) {
        for mut w in self.waiting.drain() {
            let _ = registry.deregister(&mut w.stream);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn v2_tcp4() -> Vec<u8> {
        // 192.0.2.7:5000 -> 198.51.100.1:443
        let mut a = vec![192, 0, 2, 7, 198, 51, 100, 1];
        a.extend_from_slice(&5000u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        v2(1, 0x11, &a, &[])
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 443\r\nhello";
        assert_eq!(
            parse(h),
            Ok(Some(Header {
                len: h.len() - 5,
                client: Some("192.0.2.7:5000".parse().unwrap())
            }))
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 5000 443\r\n";
        assert_eq!(
            parse(h).unwrap().unwrap().client,
            Some("[2001:db8::7]:5000".parse().unwrap())
        );
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(
            parse(h),
            Ok(Some(Header {
                len: 15,
                client: None
            }))
        );
    }

    /// Every prefix of a header is "incomplete", never an error: a header
    /// may arrive a byte at a time.
    #[test]
    fn a_header_in_pieces_is_incomplete_until_whole() {
        for whole in [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 5000 443\r\n".to_vec(),
            v2_tcp4(),
        ] {
            for cut in 0..whole.len() {
                assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
            }
            let h = parse(&whole).unwrap().unwrap();
            assert_eq!(h.len, whole.len());
            assert_eq!(h.client, Some("192.0.2.7:5000".parse().unwrap()));
        }
    }

    #[test]
    fn v2_tcp6_local_tlvs_and_unix() {
        let mut a = Vec::new();
        a.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(&5000u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        // A NOOP TLV of 3 bytes after the addresses.
        let h = v2(1, 0x21, &a, &[0x04, 0, 3, 1, 2, 3]);
        let parsed = parse(&h).unwrap().unwrap();
        assert_eq!(parsed.len, h.len());
        assert_eq!(parsed.client, Some("[2001:db8::7]:5000".parse().unwrap()));
        // LOCAL (a health check): no client address.
        let local = v2(0, 0x00, &[], &[]);
        assert_eq!(
            parse(&local),
            Ok(Some(Header {
                len: 16,
                client: None
            }))
        );
        // AF_UNIX: use the connection's own peer.
        let unix = v2(1, 0x31, &[0u8; 216], &[]);
        assert_eq!(parse(&unix).unwrap().unwrap().client, None);
    }

    #[test]
    fn bad_headers_are_refused_in_words() {
        let cases: [(&[u8], &str); 5] = [
            (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
            (b"\x16\x03\x01\x02\x00", "no PROXY protocol header"),
            (
                b"PROXY TCP4 nope 198.51.100.1 5000 443\r\n",
                "malformed PROXY v1",
            ),
            (b"PROXY SCTP 1 2 3 4\r\n", "malformed PROXY v1"),
            (b"PROXY TCP4", ""),
        ];
        for (bytes, says) in cases {
            match parse(bytes) {
                Err(e) => assert!(e.contains(says), "{e}"),
                Ok(None) if says.is_empty() => {}
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        // A v1 line longer than the specification allows.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(200, b'1');
        assert!(
            parse(&long)
                .unwrap_err()
                .contains("without CRLF within 107")
        );
        // A v2 length beyond what is accepted is refused before waiting for it.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(parse(&big).unwrap_err().contains("at most 4096"));
        // A wrong version nibble.
        let mut bad = v2_tcp4();
        bad[12] = 0x31;
        assert!(parse(&bad).unwrap_err().contains("malformed PROXY v2"));
    }
}
