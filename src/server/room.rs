//! Rooms (chat) on reactors: one room service, shared by `workers`
//! reactors that each serve every listener, own their connections and
//! write to their sockets. The service decides (membership, names, order)
//! under a lock held only while it decides, never while a socket is
//! written; what it sends goes to one connection or to every member of a
//! group (a broadcast encoded once per dialect), on whichever reactor each
//! connection lives: bytes for the others travel, shared and not copied,
//! through their inboxes. Each reactor writes straight through to readers
//! that keep up and queues, within bounds, for the others: a slow reader is
//! dropped and never stalls the room. Queued bytes go out once per loop
//! turn, so a burst of messages costs each client one write.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::conn::{Conn, Connection};
use super::queue::QueueLimits;
use super::reactor::{
    Conns, Ending, Host, Inbox, Mailbox, Reactor, ReactorListener, Settings, Wrap,
};
use super::{Listener, Runtime, Shared};
use crate::service::room::{ConnId, Disconnect, Outbox, RoomService, Send};

/// Messages from other threads that may wait in a room's inbox before
/// senders are told it is full.
const INBOX: usize = 4096;

/// What the room runtime is told besides its service.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub queue: QueueLimits,
    /// A connection that joined no group by then is closed.
    pub login_timeout: Duration,
    /// Reactor threads serving the room's connections.
    pub workers: usize,
}

/// Where other threads hand a running room events (`RoomService::Remote`).
pub struct RoomInbox<E> {
    inbox: Inbox<Message<E>>,
}

impl<E> Clone for RoomInbox<E> {
    fn clone(&self) -> Self {
        RoomInbox {
            inbox: self.inbox.clone(),
        }
    }
}

impl<E> RoomInbox<E> {
    /// Hands `event` to the room; gives it back when the inbox is full (the
    /// room is behind) or gone (the server stopped).
    pub fn send(&self, event: E) -> Result<(), E> {
        self.inbox
            .send(Message::Remote(event))
            .map_err(|m| match m {
                Message::Remote(event) => event,
                Message::Routed(_) => unreachable!("only Remote is sent here"),
            })
    }
}

/// A room service, ready to be run on a server's listeners.
pub struct RoomRuntime {
    #[allow(clippy::type_complexity)]
    spawn: Box<
        dyn FnOnce(&Arc<Shared>, Vec<Listener>, Option<Duration>, Duration) -> io::Result<Runtime>
            + std::marker::Send,
    >,
}

impl RoomRuntime {
    /// The runtime of `service`, and the inbox through which other threads
    /// hand it events once it runs.
    pub fn new<R: RoomService>(
        service: R,
        limits: RoomLimits,
    ) -> io::Result<(RoomRuntime, RoomInbox<R::Remote>)> {
        let mailboxes = (0..limits.workers.max(1))
            .map(|_| Mailbox::new(INBOX))
            .collect::<io::Result<Vec<_>>>()?;
        // Events from elsewhere go to the first reactor, which has the
        // service decide and routes what it sends like its own.
        let inbox = RoomInbox {
            inbox: mailboxes[0].inbox(),
        };
        let runtime = RoomRuntime {
            spawn: Box::new(move |shared, listeners, idle_timeout, handshake_timeout| {
                spawn(
                    shared,
                    listeners,
                    service,
                    limits,
                    mailboxes,
                    idle_timeout,
                    handshake_timeout,
                )
            }),
        };
        Ok((runtime, inbox))
    }

    pub(super) fn start(
        self,
        shared: &Arc<Shared>,
        listeners: Vec<Listener>,
        idle_timeout: Option<Duration>,
        handshake_timeout: Duration,
    ) -> io::Result<Runtime> {
        (self.spawn)(shared, listeners, idle_timeout, handshake_timeout)
    }
}

