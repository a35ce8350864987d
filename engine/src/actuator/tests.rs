//! Unit tests of planning, batching and resume against a simulated kernel that keeps
//! `vector_madvise()`'s contract (mm/madvise.c, Linux 6.12–6.18): iovecs in order, stop at the
//! first failing one, return the bytes done before it or its errno.

use super::*;
use proptest::prelude::*;
use std::sync::Arc;

const P: u64 = 4096;
const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;

#[derive(Default)]
struct FakeKernel {
    /// What is mapped now (may differ from the snapshot the actuator is given).
    mapped: Vec<AddrRange>,
    /// iovecs touching these fail with the errno, every time.
    fail: Vec<(AddrRange, Errno)>,
    /// iovecs touching these fail once, then succeed.
    fail_once: Vec<(AddrRange, Errno)>,
    /// Every call fails with this errno (EPERM, EACCES...).
    call_errno: Option<Errno>,
    /// ESRCH from this call index on.
    gone_after: Option<usize>,
    /// Set this flag after this many calls.
    cancel_after: Option<(usize, Arc<AtomicBool>)>,
    /// Return Ok(0) for everything (not the kernel's contract).
    lie_zero: bool,
    calls: Vec<(Advice, Vec<AddrRange>)>,
    applied: Vec<(Advice, AddrRange)>,
    swap: SwapStat,
    swap_err: bool,
    clock: u64,
}

fn covered(mapped: &[AddrRange], r: &AddrRange) -> bool {
    let mut at = r.start;
    for m in mapped {
        if m.start <= at && at < m.end {
            at = m.end;
            if at >= r.end {
                return true;
            }
        }
    }
    at >= r.end
}

impl ActuatorSys for FakeKernel {
    fn process_madvise(
        &mut self,
        _t: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        let n = self.calls.len();
        self.calls.push((advice, iov.to_vec()));
        self.clock += 1000;
        if let Some((after, flag)) = &self.cancel_after {
            if n + 1 >= *after {
                flag.store(true, Ordering::Relaxed);
            }
        }
        assert!(
            !iov.is_empty() && iov.len() <= IOV_MAX,
            "{} iovecs",
            iov.len()
        );
        let total: u64 = iov.iter().map(|r| r.len()).sum();
        assert!(total <= MAX_RW_COUNT, "{total} bytes > MAX_RW_COUNT");
        for r in iov {
            assert!(
                !r.is_empty() && r.start % P == 0 && r.end % P == 0,
                "unaligned iovec {r}"
            );
            if advice == Advice::Collapse {
                assert!(
                    r.start % HPAGE_PMD_SIZE == 0 && r.end % HPAGE_PMD_SIZE == 0,
                    "collapse iovec {r}"
                );
            }
        }
        if let Some(e) = self.call_errno {
            return Err(e);
        }
        if self.gone_after.is_some_and(|g| n >= g) {
            return Err(Errno::ESRCH);
        }
        if self.lie_zero {
            return Ok(0);
        }
        let mut done = 0;
        for r in iov {
            let err = if !covered(&self.mapped, r) {
                Some(Errno::ENOMEM)
            } else if let Some((_, e)) = self.fail.iter().find(|(f, _)| f.intersects(r)) {
                Some(*e)
            } else if let Some(pos) = self.fail_once.iter().position(|(f, _)| f.intersects(r)) {
                Some(self.fail_once.remove(pos).1)
            } else {
                None
            };
            if let Some(e) = err {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            self.clock += r.len() / P;
            if advice == Advice::Pageout {
                self.swap.free = self.swap.free.saturating_sub(r.len());
            }
            self.applied.push((advice, *r));
            done += r.len();
        }
        Ok(done)
    }
    fn swap(&mut self) -> std::io::Result<SwapStat> {
        if self.swap_err {
            Err(std::io::Error::other("no meminfo"))
        } else {
            Ok(self.swap)
        }
    }
    fn now_ns(&mut self) -> u64 {
        self.clock
    }
}

fn kernel(mapped: &[AddrRange]) -> FakeKernel {
    FakeKernel {
        mapped: mapped.to_vec(),
        ..Default::default()
    }
}

fn act(k: FakeKernel) -> Actuator<FakeKernel> {
    let mut a = Actuator::with_sys(k, ActuatorConfig::default());
    a.page = P;
    a
}

fn req(t: u32, start: u64, end: u64, advice: Advice) -> AdviceRequest {
    AdviceRequest {
        target: TargetId(t),
        range: AddrRange::new(start, end),
        advice,
        scheme: 0,
    }
}

/// A pid that is neither us nor 1.
const PID: u32 = 4_000_000;

fn target(vmas: &[AddrRange]) -> Target<'static> {
    Target::simulated(TargetId(PID), PID, vmas.iter().copied())
}

