//! The kernel's DAMON sysfs interface (`/sys/kernel/mm/damon/admin`), driven for `vaddr`
//! monitoring of our own targets (or, in the lab, `paddr` monitoring of physical ranges:
//! [`DamonTargets::Phys`]), with the regions read back through a `stat` scheme's
//! `tried_regions`.
//!
//! Layout and semantics are Linux 6.12's (`mm/damon/sysfs.c`, `mm/damon/sysfs-schemes.c`,
//! Documentation/admin-guide/mm/damon/usage.rst), checked against the lab kernel (6.12.117)
//! by `tests/lab_ops.rs` (`lab_damon_sysfs_real_tree_matches_the_fake`):
//!
//! ```text
//! admin/kdamonds/nr_kdamonds
//! admin/kdamonds/<K>/{state,pid}
//! admin/kdamonds/<K>/contexts/nr_contexts
//! admin/kdamonds/<K>/contexts/<C>/{avail_operations,operations}
//! .../<C>/monitoring_attrs/intervals/{sample_us,aggr_us,update_us}
//! .../<C>/monitoring_attrs/nr_regions/{min,max}
//! .../<C>/targets/nr_targets, targets/<T>/pid_target, targets/<T>/regions/nr_regions
//! .../<C>/schemes/nr_schemes, schemes/<S>/{action,apply_interval_us,target_nid}
//! .../<S>/access_pattern/{sz,nr_accesses,age}/{min,max}
//! .../<S>/quotas/{ms,bytes,reset_interval_ms,effective_bytes}, quotas/weights/*, quotas/goals/nr_goals
//! .../<S>/watermarks/{metric,interval_us,high,mid,low}
//! .../<S>/filters/nr_filters, filters/<F>/{type,matching,memcg_path,addr_start,addr_end,damon_target_idx}
//! .../<S>/stats/{nr_tried,sz_tried,nr_applied,sz_applied,qt_exceeds}
//! .../<S>/tried_regions/total_bytes, tried_regions/<R>/{start,end,nr_accesses,age}
//! ```
//!
//! Rules the driver follows (6.12):
//! - Writing `nr_kdamonds` destroys and rebuilds every kdamond directory and fails with
//!   EBUSY while any kdamond runs (`nr_kdamonds_store` → `damon_sysfs_kdamonds_add_dirs`).
//!   So the driver is usable only when `nr_kdamonds` reads 0 at start: anything else
//!   belongs to another owner and is never touched ([`DamonSysfsError::InUse`]).
//! - Writing a `nr_*` file creates directories `0..N-1` with default values; parameters
//!   are only checked when `state` gets `on` (`damon_sysfs_turn_damon_on`).
//! - `state` takes `on`, `off`, `commit`, `update_schemes_stats`,
//!   `update_schemes_tried_bytes`, `update_schemes_tried_regions`,
//!   `clear_schemes_tried_regions`, ...; `on` on a running kdamond is EBUSY; `off` on a
//!   never-started one and an update on a stopped one are EINVAL; `off` after the kdamond
//!   stopped because its targets exited is EPERM (all seen on 6.12.117). The update write
//!   blocks until the kdamond has filled `tried_regions` in its next scheme-apply pass
//!   (~0.1 s at a 100 ms aggregation interval, measured in the lab).
//! - Tried-region directories are numbered by one counter across all schemes of the
//!   context (scheme 0 gets 0..n0-1, scheme 1 continues at n0, ...; seen on 6.12.117).
//! - A tried region carries no target index, so the driver gives each target its own
//!   `stat` scheme with one `target` filter (`damon_target_idx = i`, `matching = N`: drop
//!   regions of every other target; filters are reject-only before 6.14, and a core-layer
//!   filter runs before `before_damos_apply`, where the tried regions are recorded).
//!
//! All I/O goes through [`SysfsIo`], so tests observe every write ([`Logged`]) and run the
//! driver against a fake 6.12 tree ([`fake::FakeDamonSysfs`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Where the admin tree hangs under `/sys`.
pub const ADMIN_REL: &str = "kernel/mm/damon/admin";

/// The biggest values the pattern files take: `sz` is an unsigned long, `nr_accesses` and
/// `age` unsigned ints (`damon_sysfs_access_pattern`, mm/damon/sysfs-schemes.c 6.12).
const SZ_MAX: u64 = u64::MAX;
const U32_MAX: u32 = u32::MAX;

