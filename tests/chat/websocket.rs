//! The websocket dialect with a real WebSocket client (tungstenite's, on a
//! blocking socket with timeouts) and, where a client must misbehave in
//! ways tungstenite will not, raw frames: the handshake, every message
//! type both ways with an `nc`-style line client in the same room, the page
//! and the refusals, bad origins, oversized, binary, invalid and
//! fragmented messages closed with their status, pings both ways, a reader
//! that never reads, and wss.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use netlab::codec::chat::websocket::frame::push_masked;
use netlab::server::RunningServer;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Message, WebSocket};

use crate::client::*;
use crate::common::*;
use crate::pki::Pki;

fn websocket() -> Dialect {
    Dialect::named("websocket", 0).unwrap()
}

/// A room with a line listener (0) and a websocket one (1), and `extra`
/// keys. Named `ws` so that its thread, `ws-room`, is not taken for one of
/// the `chat-room` threads that `workers.rs` counts.
fn room(extra: &str) -> (RunningServer, SocketAddr, SocketAddr) {
    let listen: Vec<String> = [Dialect::Line, websocket()]
        .iter()
        .map(|d| d.listen())
        .collect();
    let server = start(&format!(
        "name = \"ws\"\nservice = \"chat\"\nlisten = [{}]\n{extra}\n",
        listen.join(", ")
    ));
    let addrs = server.local_addrs().to_vec();
    (server, addrs[0], addrs[1])
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The handshake of tungstenite's client, with `origin` if given.
fn try_ws<S: Read + Write>(
    addr: SocketAddr,
    stream: S,
    origin: Option<&str>,
) -> Result<WebSocket<S>, tungstenite::Error> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((ws, response)) => {
            assert_eq!(response.status(), 101);
            Ok(ws)
        }
        Err(HandshakeError::Failure(e)) => Err(e),
        Err(HandshakeError::Interrupted(_)) => panic!("a blocking handshake was interrupted"),
    }
}

fn ws(addr: SocketAddr) -> WebSocket<TcpStream> {
    try_ws(addr, tcp(addr), None).unwrap_or_else(|e| panic!("handshake with {addr}: {e}"))
}

fn send(ws: &mut WebSocket<impl Read + Write>, msg: Value) {
    ws.send(Message::text(msg.to_string())).unwrap();
}

/// The next message that is not a ping or a pong, as JSON, or the close.
fn recv(ws: &mut WebSocket<impl Read + Write>) -> Result<Value, Option<CloseFrame>> {
    loop {
        match ws.read() {
            Ok(Message::Text(text)) => {
                return Ok(serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("not JSON: {text:?}: {e}")));
            }
            Ok(Message::Close(frame)) => return Err(frame),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn expect(ws: &mut WebSocket<impl Read + Write>, want: Value) {
    assert_eq!(recv(ws), Ok(want));
}

/// Expects a close frame with `code` and a reason that contains `reason`.
fn expect_close(ws: &mut WebSocket<impl Read + Write>, code: u16, reason: &str) {
    loop {
        match recv(ws) {
            Ok(Value::Object(m)) if m["type"] == "error" => continue,
            Ok(other) => panic!("expected a close, got {other}"),
            Err(Some(frame)) => {
                assert_eq!(u16::from(frame.code), code, "{frame:?}");
                assert!(frame.reason.contains(reason), "{frame:?}");
                return;
            }
            Err(None) => panic!("a close without a status"),
        }
    }
}

/// Joins as `name` and checks the welcome.
fn join(ws: &mut WebSocket<impl Read + Write>, name: &str, online: u32) {
    send(ws, json!({"type": "hello", "name": name}));
    let welcome = recv(ws).unwrap();
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["online"], online, "{welcome}");
    assert!(welcome["id"].is_u64(), "{welcome}");
    assert!(
        welcome["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{welcome}"
    );
}

/// A raw upgrade on `s`; returns what came after the response.
fn raw_upgrade(s: &mut TcpStream, addr: SocketAddr) -> Vec<u8> {
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]);
            assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
            assert!(
                head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                "{head}"
            );
            return got[end + 4..].to_vec();
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed during the upgrade");
        got.extend_from_slice(&buf[..n]);
    }
}

