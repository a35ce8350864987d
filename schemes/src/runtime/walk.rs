//! The per-scheme steps of [`super::Schemes::plan`]: the quota window (`damos_adjust_quota`)
//! and the per-region walk (`damos_apply_scheme`), mm/damon/core.c 6.12.

use super::huge_runs::HugeRuns;
use super::*;
use engine::kernel::host::{align_down, align_up};

/// The score a region has for this scheme's priority.
fn region_score(spec: &SchemeSpec, r: &engine::Region, snap: &Snapshot) -> u32 {
    let w = &spec.quota.weights;
    match spec.action.priority() {
        Priority::Cold => score::cold_score(r.nr_accesses, r.age, &snap.attrs, w),
        Priority::Hot => score::hot_score(r.nr_accesses, r.age, &snap.attrs, w),
        Priority::None => score::MAX_SCORE,
    }
}

/// `damos_adjust_quota()` (core.c 6.12): new charge window with a new effective quota, then
/// the score histogram of the pattern-matching regions and the minimum score.
pub(super) fn adjust_quota(
    spec: &SchemeSpec,
    st: &mut SchemeState,
    snap: &Snapshot,
    now_us: u64,
    env: &dyn MetricSource,
    known_out: &KnownOut,
) {
    let q = &spec.quota;
    if !q.is_set() {
        st.quota.esz = 0;
        return;
    }
    if st.quota.window_over(now_us, q.reset_interval_us) {
        if st.quota.start_window(now_us) {
            st.stats.qt_exceeds += 1;
        }
        let score = if q.goals.is_empty() {
            None
        } else {
            // damos_quota_score(): the highest score (least aggressive) of all goals.
            let mut highest = Some(0u64);
            for (g, gs) in q.goals.iter().zip(st.goals.iter_mut()) {
                let measured = match (&g.metric, &mut st.ledger) {
                    (policy::GoalMetric::RefaultRate { .. }, Some(ledger)) => {
                        refault::measure(ledger, env, now_us).inspect(|v| gs.current = *v)
                    }
                    _ => goal::measure(g, gs, env),
                };
                match measured {
                    Ok(v) => highest = highest.map(|h| h.max(quota::goal_score(v, g.target))),
                    Err(e) => {
                        if st.goal_error.is_none() {
                            tracing::warn!(scheme = %spec.name, "quota goal {} unavailable: {e}", g.metric.name());
                        }
                        st.goal_error =
                            Some(format!("quota goal {} unavailable: {e}", g.metric.name()));
                        highest = None;
                    }
                }
            }
            if highest.is_some() {
                st.goal_error = None;
            }
            highest
        };
        // What the ledger's scan found back is hot (`crate::learn`).
        if let (Some(ledger), Some(hot)) = (&mut st.ledger, &mut st.hot) {
            for (t, r) in ledger.take_back() {
                hot.learn(t, r, now_us);
            }
        }
        st.quota
            .set_effective_quota(q, score, snap.attrs.min_region_sz);
    }
    let pat = pattern::Resolved::new(&spec.pattern, &snap.attrs);
    let skip_out = spec.action.advice().is_some_and(known_out::skips_known);
    let mut hist = ScoreHistogram::default();
    for t in &snap.targets {
        let huge = huge_runs(spec, &t.regions, &pat);
        for (ri, r) in t.regions.iter().enumerate() {
            let matched = match &huge {
                Some(h) => h.matches(ri),
                None => pat.matches(r),
            };
            if matched {
                let out = if let (true, Some(adv)) = (skip_out, spec.action.advice()) {
                    known_out.bytes_in(t.target, adv, AddrRange::new(r.start(), r.end()))
                } else {
                    0
                };
                hist.add(region_score(spec, r, snap), r.size() - out.min(r.size()));
            }
        }
    }
    st.quota.min_score = hist.min_score(st.quota.esz);
}

/// The PMD huge page size of x86-64 and arm64 with 4 KiB pages: the actuator's, whose
/// `split` and `collapse` act in these blocks.
pub use engine::actuator::HPAGE_PMD_SIZE as HPAGE_SIZE;

