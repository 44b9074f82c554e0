//! The registry as Prometheus reads it: the text format 0.0.4, or
//! OpenMetrics when the scraper asks for it, both by prometheus-client.
//! Every family is written once with all its series, and a family without
//! series is left out.

use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::{Dropped, ListenerKind, ListenerMetrics, Refusal, Registry, ServiceKind, Shard};

/// How a scrape is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format an `Accept` header prefers: OpenMetrics when it ranks
    /// `application/openmetrics-text` above `text/plain` (by q-value, then
    /// by order), else the text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best: Option<(f32, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let format = match media.as_str() {
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "text/*" | "*/*" => Format::Text,
                _ => continue,
            };
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, format));
            }
        }
        best.filter(|(q, _)| *q > 0.0)
            .map_or(Format::Text, |(_, f)| f)
    }
}

pub(super) fn encode(registry: &Registry, format: Format) -> String {
    let mut pc = prometheus_client::registry::Registry::default();
    pc.register_collector(Box::new(Scrape(registry.clone())));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &pc),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &pc),
    };
    out
}

/// One scrape of the registry.
struct Scrape(Registry);

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scrape")
    }
}

pub(super) type Labels = Vec<(&'static str, String)>;

/// A value of a series.
#[derive(Clone, Copy)]
pub(super) enum Value {
    Count(u64),
    Int(i64),
    Float(f64),
}

/// Writes one family: its HELP and TYPE once, then every series; nothing
/// when it has none.
pub(super) fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: &[(Labels, Value)],
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let labelled = metric.encode_family(labels)?;
        match *value {
            Value::Count(v) => ConstCounter::new(v).encode(labelled)?,
            Value::Int(v) => ConstGauge::new(v).encode(labelled)?,
            Value::Float(v) => ConstGauge::new(v).encode(labelled)?,
        }
    }
    Ok(())
}

