//! The `fork` model: one child process per connection, as the seeds'
//! `ForkingMixIn` server. The child only moves bytes and leaves with
//! `_exit`, so it runs no exit handler of the host program (a Python
//! interpreter, say) and flushes none of its buffers twice. The parent reaps
//! every child it made, and only those: a library must not steal the host
//! program's children with `waitpid(-1)`.
//!
//! A child ignores SIGINT, SIGTERM and SIGHUP. Those are meant for the
//! parent, but reach the children too: Ctrl-C signals the whole process
//! group, and a service manager may signal every process of the service.
//! Dying at once would cut the connections that the stop's grace period is
//! for. The parent ends its children itself: it kills those still serving
//! when the grace is over, and each child asked the kernel to kill it
//! should the thread that forked it die first (`PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

use super::acceptor::{AcceptHandler, Acceptor};
use super::blocking::{self, HandshakeFailure, Stream};
use super::conn::ConnKind;
use super::{Listener, Permit, Runtime, StreamCtx};
use crate::metrics::{self, ListenerMetrics, Shard};
use crate::service::Worker;

/// How often exited children are looked for while any are running.
const REAP_TICK: Duration = Duration::from_millis(20);

pub(super) fn spawn(ctx: StreamCtx, listeners: Vec<Listener>) -> io::Result<Runtime> {
    let name = format!("{}-fork", ctx.shared.name);
    // Made before any child is: each inherits the mapping.
    let counters = if ctx.shared.metrics.live() {
        Some(ChildCounters::new(
            listeners.iter().map(|l| l.metrics.clone()).collect(),
        )?)
    } else {
        None
    };
    Acceptor::spawn(name, listeners, move |acceptor| {
        run(ctx, acceptor, counters)
    })
}

/// What the children count (bytes, requests), one [`Shard`] per listener
/// in memory shared with them (`MAP_SHARED`): a child adds to it as it
/// serves, and the parent folds what was added into the listener's own
/// counters every tick.
struct ChildCounters {
    base: NonNull<Shard>,
    /// Each listener's counters, in the order of the shards.
    meters: Vec<Arc<ListenerMetrics>>,
    /// What was folded already, per shard: received, sent, requests.
    folded: Vec<[u64; 3]>,
}

// SAFETY: the mapping holds only atomics, and is unmapped once, on drop.
unsafe impl Send for ChildCounters {}

impl ChildCounters {
    fn new(meters: Vec<Arc<ListenerMetrics>>) -> io::Result<ChildCounters> {
        let bytes = mapped_bytes(meters.len());
        // SAFETY: a new anonymous mapping, used only as Shards below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // The mapping is zeroed and page-aligned: Shards whose atomics are
        // all 0.
        let base = NonNull::new(at.cast::<Shard>()).ok_or_else(io::Error::last_os_error)?;
        Ok(ChildCounters {
            base,
            folded: vec![[0; 3]; meters.len()],
            meters,
        })
    }

    fn shard(&self, i: usize) -> &Shard {
        assert!(i < self.meters.len());
        // SAFETY: within the mapping, which lives as long as `self`.
        unsafe { &*self.base.as_ptr().add(i) }
    }

    /// The shard of `meter`'s listener.
    fn shard_of(&self, meter: &Arc<ListenerMetrics>) -> Option<&Shard> {
        let i = self.meters.iter().position(|m| Arc::ptr_eq(m, meter))?;
        Some(self.shard(i))
    }

    /// Adds what the children counted since the last fold to each
    /// listener's counters.
    fn fold(&mut self) {
        for i in 0..self.meters.len() {
            let shard = self.shard(i);
            let now = [
                shard.bytes_received.load(Ordering::Relaxed),
                shard.bytes_sent.load(Ordering::Relaxed),
                shard.requests.load(Ordering::Relaxed),
            ];
            let into = self.meters[i].shard(0);
            let before = std::mem::replace(&mut self.folded[i], now);
            metrics::add(&into.bytes_received, now[0].wrapping_sub(before[0]));
            metrics::add(&into.bytes_sent, now[1].wrapping_sub(before[1]));
            metrics::add(&into.requests, now[2].wrapping_sub(before[2]));
        }
    }
}

/// The size of the mapping of `shards` shards: one at least, as a mapping
/// cannot be empty.
fn mapped_bytes(shards: usize) -> usize {
    shards.max(1) * std::mem::size_of::<Shard>()
}

impl Drop for ChildCounters {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), mapped_bytes(self.meters.len()));
        }
    }
}

