//! Cgroup selectors, per-cgroup PSI goals and memory-use goals on the hierarchy this machine
//! has: v2 only in the kernel lab (cgroup2 on `/sys/fs/cgroup`, the memory controller on —
//! the common case today), and this host's v1 hybrid (memory controller on v1 at
//! `/sys/fs/cgroup/memory`, the v2 tree with PSI files at `/sys/fs/cgroup/unified`).
//!
//! Each test makes its own group (a v2 group; on the hybrid a v1 memory group too, below
//! madvd's own), moves a workload child into it, and checks through the `madvd` binary:
//! - the agent's `Cgroup(...)` selector finds the child (`madvd agent --once`);
//! - `madvd check` accepts a policy whose `some_mem_psi_us` and `cgroup_mem_used_bp` goals
//!   name the group, and refuses one naming a group that does not exist;
//! - `madvd run --cgroup` watches the child and reads both goals (the used share near what
//!   the group's files say, no goal error).
//!
//! Run in the lab: `LAB_TESTS=lab_cgroup2 tests/lab-run --kernel lab`; on the host:
//! `cargo test --test lab_cgroup2` (as root).

mod common;

use common::{exe, MIB};
use engine::kernel::cgroup::{self, CgroupMounts};
use engine::SysRoot;
use madvd_workload::{Client as Workload, WorkloadSpec};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The group's memory limit.
const LIMIT: u64 = 256 * MIB;

/// A test group: its v2 directory and path (as `/proc/PID/cgroup` shows it), and where its
/// memory is accounted (the same group on v2 only; a v1 memory group on the hybrid).
struct Group {
    v2_dir: PathBuf,
    v2_path: String,
    mem_dir: PathBuf,
    mem_path: String,
}

fn write(p: &Path, v: &str) {
    std::fs::write(p, v).unwrap_or_else(|e| panic!("write {v:?} to {}: {e}", p.display()));
}

impl Group {
    fn make(name: &str) -> Group {
        let root = SysRoot::host();
        let m = CgroupMounts::discover(&root);
        let v2 =
            m.v2.clone()
                .expect("a cgroup v2 tree (for PSI) on this machine");
        let name = format!("{name}-{}", std::process::id());
        let v2_dir = v2.join(&name);
        std::fs::create_dir(&v2_dir).unwrap();
        let v2_path = format!("/{name}");
        let (mem_dir, mem_path) = if m.v2_memory {
            // The memory controller for the groups below the root (the lab's root has it
            // available; enabling it again is a no-op).
            write(&v2.join("cgroup.subtree_control"), "+memory");
            write(&v2_dir.join("memory.max"), &LIMIT.to_string());
            (v2_dir.clone(), v2_path.clone())
        } else {
            let v1 = m.v1_memory.clone().expect("a memory controller, v2 or v1");
            let me = cgroup::read_proc_cgroup(&root, std::process::id()).unwrap();
            let own = cgroup::v1_memory_path(&me)
                .expect("our v1 memory group")
                .to_string();
            let path = format!("{}/{name}", own.trim_end_matches('/'));
            let dir = v1.join(path.trim_start_matches('/'));
            std::fs::create_dir(&dir).unwrap();
            write(&dir.join("memory.limit_in_bytes"), &LIMIT.to_string());
            (dir, path)
        };
        Group {
            v2_dir,
            v2_path,
            mem_dir,
            mem_path,
        }
    }

