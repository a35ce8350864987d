//! The actuator against live processes and the real kernel: no data lost under repeated
//! advice, PAGEOUT really frees memory (VmSwap, MemAvailable, zram's mm_stat), and the fault
//! cases — target exiting mid-batch, range unmapped between snapshot and apply, pid reuse,
//! EPERM as a non-root user.
//!
//! Needs root (process_madvise of another process needs CAP_SYS_NICE) and, for the swap tests,
//! the machine-wide zram fixture (`engine::testkit::swap`). Runs on the host and in the kernel
//! lab (`in_madvd_lab()`: collapse there runs with THP `always`). Without them the tests skip
//! loudly.

use engine::actuator::{
    Actuator, ActuatorConfig, ActuatorSys, ApplyOpts, HostSys, SwapStat, Target,
};
use engine::kernel::pidfd::Pidfd;
use engine::testkit::{self, swap};
use engine::{AddrRange, Advice, AdviceRequest, ApplyErrorKind, ApplyReport, SysRoot, TargetId};
use madvd_workload::{Fill, Pattern, WorkloadSpec};
use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

mod common;
use common::{exe, spawn, spawn_sized, Rng, MIB as MB, PAGE as P};

fn req(pid: u32, r: AddrRange, advice: Advice) -> AdviceRequest {
    AdviceRequest {
        target: TargetId(pid),
        range: r,
        advice,
        scheme: 0,
    }
}

fn err(r: &ApplyReport, k: ApplyErrorKind) -> u64 {
    r.outcomes
        .iter()
        .flat_map(|o| o.errors.iter())
        .filter(|(e, _)| *e == k)
        .map(|(_, b)| b)
        .sum()
}

fn assert_accounted(r: &ApplyReport) {
    for o in &r.outcomes {
        let e: u64 = o.errors.iter().map(|(_, b)| b).sum();
        assert_eq!(o.bytes_applied + e, o.bytes_requested, "{o:?}");
    }
}

fn status_kb(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    field_kb(&s, key)
}

fn field_kb(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("{key} not found"))
}

fn meminfo_kb(key: &str) -> u64 {
    field_kb(&std::fs::read_to_string("/proc/meminfo").unwrap(), key)
}

/// Free pages held on the per-cpu page lists (`/proc/zoneinfo` pagesets `count:`), bytes.
/// Pages freed by reclaim land there first and are *not* in MemFree/MemAvailable until the
/// lists are drained; with the pcp high auto-tuning of Linux 6.7+ (mm/page_alloc.c
/// `nr_pcp_high`, `decay_pcp_high`) they can hold ~40k pages per cpu on a 24 GiB machine.
fn other_meminfo() -> Vec<(&'static str, i64)> {
    [
        "MemFree:",
        "Active(file):",
        "Inactive(file):",
        "KReclaimable:",
        "SUnreclaim:",
        "AnonPages:",
        "SwapCached:",
    ]
    .iter()
    .map(|k| (*k, meminfo_kb(k) as i64))
    .collect()
}

fn pcp_free_bytes() -> i64 {
    std::fs::read_to_string("/proc/zoneinfo")
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("count:")
                .and_then(|v| v.trim().parse::<i64>().ok())
        })
        .sum::<i64>()
        * P as i64
}

// --- no data lost ----------------------------------------------------------------------------