/// A child serving one connection.
struct Child {
    _permit: Permit,
    peer: SocketAddr,
    /// Its connection began with a TLS handshake (done in the child).
    tls: bool,
    /// Its listener's counters (bytes and requests come through
    /// [`ChildCounters`]).
    meter: Arc<ListenerMetrics>,
}

/// How a child ends, as its exit status says: how else would a process
/// that may not lock or log tell its parent?
mod exit {
    /// The peer half-closed and everything was answered.
    pub const FINISHED: i32 = 0;
    /// It ended otherwise (refused, idle, I/O error).
    pub const ENDED: i32 = 1;
    /// The TLS handshake did not finish in time.
    pub const HANDSHAKE_TIMED_OUT: i32 = 2;
    /// The peer closed during the TLS handshake.
    pub const HANDSHAKE_CLOSED: i32 = 3;
    /// TLS refused the handshake.
    pub const HANDSHAKE_REFUSED: i32 = 4;
    /// netlab panicked serving it (the message went to stderr).
    pub const PANICKED: i32 = 5;
}

struct Forker {
    ctx: StreamCtx,
    children: HashMap<Pid, Child>,
    // The child's buffers are made here, before fork, so that the child
    // allocates as little as it can.
    buf: Vec<u8>,
    out: Vec<u8>,
    /// With metrics on.
    counters: Option<ChildCounters>,
}

impl AcceptHandler for Forker {
    fn accept(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
        kind: &ConnKind,
        meter: &Arc<ListenerMetrics>,
    ) {
        self.tick();
        let ctx = &self.ctx;
        let Some(permit) = ctx.shared.admit(peer, meter, 0) else {
            return;
        };
        let parent = getpid();
        // SAFETY: the child runs only `serve_child`, which makes system
        // calls on the connection and exits with `_exit`; glibc's fork
        // handlers keep malloc usable in the child for the one small
        // allocation the session's tag may need.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let counters = self.counters.as_ref().and_then(|c| c.shard_of(meter));
                serve_child(
                    ctx,
                    parent,
                    stream,
                    kind,
                    counters,
                    &mut self.buf,
                    &mut self.out,
                )
            }
            Ok(ForkResult::Parent { child }) => {
                log::debug!(
                    "server {}: {peer} served by process {child}",
                    ctx.shared.name
                );
                self.children.insert(
                    child,
                    Child {
                        _permit: permit,
                        peer,
                        tls: kind.handshakes(),
                        meter: meter.clone(),
                    },
                );
            }
            Err(e) => {
                log::warn!("server {}: cannot fork for {peer}: {e}", ctx.shared.name);
                ctx.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
                metrics::add(&meter.shard(0).closed, 1);
            }
        }
        // The parent's copy of the connection closes here.
    }

    fn tick(&mut self) {
        reap(&mut self.children, &self.ctx, false);
        if let Some(counters) = &mut self.counters {
            counters.fold();
        }
    }
}

fn run(ctx: StreamCtx, mut acceptor: Acceptor, counters: Option<ChildCounters>) {
    let shared = ctx.shared.clone();
    let mut forker = Forker {
        ctx,
        children: HashMap::new(),
        buf: vec![0u8; 16 * 1024],
        out: Vec::with_capacity(16 * 1024),
        counters,
    };
    acceptor.run(&shared, REAP_TICK, &mut forker);
    let Forker {
        ctx,
        mut children,
        mut counters,
        ..
    } = forker;

    // Not accepting any more: let the children finish within the grace.
    while !children.is_empty() && !shared.past_deadline() {
        std::thread::sleep(shared.stop_wait(REAP_TICK));
        reap(&mut children, &ctx, false);
    }
    if !children.is_empty() {
        log::info!(
            "server {}: ending {} child process(es) still serving after the grace period",
            shared.name,
            children.len()
        );
        for pid in children.keys() {
            let _ = signal::kill(*pid, Signal::SIGKILL);
        }
        reap(&mut children, &ctx, true);
    }
    // What the last children counted.
    if let Some(counters) = &mut counters {
        counters.fold();
    }
}

