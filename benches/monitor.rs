//! Monitoring-core benchmarks: one sampling step and one aggregation step of
//! `engine::monitor::Monitor` over the `sim` access check, at 1k / 10k / 100k regions, with a
//! 1 GiB and a 1 TiB simulated target (same region counts); plus the merge and split passes
//! alone. Run: `nice cargo bench --bench monitor`. Results: docs/performance.md.
//!
//! The region count is pinned by `min_nr_regions = max_nr_regions = N`: the three-region
//! init splits the target into ~N equal regions, no two of which may merge (their sum
//! exceeds the size limit total/N), and the split pass is skipped (N > max/2), so every
//! measured step sees the same N regions.
//!
//! Times are the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time:
//! the machine is shared, and CPU time is what the step costs whoever runs it. Set
//! `MADVD_BENCH_WALL=1` for wall time.

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use engine::monitor::{merge_regions_of, split_regions_of, Monitor};
use engine::ops::sim::{SimOps, SimSpace};
use engine::{Attrs, Region, TargetId};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::time::Duration;

const T: TargetId = TargetId(1);
const SIZES: [(&str, u64); 2] = [("1GiB", 1 << 30), ("1TiB", 1 << 40)];
const COUNTS: [u32; 3] = [1_000, 10_000, 100_000];

fn attrs(n: u32, aggregate_every_step: bool) -> Attrs {
    Attrs {
        sample_us: 1_000,
        // Sampling benches: an aggregation interval no bench run reaches.
        aggr_us: if aggregate_every_step {
            1_000
        } else {
            1_000 * 1_000_000_000
        },
        ops_update_us: 1_000 * 1_000_000_000,
        min_nr_regions: n,
        max_nr_regions: n,
        min_region_sz: 4096,
    }
}

fn setup(n: u32, size: u64, aggregate_every_step: bool) -> (Monitor, SimOps, u64) {
    let mut ops = SimOps::single(T, SimSpace::scenario("hotcold", size).expect("scenario"));
    let mut m = Monitor::new(attrs(n, aggregate_every_step), 42).expect("attrs");
    m.add_target(T);
    let mut now = 0;
    // Build the regions and run a few steps so buffers are warm.
    for _ in 0..3 {
        m.step(now, &mut ops);
        now += 1_000;
    }
    (m, ops, now)
}

/// Criterion measurement: thread CPU time (or wall time with `MADVD_BENCH_WALL=1`), in ns.
struct CpuTime {
    wall: bool,
}

fn now_ns(wall: bool) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let clock = if wall {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_THREAD_CPUTIME_ID
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `ts`.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        now_ns(self.wall)
    }
    fn end(&self, i: u64) -> u64 {
        now_ns(self.wall) - i
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (div, unit) = if typical >= 1e6 {
            (1e6, "ms")
        } else if typical >= 1e3 {
            (1e3, "µs")
        } else {
            (1.0, "ns")
        };
        values.iter_mut().for_each(|v| *v /= div);
        unit
    }
    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // ns per element: what docs/performance.md reports.
        let n = match throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                *n as f64
            }
        };
        values.iter_mut().for_each(|v| *v /= n);
        "ns/region"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn cpu_criterion() -> Criterion<CpuTime> {
    Criterion::default().with_measurement(CpuTime {
        wall: std::env::var_os("MADVD_BENCH_WALL").is_some(),
    })
}

fn bench_steps(c: &mut Criterion<CpuTime>) {
    for (kind, every) in [("sampling_step", false), ("aggregation_step", true)] {
        let mut g = c.benchmark_group(kind);
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .sample_size(20);
        for n in COUNTS {
            for (label, size) in SIZES {
                let (mut m, mut ops, mut now) = setup(n, size, every);
                let nr = m.nr_regions();
                g.throughput(Throughput::Elements(nr as u64));
                g.bench_function(BenchmarkId::new(format!("{label}/regions"), n), |b| {
                    b.iter(|| {
                        let out = m.step(now, &mut ops);
                        now += 1_000;
                        assert_eq!(out.snapshot.is_some(), every);
                        out
                    })
                });
                assert_eq!(m.nr_regions(), nr, "region count drifted during the bench");
            }
        }
        g.finish();
    }
}

fn regions(n: u32, size: u64) -> Vec<Region> {
    let sz = (size / n as u64) & !4095;
    (0..n as u64)
        .map(|i| {
            let mut r = Region::new(i * sz, (i + 1) * sz);
            // Pairs of equal rates: half of the regions can merge.
            r.nr_accesses = ((i / 2) % 20) as u32;
            r.last_nr_accesses = r.nr_accesses;
            r
        })
        .collect()
}

fn bench_passes(c: &mut Criterion<CpuTime>) {
    let mut g = c.benchmark_group("passes");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for n in COUNTS {
        for (label, size) in SIZES {
            let base = regions(n, size);
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new(format!("merge/{label}/regions"), n), |b| {
                b.iter_batched_ref(
                    || base.clone(),
                    |t| merge_regions_of(t, 0, u64::MAX, true),
                    BatchSize::LargeInput,
                )
            });
            let mut rng = SmallRng::seed_from_u64(1);
            g.bench_function(
                BenchmarkId::new(format!("split2/{label}/regions"), n),
                |b| {
                    b.iter_batched_ref(
                        || base.clone(),
                        |t| split_regions_of(t, 2, 4096, &mut rng),
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = cpu_criterion();
    targets = bench_steps, bench_passes
}
criterion_main!(benches);
