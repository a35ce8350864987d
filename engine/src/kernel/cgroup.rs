//! Control groups: `/proc/<pid>/cgroup`, the mount points of the v2 tree and the v1 memory
//! controller, a group's memory usage and limit, and its `memory.pressure`.
//!
//! Hosts differ: a pure v2 host mounts the v2 tree at `/sys/fs/cgroup`; a hybrid host (like
//! the development machine) mounts v1 controllers under `/sys/fs/cgroup/<controller>` and the
//! v2 tree at `/sys/fs/cgroup/unified`, where PSI files exist even though the memory
//! controller is on v1. Group paths are written as `/proc/<pid>/cgroup` shows them
//! (`/user.slice/foo`), relative to the hierarchy's root.

use crate::kernel::psi::{self, Psi, PsiError};
use crate::sysroot::SysRoot;
use std::path::{Path, PathBuf};
use thiserror::Error;

use super::error::ReadError;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("no cgroup v2 tree under {0} (looked for fs/cgroup/cgroup.controllers and fs/cgroup/unified)")]
    NoV2(PathBuf),
    #[error("no cgroup memory controller under {0} (neither v2 memory.current nor v1 memory/)")]
    NoMemoryController(PathBuf),
    #[error(transparent)]
    Psi(#[from] PsiError),
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCgroup {
    pub hierarchy: u32,
    /// Empty for the v2 hierarchy (`0::/path`); `name=systemd` for named v1 hierarchies.
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parse `/proc/<pid>/cgroup`. `path` only names the source in errors.
pub fn parse_proc_cgroup(text: &[u8], path: &Path) -> Result<Vec<ProcCgroup>, CgroupError> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |msg: String| {
            CgroupError::from(ReadError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                msg,
            })
        };
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctl), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err(format!("expected id:controllers:path, got {line:?}")));
        };
        let hierarchy = id
            .parse()
            .map_err(|_| err(format!("bad hierarchy id {id:?}")))?;
        let controllers = ctl
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        out.push(ProcCgroup {
            hierarchy,
            controllers,
            path: p.to_string(),
        });
    }
    Ok(out)
}

/// The v2 group path (`0::/path`) of a parsed `/proc/<pid>/cgroup`.
pub fn v2_path(lines: &[ProcCgroup]) -> Option<&str> {
    lines
        .iter()
        .find(|l| l.hierarchy == 0 && l.controllers.is_empty())
        .map(|l| l.path.as_str())
}

/// The v1 memory controller's group path, if memory is on v1.
pub fn v1_memory_path(lines: &[ProcCgroup]) -> Option<&str> {
    lines
        .iter()
        .find(|l| l.controllers.iter().any(|c| c == "memory"))
        .map(|l| l.path.as_str())
}

/// Read `<proc>/<pid>/cgroup`.
pub fn read_proc_cgroup(root: &SysRoot, pid: u32) -> Result<Vec<ProcCgroup>, CgroupError> {
    let path = root.pid_file(pid, "cgroup");
    let bytes = std::fs::read(&path).map_err(|source| ReadError::Io {
        path: path.clone(),
        source,
    })?;
    parse_proc_cgroup(&bytes, &path)
}

/// A value of a cgroup file that may be `max` (v2) or the v1 "unlimited" sentinel.
pub fn parse_limit(text: &[u8]) -> Option<Option<u64>> {
    let s = std::str::from_utf8(text).ok()?.trim();
    if s == "max" {
        return Some(None);
    }
    let v: u64 = s.parse().ok()?;
    // v1 reports "unlimited" as PAGE_COUNTER_MAX pages, about 2^63 bytes.
    Some(if v >= 1 << 62 { None } else { Some(v) })
}

/// Where the hierarchies are mounted under a [`SysRoot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMounts {
    /// The v2 tree: `<sys>/fs/cgroup` (pure v2) or `<sys>/fs/cgroup/unified` (hybrid).
    pub v2: Option<PathBuf>,
    /// True when the memory controller is enabled in the v2 tree.
    pub v2_memory: bool,
    /// The v1 memory controller's mount, `<sys>/fs/cgroup/memory`, when present.
    pub v1_memory: Option<PathBuf>,
}

impl CgroupMounts {
    pub fn discover(root: &SysRoot) -> Self {
        let base = root.sys_file("fs/cgroup");
        let v2 = if base.join("cgroup.controllers").exists() {
            Some(base.clone())
        } else if base.join("unified/cgroup.procs").exists()
            || base.join("unified/cgroup.controllers").exists()
        {
            Some(base.join("unified"))
        } else {
            None
        };
        let v2_memory = v2
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p.join("cgroup.controllers")).ok())
            .is_some_and(|c| c.split_whitespace().any(|w| w == "memory"));
        let v1 = base.join("memory");
        let v1_memory = v1.join("memory.usage_in_bytes").exists().then_some(v1);
        Self {
            v2,
            v2_memory,
            v1_memory,
        }
    }

    /// The directory of v2 group `group` (`/a/b` or `a/b`).
    pub fn v2_dir(&self, root: &SysRoot, group: &str) -> Result<PathBuf, CgroupError> {
        let v2 = self
            .v2
            .as_ref()
            .ok_or_else(|| CgroupError::NoV2(root.sys.clone()))?;
        Ok(join_group(v2, group))
    }

    /// `memory.pressure` of v2 group `group`.
    pub fn memory_pressure(&self, root: &SysRoot, group: &str) -> Result<Psi, CgroupError> {
        let p = self.v2_dir(root, group)?.join("memory.pressure");
        Ok(psi::read_path(&p)?)
    }

    /// Memory usage and limit of `group`: v2 `memory.current` / `memory.max` when the v2
    /// tree has the memory controller, else v1 `memory.usage_in_bytes` /
    /// `memory.limit_in_bytes`. The limit is `None` when unlimited.
    pub fn memory_usage(&self, root: &SysRoot, group: &str) -> Result<MemoryUsage, CgroupError> {
        let (dir, cur, max) = if self.v2_memory {
            (self.v2_dir(root, group)?, "memory.current", "memory.max")
        } else if let Some(v1) = &self.v1_memory {
            (
                join_group(v1, group),
                "memory.usage_in_bytes",
                "memory.limit_in_bytes",
            )
        } else {
            return Err(CgroupError::NoMemoryController(root.sys.clone()));
        };
        let read = |name: &str| -> Result<Option<u64>, CgroupError> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|source| ReadError::Io {
                path: path.clone(),
                source,
            })?;
            let limit = parse_limit(&bytes).ok_or_else(|| ReadError::Parse {
                path,
                line: 1,
                msg: format!(
                    "expected a number or `max`, got {:?}",
                    String::from_utf8_lossy(&bytes).trim()
                ),
            })?;
            Ok(limit)
        };
        let usage = read(cur)?.unwrap_or(u64::MAX);
        let limit = read(max)?;
        Ok(MemoryUsage { usage, limit })
    }
}

