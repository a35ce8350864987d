//! Monitoring intervals auto-tuning (`damon_attrs.intervals_goal`), ported from
//! `mm/damon/core.c` of **Linux 6.15** (`kdamond_tune_intervals()`,
//! `damon_get_intervals_adaptation_bp()`, `damon_get_intervals_score()`, and the feedback loop
//! they reuse, `damon_feed_loop_next_input()`), checked against mainline core.c as of
//! 2026-12 (which adds only the zero-target guard in the score, ported here too).
//!
//! Pure: the aggregated regions and the current attributes in, the next attributes out.
//! [`Tuner`] holds the goal and the kernel's two counters (`attrs.aggr_samples`,
//! `ctx->next_intervals_tune_sis`); the monitor (`Monitor::set_intervals_goal`,
//! `monitor/set_attrs.rs`) calls it at every aggregation boundary and applies what it returns
//! through its `damon_set_attrs()`.
//!
//! The rule, every `aggrs` aggregations, on the regions just aggregated (before the reset):
//! - score = Σ size × `nr_accesses` / (Σ size × `aggr_samples` × `access_bp` / 10 000), in
//!   basis points of the goal;
//! - adaptation = `damon_feed_loop_next_input(10⁸, score) / 10 000`, which lies in 1..=20 000
//!   bp; a value at or below 10 000 is mapped to `5000 + adaptation / 2`, so the interval never
//!   shrinks by more than half in one step (and at most doubles);
//! - sample = clamp(sample × adaptation / 10 000, `min_sample_us`, `max_sample_us`), and the
//!   aggregation interval = sample × `aggr_samples`: the ratio of the two stays what the user
//!   set, and so `max_nr_accesses` stays the same.
//!
//! Too few accesses seen (score below the goal) lengthen the sampling interval: a page touched
//! now and then is more likely to be found accessed in a longer interval. madvd's `Unknown`
//! answers do not push it: `nr_accesses` is read after `finalize_unknown`, which scales each
//! region's count from its known samples, so an unanswered sample counts at the region's known
//! rate rather than as "not accessed".

use crate::attrs::{Attrs, AttrsError, IntervalsGoal};
use crate::region::Region;

/// `damon_feed_loop_next_input()` (mm/damon/core.c, 6.12 and 6.15 alike): the next input for
/// a score whose goal is 10 000, `max(last × (2 − score/10000), 10000)` in integers,
/// saturating. Shared with the quota goals of the `schemes` crate.
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

/// `damon_get_intervals_score()` (mm/damon/core.c, 6.15; mainline's guard against a zero
/// target): the observed access events (bytes × accesses) over the goal's share of the
/// possible ones, in basis points (10 000 = on goal). Computed in 128 bits where the kernel
/// uses `unsigned long`.
pub fn intervals_score<'a>(
    regions: impl IntoIterator<Item = &'a Region>,
    aggr_samples: u64,
    access_bp: u32,
) -> u64 {
    let (mut max_events, mut events) = (0u128, 0u128);
    for r in regions {
        let sz = r.size() as u128;
        max_events += sz * aggr_samples as u128;
        events += sz * r.nr_accesses as u128;
    }
    let target = (max_events * access_bp as u128 / 10_000).max(1);
    (events * 10_000 / target).min(u64::MAX as u128) as u64
}

/// `damon_get_intervals_adaptation_bp()` (mm/damon/core.c, 6.15): the factor, in basis
/// points, to apply to the sampling interval for a score.
pub fn intervals_adaptation_bp(score_bp: u64) -> u64 {
    let adaptation_bp = feed_loop_next_input(100_000_000, score_bp) / 10_000;
    // "adaptation_bp ranges from 1 to 20,000. Avoid too rapid reduction of the intervals by
    // rescaling [1,10,000] to [5000, 10,000]."
    if adaptation_bp <= 10_000 {
        5_000 + adaptation_bp / 2
    } else {
        adaptation_bp
    }
}

