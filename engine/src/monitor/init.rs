//! Building a target's regions from its mappings: the kernel's three-region init
//! (`mm/damon/vaddr.c`, Linux 6.12.117: `__damon_va_three_regions`,
//! `damon_va_evenly_split_region`, `__damon_va_init_regions`) and the reconcile done every
//! update interval (`damon_set_regions`, `damon_fill_regions_holes`, mm/damon/core.c
//! 6.12.117).

use crate::kernel::host::{align_down, align_up};
use crate::region::{AddrRange, Region};
use thiserror::Error;

/// Why the kernel's `__damon_va_three_regions()` gives up (it returns -EINVAL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ThreeRegionsError {
    #[error("no mappings")]
    Empty,
    #[error("fewer than two gaps between mappings: three regions cannot be built")]
    TooFewGaps,
}

/// Why `damon_va_evenly_split_region()` returns -EINVAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EvenlySplitError {
    #[error("cannot split into zero pieces")]
    ZeroPieces,
    #[error("pieces would be smaller than the minimum region size")]
    PieceTooSmall,
}

/// `__damon_va_three_regions()` (mm/damon/vaddr.c, 6.12.117): walk the mappings (sorted),
/// keep the two biggest gaps between consecutive mappings (a gap replaces the biggest only
/// when strictly bigger, so among equal gaps the lowest-addressed win), fail when either is
/// empty, sort them by address and return the three regions around them, each bound aligned
/// up to `min_region`.
pub fn three_regions(
    vmas: &[AddrRange],
    min_region: u64,
) -> Result<[AddrRange; 3], ThreeRegionsError> {
    let (first, gaps) = two_biggest_gaps(vmas)?;
    let (mut g1, mut g2) = gaps;
    if g1.is_empty() || g2.is_empty() {
        return Err(ThreeRegionsError::TooFewGaps);
    }
    if g1.start > g2.start {
        std::mem::swap(&mut g1, &mut g2);
    }
    let last_end = vmas.last().map(|v| v.end).unwrap_or(0);
    let a = |x| align_up(x, min_region);
    Ok([
        AddrRange::new(a(first), a(g1.start)),
        AddrRange::new(a(g1.end), a(g2.start)),
        AddrRange::new(a(g2.end), a(last_end)),
    ])
}

/// The start of the first mapping and the (biggest, second biggest) gaps, by the kernel's
/// walk. Empty ranges stand for "no such gap".
fn two_biggest_gaps(
    vmas: &[AddrRange],
) -> Result<(u64, (AddrRange, AddrRange)), ThreeRegionsError> {
    let first = vmas.first().ok_or(ThreeRegionsError::Empty)?.start;
    let mut first_gap = AddrRange::new(0, 0);
    let mut second_gap = AddrRange::new(0, 0);
    for w in vmas.windows(2) {
        let (prev, vma) = (w[0], w[1]);
        let gap = vma.start.saturating_sub(prev.end);
        if gap > first_gap.len() {
            second_gap = first_gap;
            first_gap = AddrRange::new(prev.end, vma.start);
        } else if gap > second_gap.len() {
            second_gap = AddrRange::new(prev.end, vma.start);
        }
    }
    Ok((first, (first_gap, second_gap)))
}

