//! Helpers for the server integration tests: servers on loopback port 0,
//! clients whose every blocking operation has a timeout, random data, and
//! a look at the test process's children for the fork model.

#![allow(dead_code)] // Each test binary uses a different part of this.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use netlab::config::ServerConfig;
use netlab::server::{BoundServer, RunningServer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// How long any single blocking socket operation may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The TCP models, to run the same test under each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Event,
    Thread,
    Fork,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::Event => "event",
            Model::Thread => "thread",
            Model::Fork => "fork",
        }
    }
}

/// Parses one server's TOML keys, binds and starts it.
pub fn start(toml: &str) -> RunningServer {
    let config = ServerConfig::parse(toml, "test")
        .unwrap_or_else(|e| panic!("bad test config:\n{toml}\n{e}"));
    let bound = BoundServer::bind(&config).unwrap_or_else(|e| panic!("bind: {e}"));
    assert!(!bound.local_addrs().is_empty());
    let running = netlab::host::start(bound).unwrap_or_else(|e| panic!("start: {e}"));
    assert_eq!(running.local_addrs().len(), config.listen.len());
    running
}

/// A TCP server of `service` under `model` on 127.0.0.1:0, with `extra` keys.
/// The event model gets two workers, so that two reactors are exercised.
pub fn tcp_server(name: &str, service: &str, model: Model, extra: &str) -> RunningServer {
    let workers = if model == Model::Event && !extra.contains("workers") {
        "workers = 2\n"
    } else {
        ""
    };
    start(&format!(
        "name = \"{name}\"\nservice = \"{service}\"\nlisten = [\"127.0.0.1:0\"]\nmodel = \"{}\"\n{workers}{extra}\n",
        model.name()
    ))
}

/// The server's first address.
pub fn addr(server: &RunningServer) -> SocketAddr {
    server.local_addrs()[0]
}

/// Connects with every blocking operation bounded by [`IO_TIMEOUT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Reads until EOF; a timeout or error fails the test.
pub fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("read to EOF failed after {} bytes: {e}", out.len()));
    out
}

/// Reads exactly `n` bytes.
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = vec![0; n];
    s.read_exact(&mut out)
        .unwrap_or_else(|e| panic!("reading {n} bytes failed: {e}"));
    out
}

/// Writes `msg`, expects it echoed back (untagged echo), without closing.
pub fn echo_round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    assert_eq!(read_n(s, msg.len()), msg, "echo round trip");
}

/// Whether the connection ends (EOF or reset) within `within`; any bytes
/// received first are returned with it. `None` means it stayed open.
pub fn closed_within(s: &mut TcpStream, within: Duration) -> Option<(Duration, Vec<u8>)> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.saturating_sub(start.elapsed());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some((start.elapsed(), got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Some((start.elapsed(), got));
            }
            Err(e) => panic!("unexpected read error: {e}"),
        }
    }
}

/// Asserts that a connection the server refused is closed at once, without service.
pub fn assert_refused(addr: SocketAddr, what: &str) {
    // The kernel completes the handshake before the server sees the peer, so
    // a refusal shows as an immediate close (EOF or reset), or, if the
    // listener is gone, a refused connect.
    let mut s = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
        Err(e) => panic!("{what}: connect: {e}"),
    };
    let _ = s.write_all(b"anyone there?\n");
    match closed_within(&mut s, Duration::from_secs(2)) {
        Some((_, got)) => assert!(
            got.is_empty(),
            "{what}: refused connection was served: {got:?}"
        ),
        None => panic!("{what}: connection was not closed within 2 s"),
    }
}

/// A seeded generator; the seed is printed so a failure can be replayed
/// with `NETLAB_TEST_SEED=<seed>`.
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("NETLAB_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random::<u64>());
    eprintln!("{test}: NETLAB_TEST_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

pub fn random_bytes(rng: &mut impl RngExt, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v[..]);
    v
}

/// Writes `data` in random-sized pieces.
pub fn write_randomly(s: &mut TcpStream, data: &[u8], rng: &mut impl RngExt, max_piece: usize) {
    let mut at = 0;
    while at < data.len() {
        let n = rng.random_range(1..=max_piece).min(data.len() - at);
        s.write_all(&data[at..at + n])
            .unwrap_or_else(|e| panic!("write at offset {at} failed: {e}"));
        at += n;
    }
}

/// Reads to EOF in random-sized reads.
pub fn read_randomly(
    s: &mut TcpStream,
    rng: &mut impl RngExt,
    max_piece: usize,
    expect_len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(expect_len);
    let mut buf = vec![0u8; max_piece];
    loop {
        let n = rng.random_range(1..=max_piece);
        match s.read(&mut buf[..n]) {
            Ok(0) => return out,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read failed after {} of {expect_len} bytes: {e}", out.len()),
        }
    }
}

/// Writes `data` randomly on a writer thread, half-closes, and reads the
/// whole answer randomly on this one.
pub fn exchange(addr: SocketAddr, data: &[u8], rng: &mut StdRng, expect_len: usize) -> Vec<u8> {
    let mut s = connect(addr);
    let mut w = s.try_clone().unwrap();
    let mut wrng = StdRng::seed_from_u64(rng.random());
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            write_randomly(&mut w, data, &mut wrng, 64 * 1024);
            w.shutdown(Shutdown::Write).unwrap();
        });
        let got = read_randomly(&mut s, rng, 64 * 1024, expect_len);
        writer.join().expect("writer thread");
        got
    })
}

/// Polls `cond` every 10 ms for up to `within`.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `f` on `n` threads at once, each with its index; panics propagate.
pub fn concurrently<F>(n: usize, f: F)
where
    F: Fn(usize) + Sync,
{
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        barrier.wait();
                        f(i)
                    })
                    .expect("spawn client thread")
            })
            .collect();
        let mut failures = Vec::new();
        for (i, h) in handles.into_iter().enumerate() {
            if let Err(e) = h.join() {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("client {i}: {msg}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} client(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

/// Whether `::1` can be used here.
pub fn ipv6_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok() && UdpSocket::bind("[::1]:0").is_ok()
}

// ---- Locks between tests that run in parallel ------------------------------

/// The fork model's children are children of this whole test process. A test
/// that counts them takes this for writing; every other test that starts a
/// fork server takes it for reading.
static FORK_CHILDREN: RwLock<()> = RwLock::new(());
/// Tests with hundreds of concurrent clients run one at a time.
static CROWD: Mutex<()> = Mutex::new(());

pub fn fork_shared() -> RwLockReadGuard<'static, ()> {
    FORK_CHILDREN.read().unwrap_or_else(|e| e.into_inner())
}

pub fn fork_exclusive() -> RwLockWriteGuard<'static, ()> {
    FORK_CHILDREN.write().unwrap_or_else(|e| e.into_inner())
}

/// The fork guard a test of `model` needs (none for the other models).
pub fn model_guard(model: Model) -> Option<RwLockReadGuard<'static, ()>> {
    (model == Model::Fork).then(fork_shared)
}

pub fn crowd() -> MutexGuard<'static, ()> {
    CROWD.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- The test process's children -------------------------------------------

/// A child process of this test process, from /proc/<pid>/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Child {
    pub pid: u32,
    pub state: char,
}

/// Every process whose parent is this test process.
pub fn children() -> Vec<Child> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // The process may be gone by now.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|s| s.parse::<u32>().ok());
        if ppid == Some(me) {
            out.push(Child { pid, state });
        }
    }
    out
}
