//! The runtime of room services (chat): one reactor thread serves every
//! listener of the server, so all its connections share one room without a
//! lock. Input is read as it comes; what the service sends is queued per
//! connection and written once per loop turn, so a burst of messages costs
//! each client one write, not one per message (how ncat gets its speed). A
//! client whose queue passes its bound is dropped and the service told: a
//! slow reader never stalls the others.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use mio::net::{TcpListener as MioListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::{AcceptRetry, Permit, Runtime, Shared};
use crate::service::room::{ConnId, Disconnect, Outbox, RoomService, Send};
use std::sync::Arc;

const READ_BUF: usize = 64 * 1024;
const READ_BUDGET: usize = 16;
const WAKER: Token = Token(usize::MAX);

/// Bounds on what may wait to be written to one client.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub bytes: usize,
    pub frames: usize,
}

pub(crate) struct RoomCtx {
    pub shared: Arc<Shared>,
    pub service: Box<dyn RoomService>,
    pub queue: QueueLimits,
    pub idle_timeout: Option<Duration>,
    /// A connection in no group by then is closed.
    pub login_timeout: Duration,
}

pub(super) fn spawn(ctx: RoomCtx, listeners: Vec<TcpListener>) -> io::Result<Runtime> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut mine = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.into_iter().enumerate() {
        let mut l = MioListener::from_std(l);
        poll.registry()
            .register(&mut l, Token(i), Interest::READABLE)?;
        mine.push(l);
    }
    let name = format!("{}-room", ctx.shared.name);
    let room = Room {
        ctx,
        poll,
        n_listeners: mine.len(),
        listeners: mine,
        clients: Slab::new(),
        groups: Vec::new(),
        outbox: Outbox::default(),
        dirty: Vec::new(),
        doomed: Vec::new(),
        again: Vec::new(),
        buf: vec![0; READ_BUF],
        generation: 0,
        accept_retry: AcceptRetry::default(),
    };
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || room.run())?;
    Ok(Runtime {
        threads: vec![thread],
        wakers: vec![waker],
    })
}

struct Client {
    id: ConnId,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    out: Vec<u8>,
    sent: usize,
    /// Where each frame still queued ends, counted in bytes ever queued:
    /// a frame is gone once `written` passes its end. The queue's length in
    /// frames is then exact even for a reader that never quite catches up.
    frame_ends: VecDeque<(u64, usize)>,
    /// Messages queued now (the sum of `frame_ends`' counts).
    frames_queued: usize,
    /// Bytes ever queued and ever written to this client.
    queued_total: u64,
    written: u64,
    group: Option<usize>,
    dirty: bool,
    /// The service asked to close it once its queue is flushed.
    closing: bool,
    /// Its queue overflowed; it is being dropped.
    overflowed: bool,
    /// Registered for writability: only while bytes wait for socket space,
    /// or every ACK on loopback would wake the loop for nothing.
    write_armed: bool,
    last_active: Instant,
    /// When it was accepted, or when it was told its login time was up.
    since: Instant,
    _permit: Permit,
}

impl Client {
    fn queued(&self) -> usize {
        self.out.len() - self.sent
    }
}

struct Room {
    ctx: RoomCtx,
    poll: Poll,
    listeners: Vec<MioListener>,
    /// Tokens below this are listeners', even after a stop closed them.
    n_listeners: usize,
    clients: Slab<Client>,
    /// Members of each group, by slab key.
    groups: Vec<Vec<usize>>,
    outbox: Outbox,
    /// Clients with bytes to write this turn.
    dirty: Vec<usize>,
    /// Clients to remove, and why.
    doomed: Vec<(usize, Disconnect)>,
    /// Clients whose input may not all have been read.
    again: Vec<usize>,
    buf: Vec<u8>,
    generation: u64,
    accept_retry: AcceptRetry,
}

fn key_of(id: ConnId) -> usize {
    (id & 0xffff_ffff) as usize
}