fn err(o: &RangeOutcome, k: ApplyErrorKind) -> u64 {
    o.errors
        .iter()
        .filter(|(e, _)| *e == k)
        .map(|(_, b)| b)
        .sum()
}

fn assert_accounted(r: &ApplyReport) {
    for o in &r.outcomes {
        let e: u64 = o.errors.iter().map(|(_, b)| b).sum();
        assert_eq!(o.bytes_applied + e, o.bytes_requested, "{o:?}");
    }
}

/// Adjacent equal-size pieces `[base + i*len, base + (i+1)*len)`, `n` of them.
fn many(n: u64, base: u64, len: u64, advice: Advice) -> Vec<AdviceRequest> {
    (0..n)
        .map(|i| req(PID, base + i * len, base + (i + 1) * len, advice))
        .collect()
}

// --- planning ---------------------------------------------------------------------------

fn plan(
    range: AddrRange,
    vmas: &[AddrRange],
    advice: Advice,
    cap: u64,
) -> (Vec<AddrRange>, Vec<(ApplyErrorKind, u64)>) {
    let mut v = Vec::new();
    let l = plan_range(range, vmas, advice, P, cap, |r| v.push(r));
    (v, l)
}

#[test]
fn plan_range_reports_page_slivers_as_unaligned() {
    let vma = [AddrRange::new(0x10000, 0x20000)];
    let (p, l) = plan(
        AddrRange::new(0x10800, 0x13100),
        &vma,
        Advice::Cold,
        MAX_RW_COUNT,
    );
    assert_eq!(p, vec![AddrRange::new(0x11000, 0x13000)]);
    assert_eq!(l, vec![(ApplyErrorKind::Unaligned, 0x800 + 0x100)]);
    let (p, l) = plan(
        AddrRange::new(0x10800, 0x10900),
        &vma,
        Advice::Cold,
        MAX_RW_COUNT,
    );
    assert!(p.is_empty());
    assert_eq!(l, vec![(ApplyErrorKind::Unaligned, 0x100)]);
}

#[test]
fn plan_range_cuts_at_every_vma_boundary_and_reports_holes_unmapped() {
    let vmas = [
        AddrRange::new(0x10000, 0x20000),
        AddrRange::new(0x20000, 0x30000),
        AddrRange::new(0x40000, 0x50000),
    ];
    let (p, l) = plan(
        AddrRange::new(0x8000, 0x58000),
        &vmas,
        Advice::Pageout,
        MAX_RW_COUNT,
    );
    assert_eq!(p, vec![vmas[0], vmas[1], vmas[2]]);
    assert_eq!(
        l,
        vec![(ApplyErrorKind::Unmapped, 0x8000 + 0x10000 + 0x8000)]
    );
    // Entirely in a hole.
    let (p, l) = plan(
        AddrRange::new(0x31000, 0x33000),
        &vmas,
        Advice::Cold,
        MAX_RW_COUNT,
    );
    assert!(p.is_empty());
    assert_eq!(l, vec![(ApplyErrorKind::Unmapped, 0x2000)]);
    // No VMAs at all.
    let (p, l) = plan(
        AddrRange::new(0x1000, 0x3000),
        &[],
        Advice::Cold,
        MAX_RW_COUNT,
    );
    assert!(p.is_empty());
    assert_eq!(l, vec![(ApplyErrorKind::Unmapped, 0x2000)]);
}

