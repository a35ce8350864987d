//! The schemes of one policy at run time ([`Schemes`]): `plan` turns a snapshot into advice
//! requests (`kdamond_apply_schemes()`, mm/damon/core.c 6.12: apply intervals, watermarks,
//! quota windows and scores, the per-region walk with filters), `account` takes the apply
//! report back. What a quota charges, and how, is [`crate::quota::QuotaState`]'s.

use crate::action::{Action, Priority};
use crate::filter::{PageFilter, RegionFilter};
use crate::goal::{self, GoalState, MetricSource};
use crate::learn::HotSet;
use crate::policy::{self, FilterKind, Policy, PolicyError, SchemeSpec};
use crate::quota::{self, QuotaState, ScoreHistogram};
use crate::reclaim::Selected;
use crate::refault::{self, RefaultLedger};
use crate::stats::SchemeStats;
use crate::wmark::{self, WmarkState, WmarkVerdict};
use crate::{pattern, score};
use engine::{AddrRange, Advice, AdviceRequest, ApplyReport, Snapshot, TargetId};
use std::collections::{HashMap, VecDeque};

/// Errors of the runtime side.
#[derive(Debug, thiserror::Error)]
pub enum SchemesError {
    /// A goal's or watermark's source is missing here; positioned in the policy file.
    #[error(transparent)]
    Source(#[from] PolicyError),
    #[error("no scheme number {0}")]
    NoScheme(usize),
    #[error("scheme {scheme:?} has no user_input goal number {goal}")]
    NotUserInput { scheme: String, goal: usize },
}

impl Policy {
    /// Check that every goal's and watermark's source can be read through `env`. The error
    /// points at the goal (its `cgroup`, `node` or `metric`) and names what is missing.
    pub fn check_sources(&self, env: &dyn MetricSource) -> Result<(), PolicyError> {
        for s in &self.schemes {
            for g in &s.quota.goals {
                goal::check_source(g, env)
                    .map_err(|e| PolicyError::at(&self.origin, g.pos, e.0))?;
            }
            if let Some(w) = &s.watermarks {
                let m = env.meminfo(None).map_err(|e| {
                    PolicyError::at(
                        &self.origin,
                        w.pos,
                        format!("watermarks: free memory rate is not available: {e}"),
                    )
                })?;
                if m.free_mem_rate_permille().is_none() {
                    return Err(PolicyError::at(
                        &self.origin,
                        w.pos,
                        "watermarks: MemTotal is zero",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuse what no madvd front end can run: page-level filters (`anon`, `young`). The
    /// running binary does not evaluate them per page (no driver calls
    /// [`Schemes::enable_page_filters`]), so a scheme with one would sit inactive forever;
    /// `madvd check` and the stages refuse it instead, at the scheme, saying why.
    pub fn check_runnable(&self) -> Result<(), PolicyError> {
        for s in &self.schemes {
            if let Some(f) = s.filters.iter().find(|f| f.kind.is_page_level()) {
                let kind = match f.kind {
                    FilterKind::Anon => "anon",
                    _ => "young",
                };
                return Err(PolicyError::at(
                    &self.origin,
                    s.pos,
                    format!(
                        "scheme {:?}: filter `{kind}` is page-level, and madvd does not evaluate \
                         page-level filters (anon, young) when it runs: the scheme would never \
                         be applied; remove the filter",
                        s.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

const PAGE_FILTER_REASON: &str =
    "page-level filters (anon, young) need a driver that evaluates them (Schemes::enable_page_filters)";

#[derive(Debug)]
struct SchemeState {
    region_filter: RegionFilter,
    page_filter: Option<PageFilter>,
    next_apply_us: Option<u64>,
    quota: QuotaState,
    goals: Vec<GoalState>,
    goal_error: Option<String>,
    wmark: WmarkState,
    wmark_error: Option<String>,
    stats: SchemeStats,
    /// The pages this scheme paged out, for its `refault_rate` goal (None without one).
    ledger: Option<RefaultLedger>,
    /// The pages it learned are hot from its refaults (`crate::learn`; with a ledger).
    hot: Option<HotSet>,
    /// The page-out requests of the last plan from regions with accesses: (target, range,
    /// the region's access frequency in basis points of the maximum), for the ledger's
    /// expected refaults.
    expect: Vec<(TargetId, AddrRange, u64)>,
    /// The refill of this round (`refill.rs`): the walk stopped at the size quota, and the
    /// report refunded bytes with nothing there.
    refill: refill::Refill,
    /// Ranges the idle cut kept wholly in at their first contact, walked again at the next
    /// apply whatever their region reads then (`follow_up.rs`).
    follow_up: follow_up::FollowUp,
}

/// The schemes of one policy at run time.
pub struct Schemes {
    specs: Vec<SchemeSpec>,
    states: Vec<SchemeState>,
    env: Box<dyn MetricSource>,
    /// Cgroups given by the driver; they take precedence over `cgroup_cache`.
    target_cgroups: HashMap<TargetId, Vec<String>>,
    /// Cgroups read through the metric source: (paths, or `None` if unreadable; read at µs).
    cgroup_cache: HashMap<TargetId, (Option<Vec<String>>, u64)>,
    /// Whether the driver evaluates page-level filters (see [`Schemes::enable_page_filters`]).
    page_filters_enabled: bool,
    /// Since when every scheme is held inactive by its watermarks (monitoring paused), µs.
    paused_since: Option<u64>,
    /// What the last plan selected for physical actions (`reclaim_cgroup`).
    selected: Vec<Selected>,
    /// Ranges the actuator found wholly not resident, skipped by page-out and cold walks.
    known_out: KnownOut,
}

/// How long a target's cgroups read from `/proc/PID/cgroup` stay cached, µs.
pub const CGROUP_REFRESH_US: u64 = 60_000_000;

// The driver runs the schemes on its actuation thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Schemes>();
};

impl std::fmt::Debug for Schemes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemes")
            .field("specs", &self.specs)
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}

impl Schemes {
    /// Build the run-time state. Fails when a goal's or watermark's source is missing,
    /// naming it, at its position in the policy file.
    pub fn new(policy: &Policy, env: Box<dyn MetricSource>) -> Result<Self, SchemesError> {
        policy.check_sources(env.as_ref())?;
        let mut states = Vec::with_capacity(policy.schemes.len());
        for s in &policy.schemes {
            let goals = s
                .quota
                .goals
                .iter()
                .map(|g| {
                    goal::check_source(g, env.as_ref())
                        .map_err(|e| PolicyError::at(&policy.origin, g.pos, e.0))
                })
                .collect::<Result<Vec<_>, _>>()?;
            states.push(SchemeState {
                region_filter: RegionFilter::new(&s.filters),
                page_filter: PageFilter::new(&s.filters),
                next_apply_us: None,
                quota: QuotaState::default(),
                goal_error: None,
                wmark: WmarkState::default(),
                wmark_error: None,
                stats: SchemeStats {
                    name: s.name.clone(),
                    action: s.action.name().to_string(),
                    // Watermarks start activated (damon_new_scheme(), core.c 6.12.117).
                    active: true,
                    goal_values: goals.iter().map(|g| g.current).collect(),
                    ..SchemeStats::default()
                },
                goals,
                ledger: s.quota.goals.iter().find_map(|g| match g.metric {
                    policy::GoalMetric::RefaultRate {
                        window_us,
                        first_window_us,
                    } => Some(
                        RefaultLedger::new(engine::kernel::host::page_size(), window_us)
                            .with_first_window(first_window_us)
                            .with_min_base(crate::refault::MIN_BASE_BYTES)
                            .with_record_back(),
                    ),
                    _ => None,
                }),
                hot: None,
                expect: Vec::new(),
                refill: refill::Refill::default(),
                follow_up: follow_up::FollowUp::default(),
            });
            let st = states.last_mut().expect("just pushed");
            if st.ledger.is_some() {
                st.hot = Some(HotSet::new(engine::kernel::host::page_size()));
            }
        }
        Ok(Self {
            specs: policy.schemes.clone(),
            states,
            env,
            target_cgroups: HashMap::new(),
            cgroup_cache: HashMap::new(),
            page_filters_enabled: false,
            paused_since: None,
            selected: Vec::new(),
            known_out: KnownOut::default(),
        })
    }

    pub fn specs(&self) -> &[SchemeSpec] {
        &self.specs
    }

    /// The cgroups of each target (paths as `/proc/PID/cgroup` shows them: the v2 path and,
    /// on a hybrid host, the v1 memory path), for `cgroup` filters. Targets not in the map
    /// are looked up through the metric source ([`MetricSource::target_cgroups`], cached
    /// for [`CGROUP_REFRESH_US`]). A scheme with a `cgroup` filter skips a target whose
    /// cgroups cannot be known.
    pub fn set_target_cgroups(&mut self, map: HashMap<TargetId, Vec<String>>) {
        self.target_cgroups = map;
    }

    /// Declare that the driver evaluates page-level filters (`anon`, `young`) on every
    /// request of a scheme that has them, with [`Schemes::page_filter`], before applying it.
    /// Until then such schemes stay inactive (reason in their stats): applying their advice
    /// without the filters would advise pages the policy excludes.
    pub fn enable_page_filters(&mut self) {
        self.page_filters_enabled = true;
        for (sp, st) in self.specs.iter().zip(&mut self.states) {
            if st.stats.inactive_reason.as_deref() == Some(PAGE_FILTER_REASON) {
                st.stats.inactive_reason = None;
                st.stats.active = sp.watermarks.is_none() || st.wmark.activated;
            }
        }
    }

    /// Set the current value of a `user_input` goal (by index among the scheme's goals).
    pub fn set_user_input(
        &mut self,
        scheme: usize,
        goal: usize,
        value: u64,
    ) -> Result<(), SchemesError> {
        let spec = self
            .specs
            .get(scheme)
            .ok_or(SchemesError::NoScheme(scheme))?;
        match spec.quota.goals.get(goal) {
            Some(g) if g.metric == policy::GoalMetric::UserInput => {
                self.states[scheme].goals[goal].current = value;
                Ok(())
            }
            _ => Err(SchemesError::NotUserInput {
                scheme: spec.name.clone(),
                goal,
            }),
        }
    }

    /// The page-level filters (anon, young) the driver must evaluate on each page of this
    /// scheme's requests before applying them; `None` when the scheme has none.
    pub fn page_filter(&self, scheme: usize) -> Option<&PageFilter> {
        self.states.get(scheme)?.page_filter.as_ref()
    }

    /// When the next scheme is due to apply, µs (monitor time). The driver takes an interim
    /// snapshot then if it comes before the next aggregation.
    pub fn next_apply_due_us(&self) -> Option<u64> {
        self.specs
            .iter()
            .zip(&self.states)
            .filter_map(|(sp, st)| {
                let due = st.next_apply_us.or(sp.apply_interval_us)?;
                // While watermarks hold a scheme inactive, nothing happens before the recheck.
                Some(if sp.watermarks.is_some() && !st.wmark.activated {
                    due.max(st.wmark.next_check_us)
                } else {
                    due
                })
            })
            .min()
    }

    /// True when every scheme is held inactive by its watermarks (the kernel stops
    /// monitoring then, `kdamond_wait_activation()`); the driver may pause until
    /// [`Schemes::next_wmark_check_us`].
    pub fn all_inactive(&self) -> bool {
        !self.specs.is_empty()
            && self
                .specs
                .iter()
                .zip(&self.states)
                .all(|(sp, st)| sp.watermarks.is_some() && !st.wmark.activated)
    }

    /// The earliest watermark recheck of an inactive scheme, µs.
    pub fn next_wmark_check_us(&self) -> Option<u64> {
        self.specs
            .iter()
            .zip(&self.states)
            .filter(|(sp, st)| sp.watermarks.is_some() && !st.wmark.activated)
            .map(|(_, st)| st.wmark.next_check_us)
            .min()
    }

    /// `kdamond_wait_activation()` (mm/damon/core.c 6.12.117): while every scheme is held
    /// inactive by its watermarks, the kdamond neither samples nor aggregates (regions do
    /// not age); it sleeps until the earliest watermark check. Some(that check, µs) when
    /// the driver should pause its monitoring now; None to keep monitoring. As in the
    /// kernel, a watermark metric that cannot be read does not pause
    /// (`damos_wmark_wait_us()` returns 0 then).
    pub fn paused_until_us(&self) -> Option<u64> {
        if !self.all_inactive() || self.states.iter().any(|st| st.wmark_error.is_some()) {
            return None;
        }
        self.next_wmark_check_us()
    }

    /// Check the watermarks that are due at `now_us` while monitoring is paused (no
    /// snapshot: the kernel's `kdamond_wait_activation()` loop). When a scheme becomes
    /// active again, every scheme's next apply time moves by the pause's length: the kernel
    /// counts apply intervals in sampling intervals (`next_apply_sis`), and none pass while
    /// paused. Call [`Schemes::paused_until_us`] after it.
    pub fn check_watermarks(&mut self, now_us: u64) {
        let mut free_rate = None;
        for (spec, st) in self.specs.iter().zip(self.states.iter_mut()) {
            check_wmark(spec, st, self.env.as_ref(), now_us, &mut free_rate);
        }
        if self.paused_until_us().is_some() {
            self.paused_since.get_or_insert(now_us);
        } else if let Some(since) = self.paused_since.take() {
            let paused = now_us.saturating_sub(since);
            for st in &mut self.states {
                if let Some(n) = &mut st.next_apply_us {
                    *n = n.saturating_add(paused);
                }
            }
        }
    }

    pub fn stats(&self) -> Vec<SchemeStats> {
        self.states
            .iter()
            .map(|st| {
                let mut s = st.stats.clone();
                s.effective_quota = st.quota.esz;
                s.goal_values = st.goals.iter().map(|g| g.current).collect();
                if let Some(l) = &st.ledger {
                    s.paged_out_bytes = l.total_out_pages * l.page_size();
                    s.refaulted_bytes = l.total_refaulted_pages * l.page_size();
                    s.repeat_refaulted_bytes = l.total_repeat_pages * l.page_size();
                    s.refaulted_expected_bytes = l.total_expected_pages * l.page_size();
                }
                if let Some(h) = &st.hot {
                    s.learned_hot_bytes = h.bytes();
                }
                if s.active {
                    s.inactive_reason = st.goal_error.clone();
                }
                s
            })
            .collect()
    }

    /// Decide the advice for one snapshot (`kdamond_apply_schemes()`, mm/damon/core.c 6.12).
    pub fn plan(&mut self, snap: &Snapshot, now_us: u64) -> Vec<AdviceRequest> {
        let mut out = Vec::new();
        let mut free_rate: Option<Result<u64, String>> = None;
        let tolerance = snap.attrs.sample_us / 2;
        self.selected.clear();
        self.known_out.refresh(snap, now_us, self.env.as_ref());
        for idx in 0..self.specs.len() {
            let spec = &self.specs[idx];
            let st = &mut self.states[idx];
            st.refill = refill::Refill::default();

            // Watermarks (damos_wmark_wait_us(), core.c 6.12).
            check_wmark(spec, st, self.env.as_ref(), now_us, &mut free_rate);

            // Page-level filters need the driver (see enable_page_filters).
            if st.page_filter.is_some() && !self.page_filters_enabled {
                st.stats.active = false;
                st.stats.inactive_reason = Some(PAGE_FILTER_REASON.to_string());
                continue;
            }

            // Apply interval (next_apply_sis, core.c 6.7+): due schemes advance whether or not
            // they are active.
            let interval = spec.apply_interval_us.unwrap_or(snap.attrs.aggr_us).max(1);
            let next = *st.next_apply_us.get_or_insert(interval);
            if now_us.saturating_add(tolerance) < next {
                continue;
            }
            st.next_apply_us = Some(now_us.saturating_add(interval));
            if spec.watermarks.is_some() && !st.wmark.activated {
                continue;
            }
            adjust_quota(spec, st, snap, now_us, self.env.as_ref(), &self.known_out);
            st.follow_up.begin_apply();
            if let Some(hot) = &mut st.hot {
                let pat = pattern::Resolved::new(&spec.pattern, &snap.attrs);
                let min_age_us = pat.min_age as u64 * snap.attrs.aggr_us;
                hot.forget_old(snap, pat.min_age, min_age_us, now_us);
            }
            self.walk(idx, snap, now_us, &mut out);
        }
        // The pause starts here; a plan that finds a scheme active ends it without moving
        // the schedule (the driver did not pause: its apply times went on advancing).
        if self.paused_until_us().is_some() {
            self.paused_since.get_or_insert(now_us);
        } else {
            self.paused_since = None;
        }
        out
    }

    /// Take the actuator's report back: the time charge of the quotas and the applied stats
    /// (`damos_apply_scheme()` / `damos_update_stat()`, core.c 6.12).
    ///
    /// madvd's residency cut and pace (`engine::actuator::{resident, pace}`): bytes the
    /// actuator cut out as not resident, or held back by the pace, are refunded to the size
    /// quota of the window they were charged in ([`QuotaState::refund`]); for paced bytes the
    /// walk resumes where the pace stopped (`RangeOutcome::paced_from`).
    ///
    /// `split`'s blocks with no huge page (`ApplyErrorKind::NotHuge`) and `collapse`'s blocks
    /// huge already (`ApplyErrorKind::AlreadyHuge`) are refunded the same way. Ranges found
    /// wholly not resident, for `split` wholly without a huge page, or for `collapse` wholly
    /// huge, are learned ([`known_out`]): the next walks skip them as filtered, so the quota reaches
    /// the candidates behind them. An outcome with nothing to act on teaches the time quota
    /// nothing: its time is not charged, so a round of memory already out cannot drop the
    /// throughput estimate to nothing (the actuator no longer counts pagemap reads at all;
    /// what such an outcome can still carry is `split`'s `/proc/kpageflags` read, `huge.rs`).
    pub fn account(&mut self, report: &ApplyReport, now_us: u64) {
        self.known_out.learn(report, now_us);
        for (idx, st) in self.states.iter_mut().enumerate() {
            let Some(ledger) = &mut st.ledger else {
                continue;
            };
            for t in &report.gone {
                ledger.drop_target(*t);
                if let Some(h) = &mut st.hot {
                    h.drop_target(*t);
                }
            }
            let done = report.outcomes.iter().filter(|o| {
                !report.dry_run && o.scheme == idx && o.advice == Advice::Pageout && o.applied()
            });
            match &mut st.hot {
                Some(hot) => {
                    let expect = std::mem::take(&mut st.expect);
                    learn_after_pageout(ledger, hot, &expect, self.env.as_ref(), done, now_us)
                }
                None => refault::after_pageout(
                    ledger,
                    self.env.as_ref(),
                    done.map(|o| (o.target, o.range)),
                    now_us,
                ),
            }
        }
        let mut rewinds: Vec<Option<(TargetId, u64)>> = vec![None; self.states.len()];
        for o in &report.outcomes {
            let elapsed_ns = if o.wholly_nothing_there() {
                0
            } else {
                o.elapsed_ns
            };
            self.charge(o.scheme, elapsed_ns, o.bytes_applied);
            let Some(st) = self.states.get_mut(o.scheme) else {
                continue;
            };
            st.stats.sz_resident = st.stats.sz_resident.saturating_add(o.bytes_resident);
            let not_resident = o.not_resident();
            st.stats.sz_not_resident = st.stats.sz_not_resident.saturating_add(not_resident);
            st.stats.sz_not_huge = st.stats.sz_not_huge.saturating_add(o.not_huge());
            st.stats.sz_already_huge = st.stats.sz_already_huge.saturating_add(o.already_huge());
            st.stats.sz_not_idle = st
                .stats
                .sz_not_idle
                .saturating_add(o.error_bytes(engine::ApplyErrorKind::NotIdle));
            st.refill.note(o);
            if !report.dry_run {
                st.follow_up.note(o);
            }
            let refund = o.refund();
            if refund > 0 {
                let rw = &mut rewinds[o.scheme];
                if rw.is_none() && o.error_bytes(engine::ApplyErrorKind::Paced) > 0 {
                    *rw = Some((o.target, o.paced_from.unwrap_or(o.range.start)));
                }
                st.quota.refund(refund, None);
            }
        }
        for (st, rw) in self.states.iter_mut().zip(rewinds) {
            if rw.is_some() {
                st.quota.refund(0, rw);
            }
        }
    }

    /// One applied request of scheme `scheme`: its time charge and applied bytes.
    pub fn charge(&mut self, scheme: usize, elapsed_ns: u64, bytes_applied: u64) {
        let Some(st) = self.states.get_mut(scheme) else {
            return;
        };
        st.quota.charge_time(elapsed_ns);
        st.stats.sz_applied = st.stats.sz_applied.saturating_add(bytes_applied);
        if bytes_applied > 0 {
            st.stats.nr_applied += 1;
        }
    }

    /// The ranges the last [`Schemes::plan`] selected for physical actions
    /// (`reclaim_cgroup`), quotas and filters applied; [`crate::reclaim::plan`] turns them
    /// into amounts per cgroup.
    pub fn take_selected(&mut self) -> Vec<Selected> {
        std::mem::take(&mut self.selected)
    }
}

/// [`refault::after_pageout`] for a scheme that learns (`crate::learn`): each page-out
/// read once in pagemap after it; the pages that went out enter the ledger, and
/// - of a page-out applied wholly up to where the pace stopped it (nothing failed, only
///   non-resident bytes cut — none by the idle cut —, the rest held back by the pace), the
///   pages below that point
///   present before and still present now are learned hot (faulted back before the read, or
///   kept in by the kernel: advising them again saves nothing). The pace's part was not
///   tried, so its pages teach nothing. (A request the pace stopped part-way used to teach
///   nothing at all, and its tried part's hot pages — back before the read, which comes
///   after all of a round's calls — were advised again at the next match.)
/// - of a range from a region with accesses, the region's frequency times the pages that
///   went out are expected refaults ([`RefaultLedger::expect`]).
fn learn_after_pageout<'a>(
    ledger: &mut RefaultLedger,
    hot: &mut HotSet,
    expect: &[(TargetId, AddrRange, u64)],
    env: &dyn MetricSource,
    done: impl Iterator<Item = &'a engine::RangeOutcome>,
    now_us: u64,
) {
    let page = ledger.page_size();
    let mut buf = Vec::new();
    let mut fbuf = Vec::new();
    for o in done {
        buf.clear();
        if env.page_states(o.target, o.range, &mut buf).is_err() {
            continue;
        }
        // Pages the idle cut kept in as not idle (`engine::actuator::idle`) stay present
        // and are not "faulted back": an outcome with any teaches nothing here (page_idle
        // judges them again at the next advice).
        let whole = o.bytes_applied.saturating_add(o.refund()) >= o.bytes_requested
            && o.error_bytes(engine::ApplyErrorKind::NotIdle) == 0;
        let tried_end = o.reached().end;
        if let (true, Some(before)) = (whole, ledger.pending_present(o.target, o.range)) {
            let mut run: Option<u64> = None;
            for (i, (was, now)) in before.iter().zip(&buf).enumerate() {
                let a = o.range.start + i as u64 * page;
                if a >= tried_end {
                    break;
                }
                let stayed = *was && *now == refault::PageState::Present;
                match (stayed, run) {
                    (true, None) => run = Some(a),
                    (false, Some(s)) => {
                        hot.learn(o.target, AddrRange::new(s, a), now_us);
                        run = None;
                    }
                    _ => {}
                }
            }
            if let Some(s) = run {
                let end =
                    (o.range.start + before.len().min(buf.len()) as u64 * page).min(tried_end);
                hot.learn(o.target, AddrRange::new(s, end), now_us);
            }
        }
        let bp = expect
            .iter()
            .find(|(t, r, _)| *t == o.target && *r == o.range)
            .map_or(0, |e| e.2);
        let frames = refault::frames_after(env, o.target, o.range, &mut fbuf);
        ledger.after_with(o.target, o.range, &buf, frames, bp, now_us);
    }
    ledger.clear_pending();
}

/// `damos_wmark_wait_us()` (core.c 6.12.117) for one scheme at `now_us`, when its check is
/// due: read the free memory rate (once per call of the caller: `free_rate`) and update the
/// activation, the stats and the reason.
fn check_wmark(
    spec: &SchemeSpec,
    st: &mut SchemeState,
    env: &dyn MetricSource,
    now_us: u64,
    free_rate: &mut Option<Result<u64, String>>,
) {
    let Some(w) = &spec.watermarks else {
        return;
    };
    if !st.wmark.due(now_us) {
        return;
    }
    let metric = free_rate
        .get_or_insert_with(|| match env.meminfo(None) {
            Ok(m) => m
                .free_mem_rate_permille()
                .ok_or_else(|| "MemTotal is zero".to_string()),
            Err(e) => Err(e.0),
        })
        .clone();
    match metric {
        Ok(m) => {
            let v = st.wmark.update(m, now_us, w);
            st.wmark_error = None;
            st.stats.active = v.is_active();
            st.stats.inactive_reason =
                (v != WmarkVerdict::Active).then(|| wmark::Reason(v, m, w).to_string());
        }
        Err(e) => {
            // The kernel keeps the state when the metric cannot be read.
            if st.wmark_error.is_none() {
                tracing::warn!(scheme = %spec.name, "watermark metric unavailable: {e}");
            }
            st.wmark_error = Some(e.clone());
            st.wmark.next_check_us = now_us.saturating_add(w.interval_us);
            if !st.wmark.activated {
                st.stats.inactive_reason = Some(format!("free memory rate unavailable: {e}"));
            }
        }
    }
}

/// The cgroups of each target of the snapshot: the driver's map first, else the metric
/// source (cached). Targets whose cgroups cannot be read are left out.
fn resolve_cgroups(
    snap: &Snapshot,
    now_us: u64,
    given: &HashMap<TargetId, Vec<String>>,
    cache: &mut HashMap<TargetId, (Option<Vec<String>>, u64)>,
    env: &dyn MetricSource,
) -> HashMap<TargetId, Vec<String>> {
    let mut out = HashMap::new();
    for t in &snap.targets {
        if let Some(g) = given.get(&t.target) {
            out.insert(t.target, g.clone());
            continue;
        }
        let stale = cache
            .get(&t.target)
            .is_none_or(|(_, at)| now_us < *at || now_us - *at >= CGROUP_REFRESH_US);
        if stale {
            let got = env.target_cgroups(t.target);
            if let Err(e) = &got {
                if !cache.contains_key(&t.target) {
                    tracing::warn!(target_id = %t.target, "cgroup filter: cgroups unknown, target skipped: {e}");
                }
            }
            cache.insert(t.target, (got.ok(), now_us));
        }
        if let Some((Some(g), _)) = cache.get(&t.target) {
            out.insert(t.target, g.clone());
        }
    }
    cache.retain(|id, _| snap.targets.iter().any(|t| t.target == *id));
    out
}

mod follow_up;
mod huge_runs;
pub mod known_out;
mod pace;
mod refill;
pub use refill::MAX_REFILLS;
mod walk;
use known_out::KnownOut;
pub use walk::HPAGE_SIZE;
use walk::{adjust_quota, apply_scheme, WalkInput};
