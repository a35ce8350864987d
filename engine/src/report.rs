//! The actuator's apply report: the one value that flows backwards, to the schemes (quota
//! charging, stats) and to the monitor (a non-`stat` action resets the age of the regions it
//! was asked for, applied or not, as `damos_apply_scheme()` does in mm/damon/core.c 6.12).

use crate::advice::Advice;
use crate::region::{AddrRange, TargetId};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Why (part of) a range was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyErrorKind {
    /// The range (or part of it) is not mapped: a hole in the snapshot's VMAs, or ENOMEM from
    /// madvise (unmapped since the snapshot).
    Unmapped,
    /// The kernel refused the advice for this range (EINVAL: locked, PFNMAP, hugetlb, ...).
    Invalid,
    /// Temporary failure (EAGAIN: e.g. MADV_COLLAPSE could not get a huge page).
    Again,
    /// Out of memory while applying (ENOMEM from MADV_COLLAPSE's allocation).
    NoMemory,
    /// The target exited (ESRCH, or the pidfd reports it gone): it is dropped.
    TargetGone,
    /// EPERM: madvd lacks CAP_SYS_NICE or ptrace read access to the target.
    Permission,
    /// Not attempted: page-out stopped because free swap fell under the headroom.
    SwapHeadroom,
    /// Not attempted: refused by a safety rail (madvd itself, pid 1, kernel thread).
    Refused,
    /// Not attempted: dry run.
    DryRun,
    /// Not attempted: the run is stopping.
    Cancelled,
    /// Not attempted: the part of the range outside whole pages, or for `collapse` outside
    /// whole 2 MiB-aligned huge pages (the kernel would silently skip it).
    Unaligned,
    /// Not attempted: the pages were not resident (swapped out, or never faulted in) when
    /// the actuator read the range's pagemap just before advising it; page-out or
    /// deactivation would do nothing to them. Not charged to the size quota (refunded), and
    /// a range wholly not resident keeps its age (`actuator::resident`).
    NotResident,
    /// Not attempted: `split` found no huge page to split in these 2 MiB blocks when the
    /// actuator read their pagemap and `/proc/kpageflags` just before advising
    /// (`actuator::huge`): small pages, the huge zero page, nothing resident. Like
    /// `NotResident`: not charged to the size quota (refunded), a range wholly without one
    /// keeps its age, and the schemes skip it for a while (`known_out`).
    NotHuge,
    /// Not attempted: `collapse` found these 2 MiB blocks already one huge page each (the
    /// same pagemap and `/proc/kpageflags` read, `actuator::huge`): a `MADV_COLLAPSE` of them
    /// would do nothing but take the target's mmap lock and drain every CPU's LRU caches
    /// (`madvise_collapse`, mm/khugepaged.c 6.12). Like `NotHuge`: refunded, a range wholly
    /// huge keeps its age, and the schemes skip it for a while (`known_out`).
    AlreadyHuge,
    /// Not attempted: resident pages the idle cut (`actuator::idle`, where page_idle is the
    /// access check) does not know idle just before advising: read accessed since the cut
    /// marked them idle, or not marked long enough ago (the first advice of a range marks
    /// it). Refunded to the size quota like `NotResident`, and a range wholly cut (with what
    /// is not resident) keeps its age; unlike it, not "nothing there": the pages are in
    /// memory, and the next advice judges them again.
    NotIdle,
    /// Not attempted in this round: the page-out pace (`ApplyOpts::pace_bytes_per_s`) was
    /// used up; refunded, and the schemes plan it again at their next apply.
    Paced,
    /// Any other errno (0: the kernel returned a short count without one).
    Other(i32),
}

impl ApplyErrorKind {
    /// The one label of this kind, everywhere it is shown: metrics
    /// (`madvd_group_apply_errors_bytes_total{kind}`), `run`'s `errors` and the demo's
    /// `not_applied`. `Other(e)` is `errno_E`.
    pub fn label(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            ApplyErrorKind::Unmapped => "unmapped",
            ApplyErrorKind::Invalid => "invalid",
            ApplyErrorKind::Again => "again",
            ApplyErrorKind::NoMemory => "no_memory",
            ApplyErrorKind::TargetGone => "target_gone",
            ApplyErrorKind::Permission => "permission",
            ApplyErrorKind::SwapHeadroom => "swap_headroom",
            ApplyErrorKind::Refused => "refused",
            ApplyErrorKind::DryRun => "dry_run",
            ApplyErrorKind::Cancelled => "cancelled",
            ApplyErrorKind::Unaligned => "unaligned",
            ApplyErrorKind::NotResident => "not_resident",
            ApplyErrorKind::NotHuge => "not_huge",
            ApplyErrorKind::AlreadyHuge => "already_huge",
            ApplyErrorKind::NotIdle => "not_idle",
            ApplyErrorKind::Paced => "paced",
            ApplyErrorKind::Other(e) => return Cow::Owned(format!("errno_{e}")),
        })
    }
}

