//! The line dialect, for `nc` and telnet users: the first line is the
//! client's name, then every line is a message (`/who` lists who is online,
//! `/quit` leaves). `\r\n` is accepted.
//!
//! What clients receive:
//!
//! ```text
//! * welcome Dian, 2 online; /who lists them, /quit leaves
//! [Rafi] Hello World
//! * Ayu joined (3 online)
//! * Ayu left (2 online)
//! * online (2): Dian, Rafi
//! * error: name is taken
//! ```

use crate::chat::{ClientMsg, Event};
use crate::codec::LineCodec;

use super::text::{TextChatDecoder, push_notice};

/// The line dialect's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LineChat {
    /// The longest line a client may send, in bytes, line end excluded.
    pub max_frame: usize,
}

impl LineChat {
    pub fn new(max_frame: usize) -> LineChat {
        LineChat { max_frame }
    }

    pub fn decoder(&self) -> LineChatDecoder {
        TextChatDecoder::new(LineCodec::new(self.max_frame), "line")
    }

    /// Appends `event` as one line. A message is `[name] text\n`; anything
    /// else is a notice, `* ...\n`.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        match event {
            Event::Message { from, text } => {
                out.reserve(from.len() + text.len() + 4);
                out.push(b'[');
                out.extend_from_slice(from.as_bytes());
                out.extend_from_slice(b"] ");
                push_for_terminal(text, out);
                out.push(b'\n');
            }
            notice => {
                out.extend_from_slice(b"* ");
                let start = out.len();
                push_notice(notice, out);
                // Error reasons and the like come from code, not peers, but a
                // line break in one would still forge a line.
                if let Some(body) = out.get_mut(start..) {
                    for b in body.iter_mut().filter(|b| matches!(b, b'\n' | b'\r')) {
                        *b = b' ';
                    }
                }
                out.push(b'\n');
            }
        }
    }
}

/// Appends what a client sends for `msg`: its name or text as a line,
/// `/who`, `/quit`. A line break in the text would end the line early, so
/// each becomes a space.
pub fn encode_client_msg(msg: ClientMsg<'_>, out: &mut Vec<u8>) {
    let text = match msg {
        ClientMsg::Hello { name } => name,
        ClientMsg::Say { text } => text,
        ClientMsg::Who => "/who",
        ClientMsg::Bye => "/quit",
    };
    out.extend(
        text.bytes()
            .map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { b }),
    );
    out.push(b'\n');
}

