//! What a configured server runs: turns a [`ServerConfig`] into its
//! service (with its codecs and limits) and its listeners' TLS, and starts
//! it on the runtime its model names. The one place that knows both the
//! protocols and the runtimes; `server` knows no protocol, and the
//! services no socket.

use std::io;
use std::sync::Arc;

use crate::codec::chat::ChatCodec;
use crate::config::{ServerConfig, ServiceConfig};
use crate::metrics::{Registry, ServerMetrics, ServiceKind};
use crate::server::{
    BoundServer, Hosted, QueueLimits, RoomLimits, RoomRuntime, RunningServer, ServerError,
};
use crate::service::StreamService;
use crate::service::chat::{ChatRoom, HubLimits, MessageRate, Uplink};
use crate::tls::TlsServer;

/// Starts `bound` serving what its configuration says, with counters of
/// its own.
pub fn start(bound: BoundServer) -> Result<RunningServer, ServerError> {
    start_in(bound, None)
}

/// Starts `bound`, counting in `registry`'s counters for its name when
/// given (so they carry on across a reload).
pub fn start_in(
    bound: BoundServer,
    registry: Option<&Registry>,
) -> Result<RunningServer, ServerError> {
    let config = bound.config().clone();
    let metrics = registry.map_or_else(
        || ServerMetrics::detached(&config.name),
        |r| r.server(&config.name),
    );
    metrics.set_service(match config.service {
        ServiceConfig::Echo(_) | ServiceConfig::UdpEcho(_) => ServiceKind::Echo,
        ServiceConfig::Count(_) => ServiceKind::Count,
        ServiceConfig::Chat(_) => ServiceKind::Chat,
    });
    let tls = tls_of(&config);
    let hosted = hosted(&config, &metrics).map_err(|source| ServerError {
        server: config.name.clone(),
        location: None,
        what: "cannot start".into(),
        source,
    })?;
    bound.start_metered(hosted, tls, metrics)
}

/// The service of `config`, ready for a runtime, counting in `metrics`.
pub fn hosted(config: &ServerConfig, metrics: &Arc<ServerMetrics>) -> io::Result<Hosted> {
    Ok(match &config.service {
        ServiceConfig::Echo(s) => Hosted::Stream(StreamService::Echo(s.clone())),
        ServiceConfig::Count(s) => Hosted::Stream(StreamService::Count(*s)),
        ServiceConfig::UdpEcho(s) => Hosted::Datagram(s.clone()),
        ServiceConfig::Chat(chat) => {
            let codecs: Vec<ChatCodec> = chat
                .dialects
                .iter()
                .map(|d| ChatCodec::new(d.clone(), chat.max_frame))
                .collect();
            let mut room = ChatRoom::with(
                &config.name,
                &codecs,
                HubLimits {
                    max_clients: chat.max_clients,
                },
                chat.message_rate
                    .map(|(rate, burst)| MessageRate { rate, burst }),
                metrics.clone(),
            );
            // In a cluster, the room holds its end of the bridge to Redis
            // (whose threads stop when the room is dropped, with its
            // runtime), and the bridge hands news to the room's inbox.
            metrics
                .chat
                .cluster
                .clustered
                .store(chat.cluster.is_some(), std::sync::atomic::Ordering::Relaxed);
            let bridge = match &chat.cluster {
                Some(cluster) => {
                    let (bridge, end) =
                        crate::cluster::bridge(cluster, &config.name, metrics.clone())?;
                    room = room.with_cluster(Uplink::new(Box::new(end)));
                    Some(bridge)
                }
                None => None,
            };
            let (runtime, inbox) = RoomRuntime::new(
                room,
                RoomLimits {
                    queue: QueueLimits {
                        bytes: chat.queue_bytes,
                        frames: chat.queue_frames,
                    },
                    login_timeout: chat.login_timeout,
                    workers: config.workers,
                },
            )?;
            if let Some(bridge) = bridge {
                bridge.start(Box::new(move |news| inbox.send(news)))?;
            }
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
