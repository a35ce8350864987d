//! The `madvd` command as a user runs it: every subcommand, good and bad input. Bad input must
//! give exactly one error line naming the pid or path, a non-zero exit code from the table in
//! docs/cli.md, and leave nothing behind (no zram device, no stray child).

mod common;

use assert_cmd::Command;
use common::{exe, repo, spawn_sized};
use madvd_workload::Client as Workload;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn madvd() -> Command {
    let mut c = Command::new(exe());
    c.env_remove("RUST_LOG")
        .env_remove("MADVD_LOG")
        .timeout(Duration::from_secs(240));
    c
}

/// stderr is exactly one line, `madvd: error: …`, containing `needle`.
fn one_error_line(stderr: &[u8], needle: &str) {
    bi_error_line(stderr, &[needle]);
}

/// `madvd ARGS` (in the repository) exits with `code` and one error line naming `needle`.
fn fails(args: &[&str], code: i32, needle: &str) {
    let a = madvd()
        .args(args)
        .current_dir(repo("."))
        .assert()
        .code(code);
    one_error_line(&a.get_output().stderr, needle);
}

fn zram_devices() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("zram"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Hold the machine-wide swap lock (the one `engine::testkit::swap` and `madvd demo` take) so
/// the swaps can be compared before and after a demo without another test changing them in
/// between; the demo is told its parent holds it.
fn swap_lock() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(engine::kernel::zram::LOCK_PATH)
        .unwrap();
    // SAFETY: flock on an fd we own; blocks until the lock is ours.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    f
}

use engine::kernel::zram::LOCK_HELD_ENV;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| !s.contains("State:\tZ"))
        .unwrap_or(false)
}

fn small_child() -> Workload {
    spawn_sized(32 << 20)
}

// ---- help, usage ----------------------------------------------------------------------

