//! Quota goals and the system metrics they (and the watermarks) read.
//!
//! The metric of a goal (`damos_set_quota_goal_current_value()`, mm/damon/core.c 6.9–6.16):
//! - `user_input`: a value the driver sets;
//! - `some_mem_psi_us`: growth of the `some` memory stall total (µs) since the last
//!   evaluation, system-wide (`/proc/pressure/memory`, as the kernel) or of one cgroup v2
//!   group's `memory.pressure` (madvd's addition: the kernel has no per-cgroup PSI goal);
//! - `node_mem_used_bp` / `node_mem_free_bp`: `(total − free)` or `free` × 10000 / total of a
//!   NUMA node's meminfo, or of `/proc/meminfo` when no node is given;
//! - `cgroup_mem_used_bp`: a cgroup's usage over its limit (v2 `memory.current` /
//!   `memory.max`, v1 `memory.usage_in_bytes` / `memory.limit_in_bytes`). The kernel's
//!   `node_memcg_used_bp` is relative to the node's memory instead.
//! - `refault_rate` (madvd's): the share of what the scheme paged out that its targets
//!   brought back within a window, basis points, from `/proc/PID/pagemap`
//!   ([`crate::refault`]; measured by the scheme's ledger, not here).

use crate::policy::{GoalMetric, GoalSpec};
use crate::refault::PageState;
use engine::kernel::cgroup::{self, CgroupMounts, MemoryUsage};
use engine::kernel::meminfo::{self, MemInfo};
use engine::kernel::pagemap::Pagemap;
use engine::kernel::psi;
use engine::{AddrRange, SysRoot, TargetId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Reading a metric failed; the message names what is missing (a path, a node, a limit).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MetricError(pub String);

/// Where schemes read system metrics. [`SysMetrics`] reads the running system through a
/// [`SysRoot`]; [`FakeMetrics`] is set by tests and simulations.
pub trait MetricSource: Send {
    /// `/proc/meminfo` (`node == None`) or a NUMA node's meminfo.
    fn meminfo(&self, node: Option<u32>) -> Result<MemInfo, MetricError>;
    /// The `some` memory stall total, µs: system-wide, or of cgroup v2 group `cgroup`.
    fn some_mem_psi_total_us(&self, cgroup: Option<&str>) -> Result<u64, MetricError>;
    /// Memory usage and limit of `cgroup`.
    fn cgroup_memory(&self, cgroup: &str) -> Result<MemoryUsage, MetricError>;
    /// The cgroups of a target process, as `/proc/PID/cgroup` names them (the v2 path and,
    /// on a hybrid host, the v1 memory controller's path), for `cgroup` filters.
    fn target_cgroups(&self, target: TargetId) -> Result<Vec<String>, MetricError> {
        Err(MetricError(format!(
            "no cgroup information for target {target}"
        )))
    }
    /// The state of each page of `range` of `target` (`/proc/PID/pagemap`), appended to
    /// `out`, one per page from the page holding `range.start`; fewer when the read is
    /// short. For the refault guard ([`crate::refault`]).
    fn page_states(
        &self,
        target: TargetId,
        range: AddrRange,
        out: &mut Vec<PageState>,
    ) -> Result<(), MetricError> {
        let _ = (range, out);
        Err(MetricError(format!(
            "no page residency for target {target}"
        )))
    }
    /// The page frame of each page of `range` of `target` (pagemap bits 0-54), appended to
    /// `out` as [`Self::page_states`] appends states: `None` where no page is present, and
    /// everywhere when frames are hidden (the reader lacks CAP_SYS_ADMIN). The refault guard
    /// compares a page's frame before and after its page-out: a page present after it in
    /// another frame left and was faulted back at once ([`crate::refault`]). An error (the
    /// default): no frames, the guard counts what it sees in swap only.
    fn page_frames(
        &self,
        target: TargetId,
        range: AddrRange,
        out: &mut Vec<Option<u64>>,
    ) -> Result<(), MetricError> {
        let _ = (range, out);
        Err(MetricError(format!("no page frames for target {target}")))
    }
}

/// The running system (or a fixture tree) through a [`SysRoot`].
#[derive(Clone, Debug)]
pub struct SysMetrics {
    pub root: SysRoot,
    pub mounts: CgroupMounts,
}

impl SysMetrics {
    pub fn new(root: SysRoot) -> Self {
        let mounts = CgroupMounts::discover(&root);
        Self { root, mounts }
    }
    pub fn host() -> Self {
        Self::new(SysRoot::host())
    }
}

impl MetricSource for SysMetrics {
    fn meminfo(&self, node: Option<u32>) -> Result<MemInfo, MetricError> {
        match node {
            None => meminfo::read_system(&self.root),
            Some(n) => meminfo::read_node(&self.root, n),
        }
        .map_err(|e| MetricError(e.to_string()))
    }

    fn some_mem_psi_total_us(&self, cgroup: Option<&str>) -> Result<u64, MetricError> {
        match cgroup {
            None => psi::read_system(&self.root, "memory")
                .map(|p| p.some.total_us)
                .map_err(|e| MetricError(e.to_string())),
            Some(g) => self
                .mounts
                .memory_pressure(&self.root, g)
                .map(|p| p.some.total_us)
                .map_err(|e| MetricError(e.to_string())),
        }
    }

    fn cgroup_memory(&self, cgroup: &str) -> Result<MemoryUsage, MetricError> {
        self.mounts
            .memory_usage(&self.root, cgroup)
            .map_err(|e| MetricError(e.to_string()))
    }

    fn target_cgroups(&self, target: TargetId) -> Result<Vec<String>, MetricError> {
        let lines = cgroup::read_proc_cgroup(&self.root, target.0)
            .map_err(|e| MetricError(e.to_string()))?;
        let mut out: Vec<String> = Vec::new();
        for p in [cgroup::v2_path(&lines), cgroup::v1_memory_path(&lines)]
            .into_iter()
            .flatten()
        {
            if !out.iter().any(|o| o == p) {
                out.push(p.to_string());
            }
        }
        Ok(out)
    }

    fn page_states(
        &self,
        target: TargetId,
        range: AddrRange,
        out: &mut Vec<PageState>,
    ) -> Result<(), MetricError> {
        self.read_pagemap(target, range, |e| {
            out.extend(e.iter().map(|e| PageState::from(e.residency())))
        })
    }

    fn page_frames(
        &self,
        target: TargetId,
        range: AddrRange,
        out: &mut Vec<Option<u64>>,
    ) -> Result<(), MetricError> {
        self.read_pagemap(target, range, |e| out.extend(e.iter().map(|e| e.pfn())))
    }
}

impl SysMetrics {
    /// `range` of `target`'s pagemap, in reads of at most 64 Ki entries, each handed to `f`;
    /// stops at a short read.
    fn read_pagemap(
        &self,
        target: TargetId,
        range: AddrRange,
        mut f: impl FnMut(&[engine::kernel::pagemap::PagemapEntry]),
    ) -> Result<(), MetricError> {
        let path = self.root.pid_file(target.0, "pagemap");
        let page = engine::kernel::host::page_size();
        let err = |e: std::io::Error| MetricError(format!("{}: {e}", path.display()));
        let mut pm = Pagemap::open(&path, page).map_err(err)?;
        let (first, last) = (range.start / page, range.end.div_ceil(page));
        let mut entries = Vec::new();
        let mut p = first;
        while p < last {
            let n = (last - p).min(1 << 16) as usize;
            pm.read(p * page, n, &mut entries).map_err(err)?;
            f(&entries);
            if entries.len() < n {
                break;
            }
            p += n as u64;
        }
        Ok(())
    }
}

/// Values set by hand, shared between clones (a test keeps one handle, the schemes another).
#[derive(Clone, Debug, Default)]
pub struct FakeMetrics {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    meminfo: HashMap<Option<u32>, MemInfo>,
    psi: HashMap<Option<String>, u64>,
    cgroups: HashMap<String, MemoryUsage>,
    targets: HashMap<TargetId, Vec<String>>,
    /// Page states by target and page number (4 KiB pages); pages not set are `Gone`.
    pages: HashMap<TargetId, BTreeMap<u64, PageState>>,
}

impl FakeMetrics {
    pub fn new() -> Self {
        Self::default()
    }
    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }
    /// Set MemTotal and MemFree (bytes) of the system (`None`) or a node.
    pub fn set_mem(&self, node: Option<u32>, total: u64, free: u64) {
        let mut m = MemInfo::default();
        m.fields.insert("MemTotal".into(), total);
        m.fields.insert("MemFree".into(), free);
        self.with(|s| s.meminfo.insert(node, m));
    }
    /// Set the free memory rate of the system, per-mille of a 1000 MiB machine.
    pub fn set_free_permille(&self, permille: u64) {
        self.set_mem(None, 1000 << 20, permille << 20);
    }
    pub fn set_psi_total_us(&self, cgroup: Option<&str>, total_us: u64) {
        self.with(|s| s.psi.insert(cgroup.map(str::to_string), total_us));
    }
    pub fn add_psi_us(&self, cgroup: Option<&str>, delta_us: u64) {
        self.with(|s| *s.psi.entry(cgroup.map(str::to_string)).or_insert(0) += delta_us);
    }
    pub fn set_cgroup_memory(&self, cgroup: &str, usage: u64, limit: Option<u64>) {
        self.with(|s| {
            s.cgroups
                .insert(cgroup.to_string(), MemoryUsage { usage, limit })
        });
    }
    /// Set the states of the 4 KiB pages from `addr` on of `target` (a target never set has
    /// no pagemap: reading it fails, as for an exited process).
    pub fn set_page_states(&self, target: TargetId, addr: u64, states: &[PageState]) {
        self.with(|s| {
            let m = s.pages.entry(target).or_default();
            for (i, st) in states.iter().enumerate() {
                m.insert(addr / 4096 + i as u64, *st);
            }
        });
    }
    pub fn set_target_cgroups(&self, target: TargetId, cgroups: &[&str]) {
        self.with(|s| {
            s.targets
                .insert(target, cgroups.iter().map(|c| c.to_string()).collect())
        });
    }
}