fn frame(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    push_masked(&mut out, opcode, is_final, payload, [9, 8, 7, 6]);
    out
}

const TEXT: OpCode = OpCode::Data(Data::Text);

/// Reads until the server closes; the close frame's status and reason, if
/// the stream holds one (after any text frames).
fn raw_close(s: &mut TcpStream, mut got: Vec<u8>) -> (u16, String) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // What the client wrote after the server closed may come back
            // as a reset; what came before it counts.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e} after {got:?}"),
        }
    }
    let mut rest = &got[..];
    while let [op, len, more @ ..] = rest {
        let (len, more) = match *len {
            126 => (
                usize::from(u16::from_be_bytes([more[0], more[1]])),
                &more[2..],
            ),
            n => (usize::from(n), more),
        };
        if op & 0x0f == 8 {
            let code = u16::from_be_bytes([more[0], more[1]]);
            return (code, String::from_utf8_lossy(&more[2..len]).into_owned());
        }
        rest = &more[len..];
    }
    panic!("no close frame in {got:?}")
}

#[test]
fn a_browser_client_and_a_line_client_share_every_message_type() {
    let (_server, line_addr, ws_addr) = room("");
    let mut nc = Client::join(line_addr, Dialect::Line, "nc");
    let mut dian = ws(ws_addr);
    join(&mut dian, "Dian", 2);
    nc.expect_bytes(b"* Dian joined (2 online)\n");

    // say, both ways; the text reaches each dialect as written.
    send(
        &mut dian,
        json!({"type": "say", "text": "hi <b>nc</b> \"quoted\" 語"}),
    );
    nc.expect_bytes("[Dian] hi <b>nc</b> \"quoted\" 語\n".as_bytes());
    nc.say("hello browser");
    expect(
        &mut dian,
        json!({"type": "message", "from": "nc", "text": "hello browser"}),
    );

    // who, and a second hello.
    send(&mut dian, json!({"type": "who"}));
    expect(
        &mut dian,
        json!({"type": "roster", "names": ["Dian", "nc"]}),
    );
    send(&mut dian, json!({"type": "hello", "name": "again"}));
    expect(
        &mut dian,
        json!({"type": "error", "code": 8, "reason": "you already have a name"}),
    );

    // A second browser: joined for the first, roster for both.
    let mut rafi = ws(ws_addr);
    join(&mut rafi, "Rafi", 3);
    expect_joined(&mut dian, "Rafi", 3);
    nc.expect_bytes(b"* Rafi joined (3 online)\n");

    // left, for a line client that quits; bye ends with a normal close.
    nc.send(netlab::chat::ClientMsg::Bye);
    expect(
        &mut dian,
        json!({"type": "left", "name": "nc", "online": 2}),
    );
    expect(
        &mut rafi,
        json!({"type": "left", "name": "nc", "online": 2}),
    );
    send(&mut rafi, json!({"type": "bye"}));
    expect_close(&mut rafi, 1000, "goodbye");
    expect(
        &mut dian,
        json!({"type": "left", "name": "Rafi", "online": 1}),
    );

    // A close from the client: echoed, and the room is told.
    let mut ayu = ws(ws_addr);
    join(&mut ayu, "Ayu", 2);
    expect_joined(&mut dian, "Ayu", 2);
    ayu.close(None).unwrap();
    loop {
        match ayu.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    expect(
        &mut dian,
        json!({"type": "left", "name": "Ayu", "online": 1}),
    );
}

/// Expects `name` joined, `online` now (its address is the peer's).
fn expect_joined(ws: &mut WebSocket<impl Read + Write>, name: &str, online: u32) {
    let got = recv(ws).unwrap();
    assert_eq!(got["type"], "joined", "{got}");
    assert_eq!(got["name"], name, "{got}");
    assert_eq!(got["online"], online, "{got}");
    assert!(
        got["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{got}"
    );
}

#[test]
fn a_taken_name_is_said_so_and_closed_with_a_policy_status() {
    let (_server, line_addr, ws_addr) = room("");
    let _nc = Client::join(line_addr, Dialect::Line, "Dian");
    let mut late = ws(ws_addr);
    send(&mut late, json!({"type": "hello", "name": "Dian"}));
    expect(
        &mut late,
        json!({"type": "error", "code": 1, "reason": "name is taken"}),
    );
    expect_close(&mut late, 1008, "name is taken");
    // A message before any name: the same, with its own reason.
    let mut early = ws(ws_addr);
    send(&mut early, json!({"type": "say", "text": "hi"}));
    expect(
        &mut early,
        json!({"type": "error", "code": 5, "reason": "send your name first"}),
    );
    expect_close(&mut early, 1008, "send your name first");
}

#[test]
fn the_page_is_served_at_the_root_and_other_paths_are_not_found() {
    let (_server, _line, ws_addr) = room("");
    let get = |path: &str| {
        let mut s = tcp(ws_addr);
        write!(s, "GET {path} HTTP/1.1\r\nHost: {ws_addr}\r\n\r\n").unwrap();
        read_to_eof(&mut s)
    };
    let page = String::from_utf8(get("/")).unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.ends_with(netlab::codec::chat::websocket::PAGE));
    assert!(page.contains("<title>netlab chat</title>"));
    let missing = String::from_utf8(get("/etc/passwd")).unwrap();
    assert!(
        missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{missing}"
    );
    let plain = String::from_utf8(get("/ws")).unwrap();
    assert!(
        plain.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{plain}"
    );
}

#[test]
fn an_origin_other_than_the_pages_is_refused() {
    let (_server, _line, ws_addr) = room("");
    let own = format!("http://{ws_addr}");
    let mut ok = try_ws(ws_addr, tcp(ws_addr), Some(&own)).unwrap();
    join(&mut ok, "Dian", 1);
    match try_ws(ws_addr, tcp(ws_addr), Some("http://evil.example")) {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            assert!(
                body.contains("pages from http://evil.example may not open this socket"),
                "{body}"
            );
        }
        Err(e) => panic!("refused, but not with 403: {e}"),
        Ok(_) => panic!("a foreign origin was let in"),
    }
    // allowed_origins lets a listed one in.
    let server = start(
        "name = \"c\"\nservice = \"chat\"\nlisten = [{ addr = \"127.0.0.1:0\", dialect = \"websocket\", allowed_origins = [\"https://app.example\"] }]\n",
    );
    let addr = server.local_addrs()[0];
    let mut listed = try_ws(addr, tcp(addr), Some("https://app.example")).unwrap();
    join(&mut listed, "Rafi", 1);
    assert!(try_ws(addr, tcp(addr), Some("https://other.example")).is_err());
}

