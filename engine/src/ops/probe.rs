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
//! Pages a page-out would not move ("never left") are never probed — they would look
//! accessed without being so: the probe picks its sample page inside private anonymous,
//! unlocked memory (maps and `VmLck`, re-read each update interval), and at prepare time
//! reads the pagemap around the monitor's address to pick a page that is present, not part
//! of a huge page (`/proc/kpageflags` of its PFN; without PFNs — not root — or with locked
//! memory, VMAs are classified from smaps `VmFlags`/`AnonHugePages` instead, which costs in
//! proportion to the target's size), and mapped by this process alone (bit 56; `MADV_PAGEOUT` skips pages
//! shared with another process, e.g. touched before a fork: `madvise_cold_or_pageout_pte_range`,
//! mm/madvise.c 6.12). A region with no such page answers Unknown. With no swap, or free swap
//! under the pages it would use plus a margin, every sample is Unknown.
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

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use crate::advice::Advice;
use crate::attrs::Attrs;
use crate::kernel::madvise::{process_madvise, IOV_MAX};
use crate::kernel::pagemap::PagemapEntry;
use crate::kernel::smaps::SmapsVma;
use crate::kernel::swap::read_swap_mem;
use crate::process::{Process, ProcessError};
use crate::region::{AddrRange, TargetId};
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::collections::BTreeMap;
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
    /// Skipped: the candidate pages were part of a huge page (kpageflags).
    pub huge: u64,
    /// The page-out of that page failed (range unmapped since the last maps read, ...).
    pub pageout_failed: u64,
    pub accessed: u64,
    pub not_accessed: u64,
    /// Neither present nor swapped at check (unmapped or zapped meanwhile).
    pub vanished: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prep {
    /// Paged out at prepare; answer from the pagemap at check.
    Probed(u64),
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

/// The refault probe over live targets (each opened as a [`Process`]).
pub struct Probe {
    root: SysRoot,
    cfg: ProbeConfig,
    page: u64,
    targets: BTreeMap<TargetId, Target>,
    cost: MonitorCost,
    stats: ProbeStats,
    warned_swap: bool,
    /// The pagemap hides PFNs from us (no CAP_SYS_ADMIN): kpageflags cannot be used.
    pfn_hidden: bool,
    /// `/proc/kpageflags` (root only), to skip huge pages per sample page.
    kpageflags: Option<std::fs::File>,
    /// Page-out token bucket: tokens, and when they were last topped up.
    tokens: f64,
    refilled: Option<std::time::Instant>,
    rng: u64,
}

impl Probe {
    pub fn new(root: SysRoot, cfg: ProbeConfig) -> Self {
        let kpageflags = std::fs::File::open(root.proc_file("kpageflags")).ok();
        Self {
            root,
            cfg,
            page: crate::process::page_size(),
            targets: BTreeMap::new(),
            cost: MonitorCost::default(),
            stats: ProbeStats::default(),
            warned_swap: false,
            pfn_hidden: false,
            kpageflags,
            tokens: 0.0,
            refilled: None,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Add a target; the monitor knows it by the returned id (its pid).
    pub fn add_target(&mut self, proc: Process) -> TargetId {
        let id = proc.id();
        self.targets.insert(
            id,
            Target {
                proc,
                probeable: Vec::new(),
                advised: Vec::new(),
                prep: Vec::new(),
                entries: Vec::new(),
                per_page_thp: false,
            },
        );
        id
    }

    /// Forget a target (gone, or no longer monitored).
    pub fn remove_target(&mut self, id: TargetId) -> Option<Process> {
        self.targets.remove(&id).map(|t| t.proc)
    }

    pub fn process(&self, id: TargetId) -> Option<&Process> {
        self.targets.get(&id).map(|t| &t.proc)
    }

    pub fn stats(&self) -> ProbeStats {
        self.stats
    }

    pub fn config(&self) -> ProbeConfig {
        self.cfg
    }

    fn target(&mut self, id: TargetId) -> Result<&mut Target, AccessError> {
        self.targets.get_mut(&id).ok_or_else(|| AccessError::Other {
            target: id,
            msg: "not a target of the refault probe".into(),
        })
    }
}

/// Map a process error to the access-check error the monitor understands.
pub fn access_error(id: TargetId, e: ProcessError) -> AccessError {
    if e.is_gone() {
        return AccessError::TargetGone(id);
    }
    match e {
        ProcessError::Permission { path, .. } => AccessError::Permission {
            target: id,
            what: format!(
                "cannot read {}: needs root or ptrace read access",
                path.display()
            ),
        },
        e => AccessError::Other {
            target: id,
            msg: e.to_string(),
        },
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

/// `/sys/kernel/mm/transparent_hugepage/enabled`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThpMode {
    Always,
    Madvise,
    Never,
}

/// Read the THP mode (the bracketed word). Missing file (no THP in the kernel): `Never`.
pub fn thp_mode(root: &SysRoot) -> ThpMode {
    match std::fs::read_to_string(root.sys_file("kernel/mm/transparent_hugepage/enabled")) {
        Ok(s) if s.contains("[always]") => ThpMode::Always,
        Ok(s) if s.contains("[madvise]") => ThpMode::Madvise,
        _ => ThpMode::Never,
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

/// `/proc/kpageflags` bits (include/uapi/linux/kernel-page-flags.h, Linux 6.12).
pub const KPF_COMPOUND_HEAD: u64 = 1 << 15;
pub const KPF_COMPOUND_TAIL: u64 = 1 << 16;
pub const KPF_THP: u64 = 1 << 22;

/// Part of a huge or large folio (THP, mTHP, any compound page): not probed. Pure.
pub fn is_huge(flags: u64) -> bool {
    flags & (KPF_THP | KPF_COMPOUND_HEAD | KPF_COMPOUND_TAIL) != 0
}

fn read_kpageflags(f: &std::fs::File, pfn: u64) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 8];
    match f.read_at(&mut b, pfn * 8) {
        Ok(8) => Some(u64::from_ne_bytes(b)),
        _ => None,
    }
}

/// Answer for a page that was paged out at prepare (pagemap bits 63 / 62). Pure.
pub fn classify(entry: Option<PagemapEntry>) -> Access {
    match entry {
        Some(e) if e.present() => Access::Accessed,
        Some(e) if e.swapped() => Access::NotAccessed,
        _ => Access::Unknown,
    }
}

/// Whether a page can be a probe sample right now: present, mapped by this process alone,
/// anonymous (bit 61 clear). Pure.
pub fn resident_exclusive(e: PagemapEntry) -> bool {
    e.present() && e.exclusive() && !e.file_or_shared()
}

/// Page out `pages` (sorted, one page each) in batches of up to `IOV_MAX` iovecs through
/// `call`, resuming after an iovec the kernel failed on (it stops at the first failing one and
/// returns the bytes done before it: mm/madvise.c `vector_madvise`, 6.12). Returns per page
/// whether its page-out was accepted, and the number of calls. ESRCH / EPERM / other
/// unexpected errors end the run. Pure over `call`.
pub fn pageout_batched(
    pages: &[u64],
    page: u64,
    mut call: impl FnMut(&[AddrRange]) -> Result<u64, Errno>,
) -> Result<(Vec<bool>, u64), Errno> {
    let mut ok = vec![false; pages.len()];
    let mut calls = 0u64;
    let mut i = 0;
    let mut iov: Vec<AddrRange> = Vec::with_capacity(IOV_MAX.min(pages.len()));
    while i < pages.len() {
        let end = (i + IOV_MAX).min(pages.len());
        iov.clear();
        iov.extend(pages[i..end].iter().map(|&p| AddrRange::new(p, p + page)));
        calls += 1;
        match call(&iov) {
            Ok(bytes) => {
                let done = ((bytes / page) as usize).min(end - i);
                ok[i..i + done].iter_mut().for_each(|o| *o = true);
                // A short count: the iovec at i + done failed; skip it.
                i += if done == end - i { done } else { done + 1 };
            }
            // The first iovec failed: unmapped since the maps read (ENOMEM/EFAULT), refused
            // (EINVAL), or busy (EAGAIN). Skip it.
            Err(Errno::ENOMEM | Errno::EFAULT | Errno::EINVAL | Errno::EAGAIN) => i += 1,
            Err(e) => return Err(e),
        }
    }
    Ok((ok, calls))
}

fn in_any(ranges: &[AddrRange], addr: u64) -> bool {
    ranges.iter().any(|r| r.contains(addr))
}

impl AccessCheck for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    /// 100 ms sampling, 2 s aggregation (a page-out per sample is costly), VMAs re-read every
    /// 10 s; the kernel's region bounds.
    fn default_attrs(&self) -> Attrs {
        Attrs {
            sample_us: 100_000,
            aggr_us: 2_000_000,
            ops_update_us: 10_000_000,
            ..Attrs::default()
        }
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
        let t = self.target(id)?;
        if per_page {
            let vmas = t.proc.maps().map_err(|e| access_error(id, e))?;
            let locked = t
                .proc
                .status()
                .map_err(|e| access_error(id, e))?
                .vm_lck
                .unwrap_or(0)
                > 0;
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
        let t = self.target(id)?;
        t.per_page_thp = false;
        let smaps = t.proc.smaps().map_err(|e| access_error(id, e))?;
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
        let t = self
            .targets
            .get_mut(&id)
            .ok_or_else(|| AccessError::Other {
                target: id,
                msg: "not a target of the refault probe".into(),
            })?;
        t.prep.clear();
        // One cheap liveness check per interval (pidfd poll): a target that exited, even if
        // its pid now names another process, is reported gone before anything is read.
        if !t.proc.is_alive() {
            return Err(AccessError::TargetGone(id));
        }
        let mut preads = 0u64;
        let mut stats = ProbeStats::default();
        let mut chosen: Vec<(u64, usize)> = Vec::with_capacity(samples.len());
        for (i, s) in samples.iter_mut().enumerate() {
            t.prep.push(Prep::Skip);
            if !swap_ok {
                stats.no_swap += 1;
                continue;
            }
            let Some((start, limit)) = pick_page(&t.probeable, s.region, s.addr, page) else {
                stats.unprobeable += 1;
                continue;
            };
            let n = (((limit - start) / page) as usize).clamp(1, cfg.window_pages.max(1));
            preads += 1;
            if let Err(e) = t.proc.pagemap().read(start, n, &mut t.entries) {
                if !t.proc.is_alive() {
                    return Err(AccessError::TargetGone(id));
                }
                return Err(AccessError::Io {
                    path: t.proc.pagemap().path().to_owned(),
                    source: e,
                });
            }
            if t.entries.is_empty() && !t.proc.is_alive() {
                return Err(AccessError::TargetGone(id));
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
                    match read_kpageflags(f, pfn) {
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
        // The page-out budget: keep an unbiased subset of what fits (a token bucket over
        // real time, at most one second's worth saved up).
        if let Some(cap) = cfg.max_pageouts_per_sec {
            let now = std::time::Instant::now();
            let dt = self
                .refilled
                .map_or(0.1, |t| now.duration_since(t).as_secs_f64());
            self.refilled = Some(now);
            self.tokens = (self.tokens + cap * dt).min(cap.max(1.0));
            let allowed = self.tokens.floor() as usize;
            if chosen.len() > allowed {
                let drop = chosen.len() - allowed;
                for _ in 0..drop {
                    // xorshift64: a cheap uniform pick of the sample to leave out.
                    self.rng ^= self.rng << 13;
                    self.rng ^= self.rng >> 7;
                    self.rng ^= self.rng << 17;
                    let k = (self.rng % chosen.len() as u64) as usize;
                    chosen.swap_remove(k);
                }
                stats.over_budget += drop as u64;
            }
            self.tokens -= chosen.len() as f64;
        }
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
        self.stats.unprobeable += stats.unprobeable;
        self.stats.not_resident += stats.not_resident;
        self.stats.advised += stats.advised;
        self.stats.pageout_failed += stats.pageout_failed;
        self.stats.huge += stats.huge;
        self.stats.over_budget += stats.over_budget;
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
        let t = self.target(id)?;
        out.iter_mut().for_each(|o| *o = Access::Unknown);
        if !t.proc.is_alive() {
            return Err(AccessError::TargetGone(id));
        }
        // Probed pages, sorted, each with the sample index; a sample whose address no longer
        // matches what prepare probed stays Unknown.
        let mut probed: Vec<(u64, usize)> = samples
            .iter()
            .zip(t.prep.iter())
            .enumerate()
            .filter_map(|(i, (s, p))| match p {
                Prep::Probed(a) if *a == s.addr && !in_any(&t.advised, *a) => Some((*a, i)),
                _ => None,
            })
            .collect();
        probed.sort_unstable();
        let mut preads = 0u64;
        let (mut acc, mut not, mut van) = (0u64, 0u64, 0u64);
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
            if let Err(e) = t.proc.pagemap().read(first, n, &mut t.entries) {
                if !t.proc.is_alive() {
                    return Err(AccessError::TargetGone(id));
                }
                return Err(AccessError::Io {
                    path: t.proc.pagemap().path().to_owned(),
                    source: e,
                });
            }
            if t.entries.is_empty() && !t.proc.is_alive() {
                // Exited meanwhile: its pagemap reads nothing any more.
                return Err(AccessError::TargetGone(id));
            }
            for &(a, i) in &probed[j..=k] {
                let e = t.entries.get(((a - first) / page) as usize).copied();
                out[i] = classify(e);
                match out[i] {
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
        self.stats.probed += probed.len() as u64;
        self.stats.accessed += acc;
        self.stats.not_accessed += not;
        self.stats.vanished += van;
        Ok(())
    }

    fn note_advised(&mut self, id: TargetId, ranges: &[AddrRange]) {
        if let Some(t) = self.targets.get_mut(&id) {
            t.advised.extend_from_slice(ranges);
        }
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::pagemap::{PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SWAP};

    const P: u64 = 4096;

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a * P, b * P)
    }

    #[test]
    fn pick_page_keeps_a_probeable_address() {
        let prob = [r(10, 20), r(30, 40)];
        assert_eq!(
            pick_page(&prob, r(0, 100), 12 * P + 5, P),
            Some((12 * P, 20 * P))
        );
        assert_eq!(
            pick_page(&prob, r(35, 100), 36 * P, P),
            Some((36 * P, 40 * P))
        );
    }

    #[test]
    fn pick_page_maps_other_addresses_proportionally_into_probeable_parts() {
        let prob = [r(10, 20), r(30, 40)];
        // Region 0..100 has 20 probe-able pages; address at page 0 → first, page 99 → last part.
        assert_eq!(pick_page(&prob, r(0, 100), 0, P), Some((10 * P, 20 * P)));
        let (p, lim) = pick_page(&prob, r(0, 100), 99 * P, P).unwrap();
        assert!((30 * P..40 * P).contains(&p) && lim == 40 * P, "{p:#x}");
        // Halfway → the start of the second part.
        assert_eq!(
            pick_page(&prob, r(0, 100), 50 * P, P),
            Some((30 * P, 40 * P))
        );
        // Every choice lies inside region ∩ probeable.
        for a in 0..100 {
            let (p, _) = pick_page(&prob, r(15, 35), a * P, P).unwrap();
            assert!(
                (15 * P..20 * P).contains(&p) || (30 * P..35 * P).contains(&p),
                "{a}: {p:#x}"
            );
        }
    }

    #[test]
    fn pick_page_without_probeable_memory_is_none() {
        assert_eq!(pick_page(&[r(10, 20)], r(20, 30), 25 * P, P), None);
        assert_eq!(pick_page(&[], r(0, 30), 5 * P, P), None);
        // A probe-able range smaller than a page after alignment.
        assert_eq!(
            pick_page(
                &[AddrRange::new(10 * P + 1, 11 * P - 1)],
                r(0, 30),
                5 * P,
                P
            ),
            None
        );
    }

    #[test]
    fn huge_and_compound_pages_are_not_probed() {
        assert!(is_huge(KPF_THP | KPF_COMPOUND_HEAD));
        assert!(is_huge(KPF_COMPOUND_TAIL));
        assert!(!is_huge(1 << 5 | 1 << 11)); // LRU | ANON
        assert!(!is_huge(0));
    }

    #[test]
    fn classify_follows_pagemap_bits() {
        assert_eq!(classify(Some(PagemapEntry(PM_PRESENT))), Access::Accessed);
        assert_eq!(
            classify(Some(PagemapEntry(PM_SWAP | (3 << 5)))),
            Access::NotAccessed
        );
        assert_eq!(classify(Some(PagemapEntry(0))), Access::Unknown);
        assert_eq!(classify(None), Access::Unknown);
    }

    #[test]
    fn only_present_exclusive_anonymous_pages_are_samples() {
        assert!(resident_exclusive(PagemapEntry(
            PM_PRESENT | PM_MMAP_EXCLUSIVE
        )));
        assert!(!resident_exclusive(PagemapEntry(PM_PRESENT))); // shared with another process
        assert!(!resident_exclusive(PagemapEntry(
            PM_PRESENT | PM_MMAP_EXCLUSIVE | PM_FILE
        )));
        assert!(!resident_exclusive(PagemapEntry(PM_SWAP)));
        assert!(!resident_exclusive(PagemapEntry(0)));
    }

    #[test]
    fn pageout_batches_by_iov_max_and_resumes_after_a_failing_iovec() {
        let pages: Vec<u64> = (0..2500).map(|i| i * 2 * P).collect();
        let bad = [5 * 2 * P, 1024 * 2 * P, 2499 * 2 * P];
        let mut sizes = Vec::new();
        let (ok, calls) = pageout_batched(&pages, P, |iov| {
            sizes.push(iov.len());
            assert!(iov.iter().all(|r| r.len() == P));
            match iov.iter().position(|r| bad.contains(&r.start)) {
                Some(0) => Err(Errno::ENOMEM),
                Some(k) => Ok(k as u64 * P),
                None => Ok(iov.len() as u64 * P),
            }
        })
        .unwrap();
        assert!(sizes.iter().all(|&n| n <= IOV_MAX));
        assert_eq!(sizes[0], IOV_MAX);
        assert_eq!(ok.iter().filter(|o| !**o).count(), 3);
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(ok[i], !bad.contains(p), "page {i}");
        }
        assert_eq!(calls, sizes.len() as u64);
    }

    #[test]
    fn pageout_stops_on_esrch_and_eperm() {
        assert_eq!(
            pageout_batched(&[0, P], P, |_| Err(Errno::ESRCH)).unwrap_err(),
            Errno::ESRCH
        );
        assert_eq!(
            pageout_batched(&[0], P, |_| Err(Errno::EPERM)).unwrap_err(),
            Errno::EPERM
        );
        assert_eq!(
            pageout_batched(&[], P, |_| unreachable!()).unwrap(),
            (vec![], 0)
        );
    }

    fn smaps_vma(line: &str, ahp: u64, flags: &[&str]) -> SmapsVma {
        let vma = crate::kernel::maps::parse_line(line, std::path::Path::new("t"), 1).unwrap();
        SmapsVma {
            vma,
            size: 0,
            rss: 0,
            pss: 0,
            referenced: 0,
            anonymous: 0,
            anon_huge_pages: ahp,
            swap: 0,
            locked: 0,
            vm_flags: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn probeable_vmas_are_private_anonymous_unlocked_not_huge() {
        let anon = "1000-9000 rw-p 00000000 00:00 0";
        assert!(vma_probeable(
            &smaps_vma(anon, 0, &["rd", "wr"]),
            ThpMode::Madvise
        ));
        assert!(vma_probeable(
            &smaps_vma("1000-9000 rw-p 00000000 00:00 0   [heap]", 0, &[]),
            ThpMode::Never
        ));
        assert!(!vma_probeable(
            &smaps_vma(anon, 2 << 20, &[]),
            ThpMode::Always
        ));
        assert!(!vma_probeable(
            &smaps_vma(anon, 0, &["hg"]),
            ThpMode::Madvise
        ));
        assert!(vma_probeable(&smaps_vma(anon, 0, &["nh"]), ThpMode::Always));
        assert!(!vma_probeable(&smaps_vma(anon, 0, &["lo"]), ThpMode::Never));
        assert!(!vma_probeable(
            &smaps_vma(
                "1000-9000 rw-s 00000000 00:01 7   /dev/zero (deleted)",
                0,
                &[]
            ),
            ThpMode::Never
        ));
        assert!(!vma_probeable(
            &smaps_vma("1000-9000 rw-p 00000000 fe:00 12   /usr/lib/x.so", 0, &[]),
            ThpMode::Never
        ));
    }
}
