//! The region-adjustment rules of the kernel's monitoring core, as pure functions over a
//! target's sorted region list: access-rate update and moving sum, merge (with aging),
//! split, reset, and the region size limit.
//!
//! Every rule is ported from `mm/damon/core.c` of **Linux 6.12.117** (Debian
//! `linux-source-6.12` 6.12.117-1~deb12u1, the lab kernel) unless a comment says otherwise;
//! the function names are the kernel's, minus the `damon_`/`kdamond_` prefix.
//! The unit tests, ports of `mm/damon/tests/core-kunit.h`, are in `core/tests.rs`.

use crate::kernel::host::align_down;
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
/// madvd extension: `nr_known` counts the definite answers (see [`update_access_unknown`]),
/// `nr_seen` the Accessed ones among them.
pub fn update_access_rate(r: &mut Region, accessed: bool, len_window: u32) {
    r.nr_accesses_bp = moving_sum(
        r.nr_accesses_bp,
        r.last_nr_accesses.saturating_mul(10_000),
        len_window,
        if accessed { 10_000 } else { 0 },
    );
    if accessed {
        r.nr_accesses += 1;
        r.nr_seen += 1;
    }
    r.nr_known += 1;
}

/// The significance below which a region's known answers are taken to show that its rate
/// changed since the previous aggregation ([`finalize_unknown`]).
pub const UNKNOWN_CHANGE_P: f64 = 1e-4;

/// Do `a` accessed answers out of `k` known show a rate other than the previous count `last`
/// of `n` (a one-sided binomial tail below [`UNKNOWN_CHANGE_P`], in the direction of the
/// deviation)? The previous rate is kept off 0 and 1 (`(last + 1/2) / (n + 1)`), so a
/// single access of a previously idle region is no proof of change.
fn rate_changed(a: u64, k: u64, last: u64, n: u64) -> bool {
    if k == 0 {
        return false;
    }
    // More accesses than known answers only after the attributes changed mid-aggregation
    // (`nr_known` restarts, the converted count stays): count them as all known accessed.
    let a = a.min(k);
    let p = (last.min(n) as f64 + 0.5) / (n as f64 + 1.0);
    let q = 1.0 - p;
    // ln of the binomial probability of exactly `a` of `k`.
    let ln_choose: f64 = (1..=a.min(k - a))
        .map(|j| (((k - a.min(k - a)) + j) as f64 / j as f64).ln())
        .sum();
    let ln_pa = ln_choose + a as f64 * p.ln() + (k - a) as f64 * q.ln();
    let (mut term, mut tail) = (ln_pa.exp(), 0.0);
    if a as f64 >= p * k as f64 {
        // P(X >= a)
        for i in a..=k {
            tail += term;
            if tail >= UNKNOWN_CHANGE_P || term == 0.0 {
                break;
            }
            term *= (k - i) as f64 / (i + 1) as f64 * p / q;
        }
    } else {
        // P(X <= a)
        for i in (0..=a).rev() {
            tail += term;
            if tail >= UNKNOWN_CHANGE_P || i == 0 || term == 0.0 {
                break;
            }
            term *= i as f64 / (k - i + 1) as f64 * q / p;
        }
    }
    tail < UNKNOWN_CHANGE_P
}

/// madvd extension for an `Unknown` answer (no kernel counterpart: the kernel's checks
/// always answer): the sample never counts as an access; the moving sum (what schemes read
/// mid-aggregation) advances by the previous aggregation's rate instead of 0, so that it
/// neither decays as if the region were cold nor jumps on the few answers known so far.
/// The aggregation boundary applies the full rule ([`finalize_unknown`]). With no Unknown
/// answers the behaviour is exactly the kernel's.
pub fn update_access_unknown(r: &mut Region, len_window: u32) {
    let n = len_window.max(1);
    let estimate = (r.last_nr_accesses.min(n) as u64 * 10_000 / n as u64) as u32;
    r.nr_accesses_bp = moving_sum(
        r.nr_accesses_bp,
        r.last_nr_accesses.saturating_mul(10_000),
        len_window,
        estimate,
    );
}

