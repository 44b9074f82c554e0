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
        let mut child = cmd
            .env("NETLABD_LOG", "info")
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
/// with apt-get); says why and fails when it cannot.
pub fn need(command: &str, package: &str) {
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
