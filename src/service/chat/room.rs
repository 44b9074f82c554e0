//! The chat room as a [`RoomService`]: the hub, plus each listener's
//! dialect. Clients become members of the group of their dialect's wire
//! when they are welcomed, so a broadcast is encoded once per wire in use
//! and the runtime only copies those bytes to each member. What a dialect
//! answers for its own protocol (websocket: the HTTP response, pongs,
//! close frames) goes to its client in order with the room's replies.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{FromCluster, Hub, HubLimits, LeaveReason, Output, Uplink};
use crate::chat::{ClientMsg, Dialect, ErrorCode, Event};
use crate::codec::chat::{ChatCodec, ChatDecoder, DecodeError, Decoded, Keepalive};
use crate::metrics::{self, ServerMetrics};
use crate::rate::{Limit, Rate, TokenBucket};
use crate::service::room::{ConnId, Disconnect, Outbox, RoomService};

struct Client {
    decoder: ChatDecoder,
    /// The group of its dialect's wire, whose codec encodes for it.
    group: usize,
    peer: String,
    /// Welcomed, so counted among its group's members.
    welcomed: bool,
    /// The last error the room sent it, for the dialect's goodbye.
    last_error: Option<(ErrorCode, Cow<'static, str>)>,
    /// Its messages' tokens, with `message_rate`.
    bucket: Option<TokenBucket>,
    /// Messages refused by the rate since the last one let through.
    refused_in_row: u32,
}

/// A client with this many messages in a row refused by `message_rate`
/// is disconnected.
pub const MESSAGE_REFUSALS_BEFORE_DISCONNECT: u32 = 20;

/// `message_rate` and `message_burst`, per client.
#[derive(Debug, Clone, Copy)]
pub struct MessageRate {
    pub rate: Rate,
    pub burst: u32,
}

pub struct ChatRoom {
    server: String,
    hub: Hub,
    /// Each listener's codec, and the group of its wire.
    listeners: Vec<(ChatCodec, usize)>,
    /// Each group's codec (the first listener's with that wire) and how
    /// many welcomed clients it has.
    groups: Vec<(ChatCodec, usize)>,
    clients: HashMap<ConnId, Client>,
    outputs: Vec<Output>,
    metrics: Arc<ServerMetrics>,
    message_rate: Option<(MessageRate, Limit)>,
    /// How often keepalive rounds are due: the shortest `ping_interval` of
    /// the listeners, if any has one.
    keepalive_every: Option<Duration>,
    /// A dialect's last words or ping, before they go in the outbox.
    scratch: Vec<u8>,
    expired: Vec<ConnId>,
    /// To the other nodes, in a cluster.
    uplink: Option<Uplink>,
}

impl ChatRoom {
    /// `codecs[i]` is the dialect of the server's `i`th listener; no
    /// message rate, and counters of its own.
    pub fn new(server: &str, codecs: &[ChatCodec], limits: HubLimits) -> ChatRoom {
        ChatRoom::with(
            server,
            codecs,
            limits,
            None,
            ServerMetrics::detached(server),
        )
    }

    /// [`ChatRoom::new`], holding each client to `message_rate` and
    /// counting in `metrics` (members, messages, refusals).
    pub fn with(
        server: &str,
        codecs: &[ChatCodec],
        limits: HubLimits,
        message_rate: Option<MessageRate>,
        metrics: Arc<ServerMetrics>,
    ) -> ChatRoom {
        let mut groups: Vec<(ChatCodec, usize)> = Vec::new();
        let listeners = codecs
            .iter()
            .map(|codec| {
                let group = match groups
                    .iter()
                    .position(|(g, _)| g.dialect.same_wire(&codec.dialect))
                {
                    Some(g) => g,
                    None => {
                        groups.push((codec.clone(), 0));
                        groups.len() - 1
                    }
                };
                (codec.clone(), group)
            })
            .collect();
        let keepalive_every = codecs
            .iter()
            .filter_map(|c| match &c.dialect {
                Dialect::WebSocket(settings) => settings.ping_interval,
                _ => None,
            })
            .min();
        ChatRoom {
            server: server.to_owned(),
            hub: Hub::new(limits),
            listeners,
            groups,
            clients: HashMap::new(),
            outputs: Vec::new(),
            metrics,
            message_rate: message_rate.map(|m| (m, Limit::new(m.rate, m.burst))),
            keepalive_every,
            scratch: Vec::new(),
            expired: Vec::new(),
            uplink: None,
        }
    }

