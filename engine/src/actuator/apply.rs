//! One round: group the requests by target and advice, plan each, issue the pieces through
//! the kernel's vector rule ([`vector_madvise`]), and account every byte in the report.

use super::cut::{plan_range, HPAGE_PMD_SIZE};
use super::idle::idle_runs;
use super::pace::{Pacer, PACE_PROBE_BYTES, PACE_ROUND_NS, PACE_STEP_NS};
use super::resident::SCAN_BATCH_PAGES;
use super::{Actuator, ActuatorError, ActuatorSys, ApplyOpts, Target};
use crate::advice::{Advice, AdviceRequest};
use crate::kernel::host::align_down;
use crate::kernel::madvise::{vector_madvise, Iovec, Step, VectorCall, MAX_RW_COUNT};
use crate::kernel::pagemap::PagemapEntry;
use crate::region::{AddrRange, TargetId};
use crate::report::{ApplyErrorKind, ApplyReport, RangeOutcome};
use nix::errno::Errno;
use std::sync::atomic::Ordering;

/// Request indices per advice, in order of first appearance.
type AdviceGroups = Vec<(Advice, Vec<usize>)>;

/// A contiguous, page-aligned part of one request, within one VMA.
#[derive(Clone, Copy, Debug)]
pub(super) struct Piece {
    pub req: usize,
    pub range: AddrRange,
    /// Read resident in pagemap just before advising (the residency cut), or, for `split`,
    /// read to be a huge page (`huge.rs`).
    pub resident: bool,
    /// The request's bytes this piece answers for in the report: its length, except for
    /// `split`, whose page-out of one page answers for the whole 2 MiB block and whose cold
    /// for none (the block counts applied when its split was advised).
    pub bytes: u64,
}

impl Piece {
    fn new(req: usize, range: AddrRange, resident: bool) -> Self {
        Piece {
            req,
            range,
            resident,
            bytes: range.len(),
        }
    }
}

impl Iovec for Piece {
    fn range(&self) -> AddrRange {
        self.range
    }
    /// A part of the piece. A piece answering for other bytes than its length (`split`'s) is
    /// never cut by the vector (one page, or a cold under no byte budget); were it cut, its
    /// head would keep the bytes.
    fn with_range(self, range: AddrRange) -> Self {
        let bytes = if self.bytes == self.range.len() {
            range.len()
        } else if range.start == self.range.start {
            self.bytes
        } else {
            0
        };
        Piece {
            range,
            bytes,
            ..self
        }
    }
}

impl<S: ActuatorSys> Actuator<S> {
    /// Bytes per call: `MAX_RW_COUNT` rounded down to the page size.
    fn cap(&self) -> u64 {
        align_down(MAX_RW_COUNT, self.page)
    }