/// Reads and writes of sysfs files, one value per file. Implemented by [`RealSysfs`], the
/// fake tree of the tests, and the [`Logged`] wrapper that records every write.
pub trait SysfsIo: Send {
    fn read(&mut self, path: &Path) -> io::Result<String>;
    /// One `write(2)` of `value` to an existing file (never creates one).
    fn write(&mut self, path: &Path, value: &str) -> io::Result<()>;
    /// Names of the entries of a directory (unsorted).
    fn list(&mut self, path: &Path) -> io::Result<Vec<String>>;
}

/// The real sysfs: `std::fs`, opening files for writing without create or truncate.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSysfs;

impl SysfsIo for RealSysfs {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }
    fn write(&mut self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        // One write call: sysfs stores take the whole value at once.
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write ({n} of {} bytes)", value.len()),
            ));
        }
        Ok(())
    }
    fn list(&mut self, path: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }
}

/// One recorded write: the path relative to the admin directory, and the value.
pub type WriteLog = Arc<Mutex<Vec<(String, String)>>>;

/// Wraps any [`SysfsIo`] and records each write (successful or not) relative to `base`.
pub struct Logged<I> {
    inner: I,
    base: PathBuf,
    log: WriteLog,
}

impl<I: SysfsIo> Logged<I> {
    pub fn new(inner: I, base: impl Into<PathBuf>) -> Self {
        Self {
            inner,
            base: base.into(),
            log: WriteLog::default(),
        }
    }
    /// A handle on the log that stays valid after the wrapper moved into a driver.
    pub fn log(&self) -> WriteLog {
        self.log.clone()
    }
}

impl<I: SysfsIo> SysfsIo for Logged<I> {
    fn read(&mut self, path: &Path) -> io::Result<String> {
        self.inner.read(path)
    }
    fn write(&mut self, path: &Path, value: &str) -> io::Result<()> {
        let rel = path
            .strip_prefix(&self.base)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        self.log
            .lock()
            .expect("write log lock")
            .push((rel, value.to_owned()));
        self.inner.write(path, value)
    }
    fn list(&mut self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list(path)
    }
}

/// Errors of the driver; each names the file.
#[derive(Debug, Error)]
pub enum DamonSysfsError {
    #[error("{0}: missing (no CONFIG_DAMON_SYSFS, or not a DAMON sysfs tree)")]
    AdminMissing(PathBuf),
    #[error(
        "{path}: kernel DAMON is in use by another owner (nr_kdamonds is {nr}); not touching it"
    )]
    InUse { path: PathBuf, nr: String },
    #[error("{0}: missing file (not the 6.12 DAMON sysfs layout?)")]
    MissingFile(PathBuf),
    #[error("{path}: busy (EBUSY) writing {value:?}")]
    Busy { path: PathBuf, value: String },
    #[error("{path}: writing {value:?}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: reading: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("{path}: no vaddr operations in this kernel (available: {avail:?})")]
    NoVaddr { path: PathBuf, avail: String },
    #[error("{path}: no paddr operations in this kernel (available: {avail:?})")]
    NoPaddr { path: PathBuf, avail: String },
    #[error("no targets given")]
    NoTargets,
}

impl DamonSysfsError {
    /// True for EBUSY (someone else's kdamond, or ours still running).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            DamonSysfsError::Busy { .. } | DamonSysfsError::InUse { .. }
        )
    }
}

/// What the driver configures: intervals in µs and region bounds, as `monitoring_attrs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysfsAttrs {
    pub sample_us: u64,
    pub aggr_us: u64,
    pub update_us: u64,
    pub min_nr_regions: u32,
    pub max_nr_regions: u32,
}

impl From<&crate::attrs::Attrs> for SysfsAttrs {
    fn from(a: &crate::attrs::Attrs) -> Self {
        Self {
            sample_us: a.sample_us,
            aggr_us: a.aggr_us,
            update_us: a.ops_update_us,
            min_nr_regions: a.min_nr_regions,
            max_nr_regions: a.max_nr_regions,
        }
    }
}

/// One region read back from `tried_regions/<R>/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TriedRegion {
    pub start: u64,
    pub end: u64,
    pub nr_accesses: u32,
    pub age: u32,
}

/// What a kdamond monitors: processes by pid (`vaddr`), or physical address ranges as one
/// target (`paddr`; `targets/0/regions/<R>/{start,end}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DamonTargets<'a> {
    Pids(&'a [u32]),
    Phys(&'a [crate::region::AddrRange]),
}

impl DamonTargets<'_> {
    /// The number of DAMON targets (one for physical ranges).
    fn len(&self) -> usize {
        match self {
            DamonTargets::Pids(p) => p.len(),
            DamonTargets::Phys(r) => usize::from(!r.is_empty()),
        }
    }
}

