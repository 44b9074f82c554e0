//! What a server's runtimes share with the handle that stops it: the stop
//! signal and its deadline, the counters, and admission (the access list,
//! the rate per source and the connection limits, applied once per
//! connection whatever the model, after the PROXY header when there is
//! one), with accepting and its retry after failures, and the log lines
//! that repeat kept to one in a while.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::limits::SourceRates;
use super::{Admission, ConnLimiter, Permit, Stats};
use crate::config::{ProxyConfig, ServerConfig};
use crate::metrics::{self, Dropped, ListenerMetrics, Refusal, ServerMetrics};

/// The outcome of [`Shared::accept_admitted`].
pub(crate) enum Accepted {
    Conn(mio::net::TcpStream, SocketAddr, Permit),
    /// From a balancer in `proxy_from`: admitted once its PROXY header
    /// says who the client is.
    Proxied(mio::net::TcpStream, SocketAddr),
    /// No connection is waiting.
    Drained,
    /// Accepting failed for now: call again after [`ACCEPT_RETRY`].
    RetryLater,
}

/// When a runtime's accepting, which failed for now, is due again.
#[derive(Debug, Default)]
pub(crate) struct AcceptRetry(Option<Instant>);

impl AcceptRetry {
    /// Accepting failed for now: try again after [`ACCEPT_RETRY`].
    pub fn later(&mut self) {
        self.0 = Some(Instant::now() + ACCEPT_RETRY);
    }

    /// Shortens a poll timeout so the loop wakes when the retry is due.
    pub fn cap(&self, timeout: Option<Duration>) -> Option<Duration> {
        match self.0 {
            None => timeout,
            Some(at) => {
                let wait = at.saturating_duration_since(Instant::now());
                Some(timeout.map_or(wait, |t| t.min(wait)))
            }
        }
    }

    /// Whether accepting is due again now (and no longer pending if so).
    pub fn take_due(&mut self, now: Instant) -> bool {
        let due = self.0.is_some_and(|at| now >= at);
        if due {
            self.0 = None;
        }
        due
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AcceptFailure {
    /// Only that connection failed: accept the next one now.
    NextConnection,
    /// Try again after [`ACCEPT_RETRY`].
    RetryLater,
}

/// How soon accepting is tried again after it failed for want of
/// descriptors or memory (nginx waits 500 ms; connections queue meanwhile).
pub(crate) const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How often refused connections are logged at info level.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often a lasting accept failure is logged.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);
/// How often failed TLS handshakes are logged at info level.
const HANDSHAKE_LOG_EVERY: Duration = Duration::from_secs(10);
/// How often refused PROXY headers, and datagrams over the rate, are
/// logged at info level.
const PROXY_LOG_EVERY: Duration = Duration::from_secs(10);
const DATAGRAM_LOG_EVERY: Duration = Duration::from_secs(10);

/// What runtimes share with the handle that stops them.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub stats: Stats,
    /// The counters the registry shows (shared with the servers of this
    /// name before and after a reload).
    pub metrics: Arc<ServerMetrics>,
    pub limiter: ConnLimiter,
    access: crate::config::AccessList,
    rates: Option<SourceRates>,
    /// The balancers whose PROXY headers are believed, if any.
    pub proxy: Option<ProxyConfig>,
    /// How long a TLS handshake, or a PROXY header, may take.
    pub handshake_timeout: Duration,
    /// `TCP_NODELAY` on every connection accepted.
    pub tcp_nodelay: bool,
    stopping: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    /// Lasting accept failures and refused connections, each logged once
    /// in a while.
    accept_warned: LogEvery,
    refusals_logged: LogEvery,
    handshake_failures_logged: LogEvery,
    proxy_failures_logged: LogEvery,
    datagram_drops_logged: LogEvery,
}

