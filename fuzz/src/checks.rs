//! What every fuzz target checks: one public function per target, each
//! taking the raw input and panicking, with what was wrong, on a bug.
//!
//! Two crates compile this file: the fuzz crate (fuzz/, nightly, libFuzzer
//! calls the functions) and the library's test `tests/fuzz_corpora.rs`
//! (stable, `cargo test`), which runs every file of `fuzz/corpus/NAME/`
//! through the check of [`TARGETS`] named NAME. So a check is ordinary Rust:
//! no libFuzzer, no nightly.
//!
//! Decoders are checked against small models written from the wire formats'
//! documentation (what a line, a header frame, a bincode frame is), not
//! from the code under test; chat messages round-trip through every dialect;
//! any cutting of a stream into reads must decode as the whole does.

use std::fmt::Debug;
use std::ops::Range;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use netlab::client::chat::ChatEventDecoder;
use netlab::client::{ChatEvent, Dialect};
use netlab::codec::chat::{
    BincodeServerDecoder, ChatCodec, ChatDecoder, DecodeError, Decoded, HeaderChat, ServerMsg,
};
use netlab::codec::{Codec, FrameError, FrameReader, HeaderCodec, LineCodec};
use netlab::config::{Config, ConfigErrors, ServerConfig};
// The chat's vocabulary. Should it move, this is the line to change.
use netlab::chat::{ClientMsg, ErrorCode, Event, WebSocketSettings, validate_name};
use netlab::service::{CountFraming, CountService, CountUnit, Session};

/// A check: returns if the input shows nothing wrong, panics otherwise.
pub type Check = fn(&[u8]);

/// Every target, by name: `fuzz/fuzz_targets/NAME.rs` fuzzes it and
/// `fuzz/corpus/NAME/` holds the inputs `cargo test` replays through it.
pub const TARGETS: &[(&str, Check)] = &[
    ("line", line),
    ("header", header),
    ("chat_line", chat_line),
    ("chat_header", chat_header),
    ("chat_bincode", chat_bincode),
    ("chat_websocket", chat_websocket),
    ("client_line", client_line),
    ("client_header", client_header),
    ("client_bincode", client_bincode),
    ("client_websocket", client_websocket),
    ("split", split),
    ("roundtrip_client", roundtrip_client),
    ("roundtrip_event", roundtrip_event),
    ("config", config),
    ("count", count),
];

/// The longest frame netlab's chat client takes from a server (1 MiB, in
/// `client/chat.rs`). Fuzz inputs are far shorter, so it never binds; the
/// models need it only to be complete.
const CLIENT_MAX_FRAME: usize = 1 << 20;

// ---------------------------------------------------------------------------
// The targets.

/// The generic line codec, through a [`FrameReader`], against the model of
/// a line. First byte: `max_len`.
pub fn line(data: &[u8]) {
    let mut settings = Settings(data);
    let max = settings.limit();
    let input = settings.0;
    let got = drive(FrameReader::new(LineCodec::new(max)), &[input]);
    let want = line_model(input, max);
    check_frames(input, &got, &want, max);
}

/// The generic header codec, through a [`FrameReader`], against the model
/// of a header frame. First bytes: `header_len`, `max_frame`.
pub fn header(data: &[u8]) {
    let mut settings = Settings(data);
    let header_len = settings.header_len();
    let max = settings.limit();
    let input = settings.0;
    let got = drive(
        FrameReader::new(HeaderCodec::new(header_len, max)),
        &[input],
    );
    let want = header_model(input, header_len, max);
    check_frames(input, &got, &want, max);
}

/// The chat's line dialect, client to server. First byte: `max_frame`.
pub fn chat_line(data: &[u8]) {
    let mut settings = Settings(data);
    let max = settings.limit();
    let input = settings.0;
    let got = drive(ChatCodec::new(Dialect::Line, max).decoder(), &[input]);
    let want = text_chat_model(input, &line_model(input, max), "line");
    check_chat(input, &got, &want, max);
}

/// The chat's header dialect, client to server. First bytes: `header_len`,
/// `max_frame`.
pub fn chat_header(data: &[u8]) {
    let mut settings = Settings(data);
    let header_len = settings.header_len();
    let max = settings.limit();
    let input = settings.0;
    let got = drive(
        ChatCodec::new(Dialect::Header { header_len }, max).decoder(),
        &[input],
    );
    let want = text_chat_model(input, &header_model(input, header_len, max), "frame");
    check_chat(input, &got, &want, max);
}

/// The chat's bincode dialect, client to server, against a bincode decoder
/// written from the format's description. First byte: `max_frame`.
pub fn chat_bincode(data: &[u8]) {
    let mut settings = Settings(data);
    let max = settings.limit();
    let input = settings.0;
    let got = drive(ChatCodec::new(Dialect::Bincode, max).decoder(), &[input]);
    let framed = prefix_model(input, max);
    let mut want = ChatModel {
        msgs: Vec::new(),
        end: ChatEnd::Pending(framed.rest),
    };
    for payload in &framed.frames {
        match wire_client_msg(&input[payload.clone()]) {
            Some(msg) => want.msgs.push(msg),
            None => {
                want.end = ChatEnd::Error(ErrorCode::BadFrame, None);
                break;
            }
        }
    }
    if want.msgs.len() == framed.frames.len() {
        want.end = chat_end(&framed.end, framed.rest);
    }
    check_chat(input, &got, &want, max);
}

/// A request that upgrades to the websocket dialect: a browser's, from the
/// page's own origin.
const WS_UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://127.0.0.1:8080\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The chat's websocket dialect, client to server: the HTTP request, then
/// RFC 6455 frames of JSON. First bytes: `max_frame`; flags (bit 0: the
/// input follows a valid upgrade request, so that frames are reached at
/// once; the rest: which `allowed_origins`); then how to cut the input into
/// reads ([`Settings::reads`]). Never a panic; any cutting decodes as the
/// whole does; a text is within `max_frame`; the first reply is an HTTP
/// response and every later one a server's control frame (unmasked);
/// nothing comes after `Close`; an error is said in words; the goodbye and
/// the keepalive never panic, whatever state the stream ended in.
pub fn chat_websocket(data: &[u8]) {
    let mut settings = Settings(data);
    let max = settings.limit();
    let flags = settings.byte();
    let allowed_origins = match (flags >> 1) % 3 {
        0 => Vec::new(),
        1 => vec!["*".to_owned()],
        _ => vec!["https://chat.example.org".to_owned()],
    };
    let codec = ChatCodec::new(
        Dialect::websocket(WebSocketSettings {
            allowed_origins,
            ping_interval: Some(Duration::from_secs(30)),
        }),
        max,
    );
    let (mut reads, input) = settings.reads();
    let mut stream = Vec::new();
    if flags & 1 == 1 {
        stream.extend_from_slice(WS_UPGRADE);
        reads.insert(0, WS_UPGRADE);
    }
    stream.extend_from_slice(input);
    same_in_any_reads(|| WsDecoder(codec.decoder()), &reads, &stream);

    let mut decoder = codec.decoder();
    decoder.extend(&stream);
    let mut replies = 0;
    let mut closed = false;
    let error = loop {
        match decoder.next_decoded() {
            Ok(Some(decoded)) => {
                assert!(!closed, "{decoded:?} after Close: {stream:?}");
                match decoded {
                    Decoded::Msg(ClientMsg::Hello { name: text } | ClientMsg::Say { text }) => {
                        assert!(text.len() <= max, "{text:?} is over {max} bytes");
                    }
                    Decoded::Msg(_) => {}
                    Decoded::Reply(bytes) => {
                        if replies == 0 {
                            assert!(bytes.starts_with(b"HTTP/1.1 "), "first reply {bytes:?}");
                        } else {
                            let [head, len, ..] = bytes else {
                                panic!("reply {bytes:?} is no frame");
                            };
                            assert!(
                                matches!(head, 0x88..=0x8a),
                                "reply {bytes:?}: not a whole close, ping or pong"
                            );
                            assert_eq!(len & 0x80, 0, "reply {bytes:?} is masked");
                        }
                        replies += 1;
                    }
                    Decoded::Close => closed = true,
                }
            }
            Ok(None) => break None,
            Err(e) => {
                assert!(!e.reason().trim().is_empty(), "{e:?}");
                break Some(e);
            }
        }
    };
    let mut out = Vec::new();
    let _ = decoder.keepalive(Instant::now() + Duration::from_secs(3600), &mut out);
    decoder.goodbye(error.as_ref().map(|e| (e.code(), e.reason())), &mut out);
}

