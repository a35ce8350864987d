//! `Schemes::plan` / `account` behaviour: apply intervals, quotas and their windows, the
//! resume point, stats, watermarks, filters.

mod common;
use common::*;
use engine::{AddrRange, Advice, ApplyReport, RangeOutcome, TargetId};
use schemes::{FakeMetrics, PageInfo, Schemes};
use std::collections::HashMap;

fn schemes(p: &schemes::Policy) -> (Schemes, FakeMetrics) {
    let env = FakeMetrics::new();
    env.set_free_permille(300);
    env.set_psi_total_us(None, 0);
    (Schemes::new(p, Box::new(env.clone())).unwrap(), env)
}

/// Report `req` back to `s` with nothing applied and all of `left` (kind, bytes) left out,
/// after `elapsed_ns` of actuation.
fn account_nothing_applied(
    s: &mut Schemes,
    req: &engine::AdviceRequest,
    left: (engine::ApplyErrorKind, u64),
    elapsed_ns: u64,
    now_us: u64,
) {
    let mut out = RangeOutcome::of(req, 0, elapsed_ns);
    out.errors = vec![left];
    s.account(
        &ApplyReport {
            outcomes: vec![out],
            ..ApplyReport::default()
        },
        now_us,
    );
}

/// `n` idle regions of `pages` pages each, starting at 1 MiB.
fn idle(n: u64, pages: u64) -> Vec<engine::Region> {
    (0..n)
        .map(|i| region((1 << 20) + i * pages * PAGE, pages * PAGE, 0, 100))
        .collect()
}

fn bytes(reqs: &[engine::AdviceRequest]) -> u64 {
    reqs.iter().map(|r| r.range.len()).sum()
}

#[test]
fn applies_at_the_apply_interval() {
    let p = one_scheme("pattern: (), action: pageout, apply_interval: \"1 s\"");
    let (mut s, _) = schemes(&p);
    assert_eq!(s.next_apply_due_us(), Some(1_000_000));
    let mut applied_at = vec![];
    for k in 1..=25u64 {
        let now = k * 100_000;
        let snap = snapshot(now, vec![(1, idle(2, 1))]);
        if !s.plan(&snap, now).is_empty() {
            applied_at.push(now);
        }
    }
    assert_eq!(applied_at, vec![1_000_000, 2_000_000]);
    assert_eq!(s.next_apply_due_us(), Some(3_000_000));
}

#[test]
fn without_apply_interval_every_aggregation() {
    let p = one_scheme("pattern: (), action: cold");
    let (mut s, _) = schemes(&p);
    for k in 1..=3u64 {
        let reqs = s.plan(&snapshot(k * 100_000, vec![(1, idle(2, 1))]), k * 100_000);
        assert_eq!(reqs.len(), 2);
        assert!(reqs
            .iter()
            .all(|r| r.advice == Advice::Cold && r.scheme == 0 && r.target == TargetId(1)));
    }
    assert_eq!(s.stats()[0].nr_tried, 6);
}

#[test]
fn size_quota_per_window_resumes_where_it_stopped() {
    // 10 regions of 2 pages; 3 pages per 1 s window; apply every 100 ms.
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (size: \"12 KiB\", reset_interval: \"1 s\")",
    );
    let (mut s, _) = schemes(&p);
    let regions = idle(10, 2);
    let base = 1u64 << 20;
    let mut per_window: Vec<Vec<AddrRange>> = vec![];
    for k in 1..=30u64 {
        let now = k * 100_000;
        let reqs = s.plan(&snapshot(now, vec![(1, regions.clone())]), now);
        if (k - 1) % 10 == 0 {
            per_window.push(vec![]);
        }
        per_window
            .last_mut()
            .unwrap()
            .extend(reqs.iter().map(|r| r.range));
    }
    let pg = |a: u64, b: u64| AddrRange::new(base + a * PAGE, base + b * PAGE);
    // Window 1: region 0 (pages 0-1) and one page of region 1, split to fit the quota.
    assert_eq!(per_window[0], vec![pg(0, 2), pg(2, 3)]);
    // Window 2 resumes after the charged page: the kernel remembers `end + 1`, so the region
    // [2, 4) is split one page further (damos_skip_charged_region(), core.c 6.12).
    assert_eq!(per_window[1], vec![pg(3, 4), pg(4, 6)]);
    assert_eq!(per_window[2], vec![pg(7, 8), pg(8, 10)]);
    let st = &s.stats()[0];
    assert_eq!(st.effective_quota, 12 << 10);
    // The first two windows ended exhausted (counted when the next window starts).
    assert_eq!(st.qt_exceeds, 2);
    assert_eq!(st.sz_tried, 9 * PAGE);
}

