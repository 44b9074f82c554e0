//! TCP echo and count under every model (event, thread, fork): bulk data,
//! many clients at once, half-close, graceful stop, limits, access lists and
//! idle timeouts. Each test is written once and instantiated per model at
//! the bottom of this file (`stream::event::*`, `stream::thread::*`,
//! `stream::fork::*`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::common::*;

/// The two stream services, with what they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Echo,
    Count,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Count => "count",
        }
    }

    /// A message and the whole answer to it (count: line framing, chars).
    fn sample(self, text: &str) -> (Vec<u8>, Vec<u8>) {
        match self {
            Service::Echo => (text.as_bytes().to_vec(), text.as_bytes().to_vec()),
            Service::Count => (
                format!("{text}\n").into_bytes(),
                format!("{}\n", text.chars().count()).into_bytes(),
            ),
        }
    }
}

/// Asserts equality of two large buffers without printing megabytes.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: got {} bytes, expected {}; first difference at offset {first}",
        got.len(),
        want.len()
    );
}

/// A message's round trip on an open connection (the connection stays open).
fn round_trip(service: Service, s: &mut std::net::TcpStream, text: &str) {
    let (msg, answer) = service.sample(text);
    s.write_all(&msg).unwrap();
    assert_eq!(
        read_n(s, answer.len()),
        answer,
        "{} round trip of {text:?}",
        service.name()
    );
}

// ---- echo ------------------------------------------------------------------

fn echo_one_mib_random_chunks(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("echo-mib", "echo", model, "");
    let mut rng = rng(&format!("echo_one_mib_random_chunks/{}", model.name()));
    let data = random_bytes(&mut rng, 1 << 20);
    let got = exchange(addr(&server), &data, &mut rng, data.len());
    assert_same(&got, &data, "1 MiB echo");
    let stats = server.stats();
    assert_eq!(stats.accepted, 1, "{stats:?}");
    assert!(eventually(Duration::from_secs(2), || server.stats().open == 0));
    server.stop(Duration::from_millis(300));
}

/// 200 clients connected at once, each with its own random bytes.
fn many_clients_at_once(service: Service, model: Model) {
    const CLIENTS: usize = 200;
    let _crowd = crowd();
    let _g = model_guard(model);
    let server = tcp_server("crowd", service.name(), model, "max_connections = 256");
    let at = addr(&server);
    let base: u64 = rng(&format!(
        "many_clients_at_once/{}/{}",
        service.name(),
        model.name()
    ))
    .random();
    concurrently(CLIENTS, |i| {
        let mut rng = StdRng::seed_from_u64(base.wrapping_add(i as u64));
        let (msg, answer) = match service {
            Service::Echo => {
                let mut msg = format!("client {i}:").into_bytes();
                let n = rng.random_range(1..=16 * 1024);
                msg.extend(random_bytes(&mut rng, n));
                (msg.clone(), msg)
            }
            Service::Count => {
                let lines: Vec<String> = (0..rng.random_range(1..=20))
                    .map(|_| random_text(&mut rng, 200))
                    .collect();
                let msg: String = lines.iter().map(|l| format!("{l}\n")).collect();
                let answer: String = lines
                    .iter()
                    .map(|l| format!("{}\n", l.chars().count()))
                    .collect();
                (msg.into_bytes(), answer.into_bytes())
            }
        };
        let mut s = connect(at);
        write_randomly(&mut s, &msg, &mut rng, 4096);
        s.shutdown(Shutdown::Write).unwrap();
        let got = read_to_eof(&mut s);
        assert_same(&got, &answer, &format!("client {i}"));
    });
    assert_eq!(server.stats().accepted, CLIENTS as u64);
    assert_eq!(server.stats().refused, 0);
    assert!(
        eventually(Duration::from_secs(2), || server.stats().open == 0),
        "connections still open: {:?}",
        server.stats()
    );
    let t = Instant::now();
    server.stop(Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(2));
}

fn echo_many_clients_at_once(model: Model) {
    many_clients_at_once(Service::Echo, model);
}

