//! What a node knows of the others from what it hears on the channel:
//! which incarnation of each is alive, the last event number of each (to
//! count what was missed), and when each was last heard (a node silent
//! for too long is gone). Pure: the time is given.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::Envelope;

#[derive(Debug)]
struct Peer {
    incarnation: u64,
    seq: u64,
    heard: Instant,
}

/// What an envelope was, to its receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// This node's own.
    Own,
    /// Another node's.
    Peer {
        node: Arc<str>,
        /// The first heard of this incarnation (not one found silent
        /// before and heard again).
        first: bool,
        /// It replaced another incarnation of the same node name (which
        /// restarted): the members of the old one are gone.
        replaced: bool,
        /// Events of this node that never arrived before this one.
        missed: u64,
    },
    /// An event numbered below one heard already: ignored.
    Stale,
}

#[derive(Debug)]
pub struct Peers {
    node: Arc<str>,
    incarnation: u64,
    /// A node not heard from for this long is gone.
    silence: Duration,
    peers: HashMap<Arc<str>, Peer>,
    /// The incarnation and last event number of each node last found
    /// silent: if it speaks again, it is not new, what it has is news, and
    /// what it said meanwhile was missed.
    silenced: HashMap<Arc<str>, (u64, u64)>,
}

impl Peers {
    pub fn new(node: Arc<str>, incarnation: u64, silence: Duration) -> Peers {
        Peers {
            node,
            incarnation,
            silence,
            peers: HashMap::new(),
            silenced: HashMap::new(),
        }
    }

    pub fn heard(&mut self, envelope: &Envelope<'_>, now: Instant) -> Heard {
        if *envelope.node == *self.node && envelope.incarnation == self.incarnation {
            return Heard::Own;
        }
        let events = envelope.body.events();
        // The number of the last event it carries (a heartbeat's own).
        let last = envelope.seq + events.saturating_sub(1);
        let known = self
            .peers
            .get_key_value(envelope.node)
            .filter(|(_, p)| p.incarnation == envelope.incarnation)
            .map(|(n, _)| n.clone());
        if let Some(node) = known
            && let Some(peer) = self.peers.get_mut(&node)
        {
            let missed = if events > 0 {
                if last <= peer.seq {
                    return Heard::Stale;
                }
                envelope.seq.saturating_sub(peer.seq + 1)
            } else {
                envelope.seq.saturating_sub(peer.seq)
            };
            peer.seq = peer.seq.max(last);
            peer.heard = now;
            return Heard::Peer {
                node,
                first: false,
                replaced: false,
                missed,
            };
        }
        // New here, or a new incarnation: what came before is not ours to
        // count.
        let node: Arc<str> = Arc::from(envelope.node);
        let replaced = self
            .peers
            .insert(
                node.clone(),
                Peer {
                    incarnation: envelope.incarnation,
                    seq: last,
                    heard: now,
                },
            )
            .is_some();
        let (first, missed) = match self.silenced.remove(&node) {
            Some((incarnation, seq)) if incarnation == envelope.incarnation => {
                let skipped = envelope.seq.saturating_sub(seq);
                let missed = if events > 0 {
                    skipped.saturating_sub(1)
                } else {
                    skipped
                };
                (false, missed)
            }
            _ => (true, 0),
        };
        Heard::Peer {
            node,
            first,
            replaced,
            missed,
        }
    }

    /// The node said it is stopping.
    pub fn forget(&mut self, node: &str) {
        self.peers.remove(node);
    }

