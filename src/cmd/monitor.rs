//! `madvd monitor --pid PID`: a live, top-like view of the target's regions (range, size,
//! access rate, age) and its working-set size, redrawn each aggregation; `--once --json` for
//! scripts.

use crate::cli::MonitorArgs;
use crate::exit::{err, Code};
use crate::pipeline::{self, Event, StageConfig, Watched};
use crate::signals;
use crate::targets;
use crate::units::{fmt_bytes, fmt_duration_us};
use anyhow::Result;
use engine::{Snapshot, SysRoot, TargetId};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Serialize)]
pub struct View {
    pub pid: u32,
    pub ops: String,
    pub t_us: u64,
    pub aggregation: u64,
    pub max_nr_accesses: u32,
    pub total_bytes: u64,
    pub wss_bytes: u64,
    pub regions: Vec<RegionRow>,
}

#[derive(Serialize)]
pub struct RegionRow {
    pub start: u64,
    pub end: u64,
    pub size: u64,
    pub nr_accesses: u32,
    /// nr_accesses / max_nr_accesses, percent.
    pub rate_pct: f64,
    pub age: u32,
    pub age_us: u64,
}

pub fn view(s: &Snapshot, pid: u32, ops: &str) -> View {
    let max = s.max_nr_accesses().max(1);
    let t = s.targets.iter().find(|t| t.target == TargetId(pid));
    let regions: Vec<RegionRow> = t
        .map(|t| {
            t.regions
                .iter()
                .map(|r| RegionRow {
                    start: r.start(),
                    end: r.end(),
                    size: r.size(),
                    nr_accesses: r.nr_accesses,
                    rate_pct: 100.0 * r.nr_accesses as f64 / max as f64,
                    age: r.age,
                    age_us: r.age as u64 * s.attrs.aggr_us,
                })
                .collect()
        })
        .unwrap_or_default();
    View {
        pid,
        ops: ops.into(),
        t_us: s.now_us,
        aggregation: s.aggregation,
        max_nr_accesses: max,
        total_bytes: regions.iter().map(|r| r.size).sum(),
        wss_bytes: regions
            .iter()
            .filter(|r| r.nr_accesses > 0)
            .map(|r| r.size)
            .sum(),
        regions,
    }
}

/// The table. With more regions than `rows`, the largest are kept (in address order) and
/// the rest summed in one line.
pub fn render(v: &View, rows: usize) -> String {
    let mut s = format!(
        "madvd monitor  pid {}  ops {}  t {}  aggregation {}\nWSS {} of {} monitored in {} regions (rate: % of {} samples)\n\n",
        v.pid,
        v.ops,
        fmt_duration_us(v.t_us),
        v.aggregation,
        fmt_bytes(v.wss_bytes),
        fmt_bytes(v.total_bytes),
        v.regions.len(),
        v.max_nr_accesses
    );
    s += &format!(
        "{:<31} {:>11} {:>6} {:>6}  {:<20}\n",
        "RANGE", "SIZE", "RATE", "AGE", ""
    );
    let mut idx: Vec<usize> = (0..v.regions.len()).collect();
    if idx.len() > rows {
        idx.sort_by_key(|&i| std::cmp::Reverse(v.regions[i].size));
        idx.truncate(rows);
        idx.sort_unstable();
    }
    for &i in &idx {
        let r = &v.regions[i];
        let bar = "#".repeat(((r.rate_pct / 5.0).round() as usize).min(20));
        s += &format!(
            "{:#014x}-{:#014x} {:>11} {:>5.0}% {:>6}  {bar}\n",
            r.start,
            r.end,
            fmt_bytes(r.size),
            r.rate_pct,
            fmt_duration_us(r.age_us).replace(' ', "")
        );
    }
    if idx.len() < v.regions.len() {
        let hidden: u64 = (0..v.regions.len())
            .filter(|i| !idx.contains(i))
            .map(|i| v.regions[i].size)
            .sum();
        s += &format!(
            "… {} smaller regions ({}) not shown\n",
            v.regions.len() - idx.len(),
            fmt_bytes(hidden)
        );
    }
    s
}

pub fn run(root: &SysRoot, a: MonitorArgs) -> Result<()> {
    let (Some(pid), None) = (a.pid, a.paddr.clone()) else {
        let spec = a.paddr.clone().unwrap_or_else(|| "auto".into());
        return super::paddr::monitor(root, a, &spec);
    };
    let kind = targets::choose(root, &a.ops)?;
    let procs = targets::open_all(root, &[pid], a.allow_pid1)?;
    let cfg = StageConfig::new(root, kind, Watched::Procs(procs), &a.attrs, None);
    let stages = pipeline::build(cfg)?;
    let attrs = stages.attrs();
    let running = stages.start()?;
    let tty = std::io::stdout().is_terminal() && !a.json;
    let t0 = Instant::now();
    let label = kind.label().to_string();
    if !a.json {
        eprintln!(
            "monitoring pid {} with {} ({} sampling, {} aggregation); Ctrl-C stops",
            pid,
            label,
            fmt_duration_us(attrs.sample_us),
            fmt_duration_us(attrs.aggr_us)
        );
    }
    let mut result = Ok(());
    loop {
        if signals::stop_requested() || a.for_.is_some_and(|d| t0.elapsed() >= d) {
            break;
        }
        match running.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Snapshot(s, _)) if s.aggregated => {
                let v = view(&s, pid, if a.json { kind.name() } else { &label });
                let mut out = std::io::stdout().lock();
                if a.json {
                    writeln!(out, "{}", serde_json::to_string(&v)?)?;
                } else {
                    if tty {
                        write!(out, "\x1b[H\x1b[2J")?;
                    }
                    write!(out, "{}", render(&v, a.rows))?;
                }
                out.flush()?;
                if a.once {
                    break;
                }
            }
            Ok(Event::Gone(_)) | Ok(Event::AllGone) => {
                result = Err(err(Code::Target, format!("pid {pid} exited")));
                break;
            }
            Ok(Event::Failed(m)) => eprintln!("madvd: warning: {m}"),
            Ok(_) => {}
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    running.stop_and_join();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{Attrs, Region, TargetSnapshot};

    #[test]
    fn view_and_table() {
        // 49 regions of 1 MiB, except region 3 (2 MiB); the first 5 are hot.
        let mut regions = Vec::new();
        let mut at = 0x1000_0000u64;
        for i in 0..49u32 {
            let len = if i == 3 { 2 << 20 } else { 1 << 20 };
            let mut r = Region::new(at, at + len);
            at += len;
            r.nr_accesses = if i < 5 { 20 } else { 0 };
            r.age = i;
            regions.push(r);
        }
        let s = Snapshot {
            now_us: 2_000_000,
            aggregation: 1,
            aggregated: true,
            attrs: Attrs::default(),
            targets: vec![TargetSnapshot {
                target: TargetId(7),
                regions,
            }],
        };
        let v = view(&s, 7, "sim");
        assert_eq!(v.regions.len(), 49);
        assert_eq!(v.max_nr_accesses, 20);
        assert_eq!(v.wss_bytes, 6 << 20);
        let t = render(&v, 10);
        assert!(t.contains("WSS 6.0 MiB"), "{t}");
        assert!(t.contains("39 smaller regions"), "{t}");
        assert!(t.contains("100%"), "{t}");
    }
}
