//! What the schemes know there is nothing to act on in: ranges the actuator found wholly not
//! resident (its residency cut), for `split` ranges it found holding no huge page, and for
//! `collapse` ranges it found huge already (its huge-page check, `engine::actuator::huge`),
//! per target, until a sample sees them accessed (or [`KNOWN_OUT_TTL_US`] passes; for the
//! *huge* set, only the TTL). The walk skips them as filtered: not charged to the size
//! quota, no age reset (issue 14: "skipped ranges count as filtered").
//!
//! Why: the cut alone ran after planning. A region with no resident byte keeps its age
//! (`Monitor::apply_report`), so with age-first priority the oldest regions — memory never
//! faulted in, or paged out long ago — took each window's whole quota, were cut out and
//! refunded after the walk was over, and the resident cold memory behind them was never
//! reached (measured by the replay comparison: a live run advised 4.4 MiB of a 184 MiB cold
//! set while its not-resident count grew ~19 MiB a second; docs/performance.md "Replay vs
//! reality"). With this set the quota of a window goes to the next candidates in priority
//! order instead. The same holds for `split` over idle memory of small pages (in the lab, a
//! binary's pages, or ranges `split` had already split: under `--ops damon` the kernel's
//! regions keep their age after madvd's advice, so they stayed first in line).
//!
//! Three sets per target: *out* (nothing resident), which `pageout`, `cold` and `split` skip;
//! *no huge page*, which only `split` skips (small pages still resident are something to
//! page out); and *huge*, which only `collapse` skips. A range gets a huge page only by being
//! faulted in or collapsed again — by an access, or by khugepaged over young pages —, so the
//! first two sets forget a range a sample sees accessed. An access does not split a huge
//! page (and the ranges `collapse` wants are the accessed ones), so *huge* is forgotten only
//! with the TTL: a huge page split in the meantime (a partial unmap, reclaim, madvd's own
//! `split`) waits at most that long to be collapsed again.
//!
//! Not the kernel's rule: `damos_apply_scheme()` (mm/damon/core.c 6.12) charges whole
//! regions, resident or not, and resets their age, so it never meets this starvation, at
//! the price of spending its quota on memory that is already out (docs/architecture.md,
//! "Charging resident bytes only, and the pace").
//!
//! Holes count as out. The monitoring ranges are the kernel's three regions
//! (`__damon_va_three_regions`, mm/damon/vaddr.c 6.12): everything from the first VMA to the
//! last except the two largest gaps, so the unmapped gaps between the other VMAs (malloc
//! arenas' alignment, guard gaps, the binary-to-heap gap) are regions too. They are never
//! accessed, so they are the oldest regions and head an age-first queue; the actuator reports
//! them `Unmapped` (no madvise), which `RangeOutcome::wholly_nothing_there` does not cover.
//! Not learned, every window's quota went to the same holes again once their ages grew back
//! (the kernel's rule charges them and resets their age): in the lab (issue 14, kernel-style
//! scheme, age-only weights, 128 MiB per 1 s) madvd's first four windows each spent the whole
//! 128 MiB on holes while 20.7 MiB of the workload's cold band had matched for seconds, and
//! after the cold band's first page-out the holes took the quota again (docs/performance.md,
//! "Reclaim side by side with the kernel"). So a wholly unmapped outcome
//! (`RangeOutcome::wholly_unmapped`) goes into the *out* set. Its first encounter is still
//! charged and its age reset: the report's refund (`RangeOutcome::refund`) counts
//! not-resident bytes, not unmapped ones.
//!
//! Only *wholly* empty outcomes are learned (`RangeOutcome::wholly_nothing_there`: the report
//! carries byte counts, not the cut's sub-ranges): a partly resident (or partly huge) range is
//! asked of the actuator again, whose pagemap read stays the truth. Bounded: at most
//! [`MAX_KNOWN_OUT_RANGES`] ranges per target and set (the target's sets are forgotten when
//! one would grow past it). Every [`KNOWN_OUT_TTL_US`] a target's *out* set is checked again
//! and its *no huge page* set forgotten, so a page that came back without a sample seeing it
//! is advised again at the latest then.
//!
//! The check reads the target's pagemap over the out set (the schemes' [`MetricSource`], as
//! the refault guard reads it; at most [`RECHECK_MAX_BYTES`] of address space) and keeps the
//! runs with no page in memory; only where that read fails is the set forgotten. Forgetting it
//! whole brought the starvation back once every TTL: the set is the oldest memory, so the
//! next windows' quotas went to asking the actuator about it again, range by range (the demo
//! measured nothing paged out for the last ~35 s of its 75: its ~700 MiB already out took
//! 25 windows of a 28 MiB quota to be learned again; docs/performance.md "Demo").