/// The ranges madvd monitors for a target: the kernel's three regions when it can build
/// them. Where the kernel gives up (-EINVAL, and monitors nothing until a later update
/// succeeds), madvd builds what exists instead:
/// - no mappings: no range;
/// - one gap only (e.g. two mappings): two ranges around it;
/// - no gap (one mapping, or mappings all adjacent): one range from the first start to the
///   last end.
///
/// Bounds are aligned up to `min_region` as the kernel aligns its three regions; ranges that
/// alignment made empty are dropped.
pub fn monitoring_ranges(vmas: &[AddrRange], min_region: u64) -> Vec<AddrRange> {
    let mut sorted;
    let vmas = if vmas.windows(2).all(|w| w[0].start <= w[1].start) {
        vmas
    } else {
        sorted = vmas.to_vec();
        sorted.sort();
        &sorted
    };
    let vmas: Vec<AddrRange> = vmas.iter().copied().filter(|v| !v.is_empty()).collect();
    let a = |x| align_up(x, min_region);
    let out: Vec<AddrRange> = match three_regions(&vmas, min_region) {
        Ok(three) => three.to_vec(),
        Err(ThreeRegionsError::Empty) => Vec::new(),
        Err(ThreeRegionsError::TooFewGaps) => {
            let (first, (g1, _)) = two_biggest_gaps(&vmas).expect("not empty");
            let last = vmas.iter().map(|v| v.end).max().unwrap_or(first);
            if g1.is_empty() {
                vec![AddrRange::new(a(first), a(last))]
            } else {
                vec![
                    AddrRange::new(a(first), a(g1.start)),
                    AddrRange::new(a(g1.end), a(last)),
                ]
            }
        }
    };
    out.into_iter().filter(|r| !r.is_empty()).collect()
}

/// The ranges a target whose ranges the user set monitors (kernel DAMON's `paddr`: no
/// `init` op, the regions come from the ranges written to sysfs through
/// `damon_set_regions()`, mm/damon/core.c 6.12): sorted, each start aligned down and end
/// aligned up to `min_region` as `damon_set_regions` does, overlapping or touching ranges
/// joined, empty ones dropped.
pub fn user_ranges(ranges: &[AddrRange], min_region: u64) -> Vec<AddrRange> {
    let mut v: Vec<AddrRange> = ranges
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| AddrRange::new(align_down(r.start, min_region), align_up(r.end, min_region)))
        .collect();
    v.sort();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The ranges to monitor from a check's `target_ranges`: as given ([`user_ranges`]) when
/// the user set them, else the three regions ([`monitoring_ranges`]).
pub fn ranges_for(user_set: bool, ranges: &[AddrRange], min_region: u64) -> Vec<AddrRange> {
    if user_set {
        user_ranges(ranges, min_region)
    } else {
        monitoring_ranges(ranges, min_region)
    }
}

/// `damon_va_evenly_split_region()` (mm/damon/vaddr.c, 6.12.117): `nr_pieces` pieces of
/// `ALIGN_DOWN(size / nr_pieces, min_region)` bytes, the last one extended to the original
/// end. Fails (the kernel's -EINVAL, region untouched) on zero pieces or a zero piece size.
/// The kernel's `r == NULL` failure has no Rust counterpart (a reference is never null).
pub fn evenly_split(
    r: &Region,
    nr_pieces: u32,
    min_region: u64,
) -> Result<Vec<Region>, EvenlySplitError> {
    if nr_pieces == 0 {
        return Err(EvenlySplitError::ZeroPieces);
    }
    if nr_pieces == 1 {
        return Ok(vec![r.clone()]);
    }
    let sz_piece = align_down(r.size() / nr_pieces as u64, min_region);
    if sz_piece == 0 {
        return Err(EvenlySplitError::PieceTooSmall);
    }
    let mut out = Vec::with_capacity(nr_pieces as usize);
    let mut first = r.clone();
    first.ar.end = first.ar.start + sz_piece;
    out.push(first);
    let mut start = r.start() + sz_piece;
    for _ in 1..nr_pieces {
        out.push(Region::new(start, start + sz_piece));
        start += sz_piece;
    }
    out.last_mut().expect("nr_pieces > 1").ar.end = r.end();
    Ok(out)
}

