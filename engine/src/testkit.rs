//! Test support (feature `testkit`): loud skips, lab detection, the machine-wide zram swap
//! fixture, and a handle on a workload child process.
//!
//! A skip is never silent: [`skip`] prints to stderr (which the test harness may hide) *and*
//! appends a line to the skip log (`$MADVD_SKIP_LOG`, default `/tmp/madvd-skips.log`), which
//! `tests/run` and `.ci/run` print as a summary at the end.

use crate::region::AddrRange;
use crate::workload::{Event, Truth, Verify, WorkloadSpec};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Where skips are logged.
pub fn skip_log_path() -> PathBuf {
    std::env::var_os("MADVD_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/madvd-skips.log"))
}

/// Record a skipped test, loudly. Use [`skip!`](crate::skip) inside a test to also return.
pub fn skip(test: &str, reason: &str) {
    let line = format!("SKIP {test}: {reason}\n");
    eprint!("{line}");
    // One write of the whole line: tests run on parallel threads, and O_APPEND keeps a
    // single write whole.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log_path())
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// `skip!("reason {}", x)`: record the skip, named after the enclosing test function, and
/// return from it.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        fn __here() {}
        let name = ::std::any::type_name_of_val(&__here);
        let name = name.strip_suffix("::__here").unwrap_or(name);
        $crate::testkit::skip(name, &format!($($arg)*));
        return;
    }};
}

/// True inside the madvd kernel lab (see shared/lab/README.md).
pub fn in_madvd_lab() -> bool {
    std::env::var_os("MADVD_LAB").is_some()
        || std::fs::read_to_string("/proc/cmdline")
            .map(|c| c.split_whitespace().any(|a| a == "madvd_lab=1"))
            .unwrap_or(false)
}

/// `lab` or `debian` inside the lab.
pub fn lab_kernel() -> Option<String> {
    std::env::var("MADVD_LAB_KERNEL").ok()
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub mod swap {
    //! The machine-wide swap fixture: every test that needs swap goes through [`acquire`],
    //! which serialises them with the machine-wide lock (across threads, processes and
    //! checkouts; the demo takes the same lock) and makes a zram swap only when the machine
    //! has none — it never touches a swap the machine already had. The guard removes what it
    //! made on drop, also when the test panics. The mechanics are
    //! [`crate::kernel::zram::TempSwap`], shared with `madvd demo`.

    pub use crate::kernel::zram::MmStat;
    use crate::kernel::zram::TempSwap;
    use crate::sysroot::SysRoot;

    /// Held while a test uses swap.
    pub type SwapGuard = TempSwap;

    /// Take the swap fixture (blocks while another test holds it). `Err(reason)` when swap
    /// can't be had here (not root, no zram): the test then skips loudly.
    pub fn acquire(size: u64) -> Result<SwapGuard, String> {
        if !super::is_root() {
            return Err("needs root to create a zram swap".into());
        }
        TempSwap::ensure(&SysRoot::host(), size, None, &|| false).map_err(|e| e.to_string())
    }
}

/// A workload child (`madvd workload --spec JSON`), killed and reaped on drop.
pub struct Workload {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pid: u32,
    mappings: Vec<AddrRange>,
    hot: AddrRange,
}

fn bad(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Workload {
    /// Spawn `exe workload --spec ...` and wait until it has first-touched its memory.
    pub fn spawn(exe: &Path, spec: &WorkloadSpec) -> io::Result<Workload> {
        let mut child = Command::new(exe)
            .arg("workload")
            .args(spec.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut w = Workload {
            child,
            stdin,
            stdout,
            pid: 0,
            mappings: vec![],
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
            other => Err(bad(format!("workload: expected ready, got {other:?}"))),
        }
    }

    fn read_event(&mut self) -> io::Result<Event> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(bad(format!("workload exited ({status})")));
        }
        serde_json::from_str(&line).map_err(|e| bad(format!("workload said {line:?}: {e}")))
    }

    fn command(&mut self, cmd: &str) -> io::Result<Event> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        match self.read_event()? {
            Event::Error { message } => Err(bad(format!("workload {cmd}: {message}"))),
            ev => Ok(ev),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
    /// The first (or only) mapping.
    pub fn mapping(&self) -> AddrRange {
        self.mappings[0]
    }
    pub fn mappings(&self) -> &[AddrRange] {
        &self.mappings
    }
    /// The hot range at start.
    pub fn hot(&self) -> AddrRange {
        self.hot
    }
    pub fn mark(&mut self) -> io::Result<()> {
        self.command("mark").map(drop)
    }
    pub fn truth(&mut self) -> io::Result<Truth> {
        match self.command("truth")? {
            Event::Truth(t) => Ok(t),
            ev => Err(bad(format!("workload truth: got {ev:?}"))),
        }
    }
    pub fn verify(&mut self) -> io::Result<Verify> {
        match self.command("verify")? {
            Event::Verify(v) => Ok(v),
            ev => Err(bad(format!("workload verify: got {ev:?}"))),
        }
    }
    pub fn pause(&mut self) -> io::Result<()> {
        self.command("pause").map(drop)
    }
    pub fn resume(&mut self) -> io::Result<()> {
        self.command("resume").map(drop)
    }
    /// munmap `[mapping.start + off, + len)` inside the child.
    pub fn unmap(&mut self, off: u64, len: u64) -> io::Result<AddrRange> {
        match self.command(&format!("unmap {off} {len}"))? {
            Event::Unmapped { range } => Ok(range),
            ev => Err(bad(format!("workload unmap: got {ev:?}"))),
        }
    }
    /// Kill and reap now.
    pub fn kill(mut self) {
        self.reap();
    }
    fn reap(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.reap();
    }
}
