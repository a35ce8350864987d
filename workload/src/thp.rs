//! The THP evaluation workload (`WorkloadSpec::thp`): memory where transparent huge pages
//! pay off next to memory where they are only bloat, with ground truth (touched bytes) and
//! throughput, for measuring a THP policy from both sides (`benches/thp_eval.rs`).
//!
//! Two mappings, each 2 MiB-aligned, kept apart by a `PROT_NONE` 2 MiB gap (so VMA-granular
//! checks such as smaps tell them apart, and each is whole huge pages):
//! - **dense**: every 4 KiB page written at start; the access loop is a pointer chase
//!   through all its pages in a random cyclic order, one cache line per page (lines spread
//!   over the page so no cache set fills up). The lines fit in the caches while the pages
//!   do not fit in the TLB: with 4 KiB pages nearly every load is a TLB miss and a page
//!   walk, with 2 MiB pages nearly none. Dependent loads, so no walk hides behind another.
//!   What a walk costs depends on whether the page tables stay in the caches: 256 MiB
//!   (512 KiB of PTEs) made huge pages only 17% faster on a quiet 2-vCPU host, 1 GiB 57-73%
//!   (docs/performance.md, "THP tuning per workload"), so `benches/thp_eval.rs` chases 1 GiB.
//! - **sparse**: `sparse_pages` pages (4 KiB) written per 2 MiB at start, never again. With
//!   huge pages each 2 MiB costs 2 MiB of memory for a few KiB used: the bloat.
//!
//! The THP setting is the process's own; the machine-wide one is left alone:
//! - [`ThpMode::Always`]: `MADV_HUGEPAGE` on both mappings (huge pages at fault, also on a
//!   host with THP=madvise);
//! - [`ThpMode::Never`]: `prctl(PR_SET_THP_DISABLE)` with `PR_THP_DISABLE_EXCEPT_ADVISED`
//!   (Linux 6.18): no huge page at fault nor from khugepaged, but `MADV_COLLAPSE` — a
//!   policy's collapse — still allowed (`vma_thp_disabled`, include/linux/huge_mm.h 6.18).
//!   A kernel without the flag (6.12) gets the plain `PR_SET_THP_DISABLE`, under which
//!   `MADV_COLLAPSE` fails with EINVAL too (`vma_thp_disabled` tests `MMF_DISABLE_THP`
//!   for every caller, 6.12); the child says which one it got on stderr.
//! - [`ThpMode::Machine`]: neither; the machine-wide setting decides.
//!
//! Ground truth: `touched_bytes` is every page written (dense + sparse; the loop touches
//! only dense pages, all written at start), so bloat = RSS − touched bytes. `ops` counts
//! loads of the chase, `loop_cpu_ms` the loop thread's CPU time since `mark` (throughput
//! per CPU second does not depend on how busy the machine's other cores are).
//!
//! Commands: `mark`, `truth`, `verify` (every written page still holds what was written,
//! after any collapse, split or page-out), `pause`, `resume`, `quit`.

use crate::memory::splitmix;
use crate::spec::{Event, Truth, Verify, WorkloadSpec, PAGE};
use engine::AddrRange;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A PMD huge page on x86-64 (and the alignment of both mappings).
pub const HUGE: u64 = 2 << 20;

/// How the child sets THP for itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThpMode {
    /// `prctl(PR_SET_THP_DISABLE)` (except advised where the kernel has it).
    Never,
    /// `MADV_HUGEPAGE` on its own mappings.
    Always,
    /// Neither: the machine's setting decides (for a kernel whose prctl also refuses
    /// `MADV_COLLAPSE`: "never" then comes from THP=never or madvise).
    Machine,
}

/// The THP workload's shape (`WorkloadSpec::thp`; `size`, `hot_*`, `pattern`, `fill`,
/// `write_fraction`, `nohugepage` and `two_mappings` of the spec are then unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThpSpec {
    pub mode: ThpMode,
    /// Bytes of the dense, TLB-bound hot mapping (a multiple of 2 MiB).
    pub dense_bytes: u64,
    /// Bytes of the sparse mapping (a multiple of 2 MiB).
    pub sparse_bytes: u64,
    /// 4 KiB pages written per 2 MiB of the sparse mapping (1..=512).
    pub sparse_pages: u32,
}