fn listener_labels(server: &str, l: &ListenerMetrics) -> Labels {
    vec![("server", server.to_owned()), ("listener", l.addr.clone())]
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let servers = self.0.servers();
        let listeners: Vec<(&str, ServiceKind, std::sync::Arc<ListenerMetrics>)> = servers
            .iter()
            .flat_map(|s| {
                let service = s.service();
                s.listeners()
                    .into_iter()
                    .map(move |l| (s.name.as_str(), service, l))
            })
            .collect();
        let tcp: Vec<_> = listeners
            .iter()
            .filter(|(_, _, l)| l.kind == ListenerKind::Tcp)
            .collect();
        let udp: Vec<_> = listeners
            .iter()
            .filter(|(_, _, l)| l.kind == ListenerKind::Udp)
            .collect();

        let per_tcp = |f: &dyn Fn(&ListenerMetrics) -> Value| -> Vec<(Labels, Value)> {
            tcp.iter()
                .map(|(s, _, l)| (listener_labels(s, l), f(l)))
                .collect()
        };
        let sum = |pick: fn(&Shard) -> &std::sync::atomic::AtomicU64| {
            move |l: &ListenerMetrics| Value::Count(l.total(pick))
        };
        for (name, help, kind, series) in [
            (
                "netlab_connections_accepted",
                "Connections admitted (past allow/deny, the limits, the rate and any PROXY header); one whose TLS handshake then fails is counted in netlab_connections_refused_total{reason=\"handshake\"} too.",
                MetricType::Counter,
                per_tcp(&sum(|s| &s.accepted)),
            ),
            (
                "netlab_connections_closed",
                "Connections served and since closed.",
                MetricType::Counter,
                per_tcp(&sum(|s| &s.closed)),
            ),
            (
                "netlab_connections_active",
                "Connections open now.",
                MetricType::Gauge,
                per_tcp(&|l| Value::Int(i64::try_from(l.active()).unwrap_or(i64::MAX))),
            ),
            (
                "netlab_received_bytes",
                "Bytes received from clients (plaintext, after TLS).",
                MetricType::Counter,
                per_tcp(&sum(|s| &s.bytes_received)),
            ),
            (
                "netlab_sent_bytes",
                "Bytes sent to clients (plaintext, before TLS).",
                MetricType::Counter,
                per_tcp(&sum(|s| &s.bytes_sent)),
            ),
        ] {
            family(&mut encoder, name, help, kind, &series)?;
        }

        let refused: Vec<(Labels, Value)> = tcp
            .iter()
            .flat_map(|(s, _, l)| {
                Refusal::ALL.iter().map(move |&why| {
                    let mut labels = listener_labels(s, l);
                    labels.push(("reason", why.as_str().to_owned()));
                    (labels, Value::Count(l.refusals(why)))
                })
            })
            .collect();
        family(
            &mut encoder,
            "netlab_connections_refused",
            "Connections refused before reaching the service, by reason: max_connections, per_source, rate, deny (allow/deny), handshake (TLS), proxy (PROXY protocol header).",
            MetricType::Counter,
            &refused,
        )?;

        let tls: Vec<_> = tcp
            .iter()
            .map(|(s, _, l)| {
                (
                    listener_labels(s, l),
                    Value::Count(l.total(|s| &s.tls_handshakes)),
                )
            })
            .collect();
        family(
            &mut encoder,
            "netlab_tls_handshakes",
            "TLS handshakes completed (failed ones are netlab_connections_refused_total{reason=\"handshake\"}).",
            MetricType::Counter,
            &tls,
        )?;

        let requests: Vec<_> = tcp
            .iter()
            .filter(|(_, service, _)| *service == ServiceKind::Count)
            .map(|(s, _, l)| {
                (
                    listener_labels(s, l),
                    Value::Count(l.total(|s| &s.requests)),
                )
            })
            .collect();
        family(
            &mut encoder,
            "netlab_requests",
            "Messages answered (count).",
            MetricType::Counter,
            &requests,
        )?;

        let per_udp = |pick: fn(&Shard) -> &std::sync::atomic::AtomicU64| -> Vec<(Labels, Value)> {
            udp.iter()
                .map(|(s, _, l)| (listener_labels(s, l), Value::Count(l.total(pick))))
                .collect()
        };
        family(
            &mut encoder,
            "netlab_datagrams_received",
            "UDP datagrams received.",
            MetricType::Counter,
            &per_udp(|s| &s.datagrams_received),
        )?;
        family(
            &mut encoder,
            "netlab_datagrams_answered",
            "UDP datagrams answered.",
            MetricType::Counter,
            &per_udp(|s| &s.datagrams_answered),
        )?;
        let dropped: Vec<(Labels, Value)> = udp
            .iter()
            .flat_map(|(s, _, l)| {
                Dropped::ALL.iter().map(move |&why| {
                    let mut labels = listener_labels(s, l);
                    labels.push(("reason", why.as_str().to_owned()));
                    (labels, Value::Count(l.drops(why)))
                })
            })
            .collect();
        family(
            &mut encoder,
            "netlab_datagrams_dropped",
            "UDP datagrams not answered, by reason: deny (allow/deny), rate, source_port (drop_source_ports), send_failed.",
            MetricType::Counter,
            &dropped,
        )?;

        let chats: Vec<_> = servers
            .iter()
            .filter(|s| s.service() == ServiceKind::Chat)
            .collect();
        let per_chat = |f: &dyn Fn(&super::ChatMetrics) -> Value| -> Vec<(Labels, Value)> {
            chats
                .iter()
                .map(|s| (vec![("server", s.name.clone())], f(&s.chat)))
                .collect()
        };
        let count = |a: &std::sync::atomic::AtomicU64| Value::Count(a.load(Ordering::Relaxed));
        for (name, help, kind, series) in [
            (
                "netlab_chat_members",
                "Named clients in the room now.",
                MetricType::Gauge,
                per_chat(&|c| Value::Int(c.members.load(Ordering::Relaxed))),
            ),
            (
                "netlab_chat_messages",
                "Messages relayed in the room, each once however many receive it (one said with nobody else in the room reaches no one and is not counted).",
                MetricType::Counter,
                per_chat(&|c| count(&c.messages)),
            ),
            (
                "netlab_chat_deliveries",
                "Messages and notices written or queued to members (one per member reached).",
                MetricType::Counter,
                per_chat(&|c| count(&c.deliveries)),
            ),
            (
                "netlab_chat_slow_readers_dropped",
                "Members dropped because their output queue overflowed.",
                MetricType::Counter,
                per_chat(&|c| count(&c.slow_readers)),
            ),
            (
                "netlab_chat_messages_refused",
                "Messages refused by message_rate.",
                MetricType::Counter,
                per_chat(&|c| count(&c.messages_refused)),
            ),
            (
                "netlab_chat_rate_disconnects",
                "Clients disconnected after too many messages refused in a row.",
                MetricType::Counter,
                per_chat(&|c| count(&c.rate_disconnects)),
            ),
        ] {
            family(&mut encoder, name, help, kind, &series)?;
        }
        let clustered: Vec<_> = chats
            .iter()
            .filter(|s| s.chat.cluster.clustered.load(Ordering::Relaxed))
            .collect();
        let per_cluster = |f: &dyn Fn(&super::ClusterMetrics) -> Value| -> Vec<(Labels, Value)> {
            clustered
                .iter()
                .map(|s| (vec![("server", s.name.clone())], f(&s.chat.cluster)))
                .collect()
        };
        for (name, help, kind, series) in [
            (
                "netlab_chat_cluster_link_up",
                "1 while the room's link to Redis (its other nodes) is up, 0 while it is down.",
                MetricType::Gauge,
                per_cluster(&|c| Value::Int(c.link_up.load(Ordering::Relaxed))),
            ),
            (
                "netlab_chat_cluster_reconnects",
                "Times the room's link to Redis came back after it went down.",
                MetricType::Counter,
                per_cluster(&|c| count(&c.reconnects)),
            ),
            (
                "netlab_chat_cluster_events_published",
                "Joins, messages and leaves of this node published to the other nodes.",
                MetricType::Counter,
                per_cluster(&|c| count(&c.published)),
            ),
            (
                "netlab_chat_cluster_events_unpublished",
                "Events of this node not published because the link was down (at most once).",
                MetricType::Counter,
                per_cluster(&|c| count(&c.unpublished)),
            ),
            (
                "netlab_chat_cluster_events_missed",
                "Events of other nodes that never arrived (gaps in their numbering).",
                MetricType::Counter,
                per_cluster(&|c| count(&c.missed)),
            ),
            (
                "netlab_chat_cluster_messages_dropped",
                "Messages not sent to the other nodes because Redis was behind the room.",
                MetricType::Counter,
                per_cluster(&|c| count(&c.dropped)),
            ),
        ] {
            family(&mut encoder, name, help, kind, &series)?;
        }

        let daemon = self.0.daemon();
        let reloads: Vec<(Labels, Value)> = [
            ("ok", &daemon.reloads_ok),
            ("refused", &daemon.reloads_failed),
        ]
        .into_iter()
        .map(|(result, n)| (vec![("result", result.to_owned())], count(n)))
        .collect();
        family(
            &mut encoder,
            "netlab_reloads",
            "Reloads (SIGHUP), by result: ok, or refused (nothing changed).",
            MetricType::Counter,
            &reloads,
        )?;
        if let Some(at) = daemon.config_loaded_at() {
            family(
                &mut encoder,
                "netlab_config_loaded_timestamp_seconds",
                "When the configuration in force was loaded, in seconds since the epoch.",
                MetricType::Gauge,
                &[(vec![], Value::Float(at))],
            )?;
        }
        family(
            &mut encoder,
            "netlab_build_info",
            "The netlab build serving: its version in a label; the value is 1.",
            MetricType::Gauge,
            &[(
                vec![("version", env!("CARGO_PKG_VERSION").to_owned())],
                Value::Int(1),
            )],
        )?;
        super::process::encode(&mut encoder)
    }
}
