//! The kernel's DAMON sysfs interface (`/sys/kernel/mm/damon/admin`), driven for `vaddr`
//! monitoring of our own targets, with the regions read back through a `stat` scheme's
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
        if pids.is_empty() {
            return Err(DamonSysfsError::NoTargets);
        }
        let mut me = Self {
            io,
            admin: admin.into(),
            nr_targets: pids.len(),
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
        me.build(pids, attrs)?;
        me.write_rel("kdamonds/0/state", "on")?;
        me.running = true;
        Ok(me)
    }

    fn build(&mut self, pids: &[u32], a: SysfsAttrs) -> Result<(), DamonSysfsError> {
        self.write_rel("kdamonds/0/contexts/nr_contexts", "1")?;
        let ctx = "kdamonds/0/contexts/0";
        let avail_path = self.admin.join(format!("{ctx}/avail_operations"));
        let avail = self
            .io
            .read(&avail_path)
            .map_err(|e| map_read_err(&avail_path, e))?;
        if !avail.split_whitespace().any(|o| o == "vaddr") {
            return Err(DamonSysfsError::NoVaddr {
                path: avail_path,
                avail: avail.trim().to_owned(),
            });
        }
        self.write_rel(&format!("{ctx}/operations"), "vaddr")?;
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
        self.write_rel(
            &format!("{ctx}/targets/nr_targets"),
            &pids.len().to_string(),
        )?;
        for (i, pid) in pids.iter().enumerate() {
            self.write_rel(&format!("{ctx}/targets/{i}/pid_target"), &pid.to_string())?;
        }
        self.write_rel(
            &format!("{ctx}/schemes/nr_schemes"),
            &pids.len().to_string(),
        )?;
        for i in 0..pids.len() {
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

/// A fake DAMON sysfs tree laid out like Linux 6.12's, in a directory of plain files, that
/// acts like the kernel on writes (creates and removes directories for `nr_*`, runs
/// `state` commands, reports EBUSY/EINVAL/ENOENT where 6.12 does), so the driver can be
/// tested without a kernel. Clones share one tree and one write log.
#[cfg(any(test, feature = "testkit"))]
pub mod fake {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    /// An injected failure: the next write to `rel` fails with `errno`.
    #[derive(Clone, Debug)]
    struct Inject {
        rel: String,
        errno: i32,
    }

    #[derive(Default)]
    struct State {
        log: Vec<(String, String)>,
        injects: Vec<Inject>,
        /// Regions the "kdamond" reports per target index.
        regions: HashMap<usize, Vec<TriedRegion>>,
    }

    /// See the module doc. `admin()` is the admin directory to hand the driver.
    #[derive(Clone)]
    pub struct FakeDamonSysfs {
        admin: PathBuf,
        st: Arc<Mutex<State>>,
    }

    /// Defaults of a new kdamond directory (6.12.117, read in the lab).
    fn kdamond_files(dir: &Path) -> io::Result<()> {
        put(&dir.join("state"), "off")?;
        put(&dir.join("pid"), "-1")?;
        put(&dir.join("contexts/nr_contexts"), "0")
    }

    fn context_files(dir: &Path) -> io::Result<()> {
        put(&dir.join("avail_operations"), "vaddr fvaddr paddr")?;
        put(&dir.join("operations"), "vaddr")?;
        put(&dir.join("monitoring_attrs/intervals/sample_us"), "5000")?;
        put(&dir.join("monitoring_attrs/intervals/aggr_us"), "100000")?;
        put(
            &dir.join("monitoring_attrs/intervals/update_us"),
            "60000000",
        )?;
        put(&dir.join("monitoring_attrs/nr_regions/min"), "10")?;
        put(&dir.join("monitoring_attrs/nr_regions/max"), "1000")?;
        put(&dir.join("targets/nr_targets"), "0")?;
        put(&dir.join("schemes/nr_schemes"), "0")
    }

    fn target_files(dir: &Path) -> io::Result<()> {
        put(&dir.join("pid_target"), "0")?;
        put(&dir.join("regions/nr_regions"), "0")
    }

    fn scheme_files(dir: &Path) -> io::Result<()> {
        for k in ["age", "nr_accesses", "sz"] {
            put(&dir.join(format!("access_pattern/{k}/min")), "0")?;
            put(&dir.join(format!("access_pattern/{k}/max")), "0")?;
        }
        put(&dir.join("action"), "stat")?;
        put(&dir.join("apply_interval_us"), "0")?;
        put(&dir.join("filters/nr_filters"), "0")?;
        for f in ["bytes", "effective_bytes", "ms", "reset_interval_ms"] {
            put(&dir.join(format!("quotas/{f}")), "0")?;
        }
        put(&dir.join("quotas/goals/nr_goals"), "0")?;
        for w in ["age_permil", "nr_accesses_permil", "sz_permil"] {
            put(&dir.join(format!("quotas/weights/{w}")), "0")?;
        }
        for s in [
            "nr_applied",
            "nr_tried",
            "qt_exceeds",
            "sz_applied",
            "sz_tried",
        ] {
            put(&dir.join(format!("stats/{s}")), "0")?;
        }
        put(&dir.join("target_nid"), "-1")?;
        put(&dir.join("tried_regions/total_bytes"), "0")?;
        for w in ["high", "interval_us", "low", "mid"] {
            put(&dir.join(format!("watermarks/{w}")), "0")?;
        }
        put(&dir.join("watermarks/metric"), "none")
    }

    fn filter_files(dir: &Path) -> io::Result<()> {
        put(&dir.join("addr_end"), "0")?;
        put(&dir.join("addr_start"), "0")?;
        put(&dir.join("damon_target_idx"), "0")?;
        put(&dir.join("matching"), "N")?;
        put(&dir.join("memcg_path"), "")?;
        put(&dir.join("type"), "anon")
    }

    fn put(path: &Path, v: &str) -> io::Result<()> {
        if let Some(p) = path.parent() {
            fs::create_dir_all(p)?;
        }
        fs::write(path, format!("{v}\n"))
    }

    fn errno(e: i32) -> io::Error {
        io::Error::from_raw_os_error(e)
    }

    /// Replace the numbered subdirectories of `dir` with `0..n`, each filled by `fill`.
    fn rebuild(dir: &Path, n: usize, fill: fn(&Path) -> io::Result<()>) -> io::Result<()> {
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().parse::<u64>().is_ok() {
                fs::remove_dir_all(e.path())?;
            }
        }
        for i in 0..n {
            fill(&dir.join(i.to_string()))?;
        }
        Ok(())
    }

    impl FakeDamonSysfs {
        /// A fresh tree under `root/sys/kernel/mm/damon/admin` with `nr_kdamonds` 0.
        pub fn new(root: &Path) -> io::Result<Self> {
            let admin = root.join("sys").join(ADMIN_REL);
            put(&admin.join("kdamonds/nr_kdamonds"), "0")?;
            Ok(Self {
                admin,
                st: Arc::default(),
            })
        }

        pub fn admin(&self) -> PathBuf {
            self.admin.clone()
        }

        /// Every write so far: (path relative to admin, value).
        pub fn writes(&self) -> Vec<(String, String)> {
            self.st.lock().unwrap().log.clone()
        }

        /// The next write to `rel` (relative to admin) fails with `errno`.
        pub fn fail_next_write(&self, rel: &str, errno: i32) {
            self.st.lock().unwrap().injects.push(Inject {
                rel: rel.to_owned(),
                errno,
            });
        }

        /// The regions the kdamond will report for target `idx`.
        pub fn set_regions(&self, idx: usize, regions: Vec<TriedRegion>) {
            self.st.lock().unwrap().regions.insert(idx, regions);
        }

        /// Another owner's kdamond: `nr_kdamonds` N, kdamond 0 running.
        pub fn occupy(&self, n: usize) -> io::Result<()> {
            let kd = self.admin.join("kdamonds");
            rebuild(&kd, n, kdamond_files)?;
            put(&kd.join("nr_kdamonds"), &n.to_string())?;
            put(&kd.join("0/state"), "on")
        }

        /// The kdamond stops by itself, as when every target exited.
        pub fn kdamond_exits(&self) -> io::Result<()> {
            put(&self.admin.join("kdamonds/0/state"), "off")?;
            put(&self.admin.join("kdamonds/0/pid"), "-1")
        }

        /// Every file under admin, relative, sorted (to compare with a real tree listing).
        pub fn files(&self) -> Vec<String> {
            fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
                for e in fs::read_dir(d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(base, &p, out);
                    } else {
                        out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                    }
                }
            }
            let mut out = Vec::new();
            walk(&self.admin, &self.admin, &mut out);
            out.sort();
            out
        }

        fn any_running(&self) -> bool {
            let kd = self.admin.join("kdamonds");
            fs::read_dir(&kd).into_iter().flatten().flatten().any(|e| {
                fs::read_to_string(e.path().join("state"))
                    .map(|s| s.trim() == "on")
                    .unwrap_or(false)
            })
        }

        fn apply(&self, path: &Path, value: &str) -> io::Result<()> {
            let v = value.trim();
            let num = || v.parse::<usize>().map_err(|_| errno(libc::EINVAL));
            let parent = path.parent().expect("admin file has a parent");
            let name = path.file_name().unwrap().to_string_lossy();
            match name.as_ref() {
                "nr_kdamonds" => {
                    // nr_kdamonds_store: EBUSY while any kdamond runs (sysfs.c 6.12).
                    if self.any_running() {
                        return Err(errno(libc::EBUSY));
                    }
                    rebuild(parent, num()?, kdamond_files)?;
                }
                "nr_contexts" => {
                    let n = num()?;
                    if n > 1 {
                        return Err(errno(libc::EINVAL)); // one context per kdamond in 6.12
                    }
                    rebuild(parent, n, context_files)?;
                }
                "nr_targets" => rebuild(parent, num()?, target_files)?,
                "nr_schemes" => rebuild(parent, num()?, scheme_files)?,
                "nr_filters" => rebuild(parent, num()?, filter_files)?,
                "state" => return self.state_cmd(parent, v),
                "operations" if !["vaddr", "fvaddr", "paddr"].contains(&v) => {
                    return Err(errno(libc::EINVAL))
                }
                "matching" if !["Y", "N", "y", "n", "1", "0"].contains(&v) => {
                    return Err(errno(libc::EINVAL))
                }
                _ => {}
            }
            fs::write(path, format!("{v}\n"))
        }

        fn state_cmd(&self, kd: &Path, cmd: &str) -> io::Result<()> {
            let running = fs::read_to_string(kd.join("state"))?.trim() == "on";
            match cmd {
                "on" => {
                    if running {
                        return Err(errno(libc::EBUSY));
                    }
                    let ctx = kd.join("contexts/0");
                    if !ctx.exists() {
                        return Err(errno(libc::EINVAL));
                    }
                    put(&kd.join("state"), "on")?;
                    put(&kd.join("pid"), "4242")
                }
                "off" => {
                    if !running {
                        return Err(errno(libc::EINVAL));
                    }
                    put(&kd.join("state"), "off")?;
                    put(&kd.join("pid"), "-1")
                }
                "update_schemes_tried_regions" => {
                    if !running {
                        return Err(errno(libc::EINVAL));
                    }
                    self.fill_tried(&kd.join("contexts/0"))
                }
                "clear_schemes_tried_regions" => {
                    if !running {
                        return Err(errno(libc::EINVAL));
                    }
                    let schemes = kd.join("contexts/0/schemes");
                    let n: usize = fs::read_to_string(schemes.join("nr_schemes"))?
                        .trim()
                        .parse()
                        .unwrap_or(0);
                    for s in 0..n {
                        rebuild(&schemes.join(format!("{s}/tried_regions")), 0, |_| Ok(()))?;
                    }
                    Ok(())
                }
                "commit" | "update_schemes_stats" | "update_schemes_tried_bytes" => {
                    if running {
                        Ok(())
                    } else {
                        Err(errno(libc::EINVAL))
                    }
                }
                _ => Err(errno(libc::EINVAL)),
            }
        }

        /// Fill each scheme's tried_regions with the regions of the target its `target`
        /// filter keeps, numbering the directories with one counter across schemes (6.12).
        fn fill_tried(&self, ctx: &Path) -> io::Result<()> {
            let st = self.st.lock().unwrap();
            let schemes = ctx.join("schemes");
            let n: usize = fs::read_to_string(schemes.join("nr_schemes"))?
                .trim()
                .parse()
                .unwrap_or(0);
            let mut counter = 0usize;
            for s in 0..n {
                let sd = schemes.join(s.to_string());
                let tr = sd.join("tried_regions");
                rebuild(&tr, 0, |_| Ok(()))?;
                let keep_idx = match fs::read_to_string(sd.join("filters/nr_filters"))?.trim() {
                    "0" => None,
                    _ => Some(
                        fs::read_to_string(sd.join("filters/0/damon_target_idx"))?
                            .trim()
                            .parse::<usize>()
                            .unwrap_or(0),
                    ),
                };
                let mut total = 0u64;
                let mut idxs: Vec<usize> = st.regions.keys().copied().collect();
                idxs.sort_unstable();
                for t in idxs {
                    if keep_idx.is_some_and(|k| k != t) {
                        continue;
                    }
                    for r in &st.regions[&t] {
                        let d = tr.join(counter.to_string());
                        counter += 1;
                        put(&d.join("start"), &r.start.to_string())?;
                        put(&d.join("end"), &r.end.to_string())?;
                        put(&d.join("nr_accesses"), &r.nr_accesses.to_string())?;
                        put(&d.join("age"), &r.age.to_string())?;
                        total += r.end - r.start;
                    }
                }
                put(&tr.join("total_bytes"), &total.to_string())?;
            }
            Ok(())
        }
    }

    impl SysfsIo for FakeDamonSysfs {
        fn read(&mut self, path: &Path) -> io::Result<String> {
            fs::read_to_string(path)
        }
        fn write(&mut self, path: &Path, value: &str) -> io::Result<()> {
            let rel = path
                .strip_prefix(&self.admin)
                .unwrap_or(path)
                .to_string_lossy()
                .into_owned();
            {
                let mut st = self.st.lock().unwrap();
                st.log.push((rel.clone(), value.to_owned()));
                if let Some(i) = st.injects.iter().position(|j| j.rel == rel) {
                    let j = st.injects.remove(i);
                    return Err(errno(j.errno));
                }
            }
            if !path.is_file() {
                return Err(errno(libc::ENOENT));
            }
            self.apply(path, value)
        }
        fn list(&mut self, path: &Path) -> io::Result<Vec<String>> {
            fs::read_dir(path)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        }
    }
}

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
mod tests {
    use super::fake::FakeDamonSysfs;
    use super::*;

