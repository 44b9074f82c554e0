//! `netlabd.toml`: serde structs that refuse unknown keys, defaults in one
//! place ([`defaults`]), and validation after parsing that reports every
//! problem with its file, line and column.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::chat::{Dialect, WebSocketSettings};
use crate::rate::Rate;
use crate::service::{CountFraming, CountService, CountUnit, EchoService, UdpEchoService};
use crate::tls::ServerFile;

/// Every default, in one place.
pub mod defaults {
    use std::time::Duration;

    use super::{Model, Transport};
    use crate::chat::Dialect;
    use crate::rate::Rate;
    use crate::service::{CountFraming, CountUnit};

    pub const TRANSPORT: Transport = Transport::Tcp;
    pub const MODEL: Model = Model::Event;

    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const UMASK: u32 = 0o027;
    /// Where a daemonized netlabd works from.
    pub const WORKING_DIRECTORY: &str = "/";
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// The longest frame (message) a client may send, in bytes.
    pub const MAX_FRAME: usize = 64 * 1024;
    /// The width of a length header, in bytes (seed 004 uses 100).
    pub const HEADER_LEN: usize = 10;
    /// A chat listener's dialect.
    pub const DIALECT: Dialect = Dialect::Line;
    /// How often a silent WebSocket client is pinged (one that answers
    /// nothing by the next round is closed): under the minute after which
    /// common proxies drop an idle connection.
    pub const PING_INTERVAL: Duration = Duration::from_secs(30);
    /// A count server's framing and what it counts.
    pub const COUNT_FRAMING: CountFraming = CountFraming::Line;
    pub const COUNT_UNIT: CountUnit = CountUnit::Chars;
    pub const MAX_CLIENTS: usize = 1000;
    /// A chat server's `max_connections`: room beyond `max_clients`, so
    /// that a client over the limit hears "the room is full" in its
    /// dialect rather than being cut off at accept (`login_timeout` keeps
    /// unnamed connections from holding that room for long).
    pub fn chat_max_connections(max_clients: usize) -> usize {
        max_clients.saturating_add((max_clients / 8).max(16))
    }
    /// UDP echo drops datagrams from these source ports: echo, daytime,
    /// chargen and time answer anything, so answering them would loop
    /// forever; and port 0, which no honest sender uses.
    pub const DROP_SOURCE_PORTS: [u16; 5] = [0, 7, 13, 19, 37];
    /// A rate's burst (`burst`, `message_burst`): twice its count.
    pub fn burst(rate: Rate) -> u32 {
        rate.count.saturating_mul(2)
    }
    /// What may wait to be written to one chat client before it is dropped.
    pub const QUEUE_BYTES: usize = 1024 * 1024;
    pub const QUEUE_FRAMES: usize = 16 * 1024;
    /// How long a TLS client has to finish its handshake.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `TCP_NODELAY` on accepted connections: each write leaves at once,
    /// for latency, rather than wait for the ACK of what is in flight.
    pub const TCP_NODELAY: bool = true;
    /// How long a chat connection may stay without a name: without a bound,
    /// silent connections would hold the room's connection slots forever.
    pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// The longest duration a config may give: longer ones are typos, and
    /// would overflow the clock arithmetic.
    pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DURATION_DAYS * 24 * 3600);
    pub const MAX_DURATION_DAYS: u64 = 365;
    /// Rate limits: sources are networks of these many leading bits.
    pub const SOURCE_PREFIX_V4: u8 = 32;
    pub const SOURCE_PREFIX_V6: u8 = 64;
    /// Sources whose rate is tracked at once (the least recently seen
    /// beyond it are forgotten).
    pub const RATE_SOURCES: usize = 65_536;
    /// How long a chat cluster's node may stay silent before the others
    /// announce its members as gone, and how long a name claim outlives
    /// the node that stopped refreshing it.
    pub const PRESENCE_TTL: Duration = Duration::from_secs(15);
    /// The shortest `presence_ttl`: heartbeats go out every quarter of it.
    pub const MIN_PRESENCE_TTL: Duration = Duration::from_secs(1);
    /// A chat cluster's node name when none is given: the host's name and
    /// this process's id, unique among the processes of a cluster.
    pub fn cluster_node() -> String {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname(2) writes at most `len` bytes into `buf`.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
        let host = if rc == 0 {
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        } else {
            String::new()
        };
        let host = if host.is_empty() { "netlabd" } else { &host };
        format!("{host}-{}", std::process::id())
    }
    /// A chat room's reactors. One keeps every event of the room in one
    /// order (a name freed by a disconnect is free for the very next
    /// hello) at the least cost per delivery; more spread a big room's
    /// writes over cores, where a client that leaves and comes back at once
    /// may find its name held for an instant by the reactor still closing
    /// the old connection.
    pub const CHAT_WORKERS: usize = 1;
    /// The event model's and UDP's worker threads: one per core.
    pub fn workers() -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Where a value stands in its file, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub origin: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Byte `at` of `text` (clamped to its end), as line and column, both
    /// counted from 1; columns count characters, as editors do.
    fn at(text: &str, at: usize, origin: Arc<str>) -> Location {
        let mut at = at.min(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &text[..at];
        Location {
            origin,
            line: before.matches('\n').count() + 1,
            column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// One thing wrong with a configuration, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    Stderr,
    Syslog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    Echo,
    Count,
    Chat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    #[default]
    Event,
    Thread,
    Fork,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tag {
    Worker,
}

/// Reads one of `names` and turns it into a `T` with `pick`; anything else
/// is refused as serde refuses an unknown variant, listing the names.
fn deserialize_named<'de, D, T>(
    d: D,
    names: &'static [&'static str],
    pick: impl FnOnce(&str) -> Option<T>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let name = String::deserialize(d)?;
    pick(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, names))
}

/// `dialect = "line" | "header" | "bincode" | "websocket"`: a header
/// dialect is read with the default width and a websocket one with the
/// default settings, which a listener's `header_len`, `allowed_origins` and
/// `ping_interval` then replace.
impl<'de> Deserialize<'de> for Dialect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_named(d, &Dialect::NAMES, |name| {
            Dialect::named(name, defaults::HEADER_LEN)
        })
    }
}

/// `framing = "line" | "header" | "chunk"`, header framing with the default
/// width, which the server's `header_len` then replaces.
impl<'de> Deserialize<'de> for CountFraming {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_named(d, &CountFraming::NAMES, |name| {
            CountFraming::named(name, defaults::HEADER_LEN)
        })
    }
}