/// RFC 862: everything written comes back, then EOF once the client half-closes.
fn echo_half_close(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("echo-half", "echo", model, "");
    let mut s = connect(addr(&server));
    // Echo works before the half-close too.
    echo_round_trip(&mut s, b"ping ");
    s.write_all(b"first part, ").unwrap();
    s.write_all(b"second part").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"first part, second part");
    // EOF stays EOF.
    assert_eq!(read_to_eof(&mut s), b"");
    // A client that half-closes at once gets EOF at once.
    let mut s = connect(addr(&server));
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"");
}

// ---- count -----------------------------------------------------------------

/// A random line: ASCII and multi-byte characters, no '\n' or '\r'.
fn random_text(rng: &mut impl RngExt, max_chars: usize) -> String {
    const ALPHABET: &[char] = &[
        'a', 'z', ' ', '0', '~', '\t', 'é', 'ö', 'ß', '€', '中', '𝄞', '🦀', '\u{7f}',
    ];
    let n = rng.random_range(0..=max_chars);
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
        .collect()
}

/// Lines of random lengths totalling about 1 MiB, written in random-sized
/// pieces; every count comes back in order.
fn count_one_mib_of_lines(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("count-mib", "count", model, "");
    let mut rng = rng(&format!("count_one_mib_of_lines/{}", model.name()));
    let mut input = String::new();
    let mut answer = String::new();
    while input.len() < 1 << 20 {
        let line = random_text(&mut rng, 3000);
        answer.push_str(&format!("{}\n", line.chars().count()));
        input.push_str(&line);
        // Both line ends are accepted.
        input.push_str(if rng.random_bool(0.1) { "\r\n" } else { "\n" });
    }
    let got = exchange(addr(&server), input.as_bytes(), &mut rng, answer.len());
    if got != answer.as_bytes() {
        let got = String::from_utf8_lossy(&got);
        let (g, w): (Vec<_>, Vec<_>) = (got.lines().collect(), answer.lines().collect());
        let first = g
            .iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(w.len()));
        panic!(
            "{} counts received, {} expected; first difference at count #{first}: got {:?}, expected {:?}",
            g.len(),
            w.len(),
            g.get(first),
            w.get(first)
        );
    }
    server.stop(Duration::from_millis(300));
}

fn count_many_clients_at_once(model: Model) {
    many_clients_at_once(Service::Count, model);
}

/// An unterminated last line is counted when the client half-closes.
fn count_half_close_counts_last_line(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("count-half", "count", model, "");
    let mut s = connect(addr(&server));
    round_trip(Service::Count, &mut s, "first");
    s.write_all("abc\nhé".as_bytes()).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"3\n2\n");
    // Nothing pending at EOF: no extra reply.
    let mut s = connect(addr(&server));
    s.write_all(b"xyz\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"3\n");
}

/// "héllo wörld": 11 characters, 13 bytes; invalid UTF-8 bytes count one each.
fn count_units(model: Model) {
    let _g = model_guard(model);
    let chars = tcp_server("count-chars", "count", model, "unit = \"chars\"");
    let bytes = tcp_server("count-bytes", "count", model, "unit = \"bytes\"");
    let ask = |at: SocketAddr, msg: &[u8]| {
        let mut s = connect(at);
        s.write_all(msg).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        String::from_utf8(read_to_eof(&mut s)).unwrap()
    };
    assert_eq!(ask(addr(&chars), "héllo wörld\n".as_bytes()), "11\n");
    assert_eq!(ask(addr(&bytes), "héllo wörld\n".as_bytes()), "13\n");
    assert_eq!(ask(addr(&chars), "héllo wörld\r\n".as_bytes()), "11\n");
    // 'a', a lone continuation byte, a truncated 3-byte sequence, 'b'.
    assert_eq!(
        ask(addr(&chars), b"a\x80\xe2\x82b\n\xff\xfe\n\xc3\n"),
        "5\n2\n1\n"
    );
    assert_eq!(ask(addr(&bytes), b"a\x80\xe2\x82b\n\xff\xfe\n"), "5\n2\n");
    assert_eq!(ask(addr(&chars), b"\n\n"), "0\n0\n");
}

