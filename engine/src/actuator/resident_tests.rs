//! The residency cut and the page-out pace against a simulated kernel that keeps a set of
//! resident pages: page-out takes pages out of it, pagemap reads it.

use super::*;
use crate::kernel::pagemap::{PagemapEntry, PM_PRESENT, PM_SWAP};
use crate::report::{ApplyErrorKind, ApplyReport};
use crate::{advice::AdviceRequest, region::TargetId};
use proptest::prelude::*;
use std::collections::BTreeSet;

const P: u64 = 4096;
const PID: u32 = 4_000_001;

#[derive(Default)]
struct Resident {
    /// Resident pages (addresses).
    pages: BTreeSet<u64>,
    /// Every iovec advised, with the resident bytes in it then.
    advised: Vec<(AddrRange, u64)>,
    /// (clock, bytes) of each call.
    calls: Vec<(u64, u64)>,
    pagemap_err: bool,
    pagemap_reads: usize,
    clock: u64,
    /// Each resident page a page-out call takes out costs this much simulated time.
    ns_per_page: u64,
}

impl ActuatorSys for Resident {
    fn process_madvise(
        &mut self,
        _t: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        let mut done = 0;
        self.calls
            .push((self.clock, iov.iter().map(|r| r.len()).sum()));
        for r in iov {
            let res: Vec<u64> = self.pages.range(r.start..r.end).copied().collect();
            self.advised.push((*r, res.len() as u64 * P));
            if advice == Advice::Pageout {
                self.clock += res.len() as u64 * self.ns_per_page;
                for a in res {
                    self.pages.remove(&a);
                }
            }
            done += r.len();
        }
        Ok(done)
    }
    fn swap(&mut self) -> std::io::Result<SwapStat> {
        Ok(SwapStat::default())
    }
    fn now_ns(&mut self) -> u64 {
        self.clock
    }
    fn sleep_ns(&mut self, ns: u64) {
        self.clock += ns;
    }
    fn pagemap(
        &mut self,
        _t: &Target<'_>,
        start: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> std::io::Result<()> {
        self.pagemap_reads += 1;
        if self.pagemap_err {
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        out.clear();
        out.extend((0..nr_pages as u64).map(|i| {
            PagemapEntry(if self.pages.contains(&(start + i * P)) {
                PM_PRESENT
            } else {
                PM_SWAP | 1
            })
        }));
        Ok(())
    }
}

fn act(k: Resident) -> Actuator<Resident> {
    let mut a = Actuator::with_sys(k, ActuatorConfig::default());
    a.page = P;
    a
}

fn req(start: u64, end: u64, advice: Advice) -> AdviceRequest {
    AdviceRequest {
        target: TargetId(PID),
        range: AddrRange::new(start, end),
        advice,
        scheme: 0,
    }
}

fn target(vma: AddrRange) -> Target<'static> {
    Target::simulated(TargetId(PID), PID, [vma])
}

fn accounted(r: &ApplyReport) {
    for o in &r.outcomes {
        let e: u64 = o.errors.iter().map(|(_, b)| b).sum();
        assert_eq!(o.bytes_applied + e, o.bytes_requested, "{o:?}");
        assert!(o.bytes_resident <= o.bytes_applied, "{o:?}");
    }
}

const BASE: u64 = 0x7f00_0000_0000;

/// Every other page of 64 resident: a first page-out advises the 32 resident pages only, a
/// second advises nothing and reports the range not resident (wholly skipped).
#[test]
fn a_second_pass_over_paged_out_memory_advises_and_charges_nothing() {
    let vma = AddrRange::new(BASE, BASE + 64 * P);
    let k = Resident {
        pages: (0..64)
            .filter(|i| i % 2 == 0)
            .map(|i| BASE + i * P)
            .collect(),
        ..Default::default()
    };
    let mut a = act(k);
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        ApplyOpts::default(),
    );
    accounted(&r);
    let o = &r.outcomes[0];
    assert_eq!(
        (o.bytes_applied, o.bytes_resident, o.not_resident()),
        (32 * P, 32 * P, 32 * P)
    );
    assert!(!o.wholly_skipped());
    // Only resident pages went to the kernel, one iovec per run.
    assert_eq!(a.sys().advised.len(), 32);
    assert!(a.sys().advised.iter().all(|(r, res)| r.len() == *res));
    assert!(a.sys().pages.is_empty());

    let calls = a.sys().advised.len();
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        ApplyOpts::default(),
    );
    accounted(&r);
    let o = &r.outcomes[0];
    assert_eq!(
        (o.bytes_applied, o.not_resident(), o.refund()),
        (0, 64 * P, 64 * P)
    );
    assert!(o.wholly_skipped());
    assert_eq!(a.sys().advised.len(), calls, "nothing advised");
    assert_eq!(a.stats().not_resident, 96 * P);
}

