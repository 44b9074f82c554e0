//! Runtimes: they move bytes between sockets and a service, and know
//! nothing of protocols.
//!
//! A server is bound first ([`BoundServer::bind`], or
//! [`BoundServer::from_sockets`] for sockets passed in by systemd), so that a
//! daemon can refuse a configuration whose port is taken before anything
//! starts, and so that tests can bind port 0 and ask which port they got.
//! [`BoundServer::start`] then runs it under its model, and
//! [`RunningServer::stop`] stops it gracefully: no new connections, open ones
//! may finish until the grace period ends, then they are closed.

mod acceptor;
mod blocking;
pub(crate) mod conn;
mod fork;
mod inherited;
mod limits;
mod queue;
pub(crate) mod reactor;
mod room;
mod shared;
mod stream;
mod thread;
mod udp;

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Location, Model, ServerConfig, Transport};
use crate::service::{StreamService, UdpEchoService};
use crate::tls::TlsServer;

use conn::ConnKind;
pub use inherited::close_inherited_sockets;
pub use limits::{Admission, ConnLimiter, Permit};
pub use queue::QueueLimits;
pub use reactor::Inbox;
pub use room::{RoomLimits, RoomRuntime};
pub(crate) use shared::{AcceptFailure, AcceptRetry, Shared};

/// A listener or a server could not be set up.
#[derive(Debug)]
pub struct ServerError {
    pub server: String,
    pub location: Option<Location>,
    pub what: String,
    pub source: io::Error,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        write!(f, "server {}: {}: {}", self.server, self.what, self.source)
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Counters a server keeps, read with [`RunningServer::stats`].
#[derive(Debug, Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub closed: AtomicU64,
    pub datagrams: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_failures: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections refused by a limit or the access list; for UDP,
    /// datagrams the access list refused.
    pub refused: u64,
    /// Connections open now.
    pub open: usize,
    /// Datagrams answered (UDP).
    pub datagrams: u64,
    /// Datagrams dropped by `drop_source_ports` (UDP).
    pub dropped: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS handshakes that failed or did not finish within
    /// `handshake_timeout`.
    pub tls_failures: u64,
}

/// Sockets bound for one server, not yet served.
#[derive(Debug)]
pub enum BoundSockets {
    Tcp(Vec<TcpListener>),
    /// One socket per worker and address (SO_REUSEPORT when there are several).
    Udp(Vec<Vec<UdpSocket>>),
}

/// A server whose sockets are bound but not yet served.
#[derive(Debug)]
pub struct BoundServer {
    config: ServerConfig,
    sockets: BoundSockets,
}

impl BoundServer {
    /// Binds every address in `config.listen`.
    pub fn bind(config: &ServerConfig) -> Result<BoundServer, ServerError> {
        let err = |l: &crate::config::ListenConfig, source| ServerError {
            server: config.name.clone(),
            location: Some(l.location.clone()),
            what: format!("cannot listen on {}", l.addr),
            source,
        };
        let sockets = match config.transport {
            Transport::Tcp => BoundSockets::Tcp(
                config
                    .listen
                    .iter()
                    .map(|l| bind_tcp(l.addr).map_err(|e| err(l, e)))
                    .collect::<Result<_, _>>()?,
            ),
            Transport::Udp => {
                let mut per_addr = Vec::new();
                for l in &config.listen {
                    per_addr.push(bind_udp(l.addr, config.workers).map_err(|e| err(l, e))?);
                }
                BoundSockets::Udp(per_addr)
            }
        };
        Ok(BoundServer {
            config: config.clone(),
            sockets,
        })
    }