impl MetricSource for FakeMetrics {
    fn meminfo(&self, node: Option<u32>) -> Result<MemInfo, MetricError> {
        self.with(|s| s.meminfo.get(&node).cloned()).ok_or_else(|| {
            MetricError(match node {
                None => "fake: no meminfo set".into(),
                Some(n) => format!("fake: no meminfo for node {n}"),
            })
        })
    }
    fn some_mem_psi_total_us(&self, cgroup: Option<&str>) -> Result<u64, MetricError> {
        self.with(|s| s.psi.get(&cgroup.map(str::to_string)).copied())
            .ok_or_else(|| {
                MetricError(format!(
                    "fake: no memory PSI for {}",
                    cgroup.unwrap_or("the system")
                ))
            })
    }
    fn cgroup_memory(&self, cgroup: &str) -> Result<MemoryUsage, MetricError> {
        self.with(|s| s.cgroups.get(cgroup).copied())
            .ok_or_else(|| MetricError(format!("fake: no cgroup {cgroup}")))
    }
    fn target_cgroups(&self, target: TargetId) -> Result<Vec<String>, MetricError> {
        self.with(|s| s.targets.get(&target).cloned())
            .ok_or_else(|| MetricError(format!("fake: no cgroups of target {target}")))
    }
    fn page_states(
        &self,
        target: TargetId,
        range: AddrRange,
        out: &mut Vec<PageState>,
    ) -> Result<(), MetricError> {
        self.with(|s| {
            let m = s
                .pages
                .get(&target)
                .ok_or_else(|| MetricError(format!("fake: no pagemap of target {target}")))?;
            for p in range.start / 4096..range.end.div_ceil(4096) {
                out.push(m.get(&p).copied().unwrap_or(PageState::Gone));
            }
            Ok(())
        })
    }
}