/// For a huge-page action (`split`, `collapse`), the target's regions as runs
/// (`huge_runs.rs`); `None` for the others, which match region by region.
fn huge_runs(
    spec: &SchemeSpec,
    regions: &[engine::Region],
    pat: &pattern::Resolved,
) -> Option<HugeRuns> {
    matches!(spec.action, Action::Collapse | Action::Split).then(|| HugeRuns::new(regions, pat))
}

/// What a walk reads besides the scheme: the snapshot, the targets' cgroups (for cgroup
/// filters) and the ranges known to be out of memory.
pub(super) struct WalkInput<'a> {
    pub snap: &'a Snapshot,
    pub cgroups: &'a HashMap<TargetId, Vec<String>>,
    pub known_out: &'a KnownOut,
    /// The hot sets the policy's other page-out schemes learned: a page-out cuts them out
    /// too (`crate::learn`).
    pub learned_elsewhere: &'a [&'a HotSet],
}

/// The per-region walk of `damon_do_apply_schemes()` / `damos_apply_scheme()` (core.c 6.12)
/// for one scheme.
pub(super) fn apply_scheme(
    idx: usize,
    spec: &SchemeSpec,
    st: &mut SchemeState,
    input: &WalkInput,
    out: &mut Vec<AdviceRequest>,
    selected: &mut Vec<Selected>,
) {
    let WalkInput {
        snap,
        cgroups,
        known_out,
        learned_elsewhere,
    } = *input;
    let skip_out = spec.action.advice().is_some_and(known_out::skips_known);
    let min_sz = snap.attrs.min_region_sz.max(1);
    let pat = pattern::Resolved::new(&spec.pattern, &snap.attrs);
    let esz = st.quota.esz;
    let max_nr = snap.attrs.max_nr_accesses().max(1) as u64;
    st.expect.clear();
    let mut runs: Vec<AddrRange> = Vec::new();
    st.quota
        .fix_stale_resume(|t| snap.targets.iter().any(|x| x.target == t));
    'targets: for t in &snap.targets {
        let cgroup = cgroups.get(&t.target).map(Vec::as_slice);
        if cgroup.is_none() && st.region_filter.needs_cgroups() {
            // The target's cgroups are unknown: a cgroup filter cannot decide, so skip it.
            continue;
        }
        let last = t.regions.len().saturating_sub(1);
        let huge = huge_runs(spec, &t.regions, &pat);
        for (ri, r) in t.regions.iter().enumerate() {
            // Check the quota.
            if st.quota.exhausted() {
                break 'targets;
            }
            // Skip what the last window already charged.
            let Some(start) =
                st.quota
                    .skip_charged(t.target, r.start(), r.end(), ri == last, min_sz)
            else {
                continue;
            };
            let end = match &huge {
                Some(h) if h.matches(ri) => Some(h.walk_end(ri, r)),
                Some(_) => None,
                None if pat.matches(r) => Some(r.end()),
                None => None,
            }
            .filter(|_| esz == 0 || region_score(spec, r, snap) >= st.quota.min_score);
            let mut pieces: VecDeque<AddrRange> = match end {
                Some(end) => VecDeque::from([AddrRange::new(start, end)]),
                None => {
                    // madvd: what the idle cut kept wholly in at its first contact is walked
                    // again at the next apply, matched or not (follow_up.rs).
                    let due = st
                        .follow_up
                        .pieces(t.target, AddrRange::new(start, r.end()));
                    if due.is_empty() {
                        continue;
                    }
                    for &p in &due {
                        st.follow_up.asked(t.target, p);
                    }
                    due
                }
            };
            while let Some(mut p) = pieces.pop_front() {
                if p.is_empty() {
                    continue;
                }
                if st.quota.exhausted() {
                    break;
                }
                // Split to fit the rest of the quota.
                let Some(sz) = st.quota.fit(p.len(), min_sz) else {
                    // damos_update_stat(s, 0, 0): tried, nothing charged.
                    st.stats.nr_tried += 1;
                    break;
                };
                if sz < p.len() {
                    pieces.push_front(AddrRange::new(p.start + sz, p.end));
                    p.end = p.start + sz;
                }
                // Region-level filters; an address filter may split the piece.
                let (filtered_out, rest) = st
                    .region_filter
                    .filter_out(t.target, cgroup, &mut p, min_sz);
                if let Some(rest) = rest {
                    pieces.push_front(rest);
                }
                if filtered_out {
                    continue;
                }
                if let (true, Some(adv)) = (skip_out, spec.action.advice()) {
                    // Known to hold nothing to act on (out of memory; for `split`, no huge
                    // page; for `collapse`, huge already): skipped as filtered (not charged, no age reset;
                    // runtime/known_out.rs).
                    let (skipped, rest) = known_out.cut(t.target, adv, &mut p);
                    if let Some(rest) = rest {
                        pieces.push_front(rest);
                    }
                    if skipped > 0 {
                        let s = &mut st.stats;
                        let sz = match spec.action {
                            Action::Split => &mut s.sz_not_huge,
                            Action::Collapse => &mut s.sz_already_huge,
                            _ => &mut s.sz_not_resident,
                        };
                        *sz = sz.saturating_add(skipped);
                    }
                    if p.is_empty() {
                        continue;
                    }
                }
                if matches!(spec.action, Action::Collapse | Action::Split) {
                    // MADV_COLLAPSE works on whole PMD-sized huge pages, and `split` splits
                    // whole ones: keep the aligned part.
                    let (a, b) = (align_up(p.start, HPAGE_SIZE), align_down(p.end, HPAGE_SIZE));
                    if a >= b {
                        continue;
                    }
                    p = AddrRange::new(a, b);
                }
                if spec.action == Action::Pageout
                    && (st.hot.is_some() || !learned_elsewhere.is_empty())
                {
                    {
                        // The learned hot pages, this scheme's and the policy's other page-out
                        // schemes', are cut out: not advised, not charged, counted as
                        // filtered (`crate::learn`).
                        let sets = st.hot.iter().chain(learned_elsewhere.iter().copied());
                        let learned = cut_learned(sets, t.target, p, &mut runs);
                        st.stats.sz_learned_hot = st.stats.sz_learned_hot.saturating_add(learned);
                        let freq_bp = (r.nr_accesses_bp as u64 / max_nr).min(10_000);
                        let mut sz = 0;
                        for &run in &runs {
                            out.push(AdviceRequest {
                                target: t.target,
                                range: run,
                                advice: Advice::Pageout,
                                scheme: idx,
                            });
                            if freq_bp > 0 {
                                st.expect.push((t.target, run, freq_bp));
                            }
                            sz += run.len();
                        }
                        if sz > 0 {
                            st.quota.charge(t.target, p.end, sz);
                            st.stats.nr_tried += 1;
                            st.stats.sz_tried = st.stats.sz_tried.saturating_add(sz);
                        }
                        continue;
                    }
                }
                let sz = p.len();
                if let Some(advice) = spec.action.advice() {
                    out.push(AdviceRequest {
                        target: t.target,
                        range: p,
                        advice,
                        scheme: idx,
                    });
                } else if spec.action.is_physical() {
                    selected.push(Selected {
                        scheme: idx,
                        range: p,
                    });
                }
                st.quota.charge(t.target, p.end, sz);
                st.stats.nr_tried += 1;
                st.stats.sz_tried = st.stats.sz_tried.saturating_add(sz);
            }
        }
    }
}

/// Cut `p` of `target` by each learned hot set in turn: the runs of pages none of them
/// learned, in order, into `runs`; returns the bytes cut out (each byte once).
fn cut_learned<'h>(
    sets: impl Iterator<Item = &'h HotSet>,
    target: TargetId,
    p: AddrRange,
    runs: &mut Vec<AddrRange>,
) -> u64 {
    runs.clear();
    runs.push(p);
    let mut learned = 0;
    let mut next = Vec::new();
    for set in sets {
        next.clear();
        for &r in runs.iter() {
            learned += set.cut(target, r, |x| next.push(x));
        }
        std::mem::swap(runs, &mut next);
    }
    learned
}
