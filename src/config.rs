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

use crate::chat::Dialect;
use crate::service::{CountFraming, CountService, CountUnit, EchoService, UdpEchoService};
use crate::tls::ServerFile;

/// Every default, in one place.
pub mod defaults {
    use std::time::Duration;

    use crate::chat::Dialect;
    use crate::service::{CountFraming, CountUnit};

    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    pub const UMASK: u32 = 0o027;
    pub const MAX_CONNECTIONS: usize = 10_000;
    /// The longest frame (message) a client may send, in bytes.
    pub const MAX_FRAME: usize = 64 * 1024;
    /// The width of a length header, in bytes (seed 004 uses 100).
    pub const HEADER_LEN: usize = 10;
    /// A chat listener's dialect.
    pub const DIALECT: Dialect = Dialect::Line;
    /// A count server's framing and what it counts.
    pub const COUNT_FRAMING: CountFraming = CountFraming::Line;
    pub const COUNT_UNIT: CountUnit = CountUnit::Chars;
    pub const MAX_CLIENTS: usize = 1000;
    /// What may wait to be written to one chat client before it is dropped.
    pub const QUEUE_BYTES: usize = 1024 * 1024;
    pub const QUEUE_FRAMES: usize = 16 * 1024;
    /// How long a TLS client has to finish its handshake.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long a chat connection may stay without a name: without a bound,
    /// silent connections would hold the room's connection slots forever.
    pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
    /// The longest duration a config may give: longer ones are typos, and
    /// would overflow the clock arithmetic.
    pub const MAX_DURATION: Duration = Duration::from_secs(MAX_DURATION_DAYS * 24 * 3600);
    pub const MAX_DURATION_DAYS: u64 = 365;
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

/// `dialect = "line" | "header" | "bincode"`: a header dialect is read with
/// the default width, which a listener's `header_len` then replaces.
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
}

/// A `listen` entry: `"127.0.0.1:7"` or `{ addr = "...", dialect = "...", header_len = N }`.
#[derive(Debug)]
struct RawListen {
    addr: Spanned<String>,
    dialect: Option<Spanned<Dialect>>,
    header_len: Option<Spanned<usize>>,
    tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenTable {
    addr: Spanned<String>,
    dialect: Option<Spanned<Dialect>>,
    header_len: Option<Spanned<usize>>,
    tls: Option<Spanned<RawTls>>,
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
                Ok(RawListen {
                    addr: Spanned::new(0..0, v.to_owned()),
                    dialect: None,
                    header_len: None,
                    tls: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawListen, A::Error> {
                let t =
                    RawListenTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(RawListen {
                    addr: t.addr,
                    dialect: t.dialect,
                    header_len: t.header_len,
                    tls: t.tls,
                })
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
            working_directory: "/".into(),
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
    /// How long a TLS client has to finish its handshake.
    pub handshake_timeout: Duration,
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
            .map_or(Transport::Tcp, |t| *t.get_ref());
        let model = raw.model.as_ref().map_or(Model::Event, |m| *m.get_ref());

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
        let workers = self
            .positive(&raw.workers, "workers")
            .unwrap_or_else(defaults::workers);
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
                "it is 10s when left out",
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
        }
        let access = AccessList {
            allow: self.nets(raw.allow.as_deref().unwrap_or_default()),
            deny: self.nets(raw.deny.as_deref().unwrap_or_default()),
        };

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
                    .map_or(&UdpEchoService::DEFAULT_DROP_SOURCE_PORTS[..], |p| {
                        p.get_ref()
                    });
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
                self.not_for(
                    &raw.workers,
                    "workers",
                    "chat (one reactor serves the whole room)",
                );
                let max_clients = self
                    .positive(&raw.max_clients, "max_clients")
                    .unwrap_or(defaults::MAX_CLIENTS);
                // By default, room beyond max_clients, so that a client over
                // the limit hears "the room is full" in its dialect rather
                // than being cut off at accept (login_timeout keeps unnamed
                // connections from holding that room for long).
                match &raw.max_connections {
                    None => {
                        max_connections = max_clients.saturating_add((max_clients / 8).max(16));
                    }
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
                    .map(|l| l.dialect.unwrap_or(defaults::DIALECT))
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
                            "it is 30s when left out",
                        )
                        .unwrap_or(defaults::LOGIN_TIMEOUT),
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
            let e = entry.get_ref();
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
                e.dialect.as_ref().map(|d| *d.get_ref()),
                Some(Dialect::Header { .. })
            ) {
                self.not_for(
                    &e.header_len,
                    "header_len",
                    "dialects other than \"header\"",
                );
            }
            if let Some(h) = &e.header_len {
                self.header_len(h);
            }
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
                    dialect: e.dialect.as_ref().map(|d| match *d.get_ref() {
                        Dialect::Header { header_len } => Dialect::Header {
                            header_len: e.header_len.as_ref().map_or(header_len, |h| *h.get_ref()),
                        },
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