/// netlab's chat client reading a line-dialect server: each line is one
/// event, and the event is what the line says.
pub fn client_line(data: &[u8]) {
    let got = drive(ChatEventDecoder::new(Dialect::Line), &[data]);
    let framed = line_model(data, CLIENT_MAX_FRAME);
    let mut events = got.items.iter();
    for payload in &framed.frames {
        let Ok(line) = std::str::from_utf8(&data[payload.clone()]) else {
            assert!(
                matches!(&got.end, End::Failed(e) if e.contains("not UTF-8")),
                "{got:?}"
            );
            assert!(events.next().is_none(), "{got:?}");
            return;
        };
        let event = events
            .next()
            .unwrap_or_else(|| panic!("no event for {line:?}"));
        let says = match line.strip_prefix("* ") {
            Some(notice) => notice_says(event, notice),
            None => match line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((from, text)) => *event == message(from, text),
                None => *event == notice(line),
            },
        };
        assert!(says, "{line:?} decoded as {event:?}");
    }
    assert!(events.next().is_none(), "{got:?}");
    match (&framed.end, &got.end) {
        (FrameEnd::Pending, End::Pending(p)) => assert_eq!(p[..], data[framed.rest..]),
        (FrameEnd::LineTooLong, End::Failed(_)) => {}
        (want, got) => panic!("expected {want:?}, got {got:?}"),
    }
}

/// netlab's chat client reading a header-dialect server: each pair of
/// frames (sender, text) is one event, and a notice from `*` is what its
/// text says. First byte: `header_len`.
pub fn client_header(data: &[u8]) {
    let mut settings = Settings(data);
    let header_len = settings.header_len();
    let input = settings.0;
    let got = drive(
        ChatEventDecoder::new(Dialect::Header { header_len }),
        &[input],
    );
    let framed = header_model(input, header_len, CLIENT_MAX_FRAME);
    let mut events = got.items.iter();
    for pair in framed.frames.chunks(2) {
        let [sender, text] = pair else {
            // A sender without its text yet: both wait, or the text's
            // header is what failed.
            match (&framed.end, &got.end) {
                (FrameEnd::Pending, End::Pending(p)) => {
                    assert_eq!(p[..], input[pair[0].start - header_len..]);
                }
                (FrameEnd::Pending, got) => panic!("expected to wait, got {got:?}"),
                (_, End::Failed(_)) => {}
                (want, got) => panic!("expected {want:?}, got {got:?}"),
            }
            assert!(events.next().is_none(), "{got:?}");
            return;
        };
        let (Ok(from), Ok(text)) = (
            std::str::from_utf8(&input[sender.clone()]),
            std::str::from_utf8(&input[text.clone()]),
        ) else {
            assert!(
                matches!(&got.end, End::Failed(e) if e.contains("not UTF-8")),
                "{got:?}"
            );
            assert!(events.next().is_none(), "{got:?}");
            return;
        };
        let event = events
            .next()
            .unwrap_or_else(|| panic!("no event for {from:?} {text:?}"));
        let says = if from == "*" {
            notice_says(event, text)
        } else {
            *event == message(from, text)
        };
        assert!(says, "{from:?} {text:?} decoded as {event:?}");
    }
    assert!(events.next().is_none(), "{got:?}");
    match (&framed.end, &got.end) {
        (FrameEnd::Pending, End::Pending(p)) => assert_eq!(p[..], input[framed.rest..]),
        (FrameEnd::TooLong(_) | FrameEnd::BadHeader(_), End::Failed(_)) => {}
        (want, got) => panic!("expected {want:?}, got {got:?}"),
    }
}

/// The client's bincode decoder (any `max_frame`) and netlab's chat client
/// in the bincode dialect, against a bincode decoder written from the
/// format's description. First byte: `max_frame`.
pub fn client_bincode(data: &[u8]) {
    let mut settings = Settings(data);
    let max = settings.limit();
    let input = settings.0;
    let got = drive(BincodeServerDecoder::new(max), &[input]);
    let framed = prefix_model(input, max);
    let mut want = Vec::new();
    let mut undecodable = false;
    for payload in &framed.frames {
        match wire_server_msg(&input[payload.clone()]) {
            Some(msg) => want.push(msg),
            None => {
                undecodable = true;
                break;
            }
        }
    }
    assert_eq!(got.items, want, "{input:?}");
    match (&got.end, undecodable, &framed.end) {
        (End::Failed(e), true, _) => assert_eq!(e.code(), ErrorCode::BadFrame, "{e}"),
        (End::Failed(e), false, FrameEnd::TooLong(_)) => {
            assert_eq!(e.code(), ErrorCode::FrameTooLarge, "{e}");
        }
        (End::Pending(p), false, FrameEnd::Pending) => assert_eq!(p[..], input[framed.rest..]),
        (got, _, want) => panic!("expected {want:?} (undecodable: {undecodable}), got {got:?}"),
    }

    // netlab's client: the same frames, as events, at its own limit.
    let got = drive(ChatEventDecoder::new(Dialect::Bincode), &[input]);
    let framed = prefix_model(input, CLIENT_MAX_FRAME);
    let mut n = 0;
    for payload in &framed.frames {
        if wire_server_msg(&input[payload.clone()]).is_none() {
            break;
        }
        n += 1;
    }
    assert_eq!(got.items.len(), n, "{got:?}");
}

/// What a client made of a server's frame, netlab's or tungstenite's.
#[derive(Debug, PartialEq, Eq)]
enum ServerFrame {
    Text(String),
    Binary,
    Ping(Vec<u8>),
    Pong,
    Close,
}

/// How reading a server's stream ended.
#[derive(Debug)]
enum FramesEnd {
    /// The input ended: more bytes are needed.
    Waiting,
    Failed(String),
}

