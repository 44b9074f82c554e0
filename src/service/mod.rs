//! Protocols as pure state machines: bytes in, bytes out, no sockets.
//!
//! A runtime (`crate::server`) reads from a socket, hands the bytes to a
//! [`Session`], and writes back whatever the session appended to `out`. The
//! same session type runs under every model, and tests drive it with slices.

pub mod chat;
pub mod count;
pub mod echo;
pub mod room;

use std::fmt;

pub use count::{CountFraming, CountService, CountSession, CountUnit};
pub use echo::{EchoService, EchoSession, UdpEchoService};

/// Who is serving a connection, as the runtime knows it. Services that tag
/// their replies (the seeds' `"<pid>: "` and `"<thread name>: "`) use it;
/// the others ignore it.
#[derive(Debug, Clone, Copy)]
pub enum Worker<'a> {
    /// A child process serving one connection (the `fork` model).
    Process(u32),
    /// A thread, by name (the `thread` and `event` models).
    Thread(&'a str),
}

/// Why a session wants its connection closed after flushing `out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub reason: String,
}

impl ProtocolError {
    pub fn new(reason: impl Into<String>) -> Self {
        ProtocolError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ProtocolError {}

/// One connection's protocol state.
pub trait Session {
    /// Bytes read from the peer. Replies are appended to `out`. An error
    /// means: flush `out` (it may hold an error reply), then close.
    fn on_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError>;

    /// The peer half-closed its side. Final replies are appended to `out`;
    /// the runtime then flushes and closes.
    fn on_eof(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError>;

    /// Requests (messages) answered since the last call, for the runtime's
    /// metrics; services without requests (echo) have none.
    fn take_answered(&mut self) -> u64 {
        0
    }
}

/// A stream (TCP) service: the per-server part, shared by every connection.
#[derive(Debug, Clone)]
pub enum StreamService {
    Echo(EchoService),
    Count(CountService),
}

/// A session of any stream service, without a box per connection.
#[derive(Debug)]
pub enum StreamSession {
    Echo(EchoSession),
    Count(CountSession),
}

impl StreamService {
    pub fn session(&self, worker: Worker<'_>) -> StreamSession {
        match self {
            StreamService::Echo(s) => StreamSession::Echo(s.session(worker)),
            StreamService::Count(s) => StreamSession::Count(s.session()),
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            StreamService::Echo(_) => "echo",
            StreamService::Count(_) => "count",
        }
    }
}

impl Session for StreamSession {
    fn on_data(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        match self {
            StreamSession::Echo(s) => s.on_data(input, out),
            StreamSession::Count(s) => s.on_data(input, out),
        }
    }

    fn on_eof(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        match self {
            StreamSession::Echo(s) => s.on_eof(out),
            StreamSession::Count(s) => s.on_eof(out),
        }
    }

    #[inline]
    fn take_answered(&mut self) -> u64 {
        match self {
            StreamSession::Echo(_) => 0,
            StreamSession::Count(s) => s.take_answered(),
        }
    }
}
