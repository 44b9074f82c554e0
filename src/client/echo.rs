//! Echo clients: TCP (RFC 862, half-close then read to EOF) and UDP (one
//! datagram, resent until a reply comes from the server or tries run out).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::link::Link;
use super::tcp;
use super::{ClientError, ClientOptions, interrupt};

/// The largest UDP payload over IPv4 and over IPv6 (without jumbograms).
const MAX_UDP_PAYLOAD_V4: usize = 65_507;
const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// How much longer than twice the message a TCP echo reply may grow before
/// [`tcp_echo`] stops reading it: room for a tagging server's prefixes
/// (`tag = "worker"`), so that such a reply can still be shown.
pub const ECHO_REPLY_MARGIN: usize = 64 * 1024;

/// The longest reply [`tcp_echo`] reads for a message of `message_len`
/// bytes: twice the message plus [`ECHO_REPLY_MARGIN`]. A faithful echo is
/// exactly `message_len` bytes, so a longer reply is already known to
/// differ; the bound keeps a server that never stops sending (chargen,
/// `yes | nc -l`) from filling memory.
pub fn echo_reply_limit(message_len: usize) -> usize {
    message_len
        .saturating_mul(2)
        .saturating_add(ECHO_REPLY_MARGIN)
}

/// Sends `message` to a TCP echo server and returns what it sent back.
///
/// Connects, writes the whole message, half-closes (an RFC 862 server then
/// flushes and closes) and reads until EOF. Writing and reading overlap, so a
/// message larger than the socket buffers cannot deadlock against a server
/// that echoes while it reads. Each blocking step (connect, every read and
/// write) gives up after `timeout`.
///
/// A reply longer than [`echo_reply_limit`]`(message.len())` is not read to
/// its end: the call stops there with [`ClientError::Protocol`], the only
/// error of that kind it returns. [`tcp_echo_with_limit`] takes another
/// bound.
pub fn tcp_echo(
    addr: SocketAddr,
    message: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, ClientError> {
    tcp_echo_with_limit(addr, message, timeout, echo_reply_limit(message.len()))
}

/// [`tcp_echo`], reading at most `max_reply` bytes of reply: one more is a
/// [`ClientError::Protocol`] that says so, returned as soon as it arrives,
/// whatever the server does next.
pub fn tcp_echo_with_limit(
    addr: SocketAddr,
    message: &[u8],
    timeout: Duration,
    max_reply: usize,
) -> Result<Vec<u8>, ClientError> {
    tcp_echo_with(addr, message, &ClientOptions::new(timeout), max_reply)
}

/// [`tcp_echo_with_limit`] with `options`: over TLS when they say so (the
/// half-close is then TLS's close_notify, followed by TCP's).
pub fn tcp_echo_with(
    addr: SocketAddr,
    message: &[u8],
    options: &ClientOptions,
    max_reply: usize,
) -> Result<Vec<u8>, ClientError> {
    tcp::check_timeout(options.timeout)?;
    let timeout = options.timeout;
    let link = Link::open(addr, options)?;
    let writer = link.clone();

    std::thread::scope(|scope| {
        let sending = scope.spawn(move || {
            writer.write_all(message, timeout)?;
            writer.finish_writing(timeout)
        });
        let reply = link.read_to_end(max_reply, timeout).map_err(|e| match e {
            ClientError::Protocol { context, .. } => ClientError::Protocol {
                context,
                detail: format!(
                    "the reply is longer than {max_reply} bytes, so it is not an echo of the {} bytes sent; stopped reading",
                    message.len()
                ),
            },
            e => e,
        });
        // Too long, or given up at the caller's word: the reply settles it.
        // So does TLS's refusal (of this client's certificate, say), which
        // the server follows by closing, failing the write too.
        let settled = matches!(
            reply,
            Err(ClientError::Protocol { .. }
                | ClientError::Interrupted { .. }
                | ClientError::Tls { .. })
        );
        if settled {
            // The writer may be blocked on a server that sends but never
            // reads: unblock it now rather than after its timeout.
            link.shutdown();
        }
        let sent = sending.join().unwrap_or_else(|_| {
            Err(ClientError::Io {
                context: format!("write to {addr}"),
                source: io::Error::other("writer thread panicked"),
            })
        });
        if settled {
            // Whatever became of the write (cut short just now).
            return reply;
        }
        // A failed write explains a short or failed read, not the other way round.
        sent?;
        reply
    })
}

/// Sends `message` as one UDP datagram and returns the first reply that comes
/// from `addr`; datagrams from anyone else are ignored.
///
/// Waits `timeout` for the reply, then resends, up to `retries` more times,
/// then gives up with [`ClientError::Timeout`]. When `addr` says no one
/// listens there (ICMP port unreachable), it gives up at once with an I/O
/// error of kind `ConnectionRefused`, as `nc -u` does. The socket is bound to an
/// ephemeral port on loopback when `addr` is a loopback address, so replies
/// from off the machine cannot reach it, and on the unspecified address of
/// `addr`'s family otherwise.
pub fn udp_echo(
    addr: SocketAddr,
    message: &[u8],
    timeout: Duration,
    retries: u32,
) -> Result<Vec<u8>, ClientError> {
    tcp::check_timeout(timeout)?;
    let max = if addr.is_ipv4() {
        MAX_UDP_PAYLOAD_V4
    } else {
        MAX_UDP_PAYLOAD_V6
    };
    if message.len() > max {
        return Err(ClientError::invalid(format!(
            "a UDP message holds at most {max} bytes, this one has {}",
            message.len()
        )));
    }
    let socket = UdpSocket::bind(local_address_for(addr)).map_err(|e| {
        ClientError::from_io(format!("bind a UDP socket to reach {addr}"), e, timeout)
    })?;
    // Connected, so the kernel drops datagrams from anyone else and reports
    // the port unreachable that an unconnected socket never hears of.
    socket
        .connect(addr)
        .map_err(|e| ClientError::from_io(format!("set {addr} as the UDP peer"), e, timeout))?;

    let tries = retries.saturating_add(1);
    let mut buf = vec![0u8; 65_536];
    for _ in 0..tries {
        socket
            .send(message)
            .map_err(|e| ClientError::from_io(no_one_at(addr, &e), e, timeout))?;
        if let Some(len) = receive_from(&socket, addr, &mut buf, timeout)? {
            buf.truncate(len);
            return Ok(buf);
        }
    }
    Err(ClientError::Timeout {
        context: format!("no reply from {addr}"),
        waited: timeout,
        tries,
    })
}

/// Waits up to `timeout` for a datagram from `peer`, skipping others.
fn receive_from(
    socket: &UdpSocket,
    peer: SocketAddr,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<Option<usize>, ClientError> {
    let deadline = crate::deadline::after(timeout);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        socket
            .set_read_timeout(Some(interrupt::slice(left)))
            .map_err(|e| ClientError::from_io(format!("wait for {peer}"), e, timeout))?;
        match socket.recv(buf) {
            Ok(len) => return Ok(Some(len)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if interrupt::interrupted() {
                    return Err(ClientError::Interrupted {
                        context: format!("wait for a reply from {peer}"),
                    });
                }
            }
            Err(e) => return Err(ClientError::from_io(no_one_at(peer, &e), e, timeout)),
        }
    }
}

/// What a UDP send or receive error means: "refused" is ICMP port
/// unreachable, nobody listening.
fn no_one_at(peer: SocketAddr, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::ConnectionRefused {
        format!("no UDP service at {peer} (port unreachable)")
    } else {
        format!("exchange datagrams with {peer}")
    }
}

/// The address a client socket for `peer` binds: loopback for a loopback
/// peer (so replies cannot come from elsewhere), else any address of the
/// same family, port 0.
pub fn local_address_for(peer: SocketAddr) -> SocketAddr {
    let ip = match peer.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ErrorKind;
    use crate::client::test_servers::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn tcp_echo_returns_what_the_server_sent_back() {
        let server = TcpServer::start(|mut stream| {
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            stream.write_all(&got)
        });
        let reply = tcp_echo(server.addr, b"hello, echo", TIMEOUT).unwrap();
        assert_eq!(reply, b"hello, echo");
    }

    #[test]
    fn tcp_echo_half_closes_so_a_read_to_eof_server_can_answer() {
        // This server answers only once it has read EOF: without the
        // half-close the client would wait until its timeout.
        let server = TcpServer::start(|mut stream| {
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            got.reverse();
            stream.write_all(&got)
        });
        let started = Instant::now();
        let reply = tcp_echo(server.addr, b"abc", TIMEOUT).unwrap();
        assert_eq!(reply, b"cba");
        assert!(started.elapsed() < TIMEOUT / 2);
    }

    #[test]
    fn tcp_echo_of_a_large_message_does_not_deadlock() {
        // Echoing while reading, as RFC 862 servers do: 8 MiB is far more
        // than both directions' socket buffers.
        let server = TcpServer::start(|mut stream| {
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                stream.write_all(&buf[..n])?;
            }
        });
        let message: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let reply = tcp_echo(server.addr, &message, TIMEOUT).unwrap();
        assert!(reply == message, "echo of 8 MiB differs");
    }

    /// A server that sends without end and never reads (chargen, `yes |
    /// nc -l`). It counts what it managed to write; it gives up at 64 MiB,
    /// so that a client that reads it all fails a test rather than the
    /// machine.
    fn endless_server() -> (TcpServer, Arc<AtomicUsize>) {
        let written = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&written);
        let server = TcpServer::start(move |mut stream| {
            let line = [b'y'; 4096];
            while count.load(Ordering::Relaxed) < 64 << 20 {
                let n = stream.write(&line)?;
                count.fetch_add(n, Ordering::Relaxed);
            }
            Ok(())
        });
        (server, written)
    }

    #[test]
    fn tcp_echo_stops_reading_a_server_that_never_stops_sending() {
        let (server, written) = endless_server();
        let started = Instant::now();
        let err = tcp_echo(server.addr, b"hello", TIMEOUT).unwrap_err();
        assert!(
            started.elapsed() < TIMEOUT / 2,
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        let limit = echo_reply_limit(5);
        assert_eq!(limit, 5 * 2 + ECHO_REPLY_MARGIN);
        assert_eq!(
            err.to_string(),
            format!(
                "read from {}: the reply is longer than {limit} bytes, so it is not an echo of the 5 bytes sent; stopped reading",
                server.addr
            )
        );
        // The client stopped reading: the server could write no more than
        // the limit and what the sockets' buffers hold.
        drop(server);
        let written = written.load(Ordering::Relaxed);
        assert!(
            written < limit + (32 << 20),
            "the server wrote {written} bytes"
        );
        // A normal echo still works, and is within the limit.
        let echo = TcpServer::start(|mut stream| {
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            stream.write_all(&got)
        });
        assert_eq!(tcp_echo(echo.addr, b"hello", TIMEOUT).unwrap(), b"hello");
    }

    #[test]
    fn tcp_echo_of_a_large_message_to_an_endless_server_ends_promptly() {
        // The server reads nothing, so writing 8 MiB blocks once the socket
        // buffers are full; the reply's excess must end the write too,
        // without waiting for the write's timeout.
        let (server, _) = endless_server();
        let message = vec![b'm'; 8 << 20];
        let started = Instant::now();
        let err = tcp_echo(server.addr, &message, TIMEOUT).unwrap_err();
        assert!(
            started.elapsed() < TIMEOUT / 2,
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(
            err.to_string()
                .contains(&format!("longer than {} bytes", echo_reply_limit(8 << 20))),
            "{err}"
        );
    }

    #[test]
    fn tcp_echo_with_limit_allows_exactly_the_limit() {
        let server = TcpServer::start(|mut stream| {
            let mut got = Vec::new();
            stream.read_to_end(&mut got)?;
            stream.write_all(&got)
        });
        let reply = tcp_echo_with_limit(server.addr, b"four", TIMEOUT, 4).unwrap();
        assert_eq!(reply, b"four");
        let err = tcp_echo_with_limit(server.addr, b"four", TIMEOUT, 3).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("longer than 3 bytes"), "{err}");
        assert_eq!(echo_reply_limit(usize::MAX), usize::MAX);
    }

    #[test]
    fn tcp_echo_times_out_on_a_silent_server() {
        // Accepts and reads, never answers nor closes.
        let server = TcpServer::start(|mut stream| {
            let mut sink = Vec::new();
            stream.read_to_end(&mut sink)?;
            std::thread::sleep(Duration::from_secs(2));
            Ok(())
        });
        let err = tcp_echo(server.addr, b"x", Duration::from_millis(200)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
    }

    #[test]
    fn tcp_echo_to_a_closed_port_is_refused() {
        let addr = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let err = tcp_echo(addr, b"x", TIMEOUT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert_eq!(
            err.to_string(),
            format!("connect {addr}: connection refused")
        );
    }

    #[test]
    fn zero_timeout_is_invalid() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            tcp_echo(addr, b"x", Duration::ZERO).unwrap_err().kind(),
            ErrorKind::Invalid
        );
        assert_eq!(
            udp_echo(addr, b"x", Duration::ZERO, 0).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }

    #[test]
    fn udp_echo_returns_the_reply() {
        let server = UdpServer::start(|socket, data, from| socket.send_to(data, from).map(drop));
        let reply = udp_echo(server.addr, b"ping", TIMEOUT, 0).unwrap();
        assert_eq!(reply, b"ping");
    }

    /// Nobody on the port: the ICMP port unreachable ends it at once, as
    /// `nc -u` does, rather than after every try's timeout.
    #[test]
    fn udp_echo_to_a_closed_port_is_refused_at_once() {
        let addr = {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let started = Instant::now();
        let err = udp_echo(addr, b"anyone?", Duration::from_secs(2), 2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("no UDP service at {addr} (port unreachable)")),
            "{err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn udp_echo_times_out_on_a_silent_peer_after_every_try() {
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let started = Instant::now();
        let err = udp_echo(addr, b"ping", Duration::from_millis(100), 2).unwrap_err();
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(
            err.to_string(),
            format!("no reply from {addr} after 3 tries of 100ms")
        );
        assert!(took >= Duration::from_millis(300), "gave up after {took:?}");
        assert!(took < Duration::from_secs(3), "took {took:?}");
        // Every try reached the peer.
        silent.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let mut seen = 0;
        while silent.recv_from(&mut buf).is_ok() {
            seen += 1;
        }
        assert_eq!(seen, 3);
    }

    #[test]
    fn udp_echo_resends_when_a_datagram_is_lost() {
        // Drops the first two datagrams, echoes the third.
        let mut received = 0;
        let server = UdpServer::start(move |socket, data, from| {
            received += 1;
            if received < 3 {
                return Ok(());
            }
            socket.send_to(data, from).map(drop)
        });
        let reply = udp_echo(server.addr, b"again", Duration::from_millis(100), 2).unwrap();
        assert_eq!(reply, b"again");
    }

    #[test]
    fn udp_echo_ignores_replies_from_other_addresses() {
        // The server answers from a second socket first, then from its own.
        let server = UdpServer::start(|socket, data, from| {
            let impostor = UdpSocket::bind("127.0.0.1:0")?;
            impostor.send_to(b"not me", from)?;
            socket.send_to(data, from).map(drop)
        });
        let reply = udp_echo(server.addr, b"real", TIMEOUT, 0).unwrap();
        assert_eq!(reply, b"real");
    }

    #[test]
    fn udp_echo_over_ipv6_loopback() {
        // Not every sandbox has IPv6 loopback; there is nothing to test without it.
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        let addr = server.local_addr().unwrap();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            let (n, from) = server.recv_from(&mut buf)?;
            server.send_to(&buf[..n], from)
        });
        let reply = udp_echo(addr, b"six", TIMEOUT, 0).unwrap();
        assert_eq!(reply, b"six");
        echo.join().unwrap().unwrap();
    }

    #[test]
    fn udp_message_too_large_is_invalid() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let err = udp_echo(addr, &vec![0; 70_000], TIMEOUT, 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Invalid);
    }
}
