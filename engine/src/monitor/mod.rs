//! The monitoring core: DAMON's adaptive regions (`mm/damon/core.c`, Linux 6.12.117) as a
//! step function over a clock the caller drives.
//!
//! - [`core`]: access rate and moving sum, merge with aging, split, reset, size limit;
//! - [`init`]: three-region init, even split, and the reconcile of `damon_set_regions`;
//! - [`tune`]: the monitoring intervals auto-tuning (Linux 6.15's `intervals_goal`), pure;
//!   `set_attrs.rs` changes the attributes of a running monitor (`damon_set_attrs()`) and
//!   calls the tuning at each aggregation boundary.
//!
//! Each [`Monitor::step`] is one sampling interval, in the kernel's order (`kdamond_fn`,
//! mm/damon/core.c 6.12.117): check the samples prepared by the previous step and update the
//! access rates; at an aggregation boundary merge (with aging), hand out the aggregated
//! [`Snapshot`], reset, split; at an update boundary reconcile every target with its fresh
//! monitoring ranges; then prepare the next samples.
//!
//! madvd's additions to the kernel's rules, each documented where it lives:
//! - `Unknown` answers ([`update_access_unknown`], [`finalize_unknown`]);
//! - a sample budget (`AccessCheck::max_samples_per_sec`): regions are sampled round-robin
//!   by address from a per-target cursor, so the regions not sampled for the longest time
//!   come first; the others answer `Unknown` for that interval;
//! - targets with fewer than three mappings ([`monitoring_ranges`]);
//! - at least `min_nr_regions` regions after init and after each merge
//!   ([`split_to_min_regions`]; the kernel's size limit alone does not guarantee it);
//! - the split's `last_nr_regions` is per monitor, not a global.
//!
//! [`Monitor::set_departures`] turns the first three off ([`Departures::Kernel`]: the
//! kernel's rules exactly, to show what the kernel would report), and
//! [`Monitor::set_merge_rounding`] makes merges round to nearest (not the kernel's rule).
//!
//! - `rules`: [`Departures`]; `sample`: which regions are sampled and how the answers feed
//!   the rates; `wss`: working-set size estimates from a snapshot.

pub mod core;
pub mod init;
mod rules;
mod sample;
mod set_attrs;
#[cfg(test)]
mod tests;
pub mod tune;
mod wss;

pub use self::core::{
    accesses_bp_to_nr_accesses, finalize_unknown, kernel_counts, merge_regions, merge_regions_of,
    merge_regions_of_with, merge_regions_with, merge_two_regions, merge_two_regions_with,
    moving_sum, mult_frac, nr_accesses_to_accesses_bp, region_sz_limit, reset_aggregated,
    split_region_at, split_regions, split_regions_of, split_to_min_regions, update_access_rate,
    update_access_unknown, update_monitoring_result, AgeRule, MergeRounding, MergeRules,
};
pub use self::init::{
    evenly_split, init_regions, monitoring_ranges, ranges_for, set_regions, three_regions,
    user_ranges, EvenlySplitError, ThreeRegionsError,
};

pub use self::rules::Departures;
pub use self::wss::{wss_bytes, wss_weighted_bytes};

use crate::access::{Access, AccessCheck, AccessError, SampleReq};
use crate::attrs::{Attrs, AttrsError};
use crate::region::{AddrRange, Region, TargetId};
use crate::report::ApplyReport;
use crate::snapshot::{Snapshot, TargetSnapshot};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use sample::{apply_answers, choose_samples};

/// What one step produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// The aggregated snapshot, at an aggregation boundary (after merge, before reset).
    pub snapshot: Option<Snapshot>,
    /// Targets dropped this step because their access check said they are gone.
    pub gone: Vec<TargetId>,
}

