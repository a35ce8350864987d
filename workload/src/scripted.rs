//! A pattern of the simulator run for real: the child touches, in each interval of
//! `interval_ms`, exactly the pages the engine's own truth function names
//! ([`engine::ops::sim::Pattern::interval`] → `touched_pages`), so a scenario of the sim
//! (a Zipf key space, stairs, a moving hot set, ...) runs on real memory with the same
//! ground truth.

use engine::ops::sim::{Pattern as SimPattern, PatternError};
use engine::AddrRange;
use serde::{Deserialize, Serialize};

/// What the child runs instead of its hot range ([`crate::WorkloadSpec::script`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Script {
    /// The pattern, with addresses relative to the mapping: offset 0 is its first byte.
    pub pattern: SimPattern,
    /// Wall-clock length of one pattern interval, in milliseconds (> 0).
    pub interval_ms: u64,
}

impl Script {
    /// Why the child cannot run this script over a mapping of `size` bytes, if it cannot.
    pub fn check(&self, size: u64) -> Result<(), ScriptError> {
        if self.interval_ms == 0 {
            return Err(ScriptError::Interval);
        }
        self.pattern.validate()?;
        let iv = self.pattern.interval(0, 0);
        match iv.support().into_iter().find(|r| r.end > size) {
            Some(r) => Err(ScriptError::Outside { range: r, size }),
            None => Ok(()),
        }
    }
}

/// The script's pattern moved to a mapping at `base` (what [`touched`] takes).
pub fn at_base(script: &Script, base: u64) -> SimPattern {
    script.pattern.relocated(0, base)
}

/// The pages (indexes from the mapping's start) that `pattern` (already at `base`:
/// [`at_base`]) touches in interval `i` for `seed`, the mapping being `pages` pages. Pure.
pub fn touched(pattern: &SimPattern, seed: u64, i: u64, base: u64, pages: u64) -> Vec<u64> {
    let mapping = AddrRange::new(base, base + pages * crate::PAGE);
    pattern
        .interval(seed, i)
        .touched_pages(mapping)
        .into_iter()
        .map(|a| (a - base) / crate::PAGE)
        .collect()
}

/// A script the child refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    #[error("script interval_ms must be > 0")]
    Interval,
    #[error("script pattern: {0}")]
    Pattern(#[from] PatternError),
    #[error("script pattern range {range} lies outside the mapping (0x0-{size:#x})")]
    Outside { range: AddrRange, size: u64 },
}
