//! The what-if actuator: madvd's own [`Actuator`] (`engine::actuator`: planning at the
//! recorded mappings, the residency cut, the page-out pace, the report) over a simulated
//! system, [`ReplaySys`], instead of the kernel. `process_madvise` succeeds and advances a
//! virtual clock by a per-page cost; a page-out moves its pages out of the replay's
//! residency model ([`Residency`]); pagemap answers from that model, so the residency cut
//! refunds memory the replay already paged out exactly as `madvd run` does with memory the
//! kernel paged out; the pace's waits advance the virtual clock. The report goes back
//! through the same `account` / feedback path as a real one: quota charging by size and
//! time, refunds, the monitor's age reset.
//!
//! The residency model: a page is out from the replay's page-out of it until a recorded
//! region's accesses bring it back: all the out pages an accessed region covers, or, when
//! the region also covers resident memory its target's previous frame showed accessed (the
//! accesses can be those), the share a/m of them (a its `nr_accesses`, m the frame's
//! hottest region's), chosen by a fixed order of the pages (`risk`, module doc: the rule and
//! why). Everything else is taken as resident: a record does not say what the
//! kernel itself swapped out or what was never faulted in, beyond its `absent` ranges. The
//! same model answers the refault guard's page-state reads ([`ReplayMetrics`]), so a
//! `refault_rate` goal runs as it runs live.

use super::risk::Refaults;
use engine::actuator::{ActuatorSys, SwapStat, Target};
use engine::kernel::pagemap::{PagemapEntry, PM_PRESENT, PM_SWAP};
use engine::{AddrRange, Advice, TargetId};
use nix::errno::Errno;
use schemes::refault::PageState;
use schemes::{MetricError, MetricSource};
use std::sync::{Arc, Mutex, MutexGuard};

/// Per-page cost of each advice, ns: what the virtual clock advances by, so what the time
/// quota is charged. The page-out figure ([`DEFAULT_PAGEOUT_NS_PER_PAGE`]) is measured (see
/// there); the others are estimates: cold and willneed walk page tables, collapse copies, a
/// pagemap read for the residency cut is a table walk. `--pageout-ns-per-page` overrides the
/// first figure.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CostModel {
    pub pageout_ns_per_page: u64,
    pub cold_ns_per_page: u64,
    pub willneed_ns_per_page: u64,
    pub collapse_ns_per_page: u64,
    /// Reading one page's pagemap entry (the residency cut).
    pub pagemap_ns_per_page: u64,
}

/// The page-out's default cost, ns per resident 4 KiB page: 17 µs, from the live runs of
/// docs/performance.md "Replay vs reality" (the live actuator's CPU time over the bytes it
/// advised; 2026-12-07: 20 runs at 03:12-03:35 UTC, 4.3-20.4 µs, median 16.75; 20 at
/// 04:51-05:12, 14.1-18.9, median 15.9), and within what `benches/pageout_cost.c` measured
/// for a *running* program's memory paged out into zram on the same host (0.18-0.23 MB per
/// CPU-ms: 17.8-22.8 µs a page; an idle program's 4-6.5 µs). It was 10 µs, an estimate from
/// earlier live runs' actuation time (before the actuator charged calls in CPU time); at
/// 10 µs the replay paged out ~1.7x as fast as live and over-advised static hot sets by up
/// to 26% (the same records replayed at both costs). A machine where page-out is cheaper or
/// dearer moves the time-quota-bound figures with it.
pub const DEFAULT_PAGEOUT_NS_PER_PAGE: u64 = 17_000;

impl Default for CostModel {
    fn default() -> Self {
        Self {
            pageout_ns_per_page: DEFAULT_PAGEOUT_NS_PER_PAGE,
            cold_ns_per_page: 100,
            willneed_ns_per_page: 100,
            collapse_ns_per_page: 500,
            pagemap_ns_per_page: 10,
        }
    }
}

impl CostModel {
    /// The time `bytes` of `advice` take.
    pub fn ns(&self, advice: Advice, bytes: u64) -> u64 {
        let per = match advice {
            Advice::Pageout => self.pageout_ns_per_page,
            Advice::Cold => self.cold_ns_per_page,
            Advice::Willneed => self.willneed_ns_per_page,
            Advice::Collapse => self.collapse_ns_per_page,
            // The actuator issues `split` as a page-out of one page and a cold per 2 MiB (the
            // cold dominates); with no kpageflags in a record, it advises every block.
            Advice::Split => self.cold_ns_per_page,
        };
        bytes.div_ceil(PAGE).saturating_mul(per)
    }
}

