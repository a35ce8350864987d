//! Learning the hot pages of a lukewarm region (`schemes::learn`), time as an input: a
//! region with hot pages scattered at 4 KiB is paged out whole; its hot pages come back;
//! the next plan cuts them out (not advised, not charged), their refaults are the expected
//! ones (the guard's quota stays up), and once the region is old again they are advised
//! again. The simulated kernel moves pages through `FakeMetrics`' page states.

mod common;
use common::{one_scheme, region, snapshot, PAGE};
use engine::report::RangeOutcome;
use engine::{AdviceRequest, ApplyReport, TargetId};
use schemes::refault::PageState;
use schemes::{FakeMetrics, Schemes};

const BASE: u64 = 0x1000_0000;
const PAGES: u64 = 1024;
const T: TargetId = TargetId(1);
const SEC: u64 = 1_000_000;

fn is_hot(page: u64) -> bool {
    page % 10 == 0
}

/// Plan at `now_us` with the region at `nr` accesses, page everything advised out, report
/// it back; the requests.
fn step(s: &mut Schemes, env: &FakeMetrics, now_us: u64, nr: u32) -> Vec<AdviceRequest> {
    let snap = snapshot(now_us, vec![(1, vec![region(BASE, PAGES * PAGE, nr, 100)])]);
    let reqs = s.plan(&snap, now_us);
    let mut report = ApplyReport::default();
    for r in &reqs {
        let n = (r.range.len() / PAGE) as usize;
        env.set_page_states(r.target, r.range.start, &vec![PageState::Out; n]);
        report
            .outcomes
            .push(RangeOutcome::of(r, r.range.len(), 1_000));
    }
    s.account(&report, now_us);
    reqs
}

/// The target reads its hot pages: those paged out come back.
fn touch_hot(env: &FakeMetrics) {
    for p in (0..PAGES).filter(|p| is_hot(*p)) {
        env.set_page_states(T, BASE + p * PAGE, &[PageState::Present]);
    }
}

fn advised_pages(reqs: &[AdviceRequest]) -> Vec<u64> {
    reqs.iter()
        .flat_map(|r| (r.range.start..r.range.end).step_by(PAGE as usize))
        .map(|a| (a - BASE) / PAGE)
        .collect()
}

/// A lukewarm-region scheme with the refault guard, over a target whose pages are all in
/// memory.
fn lukewarm() -> (FakeMetrics, Schemes) {
    let env = FakeMetrics::new();
    env.set_page_states(T, BASE, &vec![PageState::Present; PAGES as usize]);
    let policy = one_scheme(
        r#"pattern: (accesses: (min: 1, max: "25%"), age: (min: "200 ms")), action: pageout,
           quota: (size: "64 MiB", reset_interval: "1 s",
                   goals: [(metric: refault_rate, target: "2%", window: "10 s")])"#,
    );
    let s = Schemes::new(&policy, Box::new(env.clone())).unwrap();
    (env, s)
}

#[test]
fn hot_pages_that_come_back_are_cut_out_until_their_region_is_old_again() {
    let (env, mut s) = lukewarm();
    let hot: Vec<u64> = (0..PAGES).filter(|p| is_hot(*p)).collect();
    let ceiling = 64 << 20;

    // A lukewarm region (2 of 20 samples): paged out whole.
    let reqs = step(&mut s, &env, SEC, 2);
    assert_eq!(advised_pages(&reqs).len() as u64, PAGES);
    touch_hot(&env);

    // The next window's scan finds the hot pages back: they are learned and cut out.
    let reqs = step(&mut s, &env, 2 * SEC, 2);
    let advised = advised_pages(&reqs);
    assert!(
        advised.iter().all(|p| !is_hot(*p)),
        "a learned hot page was advised"
    );
    assert_eq!(advised.len() as u64, PAGES - hot.len() as u64);
    let st = &s.stats()[0];
    let hot_bytes = hot.len() as u64 * PAGE;
    assert_eq!(st.refaulted_bytes, hot_bytes);
    assert_eq!(st.learned_hot_bytes, hot_bytes);
    assert_eq!(st.sz_learned_hot, hot_bytes);
    // Not charged: what was charged is only what was advised.
    assert_eq!(st.sz_tried, (PAGES + PAGES - hot.len() as u64) * PAGE);
    // 10% of the 1024 pages moved out were expected back (102 pages): only the one page
    // beyond counts, 1 of the 4 MiB floor (1024 pages), and the quota stays at its ceiling.
    assert_eq!(st.refaulted_expected_bytes, 102 * PAGE);
    assert_eq!(st.goal_values, vec![10_000 / 1024]);
    assert_eq!(st.effective_quota, ceiling);

    // Still lukewarm: still cut, nothing comes back again.
    let reqs = step(&mut s, &env, 3 * SEC, 2);
    assert!(advised_pages(&reqs).iter().all(|p| !is_hot(*p)));
    assert_eq!(s.stats()[0].refaulted_bytes, hot_bytes);

    // The region is old again (no access for longer than the minimum age): forgotten, and
    // the pages are advised once more when it matches again.
    step(&mut s, &env, 4 * SEC, 0);
    assert_eq!(s.stats()[0].learned_hot_bytes, 0);
    let reqs = step(&mut s, &env, 5 * SEC, 2);
    let advised = advised_pages(&reqs);
    assert!(hot.iter().all(|p| advised.contains(p)));
}

