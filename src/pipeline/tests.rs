//! The stages over kernel DAMON (a fake sysfs), and what `build` refuses.

use super::source::KernelSource;
use super::*;
use crate::cli::AttrFlags;
use crate::exit::Code;
use engine::kernel::damon_sysfs::fake::FakeDamonSysfs;
use engine::kernel::damon_sysfs::TriedRegion;
use engine::ops::damon::KernelDamon;
use engine::ops::OpsKind;
use engine::{Attrs, SysRoot, TargetId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn kernel(fake: &FakeDamonSysfs, targets: &[TargetId]) -> KernelDamon {
    let attrs = Attrs {
        sample_us: 1_000,
        aggr_us: 20_000,
        ..Attrs::default()
    };
    KernelDamon::start_with(Box::new(fake.clone()), &fake.admin(), targets, attrs).unwrap()
}

fn start_kernel(kd: KernelDamon) -> Running {
    Stages::from_source(Box::new(KernelSource::new(kd)), SysRoot::host())
        .start()
        .unwrap()
}

fn recv(r: &Running) -> Event {
    r.events
        .recv_timeout(Duration::from_secs(10))
        .expect("an event within 10 s")
}

/// The kernel stage sends the kdamond's regions as snapshots, ends with `AllGone` when
/// the kdamond stops by itself, and removes its sysfs directories on the way out.
#[test]
fn kernel_stage_sends_the_kernels_regions_then_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    fake.set_regions(
        0,
        vec![TriedRegion {
            start: 0x10_000,
            end: 0x20_000,
            nr_accesses: 5,
            age: 3,
        }],
    );
    let kd = kernel(&fake, &[TargetId(4242)]);
    assert_ne!(
        fake.files(),
        before,
        "the kdamond's directories exist while it runs"
    );
    let r = start_kernel(kd);
    let Event::Snapshot(s, _) = recv(&r) else {
        panic!("first event is not a snapshot")
    };
    assert!(s.aggregated);
    assert_eq!(s.targets.len(), 1);
    assert_eq!(s.targets[0].target, TargetId(4242));
    let reg = &s.targets[0].regions[0];
    assert_eq!(
        (reg.start(), reg.end(), reg.nr_accesses, reg.age),
        (0x10_000, 0x20_000, 5, 3)
    );
    fake.kdamond_exits().unwrap();
    let mut all_gone = false;
    while let Ok(ev) = r.events.recv_timeout(Duration::from_secs(10)) {
        if matches!(ev, Event::AllGone) {
            all_gone = true;
            break;
        }
    }
    assert!(all_gone, "a stopped kdamond ends the run with AllGone");
    r.stop_and_join();
    assert_eq!(
        fake.files(),
        before,
        "the kdamond's directories are removed"
    );
}

/// Stopping the stages (signal, `--for`) stops the kdamond and removes its directories.
#[test]
fn stopping_the_kernel_stage_stops_the_kdamond() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let before = fake.files();
    let kd = kernel(&fake, &[TargetId(1), TargetId(2)]);
    let r = start_kernel(kd);
    assert!(matches!(recv(&r), Event::Snapshot(..)));
    r.stop_and_join();
    assert_eq!(fake.files(), before);
}