/// madvd extension, run at each aggregation boundary before merging: turn the count of
/// accessed samples into a count out of `nr_samples` sampling intervals (identical to the
/// kernel's when every sample is known). Returns the largest resulting `nr_accesses` (what
/// `ops.check_accesses()` returns).
///
/// The rule, for a region with `a` accessed answers out of `k` known, `u = n - k` Unknown,
/// `n` = `nr_samples`, and `L` its previous count (`last_nr_accesses`):
/// - `k == n`: `a`, the kernel's count;
/// - `k == 0`: `L`, the previous count carried; and the region does not age this
///   aggregation (it was not observed: [`merge_regions_of`] leaves its `age` as it was,
///   neither incremented nor reset);
/// - otherwise each Unknown answer counts at the previous rate, `round(a + u L / n)`,
///   unless the known answers show that the rate changed ([`rate_changed`]: a binomial
///   test at [`UNKNOWN_CHANGE_P`] against the previous rate); then at the known answers'
///   rate, `round(a n / k)`.
///
/// `L` in the fill-in is the previous aggregation's estimate before rounding (`est_bp`, in
/// basis points; the count `last_nr_accesses` when the two disagree by a count or more,
/// after a merge or new attributes). Rounding each aggregation's `a + u L / n` to a count
/// and starting the next from the rounded count (madvd before 2026-12-07) stops the decay of
/// an idle region: with no accessed answer, `round(u L / n) = L` for every `L ≤ n / 2k`, so
/// with ~2 known answers of 20 a region once at 5 read 5 for ever — under the refault
/// probe's budget, a moving hot set's old slots read 3–13 of 20 twenty seconds after their
/// last access (docs/performance.md, "Replay vs reality"). Carried unrounded, the estimate
/// decays as `L (1 - k / n)` an aggregation, to 0.
///
/// Why not always scale `a` by `n / k` (madvd before): with few known answers one access
/// became many — 1 accessed of 2 known made a mostly idle region `n / 2`, far over the
/// merge and age-reset threshold (`max / 10`) that its true rate stays under; here it
/// stays 1. Filling in at the previous rate is unbiased in a steady state when Unknown
/// answers are independent of access (the fixpoint of `x = a + u x / n` with `a = m k` is
/// `x = m n`), and a real change (a hot set that moved) is followed at once.
///
/// What no rule can repair: Unknown answers that depend on access. A check that cannot see
/// non-resident pages (they are the idle ones) answers only for the hot resident ones, and
/// any estimate from its known answers drifts to their rate — a region 10% hot with 90%
/// of its pages paged out looks up to 10x hotter. The checks therefore treat residency as
/// evidence (a page not present at the start and the end of an interval was not accessed:
/// `NotAccessed`), which leaves Unknown only for what is independent of access (pages a
/// check cannot look at, failed reads, unsampled regions). docs/architecture.md, "Unknown
/// answers".
pub fn finalize_unknown(regions: &mut [Region], nr_samples: u32) -> u32 {
    const P: u64 = 10_000;
    let mut max = 0;
    let n = nr_samples as u64;
    for r in regions.iter_mut() {
        if r.nr_known >= nr_samples {
            max = max.max(count_is_estimate(r));
            continue;
        }
        let (a, k) = (r.nr_accesses as u64, r.nr_known as u64);
        let last = (r.last_nr_accesses as u64).min(n);
        // The previous rate unrounded, when it is this region's (within a count of `last`:
        // a merge floors the count, converting attributes rescales it).
        let l = match r.est_bp as u64 {
            e if e.abs_diff(last * P) < P => e.min(n * P),
            _ => last * P,
        };
        let (est, nr) = if k == 0 {
            (l, last)
        } else {
            let est = if rate_changed(a, k, last, n) {
                a * n * P / k
            } else {
                a * P + (n - k) * l / n.max(1)
            };
            (est, (est + P / 2) / P)
        };
        r.est_bp = est.min(u32::MAX as u64) as u32;
        r.nr_accesses = nr.min(n) as u32;
        max = max.max(r.nr_accesses);
    }
    max
}

/// The kernel's rule at the aggregation boundary (every answer known, or
/// `Departures::Kernel`): the count stays as counted and is the estimate the next fill-in
/// starts from. Returns the largest count.
pub fn kernel_counts(regions: &mut [Region]) -> u32 {
    regions.iter_mut().map(count_is_estimate).max().unwrap_or(0)
}

/// A region whose count is the kernel's: its unrounded estimate is that count.
fn count_is_estimate(r: &mut Region) -> u32 {
    r.est_bp = r.nr_accesses.saturating_mul(10_000);
    r.nr_accesses
}

/// How a merge rounds the size-weighted mean of the two regions' `nr_accesses`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MergeRounding {
    /// Down, as `damon_merge_two_regions()` does (integer division; mm/damon/core.c
    /// 6.12.118, l. 1817-1828). The default.
    #[default]
    Floor,
    /// To the nearest count (halves up). Not the kernel's rule: an opt-in
    /// (`Monitor::set_merge_rounding`). Each floored merge loses up to one count; at low
    /// rates, where neighbours merge under the threshold `max / 10`, merges are many and the
    /// loss is a large share of the rate (docs/performance.md, "Monitor accuracy on the
    /// realistic sim": a 10%-hot region reads 17-25% low with `Floor`). Only `nr_accesses`
    /// rounds to nearest; `age` (and madvd's `nr_known`) keep the kernel's floor.
    Nearest,
}