#[test]
fn help_teaches() {
    let out = madvd()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let s = String::from_utf8(out).unwrap();
    for want in [
        "Start here",
        "madvd demo",
        "madvd ops",
        "Exit codes",
        "run",
        "monitor",
        "record",
        "report",
        "check",
    ] {
        assert!(s.contains(want), "--help lacks {want:?}:\n{s}");
    }
    let s = String::from_utf8(
        madvd()
            .args(["run", "--help"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(
        s.contains("Examples:") && s.contains("--dry-run") && s.contains("--for"),
        "{s}"
    );
    assert!(
        !s.contains("workload"),
        "the internal subcommand stays hidden"
    );
}

#[test]
fn for_garbage_is_a_usage_error() {
    fails(
        &[
            "run",
            "--policy",
            "policies/stat.ron",
            "--pid",
            "1",
            "--for",
            "garbage",
        ],
        2,
        "garbage",
    );
    fails(
        &[
            "record",
            "--sim",
            "stairs",
            "-o",
            "/dev/null",
            "--for",
            "30",
        ],
        2,
        "no unit",
    );
}

#[test]
fn missing_arguments_are_one_line_usage_errors() {
    fails(&["run", "--pid", "1"], 2, "--policy");
}

// ---- ops, check -------------------------------------------------------------------------

#[test]
fn ops_table_and_json() {
    let s = String::from_utf8(
        madvd()
            .arg("ops")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    for name in ["page_idle", "damon", "probe", "soft_dirty", "smaps", "sim"] {
        assert!(s.contains(name), "{name} missing:\n{s}");
    }
    assert!(s.contains("auto picks"), "{s}");
    let out = madvd()
        .args(["ops", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let arr = v.as_array().unwrap();
    assert!(arr.len() >= 6);
    for o in arr {
        assert!(o["name"].is_string() && o["usable"].is_boolean(), "{o}");
        assert_eq!(
            o["usable"].as_bool().unwrap(),
            o["why_not"].is_null(),
            "{o}"
        );
    }
}

#[test]
fn check_accepts_every_shipped_policy() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.iter().any(|f| f.ends_with("reclaim.ron")));
    assert!(files.iter().any(|f| f.ends_with("demo.ron")));
    let out = madvd()
        .arg("check")
        .args(&files)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| l.ends_with(")") && l.contains(": ok ("))
            .count(),
        files.len()
    );
}

#[test]
fn check_reports_path_line_column_for_each_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ron");
    std::fs::write(
        &bad,
        "(\n    schemes: [\n        (name: \"x\", pattern: (), action: dontneed),\n    ],\n)\n",
    )
    .unwrap();
    let bad2 = dir.path().join("bad2.ron");
    std::fs::write(
        &bad2,
        "(schemes: [(name: \"y\", pattern: (age: (min: \"3 parsecs\")), action: pageout)])",
    )
    .unwrap();
    let a = madvd()
        .arg("check")
        .arg(&bad)
        .arg(repo("policies/stat.ron"))
        .arg(&bad2)
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let first = format!("{}:3:", bad.display());
    assert!(
        err.lines()
            .any(|l| l.starts_with(&first) && l.contains("dontneed")),
        "{err}"
    );
    let second = format!("{}:1:", bad2.display());
    assert!(err.lines().any(|l| l.starts_with(&second)), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .contains("2 of 3 policy files invalid"),
        "{err}"
    );
}

/// Every policy written out in README.md and docs/ (```ron blocks with `schemes:`) passes
/// `check` too, as the files in policies/ do.
#[test]
fn check_accepts_every_policy_in_the_docs() {
    let dir = tempfile::tempdir().unwrap();
    let mut docs = vec![repo("README.md")];
    docs.extend(
        std::fs::read_dir(repo("docs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "md")),
    );
    let mut files = Vec::new();
    for d in &docs {
        let text = std::fs::read_to_string(d).unwrap();
        for (i, block) in text.split("```ron\n").skip(1).enumerate() {
            let block = &block[..block.find("```").unwrap()];
            if block.contains("schemes:") {
                let f = dir.path().join(format!(
                    "{}-{i}.ron",
                    d.file_stem().unwrap().to_string_lossy()
                ));
                std::fs::write(&f, block).unwrap();
                files.push(f);
            }
        }
    }
    assert!(
        files.iter().any(|f| f.ends_with("policy-format-0.ron")),
        "{files:?}"
    );
    let out = madvd()
        .arg("check")
        .args(&files)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(
        out.lines().filter(|l| l.contains(": ok (")).count(),
        files.len(),
        "{out}"
    );
}

/// A policy with no schemes is refused, at the list; a byte order mark is skipped.
#[test]
fn check_refuses_a_policy_without_schemes_and_skips_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ron");
    std::fs::write(&empty, "(\n    schemes: [],\n)\n").unwrap();
    let a = madvd().arg("check").arg(&empty).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.lines().any(|l| l
            == format!(
                "{}:2:14: schemes: no schemes: a policy needs at least one (a `stat` scheme only counts)",
                empty.display()
            )),
        "{err}"
    );
    let bom = dir.path().join("bom.ron");
    let mut text = b"\xef\xbb\xbf".to_vec();
    text.extend_from_slice(&std::fs::read(repo("policies/stat.ron")).unwrap());
    std::fs::write(&bom, text).unwrap();
    madvd()
        .arg("check")
        .arg(&bom)
        .assert()
        .success()
        .stdout(predicates::str::contains(": ok (2 schemes)"));
}

/// `m` (minutes in `--for`, MiB in `--sim-size`) is refused on the command line too, with
/// the spelling to use; huge sizes are "too large", with the largest.
#[test]
fn m_and_huge_values_on_the_command_line() {
    for (flag, value, needle) in [
        ("--for", "2m", "ambiguous (minutes or MiB?): write \"2min\""),
        (
            "--sim-size",
            "512m",
            "ambiguous (minutes or MiB?): write \"512MiB\"",
        ),
        ("--sim-size", "1e30", "is too large (the largest is 8 EiB)"),
        (
            "--sim-size",
            "99999999999999999999999",
            "is too large (the largest is 8 EiB)",
        ),
        ("--for", "1e30s", "is too long (the largest is 1000000000s"),
    ] {
        let a = madvd()
            .args(["record", "--sim", "stairs", "-o", "/dev/null", flag, value])
            .assert()
            .code(2);
        one_error_line(&a.get_output().stderr, needle);
    }
}

// ---- run --------------------------------------------------------------------------------

#[test]
fn run_unreadable_policy_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory cannot be read as a file, even by root.
    let a = madvd()
        .args(["run", "--policy"])
        .arg(dir.path())
        .args(["--pid", "1"])
        .assert()
        .code(1);
    one_error_line(&a.get_output().stderr, &dir.path().display().to_string());
    let missing = dir.path().join("nope.ron");
    let a = madvd()
        .args(["run", "--policy"])
        .arg(&missing)
        .args(["--pid", "1"])
        .assert()
        .code(1);
    one_error_line(&a.get_output().stderr, "nope.ron");
}

#[test]
fn run_unknown_pid_is_a_target_error() {
    fails(
        &[
            "run",
            "--policy",
            "policies/stat.ron",
            "--pid",
            "999999999",
            "--ops",
            "smaps",
        ],
        3,
        "999999999",
    );
    fails(
        &[
            "run",
            "--policy",
            "policies/stat.ron",
            "--comm",
            "no-such-comm-xyz",
        ],
        3,
        "no-such-comm-xyz",
    );
}

