//! Lines: a payload ends at `\n`; a `\r` before it is dropped too, so telnet
//! and `nc -C` users are served like everyone else.

use super::{Codec, Frame, FrameError};

/// Newline-delimited frames of at most `max_len` bytes (delimiter excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCodec {
    pub max_len: usize,
}

impl LineCodec {
    pub fn new(max_len: usize) -> Self {
        LineCodec { max_len }
    }
}

impl Codec for LineCodec {
    fn decode(&self, buf: &[u8]) -> Result<Frame, FrameError> {
        self.decode_after(buf, 0)
    }

    fn decode_after(&self, buf: &[u8], seen: usize) -> Result<Frame, FrameError> {
        // Look no further than a maximal line: a peer that never sends '\n'
        // is refused as soon as it has sent too much, not when memory runs out.
        // Saturating, so that a max_len of usize::MAX means "no limit".
        let window = &buf[..buf.len().min(self.max_len.saturating_add(2))];
        // What was seen holds no '\n'; the '\r' check below looks back by
        // itself.
        let from = seen.min(window.len());
        match memchr::memchr(b'\n', &window[from..]).map(|i| from + i) {
            Some(nl) => {
                let end = if nl > 0 && buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                if end > self.max_len {
                    return Err(FrameError::LineTooLong { max: self.max_len });
                }
                Ok(Frame {
                    payload: 0..end,
                    len: nl + 1,
                })
            }
            // A trailing '\r' may still be followed by '\n'. (buf.len() - 1
            // cannot underflow once buf.len() > max_len.)
            None if buf.len() > self.max_len
                && !(buf.len() - 1 == self.max_len && buf[self.max_len] == b'\r') =>
            {
                Err(FrameError::LineTooLong { max: self.max_len })
            }
            None => Err(FrameError::Incomplete),
        }
    }

    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if payload.len() > self.max_len {
            return Err(FrameError::TooLong {
                len: payload.len(),
                max: self.max_len,
            });
        }
        out.reserve(payload.len() + 1);
        out.extend_from_slice(payload);
        out.push(b'\n');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameReader;

    fn decode(max: usize, buf: &[u8]) -> Result<(Vec<u8>, usize), FrameError> {
        LineCodec::new(max)
            .decode(buf)
            .map(|f| (buf[f.payload].to_vec(), f.len))
    }

    #[test]
    fn whole_lines() {
        assert_eq!(decode(10, b"hello\nrest"), Ok((b"hello".to_vec(), 6)));
        assert_eq!(decode(10, b"\n"), Ok((b"".to_vec(), 1)));
        assert_eq!(decode(10, b"crlf\r\n"), Ok((b"crlf".to_vec(), 6)));
    }

    #[test]
    fn incomplete_until_newline() {
        assert_eq!(decode(10, b""), Err(FrameError::Incomplete));
        assert_eq!(decode(10, b"hello"), Err(FrameError::Incomplete));
        assert_eq!(decode(5, b"hello\r"), Err(FrameError::Incomplete));
    }

    #[test]
    fn exactly_max_is_accepted() {
        assert_eq!(decode(5, b"hello\n"), Ok((b"hello".to_vec(), 6)));
        assert_eq!(decode(5, b"hello\r\n"), Ok((b"hello".to_vec(), 7)));
    }

    #[test]
    fn too_long_is_refused_without_a_newline() {
        assert_eq!(
            decode(5, b"hello!"),
            Err(FrameError::LineTooLong { max: 5 })
        );
        assert_eq!(
            decode(5, b"hello!\n"),
            Err(FrameError::LineTooLong { max: 5 })
        );
        assert_eq!(
            decode(5, b"hello\rx"),
            Err(FrameError::LineTooLong { max: 5 })
        );
        // A huge buffer is not scanned past the limit.
        let big = vec![b'a'; 1 << 20];
        assert_eq!(decode(5, &big), Err(FrameError::LineTooLong { max: 5 }));
    }

    #[test]
    fn the_largest_max_means_no_limit() {
        // max_len + 1 and + 2 would wrap to 0 and 1.
        for max in [usize::MAX, usize::MAX - 1] {
            assert_eq!(decode(max, b"hello\n"), Ok((b"hello".to_vec(), 6)));
            assert_eq!(decode(max, b"crlf\r\nx"), Ok((b"crlf".to_vec(), 6)));
            assert_eq!(decode(max, b"\n"), Ok((b"".to_vec(), 1)));
            assert_eq!(decode(max, b""), Err(FrameError::Incomplete));
            assert_eq!(decode(max, b"hello"), Err(FrameError::Incomplete));
            assert_eq!(decode(max, b"hello\r"), Err(FrameError::Incomplete));
            let mut out = Vec::new();
            LineCodec::new(max).encode(b"hi", &mut out).unwrap();
            assert_eq!(out, b"hi\n");
        }
        let mut reader = FrameReader::new(LineCodec::new(usize::MAX));
        reader.extend(b"one\ntw");
        assert_eq!(reader.next_frame(), Ok(Some(&b"one"[..])));
        assert_eq!(reader.next_frame(), Ok(None));
        reader.extend(b"o\r\n");
        assert_eq!(reader.next_frame(), Ok(Some(&b"two"[..])));
    }

