//! The `thread` model: one thread per connection with blocking I/O, as the
//! seeds' `ThreadingMixIn` server, bounded by `max_connections`.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::acceptor::{AcceptHandler, Acceptor};
use super::blocking::{self, Stream};
use super::conn::ConnKind;
use super::{Listener, Runtime, StreamCtx};
use crate::service::Worker;

/// Connections open now, by id: a copy of each socket, so that the stop can
/// shut down those still open when the grace period ends and so end their
/// threads' blocking reads and writes.
type Open = Arc<Mutex<HashMap<u64, TcpStream>>>;

pub(super) fn spawn(ctx: StreamCtx, listeners: Vec<Listener>) -> io::Result<Runtime> {
    let name = format!("{}-accept", ctx.shared.name);
    Acceptor::spawn(name, listeners, move |acceptor| run(ctx, acceptor))
}

struct Spawner {
    ctx: Arc<StreamCtx>,
    open: Open,
    next_id: u64,
}

impl AcceptHandler for Spawner {
    fn accept(&mut self, stream: TcpStream, peer: SocketAddr, kind: &ConnKind) {
        let ctx = &self.ctx;
        let Some(permit) = ctx.shared.admit(peer) else {
            return;
        };
        self.next_id += 1;
        let id = self.next_id;
        match stream.try_clone() {
            Ok(copy) => {
                lock(&self.open).insert(id, copy);
            }
            Err(e) => {
                // The copy is what a stop shuts down: without one the
                // connection could outlive the grace period.
                log::warn!(
                    "server {}: dropping {peer}: cannot copy its socket for the stop: {e}",
                    ctx.shared.name
                );
                ctx.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let thread_name = format!("{}-{id}", ctx.shared.name);
        let (ctx2, open2, kind) = (ctx.clone(), self.open.clone(), kind.clone());
        let spawned = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let _permit = permit;
                let done = || {
                    lock(&open2).remove(&id);
                    ctx2.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
                };
                // The handshake costs this connection's thread alone.
                let mut stream = match Stream::begin(stream, &kind, ctx2.config.handshake_timeout) {
                    Ok(stream) => stream,
                    Err(failure) => {
                        ctx2.shared.handshake_failed(peer, &failure.reason());
                        return done();
                    }
                };
                if kind.handshakes() {
                    ctx2.shared
                        .stats
                        .tls_handshakes
                        .fetch_add(1, Ordering::Relaxed);
                }
                let name = std::thread::current().name().unwrap_or("thread").to_owned();
                let mut session = ctx2.service.session(Worker::Thread(&name));
                let mut buf = vec![0; 16 * 1024];
                let mut out = Vec::new();
                let ending = blocking::serve(
                    &mut stream,
                    &mut session,
                    ctx2.config.limits.idle_timeout,
                    &mut buf,
                    &mut out,
                );
                ending.log(&ctx2.shared.name, peer);
                done();
            });
        if let Err(e) = spawned {
            log::warn!(
                "server {}: dropping {peer}: cannot start a thread for it: {e}",
                ctx.shared.name
            );
            lock(&self.open).remove(&id);
            ctx.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn lock(open: &Open) -> std::sync::MutexGuard<'_, HashMap<u64, TcpStream>> {
    open.lock().unwrap_or_else(|e| e.into_inner())
}

fn run(ctx: StreamCtx, mut acceptor: Acceptor) {
    let shared = ctx.shared.clone();
    let mut spawner = Spawner {
        ctx: Arc::new(ctx),
        open: Arc::default(),
        next_id: 0,
    };
    acceptor.run(&shared, Duration::from_millis(100), &mut spawner);
    let open = spawner.open;
    // Not accepting any more: let the open connections finish within the grace.
    while !lock(&open).is_empty() && !shared.past_deadline() {
        std::thread::sleep(shared.stop_wait(Duration::from_millis(20)));
    }
    let left: Vec<TcpStream> = lock(&open).drain().map(|(_, s)| s).collect();
    if !left.is_empty() {
        log::info!(
            "server {}: closing {} connection(s) still open after the grace period",
            shared.name,
            left.len()
        );
    }
    for s in &left {
        let _ = s.shutdown(Shutdown::Both);
    }
    // Their threads now see EOF or EPIPE and end; wait for the permits.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while shared.limiter.open() > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}