    /// Apply `requests` to `targets` (matched by [`TargetId`]). A request whose target is not
    /// in `targets` is reported `TargetGone`. Never panics on kernel answers.
    pub fn apply(
        &mut self,
        targets: &[Target<'_>],
        requests: &[AdviceRequest],
        opts: ApplyOpts<'_>,
    ) -> ApplyReport {
        let mut report = ApplyReport {
            outcomes: requests.iter().map(|r| RangeOutcome::of(r, 0, 0)).collect(),
            gone: Vec::new(),
            dry_run: opts.dry_run,
        };
        let calls_before = self.stats;
        let opts = ApplyOpts {
            pace_bytes_per_s: opts.pace_bytes_per_s.filter(|_| self.config.pace),
            pace_time_ns_per_s: opts.pace_time_ns_per_s.filter(|_| self.config.pace),
            ..opts
        };
        self.round_start_ns = self.sys.now_ns();

        // Group by target, then by advice, in order of first appearance (the schemes order
        // requests by priority; a cut by cancel or headroom then hits the later ones).
        let mut groups: Vec<(TargetId, AdviceGroups)> = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let g = match groups.iter().position(|(t, _)| *t == r.target) {
                Some(p) => p,
                None => {
                    groups.push((r.target, Vec::new()));
                    groups.len() - 1
                }
            };
            let adv = &mut groups[g].1;
            match adv.iter_mut().find(|(a, _)| *a == r.advice) {
                Some((_, v)) => v.push(i),
                None => adv.push((r.advice, vec![i])),
            }
        }

        let mut cancelled = false;
        let mut headroom_hit = false;
        let mut scan_left = self.config.resident_scan_max;
        for (tid, by_advice) in &groups {
            let Some(target) = targets.iter().find(|t| t.id() == *tid) else {
                for (_, idxs) in by_advice {
                    for &i in idxs {
                        let o = &mut report.outcomes[i];
                        add_error(&mut o.errors, ApplyErrorKind::TargetGone, o.bytes_requested);
                    }
                }
                report.gone.push(*tid);
                continue;
            };
            if let Some(reason) = target.refusal() {
                if self.refused_logged.insert(target.pid()) {
                    tracing::warn!(
                        "{}",
                        ActuatorError::Refused {
                            pid: target.pid(),
                            reason
                        }
                    );
                }
                for (_, idxs) in by_advice {
                    for &i in idxs {
                        let o = &mut report.outcomes[i];
                        add_error(&mut o.errors, ApplyErrorKind::Refused, o.bytes_requested);
                    }
                }
                continue;
            }
            let mut stop: Option<ApplyErrorKind> = None;
            for (advice, idxs) in by_advice {
                let mut pieces = Vec::new();
                for &i in idxs {
                    let losses = plan_range(
                        requests[i].range,
                        target.vmas(),
                        *advice,
                        self.page,
                        self.cap(),
                        |range| pieces.push(Piece::new(i, range, false)),
                    );
                    for (k, b) in losses {
                        add_error(&mut report.outcomes[i].errors, k, b);
                    }
                }
                if self.config.resident_cut
                    && !opts.dry_run
                    && matches!(advice, Advice::Pageout | Advice::Cold)
                {
                    pieces = self.cut_resident(target, pieces, &mut report, &mut scan_left);
                }
                if !opts.dry_run && matches!(advice, Advice::Split | Advice::Collapse) {
                    // `split`: only the blocks that are huge pages; `collapse`: only those
                    // that are not (`huge.rs`).
                    pieces = self.huge_check(target, *advice, pieces, &mut report, &mut scan_left);
                }
                let runs = if *advice == Advice::Split {
                    // For each block left a page-out of its first page and a cold of all of
                    // it, in that order.
                    let (first, whole) = split_pieces(&pieces, self.page);
                    vec![(Advice::Pageout, first), (Advice::Cold, whole)]
                } else {
                    vec![(*advice, pieces)]
                };
                for (advice, mut pieces) in runs {
                    Run {
                        act: self,
                        target,
                        advice,
                        opts,
                        report: &mut report,
                        stop: &mut stop,
                        cancelled: &mut cancelled,
                        headroom_hit: &mut headroom_hit,
                        rest: None,
                        dt: 0,
                        left: 0,
                    }
                    .run(&mut pieces);
                }
            }
            if stop == Some(ApplyErrorKind::TargetGone) {
                report.gone.push(*tid);
            }
        }
        self.forget_marks(&report.gone);
        if !headroom_hit
            && self.in_headroom
            && groups.iter().any(|(_, a)| {
                a.iter()
                    .any(|(a, _)| matches!(a, Advice::Pageout | Advice::Split))
            })
        {
            // A page-out round went through without hitting the headroom: we are out of it.
            if !opts.dry_run && !cancelled {
                self.in_headroom = false;
                tracing::info!("free swap is above the headroom again: page-out resumes");
            }
        }
        let s = self.stats;
        tracing::debug!(
            targets = groups.len(),
            requests = requests.len(),
            bytes_applied = report.bytes_applied(),
            calls = s.calls - calls_before.calls,
            iovecs = s.iovecs - calls_before.iovecs,
            short_returns = s.short_returns - calls_before.short_returns,
            failed_pieces = s.pieces_failed - calls_before.pieces_failed,
            gone = report.gone.len(),
            dry_run = opts.dry_run,
            cancelled,
            "actuator round"
        );
        report
    }
}

