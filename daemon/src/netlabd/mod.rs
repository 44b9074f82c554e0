//! netlabd: reads a configuration, binds every listener (refusing to start
//! if any cannot be bound), serves, reloads on SIGHUP, and stops gracefully
//! on SIGINT/SIGTERM, telling the service manager each step.

mod activation;
mod args;
mod logging;
mod metrics_http;
mod notify;
mod pidfile;
mod signals;
mod supervisor;

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use daemonize::Outcome;
use netlab::config::{Config, ConfigErrors, DaemonConfig, LogTarget};
use netlab::metrics::Registry;
use nix::fcntl::OFlag;
use nix::unistd::{Gid, Group, User, setgid, setgroups, setuid};

use notify::Notifier;
use pidfile::Pidfile;
use signals::{Request, Signals};
use supervisor::Supervisor;

pub use args::Args;

/// Where the configuration is looked for when `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/netlab/netlabd.toml";

/// The configuration run when there is no file: every service on loopback,
/// on unprivileged ports.
pub const DEFAULT_CONFIG: &str = include_str!("../../systemd/netlabd.toml");

/// Exit codes: a configuration that cannot be run (2, as for usage errors),
/// anything else that stops the daemon from running (1).
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_RUNTIME: u8 = 1;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config: Option<PathBuf>,
    /// Validate the configuration and exit. Ports are not bound: a check is
    /// what an operator runs before reloading a daemon that holds them.
    pub check: bool,
    /// Detach from the terminal and run in the background.
    pub daemonize: bool,
    pub pidfile: Option<PathBuf>,
}

impl Options {
    /// With `--daemonize`, the paths made absolute: the daemon changes to
    /// its working directory, and a relative path would then name another
    /// file (the pidfile written to "/", reloads reading "/netlabd.toml").
    fn resolved(&self) -> Options {
        let mut options = self.clone();
        if options.daemonize {
            for path in [&mut options.config, &mut options.pidfile]
                .into_iter()
                .flatten()
            {
                // Fails only on an empty path or without a current
                // directory; the path is then left as given.
                if let Ok(absolute) = std::path::absolute(&*path) {
                    *path = absolute;
                }
            }
        }
        options
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Embedded,
}

impl Source {
    fn choose(options: &Options) -> Source {
        match &options.config {
            Some(path) => Source::File(path.clone()),
            None if Path::new(SYSTEM_CONFIG).exists() => Source::File(SYSTEM_CONFIG.into()),
            None => Source::Embedded,
        }
    }

