//! The learned hot set of a page-out scheme: pages of its own page-outs that came back.
//!
//! On a host without per-page access bits (no `page_idle`, no soft-dirty, no DAMON vaddr), a
//! private anonymous page's access is visible only through a fault. A DAMON region that mixes
//! hot 4 KiB pages with idle ones (a hot set scattered at page granularity) never has
//! `nr_accesses == 0`: every region shows the hot fraction of its samples, and a cold-only
//! pattern (`accesses: 0..0`) never matches it. A page-out scheme that also takes *lukewarm*
//! regions (a low but non-zero, sustained access frequency) pages such a region out whole;
//! its hot pages fault back at once. Those refaults are evidence at page granularity: the
//! scheme's refault ledger ([`crate::refault`]) finds them present again in pagemap, and this
//! set remembers them, so the scheme's later advice cuts them out, and so does the advice of
//! the policy's other page-out schemes (a page that came back is hot whichever scheme moved
//! it; `runtime::walk`), like the actuator's residency cut: not charged to the quota,
//! counted as filtered, no age reset. The one-time
//! refault of the hot pages is the price; after it the region is its hot pages (in memory,
//! cut out) and its idle pages (out, cut by the residency cut): nothing is advised again.
//!
//! What enters: pages the scheme's ledger saw go from memory to swap and found present again
//! at a later scan (refaults), and pages present before a wholly applied page-out and still
//! present right after it (faulted back before the ledger's read, or kept in by the kernel).
//!
//! How long a page stays learned: until it is old again — [`HotSet::forget_old`] clears the
//! pages of every region that has had no access for at least the scheme's minimum age (its
//! moving sum under one access and no access in its last complete aggregation: `idle`).
//! While a learned page stays hot its region keeps showing accesses (the refault probe's
//! samples are uniform over the region and the learned pages are its resident ones), so it
//! stays learned. Pages
//! under no region (unmapped), and targets that are gone, are forgotten at once.
//!
//! Bounded memory: one 64-byte bitmap per 2 MiB chunk with a learned page, at most
//! [`MAX_CHUNKS`] chunks (16 GiB of address space, about 1 MiB); beyond it the chunks learned
//! longest ago are dropped first (their pages may then be paged out once more and relearned).
//!
//! Not in the kernel: DAMOS has no per-page memory of a scheme's page-outs
//! (`damos_apply_scheme()`, mm/damon/core.c 6.12, applies the action to the whole region;
//! the kernel relies on the accessed bit of each PTE, which `MADV_PAGEOUT` checks through
//! `folio_referenced()` in reclaim). See docs/architecture.md "Learning the hot pages of
//! lukewarm regions".

use engine::{AddrRange, Snapshot, TargetId};
use std::collections::{BTreeMap, HashMap};

/// Pages per chunk: one 64-byte bitmap (2 MiB of 4 KiB pages).
pub const CHUNK_PAGES: u64 = 512;
const WORDS: usize = (CHUNK_PAGES / 64) as usize;

/// At most this many chunks are kept (16 GiB of address space of 4 KiB pages).
pub const MAX_CHUNKS: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    bits: [u64; WORDS],
    /// When a page of it was last learned, µs.
    at_us: u64,
}

/// The pages one scheme learned are hot, per target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotSet {
    page_size: u64,
    chunks: HashMap<TargetId, BTreeMap<u64, Chunk>>,
    nr_chunks: usize,
    pages: u64,
    /// Pages learned and chunks dropped by the cap, since the start.
    pub total_learned_pages: u64,
    pub evicted_chunks: u64,
}

impl HotSet {
    pub fn new(page_size: u64) -> Self {
        Self {
            page_size: page_size.max(1),
            chunks: HashMap::new(),
            nr_chunks: 0,
            pages: 0,
            total_learned_pages: 0,
            evicted_chunks: 0,
        }
    }

    /// Bytes learned hot now.
    pub fn bytes(&self) -> u64 {
        self.pages * self.page_size
    }

    fn pages_of(&self, range: AddrRange) -> (u64, u64) {
        (
            range.start / self.page_size,
            range.end.div_ceil(self.page_size),
        )
    }