/// 1,000 rounds of pageout / cold / willneed / collapse over random ranges (some reaching
/// past the mapping into holes, some unaligned) while the workload keeps reading and writing
/// (a moving hot set, 30 % writes); the workload's `verify` checks every page's content after
/// refault every 100 rounds and at the end.
#[test]
fn no_data_lost_under_repeated_advice_with_zram_swap() {
    let guard = engine::need_swap!(256 * MB);
    let lab = testkit::in_madvd_lab();
    let size = if lab { 16 * MB } else { 64 * MB };
    let spec = WorkloadSpec {
        size,
        hot_fraction: 0.25,
        pattern: Pattern::Moving { period_ms: 20 },
        write_fraction: 0.3,
        // Huge pages allowed, so MADV_COLLAPSE has work to do (VM_NOHUGEPAGE would refuse it).
        nohugepage: false,
        seed: 7,
        ..Default::default()
    };
    let mut w = spawn(&spec);
    let pid = w.pid();
    let map = w.mapping();
    let pfd = Pidfd::open(pid).unwrap();
    let target = Target::new(&SysRoot::host(), &pfd, [map]);
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    let mut rng = Rng(0x5eed);
    let mut applied = [0u64; 4];
    let mut verified = 0;
    for round in 1..=1000 {
        let advice = Advice::ALL[rng.below(4) as usize];
        let n = 1 + rng.below(4);
        let reqs: Vec<AdviceRequest> = (0..n)
            .map(|_| {
                // Start anywhere from 1 MiB before the mapping; length up to 4 MiB; 1 in 8
                // not page-aligned.
                let start = map.start - MB + rng.below(map.len() + MB);
                let len = 1 + rng.below(4 * MB);
                let (s, e) = if rng.below(8) == 0 {
                    (start, start + len)
                } else {
                    (start & !(P - 1), (start + len) & !(P - 1))
                };
                req(pid, AddrRange::new(s, e.max(s + 1)), advice)
            })
            .collect();
        let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
        assert_accounted(&r);
        assert!(r.gone.is_empty(), "round {round}: {r:?}");
        assert_eq!(err(&r, ApplyErrorKind::Permission), 0);
        applied[Advice::ALL.iter().position(|a| *a == advice).unwrap()] += r.bytes_applied();
        if round % 100 == 0 {
            let v = w.verify().unwrap();
            assert_eq!(v.bad_pages, 0, "round {round}: {v:?}");
            assert_eq!(v.pages, map.len() / P);
            verified += 1;
        }
    }
    let swapped = status_kb(pid, "VmSwap:");
    eprintln!(
        "no_data_lost: 1000 rounds, {verified} full verifications OK; applied MiB: cold {} pageout {} willneed {} collapse {}; VmSwap now {swapped} kB; zram {:?}; actuator {:?}",
        applied[0] >> 20,
        applied[1] >> 20,
        applied[2] >> 20,
        applied[3] >> 20,
        guard.zram_mm_stat(),
        act.stats()
    );
    // The advice really did something: page-out moved pages to swap over the run.
    assert!(
        applied[1] > 0 && applied[0] > 0 && applied[2] > 0,
        "{applied:?}"
    );
    if applied[3] == 0 {
        eprintln!("no_data_lost: MADV_COLLAPSE applied nothing here (THP unavailable?); the lab run covers it");
    }
    w.kill();
}

// --- PAGEOUT really frees ---------------------------------------------------------------------

