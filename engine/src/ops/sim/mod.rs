//! `sim`: a simulated address space with a scripted access pattern and ground truth.
//!
//! A [`SimSpace`] is a process-like layout (executable, heap, one big data mapping, libraries,
//! stack; the gaps between heap and data and between libraries and stack are the two big
//! ones, as in a real process) and a [`Pattern`] saying, per sampling interval, which pages
//! are touched and with what probability: bands (static, stairs, a moving or zigzagging hot
//! set) with an access probability per page per interval, a Zipf-popular key space with the
//! hot keys scattered ([`ZipfKeys`]), a partly hot region ([`SparseHot`]), layers and phases
//! of these. Nothing is stored per page of the pattern, so a 1 TiB space costs what a 1 GiB
//! one does.
//!
//! Time is the number of sampling intervals checked: each
//! [`AccessCheck::check`](crate::AccessCheck::check) answers for the current interval and
//! advances it. Whether page `p` is touched in interval `i` is a pure function of (pattern,
//! seed, p, i) ([`Pattern::interval`]), so tests ask the truth for any page and interval
//! ([`SimSpace::touched`], [`SimSpace::touched_pages`], [`SimSpace::page_probs`]) without
//! sleeping, and the real workload child can touch exactly the same pages.
//!
//! Residency: pages paged out ([`SimSpace::page_out`], the sim's actuator; or a scripted
//! reclaim, [`SimSpace::set_nonresident`]) stay out until touched; a touch brings a page
//! back. `Unknown` answers come only from what the simulated check cannot see: pages it
//! can never look at ([`SimSpace::with_unseeable_fraction`]), pages in a transient state it
//! cannot read ([`SimSpace::with_unknown_fraction`], the old scenarios' easy case),
//! non-resident pages for a check that sees only resident ones ([`Sight::ResidentOnly`]),
//! and pages madvd paged out within the interval. A check that reads residency ([`Sight::Residency`], the default) answers
//! `NotAccessed` for a page that was not present and stayed so.
//!
//! [`SimOps`] holds one space per target and implements [`AccessCheck`](crate::AccessCheck);
//! it is the `--ops sim` fallback primitive of `madvd` and the demo.
//!
//! - `pattern`: the scripted access patterns and their per-interval truth ([`Pattern`],
//!   [`Interval`]);
//! - `zipf`: the Zipf key space and the permutation that scatters its keys;
//! - the set of non-resident pages is an [`engine::rangeset::RangeSet`](crate::rangeset::RangeSet);
//! - `space`: the simulated address space, its scenarios and its ground truth ([`SimSpace`]);
//! - `check`: the access check over one space per target ([`SimOps`]).

mod check;
mod pattern;
mod space;
#[cfg(test)]
mod tests;
mod zipf;

pub use check::SimOps;
pub use pattern::{Band, Interval, Pattern, PatternCache, PatternError, Phase, SparseHot, PAGE};
pub use space::{Sight, SimError, SimSpace, SCENARIOS};
pub use zipf::{Feistel, ZipfKeys};
