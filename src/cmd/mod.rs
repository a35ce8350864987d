//! One module per subcommand. Each takes its parsed arguments and returns `anyhow::Result`.

pub mod report;
