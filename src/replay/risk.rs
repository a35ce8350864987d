//! Refault risk: bytes advised that the record shows accessed again within a window; and
//! the same ledger as the replay's residency model (`whatif::Residency`: what is out).
//!
//! Each target keeps its advised, not-yet-accessed pages with the time they were advised.
//! A later frame's accessed regions take pages out of that set: within the window they count
//! as refaulted, after it as not. A range advised again before any access restarts its clock
//! (the pages are out either way, one fault brings each back), so no page is counted twice
//! for one fault.
//!
//! **Which pages a recorded access brings back.** A recorded region is 2–5 MiB, and its
//! `nr_accesses` a > 0 says that some of its pages were accessed, not which. Two cases:
//! - *The accesses can be those of memory the record showed accessed before.* The region
//!   covers memory that is resident in the model and lay in an accessed region of the
//!   target's previous frame (whose regions were cut elsewhere: a finer look at the same
//!   memory): the hot set where it was, and a region reaching from it into paged-out memory
//!   (its edges move every aggregation). The accesses are taken to be mostly there, and the
//!   region brings back only the share of its paged-out pages that its access frequency
//!   stands for ([`accessed_share`]): a/m, m the frame's hottest region. A region with one
//!   hot MiB beside four paged-out cold ones brings back about a fifth of them, not the four.
//! - *Otherwise* the accesses can only be the paged-out pages' (a hot set that moved onto
//!   memory the policy paged out, as in the moving hot set), and the region brings back all
//!   of them, however low its count: the probe's count of a newly hot region climbs over
//!   several aggregations (`finalize_unknown` fills its Unknown samples in at the previous
//!   rate) and a hot region reads 4–6 of a nominal 10 (docs/performance.md, "Replay vs
//!   reality"), while every page of it is touched many times a second. A share there would
//!   under-count what the live run faults back.
//!
//! The scale m: the share of a region's pages accessed within a sampling interval is a/n (n:
//! the aggregation's samples), but n is not in the record, and it is not the attributes'
//! `max_nr_accesses` (aggr / sample): under the refault probe a wholly hot region reads 4–6
//! of a nominal 10 (whether fewer samples were taken or hot samples were found not back, the
//! record does not say). So m is the frame's hottest region, the largest
//! `nr_accesses` over its targets — the scale the kernel also takes for its merge threshold
//! (`kdamond_fn()`, mm/damon/core.c 6.12, l. 2174-2178: `max_nr_accesses =
//! ctx->ops.check_accesses(ctx)`, then `kdamond_merge_regions(ctx, max_nr_accesses / 10,
//! …)`; madvd's monitor the same, `finalize_unknown`'s return). Since m ≤ n, a/m never
//! under-states a/n.
//!
//! Which pages make the share: the record says nothing finer than the region, so they are
//! chosen by a fixed order of the pages, the same in every frame whatever the region's
//! edges: page p (its address / 4 KiB) has the rank `p · 0x9E37_79B9_7F4A_7C15 mod 2^64`
//! (the golden ratio's Weyl sequence, [`page_rank`]), and a share s brings back the pages
//! of rank below s · 2^64. So:
//! - a steady frequency brings back the same pages in every frame (a static hot set is the
//!   same pages each aggregation), so repeated frames do not add up to the whole region;
//!   a higher frequency brings back more, the hottest region all of it;
//! - the chosen pages are spread evenly: in any run of k pages the count brought back is
//!   k · s to within a few pages (the sequence's low discrepancy), so a region's share is
//!   right however it is cut.
//!
//! **Evidence.** A region's count is not always news: where its samples were few or
//! Unknown, `finalize_unknown` carries its earlier rate, so a slot of a moving hot set reads
//! 3–13 of 20 for tens of seconds after its last access under the refault probe's budget
//! (docs/performance.md, "Replay vs reality"). Version-3 records say, per region, how many
//! of the aggregation's known answers were Accessed (`seen`); a region with a count but no
//! accessed answer in the frame brings nothing back in it (its pages come back in the frame
//! where an answer shows them accessed). Older records have only the count, and every
//! counted region is taken as accessed, as before.
//!
//! What it cannot know: which pages of a region are the hot ones; a region whose own pages
//! turn hot beside hot memory gets its share, not all (a hot set growing at its edge); and
//! a region read accessed with nothing accessed beside it (a probe's false answer, a
//! lukewarm region whose few hot pages are scattered) brings back all it covers, as before.

use crate::record::Frame;
use engine::AddrRange;
use std::collections::BTreeMap;

