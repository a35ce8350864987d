//! The region-adjustment rules of the kernel's monitoring core, as pure functions over a
//! target's sorted region list: access-rate update and moving sum, merge (with aging),
//! split, reset, and the region size limit.
//!
//! Every rule is ported from `mm/damon/core.c` of **Linux 6.12.117** (Debian
//! `linux-source-6.12` 6.12.117-1~deb12u1, the lab kernel) unless a comment says otherwise;
//! the function names are the kernel's, minus the `damon_`/`kdamond_` prefix.

use crate::region::Region;
use rand::Rng;

/// `damon_moving_sum()` (mm/damon/core.c, 6.12.117): a pseudo moving sum over a window of
/// `len_window` values, given the sum of the previous window (`nomvsum`).
/// The kernel computes in `unsigned int`; we saturate instead of wrapping.
pub fn moving_sum(mvsum: u32, nomvsum: u32, len_window: u32, new_value: u32) -> u32 {
    mvsum
        .saturating_sub(nomvsum / len_window.max(1))
        .saturating_add(new_value)
}

/// `damon_update_region_access_rate()` (mm/damon/core.c, 6.12.117) for a definite answer:
/// the moving sum in basis points and the per-aggregation count. `len_window` is
/// `damon_max_nr_accesses(attrs)` = aggr / sample.
///
/// madvd extension: `nr_known` counts the definite answers (see [`update_access_unknown`]).
pub fn update_access_rate(r: &mut Region, accessed: bool, len_window: u32) {
    r.nr_accesses_bp = moving_sum(
        r.nr_accesses_bp,
        r.last_nr_accesses.saturating_mul(10_000),
        len_window,
        if accessed { 10_000 } else { 0 },
    );
    if accessed {
        r.nr_accesses += 1;
    }
    r.nr_known += 1;
}

/// madvd extension for an `Unknown` answer (no kernel counterpart: the kernel's checks always
/// answer). The sample never counts as an access; the moving sum advances by the region's
/// best estimate instead of 0 so that it does not decay as if the region were cold: the
/// rate among this aggregation's known samples, or the previous aggregation's rate when
/// none is known yet. With no Unknown answers the behaviour is exactly the kernel's.
pub fn update_access_unknown(r: &mut Region, len_window: u32) {
    let len = len_window.max(1);
    let estimate = if r.nr_known > 0 {
        (r.nr_accesses as u64 * 10_000 / r.nr_known as u64) as u32
    } else {
        (r.last_nr_accesses.min(len) as u64 * 10_000 / len as u64) as u32
    };
    r.nr_accesses_bp = moving_sum(
        r.nr_accesses_bp,
        r.last_nr_accesses.saturating_mul(10_000),
        len_window,
        estimate,
    );
}

/// madvd extension, run at each aggregation boundary before merging: turn the count of
/// accessed samples into a count out of `nr_samples` sampling intervals, scaled from the
/// known samples (identical to the kernel's when every sample is known). A region with no
/// known sample keeps its previous rate (`last_nr_accesses`) rather than looking cold.
/// Returns the largest resulting `nr_accesses` (what `ops.check_accesses()` returns).
pub fn finalize_unknown(regions: &mut [Region], nr_samples: u32) -> u32 {
    let mut max = 0;
    for r in regions.iter_mut() {
        if r.nr_known < nr_samples {
            r.nr_accesses = if r.nr_known == 0 {
                r.last_nr_accesses
            } else {
                let scaled = (r.nr_accesses as u64 * nr_samples as u64 + r.nr_known as u64 / 2)
                    / r.nr_known as u64;
                scaled.min(nr_samples as u64) as u32
            };
        }
        max = max.max(r.nr_accesses);
    }
    max
}

fn weighted(a: u32, sz_a: u64, b: u32, sz_b: u64) -> u32 {
    ((a as u128 * sz_a as u128 + b as u128 * sz_b as u128) / (sz_a as u128 + sz_b as u128)) as u32
}

/// `damon_merge_two_regions()` (mm/damon/core.c, 6.12.117): `l` absorbs its right neighbour
/// `r`; `nr_accesses` and `age` become size-weighted averages, `nr_accesses_bp` is reset to
/// `nr_accesses * 10000`.
pub fn merge_two_regions(l: &mut Region, r: &Region) {
    let (sz_l, sz_r) = (l.size(), r.size());
    l.nr_accesses = weighted(l.nr_accesses, sz_l, r.nr_accesses, sz_r);
    l.nr_accesses_bp = l.nr_accesses.saturating_mul(10_000);
    l.age = weighted(l.age, sz_l, r.age, sz_r);
    // madvd: keep the known-sample count meaningful for the merged region.
    l.nr_known = weighted(l.nr_known, sz_l, r.nr_known, sz_r);
    l.ar.end = r.ar.end;
}

