//! What can go wrong in a client call, said with what was being done and to
//! whom, so a message alone ("connect 127.0.0.1:7: connection refused") tells
//! a user what to fix. [`ClientError::kind`] sorts errors into the few classes
//! that the C ABI's status codes and the CLI's exit codes distinguish.

use std::fmt;
use std::io;
use std::time::Duration;

/// The class of a [`ClientError`], stable for callers that map errors to
/// status or exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A socket operation failed (refused, reset, unreachable, ...).
    Io,
    /// The peer did not answer in time.
    Timeout,
    /// The peer closed the connection before a whole reply arrived.
    Closed,
    /// The peer answered with something that is not a valid reply.
    Protocol,
    /// The caller passed an argument that cannot work.
    Invalid,
    /// The thread's interrupt check ended the call before its timeout.
    Interrupted,
    /// TLS refused the connection (its certificate, the client's, or no
    /// common version), or a TLS file could not be used.
    Tls,
}

/// An error from one of the client calls.
#[derive(Debug)]
pub enum ClientError {
    /// A socket call failed; `context` says which and with whom.
    Io { context: String, source: io::Error },
    /// Nothing came back within `waited` (per try), after `tries` tries.
    Timeout {
        context: String,
        waited: Duration,
        tries: u32,
    },
    /// The peer closed the connection before a whole reply arrived.
    Closed { context: String },
    /// The peer sent something malformed.
    Protocol { context: String, detail: String },
    /// A bad argument, caught before anything was sent.
    Invalid { reason: String },
    /// The thread's interrupt check asked to give up while it waited.
    Interrupted { context: String },
    /// TLS refused the connection, or its files could not be used.
    Tls { context: String, reason: String },
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Io { .. } => ErrorKind::Io,
            ClientError::Timeout { .. } => ErrorKind::Timeout,
            ClientError::Closed { .. } => ErrorKind::Closed,
            ClientError::Protocol { .. } => ErrorKind::Protocol,
            ClientError::Invalid { .. } => ErrorKind::Invalid,
            ClientError::Interrupted { .. } => ErrorKind::Interrupted,
            ClientError::Tls { .. } => ErrorKind::Tls,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        ClientError::Invalid {
            reason: reason.into(),
        }
    }

    /// Wraps an I/O error from one blocking step. A socket timeout surfaces
    /// as `WouldBlock` or `TimedOut` depending on the platform; both become
    /// [`ClientError::Timeout`] so callers need not know that.
    pub fn from_io(context: String, source: io::Error, waited: Duration) -> Self {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                context: format!("{context}: timed out"),
                waited,
                tries: 1,
            },
            _ => ClientError::Io { context, source },
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { context, source } => {
                write!(f, "{context}: {}", describe_io_error(source))
            }
            ClientError::Timeout {
                context,
                waited,
                tries,
            } => {
                let waited = format_duration(*waited);
                if *tries > 1 {
                    write!(f, "{context} after {tries} tries of {waited}")
                } else {
                    write!(f, "{context} after {waited}")
                }
            }
            ClientError::Closed { context } => write!(
                f,
                "{context}: connection closed by the peer before a whole reply"
            ),
            ClientError::Protocol { context, detail } => write!(f, "{context}: {detail}"),
            ClientError::Invalid { reason } => write!(f, "invalid argument: {reason}"),
            ClientError::Interrupted { context } => write!(f, "{context}: interrupted"),
            ClientError::Tls { context, reason } => write!(f, "{context}: {reason}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// "Connection refused (os error 111)" reads as "connection refused": the
/// context already says where, and the errno number helps nobody.
fn describe_io_error(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Formats a duration the way a user types it: `1s`, `500ms`, `1.5s`, `250us`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        "0s".to_owned()
    } else if nanos.is_multiple_of(1_000_000_000) {
        format!("{}s", d.as_secs())
    } else if nanos >= 1_000_000_000 {
        let secs = format!("{:.3}", d.as_secs_f64());
        format!("{}s", secs.trim_end_matches('0').trim_end_matches('.'))
    } else if nanos.is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if nanos.is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{nanos}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_the_design_says() {
        let err = ClientError::Io {
            context: "connect 127.0.0.1:7".into(),
            source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
        };
        assert_eq!(err.to_string(), "connect 127.0.0.1:7: connection refused");
        assert_eq!(err.kind(), ErrorKind::Io);
    }

    #[test]
    fn timeouts_say_how_long_and_how_often() {
        let err = ClientError::Timeout {
            context: "no reply from 127.0.0.1:9".into(),
            waited: Duration::from_secs(1),
            tries: 3,
        };
        assert_eq!(
            err.to_string(),
            "no reply from 127.0.0.1:9 after 3 tries of 1s"
        );
        let err = ClientError::from_io(
            "read from 127.0.0.1:7".into(),
            io::Error::from(io::ErrorKind::WouldBlock),
            Duration::from_millis(200),
        );
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(
            err.to_string(),
            "read from 127.0.0.1:7: timed out after 200ms"
        );
    }

    #[test]
    fn durations_format_as_typed() {
        assert_eq!(format_duration(Duration::from_secs(5)), "5s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
