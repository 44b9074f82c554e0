//! Length headers as seed 004's chat writes them: the payload length in
//! decimal ASCII, left-justified and padded with spaces to `header_len`
//! bytes (`f"{len(payload):<{HEADER_LENGTH}}"`), then the payload.

use super::{Codec, Frame, FrameError};

/// Fixed-width ASCII length header framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderCodec {
    pub header_len: usize,
    pub max_frame: usize,
}

impl HeaderCodec {
    /// The widest header accepted anywhere (config, C ABI): the seed's 100
    /// with room to spare, never so wide that a frame's header could be made
    /// to cost real memory.
    pub const MAX_HEADER_LEN: usize = 1024;

    pub fn new(header_len: usize, max_frame: usize) -> Self {
        HeaderCodec {
            header_len,
            max_frame,
        }
    }

    /// Reads a header: digits, then spaces to its end. The seed's server
    /// reads it with `int(header.strip())`, so ASCII white space on either
    /// side is allowed; signs, embedded blanks and anything else are not.
    fn parse_header(&self, header: &[u8]) -> Result<usize, FrameError> {
        let bad = || FrameError::BadHeader {
            header: String::from_utf8_lossy(header).into_owned(),
        };
        let text = header.trim_ascii();
        if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        // Digits beyond what max_frame could need are too long, whatever they say;
        // this also keeps the arithmetic from overflowing.
        let mut len: usize = 0;
        for &d in text {
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(d - b'0')))
                .ok_or(FrameError::LengthOverflow {
                    digits: text.len(),
                    max: self.max_frame,
                })?;
        }
        if len > self.max_frame {
            return Err(FrameError::TooLong {
                len,
                max: self.max_frame,
            });
        }
        Ok(len)
    }
}

impl Codec for HeaderCodec {
    fn decode(&self, buf: &[u8]) -> Result<Frame, FrameError> {
        if buf.len() < self.header_len {
            // Reject a header that is already wrong before the rest arrives:
            // one with a byte no header may hold. White space is one it may,
            // as parse_header trims it (the seed reads `int(h.strip())`).
            if buf
                .iter()
                .any(|&b| !(b.is_ascii_digit() || b.is_ascii_whitespace()))
            {
                return Err(FrameError::BadHeader {
                    header: String::from_utf8_lossy(buf).into_owned(),
                });
            }
            return Err(FrameError::Incomplete);
        }
        let len = self.parse_header(&buf[..self.header_len])?;
        // Compared with what follows the header rather than added to the
        // header's width: with a max_frame of usize::MAX, header_len + len
        // could wrap. Once it fits, the sum is at most buf.len().
        if buf.len() - self.header_len < len {
            return Err(FrameError::Incomplete);
        }
        let end = self.header_len + len;
        Ok(Frame {
            payload: self.header_len..end,
            len: end,
        })
    }

    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        let digits = payload.len().to_string();
        if payload.len() > self.max_frame || digits.len() > self.header_len {
            return Err(FrameError::TooLong {
                len: payload.len(),
                max: self.max_frame.min(max_for_width(self.header_len)),
            });
        }
        out.reserve(self.header_len.saturating_add(payload.len()));
        out.extend_from_slice(digits.as_bytes());
        out.resize(out.len() + self.header_len - digits.len(), b' ');
        out.extend_from_slice(payload);
        Ok(())
    }
}

