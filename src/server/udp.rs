//! UDP servers: one socket loop per worker (each worker its own socket with
//! SO_REUSEPORT when there are several), datagrams received and answered in
//! batches with recvmmsg/sendmmsg: one system call for up to [`BATCH`].

use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use socket2::SockAddr;

use super::{Runtime, Shared};
use crate::metrics::{self, Dropped, ListenerMetrics};
use crate::service::UdpEchoService;

/// Datagrams per system call.
const BATCH: usize = 32;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

const WAKER: Token = Token(usize::MAX);

/// `per_addr[a]` are the sockets of listen address `a`: one per worker when
/// netlabd bound them, perhaps fewer (systemd passes one) or more (a reload
/// to fewer workers hands over every SO_REUSEPORT socket, each of which the
/// kernel still sends datagrams to). Every socket is served, and every
/// worker serves every address.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    service: UdpEchoService,
    per_addr: Vec<Vec<UdpSocket>>,
    meters: &[Arc<ListenerMetrics>],
    workers: usize,
) -> io::Result<Runtime> {
    let workers = workers.max(1);
    let mut per_worker: Vec<Vec<(UdpSocket, Arc<ListenerMetrics>)>> =
        (0..workers).map(|_| Vec::new()).collect();
    for (socks, meter) in per_addr.into_iter().zip(meters) {
        let n = socks.len();
        if n == 0 {
            continue;
        }
        // A worker short of a socket of its own shares one.
        for w in n..workers {
            per_worker[w].push((socks[w % n].try_clone()?, meter.clone()));
        }
        for (i, s) in socks.into_iter().enumerate() {
            per_worker[i % workers].push((s, meter.clone()));
        }
    }
    // Every worker is built before any runs (see event::spawn).
    let mut ready = Vec::with_capacity(per_worker.len());
    for (i, sockets) in per_worker.into_iter().enumerate() {
        let in_worker = |e: io::Error| super::worker_error(e, i, workers);
        let poll = Poll::new().map_err(in_worker)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(in_worker)?);
        for (t, (s, _)) in sockets.iter().enumerate() {
            poll.registry()
                .register(&mut SourceFd(&s.as_raw_fd()), Token(t), Interest::READABLE)
                .map_err(in_worker)?;
        }
        let (worker_shared, service) = (shared.clone(), service.clone());
        ready.push((format!("{}-udp{i}", shared.name), waker, move || {
            run(&worker_shared, &service, poll, &sockets, i)
        }));
    }
    Runtime::start_all(shared, ready)
}

fn run(
    shared: &Shared,
    service: &UdpEchoService,
    mut poll: Poll,
    sockets: &[(UdpSocket, Arc<ListenerMetrics>)],
    worker: usize,
) {
    let mut events = Events::with_capacity(64);
    let mut batch = Batch::new();
    // Sockets that may hold more than their last turn took (readiness is
    // edge-triggered: nothing would say so again).
    let mut again: Vec<usize> = Vec::new();
    while !shared.is_stopping() {
        let timeout = if again.is_empty() {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("server {}: poll failed, UDP worker stops: {e}", shared.name);
            return;
        }
        let mut turn = std::mem::take(&mut again);
        for event in events.iter() {
            let t = event.token().0;
            if t < sockets.len() && !turn.contains(&t) {
                turn.push(t);
            }
        }
        for t in turn {
            let (socket, meter) = &sockets[t];
            let on = Meter { meter, worker };
            if batch.serve(shared, service, socket, on, BATCHES_PER_TURN) == Drained::No {
                again.push(t);
            }
        }
    }
}

/// Whether a socket was read until it had nothing more.
#[derive(Debug, PartialEq, Eq)]
enum Drained {
    Yes,
    No,
}

/// Batches one socket may have per turn before the worker's other sockets,
/// and its stop, get theirs: a flood on one address must not starve the
/// others or hold up a stop.
const BATCHES_PER_TURN: usize = 8;

/// Where a socket's datagrams are counted: its listener, this worker's
/// shard.
#[derive(Clone, Copy)]
struct Meter<'a> {
    meter: &'a ListenerMetrics,
    worker: usize,
}

