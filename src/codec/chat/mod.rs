//! The chat's four dialects ([`Dialect`]): client bytes in,
//! [`ClientMsg`]s out, and [`Event`]s in, bytes out.
//!
//! - [`line`]: a line per message, for `nc` and telnet users.
//! - [`header`]: seed 004's fixed-width ASCII length header, wire-compatible
//!   with its Python client.
//! - [`bincode`]: a 4-byte big-endian length, then a bincode-2 encoded enum.
//! - [`websocket`]: RFC 6455 and a JSON object per message, for browsers;
//!   the one dialect with a protocol of its own (an HTTP request, pings,
//!   close frames), which its decoder answers through [`Decoded::Reply`].
//!
//! Decoders are incremental (bytes may arrive split anywhere), hold only the
//! bytes of one unfinished frame, and check every length against
//! `max_frame` before buffering or allocating for it. After a decode error
//! the connection is beyond repair: send [`ChatCodec::encode_error`], close.
//!
//! Encoders take an [`Event`] and append bytes, so a broadcast is encoded
//! once per [`Dialect`] and the bytes shared by every recipient.

pub mod bincode;
pub mod header;
pub mod line;
mod text;
pub mod websocket;

use std::borrow::Cow;
use std::fmt;

pub use self::bincode::{BincodeChat, BincodeChatDecoder, BincodeServerDecoder, ServerMsg};
pub use self::header::{HeaderChat, HeaderChatDecoder};
pub use self::line::{LineChat, LineChatDecoder};
pub use self::websocket::{Keepalive, WebSocketChat, WebSocketChatDecoder};

use crate::chat::{ClientMsg, Dialect, ErrorCode, Event};
use crate::codec::FrameError;

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
            FrameError::TooLong { .. }
            | FrameError::LineTooLong { .. }
            | FrameError::LengthOverflow { .. } => DecodeError::too_large(e.to_string()),
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

/// What a client's bytes came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A message for the room.
    Msg(ClientMsg<'a>),
    /// Bytes the dialect answers for its own protocol's sake, for this
    /// client alone, after what the room sent it so far (an HTTP response,
    /// a pong, a close frame echoed).
    Reply(&'a [u8]),
    /// The dialect is done with the connection: close it once what was
    /// sent to it is written.
    Close,
}

/// A listener's dialect with the longest frame its clients may send:
/// encodes events and makes one decoder per connection. Two codecs of the
/// same [`Dialect`] wire ([`Dialect::same_wire`]) encode every event
/// identically, whatever their `max_frame`: a room encodes a broadcast
/// once per wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChatCodec {
    pub dialect: Dialect,
    /// The longest frame a client may send, in bytes.
    pub max_frame: usize,
}

impl ChatCodec {
    pub fn new(dialect: Dialect, max_frame: usize) -> ChatCodec {
        ChatCodec { dialect, max_frame }
    }

    /// A decoder for a new connection.
    pub fn decoder(&self) -> ChatDecoder {
        match &self.dialect {
            Dialect::Line => ChatDecoder::Line(LineChat::new(self.max_frame).decoder()),
            Dialect::Header { header_len } => {
                ChatDecoder::Header(HeaderChat::new(*header_len, self.max_frame).decoder())
            }
            Dialect::Bincode => ChatDecoder::Bincode(BincodeChat::new(self.max_frame).decoder()),
            Dialect::WebSocket(settings) => ChatDecoder::WebSocket(Box::new(
                WebSocketChat::new(settings.clone(), self.max_frame).decoder(),
            )),
        }
    }

    /// Appends `event`, encoded, to `out`.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        match &self.dialect {
            Dialect::Line => LineChat::new(self.max_frame).encode(event, out),
            Dialect::Header { header_len } => {
                HeaderChat::new(*header_len, self.max_frame).encode(event, out)
            }
            Dialect::Bincode => BincodeChat::new(self.max_frame).encode(event, out),
            Dialect::WebSocket(_) => WebSocketChat::encode(event, out),
        }
    }

    /// Appends a decode error as the client is told it: a notice in the text
    /// dialects, `ServerMsg::Error` in bincode, an error message in
    /// websocket (whose decoder then closes with the status that fits).
    pub fn encode_error(&self, error: &DecodeError, out: &mut Vec<u8>) {
        self.encode(&error.to_event(), out);
    }

    /// Appends what a client of this dialect sends for `msg`, for tests and
    /// load generators: websocket frames are masked with the fixed
    /// [`websocket::CLIENT_MASK`] (after the upgrade). In the text dialects
    /// a message that reads `/who` or `/quit` is that command.
    pub fn encode_client_msg(&self, msg: ClientMsg<'_>, out: &mut Vec<u8>) {
        self.encode_client_msg_masked(msg, websocket::CLIENT_MASK, out);
    }

    /// [`ChatCodec::encode_client_msg`] with `mask` for a websocket frame,
    /// as a client whose text others chose must send it: a fresh random
    /// mask for each frame (RFC 6455 5.3).
    pub fn encode_client_msg_masked(&self, msg: ClientMsg<'_>, mask: [u8; 4], out: &mut Vec<u8>) {
        match &self.dialect {
            Dialect::Line => line::encode_client_msg(msg, out),
            Dialect::Header { header_len } => {
                HeaderChat::new(*header_len, self.max_frame).encode_client_msg(msg, out)
            }
            Dialect::Bincode => bincode::encode_client_msg(msg, out),
            Dialect::WebSocket(_) => websocket::encode_client_msg(msg, mask, out),
        }
    }

    /// The dialect's name, as the configuration spells it.
    pub fn name(&self) -> &'static str {
        self.dialect.name()
    }
}

