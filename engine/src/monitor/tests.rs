//! Monitor tests: the step function against `sim` (accuracy vs ground truth, target
//! lifecycle, sample budget, apply-report feedback) and proptest invariants.

use super::*;
use crate::access::MonitorCost;
use crate::advice::Advice;
use crate::ops::sim::{Pattern, SimOps, SimSpace, PAGE};
use crate::report::RangeOutcome;
use proptest::prelude::*;

const GIB: u64 = 1 << 30;
const T: TargetId = TargetId(1);

fn kernel_attrs() -> Attrs {
    Attrs::default()
}

/// Drive `m` until it produced `n` aggregated snapshots; returns them.
fn run_aggregations(m: &mut Monitor, ops: &mut SimOps, now: &mut u64, n: usize) -> Vec<Snapshot> {
    let mut snaps = Vec::new();
    while snaps.len() < n {
        let out = m.step(*now, ops);
        *now += m.attrs().sample_us;
        assert!(out.gone.is_empty());
        if let Some(s) = out.snapshot {
            snaps.push(s);
        }
    }
    snaps
}

/// Bytes of `r` inside any of `ranges` (sorted, disjoint).
fn overlap(r: &AddrRange, ranges: &[AddrRange]) -> u64 {
    ranges
        .iter()
        .filter_map(|x| x.intersection(r))
        .map(|x| x.len())
        .sum()
}

struct Recall {
    hot: f64,
    cold: f64,
}

/// Hot recall: share of truly hot bytes in regions with nr_accesses >= max/2; cold recall:
/// share of the other monitored bytes in regions with nr_accesses == 0.
fn recall(s: &Snapshot, hot: &[AddrRange]) -> Recall {
    let half = s.max_nr_accesses() / 2;
    let (mut hot_total, mut hot_found, mut cold_total, mut cold_found) = (0u64, 0u64, 0u64, 0u64);
    for r in s.targets.iter().flat_map(|t| t.regions.iter()) {
        let h = overlap(&r.ar, hot);
        let c = r.size() - h;
        hot_total += h;
        cold_total += c;
        if r.nr_accesses >= half {
            hot_found += h;
        }
        if r.nr_accesses == 0 {
            cold_found += c;
        }
    }
    Recall {
        hot: hot_found as f64 / hot_total as f64,
        cold: cold_found as f64 / cold_total as f64,
    }
}

fn hotcold_recall(unknown: f64, seed: u64) -> Recall {
    let space = SimSpace::scenario("hotcold", GIB)
        .unwrap()
        .with_seed(seed)
        .with_unknown_fraction(unknown)
        .unwrap();
    let hot = space.hot_ranges(0, 1);
    let mut ops = SimOps::single(T, space);
    let mut m = Monitor::new(kernel_attrs(), seed).unwrap();
    m.add_target(T);
    let mut now = 0;
    let snaps = run_aggregations(&mut m, &mut ops, &mut now, 10);
    let (answered, unknown_answers) = ops.space(T).unwrap().answered();
    let share = unknown_answers as f64 / answered as f64;
    assert!(
        (share - unknown).abs() < 0.03,
        "Unknown share {share:.3}, wanted {unknown}"
    );
    recall(snaps.last().unwrap(), &hot)
}

/// Must show: a contiguous hot 10% (every page touched each sampling interval) in a cold
/// 90%: after 10 aggregations >= 95% of hot bytes have nr_accesses >= max/2 and >= 95% of
/// cold bytes have 0. Several seeds, each asserted.
#[test]
fn accuracy_hotcold_10_aggregations() {
    for seed in 1..=5 {
        let r = hotcold_recall(0.0, seed);
        eprintln!(
            "hotcold seed {seed}: hot recall {:.4}, cold recall {:.4}",
            r.hot, r.cold
        );
        assert!(
            r.hot >= 0.95 && r.cold >= 0.95,
            "seed {seed}: hot {:.4} cold {:.4}",
            r.hot,
            r.cold
        );
    }
}

/// The same bars with 30% of samples answered Unknown at random.
#[test]
fn accuracy_hotcold_with_30pct_unknown() {
    for seed in 1..=5 {
        let r = hotcold_recall(0.3, seed);
        eprintln!(
            "hotcold 30% unknown seed {seed}: hot recall {:.4}, cold recall {:.4}",
            r.hot, r.cold
        );
        assert!(
            r.hot >= 0.95 && r.cold >= 0.95,
            "seed {seed}: hot {:.4} cold {:.4}",
            r.hot,
            r.cold
        );
    }
}

