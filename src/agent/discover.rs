//! Target discovery: which processes each group's selector matches now. Every path hangs off
//! a [`SysRoot`] (a cgroup path under `/sys/` is re-rooted at `root.sys`), so the tests run
//! against a fixture tree with fake `/proc/PID/comm` files and `cgroup.procs`.
//!
//! A rescan reads `/proc` once ([`Scan`] caches the pid list, comm names and exe links for
//! every selector of that rescan). Discovery only lists candidates: opening them
//! (`Process::open`, which refuses madvd itself, pid 1 and kernel threads) is the agent's.
//!
//! A group with `children: true` also takes the descendants of what its selector matched
//! ([`Found::add_descendants`], through `engine::proctree`): each with the start time it was
//! found with, which the agent checks again through the pidfd when it opens the process.

use super::config::Selector;
use engine::proctree::{read_identity, Family, ProcId};
use engine::SysRoot;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Deepest cgroup nesting walked under a selected cgroup.
pub const MAX_CGROUP_DEPTH: usize = 16;
/// Most cgroup directories read for one selector per rescan.
pub const MAX_CGROUP_DIRS: usize = 4096;

/// Why a selector matched nothing this rescan (logged when it changes, not every rescan).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Miss {
    /// The cgroup directory does not exist (the service is not started yet).
    NoCgroup(PathBuf),
    /// Reading the cgroup failed.
    CgroupError(String),
    /// The walk hit [`MAX_CGROUP_DIRS`] (the pids found so far are used).
    Truncated(PathBuf),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::NoCgroup(p) => write!(f, "{}: no such cgroup (yet)", p.display()),
            Miss::CgroupError(m) => f.write_str(m),
            Miss::Truncated(p) => write!(
                f,
                "{}: more than {MAX_CGROUP_DIRS} cgroups below it; only the first are read",
                p.display()
            ),
        }
    }
}

/// What one selector matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Matching process ids (thread-group ids), sorted, without madvd itself.
    pub pids: Vec<u32>,
    pub miss: Option<Miss>,
    /// The descendants among `pids` ([`Found::add_descendants`]): pid → start time when
    /// found (clock ticks after boot).
    pub descendants: BTreeMap<u32, u64>,
    /// The processes the walk started from, with their start times then.
    pub roots: Vec<ProcId>,
}

impl Found {
    /// Add the descendants of the processes found (each with its start time), at most
    /// `limit` of them; `me` (madvd) is never one.
    pub fn add_descendants(&mut self, root: &SysRoot, me: u32, limit: usize) {
        let roots: Vec<ProcId> = self
            .pids
            .iter()
            .filter_map(|&pid| {
                let st = read_identity(root, pid)?;
                Some(ProcId {
                    pid,
                    start_time: st.start_time,
                })
            })
            .collect();
        self.add_descendants_of(root, roots, me, limit);
    }

    /// As [`Found::add_descendants`], from `roots` as identified earlier (a root whose pid
    /// now names another process gives nothing).
    pub fn add_descendants_of(
        &mut self,
        root: &SysRoot,
        roots: Vec<ProcId>,
        me: u32,
        limit: usize,
    ) {
        let mut family = Family::new(roots.len().saturating_add(limit));
        for id in &roots {
            family.insert(*id);
        }
        self.roots = roots;
        for id in family.update(root).added {
            if id.pid != me {
                self.descendants.insert(id.pid, id.start_time);
            }
        }
        self.pids.extend(self.descendants.keys());
        self.pids.sort_unstable();
        self.pids.dedup();
    }

    /// The start time a descendant was found with (`None`: matched by the selector).
    pub fn start_time(&self, pid: u32) -> Option<u64> {
        self.descendants.get(&pid).copied()
    }
}

/// One rescan's view of `/proc`, shared by every selector of that rescan.
pub struct Scan<'a> {
    root: &'a SysRoot,
    me: u32,
    pids: Option<Vec<u32>>,
    comm: HashMap<u32, Option<String>>,
    exe: HashMap<u32, Option<PathBuf>>,
}

impl<'a> Scan<'a> {
    pub fn new(root: &'a SysRoot) -> Self {
        Self::with_self(root, std::process::id())
    }

    /// With an explicit "madvd itself" pid (tests).
    pub fn with_self(root: &'a SysRoot, me: u32) -> Self {
        Self {
            root,
            me,
            pids: None,
            comm: HashMap::new(),
            exe: HashMap::new(),
        }
    }

    /// The processes `sel` matches now and, with `children`, their descendants (at most
    /// `limit` of them).
    pub fn find_tree(&mut self, sel: &Selector, children: bool, limit: usize) -> Found {
        let mut f = self.find(sel);
        if children {
            f.add_descendants(self.root, self.me, limit);
        }
        f
    }

