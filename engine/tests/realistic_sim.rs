//! The monitor's accuracy on the realistic simulated world (`engine::ops::sim`): access
//! probabilities per page per sampling interval, Zipf key popularity with scattered hot
//! keys, a partly hot region, stairs / moving / zigzag hot sets, and pages paged out.
//!
//! Every test runs seeds 1..=10 at the kernel's default intervals (5 ms sampling, 100 ms
//! aggregation, 10..1000 regions), judges the monitor against the simulator's ground truth
//! (never against the monitor's own output), and prints one line per seed: the figures in
//! docs/performance.md ("Monitor accuracy on the realistic sim") come from
//! `cargo test -p engine --test realistic_sim -- --include-ignored --nocapture --test-threads 2`.
//! Where a must-show misses its bar, its test is `#[ignore]`d with the reason (the bar is
//! kept, and `--include-ignored` shows the miss); a companion test asserts what holds and
//! where the miss comes from. Tests that are only slow are `#[ignore]`d saying so.
//!
//! Most tests run madvd's rules; `realistic_kernel_rules_give_the_same_snapshots` runs the
//! kernel's exactly (`Departures::Kernel`) and finds the same snapshots, so every figure here,
//! met or missed, is the kernel's rules' figure.

use engine::monitor::{wss_bytes, wss_weighted_bytes, Departures, MergeRounding, Monitor};
use engine::ops::sim::{Band, Pattern, Sight, SimOps, SimSpace, SparseHot, ZipfKeys, PAGE};
use engine::{AddrRange, Attrs, Region, Snapshot, TargetId};

const MIB: u64 = 1 << 20;
const T: TargetId = TargetId(1);
const SEEDS: std::ops::RangeInclusive<u64> = 1..=10;

/// Sampling intervals per aggregation at the kernel's defaults (100 ms / 5 ms).
fn per_aggr() -> u64 {
    let a = Attrs::default();
    a.aggr_us / a.sample_us
}

/// The rules a run uses: madvd's (the default), or the kernel's exactly; the merge's
/// rounding; the attributes (the kernel's defaults unless a test says otherwise).
#[derive(Clone, Copy, Debug)]
struct Rules {
    departures: Departures,
    rounding: MergeRounding,
    attrs: Attrs,
}

impl Default for Rules {
    /// madvd's rules, the kernel's floored merge, the kernel's default attributes. For the
    /// record in docs/performance.md only: `REALISTIC_SIM_MERGE_ROUNDING=nearest` makes every
    /// test that uses the default rules merge with `MergeRounding::Nearest` instead (the
    /// bars do not change; several then miss).
    fn default() -> Self {
        let rounding = match std::env::var("REALISTIC_SIM_MERGE_ROUNDING").as_deref() {
            Ok("nearest") => MergeRounding::Nearest,
            Ok("floor") | Err(_) => MergeRounding::Floor,
            Ok(other) => panic!("REALISTIC_SIM_MERGE_ROUNDING: {other:?} is not floor or nearest"),
        };
        Self {
            departures: Departures::Madvd,
            rounding,
            attrs: Attrs::default(),
        }
    }
}

/// The kernel's rules exactly ([`Departures::Kernel`]), at the kernel's defaults.
fn kernel() -> Rules {
    Rules {
        departures: Departures::Kernel,
        ..Rules::default()
    }
}

/// Run the monitor (kernel default attributes, `seed`) over `space` for `n` aggregations.
/// Aggregation `k` covers the simulator's intervals `k * 20 .. (k + 1) * 20`. Returns the
/// aggregated snapshots and the space as it ended (residency).
fn run(space: SimSpace, seed: u64, n: usize) -> (Vec<Snapshot>, SimSpace) {
    run_with(space, seed, n, Rules::default())
}

/// [`run`] under `rules`.
fn run_with(space: SimSpace, seed: u64, n: usize, rules: Rules) -> (Vec<Snapshot>, SimSpace) {
    let mut ops = SimOps::single(T, space);
    let mut m = Monitor::new(rules.attrs, seed).unwrap();
    m.set_departures(rules.departures);
    m.set_merge_rounding(rules.rounding);
    m.add_target(T);
    let mut now = 0;
    let mut snaps = Vec::with_capacity(n);
    while snaps.len() < n {
        let out = m.step(now, &mut ops);
        now += m.attrs().sample_us;
        assert!(out.gone.is_empty());
        snaps.extend(out.snapshot);
    }
    (snaps, ops.remove(T).unwrap())
}

fn regions(s: &Snapshot) -> impl Iterator<Item = &Region> {
    s.targets.iter().flat_map(|t| t.regions.iter())
}

/// Per-page true access probabilities over one range, with prefix sums for region means.
struct Truth {
    range: AddrRange,
    /// prefix[i] = sum of the probabilities of the first i pages.
    prefix: Vec<f64>,
}

impl Truth {
    fn new(space: &SimSpace, range: AddrRange, interval: u64) -> Self {
        let probs = space.page_probs(range, interval);
        let mut prefix = Vec::with_capacity(probs.len() + 1);
        prefix.push(0.0);
        for p in probs {
            prefix.push(prefix.last().unwrap() + p);
        }
        Self { range, prefix }
    }
    fn page(&self, a: u64) -> usize {
        ((a.clamp(self.range.start, self.range.end) - self.range.start) / PAGE) as usize
    }
    /// Sum of the true probabilities of the pages of `r` inside the range.
    fn sum(&self, r: &AddrRange) -> f64 {
        self.prefix[self.page(r.end)] - self.prefix[self.page(r.start)]
    }
    /// Mean true probability of the pages of `r` (pages outside the range count 0: the
    /// simulator touches nothing there).
    fn mean(&self, r: &AddrRange) -> f64 {
        self.sum(r) / (r.len() / PAGE).max(1) as f64
    }
}

