//! Invariants over random snapshots, quotas and metric sequences.

mod common;
use common::*;
use engine::{ApplyReport, RangeOutcome};
use proptest::prelude::*;
use schemes::policy::Weights;
use schemes::score::cold_score;
use schemes::{FakeMetrics, Schemes};

/// Random regions: sorted, disjoint, page-multiple sizes, random access counts and ages.
fn regions_strategy() -> impl Strategy<Value = Vec<engine::Region>> {
    prop::collection::vec((1u64..64, 0u64..4, 0u32..=20, 0u32..3000), 1..80).prop_map(|v| {
        let mut at = 0x10_0000u64;
        v.into_iter()
            .map(|(pages, gap, nr, age)| {
                at += gap * PAGE;
                let r = region(at, pages * PAGE, nr, age);
                at += pages * PAGE;
                r
            })
            .collect()
    })
}

fn report_for(reqs: &[engine::AdviceRequest], ns_per_byte: u64) -> ApplyReport {
    ApplyReport {
        outcomes: reqs
            .iter()
            .map(|r| RangeOutcome::of(r, r.range.len(), r.range.len() * ns_per_byte))
            .collect(),
        ..ApplyReport::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Bytes chosen in each reset interval never exceed that interval's effective size quota.
    #[test]
    fn chosen_bytes_per_window_within_effective_quota(
        targets in prop::collection::vec(regions_strategy(), 1..3),
        size_pages in 0u64..200,
        time_ms in 0u64..5,
        reset_aggrs in 1u64..5,
        ns_per_byte in 1u64..20,
        plans in 5usize..30,
    ) {
        prop_assume!(size_pages > 0 || time_ms > 0);
        let quota = format!(
            "quota: (size: {}, time: \"{} ms\", reset_interval: \"{} ms\")",
            size_pages * PAGE, time_ms, reset_aggrs * 100
        );
        let p = one_scheme(&format!("pattern: (), action: pageout, {quota}"));
        let mut s = Schemes::new(&p, Box::new(FakeMetrics::new())).unwrap();
        let reset_us = reset_aggrs * 100_000;
        let mut window_start: Option<u64> = None;
        let mut window_bytes = 0u64;
        for k in 1..=plans as u64 {
            let now = k * 100_000;
            let snap = snapshot(now, targets.iter().enumerate().map(|(i, r)| (i as u32 + 1, r.clone())).collect());
            // A new window starts when the last one is over (damos_adjust_quota()).
            if window_start.is_none_or(|w| now >= w + reset_us) {
                window_start = Some(now);
                window_bytes = 0;
            }
            let reqs = s.plan(&snap, now);
            window_bytes += reqs.iter().map(|r| r.range.len()).sum::<u64>();
            let esz = s.stats()[0].effective_quota;
            prop_assert!(esz > 0);
            prop_assert!(window_bytes <= esz, "window bytes {} > effective quota {}", window_bytes, esz);
            if size_pages > 0 {
                prop_assert!(esz <= size_pages * PAGE);
            }
            s.account(&report_for(&reqs, ns_per_byte), now);
        }
    }

    /// A cold-pageout scheme under a size quota takes the coldest-scored regions first: every
    /// chosen region scores at least the threshold T, the highest score whose regions (with
    /// all colder-scored ones) cover the quota (`damos_adjust_quota()`); everything colder than
    /// T fits in the quota, and unless the quota ran out, every region scoring T or more is
    /// chosen whole.
    #[test]
    fn cold_pageout_takes_coldest_first(
        regions in regions_strategy(),
        quota_pages in 1u64..300,
        w_acc in 0u32..3,
        w_age in 0u32..3,
    ) {
        let p = one_scheme(&format!(
            "pattern: (), action: pageout, quota: (size: {}, reset_interval: \"1 s\", weights: (accesses: {w_acc}, age: {w_age}))",
            quota_pages * PAGE
        ));
        let mut s = Schemes::new(&p, Box::new(FakeMetrics::new())).unwrap();
        let snap = snapshot(100_000, vec![(1, regions.clone())]);
        let reqs = s.plan(&snap, 100_000);
        let esz = quota_pages * PAGE;
        let w = Weights { size: 0, accesses: w_acc, age: w_age };
        let score = |r: &engine::Region| cold_score(r.nr_accesses, r.age, &snap.attrs, &w);
        // The threshold, computed here from its definition.
        let bytes_at_least = |t: u32| regions.iter().filter(|r| score(r) >= t).map(|r| r.size()).sum::<u64>();
        let max = regions.iter().map(score).max().unwrap();
        let t = (0..=max).rev().find(|&t| bytes_at_least(t) >= esz).unwrap_or(0);
        prop_assert!(t == max || bytes_at_least(t + 1) < esz);
        let chosen: u64 = reqs.iter().map(|q| q.range.len()).sum();
        prop_assert!(chosen <= esz);
        for q in &reqs {
            let r = regions.iter().find(|r| r.ar.start <= q.range.start && q.range.end <= r.ar.end).unwrap();
            prop_assert!(score(r) >= t, "chose a region scoring {} below the threshold {}", score(r), t);
        }
        if chosen + PAGE <= esz {
            for r in regions.iter().filter(|r| score(r) >= t) {
                let got: u64 = reqs.iter().filter(|q| r.ar.intersects(&q.range)).map(|q| q.range.len()).sum();
                prop_assert_eq!(got, r.size());
            }
        }
    }

    /// Watermark activation changes only as the kernel's rule says, and never inside the
    /// hysteresis band [mid, high].
    #[test]
    fn watermarks_follow_the_kernel_and_do_not_flap(
        marks in (0u64..=1000, 0u64..=1000, 0u64..=1000),
        metrics in prop::collection::vec(0u64..=1000, 1..60),
    ) {
        let mut m = [marks.0, marks.1, marks.2];
        m.sort_unstable();
        let (low, mid, high) = (m[0], m[1], m[2]);
        let p = one_scheme(&format!(
            "pattern: (), action: stat, watermarks: (interval: \"1 us\", high: {high}, mid: {mid}, low: {low})"
        ));
        let env = FakeMetrics::new();
        env.set_free_permille(500);
        let mut s = Schemes::new(&p, Box::new(env.clone())).unwrap();
        // A new scheme starts activated (damon_new_scheme(), mm/damon/core.c 6.12.117).
        let mut active = true;
        for (k, &metric) in metrics.iter().enumerate() {
            env.set_free_permille(metric);
            let now = (k as u64 + 1) * 100_000;
            s.plan(&snapshot(now, vec![(1, vec![region(0x10_0000, PAGE, 0, 0)])]), now);
            let got = s.stats()[0].active;
            // damos_wmark_wait_us(), mm/damon/core.c 6.12.
            let expected = if metric > high || metric < low {
                false
            } else if metric >= mid {
                active
            } else {
                true
            };
            prop_assert_eq!(got, expected, "metric {} with marks {}/{}/{}", metric, high, mid, low);
            if (mid..=high).contains(&metric) {
                prop_assert_eq!(got, active, "flapped inside the band");
            }
            prop_assert_eq!(got, s.stats()[0].inactive_reason.is_none());
            active = got;
        }
    }

    /// The policy parser never panics, whatever the text.
    #[test]
    fn parser_never_panics(text in ".{0,400}") {
        let _ = schemes::Policy::from_str(&text, std::path::Path::new("p"));
    }
}

/// A random scheme body built from the format's pieces.
fn scheme_body_strategy() -> impl Strategy<Value = String> {
    let action = prop::sample::select(vec!["pageout", "cold", "willneed", "collapse", "stat"]);
    let pattern = prop::sample::select(vec![
        "()",
        "(accesses: (max: 0))",
        "(accesses: (min: \"25%\"), age: (max: 50))",
        "(size: (min: \"8 KiB\", max: \"1 MiB\"), age: (min: \"1 s\"))",
    ]);
    let quota = prop::sample::select(vec![
        "",
        ", quota: (size: \"64 KiB\", reset_interval: \"300 ms\")",
        ", quota: (time: \"1 ms\", size: \"1 MiB\", weights: (accesses: 2, age: 1))",
        ", quota: (reset_interval: \"200 ms\", goals: [(metric: user_input, target: 10, current: 3)])",
    ]);
    let filters = prop::sample::select(vec![
        "",
        ", filters: [(kind: addr(start: \"1 MiB\", end: \"1100 KiB\"), allow: false)]",
        ", filters: [(kind: target(2), allow: true)]",
        ", filters: [(kind: addr(start: 0x100000, end: 0x140000), allow: true), (kind: target(1), matching: false, allow: false)]",
    ]);
    let interval = prop::sample::select(vec![
        "",
        ", apply_interval: \"50 ms\"",
        ", apply_interval: \"300 ms\"",
    ]);
    (action, pattern, quota, filters, interval)
        .prop_map(|(a, p, q, f, i)| format!("pattern: {p}, action: {a}{q}{f}{i}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the (valid) policy and snapshots: every request lies inside a region of its
    /// target, requests of one scheme in one plan do not overlap, collapse requests are whole
    /// huge pages, and the counters never go back.
    #[test]
    fn requests_stay_inside_regions(
        bodies in prop::collection::vec(scheme_body_strategy(), 1..4),
        snaps in prop::collection::vec(prop::collection::vec(regions_strategy(), 1..3), 1..12),
    ) {
        let text = format!(
            "(schemes: [{}])",
            bodies.iter().enumerate().map(|(i, b)| format!("(name: \"s{i}\", {b})")).collect::<Vec<_>>().join(", ")
        );
        let p = policy(&text);
        let mut s = Schemes::new(&p, Box::new(FakeMetrics::new())).unwrap();
        let mut last_tried = vec![0u64; bodies.len()];
        for (k, targets) in snaps.iter().enumerate() {
            let now = (k as u64 + 1) * 100_000;
            let snap = snapshot(now, targets.iter().enumerate().map(|(i, r)| (i as u32 + 1, r.clone())).collect());
            let reqs = s.plan(&snap, now);
            for q in &reqs {
                let t = snap.targets.iter().find(|t| t.target == q.target).unwrap();
                prop_assert!(!q.range.is_empty());
                prop_assert!(t.regions.iter().any(|r| r.ar.start <= q.range.start && q.range.end <= r.ar.end), "{:?} outside the regions", q);
                if q.advice == engine::Advice::Collapse {
                    prop_assert_eq!(q.range.start % (2 << 20), 0);
                    prop_assert_eq!(q.range.end % (2 << 20), 0);
                }
            }
            for i in 0..bodies.len() {
                let mut mine: Vec<_> = reqs.iter().filter(|q| q.scheme == i).map(|q| (q.target, q.range)).collect();
                mine.sort();
                for w in mine.windows(2) {
                    prop_assert!(w[0].0 != w[1].0 || w[0].1.end <= w[1].1.start, "overlap {:?}", w);
                }
            }
            s.account(&report_for(&reqs, 3), now);
            for (i, st) in s.stats().iter().enumerate() {
                prop_assert!(st.nr_tried >= last_tried[i]);
                last_tried[i] = st.nr_tried;
            }
        }
    }
}
