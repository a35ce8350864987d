//! Interval auto-tuning tests: the kunit port of the feedback loop, the formula's values, and
//! the monitor tuned over a simulated space whose pages are touched with probabilities below
//! 1 (ground truth from the sim), plus the rescale rule of `Monitor::set_attrs`.

use super::*;

/// Port of `damon_test_feed_loop_next_input` (mm/damon/tests/core-kunit.h, 6.12 and
/// mainline alike).
#[test]
fn kunit_feed_loop_next_input() {
    let last_input = 900_000;
    // A score below the goal (always 10 000) asks for more input.
    assert!(feed_loop_next_input(last_input, 200) > last_input);
    // A score above the goal asks for less.
    assert!(feed_loop_next_input(last_input, 250_000_000) < last_input);
    // The step grows with the distance from the goal.
    assert!(feed_loop_next_input(last_input, 200) > feed_loop_next_input(last_input, 2000));
}

fn region(start: u64, end: u64, nr_accesses: u32) -> Region {
    let mut r = Region::new(start, end);
    r.nr_accesses = nr_accesses;
    r
}

#[test]
fn score_is_size_weighted_access_events_over_the_goal() {
    // 3/4 of the bytes at 0 of 20 samples, 1/4 at 4 of 20: ratio 5% = 500 bp.
    let rs = [region(0, 3000, 0), region(3000, 4000, 4)];
    assert_eq!(intervals_score(&rs, 20, 500), 10_000);
    assert_eq!(intervals_score(&rs, 20, 400), 12_500);
    assert_eq!(intervals_score(&rs, 20, 1000), 5_000);
    // No regions: no target events; the guard keeps it from dividing by zero.
    assert_eq!(intervals_score(&[], 20, 400), 0);
}

#[test]
fn adaptation_doubles_at_most_and_halves_at_most() {
    // Nothing observed: the feed loop doubles the input.
    assert_eq!(intervals_adaptation_bp(0), 20_000);
    // On goal: unchanged.
    assert_eq!(intervals_adaptation_bp(10_000), 10_000);
    // 20% under the goal: 1.2×.
    assert_eq!(intervals_adaptation_bp(8_000), 12_000);
    // 20% over: the loop says 0.8×, rescaled into [0.5, 1]: 0.9×.
    assert_eq!(intervals_adaptation_bp(12_000), 9_000);
    // Twice the goal or more: the loop's minimum (1 bp), rescaled: 0.5×.
    assert_eq!(intervals_adaptation_bp(20_000), 5_000);
    assert_eq!(intervals_adaptation_bp(u64::MAX), 5_000);
}

#[test]
fn tuning_keeps_the_ratio_and_the_bounds() {
    let attrs = Attrs::default(); // 5 ms / 100 ms
    let goal = IntervalsGoal {
        access_bp: 400,
        aggrs: 3,
        min_sample_us: 1_000,
        max_sample_us: 8_000,
    };
    let next = tune_intervals(&attrs, &goal, 20, 8_000).unwrap();
    assert_eq!((next.sample_us, next.aggr_us), (6_000, 120_000));
    assert_eq!(next.max_nr_accesses(), attrs.max_nr_accesses());
    // Nothing seen: doubled, but held at the maximum.
    let next = tune_intervals(&attrs, &goal, 20, 0).unwrap();
    assert_eq!((next.sample_us, next.aggr_us), (8_000, 160_000));
    // Far over: halved.
    let next = tune_intervals(&attrs, &goal, 20, 50_000).unwrap();
    assert_eq!((next.sample_us, next.aggr_us), (2_500, 50_000));
    // On goal, or clamped into no change: nothing to do.
    assert_eq!(tune_intervals(&attrs, &goal, 20, 10_000), None);
    let at_max = Attrs {
        sample_us: 8_000,
        aggr_us: 160_000,
        ..attrs
    };
    assert_eq!(tune_intervals(&at_max, &goal, 20, 0), None);
}

