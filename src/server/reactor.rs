//! The reactor: one mio loop on one thread, generic over the kind of
//! connection it drives and over what it hosts. It accepts (admission,
//! accept retry), reads, flushes, arms write interest only while something
//! waits, sweeps idle and stalled connections, and stops gracefully; the
//! [`Host`] decides what bytes mean and what to send, and knows nothing of
//! sockets. The stream services (one reactor per worker) and the chat room
//! run on it alike.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::conn::Conn;
use super::queue::{OutQueue, QueueLimits, Refused};
use super::{AcceptRetry, Permit, Shared};

/// The read buffer, shared by a reactor's connections.
pub(crate) const READ_BUF: usize = 64 * 1024;
/// Reads per readiness event before other connections get their turn.
const READ_BUDGET: usize = 16;

const WAKER: Token = Token(usize::MAX);

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The peer closed, or the host closed it once flushed.
    Closed,
    /// Reading or writing failed.
    Failed,
    /// Its queue passed its bounds: it does not read fast enough.
    SlowReader,
    /// Nothing was heard from it for `idle_timeout`.
    Idle,
    /// Its TLS handshake failed or did not finish in time.
    Handshake,
}

/// How often timers are looked at: often enough that a timeout is
/// honoured within half its length, never more than once a second.
pub(crate) fn sweep_every(shortest: Duration) -> Duration {
    (shortest / 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

/// One connection, as the reactor keeps it.
pub(crate) struct Slot<C, S> {
    pub conn: C,
    pub peer: SocketAddr,
    /// The host's state for it.
    pub state: S,
    pub out: OutQueue,
    /// When it last sent something (and, for hosts whose output is
    /// activity, when it last took some).
    pub last_active: Instant,
    /// When it was accepted.
    pub since: Instant,
    /// Close once everything is written.
    closing: bool,
    /// Being removed this turn: nothing more is written to it.
    doomed: bool,
    dirty: bool,
    write_armed: bool,
    /// Its TLS handshake is done (plain connections have none).
    handshaken: bool,
    /// What [`Conn::unsent`] said at the last sweep.
    unsent_seen: usize,
    _permit: Permit,
}

impl<C, S> Slot<C, S> {
    pub fn closing(&self) -> bool {
        self.closing || self.doomed
    }
}

/// The connections of one reactor, and what hosts may do with them.
pub(crate) struct Conns<C, S> {
    slab: Slab<Slot<C, S>>,
    limits: QueueLimits,
    /// Connections with something to write this turn.
    dirty: Vec<usize>,
    /// Connections to remove this turn, and why.
    doomed: Vec<(usize, Ending)>,
}

impl<C: Conn, S> Conns<C, S> {
    pub fn new(limits: QueueLimits) -> Conns<C, S> {
        Conns {
            slab: Slab::new(),
            limits,
            dirty: Vec::new(),
            doomed: Vec::new(),
        }
    }

    pub fn get(&self, key: usize) -> Option<&Slot<C, S>> {
        self.slab.get(key)
    }

    pub fn get_mut(&mut self, key: usize) -> Option<&mut Slot<C, S>> {
        self.slab.get_mut(key)
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Every connection's key, for a sweep.
    pub fn keys(&self) -> Vec<usize> {
        self.slab.iter().map(|(k, _)| k).collect()
    }

    /// Gives `bytes` (`frames` messages) to connection `key`: written at
    /// once when nothing waits for it, else queued; one whose queue would
    /// pass its bounds is dropped as a slow reader.
    pub fn send(&mut self, key: usize, bytes: &[u8], frames: usize) {
        let Some(slot) = self.slab.get_mut(key) else {
            return;
        };
        if slot.doomed {
            return;
        }
        // While a close waits for the queue, nothing jumps it.
        let through = !slot.closing;
        match slot
            .out
            .offer(&mut slot.conn, bytes, frames, self.limits, through)
        {
            Ok(true) => {}
            Ok(false) => mark(&mut self.dirty, slot, key),
            Err(Refused::Overflow) => doom(&mut self.doomed, slot, key, Ending::SlowReader),
            Err(Refused::Io(e)) => {
                log::debug!("write to {}: {e}", slot.peer);
                doom(&mut self.doomed, slot, key, Ending::Failed);
            }
        }
    }

    /// Closes `key` once what waits for it is written.
    pub fn close_after_flush(&mut self, key: usize) {
        if let Some(slot) = self.slab.get_mut(key) {
            slot.closing = true;
            mark(&mut self.dirty, slot, key);
        }
    }

    /// Closes `key` this turn; nothing more is written to it.
    pub fn drop_conn(&mut self, key: usize, why: Ending) {
        if let Some(slot) = self.slab.get_mut(key) {
            doom(&mut self.doomed, slot, key, why);
        }
    }
}

fn mark<C, S>(dirty: &mut Vec<usize>, slot: &mut Slot<C, S>, key: usize) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(key);
    }
}

fn doom<C, S>(doomed: &mut Vec<(usize, Ending)>, slot: &mut Slot<C, S>, key: usize, why: Ending) {
    if !slot.doomed {
        slot.doomed = true;
        doomed.push((key, why));
    }
}

/// What a reactor hosts: it hears of connections and bytes by key, and
/// answers through [`Conns`].
pub(crate) trait Host<C: Conn>: Send + 'static {
    /// Per connection.
    type State: Send;
    /// What other threads hand it through its inbox.
    type Message: Send + 'static;
    /// Whether a peer taking its output is active, for `idle_timeout`
    /// (echo: a peer taking its echo is; chat: only what a client says).
    const OUTPUT_IS_ACTIVITY: bool;
    /// A connection with this much waiting to be written is not read from
    /// until it drains (echo: a peer that sends without reading cannot
    /// make the server buffer without limit). `usize::MAX`: always read
    /// (chat: the queue's bounds drop a slow reader instead).
    const PAUSE_READING_AT: usize;

    /// A connection admitted on listener `listener` gets slot `key`.
    fn open(&mut self, key: usize, listener: usize, peer: SocketAddr) -> Self::State;
    /// Called once the new connection is in `conns`.
    fn opened(&mut self, conns: &mut Conns<C, Self::State>, key: usize) {
        let _ = (conns, key);
    }
    /// Bytes from `key`.
    fn received(&mut self, conns: &mut Conns<C, Self::State>, key: usize, bytes: &[u8]);
    /// The peer of `key` ended its side.
    fn peer_closed(&mut self, conns: &mut Conns<C, Self::State>, key: usize);
    /// `key` was silent for `idle_timeout`. By default it is closed.
    fn idle(&mut self, conns: &mut Conns<C, Self::State>, key: usize) {
        conns.drop_conn(key, Ending::Idle);
    }
    /// The host's own timers, every sweep.
    fn tick(&mut self, conns: &mut Conns<C, Self::State>, now: Instant) {
        let _ = (conns, now);
    }
    /// How often [`Host::tick`] must run, if the host has timers.
    fn tick_every(&self) -> Option<Duration> {
        None
    }
    /// The server is stopping: last words, before the grace period.
    fn stopping(&mut self, conns: &mut Conns<C, Self::State>) {
        let _ = conns;
    }
    /// `key` is gone, for `why`; called once for every connection opened.
    fn closed(
        &mut self,
        conns: &mut Conns<C, Self::State>,
        key: usize,
        state: Self::State,
        why: Ending,
    );
    /// A message from another thread.
    fn message(&mut self, conns: &mut Conns<C, Self::State>, message: Self::Message) {
        let _ = (conns, message);
    }
}

