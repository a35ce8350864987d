//! Address ranges, monitoring regions and target identities.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one monitoring target. For live processes it is the pid the target was opened
/// with (the pidfd held by the target guards against reuse); for simulated targets any number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetId(pub u32);

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A half-open address range `[start, end)`, as the kernel's `struct damon_addr_range`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddrRange {
    pub start: u64,
    pub end: u64,
}

impl AddrRange {
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }
    /// Size in bytes (`damon_sz_region`).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
    /// True when the two ranges share at least one byte.
    pub const fn intersects(&self, other: &AddrRange) -> bool {
        self.start < other.end && other.start < self.end
    }
    /// The common part, if any.
    pub fn intersection(&self, other: &AddrRange) -> Option<AddrRange> {
        let r = AddrRange::new(self.start.max(other.start), self.end.min(other.end));
        (!r.is_empty()).then_some(r)
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// One monitoring region: the kernel's `struct damon_region` (include/linux/damon.h, 6.12).
///
/// `nr_accesses` counts the sampling intervals of the current aggregation interval in which
/// the region's sample page was found accessed; `nr_accesses_bp` is its moving sum in basis
/// points (×10 000), valid mid-aggregation; `last_nr_accesses` is the previous aggregation's
/// final count; `age` counts aggregation intervals the access rate stayed (roughly) the same.
///
/// madvd adds `nr_known`: how many samples of this aggregation got a definite answer
/// (Accessed or NotAccessed). With every sample known it equals the number of sampling
/// intervals and the region behaves exactly like the kernel's.
///
/// And `nr_seen`: how many of those definite answers were Accessed — the evidence of access
/// in this aggregation, before [`crate::monitor::finalize_unknown`] fills Unknown answers
/// in at the previous rate. A region whose count is carried from earlier aggregations (few
/// or no known answers this time) keeps its `nr_accesses` but has `nr_seen == 0` unless a
/// sample of it was found accessed now. Merges add it up (the merged region's answers are
/// both regions'); records keep it (`seen`, docs/record-format.md) for `madvd replay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub ar: AddrRange,
    /// The address sampled in the current sampling interval.
    pub sampling_addr: u64,
    pub nr_accesses: u32,
    pub nr_accesses_bp: u32,
    pub last_nr_accesses: u32,
    pub age: u32,
    /// Samples with a definite answer in the current aggregation interval.
    pub nr_known: u32,
    /// Accessed answers among this aggregation's known ones (the evidence of access).
    #[serde(default)]
    pub nr_seen: u32,
    /// The last aggregation's estimate of `nr_accesses` in basis points (×10 000), before
    /// rounding: where `finalize_unknown` starts its fill-in of Unknown answers, so that a
    /// carried rate decays to 0 instead of stopping at a rounding fixed point.
    #[serde(default)]
    pub est_bp: u32,
    /// Aggregations since the region's access level last changed beyond the noise of its
    /// count ([`crate::monitor::AgeRule::ZeroRun`]); `age` is this while the region is
    /// accessed, and its run of zero counts while it is not. Unused by the other rules.
    #[serde(default)]
    pub level_age: u32,
}

impl Region {
    /// A fresh region with no history (`damon_new_region`).
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            ar: AddrRange::new(start, end),
            sampling_addr: start,
            nr_accesses: 0,
            nr_accesses_bp: 0,
            last_nr_accesses: 0,
            age: 0,
            nr_known: 0,
            nr_seen: 0,
            est_bp: 0,
            level_age: 0,
        }
    }
    pub const fn start(&self) -> u64 {
        self.ar.start
    }
    pub const fn end(&self) -> u64 {
        self.ar.end
    }
    /// `damon_sz_region`.
    pub const fn size(&self) -> u64 {
        self.ar.len()
    }
}
