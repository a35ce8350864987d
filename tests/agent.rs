//! `madvd agent` end to end: config checking with file:line:column errors (any user), and,
//! as root, a live agent selecting a workload child through a cgroup it creates and by pid,
//! scraped over loopback while it runs, reloaded (bad config kept out, SIGHUP, good config
//! taken), with nothing left behind.

#[path = "../src/agent/metrics/parsed.rs"]
mod parsed;

mod common;

use assert_cmd::Command;
use common::{exe, repo, spawn_sized};
use madvd_workload::Client as Workload;
use madvd_workload::WorkloadSpec;
use parsed::Parsed;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

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

/// `madvd agent --check --config CFG`: exit code and stderr.
fn agent_check(cfg: &Path) -> (Option<i32>, String) {
    let out = Command::new(exe())
        .args(["agent", "--check", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), se)
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
    let (code, se) = agent_check(&cfg);
    assert_eq!(code, Some(1), "{se}");
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
    let (code, se) = agent_check(&cfg);
    assert_eq!(code, Some(1), "{se}");
    let want = format!("{}:2:", d.path().join("p.ron").display());
    assert!(se.contains(&want) && se.contains("dontneed"), "{se}");

    // A missing policy file.
    std::fs::remove_file(d.path().join("p.ron")).unwrap();
    let (code, se) = agent_check(&cfg);
    assert_ne!(code, Some(0), "{se}");
    // Placed at the config's `policy:` value (issue 12).
    let want = format!(
        "{}:1:51: cannot read policy {}: ",
        cfg.display(),
        d.path().join("p.ron").display()
    );
    assert!(se.contains(&want), "{se}");
}

