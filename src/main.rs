//! `madvd`: the command line. Wires the engine's stages (ops → monitor → schemes → actuator)
//! for live targets, records and renders, and runs the demo. See docs/cli.md.

mod agent;
mod child;
mod cli;
mod cmd;
mod exit;
mod heatmap;
mod logging;
mod pipeline;
mod policy;
mod record;
mod replay;
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
                    let args: Vec<String> = std::env::args().collect();
                    let format = logging::format_of_raw_args(&args);
                    logging::init(0, format);
                    let msg = exit::clap_one_line(&e.render().to_string());
                    logging::error(format, &msg);
                    ExitCode::from(Code::Usage as u8)
                }
            };
        }
    };
    let format = match &cli.cmd {
        Command::Agent(a) => logging::agent_format(a.log_format),
        _ => logging::LogFormat::Text,
    };
    logging::init(cli.verbose, format);
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::error(format, &exit::one_line(&e));
            ExitCode::from(exit::code_of(&e) as u8)
        }
    }
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
        Command::Replay(a) => cmd::replay::run(a),
        Command::Agent(a) => cmd::agent::run(&root, a),
        Command::Workload(w) => {
            let spec = madvd_workload::WorkloadSpec::from_json(&w.spec)
                .map_err(|e| exit::err(Code::Usage, e.to_string()))?;
            madvd_workload::run_child(&spec, std::io::stdin().lock(), std::io::stdout())?;
            Ok(())
        }
    }
}
