//! Quotas: the charge window, the effective size quota, the feedback loop of quota goals, the
//! score histogram and minimum score, and the resume point. Ported from mm/damon/core.c
//! (Linux 6.12: `damos_adjust_quota()`, `damos_set_effective_quota()`,
//! `damon_feed_loop_next_input()`, `damos_skip_charged_region()`), with times in µs.

use crate::policy::QuotaSpec;
use crate::score::MAX_SCORE;
use engine::TargetId;

/// Throughput assumed before anything was charged: `PAGE_SIZE * 1024` bytes per ms
/// (`damos_set_effective_quota()`, core.c 6.12).
pub const INITIAL_THROUGHPUT_BYTES_PER_MS: u64 = 4096 * 1024;

/// `damon_feed_loop_next_input()` (mm/damon/core.c 6.12): the next input for a score whose
/// goal is 10 000, `max(last × (2 − score/10000), 10000)` in integers, saturating.
pub fn feed_loop_next_input(last_input: u64, score: u64) -> u64 {
    const GOAL: u64 = 10_000;
    // Set minimum input as 10000 to avoid compensation be zero.
    const MIN_INPUT: u64 = 10_000;
    if score == GOAL {
        return last_input;
    }
    if score >= GOAL * 2 {
        return MIN_INPUT;
    }
    let over_achieving = score > GOAL;
    let diff = if over_achieving {
        score - GOAL
    } else {
        GOAL - score
    };
    let compensation = if last_input < u64::MAX / diff {
        last_input * diff / GOAL
    } else {
        last_input / GOAL * diff
    };
    if over_achieving {
        return last_input.saturating_sub(compensation).max(MIN_INPUT);
    }
    last_input.saturating_add(compensation)
}

/// `mult_frac(current, 10000, target)`: a goal's score (`damos_quota_score()`, core.c 6.12).
pub fn goal_score(current: u64, target: u64) -> u64 {
    if target == 0 {
        return u64::MAX;
    }
    ((current as u128 * 10_000) / target as u128).min(u64::MAX as u128) as u64
}

/// `damos_set_effective_quota()` (core.c 6.12). `score` is the highest goal score when the
/// scheme has goals (`None` when a goal could not be measured this time: the goal-based
/// part then stays where it was). `min_region_sz` is `DAMON_MIN_REGION`.
pub fn set_effective_quota(
    q: &mut QuotaState,
    spec: &QuotaSpec,
    score: Option<u64>,
    min_region_sz: u64,
) {
    if spec.time_us == 0 && spec.goals.is_empty() {
        q.esz = spec.size;
        return;
    }
    let mut esz = u64::MAX;
    if !spec.goals.is_empty() {
        if let Some(score) = score {
            q.esz_bp = feed_loop_next_input(q.esz_bp.max(10_000), score);
        } else {
            q.esz_bp = q.esz_bp.max(10_000);
        }
        esz = q.esz_bp / 10_000;
    }
    if spec.time_us != 0 {
        let throughput = if q.total_charged_ns != 0 {
            ((q.total_charged_sz as u128 * 1_000_000) / q.total_charged_ns as u128)
                .min(u64::MAX as u128) as u64
        } else {
            INITIAL_THROUGHPUT_BYTES_PER_MS
        };
        // throughput is bytes per ms; the quota is kept in µs.
        let by_time =
            ((throughput as u128 * spec.time_us as u128) / 1000).min(u64::MAX as u128) as u64;
        esz = by_time.min(esz).max(min_region_sz);
    }
    if spec.size != 0 && spec.size < esz {
        esz = spec.size;
    }
    q.esz = esz;
}

/// The quota state of one scheme (`struct damos_quota`'s private fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    /// Effective size quota for the current window, bytes (0 = unlimited).
    pub esz: u64,
    /// The goal-tuned quota in basis points of a byte (`esz_bp`).
    pub esz_bp: u64,
    /// Bytes charged in the current window.
    pub charged_sz: u64,
    /// Start of the current window, µs; `None` before the first window.
    pub charged_from_us: Option<u64>,
    /// Bytes charged in past windows (for the throughput estimate).
    pub total_charged_sz: u64,
    /// Actuation time charged so far, ns.
    pub total_charged_ns: u64,
    /// Regions scoring below this are skipped.
    pub min_score: u32,
    /// Where charging stopped when the quota was exhausted: target and address.
    pub resume: Option<(TargetId, u64)>,
}

