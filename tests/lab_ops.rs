//! Page-level access checks on a real kernel: page_idle, soft-dirty and kernel DAMON (issue
//! #6), run inside the madvd kernel lab (`shared/lab`, Linux 6.12 under qemu) by
//! `tests/lab-run`, on both lab kernels (`lab`: everything; `debian`: no page_idle).
//!
//! Outside the lab every test skips loudly (this host's kernel has none of these, and its
//! `/sys/kernel/mm/damon` belongs to the machine). Inside the lab a missing feature is a
//! failure, except page_idle on `debian`, which must report itself unusable with its reason.
//!
//! The target is a workload child (`madvd workload`) with one private anonymous mapping
//! (`MADV_NOHUGEPAGE`: THP is `always` in the lab) whose contiguous hot 10% is touched in a
//! loop and whose cold 90% is never touched after the first touch.
//!
//! Run by hand: `tests/lab-run` (both kernels), or one test:
//! `tests/lab-run --kernel lab -- lab_page_idle_finds_hot_and_cold`.

use engine::access::AccessCheck;
use engine::kernel::damon_sysfs::{
    fake::FakeDamonSysfs, DamonSysfs, DamonSysfsError, Logged, RealSysfs, SysfsAttrs, ADMIN_REL,
};
use engine::monitor::Monitor;
use engine::ops::damon::KernelDamon;
use engine::ops::page_idle::PageIdle;
use engine::ops::soft_dirty::SoftDirty;
use engine::{AddrRange, Attrs, Snapshot, SysRoot, TargetId};
use madvd_workload::Client as Workload;
use madvd_workload::WorkloadSpec;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::lab_cgroup::{monitor_cpu, pin};
use common::{exe, fixed_regions, open, spawn, unthrottled_probe, Sampler, Tally, MIB};

/// The hot/cold child: `size` bytes, hot 10% starting at 25% of the mapping (sizes are
/// chosen so the hot range starts and ends on the fixed region grids below), sharing one
/// vCPU with the test thread (see [`co_schedule`]).
fn spawn_child(size: u64, write_fraction: f64, seed: u64) -> Workload {
    spawn_child_thp(size, write_fraction, seed, false)
}

/// As [`spawn_child`]; `thp`: leave the mapping to THP (`always` in the lab) instead of
/// `MADV_NOHUGEPAGE`.
fn spawn_child_thp(size: u64, write_fraction: f64, seed: u64, thp: bool) -> Workload {
    let spec = WorkloadSpec {
        size,
        hot_fraction: 0.10,
        hot_offset: 0.25,
        write_fraction,
        nohugepage: !thp,
        seed,
        ..Default::default()
    };
    let w = spawn(&spec);
    assert_eq!(w.mapping().len(), size);
    co_schedule(w.pid());
    w
}

/// Pin the child's threads to vCPU 0 and keep a "TLB churn" thread of ours on vCPU 0 that
/// wakes every millisecond (SCHED_FIFO, so it preempts the child each time).
///
/// Why: x86 does not flush the TLB when it clears a PTE's Accessed bit (page_idle's and
/// kernel DAMON's mkold, `ptep_clear_young_notify`; arch/x86/mm/pgtable.c 6.12,
/// `ptep_clear_flush_young`: "clearing the accessed bit without a TLB flush doesn't cause
/// data corruption"), so an access through a cached translation does not set the bit again.
/// A real CPU's TLB is small and churns; QEMU's TCG soft-TLB is large and flushed only on a
/// CR3 reload, so a child spinning alone on a vCPU turned invisible to page_idle after a few
/// intervals (measured in the lab: 4/4 hot regions seen while the child shared vCPU 0 with
/// the test thread, 0/4 once alone on vCPU 1), and kernel DAMON saw no hot region at all
/// with the child pinned beside a mostly sleeping test thread. A thread of another process
/// waking on the child's vCPU every millisecond reloads CR3 and gives the TLB turnover a
/// real machine has. The refault probe (faults) and soft-dirty (its clear flushes) do not
/// depend on it. Its CPU time is not counted: costs are measured per thread.
fn co_schedule(pid: u32) {
    // The monitor (this test thread) goes to the other vCPU, as a daemon beside its target:
    // the same placement in every test and every run, so CPU figures compare.
    common::lab_cgroup::co_schedule(pid);
}

