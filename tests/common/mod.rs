//! What the integration tests of the `madvd` package share: the binary, the repository, the
//! workload child, a target handle, an unthrottled refault probe, fixed regions, a small
//! deterministic generator and sampling intervals of an access check over fixed regions. The skip rules (and root / swap / lab requirements) are
//! `engine::testkit`'s: `engine::skip!`, `engine::need_root!`, `engine::need_swap!`,
//! `engine::lab_or_skip!`.
#![allow(dead_code)] // each test crate uses its own part

pub mod lab_cgroup;

use engine::access::{Access, AccessCheck, SampleReq};
use engine::ops::probe::{Probe, ProbeConfig};
use engine::process::Process;
use engine::{AddrRange, SysRoot, TargetId};
use madvd_workload::Client as Workload;
use madvd_workload::WorkloadSpec;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const PAGE: u64 = 4096;
pub const MIB: u64 = 1 << 20;

/// Whether page_idle is usable in the lab's `kernel`: on `debian` (Debian ships
/// `CONFIG_IDLE_PAGE_TRACKING` off) it must say it is not, on `lab` that it is.
pub fn page_idle_here(kernel: &str) -> bool {
    let st = engine::ops::OpsKind::PageIdle.status(&SysRoot::host());
    if kernel == "debian" {
        assert!(!st.usable, "Debian ships CONFIG_IDLE_PAGE_TRACKING off");
        return false;
    }
    assert!(st.usable, "page_idle on the lab kernel: {:?}", st.why_not);
    true
}

/// The `madvd` binary under test.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_madvd"))
}

/// A path in the repository.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A workload child (`madvd workload`), killed and reaped on drop.
pub fn spawn(spec: &WorkloadSpec) -> Workload {
    Workload::spawn(exe(), spec).expect("spawn the workload child")
}

/// A workload child of `size` bytes, the rest of its spec the default.
pub fn spawn_sized(size: u64) -> Workload {
    spawn(&WorkloadSpec {
        size,
        ..WorkloadSpec::default()
    })
}

/// A handle on a live process of this host.
pub fn open(pid: u32) -> Process {
    Process::open(&SysRoot::host(), pid, false).unwrap_or_else(|e| panic!("open pid {pid}: {e}"))
}

/// The refault probe on this host with no sample or page-out rate limit (tests check its
/// answers, not its cost).
pub fn unthrottled_probe() -> Probe {
    Probe::new(
        SysRoot::host(),
        ProbeConfig {
            max_samples_per_sec: None,
            max_pageouts_per_sec: None,
            ..ProbeConfig::default()
        },
    )
}

/// `n` equal page-aligned regions over `mapping` (the last one takes the remainder).
pub fn fixed_regions(mapping: AddrRange, n: u64) -> Vec<AddrRange> {
    let sz = mapping.len() / n / PAGE * PAGE;
    (0..n)
        .map(|i| {
            let s = mapping.start + i * sz;
            AddrRange::new(s, if i == n - 1 { mapping.end } else { s + sz })
        })
        .collect()
}

/// A small deterministic generator (splitmix64; no `rand` needed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    /// Uniform enough in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Per-region tally of definite answers over a fixed region set.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub accessed: u32,
    pub known: u32,
}

/// Sampling intervals of an access check over a fixed region set, the answers tallied per
/// region.
pub struct Sampler {
    pub regions: Vec<AddrRange>,
    pub tally: Vec<Tally>,
    rng: Rng,
}

impl Sampler {
    /// Over `regions`, the sample addresses drawn from a generator seeded with `seed`.
    pub fn new(regions: Vec<AddrRange>, seed: u64) -> Self {
        let tally = vec![Tally::default(); regions.len()];
        Self {
            regions,
            tally,
            rng: Rng(seed),
        }
    }

    /// `n` sampling intervals of `ops`: one random page per region, prepare, wait `wait`,
    /// check; the answers are added to the tally. The check must keep every sample a page
    /// inside its region.
    pub fn run(&mut self, ops: &mut dyn AccessCheck, id: TargetId, n: u32, wait: Duration) {
        for _ in 0..n {
            let mut samples: Vec<SampleReq> = self
                .regions
                .iter()
                .map(|r| SampleReq {
                    region: *r,
                    addr: r.start + self.rng.below(r.len() / PAGE) * PAGE,
                })
                .collect();
            ops.prepare(id, &mut samples)
                .unwrap_or_else(|e| panic!("{} prepare: {e}", ops.name()));
            for s in &samples {
                assert!(s.region.contains(s.addr) && s.addr % PAGE == 0, "{s:?}");
            }
            std::thread::sleep(wait);
            let mut out = vec![Access::Unknown; samples.len()];
            ops.check(id, &samples, &mut out)
                .unwrap_or_else(|e| panic!("{} check: {e}", ops.name()));
            for (t, a) in self.tally.iter_mut().zip(out) {
                t.known += (a != Access::Unknown) as u32;
                t.accessed += (a == Access::Accessed) as u32;
            }
        }
    }
}
