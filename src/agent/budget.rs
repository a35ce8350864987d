//! The agent's CPU budget (`cpu_budget: "2%"`: a share of one CPU). The agent's whole cost —
//! monitoring and actuation of every group, rescans, metrics — is measured as its own process
//! CPU time (`CLOCK_PROCESS_CPUTIME_ID`) over windows, and held inside the budget by one
//! *scale* applied to every group: scale `k` divides each group's cost by about `k` relative
//! to its policy's own attributes.
//!
//! - **How a scale becomes attributes** ([`scaled`]): the sampling interval is multiplied
//!   first (with the aggregation and regions-update intervals, so the samples per aggregation
//!   stay as the policy says), up to [`MAX_SAMPLE_US`]; what is left of `k` divides
//!   `max_nr_regions`, down to the policy's `min_nr_regions`. Scale 1 is the policy's own
//!   attributes: the budget never makes monitoring finer than the policy asks.
//! - **How the budget is shared**: every group gets the same scale, so each group's share of
//!   the budget is in proportion to what its policy would cost unconstrained (its targets,
//!   its sampling rate): a group of 10 targets costs about a tenth of a group of 100 with the
//!   same policy. One target is never starved for another.
//! - **The controller** ([`next`]): a pure function of the CPU seconds measured over a window,
//!   the window's wall time, the scale in force and the groups (attributes and target counts).
//!   Scales are a ladder of √2 steps ([`scale_of`]). Cost model: per target and sample, half
//!   fixed (reading the target's maps or smaps, `clear_refs`) and half in proportion to its
//!   region count; its one coefficient is calibrated from every window. A prediction is the
//!   larger of the average and the peak over [`PEAK_WINDOW`] ([`predicted`]). Over the budget, it
//!   jumps to the finest level the model puts at [`AIM_UP`] of the budget; under
//!   [`DOWN_BELOW`] of the budget at a finer level, it refines by at most two steps a
//!   window. Between the two it holds: a change of attributes restarts the aggregation
//!   interval (`damon_set_attrs`), so it must not flap.
//! - **Phases** ([`stagger`]): a group samples all its targets in one step, so its cost comes
//!   in bursts. New attributes reach every group at once, and their next samples are spread
//!   over one new sampling interval: the groups' bursts fall apart instead of on top of each
//!   other.
//!
//! The only I/O here is [`process_cpu_s`].

use engine::Attrs;
use std::time::Duration;

/// Coarsest sampling interval the budget sets, µs (a policy asking for a coarser one keeps
/// its own).
pub const MAX_SAMPLE_US: u64 = 60_000_000;
/// Shortest controller window: two of smaps' 500 ms samples, so a costly first sample is
/// acted on after one second rather than two.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Longest controller window (two of the coarsest sampling intervals).
pub const MAX_WINDOW: Duration = Duration::from_secs(2 * MAX_SAMPLE_US / 1_000_000);
/// Over the budget: aim at this share of it.
pub const AIM_UP: f64 = 0.8;
/// Refine only when the finer level is predicted under this share of the budget.
pub const DOWN_BELOW: f64 = 0.6;
/// The window no burst of samples may overflow (the budget holds over every such window, as
/// far as one group's burst fits in it).
pub const PEAK_WINDOW: Duration = Duration::from_secs(10);
/// Most ladder steps refined in one window.
pub const MAX_STEPS_DOWN: u32 = 2;
/// Cost of one target sample before anything is measured, CPU seconds: an smaps read and a
/// `clear_refs` of a process with 16 MiB resident take ~1.3 ms on the bench host (both walk
/// every page table entry). Guessing high only starts the agent coarse for a few windows.
pub const PRIOR_SAMPLE_COST_S: f64 = 1e-3;
/// Smallest budget accepted (0.1% of one CPU), in basis points.
pub const MIN_BUDGET_BP: u64 = 10;
/// Largest budget accepted (one whole CPU), in basis points.
pub const MAX_BUDGET_BP: u64 = 10_000;

/// The scale of ladder level `level`: 2^(level/2).
pub fn scale_of(level: u32) -> f64 {
    2f64.powf(level as f64 / 2.0)
}

/// `cpu_budget`'s value, in basis points of one CPU: a percentage, `"2%"` (0.1% to 100%).
/// Any other form is refused: a bare number would leave the unit to guess.
pub fn parse_share(q: &schemes::units::Quantity) -> Result<u64, String> {
    use schemes::units::Quantity;
    let s = match q {
        Quantity::Str(s) if s.trim_end().ends_with('%') => s,
        other => {
            return Err(format!(
                "{other} is not a percentage of one CPU: write it like \"2%\""
            ))
        }
    };
    let bp = schemes::units::basis_points(q)?;
    if !(MIN_BUDGET_BP..=MAX_BUDGET_BP).contains(&bp) {
        return Err(format!(
            "{s:?} is outside 0.1% to 100% of one CPU (the budget is a share of one CPU)"
        ));
    }
    Ok(bp)
}

