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
    /// The kernel's unsent bytes for it when last looked at (SIOCOUTQ).
    kernel_unsent: usize,
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
                kernel_unsent: 0,
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
            .iter_mut()
            .filter(|(_, c)| now.duration_since(c.last_active) >= idle)
            .filter_map(|(k, c)| {
                // A peer still taking its echo is not idle, though the
                // server may not have written for a while: the kernel
                // wakes a writer only once a third of its buffer is free.
                // What the kernel has left to send says whether it moves.
                let unsent = kernel_unsent(&c.stream);
                if unsent != c.kernel_unsent {
                    c.kernel_unsent = unsent;
                    c.last_active = now;
                    return None;
                }
                Some(k)
            })
            .collect();
        for key in stale {
            if let Some(c) = self.conns.get(key) {
                log::debug!(
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
        let flushed = flush(&mut conn.out, &mut conn.sent, &mut conn.stream);
        if let Ok(Flushed { wrote, .. }) = flushed
            && wrote > 0
        {
            // A peer taking its echo is not idle, though it sends nothing.
            conn.last_active = now;
        }
        match flushed {
            Ok(Flushed { done: true, .. }) => {}
            Ok(_) if conn.out.len() - conn.sent >= HIGH_WATER => return Next::Keep,
            Ok(_) => {}
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
                    log::debug!("server {server}: {}: {e}", conn.peer);
                }
            }
            Ok(n) => {
                drained = n < buf.len() && !peer_closed;
                conn.last_active = now;
                if let Err(e) = conn.session.on_data(&buf[..n], &mut conn.out) {
                    log::debug!("server {server}: closing {}: {e}", conn.peer);
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

/// Bytes the kernel holds for `stream` that the peer has not yet
/// acknowledged (SIOCOUTQ); 0 when it cannot say.
fn kernel_unsent(stream: &TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut unsent: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int through the pointer.
    let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
    if rc == 0 {
        usize::try_from(unsent).unwrap_or(0)
    } else {
        0
    }
}

/// What [`flush`] did.
#[derive(Debug, PartialEq, Eq)]
struct Flushed {
    /// Nothing is left to write.
    done: bool,
    /// Bytes written by this call.
    wrote: usize,
}

/// Writes what is pending in `out` past `sent`, until the socket would
/// block. What was written is dropped once it is half the buffer, so a
/// peer that reads a little slower than it sends holds the buffer to about
/// twice what is unsent, not to everything ever echoed.
fn flush(out: &mut Vec<u8>, sent: &mut usize, stream: &mut impl Write) -> io::Result<Flushed> {
    let mut wrote = 0;
    while *sent < out.len() {
        match stream.write(&out[*sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *sent += n;
                wrote += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if *sent >= out.len() / 2 {
                    out.drain(..*sent);
                    *sent = 0;
                }
                return Ok(Flushed { done: false, wrote });
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.clear();
    *sent = 0;
    // Keep the buffer for the next reply, unless a burst made it huge.
    if out.capacity() > 4 * READ_BUF {
        *out = Vec::new();
    }
    Ok(Flushed { done: true, wrote })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `per_call` bytes, then would block.
    struct Slow {
        per_call: usize,
        calls: usize,
    }

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.calls % 2 == 1 {
                self.calls += 1;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            Ok(buf.len().min(self.per_call))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A peer that reads a little slower than it sends: 4 KiB echoed per
    /// turn, 4,000 bytes taken. The buffer holds what is unsent, not all
    /// 16 MB that went through it.
    #[test]
    fn a_slightly_slow_reader_does_not_grow_the_buffer_without_bound() {
        let (mut out, mut sent) = (Vec::new(), 0);
        let mut peer = Slow {
            per_call: 4000,
            calls: 0,
        };
        let mut total_written = 0;
        for _ in 0..4096 {
            out.extend_from_slice(&[7u8; 4096]);
            let flushed = flush(&mut out, &mut sent, &mut peer).unwrap();
            assert!(!flushed.done);
            total_written += flushed.wrote;
        }
        let unsent = out.len() - sent;
        assert_eq!(total_written + unsent, 4096 * 4096);
        assert!(
            out.capacity() <= 4 * unsent.max(READ_BUF),
            "{} bytes of buffer for {unsent} unsent",
            out.capacity()
        );
    }
}
