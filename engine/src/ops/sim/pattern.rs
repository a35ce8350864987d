//! Scripted access patterns: which pages are touched in each sampling interval, and with what
//! probability. One truth function for the simulator and for the real workload child: given
//! (pattern, seed, interval), [`Pattern::interval`] says which pages are touched
//! ([`Interval::touched`], [`Interval::touched_pages`]) and each page's true access
//! probability ([`Interval::prob`]); the child touches exactly those pages, the simulated
//! checks answer from them.
//!
//! Time is counted in sampling intervals. Pages touched by a band or a partly hot region are
//! drawn independently per (seed, page, interval) by a hash; the keys of a Zipf key space are
//! looked up `lookups` times per interval, drawn with `rand_distr::Zipf` from an RNG seeded
//! by (seed, interval), as a program doing that many lookups per interval would.

use super::zipf::{Feistel, ZipfKeys};
use crate::region::AddrRange;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;

/// Page size of the simulated space.
pub const PAGE: u64 = 4096;

/// A byte range touched with probability `prob` per page per sampling interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub range: AddrRange,
    pub prob: f64,
}

/// A partly hot region: `fraction` of the pages of `range`, scattered (chosen by a seeded
/// permutation of the range's pages, `layout_seed`), each touched with probability `prob`
/// per sampling interval; the other pages are never touched.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SparseHot {
    pub range: AddrRange,
    pub fraction: f64,
    pub prob: f64,
    pub layout_seed: u64,
}

/// One phase of [`Pattern::Phases`]: `pattern` for `intervals` sampling intervals (its own
/// clock starts at 0 when the phase starts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub intervals: u64,
    pub pattern: Pattern,
}

/// A scripted access pattern over time (time = sampling intervals).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Pattern {
    /// The same bands in every interval (bands must not overlap).
    Static(Vec<Band>),
    /// A window of `window` bytes inside `base`, jumping to the next `window`-sized slot
    /// every `step_intervals` intervals and wrapping to the start after the last slot.
    Stairs {
        base: AddrRange,
        window: u64,
        step_intervals: u64,
        prob: f64,
    },
    /// A window sliding `bytes_per_interval` forward each interval, wrapping around `base`.
    Moving {
        base: AddrRange,
        window: u64,
        bytes_per_interval: u64,
        prob: f64,
    },
    /// A window sliding forward then back inside `base`.
    Zigzag {
        base: AddrRange,
        window: u64,
        bytes_per_interval: u64,
        prob: f64,
    },
    /// A key space with Zipf-distributed popularity, hot keys scattered ([`ZipfKeys`]).
    Zipf(ZipfKeys),
    /// A partly hot region ([`SparseHot`]).
    Sparse(SparseHot),
    /// Several patterns at once: a page is touched when any layer touches it (layers draw
    /// independently).
    Layers(Vec<Pattern>),
    /// Phases one after another; after the last, the last phase goes on (or, with
    /// `repeat`, the first starts again).
    Phases { phases: Vec<Phase>, repeat: bool },
}

/// A pattern that cannot be run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum PatternError {
    #[error("access probability {0} is not within 0..=1")]
    Prob(f64),
    #[error("fraction {0} is not within 0..=1")]
    Fraction(f64),
    #[error("Zipf exponent {0} is not a finite number >= 0")]
    Exponent(f64),
    #[error("Zipf key size {0} is not a positive multiple of the page size")]
    KeyBytes(u64),
    #[error("Zipf key space {0} holds no key")]
    NoKeys(AddrRange),
    #[error("range {0} is empty")]
    Empty(AddrRange),
    #[error("phases: none given, or one of 0 intervals")]
    Phases,
}

