//! What the agent counts per group: an actuation round folded into the counters, and the
//! labels of apply errors and target refusals.

use super::metrics::Counters;
use crate::pipeline::SchemeLine;
use engine::process::ProcessError;
use engine::{ApplyErrorKind, ApplyReport};

/// The label of an apply error kind (`madvd_group_apply_errors_bytes_total{kind}`).
pub fn kind_label(k: &ApplyErrorKind) -> String {
    k.label().into_owned()
}

/// The label of a `Process::open` refusal (`madvd_group_target_refusals_total{reason}`).
pub fn refusal_label(e: &ProcessError) -> &'static str {
    match e {
        ProcessError::Myself { .. } => "myself",
        ProcessError::Init => "init",
        ProcessError::KernelThread { .. } => "kernel_thread",
        ProcessError::Thread { .. } => "thread",
        ProcessError::Permission { .. } => "permission",
        _ => "error",
    }
}

/// Fold one actuation round into the counters (the actuator's report and the schemes'
/// stats after accounting it).
pub fn account(c: &mut Counters, r: &ApplyReport, stats: &[SchemeLine]) {
    c.rounds += 1;
    c.bytes_advised += r.bytes_applied();
    c.actuation_ns += r.elapsed_ns();
    for o in &r.outcomes {
        for (k, b) in &o.errors {
            *c.apply_errors.entry(kind_label(k)).or_default() += b;
        }
    }
    // The schemes' stats are totals of this pipeline: replace, don't add.
    c.schemes = stats
        .iter()
        .map(|s| ((s.name.clone(), s.action.clone()), s.clone()))
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{AddrRange, Advice, RangeOutcome, TargetId};

    #[test]
    fn account_folds_reports_and_replaces_scheme_totals() {
        let mut c = Counters::default();
        let out = |applied: u64, errors: Vec<(ApplyErrorKind, u64)>| RangeOutcome {
            target: TargetId(5),
            range: AddrRange::new(0, 1 << 20),
            advice: Advice::Pageout,
            scheme: 0,
            bytes_requested: 1 << 20,
            bytes_applied: applied,
            bytes_resident: 0,
            elapsed_ns: 1000,
            errors,
            paced_from: None,
        };
        let r = ApplyReport {
            outcomes: vec![
                out(4096, vec![(ApplyErrorKind::Unmapped, 8192)]),
                out(
                    0,
                    vec![
                        (ApplyErrorKind::Other(22), 4096),
                        (ApplyErrorKind::TargetGone, 1),
                    ],
                ),
            ],
            gone: vec![],
            dry_run: false,
        };
        let line = |tried| SchemeLine {
            name: "cold".into(),
            action: "pageout".into(),
            nr_tried: tried,
            active: true,
            ..Default::default()
        };
        account(&mut c, &r, &[line(2)]);
        account(&mut c, &r, &[line(5)]);
        assert_eq!((c.rounds, c.bytes_advised, c.actuation_ns), (2, 8192, 4000));
        assert_eq!(c.apply_errors["unmapped"], 16384);
        assert_eq!(c.apply_errors["errno_22"], 8192);
        assert_eq!(c.apply_errors["target_gone"], 2);
        assert_eq!(c.schemes[&("cold".into(), "pageout".into())].nr_tried, 5);
    }

    #[test]
    fn labels() {
        assert_eq!(refusal_label(&ProcessError::Init), "init");
        assert_eq!(refusal_label(&ProcessError::Myself { pid: 3 }), "myself");
        assert_eq!(kind_label(&ApplyErrorKind::SwapHeadroom), "swap_headroom");
    }
}
