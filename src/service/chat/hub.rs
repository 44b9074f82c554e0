//! The room: who is connected, who has which name, and what each event
//! means for everyone else.
//!
//! # Contract with the runtime
//!
//! - Every input method appends its outputs to the caller's `out`, in the
//!   order they must be applied. Nothing is cleared: the caller empties `out`
//!   once it has delivered it, and reuses its allocation.
//! - [`Output::Broadcast`] goes to every client that is *named* once the call
//!   has returned, minus `except`. The runtime either asks
//!   [`Hub::named_clients`] / [`Hub::is_named`], or tracks it itself: a client
//!   becomes named exactly when it is sent [`Event::Welcome`], and stops being
//!   named when it is closed or the runtime calls [`Hub::leave`]. Encode a
//!   broadcast once per dialect and share the bytes; never copy it per
//!   recipient.
//! - [`Output::Close`] means: send what is queued for this client, then close
//!   it. The hub has already forgotten it; calling [`Hub::leave`] for it
//!   again is harmless and does nothing. When the runtime closes a connection
//!   on its own (peer gone, slow reader, timeout, undecodable frame) it calls
//!   [`Hub::leave`] with the reason, and gets no `Close` back.
//! - Ids the hub does not know (never connected, or already gone) are
//!   ignored by every input.
//!
//! # In a cluster
//!
//! A hub made with [`Hub::with_cluster`] is one node of a room that spans
//! processes. It sends [`Output::Cluster`] messages for the bridge to carry
//! and takes the bridge's news through [`Hub::remote`]. A name must be free
//! on every node: [`Hub::hello`] leaves the client pending, asks with a
//! [`ToCluster::Claim`], and [`Hub::remote`] welcomes or refuses it when the
//! answer comes ([`Hub::is_pending`] tells the runtime to hold the client's
//! later messages until then). While the link is down, names are decided
//! here, and the bridge claims them once it is back. Rosters and `online`
//! count every node's members; broadcasts reach this node's.

use std::collections::HashMap;
use std::sync::Arc;

use super::cluster::{Claim, FromCluster, ToCluster};
use crate::chat::{ClientMsg, ErrorCode, Event, validate_name};

/// A connection, as the runtime numbers it. Unique while it is connected.
pub type ClientId = u64;

/// The room's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubLimits {
    /// The most named clients the room holds; a name beyond it gets
    /// [`ErrorCode::RoomFull`]. Clients still choosing a name are bounded by
    /// the server's `max_connections`, not by this.
    pub max_clients: usize,
}

/// Why a client left, as the runtime saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// The client asked to leave (`/quit`, `Bye`).
    Quit,
    /// The peer closed its connection or it failed.
    Disconnected,
    /// Its outbound queue overflowed: a slow reader, dropped so that it does
    /// not stall the room.
    Dropped,
    /// Idle for longer than the server allows.
    TimedOut,
    /// It sent something undecodable.
    Error,
}

impl LeaveReason {
    /// A short name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Quit => "quit",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Dropped => "dropped (slow reader)",
            LeaveReason::TimedOut => "timed out",
            LeaveReason::Error => "protocol error",
        }
    }
}

/// What the runtime must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `event` to this one client.
    To(ClientId, Event),
    /// Send `event` to every named client but `except`.
    Broadcast {
        except: Option<ClientId>,
        event: Event,
    },
    /// Flush what is queued for this client, then close its connection.
    Close(ClientId),
    /// For the other nodes of the cluster (a clustered hub only).
    Cluster(ToCluster),
}

#[derive(Debug)]
struct Client {
    addr: Arc<str>,
    name: Option<Arc<str>>,
    /// The name asked for, while the cluster is asked whether it is free.
    pending: Option<Arc<str>>,
}

/// The link to the other nodes, as the hub last heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not heard of yet: names are claimed (the bridge answers once it
    /// knows), and nobody has been told anything.
    Starting,
    Up,
    Down,
}

/// What a clustered hub knows of the other nodes.
#[derive(Debug)]
struct Cluster {
    link: Link,
    /// Names asked for by pending clients: held here meanwhile, so that two
    /// clients of this node do not both get one.
    pending: HashMap<Arc<str>, ClientId>,
    /// Each other node's members: name to address.
    nodes: HashMap<Arc<str>, HashMap<Arc<str>, Arc<str>>>,
    /// Members of every other node, counted.
    remote: usize,
}

impl Cluster {
    fn has_remote(&self, name: &str) -> bool {
        self.nodes.values().any(|m| m.contains_key(name))
    }
}

/// What clients are told when the link to the other nodes goes down, and
/// when it is back.
pub const LINK_DOWN: &str = "cluster link down: chat continues on this node only";
pub const LINK_UP: &str = "cluster link back: chat reaches every node again";

/// One chat room.
#[derive(Debug)]
pub struct Hub {
    limits: HubLimits,
    clients: HashMap<ClientId, Client>,
    /// Named clients by name: the uniqueness check, and the room's members.
    names: HashMap<Arc<str>, ClientId>,
    cluster: Option<Cluster>,
}

impl Hub {
    pub fn new(limits: HubLimits) -> Hub {
        Hub {
            limits,
            clients: HashMap::new(),
            names: HashMap::new(),
            cluster: None,
        }
    }

    /// This hub as one node of a cluster: see the module's docs.
    pub fn with_cluster(mut self) -> Hub {
        self.cluster = Some(Cluster {
            link: Link::Starting,
            pending: HashMap::new(),
            nodes: HashMap::new(),
            remote: 0,
        });
        self
    }

