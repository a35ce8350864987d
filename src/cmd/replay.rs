//! `madvd replay --policy FILE RECORD`: a policy run offline against a record (the what-if
//! replay in `src/replay/`), printed as text, one JSON object or JSON lines, and optionally
//! plotted under the record's heatmap. A damaged record replays up to its first bad line,
//! then the command fails with one line naming it (as `madvd report` does).

use crate::cli::ReplayArgs;
use crate::exit::{err, Code};
use crate::heatmap;
use crate::record;
use crate::replay::{self, whatif::CostModel, Replay, ReplayConfig};
use crate::units::{fmt_bytes, fmt_duration_us};
use anyhow::Result;
use serde::Serialize;

pub fn run(a: ReplayArgs) -> Result<()> {
    let policy = crate::policy::load(&a.policy)?;
    let rec = record::read(&a.record)?;
    if let record::Source::Paddr { .. } = rec.header.source {
        return Err(err(
            Code::Failure,
            format!(
                "{}: a physical-memory record (record --paddr) cannot be replayed: advice is applied to processes' address ranges",
                rec.path.display()
            ),
        ));
    }
    let cfg = ReplayConfig {
        refault_window_us: a.refault_window.as_micros() as u64,
        cost: CostModel {
            pageout_ns_per_page: a.pageout_ns_per_page,
            ..CostModel::default()
        },
    };
    let r = replay::replay(&policy, &rec, &cfg).map_err(|e| err(Code::Failure, e.to_string()))?;
    if r.snapshots == 0 {
        let why = rec
            .problem_line()
            .unwrap_or_else(|| format!("{}: no snapshots recorded", rec.path.display()));
        return Err(err(Code::Failure, why));
    }
    let out = Output {
        record: rec.path.display().to_string(),
        policy: a.policy.display().to_string(),
        replay: &r,
    };
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else if a.json_lines {
        for s in &r.steps {
            println!("{}", serde_json::json!({ "step": s }));
        }
        println!("{}", serde_json::json!({ "summary": summary(&out) }));
    } else {
        print_text(&out);
    }
    if let Some(p) = &a.plot {
        let target = *rec.target_ids().first().ok_or_else(|| {
            err(
                Code::Failure,
                format!(
                    "{}: no target in any snapshot: no heatmap to plot under",
                    rec.path.display()
                ),
            )
        })?;
        let mut intact = rec.clone();
        intact.frames.truncate(r.snapshots);
        let grid = heatmap::build(&intact, target, 300, 150, None)?;
        let title = crate::cmd::report::title(&intact, target);
        replay::plot::render(&grid, &title, &r, p)?;
        eprintln!("wrote {}", p.display());
    }
    match rec.problem_line() {
        Some(p) => Err(err(Code::Failure, format!("replay stopped: {p}"))),
        None => Ok(()),
    }
}

#[derive(Serialize)]
struct Output<'a> {
    record: String,
    policy: String,
    #[serde(flatten)]
    replay: &'a Replay,
}

/// The one object without its per-step series (the JSON-lines `summary`).
fn summary(o: &Output<'_>) -> serde_json::Value {
    let mut v = serde_json::to_value(o).expect("serializes");
    if let Some(m) = v.as_object_mut() {
        m.remove("steps");
    }
    v
}

fn print_text(o: &Output<'_>) {
    let r = o.replay;
    println!(
        "replay of {} on {}: {} snapshots, {} recorded; refault window {}",
        o.policy,
        o.record,
        r.snapshots,
        fmt_duration_us(r.duration_us),
        fmt_duration_us(r.refault_window_us)
    );
    for n in &r.notes {
        println!("note: {n}");
    }
    println!(
        "{:<24} {:<9} {:>12} {:>12} {:>8} {:>8}",
        "SCHEME", "ACTION", "ADVISED", "REFAULTED", "RISK", "ROUNDS"
    );
    for s in &r.schemes {
        let risk = if s.advised_bytes > 0 {
            format!(
                "{:.1}%",
                100.0 * s.refaulted_bytes as f64 / s.advised_bytes as f64
            )
        } else {
            "-".into()
        };
        println!(
            "{:<24} {:<9} {:>12} {:>12} {:>8} {:>8}",
            s.name,
            s.action,
            fmt_bytes(s.advised_bytes),
            fmt_bytes(s.refaulted_bytes),
            risk,
            s.nr_applied
        );
        if let Some(why) = &s.inactive_reason {
            println!("  inactive at the end: {why}");
        }
    }
    println!(
        "total: {} advised, {} refaulted within the window",
        fmt_bytes(r.advised_bytes()),
        fmt_bytes(r.refaulted_bytes())
    );
    // Advised bytes over time: ten equal slices of the recording.
    let n = r.steps.len();
    if n >= 10 {
        println!("advised over time (10 slices):");
        for k in 0..10 {
            let part = &r.steps[k * n / 10..(k + 1) * n / 10];
            let t = part.first().map_or(0, |s| s.t_us);
            let per: Vec<String> = (0..r.schemes.len())
                .map(|i| fmt_bytes(part.iter().map(|s| s.advised_bytes[i]).sum()))
                .collect();
            println!("  from {:>8}: {}", fmt_duration_us(t), per.join("  "));
        }
    }
    if let Some(s) = &r.stopped {
        println!(
            "stopped at {}:{}:{} (byte offset {}): {}",
            o.record, s.line, s.column, s.offset, s.message
        );
    }
}
