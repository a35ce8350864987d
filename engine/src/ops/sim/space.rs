//! A simulated address space: a process-like layout, the named scenarios, and the ground
//! truth (which page is touched in which interval) as a pure function of (seed, page,
//! interval).

use super::pattern::{draw, Band, Interval, Pattern, PatternCache, SparseHot, PAGE};
use super::zipf::ZipfKeys;
use crate::access::{Access, SampleReq};
use crate::rangeset::RangeSet;
use crate::region::AddrRange;
use std::cell::RefCell;
use thiserror::Error;

/// Errors building a simulated space.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimError {
    #[error("unknown sim scenario {0:?}; known: {known}", known = SCENARIOS.join(", "))]
    UnknownScenario(String),
    #[error("sim size {0} bytes is out of range (64 KiB ..= 8 TiB)")]
    BadSize(u64),
    #[error("sim unknown fraction {0} is not within 0..=1")]
    BadFraction(f64),
}

/// The scenario names [`SimSpace::scenario`] takes.
pub const SCENARIOS: &[&str] = &[
    "hotcold",
    "stairs",
    "moving",
    "zigzag",
    "noise",
    "idle",
    "zipf",
    "partly-hot",
];

/// What a simulated access check can see of a page that is not resident.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sight {
    /// Residency is evidence (page_idle or the refault probe reading pagemap's present and
    /// swapped bits): a page not present at the start of the interval and still not present
    /// at its end was not accessed (any access would have faulted it in): `NotAccessed`; one
    /// touched in the interval is present again and answers `Accessed`.
    #[default]
    Residency,
    /// Only resident pages answer (a check that needs the page's frame, e.g. page_idle
    /// without pagemap's present bit): a page not present at the start of the interval
    /// answers `Unknown`.
    ResidentOnly,
}

/// A simulated address space. See the [`sim`](super) module documentation.
#[derive(Clone, Debug)]
pub struct SimSpace {
    mappings: Vec<AddrRange>,
    data: AddrRange,
    pattern: Pattern,
    /// Every page of the data mapping is also touched with this probability per interval.
    noise: f64,
    unknown_fraction: f64,
    unseeable_fraction: f64,
    seed: u64,
    interval: u64,
    pub(super) gone: bool,
    samples: u64,
    unknown_answers: u64,
    sight: Sight,
    /// Residency and caches, boxed: a space is passed around by value.
    live: Box<Live>,
}

#[derive(Clone, Debug, Default)]
struct Live {
    /// The current interval's truth.
    cache: Option<Interval>,
    pattern_cache: RefCell<PatternCache>,
    /// Pages not resident (paged out and not touched since).
    nonresident: RangeSet,
    /// Pages paged out during the current interval (madvd's own page-outs).
    out_now: RangeSet,
}

pub(super) const MIB: u64 = 1 << 20;
pub(super) const KIB: u64 = 1 << 10;

impl SimSpace {
    /// A process-like layout around one data mapping of `size` bytes (rounded up to pages):
    /// executable, heap, data (in the mmap area), libraries right after it, stack near the
    /// top. Pattern: nothing touched (use [`SimSpace::with_pattern`]).
    pub fn layout(size: u64, seed: u64) -> Result<Self, SimError> {
        if !(64 * KIB..=8 << 40).contains(&size) {
            return Err(SimError::BadSize(size));
        }
        let size = (size + PAGE - 1) & !(PAGE - 1);
        let exe = AddrRange::new(0x5555_0000_0000, 0x5555_0000_0000 + 2 * MIB);
        let heap = AddrRange::new(exe.end + 16 * MIB, exe.end + 16 * MIB + 8 * MIB);
        let data = AddrRange::new(0x7000_0000_0000, 0x7000_0000_0000 + size);
        let libs = AddrRange::new(data.end + 64 * KIB, data.end + 64 * KIB + 4 * MIB);
        let stack = AddrRange::new(0x7ffc_0000_0000, 0x7ffc_0000_0000 + 132 * KIB);
        Ok(Self {
            mappings: vec![exe, heap, data, libs, stack],
            data,
            pattern: Pattern::Static(Vec::new()),
            noise: 0.0,
            unknown_fraction: 0.0,
            unseeable_fraction: 0.0,
            seed,
            interval: 0,
            gone: false,
            samples: 0,
            unknown_answers: 0,
            sight: Sight::default(),
            live: Box::default(),
        })
    }

