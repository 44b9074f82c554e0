//! Chat: one room shared by every listener of a server, whatever dialect
//! each client speaks.
//!
//! The [`Hub`] is the room as a pure state machine: the runtime tells it what
//! happened (a connection, a name, a message, a departure) and it answers
//! with [`Output`]s (an event for one client, an event for every named client,
//! a connection to close). It knows nothing of sockets or of dialects; the
//! dialects in `crate::codec::chat` turn client bytes into [`ClientMsg`](crate::chat::ClientMsg)s and
//! [`Event`](crate::chat::Event)s into bytes.

pub mod cluster;
pub mod hub;
pub mod room;

pub use cluster::{Bridge, Claim, FromCluster, ToCluster, Uplink};
pub use hub::{ClientId, Hub, HubLimits, LeaveReason, Output};
pub use room::{ChatRoom, MessageRate};