/// netlab's chat client reading a websocket server's frames
/// (`frame::next_from_server`, fragments put together), against
/// tungstenite's `WebSocket` in the client role reading the same bytes:
/// the same texts, pings and pongs, in order, up to a close. Where netlab
/// stops with an error, tungstenite must too, or be still waiting (netlab
/// checks each header before its payload arrives), or have taken a binary
/// message (which the chat refuses) or a close whose status may not be
/// sent (tungstenite turns it into 1002; netlab refuses it). Where
/// tungstenite fails, netlab must too, but for a fragment's UTF-8, which
/// tungstenite refuses as it comes and netlab once the message is whole:
/// until then netlab may still wait or take control frames.
pub fn client_websocket(data: &[u8]) {
    use netlab::codec::chat::websocket::frame::{self, Fragments, Incoming};
    let (mut ours, mut fragments, mut at) = (Vec::new(), Fragments::default(), 0);
    let ours_end = loop {
        match frame::next_from_server(&data[at..], &mut fragments, CLIENT_MAX_FRAME) {
            Ok(None) => break FramesEnd::Waiting,
            Err(refusal) => break FramesEnd::Failed(refusal.reason.to_string()),
            Ok(Some((incoming, len))) => {
                at += len;
                ours.push(match incoming {
                    Incoming::Text(text) => ServerFrame::Text(text.to_owned()),
                    Incoming::Ping(payload) => ServerFrame::Ping(payload.to_vec()),
                    Incoming::Pong => ServerFrame::Pong,
                    Incoming::Close(_) => ServerFrame::Close,
                    Incoming::Fragment => continue,
                });
            }
        }
    };
    let (theirs, theirs_end) = tungstenite_reads(data);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            a, b,
            "frame {i}: netlab {ours:?} {ours_end:?}, tungstenite {theirs:?} {theirs_end:?}"
        );
        if *a == ServerFrame::Close {
            return;
        }
    }
    let both = format!("netlab {ours:?} {ours_end:?}, tungstenite {theirs:?} {theirs_end:?}");
    match ours.len().cmp(&theirs.len()) {
        std::cmp::Ordering::Equal => match (&ours_end, &theirs_end) {
            (FramesEnd::Waiting, FramesEnd::Waiting) | (FramesEnd::Failed(_), _) => {}
            (FramesEnd::Waiting, FramesEnd::Failed(e)) => {
                assert!(e.contains("UTF-8"), "{both}");
            }
        },
        std::cmp::Ordering::Less => {
            let FramesEnd::Failed(e) = &ours_end else {
                panic!("netlab waits where tungstenite read more: {both}");
            };
            let control = |f: &&ServerFrame| {
                matches!(
                    f,
                    ServerFrame::Ping(_) | ServerFrame::Pong | ServerFrame::Close
                )
            };
            match &theirs[ours.len()] {
                ServerFrame::Close if e.contains("may not be sent") => {}
                // netlab refuses a binary message by its first frame;
                // tungstenite hands it out whole, after the control frames
                // between its fragments.
                _ if e.contains("binary") => assert!(
                    theirs[ours.len()..]
                        .iter()
                        .find(|f| !control(f))
                        .is_none_or(|f| *f == ServerFrame::Binary),
                    "{both}"
                ),
                _ => panic!("netlab failed where tungstenite read on: {both}"),
            }
        }
        // tungstenite checks a fragmented text's UTF-8 as each fragment
        // comes, netlab when the message is whole (RFC 6455 8.1 allows
        // both): until then netlab may take control frames, never a text.
        std::cmp::Ordering::Greater => assert!(
            matches!(&theirs_end, FramesEnd::Failed(e) if e.contains("UTF-8"))
                && ours[theirs.len()..].iter().all(|f| matches!(
                    f,
                    ServerFrame::Ping(_) | ServerFrame::Pong | ServerFrame::Close
                )),
            "netlab read more than tungstenite: {both}"
        ),
    }
}

/// What tungstenite's client makes of `data` as a server's stream, at
/// netlab's client's limits.
fn tungstenite_reads(data: &[u8]) -> (Vec<ServerFrame>, FramesEnd) {
    use tungstenite::protocol::{Message, Role, WebSocket, WebSocketConfig};
    /// The server's bytes to read; what the client writes (pongs) is dropped.
    struct Replay<'a>(&'a [u8]);
    impl std::io::Read for Replay<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::io::Read::read(&mut self.0, buf)
        }
    }
    impl std::io::Write for Replay<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(CLIENT_MAX_FRAME))
        .max_frame_size(Some(CLIENT_MAX_FRAME));
    let mut socket = WebSocket::from_raw_socket(Replay(data), Role::Client, Some(config));
    let mut frames = Vec::new();
    loop {
        match socket.read() {
            Ok(Message::Text(text)) => frames.push(ServerFrame::Text(text.as_str().to_owned())),
            Ok(Message::Binary(_)) => frames.push(ServerFrame::Binary),
            Ok(Message::Ping(payload)) => frames.push(ServerFrame::Ping(payload.to_vec())),
            Ok(Message::Pong(_)) => frames.push(ServerFrame::Pong),
            Ok(Message::Close(_)) => {
                frames.push(ServerFrame::Close);
                return (frames, FramesEnd::Waiting);
            }
            Ok(Message::Frame(_)) => {
                unreachable!("tungstenite hands out raw frames only when writing")
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => return (frames, FramesEnd::Waiting),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return (frames, FramesEnd::Waiting);
            }
            Err(e) => return (frames, FramesEnd::Failed(e.to_string())),
        }
    }
}

/// Any cutting of the input into reads decodes as the whole does: the same
/// messages, then the same wait (the same bytes pending) or the same error.
/// Also one byte per read. First bytes: which decoder, its settings, then
/// how to cut (see [`Settings::reads`]).
pub fn split(data: &[u8]) {
    let mut settings = Settings(data);
    let which = settings.byte() % 10;
    let header_len = settings.header_len();
    let max = settings.limit();
    let (reads, stream) = settings.reads();
    match which {
        0 => same_in_any_reads(|| FrameReader::new(LineCodec::new(max)), &reads, stream),
        1 => same_in_any_reads(
            || FrameReader::new(HeaderCodec::new(header_len, max)),
            &reads,
            stream,
        ),
        2 => same_in_any_reads(
            || ChatCodec::new(Dialect::Line, max).decoder(),
            &reads,
            stream,
        ),
        3 => same_in_any_reads(
            || ChatCodec::new(Dialect::Header { header_len }, max).decoder(),
            &reads,
            stream,
        ),
        4 => same_in_any_reads(
            || ChatCodec::new(Dialect::Bincode, max).decoder(),
            &reads,
            stream,
        ),
        5 => same_in_any_reads(|| ChatEventDecoder::new(Dialect::Line), &reads, stream),
        6 => same_in_any_reads(
            || ChatEventDecoder::new(Dialect::Header { header_len }),
            &reads,
            stream,
        ),
        7 => same_in_any_reads(|| ChatEventDecoder::new(Dialect::Bincode), &reads, stream),
        8 => same_in_any_reads(|| BincodeServerDecoder::new(max), &reads, stream),
        // The websocket client's frames, fragments put together, pings owed.
        _ => same_in_any_reads(
            || ChatEventDecoder::new(Dialect::named("websocket", 0).unwrap()),
            &reads,
            stream,
        ),
    }
}

