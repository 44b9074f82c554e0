//! What the daemon's process tests share: a netlabd child that is killed if
//! a test fails, its log lines as they come, and temporary directories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub const NETLABD: &str = env!("CARGO_BIN_EXE_netlabd");

/// A running netlabd, killed if a test fails before stopping it.
pub struct Daemon {
    pub child: Child,
    log: Receiver<String>,
    /// Every log line read so far.
    pub seen: Vec<String>,
    pub dir: TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts netlabd on `config` (written to `netlabd.toml` in a fresh
    /// directory) and waits for `listeners` "listening on" lines.
    pub fn start(config: &str, listeners: usize) -> (Daemon, Vec<(String, SocketAddr)>) {
        let dir = TempDir::new();
        let path = dir.write("netlabd.toml", config);
        let mut cmd = Command::new(NETLABD);
        cmd.arg("--config").arg(&path);
        Daemon::spawn(cmd, dir, listeners)
    }

    /// Starts `cmd` (a netlabd, perhaps behind a wrapper) and waits for
    /// `listeners` "listening on" lines.
    pub fn spawn(
        mut cmd: Command,
        dir: TempDir,
        listeners: usize,
    ) -> (Daemon, Vec<(String, SocketAddr)>) {
        // At info unless the test asked for another level.
        if !cmd.get_envs().any(|(k, _)| k == "NETLABD_LOG") {
            cmd.env("NETLABD_LOG", "info");
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start netlabd");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut daemon = Daemon {
            child,
            log,
            seen: Vec::new(),
            dir,
        };
        let bound = daemon.wait_listening(listeners);
        (daemon, bound)
    }

    /// Waits for `n` "server NAME (...) listening on ADDR" lines.
    pub fn wait_listening(&mut self, n: usize) -> Vec<(String, SocketAddr)> {
        let mut bound = Vec::new();
        while bound.len() < n {
            let line = self.next_line(Duration::from_secs(10));
            if let Some(rest) = line.split("server ").nth(1)
                && let Some((head, addr)) = rest.split_once(" listening on ")
            {
                let name = head.split(' ').next().unwrap_or_default().to_owned();
                bound.push((name, addr.trim().parse().expect("address in log line")));
            }
        }
        bound
    }

    pub fn next_line(&mut self, within: Duration) -> String {
        match self.log.recv_timeout(within) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => panic!(
                "netlabd said nothing more ({e}); exit: {:?}",
                self.child.try_wait()
            ),
        }
    }

    /// Reads log lines until one contains `needle`; returns it.
    pub fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let line = self.next_line(until.saturating_duration_since(Instant::now()));
            if line.contains(needle) {
                return line;
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill");
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < until,
                "netlabd did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("netlabd-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago (bound to 0, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Installs a Debian package when its command is missing (CI runs as root
/// with apt-get); says why and fails when it cannot. One install at a
/// time: tests run in parallel, and dpkg takes one at a time.
pub fn need(command: &str, package: &str) {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {command}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return;
    }
    eprintln!("{command} is missing; installing {package} with apt-get");
    let installed = Command::new("sh")
        .args([
            "-c",
            // Another test binary (or a person) may be installing too:
            // wait for dpkg's lock rather than fail on it.
            &format!("apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq {package} >/dev/null 2>&1"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "{command} is needed for this test and could not be installed (apt-get install {package}); install it and run again"
    );
}

impl Daemon {
    /// Waits for the "metrics served at" line and returns the address.
    pub fn metrics_addr(&mut self) -> SocketAddr {
        if let Some(line) = self
            .seen
            .iter()
            .find(|l| l.contains("metrics served at http://"))
        {
            return metrics_addr_in(line);
        }
        let line = self.wait_for_line("metrics served at http://", Duration::from_secs(10));
        metrics_addr_in(&line)
    }
}

fn metrics_addr_in(line: &str) -> SocketAddr {
    line.split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// GETs `path` from `addr` with `accept` and returns the whole answer
/// (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let accept = accept.map_or_else(String::new, |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// The body of `GET /metrics` in the text format.
pub fn scrape(addr: SocketAddr) -> String {
    let answer = http_get(addr, "/metrics", None);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the sample whose line starts with `series` (a name and
/// its labels as written), if any.
pub fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A TCP connection to `to` from the loopback address `from` (any port).
pub fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{from}:0").parse().expect("a loopback address");
    socket.bind(&local.into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(5))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(stream)
}

/// Sends `msg` on `stream` and reads its echo: `true` when it came back,
/// `false` when the server closed the connection instead (refused).
pub fn echoes(stream: &mut std::net::TcpStream, msg: &[u8]) -> bool {
    use std::io::{Read, Write};
    if stream.write_all(msg).is_err() {
        return false;
    }
    let mut got = vec![0u8; msg.len()];
    let mut n = 0;
    while n < msg.len() {
        match stream.read(&mut got[n..]) {
            Ok(0) | Err(_) => return false,
            Ok(k) => n += k,
        }
    }
    got == msg
}

/// Waits (at most 10 s) until `series` reads `want` in a scrape of
/// `metrics`: a counter may move a moment after the client saw its cause.
pub fn wait_sample(metrics: SocketAddr, series: &str, want: f64) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let body = scrape(metrics);
        if sample(&body, series) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < until,
            "{series} is not {want} after 10 s:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
