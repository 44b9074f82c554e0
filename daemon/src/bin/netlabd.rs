//! `netlabd`: parses its arguments and runs the daemon.

use std::process::ExitCode;

use clap::Parser;
use netlab_daemon::netlabd::{self, Args};

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_default_config {
        print!("{}", netlabd::DEFAULT_CONFIG);
        return ExitCode::SUCCESS;
    }
    netlabd::run(&args.options())
}