fn overlap(r: &AddrRange, with: &AddrRange) -> u64 {
    r.intersection(with).map_or(0, |x| x.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---------------------------------------------------------------------------------------
// Hot bands: recall of hot and of never-touched bytes.

/// Hot bands of 4 and 8 MiB touched with probability 0.5, 0.8 and 1 per sampling
/// interval, a warm 4 MiB band at 0.3 (neither hot nor never touched), the rest of a 64 MiB
/// data mapping never touched. Over aggregations 10..30 (every aggregation's bytes pooled;
/// the worst single aggregation printed): hot recall (bytes of pages with probability at
/// least 0.5 in regions with nr_accesses >= max/4) >= 0.9, cold recall (bytes never touched
/// in the whole run in regions at 0) >= 0.95.
#[test]
fn realistic_hot_bands_recall() {
    let (mut hot_all, mut cold_all) = (Vec::new(), Vec::new());
    for seed in SEEDS {
        let base = SimSpace::layout(64 * MIB, seed).unwrap();
        let d = base.data_range();
        let band = |off: u64, len: u64, prob: f64| Band {
            range: AddrRange::new(d.start + off * MIB, d.start + (off + len) * MIB),
            prob,
        };
        let bands = vec![
            band(6, 4, 0.5),
            band(18, 8, 0.8),
            band(36, 4, 1.0),
            band(50, 4, 0.3),
        ];
        let space = base.with_pattern(Pattern::Static(bands.clone()));
        let (snaps, _) = run(space, seed, 30);
        let (mut hot_min, mut cold_min) = (1.0f64, 1.0f64);
        let (mut hot, mut hot_found, mut cold, mut cold_found) = (0u64, 0u64, 0u64, 0u64);
        for s in &snaps[10..] {
            let quarter = s.max_nr_accesses() / 4;
            let (mut h_all, mut h_ok, mut c_all, mut c_ok) = (0u64, 0u64, 0u64, 0u64);
            for r in regions(s) {
                let h: u64 = bands
                    .iter()
                    .filter(|b| b.prob >= 0.5)
                    .map(|b| overlap(&r.ar, &b.range))
                    .sum();
                let touched: u64 = bands.iter().map(|b| overlap(&r.ar, &b.range)).sum();
                let never = r.size() - touched;
                h_all += h;
                c_all += never;
                if r.nr_accesses >= quarter {
                    h_ok += h;
                }
                if r.nr_accesses == 0 {
                    c_ok += never;
                }
            }
            hot_min = hot_min.min(h_ok as f64 / h_all as f64);
            cold_min = cold_min.min(c_ok as f64 / c_all as f64);
            (hot, hot_found, cold, cold_found) = (
                hot + h_all,
                hot_found + h_ok,
                cold + c_all,
                cold_found + c_ok,
            );
        }
        let (h, c) = (
            hot_found as f64 / hot as f64,
            cold_found as f64 / cold as f64,
        );
        eprintln!(
            "hot bands seed {seed}: hot recall {h:.3} (worst aggregation {hot_min:.3}), \
             cold recall {c:.3} (worst {cold_min:.3})"
        );
        hot_all.push(h);
        cold_all.push(c);
        assert!(h >= 0.9, "seed {seed}: hot recall {h:.3}");
        assert!(c >= 0.95, "seed {seed}: cold recall {c:.3}");
    }
    eprintln!(
        "hot bands: median hot recall {:.3}, cold recall {:.3}",
        median(hot_all),
        median(cold_all)
    );
}

// ---------------------------------------------------------------------------------------
// Region access rates against the pages' true mean probability.

/// Share of the bytes of `judged` (over aggregations `from..`) in regions whose
/// nr_accesses / max is within 0.1 of the mean true probability of their pages.
fn rate_within(snaps: &[Snapshot], from: usize, truth: &Truth, judged: &AddrRange) -> f64 {
    let (mut bytes, mut ok) = (0u64, 0u64);
    for s in &snaps[from..] {
        let max = s.max_nr_accesses() as f64;
        for r in regions(s) {
            let b = overlap(&r.ar, judged);
            if b == 0 {
                continue;
            }
            bytes += b;
            if (r.nr_accesses as f64 / max - truth.mean(&r.ar)).abs() <= 0.1 {
                ok += b;
            }
        }
    }
    ok as f64 / bytes as f64
}

fn zipf_space(seed: u64, s: f64, lookups: u64) -> SimSpace {
    let base = SimSpace::layout(64 * MIB, seed).unwrap();
    let d = base.data_range();
    base.with_pattern(Pattern::Zipf(ZipfKeys {
        base: d,
        key_bytes: PAGE,
        s,
        lookups,
        layout_seed: seed,
    }))
}

/// Every seed printed, then the bar (>= 90% of the data's bytes) asserted on each.
fn assert_zipf(s: f64, lookups: u64) {
    let mut all = Vec::new();
    for seed in SEEDS {
        let space = zipf_space(seed, s, lookups);
        let d = space.data_range();
        let truth = Truth::new(&space, d, 0);
        let hot_bytes = (truth
            .prefix
            .windows(2)
            .filter(|w| w[1] - w[0] >= 0.5)
            .count() as u64)
            * PAGE;
        let (snaps, _) = run(space, seed, 30);
        let share = rate_within(&snaps, 10, &truth, &d);
        eprintln!(
            "zipf s={s} {lookups} lookups seed {seed}: {share:.3} of data bytes within ±0.1 \
             (aggregations 10..30; mean true probability {:.4}, {} KiB of pages at >= 0.5)",
            truth.sum(&d) / (d.len() / PAGE) as f64,
            hot_bytes >> 10
        );
        all.push(share);
    }
    eprintln!(
        "zipf s={s} {lookups} lookups: median {:.3}",
        median(all.clone())
    );
    for (seed, share) in SEEDS.zip(all) {
        assert!(share >= 0.9, "zipf s={s} seed {seed}: {share:.3}");
    }
}

/// Scattered Zipf keys (s = 1.0): 16384 keys of one page, 1024 lookups per sampling
/// interval. Each region's nr_accesses / max within ±0.1 of its pages' mean true
/// probability on >= 90% of the data mapping's bytes.
#[test]
fn zipf_s1_region_rates_match_truth() {
    assert_zipf(1.0, 1024);
}

/// The same with s = 1.2 (more skewed).
#[test]
fn zipf_s1_2_region_rates_match_truth() {
    assert_zipf(1.2, 1024);
}

/// Four times the lookups (mean page probability 0.10 at s = 1.0): misses at s = 1.0 (and
/// `zipf_dense_miss_is_sampling_noise` shows why).
/// With one sample per region per interval, a region whose pages average m is read as a
/// binomial count of 20: its standard error sqrt(m (1 - m) / 20) is 0.067 at m = 0.1 and
/// 0.11 at 0.5, so ±0.1 on 90% of the bytes holds only where most bytes are near 0 or 1.
#[test]
#[ignore = "misses at s = 1.0: 20 samples per aggregation cannot hold ±0.1 on warm regions; docs/performance.md"]
fn zipf_dense_region_rates_match_truth() {
    assert_zipf(1.2, 4096);
    assert_zipf(1.0, 4096);
}

/// A partly hot 16 MiB region (10% of its pages, scattered, touched with probability 0.8
/// per interval) in a 64 MiB data mapping otherwise never touched: each region's rate within
/// ±0.1 of its pages' mean on >= 90% of the partly hot region's own bytes (and of the data).
#[test]
fn realistic_partly_hot_region_rates_match_truth() {
    let mut all = Vec::new();
    for seed in SEEDS {
        let base = SimSpace::layout(64 * MIB, seed).unwrap();
        let d = base.data_range();
        let part = AddrRange::new(d.start + 24 * MIB, d.start + 40 * MIB);
        let space = base.with_pattern(Pattern::Sparse(SparseHot {
            range: part,
            fraction: 0.1,
            prob: 0.8,
            layout_seed: seed,
        }));
        let truth = Truth::new(&space, d, 0);
        let (snaps, _) = run(space, seed, 30);
        let own = rate_within(&snaps, 10, &truth, &part);
        let data = rate_within(&snaps, 10, &truth, &d);
        eprintln!(
            "partly hot seed {seed}: {own:.3} of its bytes, {data:.3} of the data's within ±0.1 \
             (aggregations 10..30)"
        );
        all.push(own);
        assert!(own >= 0.9 && data >= 0.9, "seed {seed}: {own:.3} {data:.3}");
    }
    eprintln!("partly hot: median {:.3}", median(all));
}

// ---------------------------------------------------------------------------------------
// Working-set size of moving hot sets.

/// The two WSS estimators: damo's (bytes of regions with nr_accesses >= 1) and the
/// access-weighted one (each region's size times nr_accesses / max).
#[derive(Clone, Copy, Debug)]
enum Wss {
    Threshold,
    Weighted,
}

/// WSS per aggregation against the truth (bytes the simulator touched in that
/// aggregation's 20 intervals). Returns the share of aggregations within ±25% and the
/// worst error.
fn wss_rows(space: SimSpace, seed: u64, n: usize, est: Wss) -> (f64, f64) {
    let truth_space = space.clone();
    let d = truth_space.data_range();
    let (snaps, _) = run(space, seed, n);
    let per = per_aggr();
    let mut within = 0usize;
    let mut worst = 0.0f64;
    for (k, s) in snaps.iter().enumerate() {
        let k = k as u64;
        let truth = truth_space.touched_bytes_between(k * per, (k + 1) * per, d) as f64;
        let e = match est {
            Wss::Threshold => wss_bytes(s, 1),
            Wss::Weighted => wss_weighted_bytes(s),
        };
        let err = (e as f64 - truth) / truth;
        worst = worst.max(err.abs());
        if err.abs() <= 0.25 {
            within += 1;
        }
    }
    (within as f64 / snaps.len() as f64, worst)
}

#[derive(Clone, Copy, Debug)]
enum Hot {
    Stairs,
    Moving,
    Zigzag,
}

/// A hot window of 10% of a 32 MiB data mapping, touched with probability `prob` per
/// interval, moving its own size every `phase` aggregations: stairs (a jump), moving (a
/// slide), zigzag (a slide inside the middle 40% of the data, turning after 3 windows).
fn hot_set(seed: u64, kind: Hot, phase: u64, prob: f64) -> SimSpace {
    let base = SimSpace::layout(32 * MIB, seed).unwrap();
    let d = base.data_range();
    let window = d.len() / 10;
    let intervals = phase * per_aggr();
    let pattern = match kind {
        Hot::Stairs => Pattern::Stairs {
            base: d,
            window,
            step_intervals: intervals,
            prob,
        },
        Hot::Moving => Pattern::Moving {
            base: d,
            window,
            bytes_per_interval: window / intervals,
            prob,
        },
        Hot::Zigzag => Pattern::Zigzag {
            base: AddrRange::new(d.start + 3 * window, d.start + 7 * window),
            window,
            bytes_per_interval: window / intervals,
            prob,
        },
    };
    base.with_pattern(pattern)
}

/// Six phases; every seed's share of aggregations within ±25% printed; the bar (>= 95%)
/// asserted on every seed.
fn assert_wss(kind: Hot, phase: u64, prob: f64, est: Wss) {
    let mut all = Vec::new();
    for seed in SEEDS {
        let (share, worst) = wss_rows(
            hot_set(seed, kind, phase, prob),
            seed,
            6 * phase as usize,
            est,
        );
        eprintln!(
            "{kind:?} p={prob} phases of {phase} aggregations, {est:?} WSS, seed {seed}: \
             {share:.3} of aggregations within ±25% (worst {:+.0}%)",
            worst * 100.0
        );
        all.push(share);
    }
    eprintln!(
        "{kind:?} p={prob} phase {phase} {est:?}: median {:.3}",
        median(all.clone())
    );
    for (seed, share) in SEEDS.zip(all) {
        assert!(share >= 0.95, "{kind:?} seed {seed}: {share:.3}");
    }
}

const WSS_MISS: &str = "misses the bar with the kernel's own rules (Departures::Kernel gives \
    the same snapshots): damo's estimate counts a region straddling the hot set's edge whole. \
    Stairs: the misses are the 0..4 aggregations after each jump, while split/merge cut the \
    straddling regions down; moving / zigzag: the edges move in every aggregation, so \
    straddling regions over-count all along; see docs/performance.md";

/// Stairs, the must-show: a 10% window at probability 0.8 jumping every 20 aggregations;
/// WSS (damo's estimator, bytes touched) within ±25% on >= 95% of aggregations. Misses: see
/// `WSS_MISS` and `realistic_stairs_wss_misses_are_the_adaptation_after_each_jump`; run with
/// `--include-ignored` for the figures.
#[test]
#[ignore = "misses the bar by the kernel's adaptation lag: see WSS_MISS, docs/performance.md"]
fn realistic_stairs_wss() {
    eprintln!("{WSS_MISS}");
    assert_wss(Hot::Stairs, 20, 0.8, Wss::Threshold);
}

/// Moving, the must-show at 20 aggregations per window. Misses: see `WSS_MISS` and
/// `realistic_sliding_wss_misses_are_straddling_regions`.
#[test]
#[ignore = "misses the bar by regions straddling the moving edges: see WSS_MISS, docs/performance.md"]
fn realistic_moving_wss() {
    assert_wss(Hot::Moving, 20, 0.8, Wss::Threshold);
}

/// Zigzag, the must-show at 20 aggregations per window. Misses: see `WSS_MISS` and
/// `realistic_sliding_wss_misses_are_straddling_regions`.
#[test]
#[ignore = "misses the bar by regions straddling the moving edges: see WSS_MISS, docs/performance.md"]
fn realistic_zigzag_wss() {
    assert_wss(Hot::Zigzag, 20, 0.8, Wss::Threshold);
}

/// Stairs at probability 0.8 with phases of 100 aggregations (10 s): the adaptation lag
/// after each jump is then < 5% of the aggregations, and damo's estimator meets the bar.
#[test]
fn realistic_stairs_wss_long_phases() {
    assert_wss(Hot::Stairs, 100, 0.8, Wss::Threshold);
}

/// Every hot page touched in every interval (probability 1), 20 aggregations per window:
/// the weighted estimator, which a straddling region does not throw off, meets the bar on
/// all three hot sets.
#[test]
fn realistic_hot_sets_weighted_wss_at_probability_1() {
    for kind in [Hot::Stairs, Hot::Moving, Hot::Zigzag] {
        assert_wss(kind, 20, 1.0, Wss::Weighted);
    }
}

// ---------------------------------------------------------------------------------------
// Pages paged out: residency as evidence, and the Unknown rule.

/// A 10%-hot 16 MiB region (hot pages touched with probability 0.8) of which `out` of the
/// pages are non-resident and idle (paged out before the run, never touched). Returns the
/// region's mean nr_accesses over 50 aggregations (byte-weighted over the regions covering
/// it) and its true rate (mean page probability x max).
fn nonresident_rate(seed: u64, out: f64, sight: Sight) -> (f64, f64) {
    nonresident_rate_with(seed, out, sight, Rules::default())
}

/// The 10%-hot 16 MiB region of [`nonresident_rate`], `out` of its pages non-resident.
fn nonresident_space(seed: u64, out: f64, sight: Sight) -> SimSpace {
    let base = SimSpace::layout(16 * MIB, seed).unwrap();
    let d = base.data_range();
    let hot = SparseHot {
        range: d,
        fraction: 0.1,
        prob: 0.8,
        layout_seed: seed,
    };
    let mut space = base.with_pattern(Pattern::Sparse(hot)).with_sight(sight);
    let pages = d.len() / PAGE;
    let want = (pages as f64 * out).round() as u64;
    let mut k = 0;
    for a in (d.start..d.end).step_by(PAGE as usize) {
        if k == want {
            break;
        }
        if !hot.is_hot(a) {
            space.set_nonresident(AddrRange::new(a, a + PAGE));
            k += 1;
        }
    }
    assert_eq!(space.nonresident_bytes(d), want * PAGE);
    space
}

/// [`nonresident_rate`] under `rules`.
fn nonresident_rate_with(seed: u64, out: f64, sight: Sight, rules: Rules) -> (f64, f64) {
    let space = nonresident_space(seed, out, sight);
    let d = space.data_range();
    let pages = d.len() / PAGE;
    let want = space.nonresident_bytes(d) / PAGE;
    let truth = Truth::new(&space, d, 0);
    let max = Attrs::default().max_nr_accesses() as f64;
    let true_rate = truth.sum(&d) / pages as f64 * max;
    let (snaps, end) = run_with(space, seed, 50, rules);
    assert_eq!(end.nonresident_bytes(d), want * PAGE, "idle pages stay out");
    let mut sum = 0.0;
    for s in &snaps {
        let (mut w, mut b) = (0.0, 0u64);
        for r in regions(s) {
            let o = overlap(&r.ar, &d);
            w += r.nr_accesses as f64 * o as f64;
            b += o;
        }
        sum += w / b as f64;
    }
    (sum / snaps.len() as f64, true_rate)
}

/// With 30% and with 90% of the pages non-resident and idle, a check that reads residency
/// gives the 10%-hot region exactly the mean nr_accesses it gives with every page resident
/// (residency adds no bias, for every seed). Printed with it: the true rate, and for
/// contrast (not asserted) a check that sees only resident pages, whose Unknown answers
/// depend on access and inflate the region by about 1 / (resident share) — no rule over
/// its known answers can repair that.
#[test]
fn realistic_nonresident_idle_region_rate_unbiased_by_residency() {
    for seed in SEEDS {
        let (resident, want) = nonresident_rate(seed, 0.0, Sight::Residency);
        for out in [0.3, 0.9] {
            let (got, _) = nonresident_rate(seed, out, Sight::Residency);
            let (blind, _) = nonresident_rate(seed, out, Sight::ResidentOnly);
            eprintln!(
                "{:.0}% non-resident seed {seed}: mean nr_accesses {got:.3} (all resident \
                 {resident:.3}), true {want:.3} ({:+.1}%); resident-only check {blind:.3} \
                 ({:+.0}%)",
                out * 100.0,
                (got - want) / want * 100.0,
                (blind - want) / want * 100.0
            );
            assert_eq!(got, resident, "{out} seed {seed}");
        }
    }
}

/// The must-show: with 30% and 90% of the pages non-resident and idle, the 10%-hot
/// region's mean nr_accesses over 50 aggregations within ±20% of its true rate. Misses by
/// -17..-25% with or without non-resident pages: the kernel's `damon_merge_two_regions`
/// (mm/damon/core.c 6.12.118 l. 1817) floors the size-weighted mean when it merges, and at a
/// rate near 2 of 20 that loses about a fifth; with merges rounding to nearest
/// (`realistic_nonresident_idle_region_rate_with_nearest_rounding`) it holds.
#[test]
#[ignore = "misses by -17..-25%: the kernel's merge floors low rates (damon_merge_two_regions); docs/performance.md"]
fn realistic_nonresident_idle_region_rate() {
    let mut worst: f64 = 0.0;
    for out in [0.3, 0.9] {
        for seed in SEEDS {
            let (got, want) = nonresident_rate(seed, out, Sight::Residency);
            let err = (got - want) / want;
            eprintln!(
                "{:.0}% non-resident seed {seed}: mean nr_accesses {got:.3}, true {want:.3} \
                 ({:+.1}%)",
                out * 100.0,
                err * 100.0
            );
            worst = worst.max(err.abs());
        }
    }
    assert!(worst <= 0.2, "worst error {:.1}%", worst * 100.0);
}

/// How the check fails to see: not at all, 80% of samples in a transient state it cannot
/// read (per page and interval), or 80% of the pages never (fixed per page).
#[derive(Clone, Copy, Debug)]
enum Blind {
    Sees,
    Transient,
    Unseeable,
}

/// A 32 MiB region 2% hot (probability 1 per interval: true nr_accesses 0.4) next to a hot
/// 4 MiB band. Returns, over aggregations 10..50, the share of the idle region's bytes in
/// regions with a known answer and nr_accesses above the threshold (max / 10 of that
/// aggregation), and the share of its bytes in regions with no known answer (their count
/// carried).
fn idle_over_threshold(seed: u64, blind: Blind) -> (f64, f64) {
    let base = SimSpace::layout(40 * MIB, seed).unwrap();
    let d = base.data_range();
    let idle = AddrRange::new(d.start, d.start + 32 * MIB);
    let hot = AddrRange::new(idle.end + 2 * MIB, idle.end + 6 * MIB);
    let space = base.with_pattern(Pattern::Layers(vec![
        Pattern::Sparse(SparseHot {
            range: idle,
            fraction: 0.02,
            prob: 1.0,
            layout_seed: seed,
        }),
        Pattern::Static(vec![Band {
            range: hot,
            prob: 1.0,
        }]),
    ]));
    let space = match blind {
        Blind::Sees => space,
        Blind::Transient => space.with_unknown_fraction(0.8).unwrap(),
        Blind::Unseeable => space.with_unseeable_fraction(0.8).unwrap(),
    };
    let (snaps, _) = run(space, seed, 50);
    let (mut bytes, mut over, mut carried) = (0u64, 0u64, 0u64);
    for s in &snaps[10..] {
        let thres = regions(s).map(|r| r.nr_accesses).max().unwrap_or(0) / 10;
        for r in regions(s) {
            let o = overlap(&r.ar, &idle);
            if r.nr_known == 0 {
                carried += o;
            } else {
                bytes += o;
                if r.nr_accesses > thres {
                    over += o;
                }
            }
        }
    }
    (
        over as f64 / bytes as f64,
        carried as f64 / (bytes + carried) as f64,
    )
}

/// The Unknown rule does not push a mostly idle region over the merge / age-reset
/// threshold: with 80% of the samples Unknown (transient, or pages never seen), the share of
/// the idle region's bytes over the threshold, averaged over seeds 1..=10, stays within
/// 0.01 of what a check that sees every page gives. (Scaling the known answers by n / k,
/// madvd's rule before, gave 0.035..0.11 per seed here, 0.08 on average.) Regions with no known
/// answer carry their previous count (a rule of its own): their share is printed.
#[test]
fn realistic_unknown_keeps_mostly_idle_region_idle() {
    let mut sum = [0.0f64; 3];
    for seed in SEEDS {
        let (seen, _) = idle_over_threshold(seed, Blind::Sees);
        let (transient, tc) = idle_over_threshold(seed, Blind::Transient);
        let (unseeable, uc) = idle_over_threshold(seed, Blind::Unseeable);
        eprintln!(
            "mostly idle seed {seed}: bytes over the threshold {seen:.3} seeing every page, \
             {transient:.3} with 80% transient Unknown ({tc:.3} carried), {unseeable:.3} with \
             80% of pages unseeable ({uc:.3} carried)"
        );
        for (s, v) in sum.iter_mut().zip([seen, transient, unseeable]) {
            *s += v;
        }
    }
    let n = SEEDS.count() as f64;
    let [seen, transient, unseeable] = sum.map(|s| s / n);
    eprintln!(
        "mostly idle, mean over seeds: {seen:.4} seeing every page, {transient:.4} transient, \
         {unseeable:.4} unseeable"
    );
    assert!(transient <= seen + 0.01, "{transient:.4} vs {seen:.4}");
    assert!(unseeable <= seen + 0.01, "{unseeable:.4} vs {seen:.4}");
}

#[test]
fn realistic_truth_is_the_simulators() {
    // The truth helpers agree with the simulator's own per-page answers.
    let space = zipf_space(3, 1.0, 1024);
    let d = space.data_range();
    let truth = Truth::new(&space, d, 0);
    let iv = space.pattern_interval(0);
    for k in (0..d.len() / PAGE).step_by(113) {
        let a = d.start + k * PAGE;
        let r = AddrRange::new(a, a + PAGE);
        assert!((truth.mean(&r) - iv.prob(a)).abs() < 1e-12);
    }
}

// ---------------------------------------------------------------------------------------
// The misses are the kernel's rules.

/// Every must-show scenario of this file, for one seed: (name, space, aggregations).
fn must_show_spaces(seed: u64) -> Vec<(String, SimSpace, usize)> {
    let base = SimSpace::layout(64 * MIB, seed).unwrap();
    let d = base.data_range();
    let band = |off: u64, len: u64, prob: f64| Band {
        range: AddrRange::new(d.start + off * MIB, d.start + (off + len) * MIB),
        prob,
    };
    let bands = Pattern::Static(vec![
        band(6, 4, 0.5),
        band(18, 8, 0.8),
        band(36, 4, 1.0),
        band(50, 4, 0.3),
    ]);
    let part = Pattern::Sparse(SparseHot {
        range: AddrRange::new(d.start + 24 * MIB, d.start + 40 * MIB),
        fraction: 0.1,
        prob: 0.8,
        layout_seed: seed,
    });
    let mut v = vec![
        (
            "hot bands".to_string(),
            base.clone().with_pattern(bands),
            30,
        ),
        ("partly hot".to_string(), base.with_pattern(part), 30),
    ];
    for (s, lookups) in [(1.0, 1024), (1.2, 1024), (1.0, 4096), (1.2, 4096)] {
        v.push((
            format!("zipf s={s} {lookups}"),
            zipf_space(seed, s, lookups),
            30,
        ));
    }
    for kind in [Hot::Stairs, Hot::Moving, Hot::Zigzag] {
        v.push((format!("{kind:?}"), hot_set(seed, kind, 20, 0.8), 120));
    }
    for out in [0.3, 0.9] {
        v.push((
            format!("{:.0}% non-resident", out * 100.0),
            nonresident_space(seed, out, Sight::Residency),
            50,
        ));
    }
    v
}

/// The misses are not madvd's departures: with the kernel's rules exactly
/// ([`Departures::Kernel`]: no Unknown rule, no sample budget, no `split_to_min_regions`),
/// every must-show scenario of this file gives, for seed 7 here and seeds 1..=10 in
/// [`realistic_kernel_rules_give_the_same_snapshots_all_seeds`], snapshots identical to
/// madvd's (regions, counts, ages). The simulator reading residency never answers Unknown
/// here and the kernel's init already leaves >= min_nr_regions regions, so the departures
/// have nothing to do: the figures, met and missed, are what the kernel's rules give.
#[test]
fn realistic_kernel_rules_give_the_same_snapshots() {
    kernel_rules_same_snapshots([7]);
}

/// [`realistic_kernel_rules_give_the_same_snapshots`] on every seed 1..=10 (150 s in a debug
/// build: not in the host suite; `--include-ignored` runs it).
#[test]
#[ignore = "slow (150 s debug): the host suite runs seed 7"]
fn realistic_kernel_rules_give_the_same_snapshots_all_seeds() {
    kernel_rules_same_snapshots(SEEDS);
}

fn kernel_rules_same_snapshots(seeds: impl IntoIterator<Item = u64>) {
    for seed in seeds {
        for (name, space, n) in must_show_spaces(seed) {
            let (madvd, _) = run(space.clone(), seed, n);
            let (kernel, _) = run_with(space, seed, n, kernel());
            let differ = madvd.iter().zip(&kernel).filter(|(a, b)| a != b).count();
            assert_eq!(
                differ, 0,
                "{name} seed {seed}: {differ} of {n} snapshots differ"
            );
        }
    }
}

/// With merges rounding to nearest ([`MergeRounding::Nearest`], not the kernel's rule), the
/// must-show of [`realistic_nonresident_idle_region_rate`] holds: the 10%-hot region's mean
/// nr_accesses over 50 aggregations within ±20% of its true rate, at 30% and 90%
/// non-resident, seeds 1..=10. So the kernel's floored merge is what misses it there.
#[test]
fn realistic_nonresident_idle_region_rate_with_nearest_rounding() {
    let rules = Rules {
        rounding: MergeRounding::Nearest,
        ..Rules::default()
    };
    let mut worst: f64 = 0.0;
    for out in [0.3, 0.9] {
        for seed in SEEDS {
            let (got, want) = nonresident_rate_with(seed, out, Sight::Residency, rules);
            let err = (got - want) / want;
            eprintln!(
                "nearest rounding, {:.0}% non-resident seed {seed}: mean nr_accesses {got:.3}, \
                 true {want:.3} ({:+.1}%)",
                out * 100.0,
                err * 100.0
            );
            worst = worst.max(err.abs());
        }
    }
    assert!(worst <= 0.2, "worst error {:.1}%", worst * 100.0);
}

// ---------------------------------------------------------------------------------------
// Where the WSS misses come from.

/// Per aggregation of a hot set at phases of 20 aggregations: its offset in the phase
/// (aggregations since the last jump or turn), the error against the bytes touched in the
/// same 20 sampling intervals, and the error's two parts, in bytes: untouched bytes in
/// regions counted (nr_accesses >= 1: a region holding touched and untouched bytes is
/// counted whole) and touched bytes in regions not counted.
struct WssRow {
    offset: u64,
    err: f64,
    over: u64,
    under: u64,
    truth: u64,
}

fn wss_breakdown(kind: Hot, seed: u64) -> Vec<WssRow> {
    let phase = 20u64;
    let space = hot_set(seed, kind, phase, 0.8);
    let ts = space.clone();
    let d = ts.data_range();
    let per = per_aggr();
    let (snaps, _) = run(space, seed, 6 * phase as usize);
    let mut rows = Vec::new();
    for (k, s) in snaps.iter().enumerate() {
        let k = k as u64;
        let mut touched: Vec<u64> = (k * per..(k + 1) * per)
            .flat_map(|i| ts.touched_pages(i, d))
            .collect();
        touched.sort_unstable();
        touched.dedup();
        let truth = touched.len() as u64 * PAGE;
        if k == 0 {
            // The same truth as the must-show tests' (checked once: it costs a second pass).
            assert_eq!(truth, ts.touched_bytes_between(0, per, d));
        }
        let (mut over, mut under) = (0u64, 0u64);
        for r in regions(s) {
            let from = touched.partition_point(|&a| a < r.start());
            let to = touched.partition_point(|&a| a < r.end());
            let t = (to - from) as u64 * PAGE;
            if r.nr_accesses >= 1 {
                over += r.size() - t;
            } else {
                under += t;
            }
        }
        let est = wss_bytes(s, 1);
        assert_eq!(est as i128 - truth as i128, over as i128 - under as i128);
        rows.push(WssRow {
            offset: k % phase,
            err: (est as f64 - truth as f64) / truth as f64,
            over,
            under,
            truth,
        });
    }
    rows
}

/// Stairs at 20 aggregations per phase: the jumps fall on aggregation boundaries (the
/// truth and the estimate cover the same 20 sampling intervals, and no aggregation holds
/// two windows), and the misses are the adaptation after each jump: pooled over seeds
/// 1..=10, the aggregations 5..19 after a jump are within ±25% on >= 95% (the bar), those
/// 0..4 are not. Most misses over-estimate (regions straddling the new edges counted whole);
/// a few under-estimate (a big region holding a little of the new window, whose samples
/// missed it in every interval).
#[test]
fn realistic_stairs_wss_misses_are_the_adaptation_after_each_jump() {
    let (mut early, mut early_ok, mut late, mut late_ok) = (0, 0, 0, 0);
    let mut under_misses = 0;
    for seed in SEEDS {
        let space = hot_set(seed, Hot::Stairs, 20, 0.8);
        let d = space.data_range();
        let per = per_aggr();
        // The hot window of each aggregation is one window: the jump is at a boundary.
        for k in 0..120u64 {
            let hot = space.hot_ranges(k * per, (k + 1) * per);
            let bytes: u64 = hot.iter().map(|r| overlap(r, &d)).sum();
            assert_eq!(bytes, d.len() / 10, "seed {seed} aggregation {k}: {hot:?}");
        }
        for r in wss_breakdown(Hot::Stairs, seed) {
            let ok = r.err.abs() <= 0.25;
            if !ok && r.err < 0.0 {
                under_misses += 1;
            }
            if r.offset < 5 {
                (early, early_ok) = (early + 1, early_ok + ok as u32);
            } else {
                (late, late_ok) = (late + 1, late_ok + ok as u32);
            }
        }
    }
    let (e, l) = (early_ok as f64 / early as f64, late_ok as f64 / late as f64);
    eprintln!(
        "stairs: within ±25% on {e:.3} of the aggregations 0..4 after a jump, {l:.3} of \
         aggregations 5..19; {under_misses} misses under-estimate"
    );
    assert!(l >= 0.95, "{l:.3}");
    assert!(e < 0.95, "{e:.3}");
}

/// Moving and zigzag at 20 aggregations per window: the edges move in every aggregation, so
/// there is no settled part of a phase; pooled over seeds 1..=10 the misses are spread over
/// every offset and are over-estimates: untouched bytes of regions straddling the moving
/// edges, counted whole. Printed per offset; asserted: >= 90% of the missed aggregations
/// over-estimate, and misses occur in both halves of the phases.
#[test]
fn realistic_sliding_wss_misses_are_straddling_regions() {
    for kind in [Hot::Moving, Hot::Zigzag] {
        let mut by_off = [(0u32, 0u32, 0.0f64, 0.0f64); 20];
        let (mut misses, mut over_misses) = (0, 0);
        for seed in SEEDS {
            for r in wss_breakdown(kind, seed) {
                let o = &mut by_off[r.offset as usize];
                o.0 += 1;
                o.2 += r.over as f64 / r.truth as f64;
                o.3 += r.under as f64 / r.truth as f64;
                if r.err.abs() > 0.25 {
                    o.1 += 1;
                    misses += 1;
                    over_misses += (r.err > 0.0) as u32;
                }
            }
        }
        for (i, (n, miss, over, under)) in by_off.iter().enumerate() {
            let n = *n as f64;
            eprintln!(
                "{kind:?} offset {i:2}: {miss:2} of {n} aggregations missed; untouched bytes \
                 counted {:+.1}%, touched bytes not counted {:.1}% of the truth",
                over / n * 100.0,
                under / n * 100.0
            );
        }
        let first: u32 = by_off[..10].iter().map(|o| o.1).sum();
        let second: u32 = by_off[10..].iter().map(|o| o.1).sum();
        eprintln!("{kind:?}: {misses} misses, {over_misses} over-estimates; {first} in offsets 0..9, {second} in 10..19");
        assert!(over_misses as f64 >= 0.9 * misses as f64);
        assert!(first > 0 && second > 0);
    }
}

// ---------------------------------------------------------------------------------------
// Where the dense Zipf miss comes from.

/// P(|X/n - m| <= tol) for X ~ Binomial(n, m).
fn binom_within(m: f64, n: u32, tol: f64) -> f64 {
    let m = m.clamp(0.0, 1.0);
    let mut c = 1.0f64;
    let mut p = 0.0;
    for x in 0..=n {
        if x > 0 {
            c *= (n - x + 1) as f64 / x as f64;
        }
        if (x as f64 / n as f64 - m).abs() <= tol + 1e-12 {
            p += c * m.powi(x as i32) * (1.0 - m).powi((n - x) as i32);
        }
    }
    p
}

/// The monitor's share of bytes within ±0.1 (aggregations 10..30), the share that
/// sampling one random page per region per interval would be expected to reach on the very
/// same regions (each region read as Binomial(samples, mean), byte-weighted), and the mean
/// region count.
fn zipf_vs_binomial(seed: u64, s: f64, lookups: u64, attrs: Attrs) -> (f64, f64, usize) {
    let space = zipf_space(seed, s, lookups);
    let d = space.data_range();
    let truth = Truth::new(&space, d, 0);
    let n = attrs.max_nr_accesses();
    let rules = Rules {
        attrs,
        ..Rules::default()
    };
    let (snaps, _) = run_with(space, seed, 30, rules);
    let share = rate_within(&snaps, 10, &truth, &d);
    let (mut bytes, mut expected, mut nr) = (0u64, 0.0, 0);
    for s in &snaps[10..] {
        nr += regions(s).count();
        for r in regions(s) {
            let o = overlap(&r.ar, &d);
            bytes += o;
            expected += o as f64 * binom_within(truth.mean(&r.ar), n, 0.1);
        }
    }
    (share, expected / bytes as f64, nr / 20)
}

/// Zipf s = 1.0 at 4096 lookups (the missed must-show): the monitor reaches what sampling
/// noise allows on its own regions — on every seed its share is within 0.05 of the share a
/// Binomial(20, mean) reading of the same regions is expected to reach, and that expected
/// share is itself under the bar.
#[test]
fn zipf_dense_miss_is_sampling_noise() {
    for seed in SEEDS {
        let (share, expected, nr) = zipf_vs_binomial(seed, 1.0, 4096, Attrs::default());
        eprintln!(
            "zipf s=1.0 4096 seed {seed}: {share:.3} within ±0.1, binomial expectation on the \
             same regions {expected:.3} ({nr} regions)"
        );
        assert!((share - expected).abs() <= 0.05, "seed {seed}");
        assert!(expected < 0.9, "seed {seed}");
    }
}

/// For the record, not the must-show (other attributes than the kernel's defaults): what
/// region counts and sample counts do to Zipf s = 1.0 at 4096 lookups. `max_nr_regions` 4000
/// alone changes nothing (the count stays at 24-75, far under `max / 2`: the merge, not the
/// cap, sets it); `min_nr_regions` 1000 (the merge size limit 64 KiB) with `max_nr_regions`
/// 4000 gives ~1800 regions and meets the bar; so does a 200 ms aggregation (40 samples) at
/// the default region bounds. Asserted: those two meet it on every seed, the first does not.
#[test]
#[ignore = "slow (minutes in a debug build); figures in docs/performance.md"]
fn zipf_dense_region_and_sample_counts() {
    let page = {
        let space = zipf_space(1, 1.0, 4096);
        let probs = space.page_probs(space.data_range(), 0);
        probs.iter().map(|&m| binom_within(m, 20, 0.1)).sum::<f64>() / probs.len() as f64
    };
    eprintln!("zipf s=1.0 4096: one region per page, expected share at 20 samples {page:.3}");
    let other = [
        ("max_nr_regions 4000", 100_000, 10, 4000, false),
        (
            "min_nr_regions 1000, max_nr_regions 4000",
            100_000,
            1000,
            4000,
            true,
        ),
        ("aggregation 200 ms", 200_000, 10, 1000, true),
    ];
    for (name, aggr_us, min, max, meets) in other {
        let attrs = Attrs {
            aggr_us,
            min_nr_regions: min,
            max_nr_regions: max,
            ..Attrs::default()
        };
        let v: Vec<(f64, f64, usize)> = SEEDS
            .map(|seed| zipf_vs_binomial(seed, 1.0, 4096, attrs))
            .collect();
        let line: Vec<String> = v
            .iter()
            .map(|(s, e, n)| format!("{s:.3} ({e:.3}, {n})"))
            .collect();
        eprintln!(
            "zipf s=1.0 4096, {name}: share (binomial expectation, regions) {}",
            line.join(", ")
        );
        assert!(v.iter().all(|x| (x.0 >= 0.9) == meets), "{name}");
    }
}