    fn load(&self) -> Result<Config, ConfigErrors> {
        match self {
            Source::File(path) => Config::load(path),
            Source::Embedded => Config::parse(DEFAULT_CONFIG, "<embedded default>"),
        }
    }
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(options: &Options) -> ExitCode {
    // Socket activation first: it changes the environment, which is only
    // sound while this is the only thread.
    let passed = match activation::take_from_env() {
        Ok(p) => p,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    logging::init();
    let options = &options.resolved();
    let source = Source::choose(options);
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) => return fail(EXIT_CONFIG, &errors.to_string()),
    };
    // Whom to become, looked up before forking so that a wrong name is
    // said on this terminal, and before --check answers.
    let ids = match Ids::lookup(&config.daemon) {
        Ok(ids) => ids,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    if options.check {
        println!("configuration OK: {} server(s)", config.servers.len());
        return ExitCode::SUCCESS;
    }
    let log_target = effective_log(&config.daemon, options.daemonize);
    match &source {
        Source::File(path) => log::info!("configuration {}", path.display()),
        Source::Embedded => log::info!(
            "no --config and no {SYSTEM_CONFIG}: running the embedded default configuration (netlabd --print-default-config shows it)"
        ),
    }
    if let Some(path) = &options.pidfile
        && let Err(e) = Pidfile::check_free(path)
    {
        return fail(EXIT_RUNTIME, &e.to_string());
    }

    // Bind everything before serving anything: a taken port refuses the
    // whole configuration, as a bad key does.
    let assignment = match activation::assign(passed, &config) {
        Ok(a) => a,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let bound = match supervisor::bind_all(&config, assignment) {
        Ok(b) => b,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let metrics_bound = match config
        .daemon
        .metrics
        .map(metrics_http::Bound::bind)
        .transpose()
    {
        Ok(m) => m,
        Err(e) => {
            let at = config
                .daemon
                .metrics_at
                .as_ref()
                .map_or_else(String::new, |l| format!("{l}: "));
            let addr = config
                .daemon
                .metrics
                .map_or_else(String::new, |a| a.to_string());
            return fail(
                EXIT_CONFIG,
                &format!("{at}[daemon] metrics: cannot listen on {addr}: {e}"),
            );
        }
    };

    // Detach, write the pidfile, and stop being root, all after binding so
    // that ports below 1024 work; threads start only after the fork.
    let mut startup = if options.daemonize {
        if let Err(e) = check_working_directory(&config.daemon.working_directory) {
            return fail(EXIT_RUNTIME, &e);
        }
        let (read, write) = match report_pipe() {
            Ok(p) => p,
            Err(e) => return fail(EXIT_RUNTIME, &e),
        };
        match daemonize(&config.daemon) {
            Outcome::Parent(Ok(_)) => {
                drop(write);
                return wait_for_daemon(read);
            }
            Outcome::Parent(Err(e)) => {
                return fail(EXIT_RUNTIME, &format!("cannot daemonize: {e}"));
            }
            Outcome::Child(child) => {
                drop(read);
                // stderr is /dev/null from here on: errors go to the log
                // and, through the pipe, to the process that started us.
                logging::set_target(log_target);
                let mut startup = Startup::Daemon(Some(write));
                if let Err(e) = child {
                    return startup.fail(EXIT_RUNTIME, &format!("cannot daemonize: {e}"));
                }
                startup
            }
        }
    } else {
        logging::set_target(log_target);
        Startup::Foreground
    };
    // Still root: the pidfile, given to the user we become; then become it.
    let pidfile = match options
        .pidfile
        .as_deref()
        .map(|p| Pidfile::create(p, ids.owner()))
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return startup.fail(EXIT_RUNTIME, &e.to_string()),
    };
    if let Err(e) = ids.become_them() {
        return startup.fail(EXIT_RUNTIME, &e);
    }

    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            return startup.fail(
                EXIT_RUNTIME,
                &format!("cannot install signal handlers: {e}"),
            );
        }
    };
    let mut notifier = Notifier::from_env();
    let mut daemon_config = config.daemon.clone();
    // Servers count per request only when someone can read it.
    let registry = metrics_bound.as_ref().map(|_| Registry::new());
    if let Some(r) = &registry {
        r.daemon().config_loaded();
    }
    let mut supervisor =
        match Supervisor::start(bound, daemon_config.shutdown_grace, registry.clone()) {
            Ok(s) => s,
            Err(e) => return startup.fail(EXIT_RUNTIME, &e),
        };
    let metrics_server = match (metrics_bound, &registry) {
        (Some(b), Some(r)) => match b.serve(r.clone()) {
            Ok(m) => Some(m),
            Err(e) => {
                supervisor.stop(std::time::Duration::ZERO);
                return startup.fail(EXIT_RUNTIME, &format!("cannot serve /metrics: {e}"));
            }
        },
        _ => None,
    };
    notifier.ready(&supervisor.status());
    startup.ready();

    let stop_signal = loop {
        match signals.wait(notifier.next_tick()) {
            Some(Request::Stop(name)) => break name,
            Some(Request::Reload) => {
                notifier.reloading();
                reload(
                    &source,
                    &mut supervisor,
                    &mut daemon_config,
                    options.daemonize,
                    registry.as_ref(),
                );
                notifier.ready(&supervisor.status());
            }
            None => {}
        }
        notifier.tick();
        let status = supervisor.status();
        notifier.status(&status);
    };