/// What the replay has paged out and the record has not shown accessed since, shared by
/// the what-if actuator (page-outs, pagemap reads), the refault guard's page-state reads
/// and the driver (recorded accesses bring pages back).
#[derive(Clone)]
pub struct Residency(Arc<Mutex<Refaults>>);

impl Residency {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Refaults::new(u64::MAX, 1))))
    }
    /// The model (a poisoned lock still holds a usable model: it is plain data).
    pub fn lock(&self) -> MutexGuard<'_, Refaults> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for Residency {
    fn default() -> Self {
        Self::new()
    }
}

/// The simulated system under the what-if actuator (see the module doc).
pub struct ReplaySys {
    pub cost: CostModel,
    pub residency: Residency,
    /// The virtual clock, ns: the driver sets it to each frame's recorded time; advice, pagemap
    /// reads and the pace's waits advance it.
    pub clock_ns: u64,
    /// Pieces advised since the driver last took them: target, range, advice.
    pub advised: Vec<(TargetId, AddrRange, Advice)>,
}

impl ReplaySys {
    pub fn new(cost: CostModel, residency: Residency) -> Self {
        Self {
            cost,
            residency,
            clock_ns: 0,
            advised: Vec::new(),
        }
    }
}

impl ActuatorSys for ReplaySys {
    fn process_madvise(
        &mut self,
        target: &Target<'_>,
        iov: &[AddrRange],
        advice: Advice,
    ) -> Result<u64, Errno> {
        let bytes: u64 = iov.iter().map(AddrRange::len).sum();
        self.clock_ns = self.clock_ns.saturating_add(self.cost.ns(advice, bytes));
        let mut res = (advice == Advice::Pageout).then(|| self.residency.lock());
        for r in iov {
            if let Some(m) = res.as_mut() {
                m.advised(target.id().0, *r, 0, self.clock_ns / 1000);
            }
            self.advised.push((target.id(), *r, advice));
        }
        Ok(bytes)
    }
    /// No swap gauge is recorded: the swap headroom rail never stops a replay.
    fn swap(&mut self) -> std::io::Result<SwapStat> {
        Ok(SwapStat {
            total: u64::MAX / 2,
            free: u64::MAX / 2,
        })
    }
    fn now_ns(&mut self) -> u64 {
        self.clock_ns
    }
    fn sleep_ns(&mut self, ns: u64) {
        self.clock_ns = self.clock_ns.saturating_add(ns);
    }
    fn pagemap(
        &mut self,
        target: &Target<'_>,
        start: u64,
        nr_pages: usize,
        out: &mut Vec<PagemapEntry>,
    ) -> std::io::Result<()> {
        let page = engine::kernel::host::page_size();
        self.clock_ns = self
            .clock_ns
            .saturating_add((nr_pages as u64).saturating_mul(self.cost.pagemap_ns_per_page));
        out.clear();
        out.resize(nr_pages, PagemapEntry(PM_PRESENT));
        let range = AddrRange::new(start, start + nr_pages as u64 * page);
        for r in self.residency.lock().pieces(target.id().0, range) {
            let (a, b) = ((r.start - start) / page, (r.end - start).div_ceil(page));
            for e in &mut out[a as usize..(b as usize).min(nr_pages)] {
                *e = PagemapEntry(PM_SWAP | 1);
            }
        }
        Ok(())
    }
}

/// The metrics a record can give the schemes: page states from the replay's residency model
/// (the refault guard); no system metrics (a record holds none).
pub struct ReplayMetrics(pub Residency);

impl MetricSource for ReplayMetrics {
    fn meminfo(&self, _node: Option<u32>) -> Result<engine::kernel::meminfo::MemInfo, MetricError> {
        Err(MetricError("the record holds no system metrics".into()))
    }
    fn some_mem_psi_total_us(&self, _cgroup: Option<&str>) -> Result<u64, MetricError> {
        Err(MetricError("the record holds no PSI".into()))
    }
    fn cgroup_memory(
        &self,
        cgroup: &str,
    ) -> Result<engine::kernel::cgroup::MemoryUsage, MetricError> {
        Err(MetricError(format!(
            "the record holds no memory use of cgroup {cgroup}"
        )))
    }
    fn page_states(
        &self,
        target: TargetId,
        range: AddrRange,
        out: &mut Vec<PageState>,
    ) -> Result<(), MetricError> {
        let first = range.start / PAGE * PAGE;
        let n = range.end.div_ceil(PAGE) - range.start / PAGE;
        let base = out.len();
        out.resize(base + n as usize, PageState::Present);
        for r in self
            .0
            .lock()
            .pieces(target.0, AddrRange::new(first, first + n * PAGE))
        {
            let (a, b) = ((r.start - first) / PAGE, (r.end - first).div_ceil(PAGE));
            for s in &mut out[base + a as usize..base + (b.min(n)) as usize] {
                *s = PageState::Out;
            }
        }
        Ok(())
    }
}

