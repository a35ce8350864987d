//! `madvd report heatmap|wss|summary FILE`: render a record file. A truncated or corrupt file
//! renders what is intact, then fails with one line naming `path:line:column`.

use crate::cli::{HeatmapArgs, ReportCmd, SummaryArgs, WssArgs};
use crate::exit::{err, Code};
use crate::heatmap;
use crate::record::{self, Loaded, Source};
use crate::units::{fmt_bytes, fmt_duration_us};
use anyhow::Result;
use engine::ops::paddr::owners::CgroupBytes;
use serde::Serialize;
use std::path::{Path, PathBuf};

pub fn run(cmd: ReportCmd) -> Result<()> {
    if let ReportCmd::Heatmap(a) = &cmd {
        heatmap::check_bins(a.cols, a.rows)?;
        refuse_overwrite(&a.file, &heatmap_output(a))?;
    }
    let rec = match &cmd {
        ReportCmd::Heatmap(a) => record::read(&a.file)?,
        ReportCmd::Wss(a) => record::read(&a.file)?,
        ReportCmd::Summary(a) => record::read(&a.file)?,
    };
    if rec.frames.is_empty() {
        let why = rec
            .problem_line()
            .unwrap_or_else(|| format!("{}: no snapshots recorded", rec.path.display()));
        return Err(err(Code::Failure, why));
    }
    match cmd {
        ReportCmd::Heatmap(a) => heatmap_cmd(&rec, a)?,
        ReportCmd::Wss(a) => wss_cmd(&rec, a)?,
        ReportCmd::Summary(a) => summary_cmd(&rec, a)?,
    }
    match rec.problem_line() {
        Some(p) => Err(err(Code::Failure, p)),
        None => Ok(()),
    }
}

/// `-o OUT`, or FILE with .png.
fn heatmap_output(a: &HeatmapArgs) -> PathBuf {
    a.output
        .clone()
        .unwrap_or_else(|| a.file.with_extension("png"))
}

/// The heatmap must not be written over its own record (`report heatmap rec.png`, or `-o`
/// naming the record another way: compared by device and inode, so `./`, `..`, symlinks
/// and hard links are all caught). A usage error: the fix is `-o`.
fn refuse_overwrite(input: &Path, out: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (Ok(i), Ok(o)) = (std::fs::metadata(input), std::fs::metadata(out)) else {
        return Ok(());
    };
    if (i.dev(), i.ino()) != (o.dev(), o.ino()) {
        return Ok(());
    }
    Err(err(
        Code::Usage,
        format!(
            "{}: refusing to overwrite the input record with its heatmap ({} is the same file): name another output with -o OUT.png or -o OUT.svg",
            input.display(),
            out.display()
        ),
    ))
}

fn heatmap_cmd(rec: &Loaded, a: HeatmapArgs) -> Result<()> {
    let target = match a.target {
        Some(t) => t,
        None => *rec.target_ids().first().ok_or_else(|| {
            err(
                Code::Failure,
                format!(
                    "{}: no target in any of its {} snapshots (the target exited before its first aggregation?): no heatmap to draw",
                    rec.path.display(),
                    rec.frames.len()
                ),
            )
        })?,
    };
    let out = heatmap_output(&a);
    let grid = heatmap::build(rec, target, a.cols, a.rows, a.range)?;
    heatmap::render(&grid, &title(rec, target), &out)?;
    eprintln!(
        "wrote {} ({} snapshots of target {target}, {} x {} cells, {} monitored in {} spans)",
        out.display(),
        grid.frames,
        grid.cols,
        grid.rows,
        fmt_bytes(grid.total),
        grid.spans.len()
    );
    Ok(())
}

pub fn title(rec: &Loaded, target: u32) -> String {
    let what = match &rec.header.source {
        Source::Pid { .. } => format!("pid {target}"),
        Source::Sim { scenario, .. } => format!("sim '{scenario}'"),
        Source::Paddr { ranges } => format!("physical memory {}", ranges_text(ranges)),
    };
    format!(
        "madvd access heatmap: {what}, {} ({} ms sampling, {} ms aggregation)",
        rec.header.ops,
        rec.header.attrs.sample_us / 1000,
        rec.header.attrs.aggr_us / 1000
    )
}

