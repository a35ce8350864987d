//! A real-memory workload with ground truth, run as a child process (`madvd workload ...`)
//! by tests, benches and the demo, and the parent's client for it.
//!
//! The child maps its memory itself (private anonymous, `MADV_NOHUGEPAGE` by default) and
//! first-touches every page itself, so no page is shared with its parent (PAGEOUT skips
//! shared pages). Every page holds content derived from (page index, generation), so the
//! whole mapping can be verified after any amount of paging out and in. One thread runs the
//! access loop over the current hot range; another answers commands on stdin:
//!
//! | command | answer (one JSON line on stdout) |
//! |---|---|
//! | `mark` | starts a ground-truth window: clears the touched-page bitmap and the op counter |
//! | `truth` | `touched_bytes`, `untouched_bytes`, `ops`, `elapsed_ms`, `ops_per_sec`, `hot` since `mark` |
//! | `verify` | pauses the loop, checks every mapped page, resumes: `pages`, `bad_pages` |
//! | `pause` / `resume` | stops / restarts the access loop |
//! | `unmap OFF LEN` | munmaps `[base+OFF, base+OFF+LEN)` (page aligned, outside the hot set) |
//! | `quit` | exits |
//!
//! The first line is `{"event":"ready",...}` with the pid, the mappings and the hot range.
//!
//! - [`spec`]: what the child does ([`WorkloadSpec`]) and what it says ([`Event`]);
//! - `memory`: the child's mappings and the content of each page (private);
//! - [`child`]: the child itself ([`run_child`]);
//! - [`fork`]: the forking workload (`fork_children`: children forked and ended on command);
//! - [`scripted`]: a pattern of the simulator (`engine::ops::sim::Pattern`: a Zipf key
//!   space, stairs, ...) run for real ([`Script`], `WorkloadSpec::script`);
//! - [`thp`]: the THP evaluation workload (`WorkloadSpec::thp`: a dense TLB-bound mapping
//!   and a sparse one, THP never or always per process; throughput per loop CPU second);
//! - [`client`]: the parent's side ([`Client`]).

pub mod child;
pub mod client;
pub mod fork;
mod memory;
pub mod scripted;
pub mod spec;
#[cfg(test)]
mod tests;
pub mod thp;

pub use child::run_child;
pub use client::{Client, ClientError};
pub use scripted::{Script, ScriptError};
pub use spec::{
    hot_pages, Event, Fill, Pattern, Sparse, SpecError, Truth, Verify, WorkloadSpec, PAGE,
};
pub use thp::{ThpMode, ThpSpec};
