//! `netlab`, the command-line client and load generator: `echo` and `count`
//! talk to one server once; `chat` joins a chat room interactively; `bench
//! echo` drives a closed-loop load against an echo server and `bench chat`
//! a windowed load against a chat room, and both report throughput and
//! latency.
//!
//! The argument types are clap-derived here so that `src/bin/netlab.rs` only
//! parses and calls [`run`], and the exit codes below are the whole contract
//! with scripts.

mod args;
mod bench;
mod chat;
mod count;
mod echo;
mod stats;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use netlab::chat::Dialect;
use netlab::client::{ClientError, ClientOptions, ErrorKind, TlsClient};
use netlab::config::defaults;
use netlab::service::CountFraming;
use netlab::tls::ClientFiles;

pub use args::{parse_addr, parse_duration, parse_secs};

/// The exit codes, as `--help` documents them.
pub mod exit {
    /// The command did what was asked (an echo came back identical).
    pub const OK: u8 = 0;
    /// The server answered, but wrongly: an echo that differs from what was
    /// sent, or a bench that counted errors.
    pub const MISMATCH: u8 = 1;
    /// Bad arguments (clap exits with 2 as well).
    pub const USAGE: u8 = 2;
    /// The server did not answer in time.
    pub const TIMEOUT: u8 = 3;
    /// Any other failure: refused, reset, closed early, malformed reply.
    pub const IO: u8 = 4;
    /// Given up at the user's word (Ctrl-C), as shells report SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success (for echo: the reply equals what was sent)
  1  the server answered wrongly (echo differs; bench counted errors)
  2  usage error
  3  timeout: no answer in time
  4  other error: refused, reset, closed early, malformed reply";

/// netlab's command-line client and load generator.
#[derive(Debug, Parser)]
#[command(name = "netlab", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send a message to an echo server and print what comes back.
    #[command(after_help = EXIT_CODES_HELP)]
    Echo(EchoArgs),
    /// Ask a count server how many characters a message has.
    #[command(after_help = EXIT_CODES_HELP)]
    Count(CountArgs),
    /// Join a chat room: type lines to send them, see the room as it talks.
    #[command(after_help = CHAT_HELP)]
    Chat(ChatArgs),
    /// Measure a server under load.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
    /// Show a running netlabd's figures (its /metrics) as a table per server.
    #[command(after_help = EXIT_CODES_HELP)]
    Stats(StatsArgs),
    /// Print netlab's shell completion script.
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}

/// Every command's `--timeout` when none is given: one step (connect, a
/// read, a write, a join) may take this long.
const TIMEOUT: &str = "5s";

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Where netlabd serves its metrics ([daemon] metrics): http://HOST:PORT,
    /// or HOST:PORT; the path is /metrics unless given.
    pub url: String,
    /// Redraw every SECS seconds, as top does, with rates per second since
    /// the last look; Ctrl-C stops.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub watch: Option<Duration>,
    /// How long fetching the figures may take.
    #[arg(long, default_value = TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
}

const COMPLETIONS_HELP: &str = "\
The Debian package installs them for bash, zsh and fish. Otherwise, e.g.:
  netlab completions bash > ~/.local/share/bash-completion/completions/netlab
  netlab completions zsh > ~/.zfunc/_netlab     # with fpath+=~/.zfunc
  netlab completions fish > ~/.config/fish/completions/netlab.fish";

/// TLS, for every command that connects over TCP.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Connect with TLS (the server's listener has `tls`).
    #[arg(long)]
    pub tls: bool,
    /// With --tls: the CA certificates (PEM) to trust, instead of the
    /// system's.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<std::path::PathBuf>,
    /// With --tls: a client certificate (PEM), for servers with `client_ca`.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<std::path::PathBuf>,
    /// With --tls: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "cert"])]
    pub key: Option<std::path::PathBuf>,
    /// With --tls: the name the server's certificate must carry (and SNI),
    /// when it is not the address's IP.
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub servername: Option<String>,
}