use std::collections::HashMap;

use engine::rangeset::RangeSet;
use engine::{AddrRange, Advice, ApplyReport, Snapshot, TargetId};

use crate::goal::MetricSource;
use crate::refault::PageState;

/// How long a target's known-out set is kept before it is checked again, µs.
pub const KNOWN_OUT_TTL_US: u64 = 30_000_000;

/// The most address space one check of a target's set reads (8 B of pagemap per 4 KiB page:
/// 16 MiB read for 8 GiB, the actuator's own residency-scan bound); the ranges past it are
/// forgotten.
pub const RECHECK_MAX_BYTES: u64 = 8 << 30;

/// The most disjoint ranges kept per target.
pub const MAX_KNOWN_OUT_RANGES: usize = 65_536;

#[derive(Debug, Default)]
struct Entry {
    /// Nothing resident.
    out: RangeSet,
    /// No huge page (`split`).
    no_huge: RangeSet,
    /// Huge pages already (`collapse`).
    huge: RangeSet,
    since_us: u64,
}

impl Entry {
    /// The sets `advice` skips.
    fn sets(&self, advice: Advice) -> impl Iterator<Item = &RangeSet> {
        let (out, no_huge, huge) = skips(advice);
        [
            (out, &self.out),
            (no_huge, &self.no_huge),
            (huge, &self.huge),
        ]
        .into_iter()
        .filter_map(|(on, s)| on.then_some(s))
    }
}

/// Which sets `advice` skips: (out, no huge page, huge).
fn skips(advice: Advice) -> (bool, bool, bool) {
    match advice {
        Advice::Pageout | Advice::Cold => (true, false, false),
        Advice::Split => (true, true, false),
        Advice::Collapse => (false, false, true),
        Advice::Willneed => (false, false, false),
    }
}

/// Per target, the ranges known to hold nothing to act on.
#[derive(Debug, Default)]
pub struct KnownOut {
    targets: HashMap<TargetId, Entry>,
}

/// Whether the walk skips known ranges for `advice`: the actuator finds nothing to act on in
/// them (`engine::actuator::{resident, huge}`).
pub fn skips_known(advice: Advice) -> bool {
    skips(advice) != (false, false, false)
}

impl KnownOut {
    /// Before a plan: forget targets gone from the snapshot; past the TTL, check the out set
    /// against the pagemap (`env`: see the module doc) and forget the no-huge-page and huge
    /// sets; and forget every range of the first two a region with `nr_accesses > 0` covers
    /// (its pages may be back, or huge).
    pub fn refresh(&mut self, snap: &Snapshot, now_us: u64, env: &dyn MetricSource) {
        self.targets
            .retain(|t, _| snap.targets.iter().any(|x| x.target == *t));
        for t in &snap.targets {
            let Some(e) = self.targets.get_mut(&t.target) else {
                continue;
            };
            if now_us < e.since_us || now_us - e.since_us >= KNOWN_OUT_TTL_US {
                match recheck(&e.out, t.target, env) {
                    Some(set) if !set.is_empty() => {
                        e.out = set;
                        e.no_huge = RangeSet::default();
                        e.huge = RangeSet::default();
                        e.since_us = now_us;
                    }
                    _ => {
                        self.targets.remove(&t.target);
                        continue;
                    }
                }
            }
            for r in t.regions.iter().filter(|r| r.nr_accesses > 0) {
                let range = AddrRange::new(r.start(), r.end());
                e.out.remove(range);
                e.no_huge.remove(range);
            }
        }
    }