#[derive(Debug)]
struct TargetState {
    id: TargetId,
    regions: Vec<Region>,
    /// Regions built from the target's ranges at least once.
    initialized: bool,
    /// The ranges the regions cover (the last three regions computed).
    ranges: Vec<AddrRange>,
    samples: Vec<SampleReq>,
    /// Region index of each sample, valid while `layout_gen == prepared_gen`.
    sample_region: Vec<u32>,
    answers: Vec<Access>,
    per_region: Vec<Access>,
    prepared: bool,
    prepared_gen: u64,
    layout_gen: u64,
    /// An error other than TargetGone was logged for this target already.
    error_logged: bool,
    /// Ranges advised since the last prepare (told to the check before the next prepare).
    advised: Vec<AddrRange>,
    /// Round-robin cursor (an address) for budgeted sampling.
    cursor: u64,
}

impl TargetState {
    fn new(id: TargetId) -> Self {
        Self {
            id,
            regions: Vec::new(),
            initialized: false,
            ranges: Vec::new(),
            samples: Vec::new(),
            sample_region: Vec::new(),
            answers: Vec::new(),
            per_region: Vec::new(),
            prepared: false,
            prepared_gen: 0,
            layout_gen: 0,
            error_logged: false,
            advised: Vec::new(),
            cursor: 0,
        }
    }
}

/// The monitoring core for any number of targets. See the module documentation.
#[derive(Debug)]
pub struct Monitor {
    attrs: Attrs,
    rng: SmallRng,
    targets: Vec<TargetState>,
    /// `ctx->passed_sample_intervals`: sampling intervals checked so far.
    passed_sis: u64,
    next_aggr_sis: u64,
    next_update_sis: u64,
    /// Sampling intervals checked in the current aggregation.
    samples_in_aggr: u32,
    sz_limit: u64,
    /// `kdamond_split_regions()`'s static `last_nr_regions`.
    last_nr_regions: usize,
    aggregations: u64,
    last_now_us: u64,
    budget_carry: f64,
    /// Said once that the sample budget is below the region count ([`sample_budget_short`]).
    warned_sample_budget: bool,
    /// Interval auto-tuning, when on ([`Monitor::set_intervals_goal`]).
    tuner: Option<tune::Tuner>,
    departures: Departures,
    merge_rounding: MergeRounding,
    age_rule: AgeRule,
}

impl Monitor {
    /// A monitor with validated attributes and a seeded RNG (sample addresses, split points).
    pub fn new(attrs: Attrs, seed: u64) -> Result<Self, AttrsError> {
        attrs.validate()?;
        Ok(Self {
            attrs,
            rng: SmallRng::seed_from_u64(seed),
            targets: Vec::new(),
            passed_sis: 0,
            next_aggr_sis: attrs.aggr_us / attrs.sample_us,
            next_update_sis: (attrs.ops_update_us / attrs.sample_us).max(1),
            samples_in_aggr: 0,
            sz_limit: attrs.min_region_sz,
            last_nr_regions: 0,
            aggregations: 0,
            last_now_us: 0,
            budget_carry: 0.0,
            warned_sample_budget: false,
            tuner: None,
            departures: Departures::default(),
            merge_rounding: MergeRounding::default(),
            age_rule: AgeRule::default(),
        })
    }

    /// madvd's rules or the kernel's exactly ([`Departures`]); takes effect from the next
    /// step.
    pub fn set_departures(&mut self, departures: Departures) {
        self.departures = departures;
    }

    pub fn departures(&self) -> Departures {
        self.departures
    }

    /// How merges round `nr_accesses` ([`MergeRounding`]; the kernel's `Floor` by default).
    pub fn set_merge_rounding(&mut self, rounding: MergeRounding) {
        self.merge_rounding = rounding;
    }

    pub fn merge_rounding(&self) -> MergeRounding {
        self.merge_rounding
    }

    /// When a region's age restarts ([`AgeRule`]; 6.12's rule by default).
    pub fn set_age_rule(&mut self, rule: AgeRule) {
        self.age_rule = rule;
    }

    pub fn age_rule(&self) -> AgeRule {
        self.age_rule
    }

    pub fn attrs(&self) -> &Attrs {
        &self.attrs
    }

    /// Add a target; its regions are built from `ops.target_ranges` at the next step.
    /// Adding a target twice is a no-op.
    pub fn add_target(&mut self, id: TargetId) {
        if !self.targets.iter().any(|t| t.id == id) {
            self.targets.push(TargetState::new(id));
        }
    }