/// When a region's `age` restarts at an aggregation boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AgeRule {
    /// Linux 6.12.117's `damon_merge_regions_of()`: when `nr_accesses` moved by more than
    /// the merge threshold (`max / 10`) from `last_nr_accesses`. A region going from a low
    /// count to 0 (or back) keeps its age: a region with hot pages scattered among idle ones
    /// at 10% of its samples reads 0 in one aggregation of 20 samples in eight, and is then
    /// "idle for its whole age" to a `nr_accesses 0..0, age >= N` pattern. The default
    /// (the engine's kernel port, and the lab kernel's rule).
    #[default]
    Kernel612,
    /// Also when `nr_accesses` changes between zero and non-zero: mainline's later rule
    /// ("mm/damon/core: reset age if nr_accesses changes between non-zero and zero",
    /// SeongJae Park, posted 2025-09-16, `damon_merge_regions_of()`:
    /// `else if ((r->nr_accesses == 0) != (r->last_nr_accesses == 0)) r->age = 0;`), so the
    /// age of a zero-access region is how long it has had none.
    ZeroCrossing,
    /// madvd's rule: mainline's for a region that reads zero (its age is its run of
    /// aggregations at zero), and for one that reads accesses, the time since its count last
    /// moved beyond its noise: by more than the merge threshold (`max / 10`) and more than
    /// [`NOISE_COUNTS`], or across zero from more than [`NOISE_COUNTS`]. What `madvd run`,
    /// `record`, `demo`, the agent and `paddr` monitor with
    /// ([`crate::monitor::Monitor::set_age_rule`]).
    ///
    /// Why: a region whose hot pages are scattered among idle ones reads a small count that
    /// is often zero. With every sample known (page_idle, the kernel's DAMON) a region 10%
    /// hot whose hot pages are each read in one sampling interval of five reads 0 in two
    /// aggregations of three (Binomial(20, 0.02)). Under [`AgeRule::ZeroCrossing`] every
    /// such zero restarts its age and so does the next non-zero count: it is never older than
    /// a few aggregations, and no `accesses 1..N, age >= 6 s` pattern (`reclaim.ron`'s
    /// `lukewarm`) ever matches it — in the lab (page_idle, 128 MiB, 10% hot scattered at
    /// 4 KiB) `reclaim.ron` took 1% of the idle memory (docs/performance.md, "Reclaim side by
    /// side with the kernel"). Under 6.12's rule the same region keeps its age at zero too,
    /// and a `0..0` pattern takes it for idle (the reason madvd moved to mainline's rule:
    /// docs/architecture.md, "Age"). Here the zero reading keeps mainline's meaning (how long
    /// it has had none: a flicker to zero is young, so `0..0` patterns wait for a real idle
    /// run), and a non-zero reading is as old as the level it has kept through the flicker.
    ZeroRun,
}

/// A change of `nr_accesses` by at most this many counts, between small counts, is within
/// the noise of sampling ([`AgeRule::ZeroRun`]): a region whose expected count is `m` reads
/// 0 in about `e^-m` of its aggregations (Poisson; Binomial(n, m / n) for n ≫ m), 14% at
/// m = 2 and 5% at m = 3; a region at m ≤ 0.4 reads 3 or more in under 1%.
pub const NOISE_COUNTS: u32 = 2;

/// The merge's rules: how it rounds, and when it restarts a region's age.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MergeRules {
    pub rounding: MergeRounding,
    pub age: AgeRule,
}

impl From<MergeRounding> for MergeRules {
    fn from(rounding: MergeRounding) -> Self {
        MergeRules {
            rounding,
            age: AgeRule::default(),
        }
    }
}

fn weighted(a: u32, sz_a: u64, b: u32, sz_b: u64) -> u32 {
    ((a as u128 * sz_a as u128 + b as u128 * sz_b as u128) / (sz_a as u128 + sz_b as u128)) as u32
}

fn weighted_nearest(a: u32, sz_a: u64, b: u32, sz_b: u64) -> u32 {
    let sz = sz_a as u128 + sz_b as u128;
    ((a as u128 * sz_a as u128 + b as u128 * sz_b as u128 + sz / 2) / sz) as u32
}

