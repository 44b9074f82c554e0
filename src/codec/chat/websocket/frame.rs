//! RFC 6455 frames: a client's, found at the start of a buffer (checked,
//! unmasked in place, fragments put together), and the server's, written;
//! and for netlab's own client, a server's frame found.
//! tungstenite parses and formats the header; what a
//! frame may be (masked, no reserved bits, control frames short and whole,
//! text only, no longer than the listener's `max_frame`) is checked here,
//! each refusal with the close code RFC 6455 gives it.

use std::borrow::Cow;
use std::io::Cursor;

use tungstenite::protocol::frame::FrameHeader;
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};

/// RFC 6455's status codes, as numbers on the wire.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The longest payload of a control frame (ping, pong, close).
pub const MAX_CONTROL: usize = 125;

/// Why a client's frames were refused: the close code it is sent, and why
/// in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

impl Refusal {
    pub fn new(code: u16, reason: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
        }
    }

    fn protocol(reason: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(close::PROTOCOL_ERROR, reason)
    }
}

/// What a frame came to, borrowed from the buffer: a client's, as the
/// server reads it, or the server's, as netlab's client reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A whole text message, UTF-8 checked.
    Text(&'a str),
    Ping(&'a [u8]),
    Pong,
    /// The peer closes, with its status code and reason if it gave one.
    Close(Option<(u16, &'a str)>),
    /// A fragment of a message was taken: nothing to act on yet.
    Fragment,
}

/// Where a fragmented message stands.
#[derive(Debug, Default)]
pub struct Fragments {
    /// The text of the message so far, unmasked.
    message: Vec<u8>,
    /// A message has begun and not ended.
    open: bool,
    /// The message was handed out: cleared before the next frame.
    taken: bool,
}

/// Finds the next whole client frame at the start of `buf`. Returns what
/// it came to with how many bytes of `buf` it took; `Ok(None)` when more
/// bytes are needed. Control frames are handed out as they come; data
/// frames are put together in `fragments` until a message is whole, and
/// its length (every fragment's) is checked against `max_message` from
/// each header, before its payload is waited for.
pub fn next<'a>(
    buf: &'a mut [u8],
    fragments: &'a mut Fragments,
    max_message: usize,
) -> Result<Option<(Incoming<'a>, usize)>, Refusal> {
    if fragments.taken {
        fragments.message.clear();
        fragments.taken = false;
    }
    {
        let Some((header, len, header_len)) = parse_header(buf)? else {
            return Ok(None);
        };
        let Some(mask) = header.mask else {
            return Err(Refusal::protocol("a client's frames must be masked"));
        };
        check_header(
            &header,
            len,
            fragments,
            max_message,
            "binary messages are not accepted: send JSON as text",
        )?;
        // Checked against max_message (or 125) above, so it fits.
        let len = len as usize;
        let start = header_len;
        if buf.len() - start < len {
            return Ok(None);
        }
        let end = start + len;
        apply_mask(&mut buf[start..end], mask);
        let at = end;
        if is_fragment(&header) {
            return Ok(Some((
                fragments.take(&buf[start..end], header.is_final)?,
                at,
            )));
        }
        let payload = &buf[start..end];
        let incoming = match header.opcode {
            OpCode::Control(Control::Ping) => Incoming::Ping(payload),
            OpCode::Control(Control::Close) => Incoming::Close(close_payload(payload)?),
            OpCode::Data(_) => Incoming::Text(utf8(payload)?),
            // Pong; reserved opcodes were refused with the header.
            OpCode::Control(_) => Incoming::Pong,
        };
        Ok(Some((incoming, at)))
    }
}

/// Finds the next whole server frame at the start of `buf`, as a client
/// reads it: what it came to and how many bytes it took; `Ok(None)` when
/// more bytes are needed. A server's frames are unmasked. Text messages in
/// fragments (netlabd sends each event whole, a proxy may not) are put
/// together in `fragments`, their length checked against `max_message`
/// from each header; a binary message is an error that says so.
pub fn next_from_server<'a>(
    buf: &'a [u8],
    fragments: &'a mut Fragments,
    max_message: usize,
) -> Result<Option<(Incoming<'a>, usize)>, Refusal> {
    if fragments.taken {
        fragments.message.clear();
        fragments.taken = false;
    }
    let Some((header, len, header_len)) = parse_header(buf)? else {
        return Ok(None);
    };
    if header.mask.is_some() {
        return Err(Refusal::protocol("a server's frames must not be masked"));
    }
    check_header(
        &header,
        len,
        fragments,
        max_message,
        "a binary message: the chat speaks JSON as text",
    )?;
    // At most max_message (or 125), checked above.
    let end = header_len + len as usize;
    let Some(payload) = buf.get(header_len..end) else {
        return Ok(None);
    };
    if is_fragment(&header) {
        return Ok(Some((fragments.take(payload, header.is_final)?, end)));
    }
    let frame = match header.opcode {
        OpCode::Data(_) => Incoming::Text(utf8(payload)?),
        OpCode::Control(Control::Ping) => Incoming::Ping(payload),
        OpCode::Control(Control::Close) => Incoming::Close(close_payload(payload)?),
        // Pong; reserved opcodes were refused with the header.
        OpCode::Control(_) => Incoming::Pong,
    };
    Ok(Some((frame, end)))
}

/// What every frame must be before its payload is read, whichever side
/// reads it: no reserved bit, a control frame whole and short, no binary
/// message (`binary` says so in the reader's words), fragments in order,
/// a message within `max_message` with its fragments counted together.
fn check_header(
    header: &FrameHeader,
    len: u64,
    fragments: &Fragments,
    max_message: usize,
    binary: &'static str,
) -> Result<(), Refusal> {
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(Refusal::protocol(
            "a reserved bit is set, and no extension was agreed",
        ));
    }
    let control = matches!(header.opcode, OpCode::Control(_));
    if control && (!header.is_final || len > MAX_CONTROL as u64) {
        return Err(Refusal::protocol(format!(
            "a control frame must be whole and at most {MAX_CONTROL} bytes"
        )));
    }
    match header.opcode {
        OpCode::Data(Data::Binary) => Err(Refusal::new(close::UNSUPPORTED_DATA, binary)),
        OpCode::Data(Data::Text) if fragments.open => Err(Refusal::protocol(
            "a message began before the one before it ended",
        )),
        OpCode::Data(Data::Continue) if !fragments.open => Err(Refusal::protocol(
            "a continuation frame with no message begun",
        )),
        OpCode::Data(_) => {
            let total = len.saturating_add(fragments.message.len() as u64);
            if total > max_message as u64 {
                return Err(Refusal::new(
                    close::TOO_BIG,
                    format!("message of {total} bytes is longer than the maximum of {max_message}"),
                ));
            }
            Ok(())
        }
        OpCode::Control(_) => Ok(()),
    }
}