#[test]
fn plan_range_aligns_collapse_to_whole_huge_pages_within_each_vma() {
    let vmas = [AddrRange::new(MB, 9 * MB)];
    let (p, l) = plan(
        AddrRange::new(0, 16 * MB),
        &vmas,
        Advice::Collapse,
        MAX_RW_COUNT,
    );
    assert_eq!(p, vec![AddrRange::new(2 * MB, 8 * MB)]);
    assert_eq!(
        l,
        vec![
            (ApplyErrorKind::Unmapped, MB + 7 * MB),
            (ApplyErrorKind::Unaligned, 2 * MB)
        ]
    );
    // A range with no whole aligned 2 MiB is reported, not dropped.
    let (p, l) = plan(
        AddrRange::new(3 * MB, 5 * MB),
        &vmas,
        Advice::Collapse,
        MAX_RW_COUNT,
    );
    assert!(p.is_empty());
    assert_eq!(l, vec![(ApplyErrorKind::Unaligned, 2 * MB)]);
    // A huge page across a VMA boundary is not collapsible: cut there first.
    let split = [AddrRange::new(0, 3 * MB), AddrRange::new(3 * MB, 8 * MB)];
    let (p, _) = plan(
        AddrRange::new(0, 8 * MB),
        &split,
        Advice::Collapse,
        MAX_RW_COUNT,
    );
    assert_eq!(
        p,
        vec![AddrRange::new(0, 2 * MB), AddrRange::new(4 * MB, 8 * MB)]
    );
}

#[test]
fn plan_range_splits_pieces_larger_than_the_call_cap() {
    let vmas = [AddrRange::new(0, 5 * GB)];
    let cap = MAX_RW_COUNT & !(P - 1);
    let (p, l) = plan(AddrRange::new(0, 5 * GB), &vmas, Advice::Cold, cap);
    assert!(l.is_empty());
    assert_eq!(p.len(), 3);
    assert!(p.iter().all(|r| r.len() <= cap));
    assert_eq!(p.iter().map(|r| r.len()).sum::<u64>(), 5 * GB);
    let (p, _) = plan(AddrRange::new(0, 5 * GB), &vmas, Advice::Collapse, cap);
    assert!(p
        .iter()
        .all(|r| r.len() <= cap && r.len() % HPAGE_PMD_SIZE == 0));
}

// --- batching and resume --------------------------------------------------------------------

