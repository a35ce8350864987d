//! What the monitor hands the schemes: the regions of every target at one moment.

use crate::attrs::Attrs;
use crate::region::{Region, TargetId};
use serde::{Deserialize, Serialize};

/// The regions of one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSnapshot {
    pub target: TargetId,
    /// Sorted, disjoint.
    pub regions: Vec<Region>,
}

impl TargetSnapshot {
    pub fn total_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.size()).sum()
    }
}

/// The monitor's state at one moment. At an aggregation boundary (`aggregated == true`)
/// it is taken after merging and before the reset, like the state kernel DAMOS schemes see;
/// mid-aggregation `nr_accesses_bp` carries the moving sum (schemes with an apply interval
/// shorter than the aggregation interval match on `nr_accesses_bp / 10000`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Monitor time, µs since the monitor started (the clock the caller drives).
    pub now_us: u64,
    /// Number of completed aggregation intervals.
    pub aggregation: u64,
    pub aggregated: bool,
    pub attrs: Attrs,
    pub targets: Vec<TargetSnapshot>,
}

impl Snapshot {
    pub fn max_nr_accesses(&self) -> u32 {
        self.attrs.max_nr_accesses()
    }
    pub fn nr_regions(&self) -> usize {
        self.targets.iter().map(|t| t.regions.len()).sum()
    }
}