/// Client messages, encoded in a dialect as a client sends them, decode on
/// the server as sent, but for what the dialects document:
/// - line: `\n` and `\r` in a text become spaces;
/// - header: a text longer than the header's width can say is cut, at a
///   character boundary, to the longest that fits;
/// - line and header: the first frame is the name, and a later text that
///   reads `/who` or `/quit` (blanks around allowed) is that command;
/// - every dialect: a frame over `max_frame` is refused, and ends the stream.
pub fn roundtrip_client(data: &[u8]) {
    let Ok(case) = ClientCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let max = case.max_frame.get();
    let codec = match case.dialect {
        ArbDialect::Line => ChatCodec::new(Dialect::Line, max),
        ArbDialect::Header(width) => ChatCodec::new(
            Dialect::Header {
                header_len: header_width(width),
            },
            max,
        ),
        ArbDialect::Bincode => ChatCodec::new(Dialect::Bincode, max),
        // A server reads a WebSocket's messages only after its upgrade:
        // the chat_websocket target drives those.
        ArbDialect::WebSocket => return,
    };
    let mut wire = Vec::new();
    let mut want = Vec::new();
    let mut too_long = false;
    let mut named = false;
    for msg in &case.msgs {
        let mut frame = Vec::new();
        codec.encode_client_msg(msg.as_client_msg(), &mut frame);
        wire.extend_from_slice(&frame);
        let sent = match codec.dialect {
            Dialect::Line => {
                let text: String = msg
                    .wire_text()
                    .chars()
                    .map(|c| if matches!(c, '\n' | '\r') { ' ' } else { c })
                    .collect();
                Sent::Text(text)
            }
            Dialect::Header { header_len } => {
                let text = msg.wire_text();
                let fits = char_floor(text, max_for_width(header_len));
                Sent::Text(text[..fits].to_owned())
            }
            Dialect::Bincode => Sent::Exact(frame.len() - 4),
            Dialect::WebSocket(_) => unreachable!("ArbDialect has no websocket"),
        };
        let len = match &sent {
            Sent::Text(text) => text.len(),
            Sent::Exact(len) => *len,
        };
        if len > max {
            too_long = true;
            break;
        }
        want.push(match sent {
            Sent::Text(text) => text_rule(&mut named, &text),
            Sent::Exact(_) => msg.clone(),
        });
    }
    let got = drive(codec.decoder(), &[&wire]);
    assert_eq!(got.items, want, "{codec:?} {case:?}");
    match &got.end {
        End::Pending(p) => assert!(!too_long && p.is_empty(), "{p:?}"),
        End::Failed(e) => assert!(too_long && e.code() == ErrorCode::FrameTooLarge, "{e}"),
    }
}

/// Events, encoded by the server in a dialect, decode in netlab's client as
/// the events they are, but for what the dialects document:
/// - bincode and websocket: exact (the client keeps neither a welcome's id
///   nor a joiner's address);
/// - line and header: a welcome carries no address, an error no code;
/// - line: a message's control characters but tab become U+FFFD, and line
///   breaks in a notice become spaces;
/// - header: a frame longer than the header's width can say is cut.
///
/// Names are ones the room accepts ([`validate_name`]), as only those reach
/// an event.
pub fn roundtrip_event(data: &[u8]) {
    let Ok(case) = EventCase::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let events: Vec<Event> = case.events.iter().filter_map(ArbEvent::to_event).collect();
    let (codec, dialect) = match case.dialect {
        ArbDialect::Line => (ChatCodec::new(Dialect::Line, usize::MAX), Dialect::Line),
        ArbDialect::Header(width) => {
            let header_len = header_width(width);
            (
                ChatCodec::new(Dialect::Header { header_len }, usize::MAX),
                Dialect::Header { header_len },
            )
        }
        ArbDialect::Bincode => (
            ChatCodec::new(Dialect::Bincode, usize::MAX),
            Dialect::Bincode,
        ),
        ArbDialect::WebSocket => {
            let dialect = Dialect::websocket(WebSocketSettings::default());
            (ChatCodec::new(dialect.clone(), usize::MAX), dialect)
        }
    };
    let mut wire = Vec::new();
    for event in &events {
        codec.encode(event, &mut wire);
    }
    let got = drive(ChatEventDecoder::new(dialect), &[&wire]);
    assert!(
        matches!(&got.end, End::Pending(p) if p.is_empty()),
        "{codec:?} {events:?}: {:?}",
        got.end
    );
    assert_eq!(got.items.len(), events.len(), "{codec:?} {events:?}");
    for (event, decoded) in events.iter().zip(&got.items) {
        if let Some(want) = expected_event(event, &codec) {
            assert_eq!(*decoded, want, "{codec:?} {event:?}");
        }
    }
}

/// The configuration parsers never panic, and every error they report
/// stands at a real place in the text: line 1 or later, within the text's
/// lines, column 1 to one past the line's last character.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Err(errors) = Config::parse(&text, "fuzz.toml") {
        check_config_errors(&text, &errors);
    }
    if let Err(errors) = ServerConfig::parse(&text, "fuzz.toml") {
        check_config_errors(&text, &errors);
    }
}

/// The count service with any settings: every message is answered with its
/// count, in order, framed as the request was; an error ends the stream
/// and, in the line framing, says why; how the input is cut into reads
/// changes nothing (but in the chunk framing, where each read is a
/// message). First bytes: framing, unit, `max_frame`, then the reads.
pub fn count(data: &[u8]) {
    let mut settings = Settings(data);
    let framing = match settings.byte() % 3 {
        0 => CountFraming::Line,
        1 => CountFraming::Header {
            header_len: settings.header_len(),
        },
        _ => CountFraming::Chunk,
    };
    let unit = if settings.byte() % 2 == 0 {
        CountUnit::Chars
    } else {
        CountUnit::Bytes
    };
    let service = CountService {
        framing,
        unit,
        max_frame: settings.limit(),
    };
    let (reads, stream) = settings.reads();
    let (out, result) = run_count(&service, &reads);
    if framing == CountFraming::Chunk {
        let want: String = reads
            .iter()
            .map(|r| count_of(r, unit).to_string())
            .collect();
        assert_eq!(out, want.as_bytes());
        assert!(result.is_ok());
        return;
    }
    let (want_out, want_ok) = count_model(&service, stream);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&want_out),
        "{service:?}"
    );
    assert_eq!(result.is_ok(), want_ok, "{service:?}: {result:?}");
    let (out, result) = run_count(&service, &bytewise(stream));
    assert_eq!(out, want_out, "{service:?}, one byte per read");
    assert_eq!(result.is_ok(), want_ok, "{service:?}: {result:?}");
}

// ---------------------------------------------------------------------------
// Settings from the input's first bytes.

/// Reads a target's settings from the front of its input; what remains is
/// the stream. An input too short for its settings gets zeros.
struct Settings<'a>(&'a [u8]);

impl<'a> Settings<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A `max_frame`: 0 to 191, where every boundary is within reach of a
    /// short input, or a large one, where arithmetic on it could wrap.
    fn limit(&mut self) -> usize {
        const LARGE: [usize; 8] = [
            usize::MAX,
            usize::MAX - 1,
            usize::MAX - 2,
            usize::MAX / 2,
            u32::MAX as usize,
            (u32::MAX as usize).wrapping_add(1),
            64 * 1024,
            1 << 20,
        ];
        match self.byte() {
            b @ 0..=191 => usize::from(b),
            b => LARGE[usize::from(b) % LARGE.len()],
        }
    }

    /// A header width for a decoder: 0 to 249, the seed's 100, the widest a
    /// configuration allows (1024), the widths around 20 digits where a
    /// usize overflows, and widths no buffer fills.
    fn header_len(&mut self) -> usize {
        match self.byte() {
            b @ 0..=249 => usize::from(b),
            250 => 100,
            251 => 1024,
            252 => 20,
            253 => 21,
            254 => 4096,
            _ => usize::MAX,
        }
    }

    /// The rest as a stream cut into reads: a byte `n` (mod 16), then `n`
    /// read lengths (0 to 255, used in turn; 0 is an empty read), then the
    /// stream itself.
    fn reads(mut self) -> (Vec<&'a [u8]>, &'a [u8]) {
        let n = self.byte() % 16;
        let mut lens: Vec<usize> = (0..n).map(|_| usize::from(self.byte())).collect();
        if !lens.iter().any(|&l| l > 0) {
            lens.push(1);
        }
        let stream = self.0;
        let mut reads = Vec::new();
        let mut rest = stream;
        for &len in lens.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (read, after) = rest.split_at(len.min(rest.len()));
            reads.push(read);
            rest = after;
        }
        if reads.is_empty() {
            // Even an empty stream is one (empty) read, as the whole is.
            reads.push(stream);
        }
        (reads, stream)
    }
}