fn spawn<R: RoomService>(
    shared: &Arc<Shared>,
    listeners: Vec<Listener>,
    service: R,
    limits: RoomLimits,
    mailboxes: Vec<Mailbox<Message<R::Remote>>>,
    idle_timeout: Option<Duration>,
    handshake_timeout: Duration,
) -> io::Result<Runtime> {
    let service = Arc::new(Mutex::new(service));
    let inboxes: Vec<Inbox<Message<R::Remote>>> = mailboxes.iter().map(Mailbox::inbox).collect();
    let workers = mailboxes.len();
    // Every reactor is built before any runs (see stream::spawn).
    let mut ready = Vec::with_capacity(workers);
    for (i, mailbox) in mailboxes.into_iter().enumerate() {
        let in_worker = |e: io::Error| super::worker_error(e, i, workers);
        let mut mine = Vec::with_capacity(listeners.len());
        for l in &listeners {
            let copy = l.socket.try_clone().map_err(in_worker)?;
            let kind = l.kind.clone();
            let wrap: Wrap<Connection> = Box::new(move |stream| kind.wrap(stream));
            mine.push(ReactorListener {
                socket: mio::net::TcpListener::from_std(copy),
                wrap,
                handshakes: l.kind.handshakes(),
                metrics: l.metrics.clone(),
            });
        }
        let name = if workers == 1 {
            format!("{}-room", shared.name)
        } else {
            format!("{}-room{i}", shared.name)
        };
        let host = RoomHost {
            shared: shared.clone(),
            service: service.clone(),
            login_timeout: limits.login_timeout,
            worker: i,
            peers: inboxes.clone(),
            groups: Vec::new(),
            outbox: Outbox::default(),
            generation: 0,
        };
        let settings = Settings {
            name: name.clone(),
            worker: i,
            idle_timeout,
            handshake_timeout,
            limits: limits.queue,
        };
        let reactor =
            Reactor::new(shared.clone(), mine, host, settings, mailbox).map_err(in_worker)?;
        ready.push((name, reactor.waker(), move || reactor.run()));
    }
    // Each reactor holds copies of the listeners; these go.
    drop(listeners);
    Runtime::start_all(shared, ready)
}

/// What a room's reactor is handed by others.
pub(crate) enum Message<E> {
    /// An event from another thread, for the service.
    Remote(E),
    /// What the service sent, decided on another reactor, for connections
    /// of this one.
    Routed(Routed),
}

/// A send of the service's, on its way to the reactor of its connection.
pub(crate) enum Routed {
    To(ConnId, Arc<[u8]>),
    Group {
        group: usize,
        except: Option<ConnId>,
        bytes: Arc<[u8]>,
        frames: usize,
    },
    Join(ConnId, usize),
    Close(ConnId),
}

/// A connection, as the room runtime knows it.
pub(crate) struct Member {
    id: ConnId,
    listener: usize,
    /// The group the service put it in, once it did.
    group: Option<usize>,
}

/// One reactor's share of a room: the service (shared, behind its lock),
/// this reactor's connections as ids, and its members of each group.
pub(crate) struct RoomHost<R: RoomService> {
    shared: Arc<Shared>,
    service: Arc<Mutex<R>>,
    login_timeout: Duration,
    /// This reactor's number, which its connections' ids carry.
    worker: usize,
    /// Every reactor's inbox, this one's included, by number.
    peers: Vec<Inbox<Message<R::Remote>>>,
    /// This reactor's members of each group, by slot key.
    groups: Vec<Vec<usize>>,
    outbox: Outbox,
    generation: u64,
}

/// An id: the reactor in its top byte, a generation, the slot key in its
/// low 32 bits.
fn key_of(id: ConnId) -> usize {
    (id & 0xffff_ffff) as usize
}

fn worker_of(id: ConnId) -> usize {
    (id >> 56) as usize
}

impl<R: RoomService> RoomHost<R> {
    /// Has the service decide, then sends what it sent: the lock is held
    /// while it decides, never while anything is written.
    ///
    /// With several reactors, what the service sent is handed to the
    /// reactors' inboxes (this one's too) while the lock is held: every
    /// reactor then delivers every event in the order the service decided
    /// them, whichever reactor decided (a join notice never overtakes an
    /// earlier one). With one, it is delivered here and now.
    fn decide<C: Conn>(
        &mut self,
        conns: &mut Conns<C, Member>,
        decide: impl FnOnce(&mut R, &mut Outbox),
    ) {
        let service = self.service.clone();
        let mut service = lock(&service);
        decide(&mut service, &mut self.outbox);
        if self.peers.len() > 1 {
            self.route_all();
        } else {
            drop(service);
            self.deliver(conns);
        }
    }

