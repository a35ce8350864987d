//! The policy file: RON, read with `ron` + `serde` into raw structures, then checked field by
//! field into [`Policy`]. Every mistake is reported as `path:line:column: message`, the
//! message naming the field. `docs/policy-format.md` documents the format.
//!
//! Structure errors (unknown field, missing field, unknown action, bad syntax) carry `ron`'s
//! span. Value errors (unit, sign, min > max, watermark order, goal fields) are found after
//! deserializing and placed with [`Locator`], which knows where every field's value starts.

use crate::action::Action;
use crate::locate::{Locator, Pos};
use crate::units::{self, Age, Freq, Quantity};
use engine::Attrs;
use serde::{Deserialize, Serialize};
use std::fmt;
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

// ---------------------------------------------------------------------------------------
// Checked policy.

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
}

impl GoalMetric {
    pub fn name(&self) -> &'static str {
        match self {
            GoalMetric::UserInput => "user_input",
            GoalMetric::SomeMemPsiUs { .. } => "some_mem_psi_us",
            GoalMetric::NodeMemUsedBp { .. } => "node_mem_used_bp",
            GoalMetric::NodeMemFreeBp { .. } => "node_mem_free_bp",
            GoalMetric::CgroupMemUsedBp { .. } => "cgroup_mem_used_bp",
        }
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

// ---------------------------------------------------------------------------------------
// Raw file structures.

#[derive(Deserialize)]
#[serde(rename = "Policy", deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    monitor: Option<RawMonitor>,
    schemes: Vec<RawScheme>,
}

#[derive(Deserialize)]
#[serde(rename = "Monitor", deny_unknown_fields)]
struct RawMonitor {
    #[serde(default)]
    sample: Option<Quantity>,
    #[serde(default)]
    aggr: Option<Quantity>,
    #[serde(default)]
    update: Option<Quantity>,
    #[serde(default)]
    min_regions: Option<Quantity>,
    #[serde(default)]
    max_regions: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Scheme", deny_unknown_fields)]
struct RawScheme {
    name: String,
    pattern: RawPattern,
    action: Action,
    #[serde(default)]
    apply_interval: Option<Quantity>,
    #[serde(default)]
    quota: Option<RawQuota>,
    #[serde(default)]
    watermarks: Option<RawWmarks>,
    #[serde(default)]
    filters: Vec<RawFilter>,
}

#[derive(Deserialize, Default)]
#[serde(rename = "Range", deny_unknown_fields)]
struct RawRange {
    #[serde(default)]
    min: Option<Quantity>,
    #[serde(default)]
    max: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Pattern", deny_unknown_fields)]
struct RawPattern {
    #[serde(default)]
    size: Option<RawRange>,
    #[serde(default)]
    accesses: Option<RawRange>,
    #[serde(default)]
    age: Option<RawRange>,
}

#[derive(Deserialize)]
#[serde(rename = "Weights", deny_unknown_fields)]
struct RawWeights {
    #[serde(default)]
    size: Option<Quantity>,
    #[serde(default)]
    accesses: Option<Quantity>,
    #[serde(default)]
    age: Option<Quantity>,
}

#[derive(Deserialize)]
#[serde(rename = "Quota", deny_unknown_fields)]
struct RawQuota {
    #[serde(default)]
    time: Option<Quantity>,
    #[serde(default)]
    size: Option<Quantity>,
    #[serde(default)]
    reset_interval: Option<Quantity>,
    #[serde(default)]
    weights: Option<RawWeights>,
    #[serde(default)]
    goals: Vec<RawGoal>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename = "metric", rename_all = "snake_case")]
enum RawGoalMetric {
    UserInput,
    SomeMemPsiUs,
    NodeMemUsedBp,
    NodeMemFreeBp,
    CgroupMemUsedBp,
}

#[derive(Deserialize)]
#[serde(rename = "Goal", deny_unknown_fields)]
struct RawGoal {
    metric: RawGoalMetric,
    target: Quantity,
    #[serde(default)]
    current: Option<Quantity>,
    #[serde(default)]
    node: Option<u32>,
    #[serde(default)]
    cgroup: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename = "watermark metric", rename_all = "snake_case")]
