//! What a room tells the other nodes of its cluster, and hears from them:
//! the messages between the [`Hub`](super::Hub) and the bridge that carries
//! them over Redis (`crate::cluster`). Plain values, so the room stays a
//! state machine that never sees a socket, and tests drive it with them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::ClientId;

/// From the room to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToCluster {
    /// Is `name` free on every node? If so it is held for this node from
    /// now on. Answered with [`FromCluster::Claimed`].
    Claim { client: ClientId, name: Arc<str> },
    /// A member of this node joined (its name claimed, or decided locally
    /// while the link was down).
    Joined { name: Arc<str>, addr: Arc<str> },
    /// A member of this node said something to the room.
    Said { from: Arc<str>, text: Arc<str> },
    /// A member of this node left; its name is free again.
    Left { name: Arc<str> },
    /// A name claimed for a client that left before it was welcomed.
    Release { name: Arc<str> },
}

impl ToCluster {
    /// Whether the room may drop this message when the bridge cannot take
    /// it now (a backlog towards Redis). Only chat may be lost, as during
    /// an outage; names and membership must arrive, or rosters and claims
    /// would drift apart for good.
    pub fn may_drop(&self) -> bool {
        matches!(self, ToCluster::Said { .. })
    }
}

/// The answer to a [`ToCluster::Claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The name is now held for this node.
    Granted,
    /// Another node holds it.
    Taken { node: Arc<str> },
    /// Redis could not be asked (the link is down): the room decides on
    /// its own, and the name is claimed once the link is back.
    Undecided,
}

/// From the bridge to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromCluster {
    /// The link to Redis went down, or is up (again).
    Link { up: bool },
    /// The answer to a [`ToCluster::Claim`].
    Claimed {
        client: ClientId,
        name: Arc<str>,
        claim: Claim,
    },
    /// A member of another node joined.
    Joined {
        node: Arc<str>,
        name: Arc<str>,
        addr: Arc<str>,
    },
    /// A member of another node said something.
    Said {
        node: Arc<str>,
        from: Arc<str>,
        text: Arc<str>,
    },
    /// A member of another node left.
    Left { node: Arc<str>, name: Arc<str> },
    /// Every member of `node`, as it last said (its heartbeat): joins and
    /// leaves this node missed are made up from it. `quiet` when the node
    /// was never heard of before: its members were there before this node
    /// listened, and are added without a notice each.
    Members {
        node: Arc<str>,
        members: Vec<(Arc<str>, Arc<str>)>,
        quiet: bool,
    },
    /// `node` stopped, or was not heard from within the presence TTL: its
    /// members are gone.
    Gone { node: Arc<str> },
}

/// The bridge's end of the way up: a bounded channel in practice. Gives
/// the message back when it cannot take it now; never blocks.
pub trait Bridge: Send {
    fn offer(&mut self, msg: ToCluster) -> Result<(), ToCluster>;
}

/// The room's end of the way up. When the bridge is behind (Redis slower
/// than the room), chat is dropped and counted, and what must arrive
/// waits here, in order, until the bridge takes it.
pub struct Uplink {
    bridge: Box<dyn Bridge>,
    backlog: VecDeque<ToCluster>,
    dropped: u64,
}

impl Uplink {
    pub fn new(bridge: Box<dyn Bridge>) -> Uplink {
        Uplink {
            bridge,
            backlog: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Hands `msg` to the bridge, behind what waits already. Returns
    /// whether it was dropped.
    pub fn send(&mut self, msg: ToCluster) -> bool {
        self.flush();
        let msg = if self.backlog.is_empty() {
            match self.bridge.offer(msg) {
                Ok(()) => return false,
                Err(msg) => msg,
            }
        } else {
            msg
        };
        if msg.may_drop() {
            self.dropped += 1;
            true
        } else {
            self.backlog.push_back(msg);
            false
        }
    }

    /// Hands the bridge what waits, as much as it takes.
    pub fn flush(&mut self) {
        while let Some(msg) = self.backlog.pop_front() {
            if let Err(msg) = self.bridge.offer(msg) {
                self.backlog.push_front(msg);
                break;
            }
        }
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Messages waiting for the bridge.
    pub fn waiting(&self) -> usize {
        self.backlog.len()
    }
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("backlog", &self.backlog.len())
            .field("dropped", &self.dropped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bridge that takes `room` messages, then refuses until emptied.
    struct Slow {
        taken: std::sync::Arc<std::sync::Mutex<Vec<ToCluster>>>,
        room: usize,
    }

    impl Bridge for Slow {
        fn offer(&mut self, msg: ToCluster) -> Result<(), ToCluster> {
            let mut taken = self.taken.lock().unwrap();
            if taken.len() >= self.room {
                return Err(msg);
            }
            taken.push(msg);
            Ok(())
        }
    }

    fn said(n: u32) -> ToCluster {
        ToCluster::Said {
            from: "a".into(),
            text: n.to_string().into(),
        }
    }

    #[test]
    fn chat_is_dropped_and_membership_waits_in_order_when_the_bridge_is_behind() {
        let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut up = Uplink::new(Box::new(Slow {
            taken: taken.clone(),
            room: 2,
        }));
        let joined = ToCluster::Joined {
            name: "b".into(),
            addr: "x".into(),
        };
        let left = ToCluster::Left { name: "b".into() };
        assert!(!up.send(said(1)));
        assert!(!up.send(said(2)));
        // Full: chat is dropped, membership waits.
        assert!(up.send(said(3)));
        assert!(!up.send(joined.clone()));
        // Behind a waiting message, chat is dropped even if there were room:
        // it would overtake the join it follows.
        assert!(up.send(said(4)));
        assert!(!up.send(left.clone()));
        assert_eq!((up.dropped(), up.waiting()), (2, 2));
        // The bridge catches up: what waited goes first, in order.
        taken.lock().unwrap().clear();
        up.flush();
        assert_eq!(*taken.lock().unwrap(), [joined, left]);
        assert_eq!(up.waiting(), 0);
        taken.lock().unwrap().clear();
        assert!(!up.send(said(5)));
        assert_eq!(*taken.lock().unwrap(), [said(5)]);
    }
}