struct Freed {
    advised: u64,
    vm_swap_delta: u64,
    /// The target's anonymous resident memory change (RssAnon), bytes.
    rss_anon_delta: i64,
    avail_delta: i64,
    pcp_delta: i64,
    /// Free-memory change over an equal window without advice.
    noise: i64,
    window_ms: u64,
    /// Other /proc/meminfo deltas (KiB), for the record.
    other: Vec<(&'static str, i64)>,
    zram_orig_delta: i64,
    zram_compr_delta: i64,
    zram_used_delta: i64,
}

fn measure_pageout(fill: Fill, size: u64, guard: &swap::SwapGuard) -> Freed {
    let spec = WorkloadSpec {
        size,
        hot_fraction: 0.01,
        fill,
        seed: 11,
        ..Default::default()
    };
    let mut w = spawn(&spec);
    // Nothing may touch the pages while we measure.
    w.pause().unwrap();
    let pid = w.pid();
    let pfd = Pidfd::open(pid).unwrap();
    let target = Target::new(&SysRoot::host(), &pfd, w.mappings().iter().copied());
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    let reqs: Vec<AdviceRequest> = w
        .mappings()
        .iter()
        .map(|m| req(pid, *m, Advice::Pageout))
        .collect();
    let zram = |g: &swap::SwapGuard| {
        g.zram_mm_stat().map(|m| {
            (
                m.orig_data_size as i64,
                m.compr_data_size as i64,
                m.mem_used_total as i64,
            )
        })
    };
    let swap0 = status_kb(pid, "VmSwap:");
    let rss0 = status_kb(pid, "RssAnon:");
    let z0 = zram(guard).unwrap_or_default();
    let pcp0 = pcp_free_bytes();
    let avail0 = meminfo_kb("MemAvailable:");
    let other0 = other_meminfo();
    let t = std::time::Instant::now();
    let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
    let dt = t.elapsed();
    let avail1 = meminfo_kb("MemAvailable:");
    let other1 = other_meminfo();
    let pcp1 = pcp_free_bytes();
    let z1 = zram(guard).unwrap_or_default();
    let swap1 = status_kb(pid, "VmSwap:");
    let rss1 = status_kb(pid, "RssAnon:");
    // Control window of the same length with no advice: how much the rest of the machine
    // moved free memory meanwhile (printed next to the figures).
    let c0 = meminfo_kb("MemAvailable:") as i64 * 1024 + pcp_free_bytes();
    std::thread::sleep(dt);
    let c1 = meminfo_kb("MemAvailable:") as i64 * 1024 + pcp_free_bytes();
    assert_accounted(&r);
    assert_eq!(r.errors_by_kind(), vec![], "{r:?}");
    let v = w.verify().unwrap();
    assert_eq!(v.bad_pages, 0);
    w.kill();
    Freed {
        advised: r.bytes_applied(),
        vm_swap_delta: (swap1 - swap0) * 1024,
        rss_anon_delta: (rss1 as i64 - rss0 as i64) * 1024,
        avail_delta: (avail1 as i64 - avail0 as i64) * 1024,
        pcp_delta: pcp1 - pcp0,
        noise: c1 - c0,
        other: other0
            .iter()
            .zip(other1.iter())
            .map(|((k, a), (_, b))| (*k, b - a))
            .collect(),
        window_ms: dt.as_millis() as u64,
        zram_orig_delta: z1.0 - z0.0,
        zram_compr_delta: z1.1 - z0.1,
        zram_used_delta: z1.2 - z0.2,
    }
}

/// PAGEOUT of a 128 MiB anonymous workload (compressible, then random bytes), measured once:
/// the pages leave the process (RssAnon falls by the advised bytes, ± 10 %) into swap
/// (VmSwap grows by them), and zram holds them at its cost (`mm_stat`: orig grows by them;
/// compressible data costs zram less than half, random data ~all of it). So the memory freed
/// is the advised bytes minus zram's `mem_used_total` growth, from per-process and
/// per-device figures only.
///
/// MemAvailable (+ the per-cpu free lists, which it does not count until they drain) is
/// printed beside it but not asserted: it is machine-wide, and on a shared host it cannot be
/// measured honestly in one window (2026-12-05, 8 builds beside the test: +102 MiB for the
/// random case where 0 was expected, with the control window after it at -43 MiB). The test
/// used to retry up to 6 times and skip when every window was noisy; it now states only
/// what one measurement can show.
#[test]
fn pageout_really_frees_memory_compressible_and_random() {
    let guard = engine::need_swap!(512 * MB);
    if guard.zram_device().is_none() {
        engine::skip!("the machine already has a swap that is not our zram: zram mm_stat cannot be attributed");
    }
    let size = if testkit::in_madvd_lab() {
        32 * MB
    } else {
        128 * MB
    };
    for fill in [Fill::Pattern, Fill::Random] {
        let f = measure_pageout(fill, size, &guard);
        let expected_avail = f.advised as i64 - f.zram_used_delta;
        let tol = f.advised as i64 / 10;
        let swap_ok = (f.vm_swap_delta as i64 - f.advised as i64).abs() <= tol;
        let freed = f.avail_delta + f.pcp_delta;
        let avail_tol = tol + f.noise.abs();
        let avail_ok = (freed - expected_avail).abs() <= avail_tol;
        let rss_ok = (f.rss_anon_delta + f.advised as i64).abs() <= tol;
        eprintln!(
            "pageout_frees {fill:?}: advised {} KiB, RssAnon {:+} KiB, VmSwap +{} KiB, zram orig +{} KiB compr +{} KiB used +{} KiB (ratio {:.3}), MemAvailable {:+} KiB + per-cpu free lists {:+} KiB = {:+} KiB, expected {:+} KiB (advised - zram used) ± {} KiB (10% + control window {} ms: {:+} KiB): rss {} swap {} avail {} (not asserted)",
            f.advised >> 10,
            f.rss_anon_delta >> 10,
            f.vm_swap_delta >> 10,
            f.zram_orig_delta >> 10,
            f.zram_compr_delta >> 10,
            f.zram_used_delta >> 10,
            f.zram_compr_delta as f64 / f.zram_orig_delta.max(1) as f64,
            f.avail_delta >> 10,
            f.pcp_delta >> 10,
            freed >> 10,
            expected_avail >> 10,
            avail_tol >> 10,
            f.window_ms,
            f.noise >> 10,
            if rss_ok { "ok" } else { "OFF" },
            if swap_ok { "ok" } else { "OFF" },
            if avail_ok { "ok" } else { "OFF" },
        );
        eprintln!("    other meminfo deltas (KiB): {:?}", f.other);
        assert_eq!(f.advised, size, "the whole mapping was advised");
        // The pages left the process...
        assert!(
            rss_ok,
            "RssAnon moved {} for {} advised",
            f.rss_anon_delta, f.advised
        );
        // ...into swap. Both per process: no noise from the rest of the machine.
        assert!(
            swap_ok,
            "VmSwap grew {} for {} advised",
            f.vm_swap_delta, f.advised
        );
        // zram saw exactly these pages.
        assert!(
            (f.zram_orig_delta - f.advised as i64).abs() <= tol,
            "zram orig +{}",
            f.zram_orig_delta
        );
        match fill {
            // Compressible: zram holds a fraction, so most of the advised bytes are freed.
            Fill::Pattern => assert!(
                f.zram_used_delta < f.advised as i64 / 2,
                "zram used +{}",
                f.zram_used_delta
            ),
            // Random: zram saves little: it holds ~all of it, and little is freed.
            Fill::Random => assert!(
                f.zram_compr_delta > f.advised as i64 * 9 / 10,
                "zram compr +{}",
                f.zram_compr_delta
            ),
        }
    }
}

// --- fault tests ------------------------------------------------------------------------------

/// Wraps the host syscalls and runs `after_first` once after the first process_madvise call.
struct AfterFirstCall<F: FnMut()> {
    inner: HostSys,
    calls: usize,
    after_first: F,
    errors: Vec<Result<u64, Errno>>,
}

impl<F: FnMut()> ActuatorSys for AfterFirstCall<F> {
    fn process_madvise(
        &mut self,
        t: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        let r = self.inner.process_madvise(t, iov, advice);
        self.errors.push(r);
        self.calls += 1;
        if self.calls == 1 {
            (self.after_first)();
        }
        r
    }
    fn swap(&mut self) -> std::io::Result<SwapStat> {
        self.inner.swap()
    }
    fn now_ns(&mut self) -> u64 {
        self.inner.now_ns()
    }
}

fn kill_and_wait(pid: u32, reap: bool) {
    // SAFETY: kill(2) on a child pid of ours; no memory is passed.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut flags = nix::sys::wait::WaitPidFlag::WEXITED;
    if !reap {
        flags |= nix::sys::wait::WaitPidFlag::WNOWAIT;
    }
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
        flags,
    )
    .unwrap();
}

