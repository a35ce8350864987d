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
    Collapse,
}

impl Advice {
    pub const ALL: [Advice; 4] = [
        Advice::Cold,
        Advice::Pageout,
        Advice::Willneed,
        Advice::Collapse,
    ];

    /// The `madvise(2)` advice number. Private: only the engine's syscall wrapper uses it.
    pub(crate) fn madv(self) -> libc::c_int {
        match self {
            Advice::Cold => libc::MADV_COLD,
            Advice::Pageout => libc::MADV_PAGEOUT,
            Advice::Willneed => libc::MADV_WILLNEED,
            Advice::Collapse => MADV_COLLAPSE,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Advice::Cold => "cold",
            Advice::Pageout => "pageout",
            Advice::Willneed => "willneed",
            Advice::Collapse => "collapse",
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
