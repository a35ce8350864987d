//! The idle cut against a simulated kernel: resident pages with PFNs, a page_idle bitmap
//! that reads THP tails 0 and ignores their writes (mm/page_idle.c 6.12), and
//! `/proc/kpageflags` for the heads.

use super::*;
use crate::kernel::kpageflags::{KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL};
use crate::kernel::pagemap::{PagemapEntry, PM_PRESENT, PM_SWAP};
use crate::report::{ApplyErrorKind, ApplyReport};
use crate::{advice::AdviceRequest, region::TargetId};
use std::collections::{BTreeMap, BTreeSet};

const P: u64 = 4096;
const PID: u32 = 4_000_002;
const BASE: u64 = 0x7f00_0000_0000;

#[derive(Default)]
struct Idle {
    /// Resident pages: address → PFN.
    pages: BTreeMap<u64, u64>,
    /// PFNs whose folio is marked idle and not accessed since.
    idle: BTreeSet<u64>,
    /// (first PFN, pages) of THPs: the first is the head.
    thps: Vec<(u64, u64)>,
    bitmap_err: bool,
    paged_out: u64,
    clock: u64,
}

impl Idle {
    fn tail(&self, pfn: u64) -> bool {
        self.thps.iter().any(|&(h, n)| pfn > h && pfn < h + n)
    }
    /// The workload touches the page at `addr`.
    fn touch(&mut self, addr: u64) {
        if let Some(pfn) = self.pages.get(&addr) {
            let head = self
                .thps
                .iter()
                .find(|&&(h, n)| *pfn >= h && *pfn < h + n)
                .map_or(*pfn, |t| t.0);
            self.idle.remove(&head);
        }
    }
}

