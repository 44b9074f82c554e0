//! Signals as events the main loop waits for, with a timeout, so that one
//! loop serves signals, the watchdog and status updates.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// What a signal asks of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Reload,
    /// Stop, with the signal's name for the log.
    Stop(&'static str),
}

pub struct Signals {
    wake: UnixStream,
    hup: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    int: Arc<AtomicBool>,
}

impl Signals {
    /// Catches SIGHUP, SIGTERM and SIGINT from now on.
    pub fn install() -> io::Result<Signals> {
        let (wake, notify) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        notify.set_nonblocking(true)?;
        let signals = Signals {
            wake,
            hup: Arc::default(),
            term: Arc::default(),
            int: Arc::default(),
        };
        for (sig, flag) in [
            (SIGHUP, &signals.hup),
            (SIGTERM, &signals.term),
            (SIGINT, &signals.int),
        ] {
            signal_hook::flag::register(sig, flag.clone())?;
            signal_hook::low_level::pipe::register(sig, notify.try_clone()?)?;
        }
        Ok(signals)
    }

    /// Waits up to `timeout` for a signal. A stop wins over a reload that
    /// arrived with it.
    pub fn wait(&mut self, timeout: Duration) -> Option<Request> {
        if let Some(r) = self.take() {
            return Some(r);
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let mut sink = [0u8; 64];
        while matches!(self.wake.read(&mut sink), Ok(n) if n > 0) {}
        self.take()
    }

    fn take(&self) -> Option<Request> {
        if self.term.swap(false, Ordering::AcqRel) {
            return Some(Request::Stop("SIGTERM"));
        }
        if self.int.swap(false, Ordering::AcqRel) {
            return Some(Request::Stop("SIGINT"));
        }
        if self.hup.swap(false, Ordering::AcqRel) {
            return Some(Request::Reload);
        }
        None
    }
}