impl TlsArgs {
    /// Client options with `timeout` and, with --tls, TLS as asked.
    pub fn options(&self, timeout: Duration) -> Result<ClientOptions, ClientError> {
        let options = ClientOptions::new(timeout);
        if !self.tls {
            return Ok(options);
        }
        let mut tls = TlsClient::new(&ClientFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
        })?;
        if let Some(name) = &self.servername {
            tls = tls.with_server_name(name)?;
        }
        Ok(options.with_tls(tls))
    }
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Server address: HOST:PORT, e.g. 127.0.0.1:7, [::1]:7, localhost:7.
    #[arg(value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// The message, words joined by spaces; read from stdin when absent.
    pub message: Vec<String>,
    /// Use UDP: one datagram, resent on timeout.
    #[arg(long)]
    pub udp: bool,
    /// How long each step (connect, read, write; a UDP try) may take: 2s, 500ms.
    #[arg(long, default_value = TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    /// With --udp, how many times to resend before giving up.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    #[command(flatten)]
    pub tls: TlsArgs,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Server address: HOST:PORT.
    #[arg(value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// The message, words joined by spaces.
    #[arg(required = true)]
    pub message: Vec<String>,
    /// How the message and the reply are framed, as the server's
    /// `framing`: line (the reply is `N\n`), header (a fixed-width ASCII
    /// length header both ways) or chunk (raw bytes, then half-close; the
    /// reply is the bare number).
    #[arg(long, default_value = "line", value_parser = PossibleValuesParser::new(CountFraming::NAMES))]
    pub framing: String,
    /// Width of the length header, for --framing header.
    #[arg(long, default_value_t = defaults::HEADER_LEN)]
    pub header_len: usize,
    /// How long each step (connect, read, write) may take.
    #[arg(long, default_value = TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl CountArgs {
    pub fn framing(&self) -> CountFraming {
        CountFraming::named(&self.framing, self.header_len).unwrap_or(defaults::COUNT_FRAMING)
    }
}

const CHAT_HELP: &str = "\
Lines typed are sent to everyone else; `/who` lists who is online and
`/quit` leaves, in every dialect. End of input (Ctrl-D) or Ctrl-C leaves
too. On a terminal the prompt [NAME@HOST]> stays at the bottom; otherwise
each event is printed as a plain line: `[name] text` for messages, `* ...`
for notices.

Exit status:
  0  left as asked (/quit, end of input, Ctrl-C)
  2  usage error
  3  timeout: no welcome in time
  4  other error: refused (name taken or invalid, room full), connection
     failed or closed by the server";

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Server address: HOST:PORT of a chat listener.
    #[arg(value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// The name to join as: 1 to 32 characters, unique in the room.
    #[arg(long, short = 'n')]
    pub name: String,
    /// The listener's dialect: line (a line per message), header (a
    /// fixed-width ASCII length header, seed 004's), bincode, or websocket
    /// (the client upgrades at /ws, as the listener's page at
    /// http://HOST:PORT/ does in a browser).
    #[arg(long, default_value = "line", value_parser = PossibleValuesParser::new(Dialect::NAMES))]
    pub dialect: String,
    /// Width of the length header, for --dialect header (the seed uses 100).
    #[arg(long, default_value_t = defaults::HEADER_LEN)]
    pub header_len: usize,
    /// How long connecting, joining and each write may take.
    #[arg(long, default_value = TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub tls: TlsArgs,
}

impl ChatArgs {
    pub fn dialect(&self) -> Dialect {
        Dialect::named(&self.dialect, self.header_len).unwrap_or(defaults::DIALECT)
    }
}

/// How the chat bench joins and reads a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChatProtocol {
    /// netlab's chat (or a server that speaks its line dialect): each
    /// client sends a name and waits for the welcome.
    Netlab,
    /// `ncat -l --chat`: no name; relayed lines carry a `<userN> ` prefix.
    Ncat,
}