    /// Hands every send in the outbox to the inbox of the reactor it is
    /// for: a group's to every reactor, its bytes shared, not copied.
    fn route_all(&mut self) {
        let mut sends = std::mem::take(&mut self.outbox.sends);
        let mut i = 0;
        while i < sends.len() {
            match sends[i].clone() {
                Send::To(id, range) => {
                    self.route(id, Routed::To(id, self.outbox.bytes[range].into()));
                }
                Send::Group {
                    group,
                    except,
                    bytes,
                } => {
                    let (end, frames) = burst(&sends, &mut i, group, except, bytes.end);
                    let shared: Arc<[u8]> = self.outbox.bytes[bytes.start..end].into();
                    for peer in &self.peers {
                        let _ = peer.send_always(Message::Routed(Routed::Group {
                            group,
                            except,
                            bytes: shared.clone(),
                            frames,
                        }));
                    }
                }
                Send::Join(id, group) => self.route(id, Routed::Join(id, group)),
                Send::Close(id) => self.route(id, Routed::Close(id)),
            }
            i += 1;
        }
        sends.clear();
        self.outbox.sends = sends;
        self.outbox.bytes.clear();
    }

    /// Sends what the service put in the outbox to this reactor's
    /// connections (the only reactor).
    fn deliver<C: Conn>(&mut self, conns: &mut Conns<C, Member>) {
        let mut sends = std::mem::take(&mut self.outbox.sends);
        let mut i = 0;
        while i < sends.len() {
            match sends[i].clone() {
                Send::To(id, range) => self.to(conns, id, &self.outbox.bytes[range]),
                Send::Group {
                    group,
                    except,
                    bytes,
                } => {
                    // A burst of messages to the same group is one slice of
                    // the outbox: each member gets it in one offer, one write.
                    let (end, frames) = burst(&sends, &mut i, group, except, bytes.end);
                    let bytes = &self.outbox.bytes[bytes.start..end];
                    let n = group_send(&self.groups, conns, group, except, bytes, frames);
                    self.delivered(n);
                }
                Send::Join(id, group) => self.join(conns, id, group),
                Send::Close(id) => self.close(conns, id),
            }
            i += 1;
        }
        sends.clear();
        self.outbox.sends = sends;
        self.outbox.bytes.clear();
    }

    /// Hands `routed` to the reactor of connection `id`.
    fn route(&self, id: ConnId, routed: Routed) {
        if let Some(peer) = self.peers.get(worker_of(id)) {
            let _ = peer.send_always(Message::Routed(routed));
        }
    }

    /// `key` when `id` is a connection of this reactor that is still open.
    fn local<C: Conn>(conns: &Conns<C, Member>, id: ConnId) -> Option<usize> {
        conns
            .get(key_of(id))
            .is_some_and(|s| s.state.id == id)
            .then_some(key_of(id))
    }

    fn to<C: Conn>(&self, conns: &mut Conns<C, Member>, id: ConnId, bytes: &[u8]) {
        if let Some(key) = Self::local(conns, id) {
            conns.send(key, bytes, 1);
            self.delivered(1);
        }
    }

    /// Counts `n` messages written or queued to members.
    fn delivered(&self, n: u64) {
        if n > 0 {
            crate::metrics::add(&self.shared.metrics.chat.deliveries, n);
        }
    }

    fn join<C: Conn>(&mut self, conns: &mut Conns<C, Member>, id: ConnId, group: usize) {
        if let Some(key) = Self::local(conns, id)
            && let Some(slot) = conns.get_mut(key)
        {
            if self.groups.len() <= group {
                self.groups.resize_with(group + 1, Vec::new);
            }
            if let Some(old) = slot.state.group.replace(group) {
                self.groups[old].retain(|&k| k != key);
            }
            self.groups[group].push(key);
        }
    }

    fn close<C: Conn>(&self, conns: &mut Conns<C, Member>, id: ConnId) {
        if let Some(key) = Self::local(conns, id) {
            conns.close_after_flush(key);
        }
    }

    fn id<C: Conn>(conns: &Conns<C, Member>, key: usize) -> Option<ConnId> {
        conns.get(key).map(|s| s.state.id)
    }
}

/// Extends the group send at `sends[*i]` (ending at `end`) over the sends
/// right after it to the same group, whose bytes follow on in the outbox:
/// where the burst ends, and how many messages it holds. `*i` moves to
/// its last send.
fn burst(
    sends: &[Send],
    i: &mut usize,
    group: usize,
    except: Option<ConnId>,
    mut end: usize,
) -> (usize, usize) {
    let mut frames = 1;
    while let Some(Send::Group {
        group: g,
        except: e,
        bytes: b,
    }) = sends.get(*i + 1)
        && *g == group
        && *e == except
        && b.start == end
    {
        end = b.end;
        frames += 1;
        *i += 1;
    }
    (end, frames)
}

fn lock<R>(service: &Mutex<R>) -> MutexGuard<'_, R> {
    service.lock().unwrap_or_else(|e| e.into_inner())
}