/// WSS of each frame (sum over the chosen targets).
pub fn wss_series(rec: &Loaded, target: Option<u32>) -> Vec<u64> {
    rec.frames
        .iter()
        .map(|f| {
            f.targets
                .iter()
                .filter(|t| target.is_none_or(|id| t.id == id))
                .map(record::wss)
                .sum()
        })
        .collect()
}

/// Nearest-rank percentile of a sorted slice.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub const PERCENTILES: [f64; 9] = [0.0, 1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0, 100.0];

#[derive(Serialize)]
struct WssJson {
    file: PathBuf,
    snapshots: usize,
    percentiles: Vec<(f64, u64)>,
}

fn wss_cmd(rec: &Loaded, a: WssArgs) -> Result<()> {
    let mut w = wss_series(rec, a.target);
    w.sort_unstable();
    let ps: Vec<(f64, u64)> = PERCENTILES
        .iter()
        .map(|&p| (p, percentile(&w, p)))
        .collect();
    if a.json {
        println!(
            "{}",
            serde_json::to_string(&WssJson {
                file: a.file,
                snapshots: w.len(),
                percentiles: ps
            })?
        );
    } else {
        println!(
            "# working-set size (bytes in regions with nr_accesses > 0), {} snapshots",
            w.len()
        );
        println!("{:>10}  {:>14}  {:>12}", "percentile", "bytes", "size");
        for (p, b) in ps {
            println!("{p:>10}  {b:>14}  {:>12}", fmt_bytes(b));
        }
    }
    Ok(())
}

#[derive(Serialize)]
pub struct Summary {
    pub file: PathBuf,
    pub source: Source,
    pub ops: String,
    pub sample_us: u64,
    pub aggr_us: u64,
    pub snapshots: usize,
    pub duration_us: u64,
    pub ended: Option<String>,
    pub targets: Vec<TargetSummary>,
    pub bad_lines: usize,
    /// Physical memory: hot and cold bytes per memory cgroup, mean over the snapshots.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cgroups_mean: Vec<CgroupBytes>,
    /// The same, median over the snapshots (steadier: a few snapshots where a group's idle
    /// pages ride in hot regions move the mean, not the median).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cgroups_median: Vec<CgroupBytes>,
}

#[derive(Serialize)]
pub struct TargetSummary {
    pub id: u32,
    pub snapshots: usize,
    pub monitored_bytes_last: u64,
    pub regions_min: usize,
    pub regions_max: usize,
    pub regions_mean: f64,
    pub wss_p50: u64,
    pub wss_p99: u64,
    /// The hottest regions of the last snapshot: [start, end, nr_accesses, age].
    pub hottest_last: Vec<[u64; 4]>,
}

pub fn summarize(rec: &Loaded) -> Summary {
    let targets = rec
        .target_ids()
        .into_iter()
        .map(|id| {
            let ts: Vec<_> = rec
                .frames
                .iter()
                .flat_map(|f| f.targets.iter().filter(move |t| t.id == id))
                .collect();
            let counts: Vec<usize> = ts.iter().map(|t| t.regions.len()).collect();
            let mut w: Vec<u64> = ts.iter().map(|t| record::wss(t)).collect();
            w.sort_unstable();
            let last = ts.last().expect("target appears in a frame");
            let mut hot = last.regions.clone();
            hot.sort_by_key(|r| std::cmp::Reverse((r[2], r[1] - r[0])));
            hot.truncate(5);
            TargetSummary {
                id,
                snapshots: ts.len(),
                monitored_bytes_last: record::total(last),
                regions_min: counts.iter().copied().min().unwrap_or(0),
                regions_max: counts.iter().copied().max().unwrap_or(0),
                regions_mean: counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64,
                wss_p50: percentile(&w, 50.0),
                wss_p99: percentile(&w, 99.0),
                hottest_last: hot,
            }
        })
        .collect();
    Summary {
        file: rec.path.clone(),
        source: rec.header.source.clone(),
        ops: rec.header.ops.clone(),
        sample_us: rec.header.attrs.sample_us,
        aggr_us: rec.header.attrs.aggr_us,
        snapshots: rec.frames.len(),
        duration_us: rec.frames.last().map_or(0, |f| f.t_us)
            - rec.frames.first().map_or(0, |f| f.t_us),
        ended: rec.end.as_ref().map(|e| e.reason.clone()),
        targets,
        bad_lines: rec.problems.len(),
        cgroups_mean: cgroups_mean(rec),
        cgroups_median: cgroups_median(rec),
    }
}