#[test]
fn time_quota_follows_measured_throughput() {
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (time: \"1 ms\", reset_interval: \"100 ms\")",
    );
    let (mut s, _) = schemes(&p);
    let regions = idle(64, 256); // 64 MiB
    let reqs = s.plan(&snapshot(100_000, vec![(1, regions.clone())]), 100_000);
    // No history: PAGE_SIZE * 1024 bytes per ms.
    assert_eq!(bytes(&reqs), 4 << 20);
    // Report 4 MiB applied in 8 ms: 512 KiB per ms.
    let report = ApplyReport {
        outcomes: reqs
            .iter()
            .map(|r| RangeOutcome::of(r, r.range.len(), 8_000_000 / reqs.len() as u64))
            .collect(),
        ..ApplyReport::default()
    };
    s.account(&report, 100_000);
    let st = &s.stats()[0];
    assert_eq!((st.nr_applied, st.sz_applied), (reqs.len() as u64, 4 << 20));
    let reqs = s.plan(&snapshot(200_000, vec![(1, regions)]), 200_000);
    assert_eq!(bytes(&reqs), 512 << 10);
}

#[test]
fn stat_counts_without_advice() {
    let p = one_scheme("pattern: (accesses: (max: 0)), action: stat");
    let (mut s, _) = schemes(&p);
    let mut regions = idle(4, 1);
    regions.push(region(64 << 20, PAGE, 5, 1));
    assert!(s
        .plan(&snapshot(100_000, vec![(1, regions)]), 100_000)
        .is_empty());
    let st = &s.stats()[0];
    assert_eq!((st.nr_tried, st.sz_tried, st.nr_applied), (4, 4 * PAGE, 0));
    assert_eq!(st.action, "stat");
}

#[test]
fn watermarks_hold_the_scheme_and_say_why() {
    let p = one_scheme(
        "pattern: (), action: pageout, watermarks: (interval: \"5 s\", high: 500, mid: 400, low: 200)",
    );
    let (mut s, env) = schemes(&p);
    env.set_free_permille(600);
    let snap = |t| snapshot(t, vec![(1, idle(1, 1))]);
    assert!(s.plan(&snap(100_000), 100_000).is_empty());
    let st = &s.stats()[0];
    assert!(!st.active);
    assert_eq!(
        st.inactive_reason.as_deref(),
        Some("free memory 60.0% is above the high watermark 50.0%")
    );
    assert!(s.all_inactive());
    assert_eq!(s.next_wmark_check_us(), Some(5_100_000));
    // Free memory drops into the band: still waiting (and not even rechecked before 5.1 s).
    env.set_free_permille(450);
    assert!(s.plan(&snap(5_100_000), 5_100_000).is_empty());
    assert!(s.stats()[0]
        .inactive_reason
        .as_deref()
        .unwrap()
        .contains("has not fallen below the mid watermark"));
    // Below mid: active.
    env.set_free_permille(350);
    assert!(s.plan(&snap(10_100_000), 10_100_000).len() == 1);
    assert!(s.stats()[0].active && s.stats()[0].inactive_reason.is_none());
    // Back in the band while active: stays active (hysteresis).
    env.set_free_permille(450);
    assert_eq!(s.plan(&snap(10_200_000), 10_200_000).len(), 1);
    // Below low: off.
    env.set_free_permille(100);
    assert!(s.plan(&snap(10_300_000), 10_300_000).is_empty());
    assert!(s.stats()[0]
        .inactive_reason
        .as_deref()
        .unwrap()
        .contains("below the low watermark"));
}

#[test]
fn region_filters_in_plan() {
    // Reject the range [1 MiB + 1 page, 1 MiB + 3 pages); only target 1 and 2 allowed below.
    let p = one_scheme(
        "pattern: (), action: pageout, filters: [
            (kind: addr(start: 0x101000, end: 0x103000), allow: false),
            (kind: target(2), matching: false, allow: false),
        ]",
    );
    let (mut s, _) = schemes(&p);
    let reqs = s.plan(
        &snapshot(100_000, vec![(1, idle(1, 4)), (2, idle(1, 4))]),
        100_000,
    );
    let got: Vec<(u32, AddrRange)> = reqs.iter().map(|r| (r.target.0, r.range)).collect();
    let b = 1u64 << 20;
    // Target 1 is rejected by the second filter (not target 2 -> reject); target 2 keeps the
    // parts outside the address range.
    assert_eq!(
        got,
        vec![
            (2, AddrRange::new(b, b + PAGE)),
            (2, AddrRange::new(b + 3 * PAGE, b + 4 * PAGE))
        ]
    );
    // Filtered-out parts are not counted as tried (core filters, core.c 6.12).
    assert_eq!(s.stats()[0].sz_tried, 2 * PAGE);
}

