//! netlabd as a system service: the notify protocol, socket activation,
//! reload on SIGHUP, daemon mode. Every test runs netlabd as a process on
//! loopback and leaves none behind.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, NETLABD, TempDir, free_port};

const T: Duration = Duration::from_secs(5);

fn echo_once(addr: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(msg).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read echo");
    out
}

/// An echo connection kept open across reloads.
struct EchoConn(TcpStream);

impl EchoConn {
    fn open(addr: SocketAddr) -> EchoConn {
        let s = TcpStream::connect_timeout(&addr, T).expect("connect");
        s.set_read_timeout(Some(T)).unwrap();
        EchoConn(s)
    }

    fn round_trip(&mut self, msg: &[u8]) {
        self.0
            .write_all(msg)
            .expect("write to a kept echo connection");
        let mut got = vec![0; msg.len()];
        self.0
            .read_exact(&mut got)
            .expect("echo on a kept connection");
        assert_eq!(got, msg);
    }
}

/// A line-dialect chat client.
struct ChatLine {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl ChatLine {
    fn join(addr: SocketAddr, name: &str) -> ChatLine {
        let s = TcpStream::connect_timeout(&addr, T).expect("connect chat");
        s.set_read_timeout(Some(T)).unwrap();
        let mut c = ChatLine {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        };
        c.say(name);
        let welcome = c.line();
        assert!(
            welcome.starts_with(&format!("* welcome {name}")),
            "{welcome}"
        );
        c
    }

    fn say(&mut self, text: &str) {
        self.writer
            .write_all(format!("{text}\n").as_bytes())
            .unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("chat line");
        l
    }

    /// The next line that is not a join/leave notice.
    fn message(&mut self) -> String {
        loop {
            let l = self.line();
            assert!(!l.is_empty(), "chat connection closed");
            if !(l.starts_with("* ") && (l.contains(" joined (") || l.contains(" left ("))) {
                return l;
            }
        }
    }
}

// ---- sd_notify ------------------------------------------------------------

struct NotifySocket {
    socket: UnixDatagram,
    _dir: TempDir,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let dir = TempDir::new();
        let path = dir.path("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        socket.set_read_timeout(Some(T)).unwrap();
        NotifySocket {
            socket,
            _dir: dir,
            path,
        }
    }

    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notify message within 5 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// The next message that is not only a STATUS= update.
    fn recv_state(&self) -> String {
        loop {
            let m = self.recv();
            if !m.lines().all(|l| l.starts_with("STATUS=")) {
                return m;
            }
        }
    }
}

fn monotonic_usec() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000 + ts.tv_nsec as u128 / 1000
}

/// netlabd on `ONE_ECHO`, told to notify a socket of the test's, with `env`.
fn with_notify(env: &[(&str, &str)]) -> (NotifySocket, Daemon, Vec<(String, SocketAddr)>) {
    let notify = NotifySocket::new();
    let dir = TempDir::new();
    let config = dir.write("netlabd.toml", ONE_ECHO);
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify.path);
    cmd.envs(env.iter().copied());
    let (daemon, bound) = Daemon::spawn(cmd, dir, 1);
    (notify, daemon, bound)
}

const ONE_ECHO: &str = "[daemon]\nshutdown_grace = \"1s\"\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n";

