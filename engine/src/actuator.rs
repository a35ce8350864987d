//! The actuator: applies the schemes' advice to live processes with `process_madvise(2)`
//! through the pidfd held since each target was opened, and reports what happened.
//!
//! One [`Actuator::apply`] call takes the targets (pidfd + the VMA list of the snapshot the
//! advice was computed from) and a list of [`AdviceRequest`]s, and returns an [`ApplyReport`]
//! with one [`RangeOutcome`] per request. For every outcome
//! `bytes_applied + Σ errors.bytes == bytes_requested`: no byte of a request goes unreported.
//!
//! How a request becomes syscalls:
//! 1. **Planning** (pure, [`plan_range`]): the range is shrunk to whole pages (slivers are
//!    reported [`ApplyErrorKind::Unaligned`]); it is cut at every VMA boundary of the
//!    snapshot's VMA list and the parts in holes are reported [`ApplyErrorKind::Unmapped`]
//!    (advising across a hole would make the kernel apply the advice to the mapped parts *and*
//!    fail with ENOMEM — half an action we could not report precisely: `madvise_walk_vmas()`,
//!    mm/madvise.c, Linux 6.12); for `Collapse` each part is shrunk to whole 2 MiB-aligned huge
//!    pages (the kernel collapses only those and silently ignores the rest:
//!    `madvise_collapse()`, mm/khugepaged.c, Linux 6.12), the rest reported `Unaligned`. Pieces
//!    larger than the per-call byte cap are split.
//! 2. **Batching**: pieces of one target and one advice are passed up to
//!    [`IOV_MAX`](crate::kernel::madvise::IOV_MAX) iovecs and at most
//!    [`MAX_RW_COUNT`](crate::kernel::madvise::MAX_RW_COUNT) bytes per call (the kernel would
//!    silently truncate a longer vector: `__import_iovec()`, lib/iov_iter.c, Linux 6.12).
//! 3. **Short returns**: `vector_madvise()` (mm/madvise.c, Linux 6.12–6.18) processes the
//!    iovecs in order, stops at the first failing one and returns the bytes of the iovecs done
//!    before it, or the error if it was the first. So on a short count the pieces fully covered
//!    are applied and the next call starts at the failing piece; when a call fails outright its
//!    first piece is the failing one: its errno is recorded by kind, the piece skipped, and the
//!    rest applied — as Android's `CachedAppOptimizer` (`compactMemory`) does in production.
//!    Every call makes progress (≥ 1 piece applied or skipped), so the loop ends.
//! 4. **Target-level errors**: ESRCH (the process exited, or is a zombie whose mm is gone:
//!    `mm_access()`, kernel/fork.c) → [`ApplyErrorKind::TargetGone`] and the target is listed in
//!    [`ApplyReport::gone`]; EPERM (no `CAP_SYS_NICE`) or EACCES (no ptrace read access:
//!    `mm_access()` with `PTRACE_MODE_READ_FSCREDS`, `process_madvise()` in mm/madvise.c) →
//!    [`ApplyErrorKind::Permission`], one error logged per pid ([`ActuatorError::PermissionDenied`]
//!    says what is missing), and nothing more is tried on that target in this round.
//!
//! A piece the kernel fails is reported whole, by kind, with none of its bytes counted as
//! applied — even when the kernel did advise part of it first (e.g. ENOMEM for a piece that
//! was partly unmapped since the snapshot: the still-mapped part was advised): reports err on
//! the side of "not applied", never the other way. Where Android re-issues the failing iovec
//! alone, the actuator puts it at the head of the next full call: its errno comes back the
//! same way, in one call fewer.
//!
//! Safety rails: madvd itself, pid 1 and kernel threads are never advised
//! ([`ApplyErrorKind::Refused`]); page-out stops before free swap would fall under a headroom
//! (default 10 % of `SwapTotal`, [`ApplyErrorKind::SwapHeadroom`], logged once when entered);
//! dry runs plan everything and apply nothing ([`ApplyErrorKind::DryRun`]); a cancel flag is
//! checked between calls ([`ApplyErrorKind::Cancelled`]).
//!
//! Time: each call's wall time is shared among the pieces it covered in proportion to their
//! bytes (a failed call's time goes to the failing piece), and summed per request into
//! `elapsed_ns` — the quotas' time budget charges it, as `damos_apply_scheme()` charges the
//! time of `ops.apply_scheme` (mm/damon/core.c, Linux 6.12).
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