#[test]
fn cgroup_filter_uses_the_drivers_map() {
    let p =
        one_scheme("pattern: (), action: cold, filters: [(kind: cgroup(\"/batch\"), allow: true)]");
    let (mut s, _) = schemes(&p);
    s.set_target_cgroups(HashMap::from([
        (TargetId(1), vec!["/".to_string(), "/batch/job".to_string()]),
        (TargetId(2), vec!["/web".to_string()]),
    ]));
    let reqs = s.plan(
        &snapshot(
            100_000,
            vec![(1, idle(1, 1)), (2, idle(1, 1)), (3, idle(1, 1))],
        ),
        100_000,
    );
    assert_eq!(reqs.iter().map(|r| r.target.0).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn cgroup_filter_reads_target_cgroups_from_the_source() {
    // A reject filter: targets in /batch are left alone. Target 3's cgroups are unknown: it
    // is skipped rather than advised against the policy's intent.
    let p = one_scheme(
        "pattern: (), action: cold, filters: [(kind: cgroup(\"/batch\"), allow: false)]",
    );
    let (mut s, env) = schemes(&p);
    env.set_target_cgroups(TargetId(1), &["/", "/batch/job"]);
    env.set_target_cgroups(TargetId(2), &["/web"]);
    let snap = |t| snapshot(t, vec![(1, idle(1, 1)), (2, idle(1, 1)), (3, idle(1, 1))]);
    let reqs = s.plan(&snap(100_000), 100_000);
    assert_eq!(reqs.iter().map(|r| r.target.0).collect::<Vec<_>>(), vec![2]);
    // Cached: a change shows only after the refresh interval.
    env.set_target_cgroups(TargetId(2), &["/batch/moved"]);
    assert_eq!(s.plan(&snap(200_000), 200_000).len(), 1);
    let later = 200_000 + schemes::CGROUP_REFRESH_US;
    assert!(s.plan(&snap(later), later).is_empty());
}

#[test]
fn page_filters_are_handed_to_the_driver() {
    let p = one_scheme(
        "pattern: (), action: pageout, filters: [(kind: anon, matching: false, allow: false)]",
    );
    let (mut s, _) = schemes(&p);
    let pf = s.page_filter(0).expect("page filter").clone();
    // "not anon -> reject": file pages are not paged out.
    assert!(!pf.admits(&PageInfo {
        anon: Some(false),
        young: None
    }));
    assert!(pf.admits(&PageInfo {
        anon: Some(true),
        young: None
    }));
    // Until the driver says it evaluates page filters, the scheme does nothing.
    assert!(s
        .plan(&snapshot(100_000, vec![(1, idle(1, 1))]), 100_000)
        .is_empty());
    let st = &s.stats()[0];
    assert!(!st.active);
    assert!(st
        .inactive_reason
        .as_deref()
        .unwrap()
        .contains("enable_page_filters"));
    s.enable_page_filters();
    // The region layer passes everything (ops filters exist).
    assert_eq!(
        s.plan(&snapshot(200_000, vec![(1, idle(1, 1))]), 200_000)
            .len(),
        1
    );
    assert!(s.stats()[0].active);
}

#[test]
fn collapse_requests_are_huge_page_aligned() {
    let p = one_scheme("pattern: (), action: collapse");
    let (mut s, _) = schemes(&p);
    let regions = vec![
        region(0x20_1000, 6 << 20, 20, 5),
        region(0x90_0000, 1 << 20, 20, 5),
    ];
    let reqs = s.plan(&snapshot(100_000, vec![(1, regions)]), 100_000);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range, AddrRange::new(0x40_0000, 0x80_0000));
    assert_eq!(reqs[0].advice, Advice::Collapse);
}

/// `split` asks for the whole 2 MiB-aligned blocks of a region (the actuator splits those it
/// reads as huge pages: `engine::actuator::huge`), nothing of a region without a whole one;
/// charged whole.
#[test]
fn split_requests_whole_huge_page_blocks() {
    let p = one_scheme("pattern: (), action: split");
    let (mut s, _) = schemes(&p);
    let regions = vec![
        region(0x20_1000, 6 << 20, 0, 5),
        region(0x90_0000, 1 << 20, 0, 5),
    ];
    let reqs = s.plan(&snapshot(100_000, vec![(1, regions)]), 100_000);
    let got: Vec<_> = reqs.iter().map(|r| (r.range, r.advice)).collect();
    assert_eq!(got, [(AddrRange::new(0x40_0000, 0x80_0000), Advice::Split)]);
    assert_eq!(s.stats()[0].sz_tried, 4 << 20);
}

/// A range where the actuator found no huge page to split does not keep the head of the
/// age-ordered queue: it is refunded, skipped by the next walks as filtered (not charged,
/// counted in `sz_not_huge`) and left out of the priority histogram, so the quota reaches the
/// younger regions that hold huge pages; a sample that sees it accessed (it may have huge
/// pages again) makes it a candidate again. `pageout` is not affected (small pages may be
/// resident).
#[test]
fn ranges_without_a_huge_page_are_skipped_by_split_until_seen_accessed() {
    use engine::ApplyErrorKind;
    const M: u64 = 2 << 20;
    let p = one_scheme(
        "pattern: (), action: split, quota: (time: \"10 ms\", size: \"4 MiB\", \
         reset_interval: \"1 s\", weights: (size: 0, accesses: 0, age: 1))",
    );
    let (mut s, _) = schemes(&p);
    let blocks = |a: u64, b: u64| AddrRange::new(a * M, b * M);
    // Blocks 8..10: the oldest region, small pages only; 10..12 and 12..14 younger, huge.
    let regions = |acc: u32| {
        vec![
            region(8 * M, 2 * M, acc, 500),
            region(10 * M, 2 * M, 0, 100),
            region(12 * M, 2 * M, 0, 100),
        ]
    };
    let plan = |s: &mut Schemes, t: u64, acc: u32| s.plan(&snapshot(t, vec![(1, regions(acc))]), t);
    let reqs = plan(&mut s, 100_000, 0);
    assert_eq!(
        reqs.iter().map(|r| r.range).collect::<Vec<_>>(),
        [blocks(8, 10)]
    );
    account_nothing_applied(
        &mut s,
        &reqs[0],
        (ApplyErrorKind::NotHuge, 2 * M),
        5_000_000,
        100_000,
    );
    assert_eq!(s.stats()[0].sz_not_huge, 2 * M);
    // The next windows go on behind it (the resume point first passes it), then a whole
    // walk skips it and reaches the younger huge pages; the quota was not cut by the 5 ms
    // spent finding nothing to split.
    let ranges = |r: Vec<engine::AdviceRequest>| r.iter().map(|r| r.range).collect::<Vec<_>>();
    let mib = |a: u64, b: u64| AddrRange::new(a << 20, b << 20);
    // (The walk resumes one page past the last charge, which `split` aligns up to the next
    // block: 22 MiB.)
    assert_eq!(
        ranges(plan(&mut s, 1_200_000, 0)),
        [mib(22, 24), mib(24, 26)]
    );
    assert_eq!(s.stats()[0].effective_quota, 2 * M);
    assert_eq!(
        ranges(plan(&mut s, 2_300_000, 0)),
        [],
        "past the last region"
    );
    // A whole walk: the oldest region is skipped as known without a huge page, the quota
    // goes on behind it.
    assert_eq!(ranges(plan(&mut s, 3_400_000, 0)), [blocks(10, 12)]);
    assert_eq!(s.stats()[0].sz_not_huge, 4 * M, "cut once, skipped once");
    // Seen accessed (it may hold huge pages again): asked for again once idle.
    assert_eq!(
        ranges(plan(&mut s, 4_500_000, 3)),
        [],
        "resumes past it again"
    );
    assert_eq!(ranges(plan(&mut s, 5_600_000, 0)), [blocks(8, 10)]);
}

/// A range `collapse` found huge already is refunded and skipped by the next walks as
/// filtered (counted in `sz_already_huge`), though it is still accessed (an access does not
/// split a huge page): the quota goes to the hot blocks not yet collapsed. It is asked for
/// again once the known set's TTL has passed (a huge page may have been split since).
#[test]
fn ranges_huge_already_are_skipped_by_collapse_though_accessed() {
    use engine::ApplyErrorKind;
    const M: u64 = 2 << 20;
    let p = one_scheme(
        "pattern: (accesses: (min: 1)), action: collapse, quota: (time: \"10 ms\", \
         size: \"4 MiB\", reset_interval: \"1 s\", weights: (size: 0, accesses: 1, age: 0))",
    );
    let (mut s, _) = schemes(&p);
    let blocks = |a: u64, b: u64| AddrRange::new(a * M, b * M);
    // (M is 2 MiB: `blocks(8, 10)` is 16..20 MiB.) Blocks 8..10: the hottest, collapsed
    // already; 10..12 hot too, not yet.
    let regions = vec![region(8 * M, 2 * M, 20, 5), region(10 * M, 2 * M, 10, 5)];
    let plan = |s: &mut Schemes, t: u64| s.plan(&snapshot(t, vec![(1, regions.clone())]), t);
    let ranges = |r: Vec<engine::AdviceRequest>| r.iter().map(|r| r.range).collect::<Vec<_>>();
    let reqs = plan(&mut s, 100_000);
    assert_eq!(ranges(reqs.clone()), [blocks(8, 10)]);
    account_nothing_applied(
        &mut s,
        &reqs[0],
        (ApplyErrorKind::AlreadyHuge, 2 * M),
        1_000_000,
        100_000,
    );
    assert_eq!(s.stats()[0].sz_already_huge, 2 * M);
    assert_eq!(s.stats()[0].sz_applied, 0);
    // The next windows (the first resumes past it, the second walks whole): the hottest block
    // is skipped (accessed, but known huge), the quota reaches the next.
    let next: Vec<_> = [1_200_000, 2_300_000]
        .into_iter()
        .flat_map(|t| ranges(plan(&mut s, t)))
        .collect();
    assert_eq!(next, [blocks(10, 12)]);
    assert_eq!(
        s.stats()[0].sz_already_huge,
        4 * M,
        "cut once, skipped once"
    );
    // Past the TTL: asked for again.
    let t = 100_000 + schemes::KNOWN_OUT_TTL_US + 1_000_000;
    let again: Vec<_> = [t, t + 1_100_000]
        .into_iter()
        .flat_map(|t| ranges(plan(&mut s, t)))
        .collect();
    assert!(again.contains(&blocks(8, 10)), "{again:?}");
}

#[test]
fn user_input_goal_steers_the_quota() {
    let p = one_scheme("pattern: (), action: pageout, quota: (reset_interval: \"100 ms\", goals: [(metric: user_input, target: 100, current: 0)])");
    let (mut s, _) = schemes(&p);
    let regions = idle(8, 1);
    for k in 1..=20u64 {
        s.plan(
            &snapshot(k * 100_000, vec![(1, regions.clone())]),
            k * 100_000,
        );
    }
    let grown = s.stats()[0].effective_quota;
    assert!(grown >= 1 << 20, "quota grew to {grown}");
    s.set_user_input(0, 0, 300).unwrap(); // 3x the target: shrink to the minimum
    s.plan(&snapshot(2_100_000, vec![(1, regions.clone())]), 2_100_000);
    assert_eq!(s.stats()[0].effective_quota, 1);
    assert!(s.set_user_input(0, 1, 1).is_err());
    assert!(s.set_user_input(5, 0, 1).is_err());
}

#[test]
fn stats_serialize() {
    let p = one_scheme("pattern: (), action: stat");
    let (s, _) = schemes(&p);
    let v = serde_json_like(&s.stats()[0]);
    assert!(
        v.contains("nr_tried") && v.contains("qt_exceeds") && v.contains("inactive_reason"),
        "{v}"
    );
}

fn serde_json_like<T: serde::Serialize>(v: &T) -> String {
    ron::to_string(v).unwrap()
}

/// `reclaim_cgroup` (physical memory) advises nothing: the plan walk selects its ranges under
/// the quota like any action's, and hands them over through `take_selected`; the driver's
/// charge is accounted like an apply report's.
#[test]
fn reclaim_cgroup_selects_ranges_under_the_quota() {
    let p = one_scheme(
        "pattern: (), action: reclaim_cgroup, quota: (size: \"12 KiB\", reset_interval: \"1 s\")",
    );
    let (mut s, _) = schemes(&p);
    let snap = snapshot(100_000, vec![(0, idle(10, 2))]);
    assert!(s.plan(&snap, 100_000).is_empty());
    let sel = s.take_selected();
    let base = 1u64 << 20;
    assert_eq!(
        sel.iter().map(|x| (x.scheme, x.range)).collect::<Vec<_>>(),
        vec![
            (0, AddrRange::new(base, base + 2 * PAGE)),
            (0, AddrRange::new(base + 2 * PAGE, base + 3 * PAGE)),
        ]
    );
    assert!(s.take_selected().is_empty(), "taken once");
    s.charge(0, 1_000, 3 * PAGE);
    let st = &s.stats()[0];
    assert_eq!(
        (
            st.action.as_str(),
            st.sz_tried,
            st.sz_applied,
            st.nr_applied
        ),
        ("reclaim_cgroup", 3 * PAGE, 3 * PAGE, 1)
    );
}

/// madvd's residency cut: bytes the actuator reports not resident are refunded to the size
/// quota of the window, so the next plan in the window goes on to other memory; bytes held
/// back by the pace are refunded too and planned again (the walk rewinds to them). Stats
/// carry advised-resident and not-resident bytes.
#[test]
fn not_resident_and_paced_bytes_are_refunded() {
    use engine::ApplyErrorKind;
    // 10 regions of 2 pages; 4 pages per 1 s window; apply every 100 ms.
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (size: \"16 KiB\", reset_interval: \"1 s\")",
    );
    let (mut s, _) = schemes(&p);
    let regions = idle(10, 2);
    let base = 1u64 << 20;
    let pg = |a: u64, b: u64| AddrRange::new(base + a * PAGE, base + b * PAGE);
    let reqs = s.plan(&snapshot(100_000, vec![(1, regions.clone())]), 100_000);
    assert_eq!(
        reqs.iter().map(|r| r.range).collect::<Vec<_>>(),
        [pg(0, 2), pg(2, 4)]
    );
    // The first region was already out; the second was advised.
    let mut out = RangeOutcome::of(&reqs[0], 0, 1000);
    out.errors = vec![(ApplyErrorKind::NotResident, 2 * PAGE)];
    let mut done = RangeOutcome::of(&reqs[1], 2 * PAGE, 1000);
    done.bytes_resident = 2 * PAGE;
    s.account(
        &ApplyReport {
            outcomes: vec![out, done],
            ..ApplyReport::default()
        },
        100_000,
    );
    let st = &s.stats()[0];
    assert_eq!(
        (st.sz_applied, st.sz_resident, st.sz_not_resident),
        (2 * PAGE, 2 * PAGE, 2 * PAGE)
    );
    // Same window: the refunded 2 pages go on after the resume point (6.12's `end + 1`
    // enters the next region one page in, as in `size_quota_per_window_resumes_...`).
    let reqs = s.plan(&snapshot(200_000, vec![(1, regions.clone())]), 200_000);
    let again = [pg(5, 6), pg(6, 7)];
    assert_eq!(reqs.iter().map(|r| r.range).collect::<Vec<_>>(), again);
    // The pace held them back: refunded, and planned again at the next apply.
    let paced: Vec<RangeOutcome> = reqs
        .iter()
        .map(|r| {
            let mut o = RangeOutcome::of(r, 0, 0);
            o.errors = vec![(ApplyErrorKind::Paced, r.range.len())];
            o
        })
        .collect();
    s.account(
        &ApplyReport {
            outcomes: paced,
            ..ApplyReport::default()
        },
        200_000,
    );
    let reqs = s.plan(&snapshot(300_000, vec![(1, regions)]), 300_000);
    assert_eq!(reqs.iter().map(|r| r.range).collect::<Vec<_>>(), again);
    // 2 pages kept charged + these 2: the window is full.
    assert_eq!(s.stats()[0].qt_exceeds, 0);
}

/// A request the pace stopped part-way (`RangeOutcome::paced_from`): the held-back bytes are
/// refunded and the walk resumes where the pace stopped, not at the request's start (which
/// would plan the part already advised again).
#[test]
fn a_request_paced_part_way_resumes_where_the_pace_stopped() {
    use engine::ApplyErrorKind;
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (size: \"16 KiB\", reset_interval: \"1 s\")",
    );
    let (mut s, _) = schemes(&p);
    let regions = idle(10, 2);
    let base = 1u64 << 20;
    let pg = |a: u64, b: u64| AddrRange::new(base + a * PAGE, base + b * PAGE);
    let reqs = s.plan(&snapshot(100_000, vec![(1, regions.clone())]), 100_000);
    assert_eq!(
        reqs.iter().map(|r| r.range).collect::<Vec<_>>(),
        [pg(0, 2), pg(2, 4)]
    );
    let done = RangeOutcome::of(&reqs[0], 2 * PAGE, 1000);
    let mut half = RangeOutcome::of(&reqs[1], PAGE, 1000);
    half.errors = vec![(ApplyErrorKind::Paced, PAGE)];
    half.paced_from = Some(base + 3 * PAGE);
    s.account(
        &ApplyReport {
            outcomes: vec![done, half],
            ..ApplyReport::default()
        },
        100_000,
    );
    let reqs = s.plan(&snapshot(200_000, vec![(1, regions)]), 200_000);
    assert_eq!(
        reqs.iter().map(|r| r.range).collect::<Vec<_>>(),
        [pg(3, 4)],
        "the one refunded page, from where the pace stopped"
    );
}

/// The refill (`runtime/refill.rs`): a scheme applied once per window whose walk stopped at
/// the size quota and got bytes back as not resident walks again in the same round for
/// them, from where it stopped; not after a report with paced bytes, not when the walk did
/// not stop at the quota, and only once per report.
#[test]
fn refunds_refill_the_window_in_the_same_round() {
    use engine::ApplyErrorKind;
    let p = one_scheme(
        "pattern: (), action: pageout, apply_interval: \"1 s\", quota: (size: \"16 KiB\", reset_interval: \"1 s\")",
    );
    let base = 1u64 << 20;
    let pg = |a: u64, b: u64| AddrRange::new(base + a * PAGE, base + b * PAGE);
    let report_of = |reqs: &[engine::AdviceRequest], kind: Option<ApplyErrorKind>| {
        let mut outs: Vec<RangeOutcome> = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            let mut o = RangeOutcome::of(r, r.range.len(), 1000);
            if i == 0 {
                if let Some(k) = kind {
                    o.bytes_applied = 0;
                    o.errors = vec![(k, r.range.len())];
                }
            }
            outs.push(o);
        }
        ApplyReport {
            outcomes: outs,
            ..ApplyReport::default()
        }
    };
    let (mut s, _) = schemes(&p);
    let snap = snapshot(1_000_000, vec![(1, idle(10, 2))]);
    let reqs = s.plan(&snap, 1_000_000);
    assert_eq!(
        reqs.iter().map(|r| r.range).collect::<Vec<_>>(),
        [pg(0, 2), pg(2, 4)]
    );
    assert!(s.plan_refill(&snap, 1_000_000).is_empty(), "no report yet");
    s.account(
        &report_of(&reqs, Some(ApplyErrorKind::NotResident)),
        1_000_000,
    );
    let more = s.plan_refill(&snap, 1_000_000);
    // 6.12's resume at `end + 1` enters the next region one page in (as in
    // `not_resident_and_paced_bytes_are_refunded`).
    assert_eq!(
        more.iter().map(|r| r.range).collect::<Vec<_>>(),
        [pg(5, 6), pg(6, 7)]
    );
    assert!(
        s.plan_refill(&snap, 1_000_000).is_empty(),
        "once per report"
    );
    s.account(&report_of(&more, None), 1_000_000);
    assert!(
        s.plan_refill(&snap, 1_000_000).is_empty(),
        "nothing refunded"
    );
    assert_eq!(s.stats()[0].sz_applied, 4 * PAGE);

    // Paced bytes in the report: no refill (the pace is the round's budget).
    let (mut s, _) = schemes(&p);
    let reqs = s.plan(&snap, 1_000_000);
    let mut r = report_of(&reqs, Some(ApplyErrorKind::NotResident));
    r.outcomes[1].bytes_applied = PAGE;
    r.outcomes[1].errors = vec![(ApplyErrorKind::Paced, PAGE)];
    s.account(&r, 1_000_000);
    assert!(s.plan_refill(&snap, 1_000_000).is_empty());

    // A walk that did not reach the quota has nothing behind it to refill with.
    let (mut s, _) = schemes(&p);
    let small = snapshot(1_000_000, vec![(1, idle(1, 2))]);
    let reqs = s.plan(&small, 1_000_000);
    assert_eq!(reqs.len(), 1);
    s.account(
        &report_of(&reqs, Some(ApplyErrorKind::NotResident)),
        1_000_000,
    );
    assert!(s.plan_refill(&small, 1_000_000).is_empty());
}