impl QuotaState {
    /// True when a new charge window starts at `now_us` (`damos_adjust_quota()`: a window
    /// is `[charged_from, charged_from + reset_interval)`; 6.12.117 treats a clock before the
    /// window as outside it too).
    pub fn window_over(&self, now_us: u64, reset_interval_us: u64) -> bool {
        match self.charged_from_us {
            None => true,
            Some(from) => now_us < from || now_us >= from.saturating_add(reset_interval_us),
        }
    }

    /// Start a new charge window. Returns true when the last window ended exhausted
    /// (`qt_exceeds`).
    pub fn start_window(&mut self, now_us: u64) -> bool {
        let exceeded = self.esz != 0 && self.charged_sz >= self.esz;
        self.total_charged_sz = self.total_charged_sz.saturating_add(self.charged_sz);
        self.charged_from_us = Some(now_us);
        self.charged_sz = 0;
        exceeded
    }

    pub fn exhausted(&self) -> bool {
        self.esz != 0 && self.charged_sz >= self.esz
    }
}

/// A histogram of bytes per score, and the lowest score whose cumulative size from the top
/// reaches the quota (`damos_adjust_quota()`, core.c 6.12).
#[derive(Clone, Debug)]
pub struct ScoreHistogram {
    bytes: [u64; MAX_SCORE as usize + 1],
    max_score: u32,
}

impl Default for ScoreHistogram {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_SCORE as usize + 1],
            max_score: 0,
        }
    }
}

impl ScoreHistogram {
    pub fn add(&mut self, score: u32, bytes: u64) {
        let s = score.min(MAX_SCORE);
        self.bytes[s as usize] = self.bytes[s as usize].saturating_add(bytes);
        self.max_score = self.max_score.max(s);
    }

