//! `netlab stats URL`: a running netlabd's figures, read from its /metrics
//! (the Prometheus text format), as a table per server; `--watch SECS`
//! redraws it every SECS seconds, as `top` does, with rates since the last
//! look.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{StatsArgs, exit};

/// The most of an answer read: a daemon with thousands of listeners is
/// still far below it.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// One sample: a metric's name, its labels, its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the Prometheus text format: every sample line, comments skipped.
/// A line that is not a sample is an error naming it.
pub fn parse_samples(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(
            parse_line(line).ok_or_else(|| format!("line {} is not a sample: {line:?}", n + 1))?,
        );
    }
    Ok(samples)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let rest = &line[name_end..];
    match rest.strip_prefix('{') {
        Some(labels) => parse_labels(name, labels),
        None => Some(Sample {
            name,
            labels: Vec::new(),
            value: parse_value(rest.split_whitespace().next()?)?,
        }),
    }
}

/// `key="value",...}` then the value; quoted values may hold escapes,
/// commas and braces.
fn parse_labels(name: String, mut s: &str) -> Option<Sample> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            let value = rest.split_whitespace().next()?;
            return Some(Sample {
                name,
                labels,
                value: parse_value(value)?,
            });
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let mut value = String::new();
        let body = s[eq + 1..].strip_prefix('"')?;
        let mut it = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = it.next() {
            match c {
                '\\' => match it.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(i + 1);
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((key, value));
        s = &body[end?..];
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

/// Where `url` points: host:port and path (`/metrics` when it gives none).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(format!(
            "{url}: netlabd serves /metrics over plain HTTP; use http://"
        ));
    } else if url.contains("://") {
        return Err(format!("{url}: expected http://HOST:PORT"));
    } else {
        url
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host; expected http://HOST:PORT"));
    }
    let path = if path == "/" { "/metrics" } else { path };
    // "[::1]:9917" and "h:9917" have a port; "[::1]" and "h" do not.
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let host = if has_port {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_owned()))
}

