//! Lab helpers shared by the physical-memory lab tests (`lab_paddr`, `lab_cgreclaim`): a
//! cgroup v2 group that starts workload children inside it, and the co-scheduling that keeps
//! a child's accesses visible to the monitors under QEMU TCG.

use super::exe;
use madvd_workload::Client as Workload;
use madvd_workload::WorkloadSpec;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Workload children, each started in a group of its own: a hot-heavy and a mostly idle one
/// (both lab tests' world; lab_cgreclaim adds an all-hot control as a third). The children
/// are declared first: fields drop in order, and a group can only be removed once its
/// process is gone.
pub struct Workloads<const N: usize = 2> {
    pub children: Vec<Workload>,
    pub groups: [Cgroup; N],
}

impl<const N: usize> Workloads<N> {
    /// Groups `names`; child `i` is `specs[i]` = (size, hot fraction, seed), hot at a quarter
    /// of its mapping, no huge pages, co-scheduled with the TLB churn ([`co_schedule`]).
    pub fn start(names: [&str; N], specs: [(u64, f64, u64); N]) -> Self {
        // Read the madvd binary into the page cache from here (the root group), so its
        // pages are not charged to the first child's group.
        drop(std::fs::read(exe()).unwrap());
        let groups = names.map(Cgroup::create);
        let children = groups
            .iter()
            .zip(specs)
            .map(|(g, (size, hot, seed))| {
                let w = g.spawn(&WorkloadSpec {
                    size,
                    hot_fraction: hot,
                    hot_offset: 0.25,
                    nohugepage: true,
                    seed,
                    ..Default::default()
                });
                co_schedule(w.pid());
                w
            })
            .collect();
        Self { children, groups }
    }

    /// Start each child's truth window.
    pub fn mark(&mut self) {
        for w in &mut self.children {
            w.mark().unwrap();
        }
    }
}

/// A cgroup v2 group under `/sys/fs/cgroup`, removed on drop (its processes gone first).
pub struct Cgroup {
    pub dir: PathBuf,
    pub name: String,
}

impl Cgroup {
    pub fn create(name: &str) -> Self {
        let top = Path::new("/sys/fs/cgroup");
        let ctl = std::fs::read_to_string(top.join("cgroup.subtree_control")).unwrap();
        if !ctl.split_whitespace().any(|c| c == "memory") {
            std::fs::write(top.join("cgroup.subtree_control"), "+memory").unwrap();
        }
        let dir = top.join(name);
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        Self {
            dir,
            name: format!("/{name}"),
        }
    }

    /// A workload child started inside this group, so every page it first-touches is
    /// charged here (charges do not move with a process in v2).
    pub fn spawn(&self, spec: &WorkloadSpec) -> Workload {
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
            .unwrap();
        let fd = procs.as_raw_fd();
        let mut cmd = Command::new(exe());
        cmd.arg("workload").args(spec.to_args());
        // SAFETY: the closure runs in the forked child before exec and only calls write(2)
        // (async-signal-safe) on an fd opened before the fork and still open in the child.
        unsafe {
            cmd.pre_exec(move || {
                let b = b"0\n"; // "0": the writing process itself
                if libc::write(fd, b.as_ptr().cast(), b.len()) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let w = Workload::spawn_with(cmd).expect("spawn the workload child in its cgroup");
        let cg = std::fs::read_to_string(format!("/proc/{}/cgroup", w.pid())).unwrap();
        assert_eq!(cg.trim(), format!("0::{}", self.name), "child's cgroup");
        w
    }

    pub fn memory_current(&self) -> u64 {
        self.read_u64("memory.current")
    }

    /// Bytes of the group's memory in swap.
    pub fn swap_current(&self) -> u64 {
        self.read_u64("memory.swap.current")
    }

    /// One counter of the group's `memory.stat` (e.g. `workingset_refault_anon`: pages
    /// faulted back in soon after reclaim; 0 when the kernel has no such key).
    pub fn stat(&self, key: &str) -> u64 {
        let p = self.dir.join("memory.stat");
        let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        s.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    }

    fn read_u64(&self, file: &str) -> u64 {
        let p = self.dir.join(file);
        let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{}: {s:?}", p.display()))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("rmdir {}: {e}", self.dir.display());
        }
    }
}

/// Pin `pid`'s threads to vCPU 0 beside a thread of ours that wakes every millisecond at
/// real-time priority there: QEMU's TCG soft-TLB is flushed only on a CR3 reload, and x86
/// does not flush the TLB when page_idle or DAMON clear an Accessed bit, so a child
/// spinning alone on a vCPU turns invisible to both (the measurement and the reasoning:
/// `co_schedule` in tests/lab_ops.rs). The monitor runs on vCPU 1.
pub fn co_schedule(pid: u32) {
    churn_beside(pid);
    pin(0, monitor_cpu());
}

/// [`co_schedule`]'s first half: pin `pid`'s threads to vCPU 0 beside the churn thread,
/// leaving this thread (and what it spawns later) where it is.
pub fn churn_beside(pid: u32) {
    static CHURN: std::sync::Once = std::sync::Once::new();
    CHURN.call_once(|| {
        std::thread::spawn(|| {
            pin(0, 0);
            // Real-time priority, so each wakeup preempts the child at once (a CFS thread
            // waking beside a CPU-bound one may wait for the end of its slice).
            let param = libc::sched_param { sched_priority: 1 };
            // SAFETY: sched_setscheduler reads one sched_param through a valid pointer.
            let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            assert_eq!(rc, 0, "SCHED_FIFO: {}", std::io::Error::last_os_error());
            loop {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    });
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("child tasks");
    for t in tasks.flatten() {
        let tid: i32 = t.file_name().to_string_lossy().parse().expect("tid");
        pin(tid, 0);
    }
}

/// The monitor's vCPU: 1, or 0 on a one-vCPU guest. A kdamond goes there too
/// ([`pin`] its pid), beside madvd's monitor and away from the children.
pub fn monitor_cpu() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n.clamp(1, 2) - 1) as usize
}

pub fn pin(tid: i32, cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and sched_setaffinity get
    // valid pointers to it for the duration of the calls.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity({tid}): {}",
        std::io::Error::last_os_error()
    );
}
