//! Bad input in each dialect: the client is told why in its dialect (where
//! the dialect can say it), its connection closes, and the rest of the room
//! notices nothing but, for a named client, its leaving.

use std::time::Duration;

use netlab::chat::ErrorCode;

use crate::client::*;
use crate::common::*;

const MAX_FRAME: usize = 1024;

/// What the client must be told.
enum Reason {
    Exact(&'static str),
    /// The reason starts and ends so; the middle depends on how the bytes
    /// were split by the network (a line's length when it was refused).
    Around(&'static str, &'static str),
}

struct Case {
    what: &'static str,
    dialect: Dialect,
    /// Bad bytes as the first frame (the name), or after a good name.
    as_name: bool,
    bytes: Vec<u8>,
    code: ErrorCode,
    reason: Reason,
}

fn frame_be(payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

fn client_bytes(dialect: Dialect, msg: netlab::chat::ClientMsg<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    dialect.codec().encode_client_msg(msg, &mut out);
    out
}

fn cases() -> Vec<Case> {
    use Dialect::*;
    use ErrorCode::*;
    use Reason::*;
    use netlab::chat::ClientMsg::Hello;
    let too_long = "frame of 1025 bytes is longer than the maximum of 1024";
    let long_name = "x".repeat(33);
    let long_name: &'static str = Box::leak(long_name.into_boxed_str());
    let mut cases = Vec::new();
    for as_name in [true, false] {
        // Framing errors: as the first frame, or after a name.
        cases.extend([
            Case {
                what: "line longer than max_frame",
                dialect: Line,
                as_name,
                bytes: vec![b'x'; 3000],
                code: FrameTooLarge,
                reason: Exact("line longer than the maximum of 1024 bytes"),
            },
            Case {
                what: "line not UTF-8",
                dialect: Line,
                as_name,
                bytes: b"ab\xffc\n".to_vec(),
                code: BadFrame,
                reason: Exact("line is not valid UTF-8 (byte 2)"),
            },
            Case {
                what: "header length over max_frame",
                dialect: Header { header_len: 10 },
                as_name,
                bytes: b"1025      xx".to_vec(),
                code: FrameTooLarge,
                reason: Exact(too_long),
            },
            Case {
                what: "header length of 20 digits",
                dialect: Header { header_len: 100 },
                as_name,
                bytes: seed_frame(100, "")
                    .iter()
                    .enumerate()
                    .map(|(i, &b)| if i < 20 { b'9' } else { b })
                    .collect(),
                code: FrameTooLarge,
                reason: Around(
                    "length header of 20 digits overflows (",
                    "); the longest frame is 1024 bytes",
                ),
            },
            // Refused from the first bad byte, before the header is whole.
            Case {
                what: "non-numeric partial header",
                dialect: Header { header_len: 10 },
                as_name,
                bytes: b"abc".to_vec(),
                code: BadFrame,
                reason: Exact(
                    r#"length header "abc" is not a decimal number left-justified and padded with spaces"#,
                ),
            },
            Case {
                what: "negative partial header",
                dialect: Header { header_len: 10 },
                as_name,
                bytes: b"-5".to_vec(),
                code: BadFrame,
                reason: Exact(
                    r#"length header "-5" is not a decimal number left-justified and padded with spaces"#,
                ),
            },
            // Whole headers (how much of it the server had when it refused
            // depends on the network, so only the wording is checked).
            Case {
                what: "non-numeric header",
                dialect: Header { header_len: 10 },
                as_name,
                bytes: b"abc       x".to_vec(),
                code: BadFrame,
                reason: Around(
                    r#"length header "a"#,
                    r#"" is not a decimal number left-justified and padded with spaces"#,
                ),
            },
            Case {
                what: "negative header",
                dialect: Header { header_len: 100 },
                as_name,
                bytes: format!("{:<100}hello", "-5").into_bytes(),
                code: BadFrame,
                reason: Around(
                    r#"length header "-"#,
                    r#"" is not a decimal number left-justified and padded with spaces"#,
                ),
            },
            Case {
                what: "number with a blank inside",
                dialect: Header { header_len: 10 },
                as_name,
                bytes: b"1 2       xxxxxxxxxxxx".to_vec(),
                code: BadFrame,
                reason: Exact(
                    r#"length header "1 2       " is not a decimal number left-justified and padded with spaces"#,
                ),
            },
            Case {
                what: "header payload not UTF-8",
                dialect: Header { header_len: 10 },
                as_name,
                bytes: b"3         a\xffb".to_vec(),
                code: BadFrame,
                reason: Exact("frame is not valid UTF-8 (byte 1)"),
            },
            Case {
                what: "bincode length over max_frame",
                dialect: Bincode,
                as_name,
                bytes: 1025u32.to_be_bytes().to_vec(),
                code: FrameTooLarge,
                reason: Exact(too_long),
            },
            Case {
                what: "bincode length 2^32-1",
                dialect: Bincode,
                as_name,
                bytes: vec![0xff; 4],
                code: FrameTooLarge,
                reason: Exact("frame of 4294967295 bytes is longer than the maximum of 1024"),
            },
            Case {
                what: "bincode unknown variant",
                dialect: Bincode,
                as_name,
                bytes: frame_be(&[9]),
                code: BadFrame,
                reason: Around("undecodable bincode frame: ", ""),
            },
            Case {
                what: "bincode string longer than its frame",
                dialect: Bincode,
                as_name,
                bytes: frame_be(&[0, 200, b'a']),
                code: BadFrame,
                reason: Exact("undecodable bincode frame: it ends inside a value"),
            },
            Case {
                what: "bincode trailing bytes",
                dialect: Bincode,
                as_name,
                bytes: frame_be(&[2, 0]),
                code: BadFrame,
                reason: Exact("bincode frame has 1 byte after its message"),
            },
        ]);
    }
    // Bad names, in every dialect.
    for dialect in [
        Line,
        Header { header_len: 10 },
        Header { header_len: 100 },
        Bincode,
    ] {
        for (name, reason) in [
            ("", "name is empty"),
            (long_name, "name is longer than 32 characters"),
            ("bad\u{1}name", "name contains a control character"),
            ("bad\u{1b}[31mname", "name contains a control character"),
            ("bad\tname", "name contains a control character"),
            (" padded", "name begins or ends with white space"),
            ("*", "name is reserved"),
        ] {
            cases.push(Case {
                what: "bad name",
                dialect: dialect.clone(),
                as_name: true,
                bytes: client_bytes(dialect.clone(), Hello { name }),
                code: NameInvalid,
                reason: Exact(reason),
            });
        }
    }
    // Talking before having a name.
    cases.push(Case {
        what: "Who before Hello",
        dialect: Bincode,
        as_name: true,
        bytes: frame_be(&[2]),
        code: NotNamed,
        reason: Exact("send your name first"),
    });
    cases
}

#[test]
fn bad_input_in_each_dialect_is_refused_and_the_room_notices_nothing() {
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Header { header_len: 100 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, &format!("max_frame = {MAX_FRAME}"));
    let addrs = server.local_addrs().to_vec();
    let at = |d: &Dialect| addrs[dialects.iter().position(|x| x == d).unwrap()];
    // A line observer, and a talker in bincode whose message must be the
    // next thing the observer sees after each case.
    let mut obs = Client::join(at(&Dialect::Line), Dialect::Line, "obs");
    let mut talker = Client::join(at(&Dialect::Bincode), Dialect::Bincode, "talker");
    obs.expect_bytes(b"* talker joined (2 online)\n");

    for (n, case) in cases().into_iter().enumerate() {
        let label = format!(
            "case {n}: {} ({:?}, {})",
            case.what,
            case.dialect,
            if case.as_name {
                "as the name"
            } else {
                "after a name"
            }
        );
        let mut bad = if case.as_name {
            Client::connect(at(&case.dialect), case.dialect.clone())
        } else {
            let c = Client::join(at(&case.dialect), case.dialect.clone(), "bad");
            obs.expect_bytes(b"* bad joined (3 online)\n");
            talker.expect(Got::joined("bad", 3));
            c
        };
        bad.name = label.clone();
        bad.send_raw(&case.bytes);
        match case.reason {
            Reason::Exact(reason) => bad.expect_error(case.code, reason),
            Reason::Around(head, tail) => match bad.recv() {
                Got::Error { code, reason } => {
                    if case.dialect == Dialect::Bincode {
                        assert_eq!(code, Some(case.code.code()), "{label}");
                    }
                    assert!(
                        reason.starts_with(head) && reason.ends_with(tail),
                        "{label}: told {reason:?}"
                    );
                }
                other => panic!("{label}: expected an error, got {other:?}"),
            },
        }
        let rest = bad.expect_closed(IO_TIMEOUT);
        assert!(
            rest.is_empty(),
            "{label}: bytes after the error: {:?}",
            String::from_utf8_lossy(&rest)
        );
        if !case.as_name {
            // The named client left, and the room is told so, nothing more.
            obs.expect_bytes(b"* bad left (2 online)\n");
            talker.expect(Got::left("bad", 2));
        }
        talker.say(&format!("after case {n}"));
        obs.expect_bytes(format!("[talker] after case {n}\n").as_bytes());
    }
    obs.expect_quiet(Duration::from_millis(100));
    talker.expect_quiet(Duration::from_millis(10));
    assert!(eventually(Duration::from_secs(2), || server.stats().open == 2));
    server.stop(Duration::from_millis(300));
}

/// A client that sends a frame over max_frame *with* its payload (as a real
/// client does) still reads the error: the server must not reset the
/// connection under it because unread input was left behind.
#[test]
fn oversized_frame_with_its_payload_still_gets_the_error() {
    let dialects = [
        Dialect::Line,
        Dialect::Header { header_len: 10 },
        Dialect::Bincode,
    ];
    let server = chat_server(&dialects, &format!("max_frame = {MAX_FRAME}"));
    let addrs = server.local_addrs().to_vec();
    let mut obs = Client::join(addrs[0], Dialect::Line, "obs");
    let payload = "y".repeat(256 * 1024);
    for (i, dialect) in dialects.iter().enumerate() {
        let mut c = Client::join(addrs[i], dialect.clone(), "big");
        obs.expect_bytes(b"* big joined (2 online)\n");
        let mut bytes = Vec::new();
        dialect
            .codec()
            .encode_client_msg(netlab::chat::ClientMsg::Say { text: &payload }, &mut bytes);
        // The write may fail once the server has closed: that is fine; the
        // error must still be readable.
        let mut w = c.s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let _ = w.write_all(&bytes);
        });
        let got = c.recv();
        let Got::Error { code, reason } = got else {
            panic!("{dialect:?}: expected an error, got {got:?}");
        };
        if *dialect == Dialect::Bincode {
            assert_eq!(code, Some(ErrorCode::FrameTooLarge.code()));
        }
        assert!(
            reason.contains("longer than the maximum of 1024"),
            "{dialect:?}: {reason:?}"
        );
        c.expect_closed(IO_TIMEOUT);
        writer.join().unwrap();
        obs.expect_bytes(b"* big left (1 online)\n");
    }
    server.stop(Duration::from_millis(300));
}
