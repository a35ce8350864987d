//! `sim`: a simulated address space with a scripted access pattern and ground truth.
//!
//! A [`SimSpace`] is a process-like layout (executable, heap, one big data mapping, libraries,
//! stack; the gaps between heap and data and between libraries and stack are the two big
//! ones, as in a real process) and a [`Pattern`] saying, per sampling interval, which byte
//! ranges ("bands") are touched and with what probability. Nothing is stored per page, so a
//! 1 TiB space costs what a 1 GiB one does: answering a sample is a binary search over the
//! handful of mappings and bands plus, for fractional probabilities, one hash.
//!
//! Time is the number of sampling intervals checked: each [`AccessCheck::check`] answers for
//! the current interval and advances it. Whether page `p` is touched in interval `i` is a
//! pure function of (seed, p, i), so tests ask the truth for any page and interval
//! ([`SimSpace::touched`], [`SimSpace::hot_ranges`], [`SimSpace::wss_bytes`]) without
//! sleeping or storing history.
//!
//! [`SimOps`] holds one space per target and implements [`AccessCheck`]; it is the `--ops
//! sim` fallback primitive of `madvd` and the demo.

use crate::access::{Access, AccessCheck, AccessError, MonitorCost, SampleReq};
use crate::attrs::Attrs;
use crate::region::{AddrRange, TargetId};
use std::collections::BTreeMap;
use thiserror::Error;

/// Page size of the simulated space.
pub const PAGE: u64 = 4096;

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
pub const SCENARIOS: &[&str] = &["hotcold", "stairs", "moving", "zigzag", "noise", "idle"];

/// A byte range touched with probability `prob` per page per sampling interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub range: AddrRange,
    pub prob: f64,
}

/// A scripted access pattern over time (time = sampling intervals).
#[derive(Clone, Debug, PartialEq)]
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
}

impl Pattern {
    /// The bands of interval `i` (sorted, disjoint).
    pub fn bands(&self, i: u64) -> Vec<Band> {
        let page = |x: u64| x & !(PAGE - 1);
        match self {
            Pattern::Static(b) => b.clone(),
            Pattern::Stairs {
                base,
                window,
                step_intervals,
                prob,
            } => {
                let window = (*window).clamp(PAGE, base.len().max(PAGE));
                let slots = (base.len() / window).max(1);
                let slot = (i / (*step_intervals).max(1)) % slots;
                let s = base.start + slot * window;
                vec![Band {
                    range: AddrRange::new(s, (s + window).min(base.end)),
                    prob: *prob,
                }]
            }
            Pattern::Moving {
                base,
                window,
                bytes_per_interval,
                prob,
            } => {
                let len = base.len();
                let window = (*window).min(len);
                let off = page((i.wrapping_mul(*bytes_per_interval)) % len.max(1));
                let s = base.start + off;
                let e = s + window;
                if e <= base.end {
                    vec![Band {
                        range: AddrRange::new(s, e),
                        prob: *prob,
                    }]
                } else {
                    let mut v = vec![
                        Band {
                            range: AddrRange::new(base.start, base.start + (e - base.end)),
                            prob: *prob,
                        },
                        Band {
                            range: AddrRange::new(s, base.end),
                            prob: *prob,
                        },
                    ];
                    v.retain(|b| !b.range.is_empty());
                    v
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
                    let o = i.wrapping_mul(*bytes_per_interval) % period;
                    page(if o <= span { o } else { period - o })
                };
                let s = base.start + pos;
                vec![Band {
                    range: AddrRange::new(s, s + window),
                    prob: *prob,
                }]
            }
        }
    }
}

/// A simulated address space. See the module documentation.
#[derive(Clone, Debug)]
pub struct SimSpace {
    mappings: Vec<AddrRange>,
    data: AddrRange,
    pattern: Pattern,
    /// Every page of the data mapping is also touched with this probability per interval.
    noise: f64,
    unknown_fraction: f64,
    seed: u64,
    interval: u64,
    cache_interval: u64,
    cache: Vec<Band>,
    gone: bool,
    samples: u64,
    unknown_answers: u64,
}