    pub fn is_clustered(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn limits(&self) -> HubLimits {
        self.limits
    }

    /// A connection was accepted from `addr` (shown to others when it joins).
    /// It receives nothing until it has a name. A second `connect` for an id
    /// still connected changes nothing.
    pub fn connect(&mut self, id: ClientId, addr: impl Into<Arc<str>>) {
        self.clients.entry(id).or_insert_with(|| Client {
            addr: addr.into(),
            name: None,
            pending: None,
        });
    }

    /// Applies a decoded client message.
    pub fn handle(&mut self, id: ClientId, msg: ClientMsg<'_>, out: &mut Vec<Output>) {
        match msg {
            ClientMsg::Hello { name } => {
                self.hello(id, name, out);
            }
            ClientMsg::Say { text } => self.say(id, text, out),
            ClientMsg::Who => self.who(id, out),
            ClientMsg::Bye => self.leave(id, LeaveReason::Quit, out),
        }
    }

    /// The client chooses its name. Accepted: `Welcome` to it, `Joined` to
    /// the others, and `true`. Refused because the room is full, the name is
    /// invalid or taken: an error to it, then `Close`. A second name for a
    /// named client is refused with [`ErrorCode::AlreadyNamed`] and the client
    /// stays. In a cluster whose link is not down, a name free here is
    /// claimed first: the client is pending ([`Hub::is_pending`]) until
    /// [`FromCluster::Claimed`] answers, and this returns `false`.
    pub fn hello(&mut self, id: ClientId, name: &str, out: &mut Vec<Output>) -> bool {
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        if client.name.is_some() || client.pending.is_some() {
            out.push(Output::To(
                id,
                Event::error(ErrorCode::AlreadyNamed, "you already have a name"),
            ));
            return false;
        }
        let pending = self.cluster.as_ref().map_or(0, |c| c.pending.len());
        let refusal = if self.names.len() + pending >= self.limits.max_clients {
            Some((ErrorCode::RoomFull, "the room is full"))
        } else if let Err(e) = validate_name(name) {
            Some((ErrorCode::NameInvalid, e.reason()))
        } else if self.is_taken(name) {
            Some((ErrorCode::NameTaken, "name is taken"))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            self.refuse(id, code, reason, out);
            return false;
        }
        let name: Arc<str> = Arc::from(name);
        if let Some(cluster) = &mut self.cluster
            && cluster.link != Link::Down
        {
            cluster.pending.insert(name.clone(), id);
            if let Some(client) = self.clients.get_mut(&id) {
                client.pending = Some(name.clone());
            }
            out.push(Output::Cluster(ToCluster::Claim { client: id, name }));
            return false;
        }
        self.welcome(id, name, out);
        true
    }

    /// Whether `name` is held by a member of any node, or asked for by a
    /// pending client of this one.
    fn is_taken(&self, name: &str) -> bool {
        self.names.contains_key(name)
            || self
                .cluster
                .as_ref()
                .is_some_and(|c| c.pending.contains_key(name) || c.has_remote(name))
    }

    /// An error to the client, then `Close`; the hub forgets it.
    fn refuse(
        &mut self,
        id: ClientId,
        code: ErrorCode,
        reason: &'static str,
        out: &mut Vec<Output>,
    ) {
        self.clients.remove(&id);
        out.push(Output::To(id, Event::error(code, reason)));
        out.push(Output::Close(id));
    }

    /// The name is the client's: it is welcomed, and the others told.
    fn welcome(&mut self, id: ClientId, name: Arc<str>, out: &mut Vec<Output>) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        client.name = Some(name.clone());
        let addr = client.addr.clone();
        self.names.insert(name.clone(), id);
        let online = self.online();
        out.push(Output::To(
            id,
            Event::Welcome {
                id,
                name: name.clone(),
                addr: addr.clone(),
                online,
            },
        ));
        if self.names.len() > 1 {
            out.push(Output::Broadcast {
                except: Some(id),
                event: Event::Joined {
                    name: name.clone(),
                    addr: addr.clone(),
                    online,
                    node: None,
                },
            });
        }
        if let Some(cluster) = &self.cluster {
            if cluster.link == Link::Down {
                // Told once, like those who were here when it went down.
                out.push(Output::To(
                    id,
                    Event::Notice {
                        text: LINK_DOWN.into(),
                    },
                ));
            }
            out.push(Output::Cluster(ToCluster::Joined { name, addr }));
        }
    }

    /// A message for every other named client. An empty message says
    /// nothing and goes nowhere; one from a client without a name is a
    /// protocol error.
    pub fn say(&mut self, id: ClientId, text: &str, out: &mut Vec<Output>) {
        let Some(from) = self.named_or_refuse(id, out) else {
            return;
        };
        if text.is_empty() {
            return;
        }
        let text: Arc<str> = Arc::from(text);
        // The other nodes are told whether or not anyone is known to be
        // there: a member may be joining there right now.
        if self.cluster.is_some() {
            out.push(Output::Cluster(ToCluster::Said {
                from: from.clone(),
                text: text.clone(),
            }));
        }
        // Alone on this node: nothing to encode.
        if self.names.len() < 2 {
            return;
        }
        out.push(Output::Broadcast {
            except: Some(id),
            event: Event::Message { from, text },
        });
    }

    /// The roster, sorted by name, to the client that asked.
    pub fn who(&mut self, id: ClientId, out: &mut Vec<Output>) {
        if self.named_or_refuse(id, out).is_none() {
            return;
        }
        let mut names: Vec<Arc<str>> = self.names.keys().cloned().collect();
        if let Some(cluster) = &self.cluster {
            names.extend(cluster.nodes.values().flat_map(|m| m.keys().cloned()));
        }
        names.sort_unstable();
        out.push(Output::To(id, Event::Roster { names }));
    }

