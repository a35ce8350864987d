//! The page_idle access check: the PTE Accessed bits kernel DAMON's `vaddr` operations read
//! (`damon_va_mkold` / `damon_va_young`, mm/damon/vaddr.c 6.12), seen from user space
//! through idle page tracking (`CONFIG_IDLE_PAGE_TRACKING`, mm/page_idle.c 6.12).
//!
//! Per sampling interval and target:
//! - **prepare**: `/proc/PID/pagemap` gives each sample page's PFN (root only); the PFNs
//!   are marked idle in `/sys/kernel/mm/page_idle/bitmap`, one `pwrite` per run of
//!   consecutive 64-page words, and read straight back. A page that does not read idle
//!   right after being marked is either a THP tail (page_idle ignores tails:
//!   `/proc/kpageflags` says so, and the folio's head is marked and tracked instead) or one
//!   page_idle cannot track (not on an LRU list yet — fresh pages sit in a per-CPU LRU batch
//!   until drained —, not a user page, or in the partial last bitmap word): its sample is
//!   `Unknown` rather than a false "accessed";
//! - **check**: the pagemap is read again (a page that moved or left is `Unknown`), then
//!   the bitmap words: still idle ⇒ `NotAccessed`, not idle ⇒ `Accessed`.
//!
//! Marking a page idle clears its PTE Accessed bits, as kernel DAMON's own checks do.
//!
//! Pages not present at prepare have no bit in page_idle, but residency is evidence
//! ([`absent_answer`]): in private anonymous memory, or where no VMA is, a page out at
//! prepare (swapped, or never touched) and still out at check was not accessed, and one
//! present at check was faulted in, i.e. accessed. What stays `Unknown`:
//! - pages of file and shared mappings absent at prepare: a file page can be mapped by
//!   fault-around of a neighbour's access (`filemap_map_pages`, mm/filemap.c 6.12), so
//!   "present at check" would not mean "accessed", and a clean file page can be dropped
//!   right after an access;
//! - special entries at prepare (migration, device, markers: `Residency::Special`);
//! - a page present at prepare and gone at check (reclaimed, or paged out by madvd's
//!   actuator within the interval: it may have been touched before it left) — the kernel's
//!   `damon_va_young` says "not accessed" there (see [`absent_answer`]);
//! - absent pages inside a range a scheme advised during the interval (`MADV_COLLAPSE`
//!   brings them in without an access);
//! - everything before the first VMA read (`target_ranges`), when the kinds are not known.

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq, TargetTable};
use crate::kernel::host::is_root;
use crate::kernel::page_idle::{self, IdleBitmap};
use crate::ops::common::{absent_answer, absent_at_start, pagemap_entry, Entry, Targets};
use crate::process::Process;
use crate::region::{AddrRange, TargetId};
use crate::sysroot::SysRoot;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// `/proc/kpageflags` bits, from their one home (`kernel::kpageflags`).
pub use crate::kernel::kpageflags::{KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL};
/// Largest folio whose head we look for behind a tail page (a PMD THP: 512 × 4 KiB).
pub const MAX_FOLIO_PAGES: u64 = 512;

/// Why the check is not usable here, if it is not; reasons in the order a user fixes them.
pub fn why_not(root: &SysRoot) -> Option<String> {
    let path = IdleBitmap::path_in(root);
    if !path.exists() {
        Some(format!(
            "CONFIG_IDLE_PAGE_TRACKING is off in this kernel ({} missing)",
            path.display()
        ))
    } else if !is_root() {
        Some(
            "needs root: PFNs in /proc/PID/pagemap and the page_idle bitmap are root-only"
                .to_string(),
        )
    } else {
        IdleBitmap::why_not_open(root)
    }
}

/// A sample's answer from its page's idle bit read back (`None`: not returned): still idle
/// ⇒ not accessed.
pub fn idle_answer(idle: Option<bool>) -> Access {
    match idle {
        Some(true) => Access::NotAccessed,
        Some(false) => Access::Accessed,
        None => Access::Unknown,
    }
}

