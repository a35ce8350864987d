//! `madvd run --children`: the targets' descendants, followed as they fork and exit. Each
//! ops update interval (at most a second apart) the process tree is walked (`engine::proctree::Family`); new
//! descendants are opened (`open_pair`: their start time checked through the pidfd) and
//! handed to the running stages, exited ones are removed.

use super::Running;
use anyhow::Result;
use engine::process::Process;
use engine::proctree::{open_pair, Family, ProcId};
use engine::{SysRoot, TargetId};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Most processes one `run --children` follows (targets and descendants together).
pub const MAX_FOLLOWED: usize = 4096;

/// Longest time between two walks: the ops update interval defaults to DAMON's 60 s, and a
/// child that lives less would never be seen.
pub const MAX_WALK_EVERY: Duration = Duration::from_secs(1);

/// The followed tree of a run.
pub struct Follow {
    family: Family,
    /// The pids the stages watch (members that could not be opened are followed, not watched).
    pub watched: BTreeSet<u32>,
    /// Every watched pid that exited, in order.
    pub exited: Vec<u32>,
    every: Duration,
    next: Instant,
    warned_full: bool,
}

impl Follow {
    /// Follow `procs` (the targets, opened) and their descendants (walking every second until
    /// [`Follow::set_every`]).
    pub fn start(procs: &[Process]) -> Result<Self> {
        let mut family = Family::new(MAX_FOLLOWED);
        for p in procs {
            let start_time = p.start_time().map_err(crate::targets::process_error)?;
            family.insert(ProcId {
                pid: p.pid(),
                start_time,
            });
        }
        Ok(Self {
            watched: procs.iter().map(|p| p.pid()).collect(),
            exited: Vec::new(),
            family,
            every: MAX_WALK_EVERY,
            next: Instant::now(),
            warned_full: false,
        })
    }

    /// Walk every `update_us` (the ops update interval in force), at least every
    /// [`MAX_WALK_EVERY`].
    pub fn set_every(&mut self, update_us: u64) {
        self.every = Duration::from_micros(update_us.max(1)).min(MAX_WALK_EVERY);
    }

    /// `pid` exited (the stages or the walk saw it): forget it, say so once. True if it was
    /// watched.
    pub fn exited(&mut self, pid: u32) -> bool {
        self.family.remove(pid);
        if !self.watched.remove(&pid) {
            return false;
        }
        self.exited.push(pid);
        eprintln!(
            "pid {pid} exited: dropped ({} target(s) left)",
            self.watched.len()
        );
        true
    }

    /// Walk the tree when due: new descendants to the stages, exited ones out.
    pub fn step(&mut self, root: &SysRoot, running: &Running) {
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + self.every;
        let ch = self.family.update(root);
        for pid in ch.gone {
            if self.exited(pid) {
                running.remove_target(TargetId(pid));
            }
        }
        if ch.truncated && !self.warned_full {
            self.warned_full = true;
            eprintln!("madvd: warning: --children: {MAX_FOLLOWED} processes followed already: newer descendants are not watched");
        }
        for id in ch.added {
            match open_pair(root, id.pid, Some(id.start_time)) {
                Ok((a, b)) => {
                    let comm = a.comm().to_string();
                    if running.add_target(a, b) {
                        self.watched.insert(id.pid);
                        eprintln!(
                            "pid {} ({comm}): descendant added ({} target(s))",
                            id.pid,
                            self.watched.len()
                        );
                    }
                }
                // Exited, or its pid reused, since the walk: not followed further.
                Err(e) if e.is_gone() => {
                    self.family.remove(id.pid);
                }
                // Followed (its children may be ours), not watched.
                Err(e) => eprintln!("madvd: warning: --children: not a target: {e}"),
            }
        }
    }
}