/// `kdamond_tune_intervals()` (mm/damon/core.c, 6.15) as a pure function: the attributes
/// after one tuning step, or `None` when they stay as they are (the kernel returns early on an
/// adaptation of exactly 10 000 bp; madvd also skips a step that the clamp turns into no
/// change, where the kernel would call `damon_set_attrs()` with the same values).
pub fn tune_intervals(
    attrs: &Attrs,
    goal: &IntervalsGoal,
    aggr_samples: u64,
    score_bp: u64,
) -> Option<Attrs> {
    let adaptation_bp = intervals_adaptation_bp(score_bp);
    if adaptation_bp == 10_000 {
        return None;
    }
    let scaled = (attrs.sample_us as u128 * adaptation_bp as u128 / 10_000) as u64;
    let sample_us = scaled.min(goal.max_sample_us).max(goal.min_sample_us);
    let next = Attrs {
        sample_us,
        aggr_us: sample_us.saturating_mul(aggr_samples),
        ..*attrs
    };
    (next != *attrs).then_some(next)
}

/// The tuning state of one monitor: the goal and the kernel's counters. See the module
/// documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuner {
    goal: IntervalsGoal,
    /// `attrs.aggr_samples` (6.15): aggregation / sampling interval as last set from outside;
    /// tuning keeps it.
    aggr_samples: u64,
    /// `ctx->next_intervals_tune_sis`: the sampling-interval count of the next tuning.
    next_tune_sis: u64,
}

impl Tuner {
    /// Tuning toward `goal` for a monitor at `attrs` whose next aggregation ends at sampling
    /// interval `next_aggr_sis`: the first tuning comes at the end of the `aggrs`-th
    /// aggregation from now (at start, `next_aggregation_sis × aggrs`, as
    /// `kdamond_init_ctx()` sets it).
    pub fn new(goal: IntervalsGoal, attrs: &Attrs, next_aggr_sis: u64) -> Result<Self, AttrsError> {
        goal.validate(attrs)?;
        let aggr_samples = aggr_samples_of(attrs);
        Ok(Self {
            goal,
            aggr_samples,
            next_tune_sis: next_aggr_sis + aggr_samples * (goal.aggrs as u64 - 1),
        })
    }

    pub fn goal(&self) -> IntervalsGoal {
        self.goal
    }

    /// The aggregation / sampling ratio tuning keeps.
    pub fn aggr_samples(&self) -> u64 {
        self.aggr_samples
    }

    /// Attributes set from outside (`damon_set_attrs()` from a caller that leaves
    /// `aggr_samples` unset): the ratio to keep is theirs from now on.
    pub fn attrs_set(&mut self, attrs: &Attrs) {
        self.aggr_samples = aggr_samples_of(attrs);
    }

    /// Change the bounds the sampling interval is kept in (a CPU budget raising the minimum,
    /// say). `sample_us` is the current sampling interval; returns it clamped into the new
    /// bounds (the caller applies it when it differs).
    pub fn set_bounds(
        &mut self,
        min_us: u64,
        max_us: u64,
        sample_us: u64,
    ) -> Result<u64, AttrsError> {
        let goal = IntervalsGoal {
            min_sample_us: min_us,
            max_sample_us: max_us,
            ..self.goal
        };
        let clamped = sample_us.clamp(min_us.min(max_us), max_us);
        let probe = Attrs {
            sample_us: clamped,
            ..Attrs::default()
        };
        goal.validate(&probe)?;
        self.goal = goal;
        Ok(clamped)
    }

    /// At an aggregation boundary (`passed_sis` sampling intervals checked): when a tuning is
    /// due, the attributes to change to (`None`: none due, or no change). `regions` are the
    /// regions just aggregated, before the reset. Advances the schedule by `aggr_samples ×
    /// aggrs`, as `kdamond_fn()` does before calling `kdamond_tune_intervals()`.
    pub fn at_aggregation<'a>(
        &mut self,
        passed_sis: u64,
        attrs: &Attrs,
        regions: impl IntoIterator<Item = &'a Region>,
    ) -> Option<Attrs> {
        if passed_sis < self.next_tune_sis {
            return None;
        }
        self.next_tune_sis += self.aggr_samples * self.goal.aggrs as u64;
        let score = intervals_score(regions, self.aggr_samples, self.goal.access_bp);
        tune_intervals(attrs, &self.goal, self.aggr_samples, score)
    }
}

/// `attrs->aggr_samples = attrs->aggr_interval / sample_interval` (`damon_set_attrs()`, 6.15).
fn aggr_samples_of(attrs: &Attrs) -> u64 {
    (attrs.aggr_us / attrs.sample_us.max(1)).max(1)
}

#[cfg(test)]
mod tests;
