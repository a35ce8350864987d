//! What-if replay of a policy against a record (`madvd replay`): the record's frames as a
//! snapshot source ([`source::RecordSource`]), the policy's schemes through the same
//! [`Planner`] as `madvd run` (`SchemesPlanner` over `schemes::Schemes`: apply intervals,
//! quotas and their charge windows, prioritization, the refault guard), and madvd's own
//! actuator over a simulated system ([`whatif::ReplaySys`]: the residency cut and the pace
//! as in `run`, on a virtual clock and the replay's residency model) whose report flows back
//! as in `run` (quota charging by size and time, refunds of what was not resident or paced,
//! the age reset of advised regions). Time is the record's: each frame's `t_us` is the
//! clock the schemes see, so quota windows reset on recorded time, and nothing sleeps.
//!
//! What a record does not hold is said once each ([`Replay::notes`]): watermarks (no free
//! memory rate recorded: the scheme is taken as always active), PSI and memory quota goals
//! (no metric: the quota stays as written), cgroup and page-level filters, residency beyond
//! the replay's own page-outs (`whatif::Residency`), mid-aggregation snapshots for apply
//! intervals shorter than the aggregation (such a scheme applies at its own interval between
//! frames, on the last frame's counts with the age resets since: [`round`]), and (in
//! simulator or older records) the mappings the live actuator cuts at; live records carry
//! them and advice is cut there.

pub mod plot;
pub mod risk;
pub mod source;
pub mod whatif;

use crate::pipeline::actuate::{Feedback, Planner, SchemesPlanner};
use crate::pipeline::source::SnapshotSource;
use crate::record::{Loaded, Problem};
use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
use engine::AddrRange;
use schemes::policy::{FilterKind, GoalMetric};
use schemes::{Policy, Schemes};
use serde::Serialize;
use whatif::{ReplayMetrics, ReplaySys, Residency};

/// What the replay is asked.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    /// Advised bytes accessed again within this long count as refault risk, µs.
    pub refault_window_us: u64,
    pub cost: whatif::CostModel,
}

/// One frame of the replay: bytes advised and refaulted in it, per scheme.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// Recorded time, µs since the recording started.
    pub t_us: u64,
    pub aggr: u64,
    pub advised_bytes: Vec<u64>,
    pub refaulted_bytes: Vec<u64>,
}

/// One scheme's totals.
#[derive(Clone, Debug, Serialize)]
pub struct SchemeTotal {
    pub name: String,
    pub action: String,
    /// Bytes advised: all of them resident in the replay's model (`sz_applied`).
    pub advised_bytes: u64,
    /// Bytes the schemes asked for that the replay had paged out and the record had not
    /// shown accessed since: cut out and refunded, as live (`sz_not_resident`).
    pub not_resident_bytes: u64,
    pub refaulted_bytes: u64,
    /// Advice rounds with at least one byte.
    pub nr_applied: u64,
    /// Quota charge windows that ended exhausted.
    pub qt_exceeds: u64,
    /// Why the scheme was inactive at the end, if it was.
    pub inactive_reason: Option<String>,
}

/// Where a damaged record made the replay stop.
#[derive(Clone, Debug, Serialize)]
pub struct Stopped {
    pub line: usize,
    pub column: usize,
    pub offset: u64,
    pub message: String,
}

impl From<&Problem> for Stopped {
    fn from(p: &Problem) -> Self {
        Stopped {
            line: p.line,
            column: p.column,
            offset: p.offset,
            message: p.msg.clone(),
        }
    }
}

/// The replay's result.
#[derive(Clone, Debug, Serialize)]
pub struct Replay {
    pub snapshots: usize,
    pub duration_us: u64,
    pub refault_window_us: u64,
    pub schemes: Vec<SchemeTotal>,
    pub steps: Vec<Step>,
    /// Inputs the record lacks, each said once.
    pub notes: Vec<String>,
    /// The first damaged line (the replay used the intact frames before it).
    pub stopped: Option<Stopped>,
    pub cost_model: whatif::CostModel,
}

impl Replay {
    pub fn advised_bytes(&self) -> u64 {
        self.schemes.iter().map(|s| s.advised_bytes).sum()
    }
    pub fn refaulted_bytes(&self) -> u64 {
        self.schemes.iter().map(|s| s.refaulted_bytes).sum()
    }
}

