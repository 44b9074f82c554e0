//! One connection served with blocking I/O, as the `thread` and `fork`
//! models do: a TLS handshake first where the listener has TLS, then read,
//! let the session answer, write it all, repeat.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};

use super::conn::{ConnKind, NoSigpipe};
use crate::metrics::{self, Shard};
use crate::service::Session;

/// How a blocking connection ended.
#[derive(Debug)]
pub(super) enum Ending {
    /// The peer half-closed and every reply was sent.
    Finished,
    /// The session refused the peer's input.
    Refused(String),
    /// Nothing was read for `idle_timeout`.
    Idle,
    Io(io::Error),
}

/// Why a TLS handshake did not finish.
#[derive(Debug)]
pub(super) enum HandshakeFailure {
    /// Not within `handshake_timeout`.
    TimedOut,
    /// The peer closed before it finished.
    Closed,
    /// TLS refused it (a bad certificate, no common version, ...): why.
    Refused(String),
}

impl HandshakeFailure {
    pub fn reason(&self) -> String {
        match self {
            HandshakeFailure::TimedOut => "it did not finish within handshake_timeout".into(),
            HandshakeFailure::Closed => "the peer closed before it finished".into(),
            HandshakeFailure::Refused(why) => why.clone(),
        }
    }
}

/// A connection the blocking models serve: plain, or TLS once its
/// handshake is done.
pub(super) enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, NoSigpipe<TcpStream>>>),
}

impl Stream {
    /// Begins `stream` as a connection of `kind`: for TLS, the handshake,
    /// which must finish within `timeout`.
    pub fn begin(
        stream: TcpStream,
        kind: &ConnKind,
        timeout: Duration,
    ) -> Result<Stream, HandshakeFailure> {
        let ConnKind::Tls(server) = kind else {
            return Ok(Stream::Plain(stream));
        };
        let io_failure = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HandshakeFailure::TimedOut,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe => HandshakeFailure::Closed,
            _ => HandshakeFailure::Refused(e.to_string()),
        };
        let mut conn = ServerConnection::new(server.current())
            .map_err(|e| HandshakeFailure::Refused(e.to_string()))?;
        let mut socket = NoSigpipe(stream);
        let deadline = Instant::now() + timeout;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(HandshakeFailure::TimedOut);
            }
            // A peer trickling bytes still meets the deadline.
            socket
                .0
                .set_read_timeout(Some(left))
                .and_then(|()| socket.0.set_write_timeout(Some(left)))
                .map_err(io_failure)?;
            match conn.complete_io(&mut socket) {
                Ok((0, 0)) if conn.is_handshaking() => return Err(HandshakeFailure::Closed),
                Ok(_) => {}
                Err(e) => {
                    // The alert that says why, if the socket takes it.
                    let _ = conn.write_tls(&mut socket);
                    return Err(io_failure(e));
                }
            }
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, socket))))
    }

    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock.0,
        }
    }

    /// Ends this side: close_notify for TLS, then the FIN.
    fn finish(&mut self) {
        if let Stream::Tls(s) = self {
            s.conn.send_close_notify();
            let _ = s.flush();
        }
        let _ = self.socket().shutdown(Shutdown::Write);
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => match s.read(buf) {
                // A peer that closed without close_notify has still ended.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Serves until the connection ends; counts bytes and requests in
/// `counters` when given.
pub(super) fn serve(
    stream: &mut Stream,
    session: &mut impl Session,
    idle_timeout: Option<Duration>,
    buf: &mut [u8],
    out: &mut Vec<u8>,
    counters: Option<&Shard>,
) -> Ending {
    // A peer that stops reading must not hold a worker forever either.
    let socket = stream.socket();
    if let Err(e) = socket
        .set_read_timeout(idle_timeout)
        .and_then(|()| socket.set_write_timeout(idle_timeout))
    {
        return Ending::Io(e);
    }
    loop {
        let n = match stream.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Ending::Idle,
            Err(e) => return Ending::Io(e),
        };
        out.clear();
        let result = if n == 0 {
            session.on_eof(out)
        } else {
            session.on_data(&buf[..n], out)
        };
        if let Some(c) = counters {
            metrics::add(&c.bytes_received, n as u64);
            metrics::add(&c.requests, session.take_answered());
        }
        if let Err(e) = stream.write_all(out).and_then(|()| stream.flush()) {
            return if is_timeout(&e) {
                Ending::Idle
            } else {
                Ending::Io(e)
            };
        }
        // Counted once written: a write that failed sent an unknown part.
        if let Some(c) = counters {
            metrics::add(&c.bytes_sent, out.len() as u64);
        }
        if let Err(e) = result {
            stream.finish();
            return Ending::Refused(e.reason);
        }
        if n == 0 {
            // RFC 862: everything echoed, now close our side too.
            stream.finish();
            return Ending::Finished;
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Ending {
    pub(super) fn log(&self, server: &str, peer: std::net::SocketAddr) {
        match self {
            Ending::Finished => log::debug!("server {server}: {peer} finished"),
            Ending::Refused(why) => log::debug!("server {server}: closing {peer}: {why}"),
            Ending::Idle => log::debug!("server {server}: closing {peer}: idle timeout"),
            Ending::Io(e) => log::debug!("server {server}: {peer}: {e}"),
        }
    }
}