/// The pace handed to the actuator: each active page-out scheme's effective quota per its
/// reset interval; none without a page-out quota.
#[test]
fn pace_follows_the_effective_quotas() {
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (size: \"16 KiB\", reset_interval: \"500 ms\")",
    );
    let (mut s, _) = schemes(&p);
    assert_eq!(s.pace_bytes_per_s(), None, "no window yet");
    s.plan(&snapshot(100_000, vec![(1, idle(10, 2))]), 100_000);
    assert_eq!(s.pace_bytes_per_s(), Some(32 << 10));
    let p = one_scheme("pattern: (), action: cold, quota: (size: \"16 KiB\")");
    let (mut s, _) = schemes(&p);
    s.plan(&snapshot(100_000, vec![(1, idle(10, 2))]), 100_000);
    assert_eq!(s.pace_bytes_per_s(), None);
    assert_eq!(s.pace_time_ns_per_s(), None);
}

/// The time pace handed to the actuator: each active page-out scheme's time quota per its
/// reset interval, summed; none for a scheme with a size quota only.
#[test]
fn time_pace_is_the_time_quotas_per_second() {
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (time: \"100 ms\", size: \"1 GiB\", reset_interval: \"500 ms\")",
    );
    let (mut s, _) = schemes(&p);
    assert_eq!(s.pace_time_ns_per_s(), None, "no window yet");
    s.plan(&snapshot(100_000, vec![(1, idle(10, 2))]), 100_000);
    assert_eq!(s.pace_time_ns_per_s(), Some(200_000_000));
    let p = one_scheme(
        "pattern: (), action: pageout, quota: (size: \"16 KiB\", reset_interval: \"500 ms\")",
    );
    let (mut s, _) = schemes(&p);
    s.plan(&snapshot(100_000, vec![(1, idle(10, 2))]), 100_000);
    assert_eq!(s.pace_time_ns_per_s(), None);
    assert_eq!(s.pace_bytes_per_s(), Some(32 << 10));
}

