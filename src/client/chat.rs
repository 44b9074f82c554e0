//! The chat client: joins a room under a name in any of the four dialects,
//! sends messages, and receives the room's events one at a time, each wait
//! bounded by a timeout. Blocking and simple on purpose: the C ABI wraps it
//! one call per step ("receive one event within 200 ms").
//!
//! ```no_run
//! use std::time::Duration;
//! use netlab::client::{ChatClient, ChatEvent, Dialect};
//!
//! let addr = "127.0.0.1:1235".parse().unwrap();
//! let mut chat = ChatClient::connect(addr, "Dian", Dialect::Line, Duration::from_secs(2))?;
//! chat.send("Hello World")?;
//! while let Some(event) = chat.recv(Duration::from_millis(200))? {
//!     if let ChatEvent::Message { from, text } = event {
//!         println!("[{from}] {text}");
//!     }
//! }
//! chat.quit()?;
//! # Ok::<(), netlab::client::ClientError>(())
//! ```
//!
//! The text dialects (line, header) send notices as text; [`ChatEventDecoder`]
//! parses the formats netlabd writes (`Ayu joined (3 online)`, ...) back
//! into events, and passes any other notice on as [`ChatEvent::Notice`].
//! In the websocket dialect the client first asks for the upgrade at `/ws`,
//! as a browser does, then reads events as JSON and answers pings.

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::link::{Got, Link};
use super::tcp::check_timeout;
use super::{ClientError, ClientOptions, error};
pub use crate::chat::Dialect;
use crate::chat::{ClientMsg, ErrorCode, validate_name};
use crate::codec::chat::websocket::frame::{self, Fragments, Incoming, close};
use crate::codec::chat::websocket::{self, ServerJson};
use crate::codec::chat::{BincodeServerDecoder, ChatCodec, ServerMsg};
use crate::codec::{Codec, FrameError, HeaderCodec, LineCodec};

/// The longest frame accepted from a server: a roster of a big room is long.
const MAX_SERVER_FRAME: usize = 1024 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// How long [`ChatClient::quit`] waits for the server to close after `Bye`.
const QUIT_LINGER: Duration = Duration::from_millis(500);
/// The longest answer to a WebSocket upgrade taken (netlabd's is 200 bytes).
const MAX_UPGRADE_ANSWER: usize = 16 * 1024;
/// And the most header fields it may have.
const MAX_UPGRADE_HEADERS: usize = 32;

/// The codec that encodes what a client of `dialect` sends (a client sends
/// frames of any length the server takes; `max_frame` only bounds decoding).
fn client_codec(dialect: Dialect) -> ChatCodec {
    ChatCodec::new(dialect, MAX_SERVER_FRAME)
}

/// A header width the listener could have: 1 to
/// [`HeaderCodec::MAX_HEADER_LEN`] bytes, as configurations allow.
fn check_dialect(dialect: &Dialect) -> Result<(), ClientError> {
    match *dialect {
        Dialect::Header { header_len }
            if !(1..=HeaderCodec::MAX_HEADER_LEN).contains(&header_len) =>
        {
            Err(ClientError::invalid(format!(
                "header_len {header_len} is not between 1 and {}",
                HeaderCodec::MAX_HEADER_LEN
            )))
        }
        _ => Ok(()),
    }
}

/// What the room told this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// The name was accepted. `addr` is this client's address as the server
    /// sees it (bincode and websocket; the text dialects do not send it).
    Welcome { online: u32, addr: Option<String> },
    /// A message from someone else.
    Message { from: String, text: String },
    /// Someone joined; `online` counts them.
    Joined { name: String, online: u32 },
    /// Someone left; `online` no longer counts them.
    Left { name: String, online: u32 },
    /// Who is online (the answer to [`ChatClient::who`]).
    Roster { names: Vec<String> },
    /// Something was refused or went wrong; the server may close next.
    /// `code` is known in the bincode and websocket dialects.
    Error {
        code: Option<ErrorCode>,
        reason: String,
    },
    /// A text-dialect notice in a format this client does not know.
    Notice { text: String },
}

impl ChatEvent {
    /// The event's kind as a short stable word, for logs and bindings:
    /// `welcome`, `message`, `joined`, `left`, `roster`, `error`, `notice`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChatEvent::Welcome { .. } => "welcome",
            ChatEvent::Message { .. } => "message",
            ChatEvent::Joined { .. } => "joined",
            ChatEvent::Left { .. } => "left",
            ChatEvent::Roster { .. } => "roster",
            ChatEvent::Error { .. } => "error",
            ChatEvent::Notice { .. } => "notice",
        }
    }
}

impl fmt::Display for ChatEvent {
    /// The event as the line dialect shows it: `[Rafi] hi`, `* Ayu joined
    /// (3 online)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatEvent::Welcome { online, .. } => write!(f, "* welcome, {online} online"),
            ChatEvent::Message { from, text } => write!(f, "[{from}] {text}"),
            ChatEvent::Joined { name, online } => write!(f, "* {name} joined ({online} online)"),
            ChatEvent::Left { name, online } => write!(f, "* {name} left ({online} online)"),
            ChatEvent::Roster { names } => {
                write!(f, "* online ({}): {}", names.len(), names.join(", "))
            }
            ChatEvent::Error { reason, .. } => write!(f, "* error: {reason}"),
            ChatEvent::Notice { text } => write!(f, "* {text}"),
        }
    }
}

/// A chat event whose strings borrow from the decoder's buffer: decoding a
/// message allocates nothing (the load generator decodes millions a second).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEventRef<'a> {
    Welcome {
        online: u32,
        addr: Option<&'a str>,
    },
    Message {
        from: &'a str,
        text: &'a str,
    },
    Joined {
        name: &'a str,
        online: u32,
    },
    Left {
        name: &'a str,
        online: u32,
    },
    Roster {
        names: Vec<&'a str>,
    },
    Error {
        code: Option<ErrorCode>,
        reason: &'a str,
    },
    Notice {
        text: &'a str,
    },
}

impl ChatEvent {
    /// The event with its strings borrowed from it.
    pub fn as_event_ref(&self) -> ChatEventRef<'_> {
        match self {
            ChatEvent::Welcome { online, addr } => ChatEventRef::Welcome {
                online: *online,
                addr: addr.as_deref(),
            },
            ChatEvent::Message { from, text } => ChatEventRef::Message { from, text },
            ChatEvent::Joined { name, online } => ChatEventRef::Joined {
                name,
                online: *online,
            },
            ChatEvent::Left { name, online } => ChatEventRef::Left {
                name,
                online: *online,
            },
            ChatEvent::Roster { names } => ChatEventRef::Roster {
                names: names.iter().map(String::as_str).collect(),
            },
            ChatEvent::Error { code, reason } => ChatEventRef::Error {
                code: *code,
                reason,
            },
            ChatEvent::Notice { text } => ChatEventRef::Notice { text },
        }
    }
}

