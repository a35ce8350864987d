//! Access checks ("operations sets"): each implements [`crate::AccessCheck`] (or, for the
//! kernel's own DAMON, is a snapshot source), and says whether it is usable here and why not.

pub mod damon;
pub mod detect;
pub mod page_idle;
pub mod probe;
pub mod sim;
pub mod smaps;
pub mod soft_dirty;

use serde::{Deserialize, Serialize};

/// Whether an access check can be used here, and why not. `madvd ops` prints these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpsStatus {
    /// The name `--ops NAME` takes.
    pub name: &'static str,
    pub usable: bool,
    /// Why it is not usable (kernel config, permission, no swap, busy, ...), if it is not.
    pub why_not: Option<String>,
    /// What it sees: "page (PTE Accessed bit)", "page (writes only)", "VMA", ...
    pub granularity: &'static str,
    /// One line for people.
    pub description: &'static str,
    /// Rank for auto-detection: the usable one with the lowest rank wins.
    pub rank: u32,
}