/// The policy as it can replay on a record, and what was set aside (one note per input).
pub fn adapt(policy: &Policy, rec: &Loaded) -> (Policy, Vec<String>) {
    let mut p = policy.clone();
    let mut notes = Vec::new();
    let mut say = |n: String| {
        if !notes.contains(&n) {
            notes.push(n);
        }
    };
    for s in &mut p.schemes {
        if s.watermarks.take().is_some() {
            say(format!("scheme '{}': watermarks not replayed (the record has no free-memory rate): the scheme is taken as always active", s.name));
        }
        let before = s.quota.goals.len();
        s.quota.goals.retain(|g| {
            matches!(
                g.metric,
                GoalMetric::UserInput | GoalMetric::RefaultRate { .. }
            )
        });
        if s.quota.goals.len() != before {
            say(format!("scheme '{}': quota goals not replayed (the record has no PSI or memory use): the quota stays as written", s.name));
        }
        if s.quota
            .goals
            .iter()
            .any(|g| matches!(g.metric, GoalMetric::RefaultRate { .. }))
        {
            say(format!("scheme '{}': refault guard: measured on the replay's residency model (a page it paged out is back once the record's accesses bring it back: an accessed region brings back all the out pages it covers, or only the share a/m of them, a its accesses and m the frame's hottest region's, when resident memory beside them was accessed the frame before)", s.name));
        }
        for f in &s.filters {
            match f.kind {
                FilterKind::Cgroup(_) => say(format!("scheme '{}': cgroup filter: the record has no cgroups, targets it needs are skipped", s.name)),
                FilterKind::Anon | FilterKind::Young => say(format!("scheme '{}': page-level filters (anon, young) need live pages: the scheme stays inactive", s.name)),
                _ => {}
            }
        }
        if s.apply_interval_us
            .is_some_and(|i| i < rec.header.attrs.aggr_us)
        {
            say(format!("scheme '{}': apply interval shorter than the aggregation: the record holds aggregated snapshots only, the scheme applies at its own interval between frames on the last frame's counts (live, a mid-aggregation snapshot's moving sum: about the last aggregation's count)", s.name));
        }
    }
    say(if rec.frames.iter().any(|f| f.targets.iter().any(|t| !t.absent.is_empty())) {
        "residency: modelled: what was out of memory when the recording started (the record's `absent`) and what the replay paged out is out until the record's accesses bring it back (an accessed region brings back all the out pages it covers, or only the share a/m of them, a its accesses and m the frame's hottest region's, when resident memory beside them was accessed the frame before), and is cut out of later advice as not resident (as live); the rest counts as resident"
    } else {
        "residency: modelled from the replay's own page-outs only (the record has no `absent`: a simulator or older record): what it paged out is out until the record's accesses bring it back (an accessed region brings back all the out pages it covers, or only the share a/m of them, a its accesses and m the frame's hottest region's, when resident memory beside them was accessed the frame before), and is cut out of later advice as not resident (as live); the rest counts as resident"
    }.into());
    say(if rec.frames.iter().any(|f| f.targets.iter().any(|t| !t.seen.is_empty())) {
        "accesses: a region is accessed in a frame when one of its samples was found accessed in that aggregation (the record's `seen`); a count carried over Unknown answers brings nothing back"
    } else {
        "accesses: the record has no `seen` (version 2 or older, or no frame): every region with a count is taken as accessed in its frame, counts carried over Unknown answers too (under the refault probe's budget, memory idle for tens of seconds can still read a count)"
    }.into());
    say("swap: no swap gauge recorded: the swap headroom never stops a page-out".into());
    if rec.header.ops == "page_idle" {
        say("idle cut: not replayed: live under page_idle the actuator keeps the pages page_idle reads accessed in memory before a page-out (docs/architecture.md \"The idle cut\"); the record holds region counts, not pages, so the replay advises whole ranges".into());
    }
    if rec
        .frames
        .iter()
        .any(|f| f.targets.iter().any(|t| t.mappings.is_empty()))
    {
        say("mappings: the record holds none (a simulator or older record); advice is not cut at mapping boundaries".into());
    }
    say("monitor: the recorded regions are those of a workload that was not advised; a live monitor sees advised memory differently (its regions split and merge around what was paged out)".into());
    (p, notes)
}