/// The page size ranks are counted in (records are of 4 KiB pages).
const PAGE: u64 = 4096;

/// 2^64 / φ, odd: the step of the golden ratio's Weyl sequence in 64-bit fixed point.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The rank of the page at `addr`: a page is accessed in a region of share s when its rank
/// is below s · 2^64.
pub fn page_rank(addr: u64) -> u64 {
    (addr / PAGE).wrapping_mul(GOLDEN)
}

/// The share a region with `a` accesses stands for in a frame whose hottest region has `m`,
/// as a rank bound (pages of rank below it are accessed); `None`: the whole region (a ≥ m).
pub fn accessed_share(a: u64, m: u64) -> Option<u64> {
    let m = m.max(1);
    (a < m).then(|| (((a as u128) << 64) / m as u128) as u64)
}

/// One pending piece (keyed by its start): the pages of `start..end` whose rank is at least
/// `back` are out (`back` 0: all of them), advised by `scheme` at `at` µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    end: u64,
    scheme: usize,
    at: u64,
    back: u64,
}

impl Piece {
    fn same(&self, o: &Piece) -> bool {
        (self.scheme, self.at, self.back) == (o.scheme, o.at, o.back)
    }
}

#[derive(Debug)]
pub struct Refaults {
    window_us: u64,
    pending: Vec<(u32, BTreeMap<u64, Piece>)>,
    prev: Vec<(u32, Vec<AddrRange>)>,
    /// Refaulted bytes per scheme.
    pub bytes: Vec<u64>,
}

impl Refaults {
    pub fn new(window_us: u64, schemes: usize) -> Self {
        Self {
            window_us,
            pending: Vec::new(),
            prev: Vec::new(),
            bytes: vec![0; schemes],
        }
    }

    fn target(&mut self, id: u32) -> &mut BTreeMap<u64, Piece> {
        let i = match self.pending.iter().position(|(t, _)| *t == id) {
            Some(i) => i,
            None => {
                self.pending.push((id, BTreeMap::new()));
                self.pending.len() - 1
            }
        };
        &mut self.pending[i].1
    }

    /// `range` of target `id` advised by `scheme` at `t_us`: all of its pages are out.
    pub fn advised(&mut self, id: u32, range: AddrRange, scheme: usize, t_us: u64) {
        if range.is_empty() {
            return;
        }
        let p = self.target(id);
        for (start, piece) in take_overlapping(p, range) {
            keep_outside(p, start, piece, range);
        }
        let new = Piece {
            end: range.end,
            scheme,
            at: t_us,
            back: 0,
        };
        p.insert(range.start, new);
        coalesce(p, range.start);
    }

    /// The pages of `range` of target `id` advised and not accessed since, as runs in
    /// address order.
    pub fn pieces(&self, id: u32, range: AddrRange) -> Vec<AddrRange> {
        let mut out: Vec<AddrRange> = Vec::new();
        let Some((_, p)) = self.pending.iter().find(|(t, _)| *t == id) else {
            return out;
        };
        for (&start, piece) in overlapping(p, range) {
            let Some(i) = AddrRange::new(start, piece.end).intersection(&range) else {
                continue;
            };
            let mut push = |run: AddrRange| match out.last_mut() {
                Some(l) if l.end == run.start => l.end = run.end,
                _ => out.push(run),
            };
            if piece.back == 0 {
                push(i);
                continue;
            }
            for_pages(i, |page, rank| {
                if rank >= piece.back {
                    push(page);
                }
            });
        }
        out
    }

