//! One generator thread: a mio event loop over its share of the clients.
//! Every client reads and checks what the room delivers; the senders among
//! them also write messages, each keeping at most `window` messages in
//! flight (sent, but not yet seen by every other client). Threads tell one
//! another how far their clients have read through shared counters, and
//! wake a sender's thread when its window opens.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use netlab::chat::ClientMsg;
use netlab::client::chat::{ChatEventDecoder, ChatEventRef};
use netlab::codec::chat::ChatCodec;

use super::super::stats::Window;
use super::payload::{self, Stamp};

pub(super) const WAKER: Token = Token(usize::MAX);
const SCRATCH: usize = 64 * 1024;
/// Latencies in nanoseconds up to a minute, 3 significant digits.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// How a client's bytes become messages.
pub(super) enum Parser {
    /// A netlab dialect: the room's events, of which messages count.
    Events(ChatEventDecoder),
    /// Raw lines (ncat's chat): a line holding a bench stamp is a message
    /// whatever precedes it.
    Lines(LineBuf),
}

/// What one parsed item is to the bench.
enum Item<'a> {
    /// A message's text (or a line that may hold one).
    Text(&'a [u8]),
    /// A notice, a welcome, anything that is not a message.
    Other,
}

impl Parser {
    fn extend(&mut self, bytes: &[u8]) {
        match self {
            Parser::Events(d) => d.extend(bytes),
            Parser::Lines(l) => l.extend(bytes),
        }
    }

    fn next(&mut self) -> Result<Option<Item<'_>>, String> {
        match self {
            Parser::Events(d) => Ok(d.next_event()?.map(|event| match event {
                ChatEventRef::Message { text, .. } => Item::Text(text.as_bytes()),
                _ => Item::Other,
            })),
            Parser::Lines(l) => Ok(l.next_line().map(Item::Text)),
        }
    }
}

/// Bytes split into lines; a `\r` before the `\n` is dropped. Lines are
/// short, so consumed bytes are dropped once per read, not per line.
#[derive(Default)]
pub(super) struct LineBuf {
    bytes: Vec<u8>,
    start: usize,
}

impl LineBuf {
    pub(super) fn extend(&mut self, bytes: &[u8]) {
        self.bytes.drain(..self.start);
        self.start = 0;
        self.bytes.extend_from_slice(bytes);
    }

    fn next_line(&mut self) -> Option<&[u8]> {
        let rest = &self.bytes[self.start..];
        let nl = find_newline(rest)?;
        self.start += nl + 1;
        let line = &rest[..nl];
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }
}

/// The first `\n` in `bytes`: the generator scans every byte the room
/// delivers, and memchr's vector search is what keeps that cheaper than
/// the server's work of relaying them.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// How a sender's text goes on the wire.
#[derive(Debug, Clone, Copy)]
pub(super) enum Encoder {
    /// As a client of this dialect sends a message.
    Dialect(ChatCodec),
    /// The text and `\n` (ncat).
    Line,
}

impl Encoder {
    fn push(&self, text: &[u8], out: &mut Vec<u8>) {
        match self {
            Encoder::Dialect(codec) => {
                // Bench texts are ASCII, so this never falls back.
                let text = std::str::from_utf8(text).unwrap_or_default();
                codec.encode_client_msg(ClientMsg::Say { text }, out);
            }
            Encoder::Line => {
                out.extend_from_slice(text);
                out.push(b'\n');
            }
        }
    }
}

/// What every thread shares.
pub(super) struct Shared {
    pub(super) epoch: Instant,
    pub(super) window: Window,
    pub(super) size: usize,
    pub(super) senders: usize,
    pub(super) in_flight: u64,
    /// Most messages in one write.
    pub(super) batch: u64,
    pub(super) encoder: Encoder,
    /// `acks[thread * senders + s]`: the lowest next-expected sequence of
    /// sender `s` among that thread's live receivers (`u64::MAX` if none).
    pub(super) acks: Vec<AtomicU64>,
    pub(super) wakers: Vec<Arc<Waker>>,
    /// The thread that owns each sender.
    pub(super) sender_thread: Vec<usize>,
}

impl Shared {
    /// The sequence number below which sender `s`'s messages reached every
    /// receiver.
    fn ack(&self, s: usize) -> u64 {
        (0..self.wakers.len())
            .map(|t| self.acks[t * self.senders + s].load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }
}

/// One connected client handed to a thread.
pub(super) struct Client {
    /// Its index among all clients; the first `senders` send.
    pub(super) index: usize,
    pub(super) stream: std::net::TcpStream,
    pub(super) parser: Parser,
}

#[derive(Debug, Clone)]
pub(super) struct ChatStats {
    pub(super) latency_ns: Histogram<u64>,
    /// Messages written in the measured window.
    pub(super) sent: u64,
    /// Messages received in the measured window, each by one client.
    pub(super) deliveries: u64,
    /// Sequence numbers skipped, over the whole run.
    pub(super) lost: u64,
    /// Messages that came after a later one of the same sender.
    pub(super) out_of_order: u64,
    /// Messages (or lines holding a stamp's marker) whose stamp did not read.
    pub(super) malformed: u64,
    /// Connections that broke.
    pub(super) errors: u64,
}

impl ChatStats {
    pub(super) fn new() -> Self {
        ChatStats {
            latency_ns: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .expect("constant histogram bounds are valid"),
            sent: 0,
            deliveries: 0,
            lost: 0,
            out_of_order: 0,
            malformed: 0,
            errors: 0,
        }
    }

