//! The kinds of connection a reactor drives: plain TCP and TLS. Each
//! answers for itself what the reactor must not guess: whether a read may
//! find more without a new readiness event, whether anything it holds is
//! still unsent, whether it is still in its handshake.

mod plain;
mod tls;

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{MsgFlags, send, sendmsg};

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

/// A socket written with `MSG_NOSIGNAL`, vectored writes too: std's
/// `writev` (which rustls' `write_tls` uses) raises SIGPIPE on a closed
/// connection, and a host program that does not ignore SIGPIPE (a C
/// program) would die of it.
pub(crate) struct NoSigpipe<S>(pub S);

impl<S: AsFd> Write for NoSigpipe<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(self.0.as_fd().as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL).map_err(io::Error::from)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        sendmsg::<()>(
            self.0.as_fd().as_raw_fd(),
            bufs,
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io::Error::from)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: Read> Read for NoSigpipe<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{SigHandler, Signal, signal};
    use nix::sys::wait::{WaitStatus, waitpid};
    use nix::unistd::{ForkResult, fork};

    /// Writing to a connection the peer has closed is an error, never
    /// SIGPIPE, even in a process that does not ignore the signal (a C
    /// host): plain and vectored writes, as rustls makes them.
    #[test]
    fn writes_to_a_closed_peer_raise_no_sigpipe() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        drop(server);
        // SAFETY: the child only makes system calls and leaves with _exit.
        match unsafe { fork() }.unwrap() {
            ForkResult::Child => unsafe {
                let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
                let mut w = NoSigpipe(&client);
                let mut failed = 0;
                for _ in 0..4 {
                    failed += usize::from(w.write(b"x").is_err());
                    let bufs = [io::IoSlice::new(b"a"), io::IoSlice::new(b"b")];
                    failed += usize::from(w.write_vectored(&bufs).is_err());
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                libc::_exit(if failed > 0 { 0 } else { 3 });
            },
            ForkResult::Parent { child } => {
                let status = waitpid(child, None).unwrap();
                assert_eq!(status, WaitStatus::Exited(child, 0), "{status:?}");
            }
        }
    }
}