    /// The client is gone, or going: the others are told if it had a name.
    /// [`LeaveReason::Quit`] also asks the runtime to close it; for the other
    /// reasons the runtime is closing it already.
    pub fn leave(&mut self, id: ClientId, reason: LeaveReason, out: &mut Vec<Output>) {
        let Some(client) = self.clients.remove(&id) else {
            return;
        };
        if let Some(name) = client.pending
            && let Some(cluster) = &mut self.cluster
        {
            cluster.pending.remove(&name);
            // Its claim may be granted already, or about to be.
            out.push(Output::Cluster(ToCluster::Release { name }));
        }
        if let Some(name) = client.name {
            self.names.remove(&name);
            if !self.names.is_empty() {
                let online = self.online();
                out.push(Output::Broadcast {
                    except: Some(id),
                    event: Event::Left {
                        name: name.clone(),
                        online,
                        node: None,
                    },
                });
            }
            if self.cluster.is_some() {
                out.push(Output::Cluster(ToCluster::Left { name }));
            }
        }
        if reason == LeaveReason::Quit {
            out.push(Output::Close(id));
        }
    }

    /// The server is going away: every named client is told, every client is
    /// closed, and the room is empty. The notice goes out one copy per client
    /// because the room is empty once this returns; it happens once.
    pub fn shutdown(&mut self, out: &mut Vec<Output>) {
        let notice = Event::error(ErrorCode::ServerShutdown, "the server is shutting down");
        let mut ids: Vec<(ClientId, bool)> = self
            .clients
            .iter()
            .map(|(&id, c)| (id, c.name.is_some()))
            .collect();
        ids.sort_unstable();
        for &(id, named) in &ids {
            if named {
                out.push(Output::To(id, notice.clone()));
            }
        }
        out.extend(ids.iter().map(|&(id, _)| Output::Close(id)));
        self.clients.clear();
        self.names.clear();
        if let Some(cluster) = &mut self.cluster {
            // The bridge, stopping with the server, releases this node's
            // names and tells the others that it is gone.
            cluster.pending.clear();
        }
    }

    /// News from the other nodes of the cluster (see [`FromCluster`]).
    /// Ignored by a hub that is not clustered.
    pub fn remote(&mut self, news: FromCluster, out: &mut Vec<Output>) {
        if self.cluster.is_none() {
            return;
        }
        match news {
            FromCluster::Link { up } => self.link(up, out),
            FromCluster::Claimed {
                client,
                name,
                claim,
            } => self.claimed(client, &name, claim, out),
            FromCluster::Joined { node, name, addr } => {
                self.remote_joined(&node, name, addr, true, out);
            }
            FromCluster::Said { from, text, .. } => {
                if !self.names.is_empty() {
                    out.push(Output::Broadcast {
                        except: None,
                        event: Event::Message { from, text },
                    });
                }
            }
            FromCluster::Left { node, name } => self.remote_left(&node, &name, out),
            FromCluster::Members {
                node,
                members,
                quiet,
            } => self.remote_members(&node, members, quiet, out),
            FromCluster::Gone { node } => {
                let mut names: Vec<Arc<str>> = self
                    .cluster
                    .as_ref()
                    .and_then(|c| c.nodes.get(&node))
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                names.sort_unstable();
                for name in names {
                    self.remote_left(&node, &name, out);
                }
                if let Some(cluster) = &mut self.cluster {
                    cluster.nodes.remove(&node);
                }
            }
        }
    }

    /// The link went down or came back: members are told once each way.
    fn link(&mut self, up: bool, out: &mut Vec<Output>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let (now, text) = if up {
            (Link::Up, LINK_UP)
        } else {
            (Link::Down, LINK_DOWN)
        };
        let was = std::mem::replace(&mut cluster.link, now);
        // Starting -> up is how every start goes: nothing to tell.
        let tell = was != now && !(was == Link::Starting && up);
        if tell && !self.names.is_empty() {
            out.push(Output::Broadcast {
                except: None,
                event: Event::Notice { text: text.into() },
            });
        }
    }