/// A data frame that is not a whole text message on its own: a part of
/// one, for [`Fragments::take`].
fn is_fragment(header: &FrameHeader) -> bool {
    matches!(header.opcode, OpCode::Data(_))
        && !(header.opcode == OpCode::Data(Data::Text) && header.is_final)
}

impl Fragments {
    /// Takes a fragment's payload: the whole message once its last
    /// fragment came, UTF-8 checked.
    fn take(&mut self, payload: &[u8], is_final: bool) -> Result<Incoming<'_>, Refusal> {
        self.message.extend_from_slice(payload);
        self.open = !is_final;
        if !is_final {
            return Ok(Incoming::Fragment);
        }
        self.taken = true;
        Ok(Incoming::Text(utf8(&self.message)?))
    }
}

/// A frame's header at the start of `buf`: the header, the payload's
/// length and the header's own.
fn parse_header(buf: &[u8]) -> Result<Option<(FrameHeader, u64, usize)>, Refusal> {
    let mut cursor = Cursor::new(buf);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((header, len))) => Ok(Some((header, len, cursor.position() as usize))),
        Ok(None) => Ok(None),
        // The one error parsing a buffer can give.
        Err(_) => Err(Refusal::protocol(format!(
            "opcode {} is reserved",
            buf.first().map_or(0, |b| b & 0x0f)
        ))),
    }
}

fn utf8(payload: &[u8]) -> Result<&str, Refusal> {
    std::str::from_utf8(payload).map_err(|e| {
        Refusal::new(
            close::INVALID_PAYLOAD,
            format!("text message is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })
}

fn close_payload(payload: &[u8]) -> Result<Option<(u16, &str)>, Refusal> {
    match payload {
        [] => Ok(None),
        [_] => Err(Refusal::protocol(
            "a close frame's status code takes two bytes",
        )),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !CloseCode::from(code).is_allowed() {
                return Err(Refusal::protocol(format!(
                    "close status {code} may not be sent"
                )));
            }
            Ok(Some((code, utf8(reason)?)))
        }
    }
}

/// XORs `payload` with `mask` (RFC 6455 section 5.3), four bytes at a
/// time (tungstenite keeps its own version private).
pub fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let masked = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&masked.to_ne_bytes());
    }
    for (b, m) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= m;
    }
}

