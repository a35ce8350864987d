//! Golden advice: every shipped policy (`policies/*.ron`) runs on the sim with fixed seeds,
//! a fake clock and a fake actuator, and the advice it gives must be exactly the advice
//! recorded in `tests/golden/<policy>.txt`. A refactor that changes what any policy advises,
//! when, or in what order, fails here with the first differing line.
//!
//! `MADVD_BLESS=1 cargo test --test golden_advice` rewrites the golden files (only when the
//! behaviour change is intended; say why in the commit).
//!
//! The driver ([`run_policy`]) is the stage loop of `src/pipeline.rs` without threads or
//! wall clock: the monitor steps every sampling interval of a fake clock; each aggregated
//! snapshot (or mid-aggregation snapshot, when a scheme's apply interval is due earlier) goes
//! to the schemes; the advice is "applied in full" by a fake actuator, and the report goes
//! back to the schemes (quota charging, stats) and to the monitor (age reset) before the next
//! step, as the pipeline does. While every scheme is inactive by its watermarks the monitor
//! does not step (`kdamond_wait_activation()`); the watermarks are checked at their interval
//! (`Schemes::check_watermarks`), as the pipeline's actuation thread does.

use engine::monitor::Monitor;
use engine::ops::sim::{SimOps, SimSpace};
use engine::{AccessCheck, AdviceRequest, ApplyReport, RangeOutcome, TargetId};
use schemes::{FakeMetrics, Policy, Schemes};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

mod common;
use common::{repo, MIB};

const SEC: u64 = 1_000_000;

/// Sim time each policy runs: reclaim-cold's and reclaim-psi's 2 min minimum age, plus 80 s
/// of action (with a watermark pause in it, see [`set_metrics`]).
const RUN_US: u64 = 200 * SEC;

/// Every scheme's stats are recorded this often (the `stat` policy gives no advice at all:
/// its stats are what it does).
const STATS_EVERY_US: u64 = 10 * SEC;

/// The fake actuator's speed: 250 ns per 4 KiB page (1 GiB in 65.5 ms), so the time quotas
/// (5 to 200 ms per second) bind for some policies and not for others.
const NS_PER_PAGE: u64 = 250;

/// The targets: a 1 GiB `hotcold` space (a hot 10% touched every interval, the rest never:
/// cold and hot areas for every kind of scheme) and a 256 MiB `moving` space (a 10% window
/// sweeping through it every 20 s: memory that is idle for a while, then busy again).
fn sim_ops() -> SimOps {
    let mut ops = SimOps::new();
    let hotcold = SimSpace::scenario("hotcold", 1024 * MIB)
        .unwrap()
        .with_seed(11);
    let moving = SimSpace::scenario("moving", 256 * MIB)
        .unwrap()
        .with_seed(22);
    ops.insert(TargetId(101), hotcold);
    ops.insert(TargetId(202), moving);
    ops
}

/// The system as the watermarks and goals see it, scripted on sim time:
/// - free memory 30% (watermarks 50/40/20%: active), except 150 s..165 s at 60% (above the
///   high watermark: inactive), so activation and deactivation are both exercised;
/// - memory PSI "some" stall at the rates of [`PSI_PHASES`]: reclaim-psi's goal is 1 ms of
///   stall per second, so its quota stays at the minimum until 100 s, grows by half each
///   second from then (it starts paging out at 120 s, with a quota of a few KiB, and is at
///   its time quota some 30 s later), and shrinks again from 170 s.
fn set_metrics(m: &FakeMetrics, now_us: u64) {
    let free = if (150 * SEC..165 * SEC).contains(&now_us) {
        600
    } else {
        300
    };
    m.set_free_permille(free);
    let (mut total, mut from) = (0, 0);
    for &(until_s, rate) in PSI_PHASES {
        let until = (until_s * SEC).min(now_us);
        total += (until.saturating_sub(from)) * rate / SEC;
        from = until;
    }
    m.set_psi_total_us(None, total);
}

/// Memory stall rates, µs per second, each until a sim time (s).
const PSI_PHASES: &[(u64, u64)] = &[(100, 1_500), (170, 500), (1_000, 1_500)];

/// The fake actuator: every request applied in full, at [`NS_PER_PAGE`].
fn applied_in_full(reqs: &[AdviceRequest]) -> ApplyReport {
    ApplyReport {
        outcomes: reqs
            .iter()
            .map(|r| RangeOutcome::of(r, r.range.len(), r.range.len() / 4096 * NS_PER_PAGE))
            .collect(),
        ..ApplyReport::default()
    }
}

