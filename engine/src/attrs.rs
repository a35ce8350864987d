//! Monitoring attributes: the kernel's `struct damon_attrs` plus the minimum region size.
//!
//! Defaults and validation follow `damon_new_ctx()` and `damon_set_attrs()` in
//! `mm/damon/core.c` (Linux 6.12 / 6.15): sampling 5 ms, aggregation 100 ms, ops update 60 s,
//! 10..=1000 regions; rejected: `min_nr_regions < 3`, `min_nr_regions > max_nr_regions`,
//! `sample_interval > aggr_interval`.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// Why a set of attributes was rejected. Each names the field and the values.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AttrsError {
    #[error("min_nr_regions is {0}, must be at least 3")]
    TooFewMinRegions(u32),
    #[error("min_nr_regions ({min}) is larger than max_nr_regions ({max})")]
    MinAboveMax { min: u32, max: u32 },
    #[error(
        "sample interval ({sample_us} us) is longer than the aggregation interval ({aggr_us} us)"
    )]
    SampleAboveAggr { sample_us: u64, aggr_us: u64 },
    #[error("sample interval must be greater than zero")]
    ZeroSample,
    #[error("min_region_sz must be a power of two, got {0}")]
    BadMinRegion(u64),
    #[error("intervals goal: access ratio is {0} bp, must be above 0 and at most 10000 bp (100%)")]
    GoalAccess(u32),
    #[error("intervals goal: aggrs must be at least 1")]
    GoalAggrs,
    #[error("interval auto-tuning is off: there are no sample interval bounds to change")]
    NoIntervalsGoal,
    #[error("intervals goal: min sample interval must be greater than zero")]
    GoalZeroMin,
    #[error(
        "intervals goal: min sample interval ({min_us} us) is longer than the max ({max_us} us)"
    )]
    GoalMinAboveMax { min_us: u64, max_us: u64 },
    #[error("sample interval ({sample_us} us) is outside the intervals goal's range {min_us}..={max_us} us")]
    SampleOutsideGoal {
        sample_us: u64,
        min_us: u64,
        max_us: u64,
    },
}

/// Monitoring attributes (`struct damon_attrs`, include/linux/damon.h 6.12). Intervals in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attrs {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub ops_update_us: u64,
    pub min_nr_regions: u32,
    pub max_nr_regions: u32,
    /// `DAMON_MIN_REGION`: PAGE_SIZE in production, 1 in the kernel's kunit tests.
    pub min_region_sz: u64,
}

impl Default for Attrs {
    /// The kernel's defaults (`damon_new_ctx()`, mm/damon/core.c 6.12).
    fn default() -> Self {
        Self {
            sample_us: 5_000,
            aggr_us: 100_000,
            ops_update_us: 60_000_000,
            min_nr_regions: 10,
            max_nr_regions: 1000,
            min_region_sz: 4096,
        }
    }
}

impl Attrs {
    /// `damon_set_attrs()` checks (mm/damon/core.c 6.15), plus a zero sample interval and a
    /// non-power-of-two minimum region size, which the kernel cannot be given.
    pub fn validate(&self) -> Result<(), AttrsError> {
        if self.min_nr_regions < 3 {
            return Err(AttrsError::TooFewMinRegions(self.min_nr_regions));
        }
        if self.min_nr_regions > self.max_nr_regions {
            return Err(AttrsError::MinAboveMax {
                min: self.min_nr_regions,
                max: self.max_nr_regions,
            });
        }
        if self.sample_us == 0 {
            return Err(AttrsError::ZeroSample);
        }
        if self.sample_us > self.aggr_us {
            return Err(AttrsError::SampleAboveAggr {
                sample_us: self.sample_us,
                aggr_us: self.aggr_us,
            });
        }
        if !self.min_region_sz.is_power_of_two() {
            return Err(AttrsError::BadMinRegion(self.min_region_sz));
        }
        Ok(())
    }

