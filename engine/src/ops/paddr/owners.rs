//! Whose memory: a paddr snapshot's regions attributed to memory cgroups by sampling.
//!
//! Each region is sampled at evenly spaced pages (the middle of equal slices), one per
//! [`BYTES_PER_SAMPLE`] and at least [`MIN_SAMPLES`] ([`Sampling`]): a fixed number per region
//! would give one sample of a 64 MiB region — 8 MiB — to a cgroup owning a few pages there.
//! `/proc/kpagecgroup` gives each sampled page's memory cgroup (its directory's inode, 0 for
//! none), and the region's bytes are shared among the owners in proportion to their samples. The region's access count decides hot (`nr_accesses > 0`) or cold.
//! [`attribute`] is pure (the lookup is a function); [`Owners`] reads the kernel's files.

use crate::kernel::kpagecgroup::{self, name_of, CgroupInodes, KpageCgroup};
use crate::region::Region;
use crate::sysroot::SysRoot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The owner key of a page whose kpagecgroup entry could not be read.
pub const UNREADABLE: u64 = u64::MAX;

/// Default sampling: one page per 256 KiB of a region, 8 to 4096 per region (2 GiB of
/// regions: about 8200 one-entry reads of kpagecgroup per snapshot).
pub const BYTES_PER_SAMPLE: u64 = 256 << 10;
pub const MIN_SAMPLES: u32 = 8;
pub const MAX_SAMPLES: u32 = 4096;

/// How many pages of a region are sampled for its owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampling {
    pub bytes_per_sample: u64,
    pub min: u32,
    pub max: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            bytes_per_sample: BYTES_PER_SAMPLE,
            min: MIN_SAMPLES,
            max: MAX_SAMPLES,
        }
    }
}

impl Sampling {
    /// Exactly `n` samples per region (tests).
    pub const fn fixed(n: u32) -> Self {
        Self {
            bytes_per_sample: u64::MAX,
            min: n,
            max: n,
        }
    }

    /// The samples of a region of `size` bytes (before the page count caps it).
    pub fn count(&self, size: u64) -> u32 {
        let by_size = (size / self.bytes_per_sample.max(1)).min(u32::MAX as u64) as u32;
        by_size.clamp(self.min, self.max.max(self.min))
    }
}

/// Bytes seen accessed and not, of one owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotCold {
    pub hot: u64,
    pub cold: u64,
}

/// One owner's bytes, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupBytes {
    /// The group (`/a/b`), `(no cgroup)`, `(cgroup inode N)` or `(unreadable)`.
    pub cgroup: String,
    pub hot_bytes: u64,
    pub cold_bytes: u64,
}

/// The PFNs sampled in `r`: `min(sampling.count(size), pages)` pages at the middle of equal
/// slices. Pure.
pub fn sample_pfns(r: &Region, sampling: Sampling, page: u64) -> Vec<u64> {
    let pages = r.size() / page;
    let n = (sampling.count(r.size()) as u64).min(pages);
    (0..n)
        .map(|k| (r.start() + (2 * k + 1) * r.size() / (2 * n)) / page)
        .collect()
}

/// Hot and cold bytes per owner key (cgroup inode, 0 for none, [`UNREADABLE`]) over
/// `regions`, `owner` giving a PFN's key. Every byte of every region lands with one owner.
/// Pure.
pub fn attribute(
    regions: &[Region],
    sampling: Sampling,
    page: u64,
    mut owner: impl FnMut(u64) -> Option<u64>,
) -> BTreeMap<u64, HotCold> {
    let mut out: BTreeMap<u64, HotCold> = BTreeMap::new();
    for r in regions {
        let pfns = sample_pfns(r, sampling, page);
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        for pfn in &pfns {
            *counts.entry(owner(*pfn).unwrap_or(UNREADABLE)).or_default() += 1;
        }
        if pfns.is_empty() {
            counts.insert(UNREADABLE, 1);
        }
        let n = counts.values().sum::<u64>();
        // Shares by largest remainder, so the region's bytes add up exactly.
        let mut given = 0;
        let last = counts.len() - 1;
        for (i, (key, c)) in counts.into_iter().enumerate() {
            let share = if i == last {
                r.size() - given
            } else {
                (r.size() as u128 * c as u128 / n as u128) as u64
            };
            given += share;
            let e = out.entry(key).or_default();
            if r.nr_accesses > 0 {
                e.hot += share;
            } else {
                e.cold += share;
            }
        }
    }
    out
}