/// Fetches `path` from `host` and returns the body of a 200 answer.
pub fn fetch(host: &str, path: &str, timeout: Duration) -> Result<String, (u8, String)> {
    let io = |e: std::io::Error| {
        let code = if matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) {
            exit::TIMEOUT
        } else {
            exit::IO
        };
        (code, format!("{host}: {e}"))
    };
    let addrs: Vec<SocketAddr> = host
        .to_socket_addrs()
        .map_err(|e| (exit::USAGE, format!("cannot resolve {host}: {e}")))?
        .collect();
    let addr = addrs
        .first()
        .ok_or((exit::USAGE, format!("{host} resolves to no address")))?;
    let mut stream = TcpStream::connect_timeout(addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain;version=0.0.4\r\nUser-Agent: netlab-stats\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let until = Instant::now() + timeout;
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() >= until {
            return Err((
                exit::TIMEOUT,
                format!("{host}: no whole answer within {timeout:?}"),
            ));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > MAX_ANSWER {
                    return Err((
                        exit::IO,
                        format!("{host}: answer larger than {MAX_ANSWER} bytes"),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let body_at = match response.parse(&answer) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err((exit::IO, format!("{host}: not an HTTP answer"))),
    };
    let code = response.code.unwrap_or(0);
    let body = String::from_utf8_lossy(&answer[body_at..]).into_owned();
    if code != 200 {
        return Err((
            exit::IO,
            format!(
                "{host}{path}: HTTP {code} {}: {}",
                response.reason.unwrap_or(""),
                body.trim()
            ),
        ));
    }
    Ok(body)
}

/// A server's figures, by listener.
#[derive(Debug, Default, Clone)]
struct Server {
    listeners: BTreeMap<String, BTreeMap<String, f64>>,
    own: BTreeMap<String, f64>,
}

/// Groups samples by server and listener: `metric[;reason]` → value.
fn by_server(samples: &[Sample]) -> (BTreeMap<String, Server>, BTreeMap<String, f64>) {
    let mut servers: BTreeMap<String, Server> = BTreeMap::new();
    let mut daemon = BTreeMap::new();
    for s in samples {
        let key = match s.label("reason").or(s.label("result")) {
            Some(r) => format!("{};{r}", s.name),
            None => s.name.clone(),
        };
        match (s.label("server"), s.label("listener")) {
            (Some(server), Some(listener)) => {
                servers
                    .entry(server.to_owned())
                    .or_default()
                    .listeners
                    .entry(listener.to_owned())
                    .or_default()
                    .insert(key, s.value);
            }
            (Some(server), None) => {
                servers
                    .entry(server.to_owned())
                    .or_default()
                    .own
                    .insert(key, s.value);
            }
            _ => {
                let key = match s.label("version") {
                    Some(v) => format!("{};{v}", s.name),
                    None => key,
                };
                daemon.insert(key, s.value);
            }
        }
    }
    (servers, daemon)
}

/// 1234567 → "1.2M".
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bytes: 1536 → "1.5KiB".
fn bytes(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}{}", units[u])
    } else {
        format!("{v:.1}{}", units[u])
    }
}

/// "rate 5, deny 2": the reasons with a count, or "-".
fn reasons(figures: &BTreeMap<String, f64>, metric: &str) -> String {
    let prefix = format!("{metric};");
    let parts: Vec<String> = figures
        .iter()
        .filter_map(|(k, v)| {
            let reason = k.strip_prefix(&prefix)?;
            (*v > 0.0).then(|| format!("{reason} {}", human(*v)))
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// The table, with rates per second since `before` when watching.
pub fn render(samples: &[Sample], before: Option<(&[Sample], Duration)>) -> String {
    let (servers, daemon) = by_server(samples);
    let previous = before.map(|(s, d)| (by_server(s).0, d.as_secs_f64().max(1e-3)));
    // Per second since the last look (0 for what is new).
    let rate = |server: &str, listener: &str, metric: &str, now: f64| -> f64 {
        let Some((prev, secs)) = &previous else {
            return 0.0;
        };
        let then = prev
            .get(server)
            .and_then(|s| s.listeners.get(listener))
            .and_then(|l| l.get(metric))
            .copied()
            .unwrap_or(now);
        ((now - then) / secs).max(0.0)
    };
    let mut out = String::new();
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
    let version = daemon
        .keys()
        .find_map(|k| k.strip_prefix("netlab_build_info;"))
        .unwrap_or("?");
    let start = get(&daemon, "process_start_time_seconds");
    let now_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let up = if start > 0.0 {
        humantime::format_duration(Duration::from_secs((now_epoch - start).max(0.0) as u64))
            .to_string()
    } else {
        "?".into()
    };
    out.push_str(&format!(
        "netlabd {version}: up {up}, {} open fds, {} resident, reloads {} ok / {} refused\n",
        human(get(&daemon, "process_open_fds")),
        bytes(get(&daemon, "process_resident_memory_bytes")),
        human(get(&daemon, "netlab_reloads_total;ok")),
        human(get(&daemon, "netlab_reloads_total;refused")),
    ));
    let watching = previous.is_some();
    for (name, server) in &servers {
        out.push_str(&format!("\nserver {name}\n"));
        let tcp: Vec<_> = server
            .listeners
            .iter()
            .filter(|(_, f)| f.contains_key("netlab_connections_accepted_total"))
            .collect();
        let udp: Vec<_> = server
            .listeners
            .iter()
            .filter(|(_, f)| f.contains_key("netlab_datagrams_received_total"))
            .collect();
        if !tcp.is_empty() {
            let mut rows = vec![{
                let mut h = vec![
                    "  LISTENER",
                    "ACTIVE",
                    "ACCEPTED",
                    "CLOSED",
                    "IN",
                    "OUT",
                    "TLS",
                    "REQUESTS",
                ];
                if watching {
                    h.extend(["CONN/S", "IN/S", "OUT/S"]);
                }
                h.push("REFUSED");
                h.into_iter().map(String::from).collect::<Vec<_>>()
            }];
            for (listener, f) in &tcp {
                let requests = f
                    .get("netlab_requests_total")
                    .map_or("-".into(), |v| human(*v));
                let mut row = vec![
                    format!("  {listener}"),
                    human(get(f, "netlab_connections_active")),
                    human(get(f, "netlab_connections_accepted_total")),
                    human(get(f, "netlab_connections_closed_total")),
                    bytes(get(f, "netlab_received_bytes_total")),
                    bytes(get(f, "netlab_sent_bytes_total")),
                    human(get(f, "netlab_tls_handshakes_total")),
                    requests,
                ];
                if watching {
                    let m = "netlab_connections_accepted_total";
                    row.push(format!("{}/s", human(rate(name, listener, m, get(f, m)))));
                    for m in ["netlab_received_bytes_total", "netlab_sent_bytes_total"] {
                        row.push(format!("{}/s", bytes(rate(name, listener, m, get(f, m)))));
                    }
                }
                row.push(reasons(f, "netlab_connections_refused_total"));
                rows.push(row);
            }
            out.push_str(&table(&rows));
        }
        if !udp.is_empty() {
            let mut rows = vec![
                ["  LISTENER", "RECEIVED", "ANSWERED", "DROPPED"]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
            ];
            if watching {
                rows[0].insert(3, "RECV/S".into());
            }
            for (listener, f) in &udp {
                let mut row = vec![
                    format!("  {listener}"),
                    human(get(f, "netlab_datagrams_received_total")),
                    human(get(f, "netlab_datagrams_answered_total")),
                ];
                if watching {
                    let m = "netlab_datagrams_received_total";
                    row.push(format!("{}/s", human(rate(name, listener, m, get(f, m)))));
                }
                row.push(reasons(f, "netlab_datagrams_dropped_total"));
                rows.push(row);
            }
            out.push_str(&table(&rows));
        }
        if server.own.contains_key("netlab_chat_members") {
            let o = &server.own;
            out.push_str(&format!(
                "  room: {} members, {} messages, {} deliveries, {} slow readers dropped, {} messages over message_rate, {} clients disconnected for it\n",
                human(get(o, "netlab_chat_members")),
                human(get(o, "netlab_chat_messages_total")),
                human(get(o, "netlab_chat_deliveries_total")),
                human(get(o, "netlab_chat_slow_readers_dropped_total")),
                human(get(o, "netlab_chat_messages_refused_total")),
                human(get(o, "netlab_chat_rate_disconnects_total")),
            ));
        }
    }
    out
}

/// Columns padded to their widest cell.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn run(args: &StatsArgs) -> u8 {
    let (host, path) = match parse_url(&args.url) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("netlab: {e}");
            return exit::USAGE;
        }
    };
    let look = || -> Result<Vec<Sample>, (u8, String)> {
        let body = fetch(&host, &path, args.timeout)?;
        parse_samples(&body).map_err(|e| (exit::IO, format!("{host}{path}: {e}")))
    };
    if args.watch.is_some_and(|w| w.is_zero()) {
        eprintln!("netlab: --watch needs a period longer than 0, such as 2");
        return exit::USAGE;
    }
    let Some(every) = args.watch else {
        return match look() {
            Ok(samples) => {
                print!("{}", render(&samples, None));
                exit::OK
            }
            Err((code, e)) => {
                eprintln!("netlab: {e}");
                code
            }
        };
    };
    let mut last: Option<(Vec<Sample>, Instant)> = None;
    loop {
        let began = Instant::now();
        match look() {
            Ok(samples) => {
                let before = last
                    .as_ref()
                    .map(|(s, at)| (s.as_slice(), began.duration_since(*at)));
                let text = render(&samples, before);
                // Home, clear, then the table: redrawn in place as top does.
                print!(
                    "\x1b[H\x1b[2J{text}\n(every {}; Ctrl-C to stop)\n",
                    humantime::format_duration(every)
                );
                let _ = std::io::stdout().flush();
                last = Some((samples, began));
            }
            Err((_, e)) => {
                print!(
                    "\x1b[H\x1b[2Jnetlab: {e}\n(retrying every {}; Ctrl-C to stop)\n",
                    humantime::format_duration(every)
                );
                let _ = std::io::stdout().flush();
            }
        }
        std::thread::sleep(every.saturating_sub(began.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_labels_escapes_and_special_values() {
        let text = "# HELP x y\n# TYPE x counter\n\
            netlab_connections_refused_total{server=\"echo\",listener=\"[::1]:7\",reason=\"rate\"} 5\n\
            process_open_fds 40\n\
            odd{a=\"q\\\"uote\\\\\",b=\"c,d}\"} +Inf\n";
        let s = parse_samples(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("listener"), Some("[::1]:7"));
        assert_eq!(s[0].label("reason"), Some("rate"));
        assert_eq!(s[0].value, 5.0);
        assert_eq!(s[1].labels, vec![]);
        assert_eq!(s[2].label("a"), Some("q\"uote\\"));
        assert_eq!(s[2].label("b"), Some("c,d}"));
        assert!(s[2].value.is_infinite());
        assert!(parse_samples("not a sample line\n").is_err());
    }

    #[test]
    fn urls_name_a_host_and_a_path() {
        assert_eq!(
            parse_url("http://127.0.0.1:9917").unwrap(),
            ("127.0.0.1:9917".into(), "/metrics".into())
        );
        assert_eq!(
            parse_url("127.0.0.1:9917/metrics").unwrap(),
            ("127.0.0.1:9917".into(), "/metrics".into())
        );
        assert_eq!(
            parse_url("http://[::1]:9917/").unwrap(),
            ("[::1]:9917".into(), "/metrics".into())
        );
        assert_eq!(
            parse_url("http://localhost/x").unwrap(),
            ("localhost:80".into(), "/x".into())
        );
        assert!(parse_url("https://h:1").unwrap_err().contains("plain HTTP"));
    }

    #[test]
    fn the_table_shows_each_server_and_its_refusals() {
        let text = "\
netlab_connections_accepted_total{server=\"echo\",listener=\"127.0.0.1:7\"} 10
netlab_connections_active{server=\"echo\",listener=\"127.0.0.1:7\"} 2
netlab_connections_refused_total{server=\"echo\",listener=\"127.0.0.1:7\",reason=\"rate\"} 5
netlab_connections_refused_total{server=\"echo\",listener=\"127.0.0.1:7\",reason=\"deny\"} 0
netlab_received_bytes_total{server=\"echo\",listener=\"127.0.0.1:7\"} 2048
netlab_datagrams_received_total{server=\"udp\",listener=\"127.0.0.1:7\"} 3
netlab_datagrams_dropped_total{server=\"udp\",listener=\"127.0.0.1:7\",reason=\"source_port\"} 1
netlab_chat_members{server=\"chat\"} 4
netlab_build_info{version=\"0.1.0\"} 1
";
        let s = parse_samples(text).unwrap();
        let table = render(&s, None);
        assert!(table.contains("netlabd 0.1.0"), "{table}");
        assert!(table.contains("server echo"));
        assert!(table.contains("rate 5"), "{table}");
        assert!(
            !table.contains("deny"),
            "zero reasons are left out: {table}"
        );
        assert!(table.contains("2.0KiB"));
        assert!(table.contains("source_port 1"));
        assert!(table.contains("room: 4 members"));
        let mut later = s.clone();
        later[0].value = 30.0;
        let watched = render(&later, Some((&s, Duration::from_secs(2))));
        assert!(watched.contains("CONN/S"), "{watched}");
        assert!(watched.contains("10/s"), "{watched}");
    }
}