    pub(super) fn merge(&mut self, other: &ChatStats) {
        let _ = self.latency_ns.add(&other.latency_ns);
        self.sent += other.sent;
        self.deliveries += other.deliveries;
        self.lost += other.lost;
        self.out_of_order += other.out_of_order;
        self.malformed += other.malformed;
        self.errors += other.errors;
    }
}

struct Sending {
    sender: usize,
    seq: u64,
    out: Vec<u8>,
    written: usize,
}

struct Conn {
    stream: Option<TcpStream>,
    parser: Parser,
    /// The next sequence number expected from each sender.
    next_seq: Vec<u64>,
    sending: Option<Sending>,
}

/// Runs thread `me`'s clients until the window ends.
pub(super) fn run(
    me: usize,
    mut poll: Poll,
    clients: Vec<Client>,
    shared: &Shared,
) -> io::Result<ChatStats> {
    let mut stats = ChatStats::new();
    let mut conns = Vec::with_capacity(clients.len());
    for (i, client) in clients.into_iter().enumerate() {
        client.stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(client.stream);
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream: Some(stream),
            parser: client.parser,
            next_seq: vec![0; shared.senders],
            sending: (client.index < shared.senders).then(|| Sending {
                sender: client.index,
                seq: 0,
                out: Vec::new(),
                written: 0,
            }),
        });
    }
    let mut local_acks = vec![0u64; shared.senders];
    publish_acks(me, &conns, shared, &mut local_acks);

    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; SCRATCH];
    let mut text = Vec::with_capacity(shared.size);
    loop {
        for (i, conn) in conns.iter_mut().enumerate() {
            if let Err(e) = conn.fill(shared, &mut stats, &mut text) {
                conn.break_off(&poll, &mut stats, i, &e);
            }
        }
        let now = Instant::now();
        if now >= shared.window.end {
            break;
        }
        match poll.poll(&mut events, Some(shared.window.end - now)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        let mut received = false;
        for event in &events {
            let token = event.token();
            let Some(conn) = conns.get_mut(token.0) else {
                continue;
            };
            let read_to_eof = event.is_read_closed() || event.is_error();
            if event.is_readable() || read_to_eof {
                // Reading, or breaking off, may move this thread's acks.
                received = true;
                if let Err(e) = conn.receive(shared, &mut stats, &mut scratch, read_to_eof) {
                    conn.break_off(&poll, &mut stats, token.0, &e);
                }
            }
            if event.is_writable()
                && let Err(e) = conn.flush()
            {
                conn.break_off(&poll, &mut stats, token.0, &e);
            }
        }
        if received {
            publish_acks(me, &conns, shared, &mut local_acks);
        }
    }
    Ok(stats)
}

/// Publishes how far this thread's live receivers have read each sender,
/// and wakes the thread of a sender whose window this opens.
fn publish_acks(me: usize, conns: &[Conn], shared: &Shared, local: &mut [u64]) {
    for (s, previous) in local.iter_mut().enumerate() {
        let ack = conns
            .iter()
            .filter(|c| c.stream.is_some())
            .filter(|c| c.sending.as_ref().is_none_or(|x| x.sender != s))
            .map(|c| c.next_seq[s])
            .min()
            .unwrap_or(u64::MAX);
        if ack != *previous {
            *previous = ack;
            shared.acks[me * shared.senders + s].store(ack, Ordering::Release);
            let owner = shared.sender_thread[s];
            if owner != me {
                let _ = shared.wakers[owner].wake();
            }
        }
    }
}

impl Conn {
    /// A sender with nothing left to write writes as many new messages as
    /// its window has room for, in one write.
    fn fill(
        &mut self,
        shared: &Shared,
        stats: &mut ChatStats,
        text: &mut Vec<u8>,
    ) -> io::Result<()> {
        let Some(sending) = &mut self.sending else {
            return Ok(());
        };
        if self.stream.is_none() || sending.written < sending.out.len() {
            return Ok(());
        }
        let in_flight = sending.seq.saturating_sub(shared.ack(sending.sender));
        let room = shared.in_flight.saturating_sub(in_flight).min(shared.batch);
        if room == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let sent_ns = nanos_since(shared.epoch, now);
        sending.out.clear();
        sending.written = 0;
        for _ in 0..room {
            text.clear();
            let stamp = Stamp {
                sender: sending.sender as u16,
                seq: sending.seq,
                sent_ns,
            };
            payload::write(text, shared.size, stamp);
            shared.encoder.push(text, &mut sending.out);
            sending.seq += 1;
        }
        if shared.window.measuring(now) {
            stats.sent += room;
        }
        self.flush()
    }

