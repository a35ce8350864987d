//! The one place madvd calls `process_madvise(2)`, and the one place its vector rule lives.
//! Used by the refault probe (single-page page-outs, counted as monitoring cost) and by the
//! actuator (scheme advice), both through [`vector_madvise`].
//!
//! Kernel facts (mm/madvise.c `vector_madvise`, lib/iov_iter.c `__import_iovec`, Linux 6.12):
//! at most `UIO_MAXIOV` (1024) iovecs per call; the total length is silently truncated to
//! `MAX_RW_COUNT` (`INT_MAX & PAGE_MASK`); iovecs are processed in order and the call stops at
//! the first failing one, returning the bytes of the iovecs fully done before it if any, else
//! the error (`ret = (total_len - iov_iter_count(iter)) ? : ret`). `flags` must be 0. Remote
//! advice allowed: COLD, PAGEOUT, WILLNEED, COLLAPSE.
//!
//! What a short count means, and the one policy madvd follows ([`vector_step`]): the iovecs
//! whose bytes the count covers are advised; the iovec at the boundary *failed* — possibly
//! after part of it was advised (`madvise_walk_vmas()` advises the mapped parts of a range with
//! a hole and then returns ENOMEM) — and its errno is lost; the iovecs after it were not tried.
//! So the next call starts **at the failing iovec**: it is re-issued at the head, where its
//! failure comes back as an errno (the kernel returns the error of a first iovec), which names
//! why it failed (unmapped, refused, busy) and lets a transient failure (EAGAIN, a race with
//! the target's own mmap calls) succeed. Re-issuing is safe because every advice madvd can
//! express is non-destructive and idempotent. An iovec that fails at the head is skipped with
//! its errno, unless the errno is one no iovec can escape ([`ends_vector`]: the target is gone,
//! permission, no syscall, bad pidfd), which ends the vector. Every call makes progress (at
//! least one iovec advised or failed), so the loop ends.

use crate::advice::Advice;
use crate::kernel::host::align_down;
use crate::region::AddrRange;
use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `UIO_MAXIOV` (include/uapi/linux/uio.h).
pub const IOV_MAX: usize = 1024;

/// `MAX_RW_COUNT` = `INT_MAX & PAGE_MASK` (include/linux/fs.h) for 4 KiB pages.
pub const MAX_RW_COUNT: u64 = (i32::MAX as u64) & !4095;

