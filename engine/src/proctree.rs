//! Process trees: follow a target's descendants as they fork and exit (damo's
//! `--include_childs`). A [`Family`] holds the processes followed, each by its identity
//! ([`ProcId`]: the pid and its start time, field 22 of `/proc/PID/stat`); each
//! [`Family::update`] drops the members that exited or whose pid now names another process,
//! and adopts the children of every member (`/proc/PID/task/*/children`, or without
//! `CONFIG_PROC_CHILDREN` a scan of every `stat`'s parent field: `kernel::children`).
//!
//! A reused pid is never adopted. A child is taken only when its `stat` names the member as
//! its parent and it started no earlier than that member, and only when the member itself
//! still has its recorded start time after its children were read (so the list was its own).
//! Between that discovery and the pidfd that pins the process, [`open_pair`] checks the start
//! time once more, through the pidfd; from then on every read and every advice goes through
//! the pidfds (`process`, `actuator`), which cannot reach another process.
//!
//! Two processes with the same pid and the same start tick would be told apart by nothing
//! here: that needs the pid space to wrap within one clock tick (10 ms at `CLK_TCK` 100).

use crate::kernel::children::{read_children, scan_stats};
use crate::kernel::stat::{parse_stat, Stat};
use crate::process::{Process, ProcessError};
use crate::sysroot::SysRoot;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// A process's identity: its pid and when it started (clock ticks after boot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcId {
    pub pid: u32,
    pub start_time: u64,
}

/// What one [`Family::update`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// New descendants, parents before their children.
    pub added: Vec<ProcId>,
    /// Members that exited, or whose pid now names another process.
    pub gone: Vec<u32>,
    /// Descendants were left out: the family is at its limit.
    pub truncated: bool,
}

/// The processes followed: the targets named, and their descendants as they come and go.
#[derive(Clone, Debug)]
pub struct Family {
    members: BTreeMap<u32, u64>,
    limit: usize,
    /// No `children` files on this kernel: scan every `stat` (sticky once seen).
    scan: bool,
}

/// `stat` of `pid` now, `None` when it cannot be read (gone, or not a process).
pub fn read_identity(root: &SysRoot, pid: u32) -> Option<Stat> {
    let path = root.pid_file(pid, "stat");
    parse_stat(&std::fs::read(&path).ok()?, &path).ok()
}

/// Exited (a zombie waiting to be reaped, or dead): no memory to follow.
fn exited(st: &Stat) -> bool {
    matches!(st.state, 'Z' | 'X' | 'x')
}

impl Family {
    /// An empty family that holds at most `limit` processes.
    pub fn new(limit: usize) -> Self {
        Self {
            members: BTreeMap::new(),
            limit,
            scan: false,
        }
    }

    /// Follow `id` (a target opened by the caller) and its descendants.
    pub fn insert(&mut self, id: ProcId) {
        self.members.insert(id.pid, id.start_time);
    }

    /// Stop following `pid` (the caller dropped it); true if it was a member.
    pub fn remove(&mut self, pid: u32) -> bool {
        self.members.remove(&pid).is_some()
    }

    pub fn contains(&self, pid: u32) -> bool {
        self.members.contains_key(&pid)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members, by pid.
    pub fn members(&self) -> impl Iterator<Item = ProcId> + '_ {
        self.members
            .iter()
            .map(|(&pid, &start_time)| ProcId { pid, start_time })
    }

    /// Drop the members gone, adopt the new descendants of the others.
    pub fn update(&mut self, root: &SysRoot) -> Changes {
        let mut ch = Changes::default();
        let mut queue = VecDeque::new();
        for id in self.members() {
            match read_identity(root, id.pid) {
                Some(st) if st.start_time == id.start_time && !exited(&st) => queue.push_back(id),
                _ => ch.gone.push(id.pid),
            }
        }
        for pid in &ch.gone {
            self.members.remove(pid);
        }
        let mut table = None;
        while let Some(parent) = queue.pop_front() {
            for st in self.children_of(root, parent, &mut table) {
                if self.members.contains_key(&st.pid) {
                    continue;
                }
                if self.members.len() >= self.limit {
                    ch.truncated = true;
                    break;
                }
                let id = ProcId {
                    pid: st.pid,
                    start_time: st.start_time,
                };
                self.members.insert(id.pid, id.start_time);
                ch.added.push(id);
                queue.push_back(id);
            }
        }
        ch
    }

    /// The live children of `parent`, each checked: its parent field names `parent`, it
    /// started no earlier, and `parent` still has its start time after the read.
    fn children_of(
        &mut self,
        root: &SysRoot,
        parent: ProcId,
        table: &mut Option<StatTable>,
    ) -> Vec<Stat> {
        let ours =
            |st: &Stat| st.ppid == parent.pid && st.start_time >= parent.start_time && !exited(st);
        if !self.scan {
            match read_children(root, parent.pid) {
                Ok(Some(pids)) => {
                    let kids: Vec<Stat> = pids
                        .into_iter()
                        .filter_map(|pid| read_identity(root, pid))
                        .filter(ours)
                        .collect();
                    let same = read_identity(root, parent.pid)
                        .is_some_and(|st| st.start_time == parent.start_time);
                    return if same { kids } else { Vec::new() };
                }
                Ok(None) => self.scan = true,
                Err(_) => return Vec::new(),
            }
        }
        let t = table.get_or_insert_with(|| StatTable::new(scan_stats(root)));
        if t.start.get(&parent.pid) != Some(&parent.start_time) {
            return Vec::new();
        }
        t.by_parent
            .get(&parent.pid)
            .map(|v| v.iter().filter(|s| ours(s)).cloned().collect())
            .unwrap_or_default()
    }
}

/// One scan of every `stat` (the fallback), indexed.
struct StatTable {
    by_parent: HashMap<u32, Vec<Stat>>,
    start: HashMap<u32, u64>,
}

impl StatTable {
    fn new(stats: Vec<Stat>) -> Self {
        let mut t = StatTable {
            by_parent: HashMap::new(),
            start: HashMap::new(),
        };
        for st in stats {
            t.start.insert(st.pid, st.start_time);
            t.by_parent.entry(st.ppid).or_default().push(st);
        }
        t
    }
}

/// Open a discovered process as a target: the access check's handle and the actuator's, each
/// with its own pidfd. The first pidfd is held across the second open and checked alive after
/// it, so both name the same process; `expected` (its start time when discovered) is checked
/// through that pidfd, so a pid reused between discovery and `pidfd_open` is refused
/// ([`ProcessError::Reused`], which counts as gone).
pub fn open_pair(
    root: &SysRoot,
    pid: u32,
    expected: Option<u64>,
) -> Result<(Process, Process), ProcessError> {
    let a = Process::open(root, pid, false)?;
    let b = Process::open(root, pid, false)?;
    if !a.is_alive() {
        return Err(ProcessError::Gone { pid });
    }
    if let Some(expected) = expected {
        let found = a.start_time()?;
        if found != expected {
            return Err(ProcessError::Reused {
                pid,
                expected,
                found,
            });
        }
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests;
