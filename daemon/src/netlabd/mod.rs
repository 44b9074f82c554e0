//! netlabd: reads a configuration, binds every listener (refusing to start
//! if any cannot be bound), serves, reloads on SIGHUP, and stops gracefully
//! on SIGINT/SIGTERM, telling the service manager each step.

mod activation;
mod logging;
mod notify;
mod pidfile;
mod signals;
mod supervisor;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use netlab::config::{Config, ConfigErrors, DaemonConfig, LogTarget};
use nix::unistd::{Group, User, setgid, setgroups, setuid};

use notify::Notifier;
use pidfile::Pidfile;
use signals::{Request, Signals};
use supervisor::Supervisor;

/// Where the configuration is looked for when `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/netlab/netlabd.toml";

/// The configuration run when there is no file: every service on loopback,
/// on unprivileged ports.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

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
    let source = Source::choose(options);
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) => return fail(EXIT_CONFIG, &errors.to_string()),
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

    // Detach, write the pidfile, and stop being root, all after binding so
    // that ports below 1024 work; threads start only after the fork.
    let pidfile = if options.daemonize {
        match daemonize(&config.daemon, options.pidfile.clone()) {
            Ok(p) => p,
            Err(e) => return fail(EXIT_RUNTIME, &e),
        }
    } else {
        let owner = match owner(&config.daemon) {
            Ok(o) => o,
            Err(e) => return fail(EXIT_RUNTIME, &e),
        };
        let pidfile = match options
            .pidfile
            .as_deref()
            .map(|p| Pidfile::create(p, owner))
            .transpose()
        {
            Ok(p) => p,
            Err(e) => return fail(EXIT_RUNTIME, &e.to_string()),
        };
        if let Err(e) = drop_privileges(&config.daemon) {
            return fail(EXIT_RUNTIME, &e);
        }
        pidfile
    };
    logging::set_target(log_target);

    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            return fail(
                EXIT_RUNTIME,
                &format!("cannot install signal handlers: {e}"),
            );
        }
    };
    let mut notifier = Notifier::from_env();
    let mut daemon_config = config.daemon.clone();
    let mut supervisor = match Supervisor::start(bound, daemon_config.shutdown_grace) {
        Ok(s) => s,
        Err(e) => return fail(EXIT_RUNTIME, &e),
    };
    notifier.ready(&supervisor.status());

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
    drop(pidfile);
    log::info!("stopped");
    ExitCode::SUCCESS
}

/// SIGHUP: all or nothing; whatever goes wrong is logged and the daemon
/// keeps serving what it served.
fn reload(
    source: &Source,
    supervisor: &mut Supervisor,
    daemon: &mut DaemonConfig,
    daemonized: bool,
) {
    log::info!("SIGHUP: reloading the configuration");
    let config = match source.load() {
        Ok(c) => c,
        Err(errors) => {
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
    match supervisor.reload(&config) {
        Ok(changes) => {
            let target = effective_log(&config.daemon, daemonized);
            if Some(target) != daemon.log.or(Some(effective_log(daemon, daemonized))) {
                logging::set_target(target);
            }
            supervisor.set_grace(config.daemon.shutdown_grace);
            *daemon = config.daemon;
            log::info!("reloaded: {changes}");
        }
        Err(e) => log::error!("reload refused, nothing changed: {e}"),
    }
}

fn effective_log(daemon: &DaemonConfig, daemonized: bool) -> LogTarget {
    daemon.log.unwrap_or(if daemonized {
        LogTarget::Syslog
    } else {
        LogTarget::Stderr
    })
}

/// Forks into the background (daemonize crate), then writes the pidfile
/// while still privileged, then drops to the configured user and group.
fn daemonize(daemon: &DaemonConfig, pidfile: Option<PathBuf>) -> Result<Option<Pidfile>, String> {
    let mut d = daemonize::Daemonize::new()
        .working_directory(&daemon.working_directory)
        .umask(daemon.umask);
    if let Some(user) = &daemon.user {
        d = d.user(user.as_str());
    }
    if let Some(group) = &daemon.group {
        d = d.group(group.as_str());
    }
    let owner = owner(daemon)?;
    let d = d.privileged_action(move || {
        pidfile
            .as_deref()
            .map(|p| Pidfile::create(p, owner))
            .transpose()
    });
    match d.start() {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("cannot daemonize: {e}")),
    }
}

/// The configured user and group, looked up.
fn lookup(daemon: &DaemonConfig) -> Result<(Option<User>, Option<Group>), String> {
    let group = match &daemon.group {
        Some(name) => Some(
            Group::from_name(name)
                .map_err(|e| format!("group {name:?}: {e}"))?
                .ok_or_else(|| format!("group {name:?} does not exist"))?,
        ),
        None => None,
    };
    let user = match &daemon.user {
        Some(name) => Some(
            User::from_name(name)
                .map_err(|e| format!("user {name:?}: {e}"))?
                .ok_or_else(|| format!("user {name:?} does not exist"))?,
        ),
        None => None,
    };
    Ok((user, group))
}

/// The uid and gid the daemon will run as, when it changes them: the
/// pidfile's owner, so that the daemon can still remove it.
fn owner(daemon: &DaemonConfig) -> Result<Option<(u32, u32)>, String> {
    let (user, group) = lookup(daemon)?;
    let gid = group
        .as_ref()
        .map(|g| g.gid)
        .or(user.as_ref().map(|u| u.gid));
    Ok(match (user, gid) {
        (None, None) => None,
        // u32::MAX (-1) leaves that id as it is.
        (user, gid) => Some((
            user.map_or(u32::MAX, |u| u.uid.as_raw()),
            gid.map_or(u32::MAX, |g| g.as_raw()),
        )),
    })
}

/// In the foreground: become `user`/`group` once the ports are bound.
fn drop_privileges(daemon: &DaemonConfig) -> Result<(), String> {
    let (user, group) = lookup(daemon)?;
    let gid = group
        .as_ref()
        .map(|g| g.gid)
        .or(user.as_ref().map(|u| u.gid));
    if let Some(gid) = gid {
        setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
        setgid(gid).map_err(|e| format!("setgid {gid}: {e}"))?;
    }
    if let Some(user) = &user {
        setuid(user.uid).map_err(|e| format!("setuid {} ({}): {e}", user.uid, user.name))?;
        log::info!("running as user {} (uid {})", user.name, user.uid);
    }
    Ok(())
}

fn fail(code: u8, message: &str) -> ExitCode {
    let mut err = std::io::stderr().lock();
    for line in message.lines() {
        let _ = writeln!(err, "netlabd: {line}");
    }
    ExitCode::from(code)
}