use crate::advice::{Advice, AdviceRequest};
use crate::kernel::madvise::{self, IOV_MAX, MAX_RW_COUNT};
use crate::kernel::pidfd::Pidfd;
use crate::region::{AddrRange, TargetId};
use crate::report::{ApplyErrorKind, ApplyReport, RangeOutcome};
use crate::sysroot::SysRoot;
use nix::errno::Errno;
use std::collections::HashSet;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use thiserror::Error;

/// PMD-mapped huge page size that `MADV_COLLAPSE` works in (`HPAGE_PMD_SIZE` on x86-64 and
/// arm64 with 4 KiB pages).
pub const HPAGE_PMD_SIZE: u64 = 2 << 20;

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

/// Why a target is never advised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The target is madvd itself.
    SelfProcess,
    /// The target is pid 1 (init) of madvd's pid namespace.
    Init,
    /// The target is a kernel thread (`PF_KTHREAD`).
    KernelThread,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::SelfProcess => "it is madvd itself",
            Refusal::Init => "it is pid 1",
            Refusal::KernelThread => "it is a kernel thread",
        })
    }
}

/// `PF_KTHREAD` (include/linux/sched.h): the process flag of kernel threads.
const PF_KTHREAD: u32 = 0x0020_0000;

/// One process to advise: its pidfd (held since it was opened, so a reused pid is never
/// advised) and the VMAs of the snapshot the advice was computed from.
#[derive(Debug)]
pub struct Target<'a> {
    id: TargetId,
    pid: u32,
    pidfd: Option<BorrowedFd<'a>>,
    vmas: Vec<AddrRange>,
    kernel_thread: bool,
}

impl<'a> Target<'a> {
    /// A live target. `vmas` are the mapped ranges of the snapshot (any order; overlaps are
    /// merged). Reads `<proc>/<pid>/stat` through the pidfd once to know whether it is a kernel
    /// thread (if that read fails the process is gone or unreadable, and the syscall will say
    /// which). The target id is the pid.
    pub fn new(
        root: &SysRoot,
        pidfd: &'a Pidfd,
        vmas: impl IntoIterator<Item = AddrRange>,
    ) -> Self {
        Self {
            id: TargetId(pidfd.pid()),
            pid: pidfd.pid(),
            pidfd: Some(pidfd.as_fd()),
            vmas: normalize_vmas(vmas),
            kernel_thread: is_kernel_thread(root, pidfd),
        }
    }

    /// A target opened with [`Process::open`](crate::process::Process::open) (which refused
    /// madvd itself and kernel threads already; self and pid 1 are checked again at apply),
    /// with the VMAs of the snapshot, e.g. `p.maps()?.iter().map(|v| v.range)`.
    pub fn from_process(
        p: &'a crate::process::Process,
        vmas: impl IntoIterator<Item = AddrRange>,
    ) -> Self {
        Self {
            id: p.id(),
            pid: p.pid(),
            pidfd: Some(p.pidfd().as_fd()),
            vmas: normalize_vmas(vmas),
            kernel_thread: false,
        }
    }