/// `process_madvise(pidfd, iov, vlen, advice, 0)` over `ranges` (at most [`IOV_MAX`]; each
/// page-aligned). Returns the bytes the kernel reports done; see the module doc for what a
/// short count means. The caller batches, resumes and classifies errors.
pub fn process_madvise(
    pidfd: BorrowedFd<'_>,
    ranges: &[AddrRange],
    advice: Advice,
) -> Result<u64, Errno> {
    assert!(
        ranges.len() <= IOV_MAX,
        "process_madvise: {} iovecs > IOV_MAX",
        ranges.len()
    );
    if ranges.is_empty() {
        return Ok(0);
    }
    // `Split` is madvd's composite (the actuator expands it): no madvise number.
    let madv = advice.madv().ok_or(Errno::EINVAL)?;
    let iov: Vec<libc::iovec> = ranges
        .iter()
        .map(|r| libc::iovec {
            iov_base: r.start as *mut libc::c_void,
            iov_len: r.len() as usize,
        })
        .collect();
    loop {
        // SAFETY: `iov` is a valid array of `iov.len()` iovecs that lives across the call; the
        // kernel only reads it (the addresses in it name the *target's* memory and are never
        // dereferenced here). pidfd is a valid borrowed fd; flags are 0 as required.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_process_madvise,
                pidfd.as_raw_fd(),
                iov.as_ptr(),
                iov.len(),
                madv,
                0 as libc::c_uint,
            )
        };
        if ret >= 0 {
            return Ok(ret as u64);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Errors no iovec of a call can escape, so the whole vector ends: ESRCH (the target exited, or
/// is a zombie whose mm is gone: `mm_access()`, kernel/fork.c), EPERM (no `CAP_SYS_NICE`) and
/// EACCES (no ptrace read access: `process_madvise()`, mm/madvise.c 6.12), ENOSYS (no
/// `process_madvise`), EBADF (not a pidfd). Any other errno (ENOMEM unmapped, EINVAL refused,
/// EAGAIN busy, ...) belongs to the iovec at the head of the call.
pub fn ends_vector(e: Errno) -> bool {
    matches!(
        e,
        Errno::ESRCH | Errno::EPERM | Errno::EACCES | Errno::ENOSYS | Errno::EBADF
    )
}

/// One call's answer read by the kernel's rule (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Every iovec of the call was advised.
    AllDone,
    /// The first `done` iovecs were advised; iovec `done` failed (its errno is lost: it is
    /// re-issued at the head of the next call); the rest were not tried.
    Short { done: usize },
    /// The first iovec failed with this errno; nothing else was tried. An `Ok` that covers
    /// no iovec (not the kernel's contract) reads as `UnknownErrno`, so it is skipped, never
    /// looped on.
    HeadFailed(Errno),
}

impl Step {
    /// How many iovecs of a call of `n` were advised.
    pub fn done(self, n: usize) -> usize {
        match self {
            Step::AllDone => n,
            Step::Short { done } => done,
            Step::HeadFailed(_) => 0,
        }
    }
}

/// Read the answer `ret` to a call over `iov` (pure): `vector_madvise()`, mm/madvise.c 6.12.
pub fn vector_step(iov: &[AddrRange], ret: Result<u64, Errno>) -> Step {
    let bytes = match ret {
        Err(e) => return Step::HeadFailed(e),
        Ok(b) => b,
    };
    let mut acc = 0u64;
    let mut done = 0;
    while done < iov.len() && acc + iov[done].len() <= bytes {
        acc += iov[done].len();
        done += 1;
    }
    match done {
        d if d == iov.len() => Step::AllDone,
        0 => Step::HeadFailed(Errno::UnknownErrno),
        done => Step::Short { done },
    }
}

/// An element of a vector: its range, and a copy of it over a sub-range (to split an element
/// the call's byte budget cannot hold whole).
pub trait Iovec: Copy {
    fn range(&self) -> AddrRange;
    fn with_range(self, r: AddrRange) -> Self;
}

impl Iovec for AddrRange {
    fn range(&self) -> AddrRange {
        *self
    }
    fn with_range(self, r: AddrRange) -> Self {
        r
    }
}

/// The caller's side of [`vector_madvise`]: the syscall, a budget checked before each call,
/// and what each call came to.
pub trait VectorCall<P> {
    /// Checked before every call: the most bytes the next call may cover (page-aligned), or
    /// `None` to stop there (the rest is not issued). Default: no limit besides the kernel's.
    fn budget(&mut self) -> Option<u64> {
        Some(MAX_RW_COUNT)
    }
    /// The syscall over `iov` with the kernel's contract.
    fn call(&mut self, iov: &[AddrRange]) -> Result<u64, Errno>;
    /// What the call over `batch` (elements `first..first + batch.len()`) came to.
    fn after(&mut self, first: usize, batch: &[P], step: Step);
}

/// How a vector ended: every element before `next` was advised or failed (told through
/// [`VectorCall::after`]); none from `next` on was issued. `error`: the call-level errno
/// ([`ends_vector`]) that ended it early, `None` if it ran out or the budget stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorEnd {
    pub next: usize,
    pub error: Option<Errno>,
}

/// Issue `items` (page-aligned, non-empty, in order) through `c` with the kernel's vector
/// rule: up to [`IOV_MAX`] iovecs and at most [`MAX_RW_COUNT`] (and the budget) bytes per
/// call, an element larger than the budget split at it, a short count resumed at the failing
/// iovec, a failing head skipped (see the module doc). `page`: the page size.
pub fn vector_madvise<P: Iovec>(
    items: &mut Vec<P>,
    page: u64,
    c: &mut impl VectorCall<P>,
) -> VectorEnd {
    let cap = align_down(MAX_RW_COUNT, page).max(page);
    let mut iov: Vec<AddrRange> = Vec::with_capacity(IOV_MAX.min(items.len()));
    let mut i = 0;
    while i < items.len() {
        let Some(budget) = c.budget() else {
            return VectorEnd {
                next: i,
                error: None,
            };
        };
        let limit = align_down(budget.min(cap), page).max(page);
        let head = items[i].range();
        if head.len() > limit {
            // Advise what fits; the rest meets the budget at the next call.
            let mid = head.start + limit;
            items[i] = items[i].with_range(AddrRange::new(head.start, mid));
            let rest = items[i].with_range(AddrRange::new(mid, head.end));
            items.insert(i + 1, rest);
        }
        let mut j = i;
        let mut bytes = 0u64;
        iov.clear();
        while j < items.len() && j - i < IOV_MAX && bytes + items[j].range().len() <= limit {
            bytes += items[j].range().len();
            iov.push(items[j].range());
            j += 1;
        }
        let step = vector_step(&iov, c.call(&iov));
        c.after(i, &items[i..j], step);
        i += match step {
            Step::AllDone => j - i,
            Step::Short { done } => done,
            Step::HeadFailed(e) if ends_vector(e) => {
                return VectorEnd {
                    next: i,
                    error: Some(e),
                }
            }
            Step::HeadFailed(_) => 1,
        };
    }
    VectorEnd {
        next: i,
        error: None,
    }
}

