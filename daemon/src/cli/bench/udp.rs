//! The UDP generator: each "connection" is its own connected UDP socket in a
//! closed loop; a request whose reply does not come within the loss timeout
//! is counted as lost and resent.
//!
//! Requests of 8 bytes or more carry their sequence number in their first 8
//! bytes, so a late reply to an earlier, resent request is recognised and
//! skipped rather than counted as a wrong echo. Smaller requests cannot carry
//! it: a reply that does not match is then skipped as possibly stale.

use std::io;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};

use super::payload::Payload;
use super::stats::{Stats, Window};

const SEQ_LEN: usize = 8;

struct Requester {
    socket: UdpSocket,
    seq: u64,
    request: Vec<u8>,
    /// When the current request was first sent: latency includes resends.
    sent_at: Instant,
    /// When it was last sent (or `None` while a send waits for writability).
    last_sent: Option<Instant>,
}

pub(super) fn run(
    sockets: Vec<std::net::UdpSocket>,
    payload: &Payload,
    window: Window,
    loss_timeout: Duration,
    first_seq: u64,
) -> io::Result<Stats> {
    let mut poll = Poll::new()?;
    let mut stats = Stats::new();
    let mut requesters = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(socket);
        poll.registry().register(
            &mut socket,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let now = Instant::now();
        requesters.push(Requester {
            socket,
            seq: first_seq + i as u64 * 97,
            request: Vec::with_capacity(payload.size()),
            sent_at: now,
            last_sent: None,
        });
    }
    for requester in &mut requesters {
        requester.start(payload, &mut stats);
    }

    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 65_536];
    loop {
        let now = Instant::now();
        if now >= window.end {
            break;
        }
        let next_loss = requesters
            .iter()
            .filter_map(|r| r.last_sent)
            .min()
            .map_or(window.end, |at| (at + loss_timeout).min(window.end));
        match poll.poll(&mut events, Some(next_loss.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in &events {
            if let Some(requester) = requesters.get_mut(event.token().0) {
                requester.receive(payload, &window, &mut stats, &mut buf);
                if requester.last_sent.is_none() {
                    requester.transmit(&mut stats);
                }
            }
        }
        let now = Instant::now();
        for requester in &mut requesters {
            if requester
                .last_sent
                .is_some_and(|at| now >= at + loss_timeout)
            {
                stats.lost += 1;
                requester.transmit(&mut stats);
            }
        }
    }
    Ok(stats)
}

impl Requester {
    /// Builds request `seq` and sends it.
    fn start(&mut self, payload: &Payload, stats: &mut Stats) {
        self.request.clear();
        self.request.extend_from_slice(payload.request(self.seq));
        if self.request.len() >= SEQ_LEN {
            self.request[..SEQ_LEN].copy_from_slice(&self.seq.to_be_bytes());
        }
        self.sent_at = Instant::now();
        self.transmit(stats);
    }

    fn transmit(&mut self, stats: &mut Stats) {
        match self.socket.send(&self.request) {
            Ok(_) => self.last_sent = Some(Instant::now()),
            // Wait for writability; the event loop sends again then.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.last_sent = None,
            Err(e) => {
                // E.g. refused by an earlier ICMP error: count it, retry after
                // the loss timeout as if the datagram had been lost.
                log::debug!("bench udp send: {e}");
                stats.errors += 1;
                self.last_sent = Some(Instant::now());
            }
        }
    }

    fn receive(&mut self, payload: &Payload, window: &Window, stats: &mut Stats, buf: &mut [u8]) {
        loop {
            let n = match self.socket.recv(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // An ICMP error (nothing listening): the request stays
                    // outstanding and is resent after the loss timeout.
                    log::debug!("bench udp receive: {e}");
                    stats.errors += 1;
                    return;
                }
            };
            let reply = &buf[..n];
            if reply == self.request.as_slice() {
                let now = Instant::now();
                stats.complete(window, self.sent_at, now);
                self.seq = self.seq.wrapping_add(1);
                self.start(payload, stats);
            } else if !self.is_stale(reply) {
                stats.errors += 1;
            }
        }
    }

    /// A reply to an earlier request of this socket, arriving after its resend
    /// was already answered.
    fn is_stale(&self, reply: &[u8]) -> bool {
        if self.request.len() < SEQ_LEN {
            return true;
        }
        reply.len() == self.request.len()
            && reply
                .get(..SEQ_LEN)
                .and_then(|seq| <[u8; SEQ_LEN]>::try_from(seq).ok())
                .is_some_and(|seq| u64::from_be_bytes(seq) < self.seq)
    }
}
