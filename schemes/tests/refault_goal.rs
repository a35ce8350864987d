//! The refault guard (`refault_rate` goal) on a simulated target, time as an input: the
//! scheme pages cold memory out; the target's hot set moves onto paged-out memory; the
//! effective quota falls within 3 reset intervals, stays down while the window remembers the
//! refaults, and recovers once they stop. The simulated kernel moves a page to swap when it
//! is paged out and back when the target touches it, through `FakeMetrics`' page states.

mod common;
use common::{one_scheme, region, snapshot, PAGE};
use engine::report::RangeOutcome;
use engine::{ApplyReport, TargetId};
use schemes::refault::PageState;
use schemes::{FakeMetrics, Schemes};

const BASE: u64 = 0x1000_0000;
const MIB: u64 = 1 << 20;
const REGION: u64 = 4 * MIB;
const NR: u64 = 16;
const T: TargetId = TargetId(1);
const SEC: u64 = 1_000_000;

fn pages(len: u64) -> usize {
    (len / PAGE) as usize
}

/// One reset interval: a snapshot where the regions in `hot` are accessed and the rest
/// idle, the plan, the simulated page-out, the report back. Returns the effective quota of
/// the window and the bytes paged out.
fn step(s: &mut Schemes, env: &FakeMetrics, now_us: u64, hot: &[u64]) -> (u64, u64) {
    let regions = (0..NR)
        .map(|i| {
            let acc = if hot.contains(&i) { 20 } else { 0 };
            region(BASE + i * REGION, REGION, acc, 100)
        })
        .collect();
    let snap = snapshot(now_us, vec![(1, regions)]);
    let reqs = s.plan(&snap, now_us);
    let mut report = ApplyReport::default();
    let mut paged = 0;
    for r in &reqs {
        env.set_page_states(
            r.target,
            r.range.start,
            &vec![PageState::Out; pages(r.range.len())],
        );
        paged += r.range.len();
        report
            .outcomes
            .push(RangeOutcome::of(r, r.range.len(), 1_000));
    }
    s.account(&report, now_us);
    (s.stats()[0].effective_quota, paged)
}

fn touch(env: &FakeMetrics, i: u64) {
    env.set_page_states(
        T,
        BASE + i * REGION,
        &vec![PageState::Present; pages(REGION)],
    );
}

fn guard_policy(window: &str) -> schemes::Policy {
    one_scheme(&format!(
        r#"pattern: (accesses: (min: 0, max: 0)), action: pageout,
           quota: (size: "8 MiB", reset_interval: "1 s",
                   goals: [(metric: refault_rate, target: "2%", window: "{window}")])"#
    ))
}

#[test]
fn quota_falls_when_page_outs_come_back_and_recovers_after_the_window() {
    let env = FakeMetrics::new();
    // Everything resident at the start.
    for i in 0..NR {
        touch(&env, i);
    }
    let window_s = 10;
    let mut s = Schemes::new(
        &guard_policy(&format!("{window_s} s")),
        Box::new(env.clone()),
    )
    .unwrap();
    let ceiling = 8 * MIB;

    // Region 0 hot; the rest is paged out at the full quota from the first window (the guard
    // starts at the ceiling: nothing has come back yet).
    let mut t = SEC;
    for _ in 0..6 {
        let (esz, paged) = step(&mut s, &env, t, &[0]);
        assert_eq!(esz, ceiling, "t={t}");
        assert!(paged > 0, "t={t}: nothing paged out");
        t += SEC;
    }
    assert_eq!(s.stats()[0].goal_values, vec![0]);
    assert_eq!(s.stats()[0].paged_out_bytes, 48 * MIB);

    // The hot set moves onto paged-out memory: regions 1 and 2 come back.
    touch(&env, 1);
    touch(&env, 2);
    let moved = t;
    let hot = [1, 2];
    let mut fell_at = None;
    for k in 0..3 {
        let (esz, _) = step(&mut s, &env, t, &hot);
        if esz <= ceiling / 4 && fell_at.is_none() {
            fell_at = Some(k);
        }
        t += SEC;
    }
    assert!(
        fell_at.is_some(),
        "quota did not fall within 3 reset intervals: {:?}",
        s.stats()
    );
    let st = &s.stats()[0];
    assert_eq!(st.refaulted_bytes, 8 * MIB);
    // 8 MiB back of 48 MiB moved out: 8 / (40 + 8) = 16.7%, over twice the 2% target.
    assert_eq!(st.goal_values, vec![1666]);

    // No more refaults. The window remembers them: the quota stays down until they are a
    // window old ...
    while t < moved + window_s * SEC {
        let (esz, _) = step(&mut s, &env, t, &hot);
        assert!(
            esz <= ceiling / 4,
            "t={t}: the guard forgot the refaults: {esz}"
        );
        t += SEC;
    }
    // ... then grows back (doubling from one region per window while nothing comes back).
    let mut back = None;
    for k in 0..16 {
        let (esz, _) = step(&mut s, &env, t, &hot);
        if esz == ceiling {
            back = Some(k);
            break;
        }
        t += SEC;
    }
    let back = back.unwrap_or_else(|| panic!("quota never recovered: {:?}", s.stats()));
    assert!(
        back >= 5,
        "recovered at once ({back}): the feed loop grows it step by step"
    );
    assert_eq!(s.stats()[0].goal_values, vec![0]);
}

