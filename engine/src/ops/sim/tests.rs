//! The simulated space's own tests: layouts, scenario truth against the answers, unknown
//! and noise fractions, gone targets, and the cost of a 1 TiB space.

use super::check::SimOps;
use super::pattern::PAGE;
use super::pattern::{Band, Pattern, Phase, SparseHot};
use super::space::Sight;
use super::space::{SimError, SimSpace, KIB, MIB, SCENARIOS};
use super::zipf::{Feistel, ZipfKeys};
use crate::access::{Access, AccessCheck, AccessError, SampleReq};
use crate::region::TargetId;
const GIB: u64 = 1 << 30;

#[test]
fn scenarios_build_and_layout_has_two_big_gaps() {
    for name in SCENARIOS {
        let s = SimSpace::scenario(name, GIB).unwrap();
        let three = crate::monitor::three_regions(s.mappings(), PAGE).unwrap();
        // The data mapping and the libraries form the middle region.
        assert_eq!(three[1].start, s.data_range().start);
        assert!(three[1].end > s.data_range().end);
    }
    assert!(matches!(
        SimSpace::scenario("nope", GIB),
        Err(SimError::UnknownScenario(_))
    ));
    assert!(matches!(
        SimSpace::scenario("hotcold", 1),
        Err(SimError::BadSize(1))
    ));
}

#[test]
fn hotcold_truth_and_answers_agree() {
    let mut ops = SimOps::single(TargetId(1), SimSpace::scenario("hotcold", GIB).unwrap());
    let s = ops.space(TargetId(1)).unwrap().clone();
    let hot = s.hot_ranges(0, 1);
    assert_eq!(hot.len(), 1);
    assert_eq!(hot[0].len(), (GIB / 10) & !(PAGE - 1));
    assert_eq!(s.wss_bytes(0), hot[0].len());
    let samples = [
        SampleReq {
            region: hot[0],
            addr: hot[0].start,
        },
        SampleReq {
            region: hot[0],
            addr: hot[0].end - 1,
        },
        SampleReq {
            region: s.data_range(),
            addr: s.data_range().start,
        },
        SampleReq {
            region: s.data_range(),
            addr: 0x1000,
        }, // unmapped
    ];
    let mut out = [Access::Unknown; 4];
    ops.check(TargetId(1), &samples, &mut out).unwrap();
    assert_eq!(
        out,
        [
            Access::Accessed,
            Access::Accessed,
            Access::NotAccessed,
            Access::NotAccessed
        ]
    );
    assert_eq!(ops.space(TargetId(1)).unwrap().interval(), 1);
}

#[test]
fn stairs_move_and_wrap() {
    let s = SimSpace::scenario("stairs", GIB).unwrap();
    let b0 = s.hot_ranges(0, 1);
    let b1 = s.hot_ranges(400, 401);
    assert_eq!(b1[0].start - b0[0].start, (GIB / 10) & !(PAGE - 1));
    assert_eq!(s.hot_ranges(4000, 4001), b0, "wraps after ten slots");
    // Truth over a window spanning a step covers both slots.
    assert_eq!(s.wss_bytes_between(390, 410), 2 * b0[0].len());
}

#[test]
fn moving_and_zigzag_stay_inside_data() {
    for name in ["moving", "zigzag"] {
        let s = SimSpace::scenario(name, GIB).unwrap();
        for i in (0..10_000).step_by(37) {
            for b in s.bands(i) {
                assert!(b.range.start >= s.data_range().start && b.range.end <= s.data_range().end);
            }
            let w = s.wss_bytes(i);
            assert!(w > 0 && w <= GIB / 10 + PAGE, "{name} {i} {w}");
        }
    }
}

#[test]
fn unknown_fraction_is_seeded_and_close() {
    let space = SimSpace::scenario("hotcold", GIB)
        .unwrap()
        .with_unknown_fraction(0.3)
        .unwrap();
    let mut ops = SimOps::single(TargetId(7), space);
    let d = ops.space(TargetId(7)).unwrap().data_range();
    let samples: Vec<SampleReq> = (0..10_000u64)
        .map(|k| SampleReq {
            region: d,
            addr: d.start + k * 64 * PAGE,
        })
        .collect();
    let mut out = vec![Access::Unknown; samples.len()];
    ops.check(TargetId(7), &samples, &mut out).unwrap();
    let unknown = out.iter().filter(|a| **a == Access::Unknown).count();
    assert!((2700..3300).contains(&unknown), "{unknown}");
    assert!(SimSpace::scenario("hotcold", GIB)
        .unwrap()
        .with_unknown_fraction(1.5)
        .is_err());
}

