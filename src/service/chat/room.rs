//! The chat room as a [`RoomService`]: the hub, plus each listener's
//! dialect. Clients become members of the group of their dialect when they
//! are welcomed, so a broadcast is encoded once per dialect in use and the
//! runtime only copies those bytes to each member.

use std::collections::HashMap;

use super::{Hub, HubLimits, LeaveReason, Output};
use crate::chat::{Dialect, ErrorCode, Event};
use crate::codec::chat::{ChatCodec, ChatDecoder};
use crate::service::room::{ConnId, Disconnect, Outbox, RoomService};

struct Client {
    decoder: ChatDecoder,
    codec: ChatCodec,
    group: usize,
    peer: String,
    /// Welcomed, so counted among its group's members.
    welcomed: bool,
}

pub struct ChatRoom {
    server: String,
    hub: Hub,
    /// Each listener's codec, and the group of its dialect.
    listeners: Vec<(ChatCodec, usize)>,
    /// Each group's codec (the first listener's with that dialect) and how
    /// many welcomed clients it has.
    groups: Vec<(ChatCodec, usize)>,
    clients: HashMap<ConnId, Client>,
    outputs: Vec<Output>,
}

impl ChatRoom {
    /// `codecs[i]` is the dialect of the server's `i`th listener.
    pub fn new(server: &str, codecs: &[ChatCodec], limits: HubLimits) -> ChatRoom {
        let mut dialects: Vec<Dialect> = Vec::new();
        let mut groups = Vec::new();
        let listeners = codecs
            .iter()
            .map(|codec| {
                let group = match dialects.iter().position(|d| *d == codec.dialect) {
                    Some(g) => g,
                    None => {
                        dialects.push(codec.dialect);
                        groups.push((*codec, 0));
                        groups.len() - 1
                    }
                };
                (*codec, group)
            })
            .collect();
        ChatRoom {
            server: server.to_owned(),
            hub: Hub::new(limits),
            listeners,
            groups,
            clients: HashMap::new(),
            outputs: Vec::new(),
        }
    }

    /// Tells `conn` why it times out, has it leave the room, and closes it.
    fn time_out(&mut self, conn: ConnId, why: &'static str, out: &mut Outbox) {
        if let Some(client) = self.clients.get(&conn) {
            let codec = client.codec;
            let event = Event::error(ErrorCode::TimedOut, why);
            out.to(conn, |b| codec.encode(&event, b));
        }
        self.hub
            .leave(conn, LeaveReason::TimedOut, &mut self.outputs);
        self.dispatch(out);
        out.close(conn);
    }

    /// Turns the hub's outputs into bytes for the runtime.
    fn dispatch(&mut self, out: &mut Outbox) {
        for output in self.outputs.drain(..) {
            match output {
                Output::To(id, event) => {
                    let Some(client) = self.clients.get_mut(&id) else {
                        continue;
                    };
                    let codec = client.codec;
                    out.to(id, |b| codec.encode(&event, b));
                    if matches!(event, Event::Welcome { .. }) && !client.welcomed {
                        client.welcomed = true;
                        out.join(id, client.group);
                        self.groups[client.group].1 += 1;
                    }
                }
                Output::Broadcast { except, event } => {
                    for (group, (codec, members)) in self.groups.iter().enumerate() {
                        if *members > 0 {
                            out.group(group, except, |b| codec.encode(&event, b));
                        }
                    }
                }
                Output::Close(id) => out.close(id),
            }
        }
    }
}

impl RoomService for ChatRoom {
    /// Events from elsewhere (another node of the room) for every member.
    type Remote = Event;

    fn remote(&mut self, event: Event, out: &mut Outbox) {
        self.outputs.push(Output::Broadcast {
            except: None,
            event,
        });
        self.dispatch(out);
    }

    fn connected(&mut self, conn: ConnId, listener: usize, peer: &str, _out: &mut Outbox) {
        let Some(&(codec, group)) = self.listeners.get(listener) else {
            return;
        };
        self.hub.connect(conn, peer);
        self.clients.insert(
            conn,
            Client {
                decoder: codec.decoder(),
                codec,
                group,
                peer: peer.to_owned(),
                welcomed: false,
            },
        );
    }

