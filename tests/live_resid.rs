//! Residency is evidence, on this host under the machine-wide swap fixture: memory that was
//! paged out and stays idle answers `NotAccessed` through the refault probe, not `Unknown`
//! (before, the probe found no present page to page out there and gave up).

use engine::access::AccessCheck;
use engine::advice::Advice;
use engine::kernel::madvise::process_madvise;
use engine::kernel::pagemap::Residency;
use engine::AddrRange;
use madvd_workload::WorkloadSpec;
use std::os::fd::AsFd;
use std::time::Duration;

mod common;
use common::{fixed_regions, open, spawn, unthrottled_probe, Sampler, MIB, PAGE};

const SWAP: u64 = 256 << 20;

#[test]
fn paged_out_idle_memory_answers_not_accessed() {
    let _swap = engine::need_swap!(SWAP);
    // 32 MiB, the first 10% hot; the cold 90% is paged out by the test before sampling.
    let w = spawn(&WorkloadSpec {
        size: 32 * MIB,
        hot_fraction: 0.10,
        ..WorkloadSpec::default()
    });
    let m = w.mapping();
    let hot = w.hot();
    let cold = AddrRange::new(hot.end, m.end);
    let mut proc = open(w.pid());
    let paged = process_madvise(proc.pidfd().as_fd(), &[cold], Advice::Pageout)
        .expect("process_madvise(MADV_PAGEOUT) of the cold range");
    assert!(paged > 0, "nothing paged out of {cold}");
    let mut entries = Vec::new();
    proc.pagemap()
        .read(cold.start, (cold.len() / PAGE) as usize, &mut entries)
        .unwrap();
    let out = entries
        .iter()
        .filter(|e| matches!(e.residency(), Residency::Swapped { .. }))
        .count();
    assert!(
        out * 10 >= entries.len() * 9,
        "only {out} of {} cold pages swapped after the page-out",
        entries.len()
    );

    let mut probe = unthrottled_probe();
    let id = probe.add_target(open(w.pid())).unwrap();
    probe.target_ranges(id).unwrap();
    let mut s = Sampler::new(fixed_regions(m, 32), 11);
    s.run(&mut probe, id, 20, Duration::from_millis(100));
    let st = probe.stats();
    eprintln!("hot {hot}; stats {st:?}; cost {:?}", probe.cost());
    for (r, t) in s.regions.iter().zip(&s.tally) {
        eprintln!("{r} acc {}/{}", t.accessed, t.known);
    }
    assert!(st.absent > 0, "{st:?}");
    for (r, t) in s.regions.iter().zip(&s.tally) {
        if cold.start <= r.start {
            // Paged out and never touched again: every answer known, none accessed.
            assert!(t.known >= 19, "cold region {r}: {} of 20 known", t.known);
            assert_eq!(t.accessed, 0, "cold region {r}");
        } else if r.end <= hot.end {
            assert!(
                t.known >= 15 && t.accessed * 10 >= t.known * 9,
                "hot region {r}: {}/{} accessed",
                t.accessed,
                t.known
            );
        }
    }
    // The cold samples cost no page-out: about one per hot sample only.
    let hot_regions = s.regions.iter().filter(|r| r.end <= hot.end).count() as u64;
    assert!(
        probe.cost().probe_pageouts <= 20 * (hot_regions + 1),
        "{:?}",
        probe.cost()
    );
}