/// Appends a server frame (unmasked, final) with `opcode` and `payload`.
pub fn push(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    push_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

fn push_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Writing to a Vec cannot fail.
    let _ = header.format(len as u64, out);
}

/// Appends a text frame whose payload `write` appends: written in place
/// after room for the shortest header, then moved if the payload turned out
/// longer than that header can say (125 bytes), so that an event is
/// serialised once, straight into the output.
pub fn push_text_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    const SHORT: usize = 2;
    let start = out.len();
    out.extend_from_slice(&[0; SHORT]);
    write(out);
    let len = out.len() - start - SHORT;
    let mut header = Vec::with_capacity(10);
    push_header(&mut header, OpCode::Data(Data::Text), len);
    if header.len() > SHORT {
        let extra = header.len() - SHORT;
        out.resize(out.len() + extra, 0);
        out.copy_within(start + SHORT..start + SHORT + len, start + header.len());
    }
    out[start..start + header.len()].copy_from_slice(&header);
}

/// Appends a close frame: the status code, and the reason cut to what a
/// control frame holds (at a character boundary).
pub fn push_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut cut = reason.len().min(MAX_CONTROL - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    push(out, OpCode::Control(Control::Close), &payload);
}

/// Appends a frame as a client sends it, masked with `mask`.
pub fn push_masked(
    out: &mut Vec<u8>,
    opcode: OpCode,
    is_final: bool,
    payload: &[u8],
    mask: [u8; 4],
) {
    let header = FrameHeader {
        is_final,
        opcode,
        mask: Some(mask),
        ..FrameHeader::default()
    };
    let _ = header.format(payload.len() as u64, out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const TEXT: OpCode = OpCode::Data(Data::Text);
    const CONT: OpCode = OpCode::Data(Data::Continue);
    const PING: OpCode = OpCode::Control(Control::Ping);
    const CLOSE: OpCode = OpCode::Control(Control::Close);

    fn masked(opcode: OpCode, is_final: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_masked(&mut out, opcode, is_final, payload, MASK);
        out
    }

    /// Everything `next` finds in `stream`, as text; the refusal if any.
    fn read_all(stream: &[u8], max: usize) -> (Vec<String>, Option<Refusal>) {
        let mut buf = stream.to_vec();
        let mut fragments = Fragments::default();
        let mut at = 0;
        let mut got = Vec::new();
        loop {
            match next(&mut buf[at..], &mut fragments, max) {
                Ok(Some((incoming, used))) => {
                    if incoming != Incoming::Fragment {
                        got.push(format!("{incoming:?}"));
                    }
                    at += used;
                }
                Ok(None) => return (got, None),
                Err(e) => return (got, Some(e)),
            }
        }
    }

    #[test]
    fn rfc_6455_example_frames() {
        // Section 5.7: a masked "Hello", and a masked ping with "Hello".
        let hello = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(masked(TEXT, true, b"Hello"), hello);
        assert_eq!(
            read_all(&hello, 100),
            (vec![r#"Text("Hello")"#.into()], None)
        );
        // The unmasked ones are what the server writes.
        let mut out = Vec::new();
        push(&mut out, TEXT, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        push(&mut out, OpCode::Control(Control::Pong), b"Hello");
        assert_eq!(out, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // "Hel" and "lo" as two fragments.
        let mut split = masked(TEXT, false, b"Hel");
        split.extend(masked(CONT, true, b"lo"));
        assert_eq!(
            read_all(&split, 100),
            (vec![r#"Text("Hello")"#.into()], None)
        );
    }

    #[test]
    fn a_frame_split_anywhere_is_found_whole() {
        let mut stream = masked(TEXT, false, "naïve ".as_bytes());
        stream.extend(masked(PING, true, b"p"));
        stream.extend(masked(CONT, true, "語".repeat(50).as_bytes()));
        stream.extend(masked(CLOSE, true, b"\x03\xe8bye"));
        let want = vec![
            r#"Ping([112])"#.to_string(),
            format!("Text({:?})", format!("naïve {}", "語".repeat(50))),
            r#"Close(Some((1000, "bye")))"#.to_string(),
        ];
        assert_eq!(read_all(&stream, 1000), (want.clone(), None));
        for cut in 0..stream.len() {
            let mut buf = stream[..cut].to_vec();
            let mut fragments = Fragments::default();
            let mut got = Vec::new();
            let mut at = 0;
            for more in [false, true] {
                if more {
                    buf.extend_from_slice(&stream[cut..]);
                }
                while let Some((incoming, used)) =
                    next(&mut buf[at..], &mut fragments, 1000).unwrap()
                {
                    if incoming != Incoming::Fragment {
                        got.push(format!("{incoming:?}"));
                    }
                    at += used;
                }
            }
            assert_eq!(got, want, "cut at {cut}");
        }
    }

    #[test]
    fn refusals_carry_their_close_code() {
        let mut unmasked = Vec::new();
        push(&mut unmasked, TEXT, b"hi");
        let mut rsv = masked(TEXT, true, b"hi");
        rsv[0] |= 0x40;
        let mut reserved_opcode = masked(TEXT, true, b"hi");
        reserved_opcode[0] = 0x83;
        let mut two_starts = masked(TEXT, false, b"a");
        two_starts.extend(masked(TEXT, true, b"b"));
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (
                masked(OpCode::Data(Data::Binary), true, b"\x00\x01"),
                1003,
                "binary messages are not accepted: send JSON as text",
            ),
            (
                masked(TEXT, true, b"a\xffb"),
                1007,
                "text message is not valid UTF-8 (byte 1)",
            ),
            (
                masked(TEXT, true, &[b'x'; 11]),
                1009,
                "message of 11 bytes is longer than the maximum of 10",
            ),
            (unmasked, 1002, "a client's frames must be masked"),
            (
                rsv,
                1002,
                "a reserved bit is set, and no extension was agreed",
            ),
            (reserved_opcode, 1002, "opcode 3 is reserved"),
            (
                two_starts,
                1002,
                "a message began before the one before it ended",
            ),
            (
                masked(CONT, true, b"x"),
                1002,
                "a continuation frame with no message begun",
            ),
            (
                masked(PING, false, b"x"),
                1002,
                "a control frame must be whole and at most 125 bytes",
            ),
            (
                masked(PING, true, &[0; 126]),
                1002,
                "a control frame must be whole and at most 125 bytes",
            ),
            (
                masked(CLOSE, true, b"\x03"),
                1002,
                "a close frame's status code takes two bytes",
            ),
            (
                masked(CLOSE, true, b"\x03\xed"),
                1002,
                "close status 1005 may not be sent",
            ),
        ];
        for (stream, code, reason) in cases {
            let (_, refusal) = read_all(&stream, 10);
            assert_eq!(refusal, Some(Refusal::new(code, reason)), "{stream:?}");
        }
    }

    #[test]
    fn fragments_count_together_against_the_maximum_before_their_payload_comes() {
        let mut stream = masked(TEXT, false, b"12345");
        stream.extend(masked(CONT, false, b"12345"));
        // Only the header of the third: refused without its payload.
        let third = masked(CONT, true, b"1");
        stream.extend(&third[..6]);
        let (got, refusal) = read_all(&stream, 10);
        assert!(got.is_empty());
        assert_eq!(
            refusal,
            Some(Refusal::new(
                1009,
                "message of 11 bytes is longer than the maximum of 10"
            ))
        );
        // A header claiming 2^63 bytes, alone.
        let huge = [
            0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
        ];
        let (_, refusal) = read_all(&huge, 65536);
        assert_eq!(refusal.map(|r| r.code), Some(1009));
    }

    #[test]
    fn server_text_frames_are_written_in_place_whatever_their_length() {
        for len in [0, 1, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut want = b"before".to_vec();
            push(&mut want, TEXT, &payload);
            let mut got = b"before".to_vec();
            push_text_with(&mut got, |out| out.extend_from_slice(&payload));
            assert_eq!(got, want, "length {len}");
        }
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        push_close(&mut out, 1009, &"語".repeat(50));
        // 2 header bytes, 2 code bytes, 41 characters of 3 bytes.
        assert_eq!(out.len(), 2 + 2 + 123);
        assert_eq!(&out[..4], [0x88, 125, 0x03, 0xf1]);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