    /// `damon_max_nr_accesses()` (include/linux/damon.h 6.12): `max(1, min(aggr/sample, UINT_MAX))`.
    pub fn max_nr_accesses(&self) -> u32 {
        let n = self.aggr_us / self.sample_us.max(1);
        n.clamp(1, u32::MAX as u64) as u32
    }

    pub fn sample_interval(&self) -> Duration {
        Duration::from_micros(self.sample_us)
    }
    pub fn aggr_interval(&self) -> Duration {
        Duration::from_micros(self.aggr_us)
    }
    pub fn ops_update_interval(&self) -> Duration {
        Duration::from_micros(self.ops_update_us)
    }
}

/// The goal of the monitoring intervals auto-tuning: `struct damon_intervals_goal`
/// (include/linux/damon.h, Linux 6.15), tuned by `engine::monitor::tune`. The kernel keeps it
/// in `damon_attrs`; madvd keeps it beside [`Attrs`] (the monitor holds it), and `None`
/// stands for the kernel's `aggrs == 0` (tuning off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalsGoal {
    /// The access ratio to reach: observed access events over the maximum possible, in basis
    /// points (`access_bp`).
    pub access_bp: u32,
    /// Tune every this many aggregation intervals (`aggrs`).
    pub aggrs: u32,
    /// The sampling interval stays within `min_sample_us..=max_sample_us`.
    pub min_sample_us: u64,
    pub max_sample_us: u64,
}

impl Default for IntervalsGoal {
    /// What the kernel's own users set (mm/damon/stat.c and samples/damon/mtier.c, 6.17):
    /// "aiming 4% DAMON-observed accesses ratio, keeping sampling interval in [5ms, 10s]
    /// range", tuned every 3 aggregations.
    fn default() -> Self {
        Self {
            access_bp: 400,
            aggrs: 3,
            min_sample_us: 5_000,
            max_sample_us: 10_000_000,
        }
    }
}

impl IntervalsGoal {
    /// `damon_valid_intervals_goal()` (mm/damon/core.c, 6.15): `min ≤ max` and the sampling
    /// interval of `attrs` inside `min..=max`. madvd also refuses what the kernel would take
    /// but cannot mean anything: `aggrs == 0` (use `None`), an access ratio of 0 or above
    /// 100%, and a zero minimum (tuning could reach a zero sampling interval).
    pub fn validate(&self, attrs: &Attrs) -> Result<(), AttrsError> {
        if self.access_bp == 0 || self.access_bp > 10_000 {
            return Err(AttrsError::GoalAccess(self.access_bp));
        }
        if self.aggrs == 0 {
            return Err(AttrsError::GoalAggrs);
        }
        if self.min_sample_us == 0 {
            return Err(AttrsError::GoalZeroMin);
        }
        if self.min_sample_us > self.max_sample_us {
            return Err(AttrsError::GoalMinAboveMax {
                min_us: self.min_sample_us,
                max_us: self.max_sample_us,
            });
        }
        if !(self.min_sample_us..=self.max_sample_us).contains(&attrs.sample_us) {
            return Err(AttrsError::SampleOutsideGoal {
                sample_us: attrs.sample_us,
                min_us: self.min_sample_us,
                max_us: self.max_sample_us,
            });
        }
        Ok(())
    }
}

/// An intervals goal as a policy section or the `--tune-*` flags give it: each field `None`
/// where it is not written. Present at all (`Some` in [`AttrsOverride::intervals_goal`]) means
/// tuning is on; the fields not written come from the layer below, then from
/// [`IntervalsGoal::default`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalsGoalOverride {
    pub access_bp: Option<u32>,
    pub aggrs: Option<u32>,
    pub min_sample_us: Option<u64>,
    pub max_sample_us: Option<u64>,
}