/// A goal's running state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoalState {
    /// The last measured (or user-set) value.
    pub current: u64,
    /// The PSI total at the last evaluation (`last_psi_total`).
    pub last_psi_total: Option<u64>,
}

/// Check that a goal's source exists and is usable; the error names what is missing.
pub fn check_source(spec: &GoalSpec, env: &dyn MetricSource) -> Result<GoalState, MetricError> {
    let mut st = GoalState {
        current: spec.current,
        last_psi_total: None,
    };
    match &spec.metric {
        // The targets come and go; their pagemaps are read by the scheme's ledger.
        GoalMetric::UserInput | GoalMetric::RefaultRate { .. } => {}
        GoalMetric::SomeMemPsiUs { cgroup } => {
            let total = env.some_mem_psi_total_us(cgroup.as_deref()).map_err(|e| {
                MetricError(format!(
                    "some_mem_psi_us goal: memory PSI of {} is not available: {e}",
                    cgroup.as_deref().unwrap_or("the system")
                ))
            })?;
            // Start from now, so the first window measures its own stall time, not the time
            // since boot (the kernel starts from 0).
            st.last_psi_total = Some(total);
        }
        GoalMetric::NodeMemUsedBp { node } | GoalMetric::NodeMemFreeBp { node } => {
            let m = env.meminfo(*node).map_err(|e| {
                MetricError(format!(
                    "{} goal: meminfo of {} is not available: {e}",
                    spec.metric.name(),
                    node.map_or("the system".to_string(), |n| format!("node {n}"))
                ))
            })?;
            if m.used_bp().is_none() {
                return Err(MetricError(format!(
                    "{} goal: MemTotal is zero",
                    spec.metric.name()
                )));
            }
        }
        GoalMetric::CgroupMemUsedBp { cgroup } => {
            let u = env.cgroup_memory(cgroup).map_err(|e| {
                MetricError(format!(
                    "cgroup_mem_used_bp goal: memory of cgroup {cgroup} is not available: {e}"
                ))
            })?;
            if u.used_bp().is_none() {
                return Err(MetricError(format!(
                    "cgroup_mem_used_bp goal: cgroup {cgroup} has no memory limit"
                )));
            }
        }
    }
    Ok(st)
}