/// `__damon_va_init_regions()` (mm/damon/vaddr.c, 6.12.117), given the target's monitoring
/// ranges: `sz = max(min_region, total / min_nr_regions)`, and each range evenly split into
/// `size / sz` pieces (a range smaller than `sz` stays one region, as the kernel's failed
/// split leaves it).
pub fn init_regions(ranges: &[AddrRange], min_nr_regions: u32, min_region: u64) -> Vec<Region> {
    let total: u64 = ranges.iter().map(|r| r.len()).sum();
    let mut sz = if min_nr_regions > 0 {
        total / min_nr_regions as u64
    } else {
        total
    };
    if sz < min_region {
        sz = min_region;
    }
    let mut out = Vec::new();
    for range in ranges {
        let r = Region::new(range.start, range.end);
        let nr_pieces = (range.len() / sz).min(u32::MAX as u64) as u32;
        match evenly_split(&r, nr_pieces, min_region) {
            Ok(pieces) => out.extend(pieces),
            Err(_) => out.push(r),
        }
    }
    out
}

/// `damon_set_regions()` (mm/damon/core.c, 6.12.117; `min_region` is the parameter mainline
/// later added): drop the regions that intersect none of `ranges`; for each range, if no
/// region intersects it insert `[ALIGN_DOWN(start), ALIGN(end))`; else stretch or cut the
/// first intersecting region's start and the last one's end to the range and fill the holes
/// between them with new regions (`damon_fill_regions_holes`). Surviving regions keep their
/// history; new ones start with none. `ranges` must be sorted and disjoint.
pub fn set_regions(regions: &mut Vec<Region>, ranges: &[AddrRange], min_region: u64) {
    let old: Vec<Region> = std::mem::take(regions)
        .into_iter()
        .filter(|r| ranges.iter().any(|rg| r.ar.intersects(rg)))
        .collect();
    let mut out: Vec<Region> = Vec::with_capacity(old.len() + ranges.len() * 2);
    let mut old = old.into_iter().peekable();
    for range in ranges {
        let seg_start = out.len();
        let (mut first, mut last) = (None, None);
        while let Some(r) = old.peek() {
            if r.start() >= range.end {
                break;
            }
            let r = old.next().expect("peeked");
            if r.ar.intersects(range) {
                first.get_or_insert(out.len());
                last = Some(out.len());
            }
            out.push(r);
        }
        match (first, last) {
            (Some(f), Some(l)) => {
                out[f].ar.start = align_down(range.start, min_region);
                out[l].ar.end = align_up(range.end, min_region);
                // damon_fill_regions_holes(first, last)
                let seg: Vec<Region> = out.drain(f..=l).collect();
                let mut filled = Vec::with_capacity(seg.len() * 2);
                for r in seg {
                    if let Some(prev) = filled.last() {
                        let prev: &Region = prev;
                        if prev.end() != r.start() {
                            filled.push(Region::new(prev.end(), r.start()));
                        }
                    }
                    filled.push(r);
                }
                let tail: Vec<Region> = out.drain(f..).collect();
                out.extend(filled);
                out.extend(tail);
                for r in &mut out[f..] {
                    if !r.ar.contains(r.sampling_addr) {
                        r.sampling_addr = r.start();
                    }
                }
            }
            _ => {
                let _ = seg_start;
                out.push(Region::new(
                    align_down(range.start, min_region),
                    align_up(range.end, min_region),
                ));
            }
        }
    }
    out.extend(old);
    *regions = out;
}

#[cfg(test)]
mod tests {
    //! Ports of every case of `mm/damon/tests/vaddr-kunit.h` and the `damon_set_regions`
    //! cases of `mm/damon/tests/core-kunit.h` (kernel inputs and expectations, MIN_REGION 1),
    //! plus the cases the kernel has no test for.
    use super::*;

    fn ar(s: u64, e: u64) -> AddrRange {
        AddrRange::new(s, e)
    }
    fn regions_from_pairs(flat: &[u64]) -> Vec<Region> {
        flat.chunks(2).map(|p| Region::new(p[0], p[1])).collect()
    }
    fn pairs(t: &[Region]) -> Vec<u64> {
        t.iter().flat_map(|r| [r.start(), r.end()]).collect()
    }

