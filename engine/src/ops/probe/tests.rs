use super::*;
use crate::kernel::madvise::IOV_MAX;
use crate::kernel::pagemap::{PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SWAP};

const P: u64 = 4096;

fn r(a: u64, b: u64) -> AddrRange {
    AddrRange::new(a * P, b * P)
}

#[test]
fn pick_page_keeps_a_probeable_address() {
    let prob = [r(10, 20), r(30, 40)];
    assert_eq!(
        pick_page(&prob, r(0, 100), 12 * P + 5, P),
        Some((12 * P, 20 * P))
    );
    assert_eq!(
        pick_page(&prob, r(35, 100), 36 * P, P),
        Some((36 * P, 40 * P))
    );
}

#[test]
fn pick_page_maps_other_addresses_proportionally_into_probeable_parts() {
    let prob = [r(10, 20), r(30, 40)];
    // Region 0..100 has 20 probe-able pages; address at page 0 → first, page 99 → last part.
    assert_eq!(pick_page(&prob, r(0, 100), 0, P), Some((10 * P, 20 * P)));
    let (p, lim) = pick_page(&prob, r(0, 100), 99 * P, P).unwrap();
    assert!((30 * P..40 * P).contains(&p) && lim == 40 * P, "{p:#x}");
    // Halfway → the start of the second part.
    assert_eq!(
        pick_page(&prob, r(0, 100), 50 * P, P),
        Some((30 * P, 40 * P))
    );
    // Every choice lies inside region ∩ probeable.
    for a in 0..100 {
        let (p, _) = pick_page(&prob, r(15, 35), a * P, P).unwrap();
        assert!(
            (15 * P..20 * P).contains(&p) || (30 * P..35 * P).contains(&p),
            "{a}: {p:#x}"
        );
    }
}

#[test]
fn pick_page_without_probeable_memory_is_none() {
    assert_eq!(pick_page(&[r(10, 20)], r(20, 30), 25 * P, P), None);
    assert_eq!(pick_page(&[], r(0, 30), 5 * P, P), None);
    // A probe-able range smaller than a page after alignment.
    assert_eq!(
        pick_page(
            &[AddrRange::new(10 * P + 1, 11 * P - 1)],
            r(0, 30),
            5 * P,
            P
        ),
        None
    );
}

#[test]
fn classify_follows_pagemap_bits() {
    assert_eq!(classify(Some(PagemapEntry(PM_PRESENT))), Access::Accessed);
    assert_eq!(
        classify(Some(PagemapEntry(PM_SWAP | (3 << 5)))),
        Access::NotAccessed
    );
    assert_eq!(classify(Some(PagemapEntry(0))), Access::Unknown);
    // A migration entry (type 25 on x86-64 6.12): the page came back and is moving.
    assert_eq!(
        classify(Some(PagemapEntry(PM_SWAP | 25 | (9 << 5)))),
        Access::Unknown
    );
    assert_eq!(classify(None), Access::Unknown);
}

#[test]
fn only_present_exclusive_anonymous_pages_are_samples() {
    assert!(resident_exclusive(PagemapEntry(
        PM_PRESENT | PM_MMAP_EXCLUSIVE
    )));
    assert!(!resident_exclusive(PagemapEntry(PM_PRESENT))); // shared with another process
    assert!(!resident_exclusive(PagemapEntry(
        PM_PRESENT | PM_MMAP_EXCLUSIVE | PM_FILE
    )));
    assert!(!resident_exclusive(PagemapEntry(PM_SWAP)));
    assert!(!resident_exclusive(PagemapEntry(0)));
}

#[test]
fn pageout_batches_by_iov_max_and_skips_a_failing_iovec() {
    let pages: Vec<u64> = (0..2500).map(|i| i * 2 * P).collect();
    let bad = [5 * 2 * P, 1024 * 2 * P, 2499 * 2 * P];
    let mut sizes = Vec::new();
    let (ok, calls) = pageout_batched(&pages, P, |iov| {
        sizes.push(iov.len());
        assert!(iov.iter().all(|r| r.len() == P));
        match iov.iter().position(|r| bad.contains(&r.start)) {
            Some(0) => Err(Errno::ENOMEM),
            Some(k) => Ok(k as u64 * P),
            None => Ok(iov.len() as u64 * P),
        }
    })
    .unwrap();
    assert!(sizes.iter().all(|&n| n <= IOV_MAX));
    assert_eq!(sizes[0], IOV_MAX);
    assert_eq!(ok.iter().filter(|o| !**o).count(), 3);
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(ok[i], !bad.contains(p), "page {i}");
    }
    assert_eq!(calls, sizes.len() as u64);
}

