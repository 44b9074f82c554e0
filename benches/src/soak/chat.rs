//! The chat load: members of one room spread over its three dialects (line,
//! header, bincode), on one mio loop. Some members talk; everyone reads
//! everything, asks who is online now and then, and members keep leaving
//! (with `Bye`, with a half-close, or with a reset) and new ones joining.
//!
//! What each member checks, for each other member S:
//! - every message's text is exactly what S sent (`pattern::chat_text`);
//! - S's messages come in order with none missing: the first one after
//!   "S joined" is S's first; after that each is the one after the last;
//!   a member that was there before it sees S's messages from wherever it
//!   came in;
//! - when "S left" comes, the last message seen from S is the last one S
//!   sent (unless S left with a reset, which may lose what S sent last);
//! - nothing comes before its welcome, no error, no notice it cannot read,
//!   and its roster holds its own name.
//!
//! The room's order makes these exact: the server relays S's messages, its
//! join and its leave in the order S's bytes arrive, to everyone.

use rustc_hash::FxHashMap as HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use netlab::chat::{ClientMsg, Dialect};
use netlab::client::chat::{ChatEventDecoder, ChatEventRef};
use netlab::codec::chat::ChatCodec;
use slab::Slab;

use crate::pattern;
use crate::{Shared, jitter};

/// How many members may be connecting or waiting for their welcome at once.
const MAX_JOINING: usize = 64;
/// The longest frame a member sends (the server's default `max_frame`).
const MAX_FRAME: usize = 64 * 1024;
/// At the end members leave at most this many per loop turn (50 ms): each
/// leave is news to everyone still there, and all leaving at once would
/// be a storm of a million notices, not the soak's steady churn.
const FINAL_LEAVES_PER_TURN: usize = 10;
/// The shortest loop turn (see the sleep in `run`).
const MIN_TURN: Duration = Duration::from_millis(10);
/// How often timers are looked at.
const TICK: Duration = Duration::from_millis(50);
/// After a failure no member joins for this long, so that a server that
/// refuses everyone is not met by a storm of connects.
const BACK_OFF: Duration = Duration::from_millis(100);

pub struct Room {
    /// The line, header and bincode listeners.
    pub addrs: [SocketAddr; 3],
    /// The header listener's `header_len`.
    pub header_len: usize,
    pub members: usize,
    /// Members leaving (and as many joining) per second.
    pub churn_per_s: f64,
    /// Messages per second, the whole room together.
    pub rate: f64,
    /// One member in this many talks.
    pub talker_one_in: u64,
    /// Mean time between two roster requests of one member.
    pub who_every: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    Bye,
    HalfClose,
    Reset,
}

enum State {
    Connecting(Instant),
    Joining(Instant),
    In,
    Leaving(Instant, Leave),
}

/// What a member has seen, checked as it comes.
struct Ledger {
    uid: u64,
    name: String,
    /// For each talker it has heard from or seen join: the next message
    /// number expected from it. Only talkers: the others never say
    /// anything, and nine in ten entries would only cost cache misses.
    next: HashMap<u64, u64>,
    /// When it asked who is online, until the answer comes.
    asked_who: Option<Instant>,
    /// Members whose uid is a multiple of this talk.
    talker_one_in: u64,
}

struct Member {
    ledger: Ledger,
    dialect: usize,
    stream: TcpStream,
    decoder: ChatEventDecoder,
    state: State,
    out: Vec<u8>,
    written: usize,
    /// Messages it has sent.
    sent: u64,
    talker: bool,
    next_say: Instant,
    next_who: Instant,
    leave_at: Instant,
}

/// How a member that left ended: how many messages it had sent in all, or
/// unknown (a reset may lose its last ones).
#[derive(Clone, Copy)]
enum Departure {
    Sent(u64),
    Reset,
}

/// What the members know of one another: how many messages each has sent
/// so far, and how each that left ended.
#[derive(Default)]
struct Registry {
    sent: HashMap<u64, u64>,
    departed: HashMap<u64, Departure>,
}

