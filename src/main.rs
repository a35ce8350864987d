//! `madvd`: the command line. Wires the engine's stages (ops → monitor → schemes → actuator)
//! for live targets, records and renders, and runs the demo. See docs/cli.md.

mod agent;
mod child;
mod cli;
mod cmd;
mod exit;
mod heatmap;
mod pipeline;
mod policy;
mod record;
mod signals;
mod sysinfo;
mod targets;
mod units;

use clap::error::ErrorKind;
use clap::Parser;
use cli::{Cli, Command};
use exit::Code;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    ExitCode::from(Code::Usage as u8)
                }
                _ => {
                    eprintln!(
                        "madvd: error: {}",
                        exit::clap_one_line(&e.render().to_string())
                    );
                    ExitCode::from(Code::Usage as u8)
                }
            };
        }
    };
    init_tracing(cli.verbose);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("madvd: error: {}", exit::one_line(&e));
            ExitCode::from(exit::code_of(&e) as u8)
        }
    }
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn,madvd=info",
        1 => "info,madvd=debug",
        _ => "debug,madvd=trace",
    };
    let filter = std::env::var("MADVD_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let root = cli
        .sysroot
        .as_ref()
        .map(engine::SysRoot::under)
        .unwrap_or_default();
    if matches!(
        cli.cmd,
        Command::Run(_)
            | Command::Monitor(_)
            | Command::Record(_)
            | Command::Demo(_)
            | Command::Agent(_)
    ) {
        signals::install()?;
    }
    match cli.cmd {
        Command::Ops(a) => cmd::ops::run(&root, a),
        Command::Check(a) => cmd::check::run(a),
        Command::Demo(a) => cmd::demo::run(&root, a),
        Command::Run(a) => cmd::run::run(&root, a),
        Command::Monitor(a) => cmd::monitor::run(&root, a),
        Command::Record(a) => cmd::record::run(&root, a),
        Command::Report(r) => cmd::report::run(r),
        Command::Agent(a) => cmd::agent::run(&root, a),
        Command::Workload(w) => {
            let spec = engine::workload::WorkloadSpec::from_json(&w.spec)
                .map_err(|e| exit::err(Code::Usage, e))?;
            engine::workload::run_child(&spec, std::io::stdin().lock(), std::io::stdout())?;
            Ok(())
        }
    }
}
