//! The bench's result, as a short table for people or one JSON line for
//! scripts (hand-formatted: every value is a number or a plain string).

use std::fmt::Write;

use netlab::client::format_duration;

use super::BenchEchoArgs;
use super::stats::Stats;

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Report {
    pub(super) addr: String,
    pub(super) transport: &'static str,
    pub(super) connections: usize,
    pub(super) threads: usize,
    pub(super) size: usize,
    pub(super) warmup_s: f64,
    pub(super) duration_s: f64,
    pub(super) requests: u64,
    pub(super) requests_per_s: f64,
    /// Payload bytes per second in each direction, in 10^6 bytes.
    pub(super) mb_per_s: f64,
    pub(super) p50_us: f64,
    pub(super) p99_us: f64,
    pub(super) p999_us: f64,
    pub(super) max_us: f64,
    pub(super) errors: u64,
    pub(super) lost: u64,
    /// Each round trip was a new connection with a full TLS handshake.
    pub(super) handshakes: bool,
}

impl Report {
    pub(super) fn new(args: &BenchEchoArgs, threads: usize, stats: &Stats) -> Self {
        let duration_s = args.duration.as_secs_f64();
        let requests_per_s = stats.requests as f64 / duration_s;
        let quantile_us = |q: f64| {
            if stats.latency_ns.is_empty() {
                0.0
            } else {
                stats.latency_ns.value_at_quantile(q) as f64 / 1000.0
            }
        };
        Report {
            addr: args.addr.to_string(),
            transport: match (args.udp, args.tls.tls) {
                (true, _) => "udp",
                (false, true) => "tls",
                (false, false) => "tcp",
            },
            connections: args.connections,
            threads,
            size: args.size,
            warmup_s: args.warmup.as_secs_f64(),
            duration_s,
            requests: stats.requests,
            requests_per_s,
            mb_per_s: requests_per_s * args.size as f64 / 1e6,
            p50_us: quantile_us(0.5),
            p99_us: quantile_us(0.99),
            p999_us: quantile_us(0.999),
            max_us: if stats.latency_ns.is_empty() {
                0.0
            } else {
                stats.latency_ns.max() as f64 / 1000.0
            },
            errors: stats.errors,
            lost: stats.lost,
            handshakes: args.handshakes,
        }
    }

    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        let threads = if self.threads == 1 {
            "thread"
        } else {
            "threads"
        };
        let _ = writeln!(
            out,
            "bench echo {} over {}: {} connections on {} {threads}, {}-byte requests, {} measured after {} warmup",
            self.addr,
            self.transport,
            self.connections,
            self.threads,
            self.size,
            format_duration(std::time::Duration::from_secs_f64(self.duration_s)),
            format_duration(std::time::Duration::from_secs_f64(self.warmup_s)),
        );
        let _ = writeln!(
            out,
            "  requests    {} ({:.1}/s)",
            self.requests, self.requests_per_s
        );
        if self.handshakes {
            let _ = writeln!(
                out,
                "  handshakes  {} ({:.1}/s): each request on a new connection, with a full handshake",
                self.requests, self.requests_per_s
            );
        }
        let _ = writeln!(out, "  throughput  {:.3} MB/s each way", self.mb_per_s);
        let _ = writeln!(
            out,
            "  latency     p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            self.p50_us, self.p99_us, self.p999_us, self.max_us
        );
        let _ = write!(out, "  errors      {}", self.errors);
        if self.transport == "udp" {
            let _ = write!(out, "\n  lost        {}", self.lost);
        }
        out
    }

    pub(super) fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"addr\":\"{}\",\"transport\":\"{}\",\"connections\":{},\"threads\":{},",
                "\"size\":{},\"warmup_s\":{},\"duration_s\":{},\"requests\":{},",
                "\"requests_per_s\":{:.1},\"mb_per_s_each_way\":{:.3},",
                "\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},",
                "\"errors\":{},\"lost\":{},\"handshakes_per_s\":{:.1}}}"
            ),
            // A SocketAddr's text has no quote or backslash to escape.
            self.addr,
            self.transport,
            self.connections,
            self.threads,
            self.size,
            self.warmup_s,
            self.duration_s,
            self.requests,
            self.requests_per_s,
            self.mb_per_s,
            self.p50_us,
            self.p99_us,
            self.p999_us,
            self.max_us,
            self.errors,
            self.lost,
            if self.handshakes {
                self.requests_per_s
            } else {
                0.0
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            addr: "127.0.0.1:7".into(),
            transport: "tcp",
            connections: 100,
            threads: 1,
            size: 64,
            warmup_s: 1.0,
            duration_s: 10.0,
            requests: 1_000_000,
            requests_per_s: 100_000.0,
            mb_per_s: 6.4,
            p50_us: 900.5,
            p99_us: 1500.0,
            p999_us: 2000.25,
            max_us: 5000.0,
            errors: 0,
            lost: 0,
            handshakes: false,
        }
    }

    #[test]
    fn json_is_one_line_with_every_field() {
        let json = report().to_json();
        assert!(!json.contains('\n'));
        assert_eq!(
            json,
            "{\"addr\":\"127.0.0.1:7\",\"transport\":\"tcp\",\"connections\":100,\"threads\":1,\
             \"size\":64,\"warmup_s\":1,\"duration_s\":10,\"requests\":1000000,\
             \"requests_per_s\":100000.0,\"mb_per_s_each_way\":6.400,\
             \"p50_us\":900.5,\"p99_us\":1500.0,\"p999_us\":2000.2,\"max_us\":5000.0,\
             \"errors\":0,\"lost\":0,\"handshakes_per_s\":0.0}"
        );
    }

    #[test]
    fn text_names_the_units() {
        let text = report().to_text();
        assert!(text.contains("100000.0/s"), "{text}");
        assert!(text.contains("6.400 MB/s each way"), "{text}");
        assert!(text.contains("p99.9 2000.2 us"), "{text}");
        assert!(text.contains("10s measured after 1s warmup"), "{text}");
        assert!(!text.contains("lost"), "{text}");
        assert!(!text.contains("handshakes"), "{text}");
        let tls = Report {
            transport: "tls",
            handshakes: true,
            ..report()
        };
        let text = tls.to_text();
        assert!(text.contains("over tls"), "{text}");
        assert!(text.contains("handshakes  1000000 (100000.0/s)"), "{text}");
        assert!(tls.to_json().ends_with(",\"handshakes_per_s\":100000.0}"));
    }
}
