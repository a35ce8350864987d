//! The actuator: applies the schemes' advice to live processes with `process_madvise(2)`
//! through the pidfd held since each target was opened, and reports what happened.
//!
//! One [`Actuator::apply`] call takes the targets (pidfd + the VMA list of the snapshot the
//! advice was computed from) and a list of [`AdviceRequest`]s, and returns an [`ApplyReport`]
//! with one [`RangeOutcome`] per request. For every outcome
//! `bytes_applied + Σ errors.bytes == bytes_requested`: no byte of a request goes unreported.
//!
//! How a request becomes syscalls:
//! 1. **Planning** (pure, [`plan_range`], in `cut.rs`): the range is shrunk to whole pages (slivers are
//!    reported [`ApplyErrorKind::Unaligned`]); it is cut at every VMA boundary of the
//!    snapshot's VMA list and the parts in holes are reported [`ApplyErrorKind::Unmapped`]
//!    (advising across a hole would make the kernel apply the advice to the mapped parts *and*
//!    fail with ENOMEM — half an action we could not report precisely: `madvise_walk_vmas()`,
//!    mm/madvise.c, Linux 6.12); for `Collapse` each part is shrunk to whole 2 MiB-aligned huge
//!    pages (the kernel collapses only those and silently ignores the rest:
//!    `madvise_collapse()`, mm/khugepaged.c, Linux 6.12), the rest reported `Unaligned`; so is
//!    `Split`, whose blocks are then checked for a huge page (`huge.rs`: the others reported
//!    `NotHuge`) and each one left becomes a page-out of its first page and a cold of all of
//!    it; `Collapse`'s blocks are checked the same way, and those already one huge page are
//!    left out (`AlreadyHuge`). Pieces larger than the per-call byte cap are split.
//! 2. **Batching and short returns**: the pieces of one target and one advice go through
//!    [`vector_madvise`](crate::kernel::madvise::vector_madvise), the one home of the kernel's
//!    vector rule (`vector_madvise()`, mm/madvise.c, Linux 6.12): up to `IOV_MAX` iovecs and
//!    `MAX_RW_COUNT` bytes per call; on a short count the pieces covered are applied and the
//!    next call starts at the failing piece, which then fails at the head with its errno: the
//!    errno is recorded by kind, the piece skipped, the rest applied — as Android's
//!    `CachedAppOptimizer` (`compactMemory`) does in production.
//! 3. **Target-level errors**: ESRCH (the process exited, or is a zombie whose mm is gone:
//!    `mm_access()`, kernel/fork.c) → [`ApplyErrorKind::TargetGone`] and the target is listed in
//!    [`ApplyReport::gone`]; EPERM (no `CAP_SYS_NICE`) or EACCES (no ptrace read access:
//!    `mm_access()` with `PTRACE_MODE_READ_FSCREDS`, `process_madvise()` in mm/madvise.c) →
//!    [`ApplyErrorKind::Permission`], one error logged per pid ([`ActuatorError::PermissionDenied`]
//!    says what is missing), and nothing more is tried on that target in this round.
//!
//! A piece the kernel fails is reported whole, by kind, with none of its bytes counted as
//! applied — even when the kernel did advise part of it first (e.g. ENOMEM for a piece that
//! was partly unmapped since the snapshot: the still-mapped part was advised): reports err on
//! the side of "not applied", never the other way.
//!
//! Safety rails (`rails.rs`): madvd itself, pid 1 and kernel threads are never advised
//! ([`ApplyErrorKind::Refused`]); page-out stops before free swap would fall under a headroom
//! (default 10 % of `SwapTotal`, [`ApplyErrorKind::SwapHeadroom`], logged once when entered);
//! dry runs plan everything and apply nothing ([`ApplyErrorKind::DryRun`]); a cancel flag is
//! checked between calls ([`ApplyErrorKind::Cancelled`]).
//!
//! Time: each call's time is shared among the pieces it covered in proportion to their
//! bytes (a failed call's time goes to the failing piece), and summed per request into
//! `elapsed_ns` — the quotas' time budget charges it, as `damos_apply_scheme()` charges the
//! time of `ops.apply_scheme` (mm/damon/core.c, Linux 6.12). madvd's departure: the time
//! is the actuation thread's *CPU* time in the call (`CLOCK_THREAD_CPUTIME_ID`,
//! [`ActuatorSys::cpu_ns`]), not the wall time the kernel takes (`ktime_get_coarse_ts64`
//! around the call). Page-out's work (reclaim, the zram compression, waiting for the TLB
//! shootdown of the target's CPUs) runs in the calling thread, so its CPU time is what the
//! call costs; the wall time adds the time the thread waited for a CPU, which costs the
//! workload nothing and grows with the machine's load (on the 2-vCPU development host,
//! 2026-12: 1.2–1.5× the CPU time beside three busy loops, up to 2.4× beside a running
//! target and other load: docs/performance.md "Reclaim on static workloads"), so a
//! wall-time quota shrank the reclaimer with the machine's load.
//!
//! The kernel, the swap gauge and the clock sit behind one small seam, [`ActuatorSys`], so the
//! batching/resume logic is unit-tested against a simulated kernel without a process.
//!
//! ```no_run
//! use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
//! use engine::process::Process;
//! use engine::{AddrRange, Advice, AdviceRequest, SysRoot};
//!
//! let root = SysRoot::host();
//! let p = Process::open(&root, 4242, false).unwrap();
//! let vmas: Vec<AddrRange> = p.maps().unwrap().iter().map(|v| v.range).collect();
//! let target = Target::from_process(&p, vmas);
//! let req = AdviceRequest { target: p.id(), range: AddrRange::new(0x7f00_0000_0000, 0x7f00_0040_0000), advice: Advice::Pageout, scheme: 0 };
//! let mut act = Actuator::new(root, ActuatorConfig::default());
//! let report = act.apply(&[target], &[req], ApplyOpts::default());
//! println!("{} bytes applied in {} ns; not applied: {:?}", report.bytes_applied(), report.elapsed_ns(), report.errors_by_kind());
//! ```
//!
//! A target is only ever built from a pidfd (or a [`Process`](crate::process::Process), which
//! holds one), never from a bare pid number:
//!
//! ```compile_fail
//! let vma = [engine::AddrRange::new(0x1000, 0x2000)];
//! let t = engine::actuator::Target::new(&engine::SysRoot::host(), 4242u32, vma);
//! ```

