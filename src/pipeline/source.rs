//! Snapshot sources and the one monitor loop that drives them.
//!
//! A [`SnapshotSource`] is whatever turns time into [`Snapshot`]s: madvd's own monitor core
//! over an access check ([`CoreSource`]), or the kernel's DAMON through sysfs
//! ([`KernelSource`]). A record file can be a source the same way (its frames as snapshots,
//! `ended` at its end, no targets to add). [`monitor_loop`] is the monitor thread for all of
//! them: target changes, the feedback value, pacing, one pull, the snapshot out.

use super::actuate::{Change, Feedback};
use super::ops::Check;
use super::running::{Clock, Control, Event};
use crate::signals::Stop;
use crossbeam_channel::{Receiver, Sender};
use engine::access::{AccessError, MonitorCost};
use engine::monitor::Monitor;
use engine::ops::damon::KernelDamon;
use engine::process::Process;
use engine::{Attrs, Snapshot, TargetId};
use std::sync::Arc;
use std::time::Duration;

/// What one [`SnapshotSource::pull`] gave.
#[derive(Default)]
pub struct Pull {
    /// A snapshot: aggregated, or (when asked for) mid-aggregation.
    pub snapshot: Option<Snapshot>,
    /// Targets the source found gone (dropped from it already).
    pub gone: Vec<TargetId>,
    /// The source has nothing more to give (a kdamond that stopped by itself, the end of a
    /// record): the run ends.
    pub ended: bool,
}

