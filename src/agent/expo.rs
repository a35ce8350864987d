//! A strict reader of the Prometheus text exposition format (0.0.4), for tests only: the
//! unit tests of `metrics.rs` and `tests/agent.rs` (which includes this file by path) parse
//! what the agent serves and fail on anything a scraper would reject or misread:
//! bad metric or label names, bad escapes, unparsable values, a family whose samples are
//! not contiguous, a TYPE after its samples, duplicate series.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Default)]
pub struct Family {
    pub name: String,
    pub help: Option<String>,
    pub kind: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

fn valid_metric_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn parse_sample(line: &str, ln: usize) -> Result<Sample, String> {
    let err = |m: &str| format!("line {ln}: {m}: {line:?}");
    let name_end = line.find(['{', ' ']).ok_or_else(|| err("no value"))?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(err("bad metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let chars: Vec<char> = r.chars().collect();
        let mut i = 0;
        loop {
            if chars.get(i) == Some(&'}') {
                i += 1;
                break;
            }
            let start = i;
            while i < chars.len() && chars[i] != '=' {
                i += 1;
            }
            let lname: String = chars[start..i].iter().collect();
            if !valid_label_name(&lname) {
                return Err(err("bad label name"));
            }
            if chars.get(i) != Some(&'=') || chars.get(i + 1) != Some(&'"') {
                return Err(err("expected =\""));
            }
            i += 2;
            let mut v = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err("unterminated label value")),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('\\') => v.push('\\'),
                            Some('"') => v.push('"'),
                            Some('n') => v.push('\n'),
                            _ => return Err(err("bad escape")),
                        }
                        i += 2;
                    }
                    Some('\n') => return Err(err("newline in label value")),
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            if labels.iter().any(|(n, _): &(String, String)| *n == lname) {
                return Err(err("duplicate label"));
            }
            labels.push((lname, v));
            match chars.get(i) {
                Some(',') => i += 1,
                Some('}') => {}
                _ => return Err(err("expected , or }")),
            }
        }
        let consumed: String = chars[..i].iter().collect();
        rest = &r[consumed.len()..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| err("expected a space before the value"))?;
    let mut parts = rest.split(' ');
    let value = parts
        .next()
        .and_then(parse_value)
        .ok_or_else(|| err("bad value"))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().map_err(|_| err("bad timestamp"))?;
    }
    if parts.next().is_some() {
        return Err(err("trailing text"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parse exposition text into families by name.
pub fn parse(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    let mut closed: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("text does not end with a newline".into());
    }
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut p = c.trim_start().splitn(3, ' ');
            let kw = p.next().unwrap_or("");
            if kw != "HELP" && kw != "TYPE" {
                continue; // a comment
            }
            let name = p.next().ok_or(format!("line {ln}: {kw} without a name"))?;
            if !valid_metric_name(name) {
                return Err(format!("line {ln}: bad metric name {name:?}"));
            }
            let arg = p.next().unwrap_or("").to_string();
            if closed.contains(name) {
                return Err(format!("line {ln}: {kw} for {name} after its samples"));
            }
            if current.as_deref() != Some(name) {
                if let Some(c) = current.take() {
                    closed.insert(c);
                }
                current = Some(name.to_string());
            }
            let f = fams.entry(name.to_string()).or_insert_with(|| Family {
                name: name.to_string(),
                ..Default::default()
            });
            if !f.samples.is_empty() {
                return Err(format!("line {ln}: {kw} for {name} after its samples"));
            }
            if kw == "HELP" {
                if f.help.replace(arg).is_some() {
                    return Err(format!("line {ln}: second HELP for {name}"));
                }
            } else {
                if !matches!(
                    arg.as_str(),
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(format!("line {ln}: bad type {arg:?}"));
                }
                if f.kind.replace(arg).is_some() {
                    return Err(format!("line {ln}: second TYPE for {name}"));
                }
            }
            continue;
        }
        let s = parse_sample(line, ln)?;
        let fam = s.name.clone();
        if current.as_deref() != Some(fam.as_str()) {
            if closed.contains(&fam) {
                return Err(format!("line {ln}: samples of {fam} are not contiguous"));
            }
            if let Some(c) = current.take() {
                closed.insert(c);
            }
            current = Some(fam.clone());
        }
        let key = format!("{}{:?}", s.name, s.labels);
        if !series.insert(key) {
            return Err(format!("line {ln}: duplicate series {line:?}"));
        }
        let f = fams.entry(fam.clone()).or_insert_with(|| Family {
            name: fam.clone(),
            ..Default::default()
        });
        if f.kind.as_deref() == Some("counter") && s.value < 0.0 {
            return Err(format!("line {ln}: negative counter"));
        }
        f.samples.push(s);
    }
    Ok(fams)
}

/// The value of the series `name` whose labels include `labels` (the first such series).
pub fn value(fams: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams.get(name)?
        .samples
        .iter()
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_scrapers_reject() {
        assert!(parse("a 1\n").is_ok());
        assert!(parse("a{b=\"x\\\"y\"} 1\n").is_ok());
        assert!(parse("1a 1\n").is_err());
        assert!(parse("a{b=\"x} 1\n").is_err());
        assert!(parse("a{b=\"\\q\"} 1\n").is_err());
        assert!(parse("a one\n").is_err());
        assert!(parse("a 1\nb 1\na 2\n").is_err());
        assert!(parse("a 1\na 2\n").is_err());
        assert!(parse("a 1\n# TYPE a counter\n").is_err());
        assert!(parse("# TYPE a counter\na -1\n").is_err());
        assert!(parse("a 1").is_err());
    }
}
