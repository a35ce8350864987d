//! The refault probe: an access check for kernels that show user space no access bits
//! (no page_idle, no soft-dirty, no DAMON vaddr) — it needs only swap and `process_madvise`
//! (Linux 5.10+; remote `MADV_PAGEOUT` since 5.10).
//!
//! Each sampling interval, for each region's sample page: `MADV_PAGEOUT` that one page; at
//! the check read `/proc/PID/pagemap` bits 63 / 62 (present / swapped, pagemap.rst 6.12):
//! - present again ⇒ **Accessed** (the workload faulted it back in);
//! - still swapped ⇒ **NotAccessed**;
//! - neither (unmapped, zapped by the target) ⇒ **Unknown**.
//!
//! Residency is evidence: a sample page that is already out at prepare (swapped, or never
//! touched) needs no page-out. It is answered from its entries at prepare and at check
//! ([`absent_answer`]): still out ⇒ NotAccessed, faulted in ⇒ Accessed, moved ⇒ Unknown.
//! Its own page-out at prepare is what makes a probed page "absent at the start" too: the
//! two rules are one. Such samples cost no page-out, need no swap headroom and are not
//! charged to the page-out budget — but when the budget leaves samples out, absent samples
//! are left out at the same rate ([`leave_out`]): a sample's chance of an answer must not
//! depend on its residency, which depends on access. Ranges a scheme advised in the interval stay Unknown
//! either way (`MADV_COLLAPSE` would bring absent pages in without an access; a page-out by
//! the actuator is no evidence about accesses before it).
//!
//! Pages a page-out would not move ("never left") are never probed — they would look
//! accessed without being so: the probe picks its sample page inside private anonymous,
//! unlocked memory (maps and `VmLck`, re-read each update interval), and at prepare time
//! reads the pagemap around the monitor's address to pick a page that is present, not part
//! of a huge page (`/proc/kpageflags` of its PFN; without PFNs — not root — or with locked
//! memory, VMAs are classified from smaps `VmFlags`/`AnonHugePages` instead, which costs in
//! proportion to the target's size), and mapped by this process alone (bit 56; `MADV_PAGEOUT` skips pages
//! shared with another process, e.g. touched before a fork: `madvise_cold_or_pageout_pte_range`,
//! mm/madvise.c 6.12). A region with no such page answers Unknown. With no swap, or free swap
//! under the pages it would use plus a margin, every sample that would need a page-out is
//! Unknown.
//!
//! Why there is no "did it leave?" read right after the page-out: a hot page is faulted back
//! within microseconds, often before the batch call returns, so such a read would turn hot
//! samples into Unknown. The conditions that keep a page in (no swap, shared, locked, THP)
//! are checked before instead.
//!
//! Cost (measured by hand on this host, issue #5): one single-page PAGEOUT 14–26 µs of the
//! caller's CPU, a pagemap read ~1.5 µs. So: its own defaults (100 ms / 2 s), every sample
//! page of an interval paged out in as few `process_madvise` calls as possible (one iovec per
//! page, up to `IOV_MAX`), one pagemap pass at prepare and one at check (pages near each other
//! share a read), and a budget in samples per second that the monitor respects. Ranges a
//! scheme just advised are not probed in that interval ([`AccessCheck::note_advised`]). The
//! probe's page-outs are monitoring cost ([`MonitorCost::probe_pageouts`]), never savings.

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq, TargetTable};
use crate::advice::Advice;
use crate::attrs::Attrs;
use crate::kernel::kpageflags::{is_huge, KpageFlags};
use crate::kernel::madvise::{process_madvise, vector_madvise, Step, VectorCall};
use crate::kernel::pagemap::{PagemapEntry, Residency};
use crate::kernel::smaps::SmapsVma;
use crate::kernel::swap::read_swap_mem;
use crate::kernel::thp::{thp_mode, ThpMode};
use crate::ops::common::{absent_answer, absent_at_start, pagemap_error, Entry, Targets};
use crate::process::Process;
use crate::region::{AddrRange, TargetId};
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::os::fd::AsFd;