#[test]
fn run_refuses_pid_1_without_allow_pid1() {
    fails(
        &[
            "run",
            "--policy",
            "policies/stat.ron",
            "--pid",
            "1",
            "--ops",
            "smaps",
        ],
        3,
        "pid 1",
    );
}

#[test]
fn run_drops_a_target_that_exits_and_ends_cleanly() {
    engine::need_root!("to read another process's smaps");
    let w = small_child();
    let pid = w.pid();
    let run = std::process::Command::new(exe())
        .args([
            "run",
            "--policy",
            "policies/stat.ron",
            "--ops",
            "smaps",
            "--aggr",
            "1s",
            "--sample",
            "200ms",
            "--every",
            "1s",
            "--json",
            "--for",
            "60s",
            "--pid",
        ])
        .arg(pid.to_string())
        .current_dir(repo("."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    w.kill();
    let t0 = Instant::now();
    let out = run.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "run did not end when its only target exited"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains(&format!("pid {pid} exited")))
            .count(),
        1,
        "one drop line:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["final"], true);
    assert_eq!(last["reason"], "targets_gone", "{last}");
    assert_eq!(last["targets"], 0, "{last}");
}

#[test]
fn run_stops_on_sigint_with_a_final_summary() {
    engine::need_root!("to read another process's smaps");
    let w = small_child();
    let run = std::process::Command::new(exe())
        .args([
            "run",
            "--policy",
            "policies/stat.ron",
            "--ops",
            "smaps",
            "--aggr",
            "1s",
            "--sample",
            "200ms",
            "--json",
            "--pid",
        ])
        .arg(w.pid().to_string())
        .current_dir(repo("."))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["reason"], "SIGINT", "{last}");
    assert!(last["snapshots"].as_u64().unwrap() >= 1, "{last}");
    assert!(alive(w.pid()), "the target is left running");
}

// ---- monitor, record, report ------------------------------------------------------------

#[test]
fn monitor_once_json() {
    engine::need_root!("to read another process's smaps");
    let w = small_child();
    let out = madvd()
        .args([
            "monitor", "--ops", "smaps", "--aggr", "1s", "--sample", "200ms", "--once", "--json",
            "--pid",
        ])
        .arg(w.pid().to_string())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["pid"], w.pid());
    let regions = v["regions"].as_array().unwrap();
    assert!(regions.len() >= 3, "{v}");
    // The child's mapping is covered.
    let m = w.mapping();
    let covered: u64 = regions
        .iter()
        .map(|r| {
            let (s, e) = (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap());
            e.min(m.end).saturating_sub(s.max(m.start))
        })
        .sum();
    assert_eq!(covered, m.len(), "{v}");
    assert!(v["wss_bytes"].as_u64().unwrap() <= v["total_bytes"].as_u64().unwrap());
}

#[test]
fn monitor_unknown_pid() {
    fails(
        &["monitor", "--ops", "smaps", "--pid", "999999999"],
        3,
        "999999999",
    );
}

#[test]
fn record_sim_then_report_heatmap_wss_summary() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("stairs.rec");
    madvd()
        .args(["record", "--sim", "stairs", "--for", "20s", "-o"])
        .arg(&rec)
        .assert()
        .success();
    let text = std::fs::read_to_string(&rec).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].contains("\"format\":\"madvd-record\""),
        "{}",
        lines[0]
    );
    // Header, one line per 100 ms aggregation of 20 s (the first aggregation ends after the
    // first sample is checked), end line.
    let frames = lines.len() - 2;
    assert!((199..=200).contains(&frames), "{frames} snapshot lines");
    assert!(lines.last().unwrap().starts_with("{\"end\""));
    for (name, ext) in [("h.png", "png"), ("h.svg", "svg")] {
        let out = dir.path().join(name);
        madvd()
            .args(["report", "heatmap"])
            .arg(&rec)
            .arg("-o")
            .arg(&out)
            .assert()
            .success();
        let meta = std::fs::metadata(&out).unwrap();
        assert!(meta.len() > 10_000, "{ext} too small");
    }
    let out = madvd()
        .args(["report", "wss", "--json"])
        .arg(&rec)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    // stairs: a 10% window of 1 GiB is hot at any time.
    let p50 = v["percentiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0] == 50.0)
        .unwrap()[1]
        .as_u64()
        .unwrap();
    assert!((80 << 20..=140 << 20).contains(&p50), "wss p50 {p50}");
    let out = madvd()
        .args(["report", "summary", "--json"])
        .arg(&rec)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["snapshots"], frames);
    assert_eq!(v["ended"], "duration");
}