impl IntervalsGoalOverride {
    /// `self` where it sets a field, `under` elsewhere.
    pub fn over(self, under: IntervalsGoalOverride) -> IntervalsGoalOverride {
        IntervalsGoalOverride {
            access_bp: self.access_bp.or(under.access_bp),
            aggrs: self.aggrs.or(under.aggrs),
            min_sample_us: self.min_sample_us.or(under.min_sample_us),
            max_sample_us: self.max_sample_us.or(under.max_sample_us),
        }
    }

    /// The goal, the fields not set taken from [`IntervalsGoal::default`] (not validated).
    pub fn resolve(&self) -> IntervalsGoal {
        let d = IntervalsGoal::default();
        IntervalsGoal {
            access_bp: self.access_bp.unwrap_or(d.access_bp),
            aggrs: self.aggrs.unwrap_or(d.aggrs),
            min_sample_us: self.min_sample_us.unwrap_or(d.min_sample_us),
            max_sample_us: self.max_sample_us.unwrap_or(d.max_sample_us),
        }
    }
}

/// Monitoring attributes set by a policy's `monitor` section or by command-line flags, each
/// field `None` where it leaves the attribute alone. The one override type: the CLI flags and
/// the policy section convert into it, [`AttrsOverride::over`] stacks two, and
/// [`AttrsOverride::apply`] lays the result on an access check's defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrsOverride {
    pub sample_us: Option<u64>,
    pub aggr_us: Option<u64>,
    pub ops_update_us: Option<u64>,
    pub min_nr_regions: Option<u32>,
    pub max_nr_regions: Option<u32>,
    /// Interval auto-tuning: `Some` turns it on ([`IntervalsGoalOverride`]).
    pub intervals_goal: Option<IntervalsGoalOverride>,
}

impl AttrsOverride {
    /// `self` where it sets a field, `under` elsewhere (flags over a policy's section).
    pub fn over(self, under: AttrsOverride) -> AttrsOverride {
        AttrsOverride {
            sample_us: self.sample_us.or(under.sample_us),
            aggr_us: self.aggr_us.or(under.aggr_us),
            ops_update_us: self.ops_update_us.or(under.ops_update_us),
            min_nr_regions: self.min_nr_regions.or(under.min_nr_regions),
            max_nr_regions: self.max_nr_regions.or(under.max_nr_regions),
            intervals_goal: match (self.intervals_goal, under.intervals_goal) {
                (Some(a), Some(b)) => Some(a.over(b)),
                (a, b) => a.or(b),
            },
        }
    }

    /// The intervals goal this override turns on, if any (defaults filled in, not validated:
    /// `Monitor::set_intervals_goal` validates it against the attributes).
    pub fn goal(&self) -> Option<IntervalsGoal> {
        self.intervals_goal.map(|g| g.resolve())
    }