    /// `for (cumulated_sz = 0, score = max_score; ; score--) { cumulated_sz += hist[score];
    /// if (cumulated_sz >= esz || !score) break; }`.
    pub fn min_score(&self, esz: u64) -> u32 {
        let mut cumulated = 0u64;
        let mut score = self.max_score;
        loop {
            cumulated = cumulated.saturating_add(self.bytes[score as usize]);
            if cumulated >= esz || score == 0 {
                break;
            }
            score -= 1;
        }
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{GoalMetric, GoalSpec};

    /// Port of `damon_test_feed_loop_next_input` (mm/damon/tests/core-kunit.h).
    #[test]
    fn kunit_feed_loop_next_input() {
        let last_input = 900_000;
        // Current score lower than the goal (10 000): next input is higher.
        assert!(feed_loop_next_input(last_input, 200) > last_input);
        // Current score higher than the goal: next input is lower.
        assert!(feed_loop_next_input(last_input, 250_000_000) < last_input);
        // The next input depends on the distance between the current score and the goal.
        assert!(feed_loop_next_input(last_input, 200) > feed_loop_next_input(last_input, 2000));
    }

    /// The formula's exact values (core.c 6.12).
    #[test]
    fn feed_loop_values() {
        assert_eq!(feed_loop_next_input(900_000, 10_000), 900_000);
        // score 200: diff 9800, comp = 900000*9800/10000 = 882000.
        assert_eq!(feed_loop_next_input(900_000, 200), 1_782_000);
        // score 15000: diff 5000, comp 450000 -> 450000.
        assert_eq!(feed_loop_next_input(900_000, 15_000), 450_000);
        // At or above twice the goal: the minimum input.
        assert_eq!(feed_loop_next_input(900_000, 20_000), 10_000);
        assert_eq!(feed_loop_next_input(12_000, 19_999), 10_000);
        // Huge inputs do not overflow.
        assert_eq!(feed_loop_next_input(u64::MAX, 0), u64::MAX);
        assert!(feed_loop_next_input(u64::MAX - 1, 15_000) < u64::MAX - 1);
    }

    fn spec(time_us: u64, size: u64, goals: usize) -> QuotaSpec {
        QuotaSpec {
            time_us,
            size,
            goals: (0..goals)
                .map(|_| GoalSpec {
                    metric: GoalMetric::UserInput,
                    target: 1,
                    current: 0,
                    pos: Default::default(),
                })
                .collect(),
            ..QuotaSpec::default()
        }
    }

    #[test]
    fn effective_quota_size_only() {
        let mut q = QuotaState::default();
        set_effective_quota(&mut q, &spec(0, 128 << 20, 0), None, 4096);
        assert_eq!(q.esz, 128 << 20);
    }

    #[test]
    fn effective_quota_from_throughput() {
        let mut q = QuotaState::default();
        // No history: PAGE_SIZE * 1024 bytes/ms; 10 ms -> 40 MiB, under the 128 MiB size quota.
        set_effective_quota(&mut q, &spec(10_000, 128 << 20, 0), None, 4096);
        assert_eq!(q.esz, 40 << 20);
        // 1 GiB charged in 2 s = 536870 bytes/ms (mult_frac rounds down) -> 5368700 bytes per 10 ms.
        q.total_charged_sz = 1 << 30;
        q.total_charged_ns = 2_000_000_000;
        set_effective_quota(&mut q, &spec(10_000, 128 << 20, 0), None, 4096);
        assert_eq!(q.esz, 536_870 * 10);
        // The size quota caps it.
        set_effective_quota(&mut q, &spec(10_000, 1 << 20, 0), None, 4096);
        assert_eq!(q.esz, 1 << 20);
        // Never below DAMON_MIN_REGION.
        q.total_charged_sz = 1;
        q.total_charged_ns = u64::MAX;
        set_effective_quota(&mut q, &spec(10_000, 0, 0), None, 4096);
        assert_eq!(q.esz, 4096);
    }

    #[test]
    fn effective_quota_from_goals() {
        let mut q = QuotaState::default();
        let s = spec(0, 0, 1);
        // esz_bp starts at max(0, 10000); a score of 0 doubles it each window.
        set_effective_quota(&mut q, &s, Some(0), 4096);
        assert_eq!((q.esz_bp, q.esz), (20_000, 2));
        set_effective_quota(&mut q, &s, Some(0), 4096);
        assert_eq!((q.esz_bp, q.esz), (40_000, 4));
        // Over-achieving halves it, never below 10000 bp.
        set_effective_quota(&mut q, &s, Some(15_000), 4096);
        assert_eq!(q.esz_bp, 20_000);
        set_effective_quota(&mut q, &s, Some(30_000), 4096);
        assert_eq!(q.esz_bp, 10_000);
        // Unmeasurable this time: unchanged.
        q.esz_bp = 70_000;
        set_effective_quota(&mut q, &s, None, 4096);
        assert_eq!(q.esz, 7);
        // With a time quota, the smaller of both.
        q.esz_bp = 1 << 50;
        set_effective_quota(&mut q, &spec(10_000, 0, 1), Some(10_000), 4096);
        assert_eq!(q.esz, 40 << 20);
    }

    #[test]
    fn min_score_from_histogram() {
        let mut h = ScoreHistogram::default();
        h.add(99, 10);
        h.add(50, 20);
        h.add(10, 40);
        assert_eq!(h.min_score(5), 99);
        assert_eq!(h.min_score(10), 99);
        assert_eq!(h.min_score(11), 50);
        assert_eq!(h.min_score(30), 50);
        assert_eq!(h.min_score(31), 10);
        assert_eq!(h.min_score(1000), 0);
        assert_eq!(ScoreHistogram::default().min_score(1), 0);
    }

    #[test]
    fn windows() {
        let mut q = QuotaState::default();
        assert!(q.window_over(0, 1000));
        assert!(!q.start_window(0));
        assert!(!q.window_over(999, 1000));
        assert!(q.window_over(1000, 1000));
        q.esz = 10;
        q.charged_sz = 10;
        assert!(q.exhausted());
        assert!(q.start_window(1000));
        assert_eq!((q.charged_sz, q.total_charged_sz), (0, 10));
    }
}