#[test]
fn notify_sequence_through_start_reload_failed_reload_and_stop() {
    let (notify, mut d, bound) = with_notify(&[]);

    assert_eq!(
        notify.recv_state(),
        "READY=1\nSTATUS=1 servers, 0 connections open\n"
    );
    assert_eq!(echo_once(bound[0].1, b"ping"), b"ping");

    // A good reload: RELOADING=1 with the monotonic clock, then READY=1.
    let before = monotonic_usec();
    d.signal(libc::SIGHUP);
    let reloading = notify.recv_state();
    let lines: Vec<&str> = reloading.lines().collect();
    assert_eq!(lines.len(), 3, "{reloading}");
    assert_eq!(lines[0], "RELOADING=1");
    let usec: u128 = lines[1]
        .strip_prefix("MONOTONIC_USEC=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{reloading}"));
    assert!(
        usec >= before && usec <= monotonic_usec(),
        "{usec} not in [{before}, now]"
    );
    assert_eq!(lines[2], "STATUS=reloading");
    assert!(notify.recv_state().starts_with("READY=1\nSTATUS=1 servers"));
    d.wait_for_line("reloaded:", T);

    // A failed reload: the same two steps, the errors logged, still serving.
    d.dir.write(
        "netlabd.toml",
        "[[server]]\nname = \"echo\"\nservce = \"echo\"\n",
    );
    d.signal(libc::SIGHUP);
    assert!(
        notify
            .recv_state()
            .starts_with("RELOADING=1\nMONOTONIC_USEC=")
    );
    assert!(notify.recv_state().starts_with("READY=1\nSTATUS=1 servers"));
    d.wait_for_line("reload refused, nothing changed", T);
    d.wait_for_line("netlabd.toml:3:1: unknown field `servce`", T);
    assert_eq!(echo_once(bound[0].1, b"still"), b"still");

    d.signal(libc::SIGTERM);
    assert_eq!(notify.recv_state(), "STOPPING=1\nSTATUS=stopping\n");
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

#[test]
fn status_follows_open_connections() {
    let (notify, d, bound) = with_notify(&[]);
    assert!(notify.recv().starts_with("READY=1"));
    let _open = EchoConn::open(bound[0].1);
    let until = Instant::now() + T;
    loop {
        let m = notify.recv();
        if m == "STATUS=1 servers, 1 connections open\n" {
            break;
        }
        assert!(
            Instant::now() < until,
            "no status with the open connection; last {m:?}"
        );
    }
    drop(d);
}

#[test]
fn watchdog_is_pinged_at_half_the_interval() {
    let (notify, _d, _) = with_notify(&[("WATCHDOG_USEC", "400000")]);
    assert!(notify.recv().starts_with("READY=1"));
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if notify.recv() == "WATCHDOG=1\n" {
            pings += 1;
        }
    }
    // Three pings at 200 ms: about 600 ms, well inside 3 intervals of 400 ms.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_millis(1200),
        "{took:?}"
    );
}

