//! The websocket dialect's messages: one JSON object per text message,
//! its kind in `"type"`, its fields those of the bincode dialect's
//! messages under the same names. Golden tests in `mod.rs` pin the bytes.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::chat::{ClientMsg, Event};

/// Client to server: `{"type":"hello","name":"Dian"}`, `{"type":"say","text":"hi"}`,
/// `{"type":"who"}`, `{"type":"bye"}`. Strings borrow from the message
/// unless they hold escapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum WireClientMsg<'a> {
    Hello {
        #[serde(borrow)]
        name: Cow<'a, str>,
    },
    Say {
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    Who,
    Bye,
}

impl<'a> From<ClientMsg<'a>> for WireClientMsg<'a> {
    fn from(msg: ClientMsg<'a>) -> WireClientMsg<'a> {
        match msg {
            ClientMsg::Hello { name } => WireClientMsg::Hello { name: name.into() },
            ClientMsg::Say { text } => WireClientMsg::Say { text: text.into() },
            ClientMsg::Who => WireClientMsg::Who,
            ClientMsg::Bye => WireClientMsg::Bye,
        }
    }
}

/// Server to client, as a client reads it: `welcome` (`id`, `addr`,
/// `online`), `message` (`from`, `text`), `joined` (`name`, `addr`,
/// `online`, and `node` when they joined on another node of a cluster),
/// `left` (`name`, `online`, `node` likewise), `roster` (`names`), `error`
/// (`code`, `reason`), `notice` (`text`: news of the room itself, such as
/// its link to the cluster), the fields in that order. `id` may pass 2^53, which
/// a browser's numbers do not hold exactly; it names the connection in logs
/// only. An error `code` is an [`ErrorCode`](crate::chat::ErrorCode) number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerJson<'a> {
    Welcome {
        id: u64,
        #[serde(borrow)]
        addr: Cow<'a, str>,
        online: u32,
    },
    Message {
        #[serde(borrow)]
        from: Cow<'a, str>,
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
    Joined {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow)]
        addr: Cow<'a, str>,
        online: u32,
        #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
        node: Option<Cow<'a, str>>,
    },
    Left {
        #[serde(borrow)]
        name: Cow<'a, str>,
        online: u32,
        #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
        node: Option<Cow<'a, str>>,
    },
    Roster {
        #[serde(borrow)]
        names: Vec<Cow<'a, str>>,
    },
    Error {
        code: u16,
        #[serde(borrow)]
        reason: Cow<'a, str>,
    },
    Notice {
        #[serde(borrow)]
        text: Cow<'a, str>,
    },
}

impl<'a> From<&'a Event> for ServerJson<'a> {
    fn from(event: &'a Event) -> ServerJson<'a> {
        match event {
            Event::Welcome {
                id, addr, online, ..
            } => ServerJson::Welcome {
                id: *id,
                addr: Cow::Borrowed(addr),
                online: *online,
            },
            Event::Message { from, text } => ServerJson::Message {
                from: Cow::Borrowed(from),
                text: Cow::Borrowed(text),
            },
            Event::Joined {
                name,
                addr,
                online,
                node,
            } => ServerJson::Joined {
                name: Cow::Borrowed(name),
                addr: Cow::Borrowed(addr),
                online: *online,
                node: node.as_deref().map(Cow::Borrowed),
            },
            Event::Left { name, online, node } => ServerJson::Left {
                name: Cow::Borrowed(name),
                online: *online,
                node: node.as_deref().map(Cow::Borrowed),
            },
            Event::Notice { text } => ServerJson::Notice {
                text: Cow::Borrowed(text),
            },
            Event::Roster { names } => ServerJson::Roster {
                names: names.iter().map(|n| Cow::Borrowed(&**n)).collect(),
            },
            Event::Error { code, reason } => ServerJson::Error {
                code: code.code(),
                reason: Cow::Borrowed(reason),
            },
        }
    }
}

/// Appends `event` as JSON.
pub fn write_event(event: &Event, out: &mut Vec<u8>) {
    // Serialising strings and numbers into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &ServerJson::from(event));
}

/// Appends `msg` as a client sends it.
pub fn write_client_msg(msg: ClientMsg<'_>, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, &WireClientMsg::from(msg));
}

/// A client's message, or why it is not one.
pub fn read_client_msg(text: &str) -> Result<WireClientMsg<'_>, String> {
    serde_json::from_str(text).map_err(|e| {
        let e = e.to_string();
        // serde_json says where ("at line 1 column 9"); the kinds are
        // listed for a message of no known type.
        format!("not a chat message ({e}); expected {{\"type\": \"hello\" | \"say\" | \"who\" | \"bye\", ...}}")
    })
}
