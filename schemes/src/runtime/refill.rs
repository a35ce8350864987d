//! Refilling a window's size quota within the round (madvd's rule; the kernel has none).
//!
//! madvd charges the size quota for the bytes the actuator finds resident only: the rest is
//! refunded (`Schemes::account`, docs/architecture.md "Charging resident bytes only, and the
//! pace"). A refund helps only if the scheme walks again in the same window: with one apply
//! per window (`reclaim.ron`: apply interval = reset interval = 1 s) the refunded bytes were
//! lost, and a window whose walk met memory partly out (regions merged from paged-out and
//! resident memory; ranges the probe's own samples took out) advised a fraction of its quota.
//! Measured (the 1 GiB demo, 2026-12-06 21:46 UTC): from 12 s to 42 s the `reclaim` scheme's
//! windows allowed ~27 MB each and advised ~12 MB, the rest refunded as not resident (4.4 GB
//! refunded over the run); saved/oracle 0.69.
//!
//! So after the report of a round, a scheme whose walk stopped at its size quota and got
//! bytes back with nothing there (not resident, no huge page) walks again over the same
//! snapshot, from where its walk stopped (the quota's resume point), for the refunded
//! bytes: [`Schemes::plan_refill`]. The driver calls it after each report, up to
//! [`MAX_REFILLS`] times a round, and stops at a report with paced bytes (the pace is the
//! round's time budget; refilling then would only queue more for it). Ranges found wholly
//! out were learned (`known_out`) and are skipped; paced bytes are not a reason to refill.

use super::{apply_scheme, refault, resolve_cgroups, Schemes, WalkInput};
use crate::learn::HotSet;
use crate::quota::QuotaState;
use engine::{Advice, AdviceRequest, ApplyErrorKind, RangeOutcome, Snapshot};
use std::collections::HashMap;

/// At most this many refill walks follow a round's first walk.
pub const MAX_REFILLS: usize = 4;

/// A scheme's refill state within a round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Refill {
    /// The last walk stopped because the size quota was used up.
    stopped_at_quota: bool,
    /// The last report refunded bytes with nothing there.
    refunded: bool,
    /// The last report held bytes back for the pace.
    paced: bool,
}

impl Refill {
    /// The state after a walk.
    pub(super) fn after_walk(quota: &QuotaState) -> Self {
        Refill {
            stopped_at_quota: quota.exhausted(),
            ..Refill::default()
        }
    }

    /// One outcome of this scheme's requests came back.
    pub(super) fn note(&mut self, o: &RangeOutcome) {
        self.refunded |= o.nothing_there() > 0;
        self.paced |= o.error_bytes(ApplyErrorKind::Paced) > 0;
    }

    fn wanted(&self) -> bool {
        self.stopped_at_quota && self.refunded && !self.paced
    }
}

impl Schemes {
    /// More advice for this round (see the module doc): the walks of the schemes that
    /// stopped at their size quota and got bytes back with nothing there in the last report,
    /// over the same snapshot, for what the refunds left in their windows. Empty when none
    /// does. Call it after [`Schemes::account`], with the round's snapshot and time.
    pub fn plan_refill(&mut self, snap: &Snapshot, now_us: u64) -> Vec<AdviceRequest> {
        let mut out = Vec::new();
        for idx in 0..self.specs.len() {
            let st = &mut self.states[idx];
            let wanted = st.refill.wanted() && !st.quota.exhausted();
            // Once per report: what the report said is used up here.
            st.refill.refunded = false;
            st.refill.paced = false;
            if !wanted {
                continue;
            }
            self.walk(idx, snap, now_us, &mut out);
        }
        out
    }

    /// One walk of scheme `idx` over `snap` (its quota window set up), its requests appended
    /// to `out`: the cgroups its filters need, `apply_scheme`, the refill state after it, and
    /// the refault ledger's view of the page-outs it asks for.
    pub(super) fn walk(
        &mut self,
        idx: usize,
        snap: &Snapshot,
        now_us: u64,
        out: &mut Vec<AdviceRequest>,
    ) {
        let spec = &self.specs[idx];
        // The scheme's own state, and the pages the policy's other page-out schemes learned
        // hot (`crate::learn`: a page that came back is hot whichever scheme moved it).
        let (before, rest) = self.states.split_at_mut(idx);
        let (st, after) = rest.split_first_mut().expect("idx is a scheme");
        let learned_elsewhere: Vec<&HotSet> = before
            .iter()
            .chain(after.iter())
            .filter_map(|s| s.hot.as_ref())
            .collect();
        let cgroups = if st.region_filter.needs_cgroups() {
            resolve_cgroups(
                snap,
                now_us,
                &self.target_cgroups,
                &mut self.cgroup_cache,
                self.env.as_ref(),
            )
        } else {
            HashMap::new()
        };
        let first = out.len();
        let input = WalkInput {
            snap,
            cgroups: &cgroups,
            known_out: &self.known_out,
            learned_elsewhere: &learned_elsewhere,
        };
        apply_scheme(idx, spec, st, &input, out, &mut self.selected);
        st.refill = Refill::after_walk(&st.quota);
        if let Some(ledger) = &mut st.ledger {
            let reqs = out[first..].iter().filter(|r| r.advice == Advice::Pageout);
            refault::before_pageout(ledger, self.env.as_ref(), reqs.map(|r| (r.target, r.range)));
        }
    }
}
