#![allow(dead_code)]
//! A simulated system whose memory pressure responds to how much a pageout scheme reclaims:
//! each charge window (1 s) the stall time grows by `LAG` of last window's stall plus the
//! rest from the bytes paged out in this window (`STALL_US_PER_MIB` µs per MiB). The
//! scheme's `some_mem_psi_us` goal (target 10 ms per second) tunes its quota with the
//! kernel's feedback loop. Used by `tests/goal_feedback.rs` and `examples/goal_curve.rs`.

use engine::{Attrs, Region, Snapshot, TargetId, TargetSnapshot};
use schemes::{FakeMetrics, Policy, Schemes};
use std::path::Path;

pub const TARGET_US: u64 = 10_000;
pub const STALL_US_PER_MIB: f64 = 40.0;
pub const LAG: f64 = 0.5;

/// One charge window of the simulation.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub index: usize,
    /// Effective size quota during the window, bytes.
    pub quota: u64,
    /// Bytes the scheme asked to page out in the window.
    pub paged_out: u64,
    /// The goal's metric as the scheme measured it at the start of the next window, µs.
    pub psi_us: u64,
}

pub const POLICY: &str = r#"(
    monitor: (sample: "5 ms", aggr: "100 ms"),
    schemes: [(
        name: "reclaim-psi",
        pattern: (accesses: (max: 0), age: (min: "10 s")),
        action: pageout,
        quota: (
            reset_interval: "1 s",
            goals: [(metric: some_mem_psi_us, target: "10 ms")],
        ),
    )],
)"#;

/// Run `windows` charge windows; returns one record per window.
pub fn run(windows: usize) -> Vec<Window> {
    let policy = Policy::from_str(POLICY, Path::new("goal_sim.ron")).unwrap();
    let env = FakeMetrics::new();
    env.set_psi_total_us(None, 0);
    let mut schemes = Schemes::new(&policy, Box::new(env.clone())).unwrap();
    let attrs = Attrs::default();
    // 64 GiB of idle memory in 16 MiB regions: more than the quota ever reaches.
    let regions: Vec<Region> = (0..4096u64)
        .map(|i| {
            let mut r = Region::new(i << 24, (i + 1) << 24);
            r.age = 1000;
            r
        })
        .collect();
    let aggrs_per_window = 10u64;
    let mut stall = 0.0f64;
    let mut out = Vec::with_capacity(windows);
    for w in 0..windows {
        let mut paged = 0u64;
        let mut quota = 0;
        for a in 0..aggrs_per_window {
            let now = (w as u64 * aggrs_per_window + a + 1) * attrs.aggr_us;
            let snap = Snapshot {
                now_us: now,
                aggregation: now / attrs.aggr_us,
                aggregated: true,
                attrs,
                targets: vec![TargetSnapshot {
                    target: TargetId(1),
                    regions: regions.clone(),
                }],
            };
            let reqs = schemes.plan(&snap, now);
            paged += reqs.iter().map(|r| r.range.len()).sum::<u64>();
            quota = schemes.stats()[0].effective_quota;
        }
        // The plant: stall time of this window.
        stall = LAG * stall + (1.0 - LAG) * STALL_US_PER_MIB * paged as f64 / (1u64 << 20) as f64;
        env.add_psi_us(None, stall.round() as u64);
        out.push(Window {
            index: w,
            quota,
            paged_out: paged,
            psi_us: 0,
        });
        if w > 0 {
            // The value measured at the start of this window is the previous window's stall.
            out[w - 1].psi_us = schemes.stats()[0].goal_values[0];
        }
    }
    // Measure the last window too (the next window's start).
    out.pop();
    out
}