/// What the budget allows for one group's attributes: a sampling interval up to
/// [`MAX_SAMPLE_US`] and region counts down to its `min_nr_regions`.
fn interval_cap(base: &Attrs) -> f64 {
    (MAX_SAMPLE_US as f64 / base.sample_us.max(1) as f64).max(1.0)
}

fn region_cap(base: &Attrs) -> f64 {
    (base.max_nr_regions as f64 / base.min_nr_regions.max(1) as f64).max(1.0)
}

/// `base` (a group's policy attributes) at scale `k` (≥ 1; below 1 counts as 1): intervals
/// first, then regions (module doc). Valid whenever `base` is.
pub fn scaled(base: &Attrs, k: f64) -> Attrs {
    let k = if k.is_finite() { k.max(1.0) } else { 1.0 };
    let fi = k.min(interval_cap(base));
    let fr = (k / fi).min(region_cap(base));
    let mul = |v: u64| ((v as f64 * fi).round() as u64).max(v);
    let sample_us = mul(base.sample_us);
    // The samples per aggregation and per regions update stay the policy's.
    let aggr_us = sample_us.saturating_mul(base.aggr_us / base.sample_us.max(1));
    let aggr_us = aggr_us.max(mul(base.aggr_us)).max(sample_us);
    let ops_update_us = mul(base.ops_update_us);
    let max_nr_regions = ((base.max_nr_regions as f64 / fr).floor() as u32)
        .clamp(base.min_nr_regions, base.max_nr_regions);
    Attrs {
        sample_us,
        aggr_us,
        ops_update_us,
        max_nr_regions,
        ..*base
    }
}

/// Highest useful level: the first whose scale reaches every group's caps.
pub fn max_level(bases: &[Attrs]) -> u32 {
    let cap = bases
        .iter()
        .map(|b| interval_cap(b) * region_cap(b))
        .fold(1.0, f64::max);
    let mut l = 0;
    while scale_of(l) < cap && l < 200 {
        l += 1;
    }
    l
}

/// One group as the controller sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupLoad {
    /// The group's policy attributes (scale 1).
    pub base: Attrs,
    /// Its targets now (the prediction).
    pub targets: usize,
    /// Its targets during the window just measured (the calibration): the fewer of its
    /// counts at the window's start and end.
    pub window_targets: usize,
}

/// Work units per second at `level`: per target and sample, half fixed and half in
/// proportion to its regions (at most `max_nr_regions`, relative to the policy's).
fn work_rate(groups: &[GroupLoad], level: u32, targets: fn(&GroupLoad) -> usize) -> f64 {
    groups
        .iter()
        .map(|g| {
            let a = scaled(&g.base, scale_of(level));
            let regions = a.max_nr_regions as f64 / g.base.max_nr_regions.max(1) as f64;
            targets(g) as f64 * 1e6 / a.sample_us as f64 * (0.5 + 0.5 * regions)
        })
        .sum()
}

fn now(g: &GroupLoad) -> usize {
    g.targets
}

/// The share of one CPU predicted at `level` for `groups` (targets now) at `unit` seconds a
/// work unit: the larger of the average and the peak. Peak: a group samples all its targets
/// in one step, a burst; groups' bursts are spread apart ([`stagger`]), so a window of
/// [`PEAK_WINDOW`] holds about `PEAK_WINDOW × Σ 1/interval` of them, rounded up, counted at
/// the largest group's burst.
pub fn predicted(groups: &[GroupLoad], unit: f64, level: u32) -> f64 {
    let w = PEAK_WINDOW.as_secs_f64();
    let (mut avg, mut bursts_per_s, mut burst) = (0.0, 0.0, 0.0f64);
    for g in groups.iter().filter(|g| g.targets > 0) {
        let a = scaled(&g.base, scale_of(level));
        let regions = a.max_nr_regions as f64 / g.base.max_nr_regions.max(1) as f64;
        let b = unit * g.targets as f64 * (0.5 + 0.5 * regions);
        let per_s = 1e6 / a.sample_us as f64;
        avg += b * per_s;
        bursts_per_s += per_s;
        burst = burst.max(b);
    }
    let peak = (w * bursts_per_s).ceil() * burst / w;
    avg.max(peak)
}