mod apply;
mod cut;
pub mod huge;
pub mod idle;
pub mod pace;
mod rails;
pub mod resident;
mod target;

pub use apply::errno_kind;
pub use cut::{plan_range, HPAGE_PMD_SIZE};
pub use pace::{CallCost, Pacer};
pub use rails::Refusal;
pub use target::Target;

use crate::advice::Advice;
use crate::kernel::host::page_size;
use crate::kernel::kpageflags::KpageFlags;
use crate::kernel::madvise;
use crate::kernel::page_idle::IdleBitmap;
use crate::kernel::pagemap::{Pagemap, PagemapEntry};
use crate::region::AddrRange;
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::time::Instant;
use thiserror::Error;

#[cfg(test)]
use crate::{
    advice::AdviceRequest,
    kernel::madvise::{IOV_MAX, MAX_RW_COUNT},
    region::TargetId,
    report::{ApplyErrorKind, ApplyReport, RangeOutcome},
};
#[cfg(test)]
use std::sync::atomic::Ordering;

/// Errors the actuator describes (the report carries them as [`ApplyErrorKind`]s; these give
/// the human message).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ActuatorError {
    #[error(
        "pid {pid}: process_madvise: permission denied (EPERM/EACCES): madvd needs CAP_SYS_NICE \
         and ptrace read access to the target (PTRACE_MODE_READ: same uid or CAP_SYS_PTRACE, \
         and a Yama ptrace_scope allowing it) to advise it"
    )]
    PermissionDenied { pid: u32 },
    #[error("pid {pid}: refused: {reason}")]
    Refused { pid: u32, reason: Refusal },
}