impl<S: ActuatorSys> Actuator<S> {
    /// The residency cut (`resident.rs`): each piece read in pagemap (batched, while
    /// `scan_left` lasts) and replaced by its resident runs; the rest reported `NotResident`.
    /// With `idle_cut`, the resident pages the idle cut does not know idle are cut too
    /// (`idle.rs`), reported `NotIdle`, and marked idle where due.
    /// The reads' time is not charged (see `scan_pieces`). A piece that cannot be read is
    /// kept whole (not marked resident), and the target is read no further this round.
    fn cut_resident(
        &mut self,
        target: &Target<'_>,
        pieces: Vec<Piece>,
        report: &mut ApplyReport,
        scan_left: &mut u64,
    ) -> Vec<Piece> {
        let page = self.page;
        let batch = SCAN_BATCH_PAGES as u64 * page;
        let idle_cut = self.config.idle_cut;
        let tid = target.id();
        self.scan_pieces(
            target,
            pieces,
            (report, scan_left),
            (batch, "residency cut"),
            |act, req, chunk, entries, report, out| {
                // The idle cut (`idle.rs`): verdicts on the same entries.
                let idle = if idle_cut {
                    act.idle_verdicts(tid, chunk, entries)
                } else {
                    None
                };
                let (gone, hot) =
                    idle_runs(chunk, page, entries, &idle.unwrap_or_default(), |range| {
                        out.push(Piece::new(req, range, true))
                    });
                act.stats.not_resident += gone;
                act.stats.not_idle += hot;
                let errors = &mut report.outcomes[req].errors;
                add_error(errors, ApplyErrorKind::NotResident, gone);
                add_error(errors, ApplyErrorKind::NotIdle, hot);
                true
            },
        )
    }

    /// The pagemap walk the residency cut and the huge-page check (`huge.rs`) share: each
    /// piece read in chunks of `batch` bytes while `scan_left` lasts (the reads' time is not
    /// charged to the time quota). `chunk(act, req, chunk, entries, report, out)` pushes
    /// what it keeps of the chunk to `out` and returns whether to go on reading the target.
    /// Past the bound, or once a read failed (`what` names the cut in the debug line), the
    /// rest of each piece goes on whole and unchecked (`resident` clear: the pieces come from
    /// `plan_range` unchecked).
    pub(super) fn scan_pieces(
        &mut self,
        target: &Target<'_>,
        pieces: Vec<Piece>,
        (report, scan_left): (&mut ApplyReport, &mut u64),
        (batch, what): (u64, &str),
        mut chunk: impl FnMut(
            &mut Self,
            usize,
            AddrRange,
            &[PagemapEntry],
            &mut ApplyReport,
            &mut Vec<Piece>,
        ) -> bool,
    ) -> Vec<Piece> {
        let page = self.page;
        let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
        let mut entries = Vec::new();
        let mut failed = false;
        for p in pieces {
            let mut a = p.range.start;
            while a < p.range.end {
                let b = p.range.end.min(a.saturating_add(batch));
                let c = AddrRange::new(a, b);
                if failed || *scan_left < c.len() {
                    // Uncut: the rest of the piece goes whole.
                    out.push(Piece::new(p.req, AddrRange::new(a, p.range.end), false));
                    break;
                }
                // Not charged to the time quota: its throughput estimate (bytes charged per
                // ns charged, `damos_set_effective_quota()`) counts advised bytes, and the
                // reads of memory found out (refunded, so not in those bytes) made it a
                // fraction of the calls' real throughput (the short demo: 4.6 MB per 100 ms
                // after a first window that read ~200 MB out and advised 1 MiB). Bounded
                // by `resident_scan_max` per round instead.
                let read =
                    self.sys
                        .pagemap(target, c.start, (c.len() / page) as usize, &mut entries);
                if let Err(e) = read {
                    tracing::debug!(pid = target.pid(), "{what}: pagemap: {e}");
                    failed = true;
                    out.push(Piece::new(p.req, AddrRange::new(a, p.range.end), false));
                    break;
                }
                *scan_left -= c.len();
                self.stats.resident_scanned += c.len();
                failed = !chunk(self, p.req, c, &entries, report, &mut out);
                a = b;
            }
        }
        out
    }
}

