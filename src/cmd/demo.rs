//! `madvd demo`: one command that shows what madvd does and measures it against the
//! workload's own ground truth.
//!
//! 1. swap: the machine's own, else a temporary zram device (removed at the end, also on
//!    Ctrl-C: every exit path returns through `Drop`s, the workload child first);
//! 2. a workload child (this binary, `madvd workload`): `size` bytes in ONE private anonymous
//!    mapping, first-touched by itself; a hot 10% read at random, the rest cold; the hot set
//!    moves by its own size once, at ~55% of the child's expected life (mid-monitoring);
//! 3. baseline: the child's throughput with nothing watching it;
//! 4. monitored phase: the stage loop (`pipeline/`) with policies/reclaim.ron and the best
//!    access primitive here; snapshots recorded for the heatmap;
//! 5. the measured window — from 2 s after the move to the end of the monitored phase — gives the
//!    oracle: the bytes the child did not touch in it (its own touched-page bitmap);
//! 6. results: memory saved (VmSwap, RSS, MemAvailable), oracle, saved/oracle, throughput
//!    before vs during, the primitive, and a heatmap PNG; then every page of the child is
//!    checked against its expected content (nothing lost by paging out).

use crate::cli::{AttrFlags, DemoArgs};
use crate::exit::{err, Code};
use crate::pipeline::{self, Event, SchemeLine, SchemesConfig, StageConfig, Watched};
use crate::record::{Frame, Header, RecordWriter, Source, FORMAT, VERSION};
use crate::signals;
use crate::sysinfo::{self, ProcMem, SysMem};
use crate::targets;
use crate::units::{fmt_bytes, fmt_bytes_f};
use anyhow::{Context, Result};
use engine::kernel::host::is_root;
use engine::kernel::zram::TempSwap;

