//! The fork model's children under the signals that stop netlabd. Ctrl-C
//! signals netlabd's whole process group, and systemd's default
//! `KillMode=control-group` SIGTERMs every process of the service: the
//! children must keep serving through the shutdown grace, and be gone
//! once netlabd is, whether it stopped or was killed.
//!
//! Each netlabd here leads a process group of its own, so that the group
//! signalled is never the test's.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, NETLABD, TempDir};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn config(grace: &str) -> String {
    format!(
        "[daemon]\nshutdown_grace = \"{grace}\"\n\n[[server]]\nname = \"e\"\nservice = \"echo\"\nmodel = \"fork\"\nlisten = [\"127.0.0.1:0\"]\n"
    )
}

/// A netlabd leading its own process group; on drop (a failed test), the
/// whole group is killed while netlabd, its leader, still holds the id.
struct Group {
    daemon: Daemon,
}

impl Group {
    fn start(config: &str) -> (Group, SocketAddr) {
        let dir = TempDir::new();
        let path = dir.write("netlabd.toml", config);
        let mut cmd = Command::new(NETLABD);
        cmd.arg("--config").arg(&path).process_group(0);
        let (daemon, bound) = Daemon::spawn(cmd, dir, 1);
        (Group { daemon }, bound[0].1)
    }

    fn pgid(&self) -> i32 {
        self.daemon.child.id() as i32
    }

    /// Signals every process of the group, as Ctrl-C or systemd would.
    fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) on the group that our unreaped child leads.
        let rc = unsafe { libc::kill(-self.pgid(), sig) };
        assert_eq!(rc, 0, "kill(-{}, {sig})", self.pgid());
    }

    /// netlabd's children (its fork-model children), from /proc.
    fn children(&self) -> Vec<u32> {
        let pid = self.pgid();
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return out;
        };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        out
    }

    /// Whether any process is left in the group. After netlabd's exit, a
    /// member left behind keeps the group's id from being reused, so the
    /// answer is about our group.
    fn group_is_empty(&self) -> bool {
        // SAFETY: kill(2) with signal 0 only checks.
        let rc = unsafe { libc::kill(-self.pgid(), 0) };
        rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Ok(None) = self.daemon.child.try_wait() {
            // SAFETY: as in signal_group; the leader is not reaped yet.
            unsafe { libc::kill(-self.pgid(), libc::SIGKILL) };
        }
    }
}

fn connect(at: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&at, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn echo(s: &mut TcpStream, msg: &str) {
    s.write_all(msg.as_bytes()).expect("write");
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("echo of {msg:?}: {e}"));
    assert_eq!(back, msg.as_bytes());
}

/// Waits up to `within` for EOF or a reset; how long it took.
fn ends_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(t.elapsed()),
        }
    }
}

fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ctrl_c_to_the_process_group_leaves_the_grace_to_the_children() {
    let (mut group, at) = Group::start(&config("2s"));
    let mut leaving = connect(at);
    let mut staying = connect(at);
    echo(&mut leaving, "before Ctrl-C");
    echo(&mut staying, "before Ctrl-C");
    assert!(
        eventually(Duration::from_secs(2), || group.children().len() == 2),
        "netlabd's children: {:?}",
        group.children()
    );

    // Ctrl-C: SIGINT to everyone; then SIGTERM to everyone, as systemd's
    // KillMode=control-group would.
    let t = Instant::now();
    group.signal_group(libc::SIGINT);
    group
        .daemon
        .wait_for_line("SIGINT: stopping", Duration::from_secs(5));
    group.signal_group(libc::SIGTERM);
    echo(&mut leaving, "during the grace");
    echo(&mut staying, "during the grace");
    leaving.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        ends_within(&mut leaving, Duration::from_secs(1)).map(|_| ()),
        Some(()),
        "the client leaving within the grace got no EOF"
    );

    // The other is ended when the grace is over, and netlabd then exits.
    let ended = ends_within(&mut staying, Duration::from_secs(5));
    let at_end = t.elapsed();
    assert!(ended.is_some(), "still served {at_end:?} after Ctrl-C");
    assert!(
        at_end >= Duration::from_millis(1800),
        "ended {at_end:?} after Ctrl-C, before the 2 s grace"
    );
    let status = group.daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(
        eventually(Duration::from_secs(2), || group.group_is_empty()),
        "processes left in netlabd's group after it exited"
    );
}

/// A netlabd killed outright takes its children with it (PR_SET_PDEATHSIG),
/// though they ignore the stop signals.
#[test]
fn a_killed_netlabd_leaves_no_child_serving() {
    let (mut group, at) = Group::start(&config("10s"));
    let mut client = connect(at);
    echo(&mut client, "served");
    assert!(
        eventually(Duration::from_secs(2), || group.children().len() == 1),
        "netlabd's children: {:?}",
        group.children()
    );
    group.daemon.signal(libc::SIGKILL);
    let status = group.daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), None, "{status:?}");
    assert!(
        ends_within(&mut client, Duration::from_secs(2)).is_some(),
        "the child kept serving after netlabd was killed"
    );
    assert!(
        eventually(Duration::from_secs(2), || group.group_is_empty()),
        "processes left in netlabd's group after it was killed"
    );
}
