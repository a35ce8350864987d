//! Refault risk: bytes advised that the record shows accessed again within a window; and
//! the same ledger as the replay's residency model (`whatif::Residency`: what is out).
//!
//! Each target keeps its advised, not-yet-accessed pages with the time they were advised.
//! A later frame's accessed regions take pages out of that set: within the window they count
//! as refaulted, after it as not. A range advised again before any access restarts its clock
//! (the pages are out either way, one fault brings each back), so no page is counted twice
//! for one fault.
//!
//! **Which pages a recorded access brings back** ([`accessed_share`]). A recorded region is
//! 2–5 MiB and its `nr_accesses` a (of the aggregation's `max_nr_accesses` m) counts the
//! sampling intervals in which one sampled page of it was found accessed, so a/m estimates
//! the share of the region's pages accessed within a sampling interval: with hot pages
//! touched at least once a sampling interval, the share of the region that is hot. The
//! region brings back that share of the advised pages it covers, not all of them — a region
//! with one hot MiB beside four paged-out cold ones brings back a fifth of them, not the
//! four. Which pages: the record says nothing finer than the region, so they are chosen by a
//! fixed order of the pages, the same in every frame and whatever the region's edges: page
//! p (its address / 4 KiB) has the rank `p · 0x9E37_79B9_7F4A_7C15 mod 2^64` (the golden
//! ratio's Weyl sequence, [`page_rank`]), and a region of share a/m brings back the pages of
//! rank below a/m · 2^64. Three properties follow:
//! - a steady frequency brings back the same pages in every frame (a static hot set is the
//!   same pages each aggregation), so repeated frames do not add up to the whole region;
//!   a higher frequency brings back more, a = m all of it;
//! - the chosen pages are spread evenly: in any run of n pages the count brought back is
//!   n · a/m to within a few pages (the sequence's low discrepancy), so a region's share is
//!   right however it is cut;
//! - the extremes are as before: a = 0 brings back nothing, a = m everything.
//!
//! What it cannot know: the share under-counts when the region's pages are touched less
//! often than once a sampling interval each (then more of them are touched over the
//! aggregation than a/m), and which pages of a region are the hot ones.

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

/// The share a region with `a` of `m` accesses stands for, as a rank bound (pages of rank
/// below it are accessed); `None`: the whole region (a ≥ m).
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
    max_nr_accesses: u64,
    pending: Vec<(u32, BTreeMap<u64, Piece>)>,
    /// Refaulted bytes per scheme.
    pub bytes: Vec<u64>,
}

impl Refaults {
    /// `max_nr_accesses`: the record's (`Attrs::max_nr_accesses`), what a region's
    /// `nr_accesses` is a share of.
    pub fn new(window_us: u64, schemes: usize, max_nr_accesses: u32) -> Self {
        Self {
            window_us,
            max_nr_accesses: max_nr_accesses.max(1) as u64,
            pending: Vec::new(),
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
            for_pages(i, |page, rank| {
                if rank >= piece.back {
                    match out.last_mut() {
                        Some(l) if l.end == page.start => l.end = page.end,
                        _ => out.push(page),
                    }
                }
            });
        }
        out
    }

