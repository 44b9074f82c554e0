//! Blocking TCP steps shared by the clients, each bounded by one timeout,
//! each giving up early when the thread's interrupt check says so (see
//! [`interrupt`](super::interrupt)), and each turning its failure into a
//! [`ClientError`] that names the peer: connecting, writing, the wait.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::ClientError;
use super::interrupt::{interrupted, slice};

/// One blocking step's wait, made of slices (see `interrupt::slice`): what
/// to do when a slice ends without progress.
pub(crate) struct Wait {
    timeout: Duration,
    deadline: Instant,
}

impl Wait {
    pub(crate) fn new(timeout: Duration) -> Wait {
        Wait {
            timeout,
            deadline: crate::deadline::after(timeout),
        }
    }

    /// The step made progress: its timeout starts again.
    pub(crate) fn progressed(&mut self) {
        self.deadline = crate::deadline::after(self.timeout);
    }

    /// What is left of the step's time.
    pub(crate) fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// After a read or write failed with `e`: `Ok` to try again (a signal,
    /// or a slice that ended with time left), or the error that ends the
    /// step (interrupted, timed out, or `e` itself).
    pub(crate) fn after(
        &self,
        e: io::Error,
        context: impl FnOnce() -> String,
    ) -> Result<(), ClientError> {
        let waiting = matches!(
            e.kind(),
            io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        );
        if !waiting {
            return Err(ClientError::from_io(context(), e, self.timeout));
        }
        if interrupted() {
            return Err(ClientError::Interrupted { context: context() });
        }
        if e.kind() != io::ErrorKind::Interrupted && self.left().is_zero() {
            return Err(ClientError::from_io(context(), e, self.timeout));
        }
        Ok(())
    }
}

/// Connects to `peer` within `timeout`, asking the interrupt check
/// between slices of the wait.
pub(crate) fn connect(peer: SocketAddr, timeout: Duration) -> Result<TcpStream, ClientError> {
    check_timeout(timeout)?;
    let context = || format!("connect {peer}");
    let fail = |e| ClientError::from_io(context(), e, timeout);
    let domain = if peer.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    match socket.connect(&SockAddr::from(peer)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
            let wait = Wait::new(timeout);
            loop {
                let ready = poll_writable(&socket, slice(wait.left()));
                match ready {
                    Ok(true) => break,
                    Ok(false) => wait.after(io::ErrorKind::TimedOut.into(), context)?,
                    Err(e) => wait.after(e, context)?,
                }
            }
            if let Some(e) = socket.take_error().map_err(fail)? {
                return Err(fail(e));
            }
        }
        Err(e) => return Err(fail(e)),
    }
    socket.set_nonblocking(false).map_err(fail)?;
    Ok(socket.into())
}

/// Whether `socket` became writable (its connect finished) within `wait`.
fn poll_writable(socket: &Socket, wait: Duration) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(socket.as_fd(), PollFlags::POLLOUT)];
    let n = poll(&mut fds, PollTimeout::from(ms)).map_err(io::Error::from)?;
    Ok(n > 0)
}

/// A zero timeout means "never" to some socket calls and "fail now" to
/// others; refuse it rather than guess.
pub(crate) fn check_timeout(timeout: Duration) -> Result<(), ClientError> {
    if timeout.is_zero() {
        return Err(ClientError::invalid("timeout must be greater than zero"));
    }
    Ok(())
}