    /// A workload child of `size` bytes started inside the group: a shell enters it, then
    /// execs the child, so the child's memory is charged here (neither v2 nor v1 by default
    /// moves the charges of a process that changes group).
    fn spawn(&self, size: u64) -> Workload {
        let spec = WorkloadSpec {
            size,
            ..WorkloadSpec::default()
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"for g in "$1" "$2"; do echo $$ > "$g/cgroup.procs" || exit 1; done; shift 2; exec "$@""#)
            .arg("sh")
            .arg(&self.v2_dir)
            .arg(&self.mem_dir)
            .arg(exe())
            .arg("workload")
            .args(spec.to_args());
        Workload::spawn_with(cmd).expect("a workload child inside the group")
    }

    fn used_bp(&self) -> u64 {
        let file = if self.mem_dir == self.v2_dir {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        };
        let v = std::fs::read_to_string(self.mem_dir.join(file)).unwrap();
        v.trim().parse::<u64>().unwrap() * 10_000 / LIMIT
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The processes left when the workload was reaped; the kernel may take a moment to
        // empty the group.
        let t0 = Instant::now();
        for d in [&self.mem_dir, &self.v2_dir] {
            while std::fs::remove_dir(d).is_err() && d.exists() {
                if t0.elapsed() > Duration::from_secs(5) {
                    eprintln!("cannot remove {}", d.display());
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn policy(dir: &Path, psi_group: &str, mem_group: &str) -> PathBuf {
    let p = dir.join("goals.ron");
    let text = format!(
        r#"(
    monitor: (sample: "10 ms", aggr: "100 ms"),
    schemes: [(
        name: "cold",
        pattern: (accesses: (min: 0, max: 0)),
        action: stat,
        quota: (size: "64 MiB", reset_interval: "100 ms", goals: [
            (metric: some_mem_psi_us, target: "1 ms", cgroup: "{psi_group}"),
            (metric: cgroup_mem_used_bp, target: 5000, cgroup: "{mem_group}"),
        ]),
    )],
)"#
    );
    std::fs::write(&p, text).unwrap();
    p
}

fn output(cmd: &mut Command) -> (bool, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn lab_hierarchy_is_v2_only_with_the_memory_controller() {
    engine::lab_or_skip!("the v2-only hierarchy is the lab's; this host is a v1 hybrid");
    let m = CgroupMounts::discover(&SysRoot::host());
    assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")), "{m:?}");
    assert!(m.v2_memory, "{m:?}");
    assert_eq!(m.v1_memory, None, "{m:?}");
}

#[test]
fn cgroup_selector_and_goals_on_this_hierarchy() {
    engine::need_root!("making cgroups and moving a process into one");
    let g = Group::make("madvd-cg");
    let w = g.spawn(16 * MIB);
    let dir = tempfile::tempdir().unwrap();

    // `madvd check`: both goal sources found; a group that does not exist is named.
    let pol = policy(dir.path(), &g.v2_path, &g.mem_path);
    let (ok, _, err) = output(Command::new(exe()).arg("check").arg(&pol));
    assert!(ok, "{err}");
    let bad = policy(dir.path(), "/madvd-no-such-group", &g.mem_path);
    let (ok, _, err) = output(Command::new(exe()).arg("check").arg(&bad));
    assert!(
        !ok && err.contains("memory PSI of /madvd-no-such-group is not available"),
        "{err}"
    );
    let pol = policy(dir.path(), &g.v2_path, &g.mem_path);

    // The agent's Cgroup selector (the v2 directory) finds the child.
    let conf = dir.path().join("agent.ron");
    std::fs::write(
        &conf,
        format!(
            r#"(targets: [(name: "cg", select: Cgroup("{}"), policy: "{}", ops: Named("smaps"))],
    listen: "off", dry_run: true)"#,
            g.v2_dir.display(),
            pol.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = output(
        Command::new(exe())
            .args(["agent", "--once", "--config"])
            .arg(&conf),
    );
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("pid {} (madvd) added", w.pid())),
        "the selector did not find the child: {err}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("madvd_group_targets{")
            && l.contains("\"cg\"")
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(1.0)),
        "{out}"
    );

    // `madvd run --cgroup`: the child watched, both goals read from the group's files.
    let (ok, out, err) = output(
        Command::new(exe())
            .args([
                "run",
                "--json",
                "--dry-run",
                "--ops",
                "smaps",
                "--for",
                "6s",
                "--every",
                "1s",
            ])
            .arg("--cgroup")
            .arg(&g.v2_dir)
            .arg("--policy")
            .arg(&pol),
    );
    assert!(ok, "{err}");
    let last: Value = serde_json::from_str(out.lines().last().expect("a final line")).unwrap();
    assert_eq!(last["targets"], 1, "{last}");
    let s = &last["schemes"][0];
    assert_eq!(
        s["inactive_reason"],
        Value::Null,
        "a goal source failed: {s}"
    );
    let goals = s["goal_values"]
        .as_array()
        .unwrap_or_else(|| panic!("no goal values (no actuation round yet?): {last}"));
    assert_eq!(goals.len(), 2, "{s}");
    // The used share the goal read against the group's own files now (the workload's
    // 16 MiB of 256: ~625 bp), within what the group may have gained or lost meanwhile.
    let read = goals[1].as_u64().unwrap();
    let now = g.used_bp();
    assert!(
        read >= 500 && read.abs_diff(now) <= 300,
        "goal {read} bp, files {now} bp"
    );
    drop(w);
}