/// What happened to one requested range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeOutcome {
    pub target: TargetId,
    pub range: AddrRange,
    pub advice: Advice,
    /// Index of the scheme that asked for it.
    pub scheme: usize,
    pub bytes_requested: u64,
    pub bytes_applied: u64,
    /// Of `bytes_applied`, the bytes the actuator read resident in pagemap just before
    /// advising them (the rest of `bytes_applied` was advised without a residency read: the
    /// advice is not one the cut applies to, the scan bound was reached, or pagemap could
    /// not be read).
    #[serde(default)]
    pub bytes_resident: u64,
    /// Wall time spent applying it, ns (the time quota charges this).
    pub elapsed_ns: u64,
    /// Errors met while applying parts of the range, with the bytes each cost.
    pub errors: Vec<(ApplyErrorKind, u64)>,
    /// The lowest address of the pieces the pace held back ([`ApplyErrorKind::Paced`]), if
    /// any. The pace stops a request part-way and the pieces of a request go in address
    /// order, so every paced byte lies in `paced_from..range.end`: the monitor resets the age
    /// only below it (`Monitor::apply_report`) and the schemes' walk resumes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paced_from: Option<u64>,
}

impl RangeOutcome {
    /// The outcome of `req` with `bytes_applied` done in `elapsed_ns` and no error yet (the
    /// actuator's starting point; tests' fake actuators report full application with it).
    pub fn of(req: &crate::advice::AdviceRequest, bytes_applied: u64, elapsed_ns: u64) -> Self {
        RangeOutcome {
            target: req.target,
            range: req.range,
            advice: req.advice,
            scheme: req.scheme,
            bytes_requested: req.range.len(),
            bytes_applied,
            bytes_resident: 0,
            elapsed_ns,
            errors: Vec::new(),
            paced_from: None,
        }
    }

    pub fn applied(&self) -> bool {
        self.bytes_applied > 0
    }