/// Buffers for one batch, reused for every batch.
struct Batch {
    bufs: Vec<Vec<u8>>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    /// Per datagram received: its length and sender.
    received: Vec<(usize, Option<SockaddrStorage>)>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            bufs: vec![vec![0; MAX_DATAGRAM]; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Receives and answers until the socket has nothing more, or for
    /// `max_batches` batches.
    fn serve(
        &mut self,
        shared: &Shared,
        service: &UdpEchoService,
        socket: &UdpSocket,
        on: Meter<'_>,
        max_batches: usize,
    ) -> Drained {
        let shard = on.meter.shard(on.worker);
        let fd = socket.as_raw_fd();
        for _ in 0..max_batches {
            self.received.clear();
            {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                    self.bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
                match recvmmsg(
                    fd,
                    &mut self.recv_headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_DONTWAIT,
                    None,
                ) {
                    Ok(msgs) => {
                        for m in msgs {
                            self.received.push((m.bytes, m.address));
                        }
                    }
                    Err(Errno::EAGAIN) => return Drained::Yes,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        // ICMP errors from earlier replies surface here (ECONNREFUSED); not fatal.
                        log::debug!("server {}: recvmmsg: {e}", shared.name);
                        continue;
                    }
                }
            }
            if self.received.is_empty() {
                return Drained::Yes;
            }
            metrics::add(&shard.datagrams_received, self.received.len() as u64);
            let now = std::time::Instant::now();
            let mut replies: Vec<(&[u8], SockAddr)> = Vec::with_capacity(self.received.len());
            for (buf, (len, addr)) in self.bufs.iter().zip(&self.received) {
                let Some(from) = addr.as_ref().and_then(socket_addr) else {
                    continue;
                };
                if let Err(why) = shared.admit_datagram(from.ip(), now) {
                    on.meter.dropped(why, 1);
                    continue;
                }
                match service.respond(from.port(), &buf[..*len]) {
                    Some(reply) => replies.push((reply, SockAddr::from(from))),
                    None => on.meter.dropped(Dropped::SourcePort, 1),
                }
            }
            let full = self.received.len() == BATCH;
            if !replies.is_empty() {
                send_all(shared, fd, &replies, on);
            }
            if !full {
                return Drained::Yes;
            }
        }
        Drained::No
    }
}

/// The sender of a received datagram; `None` for a family UDP over IP
/// cannot have.
fn socket_addr(addr: &SockaddrStorage) -> Option<SocketAddr> {
    addr.as_sockaddr_in()
        .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
        .or_else(|| {
            addr.as_sockaddr_in6()
                .map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a)))
        })
}

/// Sends every reply, a batch per call; a reply the kernel will not take now
/// is dropped, as UDP allows, rather than stalling the loop.
///
/// Straight libc rather than nix's sendmmsg: nix hands the kernel address
/// storage with uninitialised padding and reads back address buffers it never
/// filled (valgrind reports both); here each header points at exactly the
/// bytes the kernel wrote when the datagram was received.
fn send_all(shared: &Shared, fd: i32, replies: &[(&[u8], SockAddr)], on: Meter<'_>) {
    let mut iovs: Vec<libc::iovec> = replies
        .iter()
        .map(|(bytes, _)| libc::iovec {
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = replies
        .iter()
        .zip(iovs.iter_mut())
        .map(|((_, addr), iov)| {
            // SAFETY: an all-zero mmsghdr is valid (null pointers, zero lengths).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_name = addr.as_ptr().cast_mut().cast();
            h.msg_hdr.msg_namelen = addr.len();
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect();
    let mut start = 0;
    while start < headers.len() {
        let n = u32::try_from(headers.len() - start).unwrap_or(u32::MAX);
        // SAFETY: each header points at a live iovec and address for the call.
        let sent =
            unsafe { libc::sendmmsg(fd, headers[start..].as_mut_ptr(), n, libc::MSG_DONTWAIT) };
        if sent < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let to = replies[start]
                .1
                .as_socket()
                .map_or_else(String::new, |a| a.to_string());
            log::debug!("server {}: reply to {to} not sent: {err}", shared.name);
            on.meter.dropped(Dropped::SendFailed, 1);
            // This one failed; go on with the rest.
            start += 1;
        } else {
            let sent = sent as usize;
            shared
                .stats
                .datagrams
                .fetch_add(sent as u64, Ordering::Relaxed);
            metrics::add(&on.meter.shard(on.worker).datagrams_answered, sent as u64);
            // sendmmsg stops at the first datagram that fails; skip that one.
            start += sent.max(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    /// A turn on a socket takes at most its batches and says whether more
    /// wait; the next turns take the rest.
    #[test]
    fn a_turn_takes_at_most_its_batches_and_says_whether_more_wait() {
        let config = ServerConfig::parse(
            "name = \"turns\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]",
            "test",
        )
        .unwrap();
        let shared = Shared::new(&config, crate::metrics::ServerMetrics::detached("turns"));
        let meter = shared
            .metrics
            .listener("127.0.0.1:0", crate::metrics::ListenerKind::Udp);
        let on = Meter {
            meter: &meter,
            worker: 0,
        };
        let service = UdpEchoService::new(&[]);
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        server.set_nonblocking(true).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let queued = 2 * BATCH + 5;
        for i in 0..queued {
            client
                .send_to(&(i as u32).to_be_bytes(), server.local_addr().unwrap())
                .unwrap();
        }
        let mut batch = Batch::new();
        assert_eq!(batch.serve(&shared, &service, &server, on, 1), Drained::No);
        assert_eq!(shared.stats.datagrams.load(Ordering::Relaxed), BATCH as u64);
        assert_eq!(batch.serve(&shared, &service, &server, on, 1), Drained::No);
        assert_eq!(batch.serve(&shared, &service, &server, on, 1), Drained::Yes);
        assert_eq!(
            shared.stats.datagrams.load(Ordering::Relaxed),
            queued as u64
        );
        assert_eq!(batch.serve(&shared, &service, &server, on, 8), Drained::Yes);
    }
}