    /// Whether `msg` from `conn` is within its message rate; over it, the
    /// client is told in its dialect, and after too many in a row it is
    /// told why and disconnected (`Err`: stop reading its messages).
    #[allow(clippy::too_many_arguments)]
    fn within_rate(
        bucket: &mut Option<TokenBucket>,
        refused_in_row: &mut u32,
        conn: ConnId,
        msg: &ClientMsg<'_>,
        rate: Option<&(MessageRate, Limit)>,
        now: Instant,
        chat: &metrics::ChatMetrics,
        outputs: &mut Vec<Output>,
    ) -> Result<bool, ()> {
        let Some((m, limit)) = rate else {
            return Ok(true);
        };
        // A name and a goodbye always pass: one lets a client in, the
        // other out.
        if matches!(msg, ClientMsg::Hello { .. } | ClientMsg::Bye) {
            return Ok(true);
        }
        let bucket = bucket.get_or_insert_with(|| TokenBucket::full(*limit, now));
        if bucket.take(*limit, now) {
            *refused_in_row = 0;
            return Ok(true);
        }
        *refused_in_row += 1;
        metrics::add(&chat.messages_refused, 1);
        if *refused_in_row >= MESSAGE_REFUSALS_BEFORE_DISCONNECT {
            metrics::add(&chat.rate_disconnects, 1);
            outputs.push(Output::To(
                conn,
                Event::error(
                    ErrorCode::RateLimited,
                    format!(
                        "{} messages in a row over the message rate ({}, burst {}); disconnecting",
                        refused_in_row, m.rate, m.burst
                    ),
                ),
            ));
            return Err(());
        }
        outputs.push(Output::To(
            conn,
            Event::error(
                ErrorCode::RateLimited,
                format!(
                    "message not delivered: over the message rate ({}, burst {})",
                    m.rate, m.burst
                ),
            ),
        ));
        Ok(false)
    }

    /// This room as one node of a cluster, telling the others through
    /// `uplink` and hearing from them through [`RoomService::remote`].
    /// Before any connection: the room starts empty.
    pub fn with_cluster(mut self, uplink: Uplink) -> ChatRoom {
        self.hub = Hub::new(self.hub.limits()).with_cluster();
        self.uplink = Some(uplink);
        self
    }

    /// Handles what `conn` sent that is buffered and whole, unless it waits
    /// for the cluster to accept its name: then its messages stay buffered
    /// (up to twice its longest frame) until the answer comes.
    fn decode(&mut self, conn: ConnId, out: &mut Outbox) {
        let now = Instant::now();
        while !self.hub.is_pending(conn) {
            // What the messages before caused goes first, so the client
            // hears its replies in the order it asked.
            self.route(out);
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            match client.decoder.next_decoded() {
                Ok(Some(Decoded::Msg(msg))) => match Self::within_rate(
                    &mut client.bucket,
                    &mut client.refused_in_row,
                    conn,
                    &msg,
                    self.message_rate.as_ref(),
                    now,
                    &self.metrics.chat,
                    &mut self.outputs,
                ) {
                    Ok(true) => self.hub.handle(conn, msg, &mut self.outputs),
                    Ok(false) => {}
                    Err(()) => {
                        log::debug!(
                            "server {}: closing {}: too many messages over the message rate",
                            self.server,
                            client.peer
                        );
                        self.hub.leave(conn, LeaveReason::Error, &mut self.outputs);
                        self.outputs.push(Output::Close(conn));
                        return;
                    }
                },
                Ok(Some(Decoded::Reply(bytes))) => out.to(conn, |b| b.extend_from_slice(bytes)),
                Ok(Some(Decoded::Close)) => {
                    self.hub
                        .leave(conn, LeaveReason::Disconnected, &mut self.outputs);
                    self.outputs.push(Output::Close(conn));
                    return;
                }
                Ok(None) => return,
                Err(e) => return self.refuse_bytes(conn, &e),
            }
        }
        let Some(client) = self.clients.get(&conn) else {
            return;
        };
        let held = client.decoder.pending().len();
        let limit = self.groups[client.group].0.max_frame.saturating_mul(2);
        if held > limit {
            let e = DecodeError::too_large(format!(
                "more than {limit} bytes sent before the name was accepted"
            ));
            self.refuse_bytes(conn, &e);
        }
    }

