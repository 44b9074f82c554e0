//! The service manager's notify protocol (sd_notify), without libsystemd:
//! nothing is sent when `NOTIFY_SOCKET` is unset.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

pub struct Notifier {
    /// Ping interval: half of `WATCHDOG_USEC`, as systemd recommends.
    watchdog: Option<Duration>,
    last_ping: Instant,
    status: String,
    failed: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
        if let Some(every) = watchdog {
            log::info!(
                "watchdog enabled: pinging every {}",
                humantime::format_duration(every)
            );
        }
        Notifier {
            watchdog,
            last_ping: Instant::now(),
            status: String::new(),
            failed: false,
        }
    }

    fn send(&mut self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            // Said once: a broken notify socket would otherwise fill the log.
            if !self.failed {
                log::warn!("cannot notify the service manager: {e}");
                self.failed = true;
            }
        }
    }

    /// Every listener is bound and serving.
    pub fn ready(&mut self, status: &str) {
        self.status = status.to_owned();
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn reloading(&mut self) {
        let mut states = vec![NotifyState::Reloading];
        match NotifyState::monotonic_usec_now() {
            Ok(now) => states.push(now),
            Err(e) => log::warn!("cannot read the monotonic clock for MONOTONIC_USEC: {e}"),
        }
        states.push(NotifyState::Status("reloading"));
        self.status = "reloading".into();
        self.send(&states);
    }

    pub fn stopping(&mut self) {
        self.status = "stopping".into();
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Sends `status` if it changed.
    pub fn status(&mut self, status: &str) {
        if status != self.status {
            self.status = status.to_owned();
            self.send(&[NotifyState::Status(status)]);
        }
    }

    /// Pings the watchdog when due.
    pub fn tick(&mut self) {
        if let Some(every) = self.watchdog
            && self.last_ping.elapsed() >= every
        {
            self.send(&[NotifyState::Watchdog]);
            self.last_ping = Instant::now();
        }
    }

    /// How long the main loop may sleep before the next duty.
    pub fn next_tick(&self) -> Duration {
        let status_every = Duration::from_secs(1);
        self.watchdog.map_or(status_every, |every| {
            every
                .saturating_sub(self.last_ping.elapsed())
                .min(status_every)
        })
    }
}
