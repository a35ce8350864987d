//! Reclaim on static workloads (issue 14, must-show 1): how much of the provably idle memory
//! `madvd run --policy policies/reclaim.ron` takes back within a minute, at what cost to the
//! workload, and how many bytes it advises per byte saved, against a run with no reclaimer
//! (and, with `MADVD_BENCH_VARIANTS=none,madvd,legacy`, without the residency cut and the
//! pace: `MADVD_RECLAIM_LEGACY=1`, the actuator before issue 14). A bench binary
//! (`harness = false`), not a CI test.
//!
//! Workloads (`madvd workload`, ground truth from the child's own touched-page bitmap): one
//! private anonymous mapping of `MADVD_BENCH_SIZE_MIB` (default 512), compressible pages,
//! `MADVD_BENCH_HOT` hot (default 0.10) and read without pause:
//! - `band`: one hot band (the first part), pages read at random;
//! - `scattered`: the hot part scattered at 4 KiB (a seeded permutation: `SparseHot`), every
//!   hot page read in each 100 ms interval.
//!
//! Each run: the child first-touches its memory, 2 s settle, then (variant `none`) nothing or
//! `madvd run --ops probe --policy policies/reclaim.ron` (variants `madvd`, `legacy`) for
//! `MADVD_BENCH_SECS` (default 60) s, sampled every second (the child's ops, its VmSwap and
//! CPU time). Per run:
//! - saved = VmSwap at the end − at the start; oracle = bytes the child did not touch in the
//!   window; saved/oracle;
//! - steady throughput: ops/s over the last third; the per-CPU-second figure (ops / the
//!   child's user+system time) beside it; slowdown against the `none` run of the same round;
//! - worst 1-s throughput as a share of the same round's `none` run's median second (the
//!   `none` run's own worst second on the same scale, for comparison), and its difference
//!   to the `none` run's worst second, points;
//! - the schemes' own page-outs (`paged_out_bytes`), what of them came back
//!   (`refaulted_bytes`: the learning price), and the bytes cut out as learned hot;
//! - advised (madvd's `sz_applied`), advised-resident (`sz_resident`), cut as not resident
//!   (`sz_not_resident`); advised/saved.
//!
//! Rounds interleave the variants (`MADVD_BENCH_VARIANTS`, default `none,madvd`, per
//! workload, `MADVD_BENCH_REPS` rounds, default 5); the table gives medians and [min, max]. With
//! `MADVD_BENCH_KEEP=DIR` each madvd run's JSON lines go to `DIR/WORKLOAD-PID.jsonl` and its
//! log to `DIR/WORKLOAD-PID.log` (`MADVD_LOG=info,madvd::diag=debug`: regions and requests). Needs root and the swap
//! fixture (a zram swap of 2× the size, the machine-wide lock).
//!
//! Run: `nice -n 10 cargo bench --bench reclaim_static` (the table is printed and written to
//! `target/reclaim_static.md`).

use engine::kernel::zram::TempSwap;
use engine::ops::sim::{Pattern as SimPattern, SparseHot};
use engine::{AddrRange, SysRoot};
use madvd_workload::{Client as Workload, Fill, Pattern, Script, WorkloadSpec};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of `pid`, seconds (`engine::kernel::stat::proc_cpu_us`; 0 once gone).
fn cpu_s(pid: u32) -> f64 {
    engine::kernel::stat::proc_cpu_us(&engine::SysRoot::host(), pid).unwrap_or(0) as f64 / 1e6
}

/// `VmSwap` of `pid`, bytes (`engine::kernel::status`; 0 once gone).
fn vm_swap(pid: u32) -> u64 {
    let path = engine::SysRoot::host().pid_file(pid, "status");
    engine::kernel::status::read_status(&path).map_or(0, |s| s.vm_swap.unwrap_or(0))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    None,
    Madvd,
    Legacy,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::None => "no reclaim",
            Variant::Madvd => "madvd (cut + pace)",
            Variant::Legacy => "madvd legacy (no cut, no pace)",
        }
    }
}