    /// `conn` sent something it may not: it is told, leaves, and is closed.
    fn refuse_bytes(&mut self, conn: ConnId, e: &DecodeError) {
        if let Some(client) = self.clients.get(&conn) {
            log::debug!("server {}: closing {}: {e}", self.server, client.peer);
        }
        // Queued behind what the frames before it caused, so the client
        // hears its replies in the order it asked.
        self.outputs.push(Output::To(conn, e.to_event()));
        self.hub.leave(conn, LeaveReason::Error, &mut self.outputs);
        self.outputs.push(Output::Close(conn));
    }

    /// Tells `conn` why it times out, has it leave the room, and closes it.
    fn time_out(&mut self, conn: ConnId, why: &'static str, out: &mut Outbox) {
        self.outputs
            .push(Output::To(conn, Event::error(ErrorCode::TimedOut, why)));
        self.hub
            .leave(conn, LeaveReason::TimedOut, &mut self.outputs);
        self.outputs.push(Output::Close(conn));
        self.dispatch(out);
    }

    /// Turns the hub's outputs into bytes for the runtime, sends what the
    /// other nodes must hear, and updates the members gauge.
    fn dispatch(&mut self, out: &mut Outbox) {
        self.route(out);
        self.send_uplink();
        // Who is in the room is the hub's to say: a client that left is
        // no member, though its connection may still be closing.
        self.metrics
            .chat
            .members
            .store(i64::from(self.hub.online()), Ordering::Relaxed);
    }

    /// The hub's outputs so far, as bytes for the runtime; what goes to
    /// the cluster waits in the uplink, so that all one input caused
    /// leaves as one batch (see [`ChatRoom::send_uplink`]).
    fn route(&mut self, out: &mut Outbox) {
        for output in self.outputs.drain(..) {
            match output {
                Output::To(id, event) => {
                    let Some(client) = self.clients.get_mut(&id) else {
                        continue;
                    };
                    if let Event::Error { code, reason } = &event {
                        client.last_error = Some((*code, reason.clone()));
                    }
                    if !client.decoder.takes_events() {
                        continue;
                    }
                    let codec = &self.groups[client.group].0;
                    out.to(id, |b| codec.encode(&event, b));
                    if matches!(event, Event::Welcome { .. }) && !client.welcomed {
                        client.welcomed = true;
                        out.join(id, client.group);
                        self.groups[client.group].1 += 1;
                    }
                }
                Output::Broadcast { except, event } => {
                    if matches!(event, Event::Message { .. }) {
                        metrics::add(&self.metrics.chat.messages, 1);
                    }
                    for (group, (codec, members)) in self.groups.iter().enumerate() {
                        if *members > 0 {
                            out.group(group, except, |b| codec.encode(&event, b));
                        }
                    }
                }
                Output::Close(id) => {
                    if let Some(client) = self.clients.get_mut(&id) {
                        let error = client.last_error.as_ref().map(|(c, r)| (*c, &**r));
                        self.scratch.clear();
                        client.decoder.goodbye(error, &mut self.scratch);
                        if !self.scratch.is_empty() {
                            out.to(id, |b| b.extend_from_slice(&self.scratch));
                        }
                    }
                    out.close(id);
                }
                Output::Cluster(msg) => {
                    if let Some(uplink) = &mut self.uplink {
                        uplink.push(msg);
                    }
                }
            }
        }
    }

