//! End-to-end tests of the chat server: one room, three dialects (line,
//! header, bincode), served on loopback port 0 and driven by real sockets.
//!
//! Every blocking socket operation has a timeout (`common::IO_TIMEOUT`), so
//! a broken server fails a test instead of hanging the suite. The clients
//! are in `chat/client.rs`; they parse what the server sends independently
//! of the server's encoders.

#[path = "common/mod.rs"]
mod common;

#[path = "chat/client.rs"]
mod client;

#[path = "chat/bad_input.rs"]
mod bad_input;
#[path = "chat/dialects.rs"]
mod dialects;
#[path = "chat/lifecycle.rs"]
mod lifecycle;
#[path = "chat/load.rs"]
mod load;
#[path = "chat/workers.rs"]
mod workers;