    /// A named scenario over a data mapping of `size` bytes (see [`SCENARIOS`]):
    /// - `hotcold`: a contiguous hot 10% of the data (30%..40%) touched every interval, the
    ///   rest never;
    /// - `stairs`: a 10% window touched every interval, jumping to the next 10% slot every
    ///   400 intervals (2 s at 5 ms sampling), wrapping after the tenth;
    /// - `moving`: a 10% window sliding through the data, one full sweep per 4000 intervals;
    /// - `zigzag`: the same window sliding forward then back;
    /// - `noise`: `hotcold` plus every data page touched with probability 1% per interval;
    /// - `idle`: nothing touched;
    /// - `zipf`: the data as a key space of one-page keys, Zipf popularity (s = 1.0), hot
    ///   keys scattered, keys / 16 lookups per interval (at most 4096);
    /// - `partly-hot`: 10% of the data's pages, scattered, touched with probability 0.8 per
    ///   interval.
    pub fn scenario(name: &str, size: u64) -> Result<Self, SimError> {
        let mut s = Self::layout(size, 0x5eed)?;
        let d = s.data;
        let tenth = (d.len() / 10) & !(PAGE - 1);
        let tenth = tenth.max(PAGE);
        let sweep = (d.len() / 4000).max(1);
        s.pattern = match name {
            "hotcold" | "noise" => {
                let hs = d.start + 3 * tenth;
                Pattern::Static(vec![Band {
                    range: AddrRange::new(hs, hs + tenth),
                    prob: 1.0,
                }])
            }
            "stairs" => Pattern::Stairs {
                base: d,
                window: tenth,
                step_intervals: 400,
                prob: 1.0,
            },
            "moving" => Pattern::Moving {
                base: d,
                window: tenth,
                bytes_per_interval: sweep,
                prob: 1.0,
            },
            "zigzag" => Pattern::Zigzag {
                base: d,
                window: tenth,
                bytes_per_interval: sweep,
                prob: 1.0,
            },
            "idle" => Pattern::Static(Vec::new()),
            "zipf" => Pattern::Zipf(ZipfKeys {
                base: d,
                key_bytes: PAGE,
                s: 1.0,
                lookups: (d.len() / PAGE / 16).clamp(1, 4096),
                layout_seed: 1,
            }),
            "partly-hot" => Pattern::Sparse(SparseHot {
                range: d,
                fraction: 0.1,
                prob: 0.8,
                layout_seed: 1,
            }),
            other => return Err(SimError::UnknownScenario(other.to_string())),
        };
        if name == "noise" {
            s.noise = 0.01;
        }
        Ok(s)
    }

    pub fn with_pattern(mut self, pattern: Pattern) -> Self {
        self.pattern = pattern;
        self.live.cache = None;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self.live.cache = None;
        self
    }

