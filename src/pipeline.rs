//! The stage loop on live targets: ops → monitor → schemes → actuator, with the apply report
//! going back to the schemes (quota charging, stats) and to the monitor (age reset, and the
//! probe is told which ranges were just advised).
//!
//! Two threads, joined by crossbeam channels:
//! - the **monitor thread** owns the access check and the [`Monitor`]; it steps on the wall
//!   clock, sends each aggregated snapshot (and, when a scheme's apply interval is shorter
//!   than the aggregation, mid-aggregation snapshots) to the actuation thread, and applies the
//!   reports that come back before its next step;
//! - the **actuation thread** owns the [`Planner`] (the schemes) and the actuator, with its
//!   own pidfd per target; for each snapshot it plans, applies, accounts, and sends the report
//!   back.
//!
//! The caller's thread receives [`Event`]s (snapshots, reports, dropped targets) for display
//! and recording. Stopping: the caller sets the [`Stop`] flag (signal, `--for`, all targets
//! gone); the actuator checks it between `process_madvise` calls (the rest of the round is
//! reported `Cancelled`, nothing is half applied), both threads leave at their next loop top.

use crate::signals::Stop;
use anyhow::Result;
use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Sender};
use engine::access::MonitorCost;
use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
use engine::monitor::Monitor;
use engine::process::Process;
use engine::{AccessCheck, AdviceRequest, ApplyReport, Snapshot, SysRoot, TargetId};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The schemes, as the actuation thread sees them (implemented over `schemes::Schemes` in
/// `policy.rs`; tests use simple planners).
pub trait Planner: Send {
    /// Advice for this snapshot.
    fn plan(&mut self, snap: &Snapshot, now_us: u64) -> Vec<AdviceRequest>;
    /// The apply report of that advice (quota charging, stats).
    fn account(&mut self, report: &ApplyReport, now_us: u64);
    /// Per-scheme stats for output.
    fn stats(&self) -> Vec<SchemeLine>;
    /// When a scheme wants a snapshot next (mid-aggregation for short apply intervals), µs.
    fn next_due_us(&self) -> Option<u64> {
        None
    }
}

/// One scheme's figures, as printed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SchemeLine {
    pub name: String,
    pub action: String,
    pub nr_tried: u64,
    pub sz_tried: u64,
    pub nr_applied: u64,
    pub sz_applied: u64,
    pub qt_exceeds: u64,
    pub active: bool,
    /// Why the scheme is inactive (watermarks, ...), if it is.
    pub inactive_reason: Option<String>,
}

/// What the stages tell the caller.
pub enum Event {
    /// A snapshot (aggregated or mid-aggregation) and the access check's cost so far.
    Snapshot(Arc<Snapshot>, MonitorCost),
    /// One actuation round: the report, then the schemes' stats after accounting it.
    Applied(ApplyReport, Vec<SchemeLine>),
    /// A target exited and was dropped.
    Gone(TargetId),
    /// Every target is gone: the run ends.
    AllGone,
    /// A stage failed (the message names the pid or path).
    Failed(String),
}

/// The µs clock the stages share.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Clock(Instant::now())
    }
    pub fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

pub struct Running {
    pub events: Receiver<Event>,
    monitor: Option<JoinHandle<()>>,
    actuation: Option<JoinHandle<()>>,
    stop: Stop,
}

impl Running {
    /// Stop both stages (at a batch boundary) and wait for them.
    pub fn stop_and_join(mut self) {
        self.stop.set();
        self.join_inner();
    }

    fn join_inner(&mut self) {
        if let Some(h) = self.monitor.take() {
            let _ = h.join();
        }
        if let Some(h) = self.actuation.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.set();
        self.join_inner();
    }
}

/// What to run.
pub struct Stages {
    pub root: SysRoot,
    pub monitor: Monitor,
    pub ops: Box<dyn AccessCheck + Send>,
    /// Schemes and actuation: `None` for `monitor`/`record` (no actuation thread).
    pub act: Option<Actuation>,
    pub stop: Stop,
    pub clock: Clock,
}

/// The actuation side: schemes, a second handle on each target (its own pidfd), dry-run.
pub struct Actuation {
    pub planner: Box<dyn Planner>,
    pub procs: Vec<Process>,
    pub dry_run: bool,
    pub config: ActuatorConfig,
}