/// Makes a listener's accepted sockets into connections.
pub(crate) type Wrap<C> = Box<dyn Fn(mio::net::TcpStream) -> io::Result<C> + Send>;

/// A reactor's poll and inbox, made before the reactor so that the inbox
/// can be handed out first.
pub(crate) struct Mailbox<M> {
    poll: Poll,
    waker: Arc<Waker>,
    receiver: Receiver<M>,
    sender: SyncSender<M>,
}

impl<M> Mailbox<M> {
    /// Room for `capacity` waiting messages.
    pub fn new(capacity: usize) -> io::Result<Mailbox<M>> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (sender, receiver) = std::sync::mpsc::sync_channel(capacity.max(1));
        Ok(Mailbox {
            poll,
            waker,
            receiver,
            sender,
        })
    }

    /// Where other threads hand the reactor's host messages.
    pub fn inbox(&self) -> Inbox<M> {
        Inbox {
            sender: self.sender.clone(),
            waker: self.waker.clone(),
        }
    }
}

/// Hands messages to a reactor's host from another thread: a bounded
/// channel, and the reactor's waker.
pub struct Inbox<M> {
    sender: SyncSender<M>,
    waker: Arc<Waker>,
}

impl<M> Clone for Inbox<M> {
    fn clone(&self) -> Self {
        Inbox {
            sender: self.sender.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<M> Inbox<M> {
    /// Delivers `message`; gives it back when the inbox is full (the
    /// reactor is behind) or gone (its server stopped).
    pub fn send(&self, message: M) -> Result<(), M> {
        match self.sender.try_send(message) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => Err(m),
        }
    }
}

/// A reactor's settings.
pub(crate) struct Settings {
    /// Its thread's name, for logs.
    pub name: String,
    pub idle_timeout: Option<Duration>,
    pub handshake_timeout: Duration,
    pub limits: QueueLimits,
}

pub(crate) struct Reactor<C: Conn, H: Host<C>> {
    shared: Arc<Shared>,
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<(TcpListener, Wrap<C>)>,
    /// Tokens below this are listeners', even after a stop closed them.
    n_listeners: usize,
    /// Whether any listener wraps its connections in a handshake.
    handshakes: bool,
    conns: Conns<C, H::State>,
    host: H,
    inbox: Receiver<H::Message>,
    buf: Vec<u8>,
    /// Connections whose input may not all have been read.
    again: Vec<usize>,
    accept_retry: AcceptRetry,
    settings: Settings,
}

impl<C: Conn, H: Host<C>> Reactor<C, H> {
    /// A reactor over `listeners` (each with how its connections are made
    /// and whether they begin with a handshake), not yet running.
    pub fn new(
        shared: Arc<Shared>,
        listeners: Vec<(TcpListener, Wrap<C>, bool)>,
        host: H,
        settings: Settings,
        mailbox: Mailbox<H::Message>,
    ) -> io::Result<Reactor<C, H>> {
        let Mailbox {
            poll,
            waker,
            receiver,
            ..
        } = mailbox;
        let handshakes = listeners.iter().any(|(_, _, h)| *h);
        let mut mine = Vec::with_capacity(listeners.len());
        for (t, (mut l, wrap, _)) in listeners.into_iter().enumerate() {
            poll.registry()
                .register(&mut l, Token(t), Interest::READABLE)?;
            mine.push((l, wrap));
        }
        Ok(Reactor {
            shared,
            poll,
            waker,
            n_listeners: mine.len(),
            listeners: mine,
            handshakes,
            conns: Conns::new(settings.limits),
            host,
            inbox: receiver,
            buf: vec![0; READ_BUF],
            again: Vec::new(),
            accept_retry: AcceptRetry::default(),
            settings,
        })
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs until the server has stopped and its connections are closed
    /// (or the grace period is over).
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let timers = [
            self.settings.idle_timeout,
            self.host.tick_every(),
            self.handshakes.then_some(self.settings.handshake_timeout),
        ];
        let sweep = timers.iter().flatten().min().copied().map(sweep_every);
        let mut next_sweep = Instant::now() + sweep.unwrap_or(Duration::ZERO);
        let mut told_stopping = false;
        loop {
            let timeout = if !self.again.is_empty() {
                Some(Duration::ZERO)
            } else if self.shared.is_stopping() {
                Some(self.shared.stop_wait(Duration::from_millis(50)))
            } else {
                self.accept_retry.cap(sweep)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "server {}: poll failed, {} stops: {e}",
                    self.shared.name,
                    self.settings.name
                );
                return;
            }
            let now = Instant::now();
            for key in std::mem::take(&mut self.again) {
                self.read(key, now, true);
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => self.take_inbox(),
                    Token(t) if t < self.n_listeners => {
                        if t < self.listeners.len() {
                            self.accept(t, now);
                        }
                    }
                    Token(t) => {
                        let key = t - self.n_listeners;
                        let closed = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closed {
                            self.read(key, now, closed);
                        }
                        if event.is_writable()
                            && let Some(slot) = self.conns.slab.get_mut(key)
                        {
                            mark(&mut self.conns.dirty, slot, key);
                        }
                    }
                }
            }
            if self.accept_retry.take_due(now) {
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if self.shared.is_stopping() && !told_stopping {
                told_stopping = true;
                // Stop accepting: this worker's copies of the listeners close.
                for (mut l, _) in self.listeners.drain(..) {
                    let _ = self.poll.registry().deregister(&mut l);
                }
                self.host.stopping(&mut self.conns);
            }
            if let Some(sweep) = sweep
                && now >= next_sweep
            {
                next_sweep = now + sweep;
                self.sweep(now);
            }
            self.flush_dirty(now);
            self.bury();
            if told_stopping && (self.conns.is_empty() || self.shared.past_deadline()) {
                if !self.conns.is_empty() {
                    log::info!(
                        "server {}: closing {} connection(s) still open after the grace period",
                        self.shared.name,
                        self.conns.len()
                    );
                }
                return;
            }
        }
    }

    fn take_inbox(&mut self) {
        while let Ok(message) = self.inbox.try_recv() {
            self.host.message(&mut self.conns, message);
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        loop {
            let (listener, wrap) = &self.listeners[index];
            let Some((stream, peer, permit)) = self
                .accept_retry
                .conn(self.shared.accept_admitted(listener))
            else {
                return;
            };
            let conn = match wrap(stream) {
                Ok(conn) => conn,
                Err(e) => {
                    log::warn!("server {}: cannot serve {peer}: {e}", self.shared.name);
                    continue;
                }
            };
            let entry = self.conns.slab.vacant_entry();
            let key = entry.key();
            let handshaken = !conn.handshaking();
            let mut slot = Slot {
                conn,
                peer,
                state: self.host.open(key, index, peer),
                out: OutQueue::default(),
                last_active: now,
                since: now,
                closing: false,
                doomed: false,
                dirty: false,
                write_armed: false,
                handshaken,
                unsent_seen: 0,
                _permit: permit,
            };
            if let Err(e) = self.poll.registry().register(
                &mut slot.conn,
                Token(key + self.n_listeners),
                Interest::READABLE,
            ) {
                log::warn!("server {}: cannot register {peer}: {e}", self.shared.name);
                // The host made its state: it hears of the end too.
                entry.insert(slot);
                self.conns.drop_conn(key, Ending::Failed);
                continue;
            }
            log::debug!("server {}: connection from {peer}", self.shared.name);
            entry.insert(slot);
            self.host.opened(&mut self.conns, key);
        }
    }

    /// Reads what `key` sent and hands it to the host; `all` reads until
    /// the connection says there is no more (the peer closed, or a turn
    /// ran out of budget), without the short-read shortcut.
    fn read(&mut self, key: usize, now: Instant, all: bool) {
        for _ in 0..READ_BUDGET {
            let Some(slot) = self.conns.slab.get_mut(key) else {
                return;
            };
            if slot.closing() {
                return;
            }
            if slot.out.queued() >= H::PAUSE_READING_AT {
                // Read again once it drains (see flush).
                break;
            }
            let read = slot.conn.read(&mut self.buf);
            self.note_handshake(key);
            let Some(slot) = self.conns.slab.get_mut(key) else {
                return;
            };
            match read {
                Ok(0) => {
                    self.host.peer_closed(&mut self.conns, key);
                    break;
                }
                Ok(n) => {
                    slot.last_active = now;
                    let more = slot.conn.more_to_read();
                    self.host.received(&mut self.conns, key, &self.buf[..n]);
                    if !more && !all {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if slot.handshaken {
                        log::debug!("server {}: read from {}: {e}", self.shared.name, slot.peer);
                        self.conns.drop_conn(key, Ending::Failed);
                    } else {
                        let peer = slot.peer;
                        self.handshake_failed(key, peer, &e.to_string());
                    }
                    return;
                }
            }
            if self.conns.slab.get(key).is_none_or(|s| s.closing()) {
                break;
            }
        }
        let Some(slot) = self.conns.slab.get_mut(key) else {
            return;
        };
        if slot.conn.more_to_read() && !slot.closing() && slot.out.queued() < H::PAUSE_READING_AT {
            self.again.push(key);
        }
        // A TLS session may have records to send (its handshake) though
        // the host sent nothing.
        mark(&mut self.conns.dirty, slot, key);
    }

    /// Counts a TLS handshake that has just finished.
    fn note_handshake(&mut self, key: usize) {
        if let Some(slot) = self.conns.slab.get_mut(key)
            && !slot.handshaken
            && !slot.conn.handshaking()
        {
            slot.handshaken = true;
            self.shared
                .stats
                .tls_handshakes
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts, logs once in a while, and closes.
    fn handshake_failed(&mut self, key: usize, peer: SocketAddr, why: &str) {
        self.shared.handshake_failed(peer, why);
        self.conns.drop_conn(key, Ending::Handshake);
    }

    /// Writes what waits for each connection marked this turn, arms write
    /// interest for those the socket did not take all of, and closes those
    /// done closing.
    fn flush_dirty(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.conns.dirty.len() {
            let key = self.conns.dirty[i];
            i += 1;
            self.flush(key, now);
            // Removing may make the host send more (a "left" notice).
            self.bury();
        }
        self.conns.dirty.clear();
    }

    fn flush(&mut self, key: usize, now: Instant) {
        let token = Token(key + self.n_listeners);
        let Some(slot) = self.conns.slab.get_mut(key) else {
            return;
        };
        slot.dirty = false;
        if slot.doomed {
            return;
        }
        let paused = slot.out.queued() >= H::PAUSE_READING_AT;
        let flushed = match slot.out.flush(&mut slot.conn) {
            Ok(f) => f,
            Err(e) => {
                log::debug!("server {}: write to {}: {e}", self.shared.name, slot.peer);
                doom(&mut self.conns.doomed, slot, key, Ending::Failed);
                return;
            }
        };
        if H::OUTPUT_IS_ACTIVITY && flushed.wrote > 0 {
            slot.last_active = now;
        }
        if flushed.done && slot.closing {
            // Everything written: now this side ends too.
            slot.conn.shutdown_write();
            doom(&mut self.conns.doomed, slot, key, Ending::Closed);
            return;
        }
        if flushed.done == slot.write_armed {
            let interest = if flushed.done {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut slot.conn, token, interest)
            {
                log::debug!("server {}: {}: {e}", self.shared.name, slot.peer);
                doom(&mut self.conns.doomed, slot, key, Ending::Failed);
                return;
            }
            slot.write_armed = !flushed.done;
        }
        if paused && slot.out.queued() < H::PAUSE_READING_AT {
            self.again.push(key);
        }
        self.note_handshake(key);
    }

    /// Removes the doomed connections and tells the host, which may doom
    /// more.
    fn bury(&mut self) {
        while let Some((key, why)) = self.conns.doomed.pop() {
            let Some(mut slot) = self.conns.slab.try_remove(key) else {
                continue;
            };
            let _ = self.poll.registry().deregister(&mut slot.conn);
            self.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
            match why {
                Ending::SlowReader => log::debug!(
                    "server {}: dropping {}: its output queue overflowed (it does not read)",
                    self.shared.name,
                    slot.peer
                ),
                Ending::Idle => log::debug!(
                    "server {}: closing {}: idle timeout",
                    self.shared.name,
                    slot.peer
                ),
                _ => log::debug!("server {}: {} gone ({why:?})", self.shared.name, slot.peer),
            }
            self.host.closed(&mut self.conns, key, slot.state, why);
        }
    }

    /// Closes connections whose handshake is overdue, and tells the host of
    /// idle ones; then runs the host's timers.
    fn sweep(&mut self, now: Instant) {
        let idle = self.settings.idle_timeout;
        let handshake = self.settings.handshake_timeout;
        let mut overdue = Vec::new();
        let mut silent = Vec::new();
        for (key, slot) in self.conns.slab.iter_mut() {
            if slot.doomed {
                continue;
            }
            if !slot.handshaken && now.duration_since(slot.since) >= handshake {
                overdue.push((key, slot.peer));
                continue;
            }
            if let Some(idle) = idle
                && now.duration_since(slot.last_active) >= idle
            {
                if H::OUTPUT_IS_ACTIVITY {
                    // A peer still taking its output is not idle, though
                    // nothing was written for a while: the kernel wakes a
                    // writer only once a third of its buffer is free. What
                    // is left to send says whether it moves.
                    let unsent = slot.conn.unsent();
                    if unsent != slot.unsent_seen {
                        slot.unsent_seen = unsent;
                        slot.last_active = now;
                        continue;
                    }
                }
                // Either way it gets one more period to take its last words.
                slot.last_active = now;
                silent.push(key);
            }
        }
        for (key, peer) in overdue {
            let why = format!(
                "no handshake within {}",
                humantime::format_duration(handshake)
            );
            self.handshake_failed(key, peer, &why);
        }
        for key in silent {
            if let Some(slot) = self.conns.slab.get(key) {
                if slot.closing {
                    // Told already, and its queue still not flushed.
                    self.conns.drop_conn(key, Ending::Idle);
                    continue;
                }
                log::debug!(
                    "server {}: {} idle for {}",
                    self.shared.name,
                    slot.peer,
                    humantime::format_duration(idle.unwrap_or_default())
                );
                self.host.idle(&mut self.conns, key);
            }
        }
        self.host.tick(&mut self.conns, now);
        self.bury();
    }
}
