//! The TCP generator: one mio event loop drives many connections, each in a
//! closed loop (write a request, read the whole echo, record, repeat).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Poll, Token};

use super::payload::Payload;
use super::stats::{Stats, Window};

/// How long a broken connection waits before it is opened again, so a dead
/// server is not hammered with connects.
const RECONNECT_DELAY: Duration = Duration::from_millis(50);

struct Connection {
    stream: Option<TcpStream>,
    /// A non-blocking connect is in progress.
    connecting: bool,
    reconnect_at: Option<Instant>,
    seq: u64,
    written: usize,
    received: usize,
    sent_at: Instant,
}

/// Runs `streams` (already connected, blocking) until `window.end`.
pub(super) fn run(
    peer: SocketAddr,
    streams: Vec<std::net::TcpStream>,
    payload: &Payload,
    window: Window,
    first_seq: u64,
) -> io::Result<Stats> {
    let mut poll = Poll::new()?;
    let mut stats = Stats::new();
    let now = Instant::now();
    let mut conns = Vec::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(stream);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Connection {
            stream: Some(stream),
            connecting: false,
            reconnect_at: None,
            // Spread the sequence numbers so connections send different bytes.
            seq: first_seq + i as u64 * 97,
            written: 0,
            received: 0,
            sent_at: now,
        });
    }

    for (i, conn) in conns.iter_mut().enumerate() {
        conn.sent_at = Instant::now();
        if let Err(e) = conn.send(payload) {
            conn.break_off(&poll, &mut stats, Token(i), &e);
        }
    }

    let mut scratch = vec![0u8; 64 * 1024];
    super::drive(
        &mut poll,
        &mut conns,
        &window,
        &mut stats,
        |conn, poll, token, read_to_eof, stats| {
            let result = conn.on_ready(payload, &window, stats, &mut scratch, read_to_eof);
            if let Err(e) = result {
                conn.break_off(poll, stats, token, &e);
            }
        },
        |conn, poll, token, stats| conn.reconnect(poll, peer, token, stats),
    )?;
    Ok(stats)
}

impl super::Driven for Connection {
    fn reconnect_at(&self) -> Option<Instant> {
        self.reconnect_at
    }
}

impl Connection {
    /// Handles readiness: finishes a connect, reads what arrived, writes what
    /// is pending. Readiness is edge-triggered, so each side runs until it
    /// would block.
    fn on_ready(
        &mut self,
        payload: &Payload,
        window: &Window,
        stats: &mut Stats,
        scratch: &mut [u8],
        read_to_eof: bool,
    ) -> io::Result<()> {
        if self.stream.is_none() {
            return Ok(());
        }
        if self.connecting && !self.finish_connect()? {
            return Ok(());
        }
        self.receive(payload, window, stats, scratch, read_to_eof)?;
        self.send(payload)
    }

    /// `Ok(false)` while the connect is still in progress.
    fn finish_connect(&mut self) -> io::Result<bool> {
        let Some(stream) = &self.stream else {
            return Ok(false);
        };
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        match stream.peer_addr() {
            Ok(_) => {
                self.connecting = false;
                self.sent_at = Instant::now();
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes what is left of the current request.
    fn send(&mut self, payload: &Payload) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        if self.connecting {
            return Ok(());
        }
        super::write_on(stream, payload.request(self.seq), &mut self.written)
    }

    /// Reads and checks echoed bytes; each whole echo completes a round trip
    /// and starts the next request.
    ///
    /// A read that does not fill `scratch` has drained the socket, and with
    /// edge-triggered readiness any later arrival raises a new event: the
    /// read that would only say `WouldBlock` is skipped, one syscall per
    /// round trip that the generator would otherwise spend next to the
    /// server it measures.
    fn receive(
        &mut self,
        payload: &Payload,
        window: &Window,
        stats: &mut Stats,
        scratch: &mut [u8],
        read_to_eof: bool,
    ) -> io::Result<()> {
        loop {
            let Some(stream) = &mut self.stream else {
                return Ok(());
            };
            let n = match stream.read(scratch) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let expected = payload.request(self.seq);
            // More bytes than were sent, or bytes not sent: the echo is wrong.
            let matches = self.received + n <= self.written
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
                self.seq = self.seq.wrapping_add(1);
                self.written = 0;
                self.received = 0;
                self.sent_at = now;
                self.send(payload)?;
            }
            if n < scratch.len() && !read_to_eof {
                return Ok(());
            }
        }
    }

    /// Counts the error, drops the connection, and schedules a new one.
    fn break_off(&mut self, poll: &Poll, stats: &mut Stats, token: Token, err: &io::Error) {
        log::debug!("bench connection {}: {err}", token.0);
        stats.errors += 1;
        if let Some(mut stream) = self.stream.take() {
            let _ = poll.registry().deregister(&mut stream);
        }
        self.reconnect_at = Some(Instant::now() + RECONNECT_DELAY);
    }

    fn reconnect(&mut self, poll: &Poll, peer: SocketAddr, token: Token, stats: &mut Stats) {
        self.reconnect_at = None;
        self.written = 0;
        self.received = 0;
        self.seq = self.seq.wrapping_add(1);
        let opened = TcpStream::connect(peer).and_then(|mut stream| {
            stream.set_nodelay(true)?;
            poll.registry().register(
                &mut stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(stream)
        });
        match opened {
            Ok(stream) => {
                self.stream = Some(stream);
                self.connecting = true;
            }
            Err(e) => self.break_off(poll, stats, token, &e),
        }
    }
}