/// Tunables of the probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProbeConfig {
    /// Samples (page-outs) per second the monitor may ask for. `None`: no limit.
    pub max_samples_per_sec: Option<f64>,
    /// Page-outs per second at most, whatever the monitor asks: the costly part of a sample,
    /// bounded on its own so the probe's CPU does not grow with the share of the target's
    /// address space that is probe-able. Samples over it answer Unknown. `None`: no limit.
    pub max_pageouts_per_sec: Option<f64>,
    /// Pages looked at, from the monitor's address on, to find a present, exclusive page.
    pub window_pages: usize,
    /// Free swap the probe leaves alone (bytes), besides the pages of one interval.
    pub min_swap_free: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        // Measured (docs/performance.md, "Refault probe"): ~35-40 µs of the monitor's CPU per
        // page-out (the page-out itself, zram compression included, and the pagemap reads),
        // so 100 page-outs/s ≈ 0.4% of a core whatever the target's size; the monitor may ask
        // for more samples (250/s), those outside probe-able memory cost no page-out.
        Self {
            max_samples_per_sec: Some(250.0),
            max_pageouts_per_sec: Some(100.0),
            window_pages: 16,
            min_swap_free: 16 << 20,
        }
    }
}

/// What happened to the samples so far (cumulative; for benches, tests and `--json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeStats {
    /// Samples asked for.
    pub requested: u64,
    /// Samples paged out and checked.
    pub probed: u64,
    /// Samples whose page was already out at prepare (swapped or never touched), answered
    /// from residency at check without a page-out.
    pub absent: u64,
    /// Region had no probe-able memory (not private anonymous, huge, locked).
    pub unprobeable: u64,
    /// No present, exclusive page in the window around the monitor's address.
    pub not_resident: u64,
    /// Skipped: inside a range a scheme just advised.
    pub advised: u64,
    /// Skipped: no swap, or free swap too low.
    pub no_swap: u64,
    /// Skipped: over the page-out budget (`max_pageouts_per_sec`).
    pub over_budget: u64,
    /// Absent samples left out (Unknown) to match the share of `over_budget` ([`leave_out`]);
    /// not counted in `absent`.
    pub absent_left_out: u64,
    /// Samples that needed a page-out (a present, exclusive, non-huge page was found), before
    /// the budget: `over_budget` of them were left out.
    pub wanted_pageout: u64,
    /// Skipped: the candidate pages were part of a huge page (kpageflags).
    pub huge: u64,
    /// The page-out of that page failed (range unmapped since the last maps read, ...).
    pub pageout_failed: u64,
    pub accessed: u64,
    pub not_accessed: u64,
    /// Neither present nor swapped at check (unmapped or zapped meanwhile); for an absent
    /// sample: its entry moved (another swap slot, discarded, a migration entry).
    pub vanished: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prep {
    /// Paged out at prepare; answer from the pagemap at check.
    Probed(u64),
    /// Already out at prepare (its entry then): answer from residency at check.
    Absent(u64, PagemapEntry),
    /// Not probed this interval: Unknown.
    Skip,
}

struct Target {
    proc: Process,
    /// Private anonymous, non-huge, unlocked VMA ranges, sorted (from the last update).
    probeable: Vec<AddrRange>,
    /// Ranges a scheme advised since the last prepare.
    advised: Vec<AddrRange>,
    /// Per sample of the current interval, in the order prepare got them.
    prep: Vec<Prep>,
    entries: Vec<PagemapEntry>,
    /// Huge pages are told apart per page through `/proc/kpageflags` (no smaps needed).
    per_page_thp: bool,
}

impl Entry for Target {
    fn new(proc: Process) -> Self {
        Target {
            proc,
            probeable: Vec::new(),
            advised: Vec::new(),
            prep: Vec::new(),
            entries: Vec::new(),
            per_page_thp: false,
        }
    }
    fn process(&self) -> &Process {
        &self.proc
    }
    fn into_process(self) -> Process {
        self.proc
    }
}

impl Target {
    /// `n` pagemap entries from `start` into `entries`. A target that exited meanwhile (its
    /// pagemap reads nothing any more, or the read fails) is reported gone.
    fn read_pagemap(&mut self, id: TargetId, start: u64, n: usize) -> Result<(), AccessError> {
        if let Err(e) = self.proc.pagemap().read(start, n, &mut self.entries) {
            return Err(pagemap_error(&mut self.proc, e));
        }
        if self.entries.is_empty() && !self.proc.is_alive() {
            return Err(AccessError::TargetGone(id));
        }
        Ok(())
    }
}

