//! The actuator's apply report: the one value that flows backwards, to the schemes (quota
//! charging, stats) and to the monitor (an applied non-`stat` action resets the region's age,
//! as `damos_apply_scheme()` does in mm/damon/core.c 6.12).

use crate::advice::Advice;
use crate::region::{AddrRange, TargetId};
use serde::{Deserialize, Serialize};

/// Why (part of) a range was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyErrorKind {
    /// The range (or part of it) is not mapped: a hole in the snapshot's VMAs, or ENOMEM from
    /// madvise (unmapped since the snapshot).
    Unmapped,
    /// The kernel refused the advice for this range (EINVAL: locked, PFNMAP, hugetlb, ...).
    Invalid,
    /// Temporary failure (EAGAIN: e.g. MADV_COLLAPSE could not get a huge page).
    Again,
    /// Out of memory while applying (ENOMEM from MADV_COLLAPSE's allocation).
    NoMemory,
    /// The target exited (ESRCH, or the pidfd reports it gone): it is dropped.
    TargetGone,
    /// EPERM: madvd lacks CAP_SYS_NICE or ptrace read access to the target.
    Permission,
    /// Not attempted: page-out stopped because free swap fell under the headroom.
    SwapHeadroom,
    /// Not attempted: refused by a safety rail (madvd itself, pid 1, kernel thread).
    Refused,
    /// Not attempted: dry run.
    DryRun,
    /// Not attempted: the run is stopping.
    Cancelled,
    /// Not attempted: the part of the range outside whole pages, or for `collapse` outside
    /// whole 2 MiB-aligned huge pages (the kernel would silently skip it).
    Unaligned,
    /// Any other errno (0: the kernel returned a short count without one).
    Other(i32),
}

/// What happened to one requested range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOutcome {
    pub target: TargetId,
    pub range: AddrRange,
    pub advice: Advice,
    /// Index of the scheme that asked for it.
    pub scheme: usize,
    pub bytes_requested: u64,
    pub bytes_applied: u64,
    /// Wall time spent applying it, ns (the time quota charges this).
    pub elapsed_ns: u64,
    /// Errors met while applying parts of the range, with the bytes each cost.
    pub errors: Vec<(ApplyErrorKind, u64)>,
}

impl RangeOutcome {
    pub fn applied(&self) -> bool {
        self.bytes_applied > 0
    }
}

/// The report of one actuation round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub outcomes: Vec<RangeOutcome>,
    /// Targets found gone while applying: the caller drops them.
    pub gone: Vec<TargetId>,
    pub dry_run: bool,
}

impl ApplyReport {
    pub fn bytes_applied(&self) -> u64 {
        self.outcomes.iter().map(|o| o.bytes_applied).sum()
    }
    pub fn elapsed_ns(&self) -> u64 {
        self.outcomes.iter().map(|o| o.elapsed_ns).sum()
    }
}
