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
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid, getppid};

use super::acceptor::{AcceptHandler, Acceptor};
use super::{Permit, Runtime, StreamCtx, blocking};
use crate::service::Worker;

/// How often exited children are looked for while any are running.
const REAP_TICK: Duration = Duration::from_millis(20);

pub(super) fn spawn(ctx: StreamCtx, listeners: Vec<TcpListener>) -> io::Result<Runtime> {
    let name = format!("{}-fork", ctx.shared.name);
    Acceptor::spawn(name, listeners, move |acceptor| run(ctx, acceptor))
}

struct Forker {
    ctx: StreamCtx,
    children: HashMap<Pid, Permit>,
    close_in_child: Vec<i32>,
    // The child's buffers are made here, before fork, so that the child
    // allocates as little as it can.
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl AcceptHandler for Forker {
    fn accept(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.tick();
        let ctx = &self.ctx;
        let Some(permit) = ctx.shared.admit(peer) else {
            return;
        };
        let parent = getpid();
        // SAFETY: the child runs only `serve_child`, which makes system
        // calls on the connection and exits with `_exit`; glibc's fork
        // handlers keep malloc usable in the child for the one small
        // allocation the session's tag may need.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => serve_child(
                ctx,
                parent,
                stream,
                &self.close_in_child,
                &mut self.buf,
                &mut self.out,
            ),
            Ok(ForkResult::Parent { child }) => {
                log::debug!(
                    "server {}: {peer} served by process {child}",
                    ctx.shared.name
                );
                self.children.insert(child, permit);
            }
            Err(e) => log::warn!("server {}: cannot fork for {peer}: {e}", ctx.shared.name),
        }
        // The parent's copy of the connection closes here.
    }

    fn tick(&mut self) {
        reap(&mut self.children, &self.ctx, false);
    }
}

fn run(ctx: StreamCtx, mut acceptor: Acceptor) {
    let shared = ctx.shared.clone();
    let mut forker = Forker {
        close_in_child: acceptor.raw_fds(),
        ctx,
        children: HashMap::new(),
        buf: vec![0u8; 16 * 1024],
        out: Vec::with_capacity(16 * 1024),
    };
    acceptor.run(&shared, REAP_TICK, &mut forker);
    let Forker {
        ctx, mut children, ..
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
}

/// Waits for the children that have exited (all of them when `block`).
fn reap(children: &mut HashMap<Pid, Permit>, ctx: &StreamCtx, block: bool) {
    let flags = if block {
        None
    } else {
        Some(WaitPidFlag::WNOHANG)
    };
    children.retain(|pid, _| match waitpid(*pid, flags) {
        Ok(WaitStatus::StillAlive) => true,
        Ok(status) => {
            if !matches!(status, WaitStatus::Exited(_, 0)) {
                log::debug!("server {}: child {pid} ended: {status:?}", ctx.shared.name);
            }
            ctx.shared.stats.closed.fetch_add(1, Ordering::Relaxed);
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
    mut stream: TcpStream,
    close: &[i32],
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
        close_inherited(stream.as_raw_fd(), close);
    }
    let pid = std::process::id();
    let mut session = ctx.service.session(Worker::Process(pid));
    let ending = blocking::serve(
        &mut stream,
        &mut session,
        ctx.config.limits.idle_timeout,
        buf,
        out,
    );
    let code = match ending {
        blocking::Ending::Finished => 0,
        _ => 1,
    };
    drop(stream);
    // SAFETY: ends this process without running atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

/// Closes every descriptor but stdio and the connection: the host's other
/// listeners (every server of a daemon) must not stay open in a child, or a
/// stopped server's port would stay taken until its last child ends.
///
/// # Safety
/// Only in a freshly forked child, which owns its descriptor table.
unsafe fn close_inherited(keep: i32, known: &[i32]) {
    let range = |lo: i32, hi: u32| {
        // SAFETY: close_range takes plain integers; see the function's contract.
        unsafe { libc::syscall(libc::SYS_close_range, lo as u32, hi, 0u32) }
    };
    let lower = if keep > 3 {
        range(3, (keep - 1) as u32)
    } else {
        0
    };
    if lower != 0 || range(keep + 1, u32::MAX) != 0 {
        // Kernels before 5.9: close at least this server's own descriptors.
        for &fd in known {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
}