    const ATTRS: SysfsAttrs = SysfsAttrs {
        sample_us: 5000,
        aggr_us: 100_000,
        update_us: 1_000_000,
        min_nr_regions: 10,
        max_nr_regions: 1000,
    };

    fn w(p: &str, v: &str) -> (String, String) {
        (p.to_owned(), v.to_owned())
    }

    /// The exact writes for two targets, in order.
    fn expected_start_writes(pids: &[u32]) -> Vec<(String, String)> {
        let c = "kdamonds/0/contexts/0";
        let mut v = vec![
            w("kdamonds/nr_kdamonds", "1"),
            w("kdamonds/0/contexts/nr_contexts", "1"),
            w(&format!("{c}/operations"), "vaddr"),
            w(&format!("{c}/monitoring_attrs/intervals/sample_us"), "5000"),
            w(&format!("{c}/monitoring_attrs/intervals/aggr_us"), "100000"),
            w(
                &format!("{c}/monitoring_attrs/intervals/update_us"),
                "1000000",
            ),
            w(&format!("{c}/monitoring_attrs/nr_regions/min"), "10"),
            w(&format!("{c}/monitoring_attrs/nr_regions/max"), "1000"),
            w(&format!("{c}/targets/nr_targets"), &pids.len().to_string()),
        ];
        for (i, p) in pids.iter().enumerate() {
            v.push(w(&format!("{c}/targets/{i}/pid_target"), &p.to_string()));
        }
        v.push(w(
            &format!("{c}/schemes/nr_schemes"),
            &pids.len().to_string(),
        ));
        for i in 0..pids.len() {
            let s = format!("{c}/schemes/{i}");
            v.extend([
                w(&format!("{s}/action"), "stat"),
                w(&format!("{s}/access_pattern/sz/min"), "0"),
                w(
                    &format!("{s}/access_pattern/sz/max"),
                    "18446744073709551615",
                ),
                w(&format!("{s}/access_pattern/nr_accesses/min"), "0"),
                w(&format!("{s}/access_pattern/nr_accesses/max"), "4294967295"),
                w(&format!("{s}/access_pattern/age/min"), "0"),
                w(&format!("{s}/access_pattern/age/max"), "4294967295"),
                w(&format!("{s}/filters/nr_filters"), "1"),
                w(&format!("{s}/filters/0/type"), "target"),
                w(&format!("{s}/filters/0/damon_target_idx"), &i.to_string()),
                w(&format!("{s}/filters/0/matching"), "N"),
            ]);
        }
        v.push(w("kdamonds/0/state", "on"));
        v
    }