use engine::SysRoot;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use madvd_workload::{Fill, Pattern, WorkloadSpec};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The built-in policy: a copy of policies/reclaim.ron, the default reclaim policy (refault
/// guard, learning of lukewarm regions). policies/demo.ron (reclaim-cold scaled to a
/// one-minute demo, no guard) is what the demo ran before (docs/performance.md, "Demo").
pub const DEMO_POLICY: &str = include_str!("../../policies/reclaim.ron");

#[derive(Serialize, Clone, Debug, Default)]
pub struct Throughput {
    /// The child alone, before the monitored phase.
    pub before_ops_per_s: f64,
    /// The child alone, after it (monitoring stopped, pages still out).
    pub after_ops_per_s: f64,
    pub during_ops_per_s: f64,
    /// (1 − during / mean(before, after)) × 100; negative when the child ran faster while
    /// monitored (noise from the machine's other load).
    pub slowdown_pct: f64,
    /// The same per CPU-second of the child (ops / its user+system time): insensitive to how
    /// much CPU the machine's other load leaves it; sees the cost madvd adds to each access
    /// (refaults, TLB shootdowns), not madvd's own CPU use.
    pub before_ops_per_cpu_s: f64,
    pub after_ops_per_cpu_s: f64,
    pub during_ops_per_cpu_s: f64,
    pub cpu_slowdown_pct: f64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct SavedJson {
    /// VmSwap at the end − at the start of the monitored phase (the child's pages in swap).
    pub vm_swap_bytes: i64,
    /// VmRSS at the start − at the end.
    pub rss_bytes: i64,
    /// MemAvailable at the end − at the start (system-wide: other processes move it too; with
    /// zram, the compressed copies cost memory).
    pub mem_available_bytes: i64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct ZramJson {
    pub orig_data_size: u64,
    pub compr_data_size: u64,
    pub mem_used_total: u64,
}

/// The demo's result (`--json`).
#[derive(Serialize, Clone, Debug, Default)]
pub struct Summary {
    pub ops: String,
    /// The workload child (gone when the demo ends).
    pub workload_pid: u32,
    pub dry_run: bool,
    pub size_bytes: u64,
    pub hot_fraction: f64,
    pub baseline_s: f64,
    pub monitored_s: f64,
    /// The measured window (end of the monitored phase) the oracle is computed over.
    pub window_s: f64,
    pub swap: String,
    /// Another proactive reclaimer active on the machine (kernel DAMON, DAMON_RECLAIM, senpai,
    /// …) and what it means for the figures; `None` when none was seen.
    pub other_reclaimer: Option<String>,
    pub saved: SavedJson,
    /// Bytes of the child's mapping not touched during the measured window (ground truth).
    pub oracle_bytes: u64,
    /// saved.vm_swap_bytes / oracle_bytes.
    pub saved_over_oracle: f64,
    pub throughput: Throughput,
    pub hot_moved: bool,
    pub advised_bytes: u64,
    /// Wall time the actuator spent in process_madvise, ms.
    pub actuation_ms: f64,
    /// Bytes the schemes asked for that were not applied, by reason.
    pub not_applied: std::collections::BTreeMap<String, u64>,
    pub schemes: Vec<SchemeLine>,
    pub probe_pageouts: u64,
    pub snapshots: u64,
    pub zram: Option<ZramJson>,
    pub verified_pages: u64,
    pub bad_pages: u64,
    pub heatmap: Option<PathBuf>,
    pub record: Option<PathBuf>,
    pub interrupted: bool,
    /// About once a second of the monitored phase: the child's VmSwap and each scheme's
    /// quota and counters then (how the saving got where it did).
    pub timeline: Vec<TimelinePoint>,
}

/// One point of [`Summary::timeline`].
#[derive(Serialize, Clone, Debug, Default)]
pub struct TimelinePoint {
    /// Seconds since the monitored phase started.
    pub t_s: f64,
    /// The child's VmSwap, bytes.
    pub vm_swap_bytes: u64,
    /// Per scheme, the counters cumulative (as in [`SchemeLine`]).
    pub schemes: Vec<TimelineScheme>,
}

/// A scheme's state at a [`TimelinePoint`].
#[derive(Serialize, Clone, Debug, Default)]
pub struct TimelineScheme {
    pub name: String,
    pub effective_quota: u64,
    /// The first goal's current value (the refault guard's rate, bp), if any.
    pub goal: Option<u64>,
    pub sz_applied: u64,
    pub sz_not_resident: u64,
    pub qt_exceeds: u64,
    pub refaulted_bytes: u64,
}

pub fn run(root: &SysRoot, a: DemoArgs) -> Result<()> {
    // The short demo (tests, CI) is sized so that `reclaim.ron`'s own budget (400 ms of
    // page-out a second) reaches the cold set before the hot set moves even where page-out
    // is slow: at the 0.11 MiB/ms measured at worst on the 2-vCPU development host, 128 MiB's
    // cold 90% is out in ~3 s of the ~20 s before the move (docs/performance.md "Demo").
    let size = a.size.unwrap_or(if a.short { 128 << 20 } else { 1 << 30 });
    let monitored = a
        .for_
        .unwrap_or(Duration::from_secs(if a.short { 40 } else { 75 }));
    let baseline = if a.short {
        Duration::from_secs(4)
    } else {
        Duration::from_secs(10)
    };
    if size < (64 << 20) {
        return Err(err(Code::Usage, "--size must be at least 64MiB"));
    }
    let root_user = is_root();
    let dry_run = a.dry_run || !root_user;
    if !root_user {
        eprintln!(
            "madvd demo: not running as root, so this is a DRY RUN: nothing will be paged out.\n  \
             A real run needs root for: creating the temporary zram swap (CAP_SYS_ADMIN: swapon, /sys/class/zram-control),\n  \
             advising another process with process_madvise (CAP_SYS_NICE) and the refault probe (CAP_SYS_NICE + swap).\n  \
             Run: sudo {} demo",
            std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "madvd".into())
        );
    }
    let policy = match &a.policy {
        Some(p) => crate::policy::load(p)?,
        None => schemes::Policy::from_str(DEMO_POLICY, Path::new("policies/reclaim.ron"))
            .map_err(crate::policy::policy_error)?,
    };
    let out = if a.json { None } else { Some(()) };
    let say = |s: String| {
        if out.is_some() {
            eprintln!("{s}");
        }
    };

    // 1. Swap (declared before the child: dropped after it, so swapoff has nothing to pull in).
    let swap = if root_user {
        Some(
            TempSwap::ensure(
                root,
                (2 * size).max(1 << 30),
                Some(Duration::from_secs(90)),
                &crate::signals::stop_requested,
            )
            .context("demo swap")?,
        )
    } else {
        None
    };
    let swap_desc = swap
        .as_ref()
        .map_or("none (not root)".to_string(), |s| s.describe());
    say(format!("swap: {swap_desc}"));
    let coexistence = crate::sysinfo::coexistence_note(root);
    if let Some(n) = &coexistence {
        say(format!("note: {n}"));
    }

    // 2. The workload child. The hot set moves once, about mid-way through monitoring.
    // The child's pattern moves the hot set every `period` of its own clock (which starts
    // before its first touch). One move: at `period` ≈ 55% of the child's expected life, so
    // the second one (2 × period) falls after the end even if the first touch is slow.
    let first_touch_guess = Duration::from_millis(1500 * size.div_ceil(1 << 30).max(1));
    let life = first_touch_guess + baseline + monitored + baseline;
    let period = life.mul_f64(0.55);
    let spec = WorkloadSpec {
        size,
        hot_fraction: 0.10,
        hot_offset: 0.0,
        pattern: Pattern::Moving {
            period_ms: period.as_millis() as u64,
        },
        fill: Fill::Pattern,
        write_fraction: 0.0,
        nohugepage: true,
        two_mappings: false,
        rate_limit: None,
        seed: 7,
        fork_children: None,
        script: None,
        sparse: None,
        thp: None,
    };
    say(format!(
        "workload: {} in one mapping, 10% hot (read at random), 90% cold; the hot set moves once",
        fmt_bytes(size)
    ));
    let spawned = Instant::now();
    let mut child = crate::child::spawn(&spec)?;
    let pid = child.pid();
    let mapping = child.mapping();
    say(format!(
        "workload child pid {pid}: mapping {} (hot {})",
        child.mapping(),
        child.hot()
    ));

    let total = baseline + monitored + baseline;
    let pb = if a.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(Some(total.as_secs()), ProgressDrawTarget::stderr())
    };
    pb.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );

    // 3. Baseline throughput.
    let interrupted = |pb: &ProgressBar| -> Result<()> {
        if signals::stop_requested() {
            pb.finish_and_clear();
            return Err(err(
                Code::Interrupted,
                "interrupted: workload stopped, temporary swap removed",
            ));
        }
        Ok(())
    };
    let t_start = Instant::now();
    let cpu = |pid| sysinfo::proc_cpu_us(root, pid).unwrap_or(0) as f64 / 1e6;
    let cpu0 = cpu(pid);
    child.mark()?;
    pb.set_message("baseline: the workload alone");
    while t_start.elapsed() < baseline {
        interrupted(&pb)?;
        std::thread::sleep(Duration::from_millis(100));
        pb.set_position(t_start.elapsed().as_secs());
    }
    let before = child.truth()?;
    let cpu1 = cpu(pid);

    // 4. The monitored phase.
    let kind = targets::choose(root, &a.ops)?;
    let procs = targets::open_all(root, &[pid], false)?;
    let schemes = SchemesConfig {
        policy,
        procs: targets::reopen_all(root, &procs, false)?,
        dry_run,
    };
    let mut cfg = StageConfig::new(
        root,
        kind,
        Watched::Procs(procs),
        &AttrFlags::default(),
        Some(schemes),
    );
    cfg.seed = 0xdead_beef;
    let stages = pipeline::build(cfg)?;
    let attrs = stages.attrs();
    let rec_path = a
        .record
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("madvd-demo-{pid}.rec")));
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        source: Source::Pid {
            pids: vec![pid],
            comms: vec!["madvd-workload".into()],
        },
        ops: kind.name().into(),
        attrs,
        started_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        kernel: sysinfo::kernel_release(),
    };
    let mut rec = RecordWriter::create(&rec_path, &header)?;
    say(format!(
        "monitoring with {} ({} sampling, {} aggregation), policy {}{}",
        kind,
        crate::units::fmt_duration_us(attrs.sample_us),
        crate::units::fmt_duration_us(attrs.aggr_us),
        a.policy
            .as_deref()
            .map_or("policies/reclaim.ron (built in)".into(), |p| p
                .display()
                .to_string()),
        if dry_run { ", DRY RUN" } else { "" }
    ));
    let mem0: ProcMem = sysinfo::proc_mem(root, pid).unwrap_or_default();
    let sys0: Option<SysMem> = sysinfo::sys_mem(root);
    child.mark()?;
    let running = stages.start()?;
    let t_mon = Instant::now();
    // The measured window starts 2 s after the move (the child's clock ≈ time since spawn).
    let window_at_child = period + Duration::from_secs(2);
    let mut first_half = None;
    let mut summary = Summary {
        ops: kind.name().into(),
        dry_run,
        size_bytes: size,
        hot_fraction: spec.hot_fraction,
        ..Default::default()
    };
    let mut gone = false;
    let mut was_interrupted = false;
    while t_mon.elapsed() < monitored {
        if signals::stop_requested() {
            was_interrupted = true;
            break;
        }
        if first_half.is_none() && spawned.elapsed() >= window_at_child {
            // End of the first half: its throughput; then the measured window starts.
            first_half = Some(child.truth()?);
            child.mark()?;
        }
        match running.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Snapshot(s, cost)) => {
                summary.probe_pageouts = cost.probe_pageouts;
                if s.aggregated {
                    summary.snapshots += 1;
                    rec.write_frame(&Frame::from_snapshot(&s, 0))?;
                }
            }
            Ok(Event::Applied(r, stats)) => {
                summary.advised_bytes += r.bytes_applied();
                summary.actuation_ms += r.elapsed_ns() as f64 / 1e6;
                for o in &r.outcomes {
                    for (k, b) in &o.errors {
                        *summary
                            .not_applied
                            .entry(k.label().into_owned())
                            .or_default() += b;
                    }
                }
                summary.schemes = stats;
            }
            Ok(Event::Gone(_)) | Ok(Event::AllGone) => {
                gone = true;
                break;
            }
            Ok(Event::Failed(m)) => pb.println(format!("madvd: warning: {m}")),
            Err(_) => {}
        }
        let m = sysinfo::proc_mem(root, pid).unwrap_or_default();
        let t_s = t_mon.elapsed().as_secs_f64();
        if summary.timeline.last().is_none_or(|p| t_s - p.t_s >= 1.0) {
            summary.timeline.push(TimelinePoint {
                t_s,
                vm_swap_bytes: m.swap,
                schemes: summary
                    .schemes
                    .iter()
                    .map(|s| TimelineScheme {
                        name: s.name.clone(),
                        effective_quota: s.effective_quota,
                        goal: s.goal_values.first().copied(),
                        sz_applied: s.sz_applied,
                        sz_not_resident: s.sz_not_resident,
                        qt_exceeds: s.qt_exceeds,
                        refaulted_bytes: s.refaulted_bytes,
                    })
                    .collect(),
            });
        }
        pb.set_position((baseline + t_mon.elapsed()).as_secs());
        pb.set_message(format!(
            "{}: advised {}, child VmSwap {}, RSS {}",
            if first_half.is_some() {
                "measured window"
            } else {
                "monitoring"
            },
            fmt_bytes(summary.advised_bytes),
            fmt_bytes(m.swap),
            fmt_bytes(m.rss)
        ));
    }
    // The end of the monitored phase: measure while the stages still run, then stop them.
    let end = if gone || was_interrupted {
        None
    } else {
        let w = child.truth()?;
        let c = cpu(pid);
        summary.monitored_s = t_mon.elapsed().as_secs_f64();
        Some((
            w,
            c,
            sysinfo::proc_mem(root, pid).unwrap_or_default(),
            sysinfo::sys_mem(root),
        ))
    };
    let events = running.events.clone();
    let t_stop = Instant::now();
    running.stop_and_join();
    tracing::debug!("stages stopped in {:?}", t_stop.elapsed());
    while let Ok(ev) = events.try_recv() {
        if let Event::Applied(r, stats) = ev {
            summary.advised_bytes += r.bytes_applied();
            summary.schemes = stats;
        }
    }
    rec.finish(if was_interrupted {
        "signal"
    } else {
        "duration"
    })?;
    if gone {
        pb.finish_and_clear();
        return Err(err(
            Code::Failure,
            format!("the workload child (pid {pid}) exited during the demo"),
        ));
    }
    if was_interrupted {
        pb.finish_and_clear();
        return Err(err(
            Code::Interrupted,
            "interrupted: workload stopped, temporary swap removed",
        ));
    }

    // 5. Measure: the window's ground truth and memory now; then the child alone again, so
    // "before" and "after" bracket "during" (the machine's other load drifts).
    let (window, cpu2, mem1, sys1) = end.expect("measured unless gone or interrupted");
    child.mark()?;
    let cpu2_after = cpu(pid);
    let t_after = Instant::now();
    pb.set_message("after: the workload alone again");
    while t_after.elapsed() < baseline {
        interrupted(&pb)?;
        std::thread::sleep(Duration::from_millis(100));
        pb.set_position((baseline + monitored + t_after.elapsed()).as_secs());
    }
    let after = child.truth()?;
    let cpu3 = cpu(pid);
    pb.finish_and_clear();
    let first = first_half.unwrap_or_else(|| window.clone());
    let during_ops = first.ops + window.ops;
    let during_s = (first.elapsed_ms + window.elapsed_ms) as f64 / 1000.0;
    let during = during_ops as f64 / during_s.max(1e-3);
    summary.baseline_s = before.elapsed_ms as f64 / 1000.0;
    summary.window_s = window.elapsed_ms as f64 / 1000.0;
    summary.swap = swap_desc;
    summary.other_reclaimer = coexistence;
    summary.saved = SavedJson {
        vm_swap_bytes: mem1.swap as i64 - mem0.swap as i64,
        rss_bytes: mem0.rss as i64 - mem1.rss as i64,
        mem_available_bytes: match (sys0, sys1) {
            (Some(a), Some(b)) => b.mem_available as i64 - a.mem_available as i64,
            _ => 0,
        },
    };
    summary.oracle_bytes = window.untouched_bytes;
    summary.saved_over_oracle =
        summary.saved.vm_swap_bytes.max(0) as f64 / (window.untouched_bytes.max(1)) as f64;
    let alone = (before.ops_per_sec + after.ops_per_sec) / 2.0;
    let per_cpu = |ops: u64, s: f64| ops as f64 / s.max(1e-3);
    let (b_cpu, d_cpu, a_cpu) = (
        per_cpu(before.ops, cpu1 - cpu0),
        per_cpu(during_ops, cpu2 - cpu1),
        per_cpu(after.ops, cpu3 - cpu2_after),
    );
    let alone_cpu = (b_cpu + a_cpu) / 2.0;
    summary.throughput = Throughput {
        before_ops_per_s: before.ops_per_sec,
        after_ops_per_s: after.ops_per_sec,
        during_ops_per_s: during,
        slowdown_pct: (1.0 - during / alone.max(1e-9)) * 100.0,
        before_ops_per_cpu_s: b_cpu,
        after_ops_per_cpu_s: a_cpu,
        during_ops_per_cpu_s: d_cpu,
        cpu_slowdown_pct: (1.0 - d_cpu / alone_cpu.max(1e-9)) * 100.0,
    };
    summary.hot_moved = window.hot != child.hot();
    summary.zram = swap
        .as_ref()
        .and_then(|s| s.zram_mm_stat())
        .map(|m| ZramJson {
            orig_data_size: m.orig_data_size,
            compr_data_size: m.compr_data_size,
            mem_used_total: m.mem_used_total,
        });

    // Heatmap.
    let png = a
        .heatmap
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("madvd-demo-heatmap.png"));
    match crate::record::read(&rec_path).and_then(|r| {
        let m = mapping;
        let g = crate::heatmap::build(&r, pid, 300, 150, Some((m.start, m.end)))?;
        crate::heatmap::render(&g, &crate::cmd::report::title(&r, pid), &png)
    }) {
        Ok(()) => summary.heatmap = Some(png),
        Err(e) => eprintln!("madvd: warning: heatmap: {}", crate::exit::one_line(&e)),
    }
    if a.record.is_some() {
        summary.record = Some(rec_path.clone());
    } else {
        let _ = std::fs::remove_file(&rec_path);
    }

    // 6. Nothing lost: every page of the child still holds what it wrote.
    let v = child.verify()?;
    summary.verified_pages = v.pages;
    summary.bad_pages = v.bad_pages;
    drop(child);
    drop(swap);

    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    if summary.bad_pages > 0 {
        return Err(err(
            Code::Failure,
            format!(
                "{} of {} pages of the workload changed: data lost",
                summary.bad_pages, summary.verified_pages
            ),
        ));
    }
    Ok(())
}

