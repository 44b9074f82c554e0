//! The bridge from a chat room to Redis, so that one room spans several
//! netlabd processes ("nodes"). The room stays a state machine without
//! sockets: it hands the bridge [`ToCluster`] messages through a bounded
//! channel (never waiting on it) and hears [`FromCluster`] news through its
//! runtime's inbox. The bridge runs the `redis` crate's blocking client on
//! two threads of its own:
//!
//! - the publisher claims names (an atomic `SET` with an expiry, in a Lua
//!   script that also refreshes a claim of this node's), releases them,
//!   publishes this node's events on the room's channel, numbered, and
//!   every quarter of `presence_ttl` refreshes its claims and publishes a
//!   heartbeat with its members;
//! - the subscriber listens on the channel, ignores this node's own
//!   messages, counts the events of each node it missed, and declares a
//!   node gone that was not heard from for three quarters of the TTL.
//!
//! Either connection failing is the link going down: the room is told
//! (once), each side reconnects with a bounded backoff, and once both are
//! back the room is told again, the publisher claims its names anew
//! (logging any taken meanwhile by another node) and its heartbeat tells
//! the others who is here. Events published while the link was down are
//! lost: delivery across an outage is at most once, and what was missed
//! is counted and logged on both sides.
//!
//! In Redis, for room R: the channel `netlab:chat:R:events`, and a key
//! `netlab:chat:R:name:NAME` per member, holding its node.
//!
//! The bridge's threads stop when the room lets go of its end
//! ([`RoomEnd`]): the server's stop, or a server never started. The
//! publisher then releases this node's names and tells the others that it
//! is gone.

mod link;
mod peers;
mod wire;

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use link::{Backoff, LinkState, Side};
use peers::{Heard, Peers};
use wire::{Body, Envelope, Event};

use crate::config::ClusterConfig;
use crate::metrics::{self, ServerMetrics};
use crate::service::chat::{Claim, FromCluster, ToCluster};

/// Batches from the room (what one of its inputs caused) that may wait
/// for the publisher.
const CHANNEL: usize = 4 * 1024;
/// Messages the publisher sends to Redis in one round trip, at most.
const BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a command may take before the link counts as down.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a waiting thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(100);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Claims `KEYS[1]` for `ARGV[1]` (this node) for `ARGV[2]` ms if it is
/// free or this node's already; otherwise returns its holder.
const CLAIM: &str = "local v = redis.call('GET', KEYS[1])
if v == false or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return v";

/// Deletes `KEYS[1]` if it is still held by `ARGV[1]` (this node).
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Hands the room news, in order (what one Redis message carried at
/// once); gives it back when the room cannot take it now.
pub type Deliver = Box<dyn Fn(Vec<FromCluster>) -> Result<(), Vec<FromCluster>> + Send + Sync>;

/// A bridge made but not started: see [`bridge`].
pub struct Bridge {
    settings: Settings,
    receiver: Receiver<Vec<ToCluster>>,
    control: Arc<Control>,
}

/// The room's end of the bridge: where it hands what the other nodes must
/// hear. Dropping it stops the bridge and waits for its threads.
pub struct RoomEnd {
    sender: SyncSender<Vec<ToCluster>>,
    control: Arc<Control>,
}

struct Settings {
    /// The server's name, for logs.
    server: String,
    room: String,
    node: Arc<str>,
    /// Tells this process's node from an earlier one of the same name.
    incarnation: u64,
    client: redis::Client,
    /// The URL without its password, for logs.
    shown: String,
    channel: String,
    /// Keys of names: this, then the name.
    name_key: String,
    /// What a claim holds: this incarnation and node.
    holder: String,
    ttl: Duration,
    metrics: Arc<ServerMetrics>,
}

impl Settings {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.name_key)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
        conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
        Ok(conn)
    }
}

