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
//! The rule, per page the residency cut (`resident.rs`) keeps, from its pagemap PFN. The
//! cut remembers, per target and per 64-page word of its address space, when it last marked
//! pages there ([`Marks`]), and judges a page only by its own marks:
//! - a word it never marked (or whose mark it has forgotten): the page is kept in, reported
//!   [`ApplyErrorKind::NotIdle`](crate::report::ApplyErrorKind::NotIdle) (refunded to the
//!   size quota; a range wholly cut keeps its age), and marked idle now. So the first advice
//!   of a range pages out nothing of it and marks it all; the next judges it;
//! - a word it marked less than [`MIN_MARK_AGE_NS`] ago (a refill pass of the same round,
//!   another scheme's advice over the same memory): kept in, not read, not marked again (a
//!   fresh mark would put the judgement off for ever under advice more frequent than that);
//! - while any resident page of a chunk (a piece of a request, up to 256 MiB) is in such a
//!   word, the whole chunk is kept in: advising its judged part would reset the age of the
//!   region (the kernel's rule, `Monitor::apply_report`) and leave the unjudged rest waiting
//!   a whole minimum age;
//! - a word marked long enough ago: the page's folio bit is read. 1 (still idle: not
//!   accessed since a mark) → advised; 0 (accessed since, or not on an LRU list yet: a page
//!   just faulted in waits in a per-CPU batch) → kept in, `NotIdle`, marked again;
//! - a THP tail reads 0 and ignores writes (`page_idle_get_folio`, mm/page_idle.c 6.12): a
//!   page reading 0 whose `/proc/kpageflags` says compound tail is judged, and marked,
//!   through its folio's head;
//! - no PFN (a migration entry), or a word the kernel did not return (past `max_pfn`) →
//!   advised as before.
//!
//! So a page goes out only after it has gone unaccessed for at least [`MIN_MARK_AGE_NS`]
//! since the cut marked it. The bitmap is shared: the monitor's sample check marks its sample
//! pages too, so a sample page the cut finds idle may have been marked later than the cut's
//! word says (at most one page per region per sampling interval), and a hot sample page the
//! cut marks again inside the sample's interval may read idle at the sample's check (one
//! missed access of that region in that interval).
//!
//! Bounded as the residency cut is: only the pages it read, within
//! [`ActuatorConfig::resident_scan_max`](super::ActuatorConfig::resident_scan_max) per
//! round; one `pread` per run of consecutive bitmap words (and per run of consecutive PFNs
//! in kpageflags, for pages reading 0), one `pwrite` per run when marking. Its time is not
//! charged to the time quota (like the residency cut's reads: see `scan_pieces`), and is
//! counted in [`ActuatorStats::idle_cut_ns`](super::ActuatorStats::idle_cut_ns). Its memory
//! is one entry per 64-page word marked, at most [`MAX_MARK_WORDS`]. An error reading or
//! writing the bitmap leaves the chunk uncut (advised as before).

use super::resident::is_resident;
use super::{Actuator, ActuatorSys};
use crate::kernel::page_idle::{idle_of_with, words_for};
use crate::kernel::pagemap::PagemapEntry;
use crate::ops::page_idle::heads_of;
use crate::region::AddrRange;
use crate::region::TargetId;
use std::collections::{BTreeMap, HashMap};

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

/// The idle cut judges a page only once the cut's mark on it is at least this old: 750 ms,
/// three quarters of `policies/reclaim.ron`'s 1 s apply interval, so that every advice of a
/// scheme applied each second finds the marks of the advice before it old enough, whatever
/// the jitter of its timer (1.01–1.04 s apart in a diagnostic lab run: docs/architecture.md
/// "The idle cut"). What the region
/// level asks (seconds of a steady frequency) the scheme's pattern has asked already.
pub const MIN_MARK_AGE_NS: u64 = 750_000_000;

