//! `netlab count`: prints how many characters the server counted.

use std::io::Write;

use netlab::client;

use super::{CountArgs, exit, fail};

pub(super) fn run(args: &CountArgs) -> u8 {
    let framing = args.framing();
    let message = args.message.join(" ");
    let options = match args.tls.options(args.timeout) {
        Ok(options) => options,
        Err(err) => return fail(&err),
    };
    match client::count_with(args.addr, message.as_bytes(), framing, &options) {
        Ok(n) => match writeln!(std::io::stdout(), "{n}") {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("netlab: write the count to stdout: {e}");
                exit::IO
            }
            _ => exit::OK,
        },
        Err(err) => fail(&err),
    }
}
