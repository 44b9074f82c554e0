//! Blocking TCP steps shared by the clients, each bounded by one timeout and
//! each turning its failure into a [`ClientError`] that names the peer.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use super::ClientError;

/// A connected stream whose every read and write gives up after `timeout`.
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) timeout: Duration,
}

impl Connection {
    pub(crate) fn open(peer: SocketAddr, timeout: Duration) -> Result<Self, ClientError> {
        check_timeout(timeout)?;
        let stream = TcpStream::connect_timeout(&peer, timeout)
            .map_err(|e| ClientError::from_io(format!("connect {peer}"), e, timeout))?;
        let setup = |e| ClientError::from_io(format!("set up connection to {peer}"), e, timeout);
        stream.set_read_timeout(Some(timeout)).map_err(setup)?;
        stream.set_write_timeout(Some(timeout)).map_err(setup)?;
        // Requests are written whole; waiting to coalesce them only adds latency.
        stream.set_nodelay(true).map_err(setup)?;
        Ok(Connection {
            stream,
            peer,
            timeout,
        })
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        write_all_to(&mut self.stream, self.peer, self.timeout, bytes)
    }

    /// Half-closes: the peer reads EOF, and can still answer.
    pub(crate) fn finish_writing(&self) -> Result<(), ClientError> {
        finish_writing(&self.stream, self.peer, self.timeout)
    }

    /// Reads once into `buf`; `Ok(0)` is EOF.
    pub(crate) fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, ClientError> {
        loop {
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ClientError::from_io(
                        format!("read from {}", self.peer),
                        e,
                        self.timeout,
                    ));
                }
            }
        }
    }

    /// Reads until EOF, giving up with a protocol error past `limit` bytes.
    pub(crate) fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, ClientError> {
        let mut reply = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = self.read_some(&mut buf)?;
            if n == 0 {
                return Ok(reply);
            }
            if reply.len() + n > limit {
                return Err(ClientError::Protocol {
                    context: format!("read from {}", self.peer),
                    detail: format!("reply is longer than {limit} bytes"),
                });
            }
            reply.extend_from_slice(&buf[..n]);
        }
    }
}

pub(crate) fn write_all_to(
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    bytes: &[u8],
) -> Result<(), ClientError> {
    stream
        .write_all(bytes)
        .map_err(|e| ClientError::from_io(format!("write to {peer}"), e, timeout))
}

pub(crate) fn finish_writing(
    stream: &TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<(), ClientError> {
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| ClientError::from_io(format!("shut down writing to {peer}"), e, timeout))
}

/// A zero timeout means "never" to some socket calls and "fail now" to
/// others; refuse it rather than guess.
pub(crate) fn check_timeout(timeout: Duration) -> Result<(), ClientError> {
    if timeout.is_zero() {
        return Err(ClientError::invalid("timeout must be greater than zero"));
    }
    Ok(())
}
