//! The demo's workload child: this same binary run as `madvd workload --spec JSON`
//! (`engine::workload::run_child`), talking JSON lines over its stdin/stdout. It runs in its
//! own process group (a Ctrl-C reaches madvd only, which then ends the demo in order) and
//! dies with madvd (`PR_SET_PDEATHSIG`); `Drop` kills and reaps it.

use anyhow::{anyhow, bail, Context, Result};
use engine::workload::{Event, Truth, Verify, WorkloadSpec};
use engine::AddrRange;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

pub struct WorkloadChild {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub pid: u32,
    pub mappings: Vec<AddrRange>,
    pub hot: AddrRange,
}

impl WorkloadChild {
    /// Spawn and wait until the child has first-touched its memory.
    pub fn spawn(spec: &WorkloadSpec) -> Result<WorkloadChild> {
        // /proc/self/exe, not the path: it still names this binary if the file was replaced.
        let exe = std::path::Path::new("/proc/self/exe");
        let mut cmd = Command::new(exe);
        cmd.arg("workload")
            .args(spec.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0);
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
        let mut child = cmd
            .spawn()
            .with_context(|| format!("{}: cannot start the workload child", exe.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut w = WorkloadChild {
            child,
            stdin,
            stdout,
            pid: 0,
            mappings: Vec::new(),
            hot: AddrRange::new(0, 0),
        };
        match w.read_event()? {
            Event::Ready {
                pid, mappings, hot, ..
            } => {
                w.pid = pid;
                w.mappings = mappings;
                w.hot = hot;
                Ok(w)
            }
            other => bail!("workload child: expected ready, got {other:?}"),
        }
    }

    fn read_event(&mut self) -> Result<Event> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            bail!("workload child (pid {}) exited: {status}", self.child.id());
        }
        serde_json::from_str(&line).map_err(|e| anyhow!("workload child said {line:?}: {e}"))
    }

    fn command(&mut self, cmd: &str) -> Result<Event> {
        writeln!(self.stdin, "{cmd}")
            .and_then(|_| self.stdin.flush())
            .with_context(|| format!("workload child pid {}: {cmd}", self.pid))?;
        match self.read_event()? {
            Event::Error { message } => bail!("workload child pid {}: {cmd}: {message}", self.pid),
            ev => Ok(ev),
        }
    }

    /// Start a ground-truth window.
    pub fn mark(&mut self) -> Result<()> {
        self.command("mark").map(drop)
    }

    /// Ground truth since the last mark.
    pub fn truth(&mut self) -> Result<Truth> {
        match self.command("truth")? {
            Event::Truth(t) => Ok(t),
            ev => bail!("workload child: truth: got {ev:?}"),
        }
    }

    /// Check every page's content.
    pub fn verify(&mut self) -> Result<Verify> {
        match self.command("verify")? {
            Event::Verify(v) => Ok(v),
            ev => bail!("workload child: verify: got {ev:?}"),
        }
    }
}

impl Drop for WorkloadChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
