//! The kernel's own DAMON as a *snapshot source*: it monitors our targets with its `vaddr`
//! operations in a kdamond, and hands back whole regions with their access counts and ages,
//! which feed the schemes directly (no per-sample access check, no user-space monitor).
//!
//! Driven through the sysfs admin tree by [`crate::kernel::damon_sysfs`], which sets up one
//! kdamond with one context, our targets by pid, and a `stat` scheme per target whose
//! `tried_regions` are the kdamond's regions at its aggregation boundary (DAMOS apply
//! interval 0 = the aggregation interval, mm/damon/core.c 6.12).
//!
//! Usable only when nobody else uses kernel DAMON (`nr_kdamonds` is 0 at start: writing it
//! rebuilds every kdamond directory), and — to keep madvd's tests off a machine's own
//! kdamond — **never on the machine's `/sys` outside the madvd kernel lab** (`madvd_lab=1`
//! on the kernel command line). A fake tree elsewhere (any other sysfs root) is fine.

use crate::attrs::{Attrs, AttrsError};
use crate::kernel::damon_sysfs::{
    DamonSysfs, DamonSysfsError, DamonTargets, DamosScheme, DamosStats, RealSysfs, SysfsAttrs,
    SysfsIo, ADMIN_REL,
};
use crate::ops::paddr::{settle_ranges, PaddrError, PADDR_TARGET};
use crate::region::{AddrRange, Region, TargetId};
use crate::snapshot::{Snapshot, TargetSnapshot};
use crate::sysroot::SysRoot;
use std::path::Path;
use std::time::Instant;
use thiserror::Error;

/// The refusal on a host.
pub const HOST_REFUSAL: &str =
    "host: refusing to write the machine's DAMON (only in the madvd lab)";

