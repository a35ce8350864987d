//! `madvd agent`: madvd as a node daemon. A config file names target groups (a selector — a
//! cgroup, a command name, an executable, a pid — and the policy its processes get); the
//! agent runs one stage pipeline (`pipeline/`: monitor → schemes → actuator) per group,
//! adds processes as they appear and drops them when they exit (rescanning every
//! `rescan`), reloads its config on SIGHUP or when a config or policy file changes (all or
//! nothing), and serves Prometheus metrics. See docs/agent.md.
//!
//! - [`config`]: the config file (pure parser, `path:line:column` errors);
//! - [`reload`]: checking a whole config before use, the reload state machine, SIGHUP,
//!   file watching;
//! - [`discover`]: which processes a selector matches (rooted at a `SysRoot`);
//! - [`group`]: one group's lifecycle (its stages, processes added and dropped);
//! - [`daemon`]: the agent loop (rescans, reloads, metrics publishing);
//! - [`budget`]: the CPU budget's controller (pure) and the process CPU clock;
//! - [`check`]: what `--check` prints;
//! - [`account`]: an actuation round folded into a group's counters, and the labels;
//! - [`metrics`]: metric structs, the exposition text, the HTTP server.

mod account;
pub mod budget;
mod check;
pub mod config;
mod daemon;
pub mod discover;
mod group;
pub mod metrics;
pub mod reload;

pub use daemon::Options;

use anyhow::Result;
use engine::SysRoot;

/// Run the agent until SIGINT/SIGTERM, `--for`, or (with `--once`) one round; with
/// `--check`, check everything, print what would run, and exit.
pub fn run(root: &SysRoot, opts: Options) -> Result<()> {
    reload::install_sighup()?;
    let prepared = daemon::prepare(root, &opts)?;
    if opts.check {
        if let Some(a) = opts.listen.or(prepared.config.listen) {
            config::try_bind(a)?;
        }
        check::print_check(root, &prepared);
        return Ok(());
    }
    daemon::serve(root, opts, prepared)
}
