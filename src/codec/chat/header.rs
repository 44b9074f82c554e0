//! The header dialect: seed 004's wire format, so its Python client talks to
//! netlabd unchanged.
//!
//! Every frame is the payload length in decimal ASCII, left-justified and
//! padded with spaces to `header_len` bytes (`f"{len:<{HEADER_LENGTH}}"`),
//! then the payload. A client's first frame is its name; every later frame is
//! a message, or `/who` or `/quit`. The seed's server forwards
//! `user['header'] + user['data'] + message['header'] + message['data']`, so a
//! message reaches the others as two frames, the sender's name then the
//! text; notices are sent the same way from the name `*`
//! (`"*"`, `"Ayu joined (3 online)"`), errors as `"*"`, `"error: REASON"`.

use crate::chat::{ClientMsg, Event};
use crate::codec::HeaderCodec;

use super::text::{TextChatDecoder, decimal, floor_char_boundary, push_notice};

/// The name notices are sent from.
const NOTICE_SENDER: &[u8] = b"*";

/// The header dialect's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderChat {
    /// The header's width in bytes: 10 by default, 100 in the seed. It must
    /// be at least 1 (the configuration checks); a frame whose length needs
    /// more digits than this is cut to the longest that fits.
    pub header_len: usize,
    /// The longest payload a client may send, in bytes.
    pub max_frame: usize,
}

impl HeaderChat {
    pub fn new(header_len: usize, max_frame: usize) -> HeaderChat {
        HeaderChat {
            header_len,
            max_frame,
        }
    }

    pub fn decoder(&self) -> HeaderChatDecoder {
        TextChatDecoder::new(HeaderCodec::new(self.header_len, self.max_frame), "frame")
    }

    /// Appends `event` as two frames: the sender's name (`*` for notices),
    /// then the text.
    pub fn encode(&self, event: &Event, out: &mut Vec<u8>) {
        match event {
            Event::Message { from, text } => {
                out.reserve(2 * self.header_len + from.len() + text.len());
                self.push_frame(out, |out| out.extend_from_slice(from.as_bytes()));
                self.push_frame(out, |out| out.extend_from_slice(text.as_bytes()));
            }
            notice => {
                self.push_frame(out, |out| out.extend_from_slice(NOTICE_SENDER));
                self.push_frame(out, |out| push_notice(notice, out));
            }
        }
    }

    /// Appends what a client sends for `msg`: one frame holding its name,
    /// its text, `/who` or `/quit`.
    pub fn encode_client_msg(&self, msg: ClientMsg<'_>, out: &mut Vec<u8>) {
        let text = match msg {
            ClientMsg::Hello { name } => name,
            ClientMsg::Say { text } => text,
            ClientMsg::Who => "/who",
            ClientMsg::Bye => "/quit",
        };
        self.push_frame(out, |out| out.extend_from_slice(text.as_bytes()));
    }

    /// Appends one frame whose payload `write` appends: a header of spaces
    /// first, the length written into it once known. A payload too long for
    /// the header's width is cut at a character boundary rather than sent
    /// with a header that would desynchronise the reader.
    fn push_frame(&self, out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let header = out.len();
        out.resize(header + self.header_len, b' ');
        let body = out.len();
        write(out);
        let mut len = out.len() - body;
        let max = max_for_width(self.header_len);
        if len > max {
            len = floor_char_boundary(out.get(body..).unwrap_or_default(), max);
            out.truncate(body + len);
        }
        let mut digits = [0u8; 20];
        let digits = decimal(len as u64, &mut digits);
        if let Some(slot) = out.get_mut(header..header + digits.len()) {
            slot.copy_from_slice(digits);
        }
    }
}

/// The largest length that fits in `width` decimal digits.
fn max_for_width(width: usize) -> usize {
    10usize
        .checked_pow(u32::try_from(width).unwrap_or(u32::MAX))
        .map_or(usize::MAX, |p| p - 1)
}

/// One connection's header decoder.
pub type HeaderChatDecoder = TextChatDecoder<HeaderCodec>;

#[cfg(test)]
mod tests {
    /// The longest frame in these tests, as configurations default to.
    const MAX: usize = 64 * 1024;

    use std::sync::Arc;

    use super::*;
    use crate::chat::ErrorCode;
    use crate::codec::chat::ChatCodec;
    use crate::codec::chat::DecodeError;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    /// `f"{len(payload):<{width}}".encode() + payload`, written out the
    /// seed's way rather than with the code under test.
    fn seed_frame(width: usize, payload: &str) -> Vec<u8> {
        let mut frame = format!("{:<width$}", payload.len()).into_bytes();
        frame.extend_from_slice(payload.as_bytes());
        frame
    }

    fn encode(codec: HeaderChat, event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        codec.encode(event, &mut out);
        out
    }

