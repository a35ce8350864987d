//! A record file as a [`SnapshotSource`]: its frames, in order, as aggregated snapshots on
//! the record's own clock (`now_us` is the frame's time, whatever the caller passes), `ended`
//! after the last intact frame. The feedback does what it does to madvd's monitor core
//! (`Monitor::apply_report`; the kernel's `damos_apply_scheme()`, `r->age = 0` for any
//! action but stat, mm/damon/core.c 6.12): regions advised are split at the advised range
//! (aligned to the minimum region size) and their age restarts from zero, so a scheme does not advise
//! the same cold range again each aggregation. The recorded age still wins when it is lower
//! (the access pattern changed since).

use crate::pipeline::actuate::Feedback;
use crate::pipeline::source::{Pull, SnapshotSource};
use crate::record::{Frame, Loaded};
use engine::kernel::host::{align_down, align_up};
use engine::process::Process;
use engine::{AddrRange, Attrs, Region, Snapshot, TargetId, TargetSnapshot};

/// Ranges advised, with the aggregation they were advised at, per target: sorted, disjoint.
#[derive(Clone, Debug, Default)]
struct Advised(Vec<(AddrRange, u64)>);

impl Advised {
    /// Mark `r` advised at aggregation `at` (newer marks replace older ones).
    fn mark(&mut self, r: AddrRange, at: u64) {
        let mut out = Vec::with_capacity(self.0.len() + 2);
        for &(x, a) in &self.0 {
            if !x.intersects(&r) {
                out.push((x, a));
                continue;
            }
            if x.start < r.start {
                out.push((AddrRange::new(x.start, r.start), a));
            }
            if r.end < x.end {
                out.push((AddrRange::new(r.end, x.end), a));
            }
        }
        out.push((r, at));
        out.sort_by_key(|(x, _)| x.start);
        self.0 = out;
    }
}

/// The frames of a loaded record as a snapshot source.
pub struct RecordSource {
    frames: std::vec::IntoIter<Frame>,
    attrs: Attrs,
    targets: Vec<TargetId>,
    advised: Vec<(TargetId, Advised)>,
    /// The aggregation number of the last frame given.
    last_aggr: u64,
    /// The last frame given ([`Self::again`]).
    last: Option<Frame>,
}

impl RecordSource {
    pub fn new(rec: &Loaded) -> Self {
        Self {
            frames: rec.frames.clone().into_iter(),
            attrs: rec.header.attrs,
            targets: rec.target_ids().into_iter().map(TargetId).collect(),
            advised: Vec::new(),
            last_aggr: 0,
            last: None,
        }
    }

    /// The last frame given again at `now_us`, as a mid-aggregation snapshot (a scheme due
    /// before the next frame: `run`'s monitor hands it one), with the age resets of the
    /// feedback since. `None` before the first frame.
    pub fn again(&self, now_us: u64) -> Option<Snapshot> {
        let f = self.last.as_ref()?;
        let mut s = self.snapshot(f);
        s.now_us = now_us;
        s.aggregated = false;
        Some(s)
    }

    /// One recorded frame as the snapshot schemes see, with the feedback's age resets.
    fn snapshot(&self, f: &Frame) -> Snapshot {
        let max = self.attrs.max_nr_accesses();
        let targets = f
            .targets
            .iter()
            .filter(|t| self.targets.contains(&TargetId(t.id)))
            .map(|t| {
                let id = TargetId(t.id);
                let adv = self.advised.iter().find(|(x, _)| *x == id).map(|(_, a)| a);
                let mut regions = Vec::with_capacity(t.regions.len());
                for &[s, e, n, age] in &t.regions {
                    let n = n.min(max as u64) as u32;
                    let age = age.min(u32::MAX as u64) as u32;
                    match adv {
                        Some(a) => split_aged(&mut regions, (s, e), (n, age, max), a, f.aggr),
                        None => regions.push(region(s, e, n, age, max)),
                    }
                }
                TargetSnapshot {
                    target: id,
                    regions,
                }
            })
            .collect();
        Snapshot {
            now_us: f.t_us,
            aggregation: f.aggr,
            aggregated: true,
            attrs: self.attrs,
            targets,
        }
    }
}

fn region(s: u64, e: u64, n: u32, age: u32, max: u32) -> Region {
    let mut r = Region::new(s, e);
    r.nr_accesses = n;
    r.nr_accesses_bp = n.saturating_mul(10_000);
    r.last_nr_accesses = n;
    r.age = age;
    r.nr_known = max;
    r
}

/// `[s, e)` cut at the advised ranges it overlaps, each advised piece's age capped at the
/// aggregations since it was advised.
fn split_aged(
    out: &mut Vec<Region>,
    (s, e): (u64, u64),
    (n, age, max): (u32, u32, u32),
    adv: &Advised,
    now: u64,
) {
    let mut at = s;
    let from = adv.0.partition_point(|(r, _)| r.end <= s);
    for &(r, a) in &adv.0[from..] {
        if r.start >= e {
            break;
        }
        let (lo, hi) = (r.start.max(s), r.end.min(e));
        if at < lo {
            out.push(region(at, lo, n, age, max));
        }
        let since = now.saturating_sub(a).min(u32::MAX as u64) as u32;
        out.push(region(lo, hi, n, age.min(since), max));
        at = hi;
    }
    if at < e {
        out.push(region(at, e, n, age, max));
    }
}

impl SnapshotSource for RecordSource {
    fn attrs(&self) -> Attrs {
        self.attrs
    }
    fn targets(&self) -> Vec<TargetId> {
        self.targets.clone()
    }
    /// The record sets the pace: no waiting between frames.
    fn interval_us(&self) -> u64 {
        0
    }
    /// The next intact frame (`now_us` and `due` are ignored: time comes from the record,
    /// and it holds aggregated snapshots only).
    fn pull(&mut self, _now_us: u64, _due: bool) -> Result<Pull, String> {
        match self.frames.next() {
            Some(f) => {
                self.last_aggr = f.aggr;
                let snapshot = Some(self.snapshot(&f));
                self.last = Some(f);
                Ok(Pull {
                    snapshot,
                    ..Pull::default()
                })
            }
            None => Ok(Pull {
                ended: true,
                ..Pull::default()
            }),
        }
    }
    fn feedback(&mut self, fb: &Feedback) {
        let min = self.attrs.min_region_sz.max(1);
        // As `Monitor::apply_report`: every range asked for, except one wholly not resident or
        // held back by the pace (filtered: its regions keep their age).
        for o in fb.report.outcomes.iter().filter(|o| !o.wholly_skipped()) {
            let r = AddrRange::new(align_down(o.range.start, min), align_up(o.range.end, min));
            if r.is_empty() {
                continue;
            }
            let i = match self.advised.iter().position(|(t, _)| *t == o.target) {
                Some(i) => i,
                None => {
                    self.advised.push((o.target, Advised::default()));
                    self.advised.len() - 1
                }
            };
            self.advised[i].1.mark(r, self.last_aggr);
        }
    }
    fn add_target(&mut self, _proc: Process) -> Result<(), String> {
        Err("a record replays the targets it recorded: it cannot take new ones".into())
    }
    fn remove_target(&mut self, id: TargetId) {
        self.targets.retain(|t| *t != id);
    }
}