#[test]
fn nothing_is_sent_without_notify_socket() {
    // The daemon must run normally with no NOTIFY_SOCKET (the other tests'
    // children have none and would fail to start otherwise); here we also
    // check that it does not create one.
    let (mut d, bound) = Daemon::start(ONE_ECHO, 1);
    assert_eq!(echo_once(bound[0].1, b"x"), b"x");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

// ---- socket activation ----------------------------------------------------

/// Runs netlabd with `sockets` as fds 3, 4, ... and LISTEN_FDS,
/// LISTEN_FDNAMES and LISTEN_PID set as systemd sets them. The pid is only
/// known once the child exists, so a shell sets it and execs netlabd, which
/// keeps the pid.
fn activated(
    config: &str,
    sockets: &[(i32, &str)],
    listeners: usize,
) -> Result<(Daemon, Vec<(String, SocketAddr)>), String> {
    let dir = TempDir::new();
    let path = dir.write("netlabd.toml", config);
    let names: Vec<&str> = sockets.iter().map(|(_, n)| *n).collect();
    let fds: Vec<i32> = sockets.iter().map(|(fd, _)| *fd).collect();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(NETLABD)
        .arg("--config")
        .arg(&path)
        .env("LISTEN_FDS", fds.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"));
    // SAFETY: only dup2 and fcntl, async-signal-safe, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Move them out of the way first, then into place, so none is
            // overwritten before it is copied.
            let high: Vec<i32> = fds
                .iter()
                .map(|&fd| libc::fcntl(fd, libc::F_DUPFD, 100))
                .collect();
            for (i, &fd) in high.iter().enumerate() {
                if fd < 0 || libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    if listeners == 0 {
        let out = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        drop(dir);
        return Err(format!(
            "{:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Daemon::spawn(cmd, dir, listeners))
}

#[test]
fn passed_sockets_are_used_by_name_and_by_address() {
    let by_name = TcpListener::bind("127.0.0.1:0").unwrap();
    let by_addr = UdpSocket::bind("127.0.0.1:0").unwrap();
    let named_port = by_name.local_addr().unwrap().port();
    let udp = by_addr.local_addr().unwrap();
    // The echo server's configured address is a different port: the name wins.
    let config = format!(
        "[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{}\"]\n\n\
         [[server]]\nname = \"udp\"\nservice = \"echo\"\ntransport = \"udp\"\nlisten = [\"{udp}\"]\n",
        free_port()
    );
    let (mut d, bound) = activated(
        &config,
        &[
            (by_name.as_raw_fd(), "echo"),
            (by_addr.as_raw_fd(), "netlabd.socket"),
        ],
        2,
    )
    .unwrap();
    drop((by_name, by_addr));
    let tcp = bound.iter().find(|(n, _)| n == "echo").unwrap().1;
    assert_eq!(tcp.port(), named_port, "the passed socket, not a new one");
    assert_eq!(echo_once(tcp, b"activated"), b"activated");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    client.send_to(b"dgram", udp).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"dgram"[..], udp));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

#[test]
fn a_passed_socket_no_server_can_use_is_an_error_that_names_it() {
    let stray = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = stray.local_addr().unwrap();
    let Err(err) = activated(ONE_ECHO, &[(stray.as_raw_fd(), "stray")], 0) else {
        panic!("netlabd started with a socket no server can use");
    };
    assert!(err.starts_with("Some(2)"), "{err}");
    assert!(
        err.contains(&format!(
            "fd 3 (tcp {addr}, name \"stray\") matches no server"
        )),
        "{err}"
    );
}

#[test]
fn systemd_socket_activate_passes_tcp_and_udp() {
    let tool = "systemd-socket-activate";
    if Command::new(tool).arg("--help").output().is_err() {
        eprintln!("SKIP: {tool} is not installed (Debian package systemd)");
        return;
    }
    for (transport, extra) in [("tcp", None), ("udp", Some("--datagram"))] {
        let port = free_port();
        let config = format!(
            "[[server]]\nname = \"echo\"\nservice = \"echo\"\ntransport = \"{transport}\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        );
        let dir = TempDir::new();
        let path = dir.write("netlabd.toml", &config);
        let mut cmd = Command::new(tool);
        cmd.arg("-l")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--fdname=echo");
        if let Some(flag) = extra {
            cmd.arg(flag);
        }
        cmd.arg(NETLABD).arg("--config").arg(&path);
        // systemd-socket-activate starts netlabd only when the first client
        // comes for TCP (and at once for datagram sockets); so connect first.
        let mut child = cmd
            .env("NETLABD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("systemd-socket-activate");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let until = Instant::now() + T;
        let ok = loop {
            let got = if transport == "tcp" {
                TcpStream::connect_timeout(&addr, T).ok().and_then(|mut s| {
                    s.set_read_timeout(Some(T)).ok()?;
                    s.write_all(b"via systemd").ok()?;
                    s.shutdown(Shutdown::Write).ok()?;
                    let mut out = Vec::new();
                    s.read_to_end(&mut out).ok()?;
                    Some(out)
                })
            } else {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                c.send_to(b"via systemd", addr).unwrap();
                let mut buf = [0u8; 64];
                c.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
            };
            if got.as_deref() == Some(&b"via systemd"[..]) {
                break true;
            }
            if Instant::now() > until {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // SAFETY: kill(2) on our own child (the tool has exec'd netlabd).
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(ok, "{transport}: no echo through systemd-socket-activate");
        assert_eq!(status.code(), Some(0), "{transport}");
    }
}

// ---- reload -----------------------------------------------------------------

fn reload_config(echo_port: u16, chat_port: u16, extra: &str) -> String {
    format!(
        "[daemon]\nshutdown_grace = \"1s\"\n\n\
         [[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{echo_port}\"]\n\n\
         [[server]]\nname = \"chat\"\nservice = \"chat\"\nlisten = [{{ addr = \"127.0.0.1:{chat_port}\", dialect = \"line\" }}]\n\n{extra}"
    )
}

#[test]
fn reloads_leave_unchanged_servers_and_their_connections_alone() {
    let (echo_port, chat_port, gone_port, new_port) =
        (free_port(), free_port(), free_port(), free_port());
    let gone = format!(
        "[[server]]\nname = \"gone\"\nservice = \"count\"\nlisten = [\"127.0.0.1:{gone_port}\"]\n"
    );
    let (mut d, bound) = Daemon::start(&reload_config(echo_port, chat_port, &gone), 3);
    let addr = |name: &str| bound.iter().find(|(n, _)| n == name).unwrap().1;
    let mut echo = EchoConn::open(addr("echo"));
    let mut alice = ChatLine::join(addr("chat"), "alice");
    let mut bob = ChatLine::join(addr("chat"), "bob");
    for i in 0..20 {
        // Rewrite the file (a comment moves every line) and reload.
        let text = format!(
            "# reload {i}\n{}",
            reload_config(echo_port, chat_port, &gone)
        );
        d.dir.write("netlabd.toml", &text);
        d.signal(libc::SIGHUP);
        let line = d.wait_for_line("reloaded:", T);
        assert!(
            line.contains("added none; removed none; restarted none; 3 unchanged"),
            "{line}"
        );
        echo.round_trip(format!("round {i}").as_bytes());
        alice.say(&format!("hello {i}"));
        assert_eq!(bob.message(), format!("[alice] hello {i}\n"));
    }

    // Added and removed servers.
    let added = format!(
        "[[server]]\nname = \"new\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{new_port}\"]\n"
    );
    d.dir
        .write("netlabd.toml", &reload_config(echo_port, chat_port, &added));
    d.signal(libc::SIGHUP);
    let new_addr = d.wait_listening(1)[0].1;
    let line = d.wait_for_line("reloaded:", T);
    assert!(
        line.contains("added new; removed gone; restarted none; 2 unchanged"),
        "{line}"
    );
    assert_eq!(echo_once(new_addr, b"new"), b"new");
    let until = Instant::now() + T;
    while TcpStream::connect(addr("gone")).is_ok() {
        assert!(Instant::now() < until, "the removed server still accepts");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A broken file changes nothing.
    d.dir.write("netlabd.toml", "[[server]\nname = ");
    d.signal(libc::SIGHUP);
    d.wait_for_line("reload refused, nothing changed", T);
    echo.round_trip(b"after a broken reload");
    alice.say("still here");
    assert_eq!(bob.message(), "[alice] still here\n");
    assert_eq!(echo_once(new_addr, b"new still"), b"new still");

    // A vanished file neither.
    std::fs::remove_file(d.dir.path("netlabd.toml")).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_line("cannot read the file", T);
    echo.round_trip(b"after the file vanished");

    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

#[test]
fn a_changed_server_is_restarted_on_the_same_port_without_refusing_anyone() {
    let port = free_port();
    let config = |tag: &str| {
        format!(
            "[[server]]\nname = \"echo\"\nservice = \"echo\"\nmodel = \"thread\"\n{tag}listen = [\"127.0.0.1:{port}\"]\n"
        )
    };
    let (mut d, bound) = Daemon::start(&config(""), 1);
    let addr = bound[0].1;
    assert_eq!(echo_once(addr, b"plain"), b"plain");
    d.dir.write("netlabd.toml", &config("tag = \"worker\"\n"));
    d.signal(libc::SIGHUP);
    d.wait_listening(1);
    let line = d.wait_for_line("reloaded:", T);
    assert!(line.contains("restarted echo"), "{line}");
    let tagged = echo_once(addr, b"tagged");
    assert!(
        tagged.ends_with(b": tagged") && tagged.starts_with(b"echo-"),
        "{:?}",
        String::from_utf8_lossy(&tagged)
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

// ---- daemon mode --------------------------------------------------------------

/// Kills the daemonized netlabd if a test fails while it runs.
struct Detached(Option<i32>);

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) on the pid the daemon wrote.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn read_pid(path: &std::path::Path, within: Duration) -> i32 {
    let until = Instant::now() + within;
    loop {
        if let Some(pid) = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return pid;
        }
        assert!(Instant::now() < until, "no pid in {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn daemon_mode_writes_and_removes_its_pidfile_and_a_second_instance_is_refused() {
    let dir = TempDir::new();
    let port = free_port();
    let config = dir.write(
        "netlabd.toml",
        &format!("[daemon]\nlog = \"stderr\"\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"),
    );
    let pidfile = dir.path("netlabd.pid");
    let status = Command::new(NETLABD)
        .arg("--daemonize")
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the parent returns once the daemon is started"
    );
    let pid = read_pid(&pidfile, T);
    let mut guard = Detached(Some(pid));
    assert_ne!(pid as u32, std::process::id());
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(echo_once(addr, b"daemonized"), b"daemonized");

    // A second instance with the same pidfile says why it will not start.
    let other = dir.write("other.toml", ONE_ECHO);
    let out = Command::new(NETLABD)
        .arg("--daemonize")
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&other)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "another netlabd (pid {pid}) is running with pidfile"
        )),
        "{stderr}"
    );

    // SIGTERM: the daemon stops and removes its pidfile.
    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until = Instant::now() + T;
    while pidfile.exists() {
        assert!(Instant::now() < until, "pidfile not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < until, "daemon still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.0 = None;
}

/// A start that fails after the pidfile check (here: its port is taken)
/// leaves no pidfile behind, not even an empty one.
#[test]
fn a_failed_start_leaves_no_pidfile() {
    let dir = TempDir::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = dir.write(
        "netlabd.toml",
        &format!(
            "[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let pidfile = dir.path("netlabd.pid");
    let out = Command::new(NETLABD)
        .arg("--daemonize")
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!pidfile.exists(), "{} was left behind", pidfile.display());
}

#[test]
fn privileges_are_dropped_after_binding_a_low_port() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: binding a port below 1024 and changing user needs root");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIP: no user 'nobody' on this machine");
        return;
    };
    // A free port below 1024.
    let port = (900..1024)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024");
    let config = format!(
        "[daemon]\nuser = \"nobody\"\n\n[[server]]\nname = \"low\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
    );
    let (mut d, bound) = Daemon::start(&config, 1);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let euid: u32 = uid_line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert_eq!(euid, nobody.uid.as_raw(), "{uid_line}");
    assert_eq!(echo_once(bound[0].1, b"low port"), b"low port");
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
}

/// Runs `cmd` to its end, within `within`, and returns its exit code and
/// stderr. A daemonized netlabd's original process must end by itself.
fn exit_and_stderr(mut cmd: Command, within: Duration) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start netlabd");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let until = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("netlabd did not return within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = rx.recv_timeout(within).unwrap_or_default();
    (status.code(), text)
}

/// Waits until nothing listens on `port` any more (the daemon is gone).
fn wait_port_free(port: u16, within: Duration) {
    let until = Instant::now() + within;
    while TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "something still listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon that cannot start after the fork (here: its pidfile's directory
/// does not exist) makes `netlabd --daemonize` say why and exit non-zero,
/// as the same failure in the foreground does; nothing is left running.
#[test]
fn a_failure_after_the_fork_is_reported_by_the_original_process() {
    let dir = TempDir::new();
    let port = free_port();
    let config = dir.write(
        "netlabd.toml",
        &format!(
            "[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let pidfile = dir.path("no-such-dir").join("netlabd.pid");
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--daemonize")
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&config);
    let (code, stderr) = exit_and_stderr(cmd, T);
    assert_eq!(code, Some(1), "{stderr}");
    // Its log lines come first (the daemon's own go to syslog); then why.
    let why = stderr.lines().last().unwrap_or_default();
    assert!(
        why.starts_with(&format!("netlabd: pidfile {}: ", pidfile.display())),
        "{stderr}"
    );
    assert!(why.contains("No such file or directory"), "{stderr}");
    wait_port_free(port, T);

    // The foreground says the same, with the same exit code.
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&config);
    let (fg_code, fg_stderr) = exit_and_stderr(cmd, T);
    assert_eq!(fg_code, code, "{fg_stderr}");
    assert_eq!(fg_stderr.lines().last(), Some(why), "{fg_stderr}");
}

/// The ids of `pid` from /proc/PID/status: Uid and Gid (real, effective,
/// saved, filesystem) and the supplementary Groups.
fn proc_ids(pid: i32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let ids = |key: &str| -> Vec<u32> {
        let line = status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {status}"));
        line.split_whitespace()
            .map(|v| v.parse().expect("an id"))
            .collect()
    };
    (ids("Uid:"), ids("Gid:"), ids("Groups:"))
}

/// The daemonized process gives up root entirely: user, primary group and
/// supplementary groups are all the configured user's, as in the foreground.
#[test]
fn daemon_mode_drops_user_group_and_supplementary_groups() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root (changing user)");
        return;
    }
    let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
        eprintln!("SKIP: no user 'nobody' on this machine");
        return;
    };
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let dir = TempDir::new();
    let port = free_port();
    let config = dir.write(
        "netlabd.toml",
        &format!(
            "[daemon]\nuser = \"nobody\"\nshutdown_grace = \"1s\"\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let pidfile = dir.path("netlabd.pid");
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--daemonize")
        .arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&config);
    let (code, stderr) = exit_and_stderr(cmd, T);
    assert_eq!(code, Some(0), "{stderr}");
    let pid = read_pid(&pidfile, T);
    let mut guard = Detached(Some(pid));
    let (uids, gids, groups) = proc_ids(pid);
    assert_eq!(uids, [uid; 4], "Uid");
    assert_eq!(gids, [gid; 4], "Gid");
    assert_eq!(groups, [gid], "Groups");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(echo_once(addr, b"as nobody"), b"as nobody");

    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let until = Instant::now() + T;
    // SAFETY: signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < until, "daemon still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.0 = None;
}

/// A daemon that dropped to a user who cannot write the pidfile's directory
/// (root's, as /run is) cannot remove the pidfile when it stops; it empties
/// it instead and says so, so that no stale pid is left behind.
#[test]
fn a_pidfile_the_dropped_user_cannot_remove_is_emptied() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: needs root (changing user)");
        return;
    }
    if !matches!(nix::unistd::User::from_name("nobody"), Ok(Some(_))) {
        eprintln!("SKIP: no user 'nobody' on this machine");
        return;
    }
    let dir = TempDir::new();
    let config = dir.write(
        "netlabd.toml",
        "[daemon]\nuser = \"nobody\"\nshutdown_grace = \"1s\"\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n",
    );
    // Root's, and writable by root only, whatever the umask.
    let run = dir.path("run");
    std::fs::create_dir(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pidfile = run.join("netlabd.pid");
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--pidfile")
        .arg(&pidfile)
        .arg("--config")
        .arg(&config);
    let (mut d, _) = Daemon::spawn(cmd, dir, 1);
    let pid = read_pid(&pidfile, T);
    assert_eq!(pid as u32, d.child.id());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(T).code(), Some(0));
    // The dropped user cannot remove it from a root-owned directory (had it
    // managed to, privileges were not dropped): it is emptied, and says so.
    let text =
        std::fs::read_to_string(&pidfile).unwrap_or_else(|e| panic!("{}: {e}", pidfile.display()));
    assert_eq!(text, "", "a stale pid was left in {}", pidfile.display());
    let line = d.wait_for_line("cannot remove pidfile", T);
    assert!(
        line.contains("WARN") && line.contains("Permission denied"),
        "{line}"
    );
}

// ---- logging ------------------------------------------------------------------

/// The first line netlabd logs on a stderr pipe whose device and inode are
/// given to `journal_stream`, which returns JOURNAL_STREAM. Its port is
/// taken, so it logs its configuration's path and exits.
fn first_log_line(journal_stream: impl Fn(&str) -> String) -> String {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new();
    let config = dir.write(
        "netlabd.toml",
        &format!(
            "[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        ),
    );
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let st = nix::sys::stat::fstat(&write).unwrap();
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--config")
        .arg(&config)
        .env(
            "JOURNAL_STREAM",
            journal_stream(&format!("{}:{}", st.st_dev, st.st_ino)),
        )
        .env("NETLABD_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(write));
    let mut child = cmd.spawn().expect("start netlabd");
    drop(cmd); // its copy of the write end
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::fs::File::from(read).read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(T);
    let _ = child.kill();
    let status = child.wait().unwrap();
    let text = text.expect("netlabd exits when its port is taken");
    assert_eq!(status.code(), Some(2), "{text}");
    text.lines().next().unwrap_or_default().to_owned()
}

/// Journal "<N>" prefixes only when stderr is the stream JOURNAL_STREAM
/// names, as systemd.exec(5) says to check: a JOURNAL_STREAM inherited from
/// a parent that was under systemd does not make a pipe the journal.
#[test]
fn journal_format_only_when_stderr_is_the_journal_stream() {
    let line = first_log_line(|real| real.to_owned());
    assert!(line.starts_with("<6>configuration "), "{line:?}");

    let other_inode = |real: &str| {
        let (dev, ino) = real.split_once(':').unwrap();
        format!("{dev}:{}", ino.parse::<u64>().unwrap() + 1)
    };
    for bogus in [&other_inode as &dyn Fn(&str) -> String, &|_: &str| {
        "8:1234".into()
    }] {
        let line = first_log_line(bogus);
        assert!(
            !line.starts_with('<') && line.contains(" INFO  configuration "),
            "{line:?}"
        );
    }
}

/// A daemon changes to its working directory ("/"); relative --config and
/// --pidfile paths still mean what they meant where netlabd was started:
/// the pidfile is written there, and a reload reads that configuration.
#[test]
fn daemon_mode_resolves_relative_paths_where_it_was_started() {
    let dir = TempDir::new();
    let (first, second) = (free_port(), free_port());
    let server = |name: &str, port: u16| {
        format!(
            "[[server]]\nname = \"{name}\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
        )
    };
    dir.write("netlabd.toml", &server("one", first));
    // Unique, so that where it wrongly lands ("/") can be cleaned up.
    let name = format!("netlabd-test-{}.pid", std::process::id());
    let mut cmd = Command::new(NETLABD);
    cmd.current_dir(&dir.0)
        .arg("--daemonize")
        .arg("--pidfile")
        .arg(&name)
        .arg("--config")
        .arg("netlabd.toml");
    let (code, stderr) = exit_and_stderr(cmd, T);
    assert_eq!(code, Some(0), "{stderr}");
    let pidfile = dir.path(&name);
    if !pidfile.exists() {
        let wrong = std::path::Path::new("/").join(&name);
        let _guard = Detached(
            std::fs::read_to_string(&wrong)
                .ok()
                .and_then(|t| t.trim().parse().ok()),
        );
        let _ = std::fs::remove_file(&wrong);
        panic!(
            "no pidfile {} (it went to {})",
            pidfile.display(),
            wrong.display()
        );
    }
    let pid = read_pid(&pidfile, T);
    let mut guard = Detached(Some(pid));

    dir.write(
        "netlabd.toml",
        &format!("{}\n{}", server("one", first), server("two", second)),
    );
    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let addr: SocketAddr = format!("127.0.0.1:{second}").parse().unwrap();
    let until = Instant::now() + T;
    while TcpStream::connect_timeout(&addr, T).is_err() {
        assert!(Instant::now() < until, "the reload did not read the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(echo_once(addr, b"reloaded"), b"reloaded");

    // SAFETY: kill(2) on the daemon's pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // SAFETY: signal 0 only asks whether the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        assert!(Instant::now() < until, "daemon still running");
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.0 = None;
    assert!(!pidfile.exists(), "pidfile not removed");
}

/// A working directory the daemon cannot change to is named, before forking.
#[test]
fn daemon_mode_names_a_missing_working_directory() {
    let dir = TempDir::new();
    let missing = dir.path("no-such-dir");
    let config = dir.write(
        "netlabd.toml",
        &format!(
            "[daemon]\nworking_directory = \"{}\"\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n",
            missing.display()
        ),
    );
    let mut cmd = Command::new(NETLABD);
    cmd.arg("--daemonize").arg("--config").arg(&config);
    let (code, stderr) = exit_and_stderr(cmd, T);
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("working_directory"))
        .collect();
    assert_eq!(
        errors,
        [format!(
            "netlabd: [daemon] working_directory {}: No such file or directory (os error 2)",
            missing.display()
        )],
        "{stderr}"
    );
}
