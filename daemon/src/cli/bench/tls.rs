//! The TLS generator: as the TCP one (one mio loop, many connections, each
//! in a closed loop), with a rustls session per connection driven over its
//! non-blocking socket. In handshake mode every round trip is a new
//! connection with a full handshake (no session resumption): connect,
//! handshake, one echo, close.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::ClientConnection;
use rustls::pki_types::ServerName;

use super::payload::Payload;
use super::stats::{Stats, Window};

/// How long a broken connection waits before it is opened again.
const RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// What each connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Requests one after another on the same session.
    Requests,
    /// A new connection and a full handshake for every request.
    Handshakes,
}

/// The TLS a generator thread uses.
pub(super) struct Tls {
    pub config: Arc<rustls::ClientConfig>,
    pub name: ServerName<'static>,
    pub mode: Mode,
}

struct Connection {
    socket: Option<TcpStream>,
    session: Option<ClientConnection>,
    reconnect_at: Option<Instant>,
    seq: u64,
    /// The request is in the session (sent, or to be sent once it can).
    requested: bool,
    received: usize,
    sent_at: Instant,
}

/// Runs `count` connections to `peer` until `window.end`.
pub(super) fn run(
    peer: SocketAddr,
    count: usize,
    tls: &Tls,
    payload: &Payload,
    window: Window,
    first_seq: u64,
) -> io::Result<Stats> {
    let mut poll = Poll::new()?;
    let mut stats = Stats::new();
    let mut conns: Vec<Connection> = (0..count)
        .map(|i| Connection {
            socket: None,
            session: None,
            reconnect_at: None,
            seq: first_seq + i as u64 * 97,
            requested: false,
            received: 0,
            sent_at: Instant::now(),
        })
        .collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.open(&poll, peer, tls, Token(i), &mut stats);
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        let wake_at = conns
            .iter()
            .filter_map(|c| c.reconnect_at)
            .min()
            .map_or(window.end, |at| at.min(window.end));
        match poll.poll(&mut events, Some(wake_at.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            let token = event.token();
            let Some(conn) = conns.get_mut(token.0) else {
                continue;
            };
            match conn.pump(payload, &window, &mut stats, &mut scratch, tls.mode) {
                Ok(Next::Go) => {}
                Ok(Next::Reopen) => {
                    conn.close(&poll);
                    conn.open(&poll, peer, tls, token, &mut stats);
                }
                Err(e) => conn.break_off(&poll, &mut stats, token, &e),
            }
        }
        let now = Instant::now();
        for (i, conn) in conns.iter_mut().enumerate() {
            if conn.reconnect_at.is_some_and(|at| at <= now) {
                conn.reconnect_at = None;
                conn.open(&poll, peer, tls, Token(i), &mut stats);
            }
        }
    }
    Ok(stats)
}

enum Next {
    Go,
    /// The round trip is done; the next one is on a new connection.
    Reopen,
}

impl Connection {
    fn open(&mut self, poll: &Poll, peer: SocketAddr, tls: &Tls, token: Token, stats: &mut Stats) {
        self.requested = false;
        self.received = 0;
        self.seq = self.seq.wrapping_add(1);
        self.sent_at = Instant::now();
        let opened = TcpStream::connect(peer).and_then(|mut socket| {
            socket.set_nodelay(true)?;
            poll.registry().register(
                &mut socket,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let session = ClientConnection::new(tls.config.clone(), tls.name.clone())
                .map_err(io::Error::other)?;
            Ok((socket, session))
        });
        match opened {
            Ok((socket, session)) => {
                self.socket = Some(socket);
                self.session = Some(session);
            }
            Err(e) => self.break_off(poll, stats, token, &e),
        }
    }

    fn close(&mut self, poll: &Poll) {
        if let Some(mut socket) = self.socket.take() {
            let _ = poll.registry().deregister(&mut socket);
        }
        self.session = None;
    }

    /// Moves records both ways until the socket would block, checking the
    /// echo as it comes.
    fn pump(
        &mut self,
        payload: &Payload,
        window: &Window,
        stats: &mut Stats,
        scratch: &mut [u8],
        mode: Mode,
    ) -> io::Result<Next> {
        let (Some(socket), Some(session)) = (&mut self.socket, &mut self.session) else {
            return Ok(Next::Go);
        };
        loop {
            if !self.requested && !session.is_handshaking() {
                session.writer().write_all(payload.request(self.seq))?;
                self.requested = true;
                if mode == Mode::Requests {
                    self.sent_at = Instant::now();
                }
            }
            let mut progress = false;
            while session.wants_write() {
                match session.write_tls(socket) {
                    Ok(_) => progress = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            match session.read_tls(socket) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    session
                        .process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            loop {
                let n = match session.reader().read(scratch) {
                    Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                let expected = payload.request(self.seq);
                let matches = self.requested
                    && self.received + n <= expected.len()
                    && expected[self.received..self.received + n] == scratch[..n];
                if !matches {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "echo differs from the request",
                    ));
                }
                self.received += n;
                if self.received == payload.size() {
                    let now = Instant::now();
                    stats.complete(window, self.sent_at, now);
                    if mode == Mode::Handshakes {
                        session.send_close_notify();
                        let _ = session.write_tls(socket);
                        return Ok(Next::Reopen);
                    }
                    self.seq = self.seq.wrapping_add(1);
                    self.received = 0;
                    self.requested = false;
                    progress = true;
                }
            }
            if !progress {
                return Ok(Next::Go);
            }
        }
    }

    /// Counts the error, drops the connection, and schedules a new one.
    fn break_off(&mut self, poll: &Poll, stats: &mut Stats, token: Token, err: &io::Error) {
        log::debug!("bench TLS connection {}: {err}", token.0);
        stats.errors += 1;
        self.close(poll);
        self.reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
    }
}