/// `damon_merge_regions_of()` (mm/damon/core.c, 6.12.117, with the stable fix "skip aging
/// from repeated aggressive merging"): walk the regions in address order; when `count_age`,
/// reset `age` of a region whose `nr_accesses` moved by more than `thres` from
/// `last_nr_accesses`, else increment it; merge a region into its left neighbour when they
/// are adjacent, their `nr_accesses` differ by at most `thres`, and the merged size stays
/// within `sz_limit`.
///
/// Not ported: mainline's later extra age reset when `nr_accesses` crosses zero
/// ("`(nr_accesses == 0) != (last_nr_accesses == 0)`", merged after 6.12, not backported).
pub fn merge_regions_of(regions: &mut Vec<Region>, thres: u32, sz_limit: u64, count_age: bool) {
    let n = regions.len();
    let mut w = 0usize;
    for i in 0..n {
        if count_age {
            let r = &mut regions[i];
            if r.nr_accesses.abs_diff(r.last_nr_accesses) > thres {
                r.age = 0;
            } else {
                r.age = r.age.saturating_add(1);
            }
        }
        let merge = w > 0 && {
            let (p, r) = (&regions[w - 1], &regions[i]);
            p.ar.end == r.ar.start
                && p.nr_accesses.abs_diff(r.nr_accesses) <= thres
                && p.size() + r.size() <= sz_limit
        };
        if merge {
            let (a, b) = regions.split_at_mut(i);
            merge_two_regions(&mut a[w - 1], &b[0]);
        } else {
            regions.swap(w, i);
            w += 1;
        }
    }
    regions.truncate(w);
}

/// `kdamond_merge_regions()` as in Linux 6.12.117 (mm/damon/core.c; commit 310d6c15e910
/// "mm/damon/core: merge regions aggressively when max_nr_regions is unmet" plus its two
/// stable fixes tagged `Cc: stable # 6.10`: "skip aging from repeated aggressive merging"
/// and the threshold cap): merge every target with `threshold`; while the total count is
/// above `max_nr_regions`, repeat with the threshold doubled (at least 1) — capped at
/// `max_thres` = aggr / sample — until the count fits or the threshold reached `max_thres`.
/// Age is counted on the first pass only. The older loop, still in mainline core.c around
/// 6.15 (`do { merge; thres = max(1, thres * 2) } while (nr > max && thres / 2 < max_thres)`),
/// re-ages every pass and lets the threshold overshoot `max_thres`; madvd follows the lab
/// kernel, 6.12.117.
pub fn merge_regions(
    targets: &mut [&mut Vec<Region>],
    threshold: u32,
    sz_limit: u64,
    max_nr_regions: u32,
    max_thres: u32,
) {
    let mut thres = threshold;
    let mut count_age = true;
    loop {
        let mut nr = 0usize;
        for t in targets.iter_mut() {
            merge_regions_of(t, thres, sz_limit, count_age);
            nr += t.len();
        }
        count_age = false;
        if nr <= max_nr_regions as usize || thres >= max_thres {
            break;
        }
        thres = if thres < max_thres / 2 {
            (thres * 2).max(1)
        } else {
            max_thres
        };
    }
}

/// `damon_split_region_at()` (mm/damon/core.c, 6.12.117): cut `regions[idx]` so that its
/// left piece is `sz_r` bytes; the new right piece copies `age`, `last_nr_accesses`,
/// `nr_accesses` and `nr_accesses_bp` (and madvd's `nr_known`).
pub fn split_region_at(regions: &mut Vec<Region>, idx: usize, sz_r: u64) {
    let r = &mut regions[idx];
    debug_assert!(sz_r > 0 && sz_r < r.size());
    let mut new = r.clone();
    new.ar.start = r.ar.start + sz_r;
    new.sampling_addr = new.ar.start;
    r.ar.end = new.ar.start;
    if r.sampling_addr >= r.ar.end {
        r.sampling_addr = r.ar.start;
    }
    regions.insert(idx + 1, new);
}

