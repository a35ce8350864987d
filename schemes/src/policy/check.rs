//! The checker: raw structures in, a checked [`Policy`] out, every value mistake placed at
//! its line and column with [`Locator`] and named by its field.

use super::raw::{
    RawFilter, RawFilterKind, RawGoal, RawGoalMetric, RawIntervalsGoal, RawMonitor, RawPattern,
    RawPolicy, RawQuota, RawRange, RawScheme, RawWmarkMetric, RawWmarks,
};
use super::types::{
    AccessPattern, FilterKind, FilterSpec, GoalMetric, GoalSpec, MonitorSection, Policy,
    PolicyError, QuotaSpec, SchemeSpec, Weights, WmarkSpec,
};
use crate::locate::Locator;
use crate::units::{self, Age, Freq, Quantity};
use std::fmt;
use std::path::Path;

pub(super) struct Checker<'a> {
    pub(super) loc: &'a Locator,
    pub(super) origin: &'a Path,
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
        units::whole(q, u32::MAX.into()).map(|v| v as u32)
    }

    pub(super) fn policy(&mut self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let monitor = raw.monitor.as_ref().map(|m| self.monitor(m)).transpose()?;
        if raw.schemes.is_empty() {
            // A policy that can do nothing is a mistake, not a quiet success.
            return Err(self.err(
                "schemes",
                "no schemes: a policy needs at least one (a `stat` scheme only counts)",
            ));
        }
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
            intervals_goal: m
                .intervals_goal
                .as_ref()
                .map(|g| self.intervals_goal(g))
                .transpose()?,
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
        if let Some(g) = out.intervals_goal {
            self.intervals_goal_fits(&g, out.sample_us)?;
        }
        Ok(out)
    }

    /// `monitor.intervals_goal` (Linux 6.15's `damon_intervals_goal`): each field as written.
    fn intervals_goal(
        &self,
        g: &RawIntervalsGoal,
    ) -> Result<engine::IntervalsGoalOverride, PolicyError> {
        let p = "monitor.intervals_goal";
        let access = |q: &Quantity| {
            units::basis_points(q).and_then(|bp| match bp {
                1..=10_000 => Ok(bp as u32),
                _ => Err(format!(
                    "is {bp} bp, must be above 0 and at most 100% (10000 bp)"
                )),
            })
        };
        let nonzero_time = |q: &Quantity| {
            units::time_us(q).and_then(|us| match us {
                0 => Err("must be greater than zero".to_string()),
                us => Ok(us),
            })
        };
        let aggrs = |q: &Quantity| {
            Self::u32_of(q).and_then(|n| match n {
                0 => Err(
                    "must be at least 1 (leave intervals_goal out to turn tuning off)".to_string(),
                ),
                n => Ok(n),
            })
        };
        Ok(engine::IntervalsGoalOverride {
            access_bp: self.opt(&format!("{p}.access"), &g.access, access)?,
            aggrs: self.opt(&format!("{p}.aggrs"), &g.aggrs, aggrs)?,
            min_sample_us: self.opt(&format!("{p}.min_sample"), &g.min_sample, nonzero_time)?,
            max_sample_us: self.opt(&format!("{p}.max_sample"), &g.max_sample, nonzero_time)?,
        })
    }

    /// `damon_valid_intervals_goal()` (mm/damon/core.c 6.15) on what the section settles: the
    /// bounds (the ones not written are the defaults, `engine::IntervalsGoal::default`) in
    /// order, and the section's own `sample` inside them.
    fn intervals_goal_fits(
        &self,
        g: &engine::IntervalsGoalOverride,
        sample_us: Option<u64>,
    ) -> Result<(), PolicyError> {
        let p = "monitor.intervals_goal";
        let r = g.resolve();
        let written = |w: Option<u64>| if w.is_some() { "" } else { " (the default)" };
        if r.min_sample_us > r.max_sample_us {
            let at = if g.max_sample_us.is_some() {
                "max_sample"
            } else {
                "min_sample"
            };
            return Err(self.err(
                &format!("{p}.{at}"),
                format!(
                    "min_sample ({} us{}) is longer than max_sample ({} us{})",
                    r.min_sample_us,
                    written(g.min_sample_us),
                    r.max_sample_us,
                    written(g.max_sample_us)
                ),
            ));
        }
        if let Some(s) = sample_us {
            if !(r.min_sample_us..=r.max_sample_us).contains(&s) {
                return Err(self.err(
                    "monitor.sample",
                    format!(
                        "{s} us is outside the intervals goal's range: min_sample {} us{}, max_sample {} us{}",
                        r.min_sample_us,
                        written(g.min_sample_us),
                        r.max_sample_us,
                        written(g.max_sample_us)
                    ),
                ));
            }
        }
        Ok(())
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
        if let Some(i) = quota.goals.iter().position(|g| g.metric.is_refault_rate()) {
            if s.action != crate::Action::Pageout {
                return Err(self.err(
                    &format!("{p}.quota.goals[{i}].metric"),
                    format!(
                        "a refault_rate goal measures what its scheme pages out; action `{}` \
                         pages nothing out",
                        s.action.name()
                    ),
                ));
            }
        }
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
                q => units::whole(q, u64::MAX),
            })?,
            _ => self.q(&tp, &g.target, units::basis_points)?,
        };
        if target == 0 {
            // damos_quota_score() divides by the target value.
            return Err(self.err(&tp, "must be greater than zero"));
        }
        if matches!(
            g.metric,
            M::NodeMemUsedBp | M::NodeMemFreeBp | M::CgroupMemUsedBp | M::RefaultRate
        ) && target > 10_000
        {
            return Err(self.err(&tp, format!("{target} bp is above 100%")));
        }
        let current = match (&g.current, g.metric) {
            (None, _) => 0,
            (Some(c), M::UserInput) => self.q(&format!("{p}.current"), c, |q| match q {
                Quantity::Int(v) if *v < 0 => {
                    Err(format!("expected a non-negative whole number, got {v}"))
                }
                q => units::whole(q, u64::MAX),
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
        for (field, v) in [("window", &g.window), ("first_window", &g.first_window)] {
            if v.is_some() && g.metric != M::RefaultRate {
                return Err(self.err(
                    &format!("{p}.{field}"),
                    format!("only a refault_rate goal takes a {field}"),
                ));
            }
        }
        let metric = match g.metric {
            M::RefaultRate => {
                let wp = format!("{p}.window");
                let window_us = self
                    .opt(&wp, &g.window, units::time_us)?
                    .unwrap_or(crate::refault::DEFAULT_WINDOW_US);
                if window_us == 0 {
                    return Err(self.err(&wp, "must be greater than zero"));
                }
                let fp = format!("{p}.first_window");
                let first_window_us = self.opt(&fp, &g.first_window, units::time_us)?;
                if first_window_us == Some(0) {
                    return Err(self.err(&fp, "must be greater than zero"));
                }
                if first_window_us.is_some_and(|f| f > window_us) {
                    return Err(self.err(
                        &fp,
                        "must not be longer than the window (a first refault is not remembered \
                         longer than a repeat)",
                    ));
                }
                let first_window_us = first_window_us
                    .unwrap_or(crate::refault::DEFAULT_FIRST_WINDOW_US.min(window_us));
                GoalMetric::RefaultRate {
                    window_us,
                    first_window_us,
                }
            }
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