    /// A frame as recorded: each accessed region brings back the pages it covers, all of
    /// them or its share (module doc). Returns the bytes refaulted by this frame.
    pub fn frame(&mut self, f: &Frame) -> u64 {
        let mut got = 0;
        let window = self.window_us;
        // The frame's scale: its hottest region (module doc).
        let m = f
            .targets
            .iter()
            .flat_map(|t| t.regions.iter().map(|r| r[2]))
            .max()
            .unwrap_or(0);
        let prev = std::mem::take(&mut self.prev);
        self.prev = f
            .targets
            .iter()
            .map(|t| (t.id, accessed_ranges(&t.regions)))
            .collect();
        for t in &f.targets {
            let Some(i) = self.pending.iter().position(|(id, _)| *id == t.id) else {
                continue;
            };
            let p = &mut self.pending[i].1;
            // Expired pieces can no longer count.
            p.retain(|_, x| f.t_us.saturating_sub(x.at) <= window);
            if p.is_empty() {
                continue;
            }
            let before = prev
                .iter()
                .find(|(id, _)| *id == t.id)
                .map_or(&[][..], |(_, v)| v.as_slice());
            // Accessed in this frame (module doc, "Evidence").
            let accessed = (0..t.regions.len()).filter(|&i| t.seen_accessed(i));
            for r in accessed.map(|i| &t.regions[i]) {
                let hit = AddrRange::new(r[0], r[1]);
                // All of it, unless the accesses can be those of resident memory the
                // previous frame showed accessed (module doc).
                let share = if explained(p, before, hit) {
                    accessed_share(r[2], m)
                } else {
                    None
                };
                for (start, piece) in take_overlapping(p, hit) {
                    let x = AddrRange::new(start, piece.end);
                    let Some(i) = x.intersection(&hit) else {
                        p.insert(start, piece);
                        continue;
                    };
                    let raised = share.is_none_or(|s| s > piece.back);
                    // Advised in this frame: its accesses came before the advice.
                    if piece.at >= f.t_us || !raised {
                        p.insert(start, piece);
                        continue;
                    }
                    let b = bytes_ranked(i, piece.back, share);
                    self.bytes[piece.scheme] += b;
                    got += b;
                    keep_outside(p, start, piece, hit);
                    if let Some(s) = share {
                        p.insert(i.start, Piece { back: s, ..piece }.ending(i.end));
                    }
                }
            }
        }
        got
    }
}

/// The accessed regions of a frame's target, as sorted ranges.
fn accessed_ranges(regions: &[[u64; 4]]) -> Vec<AddrRange> {
    let mut acc: Vec<&[u64; 4]> = regions.iter().filter(|r| r[2] > 0 && r[0] < r[1]).collect();
    acc.sort_unstable_by_key(|r| r[0]);
    let mut out: Vec<AddrRange> = Vec::new();
    for r in acc {
        match out.last_mut() {
            Some(l) if l.end == r[0] => l.end = r[1],
            _ => out.push(AddrRange::new(r[0], r[1])),
        }
    }
    out
}

/// Does `hit` cover memory that is resident (not in `p`) and was accessed in the previous
/// frame (`before`, sorted)?
fn explained(p: &BTreeMap<u64, Piece>, before: &[AddrRange], hit: AddrRange) -> bool {
    let from = before.partition_point(|x| x.end <= hit.start);
    before[from..]
        .iter()
        .take_while(|x| x.start < hit.end)
        .filter_map(|x| x.intersection(&hit))
        .any(|x| {
            let out: u64 = overlapping(p, x)
                .filter_map(|(&s, pc)| {
                    AddrRange::new(s, pc.end)
                        .intersection(&x)
                        .map(|y| bytes_ranked(y, pc.back, None))
                })
                .sum();
            out < x.len()
        })
}

impl Piece {
    fn ending(self, end: u64) -> Piece {
        Piece { end, ..self }
    }
}

/// The pieces of `p` overlapping `range`, in address order.
fn overlapping(p: &BTreeMap<u64, Piece>, range: AddrRange) -> impl Iterator<Item = (&u64, &Piece)> {
    // The piece starting before `range` may reach into it; the others start inside it.
    let before = p
        .range(..range.start)
        .next_back()
        .filter(|(_, x)| x.end > range.start && !range.is_empty());
    before
        .into_iter()
        .chain(p.range(range.start..range.end.max(range.start)))
}

/// Remove and return the pieces of `p` overlapping `range`.
fn take_overlapping(p: &mut BTreeMap<u64, Piece>, range: AddrRange) -> Vec<(u64, Piece)> {
    let keys: Vec<u64> = overlapping(p, range).map(|(&k, _)| k).collect();
    keys.into_iter()
        .filter_map(|k| p.remove(&k).map(|x| (k, x)))
        .collect()
}

/// Put back the parts of `piece` (starting at `start`) outside `hole`.
fn keep_outside(p: &mut BTreeMap<u64, Piece>, start: u64, piece: Piece, hole: AddrRange) {
    if start < hole.start {
        p.insert(start, piece.ending(hole.start.min(piece.end)));
    }
    if hole.end < piece.end {
        p.insert(hole.end.max(start), piece);
    }
}