impl ChatEventRef<'_> {
    pub fn to_owned_event(&self) -> ChatEvent {
        match self {
            ChatEventRef::Welcome { online, addr } => ChatEvent::Welcome {
                online: *online,
                addr: addr.map(str::to_owned),
            },
            ChatEventRef::Message { from, text } => ChatEvent::Message {
                from: (*from).to_owned(),
                text: (*text).to_owned(),
            },
            ChatEventRef::Joined { name, online } => ChatEvent::Joined {
                name: (*name).to_owned(),
                online: *online,
            },
            ChatEventRef::Left { name, online } => ChatEvent::Left {
                name: (*name).to_owned(),
                online: *online,
            },
            ChatEventRef::Roster { names } => ChatEvent::Roster {
                names: names.iter().map(|n| (*n).to_owned()).collect(),
            },
            ChatEventRef::Error { code, reason } => ChatEvent::Error {
                code: *code,
                reason: (*reason).to_owned(),
            },
            ChatEventRef::Notice { text } => ChatEvent::Notice {
                text: (*text).to_owned(),
            },
        }
    }
}

/// Bytes read but not yet decoded. Consumed bytes are dropped lazily, so a
/// burst of small events costs one move, not one per event.
#[derive(Debug, Default)]
struct InBuf {
    bytes: Vec<u8>,
    start: usize,
}

impl InBuf {
    fn extend(&mut self, bytes: &[u8]) {
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(bytes);
    }
}

/// Decodes what a chat server sends, in one dialect, into events. Bytes
/// may arrive split anywhere; only one unfinished event is ever buffered
/// beyond what was read, and every length is checked against 1 MiB first.
#[derive(Debug)]
pub struct ChatEventDecoder {
    kind: DecoderKind,
}

#[derive(Debug)]
enum DecoderKind {
    Line(LineCodec, InBuf),
    Header(HeaderCodec, InBuf),
    Bincode(BincodeServerDecoder),
    WebSocket(WebSocketEvents),
}

/// The websocket dialect's events as a client reads them, after the
/// upgrade: text frames of JSON, and pings it owes a pong.
#[derive(Debug, Default)]
struct WebSocketEvents {
    buf: InBuf,
    /// The last event [`WebSocketEvents::next_event`] lent out, owned:
    /// JSON strings may hold escapes, so they cannot borrow the buffer.
    event: Option<ChatEvent>,
    /// A text message whose fragments are still coming.
    fragments: Fragments,
    /// Frames owed to the server: pongs, the echo of its close.
    replies: Vec<u8>,
    /// The server sent its close frame.
    closed: bool,
}

impl WebSocketEvents {
    fn next_event(&mut self) -> Result<Option<ChatEventRef<'_>>, String> {
        let event = self.next_owned()?;
        self.event = event;
        Ok(self.event.as_ref().map(ChatEvent::as_event_ref))
    }

    /// The next event, owned as JSON's escapes make it, for callers that
    /// keep it (no copy of a copy).
    fn next_owned(&mut self) -> Result<Option<ChatEvent>, String> {
        loop {
            let pending = &self.buf.bytes[self.buf.start..];
            let found = frame::next_from_server(pending, &mut self.fragments, MAX_SERVER_FRAME)
                .map_err(|r| format!("{} (WebSocket status {})", r.reason, r.code))?;
            let Some((found, len)) = found else {
                return Ok(None);
            };
            match found {
                Incoming::Text(text) => {
                    let event = event_of_json(text)?;
                    self.buf.start += len;
                    return Ok(Some(event));
                }
                Incoming::Ping(payload) => websocket::encode_client_frame(
                    &mut self.replies,
                    websocket::Control::Pong,
                    payload,
                    rand::random(),
                ),
                // A fragment is kept until its message is whole.
                Incoming::Pong | Incoming::Fragment => {}
                Incoming::Close(status) => {
                    if !std::mem::replace(&mut self.closed, true) {
                        // RFC 6455 5.5.1: the close is answered with one.
                        let code = status.map_or(close::NORMAL, |(code, _)| code);
                        websocket::encode_client_frame(
                            &mut self.replies,
                            websocket::Control::Close,
                            &code.to_be_bytes(),
                            rand::random(),
                        );
                    }
                }
            }
            self.buf.start += len;
        }
    }
}

/// An event of the websocket dialect, from its JSON.
fn event_of_json(text: &str) -> Result<ChatEvent, String> {
    let json: ServerJson<'_> = serde_json::from_str(text).map_err(|e| {
        format!("a text message is not an event of the websocket dialect ({e}): {text:.80}")
    })?;
    Ok(match json {
        ServerJson::Welcome { addr, online, .. } => ChatEvent::Welcome {
            online,
            addr: Some(addr.into_owned()),
        },
        ServerJson::Message { from, text } => ChatEvent::Message {
            from: from.into_owned(),
            text: text.into_owned(),
        },
        ServerJson::Joined { name, online, .. } => ChatEvent::Joined {
            name: name.into_owned(),
            online,
        },
        ServerJson::Left { name, online, .. } => ChatEvent::Left {
            name: name.into_owned(),
            online,
        },
        ServerJson::Roster { names } => ChatEvent::Roster {
            names: names.into_iter().map(|n| n.into_owned()).collect(),
        },
        ServerJson::Error { code, reason } => ChatEvent::Error {
            code: ErrorCode::from_code(code),
            reason: reason.into_owned(),
        },
        ServerJson::Notice { text } => ChatEvent::Notice {
            text: text.into_owned(),
        },
    })
}

impl ChatEventDecoder {
    pub fn new(dialect: Dialect) -> ChatEventDecoder {
        let kind = match dialect {
            Dialect::Line => DecoderKind::Line(LineCodec::new(MAX_SERVER_FRAME), InBuf::default()),
            Dialect::Header { header_len } => DecoderKind::Header(
                HeaderCodec::new(header_len, MAX_SERVER_FRAME),
                InBuf::default(),
            ),
            Dialect::Bincode => DecoderKind::Bincode(BincodeServerDecoder::new(MAX_SERVER_FRAME)),
            Dialect::WebSocket(_) => DecoderKind::WebSocket(WebSocketEvents::default()),
        };
        ChatEventDecoder { kind }
    }

