//! `netlabd`: parses its arguments and runs the daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use netlab_daemon::netlabd::{self, Options};

/// Hosts netlab's servers (echo, count) as configured, in the foreground.
#[derive(Debug, Parser)]
#[command(name = "netlabd", version, about)]
struct Args {
    /// The configuration file [default: /etc/netlab/netlabd.toml, else the
    /// embedded default].
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration and exit: 0 when valid, else every error with
    /// its file, line and column, and 2.
    #[arg(long)]
    check: bool,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Run in the background: fork, detach, log to syslog unless the
    /// configuration says otherwise, and drop to the configured user.
    #[arg(long)]
    daemonize: bool,
    /// Write the daemon's pid to FILE, locked while it runs and removed when
    /// it stops; a second netlabd with the same pidfile refuses to start.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", netlabd::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    netlabd::run(&Options {
        config: args.config,
        check: args.check,
        daemonize: args.daemonize,
        pidfile: args.pidfile,
    })
}
