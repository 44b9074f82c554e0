//! The `event` model: a stream service (echo, count) on one reactor per
//! worker thread. Every worker polls every listener (the kernel hands each
//! new connection to one of them), so there is no acceptor thread to hop
//! through; each connection has its own session of the service.

use std::io;
use std::sync::Arc;

use super::conn::{Conn, Connection};
use super::reactor::{Conns, Ending, Host, Mailbox, Reactor, Settings, Wrap};
use super::{Listener, Runtime, Shared, StreamCtx};
use crate::service::{Session, StreamService, StreamSession, Worker};

pub(super) fn spawn(
    ctx: StreamCtx,
    listeners: Vec<Listener>,
    workers: usize,
) -> io::Result<Runtime> {
    let ctx = Arc::new(ctx);
    // Every worker is built before any runs: the fallible part (polls,
    // wakers, listener copies) then cannot leave half a server behind.
    let mut ready = Vec::with_capacity(workers.max(1));
    for i in 0..workers.max(1) {
        let in_worker = |e: io::Error| super::worker_error(e, i, workers);
        let mut mine = Vec::with_capacity(listeners.len());
        for l in &listeners {
            let copy = l.socket.try_clone().map_err(in_worker)?;
            let kind = l.kind.clone();
            let wrap: Wrap<Connection> = Box::new(move |stream| kind.wrap(stream));
            mine.push((
                mio::net::TcpListener::from_std(copy),
                wrap,
                l.kind.handshakes(),
            ));
        }
        let name = format!("{}-ev{i}", ctx.shared.name);
        let host = StreamHost {
            service: ctx.service.clone(),
            worker: name.clone(),
            scratch: Vec::new(),
            shared: ctx.shared.clone(),
        };
        let settings = Settings {
            name: name.clone(),
            idle_timeout: ctx.config.limits.idle_timeout,
            handshake_timeout: ctx.config.handshake_timeout,
            limits: super::QueueLimits::NONE,
        };
        let mailbox = Mailbox::new(1).map_err(in_worker)?;
        let reactor =
            Reactor::new(ctx.shared.clone(), mine, host, settings, mailbox).map_err(in_worker)?;
        ready.push((name, reactor.waker(), move || reactor.run()));
    }
    Runtime::start_all(&ctx.shared, ready)
}

/// Hosts one session of the service per connection.
pub(crate) struct StreamHost {
    service: StreamService,
    /// The worker thread's name, for services that tag their replies.
    worker: String,
    /// Where a session writes its reply, before it is offered.
    scratch: Vec<u8>,
    shared: Arc<Shared>,
}

impl StreamHost {
    /// Offers what the session wrote; closes after it on an error.
    fn answer<C: Conn>(
        &mut self,
        conns: &mut Conns<C, StreamSession>,
        key: usize,
        result: Result<(), crate::service::ProtocolError>,
    ) {
        if !self.scratch.is_empty() {
            conns.send(key, &self.scratch, 1);
        }
        if let Err(e) = result {
            if let Some(slot) = conns.get(key) {
                log::debug!("server {}: closing {}: {e}", self.shared.name, slot.peer);
            }
            conns.close_after_flush(key);
        }
    }
}

impl<C: Conn> Host<C> for StreamHost {
    type State = StreamSession;
    type Message = ();
    const OUTPUT_IS_ACTIVITY: bool = true;
    const PAUSE_READING_AT: usize = 1024 * 1024;

    fn open(
        &mut self,
        _key: usize,
        _listener: usize,
        _peer: std::net::SocketAddr,
    ) -> StreamSession {
        self.service.session(Worker::Thread(&self.worker))
    }

    fn received(&mut self, conns: &mut Conns<C, StreamSession>, key: usize, bytes: &[u8]) {
        let Some(slot) = conns.get_mut(key) else {
            return;
        };
        self.scratch.clear();
        let result = slot.state.on_data(bytes, &mut self.scratch);
        self.answer(conns, key, result);
    }

    fn peer_closed(&mut self, conns: &mut Conns<C, StreamSession>, key: usize) {
        let Some(slot) = conns.get_mut(key) else {
            return;
        };
        self.scratch.clear();
        let result = slot.state.on_eof(&mut self.scratch);
        self.answer(conns, key, result);
        // RFC 862: everything answered, then this side closes too.
        conns.close_after_flush(key);
    }

    fn closed(&mut self, _: &mut Conns<C, StreamSession>, _: usize, _: StreamSession, _: Ending) {}
}