/// Whether our kdamond runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdamondState {
    On,
    Off,
}

fn map_write_err(path: &Path, value: &str, e: io::Error) -> DamonSysfsError {
    match e.raw_os_error() {
        Some(libc::EBUSY) => DamonSysfsError::Busy {
            path: path.to_owned(),
            value: value.to_owned(),
        },
        _ if e.kind() == io::ErrorKind::NotFound => DamonSysfsError::MissingFile(path.to_owned()),
        _ => DamonSysfsError::Write {
            path: path.to_owned(),
            value: value.to_owned(),
            source: e,
        },
    }
}

fn map_read_err(path: &Path, e: io::Error) -> DamonSysfsError {
    if e.kind() == io::ErrorKind::NotFound {
        DamonSysfsError::MissingFile(path.to_owned())
    } else {
        DamonSysfsError::Read {
            path: path.to_owned(),
            source: e,
        }
    }
}

/// One kdamond (`kdamonds/0`) with one `vaddr` context over our targets, created by us and
/// removed again by [`DamonSysfs::stop`] or on drop.
pub struct DamonSysfs {
    io: Box<dyn SysfsIo>,
    admin: PathBuf,
    nr_targets: usize,
    /// We wrote `nr_kdamonds` (so we must write 0 back).
    created: bool,
    /// We wrote `on` and have not seen it stop.
    running: bool,
}

impl std::fmt::Debug for DamonSysfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DamonSysfs")
            .field("admin", &self.admin)
            .field("nr_targets", &self.nr_targets)
            .field("created", &self.created)
            .field("running", &self.running)
            .finish()
    }
}

impl DamonSysfs {
    /// Build the tree for `pids` and turn the kdamond on. Files are written in this order
    /// (parents before children, as usage.rst walks the hierarchy), paths relative to
    /// `admin`: `kdamonds/nr_kdamonds`=1, `kdamonds/0/contexts/nr_contexts`=1,
    /// `.../0/operations`=vaddr (after checking `avail_operations`), the intervals
    /// `sample_us`, `aggr_us`, `update_us`, `nr_regions/min`, `nr_regions/max`,
    /// `targets/nr_targets`, each `targets/<i>/pid_target`, `schemes/nr_schemes`, then per
    /// scheme `action`=stat, `access_pattern/{sz,nr_accesses,age}/{min,max}` (everything),
    /// `filters/nr_filters`=1, `filters/0/{type=target,damon_target_idx=i,matching=N}`, and
    /// finally `kdamonds/0/state`=on. On any error what was created is removed again.
    pub fn start(
        io: Box<dyn SysfsIo>,
        admin: impl Into<PathBuf>,
        pids: &[u32],
        attrs: SysfsAttrs,
    ) -> Result<Self, DamonSysfsError> {
        Self::start_targets(io, admin, DamonTargets::Pids(pids), attrs)
    }

    /// As [`Self::start`], over `targets`: with [`DamonTargets::Phys`] the context's
    /// `operations` is `paddr` and its one target gets `regions/nr_regions` and each
    /// `regions/<R>/start`, `end` instead of a `pid_target`.
    pub fn start_targets(
        io: Box<dyn SysfsIo>,
        admin: impl Into<PathBuf>,
        targets: DamonTargets<'_>,
        attrs: SysfsAttrs,
    ) -> Result<Self, DamonSysfsError> {
        Self::start_with_schemes(io, admin, targets, attrs, &[])
    }