    #[test]
    fn a_zero_max_takes_only_empty_lines() {
        assert_eq!(decode(0, b"\n"), Ok((b"".to_vec(), 1)));
        assert_eq!(decode(0, b"\r\n"), Ok((b"".to_vec(), 2)));
        assert_eq!(decode(0, b"\r"), Err(FrameError::Incomplete));
        assert_eq!(decode(0, b"x"), Err(FrameError::LineTooLong { max: 0 }));
    }

    #[test]
    fn encode_appends_newline_and_checks_length() {
        let mut out = Vec::new();
        LineCodec::new(5).encode(b"hi", &mut out).unwrap();
        assert_eq!(out, b"hi\n");
        assert_eq!(
            LineCodec::new(1).encode(b"hi", &mut out),
            Err(FrameError::TooLong { len: 2, max: 1 })
        );
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let stream = b"one\ntwo\r\n\nthree\n";
        for cut in 0..=stream.len() {
            let mut reader = FrameReader::new(LineCodec::new(16));
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                reader.extend(part);
                while let Some(frame) = reader.next_frame().unwrap() {
                    got.push(frame.to_vec());
                }
            }
            assert_eq!(got, [&b"one"[..], b"two", b"", b"three"], "cut at {cut}");
            assert!(reader.pending().is_empty());
        }
    }

    /// One byte per read: a '\r' in one read and its '\n' in the next, and a
    /// line refused as too long at the same byte as when sent at once.
    #[test]
    fn one_byte_reads_decode_the_same() {
        let stream = b"one\r\ntwo\n\nthree\r\n";
        let mut reader = FrameReader::new(LineCodec::new(16));
        let mut got = Vec::new();
        for b in stream {
            reader.extend(std::slice::from_ref(b));
            while let Some(frame) = reader.next_frame().unwrap() {
                got.push(frame.to_vec());
            }
        }
        assert_eq!(got, [&b"one"[..], b"two", b"", b"three"]);

        let mut reader = FrameReader::new(LineCodec::new(4));
        let mut refused_at = None;
        for (i, b) in b"abcd\rxyz\n".iter().enumerate() {
            reader.extend(std::slice::from_ref(b));
            if let Err(e) = reader.next_frame() {
                refused_at = Some((i, e));
                break;
            }
        }
        let at_once = LineCodec::new(4).decode(b"abcd\rx").unwrap_err();
        assert_eq!(refused_at, Some((5, at_once)));
    }

    /// A line too long is refused the same way however it arrives, and
    /// without a length the codec cannot know: it stops looking at
    /// `max_len + 2` bytes, so it once said "frame of 13 bytes" of the
    /// 8-byte line in `abcdefgh\nxyz\n` (the buffer's length, later lines
    /// and all), and another length when the same line came in other reads.
    /// Found by the `line` fuzz target.
    #[test]
    fn a_line_too_long_is_refused_alike_however_it_arrives() {
        let stream = b"abcdefgh\nxyz\n";
        let at_once = LineCodec::new(4).decode(stream).unwrap_err();
        assert_eq!(
            at_once.to_string(),
            "line longer than the maximum of 4 bytes"
        );
        for cut in 1..stream.len() {
            let mut reader = FrameReader::new(LineCodec::new(4));
            reader.extend(&stream[..cut]);
            let refused = match reader.next_frame() {
                Ok(_) => {
                    reader.extend(&stream[cut..]);
                    reader.next_frame().unwrap_err()
                }
                Err(e) => e,
            };
            assert_eq!(refused, at_once, "cut at {cut}");
        }
    }

    /// What an earlier call saw is not searched again: a '\n' there (which
    /// cannot be, by the contract) is not found.
    #[test]
    fn decode_after_starts_past_what_was_seen() {
        let codec = LineCodec::new(16);
        assert_eq!(
            codec.decode_after(b"ab\ncd\n", 4).unwrap(),
            Frame {
                payload: 0..5,
                len: 6
            }
        );
        // A '\r' just before the seen part's end still pairs with the '\n'.
        assert_eq!(
            codec.decode_after(b"ab\r\n", 3).unwrap(),
            Frame {
                payload: 0..2,
                len: 4
            }
        );
    }
}
