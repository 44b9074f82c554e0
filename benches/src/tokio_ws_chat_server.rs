//! The peer netlabd's websocket dialect is compared with: tokio-tungstenite's
//! own broadcast chat server (`examples/server.rs` in its repository, which
//! its README points to), kept as written there: a multi-thread tokio
//! runtime, one task per connection, `accept_async`, a `PeerMap` of
//! unbounded channels behind a mutex, each message cloned into every other
//! peer's channel and forwarded to its socket by `forward`.
//!
//! Two changes, so that the same load generator (`netlab bench chat
//! --dialect websocket`) drives both servers: it speaks netlabd's JSON
//! messages (a `hello` joins the room and is answered with a `welcome`;
//! a `say` reaches the others as `{"type":"message","from":...,"text":...}`,
//! serialised once and cloned, as the example clones the message it
//! relays), and it prints nothing per message (the example's `println!`
//! per message would measure the terminal). Sockets get TCP_NODELAY, as
//! netlabd's do. Names are not checked for uniqueness (the bench's are
//! unique).
//!
//! `--listen ADDR` (default 127.0.0.1:0); the bound address is the first
//! line on stdout.

#[path = "peer.rs"]
mod peer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use futures_channel::mpsc::{UnboundedSender, unbounded};
use futures_util::{StreamExt, future, pin_mut, stream::TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::Message;

type Tx = UnboundedSender<Message>;
type PeerMap = Arc<Mutex<HashMap<SocketAddr, Tx>>>;

/// What a client sends: netlabd's websocket dialect.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum In {
    Hello { name: String },
    Say { text: String },
    Who,
    Bye,
}

/// What the room sends, fields in netlabd's order.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Out<'a> {
    Welcome {
        id: u64,
        addr: &'a str,
        online: u32,
    },
    Message {
        from: &'a str,
        text: &'a str,
    },
    Joined {
        name: &'a str,
        addr: &'a str,
        online: u32,
    },
    Left {
        name: &'a str,
        online: u32,
    },
}

fn json(out: &Out<'_>) -> Message {
    Message::text(serde_json::to_string(out).unwrap_or_default())
}

/// Sends `msg` to every peer but `from`, as the example does.
fn broadcast(peer_map: &PeerMap, from: SocketAddr, msg: Message) {
    let peers = peer_map.lock().unwrap();
    let broadcast_recipients = peers
        .iter()
        .filter(|(peer_addr, _)| peer_addr != &&from)
        .map(|(_, ws_sink)| ws_sink);
    for recp in broadcast_recipients {
        let _ = recp.unbounded_send(msg.clone());
    }
}

async fn handle_connection(peer_map: PeerMap, raw_stream: TcpStream, addr: SocketAddr, id: u64) {
    let _ = raw_stream.set_nodelay(true);
    let Ok(ws_stream) = tokio_tungstenite::accept_async(raw_stream).await else {
        return;
    };

    let (tx, rx) = unbounded();
    let (outgoing, incoming) = ws_stream.split();
    let name: Mutex<Option<String>> = Mutex::new(None);
    let addr_text = addr.to_string();

    let broadcast_incoming = incoming.try_for_each(|msg| {
        let Ok(text) = msg.to_text() else {
            return future::ok(());
        };
        match serde_json::from_str::<In>(text) {
            Ok(In::Hello { name: given }) => {
                let online = {
                    let mut peers = peer_map.lock().unwrap();
                    peers.insert(addr, tx.clone());
                    peers.len() as u32
                };
                let welcome = Out::Welcome {
                    id,
                    addr: &addr_text,
                    online,
                };
                let _ = tx.unbounded_send(json(&welcome));
                let joined = Out::Joined {
                    name: &given,
                    addr: &addr_text,
                    online,
                };
                broadcast(&peer_map, addr, json(&joined));
                *name.lock().unwrap() = Some(given);
            }
            Ok(In::Say { text }) => {
                if let Some(from) = name.lock().unwrap().as_deref() {
                    broadcast(&peer_map, addr, json(&Out::Message { from, text: &text }));
                }
            }
            Ok(In::Who | In::Bye) | Err(_) => {}
        }
        future::ok(())
    });

    let receive_from_others = rx.map(Ok).forward(outgoing);

    pin_mut!(broadcast_incoming, receive_from_others);
    future::select(broadcast_incoming, receive_from_others).await;

    let online = {
        let mut peers = peer_map.lock().unwrap();
        peers.remove(&addr);
        peers.len() as u32
    };
    if let Some(name) = name.lock().unwrap().take() {
        broadcast(
            &peer_map,
            addr,
            json(&Out::Left {
                name: &name,
                online,
            }),
        );
    }
}

fn main() -> ExitCode {
    peer::run("tokio-ws-chat-server", serve)
}

async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let state = PeerMap::new(Mutex::new(HashMap::new()));
    let mut next_id = 0;
    // Let's spawn the handling of each connection in a separate task.
    loop {
        let (stream, addr) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(handle_connection(state.clone(), stream, addr, next_id));
    }
}
