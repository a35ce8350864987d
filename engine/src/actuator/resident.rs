//! The residency cut: before a page-out (or `cold`) piece is advised, the actuator reads the
//! target's pagemap over it and cuts out the pages that are not resident (swapped out, or
//! never faulted in). Page-out of such a page does nothing (`madvise_cold_or_pageout_pte_range`
//! skips every non-present PTE: `if (!pte_present(ptent)) continue;`, mm/madvise.c 6.12), so
//! advising it only spends quota: in the issue-14 runs madvd advised 2–2.7× the bytes it
//! saved. The cut-out bytes are reported [`ApplyErrorKind::NotResident`](crate::report::ApplyErrorKind::NotResident);
//! the schemes refund them to the size quota (`QuotaState::refund`) and a range with no
//! resident byte keeps its age (`Monitor::apply_report`).
//!
//! Differs from the kernel: `damos_apply_scheme()` (mm/damon/core.c 6.12) charges the whole
//! region to the size quota, resident or not. See docs/architecture.md.
//!
//! Bounded: pagemap is read in batches of [`SCAN_BATCH_PAGES`] entries, at most
//! [`ActuatorConfig::resident_scan_max`](super::ActuatorConfig::resident_scan_max) bytes of
//! address space per round; beyond that, or when pagemap cannot be read, a piece is advised
//! uncut (and its bytes are not counted resident). The time of the reads is charged to the
//! request's `elapsed_ns`, so the time quota pays for the scan too.
//!
//! Which pages are resident: [`Residency::Present`], and [`Residency::Special`] (a migration
//! entry is a page in memory being moved; the others are rare and left to the kernel). Swapped
//! and empty entries are cut.

use crate::kernel::pagemap::{PagemapEntry, Residency};
use crate::region::AddrRange;

/// Pagemap entries per read: 64 Ki entries (512 KiB) cover 256 MiB of 4 KiB pages.
pub const SCAN_BATCH_PAGES: usize = 64 * 1024;

/// Whether a page-out of the page behind `e` could do anything.
pub fn is_resident(e: PagemapEntry) -> bool {
    matches!(e.residency(), Residency::Present | Residency::Special)
}

/// Cut `range` (page-aligned) by the entries of its pages (`entries[i]` for the page at
/// `range.start + i * page`): emit each maximal run of resident pages, in order, and return
/// the bytes not resident. Pages past the end of `entries` (a short read) count as resident
/// (unknown: advised as before). Emitted bytes + returned bytes == `range.len()`.
pub fn resident_runs(
    range: AddrRange,
    page: u64,
    entries: &[PagemapEntry],
    emit: impl FnMut(AddrRange),
) -> u64 {
    super::idle::idle_runs(range, page, entries, &[], emit).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::pagemap::{PM_PRESENT, PM_SWAP};
    use proptest::prelude::*;

    const P: u64 = 4096;

    fn e(present: bool, swapped: bool) -> PagemapEntry {
        PagemapEntry(if present { PM_PRESENT } else { 0 } | if swapped { PM_SWAP | 1 } else { 0 })
    }

    #[test]
    fn cuts_swapped_and_empty_pages_out() {
        let r = AddrRange::new(0x10_0000, 0x10_0000 + 6 * P);
        let entries = [
            e(true, false),
            e(true, false),
            e(false, true),
            e(false, false),
            e(true, false),
            // migration entry: in memory, kept
            PagemapEntry(PM_SWAP | 25),
        ];
        let mut runs = Vec::new();
        let out = resident_runs(r, P, &entries, |x| runs.push(x));
        assert_eq!(out, 2 * P);
        assert_eq!(
            runs,
            [
                AddrRange::new(r.start, r.start + 2 * P),
                AddrRange::new(r.start + 4 * P, r.end)
            ]
        );
        // All out: nothing emitted.
        let mut runs = Vec::new();
        assert_eq!(
            resident_runs(r, P, &[e(false, true); 6], |x| runs.push(x)),
            r.len()
        );
        assert!(runs.is_empty());
        // A short read: the pages past it are advised as before.
        let mut runs = Vec::new();
        assert_eq!(resident_runs(r, P, &[e(false, true)], |x| runs.push(x)), P);
        assert_eq!(runs, [AddrRange::new(r.start + P, r.end)]);
    }

    proptest! {
        /// Every byte is either emitted once (resident, in order, disjoint, maximal runs) or
        /// counted not resident; exactly the resident pages are emitted.
        #[test]
        fn runs_partition_the_range(bits in proptest::collection::vec(0u8..3, 0..300), base in 0u64..1000) {
            let start = base * P;
            let range = AddrRange::new(start, start + bits.len() as u64 * P);
            let entries: Vec<PagemapEntry> =
                bits.iter().map(|b| match b { 0 => e(true, false), 1 => e(false, true), _ => e(false, false) }).collect();
            let mut runs: Vec<AddrRange> = Vec::new();
            let out = resident_runs(range, P, &entries, |x| runs.push(x));
            let emitted: u64 = runs.iter().map(|r| r.len()).sum();
            prop_assert_eq!(emitted + out, range.len());
            for w in runs.windows(2) {
                // Disjoint, in order, and never adjacent (maximal).
                prop_assert!(w[0].end < w[1].start);
            }
            for (i, b) in bits.iter().enumerate() {
                let a = start + i as u64 * P;
                let inside = runs.iter().any(|r| r.start <= a && a < r.end);
                prop_assert_eq!(inside, *b == 0, "page {}", i);
            }
        }
    }
}