    /// Binds every address in `config.listen`, except those for which
    /// `take` gives sockets already bound (passed by systemd, or kept from
    /// the server this one replaces on reload; none: bind here). Sockets
    /// taken must be of the server's transport; a TCP address uses one.
    pub fn bind_using(
        config: &ServerConfig,
        mut take: impl FnMut(&crate::config::ListenConfig) -> Vec<Socket>,
    ) -> Result<BoundServer, ServerError> {
        let err = |l: &crate::config::ListenConfig, source| ServerError {
            server: config.name.clone(),
            location: Some(l.location.clone()),
            what: format!("cannot listen on {}", l.addr),
            source,
        };
        let sockets = match config.transport {
            Transport::Tcp => {
                let mut listeners = Vec::with_capacity(config.listen.len());
                for l in &config.listen {
                    let listener = match take(l).into_iter().next() {
                        Some(socket) => socket.set_nonblocking(true).map(|()| socket.into()),
                        None => bind_tcp(l.addr),
                    };
                    listeners.push(listener.map_err(|e| err(l, e))?);
                }
                BoundSockets::Tcp(listeners)
            }
            Transport::Udp => {
                let mut per_addr = Vec::with_capacity(config.listen.len());
                for l in &config.listen {
                    let taken = take(l);
                    let sockets = if taken.is_empty() {
                        bind_udp(l.addr, config.workers)
                    } else {
                        taken
                            .into_iter()
                            .map(|s| s.set_nonblocking(true).map(|()| s.into()))
                            .collect()
                    };
                    per_addr.push(sockets.map_err(|e| err(l, e))?);
                }
                BoundSockets::Udp(per_addr)
            }
        };
        Ok(BoundServer {
            config: config.clone(),
            sockets,
        })
    }

    /// Uses sockets bound elsewhere (systemd's socket activation, or a
    /// caller that bound them itself). They must match the transport.
    pub fn from_sockets(
        config: &ServerConfig,
        sockets: BoundSockets,
    ) -> Result<BoundServer, ServerError> {
        let matches = matches!(
            (&sockets, config.transport),
            (BoundSockets::Tcp(_), Transport::Tcp) | (BoundSockets::Udp(_), Transport::Udp)
        );
        if !matches {
            return Err(ServerError {
                server: config.name.clone(),
                location: None,
                what: "passed sockets do not match the server's transport".into(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            });
        }
        Ok(BoundServer {
            config: config.clone(),
            sockets,
        })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The addresses actually bound (with the port the kernel chose for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        match &self.sockets {
            BoundSockets::Tcp(ls) => ls.iter().filter_map(|l| l.local_addr().ok()).collect(),
            BoundSockets::Udp(per_addr) => per_addr
                .iter()
                .filter_map(|socks| socks.first()?.local_addr().ok())
                .collect(),
        }
    }

    /// A copy of each listening socket, by address.
    fn copies(&self) -> io::Result<Vec<(SocketAddr, Socket)>> {
        let mut out = Vec::new();
        match &self.sockets {
            BoundSockets::Tcp(ls) => {
                for l in ls {
                    out.push((l.local_addr()?, Socket::from(l.try_clone()?)));
                }
            }
            BoundSockets::Udp(per_addr) => {
                // Every worker's socket: on reload each is handed over, so
                // no datagram the kernel queued on one is lost.
                for s in per_addr.iter().flatten() {
                    out.push((s.local_addr()?, Socket::from(s.try_clone()?)));
                }
            }
        }
        Ok(out)
    }

    /// Starts serving `hosted` under the configured model, listener `i`
    /// with TLS when `tls[i]` is given (a missing entry is plain TCP).
    pub fn start(
        self,
        hosted: Hosted,
        tls: Vec<Option<Arc<TlsServer>>>,
    ) -> Result<RunningServer, ServerError> {
        let addrs = self.local_addrs();
        let kept = self.copies().map_err(|source| ServerError {
            server: self.config.name.clone(),
            location: None,
            what: "cannot keep a copy of its listeners".into(),
            source,
        })?;
        let config = self.config;
        let shared = Arc::new(Shared::new(&config));
        let err = |source| ServerError {
            server: config.name.clone(),
            location: None,
            what: "cannot start".into(),
            source,
        };
        let mismatch = |what: &str| {
            err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what}, which its sockets cannot serve"),
            ))
        };
        let mut udp_service = None;
        let tls_servers = tls.clone();
        let runtime = match (self.sockets, hosted) {
            (BoundSockets::Udp(per_addr), Hosted::Datagram(service)) => {
                udp_service = Some(service.clone());
                udp::spawn(&shared, service, per_addr, config.workers).map_err(err)?
            }
            (BoundSockets::Tcp(sockets), hosted) => {
                let mut tls = tls.into_iter();
                let listeners: Vec<Listener> = sockets
                    .into_iter()
                    .map(|socket| Listener {
                        socket,
                        kind: tls.next().flatten().map_or(ConnKind::Plain, ConnKind::Tls),
                    })
                    .collect();
                match hosted {
                    Hosted::Room(room) => room
                        .start(
                            &shared,
                            listeners,
                            config.limits.idle_timeout,
                            config.handshake_timeout,
                        )
                        .map_err(err)?,
                    Hosted::Stream(service) => {
                        let ctx = StreamCtx {
                            shared: shared.clone(),
                            service,
                            config: config.clone(),
                        };
                        match config.model {
                            Model::Event => {
                                stream::spawn(ctx, listeners, config.workers).map_err(err)?
                            }
                            Model::Thread => thread::spawn(ctx, listeners).map_err(err)?,
                            Model::Fork => fork::spawn(ctx, listeners).map_err(err)?,
                        }
                    }
                    Hosted::Datagram(_) => return Err(mismatch("a datagram service")),
                }
            }
            (BoundSockets::Udp(_), _) => return Err(mismatch("a stream service")),
        };
        Ok(RunningServer {
            shared,
            runtime,
            addrs,
            config,
            udp_service,
            tls: tls_servers,
            kept: Mutex::new(kept),
        })
    }
}

