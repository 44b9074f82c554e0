//! UDP servers: one socket loop per worker (each worker its own socket with
//! SO_REUSEPORT when there are several), datagrams received and answered in
//! batches with recvmmsg/sendmmsg: one system call for up to [`BATCH`].

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage, recvmmsg, sendmmsg};

use super::{Runtime, Shared};
use crate::service::UdpEchoService;

/// Datagrams per system call.
const BATCH: usize = 32;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

const WAKER: Token = Token(usize::MAX);

/// `per_addr[a][w]` is worker `w`'s socket for listen address `a`.
pub(super) fn spawn(
    shared: &Arc<Shared>,
    service: UdpEchoService,
    per_addr: Vec<Vec<UdpSocket>>,
) -> io::Result<Runtime> {
    let workers = per_addr.iter().map(Vec::len).max().unwrap_or(0);
    let mut per_worker: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    for socks in per_addr {
        let n = socks.len();
        for (w, s) in socks.into_iter().enumerate() {
            per_worker[w].push(s);
        }
        // An address bound with fewer sockets (systemd passes one) is shared.
        for w in n..workers {
            let first = per_worker[0].last().map(UdpSocket::try_clone).transpose()?;
            per_worker[w].extend(first);
        }
    }
    let mut threads = Vec::new();
    let mut wakers = Vec::new();
    for (i, sockets) in per_worker.into_iter().enumerate() {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        for (t, s) in sockets.iter().enumerate() {
            poll.registry().register(
                &mut SourceFd(&s.as_raw_fd()),
                Token(t),
                Interest::READABLE,
            )?;
        }
        let (shared, service) = (shared.clone(), service.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{}-udp{i}", shared.name))
            .spawn(move || run(&shared, &service, poll, &sockets))?;
        threads.push(thread);
        wakers.push(waker);
    }
    Ok(Runtime { threads, wakers })
}

fn run(shared: &Shared, service: &UdpEchoService, mut poll: Poll, sockets: &[UdpSocket]) {
    let mut events = Events::with_capacity(64);
    let mut batch = Batch::new();
    while !shared.is_stopping() {
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            log::error!("server {}: poll failed, UDP worker stops: {e}", shared.name);
            return;
        }
        for event in events.iter() {
            if let Some(socket) = sockets.get(event.token().0) {
                batch.serve(shared, service, socket);
            }
        }
    }
}

/// Buffers for one batch, reused for every batch.
struct Batch {
    bufs: Vec<Vec<u8>>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    send_headers: MultiHeaders<SockaddrStorage>,
    /// Per datagram received: its length and sender.
    received: Vec<(usize, Option<SockaddrStorage>)>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            bufs: vec![vec![0; MAX_DATAGRAM]; BATCH],
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            send_headers: MultiHeaders::preallocate(BATCH, None),
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Receives and answers until the socket has nothing more.
    fn serve(&mut self, shared: &Shared, service: &UdpEchoService, socket: &UdpSocket) {
        let fd = socket.as_raw_fd();
        loop {
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
                    Err(Errno::EAGAIN) => return,
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        // ICMP errors from earlier replies surface here (ECONNREFUSED); not fatal.
                        log::debug!("server {}: recvmmsg: {e}", shared.name);
                        continue;
                    }
                }
            }
            if self.received.is_empty() {
                return;
            }
            let mut replies: Vec<[IoSlice<'_>; 1]> = Vec::with_capacity(self.received.len());
            let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(self.received.len());
            for (buf, (len, addr)) in self.bufs.iter().zip(&self.received) {
                let Some(addr) = addr else { continue };
                let port = source_port(addr);
                if let Some(reply) = service.respond(port, &buf[..*len]) {
                    replies.push([IoSlice::new(reply)]);
                    addrs.push(Some(*addr));
                }
            }
            let full = self.received.len() == BATCH;
            if !replies.is_empty() {
                send_all(shared, fd, &mut self.send_headers, &replies, &addrs);
            }
            if !full {
                return;
            }
        }
    }
}

fn source_port(addr: &SockaddrStorage) -> u16 {
    addr.as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| addr.as_sockaddr_in6().map(|a| a.port()))
        .unwrap_or(0)
}

/// Sends every reply, a batch per call; a reply the kernel will not take now
/// is dropped, as UDP allows, rather than stalling the loop.
fn send_all(
    shared: &Shared,
    fd: i32,
    headers: &mut MultiHeaders<SockaddrStorage>,
    replies: &[[IoSlice<'_>; 1]],
    addrs: &[Option<SockaddrStorage>],
) {
    let mut start = 0;
    while start < replies.len() {
        match sendmmsg(
            fd,
            headers,
            &replies[start..],
            &addrs[start..],
            [],
            MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(results) => {
                let sent = results.count();
                shared
                    .stats
                    .datagrams
                    .fetch_add(sent as u64, Ordering::Relaxed);
                // sendmmsg stops at the first datagram that fails; skip that one.
                start += sent.max(1);
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                log::debug!(
                    "server {}: reply to {} not sent: {e}",
                    shared.name,
                    addrs[start].map_or_else(String::new, |a| display(&a))
                );
                start += 1;
            }
        }
    }
}

fn display(addr: &SockaddrStorage) -> String {
    let sa: Option<SocketAddr> = addr
        .as_sockaddr_in()
        .map(|a| SocketAddr::from(std::net::SocketAddrV4::from(*a)))
        .or_else(|| {
            addr.as_sockaddr_in6()
                .map(|a| SocketAddr::from(std::net::SocketAddrV6::from(*a)))
        });
    sa.map_or_else(|| format!("{:?}", addr.family()), |a| a.to_string())
}