    /// Learn the pages of `range` of `target` hot at `now_us`.
    pub fn learn(&mut self, target: TargetId, range: AddrRange, now_us: u64) {
        let (first, end) = self.pages_of(range);
        let map = self.chunks.entry(target).or_default();
        let mut added = 0;
        let mut new_chunks = 0;
        for page in first..end {
            let chunk = map.entry(page / CHUNK_PAGES).or_insert_with(|| {
                new_chunks += 1;
                Chunk {
                    bits: [0; WORDS],
                    at_us: now_us,
                }
            });
            chunk.at_us = chunk.at_us.max(now_us);
            let (w, b) = (((page % CHUNK_PAGES) / 64) as usize, page % 64);
            if chunk.bits[w] & (1 << b) == 0 {
                chunk.bits[w] |= 1 << b;
                added += 1;
            }
        }
        self.nr_chunks += new_chunks;
        self.pages += added;
        self.total_learned_pages += added;
        if self.nr_chunks > MAX_CHUNKS {
            self.evict();
        }
    }

    /// Over the cap: drop the chunks learned longest ago, down to 7/8 of the cap (amortised).
    fn evict(&mut self) {
        let mut all: Vec<(u64, TargetId, u64)> = self
            .chunks
            .iter()
            .flat_map(|(t, m)| m.iter().map(move |(c, ch)| (ch.at_us, *t, *c)))
            .collect();
        all.sort_unstable();
        let drop = self.nr_chunks - MAX_CHUNKS / 8 * 7;
        for &(_, t, c) in all.iter().take(drop) {
            if let Some(m) = self.chunks.get_mut(&t) {
                if let Some(ch) = m.remove(&c) {
                    self.pages -= count(&ch.bits);
                    self.nr_chunks -= 1;
                    self.evicted_chunks += 1;
                }
            }
        }
        self.chunks.retain(|_, m| !m.is_empty());
    }

    /// Cut `range` of `target`: emit each maximal run of pages not learned, in order, and
    /// return the bytes learned (cut out). Emitted + returned bytes == `range.len()` for a
    /// page-aligned range.
    pub fn cut(&self, target: TargetId, range: AddrRange, mut emit: impl FnMut(AddrRange)) -> u64 {
        let Some(map) = self.chunks.get(&target) else {
            emit(range);
            return 0;
        };
        let (first, end) = self.pages_of(range);
        let mut cut = 0;
        // The start of the run of pages not learned being built, if any.
        let mut run: Option<u64> = Some(range.start);
        let mut page = first;
        while page < end {
            let addr = range.start.max(self.addr(page));
            let Some(chunk) = map.get(&(page / CHUNK_PAGES)) else {
                // No learned page in this chunk: all of it belongs to the run.
                run.get_or_insert(addr);
                page = (page / CHUNK_PAGES + 1) * CHUNK_PAGES;
                continue;
            };
            let (w, b) = (((page % CHUNK_PAGES) / 64) as usize, page % 64);
            if chunk.bits[w] & (1 << b) != 0 {
                if let Some(s) = run.take() {
                    if s < addr {
                        emit(AddrRange::new(s, addr));
                    }
                }
                cut += self.addr(page + 1).min(range.end) - addr;
            } else {
                run.get_or_insert(addr);
            }
            page += 1;
        }
        if let Some(s) = run {
            if s < range.end {
                emit(AddrRange::new(s, range.end));
            }
        }
        cut
    }

    fn addr(&self, page: u64) -> u64 {
        page * self.page_size
    }

    /// Forget what is old again, at a snapshot taken at `now_us`: the pages of each region
    /// with no access (`nr_accesses == 0`, the moving sum) and an age of at least `min_age`
    /// aggregations, when their chunk learned nothing for `min_age_us` either (a refault is
    /// an access the monitor may not have sampled: the page is no older than its learning);
    /// the pages under no region of their target; the targets not in the snapshot.
    pub fn forget_old(&mut self, snap: &Snapshot, min_age: u32, min_age_us: u64, now_us: u64) {
        let ps = self.page_size;
        let mut forgotten = 0u64;
        let mut dropped = 0usize;
        self.chunks.retain(|t, map| {
            let Some(tr) = snap.targets.iter().find(|x| x.target == *t) else {
                dropped += map.len();
                forgotten += map.values().map(|c| count(&c.bits)).sum::<u64>();
                return false;
            };
            let regions = &tr.regions;
            map.retain(|&c, chunk| {
                let (cs, ce) = (c * CHUNK_PAGES * ps, (c + 1) * CHUNK_PAGES * ps);
                let mut i = regions.partition_point(|r| r.end() <= cs);
                let mut covered = cs;
                let before = count(&chunk.bits);
                let idle_since_learned = now_us.saturating_sub(chunk.at_us) >= min_age_us;
                while i < regions.len() && regions[i].start() < ce {
                    let r = &regions[i];
                    // Pages before this region (a hole) are unmapped: forget them.
                    clear(&mut chunk.bits, cs, covered, r.start().max(cs), ps);
                    if idle_since_learned && idle(r, snap.aggregated) && r.age >= min_age {
                        clear(&mut chunk.bits, cs, r.start().max(cs), r.end().min(ce), ps);
                    }
                    covered = r.end().min(ce);
                    i += 1;
                }
                clear(&mut chunk.bits, cs, covered, ce, ps);
                forgotten += before - count(&chunk.bits);
                let keep = chunk.bits.iter().any(|w| *w != 0);
                if !keep {
                    dropped += 1;
                }
                keep
            });
            !map.is_empty()
        });
        self.pages -= forgotten;
        self.nr_chunks -= dropped;
    }

