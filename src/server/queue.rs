//! What waits to be written to one connection, and the bounds on it. Bytes
//! offered while nothing waits are written straight through, so a peer
//! that keeps up costs no copy; what the connection does not take is
//! queued, counted in bytes and in messages ("frames"), and a queue that
//! would pass its bounds is refused: its reader is too slow, and the caller
//! drops it rather than let it stall anyone else.

use std::collections::VecDeque;
use std::io;

use super::conn::Conn;

/// Bounds on what may wait to be written to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub bytes: usize,
    pub frames: usize,
}

impl QueueLimits {
    /// No bound: for services that stop reading a peer instead (see the
    /// reactor's high-water mark).
    pub const NONE: QueueLimits = QueueLimits {
        bytes: usize::MAX,
        frames: usize::MAX,
    };
}

/// Why an offer was refused.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue would pass its bounds: the reader is too slow.
    Overflow,
    /// Writing failed.
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Refused {
        Refused::Io(e)
    }
}

/// What [`OutQueue::flush`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flushed {
    /// Nothing is left, in the queue or in the connection.
    pub done: bool,
    /// Bytes the connection took in this call.
    pub wrote: usize,
}

/// A queue buffer this much larger than what it holds is given back.
const SHRINK_ABOVE: usize = 256 * 1024;

#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
    /// Where each queued message ends, counted in bytes ever queued: a
    /// message is gone once `written` passes its end, so the count of
    /// messages is exact even for a reader that never quite catches up.
    frame_ends: VecDeque<(u64, usize)>,
    frames_queued: usize,
    queued_total: u64,
    written: u64,
}

impl OutQueue {
    /// Bytes waiting.
    pub fn queued(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Messages waiting, wholly or in part.
    #[cfg(test)]
    pub fn frames(&self) -> usize {
        self.frames_queued
    }

    /// Gives `bytes` (`frames` messages) to `conn`: written at once when
    /// nothing waits and `write_through`, else queued, within `limits`.
    /// `Ok(true)` when everything went out (nothing is left in the queue or
    /// in the connection).
    pub fn offer<C: Conn>(
        &mut self,
        conn: &mut C,
        mut bytes: &[u8],
        frames: usize,
        limits: QueueLimits,
        write_through: bool,
    ) -> Result<bool, Refused> {
        if write_through && self.queued() == 0 {
            let n = write(conn, bytes)?;
            if n == bytes.len() {
                return Ok(conn.flush()?);
            }
            bytes = &bytes[n..];
        }
        let over = |q: &OutQueue| {
            q.queued().saturating_add(bytes.len()) > limits.bytes
                || q.frames_queued.saturating_add(frames) > limits.frames
        };
        if over(self) {
            // The bound is for a reader whose socket is full, not for what
            // was never offered to it: write what waits, then decide.
            self.flush(conn)?;
            if over(self) {
                return Err(Refused::Overflow);
            }
        }
        self.compact();
        self.buf.extend_from_slice(bytes);
        self.queued_total += bytes.len() as u64;
        self.frame_ends.push_back((self.queued_total, frames));
        self.frames_queued += frames;
        Ok(false)
    }

    /// Writes what waits until the connection takes no more.
    pub fn flush<C: Conn>(&mut self, conn: &mut C) -> io::Result<Flushed> {
        let mut wrote = 0;
        while self.sent < self.buf.len() {
            let n = write(conn, &self.buf[self.sent..])?;
            if n == 0 {
                // What was written is dropped once it is half the buffer,
                // so a reader a little slower than its writer holds the
                // buffer to about twice what waits, not to all it was sent.
                self.compact();
                return Ok(Flushed { done: false, wrote });
            }
            self.sent += n;
            wrote += n;
            self.written += n as u64;
            while let Some(&(end, frames)) = self.frame_ends.front()
                && end <= self.written
            {
                self.frame_ends.pop_front();
                self.frames_queued -= frames;
            }
        }
        self.buf.clear();
        self.sent = 0;
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf = Vec::new();
        }
        Ok(Flushed {
            done: conn.flush()?,
            wrote,
        })
    }