/// The cut is for page-out and cold only; dry runs read nothing; an unreadable pagemap
/// leaves the range uncut (advised as before, not counted resident); the scan bound leaves
/// what lies past it uncut.
#[test]
fn what_is_cut_and_what_is_left_whole() {
    let vma = AddrRange::new(BASE, BASE + 64 * P);
    let half = || Resident {
        pages: (0..32).map(|i| BASE + i * P).collect(),
        ..Default::default()
    };
    // cold: cut.
    let mut a = act(half());
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Cold)],
        ApplyOpts::default(),
    );
    assert_eq!(
        (r.outcomes[0].bytes_applied, r.outcomes[0].not_resident()),
        (32 * P, 32 * P)
    );
    // willneed: not cut, no read.
    let mut a = act(half());
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Willneed)],
        ApplyOpts::default(),
    );
    assert_eq!(
        (r.outcomes[0].bytes_applied, a.sys().pagemap_reads),
        (64 * P, 0)
    );
    // dry run: no read, all DryRun.
    let mut a = act(half());
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        ApplyOpts {
            dry_run: true,
            ..Default::default()
        },
    );
    accounted(&r);
    assert_eq!(a.sys().pagemap_reads, 0);
    assert_eq!(r.outcomes[0].error_bytes(ApplyErrorKind::DryRun), 64 * P);
    // unreadable pagemap: advised whole, none of it counted resident.
    let mut a = act(Resident {
        pagemap_err: true,
        ..half()
    });
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        ApplyOpts::default(),
    );
    accounted(&r);
    let o = &r.outcomes[0];
    assert_eq!(
        (o.bytes_applied, o.bytes_resident, o.not_resident()),
        (64 * P, 0, 0)
    );
    // The scan bound: the first request is read, the second (past the bound) is not.
    let mut a = Actuator::with_sys(
        half(),
        ActuatorConfig {
            resident_scan_max: 40 * P,
            ..Default::default()
        },
    );
    a.page = P;
    let r = a.apply(
        &[target(vma)],
        &[
            req(BASE + 32 * P, vma.end, Advice::Pageout),
            req(BASE, BASE + 32 * P, Advice::Pageout),
        ],
        ApplyOpts::default(),
    );
    accounted(&r);
    assert_eq!(r.outcomes[0].not_resident(), 32 * P);
    assert_eq!(
        (r.outcomes[1].bytes_applied, r.outcomes[1].bytes_resident),
        (32 * P, 0)
    );
}

/// The pace spreads a round's page-out over up to a second (waiting, here on the simulated
/// clock), a tenth of the rate at most at once; what is left after that second is reported
/// Paced (refunded, planned again). Over any window of the calls, at most `burst + rate ×
/// window` bytes went out.
#[test]
fn pageout_is_paced_over_the_second() {
    let vma = AddrRange::new(BASE, BASE + 2048 * P);
    let k = Resident {
        pages: (0..2048).map(|i| BASE + i * P).collect(),
        ..Default::default()
    };
    let mut a = act(k);
    let rate = 4 << 20;
    let opts = ApplyOpts {
        pace_bytes_per_s: Some(rate),
        ..Default::default()
    };
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        opts,
    );
    accounted(&r);
    let o = &r.outcomes[0];
    let burst = Pacer::burst(rate, P);
    // About one second's worth (plus the first slice) went; the rest is paced.
    assert!(
        o.bytes_applied >= rate && o.bytes_applied <= rate + burst + P,
        "{o:?}"
    );
    assert_eq!(
        o.error_bytes(ApplyErrorKind::Paced),
        vma.len() - o.bytes_applied
    );
    assert_eq!(o.refund(), vma.len() - o.bytes_applied);
    // The pace stopped the request part-way: the monitor keeps the age of the rest and the
    // schemes resume there.
    assert_eq!(o.paced_from, Some(vma.start + o.bytes_applied), "{o:?}");
    assert_eq!(
        o.reached(),
        AddrRange::new(vma.start, vma.start + o.bytes_applied)
    );
    let calls = &a.sys().calls;
    assert!(calls.len() >= 10, "{} calls: not spread", calls.len());
    assert!(calls.last().unwrap().0 <= pace::PACE_ROUND_NS);
    for i in 0..calls.len() {
        let mut sum = 0u128;
        for c in &calls[i..] {
            sum += c.1 as u128;
            let window = (c.0 - calls[i].0) as u128;
            assert!(sum <= burst as u128 + rate as u128 * window / 1_000_000_000 + P as u128);
        }
    }
    // A small round goes at once, without waiting.
    let t0 = a.sys().clock;
    let small = AddrRange::new(vma.end - 4 * P, vma.end);
    a.sys_mut().clock += 1_000_000_000;
    let r = a.apply(
        &[target(vma)],
        &[req(small.start, small.end, Advice::Pageout)],
        opts,
    );
    assert_eq!(r.outcomes[0].bytes_applied, 4 * P);
    assert_eq!(a.sys().clock, t0 + 1_000_000_000);
    // Other advice is not paced.
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Cold)],
        opts,
    );
    assert_eq!(r.outcomes[0].error_bytes(ApplyErrorKind::Paced), 0);
}

