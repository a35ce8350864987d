//! The `reclaim_cgroup` action's engine side: whose are the physical ranges a scheme
//! selected ([`PaddrReclaim::owners_of`], by [`super::owners`]' kpagecgroup sampling), and the
//! write to the owning cgroup's `memory.reclaim` ([`crate::kernel::cgroup_reclaim`]). The
//! amounts are planned by the schemes crate (`schemes::reclaim`); the driver is `madvd run
//! --paddr`.

use super::owners::{attribute, Owners, Sampling, UNREADABLE};
use crate::kernel::cgroup_reclaim::{CgroupReclaim, CgroupReclaimError, Reclaimed};
use crate::region::{AddrRange, Region};
use crate::sysroot::SysRoot;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PaddrReclaimError {
    #[error(transparent)]
    Cgroup(#[from] CgroupReclaimError),
    #[error("{path}: {source} (whose memory it is comes from /proc/kpagecgroup: CONFIG_MEMCG)")]
    Owners {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Bytes of some ranges owned by one cgroup (`None`: no cgroup to ask — uncharged pages,
/// unreadable entries, a group not found in the hierarchy).
pub type Owned = (Option<String>, u64);

/// Owners of physical pages and the cgroup v2 tree to reclaim in.
pub struct PaddrReclaim {
    owners: Owners,
    cgroups: CgroupReclaim,
    sampling: Sampling,
    page: u64,
}

impl PaddrReclaim {
    /// Refused first where `memory.reclaim` cannot work (not root, cgroup v1), then without
    /// `/proc/kpagecgroup`.
    pub fn open(root: &SysRoot, page: u64) -> Result<Self, PaddrReclaimError> {
        let cgroups = CgroupReclaim::new(root)?;
        let owners = Owners::open(root).map_err(|source| PaddrReclaimError::Owners {
            path: root.proc_file("kpagecgroup"),
            source,
        })?;
        Ok(Self::with(owners, cgroups, page))
    }

    /// From parts (tests: a fixture tree).
    pub fn with(owners: Owners, cgroups: CgroupReclaim, page: u64) -> Self {
        Self {
            owners,
            cgroups,
            sampling: Sampling::default(),
            page,
        }
    }

    pub fn set_sampling(&mut self, s: Sampling) {
        self.sampling = s;
    }

    /// The bytes of `ranges` per owning cgroup, sampled as the monitor's snapshots are
    /// attributed. A group created since the hierarchy was walked triggers one more walk.
    pub fn owners_of(&mut self, ranges: &[AddrRange]) -> Vec<Owned> {
        let regions: Vec<Region> = ranges.iter().map(|r| Region::new(r.start, r.end)).collect();
        let by_key = attribute(&regions, self.sampling, self.page, |pfn| {
            self.owners.kpagecgroup(pfn)
        });
        if by_key
            .keys()
            .any(|&k| k != 0 && k != UNREADABLE && self.owners.inodes().get(k).is_none())
        {
            self.owners.rescan();
        }
        by_key
            .into_iter()
            .map(|(k, hc)| {
                let bytes = hc.hot + hc.cold;
                let name = (k != 0 && k != UNREADABLE)
                    .then(|| self.owners.inodes().get(k).map(str::to_string))
                    .flatten();
                (name, bytes)
            })
            .collect()
    }

    /// Ask `group` to reclaim `bytes`.
    pub fn reclaim(&self, group: &str, bytes: u64) -> Result<Reclaimed, CgroupReclaimError> {
        self.cgroups.reclaim(group, bytes)
    }

    pub fn cgroups(&self) -> &CgroupReclaim {
        &self.cgroups
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A fixture: a v2 tree with `/idle` and `/hot`, and a kpagecgroup whose PFNs 0..8 are
    /// `/idle`'s, 8..12 `/hot`'s, 12..14 uncharged, 14..16 a group not in the tree.
    #[test]
    fn selected_ranges_go_to_their_owners_and_are_reclaimed_there() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        for g in ["idle", "hot"] {
            std::fs::create_dir_all(cg.join(g)).unwrap();
            std::fs::write(cg.join(g).join("memory.reclaim"), "").unwrap();
        }
        std::fs::write(cg.join("cgroup.controllers"), "memory\n").unwrap();
        let ino = |g: &str| std::fs::metadata(cg.join(g)).unwrap().ino();
        let mut per_pfn = vec![ino("idle"); 8];
        per_pfn.extend([ino("hot"); 4]);
        per_pfn.extend([0u64; 2]);
        per_pfn.extend([987_654u64; 2]);
        std::fs::create_dir_all(&root.proc).unwrap();
        let bytes: Vec<u8> = per_pfn.iter().flat_map(|v| v.to_ne_bytes()).collect();
        std::fs::write(root.proc_file("kpagecgroup"), bytes).unwrap();

        let owners = Owners::open(&root).unwrap();
        let cgroups = CgroupReclaim::open(&root, true).unwrap();
        let mut r = PaddrReclaim::with(owners, cgroups, 4096);
        r.set_sampling(Sampling::fixed(16));
        let mut got = r.owners_of(&[AddrRange::new(0, 16 * 4096)]);
        got.sort();
        assert_eq!(
            got,
            vec![
                (None, 2 * 4096),
                (None, 2 * 4096),
                (Some("/hot".into()), 4 * 4096),
                (Some("/idle".into()), 8 * 4096),
            ]
        );
        let done = r.reclaim("/idle", 8 * 4096).unwrap();
        assert_eq!(done.bytes(), 8 * 4096);
        assert_eq!(
            std::fs::read_to_string(cg.join("idle/memory.reclaim")).unwrap(),
            "32768"
        );
    }

    #[test]
    fn open_refuses_a_v1_host_before_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        std::fs::create_dir_all(cg.join("memory")).unwrap();
        std::fs::write(cg.join("memory/memory.usage_in_bytes"), "0\n").unwrap();
        let e = PaddrReclaim::open(&root, 4096).err().unwrap().to_string();
        if crate::kernel::host::is_root() {
            assert!(e.starts_with("cgroup v1 host"), "{e}");
        } else {
            assert!(e.starts_with("needs root"), "{e}");
        }
    }
}