/// Whether an absent page at `addr` is evidence: the VMA kinds are known and `addr` is in
/// none of the file or shared VMAs (`no_evidence`). Pure.
pub fn evidence_at(no_evidence: &Option<Vec<AddrRange>>, addr: u64) -> bool {
    no_evidence
        .as_ref()
        .is_some_and(|v| !v.iter().any(|r| r.contains(addr)))
}

/// Where a THP tail page's head is: scan `flags` (kpageflags of PFNs `first..=pfn`, in
/// order) backwards from the end for the compound head. `None` if no head is in range.
pub fn find_head(first: u64, flags: &[u64]) -> Option<u64> {
    let k = flags.iter().rposition(|f| f & KPF_COMPOUND_HEAD != 0)?;
    // Every page between the head and `pfn` must be a tail of that same folio.
    flags[k + 1..]
        .iter()
        .all(|f| f & KPF_COMPOUND_TAIL != 0)
        .then_some(first + k as u64)
}

/// Resolve THP tails to their heads. `pfns[k]` read 0 in the bitmap; `flags` gives the
/// kpageflags of `first..first + n` (`None`: unreadable). Returns, per `pfns[k]`, the head
/// to judge it by (`None`: no tail, or no head found: judged by itself). Pure. One `flags`
/// read per run of consecutive PFNs, plus one of up to 511 entries before a run that starts
/// with a tail.
pub fn heads_of(
    pfns: &[u64],
    mut flags: impl FnMut(u64, usize) -> Option<Vec<u64>>,
) -> Vec<Option<u64>> {
    let mut out = vec![None; pfns.len()];
    let mut k = 0;
    while k < pfns.len() {
        let mut end = k + 1;
        while end < pfns.len() && pfns[end] == pfns[end - 1].wrapping_add(1) {
            end += 1;
        }
        let first = pfns[k];
        if let Some(f) = flags(first, end - k).filter(|f| f.len() == end - k) {
            // The head for tails at the run's start lies before it.
            let mut head: Option<u64> = None;
            if f[0] & KPF_COMPOUND_TAIL != 0 {
                let back = first.saturating_sub(MAX_FOLIO_PAGES - 1);
                if let Some(bf) = flags(back, (first - back + 1) as usize) {
                    head = find_head(back, &bf);
                }
            }
            for (j, fl) in f.iter().enumerate() {
                let pfn = first + j as u64;
                if fl & KPF_COMPOUND_TAIL == 0 {
                    // A head (or a small page): later tails of this run hang off it.
                    head = Some(pfn);
                } else if let Some(h) = head.filter(|&h| h != pfn) {
                    out[k + j] = Some(h);
                }
            }
        }
        k = end;
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prep {
    Skip,
    /// Out at prepare, in memory where that is evidence: its entry then.
    Absent(crate::kernel::pagemap::PagemapEntry),
    /// The sample's own PFN at prepare, and the PFN tracked (its head for a THP tail).
    Tracked {
        page_pfn: u64,
        tracked: u64,
    },
}

/// What happened to the samples so far (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageIdleStats {
    pub requested: u64,
    /// Marked idle and read back idle: answered at check.
    pub tracked: u64,
    /// Not present, in a file or shared mapping or as a special entry: Unknown.
    pub not_present: u64,
    /// Not present in private anonymous memory (or no VMA): answered from residency.
    pub absent: u64,
    /// Did not read idle right after being marked, nor through a THP head (per-CPU LRU
    /// batch, not an LRU page, partial last word): Unknown.
    pub untrackable: u64,
    /// Tracked through a THP head page.
    pub thp_tail: u64,
    /// The page moved or left between prepare and check: Unknown.
    pub moved: u64,
}

struct Target {
    proc: Process,
    prep: Vec<Prep>,
    /// VMAs where absence is no evidence (file, shared), from the last VMA read; `None`
    /// before the first.
    no_evidence: Option<Vec<AddrRange>>,
    /// Ranges a scheme advised since the last prepare.
    advised: Vec<AddrRange>,
}

impl Entry for Target {
    fn new(proc: Process) -> Self {
        Target {
            proc,
            prep: Vec::new(),
            no_evidence: None,
            advised: Vec::new(),
        }
    }
    fn process(&self) -> &Process {
        &self.proc
    }
    fn into_process(self) -> Process {
        self.proc
    }
}

/// The page_idle check over live targets.
pub struct PageIdle {
    bitmap: IdleBitmap,
    kpageflags: Option<File>,
    targets: Targets<Target>,
    cost: MonitorCost,
    stats: PageIdleStats,
    flags_buf: Vec<u8>,
}

impl PageIdle {
    /// Opens the bitmap (and `/proc/kpageflags` when readable, for THP heads).
    pub fn new(root: &SysRoot) -> Result<Self, AccessError> {
        let path = IdleBitmap::path_in(root);
        let bitmap = IdleBitmap::open(root).map_err(|source| AccessError::Io { path, source })?;
        let kpageflags = File::open(root.proc_file("kpageflags")).ok();
        Ok(Self {
            bitmap,
            kpageflags,
            targets: Targets::new("the page_idle check"),
            cost: MonitorCost::default(),
            stats: PageIdleStats::default(),
            flags_buf: Vec::new(),
        })
    }

    pub fn stats(&self) -> PageIdleStats {
        self.stats
    }

    /// The head PFN of the folio `pfn` is a tail page of, from `/proc/kpageflags` (one
    /// 8-byte read for the page itself, one read of up to 512 entries before it for a
    /// tail). `None` for a page that is no tail, or when kpageflags is not readable.
    fn head_of(&mut self, pfn: u64) -> Option<u64> {
        let f = self.kpageflags.as_ref()?;
        let (buf, cost) = (&mut self.flags_buf, &mut self.cost);
        heads_of(&[pfn], |first, n| {
            buf.resize(n * 8, 0);
            cost.syscalls += 1;
            if f.read_at(buf, first.checked_mul(8)?).ok()? != n * 8 {
                return None;
            }
            Some(
                buf.chunks_exact(8)
                    .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            )
        })[0]
    }

    fn io_err(&self, e: std::io::Error) -> AccessError {
        AccessError::Io {
            path: self.bitmap.path().to_owned(),
            source: e,
        }
    }
}

impl AccessCheck for PageIdle {
    fn name(&self) -> &'static str {
        "page_idle"
    }

    /// The VMAs from maps, and which of them are file or shared (absence no evidence).
    fn target_ranges(&mut self, id: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        let t = self.targets.get_mut(id)?;
        let vmas = t.proc.maps()?;
        t.no_evidence = Some(
            vmas.iter()
                .filter(|v| !v.is_private_anonymous())
                .map(|v| v.range)
                .collect(),
        );
        self.cost.syscalls += 1;
        Ok(crate::kernel::maps::target_ranges(&vmas))
    }

    fn note_advised(&mut self, id: TargetId, ranges: &[AddrRange]) {
        if let Ok(t) = self.targets.get_mut(id) {
            t.advised.extend_from_slice(ranges);
        }
    }

    fn prepare(&mut self, id: TargetId, samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.stats.requested += samples.len() as u64;
        let mut t = self.targets.take(id)?;
        let res = self.prepare_target(&mut t, id, samples);
        self.targets.put(id, t);
        res
    }

    fn check(
        &mut self,
        id: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        out.iter_mut().for_each(|o| *o = Access::Unknown);
        let t = self.targets.get_mut(id)?;
        // Which samples still map the page tracked at prepare.
        let mut live: Vec<(usize, u64)> = Vec::with_capacity(samples.len());
        for (i, s) in samples.iter().enumerate() {
            let (page_pfn, tracked) = match t.prep.get(i) {
                Some(&Prep::Tracked { page_pfn, tracked }) => (page_pfn, tracked),
                Some(&Prep::Absent(start)) => {
                    if !t.advised.iter().any(|r| r.contains(s.addr)) {
                        let now = pagemap_entry(&mut t.proc, s.addr)?;
                        self.cost.syscalls += 1;
                        out[i] = absent_answer(start, now);
                    }
                    continue;
                }
                _ => continue,
            };
            let now = pagemap_entry(&mut t.proc, s.addr)?.and_then(|e| e.pfn());
            self.cost.syscalls += 1;
            if now == Some(page_pfn) {
                live.push((i, tracked));
            } else {
                self.stats.moved += 1;
            }
        }
        let words: Vec<u64> = page_idle::words_for(live.iter().map(|l| l.1))
            .iter()
            .map(|w| w.0)
            .collect();
        let got = self.bitmap.read_words(&words).map_err(|e| self.io_err(e))?;
        self.cost.syscalls += page_idle::runs(&words).len() as u64;
        for (i, pfn) in live {
            let k = words
                .binary_search(&page_idle::word_index(pfn))
                .expect("word of a live sample");
            out[i] = idle_answer(page_idle::is_idle(got[k], pfn));
        }
        self.cost.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        self.cost
    }

    fn targets(&mut self) -> Option<&mut dyn TargetTable> {
        Some(&mut self.targets)
    }
}