    /// Writes what is left of the sender's batch.
    fn flush(&mut self) -> io::Result<()> {
        let (Some(stream), Some(sending)) = (&mut self.stream, &mut self.sending) else {
            return Ok(());
        };
        super::super::write_on(stream, &sending.out, &mut sending.written)
    }

    /// Reads what arrived and checks every message in it. A read that does
    /// not fill `scratch` drained the socket (readiness is edge-triggered),
    /// so the read that would only say `WouldBlock` is skipped.
    fn receive(
        &mut self,
        shared: &Shared,
        stats: &mut ChatStats,
        scratch: &mut [u8],
        read_to_eof: bool,
    ) -> io::Result<()> {
        loop {
            let Some(stream) = &mut self.stream else {
                return Ok(());
            };
            let n = match stream.read(scratch) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.parser.extend(&scratch[..n]);
            let now = Instant::now();
            let now_ns = nanos_since(shared.epoch, now);
            let measuring = shared.window.measuring(now);
            // A message without a readable stamp is malformed; a raw line
            // without the marker is a server's notice.
            let strict = matches!(self.parser, Parser::Events(_));
            let mut latencies = Run::default();
            loop {
                let item = self
                    .parser
                    .next()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let text = match item {
                    None => break,
                    Some(Item::Other) => continue,
                    Some(Item::Text(text)) => text,
                };
                let Some(stamp) = payload::read(text, shared.size)
                    .filter(|s| usize::from(s.sender) < shared.senders)
                else {
                    if strict || text.contains(&b'#') {
                        stats.malformed += 1;
                    }
                    continue;
                };
                let next = &mut self.next_seq[usize::from(stamp.sender)];
                if stamp.seq >= *next {
                    stats.lost += stamp.seq - *next;
                    *next = stamp.seq + 1;
                } else {
                    stats.out_of_order += 1;
                }
                if measuring {
                    stats.deliveries += 1;
                    latencies.record(
                        now_ns.saturating_sub(stamp.sent_ns).max(1),
                        &mut stats.latency_ns,
                    );
                }
            }
            latencies.flush_into(&mut stats.latency_ns);
            if n < scratch.len() && !read_to_eof {
                return Ok(());
            }
        }
    }

    /// Counts the error and drops the connection for the rest of the run;
    /// it no longer holds its senders' windows back.
    fn break_off(&mut self, poll: &Poll, stats: &mut ChatStats, index: usize, err: &io::Error) {
        log::warn!("bench chat client {index}: {err}");
        stats.errors += 1;
        if let Some(mut stream) = self.stream.take() {
            let _ = poll.registry().deregister(&mut stream);
        }
    }
}

/// Equal latencies in a row, recorded as one count. The messages of one
/// sender's batch share a send time and those of one read a receive time,
/// so most deliveries repeat the latency before them, and one histogram
/// update per run instead of per delivery records exactly the same thing.
#[derive(Default)]
struct Run {
    value: u64,
    count: u64,
}

impl Run {
    fn record(&mut self, value: u64, histogram: &mut Histogram<u64>) {
        if value != self.value {
            self.flush_into(histogram);
            self.value = value;
        }
        self.count += 1;
    }

    /// Records the pending run in `histogram`.
    fn flush_into(&mut self, histogram: &mut Histogram<u64>) {
        if self.count > 0 {
            histogram.saturating_record_n(self.value, self.count);
        }
        self.count = 0;
    }
}

fn nanos_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_anywhere_come_out_whole() {
        let mut lines = LineBuf::default();
        lines.extend(b"<user5> one\r\ntw");
        assert_eq!(lines.next_line(), Some(&b"<user5> one"[..]));
        assert_eq!(lines.next_line(), None);
        lines.extend(b"o\nthree\n");
        assert_eq!(lines.next_line(), Some(&b"two"[..]));
        assert_eq!(lines.next_line(), Some(&b"three"[..]));
        assert_eq!(lines.next_line(), None);
    }

    #[test]
    fn runs_of_latencies_record_what_each_one_would() {
        let values = [5, 5, 5, 7, 5, 5, 9, 9, 1_000_000, 1_000_000, 3];
        let mut one_by_one = ChatStats::new().latency_ns;
        let mut in_runs = one_by_one.clone();
        let mut run = Run::default();
        for &v in &values {
            one_by_one.saturating_record(v);
            run.record(v, &mut in_runs);
        }
        run.flush_into(&mut in_runs);
        assert_eq!(in_runs.len(), values.len() as u64);
        assert_eq!(in_runs, one_by_one);
    }

    #[test]
    fn newlines_are_found_wherever_they_are() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![0x8au8; len];
                if at < len {
                    bytes[at] = b'\n';
                }
                let want = (at < len).then_some(at);
                assert_eq!(find_newline(&bytes), want, "len {len} at {at}");
            }
        }
        assert_eq!(find_newline(b"\x0b\x0a"), Some(1));
    }
}
