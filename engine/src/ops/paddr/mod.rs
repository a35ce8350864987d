//! The physical-address access check (`paddr`): kernel DAMON's `paddr` operations
//! (mm/damon/paddr.c, Linux 6.12) from user space, over idle page tracking.
//!
//! - **Targets** are physical address ranges the user sets, or by default the biggest
//!   "System RAM" range of `/proc/iomem`, as DAMON_RECLAIM picks it
//!   (`damon_find_biggest_system_ram`, mm/damon/core.c 6.12; [`crate::kernel::iomem`]). There
//!   is no three-region construction: the regions come from the ranges as given
//!   (`AccessCheck::ranges_are_user_set`). The one target is [`PADDR_TARGET`].
//! - **prepare** (`damon_pa_prepare_access_checks` → `damon_pa_mkold`): the sample's PFN is
//!   marked idle in `/sys/kernel/mm/page_idle/bitmap`. That write goes through rmap
//!   (`page_idle_clear_pte_refs`, mm/page_idle.c), clearing the Accessed bit of *every* page
//!   table mapping the page, as `damon_pa_mkold`'s `rmap_walk` does. The page is read
//!   straight back: one that does not read idle is one page_idle cannot track.
//! - **check** (`damon_pa_check_accesses` → `damon_pa_young`): the bit read back, again
//!   through rmap (`page_idle_bitmap_read` → `page_idle_clear_pte_refs`): still idle ⇒
//!   `NotAccessed`, else `Accessed`. A page that left its LRU list in between (freed,
//!   isolated) is `Unknown`, not a false access.
//!
//! **Unknown, and why.** `damon_get_folio` (mm/damon/ops-common.c 6.12) takes only online
//! pages on an LRU list, and page_idle likewise (`page_idle_get_folio`). So, from
//! `/proc/kpageflags` (include/uapi/linux/kernel-page-flags.h 6.12), a sample answers
//! `Unknown` when its page is: not backed by memory (`KPF_NOPAGE`, `KPF_OFFLINE`); free
//! (`KPF_BUDDY`); slab (`KPF_SLAB`); reserved (`KPF_RESERVED`: kernel image, firmware);
//! a hugetlbfs page (`KPF_HUGE`, never on an LRU list); any other page not on an LRU list
//! (page tables, kernel allocations, pages still in a per-CPU LRU batch); or did not read
//! idle right after being marked. A THP *tail* page is tracked through its head page, found
//! through `/proc/kpageflags` as the vaddr page_idle check does (`damon_get_folio` takes the
//! folio too, so the kernel also answers for the whole folio).
//!
//! It never runs beside kernel DAMON: two monitors clearing the same Accessed bits blind
//! each other ([`why_not`] reads `nr_kdamonds` and each kdamond's `state`; it never writes).

pub mod owners;
pub mod reclaim;
#[cfg(test)]
mod tests;

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use crate::kernel::damon_sysfs::ADMIN_REL;
use crate::kernel::host::{is_root, page_size};
use crate::kernel::iomem::{self, IomemError};
use crate::kernel::kpageflags::{self as kpf, KpageFlags};
use crate::kernel::page_idle::{words_for, IdleBitmap};
use crate::ops::page_idle::{find_head, idle_answer, MAX_FOLIO_PAGES};
use crate::region::{AddrRange, TargetId};
use crate::sysroot::SysRoot;
use std::path::PathBuf;
use thiserror::Error;

/// The one target of a paddr check: the physical address space.
pub const PADDR_TARGET: TargetId = TargetId(0);

/// Why a paddr check could not be set up.
#[derive(Debug, Error)]
pub enum PaddrError {
    #[error("needs root: physical addresses in /proc/iomem, /proc/kpageflags and the page_idle bitmap are root-only")]
    NotRoot,
    #[error(transparent)]
    Iomem(#[from] IomemError),
    #[error("physical range {range} is not page-aligned (page size {page} bytes)")]
    NotAligned { range: AddrRange, page: u64 },
    #[error("physical range {range} is empty")]
    Empty { range: AddrRange },
    #[error(
        "physical range {range} is not inside one \"System RAM\" range of {iomem} (RAM: {ram})"
    )]
    OutsideRam {
        range: AddrRange,
        iomem: PathBuf,
        ram: String,
    },
    #[error("physical ranges {a} and {b} overlap")]
    Overlap { a: AddrRange, b: AddrRange },
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel DAMON is running ({0}): paddr would clear the Accessed bits it reads")]
    KernelDamon(String),
}

