//! The echo load: TCP connections to the event, thread and fork echo
//! servers, and UDP flows to the UDP echo server, all on one mio loop.
//!
//! Each TCP connection sends its own byte stream ([`pattern`]) in messages
//! of varying size at random intervals, and checks every byte that comes
//! back. Churn closes connections and opens new ones: most close cleanly
//! (half-close, then every byte sent must come back before the server's
//! FIN), some abruptly (a reset, as a client that crashes). A connection
//! the server closes, a wrong byte, or an echo that stops coming is a
//! failure.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::pattern;
use crate::{Shared, jitter};

/// How many connects may be in progress at once: the servers' accept
/// backlogs are not to be flooded.
const MAX_CONNECTING: usize = 200;
/// How long a UDP reply may take before its datagram counts as lost.
const UDP_REPLY_WAIT: Duration = Duration::from_secs(5);
/// The shortest loop turn (see the sleep in `run`).
const MIN_TURN: Duration = Duration::from_millis(10);
/// How often timers are looked at.
const TICK: Duration = Duration::from_millis(50);
/// After a failure no connection or flow opens for this long, so that a
/// server that refuses everyone is not met by a storm of connects.
const BACK_OFF: Duration = Duration::from_millis(100);
/// One in this many churn closes is abrupt (a reset).
const ABRUPT_ONE_IN: u64 = 5;
/// One in this many messages is large (64 to 256 KiB), so that sockets fill
/// and both sides meet partial writes.
const LARGE_ONE_IN: u64 = 100;

/// One pool of TCP echo connections.
pub struct Pool {
    /// Index into [`crate::tally::POOLS`].
    pub index: usize,
    /// Connections go to these in turn (IPv4 and IPv6 listeners, say).
    pub addrs: Vec<SocketAddr>,
    pub conns: usize,
    /// Connections closed and replaced per second.
    pub churn_per_s: f64,
    /// Mean time between two messages on one connection.
    pub interval: Duration,
}

pub struct Udp {
    pub addr: SocketAddr,
    pub flows: usize,
    pub churn_per_s: f64,
    pub interval: Duration,
}

enum State {
    Connecting(Instant),
    Open,
    /// Half-closed by us: waiting for the rest of the echo, then the FIN.
    Closing(Instant),
}

struct Conn {
    pool: usize,
    id: u64,
    peer: SocketAddr,
    stream: TcpStream,
    state: State,
    /// Bytes of the stream written, due to be written, and seen back.
    sent: u64,
    due: u64,
    checked: u64,
    next_msg: Instant,
    close_at: Instant,
    /// When the echo last made progress (or had nothing to catch up).
    progress_at: Instant,
}

struct Flow {
    id: u64,
    socket: UdpSocket,
    seq: u64,
    /// Datagrams sent and not yet seen back, oldest first.
    waiting: VecDeque<(u64, Instant)>,
    next_send: Instant,
    close_at: Instant,
}

enum Entry {
    Tcp(Conn),
    Udp(Flow),
}

struct Load<'a> {
    shared: &'a Shared,
    poll: Poll,
    entries: Slab<Entry>,
    pools: Vec<Pool>,
    udp: Option<Udp>,
    /// Connections of each pool connecting or open (not closing).
    active: Vec<usize>,
    connecting: usize,
    flows: usize,
    next_id: u64,
    next_addr: usize,
    rng: fastrand::Rng,
    scratch: Vec<u8>,
    stopping: bool,
    /// Nothing opens before this (see [`BACK_OFF`]).
    hold_until: Instant,
}

/// Runs the echo load until the soak stops, then closes every connection
/// cleanly, checking that each got all its bytes back.
pub fn run(shared: &Shared, pools: Vec<Pool>, udp: Option<Udp>) -> io::Result<()> {
    let mut load = Load {
        shared,
        poll: Poll::new()?,
        entries: Slab::new(),
        active: vec![0; pools.len()],
        pools,
        udp,
        connecting: 0,
        flows: 0,
        next_id: 1,
        next_addr: 0,
        rng: fastrand::Rng::with_seed(0x5eed_ec40),
        scratch: vec![0; 256 * 1024],
        stopping: false,
        hold_until: Instant::now(),
    };
    load.run()
}