/// Each region of `s` with its verdict ([`verdict`]).
fn verdicts(s: &Sampler, min_known: u32) -> Vec<(AddrRange, Option<bool>)> {
    s.regions
        .iter()
        .zip(&s.tally)
        .map(|(r, t)| (*r, verdict(*t, min_known)))
        .collect()
}

/// Hot / cold / unknown verdict of a tally: hot when at least half the known answers say
/// accessed. A region with fewer than `min_known` answers has no verdict.
fn verdict(t: Tally, min_known: u32) -> Option<bool> {
    (t.known >= min_known.max(1)).then_some(t.accessed * 2 >= t.known)
}

/// Share of the hot bytes inside regions judged hot, and of the cold bytes (the mapping
/// minus the hot range) inside regions judged cold. Regions without a verdict count for
/// neither.
fn found(regions: &[(AddrRange, Option<bool>)], mapping: AddrRange, hot: AddrRange) -> (f64, f64) {
    let ov = |a: &AddrRange, b: &AddrRange| a.intersection(b).map_or(0, |r| r.len());
    let (mut hot_hot, mut cold_cold) = (0u64, 0u64);
    for (r, v) in regions {
        let h = ov(r, &hot);
        let c = ov(r, &mapping) - h;
        match v {
            Some(true) => hot_hot += h,
            Some(false) => cold_cold += c,
            None => {}
        }
    }
    (
        hot_hot as f64 / hot.len() as f64,
        cold_cold as f64 / (mapping.len() - hot.len()) as f64,
    )
}

/// Regions of a snapshot's target with a verdict: hot when `nr_accesses` is at least half
/// the samples of an aggregation.
fn snapshot_verdicts(s: &Snapshot, id: TargetId) -> Vec<(AddrRange, Option<bool>)> {
    let max = s.max_nr_accesses();
    let t = s
        .targets
        .iter()
        .find(|t| t.target == id)
        .expect("target in snapshot");
    t.regions
        .iter()
        .map(|r| (r.ar, Some(r.nr_accesses * 2 >= max)))
        .collect()
}

#[test]
fn lab_page_idle_finds_hot_and_cold() {
    let kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (tests/lab-run runs this on a 6.12 kernel with page_idle)"
    );
    let root = SysRoot::host();
    let st = engine::ops::OpsKind::PageIdle.status(&root);
    println!("page_idle status on {kernel}: {st:?}");
    if kernel == "debian" {
        assert!(!st.usable, "Debian ships CONFIG_IDLE_PAGE_TRACKING off");
        let why = st.why_not.unwrap();
        assert!(why.contains("CONFIG_IDLE_PAGE_TRACKING is off"), "{why}");
        return;
    }
    assert!(
        st.usable,
        "page_idle must be usable on the lab kernel: {:?}",
        st.why_not
    );
    // The whole pipeline: the monitoring core (DAMON's adaptive regions) sampling through
    // page_idle, as `madvd` runs it.
    let mut w = spawn_child(40 * MIB, 0.0, 1);
    let (mapping, hot) = (w.mapping(), w.hot());
    let mut ops = PageIdle::new(&root).unwrap();
    let id = ops.add_target(open(w.pid())).unwrap();
    let attrs = Attrs {
        sample_us: 20_000,
        aggr_us: 200_000,
        ops_update_us: 5_000_000,
        min_nr_regions: 20, // as the kernel DAMON test, for the same reason
        ..Attrs::default()
    };
    let mut mon = Monitor::new(attrs, 7).unwrap();
    mon.add_target(id);
    // One run of a fixed length, judged once at its end (no "until it passes"): DAMON's
    // adaptive regions need aggregations to split the hot range out. Measured in the lab
    // (2026-12-05): after 15 aggregations a region straddling the hot range's edge still
    // hid 32% of the hot bytes, so the run is 40 aggregations (8 s), the bound the test used
    // to retry within, and the bar (≥ 90% of hot and of cold bytes) must hold at the last.
    const AGGRS: u64 = 40;
    let t0 = Instant::now();
    let mut last = None;
    while mon.aggregations() < AGGRS {
        let out = mon.step(t0.elapsed().as_micros() as u64, &mut ops);
        assert!(out.gone.is_empty(), "the child is gone");
        if let Some(s) = out.snapshot {
            let v = snapshot_verdicts(&s, id);
            let (h, c) = found(&v, mapping, hot);
            println!(
                "page_idle + monitor aggregation {} ({} regions, {:.1}s): hot found {:.1}%, cold found {:.1}%",
                s.aggregation,
                v.len(),
                t0.elapsed().as_secs_f64(),
                h * 100.0,
                c * 100.0
            );
            last = Some((h, c, s));
        }
        // A full sampling interval between prepare and check, as kdamond_fn does
        // (mm/damon/core.c 6.12: prepare_access_checks; kdamond_usleep(sample_interval);
        // check_accesses). Sleeping only until `next_step_at_us` would shrink that window
        // to nothing whenever a step takes longer than the interval (it does under TCG),
        // and every page would look idle.
        std::thread::sleep(Duration::from_micros(attrs.sample_us));
    }
    let (h, c, s) = last.expect("at least one aggregation");
    print_regions(&s, id, mapping, hot);
    println!("page_idle stats {:?}", ops.stats());
    assert!(
        h >= 0.90 && c >= 0.90,
        "page_idle after {} aggregations: hot {h:.3}, cold {c:.3}",
        s.aggregation
    );
    assert_eq!(w.verify().unwrap().bad_pages, 0);
}

