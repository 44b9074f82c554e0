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

use std::collections::HashMap;
use std::sync::Arc;

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
}

#[derive(Debug)]
struct Client {
    addr: Arc<str>,
    name: Option<Arc<str>>,
}

/// One chat room.
#[derive(Debug)]
pub struct Hub {
    limits: HubLimits,
    clients: HashMap<ClientId, Client>,
    /// Named clients by name: the uniqueness check, and the room's members.
    names: HashMap<Arc<str>, ClientId>,
}

impl Hub {
    pub fn new(limits: HubLimits) -> Hub {
        Hub {
            limits,
            clients: HashMap::new(),
            names: HashMap::new(),
        }
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
    /// stays.
    pub fn hello(&mut self, id: ClientId, name: &str, out: &mut Vec<Output>) -> bool {
        let Some(client) = self.clients.get(&id) else {
            return false;
        };
        if client.name.is_some() {
            out.push(Output::To(
                id,
                Event::error(ErrorCode::AlreadyNamed, "you already have a name"),
            ));
            return false;
        }
        let refusal = if self.names.len() >= self.limits.max_clients {
            Some((ErrorCode::RoomFull, "the room is full"))
        } else if let Err(e) = validate_name(name) {
            Some((ErrorCode::NameInvalid, e.reason()))
        } else if self.names.contains_key(name) {
            Some((ErrorCode::NameTaken, "name is taken"))
        } else {
            None
        };
        if let Some((code, reason)) = refusal {
            self.clients.remove(&id);
            out.push(Output::To(id, Event::error(code, reason)));
            out.push(Output::Close(id));
            return false;
        }

        let name: Arc<str> = Arc::from(name);
        let addr = client.addr.clone();
        if let Some(client) = self.clients.get_mut(&id) {
            client.name = Some(name.clone());
        }
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
                event: Event::Joined { name, addr, online },
            });
        }
        true
    }

    /// A message for every other named client. An empty message says
    /// nothing and goes nowhere; one from a client without a name is a
    /// protocol error.
    pub fn say(&mut self, id: ClientId, text: &str, out: &mut Vec<Output>) {
        let Some(from) = self.named_or_refuse(id, out) else {
            return;
        };
        // Alone in the room, or nothing to say: nothing to encode.
        if text.is_empty() || self.names.len() < 2 {
            return;
        }
        out.push(Output::Broadcast {
            except: Some(id),
            event: Event::Message {
                from,
                text: Arc::from(text),
            },
        });
    }

    /// The roster, sorted by name, to the client that asked.
    pub fn who(&mut self, id: ClientId, out: &mut Vec<Output>) {
        if self.named_or_refuse(id, out).is_none() {
            return;
        }
        let mut names: Vec<Arc<str>> = self.names.keys().cloned().collect();
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
        if let Some(name) = client.name {
            self.names.remove(&name);
            if !self.names.is_empty() {
                let online = self.online();
                out.push(Output::Broadcast {
                    except: Some(id),
                    event: Event::Left { name, online },
                });
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

    /// Whether `id` is connected (named or not).
    pub fn is_connected(&self, id: ClientId) -> bool {
        self.clients.contains_key(&id)
    }

    /// Named clients.
    pub fn online(&self) -> u32 {
        u32::try_from(self.names.len()).unwrap_or(u32::MAX)
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
        self.clients.remove(&id);
        out.push(Output::To(
            id,
            Event::error(ErrorCode::NotNamed, "send your name first"),
        ));
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
                        online: 2
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
                    online: 2
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
                        online: 1
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
                    online: 1
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
                        online: 2
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
                        online: 1
                    }
                },
                Output::Close(2),
            ]
        );
    }
}
