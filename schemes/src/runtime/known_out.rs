//! What the schemes know to be out of memory: ranges the actuator's residency cut found wholly
//! not resident, per target, until a sample sees them accessed (or [`KNOWN_OUT_TTL_US`]
//! passes). The walk skips them for `pageout` and `cold` as filtered: not charged to the
//! size quota, no age reset (issue 14: "skipped ranges count as filtered").
//!
//! Why: the cut alone ran after planning. A region with no resident byte keeps its age
//! (`Monitor::apply_report`), so with age-first priority the oldest regions — memory never
//! faulted in, or paged out long ago — took each window's whole quota, were cut out and
//! refunded after the walk was over, and the resident cold memory behind them was never
//! reached (measured by the replay comparison: a live run advised 4.4 MiB of a 184 MiB cold
//! set while its not-resident count grew ~19 MiB a second; docs/performance.md "Replay vs
//! reality"). With this set the quota of a window goes to the next candidates in priority
//! order instead.
//!
//! Not the kernel's rule: `damos_apply_scheme()` (mm/damon/core.c 6.12) charges whole
//! regions, resident or not, and resets their age, so it never meets this starvation, at
//! the price of spending its quota on memory that is already out (docs/architecture.md,
//! "Charging resident bytes only, and the pace").
//!
//! Only *wholly* not-resident outcomes are learned (the report carries byte counts, not the
//! cut's sub-ranges): a partly resident range is asked of the actuator again, whose pagemap
//! read stays the truth. Bounded: at most [`MAX_KNOWN_OUT_RANGES`] ranges per target (the set
//! is forgotten when it would grow past it), and each target's set is forgotten every
//! [`KNOWN_OUT_TTL_US`], so a page that came back without a sample seeing it is advised
//! again at the latest then.

use std::collections::HashMap;

use engine::rangeset::RangeSet;
use engine::{AddrRange, Advice, ApplyReport, Snapshot, TargetId};

/// How long a target's known-out set is kept before it is forgotten, µs.
pub const KNOWN_OUT_TTL_US: u64 = 30_000_000;

/// The most disjoint ranges kept per target.
pub const MAX_KNOWN_OUT_RANGES: usize = 65_536;

#[derive(Debug, Default)]
struct Entry {
    set: RangeSet,
    since_us: u64,
}

/// Per target, the ranges known to be out of memory.
#[derive(Debug, Default)]
pub struct KnownOut {
    targets: HashMap<TargetId, Entry>,
}

/// Whether the residency cut applies to `advice` (`engine::actuator::resident`).
pub fn residency_matters(advice: Advice) -> bool {
    matches!(advice, Advice::Pageout | Advice::Cold)
}

impl KnownOut {
    /// Before a plan: forget targets gone from the snapshot, sets older than the TTL, and
    /// every range a region with `nr_accesses > 0` covers (its pages may be back).
    pub fn refresh(&mut self, snap: &Snapshot, now_us: u64) {
        self.targets
            .retain(|t, _| snap.targets.iter().any(|x| x.target == *t));
        for t in &snap.targets {
            let Some(e) = self.targets.get_mut(&t.target) else {
                continue;
            };
            if now_us < e.since_us || now_us - e.since_us >= KNOWN_OUT_TTL_US {
                self.targets.remove(&t.target);
                continue;
            }
            for r in t.regions.iter().filter(|r| r.nr_accesses > 0) {
                e.set.remove(AddrRange::new(r.start(), r.end()));
            }
        }
    }

    /// After an apply report: learn each page-out or cold range the actuator found wholly
    /// not resident; forget the targets it found gone.
    pub fn learn(&mut self, report: &ApplyReport, now_us: u64) {
        for t in &report.gone {
            self.targets.remove(t);
        }
        for o in &report.outcomes {
            let wholly_out = o.bytes_requested > 0 && o.not_resident() >= o.bytes_requested;
            if !wholly_out || !residency_matters(o.advice) {
                continue;
            }
            let e = self.targets.entry(o.target).or_insert_with(|| Entry {
                set: RangeSet::default(),
                since_us: now_us,
            });
            e.set.insert(o.range);
            if e.set.len() > MAX_KNOWN_OUT_RANGES {
                self.targets.remove(&o.target);
            }
        }
    }