/// The snapshot's regions that overlap the child's mapping.
fn print_regions(s: &Snapshot, id: TargetId, mapping: AddrRange, hot: AddrRange) {
    let t = s
        .targets
        .iter()
        .find(|t| t.target == id)
        .expect("target in snapshot");
    for r in t.regions.iter().filter(|r| r.ar.intersects(&mapping)) {
        println!(
            "  region {} ({} KiB): nr_accesses {} age {} (hot overlap {} KiB)",
            r.ar,
            r.size() >> 10,
            r.nr_accesses,
            r.age,
            r.ar.intersection(&hot).map_or(0, |x| x.len()) >> 10
        );
    }
}

#[test]
fn lab_kernel_damon_finds_hot_and_cold() {
    let kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (kernel DAMON is driven for real only there)"
    );
    let root = SysRoot::host();
    let st = engine::ops::OpsKind::Damon.status(&root);
    assert!(
        st.usable,
        "kernel DAMON must be usable on {kernel}: {:?}",
        st.why_not
    );
    let w = spawn_child(40 * MIB, 0.0, 2);
    let (mapping, hot) = (w.mapping(), w.hot());
    let id = TargetId(w.pid());
    let attrs = Attrs {
        sample_us: 10_000,
        aggr_us: 200_000,
        ops_update_us: 5_000_000,
        // 20 regions at least (the kernel default is 10): the size limit is then a 20th of
        // the child's ~90 MiB monitored span, near the 4 MiB hot range, which is resolved
        // within a few aggregations instead of waiting for many random splits.
        min_nr_regions: 20,
        ..Attrs::default()
    };
    let mut kd = KernelDamon::start(&root, &[id], attrs).unwrap();
    // A bounded number of aggregations: the verdict must hold by the last of them.
    let max_snapshots = 40;
    let t0 = Instant::now();
    let mut last = None;
    for k in 1..=max_snapshots {
        let s = kd
            .next_snapshot()
            .unwrap()
            .expect("kdamond runs while the child lives");
        let v = snapshot_verdicts(&s, id);
        let (h, c) = found(&v, mapping, hot);
        println!(
            "kernel DAMON snapshot {k} ({} regions, {:.1}s): hot found {:.1}%, cold found {:.1}%",
            v.len(),
            t0.elapsed().as_secs_f64(),
            h * 100.0,
            c * 100.0
        );
        last = Some((h, c, s));
        if k >= 10 && h >= 0.9 && c >= 0.9 {
            break;
        }
    }
    let (h, c, s) = last.unwrap();
    print_regions(&s, id, mapping, hot);
    assert!(
        h >= 0.90 && c >= 0.90,
        "kernel DAMON after {} snapshots: hot {h:.3} cold {c:.3}: {s:?}",
        s.aggregation
    );
    kd.stop().unwrap();
    let nr =
        std::fs::read_to_string(root.sys_file(ADMIN_REL).join("kdamonds/nr_kdamonds")).unwrap();
    assert_eq!(nr.trim(), "0", "the driver removed its kdamond");
}