/// GET `path` on 127.0.0.1:`port`: (status line, body).
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn scrape(port: u16) -> Parsed {
    let (status, body) = get(port, "/metrics").expect("metrics reachable");
    assert_eq!(status, "HTTP/1.1 200 OK");
    parsed::text(&body).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{body}"))
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
    /// Under the v2 tree: `/sys/fs/cgroup` on a v2-only host, `/sys/fs/cgroup/unified` on a
    /// hybrid one.
    fn create() -> Option<TestCgroup> {
        let parent = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("cgroup.controllers").exists())?;
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

/// Scrape `port` until `f` holds for the scrape (left in `m`), at most `limit_s` seconds.
fn scrape_until(port: u16, limit_s: u64, m: &mut Parsed, f: impl Fn(&Parsed) -> bool) -> bool {
    wait_until(Duration::from_secs(limit_s), || {
        *m = scrape(port);
        f(m)
    })
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

fn v(f: &Parsed, name: &str, labels: &[(&str, &str)]) -> f64 {
    f.value(name, labels).unwrap_or(-1.0)
}

#[test]
fn live_agent_selects_scrapes_reloads_and_cleans_up() {
    engine::need_root!("process_madvise/pagemap on a child, and a test cgroup");
    let Some(cg) = TestCgroup::create() else {
        engine::skip!("no writable cgroup v2 tree at /sys/fs/cgroup or /sys/fs/cgroup/unified");
    };
    let wl = spawn_sized(48 << 20);
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
    // A group added by a reload: it selects nothing, and its policy is `policy`.
    let new_group = |policy: &str| {
        format!("  (name: \"new\", select: Comm(\"nonexistent\"), policy: \"{policy}\"),\n")
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
    let mut m = Parsed::default();
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
    std::fs::write(&cfg, config("stat.ron", &new_group("bad.ron"))).unwrap();
    let ok = scrape_until(port, 5, &mut m, |m| {
        v(m, "madvd_config_reload_errors_total", &[]) == 1.0
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
    let ok = scrape_until(port, 3, &mut m, |m| {
        v(m, "madvd_config_reload_errors_total", &[]) == 2.0
    });
    assert!(ok, "SIGHUP did not reload: {m:#?}");

    // A good change is taken: the new group starts, the unchanged ones keep running.
    let before = v(&m, "madvd_group_snapshots_total", &[("group", "bycg")]);
    std::fs::write(&cfg, config("stat.ron", &new_group("stat.ron"))).unwrap();
    let ok = scrape_until(port, 5, &mut m, |m| {
        v(m, "madvd_config_reloads_total", &[]) == 1.0
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
    let tried = |m: &Parsed, scheme: &str| {
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
    std::fs::write(&cfg, config("stat2.ron", &new_group("stat.ron"))).unwrap();
    let ok = scrape_until(port, 8, &mut m, |m| {
        v(m, "madvd_config_reloads_total", &[]) == 2.0
            && v(m, "madvd_group_targets", &[("group", "bycg")]) == 1.0
            && tried(m, "all2") > 0.0
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
    let ok = scrape_until(port, 5, &mut m, |m| {
        v(m, "madvd_group_targets", &[("group", "bycg")]) == 0.0
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
    engine::need_root!("pagemap and process_madvise on a child");
    let wl = spawn_sized(32 << 20);
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("stat.ron"), STAT_POLICY).unwrap();
    let cfg = d.path().join("agent.ron");
    std::fs::write(
        &cfg,
        format!(
            "(targets: [(name: \"one\", select: Pid({}), policy: \"stat.ron\", ops: Named(\"smaps\"), pid_metrics: 1)], listen: \"off\")\n",
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
    let m = parsed::text(&so).unwrap_or_else(|e| panic!("{e}\n{so}"));
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
    // Per-pid series, asked for with pid_metrics: this process, its memory.
    let pid = wl.pid().to_string();
    assert!(
        v(
            &m,
            "madvd_target_rss_bytes",
            &[("group", "one"), ("pid", &pid), ("comm", "madvd")]
        ) > 0.0,
        "{so}"
    );
    assert_eq!(
        v(&m, "madvd_group_pid_series_omitted", &[("group", "one")]),
        0.0
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
        "automountServiceAccountToken: false",
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
    // Documentation= names files the .deb installs (Cargo.toml's package.metadata.deb).
    let cargo = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
    for line in unit.lines().filter(|l| l.starts_with("Documentation=")) {
        for uri in line["Documentation=".len()..].split_whitespace() {
            let path = uri.strip_prefix("file:///").expect("a file:// URI");
            assert!(
                cargo.contains(&format!("\"{path}\"")),
                "{uri}: not installed by the .deb"
            );
        }
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
        unit.replace("/usr/bin/madvd", &exe().display().to_string()),
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

/// An agent on loopback with one group that matches nothing (runs as any user).
fn idle_agent(d: &Path, port: u16, extra_args: &[&str]) -> AgentChild {
    std::fs::write(d.join("stat.ron"), STAT_POLICY).unwrap();
    let cfg = d.join("agent.ron");
    std::fs::write(
        &cfg,
        "(targets: [(name: \"none\", select: Comm(\"no-such-comm\"), policy: \"stat.ron\", ops: Named(\"smaps\"))], listen: \"off\")\n",
    )
    .unwrap();
    let child = std::process::Command::new(exe())
        .args(["agent", "--for", "60s", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&cfg)
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    AgentChild(Some(child))
}

fn sigterm(c: &AgentChild) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(c.0.as_ref().unwrap().id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

/// 50 clients that send one byte a second and never finish, and 20 idle connections: a
/// scrape still answers within 1 s, and SIGTERM still ends the agent within 5 s.
#[test]
fn stalled_clients_neither_block_scrapes_nor_delay_sigterm() {
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agent = idle_agent(d.path(), port, &[]);
    let up = wait_until(Duration::from_secs(10), || {
        get(port, "/healthz").is_some_and(|(s, _)| s == "HTTP/1.1 200 OK")
    });
    assert!(up, "agent never served /healthz");
    let addr = ("127.0.0.1", port);
    let _idle: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let feeder = std::thread::spawn(move || {
        let connect = || {
            let mut s = TcpStream::connect(addr).ok()?;
            s.write_all(b"G").ok()?;
            Some(s)
        };
        let mut drips: Vec<Option<TcpStream>> = (0..50).map(|_| connect()).collect();
        let body = b"ET /metrics HTTP/1.1\r\nHost: x\r\n";
        // One byte a second on each, reconnecting those the server cut off (bounded).
        for tick in 0..30 {
            if st.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            for d in drips.iter_mut() {
                let alive = d
                    .as_mut()
                    .is_some_and(|s| s.write_all(&body[tick % body.len()..][..1]).is_ok());
                if !alive {
                    *d = connect();
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        drips.iter().filter(|d| d.is_some()).count()
    });
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..3 {
        let t0 = Instant::now();
        let m = scrape(port);
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(1), "scrape took {took:?}");
        assert_eq!(v(&m, "madvd_group_targets", &[("group", "none")]), 0.0);
        std::thread::sleep(Duration::from_millis(700));
    }
    // SIGTERM while the clients are still at it.
    let t0 = Instant::now();
    sigterm(&agent);
    let (st, se) = agent.wait(Duration::from_secs(5));
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(st.success(), "{st}\n{se}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    assert!(TcpStream::connect(addr).is_err(), "listener still open");
    let open = feeder.join().unwrap();
    assert!(open > 0, "the drip-feed clients never held connections");
}

/// Run with stderr to a file (not a terminal): every line is JSON, none has escape codes,
/// the final error included.
#[test]
fn logs_are_json_lines_off_a_terminal() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("stat.ron"), STAT_POLICY).unwrap();
    let cfg = d.path().join("agent.ron");
    std::fs::write(
        &cfg,
        "(targets: [\n  (name: \"k\", select: Comm(\"kthreadd\"), policy: \"stat.ron\", ops: Named(\"smaps\")),\n  (name: \"cg\", select: Cgroup(\"/sys/fs/cgroup/no-such-madvd-test\"), policy: \"stat.ron\", ops: Named(\"smaps\")),\n], listen: \"off\")\n",
    )
    .unwrap();
    let log = d.path().join("stderr.log");
    let run = |args: &[&str]| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        std::process::Command::new(exe())
            .args(args)
            .env("MADVD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(f)
            .output()
            .unwrap()
            .status
    };
    let cfg_s = cfg.display().to_string();
    assert!(run(&["agent", "--config", &cfg_s, "--for", "1500ms"]).success());
    // A failure at start: its error line is JSON too.
    let bad = d.path().join("missing.ron").display().to_string();
    assert_eq!(run(&["agent", "--config", &bad]).code(), Some(1));
    // And so is a usage error.
    assert_eq!(
        run(&["agent", "--config", &cfg_s, "--bogus"]).code(),
        Some(2)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 4, "{text}");
    for l in &lines {
        assert!(!l.contains('\x1b'), "escape code in {l:?}");
        let j: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
        assert!(j["level"].is_string() && j["message"].is_string(), "{l}");
    }
    let msgs: Vec<String> = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("madvd agent: stopped")),
        "{text}"
    );
    assert!(msgs.iter().any(|m| m.contains("missing.ron")), "{text}");
    assert!(msgs.iter().any(|m| m.contains("--bogus")), "{text}");
    // Text on request, still without colour off a terminal.
    let out = Command::new(exe())
        .args(["agent", "--log-format", "text", "--config", &bad])
        .output()
        .unwrap();
    let se = String::from_utf8_lossy(&out.stderr);
    assert!(
        se.starts_with("madvd: error: ") && !se.contains('\x1b'),
        "{se}"
    );
}

/// A real Prometheus (Debian's `prometheus`, on loopback, temp config and storage) scrapes the
/// agent, and the advised-bytes series comes back through its HTTP API; `promtool check
/// metrics` accepts what the agent serves.
#[test]
fn real_prometheus_scrapes_the_agent() {
    if !engine::testkit::is_root() {
        engine::skip!("needs root: process_madvise on a workload child");
    }
    let found = |b: &str| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !found("prometheus") || !found("promtool") {
        engine::skip!("prometheus/promtool not installed (tests/run installs Debian's prometheus)");
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
    std::fs::write(
        d.path().join("cold.ron"),
        "(schemes: [(name: \"all\", pattern: (), action: cold)])\n",
    )
    .unwrap();
    let cfg = d.path().join("agent.ron");
    std::fs::write(
        &cfg,
        format!(
            "(targets: [(name: \"w\", select: Pid({}), policy: \"cold.ron\", ops: Named(\"smaps\"))], listen: \"off\")\n",
            wl.pid()
        ),
    )
    .unwrap();
    let port = free_port();
    let agent = std::process::Command::new(exe())
        .args(["agent", "--for", "90s", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = AgentChild(Some(agent));

    let prom_port = free_port();
    std::fs::write(
        d.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: madvd\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let prom = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            d.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            d.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _prom = AgentChild(Some(prom));
    let query_opt = |q: &str| -> Option<Vec<serde_json::Value>> {
        let (status, body) = get(prom_port, &format!("/api/v1/query?query={q}"))?;
        if !status.contains("200") {
            return None;
        }
        // Go may answer chunked; the JSON object is the part between the outer braces.
        let (a, b) = (body.find('{')?, body.rfind('}')?);
        let j: serde_json::Value = serde_json::from_str(&body[a..=b]).ok()?;
        j["data"]["result"].as_array().cloned()
    };
    let query = |q: &str| query_opt(q).unwrap_or_default();
    let value = |r: &serde_json::Value| -> f64 {
        r["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1.0)
    };
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(60), || {
        last = query("madvd_group_advised_bytes_total");
        last.iter()
            .any(|r| r["metric"]["group"] == "w" && r["metric"]["job"] == "madvd" && value(r) > 0.0)
    });
    assert!(ok, "advised bytes never reached Prometheus: {last:?}");
    let up = query("up");
    assert!(
        up.iter()
            .any(|r| r["metric"]["job"] == "madvd" && value(r) == 1.0),
        "{up:?}"
    );

    // promtool lints what a plain GET returns.
    let (_, body) = get(port, "/metrics").unwrap();
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sigterm(&agent);
    let (st, se) = agent.wait(Duration::from_secs(5));
    assert!(st.success(), "{st}\n{se}");
    wl.kill();
}