    /// `damon_test_three_regions_in_vmas`.
    #[test]
    fn kunit_three_regions_in_vmas() {
        let vmas = [
            ar(10, 20),
            ar(20, 25),
            ar(200, 210),
            ar(210, 220),
            ar(300, 305),
            ar(307, 330),
        ];
        let r = three_regions(&vmas, 1).unwrap();
        assert_eq!(r, [ar(10, 25), ar(200, 220), ar(300, 330)]);
    }

    fn apply_three(regions: &[u64], three: [AddrRange; 3], expected: &[u64]) {
        let mut t = regions_from_pairs(regions);
        set_regions(&mut t, &three, 1);
        assert_eq!(pairs(&t), expected);
    }

    const OLD: [u64; 16] = [
        10, 20, 20, 30, 50, 55, 55, 57, 57, 59, 70, 80, 80, 90, 90, 100,
    ];

    /// `damon_test_apply_three_regions1`.
    #[test]
    fn kunit_apply_three_regions1() {
        apply_three(
            &OLD,
            [ar(5, 27), ar(45, 55), ar(73, 104)],
            &[5, 20, 20, 27, 45, 55, 73, 80, 80, 90, 90, 104],
        );
    }
    /// `damon_test_apply_three_regions2`.
    #[test]
    fn kunit_apply_three_regions2() {
        apply_three(
            &OLD,
            [ar(5, 27), ar(56, 57), ar(65, 104)],
            &[5, 20, 20, 27, 56, 57, 65, 80, 80, 90, 90, 104],
        );
    }
    /// `damon_test_apply_three_regions3`.
    #[test]
    fn kunit_apply_three_regions3() {
        apply_three(
            &OLD,
            [ar(5, 27), ar(61, 63), ar(65, 104)],
            &[5, 20, 20, 27, 61, 63, 65, 80, 80, 90, 90, 104],
        );
    }
    /// `damon_test_apply_three_regions4`.
    #[test]
    fn kunit_apply_three_regions4() {
        apply_three(
            &OLD,
            [ar(5, 7), ar(30, 32), ar(65, 68)],
            &[5, 7, 30, 32, 65, 68],
        );
    }

    fn split_evenly_fail(start: u64, end: u64, nr: u32) {
        let r = Region::new(start, end);
        assert!(evenly_split(&r, nr, 1).is_err(), "{start}-{end}/{nr}");
        // The region is untouched (the function takes it by reference).
        assert_eq!((r.start(), r.end()), (start, end));
    }
    fn split_evenly_succ(start: u64, end: u64, nr: u32) {
        let expected_width = (end - start) / nr as u64;
        let pieces = evenly_split(&Region::new(start, end), nr, 1).unwrap();
        assert_eq!(pieces.len(), nr as usize);
        for (i, r) in pieces.iter().enumerate() {
            let i = i as u64;
            assert_eq!(r.start(), start + i * expected_width);
            if i == nr as u64 - 1 {
                assert_eq!(r.end(), end);
            } else {
                assert_eq!(r.end(), start + (i + 1) * expected_width);
            }
        }
    }

    /// `damon_test_split_evenly` (mainline adds `succ(4, 6, 1)`, included).
    #[test]
    fn kunit_split_evenly() {
        split_evenly_fail(0, 100, 0);
        split_evenly_succ(0, 100, 10);
        split_evenly_succ(5, 59, 5);
        split_evenly_succ(4, 6, 1);
        split_evenly_succ(0, 3, 2);
        split_evenly_fail(5, 6, 2);
        assert_eq!(
            evenly_split(&Region::new(0, 100), 0, 1),
            Err(EvenlySplitError::ZeroPieces)
        );
        assert_eq!(
            evenly_split(&Region::new(5, 6), 2, 1),
            Err(EvenlySplitError::PieceTooSmall)
        );
    }

