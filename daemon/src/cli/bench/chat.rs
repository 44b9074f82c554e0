//! `netlab bench chat`: N clients join a chat room, M of them send, and
//! every client checks and times what the room delivers.
//!
//! Flow control is a bounded window per sender, not a fixed rate: a sender
//! writes as fast as the room takes messages, but keeps at most `--window`
//! of them in flight (sent and not yet seen by every other client). A
//! server is then measured at the load it sustains, its latency is not
//! that of an ever-growing backlog, and every server sees the same offered
//! load, whatever its speed.

mod generator;
mod payload;
mod report;

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use mio::{Poll, Waker};
use netlab::client::chat::ChatEventDecoder;
use netlab::client::{ChatClient, ClientError, Dialect};
use netlab::codec::HeaderCodec;
use netlab::codec::chat::ChatCodec;

use super::super::{BenchChatArgs, ChatProtocol, exit, fail};
use super::stats::Window;
use super::{println_or_broken_pipe, split};
use generator::{ChatStats, Client, Encoder, LineBuf, Parser, Shared, WAKER, WsBuf};
use report::ChatReport;

pub(in crate::cli) const BENCH_CHAT_HELP: &str = "\
Each sender keeps at most --window messages in flight: sent, and not yet
received by every other client. It writes whatever its window allows, up to
--batch messages in one write, as soon as the window opens, so the room runs
at the rate it sustains and latency is not that of a backlog that grows for
the whole run. With --batch below --window several batches are in flight and
the server relays one while the receivers read another; with --batch equal
to --window (the default) the load moves in lock-step, one batch at a time.

Every message is SIZE bytes of text that carries its sender, a sequence
number and its send time; receivers find it at the end of whatever the
server delivers, so a prefix such as `[name] ` or ncat's `<user5> ` needs no
configuration. Reports messages sent/s, deliveries/s (one message received
by one client), delivery latency p50/p99/p99.9/max (send to receipt), and
lost (sequence gaps), out-of-order, malformed (a stamp that does not read)
and broken connections. Only what happens after the warmup and within
--duration counts.

--protocol netlab joins each client with a name (bench<pid>-<i>) and waits
for its welcome; --protocol ncat sends no name and reads raw lines, for
`ncat -l --chat`. With ncat keep window*(size+1) under 8 KiB, ncat's read
size, or a read may cut a message and ncat's prefix lands inside it.
With --dialect websocket each client upgrades at /ws, then joins with a
JSON hello; readers never write, so keep runs under two of the server's
ping intervals (netlabd: 30 s), or they are pinged and closed.

Exit status:
  0  the run completed without errors
  1  the run completed, but messages were lost, reordered or malformed, or
     connections broke
  2  usage error
  3  timeout while connecting
  4  other error: could not connect or join, or nothing was delivered";

pub(in crate::cli) fn run(args: &BenchChatArgs) -> u8 {
    if let Err(reason) = check(args) {
        eprintln!("netlab: {reason}");
        return exit::USAGE;
    }
    let threads = args.threads.min(args.clients);
    let dialect = args.dialect();
    let clients = match connect_all(args, &dialect) {
        Ok(clients) => clients,
        Err(err) => return fail(&err),
    };
    let stats = match run_threads(args, threads, dialect, clients) {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("netlab: bench chat {}: {e}", args.addrs_text());
            return exit::IO;
        }
    };

    let report = ChatReport::new(args, threads, &stats);
    let text = if args.json {
        report.to_json()
    } else {
        report.to_text()
    };
    if let Err(e) = println_or_broken_pipe(&text) {
        eprintln!("netlab: write the report: {e}");
        return exit::IO;
    }
    if stats.deliveries == 0 {
        eprintln!("netlab: no message was delivered in the measured window");
        exit::IO
    } else if stats.lost + stats.out_of_order + stats.malformed + stats.errors > 0 {
        exit::MISMATCH
    } else {
        exit::OK
    }
}