// ---------------------------------------------------------------------------
// Driving a decoder.

/// A decoder, of any kind: bytes in, items out, until it waits or fails.
trait Stream {
    type Item: Debug + PartialEq;
    type Error: Debug;
    fn extend(&mut self, bytes: &[u8]);
    fn next_item(&mut self) -> Result<Option<Self::Item>, Self::Error>;
    fn pending(&self) -> &[u8];
    /// The error as its reader is told it.
    fn error_text(error: &Self::Error) -> String;
}

/// How a stream ended: waiting with these bytes, or failed.
#[derive(Debug)]
enum End<E> {
    Pending(Vec<u8>),
    Failed(E),
}

#[derive(Debug)]
struct Outcome<T, E> {
    items: Vec<T>,
    end: End<E>,
}

/// Feeds `reads` in turn, taking every item after each read, as a server
/// does; stops at the first error.
fn drive<S: Stream>(mut stream: S, reads: &[&[u8]]) -> Outcome<S::Item, S::Error> {
    let mut items = Vec::new();
    for read in reads {
        stream.extend(read);
        loop {
            match stream.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        items,
                        end: End::Failed(e),
                    };
                }
            }
        }
    }
    Outcome {
        end: End::Pending(stream.pending().to_vec()),
        items,
    }
}

fn same_in_any_reads<S: Stream>(make: impl Fn() -> S, reads: &[&[u8]], stream: &[u8]) {
    let whole = drive(make(), &[stream]);
    let bytewise = bytewise(stream);
    for (how, reads) in [("in these reads", reads), ("a byte per read", &bytewise)] {
        let cut = drive(make(), reads);
        assert_eq!(cut.items, whole.items, "{how}: {reads:?}");
        match (&whole.end, &cut.end) {
            (End::Pending(a), End::Pending(b)) => assert_eq!(a, b, "{how}: {reads:?}"),
            (End::Failed(a), End::Failed(b)) => assert_eq!(
                comparable(&S::error_text(a)),
                comparable(&S::error_text(b)),
                "{how}: {reads:?}"
            ),
            (a, b) => panic!("whole: {a:?}, {how}: {b:?} ({reads:?})"),
        }
    }
}

/// `stream` a byte per read (an empty stream: one empty read).
fn bytewise(stream: &[u8]) -> Vec<&[u8]> {
    if stream.is_empty() {
        return vec![stream];
    }
    stream.chunks(1).collect()
}

/// An error's text, less what may rightly depend on how much had arrived:
/// a header refused for a byte no header may hold is refused as soon as
/// that byte arrives, and quoted as far as it had arrived.
fn comparable(text: &str) -> &str {
    match text.find("length header ") {
        Some(at) => &text[..at + "length header".len()],
        None => text,
    }
}

impl<C: Codec> Stream for FrameReader<C> {
    type Item = Vec<u8>;
    type Error = FrameError;
    fn extend(&mut self, bytes: &[u8]) {
        FrameReader::extend(self, bytes);
    }
    fn next_item(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        self.next_frame().map(|frame| frame.map(<[u8]>::to_vec))
    }
    fn pending(&self) -> &[u8] {
        FrameReader::pending(self)
    }
    fn error_text(error: &FrameError) -> String {
        error.to_string()
    }
}

impl Stream for ChatDecoder {
    type Item = Msg;
    type Error = DecodeError;
    fn extend(&mut self, bytes: &[u8]) {
        ChatDecoder::extend(self, bytes);
    }
    fn next_item(&mut self) -> Result<Option<Msg>, DecodeError> {
        // Replies and closes are the websocket dialect's alone, which
        // these targets do not drive.
        self.next_decoded().map(|decoded| {
            decoded.map(|d| match d {
                Decoded::Msg(msg) => Msg::from(msg),
                other => panic!("a non-websocket decoder returned {other:?}"),
            })
        })
    }
    fn pending(&self) -> &[u8] {
        ChatDecoder::pending(self)
    }
    fn error_text(error: &DecodeError) -> String {
        format!("{}: {}", error.code(), error.reason())
    }
}

/// The websocket dialect's decoder, whose own replies and close are items
/// too: they must not depend on how the bytes were cut either.
struct WsDecoder(ChatDecoder);

/// What a websocket client's bytes came to, owned.
#[derive(Debug, PartialEq)]
enum WsItem {
    Msg(Msg),
    Reply(Vec<u8>),
    Close,
}

impl Stream for WsDecoder {
    type Item = WsItem;
    type Error = DecodeError;
    fn extend(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
    }
    fn next_item(&mut self) -> Result<Option<WsItem>, DecodeError> {
        self.0.next_decoded().map(|decoded| {
            decoded.map(|d| match d {
                Decoded::Msg(msg) => WsItem::Msg(Msg::from(msg)),
                Decoded::Reply(bytes) => WsItem::Reply(bytes.to_vec()),
                Decoded::Close => WsItem::Close,
            })
        })
    }
    fn pending(&self) -> &[u8] {
        self.0.pending()
    }
    fn error_text(error: &DecodeError) -> String {
        format!("{}: {}", error.code(), error.reason())
    }
}

impl Stream for ChatEventDecoder {
    type Item = ChatEvent;
    type Error = String;
    fn extend(&mut self, bytes: &[u8]) {
        ChatEventDecoder::extend(self, bytes);
    }
    fn next_item(&mut self) -> Result<Option<ChatEvent>, String> {
        self.next_event()
            .map(|event| event.map(|e| e.to_owned_event()))
    }
    fn pending(&self) -> &[u8] {
        ChatEventDecoder::pending(self)
    }
    fn error_text(error: &String) -> String {
        error.clone()
    }
}

impl Stream for BincodeServerDecoder {
    /// The message's debug text: messages borrow from the decoder.
    type Item = String;
    type Error = DecodeError;
    fn extend(&mut self, bytes: &[u8]) {
        BincodeServerDecoder::extend(self, bytes);
    }
    fn next_item(&mut self) -> Result<Option<String>, DecodeError> {
        self.next_msg().map(|msg| msg.map(|m| format!("{m:?}")))
    }
    fn pending(&self) -> &[u8] {
        BincodeServerDecoder::pending(self)
    }
    fn error_text(error: &DecodeError) -> String {
        format!("{}: {}", error.code(), error.reason())
    }
}

// ---------------------------------------------------------------------------
// Models of the framings, from their documentation.

/// Frames found in a whole input by a model.
#[derive(Debug)]
struct Framed {
    /// Each frame's payload, where it lies in the input.
    frames: Vec<Range<usize>>,
    /// Where the bytes no frame took begin.
    rest: usize,
    end: FrameEnd,
}

#[derive(Debug)]
enum FrameEnd {
    /// The rest is the start of a frame.
    Pending,
    /// A line longer than the maximum.
    LineTooLong,
    /// A header or prefix announcing more than the maximum: `None` when the
    /// number does not even fit a usize.
    TooLong(Option<usize>),
    /// A header that is not a number, as far as it had to be read.
    BadHeader(Vec<u8>),
}

