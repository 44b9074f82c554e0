//! What the two text dialects (line, header) share: how a text frame from a
//! client becomes a message, and how a notice reads.

use crate::chat::{ClientMsg, Event};
use crate::codec::{Codec, FrameReader};

use super::DecodeError;

/// One connection's decoder in a text dialect: frames of the dialect's
/// codec (lines, or header frames), each a name, a command or a message.
#[derive(Debug)]
pub struct TextChatDecoder<C> {
    reader: FrameReader<C>,
    named: bool,
    /// What a frame is called in errors: "line" or "frame".
    unit: &'static str,
}

impl<C: Codec> TextChatDecoder<C> {
    pub(super) fn new(codec: C, unit: &'static str) -> Self {
        TextChatDecoder {
            reader: FrameReader::new(codec),
            named: false,
            unit,
        }
    }

    /// Buffers bytes read from the client.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.reader.extend(bytes);
    }

    /// The next whole frame as a message, `Ok(None)` when more bytes are
    /// needed. A frame the codec refuses (too long, a bad header: caught
    /// before the payload is buffered) or one that is not UTF-8 is an error.
    pub fn next_msg(&mut self) -> Result<Option<ClientMsg<'_>>, DecodeError> {
        let Some(payload) = self.reader.next_frame()? else {
            return Ok(None);
        };
        let text = std::str::from_utf8(payload).map_err(|e| {
            DecodeError::bad_frame(format!(
                "{} is not valid UTF-8 (byte {})",
                self.unit,
                e.valid_up_to()
            ))
        })?;
        Ok(Some(text_msg(&mut self.named, text)))
    }

    /// Bytes buffered that are not yet a whole frame.
    pub fn pending(&self) -> &[u8] {
        self.reader.pending()
    }
}

/// A text frame from a client: the first is its name, then `/who`, `/quit`
/// or a message. Commands may carry blanks around them (`"/who "` from a
/// sloppy terminal); messages are passed on exactly as sent.
pub(super) fn text_msg<'a>(named: &mut bool, text: &'a str) -> ClientMsg<'a> {
    if !*named {
        *named = true;
        return ClientMsg::Hello { name: text };
    }
    match text.trim_ascii() {
        "/who" => ClientMsg::Who,
        "/quit" => ClientMsg::Bye,
        _ => ClientMsg::Say { text },
    }
}

/// Appends the text of a notice, without the dialect's `* ` or framing:
/// `Dian joined (2 online)`. A [`Event::Message`] is not a notice; the
/// dialects render it themselves, and this writes it as `from: text`.
pub(super) fn push_notice(event: &Event, out: &mut Vec<u8>) {
    match event {
        Event::Welcome { name, online, .. } => {
            out.extend_from_slice(b"welcome ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b", ");
            push_decimal(out, u64::from(*online));
            out.extend_from_slice(b" online; /who lists them, /quit leaves");
        }
        Event::Joined {
            name, online, node, ..
        } => push_coming_or_going(name, b" joined", node.as_deref(), *online, out),
        Event::Left { name, online, node } => {
            push_coming_or_going(name, b" left", node.as_deref(), *online, out);
        }
        Event::Roster { names } => {
            out.extend_from_slice(b"online (");
            push_decimal(out, names.len() as u64);
            out.extend_from_slice(b"):");
            for (i, name) in names.iter().enumerate() {
                out.extend_from_slice(if i == 0 { b" " } else { b", " });
                out.extend_from_slice(name.as_bytes());
            }
        }
        Event::Error { reason, .. } => {
            out.extend_from_slice(b"error: ");
            out.extend_from_slice(reason.as_bytes());
        }
        Event::Message { from, text } => {
            out.extend_from_slice(from.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(text.as_bytes());
        }
        Event::Notice { text } => out.extend_from_slice(text.as_bytes()),
    }
}

/// `Dian joined (2 online)`, or `Dian left on node-b (1 online)` for a
/// member of another node of a cluster.
fn push_coming_or_going(
    name: &str,
    verb: &[u8],
    node: Option<&str>,
    online: u32,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(verb);
    if let Some(node) = node {
        out.extend_from_slice(b" on ");
        out.extend_from_slice(node.as_bytes());
    }
    out.extend_from_slice(b" (");
    push_decimal(out, u64::from(online));
    out.extend_from_slice(b" online)");
}

/// Appends `n` in decimal ASCII, without allocating.
pub(super) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    out.extend_from_slice(decimal(n, &mut digits));
}

/// `n` in decimal ASCII, written at the end of `buf`.
pub(super) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.get(start..).unwrap_or_default()
}

/// The longest prefix of `bytes`, at most `max` long, that does not end
/// inside a UTF-8 character.
pub(super) fn floor_char_boundary(bytes: &[u8], max: usize) -> usize {
    let mut end = max.min(bytes.len());
    while end > 0 && bytes.get(end).is_some_and(|&b| b & 0xc0 == 0x80) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 100, 65536, u64::from(u32::MAX), u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn char_boundaries() {
        let s = "aé語".as_bytes(); // 1 + 2 + 3 bytes
        let cuts: Vec<usize> = (0..=7).map(|m| floor_char_boundary(s, m)).collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6]);
    }

    #[test]
    fn first_frame_is_the_name_even_if_it_looks_like_a_command() {
        let mut named = false;
        assert_eq!(
            text_msg(&mut named, "/who"),
            ClientMsg::Hello { name: "/who" }
        );
        assert_eq!(text_msg(&mut named, "/who"), ClientMsg::Who);
        assert_eq!(text_msg(&mut named, " /quit\t"), ClientMsg::Bye);
        assert_eq!(
            text_msg(&mut named, " hi "),
            ClientMsg::Say { text: " hi " }
        );
        assert_eq!(
            text_msg(&mut named, "/whom"),
            ClientMsg::Say { text: "/whom" }
        );
    }
}