const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// `ALIGN()` (round up to a power of two).
pub const fn align_up(x: u64, a: u64) -> u64 {
    x.saturating_add(a - 1) & !(a - 1)
}

/// `ALIGN_DOWN()`.
pub const fn align_down_to(x: u64, a: u64) -> u64 {
    align_down(x, a)
}

/// `damon_split_regions_of()` (mm/damon/core.c, 6.12.117): split every region into up to
/// `nr_subs` pieces. Each cut puts the left piece at a random 10%..90% of the current
/// (left) piece, aligned down to `min_region`; a 3-way split re-splits the left piece, and
/// regions of at most `2 * min_region` are left alone.
pub fn split_regions_of<R: Rng + ?Sized>(
    regions: &mut Vec<Region>,
    nr_subs: u32,
    min_region: u64,
    rng: &mut R,
) {
    let mut out: Vec<Region> = Vec::with_capacity(regions.len() * nr_subs as usize);
    // Pieces of one region, right to left (each cut splits off a right piece).
    let mut rights: Vec<Region> = Vec::with_capacity(nr_subs as usize);
    for mut r in regions.drain(..) {
        let mut sz_region = r.size();
        let mut i = 0;
        while i < nr_subs.saturating_sub(1) && sz_region > 2 * min_region {
            i += 1;
            // damon_rand(1, 10) is in [1, 10).
            let pct = rng.gen_range(1u64..10);
            let sz_sub = align_down(((pct as u128 * sz_region as u128) / 10) as u64, min_region);
            if sz_sub == 0 || sz_sub >= sz_region {
                continue;
            }
            let mut right = r.clone();
            right.ar.start = r.ar.start + sz_sub;
            right.sampling_addr = right.ar.start;
            r.ar.end = right.ar.start;
            if r.sampling_addr >= r.ar.end {
                r.sampling_addr = r.ar.start;
            }
            rights.push(right);
            sz_region = sz_sub;
        }
        out.push(r);
        while let Some(p) = rights.pop() {
            out.push(p);
        }
    }
    *regions = out;
}

/// `kdamond_split_regions()` (mm/damon/core.c, 6.12.117): skip when the total count is above
/// `max_nr_regions / 2`; split in 3 when the count did not change since the last split and
/// is below `max_nr_regions / 3`, else in 2. `last_nr_regions` is the kernel's
/// function-static (shared by all contexts there; one per monitor here).
pub fn split_regions<R: Rng + ?Sized>(
    targets: &mut [&mut Vec<Region>],
    max_nr_regions: u32,
    min_region: u64,
    last_nr_regions: &mut usize,
    rng: &mut R,
) {
    let nr: usize = targets.iter().map(|t| t.len()).sum();
    if nr > (max_nr_regions / 2) as usize {
        return;
    }
    let nr_subs = if *last_nr_regions == nr && nr < (max_nr_regions / 3) as usize {
        3
    } else {
        2
    };
    for t in targets.iter_mut() {
        split_regions_of(t, nr_subs, min_region, rng);
    }
    *last_nr_regions = nr;
}

/// `kdamond_reset_aggregated()` (mm/damon/core.c, 6.12.117): `last_nr_accesses =
/// nr_accesses; nr_accesses = 0` (and madvd's `nr_known = 0`).
pub fn reset_aggregated(regions: &mut [Region]) {
    for r in regions {
        r.last_nr_accesses = r.nr_accesses;
        r.nr_accesses = 0;
        r.nr_known = 0;
    }
}

/// `damon_region_sz_limit()` (mm/damon/core.c, 6.12.117): the total size of all regions of
/// all targets over `min_nr_regions`, at least `min_region`.
pub fn region_sz_limit<'a>(
    targets: impl IntoIterator<Item = &'a [Region]>,
    min_nr_regions: u32,
    min_region: u64,
) -> u64 {
    let total: u64 = targets
        .into_iter()
        .flat_map(|t| t.iter())
        .map(|r| r.size())
        .sum();
    let sz = if min_nr_regions > 0 {
        total / min_nr_regions as u64
    } else {
        total
    };
    sz.max(min_region)
}