/// A change to the target set of running stages (used by `madvd agent`'s discovery; `run`,
/// `monitor` and `record` start with a fixed set and pass no hooks).
pub enum Control {
    /// Watch `id`. The access check must already know the target (the agent's check takes
    /// its handle through an inbox it drains before each call); `act` is the actuation
    /// thread's own handle on the same process (its own pidfd).
    Add { id: TargetId, act: Process },
    /// Stop watching `id` (it left its cgroup, or no longer matches its selector).
    Remove(TargetId),
}

/// Optional hooks for long-running front ends (the agent).
#[derive(Default)]
pub struct Hooks {
    /// Targets added and removed while running, applied by the monitor thread before each
    /// step (and forwarded to the actuation thread before the next snapshot reaches it).
    pub control: Option<Receiver<Control>>,
    /// Keep running while there is no target (they come and go); `AllGone` is never sent.
    pub keep_when_empty: bool,
}

/// Start the stages.
pub fn start(st: Stages) -> Result<Running> {
    start_with(st, Hooks::default())
}

/// Start the stages with [`Hooks`].
pub fn start_with(st: Stages, hooks: Hooks) -> Result<Running> {
    let (ev_tx, ev_rx) = unbounded::<Event>();
    // Target changes the monitor thread forwards to the actuation thread.
    let (act_ctl_tx, act_ctl_rx) = unbounded::<Control>();
    // One snapshot in flight: while actuation is busy, newer snapshots are not queued (the
    // schemes act on the next one after it is done, as a slow kdamond would).
    let (snap_tx, snap_rx) = bounded::<Arc<Snapshot>>(1);
    let (rep_tx, rep_rx) = unbounded::<ApplyReport>();
    let due = Arc::new(AtomicU64::new(u64::MAX));
    let has_act = st.act.is_some();
    let actuation = match st.act {
        Some(act) => {
            let (ev, stop, clock, due, root) = (
                ev_tx.clone(),
                st.stop.clone(),
                st.clock,
                due.clone(),
                st.root.clone(),
            );
            Some(
                std::thread::Builder::new()
                    .name("madvd-actuate".into())
                    .spawn(move || {
                        actuation_loop(act, root, snap_rx, rep_tx, ev, stop, clock, due, act_ctl_rx)
                    })?,
            )
        }
        None => None,
    };
    let (stop, clock) = (st.stop.clone(), st.clock);
    let (mon, ops) = (st.monitor, st.ops);
    let monitor = std::thread::Builder::new()
        .name("madvd-monitor".into())
        .spawn(move || {
            monitor_loop(
                mon,
                ops,
                has_act.then_some(snap_tx),
                rep_rx,
                ev_tx,
                stop,
                clock,
                due,
                hooks,
                act_ctl_tx,
            )
        })?;
    Ok(Running {
        events: ev_rx,
        monitor: Some(monitor),
        actuation,
        stop: st.stop,
    })
}

