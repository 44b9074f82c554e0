//! The websocket dialect, for browsers (RFC 6455). A connection begins as
//! one HTTP request: `GET /` is answered with the chat page and closed,
//! `GET /ws` is upgraded, anything else refused. Once upgraded, every text
//! message is one JSON object ([`json`]); the server answers pings, echoes
//! a close, pings a silent client when the listener asks it to, and closes
//! with a status code that says why.
//!
//! All of it happens in the decoder, over bytes: what the room must send
//! for the protocol's own sake comes out as [`Decoded::Reply`], the end of
//! the conversation as [`Decoded::Close`], and the server's last frame from
//! [`WebSocketChatDecoder::goodbye`]. Events are encoded once per room, as
//! unmasked text frames, whoever receives them.

pub mod frame;
pub mod http;
pub mod json;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

pub use tungstenite::protocol::frame::coding::Control;
use tungstenite::protocol::frame::coding::{Data, OpCode};

use self::frame::{Fragments, Incoming, Refusal, close};
use self::http::Answer;
use self::json::WireClientMsg;
use super::{DecodeError, Decoded};
use crate::chat::{ClientMsg, ErrorCode, Event, WebSocketSettings};

pub use self::http::{PAGE, SOCKET_PATH};
pub use self::json::ServerJson;

/// A fixed mask, for frames whose every byte their sender chose itself:
/// tests and load generators ([`super::ChatCodec::encode_client_msg`]).
/// RFC 6455 5.3 wants a fresh, unpredictable mask for each frame of a
/// client that sends what others chose (a proxy cache could otherwise be
/// poisoned through it): netlab's chat client draws one per frame.
pub const CLIENT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The websocket dialect's settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WebSocketChat {
    pub settings: Arc<WebSocketSettings>,
    /// The longest message a client may send, in bytes, its fragments
    /// together.
    pub max_frame: usize,
}

impl WebSocketChat {
    pub fn new(settings: Arc<WebSocketSettings>, max_frame: usize) -> WebSocketChat {
        WebSocketChat {
            settings,
            max_frame,
        }
    }

    pub fn decoder(&self) -> WebSocketChatDecoder {
        WebSocketChatDecoder {
            settings: self.settings.clone(),
            max_frame: self.max_frame,
            state: State::Request { seen: 0 },
            buf: Vec::new(),
            start: 0,
            fragments: Fragments::default(),
            reply: Vec::new(),
            text: String::new(),
            heard: false,
            pinged: false,
            next_keepalive: None,
        }
    }

    /// Appends `event` as one text frame of JSON.
    pub fn encode(event: &Event, out: &mut Vec<u8>) {
        frame::push_text_with(out, |b| json::write_event(event, b));
    }
}

/// Appends what a client sends for `msg`: a text frame of JSON, masked
/// with `mask`.
pub fn encode_client_msg(msg: ClientMsg<'_>, mask: [u8; 4], out: &mut Vec<u8>) {
    let mut text = Vec::new();
    json::write_client_msg(msg, &mut text);
    frame::push_masked(out, OpCode::Data(Data::Text), true, &text, mask);
}

/// Appends a control frame as a client sends it, masked with `mask`: a
/// pong (its payload the ping's) or a close (its payload the status code).
pub fn encode_client_frame(out: &mut Vec<u8>, control: Control, payload: &[u8], mask: [u8; 4]) {
    frame::push_masked(out, OpCode::Control(control), true, payload, mask);
}

/// The `Sec-WebSocket-Accept` a server answers `Sec-WebSocket-Key` with,
/// for clients that check it.
pub fn accept_key(key: &str) -> String {
    tungstenite::handshake::derive_accept_key(key.as_bytes())
}

/// The status code a close frame gives after the room sent `code`.
pub fn close_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::FrameTooLarge => close::TOO_BIG,
        ErrorCode::RoomFull => close::TRY_AGAIN_LATER,
        ErrorCode::ServerShutdown => close::GOING_AWAY,
        ErrorCode::BadFrame => close::INVALID_PAYLOAD,
        ErrorCode::NameTaken
        | ErrorCode::NameInvalid
        | ErrorCode::NotNamed
        | ErrorCode::AlreadyNamed
        | ErrorCode::TimedOut
        | ErrorCode::RateLimited => close::POLICY,
    }
}

