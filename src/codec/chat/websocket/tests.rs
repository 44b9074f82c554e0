//! The websocket dialect over byte slices: the request, the frames, the
//! JSON, and every refusal with its status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

/// RFC 6455 section 1.3's key, from a page on the listener's own origin.
pub(crate) const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Upgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://127.0.0.1:8080\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

const ACCEPTED: &str = "HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

fn settings(origins: &[&str], ping: Option<Duration>) -> Arc<WebSocketSettings> {
    Arc::new(WebSocketSettings {
        allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
        ping_interval: ping,
    })
}

fn decoder() -> WebSocketChatDecoder {
    WebSocketChat::new(settings(&[], None), 1024).decoder()
}

/// What `input` comes to, one line per item: `msg ...`, `reply ...` (its
/// first line, or its frame), `close`, or `error ...`.
fn run(decoder: &mut WebSocketChatDecoder, input: &[u8]) -> Vec<String> {
    decoder.extend(input);
    let mut got = Vec::new();
    loop {
        match decoder.next_decoded() {
            Ok(None) => return got,
            Ok(Some(Decoded::Msg(m))) => got.push(format!("msg {m:?}")),
            Ok(Some(Decoded::Reply(r))) if r.starts_with(b"HTTP/") => {
                let text = String::from_utf8_lossy(r);
                got.push(format!("reply {}", text.lines().next().unwrap_or_default()));
            }
            Ok(Some(Decoded::Reply(r))) => got.push(format!("reply {r:?}")),
            Ok(Some(Decoded::Close)) => got.push("close".into()),
            Err(e) => {
                got.push(format!("error {:?}: {}", e.code(), e.reason()));
                return got;
            }
        }
    }
}

fn request(path: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: chat.example:8080\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

const UPGRADE_HEADERS: [&str; 4] = [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

fn upgraded() -> WebSocketChatDecoder {
    let mut d = decoder();
    assert_eq!(
        run(&mut d, UPGRADE),
        ["reply HTTP/1.1 101 Switching Protocols"]
    );
    d
}

fn client(msg: ClientMsg<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_client_msg(msg, CLIENT_MASK, &mut out);
    out
}

fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::push_masked(&mut out, opcode, true, payload, CLIENT_MASK);
    out
}

/// The frame `event` encodes to, as the text of its payload.
fn encoded(event: &Event) -> String {
    let mut out = Vec::new();
    WebSocketChat::encode(event, &mut out);
    assert_eq!(out[0], 0x81, "a final text frame");
    let (len, at) = match out[1] {
        126 => (usize::from(u16::from_be_bytes([out[2], out[3]])), 4),
        127 => panic!("no event here is that long"),
        n => (usize::from(n), 2),
    };
    assert_eq!(out.len(), at + len);
    String::from_utf8(out[at..].to_vec()).unwrap()
}

#[test]
fn the_upgrade_answers_rfc_6455s_example_key() {
    let mut d = decoder();
    d.extend(UPGRADE);
    match d.next_decoded() {
        Ok(Some(Decoded::Reply(r))) => assert_eq!(String::from_utf8_lossy(r), ACCEPTED),
        other => panic!("{other:?}"),
    }
    assert!(d.takes_events());
    assert_eq!(d.next_decoded(), Ok(None));
}

#[test]
fn a_request_split_anywhere_and_frames_behind_it_are_read_alike() {
    let mut stream = UPGRADE.to_vec();
    stream.extend(client(ClientMsg::Hello { name: "Dian" }));
    let want = [
        "reply HTTP/1.1 101 Switching Protocols",
        r#"msg Hello { name: "Dian" }"#,
    ];
    assert_eq!(run(&mut decoder(), &stream), want);
    for cut in 0..stream.len() {
        let mut d = decoder();
        let mut got = run(&mut d, &stream[..cut]);
        got.extend(run(&mut d, &stream[cut..]));
        assert_eq!(got, want, "cut at {cut}");
    }
}

#[test]
fn the_page_is_served_at_the_root_and_the_connection_closed() {
    for path in ["/", "/?name=x", "/index.html"] {
        let mut d = decoder();
        d.extend(&request(path, &[]));
        let Ok(Some(Decoded::Reply(r))) = d.next_decoded() else {
            panic!("no reply for {path}");
        };
        let text = String::from_utf8_lossy(r).into_owned();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("Content-Length: {}\r\n", PAGE.len())));
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.ends_with(PAGE));
        assert_eq!(d.next_decoded(), Ok(Some(Decoded::Close)));
        assert_eq!(d.next_decoded(), Ok(None));
        assert!(!d.takes_events());
    }
}