/// The target is killed after the first of three calls (3000 single-page requests): the first
/// call's pages are applied, the rest reported TargetGone, the target listed in `gone`, and
/// no further call is made for it — both while it is a zombie (its mm already gone) and once
/// it is reaped.
#[test]
fn target_exiting_mid_batch_is_reported_gone() {
    engine::need_root!("CAP_SYS_NICE for process_madvise");
    for reap in [false, true] {
        let w = spawn_sized(3000 * P);
        let pid = w.pid();
        let map = w.mapping();
        let pfd = Pidfd::open(pid).unwrap();
        let target = Target::new(&SysRoot::host(), &pfd, [map]);
        let sys = AfterFirstCall {
            inner: HostSys::new(SysRoot::host()),
            calls: 0,
            after_first: || kill_and_wait(pid, reap),
            errors: vec![],
        };
        let mut act = Actuator::with_sys(sys, ActuatorConfig::default());
        let reqs: Vec<AdviceRequest> = (0..3000)
            .map(|i| {
                req(
                    pid,
                    AddrRange::new(map.start + i * P, map.start + (i + 1) * P),
                    Advice::Cold,
                )
            })
            .collect();
        let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
        assert_accounted(&r);
        assert_eq!(r.bytes_applied(), 1024 * P, "reap={reap}");
        assert_eq!(err(&r, ApplyErrorKind::TargetGone), (3000 - 1024) * P);
        assert_eq!(r.gone, vec![TargetId(pid)]);
        assert_eq!(
            act.sys().errors,
            vec![Ok(1024 * P), Err(Errno::ESRCH)],
            "reap={reap}"
        );
        drop(w);
    }
}

