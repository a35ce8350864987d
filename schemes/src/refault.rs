//! The refault guard: the `refault_rate` quota goal of a page-out scheme.
//!
//! What it measures: of the pages **this scheme** moved out of memory (present in
//! `/proc/PID/pagemap` just before its `MADV_PAGEOUT`, in a swap area just after), the share
//! the target brought back in (present again) within the last `window` (1 minute by
//! default), in basis points:
//!
//! ```text
//! refault_rate = refaulted_in_window × 10000 / max(still_out + refaulted_in_window, 4 MiB)
//! ```
//!
//! Only a fault brings a private anonymous page back in, so "present again" is the target's
//! own access. That includes the fastest refaults: a hot page is often faulted back before
//! the read right after the page-out (microseconds, against the milliseconds a round's calls
//! take), and reads present there as it did before. Where frames are readable (root), a page
//! present after its page-out **in another frame** left and came back: it counts at once
//! ([`RefaultLedger::after_with`]) in the ledger's totals, and in the rate when it is a
//! repeat (a first one is learned hot on the spot and not advised again: counted in the
//! rate, it held the quota back on hot pages scattered at 4 KiB, where that price is paid
//! once per page, and cut what was saved in 60 s from 1.00 to 0.93 of the idle memory,
//! docs/performance.md "Reclaim on static workloads"); one in the same frame was kept in by
//! the kernel (not on an LRU list, pinned) and does not count. Without frames those pages
//! are not counted, and the guard sees only the slower refaults: on the moving hot set that
//! was a page-out of 44 MiB of hot memory with nothing in the ledger (docs/performance.md,
//! "Replay vs reality"). Nothing else is counted: pages that were out before the scheme
//! advised them,
//! pages the refault probe pages out for its samples (the probe never goes through the
//! schemes, so its page-outs never enter the ledger), and pages the target discarded or
//! unmapped (no page and no swap entry: dropped, not counted). Major faults
//! (`/proc/PID/stat` field 12) are not used: they count the probe's sample refaults and file
//! pages too, and miss refaults served from the swap cache.
//!
//! The value is a goal of the kernel's feedback loop like the PSI goals
//! (`damos_quota_score()` / `damon_feed_loop_next_input()`, mm/damon/core.c 6.12, ported in
//! [`crate::quota`]): over the goal's `target` the scheme's effective quota shrinks (to the
//! minimum at twice the target), under it the quota grows back.
//!
//! **A one-off move or a cycle.** Refaults are counted over sliding windows, and how long a
//! refault is remembered depends on whether the page came back before:
//! - a **first** refault (a page that never came back since the scheme first paged it out)
//!   is remembered for `first_window` (5 s by default): a hot set that moved once onto
//!   paged-out memory comes back in a burst of a few seconds and then stops, and the quota
//!   recovers once the burst is `first_window` old;
//! - a **repeat** refault (the page came back before, was paged out again and came back
//!   again: the same memory cycling out and in) is remembered for `window` (1 minute by
//!   default): on a hot set that keeps cycling, the guard holds back for the whole window.
//!
//! Counted per reset interval instead, the quota recovered one interval after each burst and
//! paged the next region out just before it came back (82% of what was paged out came back
//! on a moving hot set); remembering every refault for a minute held the quota at its floor
//! for the rest of the demo after its one hot-set move (docs/performance.md, "Demo").
//!
//! [`RefaultLedger`] is pure (page states and time are inputs); [`before_pageout`],
//! [`after_pageout`] and [`measure`] read the page states through a [`MetricSource`].

use crate::goal::{MetricError, MetricSource};
use engine::{AddrRange, TargetId};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The default window the refaults are counted over, µs (1 minute: the unit of the
/// published promotion-rate targets, e.g. Google's far memory, 0.2% of far memory per
/// minute).
pub const DEFAULT_WINDOW_US: u64 = 60_000_000;

/// The default window a first refault is remembered for, µs (5 s; at most the goal's
/// `window`): longer than the gaps between the ledger scans of one burst (one per reset
/// interval, 1 s in `policies/reclaim.ron`), short enough that the quota is back within
/// ~20 s of a one-off move.
pub const DEFAULT_FIRST_WINDOW_US: u64 = 5_000_000;

/// Pages per ledger chunk: one 64-byte bitmap (2 MiB of 4 KiB pages).
pub const CHUNK_PAGES: u64 = 512;
const WORDS: usize = (CHUNK_PAGES / 64) as usize;

/// At most this many chunks (16 GiB of 4 KiB pages) are read per measurement; a larger
/// ledger is scanned in turns, resuming where the last measurement stopped.
pub const MAX_SCAN_CHUNKS: usize = 8192;

/// Where a page is, as the guard needs it (from a pagemap entry: see
/// [`engine::kernel::pagemap::Residency`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageState {
    /// In memory.
    Present,
    /// In a swap area.
    Out,
    /// No page and no swap entry: never touched, discarded, or unmapped.
    Gone,
    /// Anything else (migration, device, PTE-marker entries): not decided now.
    Other,
}

