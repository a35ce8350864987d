//! One module per subcommand. Each takes its parsed arguments and returns `anyhow::Result`.

pub mod agent;
pub mod check;
pub mod demo;
pub mod monitor;
pub mod ops;
pub mod paddr;
pub mod paddr_run;
pub mod record;
pub mod replay;
pub mod report;
pub mod run;
