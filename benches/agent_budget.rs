//! The agent's CPU budget under load (a bench binary, `harness = false`; not a CI test).
//!
//! Starts N workload children (`madvd workload`, run through symlinks named `wl-a` and `wl-b`
//! so two `Comm` groups select half each), then a release `madvd agent` with
//! `cpu_budget: "2%"`, the smaps access check and the `stat` policy, and watches it from
//! outside for the run: every 10 s, the agent's CPU time (`/proc/PID/stat` utime + stime, all
//! threads, 10 ms ticks) against the budget, its VmRSS, the targets its metrics count and
//! the sampling interval it runs at. At the end: whether every child was added exactly once
//! and none dropped (the agent's log and its counters), and VmHWM.
//!
//! Run (as root: the agent reads other processes' smaps):
//!   nice -n 10 cargo bench --bench agent_budget -- [TARGETS] [SECS]
//! Defaults: 200 targets, 120 s. `MADVD_BENCH_SPARSE=VMAS:GIB` gives the first child that
//! many extra untouched MAP_NORESERVE mappings (e.g. `100000:64`; needs
//! `sysctl vm.max_map_count` above VMAS). `MADVD_BENCH_SIZE_MIB` (default 16) is each
//! child's memory, first-touched; a tenth of it is hot, in its own mapping, read at 2000
//! pages/s.

use madvd_workload::{Client as Workload, Pattern, Sparse, WorkloadSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BUDGET: f64 = 0.02;
const WINDOW: Duration = Duration::from_secs(10);

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// utime + stime of `pid`, seconds (`engine::kernel::stat::proc_cpu_us`; 0 once gone).
fn cpu_s(pid: u32) -> f64 {
    engine::kernel::stat::proc_cpu_us(&engine::SysRoot::host(), pid).unwrap_or(0) as f64 / 1e6
}

/// A `/proc/PID/status` field in kB, as MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `GET /metrics` as `name{labels}` → value (0.0.4 text).
fn scrape(port: u16) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return out;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    for l in text.lines().filter(|l| l.starts_with("madvd_")) {
        if let Some((k, v)) = l.rsplit_once(' ') {
            if let Ok(v) = v.parse() {
                out.insert(k.to_string(), v);
            }
        }
    }
    out
}

