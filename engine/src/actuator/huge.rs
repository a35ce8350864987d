//! The huge-page check of `split` and `collapse` ([`Advice::Split`], [`Advice::Collapse`]):
//! before it acts, the actuator reads which 2 MiB-aligned blocks of a piece are mapped to one
//! PMD-sized transparent huge page.
//!
//! - `split` splits only those. The other blocks are reported
//!   [`ApplyErrorKind::NotHuge`](crate::report::ApplyErrorKind::NotHuge): not advised,
//!   refunded to the size quota, and a range wholly without one keeps its age and is skipped
//!   by the next walks for a while (`schemes::runtime::known_out`), as the residency cut does
//!   for memory that is not resident (`resident.rs`).
//! - `collapse` collapses only the others: the blocks already huge are reported
//!   [`ApplyErrorKind::AlreadyHuge`](crate::report::ApplyErrorKind::AlreadyHuge), with the
//!   same refund, age and skip.
//!
//! Why, for `split`: it is a page-out of a block's first 4 KiB page and a cold of the 2 MiB.
//! On a block of small pages that pages out one page and deactivates the rest — it frees
//! nothing that is bloat, yet it was charged and (under `--ops damon`, whose regions keep
//! their age after madvd's advice) chosen again and again: in the lab 481 MiB of `split` were
//! advised for a 32 MiB sparse mapping, and without an address filter the advice went to idle
//! ranges of the target with no huge page at all (docs/performance.md, "THP tuning per
//! workload").
//!
//! Why, for `collapse`: a hot dense region stays hot once collapsed, so it matches again as
//! soon as its age allows, and a `MADV_COLLAPSE` of a range already PMD-mapped does nothing
//! (`SCAN_PMD_MAPPED`) but still costs the target: `madvise_collapse` (mm/khugepaged.c 6.12)
//! drains every CPU's LRU caches (`lru_add_drain_all`) and takes the target's mmap lock for
//! each block. On the host 1.07 GiB of `collapse` was advised in one 65 s run for 256 MiB of
//! dense memory, in the lab 86–636 MiB per run for 16 MiB (docs/performance.md, "THP tuning
//! per workload").
//!
//! The rule, per block of `HPAGE_PMD_SIZE / page` (512) pages:
//! - pagemap (`/proc/PID/pagemap`): every page present, their PFNs one run starting at a
//!   multiple of 512. A PMD mapping reports each subpage present at `pmd_pfn + index`
//!   (`pagemap_pmd_range`, fs/proc/task_mmu.c 6.12), so does a PTE-mapped huge page;
//! - `/proc/kpageflags` of those 512 PFNs: the first `KPF_THP | KPF_COMPOUND_HEAD` without
//!   `KPF_ZERO_PAGE` (the huge zero page reads `KPF_ZERO_PAGE | KPF_THP`, and a page-out
//!   leaves it alone: `is_huge_zero_pmd`, mm/madvise.c 6.12), every other one
//!   `KPF_THP | KPF_COMPOUND_TAIL` (`stable_page_flags`, fs/proc/page.c 6.12: `KPF_THP` is
//!   set on any large anonymous folio, "not just PMD-sized ones", so the tails are what tell
//!   the order).
//!
//! Such a block is one PMD-order folio mapped whole: the page-out of its first page splits it,
//! PMD-mapped (`next - addr != HPAGE_PMD_SIZE` → `split_folio`) or PTE-mapped (`nr <
//! folio_nr_pages(folio)` → `split_folio`), `madvise_cold_or_pageout_pte_range`, mm/madvise.c
//! 6.12. For `collapse` a PTE-mapped huge page counts as huge too: the check cannot tell it
//! from a PMD mapping (both read as one PFN run), and `MADV_COLLAPSE` of it would only remap
//! the same folio by a PMD (`collapse_pte_mapped_thp` is for file THPs; for anonymous memory
//! khugepaged copies into a new one, `collapse_huge_page`): no TLB reach gained that is worth
//! a copy of 2 MiB.
//!
//! Unknown answers leave the block to the old behaviour (advised, not counted checked): a
//! short read, pagemap or kpageflags not readable (not root: PFNs read 0), or past the scan
//! bound (`ActuatorConfig::resident_scan_max`, shared with the residency cut). The reads'
//! time is charged to the request, so the time quota pays for them.

use super::apply::{add_error, push_run, Piece};
use super::cut::HPAGE_PMD_SIZE;
use super::resident::SCAN_BATCH_PAGES;
use super::{Actuator, ActuatorSys, Target};
use crate::advice::Advice;
use crate::kernel::kpageflags::{KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL, KPF_THP, KPF_ZERO_PAGE};
use crate::kernel::pagemap::PagemapEntry;
use crate::region::AddrRange;
use crate::report::{ApplyErrorKind, ApplyReport};

