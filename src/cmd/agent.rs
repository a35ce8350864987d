//! `madvd agent`: the node daemon (src/agent/). Flags become [`agent::Options`]; the agent
//! does the rest.

use crate::agent::{self, Options};
use crate::cli::AgentArgs;
use anyhow::Result;
use engine::SysRoot;

pub fn run(root: &SysRoot, a: AgentArgs) -> Result<()> {
    agent::run(
        root,
        Options {
            config: a.config,
            once: a.once,
            for_: a.for_,
            listen: a.listen,
            dry_run: a.dry_run,
            check: a.check,
        },
    )
}
