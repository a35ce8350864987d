//! Which rules the monitor runs: madvd's, with its documented departures from the kernel's
//! monitoring core, or the kernel's exactly ([`Departures`]); and how a merge rounds
//! ([`MergeRounding`](super::core::MergeRounding)).

/// madvd's documented departures from the kernel's monitoring core (`mm/damon/core.c` and
/// `mm/damon/vaddr.c`, Linux 6.12.117; checked against 6.12.118), on or off as a whole.
///
/// With [`Departures::Madvd`] (the default) the monitor runs:
/// - `Unknown` answers: they do not count as accesses, and at the aggregation boundary each
///   counts at the previous rate unless the known answers show a change
///   ([`finalize_unknown`](super::finalize_unknown)); a region with no known answer in an
///   aggregation carries its count and does not age;
/// - a sample budget (`AccessCheck::max_samples_per_sec`): regions not sampled in an
///   interval answer `Unknown`;
/// - at least `min_nr_regions` regions after init and after each merge
///   ([`split_to_min_regions`](super::split_to_min_regions)).
///
/// With [`Departures::Kernel`] the monitor runs the kernel's rules exactly: an `Unknown`
/// answer counts as not accessed (`damon_va_young()` answers false for a page it cannot
/// find), every region ages at every aggregation, every region is sampled in every interval
/// (no budget), and the region count is bounded below only by the merge size limit. For a
/// check that never answers `Unknown` and has no budget — the simulator reading residency —
/// the two give the same regions unless `split_to_min_regions` has work to do.
///
/// Not switched (no kernel behaviour to compare with, or the same for one monitor): a target
/// with fewer than three mappings is monitored on what exists where the kernel gives up
/// (`monitoring_ranges`); the split's `last_nr_regions` is per monitor rather than the
/// kernel's function-static.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Departures {
    /// madvd's rules (the default).
    #[default]
    Madvd,
    /// The kernel's rules exactly (for comparison: what the kernel would report).
    Kernel,
}