/// Lines: a payload ends at `\n`, and a `\r` just before it is dropped too.
/// A line over `max` bytes is refused, also before its end arrives, unless
/// all that is over is a `\r` that its `\n` may still follow.
fn line_model(input: &[u8], max: usize) -> Framed {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &input[at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            let may_fit = rest.len() <= max || (rest.len() - 1 == max && rest.ends_with(b"\r"));
            let end = if may_fit {
                FrameEnd::Pending
            } else {
                FrameEnd::LineTooLong
            };
            return Framed {
                frames,
                rest: at,
                end,
            };
        };
        let len = if rest[..nl].ends_with(b"\r") {
            nl - 1
        } else {
            nl
        };
        if len > max {
            return Framed {
                frames,
                rest: at,
                end: FrameEnd::LineTooLong,
            };
        }
        frames.push(at..at + len);
        at += nl + 1;
    }
}

/// Header frames: `header_len` bytes holding the payload's length in
/// decimal, with ASCII white space around it (seed 004's server reads it
/// with Python's `int(header.strip())`), then the payload. A length over
/// `max` is refused from the header alone; a byte no header may hold is
/// refused as soon as it arrives.
fn header_model(input: &[u8], header_len: usize, max: usize) -> Framed {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &input[at..];
        let done = |frames, end| Framed {
            frames,
            rest: at,
            end,
        };
        if rest.len() < header_len {
            let never = rest
                .iter()
                .any(|b| !(b.is_ascii_digit() || b.is_ascii_whitespace()));
            return done(
                frames,
                if never {
                    FrameEnd::BadHeader(rest.to_vec())
                } else {
                    FrameEnd::Pending
                },
            );
        }
        let header = &rest[..header_len];
        let Some(len) = header_number(header) else {
            return done(frames, FrameEnd::BadHeader(header.to_vec()));
        };
        match len {
            Some(len) if len <= max => {
                if rest.len() - header_len < len {
                    return done(frames, FrameEnd::Pending);
                }
                frames.push(at + header_len..at + header_len + len);
                at += header_len + len;
            }
            _ => return done(frames, FrameEnd::TooLong(len)),
        }
    }
}

/// The number in a header: `None` if it is not one (white space, digits,
/// white space), `Some(None)` if it is more than a usize holds.
fn header_number(header: &[u8]) -> Option<Option<usize>> {
    let start = header.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = header[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = start + digits;
    if digits == 0 || !header[end..].iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(header[start..end].iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    }))
}

/// bincode frames: a 4-byte big-endian length, refused over `max` as soon
/// as it is in, then the payload.
fn prefix_model(input: &[u8], max: usize) -> Framed {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &input[at..];
        let Some((prefix, payload)) = rest.split_first_chunk::<4>() else {
            break;
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > max {
            return Framed {
                frames,
                rest: at,
                end: FrameEnd::TooLong(Some(len)),
            };
        }
        if payload.len() < len {
            break;
        }
        frames.push(at + 4..at + 4 + len);
        at += 4 + len;
    }
    Framed {
        frames,
        rest: at,
        end: FrameEnd::Pending,
    }
}

/// A frame decoder's outcome is the model's: the same payloads, then the
/// same bytes waiting, or an error that says what the model found.
fn check_frames(input: &[u8], got: &Outcome<Vec<u8>, FrameError>, want: &Framed, max: usize) {
    let payloads: Vec<&[u8]> = want.frames.iter().map(|r| &input[r.clone()]).collect();
    assert_eq!(got.items, payloads, "{want:?}");
    let rest = &input[want.rest..];
    match (&got.end, &want.end) {
        (End::Pending(p), FrameEnd::Pending) => assert_eq!(p[..], *rest),
        (End::Failed(FrameError::LineTooLong { max: m }), FrameEnd::LineTooLong) => {
            assert_eq!(*m, max);
        }
        (End::Failed(FrameError::TooLong { len, max: m }), FrameEnd::TooLong(Some(want_len))) => {
            assert_eq!((*len, *m), (*want_len, max));
        }
        // A length that overflows a usize says so (issue 10, item 9): it
        // takes at least 20 digits, as usize::MAX has 20.
        (End::Failed(FrameError::LengthOverflow { digits, max: m }), FrameEnd::TooLong(None)) => {
            assert_eq!(*m, max);
            assert!(*digits >= 20, "{digits} digits cannot overflow a usize");
        }
        (End::Failed(FrameError::BadHeader { header }), FrameEnd::BadHeader(bytes)) => {
            assert_eq!(*header, String::from_utf8_lossy(bytes));
        }
        (got, want) => panic!("got {got:?}, the model says {want:?}"),
    }
}

/// A client message, owned.
#[derive(Debug, Clone, PartialEq, Eq, Arbitrary)]
pub enum Msg {
    Hello(String),
    Say(String),
    Who,
    Bye,
}

impl Msg {
    fn as_client_msg(&self) -> ClientMsg<'_> {
        match self {
            Msg::Hello(name) => ClientMsg::Hello { name },
            Msg::Say(text) => ClientMsg::Say { text },
            Msg::Who => ClientMsg::Who,
            Msg::Bye => ClientMsg::Bye,
        }
    }

    /// What a text dialect sends for it.
    fn wire_text(&self) -> &str {
        match self {
            Msg::Hello(text) | Msg::Say(text) => text,
            Msg::Who => "/who",
            Msg::Bye => "/quit",
        }
    }
}

impl From<ClientMsg<'_>> for Msg {
    fn from(msg: ClientMsg<'_>) -> Msg {
        match msg {
            ClientMsg::Hello { name } => Msg::Hello(name.to_owned()),
            ClientMsg::Say { text } => Msg::Say(text.to_owned()),
            ClientMsg::Who => Msg::Who,
            ClientMsg::Bye => Msg::Bye,
        }
    }
}

/// A text frame from a client, by the text dialects' rules: the first is
/// the name; later, `/who` and `/quit` with blanks around them are
/// commands, anything else a message exactly as sent.
fn text_rule(named: &mut bool, text: &str) -> Msg {
    if !std::mem::replace(named, true) {
        return Msg::Hello(text.to_owned());
    }
    match text.trim_ascii() {
        "/who" => Msg::Who,
        "/quit" => Msg::Bye,
        _ => Msg::Say(text.to_owned()),
    }
}

#[derive(Debug)]
struct ChatModel {
    msgs: Vec<Msg>,
    end: ChatEnd,
}

#[derive(Debug)]
enum ChatEnd {
    /// Waiting, with the bytes from this offset on.
    Pending(usize),
    /// Failed with this code, and this reason when the model knows it.
    Error(ErrorCode, Option<String>),
}

fn chat_end(end: &FrameEnd, rest: usize) -> ChatEnd {
    match end {
        FrameEnd::Pending => ChatEnd::Pending(rest),
        FrameEnd::LineTooLong | FrameEnd::TooLong(_) => {
            ChatEnd::Error(ErrorCode::FrameTooLarge, None)
        }
        FrameEnd::BadHeader(_) => ChatEnd::Error(ErrorCode::BadFrame, None),
    }
}

/// A text dialect: each frame is UTF-8 text, read by [`text_rule`]; `unit`
/// is what the dialect calls a frame in errors.
fn text_chat_model(input: &[u8], framed: &Framed, unit: &str) -> ChatModel {
    let mut named = false;
    let mut msgs = Vec::new();
    for payload in &framed.frames {
        match std::str::from_utf8(&input[payload.clone()]) {
            Ok(text) => msgs.push(text_rule(&mut named, text)),
            Err(e) => {
                let reason = format!("{unit} is not valid UTF-8 (byte {})", e.valid_up_to());
                return ChatModel {
                    msgs,
                    end: ChatEnd::Error(ErrorCode::BadFrame, Some(reason)),
                };
            }
        }
    }
    ChatModel {
        msgs,
        end: chat_end(&framed.end, framed.rest),
    }
}

