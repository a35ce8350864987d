//! Quotas: the charge window, the effective size quota, the feedback loop of quota goals, the
//! score histogram and minimum score, charging (by size when a piece is chosen, by time when
//! the apply report comes back), the split-to-fit rule and the resume point. Ported from
//! mm/damon/core.c (Linux 6.12: `damos_adjust_quota()`, `damos_set_effective_quota()`,
//! `damon_feed_loop_next_input()`, `damos_apply_scheme()`, `damos_skip_charged_region()`),
//! with times in µs. [`QuotaState`] is the only place that changes what a quota has charged.

use crate::policy::QuotaSpec;
use crate::score::MAX_SCORE;
use engine::TargetId;

/// Throughput assumed before anything was charged: `PAGE_SIZE * 1024` bytes per ms
/// (`damos_set_effective_quota()`, core.c 6.12).
pub const INITIAL_THROUGHPUT_BYTES_PER_MS: u64 = 4096 * 1024;

/// `damon_feed_loop_next_input()`: one port for the quota goals here and the monitor's
/// interval tuning (`engine::monitor::tune`, which holds its kunit port).
pub use engine::monitor::tune::feed_loop_next_input;

/// `mult_frac(current, 10000, target)`: a goal's score (`damos_quota_score()`, core.c 6.12).
pub fn goal_score(current: u64, target: u64) -> u64 {
    if target == 0 {
        return u64::MAX;
    }
    ((current as u128 * 10_000) / target as u128).min(u64::MAX as u128) as u64
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

    /// `quota->esz && quota->charged_sz >= quota->esz`: nothing more is charged in this window.
    pub fn exhausted(&self) -> bool {
        self.esz != 0 && self.charged_sz >= self.esz
    }

    /// `damos_set_effective_quota()` (mm/damon/core.c 6.12): the effective size quota of a
    /// new window. `score` is the highest goal score when the scheme has goals (`None` when a
    /// goal could not be measured this time: the goal-based part then stays where it was).
    /// `min_region_sz` is `DAMON_MIN_REGION`.
    ///
    /// ```c
    /// if (!quota->ms && list_empty(&quota->goals)) { quota->esz = quota->sz; return; }
    /// if (!list_empty(&quota->goals))
    ///         esz_bp = damon_feed_loop_next_input(max(esz_bp, 10000), score); esz = esz_bp / 10000;
    /// if (quota->ms) {
    ///         throughput = total_charged_ns ? total_charged_sz * 1000000 / total_charged_ns
    ///                                       : PAGE_SIZE * 1024;
    ///         esz = max(DAMON_MIN_REGION, min(throughput * quota->ms, esz));
    /// }
    /// if (quota->sz && quota->sz < esz) esz = quota->sz;
    /// ```
    pub fn set_effective_quota(
        &mut self,
        spec: &QuotaSpec,
        score: Option<u64>,
        min_region_sz: u64,
    ) {
        if spec.time_us == 0 && spec.goals.is_empty() {
            self.esz = spec.size;
            return;
        }
        // The time quota as bytes: the time charged so far (`charge_time`) against the bytes
        // charged in past windows, bytes per ms; the quota is kept in µs.
        let by_time = (spec.time_us != 0).then(|| {
            let throughput = if self.total_charged_ns != 0 {
                ((self.total_charged_sz as u128 * 1_000_000) / self.total_charged_ns as u128)
                    .min(u64::MAX as u128) as u64
            } else {
                INITIAL_THROUGHPUT_BYTES_PER_MS
            };
            ((throughput as u128 * spec.time_us as u128) / 1000).min(u64::MAX as u128) as u64
        });
        let mut esz = u64::MAX;
        if !spec.goals.is_empty() {
            // The refault guard (madvd's, see `guard_bounds`): start at the ceiling and keep
            // the goal's part between one region and the ceiling.
            let bounds = guard_bounds(spec, by_time, min_region_sz);
            if let Some((_, hi)) = bounds {
                if self.esz_bp == 0 {
                    self.esz_bp = hi;
                }
            }
            if let Some(score) = score {
                self.esz_bp = feed_loop_next_input(self.esz_bp.max(10_000), score);
            } else {
                self.esz_bp = self.esz_bp.max(10_000);
            }
            if let Some((lo, hi)) = bounds {
                self.esz_bp = self.esz_bp.clamp(lo, hi.max(lo));
            }
            esz = self.esz_bp / 10_000;
        }
        if let Some(by_time) = by_time {
            esz = by_time.min(esz).max(min_region_sz);
        }
        if spec.size != 0 && spec.size < esz {
            esz = spec.size;
        }
        self.esz = esz;
    }

    /// `damos_fix_stale_charge_pointers()` (core.c 6.12): a resume point in a target that is
    /// gone cannot be reached, so it is dropped.
    pub fn fix_stale_resume(&mut self, mut present: impl FnMut(TargetId) -> bool) {
        if let Some((t, _)) = self.resume {
            if !present(t) {
                self.resume = None;
            }
        }
    }

    /// `damos_skip_charged_region()` as of Linux 6.12: where the walk of a new window may
    /// start in the region `[start, end)` of `target` (`is_last`: the target's last region),
    /// or `None` to skip the region. The last window stopped at the resume point, so regions
    /// of other targets, the target's last region and what lies before the point are
    /// skipped; a region the point falls in is entered `ALIGN_DOWN(from - start,
    /// DAMON_MIN_REGION)` bytes in (at least `DAMON_MIN_REGION`, the kernel splitting it
    /// there). Reaching the point, or the last region, clears it.
    ///
    /// Later 6.12.y stable releases (6.12.118 in the lab) check the last region after the
    /// address checks and resume at `r->ar.end` instead of `end + 1`; madvd keeps the 6.12
    /// rule (its advice is pinned by tests).
    pub fn skip_charged(
        &mut self,
        target: TargetId,
        start: u64,
        end: u64,
        is_last: bool,
        min_region_sz: u64,
    ) -> Option<u64> {
        let Some((rt, from)) = self.resume else {
            return Some(start);
        };
        if rt != target {
            return None;
        }
        if is_last {
            self.resume = None;
            return None;
        }
        if from != 0 && end <= from {
            return None;
        }
        let mut first = start;
        if from != 0 && start < from {
            let mut skip = align_down(from - start, min_region_sz);
            if skip == 0 {
                if end - start <= min_region_sz {
                    return None;
                }
                skip = min_region_sz;
            }
            first += skip;
        }
        self.resume = None;
        Some(first)
    }

    /// The split-to-fit rule of `damos_apply_scheme()` (core.c 6.12): how much of a piece of
    /// `len` bytes may be charged now. The whole piece when it fits in what is left of the
    /// effective quota (or there is no quota); else what is left, aligned down to
    /// `DAMON_MIN_REGION` (the kernel splits the region there); `None` when that is zero
    /// (the kernel then counts the region as tried with 0 bytes):
    ///
    /// ```c
    /// if (quota->esz && quota->charged_sz + sz > quota->esz) {
    ///         sz = ALIGN_DOWN(quota->esz - quota->charged_sz, DAMON_MIN_REGION);
    ///         if (!sz)
    ///                 goto update_stat;
    ///         damon_split_region_at(t, r, sz);
    /// }
    /// ```
    pub fn fit(&self, len: u64, min_region_sz: u64) -> Option<u64> {
        if self.esz == 0 || self.charged_sz.saturating_add(len) <= self.esz {
            return Some(len);
        }
        let sz = align_down(self.esz.saturating_sub(self.charged_sz), min_region_sz);
        (sz != 0).then_some(sz)
    }

    /// Charge by size (`damos_apply_scheme()`, core.c 6.12): `sz` bytes of a piece of
    /// `target` ending at `end` were chosen. When that uses the quota up, remember where to
    /// resume next window: `(target, end + 1)`, as 6.12 does (`charge_addr_from`).
    pub fn charge(&mut self, target: TargetId, end: u64, sz: u64) {
        self.charged_sz = self.charged_sz.saturating_add(sz);
        if self.exhausted() {
            self.resume = Some((target, end.saturating_add(1)));
        }
    }

    /// Give back `sz` bytes charged in this window that the actuator did not advise
    /// because they were not resident, or held back by the page-out pace (the apply report's
    /// `RangeOutcome::refund`). madvd's rule, not the kernel's: `damos_apply_scheme()`
    /// (core.c 6.12) charges the whole region, resident or not (docs/architecture.md). The
    /// report comes back before the next plan, in the window its charge was made in.
    /// `rewind`: where the walk should resume to reach bytes held back by the pace (the
    /// first such piece); `None` keeps the resume point (not-resident bytes need no retry).
    pub fn refund(&mut self, sz: u64, rewind: Option<(TargetId, u64)>) {
        self.charged_sz = self.charged_sz.saturating_sub(sz);
        if let Some(at) = rewind {
            self.resume = Some(at);
        }
    }

    /// Charge by time (`quota->total_charged_ns += end - begin`, `damos_apply_scheme()`,
    /// core.c 6.12): the actuation time of one apply outcome. madvd applies after planning,
    /// so the time comes back with the apply report; [`QuotaState::set_effective_quota`]
    /// turns it into the throughput of the time quota.
    pub fn charge_time(&mut self, elapsed_ns: u64) {
        self.total_charged_ns = self.total_charged_ns.saturating_add(elapsed_ns);
    }
}