    fn start(fake: &FakeDamonSysfs, pids: &[u32]) -> Result<DamonSysfs, DamonSysfsError> {
        DamonSysfs::start(Box::new(fake.clone()), fake.admin(), pids, ATTRS)
    }

    #[test]
    fn writes_the_exact_files_in_order_and_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        let mut d = start(&fake, &[100, 200]).unwrap();
        assert_eq!(fake.writes(), expected_start_writes(&[100, 200]));
        assert_eq!(d.state().unwrap(), KdamondState::On);
        assert_eq!(d.kdamond_pid().unwrap(), Some(4242));
        d.stop().unwrap();
        let mut all = expected_start_writes(&[100, 200]);
        all.extend([w("kdamonds/0/state", "off"), w("kdamonds/nr_kdamonds", "0")]);
        assert_eq!(fake.writes(), all);
        assert_eq!(fake.files(), before, "everything created is removed");
    }

    #[test]
    fn reads_tried_regions_back_per_target_across_the_shared_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let r = |s: u64, e: u64, n: u32, a: u32| TriedRegion {
            start: s,
            end: e,
            nr_accesses: n,
            age: a,
        };
        // 11 regions for target 0 so target 1's directories are numbered from 11 on, and
        // "10" sorts before "2" as a string: the driver must sort numerically.
        let t0: Vec<_> = (0..11u64)
            .map(|i| r(0x1000 * (i + 1), 0x1000 * (i + 2), i as u32, 1))
            .collect();
        fake.set_regions(0, t0.clone());
        fake.set_regions(1, vec![r(0x7000_0000, 0x7000_4000, 20, 3)]);
        let mut d = start(&fake, &[100, 200]).unwrap();
        let got = d.tried_regions().unwrap().unwrap();
        assert_eq!(got, vec![t0, vec![r(0x7000_0000, 0x7000_4000, 20, 3)]]);
        assert!(dir
            .path()
            .join("sys")
            .join(ADMIN_REL)
            .join("kdamonds/0/contexts/0/schemes/1/tried_regions/11")
            .is_dir());
        assert_eq!(
            fake.writes().last().unwrap(),
            &w("kdamonds/0/state", "update_schemes_tried_regions")
        );
    }

    #[test]
    fn kdamond_that_stopped_by_itself_gives_none_and_still_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        let mut d = start(&fake, &[100]).unwrap();
        fake.kdamond_exits().unwrap();
        assert_eq!(d.tried_regions().unwrap(), None);
        drop(d);
        assert_eq!(
            fake.writes().last().unwrap(),
            &w("kdamonds/nr_kdamonds", "0")
        );
        assert_eq!(fake.files(), before);
    }

    #[test]
    fn busy_kdamonds_are_another_owners_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        fake.occupy(1).unwrap();
        let before = fake.files();
        let e = start(&fake, &[100]).unwrap_err();
        assert!(
            matches!(e, DamonSysfsError::InUse { ref nr, .. } if nr == "1"),
            "{e}"
        );
        assert!(e.to_string().contains("in use by another owner"), "{e}");
        assert!(
            fake.writes().is_empty(),
            "nothing written: {:?}",
            fake.writes()
        );
        assert_eq!(fake.files(), before);
    }

    #[test]
    fn missing_admin_and_missing_file_are_reported_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let e = DamonSysfs::start(Box::new(RealSysfs), dir.path().join("nope"), &[1], ATTRS)
            .unwrap_err();
        assert!(matches!(e, DamonSysfsError::AdminMissing(_)), "{e}");

        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        // An older kernel without the filters' damon_target_idx file, say.
        fake.fail_next_write(
            "kdamonds/0/contexts/0/schemes/0/filters/0/damon_target_idx",
            libc::ENOENT,
        );
        let e = start(&fake, &[100]).unwrap_err();
        match &e {
            DamonSysfsError::MissingFile(p) => {
                assert!(p.ends_with("filters/0/damon_target_idx"), "{e}")
            }
            other => panic!("wrong error {other}"),
        }
        assert_eq!(
            fake.writes().last().unwrap(),
            &w("kdamonds/nr_kdamonds", "0")
        );
        assert_eq!(fake.files(), before, "everything created is removed");
    }

    #[test]
    fn ebusy_on_state_is_reported_and_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        fake.fail_next_write("kdamonds/0/state", libc::EBUSY);
        let e = start(&fake, &[100]).unwrap_err();
        assert!(
            matches!(&e, DamonSysfsError::Busy { path, value } if path.ends_with("kdamonds/0/state") && value == "on"),
            "{e}"
        );
        assert!(e.to_string().contains("EBUSY"), "{e}");
        let writes = fake.writes();
        // The failed `on` was not taken as running: no `off`, straight to removal.
        assert_eq!(
            &writes[writes.len() - 2..],
            &[w("kdamonds/0/state", "on"), w("kdamonds/nr_kdamonds", "0")]
        );
        assert_eq!(fake.files(), before);
    }

    #[test]
    fn ebusy_on_nr_kdamonds_at_start_writes_nothing_more() {
        // A kdamond turned on by someone else between our read and our write.
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        fake.fail_next_write("kdamonds/nr_kdamonds", libc::EBUSY);
        let e = start(&fake, &[100]).unwrap_err();
        assert!(e.is_busy(), "{e}");
        assert_eq!(fake.writes(), vec![w("kdamonds/nr_kdamonds", "1")]);
    }

    #[test]
    fn no_vaddr_ops_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let before = fake.files();
        struct PaddrOnly(FakeDamonSysfs);
        impl SysfsIo for PaddrOnly {
            fn read(&mut self, p: &Path) -> io::Result<String> {
                if p.ends_with("avail_operations") {
                    return Ok("paddr\n".into());
                }
                self.0.read(p)
            }
            fn write(&mut self, p: &Path, v: &str) -> io::Result<()> {
                self.0.write(p, v)
            }
            fn list(&mut self, p: &Path) -> io::Result<Vec<String>> {
                self.0.list(p)
            }
        }
        let e = DamonSysfs::start(Box::new(PaddrOnly(fake.clone())), fake.admin(), &[1], ATTRS)
            .unwrap_err();
        assert!(matches!(e, DamonSysfsError::NoVaddr { .. }), "{e}");
        assert_eq!(fake.files(), before);
    }

    #[test]
    fn logged_wrapper_records_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let logged = Logged::new(fake.clone(), fake.admin());
        let log = logged.log();
        let d = DamonSysfs::start(Box::new(logged), fake.admin(), &[7], ATTRS).unwrap();
        drop(d);
        assert_eq!(*log.lock().unwrap(), fake.writes());
    }

    #[test]
    fn the_fake_tree_has_the_6_12_layout() {
        // Listing taken in the lab (6.12.117) after nr_kdamonds=1, nr_contexts=1,
        // nr_targets=1, nr_schemes=1, nr_filters=1 (see tests/lab_ops.rs for the live check).
        let dir = tempfile::tempdir().unwrap();
        let mut fake = FakeDamonSysfs::new(dir.path()).unwrap();
        let a = fake.admin();
        for (f, v) in [
            ("kdamonds/nr_kdamonds", "1"),
            ("kdamonds/0/contexts/nr_contexts", "1"),
            ("kdamonds/0/contexts/0/targets/nr_targets", "1"),
            ("kdamonds/0/contexts/0/schemes/nr_schemes", "1"),
            ("kdamonds/0/contexts/0/schemes/0/filters/nr_filters", "1"),
        ] {
            fake.write(&a.join(f), v).unwrap();
        }
        assert_eq!(
            fake.files(),
            LAYOUT_6_12
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        );
    }
}