    /// As [`Self::start_targets`], with `extra` acting schemes after the `stat` schemes
    /// (scheme `nr_targets + i` is `extra[i]`; no filters).
    pub fn start_with_schemes(
        io: Box<dyn SysfsIo>,
        admin: impl Into<PathBuf>,
        targets: DamonTargets<'_>,
        attrs: SysfsAttrs,
        extra: &[DamosScheme],
    ) -> Result<Self, DamonSysfsError> {
        if targets.len() == 0 {
            return Err(DamonSysfsError::NoTargets);
        }
        let mut me = Self {
            io,
            admin: admin.into(),
            nr_targets: targets.len(),
            created: false,
            running: false,
        };
        let nr_path = me.admin.join("kdamonds/nr_kdamonds");
        let nr = match me.io.read(&nr_path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DamonSysfsError::AdminMissing(me.admin.clone()))
            }
            Err(e) => return Err(map_read_err(&nr_path, e)),
        };
        if nr.trim() != "0" {
            return Err(DamonSysfsError::InUse {
                path: nr_path,
                nr: nr.trim().to_owned(),
            });
        }
        // From here on, Drop removes what we made if we bail out.
        // On failure (EBUSY: someone turned a kdamond on between our read and this write)
        // the kernel changed nothing, so there is nothing of ours to remove.
        me.write_rel("kdamonds/nr_kdamonds", "1")?;
        me.created = true;
        me.build(targets, attrs, extra)?;
        me.write_rel("kdamonds/0/state", "on")?;
        me.running = true;
        Ok(me)
    }

    fn build(
        &mut self,
        targets: DamonTargets<'_>,
        a: SysfsAttrs,
        extra: &[DamosScheme],
    ) -> Result<(), DamonSysfsError> {
        self.write_rel("kdamonds/0/contexts/nr_contexts", "1")?;
        let ctx = "kdamonds/0/contexts/0";
        let avail_path = self.admin.join(format!("{ctx}/avail_operations"));
        let avail = self
            .io
            .read(&avail_path)
            .map_err(|e| map_read_err(&avail_path, e))?;
        let ops = match targets {
            DamonTargets::Pids(_) => "vaddr",
            DamonTargets::Phys(_) => "paddr",
        };
        if !avail.split_whitespace().any(|o| o == ops) {
            let (path, avail) = (avail_path, avail.trim().to_owned());
            return Err(match targets {
                DamonTargets::Pids(_) => DamonSysfsError::NoVaddr { path, avail },
                DamonTargets::Phys(_) => DamonSysfsError::NoPaddr { path, avail },
            });
        }
        self.write_rel(&format!("{ctx}/operations"), ops)?;
        let ma = format!("{ctx}/monitoring_attrs");
        self.write_rel(
            &format!("{ma}/intervals/sample_us"),
            &a.sample_us.to_string(),
        )?;
        self.write_rel(&format!("{ma}/intervals/aggr_us"), &a.aggr_us.to_string())?;
        self.write_rel(
            &format!("{ma}/intervals/update_us"),
            &a.update_us.to_string(),
        )?;
        self.write_rel(
            &format!("{ma}/nr_regions/min"),
            &a.min_nr_regions.to_string(),
        )?;
        self.write_rel(
            &format!("{ma}/nr_regions/max"),
            &a.max_nr_regions.to_string(),
        )?;
        let n = targets.len();
        self.write_rel(&format!("{ctx}/targets/nr_targets"), &n.to_string())?;
        match targets {
            DamonTargets::Pids(pids) => {
                for (i, pid) in pids.iter().enumerate() {
                    self.write_rel(&format!("{ctx}/targets/{i}/pid_target"), &pid.to_string())?;
                }
            }
            DamonTargets::Phys(ranges) => {
                let rg = format!("{ctx}/targets/0/regions");
                self.write_rel(&format!("{rg}/nr_regions"), &ranges.len().to_string())?;
                for (i, r) in ranges.iter().enumerate() {
                    self.write_rel(&format!("{rg}/{i}/start"), &r.start.to_string())?;
                    self.write_rel(&format!("{rg}/{i}/end"), &r.end.to_string())?;
                }
            }
        }
        let nr_schemes = n + extra.len();
        self.write_rel(
            &format!("{ctx}/schemes/nr_schemes"),
            &nr_schemes.to_string(),
        )?;
        for i in 0..n {
            let s = format!("{ctx}/schemes/{i}");
            self.write_rel(&format!("{s}/action"), "stat")?;
            let ap = format!("{s}/access_pattern");
            self.write_rel(&format!("{ap}/sz/min"), "0")?;
            self.write_rel(&format!("{ap}/sz/max"), &SZ_MAX.to_string())?;
            self.write_rel(&format!("{ap}/nr_accesses/min"), "0")?;
            self.write_rel(&format!("{ap}/nr_accesses/max"), &U32_MAX.to_string())?;
            self.write_rel(&format!("{ap}/age/min"), "0")?;
            self.write_rel(&format!("{ap}/age/max"), &U32_MAX.to_string())?;
            self.write_rel(&format!("{s}/filters/nr_filters"), "1")?;
            self.write_rel(&format!("{s}/filters/0/type"), "target")?;
            self.write_rel(&format!("{s}/filters/0/damon_target_idx"), &i.to_string())?;
            self.write_rel(&format!("{s}/filters/0/matching"), "N")?;
        }
        for (i, d) in extra.iter().enumerate() {
            self.write_scheme(n + i, d)?;
        }
        Ok(())
    }

    fn write_rel(&mut self, rel: &str, value: &str) -> Result<(), DamonSysfsError> {
        let path = self.admin.join(rel);
        self.io
            .write(&path, value)
            .map_err(|e| map_write_err(&path, value, e))
    }

    fn read_rel(&mut self, rel: &str) -> Result<String, DamonSysfsError> {
        let path = self.admin.join(rel);
        self.io
            .read(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| map_read_err(&path, e))
    }

    /// The admin directory this driver works under.
    pub fn admin(&self) -> &Path {
        &self.admin
    }

    /// `kdamonds/0/state`.
    pub fn state(&mut self) -> Result<KdamondState, DamonSysfsError> {
        match self.read_rel("kdamonds/0/state")?.as_str() {
            "on" => Ok(KdamondState::On),
            "off" => Ok(KdamondState::Off),
            other => Err(DamonSysfsError::Parse {
                path: self.admin.join("kdamonds/0/state"),
                content: other.into(),
            }),
        }
    }

    /// The kdamond's pid (`kdamonds/0/pid`), `None` when it is not running (-1).
    pub fn kdamond_pid(&mut self) -> Result<Option<u32>, DamonSysfsError> {
        let s = self.read_rel("kdamonds/0/pid")?;
        let path = self.admin.join("kdamonds/0/pid");
        let v: i64 = s.parse().map_err(|_| DamonSysfsError::Parse {
            path,
            content: s.clone(),
        })?;
        Ok(u32::try_from(v).ok())
    }

    /// Ask the kdamond for its current regions (`update_schemes_tried_regions`, which
    /// blocks until its next scheme-apply pass) and read them back, one list per target in
    /// the order the pids were given, each sorted by address. `Ok(None)` once the kdamond
    /// stopped (all its targets exited).
    pub fn tried_regions(&mut self) -> Result<Option<Vec<Vec<TriedRegion>>>, DamonSysfsError> {
        if !self.running {
            return Ok(None);
        }
        if let Err(e) = self.write_rel("kdamonds/0/state", "update_schemes_tried_regions") {
            // EINVAL/EPERM on a kdamond that stopped by itself: its targets are gone.
            if matches!(&e, DamonSysfsError::Write { .. }) && self.state()? == KdamondState::Off {
                self.running = false;
                return Ok(None);
            }
            return Err(e);
        }
        let mut out = Vec::with_capacity(self.nr_targets);
        for i in 0..self.nr_targets {
            let dir = format!("kdamonds/0/contexts/0/schemes/{i}/tried_regions");
            let dpath = self.admin.join(&dir);
            let names = self.io.list(&dpath).map_err(|e| map_read_err(&dpath, e))?;
            let mut idx: Vec<u64> = names.iter().filter_map(|n| n.parse().ok()).collect();
            idx.sort_unstable();
            let mut regions = Vec::with_capacity(idx.len());
            for r in idx {
                let start = self.read_num(&format!("{dir}/{r}/start"))?;
                let end = self.read_num(&format!("{dir}/{r}/end"))?;
                let nr_accesses = self.read_num(&format!("{dir}/{r}/nr_accesses"))? as u32;
                let age = self.read_num(&format!("{dir}/{r}/age"))? as u32;
                regions.push(TriedRegion {
                    start,
                    end,
                    nr_accesses,
                    age,
                });
            }
            regions.sort_by_key(|r| r.start);
            out.push(regions);
        }
        Ok(Some(out))
    }

    fn read_num(&mut self, rel: &str) -> Result<u64, DamonSysfsError> {
        let s = self.read_rel(rel)?;
        s.parse().map_err(|_| DamonSysfsError::Parse {
            path: self.admin.join(rel),
            content: s,
        })
    }

    /// Stop the kdamond and remove every directory we created; errors are reported (drop
    /// does the same, logging instead).
    pub fn stop(mut self) -> Result<(), DamonSysfsError> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<(), DamonSysfsError> {
        if self.running {
            self.running = false;
            if let Err(e) = self.write_rel("kdamonds/0/state", "off") {
                // Already stopped by itself (targets exited): EINVAL or EPERM, state off.
                if !matches!(self.state(), Ok(KdamondState::Off)) {
                    self.created = false; // can't remove a running kdamond's tree
                    return Err(e);
                }
            }
        }
        if self.created {
            self.created = false;
            // `off` waits for the kthread (damon_stop → kthread_stop), but the sysfs side
            // may take a moment to see it stopped: retry EBUSY briefly.
            let mut tries = 0;
            loop {
                match self.write_rel("kdamonds/nr_kdamonds", "0") {
                    Err(e) if e.is_busy() && tries < 20 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    r => return r,
                }
            }
        }
        Ok(())
    }
}

