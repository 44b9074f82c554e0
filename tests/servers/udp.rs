//! UDP echo, with one worker and with two (SO_REUSEPORT): bulk data in a
//! window with retries, many clients at once, dropped source ports, stop.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use netlab::server::RunningServer;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::common::*;

fn udp_server(name: &str, workers: usize, extra: &str) -> RunningServer {
    start(&format!(
        "name = \"{name}\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\nworkers = {workers}\n{extra}\n"
    ))
}

fn client_socket(local: &str) -> UdpSocket {
    let s = UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Sends `payloads` to `server`, at most `window` unanswered at a time, each
/// tagged with its sequence number; resends what is unanswered after 250 ms.
/// Every reply must be exactly what was sent. Returns the resends needed.
fn exchange_datagrams(
    sock: &UdpSocket,
    server: SocketAddr,
    payloads: &[Vec<u8>],
    window: usize,
) -> usize {
    let frame = |seq: usize| {
        let mut d = (seq as u64).to_be_bytes().to_vec();
        d.extend_from_slice(&payloads[seq]);
        d
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut pending: HashMap<usize, Instant> = HashMap::new();
    let mut next = 0;
    let mut answered = 0;
    let mut resends = 0;
    let mut buf = vec![0u8; 65_536];
    while answered < payloads.len() {
        assert!(
            Instant::now() < deadline,
            "{answered} of {} datagrams answered after 20 s",
            payloads.len()
        );
        while pending.len() < window && next < payloads.len() {
            sock.send_to(&frame(next), server).unwrap();
            pending.insert(next, Instant::now());
            next += 1;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                assert_eq!(from, server, "reply from elsewhere");
                assert!(n >= 8, "short reply of {n} bytes");
                let seq = u64::from_be_bytes(buf[..8].try_into().unwrap()) as usize;
                assert!(
                    seq < payloads.len(),
                    "reply with unknown sequence number {seq}"
                );
                assert!(
                    buf[8..n] == payloads[seq][..],
                    "reply {seq} differs from what was sent"
                );
                // A resent datagram may be answered twice.
                if pending.remove(&seq).is_some() {
                    answered += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("recv: {e}"),
        }
        let now = Instant::now();
        for (&seq, sent) in pending.iter_mut() {
            if now.duration_since(*sent) > Duration::from_millis(250) {
                sock.send_to(&frame(seq), server).unwrap();
                *sent = now;
                resends += 1;
            }
        }
    }
    resends
}

/// Random-sized payloads totalling `total` bytes.
fn random_payloads(rng: &mut impl RngExt, total: usize, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut sum = 0;
    while sum < total {
        let n = rng.random_range(0..=max).min(total - sum).max(1);
        sum += n;
        out.push(random_bytes(rng, n));
    }
    out
}

fn one_mib(workers: usize) {
    let server = udp_server("udp-mib", workers, "");
    let at = addr(&server);
    let mut rng = rng(&format!("udp_one_mib/workers={workers}"));
    // Several client sockets (source ports), so that SO_REUSEPORT spreads
    // them over the workers.
    let clients = 4;
    let seeds: Vec<u64> = (0..clients).map(|_| rng.random()).collect();
    let resends: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    let payloads = random_payloads(&mut rng, (1 << 20) / clients, 8192);
                    let sock = client_socket("127.0.0.1:0");
                    (exchange_datagrams(&sock, at, &payloads, 16), payloads.len())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (resends, n) = h.join().expect("UDP client");
                eprintln!("udp_one_mib/workers={workers}: {n} datagrams, {resends} resent");
                resends
            })
            .sum()
    });
    let stats = server.stats();
    assert!(stats.datagrams > 0, "{stats:?}");
    assert_eq!(stats.dropped, 0);
    eprintln!("udp_one_mib/workers={workers}: {resends} resends in all; {stats:?}");
}

#[test]
fn one_mib_in_random_datagrams() {
    one_mib(1);
}

#[test]
fn one_mib_in_random_datagrams_two_workers() {
    one_mib(2);
}

fn many_clients(workers: usize) {
    let _crowd = crowd();
    let server = udp_server("udp-crowd", workers, "");
    let at = addr(&server);
    let base: u64 = rng(&format!("udp_many_clients/workers={workers}")).random();
    concurrently(200, |i| {
        let mut rng = StdRng::seed_from_u64(base.wrapping_add(i as u64));
        let payloads: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                let n = rng.random_range(1..=1400);
                random_bytes(&mut rng, n)
            })
            .collect();
        let sock = client_socket("127.0.0.1:0");
        exchange_datagrams(&sock, at, &payloads, 4);
    });
    assert!(
        eventually(Duration::from_secs(1), || server.stats().datagrams >= 800),
        "{:?}",
        server.stats()
    );
}

#[test]
fn two_hundred_clients_at_once() {
    many_clients(1);
}

#[test]
fn two_hundred_clients_at_once_two_workers() {
    many_clients(2);
}