#[test]
fn refaults_beyond_the_measured_frequency_still_count() {
    // The same region seen at 1 access in 20 (5% expected) while 10% of it comes back: the
    // surplus counts against the guard.
    let env = FakeMetrics::new();
    env.set_page_states(T, BASE, &vec![PageState::Present; PAGES as usize]);
    let policy = one_scheme(
        r#"pattern: (accesses: (min: 1, max: "25%")), action: pageout,
           quota: (size: "64 MiB", reset_interval: "1 s",
                   goals: [(metric: refault_rate, target: "2%", window: "10 s")])"#,
    );
    let mut s = Schemes::new(&policy, Box::new(env.clone())).unwrap();
    step(&mut s, &env, SEC, 1);
    touch_hot(&env);
    step(&mut s, &env, 2 * SEC, 1);
    let st = &s.stats()[0];
    // 51 pages expected of 103 back: 52 count, over the 4 MiB floor (921 still out + 52
    // is less): 5.1%, over twice the 2% budget.
    assert_eq!(st.refaulted_expected_bytes, 51 * PAGE);
    assert_eq!(st.goal_values, vec![52 * 10_000 / 1024]);
}

#[test]
fn hot_pages_back_at_once_are_learned_up_to_where_the_pace_stopped() {
    // A lukewarm region paged out with the pace stopping the request half-way: its hot pages
    // in the tried half are back before the after-read (the target reads them every 100 ms;
    // a round's pieces are read after all its calls): learned, cut from the next plan. The
    // held-back half was not tried: its hot pages are advised again.
    let (env, mut s) = lukewarm();
    // A hot region after it: the walk resumes inside the lukewarm one, which is then not the
    // target's last region (the kernel skips a resume point in the last region for the
    // window: `damos_skip_charged_region()`, mm/damon/core.c 6.12).
    let snap = |now| {
        snapshot(
            now,
            vec![(
                1,
                vec![
                    region(BASE, PAGES * PAGE, 2, 100),
                    region(BASE + PAGES * PAGE, PAGE * 16, 20, 100),
                ],
            )],
        )
    };
    let reqs = s.plan(&snap(SEC), SEC);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    let mid = r.range.start + r.range.len() / 2;
    // The tried half went out but for its hot pages, which are already back.
    for p in 0..PAGES / 2 {
        let st = if is_hot(p) {
            PageState::Present
        } else {
            PageState::Out
        };
        env.set_page_states(T, BASE + p * PAGE, &[st]);
    }
    let mut o = RangeOutcome::of(r, mid - r.range.start, 1_000);
    o.errors
        .push((engine::ApplyErrorKind::Paced, r.range.end - mid));
    o.paced_from = Some(mid);
    s.account(
        &ApplyReport {
            outcomes: vec![o],
            ..ApplyReport::default()
        },
        SEC,
    );
    let reqs2 = s.plan(&snap(2 * SEC), 2 * SEC);
    let advised = advised_pages(&reqs2);
    let (lo, hi): (Vec<u64>, Vec<u64>) = (0..PAGES)
        .filter(|p| is_hot(*p))
        .partition(|p| *p < PAGES / 2);
    assert!(
        lo.iter().all(|p| !advised.contains(p)),
        "a hot page back at once in the tried half was advised again"
    );
    assert!(
        hi.iter().all(|p| advised.contains(p)),
        "a page of the held-back half was learned"
    );
    assert_eq!(s.stats()[0].learned_hot_bytes, lo.len() as u64 * PAGE);
}

#[test]
fn pages_one_scheme_learned_hot_are_cut_from_the_others_page_outs() {
    // `reclaim.ron`'s pair: a cold scheme and a lukewarm one, each with its guard. The cold
    // one pages a region out whole (it read no access); its hot pages come back and are
    // learned. When the region then reads lukewarm, the lukewarm scheme's page-out leaves
    // those pages in: they are hot whichever scheme moved them out.
    let env = FakeMetrics::new();
    env.set_page_states(T, BASE, &vec![PageState::Present; PAGES as usize]);
    let body = |name: &str, accesses: &str| {
        format!(
            r#"(name: "{name}", pattern: (accesses: {accesses}, age: (min: "200 ms")),
               action: pageout,
               quota: (size: "64 MiB", reset_interval: "1 s",
                       goals: [(metric: refault_rate, target: "2%", window: "10 s")]))"#
        )
    };
    let policy = common::policy(&format!(
        "(schemes: [{}, {}])",
        body("cold", "(min: 0, max: 0)"),
        body("lukewarm", r#"(min: 1, max: "25%")"#)
    ));
    let mut s = Schemes::new(&policy, Box::new(env.clone())).unwrap();
    let hot: Vec<u64> = (0..PAGES).filter(|p| is_hot(*p)).collect();

    let reqs = step(&mut s, &env, SEC, 0);
    assert!(reqs.iter().all(|r| r.scheme == 0));
    assert_eq!(advised_pages(&reqs).len() as u64, PAGES);
    touch_hot(&env);
    // The cold scheme's next window learns the pages that came back.
    step(&mut s, &env, 2 * SEC, 0);
    assert_eq!(s.stats()[0].learned_hot_bytes, hot.len() as u64 * PAGE);

    // Now lukewarm: the lukewarm scheme takes the region, without the cold scheme's
    // learned pages.
    let reqs = step(&mut s, &env, 3 * SEC, 2);
    assert!(!reqs.is_empty() && reqs.iter().all(|r| r.scheme == 1));
    let advised = advised_pages(&reqs);
    assert!(
        advised.iter().all(|p| !is_hot(*p)),
        "a page the cold scheme learned hot was paged out by the lukewarm one"
    );
    assert_eq!(advised.len() as u64, PAGES - hot.len() as u64);
    assert_eq!(s.stats()[1].sz_learned_hot, hot.len() as u64 * PAGE);
    // Nothing came back for the lukewarm scheme: its ledger counts no refault.
    touch_hot(&env);
    step(&mut s, &env, 4 * SEC, 2);
    assert_eq!(s.stats()[1].refaulted_bytes, 0);
}

