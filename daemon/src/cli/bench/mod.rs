//! `netlab bench echo`: a closed-loop load generator (and, in [`chat`],
//! `netlab bench chat`). Every connection keeps
//! exactly one request in flight, so the rate measured is what the server
//! sustains at that concurrency, and latency is the round trip a client sees.
//! Connections are spread over a few generator threads, each one mio event
//! loop: the generator costs little CPU per connection, which matters when
//! it shares the machine with the server it measures.

mod chat;
mod payload;
mod report;
mod stats;
mod tcp;
mod tls;
mod udp;

use std::io;
use std::net::{TcpStream, UdpSocket};
use std::time::Instant;

use netlab::client::{ClientError, local_address_for};

use super::{BenchEchoArgs, exit, fail};
pub(super) use chat::{BENCH_CHAT_HELP, run as run_chat};
use payload::Payload;
use report::Report;
use stats::{Stats, Window};

pub(super) const BENCH_HELP: &str = "\
Reports requests/s, MB/s (payload bytes in each direction), round-trip latency
p50/p99/p99.9/max in microseconds, and errors (broken connections, echoes that
differ from the request; for UDP also refused sends). With --udp, `lost` counts
requests resent after --loss-timeout. Only round trips that complete after the
warmup and within --duration count.

Exit status:
  0  the run completed without errors
  1  the run completed, but errors were counted
  2  usage error
  3  timeout while connecting
  4  other error: could not connect, or no round trip completed";

const MAX_UDP_PAYLOAD: usize = 65_507;

pub(super) fn run(args: &BenchEchoArgs) -> u8 {
    if let Err(reason) = check(args) {
        eprintln!("netlab: {reason}");
        return exit::USAGE;
    }
    let threads = args.threads.min(args.connections);
    let payload = Payload::new(args.size);

    let stats = if args.udp {
        let sockets = match open_udp(args) {
            Ok(sockets) => sockets,
            Err(err) => return fail(&err),
        };
        let window = start_window(args);
        run_threads(split(sockets, threads), |i, sockets| {
            udp::run(sockets, &payload, window, args.loss_timeout, i as u64)
        })
    } else if args.tls.tls {
        let tls = match tls_for(args) {
            Ok(tls) => tls,
            Err(err) => return fail(&err),
        };
        let window = start_window(args);
        let counts: Vec<usize> = (0..args.connections).collect();
        run_threads(split(counts, threads), |i, conns| {
            tls::run(args.addr, conns.len(), &tls, &payload, window, i as u64)
        })
    } else {
        let streams = match open_tcp(args) {
            Ok(streams) => streams,
            Err(err) => return fail(&err),
        };
        let window = start_window(args);
        run_threads(split(streams, threads), |i, streams| {
            tcp::run(args.addr, streams, &payload, window, i as u64)
        })
    };
    let stats = match stats {
        Ok(stats) => stats,
        Err(e) => {
            eprintln!("netlab: bench {}: {e}", args.addr);
            return exit::IO;
        }
    };

    let report = Report::new(args, threads, &stats);
    let printed = if args.json {
        println_or_broken_pipe(&report.to_json())
    } else {
        println_or_broken_pipe(&report.to_text())
    };
    if let Err(e) = printed {
        eprintln!("netlab: write the report: {e}");
        return exit::IO;
    }
    if stats.requests == 0 {
        eprintln!("netlab: no round trip completed in the measured window");
        exit::IO
    } else if stats.errors > 0 {
        exit::MISMATCH
    } else {
        exit::OK
    }
}

fn check(args: &BenchEchoArgs) -> Result<(), String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if args.size == 0 {
        return Err("--size must be at least 1 byte".into());
    }
    if args.udp && args.size > MAX_UDP_PAYLOAD {
        return Err(format!(
            "--size {} does not fit in one UDP datagram (at most {MAX_UDP_PAYLOAD})",
            args.size
        ));
    }
    if args.duration.is_zero() {
        return Err("--duration must be greater than zero".into());
    }
    if args.timeout.is_zero() || (args.udp && args.loss_timeout.is_zero()) {
        return Err("timeouts must be greater than zero".into());
    }
    Ok(())
}

