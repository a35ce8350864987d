//! Glue to the `schemes` crate: load a policy (errors as `path:line:column: message`, exit
//! codes), and the [`Planner`] the actuation thread drives.

use crate::exit::{err, Code};
use crate::pipeline::{Planner, SchemeLine};
use anyhow::Result;
use engine::{AdviceRequest, ApplyReport, Snapshot, SysRoot};
use schemes::{Policy, PolicyError, Schemes, SysMetrics};
use std::path::Path;

/// Load and check a policy file. Unreadable → 4 (permission) or 1; a mistake in it → 1 with
/// `path:line:column: message`.
pub fn load(path: &Path) -> Result<Policy> {
    Policy::load(path).map_err(policy_error)
}

pub fn policy_error(e: PolicyError) -> anyhow::Error {
    let code = match &e {
        PolicyError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            Code::Permission
        }
        _ => Code::Failure,
    };
    let msg = match &e {
        PolicyError::Io { path, source } => {
            format!("{}: cannot read policy: {source}", path.display())
        }
        _ => e.to_string(),
    };
    err(code, msg)
}

/// The schemes of `policy`, reading system metrics (watermarks, goals) under `root`.
pub fn planner(policy: &Policy, root: &SysRoot) -> Result<Box<dyn Planner>> {
    let s = Schemes::new(policy, Box::new(SysMetrics::new(root.clone())))
        .map_err(|e| err(Code::Failure, e.to_string()))?;
    Ok(Box::new(SchemesPlanner(s)))
}

struct SchemesPlanner(Schemes);

impl Planner for SchemesPlanner {
    fn plan(&mut self, snap: &Snapshot, now_us: u64) -> Vec<AdviceRequest> {
        self.0.plan(snap, now_us)
    }
    fn account(&mut self, report: &ApplyReport, now_us: u64) {
        self.0.account(report, now_us)
    }
    fn stats(&self) -> Vec<SchemeLine> {
        self.0.stats()
    }
    fn next_due_us(&self) -> Option<u64> {
        self.0.next_apply_due_us()
    }
}