#[test]
fn tuner_runs_every_aggrs_aggregations_from_the_start() {
    let attrs = Attrs::default();
    let goal = IntervalsGoal {
        aggrs: 3,
        ..Default::default()
    };
    // kdamond_init_ctx: next_intervals_tune_sis = next_aggregation_sis * aggrs.
    let mut t = Tuner::new(goal, &attrs, 20).unwrap();
    let idle = [region(0, 4096, 0)];
    assert_eq!(t.at_aggregation(20, &attrs, &idle), None);
    assert_eq!(t.at_aggregation(40, &attrs, &idle), None);
    let next = t.at_aggregation(60, &attrs, &idle).unwrap();
    assert_eq!(next.sample_us, 10_000, "nothing seen: doubled");
    // The next one is due 3 × aggr_samples (20) sampling intervals later.
    assert_eq!(t.at_aggregation(119, &next, &idle), None);
    assert!(t.at_aggregation(120, &next, &idle).is_some());
}

#[test]
fn bounds_change_at_run_time_and_clamp_the_interval() {
    let attrs = Attrs::default();
    let mut t = Tuner::new(IntervalsGoal::default(), &attrs, 20).unwrap();
    assert_eq!(t.set_bounds(20_000, 1_000_000, attrs.sample_us), Ok(20_000));
    assert_eq!(t.goal().min_sample_us, 20_000);
    assert_eq!(
        t.set_bounds(0, 10, 5_000),
        Err(AttrsError::GoalZeroMin),
        "refused bounds leave the goal as it was"
    );
    assert_eq!(t.goal().min_sample_us, 20_000);
    assert_eq!(
        t.set_bounds(30, 10, 5_000),
        Err(AttrsError::GoalMinAboveMax {
            min_us: 30,
            max_us: 10
        })
    );
}

// ---- The monitor over the sim ----

use crate::access::{Access, AccessCheck, AccessError, SampleReq};
use crate::monitor::Monitor;
use crate::ops::sim::{Band, Pattern, SimOps, SimSpace};
use crate::region::{AddrRange, TargetId};
use crate::snapshot::Snapshot;

const T: TargetId = TargetId(1);
const GIB: u64 = 1 << 30;
/// One tick of the sim's clock: the sim answers per tick.
const TICK_US: u64 = 1_000;

/// The sim on a clock of ticks: a sampling interval of `ticks` ticks asks the space once per
/// tick and answers Accessed when any tick touched the page — what an Accessed bit set at
/// any time of the interval shows. So a longer sampling interval sees more of a page touched
/// now and then, as on a real machine (the sim alone answers per sampling interval, whatever
/// its length).
struct Ticks {
    inner: SimOps,
    ticks: u64,
    ranges_calls: u64,
}

impl AccessCheck for Ticks {
    fn name(&self) -> &'static str {
        "sim-ticks"
    }
    fn target_ranges(&mut self, target: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        self.ranges_calls += 1;
        self.inner.target_ranges(target)
    }
    fn prepare(&mut self, target: TargetId, samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.inner.prepare(target, samples)
    }
    fn check(
        &mut self,
        target: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        let mut tick = vec![Access::NotAccessed; samples.len()];
        out.iter_mut().for_each(|a| *a = Access::NotAccessed);
        for _ in 0..self.ticks.max(1) {
            self.inner.check(target, samples, &mut tick)?;
            for (o, t) in out.iter_mut().zip(tick.iter()) {
                *o = match (*o, *t) {
                    (Access::Accessed, _) | (_, Access::Accessed) => Access::Accessed,
                    (Access::Unknown, _) | (_, Access::Unknown) => Access::Unknown,
                    _ => Access::NotAccessed,
                };
            }
        }
        Ok(())
    }
}

/// One step at `now`; the interval that follows is the monitor's sampling interval, in ticks.
fn step(m: &mut Monitor, ops: &mut Ticks, now: &mut u64) -> Option<Snapshot> {
    let out = m.step(*now, ops);
    assert!(out.gone.is_empty());
    *now += m.step_interval_us();
    ops.ticks = m.step_interval_us() / TICK_US;
    out.snapshot
}

