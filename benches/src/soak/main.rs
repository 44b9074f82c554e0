//! netlab-soak: the load generator and sampler of `benches/soak.sh`.
//!
//! Holds thousands of connections against one running netlabd for as long
//! as asked: TCP echo connections to an event, a thread and a fork server,
//! UDP echo flows, and a chat room's members in three dialects, all
//! checking every byte and message that comes back, while connections
//! churn. Meanwhile it reloads netlabd (SIGHUP, alternating configuration
//! variants) and samples netlabd's memory, descriptors, threads and child
//! processes into a CSV. At the end every connection is closed cleanly and
//! checked whole, and netlabd must come back to the footprint it had before
//! the load. Exit 0 when nothing failed, 1 when something did (each
//! failure is told on stderr and summed up in the summary), 2 on bad
//! arguments.
//!
//! It talks to netlabd only through its sockets, its configuration file
//! and signals, and reads /proc: nothing of netlabd's insides.

mod chat;
mod echo;
mod pattern;
mod procfs;
mod reload;
mod tally;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::Parser;

use procfs::Footprint;
use reload::Reloader;
use tally::Tally;

#[derive(Parser, Debug)]
#[command(
    name = "netlab-soak",
    about = "Holds and checks a soak's load against a running netlabd"
)]
struct Args {
    /// netlabd's process id.
    #[arg(long)]
    pid: u32,
    /// netlabd's log file (its stderr), where reloads are confirmed.
    #[arg(long)]
    log: PathBuf,
    /// The configuration file netlabd reads on SIGHUP.
    #[arg(long)]
    config: PathBuf,
    /// Configuration variants, in the order reloads go through them; the
    /// first is the one netlabd started with.
    #[arg(long = "variant", required = true)]
    variants: Vec<PathBuf>,
    #[arg(long, default_value_t = 30.0)]
    reload_every: f64,
    #[arg(long, default_value_t = 10.0)]
    sample_every: f64,
    /// How long to hold the load, in seconds.
    #[arg(long)]
    duration: f64,
    /// How long an echo, a welcome or a close may take before it is a failure.
    #[arg(long, default_value_t = 30.0)]
    stall: f64,
    #[arg(long)]
    csv: PathBuf,
    /// Where the summary (markdown) goes.
    #[arg(long)]
    summary: PathBuf,

    /// The event-model echo server's addresses; connections alternate.
    #[arg(long = "echo", required = true)]
    echo: Vec<SocketAddr>,
    #[arg(long, default_value_t = 7800)]
    echo_conns: usize,
    #[arg(long, default_value_t = 40.0)]
    echo_churn: f64,
    #[arg(long, default_value_t = 10.0)]
    echo_interval: f64,
    #[arg(long)]
    thread_echo: SocketAddr,
    #[arg(long, default_value_t = 100)]
    thread_conns: usize,
    #[arg(long, default_value_t = 2.0)]
    thread_churn: f64,
    #[arg(long)]
    fork_echo: SocketAddr,
    #[arg(long, default_value_t = 100)]
    fork_conns: usize,
    #[arg(long, default_value_t = 2.0)]
    fork_churn: f64,
    /// Mean seconds between messages on a thread or fork connection.
    #[arg(long, default_value_t = 2.0)]
    blocking_interval: f64,

    #[arg(long)]
    udp: SocketAddr,
    #[arg(long, default_value_t = 64)]
    udp_flows: usize,
    #[arg(long, default_value_t = 1.0)]
    udp_churn: f64,
    #[arg(long, default_value_t = 0.25)]
    udp_interval: f64,

