//! smaps `Referenced` after `clear_refs` 1: an access check that works on every kernel
//! with `CONFIG_PROC_PAGE_MONITOR`, with no swap and no root (for one's own processes) —
//! but at **VMA granularity only**: a sample is Accessed when the VMA holding it had any
//! page referenced since the last clear, so every region inside one VMA gets the same answer.
//! Use it to tell hot mappings from cold ones, not hot pages inside one mapping.
//!
//! Each sampling interval: `clear_refs` 1 on the target at prepare (clears the PTE Accessed
//! bits and `PG_referenced` of all its pages: fs/proc/task_mmu.c `clear_refs_write`, 6.12),
//! then read smaps at check. Both walk the target's page tables: the cost grows with its
//! mapped size, hence the slow defaults. Clearing Accessed bits also hides recent use from
//! the kernel's own reclaim for a moment (kernel DAMON's vaddr checks do the same).

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use crate::attrs::Attrs;
use crate::kernel::clear_refs::ClearRefs;
use crate::kernel::smaps::SmapsVma;
use crate::ops::probe::access_error;
use crate::process::Process;
use crate::region::{AddrRange, TargetId};
use std::collections::BTreeMap;

/// What the check says about its granularity (also in `madvd ops`).
pub const GRANULARITY: &str = "VMA (whole mappings only)";

/// The smaps access check over live targets.
#[derive(Default)]
pub struct SmapsCheck {
    targets: BTreeMap<TargetId, Process>,
    cost: MonitorCost,
}

impl SmapsCheck {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add_target(&mut self, proc: Process) -> TargetId {
        let id = proc.id();
        self.targets.insert(id, proc);
        id
    }
    pub fn remove_target(&mut self, id: TargetId) -> Option<Process> {
        self.targets.remove(&id)
    }
    fn proc(&self, id: TargetId) -> Result<&Process, AccessError> {
        self.targets.get(&id).ok_or_else(|| AccessError::Other {
            target: id,
            msg: "not a target of the smaps check".into(),
        })
    }
}

/// Answer for `addr` from the VMAs of one smaps read (sorted). Pure.
pub fn answer(vmas: &[SmapsVma], addr: u64) -> Access {
    let i = vmas.partition_point(|v| v.vma.range.end <= addr);
    match vmas.get(i) {
        Some(v) if v.vma.range.contains(addr) => {
            if v.referenced > 0 {
                Access::Accessed
            } else {
                Access::NotAccessed
            }
        }
        _ => Access::Unknown,
    }
}

impl AccessCheck for SmapsCheck {
    fn name(&self) -> &'static str {
        "smaps"
    }

    /// 500 ms sampling, 5 s aggregation: each sample walks the target's page tables twice.
    fn default_attrs(&self) -> Attrs {
        Attrs {
            sample_us: 500_000,
            aggr_us: 5_000_000,
            ops_update_us: 10_000_000,
            ..Attrs::default()
        }
    }

    fn target_ranges(&mut self, id: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        let ranges = self
            .proc(id)?
            .target_ranges()
            .map_err(|e| access_error(id, e))?;
        self.cost.syscalls += 1;
        Ok(ranges)
    }

    fn prepare(&mut self, id: TargetId, _samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.proc(id)?
            .clear_refs(ClearRefs::All)
            .map_err(|e| access_error(id, e))?;
        self.cost.syscalls += 1;
        Ok(())
    }

    fn check(
        &mut self,
        id: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        let vmas = self.proc(id)?.smaps().map_err(|e| access_error(id, e))?;
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            *o = answer(&vmas, s.addr);
        }
        self.cost.syscalls += 1;
        self.cost.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::smaps::parse_smaps;
    use std::path::Path;

    #[test]
    fn answers_per_vma() {
        let t = "1000-3000 rw-p 00000000 00:00 0\nReferenced: 4 kB\n5000-8000 rw-p 00000000 00:00 0\nReferenced: 0 kB\n";
        let v = parse_smaps(t.as_bytes(), Path::new("smaps")).unwrap();
        assert_eq!(answer(&v, 0x1000), Access::Accessed);
        assert_eq!(answer(&v, 0x2fff), Access::Accessed);
        assert_eq!(answer(&v, 0x3000), Access::Unknown);
        assert_eq!(answer(&v, 0x7000), Access::NotAccessed);
        assert_eq!(answer(&v, 0x9000), Access::Unknown);
        assert_eq!(answer(&[], 0x1000), Access::Unknown);
    }
}