    /// Cut the known-out part at the head of `piece`: returns the bytes skipped from its
    /// start (the piece then becomes empty) and the rest to walk next, if any. A known-out
    /// range inside the piece shortens the piece to end there and returns the rest.
    pub fn cut(&self, target: TargetId, piece: &mut AddrRange) -> (u64, Option<AddrRange>) {
        let Some(k) = self
            .targets
            .get(&target)
            .and_then(|e| e.set.first_overlap(*piece))
        else {
            return (0, None);
        };
        if k.start <= piece.start {
            let end = k.end.min(piece.end);
            let skipped = end - piece.start;
            let rest = (end < piece.end).then(|| AddrRange::new(end, piece.end));
            *piece = AddrRange::new(piece.start, piece.start);
            (skipped, rest)
        } else {
            let rest = AddrRange::new(k.start, piece.end);
            piece.end = k.start;
            (0, Some(rest))
        }
    }

    /// Bytes of `range` known out for `target`: left out of the priority histogram, so the
    /// minimum score lets the walk reach past them (`damos_adjust_quota`'s histogram counts
    /// every matching byte; a skipped one would hold the quota's score floor up).
    pub fn bytes_in(&self, target: TargetId, range: AddrRange) -> u64 {
        self.targets
            .get(&target)
            .map_or(0, |e| e.set.bytes_in(range))
    }

    /// Bytes known out for `target`.
    #[cfg(test)]
    pub fn bytes(&self, target: TargetId) -> u64 {
        self.targets
            .get(&target)
            .map_or(0, |e| e.set.ranges().iter().map(|r| r.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ApplyErrorKind, RangeOutcome};

    fn outcome(t: u32, a: u64, b: u64, not_resident: u64) -> RangeOutcome {
        let mut o = RangeOutcome::of(
            &engine::AdviceRequest {
                target: TargetId(t),
                range: AddrRange::new(a, b),
                advice: Advice::Pageout,
                scheme: 0,
            },
            0,
            1000,
        );
        o.errors.push((ApplyErrorKind::NotResident, not_resident));
        o
    }

    #[test]
    fn learns_only_wholly_out_ranges_and_cuts_them_from_pieces() {
        let mut k = KnownOut::default();
        let report = ApplyReport {
            outcomes: vec![
                outcome(1, 0x10000, 0x20000, 0x10000),
                outcome(1, 0x30000, 0x40000, 0x8000),
            ],
            ..Default::default()
        };
        k.learn(&report, 0);
        assert_eq!(k.bytes(TargetId(1)), 0x10000);
        // A piece starting inside the known-out range: its head is skipped.
        let mut p = AddrRange::new(0x18000, 0x28000);
        assert_eq!(
            k.cut(TargetId(1), &mut p),
            (0x8000, Some(AddrRange::new(0x20000, 0x28000)))
        );
        assert!(p.is_empty());
        // A piece reaching into it: cut before it, the rest walked next.
        let mut p = AddrRange::new(0x8000, 0x14000);
        assert_eq!(
            k.cut(TargetId(1), &mut p),
            (0, Some(AddrRange::new(0x10000, 0x14000)))
        );
        assert_eq!(p, AddrRange::new(0x8000, 0x10000));
        // Another target, or a piece clear of it: untouched.
        let mut p = AddrRange::new(0x10000, 0x20000);
        assert_eq!(k.cut(TargetId(2), &mut p), (0, None));
        let mut p = AddrRange::new(0x30000, 0x40000);
        assert_eq!(k.cut(TargetId(1), &mut p), (0, None));
    }
}
