//! `netlab echo`: one message, one echo, and an exit code that says whether
//! the echo was faithful.

use std::io::{self, Read, Write};

use netlab::client::{self, ErrorKind};

use super::{EchoArgs, exit, fail};

/// The most read from stdin for a TCP echo: the whole message is kept to
/// compare with the echo, so `netlab echo < /dev/zero` must end.
pub const MAX_STDIN_TCP: u64 = 64 * 1024 * 1024;
/// For UDP, one datagram: more than any UDP payload can be.
pub const MAX_STDIN_UDP: u64 = 65_536;

pub(super) fn run(args: &EchoArgs) -> u8 {
    let from_stdin = args.message.is_empty();
    let message = if from_stdin {
        let limit = if args.udp {
            MAX_STDIN_UDP
        } else {
            MAX_STDIN_TCP
        };
        let mut input = Vec::new();
        if let Err(e) = io::stdin().lock().take(limit + 1).read_to_end(&mut input) {
            eprintln!("netlab: read the message from stdin: {e}");
            return exit::IO;
        }
        if input.len() as u64 > limit {
            if args.udp {
                eprintln!(
                    "netlab: stdin holds more than {limit} bytes; a UDP echo is one datagram, at most 65507 bytes over IPv4 and 65527 over IPv6"
                );
            } else {
                eprintln!(
                    "netlab: stdin holds more than {limit} bytes; netlab echo keeps the whole message to compare with the echo, so it takes at most that"
                );
            }
            return exit::USAGE;
        }
        input
    } else {
        args.message.join(" ").into_bytes()
    };

    let reply = if args.udp {
        if args.tls.tls {
            eprintln!("netlab: --tls is for TCP: there is no TLS over UDP (DTLS) here");
            return exit::USAGE;
        }
        client::udp_echo(args.addr, &message, args.timeout, args.retries)
    } else {
        match args.tls.options(args.timeout) {
            Ok(options) => client::tcp_echo_with(
                args.addr,
                &message,
                &options,
                client::echo_reply_limit(message.len()),
            ),
            Err(err) => Err(err),
        }
    };
    let reply = match reply {
        Ok(reply) => reply,
        // A TCP reply too long to be the echo (a server that never stops
        // sending): the server answered, wrongly, as when the echo differs.
        Err(err) if !args.udp && err.kind() == ErrorKind::Protocol => {
            eprintln!("netlab: {err}");
            return exit::MISMATCH;
        }
        Err(err) => return fail(&err),
    };

    let mut stdout = io::stdout().lock();
    let printed = stdout
        .write_all(&reply)
        // A message typed as arguments had no newline of its own; end the line
        // for the terminal, outside the echoed bytes.
        .and_then(|()| {
            if from_stdin {
                Ok(())
            } else {
                stdout.write_all(b"\n")
            }
        })
        .and_then(|()| stdout.flush());
    if let Err(e) = printed
        && e.kind() != io::ErrorKind::BrokenPipe
    {
        eprintln!("netlab: write the echo to stdout: {e}");
        return exit::IO;
    }

    if reply == message {
        exit::OK
    } else {
        eprintln!("netlab: {}", describe_difference(&message, &reply));
        exit::MISMATCH
    }
}

/// Says how an echo differs from what was sent, briefly enough for a terminal.
fn describe_difference(sent: &[u8], got: &[u8]) -> String {
    let first = sent
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(sent.len().min(got.len()));
    format!(
        "the echo differs from what was sent: sent {} bytes, got {}, first difference at byte {first}",
        sent.len(),
        got.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_point_at_the_first_differing_byte() {
        assert_eq!(
            describe_difference(b"hello", b"help!"),
            "the echo differs from what was sent: sent 5 bytes, got 5, first difference at byte 3"
        );
        assert!(
            describe_difference(b"hello", b"hell").ends_with("got 4, first difference at byte 4")
        );
    }
}