    pub fn remove_target(&mut self, id: TargetId) {
        self.targets.retain(|t| t.id != id);
        self.refresh_sz_limit();
    }

    pub fn target_ids(&self) -> Vec<TargetId> {
        self.targets.iter().map(|t| t.id).collect()
    }

    pub fn regions(&self, id: TargetId) -> Option<&[Region]> {
        self.targets
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.regions.as_slice())
    }

    /// The monitoring ranges (three regions, or fewer: [`monitoring_ranges`]) the
    /// target's regions were last reconciled with.
    pub fn ranges(&self, id: TargetId) -> Option<&[AddrRange]> {
        self.targets
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.ranges.as_slice())
    }

    /// Total number of regions over all targets.
    pub fn nr_regions(&self) -> usize {
        self.targets.iter().map(|t| t.regions.len()).sum()
    }

    /// `damon_region_sz_limit()` as last computed (at init and at each update interval).
    pub fn sz_limit(&self) -> u64 {
        self.sz_limit
    }

    /// Completed aggregation intervals.
    pub fn aggregations(&self) -> u64 {
        self.aggregations
    }

    /// Sampling intervals checked so far.
    pub fn passed_sample_intervals(&self) -> u64 {
        self.passed_sis
    }

    /// True when the next step ends an aggregation interval.
    pub fn next_step_aggregates(&self) -> bool {
        self.targets.iter().any(|t| t.prepared) && self.passed_sis + 1 >= self.next_aggr_sis
    }

    /// The monitor time (µs) at which the next step is due: the last step's `now_us` plus
    /// the sampling interval. The caller sleeps `next_step_at_us() - now`.
    pub fn next_step_at_us(&self) -> u64 {
        self.last_now_us + self.attrs.sample_us
    }

    /// The sampling interval, µs.
    pub fn step_interval_us(&self) -> u64 {
        self.attrs.sample_us
    }

    fn refresh_sz_limit(&mut self) {
        self.sz_limit = region_sz_limit(
            self.targets.iter().map(|t| t.regions.as_slice()),
            self.attrs.min_nr_regions,
            self.attrs.min_region_sz,
        );
    }

    /// One sampling interval at monitor time `now_us`. See the module documentation.
    pub fn step(&mut self, now_us: u64, ops: &mut dyn AccessCheck) -> StepOutput {
        let mut out = StepOutput::default();
        self.last_now_us = now_us;
        let len_window = self.attrs.max_nr_accesses();

        // 0. Tell the check which ranges were advised since the last step (apply_report):
        // its pending samples there, and its next probes, would measure the advice.
        for t in self.targets.iter_mut().filter(|t| !t.advised.is_empty()) {
            ops.note_advised(t.id, &t.advised);
            t.advised.clear();
        }

        // 1. Check the samples the previous step prepared (kdamond_fn: ops.check_accesses).
        let any_prepared = self.targets.iter().any(|t| t.prepared);
        if any_prepared {
            for t in self.targets.iter_mut() {
                if !t.prepared {
                    continue;
                }
                t.prepared = false;
                t.answers.clear();
                t.answers.resize(t.samples.len(), Access::Unknown);
                match ops.check(t.id, &t.samples, &mut t.answers) {
                    Ok(()) => {}
                    Err(AccessError::TargetGone(_)) => {
                        out.gone.push(t.id);
                        continue;
                    }
                    Err(e) => {
                        log_once(t, &e);
                        t.answers.iter_mut().for_each(|a| *a = Access::Unknown);
                    }
                }
                apply_answers(t, len_window, self.departures);
            }
            self.drop_gone(&out.gone);
            self.passed_sis += 1;
            self.samples_in_aggr += 1;

            // 2. Aggregation boundary: merge (+ age), snapshot, reset, split.
            if self.passed_sis >= self.next_aggr_sis {
                out.snapshot = Some(self.aggregate(now_us));
            }

            // 3. Update boundary: reconcile with the fresh three regions (ops.update).
            if self.passed_sis >= self.next_update_sis {
                self.next_update_sis += (self.attrs.ops_update_us / self.attrs.sample_us).max(1);
                self.update(ops, &mut out.gone);
            }
        }

        // 4. Build regions of new targets (ops.init: __damon_va_init_regions).
        if self.targets.iter().any(|t| !t.initialized) {
            let mut built = false;
            for t in self.targets.iter_mut().filter(|t| !t.initialized) {
                match ops.target_ranges(t.id) {
                    Ok(vmas) => {
                        t.ranges =
                            ranges_for(ops.ranges_are_user_set(), &vmas, self.attrs.min_region_sz);
                        t.regions = init_regions(
                            &t.ranges,
                            self.attrs.min_nr_regions,
                            self.attrs.min_region_sz,
                        );
                        t.initialized = true;
                        t.layout_gen += 1;
                        built = true;
                    }
                    Err(AccessError::TargetGone(_)) => out.gone.push(t.id),
                    Err(e) => log_once(t, &e),
                }
            }
            self.drop_gone(&out.gone);
            if built {
                self.refresh_sz_limit();
            }
            if built && self.departures == Departures::Madvd {
                let mut lists: Vec<&mut Vec<Region>> =
                    self.targets.iter_mut().map(|t| &mut t.regions).collect();
                split_to_min_regions(
                    &mut lists,
                    self.attrs.min_nr_regions,
                    self.attrs.min_region_sz,
                );
            }
        }

        // 5. Prepare the next samples (ops.prepare_access_checks).
        self.prepare(ops, &mut out.gone);
        out
    }

    fn drop_gone(&mut self, gone: &[TargetId]) {
        if gone.is_empty() {
            return;
        }
        let before = self.targets.len();
        self.targets.retain(|t| {
            let is_gone = gone.contains(&t.id);
            if is_gone {
                tracing::info!(target_id = %t.id, "target is gone; dropped from monitoring");
            }
            !is_gone
        });
        if self.targets.len() != before {
            self.refresh_sz_limit();
        }
    }

    fn aggregate(&mut self, now_us: u64) -> Snapshot {
        let nr_samples = self.samples_in_aggr;
        let mut max_nr = 0;
        for t in self.targets.iter_mut() {
            max_nr = max_nr.max(match self.departures {
                Departures::Madvd => finalize_unknown(&mut t.regions, nr_samples),
                Departures::Kernel => kernel_counts(&mut t.regions),
            });
        }
        {
            let mut lists: Vec<&mut Vec<Region>> =
                self.targets.iter_mut().map(|t| &mut t.regions).collect();
            merge_regions_with(
                &mut lists,
                max_nr / 10,
                self.sz_limit,
                self.attrs.max_nr_regions,
                self.attrs.max_nr_accesses(),
                MergeRules {
                    rounding: self.merge_rounding,
                    age: self.age_rule,
                },
            );
            if self.departures == Departures::Madvd {
                split_to_min_regions(
                    &mut lists,
                    self.attrs.min_nr_regions,
                    self.attrs.min_region_sz,
                );
            }
        }
        for t in self.targets.iter_mut() {
            for r in t.regions.iter_mut() {
                // At the boundary the moving sum equals nr_accesses * 10000 (the kernel's
                // merge sets it so; we normalise the unmerged ones against rounding).
                r.nr_accesses_bp = r.nr_accesses.saturating_mul(10_000);
            }
        }
        self.aggregations += 1;
        let snapshot = self.make_snapshot(now_us, true);
        for t in self.targets.iter_mut() {
            reset_aggregated(&mut t.regions);
        }
        {
            let mut lists: Vec<&mut Vec<Region>> =
                self.targets.iter_mut().map(|t| &mut t.regions).collect();
            split_regions(
                &mut lists,
                self.attrs.max_nr_regions,
                self.attrs.min_region_sz,
                &mut self.last_nr_regions,
                &mut self.rng,
            );
        }
        for t in self.targets.iter_mut() {
            t.layout_gen += 1;
        }
        self.next_aggr_sis += (self.attrs.aggr_us / self.attrs.sample_us).max(1);
        self.samples_in_aggr = 0;
        // kdamond_tune_intervals() on the regions just aggregated (the snapshot holds them
        // as they were before the reset).
        self.tune_after_aggregation(&snapshot);
        snapshot
    }

    fn update(&mut self, ops: &mut dyn AccessCheck, gone: &mut Vec<TargetId>) {
        for t in self.targets.iter_mut().filter(|t| t.initialized) {
            match ops.target_ranges(t.id) {
                Ok(vmas) => {
                    t.ranges =
                        ranges_for(ops.ranges_are_user_set(), &vmas, self.attrs.min_region_sz);
                    if t.regions.is_empty() {
                        // Nothing to keep: build as at init (evenly split), not one region
                        // per range as damon_set_regions on an empty list would.
                        t.regions = init_regions(
                            &t.ranges,
                            self.attrs.min_nr_regions,
                            self.attrs.min_region_sz,
                        );
                    } else {
                        set_regions(&mut t.regions, &t.ranges, self.attrs.min_region_sz);
                    }
                    t.layout_gen += 1;
                }
                Err(AccessError::TargetGone(_)) => gone.push(t.id),
                Err(e) => log_once(t, &e),
            }
        }
        self.drop_gone(gone);
        self.refresh_sz_limit();
    }

    fn prepare(&mut self, ops: &mut dyn AccessCheck, gone: &mut Vec<TargetId>) {
        let total: usize = self.nr_regions();
        // The sample budget of this interval, over all targets.
        let per_sec = match self.departures {
            Departures::Madvd => ops.max_samples_per_sec(),
            Departures::Kernel => None,
        };
        let budget = per_sec.map(|per_sec| {
            self.budget_carry += per_sec * self.attrs.sample_us as f64 / 1e6;
            self.budget_carry = self.budget_carry.min(total as f64 + 1.0);
            let b = self.budget_carry.floor();
            self.budget_carry -= b;
            b as usize
        });
        if let Some(per_sec) = per_sec {
            if !self.warned_sample_budget
                && self.aggregations >= 3
                && sample_budget_short(per_sec, self.attrs.aggr_us, total)
            {
                tracing::warn!(
                    "sample budget: {:.0} samples an aggregation for {total} regions: a region is sampled less than once an aggregation, and one with no known answer in an aggregation does not age, so idle memory comes of age later than its idle time; fewer regions (--min-regions, --max-regions) or a longer --aggr",
                    per_sec * self.attrs.aggr_us as f64 / 1e6
                );
                self.warned_sample_budget = true;
            }
        }
        let nr_targets = self.targets.len();
        let mut left = budget.unwrap_or(usize::MAX);
        let mut newly_gone = Vec::new();
        for (ti, t) in self.targets.iter_mut().enumerate() {
            let n = t.regions.len();
            let quota = match budget {
                None => n,
                Some(b) if total == 0 => b.min(n),
                Some(b) => {
                    // Proportional share; the last target takes what is left.
                    let share = if ti + 1 == nr_targets {
                        left
                    } else {
                        (b as u128 * n as u128 / total as u128) as usize
                    };
                    share.min(n).min(left)
                }
            };
            left = left.saturating_sub(quota);
            choose_samples(t, quota, self.attrs.min_region_sz, &mut self.rng);
            match ops.prepare(t.id, &mut t.samples) {
                Ok(()) => {
                    t.prepared = true;
                    t.prepared_gen = t.layout_gen;
                }
                Err(AccessError::TargetGone(_)) => newly_gone.push(t.id),
                Err(e) => {
                    log_once(t, &e);
                    // Still check next step: the check answers for what it can.
                    t.prepared = true;
                    t.prepared_gen = t.layout_gen;
                }
            }
        }
        if !newly_gone.is_empty() {
            self.drop_gone(&newly_gone);
            gone.extend(newly_gone);
        }
    }

    /// The current state mid-aggregation: `nr_accesses` is the raw count so far and
    /// `nr_accesses_bp` the moving sum (what schemes with short apply intervals match on).
    pub fn snapshot(&self, now_us: u64) -> Snapshot {
        self.make_snapshot(now_us, false)
    }

    fn make_snapshot(&self, now_us: u64, aggregated: bool) -> Snapshot {
        Snapshot {
            now_us,
            aggregation: self.aggregations,
            aggregated,
            attrs: self.attrs,
            targets: self
                .targets
                .iter()
                .map(|t| TargetSnapshot {
                    target: t.id,
                    regions: t.regions.clone(),
                })
                .collect(),
        }
    }

    /// The feedback from the actuator: reset `age` to 0 on exactly the regions covered by
    /// the requested ranges, whatever the advice returned, as `damos_apply_scheme()` does for
    /// a non-stat action (mm/damon/core.c 6.12.117: `r->age = 0` after `ops.apply_scheme()`,
    /// not only when it applied bytes). A region only partly covered is first split at the
    /// range boundary (bounds aligned outwards to the minimum region size), so no byte
    /// outside a requested range loses its age. The applied ranges (`bytes_applied > 0`) are
    /// also passed to the access check at the start of the next step, before it checks the
    /// pending samples (`AccessCheck::note_advised`). Outcomes the actuator skipped wholly
    /// (every byte not resident, or held back by the pace: [`RangeOutcome::wholly_skipped`])
    /// count as filtered and reset nothing; of a range the pace stopped part-way only the part
    /// before the stop is reset ([`RangeOutcome::reached`]).
    ///
    /// [`RangeOutcome::reached`]: crate::report::RangeOutcome::reached
    /// [`RangeOutcome::wholly_skipped`]: crate::report::RangeOutcome::wholly_skipped
    pub fn apply_report(&mut self, report: &ApplyReport) {
        let min = self.attrs.min_region_sz;
        for o in &report.outcomes {
            let Some(t) = self.targets.iter_mut().find(|t| t.id == o.target) else {
                continue;
            };
            if o.wholly_skipped() {
                // madvd's residency cut / pace (actuator::resident, actuator::pace): nothing
                // of the range was advised because none of it was resident (or the pace
                // held it back): filtered, not applied, so its regions keep their age.
                continue;
            }
            // The part the pace held back was never tried: it keeps its age, as a range the
            // quota did not reach does (`RangeOutcome::reached`).
            let reached = o.reached();
            let range = AddrRange::new(
                crate::kernel::host::align_down(reached.start, min),
                crate::kernel::host::align_up(reached.end, min),
            );
            if range.is_empty() {
                continue;
            }
            for cut in [range.start, range.end] {
                let idx = t.regions.partition_point(|r| r.end() <= cut);
                if idx < t.regions.len() {
                    let r = &t.regions[idx];
                    if r.start() < cut && cut < r.end() {
                        let sz = cut - r.start();
                        split_region_at(&mut t.regions, idx, sz);
                        t.layout_gen += 1;
                    }
                }
            }
            let from = t.regions.partition_point(|r| r.end() <= range.start);
            for r in t.regions[from..].iter_mut() {
                if r.start() >= range.end {
                    break;
                }
                r.age = 0;
                r.level_age = 0;
            }
            if o.bytes_applied > 0 {
                t.advised.push(range);
            }
        }
    }
}

/// Whether a sample budget of `per_sec` leaves some of `nr_regions` unsampled in every
/// aggregation of `aggr_us`: the round-robin (`sample::choose_samples`) then reaches each
/// region less than once an aggregation, and a region with no known answer keeps its count
/// and does not age (`core::finalize_unknown`): its age counts the aggregations it was
/// observed in, not its idle time (docs/performance.md, "Replay vs reality": 250 samples/s
/// at 1 s aggregations over ~500 regions left the cold set at ages 4-6 after 10).
pub fn sample_budget_short(per_sec: f64, aggr_us: u64, nr_regions: usize) -> bool {
    per_sec * aggr_us as f64 / 1e6 < nr_regions as f64
}

fn log_once(t: &mut TargetState, e: &AccessError) {
    if !t.error_logged {
        t.error_logged = true;
        tracing::warn!(target_id = %t.id, error = %e, "access check failed; its samples count as Unknown (logged once per target)");
    }
}