fn ranges_text(ranges: &[engine::AddrRange]) -> String {
    ranges
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Hot and cold bytes per cgroup, mean over the frames that have them; most cold first.
pub fn cgroups_mean(rec: &Loaded) -> Vec<CgroupBytes> {
    let frames: Vec<_> = rec
        .frames
        .iter()
        .filter(|f| !f.cgroups.is_empty())
        .collect();
    let mut sum: std::collections::BTreeMap<&str, (u128, u128)> = Default::default();
    for c in frames.iter().flat_map(|f| &f.cgroups) {
        let e = sum.entry(&c.cgroup).or_default();
        e.0 += c.hot_bytes as u128;
        e.1 += c.cold_bytes as u128;
    }
    let n = frames.len().max(1) as u128;
    let mut v: Vec<CgroupBytes> = sum
        .into_iter()
        .map(|(g, (hot, cold))| CgroupBytes {
            cgroup: g.to_string(),
            hot_bytes: (hot / n) as u64,
            cold_bytes: (cold / n) as u64,
        })
        .collect();
    v.sort_by(|a, b| {
        b.cold_bytes
            .cmp(&a.cold_bytes)
            .then(a.cgroup.cmp(&b.cgroup))
    });
    v
}

/// Hot and cold bytes per cgroup, median over the frames that have them
/// (`owners::median_per_cgroup`); most cold first.
pub fn cgroups_median(rec: &Loaded) -> Vec<CgroupBytes> {
    engine::ops::paddr::owners::median_per_cgroup(
        rec.frames
            .iter()
            .filter(|f| !f.cgroups.is_empty())
            .map(|f| f.cgroups.as_slice()),
    )
}

fn summary_cmd(rec: &Loaded, a: SummaryArgs) -> Result<()> {
    let s = summarize(rec);
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    let src = match &s.source {
        Source::Pid { pids, comms } => format!(
            "pids {}",
            pids.iter()
                .zip(comms.iter().chain(std::iter::repeat(&String::new())))
                .map(|(p, c)| format!("{p} ({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Source::Sim { scenario, size } => {
            format!("simulator, scenario '{scenario}', {}", fmt_bytes(*size))
        }
        Source::Paddr { ranges } => format!("physical memory {}", ranges_text(ranges)),
    };
    println!("file:        {}", s.file.display());
    println!("source:      {src}");
    println!("primitive:   {}", s.ops);
    println!(
        "intervals:   sampling {}, aggregation {}",
        fmt_duration_us(s.sample_us),
        fmt_duration_us(s.aggr_us)
    );
    println!(
        "snapshots:   {} over {}",
        s.snapshots,
        fmt_duration_us(s.duration_us)
    );
    println!(
        "ended:       {}",
        s.ended
            .as_deref()
            .unwrap_or("no end line (interrupted or still being written)")
    );
    for t in &s.targets {
        println!(
            "target {}: {} snapshots, {} monitored at the end",
            t.id,
            t.snapshots,
            fmt_bytes(t.monitored_bytes_last)
        );
        println!(
            "  regions:   min {}, mean {:.1}, max {}",
            t.regions_min, t.regions_mean, t.regions_max
        );
        println!(
            "  wss:       p50 {}, p99 {}",
            fmt_bytes(t.wss_p50),
            fmt_bytes(t.wss_p99)
        );
        println!("  hottest at the end (range, size, nr_accesses, age):");
        for r in &t.hottest_last {
            println!(
                "    {:#x}-{:#x}  {:>10}  {:>3}  {:>4}",
                r[0],
                r[1],
                fmt_bytes(r[1] - r[0]),
                r[2],
                r[3]
            );
        }
    }
    if !s.cgroups_median.is_empty() {
        println!("memory per cgroup (median over the snapshots; the mean is in --json):");
        print!("{}", super::paddr::render_cgroups(&s.cgroups_median));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(percentile(&v, 0.0), 10);
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 100);
        assert_eq!(percentile(&v, 100.0), 100);
        assert_eq!(percentile(&[], 50.0), 0);
    }
}
