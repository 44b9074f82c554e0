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

/// The bridge's end of the way up: a bounded channel in practice. Takes
/// what one input of the room caused, at once; gives it back when it cannot
/// take it now; never blocks.
pub trait Bridge: Send {
    fn offer(&mut self, msgs: Vec<ToCluster>) -> Result<(), Vec<ToCluster>>;
}

/// The room's end of the way up. What one input of the room caused goes
/// up as one batch (a burst of messages read at once is one hand-over,
/// one Redis message). When the bridge is behind (Redis slower than the
/// room), chat is dropped and counted, and what must arrive waits here, in
/// order, until the bridge takes it.
pub struct Uplink {
    bridge: Box<dyn Bridge>,
    /// Filled during one input of the room, sent at its end.
    batch: Vec<ToCluster>,
    backlog: VecDeque<Vec<ToCluster>>,
    dropped: u64,
}

impl Uplink {
    pub fn new(bridge: Box<dyn Bridge>) -> Uplink {
        Uplink {
            bridge,
            batch: Vec::new(),
            backlog: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Adds `msg` to the batch that [`Uplink::send`] hands over.
    pub fn push(&mut self, msg: ToCluster) {
        self.batch.push(msg);
    }

    /// Hands the bridge the batch, behind what waits already. Returns how
    /// many of its messages were dropped.
    pub fn send(&mut self) -> u64 {
        self.flush();
        if self.batch.is_empty() {
            return 0;
        }
        let batch = std::mem::take(&mut self.batch);
        let mut batch = if self.backlog.is_empty() {
            match self.bridge.offer(batch) {
                Ok(()) => return 0,
                Err(batch) => batch,
            }
        } else {
            batch
        };
        let before = batch.len();
        batch.retain(|m| !m.may_drop());
        let dropped = (before - batch.len()) as u64;
        self.dropped += dropped;
        if !batch.is_empty() {
            self.backlog.push_back(batch);
        }
        dropped
    }

    /// Hands the bridge what waits, as much as it takes.
    pub fn flush(&mut self) {
        while let Some(batch) = self.backlog.pop_front() {
            if let Err(batch) = self.bridge.offer(batch) {
                self.backlog.push_front(batch);
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
        self.backlog.iter().map(Vec::len).sum()
    }
}

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("backlog", &self.waiting())
            .field("dropped", &self.dropped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bridge that takes `room` batches, then refuses until emptied.
    struct Slow {
        taken: std::sync::Arc<std::sync::Mutex<Vec<Vec<ToCluster>>>>,
        room: usize,
    }

    impl Bridge for Slow {
        fn offer(&mut self, msgs: Vec<ToCluster>) -> Result<(), Vec<ToCluster>> {
            let mut taken = self.taken.lock().unwrap();
            if taken.len() >= self.room {
                return Err(msgs);
            }
            taken.push(msgs);
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
    fn what_one_input_caused_goes_up_at_once_and_chat_is_dropped_when_the_bridge_is_behind() {
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
        // Nothing to send, nothing sent.
        assert_eq!(up.send(), 0);
        up.push(said(1));
        up.push(said(2));
        assert_eq!(up.send(), 0);
        up.push(said(3));
        assert_eq!(up.send(), 0);
        assert_eq!(
            *taken.lock().unwrap(),
            [vec![said(1), said(2)], vec![said(3)]]
        );
        // Full: chat is dropped, membership waits.
        up.push(said(4));
        up.push(joined.clone());
        assert_eq!(up.send(), 1);
        // Behind a waiting batch, chat is dropped even if there were room:
        // it would overtake the join it follows.
        up.push(said(5));
        up.push(left.clone());
        assert_eq!(up.send(), 1);
        assert_eq!((up.dropped(), up.waiting()), (2, 2));
        // The bridge catches up: what waited goes first, in order.
        taken.lock().unwrap().clear();
        up.flush();
        assert_eq!(*taken.lock().unwrap(), [vec![joined], vec![left]]);
        assert_eq!(up.waiting(), 0);
        taken.lock().unwrap().clear();
        up.push(said(6));
        assert_eq!(up.send(), 0);
        assert_eq!(*taken.lock().unwrap(), [vec![said(6)]]);
    }
}
