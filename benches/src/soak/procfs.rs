//! What a process holds, read from /proc: resident memory, open
//! descriptors, threads, child processes (the fork model's), CPU time; the
//! datagrams the kernel dropped because its UDP sockets were full, and the
//! bytes waiting unread in its TCP sockets (who is behind: netlabd, or the
//! generator).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub rss_kib: u64,
    /// RSS's parts: heap and stacks; pages of mapped files (the binary's
    /// code, paged in as new paths run); shared memory (the fork model's
    /// counters). A slow rise in one says what grows.
    pub rss_anon_kib: u64,
    pub rss_file_kib: u64,
    pub rss_shmem_kib: u64,
    pub fds: u64,
    pub threads: u64,
    pub children: u64,
    pub cpu_s: f64,
    /// Datagrams dropped at its UDP sockets since they were opened: the
    /// receive buffer was full (the worker did not run in time).
    pub udp_drops: u64,
    /// Bytes received by its TCP sockets and not yet read.
    pub unread_kib: u64,
}

/// `pid`'s footprint; `/proc/self` with "self".
pub fn footprint(pid: &str) -> io::Result<Footprint> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> io::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status has no {name}")))
    };
    let (fds, sockets) = descriptors(pid)?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields = after_command(&stat)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/stat: unreadable")))?;
    // Fields 14 and 15 (utime, stime), counted from 1 with the command as 2.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let table = |name: &str| format!("/proc/{pid}/net/{name}");
    Ok(Footprint {
        rss_kib: field("VmRSS:")?,
        rss_anon_kib: field("RssAnon:")?,
        rss_file_kib: field("RssFile:")?,
        rss_shmem_kib: field("RssShmem:")?,
        fds,
        threads: field("Threads:")?,
        children: if pid == "self" { 0 } else { children_of(pid) },
        cpu_s: ticks as f64 / hz,
        udp_drops: udp_drops(&table("udp"), &sockets) + udp_drops(&table("udp6"), &sockets),
        unread_kib: (tcp_unread(&table("tcp"), &sockets) + tcp_unread(&table("tcp6"), &sockets))
            / 1024,
    })
}

/// How many descriptors `pid` has open, and the inodes of its sockets
/// (each descriptor's target reads "socket:[INODE]" for a socket).
fn descriptors(pid: &str) -> io::Result<(u64, HashSet<u64>)> {
    let mut fds = 0;
    let mut sockets = HashSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        fds += 1;
        if let Ok(target) = entry.and_then(|e| fs::read_link(e.path()))
            && let Some(inode) = target.to_str().and_then(|t| {
                t.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .parse::<u64>()
                    .ok()
            })
        {
            sockets.insert(inode);
        }
    }
    Ok((fds, sockets))
}

/// The bytes received and not yet read by the sockets of `inodes` in a
/// /proc/net/tcp table (the queues column is "TX:RX" in hex; the inode is
/// the tenth column).
fn tcp_unread(table: &str, inodes: &HashSet<u64>) -> u64 {
    let Ok(text) = fs::read_to_string(table) else {
        return 0;
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            if !inodes.contains(&inode) {
                return None;
            }
            let (_, rx) = cols.get(4)?.split_once(':')?;
            u64::from_str_radix(rx, 16).ok()
        })
        .sum()
}

/// What netlabd's threads named `prefix`... are doing: scheduler state,
/// CPU time so far, the system call they are in, and their kernel stack.
/// Told once a reply is late, it says whether the thread is stuck, busy or
/// waiting for events.
pub fn threads_report(pid: u32, prefix: &str) -> String {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("netlabd (pid {pid}) has no /proc/{pid}/task");
    };
    let mut out = String::new();
    for task in tasks.filter_map(Result::ok) {
        let dir = task.path();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        let comm = read("comm");
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let stat = read("stat");
        let fields = after_command(&stat).unwrap_or_default();
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
        let stack: Vec<String> = read("stack")
            .lines()
            .take(6)
            .map(|l| l.split_whitespace().last().unwrap_or("").to_owned())
            .collect();
        out += &format!(
            "thread {} ({}): state {}, {} ticks of CPU, in system call {}, stack {}\n",
            comm.trim_end(),
            task.file_name().to_string_lossy(),
            fields.first().unwrap_or(&"?"),
            ticks,
            read("syscall").split_whitespace().next().unwrap_or("?"),
            stack.join(" < ")
        );
    }
    if out.is_empty() {
        out = format!("netlabd (pid {pid}) has no thread named {prefix}...\n");
    }
    out
}