const PAGE: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts};
    use engine::{AdviceRequest, ApplyErrorKind};

    fn req(start: u64, end: u64) -> AdviceRequest {
        AdviceRequest {
            target: TargetId(1),
            range: AddrRange::new(start, end),
            advice: Advice::Pageout,
            scheme: 0,
        }
    }

    /// The real actuator over the replay's system: costed per page, cut at the recorded
    /// mappings, and a second page-out of the same range cut out as not resident (refunded),
    /// as `madvd run` does with memory the kernel paged out.
    #[test]
    fn page_out_costed_cut_at_mappings_and_not_resident_the_second_time() {
        let page = engine::kernel::host::page_size();
        if page != PAGE {
            // The figures below are in 4 KiB pages: say so instead of passing silently.
            eprintln!("SKIP: host page size {page} B, this test's figures are in 4 KiB pages");
            return;
        }
        let res = Residency::new();
        let mut act = Actuator::with_sys(
            ReplaySys::new(CostModel::default(), res.clone()),
            ActuatorConfig::default(),
        );
        let t = [Target::simulated(
            TargetId(1),
            u32::MAX,
            [AddrRange::new(0x2000, 0x8000)],
        )];
        let r = act.apply(&t, &[req(0x1000, 0x3000)], ApplyOpts::default());
        let o = &r.outcomes[0];
        assert_eq!((o.bytes_applied, o.bytes_resident), (0x1000, 0x1000));
        assert_eq!(o.errors, vec![(ApplyErrorKind::Unmapped, 0x1000)]);
        // One page paged out (the model's page-out cost); the pagemap entry read before it is
        // not charged to the time quota (engine/src/actuator/apply.rs, the residency cut).
        assert_eq!(o.elapsed_ns, DEFAULT_PAGEOUT_NS_PER_PAGE);
        assert_eq!(
            res.lock().pieces(1, AddrRange::new(0, 0x8000)),
            vec![AddrRange::new(0x2000, 0x3000)]
        );
        // Again over 0x2000..0x4000: the page already out is cut out, the other advised.
        let r = act.apply(&t, &[req(0x2000, 0x4000)], ApplyOpts::default());
        let o = &r.outcomes[0];
        assert_eq!((o.bytes_applied, o.not_resident()), (0x1000, 0x1000));
        assert!(!o.wholly_skipped());
        let r = act.apply(&t, &[req(0x2000, 0x4000)], ApplyOpts::default());
        assert!(r.outcomes[0].wholly_skipped());
        // The guard reads the same model.
        let mut states = Vec::new();
        ReplayMetrics(res.clone())
            .page_states(TargetId(1), AddrRange::new(0x1000, 0x5000), &mut states)
            .unwrap();
        use PageState::{Out, Present};
        assert_eq!(states, vec![Present, Out, Out, Present]);
        // The record shows 0x2000..0x3000 accessed: it is back, and advised again.
        let f = crate::record::Frame {
            t_us: 1_000_000,
            aggr: 1,
            targets: vec![crate::record::FrameTarget {
                id: 1,
                regions: vec![[0x2000, 0x3000, 1, 0]],
                mappings: Vec::new(),
                absent: Vec::new(),
                seen: Vec::new(),
            }],
            cgroups: Vec::new(),
        };
        res.lock().frame(&f);
        let r = act.apply(&t, &[req(0x2000, 0x4000)], ApplyOpts::default());
        assert_eq!(
            (r.outcomes[0].bytes_applied, r.outcomes[0].not_resident()),
            (0x1000, 0x1000)
        );
    }

    /// The pace waits on the virtual clock: what a round cannot pass within a second is
    /// reported paced, and the clock has moved by the waits.
    #[test]
    fn the_pace_waits_on_the_virtual_clock() {
        let mut act = Actuator::with_sys(
            ReplaySys::new(CostModel::default(), Residency::new()),
            ActuatorConfig::default(),
        );
        let t = [Target::simulated(
            TargetId(1),
            u32::MAX,
            [AddrRange::new(0, 64 << 20)],
        )];
        let r = act.apply(
            &t,
            &[req(0, 64 << 20)],
            ApplyOpts {
                pace_bytes_per_s: Some(16 << 20),
                ..ApplyOpts::default()
            },
        );
        let paced = r.outcomes[0].error_bytes(ApplyErrorKind::Paced);
        assert!(paced > 0, "{r:?}");
        assert!(r.outcomes[0].bytes_applied <= 20 << 20, "{r:?}");
        assert!(act.sys().clock_ns >= 900_000_000, "{}", act.sys().clock_ns);
    }
}