#[test]
fn pages_the_idle_cut_kept_in_are_not_learned_hot() {
    // Under page_idle the actuator's idle cut keeps the pages it reads accessed in memory
    // (`ApplyErrorKind::NotIdle`): present before the page-out and after, they never left.
    // Such an outcome teaches the learned set nothing (else every page of a range seen for
    // the first time, all kept in and marked, would be learned hot and cut from later
    // advice until its region is old again).
    let (env, mut s) = lukewarm();
    let snap = snapshot(SEC, vec![(1, vec![region(BASE, PAGES * PAGE, 2, 100)])]);
    let reqs = s.plan(&snap, SEC);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    // The cold pages went out; the hot ones were kept in by the cut.
    for p in (0..PAGES).filter(|p| !is_hot(*p)) {
        env.set_page_states(T, BASE + p * PAGE, &[PageState::Out]);
    }
    let hot = (0..PAGES).filter(|p| is_hot(*p)).count() as u64 * PAGE;
    let mut o = RangeOutcome::of(r, r.range.len() - hot, 1_000);
    o.errors.push((engine::ApplyErrorKind::NotIdle, hot));
    s.account(
        &ApplyReport {
            outcomes: vec![o],
            ..ApplyReport::default()
        },
        SEC,
    );
    let st = &s.stats()[0];
    assert_eq!(st.learned_hot_bytes, 0);
    assert_eq!(st.sz_not_idle, hot);
    assert_eq!(st.refaulted_bytes, 0);
    // Refunded: only the bytes advised stay charged.
    assert_eq!(st.sz_applied, PAGES * PAGE - hot);
}

/// With page_idle's idle cut a region's first page-out advises nothing: its pages are marked
/// idle and kept in (`NotIdle`). At the scheme's next apply the range is walked again though
/// its region reads 0 accesses then (a flicker below the pattern's `min: 1`): the cut judges
/// it. A follow-up the cut keeps wholly in again is not followed up a second time, and
/// without the cut (an outcome that advised something) nothing is followed up.
#[test]
fn ranges_the_idle_cut_kept_in_at_first_contact_are_followed_up_once() {
    use engine::ApplyErrorKind;
    let (_env, mut s) = lukewarm();
    let plan = |s: &mut Schemes, now: u64, nr: u32| {
        let snap = snapshot(now, vec![(1, vec![region(BASE, PAGES * PAGE, nr, 100)])]);
        s.plan(&snap, now)
    };
    let kept_in = |s: &mut Schemes, reqs: &[AdviceRequest], now: u64| {
        let mut report = ApplyReport::default();
        for r in reqs {
            let mut o = RangeOutcome::of(r, 0, 1_000);
            o.errors = vec![(ApplyErrorKind::NotIdle, r.range.len())];
            report.outcomes.push(o);
        }
        s.account(&report, now);
    };
    let whole = [engine::AddrRange::new(BASE, BASE + PAGES * PAGE)];
    let ranges = |r: &[AdviceRequest]| r.iter().map(|r| r.range).collect::<Vec<_>>();
    // Matched: marked, kept in.
    let reqs = plan(&mut s, SEC, 2);
    assert_eq!(ranges(&reqs), whole);
    kept_in(&mut s, &reqs, SEC);
    // The next apply: the region reads 0 (no match), the range is followed up.
    let reqs = plan(&mut s, 2 * SEC, 0);
    assert_eq!(ranges(&reqs), whole, "not followed up");
    // Kept wholly in again (all of it hot, say): not a third time.
    kept_in(&mut s, &reqs, 2 * SEC);
    assert!(plan(&mut s, 3 * SEC, 0).is_empty(), "followed up twice");
    // Without the cut: a page-out that advised is not followed up.
    let (env, mut s) = lukewarm();
    step(&mut s, &env, SEC, 2);
    assert!(plan(&mut s, 2 * SEC, 0).is_empty());
}