#[test]
fn oversized_binary_invalid_and_malformed_messages_are_closed_with_their_status() {
    let (_server, line_addr, ws_addr) = room("max_frame = 1024");
    let mut nc = Client::join(line_addr, Dialect::Line, "nc");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "oversized",
            frame(
                TEXT,
                true,
                json!({"type": "say", "text": "x".repeat(2000)})
                    .to_string()
                    .as_bytes(),
            ),
            1009,
            "longer than the maximum of 1024",
        ),
        (
            "fragmented past max_frame",
            [
                frame(TEXT, false, &[b' '; 600]),
                frame(OpCode::Data(Data::Continue), true, &[b' '; 600]),
            ]
            .concat(),
            1009,
            "message of 1200 bytes",
        ),
        (
            "binary",
            frame(OpCode::Data(Data::Binary), true, b"\x00\x01"),
            1003,
            "binary messages are not accepted",
        ),
        (
            "invalid UTF-8",
            frame(TEXT, true, b"{\"type\":\"say\",\"text\":\"\xff\"}"),
            1007,
            "not valid UTF-8",
        ),
        (
            "not a chat message",
            frame(TEXT, true, b"[1, 2]"),
            1008,
            "not a chat message",
        ),
        ("unmasked", b"\x81\x02hi".to_vec(), 1002, "must be masked"),
    ];
    for (i, (what, bytes, code, reason)) in cases.into_iter().enumerate() {
        let mut s = tcp(ws_addr);
        let mut got = raw_upgrade(&mut s, ws_addr);
        let name = format!("c{i}");
        s.write_all(&frame(
            TEXT,
            true,
            json!({"type": "hello", "name": name})
                .to_string()
                .as_bytes(),
        ))
        .unwrap();
        nc.expect_bytes(format!("* {name} joined (2 online)\n").as_bytes());
        // Whatever the write meets once the server has closed is fine.
        let _ = s.write_all(&bytes);
        nc.expect_bytes(format!("* {name} left (1 online)\n").as_bytes());
        // The welcome, the error, then the close.
        let (status, why) = raw_close(&mut s, std::mem::take(&mut got));
        assert_eq!(status, code, "{what}: {why}");
        assert!(why.contains(reason), "{what}: {why}");
    }
}