/// What the check says about one 2 MiB block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// One PMD-sized THP, mapped whole: split it.
    Huge,
    /// Nothing to split (small pages, the huge zero page, pages not present).
    NotHuge,
    /// Could not tell: advised as before.
    Unknown,
}

/// From the pagemap entries of a block's `pages` pages: the PFN of its would-be head, to be
/// checked in kpageflags, or the verdict already. Pure.
pub fn block_head(entries: &[PagemapEntry], pages: usize) -> Result<u64, Block> {
    if pages == 0 || entries.len() < pages {
        return Err(Block::Unknown);
    }
    let first = entries[0];
    if !first.present() {
        return Err(Block::NotHuge);
    }
    // Present with PFN 0: the PFNs are hidden from us (no CAP_SYS_ADMIN).
    let Some(head) = first.pfn() else {
        return Err(Block::Unknown);
    };
    if head % pages as u64 != 0 {
        return Err(Block::NotHuge);
    }
    let run = entries[1..pages]
        .iter()
        .zip(1u64..)
        .all(|(e, i)| e.pfn() == Some(head + i));
    if run {
        Ok(head)
    } else {
        Err(Block::NotHuge)
    }
}

/// From the kpageflags of the PFNs `head..head + pages`: one PMD-sized THP or not. Pure.
pub fn classify_flags(flags: &[u64], pages: usize) -> Block {
    if pages == 0 || flags.len() < pages {
        return Block::Unknown;
    }
    let head = flags[0];
    let head_ok = head & (KPF_THP | KPF_COMPOUND_HEAD) == KPF_THP | KPF_COMPOUND_HEAD
        && head & KPF_ZERO_PAGE == 0;
    let tails_ok = flags[1..pages]
        .iter()
        .all(|f| f & (KPF_THP | KPF_COMPOUND_TAIL) == KPF_THP | KPF_COMPOUND_TAIL);
    if head_ok && tails_ok {
        Block::Huge
    } else {
        Block::NotHuge
    }
}

impl<S: ActuatorSys> Actuator<S> {
    /// The huge-page check (module doc): `pieces` (whole 2 MiB-aligned blocks, from
    /// `plan_range`) become the runs of blocks to act on: for `split` the huge ones
    /// (`resident` set; clear where unknown), for `collapse` the others; the rest is reported
    /// `NotHuge` or `AlreadyHuge`.
    pub(super) fn huge_check(
        &mut self,
        target: &Target<'_>,
        advice: Advice,
        pieces: Vec<Piece>,
        report: &mut ApplyReport,
        scan_left: &mut u64,
    ) -> Vec<Piece> {
        let page = self.page;
        let block = HPAGE_PMD_SIZE.max(page);
        let pages = (block / page) as usize;
        // Whole blocks per pagemap read.
        let batch = (SCAN_BATCH_PAGES as u64 * page).max(block) / block * block;
        let split = advice == Advice::Split;
        let (kind, what) = if split {
            (ApplyErrorKind::NotHuge, "split's huge-page check")
        } else {
            (ApplyErrorKind::AlreadyHuge, "collapse's huge-page check")
        };
        let mut flags = Vec::new();
        self.scan_pieces(
            target,
            pieces,
            (report, scan_left),
            (batch, what),
            |act, req, chunk, entries, report, out| {
                let t0 = act.sys.cpu_ns();
                let mut ok = true;
                let mut cut = 0;
                for (i, h) in (chunk.start..chunk.end).step_by(block as usize).enumerate() {
                    let ents = entries.get(i * pages..).unwrap_or(&[]);
                    let verdict = match block_head(ents, pages) {
                        Err(v) => v,
                        Ok(_) if !ok => Block::Unknown,
                        Ok(head) => match act.sys.kpageflags(head, pages, &mut flags) {
                            Ok(()) => classify_flags(&flags, pages),
                            Err(e) => {
                                tracing::debug!("{what}: kpageflags: {e}");
                                ok = false;
                                Block::Unknown
                            }
                        },
                    };
                    let range = AddrRange::new(h, h + block);
                    match (verdict, split) {
                        // A huge page is resident; a block to collapse may hold pages that
                        // are not (its residency is not what was read).
                        (Block::Huge, true) => push_run(out, req, range, true),
                        (Block::Unknown, _) | (Block::NotHuge, false) => {
                            push_run(out, req, range, false)
                        }
                        (Block::NotHuge, true) | (Block::Huge, false) => cut += block,
                    }
                }
                // The kpageflags reads' time, after the pagemap read's.
                let o = &mut report.outcomes[req];
                o.elapsed_ns = o
                    .elapsed_ns
                    .saturating_add(act.sys.cpu_ns().saturating_sub(t0));
                if split {
                    act.stats.not_huge += cut;
                } else {
                    act.stats.already_huge += cut;
                }
                add_error(&mut o.errors, kind, cut);
                ok
            },
        )
    }
}

#[cfg(test)]
#[path = "huge_tests.rs"]
mod tests;
