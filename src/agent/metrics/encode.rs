//! The one place the metric structs become exposition text, through `prometheus-client`: a
//! [`Collector`] over a snapshot of [`AgentMetrics`], encoded as OpenMetrics 1.0 text (what
//! Prometheus asks for) or as the Prometheus text format 0.0.4 (everything else: `curl`,
//! `promtool check metrics`, node_exporter's textfile collector). Both encoders are the
//! crate's; madvd only chooses the families, their help, their labels and their values.
//!
//! Counter names are written here as exported (`..._total`); `prometheus-client` wants the
//! family name without the suffix and adds it to the samples itself.

use super::{AgentMetrics, Counters, GroupMetrics, PidMetrics, SchemeMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;

/// Which text format a scrape gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (counter families named without `_total`, `# EOF` at the end).
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }

    /// From a request's `Accept` header: OpenMetrics when it is accepted (`q` above 0),
    /// else the 0.0.4 text every Prometheus-format reader knows.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let accepted = accept.unwrap_or("").split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f64>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !q_zero
        });
        if accepted {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The exposition text of `m` in `format`.
pub fn encode(m: &AgentMetrics, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(m.clone())));
    let mut out = String::with_capacity(8192);
    let r = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
    };
    // Writing into a String cannot fail, and the collector only fails when the writer does.
    debug_assert!(r.is_ok(), "encoding into a String failed");
    out
}

/// The 0.0.4 text of `m` (what `madvd agent --once` prints).
pub fn render(m: &AgentMetrics) -> String {
    encode(m, Format::Text)
}