/// What the bridge's threads and its room end share.
struct Control {
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    link: Mutex<LinkState>,
    /// The link was up once: the next up is "back".
    was_up: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes the bridge of `server`'s room as `config` says, not started: the
/// room gets the [`RoomEnd`] now, and [`Bridge::start`] is given the way to
/// the room once its runtime exists.
pub fn bridge(
    config: &ClusterConfig,
    server: &str,
    metrics: Arc<ServerMetrics>,
) -> io::Result<(Bridge, RoomEnd)> {
    let invalid = |e: redis::RedisError| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cluster redis {}: {e}", config.redis),
        )
    };
    // Small messages, each awaited: Nagle's algorithm would hold them.
    let url = redis::IntoConnectionInfo::into_connection_info(config.redis.as_secret_str())
        .map_err(invalid)?
        .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
    let client = match &config.ca {
        Some(ca) => {
            let root_cert = std::fs::read(ca).map_err(|e| {
                io::Error::new(e.kind(), format!("read cluster ca {}: {e}", ca.display()))
            })?;
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )
        }
        None => redis::Client::open(url),
    }
    .map_err(invalid)?;
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let prefix = format!("netlab:chat:{}:", config.room);
    let settings = Settings {
        server: server.to_owned(),
        room: config.room.clone(),
        node: Arc::from(config.node.as_str()),
        incarnation,
        client,
        shown: config.redis.to_string(),
        channel: format!("{prefix}events"),
        name_key: format!("{prefix}name:"),
        holder: format!("{incarnation}:{}", config.node),
        ttl: config.presence_ttl,
        metrics,
    };
    let (sender, receiver) = std::sync::mpsc::sync_channel(CHANNEL);
    let control = Arc::new(Control {
        stop: AtomicBool::new(false),
        threads: Mutex::new(Vec::new()),
        link: Mutex::new(LinkState::default()),
        was_up: AtomicBool::new(false),
    });
    Ok((
        Bridge {
            settings,
            receiver,
            control: control.clone(),
        },
        RoomEnd { sender, control },
    ))
}