/// Waits for the children that have exited (all of them when `block`).
fn reap(children: &mut HashMap<Pid, Child>, ctx: &StreamCtx, block: bool) {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    let shared = &ctx.shared;
    children.retain(|pid, child| match waitpid(*pid, flags) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(status) => {
            if matches!(status, WaitStatus::Exited(_, exit::PANICKED)) {
                log::error!(
                    "server {}: the process serving {} panicked (its message is on stderr)",
                    shared.name,
                    child.peer
                );
            } else if !matches!(status, WaitStatus::Exited(_, 0)) {
                log::debug!("server {}: child {pid} ended: {status:?}", shared.name);
            }
            if child.tls {
                let handshake = match status {
                    WaitStatus::Exited(_, exit::FINISHED | exit::ENDED) => Ok(()),
                    WaitStatus::Exited(_, exit::HANDSHAKE_TIMED_OUT) => {
                        Err(HandshakeFailure::TimedOut.reason())
                    }
                    WaitStatus::Exited(_, exit::HANDSHAKE_CLOSED) => {
                        Err(HandshakeFailure::Closed.reason())
                    }
                    WaitStatus::Exited(_, exit::HANDSHAKE_REFUSED) => {
                        Err("refused by TLS (the child serving it knows why)".to_owned())
                    }
                    // Killed at the end of the grace: nobody knows.
                    _ => Err(String::new()),
                };
                match handshake {
                    Ok(()) => {
                        shared.stats.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                        metrics::add(&child.meter.shard(0).tls_handshakes, 1);
                    }
                    Err(why) if !why.is_empty() => {
                        shared.handshake_failed(child.peer, &why, &child.meter)
                    }
                    Err(_) => {}
                }
            }
            shared.stats.closed.fetch_add(1, Ordering::Relaxed);
            metrics::add(&child.meter.shard(0).closed, 1);
            false
        }
        Err(nix::errno::Errno::EINTR) => true,
        // ECHILD: someone else reaped it (a host program's SIGCHLD handler set to
        // SIG_IGN, say); either way it is gone.
        Err(_) => false,
    });
}

/// The child: serve one connection, then `_exit`. Never returns.
fn serve_child(
    ctx: &StreamCtx,
    parent: Pid,
    stream: TcpStream,
    kind: &ConnKind,
    counters: Option<&Shard>,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) -> ! {
    // SAFETY: plain system calls on descriptors and signal dispositions this
    // process owns; no lock taken by another thread before fork is touched.
    unsafe {
        // The stop signals are the parent's to act on (see the module's
        // documentation); ignoring them also keeps the daemon's handlers,
        // which would write to the parent's signal pipe, from running here.
        for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            let _ = signal::signal(sig, SigHandler::SigIgn);
        }
        for sig in [Signal::SIGCHLD, Signal::SIGUSR1, Signal::SIGUSR2] {
            let _ = signal::signal(sig, SigHandler::SigDfl);
        }
        let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        // Die with the thread that forked us, so a killed parent leaves no
        // orphan; if it died before this was asked, leave now.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if getppid() != parent {
            libc::_exit(1);
        }
        close_all_but(&[stream.as_raw_fd()], Closing::Range);
    }
    let code = child_code(
        || match Stream::begin(stream, kind, ctx.config.handshake_timeout) {
            Ok(mut stream) => {
                let pid = std::process::id();
                let mut session = ctx.service.session(Worker::Process(pid));
                let ending = blocking::serve(
                    &mut stream,
                    &mut session,
                    ctx.config.limits.idle_timeout,
                    buf,
                    out,
                    counters,
                );
                drop(stream);
                match ending {
                    blocking::Ending::Finished => exit::FINISHED,
                    _ => exit::ENDED,
                }
            }
            Err(HandshakeFailure::TimedOut) => exit::HANDSHAKE_TIMED_OUT,
            Err(HandshakeFailure::Closed) => exit::HANDSHAKE_CLOSED,
            Err(HandshakeFailure::Refused(_)) => exit::HANDSHAKE_REFUSED,
        },
    );
    // SAFETY: ends this process without running atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// The child's exit code from `serve`: a panic must not unwind out of
/// the child, where it would climb the parent's accept loop and end the
/// process through the host's exit handlers (a Python interpreter's, say).
fn child_code(serve: impl FnOnce() -> i32) -> i32 {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(serve)).unwrap_or(exit::PANICKED)
}

/// The ways a child closes what it inherited, each the fallback of the
/// one before: tests start from a later one to exercise it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Closing {
    /// close_range(2): Linux 5.9 and later, unless a seccomp filter
    /// refuses it.
    Range,
    /// Each descriptor /proc/self/fd lists.
    Listed,
    /// Every number up to the soft RLIMIT_NOFILE.
    #[cfg_attr(not(test), allow(dead_code, reason = "only tests start here"))]
    Every,
}