/// Words (64 pages of address space) whose marks are remembered, at most (2^20: 256 GiB of
/// 4 KiB pages, ~40 MiB of map at the worst); beyond it the oldest half is forgotten, and its
/// pages are marked again at their next advice.
pub const MAX_MARK_WORDS: usize = 1 << 20;

/// When the idle cut last marked pages of each 64-page word of each target's address space,
/// ns on the actuator's clock.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    words: HashMap<TargetId, BTreeMap<u64, u64>>,
    nr: usize,
}

impl Marks {
    fn get(&self, t: TargetId, word: u64) -> Option<u64> {
        self.words.get(&t)?.get(&word).copied()
    }

    fn set(&mut self, t: TargetId, word: u64, now: u64) {
        if self.words.entry(t).or_default().insert(word, now).is_none() {
            self.nr += 1;
        }
        if self.nr > MAX_MARK_WORDS {
            self.forget_oldest();
        }
    }

    /// Forget the older half of the marks.
    fn forget_oldest(&mut self) {
        let mut times: Vec<u64> = self
            .words
            .values()
            .flat_map(|m| m.values().copied())
            .collect();
        let k = times.len() / 2;
        let (_, cut, _) = times.select_nth_unstable(k);
        let cut = *cut;
        for m in self.words.values_mut() {
            m.retain(|_, t| *t > cut);
        }
        self.words.retain(|_, m| !m.is_empty());
        self.nr = self.words.values().map(|m| m.len()).sum();
    }

    #[cfg(test)]
    pub(super) fn set_for_test(&mut self, t: TargetId, word: u64, now: u64) {
        self.set(t, word, now)
    }

    /// Forget a target (gone).
    pub fn drop_target(&mut self, t: TargetId) {
        if let Some(m) = self.words.remove(&t) {
            self.nr -= m.len();
        }
    }

    /// Words remembered.
    pub fn len(&self) -> usize {
        self.nr
    }

    pub fn is_empty(&self) -> bool {
        self.nr == 0
    }
}

/// What the cut knows of a page's word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Word {
    Unmarked,
    Young,
    Old,
}

impl<S: ActuatorSys> Actuator<S> {
    /// The idle verdict of each resident page of `chunk` (its pagemap `entries`, indexed as
    /// they are; `Some(true)`: advise, `Some(false)`: keep in, `None`: not judged, advise).
    /// Marks the pages to mark and remembers when. `None` when the bitmap cannot be read or
    /// written (the chunk goes uncut).
    pub(super) fn idle_verdicts(
        &mut self,
        target: TargetId,
        chunk: AddrRange,
        entries: &[PagemapEntry],
    ) -> Option<Vec<Option<bool>>> {
        let t0 = self.sys.cpu_ns();
        let got = self.idle_verdicts_inner(target, chunk, entries);
        self.stats.idle_cut_ns += self.sys.cpu_ns().saturating_sub(t0);
        got
    }

