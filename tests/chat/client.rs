//! A chat client for the tests, in any of the three dialects: what it sends
//! is built with the library's client encoders, what it receives is parsed
//! here, independently of the server's encoders (the text dialects' notices
//! are parsed back from their documented wording; bincode frames go through
//! `BincodeServerDecoder`). Every read is bounded by `IO_TIMEOUT`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlab::chat::{ClientMsg, ErrorCode, Event};
use netlab::codec::chat::{BincodeServerDecoder, ChatCodec, ServerMsg};
use netlab::server::RunningServer;

use crate::common::*;

/// The longest frame the tests accept from a server (a roster of a big room).
const CLIENT_MAX_FRAME: usize = 1 << 20;

pub use netlab::chat::Dialect;

/// What the tests need of a dialect.
pub trait DialectExt {
    /// The codec a client of this dialect encodes its messages with.
    fn codec(&self) -> ChatCodec;
    /// The `listen` entry of a loopback listener of this dialect.
    fn listen(&self) -> String;
}

impl DialectExt for Dialect {
    fn codec(&self) -> ChatCodec {
        ChatCodec::new(self.clone(), CLIENT_MAX_FRAME)
    }

    fn listen(&self) -> String {
        match self {
            Dialect::Line => r#"{ addr = "127.0.0.1:0", dialect = "line" }"#.to_owned(),
            Dialect::Header { header_len: h } => {
                format!(r#"{{ addr = "127.0.0.1:0", dialect = "header", header_len = {h} }}"#)
            }
            Dialect::Bincode => r#"{ addr = "127.0.0.1:0", dialect = "bincode" }"#.to_owned(),
            Dialect::WebSocket(_) => {
                r#"{ addr = "127.0.0.1:0", dialect = "websocket" }"#.to_owned()
            }
        }
    }
}

/// This module's clients speak the byte-stream dialects; WebSocket clients
/// are tungstenite's (`websocket.rs`).
fn not_here() -> ! {
    panic!("the websocket dialect is tested with tungstenite's client, in websocket.rs")
}

/// A chat server with one listener per entry of `dialects` (in that order),
/// and `extra` keys.
pub fn chat_server(dialects: &[Dialect], extra: &str) -> RunningServer {
    let listen: Vec<String> = dialects.iter().map(|d| d.listen()).collect();
    start(&format!(
        "name = \"chat\"\nservice = \"chat\"\nlisten = [{}]\n{extra}\n",
        listen.join(", ")
    ))
}

/// `f"{len(payload):<{width}}".encode() + payload`: one frame of seed 004,
/// written the seed's way, not with the code under test.
pub fn seed_frame(width: usize, payload: &str) -> Vec<u8> {
    let mut frame = format!("{:<width$}", payload.len()).into_bytes();
    assert_eq!(
        frame.len(),
        width,
        "{payload:?} does not fit a {width}-byte header"
    );
    frame.extend_from_slice(payload.as_bytes());
    frame
}

/// What the seed's server sends for a message: the sender's name frame, then
/// the text frame.
pub fn seed_pair(width: usize, from: &str, text: &str) -> Vec<u8> {
    let mut out = seed_frame(width, from);
    out.extend(seed_frame(width, text));
    out
}

/// The bytes of an error in `dialect`: written out by hand for the text
/// dialects; for bincode, the library's encoding (pinned by its golden tests).
pub fn error_bytes(dialect: Dialect, code: ErrorCode, reason: &str) -> Vec<u8> {
    match dialect {
        Dialect::Line => format!("* error: {reason}\n").into_bytes(),
        Dialect::Header { header_len: h } => seed_pair(h, "*", &format!("error: {reason}")),
        Dialect::Bincode => {
            let mut out = Vec::new();
            dialect
                .codec()
                .encode(&Event::error(code, reason.to_owned()), &mut out);
            out
        }
        Dialect::WebSocket(_) => not_here(),
    }
}

/// What a client was told, whatever its dialect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Welcome {
        online: u32,
    },
    Message {
        from: String,
        text: String,
    },
    Joined {
        name: String,
        online: u32,
    },
    Left {
        name: String,
        online: u32,
    },
    Roster(Vec<String>),
    /// `code` only in bincode; the text dialects carry only the reason.
    Error {
        code: Option<u16>,
        reason: String,
    },
    /// News about the room itself (a cluster's link).
    Notice(String),
}

