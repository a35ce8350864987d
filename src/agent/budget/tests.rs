use super::*;
use proptest::prelude::*;
use schemes::units::Quantity;

fn smaps_base() -> Attrs {
    engine::ops::smaps::default_attrs()
}

fn group(targets: usize) -> GroupLoad {
    GroupLoad {
        base: smaps_base(),
        targets,
        window_targets: targets,
    }
}

/// The CPU seconds a window of `wall_s` would measure with `groups` at `level` if one work
/// unit costs `unit` seconds (the controller's own model, as a plant).
fn plant(groups: &[GroupLoad], level: u32, unit: f64, wall_s: f64) -> Window {
    Window {
        cpu_s: unit * work_rate(groups, level, now) * wall_s,
        wall_s,
    }
}

#[test]
fn parse_share_takes_percentages_only() {
    let s = |v: &str| parse_share(&Quantity::Str(v.into()));
    assert_eq!(s("2%").unwrap(), 200);
    assert_eq!(s("0.5 %").unwrap(), 50);
    assert_eq!(s("100%").unwrap(), 10_000);
    assert!(s("0%").unwrap_err().contains("outside 0.1% to 100%"));
    assert!(s("0.01%").unwrap_err().contains("outside"));
    assert!(s("150%").unwrap_err().contains("outside"));
    assert!(s("-2%").unwrap_err().contains("negative"));
    assert!(s("2 bp").unwrap_err().contains("percentage of one CPU"));
    let n = parse_share(&Quantity::Float(0.02)).unwrap_err();
    assert!(n.contains("not a percentage of one CPU"), "{n}");
    assert!(parse_share(&Quantity::Int(2)).is_err());
}

#[test]
fn scale_one_is_the_policy_and_intervals_go_first() {
    let b = smaps_base();
    assert_eq!(scaled(&b, 1.0), b);
    assert_eq!(scaled(&b, 0.5), b);
    assert_eq!(scaled(&b, f64::NAN), b);
    let a = scaled(&b, 4.0);
    assert_eq!(a.sample_us, 4 * b.sample_us);
    assert_eq!(a.aggr_us, 4 * b.aggr_us);
    assert_eq!(a.ops_update_us, 4 * b.ops_update_us);
    assert_eq!(a.max_nr_regions, b.max_nr_regions);
    // Past the interval cap, regions: 500 ms × 120 = 60 s, then /10.
    let a = scaled(&b, 1200.0);
    assert_eq!(a.sample_us, MAX_SAMPLE_US);
    assert_eq!(a.max_nr_regions, b.max_nr_regions / 10);
    // All the way: the policy's minimum regions.
    let a = scaled(&b, 1e9);
    assert_eq!(a.max_nr_regions, b.min_nr_regions);
    assert_eq!(a.sample_us, MAX_SAMPLE_US);
    a.validate().unwrap();
}

#[test]
fn a_policy_coarser_than_the_cap_keeps_its_own_interval() {
    let b = Attrs {
        sample_us: 2 * MAX_SAMPLE_US,
        aggr_us: 4 * MAX_SAMPLE_US,
        ..Attrs::default()
    };
    let a = scaled(&b, 8.0);
    assert_eq!(a.sample_us, b.sample_us);
    assert_eq!(a.max_nr_regions, b.max_nr_regions / 8);
}

#[test]
fn ladder_and_max_level() {
    assert_eq!(scale_of(0), 1.0);
    assert_eq!(scale_of(2), 2.0);
    assert!((scale_of(1) - 2f64.sqrt()).abs() < 1e-12);
    // smaps: 120 (intervals) × 100 (regions 1000 → 10) = 12 000 → level 28 (2^14 = 16384).
    let top = max_level(&[smaps_base()]);
    assert!(
        scale_of(top) >= 12_000.0 && scale_of(top - 1) < 12_000.0,
        "{top}"
    );
    assert_eq!(max_level(&[]), 0);
}

#[test]
fn no_targets_holds() {
    let s = State {
        level: 3,
        ..State::default()
    };
    let w = Window {
        cpu_s: 5.0,
        wall_s: 2.0,
    };
    assert_eq!(next(0.02, s, w, &[group(0)]), s);
    assert_eq!(next(0.02, s, w, &[]).level, 0);
}