#[test]
fn pings_are_answered_and_silent_clients_are_pinged_then_closed() {
    let server = start(
        "name = \"c\"\nservice = \"chat\"\nlisten = [{ addr = \"127.0.0.1:0\", dialect = \"websocket\", ping_interval = \"200ms\" }]\n",
    );
    let addr = server.local_addrs()[0];
    // A raw client that never answers is closed, and told why.
    let mut mute = tcp(addr);
    let got = raw_upgrade(&mut mute, addr);
    mute.write_all(&frame(TEXT, true, br#"{"type":"hello","name":"mute"}"#))
        .unwrap();
    let started = Instant::now();
    let (code, why) = raw_close(&mut mute, got);
    assert_eq!((code, why.as_str()), (1008, "no answer to a ping"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // tungstenite's client answers pings as it reads, and its own are
    // answered.
    let mut dian = ws(addr);
    join(&mut dian, "Dian", 1);
    dian.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    loop {
        match dian.read().unwrap() {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Message::Ping(_) => {}
            other => panic!("{other:?}"),
        }
    }
    // tungstenite answers the server's pings as it reads: it stays.
    let until = Instant::now() + Duration::from_millis(900);
    dian.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut pinged = 0;
    while Instant::now() < until {
        match dian.read() {
            Ok(Message::Ping(_)) => pinged += 1,
            Ok(other) => panic!("{other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
        let _ = dian.flush();
    }
    assert!(pinged >= 1, "no ping in 900 ms with a 200 ms interval");

    // The one that answered is still there.
    dian.get_mut().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    send(&mut dian, json!({"type": "who"}));
    expect(&mut dian, json!({"type": "roster", "names": ["Dian"]}));
}

#[test]
fn a_websocket_client_that_never_reads_is_dropped_and_the_room_goes_on() {
    let (_server, line_addr, ws_addr) = room("queue_bytes = 65536\nqueue_frames = 100000");
    let mut stalled = connect_small_rcvbuf(ws_addr);
    stalled.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stalled.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let _ = raw_upgrade(&mut stalled, ws_addr);
    stalled
        .write_all(&frame(TEXT, true, br#"{"type":"hello","name":"stalled"}"#))
        .unwrap();
    let mut reader = ws(ws_addr);
    join(&mut reader, "reader", 2);
    let mut sender = Client::join(line_addr, Dialect::Line, "sender");
    expect_joined(&mut reader, "sender", 3);
    let text = "m".repeat(500);
    let started = Instant::now();
    let mut sent = 0;
    let mut dropped = false;
    // Up to 8000 messages of 550 bytes in JSON: far past the 64 KiB bound
    // and what the sockets hold.
    while sent < 8000 {
        sender.say(&text);
        sent += 1;
        let got = recv(&mut reader).unwrap();
        if got["type"] == "left" {
            assert_eq!(got["name"], "stalled");
            dropped = true;
            break;
        }
        assert_eq!(got["type"], "message", "{got}");
    }
    assert!(
        dropped,
        "the client that never reads is still in the room after {sent} messages"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The room goes on.
    sender.say("after");
    loop {
        let got = recv(&mut reader).unwrap();
        assert_eq!(got["type"], "message", "{got}");
        if got["text"] == "after" {
            break;
        }
    }
}

#[test]
fn wss_through_the_listeners_tls() {
    let pki = Pki::new();
    let server = start(&format!(
        "name = \"c\"\nservice = \"chat\"\nlisten = [{{ addr = \"127.0.0.1:0\", dialect = \"websocket\", tls = {} }}, {{ addr = \"127.0.0.1:0\", dialect = \"line\" }}]\n",
        pki.server_tls()
    ));
    let addr = server.local_addrs()[0];
    let config = netlab::tls::client_config(&netlab::tls::ClientFiles {
        ca: Some(pki.ca.clone()),
        ..Default::default()
    })
    .unwrap();
    let conn = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let tls = rustls::StreamOwned::new(conn, tcp(addr));
    let mut dian = try_ws(addr, tls, Some(&format!("https://{addr}"))).unwrap();
    join(&mut dian, "Dian", 1);
    let mut nc = Client::join(server.local_addrs()[1], Dialect::Line, "nc");
    expect_joined(&mut dian, "nc", 2);
    nc.say("over TLS");
    expect(
        &mut dian,
        json!({"type": "message", "from": "nc", "text": "over TLS"}),
    );
    send(&mut dian, json!({"type": "say", "text": "wss"}));
    nc.expect_bytes(b"[Dian] wss\n");

    // netlab's own client, over the same TLS listener.
    let options = netlab::client::ClientOptions::new(IO_TIMEOUT).with_tls(
        netlab::client::TlsClient::new(&netlab::tls::ClientFiles {
            ca: Some(pki.ca.clone()),
            ..Default::default()
        })
        .unwrap(),
    );
    let mut own =
        netlab::client::ChatClient::connect_with(addr, "Own", websocket(), &options).unwrap();
    assert_eq!(own.online_at_welcome(), 3);
    nc.say("to everyone");
    assert_eq!(
        own.recv(IO_TIMEOUT).unwrap(),
        Some(netlab::client::ChatEvent::Message {
            from: "nc".into(),
            text: "to everyone".into()
        })
    );
}

/// On a room of two reactors, browsers on either one hear each other and
/// the line client, and the keepalive (ticked by both) pings once a round.
#[test]
fn websocket_clients_on_two_reactors_share_the_room_and_its_keepalive() {
    let server = start(
        "name = \"c\"\nservice = \"chat\"\nworkers = 2\nlisten = [{ addr = \"127.0.0.1:0\", dialect = \"websocket\", ping_interval = \"300ms\" }, { addr = \"127.0.0.1:0\", dialect = \"line\" }]\n",
    );
    let (ws_addr, line_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    // Connections are dealt to the reactors in turn: four browsers cover both.
    let mut pages: Vec<WebSocket<TcpStream>> = (0..4).map(|_| ws(ws_addr)).collect();
    for (i, page) in pages.iter_mut().enumerate() {
        join(page, &format!("p{i}"), i as u32 + 1);
    }
    let mut nc = Client::join(line_addr, Dialect::Line, "nc");
    for (i, page) in pages.iter_mut().enumerate() {
        for j in i + 1..4 {
            expect_joined(page, &format!("p{j}"), j as u32 + 1);
        }
        expect_joined(page, "nc", 5);
    }
    send(&mut pages[0], json!({"type": "say", "text": "from p0"}));
    nc.expect_bytes(b"[p0] from p0\n");
    for page in &mut pages[1..] {
        expect(
            page,
            json!({"type": "message", "from": "p0", "text": "from p0"}),
        );
    }
    // Silent for two rounds and more: each page is pinged (and answers,
    // as tungstenite does while it reads), and none is closed.
    for page in &mut pages {
        page.get_mut()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
    }
    let until = Instant::now() + Duration::from_millis(1500);
    let mut pings = [0; 4];
    while Instant::now() < until {
        for (i, page) in pages.iter_mut().enumerate() {
            match page.read() {
                Ok(Message::Ping(_)) => pings[i] += 1,
                Ok(other) => panic!("p{i}: {other:?}"),
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("p{i}: {e}"),
            }
            let _ = page.flush();
        }
    }
    // At most one ping a round of 300 ms, however many reactors tick.
    for (i, n) in pings.iter().enumerate() {
        assert!((1..=5).contains(n), "p{i} was pinged {n} times in 1.5 s");
    }
    nc.say("still here?");
    for page in &mut pages {
        page.get_mut().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        expect(
            page,
            json!({"type": "message", "from": "nc", "text": "still here?"}),
        );
    }
}

/// netlab's own client speaks the dialect too: it asks for the upgrade,
/// talks with a line client both ways (text with quotes and accents, which
/// JSON escapes), reads the roster, stays through the server's keepalive
/// because it answers the pings as it reads (a client that does not is
/// closed within two intervals, as above), and leaves with a notice. Where
/// it cannot join, it says why in words.
#[test]
fn netlabs_own_client_joins_over_websocket_and_answers_the_keepalive() {
    use netlab::client::{ChatClient, ChatEvent};
    let server = start(
        "name = \"ws\"\nservice = \"chat\"\nlisten = [{ addr = \"127.0.0.1:0\", dialect = \"line\" }, { addr = \"127.0.0.1:0\", dialect = \"websocket\", ping_interval = \"200ms\" }]\n",
    );
    let (line_addr, ws_addr) = (server.local_addrs()[0], server.local_addrs()[1]);
    let mut web = ChatClient::connect(ws_addr, "Web", websocket(), IO_TIMEOUT).unwrap();
    assert_eq!(web.online_at_welcome(), 1);
    assert_eq!(web.seen_as(), Some("127.0.0.1".parse().unwrap()));
    let mut nc = ChatClient::connect(line_addr, "Nc", Dialect::Line, IO_TIMEOUT).unwrap();
    let next = |c: &mut ChatClient| c.recv(IO_TIMEOUT).unwrap().expect("an event in time");
    assert_eq!(
        next(&mut web),
        ChatEvent::Joined {
            name: "Nc".into(),
            online: 2
        }
    );
    nc.send("héllo \"web\" \\ o/").unwrap();
    assert_eq!(
        next(&mut web),
        ChatEvent::Message {
            from: "Nc".into(),
            text: "héllo \"web\" \\ o/".into()
        }
    );
    web.send("hi from the web").unwrap();
    assert_eq!(
        next(&mut nc),
        ChatEvent::Message {
            from: "Web".into(),
            text: "hi from the web".into()
        }
    );

    // Four ping intervals of silence from the client's side, reading only.
    let until = Instant::now() + Duration::from_millis(800);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        assert_eq!(web.recv(left).unwrap(), None);
    }
    web.who().unwrap();
    assert_eq!(
        next(&mut web),
        ChatEvent::Roster {
            names: vec!["Nc".into(), "Web".into()]
        }
    );

    // A name taken is refused with the server's reason; a listener of a
    // text dialect gives no upgrade, and takes no request line for a name.
    let taken = ChatClient::connect(ws_addr, "Nc", websocket(), IO_TIMEOUT).unwrap_err();
    assert!(taken.to_string().contains("taken"), "{taken}");
    let wrong = ChatClient::connect(line_addr, "Other", websocket(), IO_TIMEOUT).unwrap_err();
    let wrong = wrong.to_string();
    assert!(wrong.contains("upgrade to a WebSocket"), "{wrong}");
    assert!(wrong.contains("not HTTP"), "{wrong}");

    web.quit().unwrap();
    assert_eq!(
        next(&mut nc),
        ChatEvent::Left {
            name: "Web".into(),
            online: 1
        }
    );
}
