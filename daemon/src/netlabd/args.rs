//! netlabd's command line. It lives in the library, not in the binary, so
//! that its man page and shell completions are generated from this one
//! definition (see [`crate::manual`]).

use std::path::PathBuf;

use clap::Parser;

use super::Options;

/// Hosts netlab's servers (echo, count, chat) as configured.
///
/// netlabd reads its configuration (netlabd.toml(5)), binds every listener
/// (refusing to start when one cannot be bound), and serves in the
/// foreground, as a systemd Type=notify service: READY=1 once every
/// listener is bound, STATUS= with servers and open connections, the
/// watchdog when WatchdogSec= is set. Sockets passed by systemd socket
/// activation are given to the server named by FileDescriptorName=, or
/// else to the server with the same address.
///
/// SIGHUP reloads the configuration, all or nothing: a file with errors
/// changes nothing; a valid one starts added servers, drains removed ones,
/// restarts changed ones and leaves the others and their connections alone.
/// SIGTERM and SIGINT stop accepting, give open connections shutdown_grace
/// to finish, close the rest, and exit 0.
#[derive(Debug, Parser)]
#[command(name = "netlabd", version)]
pub struct Args {
    /// The configuration file [default: /etc/netlab/netlabd.toml, else the
    /// embedded default].
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<PathBuf>,
    /// Check the configuration and exit: 0 when valid, else every error with
    /// its file, line and column, and 2.
    #[arg(long)]
    pub check: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    pub print_default_config: bool,
    /// Run in the background: fork, detach, log to syslog unless the
    /// configuration says otherwise, and drop to the configured user.
    #[arg(long)]
    pub daemonize: bool,
    /// Write the daemon's pid to FILE, locked while it runs and removed when
    /// it stops; a second netlabd with the same pidfile refuses to start.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub pidfile: Option<PathBuf>,
}

impl Args {
    /// What [`super::run`] needs of the command line.
    pub fn options(&self) -> Options {
        Options {
            config: self.config.clone(),
            check: self.check,
            daemonize: self.daemonize,
            pidfile: self.pidfile.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Args::command().debug_assert();
    }
}