/// What one scrape encodes.
#[derive(Debug)]
struct Snapshot(AgentMetrics);

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One family: its descriptor, then every series; nothing at all when it has no series
/// (as `prometheus-client` does for its own empty metrics).
fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &'static str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> fmt::Result {
    let name = match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let mut series = series.into_iter().peekable();
    if series.peek().is_none() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, m) in series {
        m.encode(me.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(v: impl Into<f64>) -> ConstGauge<f64> {
    ConstGauge::new(v.into())
}

fn flag(b: bool) -> ConstGauge<u64> {
    ConstGauge::new(u64::from(b))
}

type GaugeF = fn(&GroupMetrics) -> u64;
const GROUP_GAUGES: [(&str, &str, GaugeF); 5] = [
    (
        "madvd_group_targets",
        "Processes the group watches now.",
        |g| g.targets,
    ),
    (
        "madvd_group_regions",
        "Monitoring regions over the group's processes (last aggregation).",
        |g| g.regions,
    ),
    (
        "madvd_group_rss_bytes",
        "Sum of VmRSS of the group's processes (at the last rescan).",
        |g| g.rss_bytes,
    ),
    (
        "madvd_group_swap_bytes",
        "Sum of VmSwap of the group's processes (at the last rescan).",
        |g| g.swap_bytes,
    ),
    (
        "madvd_group_max_regions",
        "The group's max_nr_regions in force (its policy's, lowered by the CPU budget).",
        |g| g.max_nr_regions,
    ),
];

/// Interval gauges of a group, µs as exported in seconds.
const GROUP_INTERVALS: [(&str, &str, GaugeF); 2] = [
    (
        "madvd_group_sample_interval_seconds",
        "The group's sampling interval in force (its policy's, lengthened by the CPU budget).",
        |g| g.sample_us,
    ),
    (
        "madvd_group_aggregation_interval_seconds",
        "The group's aggregation interval in force (its policy's, lengthened by the CPU budget).",
        |g| g.aggr_us,
    ),
];

type CounterF = fn(&Counters) -> u64;
const GROUP_COUNTERS: [(&str, &str, CounterF); 11] = [
    (
        "madvd_group_snapshots_total",
        "Aggregation intervals completed (snapshots the schemes saw).",
        |c| c.snapshots,
    ),
    (
        "madvd_group_samples_total",
        "Access-check sample answers (monitoring cost).",
        |c| c.cost.samples,
    ),
    (
        "madvd_group_probe_pageouts_total",
        "Pages the refault probe paged out to observe them (monitoring cost, never savings).",
        |c| c.cost.probe_pageouts,
    ),
    (
        "madvd_group_probe_refaults_total",
        "Of the refault probe's own page-outs, pages the target faulted back in (major faults no scheme caused).",
        |c| c.cost.probe_refaults,
    ),
    (
        "madvd_group_monitor_syscalls_total",
        "System calls made by the access check (monitoring cost).",
        |c| c.cost.syscalls,
    ),
    (
        "madvd_group_actuation_rounds_total",
        "Actuation rounds (one per snapshot the schemes acted on).",
        |c| c.rounds,
    ),
    (
        "madvd_group_advised_bytes_total",
        "Bytes process_madvise reported advised.",
        |c| c.bytes_advised,
    ),
    (
        "madvd_group_targets_added_total",
        "Processes added to the group as they appeared.",
        |c| c.targets_added,
    ),
    (
        "madvd_group_targets_dropped_total",
        "Processes dropped from the group (exited or no longer selected).",
        |c| c.targets_dropped,
    ),
    (
        "madvd_group_targets_over_limit_total",
        "Matching processes not added because the group was at max_targets.",
        |c| c.over_limit,
    ),
    (
        "madvd_group_failures_total",
        "Stage failures (access check or maps reads that failed for a reason other than exit).",
        |c| c.failures,
    ),
];

type SchemeF = fn(&SchemeMetrics) -> u64;
const SCHEME_COUNTERS: [(&str, &str, SchemeF); 10] = [
    (
        "madvd_scheme_tried_regions_total",
        "Regions (pieces) the scheme tried to apply its action to (damos_stat nr_tried).",
        |s| s.nr_tried,
    ),
    (
        "madvd_scheme_tried_bytes_total",
        "Bytes of them (damos_stat sz_tried).",
        |s| s.sz_tried,
    ),
    (
        "madvd_scheme_applied_regions_total",
        "Regions with at least one byte applied (damos_stat nr_applied).",
        |s| s.nr_applied,
    ),
    (
        "madvd_scheme_applied_bytes_total",
        "Bytes the actuator reported applied (damos_stat sz_applied).",
        |s| s.sz_applied,
    ),
    (
        "madvd_scheme_applied_resident_bytes_total",
        "Of the applied bytes, those read resident in pagemap just before advising (advised-resident).",
        |s| s.sz_resident,
    ),
    (
        "madvd_scheme_not_resident_bytes_total",
        "Bytes tried but cut out as not resident (swapped out or never faulted in): not advised, not charged.",
        |s| s.sz_not_resident,
    ),
    (
        "madvd_scheme_not_huge_bytes_total",
        "split only: bytes tried but holding no huge page to split: not advised, not charged.",
        |s| s.sz_not_huge,
    ),
    (
        "madvd_scheme_already_huge_bytes_total",
        "collapse only: bytes tried but huge pages already, nothing to collapse: not advised, not charged.",
        |s| s.sz_already_huge,
    ),
    (
        "madvd_scheme_not_idle_bytes_total",
        "Bytes tried but cut out as not known idle by page_idle just before advising (the idle cut): not advised, not charged.",
        |s| s.sz_not_idle,
    ),
    (
        "madvd_scheme_quota_exceeds_total",
        "Charge windows that ended with the quota exhausted (damos_stat qt_exceeds).",
        |s| s.qt_exceeds,
    ),
];

/// A group as exported: its gauges, its counters summed over its pipelines, live or not.
struct Row<'a> {
    g: &'a GroupMetrics,
    c: Counters,
    live: bool,
}

impl Snapshot {
    fn rows(&self) -> Vec<Row<'_>> {
        let m = &self.0;
        let live = m.groups.values().map(|g| (g, true));
        let retired = m
            .retired
            .values()
            .filter(|g| !m.groups.contains_key(&g.name))
            .map(|g| (g, false));
        live.chain(retired)
            .map(|(g, live)| Row {
                g,
                c: g.carried.plus(&g.current),
                live,
            })
            .collect()
    }

    fn agent(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let m = &self.0;
        let none = Labels::new;
        family(
            enc,
            "madvd_agent_info",
            "madvd agent build information.",
            MetricType::Gauge,
            [(vec![("version", m.version.as_str())], flag(true))],
        )?;
        family(
            enc,
            "madvd_agent_uptime_seconds",
            "Seconds since the agent started.",
            MetricType::Gauge,
            [(none(), gauge(m.uptime_s))],
        )?;
        family(
            enc,
            "madvd_config_reloads_total",
            "Config reloads applied (SIGHUP or a changed config/policy file).",
            MetricType::Counter,
            [(none(), ConstCounter::new(m.reloads))],
        )?;
        family(
            enc,
            "madvd_config_reload_errors_total",
            "Config reloads refused because the new config or a policy was invalid (the running config was kept).",
            MetricType::Counter,
            [(none(), ConstCounter::new(m.reload_errors))],
        )?;
        family(
            enc,
            "madvd_config_last_reload_success",
            "1 if the last config load or reload succeeded, 0 if it was refused.",
            MetricType::Gauge,
            [(none(), flag(m.last_reload_success))],
        )?;
        family(
            enc,
            "madvd_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            MetricType::Gauge,
            [(none(), gauge(m.last_reload_unix_s))],
        )?;
        family(
            enc,
            "madvd_agent_cpu_seconds_total",
            "CPU time the agent used (user + system, all threads), seconds.",
            MetricType::Counter,
            [(none(), ConstCounter::new(m.cpu.seconds))],
        )?;
        family(
            enc,
            "madvd_agent_cpu_share",
            "Share of one CPU the agent used over its last CPU-budget window (1 = one whole CPU).",
            MetricType::Gauge,
            [(none(), gauge(m.cpu.share))],
        )?;
        family(
            enc,
            "madvd_agent_cpu_budget",
            "The agent's CPU budget (cpu_budget), a share of one CPU; absent without a budget.",
            MetricType::Gauge,
            m.cpu.budget.map(|b| (none(), gauge(b))),
        )?;
        family(
            enc,
            "madvd_agent_cpu_budget_scale",
            "How much the CPU budget divides every group's monitoring cost by (1: the policies' own attributes).",
            MetricType::Gauge,
            [(none(), gauge(m.cpu.scale))],
        )
    }

    fn groups(&self, enc: &mut DescriptorEncoder, rows: &[Row<'_>]) -> fmt::Result {
        let live = || rows.iter().filter(|r| r.live);
        family(
            enc,
            "madvd_group_info",
            "A configured target group: its policy file, access primitive and dry-run setting.",
            MetricType::Gauge,
            live().map(|r| {
                let dry = if r.g.dry_run { "true" } else { "false" };
                let labels = vec![
                    ("group", r.g.name.as_str()),
                    ("policy", r.g.policy.as_str()),
                    ("ops", r.g.ops.as_str()),
                    ("dry_run", dry),
                ];
                (labels, flag(true))
            }),
        )?;
        for (name, help, f) in GROUP_GAUGES {
            let series = live().map(|r| (vec![("group", r.g.name.as_str())], gauge(f(r.g) as f64)));
            family(enc, name, help, MetricType::Gauge, series)?;
        }
        for (name, help, f) in GROUP_INTERVALS {
            let series = live().map(|r| {
                let s = f(r.g) as f64 / 1e6;
                (vec![("group", r.g.name.as_str())], gauge(s))
            });
            family(enc, name, help, MetricType::Gauge, series)?;
        }
        for (name, help, f) in GROUP_COUNTERS {
            let series = rows.iter().map(|r| {
                (
                    vec![("group", r.g.name.as_str())],
                    ConstCounter::new(f(&r.c)),
                )
            });
            family(enc, name, help, MetricType::Counter, series)?;
        }
        family(
            enc,
            "madvd_group_actuation_seconds_total",
            "Wall time spent in process_madvise.",
            MetricType::Counter,
            rows.iter().map(|r| {
                let s = r.c.actuation_ns as f64 / 1e9;
                (vec![("group", r.g.name.as_str())], ConstCounter::new(s))
            }),
        )?;
        let by_key = |which: fn(&Counters) -> &std::collections::BTreeMap<String, u64>,
                      key: &'static str| {
            rows.iter()
                .flat_map(move |r| {
                    which(&r.c).iter().map(move |(k, v)| {
                        let labels = vec![("group", r.g.name.as_str()), (key, k.as_str())];
                        (labels, ConstCounter::new(*v))
                    })
                })
                .collect::<Vec<_>>()
        };
        family(
            enc,
            "madvd_group_apply_errors_bytes_total",
            "Bytes advice was requested for but not applied, by reason (unmapped, invalid, permission, target_gone, dry_run, ...).",
            MetricType::Counter,
            by_key(|c| &c.apply_errors, "kind"),
        )?;
        family(
            enc,
            "madvd_group_target_refusals_total",
            "Matching processes that cannot be targets (madvd itself, pid 1, kernel threads, permission), counted once per process.",
            MetricType::Counter,
            by_key(|c| &c.refusals, "reason"),
        )
    }

    fn schemes(&self, enc: &mut DescriptorEncoder, rows: &[Row<'_>]) -> fmt::Result {
        let series = |live_only: bool| {
            rows.iter()
                .filter(move |r| r.live || !live_only)
                .flat_map(|r| {
                    r.c.schemes.iter().map(move |((scheme, action), s)| {
                        let labels = vec![
                            ("group", r.g.name.as_str()),
                            ("scheme", scheme.as_str()),
                            ("action", action.as_str()),
                        ];
                        (labels, s)
                    })
                })
        };
        for (name, help, f) in SCHEME_COUNTERS {
            let s = series(false).map(|(l, s)| (l, ConstCounter::new(f(s))));
            family(enc, name, help, MetricType::Counter, s)?;
        }
        family(
            enc,
            "madvd_scheme_active",
            "1 while the scheme is active, 0 while watermarks (or a missing page filter driver) hold it inactive.",
            MetricType::Gauge,
            series(true).map(|(l, s)| (l, flag(s.active))),
        )
    }

    /// Per-process series (opt-in per group): at most the group's `pid_series` processes
    /// (the lowest pids); how many were left out is a gauge of its own.
    fn pids(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let groups: Vec<&GroupMetrics> = self
            .0
            .groups
            .values()
            .filter(|g| g.pid_series > 0)
            .collect();
        if groups.is_empty() {
            return Ok(());
        }
        let shown: Vec<PidRow<'_>> = groups
            .iter()
            .flat_map(|g| {
                let rows = g.pids.iter().map(|(pid, p)| PidRow {
                    group: &g.name,
                    pid: pid.to_string(),
                    p,
                });
                rows.take(g.pid_series)
            })
            .collect();
        type PidF = fn(&PidMetrics) -> u64;
        let gauges: [(&str, &str, PidF); 2] = [
            (
                "madvd_target_rss_bytes",
                "VmRSS of one watched process (at the last rescan; only with pid_metrics).",
                |p| p.rss_bytes,
            ),
            (
                "madvd_target_swap_bytes",
                "VmSwap of one watched process (at the last rescan; only with pid_metrics).",
                |p| p.swap_bytes,
            ),
        ];
        for (name, help, f) in gauges {
            let series = shown.iter().map(|t| (t.labels(), gauge(f(t.p) as f64)));
            family(enc, name, help, MetricType::Gauge, series)?;
        }
        family(
            enc,
            "madvd_target_advised_bytes_total",
            "Bytes process_madvise reported advised in one watched process since it was added (only with pid_metrics).",
            MetricType::Counter,
            shown.iter().map(|t| (t.labels(), ConstCounter::new(t.p.advised_bytes))),
        )?;
        family(
            enc,
            "madvd_group_pid_series_omitted",
            "Processes of the group left without per-pid series by its pid_metrics cap.",
            MetricType::Gauge,
            groups.iter().map(|g| {
                let omitted = g.pids.len().saturating_sub(g.pid_series);
                (vec![("group", g.name.as_str())], gauge(omitted as f64))
            }),
        )
    }
}

/// One process with per-pid series.
struct PidRow<'a> {
    group: &'a str,
    pid: String,
    p: &'a PidMetrics,
}

impl PidRow<'_> {
    fn labels(&self) -> Labels<'_> {
        vec![
            ("group", self.group),
            ("pid", self.pid.as_str()),
            ("comm", self.p.comm.as_str()),
        ]
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let rows = self.rows();
        self.agent(&mut enc)?;
        self.groups(&mut enc, &rows)?;
        self.schemes(&mut enc, &rows)?;
        self.pids(&mut enc)
    }
}
