//! Other proactive reclaimers on the machine, READ ONLY: the kernel's own DAMON (kdamonds
//! started through `/sys/kernel/mm/damon/admin`, the DAMON_RECLAIM and DAMON_LRU_SORT
//! modules) and user-space reclaimers known by name (senpai, oomd). `madvd run`, `demo` and
//! `agent` say once what they found and what it means for their figures.
//!
//! Nothing here writes: it only reads `<sys>/kernel/mm/damon/admin/kdamonds/…`,
//! `<sys>/module/{damon_reclaim,damon_lru_sort}/parameters/enabled` and `<proc>/*/comm`
//! (and `cmdline` for scripts run by an interpreter), all under a [`SysRoot`].
//!
//! What cannot be seen: a process that writes `memory.reclaim` of a cgroup (cgroup v2,
//! Linux 5.19+) leaves no trace in sysfs; only the names below are recognised.

use crate::sysroot::SysRoot;
use std::fmt;
use std::fs;

/// Relative to `<sys>`.
const KDAMONDS_REL: &str = "kernel/mm/damon/admin/kdamonds";
/// The kernel's DAMON-based modules that reclaim or reorder memory by themselves.
const MODULES: [&str; 2] = ["damon_reclaim", "damon_lru_sort"];
/// User-space proactive reclaimers, by `comm` (or the script name in `cmdline`).
const RECLAIMERS: [&str; 3] = ["senpai", "oomd", "systemd-oomd"];

/// One kdamond that is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kdamond {
    pub index: u32,
    /// Its kernel thread's pid (`pid`), when readable.
    pub pid: Option<u32>,
    /// Each context's operations set (`vaddr`, `fvaddr`, `paddr`).
    pub operations: Vec<String>,
    /// The actions of its schemes (`pageout`, `lru_prio`, `stat`, …).
    pub actions: Vec<String>,
}

/// What else on the machine reclaims or reorders memory proactively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coexistence {
    /// `nr_kdamonds` (kdamonds created, on or off).
    pub nr_kdamonds: u32,
    /// The kdamonds that are on.
    pub kdamonds: Vec<Kdamond>,
    /// The kernel modules enabled (`damon_reclaim`, `damon_lru_sort`).
    pub modules: Vec<String>,
    /// User-space reclaimers: (pid, name).
    pub reclaimers: Vec<(u32, String)>,
}

impl Coexistence {
    /// Look (read only). Unreadable files count as "not there".
    pub fn detect(root: &SysRoot) -> Self {
        let kd = root.sys_file(KDAMONDS_REL);
        let read = |p: std::path::PathBuf| fs::read_to_string(p).ok();
        let nr_kdamonds = read(kd.join("nr_kdamonds"))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut kdamonds = Vec::new();
        for i in 0..nr_kdamonds.min(1024) {
            let d = kd.join(i.to_string());
            if read(d.join("state")).as_deref().map(str::trim) != Some("on") {
                continue;
            }
            let nr_ctx: u32 = read(d.join("contexts/nr_contexts"))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let mut operations = Vec::new();
            let mut actions = Vec::new();
            for c in 0..nr_ctx.min(64) {
                let cd = d.join(format!("contexts/{c}"));
                if let Some(o) = read(cd.join("operations")) {
                    operations.push(o.trim().to_string());
                }
                let nr_s: u32 = read(cd.join("schemes/nr_schemes"))
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                for s in 0..nr_s.min(1024) {
                    if let Some(a) = read(cd.join(format!("schemes/{s}/action"))) {
                        let a = a.trim().to_string();
                        if !actions.contains(&a) {
                            actions.push(a);
                        }
                    }
                }
            }
            kdamonds.push(Kdamond {
                index: i,
                pid: read(d.join("pid")).and_then(|s| s.trim().parse().ok()),
                operations,
                actions,
            });
        }
        let modules = MODULES
            .iter()
            .filter(|m| {
                read(root.sys_file(&format!("module/{m}/parameters/enabled")))
                    .is_some_and(|v| matches!(v.trim(), "Y" | "y" | "1"))
            })
            .map(|m| m.to_string())
            .collect();
        Coexistence {
            nr_kdamonds,
            kdamonds,
            modules,
            reclaimers: find_reclaimers(root),
        }
    }

    /// Nothing else reclaims proactively (as far as can be seen).
    pub fn is_empty(&self) -> bool {
        self.kdamonds.is_empty() && self.modules.is_empty() && self.reclaimers.is_empty()
    }

    /// True when something else may page out or demote the memory madvd works on.
    pub fn kernel_damon(&self) -> bool {
        !self.kdamonds.is_empty() || !self.modules.is_empty()
    }
}

/// `comm` is one of [`RECLAIMERS`], or an interpreter runs a script so named.
fn find_reclaimers(root: &SysRoot) -> Vec<(u32, String)> {
    let Ok(dir) = fs::read_dir(&root.proc) else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(comm) = fs::read_to_string(root.pid_file(pid, "comm")) else {
            continue;
        };
        let comm = comm.trim();
        let name = if RECLAIMERS.contains(&comm) {
            Some(comm.to_string())
        } else if comm.starts_with("python") {
            fs::read(root.pid_file(pid, "cmdline")).ok().and_then(|c| {
                c.split(|b| *b == 0)
                    .filter_map(|a| std::str::from_utf8(a).ok())
                    .filter_map(|a| a.rsplit('/').next())
                    .find_map(|a| {
                        let stem = a.strip_suffix(".py").unwrap_or(a);
                        RECLAIMERS.contains(&stem).then(|| stem.to_string())
                    })
            })
        } else {
            None
        };
        if let Some(n) = name {
            out.push((pid, n));
        }
    }
    out.sort();
    out
}

