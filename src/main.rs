//! The `madvd` command. (Skeleton: the CLI engineer fills in run, monitor, record, report,
//! demo, ops and check.)

use anyhow::Result;
use clap::{Parser, Subcommand};

/// madvd: watch how processes touch their memory and advise the kernel, DAMOS-style.
#[derive(Parser, Debug)]
#[command(name = "madvd", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the built-in workload child (used by the demo, tests and benches).
    #[command(hide = true)]
    Workload {
        /// The workload spec as JSON (see engine::workload::WorkloadSpec).
        #[arg(long)]
        spec: String,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Workload { spec } => {
            let spec =
                engine::workload::WorkloadSpec::from_json(&spec).map_err(anyhow::Error::msg)?;
            let stdin = std::io::stdin().lock();
            engine::workload::run_child(&spec, stdin, std::io::stdout())?;
            Ok(())
        }
    }
}