    /// A target is gone: forget its pages.
    pub fn drop_target(&mut self, target: TargetId) {
        if let Some(map) = self.chunks.remove(&target) {
            self.nr_chunks -= map.len();
            self.pages -= map.values().map(|c| count(&c.bits)).sum::<u64>();
        }
    }
}

/// Whether a region read no access: in its moving sum (what a scheme matches on, floored as
/// `__damos_valid_target()` floors it, mm/damon/core.c 6.12) and in its last complete
/// aggregation — at an aggregated snapshot its count, mid-aggregation the previous one
/// (`last_nr_accesses`) and the count so far. Mid-aggregation the floored moving sum alone
/// reads 0 for a region at one or two accesses an aggregation whenever its first samples of
/// the window miss (a region 10% hot, 20 samples: about a third of the time), and forgetting
/// on that dip handed learned hot pages back to the next page-out, which brought them
/// straight back (docs/performance.md, "Reclaim on static workloads").
fn idle(r: &engine::Region, aggregated: bool) -> bool {
    let count = if aggregated {
        r.nr_accesses
    } else {
        r.nr_accesses.max(r.last_nr_accesses)
    };
    count == 0 && r.nr_accesses_bp / 10_000 == 0
}

fn count(bits: &[u64; WORDS]) -> u64 {
    bits.iter().map(|w| w.count_ones() as u64).sum()
}

