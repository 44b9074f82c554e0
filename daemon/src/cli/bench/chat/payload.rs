//! A bench message's text: what it carries (sender, sequence number, send
//! time) in fixed-width hex at the start, padded to the requested size.
//! Receivers find it as the last `size` bytes of whatever the server
//! delivers, so any prefix a server adds (`[name] `, ncat's `<user5> `)
//! needs no parser of its own.
//!
//! ```text
//! #SSSSQQQQQQQQQQQQTTTTTTTTTTTT.......   (S sender, Q sequence, T ns)
//! ```

/// The marker, four hex digits of sender, twelve of sequence, twelve of
/// nanoseconds since the bench began (enough for three days).
pub(super) const HEADER_LEN: usize = 1 + 4 + 12 + 12;
const MARKER: u8 = b'#';
const PAD: u8 = b'.';

/// What a delivered message says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) sender: u16,
    pub(super) seq: u64,
    pub(super) sent_ns: u64,
}

/// Appends the `size`-byte text of a message (`size >= HEADER_LEN`).
pub(super) fn write(out: &mut Vec<u8>, size: usize, stamp: Stamp) {
    out.push(MARKER);
    push_hex(out, u64::from(stamp.sender), 4);
    push_hex(out, stamp.seq, 12);
    push_hex(out, stamp.sent_ns, 12);
    out.resize(out.len() + size.saturating_sub(HEADER_LEN), PAD);
}

/// Reads the stamp from the last `size` bytes of `delivered`, `None` when
/// they are not a bench message (a notice, a line a server mangled).
pub(super) fn read(delivered: &[u8], size: usize) -> Option<Stamp> {
    let text = delivered.get(delivered.len().checked_sub(size)?..)?;
    let (&marker, rest) = text.split_first()?;
    if marker != MARKER {
        return None;
    }
    let sender = parse_hex(rest.get(..4)?)?;
    let seq = parse_hex(rest.get(4..16)?)?;
    let sent_ns = parse_hex(rest.get(16..28)?)?;
    Some(Stamp {
        sender: u16::try_from(sender).ok()?,
        seq,
        sent_ns,
    })
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        let nibble = (value >> (4 * i)) & 0xf;
        out.push(HEX[nibble as usize]);
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u64::from(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_behind_any_prefix() {
        let stamp = Stamp {
            sender: 0xabc,
            seq: 123_456_789,
            sent_ns: 9_876_543_210_123,
        };
        let mut text = b"<user5> ".to_vec();
        write(&mut text, 64, stamp);
        assert_eq!(text.len(), 8 + 64);
        assert_eq!(read(&text, 64), Some(stamp));
        assert_eq!(read(&text[8..], 64), Some(stamp));
        // Exactly the header, no padding.
        let mut short = Vec::new();
        write(&mut short, HEADER_LEN, stamp);
        assert_eq!(read(&short, HEADER_LEN), Some(stamp));
    }

    #[test]
    fn other_text_is_not_a_stamp() {
        assert_eq!(read(b"* bench1 joined (2 online)", 26), None);
        assert_eq!(read(b"short", 64), None);
        let mut mangled = Vec::new();
        write(
            &mut mangled,
            40,
            Stamp {
                sender: 1,
                seq: 2,
                sent_ns: 3,
            },
        );
        mangled[5] = b'<';
        assert_eq!(read(&mangled, 40), None);
    }
}