/// `unit = "chars" | "bytes"`.
impl<'de> Deserialize<'de> for CountUnit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_named(d, &CountUnit::NAMES, CountUnit::named)
    }
}

// ---- The file as written -------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    log: Option<LogTarget>,
    shutdown_grace: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    umask: Option<Spanned<String>>,
    working_directory: Option<String>,
    metrics: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: Spanned<String>,
    service: Spanned<ServiceKind>,
    transport: Option<Spanned<Transport>>,
    listen: Spanned<Vec<Spanned<RawListen>>>,
    model: Option<Spanned<Model>>,
    workers: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    per_source: Option<Spanned<usize>>,
    idle_timeout: Option<Spanned<String>>,
    handshake_timeout: Option<Spanned<String>>,
    allow: Option<Vec<Spanned<String>>>,
    deny: Option<Vec<Spanned<String>>>,
    rate: Option<Spanned<String>>,
    burst: Option<Spanned<usize>>,
    source_prefix_v4: Option<Spanned<u32>>,
    source_prefix_v6: Option<Spanned<u32>>,
    rate_sources: Option<Spanned<usize>>,
    proxy_protocol: Option<Spanned<bool>>,
    proxy_from: Option<Spanned<Vec<Spanned<String>>>>,
    tcp_nodelay: Option<Spanned<bool>>,
    // echo
    tag: Option<Spanned<Tag>>,
    drop_source_ports: Option<Spanned<Vec<u16>>>,
    // count
    framing: Option<Spanned<CountFraming>>,
    unit: Option<Spanned<CountUnit>>,
    header_len: Option<Spanned<usize>>,
    max_frame: Option<Spanned<usize>>,
    // chat
    max_clients: Option<Spanned<usize>>,
    queue_bytes: Option<Spanned<usize>>,
    queue_frames: Option<Spanned<usize>>,
    login_timeout: Option<Spanned<String>>,
    message_rate: Option<Spanned<String>>,
    message_burst: Option<Spanned<usize>>,
    cluster: Option<Spanned<RawCluster>>,
}

/// `cluster = { redis = "redis://127.0.0.1:6379", room = "lobby", node = "a", presence_ttl = "15s" }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    redis: Spanned<String>,
    room: Spanned<String>,
    node: Option<Spanned<String>>,
    presence_ttl: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
}

/// A `listen` entry: `"127.0.0.1:7"` or `{ addr = "...", dialect = "...", header_len = N }`.
#[derive(Debug)]
struct RawListen(RawListenTable);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenTable {
    addr: Spanned<String>,
    dialect: Option<Spanned<Dialect>>,
    header_len: Option<Spanned<usize>>,
    tls: Option<Spanned<RawTls>>,
    // websocket
    allowed_origins: Option<Spanned<Vec<Spanned<String>>>>,
    ping_interval: Option<Spanned<String>>,
}

/// `tls = { cert = "server.pem", key = "server.key", client_ca = "ca.pem", alpn = ["..."] }`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Spanned<String>,
    key: Spanned<String>,
    client_ca: Option<Spanned<String>>,
    alpn: Option<Vec<Spanned<String>>>,
}

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawListen;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an address such as "127.0.0.1:7007" or a table { addr = "...", dialect = "line" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawListen, E> {
                // The span of a bare string is the entry's own, filled in by the caller.
                Ok(RawListen(RawListenTable {
                    addr: Spanned::new(0..0, v.to_owned()),
                    dialect: None,
                    header_len: None,
                    tls: None,
                    allowed_origins: None,
                    ping_interval: None,
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawListen, A::Error> {
                RawListenTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawListen)
            }
        }
        d.deserialize_any(Visitor)
    }
}

// ---- The configuration as the servers use it -------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where logs go; when not set, stderr in the foreground and syslog
    /// with `--daemonize`.
    pub log: Option<LogTarget>,
    pub shutdown_grace: Duration,
    /// Whom to run as once every listener is bound, so that ports below
    /// 1024 can be served without staying root.
    pub user: Option<String>,
    pub group: Option<String>,
    /// Where `user` and `group` stand in the file, for the error when
    /// the system has no such user or group.
    pub user_at: Option<Location>,
    pub group_at: Option<Location>,
    /// The file mode creation mask with `--daemonize`.
    pub umask: u32,
    /// The working directory with `--daemonize`.
    pub working_directory: std::path::PathBuf,
    /// Where `/metrics` is served (none when absent), and where the
    /// address stands in the file.
    pub metrics: Option<SocketAddr>,
    pub metrics_at: Option<Location>,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            log: None,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            user: None,
            group: None,
            user_at: None,
            group_at: None,
            umask: defaults::UMASK,
            working_directory: defaults::WORKING_DIRECTORY.into(),
            metrics: None,
            metrics_at: None,
        }
    }
}

/// What a server serves, with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceConfig {
    Echo(EchoService),
    UdpEcho(UdpEchoService),
    Count(CountService),
    Chat(ChatConfig),
}

impl ServiceConfig {
    pub fn kind(&self) -> ServiceKind {
        match self {
            ServiceConfig::Echo(_) | ServiceConfig::UdpEcho(_) => ServiceKind::Echo,
            ServiceConfig::Count(_) => ServiceKind::Count,
            ServiceConfig::Chat(_) => ServiceKind::Chat,
        }
    }
}

/// A chat server's room: one per server, shared by all its listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatConfig {
    /// Each listener's dialect, in `listen` order.
    pub dialects: Vec<Dialect>,
    pub max_clients: usize,
    pub max_frame: usize,
    pub queue_bytes: usize,
    pub queue_frames: usize,
    /// A connection that has not given a name by then is closed.
    pub login_timeout: Duration,
    /// Messages each client may send: the rate and the burst above it.
    pub message_rate: Option<(Rate, u32)>,
    /// The room spans every server with the same Redis and room.
    pub cluster: Option<ClusterConfig>,
}

/// A chat room shared across netlabd processes through Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    pub redis: RedisUrl,
    /// The room's name in Redis: servers with the same Redis and room
    /// share one room.
    pub room: String,
    /// This server's name among the room's nodes, shown to the others
    /// ("bob joined on NODE").
    pub node: String,
    pub presence_ttl: Duration,
    /// Certificates (PEM) to trust for `rediss://` instead of the system's.
    pub ca: Option<std::path::PathBuf>,
}