/// The workload unmaps 256 KiB in the middle after the snapshot (its `Process::maps()`) was
/// taken: every other page is applied, and nothing is advised in the hole. Without the
/// residency cut the hole is reported Unmapped (the kernel's ENOMEM); with it (the default) the
/// pagemap read before the advice already shows no page there, so it is cut out and reported
/// NotResident.
#[test]
fn range_unmapped_between_snapshot_and_apply_is_reported_and_the_rest_applied() {
    engine::need_root!("CAP_SYS_NICE for process_madvise");
    for (resident_cut, kind) in [
        (false, ApplyErrorKind::Unmapped),
        (true, ApplyErrorKind::NotResident),
    ] {
        let mut w = spawn(&WorkloadSpec {
            size: 8 * MB,
            hot_fraction: 0.05,
            ..Default::default()
        });
        let pid = w.pid();
        let snap = w.mapping();
        // The snapshot: the process' VMAs as the monitor would have read them.
        let p = engine::process::Process::open(&SysRoot::host(), pid, false).unwrap();
        let vmas: Vec<AddrRange> = p.maps().unwrap().iter().map(|v| v.range).collect();
        assert!(vmas.contains(&snap));
        let target = Target::from_process(&p, vmas);
        let gone = w.unmap(4 * MB, 256 << 10).unwrap();
        let config = ActuatorConfig {
            resident_cut,
            ..ActuatorConfig::default()
        };
        let mut act = Actuator::new(SysRoot::host(), config);
        // 64 KiB requests over the whole mapping.
        let reqs: Vec<AdviceRequest> = (0..snap.len() / (64 << 10))
            .map(|i| {
                req(
                    pid,
                    AddrRange::new(
                        snap.start + i * (64 << 10),
                        snap.start + (i + 1) * (64 << 10),
                    ),
                    Advice::Cold,
                )
            })
            .collect();
        let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
        assert_accounted(&r);
        assert_eq!(err(&r, kind), gone.len(), "resident_cut={resident_cut}");
        assert_eq!(r.bytes_applied(), snap.len() - gone.len());
        for o in &r.outcomes {
            assert_eq!(o.errors.is_empty(), !o.range.intersects(&gone), "{o:?}");
        }
        assert!(w.verify().unwrap().bad_pages == 0);
    }
}

// --- pid reuse ------------------------------------------------------------------------------------

/// A forked child mapping `pages` of `file` privately at `ADDR` and reading every page (so
/// they are mapped clean page-cache pages). Only async-signal-safe calls after fork.
const ADDR: u64 = 0x5a5a_0000_0000;

fn fork_file_child(file: &std::fs::File, pages: u64) -> Option<(u32, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let fd = file.as_raw_fd();
    // SAFETY: the child only makes raw syscalls (no allocation, no locks) and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: raw syscalls on our own memory and fds; the child never returns.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            let p = libc::mmap(
                ADDR as *mut libc::c_void,
                (pages * P) as usize,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_FIXED_NOREPLACE,
                fd,
                0,
            );
            let ok: u8 = if p as u64 == ADDR { 1 } else { 0 };
            if ok == 1 {
                let mut sum = 0u8;
                for i in 0..pages {
                    sum = sum.wrapping_add(std::ptr::read_volatile((ADDR + i * P) as *const u8));
                }
                std::hint::black_box(sum);
            }
            libc::write(fds[1], &ok as *const u8 as *const libc::c_void, 1);
            loop {
                libc::pause();
            }
        }
    }
    // SAFETY: closing our copy of the write end, which nothing else owns.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is a fresh fd from pipe2 that nothing else owns.
    let rd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    let mut ok = 0u8;
    // SAFETY: reading one byte into a local.
    let n = unsafe { libc::read(rd.as_raw_fd(), &mut ok as *mut u8 as *mut libc::c_void, 1) };
    if n != 1 || ok != 1 {
        kill_and_wait(pid as u32, true);
        return None;
    }
    Some((pid as u32, rd))
}

