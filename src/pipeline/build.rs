//! Flags and policy → one [`StageConfig`] → [`build`] → [`Stages`] → [`Stages::start`]:
//! the one way `run`, `monitor`, `record`, `demo` and the agent get their stages
//! (ripgrep's "flags → one config value → build").

use super::actuate::{Actuation, ActuationEnds, Change, Feedback, Planner, SchemesPlanner};
use super::ops::{build_ops, Watched, SIM_TARGET};
use super::running::{Clock, Control, Event, Running};
use super::source::{monitor_loop, CoreSource, KernelSource, MonitorEnds, SnapshotSource};
use crate::cli::AttrFlags;
use crate::exit::{err, Code};
use crate::signals::Stop;
use anyhow::Result;
use crossbeam_channel::{bounded, unbounded};
use engine::actuator::ActuatorConfig;
use engine::monitor::{AgeRule, Monitor};
use engine::ops::damon::KernelDamon;
use engine::ops::OpsKind;
use engine::process::Process;
use engine::{
    Attrs, AttrsError, AttrsOverride, IntervalsGoalOverride, Snapshot, SysRoot, TargetId,
};
use schemes::Policy;
use std::sync::Arc;

/// Everything the stages are built from, settled once.
pub struct StageConfig {
    pub root: SysRoot,
    /// The access primitive, `auto` already resolved (`targets::choose`).
    pub ops: OpsKind,
    /// What the monitor watches: its own handle on each process, or the simulator.
    pub watch: Watched,
    /// Laid over the primitive's default attributes: the CLI flags over the policy's
    /// `monitor` section.
    pub attrs: AttrsOverride,
    /// The policy and how to apply it; `None`: no actuation (monitor, record).
    pub schemes: Option<SchemesConfig>,
    /// Targets come and go while running (the agent): the stages take
    /// [`Running::add_target`] / [`Running::remove_target`] and keep running with none.
    pub live: bool,
    /// The monitor's random seed (sample addresses, region splits).
    pub seed: u64,
}

/// The actuation side of a [`StageConfig`].
pub struct SchemesConfig {
    pub policy: Policy,
    /// The actuation thread's own handle on each target (its own pidfd;
    /// `targets::reopen_all`).
    pub procs: Vec<Process>,
    pub dry_run: bool,
}

impl StageConfig {
    /// Where flags and policy meet, once: `flags` over the `monitor` section of the policy
    /// in `schemes` (if any). `seed` is the process id; `live` is off.
    pub fn new(
        root: &SysRoot,
        ops: OpsKind,
        watch: Watched,
        flags: &AttrFlags,
        schemes: Option<SchemesConfig>,
    ) -> Self {
        let policy = schemes
            .as_ref()
            .map(|s| policy_attrs(&s.policy))
            .unwrap_or_default();
        StageConfig {
            root: root.clone(),
            ops,
            watch,
            attrs: flag_attrs(flags).over(policy),
            schemes,
            live: false,
            seed: std::process::id() as u64,
        }
    }
}

/// The `--sample/--aggr/--update/--min-regions/--max-regions` and `--tune-*` flags as an
/// override (any `--tune-*` flag turns interval tuning on).
fn flag_attrs(f: &AttrFlags) -> AttrsOverride {
    let us = |d: Option<std::time::Duration>| d.map(|d| d.as_micros() as u64);
    let goal = IntervalsGoalOverride {
        access_bp: f.tune_access,
        aggrs: f.tune_aggrs,
        min_sample_us: us(f.tune_min_sample),
        max_sample_us: us(f.tune_max_sample),
    };
    AttrsOverride {
        sample_us: us(f.sample),
        aggr_us: us(f.aggr),
        ops_update_us: us(f.update),
        min_nr_regions: f.min_regions,
        max_nr_regions: f.max_regions,
        intervals_goal: (goal != IntervalsGoalOverride::default()).then_some(goal),
    }
}

/// A policy's `monitor` section as an override.
fn policy_attrs(p: &Policy) -> AttrsOverride {
    p.monitor
        .as_ref()
        .map(|m| AttrsOverride {
            sample_us: m.sample_us,
            aggr_us: m.aggr_us,
            ops_update_us: m.update_us,
            min_nr_regions: m.min_regions,
            max_nr_regions: m.max_regions,
            intervals_goal: m.intervals_goal,
        })
        .unwrap_or_default()
}

fn attrs_error(e: AttrsError) -> anyhow::Error {
    err(Code::Usage, format!("monitoring attributes: {e}"))
}

/// The actuator's settings for a run over `ops`: [`ActuatorConfig::from_env`], and the idle
/// cut where page_idle is the access check (`engine::actuator::idle`: its bitmap answers for
/// every page of an advised range, not only the samples), unless `MADVD_IDLE_CUT=0` (for
/// A/B benches).
fn actuator_config(ops: OpsKind) -> ActuatorConfig {
    let base = ActuatorConfig::from_env();
    let off = std::env::var("MADVD_IDLE_CUT").is_ok_and(|v| v == "0");
    ActuatorConfig {
        idle_cut: ops == OpsKind::PageIdle && base.resident_cut && !off,
        ..base
    }
}

/// Stages built, not started (building can fail; starting only spawns threads).
pub struct Stages {
    /// Where snapshots come from (`record --sim` drives it itself, on simulated time).
    pub source: Box<dyn SnapshotSource>,
    act: Option<Actuation>,
    root: SysRoot,
    live: bool,
    kernel: bool,
}

