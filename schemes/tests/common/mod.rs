//! Shared test support: synthetic snapshots and a goal-feedback plant.
#![allow(dead_code)]

pub mod goal_sim;

use engine::{Attrs, Region, Snapshot, TargetId, TargetSnapshot};
use schemes::{Policy, SchemeSpec};
use std::path::Path;

pub const PAGE: u64 = 4096;

pub fn region(start: u64, size: u64, nr_accesses: u32, age: u32) -> Region {
    let mut r = Region::new(start, start + size);
    r.nr_accesses = nr_accesses;
    r.nr_accesses_bp = nr_accesses * 10_000;
    r.last_nr_accesses = nr_accesses;
    r.age = age;
    r.nr_known = 20;
    r
}

pub fn snapshot(now_us: u64, targets: Vec<(u32, Vec<Region>)>) -> Snapshot {
    let attrs = Attrs::default();
    Snapshot {
        now_us,
        aggregation: now_us / attrs.aggr_us,
        aggregated: true,
        attrs,
        targets: targets
            .into_iter()
            .map(|(t, regions)| TargetSnapshot {
                target: TargetId(t),
                regions,
            })
            .collect(),
    }
}

pub fn policy(text: &str) -> Policy {
    Policy::from_str(text, Path::new("test.ron")).unwrap_or_else(|e| panic!("{e}"))
}

pub fn one_scheme(body: &str) -> Policy {
    policy(&format!("(schemes: [(name: \"s\", {body})])"))
}

pub fn spec(p: &Policy) -> &SchemeSpec {
    &p.schemes[0]
}