/// splitmix64: a fast, well-mixed hash of one word.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic draw in [0, 1) for (seed, page, interval, stream).
pub(super) fn draw(seed: u64, page: u64, interval: u64, stream: u64) -> f64 {
    let h =
        mix(seed ^ mix(page ^ mix(interval.wrapping_add(stream.wrapping_mul(0x1000_0000_0001)))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Draw streams: layer `l` of a pattern draws bands on `1 + 8l` (layer 0 on 1, as before
/// layers existed), partly hot regions on `4 + 8l`, Zipf lookups on `5 + 8l`. Stream 2 is
/// the space's noise, 3 the pages a check cannot see.
const STREAM_BAND: u64 = 1;
const STREAM_SPARSE: u64 = 4;
const STREAM_ZIPF: u64 = 5;

fn page_of(x: u64) -> u64 {
    x & !(PAGE - 1)
}

fn check_prob(p: f64) -> Result<(), PatternError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(PatternError::Prob(p))
    }
}

impl SparseHot {
    fn pages(&self) -> u64 {
        self.range.len() / PAGE
    }
    fn nr_hot(&self) -> u64 {
        ((self.pages() as f64 * self.fraction).round() as u64).min(self.pages())
    }
    fn perm(&self) -> Feistel {
        Feistel::new(self.pages(), self.layout_seed)
    }
    /// Is the page holding `addr` one of the hot ones?
    pub fn is_hot(&self, addr: u64) -> bool {
        if !self.range.contains(addr) || self.range.start + self.pages() * PAGE <= addr {
            return false;
        }
        self.perm().forward((addr - self.range.start) / PAGE) < self.nr_hot()
    }
    /// The hot pages' addresses, ascending.
    pub fn hot_pages(&self) -> Vec<u64> {
        let perm = self.perm();
        let mut v: Vec<u64> = (0..self.nr_hot())
            .map(|k| self.range.start + perm.inverse(k) * PAGE)
            .collect();
        v.sort_unstable();
        v
    }
}

impl Pattern {
    /// Check every parameter (the simulator runs any pattern; the workload child refuses a
    /// bad one with this error).
    pub fn validate(&self) -> Result<(), PatternError> {
        match self {
            Pattern::Static(bands) => bands.iter().try_for_each(|b| check_prob(b.prob)),
            Pattern::Stairs { base, prob, .. }
            | Pattern::Moving { base, prob, .. }
            | Pattern::Zigzag { base, prob, .. } => {
                if base.is_empty() {
                    return Err(PatternError::Empty(*base));
                }
                check_prob(*prob)
            }
            Pattern::Zipf(z) => z.validate(),
            Pattern::Sparse(s) => {
                if s.range.len() < PAGE {
                    return Err(PatternError::Empty(s.range));
                }
                if !(0.0..=1.0).contains(&s.fraction) {
                    return Err(PatternError::Fraction(s.fraction));
                }
                check_prob(s.prob)
            }
            Pattern::Layers(layers) => layers.iter().try_for_each(Pattern::validate),
            Pattern::Phases { phases, .. } => {
                if phases.is_empty() || phases.iter().any(|p| p.intervals == 0) {
                    return Err(PatternError::Phases);
                }
                phases.iter().try_for_each(|p| p.pattern.validate())
            }
        }
    }

    /// The same pattern with every address moved by `to - from` (e.g. a pattern written for
    /// the simulator's data mapping, run by a child whose mapping starts elsewhere).
    pub fn relocated(&self, from: u64, to: u64) -> Pattern {
        let mv = |r: AddrRange| {
            AddrRange::new(
                r.start.wrapping_sub(from).wrapping_add(to),
                r.end.wrapping_sub(from).wrapping_add(to),
            )
        };
        let mut p = self.clone();
        p.for_each_range(&mut |r| *r = mv(*r));
        p
    }

    fn for_each_range(&mut self, f: &mut dyn FnMut(&mut AddrRange)) {
        match self {
            Pattern::Static(bands) => bands.iter_mut().for_each(|b| f(&mut b.range)),
            Pattern::Stairs { base, .. }
            | Pattern::Moving { base, .. }
            | Pattern::Zigzag { base, .. } => f(base),
            Pattern::Zipf(z) => f(&mut z.base),
            Pattern::Sparse(s) => f(&mut s.range),
            Pattern::Layers(layers) => layers.iter_mut().for_each(|l| l.for_each_range(f)),
            Pattern::Phases { phases, .. } => {
                phases.iter_mut().for_each(|p| p.pattern.for_each_range(f))
            }
        }
    }

    /// The band-shaped parts of interval `i` (sorted; disjoint for the band patterns). Zipf
    /// key spaces and partly hot regions are per page: see [`Pattern::interval`].
    pub fn bands(&self, i: u64) -> Vec<Band> {
        let mut out = Vec::new();
        self.collect(i, 0, &mut |_, part| {
            if let Part::Band(b) = part {
                out.push(b);
            }
        });
        out.sort_by_key(|b| b.range.start);
        out
    }

    /// What interval `i` touches, for `seed`: build once per interval, then ask per page.
    pub fn interval(&self, seed: u64, i: u64) -> Interval {
        self.interval_cached(seed, i, &mut PatternCache::default())
    }

    /// [`Pattern::interval`], keeping what does not change between intervals (the hot pages
    /// of partly hot regions) in `cache` for the next one.
    pub fn interval_cached(&self, seed: u64, i: u64, cache: &mut PatternCache) -> Interval {
        let mut iv = Interval {
            seed,
            i,
            bands: Vec::new(),
            sparse: Vec::new(),
            keys: Vec::new(),
        };
        self.collect(i, 0, &mut |layer, part| match part {
            Part::Band(b) => iv.bands.push((b, STREAM_BAND + 8 * layer)),
            Part::Sparse(s) => iv
                .sparse
                .push((s, STREAM_SPARSE + 8 * layer, cache.hot(&s))),
            Part::Zipf(z) => {
                let slots = z.lookups(seed ^ mix(STREAM_ZIPF + 8 * layer), i);
                iv.keys.push((z.clone(), slots));
            }
        });
        iv.bands.sort_by_key(|(b, _)| b.range.start);
        iv
    }

    /// Walk the parts active at (phase-local) time `t`, with their layer.
    fn collect(&self, t: u64, layer: u64, f: &mut dyn FnMut(u64, Part)) {
        let band = |range: AddrRange, prob: f64| Band { range, prob };
        match self {
            Pattern::Static(b) => b.iter().for_each(|b| f(layer, Part::Band(*b))),
            Pattern::Stairs {
                base,
                window,
                step_intervals,
                prob,
            } => {
                let window = (*window).clamp(PAGE, base.len().max(PAGE));
                let slots = (base.len() / window).max(1);
                let slot = (t / (*step_intervals).max(1)) % slots;
                let s = base.start + slot * window;
                f(
                    layer,
                    Part::Band(band(AddrRange::new(s, (s + window).min(base.end)), *prob)),
                );
            }
            Pattern::Moving {
                base,
                window,
                bytes_per_interval,
                prob,
            } => {
                let len = base.len();
                let window = (*window).min(len);
                let off = page_of((t.wrapping_mul(*bytes_per_interval)) % len.max(1));
                let s = base.start + off;
                let e = s + window;
                if e <= base.end {
                    f(layer, Part::Band(band(AddrRange::new(s, e), *prob)));
                } else {
                    for r in [
                        AddrRange::new(base.start, base.start + (e - base.end)),
                        AddrRange::new(s, base.end),
                    ] {
                        if !r.is_empty() {
                            f(layer, Part::Band(band(r, *prob)));
                        }
                    }
                }
            }
            Pattern::Zigzag {
                base,
                window,
                bytes_per_interval,
                prob,
            } => {
                let window = (*window).min(base.len());
                let span = base.len() - window;
                let pos = if span == 0 {
                    0
                } else {
                    let period = 2 * span;
                    let o = t.wrapping_mul(*bytes_per_interval) % period;
                    page_of(if o <= span { o } else { period - o })
                };
                let s = base.start + pos;
                f(
                    layer,
                    Part::Band(band(AddrRange::new(s, s + window), *prob)),
                );
            }
            Pattern::Zipf(z) => f(layer, Part::Zipf(z)),
            Pattern::Sparse(s) => f(layer, Part::Sparse(*s)),
            Pattern::Layers(layers) => {
                for (k, l) in layers.iter().enumerate() {
                    // Layer numbers stay distinct through nesting.
                    l.collect(t, layer * 64 + k as u64, f);
                }
            }
            Pattern::Phases { phases, repeat } => {
                let total: u64 = phases.iter().map(|p| p.intervals.max(1)).sum();
                if total == 0 {
                    return;
                }
                let mut t = if *repeat { t % total } else { t };
                for (k, p) in phases.iter().enumerate() {
                    let last = k + 1 == phases.len();
                    if t < p.intervals.max(1) || last {
                        p.pattern.collect(t, layer, f);
                        return;
                    }
                    t -= p.intervals.max(1);
                }
            }
        }
    }
}

/// What stays the same from one interval to the next: the hot pages of each partly hot
/// region (a permutation walk per page to compute). Keep one per space or child and pass it
/// to [`Pattern::interval_cached`].
#[derive(Clone, Debug, Default)]
pub struct PatternCache {
    hot: Vec<(SparseHot, Arc<[u64]>)>,
}

impl PatternCache {
    fn hot(&mut self, s: &SparseHot) -> Arc<[u64]> {
        if let Some((_, v)) = self.hot.iter().find(|(k, _)| k == s) {
            return v.clone();
        }
        let v: Arc<[u64]> = s.hot_pages().into();
        // A handful of regions at most; forget the oldest beyond that.
        if self.hot.len() >= 8 {
            self.hot.remove(0);
        }
        self.hot.push((*s, v.clone()));
        v
    }
}

enum Part<'a> {
    Band(Band),
    Sparse(SparseHot),
    Zipf(&'a ZipfKeys),
}

/// What one interval of a pattern touches ([`Pattern::interval`]).
#[derive(Clone, Debug)]
pub struct Interval {
    seed: u64,
    i: u64,
    /// Bands with their draw stream, sorted by start.
    bands: Vec<(Band, u64)>,
    /// Partly hot regions with their draw stream and hot pages (ascending).
    sparse: Vec<(SparseHot, u64, Arc<[u64]>)>,
    /// Each key space with the slots looked up in this interval (sorted, unique).
    keys: Vec<(ZipfKeys, Vec<u64>)>,
}

impl Interval {
    /// The interval this answers for.
    pub fn index(&self) -> u64 {
        self.i
    }

    /// Was the page holding `addr` touched in this interval?
    pub fn touched(&self, addr: u64) -> bool {
        let page = addr / PAGE;
        let hit = |p: f64, stream: u64| {
            p >= 1.0 || (p > 0.0 && draw(self.seed, page, self.i, stream) < p)
        };
        self.bands
            .iter()
            .any(|(b, st)| b.range.contains(addr) && hit(b.prob, *st))
            || self
                .sparse
                .iter()
                .any(|(s, st, _)| s.is_hot(addr) && hit(s.prob, *st))
            || self.keys.iter().any(|(z, slots)| {
                z.slot_of(addr)
                    .is_some_and(|s| slots.binary_search(&s).is_ok())
            })
    }

    /// The true access probability of the page holding `addr` in this interval: the chance
    /// that at least one part touches it.
    pub fn prob(&self, addr: u64) -> f64 {
        let mut miss = 1.0;
        for (b, _) in self.bands.iter().filter(|(b, _)| b.range.contains(addr)) {
            miss *= 1.0 - b.prob;
        }
        for (s, _, _) in self.sparse.iter().filter(|(s, _, _)| s.is_hot(addr)) {
            miss *= 1.0 - s.prob;
        }
        for (z, _) in &self.keys {
            if let Some(slot) = z.slot_of(addr) {
                miss *= 1.0 - z.slot_prob(slot);
            }
        }
        1.0 - miss
    }

    /// Per-page true access probabilities of the pages of `range` (page-aligned outwards),
    /// in address order. Cheaper than [`Interval::prob`] per page: the Zipf normaliser is
    /// computed once.
    pub fn page_probs(&self, range: AddrRange) -> Vec<f64> {
        let start = page_of(range.start);
        let n = (range.end.saturating_sub(start)).div_ceil(PAGE) as usize;
        let mut miss = vec![1.0f64; n];
        let idx = |a: u64| ((a - start) / PAGE) as usize;
        for (b, _) in &self.bands {
            if let Some(x) = b
                .range
                .intersection(&AddrRange::new(start, start + n as u64 * PAGE))
            {
                for a in (page_of(x.start)..x.end).step_by(PAGE as usize) {
                    miss[idx(a)] *= 1.0 - b.prob;
                }
            }
        }
        for (s, _, hot) in &self.sparse {
            for &a in hot.iter() {
                if a >= start && idx(a) < n {
                    miss[idx(a)] *= 1.0 - s.prob;
                }
            }
        }
        for (z, _) in &self.keys {
            let probs = z.slot_probs();
            for (k, m) in miss.iter_mut().enumerate() {
                if let Some(slot) = z.slot_of(start + k as u64 * PAGE) {
                    *m *= 1.0 - probs[slot as usize];
                }
            }
        }
        miss.into_iter().map(|m| 1.0 - m).collect()
    }

    /// The pages touched in this interval inside `within` (addresses, ascending, unique).
    pub fn touched_pages(&self, within: AddrRange) -> Vec<u64> {
        let mut out = Vec::new();
        for (b, _) in &self.bands {
            if let Some(x) = b.range.intersection(&within) {
                for a in (page_of(x.start)..x.end).step_by(PAGE as usize) {
                    if self.touched(a) {
                        out.push(a);
                    }
                }
            }
        }
        for (_, _, hot) in &self.sparse {
            for &a in hot.iter() {
                if within.contains(a) && self.touched(a) {
                    out.push(a);
                }
            }
        }
        for (z, slots) in &self.keys {
            for &slot in slots {
                let r = z.slot_range(slot);
                if let Some(x) = r.intersection(&within) {
                    out.extend((page_of(x.start)..x.end).step_by(PAGE as usize));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The pages touched in this interval inside `ranges` (sorted, disjoint): addresses,
    /// ascending, unique. Costs what the parts touch there, not what the ranges span (the
    /// simulator's residency update asks this of its non-resident pages every interval).
    pub fn touched_in_ranges(&self, ranges: &[AddrRange]) -> Vec<u64> {
        let mut out = Vec::new();
        let page = |a: u64| a / PAGE;
        let hit = |p: f64, a: u64, stream: u64| {
            p >= 1.0 || (p > 0.0 && draw(self.seed, page(a), self.i, stream) < p)
        };
        let overlapping = |r: AddrRange| {
            let from = ranges.partition_point(|x| x.end <= r.start);
            ranges[from..]
                .iter()
                .take_while(move |x| x.start < r.end)
                .filter_map(move |x| x.intersection(&r))
        };
        for (b, st) in &self.bands {
            for x in overlapping(b.range) {
                out.extend(
                    (page_of(x.start)..x.end)
                        .step_by(PAGE as usize)
                        .filter(|&a| hit(b.prob, a, *st)),
                );
            }
        }
        for (sp, st, hot) in &self.sparse {
            let span: u64 = overlapping(sp.range).map(|x| x.len() / PAGE).sum();
            if span < sp.nr_hot() {
                for x in overlapping(sp.range) {
                    out.extend(
                        (page_of(x.start)..x.end)
                            .step_by(PAGE as usize)
                            .filter(|&a| sp.is_hot(a) && hit(sp.prob, a, *st)),
                    );
                }
            } else {
                // Both sorted: one walk.
                let mut j = ranges.partition_point(|x| x.end <= sp.range.start);
                for &a in hot.iter() {
                    while j < ranges.len() && ranges[j].end <= a {
                        j += 1;
                    }
                    if j == ranges.len() {
                        break;
                    }
                    if ranges[j].contains(a) && hit(sp.prob, a, *st) {
                        out.push(a);
                    }
                }
            }
        }
        for (z, slots) in &self.keys {
            for &slot in slots {
                for x in overlapping(z.slot_range(slot)) {
                    out.extend((page_of(x.start)..x.end).step_by(PAGE as usize));
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The ranges any part of this interval can touch (bands, partly hot regions, key
    /// spaces), unsorted: outside them nothing is touched.
    pub fn support(&self) -> Vec<AddrRange> {
        let mut v: Vec<AddrRange> = self.bands.iter().map(|(b, _)| b.range).collect();
        v.extend(self.sparse.iter().map(|(s, _, _)| s.range));
        v.extend(self.keys.iter().map(|(z, _)| z.base));
        v
    }
}