/// Build the stages `cfg` describes: the schemes (if any), then the snapshot source — the
/// monitor core over the access check, or a started kdamond — with the attributes settled
/// on the primitive's defaults.
pub fn build(cfg: StageConfig) -> Result<Stages> {
    let kernel = cfg.ops == OpsKind::Damon;
    if cfg.live && kernel {
        return Err(err(
            Code::Failure,
            "kernel DAMON watches a fixed set of targets: it cannot take target changes while running",
        ));
    }
    let act = match cfg.schemes {
        Some(s) => Some(Actuation {
            planner: Box::new(
                SchemesPlanner::new(&s.policy, &cfg.root)
                    .map_err(|e| err(Code::Failure, e.to_string()))?,
            ) as Box<dyn Planner>,
            procs: s.procs,
            dry_run: s.dry_run,
            config: actuator_config(cfg.ops),
        }),
        None => None,
    };
    let ids: Vec<TargetId> = match &cfg.watch {
        Watched::Procs(procs) => procs.iter().map(|p| p.id()).collect(),
        Watched::Sim(_) => vec![SIM_TARGET],
    };
    let source: Box<dyn SnapshotSource> = if kernel {
        if cfg.attrs.intervals_goal.is_some() {
            return Err(err(
                Code::Usage,
                "interval auto-tuning (--tune-*, intervals_goal) needs madvd's monitor: the kernel DAMON driver writes 6.12's sysfs, which has no intervals_goal",
            ));
        }
        // The kdamond's defaults are DAMON's.
        let attrs = cfg.attrs.apply(Attrs::default());
        attrs.validate().map_err(attrs_error)?;
        let kd = KernelDamon::start(&cfg.root, &ids, attrs)
            .map_err(|e| err(Code::Failure, format!("kernel DAMON: {e}")))?;
        // The pidfds were held until the kdamond took the pids, so they name our targets.
        drop(cfg.watch);
        Box::new(KernelSource::new(kd))
    } else {
        let check = build_ops(cfg.ops, &cfg.root, cfg.watch)?;
        let mut monitor =
            Monitor::new(cfg.attrs.apply(check.default_attrs()), cfg.seed).map_err(attrs_error)?;
        // madvd's age rule: a zero-access region's age is how long it has had none
        // (mainline's; 6.12 kept the age of a region flickering between a few accesses and
        // none, and a `0..0` pattern paged out regions with scattered hot pages), and an
        // accessed region's is how long its level held beyond the noise of its count
        // (`AgeRule::ZeroRun`; docs/architecture.md "Age").
        monitor.set_age_rule(AgeRule::ZeroRun);
        monitor
            .set_intervals_goal(cfg.attrs.goal())
            .map_err(attrs_error)?;
        for id in ids {
            monitor.add_target(id);
        }
        Box::new(CoreSource { monitor, check })
    };
    Ok(Stages {
        source,
        act,
        root: cfg.root,
        live: cfg.live,
        kernel,
    })
}

impl Stages {
    /// A source alone, no actuation (a record replayed would start this way; tests do).
    #[cfg(test)]
    pub fn from_source(source: Box<dyn SnapshotSource>, root: SysRoot) -> Self {
        Stages {
            source,
            act: None,
            root,
            live: false,
            kernel: false,
        }
    }

    /// These stages with `act` as their actuation side (tests: a scripted planner).
    #[cfg(test)]
    pub fn with_actuation(mut self, act: Actuation) -> Self {
        self.act = Some(act);
        self
    }

    /// The monitoring attributes in force.
    pub fn attrs(&self) -> Attrs {
        self.source.attrs()
    }

    /// What the user should know about the feedback (kernel DAMON: it cannot reach the
    /// kernel's regions).
    pub fn note(&self) -> Option<&'static str> {
        self.kernel.then_some(super::source::KERNEL_FEEDBACK_NOTE)
    }

    /// Spawn the monitor thread (and the actuation thread when there are schemes).
    pub fn start(self) -> Result<Running> {
        let stop = Stop::new();
        let clock = Clock::start();
        let (ev_tx, ev_rx) = unbounded::<Event>();
        let (change_tx, change_rx) = unbounded::<Change>();
        // One snapshot in flight: while actuation is busy, newer snapshots are not sent
        // (the schemes act on one pulled after its feedback is folded in; `monitor_loop`).
        let (snap_tx, snap_rx) = bounded::<Arc<Snapshot>>(1);
        let (fb_tx, fb_rx) = unbounded::<Feedback>();
        let has_act = self.act.is_some();
        let actuation = match self.act {
            Some(act) => {
                let ends = ActuationEnds {
                    snap_rx,
                    fb_tx,
                    ev_tx: ev_tx.clone(),
                    changes: change_rx,
                };
                let (root, stop) = (self.root, stop.clone());
                Some(
                    std::thread::Builder::new()
                        .name("madvd-actuate".into())
                        .spawn(move || {
                            super::actuate::actuation_loop(act, root, ends, stop, clock)
                        })?,
                )
            }
            None => None,
        };
        let (control_tx, control_rx) = unbounded::<Control>();
        let ends = MonitorEnds {
            snap_tx: has_act.then_some(snap_tx),
            fb_rx,
            ev_tx,
            control: self.live.then_some(control_rx),
            act_ctl: change_tx,
            keep_when_empty: self.live,
        };
        let (source, mstop) = (self.source, stop.clone());
        let monitor = std::thread::Builder::new()
            .name("madvd-monitor".into())
            .spawn(move || monitor_loop(source, ends, mstop, clock))?;
        Ok(Running {
            events: ev_rx,
            monitor: Some(monitor),
            actuation,
            stop,
            control: self.live.then_some(control_tx),
        })
    }
}