impl Room {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let login = self.ctx.login_timeout;
        let sweep = super::event::idle_sweep(self.ctx.idle_timeout.map_or(login, |i| i.min(login)));
        let mut next_sweep = Instant::now() + sweep;
        let mut told_stopping = false;
        loop {
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else if self.ctx.shared.is_stopping() {
                Some(self.ctx.shared.stop_wait(Duration::from_millis(50)))
            } else {
                self.accept_retry.cap(Some(sweep))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "server {}: poll failed, room stops: {e}",
                    self.ctx.shared.name
                );
                return;
            }
            let now = Instant::now();
            for key in std::mem::take(&mut self.again) {
                self.read(key, now, true);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(i) if i < self.n_listeners => {
                        if i < self.listeners.len() {
                            self.accept(i, now);
                        }
                    }
                    Token(t) => {
                        let key = t - self.n_listeners;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(key, now, event.is_read_closed() || event.is_error());
                        }
                        if event.is_writable() {
                            self.mark_dirty(key);
                        }
                    }
                }
            }
            if self.accept_retry.take_due(now) {
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if self.ctx.shared.is_stopping() && !told_stopping {
                told_stopping = true;
                for mut l in self.listeners.drain(..) {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                self.ctx.service.stopping(&mut self.outbox);
                self.deliver();
            }
            if now >= next_sweep {
                next_sweep = now + sweep;
                self.sweep(now);
            }
            self.flush_dirty();
            if told_stopping && (self.clients.is_empty() || self.ctx.shared.past_deadline()) {
                if !self.clients.is_empty() {
                    log::info!(
                        "server {}: closing {} connection(s) still open after the grace period",
                        self.ctx.shared.name,
                        self.clients.len()
                    );
                }
                return;
            }
        }
    }

    /// Closes the connections past `idle_timeout`, and those still in no
    /// group after `login_timeout`.
    fn sweep(&mut self, now: Instant) {
        let (idle, login) = (self.ctx.idle_timeout, self.ctx.login_timeout);
        let expired: Vec<(usize, ConnId, bool, bool)> = self
            .clients
            .iter()
            .filter_map(|(key, c)| {
                let idle = idle.is_some_and(|i| now.duration_since(c.last_active) >= i);
                let unnamed = c.group.is_none() && now.duration_since(c.since) >= login;
                (idle || unnamed).then_some((key, c.id, c.closing, idle))
            })
            .collect();
        for (key, id, closing, idle) in expired {
            if closing {
                // Told already, and its queue still not flushed.
                self.doomed.push((key, Disconnect::Idle));
                continue;
            }
            // The news of an earlier client's leaving may have dropped this
            // one (its queue overflowed, or a write failed): then it is gone.
            let Some(c) = self.clients.get_mut(key).filter(|c| c.id == id) else {
                continue;
            };
            // Either way it gets one more period to take its last words.
            c.last_active = now;
            c.since = now;
            if idle {
                log::debug!(
                    "server {}: closing {}: idle timeout",
                    self.ctx.shared.name,
                    c.peer
                );
                self.ctx.service.idle(id, &mut self.outbox);
            } else {
                log::debug!(
                    "server {}: closing {}: no login within {}",
                    self.ctx.shared.name,
                    c.peer,
                    humantime::format_duration(login)
                );
                self.ctx.service.login_expired(id, &mut self.outbox);
            }
            self.deliver();
        }
        self.bury();
    }

    fn accept(&mut self, index: usize, now: Instant) {
        while let Some((mut stream, peer, permit)) = self
            .accept_retry
            .conn(self.ctx.shared.accept_admitted(&self.listeners[index]))
        {
            let entry = self.clients.vacant_entry();
            let key = entry.key();
            let token = Token(key + self.n_listeners);
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
            {
                log::warn!(
                    "server {}: cannot register {peer}: {e}",
                    self.ctx.shared.name
                );
                continue;
            }
            self.generation += 1;
            let id = (self.generation << 32) | key as u64;
            entry.insert(Client {
                id,
                stream,
                peer,
                out: Vec::new(),
                sent: 0,
                frame_ends: VecDeque::new(),
                frames_queued: 0,
                queued_total: 0,
                written: 0,
                group: None,
                dirty: false,
                closing: false,
                overflowed: false,
                write_armed: false,
                last_active: now,
                since: now,
                _permit: permit,
            });
            log::debug!("server {}: connection from {peer}", self.ctx.shared.name);
            self.ctx
                .service
                .connected(id, index, &peer.to_string(), &mut self.outbox);
            self.deliver();
        }
    }

    /// Reads what a client sent and hands it to the service.
    fn read(&mut self, key: usize, now: Instant, peer_closed: bool) {
        for _ in 0..READ_BUDGET {
            let Some(c) = self.clients.get_mut(key) else {
                return;
            };
            if c.closing {
                return;
            }
            match c.stream.read(&mut self.buf) {
                Ok(0) => {
                    self.doomed.push((key, Disconnect::Closed));
                    self.bury();
                    return;
                }
                Ok(n) => {
                    c.last_active = now;
                    let id = c.id;
                    self.ctx
                        .service
                        .received(id, &self.buf[..n], &mut self.outbox);
                    self.deliver();
                    // See the event model: a short read drained the socket.
                    if n < self.buf.len() && !peer_closed {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::debug!("server {}: read from {}: {e}", self.ctx.shared.name, c.peer);
                    self.doomed.push((key, Disconnect::Failed));
                    self.bury();
                    return;
                }
            }
        }
        self.again.push(key);
    }

    /// Queues what the service sent.
    fn deliver(&mut self) {
        let queue = self.ctx.queue;
        let mut sends = std::mem::take(&mut self.outbox.sends);
        let mut i = 0;
        while i < sends.len() {
            match sends[i].clone() {
                Send::To(id, range) => {
                    if let Some(c) = self.clients.get_mut(key_of(id)).filter(|c| c.id == id) {
                        offer(
                            c,
                            key_of(id),
                            &self.outbox.bytes[range],
                            1,
                            queue,
                            &mut self.dirty,
                            &mut self.doomed,
                        );
                    }
                }
                Send::Group {
                    group,
                    except,
                    bytes,
                } => {
                    // A burst of messages to the same group is one slice of
                    // the outbox: each member gets it in one offer, one write.
                    let mut end = bytes.end;
                    let mut frames = 1;
                    while let Some(Send::Group {
                        group: g,
                        except: e,
                        bytes: b,
                    }) = sends.get(i + 1)
                        && *g == group
                        && *e == except
                        && b.start == end
                    {
                        end = b.end;
                        frames += 1;
                        i += 1;
                    }
                    if let Some(members) = self.groups.get(group) {
                        let bytes = &self.outbox.bytes[bytes.start..end];
                        for &key in members {
                            if let Some(c) = self.clients.get_mut(key)
                                && Some(c.id) != except
                            {
                                offer(
                                    c,
                                    key,
                                    bytes,
                                    frames,
                                    queue,
                                    &mut self.dirty,
                                    &mut self.doomed,
                                );
                            }
                        }
                    }
                }
                Send::Join(id, group) => {
                    let key = key_of(id);
                    if let Some(c) = self.clients.get_mut(key).filter(|c| c.id == id) {
                        if self.groups.len() <= group {
                            self.groups.resize_with(group + 1, Vec::new);
                        }
                        if let Some(old) = c.group.replace(group) {
                            self.groups[old].retain(|&k| k != key);
                        }
                        self.groups[group].push(key);
                    }
                }
                Send::Close(id) => {
                    let key = key_of(id);
                    if let Some(c) = self.clients.get_mut(key).filter(|c| c.id == id) {
                        c.closing = true;
                        if !c.dirty {
                            c.dirty = true;
                            self.dirty.push(key);
                        }
                    }
                }
            }
            i += 1;
        }
        sends.clear();
        self.outbox.sends = sends;
        self.outbox.bytes.clear();
        self.bury();
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(c) = self.clients.get_mut(key)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(key);
        }
    }

    /// One write per client with something queued.
    fn flush_dirty(&mut self) {
        let mut i = 0;
        while i < self.dirty.len() {
            let key = self.dirty[i];
            i += 1;
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            c.dirty = false;
            match flush(c) {
                Ok(true) if c.closing => self.doomed.push((key, Disconnect::Closed)),
                Ok(drained) => {
                    if drained == c.write_armed {
                        let interest = if drained {
                            Interest::READABLE
                        } else {
                            Interest::READABLE | Interest::WRITABLE
                        };
                        let token = Token(key + self.n_listeners);
                        if let Err(e) =
                            self.poll
                                .registry()
                                .reregister(&mut c.stream, token, interest)
                        {
                            log::debug!("server {}: {}: {e}", self.ctx.shared.name, c.peer);
                            self.doomed.push((key, Disconnect::Failed));
                        }
                        c.write_armed = !drained;
                    }
                }
                Err(e) => {
                    log::debug!("server {}: write to {}: {e}", self.ctx.shared.name, c.peer);
                    self.doomed.push((key, Disconnect::Failed));
                }
            }
            // Removing may make the service send more (a "left" notice).
            self.bury();
        }
        self.dirty.clear();
    }

    /// Removes the doomed clients and tells the service, which may doom more.
    fn bury(&mut self) {
        while let Some((key, why)) = self.doomed.pop() {
            let Some(mut c) = self.clients.try_remove(key) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut c.stream);
            if let Some(g) = c.group {
                self.groups[g].retain(|&k| k != key);
            }
            self.ctx
                .shared
                .stats
                .closed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match why {
                Disconnect::SlowReader => log::debug!(
                    "server {}: dropping {}: its outbound queue overflowed (it does not read)",
                    self.ctx.shared.name,
                    c.peer
                ),
                Disconnect::Idle => log::debug!(
                    "server {}: closing {}: idle timeout",
                    self.ctx.shared.name,
                    c.peer
                ),
                _ => log::debug!("server {}: {} gone ({why:?})", self.ctx.shared.name, c.peer),
            }
            if why == Disconnect::Closed && c.queued() > 0 {
                // Closing at the service's word: last try at what is queued.
                let _ = flush(&mut c);
            }
            self.ctx.service.disconnected(c.id, why, &mut self.outbox);
            if !self.outbox.sends.is_empty() {
                self.deliver();
            }
        }
    }
}

