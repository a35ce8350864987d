//! `madvd agent`: madvd as a node daemon. A config file names target groups (a selector — a
//! cgroup, a command name, an executable, a pid — and the policy its processes get); the
//! agent runs one stage pipeline (`pipeline.rs`: monitor → schemes → actuator) per group,
//! adds processes as they appear and drops them when they exit (rescanning every
//! `rescan`), reloads its config on SIGHUP or when a config or policy file changes (all or
//! nothing), and serves Prometheus metrics. See docs/agent.md.
//!
//! - [`config`]: the config file (pure parser, `path:line:column` errors);
//! - [`reload`]: checking a whole config before use, the reload state machine, SIGHUP,
//!   file watching;
//! - [`discover`]: which processes a selector matches (rooted at a `SysRoot`);
//! - [`live`]: the access check whose targets change while it runs;
//! - [`metrics`]: metric structs, the exposition text, the HTTP server.

pub mod config;
pub mod discover;
#[cfg(test)]
mod expo;
pub mod live;
pub mod metrics;
pub mod reload;

use crate::exit;
use crate::pipeline::{self, Actuation, Clock, Control, Event, Hooks, Running, SchemeLine, Stages};
use crate::signals::{self, Stop};
use anyhow::{Context, Result};
use crossbeam_channel::{unbounded, Sender};
use discover::{Miss, Scan};
use engine::actuator::ActuatorConfig;
use engine::monitor::Monitor;
use engine::process::{Process, ProcessError};
use engine::{ApplyErrorKind, ApplyReport, SysRoot, TargetId};
use live::{Change, Inbox, LiveOps};
use metrics::{AgentMetrics, Counters, GroupMetrics, SchemeMetrics, Server};
use reload::{ConfigState, GroupPlan, Prepared, Watch};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How the agent runs (from the command line).
#[derive(Clone, Debug)]
pub struct Options {
    pub config: PathBuf,
    /// One rescan, one actuation round per group with targets, print the metrics, exit.
    pub once: bool,
    pub for_: Option<Duration>,
    /// Overrides the config's `listen`.
    pub listen: Option<SocketAddr>,
    /// Forces every group to dry run.
    pub dry_run: bool,
    /// Check the config and its policies, print what would run, exit.
    pub check: bool,
}

/// How often the config and policy files are checked for changes.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// How often the shared metrics are refreshed from the groups.
const METRICS_EVERY: Duration = Duration::from_millis(250);

/// The label of an apply error kind (`madvd_group_apply_errors_bytes_total{kind}`).
pub fn kind_label(k: &ApplyErrorKind) -> String {
    match k {
        ApplyErrorKind::Unmapped => "unmapped".into(),
        ApplyErrorKind::Invalid => "invalid".into(),
        ApplyErrorKind::Again => "again".into(),
        ApplyErrorKind::NoMemory => "no_memory".into(),
        ApplyErrorKind::TargetGone => "target_gone".into(),
        ApplyErrorKind::Permission => "permission".into(),
        ApplyErrorKind::SwapHeadroom => "swap_headroom".into(),
        ApplyErrorKind::Refused => "refused".into(),
        ApplyErrorKind::DryRun => "dry_run".into(),
        ApplyErrorKind::Cancelled => "cancelled".into(),
        ApplyErrorKind::Unaligned => "unaligned".into(),
        ApplyErrorKind::Other(e) => format!("errno_{e}"),
    }
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
        .map(|s| {
            (
                (s.name.clone(), s.action.clone()),
                SchemeMetrics {
                    nr_tried: s.nr_tried,
                    sz_tried: s.sz_tried,
                    nr_applied: s.nr_applied,
                    sz_applied: s.sz_applied,
                    qt_exceeds: s.qt_exceeds,
                    active: s.active,
                },
            )
        })
        .collect();
}

/// One running target group.
struct Group {
    plan: GroupPlan,
    running: Running,
    control: Sender<Control>,
    inbox: Inbox,
    /// pid → comm of the processes watched.
    members: BTreeMap<u32, String>,
    /// Matching pids that cannot be targets (counted and logged once each).
    refused: BTreeSet<u32>,
    /// Matching pids left out by `max_targets` (counted once each).
    over_limit: BTreeSet<u32>,
    miss: Option<Miss>,
    last_failure: Option<String>,
    m: GroupMetrics,
}

/// A group's pipeline, built but not started (building can fail; starting only spawns).
struct Built {
    plan: GroupPlan,
    stages: Stages,
    control: Sender<Control>,
    rx: crossbeam_channel::Receiver<Control>,
    inbox: Inbox,
}