#[test]
fn report_on_a_truncated_record_renders_what_is_intact_and_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.rec");
    madvd()
        .args(["record", "--sim", "moving", "--for", "5s", "-o"])
        .arg(&rec)
        .assert()
        .success();
    let text = std::fs::read_to_string(&rec).unwrap();
    // Cut in the middle of snapshot line 31 (the 30th snapshot).
    let upto: usize = text.lines().take(30).map(|l| l.len() + 1).sum::<usize>() + 25;
    std::fs::write(&rec, &text[..upto]).unwrap();
    let out = dir.path().join("h.png");
    let a = madvd()
        .args(["report", "heatmap"])
        .arg(&rec)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    let errs: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("madvd: error:"))
        .collect();
    assert_eq!(errs.len(), 1, "{err}");
    assert!(errs[0].contains(&format!("{}:31:", rec.display())), "{err}");
    assert!(errs[0].contains("29 intact snapshots"), "{err}");
    assert!(
        std::fs::metadata(&out).unwrap().len() > 10_000,
        "the intact part was rendered"
    );
    // wss, summary too: output on stdout, then the one error line.
    let a = madvd()
        .args(["report", "summary"])
        .arg(&rec)
        .assert()
        .code(1);
    assert!(String::from_utf8_lossy(&a.get_output().stdout).contains("29 over"));
    one_error_line(&a.get_output().stderr, ":31:");
}

#[test]
fn report_on_garbage_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.rec");
    std::fs::write(&f, "this is not a record\n").unwrap();
    let a = madvd().args(["report", "summary"]).arg(&f).assert().code(1);
    one_error_line(&a.get_output().stderr, &format!("{}:1:", f.display()));
    let a = madvd()
        .args(["report", "wss"])
        .arg(dir.path().join("missing.rec"))
        .assert()
        .code(1);
    one_error_line(&a.get_output().stderr, "missing.rec");
}

#[test]
fn record_live_child() {
    engine::need_root!("to read another process's smaps");
    let w = small_child();
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("live.rec");
    madvd()
        .args([
            "record", "--ops", "smaps", "--aggr", "1s", "--sample", "200ms", "--for", "4s", "-o",
        ])
        .arg(&rec)
        .arg("--pid")
        .arg(w.pid().to_string())
        .assert()
        .success();
    let out = madvd()
        .args(["report", "summary", "--json"])
        .arg(&rec)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(v["snapshots"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["targets"][0]["id"], w.pid());
    assert_eq!(v["ops"], "smaps");
    // The target's memory out of memory when it first appears (`absent`: some of its
    // mappings, e.g. the binary's pages never read, are not resident): first frame only.
    let text = std::fs::read_to_string(&rec).unwrap();
    let frames: Vec<serde_json::Value> = text
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|f: &serde_json::Value| f.get("targets").is_some())
        .collect();
    let absent = |f: &serde_json::Value| f["targets"][0]["absent"].as_array().map_or(0, Vec::len);
    assert!(absent(&frames[0]) > 0, "{}", frames[0]);
    assert!(frames[1..].iter().all(|f| absent(f) == 0));
}

// ---- demo -------------------------------------------------------------------------------