#[test]
fn lab_soft_dirty_finds_a_written_hot_set() {
    let kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (this host's kernel has no CONFIG_MEM_SOFT_DIRTY)"
    );
    let st = engine::ops::OpsKind::SoftDirty.status(&SysRoot::host());
    println!("soft_dirty status on {kernel}: {st:?}");
    assert!(
        st.usable,
        "soft-dirty must be usable on {kernel}: {:?}",
        st.why_not
    );
    assert!(st.description.contains("WRITES ONLY"));
    // Hot accesses all write: the written hot set is found.
    let (written, _) = soft_dirty_run(1.0, 3);
    let (h, c) = written;
    println!(
        "soft_dirty (writing child): written hot found {:.1}%, cold found {:.1}%",
        h * 100.0,
        c * 100.0
    );
    assert!(
        h >= 0.90 && c >= 0.90,
        "soft-dirty on a writing child: hot {h:.3} cold {c:.3}"
    );
    // Hot accesses only read: soft-dirty sees nothing (writes only, as it says).
    let ((h, c), _) = soft_dirty_run(0.0, 4);
    println!(
        "soft_dirty (reading child): read hot found hot {:.1}%, cold found cold {:.1}%",
        h * 100.0,
        c * 100.0
    );
    assert!(
        h <= 0.10 && c >= 0.90,
        "soft-dirty must not see reads: hot {h:.3} cold {c:.3}"
    );
}

fn soft_dirty_run(write_fraction: f64, seed: u64) -> ((f64, f64), Vec<Tally>) {
    let mut w = spawn_child(20 * MIB, write_fraction, seed);
    let (mapping, hot) = (w.mapping(), w.hot());
    w.mark().unwrap();
    let mut ops = SoftDirty::new();
    let id = ops.add_target(open(w.pid())).unwrap();
    ops.target_ranges(id).unwrap();
    let mut s = Sampler::new(fixed_regions(mapping, 40), seed);
    // The debug-built child rewrites whole pages: a few thousand page writes per second
    // under TCG, so an interval must be long enough for most of the 512 hot pages to be
    // written in it (the child's own count is printed below).
    s.run(&mut ops, id, 8, Duration::from_millis(400));
    println!(
        "soft_dirty child (write_fraction {write_fraction}): {:?}",
        w.truth().unwrap()
    );
    (found(&verdicts(&s, 4), mapping, hot), s.tally)
}

/// page_idle ignores THP tail pages: on a child backed by transparent huge pages (THP is
/// `always` in the lab) the check tracks each sample through its folio's head and still
/// tells the hot 10% from the cold 90%.
#[test]
#[ignore = "TCG: huge-page Accessed bits stay clear on a quiet host (0% hot on 2026-11-25 and in the 2026-12-05 11:44 UTC lab run; 100%/100% in two other runs that day): an emulator property, not madvd's; run with --ignored"]
// One honest measurement (after a fixed, uncounted warm-up), never retried. It passed twice on
// 2026-12-05 and failed once the same day with 0% hot: whether TCG refills huge-page TLB
// entries (and so sets their Accessed bits) depends on the host's load. Until the lab has a
// way to force that, it is ignored rather than retried; see docs/performance.md.
fn lab_page_idle_through_thp_heads() {
    let kernel = engine::lab_or_skip!("not in the madvd kernel lab (page_idle exists only there)");
    if kernel == "debian" {
        return; // no page_idle: lab_page_idle_finds_hot_and_cold checks it says so
    }
    let root = SysRoot::host();
    let w = spawn_child_thp(40 * MIB, 0.0, 11, true);
    let (mapping, hot) = (w.mapping(), w.hot());
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", w.pid())).unwrap();
    let thp_kib: u64 = smaps
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    println!("THP child: AnonHugePages {thp_kib} kB");
    assert!(
        thp_kib >= 16 * 1024,
        "the lab's THP=always should back most of the mapping"
    );
    let mut ops = PageIdle::new(&root).unwrap();
    let id = ops.add_target(open(w.pid())).unwrap();
    ops.target_ranges(id).unwrap();
    let regions = fixed_regions(mapping, 40);
    // Warm-up, not counted and not judged: right after the child starts, its pages may not
    // be trackable yet (per-CPU LRU batches; under TCG, translations cached from before the
    // churn thread runs), which the first intervals can show as "all idle".
    Sampler::new(regions.clone(), 1233).run(&mut ops, id, 12, Duration::from_millis(50));
    // The measurement, once: 12 intervals; a region needs 6 definite answers for a verdict.
    let mut s = Sampler::new(regions, 1234);
    s.run(&mut ops, id, 12, Duration::from_millis(50));
    let (h, c) = found(&verdicts(&s, 6), mapping, hot);
    println!(
        "page_idle on THP: stats {:?}; hot found {:.1}%, cold found {:.1}%",
        ops.stats(),
        h * 100.0,
        c * 100.0
    );
    assert!(
        ops.stats().thp_tail > 0,
        "samples in huge pages go through their heads"
    );
    // A huge page straddling the hot range's edge is one folio: its cold part looks hot.
    assert!(
        h >= 0.90 && c >= 0.90,
        "page_idle on THP: hot {h:.3} cold {c:.3}"
    );
}