    /// A target with no process behind it, for driving the planning and batching logic against
    /// a simulated [`ActuatorSys`] (the host syscall fails such a target with EBADF).
    pub fn simulated(
        id: TargetId,
        pid: u32,
        vmas: impl IntoIterator<Item = AddrRange>,
    ) -> Target<'static> {
        Target {
            id,
            pid,
            pidfd: None,
            vmas: normalize_vmas(vmas),
            kernel_thread: false,
        }
    }

    /// Use another id than the pid (e.g. the monitor's target index).
    pub fn with_id(mut self, id: TargetId) -> Self {
        self.id = id;
        self
    }

    /// Mark as a kernel thread (for callers that already know, e.g. from their own checks).
    pub fn with_kernel_thread(mut self, kernel_thread: bool) -> Self {
        self.kernel_thread |= kernel_thread;
        self
    }

    pub fn id(&self) -> TargetId {
        self.id
    }
    pub fn pid(&self) -> u32 {
        self.pid
    }
    pub fn pidfd(&self) -> Option<BorrowedFd<'a>> {
        self.pidfd
    }
    /// The VMAs, sorted and disjoint.
    pub fn vmas(&self) -> &[AddrRange] {
        &self.vmas
    }

    /// The rail that forbids advising this target, if any. Self and pid 1 are checked here
    /// every time, whatever the caller said.
    pub fn refusal(&self) -> Option<Refusal> {
        if self.pid == std::process::id() {
            Some(Refusal::SelfProcess)
        } else if self.pid == 1 {
            Some(Refusal::Init)
        } else if self.kernel_thread {
            Some(Refusal::KernelThread)
        } else {
            None
        }
    }
}