type Failure = (&'static str, String);

struct Load<'a> {
    shared: &'a Shared,
    room: Room,
    codecs: [ChatCodec; 3],
    poll: Poll,
    members: Slab<Member>,
    registry: Registry,
    /// Members connecting or joining, and members not leaving.
    joining: usize,
    staying: usize,
    next_uid: u64,
    rng: fastrand::Rng,
    scratch: Vec<u8>,
    stopping: bool,
    /// No member joins before this (see [`BACK_OFF`]).
    hold_until: Instant,
    /// Members that may still start leaving this turn.
    leave_budget: usize,
}

pub fn run(shared: &Shared, room: Room) -> io::Result<()> {
    let codecs = dialects(room.header_len).map(|d| ChatCodec::new(d, MAX_FRAME));
    let mut load = Load {
        shared,
        room,
        codecs,
        poll: Poll::new()?,
        members: Slab::new(),
        registry: Registry::default(),
        joining: 0,
        staying: 0,
        next_uid: 1,
        rng: fastrand::Rng::with_seed(0x5eed_c4a7),
        scratch: vec![0; 64 * 1024],
        stopping: false,
        hold_until: Instant::now(),
        leave_budget: usize::MAX,
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
                if let Err(why) = self.on_ready(key) {
                    self.fail_and_drop(key, why);
                }
            }
            let now = Instant::now();
            if !self.stopping && self.shared.stopping() {
                self.stopping = true;
                let leaving = self.members.len().div_ceil(FINAL_LEAVES_PER_TURN) as u32;
                drain_deadline =
                    Some(now + self.shared.stall + Duration::from_millis(50) * leaving);
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
                if self.members.is_empty() {
                    return Ok(());
                }
                if now >= deadline {
                    self.shared.fail(
                        "chat: not closed at the end",
                        format!(
                            "{} member(s) still connected {:?} after the end",
                            self.members.len(),
                            self.shared.stall
                        ),
                    );
                    return Ok(());
                }
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        self.leave_budget = if self.stopping {
            FINAL_LEAVES_PER_TURN
        } else {
            usize::MAX
        };
        let keys: Vec<usize> = self.members.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Err(why) = self.tick_member(key, now) {
                self.fail_and_drop(key, why);
            }
        }
        if self.stopping || now < self.hold_until {
            return;
        }
        while self.staying < self.room.members && self.joining < MAX_JOINING {
            if let Err(e) = self.connect(now) {
                self.shared.fail("chat: connect failed", e.to_string());
                self.hold_until = now + BACK_OFF;
                break;
            }
        }
    }

    fn connect(&mut self, now: Instant) -> io::Result<()> {
        let uid = self.next_uid;
        self.next_uid += 1;
        let say_interval = self.say_interval();
        let dialect = (uid % 3) as usize;
        let addr = self.room.addrs[dialect];
        let mut stream = TcpStream::connect(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("to {addr}: {e}")))?;
        let entry = self.members.vacant_entry();
        self.poll.registry().register(
            &mut stream,
            Token(entry.key()),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let decoder = ChatEventDecoder::new(self.codecs[dialect].dialect.clone());
        let lifetime = self.room.members as f64 / self.room.churn_per_s.max(1e-9);
        let talker = uid.is_multiple_of(self.room.talker_one_in);
        entry.insert(Member {
            ledger: Ledger {
                uid,
                name: format!("m{uid}"),
                next: HashMap::default(),
                asked_who: None,
                talker_one_in: self.room.talker_one_in,
            },
            dialect,
            stream,
            decoder,
            state: State::Connecting(now),
            out: Vec::new(),
            written: 0,
            sent: 0,
            talker,
            next_say: now + jitter(&mut self.rng, say_interval),
            next_who: now + jitter(&mut self.rng, self.room.who_every),
            leave_at: now + Duration::from_secs_f64(self.rng.f64() * 2.0 * lifetime),
        });
        self.registry.sent.insert(uid, 0);
        self.joining += 1;
        self.staying += 1;
        Ok(())
    }

    /// How long a talker waits between two messages, on average, for the
    /// room to hear `rate` a second.
    fn say_interval(&self) -> Duration {
        let talkers = (self.room.members as f64 / self.room.talker_one_in as f64).max(1.0);
        Duration::from_secs_f64(talkers / self.room.rate.max(1e-9))
    }

    fn tick_member(&mut self, key: usize, now: Instant) -> Result<(), Failure> {
        let stall = self.shared.stall;
        let say_interval = self.say_interval();
        let Some(m) = self.members.get_mut(key) else {
            return Ok(());
        };
        match m.state {
            State::Connecting(since) | State::Joining(since) => {
                if self.stopping && matches!(m.state, State::Connecting(_)) {
                    self.remove(key);
                } else if now.duration_since(since) > stall {
                    return Err((
                        "chat: join stalled",
                        format!(
                            "{}: no welcome within {stall:?} ({})",
                            m.ledger.name,
                            ends(&m.stream, self.shared.netlabd)
                        ),
                    ));
                }
                Ok(())
            }
            State::Leaving(since, how) => {
                if now.duration_since(since) > stall {
                    return Err((
                        "chat: not closed after leaving",
                        format!(
                            "{} left ({how:?}) and the server did not close within {stall:?} ({})",
                            m.ledger.name,
                            ends(&m.stream, self.shared.netlabd)
                        ),
                    ));
                }
                Ok(())
            }
            State::In => {
                if let Some(asked) = m.ledger.asked_who
                    && now.duration_since(asked) > stall
                {
                    return Err((
                        "chat: no roster",
                        format!(
                            "{}: no answer to /who within {stall:?} ({})",
                            m.ledger.name,
                            ends(&m.stream, self.shared.netlabd)
                        ),
                    ));
                }
                if (self.stopping || now >= m.leave_at) && self.leave_budget > 0 {
                    self.leave_budget -= 1;
                    return self.leave(key, now);
                }
                if self.stopping {
                    // Waiting its turn to leave: it says nothing new.
                    return self.write(key);
                }
                let codec = &self.codecs[m.dialect];
                if m.talker && now >= m.next_say {
                    let text = pattern::chat_text(m.ledger.uid, m.sent);
                    codec.encode_client_msg(ClientMsg::Say { text: &text }, &mut m.out);
                    m.sent += 1;
                    m.next_say = now + jitter(&mut self.rng, say_interval);
                    self.registry.sent.insert(m.ledger.uid, m.sent);
                    self.shared.tally.chat_sent.add(1);
                }
                if m.ledger.asked_who.is_none() && now >= m.next_who {
                    codec.encode_client_msg(ClientMsg::Who, &mut m.out);
                    m.ledger.asked_who = Some(now);
                    m.next_who = now + jitter(&mut self.rng, self.room.who_every);
                }
                self.write(key)
            }
        }
    }

    /// Starts leaving, once everything it said is written: the goodbye
    /// must come after its last message.
    fn leave(&mut self, key: usize, now: Instant) -> Result<(), Failure> {
        let Some(m) = self.members.get_mut(key) else {
            return Ok(());
        };
        if m.written < m.out.len() {
            return Ok(());
        }
        // At the end everyone says goodbye, so every tail is checked.
        let how = match (self.stopping, pattern::hash(m.ledger.uid, 2) % 10) {
            (true, _) | (false, 0..=4) => Leave::Bye,
            (false, 5..=8) => Leave::HalfClose,
            _ => Leave::Reset,
        };
        self.registry.departed.insert(
            m.ledger.uid,
            match how {
                Leave::Reset => Departure::Reset,
                _ => Departure::Sent(m.sent),
            },
        );
        let tally = &self.shared.tally;
        tally.chat_members.sub(1);
        self.staying -= 1;
        match how {
            Leave::Bye => {
                self.codecs[m.dialect].encode_client_msg(ClientMsg::Bye, &mut m.out);
                m.state = State::Leaving(now, how);
                self.write(key)
            }
            Leave::HalfClose => {
                m.state = State::Leaving(now, how);
                m.stream
                    .shutdown(Shutdown::Write)
                    .map_err(|e| ("chat: half-close failed", format!("{}: {e}", m.ledger.name)))
            }
            Leave::Reset => {
                let _ = socket2::SockRef::from(&m.stream).set_linger(Some(Duration::ZERO));
                tally.chat_leaves.add(1);
                // Gone at once: `remove` must not count it again.
                m.state = State::Leaving(now, how);
                self.remove(key);
                Ok(())
            }
        }
    }

    fn on_ready(&mut self, key: usize) -> Result<(), Failure> {
        let Some(m) = self.members.get_mut(key) else {
            return Ok(());
        };
        if let State::Connecting(_) = m.state {
            let addr = self.room.addrs[m.dialect];
            match m.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    return Err(("chat: connect failed", format!("to {addr}: {e}")));
                }
            }
            match m.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(("chat: connect failed", format!("to {addr}: {e}"))),
            }
            let _ = m.stream.set_nodelay(true);
            let name = m.ledger.name.clone();
            self.codecs[m.dialect].encode_client_msg(ClientMsg::Hello { name: &name }, &mut m.out);
            m.state = State::Joining(Instant::now());
            self.shared.tally.chat_open.add(1);
        }
        self.read(key)?;
        self.write(key)
    }

    fn read(&mut self, key: usize) -> Result<(), Failure> {
        let shared = self.shared;
        loop {
            let Some(m) = self.members.get_mut(key) else {
                return Ok(());
            };
            match m.stream.read(&mut self.scratch) {
                Ok(0) => {
                    if m.decoder.pending().is_empty()
                        && let State::Leaving(_, _) = m.state
                    {
                        shared.tally.chat_leaves.add(1);
                        self.remove(key);
                        return Ok(());
                    }
                    let what = match m.state {
                        State::Leaving(..) => "with half an event unread",
                        State::Joining(_) => "before its welcome",
                        _ => "while it was reading",
                    };
                    return Err((
                        "chat: closed by the server",
                        format!(
                            "{} ({}): the server closed {what}",
                            m.ledger.name,
                            dialect_name(m.dialect)
                        ),
                    ));
                }
                Ok(n) => {
                    m.decoder.extend(&self.scratch[..n]);
                    loop {
                        let event = match m.decoder.next_event() {
                            Ok(Some(event)) => event,
                            Ok(None) => break,
                            Err(e) => {
                                return Err((
                                    "chat: undecodable",
                                    format!("{} ({}): {e}", m.ledger.name, dialect_name(m.dialect)),
                                ));
                            }
                        };
                        let welcomed = m.ledger.check(&event, &m.state, &self.registry, shared)?;
                        if welcomed {
                            m.state = State::In;
                            self.joining -= 1;
                            shared.tally.chat_members.add(1);
                            shared.tally.chat_joins.add(1);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err((
                        "chat: connection failed",
                        format!("{} ({}): read: {e}", m.ledger.name, dialect_name(m.dialect)),
                    ));
                }
            }
        }
    }

    fn write(&mut self, key: usize) -> Result<(), Failure> {
        let Some(m) = self.members.get_mut(key) else {
            return Ok(());
        };
        if matches!(m.state, State::Connecting(_)) {
            return Ok(());
        }
        while m.written < m.out.len() {
            match m.stream.write(&m.out[m.written..]) {
                Ok(0) => {
                    return Err((
                        "chat: connection failed",
                        format!("{}: write returned 0", m.ledger.name),
                    ));
                }
                Ok(n) => m.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err((
                        "chat: connection failed",
                        format!("{}: write: {e}", m.ledger.name),
                    ));
                }
            }
        }
        m.out.clear();
        m.written = 0;
        Ok(())
    }

    fn fail_and_drop(&mut self, key: usize, (kind, detail): Failure) {
        self.shared.fail(kind, detail);
        self.hold_until = Instant::now() + BACK_OFF;
        if let Some(m) = self.members.get(key) {
            // Whatever it sent may or may not have been relayed.
            self.registry
                .departed
                .insert(m.ledger.uid, Departure::Reset);
            match m.state {
                State::In => {
                    self.shared.tally.chat_members.sub(1);
                    self.staying -= 1;
                }
                State::Connecting(_) | State::Joining(_) => self.staying -= 1,
                State::Leaving(..) => {}
            }
        }
        self.remove(key);
    }

    fn remove(&mut self, key: usize) {
        let Some(mut m) = self.members.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut m.stream);
        match m.state {
            State::Connecting(_) => {
                self.joining -= 1;
                if self.stopping {
                    self.staying -= 1;
                }
            }
            State::Joining(_) => {
                self.joining -= 1;
                self.shared.tally.chat_open.sub(1);
            }
            State::In | State::Leaving(..) => self.shared.tally.chat_open.sub(1),
        }
    }
}