/// A group's memory use, bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUsage {
    pub usage: u64,
    pub limit: Option<u64>,
}

impl MemoryUsage {
    /// Usage over limit in basis points; `None` without a limit.
    pub fn used_bp(&self) -> Option<u64> {
        let limit = self.limit.filter(|l| *l > 0)?;
        Some(((self.usage as u128 * 10_000) / limit as u128).min(u64::MAX as u128) as u64)
    }
}

fn join_group(base: &Path, group: &str) -> PathBuf {
    let rel = group.trim_start_matches('/');
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// True when `group` is `ancestor` or lies below it (`/a/b` is under `/a`, `/ab` is not).
pub fn is_under(group: &str, ancestor: &str) -> bool {
    let g = group.trim_end_matches('/');
    let a = ancestor.trim_end_matches('/');
    if a.is_empty() {
        return true;
    }
    g == a || (g.starts_with(a) && g.as_bytes().get(a.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str =
        "9:name=systemd:/\n4:memory:/process_api/e1d6\n1:cpu:/\n0::/user.slice/app\n";

    #[test]
    fn parses_proc_cgroup() {
        let l = parse_proc_cgroup(HYBRID.as_bytes(), Path::new("cg")).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].controllers, vec!["name=systemd"]);
        assert_eq!(v2_path(&l), Some("/user.slice/app"));
        assert_eq!(v1_memory_path(&l), Some("/process_api/e1d6"));
        let e = parse_proc_cgroup(b"0::/\nnope\n", Path::new("cg")).unwrap_err();
        assert!(e.to_string().starts_with("cg:2: expected"), "{e}");
    }

    #[test]
    fn limits_and_sentinels() {
        assert_eq!(parse_limit(b"max\n"), Some(None));
        assert_eq!(parse_limit(b"9223372036854771712\n"), Some(None));
        assert_eq!(parse_limit(b"1048576\n"), Some(Some(1 << 20)));
        assert_eq!(parse_limit(b"12x"), None);
        assert_eq!(
            MemoryUsage {
                usage: 750,
                limit: Some(1000)
            }
            .used_bp(),
            Some(7500)
        );
        assert_eq!(
            MemoryUsage {
                usage: 750,
                limit: None
            }
            .used_bp(),
            None
        );
    }

    #[test]
    fn is_under_respects_components() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/a/"));
        assert!(is_under("/anything", "/"));
        assert!(!is_under("/ab", "/a"));
        assert!(!is_under("/a", "/a/b"));
    }

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn hybrid_host_v2_psi_v1_memory() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        write(&cg.join("unified/cgroup.procs"), "");
        write(&cg.join("unified/cgroup.controllers"), "");
        write(&cg.join("unified/app/memory.pressure"), "some avg10=0.00 avg60=0.00 avg300=0.00 total=77\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n");
        write(&cg.join("memory/memory.usage_in_bytes"), "100\n");
        write(&cg.join("memory/app/memory.usage_in_bytes"), "300\n");
        write(&cg.join("memory/app/memory.limit_in_bytes"), "1200\n");
        let m = CgroupMounts::discover(&root);
        assert_eq!(m.v2.as_deref(), Some(cg.join("unified").as_path()));
        assert!(!m.v2_memory);
        assert_eq!(m.memory_pressure(&root, "/app").unwrap().some.total_us, 77);
        let u = m.memory_usage(&root, "/app").unwrap();
        assert_eq!(
            (u.usage, u.limit, u.used_bp()),
            (300, Some(1200), Some(2500))
        );
        assert!(matches!(
            m.memory_usage(&root, "/nope"),
            Err(CgroupError::Read(ReadError::Io { .. }))
        ));
    }

    #[test]
    fn pure_v2_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        write(&cg.join("cgroup.controllers"), "cpu io memory pids\n");
        write(&cg.join("app/memory.current"), "512\n");
        write(&cg.join("app/memory.max"), "max\n");
        let m = CgroupMounts::discover(&root);
        assert!(m.v2_memory);
        let u = m.memory_usage(&root, "app").unwrap();
        assert_eq!((u.usage, u.limit), (512, None));
        let none = CgroupMounts::discover(&SysRoot::under(dir.path().join("empty")));
        assert!(matches!(
            none.memory_pressure(&root, "/"),
            Err(CgroupError::NoV2(_))
        ));
        assert!(matches!(
            none.memory_usage(&root, "/"),
            Err(CgroupError::NoMemoryController(_))
        ));
    }
}
