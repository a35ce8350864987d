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
/// known samples that show a change (6 of 10 after 0) are scaled; all-known is untouched
/// (the kernel's value).
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

/// The fill-in carries the estimate unrounded: an idle region whose count was carried decays
/// to 0 with 2 known answers of 20 an aggregation (rounded each aggregation it stopped at 5
/// for ever: `round(18 · 5 / 20) = 5`), and a steady rate read through 2 answers keeps its
/// count.
#[test]
fn a_carried_count_decays_with_few_known_answers_and_a_steady_one_holds() {
    let mut t = regions(&[(0, 4096)]);
    t[0].last_nr_accesses = 5;
    t[0].est_bp = 50_000;
    let mut counts = Vec::new();
    for _ in 0..40 {
        t[0].nr_known = 2;
        finalize_unknown(&mut t, 20);
        counts.push(t[0].nr_accesses);
        reset_aggregated(&mut t);
    }
    // 5 · 0.9^m: under 4.5 after one, under 0.5 after 22.
    assert_eq!(&counts[..3], &[5, 4, 4], "{counts:?}");
    assert!(counts.windows(2).all(|w| w[1] <= w[0]), "{counts:?}");
    assert_eq!(counts.iter().position(|&c| c == 0), Some(21), "{counts:?}");
    // A quarter of the answers accessed (one of two, every other aggregation): ~5 of 20.
    let mut t = regions(&[(0, 4096)]);
    t[0].last_nr_accesses = 5;
    t[0].est_bp = 50_000;
    let mut sum = 0;
    for i in 0..400 {
        t[0].nr_known = 2;
        t[0].nr_accesses = (i % 2) as u32;
        t[0].nr_seen = t[0].nr_accesses;
        finalize_unknown(&mut t, 20);
        sum += t[0].nr_accesses;
        assert!((3..=7).contains(&t[0].nr_accesses), "{i}: {:?}", t[0]);
        reset_aggregated(&mut t);
    }
    assert_eq!((sum as f64 / 400.0).round(), 5.0);
}

/// `nr_seen`: the Accessed answers of the aggregation, untouched by the fill-in of Unknown
/// answers (a carried count has none), added up by a merge, kept by a split, cleared at the
/// reset.
#[test]
fn nr_seen_is_the_evidence_of_access() {
    let mut t = regions(&[(0, 4096), (4096, 8192)]);
    t[0].last_nr_accesses = 11; // a once-hot slot, carried
    update_access_rate(&mut t[0], false, 20);
    update_access_rate(&mut t[1], true, 20);
    update_access_rate(&mut t[1], true, 20);
    finalize_unknown(&mut t, 20);
    assert!(t[0].nr_accesses > 0, "{:?}", t[0]);
    assert_eq!((t[0].nr_seen, t[1].nr_seen), (0, 2));
    let r = t[1].clone();
    merge_two_regions(&mut t[0], &r);
    assert_eq!(t[0].nr_seen, 2);
    t.truncate(1);
    split_region_at(&mut t, 0, 4096);
    assert_eq!((t[0].nr_seen, t[1].nr_seen), (2, 2));
    reset_aggregated(&mut t);
    assert!(t.iter().all(|r| r.nr_seen == 0));
}

/// Unknown answers count at the previous rate unless the known ones show a change: one
/// access among two known answers does not make a mostly idle region hot (scaling by n / k
/// made it 10 of 20), a steady hot region keeps its count, and a region that was idle and
/// now answers 14 of 14 is scaled to 20 at once.
#[test]
fn unknown_fill_keeps_idle_region_idle() {
    let mut t = regions(&[(0, 10), (10, 20), (20, 30), (30, 40)]);
    // Mostly idle: previous count 0, now 1 accessed of 2 known.
    t[0].nr_accesses = 1;
    t[0].nr_known = 2;
    // Steady hot: previous 20, now 13 of 14 known.
    t[1].last_nr_accesses = 20;
    t[1].nr_accesses = 13;
    t[1].nr_known = 14;
    // Just became hot: previous 0, now 14 of 14 known.
    t[2].nr_accesses = 14;
    t[2].nr_known = 14;
    // Just went cold: previous 20, now 0 of 14 known.
    t[3].last_nr_accesses = 20;
    t[3].nr_known = 14;
    finalize_unknown(&mut t, 20);
    assert_eq!(t[0].nr_accesses, 1);
    assert_eq!(t[1].nr_accesses, 19);
    assert_eq!(t[2].nr_accesses, 20);
    assert_eq!(t[3].nr_accesses, 0);
    // The moving sum fills an Unknown answer at the previous rate: a steady region's sum
    // neither decays nor jumps.
    let mut r = Region::new(0, 4096);
    r.last_nr_accesses = 10;
    r.nr_accesses_bp = 100_000;
    update_access_unknown(&mut r, 20);
    assert_eq!(r.nr_accesses_bp, 100_000);
}