impl Default for ThpSpec {
    fn default() -> Self {
        Self {
            mode: ThpMode::Never,
            dense_bytes: 256 << 20,
            sparse_bytes: 256 << 20,
            sparse_pages: 4,
        }
    }
}

/// A THP spec the child refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ThpSpecError {
    #[error("thp: dense_bytes {0} is not a positive multiple of 2 MiB")]
    Dense(u64),
    #[error("thp: sparse_bytes {0} is not a multiple of 2 MiB")]
    Sparse(u64),
    #[error("thp: sparse_pages {0} is not in 1..=512")]
    SparsePages(u32),
    #[error("thp: cannot be combined with {0}")]
    Combined(&'static str),
}

impl ThpSpec {
    pub fn validate(&self, spec: &WorkloadSpec) -> Result<(), ThpSpecError> {
        if self.dense_bytes == 0 || self.dense_bytes % HUGE != 0 {
            return Err(ThpSpecError::Dense(self.dense_bytes));
        }
        if self.sparse_bytes % HUGE != 0 {
            return Err(ThpSpecError::Sparse(self.sparse_bytes));
        }
        if !(1..=512).contains(&self.sparse_pages) {
            return Err(ThpSpecError::SparsePages(self.sparse_pages));
        }
        if spec.script.is_some() {
            return Err(ThpSpecError::Combined("script"));
        }
        if spec.fork_children.is_some() {
            return Err(ThpSpecError::Combined("fork_children"));
        }
        Ok(())
    }

    /// Bytes written at start (the ground truth's touched bytes).
    pub fn touched_bytes(&self) -> u64 {
        self.dense_bytes + self.sparse_bytes / HUGE * self.sparse_pages as u64 * PAGE
    }

    /// Bytes mapped (dense + sparse).
    pub fn mapped_bytes(&self) -> u64 {
        self.dense_bytes + self.sparse_bytes
    }
}

/// Which 4 KiB pages of 2 MiB number `huge` of the sparse mapping are written: `n` distinct
/// page indexes in 0..512, from the seed. Pure.
pub fn sparse_page_indexes(seed: u64, huge: u64, n: u32) -> Vec<u64> {
    let mut picked = Vec::with_capacity(n as usize);
    let mut x = seed ^ huge.wrapping_mul(0x2545_f491_4f6c_dd1d);
    while picked.len() < n as usize {
        x = splitmix(x);
        let p = x % 512;
        if !picked.contains(&p) {
            picked.push(p);
        }
    }
    picked.sort_unstable();
    picked
}

/// Word `j` of sparse page `page` (an index over the whole sparse mapping): never zero, so
/// the kernel's zero-page checks never take it for unused.
fn sparse_word(seed: u64, page: u64, j: u64) -> u64 {
    splitmix(seed ^ (page << 12) ^ j) | 1
}

/// The byte offset in dense page `i` of its chase cell (one 8-byte word per page, on a
/// cache line that varies with the page).
fn cell_offset(seed: u64, i: u64) -> u64 {
    (splitmix(seed ^ i ^ 0xc0ff_ee00) % 64) * 64
}

struct Mem {
    dense: AddrRange,
    sparse: AddrRange,
    /// Chase target of each dense page (the address its cell holds).
    next: Vec<u64>,
}

