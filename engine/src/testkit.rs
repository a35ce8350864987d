//! Test support (feature `testkit`): skips that cannot hide, lab detection, the machine-wide
//! zram swap fixture. The workload child's client is `madvd_workload::Client` (its own crate).
//!
//! A skip is never silent: [`skip`] prints to stderr (which the test harness may hide) *and*
//! appends a line to the skip log (`$MADVD_SKIP_LOG`, default `/tmp/madvd-skips.log`), which
//! `tests/run` and `.ci/run` print as a summary at the end.
//!
//! And a skip cannot hide a test its stage should run. A test skips only for what its stage
//! cannot provide:
//! - the host stage (`tests/run`) cannot provide the kernel lab: lab tests skip there
//!   ([`lab_or_skip!`](crate::lab_or_skip)), also in CI;
//! - in CI (`CI` set, as `.ci/run` and CI services do) the host stage runs as root with swap
//!   and zram: a host test that would skip for want of anything (root, swap, zram, a tool)
//!   **fails** instead ([`skip!`](crate::skip), [`need_root!`](crate::need_root),
//!   [`need_swap!`](crate::need_swap));
//! - inside the kernel lab (`tests/lab-run`) every skip fails: the lab provides all.

use std::io::Write;
use std::path::PathBuf;

/// Where skips are logged.
pub fn skip_log_path() -> PathBuf {
    std::env::var_os("MADVD_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/madvd-skips.log"))
}

/// True under CI: `CI` is set to anything but empty, `0` or `false` (`.ci/run` exports
/// `CI=true`, as CI services do).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// What a skipped test lacks: the kernel lab, or something of the machine it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lacks {
    /// The madvd kernel lab: no stage but the lab's provides it, so the skip is allowed
    /// outside it (never inside, where the test is not skipped at all).
    Lab,
    /// Root, swap, zram, a tool, a kernel feature: CI's host stage provides them, so under
    /// CI (and inside the lab) the skip fails the test.
    Host,
}

/// Record a skipped test, loudly, or fail it where the skip would hide it (see the module
/// documentation). Use [`skip!`](crate::skip) inside a test to also return.
pub fn skip(test: &str, reason: &str) {
    skip_for(Lacks::Host, test, reason)
}

/// [`skip`] for a test that lacks `what`.
pub fn skip_for(what: Lacks, test: &str, reason: &str) {
    if in_madvd_lab() {
        panic!("{test}: a test must not skip inside the madvd kernel lab: {reason}");
    }
    if what == Lacks::Host && in_ci() {
        panic!(
            "{test}: a host test must not skip in CI (CI is set; the host stage runs as root \
             with swap and zram): {reason}"
        );
    }
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

/// The enclosing test function's name (for the skip macros).
#[doc(hidden)]
#[macro_export]
macro_rules! __test_name {
    () => {{
        fn __here() {}
        let name = ::std::any::type_name_of_val(&__here);
        name.strip_suffix("::__here").unwrap_or(name)
    }};
}

/// `skip!("reason {}", x)`: record the skip, named after the enclosing test function, and
/// return from it; under CI and inside the lab, fail instead ([`skip`](testkit::skip)).
#[macro_export]
macro_rules! skip {
    ($($arg:tt)*) => {{
        $crate::testkit::skip($crate::__test_name!(), &format!($($arg)*));
        return;
    }};
}

/// `let kernel = lab_or_skip!("why only the lab");`: the lab kernel's name (`lab` or
/// `debian`) inside the madvd kernel lab; outside it, record the skip and return (allowed in
/// every stage but the lab's own).
#[macro_export]
macro_rules! lab_or_skip {
    ($($arg:tt)*) => {{
        match $crate::testkit::lab_kernel_name() {
            Some(k) => k,
            None => {
                $crate::testkit::skip_for(
                    $crate::testkit::Lacks::Lab,
                    $crate::__test_name!(),
                    &format!($($arg)*),
                );
                return;
            }
        }
    }};
}

/// `need_root!("what for")`: unless root, skip (fail under CI) with "needs root (what for)".
#[macro_export]
macro_rules! need_root {
    ($($arg:tt)*) => {{
        if !$crate::testkit::is_root() {
            $crate::skip!("needs root ({})", format!($($arg)*));
        }
    }};
}

/// `let _swap = need_swap!(bytes);`: root and the machine-wide swap fixture
/// ([`swap::acquire`]), held until the guard drops; without them, skip (fail under CI).
#[macro_export]
macro_rules! need_swap {
    ($size:expr) => {{
        $crate::need_root!("the swap fixture makes a zram swap");
        match $crate::testkit::swap::acquire($size) {
            Ok(g) => g,
            Err(why) => $crate::skip!("no swap fixture: {why}"),
        }
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

/// Inside the lab, its kernel's name (`lab` unless `MADVD_LAB_KERNEL` says otherwise);
/// `None` outside it.
pub fn lab_kernel_name() -> Option<String> {
    in_madvd_lab().then(|| lab_kernel().unwrap_or_else(|| "lab".into()))
}

pub use crate::kernel::host::is_root;

pub mod swap {
    //! The machine-wide swap fixture: every test that needs swap goes through [`acquire`],
    //! which serialises them with the machine-wide lock (across threads, processes and
    //! checkouts; the demo takes the same lock) and makes a zram swap only when the machine
    //! has less than the asked size free — it never touches a swap the machine already had. The guard removes what it
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
