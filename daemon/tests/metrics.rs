//! What an operator sees: netlabd's /metrics after clients did known
//! things (served, refused for each reason, dropped as slow readers),
//! checked by `promtool check metrics`, scraped by a real Prometheus and
//! read back through its HTTP API, shown by `netlab stats`; counters that
//! carry on across a reload; and a /metrics endpoint that a slow or
//! hostile scraper cannot use to disturb serving.

mod common;
#[path = "../../tests/common/pki.rs"]
mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use pki::Pki;

const NETLAB: &str = env!("CARGO_BIN_EXE_netlab");

/// A netlabd whose clients have done known things, and the addresses.
struct Caused {
    daemon: Daemon,
    metrics: SocketAddr,
    _pki: Pki,
}

fn at(bound: &[(String, SocketAddr)], name: &str) -> SocketAddr {
    bound.iter().find(|(n, _)| n == name).unwrap().1
}

/// netlabd with an echo server under limits, a rate-limited one, a TLS
/// one, a chat room and a UDP echo; then 3 connections served, and one
/// refused for each of deny, per_source, max_connections, rate and
/// handshake, one chat client dropped as a slow reader, and 2 datagrams
/// answered.
fn cause() -> Caused {
    let pki = Pki::new();
    let dir = TempDir::new();
    std::fs::copy(&pki.server_cert, dir.path("cert.pem")).unwrap();
    std::fs::copy(&pki.server_key, dir.path("key.pem")).unwrap();
    let config = r#"
[daemon]
metrics = "127.0.0.1:0"

[[server]]
name = "echo"
service = "echo"
listen = ["127.0.0.1:0"]
workers = 2
deny = ["127.0.0.3"]
per_source = 2
max_connections = 4

[[server]]
name = "limited"
service = "echo"
listen = ["127.0.0.1:0"]
rate = "1/h"
burst = 2

[[server]]
name = "secure"
service = "echo"
listen = [{ addr = "127.0.0.1:0", tls = { cert = "cert.pem", key = "key.pem" } }]

[[server]]
name = "room"
service = "chat"
listen = ["127.0.0.1:0"]
queue_bytes = 65536

[[server]]
name = "udp"
service = "echo"
transport = "udp"
listen = ["127.0.0.1:0"]
"#;
    let path = dir.write("netlabd.toml", config);
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config").arg(&path);
    let (mut daemon, bound) = Daemon::spawn(cmd, dir, 5);
    let metrics = daemon.metrics_addr();
    let (echo, limited, secure, room, udp) = (
        at(&bound, "echo"),
        at(&bound, "limited"),
        at(&bound, "secure"),
        at(&bound, "room"),
        at(&bound, "udp"),
    );
    let echo_series =
        |what: &str| format!("netlab_connections_{what}{{server=\"echo\",listener=\"{echo}\"}}");

    // Served: 3, closed again (from 3 addresses: a connection's place is
    // freed a moment after its client sees it close).
    for from in ["127.0.0.1", "127.0.0.7", "127.0.0.8"] {
        let mut c = connect_from(from, echo).unwrap();
        assert!(echoes(&mut c, b"hello"));
    }
    wait_sample(metrics, &echo_series("active"), 0.0);
    // deny.
    let mut denied = connect_from("127.0.0.3", echo).unwrap();
    assert!(!echoes(&mut denied, b"x"), "127.0.0.3 is denied");
    // per_source: 2 held from 127.0.0.2, the third refused.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.2", echo).unwrap();
        assert!(echoes(&mut c, b"x"));
        held.push(c);
    }
    let mut third = connect_from("127.0.0.2", echo).unwrap();
    assert!(!echoes(&mut third, b"x"), "per_source 2");
    // max_connections 4: two more held, the fifth refused.
    for from in ["127.0.0.4", "127.0.0.5"] {
        let mut c = connect_from(from, echo).unwrap();
        assert!(echoes(&mut c, b"x"));
        held.push(c);
    }
    let mut fifth = connect_from("127.0.0.6", echo).unwrap();
    assert!(!echoes(&mut fifth, b"x"), "max_connections 4");
    wait_sample(metrics, &echo_series("active"), 4.0);
    drop(held);

    // rate: a burst of 2, the third refused.
    for _ in 0..2 {
        let mut c = connect_from("127.0.0.1", limited).unwrap();
        assert!(echoes(&mut c, b"x"));
    }
    let mut over = connect_from("127.0.0.1", limited).unwrap();
    assert!(!echoes(&mut over, b"x"), "over the rate");

    // handshake: plain text to a TLS listener.
    let mut garbage = TcpStream::connect(secure).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage.write_all(b"hello, not TLS\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = garbage.read_to_end(&mut sink);

    // A chat client that never reads, dropped while another floods.
    slow_reader_dropped(room, metrics);

    // 2 datagrams answered.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..2 {
        u.send_to(b"ping", udp).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(u.recv_from(&mut buf).unwrap().0, 4);
    }
    // The server counts a reply once sendmmsg returns, which may be after
    // the client has it: wait for the count before anyone reads it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !scrape(metrics).lines().any(|l| {
        l.starts_with("netlab_datagrams_answered_total{server=\"udp\"") && l.ends_with(" 2")
    }) {
        assert!(
            Instant::now() < deadline,
            "the 2 datagrams answered were not counted within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Caused {
        daemon,
        metrics,
        _pki: pki,
    }
}

