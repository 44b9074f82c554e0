//! The PROXY protocol from outside: headers written by hand (v1, v2, in
//! pieces, LOCAL, missing, malformed, from an untrusted address) under
//! every model, and a real HAProxy with `send-proxy-v2` in front of plain
//! and TLS listeners: allow/deny and per_source act on the client's
//! address, not the balancer's.

mod common;
#[path = "../../tests/common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use netlab::client::{self, ClientOptions, TlsClient};
use netlab::tls::ClientFiles;
use pki::Pki;

fn v2(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            h.extend_from_slice(&[0x21, 0x11, 0, 12]);
            h.extend_from_slice(&c.ip().octets());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&c.port().to_be_bytes());
            h.extend_from_slice(&s.port().to_be_bytes());
        }
        (SocketAddr::V6(c), SocketAddr::V6(s)) => {
            h.extend_from_slice(&[0x21, 0x21, 0, 36]);
            h.extend_from_slice(&c.ip().octets());
            h.extend_from_slice(&s.ip().octets());
            h.extend_from_slice(&c.port().to_be_bytes());
            h.extend_from_slice(&s.port().to_be_bytes());
        }
        _ => panic!("one family"),
    }
    h
}

fn v1(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {} {} {} {}\r\n",
        client.ip(),
        server.ip(),
        client.port(),
        server.port()
    )
    .into_bytes()
}

/// A connection from `from` that says `header`, then `msg`: whether `msg`
/// came back (the connection is returned, to be held open).
fn through(from: &str, to: SocketAddr, header: &[u8], msg: &[u8]) -> (bool, TcpStream) {
    let mut s = connect_from(from, to).unwrap();
    if s.write_all(header).is_err() {
        return (false, s);
    }
    let ok = echoes(&mut s, msg);
    (ok, s)
}

/// netlabd at debug level: every refusal is logged (at info, one a while).
fn start_debug(config: &str, listeners: usize) -> (Daemon, Vec<(String, SocketAddr)>) {
    let dir = TempDir::new();
    let path = dir.write("netlabd.toml", config);
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config").arg(&path).env("NETLABD_LOG", "debug");
    Daemon::spawn(cmd, dir, listeners)
}

/// Headers by hand, on the event, thread and fork models alike.
#[test]
fn headers_by_hand_give_admission_the_client_address() {
    for model in ["event", "thread", "fork"] {
        by_hand(model);
    }
}