/// Ground truth: the share of the monitored bytes found accessed in a sampling interval of
/// `ticks` ticks, `Σ len × (1 − (1 − p)^ticks) / monitored bytes`, from the sim's own bands.
fn true_ratio(space: &SimSpace, monitored: &[AddrRange], ticks: u64) -> f64 {
    let total: u64 = monitored.iter().map(|r| r.len()).sum();
    let seen: f64 = space
        .bands(0)
        .iter()
        .map(|b| {
            let inside: u64 = monitored
                .iter()
                .filter_map(|m| m.intersection(&b.range))
                .map(|x| x.len())
                .sum();
            inside as f64 * (1.0 - (1.0 - b.prob).powi(ticks as i32))
        })
        .sum();
    seen / total as f64
}

/// Tune toward `goal` from `start_sample_us` over a space of `bands`; returns the sampling
/// interval after each of `tunings` tuning steps, and the monitored ranges.
fn tuned_intervals(
    bands: Vec<Band>,
    seed: u64,
    start_sample_us: u64,
    goal: IntervalsGoal,
    tunings: usize,
) -> (Vec<u64>, SimSpace, Vec<AddrRange>) {
    let space = SimSpace::layout(GIB, seed)
        .unwrap()
        .with_pattern(Pattern::Static(bands));
    let mut ops = Ticks {
        inner: SimOps::single(T, space.clone()),
        ticks: start_sample_us / TICK_US,
        ranges_calls: 0,
    };
    let attrs = Attrs {
        sample_us: start_sample_us,
        aggr_us: start_sample_us * 20,
        min_nr_regions: 100,
        ..Attrs::default()
    };
    let mut m = Monitor::new(attrs, seed).unwrap();
    m.set_intervals_goal(Some(goal)).unwrap();
    m.add_target(T);
    let mut now = 0;
    let mut samples = Vec::new();
    let mut aggregations = 0;
    while samples.len() < tunings {
        if step(&mut m, &mut ops, &mut now).is_some() {
            aggregations += 1;
            if aggregations % goal.aggrs as usize == 0 {
                samples.push(m.attrs().sample_us);
                assert_eq!(m.attrs().max_nr_accesses(), 20, "the ratio is kept");
            }
        }
    }
    let monitored = m.ranges(T).unwrap().to_vec();
    (samples, space, monitored)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The must-show of interval tuning: a 1 GiB mapping whose pages are each touched with
/// probability 0.001 per 1-ms tick (once a second on average). At the 4% goal the true
/// access ratio, `0.97 × (1 − 0.999^k)`, is 4% at k ≈ 42 ticks (42 ms). From 5 ms (too
/// short: nothing seen) and from 400 ms (too long: a third of the pages seen), the tuned
/// sampling interval converges there: after 20 tunings, the median interval is within 15%
/// of 42 ms and the median true access ratio at the tuned intervals within 15% of the goal.
#[test]
fn tuned_sampling_interval_converges_to_the_access_ratio_goal() {
    let goal = IntervalsGoal::default(); // 4%, every 3 aggregations, 5 ms..=10 s
    let data = SimSpace::layout(GIB, 0).unwrap().data_range();
    let bands = vec![Band {
        range: data,
        prob: 0.001,
    }];
    for (seed, start_us) in [(1, 5_000), (2, 400_000), (3, 5_000)] {
        let (samples, space, monitored) = tuned_intervals(bands.clone(), seed, start_us, goal, 50);
        // The interval where the truth is on goal, by bisection over ticks.
        let on_goal = (1..10_000u64)
            .find(|&k| true_ratio(&space, &monitored, k) >= goal.access_bp as f64 / 10_000.0)
            .unwrap();
        assert!(
            (40..=44).contains(&on_goal),
            "ground truth: {on_goal} ticks"
        );
        let tail: Vec<u64> = samples[20..].to_vec();
        let med_ms = median(tail.iter().map(|&s| s as f64 / 1e3).collect());
        let med_ratio = median(
            tail.iter()
                .map(|&s| true_ratio(&space, &monitored, s / TICK_US))
                .collect(),
        );
        let goal_ratio = goal.access_bp as f64 / 10_000.0;
        assert!(
            (med_ms - on_goal as f64).abs() <= 0.15 * on_goal as f64,
            "seed {seed} from {start_us} us: median tuned interval {med_ms} ms, on goal at {on_goal} ms; {samples:?}"
        );
        assert!(
            (med_ratio - goal_ratio).abs() <= 0.15 * goal_ratio,
            "seed {seed}: median true access ratio {med_ratio} at the tuned intervals, goal {goal_ratio}"
        );
    }
}

/// A partly hot space (10% of the data at 0.01 per tick, the rest at 0.0002): the goal is
/// reached by the hot part alone at a shorter interval; a bound below that holds the interval
/// at the bound, never past it.
#[test]
fn tuning_respects_the_sample_interval_bounds() {
    let data = SimSpace::layout(GIB, 0).unwrap().data_range();
    let tenth = data.len() / 10;
    let bands = vec![
        Band {
            range: AddrRange::new(data.start, data.start + tenth),
            prob: 0.01,
        },
        Band {
            range: AddrRange::new(data.start + tenth, data.end),
            prob: 0.0002,
        },
    ];
    let goal = IntervalsGoal {
        max_sample_us: 20_000,
        ..IntervalsGoal::default()
    };
    let (samples, space, monitored) = tuned_intervals(bands, 4, 5_000, goal, 20);
    assert!(
        true_ratio(&space, &monitored, 20) < 0.04,
        "the goal lies past the bound"
    );
    assert!(
        samples.iter().all(|&s| (5_000..=20_000).contains(&s)),
        "{samples:?}"
    );
    assert_eq!(
        samples[10..],
        [20_000; 10],
        "held at the bound: {samples:?}"
    );
}

/// The rescale rule for `Unknown` answers in flight when the attributes change
/// mid-aggregation: what the aggregation gathered is dropped (known and unknown alike), the
/// aggregation restarts a full new interval from the change, and a region that gets only
/// `Unknown` answers afterwards keeps its last rate converted to the new attributes — here,
/// halving the sampling interval doubles `max_nr_accesses` (20 → 40), and the hot band reads 40,
/// the cold 0. (Before the rule, the hot band read the unconverted 20 of 40.)
#[test]
fn set_attrs_mid_aggregation_unknown_answers_keep_the_converted_rate() {
    let space = SimSpace::scenario("hotcold", GIB).unwrap();
    let hot = space.hot_ranges(0, 1);
    let mut ops = Ticks {
        inner: SimOps::single(T, space),
        ticks: 1,
        ranges_calls: 0,
    };
    let mut m = Monitor::new(Attrs::default(), 7).unwrap();
    m.add_target(T);
    let mut now = 0;
    let mut aggregated = 0;
    while aggregated < 5 {
        aggregated += step(&mut m, &mut ops, &mut now).is_some() as u32;
    }
    for _ in 0..7 {
        assert!(step(&mut m, &mut ops, &mut now).is_none());
    }
    let before: Vec<u32> = m
        .regions(T)
        .unwrap()
        .iter()
        .map(|r| r.last_nr_accesses)
        .collect();
    // From now on every answer is Unknown.
    let sp = ops.inner.space_mut(T).unwrap();
    *sp = sp.clone().with_unknown_fraction(1.0).unwrap();
    let passed = m.passed_sample_intervals();
    let faster = Attrs {
        sample_us: 2_500,
        ..*m.attrs()
    };
    m.set_attrs(faster).unwrap();
    ops.ticks = 1;
    let regions = m.regions(T).unwrap();
    for (r, b) in regions.iter().zip(before.iter()) {
        assert_eq!(
            (r.nr_accesses, r.nr_known),
            (0, 0),
            "the partial aggregation is dropped"
        );
        assert_eq!(r.last_nr_accesses, b * 2, "converted to 40 samples");
        assert_eq!(r.nr_accesses_bp, r.last_nr_accesses * 10_000);
    }
    let snap = loop {
        if let Some(s) = step(&mut m, &mut ops, &mut now) {
            break s;
        }
        if m.passed_sample_intervals() == passed + 20 {
            // Mid-way, the moving sum of the hot band still says "every sample".
            let mid = m.snapshot(now);
            let r = mid.targets[0]
                .regions
                .iter()
                .find(|r| r.ar.start >= hot[0].start && r.ar.end <= hot[0].end);
            assert_eq!(r.map(|r| r.nr_accesses_bp / 10_000), Some(40));
        }
    };
    assert_eq!(
        m.passed_sample_intervals(),
        passed + 40,
        "a full new aggregation"
    );
    assert_eq!(snap.max_nr_accesses(), 40);
    for r in &snap.targets[0].regions {
        let in_hot = hot
            .iter()
            .any(|h| h.start <= r.ar.start && r.ar.end <= h.end);
        let in_cold = !hot.iter().any(|h| h.intersects(&r.ar));
        if in_hot {
            assert_eq!(r.nr_accesses, 40, "hot region {}", r.ar);
        }
        if in_cold {
            assert_eq!(r.nr_accesses, 0, "cold region {}", r.ar);
        }
    }
}

/// madvd's one difference from `damon_set_attrs()`: a change that keeps `ops_update_us` keeps
/// the ops update (the re-read of the mappings) due when it was, where the kernel pushes it a
/// full interval past every change — so frequent changes (tuning every few aggregations, a
/// CPU budget) would never let it run. Here the attributes change every 50 ms for 5 s with a
/// 1 s update interval: the mappings are re-read about every second.
#[test]
fn frequent_attribute_changes_keep_the_ops_update_schedule() {
    let mut ops = Ticks {
        inner: SimOps::single(T, SimSpace::scenario("idle", GIB).unwrap()),
        ticks: 1,
        ranges_calls: 0,
    };
    let attrs = Attrs {
        ops_update_us: 1_000_000,
        ..Attrs::default()
    };
    let mut m = Monitor::new(attrs, 3).unwrap();
    m.add_target(T);
    let mut now = 0;
    let mut next_change = 50_000;
    let mut flip = false;
    while now < 5_000_000 {
        step(&mut m, &mut ops, &mut now);
        if now >= next_change {
            next_change += 50_000;
            flip = !flip;
            let sample_us = if flip { 4_000 } else { 5_000 };
            m.set_attrs(Attrs {
                sample_us,
                aggr_us: sample_us * 20,
                ..*m.attrs()
            })
            .unwrap();
        }
    }
    // One read at init, then one per second of monitor time (±1 for where 5 s ends).
    assert!(
        (5..=6).contains(&ops.ranges_calls),
        "{} reads of the mappings in 5 s",
        ops.ranges_calls
    );
}

/// The bounds a budget sets at run time: raising the minimum above the current interval
/// moves the interval (and the aggregation interval, same ratio) there at once.
#[test]
fn set_intervals_bounds_moves_the_interval_into_the_new_range() {
    let mut m = Monitor::new(Attrs::default(), 1).unwrap();
    assert_eq!(
        m.set_intervals_bounds(10_000, 20_000),
        Err(AttrsError::NoIntervalsGoal)
    );
    m.set_intervals_goal(Some(IntervalsGoal::default()))
        .unwrap();
    m.set_intervals_bounds(10_000, 20_000).unwrap();
    assert_eq!((m.attrs().sample_us, m.attrs().aggr_us), (10_000, 200_000));
    assert_eq!(m.intervals_goal().unwrap().min_sample_us, 10_000);
    // The goal checks what set_attrs is given.
    let mut too_fast = *m.attrs();
    too_fast.sample_us = 5_000;
    assert!(matches!(
        m.set_attrs(too_fast),
        Err(AttrsError::SampleOutsideGoal { .. })
    ));
}