/// A source of snapshots, driven by [`monitor_loop`] on the stage clock.
pub trait SnapshotSource: Send {
    /// The monitoring attributes in force.
    fn attrs(&self) -> Attrs;
    /// The targets watched now.
    fn targets(&self) -> Vec<TargetId>;
    /// How long after a pull ends the next one starts, µs.
    fn interval_us(&self) -> u64;
    /// One turn at clock time `now_us`. `due`: a scheme's apply interval has come, so give a
    /// snapshot even mid-aggregation if the source can. Err: the source failed for good.
    fn pull(&mut self, now_us: u64, due: bool) -> Result<Pull, String>;
    /// The feedback value from the actuation side (age reset of advised regions, "just
    /// advised" ranges). Exited targets are dropped by the loop, not here.
    fn feedback(&mut self, _fb: &Feedback) {}
    /// Targets found gone without a pull, dropped from the source already: while monitoring
    /// is paused nothing else looks, and the kernel stops a paused kdamond whose targets
    /// are all gone too (`kdamond_need_stop()` in `kdamond_wait_activation()`, core.c
    /// 6.12.117).
    fn reap(&mut self) -> Vec<TargetId> {
        Vec::new()
    }
    /// Watch one more process (its access-check handle). Err: this source cannot.
    fn add_target(&mut self, proc: Process) -> Result<(), String>;
    /// Stop watching `id`.
    fn remove_target(&mut self, id: TargetId);
    /// New monitoring attributes while running. Err: this source cannot take them.
    fn set_attrs(&mut self, _attrs: Attrs) -> Result<(), String> {
        Err("this snapshot source cannot change its attributes while running".into())
    }
    /// Monitoring cost so far (the refault probe's page-outs, samples).
    fn cost(&self) -> MonitorCost {
        MonitorCost::default()
    }
    /// Leave: undo what the source set up (a kdamond and its sysfs directories).
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// madvd's monitor core over an access check.
pub struct CoreSource {
    pub monitor: Monitor,
    pub check: Box<Check>,
}

impl SnapshotSource for CoreSource {
    fn attrs(&self) -> Attrs {
        *self.monitor.attrs()
    }
    fn targets(&self) -> Vec<TargetId> {
        self.monitor.target_ids()
    }
    /// A full sampling interval between this step's prepare and the next step's check, as
    /// kdamond_fn sleeps `sample_interval` after preparing (mm/damon/core.c 6.12): a step that
    /// took long must not shrink the window the workload has to touch a page.
    fn interval_us(&self) -> u64 {
        self.monitor.step_interval_us()
    }
    fn pull(&mut self, now_us: u64, due: bool) -> Result<Pull, String> {
        let out = self.monitor.step(now_us, self.check.as_mut());
        for g in &out.gone {
            // Close its pidfd and pagemap now (a busy cgroup's short-lived processes).
            self.check.remove_target(*g);
        }
        let snapshot = match out.snapshot {
            Some(s) => Some(s),
            None if due && !self.monitor.target_ids().is_empty() => {
                Some(self.monitor.snapshot(now_us))
            }
            None => None,
        };
        Ok(Pull {
            snapshot,
            gone: out.gone,
            ended: false,
        })
    }
    fn feedback(&mut self, fb: &Feedback) {
        self.monitor.apply_report(&fb.report);
    }
    fn reap(&mut self) -> Vec<TargetId> {
        let gone: Vec<TargetId> = self
            .monitor
            .target_ids()
            .into_iter()
            .filter(|id| {
                matches!(
                    self.check.target_ranges(*id),
                    Err(AccessError::TargetGone(_))
                )
            })
            .collect();
        for id in &gone {
            self.remove_target(*id);
        }
        gone
    }
    fn add_target(&mut self, proc: Process) -> Result<(), String> {
        let id = self.check.add_target(proc).map_err(|e| e.to_string())?;
        self.monitor.add_target(id);
        Ok(())
    }
    fn remove_target(&mut self, id: TargetId) {
        self.monitor.remove_target(id);
        self.check.remove_target(id);
    }
    fn cost(&self) -> MonitorCost {
        self.check.cost()
    }
    fn set_attrs(&mut self, attrs: Attrs) -> Result<(), String> {
        self.monitor
            .set_attrs(attrs)
            .map_err(|e| format!("monitoring attributes: {e}"))
    }
}

/// The note `run` prints once when kernel DAMON is the source.
pub const KERNEL_FEEDBACK_NOTE: &str = "kernel DAMON: the kernel keeps its own regions, so advice does not reset their age (the feedback stays in user space)";

/// The kernel's DAMON: a started kdamond over a fixed set of targets. Each pull returns at
/// its next aggregation boundary with its regions. The feedback cannot reach the kernel's
/// regions (no age reset after advice, no "just advised" ranges). The kdamond is stopped
/// (its sysfs directories removed) by [`SnapshotSource::finish`], or by `KernelDamon`'s
/// `Drop` on a panic.
pub struct KernelSource {
    kd: Option<KernelDamon>,
    attrs: Attrs,
    targets: Vec<TargetId>,
}

impl KernelSource {
    pub fn new(kd: KernelDamon) -> Self {
        Self {
            attrs: kd.attrs(),
            targets: kd.targets().to_vec(),
            kd: Some(kd),
        }
    }
}

impl SnapshotSource for KernelSource {
    fn attrs(&self) -> Attrs {
        self.attrs
    }
    fn targets(&self) -> Vec<TargetId> {
        self.targets.clone()
    }
    /// At most two reads per aggregation interval, in case a read returns early.
    fn interval_us(&self) -> u64 {
        self.attrs.aggr_us / 2
    }
    fn pull(&mut self, _now_us: u64, _due: bool) -> Result<Pull, String> {
        let kd = self.kd.as_mut().ok_or("kernel DAMON: already stopped")?;
        match kd.next_snapshot() {
            Ok(Some(mut s)) => {
                s.targets.retain(|t| self.targets.contains(&t.target));
                Ok(Pull {
                    snapshot: Some(s),
                    ..Pull::default()
                })
            }
            // The kdamond stopped by itself: every target exited.
            Ok(None) => Ok(Pull {
                snapshot: None,
                gone: std::mem::take(&mut self.targets),
                ended: true,
            }),
            Err(e) => Err(format!("kernel DAMON: {e}")),
        }
    }
    fn add_target(&mut self, _proc: Process) -> Result<(), String> {
        Err("kernel DAMON watches a fixed set of targets: it cannot take target changes while running".into())
    }
    fn remove_target(&mut self, id: TargetId) {
        self.targets.retain(|t| *t != id);
    }
    fn finish(&mut self) -> Result<(), String> {
        match self.kd.take() {
            Some(kd) => kd.stop().map_err(|e| format!("kernel DAMON cleanup: {e}")),
            None => Ok(()),
        }
    }
}

/// While monitoring is paused, how often the monitor thread looks for exited targets, µs.
const REAP_EVERY_US: u64 = 1_000_000;

/// The monitor thread's channels.
pub struct MonitorEnds {
    /// Snapshots to the actuation thread (`None`: no actuation).
    pub snap_tx: Option<Sender<Arc<Snapshot>>>,
    /// The feedback value coming back.
    pub fb_rx: Receiver<Feedback>,
    pub ev_tx: Sender<Event>,
    /// Target changes from the front end (the agent), if it makes any.
    pub control: Option<Receiver<Control>>,
    /// Where target changes go on to: the actuation thread.
    pub act_ctl: Sender<Change>,
    /// Keep running while there is no target (they come and go); `AllGone` is never sent.
    pub keep_when_empty: bool,
}

/// The monitor thread: target changes, then the feedback, then (paced by the source's
/// interval) one pull, whose snapshot goes to the actuation thread and the caller. Leaves on
/// stop, when every target is gone, when the source ends or fails; `finish`es the source on
/// the way out.
///
/// Two kernel rules hold here (mm/damon/core.c 6.12.117, `kdamond_fn()`):
/// - the schemes never see a snapshot taken before the previous round's report was folded
///   in (the kernel applies the schemes and resets the ages in one pass): while a round is
///   out, snapshots go to the caller only, and the next one to the schemes is pulled after
///   that round's feedback;
/// - while the feedback says every scheme is inactive by its watermarks, the source is not
///   pulled (no sampling, no aging: `kdamond_wait_activation()`) until a feedback from a
///   watermark check says otherwise.
pub fn monitor_loop(mut src: Box<dyn SnapshotSource>, ends: MonitorEnds, stop: Stop, clock: Clock) {
    let ev_tx = &ends.ev_tx;
    let mut next_at = 0u64;
    // When a scheme wants a snapshot next (mid-aggregation): the last feedback says.
    let mut due = u64::MAX;
    // A snapshot is with the schemes and its feedback has not come back yet.
    let mut in_flight = false;
    // Every scheme is inactive by its watermarks: the last feedback says.
    let mut paused = false;
    // While paused: when to look for exited targets next.
    let mut next_reap = 0u64;
    loop {
        if stop.is_set() {
            break;
        }
        // Target changes (agent discovery): the actuation thread gets its handle first, so
        // it knows the target before any snapshot with it arrives.
        if let Some(rx) = &ends.control {
            while let Ok(c) = rx.try_recv() {
                match c {
                    Control::Add { check, act } => {
                        let id = check.id();
                        let _ = ends.act_ctl.send(Change::Add(*act));
                        if let Err(e) = src.add_target(*check) {
                            let _ = ends.act_ctl.send(Change::Remove(id));
                            let _ = ev_tx.send(Event::Failed(format!("pid {id}: {e}")));
                        }
                    }
                    Control::Remove(id) => {
                        src.remove_target(id);
                        let _ = ends.act_ctl.send(Change::Remove(id));
                    }
                    Control::SetAttrs { attrs, first_in_us } => {
                        if let Err(e) = src.set_attrs(attrs) {
                            let _ = ev_tx.send(Event::Failed(e));
                        }
                        next_at = clock.now_us().saturating_add(first_in_us);
                    }
                }
            }
        }
        // The feedback value, before the next pull.
        while let Ok(fb) = ends.fb_rx.try_recv() {
            src.feedback(&fb);
            in_flight &= !fb.round;
            if let Some(d) = fb.next_due_us {
                due = d;
            }
            if paused != fb.paused_until_us.is_some() {
                paused = !paused;
                tracing::info!(
                    "monitoring {}: every scheme is inactive by its watermarks",
                    if paused { "paused" } else { "resumed" }
                );
            }
            for g in &fb.report.gone {
                if src.targets().contains(g) {
                    src.remove_target(*g);
                    let _ = ev_tx.send(Event::Gone(*g));
                }
            }
        }
        if src.targets().is_empty() {
            if ends.keep_when_empty {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let _ = ev_tx.send(Event::AllGone);
            break;
        }
        if paused {
            if clock.now_us() >= next_reap {
                next_reap = clock.now_us() + REAP_EVERY_US;
                for g in src.reap() {
                    let _ = ends.act_ctl.send(Change::Remove(g));
                    let _ = ev_tx.send(Event::Gone(g));
                }
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let now = clock.now_us();
        if next_at > now {
            std::thread::sleep(Duration::from_micros((next_at - now).min(50_000)));
            continue;
        }
        let pulled = src.pull(now, now >= due);
        next_at = clock.now_us() + src.interval_us();
        let p = match pulled {
            Ok(p) => p,
            Err(e) => {
                let _ = ev_tx.send(Event::Failed(e));
                break;
            }
        };
        for g in p.gone {
            let _ = ev_tx.send(Event::Gone(g));
        }
        if let Some(s) = p.snapshot {
            let s = Arc::new(s);
            if let Some(tx) = &ends.snap_tx {
                // A round is out: this snapshot predates its report, so the schemes skip
                // it. Either way the next due time comes back with that round's feedback.
                if !in_flight && tx.try_send(s.clone()).is_ok() {
                    in_flight = true;
                }
                due = u64::MAX;
            }
            if ev_tx.send(Event::Snapshot(s, src.cost())).is_err() {
                break;
            }
        }
        if p.ended {
            let _ = ev_tx.send(Event::AllGone);
            break;
        }
    }
    if let Err(msg) = src.finish() {
        eprintln!("madvd: warning: {msg}");
        let _ = ev_tx.send(Event::Failed(msg));
    }
}
