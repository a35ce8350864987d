//! Fixture trees: `/proc/PID/stat` (parent, state, start time) and, unless the kernel is
//! made to lack them, `/proc/PID/task/PID/children`.

use super::*;
use std::fs;

struct Tree {
    dir: tempfile::TempDir,
    /// Write `children` files (a kernel with CONFIG_PROC_CHILDREN).
    files: bool,
    procs: BTreeMap<u32, (u32, char, u64)>,
}

impl Tree {
    fn new(files: bool) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            files,
            procs: BTreeMap::new(),
        }
    }
    fn root(&self) -> SysRoot {
        SysRoot::under(self.dir.path())
    }
    /// Process `pid`, child of `ppid`, in `state`, started at tick `start`.
    fn set(&mut self, pid: u32, ppid: u32, state: char, start: u64) {
        self.procs.insert(pid, (ppid, state, start));
        self.write();
    }
    fn kill(&mut self, pid: u32) {
        self.procs.remove(&pid);
        fs::remove_dir_all(self.root().pid_file(pid, "")).unwrap();
        self.write();
    }
    fn write(&self) {
        let root = self.root();
        for (&pid, &(ppid, state, start)) in &self.procs {
            let task = root.pid_file(pid, &format!("task/{pid}"));
            fs::create_dir_all(&task).unwrap();
            let line = format!(
                "{pid} (w) {state} {ppid} 1 1 0 -1 4194560 0 0 0 0 1 2 0 0 20 0 1 0 {start} 0 0\n"
            );
            fs::write(root.pid_file(pid, "stat"), line).unwrap();
            if self.files {
                let kids: Vec<String> = self
                    .procs
                    .iter()
                    .filter(|(_, v)| v.0 == pid)
                    .map(|(k, _)| k.to_string())
                    .collect();
                fs::write(task.join("children"), kids.join(" ")).unwrap();
            }
        }
    }
}

fn id(pid: u32, start_time: u64) -> ProcId {
    ProcId { pid, start_time }
}

/// 10 → {11 → 13, 12}; 14 is not ours.
fn fixture(files: bool) -> (Tree, Family) {
    let mut t = Tree::new(files);
    t.set(1, 0, 'S', 1);
    t.set(10, 1, 'S', 100);
    t.set(11, 10, 'S', 110);
    t.set(12, 10, 'S', 120);
    t.set(13, 11, 'S', 130);
    t.set(14, 1, 'S', 140);
    let mut f = Family::new(100);
    f.insert(id(10, 100));
    (t, f)
}

fn both(test: impl Fn(bool)) {
    test(true);
    test(false);
}

#[test]
fn adopts_descendants_parents_first_and_drops_the_exited() {
    both(|files| {
        let (mut t, mut f) = fixture(files);
        let ch = f.update(&t.root());
        assert_eq!(
            ch.added,
            vec![id(11, 110), id(12, 120), id(13, 130)],
            "{files}"
        );
        assert!(ch.gone.is_empty() && !ch.truncated);
        assert_eq!(f.update(&t.root()), Changes::default(), "stable");
        // 12 exits; 13 forks 15; 11 becomes a zombie (exited, not reaped).
        t.kill(12);
        t.set(15, 13, 'R', 150);
        t.set(11, 10, 'Z', 110);
        let ch = f.update(&t.root());
        assert_eq!(ch.gone, vec![11, 12], "{files}");
        // 13 and 15 are followed while their own parent lives; 13 was adopted already.
        assert_eq!(ch.added, vec![id(15, 150)]);
        assert!(f.contains(13) && !f.contains(14));
    });
}

#[test]
fn a_pid_whose_start_time_changed_is_a_new_process() {
    both(|files| {
        let (mut t, mut f) = fixture(files);
        f.update(&t.root());
        // 13 exited and its pid went to an unrelated process: dropped, never adopted.
        t.set(13, 1, 'S', 500);
        let ch = f.update(&t.root());
        assert_eq!((ch.gone, ch.added), (vec![13], vec![]), "{files}");
        // 12 exited and 11 forked again, reusing the pid: the old one dropped, the new one
        // adopted under its own start time.
        t.set(12, 11, 'S', 510);
        let ch = f.update(&t.root());
        assert_eq!(
            (ch.gone, ch.added),
            (vec![12], vec![id(12, 510)]),
            "{files}"
        );
    });
}

#[test]
fn a_root_whose_pid_was_reused_gives_no_children() {
    both(|files| {
        let (mut t, _) = fixture(files);
        // The target 10 exited; pid 10 is another process now, with children of its own.
        t.set(10, 1, 'S', 900);
        t.set(11, 10, 'S', 910);
        t.set(12, 10, 'S', 920);
        let mut f = Family::new(100);
        f.insert(id(10, 100));
        let ch = f.update(&t.root());
        assert_eq!((ch.gone, ch.added), (vec![10], vec![]), "{files}");
        assert!(f.is_empty());
    });
}

#[test]
fn a_listed_child_must_name_the_parent_and_start_after_it() {
    // Only the children files can list a pid whose stat disagrees (the pid was reused
    // between the two reads, or the list is stale).
    let (mut t, mut f) = fixture(true);
    t.set(20, 1, 'S', 200);
    t.set(21, 10, 'S', 50);
    fs::write(t.root().pid_file(10, "task/10/children"), "11 12 20 21 99").unwrap();
    let ch = f.update(&t.root());
    assert_eq!(ch.added, vec![id(11, 110), id(12, 120), id(13, 130)]);
}

#[test]
fn a_zombie_child_is_not_adopted() {
    both(|files| {
        let (mut t, mut f) = fixture(files);
        t.set(16, 10, 'Z', 160);
        let ch = f.update(&t.root());
        assert!(!ch.added.contains(&id(16, 160)), "{files}");
    });
}

#[test]
fn the_limit_holds() {
    both(|files| {
        let (t, _) = fixture(files);
        let mut f = Family::new(3);
        f.insert(id(10, 100));
        let ch = f.update(&t.root());
        assert_eq!(ch.added, vec![id(11, 110), id(12, 120)], "{files}");
        assert!(ch.truncated);
        assert_eq!(f.len(), 3);
    });
}

#[test]
fn open_pair_refuses_a_reused_pid() {
    let mut c = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let root = SysRoot::host();
    let st = read_identity(&root, c.id()).expect("our child's stat");
    assert_eq!(st.ppid, std::process::id());
    let (a, b) = open_pair(&root, c.id(), Some(st.start_time)).unwrap();
    assert_eq!((a.pid(), b.pid()), (c.id(), c.id()));
    assert_eq!(a.start_time().unwrap(), st.start_time);
    // As if the process found at discovery had another start time: the pid was reused.
    let e = open_pair(&root, c.id(), Some(st.start_time + 1)).unwrap_err();
    assert!(
        matches!(e, ProcessError::Reused { pid, expected, found }
            if pid == c.id() && expected == st.start_time + 1 && found == st.start_time),
        "{e}"
    );
    assert!(e.is_gone(), "a reused pid counts as the process gone");
    c.kill().unwrap();
    c.wait().unwrap();
    assert!(a.start_time().unwrap_err().is_gone());
}
