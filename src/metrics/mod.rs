//! The counters every server updates, in a registry handed to it (no
//! global), and their encoding for Prometheus.
//!
//! A [`Registry`] holds one [`ServerMetrics`] per server name, each with
//! one [`ListenerMetrics`] per listening address; they outlive the servers
//! that update them, so a reload that restarts or keeps a server carries
//! its counters on. Counters are relaxed atomics. Those a request touches
//! (bytes, requests, datagrams) are sharded per worker, each shard on its
//! own cache line, so workers on different cores never write the same
//! line; a scrape adds the shards up. No series is labelled by client
//! address: a flood from many addresses cannot grow the registry.
//!
//! This layer imports nothing of netlab: runtimes, services and the daemon
//! all update it.

mod encode;
mod process;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

pub use encode::Format;

/// Shards per listener: a worker uses shard `worker % SHARDS`.
pub const SHARDS: usize = 8;

/// What one worker counts for one listener. Aligned so that no two shards
/// share a cache line.
#[repr(align(128))]
#[derive(Debug, Default)]
pub struct Shard {
    pub accepted: AtomicU64,
    pub closed: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Messages answered (count).
    pub requests: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub datagrams_received: AtomicU64,
    pub datagrams_answered: AtomicU64,
}

/// Adds `n` to a counter: relaxed, as no other memory is ordered by it.
#[inline]
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Why a connection was refused (closed before it reached its service).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were open.
    MaxConnections,
    /// Its source had `per_source` connections open.
    PerSource,
    /// Its source was over `rate`.
    Rate,
    /// `allow`/`deny` refused its address.
    Deny,
    /// Its TLS handshake failed or did not finish in time.
    Handshake,
    /// Its PROXY protocol header was missing, malformed, late, or came
    /// from an address not in `proxy_from`.
    Proxy,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::MaxConnections,
        Refusal::PerSource,
        Refusal::Rate,
        Refusal::Deny,
        Refusal::Handshake,
        Refusal::Proxy,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::PerSource => "per_source",
            Refusal::Rate => "rate",
            Refusal::Deny => "deny",
            Refusal::Handshake => "handshake",
            Refusal::Proxy => "proxy",
        }
    }
}

/// Why a datagram was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// `allow`/`deny` refused its sender.
    Deny,
    /// Its sender was over `rate`.
    Rate,
    /// It came from a port in `drop_source_ports`.
    SourcePort,
    /// The kernel did not take the reply.
    SendFailed,
}

impl Dropped {
    pub const ALL: [Dropped; 4] = [
        Dropped::Deny,
        Dropped::Rate,
        Dropped::SourcePort,
        Dropped::SendFailed,
    ];

    /// The `reason` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Dropped::Deny => "deny",
            Dropped::Rate => "rate",
            Dropped::SourcePort => "source_port",
            Dropped::SendFailed => "send_failed",
        }
    }
}

/// Whether a listener takes connections or datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    Tcp,
    Udp,
}

/// One listening address of a server.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// The `listener` label: the address bound.
    pub addr: String,
    pub kind: ListenerKind,
    shards: [Shard; SHARDS],
    refused: [AtomicU64; Refusal::ALL.len()],
    dropped: [AtomicU64; Dropped::ALL.len()],
}

impl ListenerMetrics {
    fn new(addr: String, kind: ListenerKind) -> ListenerMetrics {
        ListenerMetrics {
            addr,
            kind,
            shards: Default::default(),
            refused: Default::default(),
            dropped: Default::default(),
        }
    }

    /// Worker `worker`'s shard.
    #[inline]
    pub fn shard(&self, worker: usize) -> &Shard {
        &self.shards[worker % SHARDS]
    }

    pub fn refused(&self, why: Refusal) {
        add(&self.refused[why as usize], 1);
    }

    pub fn dropped(&self, why: Dropped, n: u64) {
        add(&self.dropped[why as usize], n);
    }

    /// A counter summed over the shards.
    pub fn total(&self, counter: impl Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| counter(s).load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub fn refusals(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    pub fn drops(&self, why: Dropped) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }

    /// Connections open now: accepted and not yet closed.
    pub fn active(&self) -> u64 {
        self.total(|s| &s.accepted)
            .saturating_sub(self.total(|s| &s.closed))
    }
}

/// What a chat room counts.
#[derive(Debug, Default)]
pub struct ChatMetrics {
    /// Named clients in the room now.
    pub members: AtomicI64,
    /// Messages relayed (each counted once, however many receive it; the
    /// room relays nothing said with nobody else in it).
    pub messages: AtomicU64,
    /// Messages written or queued to a member (a message to N others is N).
    pub deliveries: AtomicU64,
    /// Members dropped because their output queue overflowed.
    pub slow_readers: AtomicU64,
    /// Messages refused by `message_rate`.
    pub messages_refused: AtomicU64,
    /// Clients disconnected after too many refused messages in a row.
    pub rate_disconnects: AtomicU64,
    /// Its bridge to the other nodes, when clustered.
    pub cluster: ClusterMetrics,
}

/// What a clustered chat room's bridge to Redis counts.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    /// Whether the room is clustered (its families are shown only then).
    pub clustered: AtomicBool,
    /// 1 while the link to Redis is up, 0 while it is down.
    pub link_up: AtomicI64,
    /// Times the link came back after it went down.
    pub reconnects: AtomicU64,
    /// Events of this node published (joins, messages, leaves).
    pub published: AtomicU64,
    /// Events of this node not published: the link was down.
    pub unpublished: AtomicU64,
    /// Events of other nodes that never arrived (gaps in their numbers).
    pub missed: AtomicU64,
    /// Messages the room dropped because Redis was behind it.
    pub dropped: AtomicU64,
}