/// Where a connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Waiting for the HTTP request; `seen` bytes of it held no end.
    Request { seen: usize },
    /// Upgraded: frames both ways.
    Open,
    /// Its last reply is out; the next call says [`Decoded::Close`].
    CloseNext,
    /// The client's frames were refused: nothing more is read, and
    /// [`WebSocketChatDecoder::goodbye`] closes with this.
    Failed(Refusal),
    /// Nothing more is read or sent.
    Done,
}

/// What [`WebSocketChatDecoder::keepalive`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// Nothing was due, or the client was heard from.
    Quiet,
    /// A ping was appended.
    Pinged,
    /// The client answered nothing since the last ping: close it.
    Expired,
}

/// One connection's decoder.
#[derive(Debug)]
pub struct WebSocketChatDecoder {
    settings: Arc<WebSocketSettings>,
    max_frame: usize,
    state: State,
    /// Bytes read, of which those before `start` are used.
    buf: Vec<u8>,
    start: usize,
    fragments: Fragments,
    /// The last [`Decoded::Reply`].
    reply: Vec<u8>,
    /// The last message's name or text, unescaped.
    text: String,
    /// A frame came since the last keepalive round.
    heard: bool,
    /// A ping is out, unanswered.
    pinged: bool,
    next_keepalive: Option<Instant>,
}

impl WebSocketChatDecoder {
    /// Buffers bytes read from the client; dropped once the decoder is done
    /// with the connection.
    pub fn extend(&mut self, bytes: &[u8]) {
        if !matches!(self.state, State::Request { .. } | State::Open) {
            return;
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next thing the client's bytes come to, `Ok(None)` when more
    /// are needed (or the connection is done).
    pub fn next_decoded(&mut self) -> Result<Option<Decoded<'_>>, DecodeError> {
        match self.state {
            State::Request { seen } => self.request(seen),
            State::Open => self.frame(),
            State::CloseNext => {
                self.state = State::Done;
                Ok(Some(Decoded::Close))
            }
            State::Failed(_) | State::Done => Ok(None),
        }
    }

    fn request(&mut self, seen: usize) -> Result<Option<Decoded<'_>>, DecodeError> {
        let pending = &self.buf[self.start..];
        match http::read(pending, seen, &self.settings) {
            None => {
                self.state = State::Request {
                    seen: pending.len(),
                };
                Ok(None)
            }
            Some((Answer::Upgrade(response), used)) => {
                self.start += used;
                self.state = State::Open;
                self.reply = response;
                Ok(Some(Decoded::Reply(&self.reply)))
            }
            Some((Answer::Final(response), _)) => {
                self.drop_input();
                self.state = State::CloseNext;
                Ok(Some(Decoded::Reply(match response {
                    Cow::Borrowed(page) => page,
                    Cow::Owned(bytes) => {
                        self.reply = bytes;
                        &self.reply
                    }
                })))
            }
        }
    }