/// One round as `run`'s actuation thread does it (src/pipeline/actuate.rs): plan at `now`,
/// apply, account, the refunds' refill; the pieces that went to the "kernel" go to the
/// refault ledger with the scheme that asked for each. Returns the round's report.
fn round(
    planner: &mut SchemesPlanner,
    actuator: &mut Actuator<ReplaySys>,
    targets: &[Target<'static>],
    snap: &engine::Snapshot,
    now: u64,
    refaults: &mut risk::Refaults,
) -> engine::ApplyReport {
    let reqs = planner.plan(snap, now);
    let sys = actuator.sys_mut();
    sys.clock_ns = sys.clock_ns.max(now.saturating_mul(1000));
    let opts = |planner: &SchemesPlanner| ApplyOpts {
        dry_run: false,
        cancel: None,
        pace_bytes_per_s: planner.pace_bytes_per_s(),
        pace_time_ns_per_s: planner.pace_time_ns_per_s(),
    };
    let mut report = actuator.apply(targets, &reqs, opts(planner));
    planner.account(&report, now);
    for _ in 0..schemes::MAX_REFILLS {
        let more = planner.plan_refill(snap, now);
        if more.is_empty() {
            break;
        }
        let r = actuator.apply(targets, &more, opts(planner));
        planner.account(&r, now);
        report.outcomes.extend(r.outcomes);
    }
    for (t, r, advice) in std::mem::take(&mut actuator.sys_mut().advised) {
        let scheme = report
            .outcomes
            .iter()
            .find(|o| {
                o.target == t
                    && o.advice == advice
                    && o.range.start <= r.start
                    && r.end <= o.range.end
            })
            .map_or(0, |o| o.scheme);
        refaults.advised(t.0, r, scheme, now);
    }
    report
}

/// Replay `policy` against `rec`: the intact frames before its first damaged line.
pub fn replay(policy: &Policy, rec: &Loaded, cfg: &ReplayConfig) -> anyhow::Result<Replay> {
    let (policy, notes) = adapt(policy, rec);
    let residency = Residency::new();
    let schemes = Schemes::new(&policy, Box::new(ReplayMetrics(residency.clone())))
        .map_err(|e| anyhow::anyhow!("{}: {e}", policy.origin.display()))?;
    let mut planner = SchemesPlanner(schemes);
    let mut actuator = Actuator::with_sys(
        ReplaySys::new(cfg.cost, residency.clone()),
        ActuatorConfig::from_env(),
    );
    let n_schemes = policy.schemes.len();
    let first_bad = rec.problems.first();
    let usable = first_bad.map_or(rec.frames.len(), |p| p.frames_before);
    let mut intact = rec.clone();
    intact.frames.truncate(usable);
    let mut src = source::RecordSource::new(&intact);
    let mut refaults = risk::Refaults::new(cfg.refault_window_us, n_schemes);
    let mut steps = Vec::with_capacity(usable);
    let mut frames = intact.frames.iter();
    loop {
        let pulled = src.pull(0, false).map_err(anyhow::Error::msg)?;
        let (Some(snap), Some(frame)) = (pulled.snapshot, frames.next()) else {
            break;
        };
        let now = snap.now_us;
        // The accesses of this aggregation happened before its advice: they fault back
        // what they cover.
        let before = refaults.bytes.clone();
        refaults.frame(frame);
        {
            let mut res = residency.lock();
            res.frame(frame);
            // What was out of memory when the target first appeared (live records).
            for t in &frame.targets {
                for a in &t.absent {
                    res.advised(t.id, AddrRange::new(a[0], a[1]), 0, now);
                }
            }
        }
        // The recorded mappings, or (simulator and older records) all of the address space.
        let targets: Vec<Target<'static>> = src
            .targets()
            .into_iter()
            .map(|id| {
                let vmas: Vec<AddrRange> = frame
                    .targets
                    .iter()
                    .find(|t| t.id == id.0)
                    .filter(|t| !t.mappings.is_empty())
                    .map_or_else(
                        || vec![AddrRange::new(0, ALL)],
                        |t| {
                            t.mappings
                                .iter()
                                .map(|m| AddrRange::new(m[0], m[1]))
                                .collect()
                        },
                    );
                // No process behind it: a pid no rail refuses (the record's own could be 1).
                Target::simulated(id, u32::MAX, vmas)
            })
            .collect();
        let mut advised = vec![0u64; n_schemes];
        let mut at = now;
        let mut snap = snap;
        loop {
            let report = round(
                &mut planner,
                &mut actuator,
                &targets,
                &snap,
                at,
                &mut refaults,
            );
            for o in &report.outcomes {
                advised[o.scheme] += o.bytes_applied;
            }
            src.feedback(&Feedback {
                report,
                next_due_us: planner.next_due_us(),
                // Watermarks are not replayed (see `adapt`): nothing pauses.
                paused_until_us: planner.paused_until_us(),
                round: true,
            });
            // A scheme due before the next frame applies then, as `run`'s monitor hands it a
            // mid-aggregation snapshot: here the same frame's counts (a live mid-aggregation
            // snapshot's moving sum is about the last aggregation's count), with the age of
            // what was just advised restarted.
            let next_frame = frames.as_slice().first().map(|f| f.t_us);
            match (planner.next_due_us(), next_frame) {
                (Some(due), Some(next)) if due > at && due < next => match src.again(due) {
                    Some(s) => {
                        at = due;
                        snap = s;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        steps.push(Step {
            t_us: now,
            aggr: snap.aggregation,
            advised_bytes: advised,
            refaulted_bytes: refaults
                .bytes
                .iter()
                .zip(&before)
                .map(|(a, b)| a - b)
                .collect(),
        });
    }
    let stats = planner.stats();
    let schemes = stats
        .iter()
        .enumerate()
        .map(|(i, st)| SchemeTotal {
            name: st.name.clone(),
            action: st.action.clone(),
            advised_bytes: st.sz_applied,
            not_resident_bytes: st.sz_not_resident,
            refaulted_bytes: refaults.bytes[i],
            nr_applied: st.nr_applied,
            qt_exceeds: st.qt_exceeds,
            inactive_reason: st.inactive_reason.clone(),
        })
        .collect();
    Ok(Replay {
        snapshots: steps.len(),
        duration_us: match (steps.first(), steps.last()) {
            (Some(a), Some(b)) => b.t_us - a.t_us,
            _ => 0,
        },
        refault_window_us: cfg.refault_window_us,
        schemes,
        steps,
        notes,
        stopped: first_bad.map(Stopped::from),
        cost_model: cfg.cost,
    })
}

/// The end of the address space a target without recorded mappings is taken to span.
const ALL: u64 = 1 << 56;

#[cfg(test)]
mod tests;