impl PageIdle {
    fn prepare_target(
        &mut self,
        t: &mut Target,
        id: TargetId,
        samples: &mut [SampleReq],
    ) -> Result<(), AccessError> {
        t.prep.clear();
        t.advised.clear();
        for s in samples.iter() {
            let e = pagemap_entry(&mut t.proc, s.addr)?;
            self.cost.syscalls += 1;
            let prep = match e {
                Some(e) if e.present() => {
                    let Some(pfn) = e.pfn() else {
                        return Err(AccessError::Permission {
                            target: id,
                            what: "pagemap shows no PFNs: page_idle needs root (CAP_SYS_ADMIN)"
                                .into(),
                        });
                    };
                    Prep::Tracked {
                        page_pfn: pfn,
                        tracked: pfn,
                    }
                }
                Some(e) if absent_at_start(e) && evidence_at(&t.no_evidence, s.addr) => {
                    self.stats.absent += 1;
                    Prep::Absent(e)
                }
                Some(_) => {
                    self.stats.not_present += 1;
                    Prep::Skip
                }
                None if !t.proc.is_alive() => return Err(AccessError::TargetGone(id)),
                None => {
                    self.stats.not_present += 1;
                    Prep::Skip
                }
            };
            t.prep.push(prep);
        }
        // Mark idle and read straight back; a page that does not read idle may be a THP
        // tail: retry those through their head page, once.
        let failed = self.mark_and_verify(&mut t.prep)?;
        if !failed.is_empty() {
            let mut retry = false;
            for &i in &failed {
                if let Prep::Tracked { page_pfn, .. } = t.prep[i] {
                    if let Some(head) = self.head_of(page_pfn) {
                        self.stats.thp_tail += 1;
                        t.prep[i] = Prep::Tracked {
                            page_pfn,
                            tracked: head,
                        };
                        retry = true;
                        continue;
                    }
                }
                self.stats.untrackable += 1;
                t.prep[i] = Prep::Skip;
            }
            if retry {
                for i in self.mark_and_verify_only(&mut t.prep, &failed)? {
                    self.stats.untrackable += 1;
                    t.prep[i] = Prep::Skip;
                }
            }
        }
        for p in &t.prep {
            if matches!(p, Prep::Tracked { .. }) {
                self.stats.tracked += 1;
            }
        }
        Ok(())
    }