/// Appends a message's text so that it is one harmless line on a terminal.
/// Text from the other dialects may hold line breaks, which would let a
/// client forge lines (`* admin joined`), and escape sequences, which
/// would drive the reader's terminal; each control character but tab becomes
/// U+FFFD. The scan is the only cost of ordinary text.
fn push_for_terminal(text: &str, out: &mut Vec<u8>) {
    // C0 controls and DEL are single bytes; C1 controls (U+0080..U+009F)
    // start with 0xC2, as do a few printable characters, which are copied.
    // A fold without an early exit, so that the compiler vectorises it.
    let suspicious = text.as_bytes().iter().fold(false, |seen, &b| {
        seen | ((b < 0x20) & (b != b'\t')) | (b == 0x7f) | (b == 0xc2)
    });
    if !suspicious {
        out.extend_from_slice(text.as_bytes());
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        let c = if c.is_control() && c != '\t' {
            char::REPLACEMENT_CHARACTER
        } else {
            c
        };
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

/// One connection's line decoder.
pub type LineChatDecoder = TextChatDecoder<LineCodec>;

#[cfg(test)]
mod tests {
    /// The longest frame in these tests, as configurations default to.
    const MAX: usize = 64 * 1024;

    use std::sync::Arc;

    use super::*;
    use crate::chat::ErrorCode;
    use crate::codec::chat::DecodeError;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    fn encode(event: Event) -> String {
        let mut out = Vec::new();
        LineChat::new(MAX).encode(&event, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Decodes `stream` fed in the given pieces, into owned messages.
    fn decode_all(
        codec: LineChat,
        pieces: &[&[u8]],
    ) -> Result<Vec<String>, (Vec<String>, DecodeError)> {
        let mut decoder = codec.decoder();
        let mut got = Vec::new();
        for piece in pieces {
            decoder.extend(piece);
            loop {
                match decoder.next_msg() {
                    Ok(Some(msg)) => got.push(format!("{msg:?}")),
                    Ok(None) => break,
                    Err(e) => return Err((got, e)),
                }
            }
        }
        Ok(got)
    }

    #[test]
    fn encodes_every_event() {
        assert_eq!(
            encode(Event::Welcome {
                id: 3,
                name: s("Dian"),
                addr: s("127.0.0.1:5000"),
                online: 2
            }),
            "* welcome Dian, 2 online; /who lists them, /quit leaves\n"
        );
        assert_eq!(
            encode(Event::Message {
                from: s("Rafi"),
                text: s("Hello World")
            }),
            "[Rafi] Hello World\n"
        );
        assert_eq!(
            encode(Event::Joined {
                name: s("Ayu"),
                addr: s("10.0.0.9:1"),
                online: 3,
                node: None,
            }),
            "* Ayu joined (3 online)\n"
        );
        assert_eq!(
            encode(Event::Left {
                name: s("Ayu"),
                online: 2,
                node: None,
            }),
            "* Ayu left (2 online)\n"
        );
        assert_eq!(
            encode(Event::Joined {
                name: s("Bo"),
                addr: s("10.0.0.9:2 on node-b"),
                online: 4,
                node: Some(s("node-b")),
            }),
            "* Bo joined on node-b (4 online)\n"
        );
        assert_eq!(
            encode(Event::Left {
                name: s("Bo"),
                online: 3,
                node: Some(s("node-b")),
            }),
            "* Bo left on node-b (3 online)\n"
        );
        assert_eq!(
            encode(Event::Notice {
                text: s("the link to the cluster is back")
            }),
            "* the link to the cluster is back\n"
        );
        assert_eq!(
            encode(Event::Roster {
                names: vec![s("Dian"), s("Rafi"), s("ayu")]
            }),
            "* online (3): Dian, Rafi, ayu\n"
        );
        assert_eq!(encode(Event::Roster { names: vec![] }), "* online (0):\n");
        assert_eq!(
            encode(Event::error(ErrorCode::NameTaken, "name is taken")),
            "* error: name is taken\n"
        );
    }

    #[test]
    fn message_text_cannot_forge_lines_or_drive_terminals() {
        assert_eq!(
            encode(Event::Message {
                from: s("x"),
                text: s("a\n* admin joined (9 online)\r\u{1b}[2J\u{9b}\u{7f}\tb £")
            }),
            "[x] a\u{fffd}* admin joined (9 online)\u{fffd}\u{fffd}[2J\u{fffd}\u{fffd}\tb £\n"
        );
        assert_eq!(
            encode(Event::error(ErrorCode::BadFrame, "two\nlines")),
            "* error: two lines\n"
        );
    }

    #[test]
    fn encoding_appends() {
        let mut out = b"before\n".to_vec();
        LineChat::new(MAX).encode(
            &Event::Message {
                from: s("a"),
                text: s("b"),
            },
            &mut out,
        );
        assert_eq!(out, b"before\n[a] b\n");
    }

    #[test]
    fn decodes_name_then_messages_and_commands() {
        let stream = b"Dian\r\nHello World\n/who\n\n/quit\r\n";
        assert_eq!(
            decode_all(LineChat::new(MAX), &[stream]).unwrap(),
            [
                r#"Hello { name: "Dian" }"#,
                r#"Say { text: "Hello World" }"#,
                "Who",
                r#"Say { text: "" }"#,
                "Bye"
            ]
        );
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let stream = "Dian\r\nHello World\n/who\nnaïve 語\r\n/quit\n".as_bytes();
        let whole = decode_all(LineChat::new(MAX), &[stream]).unwrap();
        assert_eq!(whole.len(), 5);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(
                decode_all(LineChat::new(MAX), &[a, b]).unwrap(),
                whole,
                "cut at {cut}"
            );
        }
        // And byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(LineChat::new(MAX), &bytes).unwrap(), whole);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let (got, e) = decode_all(LineChat::new(MAX), &[b"Dian\nab\xffc\n"]).unwrap_err();
        assert_eq!(got, [r#"Hello { name: "Dian" }"#]);
        assert_eq!(e.code(), ErrorCode::BadFrame);
        assert_eq!(e.reason(), "line is not valid UTF-8 (byte 2)");
    }

    #[test]
    fn a_line_too_long_is_refused_before_its_end_arrives() {
        let codec = LineChat::new(8);
        let (got, e) = decode_all(codec, &[b"Dian\n", b"123456789"]).unwrap_err();
        assert_eq!(got.len(), 1);
        assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        assert_eq!(e.reason(), "line longer than the maximum of 8 bytes");
        // Exactly the maximum is fine.
        assert!(decode_all(codec, &[b"12345678\r\n"]).is_ok());
    }

    #[test]
    fn errors_encode_as_notices() {
        let mut out = Vec::new();
        let codec = super::super::ChatCodec::new(crate::chat::Dialect::Line, MAX);
        codec.encode_error(&DecodeError::bad_frame("line is not valid UTF-8"), &mut out);
        assert_eq!(out, b"* error: line is not valid UTF-8\n");
    }
}
