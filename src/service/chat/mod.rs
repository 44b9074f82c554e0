//! Chat: one room shared by every listener of a server, whatever dialect
//! each client speaks.
//!
//! The [`Hub`] is the room as a pure state machine: the runtime tells it what
//! happened (a connection, a name, a message, a departure) and it answers
//! with [`Output`]s (an event for one client, an event for every named client,
//! a connection to close). It knows nothing of sockets or of dialects; the
//! dialects in `crate::codec::chat` turn client bytes into [`ClientMsg`]s and
//! [`Event`]s into bytes.

pub mod hub;
pub mod message;
pub mod name;
pub mod room;

pub use hub::{ClientId, Hub, HubLimits, LeaveReason, Output};
pub use message::{ClientMsg, ErrorCode, Event};
pub use name::{MAX_NAME_CHARS, NameError, validate_name};
pub use room::ChatRoom;