fn check_chat(input: &[u8], got: &Outcome<Msg, DecodeError>, want: &ChatModel, max: usize) {
    assert_eq!(got.items, want.msgs, "{input:?}");
    for msg in &got.items {
        if let Msg::Hello(text) | Msg::Say(text) = msg {
            assert!(text.len() <= max, "{msg:?} is over {max} bytes");
        }
    }
    match (&got.end, &want.end) {
        (End::Pending(p), ChatEnd::Pending(at)) => assert_eq!(p[..], input[*at..]),
        (End::Failed(e), ChatEnd::Error(code, reason)) => {
            assert_eq!(e.code(), *code, "{e}");
            if let Some(reason) = reason {
                assert_eq!(e.reason(), reason);
            }
        }
        (got, want) => panic!("got {got:?}, the model says {want:?}"),
    }
}

/// bincode 2 as the dialect configures it (`config::standard()`), read by
/// hand: little-endian, and every integer a varint.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(taken)
    }

    /// A varint for an integer `width` bytes wide: a byte up to 250 is the
    /// value; 251, 252 and 253 announce a u16, u32 or u64 after them, which
    /// must fit the width. (bincode does not insist on the shortest form.)
    fn varint(&mut self, width: usize) -> Option<u64> {
        let tag = self.take(1)?[0];
        let n = match tag {
            0..=250 => return Some(u64::from(tag)),
            251 => 2,
            252 => 4,
            253 => 8,
            _ => return None,
        };
        if n > width {
            return None;
        }
        let bytes = self.take(n)?;
        Some(bytes.iter().rev().fold(0, |v, &b| v << 8 | u64::from(b)))
    }

    /// A string: its length as a u64 varint, then UTF-8.
    fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.varint(8)?).ok()?;
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn u16(&mut self) -> Option<u16> {
        self.varint(2).and_then(|v| u16::try_from(v).ok())
    }

    fn u32(&mut self) -> Option<u32> {
        self.varint(4).and_then(|v| u32::try_from(v).ok())
    }

    /// What remains must be nothing: a frame holds one value.
    fn all<T>(&self, value: T) -> Option<T> {
        self.0.is_empty().then_some(value)
    }
}

/// A client's frame: the variant's index as a u32, then its fields.
fn wire_client_msg(payload: &[u8]) -> Option<Msg> {
    let mut w = Wire(payload);
    let msg = match w.u32()? {
        0 => Msg::Hello(w.str()?.to_owned()),
        1 => Msg::Say(w.str()?.to_owned()),
        2 => Msg::Who,
        3 => Msg::Bye,
        _ => return None,
    };
    w.all(msg)
}

/// A server's frame, as the debug text of the [`ServerMsg`] it is.
fn wire_server_msg(payload: &[u8]) -> Option<String> {
    let mut w = Wire(payload);
    let msg = match w.u32()? {
        0 => ServerMsg::Welcome {
            id: w.varint(8)?,
            addr: w.str()?,
            online: w.u32()?,
        },
        1 => ServerMsg::Message {
            from: w.str()?,
            text: w.str()?,
        },
        2 => ServerMsg::Joined {
            name: w.str()?,
            addr: w.str()?,
            online: w.u32()?,
        },
        3 => ServerMsg::Left {
            name: w.str()?,
            online: w.u32()?,
        },
        4 => {
            let n = w.varint(8)?;
            let mut names = Vec::new();
            for _ in 0..n {
                names.push(w.str()?);
            }
            ServerMsg::Roster { names }
        }
        5 => ServerMsg::Error {
            code: w.u16()?,
            reason: w.str()?,
        },
        // The room's own news (a cluster's link), since the cluster.
        6 => ServerMsg::Notice { text: w.str()? },
        _ => return None,
    };
    w.all(format!("{msg:?}"))
}

// ---------------------------------------------------------------------------
// What a chat client should make of a server's text.

fn message(from: &str, text: &str) -> ChatEvent {
    ChatEvent::Message {
        from: from.to_owned(),
        text: text.to_owned(),
    }
}

fn notice(text: &str) -> ChatEvent {
    ChatEvent::Notice {
        text: text.to_owned(),
    }
}