    /// Mark every tracked sample's page idle and read the words back: the indexes of the
    /// samples whose page did not read idle.
    fn mark_and_verify(&mut self, prep: &mut [Prep]) -> Result<Vec<usize>, AccessError> {
        let all: Vec<usize> = (0..prep.len()).collect();
        self.mark_and_verify_only(prep, &all)
    }

    fn mark_and_verify_only(
        &mut self,
        prep: &mut [Prep],
        which: &[usize],
    ) -> Result<Vec<usize>, AccessError> {
        let pfns = which.iter().filter_map(|&i| match prep[i] {
            Prep::Tracked { tracked, .. } => Some(tracked),
            Prep::Skip | Prep::Absent(_) => None,
        });
        let words = page_idle::words_for(pfns);
        if words.is_empty() {
            return Ok(Vec::new());
        }
        self.bitmap.set_idle(&words).map_err(|e| self.io_err(e))?;
        let idx: Vec<u64> = words.iter().map(|w| w.0).collect();
        let back = self.bitmap.read_words(&idx).map_err(|e| self.io_err(e))?;
        self.cost.syscalls += 2 * page_idle::runs(&idx).len() as u64;
        let mut failed = Vec::new();
        for &i in which {
            if let Prep::Tracked { tracked, .. } = prep[i] {
                let k = idx
                    .binary_search(&page_idle::word_index(tracked))
                    .expect("word of a tracked sample");
                if page_idle::is_idle(back[k], tracked) != Some(true) {
                    failed.push(i);
                }
            }
        }
        Ok(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_are_judged_by_their_heads() {
        let h = KPF_COMPOUND_HEAD;
        let t = KPF_COMPOUND_TAIL;
        // PFNs 512..=515: a head and three tails; 600: a small page; 1027: a tail whose head
        // (1024) is before the run.
        let flags = |first: u64, n: usize| -> Option<Vec<u64>> {
            Some(
                (first..first + n as u64)
                    .map(|p| match p {
                        512 | 1024 => h,
                        513..=515 | 1025..=1027 => t,
                        _ => 0,
                    })
                    .collect(),
            )
        };
        let got = heads_of(&[512, 513, 515, 600, 1027], flags);
        assert_eq!(got, vec![None, Some(512), Some(512), None, Some(1024)]);
        // Unreadable flags: every page judged by itself.
        assert_eq!(heads_of(&[513, 514], |_, _| None), vec![None, None]);
    }

    #[test]
    fn finds_the_head_behind_tails() {
        let h = KPF_COMPOUND_HEAD;
        let t = KPF_COMPOUND_TAIL;
        // PFNs 100..=105: an ordinary page, a head, then tails up to the sample (105).
        assert_eq!(find_head(100, &[0, h, t, t, t, t]), Some(101));
        // A tail whose run is broken by an ordinary page before it: no head we trust.
        assert_eq!(find_head(100, &[h, t, 0, t, t, t]), None);
        // No head in range at all.
        assert_eq!(find_head(100, &[t, t, t]), None);
        // The sample is itself the head.
        assert_eq!(find_head(100, &[0, 0, h]), Some(102));
    }

    #[test]
    fn absence_is_evidence_outside_file_and_shared_vmas_once_they_are_known() {
        let file = AddrRange::new(0x1000, 0x3000);
        assert!(!evidence_at(&None, 0x5000)); // before the first VMA read
        let known = Some(vec![file]);
        assert!(!evidence_at(&known, 0x1000)); // fault-around may map it
        assert!(!evidence_at(&known, 0x2fff));
        assert!(evidence_at(&known, 0x3000)); // anonymous, or no VMA at all
        assert!(evidence_at(&Some(vec![]), 0));
    }

    #[test]
    fn why_not_names_the_missing_bitmap() {
        let dir = tempfile::tempdir().unwrap();
        let why = why_not(&SysRoot::under(dir.path())).unwrap();
        assert!(why.contains("CONFIG_IDLE_PAGE_TRACKING is off"), "{why}");
        assert!(why.contains("page_idle/bitmap missing"), "{why}");
    }

    #[test]
    fn with_a_bitmap_it_depends_on_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let p = IdleBitmap::path_in(&root);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, [0u8; 64]).unwrap();
        match why_not(&root) {
            None => assert!(is_root()),
            Some(why) => assert!(!is_root() && why.contains("needs root"), "{why}"),
        }
    }
}

