//! Running out of file descriptors. A server whose start fails halfway
//! must leave nothing behind: no worker serving the port, no thread. A
//! server that cannot accept for want of descriptors must accept the
//! connections that waited once it can again. In a test binary of their
//! own, one at a time, because they lower the process's descriptor limit.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use netlab::config::ServerConfig;
use netlab::server::BoundServer;

/// The descriptor limit is the process's: one test at a time changes it.
static LIMIT: Mutex<()> = Mutex::new(());

fn set_fd_limit(soft: u64) -> libc::rlimit {
    let mut saved = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on valid structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut saved), 0);
        let low = libc::rlimit {
            rlim_cur: soft,
            rlim_max: saved.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
    }
    saved
}

fn restore_fd_limit(saved: libc::rlimit) {
    // SAFETY: as above.
    unsafe {
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &saved), 0);
    }
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// Threads of this process whose name starts with `prefix` (a server's
/// workers are named after it): other tests' threads come and go.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

/// Starts `toml` with the descriptor limit a little above what is open, so
/// that a few workers can be built and the rest cannot. Returns the bound
/// address and the start's error.
fn start_short_of_fds(toml: &str) -> (SocketAddr, String) {
    let config = ServerConfig::parse(toml, "test").unwrap();
    let bound = BoundServer::bind(&config).unwrap();
    let addr = bound.local_addrs()[0];
    let saved = set_fd_limit(open_fds() + 24);
    let started = netlab::host::start(bound);
    restore_fd_limit(saved);
    match started {
        Ok(_) => panic!("the start should have run out of descriptors"),
        Err(e) => (addr, e.to_string()),
    }
}

#[test]
fn a_start_that_fails_halfway_leaves_nothing_serving() {
    let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    for (what, toml) in [
        (
            "event",
            "name = \"many\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\nworkers = 500\n",
        ),
        (
            "udp",
            "name = \"many-udp\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"127.0.0.1:0\"]\nworkers = 500\n",
        ),
    ] {
        let (addr, error) = start_short_of_fds(toml);
        eprintln!("{what}: the start failed: {error}");
        assert!(error.contains("open files"), "{what}: {error}");
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            threads_named("many"),
            0,
            "{what}: its workers are left running"
        );
        if what == "event" {
            let connected = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            assert!(
                connected.is_err(),
                "{what}: {addr} is still served after the failed start"
            );
        }
    }
}

/// The lowest descriptor number free now: with the limit set to it, no
/// new descriptor can be made.
fn lowest_free_fd() -> u64 {
    let probe = std::fs::File::open("/dev/null").unwrap();
    probe.as_raw_fd() as u64
}

/// Clients connect while the server cannot accept (EMFILE): they wait in
/// the backlog. Once descriptors are free again, every one is served, with
/// no new connection needed to wake the server. Under every model, and for
/// a chat room.
#[test]
fn connections_that_waited_out_emfile_are_served_after_it() {
    let _one_at_a_time = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    for (model, toml) in [
        (
            "event",
            "service = \"echo\"\nmodel = \"event\"\nworkers = 2",
        ),
        ("thread", "service = \"echo\"\nmodel = \"thread\""),
        ("fork", "service = \"echo\"\nmodel = \"fork\""),
        ("chat", "service = \"chat\""),
    ] {
        let config = ServerConfig::parse(
            &format!("name = \"emfile\"\nlisten = [\"127.0.0.1:0\"]\n{toml}\n"),
            "test",
        )
        .unwrap();
        let server = netlab::host::start(BoundServer::bind(&config).unwrap()).unwrap();
        let addr = server.local_addrs()[0];
        // Made now: connecting them later needs no new descriptor.
        let sockets: Vec<socket2::Socket> = (0..8)
            .map(|_| {
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap()
            })
            .collect();
        let saved = set_fd_limit(lowest_free_fd());
        for s in &sockets {
            s.connect(&addr.into()).unwrap();
        }
        // Long enough for the server to try, fail, and plan a retry.
        std::thread::sleep(Duration::from_millis(300));
        restore_fd_limit(saved);

        for (i, s) in sockets.into_iter().enumerate() {
            let mut s: TcpStream = s.into();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let (say, want) = if model == "chat" {
                (format!("user{i}\n"), "* welcome ".to_owned())
            } else {
                (format!("hello {i}\n"), format!("hello {i}\n"))
            };
            s.write_all(say.as_bytes()).unwrap();
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).unwrap_or_else(|e| {
                panic!("{model}: connection {i} was not served after EMFILE ended: {e}")
            });
            assert_eq!(
                String::from_utf8_lossy(&got),
                want,
                "{model}: connection {i}"
            );
        }
        server.stop(Duration::from_millis(200));
    }
}