/// Closes every descriptor from 3 up but those in `keep`, trying the ways
/// of [`Closing`] from `first` on. The child must not keep the host's
/// other descriptors: other servers' listeners and a stopped server's kept
/// copies (their ports would stay taken until the child ends), other
/// connections (which would get no FIN when closed elsewhere), the
/// daemon's signal socket and pipes.
///
/// Only async-signal-safe system calls, with no allocation: it runs
/// between fork and the child's own work, when another thread of the
/// parent may have held the allocator's lock.
///
/// # Safety
/// Only in a freshly forked child, which owns its descriptor table and
/// has nothing open that Rust code owns but what `keep` holds.
unsafe fn close_all_but(keep: &[i32], first: Closing) {
    // SAFETY: the function's contract, passed on.
    unsafe {
        if first <= Closing::Range && close_ranges_but(keep) {
            return;
        }
        if first <= Closing::Listed && close_listed_but(keep) {
            return;
        }
        close_every_but(keep);
    }
}

/// close_range(2) over the gaps between the kept descriptors; false if
/// the kernel refuses it.
unsafe fn close_ranges_but(keep: &[i32]) -> bool {
    let mut low: u32 = 3;
    loop {
        // The lowest kept descriptor not below `low`: `keep` is tiny, and
        // need not be sorted.
        let next = keep
            .iter()
            .filter_map(|&k| u32::try_from(k).ok())
            .filter(|&k| k >= low)
            .min();
        let high = match next {
            Some(k) if k == low => {
                low = k.saturating_add(1);
                continue;
            }
            Some(k) => k - 1,
            None => u32::MAX,
        };
        // SAFETY: close_range takes plain integers; the caller owns the table.
        if unsafe { libc::syscall(libc::SYS_close_range, low, high, 0u32) } != 0 {
            return false;
        }
        match next {
            Some(k) if k < u32::MAX => low = k + 1,
            _ => return true,
        }
    }
}

/// Closes the descriptors /proc/self/fd lists, read with getdents64 into a
/// buffer on the stack; false if /proc cannot be read (not mounted, say).
unsafe fn close_listed_but(keep: &[i32]) -> bool {
    // SAFETY: open, getdents64 and close on our own descriptors.
    unsafe {
        let dir = libc::open(
            c"/proc/self/fd".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return false;
        }
        // Aligned for the records' 64-bit fields.
        let mut buf = [0u64; 512];
        let complete = loop {
            let n = libc::syscall(
                libc::SYS_getdents64,
                dir,
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            );
            let Ok(n) = usize::try_from(n) else {
                break false;
            };
            if n == 0 {
                break true;
            }
            let bytes = std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n);
            if !for_each_listed_fd(bytes, |fd| {
                if fd >= 3 && fd != dir && !keep.contains(&fd) {
                    libc::close(fd);
                }
            }) {
                break false;
            }
        };
        libc::close(dir);
        complete
    }
}