/// Swap totals, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SwapStat {
    pub total: u64,
    pub free: u64,
}

/// The actuator's window on the system: the syscall, the swap gauge, the clock. [`HostSys`]
/// is the real one; tests simulate short returns, errno sequences, swap and time.
pub trait ActuatorSys {
    /// `process_madvise` of `iov` (≤ IOV_MAX iovecs, ≤ MAX_RW_COUNT bytes, page-aligned) with
    /// the kernel's contract: bytes of the iovecs done before the first failing one, or its
    /// errno if it was the first.
    fn process_madvise(
        &mut self,
        target: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno>;
    /// Current `SwapTotal` / `SwapFree`.
    fn swap(&mut self) -> std::io::Result<SwapStat>;
    /// A monotonic clock, ns.
    fn now_ns(&mut self) -> u64;
    /// The calling thread's CPU time, ns: what a call costs, charged to the time quota and
    /// measured by the time pace (see the module doc, "Time"). Default: [`Self::now_ns`]
    /// (simulations, whose clock is their only time).
    fn cpu_ns(&mut self) -> u64 {
        self.now_ns()
    }
    /// Wait `ns` (the page-out pace, `pace.rs`). Simulations advance their clock instead.
    fn sleep_ns(&mut self, ns: u64) {
        std::thread::sleep(std::time::Duration::from_nanos(ns));
    }
    /// Pagemap entries of `target` for `nr_pages` pages from `start` (fewer on a short read),
    /// for the residency cut (`resident.rs`). An error leaves the range uncut. Default: not
    /// available.
    fn pagemap(
        &mut self,
        target: &Target<'_>,
        start: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> std::io::Result<()> {
        let _ = (target, start, nr_pages, out);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// `/proc/kpageflags` entries of the PFNs `first..first + n` (all of them, or an error),
    /// for `split`'s huge-page check (`huge.rs`). An error leaves the block to be advised as
    /// before. Default: not available.
    fn kpageflags(&mut self, first: u64, n: usize, out: &mut Vec<u64>) -> std::io::Result<()> {
        let _ = (first, n, out);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// The page_idle bitmap's words `words` (sorted, distinct indexes), one entry each in
    /// `out` (`None`: not returned by the kernel), for the idle cut (`idle.rs`). An error
    /// leaves the chunk uncut. Default: not available.
    fn idle_words(&mut self, words: &[u64], out: &mut Vec<Option<u64>>) -> std::io::Result<()> {
        let _ = (words, out);
        Err(std::io::ErrorKind::Unsupported.into())
    }
    /// Mark the pages of `words` (`(word index, mask)`, sorted) idle in the page_idle
    /// bitmap. Default: not available.
    fn set_idle(&mut self, words: &[(u64, u64)]) -> std::io::Result<()> {
        let _ = words;
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// The running system: [`madvise::process_madvise`] on the target's pidfd,
/// [`read_swap_mem`](crate::kernel::swap::read_swap_mem) (`<proc>/meminfo`), `Instant`.
#[derive(Debug)]
pub struct HostSys {
    root: SysRoot,
    epoch: Instant,
    /// `<proc>/kpageflags`, opened at its first use.
    kpageflags: Option<KpageFlags>,
    /// `<sys>/kernel/mm/page_idle/bitmap`, opened at its first use (the idle cut).
    idle: Option<IdleBitmap>,
}

impl HostSys {
    pub fn new(root: SysRoot) -> Self {
        Self {
            root,
            epoch: Instant::now(),
            kpageflags: None,
            idle: None,
        }
    }

    fn bitmap(&mut self) -> std::io::Result<&mut IdleBitmap> {
        if self.idle.is_none() {
            self.idle = Some(IdleBitmap::open(&self.root)?);
        }
        Ok(self.idle.as_mut().expect("opened above"))
    }
}

impl ActuatorSys for HostSys {
    fn process_madvise(
        &mut self,
        target: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        match target.pidfd() {
            Some(fd) => madvise::process_madvise(fd, iov, advice),
            None => Err(Errno::EBADF),
        }
    }
    fn swap(&mut self) -> std::io::Result<SwapStat> {
        let m = crate::kernel::swap::read_swap_mem(&self.root).map_err(std::io::Error::other)?;
        Ok(SwapStat {
            total: m.total,
            free: m.free,
        })
    }
    fn now_ns(&mut self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    /// `CLOCK_THREAD_CPUTIME_ID` (the actuation thread's own CPU time); the wall clock if it
    /// cannot be read.
    fn cpu_ns(&mut self) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on every
        // Linux (clock_gettime(2)), and the call writes nothing else.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc != 0 {
            return self.now_ns();
        }
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    }
    /// `<proc>/<pid>/pagemap`, opened and then checked against the target's pidfd (alive
    /// after the open: the file is this process's, see `kernel::pidfd`).
    fn pagemap(
        &mut self,
        target: &Target<'_>,
        start: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> std::io::Result<()> {
        let Some(fd) = target.pidfd() else {
            return Err(std::io::Error::from_raw_os_error(libc::EBADF));
        };
        let path = self.root.pid_file(target.pid(), "pagemap");
        let file = std::fs::File::open(&path)?;
        if !crate::kernel::pidfd::fd_is_alive(fd) {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Pagemap::from_file(file, path, page_size()).read(start, nr_pages, out)
    }
    /// `<proc>/kpageflags` (root only).
    fn kpageflags(&mut self, first: u64, n: usize, out: &mut Vec<u64>) -> std::io::Result<()> {
        if self.kpageflags.is_none() {
            self.kpageflags = Some(KpageFlags::open(&self.root)?);
        }
        let f = self.kpageflags.as_ref().expect("opened above");
        let run = f.read_run(first, n).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{}: PFNs {first}+{n}: short read", f.path().display()),
            )
        })?;
        out.clear();
        out.extend(run);
        Ok(())
    }
    /// `<sys>/kernel/mm/page_idle/bitmap` (root only).
    fn idle_words(&mut self, words: &[u64], out: &mut Vec<Option<u64>>) -> std::io::Result<()> {
        *out = self.bitmap()?.read_words(words)?;
        Ok(())
    }
    fn set_idle(&mut self, words: &[(u64, u64)]) -> std::io::Result<()> {
        self.bitmap()?.set_idle(words)
    }
}

/// Settings that outlive one round.
#[derive(Clone, Debug, PartialEq)]
pub struct ActuatorConfig {
    /// Page-out stops before `SwapFree` would fall under this fraction of `SwapTotal`.
    pub swap_headroom: f64,
    /// Cut non-resident pages out of page-out and `cold` pieces before advising them
    /// (`resident.rs`).
    pub resident_cut: bool,
    /// At most this many bytes of address space are read in pagemap per round for the cut;
    /// pieces beyond it are advised uncut.
    pub resident_scan_max: u64,
    /// Follow `ApplyOpts::pace_bytes_per_s` (off: page-out goes unpaced).
    pub pace: bool,
    /// Cut the pages page_idle reads accessed out of page-out and `cold` pieces, and mark
    /// them idle (`idle.rs`). Off by default: the front ends set it where page_idle is the
    /// access check. Needs `resident_cut` (it reads the same pagemap entries).
    pub idle_cut: bool,
}

impl ActuatorConfig {
    /// The defaults, or with `MADVD_RECLAIM_LEGACY=1` in the environment the actuator as it
    /// was before issue 14: no residency cut, no pace (for A/B benches:
    /// `benches/reclaim_static.rs`).
    pub fn from_env() -> Self {
        if std::env::var("MADVD_RECLAIM_LEGACY").is_ok_and(|v| v == "1") {
            Self {
                resident_cut: false,
                pace: false,
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        Self {
            swap_headroom: 0.10,
            resident_cut: true,
            resident_scan_max: 8 << 30,
            pace: true,
            idle_cut: false,
        }
    }
}

/// Per-round options.
#[derive(Clone, Copy, Debug, Default)]
pub struct ApplyOpts<'a> {
    /// Plan and report, apply nothing.
    pub dry_run: bool,
    /// Checked before every call; once set, everything left is reported `Cancelled`.
    pub cancel: Option<&'a AtomicBool>,
    /// Page-out pace, bytes per second (`pace.rs`); `None`: unpaced. The round waits for
    /// the pace for up to `pace::PACE_ROUND_NS`; what it still holds back then is reported
    /// `Paced`.
    pub pace_bytes_per_s: Option<u64>,
    /// Page-out time pace, ns of calls per second (`pace.rs`, "Time pace"); `None`: none.
    /// Combined with `pace_bytes_per_s` (the lower rate wins); followed when
    /// `ActuatorConfig::pace` is.
    pub pace_time_ns_per_s: Option<u64>,
}

/// Cumulative counters (for benches, tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActuatorStats {
    /// `process_madvise` calls made.
    pub calls: u64,
    /// iovecs passed in them.
    pub iovecs: u64,
    /// Calls that returned a short count (a piece failed after others succeeded).
    pub short_returns: u64,
    /// Pieces skipped because the kernel failed them.
    pub pieces_failed: u64,
    /// Bytes of address space read in pagemap for the residency cut.
    pub resident_scanned: u64,
    /// Bytes cut out as not resident.
    pub not_resident: u64,
    /// Bytes of `split` cut out as holding no huge page (`huge.rs`).
    pub not_huge: u64,
    /// Bytes of `collapse` cut out as huge pages already (`huge.rs`).
    pub already_huge: u64,
    /// The idle cut (`idle.rs`): resident pages whose page_idle bit was read, pages of them
    /// judged through a THP head, bytes cut out as not known idle, pages marked idle, and the
    /// CPU time of its reads and writes (ns; not charged to the time quota).
    pub idle_read: u64,
    pub idle_thp_tails: u64,
    pub not_idle: u64,
    pub idle_marked: u64,
    pub idle_cut_ns: u64,
}

/// Applies advice; see the module doc.
pub struct Actuator<S: ActuatorSys = HostSys> {
    sys: S,
    config: ActuatorConfig,
    page: u64,
    stats: ActuatorStats,
    in_headroom: bool,
    denied_logged: HashSet<u32>,
    refused_logged: HashSet<u32>,
    pacer: Pacer,
    /// The measured cost of page-out calls, for the time pace.
    cost: CallCost,
    /// When the current round started (the pace waits within a round only), ns.
    round_start_ns: u64,
    /// When the idle cut last marked each 64-page word of each target (`idle.rs`).
    marks: idle::Marks,
}

impl Actuator<HostSys> {
    /// The host actuator, reading swap figures under `root`.
    pub fn new(root: SysRoot, config: ActuatorConfig) -> Self {
        Self::with_sys(HostSys::new(root), config)
    }
}

impl<S: ActuatorSys> Actuator<S> {
    pub fn with_sys(sys: S, config: ActuatorConfig) -> Self {
        Self {
            sys,
            config,
            page: page_size(),
            stats: ActuatorStats::default(),
            in_headroom: false,
            denied_logged: HashSet::new(),
            refused_logged: HashSet::new(),
            pacer: Pacer::default(),
            cost: CallCost::default(),
            round_start_ns: 0,
            marks: idle::Marks::default(),
        }
    }
    pub fn sys(&self) -> &S {
        &self.sys
    }
    pub fn sys_mut(&mut self) -> &mut S {
        &mut self.sys
    }
    pub fn stats(&self) -> ActuatorStats {
        self.stats
    }
    pub fn config(&self) -> &ActuatorConfig {
        &self.config
    }
}

#[cfg(test)]
mod idle_tests;
#[cfg(test)]
mod resident_tests;
#[cfg(test)]
mod tests;
