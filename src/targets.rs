//! Turning CLI choices into engine pieces: open the target processes (each through a pidfd,
//! refusals mapped to exit codes) and pick the access primitive. Building the stages from
//! them is `pipeline::build`.

use crate::exit::{err, Code};
use anyhow::Result;
use engine::ops::OpsKind;
use engine::process::{Process, ProcessError};
use engine::SysRoot;

/// Exit code for a process that cannot be a target.
pub fn process_error(e: ProcessError) -> anyhow::Error {
    let code = match &e {
        ProcessError::Permission { .. } => Code::Permission,
        ProcessError::Myself { .. }
        | ProcessError::Init
        | ProcessError::KernelThread { .. }
        | ProcessError::Thread { .. }
        | ProcessError::NoSuchProcess { .. }
        | ProcessError::Gone { .. } => Code::Target,
        _ if e.is_gone() => Code::Target,
        _ => Code::Failure,
    };
    // The engine cannot know how its caller allows pid 1; the commands do it with a flag.
    match e {
        ProcessError::Init => err(code, "pid 1: refusing to target init without --allow-pid1"),
        e => err(code, e.to_string()),
    }
}

/// Open every pid (all or nothing: the first failure is the error).
pub fn open_all(root: &SysRoot, pids: &[u32], allow_pid1: bool) -> Result<Vec<Process>> {
    let mut v = Vec::with_capacity(pids.len());
    for &pid in pids {
        v.push(Process::open(root, pid, allow_pid1).map_err(process_error)?);
    }
    Ok(v)
}

/// A second handle on each target for the actuation thread, opened while the first handle's
/// pidfd is held: if the first process is still alive after the second open, the pid was not
/// reused in between, so both handles name the same process.
pub fn reopen_all(root: &SysRoot, procs: &[Process], allow_pid1: bool) -> Result<Vec<Process>> {
    let mut v = Vec::with_capacity(procs.len());
    for p in procs {
        let q = Process::open(root, p.pid(), allow_pid1).map_err(process_error)?;
        if !p.is_alive() {
            return Err(err(
                Code::Target,
                format!("pid {} exited while being opened", p.pid()),
            ));
        }
        v.push(q);
    }
    Ok(v)
}

/// Which primitive to use: `auto` or a name (must be usable here).
pub fn choose(root: &SysRoot, name: &str) -> Result<OpsKind> {
    let forced = match name {
        "auto" => None,
        n => Some(
            n.parse::<OpsKind>()
                .map_err(|e| err(Code::Usage, e.to_string()))?,
        ),
    };
    engine::ops::choose(root, forced).map_err(|e| {
        let code = if forced.is_some() {
            Code::Usage
        } else {
            Code::Failure
        };
        err(code, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_pid_is_a_target_error_naming_the_pid() {
        let e = open_all(&SysRoot::host(), &[999_999_999], false).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Target);
        assert!(format!("{e:#}").contains("999999999"), "{e:#}");
        let e = open_all(&SysRoot::host(), &[std::process::id()], false).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Target);
    }

    #[test]
    fn ops_names_unknown_is_usage_unusable_forced_is_usage() {
        let e = choose(&SysRoot::host(), "nope").unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Usage);
        assert!(format!("{e:#}").contains("known: page_idle"), "{e:#}");
        let dir = tempfile::tempdir().unwrap();
        let e = choose(&SysRoot::under(dir.path()), "smaps").unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Usage);
        let e = choose(&SysRoot::under(dir.path()), "auto").unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Failure);
    }
}
