//! Watermarks: activate a scheme only while free memory is in the right band, with
//! hysteresis. `damos_wmark_wait_us()` (mm/damon/core.c, Linux 6.12):
//!
//! ```text
//! if metric > high || metric < low:                    deactivate, recheck after interval
//! if !activated && mid <= metric <= high:              stay inactive, recheck after interval
//! otherwise (low <= metric < mid, or active in band):  activate
//! ```
//! The metric is the free memory rate in per-mille (`MemFree × 1000 / MemTotal`).

use crate::policy::WmarkSpec;
use std::fmt;

/// Why a watermark decision came out as it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WmarkVerdict {
    /// Free memory above the high watermark: nothing to do.
    AboveHigh,
    /// Free memory below the low watermark: leave memory to the kernel's own reclaim.
    BelowLow,
    /// In `[mid, high]` and not yet active: wait (hysteresis).
    WaitingInBand,
    Active,
}

impl WmarkVerdict {
    pub fn is_active(self) -> bool {
        self == WmarkVerdict::Active
    }
}

/// One step of the kernel's rule: the new activation state for `metric` (‰).
pub fn step(activated: bool, metric: u64, w: &WmarkSpec) -> WmarkVerdict {
    if metric > w.high {
        return WmarkVerdict::AboveHigh;
    }
    if metric < w.low {
        return WmarkVerdict::BelowLow;
    }
    if !activated && w.high >= metric && metric >= w.mid {
        return WmarkVerdict::WaitingInBand;
    }
    WmarkVerdict::Active
}

/// A scheme's watermark state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WmarkState {
    pub activated: bool,
    /// The last metric read, ‰.
    pub last_metric: Option<u64>,
    pub last_verdict: Option<WmarkVerdict>,
    /// When the metric is next read, µs (while inactive: after the check interval).
    pub next_check_us: u64,
}

/// A new scheme starts **activated**: `damon_new_scheme()` (mm/damon/core.c, Linux 6.12.117)
/// sets `scheme->wmarks.activated = true`, so a scheme whose first reading falls inside the
/// hysteresis band `[mid, high]` runs, and a metric that cannot be read leaves it running.
impl Default for WmarkState {
    fn default() -> Self {
        WmarkState {
            activated: true,
            last_metric: None,
            last_verdict: None,
            next_check_us: 0,
        }
    }
}

impl WmarkState {
    /// Whether the metric should be read at `now_us`: always while active (the kernel rereads
    /// it every loop), after `interval` while inactive.
    pub fn due(&self, now_us: u64) -> bool {
        self.activated || now_us >= self.next_check_us
    }

    /// Apply a metric reading taken at `now_us`.
    pub fn update(&mut self, metric: u64, now_us: u64, w: &WmarkSpec) -> WmarkVerdict {
        let v = step(self.activated, metric, w);
        self.activated = v.is_active();
        self.last_metric = Some(metric);
        self.last_verdict = Some(v);
        self.next_check_us = if self.activated {
            now_us
        } else {
            now_us.saturating_add(w.interval_us)
        };
        v
    }
}

/// Human text for an inactive verdict, for stats and `run` output.
pub struct Reason<'a>(pub WmarkVerdict, pub u64, pub &'a WmarkSpec);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Reason(v, m, w) = self;
        let pct = |x: u64| x as f64 / 10.0;
        match v {
            WmarkVerdict::AboveHigh => write!(
                f,
                "free memory {:.1}% is above the high watermark {:.1}%",
                pct(*m),
                pct(w.high)
            ),
            WmarkVerdict::BelowLow => write!(
                f,
                "free memory {:.1}% is below the low watermark {:.1}%",
                pct(*m),
                pct(w.low)
            ),
            WmarkVerdict::WaitingInBand => write!(
                f,
                "free memory {:.1}% has not fallen below the mid watermark {:.1}% yet",
                pct(*m),
                pct(w.mid)
            ),
            WmarkVerdict::Active => write!(f, "active"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> WmarkSpec {
        WmarkSpec {
            interval_us: 5_000_000,
            high: 500,
            mid: 400,
            low: 200,
            pos: Default::default(),
        }
    }

    #[test]
    fn kernel_rules() {
        let w = w();
        assert_eq!(step(false, 501, &w), WmarkVerdict::AboveHigh);
        assert_eq!(step(true, 501, &w), WmarkVerdict::AboveHigh);
        assert_eq!(step(true, 199, &w), WmarkVerdict::BelowLow);
        assert_eq!(step(false, 500, &w), WmarkVerdict::WaitingInBand);
        assert_eq!(step(false, 400, &w), WmarkVerdict::WaitingInBand);
        assert_eq!(step(false, 399, &w), WmarkVerdict::Active);
        assert_eq!(step(false, 200, &w), WmarkVerdict::Active);
        assert_eq!(step(true, 500, &w), WmarkVerdict::Active);
        assert_eq!(step(true, 450, &w), WmarkVerdict::Active);
    }

    #[test]
    fn rechecks_after_interval_while_inactive() {
        let w = w();
        let mut s = WmarkState::default();
        assert!(s.due(0));
        assert_eq!(s.update(600, 0, &w), WmarkVerdict::AboveHigh);
        assert!(!s.due(4_999_999));
        assert!(s.due(5_000_000));
        assert_eq!(s.update(300, 5_000_000, &w), WmarkVerdict::Active);
        assert!(s.due(5_000_001));
        assert_eq!(
            Reason(WmarkVerdict::AboveHigh, 600, &w).to_string(),
            "free memory 60.0% is above the high watermark 50.0%"
        );
    }
}
