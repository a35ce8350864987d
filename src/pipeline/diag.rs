//! Diagnostic lines of the actuation thread, at debug level under the `madvd::diag` target
//! (off unless asked for: `MADVD_LOG=info,madvd::diag=debug`): per plan, the snapshot's
//! regions as the schemes saw them, the requests the plan made, and the actuator's outcome
//! of each, with the schemes' effective quotas. For diagnosing which regions a scheme was
//! offered, what it chose, and what the actuator skipped and charged (docs/performance.md,
//! "THP tuning per workload" used it on kernel DAMON's regions in the lab).

use engine::{AdviceRequest, ApplyReport, Snapshot};
use std::fmt::Write;

pub const TARGET: &str = "madvd::diag";

/// True when the diagnostic lines are wanted (a cheap check before formatting them).
pub fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// One line per target: `start-end:nr_accesses/age` of each region, addresses in hex.
pub fn snapshot(snap: &Snapshot, now_us: u64) {
    for t in &snap.targets {
        let mut s = String::new();
        for r in &t.regions {
            let _ = write!(
                s,
                " {:x}-{:x}:{}/{}",
                r.start(),
                r.end(),
                r.nr_accesses,
                r.age
            );
        }
        tracing::debug!(target: TARGET, "t={} agg={} pid={} regions={}:{s}", now_us / 1000, snap.aggregation, t.target, t.regions.len());
    }
}

/// The plan's requests, one line.
pub fn plan(reqs: &[AdviceRequest], now_us: u64) {
    if reqs.is_empty() {
        return;
    }
    let mut s = String::new();
    for r in reqs {
        let _ = write!(
            s,
            " s{}:{:?}:{:x}-{:x}",
            r.scheme, r.advice, r.range.start, r.range.end
        );
    }
    tracing::debug!(target: TARGET, "t={} plan{s}", now_us / 1000);
}

/// The outcomes: applied / requested bytes, the errors with their bytes, the time charged.
pub fn report(report: &ApplyReport, effective: &[u64], now_us: u64) {
    let mut s = String::new();
    for o in &report.outcomes {
        let _ = write!(
            s,
            " s{}:{:x}-{:x}:applied={}K,ns={}",
            o.scheme,
            o.range.start,
            o.range.end,
            o.bytes_applied >> 10,
            o.elapsed_ns
        );
        for (k, b) in &o.errors {
            let _ = write!(s, ",{}={}K", k.label(), b >> 10);
        }
    }
    tracing::debug!(target: TARGET, "t={} esz={effective:?} outcomes{s}", now_us / 1000);
}

/// The round's wall time and the actuator's running counters (the idle cut's among them).
pub fn round(wall: std::time::Duration, st: &engine::actuator::ActuatorStats, now_us: u64) {
    tracing::debug!(
        target: TARGET,
        "t={} round_ms={:.1} calls={} resident_scanned={}K idle_read={} idle_thp_tails={} not_idle={}K idle_marked={} idle_cut_ms={:.1}",
        now_us / 1000,
        wall.as_secs_f64() * 1e3,
        st.calls,
        st.resident_scanned >> 10,
        st.idle_read,
        st.idle_thp_tails,
        st.not_idle >> 10,
        st.idle_marked,
        st.idle_cut_ns as f64 / 1e6
    );
}
