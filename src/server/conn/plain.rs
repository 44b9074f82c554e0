//! Plain TCP.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::{Conn, kernel_unsent};

pub(crate) struct PlainConn {
    stream: TcpStream,
    /// The last read filled the caller's buffer: the socket may hold more.
    /// A shorter read emptied it, and the edge-triggered poll will say when
    /// more arrives; not reading again saves a system call per request.
    last_read_full: bool,
}

impl PlainConn {
    pub fn new(stream: TcpStream) -> PlainConn {
        PlainConn {
            stream,
            last_read_full: false,
        }
    }
}

impl Conn for PlainConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.stream.read(buf);
        self.last_read_full = matches!(read, Ok(n) if n == buf.len() && n > 0);
        read
    }

    fn more_to_read(&self) -> bool {
        self.last_read_full
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.stream.write(bytes) {
            Ok(0) if !bytes.is_empty() => Err(io::ErrorKind::WriteZero.into()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        }
    }

    fn flush(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn unsent(&self) -> usize {
        kernel_unsent(self.stream.as_raw_fd())
    }

    fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

impl mio::event::Source for PlainConn {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.stream.register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.stream.reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.stream.deregister(r)
    }
}
