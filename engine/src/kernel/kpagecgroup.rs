//! `/proc/kpagecgroup`: one native-endian u64 per PFN, the inode number of the memory cgroup
//! the page is charged to, 0 for none (free, kernel, uncharged pages)
//! (Documentation/admin-guide/mm/pagemap.rst; `kpagecgroup_read`, fs/proc/page.c 6.12,
//! `page_cgroup_ino`, mm/memcontrol.c). Root only; `CONFIG_MEMCG`.
//!
//! The inode is that of the group's directory in the memory controller's hierarchy (the v2
//! tree, or v1's `memory/`): [`CgroupInodes::scan`] walks the mount and stats each directory
//! to name it. [`name_of`] is pure.

use super::kpageflags::PerPfnFile;
use crate::kernel::cgroup::CgroupMounts;
use crate::sysroot::SysRoot;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `<proc>/kpagecgroup`, opened once.
pub type KpageCgroup = PerPfnFile;

/// `<proc>/kpagecgroup`.
pub fn open(root: &SysRoot) -> std::io::Result<KpageCgroup> {
    PerPfnFile::open_path(root.proc_file("kpagecgroup"))
}

/// The memory cgroups by directory inode, as `/proc/PID/cgroup` writes them (`/`, `/a/b`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupInodes {
    /// The hierarchy walked (v2 tree or v1 memory mount); `None`: none found.
    pub mount: Option<PathBuf>,
    by_ino: HashMap<u64, String>,
}

impl CgroupInodes {
    /// Walk the memory controller's hierarchy under `root`: the v2 tree when it has the
    /// memory controller, else v1's `memory/`. Unreadable directories are skipped.
    pub fn scan(root: &SysRoot) -> Self {
        let m = CgroupMounts::discover(root);
        let mount = if m.v2_memory { m.v2 } else { m.v1_memory };
        let mut by_ino = HashMap::new();
        if let Some(top) = &mount {
            walk(top, top, &mut by_ino);
        }
        Self { mount, by_ino }
    }

    /// From `(inode, group)` pairs (tests, other hosts).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u64, String)>) -> Self {
        Self {
            mount: None,
            by_ino: pairs.into_iter().collect(),
        }
    }

    pub fn get(&self, ino: u64) -> Option<&str> {
        self.by_ino.get(&ino).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ino.is_empty()
    }
}

fn walk(top: &Path, dir: &Path, out: &mut HashMap<u64, String>) {
    let Ok(md) = std::fs::metadata(dir) else {
        return;
    };
    let rel = dir.strip_prefix(top).unwrap_or(dir).to_string_lossy();
    out.insert(md.ino(), format!("/{rel}"));
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(top, &e.path(), out);
        }
    }
}

/// How output names a kpagecgroup entry: the group, `(no cgroup)` for 0, `(cgroup inode N)`
/// for a group not in `inodes` (created after the scan, or removed).
pub fn name_of(inodes: &CgroupInodes, ino: u64) -> String {
    match (ino, inodes.get(ino)) {
        (0, _) => "(no cgroup)".to_string(),
        (_, Some(g)) => g.to_string(),
        (_, None) => format!("(cgroup inode {ino})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_the_v2_tree_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        std::fs::create_dir_all(cg.join("a/b")).unwrap();
        std::fs::create_dir_all(cg.join("c")).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "cpu memory io\n").unwrap();
        let inodes = CgroupInodes::scan(&root);
        assert_eq!(inodes.mount.as_deref(), Some(cg.as_path()));
        assert_eq!(inodes.len(), 4);
        let ino = |p: &str| std::fs::metadata(cg.join(p)).unwrap().ino();
        assert_eq!(name_of(&inodes, ino("a/b")), "/a/b");
        assert_eq!(name_of(&inodes, ino("c")), "/c");
        assert_eq!(name_of(&inodes, ino("")), "/");
        assert_eq!(name_of(&inodes, 0), "(no cgroup)");
        assert_eq!(
            name_of(&inodes, u64::MAX),
            format!("(cgroup inode {})", u64::MAX)
        );
    }

    #[test]
    fn no_memory_hierarchy_names_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "cpu io\n").unwrap();
        let inodes = CgroupInodes::scan(&root);
        assert!(inodes.is_empty() && inodes.mount.is_none());
        let p = CgroupInodes::from_pairs([(7, "/x".to_string())]);
        assert_eq!(name_of(&p, 7), "/x");
    }

    #[test]
    fn reads_inodes_per_pfn() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        let bytes: Vec<u8> = [0u64, 42, 42]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        std::fs::write(root.proc_file("kpagecgroup"), bytes).unwrap();
        let k = open(&root).unwrap();
        assert_eq!((k.read(0), k.read(1), k.read(3)), (Some(0), Some(42), None));
        assert!(k.path().ends_with("proc/kpagecgroup"));
    }
}
