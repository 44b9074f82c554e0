//! The fork model's processes: children are reaped while serving, none is
//! left (not even a zombie) after a stop, and max_connections bounds them.
//!
//! The children of a fork server are children of this whole test process,
//! so these tests hold the fork lock exclusively while they count them.

use std::io::Write;
use std::net::Shutdown;
use std::time::{Duration, Instant};

use rand::RngExt;

use crate::common::*;

fn describe(children: &[Child]) -> String {
    children
        .iter()
        .map(|c| format!("{}({})", c.pid, c.state))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One client: a random message echoed, then EOF.
fn one_client(at: std::net::SocketAddr, rng: &mut impl RngExt, i: usize) {
    let mut msg = format!("connection {i} ").into_bytes();
    let n = rng.random_range(1..=2048);
    msg.extend(random_bytes(rng, n));
    let mut s = connect(at);
    s.write_all(&msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut s), msg, "connection {i}");
}

#[test]
fn children_are_reaped_while_serving_and_none_is_left_after_stop() {
    let _g = fork_exclusive();
    assert_eq!(describe(&children()), "", "children before the test");
    let server = tcp_server("reap", "echo", Model::Fork, "max_connections = 200");
    let at = addr(&server);
    let mut rng = rng("fork_reaping");

    // 50 one after the other...
    for i in 0..50 {
        one_client(at, &mut rng, i);
    }
    // ...and 50 at once.
    let base: u64 = rng.random();
    concurrently(50, |i| {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(base + i as u64);
        one_client(at, &mut rng, 50 + i);
    });
    assert_eq!(server.stats().accepted, 100);

    // Every connection is closed: the reaper must leave neither a child nor a zombie.
    let t = Instant::now();
    let reaped = eventually(Duration::from_secs(2), || children().is_empty());
    assert!(
        reaped,
        "2 s after the last connection closed, children remain: {}",
        describe(&children())
    );
    eprintln!(
        "fork: all 100 children reaped {:?} after the last close",
        t.elapsed()
    );
    assert!(eventually(Duration::from_secs(1), || server.stats().open == 0));

    // Connections held open have a child each, alive (not zombies).
    let mut held: Vec<_> = (0..5).map(|_| connect(at)).collect();
    for c in &mut held {
        echo_round_trip(c, b"holding");
    }
    let kids = children();
    assert_eq!(
        kids.len(),
        5,
        "one child per open connection: {}",
        describe(&kids)
    );
    assert!(
        kids.iter().all(|c| c.state != 'Z'),
        "zombies: {}",
        describe(&kids)
    );

    // Two of them leave: their children go, the others stay.
    for mut c in held.drain(..2) {
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_eof(&mut c), b"");
    }
    assert!(
        eventually(Duration::from_secs(2), || children().len() == 3),
        "after 2 of 5 clients left: {}",
        describe(&children())
    );
    assert!(
        children().iter().all(|c| c.state != 'Z'),
        "zombies: {}",
        describe(&children())
    );

    // Stop: the 3 left are ended after the grace, and nothing at all remains.
    let t = Instant::now();
    server.stop(Duration::from_millis(300));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    let left = children();
    assert!(left.is_empty(), "after stop(): {}", describe(&left));
    for c in &mut held {
        assert!(
            closed_within(c, Duration::from_secs(1)).is_some(),
            "client still served after stop"
        );
    }
}

#[test]
fn max_connections_bounds_the_children() {
    let _g = fork_exclusive();
    let server = tcp_server("fork3", "echo", Model::Fork, "max_connections = 3");
    let at = addr(&server);
    let mut clients: Vec<_> = (0..3).map(|_| connect(at)).collect();
    for c in &mut clients {
        echo_round_trip(c, b"idle after this");
    }
    assert_refused(at, "4th connection");
    assert_refused(at, "5th connection");
    let stats = server.stats();
    assert!(stats.refused >= 2, "{stats:?}");
    assert_eq!(stats.open, 3, "{stats:?}");
    // No child was made for the refused ones.
    let kids = children();
    assert_eq!(kids.len(), 3, "{}", describe(&kids));
    for c in &mut clients {
        echo_round_trip(c, b"still served");
    }
    drop(clients);
    server.stop(Duration::from_millis(300));
    assert_eq!(describe(&children()), "", "after stop()");
}

/// Dropping a fork server (no grace) kills and reaps its children too.
#[test]
fn drop_leaves_no_child() {
    let _g = fork_exclusive();
    let server = tcp_server("forkdrop", "echo", Model::Fork, "");
    let at = addr(&server);
    let mut held: Vec<_> = (0..3).map(|_| connect(at)).collect();
    for c in &mut held {
        echo_round_trip(c, b"hi");
    }
    assert_eq!(children().len(), 3);
    drop(server);
    assert_eq!(describe(&children()), "", "after drop");
    for c in &mut held {
        assert!(closed_within(c, Duration::from_secs(1)).is_some());
    }
}