/// Pages of `[ADDR, +pages)` present in `pid`'s page tables (pagemap bit 63).
fn present_pages(pid: u32, pages: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(format!("/proc/{pid}/pagemap")).unwrap();
    let mut buf = vec![0u8; (pages * 8) as usize];
    f.read_exact_at(&mut buf, ADDR / P * 8).unwrap();
    buf.chunks_exact(8)
        .filter(|c| u64::from_ne_bytes((*c).try_into().unwrap()) >> 63 == 1)
        .count() as u64
}

/// Make the next fork get `pid` (root: /proc/sys/kernel/ns_last_pid, CAP_SYS_ADMIN over the
/// pid namespace). Another process may take it first: the caller checks and retries.
fn set_last_pid(pid: u32) -> std::io::Result<()> {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
}

/// Child A is opened (pidfd) and snapshotted, then dies and is reaped; child B is made with
/// A's pid number and maps the same file pages at the same address. Applying A's advice
/// through A's pidfd reports TargetGone and B's pages all stay present; the same advice
/// through B's own pidfd does page them out — so the check would have seen it.
#[test]
fn reused_pid_is_never_advised() {
    engine::need_root!("ns_last_pid, CAP_SYS_NICE");
    let pages = 64;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("pages");
    std::fs::write(&path, vec![0x5au8; (pages * P) as usize]).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    file.sync_all().unwrap();
    let root = SysRoot::host();
    let range = AddrRange::new(ADDR, ADDR + pages * P);

    let Some((a, _a_pipe)) = fork_file_child(&file, pages) else {
        panic!("child A could not map {ADDR:#x}")
    };
    let a_fd = Pidfd::open(a).unwrap();
    let a_target = Target::new(&root, &a_fd, [range]);
    kill_and_wait(a, true);

    let mut b = None;
    for _ in 0..50 {
        if let Err(e) = set_last_pid(a) {
            engine::skip!("cannot write /proc/sys/kernel/ns_last_pid: {e}");
        }
        match fork_file_child(&file, pages) {
            Some((pid, pipe)) if pid == a => {
                b = Some((pid, pipe));
                break;
            }
            Some((pid, _)) => kill_and_wait(pid, true),
            None => {}
        }
    }
    let Some((b_pid, _b_pipe)) = b else {
        panic!("could not get pid {a} again in 50 tries")
    };
    assert_eq!(b_pid, a);
    assert_eq!(present_pages(b_pid, pages), pages, "B has its pages mapped");

    let mut act = Actuator::new(root.clone(), ActuatorConfig::default());
    let r = act.apply(
        std::slice::from_ref(&a_target),
        &[req(a, range, Advice::Pageout)],
        ApplyOpts::default(),
    );
    assert_accounted(&r);
    assert_eq!(r.bytes_applied(), 0);
    assert_eq!(err(&r, ApplyErrorKind::TargetGone), range.len());
    assert_eq!(r.gone, vec![TargetId(a)]);
    assert_eq!(present_pages(b_pid, pages), pages, "B was not advised");

    // Control: the same advice through B's own pidfd pages them out.
    let b_fd = Pidfd::open(b_pid).unwrap();
    let b_target = Target::new(&root, &b_fd, [range]);
    let r = act.apply(
        std::slice::from_ref(&b_target),
        &[req(b_pid, range, Advice::Pageout)],
        ApplyOpts::default(),
    );
    assert_eq!(r.bytes_applied(), range.len(), "{r:?}");
    let left = present_pages(b_pid, pages);
    kill_and_wait(b_pid, true);
    assert!(
        left < pages / 2,
        "page-out through B's pidfd left {left}/{pages} pages present: the check could not tell"
    );
}

// --- EPERM as a non-root user ----------------------------------------------------------------------

const EPERM_ENV: &str = "MADVD_ACTUATOR_EPERM_TARGET";