/// Measure a goal's current value (`damos_set_quota_goal_current_value()`).
pub fn measure(
    spec: &GoalSpec,
    st: &mut GoalState,
    env: &dyn MetricSource,
) -> Result<u64, MetricError> {
    st.current = match &spec.metric {
        // Set by the scheme's refault ledger (`refault::measure`).
        GoalMetric::UserInput | GoalMetric::RefaultRate { .. } => st.current,
        GoalMetric::SomeMemPsiUs { cgroup } => {
            let now = env.some_mem_psi_total_us(cgroup.as_deref())?;
            let last = st.last_psi_total.unwrap_or(now);
            st.last_psi_total = Some(now);
            now.saturating_sub(last)
        }
        GoalMetric::NodeMemUsedBp { node } => env
            .meminfo(*node)?
            .used_bp()
            .ok_or_else(|| MetricError("MemTotal is zero".into()))?,
        GoalMetric::NodeMemFreeBp { node } => env
            .meminfo(*node)?
            .free_bp()
            .ok_or_else(|| MetricError("MemTotal is zero".into()))?,
        GoalMetric::CgroupMemUsedBp { cgroup } => env
            .cgroup_memory(cgroup)?
            .used_bp()
            .ok_or_else(|| MetricError(format!("cgroup {cgroup} has no memory limit")))?,
    };
    Ok(st.current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate::Pos;

    fn goal(metric: GoalMetric, target: u64) -> GoalSpec {
        GoalSpec {
            metric,
            target,
            current: 0,
            pos: Pos::default(),
        }
    }

    #[test]
    fn psi_goal_measures_growth_per_evaluation() {
        let env = FakeMetrics::new();
        env.set_psi_total_us(None, 1_000_000);
        let g = goal(GoalMetric::SomeMemPsiUs { cgroup: None }, 1000);
        let mut st = check_source(&g, &env).unwrap();
        env.add_psi_us(None, 700);
        assert_eq!(measure(&g, &mut st, &env), Ok(700));
        assert_eq!(measure(&g, &mut st, &env), Ok(0));
    }

    #[test]
    fn missing_sources_are_named() {
        let env = FakeMetrics::new();
        let e = check_source(
            &goal(
                GoalMetric::SomeMemPsiUs {
                    cgroup: Some("/app".into()),
                },
                1,
            ),
            &env,
        )
        .unwrap_err();
        assert!(e.0.contains("memory PSI of /app"), "{e}");
        let e =
            check_source(&goal(GoalMetric::NodeMemFreeBp { node: Some(3) }, 1), &env).unwrap_err();
        assert!(e.0.contains("node 3"), "{e}");
        env.set_cgroup_memory("/app", 10, None);
        let e = check_source(
            &goal(
                GoalMetric::CgroupMemUsedBp {
                    cgroup: "/app".into(),
                },
                1,
            ),
            &env,
        )
        .unwrap_err();
        assert!(e.0.contains("has no memory limit"), "{e}");
    }

    #[test]
    fn memory_goals_in_basis_points() {
        let env = FakeMetrics::new();
        env.set_mem(Some(0), 1000, 250);
        env.set_cgroup_memory("/app", 300, Some(1200));
        let mut st = GoalState::default();
        assert_eq!(
            measure(
                &goal(GoalMetric::NodeMemUsedBp { node: Some(0) }, 1),
                &mut st,
                &env
            ),
            Ok(7500)
        );
        assert_eq!(
            measure(
                &goal(GoalMetric::NodeMemFreeBp { node: Some(0) }, 1),
                &mut st,
                &env
            ),
            Ok(2500)
        );
        assert_eq!(
            measure(
                &goal(
                    GoalMetric::CgroupMemUsedBp {
                        cgroup: "/app".into()
                    },
                    1
                ),
                &mut st,
                &env
            ),
            Ok(2500)
        );
    }

    #[test]
    fn sys_metrics_read_a_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(root.proc_file("pressure")).unwrap();
        std::fs::write(
            root.proc_file("meminfo"),
            "MemTotal: 1000 kB\nMemFree: 100 kB\n",
        )
        .unwrap();
        std::fs::write(
            root.proc_file("pressure/memory"),
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=55\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.proc_file("42")).unwrap();
        std::fs::write(
            root.pid_file(42, "cgroup"),
            "4:memory:/batch/j1\n1:cpu:/\n0::/user.slice\n",
        )
        .unwrap();
        let env = SysMetrics::new(root);
        assert_eq!(
            env.target_cgroups(TargetId(42)).unwrap(),
            vec!["/user.slice".to_string(), "/batch/j1".to_string()]
        );
        assert!(env.target_cgroups(TargetId(43)).is_err());
        assert_eq!(
            env.meminfo(None).unwrap().free_mem_rate_permille(),
            Some(100)
        );
        assert_eq!(env.some_mem_psi_total_us(None), Ok(55));
        assert!(env
            .some_mem_psi_total_us(Some("/app"))
            .unwrap_err()
            .0
            .contains("no cgroup v2 tree"));
    }
}
