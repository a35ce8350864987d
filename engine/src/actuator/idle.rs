//! The idle cut: where page_idle is the access check (`--ops page_idle`), before a page-out
//! (or `cold`) piece is advised the actuator reads the page_idle bit of every resident page
//! of it, cuts out the pages accessed since they were last marked idle, and marks those
//! pages idle, so that the next advice of the range judges them again.
//!
//! Why: DAMON judges a region by one sample page per sampling interval. A region whose hot
//! pages are scattered among idle ones at 4 KiB is either never taken (`accesses: 0..0`
//! needs a run of samples that all missed its hot pages) or, by a scheme that takes low
//! frequencies (`policies/reclaim.ron`'s `lukewarm`) or a chance run of zeros, paged out
//! whole: its hot pages fault back at once, and the refault guard counts them against the
//! scheme and shrinks its quota, which then leaves the idle 90% of those regions in memory
//! (docs/performance.md, "Reclaim side by side with the kernel (lab)", the scattered set).
//! page_idle answers for every page, not only the sample: the cut pages out the idle pages of
//! such a region and leaves its hot ones. The kernel's DAMOS has no such step
//! (`damos_apply_scheme()`, mm/damon/core.c 6.12, applies the action to the whole region;
//! `MADV_PAGEOUT` reclaims every page it is given, referenced or not:
//! `reclaim_pages(..., ignore_references = true)`, mm/vmscan.c 6.12).
//!
//! The rule, per page the residency cut (`resident.rs`) keeps, from its pagemap PFN:
//! - its folio's bit reads idle (1): not accessed since somebody — this cut, the monitor's
//!   sample check, another user of the bitmap — marked it → advised;
//! - it reads 0: accessed since it was marked, never marked, or not on an LRU list yet (a
//!   page just faulted in waits in a per-CPU batch) → cut out, reported
//!   [`ApplyErrorKind::Accessed`](crate::report::ApplyErrorKind::Accessed) (refunded to the
//!   size quota; a range wholly cut keeps its age), then marked idle;
//! - a THP tail reads 0 and ignores writes (`page_idle_get_folio`, mm/page_idle.c 6.12):
//!   a page reading 0 whose `/proc/kpageflags` says compound tail is judged, and marked,
//!   through its folio's head;
//! - no PFN (a migration entry), or a word the kernel did not return (past `max_pfn`) →
//!   advised as before.
//!
//! So a page goes out only after it has gone unaccessed for at least the time since its
//! last mark — one apply interval of the scheme at the least: the first advice of a range
//! nobody marked advises nothing of it and marks it all. A hot page of a sample the monitor
//! marked within the current sampling interval and this cut marks again may read idle at
//! the sample's check (one missed access of that region in that interval, as any two users
//! of the bitmap see of each other).
//!
//! Bounded as the residency cut is: only the pages it read, within
//! [`ActuatorConfig::resident_scan_max`](super::ActuatorConfig::resident_scan_max) per
//! round; one `pread` per run of consecutive bitmap words (and per run of consecutive PFNs
//! in kpageflags, for pages reading 0), one `pwrite` per run when marking. Its time is not
//! charged to the time quota (like the residency cut's reads: see `scan_pieces`), and is
//! counted in [`ActuatorStats::idle_cut_ns`](super::ActuatorStats::idle_cut_ns).
//! An error reading the bitmap leaves the chunk uncut (advised as before).

use super::resident::is_resident;
use super::{Actuator, ActuatorSys};
use crate::kernel::kpageflags::KPF_COMPOUND_TAIL;
use crate::kernel::page_idle::{is_idle, word_index, words_for};
use crate::kernel::pagemap::PagemapEntry;
use crate::ops::page_idle::{find_head, MAX_FOLIO_PAGES};
use crate::region::AddrRange;