    /// Buffers bytes read from the server.
    pub fn extend(&mut self, bytes: &[u8]) {
        match &mut self.kind {
            DecoderKind::Line(_, buf) | DecoderKind::Header(_, buf) => buf.extend(bytes),
            DecoderKind::Bincode(d) => d.extend(bytes),
            DecoderKind::WebSocket(w) => w.buf.extend(bytes),
        }
    }

    /// Bytes buffered that are not yet a whole event.
    pub fn pending(&self) -> &[u8] {
        match &self.kind {
            DecoderKind::Line(_, buf) | DecoderKind::Header(_, buf) => &buf.bytes[buf.start..],
            DecoderKind::Bincode(d) => d.pending(),
            DecoderKind::WebSocket(w) => &w.buf.bytes[w.buf.start..],
        }
    }

    /// [`ChatEventDecoder::next_event`], owned.
    pub fn next_owned_event(&mut self) -> Result<Option<ChatEvent>, String> {
        match &mut self.kind {
            DecoderKind::WebSocket(events) => events.next_owned(),
            _ => Ok(self.next_event()?.map(|e| e.to_owned_event())),
        }
    }

    /// Frames the client owes the server for what was decoded (in the
    /// websocket dialect: a pong for each ping, the echo of a close), to be
    /// written before the next wait; empty in the other dialects.
    pub fn take_replies(&mut self) -> Vec<u8> {
        match &mut self.kind {
            DecoderKind::WebSocket(w) => std::mem::take(&mut w.replies),
            _ => Vec::new(),
        }
    }

    /// The next whole event, `Ok(None)` when more bytes are needed. An error
    /// means the stream cannot be decoded any further.
    pub fn next_event(&mut self) -> Result<Option<ChatEventRef<'_>>, String> {
        match &mut self.kind {
            DecoderKind::Line(codec, buf) => {
                let pending = &buf.bytes[buf.start..];
                let Some(frame) = whole(codec.decode(pending))? else {
                    return Ok(None);
                };
                buf.start += frame.len;
                let line = utf8(&pending[frame.payload], "line")?;
                Ok(Some(parse_line(line)))
            }
            DecoderKind::Header(codec, buf) => {
                // An event is two frames, sender then text: take both or none.
                let pending = &buf.bytes[buf.start..];
                let Some(sender) = whole(codec.decode(pending))? else {
                    return Ok(None);
                };
                let rest = &pending[sender.len..];
                let Some(text) = whole(codec.decode(rest))? else {
                    return Ok(None);
                };
                buf.start += sender.len + text.len;
                let from = utf8(&pending[sender.payload], "sender frame")?;
                let text = utf8(&rest[text.payload], "text frame")?;
                Ok(Some(if from == "*" {
                    parse_notice(text)
                } else {
                    ChatEventRef::Message { from, text }
                }))
            }
            DecoderKind::Bincode(decoder) => {
                let msg = decoder.next_msg().map_err(|e| e.to_string())?;
                Ok(msg.map(from_server_msg))
            }
            DecoderKind::WebSocket(events) => events.next_event(),
        }
    }
}

/// `Ok(None)` for a frame that has not fully arrived.
fn whole(
    decoded: Result<crate::codec::Frame, FrameError>,
) -> Result<Option<crate::codec::Frame>, String> {
    match decoded {
        Ok(frame) => Ok(Some(frame)),
        Err(FrameError::Incomplete) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "{what} from the server is not UTF-8 (byte {})",
            e.valid_up_to()
        )
    })
}

fn from_server_msg(msg: ServerMsg<'_>) -> ChatEventRef<'_> {
    match msg {
        ServerMsg::Welcome { addr, online, .. } => ChatEventRef::Welcome {
            online,
            addr: Some(addr),
        },
        ServerMsg::Message { from, text } => ChatEventRef::Message { from, text },
        ServerMsg::Joined { name, online, .. } => ChatEventRef::Joined { name, online },
        ServerMsg::Left { name, online } => ChatEventRef::Left { name, online },
        ServerMsg::Roster { names } => ChatEventRef::Roster { names },
        ServerMsg::Error { code, reason } => ChatEventRef::Error {
            code: ErrorCode::from_code(code),
            reason,
        },
        ServerMsg::Notice { text } => ChatEventRef::Notice { text },
    }
}

/// A line from a line-dialect server: `[name] text` or `* notice`. Anything
/// else (a server of another make) is passed on as a notice.
fn parse_line(line: &str) -> ChatEventRef<'_> {
    if let Some(notice) = line.strip_prefix("* ") {
        return parse_notice(notice);
    }
    // Names may hold "] " too; text more often does, so the first one ends
    // the name.
    if let Some(rest) = line.strip_prefix('[')
        && let Some((from, text)) = rest.split_once("] ")
    {
        return ChatEventRef::Message { from, text };
    }
    ChatEventRef::Notice { text: line }
}

/// A notice's text, as netlabd writes it in the text dialects (see
/// `codec/chat/text.rs`): `welcome NAME, N online; ...`, `NAME joined (N
/// online)`, `NAME left (N online)`, `online (N): a, b`, `error: REASON`.
fn parse_notice(text: &str) -> ChatEventRef<'_> {
    parse_known_notice(text).unwrap_or(ChatEventRef::Notice { text })
}

fn parse_known_notice(text: &str) -> Option<ChatEventRef<'_>> {
    if let Some(reason) = text.strip_prefix("error: ") {
        return Some(ChatEventRef::Error { code: None, reason });
    }
    if let Some(rest) = text.strip_prefix("welcome ") {
        // The tail after " online;" is fixed text, so the last one is it.
        let (head, _) = rest.rsplit_once(" online;")?;
        let (_name, online) = head.rsplit_once(", ")?;
        return Some(ChatEventRef::Welcome {
            online: online.parse().ok()?,
            addr: None,
        });
    }
    if let Some(rest) = text.strip_prefix("online (") {
        let (count, names) = rest.split_once("):")?;
        let _: u32 = count.parse().ok()?;
        let names = names.strip_prefix(' ').unwrap_or(names);
        let names = if names.is_empty() {
            Vec::new()
        } else {
            names.split(", ").collect()
        };
        return Some(ChatEventRef::Roster { names });
    }
    // `NAME joined (N online)`, or `NAME joined on NODE (N online)` for a
    // member of another node of a cluster (the node is not kept).
    let (head, online) = text.strip_suffix(" online)")?.rsplit_once(" (")?;
    let online = online.parse().ok()?;
    for (verb, remote) in [(" joined", " joined on "), (" left", " left on ")] {
        let name = head
            .strip_suffix(verb)
            .or_else(|| head.rsplit_once(remote).map(|(name, _node)| name));
        if let Some(name) = name {
            return Some(if verb == " joined" {
                ChatEventRef::Joined { name, online }
            } else {
                ChatEventRef::Left { name, online }
            });
        }
    }
    None
}