/// Name the owners of [`attribute`]'s result, most cold bytes first.
pub fn named(by_key: &BTreeMap<u64, HotCold>, inodes: &CgroupInodes) -> Vec<CgroupBytes> {
    let mut v: Vec<CgroupBytes> = by_key
        .iter()
        .map(|(&k, hc)| CgroupBytes {
            cgroup: if k == UNREADABLE {
                "(unreadable)".into()
            } else {
                name_of(inodes, k)
            },
            hot_bytes: hc.hot,
            cold_bytes: hc.cold,
        })
        .collect();
    v.sort_by(|a, b| {
        b.cold_bytes
            .cmp(&a.cold_bytes)
            .then(a.cgroup.cmp(&b.cgroup))
    });
    v
}

/// One estimate per cgroup over a window of snapshots (each [`named`]'s or
/// [`Owners::of`]'s list): the median of its hot bytes and, separately, of its cold bytes
/// (for an even count, the mean of the two middle values); a cgroup missing from a snapshot
/// had 0 bytes there. Most cold first. Pure.
///
/// The median, not the mean: a region that mixes a group's idle pages with hot ones keeps
/// them hot as a whole until a split separates them, and under load that can last several
/// aggregations (docs/performance.md, "Physical address space (paddr)": the idle group's hot
/// bytes at 24 MiB instead of ~3 in a few snapshots of 20). Such excursions are a minority of
/// the window and move its mean by their size times their share; they move the median only
/// when they fill half of it.
pub fn median_per_cgroup<'a>(
    snaps: impl IntoIterator<Item = &'a [CgroupBytes]>,
) -> Vec<CgroupBytes> {
    let snaps: Vec<&[CgroupBytes]> = snaps.into_iter().collect();
    let mut per: BTreeMap<&str, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
    for (i, s) in snaps.iter().enumerate() {
        for c in s.iter() {
            let e = per.entry(&c.cgroup).or_default();
            // 0 bytes in every snapshot the name is missing from; a name listed twice in
            // one snapshot adds up (one estimate per name).
            e.0.resize(snaps.len(), 0);
            e.1.resize(snaps.len(), 0);
            e.0[i] = e.0[i].saturating_add(c.hot_bytes);
            e.1[i] = e.1[i].saturating_add(c.cold_bytes);
        }
    }
    let mut v: Vec<CgroupBytes> = per
        .into_iter()
        .map(|(g, (mut hot, mut cold))| CgroupBytes {
            cgroup: g.to_string(),
            hot_bytes: median(&mut hot),
            cold_bytes: median(&mut cold),
        })
        .collect();
    v.sort_by(|a, b| {
        b.cold_bytes
            .cmp(&a.cold_bytes)
            .then(a.cgroup.cmp(&b.cgroup))
    });
    v
}

/// The median of `v` (sorted in place), the mean of the middle two for an even count; 0 for
/// none.
fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => ((v[n / 2 - 1] as u128 + v[n / 2] as u128) / 2) as u64,
    }
}

/// `/proc/kpagecgroup` and the memory cgroups by inode, read once (groups created later
/// show as `(cgroup inode N)` until [`Owners::rescan`]).
pub struct Owners {
    kpagecgroup: KpageCgroup,
    inodes: CgroupInodes,
    root: SysRoot,
}

impl Owners {
    pub fn open(root: &SysRoot) -> std::io::Result<Self> {
        Ok(Self {
            kpagecgroup: kpagecgroup::open(root)?,
            inodes: CgroupInodes::scan(root),
            root: root.clone(),
        })
    }

    /// Walk the cgroup hierarchy again.
    pub fn rescan(&mut self) {
        self.inodes = CgroupInodes::scan(&self.root);
    }

    pub fn inodes(&self) -> &CgroupInodes {
        &self.inodes
    }

    /// The cgroup inode `pfn` is charged to (0: none), `None` when unreadable.
    pub fn kpagecgroup(&self, pfn: u64) -> Option<u64> {
        self.kpagecgroup.read(pfn)
    }

    /// The cold and hot bytes of `regions` per cgroup, most cold first.
    pub fn of(&self, regions: &[Region], sampling: Sampling, page: u64) -> Vec<CgroupBytes> {
        let by_key = attribute(regions, sampling, page, |pfn| self.kpagecgroup.read(pfn));
        named(&by_key, &self.inodes)
    }
}