#[derive(Debug, Error)]
pub enum KernelDamonError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Sysfs(#[from] DamonSysfsError),
    #[error("kernel DAMON attributes: {0}")]
    Attrs(#[from] AttrsError),
    #[error("kernel DAMON paddr: {0}")]
    Paddr(#[from] PaddrError),
}

/// True when `root`'s sysfs is the running machine's own `/sys`.
pub fn is_machine_sysfs(root: &SysRoot) -> bool {
    std::fs::canonicalize(&root.sys)
        .map(|p| p == Path::new("/sys"))
        .unwrap_or(false)
}

/// True inside the madvd kernel lab: `madvd_lab=1` on the running kernel's command line
/// (set by `shared/lab/run`). Deliberately not the `MADVD_LAB` environment variable: the
/// guard protects a machine's kdamond, and an environment is too easy to inherit.
pub fn kernel_is_lab() -> bool {
    std::fs::read_to_string("/proc/cmdline")
        .map(|c| c.split_whitespace().any(|a| a == "madvd_lab=1"))
        .unwrap_or(false)
}

/// Why we may not write under `root`'s DAMON admin tree, if we may not.
fn refusal(root: &SysRoot) -> Option<String> {
    let admin = root.sys_file(ADMIN_REL);
    if !admin.exists() {
        return Some(format!(
            "no DAMON sysfs interface: {} missing (CONFIG_DAMON_SYSFS off)",
            admin.display()
        ));
    }
    if !crate::kernel::host::is_root() {
        return Some(format!("needs root to write {}", admin.display()));
    }
    if is_machine_sysfs(root) && !kernel_is_lab() {
        return Some(HOST_REFUSAL.to_string());
    }
    None
}

/// Why kernel DAMON is not usable here, if it is not (admin missing, not root, the
/// machine's own DAMON outside the lab, or in use by another owner). Reads only; never writes.
pub fn why_not(root: &SysRoot) -> Option<String> {
    refusal(root).or_else(|| {
        let nr = root.sys_file(ADMIN_REL).join("kdamonds/nr_kdamonds");
        match std::fs::read_to_string(&nr) {
            Ok(s) if s.trim() == "0" => None,
            Ok(s) => Some(format!(
                "in use by another owner (nr_kdamonds is {})",
                s.trim()
            )),
            Err(e) => Some(format!("{}: {e}", nr.display())),
        }
    })
}

/// A running kdamond over our targets. Stops and removes its sysfs directories on drop.
#[derive(Debug)]
pub struct KernelDamon {
    sysfs: DamonSysfs,
    targets: Vec<TargetId>,
    attrs: Attrs,
    started: Instant,
    aggregation: u64,
}

impl KernelDamon {
    /// Start kernel DAMON on `targets` (each `TargetId` is a live pid) with `attrs` under
    /// `root`'s sysfs. Refuses the machine's own `/sys` outside the lab.
    pub fn start(
        root: &SysRoot,
        targets: &[TargetId],
        attrs: Attrs,
    ) -> Result<Self, KernelDamonError> {
        if let Some(why) = refusal(root) {
            return Err(KernelDamonError::Refused(why));
        }
        Self::start_with(
            Box::new(RealSysfs),
            &root.sys_file(ADMIN_REL),
            targets,
            attrs,
        )
    }

    /// As [`Self::start`], through any [`SysfsIo`] (a fake tree, a logging wrapper) at
    /// `admin`. No host guard here: callers with the real `/sys` use [`Self::start`].
    pub fn start_with(
        io: Box<dyn SysfsIo>,
        admin: &Path,
        targets: &[TargetId],
        attrs: Attrs,
    ) -> Result<Self, KernelDamonError> {
        attrs.validate()?;
        let pids: Vec<u32> = targets.iter().map(|t| t.0).collect();
        let sysfs = DamonSysfs::start(io, admin, &pids, SysfsAttrs::from(&attrs))?;
        Ok(Self {
            sysfs,
            targets: targets.to_vec(),
            attrs,
            started: Instant::now(),
            aggregation: 0,
        })
    }

    /// As [`Self::start`], with `extra` acting schemes (vaddr DAMOS, e.g. `pageout`) after the
    /// `stat` scheme that reads each target's regions: scheme `targets.len() + i` is
    /// `extra[i]` (for one target, scheme 1 is `extra[0]`). Lab only, as [`Self::start`].
    pub fn start_with_extra(
        root: &SysRoot,
        targets: &[TargetId],
        attrs: Attrs,
        extra: &[DamosScheme],
    ) -> Result<Self, KernelDamonError> {
        if let Some(why) = refusal(root) {
            return Err(KernelDamonError::Refused(why));
        }
        attrs.validate()?;
        let pids: Vec<u32> = targets.iter().map(|t| t.0).collect();
        let sysfs = DamonSysfs::start_with_schemes(
            Box::new(RealSysfs),
            root.sys_file(ADMIN_REL),
            DamonTargets::Pids(&pids),
            SysfsAttrs::from(&attrs),
            extra,
        )?;
        Ok(Self {
            sysfs,
            targets: targets.to_vec(),
            attrs,
            started: Instant::now(),
            aggregation: 0,
        })
    }

    /// Kernel DAMON over physical memory (`paddr` operations; lab only, as [`Self::start`]):
    /// one target, [`PADDR_TARGET`], over `ranges` checked as madvd's paddr checks them
    /// (page-aligned, inside one System RAM range of `/proc/iomem`), or by default the
    /// biggest System RAM range (`damon_find_biggest_system_ram`, mm/damon/core.c 6.12, as
    /// DAMON_RECLAIM picks it). `extra` acting schemes run beside the `stat` scheme that
    /// reads the regions (scheme 1 is `extra[0]`). Refused while any kdamond runs.
    pub fn start_phys(
        root: &SysRoot,
        ranges: Option<&[AddrRange]>,
        attrs: Attrs,
        extra: &[DamosScheme],
    ) -> Result<Self, KernelDamonError> {
        if let Some(why) = refusal(root) {
            return Err(KernelDamonError::Refused(why));
        }
        let ram = crate::kernel::iomem::read_system_ram(root).map_err(PaddrError::from)?;
        let page = crate::kernel::host::page_size();
        let ranges = settle_ranges(ranges, &ram, page, &crate::kernel::iomem::path_in(root))?;
        Self::start_phys_with(
            Box::new(RealSysfs),
            &root.sys_file(ADMIN_REL),
            &ranges,
            attrs,
            extra,
        )
    }

    /// As [`Self::start_phys`] over settled `ranges`, through any [`SysfsIo`] at `admin`.
    pub fn start_phys_with(
        io: Box<dyn SysfsIo>,
        admin: &Path,
        ranges: &[AddrRange],
        attrs: Attrs,
        extra: &[DamosScheme],
    ) -> Result<Self, KernelDamonError> {
        attrs.validate()?;
        let sysfs = DamonSysfs::start_with_schemes(
            io,
            admin,
            DamonTargets::Phys(ranges),
            SysfsAttrs::from(&attrs),
            extra,
        )?;
        Ok(Self {
            sysfs,
            targets: vec![PADDR_TARGET],
            attrs,
            started: Instant::now(),
            aggregation: 0,
        })
    }

    /// The stats of scheme `idx` (1 for the first extra scheme of [`Self::start_phys`]).
    pub fn scheme_stats(&mut self, idx: usize) -> Result<DamosStats, KernelDamonError> {
        Ok(self.sysfs.scheme_stats(idx)?)
    }

    /// Rewrite scheme `idx` on the running kdamond (`commit`).
    pub fn commit_scheme(&mut self, idx: usize, d: &DamosScheme) -> Result<(), KernelDamonError> {
        Ok(self.sysfs.commit_scheme(idx, d)?)
    }

    /// The attributes the kdamond runs with.
    pub fn attrs(&self) -> Attrs {
        self.attrs
    }

    /// The targets, in the order of the snapshots' `targets`.
    pub fn targets(&self) -> &[TargetId] {
        &self.targets
    }

    /// The kdamond's pid (for its CPU time), if it runs.
    pub fn kdamond_pid(&mut self) -> Result<Option<u32>, KernelDamonError> {
        Ok(self.sysfs.kdamond_pid()?)
    }

    /// The kdamond's regions now: blocks until its next aggregation boundary (the
    /// `update_schemes_tried_regions` write returns after the scheme-apply pass). `None`
    /// once it stopped (every target exited). Regions come as the kernel keeps them:
    /// `nr_accesses` of the last aggregation, `age`; every sample counts as known.
    pub fn next_snapshot(&mut self) -> Result<Option<Snapshot>, KernelDamonError> {
        let Some(per_target) = self.sysfs.tried_regions()? else {
            return Ok(None);
        };
        self.aggregation += 1;
        let max = self.attrs.max_nr_accesses();
        let targets = self
            .targets
            .iter()
            .zip(per_target)
            .map(|(&target, regions)| TargetSnapshot {
                target,
                regions: regions
                    .into_iter()
                    .map(|r| {
                        let mut reg = Region::new(r.start, r.end);
                        reg.nr_accesses = r.nr_accesses;
                        reg.nr_accesses_bp = r.nr_accesses.saturating_mul(10_000);
                        reg.age = r.age;
                        reg.nr_known = max;
                        reg.nr_seen = r.nr_accesses;
                        reg
                    })
                    .collect(),
            })
            .collect();
        Ok(Some(Snapshot {
            now_us: self.started.elapsed().as_micros() as u64,
            aggregation: self.aggregation,
            aggregated: true,
            attrs: self.attrs,
            targets,
        }))
    }

    /// Stop the kdamond and remove its directories, reporting errors (drop logs them).
    pub fn stop(self) -> Result<(), KernelDamonError> {
        Ok(self.sysfs.stop()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::damon_sysfs::fake::FakeDamonSysfs;
    use crate::kernel::damon_sysfs::TriedRegion;

    #[test]
    fn snapshots_carry_the_kernels_regions_per_target() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        fake.set_regions(
            0,
            vec![TriedRegion {
                start: 0x1000,
                end: 0x5000,
                nr_accesses: 7,
                age: 2,
            }],
        );
        fake.set_regions(
            1,
            vec![TriedRegion {
                start: 0x9000,
                end: 0xa000,
                nr_accesses: 0,
                age: 9,
            }],
        );
        let attrs = Attrs::default();
        let mut kd = KernelDamon::start_with(
            Box::new(fake.clone()),
            &fake.admin(),
            &[TargetId(11), TargetId(22)],
            attrs,
        )
        .unwrap();
        let s = kd.next_snapshot().unwrap().unwrap();
        assert_eq!((s.aggregation, s.aggregated), (1, true));
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.targets[0].target, TargetId(11));
        let r = &s.targets[0].regions[0];
        assert_eq!(
            (r.start(), r.end(), r.nr_accesses, r.nr_accesses_bp, r.age),
            (0x1000, 0x5000, 7, 70_000, 2)
        );
        assert_eq!(r.nr_known, attrs.max_nr_accesses());
        assert_eq!(s.targets[1].target, TargetId(22));
        assert_eq!(s.targets[1].regions[0].age, 9);
        fake.kdamond_exits().unwrap();
        assert!(kd.next_snapshot().unwrap().is_none());
        kd.stop().unwrap();
        assert_eq!(fake.files(), before);
    }

    /// Physical memory: one target (`PADDR_TARGET`) over the ranges, the `stat` scheme that
    /// reads the regions first and the acting scheme after it, its stats readable.
    #[test]
    fn paddr_source_with_a_pageout_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        fake.set_regions(
            0,
            vec![TriedRegion {
                start: 0x100000,
                end: 0x200000,
                nr_accesses: 0,
                age: 30,
            }],
        );
        let pageout = DamosScheme {
            action: "pageout".into(),
            nr_accesses: (0, 0),
            age: (5, u32::MAX),
            quota_bytes: 16 << 20,
            quota_ms: 0,
            reset_interval_ms: 1000,
            reject_memcg: Some("/madvd-ctl".into()),
        };
        let mut kd = KernelDamon::start_phys_with(
            Box::new(fake.clone()),
            &fake.admin(),
            &[AddrRange::new(0x100000, 0x7ffdf000)],
            Attrs::default(),
            std::slice::from_ref(&pageout),
        )
        .unwrap();
        let w = |p: &str, v: &str| (format!("kdamonds/0/contexts/0/{p}"), v.to_string());
        let writes = fake.writes();
        for want in [
            w("operations", "paddr"),
            w("schemes/nr_schemes", "2"),
            w("schemes/0/action", "stat"),
            w("schemes/1/action", "pageout"),
            w("schemes/1/access_pattern/nr_accesses/max", "0"),
            w("schemes/1/access_pattern/age/min", "5"),
            w("schemes/1/quotas/bytes", "16777216"),
            w("schemes/1/quotas/reset_interval_ms", "1000"),
            w("schemes/1/filters/nr_filters", "1"),
            w("schemes/1/filters/0/type", "memcg"),
            w("schemes/1/filters/0/memcg_path", "/madvd-ctl"),
            w("schemes/1/filters/0/matching", "Y"),
        ] {
            assert!(writes.contains(&want), "{want:?} not in {writes:?}");
        }
        let s = kd.next_snapshot().unwrap().unwrap();
        assert_eq!(s.targets.len(), 1);
        assert_eq!(s.targets[0].target, PADDR_TARGET);
        assert_eq!(s.targets[0].regions[0].age, 30);
        assert_eq!(kd.scheme_stats(1).unwrap(), DamosStats::default());
        let stat = DamosScheme {
            action: "stat".into(),
            reject_memcg: None,
            ..pageout.clone()
        };
        kd.commit_scheme(1, &stat).unwrap();
        let writes = fake.writes();
        // The filter goes again with the commit.
        assert_eq!(
            writes.last_chunk::<5>().map(|c| c[0].clone()),
            Some(w("schemes/1/filters/nr_filters", "0"))
        );
        assert_eq!(
            writes[writes.len() - 2..].to_vec(),
            vec![
                w("schemes/1/quotas/reset_interval_ms", "1000"),
                ("kdamonds/0/state".to_string(), "commit".to_string())
            ]
        );
        kd.stop().unwrap();
        assert_eq!(fake.files(), before);
    }

    /// Bad physical ranges are refused before anything is written, as madvd's paddr refuses
    /// them; a range inside RAM and page-aligned gets as far as the (fake, plain-file) tree.
    #[test]
    fn paddr_source_refuses_bad_ranges() {
        if !crate::kernel::host::is_root() {
            return; // refusal() says "needs root" first; covered by why_not_on_fixture_trees
        }
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(&root.proc).unwrap();
        std::fs::write(
            root.proc_file("iomem"),
            "00001000-0009efff : System RAM\n00100000-7ffdefff : System RAM\n",
        )
        .unwrap();
        let start = |r: AddrRange| {
            KernelDamon::start_phys(&root, Some(&[r]), Attrs::default(), &[])
                .unwrap_err()
                .to_string()
        };
        let e = start(AddrRange::new(0x7000000000, 0x7000100000));
        assert!(e.starts_with("kernel DAMON paddr: physical range 0x7000000000-0x7000100000 is not inside one \"System RAM\" range"), "{e}");
        let e = start(AddrRange::new(0x100000, 0x100800));
        assert!(e.contains("0x100000-0x100800 is not page-aligned"), "{e}");
        assert!(fake.writes().is_empty());
    }

    #[test]
    fn bad_attrs_are_refused_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let attrs = Attrs {
            min_nr_regions: 1,
            ..Attrs::default()
        };
        let e =
            KernelDamon::start_with(Box::new(fake.clone()), &fake.admin(), &[TargetId(1)], attrs)
                .unwrap_err();
        assert!(matches!(e, KernelDamonError::Attrs(_)), "{e}");
        assert!(fake.writes().is_empty());
    }

    #[test]
    fn why_not_on_fixture_trees() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        let why = why_not(&root).unwrap();
        assert!(why.contains("CONFIG_DAMON_SYSFS off"), "{why}");
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let why = why_not(&root);
        if crate::kernel::host::is_root() {
            assert_eq!(
                why, None,
                "a free fake tree (not the machine's /sys) is usable"
            );
            fake.occupy(2).unwrap();
            assert_eq!(
                why_not(&root).as_deref(),
                Some("in use by another owner (nr_kdamonds is 2)")
            );
        } else {
            assert!(why.unwrap().contains("needs root"));
        }
    }

    /// The guard that keeps tests off this machine's kdamond: on a host (not the lab
    /// kernel) the real /sys is refused before anything is read or written.
    #[test]
    fn the_machines_sysfs_is_refused_outside_the_lab() {
        assert!(is_machine_sysfs(&SysRoot::host()));
        if kernel_is_lab() {
            return; // the lab tests cover the real thing
        }
        let e = KernelDamon::start(
            &SysRoot::host(),
            &[TargetId(std::process::id())],
            Attrs::default(),
        )
        .unwrap_err();
        let msg = e.to_string();
        if SysRoot::host().sys_file(ADMIN_REL).exists() && crate::kernel::host::is_root() {
            assert_eq!(msg, HOST_REFUSAL);
            assert_eq!(why_not(&SysRoot::host()).as_deref(), Some(HOST_REFUSAL));
        } else {
            assert!(matches!(e, KernelDamonError::Refused(_)), "{msg}");
        }
    }
}
