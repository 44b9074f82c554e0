//! netlabd as an operator meets it: a process started with a config file,
//! refusing bad configurations with file, line and column, serving the
//! seeds' own clients under every model, and stopping on SIGTERM with 0.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Daemon, NETLABD, TempDir};

fn run_netlabd(args: &[&str], config: Option<&str>) -> (Output, String) {
    let dir = TempDir::new();
    let mut cmd = Command::new(NETLABD);
    let mut origin = String::new();
    if let Some(text) = config {
        let path = dir.write("netlabd.toml", text);
        origin = path.display().to_string();
        cmd.arg("--config").arg(&path);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run netlabd");
    (out, origin)
}

#[test]
fn bad_configs_are_refused_with_location_and_exit_2() {
    let cases = [
        (
            "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\nbogus = 1\n",
            "5:1: unknown field `bogus`",
        ),
        (
            "[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1\"]\n",
            "4:11: \"127.0.0.1\" is not an address",
        ),
        (
            "[[server]]\nname = \"c\"\nservice = \"chat\"\nmodel = \"fork\"\nlisten = [\"127.0.0.1:0\"]\n",
            "4:9: chat cannot run under the fork model",
        ),
    ];
    for (config, expected) in cases {
        for args in [&[][..], &["--check"][..]] {
            let (out, origin) = run_netlabd(args, Some(config));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} {stderr}");
            assert!(stderr.contains(&format!("{origin}:{expected}")), "{stderr}");
        }
    }
}

