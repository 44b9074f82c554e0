//! A client's connection, plain or TLS, which a sending and a receiving
//! thread may share: the chat client's halves, and the echo client's writer
//! and reader. Every wait is bounded by the caller's timeout, in slices
//! that ask the thread's interrupt check.
//!
//! No lock is held while a thread waits: socket I/O under a lock never
//! blocks (`MSG_DONTWAIT`), and the waiting is done by `poll` outside. Over
//! TLS the session is one, behind its lock. What is written goes whole, in
//! order: bytes that did not fit stay in the link's outbox, ahead of
//! anything written after them, so a pong the receiving half owes never
//! lands inside a message the sending half is writing, and never waits for
//! it.

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
    /// Plain connections' bytes written but not yet taken by the socket.
    outbox: Arc<Mutex<Outbox>>,
    peer: SocketAddr,
}

/// The stream's bytes that the socket has not taken yet, in order.
#[derive(Debug, Default)]
struct Outbox {
    bytes: Vec<u8>,
    /// Every byte the socket took: a writer is done when this reaches
    /// where its bytes ended (`sent` + `bytes.len()` once they were given).
    sent: u64,
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
            outbox: Arc::default(),
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

    /// Writes all of `bytes`, after whatever was given before them; each
    /// wait for the socket gives up after `timeout` without progress.
    pub fn write_all(&self, bytes: &[u8], timeout: Duration) -> Result<(), ClientError> {
        let end = self.give(bytes)?;
        self.flush_until(end, timeout)
    }

    /// Gives `bytes` to the stream without waiting: what the socket takes
    /// now goes, the rest follows with the next write or
    /// [`Link::write_pending`]. For what a reader owes the server (a pong)
    /// while another thread may be writing.
    pub fn write_now(&self, bytes: &[u8]) -> Result<(), ClientError> {
        self.give(bytes).map(|_| ())
    }

    /// Sends, without waiting, what earlier writes left behind.
    pub fn write_pending(&self) -> Result<(), ClientError> {
        self.give(&[]).map(|_| ())
    }

    /// Appends `bytes` to the stream and sends what the socket takes now;
    /// where they end, for [`Link::flush_until`].
    fn give(&self, bytes: &[u8]) -> Result<u64, ClientError> {
        let failed = |e| self.io("write to", e, ZERO);
        match &*self.inner {
            Inner::Plain(socket) => {
                let mut out = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
                if out.bytes.is_empty() {
                    // The usual case: nothing waits ahead, no copy.
                    let n = send_now(socket, bytes).map_err(failed)?;
                    out.sent += n as u64;
                    out.bytes.extend_from_slice(&bytes[n..]);
                } else {
                    out.bytes.extend_from_slice(bytes);
                    out.send_some(socket).map_err(failed)?;
                }
                Ok(out.sent + out.bytes.len() as u64)
            }
            Inner::Tls {
                socket, session, ..
            } => {
                let mut session = lock(session);
                session.writer().write_all(bytes).map_err(failed)?;
                send_tls_now(&mut session, socket).map_err(failed)?;
                // The session keeps order itself; its buffer empty is done.
                Ok(0)
            }
        }
    }

    /// Waits until the stream's bytes up to `end` are sent (over TLS:
    /// everything the session holds), giving up after `timeout` without
    /// progress.
    fn flush_until(&self, end: u64, timeout: Duration) -> Result<(), ClientError> {
        let socket = match &*self.inner {
            Inner::Tls {
                socket, session, ..
            } => return self.flush_tls(socket, session, timeout),
            Inner::Plain(socket) => socket,
        };
        let mut wait = Wait::new(timeout);
        loop {
            {
                let mut out = self.outbox.lock().unwrap_or_else(|e| e.into_inner());
                let before = out.sent;
                out.send_some(socket)
                    .map_err(|e| self.io("write to", e, timeout))?;
                if out.sent >= end {
                    return Ok(());
                }
                if out.sent > before {
                    wait.progressed();
                }
            }
            self.wait_writable(socket, &wait, timeout)?;
        }
    }