/// Whether `event` is what the notice `text` (without the line dialect's
/// `* `) says: its kind's words are there, around its fields. Numbers are
/// not compared as text: `07` and `7` both say seven.
fn notice_says(event: &ChatEvent, text: &str) -> bool {
    match event {
        ChatEvent::Error { code: None, reason } => text.strip_prefix("error: ") == Some(reason),
        ChatEvent::Welcome { addr: None, .. } => {
            text.starts_with("welcome ") && text.contains(" online;")
        }
        ChatEvent::Roster { names } => {
            text.starts_with("online (")
                && match text.split_once("):") {
                    Some((_, list)) => {
                        let list = list.strip_prefix(' ').unwrap_or(list);
                        list == names.join(", ") && (names.is_empty() == list.is_empty())
                    }
                    None => false,
                }
        }
        // `NAME joined (N online)`, or `NAME joined on NODE (N online)` for a
        // member of another node of a cluster.
        ChatEvent::Joined { name, .. } => {
            (text.starts_with(&format!("{name} joined ("))
                || text.starts_with(&format!("{name} joined on ")))
                && text.ends_with(" online)")
        }
        ChatEvent::Left { name, .. } => {
            (text.starts_with(&format!("{name} left ("))
                || text.starts_with(&format!("{name} left on ")))
                && text.ends_with(" online)")
        }
        ChatEvent::Notice { text: t } => t == text,
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Round trips.

/// A header width for an encoder: mostly narrow ones, where frames get cut,
/// and the seed's 100 and the configuration's widest, 1024.
fn header_width(b: u8) -> usize {
    match b {
        0..=15 => usize::from(b) + 1,
        16..=127 => 10,
        128..=191 => 100,
        _ => 1024,
    }
}

/// The largest length `width` decimal digits can say.
fn max_for_width(width: usize) -> usize {
    u32::try_from(width)
        .ok()
        .and_then(|w| 10usize.checked_pow(w))
        .map_or(usize::MAX, |p| p - 1)
}

/// The longest prefix of `text`, at most `max` bytes, that ends on a
/// character boundary.
fn char_floor(text: &str, max: usize) -> usize {
    (0..=max.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

#[derive(Debug, Arbitrary)]
enum ArbDialect {
    Line,
    /// The header's width, through [`header_width`].
    Header(u8),
    Bincode,
    WebSocket,
}

#[derive(Debug, Arbitrary)]
enum ArbLimit {
    Small(u8),
    Default,
    Unlimited,
}

impl ArbLimit {
    fn get(&self) -> usize {
        match self {
            ArbLimit::Small(n) => usize::from(*n),
            ArbLimit::Default => 64 * 1024,
            ArbLimit::Unlimited => usize::MAX,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct ClientCase {
    dialect: ArbDialect,
    max_frame: ArbLimit,
    msgs: Vec<Msg>,
}

/// What a dialect puts on the wire for one client message.
enum Sent {
    /// A text frame with this text.
    Text(String),
    /// The message itself, in a payload of this many bytes.
    Exact(usize),
}

#[derive(Debug, Arbitrary)]
enum ArbEvent {
    Welcome {
        id: u64,
        name: String,
        addr: String,
        online: u32,
    },
    Message {
        from: String,
        text: String,
    },
    Joined {
        name: String,
        addr: String,
        online: u32,
    },
    Left {
        name: String,
        online: u32,
    },
    Roster {
        names: Vec<String>,
    },
    Error {
        code: u8,
        reason: String,
    },
}

impl ArbEvent {
    /// The event, if the room could send it: every name in it valid.
    fn to_event(&self) -> Option<Event> {
        let name = |n: &str| validate_name(n).ok().map(|()| n.into());
        Some(match self {
            ArbEvent::Welcome {
                id,
                name: n,
                addr,
                online,
            } => Event::Welcome {
                id: *id,
                name: name(n)?,
                addr: addr.as_str().into(),
                online: *online,
            },
            ArbEvent::Message { from, text } => Event::Message {
                from: name(from)?,
                text: text.as_str().into(),
            },
            ArbEvent::Joined {
                name: n,
                addr,
                online,
            } => Event::Joined {
                name: name(n)?,
                addr: addr.as_str().into(),
                online: *online,
                node: None,
            },
            ArbEvent::Left { name: n, online } => Event::Left {
                name: name(n)?,
                online: *online,
                node: None,
            },
            ArbEvent::Roster { names } => Event::Roster {
                names: names.iter().map(|n| name(n)).collect::<Option<_>>()?,
            },
            ArbEvent::Error { code, reason } => Event::error(
                ErrorCode::ALL[usize::from(*code) % ErrorCode::ALL.len()],
                reason.clone(),
            ),
        })
    }
}

#[derive(Debug, Arbitrary)]
struct EventCase {
    dialect: ArbDialect,
    events: Vec<ArbEvent>,
}

/// The event netlab's client should read for `event` sent in `codec`'s
/// dialect; `None` where the dialect documents that it cannot say it
/// whole (a header frame cut to its width).
fn expected_event(event: &Event, codec: &ChatCodec) -> Option<ChatEvent> {
    let text_dialect = !matches!(codec.dialect, Dialect::Bincode | Dialect::WebSocket(_));
    if let Dialect::Header { header_len } = codec.dialect {
        let (sender, text) = header_lengths(event);
        if sender.max(text) > max_for_width(header_len) {
            return None;
        }
    }
    let owned = |s: &str| s.to_owned();
    Some(match event {
        Event::Welcome { addr, online, .. } => ChatEvent::Welcome {
            online: *online,
            addr: (!text_dialect).then(|| owned(addr)),
        },
        Event::Message { from, text } => ChatEvent::Message {
            from: owned(from),
            text: match codec.dialect {
                Dialect::Line => text
                    .chars()
                    .map(|c| {
                        if c.is_control() && c != '\t' {
                            char::REPLACEMENT_CHARACTER
                        } else {
                            c
                        }
                    })
                    .collect(),
                _ => owned(text),
            },
        },
        Event::Joined { name, online, .. } => ChatEvent::Joined {
            name: owned(name),
            online: *online,
        },
        Event::Left { name, online, .. } => ChatEvent::Left {
            name: owned(name),
            online: *online,
        },
        Event::Roster { names } => ChatEvent::Roster {
            names: names.iter().map(|n| owned(n)).collect(),
        },
        // The room's own news (a cluster's link), never generated here:
        // its texts are the room's, not a client's.
        Event::Notice { text } => ChatEvent::Notice { text: owned(text) },
        Event::Error { code, reason } => ChatEvent::Error {
            code: (!text_dialect).then_some(*code),
            reason: match codec.dialect {
                Dialect::Line => reason.replace(['\n', '\r'], " "),
                _ => owned(reason),
            },
        },
    })
}

/// The lengths of the two header frames an event is sent as: the sender
/// and the text.
fn header_lengths(event: &Event) -> (usize, usize) {
    let mut frames = Vec::new();
    // Wide enough for any length: nothing is cut.
    HeaderChat::new(20, usize::MAX).encode(event, &mut frames);
    let len = |header: &[u8]| -> usize {
        std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.trim().parse().ok())
            .unwrap_or_else(|| panic!("header {header:?} of {event:?}"))
    };
    let sender = len(&frames[..20]);
    let text = len(&frames[20 + sender..40 + sender]);
    (sender, text)
}

// ---------------------------------------------------------------------------
// Configuration.

fn check_config_errors(text: &str, errors: &ConfigErrors) {
    assert!(!errors.0.is_empty(), "an Err with no error in it");
    let lines: Vec<&str> = text.split('\n').collect();
    for e in &errors.0 {
        let (line, column) = (e.location.line, e.location.column);
        assert!(
            line >= 1 && line <= lines.len(),
            "{e}: line {line} of {}",
            lines.len()
        );
        let chars = lines[line - 1].chars().count();
        assert!(
            column >= 1 && column <= chars + 1,
            "{e}: column {column} of a line of {chars} characters"
        );
        assert!(!e.message.trim().is_empty(), "{e}: no message");
        assert_eq!(&*e.location.origin, "fuzz.toml");
    }
}

// ---------------------------------------------------------------------------
// Count.

fn run_count(service: &CountService, reads: &[&[u8]]) -> (Vec<u8>, Result<(), String>) {
    let mut session = service.session();
    let mut out = Vec::new();
    for read in reads {
        if let Err(e) = session.on_data(read, &mut out) {
            return (out, Err(e.reason));
        }
    }
    let result = session.on_eof(&mut out).map_err(|e| e.reason);
    (out, result)
}

/// Characters in `bytes`, each byte of an invalid UTF-8 sequence one, or
/// bytes.
fn count_of(mut bytes: &[u8], unit: CountUnit) -> usize {
    if unit == CountUnit::Bytes {
        return bytes.len();
    }
    let mut n = 0;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(text) => return n + text.chars().count(),
            Err(e) => {
                let (valid, after) = bytes.split_at(e.valid_up_to());
                n += valid.iter().filter(|&&b| b & 0xc0 != 0x80).count();
                let bad = e.error_len().unwrap_or(after.len());
                n += bad;
                bytes = &after[bad..];
            }
        }
    }
}

/// What a count session answers to the whole `stream` (line or header
/// framing), and whether it ends well.
fn count_model(service: &CountService, stream: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let reply = |n: usize, out: &mut Vec<u8>| match service.framing {
        CountFraming::Header { header_len } => {
            let digits = n.to_string();
            let len = digits.len();
            out.extend_from_slice(format!("{len:<header_len$}").as_bytes());
            out.extend_from_slice(digits.as_bytes());
        }
        _ => out.extend_from_slice(format!("{n}\n").as_bytes()),
    };
    let framed = match service.framing {
        CountFraming::Header { header_len } => header_model(stream, header_len, service.max_frame),
        _ => line_model(stream, service.max_frame),
    };
    for payload in &framed.frames {
        reply(count_of(&stream[payload.clone()], service.unit), &mut out);
    }
    let rest = &stream[framed.rest..];
    let ok = match (&framed.end, service.framing) {
        (FrameEnd::Pending, CountFraming::Header { .. }) => rest.is_empty(),
        // A last line without its end is a message all the same.
        (FrameEnd::Pending, _) => {
            if !rest.is_empty() {
                reply(count_of(rest, service.unit), &mut out);
            }
            true
        }
        (FrameEnd::LineTooLong, _) => {
            let max = service.max_frame;
            out.extend_from_slice(format!("error: message longer than {max} bytes\n").as_bytes());
            false
        }
        _ => false,
    };
    (out, ok)
}