/// madvd extension (no kernel counterpart): keep at least `min_nr_regions` regions over all
/// targets. The kernel enforces its lower bound only through the merge size limit
/// (total / min_nr_regions), which leaves fewer regions when init pieces larger than the
/// limit never got split (`__damon_va_init_regions` floors the piece count) — e.g. 9 of 11.
/// While the count is below the minimum, the largest region (that is at least two minimum
/// regions big) is cut in two at its aligned middle; both halves keep its statistics, as
/// `damon_split_region_at` does. Only runs when the count is below the minimum, so the
/// kernel's behaviour is unchanged otherwise.
pub fn split_to_min_regions(
    targets: &mut [&mut Vec<Region>],
    min_nr_regions: u32,
    min_region: u64,
) {
    loop {
        let nr: usize = targets.iter().map(|t| t.len()).sum();
        if nr >= min_nr_regions as usize {
            return;
        }
        let mut best: Option<(usize, usize, u64)> = None;
        for (ti, t) in targets.iter().enumerate() {
            for (ri, r) in t.iter().enumerate() {
                if r.size() >= 2 * min_region && best.is_none_or(|(_, _, sz)| r.size() > sz) {
                    best = Some((ti, ri, r.size()));
                }
            }
        }
        let Some((ti, ri, sz)) = best else { return };
        split_region_at(targets[ti], ri, align_down(sz / 2, min_region));
    }
}

/// `mult_frac(x, n, d)` (include/linux/math.h): `x * n / d` without overflowing `x * n`.
pub fn mult_frac(x: u64, n: u64, d: u64) -> u64 {
    (x / d) * n + ((x % d) * n) / d
}

/// `damon_nr_accesses_to_accesses_bp()` (mm/damon/core.c, 6.12.117): the access ratio in
/// basis points of `damon_max_nr_accesses(attrs)`.
pub fn nr_accesses_to_accesses_bp(nr_accesses: u32, attrs: &crate::attrs::Attrs) -> u32 {
    mult_frac(nr_accesses as u64, 10_000, attrs.max_nr_accesses() as u64) as u32
}

/// `damon_accesses_bp_to_nr_accesses()` (mm/damon/core.c, 6.12.117).
pub fn accesses_bp_to_nr_accesses(accesses_bp: u32, attrs: &crate::attrs::Attrs) -> u32 {
    (accesses_bp as u64 * attrs.max_nr_accesses() as u64 / 10_000) as u32
}

/// `damon_update_monitoring_result()` (mm/damon/core.c, 6.12.117): convert a region's
/// `nr_accesses` (through the access ratio) and `age` (by the aggregation intervals) to new
/// attributes; `nr_accesses_bp` becomes `nr_accesses * 10000`.
pub fn update_monitoring_result(
    r: &mut Region,
    old: &crate::attrs::Attrs,
    new: &crate::attrs::Attrs,
) {
    r.nr_accesses = accesses_bp_to_nr_accesses(nr_accesses_to_accesses_bp(r.nr_accesses, old), new);
    r.nr_accesses_bp = r.nr_accesses.saturating_mul(10_000);
    r.age = (r.age as u64 * old.aggr_us / new.aggr_us.max(1)) as u32;
}

#[cfg(test)]
mod tests {
    //! Ports of `mm/damon/tests/core-kunit.h` (Linux 6.12.117 unless noted), with the kernel's
    //! own inputs and expected outputs.
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn regions(ranges: &[(u64, u64)]) -> Vec<Region> {
        ranges.iter().map(|&(s, e)| Region::new(s, e)).collect()
    }

    /// `damon_test_regions`: a new region has the range and no accesses.
    #[test]
    fn kunit_regions() {
        let r = Region::new(1, 2);
        assert_eq!((r.start(), r.end(), r.nr_accesses), (1, 2, 0));
        let mut t: Vec<Region> = Vec::new();
        assert_eq!(t.len(), 0);
        t.push(r);
        assert_eq!(t.len(), 1);
        t.remove(0);
        assert_eq!(t.len(), 0);
    }

    /// `damon_test_aggregate`: reset zeroes `nr_accesses` and keeps every region and target.
    #[test]
    fn kunit_aggregate() {
        let saddr = [[10, 20, 30], [5, 42, 49], [13, 33, 55]];
        let eaddr = [[15, 27, 40], [31, 45, 55], [23, 44, 66]];
        let accesses = [[42, 95, 84], [10, 20, 30], [0, 1, 2]];
        let mut targets: Vec<Vec<Region>> = (0..3)
            .map(|it| {
                (0..3)
                    .map(|ir| {
                        let mut r = Region::new(saddr[it][ir], eaddr[it][ir]);
                        r.nr_accesses = accesses[it][ir];
                        r
                    })
                    .collect()
            })
            .collect();
        for t in targets.iter_mut() {
            reset_aggregated(t);
        }
        assert_eq!(targets.len(), 3);
        for (it, t) in targets.iter().enumerate() {
            assert_eq!(t.len(), 3);
            for (ir, r) in t.iter().enumerate() {
                assert_eq!(r.nr_accesses, 0);
                assert_eq!(r.last_nr_accesses, accesses[it][ir]);
            }
        }
    }

