//! The process's own figures, read from /proc at each scrape, under the
//! names every Prometheus client library uses.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::encode::{Labels, Value, family};

/// `sysconf`'s answer, or `fallback` when it has none.
fn sysconf(name: libc::c_int, fallback: i64) -> i64 {
    // SAFETY: sysconf only reads a system setting.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 { v } else { fallback }
}

/// `/proc/self/stat`'s fields after the command (which may hold spaces),
/// numbered as proc(5) numbers them from 3.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect())
}

/// The kernel's boot time, in seconds since the epoch.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|t| t.trim().parse().ok())
}

pub(super) fn encode(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let one = |v: Value| -> Vec<(Labels, Value)> { vec![(Vec::new(), v)] };
    let ticks = sysconf(libc::_SC_CLK_TCK, 100) as f64;
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields = stat_fields(&stat);
    // Field 14 utime, 15 stime, 22 starttime (in clock ticks): index - 3.
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        family(
            encoder,
            "process_cpu_seconds",
            "CPU time the process used, user and system, in seconds.",
            MetricType::Counter,
            &one(Value::Float((utime + stime) / ticks)),
        )?;
    }
    if let (Some(start), Some(boot)) = (field(22), boot_time()) {
        family(
            encoder,
            "process_start_time_seconds",
            "When the process started, in seconds since the epoch.",
            MetricType::Gauge,
            &one(Value::Float(boot + start / ticks)),
        )?;
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(
            encoder,
            "process_open_fds",
            "File descriptors the process holds open.",
            MetricType::Gauge,
            &one(Value::Int(fds.count() as i64)),
        )?;
    }
    family(
        encoder,
        "process_max_fds",
        "The most file descriptors the process may open (RLIMIT_NOFILE).",
        MetricType::Gauge,
        &one(Value::Int(sysconf(libc::_SC_OPEN_MAX, 0))),
    )?;
    let resident = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<i64>().ok());
    if let Some(pages) = resident {
        family(
            encoder,
            "process_resident_memory_bytes",
            "Resident memory, in bytes.",
            MetricType::Gauge,
            &one(Value::Int(pages * sysconf(libc::_SC_PAGESIZE, 4096))),
        )?;
    }
    Ok(())
}
