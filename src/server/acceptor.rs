//! The accept loop of the `thread` and `fork` models: one thread waits on
//! every listener and a waker, and hands each new connection, blocking, to
//! the model. With `proxy_protocol`, connections wait here, non-blocking,
//! for their PROXY header first (a slow balancer holds no thread).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::ConnKind;
use super::proxy::{Outcome, ProxyWait};
use super::{AcceptFailure, AcceptRetry, Listener, Runtime, Shared};
use crate::metrics::ListenerMetrics;

const WAKER: Token = Token(usize::MAX);
/// Tokens from here up (below the waker's) wait for a PROXY header.
const PROXY_BASE: usize = usize::MAX / 2;

/// What a model does with new connections.
pub(super) trait AcceptHandler {
    /// A new connection, blocking, from `peer` (the client a PROXY header
    /// named, if any) on a listener whose connections begin as `kind`
    /// says, counted in `metrics`.
    fn accept(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        kind: &ConnKind,
        metrics: &Arc<ListenerMetrics>,
    );
    /// Called at least every tick while accepting.
    fn tick(&mut self) {}
}

pub(super) struct Acceptor {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<(TcpListener, ConnKind, Arc<ListenerMetrics>)>,
    /// Each listener's, kept after a stop closes the listeners.
    meters: Vec<Arc<ListenerMetrics>>,
    kinds: Vec<ConnKind>,
}

impl Acceptor {
    /// Takes the listeners; the stop closes them.
    pub fn new(listeners: Vec<Listener>) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let listeners: Vec<(TcpListener, ConnKind, Arc<ListenerMetrics>)> = listeners
            .into_iter()
            .map(|l| (l.socket, l.kind, l.metrics))
            .collect();
        let meters = listeners.iter().map(|(_, _, m)| m.clone()).collect();
        let kinds = listeners.iter().map(|(_, k, _)| k.clone()).collect();
        for (i, (l, _, _)) in listeners.iter().enumerate() {
            l.set_nonblocking(true)?;
            poll.registry().register(
                &mut SourceFd(&l.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )?;
        }
        Ok(Acceptor {
            poll,
            waker,
            listeners,
            meters,
            kinds,
        })
    }

    /// Runs `run` with an acceptor over `listeners` on a thread of its own:
    /// how the `thread` and `fork` models start.
    pub fn spawn(
        thread_name: String,
        listeners: Vec<Listener>,
        run: impl FnOnce(Acceptor) + Send + 'static,
    ) -> io::Result<Runtime> {
        let acceptor = Acceptor::new(listeners)?;
        let waker = acceptor.waker.clone();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || run(acceptor))?;
        Ok(Runtime {
            threads: vec![thread],
            wakers: vec![waker],
        })
    }

    /// Accepts until the server stops, handing each new connection to
    /// `handler`. The listeners are closed when it returns.
    pub fn run(&mut self, shared: &Shared, tick: Duration, handler: &mut impl AcceptHandler) {
        let mut events = Events::with_capacity(64);
        let mut retry = AcceptRetry::default();
        let mut proxies = shared
            .proxy
            .as_ref()
            .map(|_| ProxyWait::new(PROXY_BASE, shared.handshake_timeout, shared.limiter.max()));
        while !shared.is_stopping() {
            if let Err(e) = self.poll.poll(&mut events, retry.cap(Some(tick))) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!(
                    "server {}: poll failed, no longer accepting: {e}",
                    shared.name
                );
                break;
            }
            let now = Instant::now();
            if let Some(p) = &mut proxies {
                for event in events.iter() {
                    if p.owns(event.token()) {
                        let outcome = p.readable(self.poll.registry(), event.token());
                        self.proxied(shared, outcome, handler);
                    }
                }
                for (peer, listener) in p.sweep(self.poll.registry(), now) {
                    let why = format!(
                        "no whole PROXY header within {}",
                        humantime::format_duration(p.timeout)
                    );
                    shared.proxy_failed(peer, &why, &self.meters[listener]);
                }
            }
            // As in the event model: when a retry is due, every listener.
            let ready: Vec<usize> = if retry.take_due(now) {
                (0..self.listeners.len()).collect()
            } else {
                events
                    .iter()
                    .map(|e| e.token().0)
                    .filter(|&t| t < self.listeners.len())
                    .collect()
            };
            for index in ready {
                // A stopping server takes no one (see Shared::accept_admitted).
                while !shared.is_stopping() {
                    let Some((listener, kind, meter)) = self.listeners.get(index) else {
                        break;
                    };
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            if let Some(p) = &mut proxies {
                                if !shared.proxy_trusted(peer, meter) {
                                    continue;
                                }
                                if p.is_full() {
                                    shared.proxy_failed(
                                        peer,
                                        "too many connections waiting for their PROXY header",
                                        meter,
                                    );
                                    continue;
                                }
                                if let Err(e) = stream.set_nonblocking(true) {
                                    log::warn!("server {}: {peer}: {e}", shared.name);
                                    continue;
                                }
                                let stream = mio::net::TcpStream::from_std(stream);
                                let outcome = p.add(self.poll.registry(), stream, peer, index, now);
                                self.proxied(shared, outcome, handler);
                                continue;
                            }
                            if let Err(e) = stream.set_nonblocking(false) {
                                log::warn!("server {}: {peer}: {e}", shared.name);
                                continue;
                            }
                            let _ = stream.set_nodelay(shared.tcp_nodelay);
                            handler.accept(stream, peer, kind, meter);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            if shared.accept_failed(&e) == AcceptFailure::RetryLater {
                                retry.later();
                                break;
                            }
                        }
                    }
                }
            }
            handler.tick();
        }
        for (l, _, _) in self.listeners.drain(..) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.as_raw_fd()));
        }
        if let Some(p) = &mut proxies {
            p.clear(self.poll.registry());
        }
    }

    /// A PROXY header's outcome: the connection goes to the model as from
    /// the client it names, or is closed with one log line.
    fn proxied(&self, shared: &Shared, outcome: Outcome, handler: &mut impl AcceptHandler) {
        match outcome {
            Outcome::Waiting => {}
            Outcome::Failed {
                peer,
                listener,
                why,
            } => shared.proxy_failed(peer, &why, &self.meters[listener]),
            Outcome::Ready {
                stream,
                client,
                listener,
            } => {
                // SAFETY: the descriptor is the stream's own, handed over.
                let stream = unsafe { TcpStream::from_raw_fd(stream.into_raw_fd()) };
                if let Err(e) = stream.set_nonblocking(false) {
                    log::warn!("server {}: {client}: {e}", shared.name);
                    return;
                }
                let _ = stream.set_nodelay(shared.tcp_nodelay);
                handler.accept(
                    stream,
                    client,
                    &self.kinds[listener],
                    &self.meters[listener],
                );
            }
        }
    }
}
