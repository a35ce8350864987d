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
            max_pageouts_per_sec: None,
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

/// Hot/cold recall of a snapshot against the workload's mapping and hot range: the share of
/// hot bytes in regions with `nr_accesses > 0`, and of cold bytes in regions with 0.
pub fn recall(regions: &[engine::Region], mapping: AddrRange, hot: AddrRange) -> (f64, f64) {
    let (mut hot_found, mut cold_found) = (0u64, 0u64);
    for r in regions {
        let Some(part) = r.ar.intersection(&mapping) else {
            continue;
        };
        let h = part.intersection(&hot).map_or(0, |x| x.len());
        let c = part.len() - h;
        if r.nr_accesses > 0 {
            hot_found += h;
        } else {
            cold_found += c;
        }
    }
    let cold_total = mapping.len() - hot.len();
    (
        hot_found as f64 / hot.len() as f64,
        cold_found as f64 / cold_total as f64,
    )
}

/// The monitor with the refault probe at its defaults (100 ms / 2 s, 250 samples/s) on a
/// 256 MiB child with a contiguous hot 10% in the middle: after a bounded number of
/// aggregations, ≥ 90% of hot bytes are found hot and ≥ 90% of cold bytes cold.
#[test]
fn monitor_with_probe_finds_the_hot_tenth() {
    use engine::monitor::Monitor;
    use std::time::Instant;
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
    let mut probe = Probe::new(SysRoot::host(), ProbeConfig::default());
    let id = probe.add_target(Process::open(&SysRoot::host(), w.pid(), false).unwrap());
    let attrs = probe.default_attrs();
    let mut mon = Monitor::new(attrs, 42).unwrap();
    mon.add_target(id);
    let (m, hot) = (w.mapping(), w.hot());
    // Bounded: 15 aggregations (30 s at the defaults); the bar must hold at each of the
    // last 3 (it is usually reached after 4 to 8).
    const AGGRS: u64 = 15;
    let start = Instant::now();
    let mut seen = Vec::new();
    while mon.aggregations() < AGGRS {
        let out = mon.step(start.elapsed().as_micros() as u64, &mut probe);
        assert!(out.gone.is_empty());
        if let Some(s) = out.snapshot {
            let t = s.targets.iter().find(|t| t.target == id).unwrap();
            let (h, c) = recall(&t.regions, m, hot);
            eprintln!(
                "aggregation {}: {} regions, hot recall {:.3}, cold recall {:.3}",
                s.aggregation,
                t.regions.len(),
                h,
                c
            );
            seen.push((h, c));
        }
        let next = mon.next_step_at_us();
        let now = start.elapsed().as_micros() as u64;
        std::thread::sleep(Duration::from_micros(next.saturating_sub(now)));
    }
    let st = probe.stats();
    eprintln!(
        "probe stats {st:?}, cost {:?}, {:.0} probes/s",
        probe.cost(),
        probe.cost().probe_pageouts as f64 / start.elapsed().as_secs_f64()
    );
    for (i, (h, c)) in seen.iter().enumerate().skip(AGGRS as usize - 3) {
        assert!(
            *h >= 0.9,
            "aggregation {}: hot recall {h:.3} < 0.9 ({seen:?})",
            i + 1
        );
        assert!(
            *c >= 0.9,
            "aggregation {}: cold recall {c:.3} < 0.9 ({seen:?})",
            i + 1
        );
    }
    // The budget was respected (with a little slack for the carry).
    let per_sec = st.requested as f64 / start.elapsed().as_secs_f64();
    assert!(
        per_sec <= 250.0 * 1.1,
        "{per_sec:.0} samples/s over the 250/s budget"
    );
    // And the page-out budget (100/s, plus at most one second saved up).
    let secs = start.elapsed().as_secs_f64();
    let pageouts = probe.cost().probe_pageouts as f64;
    assert!(
        pageouts <= 100.0 * (secs + 1.0),
        "{pageouts} page-outs in {secs:.1} s over 100/s"
    );
}

