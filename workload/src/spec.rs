//! What the workload child does ([`WorkloadSpec`], passed as one JSON argument) and what it
//! says back ([`Event`], one JSON object per line), plus the hot-set rule both sides share.

use crate::scripted::{Script, ScriptError};
use engine::AddrRange;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// The child's page size (it assumes 4 KiB pages, as the parent's checks do).
pub const PAGE: u64 = 4096;

/// Where the hot set is over time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pattern {
    /// A fixed hot range.
    HotCold,
    /// The hot range jumps by its own size every `period_ms` (wrapping around).
    Moving { period_ms: u64 },
    /// A growing working set: at step k (of `steps`, each `step_ms` long) the hot set is the
    /// first (k+1)/steps of the mapping; then it starts over.
    Stairs { steps: u32, step_ms: u64 },
}

/// Page contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fill {
    /// Compressible (a hash header, then a repeating 16-byte motif): zram stores it small.
    Pattern,
    /// Incompressible pseudo-random words: zram saves little.
    Random,
}

/// What the child does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    /// Bytes, rounded up to pages.
    pub size: u64,
    pub hot_fraction: f64,
    /// Start of the hot range as a fraction of `size`.
    pub hot_offset: f64,
    pub pattern: Pattern,
    pub fill: Fill,
    /// Share of accesses that rewrite the page with its next generation.
    pub write_fraction: f64,
    pub nohugepage: bool,
    /// Hot and cold sets in two separate mappings (VMA-granular checks can tell them apart).
    pub two_mappings: bool,
    /// Cap on page accesses per second (None: as fast as one thread goes).
    pub rate_limit: Option<u64>,
    pub seed: u64,
    /// Fork children on command instead of running the access loop (`fork.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_children: Option<crate::fork::ForkChildren>,
    /// A pattern of the simulator to run instead of the hot range (`pattern`,
    /// `hot_fraction`, `hot_offset` are then unused; one mapping only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
    /// Extra mappings never touched (a large, sparse address space; none by default).
    #[serde(default)]
    pub sparse: Option<Sparse>,
    /// The THP evaluation workload (`thp.rs`) instead of the hot range: a dense TLB-bound
    /// mapping and a sparse one, THP never or always for this process only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thp: Option<crate::thp::ThpSpec>,
}

/// Extra address space: `bytes` in `vmas` private anonymous `MAP_NORESERVE` mappings that
/// are never touched, neighbours alternately read-write and read-only so the kernel keeps
/// them apart (`vmas` above `vm.max_map_count` fails with ENOMEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sparse {
    pub vmas: u64,
    pub bytes: u64,
}

