//! The access-check trait: how the monitor asks "was this page accessed?".
//!
//! Layered as DAMON's design (Documentation/mm/damon/design.rst, "Operations Set Layer"):
//! (1) the target's address ranges, which the monitor turns into its three regions;
//! (2) prepare / check a set of sample addresses, one per region per sampling interval.
//! A source that returns whole regions with counts (the kernel's own DAMON) is a
//! snapshot source instead: see `ops::damon`.

use crate::attrs::Attrs;
use crate::process::Process;
use crate::region::{AddrRange, TargetId};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

/// One sample's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Access {
    Accessed,
    NotAccessed,
    /// The check could not look (page not probeable, never paged out, read failed, not
    /// sampled this interval). Never counts as an access, never as a miss.
    Unknown,
}

/// One sample request: the region it stands for and the address the monitor picked
/// (page-aligned, uniformly random inside the region, as `damon_va_prepare_access_checks`).
/// `prepare` may move `addr` to another page of the same region (e.g. the refault probe
/// needs a private anonymous page); `check` answers for the (possibly moved) `addr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleReq {
    pub region: AddrRange,
    pub addr: u64,
}

/// Errors of an access check. A target that is gone is not a failure of madvd: the monitor
/// drops it with one log line.
#[derive(Debug, Error)]
pub enum AccessError {
    #[error("target {0} has exited")]
    TargetGone(TargetId),
    #[error("target {target}: permission denied: {what}")]
    Permission { target: TargetId, what: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("target {target}: {msg}")]
    Other { target: TargetId, msg: String },
}

/// The targets of a check over live processes, by id (a target's id is its pid).
/// `ops::common::Targets` is the table every such check keeps.
pub trait TargetTable {
    /// Hold `proc` as a target; its id is [`Process::id`].
    fn add(&mut self, proc: Process) -> TargetId;
    /// Forget target `id`, handing back its process (dropping it closes its pidfd and
    /// pagemap). `None` if it was no target.
    fn remove(&mut self, id: TargetId) -> Option<Process>;
}

/// A per-sample access check (an "operations set" in DAMON's terms).
pub trait AccessCheck {
    /// Short name, as `--ops NAME` takes it (`sim`, `probe`, `page_idle`, ...).
    fn name(&self) -> &'static str;

    /// The table of live processes this check samples, if it samples live processes (the
    /// simulated check does not: its targets are simulated spaces).
    fn targets(&mut self) -> Option<&mut dyn TargetTable> {
        None
    }

    /// Start sampling `proc` (the monitor then knows it by the returned id, its pid). A
    /// check over no live processes refuses. A process already held under that id (a pid
    /// reused before the old one was removed) is replaced.
    fn add_target(&mut self, proc: Process) -> Result<TargetId, AccessError> {
        let name = self.name();
        match self.targets() {
            Some(t) => Ok(t.add(proc)),
            None => Err(AccessError::Other {
                target: proc.id(),
                msg: format!("the {name} check samples no live process"),
            }),
        }
    }

    /// Stop sampling target `id` (gone, or no longer monitored): its process, if it was one.
    fn remove_target(&mut self, id: TargetId) -> Option<Process> {
        self.targets()?.remove(id)
    }

    /// The monitoring attributes this check works best with. A costly check samples less
    /// often than the kernel's 5 ms / 100 ms; policy files and CLI flags override these.
    fn default_attrs(&self) -> Attrs {
        Attrs::default()
    }

    /// Most samples per second this check should be asked for (a probe budget), if limited.
    /// The monitor then samples only some regions per interval, preferring regions with the
    /// least recent information; unsampled regions count as `Unknown` for that interval.
    fn max_samples_per_sec(&self) -> Option<f64> {
        None
    }

    /// True when [`Self::target_ranges`] are the ranges to monitor as given (physical
    /// ranges the user set: kernel DAMON's `paddr` has no three-region init), not mappings
    /// to build three regions from.
    fn ranges_are_user_set(&self) -> bool {
        false
    }

    /// The target's mapped address ranges, sorted and disjoint (VMAs, possibly coalesced).
    /// The monitor computes the three regions from them (`__damon_va_three_regions`), or,
    /// with [`Self::ranges_are_user_set`], monitors them as given.
    fn target_ranges(&mut self, target: TargetId) -> Result<Vec<AddrRange>, AccessError>;

    /// Start one sampling interval: clear the accessed state of each sample page.
    fn prepare(&mut self, target: TargetId, samples: &mut [SampleReq]) -> Result<(), AccessError>;

    /// End it: answer for each sample, in order. `out.len() == samples.len()` on entry.
    fn check(
        &mut self,
        target: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError>;

    /// Ranges just advised by a scheme: a probing check must not probe them this interval
    /// (their pages were just moved by the advice, not by the workload). Default: ignore.
    fn note_advised(&mut self, _target: TargetId, _ranges: &[AddrRange]) {}

    /// Work this check did that counts as monitoring cost (e.g. the probe's own page-outs).
    fn cost(&self) -> MonitorCost {
        MonitorCost::default()
    }
}

/// Monitoring cost counters, reported apart from savings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorCost {
    /// Pages this check paged out to probe them (never counted as savings).
    pub probe_pageouts: u64,
    /// Of those, pages found present again at the check: the probe's own page-outs that the
    /// workload faulted back in (each one a major fault of the target that no scheme caused;
    /// a figure of the target's refaults by major faults subtracts them).
    #[serde(default)]
    pub probe_refaults: u64,
    /// Sample answers given.
    pub samples: u64,
    /// System calls made.
    pub syscalls: u64,
}
