//! For tests only: what a scraper reads back from the exposition text, through a maintained
//! parser of both formats (`openmetrics-parser`), which refuses malformed text, duplicate
//! series and families without their metadata. Used by the unit tests here and by
//! `tests/agent.rs` (which includes this file by path).

#![allow(dead_code)]

use openmetrics_parser::{openmetrics, prometheus};
use std::collections::BTreeMap;

/// One sample: its labels and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Samples by their exported name (`..._total` for counters, in both formats), and each
/// family's type and help by that name.
#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub samples: BTreeMap<String, Vec<Sample>>,
    pub kinds: BTreeMap<String, String>,
    pub help: BTreeMap<String, String>,
}

impl Parsed {
    /// The value of the first series of `name` whose labels include `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .get(name)?
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }
}

fn labels_of(
    sample_labels: Result<openmetrics_parser::LabelSet<'_>, openmetrics_parser::ParseError>,
) -> BTreeMap<String, String> {
    sample_labels
        .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Samples and metadata of every family; `suffix` is appended to counter families' names.
fn collect<T, V>(
    e: &openmetrics_parser::MetricsExposition<T, V>,
    suffix: &str,
    value: impl Fn(&V) -> Option<f64>,
) -> Result<Parsed, String>
where
    T: std::fmt::Display + Clone,
    V: openmetrics_parser::RenderableMetricValue + Clone + std::fmt::Debug,
{
    let mut p = Parsed::default();
    for (name, f) in &e.families {
        let kind = f.family_type.to_string();
        let name = match kind.as_str() {
            "counter" => format!("{name}{suffix}"),
            _ => name.clone(),
        };
        let mut v = Vec::new();
        for s in f.iter_samples() {
            let value =
                value(&s.value).ok_or_else(|| format!("{name}: unexpected value {:?}", s.value))?;
            v.push(Sample {
                labels: labels_of(s.get_labelset()),
                value,
            });
        }
        p.kinds.insert(name.clone(), kind);
        p.help.insert(name.clone(), f.help.clone());
        p.samples.insert(name, v);
    }
    Ok(p)
}

/// Parse OpenMetrics 1.0 text (counter families are named without `_total`).
pub fn openmetrics(text: &str) -> Result<Parsed, String> {
    use openmetrics_parser::OpenMetricsValue as V;
    let e = openmetrics::parse_openmetrics(text).map_err(|e| format!("{e:?}"))?;
    collect(&e, "_total", |v| match v {
        V::Gauge(n) | V::Unknown(n) => Some(n.as_f64()),
        V::Counter(c) => Some(c.value.as_f64()),
        _ => None,
    })
}

/// Parse Prometheus text format 0.0.4.
pub fn text(text: &str) -> Result<Parsed, String> {
    use openmetrics_parser::PrometheusValue as V;
    let e = prometheus::parse_prometheus(text).map_err(|e| format!("{e:?}"))?;
    collect(&e, "", |v| match v {
        V::Gauge(n) | V::Unknown(n) => Some(n.as_f64()),
        V::Counter(c) => Some(c.value.as_f64()),
        _ => None,
    })
}