#[test]
fn batches_hold_at_most_iov_max_iovecs() {
    let vma = [AddrRange::new(0, 3000 * P)];
    let mut a = act(kernel(&vma));
    let r = a.apply(
        &[target(&vma)],
        &many(3000, 0, P, Advice::Cold),
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    let sizes: Vec<usize> = a.sys().calls.iter().map(|(_, v)| v.len()).collect();
    assert_eq!(sizes, vec![1024, 1024, 952]);
    assert_eq!(r.bytes_applied(), 3000 * P);
    assert!(r.outcomes.iter().all(|o| o.errors.is_empty()));
}

#[test]
fn batches_stay_under_max_rw_count_bytes() {
    // 5 GiB in 1 GiB requests: two 1 GiB pieces exceed MAX_RW_COUNT (2 GiB - 4 KiB), so one
    // per call; one 5 GiB request: three pieces of at most MAX_RW_COUNT.
    let vma = [AddrRange::new(0, 5 * GB)];
    for (reqs, calls) in [
        (many(5, 0, GB, Advice::Cold), 5),
        (many(1, 0, 5 * GB, Advice::Cold), 3),
    ] {
        let mut a = act(kernel(&vma));
        let r = a.apply(&[target(&vma)], &reqs, ApplyOpts::default());
        assert_accounted(&r);
        assert_eq!(r.bytes_applied(), 5 * GB);
        for (_, c) in &a.sys().calls {
            assert!(c.iter().map(|r| r.len()).sum::<u64>() <= MAX_RW_COUNT);
        }
        assert_eq!(a.sys().calls.len(), calls);
    }
}

#[test]
fn short_return_resumes_after_the_failing_piece_and_skips_it() {
    let vma = [AddrRange::new(0, 10 * P)];
    let mut k = kernel(&vma);
    k.fail.push((AddrRange::new(4 * P, 5 * P), Errno::EINVAL));
    let mut a = act(k);
    let r = a.apply(
        &[target(&vma)],
        &many(10, 0, P, Advice::Pageout),
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    let calls: Vec<(u64, usize)> = a
        .sys()
        .calls
        .iter()
        .map(|(_, v)| (v[0].start / P, v.len()))
        .collect();
    // 1st call: pieces 0..10, kernel stops at 4 and returns 4 pages; 2nd: 4..10 fails
    // outright (errno EINVAL); 3rd: 5..10.
    assert_eq!(calls, vec![(0, 10), (4, 6), (5, 5)]);
    assert_eq!(r.bytes_applied(), 9 * P);
    assert_eq!(err(&r.outcomes[4], ApplyErrorKind::Invalid), P);
    assert_eq!(
        r.outcomes.iter().filter(|o| !o.errors.is_empty()).count(),
        1
    );
    assert_eq!(a.stats().short_returns, 1);
    assert_eq!(a.stats().pieces_failed, 1);
}

#[test]
fn a_transient_failure_is_retried_and_applied() {
    let vma = [AddrRange::new(0, 10 * P)];
    let mut k = kernel(&vma);
    k.fail_once
        .push((AddrRange::new(4 * P, 5 * P), Errno::EAGAIN));
    let mut a = act(k);
    let r = a.apply(
        &[target(&vma)],
        &many(10, 0, P, Advice::Cold),
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    assert_eq!(r.bytes_applied(), 10 * P);
    assert_eq!(a.sys().calls.len(), 2);
}

#[test]
fn a_failing_first_piece_is_skipped_and_the_rest_applied() {
    let vma = [AddrRange::new(0, 10 * P)];
    let mut k = kernel(&vma);
    k.fail.push((AddrRange::new(0, P), Errno::EINVAL));
    k.fail.push((AddrRange::new(9 * P, 10 * P), Errno::EINVAL));
    let mut a = act(k);
    let r = a.apply(
        &[target(&vma)],
        &many(10, 0, P, Advice::Cold),
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    assert_eq!(r.bytes_applied(), 8 * P);
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::Invalid), P);
    assert_eq!(err(&r.outcomes[9], ApplyErrorKind::Invalid), P);
}

#[test]
fn range_unmapped_since_the_snapshot_is_reported_unmapped_and_the_rest_applied() {
    let snap = [AddrRange::new(0, 10 * P)];
    // Pages 3..6 were unmapped after the snapshot.
    let now = [AddrRange::new(0, 3 * P), AddrRange::new(6 * P, 10 * P)];
    let mut a = act(kernel(&now));
    let r = a.apply(
        &[target(&snap)],
        &many(10, 0, P, Advice::Pageout),
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    assert_eq!(r.bytes_applied(), 7 * P);
    for i in 3..6 {
        assert_eq!(err(&r.outcomes[i], ApplyErrorKind::Unmapped), P);
    }
}

#[test]
fn errno_kinds_follow_the_advice() {
    let vma = [AddrRange::new(0, 8 * MB)];
    let mut k = kernel(&vma);
    k.fail.push((AddrRange::new(0, P), Errno::ENOMEM));
    k.fail
        .push((AddrRange::new(2 * MB, 2 * MB + P), Errno::EAGAIN));
    k.fail
        .push((AddrRange::new(4 * MB, 4 * MB + P), Errno::EBUSY));
    let mut a = act(k);
    let reqs = many(4, 0, 2 * MB, Advice::Collapse);
    let r = a.apply(&[target(&vma)], &reqs, ApplyOpts::default());
    assert_accounted(&r);
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::NoMemory), 2 * MB);
    assert_eq!(err(&r.outcomes[1], ApplyErrorKind::Again), 2 * MB);
    assert_eq!(
        err(&r.outcomes[2], ApplyErrorKind::Other(libc::EBUSY)),
        2 * MB
    );
    assert_eq!(r.outcomes[3].bytes_applied, 2 * MB);
    assert_eq!(
        errno_kind(Errno::ENOMEM, Advice::Pageout),
        ApplyErrorKind::Unmapped
    );
}

// --- target-level errors ------------------------------------------------------------------------

#[test]
fn target_exiting_mid_batch_is_reported_gone_and_others_still_applied() {
    let vma = [AddrRange::new(0, 3000 * P)];
    let mut k = kernel(&vma);
    k.gone_after = Some(1);
    let mut a = act(k);
    let other = Target::simulated(TargetId(7), PID + 1, vma.iter().copied());
    let mut reqs = many(3000, 0, P, Advice::Cold);
    reqs.push(req(7, 0, P, Advice::Pageout));
    let r = a.apply(&[target(&vma), other], &reqs, ApplyOpts::default());
    assert_accounted(&r);
    // The first call (1024 pieces) went through; the second got ESRCH, no third call for
    // this target; target 7's call then got ESRCH too (the fake is one process).
    assert_eq!(
        r.outcomes[..1024]
            .iter()
            .map(|o| o.bytes_applied)
            .sum::<u64>(),
        1024 * P
    );
    assert_eq!(
        r.outcomes[1024..3000]
            .iter()
            .map(|o| err(o, ApplyErrorKind::TargetGone))
            .sum::<u64>(),
        1976 * P
    );
    assert_eq!(a.sys().calls.len(), 3);
    assert_eq!(r.gone, vec![TargetId(PID), TargetId(7)]);
}

#[test]
fn permission_denied_stops_the_target_after_one_call_with_a_clear_error() {
    for e in [Errno::EPERM, Errno::EACCES] {
        let vma = [AddrRange::new(0, 3000 * P)];
        let mut k = kernel(&vma);
        k.call_errno = Some(e);
        let mut a = act(k);
        let mut reqs = many(3000, 0, P, Advice::Cold);
        reqs.push(req(PID, 0, P, Advice::Pageout));
        let r = a.apply(&[target(&vma)], &reqs, ApplyOpts::default());
        assert_accounted(&r);
        assert_eq!(a.sys().calls.len(), 1);
        assert!(r
            .outcomes
            .iter()
            .all(|o| err(o, ApplyErrorKind::Permission) == o.bytes_requested));
        let msgs: Vec<String> = r
            .permission_errors()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(msgs.len(), 1);
        assert!(
            msgs[0].contains(&format!("pid {PID}"))
                && msgs[0].contains("CAP_SYS_NICE")
                && msgs[0].contains("ptrace")
        );
        assert!(r.gone.is_empty());
    }
}

#[test]
fn self_pid1_and_kernel_threads_are_refused_without_a_syscall() {
    let vma = [AddrRange::new(0, 4 * P)];
    let me = std::process::id();
    let targets = [
        Target::simulated(TargetId(1), 1, vma),
        Target::simulated(TargetId(2), me, vma),
        Target::simulated(TargetId(3), PID, vma).with_kernel_thread(true),
    ];
    let reqs = [
        req(1, 0, P, Advice::Cold),
        req(2, 0, P, Advice::Pageout),
        req(3, 0, P, Advice::Willneed),
    ];
    let mut a = act(kernel(&vma));
    let r = a.apply(&targets, &reqs, ApplyOpts::default());
    assert_accounted(&r);
    assert!(a.sys().calls.is_empty());
    assert!(r
        .outcomes
        .iter()
        .all(|o| err(o, ApplyErrorKind::Refused) == P));
    assert_eq!(targets[0].refusal(), Some(Refusal::Init));
    assert_eq!(targets[1].refusal(), Some(Refusal::SelfProcess));
    assert_eq!(targets[2].refusal(), Some(Refusal::KernelThread));
}

#[test]
fn a_request_for_an_unknown_target_is_reported_gone() {
    let mut a = act(kernel(&[]));
    let r = a.apply(&[], &[req(9, 0, P, Advice::Cold)], ApplyOpts::default());
    assert_accounted(&r);
    assert_eq!(r.gone, vec![TargetId(9)]);
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::TargetGone), P);
}