/// The largest length that fits in `width` decimal digits.
fn max_for_width(width: usize) -> usize {
    10usize
        .checked_pow(u32::try_from(width).unwrap_or(u32::MAX))
        .map_or(usize::MAX, |p| p - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::FrameReader;

    fn codec() -> HeaderCodec {
        HeaderCodec::new(10, 100)
    }

    #[test]
    fn encodes_like_the_seed() {
        let mut out = Vec::new();
        codec().encode(b"Dian", &mut out).unwrap();
        assert_eq!(out, b"4         Dian");
        out.clear();
        HeaderCodec::new(100, 1000)
            .encode(b"Hello World", &mut out)
            .unwrap();
        assert_eq!(out.len(), 111);
        assert_eq!(&out[..3], b"11 ");
        assert!(out[2..100].iter().all(|&b| b == b' '));
        assert_eq!(&out[100..], b"Hello World");
    }

    #[test]
    fn decodes_whole_frames() {
        let f = codec().decode(b"5         hello6         ").unwrap();
        assert_eq!(
            f,
            Frame {
                payload: 10..15,
                len: 15
            }
        );
        assert_eq!(
            codec().decode(b"0         ").unwrap(),
            Frame {
                payload: 10..10,
                len: 10
            }
        );
        // Python's int() accepts leading blanks too.
        assert_eq!(
            codec().decode(b"  3       abc").unwrap(),
            Frame {
                payload: 10..13,
                len: 13
            }
        );
    }

    #[test]
    fn incomplete_header_or_payload() {
        assert_eq!(codec().decode(b""), Err(FrameError::Incomplete));
        assert_eq!(codec().decode(b"5    "), Err(FrameError::Incomplete));
        assert_eq!(
            codec().decode(b"5         hell"),
            Err(FrameError::Incomplete)
        );
    }

    #[test]
    fn malformed_headers() {
        for header in [
            &b"abc       x"[..],
            b"-5        ",
            b"+5        ",
            b"5 5       ",
            b"          ",
            b"0x10      ",
            b"5\0        ",
            b"\xff        ",
        ] {
            assert!(
                matches!(codec().decode(header), Err(FrameError::BadHeader { .. })),
                "{header:?}"
            );
        }
        // Caught before the header is even complete.
        assert!(matches!(
            codec().decode(b"-"),
            Err(FrameError::BadHeader { .. })
        ));
    }

    #[test]
    fn oversized_lengths_are_refused_before_the_payload() {
        assert_eq!(
            codec().decode(b"101       "),
            Err(FrameError::TooLong { len: 101, max: 100 })
        );
        let huge = HeaderCodec::new(40, 100);
        let mut hdr = b"9".repeat(39);
        hdr.push(b' ');
        assert_eq!(
            huge.decode(&hdr),
            Err(FrameError::LengthOverflow {
                digits: 39,
                max: 100
            })
        );
    }

    #[test]
    fn the_largest_max_means_no_limit() {
        let codec = HeaderCodec::new(20, usize::MAX);
        let mut frame = Vec::new();
        codec.encode(b"hello", &mut frame).unwrap();
        assert_eq!(frame, b"5                   hello");
        assert_eq!(
            codec.decode(&frame),
            Ok(Frame {
                payload: 20..25,
                len: 25
            })
        );
        // A length that header_len + len would wrap (to 19, 0, ...) is a
        // frame that has not arrived yet, not a panic.
        for digits in [
            usize::MAX.to_string(),
            (usize::MAX - 19).to_string(),
            (usize::MAX - 20).to_string(),
        ] {
            let mut buf = format!("{digits:<20}").into_bytes();
            assert_eq!(codec.decode(&buf), Err(FrameError::Incomplete), "{digits}");
            buf.extend_from_slice(b"some of the payload");
            assert_eq!(codec.decode(&buf), Err(FrameError::Incomplete), "{digits}");
        }
        // One more digit than usize holds overflows, whatever the max, and
        // says so rather than quoting usize::MAX as the length.
        let buf = format!("{:<21}", format!("{}0", usize::MAX)).into_bytes();
        let e = HeaderCodec::new(21, usize::MAX).decode(&buf).unwrap_err();
        assert_eq!(
            e,
            FrameError::LengthOverflow {
                digits: 21,
                max: usize::MAX
            }
        );
        let digits = "9".repeat(1024);
        let e = HeaderCodec::new(1024, usize::MAX)
            .decode(digits.as_bytes())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "length header of 1024 digits overflows (no length above {0} can be read); the longest frame is {0} bytes",
                usize::MAX
            )
        );
        // Through a reader: nothing is consumed until the frame is whole.
        let mut reader = FrameReader::new(codec);
        reader.extend(format!("{:<20}", usize::MAX).as_bytes());
        assert_eq!(reader.next_frame(), Ok(None));
        assert_eq!(reader.pending().len(), 20);
    }

    #[test]
    fn encode_refuses_what_does_not_fit() {
        let mut out = Vec::new();
        assert!(
            HeaderCodec::new(2, 1000)
                .encode(&[0; 100], &mut out)
                .is_err()
        );
        assert!(codec().encode(&[0; 101], &mut out).is_err());
        assert!(out.is_empty());
    }

    /// A header the whole of which is accepted (white space around the
    /// digits, as Python's `strip()` takes it) is not refused when it
    /// arrives in pieces. Found by the `header` fuzz target.
    #[test]
    fn a_header_with_white_space_is_accepted_however_it_arrives() {
        let stream = b"\t5\r\n      hello";
        assert_eq!(
            codec().decode(stream),
            Ok(Frame {
                payload: 10..15,
                len: 15
            })
        );
        for cut in 0..=stream.len() {
            let mut reader = FrameReader::new(codec());
            reader.extend(&stream[..cut]);
            let first = reader.next_frame().map(|f| f.map(<[u8]>::to_vec));
            reader.extend(&stream[cut..]);
            let second = reader.next_frame().map(|f| f.map(<[u8]>::to_vec));
            let got = first.and_then(|a| Ok(a.or(second?)));
            assert_eq!(got, Ok(Some(b"hello".to_vec())), "cut at {cut}");
        }
    }

    #[test]
    fn split_at_every_byte_decodes_the_same() {
        let mut stream = Vec::new();
        for p in [&b"Dian"[..], b"", b"Hello World"] {
            codec().encode(p, &mut stream).unwrap();
        }
        for cut in 0..=stream.len() {
            let mut reader = FrameReader::new(codec());
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                reader.extend(part);
                while let Some(frame) = reader.next_frame().unwrap() {
                    got.push(frame.to_vec());
                }
            }
            assert_eq!(got, [&b"Dian"[..], b"", b"Hello World"], "cut at {cut}");
        }
    }
}