/// Header framing: requests and replies are both `len` left-justified in
/// `header_len` bytes, then the payload.
fn count_header_round_trip(model: Model) {
    let _g = model_guard(model);
    let mut rng = rng(&format!("count_header_round_trip/{}", model.name()));
    for header_len in [10usize, 100] {
        let server = tcp_server(
            "count-header",
            "count",
            model,
            &format!("framing = \"header\"\nheader_len = {header_len}"),
        );
        let frame = |payload: &[u8]| {
            let mut f = format!("{:<header_len$}", payload.len()).into_bytes();
            f.extend_from_slice(payload);
            f
        };
        let mut s = connect(addr(&server));
        // One at a time, each answered before the next.
        for text in ["héllo wörld", "", "x"] {
            s.write_all(&frame(text.as_bytes())).unwrap();
            let reply = read_n(&mut s, header_len + text.chars().count().to_string().len());
            assert_eq!(reply, frame(text.chars().count().to_string().as_bytes()));
        }
        // Many at once, split anywhere.
        let texts: Vec<String> = (0..200).map(|_| random_text(&mut rng, 300)).collect();
        let stream: Vec<u8> = texts.iter().flat_map(|t| frame(t.as_bytes())).collect();
        let want: Vec<u8> = texts
            .iter()
            .flat_map(|t| frame(t.chars().count().to_string().as_bytes()))
            .collect();
        write_randomly(&mut s, &stream, &mut rng, 777);
        s.shutdown(Shutdown::Write).unwrap();
        assert_same(&read_to_eof(&mut s), &want, "header framed counts");
        server.stop(Duration::from_millis(300));
    }
}

/// Chunk framing: each read is a message, answered with the bare number.
fn count_chunk_framing(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("count-chunk", "count", model, "framing = \"chunk\"");
    let mut s = connect(addr(&server));
    s.write_all("héllo wörld".as_bytes()).unwrap();
    assert_eq!(read_n(&mut s, 2), b"11");
    s.write_all(b"abc").unwrap();
    assert_eq!(read_n(&mut s, 1), b"3");
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), b"");
}

/// A message longer than max_frame gets an error reply, then the connection closes.
fn count_overlong_line_is_refused(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("count-long", "count", model, "max_frame = 16");
    let mut s = connect(addr(&server));
    round_trip(Service::Count, &mut s, "short");
    s.write_all(b"this line is longer than sixteen bytes\n")
        .unwrap();
    let (_, got) = closed_within(&mut s, Duration::from_secs(2)).expect("closed after the error");
    assert_eq!(
        String::from_utf8_lossy(&got),
        "error: message longer than 16 bytes\n"
    );
}

// ---- tag = "worker" --------------------------------------------------------

fn tag_worker(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("tagged", "echo", model, "tag = \"worker\"");
    let mut prefixes = Vec::new();
    for _ in 0..2 {
        let mut s = connect(addr(&server));
        s.write_all(b"Hello echo server!").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let got = String::from_utf8(read_to_eof(&mut s)).unwrap();
        let (prefix, rest) = got
            .split_once(": ")
            .unwrap_or_else(|| panic!("no tag in {got:?}"));
        // One write usually arrives as one read: one tag. If it was split,
        // each piece is tagged alike.
        assert_eq!(
            rest.replace(&format!("{prefix}: "), ""),
            "Hello echo server!",
            "{got:?}"
        );
        match model {
            Model::Fork => {
                let pid: u32 = prefix
                    .parse()
                    .unwrap_or_else(|_| panic!("not a pid: {got:?}"));
                assert_ne!(pid, std::process::id(), "served by the test process itself");
            }
            Model::Thread => {
                let n = prefix
                    .strip_prefix("tagged-")
                    .unwrap_or_else(|| panic!("not a thread name: {got:?}"));
                n.parse::<u64>()
                    .unwrap_or_else(|_| panic!("not a thread name: {got:?}"));
            }
            Model::Event => {
                assert!(
                    prefix.starts_with("tagged-ev"),
                    "not a worker name: {got:?}"
                );
            }
        }
        prefixes.push(prefix.to_owned());
    }
    if model != Model::Event {
        // One process or thread per connection.
        assert_ne!(prefixes[0], prefixes[1]);
    }
}

// ---- graceful stop ---------------------------------------------------------