/// Not a test on its own: the body `eperm_as_non_root_user` runs as `nobody` (it re-executes
/// this test binary with a uid/gid change). Ignored so it never runs by itself.
#[test]
#[ignore = "child half of eperm_as_non_root_user; needs MADVD_ACTUATOR_EPERM_TARGET"]
fn eperm_child() {
    let spec = std::env::var(EPERM_ENV).expect("run by eperm_as_non_root_user");
    let v: Vec<u64> = spec.split(':').map(|x| x.parse().unwrap()).collect();
    let (pid, range) = (v[0] as u32, AddrRange::new(v[1], v[2]));
    assert!(!testkit::is_root(), "must run unprivileged");
    let pfd = Pidfd::open(pid).unwrap();
    let target = Target::new(&SysRoot::host(), &pfd, [range]);
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    // Two advice kinds, many requests: one call, then the target is dropped for the round.
    let reqs: Vec<AdviceRequest> = (0..8)
        .map(|i| {
            req(
                pid,
                AddrRange::new(range.start + i * P, range.start + (i + 1) * P),
                if i % 2 == 0 {
                    Advice::Cold
                } else {
                    Advice::Pageout
                },
            )
        })
        .collect();
    let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
    assert_accounted(&r);
    assert_eq!(err(&r, ApplyErrorKind::Permission), 8 * P, "{r:?}");
    assert_eq!(act.stats().calls, 1);
    let msg = r
        .permission_errors()
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>();
    assert_eq!(msg.len(), 1);
    // What the kernel said, for the record (EACCES: no ptrace read access; EPERM: no
    // CAP_SYS_NICE).
    let raw = engine::kernel::madvise::process_madvise(
        std::os::fd::AsFd::as_fd(&pfd),
        &[range],
        Advice::Cold,
    );
    println!("\nEPERM-CHILD-OK errno={raw:?} {}", msg[0]);
}