#[test]
fn noise_touches_about_the_given_fraction() {
    let s = SimSpace::scenario("noise", GIB).unwrap();
    let d = s.data_range();
    let stride = (d.len() / 20_000) & !(PAGE - 1);
    let n = (0..20_000u64)
        .filter(|k| s.touched(d.start + k * stride, 5))
        .count();
    // 10% hot + 1% of the other 90%: ~10.9% of pages.
    assert!((1900..2500).contains(&n), "{n}");
}

#[test]
fn gone_and_unknown_targets() {
    let mut ops = SimOps::single(TargetId(1), SimSpace::scenario("idle", GIB).unwrap());
    assert!(matches!(
        ops.target_ranges(TargetId(2)),
        Err(AccessError::TargetGone(TargetId(2)))
    ));
    ops.space_mut(TargetId(1)).unwrap().exit();
    assert!(matches!(
        ops.prepare(TargetId(1), &mut []),
        Err(AccessError::TargetGone(_))
    ));
}

#[test]
fn one_tib_costs_no_memory() {
    let s = SimSpace::scenario("hotcold", 1 << 40).unwrap();
    assert_eq!(
        s.mapped_bytes() - (1 << 40),
        2 * MIB + 8 * MIB + 4 * MIB + 132 * KIB
    );
    assert!(s.touched(s.hot_ranges(0, 1)[0].start + 12345, 99));
}

fn zipf_keys(d: crate::region::AddrRange, s: f64) -> ZipfKeys {
    ZipfKeys {
        base: d,
        key_bytes: PAGE,
        s,
        lookups: 256,
        layout_seed: 9,
    }
}

#[test]
fn feistel_is_a_permutation_both_ways() {
    for n in [1u64, 2, 3, 7, 100, 1000, 4096, 5000] {
        let f = Feistel::new(n, 42);
        let mut seen = vec![false; n as usize];
        for x in 0..n {
            let y = f.forward(x);
            assert!(y < n && !seen[y as usize], "n {n} x {x} y {y}");
            seen[y as usize] = true;
            assert_eq!(f.inverse(y), x);
        }
    }
}

/// The lookups drawn by `rand_distr::Zipf` hit each slot as often as the slot's stated
/// true probability says (the truth the tests judge the monitor by).
#[test]
fn zipf_lookups_match_stated_probabilities() {
    let space = SimSpace::layout(16 * MIB, 1).unwrap();
    let z = zipf_keys(space.data_range(), 1.0);
    let probs = z.slot_probs();
    let n = 2000u64;
    let mut hits = vec![0u32; probs.len()];
    for i in 0..n {
        for s in z.lookups(7, i) {
            hits[s as usize] += 1;
        }
    }
    // The hottest ranks, one by one; then the total touched per interval.
    for rank in [1u64, 2, 5, 20, 100] {
        let slot = z.slot_of_rank(rank) as usize;
        let f = hits[slot] as f64 / n as f64;
        let p = probs[slot];
        let sd = (p * (1.0 - p) / n as f64).sqrt();
        assert!((f - p).abs() <= 4.0 * sd + 1e-9, "rank {rank}: {f} vs {p}");
    }
    let mean_touched = hits.iter().map(|&h| h as f64).sum::<f64>() / n as f64;
    let want: f64 = probs.iter().sum();
    assert!(
        (mean_touched - want).abs() / want < 0.02,
        "{mean_touched} vs {want}"
    );
    // Hot keys are scattered: the 64 hottest do not sit in one corner.
    let mut top: Vec<u64> = (1..=64).map(|r| z.slot_of_rank(r)).collect();
    top.sort_unstable();
    let spread = top[63] - top[0];
    assert!(spread > z.nr_keys() / 2, "spread {spread}");
}

