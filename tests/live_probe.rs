//! The refault probe (and the smaps check) on a live workload child, on this host, under
//! the machine-wide swap fixture.

use engine::access::{Access, AccessCheck, SampleReq};
use engine::ops::probe::{Probe, ProbeConfig};
use engine::process::Process;
use engine::testkit::{self, swap, Workload};
use engine::workload::WorkloadSpec;
use engine::{AddrRange, SysRoot};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::Duration;

const PAGE: u64 = 4096;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_madvd"))
}

/// Probe-level: fixed regions, one sample each per 100 ms interval; the probe's answers per
/// region against the workload's hot range.
#[test]
fn probe_answers_follow_the_hot_set() {
    if !testkit::is_root() {
        engine::skip!("needs root (process_madvise of another process needs CAP_SYS_NICE)");
    }
    let _swap = match swap::acquire(512 << 20) {
        Ok(g) => g,
        Err(e) => engine::skip!("no swap fixture: {e}"),
    };
    let spec = WorkloadSpec {
        hot_offset: 0.45,
        ..WorkloadSpec::default()
    };
    let w = Workload::spawn(exe(), &spec).unwrap();
    let proc = Process::open(&SysRoot::host(), w.pid(), false).unwrap();
    let mut probe = Probe::new(
        SysRoot::host(),
        ProbeConfig {
            max_samples_per_sec: None,
            ..ProbeConfig::default()
        },
    );
    let id = probe.add_target(proc);
    let ranges = probe.target_ranges(id).unwrap();
    let m = w.mapping();
    assert!(
        ranges.iter().any(|r| r.start <= m.start && m.end <= r.end),
        "mapping {m} not in {ranges:?}"
    );
    let n = 64u64;
    let rsz = m.len() / n;
    let regions: Vec<AddrRange> = (0..n)
        .map(|i| AddrRange::new(m.start + i * rsz, m.start + (i + 1) * rsz))
        .collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
    let mut acc = vec![0u32; n as usize];
    let mut known = vec![0u32; n as usize];
    for _ in 0..20 {
        let mut samples: Vec<SampleReq> = regions
            .iter()
            .map(|r| SampleReq {
                region: *r,
                addr: rng.gen_range(r.start..r.end) / PAGE * PAGE,
            })
            .collect();
        probe.prepare(id, &mut samples).unwrap();
        for s in &samples {
            assert!(s.region.contains(s.addr) && s.addr % PAGE == 0);
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut out = vec![Access::Unknown; samples.len()];
        probe.check(id, &samples, &mut out).unwrap();
        for (i, a) in out.iter().enumerate() {
            match a {
                Access::Accessed => {
                    acc[i] += 1;
                    known[i] += 1
                }
                Access::NotAccessed => known[i] += 1,
                Access::Unknown => {}
            }
        }
    }
    let hot = w.hot();
    eprintln!(
        "hot {hot}; stats {:?}; cost {:?}",
        probe.stats(),
        probe.cost()
    );
    for (i, r) in regions.iter().enumerate() {
        eprintln!("{r} hot={} acc {}/{}", hot.intersects(r), acc[i], known[i]);
    }
    for (i, r) in regions.iter().enumerate() {
        assert!(
            known[i] >= 15,
            "region {r}: only {} known answers of 20",
            known[i]
        );
        if hot.start <= r.start && r.end <= hot.end {
            assert!(
                acc[i] * 10 >= known[i] * 9,
                "hot region {r}: {}/{} accessed",
                acc[i],
                known[i]
            );
        } else if !hot.intersects(r) {
            assert_eq!(
                acc[i], 0,
                "cold region {r}: {}/{} accessed",
                acc[i], known[i]
            );
        }
    }
    assert!(probe.cost().probe_pageouts >= 15 * 64);
}

/// smaps (VMA granularity): with hot and cold in two mappings, the hot mapping's samples are
/// Accessed and the cold one's NotAccessed. No swap needed.
#[test]
fn smaps_tells_the_hot_mapping_from_the_cold_one() {
    use engine::ops::smaps::SmapsCheck;
    let spec = WorkloadSpec {
        size: 64 << 20,
        two_mappings: true,
        ..WorkloadSpec::default()
    };
    let w = Workload::spawn(exe(), &spec).unwrap();
    let (hot_map, cold_map) = (w.mappings()[0], w.mappings()[1]);
    assert!(w.hot().start >= hot_map.start && w.hot().end <= hot_map.end);
    let mut c = SmapsCheck::new();
    let id = c.add_target(Process::open(&SysRoot::host(), w.pid(), false).unwrap());
    let ranges = c.target_ranges(id).unwrap();
    assert!(ranges
        .iter()
        .any(|r| r.start <= cold_map.start && cold_map.end <= r.end));
    let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
    let (mut hot_acc, mut cold_acc) = (0, 0);
    for _ in 0..5 {
        let mut s: Vec<SampleReq> = [hot_map, cold_map]
            .iter()
            .map(|r| SampleReq {
                region: *r,
                addr: rng.gen_range(r.start..r.end) / PAGE * PAGE,
            })
            .collect();
        c.prepare(id, &mut s).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut out = vec![Access::Unknown; 2];
        c.check(id, &s, &mut out).unwrap();
        assert_ne!(out[1], Access::Unknown);
        hot_acc += (out[0] == Access::Accessed) as u32;
        cold_acc += (out[1] == Access::Accessed) as u32;
    }
    assert_eq!((hot_acc, cold_acc), (5, 0));
}
