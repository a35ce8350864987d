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
}
