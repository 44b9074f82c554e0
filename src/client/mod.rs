//! Clients for netlab's services (echo, count, chat), blocking and self-contained: each call opens
//! its own socket, bounds every blocking step by the caller's timeout, and
//! returns either the answer or a [`ClientError`] that says what failed and
//! where.
//!
//! ```no_run
//! use std::time::Duration;
//! use netlab::client::{self, CountFraming};
//!
//! let addr = "127.0.0.1:7007".parse().unwrap();
//! let echoed = client::tcp_echo(addr, b"hello", Duration::from_secs(2))?;
//! assert_eq!(echoed, b"hello");
//! let n = client::count(addr, b"hello", CountFraming::Line, Duration::from_secs(2))?;
//! # Ok::<(), client::ClientError>(())
//! ```

pub mod chat;
mod count;
mod echo;
mod error;
pub mod interrupt;
mod link;
mod tcp;
#[cfg(test)]
mod test_servers;
mod tls;

use std::time::Duration;

pub use chat::{ChatClient, ChatEvent, ChatReceiver, ChatSender, Dialect};
pub use count::{CountFraming, count, count_with};
pub use echo::{
    ECHO_REPLY_MARGIN, echo_reply_limit, local_address_for, tcp_echo, tcp_echo_with,
    tcp_echo_with_limit, udp_echo,
};
pub use error::{ClientError, ErrorKind, format_duration};
pub use tls::TlsClient;

/// How a client call connects: how long each step may take, and TLS.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long each blocking step (connect, the handshake, every read and
    /// write) may take.
    pub timeout: Duration,
    /// TLS, when the server's listener has it.
    pub tls: Option<TlsClient>,
}

impl ClientOptions {
    /// Plain TCP, each step within `timeout`.
    pub fn new(timeout: Duration) -> ClientOptions {
        ClientOptions { timeout, tls: None }
    }

    /// TLS with `tls`'s settings.
    pub fn with_tls(mut self, tls: TlsClient) -> ClientOptions {
        self.tls = Some(tls);
        self
    }
}