fn build(root: &SysRoot, plan: &GroupPlan) -> Result<Built> {
    let inbox = Inbox::default();
    let ops = LiveOps::new(plan.ops, root, inbox.clone())?;
    let seed = std::process::id() as u64 ^ plan.spec.name.len() as u64;
    let monitor = Monitor::new(plan.attrs, seed)
        .map_err(|e| anyhow::anyhow!("group `{}`: {e}", plan.spec.name))?;
    let planner = crate::policy::planner(&plan.policy, root)?;
    let (control, rx) = unbounded();
    Ok(Built {
        plan: plan.clone(),
        stages: Stages {
            root: root.clone(),
            monitor,
            ops: Box::new(ops),
            act: Some(Actuation {
                planner,
                procs: Vec::new(),
                dry_run: plan.dry_run,
                config: ActuatorConfig::default(),
            }),
            stop: Stop::new(),
            clock: Clock::start(),
        },
        control,
        rx,
        inbox,
    })
}

fn start(b: Built, carried: Counters) -> Result<Group> {
    let running = pipeline::start_with(
        b.stages,
        Hooks {
            control: Some(b.rx),
            keep_when_empty: true,
        },
    )
    .with_context(|| format!("group `{}`: cannot start its threads", b.plan.spec.name))?;
    // Every scheme has its series from the start (zeros until the first round).
    let mut current = Counters::default();
    for s in &b.plan.policy.schemes {
        current.schemes.insert(
            (s.name.clone(), s.action.name().to_string()),
            SchemeMetrics {
                active: s.watermarks.is_none(),
                ..Default::default()
            },
        );
    }
    let m = GroupMetrics {
        current,
        name: b.plan.spec.name.clone(),
        policy: b.plan.spec.policy.display().to_string(),
        ops: b.plan.ops.to_string(),
        dry_run: b.plan.dry_run,
        carried,
        ..Default::default()
    };
    Ok(Group {
        plan: b.plan,
        running,
        control: b.control,
        inbox: b.inbox,
        members: BTreeMap::new(),
        refused: BTreeSet::new(),
        over_limit: BTreeSet::new(),
        miss: None,
        last_failure: None,
        m,
    })
}

impl Group {
    fn name(&self) -> &str {
        &self.plan.spec.name
    }

    /// Forget a member (one log line).
    fn drop_member(&mut self, pid: u32, why: &str) {
        if let Some(comm) = self.members.remove(&pid) {
            self.m.current.targets_dropped += 1;
            tracing::info!(
                "group {}: pid {pid} ({comm}) {why}: dropped ({} target(s))",
                self.name(),
                self.members.len()
            );
        }
    }

    /// Add `pid`: two handles (the check's and the actuator's, each with its pidfd),
    /// the check's through the inbox before the monitor hears of it.
    fn add(&mut self, root: &SysRoot, pid: u32) {
        let opened = Process::open(root, pid, false).and_then(|a| {
            let b = Process::open(root, pid, false)?;
            // `a`'s pidfd was held across the second open: if its process is still alive,
            // both name the same process (no pid reuse in between).
            if a.is_alive() {
                Ok((a, b))
            } else {
                Err(ProcessError::Gone { pid })
            }
        });
        match opened {
            Ok((a, b)) => {
                let comm = a.comm().to_string();
                self.inbox.push(Change::Add(a));
                if self
                    .control
                    .send(Control::Add {
                        id: TargetId(pid),
                        act: b,
                    })
                    .is_err()
                {
                    self.inbox.push(Change::Remove(TargetId(pid)));
                    return;
                }
                self.members.insert(pid, comm.clone());
                self.m.current.targets_added += 1;
                tracing::info!(
                    "group {}: pid {pid} ({comm}) added ({} target(s))",
                    self.name(),
                    self.members.len()
                );
            }
            Err(e) if e.is_gone() => {}
            Err(e) => {
                let why = refusal_label(&e);
                self.refused.insert(pid);
                *self.m.current.refusals.entry(why.to_string()).or_default() += 1;
                if e.is_permission() {
                    tracing::warn!("group {}: {e}", self.name());
                } else {
                    tracing::info!("group {}: not a target: {e}", self.name());
                }
            }
        }
    }

    fn remove(&mut self, pid: u32, why: &str) {
        self.inbox.push(Change::Remove(TargetId(pid)));
        let _ = self.control.send(Control::Remove(TargetId(pid)));
        self.drop_member(pid, why);
    }

