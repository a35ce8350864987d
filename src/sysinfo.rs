//! The few `/proc` figures the front ends print as "memory saved": a process's VmRSS and
//! VmSwap (`/proc/PID/status`), the system's MemAvailable and free swap (`/proc/meminfo`).
//! Pure parsers over bytes plus thin readers rooted at a `SysRoot`.

use engine::SysRoot;
use serde::Serialize;

/// kB fields of a `/proc` key-value file (`Key:   123 kB`), in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = rest.split_whitespace();
        let v: u64 = it.next()?.parse().ok()?;
        Some(if it.next() == Some("kB") { v * 1024 } else { v })
    })
}

/// Memory of one process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcMem {
    pub rss: u64,
    pub swap: u64,
}

pub fn parse_status(text: &str) -> Option<ProcMem> {
    Some(ProcMem {
        rss: kb_field(text, "VmRSS")?,
        swap: kb_field(text, "VmSwap").unwrap_or(0),
    })
}

/// `None` when the process is gone (or is a kernel thread, which has no VmRSS).
pub fn proc_mem(root: &SysRoot, pid: u32) -> Option<ProcMem> {
    parse_status(&std::fs::read_to_string(root.pid_file(pid, "status")).ok()?)
}

/// System memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SysMem {
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

pub fn parse_meminfo(text: &str) -> Option<SysMem> {
    Some(SysMem {
        mem_total: kb_field(text, "MemTotal")?,
        mem_available: kb_field(text, "MemAvailable")?,
        swap_total: kb_field(text, "SwapTotal").unwrap_or(0),
        swap_free: kb_field(text, "SwapFree").unwrap_or(0),
    })
}

pub fn sys_mem(root: &SysRoot) -> Option<SysMem> {
    parse_meminfo(&std::fs::read_to_string(root.proc_file("meminfo")).ok()?)
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

/// CPU time a process used so far (user + system, all threads), µs, from `/proc/PID/stat`
/// fields 14 and 15 (clock ticks; proc(5)).
pub fn proc_cpu_us(root: &SysRoot, pid: u32) -> Option<u64> {
    parse_stat_cpu_ticks(&std::fs::read_to_string(root.pid_file(pid, "stat")).ok()?)
        .map(|t| t * 1_000_000 / clk_tck())
}

/// utime + stime ticks from a `/proc/PID/stat` line (the comm may contain spaces and
/// parentheses: fields are counted after the last `)`).
pub fn parse_stat_cpu_ticks(line: &str) -> Option<u64> {
    let rest = &line[line.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: field 3 (state) is f[0], so field N is f[N - 3].
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

/// `uname -r`.
pub fn kernel_release() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_meminfo() {
        let st = "Name:\tcat\nVmPeak:\t  1000 kB\nVmRSS:\t    2048 kB\nVmSwap:\t      12 kB\n";
        assert_eq!(
            parse_status(st),
            Some(ProcMem {
                rss: 2048 * 1024,
                swap: 12 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tkthreadd\n"), None);
        let mi = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   20000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n";
        let m = parse_meminfo(mi).unwrap();
        assert_eq!(m.mem_available, 20_000_000 * 1024);
        assert_eq!(m.swap_total, 0);
    }

    #[test]
    fn stat_cpu_ticks() {
        let l = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 2 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(l), Some(280));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
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
