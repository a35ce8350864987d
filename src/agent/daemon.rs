//! The agent loop: the groups of the config in force, rescans, reloads (every new group's
//! stages built before anything running is stopped), metrics published to the server, and
//! the final counters at the end.

use super::budget::{self, GroupLoad, Window};
use super::discover::Scan;
use super::group::{build, start, Group};
use super::metrics::{self, AgentMetrics, Counters, CpuMetrics, GroupMetrics, Server};
use super::reload::{self, ConfigState, Prepared, Watch};
use crate::exit;
use crate::signals;
use anyhow::{Context, Result};
use engine::SysRoot;
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
/// How often groups with `children: true` walk their process trees between rescans.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// How often the shared metrics are refreshed from the groups.
const METRICS_EVERY: Duration = Duration::from_millis(250);

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
    gov: Governor,
}

/// The CPU budget's window in progress and the controller's state.
struct Governor {
    state: budget::State,
    started: Instant,
    cpu_at_start: f64,
    /// Targets of each group at the window's start.
    targets_at_start: BTreeMap<String, usize>,
    /// When the window in progress starts to count (after a level change has settled).
    opens: Instant,
    ends: Instant,
    cpu: CpuMetrics,
    /// A group's one burst is over the budget of a whole window (warned once, when it
    /// becomes so).
    beyond_reach: bool,
}

impl Governor {
    fn new() -> Self {
        let now = Instant::now();
        Governor {
            state: budget::State::default(),
            started: now,
            cpu_at_start: budget::process_cpu_s(),
            targets_at_start: BTreeMap::new(),
            opens: now,
            ends: now + budget::MIN_WINDOW,
            cpu: CpuMetrics {
                scale: 1.0,
                ..CpuMetrics::default()
            },
            beyond_reach: false,
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn prepare(root: &SysRoot, o: &Options) -> Result<Prepared> {
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
        let root = self.root.clone();
        let mut scan = Scan::new(&root);
        self.each_group(|g, taken| g.rescan(&root, &mut scan, taken));
    }

    /// Groups with `children: true` walk their process trees (between rescans).
    fn follow(&mut self) {
        let root = self.root.clone();
        self.each_group(|g, taken| g.follow(&root, taken));
    }

    /// `f` on each group, with the processes the other groups hold.
    fn each_group(&mut self, mut f: impl FnMut(&mut Group, &BTreeSet<u32>)) {
        for i in 0..self.groups.len() {
            // A process belongs to one group: the first that took it.
            let taken: BTreeSet<u32> = self
                .groups
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .flat_map(|(_, g)| g.members.keys().copied())
                .collect();
            f(&mut self.groups[i], &taken);
        }
    }

    /// Close the CPU-budget window: measure, run the controller, scale every group (at a
    /// new level, one after the other), open the next window.
    fn govern(&mut self) {
        let now = Instant::now();
        let cpu = budget::process_cpu_s();
        let gov = &mut self.gov;
        let w = Window {
            cpu_s: cpu - gov.cpu_at_start,
            wall_s: now.duration_since(gov.started).as_secs_f64(),
        };
        let loads: Vec<GroupLoad> = self
            .groups
            .iter()
            .map(|g| GroupLoad {
                base: g.plan.attrs,
                targets: g.members.len(),
                window_targets: gov
                    .targets_at_start
                    .get(g.name())
                    .map_or(0, |&n| n.min(g.members.len())),
            })
            .collect();
        let b = self.state.active.config.cpu_budget();
        gov.state = match b {
            Some(b) => budget::next(b, gov.state, w, &loads),
            None => budget::State::default(),
        };
        let out = b.and_then(|b| budget::beyond_reach(&loads, gov.state.unit_cost_s, b));
        if let (Some(i), false, Some(b)) = (out, gov.beyond_reach, b) {
            let g = &self.groups[i];
            tracing::warn!(
                group = g.name(),
                targets = g.members.len(),
                budget = b,
                window_s = budget::PEAK_WINDOW.as_secs(),
                "cpu_budget beyond reach: one sample of this group's targets costs more than \
                 the budget allows a whole window, even at the coarsest level; the average is \
                 held, each window holding a sample is over"
            );
        }
        gov.beyond_reach = out.is_some();
        if w.wall_s > 0.0 {
            gov.cpu.share = w.cpu_s / w.wall_s;
        }
        gov.cpu.seconds = cpu;
        gov.cpu.budget = b;
        let k = budget::scale_of(gov.state.level);
        let coarsest = self
            .groups
            .iter()
            .map(|g| budget::scaled(&g.plan.attrs, k).sample_us)
            .max()
            .unwrap_or(0);
        let mut settle = Duration::ZERO;
        if k != gov.cpu.scale {
            // A new level, to every group at once (coarser must not wait), their next samples
            // spread over one interval (their bursts apart); the next window opens once each
            // has sampled at it, so it measures the new level.
            let interval = Duration::from_micros(coarsest);
            let at = budget::stagger(self.groups.len(), coarsest);
            settle = interval + at.last().copied().unwrap_or_default();
            for (g, d) in self.groups.iter_mut().zip(at) {
                g.set_scale(k, interval + d);
            }
        }
        gov.cpu.scale = k;
        gov.opens = now + settle;
        gov.ends = gov.opens + budget::window_len([coarsest]);
        // Groups started by a reload since: the scale in force at once.
        for g in &mut self.groups {
            g.set_scale(k, Duration::ZERO);
        }
        self.open_window(now);
    }

    /// Start measuring (again) from now.
    fn open_window(&mut self, now: Instant) {
        let gov = &mut self.gov;
        gov.started = now;
        gov.cpu_at_start = budget::process_cpu_s();
        gov.targets_at_start = self
            .groups
            .iter()
            .map(|g| (g.name().to_string(), g.members.len()))
            .collect();
    }

    /// The budget's timers: the window opening after a level change, the window's end.
    fn budget_tick(&mut self, now: Instant) {
        if now >= self.gov.ends {
            self.govern();
        } else if self.gov.opens > self.gov.started && now >= self.gov.opens {
            self.open_window(now);
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
            cpu: CpuMetrics {
                seconds: budget::process_cpu_s(),
                ..self.gov.cpu.clone()
            },
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
        // Started groups run at the budget's scale in force from the start.
        for g in &mut self.groups {
            g.set_scale(self.gov.cpu.scale, Duration::ZERO);
        }
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

/// Serve until SIGINT/SIGTERM, `--for`, or (with `--once`) one round.
pub(super) fn serve(root: &SysRoot, opts: Options, prepared: Prepared) -> Result<()> {
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
        gov: Governor::new(),
    };
    if let Some(n) = crate::sysinfo::coexistence_note(root) {
        tracing::warn!("{n}");
    }
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
    // The targets just found are predicted before they are measured (`budget::next`).
    agent.govern();
    agent.publish();
    let t0 = Instant::now();
    let mut next_rescan = t0 + rescan_every;
    let mut next_watch = t0 + WATCH_EVERY;
    let mut next_follow = t0 + FOLLOW_EVERY;
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
        if !opts.once && now >= next_follow {
            next_follow = now + FOLLOW_EVERY;
            agent.follow();
        }
        agent.budget_tick(now);
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