impl fmt::Display for Coexistence {
    /// One paragraph: what runs, and what it means for madvd's figures.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut what = Vec::new();
        for k in &self.kdamonds {
            let pid = k.pid.map(|p| format!(", pid {p}")).unwrap_or_default();
            let acts = if k.actions.is_empty() {
                "no schemes".to_string()
            } else {
                format!("schemes: {}", k.actions.join(", "))
            };
            what.push(format!(
                "kernel DAMON kdamond {} ({}{pid}; {acts})",
                k.index,
                if k.operations.is_empty() {
                    "no context".to_string()
                } else {
                    k.operations.join(", ")
                }
            ));
        }
        for m in &self.modules {
            what.push(format!("{} (enabled)", m.to_uppercase()));
        }
        for (pid, n) in &self.reclaimers {
            what.push(format!("{n} (pid {pid})"));
        }
        if what.is_empty() {
            return f.write_str("no other proactive reclaimer seen");
        }
        write!(
            f,
            "another proactive reclaimer is active on this machine: {}. It may page out, \
             deactivate or reorder the same memory: memory-saved figures (swap, RSS, \
             MemAvailable) include its work, and madvd's advised bytes do not; saved/oracle \
             can read higher and advised/saved lower than madvd alone would get",
            what.join("; ")
        )?;
        if self.kernel_damon() {
            f.write_str(
                "; kernel DAMON also clears Accessed bits, so access checks that read them \
                 (page_idle, smaps Referenced) see fewer accesses",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(root: &std::path::Path, rel: &str, v: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, v).unwrap();
    }

    #[test]
    fn nothing_in_an_empty_tree() {
        let d = tempfile::tempdir().unwrap();
        let c = Coexistence::detect(&SysRoot::under(d.path()));
        assert!(c.is_empty());
        assert_eq!(c.to_string(), "no other proactive reclaimer seen");
    }

    #[test]
    fn finds_kdamonds_modules_and_reclaimers() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let kd = "sys/kernel/mm/damon/admin/kdamonds";
        w(r, &format!("{kd}/nr_kdamonds"), "2\n");
        w(r, &format!("{kd}/0/state"), "on\n");
        w(r, &format!("{kd}/0/pid"), "77\n");
        w(r, &format!("{kd}/0/contexts/nr_contexts"), "1\n");
        w(r, &format!("{kd}/0/contexts/0/operations"), "paddr\n");
        w(r, &format!("{kd}/0/contexts/0/schemes/nr_schemes"), "2\n");
        w(
            r,
            &format!("{kd}/0/contexts/0/schemes/0/action"),
            "pageout\n",
        );
        w(
            r,
            &format!("{kd}/0/contexts/0/schemes/1/action"),
            "pageout\n",
        );
        // Off: not counted.
        w(r, &format!("{kd}/1/state"), "off\n");
        w(r, "sys/module/damon_reclaim/parameters/enabled", "Y\n");
        w(r, "sys/module/damon_lru_sort/parameters/enabled", "N\n");
        w(r, "proc/10/comm", "senpai\n");
        w(r, "proc/11/comm", "python3\n");
        w(r, "proc/11/cmdline", "python3\0/opt/senpai.py\0--min\0");
        w(r, "proc/12/comm", "bash\n");
        w(r, "proc/self/comm", "oomd\n");
        let c = Coexistence::detect(&SysRoot::under(r));
        assert_eq!(c.nr_kdamonds, 2);
        assert_eq!(
            c.kdamonds,
            [Kdamond {
                index: 0,
                pid: Some(77),
                operations: vec!["paddr".into()],
                actions: vec!["pageout".into()],
            }]
        );
        assert_eq!(c.modules, ["damon_reclaim"]);
        assert_eq!(
            c.reclaimers,
            [(10, "senpai".to_string()), (11, "senpai".to_string())]
        );
        assert!(c.kernel_damon() && !c.is_empty());
        let s = c.to_string();
        assert!(
            s.contains("kdamond 0 (paddr, pid 77; schemes: pageout)"),
            "{s}"
        );
        assert!(s.contains("DAMON_RECLAIM (enabled)"), "{s}");
        assert!(s.contains("senpai (pid 11)"), "{s}");
        assert!(s.contains("Accessed bits"), "{s}");
    }

    #[test]
    fn a_user_space_reclaimer_alone_says_nothing_about_accessed_bits() {
        let d = tempfile::tempdir().unwrap();
        w(d.path(), "proc/42/comm", "oomd\n");
        let c = Coexistence::detect(&SysRoot::under(d.path()));
        assert_eq!(c.reclaimers, [(42, "oomd".to_string())]);
        assert!(!c.kernel_damon());
        assert!(!c.to_string().contains("Accessed"));
    }
}