#[test]
fn host_sys_refuses_a_simulated_target_with_ebadf() {
    let vma = [AddrRange::new(0, P)];
    let mut a = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    let r = a.apply(
        &[target(&vma)],
        &[req(PID, 0, P, Advice::Cold)],
        ApplyOpts::default(),
    );
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::Other(libc::EBADF)), P);
}

// --- rails: dry run, cancel, swap headroom --------------------------------------------------------

#[test]
fn dry_run_plans_everything_and_applies_nothing() {
    let vma = [AddrRange::new(0, 10 * P)];
    let mut a = act(kernel(&vma));
    let reqs = [
        req(PID, 0, 12 * P, Advice::Pageout),
        req(PID, 0, 4 * MB, Advice::Collapse),
    ];
    let r = a.apply(
        &[target(&vma)],
        &reqs,
        ApplyOpts {
            dry_run: true,
            cancel: None,
            ..Default::default()
        },
    );
    assert_accounted(&r);
    assert!(r.dry_run);
    assert!(a.sys().calls.is_empty());
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::DryRun), 10 * P);
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::Unmapped), 2 * P);
    // 40 KiB mapped: no whole huge page.
    assert_eq!(err(&r.outcomes[1], ApplyErrorKind::DryRun), 0);
    assert_eq!(r.bytes_applied(), 0);
}

