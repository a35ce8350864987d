//! Following up the idle cut's first contact (madvd's rule; the kernel has no idle cut).
//!
//! Where page_idle is the access check, the actuator's idle cut (`engine::actuator::idle`)
//! pages out nothing of a range it meets for the first time: it marks the range's pages idle
//! and keeps them in (`ApplyErrorKind::NotIdle`, refunded, the range's age kept); the next
//! advice of the range, at least 750 ms later, reads which pages were accessed since and
//! pages out the others. That next advice came only if the region matched the scheme's
//! pattern again at the scheme's next apply. A region whose hot pages are scattered among
//! idle ones reads a small count that flickers to zero (two aggregations in three in the
//! lab's scattered set): `reclaim.ron`'s `lukewarm` (accesses ≥ 1) matched it again one
//! apply in three, `reclaim` (accesses 0) only while a chance run of zeros lasted. Measured
//! (docs/performance.md, "The scattered set with follow-ups of the idle cut", diagnostic run
//! of 2026-12-07 23:46 UTC): `lukewarm` spent 0.5 s of its 5 s of time quota in 60 s, and
//! half of the idle memory stayed in.
//!
//! So a range the cut kept wholly in (nothing advised; every byte not idle, not resident,
//! unaligned or unmapped) is followed up: at the scheme's next apply it is walked again
//! whatever its region reads then — under the same quota, filters and known-out skips, and
//! ahead of the score floor (the scheme chose it already). The page_idle bits read then are
//! stronger evidence than one more aggregation's count: the pages read accessed stay in.
//! Once: a follow-up's own outcome is not followed up again (a range wholly hot would be
//! read every second for nothing). Refill walks of the same round do not take them (the
//! marks are too young then). Without the idle cut (every other access check) no outcome
//! carries `NotIdle` and nothing changes.

use engine::rangeset::RangeSet;
use engine::{AddrRange, Advice, ApplyErrorKind, RangeOutcome, TargetId};
use std::collections::{HashMap, VecDeque};

/// A scheme's follow-ups.
#[derive(Debug, Default)]
pub(super) struct FollowUp {
    /// Noted from the reports since the last apply: walked at the next.
    due: HashMap<TargetId, RangeSet>,
    /// Taken at this apply: what its walks (the first and the refills) may follow up.
    current: HashMap<TargetId, RangeSet>,
    /// Followed up by this apply's walks: their outcomes are not noted again.
    asked: HashMap<TargetId, RangeSet>,
}

impl FollowUp {
    /// At a scheme's apply, before its walk: the ranges noted since become this apply's.
    pub(super) fn begin_apply(&mut self) {
        self.current = std::mem::take(&mut self.due);
        self.asked.clear();
    }

    /// The parts of `range` of `target` to follow up now, in order (empty: none).
    pub(super) fn pieces(&self, target: TargetId, range: AddrRange) -> VecDeque<AddrRange> {
        let mut out = VecDeque::new();
        let Some(set) = self.current.get(&target) else {
            return out;
        };
        let mut rest = range;
        while let Some(k) = set.first_overlap(rest) {
            let (a, b) = (k.start.max(rest.start), k.end.min(rest.end));
            if a >= b {
                break;
            }
            out.push_back(AddrRange::new(a, b));
            rest = AddrRange::new(b, rest.end);
        }
        out
    }

    /// `range` of `target` was walked as a follow-up.
    pub(super) fn asked(&mut self, target: TargetId, range: AddrRange) {
        self.asked.entry(target).or_default().insert(range);
    }

    /// One outcome of this scheme's requests: a range the idle cut kept wholly in is due
    /// at the next apply, unless it was a follow-up already.
    pub(super) fn note(&mut self, o: &RangeOutcome) {
        if !first_contact(o) {
            return;
        }
        if self
            .asked
            .get(&o.target)
            .is_some_and(|s| s.bytes_in(o.range) > 0)
        {
            return;
        }
        self.due.entry(o.target).or_default().insert(o.range);
    }

    /// Bytes due at the next apply (tests).
    #[cfg(test)]
    pub(super) fn due_bytes(&self) -> u64 {
        self.due
            .values()
            .flat_map(|s| s.ranges())
            .map(|r| r.len())
            .sum()
    }
}

/// A page-out or cold outcome the idle cut kept wholly in: nothing advised, some bytes not
/// idle, the rest not resident, unaligned or unmapped.
fn first_contact(o: &RangeOutcome) -> bool {
    matches!(o.advice, Advice::Pageout | Advice::Cold)
        && o.error_bytes(ApplyErrorKind::NotIdle) > 0
        && o.wholly_left_for(&[
            ApplyErrorKind::NotIdle,
            ApplyErrorKind::NotResident,
            ApplyErrorKind::Unaligned,
            ApplyErrorKind::Unmapped,
        ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::AdviceRequest;

    const M: u64 = 1 << 20;

    fn outcome(
        advice: Advice,
        a: u64,
        b: u64,
        applied: u64,
        errs: &[(ApplyErrorKind, u64)],
    ) -> RangeOutcome {
        let mut o = RangeOutcome::of(
            &AdviceRequest {
                target: TargetId(1),
                range: AddrRange::new(a, b),
                advice,
                scheme: 0,
            },
            applied,
            1000,
        );
        o.errors = errs.to_vec();
        o
    }

    /// Only wholly kept-in page-outs (and colds) are due; a follow-up's own outcome is not
    /// due again; pieces are the due parts of a range, in order.
    #[test]
    fn wholly_kept_in_ranges_are_followed_up_once() {
        let ni = ApplyErrorKind::NotIdle;
        let mut f = FollowUp::default();
        f.note(&outcome(
            Advice::Pageout,
            0,
            4 * M,
            0,
            &[(ni, 3 * M), (ApplyErrorKind::NotResident, M)],
        ));
        f.note(&outcome(Advice::Cold, 8 * M, 10 * M, 0, &[(ni, 2 * M)]));
        // Partly advised (judged): not due. Failed besides: not due. Not a page-out: not due.
        f.note(&outcome(Advice::Pageout, 12 * M, 14 * M, M, &[(ni, M)]));
        f.note(&outcome(
            Advice::Pageout,
            16 * M,
            18 * M,
            0,
            &[(ni, M), (ApplyErrorKind::Again, M)],
        ));
        f.note(&outcome(
            Advice::Willneed,
            20 * M,
            22 * M,
            0,
            &[(ni, 2 * M)],
        ));
        assert_eq!(f.due_bytes(), 6 * M);
        f.begin_apply();
        assert_eq!(f.due_bytes(), 0);
        let p: Vec<_> = f.pieces(TargetId(1), AddrRange::new(2 * M, 9 * M)).into();
        assert_eq!(
            p,
            [AddrRange::new(2 * M, 4 * M), AddrRange::new(8 * M, 9 * M)]
        );
        assert!(f.pieces(TargetId(2), AddrRange::new(0, 9 * M)).is_empty());
        // Followed up and kept in again: not due again; a new first contact is.
        f.asked(TargetId(1), AddrRange::new(2 * M, 4 * M));
        f.note(&outcome(Advice::Pageout, 2 * M, 4 * M, 0, &[(ni, 2 * M)]));
        f.note(&outcome(Advice::Pageout, 30 * M, 32 * M, 0, &[(ni, 2 * M)]));
        assert_eq!(f.due_bytes(), 2 * M);
    }
}