impl From<engine::kernel::pagemap::Residency> for PageState {
    fn from(r: engine::kernel::pagemap::Residency) -> Self {
        use engine::kernel::pagemap::Residency as R;
        match r {
            R::Present => PageState::Present,
            R::Swapped { .. } => PageState::Out,
            R::None => PageState::Gone,
            R::Special => PageState::Other,
        }
    }
}

type Chunk = [u64; WORDS];

/// A range about to be paged out ([`RefaultLedger::before`]).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    target: TargetId,
    range: AddrRange,
    present: Vec<bool>,
    /// The frames of its pages ([`RefaultLedger::before_frames`]), if read.
    frames: Option<Vec<Option<u64>>>,
}

/// What one page-out did, as the ledger saw it ([`RefaultLedger::after_with`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageoutSeen {
    /// Pages present before and in swap after: they entered the ledger.
    pub went_out: u64,
    /// Pages present before and present after in another frame: they left and the target
    /// faulted them back before the read (counted as refaults at once).
    pub back_at_once: u64,
}

/// The pages one scheme paged out and has not seen come back, per target, and the refaults
/// of the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefaultLedger {
    page_size: u64,
    /// How long a repeat refault is remembered, µs.
    window_us: u64,
    /// How long a first refault is remembered, µs (at most `window_us`).
    first_window_us: u64,
    /// Per target: chunk index (`vaddr / (page_size × CHUNK_PAGES)`) → pages out.
    out: HashMap<TargetId, BTreeMap<u64, Chunk>>,
    out_pages: u64,
    /// Per target, as `out`: pages that came back at least once (a later refault of one is a
    /// repeat).
    returned: HashMap<TargetId, BTreeMap<u64, Chunk>>,
    /// First refaults found by the scans: (when, pages), oldest first.
    events: VecDeque<(u64, u64)>,
    /// Repeat refaults, the same way.
    repeat_events: VecDeque<(u64, u64)>,
    /// Pages in `events` and `repeat_events`.
    window_pages: u64,
    /// Ranges about to be paged out, with which of their pages were present (and, where
    /// readable, in which frames).
    pending: Vec<Pending>,
    /// Where the next scan starts when the last one stopped at [`MAX_SCAN_CHUNKS`].
    cursor: Option<(TargetId, u64)>,
    /// Pages moved out by the scheme, and pages found back, since the start.
    pub total_out_pages: u64,
    pub total_refaulted_pages: u64,
    /// Of `total_refaulted_pages`, the repeats.
    pub total_repeat_pages: u64,
    /// Of `total_refaulted_pages`, first refaults found at once, right after the page-out
    /// ([`Self::after_with`]): counted in the totals, not in the rate.
    pub total_at_once_pages: u64,
    /// The rate's denominator is at least this many pages ([`MIN_BASE_BYTES`] in a running
    /// scheme; 0 from [`RefaultLedger::new`]).
    min_base_pages: u64,
    /// Learning (`crate::learn`): the refaulted pages found by the scans, as runs, until
    /// taken ([`Self::take_back`]); kept only when `record_back`.
    record_back: bool,
    back: Vec<(TargetId, AddrRange)>,
    /// Expected refaults ([`Self::expect`]): (when, pages), oldest first; refaults found
    /// use them up before they count in the rate. Forgotten after the window.
    allowance: VecDeque<(u64, u64)>,
    allowance_pages: u64,
    /// Refaults that used up an allowance (expected: not counted in the rate), since the
    /// start.
    pub total_expected_pages: u64,
}

/// The least denominator of a running scheme's refault rate: 4 MiB. A rate over a few pages
/// is noise, not evidence: the first page-outs of a run are often a few small regions at the
/// hot set's edge, and 2 of 51 pages back (a 3.9% rate, over a 2% budget) held a live
/// run's quota at its floor for the 30 s that mattered. Against 4 MiB those 8 KiB are 0.2%.
pub const MIN_BASE_BYTES: u64 = 4 << 20;

