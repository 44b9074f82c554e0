//! Rooms (chat) on the reactor: one reactor serves every listener of the
//! server, so all its connections share one room without a lock. Input is
//! handed to the room service as it comes; what the service sends goes to
//! one connection or to every member of a group (a broadcast encoded once
//! per dialect), written straight through to readers that keep up and
//! queued, within bounds, for the others: a slow reader is dropped, and
//! never stalls the room. Queued bytes go out once per loop turn, so a
//! burst of messages costs each client one write (how ncat gets its speed).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Conn, Connection};
use super::queue::QueueLimits;
use super::reactor::{Conns, Ending, Host, Inbox, Mailbox, Reactor, Settings, Wrap};
use super::{Listener, Runtime, Shared};
use crate::service::room::{ConnId, Disconnect, Outbox, RoomService, Send};

/// Messages that may wait in a room's inbox before senders are told it is full.
const INBOX: usize = 4096;

/// What the room runtime is told besides its service.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub queue: QueueLimits,
    /// A connection that joined no group by then is closed.
    pub login_timeout: Duration,
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
    ) -> io::Result<(RoomRuntime, Inbox<R::Remote>)> {
        let mailbox = Mailbox::new(INBOX)?;
        let inbox = mailbox.inbox();
        let runtime = RoomRuntime {
            spawn: Box::new(move |shared, listeners, idle_timeout, handshake_timeout| {
                spawn(
                    shared,
                    listeners,
                    service,
                    limits,
                    mailbox,
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
    mailbox: Mailbox<R::Remote>,
    idle_timeout: Option<Duration>,
    handshake_timeout: Duration,
) -> io::Result<Runtime> {
    let listeners = listeners
        .into_iter()
        .map(|l| {
            let kind = l.kind.clone();
            let wrap: Wrap<Connection> = Box::new(move |stream| kind.wrap(stream));
            (
                mio::net::TcpListener::from_std(l.socket),
                wrap,
                l.kind.handshakes(),
            )
        })
        .collect();
    let name = format!("{}-room", shared.name);
    let host = RoomHost::new(shared.clone(), service, limits.login_timeout);
    let settings = Settings {
        name: name.clone(),
        idle_timeout,
        handshake_timeout,
        limits: limits.queue,
    };
    let reactor = Reactor::new(shared.clone(), listeners, host, settings, mailbox)?;
    Runtime::start_all(shared, vec![(name, reactor.waker(), move || reactor.run())])
}

/// A connection, as the room runtime knows it.
pub(crate) struct Member {
    id: ConnId,
    listener: usize,
    /// The group the service put it in, once it did.
    group: Option<usize>,
}

/// Hosts a room service: connections are ids to it, groups are lists of
/// slot keys here.
pub(crate) struct RoomHost<R> {
    shared: Arc<Shared>,
    service: R,
    login_timeout: Duration,
    /// Members of each group, by slot key.
    groups: Vec<Vec<usize>>,
    outbox: Outbox,
    generation: u64,
}

fn key_of(id: ConnId) -> usize {
    (id & 0xffff_ffff) as usize
}

impl<R: RoomService> RoomHost<R> {
    pub fn new(shared: Arc<Shared>, service: R, login_timeout: Duration) -> RoomHost<R> {
        RoomHost {
            shared,
            service,
            login_timeout,
            groups: Vec::new(),
            outbox: Outbox::default(),
            generation: 0,
        }
    }

    /// Sends what the service put in the outbox.
    fn deliver<C: Conn>(&mut self, conns: &mut Conns<C, Member>) {
        let mut sends = std::mem::take(&mut self.outbox.sends);
        let member = |conns: &Conns<C, Member>, id: ConnId| {
            conns
                .get(key_of(id))
                .is_some_and(|s| s.state.id == id)
                .then_some(key_of(id))
        };
        let mut i = 0;
        while i < sends.len() {
            match sends[i].clone() {
                Send::To(id, range) => {
                    if let Some(key) = member(conns, id) {
                        conns.send(key, &self.outbox.bytes[range], 1);
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
                            if conns.get(key).is_some_and(|s| Some(s.state.id) != except) {
                                conns.send(key, bytes, frames);
                            }
                        }
                    }
                }
                Send::Join(id, group) => {
                    if let Some(key) = member(conns, id)
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
                Send::Close(id) => {
                    if let Some(key) = member(conns, id) {
                        conns.close_after_flush(key);
                    }
                }
            }
            i += 1;
        }
        sends.clear();
        self.outbox.sends = sends;
        self.outbox.bytes.clear();
    }

    fn id<C: Conn>(conns: &Conns<C, Member>, key: usize) -> Option<ConnId> {
        conns.get(key).map(|s| s.state.id)
    }
}

impl<C: Conn, R: RoomService> Host<C> for RoomHost<R> {
    type State = Member;
    type Message = R::Remote;
    const OUTPUT_IS_ACTIVITY: bool = false;
    const PAUSE_READING_AT: usize = usize::MAX;

    fn open(&mut self, key: usize, listener: usize, _peer: SocketAddr) -> Member {
        self.generation += 1;
        Member {
            id: (self.generation << 32) | key as u64,
            listener,
            group: None,
        }
    }

    fn opened(&mut self, conns: &mut Conns<C, Member>, key: usize) {
        let Some(slot) = conns.get(key) else {
            return;
        };
        let (id, listener, peer) = (slot.state.id, slot.state.listener, slot.peer.to_string());
        self.service
            .connected(id, listener, &peer, &mut self.outbox);
        self.deliver(conns);
    }

    fn received(&mut self, conns: &mut Conns<C, Member>, key: usize, bytes: &[u8]) {
        if let Some(id) = Self::id(conns, key) {
            self.service.received(id, bytes, &mut self.outbox);
            self.deliver(conns);
        }
    }

    fn peer_closed(&mut self, conns: &mut Conns<C, Member>, key: usize) {
        conns.drop_conn(key, Ending::Closed);
    }

    fn idle(&mut self, conns: &mut Conns<C, Member>, key: usize) {
        if let Some(id) = Self::id(conns, key) {
            self.service.idle(id, &mut self.outbox);
            self.deliver(conns);
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
            self.service.login_expired(id, &mut self.outbox);
            self.deliver(conns);
        }
    }

    fn stopping(&mut self, conns: &mut Conns<C, Member>) {
        self.service.stopping(&mut self.outbox);
        self.deliver(conns);
    }

    fn closed(&mut self, conns: &mut Conns<C, Member>, key: usize, state: Member, why: Ending) {
        if let Some(g) = state.group {
            self.groups[g].retain(|&k| k != key);
        }
        let why = match why {
            Ending::Closed => Disconnect::Closed,
            Ending::Failed | Ending::Handshake => Disconnect::Failed,
            Ending::SlowReader => Disconnect::SlowReader,
            Ending::Idle => Disconnect::Idle,
        };
        self.service.disconnected(state.id, why, &mut self.outbox);
        self.deliver(conns);
    }

    fn message(&mut self, conns: &mut Conns<C, Member>, event: R::Remote) {
        self.service.remote(event, &mut self.outbox);
        self.deliver(conns);
    }
}