/// Both ends of the TCP connection from `local` to `peer`, as the kernel
/// holds them: for each, bytes it has not read and bytes not yet
/// acknowledged by the other. Says who is behind when a reply is late:
/// bytes unread at netlabd's end mean netlabd did not read them.
pub fn both_ends(local: SocketAddr, peer: SocketAddr) -> String {
    let ours = tcp_queues(local, peer);
    let theirs = tcp_queues(peer, local);
    let show = |q: Option<(u64, u64)>| {
        q.map_or("gone".to_owned(), |(tx, rx)| {
            format!("{rx} B unread, {tx} B unacknowledged")
        })
    };
    format!("our end {}; netlabd's end {}", show(ours), show(theirs))
}

/// (tx_queue, rx_queue) of the socket from `local` to `peer`.
fn tcp_queues(local: SocketAddr, peer: SocketAddr) -> Option<(u64, u64)> {
    let table = if local.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let (want_local, want_peer) = (proc_addr(local), proc_addr(peer));
    let text = fs::read_to_string(table).ok()?;
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) != Some(&want_local.as_str()) || cols.get(2) != Some(&want_peer.as_str()) {
            return None;
        }
        let (tx, rx) = cols.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// An address as /proc/net/tcp writes it: the address's 32-bit words each
/// in the machine's byte order, in hex, then the port.
fn proc_addr(addr: SocketAddr) -> String {
    let words: Vec<[u8; 4]> = match addr {
        SocketAddr::V4(a) => vec![a.ip().octets()],
        SocketAddr::V6(a) => a
            .ip()
            .octets()
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
    };
    let mut out = String::new();
    for w in words {
        out += &format!("{:08X}", u32::from_ne_bytes(w));
    }
    out + &format!(":{:04X}", addr.port())
}

/// The drops counted for the sockets of `inodes` in a /proc/net/udp table
/// (columns: sl, local, remote, st, queues, timer, retransmits, uid,
/// timeout, inode, ref, pointer, drops).
fn udp_drops(table: &str, inodes: &HashSet<u64>) -> u64 {
    let Ok(text) = fs::read_to_string(table) else {
        return 0;
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = cols.get(9)?.parse().ok()?;
            inodes
                .contains(&inode)
                .then(|| cols.get(12)?.parse::<u64>().ok())?
        })
        .sum()
}

/// The fields of a /proc/PID/stat line after `(command)`, from the state
/// (field 3) on. The command may hold spaces and parentheses; the last `)`
/// ends it.
fn after_command(stat: &str) -> Option<Vec<&str>> {
    let end = stat.rfind(')')?;
    Some(stat[end + 1..].split_whitespace().collect())
}

/// How many processes have `pid` as their parent. /proc lists processes,
/// not threads, so netlabd's own threads are not among them.
fn children_of(pid: &str) -> u64 {
    let Ok(dir) = fs::read_dir("/proc") else {
        return 0;
    };
    let parent = pid;
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|e| {
            fs::read_to_string(e.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(after_command)
                .is_some_and(|f| f.get(1) == Some(&parent))
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_finds_a_child() {
        let me = std::process::id().to_string();
        let before = footprint(&me).unwrap();
        assert!(before.rss_kib > 0 && before.fds >= 3 && before.threads >= 1);
        assert_eq!(
            before.rss_anon_kib + before.rss_file_kib + before.rss_shmem_kib,
            before.rss_kib,
            "{before:?}"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let during = footprint(&me).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(during.children >= 1, "{during:?}");
    }

    #[test]
    fn drops_are_read_for_our_sockets_only() {
        let dir = std::env::temp_dir().join(format!("soak-udp-{}", std::process::id()));
        std::fs::write(
            &dir,
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
             1: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 111 2 0000000000000000 5\n\
             2: 0100007F:1F91 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 222 2 0000000000000000 7\n",
        )
        .unwrap();
        let ours = HashSet::from([111]);
        assert_eq!(udp_drops(dir.to_str().unwrap(), &ours), 5);
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn unread_bytes_are_seen_in_our_socket_until_read() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7; 4096]).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while footprint("self").unwrap().unread_kib < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "4 KiB never showed as unread"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        server.read_exact(&mut [0; 4096]).unwrap();
        assert!(footprint("self").unwrap().unread_kib < 4);
    }

    #[test]
    fn both_ends_of_a_connection_are_found() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        client.write_all(&[1; 100]).unwrap();
        let (local, peer) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let said = both_ends(local, peer);
            if said
                == "our end 0 B unread, 0 B unacknowledged; netlabd's end 100 B unread, 0 B unacknowledged"
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{said}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn threads_are_found_by_name() {
        let me = std::process::id();
        let report = threads_report(me, "");
        assert!(report.contains("state "), "{report}");
        assert!(threads_report(me, "no-such-thread").contains("has no thread named"));
    }

    #[test]
    fn commands_with_parentheses_do_not_shift_the_fields() {
        let f = after_command("12 (a) b (c)) S 1 12 12 0 -1").unwrap();
        assert_eq!(&f[..2], ["S", "1"]);
    }
}
