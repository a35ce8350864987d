//! Turning CLI choices into engine pieces: open the target processes (each through a pidfd,
//! refusals mapped to exit codes), pick and build the access check, and settle the monitoring
//! attributes (the check's defaults, then the policy's `monitor` section, then CLI flags).

use crate::cli::AttrOverrides;
use crate::exit::{err, Code};
use crate::pipeline::MonitorStage;
use anyhow::Result;
use engine::monitor::Monitor;
use engine::ops::damon::KernelDamon;
use engine::ops::detect::{detect, pick};
use engine::ops::page_idle::PageIdle;
use engine::ops::probe::{Probe, ProbeConfig};
use engine::ops::smaps::SmapsCheck;
use engine::ops::soft_dirty::SoftDirty;
use engine::ops::OpsStatus;
use engine::process::{Process, ProcessError};
use engine::{AccessCheck, Attrs, SysRoot, TargetId};

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
    err(code, e.to_string())
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
pub fn choose(root: &SysRoot, name: &str) -> Result<OpsStatus> {
    let all = detect(root);
    let forced = (name != "auto").then_some(name);
    match pick(&all, forced) {
        Ok(s) => Ok(s.clone()),
        Err(e) => Err(err(
            if forced.is_some() {
                Code::Usage
            } else {
                Code::Failure
            },
            e.to_string(),
        )),
    }
}

/// Build the access check `name` over `procs`.
pub fn build_ops(
    name: &str,
    root: &SysRoot,
    procs: Vec<Process>,
) -> Result<Box<dyn AccessCheck + Send>> {
    match name {
        "probe" => {
            let mut p = Probe::new(root.clone(), ProbeConfig::default());
            for proc in procs {
                p.add_target(proc);
            }
            Ok(Box::new(p))
        }
        "smaps" => {
            let mut s = SmapsCheck::new();
            for proc in procs {
                s.add_target(proc);
            }
            Ok(Box::new(s))
        }
        "page_idle" => {
            let mut p =
                PageIdle::new(root).map_err(|e| err(Code::Failure, format!("page_idle: {e}")))?;
            for proc in procs {
                p.add_target(proc);
            }
            Ok(Box::new(p))
        }
        "soft_dirty" => {
            let mut s = SoftDirty::new();
            for proc in procs {
                s.add_target(proc);
            }
            Ok(Box::new(s))
        }
        "damon" => Err(err(
            Code::Failure,
            "kernel DAMON is a snapshot source, not an access check: use `build_stage`",
        )),
        "sim" => Err(err(
            Code::Usage,
            "--ops sim watches no real process: use `madvd record --sim SCENARIO`",
        )),
        other => Err(err(
            Code::Failure,
            format!("access primitive `{other}` cannot drive live targets in this build"),
        )),
    }
}

/// How output names a primitive: its name, and what it cannot see.
pub fn label(name: &str) -> String {
    match name {
        "soft_dirty" => "soft_dirty (writes only)".into(),
        other => other.into(),
    }
}

/// The monitor stage for primitive `name` over `procs`, with its settled attributes:
/// madvd's monitor core over an access check, or (for `damon`) a started kdamond (its
/// defaults are DAMON's, `Attrs::default()`). `policy` applies a policy's `monitor` section.
pub fn build_stage(
    name: &str,
    root: &SysRoot,
    procs: Vec<Process>,
    policy: impl FnOnce(&mut Attrs),
    cli: &AttrOverrides,
) -> Result<(MonitorStage, Attrs)> {
    if name == "damon" {
        let attrs = settle_attrs(Attrs::default(), policy, cli)?;
        let ids: Vec<TargetId> = procs.iter().map(|p| p.id()).collect();
        let kd = KernelDamon::start(root, &ids, attrs)
            .map_err(|e| err(Code::Failure, format!("kernel DAMON: {e}")))?;
        // The pidfds were held until the kdamond took the pids, so they name our targets.
        drop(procs);
        return Ok((MonitorStage::Kernel(kd), attrs));
    }
    let ids: Vec<TargetId> = procs.iter().map(|p| p.id()).collect();
    let ops = build_ops(name, root, procs)?;
    let attrs = settle_attrs(ops.default_attrs(), policy, cli)?;
    let mut monitor = Monitor::new(attrs, std::process::id() as u64)
        .map_err(|e| err(Code::Usage, e.to_string()))?;
    for id in ids {
        monitor.add_target(id);
    }
    Ok((MonitorStage::Core { monitor, ops }, attrs))
}

/// The check's defaults, then the policy's `monitor` section (`policy` applies it), then
/// the CLI flags; validated.
pub fn settle_attrs(
    defaults: Attrs,
    policy: impl FnOnce(&mut Attrs),
    cli: &AttrOverrides,
) -> Result<Attrs> {
    let mut a = defaults;
    policy(&mut a);
    if let Some(d) = cli.sample {
        a.sample_us = d.as_micros() as u64;
    }
    if let Some(d) = cli.aggr {
        a.aggr_us = d.as_micros() as u64;
    }
    if let Some(d) = cli.update {
        a.ops_update_us = d.as_micros() as u64;
    }
    if let Some(n) = cli.min_regions {
        a.min_nr_regions = n;
    }
    if let Some(n) = cli.max_regions {
        a.max_nr_regions = n;
    }
    a.validate()
        .map_err(|e| err(Code::Usage, format!("monitoring attributes: {e}")))?;
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cli_overrides_beat_policy_beats_defaults() {
        let cli = AttrOverrides {
            aggr: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let a = settle_attrs(Attrs::default(), |a| a.sample_us = 50_000, &cli).unwrap();
        assert_eq!((a.sample_us, a.aggr_us), (50_000, 3_000_000));
        let bad = AttrOverrides {
            sample: Some(Duration::from_secs(5)),
            aggr: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let e = settle_attrs(Attrs::default(), |_| {}, &bad).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Usage);
        assert!(format!("{e:#}").contains("sample interval"), "{e:#}");
    }

    #[test]
    fn unknown_pid_is_a_target_error_naming_the_pid() {
        let e = open_all(&SysRoot::host(), &[999_999_999], false).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Target);
        assert!(format!("{e:#}").contains("999999999"), "{e:#}");
        let e = open_all(&SysRoot::host(), &[std::process::id()], false).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), Code::Target);
    }

    #[test]
    fn soft_dirty_is_labelled_writes_only() {
        assert_eq!(label("soft_dirty"), "soft_dirty (writes only)");
        assert_eq!(label("page_idle"), "page_idle");
    }

    /// page_idle without the bitmap: a failure naming the missing file, not a panic.
    #[test]
    fn page_idle_without_its_bitmap_is_a_clear_failure() {
        let dir = tempfile::tempdir().unwrap();
        let e = build_ops("page_idle", &SysRoot::under(dir.path()), Vec::new())
            .err()
            .expect("no bitmap under an empty root");
        assert_eq!(crate::exit::code_of(&e), Code::Failure);
        assert!(format!("{e:#}").contains("page_idle"), "{e:#}");
        assert!(build_ops("soft_dirty", &SysRoot::host(), Vec::new()).is_ok());
    }

    /// Kernel DAMON on an empty root: refused before anything is written.
    #[test]
    fn damon_stage_refusal_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let e = build_stage(
            "damon",
            &SysRoot::under(dir.path()),
            Vec::new(),
            |_| {},
            &AttrOverrides::default(),
        )
        .err()
        .expect("no DAMON sysfs under an empty root");
        assert_eq!(crate::exit::code_of(&e), Code::Failure);
        assert!(format!("{e:#}").contains("kernel DAMON"), "{e:#}");
    }
}
