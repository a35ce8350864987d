//! The access pattern match: `__damos_valid_target()` (mm/damon/core.c 6.12). All bounds are
//! inclusive; the frequency is the moving sum `nr_accesses_bp / 10000`, which equals
//! `nr_accesses` at an aggregation boundary and is valid mid-aggregation (apply intervals
//! shorter than the aggregation interval).

use crate::policy::AccessPattern;
use engine::{Attrs, Region};

/// A pattern with its percentages and times turned into counts for given attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub min_sz: u64,
    pub max_sz: u64,
    pub min_nr_accesses: u32,
    pub max_nr_accesses: u32,
    pub min_age: u32,
    pub max_age: u32,
}

impl Resolved {
    pub fn new(p: &AccessPattern, attrs: &Attrs) -> Self {
        let max_nr = attrs.max_nr_accesses();
        Self {
            min_sz: p.min_sz,
            max_sz: p.max_sz,
            min_nr_accesses: p.min_freq.resolve(max_nr),
            max_nr_accesses: p.max_freq.resolve(max_nr),
            min_age: p.min_age.resolve(attrs.aggr_us),
            max_age: p.max_age.resolve(attrs.aggr_us),
        }
    }

    pub fn matches(&self, r: &Region) -> bool {
        self.matches_size(r.size()) && self.matches_access(r)
    }

    /// The size range alone.
    pub fn matches_size(&self, sz: u64) -> bool {
        self.min_sz <= sz && sz <= self.max_sz
    }

    /// The access frequency and age ranges alone (what a huge-page action asks of every
    /// region over a block: `runtime::huge_runs`).
    pub fn matches_access(&self, r: &Region) -> bool {
        let nr_accesses = r.nr_accesses_bp / 10_000;
        self.min_nr_accesses <= nr_accesses
            && nr_accesses <= self.max_nr_accesses
            && self.min_age <= r.age
            && r.age <= self.max_age
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{Age, Freq};

    fn region(sz: u64, nr: u32, age: u32) -> Region {
        let mut r = Region::new(0, sz);
        r.nr_accesses = nr;
        r.nr_accesses_bp = nr * 10_000;
        r.age = age;
        r
    }

    #[test]
    fn bounds_are_inclusive() {
        let p = AccessPattern {
            min_sz: 4096,
            max_sz: 8192,
            min_freq: Freq::Count(1),
            max_freq: Freq::MaxBp(5000),
            min_age: Age::Aggregations(2),
            max_age: Age::TimeUs(1_000_000),
        };
        let r = Resolved::new(&p, &Attrs::default());
        assert_eq!((r.max_nr_accesses, r.max_age), (10, 10));
        assert!(r.matches(&region(4096, 1, 2)));
        assert!(r.matches(&region(8192, 10, 10)));
        assert!(!r.matches(&region(4095, 1, 2)));
        assert!(!r.matches(&region(8193, 1, 2)));
        assert!(!r.matches(&region(4096, 0, 2)));
        assert!(!r.matches(&region(4096, 11, 2)));
        assert!(!r.matches(&region(4096, 1, 1)));
        assert!(!r.matches(&region(4096, 1, 11)));
    }

    #[test]
    fn mid_aggregation_uses_the_moving_sum() {
        let p = AccessPattern {
            max_freq: Freq::Count(0),
            ..AccessPattern::default()
        };
        let r = Resolved::new(&p, &Attrs::default());
        let mut reg = region(4096, 0, 0);
        reg.nr_accesses_bp = 9_999; // moving sum below one access
        assert!(r.matches(&reg));
        reg.nr_accesses_bp = 10_000;
        assert!(!r.matches(&reg));
    }
}