#[derive(Clone, Debug, Default)]
struct RunResult {
    paged_out: f64,
    refaulted: f64,
    learned_cut: f64,
    saved: f64,
    oracle: f64,
    /// Ops per second, each second.
    per_s: Vec<f64>,
    steady: f64,
    steady_cpu: f64,
    advised: f64,
    resident: f64,
    not_resident: f64,
    swap_mid: Vec<f64>,
    /// Per scheme: name, advised, paged out, refaulted, cut as learned hot (MiB), for the
    /// round's line.
    per_scheme: String,
}

fn spec(workload: &str, size: u64, hot: f64) -> WorkloadSpec {
    let mut s = WorkloadSpec {
        size,
        hot_fraction: hot,
        pattern: Pattern::HotCold,
        fill: Fill::Pattern,
        nohugepage: true,
        seed: 11,
        ..WorkloadSpec::default()
    };
    if workload == "scattered" {
        s.script = Some(Script {
            pattern: SimPattern::Sparse(SparseHot {
                range: AddrRange::new(0, size),
                fraction: hot,
                prob: 1.0,
                layout_seed: 5,
            }),
            interval_ms: 100,
        });
    }
    s
}

fn one_run(
    exe: &Path,
    policy: &Path,
    workload: &str,
    size: u64,
    hot: f64,
    secs: u64,
    v: Variant,
) -> RunResult {
    let mut w = Workload::spawn(exe, &spec(workload, size, hot)).expect("spawn workload");
    let pid = w.pid();
    std::thread::sleep(Duration::from_secs(2));
    w.mark().expect("mark");
    let swap0 = vm_swap(pid);
    let mut madvd = (v != Variant::None).then(|| {
        let mut c = Command::new(exe);
        c.args([
            "run", "--ops", "probe", "--json", "--every", "1s", "--policy",
        ])
        .arg(policy)
        .args([
            "--pid",
            &pid.to_string(),
            "--for",
            &format!("{}s", secs + 30),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        if let Ok(dir) = std::env::var("MADVD_BENCH_KEEP") {
            // Its log too (MADVD_LOG=info,madvd::diag=debug for the regions and requests).
            match std::fs::File::create(Path::new(&dir).join(format!("{workload}-{pid}.log"))) {
                Ok(f) => {
                    c.stderr(f);
                }
                Err(e) => eprintln!("MADVD_BENCH_KEEP: {dir}: {e}"),
            }
        }
        if v == Variant::Legacy {
            c.env("MADVD_RECLAIM_LEGACY", "1");
        }
        c.spawn().expect("spawn madvd run")
    });
    let t0 = Instant::now();
    let mut last_ops = 0u64;
    let mut r = RunResult::default();
    let mut cpu_mark = (0.0, 0u64);
    let steady_from = secs - secs / 3;
    for s in 1..=secs {
        let due = t0 + Duration::from_secs(s);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let t = w.truth().expect("truth");
        r.per_s.push((t.ops - last_ops) as f64);
        last_ops = t.ops;
        r.swap_mid.push(vm_swap(pid).saturating_sub(swap0) as f64);
        if s == steady_from {
            cpu_mark = (cpu_s(pid), t.ops);
        }
        if s == secs {
            r.oracle = t.untouched_bytes as f64;
            let cpu = cpu_s(pid) - cpu_mark.0;
            let ops = (t.ops - cpu_mark.1) as f64;
            r.steady = ops / (secs - steady_from) as f64;
            r.steady_cpu = ops / cpu.max(1e-3);
        }
    }
    r.saved = vm_swap(pid).saturating_sub(swap0) as f64;
    if let Some(mut c) = madvd.take() {
        // SIGINT: the run prints its final line and exits.
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let out = c.stdout.take().expect("stdout");
        let mut last = String::new();
        let mut kept = String::new();
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if l.starts_with('{') {
                kept += &l;
                kept.push('\n');
                last = l;
            }
        }
        if let Ok(dir) = std::env::var("MADVD_BENCH_KEEP") {
            let f = Path::new(&dir).join(format!("{workload}-{pid}.jsonl"));
            if let Err(e) = std::fs::write(&f, kept) {
                eprintln!("MADVD_BENCH_KEEP: {}: {e}", f.display());
            }
        }
        let _ = c.wait();
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&last) {
            for s in j["schemes"].as_array().into_iter().flatten() {
                r.advised += s["sz_applied"].as_f64().unwrap_or(0.0);
                r.resident += s["sz_resident"].as_f64().unwrap_or(0.0);
                r.not_resident += s["sz_not_resident"].as_f64().unwrap_or(0.0);
                r.paged_out += s["paged_out_bytes"].as_f64().unwrap_or(0.0);
                r.refaulted += s["refaulted_bytes"].as_f64().unwrap_or(0.0);
                r.learned_cut += s["sz_learned_hot"].as_f64().unwrap_or(0.0);
                let mib = |k: &str| s[k].as_f64().unwrap_or(0.0) / 1048576.0;
                r.per_scheme += &format!(
                    " [{}: advised {:.0}, paged out {:.0}, refaulted {:.0}, learned cut {:.0}]",
                    s["name"].as_str().unwrap_or("?"),
                    mib("sz_applied"),
                    mib("paged_out_bytes"),
                    mib("refaulted_bytes"),
                    mib("sz_learned_hot")
                );
            }
        } else {
            eprintln!("madvd run gave no final JSON line");
        }
    }
    w.kill();
    r
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// "median [min, max]".
fn stat(mut v: Vec<f64>, fmt: impl Fn(f64) -> String) -> String {
    if v.is_empty() {
        return "–".into();
    }
    let m = median(&mut v);
    format!("{} [{}, {}]", fmt(m), fmt(v[0]), fmt(v[v.len() - 1]))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("reclaim_static: needs root (swap fixture, process_madvise); skipped");
        return;
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_madvd"));
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/reclaim.ron");
    let size = env_u64("MADVD_BENCH_SIZE_MIB", 512) << 20;
    let hot: f64 = std::env::var("MADVD_BENCH_HOT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.10);
    let secs = env_u64("MADVD_BENCH_SECS", 60);
    let reps = env_u64("MADVD_BENCH_REPS", 5);
    let workloads: Vec<String> = std::env::var("MADVD_BENCH_WORKLOADS")
        .unwrap_or_else(|_| "band,scattered".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let root = SysRoot::host();
    let _swap = TempSwap::ensure(&root, 2 * size, Some(Duration::from_secs(1800)), &|| false)
        .expect("swap fixture");
    eprintln!("swap: {}", _swap.describe());
    let coexist = engine::kernel::coexist::Coexistence::detect(&root);
    if !coexist.is_empty() {
        eprintln!("note: {coexist}");
    }
    let variants: Vec<Variant> = std::env::var("MADVD_BENCH_VARIANTS")
        .unwrap_or_else(|_| "none,madvd".into())
        .split(',')
        .filter_map(|v| match v {
            "none" => Some(Variant::None),
            "madvd" => Some(Variant::Madvd),
            "legacy" => Some(Variant::Legacy),
            _ => None,
        })
        .collect();
    assert_eq!(
        variants.first(),
        Some(&Variant::None),
        "MADVD_BENCH_VARIANTS must start with none (the control)"
    );
    eprintln!(
        "size {} MiB, hot {hot}, {secs} s, {reps} rounds, policy {}",
        size >> 20,
        policy.display()
    );
    // results[workload][variant][rep]
    let mut results: Vec<Vec<Vec<RunResult>>> =
        vec![vec![Vec::new(); variants.len()]; workloads.len()];
    for rep in 0..reps {
        for (wi, wl) in workloads.iter().enumerate() {
            for (vi, v) in variants.iter().enumerate() {
                let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
                let r = one_run(exe, &policy, wl, size, hot, secs, *v);
                eprintln!(
                    "round {rep} {wl} {} (load {}): saved {:.0} MiB of oracle {:.0} MiB ({:.2}); steady {:.0} ops/s ({:.0}/cpu-s); worst second {:.0}; advised {:.0} MiB (resident {:.0}, cut {:.0}); paged out {:.0} MiB, refaulted {:.0} MiB, learned cut {:.0} MiB; saved at 10/20/30 s {:.0}/{:.0}/{:.0} MiB;{}",
                    v.name(),
                    load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
                    r.saved / 1048576.0,
                    r.oracle / 1048576.0,
                    r.saved / r.oracle.max(1.0),
                    r.steady,
                    r.steady_cpu,
                    r.per_s.iter().cloned().fold(f64::INFINITY, f64::min),
                    r.advised / 1048576.0,
                    r.resident / 1048576.0,
                    r.not_resident / 1048576.0,
                    r.paged_out / 1048576.0,
                    r.refaulted / 1048576.0,
                    r.learned_cut / 1048576.0,
                    r.swap_mid.get(9).copied().unwrap_or(0.0) / 1048576.0,
                    r.swap_mid.get(19).copied().unwrap_or(0.0) / 1048576.0,
                    r.swap_mid.get(29).copied().unwrap_or(0.0) / 1048576.0,
                    r.per_scheme,
                );
                results[wi][vi].push(r);
            }
        }
        // The table so far after each round (a cut-short run keeps what it measured).
        let md = table(&workloads, &variants, &results, secs, rep + 1);
        let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/reclaim_static.md");
        let _ = std::fs::write(&out, &md);
        eprintln!("after round {rep}: table written to {}", out.display());
        if rep + 1 == reps {
            println!("{md}");
        }
    }
}

fn table(
    workloads: &[String],
    variants: &[Variant],
    results: &[Vec<Vec<RunResult>>],
    secs: u64,
    rounds: u64,
) -> String {
    let mut md = format!("{rounds} round(s)\n\n");
    md += &format!(
        "| workload | run | saved/oracle at {secs} s | steady slowdown | per CPU-second | worst 1 s (% of no-reclaim median second) | worst 1 s − no-reclaim's worst (points) | advised/saved | paged out by the schemes | refaulted | cut as learned hot | cut as not resident |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    );
    let mib = |x: f64| format!("{:.0} MiB", x / 1048576.0);
    let pct = |x: f64| format!("{x:.1}%");
    let f2 = |x: f64| format!("{x:.2}");
    for (wi, wl) in workloads.iter().enumerate() {
        let none = &results[wi][0];
        let worst_of = |r: &RunResult, n: &RunResult| {
            let mut ns = n.per_s.clone();
            let base = median(&mut ns).max(1e-9);
            100.0 * r.per_s.iter().cloned().fold(f64::INFINITY, f64::min) / base
        };
        for (vi, v) in variants.iter().enumerate() {
            let runs = &results[wi][vi];
            let pairs = || runs.iter().zip(none);
            let so: Vec<f64> = runs.iter().map(|r| r.saved / r.oracle.max(1.0)).collect();
            let slow = pairs()
                .map(|(r, n)| 100.0 * (1.0 - r.steady / n.steady.max(1e-9)))
                .collect();
            let slow_cpu = pairs()
                .map(|(r, n)| 100.0 * (1.0 - r.steady_cpu / n.steady_cpu.max(1e-9)))
                .collect();
            let worst: Vec<f64> = pairs().map(|(r, n)| worst_of(r, n)).collect();
            let worst_d = pairs()
                .map(|(r, n)| worst_of(r, n) - worst_of(n, n))
                .collect();
            let dash = || "–".to_string();
            let control = *v == Variant::None;
            let col = |f: &dyn Fn(&RunResult) -> f64, fmt: &dyn Fn(f64) -> String| {
                if control {
                    dash()
                } else {
                    stat(runs.iter().map(f).collect(), fmt)
                }
            };
            md += &format!(
                "| {wl} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                v.name(),
                stat(so, f2),
                if control { dash() } else { stat(slow, pct) },
                if control { dash() } else { stat(slow_cpu, pct) },
                stat(worst, |x| format!("{x:.0}")),
                if control {
                    dash()
                } else {
                    stat(worst_d, |x| format!("{x:+.0}"))
                },
                col(&|r| r.advised / r.saved.max(1.0), &f2),
                col(&|r| r.paged_out, &mib),
                col(&|r| r.refaulted, &mib),
                col(&|r| r.learned_cut, &mib),
                col(&|r| r.not_resident, &mib),
            );
        }
    }
    md
}