impl RefaultLedger {
    /// A ledger remembering every refault for `window_us` (first and repeat alike; see
    /// [`Self::with_first_window`]).
    pub fn new(page_size: u64, window_us: u64) -> Self {
        let window_us = window_us.max(1);
        Self {
            page_size: page_size.max(1),
            window_us,
            first_window_us: window_us,
            out: HashMap::new(),
            out_pages: 0,
            returned: HashMap::new(),
            events: VecDeque::new(),
            repeat_events: VecDeque::new(),
            window_pages: 0,
            pending: Vec::new(),
            cursor: None,
            total_out_pages: 0,
            total_refaulted_pages: 0,
            total_repeat_pages: 0,
            total_at_once_pages: 0,
            min_base_pages: 0,
            record_back: false,
            back: Vec::new(),
            allowance: VecDeque::new(),
            allowance_pages: 0,
            total_expected_pages: 0,
        }
    }

    /// The same, remembering first refaults for `us` only (at most the window).
    pub fn with_first_window(mut self, us: u64) -> Self {
        self.first_window_us = us.clamp(1, self.window_us);
        self
    }

    /// Keep the refaulted pages the scans find, for [`Self::take_back`] (learning,
    /// `crate::learn`).
    pub fn with_record_back(mut self) -> Self {
        self.record_back = true;
        self
    }

    /// The refaulted pages found since the last call, as runs of pages.
    pub fn take_back(&mut self) -> Vec<(TargetId, AddrRange)> {
        std::mem::take(&mut self.back)
    }

    /// Which pages of `range` of `target` were present before the pending page-out
    /// ([`Self::before`]), if one is pending.
    pub fn pending_present(&self, target: TargetId, range: AddrRange) -> Option<&[bool]> {
        self.pending
            .iter()
            .find(|p| p.target == target && p.range == range)
            .map(|p| p.present.as_slice())
    }

    /// `pages` refaults are expected of what the scheme paged out at `now_us` (a lukewarm
    /// region's measured access frequency times the pages it moved out): refaults found
    /// within the window use this allowance up first and are not counted in the rate.
    /// Without a call, every refault counts (the guard as it was).
    pub fn expect(&mut self, pages: u64, now_us: u64) {
        if pages > 0 {
            self.allowance.push_back((now_us, pages));
            self.allowance_pages += pages;
        }
    }

    fn expire_allowance(&mut self, now_us: u64) {
        while let Some(&(at, n)) = self.allowance.front() {
            if now_us < at || now_us - at >= self.window_us {
                self.allowance.pop_front();
                self.allowance_pages -= n;
            } else {
                break;
            }
        }
    }

    /// Use up to `n` pages of the allowance (oldest first); returns the pages used.
    fn use_allowance(&mut self, n: u64, now_us: u64) -> u64 {
        self.expire_allowance(now_us);
        let mut left = n;
        while left > 0 {
            let Some(front) = self.allowance.front_mut() else {
                break;
            };
            let k = front.1.min(left);
            front.1 -= k;
            left -= k;
            self.allowance_pages -= k;
            if front.1 == 0 {
                self.allowance.pop_front();
            }
        }
        n - left
    }

