//! One target group's lifecycle: its stages built from its plan and started, processes
//! added and dropped as its selector matches them (each through two pidfd-checked handles
//! handed to the running stages), the stages' events folded into its metrics, and its stop.

use super::account::{account, refusal_label};
use super::discover::{Found, Miss, Scan};
use super::metrics::{Counters, GroupMetrics, SchemeMetrics};
use super::reload::{stages, GroupPlan};
use crate::pipeline::{Event, Running, Stages};
use anyhow::{Context, Result};
use engine::proctree::{open_pair, ProcId};
use engine::{Attrs, SysRoot, TargetId};
use std::collections::{BTreeMap, BTreeSet};

/// One running target group.
pub(super) struct Group {
    pub plan: GroupPlan,
    running: Running,
    /// pid → comm of the processes watched.
    pub members: BTreeMap<u32, String>,
    /// What the selector matched at the last rescan (without descendants), with their start
    /// times then: where [`Group::follow`] walks from.
    selected: Vec<ProcId>,
    /// Matching pids that cannot be targets (counted and logged once each).
    refused: BTreeSet<u32>,
    /// Matching pids left out by `max_targets` (counted once each).
    over_limit: BTreeSet<u32>,
    miss: Option<Miss>,
    last_failure: Option<String>,
    /// The monitoring attributes in force (the plan's, scaled by the CPU budget).
    applied: Attrs,
    pub m: GroupMetrics,
}

/// A group's stages, built but not started (building can fail; starting only spawns).
pub(super) struct Built {
    pub plan: GroupPlan,
    stages: Stages,
}

pub(super) fn build(root: &SysRoot, plan: &GroupPlan) -> Result<Built> {
    let stages = stages(root, &plan.spec.name, plan.ops, &plan.policy, plan.dry_run)?;
    Ok(Built {
        plan: plan.clone(),
        stages,
    })
}

pub(super) fn start(b: Built, carried: Counters) -> Result<Group> {
    let running = b
        .stages
        .start()
        .with_context(|| format!("group `{}`: cannot start its threads", b.plan.spec.name))?;
    // Every scheme has its series from the start (zeros until the first round).
    let mut current = Counters::default();
    for s in &b.plan.policy.schemes {
        current.schemes.insert(
            (s.name.clone(), s.action.name().to_string()),
            SchemeMetrics {
                active: s.watermarks.is_none(),
                ..Default::default()
            },
        );
    }
    let mut m = GroupMetrics {
        current,
        name: b.plan.spec.name.clone(),
        policy: b.plan.spec.policy.display().to_string(),
        ops: b.plan.ops.to_string(),
        dry_run: b.plan.dry_run,
        carried,
        pid_series: b.plan.spec.pid_metrics,
        ..Default::default()
    };
    m.show_attrs(&b.plan.attrs);
    Ok(Group {
        applied: b.plan.attrs,
        plan: b.plan,
        running,
        members: BTreeMap::new(),
        selected: Vec::new(),
        refused: BTreeSet::new(),
        over_limit: BTreeSet::new(),
        miss: None,
        last_failure: None,
        m,
    })
}

impl Group {
    pub fn name(&self) -> &str {
        &self.plan.spec.name
    }

    /// Run at CPU-budget scale `k` (1: the policy's own attributes; `budget::scaled`), the
    /// next sample `first_in` from now. Nothing is sent when the attributes stay the same.
    pub fn set_scale(&mut self, k: f64, first_in: std::time::Duration) {
        let a = super::budget::scaled(&self.plan.attrs, k);
        if a != self.applied && self.running.set_attrs(a, first_in) {
            tracing::debug!(
                "group {}: budget scale {k:.2}: sampling {} µs, aggregation {} µs, at most {} regions",
                self.name(),
                a.sample_us,
                a.aggr_us,
                a.max_nr_regions
            );
            self.applied = a;
            self.m.show_attrs(&a);
        }
    }

    /// Forget a member (one log line).
    fn drop_member(&mut self, pid: u32, why: &str) {
        if let Some(comm) = self.members.remove(&pid) {
            self.m.current.targets_dropped += 1;
            self.m.forget_pid(pid);
            tracing::info!(
                "group {}: pid {pid} ({comm}) {why}: dropped ({} target(s))",
                self.name(),
                self.members.len()
            );
        }
    }

    /// Add `pid`: two handles (the access check's and the actuator's, each with its pidfd),
    /// both handed to the running stages. `start`: the start time a descendant was found
    /// with (checked through the pidfd: a reused pid is not taken).
    fn add(&mut self, root: &SysRoot, pid: u32, start: Option<u64>) {
        match open_pair(root, pid, start) {
            Ok((a, b)) => {
                let comm = a.comm().to_string();
                if !self.running.add_target(a, b) {
                    return;
                }
                self.members.insert(pid, comm.clone());
                self.m.current.targets_added += 1;
                tracing::info!(
                    "group {}: pid {pid} ({comm}) added ({} target(s))",
                    self.name(),
                    self.members.len()
                );
            }
            Err(e) if e.is_gone() => {}
            Err(e) => {
                let why = refusal_label(&e);
                self.refused.insert(pid);
                *self.m.current.refusals.entry(why.to_string()).or_default() += 1;
                if e.is_permission() {
                    tracing::warn!("group {}: {e}", self.name());
                } else {
                    tracing::info!("group {}: not a target: {e}", self.name());
                }
            }
        }
    }

