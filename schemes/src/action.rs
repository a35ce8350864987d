//! Scheme actions. All but `stat` and `reclaim_cgroup` map onto the engine's [`Advice`], which
//! has no destructive variant: `dontneed`, `free` or `remove` can be written neither in a
//! policy file (the parser rejects them as unknown actions) nor in code. `reclaim_cgroup` acts
//! on physical memory (`madvd run --paddr`): it asks the cgroups that own the selected cold
//! bytes to reclaim that much (cgroup v2 `memory.reclaim`; planned by [`crate::reclaim`]).

use engine::Advice;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a scheme does to the regions it selects (`enum damos_action`, include/linux/damon.h
/// 6.12, restricted to the advice Linux accepts through `process_madvise`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename = "Action", rename_all = "lowercase")]
pub enum Action {
    /// `MADV_PAGEOUT`: reclaim now.
    Pageout,
    /// `MADV_COLD`: deactivate, so the kernel reclaims these pages first under pressure.
    Cold,
    /// `MADV_WILLNEED`: read ahead / swap in.
    Willneed,
    /// `MADV_COLLAPSE`: collapse into transparent huge pages (remote `MADV_HUGEPAGE` is
    /// refused by Linux; this is the remote way).
    Collapse,
    /// Count only (`DAMOS_STAT`).
    Stat,
    /// Physical memory only: write the cold bytes the scheme selected in each owning cgroup
    /// to that cgroup's `memory.reclaim` (cgroup v2). The kernel picks the pages by its LRU
    /// within the cgroup, not the exact pages selected.
    #[serde(rename = "reclaim_cgroup")]
    ReclaimCgroup,
    /// Split the transparent huge pages of the selected regions, giving back their
    /// untouched 4 KiB subpages: `MADV_PAGEOUT` of the first 4 KiB page of each whole
    /// 2 MiB-aligned huge page inside. A page-out of part of a PMD-mapped huge page splits
    /// it (`madvise_cold_or_pageout_pte_range`, mm/madvise.c 6.12 and 6.18: `next - addr !=
    /// HPAGE_PMD_SIZE` → `split_folio`), and the split of an anonymous huge page maps each
    /// zero-filled subpage to the shared zero page and frees it (`remap_page(...,
    /// RMP_USE_SHARED_ZEROPAGE)`: `__split_huge_page`, mm/huge_memory.c 6.12;
    /// `__folio_split` 6.18) — what the kernel's underused-THP shrinker does, without its
    /// machine-wide `max_ptes_none`, and without swap. The touched subpages stay resident
    /// (the one paged-out page goes to swap if it was touched and there is swap). Then
    /// `MADV_COLD` of the whole 2 MiB clears their Accessed bits and young flags: khugepaged
    /// rebuilds a huge page over zero-page entries (up to `max_ptes_none`, 511 by default)
    /// when one of its subpages reads referenced (`hpage_collapse_scan_pmd`,
    /// mm/khugepaged.c 6.12: `pte_young || folio_test_young || folio_test_referenced`), and
    /// kernel DAMON's sampling moves a young PTE's bit into the folio's young flag
    /// (`damon_ptep_mkold`, mm/damon/ops-common.c 6.12). It acts only where there is a huge
    /// page to split: the actuator reads each 2 MiB block's pagemap and `/proc/kpageflags`
    /// just before ([`Advice::Split`], `engine::actuator::huge`), and a block that is not one
    /// PMD-sized THP (small pages, already split, the huge zero page, not resident) is not
    /// advised, not charged, and a range wholly without one is skipped for a while
    /// (`runtime/known_out.rs`).
    Split,
}

impl Action {
    pub const ALL: [Action; 7] = [
        Action::Pageout,
        Action::Cold,
        Action::Willneed,
        Action::Collapse,
        Action::Stat,
        Action::ReclaimCgroup,
        Action::Split,
    ];

    /// The advice to apply, `None` for `stat` and `reclaim_cgroup` (no process to advise).
    pub const fn advice(self) -> Option<Advice> {
        match self {
            Action::Pageout => Some(Advice::Pageout),
            Action::Split => Some(Advice::Split),
            Action::Cold => Some(Advice::Cold),
            Action::Willneed => Some(Advice::Willneed),
            Action::Collapse => Some(Advice::Collapse),
            Action::Stat | Action::ReclaimCgroup => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Action::Pageout => "pageout",
            Action::Cold => "cold",
            Action::Willneed => "willneed",
            Action::Collapse => "collapse",
            Action::Stat => "stat",
            Action::ReclaimCgroup => "reclaim_cgroup",
            Action::Split => "split",
        }
    }

    /// Whether the action acts on physical memory (owners by cgroup) rather than on a
    /// process's virtual addresses: only `madvd run --paddr` runs it, and `--paddr` runs
    /// nothing else but `stat`.
    pub const fn is_physical(self) -> bool {
        matches!(self, Action::ReclaimCgroup)
    }

    /// Which score orders regions under a quota. The kernel's vaddr ops
    /// (`damon_va_scheme_score()`, mm/damon/vaddr.c 6.12) use the cold score for PAGEOUT and
    /// no prioritization (`DAMOS_MAX_SCORE`) for the rest; paddr (`damon_pa_scheme_score()`,
    /// mm/damon/paddr.c 6.12) uses the cold score for LRU_DEPRIO and the hot score for
    /// LRU_PRIO. madvd follows paddr's reasoning for the actions vaddr leaves unordered:
    /// `cold` (a deprioritization) is ordered coldest first, `willneed` and `collapse` (which
    /// pay off for hot memory) hottest first, `stat` not at all.
    pub const fn priority(self) -> Priority {
        match self {
            Action::Pageout | Action::Cold | Action::ReclaimCgroup | Action::Split => {
                Priority::Cold
            }
            Action::Willneed | Action::Collapse => Priority::Hot,
            Action::Stat => Priority::None,
        }
    }
}

/// Which kernel score a scheme's regions are ordered by under a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Cold,
    Hot,
    None,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_but_stat_is_non_destructive_advice() {
        for a in Action::ALL {
            match a.advice() {
                Some(adv) => assert!(Advice::ALL.contains(&adv)),
                None => assert!(matches!(a, Action::Stat | Action::ReclaimCgroup)),
            }
            assert_eq!(a.to_string(), a.name());
        }
    }
}