/// Idle clients hold their connections; stop(300 ms) closes them at the end of
/// the grace and returns promptly.
fn stop_with_idle_clients(service: Service, model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("stop-idle", service.name(), model, "");
    let at = addr(&server);
    let mut clients: Vec<_> = (0..3).map(|_| connect(at)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(service, c, &format!("client {i}"));
    }
    let t = Instant::now();
    server.stop(Duration::from_millis(300));
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(
        took >= Duration::from_millis(250),
        "stop returned after {took:?}: the open connections were not given their grace"
    );
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            closed_within(c, Duration::from_secs(1)).is_some(),
            "client {i} still connected after stop"
        );
    }
    assert_refused_after_stop(at);
}

/// Once stopped, the port no longer answers.
fn assert_refused_after_stop(at: SocketAddr) {
    match std::net::TcpStream::connect_timeout(&at, Duration::from_secs(2)) {
        Err(_) => {}
        Ok(mut s) => {
            // Someone else may have taken the port since: at least we are not served.
            let _ = s.write_all(b"x\n");
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            let mut b = [0u8; 8];
            let n = std::io::Read::read(&mut s, &mut b).unwrap_or(0);
            assert_eq!(n, 0, "a stopped server answered");
        }
    }
}

/// A client in the middle of its exchange when the stop begins finishes it,
/// and the stop then ends without waiting for the whole grace.
fn stop_lets_inflight_client_finish(service: Service, model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("stop-busy", service.name(), model, "");
    let at = addr(&server);
    let mut s = connect(at);
    round_trip(service, &mut s, "before the stop");
    let t = Instant::now();
    server.begin_stop(Duration::from_secs(3));
    // New connections are not served any more...
    std::thread::sleep(Duration::from_millis(100));
    assert_refused(at, "a connection made after the stop began");
    // ...but this one is, to its end.
    let (m1, a1) = service.sample("after the stop began");
    let (m2, a2) = service.sample("another message");
    s.write_all(&m1[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&m1[5..]).unwrap();
    s.write_all(&m2).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let want = [a1, a2].concat();
    let (took, got) = closed_within(&mut s, Duration::from_secs(5)).expect("connection ended");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "the in-flight client's answer (connection ended {took:?} after writing)"
    );
    server.join();
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "join took {took:?}: the stop waited for the whole grace though no connection was open"
    );
    assert_refused_after_stop(at);
}

fn echo_stop_with_idle_clients(model: Model) {
    stop_with_idle_clients(Service::Echo, model);
}
fn count_stop_with_idle_clients(model: Model) {
    stop_with_idle_clients(Service::Count, model);
}
fn echo_stop_lets_inflight_client_finish(model: Model) {
    stop_lets_inflight_client_finish(Service::Echo, model);
}
fn count_stop_lets_inflight_client_finish(model: Model) {
    stop_lets_inflight_client_finish(Service::Count, model);
}

/// A second stop may shorten the grace, never lengthen it.
fn second_stop_shortens_the_grace(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("stop-twice", "echo", model, "");
    let mut s = connect(addr(&server));
    echo_round_trip(&mut s, b"idle after this");
    let t = Instant::now();
    server.begin_stop(Duration::from_secs(30));
    server.begin_stop(Duration::from_millis(200));
    server.begin_stop(Duration::from_secs(60));
    server.join();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    assert!(
        closed_within(&mut s, Duration::from_secs(1)).is_some(),
        "client still connected"
    );
}

/// Dropping a running server stops it at once.
fn drop_stops_at_once(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("dropped", "echo", model, "");
    let at = addr(&server);
    let mut s = connect(at);
    echo_round_trip(&mut s, b"hi");
    let t = Instant::now();
    drop(server);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "drop took {:?}",
        t.elapsed()
    );
    assert!(
        closed_within(&mut s, Duration::from_secs(1)).is_some(),
        "client still connected"
    );
    assert_refused_after_stop(at);
}

// ---- limits and access -----------------------------------------------------