/// Whether the budget is out of reach over a [`PEAK_WINDOW`] at any level: one burst of one
/// group (each of its targets sampled once, at the coarsest level's regions) is predicted to
/// cost more than the budget allows a whole window. The average can still be held (at most
/// one burst per coarsest interval), but each window holding a burst is over. The first such
/// group's index, if any. Pure.
pub fn beyond_reach(groups: &[GroupLoad], unit: f64, budget: f64) -> Option<usize> {
    let bases: Vec<Attrs> = groups.iter().map(|g| g.base).collect();
    let top = scale_of(max_level(&bases));
    groups.iter().position(|g| {
        let a = scaled(&g.base, top);
        let regions = a.max_nr_regions as f64 / g.base.max_nr_regions.max(1) as f64;
        g.targets > 0
            && unit * g.targets as f64 * (0.5 + 0.5 * regions) > budget * PEAK_WINDOW.as_secs_f64()
    })
}

/// The controller's state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct State {
    /// Ladder level in force.
    pub level: u32,
    /// CPU seconds per work unit (one target sample at full regions), calibrated.
    pub unit_cost_s: f64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            level: 0,
            unit_cost_s: PRIOR_SAMPLE_COST_S,
        }
    }
}

/// What one window measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// The agent's process CPU time over the window, seconds.
    pub cpu_s: f64,
    /// The window's length, seconds.
    pub wall_s: f64,
}

/// The level that fits `budget` (a share of one CPU) with `groups` as they are now: the
/// finest whose predicted share is at most `aim` of it, not finer than `floor`.
fn finest_fitting(
    groups: &[GroupLoad],
    unit: f64,
    budget: f64,
    aim: f64,
    floor: u32,
    top: u32,
) -> u32 {
    (floor..=top)
        .find(|&l| predicted(groups, unit, l) <= aim * budget)
        .unwrap_or(top)
}

/// The controller: the next state from the last window, the state in force during it, and
/// the groups (their policy attributes and their targets now). Pure. The level never leaves
/// `0..=max_level`, and is monotone in the measured CPU (more CPU, never a finer level).
pub fn next(budget: f64, s: State, w: Window, groups: &[GroupLoad]) -> State {
    let bases: Vec<Attrs> = groups.iter().map(|g| g.base).collect();
    let top = max_level(&bases);
    let level = s.level.min(top);
    let rate = work_rate(groups, level, now);
    if rate <= 0.0 || w.wall_s <= 0.0 || !w.cpu_s.is_finite() || !budget.is_finite() {
        // No targets (or nothing measured): nothing to predict, hold.
        return State { level, ..s };
    }
    let window_rate = work_rate(groups, level, |g| g.window_targets);
    let unit = if window_rate > 0.0 {
        let measured = (w.cpu_s.max(0.0) / w.wall_s) / window_rate;
        // Fast to believe a higher cost, slow to believe a lower one.
        if measured >= s.unit_cost_s {
            measured
        } else {
            0.5 * (measured + s.unit_cost_s)
        }
    } else {
        // Targets just appeared: the cost known so far (the prior at first).
        s.unit_cost_s
    };
    let level = if predicted(groups, unit, level) > budget {
        finest_fitting(groups, unit, budget, AIM_UP, level, top).max((level + 1).min(top))
    } else {
        let floor = level.saturating_sub(MAX_STEPS_DOWN);
        finest_fitting(groups, unit, budget, DOWN_BELOW, floor, level).min(level)
    };
    State {
        level,
        unit_cost_s: unit,
    }
}

/// How long the next window is: two sampling intervals of the coarsest group, within
/// [`MIN_WINDOW`] and [`MAX_WINDOW`] (a window should hold samples of every group).
pub fn window_len(sample_us: impl IntoIterator<Item = u64>) -> Duration {
    let coarsest = sample_us.into_iter().max().unwrap_or(0);
    Duration::from_micros(coarsest.saturating_mul(2)).clamp(MIN_WINDOW, MAX_WINDOW)
}

/// The phase of each of `n` groups after a level change: group `i` samples first `i/n` of
/// the sampling interval `interval_us` (the coarsest after the change) after the others'
/// first, one interval from now.
pub fn stagger(n: usize, interval_us: u64) -> Vec<Duration> {
    (0..n)
        .map(|i| Duration::from_micros(interval_us.saturating_mul(i as u64) / n as u64))
        .collect()
}

/// This process's CPU time (user + system, every thread), seconds.
pub fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_PROCESS_CPUTIME_ID exists on every
    // Linux (clock_gettime(2)), and the call writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

#[cfg(test)]
mod tests;
