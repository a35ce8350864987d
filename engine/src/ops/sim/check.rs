//! [`SimOps`]: the access check over simulated spaces, one per target.

use super::space::SimSpace;
use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use crate::attrs::Attrs;
use crate::region::{AddrRange, TargetId};
use std::collections::BTreeMap;

/// Simulated targets: one [`SimSpace`] per target id. Implements [`AccessCheck`]; a target
/// id it does not hold (or whose space exited) answers `TargetGone`.
#[derive(Clone, Debug, Default)]
pub struct SimOps {
    spaces: BTreeMap<TargetId, SimSpace>,
    attrs: Option<Attrs>,
    max_samples_per_sec: Option<f64>,
    samples: u64,
}

impl SimOps {
    pub fn new() -> Self {
        Self::default()
    }

    /// One space as target `id`.
    pub fn single(id: TargetId, space: SimSpace) -> Self {
        let mut s = Self::new();
        s.insert(id, space);
        s
    }

    pub fn insert(&mut self, id: TargetId, space: SimSpace) {
        self.spaces.insert(id, space);
    }

    pub fn remove(&mut self, id: TargetId) -> Option<SimSpace> {
        self.spaces.remove(&id)
    }

    pub fn space(&self, id: TargetId) -> Option<&SimSpace> {
        self.spaces.get(&id)
    }

    pub fn space_mut(&mut self, id: TargetId) -> Option<&mut SimSpace> {
        self.spaces.get_mut(&id)
    }

    /// Override the attributes `default_attrs` reports (default: the kernel's).
    pub fn with_default_attrs(mut self, attrs: Attrs) -> Self {
        self.attrs = Some(attrs);
        self
    }

    /// Declare a sample budget, as a costly check would.
    pub fn with_max_samples_per_sec(mut self, per_sec: f64) -> Self {
        self.max_samples_per_sec = Some(per_sec);
        self
    }

    fn live(&mut self, id: TargetId) -> Result<&mut SimSpace, AccessError> {
        match self.spaces.get_mut(&id) {
            Some(s) if !s.gone => Ok(s),
            _ => Err(AccessError::TargetGone(id)),
        }
    }
}

impl AccessCheck for SimOps {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn default_attrs(&self) -> Attrs {
        self.attrs.unwrap_or_default()
    }

    fn max_samples_per_sec(&self) -> Option<f64> {
        self.max_samples_per_sec
    }

    fn target_ranges(&mut self, target: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        Ok(self.live(target)?.mappings().to_vec())
    }

    fn prepare(&mut self, target: TargetId, _samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.live(target).map(|_| ())
    }

    fn check(
        &mut self,
        target: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        self.live(target)?.answer(samples, out);
        self.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        MonitorCost {
            probe_pageouts: 0,
            probe_refaults: 0,
            samples: self.samples,
            syscalls: 0,
        }
    }
}
