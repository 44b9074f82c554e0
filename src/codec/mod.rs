//! Framing, as pure functions over byte slices.
//!
//! Every codec works the way mini-redis's `frame.rs` does: [`Decoder::decode`]
//! looks at the bytes buffered so far and either finds one whole frame at
//! their start, says [`FrameError::Incomplete`] (read more and call again), or
//! says what is wrong with them. Nothing is allocated from a length before
//! that length has been checked against the codec's maximum, so a hostile
//! header cannot make a server reserve memory.

pub mod chat;
pub mod header;
pub mod line;

use std::fmt;
use std::ops::Range;

pub use header::HeaderCodec;
pub use line::LineCodec;

/// One whole frame found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Where the payload lies in the buffer that was decoded.
    pub payload: Range<usize>,
    /// How many bytes of the buffer the frame takes, header and delimiter
    /// included: the caller consumes this many before decoding the next.
    pub len: usize,
}

/// Why no frame could be taken from a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The buffer holds the start of a frame but not all of it: read more.
    Incomplete,
    /// The frame's payload is longer than the codec allows.
    TooLong { len: usize, max: usize },
    /// A line went on past the codec's maximum. How long it is the codec
    /// cannot tell without reading on, which it does not: a length would
    /// depend on how much happened to be read.
    LineTooLong { max: usize },
    /// A length header whose number does not fit in `usize`: more bytes
    /// than any buffer on this machine could hold, whatever the maximum.
    LengthOverflow { digits: usize, max: usize },
    /// A length header that is not a decimal number padded with spaces.
    BadHeader { header: String },
}

impl FrameError {
    /// `true` for [`FrameError::Incomplete`], the one error that is not one.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, FrameError::Incomplete)
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Incomplete => write!(f, "incomplete frame"),
            FrameError::TooLong { len, max } => {
                write!(
                    f,
                    "frame of {len} bytes is longer than the maximum of {max}"
                )
            }
            FrameError::LineTooLong { max } => {
                write!(f, "line longer than the maximum of {max} bytes")
            }
            FrameError::LengthOverflow { digits, max } => write!(
                f,
                "length header of {digits} digits overflows (no length above {} can be read); the longest frame is {max} bytes",
                usize::MAX
            ),
            FrameError::BadHeader { header } => write!(
                f,
                "length header {header:?} is not a decimal number left-justified and padded with spaces"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// A framing that can be decoded incrementally and encoded.
pub trait Codec {
    /// Finds one whole frame at the start of `buf`.
    fn decode(&self, buf: &[u8]) -> Result<Frame, FrameError>;
    /// [`Codec::decode`], told that an earlier call saw the first `seen`
    /// bytes of `buf` and said `Incomplete` (the buffer has only grown
    /// since): a codec that searches for a delimiter starts past them, so
    /// a long frame arriving in small reads costs linear, not quadratic,
    /// time. By default it decodes afresh.
    fn decode_after(&self, buf: &[u8], seen: usize) -> Result<Frame, FrameError> {
        let _ = seen;
        self.decode(buf)
    }
    /// Appends `payload`, framed, to `out`.
    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError>;
}

/// Incremental decoding over a stream: bytes go in as they are read, whole
/// payloads come out. Consumed bytes are dropped lazily, so a burst of small
/// frames costs one `drain` rather than one per frame.
#[derive(Debug)]
pub struct FrameReader<C> {
    codec: C,
    buf: Vec<u8>,
    start: usize,
    /// Bytes after `start` that the codec has seen without finding a frame.
    seen: usize,
}

impl<C: Codec> FrameReader<C> {
    pub fn new(codec: C) -> Self {
        FrameReader {
            codec,
            buf: Vec::new(),
            start: 0,
            seen: 0,
        }
    }

    pub fn codec(&self) -> &C {
        &self.codec
    }

    /// Buffers bytes read from the peer.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole payload, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        match self.codec.decode_after(&self.buf[self.start..], self.seen) {
            Ok(frame) => {
                let base = self.start;
                let pending = self.buf.len() - base;
                // Checked before anything moves: a codec that returned a frame
                // outside the buffer (a bug, never the input) panics here and
                // leaves the reader as it was.
                assert!(
                    frame.len <= pending
                        && frame.payload.start <= frame.payload.end
                        && frame.payload.end <= frame.len,
                    "codec returned a frame of {} bytes with payload {:?} from {pending} buffered bytes",
                    frame.len,
                    frame.payload,
                );
                self.start += frame.len;
                self.seen = 0;
                Ok(Some(
                    &self.buf[base + frame.payload.start..base + frame.payload.end],
                ))
            }
            Err(FrameError::Incomplete) => {
                self.seen = self.buf.len() - self.start;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Bytes buffered that are not yet part of a whole frame.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A line codec that counts the bytes it is asked to look at anew.
    struct Counting {
        inner: LineCodec,
        new_bytes: Cell<usize>,
    }

    impl Codec for Counting {
        fn decode(&self, buf: &[u8]) -> Result<Frame, FrameError> {
            self.decode_after(buf, 0)
        }
        fn decode_after(&self, buf: &[u8], seen: usize) -> Result<Frame, FrameError> {
            self.new_bytes
                .set(self.new_bytes.get() + buf.len() - seen.min(buf.len()));
            self.inner.decode_after(buf, seen)
        }
        fn encode(&self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
            self.inner.encode(payload, out)
        }
    }

    /// A 64 KiB line arriving a byte per read is looked at once, not once
    /// per read: a peer trickling bytes cannot make the server scan the
    /// same buffer over and over (2 GB of scanning for one line).
    #[test]
    #[cfg_attr(
        miri,
        ignore = "64 KiB read a byte at a time: over half an hour in Miri, and no unsafe"
    )]
    fn a_long_line_in_one_byte_reads_is_looked_at_once() {
        const LEN: usize = 64 * 1024;
        let mut reader = FrameReader::new(Counting {
            inner: LineCodec::new(LEN),
            new_bytes: Cell::new(0),
        });
        let mut line = vec![b'x'; LEN];
        line.push(b'\n');
        let mut frames = 0;
        for b in &line {
            reader.extend(std::slice::from_ref(b));
            while let Some(frame) = reader.next_frame().unwrap() {
                assert_eq!(frame.len(), LEN);
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        assert_eq!(reader.codec().new_bytes.get(), LEN + 1);
    }
}