/// The demo in short mode, as root: its JSON summary is complete and consistent, and the
/// policy found most of what the workload left untouched (saved/oracle ≥ 0.8 in the short
/// mode's 12 s measured window); the figures of the full demo belong to the bench
/// (docs/performance.md, "Demo"), not to a timed assertion.
#[test]
fn demo_short_json_summary() {
    engine::need_root!("the demo makes a zram swap and calls process_madvise");
    if !Path::new("/sys/class/zram-control").exists()
        && std::fs::read_to_string("/proc/swaps").map_or(true, |s| s.lines().count() < 2)
    {
        engine::skip!("no zram and no swap on this machine");
    }
    let _lock = swap_lock();
    let zram_before = zram_devices();
    let swaps_before = std::fs::read_to_string("/proc/swaps").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("demo.png");
    let out = madvd()
        .env(LOCK_HELD_ENV, "1")
        .args(["demo", "--short", "--json", "--heatmap"])
        .arg(&png)
        .assert()
        .success()
        .get_output()
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    for k in [
        "ops",
        "saved",
        "oracle_bytes",
        "saved_over_oracle",
        "throughput",
        "heatmap",
        "schemes",
        "workload_pid",
        "verified_pages",
        "bad_pages",
        "timeline",
    ] {
        assert!(!v[k].is_null(), "{k} missing: {v}");
    }
    assert_eq!(v["dry_run"], false);
    assert_eq!(
        v["ops"], "probe",
        "the refault probe is the best primitive on this host: {v}"
    );
    assert_eq!(v["bad_pages"], 0, "{v}");
    assert_eq!(
        v["verified_pages"].as_u64().unwrap(),
        v["size_bytes"].as_u64().unwrap() / 4096
    );
    let saved = v["saved"]["vm_swap_bytes"].as_i64().unwrap();
    let oracle = v["oracle_bytes"].as_u64().unwrap();
    let size = v["size_bytes"].as_u64().unwrap();
    // Consistency: the oracle is at most the cold 90% plus a hot set's worth; the ratio is
    // what it says it is; advised bytes cover what went to swap.
    assert!(oracle <= size && oracle >= size / 2, "{v}");
    let ratio = v["saved_over_oracle"].as_f64().unwrap();
    assert!(
        (ratio - saved.max(0) as f64 / oracle as f64).abs() < 1e-6,
        "{v}"
    );
    assert!(
        v["advised_bytes"].as_u64().unwrap() as i64 >= saved * 9 / 10,
        "{v}"
    );
    // Issue 14's floor for the demo (policies/reclaim.ron, the built-in policy: the
    // residency cut, the pace, the refault guard; docs/performance.md "Demo"). On a miss,
    // `timeline` in the JSON says when the saving stopped and what the quotas were.
    assert!(ratio >= 0.8, "saved/oracle {ratio} under the floor: {v}");
    assert!(v["throughput"]["before_ops_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["throughput"]["during_ops_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["hot_moved"], true, "{v}");
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
    // Nothing left behind.
    assert!(
        !alive(v["workload_pid"].as_u64().unwrap() as u32),
        "workload child left running"
    );
    assert_eq!(zram_devices(), zram_before, "zram device left behind");
    assert_eq!(
        std::fs::read_to_string("/proc/swaps").unwrap(),
        swaps_before
    );
}

/// Ctrl-C in the middle of the demo: exit 130, the workload child gone, the temporary swap
/// removed.
#[test]
fn demo_interrupted_leaves_nothing_behind() {
    engine::need_root!("the demo makes a zram swap and calls process_madvise");
    let _lock = swap_lock();
    let zram_before = zram_devices();
    let swaps_before = std::fs::read_to_string("/proc/swaps").unwrap();
    let mut demo = std::process::Command::new(exe())
        .env(LOCK_HELD_ENV, "1")
        .args(["demo", "--short"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the monitored phase (the child is up, swap made), then interrupt.
    let stderr = demo.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if l.contains("monitoring with") {
                let _ = tx.send(None);
            }
            all += &l;
            all += "\n";
        }
        let _ = tx.send(Some(all));
    });
    let first = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("demo reached monitoring");
    assert!(first.is_none(), "demo ended early: {first:?}");
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(demo.id() as i32, libc::SIGINT) };
    let status = demo.wait().unwrap();
    let all = loop {
        if let Some(s) = rx.recv_timeout(Duration::from_secs(30)).unwrap() {
            break s;
        }
    };
    assert_eq!(status.code(), Some(130), "{all}");
    let pid: u32 = all
        .lines()
        .find_map(|l| {
            l.strip_prefix("workload child pid ")
                .and_then(|r| r.split(':').next())
                .and_then(|p| p.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no child pid in:\n{all}"));
    assert!(!alive(pid), "workload child {pid} left running");
    assert_eq!(zram_devices(), zram_before, "zram device left behind");
    assert_eq!(
        std::fs::read_to_string("/proc/swaps").unwrap(),
        swaps_before
    );
    assert_eq!(
        all.lines()
            .filter(|l| l.starts_with("madvd: error:"))
            .count(),
        1,
        "{all}"
    );
}

/// Not root: the demo says what it needs and runs as a dry run (nothing advised).
#[test]
fn demo_not_root_runs_dry() {
    engine::need_root!("to drop to an unprivileged user");
    let Ok(setpriv) = which("setpriv") else {
        engine::skip!("setpriv (util-linux) not installed")
    };
    // The binary must be reachable by `nobody`; copy it to a world-readable temp dir.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("madvd");
    std::fs::copy(exe(), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(setpriv)
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args([
            "demo",
            "--short",
            "--json",
            "--for",
            "14s",
            "--size",
            "64MiB",
            "--heatmap",
        ])
        .arg(dir.path().join("h.png"))
        .env("TMPDIR", dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("not running as root")
            && stderr.contains("CAP_SYS_NICE")
            && stderr.contains("DRY RUN"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["saved"]["vm_swap_bytes"], 0);
    // One label per apply error, the metrics' (`dry_run`, not `dryrun`).
    let not_applied = v["not_applied"].as_object().unwrap();
    assert!(
        not_applied.contains_key("dry_run") && !not_applied.contains_key("dryrun"),
        "{not_applied:?}"
    );
    assert!(!alive(v["workload_pid"].as_u64().unwrap() as u32));
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.exists())
        .ok_or(())
}

// ---- bad input, answered (issue 12) -------------------------------------------------------
// Self-contained helpers: prefixed `bi_` so a later dedup of the helpers above does not clash.

/// A record of pid 4242 whose target exited before its first aggregation: snapshots, but
/// none of them has a target.
fn bi_record_without_targets(path: &Path) {
    let header = r#"{"format":"madvd-record","version":1,"source":{"kind":"pid","pids":[4242],"comms":["gone"]},"ops":"smaps","attrs":{"sample_us":5000,"aggr_us":100000,"ops_update_us":1000000,"min_nr_regions":10,"max_nr_regions":1000,"min_region_sz":4096},"started_unix_ms":0}"#;
    let text = format!(
        "{header}\n{}\n{}\n{}\n",
        r#"{"t_us":100000,"aggr":1,"targets":[]}"#,
        r#"{"t_us":200000,"aggr":2,"targets":[]}"#,
        r#"{"end":{"reason":"targets_gone","snapshots":2,"t_us":200000}}"#
    );
    std::fs::write(path, text).unwrap();
}

fn bi_sim_record(path: &Path) {
    madvd()
        .args(["record", "--sim", "stairs", "--for", "2s", "-o"])
        .arg(path)
        .assert()
        .success();
}

/// stderr has exactly one line, `madvd: error: …`, containing every needle.
fn bi_error_line(stderr: &[u8], needles: &[&str]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got:\n{s}");
    // `madvd agent` logs JSON when stderr is not a terminal (docs/agent.md): the same error,
    // as one JSON object at level ERROR.
    let line = if lines[0].starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON log line");
        assert_eq!(v["level"], "ERROR", "{s}");
        v["message"].as_str().expect("a message").to_string()
    } else {
        assert!(lines[0].starts_with("madvd: error: "), "{s}");
        lines[0].to_string()
    };
    for n in needles {
        assert!(line.contains(n), "expected {n:?} in {s}");
    }
    line
}

#[test]
fn report_heatmap_on_a_record_without_targets_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("gone.rec");
    bi_record_without_targets(&rec);
    let out = dir.path().join("gone.png");
    let a = madvd()
        .args(["report", "heatmap"])
        .arg(&rec)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(1);
    bi_error_line(
        &a.get_output().stderr,
        &[&rec.display().to_string(), "no target", "2 snapshots"],
    );
    assert!(!out.exists(), "nothing drawn");
    // summary and wss still answer (an empty record is a valid record).
    madvd()
        .args(["report", "summary"])
        .arg(&rec)
        .assert()
        .success();
    madvd().args(["report", "wss"]).arg(&rec).assert().success();
}

#[test]
fn report_heatmap_bounds_cols_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("s.rec");
    bi_sim_record(&rec);
    let out = dir.path().join("h.png");
    for flag in ["--cols", "--rows"] {
        let a = madvd()
            .args(["report", "heatmap"])
            .arg(&rec)
            .arg("-o")
            .arg(&out)
            .args([flag, "100000000"])
            .assert()
            .code(2);
        bi_error_line(&a.get_output().stderr, &[flag, "100000000", "4096"]);
        assert!(!out.exists());
    }
    // The maximum itself is fine.
    madvd()
        .args(["report", "heatmap"])
        .arg(&rec)
        .arg("-o")
        .arg(&out)
        .args(["--cols", "4096", "--rows", "4096"])
        .assert()
        .success();
}

