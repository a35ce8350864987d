//! Refault probe benchmark on a live workload child (a bench binary, `harness = false`):
//! probes per second, monitor CPU (the monitoring thread's CPU time: CLOCK_THREAD_CPUTIME_ID,
//! which includes the kernel time of its process_madvise and pagemap calls), the workload's
//! throughput with vs without monitoring — interleaved on/off runs, median and spread — and
//! hot/cold recall, at the probe's defaults and two faster settings; then monitor CPU for a
//! 1 GiB vs an 8 GiB target with the same region bounds.
//!
//! Run (root; makes a zram swap through the test fixture if the machine has none):
//!   nice -n 10 cargo bench --bench probe
//! Environment: MADVD_BENCH_RUNS (on/off pairs, default 5), MADVD_BENCH_SECS (seconds per
//! run, default 10), MADVD_BENCH_BIG_GIB (the big target, default 8; 0 skips the size part),
//! MADVD_BENCH_ONLY (run only the setting with this name, or `size`).

use engine::access::AccessCheck;
use engine::monitor::Monitor;
use engine::ops::probe::{Probe, ProbeConfig};
use engine::process::Process;
use engine::testkit::{self, swap};
use engine::{AddrRange, Attrs, Region, SysRoot};
use madvd_workload::{Client as Workload, WorkloadSpec};
use std::path::Path;
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pin `tid` (0: the calling thread) to `cpu`.
fn pin(tid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it; the
    // affinity call reads it for the duration of the call.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Pin every thread of `pid` to `cpu`.
fn pin_process(pid: u32, cpu: usize) {
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in d.flatten() {
            if let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
                pin(tid, cpu);
            }
        }
    }
}

