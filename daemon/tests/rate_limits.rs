//! Rate limits from outside: a source flooding connections or datagrams
//! is refused beyond its burst and rate while another source is served;
//! a chat client over `message_rate` is told so in its dialect, and
//! disconnected after 20 refusals in a row. (The table of sources staying
//! bounded under 100,000 sources is tested on the table itself, in
//! `server::limits`: loopback cannot make that many sources.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

fn at(bound: &[(String, SocketAddr)], name: &str) -> SocketAddr {
    bound.iter().find(|(n, _)| n == name).unwrap().1
}

/// `rate = "2/s"`, `burst = 5`: 127.0.0.2 opens 30 connections as fast as
/// it can and gets its burst (and what the rate adds meanwhile), the rest
/// refused and counted; 127.0.0.3, meanwhile, is served; the log says who
/// was refused and why; a while later 127.0.0.2 is served again.
#[test]
fn a_flooding_source_is_refused_and_another_is_served() {
    let (mut daemon, bound) = Daemon::start(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
         [[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n\
         rate = \"2/s\"\nburst = 5\n",
        1,
    );
    let metrics = daemon.metrics_addr();
    let echo = bound[0].1;
    let started = Instant::now();
    let mut served = 0;
    for _ in 0..30 {
        let mut c = connect_from("127.0.0.2", echo).unwrap();
        if echoes(&mut c, b"flood") {
            served += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = 5 + (elapsed * 2.0).ceil() as usize;
    assert!(
        (5..=allowed).contains(&served),
        "127.0.0.2 served {served} of 30 in {elapsed:.2} s; its burst is 5 and rate 2/s"
    );
    // The other source is not affected.
    for _ in 0..3 {
        let mut c = connect_from("127.0.0.3", echo).unwrap();
        assert!(echoes(&mut c, b"neighbour"), "127.0.0.3 is served");
    }
    let line = daemon.wait_for_line("refused 127.0.0.2:", Duration::from_secs(5));
    assert!(line.contains("over rate for its source"), "{line}");
    let body = scrape(metrics);
    let refused = sample(
        &body,
        &format!(
            "netlab_connections_refused_total{{server=\"echo\",listener=\"{echo}\",reason=\"rate\"}}"
        ),
    );
    assert_eq!(refused, Some((30 - served) as f64), "{body}");
    // The bucket refills: one more token within a second.
    std::thread::sleep(Duration::from_millis(600));
    let mut c = connect_from("127.0.0.2", echo).unwrap();
    assert!(echoes(&mut c, b"later"), "served again once a token is due");
}

/// The same for datagrams: 127.0.0.2's beyond the burst are dropped and
/// counted, 127.0.0.3's answered.
#[test]
fn a_flooding_datagram_source_is_dropped_and_another_is_answered() {
    let (mut daemon, bound) = Daemon::start(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
         [[server]]\nname = \"udp\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\n\
         workers = 1\nrate = \"1/h\"\nburst = 4\n",
        1,
    );
    let metrics = daemon.metrics_addr();
    let udp = bound[0].1;
    let flooder = UdpSocket::bind("127.0.0.2:0").unwrap();
    for i in 0..40u8 {
        flooder.send_to(&[i], udp).unwrap();
    }
    flooder
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answered = 0;
    let mut buf = [0u8; 8];
    while flooder.recv_from(&mut buf).is_ok() {
        answered += 1;
    }
    assert_eq!(answered, 4, "the burst, and nothing more at 1/h");
    let other = UdpSocket::bind("127.0.0.3:0").unwrap();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    other.send_to(b"hi", udp).unwrap();
    assert_eq!(other.recv_from(&mut buf).unwrap().0, 2);
    let series = |what: &str| format!("netlab_datagrams_{what}{{server=\"udp\",listener=\"{udp}\"");
    wait_sample(metrics, &format!("{}}}", series("answered_total")), 5.0);
    let body = scrape(metrics);
    assert_eq!(
        sample(
            &body,
            &format!("{},reason=\"rate\"}}", series("dropped_total"))
        ),
        Some(36.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &format!("{}}}", series("received_total"))),
        Some(41.0)
    );
    let line = daemon.wait_for_line("dropping datagrams from 127.0.0.2", Duration::from_secs(5));
    assert!(line.contains("over rate"), "{line}");
}

/// `message_rate = "1/h"`, `message_burst = 3` on a line chat: the
/// flooder's first 3 messages reach the other client; each one after is
/// refused with an error line; at the 20th refusal in a row it is told
/// why and disconnected. The other client stays.
#[test]
fn a_chat_client_over_its_message_rate_is_refused_then_disconnected() {
    let (mut daemon, bound) = Daemon::start(
        "[daemon]\nmetrics = \"127.0.0.1:0\"\n\
         [[server]]\nname = \"room\"\nservice = \"chat\"\nlisten = [\"127.0.0.1:0\"]\n\
         message_rate = \"1/h\"\nmessage_burst = 3\n",
        1,
    );
    let metrics = daemon.metrics_addr();
    let room = at(&bound, "room");
    let join = |name: &str| {
        let s = TcpStream::connect(room).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        (&s).write_all(format!("{name}\n").as_bytes()).unwrap();
        let mut welcome = String::new();
        r.read_line(&mut welcome).unwrap();
        assert!(welcome.contains("welcome"), "{welcome}");
        (s, r)
    };
    let (_other, mut other_in) = join("other");
    let (mut flood, mut flood_in) = join("flood");
    let mut notice = String::new();
    other_in.read_line(&mut notice).unwrap();
    assert!(notice.contains("flood joined"), "{notice}");
    // 3 within the burst, then 20 refused: nothing is left unread when it
    // is disconnected (unread input would make its close a reset).
    for i in 0..23 {
        if flood
            .write_all(format!("message {i}\n").as_bytes())
            .is_err()
        {
            break;
        }
    }
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        match flood_in.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => lines.push(line),
        }
    }
    let refused = lines
        .iter()
        .filter(|l| {
            l.starts_with("* error: message not delivered: over the message rate (1/h, burst 3)")
        })
        .count();
    assert_eq!(refused, 19, "{lines:#?}");
    assert!(
        lines.last().is_some_and(|l| l
            .contains("20 messages in a row over the message rate (1/h, burst 3); disconnecting")),
        "{lines:#?}"
    );
    // The other client got the burst and the departure, nothing else.
    let mut got = Vec::new();
    while got.len() < 4 {
        let mut line = String::new();
        other_in.read_line(&mut line).unwrap();
        got.push(line);
    }
    assert_eq!(
        got,
        [
            "[flood] message 0\n",
            "[flood] message 1\n",
            "[flood] message 2\n",
            "* flood left (1 online)\n"
        ]
    );
    wait_sample(metrics, "netlab_chat_members{server=\"room\"}", 1.0);
    let body = scrape(metrics);
    assert_eq!(
        sample(&body, "netlab_chat_messages_refused_total{server=\"room\"}"),
        Some(20.0)
    );
    assert_eq!(
        sample(&body, "netlab_chat_rate_disconnects_total{server=\"room\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&body, "netlab_chat_messages_total{server=\"room\"}"),
        Some(3.0)
    );
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit(Duration::from_secs(10)).success());
}

/// Rate keys are checked like every other: where they do not apply, and
/// values out of range, are errors with their place in the file.
#[test]
fn rate_and_proxy_keys_are_refused_where_they_do_not_apply() {
    let dir = TempDir::new();
    let path = dir.write(
        "bad.toml",
        "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n\
         burst = 3\nsource_prefix_v4 = 40\nmessage_rate = \"1/s\"\nproxy_protocol = true\n\
         [[server]]\nname = \"u\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\n\
         rate = \"ten/s\"\nproxy_protocol = true\n",
    );
    let out = std::process::Command::new(NETLABD)
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "bad.toml:5:9: burst does not apply to a server without rate",
        "bad.toml:6:20: source_prefix_v4 does not apply to a server without rate",
        "bad.toml:7:16: message_rate does not apply to services other than chat",
        "bad.toml:8:18: proxy_protocol = true needs proxy_from",
        "bad.toml:14:8: rate: \"ten/s\": \"ten\" is not a count",
        "bad.toml:15:18: proxy_protocol does not apply to UDP servers",
    ] {
        assert!(err.contains(want), "{want:?} in\n{err}");
    }
}