/// What a server runs: a service of the kind its sockets can serve.
pub enum Hosted {
    /// Each connection has its own session, under the server's model.
    Stream(StreamService),
    /// Every connection shares one room, on one reactor.
    Room(RoomRuntime),
    /// Each datagram is answered on its own.
    Datagram(UdpEchoService),
}

/// A listening socket, and how its connections begin.
pub(crate) struct Listener {
    pub socket: TcpListener,
    pub kind: ConnKind,
}

/// What a TCP runtime needs: the service, the limits, the stop signal.
pub(crate) struct StreamCtx {
    pub shared: Arc<Shared>,
    pub service: StreamService,
    pub config: ServerConfig,
}

/// An error setting up worker `i` of `n`, saying which.
fn worker_error(e: io::Error, i: usize, n: usize) -> io::Error {
    io::Error::new(e.kind(), format!("set up worker {} of {n}: {e}", i + 1))
}

/// The threads of a runtime and how to wake them.
pub(crate) struct Runtime {
    threads: Vec<JoinHandle<()>>,
    wakers: Vec<Arc<mio::Waker>>,
}

impl Runtime {
    /// Starts one thread per worker: its name, the waker of its poll, and
    /// its loop, which ends once `shared` is stopping. All or nothing: when
    /// a thread cannot be started, those already running are stopped and
    /// joined, so a failed start leaves nothing serving the port.
    fn start_all<F>(
        shared: &Shared,
        workers: Vec<(String, Arc<mio::Waker>, F)>,
    ) -> io::Result<Runtime>
    where
        F: FnOnce() + Send + 'static,
    {
        let mut runtime = Runtime {
            threads: Vec::with_capacity(workers.len()),
            wakers: Vec::with_capacity(workers.len()),
        };
        for (name, waker, run) in workers {
            match std::thread::Builder::new().name(name.clone()).spawn(run) {
                Ok(thread) => {
                    runtime.threads.push(thread);
                    runtime.wakers.push(waker);
                }
                Err(e) => {
                    shared.abort();
                    for w in &runtime.wakers {
                        let _ = w.wake();
                    }
                    for t in runtime.threads {
                        let _ = t.join();
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!("start thread {name}: {e}"),
                    ));
                }
            }
        }
        Ok(runtime)
    }
}

/// Begins or shortens a server's stop: see [`RunningServer::stopper`].
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
    wakers: Vec<Arc<mio::Waker>>,
}

impl Stopper {
    /// Stops accepting at once; open connections may finish within
    /// `grace`. A second call may shorten the grace, never lengthen it.
    pub fn begin_stop(&self, grace: Duration) {
        self.shared.begin_stop(grace);
        for w in &self.wakers {
            if let Err(e) = w.wake() {
                log::warn!(
                    "server {}: cannot wake a worker to stop: {e}",
                    self.shared.name
                );
            }
        }
    }
}

/// Reads a server's counters; see [`RunningServer::stats_reader`].
#[derive(Clone)]
pub struct StatsReader {
    shared: Arc<Shared>,
    udp_service: Option<crate::service::UdpEchoService>,
}

impl StatsReader {
    pub fn snapshot(&self) -> StatsSnapshot {
        let s = &self.shared.stats;
        StatsSnapshot {
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            open: self.shared.limiter.open(),
            datagrams: s.datagrams.load(Ordering::Relaxed),
            dropped: self.udp_service.as_ref().map_or(0, |u| u.dropped()),
            tls_handshakes: s.tls_handshakes.load(Ordering::Relaxed),
            tls_failures: s.tls_failures.load(Ordering::Relaxed),
        }
    }
}