/// Merge the piece at `start` with its neighbours when they continue it with the same
/// scheme, time and share.
fn coalesce(p: &mut BTreeMap<u64, Piece>, start: u64) {
    let Some(mut cur) = p.get(&start).copied() else {
        return;
    };
    let mut at = start;
    if let Some((&s, prev)) = p.range(..start).next_back() {
        if prev.end == start && prev.same(&cur) {
            p.remove(&start);
            at = s;
        }
    }
    if let Some(next) = p.get(&cur.end).copied() {
        if next.same(&cur) {
            p.remove(&cur.end);
            cur.end = next.end;
        }
    }
    p.insert(at, cur);
}

/// `f(page, rank)` for each page of `range` (clipped to `range`), in address order.
fn for_pages(range: AddrRange, mut f: impl FnMut(AddrRange, u64)) {
    let mut a = range.start;
    while a < range.end {
        let b = (a / PAGE)
            .saturating_add(1)
            .saturating_mul(PAGE)
            .min(range.end);
        f(AddrRange::new(a, b), page_rank(a));
        a = b;
    }
}

/// Bytes of `range` whose pages' rank is in `lo..hi` (`hi` `None`: no upper bound).
fn bytes_ranked(range: AddrRange, lo: u64, hi: Option<u64>) -> u64 {
    if lo == 0 && hi.is_none() {
        return range.len();
    }
    let mut n = 0;
    for_pages(range, |page, rank| {
        if rank >= lo && hi.is_none_or(|h| rank < h) {
            n += page.len();
        }
    });
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FrameTarget;

    const MIB: u64 = 1 << 20;

    fn frame(t_us: u64, regions: Vec<[u64; 4]>) -> Frame {
        Frame {
            t_us,
            aggr: t_us / 100_000,
            targets: vec![FrameTarget {
                id: 7,
                regions,
                mappings: Vec::new(),
                absent: Vec::new(),
                seen: Vec::new(),
            }],
            cgroups: Vec::new(),
        }
    }

    /// `regions` and, far away, the frame's hottest region: accessed at all `m` samples.
    fn frame_m(t_us: u64, m: u64, mut regions: Vec<[u64; 4]>) -> Frame {
        regions.push([0xffff_0000_0000, 0xffff_0010_0000, m, 0]);
        frame(t_us, regions)
    }

    fn out_bytes(r: &Refaults, range: AddrRange) -> u64 {
        r.pieces(7, range).iter().map(AddrRange::len).sum()
    }

    /// A frame's hottest region brings back all it covers.
    #[test]
    fn accessed_within_the_window_counts_once() {
        let mut r = Refaults::new(1_000_000, 2);
        r.advised(7, AddrRange::new(0, 0x4000), 1, 0);
        // Same frame time as the advice: not a refault yet.
        assert_eq!(r.frame(&frame(0, vec![[0, 0x4000, 3, 0]])), 0);
        assert_eq!(
            r.frame(&frame(500_000, vec![[0x1000, 0x2000, 1, 0]])),
            0x1000
        );
        // Again: already faulted back.
        assert_eq!(r.frame(&frame(600_000, vec![[0x1000, 0x2000, 1, 0]])), 0);
        assert_eq!(r.bytes, vec![0, 0x1000]);
        assert_eq!(
            r.pieces(7, AddrRange::new(0, 0x8000)),
            vec![AddrRange::new(0, 0x1000), AddrRange::new(0x2000, 0x4000)]
        );
    }

    #[test]
    fn after_the_window_does_not_count_and_readvice_restarts_the_clock() {
        let mut r = Refaults::new(1_000_000, 1);
        r.advised(7, AddrRange::new(0, 0x2000), 0, 0);
        r.advised(7, AddrRange::new(0x1000, 0x2000), 0, 900_000);
        assert_eq!(r.frame(&frame(1_500_000, vec![[0, 0x2000, 1, 0]])), 0x1000);
        assert_eq!(r.bytes, vec![0x1000]);
        // Unknown targets and cold regions do nothing.
        assert_eq!(r.frame(&frame(1_600_000, vec![[0, 0x2000, 0, 0]])), 0);
    }

    /// A version-3 frame: each region's count and its accessed answers (`seen`).
    fn frame_seen(t_us: u64, regions: Vec<([u64; 4], u32)>) -> Frame {
        let mut f = frame(t_us, regions.iter().map(|(r, _)| *r).collect());
        f.targets[0].seen = regions.iter().map(|(_, s)| *s).collect();
        f
    }

    /// A region whose count is carried (no accessed answer among its samples this
    /// aggregation) brings nothing back; the frame where a sample of it is found accessed
    /// does. Without `seen` (an older record) the count alone brings it back.
    #[test]
    fn a_carried_count_brings_nothing_back_an_accessed_answer_does() {
        let mut r = Refaults::new(u64::MAX, 1);
        let out = AddrRange::new(0, 2 * MIB);
        r.advised(7, out, 0, 0);
        // A once-hot slot: 11 of 20, carried; no accessed answer. Twice.
        for t in [1_000_000, 2_000_000] {
            assert_eq!(r.frame(&frame_seen(t, vec![([0, 2 * MIB, 11, 3], 0)])), 0);
        }
        assert_eq!(out_bytes(&r, out), 2 * MIB);
        // One accessed answer: the hot set is back on it.
        assert_eq!(
            r.frame(&frame_seen(3_000_000, vec![([0, 2 * MIB, 12, 0], 1)])),
            2 * MIB
        );
        // The same count in a record without `seen`: back at once.
        let mut old = Refaults::new(u64::MAX, 1);
        old.advised(7, out, 0, 0);
        assert_eq!(
            old.frame(&frame(1_000_000, vec![[0, 2 * MIB, 11, 3]])),
            2 * MIB
        );
    }

    /// The previous frame: `hot`, resident, accessed (beside the advised memory).
    fn hot_before(r: &mut Refaults, t_us: u64, hot: AddrRange) {
        r.frame(&frame_m(t_us, 10, vec![[hot.start, hot.end, 6, 0]]));
    }

    /// A region that covers resident memory the previous frame showed accessed (the hot
    /// MiB at 4..5 MiB) as well as advised memory: with a accesses, in a frame whose
    /// hottest region has m, it brings back a/m of the advised pages, the same pages however
    /// the regions are cut, so a steady frequency does not add up over frames; a higher one
    /// brings back the difference, the hottest the rest. (The old rule brought back all
    /// 4 MiB at the first access.)
    #[test]
    fn a_region_beside_accessed_memory_brings_back_its_share() {
        let mut r = Refaults::new(u64::MAX, 1);
        let all = AddrRange::new(0, 4 * MIB);
        r.advised(7, all, 0, 0);
        hot_before(&mut r, 500_000, AddrRange::new(4 * MIB, 5 * MIB));
        let near = |got: u64, want: u64| got.abs_diff(want) <= 4 * PAGE;
        let half = r.frame(&frame_m(1_000_000, 10, vec![[0, 5 * MIB, 5, 0]]));
        assert!(near(half, 2 * MIB), "{half}");
        assert_eq!(out_bytes(&r, all), 4 * MIB - half);
        // The same frequency again, in one region or cut in three: nothing more.
        assert_eq!(
            r.frame(&frame_m(2_000_000, 10, vec![[0, 5 * MIB, 5, 0]])),
            0
        );
        let cut = vec![
            [0, MIB, 5, 0],
            [MIB, 3 * MIB, 4, 0],
            [3 * MIB, 5 * MIB, 5, 0],
        ];
        assert_eq!(r.frame(&frame_m(3_000_000, 10, cut)), 0);
        // 8 of 10: three tenths more.
        let more = r.frame(&frame_m(4_000_000, 10, vec![[0, 5 * MIB, 8, 0]]));
        assert!(near(half + more, 4 * MIB * 8 / 10), "{half} + {more}");
        // The frame's hottest (6 of a nominal 10: the scale is the frame's, not the
        // attributes'): the rest.
        let rest = r.frame(&frame_m(5_000_000, 6, vec![[0, 5 * MIB, 6, 0]]));
        assert_eq!(half + more + rest, 4 * MIB);
        assert!(r.pieces(7, all).is_empty());
        assert_eq!(r.bytes, vec![4 * MIB]);
    }

    /// A region whose accesses cannot be those of accessed resident memory beside it brings
    /// back all the advised pages it covers, however low its count: a hot set that moved
    /// onto paged-out memory. So too when the memory accessed before is itself paged out.
    #[test]
    fn a_region_with_no_accessed_resident_memory_brings_back_all() {
        let mut r = Refaults::new(u64::MAX, 1);
        let all = AddrRange::new(0, 4 * MIB);
        r.advised(7, all, 0, 0);
        // Nothing accessed before.
        assert_eq!(
            r.frame(&frame_m(1_000_000, 10, vec![[0, 2 * MIB, 1, 0]])),
            2 * MIB
        );
        // Accessed before, but out: the accesses are the advised pages'.
        r.advised(7, AddrRange::new(0, 2 * MIB), 0, 1_500_000);
        let got = r.frame(&frame_m(2_000_000, 10, vec![[MIB, 4 * MIB, 1, 0]]));
        assert_eq!(got, 3 * MIB);
        // Accessed before and resident (0..1 MiB, never advised): the share only.
        let mut r = Refaults::new(u64::MAX, 1);
        r.advised(7, AddrRange::new(MIB, 4 * MIB), 0, 0);
        hot_before(&mut r, 500_000, AddrRange::new(0, MIB));
        let got = r.frame(&frame_m(1_000_000, 10, vec![[0, 4 * MIB, 1, 0]]));
        assert!(got.abs_diff(3 * MIB / 10) <= 4 * PAGE, "{got}");
    }

    /// Half of the frame's hottest region brings back half, whatever the nominal maximum.
    #[test]
    fn the_scale_is_the_frames_hottest_region() {
        let mut r = Refaults::new(u64::MAX, 1);
        let all = AddrRange::new(0, 4 * MIB);
        r.advised(7, all, 0, 0);
        hot_before(&mut r, 500_000, AddrRange::new(4 * MIB, 5 * MIB));
        let got = r.frame(&frame_m(1_000_000, 6, vec![[0, 5 * MIB, 3, 0]]));
        assert!(got.abs_diff(2 * MIB) <= 4 * PAGE, "{got}");
    }

    /// The pages brought back are spread evenly: any run of n pages gives back n · a/m to
    /// within a few pages, wherever it starts.
    #[test]
    fn the_share_is_even_in_any_run_of_pages() {
        for (start, pages) in [(0, 1280u64), (0x7f12_3456_7000, 512), (0x5555_0000_1000, 9)] {
            for a in 0..=10u64 {
                let mut r = Refaults::new(u64::MAX, 1);
                let range = AddrRange::new(start, start + pages * PAGE);
                r.advised(7, range, 0, 0);
                let hot = AddrRange::new(range.end, range.end + PAGE);
                hot_before(&mut r, 1, hot);
                let f = frame_m(2, 10, vec![[range.start, hot.end, a, 0]]);
                let got = r.frame(&f) / PAGE;
                let want = pages * a / 10;
                assert!(
                    got.abs_diff(want) <= 3,
                    "{start:#x} {pages} {a}: {got} vs {want}"
                );
                assert_eq!(out_bytes(&r, range) / PAGE, pages - got);
            }
        }
    }

    /// The pages of a partly-back piece that the scheme advises again are out again: the
    /// whole range is out, and a later access counts the re-advised pages only once.
    #[test]
    fn pages_advised_again_after_a_partial_refault_are_out_again() {
        let mut r = Refaults::new(u64::MAX, 1);
        let all = AddrRange::new(0x10_0000, 0x20_0000);
        let hot = AddrRange::new(all.end, all.end + MIB);
        r.advised(7, all, 0, 0);
        hot_before(&mut r, 500, hot);
        let back = r.frame(&frame_m(1_000, 4, vec![[all.start, hot.end, 1, 0]]));
        assert!(back > 0 && back < all.len() / 2, "{back}");
        // What came back is what the residency cut would read resident: advise exactly that.
        let out = r.pieces(7, all);
        let mut a = all.start;
        for o in out.iter().chain([&AddrRange::new(all.end, all.end)]) {
            if a < o.start {
                r.advised(7, AddrRange::new(a, o.start), 0, 2_000);
            }
            a = o.end;
        }
        assert_eq!(r.pieces(7, all), vec![all]);
        let second = r.frame(&frame_m(3_000, 4, vec![[all.start, all.end, 4, 0]]));
        assert_eq!(second, all.len());
        assert_eq!(r.bytes, vec![back + all.len()]);
    }

    /// Bad regions (empty, reversed) and accesses in the frame of the advice change nothing.
    #[test]
    fn empty_regions_and_same_frame_accesses_change_nothing() {
        let mut r = Refaults::new(u64::MAX, 1);
        let all = AddrRange::new(0x1000, 0x9000);
        r.advised(7, all, 0, 5);
        r.advised(7, AddrRange::new(0x3000, 0x3000), 0, 5);
        let f = frame(5, vec![[0x2000, 0x2000, 10, 0], [0x8000, 0x2000, 10, 0]]);
        assert_eq!(r.frame(&f), 0);
        assert_eq!(r.frame(&frame(5, vec![[0, 0x10000, 10, 0]])), 0);
        assert_eq!(r.pieces(7, AddrRange::new(0, 0x10000)), vec![all]);
    }
}
