//! The same patterns run for real, in the kernel lab (issue #13): a workload child running
//! a Zipf key space (the engine's own sim `Pattern`, run by `madvd workload` as a script) is
//! monitored by the kernel's own DAMON (vaddr, via sysfs), by madvd with page_idle and by
//! madvd with the refault probe; their working-set-size estimates are compared with the
//! child's ground truth per aggregation. Plus residency as evidence through page_idle.
//!
//! Run: `LAB_TESTS=lab_wss tests/lab-run --kernel lab` (the `debian` kernel has no
//! page_idle: there the page_idle parts check that it says so, and the side by side runs
//! kernel DAMON and the probe only).

use engine::access::AccessCheck;
use engine::advice::Advice;
use engine::kernel::madvise::process_madvise;
use engine::kernel::pagemap::Residency;
use engine::monitor::Monitor;
use engine::ops::damon::KernelDamon;
use engine::ops::page_idle::PageIdle;
use engine::ops::sim::{Pattern, ZipfKeys};
use engine::{AddrRange, Attrs, Snapshot, SysRoot, TargetId};
use madvd_workload::{Client as Workload, Script, WorkloadSpec};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

mod common;
use common::{fixed_regions, open, page_idle_here, spawn, unthrottled_probe, Sampler, MIB, PAGE};