/// Stairs: the hot 10% window jumps to the next slot every 400 sampling intervals (20
/// aggregations at the kernel's defaults). Returns (aggregation index, estimate, truth) for
/// every aggregation.
fn stairs_wss(unknown: f64, seed: u64, nr_aggr: usize, weighted: bool) -> Vec<(usize, u64, u64)> {
    let space = SimSpace::scenario("stairs", GIB)
        .unwrap()
        .with_seed(seed)
        .with_unknown_fraction(unknown)
        .unwrap();
    let truth_space = space.clone();
    let mut ops = SimOps::single(T, space);
    let mut m = Monitor::new(kernel_attrs(), seed).unwrap();
    m.add_target(T);
    let mut now = 0;
    let per_aggr = m.attrs().aggr_us / m.attrs().sample_us;
    let snaps = run_aggregations(&mut m, &mut ops, &mut now, nr_aggr);
    let (answered, unknown_answers) = ops.space(T).unwrap().answered();
    let share = unknown_answers as f64 / answered as f64;
    assert!(
        (share - unknown).abs() < 0.03,
        "Unknown share {share:.3}, wanted {unknown}"
    );
    snaps
        .iter()
        .enumerate()
        .map(|(k, s)| {
            // Aggregation k covered sim intervals [k*per_aggr, (k+1)*per_aggr).
            let k64 = k as u64;
            let truth = truth_space.wss_bytes_between(k64 * per_aggr, (k64 + 1) * per_aggr);
            (
                k,
                if weighted {
                    wss_weighted_bytes(s)
                } else {
                    wss_bytes(s, 1)
                },
                truth,
            )
        })
        .collect()
}

fn assert_stairs(unknown: f64) {
    for seed in 1..=3 {
        // Six stair steps of 20 aggregations each. The bar is asserted after every step of
        // the monitor (every aggregation), including the ones right after a jump.
        let rows = stairs_wss(unknown, seed, 20 * 6, true);
        let worst = rows
            .iter()
            .map(|(_, e, t)| ((*e as f64 - *t as f64) / *t as f64).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "stairs {:.0}% unknown seed {seed}: worst |WSS error| {:.3} over {} aggregations",
            unknown * 100.0,
            worst,
            rows.len()
        );
        for (k, est, truth) in rows {
            let err = (est as f64 - truth as f64) / truth as f64;
            assert!(
                err.abs() <= 0.20,
                "seed {seed} aggregation {k}: estimate {est} truth {truth} ({:+.1}%)",
                err * 100.0
            );
        }
    }
}

/// Must show: a stairs pattern: the estimated working-set size stays within +-20% of truth
/// after each step.
#[test]
fn accuracy_stairs_wss() {
    assert_stairs(0.0);
}

/// ... and with 30% Unknown answers.
#[test]
fn accuracy_stairs_wss_with_30pct_unknown() {
    assert_stairs(0.3);
}

/// The threshold estimator (damo's: bytes of regions with nr_accesses >= 1) on the same
/// stairs: printed for docs/performance.md (`--nocapture`); asserted only loosely, since a
/// merge that folds a little hot memory into a big cold region makes it spike for one
/// aggregation (see `wss_weighted_bytes`).
#[test]
fn stairs_threshold_wss_report() {
    let rows = stairs_wss(0.0, 1, 120, false);
    let errs: Vec<f64> = rows
        .iter()
        .map(|(_, e, t)| ((*e as f64 - *t as f64) / *t as f64).abs())
        .collect();
    let within = errs.iter().filter(|e| **e <= 0.2).count();
    let worst = errs.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "stairs, threshold WSS estimator: {within}/{} aggregations within 20%, worst {:.3}",
        errs.len(),
        worst
    );
    assert!(within * 10 >= errs.len() * 8, "{within}/{}", errs.len());
}

