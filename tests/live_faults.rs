//! Fault tests for live targets: the target exits mid-sample, its pid is reused, a monitored
//! range is unmapped mid-run, and madvd runs as a user without the rights it needs. Each must
//! end in a clear error or a clean drop, never a panic, and never touch another process.

use engine::access::{Access, AccessCheck, AccessError, SampleReq};
use engine::kernel::pagemap::Pagemap;
use engine::ops::probe::{Probe, ProbeConfig};
use engine::process::{Process, ProcessError};
use engine::{AddrRange, SysRoot, TargetId};
use madvd_workload::Client as Workload;
use madvd_workload::WorkloadSpec;
use std::time::Duration;

mod common;
use common::{exe, fixed_regions, open, spawn, unthrottled_probe as probe, PAGE};

fn small(size: u64) -> WorkloadSpec {
    WorkloadSpec {
        size,
        hot_fraction: 0.25,
        ..WorkloadSpec::default()
    }
}

/// One sample per `n` equal pieces of `m`, at each piece's start.
fn samples_over(m: AddrRange, n: u64) -> Vec<SampleReq> {
    fixed_regions(m, n)
        .into_iter()
        .map(|region| SampleReq {
            region,
            addr: region.start,
        })
        .collect()
}

/// The probe pages out: these tests need root and the swap fixture.
const SWAP: u64 = 256 << 20;

#[test]
fn target_exiting_mid_sample_is_reported_gone() {
    let _swap = engine::need_swap!(SWAP);
    let w = spawn(&small(32 << 20));
    let mut p = probe();
    let id = p.add_target(open(w.pid())).unwrap();
    p.target_ranges(id).unwrap();
    let mut s = samples_over(w.mapping(), 16);
    p.prepare(id, &mut s).unwrap();
    assert!(
        p.stats().requested == 16 && p.cost().probe_pageouts > 0,
        "{:?}",
        p.stats()
    );
    w.kill(); // exits (and is reaped) between prepare and check
    let mut out = vec![Access::Unknown; s.len()];
    assert!(matches!(p.check(id, &s, &mut out), Err(AccessError::TargetGone(t)) if t == id));
    assert!(matches!(
        p.prepare(id, &mut s),
        Err(AccessError::TargetGone(_))
    ));
    assert!(matches!(
        p.target_ranges(id),
        Err(AccessError::TargetGone(_))
    ));
    let e = p.remove_target(id).unwrap().maps().unwrap_err();
    assert!(
        e.is_gone() && e.to_string().contains(&id.0.to_string()),
        "{e}"
    );
}

#[test]
fn target_exiting_unreaped_is_reported_gone() {
    // A zombie (exited, not reaped): its pid still exists, its mm does not.
    let _swap = engine::need_swap!(SWAP);
    let w = spawn(&small(16 << 20));
    let pid = w.pid();
    let mut p = probe();
    let id = p.add_target(open(pid)).unwrap();
    p.target_ranges(id).unwrap();
    let mut s = samples_over(w.mapping(), 8);
    p.prepare(id, &mut s).unwrap();
    // SAFETY: kill(2) on our own child; it stays a zombie until the Workload reaps it.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_millis(100));
    let mut out = vec![Access::Unknown; s.len()];
    assert!(matches!(
        p.check(id, &s, &mut out),
        Err(AccessError::TargetGone(_))
    ));
    assert!(matches!(
        p.target_ranges(id),
        Err(AccessError::TargetGone(_))
    ));
    let e = Process::open(&SysRoot::host(), pid, false).unwrap_err();
    assert!(e.is_gone(), "{e}");
    drop(w);
}

/// Make a workload whose pid is `pid`: set `ns_last_pid` to pid-1, then fork. Other
/// processes on the machine may take the pid first: retry.
fn spawn_with_pid(pid: u32, spec: &WorkloadSpec) -> Option<Workload> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let w = Workload::spawn(exe(), spec).ok()?;
        if w.pid() == pid {
            return Some(w);
        }
        w.kill();
    }
    None
}