    /// Nodes not heard from within the silence, forgotten.
    pub fn silent(&mut self, now: Instant) -> Vec<Arc<str>> {
        let mut gone: Vec<Arc<str>> = self
            .peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.heard) >= self.silence)
            .map(|(n, _)| n.clone())
            .collect();
        gone.sort_unstable();
        for node in &gone {
            if let Some(peer) = self.peers.remove(node) {
                self.silenced
                    .insert(node.clone(), (peer.incarnation, peer.seq));
            }
        }
        gone
    }

    /// After this node could not listen for a while: every node known
    /// gets a whole silence from now to be heard again.
    pub fn restart_clocks(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            peer.heard = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{Body, Event};
    use super::*;

    fn env(node: &str, incarnation: u64, seq: u64, event: bool) -> Envelope<'_> {
        events(node, incarnation, seq, usize::from(event))
    }

    /// `n` events numbered from `seq`; a heartbeat if none.
    fn events(node: &str, incarnation: u64, seq: u64, n: usize) -> Envelope<'_> {
        Envelope {
            node,
            incarnation,
            seq,
            body: if n > 0 {
                Body::Events(vec![
                    Event::Said {
                        from: "x",
                        text: "y"
                    };
                    n
                ])
            } else {
                Body::Heartbeat { members: vec![] }
            },
        }
    }

    fn peer(node: &str, first: bool, replaced: bool, missed: u64) -> Heard {
        Heard::Peer {
            node: node.into(),
            first,
            replaced,
            missed,
        }
    }

    #[test]
    fn own_messages_are_known_and_gaps_are_counted() {
        let t = Instant::now();
        let mut p = Peers::new("a".into(), 7, Duration::from_secs(3));
        assert_eq!(p.heard(&env("a", 7, 1, true), t), Heard::Own);
        // Joined late: what b sent before is not missed.
        assert_eq!(
            p.heard(&env("b", 1, 40, true), t),
            peer("b", true, false, 0)
        );
        assert_eq!(
            p.heard(&env("b", 1, 41, true), t),
            peer("b", false, false, 0)
        );
        assert_eq!(
            p.heard(&env("b", 1, 45, true), t),
            peer("b", false, false, 3)
        );
        assert_eq!(p.heard(&env("b", 1, 45, true), t), Heard::Stale);
        // A heartbeat says how far b got: the last two events were lost.
        assert_eq!(
            p.heard(&env("b", 1, 47, false), t),
            peer("b", false, false, 2)
        );
        assert_eq!(
            p.heard(&env("b", 1, 47, false), t),
            peer("b", false, false, 0)
        );
        assert_eq!(
            p.heard(&env("b", 1, 48, true), t),
            peer("b", false, false, 0)
        );
        // Several events in one message: numbered from its seq.
        assert_eq!(
            p.heard(&events("b", 1, 49, 3), t),
            peer("b", false, false, 0)
        );
        assert_eq!(p.heard(&events("b", 1, 49, 3), t), Heard::Stale);
        assert_eq!(
            p.heard(&events("b", 1, 54, 2), t),
            peer("b", false, false, 2)
        );
        assert_eq!(
            p.heard(&env("b", 1, 55, false), t),
            peer("b", false, false, 0)
        );
        // The same node name from another process: a restart.
        assert_eq!(p.heard(&env("b", 2, 1, true), t), peer("b", true, true, 0));
        // And another process with this node's name is not this node.
        assert_eq!(p.heard(&env("a", 8, 1, true), t), peer("a", true, false, 0));
    }

    #[test]
    fn silent_nodes_are_gone_and_a_restart_of_listening_gives_time() {
        let t = Instant::now();
        let s = Duration::from_secs(3);
        let mut p = Peers::new("a".into(), 7, s);
        p.heard(&env("b", 1, 1, true), t);
        p.heard(&env("c", 1, 1, true), t + Duration::from_secs(2));
        assert!(p.silent(t + Duration::from_secs(2)).is_empty());
        assert_eq!(p.silent(t + s), [Arc::<str>::from("b")]);
        // Heard again, it is back, not new: its members are news, and
        // what it said meanwhile was missed.
        assert_eq!(
            p.heard(&env("b", 1, 5, true), t + s),
            peer("b", false, false, 3)
        );
        // This node could not listen for a while: nobody is blamed for it.
        p.restart_clocks(t + Duration::from_secs(10));
        assert!(p.silent(t + Duration::from_secs(12)).is_empty());
        let mut gone = p.silent(t + Duration::from_secs(13));
        gone.sort();
        assert_eq!(gone, [Arc::<str>::from("b"), Arc::from("c")]);
        p.heard(&env("d", 1, 1, true), t);
        p.forget("d");
        assert!(p.silent(t + Duration::from_secs(60)).is_empty());
    }
}