/// Clear the bits of the pages in `[a, b)` of the chunk starting at `cs`.
fn clear(bits: &mut [u64; WORDS], cs: u64, a: u64, b: u64, ps: u64) {
    if a >= b {
        return;
    }
    let (first, end) = ((a - cs) / ps, (b - cs).div_ceil(ps).min(CHUNK_PAGES));
    for p in first..end {
        bits[(p / 64) as usize] &= !(1 << (p % 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Attrs, Region, TargetSnapshot};

    const P: u64 = 4096;
    const T: TargetId = TargetId(3);

    fn pages(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a * P, b * P)
    }

    fn cut(h: &HotSet, r: AddrRange) -> (Vec<AddrRange>, u64) {
        let mut v = Vec::new();
        let c = h.cut(T, r, |x| v.push(x));
        (v, c)
    }

    #[test]
    fn learned_pages_are_cut_out_and_the_rest_emitted_in_runs() {
        let mut h = HotSet::new(P);
        h.learn(T, pages(3, 4), 1);
        h.learn(T, pages(5, 7), 1);
        h.learn(T, pages(1024, 1025), 1);
        assert_eq!(h.bytes(), 4 * P);
        let (v, c) = cut(&h, pages(0, 2000));
        assert_eq!(
            v,
            vec![pages(0, 3), pages(4, 5), pages(7, 1024), pages(1025, 2000)]
        );
        assert_eq!(c, 4 * P);
        // Emitted + cut == the range, whatever the bounds.
        for (a, b) in [(3, 7), (4, 5), (2, 1030), (600, 1000)] {
            let (v, c) = cut(&h, pages(a, b));
            let sum: u64 = v.iter().map(|r| r.len()).sum();
            assert_eq!(sum + c, pages(a, b).len(), "{a}..{b}");
            assert!(v.iter().all(|r| !r.is_empty()));
        }
        // Another target has nothing learned.
        let mut v = Vec::new();
        assert_eq!(h.cut(TargetId(4), pages(3, 4), |x| v.push(x)), 0);
        assert_eq!(v, vec![pages(3, 4)]);
        // Learning twice counts once.
        h.learn(T, pages(3, 4), 2);
        assert_eq!((h.bytes(), h.total_learned_pages), (4 * P, 4));
    }

    fn snap(regions: Vec<Region>) -> Snapshot {
        Snapshot {
            now_us: 0,
            aggregation: 0,
            aggregated: true,
            attrs: Attrs::default(),
            targets: vec![TargetSnapshot { target: T, regions }],
        }
    }

    fn region(a: u64, b: u64, nr: u32, age: u32) -> Region {
        let mut r = Region::new(a * P, b * P);
        r.nr_accesses = nr;
        r.nr_accesses_bp = nr * 10_000;
        r.age = age;
        r
    }

    #[test]
    fn pages_are_forgotten_once_their_region_is_old_again_or_unmapped() {
        let mut h = HotSet::new(P);
        h.learn(T, pages(0, 10), 1);
        h.learn(T, pages(20, 30), 1);
        h.learn(T, pages(40, 50), 1);
        h.learn(T, pages(600, 601), 95);
        // At 100 (min age 3 aggregations, 10 µs): 0..16 lukewarm (kept); 16..32 idle but
        // young (kept); 40..45 idle and old (forgotten); 45..50 under no region
        // (forgotten); 600 idle and old but learned 5 µs ago (kept).
        let s = snap(vec![
            region(0, 16, 2, 9),
            region(16, 32, 0, 2),
            region(40, 45, 0, 3),
            region(512, 1024, 0, 3),
        ]);
        h.forget_old(&s, 3, 10, 100);
        assert_eq!(h.bytes(), 21 * P);
        assert_eq!(cut(&h, pages(0, 50)).1, 20 * P);
        // Later, once the second region is old, its pages go too, and the late one.
        let s = snap(vec![
            region(0, 16, 2, 9),
            region(16, 32, 0, 3),
            region(512, 1024, 0, 3),
        ]);
        h.forget_old(&s, 3, 10, 105);
        assert_eq!(h.bytes(), 10 * P);
        // A target missing from the snapshot is forgotten.
        let mut s = snap(Vec::new());
        s.targets.clear();
        h.forget_old(&s, 3, 10, 200);
        assert_eq!((h.bytes(), h.nr_chunks), (0, 0));
    }

    #[test]
    fn a_mid_aggregation_dip_of_the_moving_sum_forgets_nothing() {
        // Mid-aggregation a region at 1 access in its last aggregation and none so far in
        // this one has a moving sum under one access: it matches `accesses: 0..0`, but its
        // learned pages are kept; once its last complete aggregation read 0 too they go.
        let mut h = HotSet::new(P);
        h.learn(T, pages(0, 10), 1);
        let mut r = region(0, 16, 0, 5);
        r.nr_accesses_bp = 5_000;
        r.last_nr_accesses = 1;
        let mut s = snap(vec![r.clone()]);
        s.aggregated = false;
        h.forget_old(&s, 3, 10, 100);
        assert_eq!(h.bytes(), 10 * P);
        // An access so far in this aggregation: kept too.
        let mut r2 = r.clone();
        r2.last_nr_accesses = 0;
        r2.nr_accesses = 1;
        let mut s2 = snap(vec![r2]);
        s2.aggregated = false;
        h.forget_old(&s2, 3, 10, 100);
        assert_eq!(h.bytes(), 10 * P);
        r.last_nr_accesses = 0;
        let mut s = snap(vec![r]);
        s.aggregated = false;
        h.forget_old(&s, 3, 10, 100);
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn the_cap_drops_the_chunks_learned_longest_ago() {
        let mut h = HotSet::new(P);
        for c in 0..=MAX_CHUNKS as u64 {
            h.learn(T, pages(c * CHUNK_PAGES, c * CHUNK_PAGES + 1), c);
        }
        assert!(h.nr_chunks <= MAX_CHUNKS);
        assert_eq!(h.bytes(), h.nr_chunks as u64 * P);
        // The newest is kept, the oldest dropped.
        assert_eq!(cut(&h, pages(0, 1)).1, 0);
        let last = MAX_CHUNKS as u64 * CHUNK_PAGES;
        assert_eq!(cut(&h, pages(last, last + 1)).1, P);
        h.drop_target(T);
        assert_eq!((h.bytes(), h.nr_chunks), (0, 0));
    }
}
