//! Changing a running monitor's attributes: `damon_set_attrs()` (mm/damon/core.c) and the
//! interval auto-tuning hook that calls it every `aggrs` aggregations (`kdamond_fn()`, 6.15).
//!
//! The rescale rule (`damon_update_monitoring_results()`): every region's `age` is converted
//! by the ratio of the aggregation intervals; its access counts through the access ratio. A
//! change mid-aggregation — which is every change between two steps, since madvd resets the
//! aggregation inside the step that ends it — drops what the aggregation gathered so far,
//! `Unknown` answers and known ones alike, and restarts it a full new interval from now from
//! the converted `last_nr_accesses` ([`super::core::update_monitoring_result`] has the rule).
//!
//! madvd differs from the kernel in one place, the ops update: `damon_set_attrs()` sets the
//! next ops update a full `ops_update_interval` after the change, so a kernel that tunes its
//! intervals every few aggregations postpones the vaddr ops update (the re-read of the
//! mappings) for as long as tuning keeps changing them. madvd keeps the update due at the
//! same time when `ops_update_us` is unchanged (the remaining sampling intervals are
//! converted to the new sampling interval), and schedules a full new interval only when
//! `ops_update_us` itself changes.

use super::tune::Tuner;
use super::Monitor;
use crate::attrs::{Attrs, AttrsError, IntervalsGoal};
use crate::snapshot::Snapshot;

impl Monitor {
    /// Change the attributes while running, as `damon_set_attrs()` does (mm/damon/core.c,
    /// 6.15): validate (with the intervals goal, if tuning is on: the sampling interval must
    /// stay inside its bounds, `damon_valid_intervals_goal()`); the next aggregation is due a
    /// full new interval from now; every region's statistics are converted (see the module
    /// documentation). The aggregation / sampling ratio given here is the one tuning keeps
    /// from now on.
    pub fn set_attrs(&mut self, attrs: Attrs) -> Result<(), AttrsError> {
        attrs.validate()?;
        if let Some(t) = &self.tuner {
            t.goal().validate(&attrs)?;
        }
        self.change_attrs(attrs);
        if let Some(t) = &mut self.tuner {
            t.attrs_set(&attrs);
        }
        Ok(())
    }

    /// Turn interval auto-tuning on (`Some`) or off (`None`). The goal is checked against the
    /// current attributes (`damon_valid_intervals_goal()`); the first tuning comes at the end
    /// of the `aggrs`-th aggregation from now.
    pub fn set_intervals_goal(&mut self, goal: Option<IntervalsGoal>) -> Result<(), AttrsError> {
        self.tuner = goal
            .map(|g| Tuner::new(g, &self.attrs, self.next_aggr_sis))
            .transpose()?;
        Ok(())
    }

    /// The intervals goal in force (`None`: tuning is off). Its bounds may have been changed
    /// by [`Monitor::set_intervals_bounds`]; the tuned intervals themselves are
    /// [`Monitor::attrs`] (and every snapshot's `attrs`).
    pub fn intervals_goal(&self) -> Option<IntervalsGoal> {
        self.tuner.map(|t| t.goal())
    }

    /// Change the range tuning keeps the sampling interval in, while running (for a CPU
    /// budget). When the current sampling interval falls outside, it is moved to the nearest
    /// bound at once, the aggregation interval with it (same ratio), through the same rescale
    /// as a tuning step. An error (no tuning on, or bad bounds) changes nothing.
    pub fn set_intervals_bounds(&mut self, min_us: u64, max_us: u64) -> Result<(), AttrsError> {
        let Some(t) = &mut self.tuner else {
            return Err(AttrsError::NoIntervalsGoal);
        };
        let sample_us = t.set_bounds(min_us, max_us, self.attrs.sample_us)?;
        if sample_us != self.attrs.sample_us {
            let next = Attrs {
                sample_us,
                aggr_us: sample_us.saturating_mul(t.aggr_samples()),
                ..self.attrs
            };
            self.change_attrs(next);
        }
        Ok(())
    }

    /// Called at the end of each aggregation: a tuning step when one is due
    /// ([`Tuner::at_aggregation`]), applied as the kernel applies it, keeping the ratio.
    pub(super) fn tune_after_aggregation(&mut self, aggregated: &Snapshot) {
        let Some(t) = &mut self.tuner else { return };
        let regions = aggregated.targets.iter().flat_map(|t| t.regions.iter());
        if let Some(next) = t.at_aggregation(self.passed_sis, &self.attrs, regions) {
            tracing::debug!(
                sample_us = next.sample_us,
                aggr_us = next.aggr_us,
                "monitoring intervals tuned"
            );
            self.change_attrs(next);
        }
    }

    /// The body of `damon_set_attrs()` on valid attributes.
    fn change_attrs(&mut self, attrs: Attrs) {
        let old = self.attrs;
        let new_aggr_sis = (attrs.aggr_us / attrs.sample_us).max(1);
        // damon_set_attrs(): "aggregating = passed_sample_intervals < next_aggregation_sis".
        // Between madvd's steps it always is (the step that ends an aggregation also resets
        // it and moves next_aggr_sis on).
        let aggregating = self.passed_sis < self.next_aggr_sis;
        self.next_aggr_sis = self.passed_sis + new_aggr_sis;
        self.next_update_sis = if attrs.ops_update_us == old.ops_update_us {
            let left_us = self.next_update_sis.saturating_sub(self.passed_sis) * old.sample_us;
            self.passed_sis + (left_us / attrs.sample_us).max(1)
        } else {
            self.passed_sis + (attrs.ops_update_us / attrs.sample_us).max(1)
        };
        for t in self.targets.iter_mut() {
            for r in t.regions.iter_mut() {
                super::core::update_monitoring_result(r, &old, &attrs, aggregating);
            }
        }
        self.samples_in_aggr = 0;
        self.attrs = attrs;
        self.refresh_sz_limit();
    }
}