    fn received(&mut self, conn: ConnId, bytes: &[u8], out: &mut Outbox) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.decoder.extend(bytes);
        loop {
            match client.decoder.next_msg() {
                Ok(Some(msg)) => self.hub.handle(conn, msg, &mut self.outputs),
                Ok(None) => break,
                Err(e) => {
                    log::debug!("server {}: closing {}: {e}", self.server, client.peer);
                    // Queued behind what the frames before it caused, so
                    // the client hears its replies in the order it asked.
                    self.outputs.push(Output::To(conn, e.to_event()));
                    self.hub.leave(conn, LeaveReason::Error, &mut self.outputs);
                    self.outputs.push(Output::Close(conn));
                    break;
                }
            }
        }
        self.dispatch(out);
    }

    fn disconnected(&mut self, conn: ConnId, why: Disconnect, out: &mut Outbox) {
        let reason = match why {
            Disconnect::Closed => LeaveReason::Disconnected,
            Disconnect::Failed => LeaveReason::Error,
            Disconnect::SlowReader => LeaveReason::Dropped,
            Disconnect::Idle => LeaveReason::TimedOut,
        };
        self.hub.leave(conn, reason, &mut self.outputs);
        self.dispatch(out);
        if let Some(client) = self.clients.remove(&conn)
            && client.welcomed
        {
            self.groups[client.group].1 -= 1;
        }
    }

    fn idle(&mut self, conn: ConnId, out: &mut Outbox) {
        self.time_out(conn, "idle for too long", out);
    }

    fn login_expired(&mut self, conn: ConnId, out: &mut Outbox) {
        self.time_out(conn, "no name given in time", out);
    }

    fn stopping(&mut self, out: &mut Outbox) {
        self.hub.shutdown(&mut self.outputs);
        self.dispatch(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ClientMsg;
    use crate::codec::chat::{BincodeServerDecoder, HeaderChat, ServerMsg};
    use crate::service::room::Send;

    /// What the room sent to `conn` alone, in order.
    fn sent_to(out: &Outbox, conn: ConnId) -> Vec<u8> {
        let mut bytes = Vec::new();
        for send in &out.sends {
            if let Send::To(id, range) = send
                && *id == conn
            {
                bytes.extend_from_slice(&out.bytes[range.clone()]);
            }
        }
        bytes
    }

    fn room(codec: ChatCodec) -> ChatRoom {
        ChatRoom::new("t", &[codec], HubLimits { max_clients: 8 })
    }

    /// A name, `/who` and a bad frame in one read: the welcome, the roster
    /// and then the error, in the order the client asked.
    #[test]
    fn replies_keep_their_order_when_one_read_holds_several_frames() {
        let line = ChatCodec::new(Dialect::Line, 1 << 16);
        let mut r = room(line);
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        r.received(1, b"bob\n/who\n\xff\n", &mut out);
        assert_eq!(
            String::from_utf8_lossy(&sent_to(&out, 1)),
            "* welcome bob, 1 online; /who lists them, /quit leaves\n\
             * online (1): bob\n\
             * error: line is not valid UTF-8 (byte 0)\n"
        );
        assert_eq!(out.sends.last(), Some(&Send::Close(1)));

        let header = ChatCodec::new(Dialect::Header { header_len: 10 }, 1 << 16);
        let mut r = room(header);
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        r.received(1, b"3         bob4         /who1         \xff", &mut out);
        let text = String::from_utf8_lossy(&sent_to(&out, 1)).into_owned();
        let welcome = text.find("welcome bob").expect(&text);
        let roster = text.find("online (1): bob").expect(&text);
        let error = text.find("error: frame is not valid UTF-8").expect(&text);
        assert!(welcome < roster && roster < error, "{text}");

        let bincode = ChatCodec::new(Dialect::Bincode, 1 << 16);
        let mut r = room(bincode);
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        let mut input = Vec::new();
        bincode.encode_client_msg(ClientMsg::Hello { name: "bob" }, &mut input);
        bincode.encode_client_msg(ClientMsg::Who, &mut input);
        input.extend_from_slice(&[0, 0, 0, 1, 0xff]);
        r.received(1, &input, &mut out);
        let mut decoder = BincodeServerDecoder::new(1 << 16);
        decoder.extend(&sent_to(&out, 1));
        let mut kinds = Vec::new();
        while let Some(msg) = decoder.next_msg().unwrap() {
            kinds.push(match msg {
                ServerMsg::Welcome { .. } => "welcome",
                ServerMsg::Roster { .. } => "roster",
                ServerMsg::Error { .. } => "error",
                _ => "other",
            });
        }
        assert_eq!(kinds, ["welcome", "roster", "error"]);
    }

    /// Two clients of seed 004 (header_len 10 and 100 listeners sharing one
    /// room): the bytes each sends, through decoder, hub and encoder, reach
    /// the other exactly as the seed's server would have sent them.
    #[test]
    fn seed_004_wire_bytes_through_the_hub() {
        let dian_codec = HeaderChat::new(10, 1 << 16);
        let rafi_codec = HeaderChat::new(100, 1 << 16);
        let mut hub = Hub::new(HubLimits { max_clients: 8 });
        let mut out = Vec::new();
        let mut dian = dian_codec.decoder();
        let mut rafi = rafi_codec.decoder();
        hub.connect(1, "127.0.0.1:51333");
        hub.connect(2, "127.0.0.1:51336");

        // What each seed client writes: its name frame, then a message frame.
        let mut dian_bytes = b"4         Dian".to_vec();
        dian_bytes.extend_from_slice(b"11        Hello World");
        let mut rafi_bytes = b"4".to_vec();
        rafi_bytes.extend_from_slice(&[b' '; 99]);
        rafi_bytes.extend_from_slice(b"Rafi");

        for (id, decoder, bytes) in [
            (1, &mut dian, &dian_bytes[..14]),
            (2, &mut rafi, &rafi_bytes[..]),
        ] {
            decoder.extend(bytes);
            while let Some(msg) = decoder.next_msg().unwrap() {
                hub.handle(id, msg, &mut out);
            }
        }
        out.clear();
        dian.extend(&dian_bytes[14..]);
        while let Some(msg) = dian.next_msg().unwrap() {
            hub.handle(1, msg, &mut out);
        }

        // One broadcast, to everyone but Dian, which Rafi's listener encodes.
        let [Output::Broadcast { except, event }] = &out[..] else {
            panic!("{out:?}");
        };
        assert_eq!(*except, Some(1));
        let mut wire = Vec::new();
        rafi_codec.encode(event, &mut wire);
        // user['header'] + user['data'] + message['header'] + message['data'],
        // as a header_len 100 client would have sent them.
        let mut seed_server = b"4".to_vec();
        seed_server.extend_from_slice(&[b' '; 99]);
        seed_server.extend_from_slice(b"Dian");
        seed_server.extend_from_slice(b"11");
        seed_server.extend_from_slice(&[b' '; 98]);
        seed_server.extend_from_slice(b"Hello World");
        assert_eq!(wire, seed_server);

        // And on a header_len 10 listener, byte for byte what Dian sent.
        wire.clear();
        dian_codec.encode(event, &mut wire);
        assert_eq!(wire, dian_bytes);
    }
}
