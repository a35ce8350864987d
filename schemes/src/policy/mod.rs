//! The policy file: RON, read with `ron` + `serde` into raw structures, then checked field by
//! field into [`Policy`]. Every mistake is reported as `path:line:column: message`, the
//! message naming the field. `docs/policy-format.md` documents the format.
//!
//! Structure errors (unknown field, missing field, unknown action, bad syntax) carry `ron`'s
//! span. Value errors (unit, sign, min > max, watermark order, goal fields) are found after
//! deserializing and placed with [`Locator`], which knows where every field's value starts.
//!
//! Here: the entry points (`Policy::from_str`, `Policy::load`) and `ron`'s errors;
//! `raw.rs`: the structures as written; `check.rs`: the checker; `types.rs`: the checked
//! types and [`PolicyError`].

mod check;
mod raw;
mod types;

pub use types::{
    AccessPattern, FilterKind, FilterSpec, GoalMetric, GoalSpec, MonitorSection, Policy,
    PolicyError, QuotaSpec, SchemeSpec, Weights, WmarkSpec,
};

use crate::locate::{Locator, Pos};
use engine::Attrs;
use std::path::Path;

/// Largest policy file accepted (a policy is a few KiB; this bounds parse time and memory).
pub const MAX_POLICY_BYTES: usize = 1 << 20;

impl Policy {
    /// Parse and check policy text. `origin` names the file in errors. Pure: no I/O.
    ///
    /// A UTF-8 byte order mark at the start (some Windows editors write one) is skipped:
    /// `ron` would refuse it as "Expected opening `(`" at 1:1, which does not name it. Lines
    /// and columns are counted after it, as editors show them.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str, origin: &Path) -> Result<Policy, PolicyError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
        let raw: raw::RawPolicy = opts.from_str(text).map_err(|e| ron_error(e, origin))?;
        let loc = Locator::new(text);
        let mut cx = check::Checker { loc: &loc, origin };
        cx.policy(raw)
    }

    /// Read and parse a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        Policy::from_str(&read_ron_file(path)?, path)
    }

    /// Apply the `monitor` section to `attrs` (fields not given stay as they are). The
    /// section's `intervals_goal` is not an attribute: the stages give it to the monitor
    /// (`Monitor::set_intervals_goal`).
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

/// Read a RON file (a policy, or the agent's config) as text: an I/O error names the path,
/// bytes that are not UTF-8 are placed at their line and column (after a byte order mark).
pub fn read_ron_file(path: &Path) -> Result<String, PolicyError> {
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let s = String::from_utf8_lossy(valid);
        let s = s.strip_prefix('\u{feff}').unwrap_or(&s);
        let line = 1 + s.matches('\n').count();
        let column = 1 + s.rsplit('\n').next().map_or(0, |l| l.chars().count());
        PolicyError::at(path, Pos { line, column }, "file is not valid UTF-8")
    })
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
