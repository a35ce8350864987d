//! Where madvd's schemes follow a kernel rule they once missed: one `kernel_rule_<function>`
//! test per rule, stating what the kernel does (mm/damon/core.c, Linux 6.12.117, Debian
//! `linux-source-6.12` 6.12.117-1~deb12u1, the lab kernel). Each failed before its fix.

mod common;
use common::*;
use schemes::{FakeMetrics, Schemes};

fn schemes_with_free(p: &schemes::Policy, free_permille: u64) -> (Schemes, FakeMetrics) {
    let env = FakeMetrics::new();
    env.set_free_permille(free_permille);
    env.set_psi_total_us(None, 0);
    (Schemes::new(p, Box::new(env.clone())).unwrap(), env)
}

const WMARKS: &str = "watermarks: (interval: \"5 s\", high: 500, mid: 400, low: 200)";

/// `damon_new_scheme()` sets `scheme->wmarks.activated = true`: a new scheme starts active,
/// so a first reading inside the hysteresis band `[mid, high]` keeps it running (only a
/// reading outside `[low, high]` deactivates it), and its stats say active before any plan.
#[test]
fn kernel_rule_damon_new_scheme() {
    let p = one_scheme(&format!("pattern: (), action: pageout, {WMARKS}"));
    let (mut s, _env) = schemes_with_free(&p, 450);
    assert!(s.stats()[0].active, "active before the first plan");
    assert!(!s.all_inactive());
    let snap = snapshot(100_000, vec![(1, vec![region(1 << 20, PAGE, 0, 100)])]);
    assert_eq!(
        s.plan(&snap, 100_000).len(),
        1,
        "45% free, in the band: still active"
    );
    assert!(s.stats()[0].active && s.stats()[0].inactive_reason.is_none());
}

/// Page-level filters are evaluated per page by the kernel's operations set
/// (`damos_pa_filter_out()`, mm/damon/paddr.c 6.12.117). madvd's front ends do not, so
/// `Policy::check_runnable` (used by `madvd check` and the stages) refuses a policy with one,
/// at the scheme, with the reason; region-level filters pass.
#[test]
fn page_level_filters_are_refused_with_the_reason() {
    for kind in ["anon", "young"] {
        let p = policy(&format!(
            "(schemes: [(name: \"ok\", pattern: (), action: cold),\n (name: \"pf\", pattern: (), action: pageout, filters: [(kind: {kind})])])"
        ));
        let e = p.check_runnable().unwrap_err().to_string();
        assert!(e.starts_with("test.ron:2:2: scheme \"pf\""), "{e}");
        assert!(e.contains(&format!("filter `{kind}` is page-level")), "{e}");
    }
    let p = one_scheme(
        "pattern: (), action: pageout, filters: [(kind: addr(start: 0x1000, end: 0x2000))]",
    );
    p.check_runnable().unwrap();
}

/// `kdamond_wait_activation()` (core.c 6.12.117): while every scheme is inactive by its
/// watermarks, the kdamond sleeps until the earliest watermark check instead of sampling;
/// `Schemes::paused_until_us` says so, `check_watermarks` rechecks at that time, and on
/// resuming the apply schedule moves by the pause (the kernel's `next_apply_sis` counts
/// sampling intervals, and none pass while paused).
#[test]
fn watermark_pause_and_resume() {
    let p = one_scheme(&format!("pattern: (), action: pageout, {WMARKS}"));
    let (mut s, env) = schemes_with_free(&p, 600);
    assert_eq!(s.paused_until_us(), None, "active until the first reading");
    let snap = snapshot(100_000, vec![(1, vec![region(1 << 20, PAGE, 0, 100)])]);
    assert!(s.plan(&snap, 100_000).is_empty());
    assert_eq!(s.paused_until_us(), Some(5_100_000));
    // Not due yet: nothing read, still paused.
    s.check_watermarks(3_000_000);
    assert_eq!(s.paused_until_us(), Some(5_100_000));
    s.check_watermarks(5_100_000);
    assert_eq!(s.paused_until_us(), Some(10_100_000));
    env.set_free_permille(300);
    s.check_watermarks(10_100_000);
    assert_eq!(s.paused_until_us(), None);
    assert!(s.stats()[0].active);
    // Due at 200 ms before the pause; 10 s paused: due at 10.2 s.
    assert_eq!(s.next_apply_due_us(), Some(10_200_000));
}
