//! Building an access check, in one place ([`build_ops`]): the kind's own builder
//! (`engine::ops::OpsKind::build_check`) over the watched processes, or the simulator.
//! Targets are added and removed while it runs through `AccessCheck::add_target` /
//! `remove_target` (the agent's discovery).

use crate::exit::{err, Code};
use anyhow::Result;
use engine::ops::sim::{SimOps, SimSpace};
use engine::ops::OpsKind;
use engine::process::Process;
use engine::{AccessCheck, SysRoot, TargetId};

/// An access check whose targets come and go while it runs.
pub type Check = dyn AccessCheck + Send;

/// What a check watches: live processes (their access-check handles), or the simulator.
pub enum Watched {
    Procs(Vec<Process>),
    /// One simulated address space, as target 1 (`record --sim`).
    Sim(SimSpace),
}

/// The target id the simulator's one space has.
pub const SIM_TARGET: TargetId = TargetId(1);

/// Build the access check of `kind` over `watch`: the one place a primitive is constructed.
/// (Kernel DAMON is a snapshot source, not a check: `pipeline::build`.)
pub fn build_ops(kind: OpsKind, root: &SysRoot, watch: Watched) -> Result<Box<Check>> {
    match (kind, watch) {
        (OpsKind::Sim, Watched::Sim(space)) => Ok(Box::new(SimOps::single(SIM_TARGET, space))),
        (_, Watched::Sim(_)) => Err(err(
            Code::Usage,
            format!("the simulator's space needs --ops sim, not `{kind}`"),
        )),
        (OpsKind::Sim, Watched::Procs(_)) => Err(err(
            Code::Usage,
            "--ops sim watches no real process: use `madvd record --sim SCENARIO`",
        )),
        (_, Watched::Procs(procs)) => kind
            .build_check(root, procs)
            .map_err(|e| err(Code::Failure, e.to_string())),
    }
}
