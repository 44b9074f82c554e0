//! What the soak sends, as a pure function of where it is: byte `offset` of
//! stream `id`. A receiver checks every echoed byte against it without
//! keeping a copy of what was sent, and a wrong byte says exactly where it
//! went wrong.

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number that depends on `a` and `b` and looks random: sizes, delays.
pub fn hash(a: u64, b: u64) -> u64 {
    mix(mix(a.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ b)
}

/// Byte `offset` of stream `id`.
pub fn byte(id: u64, offset: u64) -> u8 {
    (hash(id, offset >> 3) >> ((offset & 7) * 8)) as u8
}

/// Fills `out` with stream `id` from `offset` on.
pub fn fill(id: u64, offset: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = byte(id, offset + i as u64);
    }
}

/// The first byte of `got` that is not stream `id` from `offset` on: its
/// index, and the byte that was expected there.
pub fn first_mismatch(id: u64, offset: u64, got: &[u8]) -> Option<(usize, u8)> {
    got.iter().enumerate().find_map(|(i, &b)| {
        let want = byte(id, offset + i as u64);
        (b != want).then_some((i, want))
    })
}

/// Printable text for chat message `seq` of member `uid`: `UID:SEQ:` then
/// 8 to 199 characters that depend on both. No newline, nothing a text
/// dialect would read as a command, and a length that varies.
pub fn chat_text(uid: u64, seq: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-";
    let len = 8 + (hash(uid, seq) % 192) as usize;
    let mut text = format!("{uid}:{seq}:");
    text.extend((0..len).map(|i| {
        let h = byte(uid ^ (seq << 24), i as u64);
        ALPHABET[h as usize % ALPHABET.len()] as char
    }));
    text
}

/// Whether `text` is exactly `chat_text(uid, seq)`, checked without
/// building it (the generator checks every delivery).
pub fn is_chat_text(uid: u64, seq: u64, text: &str) -> bool {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-";
    let len = 8 + (hash(uid, seq) % 192) as usize;
    // "UID:SEQ:" written on the stack: two u64s take at most 42 bytes.
    let mut head = [0u8; 48];
    let end = {
        let mut cursor = std::io::Cursor::new(&mut head[..]);
        if std::io::Write::write_fmt(&mut cursor, format_args!("{uid}:{seq}:")).is_err() {
            return false;
        }
        cursor.position() as usize
    };
    let head = &head[..end];
    let Some(body) = text.as_bytes().strip_prefix(head) else {
        return false;
    };
    body.len() == len
        && body.iter().enumerate().all(|(i, &c)| {
            let h = byte(uid ^ (seq << 24), i as u64);
            ALPHABET[h as usize % ALPHABET.len()] == c
        })
}

/// Reads a text `chat_text` wrote back: (uid, seq), if it is one.
pub fn parse_chat_text(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.splitn(3, ':');
    let uid = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((uid, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_mismatches_are_found_where_they_are() {
        let mut a = vec![0; 100];
        let mut b = vec![0; 100];
        fill(1, 0, &mut a);
        fill(2, 0, &mut b);
        assert_ne!(a, b);
        assert_eq!(first_mismatch(1, 0, &a), None);
        assert_eq!(first_mismatch(1, 50, &a[50..]), None);
        a[37] ^= 1;
        assert_eq!(first_mismatch(1, 0, &a), Some((37, a[37] ^ 1)));
    }

    #[test]
    fn chat_texts_read_back_and_stay_printable() {
        for seq in 0..200 {
            let text = chat_text(42, seq);
            assert_eq!(parse_chat_text(&text), Some((42, seq)));
            assert!(text.bytes().all(|b| (b' '..=b'~').contains(&b)), "{text}");
            assert_eq!(text, chat_text(42, seq));
            assert!(is_chat_text(42, seq, &text));
            assert!(!is_chat_text(42, seq + 1, &text));
            assert!(!is_chat_text(42, seq, &text[..text.len() - 1]));
            let mut wrong = text.clone().into_bytes();
            let last = wrong.len() - 1;
            wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
            assert!(!is_chat_text(42, seq, std::str::from_utf8(&wrong).unwrap()));
        }
        assert_ne!(chat_text(1, 0), chat_text(2, 0));
        assert_eq!(parse_chat_text("hello"), None);
    }
}