    /// `defaults` with every field this override sets replaced (not validated: the caller
    /// validates the result, [`Attrs::validate`]).
    pub fn apply(&self, defaults: Attrs) -> Attrs {
        Attrs {
            sample_us: self.sample_us.unwrap_or(defaults.sample_us),
            aggr_us: self.aggr_us.unwrap_or(defaults.aggr_us),
            ops_update_us: self.ops_update_us.unwrap_or(defaults.ops_update_us),
            min_nr_regions: self.min_nr_regions.unwrap_or(defaults.min_nr_regions),
            max_nr_regions: self.max_nr_regions.unwrap_or(defaults.max_nr_regions),
            min_region_sz: defaults.min_region_sz,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kernels_and_valid() {
        let a = Attrs::default();
        assert_eq!(
            (a.sample_us, a.aggr_us, a.ops_update_us),
            (5_000, 100_000, 60_000_000)
        );
        assert_eq!((a.min_nr_regions, a.max_nr_regions), (10, 1000));
        assert_eq!(a.max_nr_accesses(), 20);
        a.validate().unwrap();
    }

    /// Port of `damon_test_set_attrs` (mm/damon/tests/core-kunit.h, 6.12).
    #[test]
    fn set_attrs_rejects_what_the_kernel_rejects() {
        let valid = Attrs {
            sample_us: 5000,
            aggr_us: 100_000,
            ops_update_us: 1_000_000,
            min_nr_regions: 10,
            max_nr_regions: 1000,
            min_region_sz: 4096,
        };
        valid.validate().unwrap();
        let mut a = valid;
        a.min_nr_regions = 1;
        assert_eq!(a.validate(), Err(AttrsError::TooFewMinRegions(1)));
        let mut a = valid;
        a.min_nr_regions = 2000;
        assert!(matches!(a.validate(), Err(AttrsError::MinAboveMax { .. })));
        let mut a = valid;
        a.sample_us = 200_000;
        assert!(matches!(
            a.validate(),
            Err(AttrsError::SampleAboveAggr { .. })
        ));
    }

    #[test]
    fn override_stacks_and_applies_field_by_field() {
        let policy = AttrsOverride {
            sample_us: Some(50_000),
            aggr_us: Some(1_000_000),
            ..Default::default()
        };
        let flags = AttrsOverride {
            aggr_us: Some(3_000_000),
            max_nr_regions: Some(500),
            ..Default::default()
        };
        let a = flags.over(policy).apply(Attrs::default());
        assert_eq!((a.sample_us, a.aggr_us), (50_000, 3_000_000));
        assert_eq!((a.min_nr_regions, a.max_nr_regions), (10, 500));
        assert_eq!(a.ops_update_us, Attrs::default().ops_update_us);
        assert_eq!(AttrsOverride::default().apply(a), a);
    }

    /// `damon_valid_intervals_goal()` (mm/damon/core.c 6.15), and madvd's refusals of goals
    /// that mean nothing.
    #[test]
    fn intervals_goal_checks() {
        let a = Attrs::default(); // sample 5 ms
        let g = IntervalsGoal::default();
        g.validate(&a).unwrap();
        let with = |f: fn(&mut IntervalsGoal)| {
            let mut x = g;
            f(&mut x);
            x.validate(&a)
        };
        assert_eq!(with(|g| g.access_bp = 0), Err(AttrsError::GoalAccess(0)));
        assert_eq!(
            with(|g| g.access_bp = 10_001),
            Err(AttrsError::GoalAccess(10_001))
        );
        assert_eq!(with(|g| g.aggrs = 0), Err(AttrsError::GoalAggrs));
        assert_eq!(with(|g| g.min_sample_us = 0), Err(AttrsError::GoalZeroMin));
        assert!(matches!(
            with(|g| g.max_sample_us = 1_000),
            Err(AttrsError::GoalMinAboveMax { .. })
        ));
        assert_eq!(
            with(|g| g.min_sample_us = 6_000),
            Err(AttrsError::SampleOutsideGoal {
                sample_us: 5_000,
                min_us: 6_000,
                max_us: 10_000_000
            })
        );
    }

    #[test]
    fn intervals_goal_overrides_stack_field_by_field() {
        let policy = AttrsOverride {
            intervals_goal: Some(IntervalsGoalOverride {
                access_bp: Some(200),
                max_sample_us: Some(1_000_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let flags = AttrsOverride {
            intervals_goal: Some(IntervalsGoalOverride {
                max_sample_us: Some(50_000),
                ..Default::default()
            }),
            ..Default::default()
        };
        let g = flags.over(policy).goal().unwrap();
        assert_eq!((g.access_bp, g.aggrs), (200, 3));
        assert_eq!((g.min_sample_us, g.max_sample_us), (5_000, 50_000));
        assert_eq!(
            AttrsOverride::default()
                .over(policy)
                .goal()
                .unwrap()
                .access_bp,
            200
        );
        assert_eq!(AttrsOverride::default().goal(), None, "no goal: no tuning");
    }
}