/// max_connections = 3: a 4th client is closed at once; the 3 keep working;
/// a freed place is given to the next client.
fn max_connections(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("max3", "echo", model, "max_connections = 3");
    let at = addr(&server);
    let mut clients: Vec<_> = (0..3).map(|_| connect(at)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        echo_round_trip(c, format!("client {i}").as_bytes());
    }
    assert_eq!(server.stats().open, 3);
    assert_refused(at, "4th connection");
    assert!(server.stats().refused >= 1, "{:?}", server.stats());
    for (i, c) in clients.iter_mut().enumerate() {
        echo_round_trip(c, format!("client {i} still served").as_bytes());
    }
    // Free one place: a new client gets it once the server has seen the close.
    let mut gone = clients.pop().unwrap();
    gone.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut gone), b"");
    drop(gone);
    let admitted = eventually(Duration::from_secs(2), || {
        let mut s = connect(at);
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"x").is_ok() && {
            let mut b = [0u8; 1];
            matches!(std::io::Read::read(&mut s, &mut b), Ok(1))
        }
    });
    assert!(
        admitted,
        "no place freed after a client left: {:?}",
        server.stats()
    );
    for c in &mut clients {
        echo_round_trip(c, b"still here");
    }
}

/// per_source = 2: a third connection from 127.0.0.1 is refused, one from
/// ::1 (another source) is not.
fn per_source(model: Model) {
    let _g = model_guard(model);
    let v6 = ipv6_available();
    let listen = if v6 {
        r#"["127.0.0.1:0", "[::1]:0"]"#
    } else {
        eprintln!("per_source: ::1 unavailable, testing 127.0.0.1 only");
        r#"["127.0.0.1:0"]"#
    };
    let server = start(&format!(
        "name = \"persrc\"\nservice = \"echo\"\nlisten = {listen}\nmodel = \"{}\"\nper_source = 2\nmax_connections = 10\n",
        model.name()
    ));
    let v4 = server.local_addrs()[0];
    let mut a = connect(v4);
    let mut b = connect(v4);
    echo_round_trip(&mut a, b"a");
    echo_round_trip(&mut b, b"b");
    assert_refused(v4, "3rd connection from 127.0.0.1");
    assert!(server.stats().refused >= 1);
    if v6 {
        let mut c = connect(server.local_addrs()[1]);
        echo_round_trip(&mut c, b"from ::1");
    }
    echo_round_trip(&mut a, b"a again");
    echo_round_trip(&mut b, b"b again");
}

/// allow/deny: a denied peer is closed at once, without service.
fn access_lists(model: Model) {
    let _g = model_guard(model);
    for (rules, served) in [
        ("deny = [\"127.0.0.1\"]", false),
        ("deny = [\"127.0.0.0/8\"]", false),
        ("allow = [\"10.0.0.0/8\"]", false),
        ("allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2\"]", true),
        ("allow = [\"::1\", \"127.0.0.1/32\"]", true),
    ] {
        let server = tcp_server("acl", "echo", model, rules);
        if served {
            let mut s = connect(addr(&server));
            echo_round_trip(&mut s, b"let in");
            assert_eq!(server.stats().refused, 0, "{rules}");
        } else {
            assert_refused(addr(&server), rules);
            let stats = server.stats();
            assert_eq!(
                (stats.accepted, stats.refused),
                (0, 1),
                "{rules}: {stats:?}"
            );
        }
    }
}