#[test]
fn targets_appearing_are_predicted_with_the_prior() {
    // 200 targets at smaps' 500 ms: 400 samples/s × 1 ms = 40% > 2%: coarser at once,
    // before a window with them is measured.
    let g = GroupLoad {
        window_targets: 0,
        ..group(200)
    };
    let w = Window {
        cpu_s: 0.001,
        wall_s: 2.0,
    };
    let s = next(0.02, State::default(), w, &[g]);
    assert!(s.level >= 2, "{s:?}");
    assert!(predicted(&[g], PRIOR_SAMPLE_COST_S, s.level) <= AIM_UP * 0.02);
    assert_eq!(s.unit_cost_s, PRIOR_SAMPLE_COST_S);
}

#[test]
fn converges_under_the_budget_and_stays() {
    // The plant: 300 µs a sample. 200 targets must end up at ≤ the budget; 20 targets finer.
    let settle = |n: usize| {
        let g = [group(n)];
        let mut s = State::default();
        let mut levels = Vec::new();
        for _ in 0..40 {
            s = next(0.02, s, plant(&g, s.level, 300e-6, 2.0), &g);
            levels.push(s.level);
        }
        let share = predicted(&g, 300e-6, s.level);
        (s.level, share, levels)
    };
    let (l200, share200, levels) = settle(200);
    assert!(share200 <= 0.02, "{share200} {levels:?}");
    // Settled: the last 20 windows hold one level (no flapping).
    assert!(levels[20..].iter().all(|&l| l == l200), "{levels:?}");
    let (l20, share20, _) = settle(20);
    assert!(share20 <= 0.02);
    assert!(l20 < l200, "20 targets: level {l20}, 200: {l200}");
    assert!(
        scaled(&smaps_base(), scale_of(l20)).sample_us
            < scaled(&smaps_base(), scale_of(l200)).sample_us
    );
}

#[test]
fn a_cost_the_scale_cannot_reach_saturates_at_the_top() {
    let g = [group(1)];
    let top = max_level(&[smaps_base()]);
    let w = Window {
        cpu_s: 10.0,
        wall_s: 2.0,
    };
    let mut s = State::default();
    for _ in 0..100 {
        s = next(0.02, s, w, &g);
    }
    assert_eq!(s.level, top);
}

#[test]
fn one_burst_over_a_whole_window_is_beyond_reach() {
    // The 64 GiB target of 100 000 mappings when smaps was read whole: 0.5 s a sample, 2.5×
    // what 2% allows a 10-s window: out of reach at any level.
    let one = [group(1)];
    let top = max_level(&[smaps_base()]);
    let regions = scaled(&smaps_base(), scale_of(top)).max_nr_regions as f64
        / smaps_base().max_nr_regions as f64;
    // At the top level's regions, one unit costs (0.5 + 0.5 × regions) of a full sample.
    let unit = 0.5 / (0.5 + 0.5 * regions);
    assert_eq!(beyond_reach(&one, unit, 0.02), Some(0));
    // Sliced (~45 ms a sample): within reach; so are 200 small targets (1.3 ms each) in two
    // groups, and a group without targets.
    assert_eq!(
        beyond_reach(&one, 0.045 / (0.5 + 0.5 * regions), 0.02),
        None
    );
    assert_eq!(beyond_reach(&[group(100), group(100)], 1.3e-3, 0.02), None);
    assert_eq!(beyond_reach(&[group(0), group(1)], unit, 0.02), Some(1));
    assert_eq!(beyond_reach(&[group(0)], 10.0, 0.02), None);
    // The bound is the budget of one window: just over it is out of reach, just under not.
    let full = 0.5 + 0.5 * regions;
    assert_eq!(beyond_reach(&one, 0.201 / full, 0.02), Some(0));
    assert_eq!(beyond_reach(&one, 0.199 / full, 0.02), None);
}

#[test]
fn refines_at_most_two_steps_a_window() {
    let g = [group(10)];
    let s = State {
        level: 20,
        unit_cost_s: 1e-6,
    };
    let w = Window {
        cpu_s: 0.0,
        wall_s: 2.0,
    };
    assert_eq!(next(0.02, s, w, &g).level, 18);
}

#[test]
fn window_is_two_coarsest_samples_within_bounds() {
    assert_eq!(window_len([]), MIN_WINDOW);
    assert_eq!(window_len([500_000]), Duration::from_secs(1));
    assert_eq!(window_len([500_000, 3_000_000]), Duration::from_secs(6));
    assert_eq!(window_len([MAX_SAMPLE_US]), MAX_WINDOW);
    assert_eq!(window_len([10 * MAX_SAMPLE_US]), MAX_WINDOW);
}

