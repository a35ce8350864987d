//! The what-if actuator: instead of calling `process_madvise`, it reports every request as
//! applied in full, with the time it would have taken from a per-page cost model. The report
//! goes back through the same `account` / feedback path as a real one, so quota charging
//! (by size and by time) and the monitor's age reset act as in `madvd run`.

use engine::actuator::plan_range;
use engine::{AddrRange, Advice, AdviceRequest, ApplyReport, RangeOutcome, TargetId};

/// Per-page cost of each advice, ns: what the time quota is charged. The defaults are
/// estimates from the live runs of docs/performance.md "Replay vs reality" (actuation time
/// over bytes advised), not a bench: a first page-out compresses each resident page into
/// zram (~10 µs a page there); paging out again a range still out since its last page-out
/// only walks swap entries (~0.2 µs); cold and willneed walk page tables; collapse copies.
/// `--pageout-ns-per-page` overrides the first figure.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct CostModel {
    pub pageout_ns_per_page: u64,
    /// Pageout of pages the record shows not accessed since the replay last paged them out.
    pub repeat_pageout_ns_per_page: u64,
    pub cold_ns_per_page: u64,
    pub willneed_ns_per_page: u64,
    pub collapse_ns_per_page: u64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            pageout_ns_per_page: 10_000,
            repeat_pageout_ns_per_page: 200,
            cold_ns_per_page: 100,
            willneed_ns_per_page: 100,
            collapse_ns_per_page: 500,
        }
    }
}

impl CostModel {
    /// The time `bytes` of `advice` take, `out` of them paged out already (pageout only).
    pub fn ns(&self, advice: Advice, bytes: u64, out: u64) -> u64 {
        let pages = |b: u64| b.div_ceil(4096);
        let out = out.min(bytes);
        match advice {
            Advice::Pageout => pages(bytes - out)
                .saturating_mul(self.pageout_ns_per_page)
                .saturating_add(pages(out).saturating_mul(self.repeat_pageout_ns_per_page)),
            Advice::Cold => pages(bytes).saturating_mul(self.cold_ns_per_page),
            Advice::Willneed => pages(bytes).saturating_mul(self.willneed_ns_per_page),
            Advice::Collapse => pages(bytes).saturating_mul(self.collapse_ns_per_page),
        }
    }
}

/// Report `reqs` as applied (a dry run in the report's terms: nothing was touched). Where
/// the record has the target's mappings (`mappings(target)` is `Some`), each request is cut
/// at them by the live actuator's own planning (`engine::actuator::plan_range`): what falls
/// outside is reported `Unmapped`, as `madvd run` reports it; else it is applied in full.
/// `out(target, range)`: bytes of `range` paged out by the replay and not accessed since.
pub fn apply(
    reqs: &[AdviceRequest],
    cost: &CostModel,
    mappings: impl Fn(TargetId) -> Option<Vec<AddrRange>>,
    out: impl Fn(TargetId, AddrRange) -> u64,
) -> ApplyReport {
    let outcomes = reqs
        .iter()
        .map(|r| {
            let mut pieces = Vec::new();
            let losses = match mappings(r.target) {
                Some(vmas) => {
                    plan_range(r.range, &vmas, r.advice, PAGE, 1 << 62, |p| pieces.push(p))
                }
                None => {
                    pieces.push(r.range);
                    Vec::new()
                }
            };
            let applied: u64 = pieces.iter().map(AddrRange::len).sum();
            let already: u64 = pieces.iter().map(|p| out(r.target, *p)).sum();
            let mut o = RangeOutcome::of(r, applied, cost.ns(r.advice, applied, already));
            o.errors = losses;
            o
        })
        .collect();
    ApplyReport {
        outcomes,
        gone: Vec::new(),
        dry_run: true,
    }
}

const PAGE: u64 = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_application_costed_per_page() {
        let req = AdviceRequest {
            target: TargetId(1),
            range: AddrRange::new(0x1000, 0x3000),
            advice: Advice::Pageout,
            scheme: 0,
        };
        let r = apply(&[req], &CostModel::default(), |_| None, |_, _| 0);
        assert_eq!(r.bytes_applied(), 0x2000);
        assert_eq!(r.elapsed_ns(), 20_000);
        // One page still out from an earlier page-out: charged at the repeat cost.
        let r = apply(&[req], &CostModel::default(), |_| None, |_, _| 0x1000);
        assert_eq!(r.elapsed_ns(), 10_200);
        assert!(r.outcomes[0].errors.is_empty());
        // Cut at the recorded mappings: the part outside is unmapped, as live.
        let vmas = vec![AddrRange::new(0x2000, 0x8000)];
        let r = apply(
            &[req],
            &CostModel::default(),
            |_| Some(vmas.clone()),
            |_, _| 0,
        );
        assert_eq!(r.bytes_applied(), 0x1000);
        assert_eq!(r.elapsed_ns(), 10_000);
        assert_eq!(
            r.outcomes[0].errors,
            vec![(engine::ApplyErrorKind::Unmapped, 0x1000)]
        );
    }
}