/// CPU seconds (user + system) used so far by all threads of `pid` (`/proc/PID/stat` fields
/// 14 and 15, in clock ticks).
fn proc_cpu(pid: u32) -> f64 {
    engine::kernel::stat::proc_cpu_us(&engine::SysRoot::host(), pid).unwrap_or(0) as f64 / 1e6
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn recall(regions: &[Region], mapping: AddrRange, hot: AddrRange) -> (f64, f64) {
    let (mut h, mut c) = (0u64, 0u64);
    for r in regions {
        let Some(part) = r.ar.intersection(&mapping) else {
            continue;
        };
        let hp = part.intersection(&hot).map_or(0, |x| x.len());
        if r.nr_accesses > 0 {
            h += hp;
        } else {
            c += part.len() - hp;
        }
    }
    (
        h as f64 / hot.len() as f64,
        c as f64 / (mapping.len() - hot.len()) as f64,
    )
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    (
        v.iter().cloned().fold(f64::INFINITY, f64::min),
        v.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
    )
}

struct Monitored {
    mon: Monitor,
    probe: Probe,
    clock: Instant,
    last: Option<engine::Snapshot>,
}

impl Monitored {
    fn new(pid: u32, attrs: Attrs, cfg: ProbeConfig) -> Self {
        let mut probe = Probe::new(SysRoot::host(), cfg);
        let id = probe
            .add_target(Process::open(&SysRoot::host(), pid, false).expect("open target"))
            .unwrap();
        let mut mon = Monitor::new(attrs, 1).expect("attrs");
        mon.add_target(id);
        Self {
            mon,
            probe,
            clock: Instant::now(),
            last: None,
        }
    }

    /// Step in real time for `d`; returns the monitoring thread's CPU time.
    fn run_for(&mut self, d: Duration) -> Duration {
        let cpu0 = thread_cpu();
        let end = Instant::now() + d;
        while Instant::now() < end {
            let out = self
                .mon
                .step(self.clock.elapsed().as_micros() as u64, &mut self.probe);
            assert!(out.gone.is_empty(), "target gone");
            if out.snapshot.is_some() {
                self.last = out.snapshot;
            }
            let next = self.mon.next_step_at_us();
            let now = self.clock.elapsed().as_micros() as u64;
            let wait = Duration::from_micros(next.saturating_sub(now))
                .min(end.saturating_duration_since(Instant::now()));
            std::thread::sleep(wait);
        }
        thread_cpu() - cpu0
    }
}

struct Setting {
    name: &'static str,
    attrs: Attrs,
    cfg: ProbeConfig,
}

fn settings(defaults: Attrs) -> Vec<Setting> {
    let d = ProbeConfig::default();
    vec![
        Setting {
            name: "defaults",
            attrs: defaults,
            cfg: d,
        },
        Setting {
            name: "fast",
            attrs: Attrs {
                sample_us: 20_000,
                aggr_us: 400_000,
                ..defaults
            },
            cfg: ProbeConfig {
                max_samples_per_sec: Some(1000.0),
                max_pageouts_per_sec: Some(400.0),
                ..d
            },
        },
        Setting {
            name: "kernel-defaults",
            attrs: Attrs {
                sample_us: 5_000,
                aggr_us: 100_000,
                ..defaults
            },
            cfg: ProbeConfig {
                max_samples_per_sec: None,
                max_pageouts_per_sec: None,
                ..d
            },
        },
    ]
}

fn main() {
    let exe = Path::new(env!("CARGO_BIN_EXE_madvd"));
    if !testkit::is_root() {
        testkit::skip(
            "bench probe",
            "needs root (remote process_madvise needs CAP_SYS_NICE)",
        );
        return;
    }
    let _swap = match swap::acquire(1 << 30) {
        Ok(g) => g,
        Err(e) => {
            testkit::skip("bench probe", &format!("no swap fixture: {e}"));
            return;
        }
    };
    let runs = env_u64("MADVD_BENCH_RUNS", 5) as usize;
    let secs = env_u64("MADVD_BENCH_SECS", 10);
    let big = env_u64("MADVD_BENCH_BIG_GIB", 8);
    let only = std::env::var("MADVD_BENCH_ONLY").ok();
    // MADVD_BENCH_CPU=N: the monitor and the workload share CPU N (the monitor's CPU time is
    // then taken from the workload: the worst case; and no migration noise).
    let cpu = std::env::var("MADVD_BENCH_CPU")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(c) = cpu {
        pin(0, c);
    }
    let run_d = Duration::from_secs(secs);
    let defaults = Probe::new(SysRoot::host(), ProbeConfig::default()).default_attrs();
    println!(
        "# refault probe bench: {runs} interleaved on/off pairs of {secs} s each, 256 MiB child, hot 10%{}",
        cpu.map_or(String::new(), |c| format!(", monitor and workload pinned to cpu {c}"))
    );
    println!();
    println!("| setting | workload Mops/s off (median, min–max) | on (median, min–max) | slowdown, wall (median of pairs, min–max) | slowdown per workload CPU-second (median, min–max) | monitor CPU % of a core (median, max) | probes/s (median) | hot recall (median, min) | cold recall (median, min) |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in settings(defaults) {
        if only
            .as_deref()
            .is_some_and(|o| o != s.name && !s.name.starts_with(o))
        {
            continue;
        }
        let spec = WorkloadSpec {
            hot_offset: 0.45,
            ..WorkloadSpec::default()
        };
        let mut w = Workload::spawn(exe, &spec).expect("spawn workload");
        if let Some(c) = cpu {
            pin_process(w.pid(), c);
        }
        let (m, hot) = (w.mapping(), w.hot());
        let mut mon = Monitored::new(w.pid(), s.attrs, s.cfg);
        // Warm-up: let the regions adapt before measuring (not counted).
        mon.run_for(Duration::from_micros(s.attrs.aggr_us * 8));
        let mut slow_cpu = Vec::new();
        let (mut off, mut on, mut slow, mut cpu, mut pps, mut hr, mut cr) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        for i in 0..runs {
            let mut pair = [0f64; 2];
            let mut pair_cpu = [0f64; 2];
            let order = if i % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for monitored in order {
                w.mark().unwrap();
                let wcpu0 = proc_cpu(w.pid());
                let t0 = Instant::now();
                if monitored {
                    let p0 = mon.probe.cost().probe_pageouts;
                    let c = mon.run_for(run_d);
                    let wall = t0.elapsed().as_secs_f64();
                    cpu.push(c.as_secs_f64() / wall * 100.0);
                    pps.push((mon.probe.cost().probe_pageouts - p0) as f64 / wall);
                    if let Some(snap) = &mon.last {
                        let (h, c) = recall(&snap.targets[0].regions, m, hot);
                        hr.push(h);
                        cr.push(c);
                    }
                } else {
                    std::thread::sleep(run_d);
                }
                let t = w.truth().unwrap();
                pair[monitored as usize] = t.ops_per_sec / 1e6;
                // Throughput per CPU-second of the workload: immune to other processes
                // taking the CPU on a shared machine; includes the refaults the probe causes.
                pair_cpu[monitored as usize] =
                    t.ops as f64 / (proc_cpu(w.pid()) - wcpu0).max(1e-3) / 1e6;
            }
            off.push(pair[0]);
            on.push(pair[1]);
            slow.push((1.0 - pair[1] / pair[0]) * 100.0);
            slow_cpu.push((1.0 - pair_cpu[1] / pair_cpu[0]) * 100.0);
            eprintln!(
                "{}: run {i}: off {:.2} on {:.2} Mops/s, cpu {:.2}%, {:.0} probes/s",
                s.name,
                pair[0],
                pair[1],
                cpu.last().unwrap(),
                pps.last().unwrap()
            );
        }
        let (a, b) = spread(&off);
        let (c, d) = spread(&on);
        let (e, f) = spread(&slow);
        let (g, h) = spread(&slow_cpu);
        println!(
            "| {} ({} ms / {} ms, budget {} samples, {} page-outs) | {:.2} ({a:.2}–{b:.2}) | {:.2} ({c:.2}–{d:.2}) | {:.1}% ({e:.1}–{f:.1}) | {:.1}% ({g:.1}–{h:.1}) | {:.2} (max {:.2}) | {:.0} | {:.3} (min {:.3}) | {:.3} (min {:.3}) |",
            s.name,
            s.attrs.sample_us / 1000,
            s.attrs.aggr_us / 1000,
            s.cfg.max_samples_per_sec.map_or("no".to_string(), |b| format!("{b:.0}/s")),
            s.cfg.max_pageouts_per_sec.map_or("no".to_string(), |b| format!("{b:.0}/s")),
            median(&off),
            median(&on),
            median(&slow),
            median(&slow_cpu),
            median(&cpu),
            spread(&cpu).1,
            median(&pps),
            median(&hr),
            spread(&hr).0,
            median(&cr),
            spread(&cr).0,
        );
        eprintln!("{}: probe stats {:?}", s.name, mon.probe.stats());
        w.kill();
    }
    if big == 0 || only.as_deref().is_some_and(|o| o != "size") {
        return;
    }
    println!();
    // MADVD_BENCH_PAUSED=1: the workloads stand still during the size comparison (no memory
    // traffic of theirs competing with the monitor for caches and TLBs).
    let paused = std::env::var_os("MADVD_BENCH_PAUSED").is_some();
    println!(
        "| target{} | regions (end) | monitor CPU % of a core over {}s | probes/s |",
        if paused { " (workload paused)" } else { "" },
        secs * 2
    );
    println!("|---|---|---|---|");
    let mut cpus = Vec::new();
    for gib in [1, big] {
        let spec = WorkloadSpec {
            size: gib << 30,
            hot_offset: 0.45,
            ..WorkloadSpec::default()
        };
        let mut w = Workload::spawn(exe, &spec).expect("spawn workload");
        if paused {
            w.pause().unwrap();
        }
        let mut mon = Monitored::new(w.pid(), defaults, ProbeConfig::default());
        mon.run_for(Duration::from_micros(defaults.aggr_us * 4));
        let p0 = mon.probe.cost().probe_pageouts;
        let t0 = Instant::now();
        let c = mon.run_for(run_d * 2);
        let wall = t0.elapsed().as_secs_f64();
        let pct = c.as_secs_f64() / wall * 100.0;
        cpus.push(pct);
        let nr = mon.mon.nr_regions();
        println!(
            "| {gib} GiB | {nr} | {pct:.3} | {:.0} |",
            (mon.probe.cost().probe_pageouts - p0) as f64 / wall
        );
        w.kill();
    }
    println!();
    println!(
        "ratio {big} GiB / 1 GiB monitor CPU: {:.2}",
        cpus[1] / cpus[0]
    );
}