impl ActuatorSys for Idle {
    fn process_madvise(
        &mut self,
        _t: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        let mut done = 0;
        for r in iov {
            if advice == Advice::Pageout {
                let out: Vec<u64> = self.pages.range(r.start..r.end).map(|(a, _)| *a).collect();
                self.paged_out += out.len() as u64 * P;
                for a in out {
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
    fn pagemap(
        &mut self,
        _t: &Target<'_>,
        start: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> std::io::Result<()> {
        out.clear();
        out.extend((0..nr_pages as u64).map(|i| {
            PagemapEntry(match self.pages.get(&(start + i * P)) {
                Some(pfn) => PM_PRESENT | pfn,
                None => PM_SWAP | 1,
            })
        }));
        Ok(())
    }
    fn kpageflags(&mut self, first: u64, n: usize, out: &mut Vec<u64>) -> std::io::Result<()> {
        out.clear();
        out.extend((first..first + n as u64).map(|p| {
            if self.tail(p) {
                KPF_COMPOUND_TAIL
            } else if self.thps.iter().any(|t| t.0 == p) {
                KPF_COMPOUND_HEAD
            } else {
                0
            }
        }));
        Ok(())
    }
    fn idle_words(&mut self, words: &[u64], out: &mut Vec<Option<u64>>) -> std::io::Result<()> {
        if self.bitmap_err {
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        out.clear();
        for &w in words {
            let mut v = 0u64;
            for b in 0..64 {
                let pfn = w * 64 + b;
                if !self.tail(pfn) && self.idle.contains(&pfn) {
                    v |= 1 << b;
                }
            }
            out.push(Some(v));
        }
        Ok(())
    }
    fn set_idle(&mut self, words: &[(u64, u64)]) -> std::io::Result<()> {
        if self.bitmap_err {
            return Err(std::io::Error::from_raw_os_error(libc::EACCES));
        }
        for &(w, mask) in words {
            for b in 0..64 {
                let pfn = w * 64 + b;
                if mask & (1 << b) != 0 && !self.tail(pfn) {
                    self.idle.insert(pfn);
                }
            }
        }
        Ok(())
    }
}

fn act(k: Idle) -> Actuator<Idle> {
    let mut a = Actuator::with_sys(
        k,
        ActuatorConfig {
            idle_cut: true,
            ..ActuatorConfig::default()
        },
    );
    a.page = P;
    a
}

fn pageout(a: &mut Actuator<Idle>, vma: AddrRange) -> ApplyReport {
    let req = AdviceRequest {
        target: TargetId(PID),
        range: vma,
        advice: Advice::Pageout,
        scheme: 0,
    };
    let t = Target::simulated(TargetId(PID), PID, [vma]);
    let r = a.apply(&[t], &[req], ApplyOpts::default());
    for o in &r.outcomes {
        let e: u64 = o.errors.iter().map(|(_, b)| b).sum();
        assert_eq!(o.bytes_applied + e, o.bytes_requested, "{o:?}");
    }
    r
}

const SEC: u64 = 1_000_000_000;

/// 64 pages, every 8th hot (PFNs scattered): the first advice marks them all and advises
/// nothing (never marked = not known idle), keeping the range's age; advice within the
/// mark's first second reads and marks nothing; once the workload has touched its hot pages
/// and the marks are a second old, the next advice pages out the 56 idle ones and keeps the
/// 8 hot ones in, marked again.
#[test]
fn pages_out_the_idle_pages_of_a_range_and_keeps_the_hot_ones() {
    let vma = AddrRange::new(BASE, BASE + 64 * P);
    let k = Idle {
        pages: (0..64)
            .map(|i| (BASE + i * P, 1000 + (i * 37) % 64 * 3))
            .collect(),
        ..Default::default()
    };
    let mut a = act(k);
    let r = pageout(&mut a, vma);
    let o = &r.outcomes[0];
    assert_eq!(o.bytes_applied, 0);
    assert_eq!(o.error_bytes(ApplyErrorKind::NotIdle), 64 * P);
    assert!(o.wholly_skipped() && o.refund() == 64 * P, "{o:?}");
    assert_eq!(a.sys().idle.len(), 64, "every page marked");
    assert_eq!(a.stats().idle_marked, 64);
    assert_eq!(a.stats().idle_read, 0);
    // A tenth of a second later: too young to judge; nothing read, nothing marked again.
    a.sys_mut().clock += SEC / 10;
    let r = pageout(&mut a, vma);
    assert_eq!(r.outcomes[0].error_bytes(ApplyErrorKind::NotIdle), 64 * P);
    assert_eq!((a.stats().idle_read, a.stats().idle_marked), (0, 64));
    a.sys_mut().clock += SEC;
    let hot: Vec<u64> = (0..64)
        .filter(|i| i % 8 == 0)
        .map(|i| BASE + i * P)
        .collect();
    for &h in &hot {
        a.sys_mut().touch(h);
    }
    let r = pageout(&mut a, vma);
    let o = &r.outcomes[0];
    assert_eq!(o.bytes_applied, 56 * P, "{o:?}");
    assert_eq!(o.error_bytes(ApplyErrorKind::NotIdle), 8 * P);
    assert_eq!(a.sys().paged_out, 56 * P);
    assert!(hot.iter().all(|h| a.sys().pages.contains_key(h)));
    assert_eq!(a.sys().idle.len(), 64, "the hot pages marked again");
    assert_eq!(a.stats().idle_read, 64);
    // Nothing touched since: the hot pages go too; the rest is not resident.
    a.sys_mut().clock += SEC;
    let r = pageout(&mut a, vma);
    let o = &r.outcomes[0];
    assert_eq!((o.bytes_applied, o.not_resident()), (8 * P, 56 * P));
    assert_eq!(a.stats().not_idle, (64 + 64 + 8) * P);
}

/// A THP: its tails read 0 and ignore writes; the cut judges and marks them through the
/// head, so an idle huge page goes out whole and a touched one stays whole.
#[test]
fn thp_tails_are_judged_through_their_head() {
    let vma = AddrRange::new(BASE, BASE + 1024 * P);
    let k = Idle {
        pages: (0..1024).map(|i| (BASE + i * P, 4096 * 512 + i)).collect(),
        thps: vec![(4096 * 512, 512), (4096 * 512 + 512, 512)],
        ..Default::default()
    };
    let mut a = act(k);
    let r = pageout(&mut a, vma);
    assert_eq!(r.outcomes[0].bytes_applied, 0);
    assert_eq!(a.sys().idle.len(), 2, "the two heads marked");
    a.sys_mut().clock += SEC;
    a.sys_mut().touch(BASE + 700 * P); // a tail of the second
    let r = pageout(&mut a, vma);
    let o = &r.outcomes[0];
    assert_eq!(o.bytes_applied, 512 * P, "{o:?}");
    assert_eq!(o.error_bytes(ApplyErrorKind::NotIdle), 512 * P);
    assert!(a.sys().pages.contains_key(&(BASE + 512 * P)));
    assert!(!a.sys().pages.contains_key(&(BASE + 511 * P)));
    assert!(a.stats().idle_thp_tails >= 511 * 2);
}

/// A range reaching past the memory marked before: none of it is advised (the marked
/// part would reset the age of the unjudged part), the new part is marked, and the next
/// advice judges all of it.
#[test]
fn a_range_partly_unmarked_is_kept_in_whole_until_all_of_it_is_judged() {
    let vma = AddrRange::new(BASE, BASE + 128 * P);
    let k = Idle {
        pages: (0..128).map(|i| (BASE + i * P, 500 + i)).collect(),
        ..Default::default()
    };
    let mut a = act(k);
    pageout(&mut a, AddrRange::new(BASE, BASE + 64 * P));
    a.sys_mut().clock += SEC;
    let r = pageout(&mut a, vma);
    let o = &r.outcomes[0];
    assert_eq!(
        (o.bytes_applied, o.error_bytes(ApplyErrorKind::NotIdle)),
        (0, 128 * P)
    );
    assert!(o.wholly_skipped());
    assert_eq!(a.stats().idle_read, 0);
    a.sys_mut().clock += SEC;
    let r = pageout(&mut a, vma);
    assert_eq!(r.outcomes[0].bytes_applied, 128 * P);
}

/// The bitmap cannot be read: the range is advised as before (the residency cut alone).
#[test]
fn an_unreadable_bitmap_leaves_the_range_uncut() {
    let vma = AddrRange::new(BASE, BASE + 16 * P);
    let k = Idle {
        pages: (0..16).map(|i| (BASE + i * P, 100 + i)).collect(),
        bitmap_err: true,
        ..Default::default()
    };
    let mut a = act(k);
    let r = pageout(&mut a, vma);
    assert_eq!(r.outcomes[0].bytes_applied, 16 * P);
    assert_eq!(r.outcomes[0].error_bytes(ApplyErrorKind::NotIdle), 0);
}

/// The marks are per target: a target gone is forgotten; the memory is bounded.
#[test]
fn marks_are_forgotten_with_their_target_and_bounded() {
    let vma = AddrRange::new(BASE, BASE + 256 * P);
    let k = Idle {
        pages: (0..256).map(|i| (BASE + i * P, 100 + i)).collect(),
        ..Default::default()
    };
    let mut a = act(k);
    pageout(&mut a, vma);
    assert_eq!(a.marks.len(), 4);
    a.forget_marks(&[TargetId(PID)]);
    assert!(a.marks.is_empty());
    let mut m = idle::Marks::default();
    for w in 0..(idle::MAX_MARK_WORDS as u64 + 1) {
        m.set_for_test(TargetId(1), w, w);
    }
    assert!(m.len() <= idle::MAX_MARK_WORDS / 2 + 1, "{}", m.len());
}