    notifier.stopping();
    log::info!(
        "{stop_signal}: stopping; open connections have {} to finish",
        humantime::format_duration(daemon_config.shutdown_grace)
    );
    supervisor.stop(daemon_config.shutdown_grace);
    if let Some(m) = metrics_server {
        m.stop();
    }
    drop(pidfile);
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGHUP: all or nothing; whatever goes wrong is logged and the daemon
/// keeps serving what it served. The reload is counted in `registry` before its outcome is logged, so
/// whoever reads the log line finds it counted.
fn reload(
    source: &Source,
    supervisor: &mut Supervisor,
    daemon: &mut DaemonConfig,
    daemonized: bool,
    registry: Option<&Registry>,
) {
    let counted = |ok: bool| {
        if let Some(r) = registry {
            r.daemon().reloaded(ok);
            if ok {
                r.daemon().config_loaded();
            }
        }
    };
    log::info!("SIGHUP: reloading the configuration");
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) => {
            counted(false);
            log::error!(
                "reload refused, nothing changed; the configuration has {} error(s):",
                errors.0.len()
            );
            for e in &errors.0 {
                log::error!("{e}");
            }
            return;
        }
    };
    if config.daemon.user != daemon.user || config.daemon.group != daemon.group {
        log::warn!("reload: user and group take effect only when netlabd is restarted");
    }
    if config.daemon.metrics != daemon.metrics {
        log::warn!("reload: [daemon] metrics takes effect only when netlabd is restarted");
    }
    match supervisor.reload(&config) {
        Ok(changes) => {
            let target = effective_log(&config.daemon, daemonized);
            if Some(target) != daemon.log.or(Some(effective_log(daemon, daemonized))) {
                logging::set_target(target);
            }
            supervisor.set_grace(config.daemon.shutdown_grace);
            // The address served stays the one bound at start.
            let metrics = (daemon.metrics, daemon.metrics_at.clone());
            *daemon = config.daemon;
            (daemon.metrics, daemon.metrics_at) = metrics;
            counted(true);
            log::info!("reloaded: {changes}");
        }
        Err(e) => {
            counted(false);
            log::error!("reload refused, nothing changed: {e}");
        }
    }
}

fn effective_log(daemon: &DaemonConfig, daemonized: bool) -> LogTarget {
    daemon.log.unwrap_or(if daemonized {
        LogTarget::Syslog
    } else {
        LogTarget::Stderr
    })
}

/// Forks into the background (daemonize crate): a new session, the
/// working directory and umask, stdio on /dev/null. Users and groups are
/// ours to change (`Ids::become_them`): the crate would neither set the
/// supplementary groups nor the user's group when only `user` is given.
/// The original process gets `Outcome::Parent` and must wait for the
/// daemon's report (`wait_for_daemon`); the daemon gets `Outcome::Child`.
fn daemonize(daemon: &DaemonConfig) -> Outcome<()> {
    daemonize::Daemonize::new()
        .working_directory(&daemon.working_directory)
        .umask(daemon.umask)
        .execute()
}

/// Said before forking: after it, the daemonize crate's error would not
/// name the directory.
fn check_working_directory(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "[daemon] working_directory {}: not a directory",
            dir.display()
        )),
        Err(e) => Err(format!("[daemon] working_directory {}: {e}", dir.display())),
    }
}

/// What the daemon tells the process that started it: this byte alone when
/// it serves; else the exit code, the error text and a NUL.
const READY: u8 = 0;

/// The pipe a daemon reports its start on. Close-on-exec, and read only up
/// to the end of the report: a forked worker that inherited the write end
/// must not keep the original process waiting.
fn report_pipe() -> Result<(File, File), String> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| format!("cannot create a pipe to hear from the daemon: {e}"))?;
    Ok((File::from(read), File::from(write)))
}

/// How a failed start is told. In the foreground: on stderr. In a daemon,
/// whose stderr is /dev/null: in the log (syslog or the journal), and to the
/// original process, which says it on its own stderr and exits with the
/// same code as the foreground would.
enum Startup {
    Foreground,
    /// The pipe's write end, until the report is sent.
    Daemon(Option<File>),
}

impl Startup {
    fn fail(&mut self, code: u8, message: &str) -> ExitCode {
        match self {
            Startup::Foreground => fail(code, message),
            Startup::Daemon(pipe) => {
                for line in message.lines() {
                    log::error!("{line}");
                }
                if let Some(mut pipe) = pipe.take() {
                    let mut report = vec![code];
                    report.extend(message.bytes().filter(|&b| b != 0));
                    report.push(0);
                    // Nobody may be waiting any more (the starter was
                    // killed); the log has it.
                    let _ = pipe.write_all(&report);
                }
                ExitCode::from(code)
            }
        }
    }

    /// Every server runs and the pidfile is written: the starter may go.
    fn ready(&mut self) {
        if let Startup::Daemon(pipe) = self
            && let Some(mut pipe) = pipe.take()
            && let Err(e) = pipe.write_all(&[READY])
        {
            log::warn!("cannot tell the starting process that netlabd is ready: {e}");
        }
    }
}

/// What a daemon's report says: ready, failed with a code and a text, or
/// nothing yet (`None`: read more, unless the pipe is closed).
fn parse_report(report: &[u8]) -> Option<Result<(), (u8, String)>> {
    match report.split_first()? {
        (&READY, _) => Some(Ok(())),
        (&code, rest) => {
            let end = rest.iter().position(|&b| b == 0)?;
            Some(Err((
                code,
                String::from_utf8_lossy(&rest[..end]).into_owned(),
            )))
        }
    }
}

