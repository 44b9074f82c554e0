//! What a server's runtimes share with the handle that stops it: the stop
//! signal and its deadline, the counters, and admission (the access list
//! and the connection limits, applied once per connection whatever the
//! model), with accepting and its retry after failures, and the log lines
//! that repeat kept to one in a while.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Admission, ConnLimiter, Permit, Stats};
use crate::config::ServerConfig;

/// The outcome of [`Shared::accept_admitted`].
pub(crate) enum Accepted {
    Conn(mio::net::TcpStream, SocketAddr, Permit),
    /// No connection is waiting.
    Drained,
    /// Accepting failed for now: call again after [`ACCEPT_RETRY`].
    RetryLater,
}

/// When a runtime's accepting, which failed for now, is due again.
#[derive(Debug, Default)]
pub(crate) struct AcceptRetry(Option<Instant>);

impl AcceptRetry {
    /// The connection in `accepted`, if any; remembers a `RetryLater`.
    pub fn conn(
        &mut self,
        accepted: Accepted,
    ) -> Option<(mio::net::TcpStream, SocketAddr, Permit)> {
        match accepted {
            Accepted::Conn(stream, peer, permit) => Some((stream, peer, permit)),
            Accepted::Drained => None,
            Accepted::RetryLater => {
                self.later();
                None
            }
        }
    }

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

/// What runtimes share with the handle that stops them.
#[derive(Debug)]
pub(crate) struct Shared {
    pub name: String,
    pub stats: Stats,
    pub limiter: ConnLimiter,
    access: crate::config::AccessList,
    stopping: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    /// Lasting accept failures and refused connections, each logged once
    /// in a while.
    accept_warned: LogEvery,
    refusals_logged: LogEvery,
    handshake_failures_logged: LogEvery,
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
    pub fn new(config: &ServerConfig) -> Shared {
        Shared {
            name: config.name.clone(),
            stats: Stats::default(),
            limiter: ConnLimiter::new(config.limits.max_connections, config.limits.per_source),
            access: config.access.clone(),
            stopping: AtomicBool::new(false),
            deadline: Mutex::new(None),
            accept_warned: LogEvery::new(ACCEPT_WARN_EVERY),
            refusals_logged: LogEvery::new(REFUSAL_LOG_EVERY),
            handshake_failures_logged: LogEvery::new(HANDSHAKE_LOG_EVERY),
        }
    }

    /// Applies the access list and the connection limits to a new peer;
    /// the permit is held for as long as its connection is open.
    pub fn admit(&self, peer: SocketAddr) -> Option<Permit> {
        let refused = |why: &str| {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
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
            return refused("not permitted by allow/deny");
        }
        match self.limiter.try_acquire(peer.ip()) {
            Admission::Admitted(permit) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                Some(permit)
            }
            Admission::Full => refused(&format!(
                "connection limit ({}) reached",
                self.limiter.max()
            )),
            Admission::SourceFull(n) => {
                refused(&format!("per_source ({n}) reached for this address"))
            }
        }
    }

    /// The next connection waiting on a non-blocking listener that the
    /// access list and limits admit, set for low latency.
    pub fn accept_admitted(&self, listener: &mio::net::TcpListener) -> Accepted {
        loop {
            // A stopping server takes no one: on reload its successor shares
            // the listening socket and is already accepting.
            if self.is_stopping() {
                return Accepted::Drained;
            }
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Some(permit) = self.admit(peer) {
                        let _ = stream.set_nodelay(true);
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
    pub fn handshake_failed(&self, peer: SocketAddr, why: &str) {
        self.stats.tls_failures.fetch_add(1, Ordering::Relaxed);
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