#[test]
fn report_heatmap_refuses_to_overwrite_its_input() {
    let dir = tempfile::tempdir().unwrap();
    // A record named .png: the default output (FILE with .png) is the record itself.
    let rec = dir.path().join("rec.png");
    bi_sim_record(&rec);
    let before = std::fs::read(&rec).unwrap();
    let a = madvd()
        .args(["report", "heatmap"])
        .arg(&rec)
        .assert()
        .code(2);
    bi_error_line(
        &a.get_output().stderr,
        &[&rec.display().to_string(), "overwrite", "-o"],
    );
    assert_eq!(std::fs::read(&rec).unwrap(), before, "input untouched");
    // -o naming the same file another way: a different spelling, and a hard link.
    let other_spelling = dir.path().join(".").join("rec.png");
    let link = dir.path().join("link.svg");
    std::fs::hard_link(&rec, &link).unwrap();
    for o in [&other_spelling, &link] {
        let a = madvd()
            .args(["report", "heatmap"])
            .arg(&rec)
            .arg("-o")
            .arg(o)
            .assert()
            .code(2);
        bi_error_line(&a.get_output().stderr, &["overwrite"]);
        assert_eq!(std::fs::read(&rec).unwrap(), before, "input untouched");
    }
}

#[test]
fn pid_1_refusal_names_the_flag() {
    for cmd in ["run", "monitor"] {
        let mut c = madvd();
        c.arg(cmd);
        if cmd == "run" {
            c.args(["--policy", "policies/stat.ron"]);
        }
        let a = c
            .args(["--pid", "1", "--ops", "smaps"])
            .current_dir(repo("."))
            .assert()
            .code(3);
        let l = bi_error_line(&a.get_output().stderr, &["pid 1", "--allow-pid1"]);
        assert!(!l.contains("named explicitly"), "{l}");
    }
}

