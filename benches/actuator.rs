//! Actuator throughput: advising 1 GiB of another process as N regions (N = 1, 100, 10 000)
//! through the actuator (batched `process_madvise` on a pidfd) vs one `madvise` of the same
//! bytes from inside that process. Reported as a throughput ratio (remote / in-process),
//! measured in one run on the same memory in the same state.
//!
//! Advice: `MADV_COLD` (see docs/performance.md, "Actuator", for why not PAGEOUT). Before
//! every timed call the child re-reads every page, so each call finds the same young bits to
//! clear; one untimed pass of each kind warms up first.
//!
//! Run (root: remote advice needs CAP_SYS_NICE):
//! `nice -n 10 cargo bench --bench actuator` (env `MADVD_BENCH_MIB`, default 1024, and
//! `MADVD_BENCH_REPS`, default 7).

use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
use engine::kernel::pidfd::Pidfd;
use engine::{AddrRange, Advice, AdviceRequest, SysRoot, TargetId};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

const P: u64 = 4096;

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The target: maps `size` bytes privately, first-touches them, then serves commands:
/// `T` re-read every page, `M` time one madvise(MADV_COLD) of the whole mapping (ns back),
/// `X` exit.
fn child(size: u64, mut sock: UnixStream) -> ! {
    // SAFETY: a fresh private anonymous mapping of our own.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let base = base as u64;
    // SAFETY: advising our own mapping; 4 KiB pages so the page-table walk is the same every run.
    unsafe {
        libc::madvise(
            base as *mut libc::c_void,
            size as usize,
            libc::MADV_NOHUGEPAGE,
        )
    };
    for off in (0..size).step_by(P as usize) {
        // SAFETY: inside our mapping.
        unsafe { ((base + off) as *mut u64).write_volatile(off) };
    }
    sock.write_all(&base.to_ne_bytes()).unwrap();
    let mut cmd = [0u8; 1];
    loop {
        if sock.read_exact(&mut cmd).is_err() {
            std::process::exit(0);
        }
        let reply: u64 = match cmd[0] {
            b'T' => {
                let mut s = 0u64;
                for off in (0..size).step_by(P as usize) {
                    // SAFETY: inside our mapping.
                    s = s.wrapping_add(unsafe { ((base + off) as *const u64).read_volatile() });
                }
                std::hint::black_box(s);
                0
            }
            b'M' => {
                let t = Instant::now();
                engine::kernel::madvise::madvise_self(
                    AddrRange::new(base, base + size),
                    Advice::Cold,
                )
                .unwrap();
                t.elapsed().as_nanos() as u64
            }
            _ => std::process::exit(0),
        };
        sock.write_all(&reply.to_ne_bytes()).unwrap();
    }
}

fn ask(sock: &mut UnixStream, c: u8) -> u64 {
    sock.write_all(&[c]).unwrap();
    let mut b = [0u8; 8];
    sock.read_exact(&mut b).unwrap();
    u64::from_ne_bytes(b)
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    if !engine::kernel::host::is_root() {
        eprintln!("SKIP bench actuator: needs root (CAP_SYS_NICE for process_madvise)");
        return;
    }
    let size = env_u64("MADVD_BENCH_MIB", 1024) << 20;
    let reps = env_u64("MADVD_BENCH_REPS", 7).max(1);
    // Pin both processes to one CPU (MADVD_BENCH_CPU, default 0; -1: no pinning): the
    // advisor then walks the target's page tables from the same caches the target's own
    // madvise would, so the comparison measures the actuator, not cross-core cache traffic.
    let cpu = std::env::var("MADVD_BENCH_CPU")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    if cpu >= 0 {
        let mut set = nix::sched::CpuSet::new();
        set.set(cpu as usize).unwrap();
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
    }
    let (mut sock, theirs) = UnixStream::pair().unwrap();
    // SAFETY: single-threaded here; the child only runs `child` and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        drop(sock);
        // SAFETY: prctl with integer args: die with the parent.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
        child(size, theirs);
    }
    drop(theirs);
    let mut b = [0u8; 8];
    sock.read_exact(&mut b).unwrap();
    let base = u64::from_ne_bytes(b);
    let map = AddrRange::new(base, base + size);
    let pfd = Pidfd::open(pid as u32).unwrap();
    let target = Target::new(&SysRoot::host(), &pfd, [map]);
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());

    println!(
        "actuator bench: {} MiB, MADV_COLD, 4 KiB pages, {reps} timed runs of each (median and min), {}; ratio = actuator throughput / in-process",
        size >> 20,
        if cpu >= 0 { format!("both processes pinned to cpu {cpu}") } else { "not pinned".to_string() }
    );
    println!(
        "{:>7} {:>6} {:>12} {:>12} {:>10} {:>10} {:>12} {:>9}",
        "N",
        "calls",
        "in-proc ms",
        "actuator ms",
        "in GiB/s",
        "act GiB/s",
        "ratio(med)",
        "ratio(min)"
    );
    for n in [1u64, 100, 10_000] {
        let step = (size / n) & !(P - 1);
        let reqs: Vec<AdviceRequest> = (0..n)
            .map(|i| {
                let s = base + i * step;
                let e = if i + 1 == n { map.end } else { s + step };
                AdviceRequest {
                    target: TargetId(pid as u32),
                    range: AddrRange::new(s, e),
                    advice: Advice::Cold,
                    scheme: 0,
                }
            })
            .collect();
        // Warm-up (untimed): one of each.
        ask(&mut sock, b'T');
        ask(&mut sock, b'M');
        ask(&mut sock, b'T');
        act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
        let (mut inproc, mut remote) = (Vec::new(), Vec::new());
        let calls0 = act.stats().calls;
        for rep in 0..reps {
            // Alternate which goes first.
            for k in 0..2 {
                ask(&mut sock, b'T');
                if (rep + k) % 2 == 0 {
                    inproc.push(ask(&mut sock, b'M'));
                } else {
                    let t = Instant::now();
                    let r = act.apply(std::slice::from_ref(&target), &reqs, ApplyOpts::default());
                    remote.push(t.elapsed().as_nanos() as u64);
                    assert_eq!(r.bytes_applied(), size, "{:?}", r.errors_by_kind());
                }
            }
        }
        let calls = (act.stats().calls - calls0) / reps;
        let (i, a) = (median(&mut inproc), median(&mut remote));
        // Sorted by `median`: [0] is the minimum.
        let (imin, amin) = (inproc[0], remote[0]);
        let gibs = |ns: u64| size as f64 / (1u64 << 30) as f64 / (ns as f64 / 1e9);
        println!(
            "{n:>7} {calls:>6} {:>12.2} {:>12.2} {:>10.2} {:>10.2} {:>12.3} {:>9.3}",
            i as f64 / 1e6,
            a as f64 / 1e6,
            gibs(i),
            gibs(a),
            i as f64 / a as f64,
            imin as f64 / amin as f64
        );
    }
    let _ = sock.write_all(b"X");
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
}