/// Why `paddr` is not usable here, if it is not; reasons in the order a user fixes them.
/// Reads only.
pub fn why_not(root: &SysRoot) -> Option<String> {
    let bitmap = IdleBitmap::path_in(root);
    let kflags = root.proc_file("kpageflags");
    if !bitmap.exists() {
        return Some(format!(
            "CONFIG_IDLE_PAGE_TRACKING is off in this kernel ({} missing): paddr's access check is idle page tracking over PFNs",
            bitmap.display()
        ));
    }
    if !kflags.exists() {
        return Some(format!(
            "{} missing (CONFIG_PROC_PAGE_MONITOR off)",
            kflags.display()
        ));
    }
    if !is_root() {
        return Some(PaddrError::NotRoot.to_string());
    }
    if let Some(busy) = kernel_damon_running(root) {
        return Some(PaddrError::KernelDamon(busy).to_string());
    }
    if let Err(e) = iomem::read_system_ram(root) {
        return Some(e.to_string());
    }
    IdleBitmap::why_not_open(root)
}

/// Which kdamonds of `root`'s DAMON sysfs are on (`kdamonds/N/state`), if any. Reads only.
pub fn kernel_damon_running(root: &SysRoot) -> Option<String> {
    let kd = root.sys_file(ADMIN_REL).join("kdamonds");
    let nr: u32 = std::fs::read_to_string(kd.join("nr_kdamonds"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let on: Vec<String> = (0..nr)
        .filter(|i| {
            std::fs::read_to_string(kd.join(i.to_string()).join("state"))
                .is_ok_and(|s| s.trim() == "on")
        })
        .map(|i| format!("kdamond {i} on"))
        .collect();
    (!on.is_empty()).then(|| on.join(", "))
}

/// Check user-set physical ranges against the RAM map, or pick the biggest RAM range when
/// none is given: each page-aligned, not empty, inside one RAM range; sorted, disjoint.
/// `iomem` only names the map in errors. Pure.
pub fn settle_ranges(
    want: Option<&[AddrRange]>,
    ram: &[AddrRange],
    page: u64,
    iomem: &std::path::Path,
) -> Result<Vec<AddrRange>, PaddrError> {
    let Some(want) = want else {
        return iomem::biggest_system_ram(ram)
            .map(|r| vec![r])
            .ok_or_else(|| IomemError::NoRam(iomem.to_owned()).into());
    };
    let mut out = Vec::with_capacity(want.len());
    for &range in want {
        if range.is_empty() {
            return Err(PaddrError::Empty { range });
        }
        if range.start % page != 0 || range.end % page != 0 {
            return Err(PaddrError::NotAligned { range, page });
        }
        if !ram
            .iter()
            .any(|r| r.start <= range.start && range.end <= r.end)
        {
            return Err(PaddrError::OutsideRam {
                range,
                iomem: iomem.to_owned(),
                ram: ram
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        out.push(range);
    }
    out.sort();
    if let Some(w) = out.windows(2).find(|w| w[0].intersects(&w[1])) {
        return Err(PaddrError::Overlap { a: w[0], b: w[1] });
    }
    Ok(out)
}

/// Why a sample's page cannot be tracked (its `Unknown`), from its kpageflags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untracked {
    /// No `struct page`, or offline memory.
    NoPage,
    /// In the buddy allocator.
    Free,
    Slab,
    /// Reserved: kernel image, firmware, memblock.
    Reserved,
    /// A hugetlbfs page (never on an LRU list).
    Hugetlb,
    /// Not on an LRU list: page tables, kernel allocations, a per-CPU LRU batch.
    NotLru,
    /// A THP tail whose head could not be found.
    TailNoHead,
    /// Did not read idle right after being marked.
    NotIdleAfterMark,
    /// Left its LRU list between prepare and check (freed, isolated).
    LeftLru,
}

/// What a page's kpageflags say about tracking it. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Track,
    /// A THP tail page: track its head.
    Tail,
    Skip(Untracked),
}

/// Classify a page by its kpageflags, in the order `damon_get_folio` refuses a page. Pure.
pub fn classify(flags: u64) -> Class {
    use Untracked::*;
    let has = |b: u64| flags & b != 0;
    if has(kpf::KPF_NOPAGE) || has(kpf::KPF_OFFLINE) {
        Class::Skip(NoPage)
    } else if has(kpf::KPF_BUDDY) {
        Class::Skip(Free)
    } else if has(kpf::KPF_SLAB) {
        Class::Skip(Slab)
    } else if has(kpf::KPF_RESERVED) {
        Class::Skip(Reserved)
    } else if has(kpf::KPF_HUGE) {
        Class::Skip(Hugetlb)
    } else if has(kpf::KPF_COMPOUND_TAIL) {
        Class::Tail
    } else if !has(kpf::KPF_LRU) {
        Class::Skip(NotLru)
    } else {
        Class::Track
    }
}

/// What happened to the samples so far (cumulative): answered, or `Unknown` and why.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaddrStats {
    pub requested: u64,
    /// Marked idle and read back idle: answered at check.
    pub tracked: u64,
    /// Tracked through a THP head page (also counted in `tracked`).
    pub thp_tail: u64,
    pub no_page: u64,
    pub free: u64,
    pub slab: u64,
    pub reserved: u64,
    pub hugetlb: u64,
    pub not_lru: u64,
    pub tail_no_head: u64,
    pub not_idle_after_mark: u64,
    pub left_lru: u64,
}

impl PaddrStats {
    fn count(&mut self, why: Untracked) {
        use Untracked::*;
        *match why {
            NoPage => &mut self.no_page,
            Free => &mut self.free,
            Slab => &mut self.slab,
            Reserved => &mut self.reserved,
            Hugetlb => &mut self.hugetlb,
            NotLru => &mut self.not_lru,
            TailNoHead => &mut self.tail_no_head,
            NotIdleAfterMark => &mut self.not_idle_after_mark,
            LeftLru => &mut self.left_lru,
        } += 1;
    }
}

/// The paddr check over physical ranges.
pub struct PAddr {
    ranges: Vec<AddrRange>,
    page: u64,
    bitmap: IdleBitmap,
    kpageflags: KpageFlags,
    /// Per sample of the last prepare: the PFN tracked (its head for a THP tail).
    tracked: Vec<Option<u64>>,
    cost: MonitorCost,
    stats: PaddrStats,
}

impl PAddr {
    /// A check over `ranges` (`None`: the biggest System RAM range) of `root`: root only,
    /// its files opened, refused beside a running kdamond, each range checked by
    /// [`settle_ranges`] — in that order.
    pub fn new(root: &SysRoot, ranges: Option<&[AddrRange]>) -> Result<Self, PaddrError> {
        if !is_root() {
            return Err(PaddrError::NotRoot);
        }
        let mut check = Self::over(root, Vec::new(), page_size())?;
        if let Some(busy) = kernel_damon_running(root) {
            return Err(PaddrError::KernelDamon(busy));
        }
        let ram = iomem::read_system_ram(root)?;
        check.ranges = settle_ranges(ranges, &ram, check.page, &iomem::path_in(root))?;
        Ok(check)
    }

    /// A check over `ranges` as given (already settled), `page` bytes per PFN.
    pub fn over(root: &SysRoot, ranges: Vec<AddrRange>, page: u64) -> Result<Self, PaddrError> {
        let path = IdleBitmap::path_in(root);
        let bitmap = IdleBitmap::open(root).map_err(|source| PaddrError::Open { path, source })?;
        let kpageflags = KpageFlags::open(root).map_err(|source| PaddrError::Open {
            path: root.proc_file("kpageflags"),
            source,
        })?;
        Ok(Self {
            ranges,
            page,
            bitmap,
            kpageflags,
            tracked: Vec::new(),
            cost: MonitorCost::default(),
            stats: PaddrStats::default(),
        })
    }

    /// The physical ranges monitored.
    pub fn ranges(&self) -> &[AddrRange] {
        &self.ranges
    }

    pub fn page_size(&self) -> u64 {
        self.page
    }

    pub fn stats(&self) -> PaddrStats {
        self.stats
    }

    fn io_err(&self, source: std::io::Error) -> AccessError {
        AccessError::Io {
            path: self.bitmap.path().to_owned(),
            source,
        }
    }

    fn own(&self, id: TargetId) -> Result<(), AccessError> {
        (id == PADDR_TARGET)
            .then_some(())
            .ok_or_else(|| AccessError::Other {
                target: id,
                msg: format!("the paddr check has one target, {PADDR_TARGET}"),
            })
    }

    /// The PFN to track for `pfn`, or why it cannot be tracked.
    fn resolve(&mut self, pfn: u64) -> Result<u64, Untracked> {
        self.cost.syscalls += 1;
        let flags = self.kpageflags.read(pfn).ok_or(Untracked::NoPage)?;
        match classify(flags) {
            Class::Track => Ok(pfn),
            Class::Skip(why) => Err(why),
            Class::Tail => {
                let first = pfn.saturating_sub(MAX_FOLIO_PAGES - 1);
                self.cost.syscalls += 1;
                let run = self
                    .kpageflags
                    .read_run(first, (pfn - first + 1) as usize)
                    .ok_or(Untracked::TailNoHead)?;
                let head = find_head(first, &run).ok_or(Untracked::TailNoHead)?;
                self.stats.thp_tail += 1;
                Ok(head)
            }
        }
    }

    /// Whether each of `pfns` reads idle now.
    fn idle_now(&mut self, pfns: &[u64]) -> Result<Vec<Option<bool>>, AccessError> {
        self.cost.syscalls += 1;
        self.bitmap.idle_of(pfns).map_err(|e| self.io_err(e))
    }
}

impl AccessCheck for PAddr {
    fn name(&self) -> &'static str {
        "paddr"
    }

    fn ranges_are_user_set(&self) -> bool {
        true
    }

    fn target_ranges(&mut self, id: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        self.own(id)?;
        Ok(self.ranges.clone())
    }

    fn prepare(&mut self, id: TargetId, samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.own(id)?;
        self.stats.requested += samples.len() as u64;
        let mut tracked = Vec::with_capacity(samples.len());
        for s in samples.iter() {
            match self.resolve(s.addr / self.page) {
                Ok(pfn) => tracked.push(Some(pfn)),
                Err(why) => {
                    self.stats.count(why);
                    tracked.push(None);
                }
            }
        }
        // damon_pa_mkold: mark idle (rmap clears every mapping's Accessed bit), read back.
        let pfns: Vec<u64> = tracked.iter().flatten().copied().collect();
        if !pfns.is_empty() {
            self.cost.syscalls += 1;
            let words = words_for(pfns.iter().copied());
            self.bitmap.set_idle(&words).map_err(|e| self.io_err(e))?;
            let back = self.idle_now(&pfns)?;
            for (t, idle) in tracked.iter_mut().filter(|t| t.is_some()).zip(back) {
                if idle == Some(true) {
                    self.stats.tracked += 1;
                } else {
                    self.stats.count(Untracked::NotIdleAfterMark);
                    *t = None;
                }
            }
        }
        self.tracked = tracked;
        Ok(())
    }

    fn check(
        &mut self,
        id: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        self.own(id)?;
        out.iter_mut().for_each(|o| *o = Access::Unknown);
        // Which tracked pages are still on an LRU list (a freed page reads "not idle").
        let mut live: Vec<(usize, u64)> = Vec::with_capacity(samples.len());
        for (i, t) in self.tracked.iter().enumerate().take(samples.len()) {
            let Some(pfn) = *t else { continue };
            self.cost.syscalls += 1;
            match self.kpageflags.read(pfn).map(classify) {
                Some(Class::Track) => live.push((i, pfn)),
                _ => self.stats.left_lru += 1,
            }
        }
        // damon_pa_young: the bit read back through rmap. page_idle reads a page that is
        // off its LRU list at that moment (isolated for a list move, being freed) as "not
        // idle", where damon_get_folio would skip it: an "accessed" page is checked once
        // more and is Unknown if it left its list meanwhile.
        let pfns: Vec<u64> = live.iter().map(|l| l.1).collect();
        if !pfns.is_empty() {
            let idle = self.idle_now(&pfns)?;
            for ((i, pfn), idle) in live.into_iter().zip(idle) {
                out[i] = idle_answer(idle);
                if out[i] == Access::Accessed {
                    self.cost.syscalls += 1;
                    if self.kpageflags.read(pfn).map(classify) != Some(Class::Track) {
                        self.stats.left_lru += 1;
                        out[i] = Access::Unknown;
                    }
                }
            }
        }
        self.cost.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }
}