const BI_STAT_POLICY: &str = "(schemes: [(name: \"all\", pattern: (), action: stat)])\n";

/// An agent config with one group and its policy in `dir`; returns the config's path.
fn bi_agent_config(dir: &Path, group_extra: &str, tail: &str) -> PathBuf {
    std::fs::write(dir.join("p.ron"), BI_STAT_POLICY).unwrap();
    let cfg = dir.join("agent.ron");
    std::fs::write(
        &cfg,
        format!(
            "(\n  targets: [\n    (name: \"w\", select: Comm(\"bi-no-such\"), policy: \"p.ron\"{group_extra}),\n  ],\n{tail})\n"
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn agent_missing_config_and_missing_policy_say_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ron");
    let a = madvd()
        .args(["agent", "--check", "--config"])
        .arg(&missing)
        .assert()
        .code(1);
    let l = bi_error_line(
        &a.get_output().stderr,
        &[
            &format!("cannot read agent config {}: ", missing.display()),
            "No such file",
        ],
    );
    assert!(!l.contains("policy"), "{l}");
    // The config names a policy that is not there: the config's line and column.
    let cfg = bi_agent_config(dir.path(), "", "");
    std::fs::remove_file(dir.path().join("p.ron")).unwrap();
    let a = madvd()
        .args(["agent", "--check", "--config"])
        .arg(&cfg)
        .assert()
        .code(1);
    bi_error_line(
        &a.get_output().stderr,
        &[&format!(
            "{}:3:53: cannot read policy {}: ",
            cfg.display(),
            dir.path().join("p.ron").display()
        )],
    );
}

#[test]
fn exit_codes_follow_one_rule_for_files() {
    // An unusable `ops` in an agent config is a mistake in a file: 1, like `sim`, with the
    // config's position; on the command line (`--ops NAME`) it is a usage error: 2.
    let dir = tempfile::tempdir().unwrap();
    for ops in ["no-such-primitive", "sim"] {
        let cfg = bi_agent_config(dir.path(), &format!(", ops: Named(\"{ops}\")"), "");
        let a = madvd()
            .args(["agent", "--check", "--config"])
            .arg(&cfg)
            .assert()
            .code(1);
        bi_error_line(
            &a.get_output().stderr,
            &[&format!("{}:3:", cfg.display()), ops],
        );
    }
    let a = madvd()
        .args([
            "run",
            "--policy",
            "policies/stat.ron",
            "--pid",
            "1",
            "--ops",
            "no-such-primitive",
        ])
        .current_dir(repo("."))
        .assert()
        .code(2);
    bi_error_line(&a.get_output().stderr, &["no-such-primitive"]);
}

/// Run `bin` (a copy of madvd reachable by `nobody`) as nobody.
fn bi_as_nobody(bin: &Path) -> Option<std::process::Command> {
    if !engine::testkit::is_root() {
        return None;
    }
    let setpriv = which("setpriv").ok()?;
    let mut c = std::process::Command::new(setpriv);
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(bin)
    .env_remove("RUST_LOG")
    .env_remove("MADVD_LOG");
    Some(c)
}

/// A world-accessible temp dir with a copy of the binary in it.
fn bi_nobody_dir() -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("madvd");
    std::fs::copy(exe(), &bin).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, bin)
}

