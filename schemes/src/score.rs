//! Region scores for quota prioritization: `damon_hot_score()` and `damon_cold_score()` of
//! mm/damon/ops-common.c (Linux 6.12.117, Debian `linux-source-6.12` 6.12.117-1~deb12u1),
//! which carries the stable fix "mm/damon/ops-common: handle extreme intervals in
//! damon_hot_score()" (Cc: stable 5.16.x): the final hotness is clamped to
//! `[0, DAMOS_MAX_SCORE]`, nothing before it.

use crate::policy::Weights;
use engine::Attrs;

/// `DAMOS_MAX_SCORE` (include/linux/damon.h 6.12).
pub const MAX_SCORE: u32 = 99;
/// `DAMON_MAX_SUBSCORE` (mm/damon/ops-common.c 6.12).
const MAX_SUBSCORE: i64 = 100;
/// `DAMON_MAX_AGE_IN_LOG` (mm/damon/ops-common.c 6.12).
const MAX_AGE_IN_LOG: i64 = 32;

/// `damon_hot_score()`: how hot a region is, 0..=99.
///
/// ```text
/// freq_subscore = nr_accesses * 100 / damon_max_nr_accesses(attrs)
/// age_in_sec    = age * aggr_interval / 1e6;  age_in_log = number of bits of age_in_sec (≤ 32)
/// if freq_subscore == 0: age_in_log = -age_in_log        (old and idle = colder)
/// age_subscore  = (age_in_log + 32) * 100 / 32 / 2
/// hotness       = (w_freq * freq_subscore + w_age * age_subscore) / (w_freq + w_age)
/// return clamp(hotness * 99 / 100, 0, 99)
/// ```
/// `weight_sz` is ignored, as in the kernel.
pub fn hot_score(nr_accesses: u32, age: u32, attrs: &Attrs, w: &Weights) -> u32 {
    let max_nr = attrs.max_nr_accesses() as i64;
    // Not clamped: an nr_accesses above the maximum (attributes changed mid-aggregation)
    // weighs in fully; only the final hotness is clamped, as the kernel does.
    let freq_subscore = nr_accesses as i64 * MAX_SUBSCORE / max_nr;
    let mut age_in_sec = (age as u64).saturating_mul(attrs.aggr_us) / 1_000_000;
    let mut age_in_log: i64 = 0;
    while age_in_log < MAX_AGE_IN_LOG && age_in_sec != 0 {
        age_in_log += 1;
        age_in_sec >>= 1;
    }
    // If frequency is 0, higher age means it's colder.
    if freq_subscore == 0 {
        age_in_log = -age_in_log;
    }
    // Now age_in_log is in [-32, 32]; scale it to [0, 100].
    age_in_log += MAX_AGE_IN_LOG;
    let age_subscore = age_in_log * MAX_SUBSCORE / MAX_AGE_IN_LOG / 2;

    let (wf, wa) = (w.accesses as i64, w.age as i64);
    let mut hotness = wf * freq_subscore + wa * age_subscore;
    if wf + wa != 0 {
        hotness /= wf + wa;
    }
    // Transform it to fit in [0, DAMOS_MAX_SCORE]: the fix's one clamp, on the result only.
    hotness = hotness * MAX_SCORE as i64 / MAX_SUBSCORE;
    hotness.clamp(0, MAX_SCORE as i64) as u32
}

/// `damon_cold_score()`: `DAMOS_MAX_SCORE - damon_hot_score()`.
pub fn cold_score(nr_accesses: u32, age: u32, attrs: &Attrs, w: &Weights) -> u32 {
    MAX_SCORE - hot_score(nr_accesses, age, attrs, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> Attrs {
        Attrs::default() // 5 ms / 100 ms: max_nr_accesses = 20
    }

    /// Hand-evaluated from the kernel's formula (core-kunit.h has no score case).
    #[test]
    fn kernel_formula_values() {
        let a = attrs();
        let w = Weights {
            size: 0,
            accesses: 1,
            age: 1,
        };
        // nr=20 (100%), age=0: freq 100, age_in_log 0 -> +32 -> 50; (100+50)/2=75; 75*99/100=74.
        assert_eq!(hot_score(20, 0, &a, &w), 74);
        // nr=0, age=1200 aggregations = 120 s: bits(120)=7 -> -7+32=25 -> 25*100/32/2=39;
        // (0+39)/2=19; 19*99/100=18.
        assert_eq!(hot_score(0, 1200, &a, &w), 18);
        assert_eq!(cold_score(0, 1200, &a, &w), 81);
        // nr=10 (50%), age=10 (1 s): bits(1)=1 -> 33 -> 51; (50+51)/2=50; 50*99/100=49.
        assert_eq!(hot_score(10, 10, &a, &w), 49);
        // DAMON_RECLAIM weights (0/0/1): age only. nr=0, age 0 -> 50 -> 49.
        let reclaim = Weights {
            size: 0,
            accesses: 0,
            age: 1,
        };
        assert_eq!(hot_score(0, 0, &a, &reclaim), 49);
        // Zero weights: hotness 0, cold 99.
        let zero = Weights {
            size: 5,
            accesses: 0,
            age: 0,
        };
        assert_eq!(hot_score(20, 100, &a, &zero), 0);
        assert_eq!(cold_score(20, 100, &a, &zero), 99);
        // Age saturates at 2^32 s.
        // age u32::MAX -> 429496729 s -> 29 bits -> 3 -> 300/32/2 = 4 -> 4*99/100 = 3.
        assert_eq!(hot_score(0, u32::MAX, &a, &reclaim), 3);
    }

    /// `damon_hot_score()` (mm/damon/ops-common.c, Linux 6.12.117, with the stable fix
    /// "handle extreme intervals in damon_hot_score()"): `freq_subscore` is not clamped, so an
    /// `nr_accesses` above `damon_max_nr_accesses()` (the attributes changed mid-aggregation)
    /// weighs in fully; only the final hotness is clamped to `[0, DAMOS_MAX_SCORE]`.
    #[test]
    fn kernel_rule_damon_hot_score() {
        let a = attrs(); // max_nr_accesses = 20
        let w = |accesses, age| Weights {
            size: 0,
            accesses,
            age,
        };
        // nr=1000: freq 5000, age 0 -> 50; (5000+50)/2=2525; 2525*99/100=2499 -> clamp 99.
        // Clamping freq_subscore first (madvd before) gave (100+50)/2*99/100 = 74.
        assert_eq!(hot_score(1000, 0, &a, &w(1, 1)), 99);
        assert_eq!(cold_score(1000, 0, &a, &w(1, 1)), 0);
        // nr=30 (150%), weights 1/3, age 0 -> 50: (150+150)/4=75 -> 74 (unclamped, below
        // the maximum: the over-range frequency shows as a higher score than nr=20's).
        assert_eq!(hot_score(30, 0, &a, &w(1, 3)), 74);
        assert_eq!(hot_score(20, 0, &a, &w(1, 3)), 61);
    }

    #[test]
    fn colder_is_never_hotter() {
        let a = attrs();
        let w = Weights::default();
        for age in [0, 1, 10, 100, 1000, 100_000] {
            for nr in 0..20 {
                assert!(hot_score(nr, age, &a, &w) <= hot_score(nr + 1, age, &a, &w));
            }
            // With no accesses, older is colder.
            assert!(hot_score(0, age * 2 + 10, &a, &w) <= hot_score(0, age, &a, &w));
        }
    }
}