fn print_summary(s: &Summary) {
    println!();
    println!(
        "madvd demo — results{}",
        if s.dry_run {
            " (DRY RUN: nothing was advised)"
        } else {
            ""
        }
    );
    println!("  access primitive       {}", s.ops);
    println!(
        "  workload               {} in one mapping, {:.0}% hot, hot set moved: {}",
        fmt_bytes(s.size_bytes),
        s.hot_fraction * 100.0,
        if s.hot_moved { "yes" } else { "no" }
    );
    println!("  monitored              {:.1} s (baseline {:.1} s before it); measured window: last {:.1} s", s.monitored_s, s.baseline_s, s.window_s);
    println!(
        "  memory saved           VmSwap +{}, RSS −{}, MemAvailable {}",
        fmt_bytes_f(s.saved.vm_swap_bytes as f64),
        fmt_bytes_f(s.saved.rss_bytes as f64),
        fmt_bytes_f(s.saved.mem_available_bytes as f64)
    );
    if let Some(z) = &s.zram {
        println!(
            "  zram                   holds {} in {} ({} used)",
            fmt_bytes(z.orig_data_size),
            fmt_bytes(z.compr_data_size),
            fmt_bytes(z.mem_used_total)
        );
    }
    println!(
        "  oracle                 {} untouched by the workload during the window",
        fmt_bytes(s.oracle_bytes)
    );
    println!("  saved / oracle         {:.2}", s.saved_over_oracle);
    println!(
        "  throughput             {:.0} ops/s alone (before {:.0}, after {:.0}), {:.0} ops/s during: slowdown {:.1}%",
        (s.throughput.before_ops_per_s + s.throughput.after_ops_per_s) / 2.0,
        s.throughput.before_ops_per_s,
        s.throughput.after_ops_per_s,
        s.throughput.during_ops_per_s,
        s.throughput.slowdown_pct
    );
    println!(
        "  per CPU-second         {:.0} ops alone, {:.0} during: slowdown {:.1}% (the cost per access, apart from the machine's load)",
        (s.throughput.before_ops_per_cpu_s + s.throughput.after_ops_per_cpu_s) / 2.0,
        s.throughput.during_ops_per_cpu_s,
        s.throughput.cpu_slowdown_pct
    );
    println!(
        "  advised                {} by {} scheme(s) in {:.0} ms of process_madvise (cold regions are re-advised as they age again); probe page-outs {}",
        fmt_bytes(s.advised_bytes),
        s.schemes.len(),
        s.actuation_ms,
        s.probe_pageouts
    );
    println!(
        "  data check             {} pages verified, {} bad",
        s.verified_pages, s.bad_pages
    );
    println!("  swap                   {}", s.swap);
    match &s.heatmap {
        Some(p) => println!("  heatmap                {}", p.display()),
        None => println!("  heatmap                (not written)"),
    }
}