/// The check's logic against a live process, on any kernel: a regular file stands in for
/// the bitmap (bits written stay set — "idle" — until the test clears them, as an access
/// would), the PFNs are real (pagemap, as root).
#[cfg(test)]
mod live_tests {
    use super::*;
    use std::process::{Child, Command, Stdio};

    fn skip(reason: &str) {
        #[cfg(feature = "testkit")]
        crate::testkit::skip("ops::page_idle::live_tests", reason);
        #[cfg(not(feature = "testkit"))]
        eprintln!("SKIP ops::page_idle::live_tests: {reason}");
    }

    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A fake bitmap (a sparse regular file: PFNs up to 2^25, 128 GiB) in a temp root, and
    /// a `sleep` child added as a target of a page_idle check over it.
    fn fake_bitmap_and_sleeper() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Kill,
        PageIdle,
        TargetId,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot {
            proc: "/proc".into(),
            sys: dir.path().join("sys"),
            dev: "/dev".into(),
        };
        let bm = IdleBitmap::path_in(&root);
        std::fs::create_dir_all(bm.parent().unwrap()).unwrap();
        std::fs::File::create(&bm)
            .unwrap()
            .set_len(1 << 22)
            .unwrap();
        let child = Kill(
            Command::new("sleep")
                .arg("30")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(std::time::Duration::from_millis(50)); // let it exec
        let proc = Process::open(&root, child.0.id(), false).unwrap();
        let mut ops = PageIdle::new(&root).unwrap();
        let id = ops.add_target(proc).unwrap();
        (dir, bm, child, ops, id)
    }