impl Mem {
    fn map(t: &ThpSpec) -> io::Result<Mem> {
        let total = t.dense_bytes + HUGE + t.sparse_bytes;
        let len = total + HUGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let raw = raw as u64;
        let base = raw.next_multiple_of(HUGE);
        let unmap = |at: u64, n: u64| -> io::Result<()> {
            // SAFETY: slack of the reservation above, outside the ranges used below.
            if n > 0 && unsafe { libc::munmap(at as *mut libc::c_void, n as usize) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        unmap(raw, base - raw)?;
        unmap(base + total, raw + len - (base + total))?;
        let dense = AddrRange::new(base, base + t.dense_bytes);
        let gap = dense.end;
        let sparse = AddrRange::new(gap + HUGE, gap + HUGE + t.sparse_bytes);
        // SAFETY: the gap lies inside the reservation; nothing uses it.
        if unsafe { libc::mprotect(gap as *mut libc::c_void, HUGE as usize, libc::PROT_NONE) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        if t.mode == ThpMode::Always {
            for r in [dense, sparse].iter().filter(|r| !r.is_empty()) {
                // SAFETY: advising our own mapping; MADV_HUGEPAGE changes no contents.
                if unsafe {
                    libc::madvise(
                        r.start as *mut libc::c_void,
                        r.len() as usize,
                        libc::MADV_HUGEPAGE,
                    )
                } != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(Mem {
            dense,
            sparse,
            next: Vec::new(),
        })
    }

    fn dense_pages(&self) -> u64 {
        self.dense.len() / PAGE
    }

    /// Write every dense page's chase cell (a random cycle through all pages: Sattolo) and
    /// the sparse pages.
    fn fill(&mut self, t: &ThpSpec, seed: u64) {
        let n = self.dense_pages();
        let mut order: Vec<u64> = (0..n).collect();
        let mut x = seed;
        for i in (1..n as usize).rev() {
            x = splitmix(x);
            order.swap(i, (x % i as u64) as usize);
        }
        // order[i] follows page i: one cycle through all n pages.
        let cell = |i: u64| self.dense.start + i * PAGE + cell_offset(seed, i);
        self.next = (0..n).map(|i| cell(order[i as usize])).collect();
        for i in 0..n {
            // SAFETY: the cell lies inside dense page i, a writable page of ours.
            unsafe { (cell(i) as *mut u64).write_volatile(self.next[i as usize]) };
        }
        for h in 0..self.sparse.len() / HUGE {
            for p in sparse_page_indexes(seed, h, t.sparse_pages) {
                let page = h * 512 + p;
                let at = (self.sparse.start + page * PAGE) as *mut u64;
                for j in 0..PAGE / 8 {
                    // SAFETY: word j of a sparse page of ours, writable, j < 512.
                    unsafe {
                        at.add(j as usize)
                            .write_volatile(sparse_word(seed, page, j))
                    };
                }
            }
        }
    }

    fn verify(&self, t: &ThpSpec, seed: u64) -> Verify {
        let mut v = Verify {
            pages: 0,
            bad_pages: 0,
        };
        for i in 0..self.dense_pages() {
            let at = self.dense.start + i * PAGE + cell_offset(seed, i);
            v.pages += 1;
            // SAFETY: the chase cell of dense page i, mapped for the child's life.
            if unsafe { (at as *const u64).read_volatile() } != self.next[i as usize] {
                v.bad_pages += 1;
            }
        }
        for h in 0..self.sparse.len() / HUGE {
            for p in sparse_page_indexes(seed, h, t.sparse_pages) {
                let page = h * 512 + p;
                let at = (self.sparse.start + page * PAGE) as *const u64;
                v.pages += 1;
                // SAFETY: a written sparse page of ours, mapped for the child's life.
                let ok = (0..PAGE / 8).all(|j| unsafe {
                    at.add(j as usize).read_volatile() == sparse_word(seed, page, j)
                });
                if !ok {
                    v.bad_pages += 1;
                }
            }
        }
        v
    }
}

/// The CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `PR_THP_DISABLE_EXCEPT_ADVISED` (include/uapi/linux/prctl.h, Linux 6.18).
const PR_THP_DISABLE_EXCEPT_ADVISED: libc::c_ulong = 1 << 1;

/// Disable THP for this process: except advised where the kernel knows the flag. Returns
/// which one took.
fn disable_thp() -> io::Result<&'static str> {
    // SAFETY: prctl with integer arguments; changes only this process's THP flag.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            PR_THP_DISABLE_EXCEPT_ADVISED,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r == 0 {
        return Ok("PR_SET_THP_DISABLE, PR_THP_DISABLE_EXCEPT_ADVISED (MADV_COLLAPSE allowed)");
    }
    // SAFETY: as above.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1 as libc::c_ulong, 0, 0, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok("PR_SET_THP_DISABLE (this kernel refuses MADV_COLLAPSE under it)")
}

struct Shared {
    ops: AtomicU64,
    cpu_ns: AtomicU64,
    paused: AtomicBool,
    in_loop: Mutex<()>,
    quit: AtomicBool,
}

/// The chase: `n` dependent loads from `p`; returns where it stopped.
fn chase(mut p: u64, n: u64) -> u64 {
    for _ in 0..n {
        // SAFETY: `p` is a chase cell of the dense mapping (mapped for the child's life,
        // each cell holding the address of the next cell).
        p = unsafe { (p as *const u64).read_volatile() };
    }
    p
}

fn chase_loop(sh: &Shared, start: u64) {
    const BATCH: u64 = 1 << 14;
    let mut p = start;
    let cpu0 = thread_cpu_ns();
    while !sh.quit.load(Ordering::Relaxed) {
        if sh.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let guard = sh.in_loop.lock().expect("loop lock");
        if sh.paused.load(Ordering::SeqCst) {
            continue;
        }
        p = chase(p, BATCH);
        drop(guard);
        sh.ops.fetch_add(BATCH, Ordering::Relaxed);
        sh.cpu_ns.store(thread_cpu_ns() - cpu0, Ordering::Relaxed);
    }
}

/// Run the THP workload child until `quit` or EOF (see the module documentation).
pub fn run_thp(
    spec: &WorkloadSpec,
    t: &ThpSpec,
    control: impl BufRead,
    mut out: impl Write,
) -> io::Result<()> {
    t.validate(spec)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    if t.mode == ThpMode::Never {
        let how = disable_thp()?;
        eprintln!("workload: THP never via {how}");
    }
    let mut mem = Mem::map(t)?;
    mem.fill(t, spec.seed);
    let mut say = |ev: &Event| crate::spec::write_event(&mut out, ev);
    let mut mappings = vec![mem.dense];
    if !mem.sparse.is_empty() {
        mappings.push(mem.sparse);
    }
    say(&Event::Ready {
        pid: std::process::id(),
        mappings,
        hot: mem.dense,
        page_size: PAGE,
    })?;
    let sh = Arc::new(Shared {
        ops: AtomicU64::new(0),
        cpu_ns: AtomicU64::new(0),
        paused: AtomicBool::new(false),
        in_loop: Mutex::new(()),
        quit: AtomicBool::new(false),
    });
    let looper = {
        let sh = Arc::clone(&sh);
        let start = mem.next[0];
        std::thread::spawn(move || chase_loop(&sh, start))
    };
    let mut mark = (Instant::now(), 0u64, 0u64);
    let mut result = Ok(());
    for line in control.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let ev = match line.split_whitespace().next() {
            Some("mark") => {
                mark = (
                    Instant::now(),
                    sh.ops.load(Ordering::Relaxed),
                    sh.cpu_ns.load(Ordering::Relaxed),
                );
                Event::Marked
            }
            Some("truth") => {
                let elapsed = mark.0.elapsed();
                let ops = sh.ops.load(Ordering::Relaxed) - mark.1;
                let cpu_ns = sh.cpu_ns.load(Ordering::Relaxed).saturating_sub(mark.2);
                Event::Truth(Truth {
                    touched_bytes: t.touched_bytes(),
                    untouched_bytes: t.mapped_bytes() - t.touched_bytes(),
                    ops,
                    elapsed_ms: elapsed.as_millis() as u64,
                    ops_per_sec: ops as f64 / elapsed.as_secs_f64().max(1e-9),
                    hot: mem.dense,
                    loop_cpu_ms: Some(cpu_ns / 1_000_000),
                })
            }
            Some("verify") => {
                let was = sh.paused.swap(true, Ordering::SeqCst);
                drop(sh.in_loop.lock().expect("loop lock"));
                let v = mem.verify(t, spec.seed);
                sh.paused.store(was, Ordering::SeqCst);
                Event::Verify(v)
            }
            Some("pause") => {
                sh.paused.store(true, Ordering::SeqCst);
                drop(sh.in_loop.lock().expect("loop lock"));
                Event::Paused
            }
            Some("resume") => {
                sh.paused.store(false, Ordering::SeqCst);
                Event::Resumed
            }
            Some("quit") => break,
            Some(other) => Event::Error {
                message: format!(
                    "unknown command `{other}` (thp workload: mark, truth, verify, pause, resume, quit)"
                ),
            },
            None => continue,
        };
        say(&ev)?;
    }
    sh.quit.store(true, Ordering::SeqCst);
    sh.paused.store(false, Ordering::SeqCst);
    let _ = looper.join();
    result
}
