//! A chat listener's wire dialect.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a listener's clients frame what they send and receive; the one
/// type for it, whether it comes from a configuration, a command line or a
/// C caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// A line per message, for `nc` and telnet users.
    Line,
    /// Seed 004's fixed-width ASCII length header, `header_len` bytes wide
    /// (the seed uses 100). Client and listener must agree on the width.
    Header { header_len: usize },
    /// A 4-byte big-endian length, then a bincode-encoded enum.
    Bincode,
    /// RFC 6455 WebSocket, one JSON object per text message, for browsers:
    /// `GET /` is the chat page, `GET /ws` the socket.
    WebSocket(Arc<WebSocketSettings>),
}

/// What a WebSocket listener needs beyond the framing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct WebSocketSettings {
    /// Origins (as browsers send them, `https://chat.example.org`) whose
    /// pages may open the socket besides the listener's own page; `"*"`
    /// admits any. A request without `Origin` (not from a browser) is
    /// admitted: the check protects browsers' users from other sites'
    /// pages, not the server from programs, which can send any header.
    pub allowed_origins: Vec<String>,
    /// How often a silent client is pinged; one that has answered nothing
    /// by the next round is closed. `None`: never.
    pub ping_interval: Option<Duration>,
}

impl Dialect {
    /// The names a configuration or a command line uses.
    pub const NAMES: [&'static str; 4] = ["line", "header", "bincode", "websocket"];

    /// The dialect's name, as the configuration spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Dialect::Line => "line",
            Dialect::Header { .. } => "header",
            Dialect::Bincode => "bincode",
            Dialect::WebSocket(_) => "websocket",
        }
    }

    /// The dialect named `name`, a header one `header_len` bytes wide, a
    /// WebSocket one with no origin but its own and no pings.
    pub fn named(name: &str, header_len: usize) -> Option<Dialect> {
        match name {
            "line" => Some(Dialect::Line),
            "header" => Some(Dialect::Header { header_len }),
            "bincode" => Some(Dialect::Bincode),
            "websocket" => Some(Dialect::websocket(WebSocketSettings::default())),
            _ => None,
        }
    }

    pub fn websocket(settings: WebSocketSettings) -> Dialect {
        Dialect::WebSocket(Arc::new(settings))
    }

    /// Whether the two write every event with the same bytes, whatever
    /// else differs (a WebSocket listener's origins): a room encodes a
    /// broadcast once for all the listeners that do.
    pub fn same_wire(&self, other: &Dialect) -> bool {
        match (self, other) {
            (Dialect::Header { header_len: a }, Dialect::Header { header_len: b }) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in Dialect::NAMES {
            let d = Dialect::named(name, 100).unwrap();
            assert_eq!(d.name(), name);
            assert_eq!(d.to_string(), name);
        }
        assert_eq!(
            Dialect::named("header", 7),
            Some(Dialect::Header { header_len: 7 })
        );
        assert_eq!(Dialect::named("pickle", 10), None);
    }

    #[test]
    fn same_wire_ignores_what_does_not_change_the_bytes() {
        let open = Dialect::websocket(WebSocketSettings {
            allowed_origins: vec!["*".into()],
            ping_interval: None,
        });
        let own = Dialect::named("websocket", 10).unwrap();
        assert_ne!(open, own);
        assert!(open.same_wire(&own));
        assert!(Dialect::Header { header_len: 10 }.same_wire(&Dialect::Header { header_len: 10 }));
        assert!(
            !Dialect::Header { header_len: 10 }.same_wire(&Dialect::Header { header_len: 100 })
        );
        assert!(!Dialect::Line.same_wire(&Dialect::Bincode));
        assert!(!Dialect::Line.same_wire(&own));
    }
}