/// `madvise(2)` on the caller's own memory, for baselines (benches compare the actuator's
/// remote throughput with this).
pub fn madvise_self(range: AddrRange, advice: Advice) -> Result<(), Errno> {
    let madv = advice.madv().ok_or(Errno::EINVAL)?;
    // SAFETY: madvise with a non-destructive advice (Advice has no destructive variant) does
    // not change the contents of the range; an invalid range only yields an error.
    let ret =
        unsafe { libc::madvise(range.start as *mut libc::c_void, range.len() as usize, madv) };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::pidfd::Pidfd;
    use std::os::fd::AsFd;

    const P: u64 = 4096;

    fn r(a: u64, b: u64) -> AddrRange {
        AddrRange::new(a * P, b * P)
    }

    /// A kernel with `vector_madvise()`'s contract: iovecs touching `bad` fail (those in
    /// `once` only the first time), ESRCH once `gone_at` calls were made; records each call
    /// and what `after` was told.
    #[derive(Default)]
    struct Fake {
        bad: Vec<(AddrRange, Errno)>,
        once: Vec<AddrRange>,
        gone_at: Option<usize>,
        budgets: Vec<Option<u64>>,
        calls: Vec<Vec<AddrRange>>,
        steps: Vec<(usize, usize, Step)>,
    }

    impl VectorCall<AddrRange> for Fake {
        fn budget(&mut self) -> Option<u64> {
            if self.budgets.is_empty() {
                Some(MAX_RW_COUNT)
            } else {
                self.budgets.remove(0)
            }
        }
        fn call(&mut self, iov: &[AddrRange]) -> Result<u64, Errno> {
            assert!(!iov.is_empty() && iov.len() <= IOV_MAX);
            assert!(iov.iter().map(|r| r.len()).sum::<u64>() <= MAX_RW_COUNT);
            self.calls.push(iov.to_vec());
            if self.gone_at.is_some_and(|n| self.calls.len() > n) {
                return Err(Errno::ESRCH);
            }
            let mut done = 0;
            for (k, v) in iov.iter().enumerate() {
                if let Some(p) = self.once.iter().position(|o| o.intersects(v)) {
                    self.once.remove(p);
                    return if k == 0 { Err(Errno::EAGAIN) } else { Ok(done) };
                }
                if let Some((_, e)) = self.bad.iter().find(|(b, _)| b.intersects(v)) {
                    return if k == 0 { Err(*e) } else { Ok(done) };
                }
                done += v.len();
            }
            Ok(done)
        }
        fn after(&mut self, first: usize, batch: &[AddrRange], step: Step) {
            self.steps.push((first, batch.len(), step));
        }
    }

    /// Per element: advised (`Ok`) or failed with the errno, from what `after` was told.
    fn fates(n: usize, steps: &[(usize, usize, Step)]) -> Vec<Option<Result<(), Errno>>> {
        let mut out = vec![None; n];
        for &(first, len, step) in steps {
            match step {
                Step::AllDone => (first..first + len).for_each(|k| out[k] = Some(Ok(()))),
                Step::Short { done } => (first..first + done).for_each(|k| out[k] = Some(Ok(()))),
                Step::HeadFailed(e) => out[first] = Some(Err(e)),
            }
        }
        out
    }

    #[test]
    fn vector_madvise_step_reads_the_kernels_short_count() {
        let iov = [r(0, 1), r(2, 4), r(5, 6)];
        assert_eq!(vector_step(&iov, Ok(4 * P)), Step::AllDone);
        assert_eq!(vector_step(&iov, Ok(3 * P)), Step::Short { done: 2 });
        assert_eq!(vector_step(&iov, Ok(P)), Step::Short { done: 1 });
        // Part of the second iovec advised (ENOMEM after the mapped part): it failed.
        assert_eq!(vector_step(&iov, Ok(2 * P)), Step::Short { done: 1 });
        assert_eq!(
            vector_step(&iov, Err(Errno::ENOMEM)),
            Step::HeadFailed(Errno::ENOMEM)
        );
        // Not the kernel's contract: an Ok covering nothing fails the head, never loops.
        assert_eq!(
            vector_step(&iov, Ok(0)),
            Step::HeadFailed(Errno::UnknownErrno)
        );
    }

    #[test]
    fn vector_madvise_resumes_at_the_failing_iovec_and_learns_its_errno() {
        let mut items: Vec<AddrRange> = (0..8).map(|k| r(2 * k, 2 * k + 1)).collect();
        let mut k = Fake {
            bad: vec![(r(6, 7), Errno::ENOMEM), (r(0, 1), Errno::EINVAL)],
            ..Fake::default()
        };
        let end = vector_madvise(&mut items, P, &mut k);
        assert_eq!(
            end,
            VectorEnd {
                next: 8,
                error: None
            }
        );
        // Head fails (EINVAL), skipped; short at item 3; item 3 re-issued at the head gives
        // its errno; the rest in one call.
        assert_eq!(k.calls.len(), 4);
        assert_eq!(k.calls[1][0], items[1]);
        assert_eq!(k.calls[2][0], items[3]);
        assert_eq!(k.calls[3][0], items[4]);
        let f = fates(8, &k.steps);
        assert_eq!(f[0], Some(Err(Errno::EINVAL)));
        assert_eq!(f[3], Some(Err(Errno::ENOMEM)));
        assert!(f
            .iter()
            .enumerate()
            .all(|(i, x)| i == 0 || i == 3 || *x == Some(Ok(()))));
    }

    #[test]
    fn vector_madvise_retries_a_transient_failure_at_the_head() {
        let mut items = vec![r(0, 1), r(1, 2), r(2, 3)];
        let mut k = Fake {
            once: vec![r(1, 2)],
            ..Fake::default()
        };
        vector_madvise(&mut items, P, &mut k);
        // Short at item 1; re-issued at the head (the transient cause gone), it is advised.
        assert_eq!(fates(3, &k.steps), vec![Some(Ok(())); 3]);
        assert_eq!(k.calls.len(), 2);
    }

    #[test]
    fn vector_madvise_batches_by_iov_max_and_max_rw_count() {
        let mut items: Vec<AddrRange> = (0..2500).map(|k| r(2 * k, 2 * k + 1)).collect();
        let mut k = Fake::default();
        vector_madvise(&mut items, P, &mut k);
        let sizes: Vec<usize> = k.calls.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![IOV_MAX, IOV_MAX, 2500 - 2 * IOV_MAX]);
        // Three 1 GiB iovecs: two calls, none above MAX_RW_COUNT (checked by the fake).
        let g = (1 << 30) / P;
        let mut items = vec![r(0, g), r(g, 2 * g), r(2 * g, 3 * g)];
        let mut k = Fake::default();
        vector_madvise(&mut items, P, &mut k);
        assert_eq!(k.calls.len(), 3);
        assert_eq!(
            fates(items.len(), &k.steps),
            vec![Some(Ok(())); items.len()]
        );
    }

    #[test]
    fn vector_madvise_splits_the_head_at_the_budget_and_stops_when_told() {
        let mut items = vec![r(0, 10), r(10, 12)];
        let mut k = Fake {
            budgets: vec![Some(4 * P), Some(100 * P), None],
            ..Fake::default()
        };
        let end = vector_madvise(&mut items, P, &mut k);
        assert_eq!(items, vec![r(0, 4), r(4, 10), r(10, 12)]);
        assert_eq!(k.calls, vec![vec![r(0, 4)], vec![r(4, 10), r(10, 12)]]);
        assert_eq!(
            end,
            VectorEnd {
                next: 3,
                error: None
            }
        );
        let mut items = vec![r(0, 1), r(1, 2)];
        let mut k = Fake {
            budgets: vec![Some(P), None],
            ..Fake::default()
        };
        let end = vector_madvise(&mut items, P, &mut k);
        assert_eq!(
            end,
            VectorEnd {
                next: 1,
                error: None
            }
        );
    }

    #[test]
    fn vector_madvise_ends_on_errors_no_iovec_can_escape() {
        let mut items: Vec<AddrRange> = (0..3000).map(|k| r(k, k + 1)).collect();
        let mut k = Fake {
            gone_at: Some(1),
            ..Fake::default()
        };
        let end = vector_madvise(&mut items, P, &mut k);
        assert_eq!(
            end,
            VectorEnd {
                next: IOV_MAX,
                error: Some(Errno::ESRCH)
            }
        );
        for e in [Errno::EPERM, Errno::EACCES, Errno::ENOSYS, Errno::EBADF] {
            let mut items = vec![r(0, 1), r(1, 2)];
            let mut k = Fake {
                bad: vec![(r(0, 2), e)],
                ..Fake::default()
            };
            let end = vector_madvise(&mut items, P, &mut k);
            assert_eq!(
                end,
                VectorEnd {
                    next: 0,
                    error: Some(e)
                },
                "{e}"
            );
            assert_eq!(k.calls.len(), 1);
        }
        assert!(!ends_vector(Errno::ENOMEM) && !ends_vector(Errno::EAGAIN));
        let mut none: Vec<AddrRange> = Vec::new();
        let end = vector_madvise(&mut none, P, &mut Fake::default());
        assert_eq!(
            end,
            VectorEnd {
                next: 0,
                error: None
            }
        );
    }

    /// A private anonymous mapping of `pages` pages owned by the test.
    fn map(pages: usize) -> u64 {
        // SAFETY: an anonymous private mapping owned by the calling test, unmapped by it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                pages * P as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as u64
    }

    #[test]
    fn advising_own_memory_through_a_pidfd_reports_the_bytes() {
        let len = 16 * P as usize;
        let base = map(16);
        let me = Pidfd::open(std::process::id()).unwrap();
        let r = [
            AddrRange::new(base, base + 8 * P),
            AddrRange::new(base + 8 * P, base + 16 * P),
        ];
        assert_eq!(
            process_madvise(me.as_fd(), &r, Advice::Cold).unwrap(),
            len as u64
        );
        assert_eq!(process_madvise(me.as_fd(), &[], Advice::Cold).unwrap(), 0);
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(base as *mut libc::c_void, len) };
        // Now unmapped: the kernel reports ENOMEM for the first iovec.
        assert_eq!(
            process_madvise(me.as_fd(), &r[..1], Advice::Cold),
            Err(Errno::ENOMEM)
        );
    }

    struct Live<'a>(BorrowedFd<'a>, Vec<(usize, usize, Step)>);

    impl VectorCall<AddrRange> for Live<'_> {
        fn call(&mut self, iov: &[AddrRange]) -> Result<u64, Errno> {
            process_madvise(self.0, iov, Advice::Cold)
        }
        fn after(&mut self, first: usize, batch: &[AddrRange], step: Step) {
            self.1.push((first, batch.len(), step));
        }
    }

    #[test]
    fn vector_madvise_live_short_count_then_the_errno_of_the_hole() {
        // Four pages, the third unmapped: the real kernel returns a short count (two pages),
        // then, with the hole at the head, ENOMEM; the last page is advised.
        let base = map(4);
        // SAFETY: unmapping one page of the mapping made above.
        unsafe { libc::munmap((base + 2 * P) as *mut libc::c_void, P as usize) };
        let me = Pidfd::open(std::process::id()).unwrap();
        let mut items: Vec<AddrRange> = (0..4)
            .map(|k| AddrRange::new(base + k * P, base + (k + 1) * P))
            .collect();
        let mut live = Live(me.as_fd(), Vec::new());
        let end = vector_madvise(&mut items, P, &mut live);
        assert_eq!(
            end,
            VectorEnd {
                next: 4,
                error: None
            }
        );
        assert_eq!(
            live.1,
            vec![
                (0, 4, Step::Short { done: 2 }),
                (2, 2, Step::HeadFailed(Errno::ENOMEM)),
                (3, 1, Step::AllDone)
            ]
        );
        // SAFETY: unmapping what is left of the mapping made above.
        unsafe { libc::munmap(base as *mut libc::c_void, 4 * P as usize) };
    }
}