/// The room's dialects, in the order of [`Room::addrs`].
fn dialects(header_len: usize) -> [Dialect; 3] {
    [
        Dialect::Line,
        Dialect::Header { header_len },
        Dialect::Bincode,
    ]
}

fn dialect_name(d: usize) -> &'static str {
    Dialect::NAMES[d]
}

/// What the kernel holds at both ends of a member's connection, for the
/// first few late replies: reading the kernel's table of every socket is
/// too dear to do for a storm of them.
/// The first and the twentieth also tell what netlabd's room thread is
/// doing then.
fn ends(stream: &TcpStream, netlabd: u32) -> String {
    static LOOKED_UP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = LOOKED_UP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if n >= 20 {
        return "sockets not looked up: 20 were".to_owned();
    }
    if n == 0 || n == 19 {
        eprint!(
            "soak: netlabd's room thread now:\n{}",
            crate::procfs::threads_report(netlabd, "chat-room")
        );
    }
    match (stream.local_addr(), stream.peer_addr()) {
        (Ok(local), Ok(peer)) => crate::procfs::both_ends(local, peer),
        _ => "its addresses are gone".to_owned(),
    }
}

/// The uid in a member's name, `m<uid>`.
fn uid_of(name: &str) -> Option<u64> {
    name.strip_prefix('m')?.parse().ok()
}

