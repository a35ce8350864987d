//! `madvd run`: apply a policy to live processes until stopped — the stage loop of
//! `pipeline/` with periodic and final summaries.

use crate::cli::RunArgs;
use crate::exit::{err, Code};
use crate::pipeline::follow::Follow;
use crate::pipeline::{self, Event, SchemeLine, SchemesConfig, StageConfig, Watched};
use crate::signals;
use crate::sysinfo::{self, ProcMem, SysMem};
use crate::targets;
use crate::units::{fmt_bytes, fmt_bytes_f};
use anyhow::Result;
use engine::access::MonitorCost;
use engine::ops::OpsKind;
use engine::{ApplyErrorKind, ApplyReport, Snapshot, SysRoot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Memory figures relative to the start of the run (positive = memory saved).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Saved {
    /// Σ over live targets of VmSwap now − VmSwap at start.
    pub swap_bytes: i64,
    /// Σ over live targets of VmRSS at start − VmRSS now.
    pub rss_bytes: i64,
    /// MemAvailable now − MemAvailable at start (system-wide: other processes move it too).
    pub mem_available_bytes: i64,
}

/// Everything the summaries print, accumulated from the events.
#[derive(Default)]
pub struct Tally {
    pub snapshots: u64,
    pub regions: usize,
    pub cost: MonitorCost,
    pub schemes: Vec<SchemeLine>,
    pub rounds: u64,
    pub bytes_applied: u64,
    pub elapsed_ns: u64,
    pub errors: BTreeMap<String, u64>,
    pub gone: Vec<u32>,
    /// `--children`: each target of the last aggregated snapshot.
    pub by_pid: Option<Vec<Watching>>,
}

/// One target of a snapshot (`--children` output): its regions and the bytes they cover.
#[derive(Clone, Debug, Serialize)]
pub struct Watching {
    pub pid: u32,
    pub regions: usize,
    pub bytes: u64,
}

fn watching(s: &Snapshot) -> Vec<Watching> {
    s.targets
        .iter()
        .map(|t| Watching {
            pid: t.target.0,
            regions: t.regions.len(),
            bytes: t.total_bytes(),
        })
        .collect()
}

impl Tally {
    pub fn report(&mut self, r: &ApplyReport, stats: Vec<SchemeLine>) {
        self.rounds += 1;
        self.bytes_applied += r.bytes_applied();
        self.elapsed_ns += r.elapsed_ns();
        for o in &r.outcomes {
            for (k, b) in &o.errors {
                if !matches!(k, ApplyErrorKind::DryRun) {
                    *self.errors.entry(k.label().into_owned()).or_default() += b;
                }
            }
        }
        self.schemes = stats;
    }
}

/// Baselines for "memory saved".
pub struct Baseline {
    pub procs: BTreeMap<u32, ProcMem>,
    pub sys: Option<SysMem>,
}

impl Baseline {
    pub fn take(root: &SysRoot, pids: &[u32]) -> Self {
        Self {
            procs: pids
                .iter()
                .filter_map(|&p| sysinfo::proc_mem(root, p).map(|m| (p, m)))
                .collect(),
            sys: sysinfo::sys_mem(root),
        }
    }

    pub fn saved(&self, root: &SysRoot, gone: &[u32]) -> Saved {
        let mut s = Saved::default();
        for (pid, m0) in &self.procs {
            if gone.contains(pid) {
                continue;
            }
            if let Some(m) = sysinfo::proc_mem(root, *pid) {
                s.swap_bytes += m.swap as i64 - m0.swap as i64;
                s.rss_bytes += m0.rss as i64 - m.rss as i64;
            }
        }
        if let (Some(a), Some(b)) = (self.sys, sysinfo::sys_mem(root)) {
            s.mem_available_bytes = b.mem_available as i64 - a.mem_available as i64;
        }
        s
    }
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "final")]
    is_final: bool,
    t_s: f64,
    ops: &'a str,
    dry_run: bool,
    targets: usize,
    regions: usize,
    snapshots: u64,
    rounds: u64,
    bytes_applied: u64,
    actuation_ms: f64,
    schemes: &'a [SchemeLine],
    saved: Saved,
    probe_pageouts: u64,
    /// Of `probe_pageouts`, pages the target faulted back in (its major faults that no
    /// scheme caused).
    probe_refaults: u64,
    samples: u64,
    errors: &'a BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_pid: Option<&'a [Watching]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
}

