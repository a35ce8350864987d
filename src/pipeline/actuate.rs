//! The actuation thread: the schemes ([`Planner`]) and the actuator, with their own pidfd per
//! target. For each snapshot it plans, applies, accounts, and sends back the one feedback
//! value ([`Feedback`]: the apply report, and when a scheme wants its next snapshot).

use super::running::{Clock, Event};
use crate::signals::Stop;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
use engine::process::Process;
use engine::{AdviceRequest, ApplyReport, Snapshot, SysRoot, TargetId};
use schemes::{Schemes, SysMetrics};
use std::sync::Arc;
use std::time::Duration;

/// The schemes, as the actuation thread sees them ([`SchemesPlanner`] over
/// `schemes::Schemes`; tests use simple planners).
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
    /// While every scheme is held inactive by its watermarks: when to check them next (µs
    /// on the stage clock). Monitoring pauses until then (`kdamond_wait_activation()`).
    fn paused_until_us(&self) -> Option<u64> {
        None
    }
    /// Check the watermarks due at `now_us` while paused (no snapshot).
    fn check_watermarks(&mut self, _now_us: u64) {}
    /// The page-out pace for this round, bytes/s (`ApplyOpts::pace_bytes_per_s`).
    fn pace_bytes_per_s(&self) -> Option<u64> {
        None
    }
    /// The page-out time pace for this round, ns per s (`ApplyOpts::pace_time_ns_per_s`).
    fn pace_time_ns_per_s(&self) -> Option<u64> {
        None
    }
    /// More advice on the same snapshot after `account` (the refunds' refill); empty: done.
    fn plan_refill(&mut self, _snap: &Snapshot, _now_us: u64) -> Vec<AdviceRequest> {
        Vec::new()
    }
}

/// One scheme's figures, as printed: the schemes crate's own stats value.
pub use schemes::SchemeStats as SchemeLine;

/// A policy's schemes, reading system metrics (watermarks, goals) under a root.
pub struct SchemesPlanner(pub Schemes);

impl SchemesPlanner {
    /// The schemes of `policy`; Err names what the policy's sources lack here, or a scheme
    /// these stages cannot run (page-level filters: `Policy::check_runnable`).
    pub fn new(policy: &schemes::Policy, root: &SysRoot) -> Result<Self, schemes::SchemesError> {
        policy.check_runnable()?;
        policy.check_space(false)?; // reclaim_cgroup runs only over physical memory
        Schemes::new(policy, Box::new(SysMetrics::new(root.clone()))).map(SchemesPlanner)
    }
}

impl Planner for SchemesPlanner {
    fn plan(&mut self, snap: &Snapshot, now_us: u64) -> Vec<AdviceRequest> {
        self.0.plan(snap, now_us)
    }
    fn account(&mut self, report: &ApplyReport, now_us: u64) {
        self.0.account(report, now_us)
    }
    fn stats(&self) -> Vec<SchemeLine> {
        self.0.stats()
    }
    fn next_due_us(&self) -> Option<u64> {
        self.0.next_apply_due_us()
    }
    fn paused_until_us(&self) -> Option<u64> {
        self.0.paused_until_us()
    }
    fn check_watermarks(&mut self, now_us: u64) {
        self.0.check_watermarks(now_us)
    }
    fn pace_bytes_per_s(&self) -> Option<u64> {
        self.0.pace_bytes_per_s()
    }
    fn pace_time_ns_per_s(&self) -> Option<u64> {
        self.0.pace_time_ns_per_s()
    }
    fn plan_refill(&mut self, snap: &Snapshot, now_us: u64) -> Vec<AdviceRequest> {
        self.0.plan_refill(snap, now_us)
    }
}

/// The one value going back from the actuation side to the monitor: the apply report (age
/// reset, "just advised" ranges, exited targets), when a scheme wants its next snapshot, and
/// whether monitoring pauses.
#[derive(Clone, Debug, Default)]
pub struct Feedback {
    pub report: ApplyReport,
    /// A scheme's next apply time (µs on the stage clock), when it falls mid-aggregation.
    pub next_due_us: Option<u64>,
    /// Every scheme is held inactive by its watermarks: monitoring pauses (no sampling, no
    /// aging) until a later feedback says otherwise; the watermarks are next checked then.
    pub paused_until_us: Option<u64>,
    /// The answer to a snapshot (a round): the monitor may send the next one only after
    /// folding this in. False for a watermark check made while paused.
    pub round: bool,
}

/// The actuation side: schemes, a second handle on each target (its own pidfd), dry-run.
pub struct Actuation {
    pub planner: Box<dyn Planner>,
    pub procs: Vec<Process>,
    pub dry_run: bool,
    pub config: ActuatorConfig,
}

/// A target change the monitor thread forwards to the actuation thread.
pub enum Change {
    /// The actuation thread's own handle on a new target.
    Add(Process),
    Remove(TargetId),
}

/// The actuation thread's channels.
pub struct ActuationEnds {
    pub snap_rx: Receiver<Arc<Snapshot>>,
    pub fb_tx: Sender<Feedback>,
    pub ev_tx: Sender<Event>,
    pub changes: Receiver<Change>,
}

/// How long the actuation thread waits for a snapshot before looking at the stop flag.
const POLL: Duration = Duration::from_millis(50);