    /// Match the selector again: add new processes, drop those no longer selected.
    fn rescan(&mut self, root: &SysRoot, scan: &mut Scan<'_>, taken: &BTreeSet<u32>) {
        let found = scan.find(&self.plan.spec.select);
        if found.miss != self.miss {
            if let Some(m) = &found.miss {
                tracing::warn!("group {}: {m}", self.name());
            } else if let Some(m) = &self.miss {
                tracing::info!("group {}: resolved: {m}", self.name());
            }
            self.miss = found.miss.clone();
        }
        let now: BTreeSet<u32> = found.pids.iter().copied().collect();
        let stale: Vec<u32> = self
            .members
            .keys()
            .filter(|p| !now.contains(p))
            .copied()
            .collect();
        for pid in stale {
            self.remove(pid, "no longer selected");
        }
        self.refused.retain(|p| now.contains(p));
        self.over_limit.retain(|p| now.contains(p));
        for &pid in &found.pids {
            if self.members.contains_key(&pid)
                || self.refused.contains(&pid)
                || taken.contains(&pid)
            {
                continue;
            }
            if self.members.len() >= self.plan.spec.max_targets {
                if self.over_limit.is_empty() {
                    tracing::warn!(
                        "group {}: {} processes match but max_targets is {}: the rest are not watched",
                        self.name(),
                        found.pids.len(),
                        self.plan.spec.max_targets
                    );
                }
                if self.over_limit.insert(pid) {
                    self.m.current.over_limit += 1;
                }
                continue;
            }
            self.add(root, pid);
        }
        let (mut rss, mut swap) = (0, 0);
        for &pid in self.members.keys() {
            if let Some(m) = crate::sysinfo::proc_mem(root, pid) {
                rss += m.rss;
                swap += m.swap;
            }
        }
        self.m.rss_bytes = rss;
        self.m.swap_bytes = swap;
    }

    /// Take what the stages reported.
    fn drain(&mut self) {
        while let Ok(ev) = self.running.events.try_recv() {
            match ev {
                Event::Snapshot(s, cost) => {
                    self.m.current.cost = cost;
                    if s.aggregated {
                        self.m.current.snapshots += 1;
                        self.m.regions = s.nr_regions() as u64;
                    }
                }
                Event::Applied(r, stats) => account(&mut self.m.current, &r, &stats),
                Event::Gone(t) => {
                    // Also tell the stages: the monitor and the actuator may each report
                    // the same exit; all three sides stay consistent either way.
                    if self.members.contains_key(&t.0) {
                        self.remove(t.0, "exited");
                    }
                }
                Event::AllGone => {}
                Event::Failed(msg) => {
                    self.m.current.failures += 1;
                    if self.last_failure.as_deref() != Some(msg.as_str()) {
                        tracing::warn!("group {}: {msg}", self.name());
                        self.last_failure = Some(msg);
                    }
                }
            }
        }
        self.m.targets = self.members.len() as u64;
        if self.members.is_empty() {
            self.m.regions = 0;
        }
    }

    /// Stop the stages; the counters so far, for the next pipeline of this group.
    fn stop(mut self) -> GroupMetrics {
        let events = self.running.events.clone();
        self.running.stop_and_join();
        while let Ok(ev) = events.try_recv() {
            match ev {
                Event::Applied(r, stats) => account(&mut self.m.current, &r, &stats),
                Event::Snapshot(_, cost) => self.m.current.cost = cost,
                _ => {}
            }
        }
        self.m
    }
}