    /// What the simulated check sees of pages that are not resident (default:
    /// [`Sight::Residency`]).
    pub fn with_sight(mut self, sight: Sight) -> Self {
        self.sight = sight;
        self
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Every data page is also touched with probability `p` per interval.
    pub fn with_noise(mut self, p: f64) -> Self {
        self.noise = p.clamp(0.0, 1.0);
        self
    }

    /// A page is in a state the check cannot read with this probability per sample (a
    /// migration entry, a page locked or isolated at that moment), drawn per (page,
    /// interval): transient Unknown answers independent of access. The old scenarios' easy
    /// case; for pages a check can never see, [`SimSpace::with_unseeable_fraction`].
    pub fn with_unknown_fraction(mut self, f: f64) -> Result<Self, SimError> {
        if !(0.0..=1.0).contains(&f) {
            return Err(SimError::BadFraction(f));
        }
        self.unknown_fraction = f;
        Ok(self)
    }

    /// The check cannot see this fraction of the pages at all (as the refault probe cannot
    /// probe a shared or file page): a sample on one answers `Unknown`. Fixed per page (a
    /// hash of the seed and the page).
    pub fn with_unseeable_fraction(mut self, f: f64) -> Result<Self, SimError> {
        if !(0.0..=1.0).contains(&f) {
            return Err(SimError::BadFraction(f));
        }
        self.unseeable_fraction = f;
        Ok(self)
    }

    /// Replace the mappings (sorted, disjoint), e.g. to simulate `munmap` / `mmap`.
    pub fn set_mappings(&mut self, mut mappings: Vec<AddrRange>) {
        mappings.sort();
        self.mappings = mappings;
        self.live.nonresident.retain_within(&self.mappings);
        self.live.out_now.retain_within(&self.mappings);
    }

    /// Make the space answer `TargetGone` from now on (the process exited).
    pub fn exit(&mut self) {
        self.gone = true;
    }

    pub fn mappings(&self) -> &[AddrRange] {
        &self.mappings
    }

    /// The big data mapping the scenarios' patterns live in.
    pub fn data_range(&self) -> AddrRange {
        self.data
    }

    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The interval the next check answers for (= intervals checked so far).
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// Jump the clock (e.g. to start a test mid-scenario). Residency is kept as it is:
    /// the skipped intervals bring no page back.
    pub fn set_interval(&mut self, i: u64) {
        self.interval = i;
    }

    /// Total mapped bytes.
    pub fn mapped_bytes(&self) -> u64 {
        self.mappings.iter().map(|m| m.len()).sum()
    }

    fn is_mapped(&self, addr: u64) -> bool {
        let i = self.mappings.partition_point(|m| m.end <= addr);
        i < self.mappings.len() && self.mappings[i].contains(addr)
    }

    /// The bands of interval `i`, clipped to mapped memory.
    pub fn bands(&self, i: u64) -> Vec<Band> {
        let mut out = Vec::new();
        for b in self.pattern.bands(i) {
            for m in &self.mappings {
                if let Some(x) = b.range.intersection(m) {
                    out.push(Band {
                        range: x,
                        prob: b.prob,
                    });
                }
            }
        }
        out.sort_by_key(|b| b.range.start);
        out
    }

    /// What the pattern touches in interval `i` (before noise and mappings).
    pub fn pattern_interval(&self, i: u64) -> Interval {
        self.pattern
            .interval_cached(self.seed, i, &mut self.live.pattern_cache.borrow_mut())
    }

    fn noise_touched(&self, addr: u64, i: u64) -> bool {
        self.noise > 0.0
            && self.data.contains(addr)
            && draw(self.seed, addr / PAGE, i, 2) < self.noise
    }

    fn touched_in(&self, iv: &Interval, addr: u64) -> bool {
        self.is_mapped(addr) && (iv.touched(addr) || self.noise_touched(addr, iv.index()))
    }

    /// Ground truth: was the page holding `addr` touched in interval `interval`? (Builds the
    /// interval each call: for many pages use [`SimSpace::pattern_interval`] or
    /// [`SimSpace::touched_pages`].)
    pub fn touched(&self, addr: u64, interval: u64) -> bool {
        self.touched_in(&self.pattern_interval(interval), addr)
    }

    /// Ground truth: the pages touched in interval `i` inside `within` (addresses,
    /// ascending), noise included.
    pub fn touched_pages(&self, i: u64, within: AddrRange) -> Vec<u64> {
        self.touched_pages_of(&self.pattern_interval(i), within)
    }

    fn touched_pages_of(&self, iv: &Interval, within: AddrRange) -> Vec<u64> {
        let mut v: Vec<u64> = iv
            .touched_pages(within)
            .into_iter()
            .filter(|&a| self.is_mapped(a))
            .collect();
        if self.noise > 0.0 {
            if let Some(x) = self.data.intersection(&within) {
                let start = x.start & !(PAGE - 1);
                v.extend(
                    (start..x.end)
                        .step_by(PAGE as usize)
                        .filter(|&a| self.noise_touched(a, iv.index())),
                );
                v.sort_unstable();
                v.dedup();
            }
        }
        v
    }

    /// Ground truth: bytes of the pages inside `within` touched in at least one of the
    /// intervals `from..to` (the working set of an aggregation), noise included.
    pub fn touched_bytes_between(&self, from: u64, to: u64, within: AddrRange) -> u64 {
        let ivs: Vec<Interval> = (from..to).map(|i| self.pattern_interval(i)).collect();
        // Only pages some part (or the noise) can touch: each is checked until its first
        // touch.
        let mut candidates: Vec<AddrRange> = ivs.iter().flat_map(|iv| iv.support()).collect();
        if self.noise > 0.0 {
            candidates.push(self.data);
        }
        let candidates: Vec<AddrRange> = merge_ranges(candidates)
            .into_iter()
            .filter_map(|r| r.intersection(&within))
            .collect();
        let mut pages = 0u64;
        for r in candidates {
            pages += (r.start & !(PAGE - 1)..r.end)
                .step_by(PAGE as usize)
                .filter(|&a| ivs.iter().any(|iv| self.touched_in(iv, a)))
                .count() as u64;
        }
        pages * PAGE
    }

    /// Ground truth: the true access probability in interval `i` of every page of `range`
    /// (page-aligned outwards), noise included, 0 where nothing is mapped.
    pub fn page_probs(&self, range: AddrRange, i: u64) -> Vec<f64> {
        let start = range.start & !(PAGE - 1);
        let mut v = self.pattern_interval(i).page_probs(range);
        for (k, p) in v.iter_mut().enumerate() {
            let a = start + k as u64 * PAGE;
            if !self.is_mapped(a) {
                *p = 0.0;
            } else if self.noise > 0.0 && self.data.contains(a) {
                *p = 1.0 - (1.0 - *p) * (1.0 - self.noise);
            }
        }
        v
    }

    /// Ground truth: the ranges of the pattern's bands (probability > 0) in intervals
    /// `from..to`, merged. Noise is not included (see [`SimSpace::noise`]).
    pub fn hot_ranges(&self, from: u64, to: u64) -> Vec<AddrRange> {
        let mut all: Vec<AddrRange> = Vec::new();
        let mut last: Vec<Band> = Vec::new();
        for i in from..to {
            let b = self.bands(i);
            if i != from && b == last {
                continue;
            }
            all.extend(b.iter().filter(|b| b.prob > 0.0).map(|b| b.range));
            last = b;
        }
        merge_ranges(all)
    }

    /// Ground truth: working-set size of interval `i`, the bytes of bands with probability
    /// > 0 (noise excluded).
    pub fn wss_bytes(&self, i: u64) -> u64 {
        self.bands(i)
            .iter()
            .filter(|b| b.prob > 0.0)
            .map(|b| b.range.len())
            .sum()
    }

    /// Ground truth: bytes touched in at least one of intervals `from..to` by the pattern's
    /// bands (exact for probability-1 bands; noise excluded).
    pub fn wss_bytes_between(&self, from: u64, to: u64) -> u64 {
        self.hot_ranges(from, to).iter().map(|r| r.len()).sum()
    }

    /// Samples answered so far, and how many of them `Unknown`.
    pub fn answered(&self) -> (u64, u64) {
        (self.samples, self.unknown_answers)
    }

    /// The noise probability per data page per interval.
    pub fn noise(&self) -> f64 {
        self.noise
    }

    /// Page out `range` (its mapped pages), as the actuator's `pageout` or a scripted
    /// reclaim would: the pages stay out until touched. A sample on one of them in the
    /// current interval answers `Unknown` unless the page is touched (madvd's own page-out
    /// within the interval: residency then is no evidence).
    pub fn page_out(&mut self, range: AddrRange) {
        for m in &self.mappings {
            if let Some(x) = m.intersection(&range) {
                self.live.nonresident.insert(x);
                self.live.out_now.insert(x);
            }
        }
    }

    /// Scripted reclaim before the run: page out `range` (its mapped pages) with no
    /// interval in flight (the checks see the pages as non-resident from the next interval
    /// on, with no `Unknown` for an own page-out).
    pub fn set_nonresident(&mut self, range: AddrRange) {
        for m in &self.mappings {
            if let Some(x) = m.intersection(&range) {
                self.live.nonresident.insert(x);
            }
        }
    }

    /// Is the page holding `addr` resident (mapped and not paged out)?
    pub fn is_resident(&self, addr: u64) -> bool {
        self.is_mapped(addr) && !self.live.nonresident.contains(addr)
    }

    /// Bytes not resident inside `range`.
    pub fn nonresident_bytes(&self, range: AddrRange) -> u64 {
        self.live.nonresident.bytes_in(range)
    }

    fn unseeable(&self, addr: u64, i: u64) -> bool {
        let page = addr / PAGE;
        (self.unknown_fraction > 0.0 && draw(self.seed, page, i, 3) < self.unknown_fraction)
            || (self.unseeable_fraction > 0.0
                && draw(self.seed, page, 0, 6) < self.unseeable_fraction)
    }

    pub(super) fn answer(&mut self, samples: &[SampleReq], out: &mut [Access]) {
        let i = self.interval;
        let iv = match self.live.cache.take() {
            Some(iv) if iv.index() == i => iv,
            _ => self.pattern_interval(i),
        };
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            let touched = self.touched_in(&iv, s.addr);
            *o = if self.unseeable(s.addr, i) {
                Access::Unknown
            } else if self.live.out_now.contains(s.addr) {
                // Paged out by madvd within the interval: a touch brings the page back
                // (young), an untouched page is gone without saying whether it was used
                // before the page-out.
                if touched {
                    Access::Accessed
                } else {
                    Access::Unknown
                }
            } else if self.live.nonresident.contains(s.addr) {
                match (self.sight, touched) {
                    (Sight::ResidentOnly, _) => Access::Unknown,
                    (Sight::Residency, true) => Access::Accessed,
                    (Sight::Residency, false) => Access::NotAccessed,
                }
            } else if touched {
                Access::Accessed
            } else {
                Access::NotAccessed
            };
            if *o == Access::Unknown {
                self.unknown_answers += 1;
            }
        }
        self.samples += samples.len() as u64;
        self.end_interval(&iv);
        self.live.cache = Some(iv);
        self.interval += 1;
    }

    /// The end of an interval: every non-resident page touched in it is back.
    fn end_interval(&mut self, iv: &Interval) {
        self.live.out_now.clear();
        if self.live.nonresident.is_empty() {
            return;
        }
        let mut back = iv.touched_in_ranges(self.live.nonresident.ranges());
        if self.noise > 0.0 {
            for r in self.live.nonresident.ranges() {
                if let Some(x) = r.intersection(&self.data) {
                    back.extend(
                        (x.start..x.end)
                            .step_by(PAGE as usize)
                            .filter(|&a| self.noise_touched(a, iv.index())),
                    );
                }
            }
        }
        // Non-resident pages are mapped pages: every touched one is back.
        for a in back {
            self.live.nonresident.remove_page(a);
        }
    }
}

fn merge_ranges(mut v: Vec<AddrRange>) -> Vec<AddrRange> {
    v.sort();
    let mut out: Vec<AddrRange> = Vec::with_capacity(v.len());
    for r in v {
        match out.last_mut() {
            Some(l) if l.end >= r.start => l.end = l.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}
