//! Count, seed 001's server: each message is answered with the number of
//! characters in it, in decimal ASCII.

use crate::codec::{Codec, FrameError, FrameReader, HeaderCodec, LineCodec};

use super::{ProtocolError, Session};

/// How messages and replies are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountFraming {
    /// A message is a line; the reply is `N\n`.
    Line,
    /// A message is a header frame; the reply is framed the same way.
    Header { header_len: usize },
    /// Each read is one message and the reply is the bare number, as seed
    /// 001's server does. Only for short interactive messages: TCP may split
    /// or join what the client wrote.
    Chunk,
}

impl CountFraming {
    /// The names a configuration or a command line uses.
    pub const NAMES: [&'static str; 3] = ["line", "header", "chunk"];

    /// The framing named `name`, a header one `header_len` bytes wide.
    pub fn named(name: &str, header_len: usize) -> Option<CountFraming> {
        match name {
            "line" => Some(CountFraming::Line),
            "header" => Some(CountFraming::Header { header_len }),
            "chunk" => Some(CountFraming::Chunk),
            _ => None,
        }
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountUnit {
    /// Unicode scalar values; each byte that is not valid UTF-8 counts as one.
    Chars,
    Bytes,
}

impl CountUnit {
    /// The names a configuration uses.
    pub const NAMES: [&'static str; 2] = ["chars", "bytes"];

    pub fn named(name: &str) -> Option<CountUnit> {
        match name {
            "chars" => Some(CountUnit::Chars),
            "bytes" => Some(CountUnit::Bytes),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountService {
    pub framing: CountFraming,
    pub unit: CountUnit,
    /// The longest message accepted, in bytes.
    pub max_frame: usize,
}

impl CountService {
    pub fn session(&self) -> CountSession {
        let reader = match self.framing {
            CountFraming::Line => Reader::Line(FrameReader::new(LineCodec::new(self.max_frame))),
            CountFraming::Header { header_len } => Reader::Header(FrameReader::new(
                HeaderCodec::new(header_len, self.max_frame),
            )),
            CountFraming::Chunk => Reader::Chunk,
        };
        CountSession {
            unit: self.unit,
            reader,
            answered: 0,
        }
    }
}

/// Counts `message` in `unit`.
pub fn count(message: &[u8], unit: CountUnit) -> usize {
    match unit {
        CountUnit::Bytes => message.len(),
        CountUnit::Chars => message
            .utf8_chunks()
            .map(|chunk| chunk.valid().chars().count() + chunk.invalid().len())
            .sum(),
    }
}

#[derive(Debug)]
enum Reader {
    Line(FrameReader<LineCodec>),
    Header(FrameReader<HeaderCodec>),
    Chunk,
}

#[derive(Debug)]
pub struct CountSession {
    unit: CountUnit,
    reader: Reader,
    /// Messages answered since the runtime last asked (for its metrics).
    answered: u64,
}

impl CountSession {
    fn reply(&mut self, n: usize, out: &mut Vec<u8>) {
        self.answered += 1;
        let digits = n.to_string();
        match &self.reader {
            Reader::Line(_) => {
                out.extend_from_slice(digits.as_bytes());
                out.push(b'\n');
            }
            Reader::Header(r) => {
                // max_frame bounds what is accepted, not replies: the reply
                // to an empty message is "0", one byte over a max_frame of 0.
                // Only the width then applies, and a count never has more
                // digits than the length of the message it counts, which fit
                // the header: so this cannot fail.
                let replies = HeaderCodec {
                    max_frame: usize::MAX,
                    ..*r.codec()
                };
                let _ = replies.encode(digits.as_bytes(), out);
            }
            Reader::Chunk => out.extend_from_slice(digits.as_bytes()),
        }
    }
}

fn frame_error(e: FrameError, out: &mut Vec<u8>, text_reply: bool) -> ProtocolError {
    let reason = match &e {
        FrameError::TooLong { max, .. } | FrameError::LineTooLong { max } => {
            format!("message longer than {max} bytes")
        }
        other => other.to_string(),
    };
    if text_reply {
        out.extend_from_slice(format!("error: {reason}\n").as_bytes());
    }
    ProtocolError::new(reason)
}

impl Session for CountSession {
    fn on_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let unit = self.unit;
        let mut counts = Vec::new();
        let result = match &mut self.reader {
            Reader::Chunk => {
                counts.push(count(input, unit));
                Ok(())
            }
            Reader::Line(r) => {
                r.extend(input);
                drain(r, unit, &mut counts)
            }
            Reader::Header(r) => {
                r.extend(input);
                drain(r, unit, &mut counts)
            }
        };
        for n in counts {
            self.reply(n, out);
        }
        result.map_err(|e| frame_error(e, out, matches!(self.reader, Reader::Line(_))))
    }

    fn on_eof(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        match &self.reader {
            Reader::Chunk => Ok(()),
            // A last line without its newline (`printf abc | nc`) is still a message.
            Reader::Line(r) if !r.pending().is_empty() => {
                let n = count(r.pending(), self.unit);
                self.reply(n, out);
                Ok(())
            }
            Reader::Line(_) => Ok(()),
            Reader::Header(r) if !r.pending().is_empty() => Err(ProtocolError::new(format!(
                "peer closed in the middle of a frame ({} bytes of it received)",
                r.pending().len()
            ))),
            Reader::Header(_) => Ok(()),
        }
    }

    fn take_answered(&mut self) -> u64 {
        std::mem::take(&mut self.answered)
    }
}

fn drain<C: Codec>(
    reader: &mut FrameReader<C>,
    unit: CountUnit,
    counts: &mut Vec<usize>,
) -> Result<(), FrameError> {
    while let Some(frame) = reader.next_frame()? {
        counts.push(count(frame, unit));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(svc: CountService, chunks: &[&[u8]]) -> (Vec<u8>, Result<(), ProtocolError>) {
        let mut s = svc.session();
        let mut out = Vec::new();
        for chunk in chunks {
            if let Err(e) = s.on_data(chunk, &mut out) {
                return (out, Err(e));
            }
        }
        let r = s.on_eof(&mut out);
        (out, r)
    }

    fn line(unit: CountUnit) -> CountService {
        CountService {
            framing: CountFraming::Line,
            unit,
            max_frame: 64 * 1024,
        }
    }

    #[test]
    fn chars_and_bytes() {
        let msg = "héllo wörld".as_bytes();
        assert_eq!(count(msg, CountUnit::Chars), 11);
        assert_eq!(count(msg, CountUnit::Bytes), 13);
        assert_eq!(
            run(line(CountUnit::Chars), &[b"h\xc3\xa9llo w\xc3\xb6rld\n"]).0,
            b"11\n"
        );
        assert_eq!(
            run(line(CountUnit::Bytes), &["héllo wörld\r\n".as_bytes()]).0,
            b"13\n"
        );
    }

    #[test]
    fn invalid_utf8_counts_each_bad_byte() {
        // 'a', a lone continuation byte, a truncated 3-byte sequence, 'b'.
        let msg = b"a\x80\xe2\x82b";
        assert_eq!(count(msg, CountUnit::Chars), 5);
        assert_eq!(count(b"\xff\xfe", CountUnit::Chars), 2);
        assert_eq!(run(line(CountUnit::Chars), &[b"\xff\xfe\n"]).0, b"2\n");
    }

    #[test]
    fn line_framing_split_anywhere() {
        let stream = "héllo wörld\nabc\n\n".as_bytes();
        for cut in 0..=stream.len() {
            let (out, r) = run(line(CountUnit::Chars), &[&stream[..cut], &stream[cut..]]);
            r.unwrap();
            assert_eq!(out, b"11\n3\n0\n", "cut at {cut}");
        }
    }

    #[test]
    fn unterminated_last_line_is_counted_at_eof() {
        assert_eq!(run(line(CountUnit::Chars), &[b"ab\ncde"]).0, b"2\n3\n");
    }

    #[test]
    fn overlong_line_gets_an_error_reply() {
        let svc = CountService {
            max_frame: 4,
            ..line(CountUnit::Chars)
        };
        let (out, r) = run(svc, &[b"ok\n", b"toolong\n"]);
        assert_eq!(out, b"2\nerror: message longer than 4 bytes\n");
        assert!(r.unwrap_err().reason.contains("longer than 4"));
    }

    #[test]
    fn header_framing() {
        let svc = CountService {
            framing: CountFraming::Header { header_len: 10 },
            ..line(CountUnit::Chars)
        };
        let (out, r) = run(svc, &[b"13        h\xc3\xa9llo", b" w\xc3\xb6rld"]);
        r.unwrap();
        assert_eq!(out, b"2         11");
        let (out, r) = run(svc, &[b"abc       "]);
        assert!(out.is_empty());
        assert!(r.unwrap_err().reason.contains("\"abc       \""));
        let (_, r) = run(svc, &[b"5         ab"]);
        assert!(r.unwrap_err().reason.contains("middle of a frame"));
        let (_, r) = run(svc, &[b"99999999  "]);
        assert!(r.unwrap_err().reason.contains("longer than 65536"));
    }

    /// Every message gets its reply, also when the reply is longer than
    /// any message accepted: with max_frame 0, only empty messages are,
    /// and the reply to one, "0", was dropped as over max_frame. Found by
    /// the `count` fuzz target.
    #[test]
    fn header_replies_are_not_held_to_max_frame() {
        let svc = CountService {
            framing: CountFraming::Header { header_len: 10 },
            max_frame: 0,
            ..line(CountUnit::Bytes)
        };
        let (out, r) = run(svc, &[b"0         0         "]);
        r.unwrap();
        assert_eq!(out, b"1         01         0");
    }

    #[test]
    fn chunk_framing_counts_each_read() {
        let svc = CountService {
            framing: CountFraming::Chunk,
            ..line(CountUnit::Chars)
        };
        let (out, r) = run(svc, &["héllo wörld".as_bytes()]);
        r.unwrap();
        assert_eq!(out, b"11");
    }
}