    /// The same, with the rate's denominator at least `bytes` ([`MIN_BASE_BYTES`]).
    pub fn with_min_base(mut self, bytes: u64) -> Self {
        self.min_base_pages = bytes / self.page_size;
        self
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Bytes paged out by the scheme and not back (yet).
    pub fn out_bytes(&self) -> u64 {
        self.out_pages * self.page_size
    }

    fn chunk_bytes(&self) -> u64 {
        self.page_size * CHUNK_PAGES
    }

    /// The page states of `range` of `target` just before the scheme pages it out
    /// (`states[i]` is page `range.start / page_size + i`).
    pub fn before(&mut self, target: TargetId, range: AddrRange, states: &[PageState]) {
        let present = states.iter().map(|s| *s == PageState::Present).collect();
        self.pending.push(Pending {
            target,
            range,
            present,
            frames: None,
        });
    }

    /// The frames of the pages of `range` of `target` just before the scheme pages it out
    /// (after [`Self::before`] of the same range; `None`: no page there).
    pub fn before_frames(&mut self, target: TargetId, range: AddrRange, frames: &[Option<u64>]) {
        if let Some(p) = self
            .pending
            .iter_mut()
            .rev()
            .find(|p| p.target == target && p.range == range)
        {
            p.frames = Some(frames.to_vec());
        }
    }

    /// The page states of `range` of `target` just after the scheme paged it out: the pages
    /// present before and in swap now enter the ledger. Without a matching [`Self::before`]
    /// nothing is learnt (the pages may have been out already).
    pub fn after(&mut self, target: TargetId, range: AddrRange, states: &[PageState]) {
        self.after_with(target, range, states, None, 0, 0);
    }

    /// [`Self::after`], with the frames after the page-out where readable: a page present
    /// before and after, in another frame, left memory and the target faulted it back before
    /// this read (a hot page: back within microseconds of its page-out, under the time the
    /// round's calls take). It is in `total_out_pages` and `total_refaulted_pages`; in the
    /// rate only as a repeat (it came back before), at `now_us`: a first one is learned hot
    /// on the spot and cut out of later advice, a one-time price the quota could only put
    /// off (`total_at_once_pages`). Without frames (no CAP_SYS_ADMIN, or not read before) such a page
    /// is not told from one the kernel kept in (not on an LRU list, pinned, under
    /// writeback: same frame) and neither counts — the guard then sees only the refaults
    /// slower than the round. A frame reused for the same page (the page allocator hands
    /// out the most recently freed frame first) hides a refault too: the count is a floor.
    ///
    /// `expect_bp`: the region's access frequency ([`Self::expect`]): that share of the
    /// pages that left (back at once or not) is expected back.
    pub fn after_with(
        &mut self,
        target: TargetId,
        range: AddrRange,
        states: &[PageState],
        frames: Option<&[Option<u64>]>,
        expect_bp: u64,
        now_us: u64,
    ) -> PageoutSeen {
        let Some(i) = self
            .pending
            .iter()
            .position(|p| p.target == target && p.range == range)
        else {
            return PageoutSeen::default();
        };
        let before = self.pending.swap_remove(i);
        let first = range.start / self.page_size;
        let map = self.out.entry(target).or_default();
        let mut added = 0;
        let mut at_once: Vec<u64> = Vec::new();
        for (k, (was, now)) in before.present.iter().zip(states).enumerate() {
            if !*was {
                continue;
            }
            let page = first + k as u64;
            match now {
                PageState::Out => {
                    let chunk = map.entry(page / CHUNK_PAGES).or_insert([0; WORDS]);
                    let (w, b) = (((page % CHUNK_PAGES) / 64) as usize, page % 64);
                    if chunk[w] & (1 << b) == 0 {
                        chunk[w] |= 1 << b;
                        added += 1;
                    }
                }
                PageState::Present => {
                    let frame =
                        |f: Option<&Vec<Option<u64>>>| f.and_then(|f| f.get(k).copied().flatten());
                    let was_in = frame(before.frames.as_ref());
                    let now_in = frames.and_then(|f| f.get(k).copied().flatten());
                    if matches!((was_in, now_in), (Some(a), Some(b)) if a != b) {
                        at_once.push(page);
                    }
                }
                _ => {}
            }
        }
        if map.is_empty() {
            self.out.remove(&target);
        }
        self.out_pages += added;
        let back = at_once.len() as u64;
        self.total_out_pages += added + back;
        if expect_bp > 0 {
            self.expect((added + back) * expect_bp / 10_000, now_us);
        }
        if back > 0 {
            // Learned hot on the spot (`learn_after_pageout`): a first refault at once is
            // the one-time price of finding a hot page, not a page-out the quota could have
            // spared — holding the quota back would only put the same price off. It counts in
            // the totals, not in the rate; a repeat (a page that came back before, advised
            // again and back at once again) counts in both.
            let seen = self.returned.entry(target).or_default();
            let mut repeat = 0;
            for &page in &at_once {
                let mark = seen.entry(page / CHUNK_PAGES).or_insert([0; WORDS]);
                let (w, b) = (((page % CHUNK_PAGES) / 64) as usize, page % 64);
                if mark[w] & (1 << b) != 0 {
                    repeat += 1;
                } else {
                    mark[w] |= 1 << b;
                }
            }
            if self.record_back {
                for &page in &at_once {
                    self.push_back_page(target, page);
                }
            }
            self.total_refaulted_pages += back - repeat;
            self.total_at_once_pages += back - repeat;
            self.count_refaults(0, repeat, now_us);
        }
        PageoutSeen {
            went_out: added,
            back_at_once: back,
        }
    }

    /// A refaulted page for learning ([`Self::take_back`]), joined to the last run.
    fn push_back_page(&mut self, target: TargetId, page: u64) {
        let a = page * self.page_size;
        match self.back.last_mut() {
            Some((t, r)) if *t == target && r.end == a => r.end += self.page_size,
            _ => self
                .back
                .push((target, AddrRange::new(a, a + self.page_size))),
        }
    }

    /// `back` first and `repeat` repeat refaults found at `now_us`: into the totals and the
    /// windows (expected first refaults use the allowance up first, [`Self::expect`]).
    fn count_refaults(&mut self, back: u64, repeat: u64, now_us: u64) {
        self.total_refaulted_pages += back + repeat;
        self.total_repeat_pages += repeat;
        let expected = if self.allowance_pages > 0 {
            self.use_allowance(back, now_us)
        } else {
            0
        };
        self.total_expected_pages += expected;
        let counted = back - expected;
        self.window_pages += counted + repeat;
        if counted > 0 {
            self.events.push_back((now_us, counted));
        }
        if repeat > 0 {
            self.repeat_events.push_back((now_us, repeat));
        }
    }

    /// Forget what was noted before a page-out that did not happen (a round that was not
    /// reported).
    pub fn clear_pending(&mut self) {
        self.pending.clear();
    }

    /// A target is gone: its pages leave the ledger (their refaults in the window stay).
    pub fn drop_target(&mut self, target: TargetId) {
        self.returned.remove(&target);
        if let Some(map) = self.out.remove(&target) {
            let n: u64 = map
                .values()
                .flat_map(|c| c.iter())
                .map(|w| w.count_ones() as u64)
                .sum();
            self.out_pages -= n;
        }
        if self.cursor.is_some_and(|(t, _)| t == target) {
            self.cursor = None;
        }
    }

    /// The chunks the next scan reads (at most [`MAX_SCAN_CHUNKS`], resuming where the last
    /// scan stopped), as address ranges of whole chunks.
    pub fn scan_plan(&mut self) -> Vec<(TargetId, AddrRange)> {
        let mut all: Vec<(TargetId, u64)> = Vec::new();
        let mut targets: Vec<TargetId> = self.out.keys().copied().collect();
        targets.sort();
        for t in targets {
            all.extend(self.out[&t].keys().map(|&c| (t, c)));
        }
        let start = self
            .cursor
            .and_then(|cur| all.iter().position(|x| *x >= cur))
            .unwrap_or(0);
        let n = all.len().min(MAX_SCAN_CHUNKS);
        let cb = self.chunk_bytes();
        let picked: Vec<(TargetId, u64)> =
            all.iter().cycle().skip(start).take(n).copied().collect();
        self.cursor = (all.len() > MAX_SCAN_CHUNKS).then(|| all[(start + n) % all.len()]);
        picked
            .into_iter()
            .map(|(t, c)| (t, AddrRange::new(c * cb, (c + 1) * cb)))
            .collect()
    }

    /// The states of one chunk read at `now_us` (`states[i]`: page `range.start /
    /// page_size + i`; a short read leaves the rest undecided). Pages of the ledger present
    /// again are refaults: counted at `now_us` and removed; pages gone are removed.
    pub fn scanned(
        &mut self,
        target: TargetId,
        range: AddrRange,
        states: &[PageState],
        now_us: u64,
    ) {
        let first = range.start / self.page_size;
        let Some(map) = self.out.get_mut(&target) else {
            return;
        };
        let seen = self.returned.entry(target).or_default();
        let (mut back, mut repeat, mut gone) = (0u64, 0u64, 0u64);
        let mut back_pages: Vec<u64> = Vec::new();
        for (k, s) in states.iter().enumerate() {
            let page = first + k as u64;
            let Some(chunk) = map.get_mut(&(page / CHUNK_PAGES)) else {
                continue;
            };
            let (w, b) = (((page % CHUNK_PAGES) / 64) as usize, page % 64);
            if chunk[w] & (1 << b) == 0 {
                continue;
            }
            match s {
                PageState::Present => {
                    let mark = seen.entry(page / CHUNK_PAGES).or_insert([0; WORDS]);
                    if mark[w] & (1 << b) != 0 {
                        repeat += 1;
                    } else {
                        mark[w] |= 1 << b;
                        back += 1;
                    }
                    if self.record_back {
                        back_pages.push(page);
                    }
                }
                PageState::Gone => gone += 1,
                PageState::Out | PageState::Other => continue,
            }
            chunk[w] &= !(1 << b);
        }
        map.retain(|_, c| c.iter().any(|w| *w != 0));
        if map.is_empty() {
            self.out.remove(&target);
        }
        if seen.is_empty() {
            self.returned.remove(&target);
        }
        self.out_pages -= back + repeat + gone;
        for page in back_pages {
            self.push_back_page(target, page);
        }
        self.count_refaults(back, repeat, now_us);
    }

    /// The refault rate at `now_us`, basis points: the first refaults of the last
    /// `first_window` and the repeat refaults of the last `window` over what the scheme
    /// holds out plus those refaults (0 while nothing was paged out).
    pub fn rate_bp(&mut self, now_us: u64) -> u64 {
        self.expire_allowance(now_us);
        for (events, window) in [
            (&mut self.events, self.first_window_us),
            (&mut self.repeat_events, self.window_us),
        ] {
            while let Some(&(at, n)) = events.front() {
                // A clock before an event (a caller's clock reset) drops it too.
                if now_us < at || now_us - at >= window {
                    events.pop_front();
                    self.window_pages -= n;
                } else {
                    break;
                }
            }
        }
        if self.window_pages == 0 {
            return 0;
        }
        let denom = (self.out_pages + self.window_pages).max(self.min_base_pages);
        ((self.window_pages as u128 * 10_000) / denom as u128) as u64
    }
}

/// Read `range`'s page states of `target` into `buf` through `env`.
fn states(
    env: &dyn MetricSource,
    target: TargetId,
    range: AddrRange,
    buf: &mut Vec<PageState>,
) -> Result<(), MetricError> {
    buf.clear();
    env.page_states(target, range, buf)
}

/// Before the actuator pages `reqs` out: note which of their pages are in memory. A range
/// whose states cannot be read is not noted (its page-out teaches the ledger nothing).
pub fn before_pageout(
    ledger: &mut RefaultLedger,
    env: &dyn MetricSource,
    reqs: impl IntoIterator<Item = (TargetId, AddrRange)>,
) {
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for (t, r) in reqs {
        if states(env, t, r, &mut buf).is_ok() {
            ledger.before(t, r, &buf);
            frames.clear();
            if env.page_frames(t, r, &mut frames).is_ok() {
                ledger.before_frames(t, r, &frames);
            }
        }
    }
}

/// The frames of `range` of `target` after a page-out, into `buf`; `None` when they cannot
/// be read (then the ledger counts only what it sees in swap).
pub fn frames_after<'b>(
    env: &dyn MetricSource,
    target: TargetId,
    range: AddrRange,
    buf: &'b mut Vec<Option<u64>>,
) -> Option<&'b [Option<u64>]> {
    buf.clear();
    env.page_frames(target, range, buf).ok()?;
    Some(buf.as_slice())
}