/// Append `range` of request `req` to `out`, extending the last piece when it continues it
/// with the same `resident` mark.
pub(super) fn push_run(out: &mut Vec<Piece>, req: usize, range: AddrRange, resident: bool) {
    if let Some(last) = out.last_mut() {
        if last.req == req && last.resident == resident && last.range.end == range.start {
            last.range.end = range.end;
            last.bytes = last.range.len();
            return;
        }
    }
    out.push(Piece::new(req, range, resident));
}

/// One target and one advice in flight: the actuator's side of [`vector_madvise`].
struct Run<'r, 'a, S: ActuatorSys> {
    act: &'r mut Actuator<S>,
    target: &'r Target<'a>,
    advice: Advice,
    opts: ApplyOpts<'r>,
    report: &'r mut ApplyReport,
    /// A target-level error: nothing more is tried on this target in this round.
    stop: &'r mut Option<ApplyErrorKind>,
    cancelled: &'r mut bool,
    headroom_hit: &'r mut bool,
    /// Why the budget stopped the vector (what the rest is reported as).
    rest: Option<ApplyErrorKind>,
    /// Wall time of the last call, ns.
    dt: u64,
    /// Bytes of the pieces not issued yet (the pace waits for no more than this).
    left: u64,
}

impl<S: ActuatorSys> Run<'_, '_, S> {
    /// What everything left is reported as, if nothing more may be issued now.
    fn rest_kind(&mut self) -> Option<ApplyErrorKind> {
        if let Some(k) = *self.stop {
            Some(k)
        } else if self.opts.dry_run {
            Some(ApplyErrorKind::DryRun)
        } else if *self.cancelled || self.opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            *self.cancelled = true;
            Some(ApplyErrorKind::Cancelled)
        } else if self.advice == Advice::Pageout && *self.headroom_hit {
            Some(ApplyErrorKind::SwapHeadroom)
        } else {
            None
        }
    }

    /// Issue `pieces`; report those not issued by why.
    fn run(mut self, pieces: &mut Vec<Piece>) {
        let page = self.act.page;
        self.left = pieces.iter().map(|p| p.range.len()).sum();
        let end = vector_madvise(pieces, page, &mut self);
        let kind = match end.error {
            Some(_) => *self.stop,
            None => self.rest,
        };
        if let Some(k) = kind {
            for p in &pieces[end.next..] {
                let o = &mut self.report.outcomes[p.req];
                add_error(&mut o.errors, k, p.bytes);
                if k == ApplyErrorKind::Paced {
                    // A request's pieces are in address order: its first paced piece is
                    // where the pace stopped it (`RangeOutcome::paced_from`).
                    let from = o.paced_from.map_or(p.range.start, |f| f.min(p.range.start));
                    o.paced_from = Some(from);
                }
            }
        }
    }
}

impl<S: ActuatorSys> Run<'_, '_, S> {
    /// The pace (`pace.rs`): the bytes that may go now, waiting (in steps of at most
    /// [`PACE_STEP_NS`], through [`ActuatorSys::sleep_ns`]) for the bucket to refill while
    /// the round is younger than [`PACE_ROUND_NS`]; `None` (the rest reported `Paced`, or
    /// what stopped the round meanwhile) once it is not.
    /// The page-out rate, bytes/s: the lower of the byte pace and the time pace at the
    /// measured call cost (`pace.rs`); the byte pace alone before a cost is measured.
    fn pace_rate(&self) -> Option<u64> {
        let by_time = self
            .opts
            .pace_time_ns_per_s
            .and_then(|t| self.act.cost.rate(t));
        match (self.opts.pace_bytes_per_s, by_time) {
            (Some(b), Some(t)) => Some(b.min(t)),
            (b, t) => b.or(t),
        }
    }

    fn pace(&mut self, rate: u64) -> Option<u64> {
        let page = self.act.page;
        let want = (Pacer::burst(rate, page) / 4).max(page);
        loop {
            let now = self.act.sys.now_ns();
            let avail = self.act.pacer.available(rate, page, now);
            if avail >= want.min(self.left).max(page) {
                return Some(avail);
            }
            let wait = self
                .act
                .pacer
                .wait_ns(rate, want.min(self.left).max(page))
                .min(PACE_STEP_NS);
            let age = now.saturating_sub(self.act.round_start_ns);
            if age.saturating_add(wait) > PACE_ROUND_NS {
                if avail >= page {
                    return Some(avail);
                }
                self.rest = Some(ApplyErrorKind::Paced);
                return None;
            }
            self.act.sys.sleep_ns(wait.max(1));
            self.rest = self.rest_kind();
            if self.rest.is_some() {
                return None;
            }
        }
    }
}

