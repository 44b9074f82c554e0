//! What nodes publish on the room's Redis channel: one [`Envelope`] per
//! message, bincode-encoded behind a version byte. Every envelope names
//! its node and that node's incarnation (a node that restarts is a new
//! one) and carries a sequence number, so that a receiver ignores its own
//! and counts what it missed. An envelope carries the events the publisher
//! had at hand at once: under load, many in one Redis message, which the
//! other nodes hand their rooms at once, so that each member gets them in
//! one write.

use serde::{Deserialize, Serialize};

/// The first byte of every message: a format this build does not know is
/// ignored (and said so), not misread.
pub const VERSION: u8 = 1;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// One message on the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<'a> {
    pub node: &'a str,
    pub incarnation: u64,
    /// Events are numbered 1, 2, ... per incarnation: this is the number
    /// of the first event in `body`. A heartbeat carries the number of the
    /// last event, so a receiver that missed the last events before a
    /// silence learns it too.
    pub seq: u64,
    #[serde(borrow)]
    pub body: Body<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body<'a> {
    /// Events, numbered from the envelope's `seq` on.
    Events(#[serde(borrow)] Vec<Event<'a>>),
    /// Sent every quarter of the presence TTL: the node is alive, and these
    /// are its members (name, address).
    Heartbeat {
        #[serde(borrow)]
        members: Vec<(&'a str, &'a str)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event<'a> {
    Joined {
        name: &'a str,
        addr: &'a str,
    },
    Said {
        from: &'a str,
        text: &'a str,
    },
    Left {
        name: &'a str,
    },
    /// The node is stopping: its members are gone.
    Gone,
}

impl Body<'_> {
    /// How many events it numbers: none for a heartbeat.
    pub fn events(&self) -> u64 {
        match self {
            Body::Events(events) => events.len() as u64,
            Body::Heartbeat { .. } => 0,
        }
    }
}

impl Envelope<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        // Encoding into memory fails only beyond 4 GiB, which no chat
        // message or roster comes near; an empty payload is then ignored
        // by every receiver.
        match bincode::serde::encode_to_vec(self, CONFIG) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(_) => out.clear(),
        }
        out
    }
}

/// Why a message from the channel was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Written by a build with another format (or by something else).
    Version(Option<u8>),
    Undecodable(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Version(None) => f.write_str("an empty message"),
            WireError::Version(Some(v)) => write!(
                f,
                "format {v}, which this netlab does not read (it reads {VERSION})"
            ),
            WireError::Undecodable(e) => write!(f, "undecodable: {e}"),
        }
    }
}

pub fn decode(bytes: &[u8]) -> Result<Envelope<'_>, WireError> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            let (envelope, used) = bincode::serde::borrow_decode_from_slice(rest, CONFIG)
                .map_err(|e| WireError::Undecodable(e.to_string()))?;
            if used != rest.len() {
                return Err(WireError::Undecodable(format!(
                    "{} byte(s) after the message",
                    rest.len() - used
                )));
            }
            Ok(envelope)
        }
        Some((&v, _)) => Err(WireError::Version(Some(v))),
        None => Err(WireError::Version(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_round_trips() {
        let bodies = [
            Body::Events(vec![
                Event::Joined {
                    name: "bob",
                    addr: "127.0.0.1:5000",
                },
                Event::Said {
                    from: "bob",
                    text: "naïve 語",
                },
                Event::Left { name: "bob" },
                Event::Gone,
            ]),
            Body::Events(vec![]),
            Body::Heartbeat {
                members: vec![("bob", "127.0.0.1:5000"), ("ayu", "[::1]:7")],
            },
            Body::Heartbeat { members: vec![] },
        ];
        for body in bodies {
            let envelope = Envelope {
                node: "node-a",
                incarnation: 1_700_000_000_123,
                seq: 42,
                body,
            };
            let bytes = envelope.encode();
            assert_eq!(bytes[0], VERSION);
            assert_eq!(decode(&bytes), Ok(envelope));
        }
    }

    #[test]
    fn what_is_not_an_envelope_is_refused_in_words() {
        assert_eq!(decode(b""), Err(WireError::Version(None)));
        assert_eq!(decode(b"\x02abc"), Err(WireError::Version(Some(2))));
        assert!(
            WireError::Version(Some(2))
                .to_string()
                .contains("format 2, which this netlab does not read")
        );
        let mut bytes = Envelope {
            node: "a",
            incarnation: 1,
            seq: 1,
            body: Body::Events(vec![Event::Gone]),
        }
        .encode();
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(WireError::Undecodable(_))));
        // Cut anywhere: refused, never a panic.
        let bytes = Envelope {
            node: "a",
            incarnation: 1,
            seq: 1,
            body: Body::Events(vec![Event::Said {
                from: "b",
                text: "hello",
            }]),
        }
        .encode();
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