/// The refault probe and page_idle alternate interval by interval on the same child over
/// one fixed region set; their hot/cold verdicts must agree on ≥ 90% of the regions.
#[test]
fn lab_probe_and_page_idle_agree() {
    let kernel = engine::lab_or_skip!("not in the madvd kernel lab (page_idle exists only there)");
    if kernel == "debian" {
        let st = engine::ops::OpsKind::PageIdle.status(&SysRoot::host());
        assert!(!st.usable);
        println!(
            "probe vs page_idle: nothing to compare on debian (page_idle: {:?})",
            st.why_not
        );
        return;
    }
    let swap = std::fs::read_to_string("/proc/swaps").unwrap();
    assert!(
        swap.lines().count() >= 2,
        "the probe needs swap: run with --swap-zram ({swap})"
    );
    let root = SysRoot::host();
    let mut w = spawn_child(40 * MIB, 0.0, 5);
    let (mapping, hot) = (w.mapping(), w.hot());
    w.mark().unwrap();
    let mut pi = PageIdle::new(&root).unwrap();
    let id = pi.add_target(open(w.pid())).unwrap();
    let mut probe = unthrottled_probe();
    probe.add_target(open(w.pid())).unwrap();
    pi.target_ranges(id).unwrap();
    probe.target_ranges(id).unwrap();
    let regions = fixed_regions(mapping, 40);
    let (mut s_pi, mut s_pr) = (Sampler::new(regions.clone(), 77), Sampler::new(regions, 78));
    let rounds = 12;
    for _ in 0..rounds {
        s_pi.run(&mut pi, id, 1, Duration::from_millis(100));
        s_pr.run(&mut probe, id, 1, Duration::from_millis(100));
    }
    let (v_pi, v_pr) = (verdicts(&s_pi, rounds / 2), verdicts(&s_pr, rounds / 2));
    let (mut both, mut agree) = (0, 0);
    for ((_, a), (_, b)) in v_pi.iter().zip(&v_pr) {
        if let (Some(x), Some(y)) = (a, b) {
            both += 1;
            agree += (x == y) as u32;
        }
    }
    let (t_pi, t_pr) = (&s_pi.tally, &s_pr.tally);
    println!("child: {:?}", w.truth().unwrap());
    println!(
        "probe stats {:?}; page_idle stats {:?}",
        probe.stats(),
        pi.stats()
    );
    println!(
        "probe vs page_idle: {agree}/{both} of {} regions agree; page_idle found {:?}, probe found {:?}",
        v_pi.len(),
        found(&v_pi, mapping, hot),
        found(&v_pr, mapping, hot)
    );
    assert!(
        both as usize * 10 >= v_pi.len() * 9,
        "both gave a verdict on too few regions: {both}"
    );
    assert!(
        agree * 10 >= both * 9,
        "agreement {agree}/{both}: page_idle {t_pi:?} probe {t_pr:?}"
    );
}

