//! A set of page ranges: the simulator's non-resident pages (`ops::sim`), and the ranges the
//! schemes know to be out of memory (`schemes`' known-out set).

use crate::region::AddrRange;

/// The page the set aligns to (x86-64 and arm64's base page).
const PAGE: u64 = 4096;

/// A set of page-aligned byte ranges, kept sorted, disjoint and coalesced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeSet {
    ranges: Vec<AddrRange>,
}

impl RangeSet {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    pub fn ranges(&self) -> &[AddrRange] {
        &self.ranges
    }

    pub fn contains(&self, addr: u64) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= addr);
        i < self.ranges.len() && self.ranges[i].contains(addr)
    }

    /// Bytes of the set inside `range`.
    pub fn bytes_in(&self, range: AddrRange) -> u64 {
        let from = self.ranges.partition_point(|r| r.end <= range.start);
        self.ranges[from..]
            .iter()
            .take_while(|r| r.start < range.end)
            .filter_map(|r| r.intersection(&range))
            .map(|r| r.len())
            .sum()
    }

    /// Add `r` (aligned outwards to pages).
    pub fn insert(&mut self, r: AddrRange) {
        let r = AddrRange::new(r.start & !(PAGE - 1), r.end.next_multiple_of(PAGE));
        if r.is_empty() {
            return;
        }
        // Every range touching or overlapping r merges with it.
        let from = self.ranges.partition_point(|x| x.end < r.start);
        let to = self.ranges.partition_point(|x| x.start <= r.end);
        let mut merged = r;
        for x in &self.ranges[from..to] {
            merged.start = merged.start.min(x.start);
            merged.end = merged.end.max(x.end);
        }
        self.ranges.splice(from..to, [merged]);
    }

    /// Number of disjoint ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Remove every byte of `r` from the set (a range inside a held one splits it).
    pub fn remove(&mut self, r: AddrRange) {
        if r.is_empty() {
            return;
        }
        let from = self.ranges.partition_point(|x| x.end <= r.start);
        let to = self.ranges.partition_point(|x| x.start < r.end);
        if from >= to {
            return;
        }
        let (first, last) = (self.ranges[from], self.ranges[to - 1]);
        let keep: Vec<AddrRange> = [
            AddrRange::new(first.start, r.start.max(first.start)),
            AddrRange::new(r.end.min(last.end), last.end),
        ]
        .into_iter()
        .filter(|x| !x.is_empty())
        .collect();
        self.ranges.splice(from..to, keep);
    }

    /// The first held range that overlaps `r`, if any.
    pub fn first_overlap(&self, r: AddrRange) -> Option<AddrRange> {
        let i = self.ranges.partition_point(|x| x.end <= r.start);
        self.ranges.get(i).copied().filter(|x| x.start < r.end)
    }

    /// Remove the page holding `addr`.
    pub fn remove_page(&mut self, addr: u64) {
        let p = AddrRange::new(addr & !(PAGE - 1), (addr & !(PAGE - 1)) + PAGE);
        let i = self.ranges.partition_point(|r| r.end <= p.start);
        if i >= self.ranges.len() || !self.ranges[i].contains(p.start) {
            return;
        }
        let r = self.ranges[i];
        let left = AddrRange::new(r.start, p.start);
        let right = AddrRange::new(p.end, r.end);
        let keep: Vec<AddrRange> = [left, right]
            .into_iter()
            .filter(|x| !x.is_empty())
            .collect();
        self.ranges.splice(i..=i, keep);
    }

    /// Keep only the parts inside `within` (sorted, disjoint).
    pub fn retain_within(&mut self, within: &[AddrRange]) {
        let mut out = Vec::new();
        for r in &self.ranges {
            out.extend(within.iter().filter_map(|w| w.intersection(r)));
        }
        self.ranges = out;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(rs: &[(u64, u64)]) -> RangeSet {
        let mut s = RangeSet::default();
        for &(a, b) in rs {
            s.insert(AddrRange::new(a, b));
        }
        s
    }

    #[test]
    fn remove_cuts_splits_and_drops() {
        let mut s = set(&[(0x1000, 0x5000), (0x8000, 0xa000), (0xc000, 0xd000)]);
        s.remove(AddrRange::new(0x2000, 0x3000));
        assert_eq!(
            s.ranges(),
            &[
                AddrRange::new(0x1000, 0x2000),
                AddrRange::new(0x3000, 0x5000),
                AddrRange::new(0x8000, 0xa000),
                AddrRange::new(0xc000, 0xd000)
            ]
        );
        s.remove(AddrRange::new(0x4000, 0x9000));
        assert_eq!(
            s.ranges(),
            &[
                AddrRange::new(0x1000, 0x2000),
                AddrRange::new(0x3000, 0x4000),
                AddrRange::new(0x9000, 0xa000),
                AddrRange::new(0xc000, 0xd000)
            ]
        );
        s.remove(AddrRange::new(0x0, 0x10000));
        assert!(s.is_empty());
        s.remove(AddrRange::new(0x0, 0x10000));
        assert!(s.is_empty());
    }

    #[test]
    fn first_overlap_finds_the_lowest_touching_range() {
        let s = set(&[(0x1000, 0x2000), (0x4000, 0x6000)]);
        assert_eq!(s.first_overlap(AddrRange::new(0x0, 0x1000)), None);
        assert_eq!(
            s.first_overlap(AddrRange::new(0x1800, 0x5000)),
            Some(AddrRange::new(0x1000, 0x2000))
        );
        assert_eq!(
            s.first_overlap(AddrRange::new(0x2000, 0x4800)),
            Some(AddrRange::new(0x4000, 0x6000))
        );
        assert_eq!(s.first_overlap(AddrRange::new(0x6000, 0x9000)), None);
        assert_eq!(s.len(), 2);
    }
}
