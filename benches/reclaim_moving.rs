//! Reclaim on moving and alternating hot sets (issue 14, must-show 2 and 3): `madvd run`
//! with `policies/reclaim.ron` (its refault guard on), the same policy with the guard's
//! budget at 100% (guard off), and nothing (the workload alone), interleaved, on a workload
//! child whose hot set moves by its own size every `hot_s` seconds.
//!
//! Per run: slowdown (mean ops/s against the adjacent run of the child alone, and per
//! CPU-second of the child), the scheme's own refaulted / paged-out bytes (its refault
//! ledger: pages it moved from memory to swap, and those the child brought back; the probe's
//! sample page-outs are not in it), machine-wide pswpin / pswpout (the probe's samples
//! included), the lowest net saving of a 10-s slice (the child's VmSwap minus zram's
//! memory, slice means), and the time-averaged saving (VmSwap) against the time-averaged
//! bytes idle for at least twice the policy's minimum age (the oracle, from the hot slot
//! the child reports each second).
//!
//! Run (root; makes a zram swap through the test fixture, holding the machine-wide swap
//! lock):
//!   nice -n 10 cargo bench --bench reclaim_moving
//! Environment: MADVD_BENCH_RUNS (interleaved repetitions, default 5), MADVD_BENCH_ONLY
//! (one workload by name), MADVD_BENCH_CYCLES (cycles of the moving sets, default 3).

use engine::kernel::status::read_status;
use engine::testkit::swap;
use engine::SysRoot;
use madvd_workload::{Client, Pattern, WorkloadSpec};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
/// policies/reclaim.ron's minimum age, s.
const MIN_AGE_S: f64 = 6.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Workload {
    name: &'static str,
    slots: u64,
    slot: u64,
    hot_s: u64,
    /// Run length, s (None: `cycles` cycles).
    secs: Option<u64>,
    with_noguard: bool,
}