    /// The processes `sel` matches now.
    pub fn find(&mut self, sel: &Selector) -> Found {
        let mut f = match sel {
            Selector::Pid(p) => Found {
                pids: if self.root.pid_file(*p, "").is_dir() {
                    vec![*p]
                } else {
                    vec![]
                },
                miss: None,
                ..Found::default()
            },
            Selector::Comm(name) => {
                let pids = self.all_pids();
                let mut v = Vec::new();
                for pid in pids {
                    if self.comm(pid).as_deref() == Some(name.as_str()) {
                        v.push(pid);
                    }
                }
                Found {
                    pids: v,
                    ..Found::default()
                }
            }
            Selector::Exe(path) => {
                let pids = self.all_pids();
                let mut v = Vec::new();
                for pid in pids {
                    if self.exe(pid).as_deref() == Some(path.as_path()) {
                        v.push(pid);
                    }
                }
                Found {
                    pids: v,
                    ..Found::default()
                }
            }
            Selector::Cgroup(path) => cgroup_pids(self.root, path),
        };
        f.pids.retain(|&p| p != self.me);
        f.pids.sort_unstable();
        f.pids.dedup();
        f
    }

    fn all_pids(&mut self) -> Vec<u32> {
        if self.pids.is_none() {
            self.pids = Some(list_pids(&self.root.proc));
        }
        self.pids.clone().unwrap_or_default()
    }

    fn comm(&mut self, pid: u32) -> Option<String> {
        let root = self.root;
        self.comm
            .entry(pid)
            .or_insert_with(|| {
                std::fs::read(root.pid_file(pid, "comm"))
                    .ok()
                    .map(|b| parse_comm(&b))
            })
            .clone()
    }

    fn exe(&mut self, pid: u32) -> Option<PathBuf> {
        let root = self.root;
        self.exe
            .entry(pid)
            .or_insert_with(|| {
                std::fs::read_link(root.pid_file(pid, "exe"))
                    .ok()
                    .map(|p| parse_exe_link(&p))
            })
            .clone()
    }
}

