//! The chat bench's result, as a short table for people or one JSON line
//! for scripts (hand-formatted: every value is a number or a plain word).

use std::fmt::Write;
use std::time::Duration;

use netlab::client::format_duration;

use super::super::super::{BenchChatArgs, ChatProtocol};
use super::generator::ChatStats;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct ChatReport {
    pub(super) addr: String,
    pub(super) protocol: &'static str,
    pub(super) dialect: &'static str,
    pub(super) clients: usize,
    pub(super) senders: usize,
    pub(super) size: usize,
    pub(super) window: u64,
    pub(super) batch: u64,
    pub(super) threads: usize,
    pub(super) warmup_s: f64,
    pub(super) duration_s: f64,
    pub(super) sent: u64,
    pub(super) sent_per_s: f64,
    pub(super) deliveries: u64,
    pub(super) deliveries_per_s: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    pub(super) max_us: f64,
    pub(super) lost: u64,
    pub(super) out_of_order: u64,
    pub(super) malformed: u64,
    pub(super) errors: u64,
}

impl ChatReport {
    pub(super) fn new(args: &BenchChatArgs, threads: usize, stats: &ChatStats) -> Self {
        let duration_s = args.duration.as_secs_f64();
        let h = &stats.latency_ns;
        let us = |ns: u64| ns as f64 / 1000.0;
        let quantile_us = |q: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(q))
            }
        };
        ChatReport {
            addr: args.addrs_text(),
            protocol: match args.protocol {
                ChatProtocol::Netlab => "netlab",
                ChatProtocol::Ncat => "ncat",
            },
            dialect: match args.protocol {
                ChatProtocol::Ncat => "line",
                ChatProtocol::Netlab => args.dialect().name(),
            },
            clients: args.clients,
            senders: args.senders,
            size: args.size,
            window: args.window,
            batch: args.batch(),
            threads,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s,
            sent: stats.sent,
            sent_per_s: stats.sent as f64 / duration_s,
            deliveries: stats.deliveries,
            deliveries_per_s: stats.deliveries as f64 / duration_s,
            p50_us: quantile_us(0.5),
            p99_us: quantile_us(0.99),
            p999_us: quantile_us(0.999),
            max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
            lost: stats.lost,
            out_of_order: stats.out_of_order,
            malformed: stats.malformed,
            errors: stats.errors,
        }
    }

    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "bench chat {} ({} protocol, {} dialect): {} clients, {} sending {}-byte messages with {} in flight each, written {} at most at a time, {} thread(s), {} measured after {} warmup",
            self.addr,
            self.protocol,
            self.dialect,
            self.clients,
            self.senders,
            self.size,
            self.window,
            self.batch,
            self.threads,
            format_duration(Duration::from_secs_f64(self.duration_s)),
            format_duration(Duration::from_secs_f64(self.warmup_s)),
        );
        let _ = writeln!(
            out,
            "  sent        {} messages ({:.1}/s)",
            self.sent, self.sent_per_s
        );
        let _ = writeln!(
            out,
            "  delivered   {} ({:.1}/s)",
            self.deliveries, self.deliveries_per_s
        );
        let _ = writeln!(
            out,
            "  latency     p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        let _ = write!(
            out,
            "  problems    lost {}, out of order {}, malformed {}, broken connections {}",
            self.lost, self.out_of_order, self.malformed, self.errors
        );
        out
    }

    pub(super) fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"addr\":\"{}\",\"protocol\":\"{}\",\"dialect\":\"{}\",\"clients\":{},",
                "\"senders\":{},\"size\":{},\"window\":{},\"batch\":{},\"threads\":{},\"warmup_s\":{},",
                "\"duration_s\":{},\"sent\":{},\"sent_per_s\":{:.1},\"deliveries\":{},",
                "\"deliveries_per_s\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},",
                "\"p999_us\":{:.1},\"max_us\":{:.1},\"lost\":{},\"out_of_order\":{},",
                "\"malformed\":{},\"errors\":{}}}"
            ),
            // Socket addresses and commas: no quote or backslash to escape.
            self.addr,
            self.protocol,
            self.dialect,
            self.clients,
            self.senders,
            self.size,
            self.window,
            self.batch,
            self.threads,
            self.warmup_s,
            self.duration_s,
            self.sent,
            self.sent_per_s,
            self.deliveries,
            self.deliveries_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.lost,
            self.out_of_order,
            self.malformed,
            self.errors,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ChatReport {
        ChatReport {
            addr: "127.0.0.1:1235".into(),
            protocol: "netlab",
            dialect: "line",
            clients: 100,
            senders: 1,
            size: 64,
            window: 32,
            batch: 32,
            threads: 1,
            warmup_s: 1.0,
            duration_s: 10.0,
            sent: 200_000,
            sent_per_s: 20_000.0,
            deliveries: 19_800_000,
            deliveries_per_s: 1_980_000.0,
            p50_us: 1500.5,
            p99_us: 3000.0,
            p999_us: 4000.0,
            max_us: 9000.0,
            lost: 0,
            out_of_order: 0,
            malformed: 0,
            errors: 0,
        }
    }

    #[test]
    fn json_is_one_line_with_every_field() {
        let json = report().to_json();
        assert!(!json.contains('\n'));
        assert_eq!(
            json,
            "{\"addr\":\"127.0.0.1:1235\",\"protocol\":\"netlab\",\"dialect\":\"line\",\
             \"clients\":100,\"senders\":1,\"size\":64,\"window\":32,\"batch\":32,\"threads\":1,\
             \"warmup_s\":1,\"duration_s\":10,\"sent\":200000,\"sent_per_s\":20000.0,\
             \"deliveries\":19800000,\"deliveries_per_s\":1980000.0,\"p50_us\":1500.5,\
             \"p99_us\":3000.0,\"p999_us\":4000.0,\"max_us\":9000.0,\"lost\":0,\
             \"out_of_order\":0,\"malformed\":0,\"errors\":0}"
        );
    }

    #[test]
    fn text_names_the_units() {
        let text = report().to_text();
        assert!(
            text.contains("delivered   19800000 (1980000.0/s)"),
            "{text}"
        );
        assert!(text.contains("p50 1500.5 us"), "{text}");
        assert!(text.contains("10s measured after 1s warmup"), "{text}");
    }
}
