//! Interval auto-tuning from the command line (`--tune-*`) and from a policy's
//! `monitor.intervals_goal`: the tuned intervals take effect (a simulated record's snapshot
//! spacing grows to the bound), and every bad value is one usage error naming the flag, or the
//! policy's `path:line:column`.

mod common;

use assert_cmd::Command;
use common::exe;
use std::time::Duration;

fn madvd() -> Command {
    let mut c = Command::new(exe());
    c.env_remove("RUST_LOG")
        .env_remove("MADVD_LOG")
        .timeout(Duration::from_secs(120));
    c
}

/// `madvd ARGS` exits with `code`; stderr is one `madvd: error:` line containing `needle`.
fn fails_with(args: &[&str], code: i32, needle: &str) {
    let out = madvd()
        .args(args)
        .assert()
        .code(code)
        .get_output()
        .stderr
        .clone();
    let s = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got:\n{s}");
    assert!(
        lines[0].starts_with("madvd: error: ") && lines[0].contains(needle),
        "{args:?}: {s}"
    );
}

/// The snapshot times of a record.
fn frame_times(rec: &std::path::Path) -> Vec<u64> {
    std::fs::read_to_string(rec)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["t_us"].as_u64())
        .collect()
}

/// The stairs sim touches a tenth of its data in every interval: far below a 50% goal, so
/// tuning lengthens the sampling interval up to `--tune-max-sample` (40 ms), and the
/// aggregation interval with it (20 samples: 800 ms between snapshots at the end).
#[test]
fn tune_flags_lengthen_the_intervals_up_to_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("t.rec");
    let args = [
        "record",
        "--sim",
        "stairs",
        "--for",
        "20s",
        "--tune-access",
        "50%",
    ];
    madvd()
        .args(args)
        .args(["--tune-max-sample", "40ms", "-o"])
        .arg(&rec)
        .assert()
        .success();
    let t = frame_times(&rec);
    assert_eq!(
        t[1] - t[0],
        100_000,
        "untuned for the first aggregations: {t:?}"
    );
    let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2).all(|g| g[0] <= g[1]),
        "only ever longer: {gaps:?}"
    );
    assert_eq!(
        gaps[gaps.len() - 5..],
        [800_000; 5],
        "held at 40 ms × 20: {gaps:?}"
    );
    // Without the flags: one snapshot every 100 ms.
    madvd()
        .args(["record", "--sim", "stairs", "--for", "2s", "-o"])
        .arg(&rec)
        .assert()
        .success();
    let t = frame_times(&rec);
    assert!(t.windows(2).all(|w| w[1] - w[0] == 100_000), "{t:?}");
}

#[test]
fn bad_tune_flags_are_one_usage_error() {
    let rec = std::env::temp_dir().join("madvd-cli-tune-never-written.rec");
    let rec = rec.to_str().unwrap();
    let base = ["record", "--sim", "stairs", "--for", "1s", "-o", rec];
    for (extra, needle) in [
        (&["--tune-access", "4"][..], "'4' needs a unit"),
        (&["--tune-access", "0%"], "must be above 0 and at most 100%"),
        (&["--tune-access", "120%"], "'120%' is 12000 bp"),
        (&["--tune-aggrs", "0"], "--tune-aggrs"),
        (&["--tune-min-sample", "0ms"], "--tune-min-sample"),
        (
            &["--tune-min-sample", "1s", "--tune-max-sample", "10ms"],
            "min sample interval (1000000 us) is longer than the max (10000 us)",
        ),
        (
            &["--sample", "1ms", "--tune-aggrs", "2"],
            "sample interval (1000 us) is outside the intervals goal's range 5000..=10000000 us",
        ),
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        fails_with(&args, 2, needle);
    }
    assert!(!std::path::Path::new(rec).exists());
}

#[test]
fn check_places_a_bad_intervals_goal() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ron");
    std::fs::write(
        &bad,
        "(\n    monitor: (intervals_goal: (access: \"4%\", aggrs: 0)),\n    schemes: [(name: \"x\", pattern: (), action: stat)],\n)\n",
    )
    .unwrap();
    let out = madvd()
        .arg("check")
        .arg(&bad)
        .assert()
        .code(1)
        .get_output()
        .stderr
        .clone();
    let s = String::from_utf8_lossy(&out);
    let want = format!("{}:2:53: aggrs: must be at least 1", bad.display());
    assert!(s.lines().any(|l| l.starts_with(&want)), "{s}");
}