/// smaps through the monitor: hot and cold in two mappings; the hot mapping's regions end
/// up with accesses, the cold mapping's with none.
#[test]
fn monitor_with_smaps_finds_the_hot_mapping() {
    use engine::monitor::Monitor;
    use engine::ops::smaps::SmapsCheck;
    let spec = WorkloadSpec {
        size: 64 << 20,
        two_mappings: true,
        ..WorkloadSpec::default()
    };
    let w = Workload::spawn(exe(), &spec).unwrap();
    let (hot_map, cold_map) = (w.mappings()[0], w.mappings()[1]);
    let mut c = SmapsCheck::new();
    let id = c.add_target(Process::open(&SysRoot::host(), w.pid(), false).unwrap());
    // Faster than the smaps defaults so the test stays short: 100 ms / 1 s.
    let attrs = engine::Attrs {
        sample_us: 100_000,
        aggr_us: 1_000_000,
        ..c.default_attrs()
    };
    let mut mon = Monitor::new(attrs, 1).unwrap();
    mon.add_target(id);
    let mut now = 0;
    let mut last = None;
    while mon.aggregations() < 10 {
        let out = mon.step(now, &mut c);
        if out.snapshot.is_some() {
            last = out.snapshot;
        }
        std::thread::sleep(Duration::from_micros(attrs.sample_us));
        now += attrs.sample_us;
    }
    let s = last.unwrap();
    let max = s.max_nr_accesses() as f64;
    let regions = &s.targets[0].regions;
    // Per mapping: the bytes found hot, and the byte-weighted access rate.
    let per_map = |map: AddrRange| -> (f64, f64) {
        let (mut hot, mut rate) = (0u64, 0f64);
        for r in regions {
            if let Some(p) = r.ar.intersection(&map) {
                if r.nr_accesses > 0 {
                    hot += p.len();
                }
                rate += p.len() as f64 * r.nr_accesses as f64 / max;
            }
        }
        (hot as f64 / map.len() as f64, rate / map.len() as f64)
    };
    let (h_hot, h_rate) = per_map(hot_map);
    let (c_hot, c_rate) = per_map(cold_map);
    eprintln!("hot mapping: {h_hot:.3} of bytes hot, rate {h_rate:.3}; cold mapping: {c_hot:.3} hot, rate {c_rate:.3}");
    // Which mapping is hot: the hot one is found hot nearly whole, at a high rate; the cold
    // one mostly cold (a region straddling the two may be counted hot: VMA granularity).
    assert!(
        h_hot >= 0.9 && h_rate >= 0.5,
        "hot mapping: {h_hot:.3} hot, rate {h_rate:.3}"
    );
    assert!(
        c_hot <= 0.1 && c_rate <= 0.1,
        "cold mapping: {c_hot:.3} hot, rate {c_rate:.3}"
    );
}

/// A workload whose mapping has transparent huge pages (MADV_HUGEPAGE): the probe must not
/// page out single pages of them (that would split them, mm/madvise.c 6.12): its samples
/// there are Unknown and the huge pages stay whole.
#[test]
fn probe_never_splits_huge_pages() {
    if !testkit::is_root() {
        engine::skip!("needs root (process_madvise of another process needs CAP_SYS_NICE)");
    }
    let _swap = match swap::acquire(512 << 20) {
        Ok(g) => g,
        Err(e) => engine::skip!("no swap fixture: {e}"),
    };
    let spec = WorkloadSpec {
        size: 64 << 20,
        nohugepage: false,
        ..WorkloadSpec::default()
    };
    let w = Workload::spawn(exe(), &spec).unwrap();
    let m = w.mapping();
    let proc = Process::open(&SysRoot::host(), w.pid(), false).unwrap();
    let ahp = |p: &Process| -> u64 {
        p.smaps()
            .unwrap()
            .iter()
            .filter(|v| v.vma.range.intersects(&m))
            .map(|v| v.anon_huge_pages)
            .sum()
    };
    let before = ahp(&proc);
    if before < 8 << 20 {
        engine::skip!(
            "no transparent huge pages here ({before} bytes AnonHugePages after MADV_HUGEPAGE)"
        );
    }
    let mut probe = Probe::new(
        SysRoot::host(),
        ProbeConfig {
            max_samples_per_sec: None,
            max_pageouts_per_sec: None,
            ..ProbeConfig::default()
        },
    );
    let id = probe.add_target(proc);
    probe.target_ranges(id).unwrap();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let n = 32u64;
    let rsz = m.len() / n;
    for _ in 0..5 {
        let mut samples: Vec<SampleReq> = (0..n)
            .map(|i| {
                let r = AddrRange::new(m.start + i * rsz, m.start + (i + 1) * rsz);
                SampleReq {
                    region: r,
                    addr: rng.gen_range(r.start..r.end) / PAGE * PAGE,
                }
            })
            .collect();
        probe.prepare(id, &mut samples).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut out = vec![Access::Unknown; samples.len()];
        probe.check(id, &samples, &mut out).unwrap();
    }
    let st = probe.stats();
    eprintln!("AnonHugePages before {before}; stats {st:?}");
    assert!(
        st.huge > 0,
        "no sample was recognised as a huge page: {st:?}"
    );
    let after = ahp(probe.process(id).unwrap());
    assert!(
        after >= before,
        "huge pages were split: AnonHugePages {before} -> {after}"
    );
}