#[test]
fn unreadable_policy_exits_1_even_for_lack_of_permission() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, bin) = bi_nobody_dir();
    let Some(mut c) = bi_as_nobody(&bin) else {
        engine::skip!("needs root and setpriv to drop to an unprivileged user");
    };
    let pol = dir.path().join("secret.ron");
    std::fs::write(&pol, BI_STAT_POLICY).unwrap();
    std::fs::set_permissions(&pol, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = c
        .args(["run", "--policy"])
        .arg(&pol)
        .args(["--pid", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    bi_error_line(
        &out.stderr,
        &[
            &format!("cannot read policy {}", pol.display()),
            "ermission denied",
        ],
    );
}

#[test]
fn run_without_privileges_fails_naming_what_it_lacks() {
    let (dir, bin) = bi_nobody_dir();
    let Some(mut c) = bi_as_nobody(&bin) else {
        engine::skip!("needs root and setpriv to drop to an unprivileged user");
    };
    let pol = dir.path().join("pageout.ron");
    std::fs::write(
        &pol,
        "(schemes: [(name: \"all\", pattern: (), action: pageout)])\n",
    )
    .unwrap();
    // A target nobody may read: a sleeping process of nobody's own.
    let mut target = bi_as_nobody(Path::new("/bin/sleep"))
        .unwrap()
        .arg("60")
        .spawn()
        .unwrap();
    let pid = target.id().to_string();
    let out = c
        .args(["run", "--ops", "smaps", "--for", "5s", "--policy"])
        .arg(&pol)
        .args(["--pid", &pid])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    bi_error_line(&out.stderr, &["CAP_SYS_NICE", "--dry-run"]);
    // A dry run needs no privilege beyond reading the target.
    let out = bi_as_nobody(&bin)
        .unwrap()
        .args([
            "run",
            "--ops",
            "smaps",
            "--for",
            "1s",
            "--dry-run",
            "--policy",
        ])
        .arg(&pol)
        .args(["--pid", &pid])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let _ = target.kill();
    let _ = target.wait();
}

#[test]
fn agent_check_binds_the_listen_address() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    // In the config.
    let cfg = bi_agent_config(dir.path(), "", &format!("  listen: \"{addr}\",\n"));
    let a = madvd()
        .args(["agent", "--check", "--config"])
        .arg(&cfg)
        .assert()
        .code(1);
    bi_error_line(&a.get_output().stderr, &[&addr, "cannot listen", "in use"]);
    // On the command line, and an address no interface here has (binding only).
    let cfg = bi_agent_config(dir.path(), "", "");
    for bad in [addr.as_str(), "192.0.2.1:9464"] {
        let a = madvd()
            .args(["agent", "--check", "--listen", bad, "--config"])
            .arg(&cfg)
            .assert()
            .code(1);
        bi_error_line(&a.get_output().stderr, &[bad, "cannot listen"]);
    }
    // A free address passes, and is free again afterwards.
    drop(busy);
    let cfg = bi_agent_config(dir.path(), "", &format!("  listen: \"{addr}\",\n"));
    madvd()
        .args(["agent", "--check", "--config"])
        .arg(&cfg)
        .assert()
        .success();
    std::net::TcpListener::bind(&addr).expect("released after --check");
}

/// Physical memory is root-only (PFNs in /proc/iomem, /proc/kpageflags, the page_idle
/// bitmap): as nobody, `monitor`, `record` and `run` with `--paddr` fail with the
/// privilege exit code and say so, whatever the kernel offers (the root check comes first).
#[test]
fn paddr_as_nobody_says_it_needs_root() {
    let (dir, bin) = bi_nobody_dir();
    if bi_as_nobody(&bin).is_none() {
        engine::skip!("needs root and setpriv to drop to an unprivileged user");
    }
    let pol = dir.path().join("reclaim.ron");
    std::fs::write(
        &pol,
        "(schemes: [(name: \"cold\", pattern: (accesses: (max: 0)), action: reclaim_cgroup)])\n",
    )
    .unwrap();
    let rec = dir.path().join("p.rec");
    let pol = pol.to_str().unwrap();
    let rec = rec.to_str().unwrap();
    for args in [
        &["monitor", "--paddr", "--once"][..],
        &["record", "--paddr", "--for", "1s", "-o", rec][..],
        &["run", "--paddr", "--for", "1s", "--policy", pol][..],
    ] {
        let out = bi_as_nobody(&bin).unwrap().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(4), "{args:?}: {out:?}");
        bi_error_line(
            &out.stderr,
            &["paddr", "needs root", "/proc/kpageflags", "page_idle"],
        );
    }
}