enum RawWmarkMetric {
    FreeMemRate,
}

#[derive(Deserialize)]
#[serde(rename = "Watermarks", deny_unknown_fields)]
struct RawWmarks {
    #[serde(default)]
    metric: Option<RawWmarkMetric>,
    interval: Quantity,
    high: Quantity,
    mid: Quantity,
    low: Quantity,
}

#[derive(Deserialize)]
#[serde(rename = "filter kind", rename_all = "snake_case")]
enum RawFilterKind {
    Anon,
    Young,
    Addr { start: Quantity, end: Quantity },
    Target(u32),
    Cgroup(String),
}

#[derive(Deserialize)]
#[serde(rename = "Filter", deny_unknown_fields)]
struct RawFilter {
    kind: RawFilterKind,
    #[serde(default)]
    matching: Option<bool>,
    #[serde(default)]
    allow: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Parsing.

/// Largest policy file accepted (a policy is a few KiB; this bounds parse time and memory).
pub const MAX_POLICY_BYTES: usize = 1 << 20;

impl Policy {
    /// Parse and check policy text. `origin` names the file in errors. Pure: no I/O.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, origin: &Path) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::at(
                origin,
                Pos { line: 1, column: 1 },
                format!(
                    "file is {} bytes, larger than the {} bytes a policy may have",
                    text.len(),
                    MAX_POLICY_BYTES
                ),
            ));
        }
        let opts = ron::Options::default()
            .with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME)
            .with_recursion_limit(64);
        let raw: RawPolicy = opts.from_str(text).map_err(|e| ron_error(e, origin))?;
        let loc = Locator::new(text);
        let mut cx = Checker { loc: &loc, origin };
        cx.policy(raw)
    }

    /// Read and parse a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let s = String::from_utf8_lossy(valid);
            let line = 1 + s.matches('\n').count();
            let column = 1 + s.rsplit('\n').next().map_or(0, |l| l.chars().count());
            PolicyError::at(path, Pos { line, column }, "file is not valid UTF-8")
        })?;
        Policy::from_str(&text, path)
    }

    /// Apply the `monitor` section to `attrs` (fields not given stay as they are).
    pub fn apply_monitor_overrides(&self, attrs: &mut Attrs) {
        if let Some(m) = &self.monitor {
            if let Some(v) = m.sample_us {
                attrs.sample_us = v;
            }
            if let Some(v) = m.aggr_us {
                attrs.aggr_us = v;
            }
            if let Some(v) = m.update_us {
                attrs.ops_update_us = v;
            }
            if let Some(v) = m.min_regions {
                attrs.min_nr_regions = v;
            }
            if let Some(v) = m.max_regions {
                attrs.max_nr_regions = v;
            }
        }
    }

    /// Index of the scheme named `name`.
    pub fn scheme_index(&self, name: &str) -> Option<usize> {
        self.schemes.iter().position(|s| s.name == name)
    }
}

