//! `madvd agent` end to end: config checking with file:line:column errors (any user), and,
//! as root, a live agent selecting a workload child through a cgroup it creates and by pid,
//! scraped over loopback while it runs, reloaded (bad config kept out, SIGHUP, good config
//! taken), with nothing left behind.

#[path = "../src/agent/expo.rs"]
mod expo;

use assert_cmd::Command;
use engine::testkit::Workload;
use engine::workload::WorkloadSpec;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_madvd"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const STAT_POLICY: &str = r#"// Count every region, advise nothing.
(schemes: [(name: "all", pattern: (), action: stat)])
"#;

#[test]
fn shipped_example_config_checks() {
    let out = Command::new(exe())
        .args(["agent", "--check", "--config"])
        .arg(repo("deploy/agent.ron"))
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{so}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(so.contains(": ok: 3 group(s)"), "{so}");
    assert!(so.contains("web: Cgroup("), "{so}");
}

#[test]
fn bad_config_and_bad_policy_name_file_line_column() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("agent.ron");
    std::fs::write(
        &cfg,
        "(\n  targets: [\n    (name: \"w\", select: Comm(\"x\"), policy: \"p.ron\"),\n  ],\n  rescan: \"ten seconds\",\n)\n",
    )
    .unwrap();
    let out = Command::new(exe())
        .args(["agent", "--check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let se = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:5:11: rescan:", cfg.display());
    assert!(se.contains(&want), "{se}");

    // The config is fine, its policy is not: the policy's position is named.
    std::fs::write(
        &cfg,
        "(targets: [(name: \"w\", select: Comm(\"x\"), policy: \"p.ron\")])\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("p.ron"),
        "(schemes: [\n  (name: \"a\", pattern: (), action: dontneed),\n])\n",
    )
    .unwrap();
    let out = Command::new(exe())
        .args(["agent", "--check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let se = String::from_utf8_lossy(&out.stderr);
    let want = format!("{}:2:", d.path().join("p.ron").display());
    assert!(se.contains(&want) && se.contains("dontneed"), "{se}");

    // A missing policy file.
    std::fs::remove_file(d.path().join("p.ron")).unwrap();
    let out = Command::new(exe())
        .args(["agent", "--check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(se.contains("p.ron: cannot read policy"), "{se}");
}

/// GET `path` on 127.0.0.1:`port`: (status line, body).
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn scrape(port: u16) -> BTreeMap<String, expo::Family> {
    let (status, body) = get(port, "/metrics").expect("metrics reachable");
    assert_eq!(status, "HTTP/1.1 200 OK");
    expo::parse(&body).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{body}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cgroup made under the v2 tree for the test; processes moved back and removed on drop.
struct TestCgroup {
    dir: PathBuf,
    parent: PathBuf,
}

impl TestCgroup {
    fn create() -> Option<TestCgroup> {
        let parent = PathBuf::from("/sys/fs/cgroup/unified");
        if !parent.join("cgroup.procs").exists() {
            return None;
        }
        let dir = parent.join(format!("madvd-agent-test-{}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(TestCgroup { dir, parent })
    }
    fn enter(&self, pid: u32) {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).unwrap();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(t) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for p in t.lines() {
                let _ = std::fs::write(self.parent.join("cgroup.procs"), p);
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("could not remove {}", self.dir.display());
    }
}

/// The agent child, killed on drop (a failed assertion must not leave it running).
struct AgentChild(Option<Child>);

impl AgentChild {
    fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut c = self.0.take().unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                let mut se = String::new();
                c.stderr.take().unwrap().read_to_string(&mut se).unwrap();
                return (st, se);
            }
            if t0.elapsed() > limit {
                let _ = c.kill();
                let _ = c.wait();
                panic!("agent did not stop within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AgentChild {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn v(f: &BTreeMap<String, expo::Family>, name: &str, labels: &[(&str, &str)]) -> f64 {
    expo::value(f, name, labels).unwrap_or(-1.0)
}

#[test]
fn live_agent_selects_scrapes_reloads_and_cleans_up() {
    if !engine::testkit::is_root() {
        engine::skip!("needs root: process_madvise/pagemap on a child, and a test cgroup");
    }
    let Some(cg) = TestCgroup::create() else {
        engine::skip!("no writable cgroup v2 tree at /sys/fs/cgroup/unified");
    };
    let spec = WorkloadSpec {
        size: 48 << 20,
        ..Default::default()
    };
    let wl = Workload::spawn(exe(), &spec).expect("workload child");
    let pid = wl.pid();
    cg.enter(pid);

    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("stat.ron"), STAT_POLICY).unwrap();
    let cfg = d.path().join("agent.ron");
    let port = free_port();
    // The cgroup group comes first: it takes the child; the pid group then finds it taken.
    let config = |bycg_policy: &str, extra: &str| {
        format!(
            "(targets: [\n  (name: \"bycg\", select: Cgroup(\"{}\"), policy: \"{bycg_policy}\"),\n  (name: \"bypid\", select: Pid({pid}), policy: \"stat.ron\", ops: Named(\"smaps\")),\n  (name: \"kthreads\", select: Comm(\"kthreadd\"), policy: \"stat.ron\", ops: Named(\"smaps\")),\n{extra}],\n rescan: \"1 s\", listen: \"off\")\n",
            cg.dir.display()
        )
    };
    std::fs::write(&cfg, config("stat.ron", "")).unwrap();
    let child = std::process::Command::new(exe())
        .args(["agent", "--for", "20s", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&cfg)
        .env("MADVD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = AgentChild(Some(child));

    // The target appears in its group and is sampled.
    let mut m = BTreeMap::new();
    let ok = wait_until(Duration::from_secs(6), || {
        if get(port, "/healthz").map(|(s, _)| s) != Some("HTTP/1.1 200 OK".into()) {
            return false;
        }
        m = scrape(port);
        v(&m, "madvd_group_targets", &[("group", "bycg")]) == 1.0
            && v(&m, "madvd_group_samples_total", &[("group", "bycg")]) > 0.0
            && v(
                &m,
                "madvd_group_actuation_rounds_total",
                &[("group", "bycg")],
            ) > 0.0
    });
    assert!(ok, "bycg never had its target sampled: {m:#?}");
    assert_eq!(v(&m, "madvd_group_targets", &[("group", "bypid")]), 0.0);
    // Kernel threads are never targets: refused once each, counted.
    assert_eq!(v(&m, "madvd_group_targets", &[("group", "kthreads")]), 0.0);
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        assert_eq!(
            v(
                &m,
                "madvd_group_target_refusals_total",
                &[("group", "kthreads"), ("reason", "kernel_thread")]
            ),
            1.0,
            "{m:#?}"
        );
    } else {
        engine::testkit::skip(
            "agent::live_agent_selects_scrapes_reloads_and_cleans_up",
            "no kthreadd visible in this pid namespace: the kernel-thread refusal is not checked",
        );
    }
    assert!(v(&m, "madvd_group_regions", &[("group", "bycg")]) >= 1.0);
    let all = [("group", "bycg"), ("scheme", "all"), ("action", "stat")];
    assert!(
        v(&m, "madvd_scheme_tried_regions_total", &all) > 0.0,
        "{m:#?}"
    );
    assert_eq!(v(&m, "madvd_scheme_active", &all), 1.0);
    assert_eq!(v(&m, "madvd_config_last_reload_success", &[]), 1.0);

    // A bad config (its policy names an unknown action) is refused; the old one runs on.
    std::fs::write(
        d.path().join("bad.ron"),
        "(schemes: [(name: \"x\", pattern: (), action: zap)])\n",
    )
    .unwrap();
    std::fs::write(
        &cfg,
        config(
            "stat.ron",
            "  (name: \"new\", select: Comm(\"nonexistent\"), policy: \"bad.ron\"),\n",
        ),
    )
    .unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        m = scrape(port);
        v(&m, "madvd_config_reload_errors_total", &[]) == 1.0
    });
    assert!(ok, "bad config not refused: {m:#?}");
    assert_eq!(v(&m, "madvd_config_last_reload_success", &[]), 0.0);
    assert_eq!(v(&m, "madvd_config_reloads_total", &[]), 0.0);
    assert_eq!(v(&m, "madvd_group_targets", &[("group", "bycg")]), 1.0);
    assert_eq!(v(&m, "madvd_group_targets", &[("group", "new")]), -1.0);
    // SIGHUP re-reads it: still bad.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.0.as_ref().unwrap().id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let ok = wait_until(Duration::from_secs(3), || {
        m = scrape(port);
        v(&m, "madvd_config_reload_errors_total", &[]) == 2.0
    });
    assert!(ok, "SIGHUP did not reload: {m:#?}");

    // A good change is taken: the new group starts, the unchanged ones keep running.
    let before = v(&m, "madvd_group_snapshots_total", &[("group", "bycg")]);
    std::fs::write(
        &cfg,
        config(
            "stat.ron",
            "  (name: \"new\", select: Comm(\"nonexistent\"), policy: \"stat.ron\"),\n",
        ),
    )
    .unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        m = scrape(port);
        v(&m, "madvd_config_reloads_total", &[]) == 1.0
    });
    assert!(ok, "good config not taken: {m:#?}");
    assert_eq!(v(&m, "madvd_config_last_reload_success", &[]), 1.0);
    assert_eq!(v(&m, "madvd_group_targets", &[("group", "new")]), 0.0);
    assert_eq!(v(&m, "madvd_group_targets", &[("group", "bycg")]), 1.0);
    assert_eq!(
        v(&m, "madvd_group_targets_added_total", &[("group", "bycg")]),
        1.0
    );
    assert!(v(&m, "madvd_group_snapshots_total", &[("group", "bycg")]) >= before);

    // A policy change restarts its group: the process is taken again by the new pipeline,
    // and the counters carry over (they never go down; the old scheme's series stays).
    let tried = |m: &BTreeMap<String, expo::Family>, scheme: &str| {
        v(
            m,
            "madvd_scheme_tried_regions_total",
            &[("group", "bycg"), ("scheme", scheme), ("action", "stat")],
        )
    };
    let (snaps, tried_all) = (
        v(&m, "madvd_group_snapshots_total", &[("group", "bycg")]),
        tried(&m, "all"),
    );
    std::fs::write(
        d.path().join("stat2.ron"),
        STAT_POLICY.replace("\"all\"", "\"all2\""),
    )
    .unwrap();
    std::fs::write(
        &cfg,
        config(
            "stat2.ron",
            "  (name: \"new\", select: Comm(\"nonexistent\"), policy: \"stat.ron\"),\n",
        ),
    )
    .unwrap();
    let ok = wait_until(Duration::from_secs(8), || {
        m = scrape(port);
        v(&m, "madvd_config_reloads_total", &[]) == 2.0
            && v(&m, "madvd_group_targets", &[("group", "bycg")]) == 1.0
            && tried(&m, "all2") > 0.0
    });
    assert!(ok, "policy change not taken: {m:#?}");
    assert_eq!(
        v(&m, "madvd_group_targets_added_total", &[("group", "bycg")]),
        2.0
    );
    assert!(v(&m, "madvd_group_snapshots_total", &[("group", "bycg")]) >= snaps);
    assert!(tried(&m, "all") >= tried_all && tried_all > 0.0, "{m:#?}");
    assert!(
        v(
            &m,
            "madvd_group_info",
            &[
                ("group", "bycg"),
                ("policy", &d.path().join("stat2.ron").display().to_string())
            ]
        ) == 1.0,
        "{m:#?}"
    );

    // The child exits: dropped once.
    wl.kill();
    let ok = wait_until(Duration::from_secs(5), || {
        m = scrape(port);
        v(&m, "madvd_group_targets", &[("group", "bycg")]) == 0.0
    });
    assert!(ok, "exited child not dropped: {m:#?}");
    assert_eq!(
        v(
            &m,
            "madvd_group_targets_dropped_total",
            &[("group", "bycg")]
        ),
        1.0
    );

    let (st, se) = agent.wait(Duration::from_secs(20));
    assert!(st.success(), "{st}\n{se}");
    let added = format!("pid {pid} (madvd) added");
    // Added at start and again by the restarted group; dropped once when it exited.
    assert_eq!(se.matches(&added).count(), 2, "{se}");
    assert_eq!(se.matches(&format!("pid {pid} (madvd)")).count(), 3, "{se}");
    assert!(
        se.contains(&format!("pid {pid} (madvd) exited: dropped")),
        "{se}"
    );
    assert!(se.contains("config reload (file changed) refused"), "{se}");
    assert!(
        se.contains(&format!("{}:1:", d.path().join("bad.ron").display())),
        "{se}"
    );
    assert!(
        se.contains("config reloaded (file changed): started [new], stopped [], unchanged [bycg bypid kthreads]"),
        "{se}"
    );
    assert!(
        se.contains("config reloaded (file changed): started [bycg], stopped [], unchanged [bypid kthreads new]"),
        "{se}"
    );
    // Nothing left behind: the agent's port is closed (the cgroup goes with `cg`).
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(cg);
}

#[test]
fn once_prints_metrics_for_a_pid_target() {
    if !engine::testkit::is_root() {
        engine::skip!("needs root: pagemap and process_madvise on a child");
    }
    let wl = Workload::spawn(
        exe(),
        &WorkloadSpec {
            size: 32 << 20,
            ..Default::default()
        },
    )
    .expect("workload child");
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("stat.ron"), STAT_POLICY).unwrap();
    let cfg = d.path().join("agent.ron");
    std::fs::write(
        &cfg,
        format!(
            "(targets: [(name: \"one\", select: Pid({}), policy: \"stat.ron\", ops: Named(\"smaps\"))], listen: \"off\")\n",
            wl.pid()
        ),
    )
    .unwrap();
    let out = Command::new(exe())
        .args(["agent", "--once", "--dry-run", "--config"])
        .arg(&cfg)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = expo::parse(&so).unwrap_or_else(|e| panic!("{e}\n{so}"));
    assert_eq!(
        v(&m, "madvd_group_targets", &[("group", "one")]),
        1.0,
        "{so}"
    );
    assert!(
        v(
            &m,
            "madvd_group_actuation_rounds_total",
            &[("group", "one")]
        ) >= 1.0,
        "{so}"
    );
    assert!(
        v(&m, "madvd_group_samples_total", &[("group", "one")]) > 0.0,
        "{so}"
    );
    assert_eq!(
        v(
            &m,
            "madvd_group_info",
            &[("group", "one"), ("dry_run", "true"), ("ops", "smaps")]
        ),
        1.0,
        "{so}"
    );
    wl.kill();
}

/// The ConfigMap's files in deploy/k8s/daemonset.yaml (block scalars under `data:`).
fn configmap_files(yaml: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_data = false;
    for line in yaml.lines() {
        if line.starts_with("data:") {
            in_data = true;
            continue;
        }
        if !in_data {
            continue;
        }
        if line.starts_with("---") || (!line.is_empty() && !line.starts_with(' ')) {
            in_data = false;
            continue;
        }
        if let Some(key) = line
            .strip_prefix("  ")
            .filter(|l| !l.starts_with(' '))
            .and_then(|l| l.strip_suffix(": |"))
        {
            out.push((key.to_string(), String::new()));
        } else if let Some((_, text)) = out.last_mut() {
            text.push_str(line.strip_prefix("    ").unwrap_or(""));
            text.push('\n');
        }
    }
    out
}

#[test]
fn daemonset_configmap_checks() {
    let yaml = std::fs::read_to_string(repo("deploy/k8s/daemonset.yaml")).unwrap();
    let files = configmap_files(&yaml);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["agent.ron", "reclaim-cold.ron", "cold-deprioritize.ron"]
    );
    let d = tempfile::tempdir().unwrap();
    for (n, t) in &files {
        std::fs::write(d.path().join(n), t).unwrap();
    }
    let out = Command::new(exe())
        .args(["agent", "--check", "--config"])
        .arg(d.path().join("agent.ron"))
        .output()
        .unwrap();
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{so}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        so.contains("ok: 2 group(s)") && so.contains("0.0.0.0:9464"),
        "{so}"
    );
    for want in [
        "hostPID: true",
        "SYS_NICE",
        "SYS_PTRACE",
        "prometheus.io/scrape",
    ] {
        assert!(yaml.contains(want), "daemonset.yaml lacks {want}");
    }
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo("deploy/madvd.service")).unwrap();
    for want in [
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=CAP_SYS_NICE CAP_SYS_PTRACE",
    ] {
        assert!(unit.contains(want), "madvd.service lacks {want}");
    }
    let Ok(which) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        engine::skip!("systemd-analyze is not installed: the unit is not verified");
    };
    if !which.status.success() {
        engine::skip!("systemd-analyze does not run here: the unit is not verified");
    }
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("madvd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/madvd", &exe().display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    // Only messages about this unit count (the host's own units may have warnings).
    let ours: Vec<&str> = se.lines().filter(|l| l.contains("madvd.service")).collect();
    assert!(out.status.success() && ours.is_empty(), "{se}");
}