/// One connection's decoder, of any dialect.
#[derive(Debug)]
pub enum ChatDecoder {
    Line(LineChatDecoder),
    Header(HeaderChatDecoder),
    Bincode(BincodeChatDecoder),
    /// Boxed: it holds a connection's whole protocol state.
    WebSocket(Box<WebSocketChatDecoder>),
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
            ChatDecoder::WebSocket(d) => d.extend(bytes),
        }
    }

    /// The next thing the client's bytes come to, `Ok(None)` when more
    /// bytes are needed.
    pub fn next_decoded(&mut self) -> Result<Option<Decoded<'_>>, DecodeError> {
        let msg = match self {
            ChatDecoder::Line(d) => d.next_msg(),
            ChatDecoder::Header(d) => d.next_msg(),
            ChatDecoder::Bincode(d) => d.next_msg(),
            ChatDecoder::WebSocket(d) => return d.next_decoded(),
        };
        msg.map(|m| m.map(Decoded::Msg))
    }

    /// Whether the connection may be sent events now (a WebSocket before
    /// its upgrade, or after a close frame, may not).
    pub fn takes_events(&self) -> bool {
        match self {
            ChatDecoder::WebSocket(d) => d.takes_events(),
            _ => true,
        }
    }

    /// Appends what the dialect says last before the server closes the
    /// connection, `error` being the last error the room sent it: a
    /// WebSocket close frame; nothing in the other dialects, whose clients
    /// have read the error.
    pub fn goodbye(&mut self, error: Option<(ErrorCode, &str)>, out: &mut Vec<u8>) {
        if let ChatDecoder::WebSocket(d) = self {
            d.goodbye(error, out);
        }
    }

    /// A keepalive round (websocket pings); [`Keepalive::Quiet`] elsewhere.
    pub fn keepalive(&mut self, now: std::time::Instant, out: &mut Vec<u8>) -> Keepalive {
        match self {
            ChatDecoder::WebSocket(d) => d.keepalive(now, out),
            _ => Keepalive::Quiet,
        }
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> &[u8] {
        match self {
            ChatDecoder::Line(d) => d.pending(),
            ChatDecoder::Header(d) => d.pending(),
            ChatDecoder::Bincode(d) => d.pending(),
            ChatDecoder::WebSocket(d) => d.pending(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 64 * 1024;

    fn websocket() -> Dialect {
        Dialect::named("websocket", 0).unwrap()
    }

    fn codecs() -> [ChatCodec; 5] {
        [
            ChatCodec::new(Dialect::Line, MAX),
            ChatCodec::new(Dialect::Header { header_len: 10 }, MAX),
            ChatCodec::new(Dialect::Header { header_len: 100 }, MAX),
            ChatCodec::new(Dialect::Bincode, MAX),
            ChatCodec::new(websocket(), MAX),
        ]
    }

    /// What a client of `codec` sends before its messages: a WebSocket
    /// client's upgrade request.
    fn opening(codec: &ChatCodec) -> Vec<u8> {
        match codec.dialect {
            Dialect::WebSocket(_) => websocket::tests::UPGRADE.to_vec(),
            _ => Vec::new(),
        }
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

    /// Feeds `pieces` to a fresh decoder of `codec`, collecting messages;
    /// a WebSocket's one reply, its upgrade, is checked and left out.
    fn decode(codec: &ChatCodec, pieces: &[&[u8]]) -> Result<Vec<String>, DecodeError> {
        let mut decoder = codec.decoder();
        let mut got = Vec::new();
        for piece in pieces {
            decoder.extend(piece);
            while let Some(decoded) = decoder.next_decoded()? {
                match decoded {
                    Decoded::Msg(msg) => got.push(format!("{msg:?}")),
                    Decoded::Reply(r) if r.starts_with(b"HTTP/1.1 101 ") && got.is_empty() => {}
                    other => panic!("{codec:?} answered {other:?}"),
                }
            }
        }
        assert!(decoder.pending().is_empty());
        Ok(got)
    }

    #[test]
    fn every_dialect_round_trips_a_conversation_split_anywhere() {
        let want: Vec<String> = CONVERSATION.iter().map(|m| format!("{m:?}")).collect();
        for codec in codecs() {
            let mut stream = opening(&codec);
            for msg in CONVERSATION {
                codec.encode_client_msg(msg, &mut stream);
            }
            assert_eq!(decode(&codec, &[&stream]).unwrap(), want, "{codec:?}");
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                assert_eq!(
                    decode(&codec, &[a, b]).unwrap(),
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
            ChatCodec::new(Dialect::Line, 64),
            ChatCodec::new(Dialect::Header { header_len: 10 }, 64),
            ChatCodec::new(Dialect::Bincode, 64),
            ChatCodec::new(websocket(), 64),
        ] {
            let mut stream = opening(&codec);
            codec.encode_client_msg(ClientMsg::Hello { name: "Dian" }, &mut stream);
            codec.encode_client_msg(ClientMsg::Say { text: &long }, &mut stream);
            let e = decode(&codec, &[&stream]).unwrap_err();
            assert_eq!(e.code(), ErrorCode::FrameTooLarge, "{codec:?}");
            assert_eq!(
                e.to_event(),
                Event::error(ErrorCode::FrameTooLarge, e.reason().to_owned())
            );
        }
    }

    #[test]
    fn codecs_of_one_dialect_write_the_same_bytes_whatever_their_max_frame() {
        let a = ChatCodec::new(Dialect::Header { header_len: 10 }, 100);
        let b = ChatCodec::new(Dialect::Header { header_len: 10 }, 5000);
        let event = Event::Message {
            from: "Dian".into(),
            text: "hi".into(),
        };
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.encode(&event, &mut x);
        b.encode(&event, &mut y);
        assert_eq!(x, y);
        assert_eq!(a.dialect, b.dialect);
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
