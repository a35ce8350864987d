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
    let line = format!("SKIP {test}: {reason}");
    eprintln!("{line}");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skip_log_path())
    {
        let _ = writeln!(f, "{line}");
    }
}

/// `skip!("reason {}", x)`: record the skip (named after the enclosing module and line) and
/// return from the enclosing function.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::testkit::skip(concat!(module_path!(), ":", line!()), &format!($($arg)*));
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
    //! The machine-wide swap fixture. Every test that needs swap goes through [`acquire`],
    //! which serialises them with an exclusive `flock` (across threads, processes and
    //! checkouts) and makes a zram swap only when the machine has none — it never touches a
    //! swap the machine already had. The guard removes what it made on drop, also when the
    //! test panics; a device left by a killed test run is removed by the next `acquire`.

    use std::fs::{self, File, OpenOptions};
    use std::io;
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};

    const LOCK: &str = "/run/madvd-test-swap.lock";
    const OWNER: &str = "/run/madvd-test-swap.owner";

    /// zram's `mm_stat` (Documentation/admin-guide/blockdev/zram.rst, Linux 6.12): the first
    /// three of its columns.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct MmStat {
        pub orig_data_size: u64,
        pub compr_data_size: u64,
        pub mem_used_total: u64,
    }

    pub fn parse_mm_stat(text: &str) -> Option<MmStat> {
        let v: Vec<u64> = text
            .split_whitespace()
            .take(3)
            .map(|w| w.parse().ok())
            .collect::<Option<_>>()?;
        (v.len() == 3).then(|| MmStat {
            orig_data_size: v[0],
            compr_data_size: v[1],
            mem_used_total: v[2],
        })
    }

    /// Held while a test uses swap.
    #[derive(Debug)]
    pub struct SwapGuard {
        _lock: File,
        made: Option<u32>,
    }

    impl SwapGuard {
        /// `/dev/zramN` when this guard made the swap.
        pub fn zram_device(&self) -> Option<PathBuf> {
            self.made.map(|n| PathBuf::from(format!("/dev/zram{n}")))
        }
        pub fn zram_mm_stat(&self) -> Option<MmStat> {
            let n = self.made?;
            parse_mm_stat(&fs::read_to_string(format!("/sys/block/zram{n}/mm_stat")).ok()?)
        }
    }

    fn has_swap() -> bool {
        fs::read_to_string("/proc/swaps")
            .map(|s| s.lines().skip(1).any(|l| !l.trim().is_empty()))
            .unwrap_or(false)
    }

    fn write(path: impl AsRef<Path>, val: &str) -> Result<(), String> {
        fs::write(path.as_ref(), val)
            .map_err(|e| format!("write {val:?} to {}: {e}", path.as_ref().display()))
    }

    fn remove_device(n: u32) {
        let dev = format!("/dev/zram{n}");
        if let Ok(c) = std::ffi::CString::new(dev.clone()) {
            // SAFETY: swapoff takes a NUL-terminated path; failure (not a swap) is harmless.
            unsafe { libc::swapoff(c.as_ptr()) };
        }
        let _ = fs::write(format!("/sys/block/zram{n}/reset"), "1");
        let _ = fs::write("/sys/class/zram-control/hot_remove", n.to_string());
        let _ = fs::remove_file(OWNER);
    }

    /// Remove a zram swap left by a test process that died without its guard running.
    fn reap_stale() {
        let Ok(owner) = fs::read_to_string(OWNER) else {
            return;
        };
        let mut it = owner.split_whitespace().map(|w| w.parse::<u32>());
        if let (Some(Ok(pid)), Some(Ok(n))) = (it.next(), it.next()) {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                remove_device(n);
            }
        }
    }

    /// Take the swap fixture. `Err(reason)` when swap can't be had here (not root, no zram).
    pub fn acquire(size: u64) -> Result<SwapGuard, String> {
        if !super::is_root() {
            return Err("needs root to create a zram swap".into());
        }
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .map_err(|e| format!("{LOCK}: {e}"))?;
        // SAFETY: flock on an fd we own; blocks until the exclusive lock is ours.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("flock {LOCK}: {}", io::Error::last_os_error()));
        }
        reap_stale();
        if has_swap() {
            return Ok(SwapGuard {
                _lock: lock,
                made: None,
            });
        }
        if !Path::new("/sys/class/zram-control").exists() {
            let _ = std::process::Command::new("modprobe")
                .args(["zram", "num_devices=0"])
                .status();
        }
        let n: u32 = fs::read_to_string("/sys/class/zram-control/hot_add")
            .map_err(|e| format!("no zram here (/sys/class/zram-control/hot_add: {e})"))?
            .trim()
            .parse()
            .map_err(|e| format!("zram hot_add: {e}"))?;
        let guard = SwapGuard {
            _lock: lock,
            made: Some(n),
        };
        fs::write(OWNER, format!("{} {n}", std::process::id()))
            .map_err(|e| format!("{OWNER}: {e}"))?;
        let sys = format!("/sys/block/zram{n}");
        let _ = fs::write(format!("{sys}/comp_algorithm"), "lz4");
        write(format!("{sys}/disksize"), &size.to_string())?;
        let dev = format!("/dev/zram{n}");
        let st = std::process::Command::new("mkswap")
            .arg(&dev)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| format!("mkswap: {e}"))?;
        if !st.success() {
            return Err(format!("mkswap {dev} failed: {st}"));
        }
        let c = std::ffi::CString::new(dev.clone()).expect("no NUL");
        // SAFETY: swapon with a NUL-terminated path and no flags.
        if unsafe { libc::swapon(c.as_ptr(), 0) } != 0 {
            return Err(format!("swapon {dev}: {}", io::Error::last_os_error()));
        }
        Ok(guard) // on any error above, dropping `guard` removes the device
    }

    impl Drop for SwapGuard {
        fn drop(&mut self) {
            if let Some(n) = self.made {
                remove_device(n);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn parses_mm_stat() {
            let s = super::parse_mm_stat(
                "  4096  74  12288        0    12288        0        0        0        0\n",
            )
            .unwrap();
            assert_eq!(
                (s.orig_data_size, s.compr_data_size, s.mem_used_total),
                (4096, 74, 12288)
            );
            assert!(super::parse_mm_stat("1 2").is_none());
        }
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
