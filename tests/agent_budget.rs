//! `cpu_budget` end to end: a budget too small for the policy's attributes makes the agent
//! coarsen them at once (before it has measured anything: the targets are predicted at the
//! prior cost), and its metrics show the budget, the scale and the intervals in force. The
//! controller itself is unit-tested in src/agent/budget/tests.rs; what it holds under load
//! is a bench (benches/agent_budget.rs, docs/performance.md).

mod common;
#[path = "../src/agent/metrics/parsed.rs"]
mod parsed;

use assert_cmd::Command;
use common::{exe, spawn_sized};
use std::time::Duration;

#[test]
fn a_small_budget_coarsens_sampling_and_shows_in_metrics() {
    engine::need_root!("smaps and clear_refs of a child");
    let wl = spawn_sized(16 << 20);
    let d = tempfile::tempdir().unwrap();
    let policy = r#"(monitor: (sample: "100 ms", aggr: "200 ms"), schemes: [(name: "all", pattern: (), action: stat)])"#;
    let config = format!(
        "(targets: [(name: \"one\", select: Pid({}), policy: \"fast.ron\", ops: Named(\"smaps\"))], listen: \"off\", cpu_budget: \"0.1%\")\n",
        wl.pid()
    );
    for (name, text) in [("fast.ron", policy), ("agent.ron", &config)] {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    let cfg = d.path().join("agent.ron");
    let run = Command::new(exe())
        .args(["agent", "--once", "--config", &cfg.display().to_string()])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let so = String::from_utf8_lossy(&run.get_output().stdout).into_owned();
    let m = parsed::text(&so).unwrap_or_else(|e| panic!("{e}\n{so}"));
    let v = |name: &str, labels: &[(&str, &str)]| {
        m.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}\n{so}"))
    };
    let one = [("group", "one")];
    assert_eq!(v("madvd_group_targets", &one), 1.0, "{so}");
    assert_eq!(v("madvd_agent_cpu_budget", &[]), 0.001, "{so}");
    // 10 samples/s at the prior 1 ms is 1% of a CPU: ten times the budget, so at least
    // scale 12.5 (the 80% aim), the intervals with it, the samples per aggregation kept.
    let scale = v("madvd_agent_cpu_budget_scale", &[]);
    assert!(scale >= 12.5, "{so}");
    // The sampling interval grows with the scale up to the budget's cap (60 s; a loaded
    // machine's first window, with the agent's start-up in it, can reach the top scale).
    let sample = v("madvd_group_sample_interval_seconds", &one);
    let cap = 60.0; // MAX_SAMPLE_US of src/agent/budget.rs
    assert!((sample - (0.1 * scale).min(cap)).abs() < 0.01, "{so}");
    let aggr = v("madvd_group_aggregation_interval_seconds", &one);
    assert!((aggr - 2.0 * sample).abs() < 0.01, "{so}");
    assert!(v("madvd_agent_cpu_seconds_total", &[]) > 0.0, "{so}");
    assert!(v("madvd_agent_cpu_share", &[]) >= 0.0, "{so}");
}