/// Run one policy on the sim and return what it did, as text: one line per advice request
/// (sim time µs, target, advice, range, size, scheme) and, every [`STATS_EVERY_US`], one
/// line of stats per scheme.
fn run_policy(name: &str, policy: &Policy) -> String {
    let mut ops = sim_ops();
    let mut attrs = ops.default_attrs();
    policy.apply_monitor_overrides(&mut attrs);
    let mut mon = Monitor::new(attrs, 42).unwrap();
    // As src/pipeline/build.rs sets it.
    mon.set_age_rule(engine::monitor::AgeRule::ZeroRun);
    mon.add_target(TargetId(101));
    mon.add_target(TargetId(202));
    let metrics = FakeMetrics::new();
    set_metrics(&metrics, 0);
    let mut schemes = Schemes::new(policy, Box::new(metrics.clone())).unwrap();
    let mut out = format!(
        "# policies/{name}.ron on sim targets 101 (hotcold 1 GiB) and 202 (moving 256 MiB), \
         {} s; sample {} us, aggr {} us\n",
        RUN_US / SEC,
        attrs.sample_us,
        attrs.aggr_us
    );
    // When a scheme wants a snapshot next (the pipeline's "due" value).
    let mut due = u64::MAX;
    let mut next_stats = STATS_EVERY_US;
    let mut now = 0u64;
    // Every scheme inactive by its watermarks: no step until this watermark check.
    let mut paused: Option<u64> = None;
    while now <= RUN_US {
        if paused.is_some_and(|at| now >= at) {
            set_metrics(&metrics, now);
            schemes.check_watermarks(now);
            paused = schemes.paused_until_us();
            if paused.is_none() {
                writeln!(
                    out,
                    "{now} resumed: a watermark check found a scheme active"
                )
                .unwrap();
                due = schemes.next_apply_due_us().unwrap_or(u64::MAX);
            }
        }
        if paused.is_some() {
            record_stats(&mut out, &schemes, now, &mut next_stats);
            now += mon.step_interval_us();
            continue;
        }
        let step = mon.step(now, &mut ops);
        assert!(step.gone.is_empty(), "a sim target went away");
        let snap = match step.snapshot {
            Some(s) => Some(s),
            None if now >= due => {
                due = u64::MAX;
                Some(mon.snapshot(now))
            }
            None => None,
        };
        if let Some(snap) = snap {
            set_metrics(&metrics, now);
            let reqs = schemes.plan(&snap, now);
            if let Some(d) = schemes.next_apply_due_us() {
                due = d;
            }
            for r in &reqs {
                writeln!(
                    out,
                    "{now} t{} {} {} {}KiB s{}",
                    r.target,
                    r.advice,
                    r.range,
                    r.range.len() >> 10,
                    r.scheme
                )
                .unwrap();
            }
            let report = applied_in_full(&reqs);
            schemes.account(&report, now);
            mon.apply_report(&report);
            paused = schemes.paused_until_us();
            if paused.is_some() {
                writeln!(out, "{now} paused: every scheme inactive by its watermarks").unwrap();
            }
        }
        record_stats(&mut out, &schemes, now, &mut next_stats);
        now += mon.step_interval_us();
    }
    out
}

/// Every [`STATS_EVERY_US`], one line of stats per scheme.
fn record_stats(out: &mut String, schemes: &Schemes, now: u64, next_stats: &mut u64) {
    if now < *next_stats {
        return;
    }
    *next_stats += STATS_EVERY_US;
    for (i, s) in schemes.stats().iter().enumerate() {
        writeln!(
            out,
            "{now} stats s{i} {} active={} tried={}/{}KiB applied={}/{}KiB \
             qt_exceeds={} esz={}KiB goals={:?}",
            s.name,
            s.active,
            s.nr_tried,
            s.sz_tried >> 10,
            s.nr_applied,
            s.sz_applied >> 10,
            s.qt_exceeds,
            s.effective_quota >> 10,
            s.goal_values
        )
        .unwrap();
    }
}

/// Compare `got` with the golden file, or rewrite it under `MADVD_BLESS=1`.
fn check_golden(path: &Path, got: &str) -> Result<(), String> {
    if std::env::var_os("MADVD_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, got).unwrap();
        return Ok(());
    }
    let want = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "{}: {e} (record it with MADVD_BLESS=1 cargo test --test golden_advice)",
            path.display()
        )
    })?;
    let (mut w, mut g) = (want.lines(), got.lines());
    let mut n = 0;
    loop {
        n += 1;
        match (w.next(), g.next()) {
            (None, None) => return Ok(()),
            (a, b) if a == b => continue,
            (a, b) => {
                return Err(format!(
                    "{}:{n}: the advice differs from the golden file\n  golden: {}\n  now:    {}",
                    path.display(),
                    a.unwrap_or("<end of file>"),
                    b.unwrap_or("<end of output>")
                ))
            }
        }
    }
}

#[test]
fn every_shipped_policy_gives_its_golden_advice() {
    let mut policies: Vec<PathBuf> = std::fs::read_dir(repo("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ron"))
        .collect();
    policies.sort();
    assert!(!policies.is_empty());
    let mut failures = Vec::new();
    for path in &policies {
        let name = path.file_stem().unwrap().to_str().unwrap();
        let policy = Policy::load(path).unwrap_or_else(|e| panic!("{e}"));
        let got = run_policy(name, &policy);
        let advice = got
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains(" stats "))
            .count();
        // `stat` counts and never advises: its stats lines are what it does. Every other
        // shipped policy must act in this scenario, or its golden file would check little.
        if name == "stat" {
            assert_eq!(advice, 0, "{name}: a stat scheme advised");
        } else {
            assert!(advice > 0, "{name}: gave no advice on the sim");
        }
        let golden = repo("tests/golden").join(format!("{name}.txt"));
        if let Err(e) = check_golden(&golden, &got) {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