    /// Bytes of `kind` among the errors.
    pub fn error_bytes(&self, kind: ApplyErrorKind) -> u64 {
        self.errors
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, b)| *b)
            .sum()
    }

    /// Bytes cut out because they were not resident ([`ApplyErrorKind::NotResident`]).
    pub fn not_resident(&self) -> u64 {
        self.error_bytes(ApplyErrorKind::NotResident)
    }

    /// Bytes cut out of a `split` because they held no huge page ([`ApplyErrorKind::NotHuge`]).
    pub fn not_huge(&self) -> u64 {
        self.error_bytes(ApplyErrorKind::NotHuge)
    }

    /// Bytes cut out of a `collapse` because they were huge pages already
    /// ([`ApplyErrorKind::AlreadyHuge`]).
    pub fn already_huge(&self) -> u64 {
        self.error_bytes(ApplyErrorKind::AlreadyHuge)
    }

    /// Bytes the actuator found nothing to act on in: not resident, (`split`) no huge page,
    /// or (`collapse`) a huge page already.
    pub fn nothing_there(&self) -> u64 {
        self.not_resident()
            .saturating_add(self.not_huge())
            .saturating_add(self.already_huge())
    }

    /// True when the actuator found nothing to act on in any byte of the range: nothing
    /// applied, some bytes not resident (or without a huge page, for `split`; huge already,
    /// for `collapse`), and the rest outside whole pages or unmapped — no byte of it left for
    /// a reason that may pass (a failure, the pace, a stop).
    pub fn wholly_nothing_there(&self) -> bool {
        self.nothing_there() > 0
            && self.wholly_left_for(&[
                ApplyErrorKind::NotResident,
                ApplyErrorKind::NotHuge,
                ApplyErrorKind::AlreadyHuge,
                ApplyErrorKind::Unaligned,
                ApplyErrorKind::Unmapped,
            ])
    }

    /// True when something was requested, nothing applied, and every byte left out was left
    /// out for one of `kinds`: the common shape of the `wholly_*` verdicts (and of the
    /// schemes' idle-cut follow-ups).
    pub fn wholly_left_for(&self, kinds: &[ApplyErrorKind]) -> bool {
        self.bytes_requested > 0
            && self.bytes_applied == 0
            && self.errors.iter().all(|(k, _)| kinds.contains(k))
    }

    /// Bytes charged at planning that the quota gets back: not resident, no huge page to
    /// split, huge already (`collapse`), not known idle by the idle cut
    /// ([`ApplyErrorKind::NotIdle`]), or held back by the pace ([`ApplyErrorKind::Paced`]).
    pub fn refund(&self) -> u64 {
        self.nothing_there()
            .saturating_add(self.error_bytes(ApplyErrorKind::NotIdle))
            .saturating_add(self.error_bytes(ApplyErrorKind::Paced))
    }

    /// True when no byte was advised because no byte of the range is mapped: a hole between
    /// the target's VMAs (reported `Unmapped` without a madvise call) or a range unmapped
    /// since the snapshot (ENOMEM), possibly with unaligned edges. Nothing is resident there,
    /// as in a wholly not-resident range; [`Self::wholly_nothing_there`] does not cover it
    /// (it asks for some not-resident bytes, and the actuator never reads a hole's pagemap).
    pub fn wholly_unmapped(&self) -> bool {
        self.error_bytes(ApplyErrorKind::Unmapped) > 0
            && self.wholly_left_for(&[ApplyErrorKind::Unmapped, ApplyErrorKind::Unaligned])
    }

    /// The part of the range the actuator was asked for and did not leave to the pace: all
    /// of it, or `range.start..paced_from`. Kernel rule for that part: its age is reset
    /// (`damos_apply_scheme()`, mm/damon/core.c 6.12); what the pace held back was never
    /// tried, like a range the quota did not reach, and keeps its age.
    pub fn reached(&self) -> AddrRange {
        match self.paced_from {
            Some(p) => AddrRange::new(self.range.start, p.clamp(self.range.start, self.range.end)),
            None => self.range,
        }
    }

    /// True when no byte of the range was advised because none was resident (or, for
    /// `split`, held a huge page, or was known idle by the idle cut) or the pace held all of
    /// it back: counted as filtered, so the kernel's age reset does not apply
    /// (`Monitor::apply_report`).
    pub fn wholly_skipped(&self) -> bool {
        self.bytes_requested > 0 && self.refund() >= self.bytes_requested
            || self.wholly_nothing_there()
    }
}

/// The report of one actuation round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    pub outcomes: Vec<RangeOutcome>,
    /// Targets found gone while applying: the caller drops them.
    pub gone: Vec<TargetId>,
    pub dry_run: bool,
}

impl ApplyReport {
    pub fn bytes_applied(&self) -> u64 {
        self.outcomes.iter().map(|o| o.bytes_applied).sum()
    }
    pub fn elapsed_ns(&self) -> u64 {
        self.outcomes.iter().map(|o| o.elapsed_ns).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::ApplyErrorKind;

    #[test]
    fn one_label_per_apply_error() {
        let all = [
            (ApplyErrorKind::Unmapped, "unmapped"),
            (ApplyErrorKind::Invalid, "invalid"),
            (ApplyErrorKind::Again, "again"),
            (ApplyErrorKind::NoMemory, "no_memory"),
            (ApplyErrorKind::TargetGone, "target_gone"),
            (ApplyErrorKind::Permission, "permission"),
            (ApplyErrorKind::SwapHeadroom, "swap_headroom"),
            (ApplyErrorKind::Refused, "refused"),
            (ApplyErrorKind::DryRun, "dry_run"),
            (ApplyErrorKind::Cancelled, "cancelled"),
            (ApplyErrorKind::Unaligned, "unaligned"),
            (ApplyErrorKind::NotResident, "not_resident"),
            (ApplyErrorKind::NotHuge, "not_huge"),
            (ApplyErrorKind::AlreadyHuge, "already_huge"),
            (ApplyErrorKind::NotIdle, "not_idle"),
            (ApplyErrorKind::Paced, "paced"),
            (ApplyErrorKind::Other(12), "errno_12"),
        ];
        for (k, want) in all {
            assert_eq!(k.label(), want, "{k:?}");
            // The label is the serde name, except for `Other`, which carries its errno.
            if !matches!(k, ApplyErrorKind::Other(_)) {
                assert_eq!(serde_json::to_value(k).unwrap(), want, "{k:?}");
            }
        }
    }
}