    /// Hands the bridge what the other nodes must hear, as one batch.
    fn send_uplink(&mut self) {
        if let Some(uplink) = &mut self.uplink {
            let before = uplink.dropped();
            let dropped = uplink.send();
            if dropped > 0 {
                metrics::add(&self.metrics.chat.cluster.dropped, dropped);
                // The first, then at every power of two: a backlog
                // towards Redis does not flood the log.
                let after = uplink.dropped();
                if (before + 1..=after).any(u64::is_power_of_two) {
                    log::warn!(
                        "server {}: Redis is behind; {after} message(s) not sent to the other nodes",
                        self.server
                    );
                }
            }
        }
    }
}

impl RoomService for ChatRoom {
    /// News from the other nodes of a cluster, as much as came at once:
    /// dispatched together, so that a burst reaches each member in one
    /// write.
    type Remote = Vec<FromCluster>;

    fn remote(&mut self, news: Vec<FromCluster>, out: &mut Outbox) {
        for news in news {
            let answered = match &news {
                FromCluster::Claimed { client, .. } => Some(*client),
                _ => None,
            };
            self.hub.remote(news, &mut self.outputs);
            // A client welcomed now may have said more meanwhile.
            if let Some(conn) = answered {
                self.decode(conn, out);
            }
        }
        self.dispatch(out);
    }

    fn connected(&mut self, conn: ConnId, listener: usize, peer: &str, _out: &mut Outbox) {
        let Some((codec, group)) = self.listeners.get(listener) else {
            return;
        };
        self.hub.connect(conn, peer);
        self.clients.insert(
            conn,
            Client {
                decoder: codec.decoder(),
                group: *group,
                peer: peer.to_owned(),
                welcomed: false,
                last_error: None,
                bucket: None,
                refused_in_row: 0,
            },
        );
    }

