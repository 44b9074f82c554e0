//! Listen addresses: IPv6 loopback, and several addresses on one server.

use std::io::Write;
use std::net::{Shutdown, UdpSocket};
use std::time::Duration;

use crate::common::*;

const MODELS: [Model; 3] = [Model::Event, Model::Thread, Model::Fork];

#[test]
fn echo_on_ipv6_loopback() {
    if !ipv6_available() {
        eprintln!("SKIPPED echo_on_ipv6_loopback: ::1 is not available here");
        return;
    }
    let _g = fork_shared();
    for model in MODELS {
        let server = start(&format!(
            "name = \"v6\"\nservice = \"echo\"\nlisten = [\"[::1]:0\"]\nmodel = \"{}\"\n",
            model.name()
        ));
        let at = addr(&server);
        assert!(at.is_ipv6() && at.port() != 0, "{at}");
        let mut s = connect(at);
        s.write_all(b"over IPv6").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut s), b"over IPv6", "{}", model.name());
        server.stop(Duration::from_millis(300));
    }
    let server =
        start("name = \"v6u\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"[::1]:0\"]\n");
    let sock = UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let mut answered = false;
    for _ in 0..5 {
        sock.send_to(b"udp over IPv6", addr(&server)).unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            assert_eq!(from, addr(&server));
            assert_eq!(&buf[..n], b"udp over IPv6");
            answered = true;
            break;
        }
    }
    assert!(answered, "no UDP reply over IPv6");
}

/// Every address of a server serves, under every model.
#[test]
fn several_listen_addresses_all_serve() {
    let _g = fork_shared();
    let mut listen = vec!["\"127.0.0.1:0\"", "\"127.0.0.1:0\""];
    if ipv6_available() {
        listen.push("\"[::1]:0\"");
    } else {
        eprintln!("several_listen_addresses_all_serve: ::1 unavailable, IPv4 only");
    }
    let listen = listen.join(", ");
    for model in MODELS {
        let server = start(&format!(
            "name = \"multi\"\nservice = \"echo\"\nlisten = [{listen}]\nmodel = \"{}\"\n{}",
            model.name(),
            if model == Model::Event {
                "workers = 2\n"
            } else {
                ""
            }
        ));
        let addrs = server.local_addrs().to_vec();
        assert!(addrs.len() >= 2 && addrs[0] != addrs[1], "{addrs:?}");
        // All at once, each address twice.
        let mut clients: Vec<_> = addrs.iter().chain(&addrs).map(|a| connect(*a)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            let msg = format!("to {} ({i})", addrs[i % addrs.len()]);
            c.write_all(msg.as_bytes()).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            assert_eq!(
                String::from_utf8(read_to_eof(c)).unwrap(),
                msg,
                "{}",
                model.name()
            );
        }
        assert_eq!(server.stats().accepted, 2 * addrs.len() as u64);
        server.stop(Duration::from_millis(300));
    }
}

#[test]
fn several_udp_listen_addresses_all_serve() {
    for workers in [1, 2] {
        let server = start(&format!(
            "name = \"multiu\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nworkers = {workers}\n"
        ));
        let addrs = server.local_addrs().to_vec();
        assert_ne!(addrs[0], addrs[1]);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        for at in &addrs {
            let msg = format!("to {at}");
            let mut buf = [0u8; 64];
            let mut answered = false;
            for _ in 0..5 {
                sock.send_to(msg.as_bytes(), at).unwrap();
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    assert_eq!(from, *at, "the reply comes from the address asked");
                    assert_eq!(&buf[..n], msg.as_bytes());
                    answered = true;
                    break;
                }
            }
            assert!(answered, "{at} did not answer (workers = {workers})");
        }
    }
}