impl<S: ActuatorSys> VectorCall<Piece> for Run<'_, '_, S> {
    fn budget(&mut self) -> Option<u64> {
        self.rest = self.rest_kind();
        if self.rest.is_some() {
            return None;
        }
        if self.advice != Advice::Pageout {
            return Some(MAX_RW_COUNT);
        }
        let paced = match self.pace_rate() {
            Some(rate) => self.pace(rate)?,
            None => MAX_RW_COUNT,
        };
        // A time pace with no cost measured yet: a probe call first (`pace.rs`).
        let probe = self.opts.pace_time_ns_per_s.is_some() && !self.act.cost.measured();
        let paced = if probe {
            paced.min(PACE_PROBE_BYTES)
        } else {
            paced
        };
        match self.act.pageout_budget() {
            Ok(None) => Some(paced.min(MAX_RW_COUNT)),
            // Apply what fits under the headroom; the rest meets the check next time.
            Ok(Some(b)) => Some(b.min(paced)),
            Err(why) => {
                *self.headroom_hit = true;
                if !self.act.in_headroom {
                    self.act.in_headroom = true;
                    tracing::warn!("page-out stopped: {why}");
                }
                self.rest = self.rest_kind();
                None
            }
        }
    }

    fn call(&mut self, iov: &[AddrRange]) -> Result<u64, Errno> {
        let sys = &mut self.act.sys;
        let t0 = sys.cpu_ns();
        let res = sys.process_madvise(self.target, iov, self.advice);
        self.dt = sys.cpu_ns().saturating_sub(t0);
        self.act.stats.calls += 1;
        self.act.stats.iovecs += iov.len() as u64;
        res
    }

    fn after(&mut self, _first: usize, batch: &[Piece], step: Step) {
        let done = step.done(batch.len());
        for p in &batch[..done] {
            let o = &mut self.report.outcomes[p.req];
            o.bytes_applied += p.bytes;
            if p.resident {
                o.bytes_resident += p.bytes;
            }
        }
        let asked: u64 = batch[..(done + 1).min(batch.len())]
            .iter()
            .map(|p| p.range.len())
            .sum();
        self.left = self.left.saturating_sub(asked);
        if self.advice == Advice::Pageout {
            if self.pace_rate().is_some() {
                // What the kernel was asked to page out uses the pace, done or failed.
                self.act.pacer.take(asked);
            }
            self.act.cost.note(asked, self.dt);
        }
        // A failed call's time goes to the failing piece; a short one's to the pieces done
        // and the one that failed.
        charge_time(self.report, &batch[..(done + 1).min(batch.len())], self.dt);
        let pid = self.target.pid();
        match step {
            Step::AllDone => {}
            Step::Short { .. } => self.act.stats.short_returns += 1,
            Step::HeadFailed(Errno::ESRCH) => {
                tracing::debug!(pid, "target gone (ESRCH)");
                *self.stop = Some(ApplyErrorKind::TargetGone);
            }
            Step::HeadFailed(e @ (Errno::EPERM | Errno::EACCES)) => {
                if self.act.denied_logged.insert(pid) {
                    // mm_access() fails first (EACCES) without ptrace read access; then the
                    // CAP_SYS_NICE check (EPERM): process_madvise(), mm/madvise.c, Linux 6.12.
                    let missing = if e == Errno::EACCES {
                        "ptrace read access to the target (PTRACE_MODE_READ)"
                    } else {
                        "CAP_SYS_NICE"
                    };
                    tracing::error!(errno = %e, missing, "{}", ActuatorError::PermissionDenied { pid });
                }
                *self.stop = Some(ApplyErrorKind::Permission);
            }
            // Call-level failures no piece can escape (`ends_vector`).
            Step::HeadFailed(e @ (Errno::ENOSYS | Errno::EBADF)) => {
                tracing::error!(pid, "process_madvise: {e}");
                *self.stop = Some(ApplyErrorKind::Other(e as i32));
            }
            Step::HeadFailed(e) => {
                self.act.stats.pieces_failed += 1;
                let p = batch[0];
                add_error(
                    &mut self.report.outcomes[p.req].errors,
                    errno_kind(e, self.advice),
                    p.bytes,
                );
            }
        }
    }
}