    fn received(&mut self, conn: ConnId, bytes: &[u8], out: &mut Outbox) {
        let Some(client) = self.clients.get_mut(&conn) else {
            return;
        };
        client.decoder.extend(bytes);
        self.decode(conn, out);
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

    fn tick_every(&self) -> Option<Duration> {
        self.keepalive_every
    }

    /// A keepalive round: pings for silent WebSocket clients, and the end
    /// of those that answered none.
    fn tick(&mut self, now: Instant, out: &mut Outbox) {
        if self.keepalive_every.is_none() {
            return;
        }
        for (&id, client) in &mut self.clients {
            self.scratch.clear();
            match client.decoder.keepalive(now, &mut self.scratch) {
                Keepalive::Quiet => {}
                Keepalive::Pinged => out.to(id, |b| b.extend_from_slice(&self.scratch)),
                Keepalive::Expired => self.expired.push(id),
            }
        }
        for id in std::mem::take(&mut self.expired) {
            self.time_out(id, "no answer to a ping", out);
        }
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
        let mut r = room(bincode.clone());
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

    /// `message_rate` 1/h with a burst of 2: the third message is refused
    /// with `rate_limited` in the client's dialect and reaches no one; the
    /// 20th refusal in a row closes the client, and the counters say so.
    #[test]
    fn messages_over_the_rate_are_refused_then_the_client_is_closed() {
        let line = ChatCodec::new(Dialect::Line, 1 << 16);
        let metrics = ServerMetrics::detached("t");
        let rate = MessageRate {
            rate: Rate::parse("1/h").unwrap(),
            burst: 2,
        };
        let mut r = ChatRoom::with(
            "t",
            &[line],
            HubLimits { max_clients: 8 },
            Some(rate),
            metrics.clone(),
        );
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:1", &mut out);
        r.connected(2, 0, "127.0.0.1:2", &mut out);
        r.received(1, b"ann\n", &mut out);
        r.received(2, b"bob\n", &mut out);
        out.clear();
        r.received(1, b"one\ntwo\nthree\n", &mut out);
        let to_ann = String::from_utf8_lossy(&sent_to(&out, 1)).into_owned();
        assert_eq!(
            to_ann,
            "* error: message not delivered: over the message rate (1/h, burst 2)\n"
        );
        let groups = out
            .sends
            .iter()
            .filter(|s| matches!(s, Send::Group { .. }))
            .count();
        assert_eq!(groups, 2, "one and two reach the room, three does not");
        out.clear();
        let flood = "x\n".repeat(19);
        r.received(1, flood.as_bytes(), &mut out);
        let to_ann = String::from_utf8_lossy(&sent_to(&out, 1)).into_owned();
        assert_eq!(to_ann.lines().count(), 19, "{to_ann}");
        assert!(
            to_ann.ends_with("* error: 20 messages in a row over the message rate (1/h, burst 2); disconnecting\n"),
            "{to_ann}"
        );
        assert!(out.sends.contains(&Send::Close(1)));
        let chat = &metrics.chat;
        assert_eq!(chat.messages_refused.load(Ordering::Relaxed), 20);
        assert_eq!(chat.rate_disconnects.load(Ordering::Relaxed), 1);
        assert_eq!(chat.messages.load(Ordering::Relaxed), 2);
        assert_eq!(chat.members.load(Ordering::Relaxed), 1, "ann left the room");
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

    fn websocket(ping: Option<Duration>) -> ChatCodec {
        let settings = crate::chat::WebSocketSettings {
            allowed_origins: Vec::new(),
            ping_interval: ping,
        };
        ChatCodec::new(Dialect::websocket(settings), 1 << 16)
    }

    /// The payloads of the server frames in `bytes`, as text (`close
    /// CODE reason`, `ping`, or the JSON of a text frame), after an HTTP
    /// response if one leads.
    fn frames(mut bytes: &[u8]) -> Vec<String> {
        if bytes.starts_with(b"HTTP/") {
            let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            bytes = &bytes[end..];
        }
        let mut got = Vec::new();
        while let [op, len, rest @ ..] = bytes {
            let (len, rest) = match *len {
                126 => (
                    usize::from(u16::from_be_bytes([rest[0], rest[1]])),
                    &rest[2..],
                ),
                n => (usize::from(n), rest),
            };
            let payload = &rest[..len];
            got.push(match op & 0x0f {
                1 => String::from_utf8_lossy(payload).into_owned(),
                8 => format!(
                    "close {} {}",
                    u16::from_be_bytes([payload[0], payload[1]]),
                    String::from_utf8_lossy(&payload[2..])
                ),
                9 => "ping".into(),
                10 => "pong".into(),
                other => format!("opcode {other}"),
            });
            bytes = &rest[len..];
        }
        got
    }

    fn upgrade() -> &'static [u8] {
        crate::codec::chat::websocket::tests::UPGRADE
    }

    fn ws(msg: ClientMsg<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        crate::codec::chat::websocket::encode_client_msg(
            msg,
            crate::codec::chat::websocket::CLIENT_MASK,
            &mut out,
        );
        out
    }

    /// A browser and an `nc` user in one room: the upgrade, the welcome,
    /// each one's message to the other in its own dialect, and the notices.
    #[test]
    fn a_browser_and_a_line_client_share_the_room() {
        let line = ChatCodec::new(Dialect::Line, 1 << 16);
        let mut r = ChatRoom::new("t", &[line, websocket(None)], HubLimits { max_clients: 8 });
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        r.received(1, b"nc\n", &mut out);
        r.connected(2, 1, "127.0.0.1:5001", &mut out);
        out.clear();
        let mut input = upgrade().to_vec();
        input.extend(ws(ClientMsg::Hello { name: "Dian" }));
        input.extend(ws(ClientMsg::Say { text: "<b>hi</b>" }));
        r.received(2, &input, &mut out);
        let to_browser = sent_to(&out, 2);
        assert!(to_browser.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
        assert_eq!(
            frames(&to_browser),
            [r#"{"type":"welcome","id":2,"addr":"127.0.0.1:5001","online":2}"#]
        );
        // The notice and the message reach the line group, encoded once.
        let line_group: Vec<String> = out
            .sends
            .iter()
            .filter_map(|s| match s {
                Send::Group {
                    group: 0,
                    except: Some(2),
                    bytes,
                } => Some(String::from_utf8_lossy(&out.bytes[bytes.clone()]).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(
            line_group,
            ["* Dian joined (2 online)\n", "[Dian] <b>hi</b>\n"]
        );
        assert!(out.sends.contains(&Send::Join(2, 1)));

        out.clear();
        r.received(1, b"hello browser\n", &mut out);
        let to_ws: Vec<Vec<String>> = out
            .sends
            .iter()
            .filter_map(|s| match s {
                Send::Group {
                    group: 1, bytes, ..
                } => Some(frames(&out.bytes[bytes.clone()])),
                _ => None,
            })
            .collect();
        assert_eq!(
            to_ws,
            [[r#"{"type":"message","from":"nc","text":"hello browser"}"#]]
        );
    }

    /// A taken name: the error as JSON, then a close frame with its status,
    /// then the close; a ping and the page each get their answer in order.
    #[test]
    fn websocket_replies_and_goodbyes_come_in_order() {
        let mut r = room(websocket(None));
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        let mut input = upgrade().to_vec();
        input.extend(ws(ClientMsg::Hello { name: "Dian" }));
        r.received(1, &input, &mut out);
        r.connected(2, 0, "127.0.0.1:5001", &mut out);
        out.clear();
        let mut input = upgrade().to_vec();
        let mut ping = Vec::new();
        crate::codec::chat::websocket::frame::push_masked(
            &mut ping,
            tungstenite::protocol::frame::coding::OpCode::Control(
                tungstenite::protocol::frame::coding::Control::Ping,
            ),
            true,
            b"",
            [1, 2, 3, 4],
        );
        input.extend(&ping);
        input.extend(ws(ClientMsg::Hello { name: "Dian" }));
        r.received(2, &input, &mut out);
        assert_eq!(
            frames(&sent_to(&out, 2)),
            [
                "pong",
                r#"{"type":"error","code":1,"reason":"name is taken"}"#,
                "close 1008 name is taken"
            ]
        );
        assert_eq!(out.sends.last(), Some(&Send::Close(2)));

        // The page: a response, a close, no room event.
        out.clear();
        r.connected(3, 0, "127.0.0.1:5002", &mut out);
        r.received(3, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &mut out);
        let page = sent_to(&out, 3);
        assert!(page.starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert_eq!(out.sends.last(), Some(&Send::Close(3)));
        assert!(!out.sends.iter().any(|s| matches!(s, Send::Group { .. })));

        // A bye: the others are told, the client gets a normal close.
        out.clear();
        r.received(1, &ws(ClientMsg::Bye), &mut out);
        assert_eq!(frames(&sent_to(&out, 1)), ["close 1000 goodbye"]);
        assert_eq!(out.sends.last(), Some(&Send::Close(1)));
    }

    #[test]
    fn keepalive_ticks_ping_the_silent_and_close_the_mute() {
        let sec = Duration::from_secs(1);
        let mut r = ChatRoom::new(
            "t",
            &[ChatCodec::new(Dialect::Line, 100), websocket(Some(sec))],
            HubLimits { max_clients: 8 },
        );
        assert_eq!(r.tick_every(), Some(sec));
        assert_eq!(room(ChatCodec::new(Dialect::Line, 100)).tick_every(), None);
        let mut out = Outbox::default();
        r.connected(1, 1, "127.0.0.1:5000", &mut out);
        let mut input = upgrade().to_vec();
        input.extend(ws(ClientMsg::Hello { name: "Dian" }));
        r.received(1, &input, &mut out);
        r.connected(2, 0, "127.0.0.1:5001", &mut out);
        r.received(2, b"nc\n", &mut out);
        let t0 = Instant::now();
        for (at, want) in [
            (t0, vec![]),
            // Its hello was heard since the clock began.
            (t0 + sec, vec![]),
            (t0 + 2 * sec, vec!["ping".to_string()]),
            (
                t0 + 3 * sec,
                vec![
                    r#"{"type":"error","code":9,"reason":"no answer to a ping"}"#.to_string(),
                    "close 1008 no answer to a ping".into(),
                ],
            ),
        ] {
            out.clear();
            r.tick(at, &mut out);
            assert_eq!(frames(&sent_to(&out, 1)), want);
            // The line client is never pinged.
            assert!(sent_to(&out, 2).is_empty());
        }
        assert_eq!(out.sends.last(), Some(&Send::Close(1)));
    }

    /// What a clustered room handed its bridge.
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<crate::service::chat::ToCluster>>>);

    impl crate::service::chat::Bridge for Sink {
        fn offer(
            &mut self,
            msgs: Vec<crate::service::chat::ToCluster>,
        ) -> Result<(), Vec<crate::service::chat::ToCluster>> {
            self.0.lock().unwrap().extend(msgs);
            Ok(())
        }
    }

    /// A nc user types its name and a message before the cluster has said
    /// whether the name is free: the message waits, and goes out after the
    /// welcome, in order.
    #[test]
    fn what_a_pending_client_says_waits_for_its_welcome() {
        use crate::service::chat::{Claim, ToCluster};
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let line = ChatCodec::new(Dialect::Line, 1 << 16);
        let mut r = room(line).with_cluster(Uplink::new(Box::new(Sink(sent.clone()))));
        let mut out = Outbox::default();
        r.remote(vec![FromCluster::Link { up: true }], &mut out);
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        r.received(1, b"bob\nhello\n/who\n", &mut out);
        assert!(out.sends.is_empty(), "{:?}", out.sends);
        assert_eq!(
            *sent.lock().unwrap(),
            [ToCluster::Claim {
                client: 1,
                name: "bob".into()
            }]
        );
        r.remote(
            vec![
                FromCluster::Joined {
                    node: "node-b".into(),
                    name: "ayu".into(),
                    addr: "10.0.0.2:7".into(),
                },
                FromCluster::Claimed {
                    client: 1,
                    name: "bob".into(),
                    claim: Claim::Granted,
                },
            ],
            &mut out,
        );
        assert_eq!(
            String::from_utf8_lossy(&sent_to(&out, 1)),
            "* welcome bob, 2 online; /who lists them, /quit leaves\n\
             * online (2): ayu, bob\n"
        );
        assert_eq!(
            sent.lock().unwrap()[1..],
            [
                ToCluster::Joined {
                    name: "bob".into(),
                    addr: "127.0.0.1:5000".into()
                },
                ToCluster::Said {
                    from: "bob".into(),
                    text: "hello".into()
                }
            ]
        );
    }

    /// A pending client may not pile up bytes without bound meanwhile.
    #[test]
    fn a_pending_client_that_floods_is_closed() {
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let line = ChatCodec::new(Dialect::Line, 100);
        let mut r = room(line).with_cluster(Uplink::new(Box::new(Sink(sent.clone()))));
        let mut out = Outbox::default();
        r.connected(1, 0, "127.0.0.1:5000", &mut out);
        r.received(1, b"bob\n", &mut out);
        for _ in 0..20 {
            r.received(1, b"0123456789\n", &mut out);
        }
        assert!(
            String::from_utf8_lossy(&sent_to(&out, 1))
                .contains("more than 200 bytes sent before the name was accepted")
        );
        assert_eq!(out.sends.last(), Some(&Send::Close(1)));
        assert_eq!(
            sent.lock().unwrap().last(),
            Some(&crate::service::chat::ToCluster::Release { name: "bob".into() })
        );
    }
}