pub(crate) use engine::kernel::host::align_down;

/// The bounds of the goal-tuned quota (`esz_bp`) of a scheme with a `refault_rate` goal, or
/// `None` for the kernel's unbounded loop. madvd's departure from
/// `damos_set_effective_quota()` (core.c 6.12), for the refault guard only: the goal's part
/// starts at the ceiling the time and size quotas allow (nothing is known to come back
/// before anything was paged out, so the guard does not start the kernel's ramp from one
/// byte), never grows above that ceiling (the kernel's keeps doubling while the score is
/// low, so a guard that then sees refaults at 1.5× its target would take as many windows to
/// come down as it spent growing), and never falls under one region (`DAMON_MIN_REGION`,
/// what the time quota gives at least: the way back is counted from there). The PSI and
/// memory goals keep the kernel's rule.
pub fn guard_bounds(
    spec: &QuotaSpec,
    by_time: Option<u64>,
    min_region_sz: u64,
) -> Option<(u64, u64)> {
    if !spec.goals.iter().any(|g| g.metric.is_refault_rate()) {
        return None;
    }
    let size = (spec.size != 0).then_some(spec.size);
    let ceiling = match (size, by_time) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return None,
    };
    let bp = |b: u64| b.saturating_mul(10_000);
    Some((bp(min_region_sz.max(1)), bp(ceiling.max(min_region_sz))))
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
        q.set_effective_quota(&spec(0, 128 << 20, 0), None, 4096);
        assert_eq!(q.esz, 128 << 20);
    }

    #[test]
    fn effective_quota_from_throughput() {
        let mut q = QuotaState::default();
        // No history: PAGE_SIZE * 1024 bytes/ms; 10 ms -> 40 MiB, under the 128 MiB size quota.
        q.set_effective_quota(&spec(10_000, 128 << 20, 0), None, 4096);
        assert_eq!(q.esz, 40 << 20);
        // 1 GiB charged in 2 s = 536870 bytes/ms (mult_frac rounds down) -> 5368700 bytes per 10 ms.
        q.total_charged_sz = 1 << 30;
        q.total_charged_ns = 2_000_000_000;
        q.set_effective_quota(&spec(10_000, 128 << 20, 0), None, 4096);
        assert_eq!(q.esz, 536_870 * 10);
        // The size quota caps it.
        q.set_effective_quota(&spec(10_000, 1 << 20, 0), None, 4096);
        assert_eq!(q.esz, 1 << 20);
        // Never below DAMON_MIN_REGION.
        q.total_charged_sz = 1;
        q.total_charged_ns = u64::MAX;
        q.set_effective_quota(&spec(10_000, 0, 0), None, 4096);
        assert_eq!(q.esz, 4096);
    }

    #[test]
    fn effective_quota_from_goals() {
        let mut q = QuotaState::default();
        let s = spec(0, 0, 1);
        // esz_bp starts at max(0, 10000); a score of 0 doubles it each window.
        q.set_effective_quota(&s, Some(0), 4096);
        assert_eq!((q.esz_bp, q.esz), (20_000, 2));
        q.set_effective_quota(&s, Some(0), 4096);
        assert_eq!((q.esz_bp, q.esz), (40_000, 4));
        // Over-achieving halves it, never below 10000 bp.
        q.set_effective_quota(&s, Some(15_000), 4096);
        assert_eq!(q.esz_bp, 20_000);
        q.set_effective_quota(&s, Some(30_000), 4096);
        assert_eq!(q.esz_bp, 10_000);
        // Unmeasurable this time: unchanged.
        q.esz_bp = 70_000;
        q.set_effective_quota(&s, None, 4096);
        assert_eq!(q.esz, 7);
        // With a time quota, the smaller of both.
        q.esz_bp = 1 << 50;
        q.set_effective_quota(&spec(10_000, 0, 1), Some(10_000), 4096);
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

    /// The split-to-fit rule of `damos_apply_scheme()` (core.c 6.12).
    #[test]
    fn fit_splits_to_what_is_left_in_whole_pages() {
        let mut q = QuotaState::default();
        // No quota: everything fits.
        assert_eq!(q.fit(u64::MAX, 4096), Some(u64::MAX));
        q.esz = 10 * 4096;
        assert_eq!(q.fit(10 * 4096, 4096), Some(10 * 4096));
        q.charged_sz = 3 * 4096 + 100;
        // 6 pages and 3996 bytes left: cut to 6 pages.
        assert_eq!(q.fit(10 * 4096, 4096), Some(6 * 4096));
        assert_eq!(q.fit(6 * 4096, 4096), Some(6 * 4096));
        // Less than a page left: nothing fits.
        q.charged_sz = 9 * 4096 + 1;
        assert_eq!(q.fit(4096, 4096), None);
    }

    /// Charging by size sets the resume point at `end + 1` when the quota runs out; by time,
    /// it feeds the throughput of the next effective quota.
    #[test]
    fn charge_by_size_and_by_time() {
        let t = TargetId(3);
        let mut q = QuotaState {
            esz: 8192,
            ..QuotaState::default()
        };
        q.charge(t, 0x1000, 4096);
        assert_eq!((q.charged_sz, q.resume), (4096, None));
        q.charge(t, 0x3000, 4096);
        assert!(q.exhausted());
        assert_eq!(q.resume, Some((t, 0x3001)));
        // No quota: never exhausted, no resume point.
        let mut q = QuotaState::default();
        q.charge(t, 0x1000, u64::MAX);
        q.charge(t, 0x2000, 1);
        assert_eq!((q.charged_sz, q.resume), (u64::MAX, None));

        let mut q = QuotaState::default();
        q.charge_time(1_000_000);
        q.charge_time(1_000_000);
        assert_eq!(q.total_charged_ns, 2_000_000);
        // 8 MiB charged in 2 ms: 4 MiB per ms, 10 ms -> 40 MiB.
        q.total_charged_sz = 8 << 20;
        q.set_effective_quota(&spec(10_000, 0, 0), None, 4096);
        assert_eq!(q.esz, 40 << 20);
    }

    /// A refund lowers the charge (never below zero) and reopens an exhausted window;
    /// a rewind moves the resume point back to the piece the pace held back.
    #[test]
    fn refund_gives_back_what_was_not_advised() {
        let t = TargetId(3);
        let mut q = QuotaState {
            esz: 8 * 4096,
            ..QuotaState::default()
        };
        q.charge(t, 0x8000, 8 * 4096);
        assert!(q.exhausted());
        q.refund(3 * 4096, None);
        assert_eq!(q.charged_sz, 5 * 4096);
        assert!(!q.exhausted());
        assert_eq!(q.resume, Some((t, 0x8001)));
        q.refund(u64::MAX, Some((t, 0x2000)));
        assert_eq!((q.charged_sz, q.resume), (0, Some((t, 0x2000))));
        // The next window's throughput counts only what stayed charged.
        q.charge(t, 0x3000, 4096);
        q.start_window(1);
        assert_eq!(q.total_charged_sz, 4096);
    }

    /// `damos_skip_charged_region()` as of 6.12.
    #[test]
    fn skip_charged_resumes_where_the_last_window_stopped() {
        let (t, other) = (TargetId(1), TargetId(2));
        let page = 4096;
        let at = |from| QuotaState {
            resume: Some((t, from)),
            ..QuotaState::default()
        };
        // No resume point: start at the region's start.
        assert_eq!(
            QuotaState::default().skip_charged(t, 0, page, false, page),
            Some(0)
        );
        // Other targets and the target's last region are skipped; the last region clears it.
        let mut q = at(2 * page + 1);
        assert_eq!(q.skip_charged(other, 0, page, false, page), None);
        assert_eq!(q.skip_charged(t, 0, page, false, page), None);
        assert!(q.resume.is_some());
        assert_eq!(q.skip_charged(t, 9 * page, 10 * page, true, page), None);
        assert_eq!(q.resume, None);
        // The point inside a region: enter it aligned down, at least one page in; clears it.
        let mut q = at(2 * page + 1);
        assert_eq!(q.skip_charged(t, 0, 4 * page, false, page), Some(2 * page));
        assert_eq!(q.resume, None);
        let mut q = at(2 * page + 1);
        assert_eq!(
            q.skip_charged(t, 2 * page, 4 * page, false, page),
            Some(3 * page)
        );
        // ... unless the region is one page: skipped, the point kept.
        let mut q = at(2 * page + 1);
        assert_eq!(q.skip_charged(t, 2 * page, 3 * page, false, page), None);
        assert!(q.resume.is_some());
        // A target that is gone drops the point.
        let mut q = at(1);
        q.fix_stale_resume(|x| x == other);
        assert_eq!(q.resume, None);
        let mut q = at(1);
        q.fix_stale_resume(|x| x == t);
        assert!(q.resume.is_some());
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