#[test]
fn cancel_between_batches_reports_the_rest_cancelled() {
    let vma = [AddrRange::new(0, 3000 * P)];
    let flag = Arc::new(AtomicBool::new(false));
    let mut k = kernel(&vma);
    k.cancel_after = Some((1, flag.clone()));
    let mut a = act(k);
    let other = Target::simulated(TargetId(7), PID + 1, vma.iter().copied());
    let mut reqs = many(3000, 0, P, Advice::Cold);
    reqs.push(req(7, 0, P, Advice::Cold));
    let r = a.apply(
        &[target(&vma), other],
        &reqs,
        ApplyOpts {
            dry_run: false,
            cancel: Some(&flag),
            ..Default::default()
        },
    );
    assert_accounted(&r);
    assert_eq!(a.sys().calls.len(), 1);
    assert_eq!(r.bytes_applied(), 1024 * P);
    assert_eq!(
        r.outcomes
            .iter()
            .map(|o| err(o, ApplyErrorKind::Cancelled))
            .sum::<u64>(),
        1977 * P
    );
}

fn swap_kernel(vma: &[AddrRange], total: u64, free: u64) -> FakeKernel {
    let mut k = kernel(vma);
    k.swap = SwapStat { total, free };
    k
}

#[test]
fn pageout_stops_at_the_swap_headroom_and_other_advice_goes_on() {
    let vma = [AddrRange::new(0, 64 * MB)];
    // 100 MiB swap, 20 MiB free, headroom 10 MiB: 10 MiB may be paged out.
    let mut a = act(swap_kernel(&vma, 100 * MB, 20 * MB));
    let reqs = [
        req(PID, 0, 30 * MB, Advice::Pageout),
        req(PID, 32 * MB, 40 * MB, Advice::Cold),
    ];
    let r = a.apply(&[target(&vma)], &reqs, ApplyOpts::default());
    assert_accounted(&r);
    assert_eq!(r.outcomes[0].bytes_applied, 10 * MB);
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::SwapHeadroom), 20 * MB);
    assert_eq!(r.outcomes[1].bytes_applied, 8 * MB);
    assert_eq!(a.sys().swap.free, 10 * MB);
    assert!(a.in_headroom);
    // Next round, still under: nothing paged out, no syscall for it.
    let calls = a.sys().calls.len();
    let r = a.apply(&[target(&vma)], &reqs[..1], ApplyOpts::default());
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::SwapHeadroom), 30 * MB);
    assert_eq!(a.sys().calls.len(), calls);
    // Swap freed up: page-out resumes.
    a.sys_mut().swap.free = 100 * MB;
    let r = a.apply(&[target(&vma)], &reqs[..1], ApplyOpts::default());
    assert_eq!(r.outcomes[0].bytes_applied, 30 * MB);
    assert!(!a.in_headroom);
}