    fn set_regions_for(
        old: &[(u64, u64)],
        new: &[(u64, u64)],
        min_region: u64,
        expect: &[(u64, u64)],
    ) {
        let mut t: Vec<Region> = old.iter().map(|&(s, e)| Region::new(s, e)).collect();
        let ranges: Vec<AddrRange> = new.iter().map(|&(s, e)| ar(s, e)).collect();
        set_regions(&mut t, &ranges, min_region);
        let got: Vec<(u64, u64)> = t.iter().map(|r| (r.start(), r.end())).collect();
        assert_eq!(got, expect);
    }

    /// `damon_test_set_regions` (core-kunit.h; 6.12.117 has the "holes" case, mainline adds
    /// the other four).
    #[test]
    fn kunit_set_regions() {
        // Initial build up on empty target.
        set_regions_for(&[], &[(5, 15), (15, 25)], 1, &[(5, 15), (15, 25)]);
        // Un-intersecting regions should be removed.
        set_regions_for(&[(4, 16), (24, 32)], &[(18, 23)], 1, &[(18, 23)]);
        // Holes should be filled up with new regions.
        set_regions_for(
            &[(4, 16), (24, 32)],
            &[(8, 28)],
            1,
            &[(8, 16), (16, 24), (24, 28)],
        );
        // New regions should be able to be appended.
        set_regions_for(
            &[(0, 4), (4, 17)],
            &[(0, 15), (25, 40)],
            1,
            &[(0, 4), (4, 15), (25, 40)],
        );
        // New regions should be able to be inserted.
        set_regions_for(
            &[(0, 4), (42, 52)],
            &[(0, 15), (25, 40), (44, 50)],
            1,
            &[(0, 15), (25, 40), (44, 50)],
        );
    }

    /// Surviving regions keep their history; filled holes start fresh.
    #[test]
    fn set_regions_keeps_history() {
        let mut t = vec![Region::new(4, 16), Region::new(24, 32)];
        t[0].age = 5;
        t[0].last_nr_accesses = 3;
        t[1].age = 7;
        set_regions(&mut t, &[ar(8, 28)], 1);
        assert_eq!((t[0].age, t[0].last_nr_accesses), (5, 3));
        assert_eq!(t[1].age, 0);
        assert_eq!(t[2].age, 7);
    }

    /// Alignment of inserted and stretched bounds to the minimum region size.
    #[test]
    fn set_regions_aligns() {
        set_regions_for(&[], &[(4097, 8191)], 4096, &[(4096, 8192)]);
        set_regions_for(&[(4096, 16384)], &[(5000, 9000)], 4096, &[(4096, 12288)]);
    }

    /// madvd cases the kernel has no test for.
    #[test]
    fn one_mapping() {
        let vmas = [ar(0x1000, 0x9000)];
        assert_eq!(
            three_regions(&vmas, 4096),
            Err(ThreeRegionsError::TooFewGaps)
        );
        assert_eq!(monitoring_ranges(&vmas, 4096), vec![ar(0x1000, 0x9000)]);
    }

    #[test]
    fn fewer_than_three_mappings() {
        let vmas = [ar(0x1000, 0x3000), ar(0x10000, 0x12000)];
        assert_eq!(
            three_regions(&vmas, 4096),
            Err(ThreeRegionsError::TooFewGaps)
        );
        assert_eq!(
            monitoring_ranges(&vmas, 4096),
            vec![ar(0x1000, 0x3000), ar(0x10000, 0x12000)]
        );
        // Adjacent mappings: no gap at all, one range.
        let vmas = [ar(0x1000, 0x3000), ar(0x3000, 0x5000), ar(0x5000, 0x6000)];
        assert_eq!(monitoring_ranges(&vmas, 4096), vec![ar(0x1000, 0x6000)]);
        // Exactly three mappings with two gaps: the kernel's three regions.
        let vmas = [ar(0, 10), ar(20, 30), ar(100, 110)];
        assert_eq!(
            monitoring_ranges(&vmas, 1),
            vec![ar(0, 10), ar(20, 30), ar(100, 110)]
        );
    }