/// Joins `reader` with a tiny receive buffer and never reads; `writer`
/// sends 8 MB; the reader is dropped.
fn slow_reader_dropped(room: SocketAddr, metrics: SocketAddr) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&room.into()).unwrap();
    let mut reader: TcpStream = socket.into();
    reader.write_all(b"reader\n").unwrap();
    let mut writer = TcpStream::connect(room).unwrap();
    writer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    writer.write_all(b"writer\n").unwrap();
    // Read the writer's welcome so the reader is surely named first.
    let mut buf = [0u8; 4096];
    let _ = writer.read(&mut buf).unwrap();
    let line = format!("{}\n", "m".repeat(4095));
    let flood = std::thread::spawn(move || {
        for _ in 0..2048 {
            if writer.write_all(line.as_bytes()).is_err() {
                break;
            }
        }
        writer
    });
    // The server reads the writer whatever the reader does, and drops the
    // reader, which read nothing. The flood ends as soon as the kernel
    // holds it, maybe long before the server has read it all (on a busy
    // machine): the reader starts reading only once it is dropped, or it
    // would be a reader like any other. Its connection ends (what it had
    // unread may be cut short by a reset).
    let writer = flood.join().unwrap();
    wait_sample(
        metrics,
        "netlab_chat_slow_readers_dropped_total{server=\"room\"}",
        1.0,
    );
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(writer);
}

/// The values `cause` caused, as series and values.
fn expected(c: &Caused) -> Vec<(String, f64)> {
    let body = scrape(c.metrics);
    let listener = |server: &str| -> String {
        let prefix = format!("netlab_connections_accepted_total{{server=\"{server}\",listener=\"");
        let line = body.lines().find(|l| l.starts_with(&prefix)).unwrap();
        line[prefix.len()..].split('"').next().unwrap().to_owned()
    };
    let (echo, limited, secure, room) = (
        listener("echo"),
        listener("limited"),
        listener("secure"),
        listener("room"),
    );
    let refused = |server: &str, l: &str, reason: &str| {
        format!(
            "netlab_connections_refused_total{{server=\"{server}\",listener=\"{l}\",reason=\"{reason}\"}}"
        )
    };
    vec![
        // 3 + 2 held from 127.0.0.2 + 2 from .4 and .5
        (
            format!("netlab_connections_accepted_total{{server=\"echo\",listener=\"{echo}\"}}"),
            7.0,
        ),
        (refused("echo", &echo, "deny"), 1.0),
        (refused("echo", &echo, "per_source"), 1.0),
        (refused("echo", &echo, "max_connections"), 1.0),
        (refused("echo", &echo, "rate"), 0.0),
        (
            format!(
                "netlab_connections_accepted_total{{server=\"limited\",listener=\"{limited}\"}}"
            ),
            2.0,
        ),
        (refused("limited", &limited, "rate"), 1.0),
        (refused("secure", &secure, "handshake"), 1.0),
        (
            format!("netlab_tls_handshakes_total{{server=\"secure\",listener=\"{secure}\"}}"),
            0.0,
        ),
        (
            format!("netlab_connections_accepted_total{{server=\"room\",listener=\"{room}\"}}"),
            2.0,
        ),
        (
            "netlab_chat_slow_readers_dropped_total{server=\"room\"}".to_owned(),
            1.0,
        ),
    ]
}