/// A datagram from a port in drop_source_ports gets no reply and is counted;
/// another sender is answered.
#[test]
fn drop_source_ports() {
    for workers in [1, 2] {
        let dropped = client_socket("127.0.0.1:0");
        let port = dropped.local_addr().unwrap().port();
        let server = udp_server(
            "udp-drop",
            workers,
            &format!("drop_source_ports = [{port}]"),
        );
        let at = addr(&server);
        dropped
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        dropped.send_to(b"reflect me", at).unwrap();
        let mut buf = [0u8; 64];
        match dropped.recv_from(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!("a datagram from a dropped port got {other:?}"),
        }
        assert!(
            eventually(Duration::from_secs(1), || server.stats().dropped == 1),
            "{:?}",
            server.stats()
        );
        let other = client_socket("127.0.0.1:0");
        exchange_datagrams(&other, at, &[b"answer me".to_vec()], 1);
        // The reply may arrive before the server has counted it.
        assert!(
            eventually(Duration::from_secs(1), || server.stats().datagrams == 1),
            "workers = {workers}: {:?}",
            server.stats()
        );
        assert_eq!(server.stats().dropped, 1, "workers = {workers}");
    }
}

/// allow/deny hold for UDP as for TCP: a datagram from a denied address gets
/// no reply and is counted as refused; a permitted one is answered.
#[test]
fn access_lists_hold_for_datagrams() {
    for (rules, served) in [
        ("deny = [\"127.0.0.0/8\"]", false),
        ("allow = [\"10.0.0.0/8\"]", false),
        ("allow = [\"127.0.0.1/32\"]\ndeny = [\"10.0.0.0/8\"]", true),
    ] {
        let server = udp_server("udp-acl", 1, rules);
        let sock = client_socket("127.0.0.1:0");
        if served {
            exchange_datagrams(&sock, addr(&server), &[b"let in".to_vec()], 1);
            assert_eq!(server.stats().refused, 0, "{rules}");
            continue;
        }
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        sock.send_to(b"keep out", addr(&server)).unwrap();
        let mut buf = [0u8; 64];
        match sock.recv_from(&mut buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            other => panic!("{rules}: a denied datagram got {other:?}"),
        }
        assert!(
            eventually(Duration::from_secs(1), || server.stats().refused == 1),
            "{rules}: {:?}",
            server.stats()
        );
        assert_eq!(server.stats().datagrams, 0, "{rules}");
    }
}

/// The default list drops the reflection ports; an ordinary port is answered.
#[test]
fn default_drop_list_answers_ordinary_ports() {
    let server = udp_server("udp-default", 1, "");
    let sock = client_socket("127.0.0.1:0");
    exchange_datagrams(
        &sock,
        addr(&server),
        &[b"x".to_vec(), vec![0; 1], vec![7; 65_000]],
        3,
    );
    // An empty datagram is echoed as an empty datagram.
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 16];
    let answered = (0..5).any(|_| {
        sock.send_to(b"", addr(&server)).unwrap();
        matches!(sock.recv_from(&mut buf), Ok((0, _)))
    });
    assert!(answered, "no empty reply to an empty datagram");
    assert_eq!(server.stats().dropped, 0);
}

/// stop() returns promptly, and then nothing is answered.
#[test]
fn stop_is_prompt_and_final() {
    for workers in [1, 2] {
        let server = udp_server("udp-stop", workers, "");
        let at = addr(&server);
        let sock = client_socket("127.0.0.1:0");
        exchange_datagrams(&sock, at, &[b"before".to_vec()], 1);
        let t = Instant::now();
        server.stop(Duration::from_millis(300));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "stop took {:?}",
            t.elapsed()
        );
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = sock.send_to(b"after", at);
        let mut buf = [0u8; 16];
        // A timeout, or the ICMP port unreachable as an error: both are fine.
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            panic!("answered after stop: {:?} from {from}", &buf[..n]);
        }
    }
}

/// An address a UDP server serves is refused to a second one, whatever
/// either's workers: SO_REUSEPORT must not let a second group in, which
/// would take half of the first one's datagrams.
#[test]
fn an_address_in_use_is_refused_with_reuseport_too() {
    for (first, second) in [(2, 2), (2, 1), (1, 2), (3, 4)] {
        let server = udp_server("udp-first", first, "");
        let addr = server.local_addrs()[0];
        let config = netlab::config::ServerConfig::parse(
            &format!(
                "name = \"udp-second\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"{addr}\"]\nworkers = {second}\n"
            ),
            "test",
        )
        .unwrap();
        let err = netlab::server::BoundServer::bind(&config)
            .map(|_| ())
            .expect_err("a second server bound an address in use");
        assert_eq!(
            err.source.kind(),
            io::ErrorKind::AddrInUse,
            "workers {first} then {second}: {err}"
        );
        // The first still gets every datagram.
        let client = client_socket("127.0.0.1:0");
        for i in 0..20u8 {
            client.send_to(&[i], addr).unwrap();
            let mut buf = [0u8; 4];
            let deadline = Instant::now() + IO_TIMEOUT;
            loop {
                match client.recv_from(&mut buf) {
                    Ok((1, from)) if from == addr && buf[0] == i => break,
                    Ok(_) => {}
                    Err(e) if Instant::now() < deadline && is_timeout(&e) => {
                        client.send_to(&[i], addr).unwrap();
                    }
                    Err(e) => panic!("datagram {i}: {e}"),
                }
            }
        }
        server.stop(Duration::ZERO);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