/// A `ron` error as `path:line:column: message` (also used for the agent's config file).
pub fn ron_error(e: ron::error::SpannedError, origin: &Path) -> PolicyError {
    use ron::error::Error as E;
    let pos = Pos {
        line: e.span.start.line.max(1),
        column: e.span.start.col.max(1),
    };
    let list = |xs: &[&str]| xs.join(", ");
    let what = |outer: &Option<String>| outer.clone().unwrap_or_else(|| "value".into());
    let message = match &e.code {
        E::NoSuchEnumVariant {
            expected,
            found,
            outer,
        } => {
            let kind = what(outer).to_lowercase();
            let hint = if kind == "action"
                && matches!(
                    found.as_str(),
                    "dontneed" | "free" | "remove" | "hugepage" | "nohugepage"
                ) {
                " (madvd only applies non-destructive advice that Linux accepts for another process)"
            } else {
                ""
            };
            format!(
                "unknown {kind} `{found}`, expected one of {}{hint}",
                list(expected)
            )
        }
        E::NoSuchStructField {
            expected,
            found,
            outer,
        } => {
            format!(
                "unknown field `{found}` in {}, expected one of {}",
                what(outer),
                list(expected)
            )
        }
        E::MissingStructField { field, outer } => {
            format!("missing field `{field}` in {}", what(outer))
        }
        E::DuplicateStructField { field, outer } => {
            format!("field `{field}` given twice in {}", what(outer))
        }
        E::ExpectedDifferentStructName { expected, found } => {
            format!("expected a `{expected}` here, found `{found}`")
        }
        other => other.to_string(),
    };
    PolicyError::At {
        path: origin.to_path_buf(),
        pos,
        message,
    }
}

struct Checker<'a> {
    loc: &'a Locator,
    origin: &'a Path,
}