/// All threads share one clock, started once every connection is open.
fn start_window(args: &BenchEchoArgs) -> Window {
    Window::new(Instant::now(), args.warmup, args.duration)
}

/// Deals `items` to `threads` groups as evenly as possible.
/// Writes `buf` past `written` on a non-blocking stream until it is all
/// written or the socket would block.
fn write_on(stream: &mut impl io::Write, buf: &[u8], written: &mut usize) -> io::Result<()> {
    while *written < buf.len() {
        match stream.write(&buf[*written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn split<T>(items: Vec<T>, threads: usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        groups[i % threads].push(item);
    }
    groups
}

/// Runs one generator per group on its own thread and adds up their stats.
fn run_threads<T, F>(groups: Vec<Vec<T>>, generate: F) -> io::Result<Stats>
where
    T: Send,
    F: Fn(usize, Vec<T>) -> io::Result<Stats> + Sync,
{
    std::thread::scope(|scope| {
        let generate = &generate;
        let handles = groups
            .into_iter()
            .enumerate()
            .map(|(i, group)| {
                std::thread::Builder::new()
                    .name(format!("bench-{i}"))
                    .spawn_scoped(scope, move || generate(i, group))
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut total = Stats::new();
        for handle in handles {
            let stats = handle
                .join()
                .map_err(|_| io::Error::other("a generator thread panicked"))??;
            total.merge(&stats);
        }
        Ok(total)
    })
}

fn open_tcp(args: &BenchEchoArgs) -> Result<Vec<TcpStream>, ClientError> {
    (0..args.connections)
        .map(|_| {
            let stream = TcpStream::connect_timeout(&args.addr, args.timeout).map_err(|e| {
                ClientError::from_io(format!("connect {}", args.addr), e, args.timeout)
            })?;
            // Small requests must leave at once, not wait for Nagle.
            stream.set_nodelay(true).map_err(|e| {
                ClientError::from_io(format!("set up {}", args.addr), e, args.timeout)
            })?;
            Ok(stream)
        })
        .collect()
}

/// The generators' TLS, once one echo over it has worked: a server that
/// refuses it says why here, rather than as errors counted in the report.
fn tls_for(args: &BenchEchoArgs) -> Result<tls::Tls, ClientError> {
    let options = args.tls.options(args.timeout)?;
    let probe = vec![b'x'; args.size];
    netlab::client::tcp_echo_with(args.addr, &probe, &options, 2 * args.size + 64)?;
    let client = options.tls.expect("--tls gives TLS options");
    let mut config = (*client.rustls_config()).clone();
    let mode = if args.handshakes {
        // Every handshake a full one, as a new client's.
        config.resumption = rustls::client::Resumption::disabled();
        tls::Mode::Handshakes
    } else {
        tls::Mode::Requests
    };
    Ok(tls::Tls {
        config: std::sync::Arc::new(config),
        name: client.server_name_for(args.addr),
        mode,
    })
}

fn open_udp(args: &BenchEchoArgs) -> Result<Vec<UdpSocket>, ClientError> {
    (0..args.connections)
        .map(|_| {
            let context = || format!("open a UDP socket to {}", args.addr);
            let socket = UdpSocket::bind(local_address_for(args.addr))
                .map_err(|e| ClientError::from_io(context(), e, args.timeout))?;
            // Connected: the kernel drops datagrams from anyone else.
            socket
                .connect(args.addr)
                .map_err(|e| ClientError::from_io(context(), e, args.timeout))?;
            Ok(socket)
        })
        .collect()
}

fn println_or_broken_pipe(text: &str) -> io::Result<()> {
    use std::io::Write;
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_deals_evenly() {
        let groups = split((0..10).collect(), 3);
        let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
        assert_eq!(sizes, [4, 3, 3]);
        assert_eq!(groups.concat().len(), 10);
    }
}