    /// The cluster's answer for a pending client: welcomed or refused. An
    /// answer for a client gone since is dropped (its name was released
    /// when it left).
    fn claimed(&mut self, id: ClientId, name: &Arc<str>, claim: Claim, out: &mut Vec<Output>) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if client.pending.as_ref() != Some(name) {
            return;
        }
        client.pending = None;
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.pending.remove(name);
        let taken = match claim {
            Claim::Taken { .. } => true,
            // Decided here: a member of another node may have it by now.
            Claim::Undecided => cluster.has_remote(name),
            Claim::Granted => false,
        };
        if taken {
            self.refuse(id, ErrorCode::NameTaken, "name is taken", out);
        } else {
            self.welcome(id, name.clone(), out);
        }
    }

    /// A member of `node` joined; this node's members are told, unless
    /// `tell` is false or it was known already.
    fn remote_joined(
        &mut self,
        node: &Arc<str>,
        name: Arc<str>,
        addr: Arc<str>,
        tell: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let members = cluster.nodes.entry(node.clone()).or_default();
        if members.contains_key(&name) {
            return;
        }
        members.insert(name.clone(), addr.clone());
        cluster.remote += 1;
        if tell && !self.names.is_empty() {
            let online = self.online();
            out.push(Output::Broadcast {
                except: None,
                event: Event::Joined {
                    name,
                    addr: format!("{addr} on {node}").into(),
                    online,
                    node: Some(node.clone()),
                },
            });
        }
    }

    /// A member of `node` left; this node's members are told, if it was
    /// known.
    fn remote_left(&mut self, node: &Arc<str>, name: &Arc<str>, out: &mut Vec<Output>) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let Some(members) = cluster.nodes.get_mut(node) else {
            return;
        };
        if members.remove(name).is_none() {
            return;
        }
        cluster.remote -= 1;
        if !self.names.is_empty() {
            let online = self.online();
            out.push(Output::Broadcast {
                except: None,
                event: Event::Left {
                    name: name.clone(),
                    online,
                    node: Some(node.clone()),
                },
            });
        }
    }

    /// `node`'s whole membership: what differs from what this hub knew is
    /// announced as joins and leaves (sorted by name), unless `quiet` and
    /// the node is new here.
    fn remote_members(
        &mut self,
        node: &Arc<str>,
        members: Vec<(Arc<str>, Arc<str>)>,
        quiet: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let tell = !quiet || cluster.nodes.contains_key(node);
        let now: HashMap<Arc<str>, Arc<str>> = members.into_iter().collect();
        let mut gone: Vec<Arc<str>> = cluster
            .nodes
            .get(node)
            .map(|known| {
                known
                    .keys()
                    .filter(|n| !now.contains_key(*n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        gone.sort_unstable();
        for name in gone {
            self.remote_left(node, &name, out);
        }
        let mut new: Vec<(Arc<str>, Arc<str>)> = now.into_iter().collect();
        new.sort_unstable();
        for (name, addr) in new {
            self.remote_joined(node, name, addr, tell, out);
        }
    }

    /// Named clients: a broadcast's recipients (before `except`).
    pub fn named_clients(&self) -> impl Iterator<Item = ClientId> + '_ {
        self.names.values().copied()
    }

    /// Whether `id` is a member of the room (has a name).
    pub fn is_named(&self, id: ClientId) -> bool {
        self.name(id).is_some()
    }

    /// The client's name, once it has one.
    pub fn name(&self, id: ClientId) -> Option<&Arc<str>> {
        self.clients.get(&id).and_then(|c| c.name.as_ref())
    }

    /// Whether `id` waits for the cluster to say whether its name is free:
    /// what it sends meanwhile is to be held, not handled.
    pub fn is_pending(&self, id: ClientId) -> bool {
        self.clients.get(&id).is_some_and(|c| c.pending.is_some())
    }

    /// Whether `id` is connected (named or not).
    pub fn is_connected(&self, id: ClientId) -> bool {
        self.clients.contains_key(&id)
    }

    /// Named clients, of every node of a cluster.
    pub fn online(&self) -> u32 {
        let remote = self.cluster.as_ref().map_or(0, |c| c.remote);
        u32::try_from(self.names.len() + remote).unwrap_or(u32::MAX)
    }

    /// Connected clients, named or not.
    pub fn connected(&self) -> usize {
        self.clients.len()
    }

    /// The client's name; an unnamed client asking for anything but a name
    /// gets [`ErrorCode::NotNamed`] and is closed, since it does not speak
    /// the protocol.
    fn named_or_refuse(&mut self, id: ClientId, out: &mut Vec<Output>) -> Option<Arc<str>> {
        let client = self.clients.get(&id)?;
        if let Some(name) = &client.name {
            return Some(name.clone());
        }
        // A pending client's name is released as it goes.
        out.push(Output::To(
            id,
            Event::error(ErrorCode::NotNamed, "send your name first"),
        ));
        self.leave(id, LeaveReason::Error, out);
        out.push(Output::Close(id));
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    fn addr(id: ClientId) -> String {
        format!("127.0.0.1:{}", 50000 + id)
    }

    /// A hub with clients 1.. connected and named, outputs discarded.
    fn room(names: &[&str]) -> Hub {
        let mut hub = Hub::new(HubLimits { max_clients: 4 });
        let mut out = Vec::new();
        for (id, name) in (1..).zip(names) {
            hub.connect(id, addr(id));
            assert!(hub.hello(id, name, &mut out));
        }
        hub
    }

    fn err(id: ClientId, code: ErrorCode, reason: &'static str) -> Output {
        Output::To(id, Event::error(code, reason))
    }

    #[test]
    fn first_client_is_welcomed_and_nobody_else_is_told() {
        let mut hub = Hub::new(HubLimits { max_clients: 1000 });
        let mut out = Vec::new();
        hub.connect(7, "10.0.0.1:4242");
        assert!(out.is_empty(), "nothing before a name");
        assert!(!hub.is_named(7));
        assert!(hub.hello(7, "Dian", &mut out));
        assert_eq!(
            out,
            [Output::To(
                7,
                Event::Welcome {
                    id: 7,
                    name: s("Dian"),
                    addr: s("10.0.0.1:4242"),
                    online: 1
                }
            )]
        );
        assert!(hub.is_named(7));
        assert_eq!(hub.name(7).map(|n| &**n), Some("Dian"));
    }

    #[test]
    fn join_is_welcome_to_the_joiner_and_joined_to_the_others() {
        let mut hub = room(&["Dian"]);
        let mut out = Vec::new();
        hub.connect(2, addr(2));
        assert!(hub.hello(2, "Rafi", &mut out));
        assert_eq!(
            out,
            [
                Output::To(
                    2,
                    Event::Welcome {
                        id: 2,
                        name: s("Rafi"),
                        addr: s(&addr(2)),
                        online: 2
                    }
                ),
                Output::Broadcast {
                    except: Some(2),
                    event: Event::Joined {
                        name: s("Rafi"),
                        addr: s(&addr(2)),
                        online: 2,
                        node: None,
                    }
                },
            ]
        );
        let mut named: Vec<_> = hub.named_clients().collect();
        named.sort_unstable();
        assert_eq!(named, [1, 2]);
    }

    #[test]
    fn a_message_goes_to_every_other_named_client_once() {
        let mut hub = room(&["Dian", "Rafi", "Ayu"]);
        hub.connect(9, addr(9)); // not named: must not count
        let mut out = Vec::new();
        hub.say(1, "Hello World", &mut out);
        assert_eq!(
            out,
            [Output::Broadcast {
                except: Some(1),
                event: Event::Message {
                    from: s("Dian"),
                    text: s("Hello World")
                }
            }]
        );
        assert!(!hub.named_clients().any(|id| id == 9));
    }

    #[test]
    fn messages_alone_or_empty_go_nowhere() {
        let mut hub = room(&["Dian"]);
        let mut out = Vec::new();
        hub.say(1, "anyone?", &mut out);
        assert!(out.is_empty());
        let mut hub = room(&["Dian", "Rafi"]);
        hub.say(1, "", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_message_shares_the_senders_name() {
        let mut hub = room(&["Dian", "Rafi"]);
        let mut out = Vec::new();
        hub.say(1, "hi", &mut out);
        let Some(Output::Broadcast {
            event: Event::Message { from, .. },
            ..
        }) = out.first()
        else {
            panic!("{out:?}");
        };
        // A reference count, not a copy of the name per message.
        assert!(Arc::ptr_eq(from, hub.name(1).unwrap()));
    }

    #[test]
    fn leaving_tells_the_others_with_the_new_count() {
        let mut hub = room(&["Dian", "Rafi", "Ayu"]);
        let mut out = Vec::new();
        hub.leave(2, LeaveReason::Disconnected, &mut out);
        assert_eq!(
            out,
            [Output::Broadcast {
                except: Some(2),
                event: Event::Left {
                    name: s("Rafi"),
                    online: 2,
                    node: None,
                }
            }]
        );
        assert!(!hub.is_connected(2));
        // The name is free again.
        out.clear();
        hub.connect(4, addr(4));
        assert!(hub.hello(4, "Rafi", &mut out));
    }

    #[test]
    fn quit_also_asks_for_the_close() {
        let mut hub = room(&["Dian", "Rafi"]);
        let mut out = Vec::new();
        hub.handle(1, ClientMsg::Bye, &mut out);
        assert_eq!(
            out,
            [
                Output::Broadcast {
                    except: Some(1),
                    event: Event::Left {
                        name: s("Dian"),
                        online: 1,
                        node: None,
                    }
                },
                Output::Close(1),
            ]
        );
        // Leaving again, for any reason, does nothing.
        out.clear();
        hub.leave(1, LeaveReason::Disconnected, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn the_last_to_leave_tells_nobody_and_unnamed_leave_silently() {
        let mut hub = room(&["Dian"]);
        hub.connect(5, addr(5));
        let mut out = Vec::new();
        for reason in [LeaveReason::Dropped, LeaveReason::TimedOut] {
            hub.leave(5, reason, &mut out);
            hub.leave(1, reason, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(hub.connected(), 0);
        assert_eq!(hub.online(), 0);
    }

    #[test]
    fn dropped_slow_reader_is_announced_to_the_room() {
        let mut hub = room(&["Dian", "Rafi"]);
        let mut out = Vec::new();
        hub.leave(2, LeaveReason::Dropped, &mut out);
        assert_eq!(
            out,
            [Output::Broadcast {
                except: Some(2),
                event: Event::Left {
                    name: s("Rafi"),
                    online: 1,
                    node: None,
                }
            }]
        );
    }

    #[test]
    fn who_gives_the_sorted_roster_to_the_asker_only() {
        let mut hub = room(&["rafi", "Dian", "ayu"]);
        hub.connect(9, addr(9));
        let mut out = Vec::new();
        hub.handle(2, ClientMsg::Who, &mut out);
        assert_eq!(
            out,
            [Output::To(
                2,
                Event::Roster {
                    names: vec![s("Dian"), s("ayu"), s("rafi")]
                }
            )]
        );
    }

    #[test]
    fn a_taken_name_is_refused_and_closed_not_renamed() {
        let mut hub = room(&["Dian"]);
        let mut out = Vec::new();
        hub.connect(2, addr(2));
        assert!(!hub.hello(2, "Dian", &mut out));
        assert_eq!(
            out,
            [
                err(2, ErrorCode::NameTaken, "name is taken"),
                Output::Close(2)
            ]
        );
        assert!(!hub.is_connected(2));
        assert_eq!(hub.online(), 1);
        // The first Dian is still Dian, and nobody was told anything.
        assert_eq!(hub.name(1).map(|n| &**n), Some("Dian"));
    }

    #[test]
    fn invalid_names_are_refused_with_their_reason() {
        let cases: [(&str, &str); 5] = [
            ("", "name is empty"),
            (&"x".repeat(33), "name is longer than 32 characters"),
            ("bad\u{1b}name", "name contains a control character"),
            (" Dian", "name begins or ends with white space"),
            ("*", "name is reserved"),
        ];
        for (name, reason) in cases {
            let mut hub = room(&["Dian"]);
            let mut out = Vec::new();
            hub.connect(2, addr(2));
            assert!(!hub.hello(2, name, &mut out), "{name:?}");
            assert_eq!(
                out,
                [err(2, ErrorCode::NameInvalid, reason), Output::Close(2)],
                "{name:?}"
            );
        }
        // 32 characters, 96 bytes: fine.
        let mut hub = room(&[]);
        hub.connect(1, addr(1));
        assert!(hub.hello(1, &"語".repeat(32), &mut Vec::new()));
    }

    #[test]
    fn room_full_refuses_the_next_name() {
        let mut hub = room(&["a", "b", "c", "d"]);
        let mut out = Vec::new();
        hub.connect(5, addr(5));
        assert!(!hub.hello(5, "e", &mut out));
        assert_eq!(
            out,
            [
                err(5, ErrorCode::RoomFull, "the room is full"),
                Output::Close(5)
            ]
        );
        // A place frees up.
        out.clear();
        hub.leave(1, LeaveReason::Quit, &mut out);
        out.clear();
        hub.connect(6, addr(6));
        assert!(hub.hello(6, "e", &mut out));
    }

    #[test]
    fn a_second_name_is_refused_but_the_client_stays() {
        let mut hub = room(&["Dian", "Rafi"]);
        let mut out = Vec::new();
        assert!(!hub.hello(1, "Other", &mut out));
        assert_eq!(
            out,
            [err(1, ErrorCode::AlreadyNamed, "you already have a name")]
        );
        assert_eq!(hub.name(1).map(|n| &**n), Some("Dian"));
    }

    #[test]
    fn unnamed_clients_that_talk_are_refused_and_closed() {
        for msg in [ClientMsg::Say { text: "hi" }, ClientMsg::Who] {
            let mut hub = room(&["Dian"]);
            hub.connect(2, addr(2));
            let mut out = Vec::new();
            hub.handle(2, msg, &mut out);
            assert_eq!(
                out,
                [
                    err(2, ErrorCode::NotNamed, "send your name first"),
                    Output::Close(2)
                ],
                "{msg:?}"
            );
            assert!(!hub.is_connected(2));
        }
    }

    #[test]
    fn unknown_ids_are_ignored() {
        let mut hub = room(&["Dian"]);
        let mut out = Vec::new();
        assert!(!hub.hello(99, "Ghost", &mut out));
        hub.say(99, "boo", &mut out);
        hub.who(99, &mut out);
        hub.leave(99, LeaveReason::Quit, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(hub.online(), 1);
    }

    #[test]
    fn reconnecting_an_id_keeps_its_state() {
        let mut hub = room(&["Dian"]);
        hub.connect(1, "elsewhere");
        assert_eq!(hub.name(1).map(|n| &**n), Some("Dian"));
    }

    #[test]
    fn shutdown_tells_the_named_and_closes_everyone() {
        let mut hub = room(&["Dian", "Rafi"]);
        hub.connect(9, addr(9));
        let mut out = Vec::new();
        hub.shutdown(&mut out);
        let notice = |id| err(id, ErrorCode::ServerShutdown, "the server is shutting down");
        assert_eq!(
            out,
            [
                notice(1),
                notice(2),
                Output::Close(1),
                Output::Close(2),
                Output::Close(9)
            ]
        );
        assert_eq!(hub.connected(), 0);
        assert_eq!(hub.online(), 0);
    }

    #[test]
    fn a_whole_conversation() {
        let mut hub = Hub::new(HubLimits { max_clients: 10 });
        let mut out = Vec::new();
        hub.connect(1, "a:1");
        hub.connect(2, "b:2");
        hub.handle(1, ClientMsg::Hello { name: "Dian" }, &mut out);
        hub.handle(2, ClientMsg::Hello { name: "Rafi" }, &mut out);
        hub.handle(
            1,
            ClientMsg::Say {
                text: "Hello World",
            },
            &mut out,
        );
        hub.handle(
            2,
            ClientMsg::Say {
                text: "Hello World",
            },
            &mut out,
        );
        hub.handle(2, ClientMsg::Bye, &mut out);
        hub.handle(1, ClientMsg::Say { text: "bye?" }, &mut out);
        assert_eq!(
            out,
            [
                Output::To(
                    1,
                    Event::Welcome {
                        id: 1,
                        name: s("Dian"),
                        addr: s("a:1"),
                        online: 1
                    }
                ),
                Output::To(
                    2,
                    Event::Welcome {
                        id: 2,
                        name: s("Rafi"),
                        addr: s("b:2"),
                        online: 2
                    }
                ),
                Output::Broadcast {
                    except: Some(2),
                    event: Event::Joined {
                        name: s("Rafi"),
                        addr: s("b:2"),
                        online: 2,
                        node: None,
                    }
                },
                Output::Broadcast {
                    except: Some(1),
                    event: Event::Message {
                        from: s("Dian"),
                        text: s("Hello World")
                    }
                },
                Output::Broadcast {
                    except: Some(2),
                    event: Event::Message {
                        from: s("Rafi"),
                        text: s("Hello World")
                    }
                },
                Output::Broadcast {
                    except: Some(2),
                    event: Event::Left {
                        name: s("Rafi"),
                        online: 1,
                        node: None,
                    }
                },
                Output::Close(2),
            ]
        );
    }

    // ---- In a cluster ----------------------------------------------------

    /// A clustered hub whose link is up, with clients 1.. named (their
    /// claims granted), outputs discarded.
    fn clustered(names: &[&str]) -> Hub {
        let mut hub = Hub::new(HubLimits { max_clients: 8 }).with_cluster();
        let mut out = Vec::new();
        hub.remote(FromCluster::Link { up: true }, &mut out);
        for (id, name) in (1..).zip(names) {
            hub.connect(id, addr(id));
            assert!(!hub.hello(id, name, &mut out));
            hub.remote(granted(id, name), &mut out);
            assert!(hub.is_named(id), "{name}");
        }
        hub
    }

    fn granted(client: ClientId, name: &str) -> FromCluster {
        FromCluster::Claimed {
            client,
            name: s(name),
            claim: Claim::Granted,
        }
    }

    fn joined_on(node: &str, name: &str) -> FromCluster {
        FromCluster::Joined {
            node: s(node),
            name: s(name),
            addr: s("10.0.0.2:7"),
        }
    }

    fn notice(text: &str) -> Event {
        Event::Notice { text: s(text) }
    }

    #[test]
    fn a_clustered_name_is_pending_until_the_cluster_grants_it() {
        let mut hub = clustered(&["Dian"]);
        let mut out = Vec::new();
        hub.connect(2, addr(2));
        assert!(!hub.hello(2, "Rafi", &mut out));
        assert_eq!(
            out,
            [Output::Cluster(ToCluster::Claim {
                client: 2,
                name: s("Rafi")
            })]
        );
        assert!(hub.is_pending(2) && !hub.is_named(2));
        // Held meanwhile: another client of this node cannot have it.
        out.clear();
        hub.connect(3, addr(3));
        assert!(!hub.hello(3, "Rafi", &mut out));
        assert_eq!(
            out,
            [
                err(3, ErrorCode::NameTaken, "name is taken"),
                Output::Close(3)
            ]
        );
        // Nor can the pending client ask twice.
        out.clear();
        assert!(!hub.hello(2, "Other", &mut out));
        assert_eq!(
            out,
            [err(2, ErrorCode::AlreadyNamed, "you already have a name")]
        );
        out.clear();
        hub.remote(granted(2, "Rafi"), &mut out);
        assert_eq!(
            out,
            [
                Output::To(
                    2,
                    Event::Welcome {
                        id: 2,
                        name: s("Rafi"),
                        addr: s(&addr(2)),
                        online: 2
                    }
                ),
                Output::Broadcast {
                    except: Some(2),
                    event: Event::Joined {
                        name: s("Rafi"),
                        addr: s(&addr(2)),
                        online: 2,
                        node: None,
                    }
                },
                Output::Cluster(ToCluster::Joined {
                    name: s("Rafi"),
                    addr: s(&addr(2))
                }),
            ]
        );
        assert!(!hub.is_pending(2));
    }

    #[test]
    fn a_name_held_on_another_node_is_refused_exactly_like_a_local_one() {
        let local = {
            let mut hub = clustered(&["Dian"]);
            let mut out = Vec::new();
            hub.connect(2, addr(2));
            hub.hello(2, "Dian", &mut out);
            out
        };
        // Claimed on another node, not yet known here: Redis says so.
        let mut hub = clustered(&[]);
        let mut out = Vec::new();
        hub.connect(2, addr(2));
        hub.hello(2, "Dian", &mut out);
        out.clear();
        hub.remote(
            FromCluster::Claimed {
                client: 2,
                name: s("Dian"),
                claim: Claim::Taken { node: s("node-b") },
            },
            &mut out,
        );
        assert_eq!(out, local);
        assert!(!hub.is_connected(2));
        // Known here already: refused at once, without asking.
        let mut hub = clustered(&[]);
        hub.remote(joined_on("node-b", "Dian"), &mut Vec::new());
        let mut out = Vec::new();
        hub.connect(2, addr(2));
        hub.hello(2, "Dian", &mut out);
        assert_eq!(out, local);
        // Free again once its owner left.
        hub.remote(
            FromCluster::Left {
                node: s("node-b"),
                name: s("Dian"),
            },
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        hub.connect(3, addr(3));
        hub.hello(3, "Dian", &mut out);
        assert_eq!(
            out,
            [Output::Cluster(ToCluster::Claim {
                client: 3,
                name: s("Dian")
            })]
        );
    }

    #[test]
    fn a_pending_client_that_goes_releases_its_name_and_its_answer_is_dropped() {
        for how in ["leave", "talk"] {
            let mut hub = clustered(&["Dian"]);
            let mut out = Vec::new();
            hub.connect(2, addr(2));
            hub.hello(2, "Rafi", &mut out);
            out.clear();
            if how == "leave" {
                hub.leave(2, LeaveReason::Disconnected, &mut out);
                assert_eq!(
                    out,
                    [Output::Cluster(ToCluster::Release { name: s("Rafi") })]
                );
            } else {
                // A runtime that does not hold its messages: a protocol error.
                hub.say(2, "hi", &mut out);
                assert_eq!(
                    out,
                    [
                        err(2, ErrorCode::NotNamed, "send your name first"),
                        Output::Cluster(ToCluster::Release { name: s("Rafi") }),
                        Output::Close(2),
                    ]
                );
            }
            out.clear();
            hub.remote(granted(2, "Rafi"), &mut out);
            assert!(out.is_empty(), "{out:?}");
            // And the name is free here again.
            hub.connect(3, addr(3));
            hub.hello(3, "Rafi", &mut out);
            assert_eq!(
                out,
                [Output::Cluster(ToCluster::Claim {
                    client: 3,
                    name: s("Rafi")
                })]
            );
        }
    }

    #[test]
    fn while_the_link_is_down_names_are_decided_here_and_newcomers_are_told() {
        let mut hub = clustered(&["Dian"]);
        let mut out = Vec::new();
        hub.remote(FromCluster::Link { up: false }, &mut out);
        out.clear();
        hub.connect(2, addr(2));
        assert!(hub.hello(2, "Rafi", &mut out));
        assert_eq!(
            out,
            [
                Output::To(
                    2,
                    Event::Welcome {
                        id: 2,
                        name: s("Rafi"),
                        addr: s(&addr(2)),
                        online: 2
                    }
                ),
                Output::Broadcast {
                    except: Some(2),
                    event: Event::Joined {
                        name: s("Rafi"),
                        addr: s(&addr(2)),
                        online: 2,
                        node: None,
                    }
                },
                Output::To(2, notice(LINK_DOWN)),
                Output::Cluster(ToCluster::Joined {
                    name: s("Rafi"),
                    addr: s(&addr(2))
                }),
            ]
        );
    }

    #[test]
    fn an_undecided_claim_is_granted_unless_another_node_has_the_name_by_now() {
        let undecided = |client, name: &str| FromCluster::Claimed {
            client,
            name: s(name),
            claim: Claim::Undecided,
        };
        let mut hub = clustered(&[]);
        let mut out = Vec::new();
        hub.connect(1, addr(1));
        hub.connect(2, addr(2));
        hub.hello(1, "Dian", &mut out);
        hub.hello(2, "Rafi", &mut out);
        hub.remote(joined_on("node-b", "Rafi"), &mut out);
        out.clear();
        hub.remote(undecided(1, "Dian"), &mut out);
        assert!(hub.is_named(1));
        out.clear();
        hub.remote(undecided(2, "Rafi"), &mut out);
        assert_eq!(
            out,
            [
                err(2, ErrorCode::NameTaken, "name is taken"),
                Output::Close(2)
            ]
        );
    }

    #[test]
    fn members_of_other_nodes_are_counted_listed_and_said_to_be_there() {
        let mut hub = clustered(&["Dian"]);
        let mut out = Vec::new();
        hub.remote(joined_on("node-b", "rafi"), &mut out);
        assert_eq!(
            out,
            [Output::Broadcast {
                except: None,
                event: Event::Joined {
                    name: s("rafi"),
                    addr: s("10.0.0.2:7 on node-b"),
                    online: 2,
                    node: Some(s("node-b")),
                }
            }]
        );
        // Twice is once.
        out.clear();
        hub.remote(joined_on("node-b", "rafi"), &mut out);
        hub.remote(joined_on("node-c", "Ayu"), &mut out);
        out.clear();
        hub.who(1, &mut out);
        assert_eq!(
            out,
            [Output::To(
                1,
                Event::Roster {
                    names: vec![s("Ayu"), s("Dian"), s("rafi")]
                }
            )]
        );
        assert_eq!(hub.online(), 3);
        // Their messages reach every member here; nobody here is excepted.
        out.clear();
        hub.remote(
            FromCluster::Said {
                node: s("node-b"),
                from: s("rafi"),
                text: s("hi"),
            },
            &mut out,
        );
        assert_eq!(
            out,
            [Output::Broadcast {
                except: None,
                event: Event::Message {
                    from: s("rafi"),
                    text: s("hi")
                }
            }]
        );
        out.clear();
        hub.remote(
            FromCluster::Left {
                node: s("node-b"),
                name: s("rafi"),
            },
            &mut out,
        );
        assert_eq!(
            out,
            [Output::Broadcast {
                except: None,
                event: Event::Left {
                    name: s("rafi"),
                    online: 2,
                    node: Some(s("node-b")),
                }
            }]
        );
        // A leave not known is no news.
        out.clear();
        hub.remote(
            FromCluster::Left {
                node: s("node-b"),
                name: s("rafi"),
            },
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn news_from_other_nodes_with_nobody_here_encodes_nothing() {
        let mut hub = clustered(&[]);
        let mut out = Vec::new();
        hub.remote(joined_on("node-b", "rafi"), &mut out);
        hub.remote(
            FromCluster::Said {
                node: s("node-b"),
                from: s("rafi"),
                text: s("hi"),
            },
            &mut out,
        );
        hub.remote(FromCluster::Link { up: false }, &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(hub.online(), 1);
    }

    #[test]
    fn this_nodes_members_are_told_to_the_others_even_alone() {
        let mut hub = clustered(&["Dian"]);
        let mut out = Vec::new();
        hub.say(1, "anyone?", &mut out);
        hub.say(1, "", &mut out);
        hub.handle(1, ClientMsg::Bye, &mut out);
        assert_eq!(
            out,
            [
                Output::Cluster(ToCluster::Said {
                    from: s("Dian"),
                    text: s("anyone?")
                }),
                Output::Cluster(ToCluster::Left { name: s("Dian") }),
                Output::Close(1),
            ]
        );
    }

    #[test]
    fn a_node_gone_takes_its_members_with_it() {
        let mut hub = clustered(&["Dian"]);
        let mut out = Vec::new();
        hub.remote(joined_on("node-b", "rafi"), &mut out);
        hub.remote(joined_on("node-b", "Ayu"), &mut out);
        hub.remote(joined_on("node-c", "Bo"), &mut out);
        out.clear();
        hub.remote(FromCluster::Gone { node: s("node-b") }, &mut out);
        let left = |name: &str, online| Output::Broadcast {
            except: None,
            event: Event::Left {
                name: s(name),
                online,
                node: Some(s("node-b")),
            },
        };
        assert_eq!(out, [left("Ayu", 3), left("rafi", 2)]);
        assert_eq!(hub.online(), 2);
        out.clear();
        hub.remote(FromCluster::Gone { node: s("node-b") }, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_nodes_membership_makes_up_for_what_was_missed() {
        let members = |names: &[&str], quiet| FromCluster::Members {
            node: s("node-b"),
            members: names.iter().map(|n| (s(n), s("10.0.0.2:7"))).collect(),
            quiet,
        };
        // A node first heard of with members already: added quietly.
        let mut hub = clustered(&["Dian"]);
        let mut out = Vec::new();
        hub.remote(members(&["rafi", "Ayu"], true), &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(hub.online(), 3);
        // Later: what changed is told, leaves first.
        hub.remote(members(&["rafi", "Bo"], true), &mut out);
        assert_eq!(
            out,
            [
                Output::Broadcast {
                    except: None,
                    event: Event::Left {
                        name: s("Ayu"),
                        online: 2,
                        node: Some(s("node-b")),
                    }
                },
                Output::Broadcast {
                    except: None,
                    event: Event::Joined {
                        name: s("Bo"),
                        addr: s("10.0.0.2:7 on node-b"),
                        online: 3,
                        node: Some(s("node-b")),
                    }
                },
            ]
        );
        // The same again is no news.
        out.clear();
        hub.remote(members(&["Bo", "rafi"], false), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn members_are_told_once_that_the_link_went_down_and_once_that_it_is_back() {
        let mut hub = Hub::new(HubLimits { max_clients: 8 }).with_cluster();
        let mut out = Vec::new();
        hub.connect(1, addr(1));
        hub.hello(1, "Dian", &mut out);
        hub.remote(
            FromCluster::Claimed {
                client: 1,
                name: s("Dian"),
                claim: Claim::Undecided,
            },
            &mut out,
        );
        out.clear();
        // The first news of the link is that it is up: nothing to tell.
        hub.remote(FromCluster::Link { up: true }, &mut out);
        assert!(out.is_empty());
        for up in [false, false, true, true, false, true] {
            hub.remote(FromCluster::Link { up }, &mut out);
        }
        let told = |text| Output::Broadcast {
            except: None,
            event: notice(text),
        };
        assert_eq!(
            out,
            [
                told(LINK_DOWN),
                told(LINK_UP),
                told(LINK_DOWN),
                told(LINK_UP)
            ]
        );
    }

    #[test]
    fn a_hub_on_its_own_ignores_cluster_news() {
        let mut hub = room(&["Dian"]);
        let mut out = Vec::new();
        hub.remote(joined_on("node-b", "rafi"), &mut out);
        hub.remote(FromCluster::Link { up: false }, &mut out);
        hub.say(1, "hi", &mut out);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(hub.online(), 1);
    }
}
