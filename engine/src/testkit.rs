//! Test support (feature `testkit`): loud skips, lab detection, the machine-wide zram swap
//! fixture, and a handle on a workload child process.
//!
//! A skip is never silent: [`skip`] prints to stderr (which the test harness may hide) *and*
//! appends a line to the skip log (`$MADVD_SKIP_LOG`, default `/tmp/madvd-skips.log`), which
//! `tests/run` and `.ci/run` print as a summary at the end.

use std::io::Write;
use std::path::PathBuf;

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

/// A workload child (`madvd workload --spec JSON`), killed and reaped on drop: the protocol
/// client lives in [`crate::workload::Client`], shared with `madvd demo`.
pub use crate::workload::Client as Workload;
