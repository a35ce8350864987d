//! The few `/proc` figures the front ends print as "memory saved": a process's VmRSS and
//! VmSwap (`/proc/PID/status`), the system's MemAvailable and free swap (`/proc/meminfo`), a
//! process's CPU time (`/proc/PID/stat`). Parsed by the engine's `kernel/` readers (one parser
//! per `/proc` file), rooted at a `SysRoot`.

use engine::kernel::{meminfo, status};
use engine::SysRoot;
use serde::Serialize;

/// Memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcMem {
    pub rss: u64,
    pub swap: u64,
}

/// `None` when the process is gone (or is a kernel thread, which has no VmRSS).
pub fn proc_mem(root: &SysRoot, pid: u32) -> Option<ProcMem> {
    let st = status::read_status(&root.pid_file(pid, "status")).ok()?;
    Some(ProcMem {
        rss: st.vm_rss?,
        swap: st.vm_swap.unwrap_or(0),
    })
}

/// System memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SysMem {
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

pub fn sys_mem(root: &SysRoot) -> Option<SysMem> {
    let m = meminfo::read_system(root).ok()?;
    Some(SysMem {
        mem_total: m.mem_total()?,
        mem_available: m.mem_available()?,
        swap_total: m.swap_total().unwrap_or(0),
        swap_free: m.swap_free().unwrap_or(0),
    })
}

/// `/proc/PID/comm`, trimmed.
pub fn comm(root: &SysRoot, pid: u32) -> Option<String> {
    Some(
        std::fs::read_to_string(root.pid_file(pid, "comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

/// Pids whose comm is `name` (for `run --comm`).
pub fn pids_by_comm(root: &SysRoot, name: &str) -> std::io::Result<Vec<u32>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(&root.proc)? {
        let Ok(e) = e else { continue };
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if comm(root, pid).as_deref() == Some(name) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Pids in a cgroup (`cgroup.procs`, v1 or v2).
pub fn pids_in_cgroup(dir: &std::path::Path) -> std::io::Result<Vec<u32>> {
    let s = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    let mut v: Vec<u32> = s.lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

pub use engine::kernel::stat::proc_cpu_us;

/// `uname -r`.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// The one note `run`, `demo` and `agent` give when another proactive reclaimer (kernel
/// DAMON, DAMON_RECLAIM / LRU_SORT, senpai, oomd) is active: what it is and what it means
/// for the figures (`engine::kernel::coexist`, read only). `None` when nothing is seen.
pub fn coexistence_note(root: &SysRoot) -> Option<String> {
    let c = engine::kernel::coexist::Coexistence::detect(root);
    (!c.is_empty()).then(|| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_meminfo_and_stat_through_the_kernel_readers() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        std::fs::create_dir_all(root.pid_file(7, "")).unwrap();
        std::fs::create_dir_all(root.pid_file(2, "")).unwrap();
        let st = "Name:\tcat\nVmPeak:\t  1000 kB\nVmRSS:\t    2048 kB\nVmSwap:\t      12 kB\n";
        std::fs::write(root.pid_file(7, "status"), st).unwrap();
        std::fs::write(root.pid_file(2, "status"), "Name:\tkthreadd\n").unwrap();
        assert_eq!(
            proc_mem(&root, 7),
            Some(ProcMem {
                rss: 2048 * 1024,
                swap: 12 * 1024
            })
        );
        assert_eq!(proc_mem(&root, 2), None);
        assert_eq!(proc_mem(&root, 3), None);
        let mi = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        std::fs::write(root.proc_file("meminfo"), mi).unwrap();
        let m = sys_mem(&root).unwrap();
        assert_eq!(m.mem_available, 20_000_000 * 1024);
        assert_eq!(m.swap_total, 0);
        let l = "7 (a (weird) name) S 1 7 7 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 2 0 100 0 0";
        std::fs::write(root.pid_file(7, "stat"), l).unwrap();
        assert_eq!(
            proc_cpu_us(&root, 7),
            Some(280 * 1_000_000 / engine::kernel::stat::clk_tck())
        );
        std::fs::write(root.pid_file(2, "stat"), "garbage").unwrap();
        assert_eq!(proc_cpu_us(&root, 2), None);
    }

    #[test]
    fn comm_and_cgroup_lookups_on_a_fixture() {
        let dir = tempfile::tempdir().unwrap();
        let root = SysRoot::under(dir.path());
        for (pid, c) in [(10, "postgres"), (11, "bash"), (12, "postgres")] {
            std::fs::create_dir_all(root.pid_file(pid, "")).unwrap();
            std::fs::write(root.pid_file(pid, "comm"), format!("{c}\n")).unwrap();
        }
        std::fs::create_dir_all(root.proc_file("sys")).unwrap();
        assert_eq!(pids_by_comm(&root, "postgres").unwrap(), vec![10, 12]);
        let cg = dir.path().join("cg");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.procs"), "12\n10\n12\n").unwrap();
        assert_eq!(pids_in_cgroup(&cg).unwrap(), vec![10, 12]);
    }
}
