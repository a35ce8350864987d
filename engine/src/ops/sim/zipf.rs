//! A key space with Zipf-distributed popularity laid out in memory, hot keys scattered
//! ([`ZipfKeys`]), and the seeded permutation that scatters them ([`Feistel`]).

use super::pattern::{mix, PatternError, PAGE};
use crate::region::AddrRange;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};

/// A key space: `base` holds `base.len() / key_bytes` keys of `key_bytes` bytes each. Key
/// popularity follows Zipf's law with exponent `s` (the key of rank `r` is looked up with
/// probability `r^-s / H(K, s)`), and a program looks up `lookups` keys per sampling
/// interval (drawn with replacement by `rand_distr::Zipf`). Ranks are laid out over the
/// slots by a permutation seeded with `layout_seed`, so the hot keys are scattered over the
/// space, as in a hash table. A lookup touches every page of its key.
///
/// The true access probability per interval of the pages of the key of rank `r` is
/// `1 - (1 - r^-s / H)^lookups`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ZipfKeys {
    pub base: AddrRange,
    pub key_bytes: u64,
    pub s: f64,
    pub lookups: u64,
    pub layout_seed: u64,
}

impl ZipfKeys {
    pub fn validate(&self) -> Result<(), PatternError> {
        if self.key_bytes == 0 || self.key_bytes % PAGE != 0 {
            return Err(PatternError::KeyBytes(self.key_bytes));
        }
        if !(self.s.is_finite() && self.s >= 0.0) {
            return Err(PatternError::Exponent(self.s));
        }
        if self.nr_keys() == 0 {
            return Err(PatternError::NoKeys(self.base));
        }
        Ok(())
    }

    /// Number of keys (slots).
    pub fn nr_keys(&self) -> u64 {
        self.base.len() / self.key_bytes.max(1)
    }

    fn perm(&self) -> Feistel {
        Feistel::new(self.nr_keys(), self.layout_seed)
    }

    /// The slot of the key holding `addr`, if any.
    pub fn slot_of(&self, addr: u64) -> Option<u64> {
        if !self.base.contains(addr) {
            return None;
        }
        let slot = (addr - self.base.start) / self.key_bytes.max(1);
        (slot < self.nr_keys()).then_some(slot)
    }

    /// The bytes of slot `slot`.
    pub fn slot_range(&self, slot: u64) -> AddrRange {
        let s = self.base.start + slot * self.key_bytes;
        AddrRange::new(s, s + self.key_bytes)
    }

    /// The slot of the key of popularity rank `rank` (1 = most popular).
    pub fn slot_of_rank(&self, rank: u64) -> u64 {
        self.perm().forward(rank - 1)
    }

    /// The popularity rank (1 = most popular) of the key in `slot`.
    pub fn rank_of_slot(&self, slot: u64) -> u64 {
        self.perm().inverse(slot) + 1
    }

    /// The slots looked up in interval `i` (sorted, unique): `lookups` draws of
    /// `rand_distr::Zipf` from an RNG seeded by (`seed`, `i`). Invalid parameters look up
    /// nothing.
    pub fn lookups(&self, seed: u64, i: u64) -> Vec<u64> {
        if self.validate().is_err() {
            return Vec::new();
        }
        let Ok(zipf) = Zipf::new(self.nr_keys(), self.s) else {
            return Vec::new();
        };
        let perm = self.perm();
        let mut rng = SmallRng::seed_from_u64(mix(seed ^ mix(i)));
        let mut v: Vec<u64> = (0..self.lookups)
            .map(|_| {
                let rank = (zipf.sample(&mut rng) as u64).clamp(1, self.nr_keys());
                perm.forward(rank - 1)
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// `H(K, s)`, the Zipf normaliser.
    fn harmonic(&self) -> f64 {
        (1..=self.nr_keys()).map(|r| (r as f64).powf(-self.s)).sum()
    }

    fn rank_prob(&self, rank: u64, h: f64) -> f64 {
        let q = (rank as f64).powf(-self.s) / h;
        1.0 - (1.0 - q).powf(self.lookups as f64)
    }

    /// The true access probability per interval of the pages of slot `slot` (computes the
    /// normaliser: for many slots use [`ZipfKeys::slot_probs`]).
    pub fn slot_prob(&self, slot: u64) -> f64 {
        self.rank_prob(self.rank_of_slot(slot), self.harmonic())
    }

    /// The true access probability per interval of every slot, by slot.
    pub fn slot_probs(&self) -> Vec<f64> {
        let h = self.harmonic();
        let perm = self.perm();
        let mut v = vec![0.0; self.nr_keys() as usize];
        for rank in 1..=self.nr_keys() {
            v[perm.forward(rank - 1) as usize] = self.rank_prob(rank, h);
        }
        v
    }
}

/// A seeded permutation of `0..n`: a 4-round balanced Feistel network over the smallest
/// even number of bits covering `n`, cycle-walking back into range (at most 4x the domain,
/// so a few rounds on average). Both directions cost O(1) and nothing is stored.
#[derive(Clone, Copy, Debug)]
pub struct Feistel {
    n: u64,
    half: u32,
    seed: u64,
}

impl Feistel {
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        Self {
            n,
            half: bits.div_ceil(2),
            seed,
        }
    }

    fn round(&self, k: u64, x: u64) -> u64 {
        mix(self.seed ^ mix(x ^ (k << 58))) & ((1u64 << self.half) - 1)
    }

    fn once(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for k in 0..4 {
            (l, r) = (r, l ^ self.round(k, r));
        }
        (l << self.half) | r
    }

    fn once_inverse(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for k in (0..4).rev() {
            (l, r) = (r ^ self.round(k, l), l);
        }
        (l << self.half) | r
    }

    /// Apply `step` until the value is back inside `0..n` (cycle walking).
    fn walk(&self, x: u64, step: fn(&Self, u64) -> u64) -> u64 {
        if self.n <= 1 {
            return x;
        }
        let mut y = step(self, x);
        while y >= self.n {
            y = step(self, y);
        }
        y
    }

    /// The image of `x` (< n).
    pub fn forward(&self, x: u64) -> u64 {
        self.walk(x, Self::once)
    }

    /// The preimage of `y` (< n).
    pub fn inverse(&self, y: u64) -> u64 {
        self.walk(y, Self::once_inverse)
    }
}
