//! What a configured server runs: turns a [`ServerConfig`] into its
//! service (with its codecs and limits) and its listeners' TLS, and starts
//! it on the runtime its model names. The one place that knows both the
//! protocols and the runtimes; `server` knows no protocol, and the
//! services no socket.

use std::io;
use std::sync::Arc;

use crate::codec::chat::ChatCodec;
use crate::config::{ServerConfig, ServiceConfig};
use crate::server::{
    BoundServer, Hosted, QueueLimits, RoomLimits, RoomRuntime, RunningServer, ServerError,
};
use crate::service::StreamService;
use crate::service::chat::{ChatRoom, HubLimits};
use crate::tls::TlsServer;

/// Starts `bound` serving what its configuration says.
pub fn start(bound: BoundServer) -> Result<RunningServer, ServerError> {
    let config = bound.config().clone();
    let tls = tls_of(&config);
    let hosted = hosted(&config).map_err(|source| ServerError {
        server: config.name.clone(),
        location: None,
        what: "cannot start".into(),
        source,
    })?;
    bound.start(hosted, tls)
}

/// The service of `config`, ready for a runtime.
pub fn hosted(config: &ServerConfig) -> io::Result<Hosted> {
    Ok(match &config.service {
        ServiceConfig::Echo(s) => Hosted::Stream(StreamService::Echo(s.clone())),
        ServiceConfig::Count(s) => Hosted::Stream(StreamService::Count(*s)),
        ServiceConfig::UdpEcho(s) => Hosted::Datagram(s.clone()),
        ServiceConfig::Chat(chat) => {
            let codecs: Vec<ChatCodec> = chat
                .dialects
                .iter()
                .map(|&d| ChatCodec::new(d, chat.max_frame))
                .collect();
            let room = ChatRoom::new(
                &config.name,
                &codecs,
                HubLimits {
                    max_clients: chat.max_clients,
                },
            );
            // The room's inbox is for events from other threads; a room
            // on its own has none to hand it.
            let (runtime, _inbox) = RoomRuntime::new(
                room,
                RoomLimits {
                    queue: QueueLimits {
                        bytes: chat.queue_bytes,
                        frames: chat.queue_frames,
                    },
                    login_timeout: chat.login_timeout,
                },
            )?;
            Hosted::Room(runtime)
        }
    })
}

/// Each listener's TLS, in `listen` order.
fn tls_of(config: &ServerConfig) -> Vec<Option<Arc<TlsServer>>> {
    config
        .listen
        .iter()
        .map(|l| {
            l.tls
                .as_ref()
                .map(|t| Arc::new(TlsServer::new(t.loaded.clone())))
        })
        .collect()
}