#[test]
fn reused_pid_is_never_read_or_advised() {
    let _swap = engine::need_swap!(SWAP);
    let a = spawn(&small(16 << 20));
    let pid = a.pid();
    let mut p = probe();
    let id = p.add_target(open(pid)).unwrap();
    let old_ranges = p.target_ranges(id).unwrap();
    let mut s = samples_over(a.mapping(), 8);
    p.prepare(id, &mut s).unwrap();
    a.kill();
    let spec_b = WorkloadSpec {
        size: 64 << 20,
        seed: 99,
        ..small(64 << 20)
    };
    let Some(b) = spawn_with_pid(pid, &spec_b) else {
        engine::skip!(
            "could not get pid {pid} again through ns_last_pid (the machine is too busy)"
        );
    };
    assert_eq!(b.pid(), pid);
    // B's memory as it was: all present, nothing swapped.
    let mut pm = Pagemap::open(&SysRoot::host().pid_file(pid, "pagemap"), PAGE).unwrap();
    let pages = (b.mapping().len() / PAGE) as usize;
    let mut before = Vec::new();
    pm.read(b.mapping().start, pages, &mut before).unwrap();
    assert!(before.iter().all(|e| e.present() && !e.swapped()));
    // Everything through the old target says gone; nothing of B comes back.
    let mut out = vec![Access::Unknown; s.len()];
    assert!(matches!(
        p.check(id, &s, &mut out),
        Err(AccessError::TargetGone(_))
    ));
    assert!(out.iter().all(|a| *a == Access::Unknown));
    assert!(matches!(
        p.target_ranges(id),
        Err(AccessError::TargetGone(_))
    ));
    // Samples inside B's mapping, same pid: the probe must not page any of them out.
    let mut sb = samples_over(b.mapping(), 64);
    assert!(matches!(
        p.prepare(id, &mut sb),
        Err(AccessError::TargetGone(_))
    ));
    let proc = p.remove_target(id).unwrap();
    assert!(!proc.is_alive());
    assert!(proc.maps().unwrap_err().is_gone());
    assert!(proc.status().unwrap_err().is_gone());
    assert!(
        matches!(proc.clear_refs(engine::kernel::clear_refs::ClearRefs::All), Err(e) if e.is_gone())
    );
    // The old pidfd refuses advice outright (ESRCH), whatever the addresses.
    let r = engine::kernel::madvise::process_madvise(
        std::os::fd::AsFd::as_fd(proc.pidfd()),
        &[AddrRange::new(b.mapping().start, b.mapping().start + PAGE)],
        engine::Advice::Pageout,
    );
    assert_eq!(r, Err(nix::errno::Errno::ESRCH));
    // And the old pagemap (bound to A's mm) reads nothing.
    let mut old = Vec::new();
    let mut proc = proc;
    proc.pagemap()
        .read(b.mapping().start, 16, &mut old)
        .unwrap();
    assert!(old.is_empty(), "the old pagemap read {} entries", old.len());
    // Proof that nothing touched B: every page still present, none swapped, VmSwap 0.
    let mut after = Vec::new();
    pm.read(b.mapping().start, pages, &mut after).unwrap();
    assert!(
        after.iter().all(|e| e.present() && !e.swapped()),
        "a page of the new process was paged out"
    );
    let st = engine::kernel::status::read_status(&SysRoot::host().pid_file(pid, "status")).unwrap();
    assert_eq!(st.vm_swap, Some(0));
    let _ = old_ranges;
}

#[test]
fn unmapped_range_mid_sample_is_unknown_then_gone_from_ranges() {
    let _swap = engine::need_swap!(SWAP);
    let mut w = spawn(&WorkloadSpec {
        size: 64 << 20,
        hot_fraction: 0.1,
        ..WorkloadSpec::default()
    });
    let mut p = probe();
    let id: TargetId = p.add_target(open(w.pid())).unwrap();
    let m = w.mapping();
    p.target_ranges(id).unwrap();
    // Samples in the cold upper half; unmap it between prepare and check.
    let half = AddrRange::new(m.start + m.len() / 2, m.end);
    let mut s = samples_over(half, 16);
    p.prepare(id, &mut s).unwrap();
    let gone = w.unmap(m.len() / 2, m.len() / 2).unwrap();
    assert_eq!(gone, half);
    let mut out = vec![Access::Accessed; s.len()];
    p.check(id, &s, &mut out).unwrap();
    assert!(out.iter().all(|a| *a == Access::Unknown), "{out:?}");
    // Prepared again before the VMAs are re-read: the hole has no page at prepare and none at
    // check, which residency answers as the kernel's `damon_va_young` does for a hole (no
    // PTE: not accessed) — and nothing is paged out there.
    let before = p.stats();
    let mut s = samples_over(half, 16);
    p.prepare(id, &mut s).unwrap();
    p.check(id, &s, &mut out).unwrap();
    assert!(out.iter().all(|a| *a == Access::NotAccessed), "{out:?}");
    let after = p.stats();
    assert_eq!(after.absent - before.absent, 16, "{after:?}");
    assert_eq!(after.pageout_failed, before.pageout_failed, "{after:?}");
    // Re-read: the hole is gone from the target's ranges.
    let ranges = p.target_ranges(id).unwrap();
    assert!(ranges.iter().all(|r| !r.intersects(&half)), "{ranges:?}");
    assert!(ranges.iter().any(|r| r.contains(m.start)));
}

