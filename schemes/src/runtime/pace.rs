//! What the schemes hand the actuator's page-out pace (`engine::actuator::pace`): a byte
//! rate and a time rate, both from the quotas of the page-out schemes active now.

use super::Schemes;
use crate::action::Action;

impl Schemes {
    /// The page-out pace for the actuator (`ApplyOpts::pace_bytes_per_s`), bytes per
    /// second: the effective size quotas of the active page-out schemes with a quota, each
    /// per its reset interval (so it follows the time quota's throughput estimate and the
    /// goals). `None` when no page-out scheme has a quota (unpaced).
    pub fn pace_bytes_per_s(&self) -> Option<u64> {
        self.pageout_rates(|esz, _| Some(esz))
    }

    /// The page-out time pace (`ApplyOpts::pace_time_ns_per_s`): ns of `process_madvise`
    /// time per second, the time quotas of the active page-out schemes that have one, each
    /// per its reset interval. With it the actuator holds its page-out calls to the time the
    /// quotas allow from the first call on, sizing them by the throughput it measures;
    /// without it, the first window's size quota comes from the kernel's initial throughput
    /// guess (`damos_set_effective_quota()`, mm/damon/core.c 6.12: `PAGE_SIZE * 1024` bytes
    /// per ms, 400 MiB for 100 ms) and can take most of a second of calls. `None` when no
    /// active page-out scheme has a time quota.
    pub fn pace_time_ns_per_s(&self) -> Option<u64> {
        self.pageout_rates(|_, time_us| (time_us > 0).then_some(time_us.saturating_mul(1000)))
    }

    /// Σ over the active page-out schemes with a quota of `per(esz, time_us)` per reset
    /// interval, per second.
    fn pageout_rates(&self, per: impl Fn(u64, u64) -> Option<u64>) -> Option<u64> {
        let mut total: Option<u64> = None;
        for (sp, st) in self.specs.iter().zip(&self.states) {
            if sp.action != Action::Pageout || !sp.quota.is_set() || st.quota.esz == 0 {
                continue;
            }
            if sp.watermarks.is_some() && !st.wmark.activated {
                continue;
            }
            let Some(amount) = per(st.quota.esz, sp.quota.time_us) else {
                continue;
            };
            let per_s = (amount as u128 * 1_000_000 / sp.quota.reset_interval_us.max(1) as u128)
                .min(u64::MAX as u128) as u64;
            total = Some(total.unwrap_or(0).saturating_add(per_s));
        }
        total
    }
}