    fn decode_all(
        codec: HeaderChat,
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
    fn a_message_is_two_frames_name_then_text() {
        let event = Event::Message {
            from: s("Dian"),
            text: s("Hello World"),
        };
        assert_eq!(
            encode(HeaderChat::new(10, MAX), &event),
            b"4         Dian11        Hello World"
        );
        let mut seed = seed_frame(100, "Dian");
        seed.extend(seed_frame(100, "Hello World"));
        assert_eq!(encode(HeaderChat::new(100, 1 << 16), &event), seed);
    }

    #[test]
    fn notices_come_from_star() {
        let codec = HeaderChat::new(10, MAX);
        let cases = [
            (
                Event::Welcome {
                    id: 1,
                    name: s("Dian"),
                    addr: s("127.0.0.1:1"),
                    online: 1,
                },
                "welcome Dian, 1 online; /who lists them, /quit leaves",
            ),
            (
                Event::Joined {
                    name: s("Ayu"),
                    addr: s("x"),
                    online: 3,
                    node: None,
                },
                "Ayu joined (3 online)",
            ),
            (
                Event::Left {
                    name: s("Ayu"),
                    online: 2,
                    node: None,
                },
                "Ayu left (2 online)",
            ),
            (
                Event::Left {
                    name: s("Ayu"),
                    online: 2,
                    node: Some(s("node-b")),
                },
                "Ayu left on node-b (2 online)",
            ),
            (Event::Notice { text: s("news") }, "news"),
            (
                Event::Roster {
                    names: vec![s("Dian"), s("Rafi")],
                },
                "online (2): Dian, Rafi",
            ),
            (
                Event::error(ErrorCode::NameTaken, "name is taken"),
                "error: name is taken",
            ),
        ];
        for (event, text) in cases {
            let mut want = seed_frame(10, "*");
            want.extend(seed_frame(10, text));
            assert_eq!(encode(codec, &event), want, "{event:?}");
        }
    }

    #[test]
    fn a_frame_too_long_for_the_header_is_cut_at_a_character() {
        let codec = HeaderChat::new(1, 1 << 16);
        let event = Event::Message {
            from: s("Dian"),
            text: s("12345678é"), // 10 bytes; 9 fit, but not half an é
        };
        assert_eq!(encode(codec, &event), b"4Dian812345678");
        // A width of zero can say nothing, and does not panic.
        assert_eq!(encode(HeaderChat::new(0, 10), &event), b"");
    }

    #[test]
    fn decodes_the_seed_clients_bytes() {
        for width in [10, 100] {
            let mut stream = seed_frame(width, "Dian");
            for text in ["Hello World", "/who", "/quit"] {
                stream.extend(seed_frame(width, text));
            }
            assert_eq!(
                decode_all(HeaderChat::new(width, 1 << 16), &[&stream]).unwrap(),
                [
                    r#"Hello { name: "Dian" }"#,
                    r#"Say { text: "Hello World" }"#,
                    "Who",
                    "Bye"
                ],
                "header_len {width}"
            );
        }
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let codec = HeaderChat::new(10, MAX);
        let mut stream = seed_frame(10, "Dian");
        for text in ["Hello World", "", "naïve 語", "/who"] {
            stream.extend(seed_frame(10, text));
        }
        let whole = decode_all(codec, &[&stream]).unwrap();
        assert_eq!(whole.len(), 5);
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode_all(codec, &[a, b]).unwrap(), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode_all(codec, &bytes).unwrap(), whole);
    }

    #[test]
    fn malformed_headers_are_refused_with_their_reason() {
        let codec = HeaderChat::new(10, 100);
        for (stream, code, reason) in [
            (
                &b"abc       x"[..],
                ErrorCode::BadFrame,
                r#"length header "abc       " is not a decimal number left-justified and padded with spaces"#,
            ),
            (
                b"-5        hello",
                ErrorCode::BadFrame,
                r#"length header "-5        " is not a decimal number left-justified and padded with spaces"#,
            ),
            // Refused from its first byte, before the header is complete.
            (
                b"-",
                ErrorCode::BadFrame,
                r#"length header "-" is not a decimal number left-justified and padded with spaces"#,
            ),
            (
                b"101       ",
                ErrorCode::FrameTooLarge,
                "frame of 101 bytes is longer than the maximum of 100",
            ),
            (
                b"99999999999999999999999",
                ErrorCode::FrameTooLarge,
                "frame of 9999999999 bytes is longer than the maximum of 100",
            ),
            (
                b"3         a\xffb",
                ErrorCode::BadFrame,
                "frame is not valid UTF-8 (byte 1)",
            ),
        ] {
            let (_, e) = decode_all(codec, &[stream]).unwrap_err();
            assert_eq!((e.code(), e.reason()), (code, reason), "{stream:?}");
        }
    }

    #[test]
    fn errors_encode_as_star_notices() {
        let mut out = Vec::new();
        ChatCodec::new(crate::chat::Dialect::Header { header_len: 10 }, MAX)
            .encode_error(&DecodeError::too_large("too big"), &mut out);
        assert_eq!(out, b"1         *14        error: too big");
    }
}