proptest! {
    /// For any residency and any disjoint requests (a round's ranges, as the schemes plan
    /// them): every byte is accounted for, the kernel is only
    /// asked to page out resident pages, and the bytes reported not resident are exactly the
    /// non-resident pages of the requests (as seen when each was read).
    #[test]
    fn only_resident_pages_are_advised_and_the_rest_is_reported(
        bits in proptest::collection::vec(any::<bool>(), 1..200),
        reqs in proptest::collection::vec((0u64..30, 1u64..40), 1..6),
    ) {
        let n = bits.len() as u64;
        let vma = AddrRange::new(BASE, BASE + n * P);
        let pages: BTreeSet<u64> = bits.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| BASE + i as u64 * P).collect();
        let mut a = act(Resident { pages: pages.clone(), ..Default::default() });
        let mut at = 0u64;
        let mut rq: Vec<AdviceRequest> = Vec::new();
        for (gap, l) in &reqs {
            let s = (at + gap).min(n);
            let e = (s + l).min(n);
            if s < e {
                rq.push(req(BASE + s * P, BASE + e * P, Advice::Pageout));
            }
            at = e;
        }
        // Not in address order: the schemes' order is by priority.
        rq.reverse();
        let r = a.apply(&[target(vma)], &rq, ApplyOpts::default());
        accounted(&r);
        for (range, res) in &a.sys().advised {
            prop_assert_eq!(range.len(), *res, "advised a non-resident page in {}", range);
        }
        // Replay the requests in order against the initial residency.
        let mut left = pages;
        for (q, o) in rq.iter().zip(&r.outcomes) {
            let here: Vec<u64> = left.range(q.range.start..q.range.end).copied().collect();
            let resident = here.len() as u64 * P;
            prop_assert_eq!(o.bytes_applied, resident);
            prop_assert_eq!(o.bytes_resident, resident);
            prop_assert_eq!(o.not_resident(), q.range.len() - resident);
            for x in here { left.remove(&x); }
        }
    }
}

/// The time pace (`pace.rs`): a 1 MiB probe call first, then calls sized by the measured
/// cost so that a round's page-out calls take about the time pace's share of the second —
/// not the size quota's guess (here 400 MiB/s of byte pace, the kernel's initial estimate for
/// a 100 ms quota, against a kernel that pages out 0.4 MiB per ms: ~1 s of calls unpaced).
#[test]
fn the_time_pace_holds_pageout_calls_to_the_time_quota_from_the_first_call() {
    let pages = 64 * 256; // 64 MiB
    let vma = AddrRange::new(BASE, BASE + pages * P);
    // All resident; 0.4 MiB per ms: 10 us a page.
    let kernel = || Resident {
        pages: (0..pages).map(|i| BASE + i * P).collect(),
        ns_per_page: 10_240,
        ..Default::default()
    };
    let mut a = act(kernel());
    let opts = ApplyOpts {
        pace_bytes_per_s: Some(400 << 20),
        pace_time_ns_per_s: Some(100_000_000),
        ..Default::default()
    };
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        opts,
    );
    accounted(&r);
    let o = &r.outcomes[0];
    let calls = a.sys().calls.clone();
    assert!(calls[0].1 <= pace::PACE_PROBE_BYTES, "probe: {calls:?}");
    // The calls' time: ≤ the time pace over the round (1 s) + its burst + one call's worth.
    let spent = o.bytes_applied / P * 10_240;
    assert!(
        spent <= 100_000_000 + 10_000_000 + 4_000_000,
        "{spent} ns of calls in a round: {o:?}"
    );
    // And it used most of that time: about 40 MiB at 0.4 MiB/ms.
    assert!(o.bytes_applied >= 30 << 20, "{o:?}");
    assert_eq!(
        o.error_bytes(ApplyErrorKind::Paced),
        vma.len() - o.bytes_applied
    );
    assert!(
        calls.len() >= 10,
        "spread over the second: {} calls",
        calls.len()
    );
    // Without the time pace the same round takes the byte pace's 400 MiB/s: every page.
    let mut a = act(kernel());
    let r = a.apply(
        &[target(vma)],
        &[req(vma.start, vma.end, Advice::Pageout)],
        ApplyOpts {
            pace_time_ns_per_s: None,
            ..opts
        },
    );
    assert_eq!(r.outcomes[0].bytes_applied, vma.len());
}
