//! The contract between a room service (chat) and its runtime.
//!
//! A room service sees connections as ids and bytes, and answers with an
//! [`Outbox`] of sends: to one connection, or to every member of a group
//! (a group is what the service says it is: for chat, the named clients of
//! one dialect, so a broadcast is encoded once per dialect and the runtime
//! only copies bytes). The runtime never looks inside the bytes.

use std::ops::Range;

/// A connection, as the runtime numbers them.
pub type ConnId = u64;

/// Why a connection is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The peer closed the connection.
    Closed,
    /// Reading or writing failed.
    Failed,
    /// Its outbound queue overflowed: it does not read fast enough.
    SlowReader,
    /// Nothing was heard from it for `idle_timeout`.
    Idle,
}

/// What a room service wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// Bytes for one connection.
    To(ConnId, Range<usize>),
    /// Bytes for every member of `group` except `except`.
    Group {
        group: usize,
        except: Option<ConnId>,
        bytes: Range<usize>,
    },
    /// From now on the connection is a member of `group`.
    Join(ConnId, usize),
    /// Flush what is queued for the connection, then close it.
    Close(ConnId),
}

/// Sends and the bytes they refer to, filled by the service and drained by
/// the runtime; reused, so a steady room allocates nothing per message.
#[derive(Debug, Default)]
pub struct Outbox {
    pub bytes: Vec<u8>,
    pub sends: Vec<Send>,
}

impl Outbox {
    /// Encodes into the outbox with `encode` and sends the result to `to`.
    pub fn to(&mut self, to: ConnId, encode: impl FnOnce(&mut Vec<u8>)) {
        let range = self.encode(encode);
        self.sends.push(Send::To(to, range));
    }

    /// Encodes once and sends the result to every member of `group` but `except`.
    pub fn group(
        &mut self,
        group: usize,
        except: Option<ConnId>,
        encode: impl FnOnce(&mut Vec<u8>),
    ) {
        let bytes = self.encode(encode);
        self.sends.push(Send::Group {
            group,
            except,
            bytes,
        });
    }

    pub fn join(&mut self, conn: ConnId, group: usize) {
        self.sends.push(Send::Join(conn, group));
    }

    pub fn close(&mut self, conn: ConnId) {
        self.sends.push(Send::Close(conn));
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.sends.clear();
    }

    fn encode(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Range<usize> {
        let start = self.bytes.len();
        encode(&mut self.bytes);
        start..self.bytes.len()
    }
}

/// A service whose connections share state (a chat room).
pub trait RoomService: std::marker::Send + 'static {
    /// What other threads hand the room through its runtime's inbox (for
    /// chat: events from elsewhere, to tell the room's members).
    type Remote: std::marker::Send + 'static;

    /// An event handed in from another thread.
    fn remote(&mut self, event: Self::Remote, out: &mut Outbox);
    /// A new connection on listener number `listener` (its index in the
    /// server's `listen` list), from `peer` (for display only).
    fn connected(&mut self, conn: ConnId, listener: usize, peer: &str, out: &mut Outbox);
    /// Bytes read from a connection.
    fn received(&mut self, conn: ConnId, bytes: &[u8], out: &mut Outbox);
    /// A connection is gone; the runtime will send it nothing more. Called
    /// exactly once for every connection, however it ended (after a
    /// [`Send::Close`] too).
    fn disconnected(&mut self, conn: ConnId, why: Disconnect, out: &mut Outbox);
    /// The server is stopping: last words to everyone, before the grace period.
    fn stopping(&mut self, out: &mut Outbox);
    /// Nothing was heard from a connection for `idle_timeout`. By default it
    /// is closed; a service may tell it why first (and must then close it).
    fn idle(&mut self, conn: ConnId, out: &mut Outbox) {
        out.close(conn);
    }
    /// A connection joined no group within `login_timeout` (for chat: it
    /// gave no name). By default it is closed; a service may tell it why
    /// first (and must then close it).
    fn login_expired(&mut self, conn: ConnId, out: &mut Outbox) {
        out.close(conn);
    }
}