/// The two known-out walks below: an age-first pageout scheme of 16 KiB a window over three
/// regions at 1 MiB, pages 0..4 the oldest (`acc` accesses), pages 4..12 younger.
struct OldestFirst {
    s: Schemes,
}

const OLDEST_BASE: u64 = 1 << 20;

impl OldestFirst {
    fn new() -> Self {
        let p = one_scheme(
            "pattern: (), action: pageout, quota: (time: \"10 ms\", size: \"16 KiB\", \
             reset_interval: \"1 s\", weights: (size: 0, accesses: 0, age: 1))",
        );
        OldestFirst { s: schemes(&p).0 }
    }

    fn pg(a: u64, b: u64) -> AddrRange {
        AddrRange::new(OLDEST_BASE + a * PAGE, OLDEST_BASE + b * PAGE)
    }

    fn regions(acc: u32) -> Vec<engine::Region> {
        let base = OLDEST_BASE;
        vec![
            region(base, 4 * PAGE, acc, 500),
            region(base + 4 * PAGE, 4 * PAGE, 0, 100),
            region(base + 8 * PAGE, 4 * PAGE, 0, 100),
        ]
    }

    /// The ranges planned at `t` with the oldest region at `acc` accesses.
    fn plan(&mut self, t: u64, acc: u32) -> Vec<AddrRange> {
        let reqs = self.s.plan(&snapshot(t, vec![(1, Self::regions(acc))]), t);
        reqs.iter().map(|r| r.range).collect()
    }
}

