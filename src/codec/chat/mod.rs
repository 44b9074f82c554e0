//! The chat's three dialects: client bytes in, [`ClientMsg`]s out, and
//! [`Event`]s in, bytes out.
//!
//! - [`line`]: a line per message, for `nc` and telnet users.
//! - [`header`]: seed 004's fixed-width ASCII length header, wire-compatible
//!   with its Python client.
//! - [`bincode`]: a 4-byte big-endian length, then a bincode-2 encoded enum.
//!
//! Decoders are incremental (bytes may arrive split anywhere), hold only the
//! bytes of one unfinished frame, and check every length against
//! `max_frame` before buffering or allocating for it. After a decode error
//! the connection is beyond repair: send [`ChatCodec::encode_error`], close.
//!
//! Encoders take an [`Event`] and append bytes, so a broadcast is encoded
//! once per [`Encoding`] and the bytes shared by every recipient.

pub mod bincode;
pub mod header;
pub mod line;
mod text;

use std::borrow::Cow;
use std::fmt;

pub use self::bincode::{BincodeChat, BincodeChatDecoder, BincodeServerDecoder, ServerMsg};
pub use self::header::{HeaderChat, HeaderChatDecoder};
pub use self::line::{LineChat, LineChatDecoder};

use crate::codec::FrameError;
use crate::service::chat::{ClientMsg, ErrorCode, Event};

/// The default longest frame a client may send: 64 KiB.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Why a client's bytes could not be decoded. The reason is for logs and for
/// the client; the code says which [`ErrorCode`] the client is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    code: ErrorCode,
    reason: Cow<'static, str>,
}

impl DecodeError {
    /// A frame longer than `max_frame`.
    pub fn too_large(reason: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            code: ErrorCode::FrameTooLarge,
            reason: reason.into(),
        }
    }

    /// A frame that is not what the dialect allows.
    pub fn bad_frame(reason: impl Into<Cow<'static, str>>) -> DecodeError {
        DecodeError {
            code: ErrorCode::BadFrame,
            reason: reason.into(),
        }
    }

    /// [`ErrorCode::FrameTooLarge`] or [`ErrorCode::BadFrame`].
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The error as the event a client is sent.
    pub fn to_event(&self) -> Event {
        Event::Error {
            code: self.code,
            reason: self.reason.clone(),
        }
    }
}

impl From<FrameError> for DecodeError {
    fn from(e: FrameError) -> DecodeError {
        match e {
            FrameError::TooLong { .. } | FrameError::LengthOverflow { .. } => {
                DecodeError::too_large(e.to_string())
            }
            FrameError::BadHeader { .. } | FrameError::Incomplete => {
                DecodeError::bad_frame(e.to_string())
            }
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for DecodeError {}

/// What decides the bytes an event encodes to. Two codecs with the same
/// `Encoding` encode every event identically: the runtime encodes a
/// broadcast once per distinct `Encoding` among its recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Line,
    Header { header_len: usize },
    Bincode,
}

/// A listener's dialect, with its settings: encodes events and makes one
/// decoder per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChatCodec {
    Line(LineChat),
    Header(HeaderChat),
    Bincode(BincodeChat),
}

impl ChatCodec {
    /// A decoder for a new connection.
    pub fn decoder(&self) -> ChatDecoder {
        match self {
            ChatCodec::Line(c) => ChatDecoder::Line(c.decoder()),
            ChatCodec::Header(c) => ChatDecoder::Header(c.decoder()),
            ChatCodec::Bincode(c) => ChatDecoder::Bincode(c.decoder()),
        }
    }

    /// Appends `event`, encoded, to `out`.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        match self {
            ChatCodec::Line(c) => c.encode(event, out),
            ChatCodec::Header(c) => c.encode(event, out),
            ChatCodec::Bincode(c) => c.encode(event, out),
        }
    }

    /// Appends a decode error as the client is told it: a notice in the text
    /// dialects, `ServerMsg::Error` in bincode.
    pub fn encode_error(&self, error: &DecodeError, out: &mut Vec<u8>) {
        self.encode(&error.to_event(), out);
    }

    /// Appends what a client of this dialect sends for `msg`: for clients,
    /// and for tests. In the text dialects a message that reads `/who` or
    /// `/quit` is that command.
    pub fn encode_client_msg(&self, msg: ClientMsg<'_>, out: &mut Vec<u8>) {
        match self {
            ChatCodec::Line(_) => line::encode_client_msg(msg, out),
            ChatCodec::Header(c) => c.encode_client_msg(msg, out),
            ChatCodec::Bincode(_) => bincode::encode_client_msg(msg, out),
        }
    }

    pub fn encoding(&self) -> Encoding {
        match self {
            ChatCodec::Line(_) => Encoding::Line,
            ChatCodec::Header(c) => Encoding::Header {
                header_len: c.header_len,
            },
            ChatCodec::Bincode(_) => Encoding::Bincode,
        }
    }

    /// The longest frame a client may send.
    pub fn max_frame(&self) -> usize {
        match self {
            ChatCodec::Line(c) => c.max_frame,
            ChatCodec::Header(c) => c.max_frame,
            ChatCodec::Bincode(c) => c.max_frame,
        }
    }

    /// The dialect's name, as the configuration spells it.
    pub fn name(&self) -> &'static str {
        match self {
            ChatCodec::Line(_) => "line",
            ChatCodec::Header(_) => "header",
            ChatCodec::Bincode(_) => "bincode",
        }
    }
}

