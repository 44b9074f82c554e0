//! A reload whose new server cannot start changes nothing: the old server
//! keeps serving, and the log says the reload was refused.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;

const T: Duration = Duration::from_secs(10);

fn echo_once(addr: SocketAddr, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(msg)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut got = Vec::new();
    s.read_to_end(&mut got)?;
    Ok(got)
}

/// Sets the soft limit on open files of process `pid`; returns the old one.
fn limit_fds(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit on our own child, with valid structs.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft,
        rlim_max: old.rlim_max,
    };
    // SAFETY: as above.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

#[test]
fn a_reload_whose_new_server_cannot_start_leaves_the_old_one_serving() {
    let port = free_port();
    let config = |workers: usize| {
        format!(
            "[daemon]\nshutdown_grace = \"1s\"\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\nworkers = {workers}\n"
        )
    };
    let (mut d, bound) = Daemon::start(&config(1), 1);
    let addr = bound[0].1;
    assert_eq!(echo_once(addr, b"before").unwrap(), b"before");

    // The new server differs (more workers): it is bound on the old one's
    // socket (one descriptor), then cannot make its workers' polls.
    let pid = d.child.id();
    let soft = limit_fds(pid, open_fds(pid) + 4);
    d.dir.write("netlabd.toml", &config(50));
    d.signal(libc::SIGHUP);
    let refused = d.wait_for_line("reload refused, nothing changed", T);
    assert!(refused.contains("open files"), "{refused}");
    limit_fds(pid, soft);

    assert_eq!(
        echo_once(addr, b"after").expect("the old server stopped serving"),
        b"after"
    );
    assert!(
        !d.seen.iter().any(|l| l.contains("reloaded:")),
        "{:#?}",
        d.seen
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

/// Threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

/// UDP sockets on the machine bound to 127.0.0.1:`port`.
fn udp_sockets_on(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(local.as_str()))
        .count()
}

/// Waits up to `T` for `f` to hold.
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + T;
    while std::time::Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Every one of 20 senders (20 source ports, which the kernel spreads over
/// the SO_REUSEPORT sockets) gets its echo.
fn every_sender_answered(addr: SocketAddr) {
    for i in 0..20 {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let msg = format!("datagram {i}");
        let mut buf = [0u8; 64];
        let answered = (0..10).any(|_| {
            s.send_to(msg.as_bytes(), addr).unwrap();
            matches!(s.recv_from(&mut buf), Ok((n, from)) if from == addr && buf[..n] == *msg.as_bytes())
        });
        assert!(answered, "sender {i} ({:?}) got no echo", s.local_addr());
    }
}

/// A UDP server with three workers, changed on reload, keeps three workers
/// on the same three SO_REUSEPORT sockets (none closed, so no queued
/// datagram is lost); reloaded to one worker, that worker serves all three
/// sockets the kernel still spreads datagrams over.
#[test]
fn a_changed_udp_server_keeps_its_sockets_and_its_workers() {
    let port = free_port();
    let config = |workers: usize, drop: &str| {
        format!(
            "[daemon]\nshutdown_grace = \"1s\"\n\n[[server]]\nname = \"eu\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:{port}\"]\nworkers = {workers}\ndrop_source_ports = [{drop}]\n"
        )
    };
    let (mut d, bound) = Daemon::start(&config(3, "0"), 1);
    let addr = bound[0].1;
    let pid = d.child.id();
    // A thread takes its name once it runs.
    assert!(eventually(|| threads_named(pid, "eu-udp") == 3));
    assert_eq!(udp_sockets_on(port), 3);
    every_sender_answered(addr);

    d.dir.write("netlabd.toml", &config(3, "0, 7"));
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded:", T);
    assert!(
        eventually(|| threads_named(pid, "eu-udp") == 3),
        "{} UDP workers after the reload",
        threads_named(pid, "eu-udp")
    );
    assert_eq!(udp_sockets_on(port), 3, "sockets after the reload");
    every_sender_answered(addr);

    d.dir.write("netlabd.toml", &config(1, "0, 7"));
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded:", T);
    assert!(
        eventually(|| threads_named(pid, "eu-udp") == 1),
        "{} UDP workers after the reload to one",
        threads_named(pid, "eu-udp")
    );
    assert_eq!(udp_sockets_on(port), 3, "sockets after the reload to one");
    every_sender_answered(addr);

    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

/// A config with `grace`, and the servers named in `servers`, each an echo
/// on its own fixed port.
fn graced(grace: &str, servers: &[(&str, u16)]) -> String {
    let mut text = format!("[daemon]\nshutdown_grace = \"{grace}\"\n");
    for (name, port) in servers {
        text += &format!(
            "\n[[server]]\nname = \"{name}\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        );
    }
    text
}

/// Waits until the peer closes `s` (EOF or reset), up to `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_)) && {
        // A timeout is an error too: tell them apart.
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// A server removed by a reload drains under the reload's grace, not the
/// one before it; and a stop of the daemon shortens drains still under way.
#[test]
fn draining_servers_follow_the_newest_grace() {
    let (a, b) = (free_port(), free_port());
    let (mut d, bound) = Daemon::start(&graced("60s", &[("a", a), ("b", b)]), 2);
    let a_addr = bound.iter().find(|(n, _)| n == "a").unwrap().1;

    // Removed with a grace of 300ms: its idle connection ends soon. (One
    // round trip first, so the connection is surely the server's, not a
    // queued one that closing the listener would reset at once.)
    let mut idle = TcpStream::connect(a_addr).unwrap();
    idle.set_read_timeout(Some(T)).unwrap();
    idle.write_all(b"here").unwrap();
    let mut here = [0u8; 4];
    idle.read_exact(&mut here).unwrap();
    d.dir.write("netlabd.toml", &graced("300ms", &[("b", b)]));
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded:", T);
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut idle, Duration::from_secs(5)),
        "still open"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Back, then removed under a long grace; a stop with a short one ends it.
    d.dir
        .write("netlabd.toml", &graced("60s", &[("a", a), ("b", b)]));
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded:", T);
    let mut idle = TcpStream::connect(a_addr).unwrap();
    assert_eq!(echo_once(a_addr, b"a is back").unwrap(), b"a is back");
    d.dir.write("netlabd.toml", &graced("60s", &[("b", b)]));
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded:", T);
    // Removed, it still serves the connection it has while it drains.
    idle.set_read_timeout(Some(T)).unwrap();
    idle.write_all(b"drained, not dropped").unwrap();
    let mut got = [0u8; 20];
    idle.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"drained, not dropped");
    d.dir.write("netlabd.toml", &graced("200ms", &[("b", b)]));
    d.signal(libc::SIGHUP);
    d.wait_for_line("reloaded:", T);
    let started = std::time::Instant::now();
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    assert!(closed_within(&mut idle, Duration::from_secs(1)));
}