/// Ranges the actuator found wholly not resident are skipped by the next windows' walks (as
/// filtered: not charged), so the quota reaches the resident candidates behind them rather
/// than starving on the oldest regions, which keep their age (runtime/known_out.rs); a region
/// a sample saw accessed is planned again. A round with nothing resident charges no time.
#[test]
fn wholly_not_resident_ranges_are_skipped_until_seen_accessed() {
    use engine::ApplyErrorKind;
    // Pages 0..4 are the oldest (never faulted in); pages 4..12 younger, resident.
    let mut w = OldestFirst::new();
    let pg = OldestFirst::pg;
    let reqs = w.s.plan(
        &snapshot(100_000, vec![(1, OldestFirst::regions(0))]),
        100_000,
    );
    assert_eq!(reqs.iter().map(|r| r.range).collect::<Vec<_>>(), [pg(0, 4)]);
    account_nothing_applied(
        &mut w.s,
        &reqs[0],
        (ApplyErrorKind::NotResident, 4 * PAGE),
        5_000_000,
        100_000,
    );
    // The next window resumes past the oldest region (6.12's `charge_addr_from`): what
    // follows it is reached because the known-out bytes are not in the priority histogram
    // (with them the score floor stays at the oldest region's, and nothing qualifies: the
    // starvation), and the quota is not cut down by the 5 ms spent finding nothing resident.
    assert_eq!(w.plan(1_200_000, 0), [pg(5, 8), pg(8, 9)]);
    assert_eq!(w.s.stats()[0].effective_quota, 16 << 10);
    assert_eq!(
        w.plan(2_300_000, 0),
        [],
        "the resume point passes the last region"
    );
    // A whole walk: the oldest region is skipped as known out, the quota goes on behind it.
    assert_eq!(w.plan(3_400_000, 0), [pg(4, 8)]);
    assert_eq!(
        w.s.stats()[0].sz_not_resident,
        8 * PAGE,
        "cut once, skipped once"
    );
    // A sample saw it accessed: its pages may be back, so once idle it is asked for again.
    assert_eq!(w.plan(4_500_000, 3), [], "resumes past it again");
    assert_eq!(w.plan(5_600_000, 0), [pg(0, 4)]);
}

