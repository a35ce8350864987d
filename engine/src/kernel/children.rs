//! A process's children: `/proc/PID/task/TID/children` (fs/proc/array.c
//! `children_seq_show`, Linux 6.12; only with `CONFIG_PROC_CHILDREN`): the pids of the
//! processes whose parent is thread TID, space separated. Threads are never listed (a
//! `CLONE_THREAD` task is not put on its parent's `children` list, kernel/fork.c
//! `copy_process`), so every pid named is a process.
//!
//! Without `CONFIG_PROC_CHILDREN` the files do not exist; [`read_children`] says so
//! (`Ok(None)`) and the caller falls back to [`scan_stats`]: every `/proc/PID/stat`, whose
//! field 4 names the parent.
//!
//! [`parse_children`] is pure; the readers take a [`SysRoot`], so tests use a fixture tree.

use super::stat::{parse_stat, Stat};
use crate::sysroot::SysRoot;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ChildrenError {
    #[error("{path}: bad pid {word:?}")]
    Parse { path: PathBuf, word: String },
    #[error("pid {pid} has exited")]
    Gone { pid: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pids of one `children` file (`path` only labels errors).
pub fn parse_children(b: &[u8], path: &Path) -> Result<Vec<u32>, ChildrenError> {
    String::from_utf8_lossy(b)
        .split_ascii_whitespace()
        .map(|w| {
            w.parse::<u32>().map_err(|_| ChildrenError::Parse {
                path: path.to_owned(),
                word: w.to_owned(),
            })
        })
        .collect()
}

/// The children of every thread of process `pid`, sorted. `Ok(None)`: this kernel has no
/// `children` files (no `CONFIG_PROC_CHILDREN`). A thread that exits during the walk is
/// skipped; the process gone is [`ChildrenError::Gone`].
pub fn read_children(root: &SysRoot, pid: u32) -> Result<Option<Vec<u32>>, ChildrenError> {
    let task = root.pid_file(pid, "task");
    let rd = match std::fs::read_dir(&task) {
        Ok(rd) => rd,
        Err(e) if gone(&e) => return Err(ChildrenError::Gone { pid }),
        Err(source) => return Err(ChildrenError::Io { path: task, source }),
    };
    let (mut out, mut files, mut threads) = (Vec::new(), 0usize, 0usize);
    for e in rd.filter_map(|e| e.ok()) {
        threads += 1;
        let path = e.path().join("children");
        match std::fs::read(&path) {
            Ok(b) => {
                files += 1;
                out.extend(parse_children(&b, &path)?);
            }
            Err(e) if gone(&e) => {}
            Err(source) => return Err(ChildrenError::Io { path, source }),
        }
    }
    if files == 0 && threads > 0 {
        // Threads but no file: not this kernel's. (A process that exited meanwhile shows an
        // empty task directory and reads as childless.)
        return Ok(None);
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Every process's `stat` (the fallback without `children` files), sorted by pid. Processes
/// that exit during the scan and unreadable or malformed files are left out.
pub fn scan_stats(root: &SysRoot) -> Vec<Stat> {
    let Ok(rd) = std::fs::read_dir(&root.proc) else {
        return Vec::new();
    };
    let mut v: Vec<Stat> = rd
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let path = root.pid_file(pid, "stat");
            parse_stat(&std::fs::read(&path).ok()?, &path).ok()
        })
        .collect();
    v.sort_unstable_by_key(|s| s.pid);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn parses_a_children_file() {
        let p = Path::new("/proc/7/task/7/children");
        assert_eq!(parse_children(b"12 13 400 ", p).unwrap(), vec![12, 13, 400]);
        assert_eq!(parse_children(b"", p).unwrap(), Vec::<u32>::new());
        let e = parse_children(b"12 x3", p).unwrap_err();
        assert_eq!(e.to_string(), "/proc/7/task/7/children: bad pid \"x3\"");
    }

    #[test]
    fn reads_every_thread_and_tells_a_kernel_without_the_files() {
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::under(d.path());
        for (tid, kids) in [(7, "9 8 "), (10, "11"), (12, "")] {
            let t = root.pid_file(7, &format!("task/{tid}"));
            fs::create_dir_all(&t).unwrap();
            fs::write(t.join("children"), kids).unwrap();
        }
        assert_eq!(read_children(&root, 7).unwrap(), Some(vec![8, 9, 11]));
        // Task directories without `children` files: no CONFIG_PROC_CHILDREN.
        fs::create_dir_all(root.pid_file(20, "task/20")).unwrap();
        assert_eq!(read_children(&root, 20).unwrap(), None);
        assert!(matches!(
            read_children(&root, 21),
            Err(ChildrenError::Gone { pid: 21 })
        ));
        fs::write(root.pid_file(7, "task/12/children"), "zz").unwrap();
        assert!(read_children(&root, 7)
            .unwrap_err()
            .to_string()
            .ends_with("/proc/7/task/12/children: bad pid \"zz\""));
    }

    #[test]
    fn scans_stats_skipping_what_it_cannot_read() {
        let d = tempfile::tempdir().unwrap();
        let root = SysRoot::under(d.path());
        let stat = |pid: u32, ppid: u32| {
            format!("{pid} (x) S {ppid} 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 {pid}0 0 0\n")
        };
        for (pid, text) in [(5, stat(5, 1)), (3, stat(3, 5)), (4, "garbage".into())] {
            fs::create_dir_all(root.pid_file(pid, "")).unwrap();
            fs::write(root.pid_file(pid, "stat"), text).unwrap();
        }
        fs::create_dir_all(root.proc_file("self")).unwrap();
        let v = scan_stats(&root);
        let got: Vec<(u32, u32, u64)> = v.iter().map(|s| (s.pid, s.ppid, s.start_time)).collect();
        assert_eq!(got, vec![(3, 5, 30), (5, 1, 50)]);
    }

    #[test]
    fn the_host_kernel_lists_our_child() {
        let mut c = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let kids = read_children(&SysRoot::host(), me).unwrap();
        let in_scan = scan_stats(&SysRoot::host())
            .iter()
            .any(|s| s.pid == c.id() && s.ppid == me);
        c.kill().unwrap();
        c.wait().unwrap();
        // The fallback always sees it; the files only with CONFIG_PROC_CHILDREN.
        assert!(in_scan);
        if let Some(k) = kids {
            assert!(k.contains(&c.id()), "{k:?}");
        }
    }
}