fn normalize_vmas(vmas: impl IntoIterator<Item = AddrRange>) -> Vec<AddrRange> {
    let mut v: Vec<AddrRange> = vmas.into_iter().filter(|r| !r.is_empty()).collect();
    v.sort_unstable();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            // Overlapping (not merely adjacent) input: merge. Adjacent VMAs stay separate so
            // errors are attributed per VMA.
            Some(last) if r.start < last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

fn is_kernel_thread(root: &SysRoot, pidfd: &Pidfd) -> bool {
    use procfs_core::FromRead;
    match pidfd.open_proc_file(root, "stat") {
        Ok(f) => procfs_core::process::Stat::from_read(f)
            .map(|s| s.flags & PF_KTHREAD != 0)
            .unwrap_or(false),
        Err(_) => false,
    }
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
}

/// The running system: [`madvise::process_madvise`] on the target's pidfd,
/// [`read_swap_mem`](crate::kernel::swap::read_swap_mem) (`<proc>/meminfo`), `Instant`.
#[derive(Debug)]
pub struct HostSys {
    root: SysRoot,
    epoch: Instant,
}

impl HostSys {
    pub fn new(root: SysRoot) -> Self {
        Self {
            root,
            epoch: Instant::now(),
        }
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
}

/// Settings that outlive one round.
#[derive(Clone, Debug, PartialEq)]
pub struct ActuatorConfig {
    /// Page-out stops before `SwapFree` would fall under this fraction of `SwapTotal`.
    pub swap_headroom: f64,
}

impl Default for ActuatorConfig {
    fn default() -> Self {
        Self {
            swap_headroom: 0.10,
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
}

impl Actuator<HostSys> {
    /// The host actuator, reading swap figures under `root`.
    pub fn new(root: SysRoot, config: ActuatorConfig) -> Self {
        Self::with_sys(HostSys::new(root), config)
    }
}

/// Request indices per advice, in order of first appearance.
type AdviceGroups = Vec<(Advice, Vec<usize>)>;

/// A contiguous, page-aligned part of one request, within one VMA.
#[derive(Clone, Copy, Debug)]
struct Piece {
    req: usize,
    range: AddrRange,
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

    /// Bytes per call: `MAX_RW_COUNT` rounded down to the page size.
    fn cap(&self) -> u64 {
        MAX_RW_COUNT & !(self.page - 1)
    }

    /// Apply `requests` to `targets` (matched by [`TargetId`]). A request whose target is not
    /// in `targets` is reported `TargetGone`. Never panics on kernel answers.
    pub fn apply(
        &mut self,
        targets: &[Target<'_>],
        requests: &[AdviceRequest],
        opts: ApplyOpts<'_>,
    ) -> ApplyReport {
        let mut report = ApplyReport {
            outcomes: requests
                .iter()
                .map(|r| RangeOutcome {
                    target: r.target,
                    range: r.range,
                    advice: r.advice,
                    scheme: r.scheme,
                    bytes_requested: r.range.len(),
                    bytes_applied: 0,
                    elapsed_ns: 0,
                    errors: Vec::new(),
                })
                .collect(),
            gone: Vec::new(),
            dry_run: opts.dry_run,
        };
        let calls_before = self.stats;

        // Group by target, then by advice, in order of first appearance (the schemes order
        // requests by priority; a cut by cancel or headroom then hits the later ones).
        let mut groups: Vec<(TargetId, AdviceGroups)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let g = match groups.iter().position(|(t, _)| *t == r.target) {
                Some(p) => p,
                None => {
                    groups.push((r.target, Vec::new()));
                    groups.len() - 1
                }
            };
            let adv = &mut groups[g].1;
            match adv.iter_mut().find(|(a, _)| *a == r.advice) {
                Some((_, v)) => v.push(i),
                None => adv.push((r.advice, vec![i])),
            }
        }

        let mut cancelled = false;
        let mut headroom_hit = false;
        for (tid, by_advice) in &groups {
            let Some(target) = targets.iter().find(|t| t.id == *tid) else {
                for (_, idxs) in by_advice {
                    for &i in idxs {
                        let o = &mut report.outcomes[i];
                        add_error(&mut o.errors, ApplyErrorKind::TargetGone, o.bytes_requested);
                    }
                }
                report.gone.push(*tid);
                continue;
            };
            if let Some(reason) = target.refusal() {
                if self.refused_logged.insert(target.pid) {
                    tracing::warn!(
                        "{}",
                        ActuatorError::Refused {
                            pid: target.pid,
                            reason
                        }
                    );
                }
                for (_, idxs) in by_advice {
                    for &i in idxs {
                        let o = &mut report.outcomes[i];
                        add_error(&mut o.errors, ApplyErrorKind::Refused, o.bytes_requested);
                    }
                }
                continue;
            }
            let mut stop: Option<ApplyErrorKind> = None;
            for (advice, idxs) in by_advice {
                let mut pieces = Vec::new();
                for &i in idxs {
                    let losses = plan_range(
                        requests[i].range,
                        &target.vmas,
                        *advice,
                        self.page,
                        self.cap(),
                        |range| pieces.push(Piece { req: i, range }),
                    );
                    for (k, b) in losses {
                        add_error(&mut report.outcomes[i].errors, k, b);
                    }
                }
                self.run(
                    target,
                    *advice,
                    &mut pieces,
                    opts,
                    &mut report,
                    &mut stop,
                    &mut cancelled,
                    &mut headroom_hit,
                );
            }
            if stop == Some(ApplyErrorKind::TargetGone) {
                report.gone.push(*tid);
            }
        }
        if !headroom_hit
            && self.in_headroom
            && groups
                .iter()
                .any(|(_, a)| a.iter().any(|(a, _)| *a == Advice::Pageout))
        {
            // A page-out round went through without hitting the headroom: we are out of it.
            if !opts.dry_run && !cancelled {
                self.in_headroom = false;
                tracing::info!("free swap is above the headroom again: page-out resumes");
            }
        }
        let s = self.stats;
        tracing::debug!(
            targets = groups.len(),
            requests = requests.len(),
            bytes_applied = report.bytes_applied(),
            calls = s.calls - calls_before.calls,
            iovecs = s.iovecs - calls_before.iovecs,
            short_returns = s.short_returns - calls_before.short_returns,
            failed_pieces = s.pieces_failed - calls_before.pieces_failed,
            gone = report.gone.len(),
            dry_run = opts.dry_run,
            cancelled,
            "actuator round"
        );
        report
    }

    /// Page-out budget before the headroom: None = unlimited (no swap configured: page-out
    /// then only drops clean file pages and cannot exhaust swap), Some(bytes) otherwise.
    fn pageout_budget(&mut self) -> Result<Option<u64>, String> {
        match self.sys.swap() {
            Ok(s) if s.total == 0 => Ok(None),
            Ok(s) => {
                let headroom =
                    (s.total as f64 * self.config.swap_headroom.clamp(0.0, 1.0)).ceil() as u64;
                let budget = s.free.saturating_sub(headroom) & !(self.page - 1);
                if budget == 0 {
                    Err(format!(
                        "free swap {} KiB is under the headroom {} KiB ({:.0}% of SwapTotal {} KiB)",
                        s.free >> 10,
                        headroom >> 10,
                        self.config.swap_headroom * 100.0,
                        s.total >> 10
                    ))
                } else {
                    Ok(Some(budget))
                }
            }
            Err(e) => Err(format!(
                "cannot read swap figures ({e}): not paging out blind"
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        target: &Target<'_>,
        advice: Advice,
        pieces: &mut Vec<Piece>,
        opts: ApplyOpts<'_>,
        report: &mut ApplyReport,
        stop: &mut Option<ApplyErrorKind>,
        cancelled: &mut bool,
        headroom_hit: &mut bool,
    ) {
        let cap = self.cap();
        let mut iov: Vec<AddrRange> = Vec::with_capacity(IOV_MAX.min(pieces.len()));
        let mut i = 0;
        while i < pieces.len() {
            let rest_kind = if let Some(k) = *stop {
                Some(k)
            } else if opts.dry_run {
                Some(ApplyErrorKind::DryRun)
            } else if *cancelled || opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                *cancelled = true;
                Some(ApplyErrorKind::Cancelled)
            } else if advice == Advice::Pageout && *headroom_hit {
                Some(ApplyErrorKind::SwapHeadroom)
            } else {
                None
            };
            if let Some(k) = rest_kind {
                for p in &pieces[i..] {
                    add_error(&mut report.outcomes[p.req].errors, k, p.range.len());
                }
                return;
            }
            let mut limit = cap;
            if advice == Advice::Pageout {
                match self.pageout_budget() {
                    Ok(None) => {}
                    Ok(Some(b)) => limit = limit.min(b),
                    Err(why) => {
                        *headroom_hit = true;
                        if !self.in_headroom {
                            self.in_headroom = true;
                            tracing::warn!("page-out stopped: {why}");
                        }
                        continue; // reported as SwapHeadroom at the top
                    }
                }
                if pieces[i].range.len() > limit {
                    // Apply what fits under the headroom; the rest meets the check next time.
                    let p = pieces[i];
                    let mid = p.range.start + limit;
                    pieces[i].range.end = mid;
                    pieces.insert(
                        i + 1,
                        Piece {
                            req: p.req,
                            range: AddrRange::new(mid, p.range.end),
                        },
                    );
                }
            }
            let mut j = i;
            let mut bytes = 0u64;
            iov.clear();
            while j < pieces.len() && j - i < IOV_MAX && bytes + pieces[j].range.len() <= limit {
                bytes += pieces[j].range.len();
                iov.push(pieces[j].range);
                j += 1;
            }
            debug_assert!(j > i, "a piece is never larger than the per-call cap");
            let t0 = self.sys.now_ns();
            let res = self.sys.process_madvise(target, &iov, advice);
            let dt = self.sys.now_ns().saturating_sub(t0);
            self.stats.calls += 1;
            self.stats.iovecs += iov.len() as u64;
            match res {
                Ok(done) => {
                    let done = done.min(bytes);
                    let mut k = i;
                    let mut acc = 0;
                    while k < j && acc + pieces[k].range.len() <= done {
                        acc += pieces[k].range.len();
                        report.outcomes[pieces[k].req].bytes_applied += pieces[k].range.len();
                        k += 1;
                    }
                    charge_time(report, &pieces[i..(k + 1).min(j)], dt);
                    if k == j {
                        i = j;
                    } else if k == i {
                        // Not the kernel's contract (it returns an error when the first iovec
                        // fails): count the piece as failed rather than loop on it.
                        self.stats.pieces_failed += 1;
                        let p = pieces[i];
                        add_error(
                            &mut report.outcomes[p.req].errors,
                            ApplyErrorKind::Other(0),
                            p.range.len(),
                        );
                        i += 1;
                    } else {
                        // Short return: pieces[k] failed; the next call starts with it alone
                        // at the head, so its failure comes back as an errno.
                        self.stats.short_returns += 1;
                        i = k;
                    }
                }
                Err(e) => {
                    let p = pieces[i];
                    charge_time(report, std::slice::from_ref(&p), dt);
                    match e {
                        Errno::ESRCH => {
                            tracing::debug!(pid = target.pid, "target gone (ESRCH)");
                            *stop = Some(ApplyErrorKind::TargetGone);
                        }
                        Errno::EPERM | Errno::EACCES => {
                            if self.denied_logged.insert(target.pid) {
                                // mm_access() fails first (EACCES) without ptrace read access;
                                // then the CAP_SYS_NICE check (EPERM): process_madvise(),
                                // mm/madvise.c, Linux 6.12.
                                let missing = if e == Errno::EACCES {
                                    "ptrace read access to the target (PTRACE_MODE_READ)"
                                } else {
                                    "CAP_SYS_NICE"
                                };
                                tracing::error!(errno = %e, missing, "{}", ActuatorError::PermissionDenied { pid: target.pid });
                            }
                            *stop = Some(ApplyErrorKind::Permission);
                        }
                        // Call-level failures no piece can escape.
                        Errno::ENOSYS | Errno::EBADF => {
                            tracing::error!(pid = target.pid, "process_madvise: {e}");
                            *stop = Some(ApplyErrorKind::Other(e as i32));
                        }
                        e => {
                            self.stats.pieces_failed += 1;
                            add_error(
                                &mut report.outcomes[p.req].errors,
                                errno_kind(e, advice),
                                p.range.len(),
                            );
                            i += 1;
                        }
                    }
                }
            }
        }
    }
}

/// Share `dt` among `pieces` by bytes; the sum charged is exactly `dt`.
fn charge_time(report: &mut ApplyReport, pieces: &[Piece], dt: u64) {
    let total: u64 = pieces.iter().map(|p| p.range.len()).sum();
    if pieces.is_empty() || total == 0 {
        return;
    }
    let mut left = dt;
    for (n, p) in pieces.iter().enumerate() {
        let share = if n + 1 == pieces.len() {
            left
        } else {
            ((dt as u128 * p.range.len() as u128) / total as u128) as u64
        };
        let share = share.min(left);
        left -= share;
        report.outcomes[p.req].elapsed_ns += share;
    }
}

/// Add `bytes` of `kind` to an outcome's error list, one entry per kind.
fn add_error(errors: &mut Vec<(ApplyErrorKind, u64)>, kind: ApplyErrorKind, bytes: u64) {
    if bytes == 0 {
        return;
    }
    match errors.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, b)) => *b += bytes,
        None => errors.push((kind, bytes)),
    }
}

/// The kind of a per-range errno. ENOMEM is "range not mapped" for every advice except
/// `Collapse`, where it is also the huge-page allocation failure (`madvise_collapse_errno()`,
/// mm/khugepaged.c, Linux 6.12); since ranges are cut at the snapshot's VMAs, a collapse ENOMEM
/// is reported as `NoMemory` (it may also mean the range was unmapped since the snapshot).
pub fn errno_kind(e: Errno, advice: Advice) -> ApplyErrorKind {
    match e {
        Errno::ENOMEM if advice == Advice::Collapse => ApplyErrorKind::NoMemory,
        Errno::ENOMEM => ApplyErrorKind::Unmapped,
        Errno::EINVAL => ApplyErrorKind::Invalid,
        Errno::EAGAIN => ApplyErrorKind::Again,
        Errno::ESRCH => ApplyErrorKind::TargetGone,
        Errno::EPERM | Errno::EACCES => ApplyErrorKind::Permission,
        e => ApplyErrorKind::Other(e as i32),
    }
}

fn page_size() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 && (p as u64).is_power_of_two() => p as u64,
        _ => 4096,
    }
}

const fn align_up(x: u64, a: u64) -> u64 {
    match x.checked_add(a - 1) {
        Some(v) => v & !(a - 1),
        None => x & !(a - 1),
    }
}

const fn align_down(x: u64, a: u64) -> u64 {
    x & !(a - 1)
}

/// Plan one request: emit the pieces to advise (page-aligned, inside one VMA each, 2 MiB
/// aligned for `Collapse`, each at most `cap` bytes) through `emit`, and return the bytes not
/// planned, by kind (`Unaligned`, `Unmapped`). Emitted bytes + returned bytes == `range.len()`.
/// `vmas` must be sorted and disjoint; `page` and `cap` powers-of-two multiples of the page.
pub fn plan_range(
    range: AddrRange,
    vmas: &[AddrRange],
    advice: Advice,
    page: u64,
    cap: u64,
    mut emit: impl FnMut(AddrRange),
) -> Vec<(ApplyErrorKind, u64)> {
    let mut losses = Vec::new();
    if range.is_empty() {
        return losses;
    }
    let s = align_up(range.start, page);
    let e = align_down(range.end, page);
    if e <= s {
        add_error(&mut losses, ApplyErrorKind::Unaligned, range.len());
        return losses;
    }
    add_error(
        &mut losses,
        ApplyErrorKind::Unaligned,
        (s - range.start) + (range.end - e),
    );
    let unit = if advice == Advice::Collapse {
        HPAGE_PMD_SIZE.max(page)
    } else {
        page
    };
    let cap = align_down(cap, unit).max(unit);
    let mut cursor = s;
    let first = vmas.partition_point(|v| v.end <= s);
    for v in &vmas[first..] {
        if v.start >= e {
            break;
        }
        let part = AddrRange::new(v.start.max(cursor), v.end.min(e));
        add_error(
            &mut losses,
            ApplyErrorKind::Unmapped,
            part.start.saturating_sub(cursor),
        );
        cursor = part.end;
        let (ps, pe) = if advice == Advice::Collapse {
            let hs = align_up(part.start, unit);
            let he = align_down(part.end, unit);
            if he <= hs {
                add_error(&mut losses, ApplyErrorKind::Unaligned, part.len());
                continue;
            }
            add_error(
                &mut losses,
                ApplyErrorKind::Unaligned,
                (hs - part.start) + (part.end - he),
            );
            (hs, he)
        } else {
            (part.start, part.end)
        };
        let mut a = ps;
        while a < pe {
            let b = if pe - a > cap { a + cap } else { pe };
            emit(AddrRange::new(a, b));
            a = b;
        }
    }
    add_error(
        &mut losses,
        ApplyErrorKind::Unmapped,
        e.saturating_sub(cursor),
    );
    losses
}

impl ApplyReport {
    /// Targets whose advice was refused for lack of permission in this round, with the
    /// message saying what is missing.
    pub fn permission_errors(&self) -> Vec<ActuatorError> {
        let mut seen = Vec::new();
        for o in &self.outcomes {
            if o.errors
                .iter()
                .any(|(k, _)| *k == ApplyErrorKind::Permission)
                && !seen.contains(&o.target.0)
            {
                seen.push(o.target.0);
            }
        }
        seen.into_iter()
            .map(|pid| ActuatorError::PermissionDenied { pid })
            .collect()
    }

    /// Bytes not applied, by kind, over all outcomes.
    pub fn errors_by_kind(&self) -> Vec<(ApplyErrorKind, u64)> {
        let mut v = Vec::new();
        for o in &self.outcomes {
            for &(k, b) in &o.errors {
                add_error(&mut v, k, b);
            }
        }
        v
    }
}

#[cfg(test)]
mod tests;
