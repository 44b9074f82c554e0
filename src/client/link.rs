//! A client's connection, plain or TLS, which a sending and a receiving
//! thread may share: the chat client's halves, and the echo client's writer
//! and reader. Every wait is bounded by the caller's timeout, in slices
//! that ask the thread's interrupt check.
//!
//! Over TLS the session is one, behind a lock that no thread holds while
//! it waits: socket I/O is never blocking under it (`MSG_DONTWAIT`), and
//! the waiting is done by `poll` outside.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, recv, send};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;

use super::interrupt::{interrupted, slice};
use super::tcp::{self, Wait};
use super::tls::{TlsClient, describe};
use super::{ClientError, ClientOptions};

/// A connection to one server; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    inner: Arc<Inner>,
    /// Held while bytes are written, so that what two threads write (a
    /// message, and the pong the receiving half owes) never interleaves.
    writing: Arc<Mutex<()>>,
    peer: SocketAddr,
}

#[derive(Debug)]
// Held behind the link's Arc, once per connection: the size is no matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Plain(TcpStream),
    Tls {
        socket: TcpStream,
        session: Mutex<ClientConnection>,
        /// What the server's certificate was checked against, for errors.
        name: ServerName<'static>,
    },
}

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Got {
    /// This many bytes.
    Data(usize),
    /// The peer ended the stream.
    End,
    /// Nothing within the wait.
    Nothing,
}