/// Gives `bytes` to this reactor's members of `group` but `except`.
fn group_send<C: Conn>(
    groups: &[Vec<usize>],
    conns: &mut Conns<C, Member>,
    group: usize,
    except: Option<ConnId>,
    bytes: &[u8],
    frames: usize,
) -> u64 {
    let mut delivered = 0;
    if let Some(members) = groups.get(group) {
        for &key in members {
            if conns.get(key).is_some_and(|s| Some(s.state.id) != except) {
                conns.send(key, bytes, frames);
                delivered += frames as u64;
            }
        }
    }
    delivered
}

impl<C: Conn, R: RoomService> Host<C> for RoomHost<R> {
    type State = Member;
    type Message = Message<R::Remote>;
    const OUTPUT_IS_ACTIVITY: bool = false;
    const PAUSE_READING_AT: usize = usize::MAX;

    fn open(&mut self, key: usize, listener: usize, _peer: SocketAddr) -> Member {
        self.generation = (self.generation + 1) & 0x00ff_ffff;
        Member {
            id: ((self.worker as u64) << 56) | (self.generation << 32) | key as u64,
            listener,
            group: None,
        }
    }

    fn opened(&mut self, conns: &mut Conns<C, Member>, key: usize) {
        let Some(slot) = conns.get(key) else {
            return;
        };
        let (id, listener, peer) = (slot.state.id, slot.state.listener, slot.peer.to_string());
        self.decide(conns, |service, out| {
            service.connected(id, listener, &peer, out)
        });
    }

    fn received(&mut self, conns: &mut Conns<C, Member>, key: usize, bytes: &[u8]) {
        if let Some(id) = Self::id(conns, key) {
            self.decide(conns, |service, out| service.received(id, bytes, out));
        }
    }

    fn peer_closed(&mut self, conns: &mut Conns<C, Member>, key: usize) {
        conns.drop_conn(key, Ending::Closed);
    }

    fn idle(&mut self, conns: &mut Conns<C, Member>, key: usize) {
        if let Some(id) = Self::id(conns, key) {
            self.decide(conns, |service, out| service.idle(id, out));
        }
    }

    fn tick_every(&self) -> Option<Duration> {
        Some(self.login_timeout)
    }

    /// Closes connections still in no group after `login_timeout`.
    fn tick(&mut self, conns: &mut Conns<C, Member>, now: Instant) {
        for key in conns.keys() {
            let Some(slot) = conns.get_mut(key) else {
                continue;
            };
            if slot.state.group.is_some() || now.duration_since(slot.since) < self.login_timeout {
                continue;
            }
            if slot.closing() {
                // Told already, and its queue still not flushed.
                conns.drop_conn(key, Ending::Idle);
                continue;
            }
            // It gets one more period to take its last words.
            slot.since = now;
            let id = slot.state.id;
            log::debug!(
                "server {}: closing {}: no login within {}",
                self.shared.name,
                slot.peer,
                humantime::format_duration(self.login_timeout)
            );
            self.decide(conns, |service, out| service.login_expired(id, out));
        }
    }

    fn stopping(&mut self, conns: &mut Conns<C, Member>) {
        self.decide(conns, |service, out| service.stopping(out));
    }

    fn closed(&mut self, conns: &mut Conns<C, Member>, key: usize, state: Member, why: Ending) {
        if let Some(g) = state.group {
            self.groups[g].retain(|&k| k != key);
        }
        if why == Ending::SlowReader {
            crate::metrics::add(&self.shared.metrics.chat.slow_readers, 1);
        }
        let why = match why {
            Ending::Closed => Disconnect::Closed,
            Ending::Failed | Ending::Handshake => Disconnect::Failed,
            Ending::SlowReader => Disconnect::SlowReader,
            Ending::Idle => Disconnect::Idle,
        };
        self.decide(conns, |service, out| {
            service.disconnected(state.id, why, out)
        });
    }

    fn message(&mut self, conns: &mut Conns<C, Member>, message: Message<R::Remote>) {
        match message {
            Message::Remote(event) => {
                self.decide(conns, |service, out| service.remote(event, out));
            }
            Message::Routed(Routed::To(id, bytes)) => self.to(conns, id, &bytes),
            Message::Routed(Routed::Group {
                group,
                except,
                bytes,
                frames,
            }) => {
                let n = group_send(&self.groups, conns, group, except, &bytes, frames);
                self.delivered(n);
            }
            Message::Routed(Routed::Join(id, group)) => self.join(conns, id, group),
            Message::Routed(Routed::Close(id)) => self.close(conns, id),
        }
    }
}
