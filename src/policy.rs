//! Glue to the `schemes` crate: load a policy (errors as `path:line:column: message`, exit
//! codes). The schemes the actuation thread drives are built by `pipeline::build`.

use crate::exit::{err, with_source, Code};
use anyhow::Result;
use schemes::{Policy, PolicyError};
use std::path::Path;

/// Load and check a policy file. Unreadable (`cannot read policy PATH: …`) or a mistake in
/// it (`path:line:column: message`): 1, by the rule in src/exit.rs.
pub fn load(path: &Path) -> Result<Policy> {
    Policy::load(path).map_err(policy_error)
}

pub fn policy_error(e: PolicyError) -> anyhow::Error {
    match e {
        PolicyError::Io { path, source } => with_source(
            Code::Failure,
            format!("cannot read policy {}", path.display()),
            source,
        ),
        e => err(Code::Failure, e.to_string()),
    }
}