    /// `damon_test_split_at`.
    #[test]
    fn kunit_split_at() {
        let mut t = regions(&[(0, 100)]);
        t[0].nr_accesses = 42;
        t[0].last_nr_accesses = 15;
        t[0].age = 10;
        split_region_at(&mut t, 0, 25);
        assert_eq!((t[0].start(), t[0].end()), (0, 25));
        assert_eq!((t[1].start(), t[1].end()), (25, 100));
        assert_eq!(t[0].nr_accesses, t[1].nr_accesses);
        assert_eq!(t[0].last_nr_accesses, t[1].last_nr_accesses);
        assert_eq!(t[0].age, t[1].age);
    }

    /// `damon_test_merge_two`.
    #[test]
    fn kunit_merge_two() {
        let mut r = Region::new(0, 100);
        r.nr_accesses = 10;
        r.age = 9;
        let mut r2 = Region::new(100, 300);
        r2.nr_accesses = 20;
        r2.age = 21;
        merge_two_regions(&mut r, &r2);
        assert_eq!((r.start(), r.end()), (0, 300));
        assert_eq!(r.nr_accesses, 16);
        assert_eq!(r.age, 17);
        // Through the list function too: one region left.
        let mut t = regions(&[(0, 100), (100, 300)]);
        t[0].nr_accesses = 10;
        t[1].nr_accesses = 20;
        merge_regions_of(&mut t, 10, u64::MAX, false);
        assert_eq!(t.len(), 1);
    }

    /// `damon_test_merge_regions_of`, Linux 6.12.117 inputs (eight regions, thres 9,
    /// sz_limit 9999 -> five).
    #[test]
    fn kunit_merge_regions_of_612() {
        let sa = [0, 100, 114, 122, 130, 156, 170, 184];
        let ea = [100, 112, 122, 130, 156, 170, 184, 230];
        let nrs = [0, 0, 10, 10, 20, 30, 1, 2];
        let mut t: Vec<Region> = (0..sa.len())
            .map(|i| {
                let mut r = Region::new(sa[i], ea[i]);
                r.nr_accesses = nrs[i];
                r
            })
            .collect();
        merge_regions_of(&mut t, 9, 9999, true);
        let got: Vec<(u64, u64)> = t.iter().map(|r| (r.start(), r.end())).collect();
        assert_eq!(
            got,
            vec![(0, 112), (114, 130), (130, 156), (156, 170), (170, 230)]
        );
    }

    /// `damon_test_merge_regions_of`, mainline inputs (a ninth region 230-10170 with 5
    /// accesses that must not merge: 170-230 + it would exceed sz_limit 9999).
    #[test]
    fn kunit_merge_regions_of_mainline() {
        let sa = [0, 100, 114, 122, 130, 156, 170, 184, 230];
        let ea = [100, 112, 122, 130, 156, 170, 184, 230, 10170];
        let nrs = [0, 0, 10, 10, 20, 30, 1, 2, 5];
        let mut t: Vec<Region> = (0..sa.len())
            .map(|i| {
                let mut r = Region::new(sa[i], ea[i]);
                r.nr_accesses = nrs[i];
                r
            })
            .collect();
        merge_regions_of(&mut t, 9, 9999, true);
        let got: Vec<(u64, u64)> = t.iter().map(|r| (r.start(), r.end())).collect();
        assert_eq!(
            got,
            vec![
                (0, 112),
                (114, 130),
                (130, 156),
                (156, 170),
                (170, 230),
                (230, 10170)
            ]
        );
    }

