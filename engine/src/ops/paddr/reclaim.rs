//! The `reclaim_cgroup` action's engine side: whose are the physical ranges a scheme
//! selected ([`PaddrReclaim::owners_of`], by [`super::owners`]' kpagecgroup sampling), and the
//! write to the owning cgroup's `memory.reclaim` ([`crate::kernel::cgroup_reclaim`]). The
//! amounts are planned by the schemes crate (`schemes::reclaim`); the driver is `madvd run
//! --paddr`.
//!
//! **The young filter.** The kernel's paddr `pageout` skips folios accessed since their
//! last check (`damon_pa_pageout` installs a `young` DAMOS filter when the scheme has none,
//! mm/damon/paddr.c 6.12: `damon_folio_young` then `damon_folio_mkold`). A selected region
//! can hold recently used pages — a hot page reclaimed by the LRU and faulted back lands in
//! free memory the monitor still sees as old and cold — and asking their cgroup for them
//! would make its LRU give up more of its hot pages. So, with the page_idle bitmap: each
//! sampled page that does not read idle (accessed since it was last marked, or never
//! marked) counts as *young* and is asked of no cgroup ([`PaddrReclaim::young_bytes`]); then
//! every page of the selected ranges is marked idle (check, then mkold, as the kernel). A
//! range selected for the first time is therefore asked for one apply later.