fn metric(m: &BTreeMap<String, f64>, name: &str, group: Option<&str>) -> f64 {
    let key = match group {
        Some(g) => format!("{name}{{group=\"{g}\"}}"),
        None => name.to_string(),
    };
    m.get(&key).copied().unwrap_or(f64::NAN)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Agent {
    child: Child,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: the agent stops at a batch boundary.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn start_agent(dir: &Path, exe: &Path, port: u16, targets: usize) -> Agent {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/stat.ron");
    let cfg = dir.join("agent.ron");
    let max = targets.max(1);
    std::fs::write(
        &cfg,
        format!(
            r#"(
    targets: [
        (name: "a", select: Comm("wl-a"), policy: "{p}", ops: Named("smaps"), max_targets: {max}),
        (name: "b", select: Comm("wl-b"), policy: "{p}", ops: Named("smaps"), max_targets: {max}),
    ],
    rescan: "10 s",
    listen: "127.0.0.1:{port}",
    cpu_budget: "2%",
)"#,
            p = policy.display()
        ),
    )
    .expect("write the agent config");
    let log = dir.join("agent.log");
    let child = Command::new(exe)
        .args(["agent", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("agent log"))
        .spawn()
        .expect("start madvd agent");
    Agent { child, log }
}

/// pid → times it was added, and how many drops, from the agent's log.
fn added_and_dropped(log: &Path) -> (BTreeMap<u32, u32>, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut added = BTreeMap::new();
    let mut dropped = 0;
    for l in text.lines() {
        let Some(at) = l.find(": pid ") else { continue };
        let pid: Option<u32> = l[at + 6..]
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            if l.contains(") added (") {
                *added.entry(pid).or_insert(0) += 1;
            } else if l.contains(": dropped (") {
                dropped += 1;
            }
        }
    }
    (added, dropped)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|v| v.parse().ok()).unwrap_or(200);
    let secs: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(120);
    let size = env_str("MADVD_BENCH_SIZE_MIB")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(16)
        << 20;
    let sparse = env_str("MADVD_BENCH_SPARSE").map(|v| {
        let (vmas, gib) = v.split_once(':').expect("MADVD_BENCH_SPARSE=VMAS:GIB");
        Sparse {
            vmas: vmas.parse().expect("VMAS"),
            bytes: gib.parse::<u64>().expect("GIB") << 30,
        }
    });
    let exe = Path::new(env!("CARGO_BIN_EXE_madvd"));
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["wl-a", "wl-b"] {
        std::os::unix::fs::symlink(exe, dir.path().join(name)).expect("symlink");
    }
    println!(
        "agent budget bench: {n} targets of {} MiB ({}), {secs} s, cpu_budget 2%, smaps check, stat policy; load average {}",
        size >> 20,
        match sparse {
            Some(s) => format!(
                "the first with {} more GiB in {} untouched MAP_NORESERVE mappings",
                s.bytes >> 30,
                s.vmas
            ),
            None => "no sparse mappings".into(),
        },
        loadavg()
    );
    let t = Instant::now();
    let mut children: Vec<Workload> = Vec::with_capacity(n);
    let mut by_group: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for i in 0..n {
        let g = if i % 2 == 0 { "a" } else { "b" };
        let spec = WorkloadSpec {
            size,
            hot_fraction: 0.1,
            pattern: Pattern::HotCold,
            two_mappings: true,
            rate_limit: Some(2000),
            seed: i as u64 + 1,
            sparse: if i == 0 { sparse } else { None },
            ..WorkloadSpec::default()
        };
        let w = Workload::spawn(&dir.path().join(format!("wl-{g}")), &spec)
            .unwrap_or_else(|e| panic!("child {i}: {e}"));
        by_group.entry(g).or_default().insert(w.pid());
        children.push(w);
    }
    println!("{n} children ready in {:.1} s", t.elapsed().as_secs_f64());
    let port = free_port();
    let agent = start_agent(dir.path(), exe, port, n);
    let pid = agent.child.id();
    let t0 = Instant::now();
    let mut last_cpu = cpu_s(pid);
    let mut rows = Vec::new();
    println!();
    println!("| window | agent CPU s | share of one CPU | × budget | RSS MiB | targets a+b | sampling a / b | scale | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut k = 1;
    while t0.elapsed() < Duration::from_secs(secs) {
        let next = t0 + WINDOW * k;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let cpu = cpu_s(pid);
        let used = cpu - last_cpu;
        last_cpu = cpu;
        let share = used / WINDOW.as_secs_f64();
        let rss = status_mib(pid, "VmRSS:");
        let m = scrape(port);
        let targets = |g| metric(&m, "madvd_group_targets", Some(g));
        let sample = |g| metric(&m, "madvd_group_sample_interval_seconds", Some(g));
        println!(
            "| {:>3}–{:<3} s | {used:.2} | {:.2}% | {:.2} | {rss:.1} | {}+{} | {:.2} / {:.2} s | {:.1} | {} |",
            (k - 1) * 10,
            k * 10,
            share * 100.0,
            share / BUDGET,
            targets("a"),
            targets("b"),
            sample("a"),
            sample("b"),
            metric(&m, "madvd_agent_cpu_budget_scale", None),
            loadavg()
        );
        rows.push((share / BUDGET, rss, targets("a") + targets("b")));
        k += 1;
    }
    let m = scrape(port);
    let hwm = status_mib(pid, "VmHWM:");
    let total_cpu = cpu_s(pid);
    let wall = t0.elapsed().as_secs_f64();
    let log = agent.log.clone();
    drop(agent);
    let (added, dropped_lines) = added_and_dropped(&log);
    let all: BTreeSet<u32> = by_group.values().flatten().copied().collect();
    let missing: Vec<u32> = all
        .iter()
        .filter(|p| !added.contains_key(p))
        .copied()
        .collect();
    let twice: Vec<u32> = added
        .iter()
        .filter(|(_, &c)| c > 1)
        .map(|(&p, _)| p)
        .collect();
    let strangers: Vec<u32> = added.keys().filter(|p| !all.contains(p)).copied().collect();
    let counter =
        |name: &str| -> f64 { ["a", "b"].iter().map(|g| metric(&m, name, Some(g))).sum() };
    let mut ratios: Vec<f64> = rows.iter().map(|r| r.0).collect();
    ratios.sort_by(f64::total_cmp);
    let steady: Vec<f64> = rows.iter().skip(1).map(|r| r.0).collect();
    println!();
    println!(
        "whole run: {:.2} CPU s in {wall:.0} s = {:.2}% of one CPU ({:.2}× the budget)",
        total_cpu,
        total_cpu / wall * 100.0,
        total_cpu / wall / BUDGET
    );
    println!(
        "windows: × budget median {:.2}, max {:.2} (max after the first window {:.2}); RSS max {:.1} MiB, VmHWM {hwm:.1} MiB",
        ratios[ratios.len() / 2],
        ratios.last().copied().unwrap_or(f64::NAN),
        steady.iter().copied().fold(0.0, f64::max),
        rows.iter().map(|r| r.1).fold(0.0, f64::max),
    );
    println!(
        "targets: {} children, {} added by the log ({} missing, {} added twice, {} not ours), {} dropped; metrics: targets {} (min over windows {}), added_total {}, dropped_total {}",
        all.len(),
        added.len(),
        missing.len(),
        twice.len(),
        strangers.len(),
        dropped_lines,
        counter("madvd_group_targets"),
        rows.iter().map(|r| r.2).fold(f64::INFINITY, f64::min),
        counter("madvd_group_targets_added_total"),
        counter("madvd_group_targets_dropped_total"),
    );
    drop(children);
}