/// Cut `range` (page-aligned) by the entries of its pages and the idle verdicts of its
/// resident ones (`idle[i]` for the page at `range.start + i * page`: `Some(false)` read
/// accessed, cut; `Some(true)` or `None` (not read): advised): emit each maximal run of
/// pages to advise, in order, and return `(bytes not resident, bytes accessed)`. Pages past
/// the end of `entries` count as resident, past the end of `idle` as not read. Emitted +
/// not resident + accessed == `range.len()`.
pub fn idle_runs(
    range: AddrRange,
    page: u64,
    entries: &[PagemapEntry],
    idle: &[Option<bool>],
    mut emit: impl FnMut(AddrRange),
) -> (u64, u64) {
    let pages = range.len() / page;
    let (mut not_resident, mut accessed) = (0, 0);
    let mut run_start: Option<u64> = None;
    for i in 0..pages {
        let addr = range.start + i * page;
        let resident = entries.get(i as usize).is_none_or(|e| is_resident(*e));
        let hot = resident && idle.get(i as usize).copied().flatten() == Some(false);
        let keep = resident && !hot;
        match (keep, run_start) {
            (true, None) => run_start = Some(addr),
            (false, Some(s)) => {
                emit(AddrRange::new(s, addr));
                run_start = None;
            }
            _ => {}
        }
        if !resident {
            not_resident += page;
        } else if hot {
            accessed += page;
        }
    }
    if let Some(s) = run_start {
        emit(AddrRange::new(s, range.end));
    }
    (not_resident, accessed)
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

impl<S: ActuatorSys> Actuator<S> {
    /// The idle verdict of each resident page of a chunk's `entries` (indexed as they are;
    /// `None` where not read), and the PFNs to mark idle once the chunk is cut (its pages
    /// read accessed, tails as their heads). `None` when the bitmap cannot be read.
    pub(super) fn idle_verdicts(
        &mut self,
        entries: &[PagemapEntry],
    ) -> Option<(Vec<Option<bool>>, Vec<u64>)> {
        let t0 = self.sys.cpu_ns();
        let got = self.idle_verdicts_inner(entries);
        self.stats.idle_cut_ns += self.sys.cpu_ns().saturating_sub(t0);
        got
    }

    fn idle_verdicts_inner(
        &mut self,
        entries: &[PagemapEntry],
    ) -> Option<(Vec<Option<bool>>, Vec<u64>)> {
        let own: Vec<(usize, u64)> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| is_resident(**e))
            .filter_map(|(i, e)| e.pfn().map(|p| (i, p)))
            .collect();
        let mut verdict = vec![None; entries.len()];
        let pfns: Vec<u64> = own.iter().map(|&(_, p)| p).collect();
        let read = self.read_idle(&pfns)?;
        // Pages reading 0 may be THP tails: judge those by their heads.
        let zero: Vec<usize> = (0..own.len()).filter(|&k| read[k] == Some(false)).collect();
        let zero_pfns: Vec<u64> = zero.iter().map(|&k| pfns[k]).collect();
        let mut buf = Vec::new();
        let heads = heads_of(&zero_pfns, |first, n| {
            self.sys.kpageflags(first, n, &mut buf).ok()?;
            Some(buf.clone())
        });
        let head_pfns: Vec<u64> = heads.iter().flatten().copied().collect();
        let head_read = if head_pfns.is_empty() {
            Vec::new()
        } else {
            self.read_idle(&head_pfns)?
        };
        let mut tracked: Vec<u64> = pfns.clone();
        let mut hi = 0;
        let mut judged = read;
        for (z, h) in zero.iter().zip(&heads) {
            if let Some(h) = h {
                tracked[*z] = *h;
                judged[*z] = head_read[hi];
                hi += 1;
                self.stats.idle_thp_tails += 1;
            }
        }
        let mut mark = Vec::new();
        for (k, &(i, _)) in own.iter().enumerate() {
            verdict[i] = judged[k];
            if judged[k] == Some(false) {
                mark.push(tracked[k]);
            }
        }
        self.stats.idle_read += own.len() as u64;
        Some((verdict, mark))
    }

    /// Whether each of `pfns` reads idle (`None`: its word was not returned).
    fn read_idle(&mut self, pfns: &[u64]) -> Option<Vec<Option<bool>>> {
        let words: Vec<u64> = words_for(pfns.iter().copied())
            .iter()
            .map(|w| w.0)
            .collect();
        let mut got = Vec::new();
        if let Err(e) = self.sys.idle_words(&words, &mut got) {
            tracing::debug!("idle cut: page_idle bitmap: {e}");
            return None;
        }
        Some(
            pfns.iter()
                .map(|&p| {
                    let k = words.binary_search(&word_index(p)).ok()?;
                    is_idle(got.get(k).copied().flatten(), p)
                })
                .collect(),
        )
    }

    /// Mark `pfns` idle (the pages the cut kept in memory as accessed).
    pub(super) fn mark_idle(&mut self, pfns: &[u64]) {
        if pfns.is_empty() {
            return;
        }
        let t0 = self.sys.cpu_ns();
        if let Err(e) = self.sys.set_idle(&words_for(pfns.iter().copied())) {
            tracing::debug!("idle cut: marking pages idle: {e}");
        } else {
            self.stats.idle_marked += pfns.len() as u64;
        }
        self.stats.idle_cut_ns += self.sys.cpu_ns().saturating_sub(t0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kpageflags::KPF_COMPOUND_HEAD;
    use crate::kernel::pagemap::{PM_PRESENT, PM_SWAP};
    use proptest::prelude::*;

    const P: u64 = 4096;

    fn present(pfn: u64) -> PagemapEntry {
        PagemapEntry(PM_PRESENT | pfn)
    }

    #[test]
    fn cuts_pages_read_accessed_and_keeps_idle_and_unread_ones() {
        let r = AddrRange::new(0x40_0000, 0x40_0000 + 6 * P);
        let entries = [
            present(10),
            present(11),
            PagemapEntry(PM_SWAP | 1), // out
            present(13),
            present(14),
            present(15),
        ];
        let idle = [Some(true), Some(false), None, Some(true), None, Some(false)];
        let mut runs = Vec::new();
        let (out, hot) = idle_runs(r, P, &entries, &idle, |x| runs.push(x));
        assert_eq!((out, hot), (P, 2 * P));
        assert_eq!(
            runs,
            [
                AddrRange::new(r.start, r.start + P),
                AddrRange::new(r.start + 3 * P, r.start + 5 * P),
            ]
        );
        // No verdicts: the residency cut alone.
        let mut runs = Vec::new();
        assert_eq!(idle_runs(r, P, &entries, &[], |x| runs.push(x)), (P, 0));
        assert_eq!(runs.len(), 2);
    }

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

    proptest! {
        /// Every byte is emitted once, or counted not resident, or counted accessed; emitted
        /// pages are exactly the resident ones not read accessed.
        #[test]
        fn runs_partition_the_range(
            pages in proptest::collection::vec((0u8..3, proptest::option::of(any::<bool>())), 0..300),
            base in 0u64..1000,
        ) {
            let start = base * P;
            let range = AddrRange::new(start, start + pages.len() as u64 * P);
            let entries: Vec<PagemapEntry> = pages.iter().enumerate().map(|(i, (b, _))| match b {
                0 => present(100 + i as u64),
                1 => PagemapEntry(PM_SWAP | 1),
                _ => PagemapEntry(0),
            }).collect();
            let idle: Vec<Option<bool>> = pages.iter().map(|p| p.1).collect();
            let mut runs: Vec<AddrRange> = Vec::new();
            let (out, hot) = idle_runs(range, P, &entries, &idle, |x| runs.push(x));
            let emitted: u64 = runs.iter().map(|r| r.len()).sum();
            prop_assert_eq!(emitted + out + hot, range.len());
            for w in runs.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            for (i, (b, v)) in pages.iter().enumerate() {
                let a = start + i as u64 * P;
                let inside = runs.iter().any(|r| r.start <= a && a < r.end);
                prop_assert_eq!(inside, *b == 0 && *v != Some(false), "page {}", i);
            }
        }
    }
}