    /// A frame as recorded: each accessed region brings back its share of the pages it
    /// covers (module doc). Returns the bytes refaulted by this frame.
    pub fn frame(&mut self, f: &Frame) -> u64 {
        let mut got = 0;
        let (window, m) = (self.window_us, self.max_nr_accesses);
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
            for r in t.regions.iter().filter(|r| r[2] > 0) {
                let hit = AddrRange::new(r[0], r[1]);
                let share = accessed_share(r[2], m);
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
        let b = ((a / PAGE + 1) * PAGE).min(range.end);
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
            }],
            cgroups: Vec::new(),
        }
    }

    fn out_bytes(r: &Refaults, range: AddrRange) -> u64 {
        r.pieces(7, range).iter().map(AddrRange::len).sum()
    }

    /// Regions read accessed in every sampling interval (a = m) bring back all they cover.
    #[test]
    fn accessed_within_the_window_counts_once() {
        let mut r = Refaults::new(1_000_000, 2, 1);
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
        let mut r = Refaults::new(1_000_000, 1, 1);
        r.advised(7, AddrRange::new(0, 0x2000), 0, 0);
        r.advised(7, AddrRange::new(0x1000, 0x2000), 0, 900_000);
        assert_eq!(r.frame(&frame(1_500_000, vec![[0, 0x2000, 1, 0]])), 0x1000);
        assert_eq!(r.bytes, vec![0x1000]);
        // Unknown targets and cold regions do nothing.
        assert_eq!(r.frame(&frame(1_600_000, vec![[0, 0x2000, 0, 0]])), 0);
    }

    /// A region with a of m accesses brings back a/m of the advised pages it covers, the same
    /// pages however the regions are cut, so a steady frequency does not add up over frames;
    /// a higher one brings back the difference, a = m the rest. (The old rule brought back
    /// all 4 MiB at the first access.)
    #[test]
    fn a_region_brings_back_the_share_its_accesses_stand_for() {
        let mut r = Refaults::new(u64::MAX, 1, 10);
        let all = AddrRange::new(0, 4 * MIB);
        r.advised(7, all, 0, 0);
        let near = |got: u64, want: u64| got.abs_diff(want) <= 4 * PAGE;
        let half = r.frame(&frame(1_000_000, vec![[0, 4 * MIB, 5, 0]]));
        assert!(near(half, 2 * MIB), "{half}");
        assert_eq!(out_bytes(&r, all), 4 * MIB - half);
        // The same frequency again, in one region or cut in two: nothing more.
        assert_eq!(r.frame(&frame(2_000_000, vec![[0, 4 * MIB, 5, 0]])), 0);
        assert_eq!(
            r.frame(&frame(
                3_000_000,
                vec![
                    [0, MIB, 5, 0],
                    [MIB, 3 * MIB, 4, 0],
                    [3 * MIB, 4 * MIB, 5, 0]
                ]
            )),
            0
        );
        // 8 of 10: three tenths more.
        let more = r.frame(&frame(4_000_000, vec![[0, 4 * MIB, 8, 0]]));
        assert!(near(half + more, 4 * MIB * 8 / 10), "{half} + {more}");
        // 10 of 10: the rest.
        let rest = r.frame(&frame(5_000_000, vec![[0, 4 * MIB, 10, 0]]));
        assert_eq!(half + more + rest, 4 * MIB);
        assert!(r.pieces(7, all).is_empty());
        assert_eq!(r.bytes, vec![4 * MIB]);
    }

    /// The pages brought back are spread evenly: any run of n pages gives back n · a/m to
    /// within a few pages, wherever it starts.
    #[test]
    fn the_share_is_even_in_any_run_of_pages() {
        for (start, pages) in [(0, 1280u64), (0x7f12_3456_7000, 512), (0x5555_0000_1000, 9)] {
            for a in 0..=10u64 {
                let mut r = Refaults::new(u64::MAX, 1, 10);
                let range = AddrRange::new(start, start + pages * PAGE);
                r.advised(7, range, 0, 0);
                let got = r.frame(&frame(1, vec![[range.start, range.end, a, 0]])) / PAGE;
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
        let mut r = Refaults::new(u64::MAX, 1, 4);
        let all = AddrRange::new(0x10_0000, 0x20_0000);
        r.advised(7, all, 0, 0);
        let back = r.frame(&frame(1_000, vec![[all.start, all.end, 1, 0]]));
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
        let second = r.frame(&frame(3_000, vec![[all.start, all.end, 4, 0]]));
        assert_eq!(second, all.len());
        assert_eq!(r.bytes, vec![back + all.len()]);
    }

    /// Bad regions (empty, reversed) and accesses in the frame of the advice change nothing.
    #[test]
    fn empty_regions_and_same_frame_accesses_change_nothing() {
        let mut r = Refaults::new(u64::MAX, 1, 10);
        let all = AddrRange::new(0x1000, 0x9000);
        r.advised(7, all, 0, 5);
        r.advised(7, AddrRange::new(0x3000, 0x3000), 0, 5);
        let f = frame(5, vec![[0x2000, 0x2000, 10, 0], [0x8000, 0x2000, 10, 0]]);
        assert_eq!(r.frame(&f), 0);
        assert_eq!(r.frame(&frame(5, vec![[0, 0x10000, 10, 0]])), 0);
        assert_eq!(r.pieces(7, AddrRange::new(0, 0x10000)), vec![all]);
    }
}
