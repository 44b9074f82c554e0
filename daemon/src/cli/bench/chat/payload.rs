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
    // 28 digits as four overlapping words of eight: SSSSQQQQ QQQQQQQQ
    // TTTTTTTT and TTTTTTTT again, of which the last four digits count.
    let word = |at: usize| Some(u64::from_le_bytes(rest.get(at..at + 8)?.try_into().ok()?));
    let (a, b) = (parse_hex8(word(0)?)?, parse_hex8(word(8)?)?);
    let (c, d) = (parse_hex8(word(16)?)?, parse_hex8(word(20)?)?);
    Some(Stamp {
        sender: (a >> 16) as u16,
        seq: (u64::from(a & 0xffff) << 32) | u64::from(b),
        sent_ns: (u64::from(c) << 16) | u64::from(d & 0xffff),
    })
}

fn push_hex(out: &mut Vec<u8>, value: u64, digits: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in (0..digits).rev() {
        let nibble = (value >> (4 * i)) & 0xf;
        out.push(HEX[nibble as usize]);
    }
}

/// Eight lower-case hex digits, read little-endian from memory (the first
/// digit, the most significant, in the low byte), to their value; `None` if
/// any byte is not one. Receivers read 28 digits of every delivery, and a
/// digit-by-digit parse was a fifth of the generator's time.
#[inline]
fn parse_hex8(word: u64) -> Option<u32> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte below 0x80 plus (0x80 - n) sets its high bit exactly when it
    // is at least n, and carries into no other byte.
    let at_least = |n: u8| word.wrapping_add(ONES * u64::from(0x80 - n)) & HIGHS;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if word & HIGHS != 0 || (digit | letter) != HIGHS {
        return None;
    }
    // '0'..'9' is 0x30..0x39 and 'a'..'f' is 0x61..0x66: the low nibble,
    // plus 9 for a letter (bit 6 set).
    let nibbles = (word & (ONES * 0x0f)) + ((word >> 6) & ONES) * 9;
    // Pair neighbours up: nibbles into bytes, bytes into 16 bits, then 32.
    let bytes = ((nibbles & 0x000f_000f_000f_000f) << 4) | ((nibbles >> 8) & 0x000f_000f_000f_000f);
    let halves = ((bytes & 0x0000_00ff_0000_00ff) << 8) | ((bytes >> 16) & 0x0000_00ff_0000_00ff);
    let value = ((halves & 0xffff) << 16) | ((halves >> 32) & 0xffff);
    u32::try_from(value).ok()
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
    fn eight_digits_read_as_digit_by_digit_would() {
        let slow = |digits: &[u8; 8]| {
            digits.iter().try_fold(0u32, |acc, &d| {
                let v = char::from(d)
                    .to_digit(16)
                    .filter(|_| !d.is_ascii_uppercase())?;
                Some((acc << 4) | v)
            })
        };
        let mut cases = vec![*b"00000000", *b"ffffffff", *b"01234567", *b"89abcdef"];
        // Every byte value in every position of an otherwise valid number.
        for at in 0..8 {
            for byte in 0..=255u8 {
                let mut digits = *b"9a8b7c6d";
                digits[at] = byte;
                cases.push(digits);
            }
        }
        for digits in &cases {
            let fast = parse_hex8(u64::from_le_bytes(*digits));
            assert_eq!(fast, slow(digits), "{:?}", String::from_utf8_lossy(digits));
        }
    }

    #[test]
    fn stamps_at_the_limits_round_trip_and_any_bad_digit_is_refused() {
        let max = (1u64 << 48) - 1;
        for stamp in [
            Stamp {
                sender: 0,
                seq: 0,
                sent_ns: 0,
            },
            Stamp {
                sender: u16::MAX,
                seq: max,
                sent_ns: max,
            },
            Stamp {
                sender: 0x1234,
                seq: 0x5678_9abc_def0,
                sent_ns: 0x0fed_cba9_8765,
            },
        ] {
            let mut text = Vec::new();
            write(&mut text, 64, stamp);
            assert_eq!(read(&text, 64), Some(stamp));
            for at in 1..HEADER_LEN {
                for bad in [b'g', b'A', b'/', b':', b'`', b' ', 0x80, 0xff] {
                    let mut broken = text.clone();
                    broken[at] = bad;
                    assert_eq!(read(&broken, 64), None, "byte {at} = {bad:#x}");
                }
            }
        }
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