    fn idle_verdicts_inner(
        &mut self,
        target: TargetId,
        chunk: AddrRange,
        entries: &[PagemapEntry],
    ) -> Option<Vec<Option<bool>>> {
        let now = self.sys.now_ns();
        let first_page = chunk.start / self.page;
        let word_of = |i: usize| (first_page + i as u64) / 64;
        let mut verdict = vec![None; entries.len()];
        // (entry index, pfn) of the pages to read, and of the pages to mark.
        let mut read: Vec<(usize, u64)> = Vec::new();
        let mut mark: Vec<(usize, u64)> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let Some(pfn) = e.pfn().filter(|_| is_resident(*e)) else {
                continue;
            };
            let state = match self.marks.get(target, word_of(i)) {
                None => Word::Unmarked,
                Some(t) if now.saturating_sub(t) < MIN_MARK_AGE_NS => Word::Young,
                Some(_) => Word::Old,
            };
            match state {
                Word::Unmarked => {
                    verdict[i] = Some(false);
                    mark.push((i, pfn));
                }
                Word::Young => verdict[i] = Some(false),
                Word::Old => read.push((i, pfn)),
            }
        }
        if verdict.iter().any(|v| v.is_some()) {
            // Part of the chunk is not judged yet: none of it is advised now, so the range
            // keeps its age (wholly skipped) and the next advice judges all of it. Advising
            // the judged part would reset the age of the whole region (the kernel's rule)
            // and leave the rest waiting a whole minimum age (seen in the lab: regions that
            // shift between applies met marked and unmarked words at once).
            for &(i, _) in &read {
                verdict[i] = Some(false);
            }
            read.clear();
        }
        // The pages of unmarked words are `mark[..unmarked]`; judged pages are pushed after.
        let unmarked = mark.len();
        // Judge the old words' pages: 1 → advise; 0 → a tail? judge by its head.
        let pfns: Vec<u64> = read.iter().map(|r| r.1).collect();
        let bits = self.read_idle(&pfns)?;
        self.stats.idle_read += pfns.len() as u64;
        let zero: Vec<(usize, u64)> = read
            .iter()
            .zip(&bits)
            .filter(|(_, b)| **b == Some(false))
            .map(|(r, _)| *r)
            .collect();
        for (r, b) in read.iter().zip(&bits) {
            verdict[r.0] = match b {
                Some(true) => Some(true),
                _ => None,
            };
        }
        let zero_pfns: Vec<u64> = zero.iter().map(|z| z.1).collect();
        let heads = self.heads(&zero_pfns);
        let head_pfns: Vec<u64> = heads.iter().flatten().copied().collect();
        let head_bits = self.read_idle(&head_pfns)?;
        let mut hb = head_bits.iter();
        for (z, h) in zero.iter().zip(&heads) {
            let (bit, pfn) = match h {
                Some(h) => {
                    self.stats.idle_thp_tails += 1;
                    (hb.next().copied().flatten(), *h)
                }
                None => (Some(false), z.1),
            };
            verdict[z.0] = bit;
            if bit == Some(false) {
                mark.push((z.0, pfn));
            }
        }
        // Marking: tails through their heads (the read pages' heads are resolved above).
        let own: Vec<u64> = mark[..unmarked].iter().map(|m| m.1).collect();
        let own_heads = self.heads(&own);
        for (m, h) in mark[..unmarked].iter_mut().zip(own_heads) {
            if let Some(h) = h {
                m.1 = h;
                self.stats.idle_thp_tails += 1;
            }
        }
        if !mark.is_empty() {
            let mut pfns: Vec<u64> = mark.iter().map(|m| m.1).collect();
            pfns.sort_unstable();
            pfns.dedup();
            if let Err(e) = self.sys.set_idle(&words_for(pfns.iter().copied())) {
                tracing::debug!("idle cut: marking pages idle: {e}");
                return None;
            }
            self.stats.idle_marked += pfns.len() as u64;
            let mut words: Vec<u64> = mark.iter().map(|m| word_of(m.0)).collect();
            words.dedup();
            for w in words {
                self.marks.set(target, w, now);
            }
        }
        Some(verdict)
    }

    /// The head each of `pfns` is tracked by, for THP tails (`heads_of`).
    fn heads(&mut self, pfns: &[u64]) -> Vec<Option<u64>> {
        let mut buf = Vec::new();
        heads_of(pfns, |first, n| {
            self.sys.kpageflags(first, n, &mut buf).ok()?;
            Some(buf.clone())
        })
    }

    /// Whether each of `pfns` reads idle (`None`: its word was not returned).
    fn read_idle(&mut self, pfns: &[u64]) -> Option<Vec<Option<bool>>> {
        let mut got = Vec::new();
        let read = idle_of_with(pfns, |words| {
            self.sys.idle_words(words, &mut got)?;
            Ok(std::mem::take(&mut got))
        });
        read.map_err(|e| tracing::debug!("idle cut: page_idle bitmap: {e}"))
            .ok()
    }

    /// Forget the marks of targets that are gone.
    pub(super) fn forget_marks(&mut self, gone: &[TargetId]) {
        for t in gone {
            self.marks.drop_target(*t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