    fn compact(&mut self) {
        if self.sent > 0 && self.sent >= self.buf.len() / 2 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// Writes to `conn`, retrying an interrupted call; 0 when it takes nothing.
fn write<C: Conn>(conn: &mut C, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match conn.write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::server::conn::Conn;

    /// A connection that takes what its window allows: `take(n)` opens it
    /// by `n` bytes, as a reader taking that much would.
    #[derive(Debug, Default)]
    pub(crate) struct FakeConn {
        pub window: usize,
        pub written: Vec<u8>,
        pub fail: bool,
        pub input: Vec<u8>,
        pub eof: bool,
    }

    impl FakeConn {
        pub fn open(window: usize) -> FakeConn {
            FakeConn {
                window,
                ..FakeConn::default()
            }
        }
    }

    impl Conn for FakeConn {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.input.is_empty() {
                return if self.eof {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            buf[..n].copy_from_slice(&self.input[..n]);
            self.input.drain(..n);
            Ok(n)
        }
        fn more_to_read(&self) -> bool {
            !self.input.is_empty()
        }
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.fail {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = bytes.len().min(self.window);
            self.window -= n;
            self.written.extend_from_slice(&bytes[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<bool> {
            Ok(true)
        }
        fn unsent(&self) -> usize {
            0
        }
        fn shutdown_write(&mut self) {}
    }

    impl mio::event::Source for FakeConn {
        fn register(
            &mut self,
            _: &mio::Registry,
            _: mio::Token,
            _: mio::Interest,
        ) -> io::Result<()> {
            Ok(())
        }
        fn reregister(
            &mut self,
            _: &mio::Registry,
            _: mio::Token,
            _: mio::Interest,
        ) -> io::Result<()> {
            Ok(())
        }
        fn deregister(&mut self, _: &mio::Registry) -> io::Result<()> {
            Ok(())
        }
    }

    const LIMITS: QueueLimits = QueueLimits {
        bytes: 100,
        frames: 4,
    };

    #[test]
    fn a_reader_that_keeps_up_is_written_through_without_a_copy() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn::open(1000);
        assert!(q.offer(&mut conn, b"hello", 1, LIMITS, true).unwrap());
        assert_eq!(q.queued(), 0);
        assert_eq!(q.buf.capacity(), 0, "nothing was copied into the queue");
        assert_eq!(conn.written, b"hello");
    }

    #[test]
    fn what_the_socket_does_not_take_is_queued_and_flushed_in_order() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn::open(3);
        assert!(!q.offer(&mut conn, b"hello", 1, LIMITS, true).unwrap());
        assert!(!q.offer(&mut conn, b"world", 1, LIMITS, true).unwrap());
        assert_eq!((q.queued(), q.frames()), (7, 2));
        conn.window = 4;
        let f = q.flush(&mut conn).unwrap();
        assert_eq!(
            f,
            Flushed {
                done: false,
                wrote: 4
            }
        );
        // "hello" is out whole: one message left.
        assert_eq!((q.queued(), q.frames()), (3, 1));
        conn.window = 100;
        assert_eq!(
            q.flush(&mut conn).unwrap(),
            Flushed {
                done: true,
                wrote: 3
            }
        );
        assert_eq!(conn.written, b"helloworld");
        assert_eq!((q.queued(), q.frames()), (0, 0));
    }

    #[test]
    fn a_queue_past_its_bytes_or_frames_is_refused() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn::open(0);
        for _ in 0..4 {
            q.offer(&mut conn, b"x", 1, LIMITS, true).unwrap();
        }
        assert!(matches!(
            q.offer(&mut conn, b"x", 1, LIMITS, true),
            Err(Refused::Overflow)
        ));
        let mut q = OutQueue::default();
        q.offer(&mut conn, &[7; 60], 1, LIMITS, true).unwrap();
        assert!(matches!(
            q.offer(&mut conn, &[7; 41], 1, LIMITS, true),
            Err(Refused::Overflow)
        ));
        // Exactly at the bound is within it.
        q.offer(&mut conn, &[7; 40], 1, LIMITS, true).unwrap();
        assert_eq!(q.queued(), 100);
    }

    /// The bound is on what the socket will not take: a reader that took
    /// what waited is not dropped for a message that fits once it is out.
    #[test]
    fn the_bound_is_checked_after_writing_what_waits() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn::open(0);
        q.offer(&mut conn, &[1; 90], 1, LIMITS, true).unwrap();
        conn.window = 90;
        assert!(!q.offer(&mut conn, &[2; 50], 1, LIMITS, true).unwrap());
        assert_eq!(q.queued(), 50);
        assert_eq!(conn.written.len(), 90);
    }

    #[test]
    fn messages_written_in_part_stay_counted_until_their_last_byte() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn::open(0);
        q.offer(&mut conn, b"abc", 1, LIMITS, true).unwrap();
        q.offer(&mut conn, b"defgh", 2, LIMITS, true).unwrap();
        for (window, frames) in [(2, 3), (1, 2), (4, 2), (1, 0)] {
            conn.window = window;
            q.flush(&mut conn).unwrap();
            assert_eq!(q.frames(), frames, "after {} bytes", conn.written.len());
        }
        assert_eq!(conn.written, b"abcdefgh");
    }

    /// A reader a little slower than its writer: the buffer holds what
    /// waits, not everything that went through it.
    #[test]
    fn a_slightly_slow_reader_does_not_grow_the_buffer_without_bound() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn::open(0);
        let mut written = 0;
        for _ in 0..4096 {
            q.offer(&mut conn, &[7u8; 4096], 1, QueueLimits::NONE, false)
                .unwrap();
            conn.window = 4000;
            written += q.flush(&mut conn).unwrap().wrote;
        }
        assert_eq!(written + q.queued(), 4096 * 4096);
        assert!(
            q.buf.capacity() <= 4 * q.queued().max(SHRINK_ABOVE),
            "{} bytes of buffer for {} waiting",
            q.buf.capacity(),
            q.queued()
        );
    }

    #[test]
    fn a_failed_write_is_an_error() {
        let mut q = OutQueue::default();
        let mut conn = FakeConn {
            fail: true,
            ..FakeConn::default()
        };
        assert!(matches!(
            q.offer(&mut conn, b"x", 1, LIMITS, true),
            Err(Refused::Io(_))
        ));
    }
}