pub fn actuation_loop(
    mut act: Actuation,
    root: SysRoot,
    ends: ActuationEnds,
    stop: Stop,
    clock: Clock,
) {
    let mut actuator = Actuator::new(root.clone(), act.config.clone());
    let cancel = stop.flag();
    // While paused (every scheme inactive by its watermarks): the next watermark check.
    let mut paused: Option<u64> = None;
    loop {
        if stop.is_set() {
            return;
        }
        let now = clock.now_us();
        let wait = match paused {
            Some(at) => Duration::from_micros(at.saturating_sub(now)).min(POLL),
            None => POLL,
        };
        let snap = match ends.snap_rx.recv_timeout(wait) {
            Ok(s) => s,
            Err(RecvTimeoutError::Timeout) => {
                // kdamond_wait_activation(): recheck the watermarks at their interval.
                if paused.is_some_and(|at| clock.now_us() >= at) {
                    act.planner.check_watermarks(clock.now_us());
                    paused = act.planner.paused_until_us();
                    let fb = Feedback {
                        next_due_us: act.planner.next_due_us(),
                        paused_until_us: paused,
                        ..Feedback::default()
                    };
                    if ends.fb_tx.send(fb).is_err() {
                        return;
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while let Ok(c) = ends.changes.try_recv() {
            match c {
                Change::Add(p) => {
                    act.procs.retain(|q| q.id() != p.id());
                    act.procs.push(p);
                }
                Change::Remove(id) => act.procs.retain(|q| q.id() != id),
            }
        }
        let diag = super::diag::enabled();
        if diag {
            super::diag::snapshot(&snap, clock.now_us());
        }
        let round_start = std::time::Instant::now();
        let now = clock.now_us();
        let reqs = act.planner.plan(&snap, now);
        if diag {
            super::diag::plan(&reqs, clock.now_us());
        }
        let mut report = apply_round(&mut act, &mut actuator, &root, &ends, &cancel, &reqs);
        act.planner.account(&report, clock.now_us());
        // The refunds of this round go to more of the same snapshot (schemes'
        // `runtime/refill.rs`), a bounded number of times, and not past the pace's round
        // (`pace::PACE_ROUND_NS`): a round never holds its feedback much longer than that.
        for _ in 0..schemes::MAX_REFILLS {
            let round_ns = round_start.elapsed().as_nanos();
            if round_ns >= engine::actuator::pace::PACE_ROUND_NS as u128 {
                break;
            }
            let more = act.planner.plan_refill(&snap, now);
            if more.is_empty() {
                break;
            }
            if diag {
                super::diag::plan(&more, clock.now_us());
            }
            let r = apply_round(&mut act, &mut actuator, &root, &ends, &cancel, &more);
            act.planner.account(&r, clock.now_us());
            report.outcomes.extend(r.outcomes);
            for g in r.gone {
                if !report.gone.contains(&g) {
                    report.gone.push(g);
                }
            }
        }
        let stats = act.planner.stats();
        if diag && !report.outcomes.is_empty() {
            let esz: Vec<u64> = stats.iter().map(|s| s.effective_quota).collect();
            super::diag::report(&report, &esz, clock.now_us());
            super::diag::round(round_start.elapsed(), &actuator.stats(), clock.now_us());
        }
        paused = act.planner.paused_until_us();
        let fb = Feedback {
            report: report.clone(),
            next_due_us: act.planner.next_due_us(),
            paused_until_us: paused,
            round: true,
        };
        if ends.fb_tx.send(fb).is_err() {
            return;
        }
        if ends.ev_tx.send(Event::Applied(report, stats)).is_err() {
            return;
        }
    }
}

/// Apply `reqs` to the targets they name: each advised target's VMAs read now (the actuator
/// cuts advice at VMA boundaries; a target without advice is not read: its maps can be
/// 100 000 lines), targets found gone added to the report and dropped.
fn apply_round(
    act: &mut Actuation,
    actuator: &mut Actuator,
    root: &SysRoot,
    ends: &ActuationEnds,
    cancel: &std::sync::atomic::AtomicBool,
    reqs: &[AdviceRequest],
) -> ApplyReport {
    let advised: std::collections::BTreeSet<_> = reqs.iter().map(|r| r.target).collect();
    let mut vmas = Vec::with_capacity(act.procs.len());
    let mut gone = Vec::new();
    for p in &act.procs {
        if !advised.contains(&p.id()) {
            vmas.push(Vec::new());
            continue;
        }
        match p.vma_ranges() {
            Ok(v) => vmas.push(v),
            Err(e) if e.is_gone() => {
                gone.push(p.id());
                vmas.push(Vec::new());
            }
            Err(e) => {
                let _ = ends.ev_tx.send(Event::Failed(e.to_string()));
                vmas.push(Vec::new());
            }
        }
    }
    let targets: Vec<Target<'_>> = act
        .procs
        .iter()
        .zip(vmas)
        .filter(|(p, _)| !gone.contains(&p.id()))
        .map(|(p, v)| Target::new(root, p.pidfd(), v))
        .collect();
    let mut report = actuator.apply(
        &targets,
        reqs,
        ApplyOpts {
            dry_run: act.dry_run,
            cancel: Some(cancel),
            pace_bytes_per_s: act.planner.pace_bytes_per_s(),
            pace_time_ns_per_s: act.planner.pace_time_ns_per_s(),
        },
    );
    drop(targets);
    for g in gone {
        if !report.gone.contains(&g) {
            report.gone.push(g);
        }
    }
    act.procs.retain(|p| !report.gone.contains(&p.id()));
    report
}