/// Asks the server for a WebSocket at its socket path, as a browser does
/// (RFC 6455 4.1), and checks the answer; returns what came behind it.
fn upgrade(link: &Link, timeout: Duration) -> Result<Vec<u8>, ClientError> {
    let peer = link.peer();
    let context = || format!("upgrade to a WebSocket at {peer}");
    let key = tungstenite::handshake::client::generate_key();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {peer}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        websocket::SOCKET_PATH
    );
    link.write_all(request.as_bytes(), timeout)?;
    let deadline = crate::deadline::after(timeout);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if got.len() > MAX_UPGRADE_ANSWER {
            return Err(ClientError::Protocol {
                context: context(),
                detail: format!("the answer's head is longer than {MAX_UPGRADE_ANSWER} bytes"),
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match link.read_within(&mut buf, left)? {
            Got::Data(n) => got.extend_from_slice(&buf[..n]),
            Got::End => {
                let first = String::from_utf8_lossy(&got);
                let first = first.lines().next().unwrap_or_default();
                return Err(ClientError::Protocol {
                    context: context(),
                    detail: if first.is_empty() {
                        "the server closed the connection without an answer (is this a websocket listener?)".into()
                    } else {
                        format!("the server closed the connection after {first:?}")
                    },
                });
            }
            Got::Nothing => {
                return Err(ClientError::Timeout {
                    context: format!("{}: no answer", context()),
                    waited: timeout,
                    tries: 1,
                });
            }
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_UPGRADE_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let parsed = answer.parse(&got[..end]);
    let refused = |detail: String| ClientError::Protocol {
        context: context(),
        detail,
    };
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refused(format!(
                "the answer has more than {MAX_UPGRADE_HEADERS} header fields"
            )));
        }
        _ => {
            let first = String::from_utf8_lossy(&got[..end]);
            return Err(refused(format!(
                "the answer is not HTTP: {:?}",
                first.lines().next().unwrap_or_default()
            )));
        }
    }
    if answer.code != Some(101) {
        // netlabd says why in the body of its refusals.
        let body = String::from_utf8_lossy(&got[end..]);
        let why = body
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        return Err(refused(format!(
            "refused: {} {}{}{}",
            answer.code.unwrap_or_default(),
            answer.reason.unwrap_or_default(),
            if why.is_empty() { "" } else { ": " },
            why.trim()
        )));
    }
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    // RFC 6455 4.1: the client fails the connection unless the answer
    // upgrades to websocket, answers its key, and agrees to no extension
    // or subprotocol it did not ask for.
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| {
            v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
        })
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(refused(
            "the answer does not upgrade the connection to websocket (it needs \"Upgrade: websocket\" and \"Connection: Upgrade\")".into(),
        ));
    }
    if header("sec-websocket-accept") != Some(websocket::accept_key(&key).as_bytes()) {
        return Err(refused(
            "the server's Sec-WebSocket-Accept does not answer this client's key".into(),
        ));
    }
    for unasked in ["sec-websocket-extensions", "sec-websocket-protocol"] {
        if let Some(value) = header(unasked) {
            return Err(refused(format!(
                "the server agreed to {unasked}: {:?}, which this client did not ask for",
                String::from_utf8_lossy(value)
            )));
        }
    }
    Ok(got.split_off(end))
}

/// The sending half of a chat connection.
#[derive(Debug)]
pub struct ChatSender {
    link: Link,
    codec: ChatCodec,
    timeout: Duration,
    out: Vec<u8>,
}

impl ChatSender {
    /// Sends a message to everyone else in the room. In the text dialects a
    /// text that reads `/who` or `/quit` is that command, and in the line
    /// dialect a line break becomes a space.
    pub fn send(&mut self, text: &str) -> Result<(), ClientError> {
        self.write_msg(ClientMsg::Say { text })
    }

    /// Asks who is online; the answer arrives as [`ChatEvent::Roster`].
    pub fn who(&mut self) -> Result<(), ClientError> {
        self.write_msg(ClientMsg::Who)
    }

    /// Says goodbye and stops writing; the server then closes. In the
    /// websocket dialect a close frame follows the goodbye (RFC 6455 7.1.2).
    pub fn bye(&mut self) -> Result<(), ClientError> {
        self.encode(ClientMsg::Bye);
        if matches!(self.codec.dialect, Dialect::WebSocket(_)) {
            websocket::encode_client_frame(
                &mut self.out,
                websocket::Control::Close,
                &close::NORMAL.to_be_bytes(),
                rand::random(),
            );
        }
        self.link.write_all(&self.out, self.timeout)?;
        // The server may already have closed (it does after an error).
        let _ = self.link.finish_writing(self.timeout);
        Ok(())
    }

    fn write_msg(&mut self, msg: ClientMsg<'_>) -> Result<(), ClientError> {
        self.encode(msg);
        self.link.write_all(&self.out, self.timeout)
    }

    /// `msg` alone in `out`, as this dialect sends it.
    fn encode(&mut self, msg: ClientMsg<'_>) {
        self.out.clear();
        // A fresh mask per frame: the text is the caller's (RFC 6455 5.3).
        self.codec
            .encode_client_msg_masked(msg, rand::random(), &mut self.out);
    }
}

/// The receiving half of a chat connection.
#[derive(Debug)]
pub struct ChatReceiver {
    link: Link,
    decoder: ChatEventDecoder,
    buf: Vec<u8>,
    closed: bool,
}