    fn remove(&mut self, pid: u32, why: &str) {
        self.running.remove_target(TargetId(pid));
        self.drop_member(pid, why);
    }

    /// Match the selector again: add new processes, drop those no longer selected.
    pub fn rescan(&mut self, root: &SysRoot, scan: &mut Scan<'_>, taken: &BTreeSet<u32>) {
        let spec = &self.plan.spec;
        let found = scan.find_tree(&spec.select, spec.children, spec.max_targets);
        self.selected.clone_from(&found.roots);
        if found.miss != self.miss {
            if let Some(m) = &found.miss {
                tracing::warn!("group {}: {m}", self.name());
            } else if let Some(m) = &self.miss {
                tracing::info!("group {}: resolved: {m}", self.name());
            }
            self.miss = found.miss.clone();
        }
        self.take(root, &found, taken);
    }

    /// `children: true`: walk the process tree again from what the selector matched at the
    /// last rescan (between rescans, so short-lived children are seen too).
    pub fn follow(&mut self, root: &SysRoot, taken: &BTreeSet<u32>) {
        if !self.plan.spec.children {
            return;
        }
        // The roots still watched (a root gone since, its pid maybe reused, is not walked).
        let roots: Vec<ProcId> = self
            .selected
            .iter()
            .filter(|r| self.members.contains_key(&r.pid))
            .copied()
            .collect();
        let mut found = Found {
            pids: roots.iter().map(|r| r.pid).collect(),
            ..Found::default()
        };
        let limit = self.plan.spec.max_targets;
        found.add_descendants_of(root, roots, std::process::id(), limit);
        self.take(root, &found, taken);
    }

    /// Make the members what was found: add the new, drop the others.
    fn take(&mut self, root: &SysRoot, found: &Found, taken: &BTreeSet<u32>) {
        let now: BTreeSet<u32> = found.pids.iter().copied().collect();
        let stale: Vec<u32> = self
            .members
            .keys()
            .filter(|p| !now.contains(p))
            .copied()
            .collect();
        for pid in stale {
            // A member that exited drops out of the selection too, often before the
            // monitor's own Gone arrives: name the real reason (gone, or a zombie).
            let stat = engine::kernel::stat::read_stat(&root.proc_file(&format!("{pid}/stat")));
            let why = match stat {
                Ok(st) if st.state != 'Z' && st.state != 'X' => "no longer selected",
                _ => "exited",
            };
            self.remove(pid, why);
        }
        self.refused.retain(|p| now.contains(p));
        self.over_limit.retain(|p| now.contains(p));
        for &pid in &found.pids {
            if self.members.contains_key(&pid)
                || self.refused.contains(&pid)
                || taken.contains(&pid)
            {
                continue;
            }
            if self.members.len() >= self.plan.spec.max_targets {
                if self.over_limit.is_empty() {
                    tracing::warn!(
                        "group {}: {} processes match but max_targets is {}: the rest are not watched",
                        self.name(),
                        found.pids.len(),
                        self.plan.spec.max_targets
                    );
                }
                if self.over_limit.insert(pid) {
                    self.m.current.over_limit += 1;
                }
                continue;
            }
            self.add(root, pid, found.start_time(pid));
        }
        let (mut rss, mut swap) = (0, 0);
        for (&pid, comm) in &self.members {
            if let Some(m) = crate::sysinfo::proc_mem(root, pid) {
                rss += m.rss;
                self.m.pid_mem(pid, comm, m.rss, m.swap);
                swap += m.swap;
            }
        }
        self.m.rss_bytes = rss;
        self.m.swap_bytes = swap;
    }

    /// Take what the stages reported.
    pub fn drain(&mut self) {
        while let Ok(ev) = self.running.events.try_recv() {
            match ev {
                Event::Snapshot(s, cost) => {
                    self.m.current.cost = cost;
                    if s.aggregated {
                        self.m.current.snapshots += 1;
                        self.m.regions = s.nr_regions() as u64;
                    }
                }
                Event::Applied(r, stats) => {
                    self.m.pid_advised(&r);
                    account(&mut self.m.current, &r, &stats)
                }
                Event::Gone(t) => {
                    // Also tell the stages: the monitor and the actuator may each report
                    // the same exit; all three sides stay consistent either way.
                    if self.members.contains_key(&t.0) {
                        self.remove(t.0, "exited");
                    }
                }
                Event::AllGone => {}
                Event::Failed(msg) => {
                    self.m.current.failures += 1;
                    if self.last_failure.as_deref() != Some(msg.as_str()) {
                        tracing::warn!("group {}: {msg}", self.name());
                        self.last_failure = Some(msg);
                    }
                }
            }
        }
        self.m.targets = self.members.len() as u64;
        if self.members.is_empty() {
            self.m.regions = 0;
        }
    }

    /// Stop the stages; the counters so far, for the next pipeline of this group.
    pub fn stop(mut self) -> GroupMetrics {
        let events = self.running.events.clone();
        self.running.stop_and_join();
        while let Ok(ev) = events.try_recv() {
            match ev {
                Event::Applied(r, stats) => {
                    self.m.pid_advised(&r);
                    account(&mut self.m.current, &r, &stats)
                }
                Event::Snapshot(_, cost) => self.m.current.cost = cost,
                _ => {}
            }
        }
        self.m
    }
}
