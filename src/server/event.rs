//! The `event` model: non-blocking sockets on one mio reactor per worker
//! thread. Every worker polls every listener (the kernel hands each new
//! connection to one of them), so there is no acceptor thread to hop through.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener as MioListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::{AcceptRetry, Permit, Runtime, StreamCtx};
use crate::service::{Session, StreamSession, Worker};

/// Read buffer, shared by a worker's connections.
const READ_BUF: usize = 64 * 1024;
/// Stop reading from a peer while this much of its reply is unsent: a peer
/// that sends without reading cannot make the server buffer without limit.
const HIGH_WATER: usize = 1024 * 1024;
/// Reads per readiness event before other connections get their turn.
const READ_BUDGET: usize = 16;
/// How often idle connections are looked for: often enough that a timeout
/// is honoured within half its length, never more than once a second.
pub(super) fn idle_sweep(idle: Duration) -> Duration {
    (idle / 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

const WAKER: Token = Token(usize::MAX);

pub(super) fn spawn(
    ctx: StreamCtx,
    listeners: Vec<TcpListener>,
    workers: usize,
) -> io::Result<Runtime> {
    let ctx = Arc::new(ctx);
    // Every worker is built before any runs: the fallible part (polls,
    // wakers, listener copies) then cannot leave half a server behind.
    let mut ready = Vec::with_capacity(workers.max(1));
    for i in 0..workers.max(1) {
        let in_worker = |e: io::Error| super::worker_error(e, i, workers);
        let poll = Poll::new().map_err(in_worker)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(in_worker)?);
        let mut mine = Vec::with_capacity(listeners.len());
        for (t, l) in listeners.iter().enumerate() {
            let mut l = MioListener::from_std(l.try_clone().map_err(in_worker)?);
            poll.registry()
                .register(&mut l, Token(t), Interest::READABLE)
                .map_err(in_worker)?;
            mine.push(l);
        }
        let name = format!("{}-ev{i}", ctx.shared.name);
        let worker = EventWorker {
            ctx: ctx.clone(),
            poll,
            n_listeners: mine.len(),
            listeners: mine,
            conns: Slab::new(),
            buf: vec![0; READ_BUF],
            name: name.clone(),
            again: Vec::new(),
            accept_retry: AcceptRetry::default(),
        };
        ready.push((name, waker, move || worker.run()));
    }
    Runtime::start_all(&ctx.shared, ready)
}

struct Conn {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    session: StreamSession,
    out: Vec<u8>,
    sent: usize,
    /// The peer half-closed; once `out` is flushed the connection ends.
    read_closed: bool,
    /// The session asked to close (after flushing `out`).
    closing: bool,
    /// Registered for writability: only while a reply waits for socket
    /// space. Otherwise every write on loopback would come back as an
    /// EPOLLOUT wake-up with nothing to do.
    write_armed: bool,
    last_active: Instant,
    _permit: Permit,
}

enum Next {
    Keep,
    /// Data may remain unread: come back before sleeping.
    Again,
    Close,
}

struct EventWorker {
    ctx: Arc<StreamCtx>,
    poll: Poll,
    listeners: Vec<MioListener>,
    /// Tokens below this are listeners', even after a stop closed them, so
    /// connections keep their tokens.
    n_listeners: usize,
    conns: Slab<Conn>,
    buf: Vec<u8>,
    name: String,
    again: Vec<usize>,
    accept_retry: AcceptRetry,
}

impl EventWorker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let idle = self.ctx.config.limits.idle_timeout;
        let sweep = idle.map_or(Duration::from_secs(1), idle_sweep);
        let mut next_sweep = Instant::now() + sweep;
        loop {
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else if self.ctx.shared.is_stopping() {
                Some(self.ctx.shared.stop_wait(Duration::from_millis(100)))
            } else {
                self.accept_retry.cap(idle.map(|_| sweep))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "server {}: poll failed, worker {} stops: {e}",
                    self.ctx.shared.name,
                    self.name
                );
                return;
            }
            let now = Instant::now();
            for key in std::mem::take(&mut self.again) {
                self.drive(key, now, true);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(t) if t < self.n_listeners => {
                        if t < self.listeners.len() {
                            self.accept(t, now);
                        }
                    }
                    Token(t) => self.drive(
                        t - self.n_listeners,
                        now,
                        event.is_read_closed() || event.is_error(),
                    ),
                }
            }
            if self.accept_retry.take_due(now) {
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if self.ctx.shared.is_stopping() {
                // Stop accepting: closing our copies of the listeners.
                for mut l in self.listeners.drain(..) {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                if self.conns.is_empty() {
                    return;
                }
                if self.ctx.shared.past_deadline() {
                    log::info!(
                        "server {}: closing {} connection(s) still open after the grace period",
                        self.ctx.shared.name,
                        self.conns.len()
                    );
                    return;
                }
            }
            if let Some(idle) = idle
                && now >= next_sweep
            {
                self.close_idle(now, idle);
                next_sweep = now + sweep;
            }
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        while let Some((stream, peer, permit)) = self
            .accept_retry
            .conn(self.ctx.shared.accept_admitted(&self.listeners[index]))
        {
            let entry = self.conns.vacant_entry();
            let token = Token(entry.key() + self.n_listeners);
            let mut conn = Conn {
                stream,
                peer,
                session: self.ctx.service.session(Worker::Thread(&self.name)),
                out: Vec::new(),
                sent: 0,
                read_closed: false,
                closing: false,
                write_armed: false,
                last_active: now,
                _permit: permit,
            };
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut conn.stream, token, Interest::READABLE)
            {
                log::warn!(
                    "server {}: cannot register {peer}: {e}",
                    self.ctx.shared.name
                );
                continue;
            }
            log::debug!("server {}: connection from {peer}", self.ctx.shared.name);
            entry.insert(conn);
        }
    }

    fn drive(&mut self, key: usize, now: Instant, peer_closed: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let next = drive_conn(conn, &mut self.buf, now, peer_closed, &self.ctx.shared.name);
        if let Next::Close = next {
            return self.close(key);
        }
        let pending = conn.sent < conn.out.len();
        if pending != conn.write_armed {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(key + self.n_listeners);
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut conn.stream, token, interest)
            {
                log::debug!("server {}: {}: {e}", self.ctx.shared.name, conn.peer);
                return self.close(key);
            }
            conn.write_armed = pending;
        }
        if let Next::Again = next {
            self.again.push(key);
        }
    }

    fn close(&mut self, key: usize) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.ctx
                .shared
                .stats
                .closed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            log::debug!("server {}: closed {}", self.ctx.shared.name, conn.peer);
        }
    }

    fn close_idle(&mut self, now: Instant, idle: Duration) {
        let stale: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_active) >= idle)
            .map(|(k, _)| k)
            .collect();
        for key in stale {
            if let Some(c) = self.conns.get(key) {
                log::info!(
                    "server {}: closing {}: idle for longer than {idle:?}",
                    self.ctx.shared.name,
                    c.peer
                );
            }
            self.close(key);
        }
    }
}