/// idle_timeout = "300ms": an idle client is disconnected; a client that
/// keeps talking is not.
fn idle_timeout(model: Model) {
    let _g = model_guard(model);
    let server = tcp_server("idle", "echo", model, "idle_timeout = \"300ms\"");
    let at = addr(&server);
    let mut idle = connect(at);
    echo_round_trip(&mut idle, b"then silence");
    let chatty = std::thread::spawn(move || {
        let mut s = connect(at);
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            echo_round_trip(&mut s, b"still here");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (after, _) = closed_within(&mut idle, Duration::from_secs(3))
        .expect("idle client not disconnected within 3 s");
    eprintln!(
        "idle_timeout/{}: idle client disconnected after {after:?}",
        model.name()
    );
    assert!(
        after >= Duration::from_millis(250),
        "disconnected too early: {after:?}"
    );
    chatty
        .join()
        .expect("a client that kept talking was disconnected");
}

/// idle_timeout = "400ms" and a client that has sent all it had and is
/// still taking its echo, more slowly than it sent: it is not idle, and
/// gets every byte back. (The event model once counted only reads, and cut
/// such a client off with a clean close in the middle of its echo.)
fn idle_timeout_spares_a_client_taking_its_echo(model: Model) {
    use std::sync::atomic::{AtomicBool, Ordering};
    const TOTAL: usize = 6 * 1024 * 1024;
    let _g = model_guard(model);
    let server = tcp_server("idle-read", "echo", model, "idle_timeout = \"400ms\"");
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&addr(&server).into()).unwrap();
    let mut s: std::net::TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut w = s.try_clone().unwrap();
    let written = std::sync::Arc::new(AtomicBool::new(false));
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || {
            w.write_all(&vec![b'e'; TOTAL]).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
            written.store(true, Ordering::SeqCst);
        })
    };
    // Fast while the message goes out; once it is all sent (the server has
    // read nearly all of it, and holds up to a megabyte of echo besides what
    // the kernel holds), slow: 16 KiB every 10 ms. The server then reads
    // nothing more for far longer than the timeout, while it writes.
    let mut got = 0;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                assert!(buf[..n].iter().all(|&b| b == b'e'));
                got += n;
            }
            Err(e) => panic!("{}: read after {got} bytes: {e}", model.name()),
        }
        if written.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    writer.join().unwrap();
    assert_eq!(got, TOTAL, "{}: the echo was cut short", model.name());
}

macro_rules! per_model {
    ($($test:ident),* $(,)?) => {
        mod event {
            $(#[test] fn $test() { super::$test(crate::common::Model::Event) })*
        }
        mod thread {
            $(#[test] fn $test() { super::$test(crate::common::Model::Thread) })*
        }
        mod fork {
            $(#[test] fn $test() { super::$test(crate::common::Model::Fork) })*
        }
    };
}

per_model!(
    echo_one_mib_random_chunks,
    echo_many_clients_at_once,
    echo_half_close,
    echo_stop_with_idle_clients,
    echo_stop_lets_inflight_client_finish,
    count_one_mib_of_lines,
    count_many_clients_at_once,
    count_half_close_counts_last_line,
    count_units,
    count_header_round_trip,
    count_chunk_framing,
    count_overlong_line_is_refused,
    count_stop_with_idle_clients,
    count_stop_lets_inflight_client_finish,
    tag_worker,
    second_stop_shortens_the_grace,
    drop_stops_at_once,
    max_connections,
    per_source,
    access_lists,
    idle_timeout,
    idle_timeout_spares_a_client_taking_its_echo,
);

/// `TCP_NODELAY` of the server's end of `client`, found among this
/// process's descriptors (the server runs in it): the socket whose local
/// address is the client's peer and whose peer is the client.
fn server_side_nodelay(client: &std::net::TcpStream) -> bool {
    use std::os::fd::BorrowedFd;
    let (ours, theirs) = (client.peer_addr().unwrap(), client.local_addr().unwrap());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // SAFETY: borrowed only while this loop looks at it; a descriptor
        // closed meanwhile makes the calls below fail, not misbehave.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let (Ok(local), Ok(peer)) = (socket.local_addr(), socket.peer_addr()) else {
            continue;
        };
        if local.as_socket() == Some(ours) && peer.as_socket() == Some(theirs) {
            return socket.tcp_nodelay().unwrap();
        }
    }
    panic!("no socket of this process serves {theirs}");
}

/// `tcp_nodelay` reaches the server's end of every connection, in every
/// model that runs in this process: on by default, for latency; off when
/// asked (Nagle's algorithm, as ncat and xinetd leave it).
#[test]
fn tcp_nodelay_is_set_as_configured() {
    for model in [Model::Event, Model::Thread] {
        for (extra, want) in [
            ("", true),
            ("tcp_nodelay = true", true),
            ("tcp_nodelay = false", false),
        ] {
            let server = tcp_server("nodelay", "echo", model, extra);
            let mut client = connect(addr(&server));
            echo_round_trip(&mut client, b"hello");
            assert_eq!(
                server_side_nodelay(&client),
                want,
                "{} model, {extra:?}",
                model.name()
            );
        }
    }
}
