//! Reloads: netlabd's configuration file is swapped for the next variant
//! and netlabd gets SIGHUP. A reload counts once netlabd's log says it was
//! applied, and what it changed answers as it should: the `flip` echo
//! server (changed by every reload, so restarted on its port) still echoes,
//! and the `probe` count server answers where the variant has it and is
//! refused where it does not. The servers under load are the same in every
//! variant: their connections must not notice.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use netlab::client::{self, CountFraming};

/// How long netlabd has to log the reload's outcome.
const LOGGED_WITHIN: Duration = Duration::from_secs(10);
/// How long a removed server may still accept once the reload is logged.
const GONE_WITHIN: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Reloader {
    pub pid: u32,
    pub log: PathBuf,
    pub config: PathBuf,
    pub variants: Vec<PathBuf>,
    /// The echo server every reload changes.
    pub flip: Option<SocketAddr>,
    /// The count server, and the variants that have it.
    pub probe: Option<SocketAddr>,
    pub probe_in: Vec<usize>,
    /// The variant live now.
    pub current: usize,
    pub done: u64,
}

impl Reloader {
    /// Moves to variant `next`; what went wrong, if anything.
    pub fn reload_to(&mut self, next: usize) -> Result<(), String> {
        let before = outcomes(&self.log)?;
        install(&self.variants[next], &self.config)?;
        // SAFETY: kill(2) with a pid and a signal number.
        if unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGHUP) } != 0 {
            return Err(format!(
                "SIGHUP to netlabd ({}): {}",
                self.pid,
                io::Error::last_os_error()
            ));
        }
        let deadline = Instant::now() + LOGGED_WITHIN;
        let outcome = loop {
            let now = outcomes(&self.log)?;
            if now.applied > before.applied {
                break Ok(());
            }
            if now.refused > before.refused {
                break Err(format!(
                    "netlabd refused the reload to {}",
                    self.variants[next].display()
                ));
            }
            if Instant::now() >= deadline {
                break Err(format!(
                    "netlabd logged no outcome of the reload within {LOGGED_WITHIN:?}"
                ));
            }
            sleep(Duration::from_millis(50));
        };
        outcome?;
        self.current = next;
        self.done += 1;
        self.check_servers()
    }

    fn check_servers(&self) -> Result<(), String> {
        if let Some(flip) = self.flip {
            let message = format!("reload {}", self.done);
            match client::tcp_echo(flip, message.as_bytes(), PROBE_TIMEOUT) {
                Ok(echo) if echo == message.as_bytes() => {}
                Ok(echo) => {
                    return Err(format!("flip server {flip} echoed {echo:?} to {message:?}"));
                }
                Err(e) => return Err(format!("flip server {flip}, restarted by the reload: {e}")),
            }
        }
        if let Some(probe) = self.probe {
            if self.probe_in.contains(&self.current) {
                match client::count(probe, b"soak!", CountFraming::Line, PROBE_TIMEOUT) {
                    Ok(5) => {}
                    Ok(n) => {
                        return Err(format!(
                            "probe server {probe} counted {n} characters in \"soak!\""
                        ));
                    }
                    Err(e) => {
                        return Err(format!("probe server {probe}, added by the reload: {e}"));
                    }
                }
            } else {
                let deadline = Instant::now() + GONE_WITHIN;
                loop {
                    match TcpStream::connect_timeout(&probe, PROBE_TIMEOUT) {
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                        Err(e) => {
                            return Err(format!("probe server {probe}, removed: connect: {e}"));
                        }
                        Ok(_) if Instant::now() >= deadline => {
                            return Err(format!(
                                "probe server {probe} was removed by the reload but still accepts {GONE_WITHIN:?} later"
                            ));
                        }
                        Ok(_) => sleep(Duration::from_millis(100)),
                    }
                }
            }
        }
        Ok(())
    }
}

/// Replaces `config` by `variant` in one rename, so netlabd never reads
/// half a file.
pub fn install(variant: &Path, config: &Path) -> Result<(), String> {
    let tmp = config.with_extension("toml.next");
    fs::copy(variant, &tmp)
        .and_then(|_| fs::rename(&tmp, config))
        .map_err(|e| format!("install {} as {}: {e}", variant.display(), config.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcomes {
    applied: usize,
    refused: usize,
}

/// How many reloads netlabd's log reports applied and refused so far.
fn outcomes(log: &Path) -> Result<Outcomes, String> {
    let text = fs::read(log).map_err(|e| format!("read netlabd's log {}: {e}", log.display()))?;
    let text = String::from_utf8_lossy(&text);
    Ok(Outcomes {
        applied: text.matches(" reloaded: ").count(),
        refused: text.matches("reload refused").count(),
    })
}
