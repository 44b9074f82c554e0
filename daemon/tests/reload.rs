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