    #[arg(long)]
    chat_line: SocketAddr,
    #[arg(long)]
    chat_header: SocketAddr,
    #[arg(long)]
    chat_bincode: SocketAddr,
    #[arg(long, default_value_t = 10)]
    header_len: usize,
    #[arg(long, default_value_t = 2000)]
    chat_members: usize,
    /// Members leaving (and as many joining) per second. Each join and
    /// leave is news to every member, as is each message: at 2,000 members
    /// every broadcast is 2,000 writes on netlabd's one room thread, and
    /// these defaults (16 broadcasts a second, 32,000 writes) leave it
    /// room to keep up on a core shared with other work.
    #[arg(long, default_value_t = 3.0)]
    chat_churn: f64,
    /// Messages per second in the whole room.
    #[arg(long, default_value_t = 10.0)]
    chat_rate: f64,
    #[arg(long, default_value_t = 10)]
    talker_one_in: u64,
    /// Mean seconds between two roster requests of one member (a roster
    /// of 2,000 names is 25 KB).
    #[arg(long, default_value_t = 240.0)]
    who_every: f64,

    /// An echo server that every variant changes (restarted by each reload).
    #[arg(long)]
    flip: Option<SocketAddr>,
    /// A count server present only in the variants `--probe-in` lists.
    #[arg(long)]
    probe: Option<SocketAddr>,
    #[arg(long, value_delimiter = ',')]
    probe_in: Vec<usize>,
}

/// What the load threads and the sampler share.
pub struct Shared {
    pub epoch: Instant,
    /// netlabd's process id.
    pub netlabd: u32,
    pub tally: Tally,
    pub stall: Duration,
    stop: AtomicBool,
}