    /// After an apply report: learn each page-out or cold range the actuator found wholly not
    /// resident or wholly unmapped (`RangeOutcome::wholly_unmapped`: into the *out* set, for
    /// `split` too), each `split` range it found wholly without a huge page (or resident
    /// page), and each `collapse` range it found wholly huge already; forget the targets it
    /// found gone.
    pub fn learn(&mut self, report: &ApplyReport, now_us: u64) {
        for t in &report.gone {
            self.targets.remove(t);
        }
        for o in &report.outcomes {
            let unmapped = o.wholly_unmapped();
            if !(o.wholly_nothing_there() || unmapped) || !skips_known(o.advice) {
                continue;
            }
            let e = self.targets.entry(o.target).or_insert_with(|| Entry {
                since_us: now_us,
                ..Default::default()
            });
            let set = match o.advice {
                Advice::Split if !unmapped => &mut e.no_huge,
                // A hole is nothing to collapse either: it goes with the huge pages, the
                // one set `collapse` skips.
                Advice::Collapse => &mut e.huge,
                _ => &mut e.out,
            };
            set.insert(o.range);
            if set.len() > MAX_KNOWN_OUT_RANGES {
                self.targets.remove(&o.target);
            }
        }
    }

    /// Cut the known part at the head of `piece` for `advice`: returns the bytes skipped
    /// from its start (the piece then becomes empty) and the rest to walk next, if any. A
    /// known range inside the piece shortens the piece to end there and returns the rest.
    pub fn cut(
        &self,
        target: TargetId,
        advice: Advice,
        piece: &mut AddrRange,
    ) -> (u64, Option<AddrRange>) {
        let Some(k) = self.targets.get(&target).and_then(|e| {
            e.sets(advice)
                .filter_map(|s| s.first_overlap(*piece))
                .min_by_key(|k| k.start)
        }) else {
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

    /// Bytes of `range` known empty for `target` and `advice`: left out of the priority
    /// histogram, so the minimum score lets the walk reach past them (`damos_adjust_quota`'s
    /// histogram counts every matching byte; a skipped one would hold the quota's score floor
    /// up). A byte in both sets counts once.
    pub fn bytes_in(&self, target: TargetId, advice: Advice, range: AddrRange) -> u64 {
        let Some(e) = self.targets.get(&target) else {
            return 0;
        };
        let sets: Vec<&RangeSet> = e.sets(advice).collect();
        match sets.as_slice() {
            [] => 0,
            [one] => one.bytes_in(range),
            _ => {
                let mut union = RangeSet::default();
                for s in sets {
                    for r in s.ranges() {
                        let (a, b) = (r.start.max(range.start), r.end.min(range.end));
                        if a < b {
                            union.insert(AddrRange::new(a, b));
                        }
                    }
                }
                union.bytes_in(range)
            }
        }
    }

    /// Bytes known out (or without a huge page, or huge) for `target`.
    #[cfg(test)]
    pub fn bytes(&self, target: TargetId) -> u64 {
        self.targets.get(&target).map_or(0, |e| {
            e.out
                .ranges()
                .iter()
                .chain(e.no_huge.ranges())
                .chain(e.huge.ranges())
                .map(|r| r.len())
                .sum()
        })
    }
}

/// The runs of `set` with no page in memory now (`PageState::Out` or `Gone`, read from
/// `env`), within [`RECHECK_MAX_BYTES`]; `None` when a read fails.
fn recheck(set: &RangeSet, target: TargetId, env: &dyn MetricSource) -> Option<RangeSet> {
    const PAGE: u64 = 4096;
    const CHUNK: u64 = 64 << 20;
    let mut kept = RangeSet::default();
    let mut budget = RECHECK_MAX_BYTES;
    let mut buf = Vec::new();
    for r in set.ranges() {
        let mut a = r.start;
        while a < r.end && budget > 0 {
            let b = r.end.min(a.saturating_add(CHUNK.min(budget)));
            buf.clear();
            env.page_states(target, AddrRange::new(a, b), &mut buf)
                .ok()?;
            if buf.is_empty() {
                return None;
            }
            let mut run: Option<u64> = None;
            let mut p = a;
            for st in &buf {
                let out = matches!(st, PageState::Out | PageState::Gone);
                match (out, run) {
                    (true, None) => run = Some(p),
                    (false, Some(s)) => {
                        kept.insert(AddrRange::new(s, p));
                        run = None;
                    }
                    _ => {}
                }
                p = (p + PAGE).min(b);
                if p >= b {
                    break;
                }
            }
            if let Some(s) = run {
                kept.insert(AddrRange::new(s, p));
            }
            budget = budget.saturating_sub(p - a);
            a = p;
        }
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{ApplyErrorKind, RangeOutcome};

    fn outcome(t: u32, a: u64, b: u64, not_resident: u64) -> RangeOutcome {
        outcome_of(Advice::Pageout, t, a, b, not_resident)
    }

    /// A range with `nothing` bytes of nothing to act on (not resident; for `split`, no huge
    /// page), the rest applied.
    fn outcome_of(advice: Advice, t: u32, a: u64, b: u64, nothing: u64) -> RangeOutcome {
        let mut o = RangeOutcome::of(
            &engine::AdviceRequest {
                target: TargetId(t),
                range: AddrRange::new(a, b),
                advice,
                scheme: 0,
            },
            (b - a).saturating_sub(nothing),
            1000,
        );
        let kind = if advice == Advice::Split {
            ApplyErrorKind::NotHuge
        } else {
            ApplyErrorKind::NotResident
        };
        o.errors.push((kind, nothing));
        o
    }

    /// A hole between VMAs (the actuator reports it wholly `Unmapped`, maybe with unaligned
    /// edges) is known out for `pageout` and for `split`; a range partly applied, or failed
    /// for another reason beside the hole, is not.
    #[test]
    fn wholly_unmapped_ranges_are_known_out() {
        const M: u64 = 1 << 20;
        let with =
            |advice: Advice, a: u64, b: u64, applied: u64, errs: &[(ApplyErrorKind, u64)]| {
                let mut o = outcome_of(advice, 1, a, b, 0);
                o.bytes_applied = applied;
                o.errors = errs.to_vec();
                o
            };
        let u = ApplyErrorKind::Unmapped;
        let report = ApplyReport {
            outcomes: vec![
                with(Advice::Pageout, 0, 4 * M, 0, &[(u, 4 * M)]),
                with(
                    Advice::Split,
                    8 * M,
                    10 * M,
                    0,
                    &[(u, 2 * M - 100), (ApplyErrorKind::Unaligned, 100)],
                ),
                // Partly applied, or refused besides the hole: asked again.
                with(Advice::Pageout, 12 * M, 14 * M, M, &[(u, M)]),
                with(
                    Advice::Pageout,
                    16 * M,
                    18 * M,
                    0,
                    &[(u, M), (ApplyErrorKind::Invalid, M)],
                ),
                // `willneed` does not skip known ranges.
                with(Advice::Willneed, 20 * M, 22 * M, 0, &[(u, 2 * M)]),
            ],
            ..Default::default()
        };
        let mut k = KnownOut::default();
        k.learn(&report, 0);
        assert_eq!(k.bytes(TargetId(1)), 6 * M);
        let t = TargetId(1);
        for adv in [Advice::Pageout, Advice::Cold, Advice::Split] {
            let mut p = AddrRange::new(0, 12 * M);
            assert_eq!(
                k.cut(t, adv, &mut p),
                (4 * M, Some(AddrRange::new(4 * M, 12 * M))),
                "{adv:?}"
            );
            let mut p = AddrRange::new(4 * M, 12 * M);
            assert_eq!(
                k.cut(t, adv, &mut p),
                (0, Some(AddrRange::new(8 * M, 12 * M))),
                "{adv:?}"
            );
        }
    }

    /// A range `split` found without a huge page is skipped by the next `split` walks, not
    /// by `pageout` (its small pages may be resident); a range out of memory is skipped by
    /// both. An access forgets both; the TTL forgets the first and checks the second.
    #[test]
    fn ranges_without_a_huge_page_are_skipped_by_split_only() {
        const M: u64 = 2 << 20;
        let mut k = KnownOut::default();
        let report = ApplyReport {
            outcomes: vec![
                outcome_of(Advice::Split, 1, 0, 4 * M, 4 * M),
                // Partly huge: asked again.
                outcome_of(Advice::Split, 1, 8 * M, 12 * M, 2 * M),
                outcome_of(Advice::Pageout, 1, 16 * M, 18 * M, 2 * M),
            ],
            ..Default::default()
        };
        k.learn(&report, 0);
        assert_eq!(k.bytes(TargetId(1)), 6 * M);
        let t = TargetId(1);
        let mut p = AddrRange::new(0, 20 * M);
        assert_eq!(
            k.cut(t, Advice::Split, &mut p),
            (4 * M, Some(AddrRange::new(4 * M, 20 * M)))
        );
        let mut p = AddrRange::new(4 * M, 20 * M);
        assert_eq!(
            k.cut(t, Advice::Split, &mut p),
            (0, Some(AddrRange::new(16 * M, 20 * M)))
        );
        assert_eq!(p, AddrRange::new(4 * M, 16 * M));
        let mut p = AddrRange::new(0, 4 * M);
        assert_eq!(k.cut(t, Advice::Pageout, &mut p), (0, None));
        let all = AddrRange::new(0, 20 * M);
        assert_eq!(
            (
                k.bytes_in(t, Advice::Split, all),
                k.bytes_in(t, Advice::Pageout, all),
                k.bytes_in(t, Advice::Collapse, all)
            ),
            (6 * M, 2 * M, 0)
        );
        // An access over the first range forgets it (it may be huge again).
        let accessed = snapshot_with(t, AddrRange::new(0, 4 * M), 3);
        let all_out = Pages(HashMap::from([(0, PageState::Out)]));
        k.refresh(&accessed, 1, &all_out);
        assert_eq!(k.bytes_in(t, Advice::Split, all), 2 * M);
        // At the TTL the no-huge-page set is forgotten; the out set is checked (still out).
        k.learn(&report, 2);
        assert_eq!(k.bytes_in(t, Advice::Split, all), 6 * M);
        k.refresh(&snap(1), KNOWN_OUT_TTL_US, &all_out);
        assert_eq!(k.bytes_in(t, Advice::Split, all), 2 * M);
        assert_eq!(k.bytes_in(t, Advice::Pageout, all), 2 * M);
        // An unreadable pagemap forgets both.
        k.refresh(&snap(1), 2 * KNOWN_OUT_TTL_US, &Pages(HashMap::new()));
        assert_eq!(k.bytes(t), 0);
    }

    /// A snapshot of `t` with one region over `r` accessed `nr` times.
    fn snapshot_with(t: TargetId, r: AddrRange, nr: u32) -> Snapshot {
        let mut reg = engine::Region::new(r.start, r.end);
        reg.nr_accesses = nr;
        snapshot_of(t, vec![reg])
    }

    fn snapshot_of(t: TargetId, regions: Vec<engine::Region>) -> Snapshot {
        Snapshot {
            now_us: 0,
            aggregation: 0,
            aggregated: true,
            attrs: engine::Attrs::default(),
            targets: vec![engine::TargetSnapshot { target: t, regions }],
        }
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
            k.cut(TargetId(1), Advice::Pageout, &mut p),
            (0x8000, Some(AddrRange::new(0x20000, 0x28000)))
        );
        assert!(p.is_empty());
        // A piece reaching into it: cut before it, the rest walked next.
        let mut p = AddrRange::new(0x8000, 0x14000);
        assert_eq!(
            k.cut(TargetId(1), Advice::Pageout, &mut p),
            (0, Some(AddrRange::new(0x10000, 0x14000)))
        );
        assert_eq!(p, AddrRange::new(0x8000, 0x10000));
        // Another target, or a piece clear of it: untouched.
        let mut p = AddrRange::new(0x10000, 0x20000);
        assert_eq!(k.cut(TargetId(2), Advice::Pageout, &mut p), (0, None));
        let mut p = AddrRange::new(0x30000, 0x40000);
        assert_eq!(k.cut(TargetId(1), Advice::Pageout, &mut p), (0, None));
    }

    /// Pages in a map; everything else errors.
    struct Pages(HashMap<u64, PageState>);

    impl MetricSource for Pages {
        fn meminfo(
            &self,
            _: Option<u32>,
        ) -> Result<engine::kernel::meminfo::MemInfo, crate::goal::MetricError> {
            Err(crate::goal::MetricError("none".into()))
        }
        fn some_mem_psi_total_us(&self, _: Option<&str>) -> Result<u64, crate::goal::MetricError> {
            Err(crate::goal::MetricError("none".into()))
        }
        fn cgroup_memory(
            &self,
            _: &str,
        ) -> Result<engine::kernel::cgroup::MemoryUsage, crate::goal::MetricError> {
            Err(crate::goal::MetricError("none".into()))
        }
        fn page_states(
            &self,
            _: TargetId,
            range: AddrRange,
            out: &mut Vec<PageState>,
        ) -> Result<(), crate::goal::MetricError> {
            if self.0.is_empty() {
                return Err(crate::goal::MetricError("unreadable".into()));
            }
            let mut a = range.start & !0xfff;
            while a < range.end {
                out.push(*self.0.get(&a).unwrap_or(&PageState::Out));
                a += 0x1000;
            }
            Ok(())
        }
    }

    fn snap(t: u32) -> Snapshot {
        snapshot_of(TargetId(t), vec![])
    }

    /// At the TTL the set is checked against the pagemap, not forgotten whole (forgetting
    /// it sent the next windows' quotas back to the memory already out): the runs still out
    /// stay known, a page back in memory leaves it; an unreadable pagemap forgets the set.
    #[test]
    fn at_the_ttl_the_set_is_checked_not_forgotten() {
        let mut k = KnownOut::default();
        let report = ApplyReport {
            outcomes: vec![outcome(1, 0x10000, 0x20000, 0x10000)],
            ..Default::default()
        };
        k.learn(&report, 0);
        let back = Pages(HashMap::from([(0x18000, PageState::Present)]));
        k.refresh(&snap(1), KNOWN_OUT_TTL_US - 1, &back);
        assert_eq!(k.bytes(TargetId(1)), 0x10000, "before the TTL: not read");
        k.refresh(&snap(1), KNOWN_OUT_TTL_US, &back);
        assert_eq!(k.bytes(TargetId(1)), 0xf000, "the page back left the set");
        let mut p = AddrRange::new(0x18000, 0x19000);
        assert_eq!(
            k.cut(TargetId(1), Advice::Pageout, &mut p),
            (0, None),
            "and is walked again"
        );
        let mut p = AddrRange::new(0x19000, 0x20000);
        assert_eq!(k.cut(TargetId(1), Advice::Pageout, &mut p), (0x7000, None));
        // Checked again a TTL later; then a pagemap that cannot be read forgets it.
        k.refresh(&snap(1), 2 * KNOWN_OUT_TTL_US - 1, &Pages(HashMap::new()));
        assert_eq!(k.bytes(TargetId(1)), 0xf000);
        k.refresh(&snap(1), 2 * KNOWN_OUT_TTL_US, &Pages(HashMap::new()));
        assert_eq!(k.bytes(TargetId(1)), 0);
    }
}