/// Live stages (the agent's) cannot run on a kdamond: refused before anything is written.
#[test]
fn kernel_damon_cannot_be_live() {
    let dir = tempfile::tempdir().unwrap();
    let root = SysRoot::under(dir.path());
    let mut cfg = StageConfig::new(
        &root,
        OpsKind::Damon,
        Watched::Procs(Vec::new()),
        &AttrFlags::default(),
        None,
    );
    cfg.live = true;
    let e = build(cfg).err().expect("refused");
    assert!(e.to_string().contains("fixed set of targets"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Kernel DAMON on an empty root: refused (a failure naming it) before anything is written.
#[test]
fn damon_without_its_sysfs_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = SysRoot::under(dir.path());
    let cfg = StageConfig::new(
        &root,
        OpsKind::Damon,
        Watched::Procs(Vec::new()),
        &AttrFlags::default(),
        None,
    );
    let e = build(cfg)
        .err()
        .expect("no DAMON sysfs under an empty root");
    assert_eq!(crate::exit::code_of(&e), Code::Failure);
    assert!(format!("{e:#}").contains("kernel DAMON"), "{e:#}");
}

/// page_idle without the bitmap: a failure naming the missing file, not a panic.
#[test]
fn page_idle_without_its_bitmap_is_a_clear_failure() {
    let dir = tempfile::tempdir().unwrap();
    let e = ops::build_ops(
        OpsKind::PageIdle,
        &SysRoot::under(dir.path()),
        Watched::Procs(Vec::new()),
    )
    .err()
    .expect("no bitmap under an empty root");
    assert_eq!(crate::exit::code_of(&e), Code::Failure);
    assert!(format!("{e:#}").contains("page_idle"), "{e:#}");
    assert!(ops::build_ops(
        OpsKind::SoftDirty,
        &SysRoot::host(),
        Watched::Procs(Vec::new())
    )
    .is_ok());
}

/// Flags beat the policy's `monitor` section, which beats the primitive's defaults; a bad
/// result is a usage error naming the attribute.
#[test]
fn flags_beat_policy_beat_defaults() {
    let policy = schemes::Policy::from_str(
        r#"(monitor: (sample: "50 ms"), schemes: [(name: "s", pattern: (), action: stat)])"#,
        std::path::Path::new("p.ron"),
    )
    .unwrap();
    let sim = || engine::ops::sim::SimSpace::scenario("hotcold", 64 << 20).unwrap();
    let flags = AttrFlags {
        aggr: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let schemes = SchemesConfig {
        policy: policy.clone(),
        procs: Vec::new(),
        dry_run: true,
    };
    let cfg = StageConfig::new(
        &SysRoot::host(),
        OpsKind::Sim,
        Watched::Sim(sim()),
        &flags,
        Some(schemes),
    );
    let a = build(cfg).unwrap().attrs();
    assert_eq!((a.sample_us, a.aggr_us), (50_000, 3_000_000));
    let bad = AttrFlags {
        sample: Some(Duration::from_secs(5)),
        aggr: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let cfg = StageConfig::new(
        &SysRoot::host(),
        OpsKind::Sim,
        Watched::Sim(sim()),
        &bad,
        None,
    );
    let e = build(cfg).err().expect("sample above aggregation");
    assert_eq!(crate::exit::code_of(&e), Code::Usage);
    assert!(format!("{e:#}").contains("sample interval"), "{e:#}");
}

/// The stages' config over a 64 MiB `hotcold` sim with the policy `text` (file `p.ron`),
/// dry run, default flags.
fn sim_config_with_policy(text: &str) -> StageConfig {
    let policy = schemes::Policy::from_str(text, std::path::Path::new("p.ron")).unwrap();
    let space = engine::ops::sim::SimSpace::scenario("hotcold", 64 << 20).unwrap();
    let schemes = SchemesConfig {
        policy,
        procs: Vec::new(),
        dry_run: true,
    };
    StageConfig::new(
        &SysRoot::host(),
        OpsKind::Sim,
        Watched::Sim(space),
        &AttrFlags::default(),
        Some(schemes),
    )
}

/// A scheme whose apply interval is shorter than the aggregation gets mid-aggregation
/// snapshots: the next due time travels back in the feedback, no other channel.
#[test]
fn short_apply_interval_gets_mid_aggregation_snapshots_through_the_feedback() {
    let cfg = sim_config_with_policy(
        r#"(monitor: (sample: "2 ms", aggr: "200 ms"),
            schemes: [(name: "s", pattern: (), action: stat, apply_interval: "20 ms")])"#,
    );
    let r = build(cfg).unwrap().start().unwrap();
    let (mut mid, mut rounds) = (0, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mid < 2 || rounds < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "{mid} mid-aggregation snapshots, {rounds} rounds in 10 s"
        );
        match recv(&r) {
            Event::Snapshot(s, _) if !s.aggregated => mid += 1,
            Event::Applied(..) => rounds += 1,
            _ => {}
        }
    }
    r.stop_and_join();
}

/// Page-level filters (`anon`, `young`, memcg) are the kernel's ops-layer filters, evaluated
/// per page by the operations set: `damos_pa_filter_out()` in mm/damon/paddr.c (Linux
/// 6.12.117); 6.12's vaddr.c evaluates none. madvd's stages do not read pages for them, so a
/// scheme with one would sit inactive forever: building the stages refuses such a policy,
/// naming the scheme, its position and why (as `madvd check` does).
#[test]
fn kernel_rule_damos_pa_filter_out() {
    let cfg = sim_config_with_policy(
        "(schemes: [\n  (name: \"anon-only\", pattern: (), action: pageout,\n   filters: [(kind: anon, matching: false, allow: false)])])",
    );
    let e = build(cfg).err().expect("a page-level filter is refused");
    let msg = format!("{e:#}");
    assert!(msg.starts_with("p.ron:2:"), "{msg}");
    assert!(
        msg.contains("\"anon-only\"") && msg.contains("`anon` is page-level"),
        "{msg}"
    );
    assert!(msg.contains("would never be applied"), "{msg}");
}

/// Stages over a 64 MiB sim space built as `run` builds them, no schemes: sampling every
/// 1 ms, aggregating every `aggr_ms`.
fn sim_stages(scenario: &str, aggr_ms: u64) -> Stages {
    let space = engine::ops::sim::SimSpace::scenario(scenario, 64 << 20).unwrap();
    let flags = AttrFlags {
        sample: Some(Duration::from_millis(1)),
        aggr: Some(Duration::from_millis(aggr_ms)),
        ..Default::default()
    };
    let cfg = StageConfig::new(
        &SysRoot::host(),
        OpsKind::Sim,
        Watched::Sim(space),
        &flags,
        None,
    );
    build(cfg).unwrap()
}

/// A sim source (10 ms aggregations).
fn sim_source(scenario: &str) -> Box<dyn source::SnapshotSource> {
    sim_stages(scenario, 10).source
}

/// Pull `src` (1 ms steps from `*now`) until it gives an aggregated snapshot.
fn next_aggregated(src: &mut dyn source::SnapshotSource, now: &mut u64) -> engine::Snapshot {
    loop {
        *now += 1_000;
        if let Some(s) = src.pull(*now, false).unwrap().snapshot {
            return s;
        }
    }
}

/// `damos_apply_scheme()` (mm/damon/core.c, Linux 6.12.117) sets `r->age = 0` for a
/// non-stat action after `ops.apply_scheme()`, whatever it returned: a region the schemes
/// advised ages from 0 again even when the advice applied nothing (a dry run, a refusal,
/// an error). The feedback carries the report; the monitor resets every requested range.
#[test]
fn kernel_rule_damos_apply_scheme() {
    let mut src = sim_source("hotcold");
    let mut now = 0;
    let mut snap = next_aggregated(src.as_mut(), &mut now);
    for _ in 0..5 {
        snap = next_aggregated(src.as_mut(), &mut now);
    }
    let t = &snap.targets[0];
    let old = t.regions.iter().max_by_key(|r| r.age).unwrap().clone();
    assert!(old.age >= 3, "{old:?}");
    let req = engine::AdviceRequest {
        target: t.target,
        range: old.ar,
        advice: engine::Advice::Pageout,
        scheme: 0,
    };
    let mut out = engine::RangeOutcome::of(&req, 0, 0);
    out.errors
        .push((engine::ApplyErrorKind::DryRun, old.ar.len()));
    src.feedback(&actuate::Feedback {
        report: engine::ApplyReport {
            outcomes: vec![out],
            gone: Vec::new(),
            dry_run: true,
        },
        round: true,
        ..actuate::Feedback::default()
    });
    let after = src.pull(now, true).unwrap().snapshot.unwrap();
    let covered: Vec<_> = after.targets[0]
        .regions
        .iter()
        .filter(|r| old.ar.start <= r.start() && r.end() <= old.ar.end)
        .collect();
    assert!(!covered.is_empty());
    assert!(
        covered.iter().all(|r| r.age == 0),
        "advised with nothing applied, yet aged: {covered:?}"
    );
}

/// A source that notes, for each snapshot, how many rounds' feedback had been folded in when
/// it was pulled, and tells a listener about each pull.
struct FoldCounting {
    inner: Box<dyn source::SnapshotSource>,
    folds: u64,
    pulled_at: Arc<Mutex<HashMap<u64, u64>>>,
    pulled_tx: crossbeam_channel::Sender<()>,
}

impl source::SnapshotSource for FoldCounting {
    fn attrs(&self) -> engine::Attrs {
        self.inner.attrs()
    }
    fn targets(&self) -> Vec<TargetId> {
        self.inner.targets()
    }
    fn interval_us(&self) -> u64 {
        self.inner.interval_us()
    }
    fn pull(&mut self, now_us: u64, due: bool) -> Result<source::Pull, String> {
        let p = self.inner.pull(now_us, due)?;
        if let Some(s) = &p.snapshot {
            self.pulled_at.lock().unwrap().insert(s.now_us, self.folds);
            let _ = self.pulled_tx.send(());
        }
        Ok(p)
    }
    fn feedback(&mut self, fb: &actuate::Feedback) {
        self.inner.feedback(fb);
        self.folds += u64::from(fb.round);
    }
    fn add_target(&mut self, proc: engine::process::Process) -> Result<(), String> {
        self.inner.add_target(proc)
    }
    fn remove_target(&mut self, id: TargetId) {
        self.inner.remove_target(id)
    }
}

/// A planner that is slow on purpose: each round lasts until the monitor has pulled another
/// snapshot, and notes a snapshot pulled before the previous rounds were folded in.
struct SlowPlanner {
    rounds: u64,
    pulled_at: Arc<Mutex<HashMap<u64, u64>>>,
    pulled_rx: crossbeam_channel::Receiver<()>,
    stale: Arc<Mutex<Vec<String>>>,
}

impl actuate::Planner for SlowPlanner {
    fn plan(&mut self, snap: &engine::Snapshot, _now_us: u64) -> Vec<engine::AdviceRequest> {
        let folds = self.pulled_at.lock().unwrap()[&snap.now_us];
        if folds < self.rounds {
            self.stale.lock().unwrap().push(format!(
                "round {}: snapshot at {} us pulled after {folds} folds",
                self.rounds, snap.now_us
            ));
        }
        self.rounds += 1;
        while self.pulled_rx.try_recv().is_ok() {}
        let _ = self.pulled_rx.recv_timeout(Duration::from_secs(5));
        Vec::new()
    }
    fn account(&mut self, _report: &engine::ApplyReport, _now_us: u64) {}
    fn stats(&self) -> Vec<SchemeLine> {
        Vec::new()
    }
}

fn actuation(planner: impl actuate::Planner + 'static) -> actuate::Actuation {
    actuate::Actuation {
        planner: Box::new(planner),
        procs: Vec::new(),
        dry_run: true,
        config: engine::actuator::ActuatorConfig::default(),
    }
}

/// `kdamond_fn()` / `kdamond_apply_schemes()` (mm/damon/core.c, Linux 6.12.117) apply the
/// schemes and reset the advised regions' ages in one pass, so the next apply sees the
/// reset. Here actuation runs on its own thread: while a round is out, the monitor keeps
/// pulling, but the schemes must never get a snapshot pulled before the previous round's
/// feedback was folded in (it would advise the just-advised regions again and charge the
/// quota twice).
#[test]
fn kernel_rule_kdamond_apply_schemes() {
    let pulled_at = Arc::new(Mutex::new(HashMap::new()));
    let stale = Arc::new(Mutex::new(Vec::new()));
    let (pulled_tx, pulled_rx) = crossbeam_channel::unbounded();
    let src = FoldCounting {
        inner: sim_source("hotcold"),
        folds: 0,
        pulled_at: pulled_at.clone(),
        pulled_tx,
    };
    let planner = SlowPlanner {
        rounds: 0,
        pulled_at,
        pulled_rx,
        stale: stale.clone(),
    };
    let r = Stages::from_source(Box::new(src), SysRoot::host())
        .with_actuation(actuation(planner))
        .start()
        .unwrap();
    let mut rounds = 0;
    while rounds < 6 {
        if let Event::Applied(..) = recv(&r) {
            rounds += 1;
        }
    }
    r.stop_and_join();
    let stale = stale.lock().unwrap();
    assert!(stale.is_empty(), "{stale:#?}");
}

/// What [`PausingPlanner`] saw: the aggregation and time it paused at, its watermark checks
/// (time, and the check it had asked for), and when it resumed.
#[derive(Default)]
struct PauseLog {
    paused: Option<(u64, u64)>,
    checks: Vec<(u64, u64)>,
    resumed_at: Option<u64>,
}

/// A planner whose one scheme goes inactive by its watermarks at the first round and
/// stays so for `checks` watermark checks `interval_us` apart.
struct PausingPlanner {
    log: Arc<Mutex<PauseLog>>,
    until: Option<u64>,
    checks: usize,
    interval_us: u64,
}

impl actuate::Planner for PausingPlanner {
    fn plan(&mut self, snap: &engine::Snapshot, now_us: u64) -> Vec<engine::AdviceRequest> {
        let mut log = self.log.lock().unwrap();
        if log.paused.is_none() {
            log.paused = Some((snap.aggregation, now_us));
            self.until = Some(now_us + self.interval_us);
        }
        Vec::new()
    }
    fn account(&mut self, _report: &engine::ApplyReport, _now_us: u64) {}
    fn stats(&self) -> Vec<SchemeLine> {
        Vec::new()
    }
    fn paused_until_us(&self) -> Option<u64> {
        self.until
    }
    fn check_watermarks(&mut self, now_us: u64) {
        let mut log = self.log.lock().unwrap();
        log.checks.push((now_us, self.until.unwrap_or(0)));
        if log.checks.len() < self.checks {
            self.until = Some(now_us + self.interval_us);
        } else {
            self.until = None;
            log.resumed_at = Some(now_us);
        }
    }
}

/// `kdamond_wait_activation()` (mm/damon/core.c, Linux 6.12.117): while every scheme is
/// inactive by its watermarks, the kdamond does not sample or aggregate (regions do not
/// age); it sleeps until the next watermark check, checks, and resumes when a scheme is
/// active again. Here: 5 checks 30 ms apart, sampling every 1 ms and aggregating every
/// 5 ms, so some 30 aggregations would pass unpaused; at most 5 may (those pulled before
/// the pausing feedback was folded in: a few ms on a loaded machine), and monitoring goes on
/// after the resume.
#[test]
fn kernel_rule_kdamond_wait_activation() {
    let log = Arc::new(Mutex::new(PauseLog::default()));
    let planner = PausingPlanner {
        log: log.clone(),
        until: None,
        checks: 5,
        interval_us: 30_000,
    };
    let r = sim_stages("hotcold", 5)
        .with_actuation(actuation(planner))
        .start()
        .unwrap();
    let mut snaps: Vec<(u64, u64)> = Vec::new();
    let mut rounds_after = 0;
    while rounds_after < 2 {
        match recv(&r) {
            Event::Snapshot(s, _) => snaps.push((s.now_us, s.aggregation)),
            Event::Applied(..) if log.lock().unwrap().resumed_at.is_some() => rounds_after += 1,
            _ => {}
        }
    }
    r.stop_and_join();
    let log = log.lock().unwrap();
    let (aggr0, _) = log.paused.unwrap();
    let resumed = log.resumed_at.unwrap();
    assert_eq!(log.checks.len(), 5);
    for &(at, asked) in &log.checks {
        assert!(
            at >= asked,
            "checked at {at} us, before its time {asked} us"
        );
    }
    let before_resume = snaps
        .iter()
        .filter(|(t, _)| *t < resumed)
        .map(|(_, a)| *a)
        .max()
        .unwrap();
    assert!(
        before_resume <= aggr0 + 5,
        "aggregations went on while paused: {aggr0} at the pause, {before_resume} before the resume"
    );
    let last = snaps.last().unwrap().1;
    assert!(last > before_resume, "monitoring resumed: {last}");
}

/// While paused nothing pulls the source, so exited targets are looked for apart
/// (`SnapshotSource::reap`): a paused run whose targets all exit ends, as a paused kdamond
/// stops (`kdamond_need_stop()`, mm/damon/core.c 6.12.117). A live target is kept.
#[test]
fn a_paused_source_reaps_exited_targets() {
    let mut live = sim_source("hotcold");
    assert!(live.reap().is_empty());
    assert_eq!(live.targets(), vec![ops::SIM_TARGET]);
    let mut space = engine::ops::sim::SimSpace::scenario("hotcold", 64 << 20).unwrap();
    space.exit();
    let cfg = StageConfig::new(
        &SysRoot::host(),
        OpsKind::Sim,
        Watched::Sim(space),
        &AttrFlags::default(),
        None,
    );
    let mut src = build(cfg).unwrap().source;
    assert_eq!(src.reap(), vec![ops::SIM_TARGET]);
    assert!(src.targets().is_empty());
}