/// The numeric entries of a `/proc` directory (thread-group ids; threads are not listed).
pub fn list_pids(proc: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut v: Vec<u32> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

/// `/proc/PID/comm` contents: the name without its trailing newline.
pub fn parse_comm(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

/// The `/proc/PID/exe` link target, without the " (deleted)" the kernel appends when the
/// binary was replaced on disk (a package upgrade must not make a running daemon vanish
/// from its group; `d_path()`, fs/d_path.c).
pub fn parse_exe_link(p: &Path) -> PathBuf {
    let s = p.to_string_lossy();
    PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
}

/// Pids listed in a `cgroup.procs` or `tasks` file (one number per line).
pub fn parse_pid_list(b: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(b)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The `Tgid:` line of `/proc/PID/status`.
pub fn parse_tgid(status: &[u8]) -> Option<u32> {
    // Through the engine's one status parser; no `Tgid:` line leaves it 0, never a process.
    let st = engine::kernel::status::parse_status(status, Path::new("status")).ok()?;
    (st.tgid != 0).then_some(st.tgid)
}

/// A configured cgroup path as a path under `root` (`/sys/...` → `root.sys/...`).
pub fn reroot_cgroup(root: &SysRoot, path: &Path) -> PathBuf {
    match path.strip_prefix("/sys") {
        Ok(rest) => root.sys.join(rest),
        Err(_) => path.to_path_buf(),
    }
}

/// Every process in the cgroup at `path` and below (bounded walk).
pub fn cgroup_pids(root: &SysRoot, path: &Path) -> Found {
    let dir = reroot_cgroup(root, path);
    if !dir.is_dir() {
        return Found {
            miss: Some(Miss::NoCgroup(path.to_path_buf())),
            ..Found::default()
        };
    }
    let mut pids = BTreeSet::new();
    let mut stack = vec![(dir, 0usize)];
    let mut seen = 0usize;
    let mut miss = None;
    while let Some((d, depth)) = stack.pop() {
        seen += 1;
        if seen > MAX_CGROUP_DIRS {
            miss = Some(Miss::Truncated(path.to_path_buf()));
            break;
        }
        match std::fs::read(d.join("cgroup.procs")) {
            Ok(b) => pids.extend(parse_pid_list(&b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A v1 hierarchy without cgroup.procs: thread ids, mapped to their process.
                match std::fs::read(d.join("tasks")) {
                    Ok(b) => {
                        for tid in parse_pid_list(&b) {
                            let tgid = std::fs::read(root.pid_file(tid, "status"))
                                .ok()
                                .and_then(|s| parse_tgid(&s));
                            if let Some(t) = tgid {
                                pids.insert(t);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        // The directory vanished (cgroup removed during the walk).
                    }
                    Err(e) => {
                        miss = Some(Miss::CgroupError(format!("{}: {e}", d.display())));
                    }
                }
            }
            Err(e) => miss = Some(Miss::CgroupError(format!("{}: {e}", d.display()))),
        }
        if depth < MAX_CGROUP_DEPTH {
            if let Ok(rd) = std::fs::read_dir(&d) {
                let mut subs: Vec<PathBuf> = rd
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                    .map(|e| e.path())
                    .collect();
                subs.sort();
                stack.extend(subs.into_iter().rev().map(|p| (p, depth + 1)));
            }
        }
    }
    Found {
        pids: pids.into_iter().collect(),
        miss,
        ..Found::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn root(&self) -> SysRoot {
            SysRoot::under(self.dir.path())
        }
        fn proc(&self, pid: u32, comm: &str, exe: &str, tgid: u32) {
            let d = self.dir.path().join("proc").join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(
                d.join("status"),
                format!("Name:\t{comm}\nTgid:\t{tgid}\nPid:\t{pid}\n"),
            )
            .unwrap();
            if !exe.is_empty() {
                std::os::unix::fs::symlink(exe, d.join("exe")).unwrap();
            }
        }
        fn cgroup(&self, rel: &str, file: &str, pids: &[u32]) {
            let d = self.dir.path().join("sys/fs/cgroup").join(rel);
            fs::create_dir_all(&d).unwrap();
            let text: String = pids.iter().map(|p| format!("{p}\n")).collect();
            fs::write(d.join(file), text).unwrap();
        }
    }

    fn fixture() -> Tree {
        let t = Tree::new();
        t.proc(1, "systemd", "/usr/lib/systemd/systemd", 1);
        t.proc(2, "kthreadd", "", 2);
        t.proc(100, "nginx", "/usr/sbin/nginx", 100);
        t.proc(101, "nginx", "/usr/sbin/nginx (deleted)", 101);
        t.proc(200, "postgres", "/usr/lib/postgresql/16/bin/postgres", 200);
        t.proc(300, "madvd", "/usr/bin/madvd", 300);
        // A thread of 200, only visible through a v1 tasks file.
        t.proc(201, "postgres", "/usr/lib/postgresql/16/bin/postgres", 200);
        fs::create_dir_all(t.dir.path().join("proc/self")).unwrap();
        t.cgroup(
            "unified/system.slice/nginx.service",
            "cgroup.procs",
            &[100, 101, 300],
        );
        t.cgroup("unified/kubepods/pod1", "cgroup.procs", &[]);
        t.cgroup("unified/kubepods/pod1/ctr-a", "cgroup.procs", &[200]);
        t.cgroup("unified/kubepods/pod1/ctr-b", "cgroup.procs", &[100]);
        t.cgroup("memory/db", "tasks", &[200, 201]);
        t
    }

    #[test]
    fn comm_exe_and_pid_selectors() {
        let t = fixture();
        let root = t.root();
        let mut s = Scan::with_self(&root, 300);
        assert_eq!(s.find(&Selector::Comm("nginx".into())).pids, vec![100, 101]);
        assert_eq!(
            s.find(&Selector::Comm("madvd".into())).pids,
            Vec::<u32>::new()
        );
        assert_eq!(
            s.find(&Selector::Comm("postgre".into())).pids,
            Vec::<u32>::new()
        );
        // The replaced binary (" (deleted)") still matches.
        assert_eq!(
            s.find(&Selector::Exe("/usr/sbin/nginx".into())).pids,
            vec![100, 101]
        );
        assert_eq!(s.find(&Selector::Pid(200)).pids, vec![200]);
        assert_eq!(s.find(&Selector::Pid(999)).pids, Vec::<u32>::new());
        // pid 1 and kernel threads are listed: Process::open refuses them (counted).
        assert_eq!(s.find(&Selector::Comm("kthreadd".into())).pids, vec![2]);
    }

    #[test]
    fn cgroup_v2_procs_recursive_and_rerooted() {
        let t = fixture();
        let root = t.root();
        let mut s = Scan::with_self(&root, 300);
        let f = s.find(&Selector::Cgroup(
            "/sys/fs/cgroup/unified/system.slice/nginx.service".into(),
        ));
        assert_eq!(
            f,
            Found {
                pids: vec![100, 101],
                ..Found::default()
            }
        );
        let f = s.find(&Selector::Cgroup(
            "/sys/fs/cgroup/unified/kubepods/pod1".into(),
        ));
        assert_eq!(f.pids, vec![100, 200]);
        let f = s.find(&Selector::Cgroup(
            "/sys/fs/cgroup/unified/kubepods/pod1/ctr-a".into(),
        ));
        assert_eq!(f.pids, vec![200]);
    }

    #[test]
    fn cgroup_v1_tasks_map_threads_to_processes() {
        let t = fixture();
        let root = t.root();
        let f =
            Scan::with_self(&root, 300).find(&Selector::Cgroup("/sys/fs/cgroup/memory/db".into()));
        assert_eq!(f.pids, vec![200]);
    }

    #[test]
    fn missing_cgroup_is_a_miss_not_an_error() {
        let t = fixture();
        let root = t.root();
        let f = Scan::with_self(&root, 300).find(&Selector::Cgroup(
            "/sys/fs/cgroup/unified/system.slice/redis.service".into(),
        ));
        assert!(f.pids.is_empty());
        assert!(matches!(f.miss, Some(Miss::NoCgroup(_))), "{f:?}");
    }

    #[test]
    fn processes_come_and_go_between_scans() {
        let t = fixture();
        let root = t.root();
        let sel = Selector::Comm("redis-server".into());
        assert!(Scan::with_self(&root, 300).find(&sel).pids.is_empty());
        t.proc(400, "redis-server", "/usr/bin/redis-server", 400);
        assert_eq!(Scan::with_self(&root, 300).find(&sel).pids, vec![400]);
        fs::remove_dir_all(t.dir.path().join("proc/400")).unwrap();
        assert!(Scan::with_self(&root, 300).find(&sel).pids.is_empty());
    }

    #[test]
    fn children_add_the_descendants_with_their_start_times() {
        let t = fixture();
        let root = t.root();
        let stat = |pid: u32, ppid: u32, start: u64, kids: &str| {
            let d = root.pid_file(pid, &format!("task/{pid}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("children"), kids).unwrap();
            let line =
                format!("{pid} (x) S {ppid} 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 {start} 0 0");
            fs::write(root.pid_file(pid, "stat"), line).unwrap();
        };
        // nginx 100 → 500 → 501; 300 (madvd itself) is a child too; 502 is listed but its
        // stat names another parent (its pid was reused between the two reads).
        t.proc(500, "worker", "/usr/sbin/nginx", 500);
        t.proc(501, "helper", "/usr/bin/helper", 501);
        t.proc(502, "other", "/usr/bin/other", 502);
        stat(100, 1, 1000, "500 300 502");
        stat(500, 100, 1005, "501");
        stat(501, 500, 1010, "");
        stat(502, 1, 1020, "");
        stat(300, 100, 1030, "");
        let sel = Selector::Pid(100);
        let mut s = Scan::with_self(&root, 300);
        assert_eq!(s.find_tree(&sel, false, 10).pids, vec![100]);
        let f = s.find_tree(&sel, true, 10);
        assert_eq!(f.pids, vec![100, 500, 501]);
        assert_eq!((f.start_time(100), f.start_time(501)), (None, Some(1010)));
        assert_eq!(
            f.roots,
            vec![ProcId {
                pid: 100,
                start_time: 1000
            }]
        );
        // From roots identified earlier: one whose pid was reused since gives nothing.
        let mut again = Found::default();
        again.add_descendants_of(
            &root,
            vec![ProcId {
                pid: 100,
                start_time: 999,
            }],
            300,
            10,
        );
        assert!(again.descendants.is_empty());
        again.add_descendants_of(&root, f.roots.clone(), 300, 10);
        assert_eq!(again.descendants, f.descendants);
        // The limit holds; madvd itself counts towards it (followed in the walk, not taken).
        assert_eq!(s.find_tree(&sel, true, 1).pids, vec![100]);
        assert_eq!(s.find_tree(&sel, true, 2).pids, vec![100, 500]);
    }

    #[test]
    fn pure_parsers() {
        assert_eq!(parse_comm(b"nginx\n"), "nginx");
        assert_eq!(parse_pid_list(b"1\n 22\nx\n\n333\n"), vec![1, 22, 333]);
        assert_eq!(parse_tgid(b"Name:\tx\nTgid:\t77\nPid:\t78\n"), Some(77));
        assert_eq!(parse_tgid(b"Name:\tx\n"), None);
        assert_eq!(
            parse_exe_link(Path::new("/a/b (deleted)")),
            PathBuf::from("/a/b")
        );
        let root = SysRoot::under("/fx");
        assert_eq!(
            reroot_cgroup(&root, Path::new("/sys/fs/cgroup/x")),
            PathBuf::from("/fx/sys/fs/cgroup/x")
        );
    }
}