/// A child keeps only its own connection: a socket the test process had
/// open when the child was made is not held open by the child.
#[test]
fn child_holds_no_inherited_descriptor() {
    let _g = fork_shared();
    // A connection of the test process's own, made before any child.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut ours = connect(listener.local_addr().unwrap());
    let (theirs, _) = listener.accept().unwrap();

    let server = tcp_server("forkfds", "echo", Model::Fork, "");
    let mut served = connect(addr(&server));
    echo_round_trip(&mut served, b"a child now exists");
    assert_eq!(server.stats().open, 1);

    // Closing our end must reach the peer at once: no child holds a copy.
    drop(theirs);
    drop(listener);
    assert!(
        closed_within(&mut ours, Duration::from_secs(1)).is_some(),
        "a fork child kept the test process's socket open"
    );
    echo_round_trip(&mut served, b"still served");
}

/// The stop signals that reach every process of netlabd's process group
/// (Ctrl-C) or of its service (systemd's `KillMode=control-group`) leave
/// the children serving: it is the parent's stop that ends them, after
/// the grace period.
#[test]
fn children_outlive_stop_signals_until_the_grace_is_over() {
    let _g = fork_exclusive();
    assert_eq!(describe(&children()), "", "children before the test");
    let server = tcp_server("forksig", "echo", Model::Fork, "");
    let at = addr(&server);
    let mut leaving = connect(at);
    let mut staying = connect(at);
    echo_round_trip(&mut leaving, b"before the signals");
    echo_round_trip(&mut staying, b"before the signals");
    let kids = children();
    assert_eq!(kids.len(), 2, "{}", describe(&kids));

    // Signalled directly: a child that died of it could not echo any more
    // (a signal pending on a child blocked in read is acted on first).
    let signal_all = |kids: &[Child], sig: i32| {
        for c in kids {
            // SAFETY: kill(2) on a child of this process, not yet reaped
            // (nothing reaps it while this test holds the fork lock).
            let rc = unsafe { libc::kill(c.pid as i32, sig) };
            assert_eq!(rc, 0, "kill({}, {sig})", c.pid);
        }
    };
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        signal_all(&kids, sig);
        echo_round_trip(&mut leaving, format!("after signal {sig}").as_bytes());
        echo_round_trip(&mut staying, format!("after signal {sig}").as_bytes());
    }
    let pids = |kids: &[Child]| kids.iter().map(|c| c.pid).collect::<Vec<_>>();
    let still = children();
    assert_eq!(pids(&still), pids(&kids), "after the signals");
    assert!(
        still.iter().all(|c| c.state != 'Z'),
        "zombies: {}",
        describe(&still)
    );

    // A stop with a grace: a signal now changes nothing either; the
    // connection that ends within the grace ends normally...
    let grace = Duration::from_millis(1500);
    let t = Instant::now();
    let stopping = std::thread::spawn(move || server.stop(grace));
    std::thread::sleep(Duration::from_millis(100));
    signal_all(&kids, libc::SIGTERM);
    echo_round_trip(&mut leaving, b"during the grace");
    echo_round_trip(&mut staying, b"during the grace");
    leaving.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut leaving), b"");

    // ...and the other is ended when the grace is over, its child reaped.
    let closed = closed_within(&mut staying, grace + Duration::from_secs(2));
    let at_close = t.elapsed();
    assert!(closed.is_some(), "still served {at_close:?} after the stop");
    assert!(
        at_close >= grace - Duration::from_millis(200),
        "ended {at_close:?} after the stop, before the grace of {grace:?}"
    );
    stopping.join().expect("stop");
    assert_eq!(describe(&children()), "", "after stop()");
}

/// A child holds stdio and its connection, nothing else: not its server's
/// listener, not another server's, not the other connections.
#[test]
fn child_holds_only_stdio_and_its_connection() {
    let _g = fork_exclusive();
    let other = tcp_server("forkother", "echo", Model::Thread, "");
    let mut other_client = connect(addr(&other));
    echo_round_trip(&mut other_client, b"another server's connection");
    let server = tcp_server("forkonly", "echo", Model::Fork, "");
    let mut first = connect(addr(&server));
    echo_round_trip(&mut first, b"first");
    let mut second = connect(addr(&server));
    echo_round_trip(&mut second, b"second");

    let kids = children();
    assert_eq!(kids.len(), 2, "{}", describe(&kids));
    for c in &kids {
        let dir = format!("/proc/{}/fd", c.pid);
        let mut held: Vec<(i32, String)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .filter_map(|e| {
                let e = e.ok()?;
                let fd = e.file_name().to_str()?.parse().ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((fd, target.to_string_lossy().into_owned()))
            })
            .collect();
        held.sort();
        let above_stdio: Vec<&(i32, String)> = held.iter().filter(|(fd, _)| *fd > 2).collect();
        assert!(
            above_stdio.len() == 1 && above_stdio[0].1.starts_with("socket:"),
            "child {} holds {held:?}",
            c.pid
        );
    }
    echo_round_trip(&mut first, b"still served");
    drop((first, second));
    server.stop(Duration::from_millis(300));
    other.stop(Duration::ZERO);
    assert_eq!(describe(&children()), "", "after stop()");
}