use super::owners::{attribute, sample_pfns, Owners, Sampling, UNREADABLE};
use crate::kernel::cgroup_reclaim::{CgroupReclaim, CgroupReclaimError, Reclaimed};
use crate::kernel::page_idle::{words_for, IdleBitmap};
use crate::region::{AddrRange, Region};
use crate::sysroot::SysRoot;
use std::collections::HashSet;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PaddrReclaimError {
    #[error(transparent)]
    Cgroup(#[from] CgroupReclaimError),
    #[error("{path}: {source} (the young filter reads the page_idle bitmap)")]
    Bitmap {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// The owner key of a sampled page the young filter kept out.
const YOUNG: u64 = u64::MAX - 1;

/// Owners of physical pages and the cgroup v2 tree to reclaim in.
pub struct PaddrReclaim {
    owners: Owners,
    cgroups: CgroupReclaim,
    sampling: Sampling,
    page: u64,
    /// The young filter's bitmap (`None`: no filter).
    young: Option<IdleBitmap>,
    young_bytes: u64,
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
        let bitmap = IdleBitmap::open(root).map_err(|source| PaddrReclaimError::Bitmap {
            path: IdleBitmap::path_in(root),
            source,
        })?;
        Ok(Self::with(owners, cgroups, page, Some(bitmap)))
    }

    /// From parts (tests: a fixture tree); `young`: the young filter's bitmap.
    pub fn with(
        owners: Owners,
        cgroups: CgroupReclaim,
        page: u64,
        young: Option<IdleBitmap>,
    ) -> Self {
        Self {
            owners,
            cgroups,
            sampling: Sampling::default(),
            page,
            young,
            young_bytes: 0,
        }
    }

    /// Selected bytes the young filter kept out so far.
    pub fn young_bytes(&self) -> u64 {
        self.young_bytes
    }

    /// The sampled PFNs of `regions` that read young; then every page of `regions` marked
    /// idle. Errors of the bitmap leave the filter out for this call (logged).
    fn young_filter(&mut self, regions: &[Region]) -> HashSet<u64> {
        let Some(bm) = self.young.as_mut() else {
            return HashSet::new();
        };
        let pfns: Vec<u64> = regions
            .iter()
            .flat_map(|r| sample_pfns(r, self.sampling, self.page))
            .collect();
        let young = match bm.idle_of(&pfns) {
            Ok(idle) => pfns
                .iter()
                .zip(idle)
                .filter(|(_, i)| *i == Some(false))
                .map(|(p, _)| *p)
                .collect(),
            Err(e) => {
                tracing::warn!("young filter: {}: {e}", bm.path().display());
                HashSet::new()
            }
        };
        let page = self.page;
        let all = regions
            .iter()
            .flat_map(|r| (r.start() / page)..(r.end() / page));
        if let Err(e) = bm.set_idle(&words_for(all)) {
            tracing::warn!("young filter: marking idle: {}: {e}", bm.path().display());
        }
        young
    }

    pub fn set_sampling(&mut self, s: Sampling) {
        self.sampling = s;
    }

    /// The bytes of `ranges` per owning cgroup, sampled as the monitor's snapshots are
    /// attributed. A group created since the hierarchy was walked triggers one more walk.
    pub fn owners_of(&mut self, ranges: &[AddrRange]) -> Vec<Owned> {
        let regions: Vec<Region> = ranges.iter().map(|r| Region::new(r.start, r.end)).collect();
        let young = self.young_filter(&regions);
        let by_key = attribute(&regions, self.sampling, self.page, |pfn| {
            if young.contains(&pfn) {
                Some(YOUNG)
            } else {
                self.owners.kpagecgroup(pfn)
            }
        });
        if let Some(y) = by_key.get(&YOUNG) {
            self.young_bytes += y.hot + y.cold;
        }
        if by_key.keys().any(|&k| {
            k != 0 && k != UNREADABLE && k != YOUNG && self.owners.inodes().get(k).is_none()
        }) {
            self.owners.rescan();
        }
        by_key
            .into_iter()
            .map(|(k, hc)| {
                let bytes = hc.hot + hc.cold;
                let name = (k != 0 && k != UNREADABLE && k != YOUNG)
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
        let mut r = PaddrReclaim::with(owners, cgroups, 4096, None);
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

    /// The young filter: a sampled page that does not read idle is asked of no cgroup, and
    /// every page of the ranges is marked idle afterwards (check, then mkold).
    #[test]
    fn young_pages_are_asked_of_no_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let cg = root.sys_file("fs/cgroup");
        std::fs::create_dir_all(cg.join("g")).unwrap();
        std::fs::write(cg.join("g/memory.reclaim"), "").unwrap();
        std::fs::write(cg.join("cgroup.controllers"), "memory\n").unwrap();
        let ino = std::fs::metadata(cg.join("g")).unwrap().ino();
        std::fs::create_dir_all(&root.proc).unwrap();
        let bytes: Vec<u8> = [ino; 64].iter().flat_map(|v| v.to_ne_bytes()).collect();
        std::fs::write(root.proc_file("kpagecgroup"), bytes).unwrap();
        // A plain file stands in for the bitmap: word 0 has PFNs 0..4 idle (bits set).
        let bm_path = IdleBitmap::path_in(&root);
        std::fs::create_dir_all(bm_path.parent().unwrap()).unwrap();
        std::fs::write(&bm_path, 0b1111u64.to_ne_bytes()).unwrap();
        let bitmap = IdleBitmap::open(&root).unwrap();
        let mut r = PaddrReclaim::with(
            Owners::open(&root).unwrap(),
            CgroupReclaim::open(&root, true).unwrap(),
            4096,
            Some(bitmap),
        );
        r.set_sampling(Sampling::fixed(8));
        let mut got = r.owners_of(&[AddrRange::new(0, 8 * 4096)]);
        got.sort();
        assert_eq!(got, vec![(None, 4 * 4096), (Some("/g".into()), 4 * 4096)]);
        assert_eq!(r.young_bytes(), 4 * 4096);
        // Marked idle: all eight pages read idle now, so the next time all are asked for.
        let word = std::fs::read(&bm_path).unwrap();
        assert_eq!(
            u64::from_ne_bytes(word[..8].try_into().unwrap()) & 0xff,
            0xff
        );
        assert_eq!(
            r.owners_of(&[AddrRange::new(0, 8 * 4096)]),
            vec![(Some("/g".into()), 8 * 4096)]
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