fn by_hand(model: &str) {
    let (mut daemon, bound) = start_debug(
        &format!(
            "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
             [[server]]\nname = \"p\"\nservice = \"echo\"\nmodel = \"{model}\"\nlisten = [\"127.0.0.1:0\"]\n\
             proxy_protocol = true\nproxy_from = [\"127.0.0.1/32\"]\n\
             deny = [\"192.0.2.66\"]\nper_source = 1\nhandshake_timeout = \"1s\"\n"
        ),
        1,
    );
    let metrics = daemon.metrics_addr();
    let server = bound[0].1;
    let client = |a: &str| -> SocketAddr { a.parse().unwrap() };

    // v1 and v2 from clients that may: served.
    let (ok, _) = through(
        "127.0.0.1",
        server,
        &v1(client("198.51.100.7:5000"), server),
        b"v1",
    );
    assert!(ok, "{model}: v1");
    let (ok, _) = through(
        "127.0.0.1",
        server,
        &v2(client("198.51.100.8:5000"), server),
        b"v2",
    );
    assert!(ok, "{model}: v2");
    // The client's address is what deny sees.
    let (ok, _) = through(
        "127.0.0.1",
        server,
        &v2(client("192.0.2.66:4000"), server),
        b"x",
    );
    assert!(!ok, "{model}: 192.0.2.66 is denied");
    let line = daemon.wait_for_line("refused 192.0.2.66:4000", Duration::from_secs(5));
    assert!(line.contains("allow/deny"), "{line}");
    // And per_source: one connection per client, whatever the balancer.
    let (ok, held) = through(
        "127.0.0.1",
        server,
        &v1(client("198.51.100.9:1"), server),
        b"a",
    );
    assert!(ok, "{model}: first of 198.51.100.9");
    let (ok, _) = through(
        "127.0.0.1",
        server,
        &v2(client("198.51.100.9:2"), server),
        b"b",
    );
    assert!(!ok, "{model}: second of 198.51.100.9 is over per_source");
    let (ok, _) = through(
        "127.0.0.1",
        server,
        &v2(client("[2001:db8::10]:3"), client("[2001:db8::1]:7")),
        b"c",
    );
    assert!(ok, "{model}: another client (IPv6) meanwhile");
    drop(held);
    // A header in pieces, a byte at a time.
    let mut s = connect_from("127.0.0.1", server).unwrap();
    for b in v2(client("198.51.100.11:5"), server) {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(echoes(&mut s, b"pieces"), "{model}: a header in pieces");
    drop(s);
    // LOCAL (a balancer's health check): served as the balancer itself.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let (ok, _) = through("127.0.0.1", server, &local, b"health");
    assert!(ok, "{model}: LOCAL");

    // Closed with one log line each: an untrusted balancer, no header, a
    // malformed one, one that does not finish in time.
    let (ok, _) = through(
        "127.0.0.2",
        server,
        &v1(client("198.51.100.12:5"), server),
        b"x",
    );
    assert!(!ok, "{model}: 127.0.0.2 is not in proxy_from");
    let line = daemon.wait_for_line("closing 127.0.0.2:", Duration::from_secs(5));
    assert!(line.contains("not in proxy_from"), "{line}");
    let (ok, _) = through("127.0.0.1", server, b"", b"GET / HTTP/1.0\r\n\r\n");
    assert!(!ok, "{model}: no header");
    let line = daemon.wait_for_line("no PROXY protocol header", Duration::from_secs(5));
    assert!(line.contains("GET / HTTP/1.0"), "{line}");
    let (ok, _) = through("127.0.0.1", server, b"PROXY TCP4 x y 1 2\r\n", b"x");
    assert!(!ok, "{model}: malformed");
    daemon.wait_for_line("malformed PROXY v1 header", Duration::from_secs(5));
    let mut late = connect_from("127.0.0.1", server).unwrap();
    late.write_all(b"PROXY TCP4 ").unwrap();
    let mut rest = Vec::new();
    let _ = late.read_to_end(&mut rest);
    daemon.wait_for_line("no whole PROXY header within 1s", Duration::from_secs(5));

    let listener = format!("server=\"p\",listener=\"{server}\"");
    let refused =
        |r: &str| format!("netlab_connections_refused_total{{{listener},reason=\"{r}\"}}");
    wait_sample(metrics, &refused("proxy"), 4.0);
    let body = scrape(metrics);
    assert_eq!(
        sample(&body, &refused("deny")),
        Some(1.0),
        "{model}: {body}"
    );
    assert_eq!(sample(&body, &refused("per_source")), Some(1.0), "{model}");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
}

/// HAProxy, killed when dropped.
struct Haproxy {
    child: Child,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy in TCP mode on `fronts[i]` → `backs[i]` with send-proxy-v2.
fn haproxy(dir: &TempDir, routes: &[(SocketAddr, SocketAddr)]) -> Haproxy {
    let mut config = String::from(
        "global\n  maxconn 64\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 20s\n  timeout server 20s\n",
    );
    for (i, (front, back)) in routes.iter().enumerate() {
        config.push_str(&format!(
            "frontend f{i}\n  bind {front}\n  default_backend b{i}\n\
             backend b{i}\n  server s{i} {back} send-proxy-v2\n"
        ));
    }
    let path = dir.write("haproxy.cfg", &config);
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let mut h = Haproxy { child };
    // Listening once a TCP connect succeeds (a connection to the
    // balancer's own front, from 127.0.0.9, closed at once).
    for (front, _) in routes {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = h.child.try_wait().unwrap() {
                panic!("haproxy exited: {status}");
            }
            if connect_from("127.0.0.9", *front).is_ok() {
                break;
            }
            assert!(Instant::now() < until, "haproxy does not listen on {front}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    h
}

/// A real HAProxy with send-proxy-v2 in front of a plain and a TLS echo:
/// deny and per_source act on the client's address (127.0.0.2, .3, .4),
/// though every connection comes from HAProxy's.
#[test]
fn haproxy_send_proxy_v2_carries_the_client_address() {
    need("haproxy", "haproxy");
    let pki = Pki::new();
    let dir = TempDir::new();
    std::fs::copy(&pki.server_cert, dir.path("cert.pem")).unwrap();
    std::fs::copy(&pki.server_key, dir.path("key.pem")).unwrap();
    let behind = "proxy_protocol = true\nproxy_from = [\"127.0.0.1/32\"]\n\
                  deny = [\"127.0.0.3\"]\nper_source = 1\n";
    let config = format!(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
         [[server]]\nname = \"plain\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n{behind}\
         [[server]]\nname = \"secure\"\nservice = \"echo\"\n\
         listen = [{{ addr = \"127.0.0.1:0\", tls = {{ cert = \"cert.pem\", key = \"key.pem\" }} }}]\n{behind}"
    );
    let path = dir.write("netlabd.toml", &config);
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config").arg(&path).env("NETLABD_LOG", "debug");
    let (mut daemon, bound) = Daemon::spawn(cmd, dir, 2);
    let metrics = daemon.metrics_addr();
    let at = |name: &str| bound.iter().find(|(n, _)| n == name).unwrap().1;
    let (plain, secure) = (at("plain"), at("secure"));
    let front_plain: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let front_tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let hadir = TempDir::new();
    let _haproxy = haproxy(&hadir, &[(front_plain, plain), (front_tls, secure)]);

    let mut first = connect_from("127.0.0.2", front_plain).unwrap();
    assert!(echoes(&mut first, b"one"), "127.0.0.2 through HAProxy");
    let mut second = connect_from("127.0.0.2", front_plain).unwrap();
    assert!(
        !echoes(&mut second, b"two"),
        "a second connection of 127.0.0.2 is over per_source"
    );
    let mut other = connect_from("127.0.0.4", front_plain).unwrap();
    assert!(echoes(&mut other, b"four"), "127.0.0.4 meanwhile");
    let mut denied = connect_from("127.0.0.3", front_plain).unwrap();
    assert!(!echoes(&mut denied, b"three"), "127.0.0.3 is denied");
    daemon.wait_for_line("refused 127.0.0.3:", Duration::from_secs(5));
    assert!(echoes(&mut first, b"still"), "the first goes on");

    // TLS behind HAProxy: the header comes before the handshake.
    let files = ClientFiles {
        ca: Some(pki.ca.clone()),
        ..ClientFiles::default()
    };
    let options =
        ClientOptions::new(Duration::from_secs(5)).with_tls(TlsClient::new(&files).unwrap());
    let reply = client::tcp_echo_with(front_tls, b"over TLS", &options, 64).unwrap();
    assert_eq!(reply, b"over TLS");

    let refused = |l: SocketAddr, r: &str| {
        format!(
            "netlab_connections_refused_total{{server=\"plain\",listener=\"{l}\",reason=\"{r}\"}}"
        )
    };
    wait_sample(metrics, &refused(plain, "deny"), 1.0);
    let body = scrape(metrics);
    assert_eq!(
        sample(&body, &refused(plain, "per_source")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(sample(&body, &refused(plain, "proxy")), Some(0.0), "{body}");
    assert_eq!(
        sample(
            &body,
            &format!("netlab_tls_handshakes_total{{server=\"secure\",listener=\"{secure}\"}}")
        ),
        Some(1.0),
        "{body}"
    );
    drop((first, other));
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
}