impl Got {
    pub fn msg(from: &str, text: &str) -> Got {
        Got::Message {
            from: from.into(),
            text: text.into(),
        }
    }
    pub fn joined(name: &str, online: u32) -> Got {
        Got::Joined {
            name: name.into(),
            online,
        }
    }
    pub fn left(name: &str, online: u32) -> Got {
        Got::Left {
            name: name.into(),
            online,
        }
    }
}

/// Parses a notice's text (without the line dialect's `* `) as documented
/// in `codec::chat::line`. `me` is the name a welcome must greet.
fn parse_notice(text: &str, me: &str) -> Got {
    const WELCOME_TAIL: &str = " online; /who lists them, /quit leaves";
    let online = |n: &str| -> u32 {
        n.parse()
            .unwrap_or_else(|_| panic!("bad count {n:?} in notice {text:?}"))
    };
    if let Some(reason) = text.strip_prefix("error: ") {
        return Got::Error {
            code: None,
            reason: reason.to_owned(),
        };
    }
    if let Some(rest) = text.strip_prefix("welcome ")
        && let Some(rest) = rest.strip_suffix(WELCOME_TAIL)
        && let Some((name, n)) = rest.rsplit_once(", ")
    {
        assert_eq!(name, me, "welcomed by the wrong name: {text:?}");
        return Got::Welcome { online: online(n) };
    }
    if let Some(rest) = text.strip_prefix("online (")
        && let Some((n, names)) = rest.split_once("):")
    {
        let names: Vec<String> = if names.is_empty() {
            Vec::new()
        } else {
            let names = names
                .strip_prefix(' ')
                .unwrap_or_else(|| panic!("roster without a blank: {text:?}"));
            names.split(", ").map(str::to_owned).collect()
        };
        assert_eq!(names.len(), online(n) as usize, "roster count: {text:?}");
        return Got::Roster(names);
    }
    if let Some(rest) = text.strip_suffix(" online)") {
        if let Some((name, n)) = rest.rsplit_once(" joined (") {
            return Got::joined(name, online(n));
        }
        if let Some((name, n)) = rest.rsplit_once(" left (") {
            return Got::left(name, online(n));
        }
    }
    panic!("not a notice of the chat: {text:?}");
}

/// One test client.
pub struct Client {
    pub s: TcpStream,
    pub dialect: Dialect,
    pub name: String,
    /// Bytes read but not yet parsed (line, header).
    buf: Vec<u8>,
    bin: BincodeServerDecoder,
    /// The `addr` of the last bincode `Welcome` or `Joined`.
    pub last_addr: Option<String>,
    /// The `online` count of its welcome.
    pub welcomed_online: u32,
    /// Events received so far, for failure messages.
    pub received: usize,
}

impl Client {
    /// Connects to `addr`, a listener of `dialect`; sends nothing.
    pub fn connect(addr: SocketAddr, dialect: Dialect) -> Client {
        Client::from_stream(connect(addr), dialect)
    }

