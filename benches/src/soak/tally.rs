//! What every part of the soak counts, and every failure it saw. The
//! counters are read by the sampler while the load threads run; failures
//! are told on stderr as they happen (the first ones in full) and kept for
//! the summary.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How many failures are told in full; the rest are only counted.
const TOLD: u64 = 100;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn sub(&self, n: u64) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Raises it to `n` if it is lower.
    pub fn raise(&self, n: u64) {
        self.0.fetch_max(n, Ordering::Relaxed);
    }
    /// Reads it and sets it to 0.
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// The TCP echo pools, in the order of [`Tally::echo_open`].
pub const POOLS: [&str; 3] = ["event", "thread", "fork"];

#[derive(Default)]
pub struct Tally {
    /// Connections of each echo pool open now (connected, not yet closed).
    pub echo_open: [Counter; 3],
    /// Echo bytes written, and echoed bytes checked against them.
    pub echo_sent: Counter,
    pub echo_checked: Counter,
    /// Bytes in flight on connections the soak reset on purpose: a reset
    /// discards them, so they are not checked.
    pub echo_abandoned: Counter,
    /// Echo connections closed by the soak, and those among them whose
    /// every byte was seen back before the server's FIN.
    pub echo_closed: Counter,
    pub echo_closed_whole: Counter,
    pub udp_flows: Counter,
    pub udp_sent: Counter,
    pub udp_checked: Counter,
    pub udp_lost: Counter,
    /// Chat connections open now, and named members among them.
    pub chat_open: Counter,
    pub chat_members: Counter,
    pub chat_joins: Counter,
    pub chat_leaves: Counter,
    /// Messages written, and messages received and checked (a delivery is
    /// one message to one member).
    pub chat_sent: Counter,
    pub chat_deliveries: Counter,
    /// Join and leave notices received, and rosters checked.
    pub chat_notices: Counter,
    pub chat_rosters: Counter,
    pub reloads: Counter,
    /// The longest turn of a load thread's loop since the last sample, in
    /// ms: long turns mean the generator is behind (starved of CPU), and
    /// what it then reports late is not netlabd's lateness.
    pub turn_max_ms: Counter,
    /// The longest turn over the whole run.
    pub turn_max_ever_ms: Counter,
    failures: Failures,
}

#[derive(Default)]
struct Failures {
    count: AtomicU64,
    by_kind: Mutex<BTreeMap<&'static str, (u64, String)>>,
}

impl Tally {
    /// Records a failure of `kind`: told on stderr while few, counted always.
    pub fn fail(&self, epoch: Instant, kind: &'static str, detail: String) {
        let n = self.failures.count.fetch_add(1, Ordering::Relaxed) + 1;
        let at = epoch.elapsed().as_secs_f64();
        if n <= TOLD {
            eprintln!("soak: FAIL at {at:.1} s: {kind}: {detail}");
        } else if n == TOLD + 1 {
            eprintln!("soak: more failures follow; only counted from now on");
        }
        let mut by_kind = self
            .failures
            .by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        by_kind
            .entry(kind)
            .or_insert_with(|| (0, format!("at {at:.1} s: {detail}")))
            .0 += 1;
    }

    pub fn failures(&self) -> u64 {
        self.failures.count.load(Ordering::Relaxed)
    }

    /// Each kind of failure: how many, and the first one.
    pub fn failure_kinds(&self) -> Vec<(&'static str, u64, String)> {
        let by_kind = self
            .failures
            .by_kind
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        by_kind
            .iter()
            .map(|(kind, (n, first))| (*kind, *n, first.clone()))
            .collect()
    }

    pub fn echo_open_total(&self) -> u64 {
        self.echo_open.iter().map(Counter::get).sum()
    }
}