#[allow(clippy::too_many_arguments)]
fn monitor_loop(
    mut mon: Monitor,
    mut ops: Box<dyn AccessCheck + Send>,
    snap_tx: Option<Sender<Arc<Snapshot>>>,
    rep_rx: Receiver<ApplyReport>,
    ev_tx: Sender<Event>,
    stop: Stop,
    clock: Clock,
    due: Arc<AtomicU64>,
    hooks: Hooks,
    act_ctl: Sender<Control>,
) {
    let mut next_at = 0u64;
    loop {
        if stop.is_set() {
            return;
        }
        // Target changes (agent discovery): the actuation thread gets its handle first, so
        // it knows the target before any snapshot with it arrives.
        if let Some(rx) = &hooks.control {
            while let Ok(c) = rx.try_recv() {
                match c {
                    Control::Add { id, act } => {
                        let _ = act_ctl.send(Control::Add { id, act });
                        mon.add_target(id);
                    }
                    Control::Remove(id) => {
                        mon.remove_target(id);
                        let _ = act_ctl.send(Control::Remove(id));
                    }
                }
            }
        }
        // The feedback value, before the next step: age reset + "just advised" ranges.
        while let Ok(rep) = rep_rx.try_recv() {
            mon.apply_report(&rep);
            for g in &rep.gone {
                mon.remove_target(*g);
                let _ = ev_tx.send(Event::Gone(*g));
            }
        }
        if mon.target_ids().is_empty() {
            if hooks.keep_when_empty {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let _ = ev_tx.send(Event::AllGone);
            return;
        }
        let now = clock.now_us();
        if next_at > now {
            std::thread::sleep(Duration::from_micros((next_at - now).min(50_000)));
            continue;
        }
        let out = mon.step(clock.now_us(), ops.as_mut());
        // A full sampling interval between this step's prepare and the next step's check,
        // as kdamond_fn sleeps `sample_interval` after preparing (mm/damon/core.c 6.12): a
        // step that took long must not shrink the window the workload has to touch a page.
        next_at = clock.now_us() + mon.step_interval_us();
        for g in out.gone {
            let _ = ev_tx.send(Event::Gone(g));
        }
        let snap = match out.snapshot {
            Some(s) => Some(s),
            // A scheme's apply interval is due mid-aggregation.
            None if clock.now_us() >= due.load(Ordering::Relaxed)
                && !mon.target_ids().is_empty() =>
            {
                due.store(u64::MAX, Ordering::Relaxed);
                Some(mon.snapshot(clock.now_us()))
            }
            None => None,
        };
        if let Some(s) = snap {
            let s = Arc::new(s);
            if let Some(tx) = &snap_tx {
                // Full: actuation is still busy with the previous one; this one is skipped.
                let _ = tx.try_send(s.clone());
            }
            if ev_tx.send(Event::Snapshot(s, ops.cost())).is_err() {
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn actuation_loop(
    mut act: Actuation,
    root: SysRoot,
    snap_rx: Receiver<Arc<Snapshot>>,
    rep_tx: Sender<ApplyReport>,
    ev_tx: Sender<Event>,
    stop: Stop,
    clock: Clock,
    due: Arc<AtomicU64>,
    ctl: Receiver<Control>,
) {
    let mut actuator = Actuator::new(root.clone(), act.config.clone());
    let cancel = stop.flag();
    loop {
        if stop.is_set() {
            return;
        }
        let snap = match snap_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(s) => s,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while let Ok(c) = ctl.try_recv() {
            match c {
                Control::Add { id, act: p } => {
                    act.procs.retain(|q| q.id() != id);
                    act.procs.push(p);
                }
                Control::Remove(id) => act.procs.retain(|q| q.id() != id),
            }
        }
        let now = clock.now_us();
        let reqs = act.planner.plan(&snap, now);
        if let Some(d) = act.planner.next_due_us() {
            due.store(d, Ordering::Relaxed);
        }
        // Each target's VMAs now (the actuator cuts advice at VMA boundaries).
        let mut vmas = Vec::with_capacity(act.procs.len());
        let mut gone = Vec::new();
        for p in &act.procs {
            match p.maps() {
                Ok(v) => vmas.push(v.into_iter().map(|v| v.range).collect::<Vec<_>>()),
                Err(e) if e.is_gone() => {
                    gone.push(p.id());
                    vmas.push(Vec::new());
                }
                Err(e) => {
                    let _ = ev_tx.send(Event::Failed(e.to_string()));
                    vmas.push(Vec::new());
                }
            }
        }
        let targets: Vec<Target<'_>> = act
            .procs
            .iter()
            .zip(vmas)
            .filter(|(p, _)| !gone.contains(&p.id()))
            .map(|(p, v)| Target::new(&root, p.pidfd(), v))
            .collect();
        let mut report = actuator.apply(
            &targets,
            &reqs,
            ApplyOpts {
                dry_run: act.dry_run,
                cancel: Some(&cancel),
            },
        );
        drop(targets);
        for g in gone {
            if !report.gone.contains(&g) {
                report.gone.push(g);
            }
        }
        act.procs.retain(|p| !report.gone.contains(&p.id()));
        act.planner.account(&report, clock.now_us());
        let stats = act.planner.stats();
        if rep_tx.send(report.clone()).is_err() {
            return;
        }
        if ev_tx.send(Event::Applied(report, stats)).is_err() {
            return;
        }
    }
}