/// Gives `bytes` (`frames` messages) to a client: written at once when
/// nothing is queued for it, so a client that keeps up costs no copy; what
/// the socket does not take is queued, within the client's bounds.
fn offer(
    c: &mut Client,
    key: usize,
    bytes: &[u8],
    frames: usize,
    limits: QueueLimits,
    dirty: &mut Vec<usize>,
    doomed: &mut Vec<(usize, Disconnect)>,
) {
    if c.overflowed {
        return;
    }
    let mut bytes = bytes;
    if c.queued() == 0 && !c.closing {
        match write_some(c, bytes) {
            Ok(n) if n == bytes.len() => return,
            Ok(n) => bytes = &bytes[n..],
            Err(e) => {
                log::debug!("write to {}: {e}", c.peer);
                c.overflowed = true;
                doomed.push((key, Disconnect::Failed));
                return;
            }
        }
    }
    let over = |c: &Client| {
        c.queued() + bytes.len() > limits.bytes || c.frames_queued + frames > limits.frames
    };
    if over(c) {
        // The bound is for a client whose socket is full, not for what was
        // never offered to it: write what is queued, then decide.
        if let Err(e) = flush(c) {
            log::debug!("write to {}: {e}", c.peer);
            c.overflowed = true;
            doomed.push((key, Disconnect::Failed));
            return;
        }
    }
    if over(c) {
        // Nothing more is queued for it, and it is removed this turn.
        c.overflowed = true;
        doomed.push((key, Disconnect::SlowReader));
        return;
    }
    if c.sent > 0 && c.sent >= c.out.len() / 2 {
        c.out.drain(..c.sent);
        c.sent = 0;
    }
    c.out.extend_from_slice(bytes);
    c.queued_total += bytes.len() as u64;
    c.frame_ends.push_back((c.queued_total, frames));
    c.frames_queued += frames;
    if !c.dirty {
        c.dirty = true;
        dirty.push(key);
    }
}

/// Writes `bytes` straight to the socket; how many it took (0 when full).
fn write_some(c: &mut Client, bytes: &[u8]) -> io::Result<usize> {
    loop {
        match c.stream.write(bytes) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes what is queued; `Ok(true)` when nothing is left.
fn flush(c: &mut Client) -> io::Result<bool> {
    while c.sent < c.out.len() {
        match c.stream.write(&c.out[c.sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                c.sent += n;
                c.written += n as u64;
                while let Some(&(end, frames)) = c.frame_ends.front()
                    && end <= c.written
                {
                    c.frame_ends.pop_front();
                    c.frames_queued -= frames;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    c.out.clear();
    c.sent = 0;
    if c.out.capacity() > 4 * READ_BUF {
        c.out = Vec::new();
    }
    Ok(true)
}