impl Link {
    /// Connects to `peer` and, with TLS, completes the handshake, each
    /// within the options' timeout.
    pub fn open(peer: SocketAddr, options: &ClientOptions) -> Result<Link, ClientError> {
        let timeout = options.timeout;
        let socket = tcp::connect(peer, timeout)?;
        let setup = |e| ClientError::from_io(format!("set up connection to {peer}"), e, timeout);
        // Requests are written whole; waiting to coalesce them only adds latency.
        socket.set_nodelay(true).map_err(setup)?;
        socket
            .set_write_timeout(Some(slice(timeout)))
            .map_err(setup)?;
        let inner = match &options.tls {
            None => Inner::Plain(socket),
            Some(tls) => {
                let name = tls.server_name_for(peer);
                Inner::Tls {
                    session: Mutex::new(handshake(&socket, peer, tls, &name, timeout)?),
                    socket,
                    name,
                }
            }
        };
        Ok(Link {
            inner: Arc::new(inner),
            writing: Arc::default(),
            peer,
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn socket(&self) -> &TcpStream {
        match &*self.inner {
            Inner::Plain(s) | Inner::Tls { socket: s, .. } => s,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(&*self.inner, Inner::Tls { .. })
    }

    /// Writes all of `bytes`; each wait for the socket gives up after
    /// `timeout` without progress.
    pub fn write_all(&self, bytes: &[u8], timeout: Duration) -> Result<(), ClientError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        match &*self.inner {
            Inner::Plain(socket) => {
                let mut socket = socket;
                tcp::write_all_to(&mut socket, self.peer, timeout, bytes)
            }
            Inner::Tls {
                socket, session, ..
            } => {
                lock(session)
                    .writer()
                    .write_all(bytes)
                    .map_err(|e| self.io("write to", e, timeout))?;
                self.flush_tls(socket, session, timeout)
            }
        }
    }

    /// Ends this side: TLS says close_notify, then the FIN goes. The peer
    /// reads the end and can still answer.
    pub fn finish_writing(&self, timeout: Duration) -> Result<(), ClientError> {
        if let Inner::Tls {
            socket, session, ..
        } = &*self.inner
        {
            lock(session).send_close_notify();
            self.flush_tls(socket, session, timeout)?;
        }
        self.socket()
            .shutdown(Shutdown::Write)
            .map_err(|e| self.io("shut down writing to", e, timeout))
    }

    /// Ends both directions at once, unblocking a thread waiting on either.
    pub fn shutdown(&self) {
        let _ = self.socket().shutdown(Shutdown::Both);
    }

    /// Reads once into `buf`, waiting at most `wait` (a zero wait takes only
    /// what has arrived).
    pub fn read_within(&self, buf: &mut [u8], wait: Duration) -> Result<Got, ClientError> {
        let deadline = crate::deadline::after(wait);
        match &*self.inner {
            Inner::Plain(socket) => self.read_plain(socket, buf, wait, deadline),
            Inner::Tls {
                socket,
                session,
                name,
            } => loop {
                if let Some(read) = self.read_tls_now(socket, session, name, buf, wait)? {
                    return Ok(read);
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Got::Nothing);
                }
                self.wait_for(socket, PollFlags::POLLIN, left, "read from", wait)?;
            },
        }
    }

    /// Reads once into `buf`: the bytes, `Ok(0)` at the end, or a timeout
    /// after `timeout`.
    pub fn read_some(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, ClientError> {
        match self.read_within(buf, timeout)? {
            Got::Data(n) => Ok(n),
            Got::End => Ok(0),
            Got::Nothing => Err(ClientError::from_io(
                format!("read from {}", self.peer),
                io::ErrorKind::TimedOut.into(),
                timeout,
            )),
        }
    }

    /// Reads until the end, giving up with a protocol error past `limit`
    /// bytes.
    pub fn read_to_end(&self, limit: usize, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        let mut reply = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = self.read_some(&mut buf, timeout)?;
            if n == 0 {
                return Ok(reply);
            }
            if reply.len() + n > limit {
                return Err(ClientError::Protocol {
                    context: format!("read from {}", self.peer),
                    detail: format!("reply is longer than {limit} bytes"),
                });
            }
            reply.extend_from_slice(&buf[..n]);
        }
    }

    fn read_plain(
        &self,
        socket: &TcpStream,
        buf: &mut [u8],
        wait: Duration,
        deadline: Instant,
    ) -> Result<Got, ClientError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero read timeout means "forever" to the socket: with none
            // left, take only what is there (MSG_DONTWAIT on this call; not
            // O_NONBLOCK, which the sending thread would meet too).
            let read = if left.is_zero() {
                recv(socket.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
            } else {
                socket
                    .set_read_timeout(Some(slice(left)))
                    .map_err(|e| self.io("read from", e, wait))?;
                (&*socket).read(buf)
            };
            match read {
                Ok(0) => return Ok(Got::End),
                Ok(n) => return Ok(Got::Data(n)),
                Err(e) if waiting(&e) => {
                    if interrupted() {
                        return Err(self.interrupted("read from"));
                    }
                    if left.is_zero() || Instant::now() >= deadline {
                        return Ok(Got::Nothing);
                    }
                }
                // A reset after the server's last words: report those first.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(Got::End),
                Err(e) => return Err(self.io("read from", e, wait)),
            }
        }
    }

    /// Whatever the TLS session can give now, without waiting: plaintext it
    /// holds, or records the socket holds; `None` when there is nothing.
    fn read_tls_now(
        &self,
        socket: &TcpStream,
        session: &Mutex<ClientConnection>,
        name: &ServerName<'_>,
        buf: &mut [u8],
        wait: Duration,
    ) -> Result<Option<Got>, ClientError> {
        let mut session = lock(session);
        loop {
            match session.reader().read(buf) {
                Ok(0) => return Ok(Some(Got::End)),
                Ok(n) => return Ok(Some(Got::Data(n))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: ended all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(Some(Got::End));
                }
                Err(e) => return Err(self.io("read from", e, wait)),
            }
            match session.read_tls(&mut DontWait(socket)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok(Some(Got::End));
                }
                Err(e) => return Err(self.io("read from", e, wait)),
            }
            if let Err(e) = session.process_new_packets() {
                // TLS 1.3 clients finish their handshake before the server
                // has looked at their certificate: its refusal comes here.
                return Err(ClientError::Tls {
                    context: format!("TLS with {}", self.peer),
                    reason: describe(&e, name),
                });
            }
            // What the session has to say back (a key update), if it can.
            while session.wants_write() {
                match session.write_tls(&mut DontWait(socket)) {
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
    }

    fn flush_tls(
        &self,
        socket: &TcpStream,
        session: &Mutex<ClientConnection>,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let mut wait = Wait::new(timeout);
        loop {
            {
                let mut session = lock(session);
                while session.wants_write() {
                    match session.write_tls(&mut DontWait(socket)) {
                        Ok(_) => wait.progressed(),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.io("write to", e, timeout)),
                    }
                }
                if !session.wants_write() {
                    return Ok(());
                }
            }
            let left = wait.left();
            if left.is_zero() {
                return Err(ClientError::from_io(
                    format!("write to {}", self.peer),
                    io::ErrorKind::TimedOut.into(),
                    timeout,
                ));
            }
            self.wait_for(socket, PollFlags::POLLOUT, left, "write to", timeout)?;
        }
    }

    /// Waits, without any lock, until `socket` is ready for `what` or a
    /// slice of `left` is over.
    fn wait_for(
        &self,
        socket: &TcpStream,
        what: PollFlags,
        left: Duration,
        doing: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        match poll_for(socket, what, slice(left)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(self.io(doing, e, timeout)),
        }
        if interrupted() {
            return Err(self.interrupted(doing));
        }
        Ok(())
    }

    fn io(&self, doing: &str, e: io::Error, timeout: Duration) -> ClientError {
        ClientError::from_io(format!("{doing} {}", self.peer), e, timeout)
    }

    fn interrupted(&self, doing: &str) -> ClientError {
        ClientError::Interrupted {
            context: format!("{doing} {}", self.peer),
        }
    }
}

fn lock(session: &Mutex<ClientConnection>) -> MutexGuard<'_, ClientConnection> {
    session.lock().unwrap_or_else(|e| e.into_inner())
}

fn waiting(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Whether `socket` became ready for `what` within `wait`.
fn poll_for(socket: &TcpStream, what: PollFlags, wait: Duration) -> io::Result<bool> {
    let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(socket.as_fd(), what)];
    let n = poll(&mut fds, PollTimeout::from(ms)).map_err(io::Error::from)?;
    Ok(n > 0)
}

/// The socket, read and written without ever blocking (whatever its own
/// mode, which the other thread sharing it relies on).
struct DontWait<'a>(&'a TcpStream);