/// A hole between the target's VMAs inside the monitoring ranges (the kernel's three
/// regions keep every gap but the two largest) is never accessed, so with age-first weights
/// it is the oldest region; the actuator reports it wholly `Unmapped`. It is skipped by the
/// next windows' walks as a wholly not-resident range is (runtime/known_out.rs), so the quota
/// reaches the resident cold memory behind it. Before, it was not learned: it held the
/// priority histogram's score floor, the next window planned nothing, and the one after
/// planned the hole again (in the lab, every window's 128 MiB went to holes while the
/// workload's cold band waited: docs/performance.md, "Reclaim side by side with the
/// kernel").
#[test]
fn wholly_unmapped_ranges_are_skipped_as_known_out() {
    use engine::ApplyErrorKind;
    // Pages 0..4: a hole, the oldest region; pages 4..12 younger, resident.
    let mut w = OldestFirst::new();
    let pg = OldestFirst::pg;
    let reqs = w.s.plan(
        &snapshot(100_000, vec![(1, OldestFirst::regions(0))]),
        100_000,
    );
    assert_eq!(reqs.iter().map(|r| r.range).collect::<Vec<_>>(), [pg(0, 4)]);
    // The actuator's outcome for a hole: nothing advised, no madvise call, all unmapped.
    let mut hole = RangeOutcome::of(&reqs[0], 0, 0);
    hole.errors = vec![(ApplyErrorKind::Unmapped, 4 * PAGE)];
    w.s.account(
        &ApplyReport {
            outcomes: vec![hole],
            ..ApplyReport::default()
        },
        100_000,
    );
    assert_eq!(w.plan(1_200_000, 0), [pg(5, 8), pg(8, 9)]);
    assert_eq!(
        w.plan(2_300_000, 0),
        [],
        "the resume point passes the last region"
    );
    // A whole walk: the hole is skipped, the quota goes on behind it.
    assert_eq!(w.plan(3_400_000, 0), [pg(4, 8)]);
}