/// Calls `f` with each descriptor named in `bytes`, getdents64 records
/// (`struct linux_dirent64`); false if a record is malformed.
fn for_each_listed_fd(bytes: &[u8], mut f: impl FnMut(i32)) -> bool {
    // d_ino (8 bytes), d_off (8), d_reclen (2), d_type (1), then the name.
    const NAME: usize = 19;
    let mut at = 0;
    while at < bytes.len() {
        let Some(len) = bytes
            .get(at + 16..at + 18)
            .map(|b| usize::from(u16::from_ne_bytes([b[0], b[1]])))
        else {
            return false;
        };
        let Some(record) = bytes.get(at..at + len).filter(|_| len > NAME) else {
            return false;
        };
        let name = &record[NAME..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        // "." and "..", and anything else not a number, are no descriptor.
        let mut fd: Option<i32> = (!name.is_empty()).then_some(0);
        for &b in name {
            fd = fd.and_then(|v| {
                b.is_ascii_digit()
                    .then(|| v.checked_mul(10)?.checked_add(i32::from(b - b'0')))
                    .flatten()
            });
        }
        if let Some(fd) = fd {
            f(fd);
        }
        at += len;
    }
    true
}

/// Closes every number from 3 to the soft RLIMIT_NOFILE, which no open
/// descriptor can reach: the last resort, slow with a high limit.
unsafe fn close_every_but(keep: &[i32]) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `limit`; close on our own table.
    unsafe {
        let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            i32::try_from(limit.rlim_cur).unwrap_or(i32::MAX)
        } else {
            // Linux's default fs.nr_open, above which no descriptor opens.
            1 << 20
        };
        for fd in 3..top {
            if !keep.contains(&fd) {
                libc::close(fd);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::net::TcpListener;
    use std::os::fd::AsFd;
    use std::time::Instant;

    /// A forked child of this test, killed and reaped on drop.
    struct TestChild(Pid);

    impl Drop for TestChild {
        fn drop(&mut self) {
            let _ = signal::kill(self.0, Signal::SIGKILL);
            let _ = waitpid(self.0, None);
        }
    }

    fn open_fds(pid: &str) -> BTreeSet<i32> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("read /proc/PID/fd")
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// Forks a child that closes all but one descriptor by `way`, and
    /// returns what it still holds, with the one it was to keep.
    fn held_after_closing(way: Closing) -> (BTreeSet<i32>, i32) {
        // Descriptors a daemon would have: listeners, a connection, a pipe.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let (extra_r, extra_w) = nix::unistd::pipe().unwrap();
        let (ready_r, ready_w) = nix::unistd::pipe().unwrap();
        let keep = ready_w.as_raw_fd();
        let before = open_fds("self");
        for fd in [&listener.as_raw_fd(), &client.as_raw_fd(), &keep] {
            assert!(before.contains(fd), "{fd} not open in {before:?}");
        }

        // SAFETY: the child makes only async-signal-safe system calls and
        // never returns.
        let child = match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                close_all_but(&[keep], way);
                libc::write(keep, b"x".as_ptr().cast(), 1);
                loop {
                    libc::pause();
                }
            },
            ForkResult::Parent { child } => TestChild(child),
        };
        drop(ready_w);
        let mut ready = [nix::poll::PollFd::new(
            ready_r.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let n = nix::poll::poll(&mut ready, nix::poll::PollTimeout::from(10_000u16));
        assert_eq!(n, Ok(1), "the child did not say it was done");
        let held = open_fds(&child.0.to_string());
        drop((listener, client, server_side, extra_r, extra_w, ready_r));
        (held, keep)
    }

    fn assert_holds_only_stdio_and(way: Closing) {
        let (held, keep) = held_after_closing(way);
        let above_stdio: Vec<i32> = held.iter().copied().filter(|&fd| fd > 2).collect();
        assert_eq!(
            above_stdio,
            [keep],
            "closing by {way:?}, the child holds {held:?}"
        );
    }

    #[test]
    fn close_range_leaves_only_stdio_and_the_kept() {
        assert_holds_only_stdio_and(Closing::Range);
    }

    /// The fallback where close_range is refused (before Linux 5.9).
    #[test]
    fn closing_what_proc_lists_leaves_only_stdio_and_the_kept() {
        assert_holds_only_stdio_and(Closing::Listed);
    }

    /// The fallback where /proc cannot be read either.
    #[test]
    fn closing_every_number_leaves_only_stdio_and_the_kept() {
        assert_holds_only_stdio_and(Closing::Every);
    }

    /// A panic serving a connection ends the child with its own code,
    /// never unwinding into the code the child inherited from the parent.
    #[test]
    fn a_panicking_child_exits_with_its_code() {
        // SAFETY: the child runs the closure and `_exit`s; it never returns.
        let child = match unsafe { fork() }.expect("fork") {
            ForkResult::Child => unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                let code = child_code(|| panic!("a bug while serving"));
                libc::_exit(code)
            },
            ForkResult::Parent { child } => TestChild(child),
        };
        let until = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match waitpid(child.0, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other,
            }
        };
        assert_eq!(status, Ok(WaitStatus::Exited(child.0, exit::PANICKED)));
        assert_eq!(child_code(|| exit::FINISHED), exit::FINISHED);
    }

    #[test]
    fn listed_fds_are_parsed_and_bad_records_refused() {
        fn record(name: &str) -> Vec<u8> {
            let len = (19 + name.len() + 1).next_multiple_of(8);
            let mut r = vec![0u8; len];
            r[16..18].copy_from_slice(&(len as u16).to_ne_bytes());
            r[19..19 + name.len()].copy_from_slice(name.as_bytes());
            r
        }
        let mut bytes = Vec::new();
        for name in [".", "..", "0", "7", "12345", "x1", "99999999999"] {
            bytes.extend(record(name));
        }
        let mut seen = Vec::new();
        assert!(for_each_listed_fd(&bytes, |fd| seen.push(fd)));
        assert_eq!(seen, [0, 7, 12345]);

        // Truncated, zero-length and overlong records: refused, no panic.
        for cut in [1, 17, 20, bytes.len() - 1] {
            let mut n = 0;
            let _ = for_each_listed_fd(&bytes[..cut], |_| n += 1);
        }
        let mut zero = record("3");
        zero[16..18].copy_from_slice(&0u16.to_ne_bytes());
        assert!(!for_each_listed_fd(&zero, |_| {}));
        let mut long = record("3");
        long[16..18].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(!for_each_listed_fd(&long, |_| {}));
    }
}
