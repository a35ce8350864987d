//! Access checks ("operations sets"): each implements [`crate::AccessCheck`] (or, for the
//! kernel's own DAMON, is a snapshot source), and says whether it is usable here and why not.

pub mod damon;
pub mod detect;
pub mod page_idle;
pub mod probe;
pub mod sim;
pub mod smaps;
pub mod soft_dirty;