/// Run as `nobody` by `eperm_as_a_user_without_rights`: not a test on its own.
#[test]
#[ignore = "helper: run as another user by eperm_as_a_user_without_rights"]
fn eperm_helper() {
    let root_pid: u32 = std::env::var("MADVD_EPERM_ROOT_PID")
        .unwrap()
        .parse()
        .unwrap();
    let own_pid: u32 = std::env::var("MADVD_EPERM_OWN_PID")
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        nix::unistd::geteuid().as_raw(),
        0,
        "helper must not run as root"
    );
    // A root process: its pagemap cannot be opened.
    let e = Process::open(&SysRoot::host(), root_pid, false).unwrap_err();
    assert!(e.is_permission(), "{e}");
    assert!(
        e.to_string().contains(&format!("pid {root_pid}"))
            && e.to_string().contains("permission denied"),
        "{e}"
    );
    // A process of our own user: readable, but remote page-out needs CAP_SYS_NICE.
    let proc = Process::open(&SysRoot::host(), own_pid, false).unwrap();
    let vmas = proc.maps().unwrap();
    let mut p = Probe::new(
        SysRoot::host(),
        ProbeConfig {
            max_samples_per_sec: None,
            max_pageouts_per_sec: None,
            window_pages: 4096,
            ..ProbeConfig::default()
        },
    );
    let id = p.add_target(proc).unwrap();
    p.target_ranges(id).unwrap();
    let mut s: Vec<SampleReq> = vmas
        .iter()
        .filter(|v| v.is_private_anonymous())
        .map(|v| SampleReq {
            region: v.range,
            addr: v.range.start,
        })
        .collect();
    assert!(!s.is_empty());
    let e = p.prepare(id, &mut s).unwrap_err();
    assert!(
        matches!(&e, AccessError::Permission { target, what } if *target == id && what.contains("CAP_SYS_NICE")),
        "{e}"
    );
    eprintln!("as nobody: {e}");
    // Detection says why the probe is not usable for this user.
    let st = engine::ops::OpsKind::Probe.status(&SysRoot::host());
    assert!(
        !st.usable && st.why_not.as_deref().unwrap_or("").contains("CAP_SYS_NICE"),
        "{st:?}"
    );
    println!("EPERM-HELPER-OK");
}

#[test]
fn eperm_as_a_user_without_rights() {
    use std::os::unix::process::CommandExt;
    let _swap = engine::need_swap!(SWAP);
    // The nobody-owned target: a plain `sleep`.
    let mut target = std::process::Command::new("sleep")
        .arg("60")
        .uid(65534)
        .gid(65534)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "eperm_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MADVD_EPERM_ROOT_PID", std::process::id().to_string())
        .env("MADVD_EPERM_OWN_PID", target.id().to_string())
        .env("MADVD_SKIP_LOG", "/dev/null")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let _ = target.kill();
    let _ = target.wait();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("EPERM-HELPER-OK"),
        "helper as nobody failed:\n{text}"
    );
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn process_errors_name_the_pid() {
    let e = Process::open(&SysRoot::host(), 1, false).unwrap_err();
    assert!(matches!(e, ProcessError::Init));
    assert!(e.to_string().starts_with("pid 1:"));
}

/// Drive `mon` with `probe` in real time until `until` returns true or `max_steps` pass.
fn run_monitor(
    mon: &mut engine::monitor::Monitor,
    probe: &mut Probe,
    clock: std::time::Instant,
    max_steps: usize,
    mut until: impl FnMut(&engine::monitor::StepOutput) -> bool,
) -> bool {
    for _ in 0..max_steps {
        let out = mon.step(clock.elapsed().as_micros() as u64, probe);
        if until(&out) {
            return true;
        }
        let next = mon.next_step_at_us();
        std::thread::sleep(Duration::from_micros(
            next.saturating_sub(clock.elapsed().as_micros() as u64),
        ));
    }
    false
}

