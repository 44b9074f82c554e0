//! The chat's vocabulary, independent of any wire format: what a client asks
//! for ([`ClientMsg`]) and what the room tells clients ([`Event`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What a client asks of the room, as a dialect decoded it. Strings borrow
/// from the decoder's buffer, so decoding allocates nothing; the hub copies
/// what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMsg<'a> {
    /// The client's name; the first thing every client sends.
    Hello { name: &'a str },
    /// A message for everyone else in the room.
    Say { text: &'a str },
    /// Who is online?
    Who,
    /// The client leaves.
    Bye,
}

/// Why the room refused something, with a code that is stable on the wire
/// (the bincode dialect sends it as a `u16`). Never renumber a variant; add
/// new ones with new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// Another client in the room has this name.
    NameTaken = 1,
    /// Empty, longer than 32 characters, control characters, or reserved.
    NameInvalid = 2,
    /// A frame longer than the listener's `max_frame`.
    FrameTooLarge = 3,
    /// A frame that does not decode (bad header, bad UTF-8, bad bincode).
    BadFrame = 4,
    /// A message or `Who` before the client sent its name.
    NotNamed = 5,
    /// The room holds `max_clients` named clients already.
    RoomFull = 6,
    /// The server is going away.
    ServerShutdown = 7,
    /// A second `Hello` from a client that already has a name.
    AlreadyNamed = 8,
    /// The client was idle for longer than the server allows.
    TimedOut = 9,
    /// The client sent messages faster than the server's `message_rate`.
    RateLimited = 10,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::NameTaken,
        ErrorCode::NameInvalid,
        ErrorCode::FrameTooLarge,
        ErrorCode::BadFrame,
        ErrorCode::NotNamed,
        ErrorCode::RoomFull,
        ErrorCode::ServerShutdown,
        ErrorCode::AlreadyNamed,
        ErrorCode::TimedOut,
        ErrorCode::RateLimited,
    ];

    /// The number sent on the wire.
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The code with this number, `None` for numbers this build does not know
    /// (a newer server's).
    pub fn from_code(code: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A short name for logs: `"name_taken"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NameInvalid => "name_invalid",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::NotNamed => "not_named",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::ServerShutdown => "server_shutdown",
            ErrorCode::AlreadyNamed => "already_named",
            ErrorCode::TimedOut => "timed_out",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the room tells clients: the bincode dialect's server messages, which
/// the line and header dialects render as text.
///
/// Strings are `Arc<str>` because one event is encoded once per dialect and
/// its parts are shared with the hub's own state: cloning an event, or a
/// name into an event, is a reference count, never a copy of the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// To a client whose name was accepted. `name` is not on the bincode wire
    /// (the client chose it); the text dialects greet the client by it.
    Welcome {
        id: u64,
        name: Arc<str>,
        addr: Arc<str>,
        online: u32,
    },
    /// A message from another client.
    Message { from: Arc<str>, text: Arc<str> },
    /// Someone joined; `online` counts them. `node` is the cluster node
    /// they joined on, when it is not this one.
    Joined {
        name: Arc<str>,
        addr: Arc<str>,
        online: u32,
        node: Option<Arc<str>>,
    },
    /// Someone left; `online` no longer counts them. `node` as for `Joined`.
    Left {
        name: Arc<str>,
        online: u32,
        node: Option<Arc<str>>,
    },
    /// Everyone online, sorted by name.
    Roster { names: Vec<Arc<str>> },
    /// Something was refused or went wrong.
    Error {
        code: ErrorCode,
        reason: Cow<'static, str>,
    },
    /// News about the room itself rather than its members (the link to
    /// the other nodes of a cluster went down, or came back).
    Notice { text: Arc<str> },
}

impl Event {
    /// An error event.
    pub fn error(code: ErrorCode, reason: impl Into<Cow<'static, str>>) -> Event {
        Event::Error {
            code,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_stable_and_round_trip() {
        let numbers: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
        }
        assert_eq!(ErrorCode::from_code(0), None);
        assert_eq!(ErrorCode::from_code(1000), None);
    }
}