impl Checker<'_> {
    fn err(&self, path: &str, msg: impl fmt::Display) -> PolicyError {
        let pos = self.loc.value_pos(path);
        let field = path.rsplit('.').next().unwrap_or(path);
        PolicyError::at(self.origin, pos, format!("{field}: {msg}"))
    }

    fn q<T>(
        &self,
        path: &str,
        q: &Quantity,
        f: impl Fn(&Quantity) -> Result<T, String>,
    ) -> Result<T, PolicyError> {
        f(q).map_err(|m| self.err(path, m))
    }

    fn opt<T>(
        &self,
        path: &str,
        q: &Option<Quantity>,
        f: impl Fn(&Quantity) -> Result<T, String>,
    ) -> Result<Option<T>, PolicyError> {
        q.as_ref().map(|q| self.q(path, q, f)).transpose()
    }

    fn u32_of(q: &Quantity) -> Result<u32, String> {
        match q {
            Quantity::Int(v) if *v < 0 => Err(format!("negative value {v}")),
            Quantity::Int(v) => u32::try_from(*v).map_err(|_| format!("{v} is too large")),
            other => Err(format!("expected a whole number, got {other}")),
        }
    }

    fn policy(&mut self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let monitor = raw.monitor.as_ref().map(|m| self.monitor(m)).transpose()?;
        let mut schemes = Vec::with_capacity(raw.schemes.len());
        for (i, s) in raw.schemes.into_iter().enumerate() {
            let path = format!("schemes[{i}]");
            let spec = self.scheme(&path, s)?;
            if let Some(j) = schemes
                .iter()
                .position(|o: &SchemeSpec| o.name == spec.name)
            {
                return Err(self.err(
                    &format!("{path}.name"),
                    format!("scheme name {:?} is already used by scheme {j}", spec.name),
                ));
            }
            schemes.push(spec);
        }
        Ok(Policy {
            monitor,
            schemes,
            origin: self.origin.to_path_buf(),
        })
    }

    fn monitor(&self, m: &RawMonitor) -> Result<MonitorSection, PolicyError> {
        let p = "monitor";
        let out = MonitorSection {
            sample_us: self.opt(&format!("{p}.sample"), &m.sample, units::time_us)?,
            aggr_us: self.opt(&format!("{p}.aggr"), &m.aggr, units::time_us)?,
            update_us: self.opt(&format!("{p}.update"), &m.update, units::time_us)?,
            min_regions: self.opt(&format!("{p}.min_regions"), &m.min_regions, Self::u32_of)?,
            max_regions: self.opt(&format!("{p}.max_regions"), &m.max_regions, Self::u32_of)?,
        };
        // The checks of damon_set_attrs() (mm/damon/core.c 6.12), where both sides are given.
        if out.sample_us == Some(0) {
            return Err(self.err("monitor.sample", "must be greater than zero"));
        }
        if let (Some(s), Some(a)) = (out.sample_us, out.aggr_us) {
            if s > a {
                return Err(self.err("monitor.aggr", format!("aggregation interval ({a} us) is shorter than the sample interval ({s} us)")));
            }
        }
        if let Some(n) = out.min_regions {
            if n < 3 {
                return Err(self.err("monitor.min_regions", format!("is {n}, must be at least 3")));
            }
        }
        if let (Some(lo), Some(hi)) = (out.min_regions, out.max_regions) {
            if lo > hi {
                return Err(self.err(
                    "monitor.max_regions",
                    format!("max_regions ({hi}) is smaller than min_regions ({lo})"),
                ));
            }
        }
        Ok(out)
    }

    fn scheme(&self, p: &str, s: RawScheme) -> Result<SchemeSpec, PolicyError> {
        if s.name.trim().is_empty() {
            return Err(self.err(&format!("{p}.name"), "must not be empty"));
        }
        let pattern = self.pattern(&format!("{p}.pattern"), &s.pattern)?;
        let apply_interval_us = self.opt(
            &format!("{p}.apply_interval"),
            &s.apply_interval,
            units::time_us,
        )?;
        if apply_interval_us == Some(0) {
            return Err(self.err(
                &format!("{p}.apply_interval"),
                "must be greater than zero (leave it out to use the aggregation interval)",
            ));
        }
        let quota = match &s.quota {
            Some(q) => self.quota(&format!("{p}.quota"), q)?,
            None => QuotaSpec::default(),
        };
        let watermarks = s
            .watermarks
            .as_ref()
            .map(|w| self.wmarks(&format!("{p}.watermarks"), w))
            .transpose()?;
        let filters = s
            .filters
            .iter()
            .enumerate()
            .map(|(i, f)| self.filter(&format!("{p}.filters[{i}]"), f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SchemeSpec {
            name: s.name,
            pattern,
            action: s.action,
            apply_interval_us,
            quota,
            watermarks,
            filters,
            pos: self.loc.value_pos(p),
        })
    }

    fn range<T: Copy>(
        &self,
        p: &str,
        r: &Option<RawRange>,
        parse: impl Fn(&Quantity) -> Result<T, String>,
        default: (T, T),
    ) -> Result<(T, T), PolicyError> {
        let Some(r) = r else { return Ok(default) };
        let min = self
            .opt(&format!("{p}.min"), &r.min, &parse)?
            .unwrap_or(default.0);
        let max = self
            .opt(&format!("{p}.max"), &r.max, &parse)?
            .unwrap_or(default.1);
        Ok((min, max))
    }

    fn pattern(&self, p: &str, raw: &RawPattern) -> Result<AccessPattern, PolicyError> {
        let d = AccessPattern::default();
        let (min_sz, max_sz) = self.range(
            &format!("{p}.size"),
            &raw.size,
            units::size,
            (d.min_sz, d.max_sz),
        )?;
        if min_sz > max_sz {
            return Err(self.err(
                &format!("{p}.size.max"),
                format!("max ({max_sz} bytes) is smaller than min ({min_sz} bytes)"),
            ));
        }
        let (min_freq, max_freq) = self.range(
            &format!("{p}.accesses"),
            &raw.accesses,
            units::freq,
            (d.min_freq, d.max_freq),
        )?;
        let freq_conflict = match (min_freq, max_freq) {
            (Freq::Count(a), Freq::Count(b)) => a > b,
            (Freq::MaxBp(a), Freq::MaxBp(b)) => a > b,
            _ => false, // compared once the monitoring attributes are known
        };
        if freq_conflict {
            return Err(self.err(&format!("{p}.accesses.max"), "max is smaller than min"));
        }
        let (min_age, max_age) = self.range(
            &format!("{p}.age"),
            &raw.age,
            units::age,
            (d.min_age, d.max_age),
        )?;
        let age_conflict = match (min_age, max_age) {
            (Age::Aggregations(a), Age::Aggregations(b)) => a > b,
            (Age::TimeUs(a), Age::TimeUs(b)) => a > b,
            _ => false,
        };
        if age_conflict {
            return Err(self.err(&format!("{p}.age.max"), "max is smaller than min"));
        }
        Ok(AccessPattern {
            min_sz,
            max_sz,
            min_freq,
            max_freq,
            min_age,
            max_age,
        })
    }

    fn quota(&self, p: &str, q: &RawQuota) -> Result<QuotaSpec, PolicyError> {
        let d = QuotaSpec::default();
        let time_us = self
            .opt(&format!("{p}.time"), &q.time, units::time_us)?
            .unwrap_or(0);
        let size = self
            .opt(&format!("{p}.size"), &q.size, units::size)?
            .unwrap_or(0);
        let reset_interval_us = self
            .opt(
                &format!("{p}.reset_interval"),
                &q.reset_interval,
                units::time_us,
            )?
            .unwrap_or(d.reset_interval_us);
        if reset_interval_us == 0 {
            return Err(self.err(&format!("{p}.reset_interval"), "must be greater than zero"));
        }
        let weights = match &q.weights {
            None => d.weights,
            Some(w) => {
                let wp = format!("{p}.weights");
                Weights {
                    size: self
                        .opt(&format!("{wp}.size"), &w.size, Self::u32_of)?
                        .unwrap_or(0),
                    accesses: self
                        .opt(&format!("{wp}.accesses"), &w.accesses, Self::u32_of)?
                        .unwrap_or(0),
                    age: self
                        .opt(&format!("{wp}.age"), &w.age, Self::u32_of)?
                        .unwrap_or(0),
                }
            }
        };
        let goals = q
            .goals
            .iter()
            .enumerate()
            .map(|(i, g)| self.goal(&format!("{p}.goals[{i}]"), g))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(QuotaSpec {
            time_us,
            size,
            reset_interval_us,
            weights,
            goals,
        })
    }

    fn goal(&self, p: &str, g: &RawGoal) -> Result<GoalSpec, PolicyError> {
        use RawGoalMetric as M;
        let tp = format!("{p}.target");
        let target = match g.metric {
            M::SomeMemPsiUs => self.q(&tp, &g.target, units::time_us)?,
            M::UserInput => self.q(&tp, &g.target, |q| match q {
                Quantity::Int(v) if *v < 0 => Err(format!("negative target {v}")),
                Quantity::Int(v) => u64::try_from(*v).map_err(|_| "too large".into()),
                other => Err(format!("expected a whole number, got {other}")),
            })?,
            _ => self.q(&tp, &g.target, units::basis_points)?,
        };
        if target == 0 {
            // damos_quota_score() divides by the target value.
            return Err(self.err(&tp, "must be greater than zero"));
        }
        if matches!(
            g.metric,
            M::NodeMemUsedBp | M::NodeMemFreeBp | M::CgroupMemUsedBp
        ) && target > 10_000
        {
            return Err(self.err(&tp, format!("{target} bp is above 100%")));
        }
        let current = match (&g.current, g.metric) {
            (None, _) => 0,
            (Some(c), M::UserInput) => self.q(&format!("{p}.current"), c, |q| match q {
                Quantity::Int(v) if *v >= 0 => u64::try_from(*v).map_err(|_| "too large".into()),
                other => Err(format!("expected a non-negative whole number, got {other}")),
            })?,
            (Some(_), _) => {
                return Err(self.err(
                    &format!("{p}.current"),
                    "only a user_input goal takes a current value",
                ))
            }
        };
        let node_ok = matches!(g.metric, M::NodeMemUsedBp | M::NodeMemFreeBp);
        if g.node.is_some() && !node_ok {
            return Err(self.err(
                &format!("{p}.node"),
                "only node_mem_used_bp and node_mem_free_bp goals take a node",
            ));
        }
        let cg_ok = matches!(g.metric, M::SomeMemPsiUs | M::CgroupMemUsedBp);
        if g.cgroup.is_some() && !cg_ok {
            return Err(self.err(
                &format!("{p}.cgroup"),
                "only some_mem_psi_us and cgroup_mem_used_bp goals take a cgroup",
            ));
        }
        let metric = match g.metric {
            M::UserInput => GoalMetric::UserInput,
            M::SomeMemPsiUs => GoalMetric::SomeMemPsiUs {
                cgroup: g.cgroup.clone(),
            },
            M::NodeMemUsedBp => GoalMetric::NodeMemUsedBp { node: g.node },
            M::NodeMemFreeBp => GoalMetric::NodeMemFreeBp { node: g.node },
            M::CgroupMemUsedBp => GoalMetric::CgroupMemUsedBp {
                cgroup: g.cgroup.clone().ok_or_else(|| {
                    self.err(
                        &format!("{p}.metric"),
                        "a cgroup_mem_used_bp goal needs `cgroup: \"/path\"`",
                    )
                })?,
            },
        };
        // Errors about the goal's source point at what names the source.
        let src_field = if g.cgroup.is_some() {
            "cgroup"
        } else if g.node.is_some() {
            "node"
        } else {
            "metric"
        };
        Ok(GoalSpec {
            metric,
            target,
            current,
            pos: self.loc.value_pos(&format!("{p}.{src_field}")),
        })
    }

    fn wmarks(&self, p: &str, w: &RawWmarks) -> Result<WmarkSpec, PolicyError> {
        let _ = w.metric.unwrap_or(RawWmarkMetric::FreeMemRate);
        let interval_us = self.q(&format!("{p}.interval"), &w.interval, units::time_us)?;
        let high = self.q(&format!("{p}.high"), &w.high, units::permille)?;
        let mid = self.q(&format!("{p}.mid"), &w.mid, units::permille)?;
        let low = self.q(&format!("{p}.low"), &w.low, units::permille)?;
        if high > 1000 {
            return Err(self.err(&format!("{p}.high"), format!("{high}‰ is above 1000‰")));
        }
        if mid > high {
            return Err(self.err(
                &format!("{p}.mid"),
                format!("mid ({mid}‰) is above high ({high}‰)"),
            ));
        }
        if low > mid {
            return Err(self.err(
                &format!("{p}.low"),
                format!("low ({low}‰) is above mid ({mid}‰)"),
            ));
        }
        Ok(WmarkSpec {
            interval_us,
            high,
            mid,
            low,
            pos: self.loc.value_pos(p),
        })
    }

    fn filter(&self, p: &str, f: &RawFilter) -> Result<FilterSpec, PolicyError> {
        let kind = match &f.kind {
            RawFilterKind::Anon => FilterKind::Anon,
            RawFilterKind::Young => FilterKind::Young,
            RawFilterKind::Target(t) => FilterKind::Target(*t),
            RawFilterKind::Cgroup(c) => {
                if !c.starts_with('/') {
                    return Err(self.err(
                        &format!("{p}.kind"),
                        format!(
                            "cgroup path {c:?} must start with `/` (as /proc/PID/cgroup shows it)"
                        ),
                    ));
                }
                FilterKind::Cgroup(c.clone())
            }
            RawFilterKind::Addr { start, end } => {
                let start = self.q(&format!("{p}.kind.start"), start, units::size)?;
                let end = self.q(&format!("{p}.kind.end"), end, units::size)?;
                if start >= end {
                    return Err(self.err(
                        &format!("{p}.kind.end"),
                        format!("end ({end:#x}) must be above start ({start:#x})"),
                    ));
                }
                FilterKind::Addr { start, end }
            }
        };
        Ok(FilterSpec {
            kind,
            matching: f.matching.unwrap_or(true),
            allow: f.allow.unwrap_or(false),
        })
    }
}
