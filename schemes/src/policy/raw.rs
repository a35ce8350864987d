//! The policy file as written: `serde` structures that `ron` fills, before any value is
//! checked. Numbers with units stay [`Quantity`]s here; [`super::check`] turns them into the
//! checked [`super::Policy`].

use crate::action::Action;
use crate::units::Quantity;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename = "Policy", deny_unknown_fields)]
pub(super) struct RawPolicy {
    #[serde(default)]
    pub(super) monitor: Option<RawMonitor>,
    pub(super) schemes: Vec<RawScheme>,
}

#[derive(Deserialize)]
#[serde(rename = "Monitor", deny_unknown_fields)]
pub(super) struct RawMonitor {
    #[serde(default)]
    pub(super) sample: Option<Quantity>,
    #[serde(default)]
    pub(super) aggr: Option<Quantity>,
    #[serde(default)]
    pub(super) update: Option<Quantity>,
    #[serde(default)]
    pub(super) min_regions: Option<Quantity>,
    #[serde(default)]
    pub(super) max_regions: Option<Quantity>,
    #[serde(default)]
    pub(super) intervals_goal: Option<RawIntervalsGoal>,
}

#[derive(Deserialize)]
#[serde(rename = "IntervalsGoal", deny_unknown_fields)]
pub(super) struct RawIntervalsGoal {
    #[serde(default)]
    pub(super) access: Option<Quantity>,
    #[serde(default)]
    pub(super) aggrs: Option<Quantity>,
    #[serde(default)]
    pub(super) min_sample: Option<Quantity>,
    #[serde(default)]
    pub(super) max_sample: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Scheme", deny_unknown_fields)]
pub(super) struct RawScheme {
    pub(super) name: String,
    pub(super) pattern: RawPattern,
    pub(super) action: Action,
    #[serde(default)]
    pub(super) apply_interval: Option<Quantity>,
    #[serde(default)]
    pub(super) quota: Option<RawQuota>,
    #[serde(default)]
    pub(super) watermarks: Option<RawWmarks>,
    #[serde(default)]
    pub(super) filters: Vec<RawFilter>,
}

#[derive(Deserialize, Default)]
#[serde(rename = "Range", deny_unknown_fields)]
pub(super) struct RawRange {
    #[serde(default)]
    pub(super) min: Option<Quantity>,
    #[serde(default)]
    pub(super) max: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Pattern", deny_unknown_fields)]
pub(super) struct RawPattern {
    #[serde(default)]
    pub(super) size: Option<RawRange>,
    #[serde(default)]
    pub(super) accesses: Option<RawRange>,
    #[serde(default)]
    pub(super) age: Option<RawRange>,
}

#[derive(Deserialize)]
#[serde(rename = "Weights", deny_unknown_fields)]
pub(super) struct RawWeights {
    #[serde(default)]
    pub(super) size: Option<Quantity>,
    #[serde(default)]
    pub(super) accesses: Option<Quantity>,
    #[serde(default)]
    pub(super) age: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Quota", deny_unknown_fields)]
pub(super) struct RawQuota {
    #[serde(default)]
    pub(super) time: Option<Quantity>,
    #[serde(default)]
    pub(super) size: Option<Quantity>,
    #[serde(default)]
    pub(super) reset_interval: Option<Quantity>,
    #[serde(default)]
    pub(super) weights: Option<RawWeights>,
    #[serde(default)]
    pub(super) goals: Vec<RawGoal>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename = "metric", rename_all = "snake_case")]
pub(super) enum RawGoalMetric {
    UserInput,
    SomeMemPsiUs,
    NodeMemUsedBp,
    NodeMemFreeBp,
    CgroupMemUsedBp,
    RefaultRate,
}

#[derive(Deserialize)]
#[serde(rename = "Goal", deny_unknown_fields)]
pub(super) struct RawGoal {
    pub(super) metric: RawGoalMetric,
    pub(super) target: Quantity,
    #[serde(default)]
    pub(super) current: Option<Quantity>,
    #[serde(default)]
    pub(super) node: Option<u32>,
    #[serde(default)]
    pub(super) cgroup: Option<String>,
    /// `refault_rate` only: how long a repeat refault is remembered.
    #[serde(default)]
    pub(super) window: Option<Quantity>,
    /// `refault_rate` only: how long a first refault is remembered.
    #[serde(default)]
    pub(super) first_window: Option<Quantity>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename = "watermark metric", rename_all = "snake_case")]
pub(super) enum RawWmarkMetric {
    FreeMemRate,
}

#[derive(Deserialize)]
#[serde(rename = "Watermarks", deny_unknown_fields)]
pub(super) struct RawWmarks {
    #[serde(default)]
    pub(super) metric: Option<RawWmarkMetric>,
    pub(super) interval: Quantity,
    pub(super) high: Quantity,
    pub(super) mid: Quantity,
    pub(super) low: Quantity,
}

#[derive(Deserialize)]
#[serde(rename = "filter kind", rename_all = "snake_case")]
pub(super) enum RawFilterKind {
    Anon,
    Young,
    Addr { start: Quantity, end: Quantity },
    Target(u32),
    Cgroup(String),
}

#[derive(Deserialize)]
#[serde(rename = "Filter", deny_unknown_fields)]
pub(super) struct RawFilter {
    pub(super) kind: RawFilterKind,
    #[serde(default)]
    pub(super) matching: Option<bool>,
    #[serde(default)]
    pub(super) allow: Option<bool>,
}