    /// `damon_test_split_regions_of` (mainline's, with the min region parameter): splitting
    /// 0-22 in 2 gives at most 2; 0-220 in 4 at most 4; three regions in 4 at most 12.
    #[test]
    fn kunit_split_regions_of() {
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..100 {
            let mut t = regions(&[(0, 22)]);
            split_regions_of(&mut t, 2, 1, &mut rng);
            assert!(t.len() <= 2);
            let mut t = regions(&[(0, 220)]);
            split_regions_of(&mut t, 4, 1, &mut rng);
            assert!(t.len() <= 4);
            let mut t = regions(&[(0, 220), (300, 400), (500, 700)]);
            split_regions_of(&mut t, 4, 5, &mut rng);
            assert!(t.len() <= 12);
            // The kernel's `% 5 >= 0` check is always true: ALIGN_DOWN masks, so it only
            // aligns for powers of two. With a power of two the pieces are aligned:
            let mut t = regions(&[(0, 220), (300, 400), (500, 700)]);
            split_regions_of(&mut t, 4, 4, &mut rng);
            assert!(t.len() <= 12);
            for r in &t {
                assert_eq!(r.size() % 4, 0);
            }
            // Still covering exactly the same bytes.
            let total: u64 = t.iter().map(|r| r.size()).sum();
            assert_eq!(total, 220 + 100 + 200);
        }
    }