/// The agent.
struct Agent {
    root: SysRoot,
    opts: Options,
    state: ConfigState,
    groups: Vec<Group>,
    retired: BTreeMap<String, GroupMetrics>,
    metrics: Arc<Mutex<AgentMetrics>>,
    started: Instant,
    last_reload_unix_s: f64,
    watch: Watch,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn prepare(root: &SysRoot, o: &Options) -> Result<Prepared> {
    let mut p = reload::prepare(root, &o.config)?;
    if o.dry_run {
        p.config.dry_run = true;
        for g in &mut p.groups {
            g.dry_run = true;
        }
    }
    Ok(p)
}

impl Agent {
    fn rescan(&mut self) {
        let mut scan = Scan::new(&self.root);
        for i in 0..self.groups.len() {
            // A process belongs to one group: the first that took it.
            let taken: BTreeSet<u32> = self
                .groups
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, g)| g.members.keys().copied())
                .collect();
            self.groups[i].rescan(&self.root, &mut scan, &taken);
        }
    }

    fn publish(&mut self) {
        for g in &mut self.groups {
            g.drain();
        }
        let m = AgentMetrics {
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            reloads: self.state.reloads,
            reload_errors: self.state.errors,
            last_reload_success: self.state.last_ok,
            last_reload_unix_s: self.last_reload_unix_s,
            groups: self
                .groups
                .iter()
                .map(|g| (g.name().to_string(), g.m.clone()))
                .collect(),
            retired: self.retired.clone(),
        };
        if let Ok(mut s) = self.metrics.lock() {
            *s = m;
        }
    }

    fn reload(&mut self, why: &str) {
        let cand = prepare(&self.root, &self.opts);
        let p = match cand {
            Ok(p) => p,
            Err(e) => {
                let msg = exit::one_line(&e);
                tracing::error!("config reload ({why}) refused, keeping the running config: {msg}");
                self.state.offer(Err(msg));
                return;
            }
        };
        let d = reload::diff(&self.state.active, &p);
        // Build every new pipeline before stopping anything.
        let mut built = Vec::new();
        for name in &d.start {
            let plan = p
                .groups
                .iter()
                .find(|g| &g.spec.name == name)
                .expect("in diff");
            match build(&self.root, plan) {
                Ok(b) => built.push(b),
                Err(e) => {
                    let msg = format!("group `{name}`: {}", exit::one_line(&e));
                    tracing::error!(
                        "config reload ({why}) refused, keeping the running config: {msg}"
                    );
                    self.state.offer(Err(msg));
                    return;
                }
            }
        }
        if self.opts.listen.is_none() && p.config.listen != self.state.active.config.listen {
            tracing::warn!(
                "config reload: `listen` changed; the metrics address changes at the next restart"
            );
        }
        self.watch = Watch::new(p.files());
        let order: Vec<String> = p.groups.iter().map(|g| g.spec.name.clone()).collect();
        let new_plans = p.groups.clone();
        self.state.offer(Ok(p));
        self.last_reload_unix_s = unix_now();
        let mut carried: BTreeMap<String, Counters> = BTreeMap::new();
        let mut kept = Vec::new();
        for g in std::mem::take(&mut self.groups) {
            if d.stop.iter().any(|n| n == g.name()) {
                let name = g.name().to_string();
                let m = g.stop();
                let total = m.carried.plus(&m.current);
                if d.start.contains(&name) {
                    carried.insert(name, total);
                } else {
                    let mut r = m;
                    r.carried = total;
                    r.current = Counters::default();
                    self.retired.insert(name, r);
                }
            } else {
                kept.push(g);
            }
        }
        for b in built {
            let name = b.plan.spec.name.clone();
            let c = carried
                .remove(&name)
                .or_else(|| self.retired.remove(&name).map(|r| r.carried))
                .unwrap_or_default();
            match start(b, c) {
                Ok(g) => kept.push(g),
                Err(e) => tracing::error!("{}", exit::one_line(&e)),
            }
        }
        // Config order (it decides which group takes a process two selectors match).
        for g in &mut kept {
            if let Some(pl) = new_plans.iter().find(|pl| pl.spec.name == g.name()) {
                g.plan = pl.clone();
            }
        }
        kept.sort_by_key(|g| order.iter().position(|n| n == g.name()));
        self.groups = kept;
        tracing::info!(
            "config reloaded ({why}): started [{}], stopped [{}], unchanged [{}]",
            d.start.join(" "),
            d.stop
                .iter()
                .filter(|n| !d.start.contains(n))
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            d.keep.join(" ")
        );
        self.rescan();
    }
}

/// Print what `--check` found (and which selected cgroups do not exist on this host yet).
fn print_check(root: &SysRoot, p: &Prepared) {
    println!(
        "{}: ok: {} group(s), rescan every {}, metrics on {}{}",
        p.config.origin.display(),
        p.groups.len(),
        crate::units::fmt_duration_us(p.config.rescan_us),
        p.config
            .listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "(off)".into()),
        if p.config.dry_run { ", dry run" } else { "" }
    );
    for g in &p.groups {
        println!(
            "  {}: {} -> {} ({} scheme(s)) with {}, {} sampling, {} aggregation, at most {} processes{}",
            g.spec.name,
            g.spec.select,
            g.spec.policy.display(),
            g.policy.schemes.len(),
            g.ops,
            crate::units::fmt_duration_us(g.attrs.sample_us),
            crate::units::fmt_duration_us(g.attrs.aggr_us),
            g.spec.max_targets,
            if g.dry_run { ", dry run" } else { "" }
        );
        if let config::Selector::Cgroup(c) = &g.spec.select {
            if !discover::reroot_cgroup(root, c).is_dir() {
                println!(
                    "    note: {} does not exist here (yet): the group waits for it",
                    c.display()
                );
            }
        }
    }
}