#[test]
fn other_requests_are_refused_in_words_and_closed() {
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (request("/nothing", &[]), "404 Not Found"),
        (request("/favicon.ico", &[]), "404 Not Found"),
        (
            b"POST / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "405 Method Not Allowed",
        ),
        (request("/ws", &[]), "426 Upgrade Required"),
        (
            request(
                "/ws",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    key,
                    "Sec-WebSocket-Version: 8",
                ],
            ),
            "426 Upgrade Required",
        ),
        (
            request(
                "/ws",
                &[
                    "Upgrade: websocket",
                    "Connection: Upgrade",
                    "Sec-WebSocket-Version: 13",
                ],
            ),
            "400 Bad Request",
        ),
        (
            b"GET /ws HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            "400 Bad Request",
        ),
        (
            request("/", &["X-Padding: aaaaaaaaaa"; 41]),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (input, status) in cases {
        let mut d = decoder();
        assert_eq!(
            run(&mut d, &input),
            [format!("reply HTTP/1.1 {status}"), "close".into()],
            "{}",
            String::from_utf8_lossy(&input)
        );
    }
    // A request that never ends is refused once past the limit.
    let mut d = decoder();
    assert_eq!(run(&mut d, b"GET / HTTP/1.1\r\n"), Vec::<String>::new());
    let got = run(&mut d, &vec![b'a'; http::MAX_REQUEST]);
    assert_eq!(
        got,
        [
            "reply HTTP/1.1 431 Request Header Fields Too Large",
            "close"
        ]
    );
}

#[test]
fn refusals_say_why() {
    let mut d = decoder();
    d.extend(&request("/ws", &[]));
    let Ok(Some(Decoded::Reply(r))) = d.next_decoded() else {
        panic!()
    };
    let text = String::from_utf8_lossy(r);
    assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
    assert!(
        text.ends_with("426 Upgrade Required: this is the chat's WebSocket; the page is at /\n"),
        "{text}"
    );
}

#[test]
fn origins_are_the_pages_own_unless_more_are_allowed() {
    let with_origin = |origin: &str| {
        let mut headers = UPGRADE_HEADERS.to_vec();
        let origin = format!("Origin: {origin}");
        headers.push(&origin);
        request("/ws", &headers)
    };
    let cases = [
        (&[][..], "http://chat.example:8080", true),
        (&[], "https://CHAT.example:8080", true),
        (&[], "http://chat.example", false),
        (&[], "http://evil.example:8080", false),
        (&[], "null", false),
        (&["https://app.example"], "https://app.example", true),
        (&["https://app.example"], "http://app.example", false),
        (&["https://app.example"], "http://chat.example:8080", true),
        (&["*"], "http://evil.example", true),
    ];
    for (allowed, origin, ok) in cases {
        let mut d = WebSocketChat::new(settings(allowed, None), 1024).decoder();
        let got = run(&mut d, &with_origin(origin));
        let want: Vec<String> = if ok {
            vec!["reply HTTP/1.1 101 Switching Protocols".into()]
        } else {
            vec!["reply HTTP/1.1 403 Forbidden".into(), "close".into()]
        };
        assert_eq!(got, want, "{origin} with {allowed:?}");
    }
    // No Origin: not a browser, admitted.
    let mut d = decoder();
    assert_eq!(
        run(&mut d, &request("/ws", &UPGRADE_HEADERS)),
        ["reply HTTP/1.1 101 Switching Protocols"]
    );
}