impl Read for DontWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        recv(self.0.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT).map_err(io::Error::from)
    }
}

impl Write for DontWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(
            self.0.as_raw_fd(),
            buf,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )
        .map_err(io::Error::from)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The TLS handshake over `socket`, within `timeout`.
fn handshake(
    socket: &TcpStream,
    peer: SocketAddr,
    tls: &TlsClient,
    name: &ServerName<'static>,
    timeout: Duration,
) -> Result<ClientConnection, ClientError> {
    let context = || format!("TLS handshake with {peer}");
    let refused = |e: &rustls::Error| ClientError::Tls {
        context: context(),
        reason: describe(e, name),
    };
    let mut session =
        ClientConnection::new(tls.config.clone(), name.clone()).map_err(|e| refused(&e))?;
    // The sending thread's writes are taken whole, then sent as the socket
    // takes them.
    session.set_buffer_limit(None);
    let deadline = crate::deadline::after(timeout);
    while session.is_handshaking() {
        while session.wants_write() {
            match session.write_tls(&mut DontWait(socket)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::from_io(context(), e, timeout)),
            }
        }
        if !session.is_handshaking() {
            break;
        }
        match session.read_tls(&mut DontWait(socket)) {
            Ok(0) => {
                return Err(ClientError::Tls {
                    context: context(),
                    reason: "the server closed the connection during the handshake (is it a TLS listener?)".into(),
                });
            }
            Ok(_) => {
                if let Err(e) = session.process_new_packets() {
                    // The alert that says why, if the socket takes it.
                    let _ = session.write_tls(&mut DontWait(socket));
                    return Err(refused(&e));
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(ClientError::Tls {
                    context: context(),
                    reason: "the server reset the connection during the handshake".into(),
                });
            }
            Err(e) => return Err(ClientError::from_io(context(), e, timeout)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ClientError::Timeout {
                context: format!("{}: no answer", context()),
                waited: timeout,
                tries: 1,
            });
        }
        let what = if session.wants_write() {
            PollFlags::POLLIN | PollFlags::POLLOUT
        } else {
            PollFlags::POLLIN
        };
        match poll_for(socket, what, slice(left)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ClientError::from_io(context(), e, timeout)),
        }
        if interrupted() {
            return Err(ClientError::Interrupted { context: context() });
        }
    }
    Ok(session)
}
