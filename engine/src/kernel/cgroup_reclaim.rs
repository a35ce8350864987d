//! cgroup v2 `memory.reclaim`: "a write-only nested-keyed file which exists for all cgroups.
//! This is a simple interface to trigger memory reclaim in the target cgroup"
//! (Documentation/admin-guide/cgroup-v2.rst, Linux 5.19+). Writing `N` (bytes) runs
//! `try_to_free_mem_cgroup_pages` on the group until N bytes are reclaimed, up to
//! `MAX_RECLAIM_RETRIES` rounds, and fails with `EAGAIN` when it reclaimed less
//! (`memory_reclaim`, mm/memcontrol.c 6.12). The pages are chosen by the kernel's LRU order
//! within the group (and its descendants), not by the caller: the interface takes an
//! amount, never addresses.
//!
//! Only cgroup v2 has it. On a v1 or hybrid host with the memory controller on v1 (like the
//! development machine) [`CgroupReclaim::new`] refuses, saying so. Group paths are written
//! as `/proc/PID/cgroup` shows them (`/a/b`), relative to the v2 root under a [`SysRoot`],
//! so fixture trees work. The root group is refused: reclaiming there is reclaiming from the
//! whole machine.

use crate::kernel::cgroup::CgroupMounts;
use crate::kernel::host::is_root;
use crate::sysroot::SysRoot;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupReclaimError {
    #[error("needs root: writing memory.reclaim of a cgroup")]
    NotRoot,
    #[error("cgroup v1 host: the memory controller is mounted on cgroup v1 ({v1}), and memory.reclaim exists only in cgroup v2 (Documentation/admin-guide/cgroup-v2.rst)")]
    V1Host { v1: PathBuf },
    #[error("no cgroup v2 tree with the memory controller under {0}")]
    NoV2Memory(PathBuf),
    #[error("cgroup {group:?}: {why}")]
    BadGroup { group: String, why: &'static str },
    #[error("{0}: missing (memory.reclaim needs Linux 5.19 or later, or the group is gone)")]
    NoReclaimFile(PathBuf),
    #[error("{path}: writing {bytes}: {source}")]
    Write {
        path: PathBuf,
        bytes: u64,
        #[source]
        source: std::io::Error,
    },
}

/// What one write to `memory.reclaim` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reclaimed {
    /// Bytes asked for.
    pub asked: u64,
    /// False when the kernel reclaimed less than asked (`EAGAIN`).
    pub complete: bool,
    /// The group's `memory.current` before and after, when readable.
    pub current_before: Option<u64>,
    pub current_after: Option<u64>,
    pub elapsed_ns: u64,
}

impl Reclaimed {
    /// Bytes taken as reclaimed: all asked when the kernel said so, else what
    /// `memory.current` dropped by (at most the amount asked; other allocations in the group
    /// blur it).
    pub fn bytes(&self) -> u64 {
        if self.complete {
            return self.asked;
        }
        match (self.current_before, self.current_after) {
            (Some(b), Some(a)) => b.saturating_sub(a).min(self.asked),
            _ => 0,
        }
    }
}

/// Writes `memory.reclaim` of groups in one v2 tree.
#[derive(Clone, Debug)]
pub struct CgroupReclaim {
    v2: PathBuf,
}

impl CgroupReclaim {
    /// The v2 tree of `root`, with the memory controller: root only; refused on a v1 host.
    pub fn new(root: &SysRoot) -> Result<Self, CgroupReclaimError> {
        Self::open(root, is_root())
    }

    /// As [`Self::new`], `as_root` standing for the effective uid check (tests).
    pub fn open(root: &SysRoot, as_root: bool) -> Result<Self, CgroupReclaimError> {
        if !as_root {
            return Err(CgroupReclaimError::NotRoot);
        }
        let m = CgroupMounts::discover(root);
        match (m.v2, m.v2_memory, m.v1_memory) {
            (Some(v2), true, _) => Ok(Self { v2 }),
            (_, _, Some(v1)) => Err(CgroupReclaimError::V1Host { v1 }),
            _ => Err(CgroupReclaimError::NoV2Memory(root.sys_file("fs/cgroup"))),
        }
    }

    /// The v2 root directory.
    pub fn v2_root(&self) -> &Path {
        &self.v2
    }