/// Pin the child to vCPU 0 beside a thread of ours waking every millisecond, the monitor
/// on vCPU 1: QEMU's TCG soft-TLB is flushed only on a CR3 reload, so without another
/// process's wakeups on the child's vCPU an access through a cached translation does not
/// set the PTE Accessed bit again (the full reasoning is at `co_schedule` in
/// tests/lab_ops.rs, which this copies).
fn co_schedule(pid: u32) {
    static CHURN: std::sync::Once = std::sync::Once::new();
    CHURN.call_once(|| {
        std::thread::spawn(|| {
            pin(0, 0);
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: `param` is a valid sched_param for the duration of the call.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            loop {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    });
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    for t in tasks {
        let tid: i32 = t.unwrap().file_name().to_str().unwrap().parse().unwrap();
        pin(tid, 0);
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    pin(0, (n.clamp(1, 2) - 1) as usize);
}

fn pin(tid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get
    // valid pointers to it for the duration of the calls.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(rc, 0, "sched_setaffinity({tid})");
}

/// Page out `range` of the child and check that most of it left.
fn page_out(pid: u32, range: AddrRange) {
    let mut proc = open(pid);
    let n = process_madvise(proc.pidfd().as_fd(), &[range], Advice::Pageout)
        .expect("process_madvise(MADV_PAGEOUT)");
    assert!(n > 0, "nothing paged out of {range}");
    let mut e = Vec::new();
    proc.pagemap()
        .read(range.start, (range.len() / PAGE) as usize, &mut e)
        .unwrap();
    let out = e
        .iter()
        .filter(|e| matches!(e.residency(), Residency::Swapped { .. }))
        .count();
    assert!(out * 10 >= e.len() * 9, "{out} of {} pages left", e.len());
}

/// A 16 MiB hot/cold child (first 10% hot) whose cold 90% is paged out: page_idle has no
/// bit for those pages, and answers them from residency (NotAccessed), not Unknown.
#[test]
fn lab_page_idle_answers_paged_out_memory_from_residency() {
    let kernel = engine::lab_or_skip!("not in the madvd kernel lab (page_idle exists only there)");
    if !page_idle_here(&kernel) {
        return;
    }
    let w = spawn(&WorkloadSpec {
        size: 16 * MIB,
        hot_fraction: 0.10,
        ..WorkloadSpec::default()
    });
    co_schedule(w.pid());
    let (m, hot) = (w.mapping(), w.hot());
    let cold = AddrRange::new(hot.end, m.end);
    page_out(w.pid(), cold);
    let mut pi = PageIdle::new(&SysRoot::host()).unwrap();
    let id = pi.add_target(open(w.pid())).unwrap();
    pi.target_ranges(id).unwrap();
    let mut s = Sampler::new(fixed_regions(m, 16), 5);
    s.run(&mut pi, id, 10, Duration::from_millis(100));
    let st = pi.stats();
    println!("page_idle stats {st:?}");
    for (r, t) in s.regions.iter().zip(&s.tally) {
        println!("{r} acc {}/{}", t.accessed, t.known);
    }
    assert!(st.absent > 0, "{st:?}");
    for (r, t) in s.regions.iter().zip(&s.tally) {
        if cold.start <= r.start {
            assert!(t.known >= 9, "cold region {r}: {} of 10 known", t.known);
            assert_eq!(t.accessed, 0, "cold region {r}");
        }
    }
}

const SAMPLE_US: u64 = 50_000;
const AGGR_US: u64 = 1_000_000;
/// Aggregations per run, the first `WARMUP` not judged (regions adapt).
const AGGRS: usize = 8;
const WARMUP: usize = 2;
/// Runs per monitor. The bar is on the median of the runs' medians; with 3 runs one child
/// whose regions read 0 by chance in a few aggregations (TCG's soft TLB: page_idle run
/// estimates of 10.8 of 14.9 MiB) and one more ordinary miss decided it (16.1% against the
/// kernel's 10.5% on 2026-12-07; the same test passed re-run alone): 5 runs outvote two.
const RUNS: u64 = 5;
const SIZE: u64 = 16 * MIB;

/// 50 ms sampling, 1 s aggregation (20 samples), 10..50 regions: what kernel DAMON,
/// page_idle and the probe all hold under TCG (~7-8x slower) with a 16 MiB child. With
/// 10 samples (500 ms) a region's nr_accesses was 0 in ~30% of aggregations by chance
/// alone (a page is touched in ~12% of intervals), for every monitor alike: the table was
/// noise.
fn attrs() -> Attrs {
    Attrs {
        sample_us: SAMPLE_US,
        aggr_us: AGGR_US,
        ops_update_us: 5_000_000,
        min_nr_regions: 10,
        max_nr_regions: 50,
        ..Attrs::default()
    }
}

/// Keys over the whole mapping: a variant with keys over half of it (the other half cold)
/// is the harder test, but its medians of 3 runs ranged from within 5 points to 100 points
/// off between lab runs, for the kernel and madvd alike (docs/performance.md, "WSS side by
/// side with kernel DAMON (lab)"): not a test that can hold a 5-point bar yet.
/// The Zipf child: 4096 one-page keys (s = 1.0, scattered by `seed`), 2048 lookups per
/// 50 ms interval (~20% of the keys), the interval's keys touched over and over until it ends.
fn zipf_spec(seed: u64) -> WorkloadSpec {
    WorkloadSpec {
        size: SIZE,
        seed,
        script: Some(Script {
            pattern: Pattern::Zipf(ZipfKeys {
                base: AddrRange::new(0, SIZE),
                key_bytes: PAGE,
                s: 1.0,
                lookups: 2048,
                layout_seed: seed,
            }),
            interval_ms: SAMPLE_US / 1000,
        }),
        ..WorkloadSpec::default()
    }
}

/// DAMON's working-set size of a snapshot over `mapping`: the bytes of regions with at
/// least one access in the aggregation (as `damo report wss` counts them).
fn wss(s: &Snapshot, id: TargetId, mapping: AddrRange) -> u64 {
    let t = s.targets.iter().find(|t| t.target == id).expect("target");
    t.regions
        .iter()
        .filter(|r| r.nr_accesses > 0)
        .filter_map(|r| r.ar.intersection(&mapping))
        .map(|r| r.len())
        .sum()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mon {
    Damon,
    PageIdle,
    Probe,
}

/// One run: a fresh child with `seed`, one monitor; per aggregation (estimate, truth).
fn run(mon: Mon, seed: u64) -> Vec<(u64, u64)> {
    let mut w = spawn(&zipf_spec(seed));
    co_schedule(w.pid());
    let m = w.mapping();
    let id = TargetId(w.pid());
    let mut out = Vec::new();
    let mut record = |w: &mut Workload, s: &Snapshot| {
        let t = w.truth().unwrap();
        w.mark().unwrap();
        out.push((wss(s, id, m), t.touched_bytes));
    };
    w.mark().unwrap();
    match mon {
        Mon::Damon => {
            let mut kd = KernelDamon::start(&SysRoot::host(), &[id], attrs()).unwrap();
            for _ in 0..AGGRS {
                let s = kd.next_snapshot().unwrap().expect("kdamond runs");
                record(&mut w, &s);
            }
            kd.stop().unwrap();
        }
        Mon::PageIdle | Mon::Probe => {
            let mut ops: Box<dyn AccessCheck> = match mon {
                Mon::PageIdle => Box::new(PageIdle::new(&SysRoot::host()).unwrap()),
                _ => Box::new(unthrottled_probe()),
            };
            ops.add_target(open(w.pid())).unwrap();
            let mut mon = Monitor::new(attrs(), seed).unwrap();
            mon.add_target(id);
            let t0 = Instant::now();
            while mon.aggregations() < AGGRS as u64 {
                let o = mon.step(t0.elapsed().as_micros() as u64, ops.as_mut());
                assert!(o.gone.is_empty(), "the child is gone");
                if let Some(s) = o.snapshot {
                    record(&mut w, &s);
                }
                // A full sampling interval between prepare and check, as kdamond_fn.
                std::thread::sleep(Duration::from_micros(SAMPLE_US));
            }
        }
    }
    out
}

/// |estimate − truth| / truth in percent.
fn error_pct(est: u64, truth: u64) -> f64 {
    (est as f64 - truth as f64).abs() / (truth.max(1) as f64) * 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
fn lab_wss_zipf_side_by_side_with_kernel_damon() {
    let kernel =
        engine::lab_or_skip!("not in the madvd kernel lab (kernel DAMON is driven only there)");
    let st = engine::ops::OpsKind::Damon.status(&SysRoot::host());
    assert!(st.usable, "kernel DAMON on {kernel}: {:?}", st.why_not);
    let mut mons = vec![Mon::Damon, Mon::Probe];
    if page_idle_here(&kernel) {
        mons.insert(1, Mon::PageIdle);
    }
    let t0 = Instant::now();
    // errs[mon][run][aggregation], one monitor at a time on fresh children, same seeds.
    let mut errs: Vec<Vec<Vec<f64>>> = Vec::new();
    let mut truth_mib: Vec<f64> = Vec::new();
    for &mon in &mons {
        let mut per_run = Vec::new();
        for run_k in 0..RUNS {
            let got = run(mon, 100 + run_k);
            println!("{mon:?} run {run_k}: (estimate, truth) per aggregation {got:?}");
            let judged = &got[WARMUP..];
            truth_mib.extend(judged.iter().map(|g| g.1 as f64 / MIB as f64));
            per_run.push(judged.iter().map(|&(e, t)| error_pct(e, t)).collect());
        }
        errs.push(per_run);
    }
    // Per aggregation: the median over the runs of each monitor's error.
    println!(
        "\n| aggregation | {} |",
        mons.iter()
            .map(|m| format!("{m:?} error %"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(mons.len()));
    for k in 0..AGGRS - WARMUP {
        let row: Vec<String> = errs
            .iter()
            .map(|runs| format!("{:.1}", median(runs.iter().map(|r| r[k]).collect())))
            .collect();
        println!("| {} | {} |", k + WARMUP + 1, row.join(" | "));
    }
    // Per run: the median over its aggregations; then the median of the runs.
    let summary: Vec<f64> = errs
        .iter()
        .map(|runs| median(runs.iter().map(|r| median(r.clone())).collect()))
        .collect();
    let per_run: Vec<String> = errs
        .iter()
        .map(|runs| {
            runs.iter()
                .map(|r| format!("{:.1}", median(r.clone())))
                .collect::<Vec<_>>()
                .join(" / ")
        })
        .collect();
    println!(
        "| median (runs: {}) | {} |",
        per_run.join("; "),
        summary
            .iter()
            .map(|e| format!("{e:.1}"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!(
        "kernel {kernel}; truth per aggregation {:.2} MiB median; {:.0} s in all",
        median(truth_mib),
        t0.elapsed().as_secs_f64()
    );
    let damon = summary[0];
    for (mon, e) in mons.iter().zip(&summary).skip(1) {
        assert!(
            *e <= damon + 5.0,
            "{mon:?}: median WSS error {e:.1}% vs kernel DAMON {damon:.1}%"
        );
    }
}