fn fast_attrs() -> engine::Attrs {
    engine::Attrs {
        sample_us: 20_000,
        aggr_us: 200_000,
        ops_update_us: 400_000,
        ..engine::Attrs::default()
    }
}

#[test]
fn monitor_drops_a_target_that_exits_mid_run() {
    let _swap = engine::need_swap!(SWAP);
    let w = spawn(&small(32 << 20));
    let mut p = probe();
    let id = p.add_target(open(w.pid())).unwrap();
    let mut mon = engine::monitor::Monitor::new(fast_attrs(), 5).unwrap();
    mon.add_target(id);
    let clock = std::time::Instant::now();
    run_monitor(&mut mon, &mut p, clock, 30, |_| false);
    assert!(mon.aggregations() >= 2 && p.cost().probe_pageouts > 0);
    w.kill();
    let mut gone = Vec::new();
    let dropped = run_monitor(&mut mon, &mut p, clock, 3, |out| {
        gone.extend_from_slice(&out.gone);
        !out.gone.is_empty()
    });
    assert!(dropped, "the exited target was not dropped within 3 steps");
    assert_eq!(gone, vec![id]);
    assert!(mon.target_ids().is_empty() && mon.regions(id).is_none());
    // Further steps are harmless.
    run_monitor(&mut mon, &mut p, clock, 2, |out| {
        assert!(out.gone.is_empty());
        false
    });
}

/// munmap of a monitored range mid-run. DAMON's vaddr semantics (the three regions of
/// `__damon_va_three_regions`, mm/damon/vaddr.c 6.12) keep a hole smaller than the two
/// biggest gaps inside the monitoring ranges, so "reconciled" means: after the update interval
/// the regions cover exactly the three regions of the fresh maps (nothing outside them,
/// nothing missing); the probe's samples inside the hole are Unknown, never errors, and no
/// region inside it is found accessed.
#[test]
fn monitor_reconciles_regions_after_munmap() {
    let _swap = engine::need_swap!(SWAP);
    let mut w = spawn(&WorkloadSpec {
        size: 64 << 20,
        hot_fraction: 0.1,
        ..WorkloadSpec::default()
    });
    let m = w.mapping();
    let mut p = probe();
    let id = p.add_target(open(w.pid())).unwrap();
    let mut mon = engine::monitor::Monitor::new(fast_attrs(), 9).unwrap();
    mon.add_target(id);
    let clock = std::time::Instant::now();
    run_monitor(&mut mon, &mut p, clock, 40, |_| false);
    let half = AddrRange::new(m.start + m.len() / 2, m.end);
    assert!(mon
        .regions(id)
        .unwrap()
        .iter()
        .any(|r| r.ar.intersects(&half)));
    assert_eq!(w.unmap(m.len() / 2, m.len() / 2).unwrap(), half);
    // Past an update interval (400 ms = 20 steps).
    run_monitor(&mut mon, &mut p, clock, 25, |out| {
        assert!(out.gone.is_empty());
        false
    });
    let fresh = engine::monitor::monitoring_ranges(&p.target_ranges(id).unwrap(), 4096);
    assert_eq!(
        mon.ranges(id).unwrap(),
        fresh.as_slice(),
        "ranges not reconciled with the fresh maps"
    );
    let regions = mon.regions(id).unwrap();
    assert!(regions.windows(2).all(|x| x[0].end() <= x[1].start()));
    // Regions cover exactly the ranges: none outside, none missing.
    let covered: u64 = regions.iter().map(|r| r.size()).sum();
    assert_eq!(covered, fresh.iter().map(|r| r.len()).sum::<u64>());
    for r in regions {
        assert!(
            fresh
                .iter()
                .any(|f| f.start <= r.start() && r.end() <= f.end),
            "stale region {} outside {fresh:?}",
            r.ar
        );
    }
    // The hole's regions were never found accessed after the unmap.
    assert!(regions
        .iter()
        .filter(|r| half.start <= r.start() && r.end() <= half.end)
        .all(|r| r.nr_accesses == 0));
}