/// The driver on the real 6.12 sysfs writes what it writes on the fake tree, in the same
/// order; the real tree it builds has the fake's layout; a second owner is refused as busy;
/// everything is removed at the end.
#[test]
fn lab_damon_sysfs_real_tree_matches_the_fake() {
    let kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (never write the host's /sys/kernel/mm/damon)"
    );
    let admin = SysRoot::host().sys_file(ADMIN_REL);
    let w = spawn_child(8 * MIB, 0.0, 6);
    let attrs = SysfsAttrs::from(&Attrs::default());
    let real = Logged::new(RealSysfs, &admin);
    let real_log = real.log();
    let d = DamonSysfs::start(Box::new(real), &admin, &[w.pid()], attrs).unwrap();
    // The layout the driver built, against the fake's after the same start.
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeDamonSysfs::new(dir.path()).unwrap();
    let fd = DamonSysfs::start(Box::new(fake.clone()), fake.admin(), &[w.pid()], attrs).unwrap();
    assert_eq!(
        *real_log.lock().unwrap(),
        fake.writes(),
        "same writes, same order on {kernel}"
    );
    let mut real_files = Vec::new();
    walk(&admin, &admin, &mut real_files);
    real_files.sort();
    assert_eq!(
        real_files,
        fake.files(),
        "the fake tree is laid out like {kernel}'s"
    );
    // A second owner finds it busy and touches nothing.
    let e = DamonSysfs::start(Box::new(RealSysfs), &admin, &[w.pid()], attrs).unwrap_err();
    assert!(matches!(e, DamonSysfsError::InUse { .. }), "{e}");
    // EBUSY from the real kernel: nr_kdamonds while ours runs.
    let busy = std::fs::write(admin.join("kdamonds/nr_kdamonds"), "0").unwrap_err();
    assert_eq!(busy.raw_os_error(), Some(libc_ebusy()), "{busy}");
    d.stop().unwrap();
    fd.stop().unwrap();
    let mut after = Vec::new();
    walk(&admin, &admin, &mut after);
    assert_eq!(
        after,
        vec!["kdamonds/nr_kdamonds".to_string()],
        "everything created was removed"
    );
}

fn libc_ebusy() -> i32 {
    16 // EBUSY on Linux (asm-generic/errno-base.h)
}

fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(base, &p, out);
        } else {
            out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
        }
    }
}

/// CPU cost of each primitive on the same target, as ratios to the refault probe, measured
/// in one run (docs/performance.md "Access checks in the lab"). Same fixed region set, same
/// number of sampling intervals for the per-sample checks; kernel DAMON (the kdamond's own
/// CPU time) for the same wall time at the same sampling interval.
#[test]
fn lab_cpu_per_primitive() {
    let kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (page_idle, soft-dirty and kernel DAMON exist only there)"
    );
    let swap = std::fs::read_to_string("/proc/swaps").unwrap();
    assert!(
        swap.lines().count() >= 2,
        "the probe needs swap: run with --swap-zram"
    );
    let root = SysRoot::host();
    let w = spawn_child(40 * MIB, 0.1, 8);
    let id = TargetId(w.pid());
    let regions = fixed_regions(w.mapping(), 40);
    let intervals = 40u32;
    let wait = Duration::from_millis(20);
    // The monitor beside its target (another vCPU: every page-out's TLB shootdown is an
    // IPI to the target's vCPU) and on the target's own vCPU (no IPI; the two then share
    // one vCPU's time).
    for (placement, cpu) in [
        ("monitor on another vCPU than the target", 1),
        ("monitor on the target's vCPU", 0),
    ] {
        if cpu > monitor_cpu() {
            println!("CPU per primitive: one vCPU only, no \"{placement}\" placement");
            continue;
        }
        pin(0, cpu);
        let mut results: Vec<(&str, f64, f64)> = Vec::new(); // (name, cpu s, wall s)
        let mut run = |name: &'static str, ops: &mut dyn AccessCheck| {
            ops.target_ranges(id).unwrap();
            let mut s = Sampler::new(regions.clone(), 99);
            let (c0, t0) = (self_cpu(), Instant::now());
            s.run(ops, id, intervals, wait);
            results.push((name, self_cpu() - c0, t0.elapsed().as_secs_f64()));
        };
        let mut probe = unthrottled_probe();
        probe.add_target(open(w.pid())).unwrap();
        run("probe", &mut probe);
        if kernel == "lab" {
            let mut pi = PageIdle::new(&root).unwrap();
            pi.add_target(open(w.pid())).unwrap();
            run("page_idle", &mut pi);
        }
        let mut sd = SoftDirty::new();
        sd.add_target(open(w.pid())).unwrap();
        run("soft_dirty", &mut sd);
        // Kernel DAMON: the kdamond's own CPU time (it is not pinned) over 4 s of wall time,
        // sampling every 20 ms as the others.
        let attrs = Attrs {
            sample_us: 20_000,
            aggr_us: 400_000,
            ..Attrs::default()
        };
        let mut kd = KernelDamon::start(&root, &[id], attrs).unwrap();
        let kpid = kd.kdamond_pid().unwrap().expect("kdamond pid");
        let c0 = task_cpu(kpid);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(4));
        let kcpu = task_cpu(kpid) - c0;
        results.push(("damon (kdamond)", kcpu, t0.elapsed().as_secs_f64()));
        kd.stop().unwrap();
        let probe_rate = results[0].1 / results[0].2;
        println!(
            "CPU per primitive on {kernel}, {placement} (40 MiB child, 40 regions, {intervals} intervals of {} ms):",
            wait.as_millis()
        );
        println!("| primitive | CPU s | wall s | CPU/wall | ratio to probe |");
        println!("|---|---|---|---|---|");
        for (name, cpu, wall) in &results {
            println!(
                "| {name} | {cpu:.3} | {wall:.2} | {:.4} | {:.2} |",
                cpu / wall,
                (cpu / wall) / probe_rate
            );
        }
        assert!(results.iter().all(|r| r.1 >= 0.0 && r.2 > 0.0));
    }
    pin(0, monitor_cpu());
}