#[test]
fn pageout_stops_on_esrch_and_eperm() {
    assert_eq!(
        pageout_batched(&[0, P], P, |_| Err(Errno::ESRCH)).unwrap_err(),
        Errno::ESRCH
    );
    assert_eq!(
        pageout_batched(&[0], P, |_| Err(Errno::EPERM)).unwrap_err(),
        Errno::EPERM
    );
    assert_eq!(
        pageout_batched(&[], P, |_| unreachable!()).unwrap(),
        (vec![], 0)
    );
}

fn smaps_vma(line: &str, ahp: u64, flags: &[&str]) -> SmapsVma {
    let vma = crate::kernel::maps::parse_line(line, std::path::Path::new("t"), 1).unwrap();
    SmapsVma {
        vma,
        size: 0,
        rss: 0,
        pss: 0,
        referenced: 0,
        anonymous: 0,
        anon_huge_pages: ahp,
        swap: 0,
        locked: 0,
        vm_flags: flags.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn probeable_vmas_are_private_anonymous_unlocked_not_huge() {
    let anon = "1000-9000 rw-p 00000000 00:00 0";
    assert!(vma_probeable(
        &smaps_vma(anon, 0, &["rd", "wr"]),
        ThpMode::Madvise
    ));
    assert!(vma_probeable(
        &smaps_vma("1000-9000 rw-p 00000000 00:00 0   [heap]", 0, &[]),
        ThpMode::Never
    ));
    assert!(!vma_probeable(
        &smaps_vma(anon, 2 << 20, &[]),
        ThpMode::Always
    ));
    assert!(!vma_probeable(
        &smaps_vma(anon, 0, &["hg"]),
        ThpMode::Madvise
    ));
    assert!(vma_probeable(&smaps_vma(anon, 0, &["nh"]), ThpMode::Always));
    assert!(!vma_probeable(&smaps_vma(anon, 0, &["lo"]), ThpMode::Never));
    assert!(!vma_probeable(
        &smaps_vma(
            "1000-9000 rw-s 00000000 00:01 7   /dev/zero (deleted)",
            0,
            &[]
        ),
        ThpMode::Never
    ));
    assert!(!vma_probeable(
        &smaps_vma("1000-9000 rw-p 00000000 fe:00 12   /usr/lib/x.so", 0, &[]),
        ThpMode::Never
    ));
}

#[test]
fn budget_starved_needs_many_samples_and_a_large_share_left_out() {
    let s = |wanted, over| ProbeStats {
        wanted_pageout: wanted,
        over_budget: over,
        ..ProbeStats::default()
    };
    // Too few samples to judge, however many were left out.
    assert!(!budget_starved(&s(999, 999)));
    // 30% left out is starved; just under is not.
    assert!(budget_starved(&s(1000, 300)));
    assert!(!budget_starved(&s(1000, 299)));
    assert!(!budget_starved(&s(100_000, 0)));
}

#[test]
fn leave_out_cuts_absent_samples_at_the_budgets_rate() {
    let mut rng = 0x9e37_79b9_7f4a_7c15;
    // Within the budget: nothing left out.
    let mut chosen: Vec<(u64, usize)> = (0..10).map(|i| (i * P, i as usize)).collect();
    let mut absent: Vec<usize> = (10..50).collect();
    assert_eq!(
        leave_out(&mut chosen, &mut absent, 10, &mut rng),
        (0, vec![])
    );
    assert_eq!((chosen.len(), absent.len()), (10, 40));

    // 20 need a page-out, 8 fit: 12 of 20 left out, and 60% of the 80 absent (48).
    let mut hits = [0u32; 100];
    for _ in 0..2000 {
        let mut chosen: Vec<(u64, usize)> = (0..20).map(|i| (i * P, i as usize)).collect();
        let mut absent: Vec<usize> = (20..100).collect();
        let (drop, out) = leave_out(&mut chosen, &mut absent, 8, &mut rng);
        assert_eq!((drop, out.len()), (12, 48));
        assert_eq!((chosen.len(), absent.len()), (8, 32));
        let mut all: Vec<usize> = chosen
            .iter()
            .map(|c| c.1)
            .chain(absent.iter().copied())
            .collect();
        all.extend(&out);
        all.sort_unstable();
        assert_eq!(
            all.len(),
            88,
            "a kept sample is also left out, or one is lost"
        );
        all.dedup();
        assert_eq!(all.len(), 88);
        for i in chosen.iter().map(|c| c.1).chain(absent.iter().copied()) {
            hits[i] += 1;
        }
    }
    // Every sample, resident or absent, is kept with probability 0.4 (800 of 2000 draws;
    // binomial sd ~22, so ±110 is 5 sd).
    for (i, &h) in hits.iter().enumerate() {
        assert!(
            (690..=910).contains(&h),
            "sample {i} kept {h} times of 2000"
        );
    }
}