/// `damon_merge_two_regions()` (mm/damon/core.c, 6.12.117): `l` absorbs its right neighbour
/// `r`; `nr_accesses` and `age` become size-weighted averages, `nr_accesses_bp` is reset to
/// `nr_accesses * 10000`.
pub fn merge_two_regions(l: &mut Region, r: &Region) {
    merge_two_regions_with(l, r, MergeRounding::Floor);
}

/// [`merge_two_regions`] with the merge's rules chosen: the rounding of `nr_accesses`
/// ([`MergeRounding`]), and under [`AgeRule::ZeroRun`] the age of a merged region that reads
/// none — its parts' runs of none (a part reading accesses has run 0): a lukewarm part's
/// level age is not an idle age.
pub fn merge_two_regions_with(l: &mut Region, r: &Region, rules: impl Into<MergeRules>) {
    let MergeRules { rounding, age } = rules.into();
    let (sz_l, sz_r) = (l.size(), r.size());
    let zero_run = |x: &Region| if x.nr_accesses == 0 { x.age } else { 0 };
    let zero_runs = (zero_run(l), zero_run(r));
    l.nr_accesses = match rounding {
        MergeRounding::Floor => weighted(l.nr_accesses, sz_l, r.nr_accesses, sz_r),
        MergeRounding::Nearest => weighted_nearest(l.nr_accesses, sz_l, r.nr_accesses, sz_r),
    };
    l.nr_accesses_bp = l.nr_accesses.saturating_mul(10_000);
    l.age = weighted(l.age, sz_l, r.age, sz_r);
    l.level_age = weighted(l.level_age, sz_l, r.level_age, sz_r);
    if age == AgeRule::ZeroRun && l.nr_accesses == 0 {
        l.age = weighted(zero_runs.0, sz_l, zero_runs.1, sz_r).min(l.level_age);
    }
    // madvd: keep the known-sample count meaningful for the merged region.
    l.nr_known = weighted(l.nr_known, sz_l, r.nr_known, sz_r);
    // madvd: the merged region's evidence of access is both regions' accessed answers.
    l.nr_seen = l.nr_seen.saturating_add(r.nr_seen);
    l.est_bp = weighted(l.est_bp, sz_l, r.est_bp, sz_r);
    l.ar.end = r.ar.end;
}

/// `damon_merge_regions_of()` (mm/damon/core.c, 6.12.117, with the stable fix "skip aging
/// from repeated aggressive merging"): walk the regions in address order; when `count_age`,
/// reset `age` of a region whose `nr_accesses` moved by more than `thres` from
/// `last_nr_accesses`, else increment it; merge a region into its left neighbour when they
/// are adjacent, their `nr_accesses` differ by at most `thres`, and the merged size stays
/// within `sz_limit`.
///
/// Mainline's later extra age reset when `nr_accesses` crosses zero
/// ("`(nr_accesses == 0) != (last_nr_accesses == 0)`", after 6.12, not backported) is
/// [`AgeRule::ZeroCrossing`], through [`merge_regions_of_with`]; this function is 6.12's.
pub fn merge_regions_of(regions: &mut Vec<Region>, thres: u32, sz_limit: u64, count_age: bool) {
    merge_regions_of_with(regions, thres, sz_limit, count_age, MergeRounding::Floor);
}