/// splitmix64: a fast, well-mixed hash of one word.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A deterministic draw in [0, 1) for (seed, page, interval, stream).
fn draw(seed: u64, page: u64, interval: u64, stream: u64) -> f64 {
    let h =
        mix(seed ^ mix(page ^ mix(interval.wrapping_add(stream.wrapping_mul(0x1000_0000_0001)))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

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
            seed,
            interval: 0,
            cache_interval: u64::MAX,
            cache: Vec::new(),
            gone: false,
            samples: 0,
            unknown_answers: 0,
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
    /// - `idle`: nothing touched.
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
            other => return Err(SimError::UnknownScenario(other.to_string())),
        };
        if name == "noise" {
            s.noise = 0.01;
        }
        Ok(s)
    }

    pub fn with_pattern(mut self, pattern: Pattern) -> Self {
        self.pattern = pattern;
        self.cache_interval = u64::MAX;
        self
    }

    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Every data page is also touched with probability `p` per interval.
    pub fn with_noise(mut self, p: f64) -> Self {
        self.noise = p.clamp(0.0, 1.0);
        self
    }

    /// Answer `Unknown` for this fraction of samples, at random (seeded).
    pub fn with_unknown_fraction(mut self, f: f64) -> Result<Self, SimError> {
        if !(0.0..=1.0).contains(&f) {
            return Err(SimError::BadFraction(f));
        }
        self.unknown_fraction = f;
        Ok(self)
    }

    /// Replace the mappings (sorted, disjoint), e.g. to simulate `munmap` / `mmap`.
    pub fn set_mappings(&mut self, mut mappings: Vec<AddrRange>) {
        mappings.sort();
        self.mappings = mappings;
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

    /// Jump the clock (e.g. to start a test mid-scenario).
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

    fn band_prob(bands: &[Band], addr: u64) -> f64 {
        let i = bands.partition_point(|b| b.range.end <= addr);
        if i < bands.len() && bands[i].range.contains(addr) {
            bands[i].prob
        } else {
            0.0
        }
    }

    fn touched_with(&self, bands: &[Band], addr: u64, interval: u64) -> bool {
        if !self.is_mapped(addr) {
            return false;
        }
        let page = addr / PAGE;
        let p = Self::band_prob(bands, addr);
        if p >= 1.0 || (p > 0.0 && draw(self.seed, page, interval, 1) < p) {
            return true;
        }
        self.noise > 0.0
            && self.data.contains(addr)
            && draw(self.seed, page, interval, 2) < self.noise
    }

    /// Ground truth: was the page holding `addr` touched in interval `interval`?
    pub fn touched(&self, addr: u64, interval: u64) -> bool {
        self.touched_with(&self.bands(interval), addr, interval)
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

    fn answer(&mut self, samples: &[SampleReq], out: &mut [Access]) {
        let i = self.interval;
        if self.cache_interval != i {
            self.cache = self.bands(i);
            self.cache_interval = i;
        }
        for (s, o) in samples.iter().zip(out.iter_mut()) {
            let page = s.addr / PAGE;
            *o = if self.unknown_fraction > 0.0
                && draw(self.seed, page, i, 3) < self.unknown_fraction
            {
                self.unknown_answers += 1;
                Access::Unknown
            } else if self.touched_with(&self.cache, s.addr, i) {
                Access::Accessed
            } else {
                Access::NotAccessed
            };
        }
        self.samples += samples.len() as u64;
        self.interval += 1;
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

/// Simulated targets: one [`SimSpace`] per target id. Implements [`AccessCheck`]; a target
/// id it does not hold (or whose space exited) answers `TargetGone`.
#[derive(Clone, Debug, Default)]
pub struct SimOps {
    spaces: BTreeMap<TargetId, SimSpace>,
    attrs: Option<Attrs>,
    max_samples_per_sec: Option<f64>,
    samples: u64,
}

impl SimOps {
    pub fn new() -> Self {
        Self::default()
    }

    /// One space as target `id`.
    pub fn single(id: TargetId, space: SimSpace) -> Self {
        let mut s = Self::new();
        s.insert(id, space);
        s
    }

    pub fn insert(&mut self, id: TargetId, space: SimSpace) {
        self.spaces.insert(id, space);
    }

    pub fn remove(&mut self, id: TargetId) -> Option<SimSpace> {
        self.spaces.remove(&id)
    }

    pub fn space(&self, id: TargetId) -> Option<&SimSpace> {
        self.spaces.get(&id)
    }

    pub fn space_mut(&mut self, id: TargetId) -> Option<&mut SimSpace> {
        self.spaces.get_mut(&id)
    }

    /// Override the attributes `default_attrs` reports (default: the kernel's).
    pub fn with_default_attrs(mut self, attrs: Attrs) -> Self {
        self.attrs = Some(attrs);
        self
    }

    /// Declare a sample budget, as a costly check would.
    pub fn with_max_samples_per_sec(mut self, per_sec: f64) -> Self {
        self.max_samples_per_sec = Some(per_sec);
        self
    }

    fn live(&mut self, id: TargetId) -> Result<&mut SimSpace, AccessError> {
        match self.spaces.get_mut(&id) {
            Some(s) if !s.gone => Ok(s),
            _ => Err(AccessError::TargetGone(id)),
        }
    }
}

impl AccessCheck for SimOps {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn default_attrs(&self) -> Attrs {
        self.attrs.unwrap_or_default()
    }

    fn max_samples_per_sec(&self) -> Option<f64> {
        self.max_samples_per_sec
    }

    fn target_ranges(&mut self, target: TargetId) -> Result<Vec<AddrRange>, AccessError> {
        Ok(self.live(target)?.mappings.clone())
    }

    fn prepare(&mut self, target: TargetId, _samples: &mut [SampleReq]) -> Result<(), AccessError> {
        self.live(target).map(|_| ())
    }

    fn check(
        &mut self,
        target: TargetId,
        samples: &[SampleReq],
        out: &mut [Access],
    ) -> Result<(), AccessError> {
        self.live(target)?.answer(samples, out);
        self.samples += samples.len() as u64;
        Ok(())
    }

    fn cost(&self) -> MonitorCost {
        MonitorCost {
            probe_pageouts: 0,
            samples: self.samples,
            syscalls: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const GIB: u64 = 1 << 30;

    #[test]
    fn scenarios_build_and_layout_has_two_big_gaps() {
        for name in SCENARIOS {
            let s = SimSpace::scenario(name, GIB).unwrap();
            let three = crate::monitor::three_regions(s.mappings(), PAGE).unwrap();
            // The data mapping and the libraries form the middle region.
            assert_eq!(three[1].start, s.data_range().start);
            assert!(three[1].end > s.data_range().end);
        }
        assert!(matches!(
            SimSpace::scenario("nope", GIB),
            Err(SimError::UnknownScenario(_))
        ));
        assert!(matches!(
            SimSpace::scenario("hotcold", 1),
            Err(SimError::BadSize(1))
        ));
    }

    #[test]
    fn hotcold_truth_and_answers_agree() {
        let mut ops = SimOps::single(TargetId(1), SimSpace::scenario("hotcold", GIB).unwrap());
        let s = ops.space(TargetId(1)).unwrap().clone();
        let hot = s.hot_ranges(0, 1);
        assert_eq!(hot.len(), 1);
        assert_eq!(hot[0].len(), (GIB / 10) & !(PAGE - 1));
        assert_eq!(s.wss_bytes(0), hot[0].len());
        let samples = [
            SampleReq {
                region: hot[0],
                addr: hot[0].start,
            },
            SampleReq {
                region: hot[0],
                addr: hot[0].end - 1,
            },
            SampleReq {
                region: s.data_range(),
                addr: s.data_range().start,
            },
            SampleReq {
                region: s.data_range(),
                addr: 0x1000,
            }, // unmapped
        ];
        let mut out = [Access::Unknown; 4];
        ops.check(TargetId(1), &samples, &mut out).unwrap();
        assert_eq!(
            out,
            [
                Access::Accessed,
                Access::Accessed,
                Access::NotAccessed,
                Access::NotAccessed
            ]
        );
        assert_eq!(ops.space(TargetId(1)).unwrap().interval(), 1);
    }

    #[test]
    fn stairs_move_and_wrap() {
        let s = SimSpace::scenario("stairs", GIB).unwrap();
        let b0 = s.hot_ranges(0, 1);
        let b1 = s.hot_ranges(400, 401);
        assert_eq!(b1[0].start - b0[0].start, (GIB / 10) & !(PAGE - 1));
        assert_eq!(s.hot_ranges(4000, 4001), b0, "wraps after ten slots");
        // Truth over a window spanning a step covers both slots.
        assert_eq!(s.wss_bytes_between(390, 410), 2 * b0[0].len());
    }

    #[test]
    fn moving_and_zigzag_stay_inside_data() {
        for name in ["moving", "zigzag"] {
            let s = SimSpace::scenario(name, GIB).unwrap();
            for i in (0..10_000).step_by(37) {
                for b in s.bands(i) {
                    assert!(
                        b.range.start >= s.data_range().start && b.range.end <= s.data_range().end
                    );
                }
                let w = s.wss_bytes(i);
                assert!(w > 0 && w <= GIB / 10 + PAGE, "{name} {i} {w}");
            }
        }
    }

    #[test]
    fn unknown_fraction_is_seeded_and_close() {
        let space = SimSpace::scenario("hotcold", GIB)
            .unwrap()
            .with_unknown_fraction(0.3)
            .unwrap();
        let mut ops = SimOps::single(TargetId(7), space);
        let d = ops.space(TargetId(7)).unwrap().data_range();
        let samples: Vec<SampleReq> = (0..10_000u64)
            .map(|k| SampleReq {
                region: d,
                addr: d.start + k * 64 * PAGE,
            })
            .collect();
        let mut out = vec![Access::Unknown; samples.len()];
        ops.check(TargetId(7), &samples, &mut out).unwrap();
        let unknown = out.iter().filter(|a| **a == Access::Unknown).count();
        assert!((2700..3300).contains(&unknown), "{unknown}");
        assert!(SimSpace::scenario("hotcold", GIB)
            .unwrap()
            .with_unknown_fraction(1.5)
            .is_err());
    }

    #[test]
    fn noise_touches_about_the_given_fraction() {
        let s = SimSpace::scenario("noise", GIB).unwrap();
        let d = s.data_range();
        let stride = (d.len() / 20_000) & !(PAGE - 1);
        let n = (0..20_000u64)
            .filter(|k| s.touched(d.start + k * stride, 5))
            .count();
        // 10% hot + 1% of the other 90%: ~10.9% of pages.
        assert!((1900..2500).contains(&n), "{n}");
    }

    #[test]
    fn gone_and_unknown_targets() {
        let mut ops = SimOps::single(TargetId(1), SimSpace::scenario("idle", GIB).unwrap());
        assert!(matches!(
            ops.target_ranges(TargetId(2)),
            Err(AccessError::TargetGone(TargetId(2)))
        ));
        ops.space_mut(TargetId(1)).unwrap().exit();
        assert!(matches!(
            ops.prepare(TargetId(1), &mut []),
            Err(AccessError::TargetGone(_))
        ));
    }

    #[test]
    fn one_tib_costs_no_memory() {
        let s = SimSpace::scenario("hotcold", 1 << 40).unwrap();
        assert_eq!(
            s.mapped_bytes() - (1 << 40),
            2 * MIB + 8 * MIB + 4 * MIB + 132 * KIB
        );
        assert!(s.touched(s.hot_ranges(0, 1)[0].start + 12345, 99));
    }
}