    /// Ends this side: TLS says close_notify, then the FIN goes. The peer
    /// reads the end and can still answer.
    pub fn finish_writing(&self, timeout: Duration) -> Result<(), ClientError> {
        self.write_all(&[], timeout)?;
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
            let _ = send_tls_now(&mut session, socket);
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
                if send_tls_now(&mut session, socket)
                    .map_err(|e| self.io("write to", e, timeout))?
                {
                    wait.progressed();
                }
                if !session.wants_write() {
                    return Ok(());
                }
            }
            self.wait_writable(socket, &wait, timeout)?;
        }
    }

    /// Waits until `socket` takes more, or fails when the write's `wait`
    /// is over without progress.
    fn wait_writable(
        &self,
        socket: &TcpStream,
        wait: &Wait,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let left = wait.left();
        if left.is_zero() {
            return Err(ClientError::from_io(
                format!("write to {}", self.peer),
                io::ErrorKind::TimedOut.into(),
                timeout,
            ));
        }
        self.wait_for(socket, PollFlags::POLLOUT, left, "write to", timeout)
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

/// What "no wait" reports as its timeout in an error.
const ZERO: Duration = Duration::ZERO;

impl Outbox {
    /// Sends from the front what the socket takes now.
    fn send_some(&mut self, socket: &TcpStream) -> io::Result<()> {
        let n = send_now(socket, &self.bytes)?;
        self.bytes.drain(..n);
        self.sent += n as u64;
        Ok(())
    }
}

/// Sends the TLS records `session` has ready, as far as the socket takes
/// them now; whether any went.
fn send_tls_now(session: &mut ClientConnection, socket: &TcpStream) -> io::Result<bool> {
    let mut sent = false;
    while session.wants_write() {
        match session.write_tls(&mut DontWait(socket)) {
            Ok(_) => sent = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(sent)
}

/// How much of `bytes` the socket takes now (0 when it is full).
fn send_now(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        match DontWait(socket).write(&bytes[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
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
        send_tls_now(&mut session, socket)
            .map_err(|e| ClientError::from_io(context(), e, timeout))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A plain link to a loopback listener, and the server's end of it.
    fn linked() -> (Link, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let link = Link::open(
            listener.local_addr().unwrap(),
            &ClientOptions::new(Duration::from_secs(30)),
        )
        .unwrap();
        (link, listener.accept().unwrap().0)
    }

    /// A writer stalled on a peer that does not read holds no lock while it
    /// waits: a pong given meanwhile returns at once, and goes out whole
    /// behind the writer's message, not inside it.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets, which Miri does not run")]
    fn bytes_given_while_a_writer_waits_do_not_wait_and_follow_it_whole() {
        let (link, mut server) = linked();
        // More than both sockets' buffers hold: the writer must wait.
        let message: Vec<u8> = (0..32 << 20).map(|i: u32| (i % 251) as u8).collect();
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (link, message, done) = (link.clone(), message.clone(), done.clone());
            std::thread::spawn(move || {
                link.write_all(&message, Duration::from_secs(30)).unwrap();
                done.store(true, Ordering::SeqCst);
            })
        };
        // Until the writer's bytes fill the socket and it waits.
        while link.outbox.lock().unwrap().bytes.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
        link.write_now(b"PONG").unwrap();
        assert!(
            !done.load(Ordering::SeqCst),
            "the writer finished before the peer read anything"
        );
        let mut got = Vec::new();
        let mut buf = vec![0; 1 << 16];
        while got.len() < message.len() + 4 {
            let n = server.read(&mut buf).unwrap();
            assert!(n > 0, "the stream ended at {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        writer.join().unwrap();
        assert!(
            got[..message.len()] == message[..],
            "the message came apart"
        );
        assert_eq!(&got[message.len()..], b"PONG");
    }

    /// What the socket could not take when it was given goes before the
    /// next bytes, by whichever call comes next.
    #[test]
    #[cfg_attr(miri, ignore = "opens sockets, which Miri does not run")]
    fn what_was_left_goes_first() {
        let (link, mut server) = linked();
        let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 241) as u8).collect();
        link.write_now(&big).unwrap();
        assert!(
            !link.outbox.lock().unwrap().bytes.is_empty(),
            "the socket took 16 MiB at once"
        );
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            server.read_to_end(&mut got).unwrap();
            got
        });
        link.write_all(b"after", Duration::from_secs(30)).unwrap();
        link.finish_writing(Duration::from_secs(30)).unwrap();
        let got = reader.join().unwrap();
        assert_eq!(got.len(), big.len() + 5);
        assert!(got[..big.len()] == big[..]);
        assert_eq!(&got[big.len()..], b"after");
    }
}
