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
//! With kernel DAMON (`--ops damon`) the monitor thread holds a [`KernelDamon`] instead of
//! the access check and [`Monitor`] ([`MonitorStage::Kernel`]): the kdamond hands back whole
//! regions each aggregation, which go to the actuation thread the same way. The feedback
//! cannot reach the kernel's regions (no age reset after advice, no "just advised" ranges);
//! reports still carry exited targets back.
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
use engine::ops::damon::KernelDamon;
use engine::process::Process;
use engine::{AccessCheck, AdviceRequest, ApplyReport, Snapshot, SysRoot, TargetId};
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

/// One scheme's figures, as printed: the schemes crate's own stats value.
pub use schemes::SchemeStats as SchemeLine;

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

/// What the monitor thread runs: madvd's own monitor core over an access check, or the
/// kernel's DAMON as a snapshot source.
pub enum MonitorStage {
    Core {
        monitor: Monitor,
        ops: Box<dyn AccessCheck + Send>,
    },
    /// A started kdamond over the targets (stopped, its sysfs directories removed, when the
    /// monitor thread leaves: explicitly, or by its `Drop` on a panic).
    Kernel(KernelDamon),
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
    let stage = MonitorStage::Core {
        monitor: st.monitor,
        ops: st.ops,
    };
    start_stage(stage, st.root, st.act, st.stop, st.clock, hooks)
}