    #[test]
    fn tracks_real_pfns_through_a_fake_bitmap() {
        if !is_root() {
            return skip("needs root: PFNs in /proc/PID/pagemap are root-only");
        }
        let (_dir, bm, _child, mut ops, id) = fake_bitmap_and_sleeper();
        let ranges = ops.target_ranges(id).unwrap();
        assert!(!ranges.is_empty());
        // The first page of each mapping that is present (the ELF headers, libc, stack...).
        let mut samples: Vec<SampleReq> = Vec::new();
        {
            let t = ops.targets.get_mut(id).unwrap();
            for r in &ranges {
                if let Ok(Some(e)) = t.proc.pagemap().entry(r.start) {
                    if e.present() && e.pfn().is_some() {
                        samples.push(SampleReq {
                            region: *r,
                            addr: r.start,
                        });
                    }
                }
            }
        }
        if samples.len() < 2 {
            return skip("fewer than two present pages with PFNs in `sleep`");
        }
        let n = samples.len();
        let mut out = vec![Access::Unknown; n];

        // Marked idle and nothing cleared the bits: every sample is NotAccessed.
        ops.prepare(id, &mut samples).unwrap();
        assert_eq!(ops.stats().tracked, n as u64, "{:?}", ops.stats());
        ops.check(id, &samples, &mut out).unwrap();
        assert!(out.iter().all(|a| *a == Access::NotAccessed), "{out:?}");

        // An access clears the idle bit: every sample is Accessed.
        ops.prepare(id, &mut samples).unwrap();
        std::fs::write(&bm, []).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&bm)
            .unwrap()
            .set_len(1 << 22)
            .unwrap();
        ops.check(id, &samples, &mut out).unwrap();
        assert!(out.iter().all(|a| *a == Access::Accessed), "{out:?}");