#[derive(Debug, Subcommand)]
pub enum BenchTarget {
    /// Closed loop against an echo server: each connection sends SIZE bytes,
    /// waits for all of them back, records the round trip, and repeats.
    #[command(after_help = bench::BENCH_HELP)]
    Echo(BenchEchoArgs),
    /// A chat room: N clients join, M of them send messages, every client
    /// times what it receives.
    #[command(after_help = bench::BENCH_CHAT_HELP)]
    Chat(BenchChatArgs),
}

#[derive(Debug, Clone, Args)]
pub struct BenchChatArgs {
    /// Server addresses: HOST:PORT of chat listeners. The senders join the
    /// first; the other clients are dealt to all of them in turn (nodes of
    /// one clustered room, or listeners of one server).
    #[arg(value_parser = parse_addr, required = true, num_args = 1..)]
    pub addrs: Vec<SocketAddr>,
    /// Clients in the room, senders included.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub clients: usize,
    /// How many of the clients send.
    #[arg(long, short = 'm', default_value_t = 1)]
    pub senders: usize,
    /// Bytes of text per message (at least 29: the stamp).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// How long to measure, after the warmup: seconds, or 10s, 500ms.
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,
    /// How long to run before measuring (not counted in the report).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Messages each sender may have in flight: sent, and not yet received
    /// by every other client.
    #[arg(long, short = 'w', default_value_t = 32)]
    pub window: u64,
    /// Most messages a sender writes at once (default: the window). Below
    /// the window, several batches are in flight, so the server relays one
    /// while the receivers read another.
    #[arg(long, short = 'b')]
    pub batch: Option<u64>,
    /// Generator threads, each with its own event loop; clients are dealt
    /// to them in turn.
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// The listener's dialect, with --protocol netlab: line, header,
    /// bincode or websocket (clients upgrade at /ws and speak its JSON).
    #[arg(long, default_value = "line", value_parser = PossibleValuesParser::new(Dialect::NAMES))]
    pub dialect: String,
    /// Width of the length header, for --dialect header.
    #[arg(long, default_value_t = defaults::HEADER_LEN)]
    pub header_len: usize,
    /// How clients join and what the server's lines look like.
    #[arg(long, value_enum, default_value_t = ChatProtocol::Netlab)]
    pub protocol: ChatProtocol,
    /// How long connecting and joining may take, per client.
    #[arg(long, default_value = TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object on one line instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl BenchChatArgs {
    /// Where client `index` joins: senders on the first address, the
    /// others dealt to every address in turn.
    pub fn addr_of(&self, index: usize) -> SocketAddr {
        let n = self.addrs.len().max(1);
        let slot = if index < self.senders {
            0
        } else {
            (index - self.senders) % n
        };
        self.addrs[slot.min(self.addrs.len().saturating_sub(1))]
    }

