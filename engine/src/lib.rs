//! madvd's engine: the DAMON-style monitoring core, the access checks ("ops") it samples
//! through, one module per kernel interface, and the actuator that applies advice.
//!
//! Data flows one way — ops → [`monitor`] → (the `schemes` crate) → [`actuator`] — with one
//! value going back: the actuator's [`ApplyReport`] (quota charging in the schemes, the age
//! reset of advised regions in the monitor).
//!
//! Where things are:
//! - the types the stages pass each other: [`region`], [`snapshot`], [`advice`], [`report`];
//! - monitoring attributes and their validation: [`attrs`];
//! - the access-check trait: [`access`]; its implementations: [`ops`];
//! - the monitoring core (merge, split, aging, three-region init, reconcile): [`monitor`];
//! - thin readers/parsers, one per kernel interface: [`kernel`] (all rooted at a [`SysRoot`]);
//! - a live target process (pidfd, maps, pagemap, refusals): [`process`];
//! - following a target's descendants (process trees, start-time identity): [`proctree`];
//! - the actuator (batched `process_madvise`): [`actuator`].
//!
//! The workload child that tests, benches and the demo run is its own crate, `madvd-workload`.

pub mod access;
pub mod actuator;
pub mod advice;
pub mod attrs;
pub mod kernel;
pub mod monitor;
pub mod ops;
pub mod process;
pub mod proctree;
pub mod rangeset;
pub mod region;
pub mod report;
pub mod snapshot;
pub mod sysroot;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use access::{Access, AccessCheck, AccessError, SampleReq};
pub use advice::{Advice, AdviceRequest};
pub use attrs::{Attrs, AttrsError, AttrsOverride, IntervalsGoal, IntervalsGoalOverride};
pub use region::{AddrRange, Region, TargetId};
pub use report::{ApplyErrorKind, ApplyReport, RangeOutcome};
pub use snapshot::{Snapshot, TargetSnapshot};
pub use sysroot::SysRoot;