    #[test]
    fn empty_target() {
        assert_eq!(three_regions(&[], 4096), Err(ThreeRegionsError::Empty));
        assert!(monitoring_ranges(&[], 4096).is_empty());
        assert!(init_regions(&[], 10, 4096).is_empty());
        let mut t = vec![Region::new(0, 4096)];
        set_regions(&mut t, &[], 4096);
        assert!(t.is_empty());
    }

    /// Equal gaps: the first (lowest) of equal gaps wins, as the kernel's strict `>`.
    #[test]
    fn equal_gaps() {
        let vmas = [ar(0, 10), ar(20, 30), ar(40, 50), ar(60, 70)];
        // Gaps 10-20, 30-40, 50-60 all 10 bytes: the first two are kept.
        assert_eq!(
            three_regions(&vmas, 1).unwrap(),
            [ar(0, 10), ar(20, 30), ar(40, 70)]
        );
        // A later strictly bigger gap replaces the second.
        let vmas = [ar(0, 10), ar(20, 30), ar(40, 50), ar(61, 70)];
        assert_eq!(
            three_regions(&vmas, 1).unwrap(),
            [ar(0, 10), ar(20, 50), ar(61, 70)]
        );
    }

    #[test]
    fn more_than_1000_mappings() {
        // 5000 mappings of 4 KiB with 4 KiB gaps, plus two big gaps at known places.
        let mut vmas = Vec::new();
        let mut a = 0x10_0000u64;
        for i in 0..5000u64 {
            if i == 1000 {
                a += 1 << 30;
            }
            if i == 4000 {
                a += 1 << 32;
            }
            vmas.push(ar(a, a + 4096));
            a += 8192;
        }
        let three = three_regions(&vmas, 4096).unwrap();
        assert_eq!(three[0], ar(vmas[0].start, vmas[999].end));
        assert_eq!(three[1], ar(vmas[1000].start, vmas[3999].end));
        assert_eq!(three[2], ar(vmas[4000].start, vmas[4999].end));
        let regions = init_regions(&three, 10, 4096);
        assert!(regions.len() >= 8, "{}", regions.len());
        assert!(regions.windows(2).all(|w| w[0].end() <= w[1].start()));
    }

    /// `__damon_va_init_regions`: size-proportional pieces, at least min_nr_regions minus
    /// the rounding of three floors.
    #[test]
    fn init_regions_evenly() {
        let three = [ar(0, 100), ar(200, 220), ar(300, 330)];
        let t = init_regions(&three, 10, 1);
        // sz = 150 / 10 = 15: 100/15 = 6 pieces, 20/15 = 1, 30/15 = 2.
        assert_eq!(t.len(), 9);
        assert_eq!((t[0].start(), t[0].end()), (0, 16));
        assert_eq!((t[5].start(), t[5].end()), (80, 100));
        assert_eq!((t[6].start(), t[6].end()), (200, 220));
    }

    /// Physical ranges as the user set them: aligned as `damon_set_regions` aligns, sorted,
    /// joined where they overlap or touch; no three regions around the gaps.
    #[test]
    fn user_ranges_are_kept_as_given() {
        let got = user_ranges(&[ar(0x5000, 0x8000), ar(0x1001, 0x2fff), ar(9, 9)], 0x1000);
        assert_eq!(got, vec![ar(0x1000, 0x3000), ar(0x5000, 0x8000)]);
        let got = user_ranges(&[ar(0x3000, 0x5000), ar(0x1000, 0x3000)], 0x1000);
        assert_eq!(got, vec![ar(0x1000, 0x5000)]);
        let vmas = [ar(0, 10), ar(100, 110), ar(1000, 1010), ar(1020, 1030)];
        assert_eq!(ranges_for(true, &vmas, 1), vmas.to_vec());
        assert_eq!(
            ranges_for(false, &vmas, 1),
            vec![ar(0, 10), ar(100, 110), ar(1000, 1030)]
        );
    }
}