impl Bridge {
    /// Starts the publisher and the subscriber; `deliver` hands the room
    /// their news.
    pub fn start(self, deliver: Deliver) -> io::Result<()> {
        let shared = Arc::new(Shared {
            settings: self.settings,
            control: self.control,
            deliver,
        });
        let publisher = Publisher {
            shared: shared.clone(),
            receiver: self.receiver,
            conn: None,
            held: BTreeMap::new(),
            conflicts: HashSet::new(),
            seq: 0,
            unpublished: 0,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            retry_at: Instant::now(),
        };
        let silence = shared.settings.ttl * 3 / 4;
        let subscriber = Subscriber {
            shared: shared.clone(),
            peers: Peers::new(
                shared.settings.node.clone(),
                shared.settings.incarnation,
                silence,
            ),
            missed: 0,
            unreadable: 0,
        };
        let name = |what: &str| format!("{}-{what}", shared.settings.server);
        let mut threads = lock(&shared.control.threads);
        for (what, run) in [
            (
                "redis-pub",
                Box::new(move || publisher.run()) as Box<dyn FnOnce() + Send>,
            ),
            ("redis-sub", Box::new(move || subscriber.run())),
        ] {
            match std::thread::Builder::new().name(name(what)).spawn(run) {
                Ok(t) => threads.push(t),
                Err(e) => {
                    shared.control.stop.store(true, Ordering::SeqCst);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("start thread {}: {e}", name(what)),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl crate::service::chat::Bridge for RoomEnd {
    fn offer(&mut self, msgs: Vec<ToCluster>) -> Result<(), Vec<ToCluster>> {
        match self.sender.try_send(msgs) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msgs)) => Err(msgs),
            // The bridge has stopped (the server is stopping): nobody to
            // tell, and nothing to keep.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }
}

impl Drop for RoomEnd {
    fn drop(&mut self) {
        self.control.stop.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *lock(&self.control.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// What both threads have.
struct Shared {
    settings: Settings,
    control: Arc<Control>,
    deliver: Deliver,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.control.stop.load(Ordering::SeqCst)
    }

    fn deliver(&self, news: FromCluster) {
        self.deliver_all(vec![news]);
    }

    /// Hands the room `news`, waiting while its inbox is full: news is
    /// never dropped, unless the bridge is stopping.
    fn deliver_all(&self, mut news: Vec<FromCluster>) {
        if news.is_empty() {
            return;
        }
        loop {
            match (self.deliver)(news) {
                Ok(()) => return,
                Err(back) if !self.stopping() => {
                    news = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    }

    /// Sleeps `d`, looking every [`POLL`] whether to stop; false if so.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.stopping() {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(POLL));
        }
    }

    /// One side connected or failed; the room and the log hear of the
    /// link's changes, in order (the lock is held while the room is told).
    fn link(&self, side: Side, up: bool, why: &dyn std::fmt::Display) {
        let s = &self.settings;
        let mut state = lock(&self.control.link);
        let Some(now) = state.set(side, up) else {
            if !up {
                log::debug!(
                    "server {}: cluster: {side} still cannot reach Redis {}: {why}",
                    s.server,
                    s.shown
                );
            }
            return;
        };
        if now && !self.control.was_up.swap(true, Ordering::SeqCst) {
            log::info!(
                "server {}: cluster room {:?}: node {:?} linked through {}",
                s.server,
                s.room,
                s.node,
                s.shown
            );
        } else if now {
            metrics::add(&s.metrics.chat.cluster.reconnects, 1);
            log::info!(
                "server {}: cluster link back (room {:?}, node {:?})",
                s.server,
                s.room,
                s.node
            );
        } else {
            log::warn!(
                "server {}: cluster link down: {side} to Redis {} failed: {why}; chat continues on this node only, reconnecting",
                s.server,
                s.shown
            );
        }
        s.metrics
            .chat
            .cluster
            .link_up
            .store(i64::from(now), Ordering::Relaxed);
        self.deliver(FromCluster::Link { up: now });
    }
}

/// The publishing thread: see the module's docs.
struct Publisher {
    shared: Arc<Shared>,
    receiver: Receiver<Vec<ToCluster>>,
    conn: Option<Conn>,
    /// This node's members, as told to the others: claimed, refreshed and
    /// listed in heartbeats. Name to address.
    held: BTreeMap<Arc<str>, Arc<str>>,
    /// Names another node holds too (taken by both while the link was
    /// down): logged once each.
    conflicts: HashSet<Arc<str>>,
    /// The number of this node's last event.
    seq: u64,
    /// Events numbered while they could not be published, not yet logged.
    unpublished: u64,
    backoff: Backoff,
    retry_at: Instant,
}

/// A connection, with the SHA-1 of each script loaded into it.
struct Conn {
    conn: redis::Connection,
    claim: String,
    release: String,
}

impl Publisher {
    fn run(mut self) {
        let beat = self.shared.settings.ttl / 4;
        let mut next_beat = Instant::now();
        loop {
            if self.shared.stopping() {
                return self.farewell();
            }
            let now = Instant::now();
            if self.conn.is_none() && now >= self.retry_at {
                self.connect();
            }
            if now >= next_beat {
                self.heartbeat();
                next_beat = now + beat;
            }
            let mut wake = next_beat.min(now + POLL);
            if self.conn.is_none() {
                wake = wake.min(self.retry_at);
            }
            match self
                .receiver
                .recv_timeout(wake.saturating_duration_since(now))
            {
                Ok(mut batch) => {
                    while batch.len() < BATCH {
                        match self.receiver.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    self.handle(batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return self.farewell(),
            }
        }
    }

    fn connect(&mut self) {
        let s = &self.shared.settings;
        let loaded = s.connect().and_then(|mut conn| {
            let claim: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(CLAIM)
                .query(&mut conn)?;
            let release: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(RELEASE)
                .query(&mut conn)?;
            Ok(Conn {
                conn,
                claim,
                release,
            })
        });
        match loaded {
            Ok(conn) => {
                self.conn = Some(conn);
                self.backoff.reset();
                if self.unpublished > 0 {
                    log::warn!(
                        "server {}: cluster: {} event(s) of this node were not published while the link was down (delivery across an outage is at most once)",
                        s.server,
                        self.unpublished
                    );
                    self.unpublished = 0;
                }
                // Names taken while the link was down are claimed now, and
                // the others hear who is here.
                self.heartbeat();
                if self.conn.is_some() {
                    self.shared.link(Side::Publisher, true, &"connected");
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Events numbered that could not be published.
    fn unpublish(&mut self, n: u64) {
        self.unpublished += n;
        metrics::add(&self.shared.settings.metrics.chat.cluster.unpublished, n);
    }

    /// The connection failed: the link is down until a retry succeeds.
    fn failed(&mut self, e: &redis::RedisError) {
        self.conn = None;
        self.retry_at = Instant::now() + self.backoff.next_wait();
        self.shared.link(Side::Publisher, false, e);
    }

    /// Numbers `events` and adds their publication, in one message, to
    /// `pipe`; without a connection they are counted as unpublished.
    fn publish(&mut self, events: Vec<Event<'_>>, pipe: &mut redis::Pipeline) {
        if events.is_empty() {
            return;
        }
        let first = self.seq + 1;
        self.seq += events.len() as u64;
        if self.conn.is_none() {
            self.unpublish(events.len() as u64);
            return;
        }
        let s = &self.shared.settings;
        let envelope = Envelope {
            node: &s.node,
            incarnation: s.incarnation,
            seq: first,
            body: Body::Events(events),
        };
        pipe.cmd("PUBLISH")
            .arg(&s.channel)
            .arg(envelope.encode())
            .ignore();
    }

    fn release(&self, name: &str, pipe: &mut redis::Pipeline) {
        if let Some(conn) = &self.conn {
            let s = &self.shared.settings;
            pipe.cmd("EVALSHA")
                .arg(&conn.release)
                .arg(1)
                .arg(s.key(name))
                .arg(&s.holder)
                .ignore();
        }
    }

    fn claim(&self, name: &str, pipe: &mut redis::Pipeline) {
        if let Some(conn) = &self.conn {
            let s = &self.shared.settings;
            pipe.cmd("EVALSHA")
                .arg(&conn.claim)
                .arg(1)
                .arg(s.key(name))
                .arg(&s.holder)
                .arg(s.ttl.as_millis() as u64);
        }
    }

    /// Carries out a batch of the room's messages in one round trip (its
    /// events in one message), and answers its claims.
    fn handle(&mut self, batch: Vec<ToCluster>) {
        let mut pipe = redis::pipe();
        let mut claims: Vec<(u64, Arc<str>)> = Vec::new();
        let mut undecided = Vec::new();
        let mut events = Vec::new();
        for msg in &batch {
            match msg {
                ToCluster::Claim { client, name } => {
                    if self.conn.is_some() {
                        self.claim(name, &mut pipe);
                        claims.push((*client, name.clone()));
                    } else {
                        undecided.push(FromCluster::Claimed {
                            client: *client,
                            name: name.clone(),
                            claim: Claim::Undecided,
                        });
                    }
                }
                ToCluster::Joined { name, addr } => {
                    self.held.insert(name.clone(), addr.clone());
                    events.push(Event::Joined { name, addr });
                }
                ToCluster::Said { from, text } => events.push(Event::Said { from, text }),
                ToCluster::Left { name } => {
                    self.held.remove(name);
                    self.conflicts.remove(name);
                    self.release(name, &mut pipe);
                    events.push(Event::Left { name });
                }
                ToCluster::Release { name } => self.release(name, &mut pipe),
            }
        }
        let count = events.len() as u64;
        // After the claims and releases: a member's name is held before
        // the others hear it joined, and free before they hear it left.
        self.publish(events, &mut pipe);
        self.shared.deliver_all(undecided);
        let Some(conn) = &mut self.conn else {
            return;
        };
        match pipe.query::<Vec<redis::Value>>(&mut conn.conn) {
            Ok(replies) => {
                metrics::add(&self.shared.settings.metrics.chat.cluster.published, count);
                let answers = claims
                    .into_iter()
                    .zip(replies)
                    .map(|((client, name), reply)| {
                        let claim = self.claim_reply(&name, &reply);
                        FromCluster::Claimed {
                            client,
                            name,
                            claim,
                        }
                    })
                    .collect();
                self.shared.deliver_all(answers);
            }
            Err(e) => {
                // Whether they went out is not known: counted as not.
                self.unpublish(count);
                self.failed(&e);
                let answers = claims
                    .into_iter()
                    .map(|(client, name)| FromCluster::Claimed {
                        client,
                        name,
                        claim: Claim::Undecided,
                    })
                    .collect();
                self.shared.deliver_all(answers);
            }
        }
    }

    /// What the claim script answered: granted, or the holder.
    fn claim_reply(&self, name: &str, reply: &redis::Value) -> Claim {
        match reply {
            redis::Value::Int(1) => Claim::Granted,
            redis::Value::BulkString(holder) => {
                let holder = String::from_utf8_lossy(holder);
                // "INCARNATION:NODE"
                let node = holder.split_once(':').map_or(&*holder, |(_, n)| n);
                Claim::Taken {
                    node: Arc::from(node),
                }
            }
            other => {
                log::warn!(
                    "server {}: cluster: unexpected answer to the claim of {name:?}: {other:?}",
                    self.shared.settings.server
                );
                Claim::Undecided
            }
        }
    }

    /// Refreshes this node's claims and tells the others it is alive, and
    /// who is here.
    fn heartbeat(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let s = &self.shared.settings;
        let mut pipe = redis::pipe();
        for name in self.held.keys() {
            self.claim(name, &mut pipe);
        }
        let members: Vec<(&str, &str)> = self.held.iter().map(|(n, a)| (&**n, &**a)).collect();
        let envelope = Envelope {
            node: &s.node,
            incarnation: s.incarnation,
            seq: self.seq,
            body: Body::Heartbeat { members },
        };
        pipe.cmd("PUBLISH")
            .arg(&s.channel)
            .arg(envelope.encode())
            .ignore();
        let Some(conn) = &mut self.conn else {
            return;
        };
        match pipe.query::<Vec<redis::Value>>(&mut conn.conn) {
            Ok(replies) => {
                let names: Vec<Arc<str>> = self.held.keys().cloned().collect();
                for (name, reply) in names.into_iter().zip(replies) {
                    match self.claim_reply(&name, &reply) {
                        Claim::Taken { node } => {
                            if self.conflicts.insert(name.clone()) {
                                log::warn!(
                                    "server {}: cluster: name {name:?} is held by node {node:?} too: both took it while the link was down",
                                    s.server
                                );
                            }
                        }
                        _ => {
                            self.conflicts.remove(&name);
                        }
                    }
                }
            }
            Err(e) => self.failed(&e),
        }
    }

    /// The bridge stops: this node's names are released, and the others
    /// told that it is gone, if Redis can be reached.
    fn farewell(&mut self) {
        if self.conn.is_none() {
            return;
        }
        let mut pipe = redis::pipe();
        let names: Vec<Arc<str>> = self.held.keys().cloned().collect();
        for name in &names {
            self.release(name, &mut pipe);
        }
        self.publish(vec![Event::Gone], &mut pipe);
        if let Some(conn) = &mut self.conn
            && let Err(e) = pipe.query::<()>(&mut conn.conn)
        {
            log::warn!(
                "server {}: cluster: could not say goodbye to the other nodes: {e}; they will find this node gone within its presence_ttl",
                self.shared.settings.server
            );
        }
    }
}

/// The listening thread: see the module's docs.
struct Subscriber {
    shared: Arc<Shared>,
    peers: Peers,
    /// Events of other nodes missed so far.
    missed: u64,
    /// Messages on the channel that did not decode.
    unreadable: u64,
}

impl Subscriber {
    fn run(mut self) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        while !self.shared.stopping() {
            let e = match self.shared.settings.connect() {
                Ok(mut conn) => match self.listen(&mut conn, &mut backoff) {
                    Ok(()) => return,
                    Err(e) => e,
                },
                Err(e) => e,
            };
            self.shared.link(Side::Subscriber, false, &e);
            if !self.shared.sleep(backoff.next_wait()) {
                return;
            }
        }
    }

    /// Subscribes and hands the room what is heard, until the bridge
    /// stops (`Ok`) or the connection fails.
    fn listen(
        &mut self,
        conn: &mut redis::Connection,
        backoff: &mut Backoff,
    ) -> redis::RedisResult<()> {
        let mut pubsub = conn.as_pubsub();
        pubsub.subscribe(&self.shared.settings.channel)?;
        pubsub.set_read_timeout(Some(POLL))?;
        backoff.reset();
        self.peers.restart_clocks(Instant::now());
        self.shared.link(Side::Subscriber, true, &"subscribed");
        // A subscription hears nothing from a Redis that is gone without
        // closing the connection (a host down, a cable out): when the
        // channel has been quiet a while, a PING must be answered.
        let quiet = self.shared.settings.ttl / 4;
        let mut heard = Instant::now();
        loop {
            if self.shared.stopping() {
                return Ok(());
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    heard = Instant::now();
                    self.heard(msg.get_payload_bytes());
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
            if heard.elapsed() >= quiet {
                pubsub.set_read_timeout(Some(COMMAND_TIMEOUT))?;
                pubsub.ping::<redis::Value>()?;
                pubsub.set_read_timeout(Some(POLL))?;
                heard = Instant::now();
            }
            for node in self.peers.silent(Instant::now()) {
                log::warn!(
                    "server {}: cluster: node {node:?} not heard from for {}: its members are gone",
                    self.shared.settings.server,
                    humantime::format_duration(self.shared.settings.ttl * 3 / 4)
                );
                self.shared.deliver(FromCluster::Gone { node });
            }
        }
    }

    fn heard(&mut self, payload: &[u8]) {
        let s = &self.shared.settings;
        let envelope = match wire::decode(payload) {
            Ok(e) => e,
            Err(e) => {
                self.unreadable += 1;
                if self.unreadable.is_power_of_two() {
                    log::warn!(
                        "server {}: cluster: a message on {} is not one of netlab's ({e}); {} so far",
                        s.server,
                        s.channel,
                        self.unreadable
                    );
                }
                return;
            }
        };
        let Heard::Peer {
            node,
            first,
            replaced,
            missed,
        } = self.peers.heard(&envelope, Instant::now())
        else {
            return;
        };
        let mut news = Vec::new();
        if replaced {
            log::info!("server {}: cluster: node {node:?} restarted", s.server);
            news.push(FromCluster::Gone { node: node.clone() });
        }
        if missed > 0 {
            self.missed += missed;
            metrics::add(&s.metrics.chat.cluster.missed, missed);
            log::warn!(
                "server {}: cluster: missed {missed} event(s) of node {node:?} ({} in all): delivery across an outage is at most once",
                s.server,
                self.missed
            );
        }
        match envelope.body {
            Body::Events(events) => {
                for event in events {
                    news.push(match event {
                        Event::Joined { name, addr } => FromCluster::Joined {
                            node: node.clone(),
                            name: name.into(),
                            addr: addr.into(),
                        },
                        Event::Said { from, text } => FromCluster::Said {
                            node: node.clone(),
                            from: from.into(),
                            text: text.into(),
                        },
                        Event::Left { name } => FromCluster::Left {
                            node: node.clone(),
                            name: name.into(),
                        },
                        Event::Gone => {
                            log::info!("server {}: cluster: node {node:?} stopped", s.server);
                            self.peers.forget(&node);
                            FromCluster::Gone { node: node.clone() }
                        }
                    });
                }
            }
            Body::Heartbeat { members } => news.push(FromCluster::Members {
                node,
                members: members
                    .into_iter()
                    .map(|(n, a)| (Arc::from(n), Arc::from(a)))
                    .collect(),
                quiet: first,
            }),
        }
        // All at once: the room tells each member in one write.
        self.shared.deliver_all(news);
    }
}