#[test]
fn interval_truth_agrees_with_itself() {
    let space = SimSpace::layout(16 * MIB, 3).unwrap();
    let d = space.data_range();
    let half = crate::region::AddrRange::new(d.start, d.start + d.len() / 2);
    let rest = crate::region::AddrRange::new(half.end, d.end);
    let pattern = Pattern::Layers(vec![
        Pattern::Zipf(zipf_keys(half, 1.2)),
        Pattern::Sparse(SparseHot {
            range: rest,
            fraction: 0.1,
            prob: 0.5,
            layout_seed: 4,
        }),
    ]);
    pattern.validate().unwrap();
    let space = space.with_pattern(pattern);
    let s = &space;
    let sparse_hot = s.page_probs(rest, 0).iter().filter(|&&p| p > 0.0).count() as u64;
    assert_eq!(sparse_hot, (rest.len() / PAGE + 5) / 10);
    let iv = space.pattern_interval(11);
    let pages = space.touched_pages(11, d);
    for a in (d.start..d.end).step_by(PAGE as usize) {
        assert_eq!(iv.touched(a), pages.binary_search(&a).is_ok(), "{a:#x}");
    }
    let probs = space.page_probs(d, 11);
    for (k, p) in probs.iter().enumerate().step_by(97) {
        let a = d.start + k as u64 * PAGE;
        assert!((iv.prob(a) - p).abs() < 1e-12);
    }
    // Relocated, the same pages (moved) are touched.
    let moved = space.pattern().relocated(d.start, 0x1000_0000);
    let miv = moved.interval(space.seed(), 11);
    for a in pages.iter().take(50) {
        assert!(miv.touched(a - d.start + 0x1000_0000));
    }
}

#[test]
fn phases_switch_and_repeat() {
    let d = SimSpace::layout(16 * MIB, 1).unwrap().data_range();
    let band = |k: u64| {
        Pattern::Static(vec![Band {
            range: crate::region::AddrRange::new(d.start + k * MIB, d.start + (k + 1) * MIB),
            prob: 1.0,
        }])
    };
    let p = Pattern::Phases {
        phases: vec![
            Phase {
                intervals: 10,
                pattern: band(0),
            },
            Phase {
                intervals: 5,
                pattern: band(3),
            },
        ],
        repeat: true,
    };
    assert_eq!(p.bands(9)[0].range.start, d.start);
    assert_eq!(p.bands(10)[0].range.start, d.start + 3 * MIB);
    assert_eq!(p.bands(15)[0].range.start, d.start);
    assert!(Pattern::Phases {
        phases: vec![],
        repeat: false
    }
    .validate()
    .is_err());
}

/// Residency: paged-out pages stay out until touched; a check that reads residency answers
/// NotAccessed for them, one that sees only resident pages Unknown; madvd's own page-out
/// within an interval answers Unknown for an untouched page.
#[test]
fn residency_model_answers() {
    let base = SimSpace::layout(4 * MIB, 1).unwrap();
    let d = base.data_range();
    let hot = crate::region::AddrRange::new(d.start, d.start + MIB);
    let space = base.with_pattern(Pattern::Static(vec![Band {
        range: hot,
        prob: 1.0,
    }]));
    let idle_page = d.start + 2 * MIB;
    let sample = |addr| SampleReq { region: d, addr };
    let reqs = [sample(hot.start), sample(idle_page)];
    for sight in [Sight::Residency, Sight::ResidentOnly] {
        let mut ops = SimOps::single(TargetId(1), space.clone().with_sight(sight));
        let sp = ops.space_mut(TargetId(1)).unwrap();
        sp.page_out(d);
        assert!(!sp.is_resident(hot.start) && !sp.is_resident(idle_page));
        let mut out = [Access::Unknown; 2];
        ops.check(TargetId(1), &reqs, &mut out).unwrap();
        // Own page-out in this interval: touched → Accessed (refaulted), else Unknown.
        assert_eq!(out, [Access::Accessed, Access::Unknown], "{sight:?}");
        let sp = ops.space(TargetId(1)).unwrap();
        assert!(sp.is_resident(hot.start), "touched pages come back");
        assert!(!sp.is_resident(idle_page));
        assert_eq!(sp.nonresident_bytes(d), d.len() - hot.len());
        ops.check(TargetId(1), &reqs, &mut out).unwrap();
        let idle = match sight {
            Sight::Residency => Access::NotAccessed,
            Sight::ResidentOnly => Access::Unknown,
        };
        assert_eq!(out, [Access::Accessed, idle], "{sight:?}");
    }
}