impl Load<'_> {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(4096);
        let mut drain_deadline = None;
        let mut next_tick = Instant::now();
        loop {
            match self.poll.poll(&mut events, Some(Duration::from_millis(50))) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let turn = Instant::now();
            for event in &events {
                let key = event.token().0;
                let result = match self.entries.get_mut(key) {
                    Some(Entry::Tcp(_)) => self.on_tcp(key),
                    Some(Entry::Udp(_)) => self.on_udp(key),
                    None => continue,
                };
                if let Err(why) = result {
                    self.fail_and_drop(key, why);
                }
            }
            let now = Instant::now();
            if !self.stopping && self.shared.stopping() {
                self.stopping = true;
                drain_deadline = Some(now + self.shared.stall);
            }
            // Timers need no finer grain than this; looking at every
            // connection every turn would be most of the generator's work.
            if now >= next_tick {
                next_tick = now + TICK;
                self.tick(now);
            }
            let took = turn.elapsed();
            self.shared.tally.turn_max_ms.raise(took.as_millis() as u64);
            self.shared
                .tally
                .turn_max_ever_ms
                .raise(took.as_millis() as u64);
            // Reads gather what arrived over a few ms: one read per several
            // events, so the generator keeps up with far less CPU than
            // netlabd spends, and never becomes what is measured.
            std::thread::sleep(MIN_TURN.saturating_sub(took));
            if let Some(deadline) = drain_deadline {
                if self.entries.is_empty() {
                    return Ok(());
                }
                if now >= deadline {
                    let left = self.entries.len();
                    self.shared.fail(
                        "echo: not closed at the end",
                        format!("{left} echo connection(s) or flow(s) did not finish within {:?} of the end", self.shared.stall),
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Timers: messages due, churn, stalls, new connections and flows.
    fn tick(&mut self, now: Instant) {
        let keys: Vec<usize> = self.entries.iter().map(|(k, _)| k).collect();
        for key in keys {
            let result = match self.entries.get(key) {
                Some(Entry::Tcp(_)) => self.tick_tcp(key, now),
                Some(Entry::Udp(_)) => self.tick_udp(key, now),
                None => continue,
            };
            if let Err(why) = result {
                self.fail_and_drop(key, why);
            }
        }
        if self.stopping || now < self.hold_until {
            return;
        }
        for pool in 0..self.pools.len() {
            while self.active[pool] < self.pools[pool].conns && self.connecting < MAX_CONNECTING {
                if let Err(e) = self.connect(pool, now) {
                    let addr = self.pools[pool].addrs[0];
                    self.shared.fail(
                        "echo: connect failed",
                        format!(
                            "{} pool to {addr}: {e}",
                            crate::tally::POOLS[self.pools[pool].index]
                        ),
                    );
                    self.hold_until = now + BACK_OFF;
                    break;
                }
            }
        }
        let want = self.udp.as_ref().map_or(0, |u| u.flows);
        while self.flows < want {
            if let Err(e) = self.open_flow(now) {
                self.shared.fail("udp: cannot open a flow", e.to_string());
                break;
            }
        }
    }

    fn connect(&mut self, pool: usize, now: Instant) -> io::Result<()> {
        let spec = &self.pools[pool];
        let peer = spec.addrs[self.next_addr % spec.addrs.len()];
        self.next_addr += 1;
        let mut stream = TcpStream::connect(peer)?;
        let entry = self.entries.vacant_entry();
        self.poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let id = self.next_id;
        self.next_id += 1;
        // Lifetimes spread over [0, 2 * mean], so churn runs at its rate
        // from the start rather than in waves.
        let lifetime = spec.conns as f64 / spec.churn_per_s.max(1e-9);
        entry.insert(Entry::Tcp(Conn {
            pool,
            id,
            peer,
            stream,
            state: State::Connecting(now),
            sent: 0,
            due: 0,
            checked: 0,
            next_msg: now + jitter(&mut self.rng, spec.interval),
            close_at: now + Duration::from_secs_f64(self.rng.f64() * 2.0 * lifetime),
            progress_at: now,
        }));
        self.active[pool] += 1;
        self.connecting += 1;
        Ok(())
    }

    fn tick_tcp(&mut self, key: usize, now: Instant) -> Result<(), (&'static str, String)> {
        let stall = self.shared.stall;
        let Some(Entry::Tcp(c)) = self.entries.get_mut(key) else {
            return Ok(());
        };
        match c.state {
            State::Connecting(since) => {
                if self.stopping {
                    self.remove(key);
                } else if now.duration_since(since) > stall {
                    return Err((
                        "echo: connect stalled",
                        format!("to {} took over {stall:?}", c.peer),
                    ));
                }
                Ok(())
            }
            State::Closing(since) => {
                if now.duration_since(since) > stall {
                    return Err((
                        "echo: no FIN after half-close",
                        format!(
                            "connection {} to {}: {} of {} bytes back, no FIN {stall:?} after our half-close",
                            c.id, c.peer, c.checked, c.sent
                        ),
                    ));
                }
                Ok(())
            }
            State::Open => {
                if c.checked < c.sent && now.duration_since(c.progress_at) > stall {
                    return Err((
                        "echo: echo stalled",
                        format!(
                            "connection {} to {}: {} bytes unanswered for {stall:?}",
                            c.id,
                            c.peer,
                            c.sent - c.checked
                        ),
                    ));
                }
                let closing = self.stopping || now >= c.close_at;
                if closing {
                    if c.sent < c.due {
                        // Written whole first: then every byte can be checked.
                        return Ok(());
                    }
                    let abrupt =
                        !self.stopping && pattern::hash(c.id, 1).is_multiple_of(ABRUPT_ONE_IN);
                    self.shared.tally.echo_closed.add(1);
                    self.active[c.pool] -= 1;
                    if abrupt {
                        self.shared.tally.echo_abandoned.add(c.sent - c.checked);
                        let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                        self.remove(key);
                        return Ok(());
                    }
                    if let Err(e) = c.stream.shutdown(Shutdown::Write) {
                        return Err((
                            "echo: half-close failed",
                            format!("connection {} to {}: {e}", c.id, c.peer),
                        ));
                    }
                    c.state = State::Closing(now);
                    return Ok(());
                }
                if now >= c.next_msg {
                    let spec = &self.pools[c.pool];
                    let n = message_len(c.id, c.due);
                    if c.checked == c.sent {
                        c.progress_at = now;
                    }
                    c.due += n;
                    c.next_msg = now + jitter(&mut self.rng, spec.interval);
                    self.write(key)?;
                }
                Ok(())
            }
        }
    }

    fn on_tcp(&mut self, key: usize) -> Result<(), (&'static str, String)> {
        let Some(Entry::Tcp(c)) = self.entries.get_mut(key) else {
            return Ok(());
        };
        if let State::Connecting(_) = c.state {
            match c.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return Err(("echo: connect failed", format!("to {}: {e}", c.peer)));
                }
            }
            match c.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(("echo: connect failed", format!("to {}: {e}", c.peer))),
            }
            let _ = c.stream.set_nodelay(true);
            c.state = State::Open;
            self.connecting -= 1;
            self.shared.tally.echo_open[self.pools[c.pool].index].add(1);
        }
        self.read(key)?;
        self.write(key)
    }

    /// Reads until the socket is empty, checking every byte.
    fn read(&mut self, key: usize) -> Result<(), (&'static str, String)> {
        let tally = &self.shared.tally;
        loop {
            let Some(Entry::Tcp(c)) = self.entries.get_mut(key) else {
                return Ok(());
            };
            match c.stream.read(&mut self.scratch) {
                Ok(0) => {
                    return match c.state {
                        State::Closing(_) if c.checked == c.sent => {
                            tally.echo_closed_whole.add(1);
                            self.remove(key);
                            Ok(())
                        }
                        State::Closing(_) => Err((
                            "echo: bytes lost",
                            format!(
                                "connection {} to {}: FIN after {} of {} bytes; {} never came back",
                                c.id,
                                c.peer,
                                c.checked,
                                c.sent,
                                c.sent - c.checked
                            ),
                        )),
                        _ => Err((
                            "echo: closed by the server",
                            format!(
                                "connection {} to {}: FIN with {} bytes unanswered",
                                c.id,
                                c.peer,
                                c.sent - c.checked
                            ),
                        )),
                    };
                }
                Ok(n) => {
                    let got = &self.scratch[..n];
                    if c.checked + n as u64 > c.sent {
                        return Err((
                            "echo: more bytes than sent",
                            format!(
                                "connection {} to {}: {} bytes back, {} sent",
                                c.id,
                                c.peer,
                                c.checked + n as u64,
                                c.sent
                            ),
                        ));
                    }
                    if let Some((i, want)) = pattern::first_mismatch(c.id, c.checked, got) {
                        return Err((
                            "echo: wrong byte",
                            format!(
                                "connection {} to {}: byte {} is {:#04x}, sent {want:#04x}",
                                c.id,
                                c.peer,
                                c.checked + i as u64,
                                got[i]
                            ),
                        ));
                    }
                    c.checked += n as u64;
                    c.progress_at = Instant::now();
                    tally.echo_checked.add(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err((
                        "echo: connection failed",
                        format!("connection {} to {}: read: {e}", c.id, c.peer),
                    ));
                }
            }
        }
    }

    /// Writes what is due until the socket is full.
    fn write(&mut self, key: usize) -> Result<(), (&'static str, String)> {
        let Some(Entry::Tcp(c)) = self.entries.get_mut(key) else {
            return Ok(());
        };
        if !matches!(c.state, State::Open) {
            return Ok(());
        }
        while c.sent < c.due {
            let n = ((c.due - c.sent) as usize).min(self.scratch.len());
            pattern::fill(c.id, c.sent, &mut self.scratch[..n]);
            match c.stream.write(&self.scratch[..n]) {
                Ok(0) => {
                    return Err((
                        "echo: connection failed",
                        format!("connection {} to {}: write returned 0", c.id, c.peer),
                    ));
                }
                Ok(k) => {
                    c.sent += k as u64;
                    self.shared.tally.echo_sent.add(k as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err((
                        "echo: connection failed",
                        format!("connection {} to {}: write: {e}", c.id, c.peer),
                    ));
                }
            }
        }
        Ok(())
    }

    fn open_flow(&mut self, now: Instant) -> io::Result<()> {
        let Some(spec) = &self.udp else {
            return Ok(());
        };
        let local: SocketAddr = if spec.addr.is_ipv4() {
            ([127, 0, 0, 1], 0).into()
        } else {
            (std::net::Ipv6Addr::LOCALHOST, 0).into()
        };
        let mut socket = UdpSocket::bind(local)?;
        socket.connect(spec.addr)?;
        let entry = self.entries.vacant_entry();
        self.poll
            .registry()
            .register(&mut socket, Token(entry.key()), Interest::READABLE)?;
        let id = (1 << 40) + self.next_id;
        self.next_id += 1;
        let lifetime = spec.flows as f64 / spec.churn_per_s.max(1e-9);
        entry.insert(Entry::Udp(Flow {
            id,
            socket,
            seq: 0,
            waiting: VecDeque::new(),
            next_send: now + jitter(&mut self.rng, spec.interval),
            close_at: now + Duration::from_secs_f64(self.rng.f64() * 2.0 * lifetime),
        }));
        self.flows += 1;
        self.shared.tally.udp_flows.add(1);
        Ok(())
    }

    fn tick_udp(&mut self, key: usize, now: Instant) -> Result<(), (&'static str, String)> {
        let Some(Entry::Udp(f)) = self.entries.get_mut(key) else {
            return Ok(());
        };
        let tally = &self.shared.tally;
        while let Some(&(seq, at)) = f.waiting.front() {
            if now.duration_since(at) < UDP_REPLY_WAIT {
                break;
            }
            f.waiting.pop_front();
            tally.udp_lost.add(1);
            eprintln!(
                "soak: at {:.1} s: udp flow {} datagram {seq}: no reply within {UDP_REPLY_WAIT:?}",
                self.shared.epoch.elapsed().as_secs_f64(),
                f.id
            );
        }
        let closing = self.stopping || now >= f.close_at;
        if closing {
            if f.waiting.is_empty() {
                self.remove(key);
            }
            return Ok(());
        }
        if now >= f.next_send {
            let interval = self
                .udp
                .as_ref()
                .map_or(Duration::from_secs(1), |u| u.interval);
            f.next_send = now + jitter(&mut self.rng, interval);
            let n = datagram(f.id, f.seq, &mut self.scratch);
            match f.socket.send(&self.scratch[..n]) {
                Ok(_) => {
                    f.waiting.push_back((f.seq, now));
                    f.seq += 1;
                    tally.udp_sent.add(1);
                }
                // A full send buffer drops this one before it is counted.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(("udp: send failed", format!("flow {}: {e}", f.id))),
            }
        }
        Ok(())
    }

    fn on_udp(&mut self, key: usize) -> Result<(), (&'static str, String)> {
        let Some(Entry::Udp(f)) = self.entries.get_mut(key) else {
            return Ok(());
        };
        loop {
            let n = match f.socket.recv(&mut self.scratch) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(("udp: receive failed", format!("flow {}: {e}", f.id))),
            };
            let got = &self.scratch[..n];
            let Some(seq) = check_datagram(f.id, got) else {
                return Err((
                    "udp: wrong datagram",
                    format!("flow {}: {n} bytes that are not a datagram it sent", f.id),
                ));
            };
            let Some(at) = f.waiting.iter().position(|&(s, _)| s == seq) else {
                return Err((
                    "udp: unexpected datagram",
                    format!(
                        "flow {}: datagram {seq} came back twice, or after it was counted lost",
                        f.id
                    ),
                ));
            };
            f.waiting.remove(at);
            self.shared.tally.udp_checked.add(1);
        }
    }

    fn fail_and_drop(&mut self, key: usize, (kind, detail): (&'static str, String)) {
        self.shared.fail(kind, detail);
        self.hold_until = Instant::now() + BACK_OFF;
        if let Some(Entry::Tcp(c)) = self.entries.get(key)
            && !matches!(c.state, State::Closing(_))
        {
            self.active[c.pool] -= 1;
        }
        self.remove(key);
    }

    /// Forgets an entry and closes its socket.
    fn remove(&mut self, key: usize) {
        let Some(entry) = self.entries.try_remove(key) else {
            return;
        };
        let tally = &self.shared.tally;
        match entry {
            Entry::Tcp(mut c) => {
                let _ = self.poll.registry().deregister(&mut c.stream);
                match c.state {
                    State::Connecting(_) => {
                        self.connecting -= 1;
                        if self.stopping {
                            self.active[c.pool] -= 1;
                        }
                    }
                    State::Open | State::Closing(_) => {
                        tally.echo_open[self.pools[c.pool].index].sub(1)
                    }
                }
            }
            Entry::Udp(mut f) => {
                let _ = self.poll.registry().deregister(&mut f.socket);
                self.flows -= 1;
                tally.udp_flows.sub(1);
            }
        }
    }
}

/// The size of the message that starts at byte `offset` of stream `id`:
/// mostly 1 to 4096 bytes, sometimes 64 to 256 KiB.
fn message_len(id: u64, offset: u64) -> u64 {
    let h = pattern::hash(id, offset);
    if h.is_multiple_of(LARGE_ONE_IN) {
        64 * 1024 + (h >> 8) % (192 * 1024)
    } else {
        1 + (h >> 8) % 4096
    }
}

/// Writes datagram `seq` of flow `id` into `out`: the flow and sequence
/// number, then 0 to 1384 bytes of the pattern. Its length.
fn datagram(id: u64, seq: u64, out: &mut [u8]) -> usize {
    let n = 16 + (pattern::hash(id, seq) % 1385) as usize;
    out[..8].copy_from_slice(&id.to_be_bytes());
    out[8..16].copy_from_slice(&seq.to_be_bytes());
    pattern::fill(pattern::hash(id, seq), 16, &mut out[16..n]);
    n
}

/// The sequence number of `got` if it is, byte for byte, a datagram of flow `id`.
fn check_datagram(id: u64, got: &[u8]) -> Option<u64> {
    let flow = u64::from_be_bytes(got.get(..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(got.get(8..16)?.try_into().ok()?);
    let n = 16 + (pattern::hash(id, seq) % 1385) as usize;
    (flow == id
        && got.len() == n
        && pattern::first_mismatch(pattern::hash(id, seq), 16, &got[16..]).is_none())
    .then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_check_back_and_a_wrong_byte_is_caught() {
        let mut buf = vec![0; 2048];
        for seq in 0..50 {
            let n = datagram(7, seq, &mut buf);
            assert_eq!(check_datagram(7, &buf[..n]), Some(seq));
            assert_eq!(check_datagram(8, &buf[..n]), None);
            buf[n - 1] ^= 0x40;
            assert_eq!(check_datagram(7, &buf[..n]), None);
            assert_eq!(check_datagram(7, &buf[..n - 1]), None);
        }
    }

    #[test]
    fn messages_are_mostly_small_and_sometimes_large() {
        let lens: Vec<u64> = (0..10_000).map(|i| message_len(3, i * 5000)).collect();
        assert!(lens.iter().all(|&n| (1..=256 * 1024).contains(&n)));
        let large = lens.iter().filter(|&&n| n > 4096).count();
        assert!(
            (50..200).contains(&large),
            "{large} large messages in 10000"
        );
    }
}