/// The service a server runs, for which of its families apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServiceKind {
    #[default]
    Echo,
    Count,
    Chat,
}

/// One server's counters, by listener.
#[derive(Debug)]
pub struct ServerMetrics {
    pub name: String,
    /// Whether a registry serves these: counters a request touches are
    /// only counted then (a server started on its own counts connections
    /// alone, for its stats).
    live: bool,
    service: Mutex<ServiceKind>,
    listeners: Mutex<Vec<Arc<ListenerMetrics>>>,
    pub chat: ChatMetrics,
}

impl ServerMetrics {
    /// Counters for a server that no registry serves.
    pub fn detached(name: &str) -> Arc<ServerMetrics> {
        Arc::new(ServerMetrics::new(name, false))
    }

    fn new(name: &str, live: bool) -> ServerMetrics {
        ServerMetrics {
            name: name.to_owned(),
            live,
            service: Mutex::default(),
            listeners: Mutex::default(),
            chat: ChatMetrics::default(),
        }
    }

    /// Whether per-request counters (bytes, requests) are kept.
    pub fn live(&self) -> bool {
        self.live
    }

    /// Says which service runs, so that its own families are shown.
    pub fn set_service(&self, service: ServiceKind) {
        *lock(&self.service) = service;
    }

    pub fn service(&self) -> ServiceKind {
        *lock(&self.service)
    }

    /// The listener at `addr` (as bound), made on first use and the same
    /// one afterwards: a restarted server goes on counting in it.
    pub fn listener(&self, addr: &str, kind: ListenerKind) -> Arc<ListenerMetrics> {
        let mut listeners = lock(&self.listeners);
        if let Some(l) = listeners.iter().find(|l| l.addr == addr && l.kind == kind) {
            return l.clone();
        }
        let l = Arc::new(ListenerMetrics::new(addr.to_owned(), kind));
        listeners.push(l.clone());
        l
    }

    /// Keeps only the listeners at `addrs`: a server that stopped
    /// listening somewhere stops showing it.
    pub fn retain_listeners(&self, keep: &[(String, ListenerKind)]) {
        lock(&self.listeners).retain(|l| keep.iter().any(|(a, k)| *a == l.addr && *k == l.kind));
    }

    pub fn listeners(&self) -> Vec<Arc<ListenerMetrics>> {
        lock(&self.listeners).clone()
    }
}

/// What the daemon itself counts.
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// When the configuration in force was loaded: seconds since the
    /// epoch, as f64 bits (0: never).
    config_loaded: AtomicU64,
}

impl DaemonMetrics {
    /// A reload finished: applied, or refused (nothing changed).
    pub fn reloaded(&self, ok: bool) {
        add(
            if ok {
                &self.reloads_ok
            } else {
                &self.reloads_failed
            },
            1,
        );
    }

    /// The configuration in force was loaded now.
    pub fn config_loaded(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.config_loaded.store(now.to_bits(), Ordering::Relaxed);
    }

    fn config_loaded_at(&self) -> Option<f64> {
        let bits = self.config_loaded.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }
}

#[derive(Debug, Default)]
struct Inner {
    servers: Mutex<BTreeMap<String, Arc<ServerMetrics>>>,
    daemon: DaemonMetrics,
}

/// Every server's counters, the daemon's, and the process's, encoded on
/// each scrape. Cloning shares it.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// The counters of the server named `name`: the same ones for every
    /// server of that name, so they carry on across a reload.
    pub fn server(&self, name: &str) -> Arc<ServerMetrics> {
        lock(&self.inner.servers)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(ServerMetrics::new(name, true)))
            .clone()
    }

    /// Forgets the servers for which `keep` says no (removed by a reload).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        lock(&self.inner.servers).retain(|name, _| keep(name));
    }

    pub fn servers(&self) -> Vec<Arc<ServerMetrics>> {
        lock(&self.inner.servers).values().cloned().collect()
    }

    pub fn daemon(&self) -> &DaemonMetrics {
        &self.inner.daemon
    }

    /// Everything, in `format`.
    pub fn encode(&self, format: Format) -> String {
        encode::encode(self, format)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