impl Shared {
    pub fn fail(&self, kind: &'static str, detail: String) {
        self.tally.fail(self.epoch, kind, detail);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `mean` scaled by a random factor in [0.5, 1.5): timers spread out
/// instead of firing together.
pub fn jitter(rng: &mut fastrand::Rng, mean: Duration) -> Duration {
    mean.mul_f64(0.5 + rng.f64())
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// netlabd's footprint first, then what the generator did, then how the
/// generator itself fares (its CPU, what waits unread in its sockets, its
/// longest loop turn since the last sample): when a check fails, these say
/// whether netlabd or the generator was behind.
const CSV_HEADER: &str = "t_s,phase,rss_kib,rss_anon_kib,rss_file_kib,rss_shmem_kib,fds,threads,children,cpu_s,udp_drops,unread_kib,conns,echo_event,echo_thread,echo_fork,chat_members,udp_flows,echo_bytes_checked,chat_sent,chat_deliveries,udp_checked,udp_lost,reloads,failures,gen_cpu_s,gen_unread_kib,gen_turn_ms";

struct Csv {
    out: BufWriter<File>,
    pid: u32,
}

impl Csv {
    fn row(&mut self, shared: &Shared, phase: &str) -> std::io::Result<Footprint> {
        let f = procfs::footprint(&self.pid.to_string())?;
        let me = procfs::footprint("self")?;
        let t = &shared.tally;
        writeln!(
            self.out,
            "{:.1},{phase},{},{},{},{},{},{},{},{:.2},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{},{}",
            shared.epoch.elapsed().as_secs_f64(),
            f.rss_kib,
            f.rss_anon_kib,
            f.rss_file_kib,
            f.rss_shmem_kib,
            f.fds,
            f.threads,
            f.children,
            f.cpu_s,
            f.udp_drops,
            f.unread_kib,
            t.echo_open_total() + t.chat_open.get(),
            t.echo_open[0].get(),
            t.echo_open[1].get(),
            t.echo_open[2].get(),
            t.chat_members.get(),
            t.udp_flows.get(),
            t.echo_checked.get(),
            t.chat_sent.get(),
            t.chat_deliveries.get(),
            t.udp_checked.get(),
            t.udp_lost.get(),
            t.reloads.get(),
            t.failures(),
            me.cpu_s,
            me.unread_kib,
            t.turn_max_ms.take(),
        )?;
        self.out.flush()?;
        Ok(f)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match soak(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(1)
        }
    }
}

/// Runs the soak; whether nothing failed.
fn soak(args: &Args) -> Result<bool, String> {
    let shared = Shared {
        epoch: Instant::now(),
        netlabd: args.pid,
        tally: Tally::default(),
        stall: secs(args.stall),
        stop: AtomicBool::new(false),
    };
    let file =
        File::create(&args.csv).map_err(|e| format!("create {}: {e}", args.csv.display()))?;
    let mut csv = Csv {
        out: BufWriter::new(file),
        pid: args.pid,
    };
    writeln!(csv.out, "{CSV_HEADER}").map_err(|e| e.to_string())?;
    let idle = csv
        .row(&shared, "idle")
        .map_err(|e| sample_error(args.pid, e))?;
    let mut reloader = Reloader {
        pid: args.pid,
        log: args.log.clone(),
        config: args.config.clone(),
        variants: args.variants.clone(),
        flip: args.flip,
        probe: args.probe,
        probe_in: args.probe_in.clone(),
        current: 0,
        done: 0,
    };

    let pools = vec![
        echo::Pool {
            index: 0,
            addrs: args.echo.clone(),
            conns: args.echo_conns,
            churn_per_s: args.echo_churn,
            interval: secs(args.echo_interval),
        },
        echo::Pool {
            index: 1,
            addrs: vec![args.thread_echo],
            conns: args.thread_conns,
            churn_per_s: args.thread_churn,
            interval: secs(args.blocking_interval),
        },
        echo::Pool {
            index: 2,
            addrs: vec![args.fork_echo],
            conns: args.fork_conns,
            churn_per_s: args.fork_churn,
            interval: secs(args.blocking_interval),
        },
    ];
    let udp = echo::Udp {
        addr: args.udp,
        flows: args.udp_flows,
        churn_per_s: args.udp_churn,
        interval: secs(args.udp_interval),
    };
    let room = chat::Room {
        addrs: [args.chat_line, args.chat_header, args.chat_bincode],
        header_len: args.header_len,
        members: args.chat_members,
        churn_per_s: args.chat_churn,
        rate: args.chat_rate,
        talker_one_in: args.talker_one_in.max(1),
        who_every: secs(args.who_every),
    };

    let end = shared.epoch + secs(args.duration);
    let mut steady_at = None;
    let mut steady_first: Option<Footprint> = None;
    let mut last: Option<Footprint> = None;
    let mut peak_conns = 0;
    std::thread::scope(|scope| -> Result<(), String> {
        let shared = &shared;
        // However this closure ends (netlabd gone, say), the load threads
        // are told to stop: the scope waits for them.
        let _stop = StopOnDrop(&shared.stop);
        let echo = std::thread::Builder::new()
            .name("soak-echo".into())
            .spawn_scoped(scope, move || echo::run(shared, pools, Some(udp)))
            .map_err(|e| format!("start the echo thread: {e}"))?;
        let chat = std::thread::Builder::new()
            .name("soak-chat".into())
            .spawn_scoped(scope, move || chat::run(shared, room))
            .map_err(|e| format!("start the chat thread: {e}"))?;

        let sample_every = secs(args.sample_every);
        let reload_every = secs(args.reload_every);
        let mut next_sample = shared.epoch + sample_every;
        // Reloads fall between samples, not on them.
        let mut next_reload = shared.epoch + reload_every + sample_every / 2;
        loop {
            let now = Instant::now();
            if now >= end || echo.is_finished() || chat.is_finished() {
                break;
            }
            if now >= next_reload {
                next_reload += reload_every;
                let next = (reloader.current + 1) % reloader.variants.len();
                match reloader.reload_to(next) {
                    Ok(()) => shared.tally.reloads.add(1),
                    Err(e) => shared.fail("reload", e),
                }
            }
            if now >= next_sample {
                next_sample += sample_every;
                let t = &shared.tally;
                if steady_at.is_none() && at_size(args, t) {
                    steady_at = Some(now);
                    eprintln!(
                        "soak: every pool at its size after {:.1} s",
                        shared.epoch.elapsed().as_secs_f64()
                    );
                }
                let phase = if steady_at.is_some() {
                    "steady"
                } else {
                    "ramp"
                };
                let f = csv
                    .row(shared, phase)
                    .map_err(|e| sample_error(args.pid, e))?;
                if steady_at.is_some() && steady_first.is_none() {
                    steady_first = Some(f);
                }
                let conns = t.echo_open_total() + t.chat_open.get();
                peak_conns = peak_conns.max(conns);
                eprintln!(
                    "soak: {:>6.0} s  conns {conns} (echo {}/{}/{}, chat {}, udp {})  rss {} MiB  fds {}  threads {}  children {}  unread {} KiB  reloads {}  failures {}",
                    shared.epoch.elapsed().as_secs_f64(),
                    t.echo_open[0].get(),
                    t.echo_open[1].get(),
                    t.echo_open[2].get(),
                    t.chat_members.get(),
                    t.udp_flows.get(),
                    f.rss_kib / 1024,
                    f.fds,
                    f.threads,
                    f.children,
                    f.unread_kib,
                    t.reloads.get(),
                    t.failures()
                );
                last = Some(f);
            }
            let wake = next_sample.min(next_reload).min(end);
            sleep(
                wake.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(500)),
            );
        }
        if steady_at.is_none() {
            shared.fail("ramp", "the pools never all reached their size".into());
        }
        eprintln!("soak: the end: closing every connection, checking each one whole");
        shared.stop.store(true, Ordering::Relaxed);
        for (name, thread) in [("echo", echo), ("chat", chat)] {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => shared.fail("load thread", format!("the {name} thread stopped: {e}")),
                Err(_) => shared.fail("load thread", format!("the {name} thread panicked")),
            }
        }
        Ok(())
    })?;

    // Back on the configuration it started with, netlabd must hold what it
    // held before any load: every connection's descriptor, thread and child
    // process released.
    if reloader.current != 0 {
        if let Err(e) = reloader.reload_to(0) {
            shared.fail("reload", e);
        } else {
            shared.tally.reloads.add(1);
        }
    }
    let deadline = Instant::now() + secs(args.stall);
    let drained = loop {
        let f = procfs::footprint(&args.pid.to_string()).map_err(|e| sample_error(args.pid, e))?;
        let back = f.fds <= idle.fds && f.threads <= idle.threads && f.children == 0;
        if back || Instant::now() >= deadline {
            if !back {
                shared.fail(
                    "not back to idle",
                    format!(
                        "{:?} after every connection closed: fds {} (idle before the load: {}), threads {} ({}), children {} (0)",
                        args.stall, f.fds, idle.fds, f.threads, idle.threads, f.children
                    ),
                );
            }
            break f;
        }
        sleep(Duration::from_millis(200));
    };
    // UDP may drop a datagram by design; on loopback at this rate only a
    // server that stops reading for seconds does. One in a thousand is the
    // bound.
    let (sent, lost) = (shared.tally.udp_sent.get(), shared.tally.udp_lost.get());
    if lost * 1000 > sent {
        shared.fail(
            "udp: datagrams lost",
            format!("{lost} of {sent}, more than 1 in 1000"),
        );
    }
    csv.row(&shared, "drained")
        .map_err(|e| sample_error(args.pid, e))?;

    let summary = summary(args, &shared, idle, steady_first, last, drained, peak_conns);
    print!("{summary}");
    std::fs::write(&args.summary, &summary)
        .map_err(|e| format!("write {}: {e}", args.summary.display()))?;
    Ok(shared.tally.failures() == 0)
}

/// Why netlabd could not be sampled, in words: most likely it is gone.
fn sample_error(pid: u32, e: std::io::Error) -> String {
    if std::path::Path::new(&format!("/proc/{pid}")).exists() {
        format!("cannot sample netlabd (pid {pid}) from /proc: {e}")
    } else {
        format!("netlabd (pid {pid}) has exited: the soak cannot go on")
    }
}

/// Whether every pool has (nearly) reached its size: churn keeps a few
/// connections of each in flight at any moment.
fn at_size(args: &Args, t: &Tally) -> bool {
    let near = |have: u64, want: usize| have as f64 >= want as f64 * 0.98;
    near(t.echo_open[0].get(), args.echo_conns)
        && near(t.echo_open[1].get(), args.thread_conns)
        && near(t.echo_open[2].get(), args.fork_conns)
        && near(t.chat_members.get(), args.chat_members)
        && near(t.udp_flows.get(), args.udp_flows)
}

fn summary(
    args: &Args,
    shared: &Shared,
    idle: Footprint,
    steady: Option<Footprint>,
    last: Option<Footprint>,
    drained: Footprint,
    peak_conns: u64,
) -> String {
    let t = &shared.tally;
    let mut s = String::new();
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let row = |label: &str, f: Option<Footprint>| match f {
        Some(f) => format!(
            "| {label} | {} | {} | {} | {} |\n",
            mib(f.rss_kib),
            f.fds,
            f.threads,
            f.children
        ),
        None => format!("| {label} | - | - | - | - |\n"),
    };
    s += "| netlabd | RSS | fds | threads | children |\n| --- | ---: | ---: | ---: | ---: |\n";
    s += &row("idle, before the load", Some(idle));
    s += &row("start of steady state", steady);
    s += &row("last sample under load", last);
    s += &row("after every connection closed", Some(drained));
    s += "\n";
    let target = args.echo_conns + args.thread_conns + args.fork_conns + args.chat_members;
    s += &format!(
        "- Connections: {target} held (echo {} event + {} thread + {} fork, chat {}), at most {peak_conns} open at a sample; plus {} UDP flows.\n",
        args.echo_conns, args.thread_conns, args.fork_conns, args.chat_members, args.udp_flows
    );
    s += &format!(
        "- Echo: {} bytes sent, {} of them checked back byte for byte, {} in flight on connections reset on purpose; {} connections closed by churn, {} of them cleanly with every byte back before the server's FIN (the rest reset).\n",
        t.echo_sent.get(),
        t.echo_checked.get(),
        t.echo_abandoned.get(),
        t.echo_closed.get(),
        t.echo_closed_whole.get()
    );
    s += &format!(
        "- Chat: {} messages sent, {} deliveries checked (text, sender order, no gap), {} join/leave notices, {} rosters; {} joins, {} leaves.\n",
        t.chat_sent.get(),
        t.chat_deliveries.get(),
        t.chat_notices.get(),
        t.chat_rosters.get(),
        t.chat_joins.get(),
        t.chat_leaves.get()
    );
    s += &format!(
        "- UDP: {} datagrams sent, {} checked back, {} lost; the kernel dropped {} at netlabd's UDP sockets (receive buffer full: the worker did not run in time).\n",
        t.udp_sent.get(),
        t.udp_checked.get(),
        t.udp_lost.get(),
        drained.udp_drops
    );
    s += &format!(
        "- Reloads: {} (SIGHUP every {} s, each confirmed in netlabd's log and checked: the restarted echo server answers, the added count server answers, the removed one refuses).\n",
        t.reloads.get(),
        args.reload_every
    );
    let me = procfs::footprint("self").ok();
    s += &format!(
        "- The generator: {:.0} s of CPU in all; its longest loop turn {} ms (a turn is a few ms when it keeps up; seconds mean it was starved, and what it then saw late may be its own lateness).\n",
        me.map_or(0.0, |m| m.cpu_s),
        t.turn_max_ever_ms.get()
    );
    let kinds = t.failure_kinds();
    if kinds.is_empty() {
        s += "- Generator failures: none.\n";
    } else {
        s += &format!("- Generator failures: {}:\n", t.failures());
        for (kind, n, first) in kinds {
            s += &format!("  - {kind}: {n}, the first {first}\n");
        }
    }
    s
}
