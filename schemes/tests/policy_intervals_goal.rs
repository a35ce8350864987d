//! The `monitor.intervals_goal` section (interval auto-tuning, Linux 6.15's
//! `damon_intervals_goal`): what it settles, and every bad value reported at its
//! `path:line:column` with the field named.

use engine::{IntervalsGoal, IntervalsGoalOverride};
use schemes::{Policy, PolicyError};
use std::path::Path;

/// A policy whose `monitor` section is `monitor` (on line 2, at column 5).
fn policy(monitor: &str) -> String {
    format!("(\n    monitor: ({monitor}),\n    schemes: [(name: \"x\", pattern: (), action: stat)],\n)\n")
}

fn load(monitor: &str) -> Result<Policy, PolicyError> {
    Policy::from_str(&policy(monitor), Path::new("policies/x.ron"))
}

/// The error for `monitor`, its column, and its message; `at` is the text the error points at.
fn err_at(monitor: &str, at: &str) -> (usize, String) {
    let e = match load(monitor) {
        Ok(_) => panic!("accepted: {monitor}"),
        Err(e) => e,
    };
    let text = policy(monitor);
    let line2 = text.lines().nth(1).unwrap();
    let col = line2
        .find(at)
        .unwrap_or_else(|| panic!("{at:?} not in {line2}"))
        + 1;
    assert_eq!((e.line(), e.column()), (2, col), "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("policies/x.ron:2:{col}: ")),
        "{e}"
    );
    (col, e.message())
}

#[test]
fn intervals_goal_fields_as_written_and_defaults_for_the_rest() {
    let p =
        load("sample: \"10 ms\", intervals_goal: (access: \"2%\", max_sample: \"1 s\")").unwrap();
    let g = p.monitor.unwrap().intervals_goal.unwrap();
    assert_eq!(
        g,
        IntervalsGoalOverride {
            access_bp: Some(200),
            aggrs: None,
            min_sample_us: None,
            max_sample_us: Some(1_000_000),
        }
    );
    assert_eq!(
        g.resolve(),
        IntervalsGoal {
            access_bp: 200,
            aggrs: 3,
            min_sample_us: 5_000,
            max_sample_us: 1_000_000
        }
    );
    // An empty section turns tuning on with the kernel users' values.
    let p = load("intervals_goal: ()").unwrap();
    assert_eq!(
        p.monitor.unwrap().intervals_goal.unwrap().resolve(),
        IntervalsGoal::default()
    );
    // Basis points written bare or with `bp`.
    let p = load("intervals_goal: (access: \"400 bp\", aggrs: 5)").unwrap();
    let g = p.monitor.unwrap().intervals_goal.unwrap();
    assert_eq!((g.access_bp, g.aggrs), (Some(400), Some(5)));
    // No section: no tuning.
    assert_eq!(
        load("sample: \"5 ms\"")
            .unwrap()
            .monitor
            .unwrap()
            .intervals_goal,
        None
    );
}

#[test]
fn bad_intervals_goal_values_are_placed_and_named() {
    let (_, m) = err_at("intervals_goal: (access: \"0%\")", "\"0%\"");
    assert!(m.starts_with("access: is 0 bp, must be above 0"), "{m}");
    let (_, m) = err_at("intervals_goal: (access: \"150%\")", "\"150%\"");
    assert!(m.contains("at most 100%"), "{m}");
    let (_, m) = err_at("intervals_goal: (access: \"4 ms\")", "\"4 ms\"");
    assert!(m.starts_with("access: unknown unit `ms`"), "{m}");
    let (_, m) = err_at("intervals_goal: (aggrs: 0)", "0)");
    assert!(m.starts_with("aggrs: must be at least 1"), "{m}");
    let (_, m) = err_at("intervals_goal: (min_sample: \"0 ms\")", "\"0 ms\"");
    assert!(
        m.starts_with("min_sample: must be greater than zero"),
        "{m}"
    );
    let (_, m) = err_at("intervals_goal: (max_sample: 5)", "5)");
    assert!(m.starts_with("max_sample: time 5 needs a unit"), "{m}");
    let (_, m) = err_at(
        "intervals_goal: (min_sample: \"2 s\", max_sample: \"1 s\")",
        "\"1 s\"",
    );
    assert_eq!(
        m,
        "max_sample: min_sample (2000000 us) is longer than max_sample (1000000 us)"
    );
    // Against a default bound, the written one is pointed at and the default named.
    let (_, m) = err_at("intervals_goal: (min_sample: \"20 s\")", "\"20 s\"");
    assert!(m.contains("max_sample (10000000 us (the default))"), "{m}");
    // The section's own sample interval must lie inside the bounds.
    let (_, m) = err_at("sample: \"1 ms\", intervals_goal: ()", "\"1 ms\"");
    assert_eq!(
        m,
        "sample: 1000 us is outside the intervals goal's range: min_sample 5000 us (the default), max_sample 10000000 us (the default)"
    );
    let (_, m) = err_at("intervals_goal: (acess: \"4%\")", "acess");
    assert!(m.contains("acess"), "{m}");
}