/// Start a [`MonitorStage`] (and the actuation thread when `act` is given).
pub fn start_stage(
    stage: MonitorStage,
    root: SysRoot,
    act: Option<Actuation>,
    stop: Stop,
    clock: Clock,
    hooks: Hooks,
) -> Result<Running> {
    if matches!(stage, MonitorStage::Kernel(_)) && hooks.control.is_some() {
        anyhow::bail!("kernel DAMON watches a fixed set of targets: it cannot take target changes while running");
    }
    let (ev_tx, ev_rx) = unbounded::<Event>();
    // Target changes the monitor thread forwards to the actuation thread.
    let (act_ctl_tx, act_ctl_rx) = unbounded::<Control>();
    // One snapshot in flight: while actuation is busy, newer snapshots are not queued (the
    // schemes act on the next one after it is done, as a slow kdamond would).
    let (snap_tx, snap_rx) = bounded::<Arc<Snapshot>>(1);
    let (rep_tx, rep_rx) = unbounded::<ApplyReport>();
    let due = Arc::new(AtomicU64::new(u64::MAX));
    let stop_flag = stop;
    let has_act = act.is_some();
    let actuation = match act {
        Some(act) => {
            let (ev, stop, due, root) = (ev_tx.clone(), stop_flag.clone(), due.clone(), root);
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
    let stop = stop_flag.clone();
    let snap_tx = has_act.then_some(snap_tx);
    let monitor = std::thread::Builder::new()
        .name("madvd-monitor".into())
        .spawn(move || match stage {
            MonitorStage::Core { monitor, ops } => monitor_loop(
                monitor, ops, snap_tx, rep_rx, ev_tx, stop, clock, due, hooks, act_ctl_tx,
            ),
            MonitorStage::Kernel(kd) => kernel_loop(kd, snap_tx, rep_rx, ev_tx, stop),
        })?;
    Ok(Running {
        events: ev_rx,
        monitor: Some(monitor),
        actuation,
        stop: stop_flag,
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

/// The note `run`/`monitor` print once when kernel DAMON is the monitor stage.
pub const KERNEL_FEEDBACK_NOTE: &str = "kernel DAMON: the kernel keeps its own regions, so advice does not reset their age (the feedback stays in user space)";

/// The monitor thread over kernel DAMON: each `next_snapshot` returns at the kdamond's next
/// aggregation boundary; its snapshots go out as the core's do. Reports coming back only
/// drop exited targets. The kdamond is stopped (and its sysfs directories removed) on every
/// way out of this function: explicitly here, by `KernelDamon`'s `Drop` on a panic.
fn kernel_loop(
    mut kd: KernelDamon,
    snap_tx: Option<Sender<Arc<Snapshot>>>,
    rep_rx: Receiver<ApplyReport>,
    ev_tx: Sender<Event>,
    stop: Stop,
) {
    let aggr = Duration::from_micros(kd.attrs().aggr_us);
    let mut targets: Vec<TargetId> = kd.targets().to_vec();
    let mut last_call: Option<Instant> = None;
    loop {
        if stop.is_set() {
            break;
        }
        while let Ok(rep) = rep_rx.try_recv() {
            for g in &rep.gone {
                if targets.contains(g) {
                    targets.retain(|t| t != g);
                    let _ = ev_tx.send(Event::Gone(*g));
                }
            }
        }
        if targets.is_empty() {
            let _ = ev_tx.send(Event::AllGone);
            break;
        }
        // Pace: at most two reads per aggregation interval, in case a read returns early.
        if let Some(t) = last_call {
            let min = aggr / 2;
            if t.elapsed() < min {
                std::thread::sleep((min - t.elapsed()).min(Duration::from_millis(50)));
                continue;
            }
        }
        last_call = Some(Instant::now());
        match kd.next_snapshot() {
            Ok(Some(mut s)) => {
                s.targets.retain(|t| targets.contains(&t.target));
                let s = Arc::new(s);
                if let Some(tx) = &snap_tx {
                    let _ = tx.try_send(s.clone());
                }
                if ev_tx
                    .send(Event::Snapshot(s, MonitorCost::default()))
                    .is_err()
                {
                    break;
                }
            }
            // The kdamond stopped by itself: every target exited.
            Ok(None) => {
                for g in targets.drain(..) {
                    let _ = ev_tx.send(Event::Gone(g));
                }
                let _ = ev_tx.send(Event::AllGone);
                break;
            }
            Err(e) => {
                let _ = ev_tx.send(Event::Failed(format!("kernel DAMON: {e}")));
                break;
            }
        }
    }
    if let Err(e) = kd.stop() {
        let msg = format!("kernel DAMON cleanup: {e}");
        eprintln!("madvd: warning: {msg}");
        let _ = ev_tx.send(Event::Failed(msg));
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

#[cfg(test)]
mod tests {
    use super::*;
    use engine::kernel::damon_sysfs::fake::FakeDamonSysfs;
    use engine::kernel::damon_sysfs::TriedRegion;
    use engine::Attrs;

    fn kernel(fake: &FakeDamonSysfs, targets: &[TargetId]) -> KernelDamon {
        let attrs = Attrs {
            sample_us: 1_000,
            aggr_us: 20_000,
            ..Attrs::default()
        };
        KernelDamon::start_with(Box::new(fake.clone()), &fake.admin(), targets, attrs).unwrap()
    }

    fn recv(r: &Running) -> Event {
        r.events
            .recv_timeout(Duration::from_secs(10))
            .expect("an event within 10 s")
    }

    /// The kernel stage sends the kdamond's regions as snapshots, ends with `AllGone` when
    /// the kdamond stops by itself, and removes its sysfs directories on the way out.
    #[test]
    fn kernel_stage_sends_the_kernels_regions_then_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        fake.set_regions(
            0,
            vec![TriedRegion {
                start: 0x10_000,
                end: 0x20_000,
                nr_accesses: 5,
                age: 3,
            }],
        );
        let kd = kernel(&fake, &[TargetId(4242)]);
        assert_ne!(
            fake.files(),
            before,
            "the kdamond's directories exist while it runs"
        );
        let r = start_stage(
            MonitorStage::Kernel(kd),
            SysRoot::host(),
            None,
            Stop::new(),
            Clock::start(),
            Hooks::default(),
        )
        .unwrap();
        let Event::Snapshot(s, _) = recv(&r) else {
            panic!("first event is not a snapshot")
        };
        assert!(s.aggregated);
        assert_eq!(s.targets.len(), 1);
        assert_eq!(s.targets[0].target, TargetId(4242));
        let reg = &s.targets[0].regions[0];
        assert_eq!(
            (reg.start(), reg.end(), reg.nr_accesses, reg.age),
            (0x10_000, 0x20_000, 5, 3)
        );
        fake.kdamond_exits().unwrap();
        let mut all_gone = false;
        while let Ok(ev) = r.events.recv_timeout(Duration::from_secs(10)) {
            if matches!(ev, Event::AllGone) {
                all_gone = true;
                break;
            }
        }
        assert!(all_gone, "a stopped kdamond ends the run with AllGone");
        r.stop_and_join();
        assert_eq!(
            fake.files(),
            before,
            "the kdamond's directories are removed"
        );
    }

    /// Stopping the stages (signal, `--for`) stops the kdamond and removes its directories.
    #[test]
    fn stopping_the_kernel_stage_stops_the_kdamond() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        let kd = kernel(&fake, &[TargetId(1), TargetId(2)]);
        let r = start_stage(
            MonitorStage::Kernel(kd),
            SysRoot::host(),
            None,
            Stop::new(),
            Clock::start(),
            Hooks::default(),
        )
        .unwrap();
        assert!(matches!(recv(&r), Event::Snapshot(..)));
        r.stop_and_join();
        assert_eq!(fake.files(), before);
    }

    /// The agent's target changes cannot reach a kdamond: refused up front (and the
    /// kdamond, dropped with the stage, is cleaned up).
    #[test]
    fn kernel_stage_refuses_target_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        let (_tx, rx) = unbounded::<Control>();
        let e = start_stage(
            MonitorStage::Kernel(kernel(&fake, &[TargetId(1)])),
            SysRoot::host(),
            None,
            Stop::new(),
            Clock::start(),
            Hooks {
                control: Some(rx),
                keep_when_empty: true,
            },
        )
        .err()
        .expect("refused");
        assert!(e.to_string().contains("fixed set of targets"), "{e}");
        assert_eq!(fake.files(), before);
    }
}
