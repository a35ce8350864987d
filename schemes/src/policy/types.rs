//! The checked policy: what [`super::Policy::from_str`] returns, with units resolved to
//! bytes, µs, basis points and per-mille, and [`PolicyError`], its mistakes placed in the file.

use crate::action::Action;
use crate::locate::Pos;
use crate::units::{Age, Freq};
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A policy mistake, or the file could not be read.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{}:{}: {message}", path.display(), pos.line, pos.column)]
    At {
        path: PathBuf,
        pos: Pos,
        message: String,
    },
}

impl PolicyError {
    pub fn at(path: &Path, pos: Pos, message: impl Into<String>) -> Self {
        PolicyError::At {
            path: path.to_path_buf(),
            pos,
            message: message.into(),
        }
    }
    /// 1-based line of the mistake (0 for I/O errors).
    pub fn line(&self) -> usize {
        match self {
            PolicyError::At { pos, .. } => pos.line,
            PolicyError::Io { .. } => 0,
        }
    }
    /// 1-based column (in characters) of the mistake (0 for I/O errors).
    pub fn column(&self) -> usize {
        match self {
            PolicyError::At { pos, .. } => pos.column,
            PolicyError::Io { .. } => 0,
        }
    }
    pub fn message(&self) -> String {
        match self {
            PolicyError::At { message, .. } => message.clone(),
            PolicyError::Io { source, .. } => source.to_string(),
        }
    }
}

/// A checked policy file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    pub monitor: Option<MonitorSection>,
    pub schemes: Vec<SchemeSpec>,
    /// The file it came from (for error messages found later, e.g. a missing goal source).
    pub origin: PathBuf,
}

/// Monitoring attribute overrides (`monitor: (...)`). CLI flags override these in turn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MonitorSection {
    pub sample_us: Option<u64>,
    pub aggr_us: Option<u64>,
    pub update_us: Option<u64>,
    pub min_regions: Option<u32>,
    pub max_regions: Option<u32>,
    /// `intervals_goal: (...)`: interval auto-tuning on, with the fields written.
    pub intervals_goal: Option<engine::IntervalsGoalOverride>,
}

/// One scheme.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SchemeSpec {
    pub name: String,
    pub pattern: AccessPattern,
    pub action: Action,
    /// `apply_interval_us` (mm/damon/core.c 6.7+); `None` = the aggregation interval.
    pub apply_interval_us: Option<u64>,
    pub quota: QuotaSpec,
    pub watermarks: Option<WmarkSpec>,
    pub filters: Vec<FilterSpec>,
    /// Where the scheme starts in the file.
    pub pos: Pos,
}

/// `struct damos_access_pattern`: all bounds inclusive (`__damos_valid_target`, core.c 6.12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AccessPattern {
    pub min_sz: u64,
    pub max_sz: u64,
    pub min_freq: Freq,
    pub max_freq: Freq,
    pub min_age: Age,
    pub max_age: Age,
}

impl Default for AccessPattern {
    fn default() -> Self {
        Self {
            min_sz: 0,
            max_sz: u64::MAX,
            min_freq: Freq::Count(0),
            max_freq: Freq::Count(u32::MAX),
            min_age: Age::Aggregations(0),
            max_age: Age::Aggregations(u32::MAX),
        }
    }
}

/// Prioritization weights (`weight_sz` is accepted and ignored, as in the kernel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Weights {
    pub size: u32,
    pub accesses: u32,
    pub age: u32,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            size: 0,
            accesses: 1,
            age: 1,
        }
    }
}

/// `struct damos_quota` (include/linux/damon.h 6.12), times in µs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QuotaSpec {
    /// Time quota: actuation time per reset interval, µs (0 = none).
    pub time_us: u64,
    /// Size quota: bytes per reset interval (0 = none).
    pub size: u64,
    pub reset_interval_us: u64,
    pub weights: Weights,
    pub goals: Vec<GoalSpec>,
}

impl Default for QuotaSpec {
    fn default() -> Self {
        Self {
            time_us: 0,
            size: 0,
            reset_interval_us: 1_000_000,
            weights: Weights::default(),
            goals: Vec::new(),
        }
    }
}

impl QuotaSpec {
    /// True when any quota applies (`damos_adjust_quota()`'s early return, core.c 6.12).
    pub fn is_set(&self) -> bool {
        self.time_us != 0 || self.size != 0 || !self.goals.is_empty()
    }
}

/// What a quota goal measures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalMetric {
    /// A value the driver sets (`Schemes::set_user_input`).
    UserInput,
    /// Growth of `some` memory stall time (µs) per reset interval, system-wide or of one
    /// cgroup v2 group's `memory.pressure`.
    SomeMemPsiUs { cgroup: Option<String> },
    /// Used memory of a NUMA node (or the system), basis points.
    NodeMemUsedBp { node: Option<u32> },
    /// Free memory of a NUMA node (or the system), basis points.
    NodeMemFreeBp { node: Option<u32> },
    /// A cgroup's memory usage over its limit, basis points.
    CgroupMemUsedBp { cgroup: String },
    /// The share of what the scheme paged out that its targets brought back, basis points
    /// (madvd's refault guard, [`crate::refault`]): repeat refaults (pages that came back
    /// before) of the last `window_us`, first refaults of the last `first_window_us`
    /// (≤ `window_us`).
    RefaultRate {
        window_us: u64,
        first_window_us: u64,
    },
}

impl GoalMetric {
    pub fn name(&self) -> &'static str {
        match self {
            GoalMetric::UserInput => "user_input",
            GoalMetric::SomeMemPsiUs { .. } => "some_mem_psi_us",
            GoalMetric::NodeMemUsedBp { .. } => "node_mem_used_bp",
            GoalMetric::NodeMemFreeBp { .. } => "node_mem_free_bp",
            GoalMetric::CgroupMemUsedBp { .. } => "cgroup_mem_used_bp",
            GoalMetric::RefaultRate { .. } => "refault_rate",
        }
    }
    pub fn is_refault_rate(&self) -> bool {
        matches!(self, GoalMetric::RefaultRate { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoalSpec {
    pub metric: GoalMetric,
    pub target: u64,
    /// Initial current value (user_input only).
    pub current: u64,
    /// Where the goal names its source (its `cgroup`, `node` or `metric` value).
    pub pos: Pos,
}

/// `struct damos_watermarks` with metric `free_mem_rate` (‰), interval in µs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct WmarkSpec {
    pub interval_us: u64,
    /// Where the `watermarks` section starts (errors about its metric source point here).
    pub pos: Pos,
    pub high: u64,
    pub mid: u64,
    pub low: u64,
}

/// What a filter matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterKind {
    /// Page level: anonymous pages.
    Anon,
    /// Page level: pages accessed since the last check.
    Young,
    /// Region level: an address range `[start, end)`.
    Addr { start: u64, end: u64 },
    /// Region level: one target.
    Target(u32),
    /// Target level: targets in this cgroup (or below it).
    Cgroup(String),
}

impl FilterKind {
    /// Page-level (the kernel's "ops layer") filters; the others work on whole regions or
    /// targets and are evaluated by [`crate::Schemes::plan`] ("core layer").
    pub fn is_page_level(&self) -> bool {
        matches!(self, FilterKind::Anon | FilterKind::Young)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilterSpec {
    pub kind: FilterKind,
    pub matching: bool,
    pub allow: bool,
}
