//! A process to advise: its pidfd, the snapshot's VMAs, and whether it is a kernel thread.

use super::rails::Refusal;
use crate::kernel::pidfd::Pidfd;
use crate::kernel::stat::parse_stat;
use crate::region::{AddrRange, TargetId};
use crate::sysroot::SysRoot;
use std::os::fd::{AsFd, BorrowedFd};

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
    use std::io::Read;
    let Ok(mut f) = pidfd.open_proc_file(root, "stat") else {
        return false;
    };
    let mut b = Vec::with_capacity(512);
    f.read_to_end(&mut b).is_ok()
        && parse_stat(&b, &root.pid_file(pidfd.pid(), "stat")).is_ok_and(|s| s.is_kernel_thread())
}