/// The calling thread's CPU seconds (user + system, CLOCK_THREAD_CPUTIME_ID): the
/// sampling work and the system calls it makes, not the churn thread's.
fn self_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A task's CPU seconds: /proc/PID/schedstat's on-CPU nanoseconds when the kernel has
/// schedstats, else utime + stime from /proc/PID/stat (USER_HZ = 100 ticks).
fn task_cpu(pid: u32) -> f64 {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/schedstat")) {
        if let Some(ns) = s
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return ns as f64 * 1e-9;
        }
    }
    stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}
fn stat_cpu(stat: &str) -> f64 {
    // Fields after the ")" that ends comm: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// `madvd monitor --pid PID --once --json --ops OPS` against the child (attributes for the
/// lab's emulated vCPUs: 20 ms sampling, 400 ms aggregation): exit status, stdout, stderr.
fn monitor_cli(pid: u32, ops: &str, json: bool) -> (Option<i32>, String, String) {
    let pid_s = pid.to_string();
    let mut args = vec![
        "monitor",
        "--pid",
        &pid_s,
        "--once",
        "--ops",
        ops,
        "--sample",
        "20ms",
        "--aggr",
        "1s",
        "--min-regions",
        "200",
        "--for",
        "60s",
    ];
    if json {
        args.push("--json");
    }
    let out = std::process::Command::new(exe())
        .args(&args)
        .output()
        .expect("run madvd monitor");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    println!(
        "madvd {} -> {:?}\nstdout: {o}\nstderr: {e}",
        args.join(" "),
        out.status.code()
    );
    (out.status.code(), o, e)
}

/// One `--once --json` view over the child: regions covering the child's mapping, a
/// non-zero WSS, and an accessed region over the child's hot range. One run, judged once.
/// 200 regions at least and a 1 s aggregation (50 samples per region): with DAMON's default
/// 10 regions over the child's ~1 GiB span and 400 ms (20 samples), one aggregation often
/// missed the 3.2 MiB hot range (measured with `tests/lab-run -- lab_cli`, both kernels:
/// page_idle and damon views had WSS 0 in 4 of 10, soft_dirty in 12 of 12 — under TCG each
/// write after `clear_refs` takes a write-protect fault, so few hot pages are re-dirtied
/// within one 20 ms interval). See [`co_schedule`] for the TCG TLB quirk.
fn assert_cli_view(w: &Workload, ops: &str) {
    let mapping = w.mapping();
    let (code, out, err) = monitor_cli(w.pid(), ops, true);
    assert_eq!(code, Some(0), "madvd monitor --ops {ops} failed: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON view");
    assert_eq!(v["ops"], ops);
    assert_eq!(v["pid"], w.pid());
    let regions = v["regions"].as_array().expect("regions");
    assert!(!regions.is_empty(), "no regions: {out}");
    let covered: u64 = regions
        .iter()
        .map(|r| {
            let (s, e) = (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap());
            e.min(mapping.end).saturating_sub(s.max(mapping.start))
        })
        .sum();
    assert_eq!(
        covered,
        mapping.len(),
        "the regions cover the child's mapping"
    );
    let wss = v["wss_bytes"].as_u64().unwrap();
    let hot = w.hot();
    let hot_seen = regions.iter().any(|r| {
        r["nr_accesses"].as_u64().unwrap() > 0
            && r["start"].as_u64().unwrap() < hot.end
            && hot.start < r["end"].as_u64().unwrap()
    });
    println!(
        "{ops}: {} regions, wss {wss}, an accessed region over the hot range: {hot_seen}",
        regions.len()
    );
    assert!(
        wss > 0 && hot_seen,
        "madvd monitor --ops {ops}: hot range not seen in one aggregation: {out}"
    );
}

#[test]
fn lab_cli_monitor_page_idle() {
    let kernel =
        engine::lab_or_skip!("not in the madvd kernel lab (this host's kernel has no page_idle)");
    let w = spawn_child(32 * MIB, 0.0, 11);
    if kernel == "debian" {
        // Forced but unusable: one clear line, exit 2.
        let (code, out, err) = monitor_cli(w.pid(), "page_idle", true);
        assert_eq!(code, Some(2), "forced page_idle on debian: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("page_idle") && err.contains("CONFIG_IDLE_PAGE_TRACKING"),
            "{err}"
        );
        return;
    }
    assert_cli_view(&w, "page_idle");
}

#[test]
fn lab_cli_monitor_kernel_damon() {
    let _kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (kernel DAMON is driven for real only there)"
    );
    let w = spawn_child(32 * MIB, 0.0, 12);
    assert_cli_view(&w, "damon");
    // madvd stopped its kdamond and removed its directories on the way out.
    let nr = std::fs::read_to_string(
        SysRoot::host()
            .sys_file(ADMIN_REL)
            .join("kdamonds/nr_kdamonds"),
    )
    .unwrap();
    assert_eq!(nr.trim(), "0", "madvd monitor --ops damon left its kdamond");
}