#[test]
fn pageout_without_swap_is_not_limited_and_unreadable_swap_stops_it() {
    let vma = [AddrRange::new(0, 64 * MB)];
    let mut a = act(swap_kernel(&vma, 0, 0));
    let r = a.apply(
        &[target(&vma)],
        &[req(PID, 0, 64 * MB, Advice::Pageout)],
        ApplyOpts::default(),
    );
    assert_eq!(r.bytes_applied(), 64 * MB);
    let mut k = kernel(&vma);
    k.swap_err = true;
    let mut a = act(k);
    let r = a.apply(
        &[target(&vma)],
        &[req(PID, 0, 64 * MB, Advice::Pageout)],
        ApplyOpts::default(),
    );
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::SwapHeadroom), 64 * MB);
    assert!(a.sys().calls.is_empty());
}

#[test]
fn host_sys_reads_swap_under_its_sysroot_and_stops_pageout_there() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("proc")).unwrap();
    std::fs::write(
        dir.path().join("proc/meminfo"),
        "MemTotal: 1000 kB\nSwapTotal: 102400 kB\nSwapFree: 5120 kB\n",
    )
    .unwrap();
    let mut sys = HostSys::new(SysRoot::under(dir.path()));
    assert_eq!(
        sys.swap().unwrap(),
        SwapStat {
            total: 100 * MB,
            free: 5 * MB
        }
    );
    let vma = [AddrRange::new(0, P)];
    let mut a = Actuator::new(SysRoot::under(dir.path()), ActuatorConfig::default());
    let r = a.apply(
        &[target(&vma)],
        &[req(PID, 0, P, Advice::Pageout)],
        ApplyOpts::default(),
    );
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::SwapHeadroom), P);
    assert_eq!(a.stats().calls, 0);
    // No meminfo: not paging out blind.
    let mut a = Actuator::new(
        SysRoot::under(dir.path().join("nowhere")),
        ActuatorConfig::default(),
    );
    let r = a.apply(
        &[target(&vma)],
        &[req(PID, 0, P, Advice::Pageout)],
        ApplyOpts::default(),
    );
    assert_eq!(err(&r.outcomes[0], ApplyErrorKind::SwapHeadroom), P);
}

// --- time -------------------------------------------------------------------------------------

#[test]
fn call_time_is_shared_by_bytes_and_sums_to_the_time_spent() {
    let vma = [AddrRange::new(0, 64 * P)];
    let mut k = kernel(&vma);
    k.fail.push((AddrRange::new(40 * P, 41 * P), Errno::EINVAL));
    let mut a = act(k);
    let reqs = [
        req(PID, 0, 8 * P, Advice::Cold),
        req(PID, 8 * P, 40 * P, Advice::Cold),
        req(PID, 40 * P, 64 * P, Advice::Cold),
    ];
    let r = a.apply(&[target(&vma)], &reqs, ApplyOpts::default());
    assert_accounted(&r);
    assert_eq!(r.elapsed_ns(), a.sys().clock);
    // First call (1000 + 40 ns for 40 pages applied) over the first two requests (and the
    // failing piece of the third), by bytes: 8/64, 32/64, 24/64.
    assert_eq!(r.outcomes[0].elapsed_ns, 1040 * 8 / 64);
    assert_eq!(r.outcomes[1].elapsed_ns, 1040 * 32 / 64);
}

