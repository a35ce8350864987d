//! madvd's policy half of DAMOS, as a pure library: policy files in; for each region
//! snapshot, the advice to apply out; the actuator's apply report back in.
//!
//! ```text
//! Policy::load(path)            RON file -> checked Policy (errors: path:line:column: ...)
//! Schemes::new(&policy, env)    runtime state; goal/watermark sources checked here
//! schemes.plan(&snapshot, now)  -> Vec<AdviceRequest>   (apply intervals, watermarks,
//!                                                         quotas, scores, filters, stats)
//! schemes.account(&report, now)  <- ApplyReport          (time charge, applied stats)
//! ```
//!
//! Kernel semantics throughout (mm/damon/core.c and ops-common.c, Linux 6.12 unless noted),
//! cited next to each ported rule. Where is...
//! - the file format: [`policy`] (documented in docs/policy-format.md), units: [`units`];
//! - the access pattern match: [`pattern`]; actions: [`action`];
//! - the run time (`Schemes`: plan, account, stats): `runtime.rs`;
//! - quotas, charging by size and time, split-to-fit, feed loop, histogram, resume point:
//!   [`quota`]; hot/cold scores: [`score`];
//! - watermarks: [`wmark`]; filters: [`filter`]; quota goals and metric sources: [`goal`];
//! - `reclaim_cgroup` over physical memory (amounts per owning cgroup): [`reclaim`];
//! - the refault guard (`refault_rate` goals): [`refault`]; the hot pages a page-out scheme
//!   learned from its refaults, cut out of its later advice: [`learn`].

pub mod action;
pub mod filter;
pub mod goal;
pub mod learn;
pub mod locate;
pub mod pattern;
pub mod policy;
pub mod quota;
pub mod reclaim;
pub mod refault;
mod runtime;
pub mod score;
pub mod stats;
pub mod units;
pub mod wmark;

pub use action::Action;
pub use filter::{PageFilter, PageInfo};
pub use goal::{FakeMetrics, MetricError, MetricSource, SysMetrics};
pub use locate::Pos;
pub use policy::{MonitorSection, Policy, PolicyError, SchemeSpec};
pub use runtime::known_out::KNOWN_OUT_TTL_US;
pub use runtime::{Schemes, SchemesError, CGROUP_REFRESH_US, HPAGE_SIZE, MAX_REFILLS};
pub use stats::SchemeStats;