/// After the actuator paged `done` out, at `now_us`: the pages that went from memory to swap
/// enter the ledger; those faulted back before this read count as refaults
/// ([`RefaultLedger::after_with`]).
pub fn after_pageout(
    ledger: &mut RefaultLedger,
    env: &dyn MetricSource,
    done: impl IntoIterator<Item = (TargetId, AddrRange)>,
    now_us: u64,
) {
    let mut buf = Vec::new();
    let mut fbuf = Vec::new();
    for (t, r) in done {
        if states(env, t, r, &mut buf).is_ok() {
            let frames = frames_after(env, t, r, &mut fbuf);
            ledger.after_with(t, r, &buf, frames, 0, now_us);
        }
    }
    ledger.clear_pending();
}

/// Scan the ledger's pages at `now_us` and return the refault rate (basis points). A target
/// whose pagemap cannot be read is dropped from the ledger (it exited, or its memory is
/// gone); the measurement itself only fails when nothing could be read while the ledger
/// has pages out.
pub fn measure(
    ledger: &mut RefaultLedger,
    env: &dyn MetricSource,
    now_us: u64,
) -> Result<u64, MetricError> {
    let plan = ledger.scan_plan();
    let mut buf = Vec::new();
    let mut failed: Vec<TargetId> = Vec::new();
    let mut first_err = None;
    let mut read_any = plan.is_empty();
    for (t, r) in plan {
        if failed.contains(&t) {
            continue;
        }
        match states(env, t, r, &mut buf) {
            Ok(()) => {
                read_any = true;
                ledger.scanned(t, r, &buf, now_us);
            }
            Err(e) => {
                failed.push(t);
                first_err.get_or_insert(e);
            }
        }
    }
    for t in failed {
        ledger.drop_target(t);
    }
    match first_err {
        Some(e) if !read_any => Err(e),
        _ => Ok(ledger.rate_bp(now_us)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PageState::*;

    const P: u64 = 4096;
    const T: TargetId = TargetId(7);

    fn pageout(l: &mut RefaultLedger, start_page: u64, before: &[PageState], after: &[PageState]) {
        let r = AddrRange::new(start_page * P, (start_page + before.len() as u64) * P);
        l.before(T, r, before);
        l.after(T, r, after);
    }

    #[test]
    fn only_pages_the_scheme_moved_out_are_counted() {
        let mut l = RefaultLedger::new(P, 60_000_000);
        // Present → out: in. Out already: not. Present and still present (not paged out):
        // not. Never touched: not.
        pageout(
            &mut l,
            10,
            &[Present, Out, Present, Gone],
            &[Out, Out, Present, Gone],
        );
        assert_eq!((l.out_bytes(), l.total_out_pages), (P, 1));
        // A page-out with no note before it teaches nothing.
        l.after(T, AddrRange::new(0, P), &[Out]);
        assert_eq!(l.out_bytes(), P);
        // The same page paged out twice is one page.
        pageout(&mut l, 10, &[Present], &[Out]);
        assert_eq!(l.out_bytes(), P);
    }

    #[test]
    fn refaults_are_counted_once_and_forgotten_after_the_window() {
        let w = 10_000_000;
        let mut l = RefaultLedger::new(P, w);
        pageout(&mut l, 0, &[Present; 4], &[Out; 4]);
        assert_eq!(l.rate_bp(0), 0);
        let plan = l.scan_plan();
        assert_eq!(plan, vec![(T, AddrRange::new(0, CHUNK_PAGES * P))]);
        // One page back, one discarded, two still out: 1 / (2 + 1).
        l.scanned(T, plan[0].1, &[Present, Gone, Out, Other], 1_000_000);
        assert_eq!(l.rate_bp(1_000_000), 3333);
        assert_eq!(l.total_refaulted_pages, 1);
        // Scanned again: the refaulted page is not counted twice.
        l.scanned(T, plan[0].1, &[Present, Present, Out, Out], 2_000_000);
        assert_eq!(l.rate_bp(2_000_000), 3333);
        // The window forgets it.
        assert_eq!(l.rate_bp(1_000_000 + w - 1), 3333);
        assert_eq!(l.rate_bp(1_000_000 + w), 0);
        assert_eq!(l.out_bytes(), 2 * P);
    }

    #[test]
    fn large_ledgers_are_scanned_in_turns_and_targets_dropped() {
        let mut l = RefaultLedger::new(P, 1);
        let n = MAX_SCAN_CHUNKS as u64 + 10;
        for c in 0..n {
            pageout(&mut l, c * CHUNK_PAGES, &[Present], &[Out]);
        }
        let a = l.scan_plan();
        let b = l.scan_plan();
        assert_eq!((a.len(), b.len()), (MAX_SCAN_CHUNKS, MAX_SCAN_CHUNKS));
        assert_eq!(b[0].1.start, MAX_SCAN_CHUNKS as u64 * CHUNK_PAGES * P);
        l.drop_target(T);
        assert_eq!((l.out_bytes(), l.scan_plan().len()), (0, 0));
    }

    #[test]
    fn expected_refaults_are_not_counted_and_back_pages_are_kept() {
        let w = 10_000_000;
        let mut l = RefaultLedger::new(P, w).with_record_back();
        pageout(&mut l, 0, &[Present; 4], &[Out; 4]);
        l.expect(1, 0);
        let plan = l.scan_plan();
        l.scanned(T, plan[0].1, &[Present, Present, Out, Out], 1_000_000);
        // Two back, one of them expected: 1 / (2 out + 1).
        assert_eq!(l.rate_bp(1_000_000), 3333);
        assert_eq!((l.total_refaulted_pages, l.total_expected_pages), (2, 1));
        assert_eq!(l.take_back(), vec![(T, AddrRange::new(0, 2 * P))]);
        assert!(l.take_back().is_empty());
        // An allowance older than the window is gone.
        l.expect(5, 1_000_000);
        l.scanned(
            T,
            plan[0].1,
            &[Present, Present, Present, Out],
            1_000_000 + w,
        );
        assert_eq!((l.total_refaulted_pages, l.total_expected_pages), (3, 1));
        assert_eq!(l.rate_bp(1_000_000 + w), 10_000 / 2);
    }

    #[test]
    fn pages_faulted_back_before_the_read_are_refaults_when_their_frame_changed() {
        let w = 10_000_000;
        let mut l = RefaultLedger::new(P, w).with_record_back();
        let r = AddrRange::new(0, 4 * P);
        // Page 0: out. Page 1: present again in another frame (left and came back). Page 2:
        // the same frame (the kernel kept it in). Page 3: was out before.
        l.before(T, r, &[Present, Present, Present, Out]);
        l.before_frames(T, r, &[Some(10), Some(11), Some(12), None]);
        let after = [Out, Present, Present, Out];
        let seen = l.after_with(
            T,
            r,
            &after,
            Some(&[None, Some(99), Some(12), None]),
            0,
            1_000,
        );
        assert_eq!(
            seen,
            PageoutSeen {
                went_out: 1,
                back_at_once: 1
            }
        );
        assert_eq!((l.total_out_pages, l.total_refaulted_pages), (2, 1));
        assert_eq!(l.total_at_once_pages, 1);
        // A first refault at once is in the totals, not in the rate.
        assert_eq!(l.rate_bp(1_000), 0);
        assert_eq!(l.take_back(), vec![(T, AddrRange::new(P, 2 * P))]);
        // The same page out and back at once again: a repeat, in the rate: 1 / (1 out + 1).
        l.before(T, r, &[Out, Present, Present, Out]);
        l.before_frames(T, r, &[None, Some(99), Some(12), None]);
        l.after_with(
            T,
            r,
            &after,
            Some(&[None, Some(98), Some(12), None]),
            0,
            2_000,
        );
        assert_eq!((l.total_refaulted_pages, l.total_repeat_pages), (2, 1));
        assert_eq!(l.rate_bp(2_000), 5000);
        // Without frames (after or before), nothing present counts: the guard as it was.
        let mut m = RefaultLedger::new(P, w);
        m.before(T, r, &[Present; 4]);
        m.before_frames(T, r, &[Some(1), Some(2), Some(3), Some(4)]);
        m.after_with(T, r, &[Present; 4], None, 0, 1_000);
        m.before(T, r, &[Present; 4]);
        m.after_with(
            T,
            r,
            &[Present; 4],
            Some(&[Some(5), Some(6), Some(7), Some(8)]),
            0,
            1_000,
        );
        assert_eq!((m.total_out_pages, m.total_refaulted_pages), (0, 0));
        // A region accessed at 50%: half of what left (back at once or not) is expected back,
        // an allowance the scans' refaults use up first.
        let mut e = RefaultLedger::new(P, w);
        e.before(T, r, &[Present; 4]);
        e.before_frames(T, r, &[Some(1), Some(2), Some(3), Some(4)]);
        let seen = e.after_with(
            T,
            r,
            &[Present, Present, Out, Out],
            Some(&[Some(5), Some(6), None, None]),
            5000,
            1_000,
        );
        assert_eq!(seen.back_at_once, 2);
        assert_eq!(e.total_refaulted_pages, 2);
        let plan = e.scan_plan();
        e.scanned(T, plan[0].1, &[Present, Present, Present, Present], 2_000);
        assert_eq!((e.total_refaulted_pages, e.total_expected_pages), (4, 2));
        assert_eq!(e.rate_bp(2_000), 0);
    }

    #[test]
    fn a_few_pages_back_over_a_small_base_stay_under_the_budget() {
        let mut l = RefaultLedger::new(P, 60_000_000).with_min_base(MIN_BASE_BYTES);
        pageout(&mut l, 0, &[Present; 4], &[Out; 4]);
        let plan = l.scan_plan();
        l.scanned(T, plan[0].1, &[Present, Out, Out, Out], 1_000_000);
        // 1 page of a 4 MiB base (1024 pages): 9 bp, not 2500.
        assert_eq!(l.rate_bp(1_000_000), 10_000 / 1024);
    }

    #[test]
    fn first_refaults_are_forgotten_sooner_than_repeats() {
        let (w, first) = (60_000_000, 5_000_000);
        let mut l = RefaultLedger::new(P, w).with_first_window(first);
        let r = AddrRange::new(0, CHUNK_PAGES * P);
        // 4 pages out, 2 come back at 1 s: first refaults, 2 / (2 + 2).
        pageout(&mut l, 0, &[Present; 4], &[Out; 4]);
        l.scanned(T, r, &[Present, Present, Out, Out], 1_000_000);
        assert_eq!(l.rate_bp(1_000_000), 5000);
        assert_eq!(l.rate_bp(1_000_000 + first - 1), 5000);
        assert_eq!(l.rate_bp(1_000_000 + first), 0);
        // Page 0 out again and back again at 10 s: a repeat, remembered for the window.
        pageout(&mut l, 0, &[Present], &[Out]);
        l.scanned(T, r, &[Present, Present, Out, Out], 10_000_000);
        assert_eq!(l.rate_bp(10_000_000), 10_000 / 3);
        assert_eq!(l.rate_bp(10_000_000 + first), 10_000 / 3);
        assert_eq!(l.rate_bp(10_000_000 + w - 1), 10_000 / 3);
        assert_eq!(l.rate_bp(10_000_000 + w), 0);
        assert_eq!((l.total_refaulted_pages, l.total_repeat_pages), (3, 1));
        // A gone target forgets which of its pages came back.
        l.drop_target(T);
        pageout(&mut l, 0, &[Present], &[Out]);
        l.scanned(T, r, &[Present], 80_000_000);
        assert_eq!(l.total_repeat_pages, 1);
        // The first window is at most the window.
        let l = RefaultLedger::new(P, 10).with_first_window(20);
        assert_eq!(l.first_window_us, 10);
    }
}