/// A region with no known answer in an aggregation keeps its count and does not age (it
/// was not observed); an observed one next to it ages as the kernel's.
#[test]
fn unobserved_region_does_not_age() {
    let mut t = regions(&[(0, 10), (10, 20)]);
    for r in t.iter_mut() {
        r.age = 4;
        r.last_nr_accesses = 9;
    }
    t[1].nr_accesses = 9;
    t[1].nr_known = 20;
    finalize_unknown(&mut t, 20);
    assert_eq!(t[0].nr_accesses, 9);
    merge_regions_of(&mut t, 0, 1, true); // size limit 1: nothing merges
    assert_eq!((t[0].age, t[1].age), (4, 5));
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
            r.nr_known = 20; // observed (an unobserved region does not age)
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

fn intervals(sample_us: u64, aggr_us: u64) -> crate::attrs::Attrs {
    crate::attrs::Attrs {
        sample_us,
        aggr_us,
        ..Default::default()
    }
}

/// `damon_test_update_monitoring_result` (core-kunit.h, mainline: the calls pass
/// `aggregating = false`; the values are 6.12.117's).
#[test]
fn kunit_update_monitoring_result() {
    let a = intervals;
    let old = a(10, 1000);
    let mut r = Region::new(3, 7);
    r.nr_accesses = 15;
    r.age = 20;
    update_monitoring_result(&mut r, &old, &a(100, 10000), false);
    assert_eq!((r.nr_accesses, r.age), (15, 2));
    update_monitoring_result(&mut r, &old, &a(1, 1000), false);
    assert_eq!((r.nr_accesses, r.age), (150, 2));
    update_monitoring_result(&mut r, &old, &a(1, 100), false);
    assert_eq!((r.nr_accesses, r.age), (150, 20));
}

/// `damon_update_monitoring_result()`'s mid-aggregation branch (mainline core.c; no kunit
/// case of its own there), with madvd's rule for the known-sample count: what this
/// aggregation gathered is dropped, the last aggregation's count is converted and restarts
/// the moving sum.
#[test]
fn update_monitoring_result_mid_aggregation_drops_the_partial_aggregation() {
    let a = intervals;
    let old = a(5_000, 100_000); // 20 samples per aggregation
    let mut r = Region::new(3, 7);
    r.last_nr_accesses = 10;
    r.nr_accesses = 4;
    r.nr_known = 6;
    r.nr_accesses_bp = 93_000;
    r.age = 8;
    update_monitoring_result(&mut r, &old, &a(2_500, 100_000), true); // 40 samples
    assert_eq!(
        r.last_nr_accesses, 20,
        "half of the samples, converted to 40"
    );
    assert_eq!(r.nr_accesses_bp, 200_000);
    assert_eq!((r.nr_accesses, r.nr_known), (0, 0));
    assert_eq!(r.age, 8, "same aggregation interval");
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

/// A count above the known answers (left by an attribute change mid-aggregation) neither
/// panics nor exceeds the aggregation's samples.
#[test]
fn unknown_with_more_accesses_than_known_answers() {
    let mut t = regions(&[(0, 10)]);
    t[0].nr_accesses = 15;
    t[0].nr_known = 3;
    assert!(finalize_unknown(&mut t, 20) <= 20);
    t[0].nr_accesses = 15;
    t[0].nr_known = 3;
    t[0].last_nr_accesses = 20;
    assert!(finalize_unknown(&mut t, 20) <= 20);
}

/// `MergeRounding::Nearest` (opt-in, not the kernel's rule) rounds the merged
/// `nr_accesses` to nearest; `Floor` is `damon_merge_two_regions()`'s integer division. Age
/// keeps the kernel's floor either way.
#[test]
fn merge_rounding_nearest() {
    let pair = || {
        let mut l = Region::new(0, 100);
        l.nr_accesses = 10;
        l.age = 9;
        let mut r = Region::new(100, 300);
        r.nr_accesses = 20;
        r.age = 22;
        (l, r)
    };
    // (10 * 100 + 20 * 200) / 300 = 16.67; age (900 + 4400) / 300 = 17.67.
    let (mut l, r) = pair();
    merge_two_regions_with(&mut l, &r, MergeRounding::Floor);
    assert_eq!((l.nr_accesses, l.nr_accesses_bp, l.age), (16, 160_000, 17));
    let (mut l, r) = pair();
    merge_two_regions_with(&mut l, &r, MergeRounding::Nearest);
    assert_eq!((l.nr_accesses, l.nr_accesses_bp, l.age), (17, 170_000, 17));
    // Halves round up: 1 and 2 over equal sizes.
    let mut t = regions(&[(0, 100), (100, 200)]);
    t[0].nr_accesses = 1;
    t[1].nr_accesses = 2;
    let mut u = t.clone();
    merge_regions_of_with(&mut t, 2, u64::MAX, false, MergeRounding::Nearest);
    merge_regions_of(&mut u, 2, u64::MAX, false);
    assert_eq!((t.len(), t[0].nr_accesses), (1, 2));
    assert_eq!((u.len(), u[0].nr_accesses), (1, 1));
    // The list-level merge passes it on.
    let mut t = regions(&[(0, 100), (100, 200)]);
    t[0].nr_accesses = 1;
    t[1].nr_accesses = 2;
    merge_regions_with(&mut [&mut t], 2, u64::MAX, 1000, 20, MergeRounding::Nearest);
    assert_eq!(t[0].nr_accesses, 2);
}

/// `AgeRule::ZeroCrossing` (mainline's later rule) restarts the age of a region whose
/// `nr_accesses` went from a few to none or back, within the merge threshold; 6.12's rule
/// (`Kernel612`, the default) keeps it. Far-apart regions so nothing merges.
#[test]
fn zero_crossing_restarts_the_age_within_the_threshold() {
    let setup = || {
        let mut t = regions(&[(0, 100), (200, 300), (400, 500), (600, 700)]);
        // 2 -> 0, 0 -> 1, 0 -> 0, 3 -> 2: all within thres 2.
        for (r, (last, now)) in t.iter_mut().zip([(2, 0), (0, 1), (0, 0), (3, 2)]) {
            r.last_nr_accesses = last;
            r.nr_accesses = now;
            r.nr_known = 20;
            r.age = 7;
        }
        t
    };
    let ages = |t: &[Region]| t.iter().map(|r| r.age).collect::<Vec<_>>();
    let mut t = setup();
    merge_regions_of(&mut t, 2, 1, true);
    assert_eq!(ages(&t), [8, 8, 8, 8]);
    let mut t = setup();
    let rules = MergeRules {
        rounding: MergeRounding::Floor,
        age: AgeRule::ZeroCrossing,
    };
    merge_regions_of_with(&mut t, 2, 1, true, rules);
    assert_eq!(ages(&t), [0, 0, 8, 8]);
}

/// The ages one region takes through a sequence of aggregation counts under `rule`, with the
/// merge threshold `thres` (one region, so nothing merges; every sample known).
fn ages_through(counts: &[u32], thres: u32, rule: AgeRule) -> Vec<u32> {
    let mut t = regions(&[(0, 4096)]);
    let rules = MergeRules {
        rounding: MergeRounding::Floor,
        age: rule,
    };
    let mut last = 0;
    counts
        .iter()
        .map(|&c| {
            t[0].last_nr_accesses = last;
            t[0].nr_accesses = c;
            t[0].nr_known = 20;
            merge_regions_of_with(&mut t, thres, u64::MAX, true, rules);
            last = c;
            t[0].age
        })
        .collect()
}

/// `AgeRule::ZeroRun`: a region flickering between 0 and 1–2 counts (scattered hot pages
/// under an exact check) is as old as its level when it reads accesses, so an
/// `accesses 1..N, age >= M` pattern can match it; when it reads 0 its age is its run of
/// zeros, as under mainline's rule, so an `accesses 0..0` pattern waits for a real idle run.
/// Under `ZeroCrossing` the same region never ages past its last flicker.
#[test]
fn zero_run_ages_a_flickering_region_and_keeps_zero_ages_honest() {
    // A frame of lukewarm regions only: the threshold (max / 10) is 0.
    let flicker = [1, 0, 1, 2, 0, 0, 1, 0, 2, 1, 1, 0, 0, 0, 1];
    let z = ages_through(&flicker, 0, AgeRule::ZeroRun);
    assert_eq!(z, [1, 0, 3, 4, 0, 1, 7, 0, 9, 10, 11, 0, 1, 2, 15]);
    // Mainline's rule: never older than the last change.
    let m = ages_through(&flicker, 0, AgeRule::ZeroCrossing);
    assert!(m.iter().all(|&a| a <= 2), "{m:?}");
    // A level beyond the noise restarts both ages: hot (20) to idle, and idle to 3.
    let moves = [20, 20, 0, 0, 0, 3, 3, 1, 0];
    assert_eq!(
        ages_through(&moves, 2, AgeRule::ZeroRun),
        [0, 1, 0, 1, 2, 0, 1, 2, 0]
    );
    // A zero run's age never exceeds the level's: an idle region from the start ages every
    // aggregation, and a cold region that starts reading 1 keeps its age (it is lukewarm
    // and old), while 0 -> 3 is a new level.
    assert_eq!(
        ages_through(&[0, 0, 0, 1, 1, 0], 0, AgeRule::ZeroRun),
        [1, 2, 3, 4, 5, 0]
    );
    // With a high threshold (a hot frame, max 60: thres 6), a crossing from more than the
    // noise still restarts the level (from the start's 0 to 5, and 0 to 4), as mainline's
    // rule does; 5 -> 0 starts a zero run.
    assert_eq!(
        ages_through(&[5, 5, 0, 0, 4], 6, AgeRule::ZeroRun),
        [0, 1, 0, 1, 0]
    );
}

/// `AgeRule::ZeroRun` through a merge: a region reading 1 (old level) merged with one
/// reading 0 (young zero run) gives a region reading 0 whose age is the runs of none only;
/// under 6.12's rule the ages are weighted whatever the counts.
#[test]
fn zero_run_merge_keeps_lukewarm_level_age_out_of_idle_age() {
    let setup = || {
        let mut t = regions(&[(0, 100), (100, 200)]);
        for (r, (last, now, age, level)) in t.iter_mut().zip([(1, 0, 9, 9), (1, 1, 20, 20)]) {
            r.last_nr_accesses = last;
            r.nr_accesses = now;
            r.nr_known = 20;
            r.age = age;
            r.level_age = level;
        }
        t
    };
    let rules = |age| MergeRules {
        rounding: MergeRounding::Floor,
        age,
    };
    let mut t = setup();
    merge_regions_of_with(&mut t, 1, u64::MAX, true, rules(AgeRule::ZeroRun));
    // Left: 1 -> 0, a new zero run (0); right: level 21; merged reads floor(0.5) = 0, and
    // its age is the zero runs' mean: (0 + 0) / 2.
    assert_eq!((t.len(), t[0].nr_accesses, t[0].age), (1, 0, 0));
    let mut t = setup();
    merge_regions_of_with(&mut t, 1, u64::MAX, true, rules(AgeRule::Kernel612));
    // 6.12: both age (10, 21), the merge weights them.
    assert_eq!((t.len(), t[0].nr_accesses, t[0].age), (1, 0, 15));
}