/// In the original process: waits until the daemon serves (exit 0) or says
/// why it cannot (its message, and its exit code).
fn wait_for_daemon(mut pipe: File) -> ExitCode {
    let mut report = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(outcome) = parse_report(&report) {
            return match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err((code, message)) => fail(code, &message),
            };
        }
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => report.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return fail(
                    EXIT_RUNTIME,
                    &format!("cannot hear from the daemon whether it started: {e}"),
                );
            }
        }
    }
    match report.split_first() {
        // Cut short: the code and as much of the text as came.
        Some((&code, text)) => fail(code, &String::from_utf8_lossy(text)),
        None => fail(
            EXIT_RUNTIME,
            "the daemon exited before it was ready and said nothing; see its log (syslog unless [daemon] log says otherwise)",
        ),
    }
}

/// The configured user and group, looked up.
struct Ids {
    user: Option<User>,
    group: Option<Group>,
}

impl Ids {
    fn lookup(daemon: &DaemonConfig) -> Result<Ids, String> {
        let at = |loc: &Option<netlab::config::Location>| {
            loc.as_ref().map_or_else(String::new, |l| format!("{l}: "))
        };
        let group = match &daemon.group {
            Some(name) => {
                let at = at(&daemon.group_at);
                Some(
                    Group::from_name(name)
                        .map_err(|e| format!("{at}[daemon] group {name:?}: {e}"))?
                        .ok_or_else(|| {
                            format!("{at}[daemon] group {name:?} does not exist on this system")
                        })?,
                )
            }
            None => None,
        };
        let user = match &daemon.user {
            Some(name) => {
                let at = at(&daemon.user_at);
                Some(
                    User::from_name(name)
                        .map_err(|e| format!("{at}[daemon] user {name:?}: {e}"))?
                        .ok_or_else(|| {
                            format!("{at}[daemon] user {name:?} does not exist on this system")
                        })?,
                )
            }
            None => None,
        };
        Ok(Ids { user, group })
    }

    /// The group to run as: the configured one, else the user's own.
    fn gid(&self) -> Option<Gid> {
        self.group
            .as_ref()
            .map(|g| g.gid)
            .or(self.user.as_ref().map(|u| u.gid))
    }

    /// The uid and gid the daemon will run as, when it changes them: the
    /// pidfile's owner.
    fn owner(&self) -> Option<(u32, u32)> {
        match (&self.user, self.gid()) {
            (None, None) => None,
            // u32::MAX (-1) leaves that id as it is.
            (user, gid) => Some((
                user.as_ref().map_or(u32::MAX, |u| u.uid.as_raw()),
                gid.map_or(u32::MAX, |g| g.as_raw()),
            )),
        }
    }

    /// Becomes `user`/`group` once the ports are bound: supplementary
    /// groups, then the group, then the user (after which the others can no
    /// longer be changed).
    fn become_them(&self) -> Result<(), String> {
        if let Some(gid) = self.gid() {
            setgroups(&[gid]).map_err(|e| format!("setgroups [{gid}]: {e}"))?;
            setgid(gid).map_err(|e| format!("setgid {gid}: {e}"))?;
        }
        if let Some(user) = &self.user {
            setuid(user.uid).map_err(|e| format!("setuid {} ({}): {e}", user.uid, user.name))?;
            log::info!("running as user {} (uid {})", user.name, user.uid);
        }
        Ok(())
    }
}

fn fail(code: u8, message: &str) -> ExitCode {
    let mut err = std::io::stderr().lock();
    for line in message.lines() {
        let _ = writeln!(err, "netlabd: {line}");
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_ready_or_a_code_and_a_text_up_to_its_nul() {
        assert_eq!(parse_report(&[]), None);
        assert_eq!(parse_report(&[READY]), Some(Ok(())));
        assert_eq!(parse_report(b"\x01pidfile x: gone"), None, "not ended yet");
        assert_eq!(
            parse_report(b"\x02cannot listen\nline 2\0"),
            Some(Err((2, "cannot listen\nline 2".to_owned())))
        );
        assert_eq!(
            parse_report(b"\x01\xffx\0trailing"),
            Some(Err((1, "\u{fffd}x".to_owned())))
        );
    }
}