/// Regions count stays within [min, max] once adapted, on the hotcold sim.
#[test]
fn region_count_within_bounds_once_adapted() {
    let mut ops = SimOps::single(T, SimSpace::scenario("moving", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 3).unwrap();
    m.add_target(T);
    let mut now = 0;
    for s in run_aggregations(&mut m, &mut ops, &mut now, 50)
        .iter()
        .skip(3)
    {
        let n = s.nr_regions() as u32;
        assert!(
            (m.attrs().min_nr_regions..=m.attrs().max_nr_regions).contains(&n),
            "{n}"
        );
    }
}

#[test]
fn first_step_builds_three_region_init() {
    let space = SimSpace::scenario("idle", GIB).unwrap();
    let mappings = space.mappings().to_vec();
    let mut ops = SimOps::single(T, space);
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    assert_eq!(m.regions(T).unwrap().len(), 0);
    let out = m.step(0, &mut ops);
    assert!(out.snapshot.is_none());
    let three = three_regions(&mappings, PAGE).unwrap();
    assert_eq!(m.ranges(T).unwrap(), &three);
    let regions = m.regions(T).unwrap();
    assert!(regions.len() >= 10);
    assert_eq!(regions.first().unwrap().start(), three[0].start);
    assert_eq!(regions.last().unwrap().end(), three[2].end);
    assert_eq!(m.next_step_at_us(), 5000);
}

#[test]
fn aggregation_every_aggr_over_sample_steps() {
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut boundaries = Vec::new();
    for i in 0..=60u64 {
        if m.step(i * 5000, &mut ops).snapshot.is_some() {
            boundaries.push(i);
        }
    }
    // Step 0 only prepares; steps 1..=20 check the first 20 samples.
    assert_eq!(boundaries, vec![20, 40, 60]);
    // Mid-aggregation snapshot carries the moving sum.
    let s = m.snapshot(0);
    assert!(!s.aggregated);
}

#[test]
fn gone_target_dropped_without_panic() {
    let mut ops = SimOps::new();
    ops.insert(TargetId(1), SimSpace::scenario("hotcold", GIB).unwrap());
    ops.insert(TargetId(2), SimSpace::scenario("stairs", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(TargetId(1));
    m.add_target(TargetId(2));
    m.add_target(TargetId(3)); // never existed
    let out = m.step(0, &mut ops);
    assert_eq!(out.gone, vec![TargetId(3)]);
    m.step(5000, &mut ops);
    ops.space_mut(TargetId(2)).unwrap().exit();
    let out = m.step(10_000, &mut ops);
    assert_eq!(out.gone, vec![TargetId(2)]);
    assert_eq!(m.target_ids(), vec![TargetId(1)]);
    for i in 3..50 {
        assert!(m.step(i * 5000, &mut ops).gone.is_empty());
    }
}

/// An access check failing with another error: logged once, its samples count Unknown, and
/// the region keeps its previous rate rather than looking cold.
#[test]
fn failing_check_counts_unknown() {
    struct Flaky {
        inner: SimOps,
        fail: bool,
    }
    impl AccessCheck for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn target_ranges(&mut self, t: TargetId) -> Result<Vec<AddrRange>, AccessError> {
            self.inner.target_ranges(t)
        }
        fn prepare(&mut self, t: TargetId, s: &mut [SampleReq]) -> Result<(), AccessError> {
            self.inner.prepare(t, s)
        }
        fn check(
            &mut self,
            t: TargetId,
            s: &[SampleReq],
            o: &mut [Access],
        ) -> Result<(), AccessError> {
            if self.fail {
                return Err(AccessError::Other {
                    target: t,
                    msg: "boom".into(),
                });
            }
            self.inner.check(t, s, o)
        }
        fn cost(&self) -> MonitorCost {
            self.inner.cost()
        }
    }
    let space = SimSpace::scenario("hotcold", GIB).unwrap();
    let hot = space.hot_ranges(0, 1);
    let mut ops = Flaky {
        inner: SimOps::single(T, space),
        fail: false,
    };
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    let mut last = None;
    while m.aggregations() < 10 {
        if let Some(s) = m.step(now, &mut ops).snapshot {
            last = Some(s);
        }
        now += 5000;
    }
    let before = recall(last.as_ref().unwrap(), &hot);
    ops.fail = true;
    let mut during = None;
    while m.aggregations() < 12 {
        let out = m.step(now, &mut ops);
        assert!(out.gone.is_empty());
        if let Some(s) = out.snapshot {
            during = Some(s);
        }
        now += 5000;
    }
    let during = recall(during.as_ref().unwrap(), &hot);
    assert!(
        before.hot >= 0.9 && during.hot >= 0.9,
        "{} {}",
        before.hot,
        during.hot
    );
}

/// A sample budget: only some regions are sampled each interval, round-robin, and the
/// monitor still finds the hot set (the unsampled ones count Unknown).
#[test]
fn sample_budget_respected_and_still_accurate() {
    let space = SimSpace::scenario("hotcold", GIB).unwrap();
    let hot = space.hot_ranges(0, 1);
    // 2000 samples/s at 5 ms = 10 per interval.
    let mut ops = SimOps::single(T, space).with_max_samples_per_sec(2000.0);
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    let mut steps = 0u64;
    let snaps = run_aggregations(&mut m, &mut ops, &mut now, 30);
    steps += m.passed_sample_intervals() + 1;
    let samples = ops.cost().samples;
    assert!(
        samples <= steps * 10 + 10,
        "{samples} samples in {steps} steps"
    );
    let r = recall(snaps.last().unwrap(), &hot);
    assert!(
        r.hot >= 0.8 && r.cold >= 0.8,
        "hot {} cold {}",
        r.hot,
        r.cold
    );
}

/// Mapping changes are picked up at the update interval (damon_set_regions).
#[test]
fn update_reconciles_with_new_mappings() {
    let mut attrs = kernel_attrs();
    attrs.ops_update_us = 200_000; // every 40 samples
    let space = SimSpace::scenario("hotcold", GIB).unwrap();
    let d = space.data_range();
    let mut ops = SimOps::single(T, space);
    let mut m = Monitor::new(attrs, 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    run_aggregations(&mut m, &mut ops, &mut now, 1);
    // munmap the upper half of the data mapping.
    let mut maps = ops.space(T).unwrap().mappings().to_vec();
    for mp in maps.iter_mut() {
        if *mp == d {
            mp.end = d.start + d.len() / 2;
        }
    }
    ops.space_mut(T).unwrap().set_mappings(maps.clone());
    run_aggregations(&mut m, &mut ops, &mut now, 2);
    let expect = monitoring_ranges(&maps, PAGE);
    assert_eq!(m.ranges(T).unwrap(), expect.as_slice());
    let covered: u64 = m.regions(T).unwrap().iter().map(|r| r.size()).sum();
    assert_eq!(covered, expect.iter().map(|r| r.len()).sum::<u64>());
}

fn outcome(range: AddrRange, applied: u64) -> RangeOutcome {
    RangeOutcome {
        target: T,
        range,
        advice: Advice::Pageout,
        scheme: 0,
        bytes_requested: range.len(),
        bytes_applied: applied,
        bytes_resident: 0,
        elapsed_ns: 0,
        errors: Vec::new(),
        paced_from: None,
    }
}

/// `damos_apply_scheme()` (mm/damon/core.c 6.12.117) resets the age of every region a
/// non-stat scheme advised, whatever the advice returned: a range that applied nothing is
/// reset too; nothing outside the requested ranges is.
#[test]
fn apply_report_resets_age_of_exactly_requested_ranges() {
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    run_aggregations(&mut m, &mut ops, &mut now, 5);
    let regions = m.regions(T).unwrap().to_vec();
    let aged: Vec<&Region> = regions
        .iter()
        .filter(|r| r.age > 0 && r.size() >= 4 * PAGE)
        .collect();
    assert!(aged.len() >= 2);
    let r0 = aged[0].ar;
    // Applied over the middle of a region: split at both ends, only the middle reset.
    let mid = AddrRange::new(r0.start + PAGE, r0.start + 2 * PAGE);
    let not_applied = aged[1].ar;
    let ages: Vec<(AddrRange, u32)> = regions.iter().map(|r| (r.ar, r.age)).collect();
    m.apply_report(&ApplyReport {
        outcomes: vec![outcome(mid, PAGE), outcome(not_applied, 0)],
        gone: Vec::new(),
        dry_run: false,
    });
    let after = m.regions(T).unwrap();
    for r in after {
        if r.ar == mid || r.ar == not_applied {
            assert_eq!(r.age, 0, "{r:?}");
        } else {
            let old = ages
                .iter()
                .find(|(a, _)| a.start <= r.start() && r.end() <= a.end)
                .unwrap();
            assert_eq!(r.age, old.1, "{r:?}");
        }
    }
    assert!(after.iter().any(|r| r.ar == mid));
    // The monitor keeps running across the split (answers are remapped by address).
    run_aggregations(&mut m, &mut ops, &mut now, 1);
}

/// madvd's residency cut: a range the actuator skipped wholly (none of it resident, or held
/// back by the pace) counts as filtered and keeps its age; one partly cut is reset whole.
#[test]
fn apply_report_keeps_the_age_of_wholly_skipped_ranges() {
    use crate::report::ApplyErrorKind;
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    run_aggregations(&mut m, &mut ops, &mut now, 5);
    let regions = m.regions(T).unwrap().to_vec();
    let aged: Vec<AddrRange> = regions
        .iter()
        .filter(|r| r.age > 0 && r.size() >= 4 * PAGE)
        .map(|r| r.ar)
        .collect();
    assert!(aged.len() >= 3);
    let mut out_whole = outcome(aged[0], 0);
    out_whole.errors = vec![(ApplyErrorKind::NotResident, aged[0].len())];
    let mut paced = outcome(aged[1], 0);
    paced.errors = vec![
        (ApplyErrorKind::NotResident, PAGE),
        (ApplyErrorKind::Paced, aged[1].len() - PAGE),
    ];
    let mut partly = outcome(aged[2], PAGE);
    partly.errors = vec![(ApplyErrorKind::NotResident, aged[2].len() - PAGE)];
    assert!(out_whole.wholly_skipped() && paced.wholly_skipped() && !partly.wholly_skipped());
    let before: Vec<(AddrRange, u32)> = regions.iter().map(|r| (r.ar, r.age)).collect();
    m.apply_report(&ApplyReport {
        outcomes: vec![out_whole, paced, partly],
        gone: Vec::new(),
        dry_run: false,
    });
    let age_of = |ar: AddrRange| {
        m.regions(T)
            .unwrap()
            .iter()
            .find(|r| r.ar == ar)
            .map(|r| r.age)
    };
    let was = |ar: AddrRange| before.iter().find(|(a, _)| *a == ar).unwrap().1;
    assert_eq!(age_of(aged[0]), Some(was(aged[0])));
    assert_eq!(age_of(aged[1]), Some(was(aged[1])));
    assert_eq!(age_of(aged[2]), Some(0));
}

/// A range the pace stopped part-way (`RangeOutcome::paced_from`): the age is reset below the
/// stop only; the held-back part was never tried and keeps its age, so the scheme that
/// resumes there still finds it old (without this, a paced page-out left its rest unmatched
/// for the scheme's whole minimum age).
#[test]
fn apply_report_keeps_the_age_of_the_part_the_pace_held_back() {
    use crate::report::ApplyErrorKind;
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    run_aggregations(&mut m, &mut ops, &mut now, 5);
    let regions = m.regions(T).unwrap().to_vec();
    let r = regions
        .iter()
        .find(|r| r.age > 0 && r.size() >= 8 * PAGE)
        .expect("an aged region of 8 pages")
        .clone();
    let stop = r.start() + 3 * PAGE;
    let mut o = outcome(r.ar, 3 * PAGE);
    o.errors = vec![(ApplyErrorKind::Paced, r.size() - 3 * PAGE)];
    o.paced_from = Some(stop);
    assert!(!o.wholly_skipped());
    assert_eq!(o.reached(), AddrRange::new(r.start(), stop));
    m.apply_report(&ApplyReport {
        outcomes: vec![o],
        gone: Vec::new(),
        dry_run: false,
    });
    let now_regions = m.regions(T).unwrap();
    let covering: Vec<&Region> = now_regions
        .iter()
        .filter(|x| x.start() < r.end() && x.end() > r.start())
        .collect();
    assert_eq!(covering.len(), 2, "split at the stop: {covering:?}");
    assert_eq!(
        (covering[0].ar, covering[0].age),
        (AddrRange::new(r.start(), stop), 0)
    );
    assert_eq!(
        (covering[1].ar, covering[1].age),
        (AddrRange::new(stop, r.end()), r.age)
    );
}

#[test]
fn flat_in_target_size_layout() {
    // 1 TiB space: the monitor runs without per-page memory.
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", 1 << 40).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    let snaps = run_aggregations(&mut m, &mut ops, &mut now, 3);
    assert_eq!(
        snaps.last().unwrap().targets[0].total_bytes(),
        m.regions(T).unwrap().iter().map(|r| r.size()).sum::<u64>()
    );
}

// ---------------------------------------------------------------------------------------
// proptest invariants

fn check_invariants(m: &Monitor, id: TargetId, min_region: u64) -> Result<(), TestCaseError> {
    let regions = m.regions(id).unwrap();
    let ranges = m.ranges(id).unwrap();
    for w in regions.windows(2) {
        prop_assert!(
            w[0].end() <= w[1].start(),
            "sorted and disjoint: {:?} {:?}",
            w[0].ar,
            w[1].ar
        );
    }
    for r in regions {
        prop_assert!(!r.ar.is_empty());
        prop_assert!(
            r.start() % min_region == 0 && r.end() % min_region == 0,
            "aligned: {:?}",
            r.ar
        );
    }
    // Covering exactly the current ranges: same union.
    let mut union: Vec<AddrRange> = Vec::new();
    for r in regions {
        match union.last_mut() {
            Some(l) if l.end == r.start() => l.end = r.end(),
            _ => union.push(r.ar),
        }
    }
    let mut want: Vec<AddrRange> = Vec::new();
    for r in ranges {
        match want.last_mut() {
            Some(l) if l.end == r.start => l.end = r.end,
            _ => want.push(*r),
        }
    }
    prop_assert_eq!(union, want);
    Ok(())
}

fn make_pattern(d: AddrRange, kind: u8, k: u64, p: f64) -> Pattern {
    let tenth = (d.len() / 10) & !(PAGE - 1);
    match kind % 4 {
        0 => Pattern::Static(vec![crate::ops::sim::Band {
            range: AddrRange::new(d.start + (k % 9) * tenth, d.start + (k % 9 + 1) * tenth),
            prob: p,
        }]),
        1 => Pattern::Stairs {
            base: d,
            window: tenth,
            step_intervals: k % 50 + 1,
            prob: 1.0,
        },
        2 => Pattern::Moving {
            base: d,
            window: tenth,
            bytes_per_interval: (k % 1000 + 1) * PAGE,
            prob: 1.0,
        },
        _ => Pattern::Zigzag {
            base: d,
            window: tenth,
            bytes_per_interval: (k % 1000 + 1) * PAGE,
            prob: p,
        },
    }
}

#[derive(Debug, Clone)]
enum Event {
    Step,
    Unmap(u8),
    Remap,
    Apply(u16, u16),
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        20 => Just(Event::Step),
        1 => any::<u8>().prop_map(Event::Unmap),
        1 => Just(Event::Remap),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(a, b)| Event::Apply(a, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// After every step: regions sorted, disjoint, aligned, covering exactly the current
    /// monitoring ranges (three regions, or fewer), also across munmap/mmap and apply
    /// reports; at every aggregation (after merge) at most max_nr_regions, given
    /// max >= 2*min + 3 (below that even the kernel's fully aggressive merge cannot reach
    /// max: greedy merging under a size limit of total/min leaves up to 2*min + 3 regions),
    /// and, once adapted (5 aggregations after the last mapping change), at least
    /// min_nr_regions.
    #[test]
    fn invariants_after_every_step(
        seed in any::<u64>(),
        min_nr in 3u32..20,
        extra in 0u32..200,
        ratio in 1u64..12,
        upd in 1u64..60,
        size_pages in 64u64..100_000,
        unknown in 0.0f64..0.5,
        pat_kind in any::<u8>(),
        pat_k in any::<u64>(),
        pat_p in 0.0f64..=1.0,
        events in proptest::collection::vec(arb_event(), 50..300),
    ) {
        let max_nr = 2 * min_nr + 3 + extra;
        let attrs = Attrs {
            sample_us: 1000,
            aggr_us: 1000 * ratio,
            ops_update_us: 1000 * upd,
            min_nr_regions: min_nr,
            max_nr_regions: max_nr,
            min_region_sz: PAGE,
        };
        let base = SimSpace::layout(size_pages * PAGE, seed).unwrap();
        let d = base.data_range();
        let pattern = make_pattern(d, pat_kind, pat_k, pat_p);
        let original_maps = base.mappings().to_vec();
        let space = base.with_pattern(pattern).with_unknown_fraction(unknown).unwrap();
        let mut ops = SimOps::single(T, space);
        let mut m = Monitor::new(attrs, seed).unwrap();
        m.add_target(T);
        let mut now = 0;
        // Aggregations since the last mapping change (the lower bound needs adaptation).
        let mut settled = 0u32;
        for ev in events {
            match ev {
                Event::Step => {
                    let out = m.step(now, &mut ops);
                    now += attrs.sample_us;
                    prop_assert!(out.gone.is_empty());
                    check_invariants(&m, T, PAGE)?;
                    if let Some(s) = out.snapshot {
                        prop_assert!(s.aggregated);
                        prop_assert!(s.nr_regions() as u32 <= max_nr, "{} > {}", s.nr_regions(), max_nr);
                        settled += 1;
                        let pages: u64 = s.targets[0].regions.iter().map(|r| r.size() / PAGE).sum();
                        if settled >= 5 && pages >= 4 * min_nr as u64 {
                            prop_assert!(s.nr_regions() as u32 >= min_nr, "{} < {} after {} aggregations", s.nr_regions(), min_nr, settled);
                        }
                        for r in &s.targets[0].regions {
                            prop_assert!(r.nr_accesses <= attrs.max_nr_accesses());
                        }
                    }
                }
                Event::Unmap(k) => {
                    let mut maps = ops.space(T).unwrap().mappings().to_vec();
                    if maps.len() > 1 {
                        maps.remove(k as usize % maps.len());
                        ops.space_mut(T).unwrap().set_mappings(maps);
                        settled = 0;
                    }
                }
                Event::Remap => {
                    ops.space_mut(T).unwrap().set_mappings(original_maps.clone());
                    settled = 0;
                }
                Event::Apply(a, b) => {
                    let regions = m.regions(T).unwrap().to_vec();
                    if regions.is_empty() { continue; }
                    let r = &regions[a as usize % regions.len()];
                    let pages = r.size() / PAGE;
                    let off = (b as u64 % pages) * PAGE;
                    let range = AddrRange::new(r.start() + off, r.end());
                    m.apply_report(&ApplyReport { outcomes: vec![outcome(range, range.len())], gone: vec![], dry_run: false });
                    check_invariants(&m, T, PAGE)?;
                }
            }
        }
    }

    /// No merge above the size limit: every region after merge_regions_of is either an
    /// input region unchanged or no larger than sz_limit.
    #[test]
    fn merge_never_exceeds_size_limit(
        sizes in proptest::collection::vec(1u64..100, 1..200),
        nrs in proptest::collection::vec(0u32..20, 200),
        thres in 0u32..20,
        sz_limit in 1u64..500,
        gaps in proptest::collection::vec(any::<bool>(), 200),
    ) {
        let mut start = 0;
        let mut input = Vec::new();
        for (i, sz) in sizes.iter().enumerate() {
            if gaps[i] && i % 7 == 0 { start += 3; }
            let mut r = Region::new(start, start + sz);
            r.nr_accesses = nrs[i];
            input.push(r);
            start += sz;
        }
        let mut out = input.clone();
        merge_regions_of(&mut out, thres, sz_limit, true);
        for r in &out {
            let unchanged = input.iter().any(|i| i.ar == r.ar);
            prop_assert!(unchanged || r.size() <= sz_limit, "{:?} > {}", r.ar, sz_limit);
        }
        // Coverage unchanged.
        prop_assert_eq!(out.iter().map(|r| r.size()).sum::<u64>(), input.iter().map(|r| r.size()).sum::<u64>());
        for w in out.windows(2) { prop_assert!(w[0].end() <= w[1].start()); }
    }

    /// The apply report's age reset lands on exactly the requested regions, applied or not
    /// (`damos_apply_scheme()`, core.c 6.12.117): after it, a region has age 0 iff it lies
    /// inside a requested range; every other keeps its age, and no region straddles a
    /// requested range's boundary.
    #[test]
    fn age_reset_lands_on_exactly_requested(
        seed in any::<u64>(),
        picks in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u16>(), any::<bool>()), 1..8),
    ) {
        let mut ops = SimOps::single(T, SimSpace::scenario("moving", 256 << 20).unwrap().with_seed(seed));
        let mut m = Monitor::new(kernel_attrs(), seed).unwrap();
        m.add_target(T);
        let mut now = 0;
        run_aggregations(&mut m, &mut ops, &mut now, 4);
        let before = m.regions(T).unwrap().to_vec();
        // After 4 aggregations most ages are non-zero, so a reset is visible.
        prop_assert!(before.iter().filter(|r| r.age > 0).count() * 2 >= before.len());
        let span_start = before.first().unwrap().start();
        let span_end = before.last().unwrap().end();
        let mut applied: Vec<AddrRange> = Vec::new();
        let mut outcomes = Vec::new();
        for (a, b, c, ok) in picks {
            let pages = (span_end - span_start) / PAGE;
            let s = span_start + (a as u64 * b as u64 % pages) * PAGE;
            let len = (c as u64 % 4096 + 1) * PAGE;
            let range = AddrRange::new(s, (s + len).min(span_end));
            applied.push(range);
            outcomes.push(outcome(range, if ok { range.len() } else { 0 }));
        }
        m.apply_report(&ApplyReport { outcomes, gone: vec![], dry_run: false });
        let after = m.regions(T).unwrap();
        for r in after {
            let inside = applied.iter().any(|x| x.start <= r.start() && r.end() <= x.end);
            let touches = applied.iter().any(|x| x.intersects(&r.ar));
            prop_assert!(inside || !touches, "region {:?} straddles a requested range", r.ar);
            // Its age before: the region of `before` containing it (minus our +1).
            let old = before.iter().find(|o| o.start() <= r.start() && r.end() <= o.end()).unwrap();
            if inside {
                prop_assert_eq!(r.age, 0);
            } else {
                prop_assert_eq!(r.age, old.age, "untouched region {:?} changed age", r.ar);
            }
        }
    }
}

/// Applied ranges reach the access check (`note_advised`) at the start of the next step.
#[test]
fn advised_ranges_reach_the_check() {
    struct Spy {
        inner: SimOps,
        noted: Vec<(TargetId, Vec<AddrRange>)>,
    }
    impl AccessCheck for Spy {
        fn name(&self) -> &'static str {
            "spy"
        }
        fn target_ranges(&mut self, t: TargetId) -> Result<Vec<AddrRange>, AccessError> {
            self.inner.target_ranges(t)
        }
        fn prepare(&mut self, t: TargetId, s: &mut [SampleReq]) -> Result<(), AccessError> {
            self.inner.prepare(t, s)
        }
        fn check(
            &mut self,
            t: TargetId,
            s: &[SampleReq],
            o: &mut [Access],
        ) -> Result<(), AccessError> {
            self.inner.check(t, s, o)
        }
        fn note_advised(&mut self, t: TargetId, ranges: &[AddrRange]) {
            self.noted.push((t, ranges.to_vec()));
        }
    }
    let mut ops = Spy {
        inner: SimOps::single(T, SimSpace::scenario("hotcold", GIB).unwrap()),
        noted: Vec::new(),
    };
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    m.step(0, &mut ops);
    m.step(5000, &mut ops);
    let r = m.regions(T).unwrap()[2].ar;
    m.apply_report(&ApplyReport {
        outcomes: vec![outcome(r, r.len()), outcome(m.regions(T).unwrap()[4].ar, 0)],
        gone: vec![],
        dry_run: false,
    });
    assert!(ops.noted.is_empty());
    m.step(10_000, &mut ops);
    assert_eq!(ops.noted, vec![(T, vec![r])]);
    m.step(15_000, &mut ops);
    assert_eq!(ops.noted.len(), 1, "told once");
}

#[test]
fn set_attrs_validates_and_converts() {
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", GIB).unwrap());
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    m.add_target(T);
    let mut now = 0;
    run_aggregations(&mut m, &mut ops, &mut now, 5);
    let mut bad = *m.attrs();
    bad.min_nr_regions = 2;
    assert_eq!(m.set_attrs(bad), Err(AttrsError::TooFewMinRegions(2)));
    let mut slower = *m.attrs();
    slower.aggr_us = 200_000; // 40 samples per aggregation
    let before: Vec<u32> = m.regions(T).unwrap().iter().map(|r| r.age).collect();
    m.set_attrs(slower).unwrap();
    let after: Vec<u32> = m.regions(T).unwrap().iter().map(|r| r.age).collect();
    assert_eq!(after, before.iter().map(|a| a / 2).collect::<Vec<_>>());
    let snaps = run_aggregations(&mut m, &mut ops, &mut now, 2);
    assert_eq!(snaps[0].max_nr_accesses(), 40);
    // The next aggregation came a full new interval after the change.
    assert_eq!(m.passed_sample_intervals(), 100 + 2 * 40);
}

/// `damon_test_target` (core-kunit.h, 6.12.117): adding and destroying a target changes the
/// context's target count.
#[test]
fn kunit_target() {
    let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
    assert_eq!(m.target_ids().len(), 0);
    m.add_target(T);
    assert_eq!(m.target_ids(), vec![T]);
    m.add_target(T);
    assert_eq!(m.target_ids().len(), 1, "adding twice is a no-op");
    m.remove_target(T);
    assert_eq!(m.target_ids().len(), 0);
    assert!(m.regions(T).is_none());
}

/// `Departures::Kernel` runs the kernel's rules: an `Unknown` answer counts as not accessed
/// (`damon_va_young()`), so a hot region read only through Unknown answers drops to 0 and
/// ages; with madvd's rules (the default) it carries its count and does not age.
#[test]
fn departures_kernel_counts_unknown_as_not_accessed() {
    let run = |departures: Departures| {
        let space = SimSpace::scenario("hotcold", GIB).unwrap();
        let hot = space.hot_ranges(0, 1);
        let mut ops = SimOps::single(T, space);
        let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
        m.set_departures(departures);
        assert_eq!(m.departures(), departures);
        m.add_target(T);
        let mut now = 0;
        run_aggregations(&mut m, &mut ops, &mut now, 10);
        let mut space = ops.remove(T).unwrap();
        space = space.with_unknown_fraction(1.0).unwrap();
        let mut ops = SimOps::single(T, space);
        let snaps = run_aggregations(&mut m, &mut ops, &mut now, 3);
        (recall(snaps.last().unwrap(), &hot), snaps)
    };
    let (madvd, _) = run(Departures::Madvd);
    assert!(madvd.hot >= 0.9, "{}", madvd.hot);
    let (kernel, snaps) = run(Departures::Kernel);
    assert_eq!(kernel.hot, 0.0);
    assert!(snaps.last().unwrap().targets[0]
        .regions
        .iter()
        .all(|r| r.nr_accesses == 0));
}

/// `Departures::Kernel` samples every region in every interval (the kernel has no sample
/// budget) and keeps what `__damon_va_init_regions` leaves (no `split_to_min_regions`):
/// three ranges of 1.5, 1.5 and 7 MiB at `min_nr_regions` 10 give 1 + 1 + 7 = 9 regions.
#[test]
fn departures_kernel_has_no_budget_and_no_min_regions_split() {
    const MIB: u64 = 1 << 20;
    let run = |departures: Departures| {
        let mut space = SimSpace::scenario("hotcold", GIB).unwrap();
        let base = space.data_range().start;
        space.set_mappings(vec![
            AddrRange::new(base, base + 3 * MIB / 2),
            AddrRange::new(base + 10 * MIB, base + 23 * MIB / 2),
            AddrRange::new(base + 20 * MIB, base + 27 * MIB),
        ]);
        let mut ops = SimOps::single(T, space).with_max_samples_per_sec(400.0);
        let mut m = Monitor::new(kernel_attrs(), 1).unwrap();
        m.set_departures(departures);
        m.add_target(T);
        m.step(0, &mut ops);
        let after_init = m.nr_regions();
        let steps = 200;
        let mut sampled = 0;
        for i in 1..=steps {
            sampled += m.nr_regions() as u64;
            m.step(i * 5000, &mut ops);
        }
        (after_init, ops.cost().samples, sampled)
    };
    let (init, samples, _) = run(Departures::Madvd);
    assert_eq!(init, 10);
    assert!(
        samples <= 2 * 200 + 2,
        "budget of 2 per interval: {samples}"
    );
    let (init, samples, regions) = run(Departures::Kernel);
    assert_eq!(init, 9);
    assert_eq!(samples, regions, "every region sampled in every interval");
}

#[test]
fn sample_budget_short_when_an_aggregation_cannot_reach_every_region() {
    // 250 samples/s at 1 s: 250 an aggregation.
    assert!(sample_budget_short(250.0, 1_000_000, 251));
    assert!(!sample_budget_short(250.0, 1_000_000, 250));
    // The same budget at the probe's 2 s aggregations reaches 500 regions.
    assert!(!sample_budget_short(250.0, 2_000_000, 500));
    assert!(sample_budget_short(250.0, 2_000_000, 501));
}