    fn frame(&mut self) -> Result<Option<Decoded<'_>>, DecodeError> {
        loop {
            let found = frame::next(
                &mut self.buf[self.start..],
                &mut self.fragments,
                self.max_frame,
            );
            let (incoming, used) = match found {
                Ok(Some(found)) => found,
                Ok(None) => return Ok(None),
                Err(refusal) => return Err(self.fail(refusal)),
            };
            self.start += used;
            self.heard = true;
            match incoming {
                Incoming::Text(text) => {
                    let msg = match json::read_client_msg(text) {
                        Ok(msg) => msg,
                        Err(why) => return Err(self.fail(Refusal::new(close::POLICY, why))),
                    };
                    self.text.clear();
                    let msg = match msg {
                        WireClientMsg::Hello { name } => {
                            self.text.push_str(&name);
                            ClientMsg::Hello { name: &self.text }
                        }
                        WireClientMsg::Say { text } => {
                            self.text.push_str(&text);
                            ClientMsg::Say { text: &self.text }
                        }
                        WireClientMsg::Who => ClientMsg::Who,
                        WireClientMsg::Bye => ClientMsg::Bye,
                    };
                    return Ok(Some(Decoded::Msg(msg)));
                }
                Incoming::Ping(payload) => {
                    self.reply.clear();
                    frame::push(&mut self.reply, OpCode::Control(Control::Pong), payload);
                    return Ok(Some(Decoded::Reply(&self.reply)));
                }
                Incoming::Pong => {
                    self.pinged = false;
                }
                Incoming::Fragment => {}
                Incoming::Close(status) => {
                    // Its status echoed, as RFC 6455 section 5.5.1 has it.
                    self.reply.clear();
                    let code = status.map_or(close::NORMAL, |(code, _)| code);
                    frame::push_close(&mut self.reply, code, "");
                    self.drop_input();
                    self.state = State::CloseNext;
                    return Ok(Some(Decoded::Reply(&self.reply)));
                }
            }
        }
    }

    /// Refuses what the client sent: it is told with the close frame.
    fn fail(&mut self, refusal: Refusal) -> DecodeError {
        let error = if refusal.code == close::TOO_BIG {
            DecodeError::too_large(refusal.reason.clone())
        } else {
            DecodeError::bad_frame(refusal.reason.clone())
        };
        self.drop_input();
        self.state = State::Failed(refusal);
        error
    }

    fn drop_input(&mut self) {
        self.buf = Vec::new();
        self.start = 0;
    }

    /// Whether events may be sent: the connection is upgraded, and no close
    /// frame has gone either way.
    pub fn takes_events(&self) -> bool {
        self.state == State::Open
    }

    /// Appends the server's last words before it closes the connection:
    /// a close frame, with the decoder's own refusal or else the status
    /// that `error` (the last the room sent) maps to; before the upgrade, a
    /// `408` for a client too slow with its request, `503` for a server
    /// stopping. Nothing when a close frame went already.
    pub fn goodbye(&mut self, error: Option<(ErrorCode, &str)>, out: &mut Vec<u8>) {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Open => {
                let (code, reason) = error.map_or((close::NORMAL, "goodbye"), |(code, reason)| {
                    (close_code(code), reason)
                });
                frame::push_close(out, code, reason);
            }
            State::Failed(refusal) => frame::push_close(out, refusal.code, &refusal.reason),
            State::Request { .. } => {
                let response = match error {
                    Some((ErrorCode::TimedOut, _)) => {
                        http::refusal(408, "Request Timeout", "no request in time", &[])
                    }
                    Some((ErrorCode::ServerShutdown, _)) => http::refusal(
                        503,
                        "Service Unavailable",
                        "the server is shutting down",
                        &[],
                    ),
                    _ => return,
                };
                if let Answer::Final(bytes) = response {
                    out.extend_from_slice(&bytes);
                }
            }
            State::CloseNext | State::Done => {}
        }
    }

    /// A keepalive round, due every `ping_interval` of the listener: a
    /// client heard from since the last round is left alone; a silent one
    /// is pinged, and one that stays silent until the round after is
    /// [`Keepalive::Expired`].
    pub fn keepalive(&mut self, now: Instant, out: &mut Vec<u8>) -> Keepalive {
        let Some(interval) = self.settings.ping_interval else {
            return Keepalive::Quiet;
        };
        if self.state != State::Open {
            return Keepalive::Quiet;
        }
        match self.next_keepalive {
            Some(due) if now < due => return Keepalive::Quiet,
            None => {
                self.next_keepalive = Some(now + interval);
                return Keepalive::Quiet;
            }
            Some(_) => self.next_keepalive = Some(now + interval),
        }
        if std::mem::take(&mut self.heard) {
            self.pinged = false;
            Keepalive::Quiet
        } else if self.pinged {
            Keepalive::Expired
        } else {
            self.pinged = true;
            frame::push(out, OpCode::Control(Control::Ping), b"netlab");
            Keepalive::Pinged
        }
    }

    /// Bytes buffered and not yet used.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
pub(crate) mod tests;