impl Workload {
    fn secs(&self, cycles: u64) -> u64 {
        self.secs.unwrap_or(self.slots * self.hot_s * cycles)
    }
    fn spec(&self) -> WorkloadSpec {
        WorkloadSpec {
            size: self.slots * self.slot,
            hot_fraction: 1.0 / self.slots as f64,
            pattern: Pattern::Moving {
                period_ms: self.hot_s * 1000,
            },
            ..WorkloadSpec::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Off,
    Guard,
    NoGuard,
}

#[derive(Default, Debug, Clone)]
struct RunResult {
    ops_per_s: f64,
    ops_per_cpu_s: f64,
    paged_out: u64,
    refaulted: u64,
    pswpin: u64,
    pswpout: u64,
    min_net_slice: i64,
    avg_saved: f64,
    avg_idle2: f64,
    advised: u64,
}

fn vmstat(field: &str) -> u64 {
    std::fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == field).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
}

fn zram_used() -> u64 {
    let mut sum = 0;
    if let Ok(d) = std::fs::read_dir("/sys/block") {
        for e in d.flatten() {
            if !e.file_name().to_string_lossy().starts_with("zram") {
                continue;
            }
            if let Ok(s) = std::fs::read_to_string(e.path().join("mm_stat")) {
                sum += s
                    .split_whitespace()
                    .nth(2)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    sum
}

fn proc_cpu(pid: u32) -> f64 {
    engine::kernel::stat::proc_cpu_us(&engine::SysRoot::host(), pid).unwrap_or(0) as f64 / 1e6
}

fn noguard_policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string("policies/reclaim.ron").expect("policies/reclaim.ron");
    let text = text.replace("target: \"2%\"", "target: \"100%\"");
    assert!(
        text.contains("100%"),
        "reclaim.ron's goal changed: update the bench"
    );
    let p = dir.join("reclaim-noguard.ron");
    std::fs::write(&p, text).unwrap();
    p
}

fn one_run(exe: &Path, w: &Workload, mode: Mode, secs: u64, policy: Option<&Path>) -> RunResult {
    let mut child = Client::spawn(exe, &w.spec()).expect("workload child");
    let pid = child.pid();
    let mapping = child.mapping();
    std::thread::sleep(Duration::from_millis(500));
    let mut run = policy.map(|p| {
        let mut c = Command::new(exe);
        c.args(["run", "--json", "--every", "10s", "--for"])
            .arg(format!("{secs}s"))
            .arg("--policy")
            .arg(p)
            .args(["--pid", &pid.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        c.spawn().expect("madvd run")
    });
    let (in0, out0) = (vmstat("pswpin"), vmstat("pswpout"));
    let cpu0 = proc_cpu(pid);
    let t0 = Instant::now();
    // Each slot's last hot time (s since t0); all touched at the start.
    let mut last_hot = vec![0.0f64; w.slots as usize];
    let (mut ops, mut swap_sum, mut idle_sum, mut n) = (0u64, 0f64, 0f64, 0u64);
    let mut slices: Vec<(f64, u64)> = Vec::new();
    let mut slice = (0f64, 0u64);
    child.mark().unwrap();
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        let tr = child.truth().expect("truth");
        child.mark().unwrap();
        ops += tr.ops;
        let now = t0.elapsed().as_secs_f64();
        let k = ((tr.hot.start - mapping.start) / w.slot) as usize;
        if k < last_hot.len() {
            last_hot[k] = now;
        }
        let idle2: u64 = last_hot
            .iter()
            .enumerate()
            .filter(|(i, &h)| *i != k && now - h >= 2.0 * MIN_AGE_S)
            .map(|_| w.slot)
            .sum();
        let swap = read_status(&SysRoot::host().pid_file(pid, "status"))
            .ok()
            .and_then(|s| s.vm_swap)
            .unwrap_or(0);
        let net = swap as f64 - zram_used() as f64;
        swap_sum += swap as f64;
        idle_sum += idle2 as f64;
        n += 1;
        slice.0 += net;
        slice.1 += 1;
        if slice.1 == 10 {
            slices.push(slice);
            slice = (0.0, 0);
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = proc_cpu(pid) - cpu0;
    let mut r = RunResult {
        ops_per_s: ops as f64 / elapsed,
        ops_per_cpu_s: ops as f64 / cpu.max(1e-9),
        pswpin: (vmstat("pswpin") - in0) * 4096,
        pswpout: (vmstat("pswpout") - out0) * 4096,
        min_net_slice: slices
            .iter()
            .map(|(s, c)| (s / *c as f64) as i64)
            .min()
            .unwrap_or(0),
        avg_saved: swap_sum / n.max(1) as f64,
        avg_idle2: idle_sum / n.max(1) as f64,
        ..RunResult::default()
    };
    if let Some(mut run) = run.take() {
        let mut last = None;
        for l in BufReader::new(run.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok)
        {
            last = Some(l);
        }
        let _ = run.wait();
        if let Some(v) = last.and_then(|l| serde_json::from_str::<serde_json::Value>(&l).ok()) {
            let s = &v["schemes"][0];
            r.paged_out = s["paged_out_bytes"].as_u64().unwrap_or(0);
            r.refaulted = s["refaulted_bytes"].as_u64().unwrap_or(0);
            r.advised = s["sz_applied"].as_u64().unwrap_or(0);
        }
    }
    let _ = mode;
    child.kill();
    r
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn fmt3((m, lo, hi): (f64, f64, f64), unit: &str, prec: usize) -> String {
    format!("{m:.prec$}{unit} [{lo:.prec$}, {hi:.prec$}]")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _swap = match swap::acquire(2 << 30) {
        Ok(g) => g,
        Err(why) => {
            eprintln!("SKIP reclaim_moving: no swap fixture: {why}");
            return;
        }
    };
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_madvd"));
    let runs = env_u64("MADVD_BENCH_RUNS", 5);
    let cycles = env_u64("MADVD_BENCH_CYCLES", 3);
    let only = std::env::var("MADVD_BENCH_ONLY").ok();
    let dir = tempfile::tempdir().unwrap();
    let guard = PathBuf::from("policies/reclaim.ron");
    let noguard = noguard_policy(dir.path());
    let workloads = [
        Workload {
            name: "moving 8x64MiB, 5 s each",
            slots: 8,
            slot: 64 * MIB,
            hot_s: 5,
            secs: None,
            with_noguard: true,
        },
        Workload {
            name: "alternating 2x128MiB, 2 s each",
            slots: 2,
            slot: 128 * MIB,
            hot_s: 2,
            secs: Some(60),
            with_noguard: false,
        },
        Workload {
            name: "moving 16x32MiB, 2 s each",
            slots: 16,
            slot: 32 * MIB,
            hot_s: 2,
            secs: None,
            with_noguard: false,
        },
        Workload {
            name: "moving 4x256MiB, 10 s each",
            slots: 4,
            slot: 256 * MIB,
            hot_s: 10,
            secs: None,
            with_noguard: false,
        },
    ];
    println!(
        "| workload | policy | run | slowdown | per CPU-s | paged out (MiB) | refaulted (MiB) | refaulted / paged out | pswpout (MiB) | pswpin (MiB) | lowest 10-s net saving (MiB) | time-avg saved (MiB) | saved / idle ≥ 2× min age |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for w in &workloads {
        if only.as_deref().is_some_and(|o| !w.name.starts_with(o)) {
            continue;
        }
        let secs = w.secs(cycles);
        let mut modes = vec![Mode::Off, Mode::Guard];
        if w.with_noguard {
            modes.push(Mode::NoGuard);
        }
        let mut res: Vec<(Mode, RunResult)> = Vec::new();
        for rep in 0..runs {
            for &m in &modes {
                let pol = match m {
                    Mode::Off => None,
                    Mode::Guard => Some(guard.as_path()),
                    Mode::NoGuard => Some(noguard.as_path()),
                };
                let r = one_run(&exe, w, m, secs, pol);
                eprintln!("{} rep {rep} {m:?}: {r:?}", w.name);
                res.push((m, r));
            }
        }
        let offs: Vec<&RunResult> = res
            .iter()
            .filter(|(m, _)| *m == Mode::Off)
            .map(|x| &x.1)
            .collect();
        for &m in modes.iter().filter(|m| **m != Mode::Off) {
            let ons: Vec<&RunResult> = res.iter().filter(|(x, _)| *x == m).map(|x| &x.1).collect();
            let slow: Vec<f64> = ons
                .iter()
                .zip(&offs)
                .map(|(on, off)| (1.0 - on.ops_per_s / off.ops_per_s) * 100.0)
                .collect();
            let slow_cpu: Vec<f64> = ons
                .iter()
                .zip(&offs)
                .map(|(on, off)| (1.0 - on.ops_per_cpu_s / off.ops_per_cpu_s) * 100.0)
                .collect();
            let refr: Vec<f64> = ons
                .iter()
                .map(|r| {
                    if r.paged_out == 0 {
                        0.0
                    } else {
                        r.refaulted as f64 / r.paged_out as f64 * 100.0
                    }
                })
                .collect();
            let mib =
                |f: fn(&RunResult) -> f64| median(ons.iter().map(|r| f(r) / MIB as f64).collect());
            let ratio: Vec<f64> = ons
                .iter()
                .map(|r| {
                    if r.avg_idle2 == 0.0 {
                        f64::NAN
                    } else {
                        r.avg_saved / r.avg_idle2 * 100.0
                    }
                })
                .collect();
            println!(
                "| {} | {} | {} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.name,
                if m == Mode::Guard {
                    "reclaim.ron"
                } else {
                    "guard off (budget 100%)"
                },
                secs,
                fmt3(median(slow), "%", 1),
                fmt3(median(slow_cpu), "%", 1),
                fmt3(mib(|r| r.paged_out as f64), "", 0),
                fmt3(mib(|r| r.refaulted as f64), "", 0),
                fmt3(median(refr), "%", 0),
                fmt3(mib(|r| r.pswpout as f64), "", 0),
                fmt3(mib(|r| r.pswpin as f64), "", 0),
                fmt3(mib(|r| r.min_net_slice as f64), "", 0),
                fmt3(mib(|r| r.avg_saved), "", 0),
                if ratio.iter().all(|x| x.is_nan()) {
                    format!("n/a (idle ≥ 12 s: {:.0} MiB)", mib(|r| r.avg_idle2).0)
                } else {
                    format!(
                        "{} of {:.0} MiB",
                        fmt3(median(ratio), "%", 0),
                        mib(|r| r.avg_idle2).0
                    )
                },
            );
        }
    }
}