/// `split`'s two vectors over `blocks` (runs of whole 2 MiB blocks): a page-out of each
/// block's first page, which answers for the block in the report, and a cold of each whole
/// block, which answers for nothing (see `Advice::Split`).
fn split_pieces(blocks: &[Piece], page: u64) -> (Vec<Piece>, Vec<Piece>) {
    let block = HPAGE_PMD_SIZE.max(page);
    let (mut first, mut whole) = (Vec::new(), Vec::new());
    for p in blocks {
        let mut h = p.range.start;
        while h + block <= p.range.end {
            first.push(Piece {
                req: p.req,
                range: AddrRange::new(h, h + page),
                resident: p.resident,
                bytes: block,
            });
            whole.push(Piece {
                req: p.req,
                range: AddrRange::new(h, h + block),
                resident: false,
                bytes: 0,
            });
            h += block;
        }
    }
    (first, whole)
}

/// Share `dt` among `pieces` by bytes; the sum charged is exactly `dt`.
fn charge_time(report: &mut ApplyReport, pieces: &[Piece], dt: u64) {
    let total: u64 = pieces.iter().map(|p| p.range.len()).sum();
    if pieces.is_empty() || total == 0 {
        return;
    }
    let mut left = dt;
    for (n, p) in pieces.iter().enumerate() {
        let share = if n + 1 == pieces.len() {
            left
        } else {
            ((dt as u128 * p.range.len() as u128) / total as u128) as u64
        };
        let share = share.min(left);
        left -= share;
        report.outcomes[p.req].elapsed_ns += share;
    }
}

/// Add `bytes` of `kind` to an outcome's error list, one entry per kind.
pub(super) fn add_error(errors: &mut Vec<(ApplyErrorKind, u64)>, kind: ApplyErrorKind, bytes: u64) {
    if bytes == 0 {
        return;
    }
    match errors.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, b)) => *b += bytes,
        None => errors.push((kind, bytes)),
    }
}

/// The kind of a per-range errno. ENOMEM is "range not mapped" for every advice except
/// `Collapse`, where it is also the huge-page allocation failure (`madvise_collapse_errno()`,
/// mm/khugepaged.c, Linux 6.12); since ranges are cut at the snapshot's VMAs, a collapse ENOMEM
/// is reported as `NoMemory` (it may also mean the range was unmapped since the snapshot).
pub fn errno_kind(e: Errno, advice: Advice) -> ApplyErrorKind {
    match e {
        Errno::ENOMEM if advice == Advice::Collapse => ApplyErrorKind::NoMemory,
        Errno::ENOMEM => ApplyErrorKind::Unmapped,
        Errno::EINVAL => ApplyErrorKind::Invalid,
        Errno::EAGAIN => ApplyErrorKind::Again,
        Errno::ESRCH => ApplyErrorKind::TargetGone,
        Errno::EPERM | Errno::EACCES => ApplyErrorKind::Permission,
        e => ApplyErrorKind::Other(e as i32),
    }
}

impl ApplyReport {
    /// Targets whose advice was refused for lack of permission in this round, with the
    /// message saying what is missing.
    pub fn permission_errors(&self) -> Vec<ActuatorError> {
        let mut seen = Vec::new();
        for o in &self.outcomes {
            if o.errors
                .iter()
                .any(|(k, _)| *k == ApplyErrorKind::Permission)
                && !seen.contains(&o.target.0)
            {
                seen.push(o.target.0);
            }
        }
        seen.into_iter()
            .map(|pid| ActuatorError::PermissionDenied { pid })
            .collect()
    }

    /// Bytes not applied, by kind, over all outcomes.
    pub fn errors_by_kind(&self) -> Vec<(ApplyErrorKind, u64)> {
        let mut v = Vec::new();
        for o in &self.outcomes {
            for &(k, b) in &o.errors {
                add_error(&mut v, k, b);
            }
        }
        v
    }
}