#[test]
fn client_messages_golden_json() {
    for (msg, json) in [
        (
            ClientMsg::Hello { name: "Dian" },
            r#"{"type":"hello","name":"Dian"}"#,
        ),
        (
            ClientMsg::Say {
                text: "Hello World",
            },
            r#"{"type":"say","text":"Hello World"}"#,
        ),
        (
            ClientMsg::Say { text: "\"語\"\n" },
            r#"{"type":"say","text":"\"語\"\n"}"#,
        ),
        (ClientMsg::Who, r#"{"type":"who"}"#),
        (ClientMsg::Bye, r#"{"type":"bye"}"#),
    ] {
        let mut text = Vec::new();
        json::write_client_msg(msg, &mut text);
        assert_eq!(String::from_utf8(text).unwrap(), json);
        let mut d = upgraded();
        assert_eq!(
            run(&mut d, &masked(OpCode::Data(Data::Text), json.as_bytes())),
            [format!("msg {msg:?}")]
        );
    }
    // Escapes, white space and field order as a browser may send them.
    let mut d = upgraded();
    let got = run(
        &mut d,
        &masked(
            OpCode::Data(Data::Text),
            br#" { "name" : "Ra\u0066i \ud83d\ude00", "type" : "hello" } "#,
        ),
    );
    assert_eq!(got, [r#"msg Hello { name: "Rafi 😀" }"#]);
}

#[test]
fn server_messages_golden_json() {
    let s = |t: &str| -> Arc<str> { Arc::from(t) };
    for (event, json) in [
        (
            Event::Welcome {
                id: 7,
                name: s("Dian"),
                addr: s("127.0.0.1:5000"),
                online: 2,
            },
            r#"{"type":"welcome","id":7,"addr":"127.0.0.1:5000","online":2}"#,
        ),
        (
            Event::Message {
                from: s("Dian"),
                text: s("Hello \"World\" <b>"),
            },
            r#"{"type":"message","from":"Dian","text":"Hello \"World\" <b>"}"#,
        ),
        (
            Event::Joined {
                name: s("Ayu"),
                addr: s("[::1]:1"),
                online: 3,
                node: None,
            },
            r#"{"type":"joined","name":"Ayu","addr":"[::1]:1","online":3}"#,
        ),
        (
            Event::Left {
                name: s("Ayu"),
                online: 2,
                node: None,
            },
            r#"{"type":"left","name":"Ayu","online":2}"#,
        ),
        // Members of other nodes of a cluster, and news of the link.
        (
            Event::Joined {
                name: s("Bo"),
                addr: s("10.0.0.9:2 on node-b"),
                online: 4,
                node: Some(s("node-b")),
            },
            r#"{"type":"joined","name":"Bo","addr":"10.0.0.9:2 on node-b","online":4,"node":"node-b"}"#,
        ),
        (
            Event::Left {
                name: s("Bo"),
                online: 3,
                node: Some(s("node-b")),
            },
            r#"{"type":"left","name":"Bo","online":3,"node":"node-b"}"#,
        ),
        (
            Event::Notice {
                text: s("the link to the cluster is down"),
            },
            r#"{"type":"notice","text":"the link to the cluster is down"}"#,
        ),
        (
            Event::Roster {
                names: vec![s("Dian"), s("Rafi")],
            },
            r#"{"type":"roster","names":["Dian","Rafi"]}"#,
        ),
        (
            Event::Roster { names: vec![] },
            r#"{"type":"roster","names":[]}"#,
        ),
        (
            Event::error(ErrorCode::NameTaken, "name is taken"),
            r#"{"type":"error","code":1,"reason":"name is taken"}"#,
        ),
    ] {
        assert_eq!(encoded(&event), json, "{event:?}");
        let parsed: ServerJson<'_> = serde_json::from_str(json).unwrap();
        assert_eq!(parsed, ServerJson::from(&event));
    }
    // Long text takes the 16-bit length.
    let long = Event::Message {
        from: s("a"),
        text: s(&"x".repeat(200)),
    };
    assert_eq!(
        encoded(&long).len(),
        200 + r#"{"type":"message","from":"a","text":""}"#.len()
    );
}

#[test]
fn a_ping_is_answered_and_a_close_echoed() {
    let mut d = upgraded();
    let got = run(
        &mut d,
        &masked(OpCode::Control(Control::Ping), b"are you there"),
    );
    let mut pong = vec![0x8a, 13];
    pong.extend_from_slice(b"are you there");
    assert_eq!(got, [format!("reply {pong:?}")]);
    assert_eq!(
        run(&mut d, &masked(OpCode::Control(Control::Pong), b"x")),
        Vec::<String>::new()
    );

    let got = run(
        &mut d,
        &masked(OpCode::Control(Control::Close), b"\x03\xe9tab closed"),
    );
    assert_eq!(
        got,
        [
            format!("reply {:?}", [0x88u8, 2, 0x03, 0xe9]),
            "close".into()
        ]
    );
    assert!(!d.takes_events());
    // Nothing after the close is read, and no second close goes out.
    assert_eq!(run(&mut d, &client(ClientMsg::Who)), Vec::<String>::new());
    let mut out = Vec::new();
    d.goodbye(None, &mut out);
    assert!(out.is_empty());
}

#[test]
fn refused_frames_end_with_their_close_code() {
    let cases: Vec<(Vec<u8>, &str, u16)> = vec![
        (
            masked(OpCode::Data(Data::Binary), b"\x01\x02"),
            "error BadFrame: binary messages are not accepted: send JSON as text",
            1003,
        ),
        (
            masked(OpCode::Data(Data::Text), b"\xc3\x28"),
            "error BadFrame: text message is not valid UTF-8 (byte 0)",
            1007,
        ),
        (
            masked(OpCode::Data(Data::Text), &[b' '; 1025]),
            "error FrameTooLarge: message of 1025 bytes is longer than the maximum of 1024",
            1009,
        ),
        (
            masked(OpCode::Data(Data::Text), br#"{"type":"shout","text":"hi"}"#),
            "error BadFrame: not a chat message (unknown variant `shout`, expected one of `hello`, `say`, `who`, `bye` at line 1 column 15); expected {\"type\": \"hello\" | \"say\" | \"who\" | \"bye\", ...}",
            1008,
        ),
        (
            masked(OpCode::Data(Data::Text), b"hello"),
            "error BadFrame: not a chat message (expected value at line 1 column 1); expected {\"type\": \"hello\" | \"say\" | \"who\" | \"bye\", ...}",
            1008,
        ),
    ];
    for (input, error, code) in cases {
        let mut d = upgraded();
        assert_eq!(run(&mut d, &input), [error], "{input:?}");
        assert!(!d.takes_events());
        let mut out = Vec::new();
        // The decoder's own reason wins over the room's error.
        d.goodbye(Some((ErrorCode::BadFrame, "ignored")), &mut out);
        assert_eq!(&out[2..4], code.to_be_bytes(), "{error}");
        assert_eq!(out[0], 0x88);
        assert_eq!(run(&mut d, &client(ClientMsg::Who)), Vec::<String>::new());
    }
}

#[test]
fn the_room_closes_with_the_status_its_error_maps_to() {
    for (error, code, reason) in [
        (None, 1000u16, "goodbye"),
        (
            Some((ErrorCode::NameTaken, "name is taken")),
            1008,
            "name is taken",
        ),
        (
            Some((ErrorCode::RoomFull, "the room is full")),
            1013,
            "the room is full",
        ),
        (Some((ErrorCode::ServerShutdown, "bye")), 1001, "bye"),
        (Some((ErrorCode::TimedOut, "idle")), 1008, "idle"),
    ] {
        let mut d = upgraded();
        let mut out = Vec::new();
        d.goodbye(error, &mut out);
        let mut want = vec![0x88, (2 + reason.len()) as u8];
        want.extend(code.to_be_bytes());
        want.extend(reason.as_bytes());
        assert_eq!(out, want);
        out.clear();
        d.goodbye(error, &mut out);
        assert!(out.is_empty(), "one close frame only");
    }
    // Before the upgrade: HTTP, for the two that have a status.
    for (error, status) in [
        (Some((ErrorCode::TimedOut, "")), Some("408 Request Timeout")),
        (
            Some((ErrorCode::ServerShutdown, "")),
            Some("503 Service Unavailable"),
        ),
        (None, None),
    ] {
        let mut d = decoder();
        assert!(!d.takes_events());
        let mut out = Vec::new();
        d.goodbye(error, &mut out);
        let first = String::from_utf8_lossy(&out)
            .lines()
            .next()
            .map(str::to_owned);
        assert_eq!(first, status.map(|s| format!("HTTP/1.1 {s}")));
    }
}

#[test]
fn keepalive_pings_the_silent_and_expires_the_mute() {
    let t0 = Instant::now();
    let sec = Duration::from_secs(1);
    let mut d = WebSocketChat::new(settings(&[], Some(sec)), 1024).decoder();
    let mut out = Vec::new();
    // Not before the upgrade.
    assert_eq!(d.keepalive(t0, &mut out), Keepalive::Quiet);
    run(&mut d, UPGRADE);
    assert_eq!(
        d.keepalive(t0, &mut out),
        Keepalive::Quiet,
        "the first round sets the clock"
    );
    assert_eq!(
        d.keepalive(t0 + sec / 2, &mut out),
        Keepalive::Quiet,
        "not due"
    );
    assert_eq!(d.keepalive(t0 + sec, &mut out), Keepalive::Pinged);
    assert_eq!(out, [0x89, 6, b'n', b'e', b't', b'l', b'a', b'b']);
    // Answered: the next round leaves it alone, the one after pings again.
    run(&mut d, &masked(OpCode::Control(Control::Pong), b"netlab"));
    assert_eq!(d.keepalive(t0 + 2 * sec, &mut out), Keepalive::Quiet);
    assert_eq!(d.keepalive(t0 + 3 * sec, &mut out), Keepalive::Pinged);
    assert_eq!(d.keepalive(t0 + 4 * sec, &mut out), Keepalive::Expired);
    // Any frame counts as an answer.
    let mut d = WebSocketChat::new(settings(&[], Some(sec)), 1024).decoder();
    run(&mut d, UPGRADE);
    d.keepalive(t0, &mut out);
    assert_eq!(d.keepalive(t0 + sec, &mut out), Keepalive::Pinged);
    run(&mut d, &client(ClientMsg::Who));
    assert_eq!(d.keepalive(t0 + 2 * sec, &mut out), Keepalive::Quiet);
    // No interval, no pings.
    let mut d = upgraded();
    for i in 0..5 {
        assert_eq!(d.keepalive(t0 + i * sec, &mut out), Keepalive::Quiet);
    }
}