/// [`merge_regions_of`] with the merge's rounding chosen ([`MergeRounding`]).
pub fn merge_regions_of_with(
    regions: &mut Vec<Region>,
    thres: u32,
    sz_limit: u64,
    count_age: bool,
    rules: impl Into<MergeRules>,
) {
    let MergeRules { rounding, age } = rules.into();
    let n = regions.len();
    let mut w = 0usize;
    for i in 0..n {
        // madvd: a region with no known answer this aggregation (`nr_known == 0`, see
        // `finalize_unknown`) was not observed and does not age.
        if count_age && regions[i].nr_known > 0 {
            let r = &mut regions[i];
            let (now, last) = (r.nr_accesses, r.last_nr_accesses);
            let crossed = (now == 0) != (last == 0);
            match age {
                AgeRule::Kernel612 | AgeRule::ZeroCrossing => {
                    if now.abs_diff(last) > thres || (age == AgeRule::ZeroCrossing && crossed) {
                        r.age = 0;
                    } else {
                        r.age = r.age.saturating_add(1);
                    }
                }
                AgeRule::ZeroRun => {
                    let moved = now.abs_diff(last) > thres.max(NOISE_COUNTS)
                        || (crossed && now.max(last) > NOISE_COUNTS);
                    r.level_age = if moved {
                        0
                    } else {
                        r.level_age.saturating_add(1)
                    };
                    r.age = match (now, last) {
                        // Still none: one more aggregation of it (never older than its level).
                        (0, 0) => r.age.saturating_add(1).min(r.level_age),
                        // None now, some before: a new run of zeros.
                        (0, _) => 0,
                        _ => r.level_age,
                    };
                }
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
            merge_two_regions_with(&mut a[w - 1], &b[0], MergeRules { rounding, age });
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
/// kernel, 6.12.117. Both stable fixes are also in Debian's 6.12.118 source (the lab's build
/// cache as of 2026-12-06): `damon_merge_regions_of()` l. 1837 (`count_age`) and
/// `kdamond_merge_regions()` l. 1876-1905 (the `max_thres` cap).
pub fn merge_regions(
    targets: &mut [&mut Vec<Region>],
    threshold: u32,
    sz_limit: u64,
    max_nr_regions: u32,
    max_thres: u32,
) {
    merge_regions_with(
        targets,
        threshold,
        sz_limit,
        max_nr_regions,
        max_thres,
        MergeRounding::Floor,
    );
}

/// [`merge_regions`] with the merge's rounding chosen ([`MergeRounding`]).
pub fn merge_regions_with(
    targets: &mut [&mut Vec<Region>],
    threshold: u32,
    sz_limit: u64,
    max_nr_regions: u32,
    max_thres: u32,
    rules: impl Into<MergeRules>,
) {
    let rules = rules.into();
    let mut thres = threshold;
    let mut count_age = true;
    loop {
        let mut nr = 0usize;
        for t in targets.iter_mut() {
            merge_regions_of_with(t, thres, sz_limit, count_age, rules);
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
/// `nr_accesses` and `nr_accesses_bp` (and madvd's `nr_known` and `nr_seen`: each piece
/// keeps the evidence).
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
/// nr_accesses; nr_accesses = 0` (and madvd's `nr_known = nr_seen = 0`).
pub fn reset_aggregated(regions: &mut [Region]) {
    for r in regions {
        r.last_nr_accesses = r.nr_accesses;
        r.nr_accesses = 0;
        r.nr_known = 0;
        r.nr_seen = 0;
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

/// `damon_update_monitoring_result()` (mm/damon/core.c, mainline since "mm/damon/core: make
/// damon_set_attrs() be safe to be called from damon_call()", 2025; 6.12.117 has only the
/// first branch): convert a region's statistics to new attributes. `nr_accesses` (through the
/// access ratio) and `age` (by the aggregation intervals) are converted.
///
/// - `aggregating == false` (called at an aggregation boundary, before the reset): convert
///   `nr_accesses`; `nr_accesses_bp` becomes `nr_accesses * 10000`.
/// - `aggregating == true` (called mid-aggregation): drop what this aggregation gathered so
///   far, as if `kdamond_reset_aggregated()` had just run but the last aggregation had been
///   made with the new attributes: convert `last_nr_accesses`, `nr_accesses_bp =
///   last_nr_accesses * 10000`, `nr_accesses = 0`.
///
/// madvd's rule for `Unknown` answers in flight (the `aggregating` branch): the known-sample
/// count goes with the accesses it counted, `nr_known = 0`, so answers of either kind given
/// before the change count for nothing. From the change on, a region is estimated as a region
/// with no known sample yet is: at its converted `last_nr_accesses` ([`update_access_unknown`]
/// for the moving sum, [`finalize_unknown`] for a region still without a known sample at the
/// end of the aggregation). A sample prepared before the change and checked after it counts in
/// the new aggregation (its interval is the new aggregation's first).
pub fn update_monitoring_result(
    r: &mut Region,
    old: &crate::attrs::Attrs,
    new: &crate::attrs::Attrs,
    aggregating: bool,
) {
    let convert = |n: u32| accesses_bp_to_nr_accesses(nr_accesses_to_accesses_bp(n, old), new);
    if !aggregating {
        r.nr_accesses = convert(r.nr_accesses);
        r.nr_accesses_bp = r.nr_accesses.saturating_mul(10_000);
    } else {
        r.last_nr_accesses = convert(r.last_nr_accesses);
        r.nr_accesses_bp = r.last_nr_accesses.saturating_mul(10_000);
        r.nr_accesses = 0;
        r.nr_known = 0;
        r.nr_seen = 0;
    }
    r.age = (r.age as u64 * old.aggr_us / new.aggr_us.max(1)) as u32;
    r.level_age = (r.level_age as u64 * old.aggr_us / new.aggr_us.max(1)) as u32;
}

#[cfg(test)]
mod tests;