/// The text exposition holds what the clients did, each family once,
/// and passes `promtool check metrics`; OpenMetrics is served when asked
/// for; `netlab stats` shows the same as a table.
#[test]
fn metrics_count_what_clients_did_and_promtool_accepts_them() {
    need("promtool", "prometheus");
    let c = cause();
    let body = scrape(c.metrics);
    for (series, want) in expected(&c) {
        assert_eq!(sample(&body, &series), Some(want), "{series} in\n{body}");
    }
    let udp_answered = body
        .lines()
        .find(|l| l.starts_with("netlab_datagrams_answered_total{server=\"udp\""))
        .unwrap();
    assert!(udp_answered.ends_with(" 2"), "{udp_answered}");
    // The chat room's traffic: the flood was delivered to no one but the
    // reader (dropped), and both clients' lines were messages.
    assert!(sample(&body, "netlab_chat_messages_total{server=\"room\"}").unwrap() >= 1.0);
    assert_eq!(
        sample(&body, "netlab_chat_members{server=\"room\"}"),
        Some(0.0)
    );
    for family in [
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(sample(&body, family).is_some_and(|v| v > 0.0), "{family}");
    }
    assert!(body.contains("netlab_build_info{version=\""));
    assert!(sample(&body, "netlab_config_loaded_timestamp_seconds").is_some());

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let om = http_get(
        c.metrics,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(
        om.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"));
    let plain = http_get(c.metrics, "/metrics", None);
    assert!(plain.contains("Content-Type: text/plain; version=0.0.4"));

    let out = Command::new(NETLAB)
        .args(["stats", &format!("http://{}", c.metrics)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "server echo",
        "deny 1, max_connections 1, per_source 1",
        "server limited",
        "rate 1",
        "handshake 1",
        "1 slow readers dropped",
    ] {
        assert!(table.contains(want), "{want:?} in\n{table}");
    }

    // --watch redraws in place, with rates since the last look.
    let mut watch = Command::new(NETLAB)
        .args(["stats", &c.metrics.to_string(), "--watch", "0.3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let _ = watch.kill();
    let _ = watch.wait();
    let shown = reader.join().unwrap();
    assert!(shown.matches("\x1b[H\x1b[2J").count() >= 2, "{shown}");
    assert!(
        shown.contains("CONN/S") && shown.contains("server echo"),
        "{shown}"
    );
    drop(c.daemon);
}

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    _dir: TempDir,
    api: SocketAddr,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scraping `target` every second, its API on a loopback port.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = TempDir::new();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: netlabd\n    static_configs:\n      - targets: ['{target}']\n"
        );
        let path = dir.write("prometheus.yml", &config);
        let api: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address={api}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            _dir: dir,
            api,
        }
    }

    /// The value of instant query `query`, once it has one.
    fn query(&mut self, query: &str) -> Option<f64> {
        let encoded: String = query
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let Ok(mut s) = TcpStream::connect(self.api) else {
            return None;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /api/v1/query?query={encoded} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.api
        )
        .ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        let body = answer.split_once("\r\n\r\n")?.1;
        // Chunked or not, the JSON object is the part in braces.
        let json = &body[body.find('{')?..=body.rfind('}')?];
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        let value = v["data"]["result"].get(0)?["value"]
            .get(1)?
            .as_str()?
            .to_owned();
        value.parse().ok()
    }

    /// Waits (at most 60 s) until `query` reads `want`.
    fn wait_for(&mut self, query: &str, want: f64) {
        let until = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited: {status}");
            }
            last = self.query(query);
            if last == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("Prometheus says {query} = {last:?}, not {want}, after 60 s");
    }
}

/// A real Prometheus scrapes netlabd (it asks for OpenMetrics), and its
/// HTTP API shows what the clients did.
#[test]
fn a_real_prometheus_scrapes_netlabd_and_shows_what_clients_did() {
    need("prometheus", "prometheus");
    let c = cause();
    let expected = expected(&c);
    let mut prometheus = Prometheus::start(c.metrics);
    prometheus.wait_for("up{job=\"netlabd\"}", 1.0);
    for (series, want) in expected {
        prometheus.wait_for(&series, want);
    }
    drop(c.daemon);
}