fn check(args: &BenchChatArgs) -> Result<(), String> {
    if args.clients < 2 {
        return Err("--clients must be at least 2: a sender and a receiver".into());
    }
    if args.senders == 0 || args.senders > args.clients {
        return Err(format!(
            "--senders must be between 1 and --clients ({})",
            args.clients
        ));
    }
    if args.senders > usize::from(u16::MAX) {
        return Err(format!("--senders must be at most {}", u16::MAX));
    }
    if args.size < payload::HEADER_LEN {
        return Err(format!(
            "--size must be at least {} bytes: the send time and sequence take that",
            payload::HEADER_LEN
        ));
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if args.window == 0 {
        return Err("--window must be at least 1".into());
    }
    if args.batch == Some(0) {
        return Err("--batch must be at least 1".into());
    }
    if args.duration.is_zero() || args.timeout.is_zero() {
        return Err("--duration and --timeout must be greater than zero".into());
    }
    if !(1..=HeaderCodec::MAX_HEADER_LEN).contains(&args.header_len) {
        return Err(format!(
            "--header-len must be between 1 and {}, as a listener's header_len",
            HeaderCodec::MAX_HEADER_LEN
        ));
    }
    Ok(())
}

/// Opens every client, one after the other: with `netlab`, each is named
/// and welcomed before the next connects. The senders join the first
/// address, the others each address in turn.
fn connect_all(args: &BenchChatArgs, dialect: &Dialect) -> Result<Vec<Client>, ClientError> {
    let pid = std::process::id();
    (0..args.clients)
        .map(|index| {
            let (stream, parser) = match args.protocol {
                ChatProtocol::Netlab => {
                    let name = format!("bench{pid}-{index}");
                    let client = ChatClient::connect(
                        args.addr_of(index),
                        &name,
                        dialect.clone(),
                        args.timeout,
                    )?;
                    let (stream, decoder) = client.into_parts()?;
                    (stream, parser_for(dialect, decoder))
                }
                ChatProtocol::Ncat => {
                    let (stream, lines) = join_ncat(args, args.addr_of(index))?;
                    (stream, Parser::Lines(lines))
                }
            };
            Ok(Client {
                index,
                stream,
                parser,
            })
        })
        .collect()
}

/// The line dialect is read as raw lines, the stamp at the end of each
/// (as for ncat), and the websocket dialect as raw frames, the stamp at the
/// end of each message's JSON: decoding each into an event would cost the
/// generator more than the server spends relaying it. The other dialects
/// need their decoders to find where a message ends.
fn parser_for(dialect: &Dialect, decoder: ChatEventDecoder) -> Parser {
    match dialect {
        Dialect::Line => {
            let mut lines = LineBuf::default();
            lines.extend(decoder.pending());
            Parser::Lines(lines)
        }
        Dialect::WebSocket(_) => {
            let mut frames = WsBuf::default();
            frames.extend(decoder.pending());
            Parser::WebSocket(frames)
        }
        _ => Parser::Events(decoder),
    }
}

/// Connects to ncat and waits for its first line (`<announce> ... is
/// connected as <userN>.`): ncat has then accepted the client, and relays
/// to it every message sent from now on. Without this, messages sent while
/// ncat is still accepting would never reach the latecomers, and their
/// senders' windows would never open again.
fn join_ncat(args: &BenchChatArgs, addr: SocketAddr) -> Result<(TcpStream, LineBuf), ClientError> {
    let io_error = |what: &str, e| ClientError::from_io(format!("{what} {addr}"), e, args.timeout);
    let mut stream =
        TcpStream::connect_timeout(&addr, args.timeout).map_err(|e| io_error("connect", e))?;
    stream
        .set_nodelay(true)
        .map_err(|e| io_error("set up", e))?;
    stream
        .set_read_timeout(Some(args.timeout))
        .map_err(|e| io_error("set up", e))?;
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !first.contains(&b'\n') {
        let n = stream
            .read(&mut buf)
            .map_err(|e| io_error("wait for the greeting of", e))?;
        if n == 0 {
            return Err(ClientError::Closed {
                context: format!("wait for the greeting of {addr}"),
            });
        }
        first.extend_from_slice(&buf[..n]);
    }
    let mut lines = LineBuf::default();
    lines.extend(&first);
    Ok((stream, lines))
}

fn encoder_of(args: &BenchChatArgs, dialect: Dialect) -> Encoder {
    match (args.protocol, dialect) {
        (ChatProtocol::Ncat, _) => Encoder::Line,
        // What the generator sends is never refused for its length.
        (ChatProtocol::Netlab, dialect) => Encoder::Dialect(ChatCodec::new(dialect, usize::MAX)),
    }
}

/// Deals the clients to `threads` event loops and runs them to the end of
/// the window; the clock starts once every client has joined.
fn run_threads(
    args: &BenchChatArgs,
    threads: usize,
    dialect: Dialect,
    clients: Vec<Client>,
) -> std::io::Result<ChatStats> {
    let groups = split(clients, threads);
    let mut polls = Vec::with_capacity(threads);
    let mut wakers = Vec::with_capacity(threads);
    for _ in 0..threads {
        let poll = Poll::new()?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
    }
    // `split` deals round robin: client i goes to thread i % threads.
    let sender_thread = (0..args.senders).map(|s| s % threads).collect();
    let start = Instant::now();
    let shared = Shared {
        epoch: start,
        window: Window::new(start, args.warmup, args.duration),
        size: args.size,
        senders: args.senders,
        in_flight: args.window,
        batch: args.batch(),
        encoder: encoder_of(args, dialect),
        acks: (0..threads * args.senders)
            .map(|_| AtomicU64::new(0))
            .collect(),
        wakers,
        sender_thread,
    };
    std::thread::scope(|scope| {
        let shared = &shared;
        let handles = polls
            .into_iter()
            .zip(groups)
            .enumerate()
            .map(|(i, (poll, group))| {
                std::thread::Builder::new()
                    .name(format!("bench-chat-{i}"))
                    .spawn_scoped(scope, move || generator::run(i, poll, group, shared))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut total = ChatStats::new();
        for handle in handles {
            let stats = handle
                .join()
                .map_err(|_| std::io::Error::other("a generator thread panicked"))??;
            total.merge(&stats);
        }
        Ok(total)
    })
}