    /// The directory of `group` (`/a/b`): absolute, no `.` or `..` parts, not the root.
    pub fn group_dir(&self, group: &str) -> Result<PathBuf, CgroupReclaimError> {
        let bad = |why| CgroupReclaimError::BadGroup {
            group: group.to_string(),
            why,
        };
        let rel = group
            .strip_prefix('/')
            .ok_or_else(|| bad("not a cgroup path (/a/b)"))?
            .trim_end_matches('/');
        if rel.is_empty() {
            return Err(bad(
                "the root group: reclaiming there reclaims from the whole machine",
            ));
        }
        if rel
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad("not a cgroup path (empty, `.` or `..` parts)"));
        }
        Ok(self.v2.join(rel))
    }

    /// Ask `group` to reclaim `bytes` (one write of the decimal number).
    pub fn reclaim(&self, group: &str, bytes: u64) -> Result<Reclaimed, CgroupReclaimError> {
        let dir = self.group_dir(group)?;
        let path = dir.join("memory.reclaim");
        let current = || {
            std::fs::read_to_string(dir.join("memory.current"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        let current_before = current();
        let t0 = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::NotFound => CgroupReclaimError::NoReclaimFile(path.clone()),
                _ => CgroupReclaimError::Write {
                    path: path.clone(),
                    bytes,
                    source,
                },
            })?;
        let complete = match f.write(bytes.to_string().as_bytes()) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => false,
            Err(source) => {
                return Err(CgroupReclaimError::Write {
                    path,
                    bytes,
                    source,
                })
            }
        };
        Ok(Reclaimed {
            asked: bytes,
            complete,
            current_before,
            current_after: current(),
            elapsed_ns: t0.elapsed().as_nanos() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 tree with the memory controller and groups `/a` and `/a/b`.
    pub(crate) fn v2_tree(dir: &Path) -> SysRoot {
        let root = SysRoot::under(dir);
        let cg = root.sys_file("fs/cgroup");
        std::fs::create_dir_all(cg.join("a/b")).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "cpu io memory\n").unwrap();
        for g in ["a", "a/b"] {
            std::fs::write(cg.join(g).join("memory.reclaim"), "").unwrap();
            std::fs::write(cg.join(g).join("memory.current"), "1048576\n").unwrap();
        }
        root
    }

    #[test]
    fn writes_the_amount_to_the_groups_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = v2_tree(dir.path());
        let r = CgroupReclaim::open(&root, true).unwrap();
        let got = r.reclaim("/a/b", 65536).unwrap();
        assert!(got.complete && got.bytes() == 65536, "{got:?}");
        assert_eq!(got.current_before, Some(1 << 20));
        let cg = root.sys_file("fs/cgroup");
        assert_eq!(
            std::fs::read_to_string(cg.join("a/b/memory.reclaim")).unwrap(),
            "65536"
        );
        assert_eq!(
            std::fs::read_to_string(cg.join("a/memory.reclaim")).unwrap(),
            ""
        );
    }

    #[test]
    fn partial_reclaim_counts_the_drop_in_memory_current() {
        let r = Reclaimed {
            asked: 100,
            complete: false,
            current_before: Some(1000),
            current_after: Some(960),
            elapsed_ns: 1,
        };
        assert_eq!(r.bytes(), 40);
        let grew = Reclaimed {
            current_after: Some(2000),
            ..r
        };
        assert_eq!(grew.bytes(), 0);
        let unread = Reclaimed {
            current_after: None,
            ..r
        };
        assert_eq!(unread.bytes(), 0);
    }

    #[test]
    fn bad_groups_are_refused_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = v2_tree(dir.path());
        let r = CgroupReclaim::open(&root, true).unwrap();
        for (g, want) in [
            ("/", "the root group"),
            ("a/b", "not a cgroup path (/a/b)"),
            ("/a/../..", "`..` parts"),
            ("/a//b", "empty"),
        ] {
            let e = r.reclaim(g, 4096).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("cgroup {g:?}: ")) && e.contains(want),
                "{e}"
            );
        }
        let e = r.reclaim("/gone", 4096).unwrap_err();
        assert!(matches!(e, CgroupReclaimError::NoReclaimFile(_)), "{e}");
        assert!(
            e.to_string().contains("gone/memory.reclaim: missing"),
            "{e}"
        );
    }

    #[test]
    fn refused_for_non_root_and_on_v1_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let root = v2_tree(dir.path());
        let e = CgroupReclaim::open(&root, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "needs root: writing memory.reclaim of a cgroup"
        );

        // Hybrid: v2 at unified/ without the memory controller, memory on v1.
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        std::fs::create_dir_all(cg.join("unified")).unwrap();
        std::fs::create_dir_all(cg.join("memory")).unwrap();
        std::fs::write(cg.join("unified/cgroup.procs"), "").unwrap();
        std::fs::write(cg.join("unified/cgroup.controllers"), "").unwrap();
        std::fs::write(cg.join("memory/memory.usage_in_bytes"), "0\n").unwrap();
        let e = CgroupReclaim::open(&root, true).unwrap_err().to_string();
        assert!(
            e.starts_with("cgroup v1 host: the memory controller is mounted on cgroup v1")
                && e.contains("memory.reclaim exists only in cgroup v2"),
            "{e}"
        );

        let dir = tempfile::tempdir().unwrap();
        let e = CgroupReclaim::open(&SysRoot::under(dir.path()), true).unwrap_err();
        assert!(matches!(e, CgroupReclaimError::NoV2Memory(_)), "{e}");
    }
}