    /// `kdamond_split_regions()`'s gate (6.12.117): above max/2 nothing is split; at an
    /// unchanged count below max/3 regions split in three.
    #[test]
    fn split_regions_gate() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut t: Vec<Region> = (0..760)
            .map(|i| Region::new(i * 100, i * 100 + 100))
            .collect();
        let mut last = 0;
        split_regions(&mut [&mut t], 1500, 1, &mut last, &mut rng);
        assert_eq!(
            t.len(),
            760,
            "760 > 1500/2: kdamond_split_regions returns early in 6.12"
        );
        let mut t: Vec<Region> = (0..10)
            .map(|i| Region::new(i * 100, i * 100 + 100))
            .collect();
        let mut last = 10;
        split_regions(&mut [&mut t], 1000, 1, &mut last, &mut rng);
        assert_eq!(t.len(), 30, "unchanged count below max/3: 3-way split");
        assert_eq!(last, 10);
        let mut last = 0;
        let mut t: Vec<Region> = (0..10)
            .map(|i| Region::new(i * 100, i * 100 + 100))
            .collect();
        split_regions(&mut [&mut t], 1000, 1, &mut last, &mut rng);
        assert_eq!(t.len(), 20);
    }

    /// `damon_test_moving_sum` (core-kunit.h, 6.12.117).
    #[test]
    fn kunit_moving_sum() {
        let (mut mvsum, nomvsum, len_window) = (50000u32, 50000u32, 10u32);
        let new_values = [10000, 0, 10000, 0, 0, 0, 10000, 0, 0, 0];
        let expects = [
            55000, 50000, 55000, 50000, 45000, 40000, 45000, 40000, 35000, 30000,
        ];
        for (v, e) in new_values.iter().zip(expects) {
            mvsum = moving_sum(mvsum, nomvsum, len_window, *v);
            assert_eq!(mvsum, e);
        }
    }

    /// The moving sum of a region equals `nr_accesses * 10000` at the end of an aggregation
    /// in which its rate did not change (the property `damon_update_region_access_rate`'s
    /// comment states), and scheme matching on `bp / 10000` sees the rate mid-way.
    #[test]
    fn access_rate_moving_sum_tracks_count() {
        let len = 20;
        let mut r = Region::new(0, 4096);
        r.last_nr_accesses = 10;
        r.nr_accesses_bp = 100_000;
        for i in 0..len {
            update_access_rate(&mut r, i % 2 == 0, len);
        }
        assert_eq!(r.nr_accesses, 10);
        assert_eq!(r.nr_accesses_bp, 100_000);
        assert_eq!(r.nr_known, 20);
    }

    /// Unknown answers: a region with no known sample keeps its previous rate; partially
    /// known samples are scaled; all-known is untouched (the kernel's value).
    #[test]
    fn unknown_scaling() {
        let mut t = regions(&[(0, 10), (10, 20), (20, 30)]);
        t[0].last_nr_accesses = 7; // nothing known
        t[1].nr_accesses = 6;
        t[1].nr_known = 10; // half known, 60% accessed
        t[2].nr_accesses = 3;
        t[2].nr_known = 20; // fully known
        let max = finalize_unknown(&mut t, 20);
        assert_eq!(t[0].nr_accesses, 7);
        assert_eq!(t[1].nr_accesses, 12);
        assert_eq!(t[2].nr_accesses, 3);
        assert_eq!(max, 12);
        // The moving sum does not decay on Unknown answers for a hot region.
        let mut r = Region::new(0, 4096);
        r.last_nr_accesses = 20;
        r.nr_accesses_bp = 200_000;
        for _ in 0..20 {
            update_access_unknown(&mut r, 20);
        }
        assert_eq!(r.nr_accesses_bp, 200_000);
        assert_eq!(r.nr_accesses, 0);
    }

    /// `kdamond_merge_regions` (6.12.117): above max_nr_regions the threshold doubles until
    /// the count fits; age is counted once.
    #[test]
    fn merge_repeats_with_doubled_threshold_ageing_once() {
        // 8 regions alternating 0 / 5 accesses; thres 1 merges nothing, max 4 forces repeats.
        let mut t: Vec<Region> = (0..8u64)
            .map(|i| {
                let mut r = Region::new(i * 10, i * 10 + 10);
                r.nr_accesses = if i % 2 == 0 { 0 } else { 5 };
                r.last_nr_accesses = r.nr_accesses;
                r.age = 3;
                r
            })
            .collect();
        merge_regions(&mut [&mut t], 1, u64::MAX, 4, 20);
        assert!(t.len() <= 4, "{}", t.len());
        // Every surviving region aged exactly once (4 -> weighted average of 4s).
        for r in &t {
            assert_eq!(r.age, 4);
        }
        // Threshold capped at max_thres: with max_thres 2 the 0/5 regions can never merge.
        let mut t: Vec<Region> = (0..8u64)
            .map(|i| {
                let mut r = Region::new(i * 10, i * 10 + 10);
                r.nr_accesses = if i % 2 == 0 { 0 } else { 5 };
                r
            })
            .collect();
        merge_regions(&mut [&mut t], 1, u64::MAX, 4, 2);
        assert_eq!(t.len(), 8);
    }

    /// `damon_test_update_monitoring_result` (core-kunit.h, 6.12.117).
    #[test]
    fn kunit_update_monitoring_result() {
        let a = |sample_us, aggr_us| crate::attrs::Attrs {
            sample_us,
            aggr_us,
            ..Default::default()
        };
        let old = a(10, 1000);
        let mut r = Region::new(3, 7);
        r.nr_accesses = 15;
        r.age = 20;
        update_monitoring_result(&mut r, &old, &a(100, 10000));
        assert_eq!((r.nr_accesses, r.age), (15, 2));
        update_monitoring_result(&mut r, &old, &a(1, 1000));
        assert_eq!((r.nr_accesses, r.age), (150, 2));
        update_monitoring_result(&mut r, &old, &a(1, 100));
        assert_eq!((r.nr_accesses, r.age), (150, 20));
    }

    /// `damon_test_nr_accesses_to_accesses_bp` (core-kunit.h, 6.12.117): with
    /// max_nr_accesses clamped to UINT_MAX, 123 accesses are 0 bp.
    #[test]
    fn kunit_nr_accesses_to_accesses_bp() {
        let attrs = crate::attrs::Attrs {
            sample_us: 10,
            aggr_us: (u32::MAX as u64 + 1) * 10,
            ..Default::default()
        };
        assert_eq!(attrs.max_nr_accesses(), u32::MAX);
        assert_eq!(nr_accesses_to_accesses_bp(123, &attrs), 0);
    }

    #[test]
    fn split_to_min_regions_only_below_min() {
        let mut t = regions(&[(0, 100), (100, 110), (200, 201)]);
        t[0].age = 4;
        split_to_min_regions(&mut [&mut t], 5, 1);
        let got: Vec<(u64, u64)> = t.iter().map(|r| (r.start(), r.end())).collect();
        assert_eq!(
            got,
            vec![(0, 25), (25, 50), (50, 100), (100, 110), (200, 201)]
        );
        assert!(t[..3].iter().all(|r| r.age == 4));
        // At or above the minimum: untouched.
        split_to_min_regions(&mut [&mut t], 3, 1);
        assert_eq!(t.len(), 5);
        // Nothing splittable: gives up.
        let mut t = regions(&[(0, 1)]);
        split_to_min_regions(&mut [&mut t], 3, 1);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn sz_limit() {
        let t = regions(&[(0, 100), (200, 300)]);
        assert_eq!(region_sz_limit([t.as_slice()], 10, 1), 20);
        assert_eq!(region_sz_limit([t.as_slice()], 10, 4096), 4096);
    }
}
