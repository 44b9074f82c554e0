//! One connection served with blocking I/O, as the `thread` and `fork`
//! models do: read, let the session answer, write it all, repeat.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

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

pub(super) fn serve(
    stream: &mut TcpStream,
    session: &mut impl Session,
    idle_timeout: Option<Duration>,
    buf: &mut [u8],
    out: &mut Vec<u8>,
) -> Ending {
    // A peer that stops reading must not hold a worker forever either.
    if let Err(e) = stream
        .set_read_timeout(idle_timeout)
        .and_then(|()| stream.set_write_timeout(idle_timeout))
    {
        return Ending::Io(e);
    }
    let _ = stream.set_nodelay(true);
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
        if let Err(e) = stream.write_all(out) {
            return if is_timeout(&e) {
                Ending::Idle
            } else {
                Ending::Io(e)
            };
        }
        if let Err(e) = result {
            let _ = stream.shutdown(Shutdown::Write);
            return Ending::Refused(e.reason);
        }
        if n == 0 {
            // RFC 862: everything echoed, now close our side too.
            let _ = stream.shutdown(Shutdown::Write);
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