/// Run the agent until SIGINT/SIGTERM, `--for`, or (with `--once`) one round.
pub fn run(root: &SysRoot, opts: Options) -> Result<()> {
    reload::install_sighup()?;
    let prepared = prepare(root, &opts)?;
    if opts.check {
        print_check(root, &prepared);
        return Ok(());
    }
    // `--once` is a one-shot (often next to a running agent on the same port): it serves
    // metrics only when `--listen` asks for it.
    let listen = if opts.once {
        opts.listen
    } else {
        opts.listen.or(prepared.config.listen)
    };
    let metrics = Arc::new(Mutex::new(AgentMetrics::default()));
    let server = match listen {
        Some(a) => Some(
            Server::start(a, metrics.clone())
                .with_context(|| format!("metrics: cannot listen on {a}"))?,
        ),
        None => None,
    };
    let mut groups = Vec::with_capacity(prepared.groups.len());
    for plan in &prepared.groups {
        groups.push(start(build(root, plan)?, Counters::default())?);
    }
    let rescan_every = Duration::from_micros(prepared.config.rescan_us);
    let watch = Watch::new(prepared.files());
    let n = prepared.groups.len();
    let mut agent = Agent {
        root: root.clone(),
        opts: opts.clone(),
        state: ConfigState::new(prepared),
        groups,
        retired: BTreeMap::new(),
        metrics,
        started: Instant::now(),
        last_reload_unix_s: unix_now(),
        watch,
    };
    tracing::info!(
        "madvd agent: {} group(s) from {}; rescan every {:?}; metrics {}{}",
        n,
        opts.config.display(),
        rescan_every,
        server
            .as_ref()
            .map(|s| format!("on http://{}/metrics", s.addr()))
            .unwrap_or_else(|| "off".into()),
        if agent.state.active.config.dry_run {
            "; dry run"
        } else {
            ""
        }
    );
    agent.rescan();
    agent.publish();
    let t0 = Instant::now();
    let mut next_rescan = t0 + rescan_every;
    let mut next_watch = t0 + WATCH_EVERY;
    let mut next_publish = t0;
    // --once: until each group with targets has had one actuation round (bounded).
    let once_deadline = t0
        + agent
            .groups
            .iter()
            .map(|g| Duration::from_micros(g.plan.attrs.aggr_us * 3))
            .max()
            .unwrap_or_default()
        + Duration::from_secs(5);
    let reason = loop {
        if signals::stop_requested() {
            break signals::signal_name().unwrap_or("signal");
        }
        if opts.for_.is_some_and(|d| t0.elapsed() >= d) {
            break "duration";
        }
        let now = Instant::now();
        if opts.once {
            agent.publish();
            let done = agent
                .groups
                .iter()
                .all(|g| g.members.is_empty() || g.m.current.rounds > 0);
            if done {
                break "once";
            }
            if now >= once_deadline {
                tracing::warn!("--once: not every group completed a round in time");
                break "once";
            }
        }
        if reload::take_sighup() {
            agent.reload("SIGHUP");
            agent.watch.changed();
        } else if now >= next_watch {
            next_watch = now + WATCH_EVERY;
            if agent.watch.changed() {
                agent.reload("file changed");
            }
        }
        if !opts.once && now >= next_rescan {
            next_rescan = now + Duration::from_micros(agent.state.active.config.rescan_us);
            agent.rescan();
        }
        if now >= next_publish {
            next_publish = now + METRICS_EVERY;
            agent.publish();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Stop every group at a batch boundary, then publish the final counters.
    let mut finals = Vec::new();
    for g in std::mem::take(&mut agent.groups) {
        finals.push(g.stop());
    }
    let total: u64 = finals
        .iter()
        .map(|m| m.carried.plus(&m.current).bytes_advised)
        .sum();
    let mut m = agent.metrics.lock().map(|m| m.clone()).unwrap_or_default();
    for f in finals {
        m.groups.insert(f.name.clone(), f);
    }
    m.uptime_s = agent.started.elapsed().as_secs_f64();
    drop(server);
    if opts.once {
        print!("{}", metrics::render(&m));
    }
    tracing::info!(
        "madvd agent: stopped ({reason}) after {:.1}s; {} advised in total",
        t0.elapsed().as_secs_f64(),
        crate::units::fmt_bytes(total)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::{AddrRange, Advice, RangeOutcome};

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
            elapsed_ns: 1000,
            errors,
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