/// Reads, lets the session answer, writes, until the socket would block.
fn drive_conn(
    conn: &mut Conn,
    buf: &mut [u8],
    now: Instant,
    peer_closed: bool,
    server: &str,
) -> Next {
    let mut reads = 0;
    // A read shorter than the buffer emptied the socket: epoll (edge
    // triggered) reports any later arrival, so another read would only say
    // EAGAIN. Skipping it saves a system call per request. Not when the event
    // already said the peer half-closed: that FIN came with this data and no
    // further event will announce it.
    let mut drained = false;
    loop {
        match flush(conn) {
            Ok(true) => {}
            Ok(false) if conn.out.len() - conn.sent >= HIGH_WATER => return Next::Keep,
            Ok(false) => {}
            Err(e) => {
                log::debug!("server {server}: write to {} failed: {e}", conn.peer);
                return Next::Close;
            }
        }
        let unsent = conn.out.len() - conn.sent;
        if conn.read_closed || conn.closing {
            if unsent == 0 {
                // RFC 862: everything echoed, now close our side too.
                let _ = conn.stream.shutdown(Shutdown::Write);
                return Next::Close;
            }
            return Next::Keep;
        }
        if drained {
            return Next::Keep;
        }
        if reads == READ_BUDGET {
            return Next::Again;
        }
        reads += 1;
        match conn.stream.read(buf) {
            Ok(0) => {
                conn.read_closed = true;
                if let Err(e) = conn.session.on_eof(&mut conn.out) {
                    log::info!("server {server}: {}: {e}", conn.peer);
                }
            }
            Ok(n) => {
                drained = n < buf.len() && !peer_closed;
                conn.last_active = now;
                if let Err(e) = conn.session.on_data(&buf[..n], &mut conn.out) {
                    log::info!("server {server}: closing {}: {e}", conn.peer);
                    conn.closing = true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Keep,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::debug!("server {server}: read from {} failed: {e}", conn.peer);
                return Next::Close;
            }
        }
    }
}

/// Writes what is pending; `Ok(true)` once nothing is left.
fn flush(conn: &mut Conn) -> io::Result<bool> {
    while conn.sent < conn.out.len() {
        match conn.stream.write(&conn.out[conn.sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    conn.out.clear();
    conn.sent = 0;
    // Keep the buffer for the next reply, unless a burst made it huge.
    if conn.out.capacity() > 4 * READ_BUF {
        conn.out = Vec::new();
    }
    Ok(true)
}