fn human(l: &Line<'_>) -> String {
    let advised = if l.schemes.is_empty() {
        "no schemes".to_string()
    } else {
        l.schemes
            .iter()
            .map(|s| {
                let mut skipped = if s.sz_not_huge > 0 {
                    format!(", skipped no huge page {}", fmt_bytes(s.sz_not_huge))
                } else {
                    String::new()
                };
                if s.sz_already_huge > 0 {
                    skipped += &format!(", skipped huge already {}", fmt_bytes(s.sz_already_huge));
                }
                if s.sz_not_idle > 0 {
                    skipped += &format!(", kept in as not idle {}", fmt_bytes(s.sz_not_idle));
                }
                format!(
                    "{} {} {} (resident {}, skipped not resident {}{skipped})",
                    s.name,
                    s.action,
                    fmt_bytes(s.sz_applied),
                    fmt_bytes(s.sz_resident),
                    fmt_bytes(s.sz_not_resident)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let inactive = inactive_schemes(l.schemes);
    let per_s = if l.t_s > 0.0 {
        l.probe_pageouts as f64 / l.t_s
    } else {
        0.0
    };
    let mut s = format!(
        "[{:>7.1}s] {}{} | {} targets, {} regions | advised: {} | saved: swap {}, rss {}, MemAvailable {} | probe: {} page-outs ({:.0}/s)",
        l.t_s,
        l.ops,
        if l.dry_run { " (dry run)" } else { "" },
        l.targets,
        l.regions,
        advised,
        fmt_bytes_f(l.saved.swap_bytes as f64),
        fmt_bytes_f(l.saved.rss_bytes as f64),
        fmt_bytes_f(l.saved.mem_available_bytes as f64),
        l.probe_pageouts,
        per_s
    );
    if !inactive.is_empty() {
        s += &format!(" | inactive: {}", inactive.join(", "));
    }
    if !l.errors.is_empty() {
        s += &format!(
            " | not applied: {}",
            l.errors
                .iter()
                .map(|(k, b)| format!("{k} {}", fmt_bytes(*b)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(r) = l.reason {
        s = format!("final ({r}): {s}");
    }
    s
}

/// Resolve `--pid/--cgroup/--comm` to pids.
pub fn resolve_pids(root: &SysRoot, a: &crate::cli::Targets) -> Result<Vec<u32>> {
    if !a.pid.is_empty() {
        let mut v = a.pid.clone();
        v.sort_unstable();
        v.dedup();
        return Ok(v);
    }
    if let Some(cg) = &a.cgroup {
        let v = sysinfo::pids_in_cgroup(cg).map_err(|e| {
            err(
                Code::Target,
                format!("{}: cannot read cgroup.procs: {e}", cg.display()),
            )
        })?;
        let me = std::process::id();
        let v: Vec<u32> = v.into_iter().filter(|&p| p != me).collect();
        if v.is_empty() {
            return Err(err(
                Code::Target,
                format!("{}: no processes in this cgroup", cg.display()),
            ));
        }
        return Ok(v);
    }
    let name = a.comm.as_deref().expect("clap requires one kind of target");
    let me = std::process::id();
    let v: Vec<u32> = sysinfo::pids_by_comm(root, name)
        .map_err(|e| err(Code::Failure, format!("{}: {e}", root.proc.display())))?
        .into_iter()
        .filter(|&p| p != me)
        .collect();
    if v.is_empty() {
        return Err(err(
            Code::Target,
            format!("no process named '{name}' (as /proc/PID/comm shows it)"),
        ));
    }
    Ok(v)
}

pub fn run(root: &SysRoot, a: RunArgs) -> Result<()> {
    if let Some(spec) = a.targets.paddr.clone() {
        return super::paddr_run::run(root, a, &spec);
    }
    let policy = crate::policy::load(&a.policy)?;
    let pids = resolve_pids(root, &a.targets)?;
    let kind = targets::choose(root, &a.ops)?;
    if a.children && kind == OpsKind::Damon {
        return Err(err(
            Code::Usage,
            "--children: kernel DAMON watches a fixed set of targets; choose another --ops",
        ));
    }
    let procs = targets::open_all(root, &pids, a.allow_pid1)?;
    let act_procs = targets::reopen_all(root, &procs, a.allow_pid1)?;
    crate::exit::require_cap_sys_nice(root, &policy, a.dry_run)?;
    let schemes = SchemesConfig {
        policy,
        procs: act_procs,
        dry_run: a.dry_run,
    };
    let mut follow = match a.children {
        true => Some(Follow::start(&procs)?),
        false => None,
    };
    let mut cfg = StageConfig::new(root, kind, Watched::Procs(procs), &a.attrs, Some(schemes));
    // Targets come and go (`--children`); the run still ends when none is left.
    cfg.live = follow.is_some();
    let stages = pipeline::build(cfg)?;
    let attrs = stages.attrs();
    if let Some(f) = &mut follow {
        // The walk follows the update interval in force (the primitive's default too).
        f.set_every(attrs.ops_update_us);
    }
    let note = stages.note();
    let baseline = Baseline::take(root, &pids);
    let running = stages.start()?;
    // JSON keeps the bare name; the human lines say what the primitive cannot see.
    let shown = if a.json {
        kind.name().to_string()
    } else {
        kind.label().to_string()
    };
    if let Some(n) = note {
        eprintln!("madvd: note: {n}");
    }
    if let Some(n) = crate::sysinfo::coexistence_note(root) {
        eprintln!("madvd: note: {n}");
    }
    if !a.json {
        eprintln!(
            "madvd run: {} on {} target(s) [{}] with {}{}; {} sampling, {} aggregation; Ctrl-C stops",
            a.policy.display(),
            pids.len(),
            pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "),
            shown,
            if a.dry_run { " (dry run: nothing is advised)" } else { "" },
            crate::units::fmt_duration_us(attrs.sample_us),
            crate::units::fmt_duration_us(attrs.aggr_us)
        );
    }
    let t0 = Instant::now();
    let mut tally = Tally {
        by_pid: a.children.then(Vec::new),
        ..Tally::default()
    };
    let mut next_print = t0 + a.every;
    let reason;
    loop {
        if signals::stop_requested() {
            reason = signals::signal_name().unwrap_or("signal");
            break;
        }
        if a.for_.is_some_and(|d| t0.elapsed() >= d) {
            reason = "duration";
            break;
        }
        match running.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Snapshot(s, cost)) => {
                tally.cost = cost;
                if s.aggregated {
                    tally.snapshots += 1;
                    tally.regions = s.nr_regions();
                    if let Some(w) = &mut tally.by_pid {
                        *w = watching(&s);
                    }
                }
            }
            Ok(Event::Applied(r, stats)) => tally.report(&r, stats),
            Ok(Event::Gone(t)) => {
                if let Some(f) = &mut follow {
                    f.exited(t.0);
                } else if !tally.gone.contains(&t.0) {
                    tally.gone.push(t.0);
                    eprintln!(
                        "pid {t} exited: dropped ({} target(s) left)",
                        pids.len() - tally.gone.len()
                    );
                }
            }
            Ok(Event::AllGone) => {
                reason = "targets_gone";
                break;
            }
            Ok(Event::Failed(m)) => eprintln!("madvd: warning: {m}"),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                reason = signals::signal_name().unwrap_or("stopped");
                break;
            }
        }
        if let Some(f) = &mut follow {
            f.step(root, &running);
            tally.gone.clone_from(&f.exited);
            if f.watched.is_empty() {
                reason = "targets_gone";
                break;
            }
        }
        let targets = follow.as_ref().map(|f| f.watched.len());
        if Instant::now() >= next_print {
            next_print += a.every;
            let targets = targets.unwrap_or_else(|| pids.len() - tally.gone.len());
            print_line(&a, &shown, &tally, &baseline, root, targets, t0, None);
        }
    }
    // Stop at a batch boundary, then account whatever the last round reported.
    let events = running.events.clone();
    running.stop_and_join();
    while let Ok(ev) = events.try_recv() {
        if let Event::Applied(r, stats) = ev {
            tally.report(&r, stats);
        }
    }
    let targets = follow.map(|f| f.watched.len());
    let targets = targets.unwrap_or_else(|| pids.len() - tally.gone.len());
    print_line(
        &a,
        &shown,
        &tally,
        &baseline,
        root,
        targets,
        t0,
        Some(reason),
    );
    crate::exit::require_applied(a.dry_run, tally.bytes_applied, &tally.errors)
}

#[allow(clippy::too_many_arguments)]
fn print_line(
    a: &RunArgs,
    ops: &str,
    t: &Tally,
    base: &Baseline,
    root: &SysRoot,
    targets: usize,
    t0: Instant,
    reason: Option<&str>,
) {
    let line = Line {
        is_final: reason.is_some(),
        t_s: t0.elapsed().as_secs_f64(),
        ops,
        dry_run: a.dry_run,
        targets,
        regions: t.regions,
        snapshots: t.snapshots,
        rounds: t.rounds,
        bytes_applied: t.bytes_applied,
        actuation_ms: t.elapsed_ns as f64 / 1e6,
        schemes: &t.schemes,
        saved: base.saved(root, &t.gone),
        probe_pageouts: t.cost.probe_pageouts,
        probe_refaults: t.cost.probe_refaults,
        samples: t.cost.samples,
        errors: &t.errors,
        by_pid: t.by_pid.as_deref(),
        reason,
    };
    if a.json {
        println!("{}", serde_json::to_string(&line).expect("serializes"));
    } else {
        println!("{}", human(&line));
    }
}

/// "name (reason)" for each scheme that is not active, for the status lines of `run` and
/// `run --paddr`.
pub(crate) fn inactive_schemes(schemes: &[SchemeLine]) -> Vec<String> {
    schemes
        .iter()
        .filter(|s| !s.active)
        .map(|s| {
            format!(
                "{} ({})",
                s.name,
                s.inactive_reason.as_deref().unwrap_or("inactive")
            )
        })
        .collect()
}
