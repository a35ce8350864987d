//! The demo's workload child: this same binary run as `madvd workload --spec JSON`
//! (`madvd_workload::run_child`), talked to through `madvd_workload::Client`. It runs in
//! its own process group (a Ctrl-C reaches madvd only, which then ends the demo in order) and
//! dies with madvd (`PR_SET_PDEATHSIG`); the client's `Drop` kills and reaps it.

use anyhow::{Context, Result};
use madvd_workload::{Client, WorkloadSpec};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Spawn the child and wait until it has first-touched its memory.
pub fn spawn(spec: &WorkloadSpec) -> Result<Client> {
    // /proc/self/exe, not the path: it still names this binary if the file was replaced.
    let exe = std::path::Path::new("/proc/self/exe");
    let mut cmd = Command::new(exe);
    cmd.arg("workload").args(spec.to_args()).process_group(0);
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
    // which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Client::spawn_with(cmd)
        .with_context(|| format!("{}: cannot start the workload child", exe.display()))
}
