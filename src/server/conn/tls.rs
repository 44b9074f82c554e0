//! TLS over a non-blocking socket, after rustls' `tlsserver-mio` example:
//! records are read from the socket into the session as plaintext is
//! wanted, and the session's records written out as the socket takes them.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

use super::{Conn, NoSigpipe, kernel_unsent};
use crate::tls::TlsServer;

pub(crate) struct TlsConn {
    socket: TcpStream,
    tls: ServerConnection,
    /// Decrypted bytes not yet read.
    plaintext_left: usize,
    /// The last socket read filled what the session asked for: the socket
    /// may hold more records.
    socket_maybe_more: bool,
    /// The socket said end of stream.
    socket_eof: bool,
}

impl TlsConn {
    /// A server session with the listener's current configuration.
    pub fn new(socket: TcpStream, server: &TlsServer) -> io::Result<TlsConn> {
        let tls = ServerConnection::new(server.current()).map_err(io::Error::other)?;
        Ok(TlsConn {
            socket,
            tls,
            plaintext_left: 0,
            socket_maybe_more: false,
            socket_eof: false,
        })
    }

    /// Reads records from the socket and decrypts them. `Ok(false)` when
    /// the socket had nothing.
    fn read_records(&mut self) -> io::Result<bool> {
        let mut socket = Counting {
            inner: &mut self.socket,
            full: false,
        };
        match self.tls.read_tls(&mut socket) {
            Ok(0) => self.socket_eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.socket_maybe_more = false;
                return Ok(false);
            }
            Err(e) => return Err(e),
        }
        self.socket_maybe_more = socket.full;
        match self.tls.process_new_packets() {
            Ok(state) => {
                self.plaintext_left = state.plaintext_bytes_to_read();
                Ok(true)
            }
            Err(e) => {
                // The alert that says why, if the socket takes it.
                let _ = self.tls.write_tls(&mut NoSigpipe(&self.socket));
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
        }
    }
}

/// A socket that remembers whether its last read filled the buffer.
struct Counting<'a> {
    inner: &'a mut TcpStream,
    full: bool,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.full = n == buf.len() && n > 0;
        Ok(n)
    }
}

impl Conn for TlsConn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.plaintext_left > 0 {
                let n = self.tls.reader().read(buf)?;
                self.plaintext_left = self.plaintext_left.saturating_sub(n);
                return Ok(n);
            }
            if self.socket_eof {
                // A clean close_notify, or a peer that just closed: either
                // way nothing more will come.
                return Ok(0);
            }
            if !self.read_records()? {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
    }

    fn more_to_read(&self) -> bool {
        self.plaintext_left > 0 || (self.socket_maybe_more && !self.socket_eof)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        // Taken into the session (up to its buffer limit), then sent as
        // far as the socket takes it; what it does not is sent by flush.
        let n = self.tls.writer().write(bytes)?;
        self.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<bool> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut NoSigpipe(&self.socket)) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn unsent(&self) -> usize {
        kernel_unsent(self.socket.as_raw_fd()) + usize::from(self.tls.wants_write())
    }

    fn shutdown_write(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush();
        let _ = self.socket.shutdown(Shutdown::Write);
    }

    fn handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }
}

impl mio::event::Source for TlsConn {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.socket.register(r, t, i)
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        self.socket.reregister(r, t, i)
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        self.socket.deregister(r)
    }
}
