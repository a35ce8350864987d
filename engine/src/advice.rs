//! Advice the actuator may apply. Only non-destructive advice exists: there is no way to
//! express `MADV_DONTNEED`, `MADV_FREE` or `MADV_REMOVE`, neither in a policy file nor in code.
//!
//! ```compile_fail
//! // Destructive advice cannot be constructed.
//! let _ = engine::Advice::DontNeed;
//! ```
//! ```compile_fail
//! let _ = engine::Advice::Free;
//! ```
//! ```compile_fail
//! // Nor can a raw madvise number be turned into an Advice.
//! let _: engine::Advice = libc::MADV_DONTNEED.into();
//! ```

use crate::region::{AddrRange, TargetId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Non-destructive advice that Linux accepts for another process through `process_madvise`
/// (`process_madvise_remote_valid()`, mm/madvise.c 6.13+: COLD, PAGEOUT, WILLNEED, COLLAPSE).
/// Remote `MADV_HUGEPAGE` is refused by Linux (EINVAL): `Collapse` is the remote way to get
/// huge pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Advice {
    /// `MADV_COLD`: deactivate; the kernel reclaims these first under pressure.
    Cold,
    /// `MADV_PAGEOUT`: reclaim now (anonymous pages go to swap).
    Pageout,
    /// `MADV_WILLNEED`: read ahead / swap in.
    Willneed,
    /// `MADV_COLLAPSE`: synchronously collapse into transparent huge pages (2 MiB aligned).
    /// The actuator leaves out the blocks it reads as one huge page already
    /// ([`ApplyErrorKind::AlreadyHuge`](crate::report::ApplyErrorKind::AlreadyHuge),
    /// `engine::actuator::huge`).
    Collapse,
    /// madvd's split of transparent huge pages (the `split` action), a composite the actuator
    /// expands, never one `madvise` number: for each whole 2 MiB-aligned block of the range
    /// that the actuator reads mapped to one PMD-sized THP (`engine::actuator::huge`), a
    /// `MADV_PAGEOUT` of its first base page (which splits it) and then a `MADV_COLD` of the
    /// 2 MiB; every other block is reported
    /// [`ApplyErrorKind::NotHuge`](crate::report::ApplyErrorKind::NotHuge) and not advised.
    /// The kernel calls refuse it with EINVAL.
    Split,
}

impl Advice {
    pub const ALL: [Advice; 5] = [
        Advice::Cold,
        Advice::Pageout,
        Advice::Willneed,
        Advice::Collapse,
        Advice::Split,
    ];

    /// The `madvise(2)` advice number; `None` for [`Advice::Split`], which has none (the
    /// actuator expands it). Private: only the engine's syscall wrapper uses it.
    pub(crate) fn madv(self) -> Option<libc::c_int> {
        match self {
            Advice::Cold => Some(libc::MADV_COLD),
            Advice::Pageout => Some(libc::MADV_PAGEOUT),
            Advice::Willneed => Some(libc::MADV_WILLNEED),
            Advice::Collapse => Some(MADV_COLLAPSE),
            Advice::Split => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Advice::Cold => "cold",
            Advice::Pageout => "pageout",
            Advice::Willneed => "willneed",
            Advice::Collapse => "collapse",
            Advice::Split => "split",
        }
    }
}

/// `MADV_COLLAPSE` (include/uapi/asm-generic/mman-common.h, since Linux 6.1).
pub(crate) const MADV_COLLAPSE: libc::c_int = 25;

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One piece of advice for the actuator: apply `advice` to `range` of `target`, on behalf of
/// scheme number `scheme` (its index in the policy), for the region it was chosen from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdviceRequest {
    pub target: TargetId,
    pub range: AddrRange,
    pub advice: Advice,
    pub scheme: usize,
}