#[test]
fn a_port_in_use_refuses_the_whole_config_before_anything_starts() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    // The first server's port is free: it must not be left serving either.
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let free_port = free.local_addr().unwrap().port();
    drop(free);
    let config = format!(
        "[[server]]\nname = \"first\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{free_port}\"]\n\n\
         [[server]]\nname = \"second\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:{port}\"]\n"
    );
    let (out, origin) = run_netlabd(&[], Some(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{origin}:9:11: server second: cannot listen on 127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("address already in use"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
}

#[test]
fn check_accepts_the_shipped_example() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/netlabd.toml");
    let text = std::fs::read_to_string(example).unwrap();
    // Port 0 everywhere, so the check's bind cannot collide with anything.
    let text = port_zero(&text);
    let (out, _) = run_netlabd(&["--check"], Some(&text));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn print_default_config_is_a_valid_config() {
    let out = Command::new(NETLABD)
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    netlab::config::Config::parse(&text, "default").expect("the default parses");
}

/// Replaces every `:PORT"` in listen addresses with `:0"`.
fn port_zero(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut l = line.to_owned();
        if l.trim_start().starts_with("listen") {
            let mut fixed = String::new();
            for (i, part) in l.split('"').enumerate() {
                if i % 2 == 1
                    && let Some((host, _port)) = part.rsplit_once(':')
                {
                    fixed.push_str(&format!("{host}:0"));
                } else {
                    fixed.push_str(part);
                }
                fixed.push('"');
            }
            fixed.pop();
            l = fixed;
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

const EVERY_MODEL: &str = r#"
[daemon]
shutdown_grace = "2s"

[[server]]
name = "echo-event"
service = "echo"
listen = ["127.0.0.1:0"]
model = "event"

[[server]]
name = "echo-thread"
service = "echo"
listen = ["127.0.0.1:0"]
model = "thread"

[[server]]
name = "echo-fork"
service = "echo"
listen = ["127.0.0.1:0"]
model = "fork"

[[server]]
name = "echo-udp"
service = "echo"
transport = "udp"
listen = ["127.0.0.1:0"]

[[server]]
name = "count-event"
service = "count"
framing = "chunk"
listen = ["127.0.0.1:0"]

[[server]]
name = "count-thread"
service = "count"
framing = "chunk"
model = "thread"
listen = ["127.0.0.1:0"]

[[server]]
name = "count-fork"
service = "count"
framing = "chunk"
model = "fork"
listen = ["127.0.0.1:0"]
"#;

fn python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: python3 is not installed, so the seeds' own clients cannot be run");
    }
    ok.then_some("python3")
}

fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/seeds")
        .join(name)
}

fn run_seed(script: &str, args: &[String], stdin: &str) -> String {
    let mut child = Command::new("python3")
        .arg(seed(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    // The seeds have no timeouts of their own: bound them here.
    let until = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > until {
            let _ = child.kill();
            panic!("{script} {args:?} did not finish in 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn seeds_clients_get_correct_replies_under_every_model_then_sigterm_exits_0() {
    let (mut daemon, bound) = Daemon::start(EVERY_MODEL, 7);
    if python().is_some() {
        for (name, addr) in &bound {
            let port = vec!["--port".to_owned(), addr.port().to_string()];
            if name.starts_with("count") {
                let out = run_seed(
                    "count_client.py",
                    &[addr.port().to_string()],
                    "héllo wörld\n",
                );
                assert!(out.contains("Jumlah karakter: 11"), "{name}: {out}");
            } else if name == "echo-udp" {
                let out = run_seed("udp_echo_client.py", &port, "");
                assert!(
                    out.contains("Received: This is the message. It will be repeated."),
                    "{name}: {out}"
                );
            } else {
                let out = run_seed("tcp_echo_client.py", &port, "");
                let received: String = out
                    .lines()
                    .filter_map(|l| l.strip_prefix("Received: "))
                    .collect();
                assert_eq!(
                    received, "Test message. This will be echoed",
                    "{name}: {out}"
                );
                assert!(!out.contains("error"), "{name}: {out}");
            }
        }
    }
    daemon.signal(libc::SIGTERM);
    daemon.wait_for_line("SIGTERM: stopping", Duration::from_secs(5));
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigint_with_a_client_connected_stops_within_the_grace() {
    let config = "[daemon]\nshutdown_grace = \"500ms\"\n\n[[server]]\nname = \"e\"\nservice = \"echo\"\nmodel = \"fork\"\nlisten = [\"127.0.0.1:0\"]\n";
    let (mut daemon, bound) = Daemon::start(config, 1);
    // One round trip: the connection is surely being served.
    let mut idle = std::net::TcpStream::connect(bound[0].1).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut idle, b"here").unwrap();
    let mut here = [0u8; 4];
    std::io::Read::read_exact(&mut idle, &mut here).unwrap();
    let t = Instant::now();
    daemon.signal(libc::SIGINT);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    // It waited out the grace for the idle client, and no longer.
    assert!(
        t.elapsed() >= Duration::from_millis(400) && t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    let mut buf = [0u8; 4];
    assert!(
        matches!(std::io::Read::read(&mut idle, &mut buf), Ok(0) | Err(_)),
        "the idle client is still open"
    );
}

#[test]
fn check_reports_every_fixture_error_with_line_and_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/config/invalid");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        // Lossy, for the expectations: some fixtures are not UTF-8 on purpose.
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let out = Command::new(NETLABD)
            .arg("--check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        for want in text.lines().filter_map(|l| l.strip_prefix("# expect: ")) {
            let (at, message) = want.split_once(": ").unwrap();
            let prefix = format!("netlabd: {}:{at}: ", path.display());
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with(&prefix) && l.contains(message)),
                "{}: no `{prefix}…{message}` in:\n{stderr}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixtures");
}

#[test]
fn without_any_config_the_embedded_default_runs_and_says_so() {
    if Path::new("/etc/netlab/netlabd.toml").exists() {
        eprintln!("SKIP: /etc/netlab/netlabd.toml exists, so netlabd would run it");
        return;
    }
    let taken: Vec<u16> = [7007, 7008, 7009, 12345, 12346, 1234, 1235, 1236]
        .into_iter()
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_err())
        .collect();
    if !taken.is_empty() {
        eprintln!("SKIP: the default's ports {taken:?} are taken on this machine");
        return;
    }
    // Every service: TCP and UDP echo (both on IPv4 and IPv6), echo under
    // thread and fork, count twice, chat in three dialects.
    let (mut d, bound) = Daemon::spawn(Command::new(NETLABD), TempDir::new(), 11);
    let names: Vec<&str> = bound.iter().map(|(n, _)| n.as_str()).collect();
    for server in [
        "echo",
        "echo-udp",
        "echo-thread",
        "echo-fork",
        "count",
        "count-line",
        "chat",
    ] {
        assert!(names.contains(&server), "{server} not in {names:?}");
    }
    assert!(
        bound
            .iter()
            .all(|(_, a)| a.ip().is_loopback() && a.port() >= 1024),
        "{bound:?}"
    );
    assert!(
        d.seen
            .iter()
            .any(|l| l.contains("running the embedded default configuration")),
        "{:#?}",
        d.seen
    );
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(5)).code(), Some(0));
}

/// Runs `sh -c SCRIPT sh ARGS...` in a private mount namespace: as root, or
/// as the root of a new user namespace where the kernel allows it. `None`
/// when neither works here.
fn in_private_mount_namespace(script: &str, args: &[&std::ffi::OsStr]) -> Option<Command> {
    let attempts: [&[&str]; 2] = [
        &["--mount", "--propagation", "private"],
        &[
            "--user",
            "--map-root-user",
            "--mount",
            "--propagation",
            "private",
        ],
    ];
    let flags = attempts.into_iter().find(|flags| {
        Command::new("unshare")
            .args(*flags)
            .args(["--", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })?;
    let mut cmd = Command::new("unshare");
    cmd.args(flags)
        .args(["--", "sh", "-c", script, "sh"])
        .args(args);
    Some(cmd)
}

#[test]
fn log_syslog_sends_every_line_to_syslog_and_none_to_stderr() {
    // netlabd runs where the syslog socket it looks for (/dev/log, else
    // /var/run/syslog) is this test's, so nothing reaches the machine's.
    let dir = TempDir::new();
    let run = dir.path("run");
    std::fs::create_dir(&run).unwrap();
    let syslog = std::os::unix::net::UnixDatagram::bind(run.join("syslog")).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let config = dir.write(
        "netlabd.toml",
        "[daemon]\nlog = \"syslog\"\n\n[[server]]\nname = \"e\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n",
    );
    let script = r#"set -e
if [ -e /dev/log ]; then mount --bind "$1/syslog" /dev/log; else mount --bind "$1" /var/run; fi
shift
exec "$@""#;
    let args = [
        run.as_os_str(),
        NETLABD.as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ];
    let Some(mut cmd) = in_private_mount_namespace(script, &args) else {
        eprintln!(
            "skipped: unshare cannot make a private mount namespace here (neither as root nor \
             in a user namespace), and this test must not touch the machine's syslog socket"
        );
        return;
    };
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(
        cmd.env("NETLABD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    let mut buf = [0u8; 2048];
    let mut next = || {
        let n = syslog
            .recv(&mut buf)
            .expect("a line on the syslog socket within 10 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let listening = loop {
        let line = next();
        assert!(
            line.contains("netlabd["),
            "not a netlabd syslog line: {line:?}"
        );
        if line.contains("listening on") {
            break line;
        }
    };
    // Facility daemon (3), severity info (6).
    assert!(listening.starts_with("<30>"), "{listening:?}");
    let addr: std::net::SocketAddr = listening
        .rsplit(' ')
        .next()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or_else(|| panic!("no address in {listening:?}"));
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.write_all(b"over syslog\n").unwrap();
    let mut echoed = [0u8; 12];
    std::io::Read::read_exact(&mut client, &mut echoed).unwrap();
    assert_eq!(&echoed, b"over syslog\n");
    drop(client);

    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    while !next().contains("stopped") {}
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        !stderr.contains("listening on") && !stderr.contains("stopped"),
        "lines went to stderr too: {stderr}"
    );
}

/// A port scan or a flood from a denied network does not write a log line
/// per connection: the first refusal is logged, the rest are counted in
/// the next line logged after a while.
#[test]
fn refused_connections_are_logged_once_in_a_while_not_once_each() {
    let (mut d, bound) = Daemon::start(
        "[[server]]\nname = \"denied\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\ndeny = [\"127.0.0.0/8\"]\n",
        1,
    );
    let addr = bound[0].1;
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 8];
        // Closed at once: EOF or a reset.
        let _ = std::io::Read::read(&mut s, &mut buf);
    }
    d.signal(libc::SIGTERM);
    d.wait_for_line("stopped", Duration::from_secs(10));
    let refused = d.seen.iter().filter(|l| l.contains("refused")).count();
    assert_eq!(refused, 1, "{:#?}", d.seen);
    assert!(
        d.seen
            .iter()
            .any(|l| l.contains("not permitted by allow/deny")),
        "{:#?}",
        d.seen
    );
}

/// A user or group the system does not have is a configuration error:
/// `--check` refuses it with where it stands, exit 2, as a start would, so
/// a unit's `ExecStartPre=--check` stops it before a restart loop.
#[test]
fn check_refuses_a_user_or_group_the_system_does_not_have() {
    for (key, line) in [
        ("user", "user = \"no-such-netlab-user\""),
        ("group", "group = \"no-such-netlab-group\""),
    ] {
        let config = format!(
            "[daemon]\n{line}\n\n[[server]]\nname = \"echo\"\nservice = \"echo\"\nlisten = [\"127.0.0.1:0\"]\n"
        );
        for args in [&["--check"][..], &[][..]] {
            let (out, origin) = run_netlabd(args, Some(&config));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{key} {args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("{origin}:2:"))
                    && stderr.contains("does not exist on this system"),
                "{key} {args:?}: {stderr}"
            );
        }
    }
}
