//! The accept loop of the `thread` and `fork` models: one thread waits on
//! every listener and a waker, and hands each new connection, blocking, to
//! the model.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::ConnKind;
use super::{AcceptFailure, AcceptRetry, Listener, Runtime, Shared};

const WAKER: Token = Token(usize::MAX);

/// What a model does with new connections.
pub(super) trait AcceptHandler {
    /// A new connection, blocking, on a listener whose connections begin
    /// as `kind` says.
    fn accept(&mut self, stream: TcpStream, peer: SocketAddr, kind: &ConnKind);
    /// Called at least every tick while accepting.
    fn tick(&mut self) {}
}

pub(super) struct Acceptor {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<(TcpListener, ConnKind)>,
}

impl Acceptor {
    /// Takes the listeners; the stop closes them.
    pub fn new(listeners: Vec<Listener>) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let listeners: Vec<(TcpListener, ConnKind)> =
            listeners.into_iter().map(|l| (l.socket, l.kind)).collect();
        for (i, (l, _)) in listeners.iter().enumerate() {
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
            // As in the event model: when a retry is due, every listener.
            let ready: Vec<usize> = if retry.take_due(Instant::now()) {
                (0..self.listeners.len()).collect()
            } else {
                events.iter().map(|e| e.token().0).collect()
            };
            for index in ready {
                let Some((listener, kind)) = self.listeners.get(index) else {
                    continue;
                };
                // A stopping server takes no one (see Shared::accept_admitted).
                while !shared.is_stopping() {
                    match listener.accept() {
                        Ok((stream, peer)) => {
                            if let Err(e) = stream.set_nonblocking(false) {
                                log::warn!("server {}: {peer}: {e}", shared.name);
                                continue;
                            }
                            handler.accept(stream, peer, kind);
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
        for (l, _) in self.listeners.drain(..) {
            let _ = self
                .poll
                .registry()
                .deregister(&mut SourceFd(&l.as_raw_fd()));
        }
    }
}