/// A server unchanged by a reload keeps counting where it was; a removed
/// server's series go; the reload is counted.
#[test]
fn counters_of_servers_unchanged_by_a_reload_carry_on() {
    let base = "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
        [[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n";
    let (mut daemon, bound) = Daemon::start(
        &format!(
            "{base}[[server]]\nname = \"gone\"\nservice = \"count\"\nlisten = [\"127.0.0.1:0\"]\n"
        ),
        2,
    );
    let metrics = daemon.metrics_addr();
    let echo = at(&bound, "echo");
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.1", echo).unwrap();
        assert!(echoes(&mut c, b"hi"));
    }
    let series =
        format!("netlab_connections_accepted_total{{server=\"echo\",listener=\"{echo}\"}}");
    wait_sample(metrics, &series, 3.0);
    // The same echo (same port), the count server removed.
    let config = format!(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"{echo}\"]\n"
    );
    std::fs::write(daemon.dir.path("netlabd.toml"), config).unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_line("reloaded:", Duration::from_secs(10));
    let mut c = connect_from("127.0.0.1", echo).unwrap();
    assert!(echoes(&mut c, b"hi"));
    drop(c);
    wait_sample(metrics, &series, 4.0);
    let body = scrape(metrics);
    assert!(!body.contains("server=\"gone\""), "{body}");
    assert_eq!(
        sample(&body, "netlab_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    // A refused reload is counted too, and changes nothing.
    std::fs::write(daemon.dir.path("netlabd.toml"), "[[server]]\nname = 1\n").unwrap();
    daemon.signal(libc::SIGHUP);
    daemon.wait_for_line("reload refused", Duration::from_secs(10));
    wait_sample(metrics, "netlab_reloads_total{result=\"refused\"}", 1.0);
}

/// A scraper that sends a byte a second, and one that sends 1 MiB of
/// headers, hold nothing: echo goes on being served meanwhile, other
/// scrapes are answered, the huge request gets 431, and the trickling one
/// is closed once its time is up.
#[test]
fn a_slow_scraper_and_a_megabyte_of_headers_do_not_disturb_serving() {
    let (mut daemon, bound) = Daemon::start(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
         [[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n",
        1,
    );
    let metrics = daemon.metrics_addr();
    let echo = bound[0].1;

    let trickle = std::thread::spawn(move || {
        let mut s = TcpStream::connect(metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = Instant::now();
        // One byte a second until the server closes (or 15 s).
        for &b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter() {
            if s.write_all(&[b]).is_err() || started.elapsed() > Duration::from_secs(15) {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        started.elapsed()
    });
    let huge = std::thread::spawn(move || {
        let mut s = TcpStream::connect(metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
        while request.len() < 1024 * 1024 {
            request.extend_from_slice(b"X-Filler: ");
            request.extend_from_slice(&[b'a'; 1000]);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"\r\n");
        // The server stops reading after its limit: the write may fail.
        let _ = s.write_all(&request);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });

    // Meanwhile: echo served, scrapes answered.
    let until = Instant::now() + Duration::from_secs(4);
    let mut served = 0;
    while Instant::now() < until {
        let mut c = connect_from("127.0.0.1", echo).unwrap();
        assert!(echoes(&mut c, b"still here"));
        assert!(scrape(metrics).contains("netlab_connections_accepted_total"));
        served += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served > 10);
    let answer = huge.join().unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431 "),
        "{answer}"
    );
    let held = trickle.join().unwrap();
    assert!(
        held < Duration::from_secs(14),
        "the trickling scraper was held {held:?}"
    );
    let mut c = connect_from("127.0.0.1", echo).unwrap();
    assert!(echoes(&mut c, b"after"));
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
}

/// The fork model's children count what they move in memory shared with
/// netlabd, which folds it into the listener's counters: bytes (and the
/// count service's requests) show as they do for the other models, while
/// a connection is open (its child still serving) and after it closed.
#[test]
fn the_fork_models_children_count_bytes_and_requests() {
    let dir = TempDir::new();
    let path = dir.write(
        "netlabd.toml",
        r#"
[daemon]
metrics = "127.0.0.1:0"

[[server]]
name = "forked"
service = "echo"
model = "fork"
listen = ["127.0.0.1:0", "127.0.0.1:0"]

[[server]]
name = "counted"
service = "count"
model = "fork"
listen = ["127.0.0.1:0"]
"#,
    );
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config").arg(&path);
    let (mut daemon, bound) = Daemon::spawn(cmd, dir, 3);
    let metrics = daemon.metrics_addr();
    let echo: Vec<SocketAddr> = bound
        .iter()
        .filter(|(n, _)| n == "forked")
        .map(|(_, a)| *a)
        .collect();
    let (first, second, counted) = (echo[0], echo[1], at(&bound, "counted"));
    let series = |family: &str, server: &str, l: SocketAddr| {
        format!("netlab_{family}{{server=\"{server}\",listener=\"{l}\"}}")
    };
    let connect = |to: SocketAddr| {
        let c = TcpStream::connect(to).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    };

    let mut open = connect(first);
    assert!(echoes(&mut open, &[b'a'; 1000]));
    wait_sample(
        metrics,
        &series("received_bytes_total", "forked", first),
        1000.0,
    );
    wait_sample(
        metrics,
        &series("sent_bytes_total", "forked", first),
        1000.0,
    );
    for _ in 0..2 {
        assert!(echoes(&mut connect(first), b"hello"));
    }
    assert!(echoes(&mut connect(second), b"on the second listener"));
    wait_sample(
        metrics,
        &series("received_bytes_total", "forked", first),
        1010.0,
    );
    wait_sample(
        metrics,
        &series("sent_bytes_total", "forked", first),
        1010.0,
    );
    wait_sample(
        metrics,
        &series("received_bytes_total", "forked", second),
        22.0,
    );

    let mut c = connect(counted);
    c.write_all(b"xyz\nhello\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "3\n5\n");
    wait_sample(metrics, &series("requests_total", "counted", counted), 2.0);
    wait_sample(
        metrics,
        &series("sent_bytes_total", "counted", counted),
        4.0,
    );
    drop(open);
}
