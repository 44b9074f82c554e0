//! The kinds of connection a reactor drives: plain TCP and TLS. Each
//! answers for itself what the reactor must not guess: whether a read may
//! find more without a new readiness event, whether anything it holds is
//! still unsent, whether it is still in its handshake.

mod plain;
mod tls;

use std::io;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

pub(crate) use plain::PlainConn;
pub(crate) use tls::TlsConn;

use crate::tls::TlsServer;

/// A non-blocking connection, as the reactor drives it.
pub(crate) trait Conn: mio::event::Source {
    /// Reads what the peer sent (plaintext) into `buf`: `Ok(0)` at its
    /// end, `WouldBlock` when nothing more is there now.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Whether a read may find more now, although no readiness event has
    /// said so: readiness is edge-triggered, so a connection that may hold
    /// more must be read again before the reactor sleeps. After a read that
    /// returned `WouldBlock` or `Ok(0)`, it is `false`.
    fn more_to_read(&self) -> bool;

    /// Takes plaintext to send and returns how much it took: 0 when it can
    /// take nothing now (try again once writable).
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize>;

    /// Sends what the connection itself still holds (TLS records);
    /// `Ok(true)` when nothing is left in it.
    fn flush(&mut self) -> io::Result<bool>;

    /// Bytes taken but not yet acknowledged by the peer: held by the
    /// connection, and in the kernel's send queue. A reader still taking
    /// its data changes this; an absent one does not.
    fn unsent(&self) -> usize;

    /// Ends this side: TLS says close_notify, then TCP sends its FIN.
    fn shutdown_write(&mut self);

    /// Whether it is still in its handshake: no plaintext has flowed.
    fn handshaking(&self) -> bool {
        false
    }
}

/// How a listener's accepted sockets become connections.
#[derive(Clone)]
pub(crate) enum ConnKind {
    Plain,
    Tls(std::sync::Arc<TlsServer>),
}

impl ConnKind {
    /// Whether its connections begin with a handshake.
    pub fn handshakes(&self) -> bool {
        matches!(self, ConnKind::Tls(_))
    }

    pub fn wrap(&self, stream: TcpStream) -> io::Result<Connection> {
        Ok(match self {
            ConnKind::Plain => Connection::Plain(PlainConn::new(stream)),
            ConnKind::Tls(server) => Connection::Tls(Box::new(TlsConn::new(stream, server)?)),
        })
    }
}

/// Either kind; a chat room may listen with both.
pub(crate) enum Connection {
    Plain(PlainConn),
    // Boxed: a TLS session is some kilobytes, and plain connections are
    // the many.
    Tls(Box<TlsConn>),
}

macro_rules! either {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            Connection::Plain($c) => $e,
            Connection::Tls($c) => $e,
        }
    };
}

impl Conn for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        either!(self, c => c.read(buf))
    }
    fn more_to_read(&self) -> bool {
        either!(self, c => c.more_to_read())
    }
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        either!(self, c => c.write(bytes))
    }
    fn flush(&mut self) -> io::Result<bool> {
        either!(self, c => c.flush())
    }
    fn unsent(&self) -> usize {
        either!(self, c => c.unsent())
    }
    fn shutdown_write(&mut self) {
        either!(self, c => c.shutdown_write())
    }
    fn handshaking(&self) -> bool {
        either!(self, c => c.handshaking())
    }
}

impl mio::event::Source for Connection {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        either!(self, c => c.register(r, t, i))
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        either!(self, c => c.reregister(r, t, i))
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        either!(self, c => c.deregister(r))
    }
}

/// Bytes the kernel holds for `fd` that the peer has not acknowledged
/// (SIOCOUTQ); 0 when it cannot say.
pub(crate) fn kernel_unsent(fd: std::os::fd::RawFd) -> usize {
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut unsent) };
    if rc == 0 {
        usize::try_from(unsent).unwrap_or(0)
    } else {
        0
    }
}