/// The refault probe over live targets (each opened as a [`Process`]).
pub struct Probe {
    root: SysRoot,
    cfg: ProbeConfig,
    page: u64,
    targets: Targets<Target>,
    cost: MonitorCost,
    stats: ProbeStats,
    warned_swap: bool,
    /// Said once that the page-out budget leaves many samples Unknown ([`budget_starved`]).
    warned_budget: bool,
    /// The pagemap hides PFNs from us (no CAP_SYS_ADMIN): kpageflags cannot be used.
    pfn_hidden: bool,
    /// `/proc/kpageflags` (root only), to skip huge pages per sample page.
    kpageflags: Option<KpageFlags>,
    /// Page-out token bucket: tokens, and when they were last topped up.
    tokens: f64,
    refilled: Option<std::time::Instant>,
    rng: u64,
}

impl Probe {
    pub fn new(root: SysRoot, cfg: ProbeConfig) -> Self {
        let kpageflags = KpageFlags::open(&root).ok();
        Self {
            root,
            cfg,
            page: crate::kernel::host::page_size(),
            targets: Targets::new("the refault probe"),
            cost: MonitorCost::default(),
            stats: ProbeStats::default(),
            warned_swap: false,
            warned_budget: false,
            pfn_hidden: false,
            kpageflags,
            tokens: 0.0,
            refilled: None,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    pub fn process(&self, id: TargetId) -> Option<&Process> {
        self.targets.process(id)
    }

    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    pub fn config(&self) -> ProbeConfig {
        self.cfg
    }
}

/// The page-out budget's cut of one interval's samples: of `chosen` (the samples that need a
/// page-out) keep `allowed` picked uniformly at random, and leave out the same share of
/// `absent` (samples already out, answered from residency at no page-out cost). Returns how
/// many of `chosen` were left out and which of `absent` (their sample indices, removed from
/// `absent`). Pure but for `rng` (xorshift64 state).
///
/// Why the absent ones too: residency depends on access. In a region partly paged out the
/// resident pages are the hot ones and the absent pages the idle ones; rationing only the
/// resident samples leaves the region's known answers leaning to "not accessed" (with half
/// of them left out, a region 10% hot reads about 5%, and a lukewarm region whose idle pages
/// a scheme paged out can read no access for several aggregations and be paged out again,
/// hot pages and all: docs/performance.md, "Reclaim on static workloads"). The monitor's
/// fill-in for Unknown answers is unbiased only when Unknown is independent of access
/// (`monitor::core::finalize_unknown`); leaving out both kinds at one rate makes it so.
pub fn leave_out(
    chosen: &mut Vec<(u64, usize)>,
    absent: &mut Vec<usize>,
    allowed: usize,
    rng: &mut u64,
) -> (usize, Vec<usize>) {
    let wanted = chosen.len();
    if wanted <= allowed {
        return (0, Vec::new());
    }
    let mut pick = |n: usize| {
        // xorshift64: a cheap uniform pick.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng % n as u64) as usize
    };
    let drop = wanted - allowed;
    for _ in 0..drop {
        let k = pick(chosen.len());
        chosen.swap_remove(k);
    }
    // The same share of the absent ones, rounded to nearest.
    let n_absent = (absent.len() * drop + wanted / 2) / wanted;
    let mut left_out = Vec::with_capacity(n_absent);
    for _ in 0..n_absent {
        let k = pick(absent.len());
        left_out.push(absent.swap_remove(k));
    }
    (drop, left_out)
}

/// Whether the page-out budget leaves the monitor short of answers: of at least 1000 samples
/// that needed a page-out, 30% or more were left out (Unknown). A region with no known answer
/// in an aggregation keeps its count and does not age (`monitor::core::finalize_unknown`), so
/// then how fast idle memory comes of age depends on the luck of the draw and on the share
/// of the monitored range that needs no page-out (the binary, holes: the address-space
/// layout), not on the workload (docs/performance.md, "Replay vs reality": 1 s aggregations
/// over ≥ 100 regions left a record's cold set coming of age over 15 aggregations where
/// another took 3).
pub fn budget_starved(s: &ProbeStats) -> bool {
    s.wanted_pageout >= 1000 && s.over_budget * 10 >= s.wanted_pageout * 3
}

/// 100 ms sampling, 2 s aggregation (a page-out per sample is costly), VMAs re-read every
/// 10 s; the kernel's region bounds.
pub fn default_attrs() -> Attrs {
    Attrs {
        sample_us: 100_000,
        aggr_us: 2_000_000,
        ops_update_us: 10_000_000,
        ..Attrs::default()
    }
}

/// Whether a VMA can hold probe sample pages (see the module doc). `thp_possible`: whether a
/// VMA without `nh` can get transparent huge pages later (THP `always`, or `madvise` with `hg`).
pub fn vma_probeable(v: &SmapsVma, thp_mode: ThpMode) -> bool {
    if !v.vma.is_private_anonymous() || v.is_locked() || v.anon_huge_pages > 0 {
        return false;
    }
    // A single-page PAGEOUT inside a huge page splits it (mm/madvise.c 6.12,
    // `madvise_cold_or_pageout_pte_range`): keep away from memory that may become huge.
    match thp_mode {
        ThpMode::Never => true,
        ThpMode::Madvise => !v.has_flag("hg"),
        // THP `always`: only VMAs with no huge page at the last smaps read (checked above);
        // khugepaged may collapse one later, until the next update re-reads smaps.
        ThpMode::Always => true,
    }
}

/// Choose the page to probe for a sample: inside `region ∩ probeable`, at the sample's
/// address if that is probe-able, else at the same relative position within the probe-able
/// part of the region (so the choice stays uniform over it). Returns the page and the end of
/// the probe-able range holding it (the window must not cross it). Pure.
pub fn pick_page(
    probeable: &[AddrRange],
    region: AddrRange,
    addr: u64,
    page: u64,
) -> Option<(u64, u64)> {
    let first = probeable.partition_point(|r| r.end <= region.start);
    let parts = probeable[first..]
        .iter()
        .take_while(|r| r.start < region.end)
        .filter_map(|r| r.intersection(&region))
        .map(|r| AddrRange::new(r.start.next_multiple_of(page), r.end / page * page))
        .filter(|r| !r.is_empty());
    let mut total = 0u64;
    let mut n = 0usize;
    for r in parts.clone() {
        if r.contains(addr) {
            return Some((addr / page * page, r.end));
        }
        total += r.len();
        n += 1;
    }
    if n == 0 || region.is_empty() {
        return None;
    }
    let rel = addr.clamp(region.start, region.end - 1) - region.start;
    let mut off = ((rel as u128 * total as u128) / region.len() as u128) as u64 / page * page;
    for r in parts {
        if off < r.len() {
            return Some((r.start + off, r.end));
        }
        off -= r.len();
    }
    None
}

/// Answer for a page that was paged out at prepare (pagemap bits 63 / 62). A special swap
/// entry (migration, marker: [`Residency::Special`]) is Unknown: a migration entry means the
/// page came back in and is being moved. Pure.
pub fn classify(entry: Option<PagemapEntry>) -> Access {
    match entry.map(PagemapEntry::residency) {
        Some(Residency::Present) => Access::Accessed,
        Some(Residency::Swapped { .. }) => Access::NotAccessed,
        _ => Access::Unknown,
    }
}

/// Whether a page can be a probe sample right now: present, mapped by this process alone,
/// anonymous (bit 61 clear). Pure.
pub fn resident_exclusive(e: PagemapEntry) -> bool {
    e.present() && e.exclusive() && !e.file_or_shared()
}

/// Page out `pages` (sorted, one page each) through `call` with the kernel's vector rule
/// ([`vector_madvise`]: batches of up to `IOV_MAX`, a page that fails skipped after its errno
/// came back at the head of a call). Returns per page whether its page-out was accepted, and
/// the number of calls; an error no page can escape (ESRCH, EPERM, EACCES, ...:
/// [`ends_vector`](crate::kernel::madvise::ends_vector)) ends the run. Pure over `call`.
pub fn pageout_batched(
    pages: &[u64],
    page: u64,
    call: impl FnMut(&[AddrRange]) -> Result<u64, Errno>,
) -> Result<(Vec<bool>, u64), Errno> {
    struct Pageouts<F> {
        call: F,
        ok: Vec<bool>,
        calls: u64,
    }
    impl<F: FnMut(&[AddrRange]) -> Result<u64, Errno>> VectorCall<AddrRange> for Pageouts<F> {
        fn call(&mut self, iov: &[AddrRange]) -> Result<u64, Errno> {
            self.calls += 1;
            (self.call)(iov)
        }
        fn after(&mut self, first: usize, batch: &[AddrRange], step: Step) {
            self.ok[first..first + step.done(batch.len())].fill(true);
        }
    }
    let mut iov: Vec<AddrRange> = pages.iter().map(|&p| AddrRange::new(p, p + page)).collect();
    let mut c = Pageouts {
        call,
        ok: vec![false; pages.len()],
        calls: 0,
    };
    match vector_madvise(&mut iov, page, &mut c).error {
        Some(e) => Err(e),
        None => Ok((c.ok, c.calls)),
    }
}

fn in_any(ranges: &[AddrRange], addr: u64) -> bool {
    ranges.iter().any(|r| r.contains(addr))
}

impl AccessCheck for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn default_attrs(&self) -> Attrs {
        default_attrs()
    }

    fn targets(&mut self) -> Option<&mut dyn TargetTable> {
        Some(&mut self.targets)
    }

    fn max_samples_per_sec(&self) -> Option<f64> {
        self.cfg.max_samples_per_sec
    }

    /// The VMAs from maps. Probe-able memory: private anonymous VMAs, huge pages skipped per
    /// sample page through `/proc/kpageflags` — unless that cannot be read (not root: no PFNs)
    /// or the target has locked memory (`VmLck`), then from smaps (`VmFlags`, `AnonHugePages`),
    /// which walks the page tables and so costs in proportion to the target's size.
    fn target_ranges(&mut self, id: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        let thp = thp_mode(&self.root);
        let per_page = self.kpageflags.is_some() && !self.pfn_hidden;
        let t = self.targets.get_mut(id)?;
        if per_page {
            let vmas = t.proc.maps()?;
            let locked = t.proc.status()?.vm_lck.unwrap_or(0) > 0;
            if !locked {
                t.per_page_thp = true;
                t.probeable = vmas
                    .iter()
                    .filter(|v| v.is_private_anonymous())
                    .map(|v| v.range)
                    .collect();
                self.cost.syscalls += 2;
                return Ok(crate::kernel::maps::target_ranges(&vmas));
            }
        }
        let t = self.targets.get_mut(id)?;
        t.per_page_thp = false;
        let smaps = t.proc.smaps()?;
        t.probeable = smaps
            .iter()
            .filter(|v| vma_probeable(v, thp))
            .map(|v| v.vma.range)
            .collect();
        self.cost.syscalls += 1;
        let vmas: Vec<_> = smaps.into_iter().map(|v| v.vma).collect();
        Ok(crate::kernel::maps::target_ranges(&vmas))
    }

    fn prepare(&mut self, id: TargetId, samples: &mut [SampleReq]) -> Result<(), AccessError> {
        let page = self.page;
        let cfg = self.cfg;
        self.stats.requested += samples.len() as u64;
        // Swap headroom: one meminfo read per interval.
        let swap = read_swap_mem(&self.root).ok();
        let need = samples.len() as u64 * page + cfg.min_swap_free;
        let swap_ok = swap.is_some_and(|s| s.free >= need);
        if !swap_ok && !self.warned_swap {
            tracing::warn!(target = %id, "refault probe: no swap or free swap below {} bytes: samples are Unknown until there is", need);
            self.warned_swap = true;
        } else if swap_ok {
            self.warned_swap = false;
        }
        let kpf = self.kpageflags.as_ref();
        let mut pfn_hidden = false;
        let t = self.targets.get_mut(id)?;
        t.prep.clear();
        // One cheap liveness check per interval (pidfd poll): a target that exited, even if
        // its pid now names another process, is reported gone before anything is read.
        if !t.proc.is_alive() {
            return Err(AccessError::TargetGone(id));
        }
        let mut preads = 0u64;
        let mut stats = ProbeStats::default();
        let mut chosen: Vec<(u64, usize)> = Vec::with_capacity(samples.len());
        let mut absent: Vec<usize> = Vec::new();
        for (i, s) in samples.iter_mut().enumerate() {
            t.prep.push(Prep::Skip);
            let Some((start, limit)) = pick_page(&t.probeable, s.region, s.addr, page) else {
                stats.unprobeable += 1;
                continue;
            };
            let n = (((limit - start) / page) as usize).clamp(1, cfg.window_pages.max(1));
            preads += 1;
            t.read_pagemap(id, start, n)?;
            // The sample's own page already out: residency answers, no page-out needed.
            match t.entries.first() {
                Some(&e) if absent_at_start(e) => {
                    if in_any(&t.advised, start) {
                        stats.advised += 1;
                    } else {
                        s.addr = start;
                        t.prep[i] = Prep::Absent(start, e);
                        absent.push(i);
                    }
                    continue;
                }
                _ => {}
            }
            if !swap_ok {
                stats.no_swap += 1;
                continue;
            }
            let mut found = None;
            let mut huge = false;
            let mut kpf_reads = 0;
            for (k, e) in t.entries.iter().enumerate() {
                if !resident_exclusive(*e) {
                    continue;
                }
                if t.per_page_thp {
                    // A single-page PAGEOUT inside a huge page splits it: look at the page's
                    // flags first (a few reads at most: a huge page spans the whole window).
                    let (Some(f), Some(pfn)) = (kpf, e.pfn()) else {
                        pfn_hidden = true;
                        break;
                    };
                    if kpf_reads == 4 {
                        break;
                    }
                    kpf_reads += 1;
                    preads += 1;
                    match f.read(pfn) {
                        Some(flags) if !is_huge(flags) => {}
                        _ => {
                            huge = true;
                            continue;
                        }
                    }
                }
                found = Some(k);
                break;
            }
            let Some(k) = found else {
                if huge {
                    stats.huge += 1;
                } else {
                    stats.not_resident += 1;
                }
                continue;
            };
            let addr = start + k as u64 * page;
            if in_any(&t.advised, addr) {
                stats.advised += 1;
                continue;
            }
            s.addr = addr;
            chosen.push((addr, i));
        }
        t.advised.clear();
        stats.wanted_pageout = chosen.len() as u64;
        // The page-out budget: keep an unbiased subset of what fits (a token bucket over
        // real time, at most one second's worth saved up), and of the absent samples the
        // same share.
        if let Some(cap) = cfg.max_pageouts_per_sec {
            let now = std::time::Instant::now();
            let dt = self
                .refilled
                .map_or(0.1, |t| now.duration_since(t).as_secs_f64());
            self.refilled = Some(now);
            self.tokens = (self.tokens + cap * dt).min(cap.max(1.0));
            let allowed = self.tokens.floor() as usize;
            let (drop, drop_absent) = leave_out(&mut chosen, &mut absent, allowed, &mut self.rng);
            for &i in &drop_absent {
                t.prep[i] = Prep::Skip;
            }
            stats.over_budget += drop as u64;
            stats.absent_left_out += drop_absent.len() as u64;
            self.tokens -= chosen.len() as f64;
        }
        stats.absent = absent.len() as u64;
        chosen.sort_unstable();
        // Two samples on one page (tiny regions): probe it once, answer both.
        let mut pages: Vec<u64> = chosen.iter().map(|c| c.0).collect();
        pages.dedup();
        let fd = t.proc.pidfd().as_fd();
        let res = pageout_batched(&pages, page, |iov| {
            process_madvise(fd, iov, Advice::Pageout)
        });
        let (ok, calls) = match res {
            Ok(v) => v,
            Err(Errno::ESRCH) => return Err(AccessError::TargetGone(id)),
            Err(Errno::EPERM | Errno::EACCES) => {
                return Err(AccessError::Permission {
                    target: id,
                    what: "process_madvise(MADV_PAGEOUT) needs CAP_SYS_NICE and ptrace read access to the target".into(),
                })
            }
            Err(e) => return Err(AccessError::Other { target: id, msg: format!("process_madvise: {e}") }),
        };
        for (addr, i) in chosen {
            let k = pages.binary_search(&addr).expect("chosen page is in pages");
            if ok[k] {
                t.prep[i] = Prep::Probed(addr);
            } else {
                stats.pageout_failed += 1;
            }
        }
        let paged = ok.iter().filter(|&&o| o).count() as u64;
        self.cost.probe_pageouts += paged;
        self.cost.syscalls += calls + preads + 1;
        self.stats.no_swap += stats.no_swap;
        self.stats.absent += stats.absent;
        self.stats.unprobeable += stats.unprobeable;
        self.stats.not_resident += stats.not_resident;
        self.stats.advised += stats.advised;
        self.stats.pageout_failed += stats.pageout_failed;
        self.stats.huge += stats.huge;
        self.stats.over_budget += stats.over_budget;
        self.stats.absent_left_out += stats.absent_left_out;
        self.stats.wanted_pageout += stats.wanted_pageout;
        if !self.warned_budget && budget_starved(&self.stats) {
            let s = &self.stats;
            tracing::warn!(
                "refault probe: {} of {} samples that needed a page-out were over the page-out budget ({}/s): a region with no known answer in an aggregation does not age, so idle memory comes of age later and unevenly; fewer regions (--min-regions, --max-regions) or a longer --aggr let the probe observe every region",
                s.over_budget,
                s.wanted_pageout,
                cfg.max_pageouts_per_sec.unwrap_or(f64::INFINITY)
            );
            self.warned_budget = true;
        }
        if pfn_hidden && !self.pfn_hidden {
            tracing::warn!("refault probe: pagemap shows no PFNs (needs CAP_SYS_ADMIN): huge pages are told apart through smaps from the next update");
            self.pfn_hidden = true;
        }
        Ok(())
    }

    fn check(
        &mut self,
        id: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        let page = self.page;
        let t = self.targets.get_mut(id)?;
        out.iter_mut().for_each(|o| *o = Access::Unknown);
        if !t.proc.is_alive() {
            return Err(AccessError::TargetGone(id));
        }
        // Probed and absent pages, sorted, each with the sample index (and an absent page's
        // entry at prepare); a sample whose address no longer matches what prepare chose, or
        // that a scheme advised meanwhile, stays Unknown.
        let mut probed: Vec<(u64, usize, Option<PagemapEntry>)> = samples
            .iter()
            .zip(t.prep.iter())
            .enumerate()
            .filter_map(|(i, (s, p))| match *p {
                Prep::Probed(a) if a == s.addr && !in_any(&t.advised, a) => Some((a, i, None)),
                Prep::Absent(a, e) if a == s.addr && !in_any(&t.advised, a) => {
                    Some((a, i, Some(e)))
                }
                _ => None,
            })
            .collect();
        probed.sort_unstable_by_key(|p| (p.0, p.1));
        let mut preads = 0u64;
        let (mut acc, mut not, mut van) = (0u64, 0u64, 0u64);
        let mut own_back = 0u64;
        let mut j = 0;
        while j < probed.len() {
            // Pages within 64 pages of the first share one read.
            let first = probed[j].0;
            let mut k = j;
            while k + 1 < probed.len() && probed[k + 1].0 - first < 64 * page {
                k += 1;
            }
            let n = ((probed[k].0 - first) / page + 1) as usize;
            preads += 1;
            t.read_pagemap(id, first, n)?;
            for &(a, i, start) in &probed[j..=k] {
                let e = t.entries.get(((a - first) / page) as usize).copied();
                out[i] = match start {
                    None => classify(e),
                    Some(start) => absent_answer(start, e),
                };
                match out[i] {
                    Access::Accessed if start.is_none() => {
                        acc += 1;
                        own_back += 1;
                    }
                    Access::Accessed => acc += 1,
                    Access::NotAccessed => not += 1,
                    Access::Unknown => van += 1,
                }
            }
            j = k + 1;
        }
        t.prep.clear();
        self.cost.syscalls += preads;
        self.cost.samples += samples.len() as u64;
        self.cost.probe_refaults += own_back;
        self.stats.probed += probed.iter().filter(|p| p.2.is_none()).count() as u64;
        self.stats.accessed += acc;
        self.stats.not_accessed += not;
        self.stats.vanished += van;
        Ok(())
    }

    fn note_advised(&mut self, id: TargetId, ranges: &[AddrRange]) {
        if let Ok(t) = self.targets.get_mut(id) {
            t.advised.extend_from_slice(ranges);
        }
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }
}

#[cfg(test)]
mod tests;