/// A Redis URL as written (it was parsed when the configuration was
/// checked); shown without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as written, password included: for connecting only.
    pub fn as_secret_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match redis::parse_redis_url(&self.0) {
            Some(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                f.write_str(url.as_str())
            }
            Some(url) => f.write_str(url.as_str()),
            None => f.write_str("(not a Redis URL)"),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// Equal when they listen alike, wherever they stand in the file: a
/// comment added above a server on reload does not change the server.
#[derive(Debug, Clone, Eq)]
pub struct ListenConfig {
    pub addr: SocketAddr,
    /// A chat listener's dialect (`header_len` applied); `None` elsewhere.
    pub dialect: Option<Dialect>,
    /// TLS on this listener.
    pub tls: Option<ListenTls>,
    pub location: Location,
}

impl PartialEq for ListenConfig {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr && self.dialect == other.dialect && self.tls == other.tls
    }
}

/// A listener's TLS: its files, and what was read from them when the
/// configuration was checked (so a configuration that loads has usable
/// certificates, and a reload reads them anew).
#[derive(Debug, Clone)]
pub struct ListenTls {
    pub files: crate::tls::ServerFiles,
    pub loaded: Arc<rustls::ServerConfig>,
}

/// The same files, whatever they held when read: a reload that changes
/// only their contents leaves the server running, with the new contents.
impl PartialEq for ListenTls {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files
    }
}

impl Eq for ListenTls {}

/// Who may connect: a peer is refused when it matches `deny`, or when
/// `allow` is not empty and it matches none of `allow` (xinetd's
/// `only_from` / `no_access`, most specific rule not needed: deny wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl AccessList {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        !self.deny.iter().any(|n| n.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)))
    }
}

/// IPv4 peers on a dual-stack socket arrive as `::ffff:a.b.c.d`; rules are
/// written for `a.b.c.d`.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `rate` per source: connections (TCP) or datagrams (UDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateConfig {
    pub rate: Rate,
    pub burst: u32,
    /// Addresses are grouped into sources of this many leading bits.
    pub source_prefix_v4: u8,
    pub source_prefix_v6: u8,
    /// The most sources tracked at once (`rate_sources`).
    pub sources: usize,
}

/// PROXY protocol on every TCP listener of a server: the balancers allowed
/// to send the header; the client address it carries is the one admission,
/// logs and limits see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub from: Vec<IpNet>,
}

impl ProxyConfig {
    /// Whether `ip` may send a PROXY header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.from.iter().any(|n| n.contains(&ip))
    }
}

/// Connection limits, shared by every model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub per_source: Option<usize>,
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub name: String,
    pub service: ServiceConfig,
    pub transport: Transport,
    pub model: Model,
    pub listen: Vec<ListenConfig>,
    pub workers: usize,
    pub limits: Limits,
    pub access: AccessList,
    /// How long a TLS client has to finish its handshake (and a PROXY
    /// header to arrive).
    pub handshake_timeout: Duration,
    pub rate: Option<RateConfig>,
    pub proxy: Option<ProxyConfig>,
    /// Whether accepted connections get `TCP_NODELAY` (TCP only).
    pub tcp_nodelay: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub daemon: DaemonConfig,
    pub servers: Vec<ServerConfig>,
}

impl Config {
    /// Parses and validates `text`; `origin` names it in errors (a path).
    ///
    /// Relative paths in it (TLS files) are relative to the current
    /// directory; [`Config::load`] takes them relative to the file.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Config::parse_in(text, origin, None)
    }

    /// [`Config::parse`], with relative paths taken from `base`.
    pub fn parse_in(
        text: &str,
        origin: &str,
        base: Option<&std::path::Path>,
    ) -> Result<Config, ConfigErrors> {
        let ctx = Ctx {
            text,
            origin: origin.into(),
            base: base.map(std::path::Path::to_path_buf),
            errors: Vec::new(),
        };
        ctx.parse()
    }

    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        let origin = path.display().to_string();
        let whole_file = |message: String| {
            ConfigErrors(vec![ConfigError {
                location: Location {
                    origin: origin.as_str().into(),
                    line: 0,
                    column: 0,
                },
                message,
            }])
        };
        let bytes =
            std::fs::read(path).map_err(|e| whole_file(format!("cannot read the file: {e}")))?;
        let text = utf8_text(&bytes, &origin)?;
        Config::parse_in(text, &origin, path.parent())
    }
}

/// `bytes` as text, or an error at the first byte that is not UTF-8: TOML
/// files are UTF-8, and a stray Latin-1 byte in a comment is easier to
/// find with its line and column.
fn utf8_text<'a>(bytes: &'a [u8], origin: &str) -> Result<&'a str, ConfigErrors> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        // The valid part locates the bad byte as the parser would.
        let valid = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
        let bad: Vec<String> = bytes[at..]
            .iter()
            .take(e.error_len().unwrap_or(bytes.len() - at).max(1))
            .map(|b| format!("0x{b:02x}"))
            .collect();
        ConfigErrors(vec![ConfigError {
            location: Location::at(valid, at, origin.into()),
            message: match e.error_len() {
                Some(_) => format!(
                    "byte {} is not valid UTF-8; a configuration file must be UTF-8 text",
                    bad.join(" ")
                ),
                None => format!(
                    "the file ends inside a UTF-8 character ({}); a configuration file must be UTF-8 text",
                    bad.join(" ")
                ),
            },
        }])
    })
}

impl ServerConfig {
    /// Parses one server from TOML text: either a file with exactly one
    /// `[[server]]` table, or that table's keys on their own. This is how C
    /// and Python callers get every option without a struct per option.
    pub fn parse(text: &str, origin: &str) -> Result<ServerConfig, ConfigErrors> {
        let has_table = text.lines().any(|l| {
            l.trim_start().starts_with("[[server]]") || l.trim_start().starts_with("[daemon]")
        });
        let wrapped;
        let (text, shift) = if has_table {
            (text, 0)
        } else {
            wrapped = format!("[[server]]\n{text}");
            (wrapped.as_str(), 1)
        };
        let mut config = Config::parse(text, origin).map_err(|mut errs| {
            for e in &mut errs.0 {
                // An error on the added `[[server]]` line is one about the whole text.
                e.location.line = e.location.line.saturating_sub(shift).max(1);
            }
            errs
        })?;
        match config.servers.len() {
            1 => {
                let mut server = config.servers.remove(0);
                // Where each address stands, for bind errors: in the
                // caller's text, not in the wrapped one.
                for l in &mut server.listen {
                    l.location.line = l.location.line.saturating_sub(shift).max(1);
                }
                Ok(server)
            }
            n => Err(ConfigErrors(vec![ConfigError {
                location: Location {
                    origin: origin.into(),
                    line: 1,
                    column: 1,
                },
                message: format!("expected exactly one [[server]] table, found {n}"),
            }])),
        }
    }
}

