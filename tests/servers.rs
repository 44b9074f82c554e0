//! End-to-end tests of the servers: every valid (service, model, transport)
//! combination served on loopback port 0 and driven by real sockets.
//!
//! Every blocking socket operation has a timeout (see `common::IO_TIMEOUT`),
//! so a broken server fails a test instead of hanging the suite. Tests that
//! use random data print their seed; `NETLAB_TEST_SEED=<seed>` replays one.

#[path = "common/mod.rs"]
mod common;

#[path = "servers/addresses.rs"]
mod addresses;
#[path = "servers/fork.rs"]
mod fork;
#[path = "servers/stream.rs"]
mod stream;
#[path = "servers/udp.rs"]
mod udp;