#[test]
fn an_ok_without_progress_is_counted_failed_not_looped_on() {
    let vma = [AddrRange::new(0, 4 * P)];
    let mut k = kernel(&vma);
    k.lie_zero = true;
    let mut a = act(k);
    let r = a.apply(
        &[target(&vma)],
        &many(4, 0, P, Advice::Cold),
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    assert_eq!(a.sys().calls.len(), 4);
    assert!(r
        .outcomes
        .iter()
        .all(|o| err(o, ApplyErrorKind::Other(0)) == P));
}

// --- properties ---------------------------------------------------------------------------------

fn arb_advice() -> impl Strategy<Value = Advice> {
    prop_oneof![
        Just(Advice::Cold),
        Just(Advice::Pageout),
        Just(Advice::Willneed),
        Just(Advice::Collapse)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Whatever the VMAs, holes, unmaps since the snapshot and kernel failures: every byte of
    /// every request is accounted for; every call keeps the kernel's limits (checked by the
    /// fake); the kernel was only ever asked about snapshot-mapped, requested pages; what the
    /// report says applied is exactly what the kernel applied; time sums to the time spent.
    #[test]
    fn every_byte_is_accounted_and_only_requested_mapped_pages_are_advised(
        vma_units in prop::collection::vec((0u64..8, 1u64..2048), 1..12),
        unmap in prop::collection::vec((0u64..40_000, 1u64..64), 0..4),
        fails in prop::collection::vec((0u64..40_000, 1u64..8, 0usize..4), 0..8),
        reqs in prop::collection::vec((0u64..40_000 * 4096, 0u64..3_000_000, arb_advice()), 1..60),
        odd in any::<bool>(),
    ) {
        // Snapshot VMAs: gaps and lengths in pages.
        let mut vmas = Vec::new();
        let mut at = 0u64;
        for (gap, len) in vma_units {
            at += gap * 512 * P;
            vmas.push(AddrRange::new(at, at + len * P));
            at += len * P;
        }
        // Now: the snapshot minus some unmapped page runs.
        let mut mapped = vmas.clone();
        for (p, n) in unmap {
            let hole = AddrRange::new(p * P, (p + n) * P);
            mapped = mapped.into_iter().flat_map(|m| {
                if !m.intersects(&hole) { return vec![m]; }
                let mut v = vec![];
                if m.start < hole.start { v.push(AddrRange::new(m.start, hole.start)); }
                if hole.end < m.end { v.push(AddrRange::new(hole.end, m.end)); }
                v
            }).collect();
        }
        let mut k = kernel(&mapped);
        let errnos = [Errno::EINVAL, Errno::ENOMEM, Errno::EAGAIN, Errno::EBUSY];
        for (p, n, e) in fails {
            k.fail.push((AddrRange::new(p * P, (p + n) * P), errnos[e]));
        }
        let mut a = act(k);
        let requests: Vec<AdviceRequest> = reqs.iter().map(|&(s, l, adv)| {
            let s = if odd { s } else { s & !(P - 1) };
            req(PID, s, s + l, adv)
        }).collect();
        let r = a.apply(&[target(&vmas)], &requests, ApplyOpts::default());
        assert_accounted(&r);
        let applied_kernel: u64 = a.sys().applied.iter().map(|(_, r)| r.len()).sum();
        prop_assert_eq!(r.bytes_applied(), applied_kernel);
        prop_assert_eq!(r.elapsed_ns(), a.sys().clock);
        for (adv, c) in &a.sys().calls {
            for io in c {
                prop_assert!(vmas.iter().any(|v| v.start <= io.start && io.end <= v.end), "iovec {} outside one VMA", io);
                prop_assert!(requests.iter().any(|q| q.advice == *adv && q.range.start <= io.start && io.end <= q.range.end), "iovec {} not requested", io);
            }
        }
    }

    /// Batches never exceed IOV_MAX, and a run without failures makes the minimum number of
    /// calls: ceil(pieces / IOV_MAX).
    #[test]
    fn failure_free_runs_make_the_fewest_calls(n in 1u64..5000) {
        let vma = [AddrRange::new(0, n * P)];
        let mut a = act(kernel(&vma));
        let r = a.apply(&[target(&vma)], &many(n, 0, P, Advice::Cold), ApplyOpts::default());
        prop_assert_eq!(r.bytes_applied(), n * P);
        prop_assert_eq!(a.sys().calls.len() as u64, n.div_ceil(IOV_MAX as u64));
    }
}
