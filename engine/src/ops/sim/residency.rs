//! The pages of a simulated space that are not resident: a set of page ranges.

use super::pattern::PAGE;
use crate::region::AddrRange;

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
