//! Per-scheme statistics (`struct damos_stat`, include/linux/damon.h 6.12, plus the
//! activation state): plain values for the CLI and metrics.

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SchemeStats {
    pub name: String,
    pub action: String,
    /// Regions (pieces of regions) the scheme tried to apply to.
    pub nr_tried: u64,
    /// Bytes of them.
    pub sz_tried: u64,
    /// Apply outcomes with at least one byte applied.
    pub nr_applied: u64,
    /// Bytes the actuator reported applied (advised-total).
    pub sz_applied: u64,
    /// Of them, bytes the actuator read resident just before advising them
    /// (advised-resident; the residency cut, `engine::actuator::resident`).
    pub sz_resident: u64,
    /// Bytes tried but cut out as not resident (swapped out or never faulted in): not
    /// advised, refunded to the size quota.
    pub sz_not_resident: u64,
    /// Bytes tried but cut out as not known idle by page_idle just before advising (the idle
    /// cut, `engine::actuator::idle`, where page_idle is the access check: accessed since
    /// marked, or not marked long enough ago): not advised, refunded to the size quota.
    pub sz_not_idle: u64,
    /// `split` only: bytes tried but holding no huge page to split (small pages, already
    /// split, the huge zero page): not advised, refunded to the size quota
    /// (`engine::actuator::huge`).
    pub sz_not_huge: u64,
    /// `collapse` only: bytes tried but huge pages already (nothing to collapse): not
    /// advised, refunded to the size quota (`engine::actuator::huge`).
    pub sz_already_huge: u64,
    /// Charge windows that ended with the quota exhausted.
    pub qt_exceeds: u64,
    /// False while watermarks hold the scheme inactive.
    pub active: bool,
    /// Why the scheme is inactive (or why its goal could not be measured).
    pub inactive_reason: Option<String>,
    /// The effective size quota of the current window, bytes (0 = unlimited).
    pub effective_quota: u64,
    /// The last measured value of each quota goal.
    pub goal_values: Vec<u64>,
    /// With a `refault_rate` goal: bytes the scheme moved from memory to swap, and bytes of
    /// them the targets brought back, since the start (`schemes::refault`).
    pub paged_out_bytes: u64,
    pub refaulted_bytes: u64,
    /// Of `refaulted_bytes`, those that had come back before (the same memory cycling out
    /// and in: remembered for the goal's whole `window`).
    pub repeat_refaulted_bytes: u64,
    /// Of the refaulted bytes, those expected of lukewarm page-outs (the region's access
    /// frequency): not counted in the refault rate (`RefaultLedger::expect`).
    pub refaulted_expected_bytes: u64,
    /// Bytes the scheme learned are hot from its refaults, now (`schemes::learn`).
    pub learned_hot_bytes: u64,
    /// Bytes cut out of its advice as learned hot, since the start: not advised, not
    /// charged, counted as filtered.
    pub sz_learned_hot: u64,
}
