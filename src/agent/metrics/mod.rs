//! The agent's metrics: plain structs filled from the stages' events (the schemes' stats and
//! the actuator's reports), encoded in one place ([`encode`]) by the Prometheus project's
//! Rust client (`prometheus-client`), and served by [`http`] (`GET /metrics`, `GET /healthz`).
//!
//! Labels are the target group, scheme and action. Per-process series (`madvd_target_*`,
//! labelled with the pid) exist only when the config opts in (`pid_metrics: N`), and then for
//! at most N processes: a group's processes come and go, unbounded per-pid series would grow
//! without bound in the scraper.
//!
//! Counters stay monotonic across reloads: when a group is restarted (its policy changed),
//! its counters so far are folded into [`GroupMetrics::carried`] and keep being added.

mod encode;
mod http;
#[cfg(test)]
pub mod parsed;
#[cfg(test)]
mod tests;

pub use encode::render;
pub use http::Server;

use engine::access::MonitorCost;
use std::collections::BTreeMap;

/// One scheme's counters: its `schemes::SchemeStats` as the pipeline last reported them
/// (the encoder reads the counters it exports; name and action are the map's key).
pub type SchemeMetrics = schemes::SchemeStats;

/// Counters of one target group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// Aggregated snapshots.
    pub snapshots: u64,
    pub cost: MonitorCost,
    pub rounds: u64,
    pub bytes_advised: u64,
    pub actuation_ns: u64,
    /// Bytes not applied, by reason (the actuator's `ApplyErrorKind`, snake case).
    pub apply_errors: BTreeMap<String, u64>,
    /// By (scheme, action).
    pub schemes: BTreeMap<(String, String), SchemeMetrics>,
    pub targets_added: u64,
    pub targets_dropped: u64,
    /// `Process::open` refusals by reason (`myself`, `init`, `kernel_thread`, ...).
    pub refusals: BTreeMap<String, u64>,
    /// Processes matched but not added because the group is at `max_targets`.
    pub over_limit: u64,
    /// Stage failures (logged).
    pub failures: u64,
}

impl Counters {
    /// `self + other` for every counter; gauges (`active`) from `other`.
    pub fn plus(&self, other: &Counters) -> Counters {
        let mut c = self.clone();
        c.snapshots += other.snapshots;
        c.cost.probe_pageouts += other.cost.probe_pageouts;
        c.cost.probe_refaults += other.cost.probe_refaults;
        c.cost.samples += other.cost.samples;
        c.cost.syscalls += other.cost.syscalls;
        c.rounds += other.rounds;
        c.bytes_advised += other.bytes_advised;
        c.actuation_ns += other.actuation_ns;
        for (k, v) in &other.apply_errors {
            *c.apply_errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.schemes {
            let e = c.schemes.entry(k.clone()).or_default();
            e.nr_tried += v.nr_tried;
            e.sz_tried += v.sz_tried;
            e.nr_applied += v.nr_applied;
            e.sz_applied += v.sz_applied;
            e.sz_resident += v.sz_resident;
            e.sz_not_resident += v.sz_not_resident;
            e.sz_not_huge += v.sz_not_huge;
            e.sz_already_huge += v.sz_already_huge;
            e.sz_not_idle += v.sz_not_idle;
            e.qt_exceeds += v.qt_exceeds;
            e.active = v.active;
        }
        c.targets_added += other.targets_added;
        c.targets_dropped += other.targets_dropped;
        for (k, v) in &other.refusals {
            *c.refusals.entry(k.clone()).or_default() += v;
        }
        c.over_limit += other.over_limit;
        c.failures += other.failures;
        c
    }
}

/// One target group.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupMetrics {
    pub name: String,
    pub policy: String,
    pub ops: String,
    pub dry_run: bool,
    /// Gauges.
    pub targets: u64,
    pub regions: u64,
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    /// Monitoring attributes in force (the CPU budget scales them).
    pub sample_us: u64,
    pub aggr_us: u64,
    pub max_nr_regions: u64,
    /// Counters of the running pipeline.
    pub current: Counters,
    /// Counters of earlier pipelines of this group (before reloads).
    pub carried: Counters,
    /// Most of the group's processes exported with per-pid series (the group's
    /// `pid_metrics`; 0: none).
    pub pid_series: usize,
    /// Per-process figures by pid (kept only when `pid_series` > 0).
    pub pids: BTreeMap<u32, PidMetrics>,
}

impl GroupMetrics {
    /// The monitoring attributes in force.
    pub fn show_attrs(&mut self, a: &engine::Attrs) {
        self.sample_us = a.sample_us;
        self.aggr_us = a.aggr_us;
        self.max_nr_regions = a.max_nr_regions.into();
    }

    /// A process's memory at a rescan (kept only with per-pid series on).
    pub fn pid_mem(&mut self, pid: u32, comm: &str, rss_bytes: u64, swap_bytes: u64) {
        if self.pid_series > 0 {
            let p = self.pids.entry(pid).or_default();
            p.comm = comm.to_string();
            (p.rss_bytes, p.swap_bytes) = (rss_bytes, swap_bytes);
        }
    }

    /// An actuation round's bytes, to the processes already known.
    pub fn pid_advised(&mut self, r: &engine::ApplyReport) {
        for o in &r.outcomes {
            if let Some(p) = self.pids.get_mut(&o.target.0) {
                p.advised_bytes += o.bytes_applied;
            }
        }
    }

    /// A process left the group: its series go.
    pub fn forget_pid(&mut self, pid: u32) {
        self.pids.remove(&pid);
    }
}

/// One process of a group (per-pid metrics, opt-in).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PidMetrics {
    pub comm: String,
    pub rss_bytes: u64,
    pub swap_bytes: u64,
    /// Bytes advised in this process since it was added to the group.
    pub advised_bytes: u64,
}

/// Everything `/metrics` shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentMetrics {
    pub version: String,
    pub uptime_s: f64,
    pub reloads: u64,
    pub reload_errors: u64,
    pub last_reload_success: bool,
    pub last_reload_unix_s: f64,
    /// Groups by name.
    pub groups: BTreeMap<String, GroupMetrics>,
    /// Groups removed by a reload keep their final counters here (monotonic series).
    pub retired: BTreeMap<String, GroupMetrics>,
    pub cpu: CpuMetrics,
}

/// The agent's own CPU use and its budget.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuMetrics {
    /// Process CPU time (user + system, all threads) since start, seconds.
    pub seconds: f64,
    /// Share of one CPU used over the last budget window.
    pub share: f64,
    /// The budget (`cpu_budget`), a share of one CPU; `None`: no budget.
    pub budget: Option<f64>,
    /// The scale the budget applies to every group (1: the policies' own attributes).
    pub scale: f64,
}