/// madvd running as `nobody` (no CAP_SYS_NICE): advising a root-owned process (no ptrace
/// read access: EACCES) and a process of its own uid (ptrace access, no CAP_SYS_NICE: EPERM)
/// both end in one Permission error naming the pid and what is missing, after one call.
#[test]
fn eperm_as_non_root_user() {
    use std::os::unix::process::CommandExt;
    engine::need_root!("to drop to nobody");
    let me = std::env::current_exe().unwrap();
    // Targets: a root-owned workload, and a `nobody` one.
    for as_nobody in [false, true] {
        let mut cmd = std::process::Command::new(exe());
        cmd.arg("workload").args(
            WorkloadSpec {
                size: 16 * P,
                ..Default::default()
            }
            .to_args(),
        );
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        if as_nobody {
            cmd.uid(65534).gid(65534);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let ev: serde_json::Value = serde_json::from_str(&line).unwrap();
        let m = &ev["mappings"][0];
        let (start, end) = (m["start"].as_u64().unwrap(), m["end"].as_u64().unwrap());
        let pid = child.id();
        let out = std::process::Command::new(&me)
            .args([
                "--exact",
                "eperm_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(EPERM_ENV, format!("{pid}:{start}:{end}"))
            .env("MADVD_SKIP_LOG", "/dev/null")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "as_nobody={as_nobody}: {stdout}\n{stderr}"
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("EPERM-CHILD-OK"))
            .unwrap_or_else(|| panic!("{stdout}"));
        let expect = if as_nobody {
            "errno=Err(EPERM)"
        } else {
            "errno=Err(EACCES)"
        };
        assert!(line.contains(expect), "{line}");
        eprintln!(
            "eperm (target owned by {}): {line}",
            if as_nobody { "nobody" } else { "root" }
        );
        assert!(
            line.contains(&format!("pid {pid}"))
                && line.contains("CAP_SYS_NICE")
                && line.contains("ptrace"),
            "{line}"
        );
    }
}

// --- rails on real processes --------------------------------------------------------------------

/// pid 1, madvd itself and a kernel thread (kthreadd, pid 2, read through its pidfd) are
/// refused without a syscall.
#[test]
fn init_self_and_kernel_threads_are_refused() {
    let root = SysRoot::host();
    let mut targets = Vec::new();
    let fds: Vec<Pidfd> = [1u32, std::process::id(), 2]
        .iter()
        .filter_map(|&p| Pidfd::open(p).ok())
        .collect();
    for f in &fds {
        targets.push(Target::new(&root, f, [AddrRange::new(0x10000, 0x20000)]));
    }
    if fds.len() < 3
        || !std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd")
    {
        engine::skip!("no kthreadd at pid 2 (in a pid namespace?)");
    }
    let reqs: Vec<AdviceRequest> = fds
        .iter()
        .map(|f| req(f.pid(), AddrRange::new(0x10000, 0x20000), Advice::Pageout))
        .collect();
    let mut act = Actuator::new(root, ActuatorConfig::default());
    let r = act.apply(&targets, &reqs, ApplyOpts::default());
    assert_eq!(err(&r, ApplyErrorKind::Refused), 3 * 0x10000, "{r:?}");
    assert_eq!(act.stats().calls, 0);
}

/// Dry run on a live process: everything planned and reported, no syscall made.
#[test]
fn dry_run_applies_nothing_to_a_live_process() {
    engine::need_root!("CAP_SYS_NICE for process_madvise");
    let mut w = spawn_sized(4 * MB);
    w.pause().unwrap();
    let pid = w.pid();
    let pfd = Pidfd::open(pid).unwrap();
    let target = Target::new(&SysRoot::host(), &pfd, [w.mapping()]);
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    let r = act.apply(
        std::slice::from_ref(&target),
        &[req(pid, w.mapping(), Advice::Pageout)],
        ApplyOpts {
            dry_run: true,
            cancel: None,
            ..Default::default()
        },
    );
    assert!(r.dry_run);
    assert_eq!(err(&r, ApplyErrorKind::DryRun), 4 * MB);
    assert_eq!(act.stats().calls, 0);
    assert_eq!(r.bytes_applied(), 0);
}

/// The swap headroom rail on the real machine: with a 64 MiB zram swap and a 96 MiB workload,
/// page-out stops before free swap falls under 10 % of SwapTotal; the rest is reported
/// SwapHeadroom, and free swap afterwards is still at least the headroom.
#[test]
fn pageout_stops_at_the_swap_headroom() {
    let guard = engine::need_swap!(64 * MB);
    if guard.zram_device().is_none() {
        engine::skip!("the machine already has its own swap: not filling it");
    }
    let mut w = spawn(&WorkloadSpec {
        size: 96 * MB,
        hot_fraction: 0.01,
        ..Default::default()
    });
    w.pause().unwrap();
    let pid = w.pid();
    let pfd = Pidfd::open(pid).unwrap();
    let target = Target::new(&SysRoot::host(), &pfd, [w.mapping()]);
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    // 1 MiB requests, as a scheme would send them.
    let m = w.mapping();
    let reqs: Vec<AdviceRequest> = (0..m.len() / MB)
        .map(|i| {
            req(
                pid,
                AddrRange::new(m.start + i * MB, m.start + (i + 1) * MB),
                Advice::Pageout,
            )
        })
        .collect();
    let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
    let total = meminfo_kb("SwapTotal:") * 1024;
    let free = meminfo_kb("SwapFree:") * 1024;
    let swapped = status_kb(pid, "VmSwap:") * 1024;
    assert_accounted(&r);
    eprintln!(
        "headroom: SwapTotal {} KiB, SwapFree after {} KiB, applied {} KiB, SwapHeadroom {} KiB, VmSwap {} KiB",
        total >> 10,
        free >> 10,
        r.bytes_applied() >> 10,
        err(&r, ApplyErrorKind::SwapHeadroom) >> 10,
        swapped >> 10
    );
    assert!(
        free >= total / 10,
        "free swap {free} under the headroom of {total}"
    );
    assert!(err(&r, ApplyErrorKind::SwapHeadroom) > 0);
    assert_eq!(
        r.bytes_applied() + err(&r, ApplyErrorKind::SwapHeadroom),
        m.len()
    );
    // It did page out up to the headroom (the swap is ours alone while we hold the fixture).
    assert!(
        r.bytes_applied() >= total * 8 / 10,
        "applied {} of {total}",
        r.bytes_applied()
    );
    assert_eq!(w.verify().unwrap().bad_pages, 0);
}