impl Ledger {
    /// Checks one event; true when it is this member's welcome.
    fn check(
        &mut self,
        event: &ChatEventRef<'_>,
        state: &State,
        registry: &Registry,
        shared: &Shared,
    ) -> Result<bool, Failure> {
        let me = &self.name;
        if let State::Joining(_) = state {
            return match event {
                ChatEventRef::Welcome { .. } => Ok(true),
                ChatEventRef::Error { reason, .. } => {
                    Err(("chat: join refused", format!("{me}: {reason}")))
                }
                other => Err((
                    "chat: event before the welcome",
                    format!("{me}: {}", other.to_owned_event()),
                )),
            };
        }
        let tally = &shared.tally;
        match event {
            ChatEventRef::Message { from, text } => {
                let Some((uid, seq)) = pattern::parse_chat_text(text) else {
                    return Err((
                        "chat: wrong message",
                        format!("{me}: from {from}: {text:?}"),
                    ));
                };
                if uid_of(from) != Some(uid) || !pattern::is_chat_text(uid, seq, text) {
                    return Err((
                        "chat: wrong message",
                        format!("{me}: from {from}: {text:?} is not what m{uid} sent as {seq}"),
                    ));
                }
                if uid == self.uid {
                    return Err(("chat: own message back", format!("{me}: message {seq}")));
                }
                if registry.sent.get(&uid).is_none_or(|&sent| seq >= sent) {
                    return Err((
                        "chat: message never sent",
                        format!("{me}: from {from}: message {seq}, which it has not sent"),
                    ));
                }
                let next = self.next.entry(uid).or_insert(seq);
                if seq != *next {
                    let (kind, what) = if seq > *next {
                        ("chat: messages lost", format!("{} lost", seq - *next))
                    } else {
                        (
                            "chat: message out of order",
                            "out of order or twice".to_owned(),
                        )
                    };
                    let detail =
                        format!("{me}: from {from}: got {seq}, expected {}: {what}", *next);
                    *next = seq + 1;
                    return Err((kind, detail));
                }
                *next = seq + 1;
                tally.chat_deliveries.add(1);
            }
            ChatEventRef::Joined { name, .. } => {
                let Some(uid) = uid_of(name) else {
                    return Err(("chat: unknown name", format!("{me}: {name} joined")));
                };
                if uid.is_multiple_of(self.talker_one_in) && self.next.insert(uid, 0).is_some() {
                    return Err(("chat: joined twice", format!("{me}: {name} joined again")));
                }
                tally.chat_notices.add(1);
            }
            ChatEventRef::Left { name, .. } => {
                let Some(uid) = uid_of(name) else {
                    return Err(("chat: unknown name", format!("{me}: {name} left")));
                };
                let next = self.next.remove(&uid);
                tally.chat_notices.add(1);
                match (registry.departed.get(&uid), next) {
                    (Some(Departure::Sent(sent)), Some(next)) if next != *sent => {
                        return Err((
                            "chat: messages lost",
                            format!(
                                "{me}: {name} left having sent {sent}, the last seen was {}",
                                next as i64 - 1
                            ),
                        ));
                    }
                    (None, _) => {
                        return Err((
                            "chat: left unasked",
                            format!("{me}: {name} left, but never asked to"),
                        ));
                    }
                    _ => {}
                }
            }
            ChatEventRef::Roster { names } => {
                if self.asked_who.take().is_none() {
                    return Err((
                        "chat: roster unasked",
                        format!("{me}: a roster nobody asked for"),
                    ));
                }
                if !names.contains(&me.as_str()) {
                    return Err((
                        "chat: roster without me",
                        format!("{me}: not among the {} names online", names.len()),
                    ));
                }
                tally.chat_rosters.add(1);
            }
            other => {
                return Err((
                    "chat: unexpected event",
                    format!("{me}: {}", other.to_owned_event()),
                ));
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::tally::Tally;

    fn shared() -> Shared {
        Shared {
            epoch: Instant::now(),
            netlabd: 0,
            tally: Tally::default(),
            stall: Duration::from_secs(1),
            stop: AtomicBool::new(false),
        }
    }

    fn ledger() -> Ledger {
        Ledger {
            uid: 1,
            name: "m1".into(),
            next: HashMap::default(),
            asked_who: None,
            talker_one_in: 7,
        }
    }

    /// Member 7 has sent `sent` messages.
    fn registry(sent: u64) -> Registry {
        let mut r = Registry::default();
        r.sent.insert(7, sent);
        r
    }

    /// Feeds member 1 the events; the kind of the first failure, if any.
    fn feed(
        ledger: &mut Ledger,
        registry: &Registry,
        events: &[ChatEventRef<'_>],
    ) -> Option<&'static str> {
        let shared = shared();
        events
            .iter()
            .find_map(|e| ledger.check(e, &State::In, registry, &shared).err())
            .map(|(kind, _)| kind)
    }

    fn say(seq: u64) -> String {
        pattern::chat_text(7, seq)
    }

    fn msg(text: &str) -> ChatEventRef<'_> {
        ChatEventRef::Message { from: "m7", text }
    }

    #[test]
    fn a_sender_heard_mid_stream_is_followed_from_there_in_order() {
        let (a, b, c) = (say(4), say(5), say(6));
        let mut l = ledger();
        assert_eq!(
            feed(&mut l, &registry(10), &[msg(&a), msg(&b), msg(&c)]),
            None
        );
    }

    #[test]
    fn a_gap_a_repeat_and_a_wrong_text_are_each_caught() {
        let (a, c) = (say(4), say(6));
        assert_eq!(
            feed(&mut ledger(), &registry(10), &[msg(&a), msg(&c)]),
            Some("chat: messages lost")
        );
        assert_eq!(
            feed(&mut ledger(), &registry(10), &[msg(&a), msg(&a)]),
            Some("chat: message out of order")
        );
        let mut garbled = say(4);
        garbled.pop();
        garbled.push('~');
        assert_eq!(
            feed(&mut ledger(), &registry(10), &[msg(&garbled)]),
            Some("chat: wrong message")
        );
        let other = pattern::chat_text(8, 0);
        assert_eq!(
            feed(&mut ledger(), &registry(10), &[msg(&other)]),
            Some("chat: wrong message")
        );
        assert_eq!(
            feed(&mut ledger(), &registry(4), &[msg(&a)]),
            Some("chat: message never sent")
        );
    }

    #[test]
    fn after_a_join_the_first_message_must_be_the_senders_first() {
        let joined = ChatEventRef::Joined {
            name: "m7",
            online: 2,
        };
        let (first, second) = (say(0), say(1));
        assert_eq!(
            feed(
                &mut ledger(),
                &registry(5),
                &[joined.clone(), msg(&first), msg(&second)]
            ),
            None
        );
        assert_eq!(
            feed(&mut ledger(), &registry(5), &[joined, msg(&second)]),
            Some("chat: messages lost")
        );
    }

    #[test]
    fn a_leave_must_come_after_the_senders_last_message() {
        let left = ChatEventRef::Left {
            name: "m7",
            online: 1,
        };
        let (a, b) = (say(2), say(3));
        let mut done = registry(4);
        done.departed.insert(7, Departure::Sent(4));
        assert_eq!(
            feed(&mut ledger(), &done, &[msg(&a), msg(&b), left.clone()]),
            None
        );
        assert_eq!(
            feed(&mut ledger(), &done, &[msg(&a), left.clone()]),
            Some("chat: messages lost")
        );
        // A reset may lose the last ones; a leave nobody asked for is a failure.
        done.departed.insert(7, Departure::Reset);
        assert_eq!(feed(&mut ledger(), &done, &[msg(&a), left.clone()]), None);
        assert_eq!(
            feed(&mut ledger(), &registry(4), &[msg(&a), left]),
            Some("chat: left unasked")
        );
    }

    #[test]
    fn rosters_must_be_asked_for_and_hold_the_member() {
        let mut l = ledger();
        let roster = ChatEventRef::Roster {
            names: vec!["m1", "m7"],
        };
        assert_eq!(
            feed(&mut l, &registry(0), std::slice::from_ref(&roster)),
            Some("chat: roster unasked")
        );
        l.asked_who = Some(Instant::now());
        assert_eq!(feed(&mut l, &registry(0), &[roster]), None);
        l.asked_who = Some(Instant::now());
        let without = ChatEventRef::Roster { names: vec!["m7"] };
        assert_eq!(
            feed(&mut l, &registry(0), &[without]),
            Some("chat: roster without me")
        );
    }

    #[test]
    fn nothing_but_a_welcome_may_come_first() {
        let shared = shared();
        let mut l = ledger();
        let joining = State::Joining(Instant::now());
        let welcome = ChatEventRef::Welcome {
            online: 1,
            addr: None,
        };
        assert_eq!(l.check(&welcome, &joining, &registry(0), &shared), Ok(true));
        let text = say(0);
        let early = l.check(&msg(&text), &joining, &registry(1), &shared);
        assert_eq!(early.unwrap_err().0, "chat: event before the welcome");
    }
}