/// Pages out before the scheme advised them (the refault probe's sample page-outs, or an
/// earlier reclaim) are not the scheme's: their return is not counted.
#[test]
fn pages_the_scheme_did_not_move_out_are_not_counted() {
    let env = FakeMetrics::new();
    for i in 0..NR {
        touch(&env, i);
    }
    // Region 3 already out (e.g. sampled by the probe) when the scheme advises it.
    env.set_page_states(T, BASE + 3 * REGION, &vec![PageState::Out; pages(REGION)]);
    let mut s = Schemes::new(&guard_policy("1 min"), Box::new(env.clone())).unwrap();
    let mut t = SEC;
    for _ in 0..12 {
        step(&mut s, &env, t, &[0]);
        t += SEC;
    }
    // Regions 1-15 but 3 are cold and were resident (the kernel's resume rule skips the
    // last region after a window that ran out of quota, so 15 may be left).
    let out = s.stats()[0].paged_out_bytes;
    assert!((52 * MIB..=56 * MIB).contains(&out), "{out}");
    touch(&env, 3);
    for _ in 0..2 {
        step(&mut s, &env, t, &[0, 3]);
        t += SEC;
    }
    assert_eq!(s.stats()[0].refaulted_bytes, 0);
    assert_eq!(s.stats()[0].goal_values, vec![0]);
    // A discarded range (MADV_DONTNEED, munmap) leaves the ledger without counting.
    env.set_page_states(T, BASE + 4 * REGION, &vec![PageState::Gone; pages(REGION)]);
    step(&mut s, &env, t, &[0, 3]);
    assert_eq!(s.stats()[0].refaulted_bytes, 0);
}

/// A target reported gone drops out of the ledger: what the pid's pagemap shows afterwards
/// (a new process may have it) is not counted.
#[test]
fn gone_targets_leave_the_ledger() {
    let env = FakeMetrics::new();
    for i in 0..NR {
        touch(&env, i);
    }
    let mut s = Schemes::new(&guard_policy("1 min"), Box::new(env.clone())).unwrap();
    step(&mut s, &env, SEC, &[0]);
    assert_eq!(s.stats()[0].paged_out_bytes, 8 * MIB);
    let report = ApplyReport {
        gone: vec![T],
        ..ApplyReport::default()
    };
    s.account(&report, 2 * SEC);
    for i in 0..NR {
        touch(&env, i);
    }
    let snap = snapshot(3 * SEC, vec![(2, vec![region(BASE, REGION, 20, 100)])]);
    let _ = s.plan(&snap, 3 * SEC);
    assert_eq!(s.stats()[0].refaulted_bytes, 0);
    assert_eq!(s.stats()[0].goal_values, vec![0]);
}

/// The goal's mistakes are placed in the file and say what is wrong.
#[test]
fn refault_rate_goal_mistakes_are_precise() {
    let err = |body: &str| {
        schemes::Policy::from_str(
            &format!("(schemes: [(name: \"s\", pattern: (), {body})])"),
            std::path::Path::new("p.ron"),
        )
        .unwrap_err()
        .to_string()
    };
    let e = err(r#"action: cold, quota: (goals: [(metric: refault_rate, target: "2%")])"#);
    assert!(e.contains("action `cold` pages nothing out"), "{e}");
    let e = err(
        r#"action: pageout, quota: (goals: [(metric: refault_rate, target: "2%", window: "0 s")])"#,
    );
    assert!(
        e.contains("window") && e.contains("greater than zero"),
        "{e}"
    );
    let e =
        err(r#"action: pageout, quota: (goals: [(metric: user_input, target: 5, window: "1 s")])"#);
    assert!(e.contains("only a refault_rate goal takes a window"), "{e}");
    let e = err(r#"action: pageout, quota: (goals: [(metric: refault_rate, target: "120%")])"#);
    assert!(e.contains("above 100%"), "{e}");
    // The default window is a minute.
    let p = common::one_scheme(
        r#"pattern: (), action: pageout, quota: (goals: [(metric: refault_rate, target: "2%")])"#,
    );
    assert_eq!(
        p.schemes[0].quota.goals[0].metric,
        schemes::policy::GoalMetric::RefaultRate {
            window_us: 60_000_000
        }
    );
}