    pub fn from_stream(s: TcpStream, dialect: Dialect) -> Client {
        // As interactive chat clients do: no Nagle delay on small writes.
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            s,
            dialect,
            name: String::new(),
            buf: Vec::new(),
            bin: BincodeServerDecoder::new(CLIENT_MAX_FRAME),
            last_addr: None,
            welcomed_online: 0,
            received: 0,
        }
    }

    /// Connects, sends `name` and expects the welcome.
    pub fn join(addr: SocketAddr, dialect: Dialect, name: &str) -> Client {
        let mut c = Client::connect(addr, dialect.clone());
        c.hello(name);
        match c.recv() {
            Got::Welcome { online } => c.welcomed_online = online,
            other => panic!("{name} ({dialect:?}): expected a welcome, got {other:?}"),
        }
        c
    }

    /// Sends its name, without waiting for an answer.
    pub fn hello(&mut self, name: &str) {
        self.name = name.to_owned();
        self.send(ClientMsg::Hello { name });
    }

    pub fn send(&mut self, msg: ClientMsg<'_>) {
        let mut bytes = Vec::new();
        self.dialect.codec().encode_client_msg(msg, &mut bytes);
        self.send_raw(&bytes);
    }

    pub fn say(&mut self, text: &str) {
        self.send(ClientMsg::Say { text });
    }

    pub fn who(&mut self) {
        self.send(ClientMsg::Who);
    }

    pub fn quit(&mut self) {
        self.send(ClientMsg::Bye);
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.s
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.name));
    }

    /// Reads once more from the socket into the parser's buffer.
    fn fill(&mut self) {
        let mut tmp = [0u8; 16 * 1024];
        loop {
            match self.s.read(&mut tmp) {
                Ok(0) => panic!(
                    "{} ({:?}): the server closed the connection while a message was awaited, after {} events (unparsed: {:?})",
                    self.name,
                    self.dialect,
                    self.received,
                    String::from_utf8_lossy(self.pending())
                ),
                Ok(n) => {
                    match self.dialect {
                        Dialect::Bincode => self.bin.extend(&tmp[..n]),
                        _ => self.buf.extend_from_slice(&tmp[..n]),
                    }
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!(
                    "{} ({:?}): read failed while a message was awaited, after {} events: {e} (unparsed: {:?})",
                    self.name,
                    self.dialect,
                    self.received,
                    String::from_utf8_lossy(self.pending())
                ),
            }
        }
    }

    /// Bytes received and not yet parsed.
    pub fn pending(&self) -> &[u8] {
        match self.dialect {
            Dialect::Bincode => self.bin.pending(),
            _ => &self.buf,
        }
    }

    /// The next message or notice.
    pub fn recv(&mut self) -> Got {
        loop {
            if let Some(got) = self.try_parse() {
                self.received += 1;
                return got;
            }
            self.fill();
        }
    }

    /// Receives until `pred` holds, returning everything received, in order.
    pub fn recv_until(&mut self, mut pred: impl FnMut(&Got) -> bool) -> Vec<Got> {
        let mut all = Vec::new();
        loop {
            let got = self.recv();
            let done = pred(&got);
            all.push(got);
            if done {
                return all;
            }
        }
    }

    /// Expects exactly `want` as the next event.
    pub fn expect(&mut self, want: Got) {
        let got = self.recv();
        assert_eq!(got, want, "{} ({:?})", self.name, self.dialect);
    }

    /// Expects exactly these bytes next (line and header dialects).
    pub fn expect_bytes(&mut self, want: &[u8]) {
        assert_ne!(self.dialect, Dialect::Bincode);
        while self.buf.len() < want.len() {
            self.fill();
        }
        let got: Vec<u8> = self.buf.drain(..want.len()).collect();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{} ({:?}): not the bytes expected",
            self.name,
            self.dialect
        );
    }

    /// Expects the error `code` with `reason`: in the text dialects exactly
    /// the bytes `* error: REASON\n` or the frames `*`, `error: REASON`; in
    /// bincode `Error{code, reason}`.
    pub fn expect_error(&mut self, code: ErrorCode, reason: &str) {
        match self.dialect {
            Dialect::Line => self.expect_bytes(format!("* error: {reason}\n").as_bytes()),
            Dialect::Header { header_len: h } => {
                self.expect_bytes(&seed_pair(h, "*", &format!("error: {reason}")))
            }
            Dialect::Bincode => self.expect(Got::Error {
                code: Some(code.code()),
                reason: reason.to_owned(),
            }),
            Dialect::WebSocket(_) => not_here(),
        }
    }

    /// The connection must end (EOF or reset) within `within`; returns the
    /// bytes that came first (unparsed ones included).
    pub fn expect_closed(&mut self, within: Duration) -> Vec<u8> {
        let mut got = self.pending().to_vec();
        self.buf.clear();
        self.bin = BincodeServerDecoder::new(CLIENT_MAX_FRAME);
        match closed_within(&mut self.s, within) {
            Some((_, more)) => {
                got.extend(more);
                got
            }
            None => panic!(
                "{} ({:?}): the connection is still open after {within:?}",
                self.name, self.dialect
            ),
        }
    }

    /// Nothing arrives for `quiet`, and nothing is left unparsed.
    pub fn expect_quiet(&mut self, quiet: Duration) {
        assert!(
            self.pending().is_empty(),
            "{}: unexpected bytes {:?}",
            self.name,
            String::from_utf8_lossy(self.pending())
        );
        self.s.set_read_timeout(Some(quiet)).unwrap();
        let mut b = [0u8; 4096];
        let started = Instant::now();
        let r = self.s.read(&mut b);
        self.s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match r {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Ok(0) => panic!("{}: closed after {:?}", self.name, started.elapsed()),
            Ok(n) => panic!(
                "{}: unexpected bytes {:?}",
                self.name,
                String::from_utf8_lossy(&b[..n])
            ),
            Err(e) => panic!("{}: {e}", self.name),
        }
    }

    fn try_parse(&mut self) -> Option<Got> {
        match self.dialect {
            Dialect::WebSocket(_) => not_here(),
            Dialect::Line => {
                let nl = self.buf.iter().position(|&b| b == b'\n')?;
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                let line = String::from_utf8(line[..nl].to_vec())
                    .unwrap_or_else(|e| panic!("{}: line not UTF-8: {e}", self.name));
                if let Some(notice) = line.strip_prefix("* ") {
                    return Some(parse_notice(notice, &self.name));
                }
                let rest = line
                    .strip_prefix('[')
                    .unwrap_or_else(|| panic!("{}: not a chat line: {line:?}", self.name));
                let (from, text) = rest
                    .split_once("] ")
                    .unwrap_or_else(|| panic!("{}: not a chat line: {line:?}", self.name));
                Some(Got::msg(from, text))
            }
            Dialect::Header { header_len: h } => {
                let frame_at = |buf: &[u8], at: usize| -> Option<(usize, usize)> {
                    let header = buf.get(at..at + h)?;
                    let text = std::str::from_utf8(header).expect("header is ASCII");
                    // Digits, then spaces: left-justified, as the seed writes it.
                    let digits = text.trim_end_matches(' ');
                    assert!(
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                        "header {text:?} is not a left-justified number"
                    );
                    let len: usize = digits.parse().unwrap();
                    (buf.len() >= at + h + len).then_some((at + h, at + h + len))
                };
                let (n0, n1) = frame_at(&self.buf, 0)?;
                let (t0, t1) = frame_at(&self.buf, n1)?;
                let from = String::from_utf8(self.buf[n0..n1].to_vec()).unwrap();
                let text = String::from_utf8(self.buf[t0..t1].to_vec()).unwrap();
                self.buf.drain(..t1);
                Some(if from == "*" {
                    parse_notice(&text, &self.name)
                } else {
                    Got::Message { from, text }
                })
            }
            Dialect::Bincode => {
                let msg = self
                    .bin
                    .next_msg()
                    .unwrap_or_else(|e| panic!("{}: undecodable server frame: {e}", self.name))?;
                let (got, addr) = match msg {
                    ServerMsg::Welcome { addr, online, .. } => {
                        (Got::Welcome { online }, Some(addr.to_owned()))
                    }
                    ServerMsg::Message { from, text } => (Got::msg(from, text), None),
                    ServerMsg::Joined { name, addr, online } => {
                        (Got::joined(name, online), Some(addr.to_owned()))
                    }
                    ServerMsg::Left { name, online } => (Got::left(name, online), None),
                    ServerMsg::Roster { names } => (
                        Got::Roster(names.into_iter().map(str::to_owned).collect()),
                        None,
                    ),
                    ServerMsg::Error { code, reason } => (
                        Got::Error {
                            code: Some(code),
                            reason: reason.to_owned(),
                        },
                        None,
                    ),
                    ServerMsg::Notice { text } => (Got::Notice(text.to_owned()), None),
                };
                if addr.is_some() {
                    self.last_addr = addr;
                }
                Some(got)
            }
        }
    }
}

/// A socket whose receive buffer is as small as the kernel allows, so that a
/// client that never reads makes the server's queue for it overflow soon.
pub fn connect_small_rcvbuf(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket
        .connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    socket.into()
}
