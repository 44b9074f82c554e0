//! netlabd: reads a configuration, binds every listener (refusing to start
//! if any cannot be bound), serves, and stops gracefully on SIGINT/SIGTERM.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use netlab::config::{Config, ConfigErrors, ServerConfig};
use netlab::server::{BoundServer, RunningServer};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Where the configuration is looked for when `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/netlab/netlabd.toml";

/// The configuration run when there is no file: every service on loopback,
/// on unprivileged ports.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// Exit codes, as sysexits-minded operators expect.
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_RUNTIME: u8 = 1;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    /// Validate the configuration and exit. Ports are not bound: a check is
    /// what an operator runs before reloading a daemon that holds them.
    pub check: bool,
}

/// Where the configuration comes from, for the log.
enum Source {
    File(PathBuf),
    Embedded,
}

fn load(options: &Options) -> Result<(Config, Source), ConfigErrors> {
    if let Some(path) = &options.config {
        return Config::load(path).map(|c| (c, Source::File(path.clone())));
    }
    let system = Path::new(SYSTEM_CONFIG);
    if system.exists() {
        return Config::load(system).map(|c| (c, Source::File(system.to_owned())));
    }
    Config::parse(DEFAULT_CONFIG, "<embedded default>").map(|c| (c, Source::Embedded))
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(options: &Options) -> ExitCode {
    let (config, source) = match load(options) {
        Ok(loaded) => loaded,
        Err(errors) => {
            report(&errors.to_string());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if options.check {
        println!("configuration OK: {} server(s)", config.servers.len());
        return ExitCode::SUCCESS;
    }
    match &source {
        Source::File(path) => log::info!("configuration {}", path.display()),
        Source::Embedded => log::info!(
            "no --config and no {SYSTEM_CONFIG}: running the embedded default configuration (netlabd --print-default-config shows it)"
        ),
    }

    // Bind everything before serving anything: a taken port refuses the whole
    // configuration, as a bad key does.
    let mut bound = Vec::new();
    for server in &config.servers {
        match BoundServer::bind(server) {
            Ok(b) => bound.push(b),
            Err(e) => {
                report(&e.to_string());
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    // Signals are caught before the first connection can arrive.
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            report(&format!("cannot install signal handlers: {e}"));
            return ExitCode::from(EXIT_RUNTIME);
        }
    };

    let mut running: Vec<RunningServer> = Vec::new();
    for b in bound {
        match b.start() {
            Ok(server) => {
                announce(&server);
                running.push(server);
            }
            Err(e) => {
                report(&e.to_string());
                stop_all(running, std::time::Duration::ZERO);
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    }

    for signal in signals.forever() {
        match signal {
            SIGHUP => log::warn!(
                "SIGHUP: reloading is not supported by this version; restart netlabd to apply a new configuration"
            ),
            _ => {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                log::info!(
                    "{name}: stopping; open connections have {} to finish",
                    humantime::format_duration(config.daemon.shutdown_grace)
                );
                break;
            }
        }
    }
    stop_all(running, config.daemon.shutdown_grace);
    log::info!("stopped");
    ExitCode::SUCCESS
}

fn announce(server: &RunningServer) {
    let c: &ServerConfig = server.config();
    let transport = format!("{:?}", c.transport).to_lowercase();
    let model = format!("{:?}", c.model).to_lowercase();
    let service = format!("{:?}", c.service.kind()).to_lowercase();
    for addr in server.local_addrs() {
        log::info!(
            "server {} ({service}/{transport}, {model}) listening on {addr}",
            c.name
        );
    }
}

/// Stops every server at once, so the grace periods run side by side.
fn stop_all(running: Vec<RunningServer>, grace: std::time::Duration) {
    for s in &running {
        s.begin_stop(grace);
    }
    for s in running {
        s.join();
    }
}

/// Writes to stderr, each line prefixed with the program's name.
fn report(message: &str) {
    let mut err = std::io::stderr().lock();
    for line in message.lines() {
        let _ = writeln!(err, "netlabd: {line}");
    }
}