    /// The addresses as one word: `a,b`.
    pub fn addrs_text(&self) -> String {
        self.addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn dialect(&self) -> Dialect {
        Dialect::named(&self.dialect, self.header_len).unwrap_or(defaults::DIALECT)
    }
}

impl BenchChatArgs {
    /// Most messages a sender writes at once: --batch, within the window.
    pub fn batch(&self) -> u64 {
        self.batch.unwrap_or(self.window).min(self.window)
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchEchoArgs {
    /// Server address: HOST:PORT.
    #[arg(value_parser = parse_addr)]
    pub addr: SocketAddr,
    /// Concurrent connections (with --udp: sockets).
    #[arg(long, short = 'c', default_value_t = 10)]
    pub connections: usize,
    /// Bytes per request (and per reply).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// How long to measure, after the warmup: seconds, or 10s, 500ms.
    #[arg(long, short = 'd', default_value = "10", value_parser = parse_secs)]
    pub duration: Duration,
    /// How long to run before measuring (not counted in the report).
    #[arg(long, default_value = "1", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Generator threads, each with its own event loop; connections are
    /// spread over them.
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// Use UDP: each connection is its own socket.
    #[arg(long)]
    pub udp: bool,
    /// With --udp, how long to wait for a reply before resending (the
    /// datagram is counted as lost).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub loss_timeout: Duration,
    /// How long to wait for each connection to be set up.
    #[arg(long, default_value = TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    /// Print one JSON object on one line instead of the table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// With --tls: every request on a new connection, with a full
    /// handshake (no resumption); reports handshakes/s.
    #[arg(long, requires = "tls")]
    pub handshakes: bool,
}

/// Runs a parsed command line and says how the process should exit.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Echo(args) => echo::run(&args),
        Command::Count(args) => count::run(&args),
        Command::Chat(args) => chat::run(&args),
        Command::Bench {
            target: BenchTarget::Echo(args),
        } => bench::run(&args),
        Command::Bench {
            target: BenchTarget::Chat(args),
        } => bench::run_chat(&args),
        Command::Stats(args) => stats::run(&args),
        Command::Completions { shell } => print_completions(shell),
    };
    ExitCode::from(code)
}

fn print_completions(shell: clap_complete::Shell) -> u8 {
    use std::io::Write;
    let script = crate::manual::completion(crate::manual::Program::Netlab, shell);
    match std::io::stdout().lock().write_all(&script) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("netlab: cannot write the completion script: {e}");
            exit::IO
        }
    }
}

/// Reports a client error on stderr and picks the exit code for its kind.
fn fail(err: &ClientError) -> u8 {
    eprintln!("netlab: {err}");
    exit_code_for(err.kind())
}

fn exit_code_for(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Timeout => exit::TIMEOUT,
        ErrorKind::Invalid => exit::USAGE,
        ErrorKind::Io | ErrorKind::Closed | ErrorKind::Protocol | ErrorKind::Tls => exit::IO,
        ErrorKind::Interrupted => exit::INTERRUPTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_arguments_parse() {
        let cli = Cli::try_parse_from([
            "netlab",
            "bench",
            "echo",
            "127.0.0.1:7",
            "--connections",
            "100",
            "--size",
            "64",
            "--duration",
            "10",
            "--threads",
            "2",
            "--udp",
        ])
        .unwrap();
        let Command::Bench {
            target: BenchTarget::Echo(args),
        } = cli.command
        else {
            panic!("not a bench");
        };
        assert_eq!(args.connections, 100);
        assert_eq!(args.size, 64);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.threads, 2);
        assert!(args.udp);
        assert_eq!(args.warmup, Duration::from_secs(1));
    }

    #[test]
    fn bench_chat_deals_readers_over_its_addresses_and_senders_to_the_first() {
        let cli = Cli::try_parse_from([
            "netlab",
            "bench",
            "chat",
            "127.0.0.1:1",
            "127.0.0.1:2",
            "127.0.0.1:3",
            "--clients",
            "8",
            "--senders",
            "2",
        ])
        .unwrap();
        let Command::Bench {
            target: BenchTarget::Chat(args),
        } = cli.command
        else {
            panic!("not a bench chat");
        };
        let ports: Vec<u16> = (0..8).map(|i| args.addr_of(i).port()).collect();
        assert_eq!(ports, [1, 1, 1, 2, 3, 1, 2, 3]);
        assert_eq!(args.addrs_text(), "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3");
        assert!(Cli::try_parse_from(["netlab", "bench", "chat"]).is_err());
    }

    #[test]
    fn help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("3  timeout"), "{help}");
    }

    #[test]
    fn error_kinds_map_to_exit_codes() {
        assert_eq!(exit_code_for(ErrorKind::Timeout), 3);
        assert_eq!(exit_code_for(ErrorKind::Io), 4);
        assert_eq!(exit_code_for(ErrorKind::Closed), 4);
        assert_eq!(exit_code_for(ErrorKind::Protocol), 4);
        assert_eq!(exit_code_for(ErrorKind::Invalid), 2);
    }
}