#[test]
fn peaks_count_whole_bursts() {
    // Two groups of 100 targets at 16 s, 1 ms a sample: 12.5 ms/s on average, but bursts of
    // 0.1 s every 8 s: a 10-s window holds two, 2%.
    let g = [group(100), group(100)];
    let l = (0..40)
        .find(|&l| scaled(&smaps_base(), scale_of(l)).sample_us == 16_000_000)
        .unwrap();
    let p = predicted(&g, 1e-3, l);
    assert!((p - 0.02).abs() < 1e-9, "{p}");
    // One group of 1 target: the average.
    let one = [group(1)];
    assert!((predicted(&one, 1e-3, 0) - 2e-3).abs() < 1e-9);
    assert_eq!(predicted(&[group(0)], 1e-3, 0), 0.0);
}

#[test]
fn groups_are_staggered_over_one_interval() {
    let s = |n| stagger(n, 16_000_000);
    assert_eq!(s(1), [Duration::ZERO]);
    assert_eq!(s(4), [0, 4, 8, 12].map(Duration::from_secs).to_vec());
    assert!(s(0).is_empty());
}

#[test]
fn process_cpu_time_moves_forward() {
    let a = process_cpu_s();
    let mut x = 0u64;
    for i in 0..2_000_000u64 {
        x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
    }
    std::hint::black_box(x);
    let b = process_cpu_s();
    assert!(a > 0.0 && b > a, "{a} {b}");
}

fn attrs_strategy() -> impl Strategy<Value = Attrs> {
    (1u64..2_000_000, 1u64..50, 1u64..20, 3u32..50, 0u32..2000).prop_map(
        |(sample_us, aggr_mul, upd_mul, min_nr, extra)| Attrs {
            sample_us,
            aggr_us: sample_us * aggr_mul,
            ops_update_us: sample_us * aggr_mul * upd_mul,
            min_nr_regions: min_nr,
            max_nr_regions: min_nr + extra,
            min_region_sz: 4096,
        },
    )
}

fn groups_strategy() -> impl Strategy<Value = Vec<GroupLoad>> {
    prop::collection::vec(
        (attrs_strategy(), 0usize..300, 0usize..300).prop_map(|(base, t, w)| GroupLoad {
            base,
            targets: t,
            window_targets: w,
        }),
        0..4,
    )
}

proptest! {
    #[test]
    fn scaled_stays_within_bounds_and_is_monotone(
        b in attrs_strategy(), k1 in 0.5f64..1e6, k2 in 0.5f64..1e6,
    ) {
        prop_assume!(b.validate().is_ok());
        let (lo, hi) = if k1 <= k2 { (k1, k2) } else { (k2, k1) };
        let (a, c) = (scaled(&b, lo), scaled(&b, hi));
        for x in [a, c] {
            prop_assert!(x.validate().is_ok(), "{x:?}");
            prop_assert!(x.sample_us >= b.sample_us);
            prop_assert!(x.sample_us <= b.sample_us.max(MAX_SAMPLE_US));
            prop_assert!(x.min_nr_regions == b.min_nr_regions);
            prop_assert!(x.max_nr_regions >= b.min_nr_regions);
            prop_assert!(x.max_nr_regions <= b.max_nr_regions);
            prop_assert!(x.aggr_us / x.sample_us >= b.aggr_us / b.sample_us);
        }
        // Coarser scale: never a finer interval, never more regions.
        prop_assert!(c.sample_us >= a.sample_us);
        prop_assert!(c.aggr_us >= a.aggr_us);
        prop_assert!(c.max_nr_regions <= a.max_nr_regions);
    }

    #[test]
    fn next_stays_on_the_ladder_and_is_monotone_in_cpu(
        groups in groups_strategy(),
        budget in 0.001f64..1.0,
        level in 0u32..60,
        unit in 1e-7f64..1e-2,
        cpu1 in 0.0f64..5.0, cpu2 in 0.0f64..5.0,
        wall in 0.5f64..20.0,
    ) {
        let top = max_level(&groups.iter().map(|g| g.base).collect::<Vec<_>>());
        let s = State { level, unit_cost_s: unit };
        let (lo, hi) = if cpu1 <= cpu2 { (cpu1, cpu2) } else { (cpu2, cpu1) };
        let a = next(budget, s, Window { cpu_s: lo, wall_s: wall }, &groups);
        let b = next(budget, s, Window { cpu_s: hi, wall_s: wall }, &groups);
        prop_assert!(a.level <= top && b.level <= top, "{a:?} {b:?} top {top}");
        prop_assert!(a.level <= b.level, "more CPU gave a finer level: {a:?} {b:?}");
        prop_assert!(a.unit_cost_s <= b.unit_cost_s);
        // Never more than two steps finer in one window.
        prop_assert!(a.level + MAX_STEPS_DOWN >= level.min(top));
    }
}