/// `split` and `collapse` act on whole 2 MiB blocks, and DAMON's regions have their bounds
/// anywhere; at the kernel's merge limit (total size / `min_nr_regions`) the bounds stop
/// moving. As in the lab (kernel DAMON over a 32 MiB sparse mapping at 18 MiB, regions of
/// ~2.8 MiB, or of ~1.5 MiB where the target's address space is small): every block whose
/// regions all match is asked for exactly once, across region bounds, and regions below the
/// pattern's minimum size match as a run. A block touching a region that does not match is
/// not asked for. Before `runtime/huge_runs.rs` the straddling blocks were never asked for,
/// and 1.5 MiB regions never matched `size: (min: "2 MiB")`.
#[test]
fn huge_page_actions_reach_blocks_across_region_bounds() {
    const M: u64 = 1 << 20;
    let cases = [
        ("split", 0, 2867 * 1024),     // ~2.8 MiB regions, idle
        ("split", 0, 3 * M / 2),       // 1.5 MiB regions, idle
        ("collapse", 20, 2867 * 1024), // hot
        ("collapse", 20, 3 * M / 2),
    ];
    for (action, acc, size) in cases {
        let accesses = if acc == 0 {
            "(min: 0, max: 0)"
        } else {
            "(min: \"30%\")"
        };
        let p = one_scheme(&format!(
            "pattern: (size: (min: \"2 MiB\"), accesses: {accesses}, age: (min: 3)), \
             action: {action}"
        ));
        let (mut s, _) = schemes(&p);
        let (start, end) = (18 * M, 50 * M);
        let mut regions = vec![];
        let mut a = start;
        while a < end {
            let b = (a + size).min(end);
            regions.push(region(a, b - a, acc, 10));
            a = b;
        }
        let reqs = s.plan(&snapshot(100_000, vec![(1, regions.clone())]), 100_000);
        let mut got: Vec<AddrRange> = reqs.iter().map(|r| r.range).collect();
        got.sort_by_key(|r| r.start);
        for w in got.windows(2) {
            assert!(w[0].end <= w[1].start, "{action} {size}: overlap {got:?}");
        }
        assert_eq!(
            bytes(&reqs),
            end - start,
            "{action} {size}: every block once: {got:?}"
        );
        // One region in the middle does not match: the blocks it touches are left alone.
        let mid = regions.len() / 2;
        regions[mid].nr_accesses = 5 - acc.min(5);
        regions[mid].nr_accesses_bp = regions[mid].nr_accesses * 10_000;
        let (mut s, _) = schemes(&p);
        let reqs = s.plan(&snapshot(100_000, vec![(1, regions.clone())]), 100_000);
        let (ma, mb) = (regions[mid].start(), regions[mid].end());
        let (ba, bb) = (ma / (2 * M) * 2 * M, mb.div_ceil(2 * M) * 2 * M);
        assert!(
            reqs.iter()
                .all(|r| r.range.end <= ba || r.range.start >= bb),
            "{action} {size}: a block of the unmatched region {ma:#x}-{mb:#x} was asked for"
        );
        assert_eq!(bytes(&reqs), end - start - (bb - ba), "{action} {size}");
    }
}