        // A page whose word the bitmap does not return at check (the partial last word:
        // here the file ends inside it) answers Unknown; the words before it still answer.
        ops.prepare(id, &mut samples).unwrap();
        let pfn = |ops: &mut PageIdle, addr: u64| {
            let t = ops.targets.get_mut(id).unwrap();
            t.proc
                .pagemap()
                .entry(addr)
                .unwrap()
                .unwrap()
                .pfn()
                .unwrap()
        };
        let top = (0..n)
            .max_by_key(|&i| pfn(&mut ops, samples[i].addr))
            .unwrap();
        let top_pfn = pfn(&mut ops, samples[top].addr);
        let f = std::fs::OpenOptions::new().write(true).open(&bm).unwrap();
        f.set_len(page_idle::word_offset(top_pfn) + 3).unwrap();
        ops.check(id, &samples, &mut out).unwrap();
        for i in 0..n {
            let p = pfn(&mut ops, samples[i].addr);
            let want = if page_idle::word_index(p) == page_idle::word_index(top_pfn) {
                Access::Unknown
            } else {
                Access::NotAccessed
            };
            assert_eq!(
                out[i], want,
                "sample {i} (pfn {p:#x}, top {top_pfn:#x}): {out:?}"
            );
        }
        assert!(ops.cost().syscalls > 0);
    }

    /// Pages of `sleep`'s private anonymous VMAs that were never touched (most of its stack
    /// VMA, the tail of its heap) answer NotAccessed from residency, through the same fake
    /// bitmap: page_idle has no bit for them.
    #[test]
    fn untouched_anonymous_pages_answer_not_accessed() {
        if !is_root() {
            return skip("needs root: PFNs in /proc/PID/pagemap are root-only");
        }
        let (_dir, _bm, _child, mut ops, id) = fake_bitmap_and_sleeper();
        let vmas = ops.targets.get(id).unwrap().proc.maps().unwrap();
        let ranges = ops.target_ranges(id).unwrap();
        let mut samples: Vec<SampleReq> = Vec::new();
        let mut file_absent: Vec<SampleReq> = Vec::new();
        {
            let t = ops.targets.get_mut(id).unwrap();
            for v in &vmas {
                let Some(region) = ranges.iter().find(|r| r.contains(v.range.start)) else {
                    continue;
                };
                for addr in (v.range.start..v.range.end).step_by(4096) {
                    let e = t.proc.pagemap().entry(addr).unwrap().unwrap();
                    let s = SampleReq {
                        region: *region,
                        addr,
                    };
                    if e.0 == 0 && v.is_private_anonymous() && samples.len() < 8 {
                        samples.push(s);
                    } else if e.0 == 0 && v.inode != 0 && file_absent.len() < 8 {
                        file_absent.push(s);
                    }
                }
            }
        }
        assert!(!samples.is_empty(), "no untouched anonymous page in sleep");
        let n = samples.len();
        let mut out = vec![Access::Unknown; n];
        ops.prepare(id, &mut samples).unwrap();
        assert_eq!(ops.stats().absent, n as u64, "{:?}", ops.stats());
        ops.check(id, &samples, &mut out).unwrap();
        assert!(out.iter().all(|a| *a == Access::NotAccessed), "{out:?}");
        // Advised during the interval: Unknown.
        ops.prepare(id, &mut samples).unwrap();
        ops.note_advised(id, &[samples[0].region]);
        ops.check(id, &samples, &mut out).unwrap();
        assert_eq!(out[0], Access::Unknown, "{out:?}");
        // Absent file pages are no evidence (fault-around): Unknown.
        if !file_absent.is_empty() {
            let before = ops.stats().not_present;
            let mut out = vec![Access::Accessed; file_absent.len()];
            ops.prepare(id, &mut file_absent).unwrap();
            assert_eq!(ops.stats().not_present - before, file_absent.len() as u64);
            ops.check(id, &file_absent, &mut out).unwrap();
            assert!(out.iter().all(|a| *a == Access::Unknown), "{out:?}");
        }
    }
}