impl Drop for DamonSysfs {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!("kernel DAMON cleanup under {}: {e}", self.admin.display());
        }
    }
}

mod damos;
pub use damos::{DamosScheme, DamosStats};

#[cfg(any(test, feature = "testkit"))]
pub mod fake;

/// Files of a 6.12 admin tree with one kdamond, context, target, scheme and filter, as
/// `find . -type f | sort` lists them in the lab (Linux 6.12.117). Used by the fake's test
/// and by the lab test that compares it with the real tree.
pub const LAYOUT_6_12: &[&str] = &[
    "kdamonds/0/contexts/0/avail_operations",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/aggr_us",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/sample_us",
    "kdamonds/0/contexts/0/monitoring_attrs/intervals/update_us",
    "kdamonds/0/contexts/0/monitoring_attrs/nr_regions/max",
    "kdamonds/0/contexts/0/monitoring_attrs/nr_regions/min",
    "kdamonds/0/contexts/0/operations",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/age/max",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/age/min",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/nr_accesses/max",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/nr_accesses/min",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/sz/max",
    "kdamonds/0/contexts/0/schemes/0/access_pattern/sz/min",
    "kdamonds/0/contexts/0/schemes/0/action",
    "kdamonds/0/contexts/0/schemes/0/apply_interval_us",
    "kdamonds/0/contexts/0/schemes/0/filters/0/addr_end",
    "kdamonds/0/contexts/0/schemes/0/filters/0/addr_start",
    "kdamonds/0/contexts/0/schemes/0/filters/0/damon_target_idx",
    "kdamonds/0/contexts/0/schemes/0/filters/0/matching",
    "kdamonds/0/contexts/0/schemes/0/filters/0/memcg_path",
    "kdamonds/0/contexts/0/schemes/0/filters/0/type",
    "kdamonds/0/contexts/0/schemes/0/filters/nr_filters",
    "kdamonds/0/contexts/0/schemes/0/quotas/bytes",
    "kdamonds/0/contexts/0/schemes/0/quotas/effective_bytes",
    "kdamonds/0/contexts/0/schemes/0/quotas/goals/nr_goals",
    "kdamonds/0/contexts/0/schemes/0/quotas/ms",
    "kdamonds/0/contexts/0/schemes/0/quotas/reset_interval_ms",
    "kdamonds/0/contexts/0/schemes/0/quotas/weights/age_permil",
    "kdamonds/0/contexts/0/schemes/0/quotas/weights/nr_accesses_permil",
    "kdamonds/0/contexts/0/schemes/0/quotas/weights/sz_permil",
    "kdamonds/0/contexts/0/schemes/0/stats/nr_applied",
    "kdamonds/0/contexts/0/schemes/0/stats/nr_tried",
    "kdamonds/0/contexts/0/schemes/0/stats/qt_exceeds",
    "kdamonds/0/contexts/0/schemes/0/stats/sz_applied",
    "kdamonds/0/contexts/0/schemes/0/stats/sz_tried",
    "kdamonds/0/contexts/0/schemes/0/target_nid",
    "kdamonds/0/contexts/0/schemes/0/tried_regions/total_bytes",
    "kdamonds/0/contexts/0/schemes/0/watermarks/high",
    "kdamonds/0/contexts/0/schemes/0/watermarks/interval_us",
    "kdamonds/0/contexts/0/schemes/0/watermarks/low",
    "kdamonds/0/contexts/0/schemes/0/watermarks/metric",
    "kdamonds/0/contexts/0/schemes/0/watermarks/mid",
    "kdamonds/0/contexts/0/schemes/nr_schemes",
    "kdamonds/0/contexts/0/targets/0/pid_target",
    "kdamonds/0/contexts/0/targets/0/regions/nr_regions",
    "kdamonds/0/contexts/0/targets/nr_targets",
    "kdamonds/0/contexts/nr_contexts",
    "kdamonds/0/pid",
    "kdamonds/0/state",
    "kdamonds/nr_kdamonds",
];

#[cfg(test)]
mod tests;
