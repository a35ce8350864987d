//! A fake DAMON sysfs tree laid out like Linux 6.12's, in a directory of plain files, that
//! acts like the kernel on writes (creates and removes directories for `nr_*`, runs
//! `state` commands, reports EBUSY/EINVAL/ENOENT where 6.12 does), so the driver can be
//! tested without a kernel. Clones share one tree and one write log.

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

fn region_files(dir: &Path) -> io::Result<()> {
    put(&dir.join("start"), "0")?;
    put(&dir.join("end"), "0")
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

/// Write a file whole, atomically (a temporary file renamed over it): a sysfs read never sees
/// a half-written value, and neither may the driver reading the fake from another thread
/// (`fs::write` truncates first: a read in between saw "" and failed a test under load).
fn put(path: &Path, v: &str) -> io::Result<()> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".put~");
    fs::write(&tmp, format!("{v}\n"))?;
    fs::rename(&tmp, path)
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
        // pid first: a reader that sees `off` may remove the kdamond's directory at once,
        // and a write after that would make it again.
        put(&self.admin.join("kdamonds/0/pid"), "-1")?;
        put(&self.admin.join("kdamonds/0/state"), "off")
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
            "nr_regions" => rebuild(parent, num()?, region_files)?,
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
        put(path, v)
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