/// A server being served. Dropping it stops it at once (no grace).
pub struct RunningServer {
    shared: Arc<Shared>,
    runtime: Runtime,
    addrs: Vec<SocketAddr>,
    config: ServerConfig,
    udp_service: Option<crate::service::UdpEchoService>,
    /// Each listener's TLS, replaceable while it serves.
    tls: Vec<Option<Arc<TlsServer>>>,
    /// A copy of each listening socket, so that a reload can hand them to the
    /// server replacing this one: its port never stops listening. Closed
    /// when the stop begins.
    kept: Mutex<Vec<(SocketAddr, Socket)>>,
}

impl RunningServer {
    /// New copies of the sockets bound to `addr` (one for TCP, each
    /// worker's for UDP), for a server that takes over from this one (see
    /// [`BoundServer::bind_using`]); none once it is stopping.
    pub fn listener_copies(&self, addr: SocketAddr) -> Vec<Socket> {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.iter()
            .filter(|(a, _)| *a == addr)
            .filter_map(|(_, s)| s.try_clone().ok())
            .collect()
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// From now on, listener `i`'s handshakes use `tls[i]`; connections
    /// open go on with what they began with. Listeners without TLS, and
    /// `None`s, are left as they are. Returns how many were replaced.
    pub fn replace_tls(&self, tls: Vec<Option<Arc<rustls::ServerConfig>>>) -> usize {
        let mut replaced = 0;
        for (server, config) in self.tls.iter().zip(tls) {
            if let (Some(server), Some(config)) = (server, config) {
                server.replace(config);
                replaced += 1;
            }
        }
        replaced
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats_reader().snapshot()
    }

    /// What reads this server's counters, during its run and after its
    /// stop: the final figures stay readable once the server is gone.
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            shared: self.shared.clone(),
            udp_service: self.udp_service.clone(),
        }
    }

    /// Stops accepting at once; open connections may finish within `grace`,
    /// then are closed. Returns without waiting: see [`RunningServer::join`].
    pub fn begin_stop(&self, grace: Duration) {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.stopper().begin_stop(grace);
    }

    /// What can begin or shorten this server's stop from elsewhere, while
    /// another thread waits in [`RunningServer::join`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.shared.clone(),
            wakers: self.runtime.wakers.clone(),
        }
    }

    /// Waits until every worker has finished (after [`RunningServer::begin_stop`]).
    pub fn join(mut self) {
        self.join_threads();
    }

    /// Stops gracefully and waits: [`RunningServer::begin_stop`] then [`RunningServer::join`].
    pub fn stop(self, grace: Duration) {
        self.begin_stop(grace);
        self.join();
    }

    fn join_threads(&mut self) {
        for t in self.runtime.threads.drain(..) {
            if t.join().is_err() {
                log::error!("server {}: a worker thread panicked", self.shared.name);
            }
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if !self.runtime.threads.is_empty() {
            self.begin_stop(Duration::ZERO);
            self.join_threads();
        }
    }
}

fn domain(addr: &SocketAddr) -> Domain {
    if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(domain(&addr), Type::STREAM, Some(Protocol::TCP))?;
    // Restart without waiting for TIME_WAIT to clear, as every daemon does.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // "[::]:7" and "0.0.0.0:7" can then both be listened on.
        socket.set_only_v6(true)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn bind_udp(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
    if workers > 1 && addr.port() != 0 {
        // SO_REUSEPORT lets a socket join any group of the same user on
        // that address, another server's included, and the kernel would
        // split the datagrams between them. A plain bind first says
        // whether the address is free, as it does for workers = 1; a
        // netlab group bound since is found the same way by the next.
        let probe = Socket::new(domain(&addr), Type::DGRAM, Some(Protocol::UDP))?;
        if addr.is_ipv6() {
            probe.set_only_v6(true)?;
        }
        probe.bind(&SockAddr::from(addr))?;
    }
    let mut sockets: Vec<UdpSocket> = Vec::with_capacity(workers);
    let mut addr = addr;
    for _ in 0..workers.max(1) {
        let socket = Socket::new(domain(&addr), Type::DGRAM, Some(Protocol::UDP))?;
        if workers > 1 {
            // The kernel spreads datagrams over the workers' sockets.
            socket.set_reuse_port(true)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.bind(&SockAddr::from(addr))?;
        socket.set_nonblocking(true)?;
        let socket: UdpSocket = socket.into();
        // Port 0: the others join whatever port the first one got.
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}
