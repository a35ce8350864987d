//! The roots every `/proc`, `/sys` and `/dev` path hangs off, so tests can point the readers
//! at a fixture tree (a fake `/proc` in a temp dir) and assert on exact values.

use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysRoot {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub dev: PathBuf,
}

impl Default for SysRoot {
    fn default() -> Self {
        Self::host()
    }
}

impl SysRoot {
    /// The running system: `/proc`, `/sys`, `/dev`.
    pub fn host() -> Self {
        Self {
            proc: "/proc".into(),
            sys: "/sys".into(),
            dev: "/dev".into(),
        }
    }
    /// A fixture tree: `<root>/proc`, `<root>/sys`, `<root>/dev`.
    pub fn under(root: impl AsRef<Path>) -> Self {
        let r = root.as_ref();
        Self {
            proc: r.join("proc"),
            sys: r.join("sys"),
            dev: r.join("dev"),
        }
    }
    /// `<proc>/<pid>/<file>`.
    pub fn pid_file(&self, pid: u32, file: &str) -> PathBuf {
        self.proc.join(pid.to_string()).join(file)
    }
    /// `<proc>/<rel>`.
    pub fn proc_file(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
    /// `<sys>/<rel>`.
    pub fn sys_file(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
}
