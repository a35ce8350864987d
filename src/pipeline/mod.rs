//! The stage loop on live targets: ops → monitor → schemes → actuator, with one value going
//! back ([`Feedback`]: the apply report, to the schemes for quota charging and stats and to
//! the monitor for the age reset and the probe's "just advised" ranges, plus when a scheme
//! wants its next snapshot).
//!
//! - [`build`] (`build.rs`): flags and policy → one [`StageConfig`] → [`Stages`] (built, not
//!   started) → [`Stages::start`] → [`Running`];
//! - [`source`] (`source.rs`): the [`SnapshotSource`] trait — madvd's monitor core over an
//!   access check, or the kernel's DAMON — and the one monitor loop that drives either;
//! - [`actuate`] (`actuate.rs`): the actuation thread (the schemes' [`Planner`] and the
//!   actuator, with its own pidfd per target);
//! - [`ops`] (`ops.rs`): building an access check by name, and adding / removing targets;
//! - [`running`] (`running.rs`): started stages, the events they send, their clock;
//! - [`follow`] (`follow.rs`): `run --children`, the targets' descendants handed to live
//!   stages as they fork and exit.
//!
//! Two threads, joined by crossbeam channels: the **monitor thread** owns the source, pulls
//! it on the wall clock and sends each snapshot (aggregated, or mid-aggregation when a
//! scheme's apply interval is due) to the actuation thread; the **actuation thread** plans,
//! applies, accounts, and sends the feedback back before the monitor's next pull.
//!
//! The caller's thread receives [`Event`]s (snapshots, reports, dropped targets) for display
//! and recording. Stopping: [`Running::stop_and_join`] (signal, `--for`, all targets gone)
//! sets the stop flag; the actuator checks it between `process_madvise` calls (the rest of
//! the round is reported `Cancelled`, nothing is half applied), both threads leave at their
//! next loop top.

pub mod actuate;
pub mod build;
mod diag;
pub mod follow;
pub mod ops;
pub mod running;
pub mod source;

pub use actuate::SchemeLine;
pub use build::{build, SchemesConfig, StageConfig, Stages};
pub use ops::Watched;
pub use running::{Event, Running};

#[cfg(test)]
mod tests;
