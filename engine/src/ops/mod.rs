//! Access primitives ("operations sets"): each implements [`crate::AccessCheck`] (or, for
//! the kernel's own DAMON, is a snapshot source). [`OpsKind`] names them, says whether each
//! is usable here and why not, and builds them; [`common`] holds what they share (as the
//! kernel's `mm/damon/ops-common.c`).

pub mod common;
pub mod damon;
pub mod kind;
pub mod paddr;
pub mod page_idle;
pub mod probe;
pub mod probe_host;
pub mod sim;
pub mod smaps;
pub mod soft_dirty;

pub use kind::{
    choose, detect, pick_auto, BuildError, Built, OpsKind, OpsStatus, PickError, UnknownOps,
};