/// One connection's decoder, of any dialect.
#[derive(Debug)]
pub enum ChatDecoder {
    Line(LineChatDecoder),
    Header(HeaderChatDecoder),
    Bincode(BincodeChatDecoder),
}

impl ChatDecoder {
    /// Buffers bytes read from the client. Call [`ChatDecoder::next_msg`]
    /// until it returns `Ok(None)` before buffering more, so that at most one
    /// unfinished frame is ever held.
    pub fn extend(&mut self, bytes: &[u8]) {
        match self {
            ChatDecoder::Line(d) => d.extend(bytes),
            ChatDecoder::Header(d) => d.extend(bytes),
            ChatDecoder::Bincode(d) => d.extend(bytes),
        }
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_msg(&mut self) -> Result<Option<ClientMsg<'_>>, DecodeError> {
        match self {
            ChatDecoder::Line(d) => d.next_msg(),
            ChatDecoder::Header(d) => d.next_msg(),
            ChatDecoder::Bincode(d) => d.next_msg(),
        }
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> &[u8] {
        match self {
            ChatDecoder::Line(d) => d.pending(),
            ChatDecoder::Header(d) => d.pending(),
            ChatDecoder::Bincode(d) => d.pending(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codecs() -> [ChatCodec; 4] {
        [
            ChatCodec::Line(LineChat::default()),
            ChatCodec::Header(HeaderChat::default()),
            ChatCodec::Header(HeaderChat::new(100, DEFAULT_MAX_FRAME)),
            ChatCodec::Bincode(BincodeChat::default()),
        ]
    }

    const CONVERSATION: [ClientMsg<'static>; 6] = [
        ClientMsg::Hello { name: "Dian" },
        ClientMsg::Say {
            text: "Hello World",
        },
        ClientMsg::Say {
            text: "naïve 語 \t ok",
        },
        ClientMsg::Who,
        ClientMsg::Say { text: "" },
        ClientMsg::Bye,
    ];

    /// Feeds `pieces` to a fresh decoder of `codec`, collecting messages.
    fn decode(codec: ChatCodec, pieces: &[&[u8]]) -> Result<Vec<String>, DecodeError> {
        let mut decoder = codec.decoder();
        let mut got = Vec::new();
        for piece in pieces {
            decoder.extend(piece);
            while let Some(msg) = decoder.next_msg()? {
                got.push(format!("{msg:?}"));
            }
        }
        assert!(decoder.pending().is_empty());
        Ok(got)
    }

    #[test]
    fn every_dialect_round_trips_a_conversation_split_anywhere() {
        let want: Vec<String> = CONVERSATION.iter().map(|m| format!("{m:?}")).collect();
        for codec in codecs() {
            let mut stream = Vec::new();
            for msg in CONVERSATION {
                codec.encode_client_msg(msg, &mut stream);
            }
            assert_eq!(decode(codec, &[&stream]).unwrap(), want, "{codec:?}");
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                assert_eq!(
                    decode(codec, &[a, b]).unwrap(),
                    want,
                    "{codec:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn every_dialect_refuses_a_frame_over_max_frame() {
        let long = "x".repeat(100);
        for codec in [
            ChatCodec::Line(LineChat::new(64)),
            ChatCodec::Header(HeaderChat::new(10, 64)),
            ChatCodec::Bincode(BincodeChat::new(64)),
        ] {
            let mut stream = Vec::new();
            codec.encode_client_msg(ClientMsg::Hello { name: "Dian" }, &mut stream);
            codec.encode_client_msg(ClientMsg::Say { text: &long }, &mut stream);
            let e = decode(codec, &[&stream]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::FrameTooLarge, "{codec:?}");
            assert_eq!(
                e.to_event(),
                Event::error(ErrorCode::FrameTooLarge, e.reason().to_owned())
            );
        }
    }

    #[test]
    fn encodings_group_codecs_that_write_the_same_bytes() {
        let a = ChatCodec::Header(HeaderChat::new(10, 100));
        let b = ChatCodec::Header(HeaderChat::new(10, 5000));
        let c = ChatCodec::Header(HeaderChat::new(100, 100));
        assert_eq!(a.encoding(), b.encoding());
        assert_ne!(a.encoding(), c.encoding());
        assert_ne!(
            ChatCodec::Line(LineChat::new(1)).encoding(),
            ChatCodec::Bincode(BincodeChat::new(1)).encoding()
        );
        let event = Event::Message {
            from: "Dian".into(),
            text: "hi".into(),
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.encode(&event, &mut x);
        b.encode(&event, &mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn frame_errors_map_to_codes() {
        let too_long = DecodeError::from(FrameError::TooLong { len: 9, max: 8 });
        assert_eq!(too_long.code(), ErrorCode::FrameTooLarge);
        assert_eq!(
            too_long.to_string(),
            "frame of 9 bytes is longer than the maximum of 8"
        );
        let bad = DecodeError::from(FrameError::BadHeader { header: "x".into() });
        assert_eq!(bad.code(), ErrorCode::BadFrame);
    }
}