struct Ctx<'a> {
    text: &'a str,
    origin: Arc<str>,
    /// What relative paths are relative to; the current directory if none.
    base: Option<std::path::PathBuf>,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn location(&self, span: Range<usize>) -> Location {
        Location::at(self.text, span.start, self.origin.clone())
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let location = self.location(span);
        self.errors.push(ConfigError {
            location,
            message: message.into(),
        });
    }

    fn parse(mut self) -> Result<Config, ConfigErrors> {
        // Every syntax error, not only the first.
        let (doc, syntax) = DeTable::parse_recoverable(self.text);
        if !syntax.is_empty() {
            for e in syntax {
                self.error(e.span().unwrap_or(0..0), e.message().trim_end().to_owned());
            }
            self.errors
                .sort_by_key(|e| (e.location.line, e.location.column));
            return Err(ConfigErrors(self.errors));
        }
        let mut daemon_raw = None;
        let mut servers_raw = Vec::new();
        for (key, value) in doc.into_inner() {
            match key.get_ref().as_ref() {
                "daemon" => daemon_raw = self.deserialize::<RawDaemon>(value),
                "server" => match value.into_inner() {
                    DeValue::Array(items) => {
                        for item in items {
                            if let Some(server) = self.deserialize::<RawServer>(item) {
                                servers_raw.push(server);
                            }
                        }
                    }
                    _ => self.error(
                        key.span(),
                        "server must be an array of tables: write each server as [[server]]",
                    ),
                },
                other => self.error(
                    key.span(),
                    format!("unknown field `{other}`, expected `daemon` or `server`"),
                ),
            }
        }
        let daemon = self.daemon(daemon_raw);
        let mut servers: Vec<ServerConfig> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for server in servers_raw {
            let span = server.span();
            let server = server.into_inner();
            if names.contains(server.name.get_ref()) {
                self.error(
                    server.name.span(),
                    format!(
                        "a server named {:?} is already defined; names must be unique",
                        server.name.get_ref()
                    ),
                );
            }
            names.push(server.name.get_ref().clone());
            if let Some(s) = self.server(server, span) {
                servers.push(s);
            }
        }
        self.check_shared_addresses(&servers);
        // In the order they stand in the file, as a reader goes through it.
        self.errors
            .sort_by_key(|e| (e.location.line, e.location.column));
        if self.errors.is_empty() {
            Ok(Config { daemon, servers })
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// Deserializes one table, reporting every unknown key in it (serde
    /// stops at the first, so each is reported, removed, and the table
    /// tried again) and then the first other error, if any.
    fn deserialize<T: serde::de::DeserializeOwned>(
        &mut self,
        mut value: Spanned<DeValue<'_>>,
    ) -> Option<Spanned<T>> {
        let span = value.span();
        loop {
            match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(t) => return Some(Spanned::new(span, t)),
                Err(e) => {
                    let unknown = e
                        .message()
                        .strip_prefix("unknown field `")
                        .and_then(|rest| rest.split_once('`'))
                        .map(|(name, _)| name.to_owned());
                    self.error(
                        e.span().unwrap_or(span.clone()),
                        e.message().trim_end().to_owned(),
                    );
                    let (Some(name), DeValue::Table(table)) = (unknown, value.get_mut()) else {
                        return None;
                    };
                    table.remove(name.as_str())?;
                }
            }
        }
    }

    fn duration(&mut self, value: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if d > defaults::MAX_DURATION => {
                self.error(
                    value.span(),
                    format!(
                        "{:?} is too long; expected at most {} days",
                        value.get_ref(),
                        defaults::MAX_DURATION_DAYS
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    value.span(),
                    format!(
                        "{:?} is not a duration ({e}); expected a number with a unit, such as \"5s\" or \"500ms\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn daemon(&mut self, raw: Option<Spanned<RawDaemon>>) -> DaemonConfig {
        let mut config = DaemonConfig::default();
        let Some(raw) = raw.map(Spanned::into_inner) else {
            return config;
        };
        config.log = raw.log;
        if let Some(grace) = &raw.shutdown_grace {
            config.shutdown_grace = self.duration(grace).unwrap_or(config.shutdown_grace);
        }
        for (value, key) in [(&raw.user, "user"), (&raw.group, "group")] {
            if let Some(v) = value
                && v.get_ref().is_empty()
            {
                self.error(
                    v.span(),
                    format!("{key} must not be empty; leave it out to keep the starting {key}"),
                );
            }
        }
        config.user_at = raw.user.as_ref().map(|u| self.location(u.span()));
        config.group_at = raw.group.as_ref().map(|g| self.location(g.span()));
        config.user = raw.user.map(Spanned::into_inner);
        config.group = raw.group.map(Spanned::into_inner);
        if let Some(mask) = &raw.umask {
            match u32::from_str_radix(mask.get_ref(), 8) {
                Ok(m) if m <= 0o777 => config.umask = m,
                _ => self.error(
                    mask.span(),
                    format!(
                        "umask {:?} is not an octal mode; expected such as \"027\"",
                        mask.get_ref()
                    ),
                ),
            }
        }
        if let Some(dir) = raw.working_directory {
            config.working_directory = dir.into();
        }
        if let Some(m) = &raw.metrics {
            match m.get_ref().parse::<SocketAddr>() {
                Ok(addr) => {
                    config.metrics = Some(addr);
                    config.metrics_at = Some(self.location(m.span()));
                }
                Err(_) => self.error(
                    m.span(),
                    format!(
                        "metrics {:?} is not an address; expected IP:PORT where /metrics is served, such as \"127.0.0.1:9917\" (leave it out to serve none)",
                        m.get_ref()
                    ),
                ),
            }
        }
        config
    }

    /// A duration that must not be zero; `hint` says what leaving it out does.
    fn timeout(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        hint: &str,
    ) -> Option<Duration> {
        let raw = value.as_ref()?;
        let d = self.duration(raw)?;
        if d.is_zero() {
            self.error(raw.span(), format!("{key} must be longer than 0; {hint}"));
            return None;
        }
        Some(d)
    }

    fn positive(&mut self, value: &Option<Spanned<usize>>, key: &str) -> Option<usize> {
        let v = value.as_ref()?;
        if *v.get_ref() == 0 {
            self.error(v.span(), format!("{key} must be at least 1"));
            return None;
        }
        Some(*v.get_ref())
    }

    /// Reports a key that means nothing for this kind of server, so a typo'd
    /// intent ("unit" on an echo server) is not silently ignored.
    fn not_for<T>(&mut self, value: &Option<Spanned<T>>, key: &str, what: &str) {
        if let Some(v) = value {
            self.error(v.span(), format!("{key} does not apply to {what}"));
        }
    }

    fn server(&mut self, raw: RawServer, span: Range<usize>) -> Option<ServerConfig> {
        let errors_before = self.errors.len();
        let name = raw.name.get_ref().clone();
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            self.error(
                raw.name.span(),
                "name must be non-empty, without spaces or control characters",
            );
        }
        let kind = *raw.service.get_ref();
        let transport = raw
            .transport
            .as_ref()
            .map_or(defaults::TRANSPORT, |t| *t.get_ref());
        let model = raw.model.as_ref().map_or(defaults::MODEL, |m| *m.get_ref());

        if let Some(m) = &raw.model {
            if kind == ServiceKind::Chat && model == Model::Fork {
                self.error(
                    m.span(),
                    "chat cannot run under the fork model: its clients share one room, and separate processes share nothing; use model = \"event\"",
                );
            }
            if transport == Transport::Udp && model != Model::Event {
                self.error(
                    m.span(),
                    "UDP servers run on their own socket loop; model must be \"event\" or left out",
                );
            }
        }
        if transport == Transport::Udp && kind != ServiceKind::Echo {
            let span = raw.transport.as_ref().map_or(span.clone(), |t| t.span());
            self.error(
                span,
                format!("{kind:?} is served over TCP only; transport must be \"tcp\"")
                    .to_lowercase(),
            );
        }
        if kind == ServiceKind::Chat
            && let Some(m) = &raw.model
            && model == Model::Thread
        {
            self.error(
                m.span(),
                "chat runs on the event model: one reactor serves the whole room; use model = \"event\" or leave it out",
            );
        }

        let listen = self.listen(&raw.listen, kind, transport);
        let workers = self.positive(&raw.workers, "workers").unwrap_or_else(|| {
            if kind == ServiceKind::Chat {
                defaults::CHAT_WORKERS
            } else {
                defaults::workers()
            }
        });
        let mut max_connections = self
            .positive(&raw.max_connections, "max_connections")
            .unwrap_or(defaults::MAX_CONNECTIONS);
        let per_source = self.positive(&raw.per_source, "per_source");
        let idle_timeout = self.timeout(
            &raw.idle_timeout,
            "idle_timeout",
            "leave it out for no timeout",
        );
        let handshake_timeout = self
            .timeout(
                &raw.handshake_timeout,
                "handshake_timeout",
                &format!(
                    "it is {} when left out",
                    humantime::format_duration(defaults::HANDSHAKE_TIMEOUT)
                ),
            )
            .unwrap_or(defaults::HANDSHAKE_TIMEOUT);
        if transport == Transport::Udp {
            self.not_for(
                &raw.handshake_timeout,
                "handshake_timeout",
                "UDP servers (no TLS over UDP)",
            );
            self.not_for(&raw.per_source, "per_source", "UDP servers");
            self.not_for(&raw.idle_timeout, "idle_timeout", "UDP servers");
            self.not_for(&raw.max_connections, "max_connections", "UDP servers");
            self.not_for(&raw.tcp_nodelay, "tcp_nodelay", "UDP servers");
        }
        let tcp_nodelay = raw
            .tcp_nodelay
            .as_ref()
            .map_or(defaults::TCP_NODELAY, |t| *t.get_ref());
        // It bounds a TLS handshake and a PROXY header: on a server with
        // neither, it would be a setting that silently does nothing.
        let any_tls = raw
            .listen
            .get_ref()
            .iter()
            .any(|l| l.get_ref().0.tls.is_some());
        let proxy_on = raw.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
        if transport == Transport::Tcp && !any_tls && !proxy_on {
            self.not_for(
                &raw.handshake_timeout,
                "handshake_timeout",
                "a server with no TLS listener and no proxy_protocol (it bounds the TLS handshake and the PROXY header)",
            );
        }
        if transport == Transport::Tcp && model != Model::Event {
            self.not_for(
                &raw.workers,
                "workers",
                "the thread and fork models (one worker per connection)",
            );
        }
        if kind != ServiceKind::Chat {
            for (value, key) in [
                (&raw.max_clients, "max_clients"),
                (&raw.queue_bytes, "queue_bytes"),
                (&raw.queue_frames, "queue_frames"),
            ] {
                self.not_for(value, key, "services other than chat");
            }
            self.not_for(
                &raw.login_timeout,
                "login_timeout",
                "services other than chat",
            );
            self.not_for(&raw.cluster, "cluster", "services other than chat");
        }
        let access = AccessList {
            allow: self.nets(raw.allow.as_deref().unwrap_or_default()),
            deny: self.nets(raw.deny.as_deref().unwrap_or_default()),
        };
        let rate = self.rate(&raw);
        let proxy = self.proxy(&raw, transport);
        if kind != ServiceKind::Chat {
            self.not_for(
                &raw.message_rate,
                "message_rate",
                "services other than chat",
            );
            self.not_for(
                &raw.message_burst,
                "message_burst",
                "services other than chat",
            );
        }

        let service = match (kind, transport) {
            (ServiceKind::Echo, Transport::Tcp) => {
                self.not_for(&raw.drop_source_ports, "drop_source_ports", "TCP echo");
                self.count_keys_absent(&raw, "echo");
                ServiceConfig::Echo(EchoService {
                    tag_worker: raw.tag.is_some(),
                })
            }
            (ServiceKind::Echo, Transport::Udp) => {
                self.not_for(&raw.tag, "tag", "UDP echo");
                self.count_keys_absent(&raw, "echo");
                let ports = raw
                    .drop_source_ports
                    .as_ref()
                    .map_or(&defaults::DROP_SOURCE_PORTS[..], |p| p.get_ref());
                ServiceConfig::UdpEcho(UdpEchoService::new(ports))
            }
            (ServiceKind::Count, _) => {
                self.not_for(&raw.tag, "tag", "count");
                self.not_for(&raw.drop_source_ports, "drop_source_ports", "count");
                let framing = match raw.framing.as_ref().map(|f| *f.get_ref()) {
                    None => defaults::COUNT_FRAMING,
                    Some(CountFraming::Header { header_len }) => CountFraming::Header {
                        header_len: raw.header_len.as_ref().map_or(header_len, |h| *h.get_ref()),
                    },
                    Some(other) => other,
                };
                if !matches!(framing, CountFraming::Header { .. }) {
                    self.not_for(
                        &raw.header_len,
                        "header_len",
                        "framing other than \"header\"",
                    );
                }
                if let Some(h) = &raw.header_len {
                    self.header_len(h);
                }
                ServiceConfig::Count(CountService {
                    framing,
                    unit: raw
                        .unit
                        .as_ref()
                        .map_or(defaults::COUNT_UNIT, |u| *u.get_ref()),
                    max_frame: self
                        .positive(&raw.max_frame, "max_frame")
                        .unwrap_or(defaults::MAX_FRAME),
                })
            }
            (ServiceKind::Chat, _) => {
                self.not_for(&raw.tag, "tag", "chat");
                self.not_for(&raw.drop_source_ports, "drop_source_ports", "chat");
                self.not_for(
                    &raw.framing,
                    "framing",
                    "chat (each listener has its dialect)",
                );
                self.not_for(&raw.unit, "unit", "chat");
                self.not_for(&raw.header_len, "header_len", "chat servers; give it to a listener: { addr = \"...\", dialect = \"header\", header_len = 100 }");
                let max_clients = self
                    .positive(&raw.max_clients, "max_clients")
                    .unwrap_or(defaults::MAX_CLIENTS);
                match &raw.max_connections {
                    None => max_connections = defaults::chat_max_connections(max_clients),
                    Some(m) if (1..max_clients).contains(m.get_ref()) => self.error(
                        m.span(),
                        format!(
                            "max_connections ({}) must be at least max_clients ({max_clients}): every named client is a connection",
                            m.get_ref()
                        ),
                    ),
                    Some(_) => {}
                }
                let dialects = listen
                    .iter()
                    .map(|l| l.dialect.clone().unwrap_or(defaults::DIALECT))
                    .collect();
                ServiceConfig::Chat(ChatConfig {
                    dialects,
                    max_clients,
                    max_frame: self
                        .positive(&raw.max_frame, "max_frame")
                        .unwrap_or(defaults::MAX_FRAME),
                    queue_bytes: self
                        .positive(&raw.queue_bytes, "queue_bytes")
                        .unwrap_or(defaults::QUEUE_BYTES),
                    queue_frames: self
                        .positive(&raw.queue_frames, "queue_frames")
                        .unwrap_or(defaults::QUEUE_FRAMES),
                    login_timeout: self
                        .timeout(
                            &raw.login_timeout,
                            "login_timeout",
                            &format!(
                                "it is {} when left out",
                                humantime::format_duration(defaults::LOGIN_TIMEOUT)
                            ),
                        )
                        .unwrap_or(defaults::LOGIN_TIMEOUT),
                    message_rate: self.message_rate(&raw),
                    cluster: raw.cluster.as_ref().and_then(|c| self.cluster(c.get_ref())),
                })
            }
        };

        if self.errors.len() > errors_before {
            return None;
        }
        Some(ServerConfig {
            name,
            service,
            transport,
            model,
            listen,
            workers,
            limits: Limits {
                max_connections,
                per_source,
                idle_timeout,
            },
            access,
            handshake_timeout,
            rate,
            proxy,
            tcp_nodelay,
        })
    }

    /// A rate as written (`"20/s"`).
    fn parse_rate(&mut self, raw: &Spanned<String>, key: &str) -> Option<Rate> {
        match Rate::parse(raw.get_ref()) {
            Ok(r) => Some(r),
            Err(e) => {
                self.error(raw.span(), format!("{key}: {e}"));
                None
            }
        }
    }

    /// A burst: at least 1, at most 2^32 - 1.
    fn burst(&mut self, raw: &Option<Spanned<usize>>, key: &str) -> Option<u32> {
        let n = self.positive(raw, key)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                let span = raw.as_ref().map_or(0..0, |r| r.span());
                self.error(span, format!("{key} must be at most {}", u32::MAX));
                None
            }
        }
    }

    /// `rate`, `burst`, `source_prefix_v4`/`_v6` and `rate_sources`; the
    /// last four mean nothing without `rate`.
    fn rate(&mut self, raw: &RawServer) -> Option<RateConfig> {
        let prefix = |ctx: &mut Self,
                      value: &Option<Spanned<u32>>,
                      key: &str,
                      max: u32,
                      default: u8| {
            match value {
                None => default,
                Some(v) if *v.get_ref() <= max => *v.get_ref() as u8,
                Some(v) => {
                    ctx.error(
                        v.span(),
                        format!("{key} must be from 0 to {max} (the leading bits of an address that make one source)"),
                    );
                    default
                }
            }
        };
        let Some(rate_raw) = &raw.rate else {
            let without = "a server without rate; add rate = \"20/s\" (a count per s, m or h)";
            self.not_for(&raw.burst, "burst", without);
            self.not_for(&raw.source_prefix_v4, "source_prefix_v4", without);
            self.not_for(&raw.source_prefix_v6, "source_prefix_v6", without);
            self.not_for(&raw.rate_sources, "rate_sources", without);
            return None;
        };
        let v4 = prefix(
            self,
            &raw.source_prefix_v4,
            "source_prefix_v4",
            32,
            defaults::SOURCE_PREFIX_V4,
        );
        let v6 = prefix(
            self,
            &raw.source_prefix_v6,
            "source_prefix_v6",
            128,
            defaults::SOURCE_PREFIX_V6,
        );
        let rate = self.parse_rate(rate_raw, "rate");
        let burst = self.burst(&raw.burst, "burst");
        let sources = self
            .positive(&raw.rate_sources, "rate_sources")
            .unwrap_or(defaults::RATE_SOURCES);
        let rate = rate?;
        Some(RateConfig {
            rate,
            burst: burst.unwrap_or_else(|| defaults::burst(rate)),
            source_prefix_v4: v4,
            source_prefix_v6: v6,
            sources,
        })
    }

    /// `proxy_protocol = true` with `proxy_from`, TCP only.
    fn proxy(&mut self, raw: &RawServer, transport: Transport) -> Option<ProxyConfig> {
        if transport == Transport::Udp {
            self.not_for(
                &raw.proxy_protocol,
                "proxy_protocol",
                "UDP servers (the PROXY protocol is for TCP)",
            );
            self.not_for(
                &raw.proxy_from,
                "proxy_from",
                "UDP servers (the PROXY protocol is for TCP)",
            );
            return None;
        }
        let on = raw.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
        if !on {
            self.not_for(
                &raw.proxy_from,
                "proxy_from",
                "a server without proxy_protocol = true",
            );
            return None;
        }
        let Some(from) = &raw.proxy_from else {
            let span = raw.proxy_protocol.as_ref().map_or(0..0, |p| p.span());
            self.error(
                span,
                "proxy_protocol = true needs proxy_from: the balancers allowed to send the header, such as proxy_from = [\"127.0.0.1/32\"]",
            );
            return None;
        };
        if from.get_ref().is_empty() {
            self.error(
                from.span(),
                "proxy_from must name at least one address or network, such as \"10.0.0.0/8\"",
            );
            return None;
        }
        Some(ProxyConfig {
            from: self.nets(from.get_ref()),
        })
    }

    /// A chat server's `message_rate` and `message_burst`.
    fn message_rate(&mut self, raw: &RawServer) -> Option<(Rate, u32)> {
        let Some(rate_raw) = &raw.message_rate else {
            self.not_for(
                &raw.message_burst,
                "message_burst",
                "a server without message_rate; add message_rate = \"10/s\"",
            );
            return None;
        };
        let rate = self.parse_rate(rate_raw, "message_rate");
        let burst = self.burst(&raw.message_burst, "message_burst");
        let rate = rate?;
        Some((rate, burst.unwrap_or_else(|| defaults::burst(rate))))
    }

    /// A chat server's `cluster` table. The URL is parsed now, by the
    /// crate that will connect with it, so a bad one is an error here with
    /// its place in the file, not a log line once the server runs.
    fn cluster(&mut self, raw: &RawCluster) -> Option<ClusterConfig> {
        let before = self.errors.len();
        let written = raw.redis.get_ref();
        let expected = "expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... for TLS, or unix:///PATH";
        // Not shown when it does not parse: it may hold a password.
        let tls = match url::Url::parse(written) {
            Err(e) => {
                self.error(
                    raw.redis.span(),
                    format!("redis is not a URL ({e}); {expected}"),
                );
                None
            }
            Ok(url) if redis::parse_redis_url(written).is_none() => {
                self.error(
                    raw.redis.span(),
                    format!(
                        "redis URL scheme {:?} is not one of Redis's; {expected}",
                        url.scheme()
                    ),
                );
                None
            }
            Ok(url) => match redis::IntoConnectionInfo::into_connection_info(url) {
                Ok(info) => Some(matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })),
                Err(e) => {
                    self.error(
                        raw.redis.span(),
                        format!(
                            "{} is not a usable Redis URL ({e}); {expected}",
                            RedisUrl(written.clone())
                        ),
                    );
                    None
                }
            },
        };
        for (value, key) in [(Some(&raw.room), "room"), (raw.node.as_ref(), "node")] {
            let Some(v) = value else { continue };
            let text = v.get_ref();
            if text.is_empty()
                || text.chars().count() > 64
                || text.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                self.error(
                    v.span(),
                    format!(
                        "{key} must be 1 to 64 characters, without spaces or control characters"
                    ),
                );
            }
        }
        let presence_ttl = match &raw.presence_ttl {
            None => defaults::PRESENCE_TTL,
            Some(v) => match self.duration(v) {
                Some(d) if d < defaults::MIN_PRESENCE_TTL => {
                    self.error(
                        v.span(),
                        format!(
                            "presence_ttl must be at least {}: heartbeats go out every quarter of it",
                            humantime::format_duration(defaults::MIN_PRESENCE_TTL)
                        ),
                    );
                    defaults::PRESENCE_TTL
                }
                Some(d) => d,
                None => defaults::PRESENCE_TTL,
            },
        };
        let ca = raw.ca.as_ref().map(|c| {
            if tls == Some(false) {
                self.error(
                    c.span(),
                    "ca applies to rediss:// (TLS) URLs only; this one is plain",
                );
            }
            let path = self.path(c);
            if let Err(e) = crate::tls::roots(&path) {
                self.error(c.span(), e.to_string());
            }
            path
        });
        if self.errors.len() > before {
            return None;
        }
        Some(ClusterConfig {
            redis: RedisUrl(written.clone()),
            room: raw.room.get_ref().clone(),
            node: raw
                .node
                .as_ref()
                .map_or_else(defaults::cluster_node, |n| n.get_ref().clone()),
            presence_ttl,
            ca,
        })
    }

    /// A header width: at least one digit, at most the codec's maximum.
    fn header_len(&mut self, h: &Spanned<usize>) {
        let max = crate::codec::HeaderCodec::MAX_HEADER_LEN;
        if !(1..=max).contains(h.get_ref()) {
            self.error(
                h.span(),
                format!("header_len must be from 1 to {max} bytes (the width of the length field; the seed uses 100)"),
            );
        }
    }

    fn count_keys_absent(&mut self, raw: &RawServer, what: &str) {
        self.not_for(&raw.framing, "framing", what);
        self.not_for(&raw.unit, "unit", what);
        self.not_for(&raw.header_len, "header_len", what);
        self.not_for(&raw.max_frame, "max_frame", what);
    }

    fn listen(
        &mut self,
        raw: &Spanned<Vec<Spanned<RawListen>>>,
        kind: ServiceKind,
        transport: Transport,
    ) -> Vec<ListenConfig> {
        if raw.get_ref().is_empty() {
            self.error(
                raw.span(),
                "listen must name at least one address, such as \"127.0.0.1:7007\"",
            );
        }
        let mut out = Vec::new();
        for entry in raw.get_ref() {
            let entry_span = entry.span();
            let e = &entry.get_ref().0;
            // A bare string's span is the entry's.
            let addr_span = if e.addr.span() == (0..0) {
                entry_span.clone()
            } else {
                e.addr.span()
            };
            if kind != ServiceKind::Chat {
                self.not_for(&e.dialect, "dialect", "services other than chat");
                self.not_for(
                    &e.header_len,
                    "header_len in listen",
                    "services other than chat",
                );
            } else if !matches!(
                e.dialect.as_ref().map(|d| d.get_ref()),
                Some(Dialect::Header { .. })
            ) {
                self.not_for(
                    &e.header_len,
                    "header_len",
                    "dialects other than \"header\"",
                );
            }
            let websocket = matches!(
                e.dialect.as_ref().map(|d| d.get_ref()),
                Some(Dialect::WebSocket(_))
            );
            if !websocket {
                let what = if kind == ServiceKind::Chat {
                    "dialects other than \"websocket\""
                } else {
                    "services other than chat"
                };
                self.not_for(&e.allowed_origins, "allowed_origins", what);
                self.not_for(&e.ping_interval, "ping_interval", what);
            }
            if let Some(h) = &e.header_len {
                self.header_len(h);
            }
            let websocket_settings = WebSocketSettings {
                allowed_origins: self.origins(&e.allowed_origins),
                ping_interval: Some(
                    self.timeout(&e.ping_interval, "ping_interval", "it is 30s when left out")
                        .unwrap_or(defaults::PING_INTERVAL),
                ),
            };
            let tls = match &e.tls {
                Some(t) if transport == Transport::Udp => {
                    self.error(
                        t.span(),
                        "tls does not apply to UDP servers: TLS runs over TCP, and netlab has no DTLS",
                    );
                    None
                }
                Some(t) => self.tls(t.get_ref()),
                None => None,
            };
            match e.addr.get_ref().parse::<SocketAddr>() {
                Ok(addr) => out.push(ListenConfig {
                    addr,
                    dialect: e.dialect.as_ref().map(|d| match d.get_ref().clone() {
                        Dialect::Header { header_len } => Dialect::Header {
                            header_len: e.header_len.as_ref().map_or(header_len, |h| *h.get_ref()),
                        },
                        Dialect::WebSocket(_) => Dialect::websocket(websocket_settings.clone()),
                        other => other,
                    }),
                    tls,
                    location: self.location(addr_span),
                }),
                Err(_) => self.error(
                    addr_span,
                    format!(
                        "{:?} is not an address; expected IP:PORT, such as \"127.0.0.1:7007\" or \"[::1]:7007\"",
                        e.addr.get_ref()
                    ),
                ),
            }
        }
        out
    }

    /// A WebSocket listener's `allowed_origins`: each `"*"` or an origin as
    /// browsers send it, scheme, host and maybe port.
    fn origins(&mut self, raw: &Option<Spanned<Vec<Spanned<String>>>>) -> Vec<String> {
        let mut origins = Vec::new();
        for o in raw.iter().flat_map(|r| r.get_ref()) {
            let text = o.get_ref();
            let host = text
                .strip_prefix("http://")
                .or_else(|| text.strip_prefix("https://"));
            let ok = text == "*"
                || host.is_some_and(|h| {
                    !h.is_empty()
                        && !h.contains(['/', '?', '#', '@'])
                        && !h.contains(char::is_whitespace)
                });
            if ok {
                origins.push(text.clone());
            } else {
                self.error(
                    o.span(),
                    format!("{text:?} is not an origin; expected a scheme and host as browsers send them, such as \"https://chat.example.org\" or \"http://127.0.0.1:8080\", or \"*\" for any"),
                );
            }
        }
        origins
    }

    /// A path as written, made relative to the configuration's directory.
    fn path(&self, raw: &Spanned<String>) -> std::path::PathBuf {
        let path = std::path::Path::new(raw.get_ref());
        match &self.base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        }
    }

    /// A listener's TLS, its files read and checked now: an error names
    /// the key that gave the file at fault.
    fn tls(&mut self, raw: &RawTls) -> Option<ListenTls> {
        let mut ok = true;
        for (key, value) in [("cert", &raw.cert), ("key", &raw.key)]
            .into_iter()
            .chain(raw.client_ca.as_ref().map(|c| ("client_ca", c)))
        {
            if value.get_ref().is_empty() {
                self.error(value.span(), format!("{key} must name a file"));
                ok = false;
            }
        }
        let mut alpn = Vec::new();
        for p in raw.alpn.iter().flatten() {
            if p.get_ref().is_empty() || p.get_ref().len() > 255 {
                self.error(
                    p.span(),
                    "an ALPN protocol name is 1 to 255 bytes, such as \"h2\" or \"netlab\"",
                );
                ok = false;
            }
            alpn.push(p.get_ref().clone());
        }
        if !ok {
            return None;
        }
        let files = crate::tls::ServerFiles {
            cert: self.path(&raw.cert),
            key: self.path(&raw.key),
            client_ca: raw.client_ca.as_ref().map(|c| self.path(c)),
            alpn,
        };
        match crate::tls::server_config_or_which(&files) {
            Ok(loaded) => Some(ListenTls { files, loaded }),
            Err((which, e)) => {
                // At the key whose file is at fault.
                let span = match which {
                    ServerFile::Cert => raw.cert.span(),
                    ServerFile::Key => raw.key.span(),
                    ServerFile::ClientCa => {
                        raw.client_ca.as_ref().map_or(raw.cert.span(), |c| c.span())
                    }
                };
                self.error(span, e.to_string());
                None
            }
        }
    }

    fn nets(&mut self, raw: &[Spanned<String>]) -> Vec<IpNet> {
        let mut nets = Vec::new();
        for s in raw {
            let text = s.get_ref();
            let parsed = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => nets.push(net.trunc()),
                Err(_) => self.error(
                    s.span(),
                    format!("{text:?} is not an address or network; expected CIDR such as \"10.0.0.0/8\" or \"::1\""),
                ),
            }
        }
        nets
    }

    /// Two servers cannot listen on the same address and transport.
    fn check_shared_addresses(&mut self, servers: &[ServerConfig]) {
        let mut seen: Vec<(SocketAddr, Transport, &str)> = Vec::new();
        let mut dupes = Vec::new();
        for s in servers {
            for l in &s.listen {
                if l.addr.port() != 0
                    && let Some((_, _, other)) = seen
                        .iter()
                        .find(|(a, t, _)| *a == l.addr && *t == s.transport)
                {
                    dupes.push(ConfigError {
                        location: l.location.clone(),
                        message: format!("{} is already used by server {other:?}", l.addr),
                    });
                }
                seen.push((l.addr, s.transport, &s.name));
            }
        }
        self.errors.extend(dupes);
    }
}

#[cfg(test)]
mod tests;
