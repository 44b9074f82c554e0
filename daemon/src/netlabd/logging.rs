//! One line per event, to stderr (read by journald when run by systemd, in
//! its format when stderr is the journal's stream) or to syslog. The target can change on reload, so the logger is ours: a
//! `log` backend whose target sits behind a lock.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};
use netlab::config::LogTarget;
use nix::sys::stat::{FileStat, fstat};
use syslog::{Facility, Formatter3164, LoggerBackend};

enum Sink {
    Stderr { journal: bool },
    Syslog(syslog::Logger<LoggerBackend, Formatter3164>),
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger, writing to stderr, at the level `NETLABD_LOG` or
/// `RUST_LOG` names (error, warn, info, debug, trace), else info.
pub fn init() {
    let level = ["NETLABD_LOG", "RUST_LOG"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::Info);
    let logger = LOGGER.get_or_init(|| Logger {
        sink: Mutex::new(stderr_sink()),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

fn stderr_sink() -> Sink {
    // On the journal, "<N>" prefixes carry the priority and timestamps are
    // the journal's.
    Sink::Stderr {
        journal: stderr_is_journal(),
    }
}

/// systemd connects stderr to the journal and puts that stream's
/// "DEVICE:INODE" in JOURNAL_STREAM. The variable alone proves nothing: it
/// is inherited by processes whose stderr is something else (a pipe, a
/// file, /dev/null after --daemonize), so, as systemd.exec(5) says, it is
/// compared with fstat(2) of stderr.
fn stderr_is_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM")
        .is_some_and(|value| names_the_file_on(&value, std::io::stderr().as_fd()))
}

/// Whether `value` ("DEVICE:INODE") names the file open on `fd`.
fn names_the_file_on(value: &OsStr, fd: BorrowedFd<'_>) -> bool {
    let Some(named) = value.to_str().and_then(parse_journal_stream) else {
        return false;
    };
    fstat(fd).is_ok_and(|st| same_file(named, &st))
}

// dev_t and ino_t are u64 on Linux, not on every Unix.
#[allow(clippy::unnecessary_cast)]
fn same_file((dev, ino): (u64, u64), st: &FileStat) -> bool {
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// JOURNAL_STREAM's "DEVICE:INODE", both decimal; anything else is `None`.
fn parse_journal_stream(value: &str) -> Option<(u64, u64)> {
    let number = |s: &str| {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (dev, ino) = value.split_once(':')?;
    Some((number(dev)?, number(ino)?))
}

/// Switches the target; an unreachable syslog leaves logs on stderr, said so.
pub fn set_target(target: LogTarget) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let sink = match target {
        LogTarget::Stderr => stderr_sink(),
        LogTarget::Syslog => match syslog::unix(syslog_formatter()) {
            Ok(l) => Sink::Syslog(l),
            Err(e) => {
                log::error!("cannot reach syslog ({e}); logging to stderr");
                return;
            }
        },
    };
    *logger.sink.lock().unwrap_or_else(|e| e.into_inner()) = sink;
}

/// RFC 3164 lines as `netlabd[PID]`, in the daemon facility.
fn syslog_formatter() -> Formatter3164 {
    Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "netlabd".into(),
        pid: std::process::id(),
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        sink.write(record);
    }

    fn flush(&self) {}
}

impl Sink {
    fn write(&mut self, record: &Record<'_>) {
        match self {
            Sink::Stderr { journal: true } => {
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "<{}>{}",
                    priority(record.level()),
                    record.args()
                );
            }
            Sink::Stderr { journal: false } => {
                let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "{now} {:<5} {}",
                    record.level(),
                    record.args()
                );
            }
            Sink::Syslog(l) => {
                let msg = record.args().to_string();
                let _ = match record.level() {
                    Level::Error => l.err(msg),
                    Level::Warn => l.warning(msg),
                    Level::Info => l.info(msg),
                    Level::Debug | Level::Trace => l.debug(msg),
                };
            }
        }
    }
}

/// syslog(3) priorities, as journald reads them from "<N>" prefixes.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;
    use std::time::Duration;

    use super::*;

    /// What the syslog sink sends for one record, read from a socket
    /// standing in for /dev/log.
    fn sent_to_syslog(level: Level, text: &str) -> String {
        let dir =
            std::env::temp_dir().join(format!("netlabd-syslog-{}-{level}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut sink = Sink::Syslog(syslog::unix_custom(syslog_formatter(), &path).unwrap());
        sink.write(
            &Record::builder()
                .level(level)
                .args(format_args!("{text}"))
                .build(),
        );
        let mut buf = [0u8; 1024];
        let n = server.recv(&mut buf).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn journal_stream_is_two_decimal_numbers() {
        assert_eq!(parse_journal_stream("8:1234"), Some((8, 1234)));
        assert_eq!(parse_journal_stream("0:0"), Some((0, 0)));
        assert_eq!(
            parse_journal_stream("18446744073709551615:1"),
            Some((u64::MAX, 1))
        );
        for bad in [
            "",
            ":",
            "8",
            "8:",
            ":1234",
            "8:1234:5",
            " 8:1234",
            "8:1234\n",
            "+8:1234",
            "-8:1234",
            "0x8:1234",
            "a:b",
            "18446744073709551616:1",
        ] {
            assert_eq!(parse_journal_stream(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn journal_stream_must_name_the_very_file_on_the_descriptor() {
        let path = std::env::temp_dir().join(format!("netlabd-journal-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        let other = std::fs::File::open("/dev/null").unwrap();
        std::fs::remove_file(&path).unwrap();
        let st = fstat(file.as_fd()).unwrap();
        let named = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(names_the_file_on(OsStr::new(&named), file.as_fd()));
        assert!(!names_the_file_on(OsStr::new(&named), other.as_fd()));
        let next_inode = format!("{}:{}", st.st_dev, st.st_ino + 1);
        assert!(!names_the_file_on(OsStr::new(&next_inode), file.as_fd()));
        assert!(!names_the_file_on(OsStr::new("nonsense"), file.as_fd()));
        let not_utf8 = <OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"8:\xff");
        assert!(!names_the_file_on(not_utf8, file.as_fd()));
    }

    #[test]
    fn syslog_lines_carry_the_daemon_facility_the_level_and_our_name() {
        // Facility daemon is 3, so the priority is 3 * 8 + severity.
        for (level, severity) in [
            (Level::Error, 3),
            (Level::Warn, 4),
            (Level::Info, 6),
            (Level::Debug, 7),
        ] {
            let line = sent_to_syslog(level, "server echo: stopped");
            let want_start = format!("<{}>", 24 + severity);
            assert!(line.starts_with(&want_start), "{level}: {line:?}");
            let want_tag = format!("netlabd[{}]: server echo: stopped", std::process::id());
            assert!(line.ends_with(&want_tag), "{level}: {line:?}");
            assert_eq!(priority(level), severity);
        }
    }
}
