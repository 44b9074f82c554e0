//! `netlab`: the command-line client and load generator (see `netlab --help`).

use std::process::ExitCode;

use clap::Parser;
use netlab_daemon::cli::{self, Cli};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    cli::run(Cli::parse())
}
