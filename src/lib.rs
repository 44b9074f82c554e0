//! netlab: the classic socket-programming lab's servers and clients as a
//! library. Services are pure state machines (`service`), framing is pure
//! (`codec`), runtimes move bytes between sockets and services (`server`),
//! and `config` reads the TOML that the daemon and the C ABI share.

pub mod chat;
pub mod client;
pub mod cluster;
pub mod codec;
pub mod config;
mod deadline;
pub mod ffi;
pub mod host;
pub mod metrics;
pub mod rate;
pub mod server;
pub mod service;
pub mod tls;