/// Lets a repeated log line through at most once per `every`, counting the
/// times it was held back.
#[derive(Debug)]
pub(crate) struct LogEvery {
    every: Duration,
    /// When the line was last let through, and how many held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    pub fn new(every: Duration) -> LogEvery {
        LogEvery {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last one)` when the line is due now.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if state
            .0
            .is_none_or(|at| now.duration_since(at) >= self.every)
        {
            let held = state.1;
            *state = (Some(now), 0);
            Some(held)
        } else {
            state.1 += 1;
            None
        }
    }
}

impl Shared {
    pub fn new(config: &ServerConfig, metrics: Arc<ServerMetrics>) -> Shared {
        Shared {
            name: config.name.clone(),
            stats: Stats::default(),
            metrics,
            limiter: ConnLimiter::new(config.limits.max_connections, config.limits.per_source),
            access: config.access.clone(),
            rates: config.rate.as_ref().map(SourceRates::new),
            proxy: config.proxy.clone(),
            handshake_timeout: config.handshake_timeout,
            tcp_nodelay: config.tcp_nodelay,
            stopping: AtomicBool::new(false),
            deadline: Mutex::new(None),
            accept_warned: LogEvery::new(ACCEPT_WARN_EVERY),
            refusals_logged: LogEvery::new(REFUSAL_LOG_EVERY),
            handshake_failures_logged: LogEvery::new(HANDSHAKE_LOG_EVERY),
            proxy_failures_logged: LogEvery::new(PROXY_LOG_EVERY),
            datagram_drops_logged: LogEvery::new(DATAGRAM_LOG_EVERY),
        }
    }

    /// Applies the access list, the rate and the connection limits to a
    /// new peer (the client a PROXY header named, if any), counting it on
    /// listener `on` for worker `worker`; the permit is held for as long as
    /// its connection is open.
    pub fn admit(&self, peer: SocketAddr, on: &ListenerMetrics, worker: usize) -> Option<Permit> {
        let refused = |reason: Refusal, why: &str| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            on.refused(reason);
            // One line per refusal would let a port scan or a flood from a
            // denied network fill the log: at most one a while, the rest
            // counted in it (all of them at debug).
            match self.refusals_logged.due() {
                Some(0) => log::info!("server {}: refused {peer}: {why}", self.name),
                Some(more) => log::info!(
                    "server {}: refused {peer}: {why} (and {more} more refusal(s) in the last {} s)",
                    self.name,
                    REFUSAL_LOG_EVERY.as_secs()
                ),
                None => log::debug!("server {}: refused {peer}: {why}", self.name),
            }
            None
        };
        if !self.permits(peer.ip()) {
            return refused(Refusal::Deny, "not permitted by allow/deny");
        }
        if let Some(rates) = &self.rates
            && !rates.admit(peer.ip(), Instant::now())
        {
            return refused(Refusal::Rate, "over rate for its source");
        }
        match self.limiter.try_acquire(peer.ip()) {
            Admission::Admitted(permit) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                metrics::add(&on.shard(worker).accepted, 1);
                Some(permit)
            }
            Admission::Full => refused(
                Refusal::MaxConnections,
                &format!("connection limit ({}) reached", self.limiter.max()),
            ),
            Admission::SourceFull(n) => refused(
                Refusal::PerSource,
                &format!("per_source ({n}) reached for this address"),
            ),
        }
    }

    /// Whether a datagram from `from` is to be answered: `Err` says why
    /// not (counted by the caller; logged here once in a while).
    pub fn admit_datagram(&self, from: IpAddr, now: Instant) -> Result<(), Dropped> {
        if !self.permits(from) {
            // Counted, not logged: a flood would flood the log.
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Dropped::Deny);
        }
        if let Some(rates) = &self.rates
            && !rates.admit(from, now)
        {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(more) = self.datagram_drops_logged.due() {
                log::info!(
                    "server {}: dropping datagrams from {from}: over rate for its source ({more} more dropped in the last {} s)",
                    self.name,
                    DATAGRAM_LOG_EVERY.as_secs()
                );
            }
            return Err(Dropped::Rate);
        }
        Ok(())
    }

    /// Counts and logs (once in a while) a connection closed for its PROXY
    /// header: missing, malformed, late, or from an untrusted address.
    pub fn proxy_failed(&self, peer: SocketAddr, why: &str, on: &ListenerMetrics) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        on.refused(Refusal::Proxy);
        match self.proxy_failures_logged.due() {
            Some(0) => log::info!("server {}: closing {peer}: {why}", self.name),
            Some(more) => log::info!(
                "server {}: closing {peer}: {why} (and {more} more PROXY refusal(s) in the last {} s)",
                self.name,
                PROXY_LOG_EVERY.as_secs()
            ),
            None => log::debug!("server {}: closing {peer}: {why}", self.name),
        }
    }

    /// For a server with `proxy_protocol`: whether `peer` may send a
    /// header (else it is closed, counted and logged here).
    pub fn proxy_trusted(&self, peer: SocketAddr, on: &ListenerMetrics) -> bool {
        match &self.proxy {
            Some(p) if p.trusts(peer.ip()) => true,
            Some(_) => {
                self.proxy_failed(
                    peer,
                    "not in proxy_from, so not allowed to send a PROXY header",
                    on,
                );
                false
            }
            None => true,
        }
    }

    /// The next connection waiting on a non-blocking listener that the
    /// access list and limits admit, with `tcp_nodelay` as configured; with
    /// `proxy_protocol`, the next from a trusted balancer, to be admitted
    /// once its header is read.
    pub fn accept_admitted(
        &self,
        listener: &mio::net::TcpListener,
        on: &ListenerMetrics,
        worker: usize,
    ) -> Accepted {
        loop {
            // A stopping server takes no one: on reload its successor shares
            // the listening socket and is already accepting.
            if self.is_stopping() {
                return Accepted::Drained;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if self.proxy.is_some() {
                        if self.proxy_trusted(peer, on) {
                            let _ = stream.set_nodelay(self.tcp_nodelay);
                            return Accepted::Proxied(stream, peer);
                        }
                    } else if let Some(permit) = self.admit(peer, on, worker) {
                        let _ = stream.set_nodelay(self.tcp_nodelay);
                        return Accepted::Conn(stream, peer, permit);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Accepted::Drained,
                Err(e) => {
                    if self.accept_failed(&e) == AcceptFailure::RetryLater {
                        return Accepted::RetryLater;
                    }
                }
            }
        }
    }

    /// What an accept error means for the loop that got it; logged, at
    /// most once per [`ACCEPT_WARN_EVERY`] while it lasts.
    ///
    /// Readiness is edge-triggered: a loop that gives up on an error is not
    /// told again about the connections still queued until a new one
    /// arrives, so they would hang. A loop either goes on at once (the
    /// error was that connection's alone) or tries again after
    /// [`ACCEPT_RETRY`] (out of descriptors or memory, or an error it does
    /// not know, which retrying at once could turn into a busy loop).
    pub fn accept_failed(&self, e: &io::Error) -> AcceptFailure {
        use nix::errno::Errno;
        // accept(2): these are the connection's own network errors, to be
        // treated "like EAGAIN by retrying"; ECONNABORTED is a peer that
        // left before it was accepted.
        const CONNECTION_ERRORS: [Errno; 10] = [
            Errno::EINTR,
            Errno::ECONNABORTED,
            Errno::EPROTO,
            Errno::ENETDOWN,
            Errno::ENOPROTOOPT,
            Errno::EHOSTDOWN,
            Errno::ENONET,
            Errno::EHOSTUNREACH,
            Errno::EOPNOTSUPP,
            Errno::ENETUNREACH,
        ];
        let errno = e.raw_os_error().map(Errno::from_raw);
        if errno.is_some_and(|n| CONNECTION_ERRORS.contains(&n)) {
            if errno != Some(Errno::EINTR) {
                log::debug!(
                    "server {}: a connection failed before accept: {e}",
                    self.name
                );
            }
            return AcceptFailure::NextConnection;
        }
        if self.accept_warned.due().is_some() {
            log::warn!(
                "server {}: accept failed: {e}; waiting connections are retried every {} ms",
                self.name,
                ACCEPT_RETRY.as_millis()
            );
        }
        AcceptFailure::RetryLater
    }

    /// Counts a TLS handshake that failed, and logs it once in a while
    /// with the peer and the reason (every one at debug).
    pub fn handshake_failed(&self, peer: SocketAddr, why: &str, on: &ListenerMetrics) {
        self.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
        on.refused(Refusal::Handshake);
        match self.handshake_failures_logged.due() {
            Some(0) => log::info!(
                "server {}: TLS handshake with {peer} failed: {why}",
                self.name
            ),
            Some(more) => log::info!(
                "server {}: TLS handshake with {peer} failed: {why} (and {more} more in the last {} s)",
                self.name,
                HANDSHAKE_LOG_EVERY.as_secs()
            ),
            None => log::debug!(
                "server {}: TLS handshake with {peer} failed: {why}",
                self.name
            ),
        }
    }

    /// Whether `allow`/`deny` let `ip` in.
    pub fn permits(&self, ip: std::net::IpAddr) -> bool {
        self.access.permits(ip)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// When open connections are closed: `None` until a stop begins.
    pub fn deadline(&self) -> Option<Instant> {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long a runtime should sleep while stopping, at most `tick`.
    pub fn stop_wait(&self, tick: Duration) -> Duration {
        self.deadline().map_or(tick, |d| {
            d.saturating_duration_since(Instant::now()).min(tick)
        })
    }

    pub fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Stops accepting; open connections may finish within `grace`. A
    /// second call may shorten the grace, never lengthen it.
    pub fn begin_stop(&self, grace: Duration) {
        {
            let mut deadline = self.deadline.lock().unwrap_or_else(|e| e.into_inner());
            let new = crate::deadline::after(grace);
            *deadline = Some(deadline.map_or(new, |d| d.min(new)));
        }
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops at once, no grace: for a start that failed halfway.
    pub fn abort(&self) {
        *self.deadline.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.stopping.store(true, Ordering::Release);
    }
}