/// A spec the child refuses.
#[derive(Debug, Error)]
pub enum SpecError {
    #[error("workload spec: {0}")]
    Json(#[from] serde_json::Error),
    #[error("workload size {0} is below 16 pages")]
    TooSmall(u64),
    #[error("hot_fraction {0} is not in (0, 1]")]
    HotFraction(f64),
    #[error("hot_offset {0} is not in [0, 1)")]
    HotOffset(f64),
    #[error("write_fraction {0} is not in [0, 1]")]
    WriteFraction(f64),
    #[error("workload {0}")]
    Script(#[from] ScriptError),
    #[error("a script runs over one mapping (two_mappings is set)")]
    ScriptTwoMappings,
    #[error("sparse: {bytes} bytes cannot make {vmas} mappings of at least a page each")]
    Sparse { vmas: u64, bytes: u64 },
    #[error("workload {0}")]
    Thp(#[from] crate::thp::ThpSpecError),
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            size: 256 << 20,
            hot_fraction: 0.10,
            hot_offset: 0.0,
            pattern: Pattern::HotCold,
            fill: Fill::Pattern,
            write_fraction: 0.0,
            nohugepage: true,
            two_mappings: false,
            rate_limit: None,
            seed: 1,
            fork_children: None,
            script: None,
            sparse: None,
            thp: None,
        }
    }
}

impl WorkloadSpec {
    /// The spec as one command-line argument (`madvd workload --spec JSON`).
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--spec".into(),
            serde_json::to_string(self).expect("spec serializes"),
        ]
    }
    pub fn from_json(s: &str) -> Result<Self, SpecError> {
        let spec: WorkloadSpec = serde_json::from_str(s)?;
        spec.validate()?;
        Ok(spec)
    }
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.size < 16 * PAGE {
            return Err(SpecError::TooSmall(self.size));
        }
        if !(self.hot_fraction > 0.0 && self.hot_fraction <= 1.0) {
            return Err(SpecError::HotFraction(self.hot_fraction));
        }
        if !(0.0..1.0).contains(&self.hot_offset) {
            return Err(SpecError::HotOffset(self.hot_offset));
        }
        if !(0.0..=1.0).contains(&self.write_fraction) {
            return Err(SpecError::WriteFraction(self.write_fraction));
        }
        if let Some(script) = &self.script {
            if self.two_mappings {
                return Err(SpecError::ScriptTwoMappings);
            }
            script.check(self.size.next_multiple_of(PAGE))?;
        }
        if let Some(thp) = &self.thp {
            thp.validate(self)?;
        }
        if let Some(Sparse { vmas, bytes }) = self.sparse {
            if vmas == 0 || bytes / PAGE < vmas {
                return Err(SpecError::Sparse { vmas, bytes });
            }
        }
        Ok(())
    }
}

/// Hot page range `[first, last)` of a workload of `pages` pages at time `t`.
pub fn hot_pages(spec: &WorkloadSpec, pages: u64, t: Duration) -> (u64, u64) {
    let hot = ((pages as f64 * spec.hot_fraction).round() as u64).clamp(1, pages);
    let base = ((pages as f64 * spec.hot_offset) as u64).min(pages - hot);
    if spec.two_mappings {
        return (0, hot);
    }
    if spec.script.is_some() {
        // A script has no one hot range: report the whole mapping.
        return (0, pages);
    }
    match spec.pattern {
        Pattern::HotCold => (base, base + hot),
        Pattern::Moving { period_ms } => {
            let k = t.as_millis() as u64 / period_ms.max(1);
            let slots = (pages / hot).max(1);
            let start = (base / hot + k) % slots * hot;
            (start, (start + hot).min(pages))
        }
        Pattern::Stairs { steps, step_ms } => {
            let steps = steps.max(1) as u64;
            let k = t.as_millis() as u64 / step_ms.max(1) % steps;
            (0, (pages * (k + 1) / steps).max(1))
        }
    }
}

/// Messages the child prints, one JSON object per line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Ready {
        pid: u32,
        mappings: Vec<AddrRange>,
        hot: AddrRange,
        page_size: u64,
    },
    Marked,
    Truth(Truth),
    Verify(Verify),
    Paused,
    Resumed,
    Unmapped {
        range: AddrRange,
    },
    Error {
        message: String,
    },
    /// The forking workload (`fork.rs`): a child forked, its memory touched.
    Forked {
        pid: u32,
        mapping: AddrRange,
    },
    /// The forking workload: a child killed and reaped.
    Reaped {
        pid: u32,
    },
}

/// Ground truth since the last `mark`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub touched_bytes: u64,
    pub untouched_bytes: u64,
    pub ops: u64,
    pub elapsed_ms: u64,
    pub ops_per_sec: f64,
    /// The hot range now.
    pub hot: AddrRange,
    /// CPU time of the access loop's thread since `mark` (the THP workload only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loop_cpu_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verify {
    pub pages: u64,
    pub bad_pages: u64,
}

/// Write one protocol event as a JSON line and flush (the child, the forker and the THP
/// child all speak through this).
pub(crate) fn write_event(out: &mut impl std::io::Write, ev: &Event) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        serde_json::to_string(ev).expect("event serializes")
    )?;
    out.flush()
}