#[test]
fn lab_cli_monitor_soft_dirty() {
    let _kernel =
        engine::lab_or_skip!("not in the madvd kernel lab (this host's kernel has no soft-dirty)");
    let w = spawn_child(32 * MIB, 1.0, 13);
    assert_cli_view(&w, "soft_dirty");
    // The table says what the primitive cannot see.
    let (code, out, err) = monitor_cli(w.pid(), "soft_dirty", false);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ops soft_dirty (writes only)"), "{out}");
    assert!(err.contains("soft_dirty (writes only)"), "{err}");
}

/// `madvd run --ops damon`: the kernel's regions drive the schemes (a `stat` policy, so
/// nothing is advised), the feedback note is printed once, and the kdamond is gone after.
#[test]
fn lab_cli_run_kernel_damon() {
    let _kernel = engine::lab_or_skip!(
        "not in the madvd kernel lab (kernel DAMON is driven for real only there)"
    );
    let w = spawn_child(32 * MIB, 0.0, 14);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("busy.ron");
    std::fs::write(
        &policy,
        r#"(schemes: [(name: "busy", pattern: (accesses: (min: 1)), action: stat)])"#,
    )
    .unwrap();
    let pid = w.pid().to_string();
    let out = std::process::Command::new(exe())
        .args(["run", "--policy"])
        .arg(&policy)
        .args([
            "--pid",
            &pid,
            "--ops",
            "damon",
            "--sample",
            "20ms",
            "--aggr",
            "400ms",
            "--min-regions",
            "200",
            "--for",
            "4s",
            "--every",
            "1s",
            "--json",
        ])
        .output()
        .expect("run madvd run");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!(
        "madvd run --ops damon -> {:?}\nstdout: {o}\nstderr: {e}",
        out.status.code()
    );
    assert_eq!(out.status.code(), Some(0), "{e}");
    assert_eq!(
        e.matches("advice does not reset their age").count(),
        1,
        "the feedback note, once: {e}"
    );
    let last: serde_json::Value =
        serde_json::from_str(o.lines().last().expect("a final line")).unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(last["reason"], "duration");
    assert_eq!(last["ops"], "damon");
    assert!(last["snapshots"].as_u64().unwrap() >= 2, "{last}");
    assert!(last["rounds"].as_u64().unwrap() >= 1, "{last}");
    let busy = &last["schemes"][0];
    assert_eq!(busy["name"], "busy");
    assert!(
        busy["sz_tried"].as_u64().unwrap() > 0,
        "busy regions counted: {last}"
    );
    let nr = std::fs::read_to_string(
        SysRoot::host()
            .sys_file(ADMIN_REL)
            .join("kdamonds/nr_kdamonds"),
    )
    .unwrap();
    assert_eq!(nr.trim(), "0", "madvd run --ops damon left its kdamond");
}
