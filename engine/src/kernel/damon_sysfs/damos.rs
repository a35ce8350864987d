//! An acting DAMOS scheme beside the driver's per-target `stat` schemes: in the lab, the
//! kernel's own paddr `pageout` with quotas, which madvd's `reclaim_cgroup` is compared
//! with (tests/lab_cgreclaim.rs). Files as Linux 6.12's `mm/damon/sysfs-schemes.c` lays
//! them out (`schemes/<S>/{action,access_pattern,quotas,stats}`); the scheme comes after the
//! `stat` schemes, so the tried regions of those keep their indices.

use super::{DamonSysfs, DamonSysfsError};

/// One DAMOS scheme to add: `action` over regions with `nr_accesses` (per aggregation,
/// as the sysfs file takes it) and `age` (aggregation intervals) in the inclusive ranges,
/// under a size and time quota per `reset_interval_ms` (0 = none, as in the kernel).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamosScheme {
    pub action: String,
    pub nr_accesses: (u32, u32),
    pub age: (u32, u32),
    pub quota_bytes: u64,
    pub quota_ms: u64,
    pub reset_interval_ms: u64,
    /// Leave this memory cgroup's pages alone (its path from the v2 root, `/a/b`): one
    /// `memcg` filter, `matching` Y — before 6.14 every filter rejects what it matches
    /// (`damos_pa_filter_out`, mm/damon/paddr.c 6.12; paddr only). `None`: no filters.
    pub reject_memcg: Option<String>,
}

/// `schemes/<S>/stats/*` after `update_schemes_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DamosStats {
    pub nr_tried: u64,
    pub sz_tried: u64,
    pub nr_applied: u64,
    pub sz_applied: u64,
    pub qt_exceeds: u64,
}

impl DamonSysfs {
    /// Write scheme `idx`'s files (its directory exists: `nr_schemes` was written).
    pub(super) fn write_scheme(
        &mut self,
        idx: usize,
        d: &DamosScheme,
    ) -> Result<(), DamonSysfsError> {
        let s = format!("kdamonds/0/contexts/0/schemes/{idx}");
        self.write_rel(&format!("{s}/action"), &d.action)?;
        let ap = format!("{s}/access_pattern");
        self.write_rel(&format!("{ap}/sz/min"), "0")?;
        self.write_rel(&format!("{ap}/sz/max"), &u64::MAX.to_string())?;
        self.write_rel(
            &format!("{ap}/nr_accesses/min"),
            &d.nr_accesses.0.to_string(),
        )?;
        self.write_rel(
            &format!("{ap}/nr_accesses/max"),
            &d.nr_accesses.1.to_string(),
        )?;
        self.write_rel(&format!("{ap}/age/min"), &d.age.0.to_string())?;
        self.write_rel(&format!("{ap}/age/max"), &d.age.1.to_string())?;
        let f = format!("{s}/filters");
        match &d.reject_memcg {
            Some(path) => {
                self.write_rel(&format!("{f}/nr_filters"), "1")?;
                self.write_rel(&format!("{f}/0/type"), "memcg")?;
                self.write_rel(&format!("{f}/0/memcg_path"), path)?;
                self.write_rel(&format!("{f}/0/matching"), "Y")?;
            }
            None => self.write_rel(&format!("{f}/nr_filters"), "0")?,
        }
        self.write_rel(&format!("{s}/quotas/ms"), &d.quota_ms.to_string())?;
        self.write_rel(&format!("{s}/quotas/bytes"), &d.quota_bytes.to_string())?;
        self.write_rel(
            &format!("{s}/quotas/reset_interval_ms"),
            &d.reset_interval_ms.to_string(),
        )
    }

    /// Rewrite scheme `idx` on the running kdamond (`state` = `commit`: the kernel re-reads
    /// every parameter, keeping its regions where the target ranges did not change,
    /// `damon_commit_ctx`, mm/damon/core.c 6.12) — e.g. turn a `stat` scheme into `pageout`
    /// once the monitoring has settled.
    pub fn commit_scheme(&mut self, idx: usize, d: &DamosScheme) -> Result<(), DamonSysfsError> {
        self.write_scheme(idx, d)?;
        self.write_rel("kdamonds/0/state", "commit")
    }

    /// The stats of scheme `idx` now (`update_schemes_stats`, then the files).
    pub fn scheme_stats(&mut self, idx: usize) -> Result<DamosStats, DamonSysfsError> {
        self.write_rel("kdamonds/0/state", "update_schemes_stats")?;
        let s = format!("kdamonds/0/contexts/0/schemes/{idx}/stats");
        Ok(DamosStats {
            nr_tried: self.read_num(&format!("{s}/nr_tried"))?,
            sz_tried: self.read_num(&format!("{s}/sz_tried"))?,
            nr_applied: self.read_num(&format!("{s}/nr_applied"))?,
            sz_applied: self.read_num(&format!("{s}/sz_applied"))?,
            qt_exceeds: self.read_num(&format!("{s}/qt_exceeds"))?,
        })
    }
}
