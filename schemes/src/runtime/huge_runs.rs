//! Which regions a huge-page action (`split`, `collapse`) matches, and how far each region's
//! walk reaches: the action works on whole 2 MiB blocks, and what says a block is idle (or
//! hot) is every region over it, not one region holding all of it.
//!
//! Why: DAMON's regions know nothing of huge pages. Their bounds fall anywhere
//! (`damon_split_regions_of()` splits at random points, mm/damon/core.c 6.12), and a merge
//! stops at `damon_region_sz_limit()` — the total monitored size over `min_nr_regions`
//! (`engine::monitor::core::region_sz_limit`). Once the regions reach that limit their
//! bounds stop moving: a region's two halves merge back, and it cannot take a piece of its
//! neighbour. Measured in the lab (`lab_thp_give_back`, kernel DAMON, `policies/thp.ron`:
//! `min_regions: 100`; docs/performance.md "THP tuning per workload"):
//! - a 2 MiB block straddling two idle regions was in neither region's whole blocks
//!   (`align_up(start)..align_down(end)`), so it was never split: with ~2.8 MiB regions over
//!   the 32 MiB sparse mapping, 8 of its 16 huge pages for the 90 s of the run;
//! - the total is the target's address space as vaddr monitors it (the gap between the
//!   binary and the heap included), which ASLR sets: 290 to 1070 MiB over five runs, a limit
//!   of 2.9 to 10.7 MiB. Below 200 MiB no region reaches `size: (min: "2 MiB")`, and
//!   nothing matched the give-back for the whole run.
//!
//! madvd's rule for these actions: adjacent regions that all have the pattern's access
//! frequency and age form a *run*; a region matches when its access frequency and age do
//! and its own size or its run's size is in the pattern's size range; and a region's walk
//! reaches past its end to the end of the block it straddles when that block lies wholly in
//! its run. Each block is walked once, with the region that holds its first byte (and that
//! region's score). Every other action matches regions one by one, as the kernel does.

use super::walk::HPAGE_SIZE;
use crate::pattern::Resolved;
use engine::kernel::host::{align_down, align_up};
use engine::Region;

/// One target's regions as a huge-page action sees them.
#[derive(Debug)]
pub(super) struct HugeRuns {
    /// Per region: the end of its run when the region matches, else `None`.
    run_end: Vec<Option<u64>>,
}

impl HugeRuns {
    pub fn new(regions: &[Region], pat: &Resolved) -> Self {
        let n = regions.len();
        let mut run_end = vec![None; n];
        let mut i = 0;
        while i < n {
            if !pat.matches_access(&regions[i]) {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < n
                && regions[j].start() == regions[j - 1].end()
                && pat.matches_access(&regions[j])
            {
                j += 1;
            }
            let end = regions[j - 1].end();
            let run_fits = pat.matches_size(end - regions[i].start());
            for (k, r) in regions.iter().enumerate().take(j).skip(i) {
                if run_fits || pat.matches_size(r.size()) {
                    run_end[k] = Some(end);
                }
            }
            i = j;
        }
        Self { run_end }
    }

    /// Whether region number `i` matches.
    pub fn matches(&self, i: usize) -> bool {
        self.run_end.get(i).is_some_and(Option::is_some)
    }

    /// Where the walk of region number `i` (`r`) ends: the end of the 2 MiB block it
    /// straddles when that block lies wholly in its run, else its own end.
    pub fn walk_end(&self, i: usize, r: &Region) -> u64 {
        match self.run_end.get(i).copied().flatten() {
            Some(run_end) => {
                let block_end = align_up(r.end(), HPAGE_SIZE);
                r.end().max(block_end.min(align_down(run_end, HPAGE_SIZE)))
            }
            None => r.end(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u64 = 1 << 20;

    fn region(start: u64, end: u64, nr: u32, age: u32) -> Region {
        let mut r = Region::new(start, end);
        r.nr_accesses = nr;
        r.nr_accesses_bp = nr * 10_000;
        r.age = age;
        r
    }

    /// Idle for 3 aggregations or more, at least 2 MiB.
    fn give_back() -> Resolved {
        Resolved {
            min_sz: 2 * M,
            max_sz: u64::MAX,
            min_nr_accesses: 0,
            max_nr_accesses: 0,
            min_age: 3,
            max_age: u32::MAX,
        }
    }

    #[test]
    fn regions_below_the_size_match_as_a_run() {
        // 1.5 MiB regions, idle and old: none is 2 MiB, their run is 4.5 MiB.
        let regs = [
            region(M, 5 * M / 2, 0, 5),
            region(5 * M / 2, 4 * M, 0, 9),
            region(4 * M, 11 * M / 2, 0, 3),
        ];
        let pat = give_back();
        assert!(regs.iter().all(|r| !pat.matches(r)), "the kernel's rule");
        let runs = HugeRuns::new(&regs, &pat);
        assert!((0..3).all(|i| runs.matches(i)));
        // The block 2..4 MiB straddles the first two: walked with the first.
        assert_eq!(runs.walk_end(0, &regs[0]), 4 * M);
        // 4..6 MiB reaches past the run's end (5.5 MiB): not the second's.
        assert_eq!(runs.walk_end(1, &regs[1]), 4 * M);
        assert_eq!(runs.walk_end(2, &regs[2]), 11 * M / 2);
    }

    #[test]
    fn a_region_that_fails_the_access_pattern_breaks_the_run() {
        let regs = [
            region(M, 3 * M, 0, 5),
            region(3 * M, 5 * M, 1, 5), // accessed
            region(5 * M, 7 * M, 0, 1), // too young
            region(7 * M, 9 * M, 0, 5),
            region(10 * M, 12 * M, 0, 5), // not adjacent
        ];
        let runs = HugeRuns::new(&regs, &give_back());
        let m: Vec<bool> = (0..5).map(|i| runs.matches(i)).collect();
        assert_eq!(m, [true, false, false, true, true]);
        // Block 2..4 MiB is half accessed: not reached.
        assert_eq!(runs.walk_end(0, &regs[0]), 3 * M);
        assert_eq!(runs.walk_end(2, &regs[2]), 7 * M);
        assert_eq!(runs.walk_end(3, &regs[3]), 9 * M);
    }

    #[test]
    fn the_size_range_takes_the_region_or_its_run() {
        // At most 3 MiB: a 2 MiB region of a longer run still matches by its own size.
        let pat = Resolved {
            min_sz: 0,
            max_sz: 3 * M,
            min_age: 0,
            ..give_back()
        };
        let regs = [region(0, 2 * M, 0, 1), region(2 * M, 6 * M, 0, 1)];
        let runs = HugeRuns::new(&regs, &pat);
        assert_eq!((runs.matches(0), runs.matches(1)), (true, false));
    }
}
