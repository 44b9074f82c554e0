//! A chat listener's wire dialect.

use std::fmt;

/// How a listener's clients frame what they send and receive; the one
/// type for it, whether it comes from a configuration, a command line or a
/// C caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// A line per message, for `nc` and telnet users.
    Line,
    /// Seed 004's fixed-width ASCII length header, `header_len` bytes wide
    /// (the seed uses 100). Client and listener must agree on the width.
    Header { header_len: usize },
    /// A 4-byte big-endian length, then a bincode-encoded enum.
    Bincode,
}

impl Dialect {
    /// The names a configuration or a command line uses.
    pub const NAMES: [&'static str; 3] = ["line", "header", "bincode"];

    /// The dialect's name, as the configuration spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Dialect::Line => "line",
            Dialect::Header { .. } => "header",
            Dialect::Bincode => "bincode",
        }
    }

    /// The dialect named `name`, a header one `header_len` bytes wide.
    pub fn named(name: &str, header_len: usize) -> Option<Dialect> {
        match name {
            "line" => Some(Dialect::Line),
            "header" => Some(Dialect::Header { header_len }),
            "bincode" => Some(Dialect::Bincode),
            _ => None,
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
}