impl ChatReceiver {
    /// The next event, waiting at most `timeout` for one; `Ok(None)` when
    /// none came in time. A zero timeout only takes what has arrived. Once
    /// the server has closed and every event before that was returned, the
    /// error is [`ClientError::Closed`].
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<ChatEvent>, ClientError> {
        let deadline = crate::deadline::after(timeout);
        if !self.closed {
            // What an earlier pong left when the socket was full. A broken
            // connection shows as the end of what is read.
            let _ = self.link.write_pending();
        }
        loop {
            if let Some(event) = self.decoded()? {
                return Ok(Some(event));
            }
            if self.closed {
                return Err(ClientError::Closed {
                    context: format!("chat with {}", self.link.peer()),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.link.read_within(&mut self.buf, left)? {
                Got::Data(n) => self.decoder.extend(&self.buf[..n]),
                Got::End => self.closed = true,
                Got::Nothing => return Ok(None),
            }
        }
    }

    fn decoded(&mut self) -> Result<Option<ChatEvent>, ClientError> {
        let event = match self.decoder.next_owned_event() {
            Ok(event) => event,
            Err(detail) => {
                return Err(ClientError::Protocol {
                    context: format!("read from {}", self.link.peer()),
                    detail,
                });
            }
        };
        let replies = self.decoder.take_replies();
        if !replies.is_empty() && !self.closed {
            // Without waiting, whoever else is writing: what the socket
            // does not take now goes before the next bytes written. The
            // server may be gone already: its close comes next.
            let _ = self.link.write_now(&replies);
        }
        Ok(event)
    }
}

/// A client in a chat room, named and welcomed.
#[derive(Debug)]
pub struct ChatClient {
    sender: ChatSender,
    receiver: ChatReceiver,
    name: String,
    dialect: Dialect,
    online: u32,
    addr: Option<String>,
}

impl ChatClient {
    /// Connects to the chat server at `addr`, asks for `name`, and waits for
    /// the welcome. Each step (connect, write, the wait for the welcome)
    /// gives up after `timeout`. A name the server refuses (taken, invalid,
    /// room full) is a [`ClientError::Protocol`] whose detail is the
    /// server's reason; a name that cannot be valid is refused before
    /// connecting, as [`ClientError::Invalid`].
    pub fn connect(
        addr: SocketAddr,
        name: &str,
        dialect: Dialect,
        timeout: Duration,
    ) -> Result<ChatClient, ClientError> {
        ChatClient::connect_with(addr, name, dialect, &ClientOptions::new(timeout))
    }

    /// [`ChatClient::connect`] with `options`: over TLS when they say so.
    pub fn connect_with(
        addr: SocketAddr,
        name: &str,
        dialect: Dialect,
        options: &ClientOptions,
    ) -> Result<ChatClient, ClientError> {
        let timeout = options.timeout;
        check_timeout(timeout)?;
        check_dialect(&dialect)?;
        validate_name(name)
            .map_err(|e| ClientError::invalid(format!("chat name {name:?}: {e}")))?;
        let link = Link::open(addr, options)?;
        let mut client = ChatClient {
            sender: ChatSender {
                link: link.clone(),
                codec: client_codec(dialect.clone()),
                timeout,
                out: Vec::new(),
            },
            receiver: ChatReceiver {
                link,
                decoder: ChatEventDecoder::new(dialect.clone()),
                buf: vec![0; READ_CHUNK],
                closed: false,
            },
            name: name.to_owned(),
            dialect,
            online: 0,
            addr: None,
        };
        if let Dialect::WebSocket(_) = client.dialect {
            let behind = upgrade(&client.receiver.link, timeout)?;
            client.receiver.decoder.extend(&behind);
        }
        client.sender.write_msg(ClientMsg::Hello { name })?;
        client.await_welcome(timeout)?;
        Ok(client)
    }

    /// Before a client is named it receives nothing, so the first event is
    /// the welcome or the reason it was refused.
    fn await_welcome(&mut self, timeout: Duration) -> Result<(), ClientError> {
        let peer = self.receiver.link.peer();
        let context = || format!("join the chat at {peer} as {:?}", self.name);
        let welcome = self.receiver.recv(timeout);
        // A plain client at a TLS listener gets an alert, then the close:
        // no frame of any dialect.
        if matches!(
            welcome,
            Err(ClientError::Closed { .. } | ClientError::Protocol { .. })
        ) && !self.receiver.link.is_tls()
            && error::is_tls_alert(self.receiver.decoder.pending())
        {
            return Err(error::tls_listener(context()));
        }
        match welcome {
            Ok(Some(ChatEvent::Welcome { online, addr })) => {
                self.online = online;
                self.addr = addr;
                Ok(())
            }
            Ok(Some(ChatEvent::Error { reason, .. })) => Err(ClientError::Protocol {
                context: context(),
                detail: format!("refused: {reason}"),
            }),
            Ok(Some(other)) => Err(ClientError::Protocol {
                context: context(),
                detail: format!("expected a welcome, got {other:?}"),
            }),
            Ok(None) => Err(ClientError::Timeout {
                context: format!("{}: no welcome", context()),
                waited: timeout,
                tries: 1,
            }),
            Err(ClientError::Closed { .. }) => Err(ClientError::Protocol {
                context: context(),
                detail: "the server closed the connection without a welcome".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// Sends a message to everyone else (see [`ChatSender::send`]).
    pub fn send(&mut self, text: &str) -> Result<(), ClientError> {
        self.sender.send(text)
    }

    /// Asks who is online; the answer arrives as [`ChatEvent::Roster`].
    pub fn who(&mut self) -> Result<(), ClientError> {
        self.sender.who()
    }

    /// The next event within `timeout` (see [`ChatReceiver::recv`]).
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<ChatEvent>, ClientError> {
        self.receiver.recv(timeout)
    }

    /// Leaves: says goodbye, then waits briefly for the server to close, so
    /// that the goodbye is read rather than lost to a reset. Events that
    /// arrive meanwhile are dropped.
    pub fn quit(mut self) -> Result<(), ClientError> {
        self.sender.bye()?;
        let deadline = Instant::now() + QUIT_LINGER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match self.receiver.recv(left) {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Ok(()),
            }
        }
    }

    /// Splits the client so that one thread can send while another waits
    /// for events.
    pub fn split(self) -> (ChatSender, ChatReceiver) {
        (self.sender, self.receiver)
    }

    /// The name the room knows this client by.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect.clone()
    }

    /// How many were online when this client was welcomed, itself included.
    pub fn online_at_welcome(&self) -> u32 {
        self.online
    }

    /// This client's address as the server sees it: the server's word in
    /// the bincode and websocket dialects, the local socket's address
    /// otherwise.
    pub fn seen_as(&self) -> Option<IpAddr> {
        self.addr
            .as_deref()
            .and_then(|a| a.parse::<SocketAddr>().ok().map(|a| a.ip()))
            .or_else(|| self.sender.link.socket().local_addr().ok().map(|a| a.ip()))
    }

    pub fn peer(&self) -> SocketAddr {
        self.sender.link.peer()
    }

    /// The socket and the decoder with whatever it has buffered, for callers
    /// that drive many clients on their own event loop (the load generator);
    /// a plain connection only: a TLS session cannot be taken apart.
    pub fn into_parts(self) -> Result<(TcpStream, ChatEventDecoder), ClientError> {
        if self.sender.link.is_tls() {
            return Err(ClientError::invalid(
                "a TLS chat client cannot be taken apart into its socket",
            ));
        }
        let socket = self.sender.link.socket().try_clone().map_err(|e| {
            ClientError::from_io(
                format!("copy the socket to {}", self.peer()),
                e,
                self.sender.timeout,
            )
        })?;
        Ok((socket, self.receiver.decoder))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chat::Event;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    fn events() -> Vec<Event> {
        vec![
            Event::Welcome {
                id: 7,
                name: s("Dian"),
                addr: s("127.0.0.1:5000"),
                online: 2,
            },
            Event::Message {
                from: s("Rafi"),
                text: s("Hello World, 3 online)"),
            },
            Event::Message {
                from: s("a] b"),
                text: s(""),
            },
            Event::Joined {
                name: s("Ayu joined (x"),
                addr: s("10.0.0.9:1"),
                online: 3,
                node: None,
            },
            Event::Left {
                name: s("Ayu"),
                online: 2,
                node: None,
            },
            // Members of another node of a cluster.
            Event::Joined {
                name: s("Bo left on x"),
                addr: s("10.0.0.9:2 on node (b)"),
                online: 3,
                node: Some(s("node (b)")),
            },
            Event::Left {
                name: s("Bo"),
                online: 2,
                node: Some(s("node-b")),
            },
            Event::Roster {
                names: vec![s("Dian"), s("Rafi")],
            },
            Event::Roster { names: vec![] },
            Event::error(ErrorCode::NameTaken, "name is taken"),
            Event::Notice {
                text: s("the link to the cluster is down"),
            },
        ]
    }

    fn expected(dialect: Dialect) -> Vec<ChatEvent> {
        // The dialects whose events are structured, not text.
        let binc = matches!(dialect, Dialect::Bincode | Dialect::WebSocket(_));
        vec![
            ChatEvent::Welcome {
                online: 2,
                addr: binc.then(|| "127.0.0.1:5000".to_owned()),
            },
            ChatEvent::Message {
                from: "Rafi".into(),
                text: "Hello World, 3 online)".into(),
            },
            // The line dialect cannot tell where such a name ends.
            if dialect == Dialect::Line {
                ChatEvent::Message {
                    from: "a".into(),
                    text: "b] ".into(),
                }
            } else {
                ChatEvent::Message {
                    from: "a] b".into(),
                    text: "".into(),
                }
            },
            ChatEvent::Joined {
                name: "Ayu joined (x".into(),
                online: 3,
            },
            ChatEvent::Left {
                name: "Ayu".into(),
                online: 2,
            },
            ChatEvent::Joined {
                name: "Bo left on x".into(),
                online: 3,
            },
            ChatEvent::Left {
                name: "Bo".into(),
                online: 2,
            },
            ChatEvent::Roster {
                names: vec!["Dian".into(), "Rafi".into()],
            },
            ChatEvent::Roster { names: vec![] },
            ChatEvent::Error {
                code: binc.then_some(ErrorCode::NameTaken),
                reason: "name is taken".into(),
            },
            ChatEvent::Notice {
                text: "the link to the cluster is down".into(),
            },
        ]
    }

    fn server_bytes(dialect: Dialect) -> Vec<u8> {
        let max_frame = match dialect {
            Dialect::Header { .. } => 1000,
            _ => 1 << 16,
        };
        let codec = ChatCodec::new(dialect, max_frame);
        let mut out = Vec::new();
        for event in events() {
            codec.encode(&event, &mut out);
        }
        out
    }

    fn decode(dialect: Dialect, pieces: &[&[u8]]) -> Vec<ChatEvent> {
        let mut decoder = ChatEventDecoder::new(dialect);
        let mut got = Vec::new();
        for piece in pieces {
            decoder.extend(piece);
            while let Some(event) = decoder.next_event().unwrap() {
                got.push(event.to_owned_event());
            }
        }
        assert!(decoder.pending().is_empty());
        got
    }

    /// The answer to the upgrade is checked as RFC 6455 4.1 asks: it must
    /// upgrade to websocket, answer the key, and agree to nothing the client
    /// did not ask for; bytes behind a good answer are kept.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets, which Miri does not run")]
    fn upgrade_answers_are_checked() {
        use std::io::{Read, Write};
        // (answer's header lines after the status, given the right accept
        // key; what the error must say, or None for success)
        type Headers = fn(&str) -> String;
        let cases: [(Headers, Option<&str>); 5] = [
            (
                |k| {
                    format!(
                        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {k}\r\n"
                    )
                },
                None,
            ),
            (
                |_| {
                    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n"
                        .into()
                },
                Some("Sec-WebSocket-Accept does not answer"),
            ),
            (
                |k| format!("Connection: Upgrade\r\nSec-WebSocket-Accept: {k}\r\n"),
                Some("does not upgrade the connection to websocket"),
            ),
            (
                |k| {
                    format!(
                        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {k}\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
                    )
                },
                Some("sec-websocket-extensions"),
            ),
            (
                |k| {
                    format!(
                        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {k}\r\n{}",
                        "X-Pad: 1\r\n".repeat(40)
                    )
                },
                Some("more than 32 header fields"),
            ),
        ];
        for (headers, expected) in cases {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let server = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0);
                    request.extend_from_slice(&buf[..n]);
                }
                let request = String::from_utf8(request).unwrap();
                let key = request
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap();
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\n{}\r\nbehind",
                    headers(&websocket::accept_key(key))
                );
                s.write_all(answer.as_bytes()).unwrap();
            });
            let link = Link::open(addr, &ClientOptions::new(Duration::from_secs(5))).unwrap();
            let got = upgrade(&link, Duration::from_secs(5));
            server.join().unwrap();
            match expected {
                None => {
                    let mut behind = got.unwrap();
                    // "behind" may still be on its way.
                    let mut buf = [0u8; 16];
                    while behind.len() < 6 {
                        let n = link.read_some(&mut buf, Duration::from_secs(5)).unwrap();
                        assert!(n > 0);
                        behind.extend_from_slice(&buf[..n]);
                    }
                    assert_eq!(behind, b"behind");
                }
                Some(words) => {
                    let err = got.unwrap_err().to_string();
                    assert!(err.contains(words), "{err:?} does not say {words:?}");
                }
            }
        }
    }

    /// Each websocket frame the sender writes has a mask of its own (RFC
    /// 6455 5.3: the text is the caller's), and a goodbye is followed by a
    /// close frame (7.1.2) before the end of the stream.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets, which Miri does not run")]
    fn websocket_frames_have_fresh_masks_and_bye_closes() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let link = Link::open(addr, &ClientOptions::new(Duration::from_secs(5))).unwrap();
        let (mut server_side, _) = listener.accept().unwrap();
        let dialect = Dialect::named("websocket", 0).unwrap();
        let mut sender = ChatSender {
            link,
            codec: client_codec(dialect),
            timeout: Duration::from_secs(5),
            out: Vec::new(),
        };
        for _ in 0..8 {
            sender.send("same text").unwrap();
        }
        sender.bye().unwrap();
        let mut stream = Vec::new();
        server_side.read_to_end(&mut stream).unwrap();
        let sent = client_frames(&stream);
        let masks: std::collections::HashSet<_> = sent.iter().map(|f| f.1).collect();
        let frames: Vec<_> = sent
            .into_iter()
            .map(|(first, _, payload)| (first, payload))
            .collect();
        assert_eq!(frames.len(), 10, "{frames:?}");
        assert!(masks.len() >= 9, "masks repeat: {masks:?}");
        let text = br#"{"type":"say","text":"same text"}"#;
        assert!(
            frames[..8].iter().all(|f| *f == (0x81, text.to_vec())),
            "{frames:?}"
        );
        assert_eq!(frames[8], (0x81, br#"{"type":"bye"}"#.to_vec()));
        assert_eq!(frames[9], (0x88, close::NORMAL.to_be_bytes().to_vec()));
    }

    /// The short frames (payloads under 126 bytes) a client wrote into
    /// `stream`: FIN and opcode, the mask, the payload unmasked. Each must
    /// be masked, as a client's frames are.
    fn client_frames(mut rest: &[u8]) -> Vec<(u8, [u8; 4], Vec<u8>)> {
        let mut frames = Vec::new();
        while !rest.is_empty() {
            let len = usize::from(rest[1] & 0x7f);
            assert!(len < 126 && rest[1] & 0x80 != 0, "{rest:?}");
            let mask = [rest[2], rest[3], rest[4], rest[5]];
            let mut payload = rest[6..6 + len].to_vec();
            frame::apply_mask(&mut payload, mask);
            frames.push((rest[0], mask, payload));
            rest = &rest[6 + len..];
        }
        frames
    }

    /// Polling for events (a zero timeout) leaves the socket blocking: the
    /// sender shares it, and a send meeting a full buffer on a non-blocking
    /// socket would fail halfway through a frame.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets, which Miri does not run")]
    fn a_zero_timeout_recv_leaves_the_shared_socket_blocking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let link = Link::open(addr, &ClientOptions::new(Duration::from_secs(5))).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        let stream = link.socket().try_clone().unwrap();
        let mut receiver = ChatReceiver {
            link,
            decoder: ChatEventDecoder::new(Dialect::Line),
            buf: vec![0; READ_CHUNK],
            closed: false,
        };
        assert!(matches!(receiver.recv(Duration::ZERO), Ok(None)));
        // SAFETY: F_GETFL on a descriptor the test owns.
        let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&stream), libc::F_GETFL) };
        assert_eq!(
            flags & libc::O_NONBLOCK,
            0,
            "the socket was left non-blocking"
        );
    }

    #[test]
    fn every_dialect_decodes_what_the_server_encodes_split_anywhere() {
        for dialect in [
            Dialect::Line,
            Dialect::Header { header_len: 10 },
            Dialect::Header { header_len: 100 },
            Dialect::Bincode,
            Dialect::named("websocket", 0).unwrap(),
        ] {
            let stream = server_bytes(dialect.clone());
            let want = expected(dialect.clone());
            assert_eq!(decode(dialect.clone(), &[&stream]), want, "{dialect:?}");
            for cut in 0..=stream.len() {
                let (a, b) = stream.split_at(cut);
                assert_eq!(
                    decode(dialect.clone(), &[a, b]),
                    want,
                    "{dialect:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn unknown_notices_and_lines_pass_through() {
        let got = decode(
            Dialect::Line,
            &[b"* server restarts soon\nplain line\n* 5 joined (many online)\n"],
        );
        assert_eq!(
            got,
            [
                ChatEvent::Notice {
                    text: "server restarts soon".into()
                },
                ChatEvent::Notice {
                    text: "plain line".into()
                },
                ChatEvent::Notice {
                    text: "5 joined (many online)".into()
                },
            ]
        );
    }

    #[test]
    fn undecodable_streams_are_errors() {
        let mut decoder = ChatEventDecoder::new(Dialect::Header { header_len: 10 });
        decoder.extend(b"abc       xyz");
        assert!(decoder.next_event().is_err());
        let mut decoder = ChatEventDecoder::new(Dialect::Line);
        decoder.extend(b"[a] \xff\n");
        assert!(decoder.next_event().unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn dialects_parse_and_display() {
        assert_eq!(Dialect::Header { header_len: 100 }.to_string(), "header");
    }

    #[test]
    fn events_display_as_the_line_dialect_shows_them() {
        let joined = ChatEvent::Joined {
            name: "Ayu".into(),
            online: 3,
        };
        assert_eq!(joined.to_string(), "* Ayu joined (3 online)");
        assert_eq!(joined.kind(), "joined");
    }

    #[test]
    fn bad_arguments_are_refused_before_connecting() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let t = Duration::from_secs(1);
        let e = ChatClient::connect(addr, "a\nb", Dialect::Line, t).unwrap_err();
        assert_eq!(e.kind(), crate::client::ErrorKind::Invalid, "{e}");
        let e = ChatClient::connect(addr, "", Dialect::Line, t).unwrap_err();
        assert!(e.to_string().contains("name is empty"), "{e}");
        let e = ChatClient::connect(addr, "x", Dialect::Header { header_len: 0 }, t).unwrap_err();
        assert_eq!(e.kind(), crate::client::ErrorKind::Invalid, "{e}");
        let e =
            ChatClient::connect(addr, "x", Dialect::Header { header_len: 1025 }, t).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid argument: header_len 1025 is not between 1 and 1024"
        );
        let e = ChatClient::connect(addr, "x", Dialect::Line, Duration::ZERO).unwrap_err();
        assert_eq!(e.kind(), crate::client::ErrorKind::Invalid, "{e}");
    }

    #[test]
    fn header_widths_up_to_the_configurable_maximum_are_accepted() {
        // The seed's 100, and the widest a listener can be configured with.
        for header_len in [1, 10, 20, 21, 100, HeaderCodec::MAX_HEADER_LEN] {
            let dialect = Dialect::Header { header_len };
            assert!(check_dialect(&dialect).is_ok(), "{header_len}");
            // What the client sends is framed in that width.
            let mut out = Vec::new();
            client_codec(dialect).encode_client_msg(ClientMsg::Say { text: "hi" }, &mut out);
            assert_eq!(out.len(), header_len + 2, "{header_len}");
            assert_eq!(&out[header_len..], b"hi", "{header_len}");
            assert!(out[..header_len].starts_with(b"2"), "{header_len}");
            assert!(
                out[1..header_len].iter().all(|&b| b == b' '),
                "{header_len}"
            );
        }
        for header_len in [0, HeaderCodec::MAX_HEADER_LEN + 1, usize::MAX] {
            let err = check_dialect(&Dialect::Header { header_len }).unwrap_err();
            assert_eq!(err.kind(), crate::client::ErrorKind::Invalid, "{err}");
        }
        assert!(check_dialect(&Dialect::named("websocket", 0).unwrap()).is_ok());
    }

    /// A ping is owed a pong with its payload, and a close the echo of its
    /// status, both masked as a client's frames must be; neither is an
    /// event. JSON escapes come out unescaped.
    #[test]
    fn websocket_pings_and_closes_are_answered_and_escapes_read() {
        use crate::codec::chat::websocket::Control;
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        let mut stream = Vec::new();
        frame::push(&mut stream, OpCode::Control(Control::Ping), b"netlab");
        frame::push(
            &mut stream,
            OpCode::Data(Data::Text),
            br#"{"type":"message","from":"R\"afi","text":"a\nb \u00e9"}"#,
        );
        frame::push_close(&mut stream, 4001, "name is taken");
        let mut decoder = ChatEventDecoder::new(Dialect::named("websocket", 0).unwrap());
        decoder.extend(&stream);
        let event = decoder.next_event().unwrap().map(|e| e.to_owned_event());
        assert_eq!(
            event,
            Some(ChatEvent::Message {
                from: "R\"afi".into(),
                text: "a\nb \u{e9}".into()
            })
        );
        let unmasked = |stream: Vec<u8>| -> (u8, Vec<u8>) {
            let [(first, _, payload)] = <[_; 1]>::try_from(client_frames(&stream)).unwrap();
            (first, payload)
        };
        assert_eq!(unmasked(decoder.take_replies()), (0x8a, b"netlab".to_vec()));
        assert_eq!(decoder.next_event().unwrap(), None);
        assert_eq!(
            unmasked(decoder.take_replies()),
            (0x88, 4001u16.to_be_bytes().to_vec())
        );
        assert!(decoder.pending().is_empty());
        assert!(decoder.take_replies().is_empty());
    }

    /// A text message in fragments (a proxy may split what netlabd sends
    /// whole) is put together, with a ping answered between them.
    #[test]
    fn websocket_fragments_make_one_event() {
        use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
        let json = br#"{"type":"message","from":"Rafi","text":"in three parts"}"#;
        let mut stream = Vec::new();
        let parts = [&json[..10], &json[10..30], &json[30..]];
        for (i, part) in parts.iter().enumerate() {
            let opcode = if i == 0 { Data::Text } else { Data::Continue };
            let at = stream.len();
            frame::push(&mut stream, OpCode::Data(opcode), part);
            if i < parts.len() - 1 {
                stream[at] &= 0x7f; // not the last: FIN off
                frame::push(&mut stream, OpCode::Control(Control::Ping), b"p");
            }
        }
        let mut decoder = ChatEventDecoder::new(Dialect::named("websocket", 0).unwrap());
        for byte in &stream {
            decoder.extend(std::slice::from_ref(byte));
            if let Some(event) = decoder.next_event().unwrap().map(|e| e.to_owned_event()) {
                assert_eq!(
                    event,
                    ChatEvent::Message {
                        from: "Rafi".into(),
                        text: "in three parts".into()
                    }
                );
                assert_eq!(decoder.take_replies().len(), 2 * (6 + 1), "two pongs");
                return;
            }
        }
        panic!("no event from {stream:?}");
    }

    /// What a client cannot take from a server is an error that says what.
    #[test]
    fn bad_websocket_frames_are_errors_in_words() {
        use tungstenite::protocol::frame::coding::{Data, OpCode};
        let websocket = || ChatEventDecoder::new(Dialect::named("websocket", 0).unwrap());
        let cases: [(Vec<u8>, &str); 6] = [
            (
                {
                    let mut b = Vec::new();
                    frame::push(&mut b, OpCode::Data(Data::Text), b"{\"type\":\"dance\"}");
                    b
                },
                "not an event of the websocket dialect",
            ),
            (
                {
                    let mut b = Vec::new();
                    frame::push(&mut b, OpCode::Data(Data::Binary), b"\x00");
                    b
                },
                "binary message",
            ),
            (
                {
                    let mut b = Vec::new();
                    frame::push_masked(&mut b, OpCode::Data(Data::Text), true, b"{}", [1, 2, 3, 4]);
                    b
                },
                "must not be masked",
            ),
            (
                {
                    let mut b = Vec::new();
                    frame::push(&mut b, OpCode::Data(Data::Continue), b"{}");
                    b
                },
                "a continuation frame with no message begun",
            ),
            (
                {
                    // Two fragments, each half the maximum and a byte.
                    let mut b = Vec::new();
                    let half = vec![b' '; MAX_SERVER_FRAME / 2 + 1];
                    frame::push(&mut b, OpCode::Data(Data::Text), &half);
                    b[0] &= 0x7f;
                    frame::push(&mut b, OpCode::Data(Data::Continue), &half);
                    b
                },
                "longer than the maximum",
            ),
            (
                vec![0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0],
                "longer than the maximum",
            ),
        ];
        for (bytes, want) in cases {
            let mut decoder = websocket();
            decoder.extend(&bytes);
            let err = decoder.next_event().unwrap_err();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
    }
}
