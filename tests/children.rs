//! `madvd run --children`: a target that forks 10 children, one after the other, each
//! mapping and touching its own memory before it is ended. Each child must be watched while
//! it lives (its regions in the run's snapshots, beyond what it inherited), dropped once it
//! is gone, and no other process ever watched. The start-time identity that keeps a reused
//! pid out is tested on fixture trees in `engine/src/proctree/tests.rs`; here it is checked
//! on live processes (a member recorded with another start time is dropped, its children
//! never adopted).

mod common;

use common::{exe, repo, spawn, MIB, PAGE};
use engine::proctree::{read_identity, Family, ProcId};
use engine::SysRoot;
use madvd_workload::fork::ForkChildren;
use madvd_workload::WorkloadSpec;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHILD_SIZE: u64 = 32 * MIB;

fn forker() -> madvd_workload::Client {
    spawn(&WorkloadSpec {
        size: 16 * PAGE,
        fork_children: Some(ForkChildren { size: CHILD_SIZE }),
        ..WorkloadSpec::default()
    })
}

/// One summary line's watched targets: pid → bytes their regions cover.
fn watched(line: &Value) -> Vec<(u32, u64)> {
    line["by_pid"]
        .as_array()
        .expect("--children lines carry by_pid")
        .iter()
        .map(|t| {
            (
                t["pid"].as_u64().unwrap() as u32,
                t["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Wait (up to 30 s) for a summary line that satisfies `ok`; every line seen is checked by
/// `each` first.
fn wait_line(
    rx: &Receiver<Value>,
    what: &str,
    mut each: impl FnMut(&Value),
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => {
                each(&l);
                if ok(&l) {
                    return l;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(e) => panic!("madvd run ended while waiting for {what}: {e}"),
        }
    }
    panic!("no summary line with {what} in 30 s");
}

#[test]
fn follows_ten_children_as_they_fork_and_exit() {
    engine::need_root!(
        "madvd reads the pagemap and smaps of processes that are not its own children"
    );
    let mut w = forker();
    let parent = w.pid();
    let mut run = Command::new(exe())
        .args(["run", "--children", "--dry-run", "--json", "--ops", "smaps"])
        .args(["--every", "100ms", "--sample", "20ms", "--aggr", "100ms"])
        .args([
            "--update",
            "100ms",
            "--pid",
            &parent.to_string(),
            "--policy",
        ])
        .arg(repo("policies/stat.ron"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let out = run.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let mut err = run.stderr.take().unwrap();
    let err_text = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });

    let mut children = BTreeSet::new();
    for i in 0..10 {
        let (child, mapping) = w.fork_child().unwrap();
        assert_eq!(mapping.end - mapping.start, CHILD_SIZE);
        children.insert(child);
        // Only the parent and the children alive (this one) may ever be watched.
        let only_ours = |l: &Value| {
            for (pid, _) in watched(l) {
                assert!(
                    pid == parent || pid == child,
                    "child {i}: pid {pid} watched, not the target {parent} nor its child {child}: {l}"
                );
            }
        };
        let seen = wait_line(
            &rx,
            &format!("child {i} ({child}) watched"),
            only_ours,
            |l| {
                let t = watched(l);
                let bytes = |p: u32| t.iter().find(|x| x.0 == p).map(|x| x.1);
                // Its own mapping is in its regions: it covers more than what it inherited.
                matches!((bytes(parent), bytes(child)), (Some(a), Some(b)) if b >= a + CHILD_SIZE / 2)
            },
        );
        assert_eq!(seen["targets"], 2, "{seen}");
        w.end_child(child).unwrap();
        let gone = wait_line(
            &rx,
            &format!("child {i} ({child}) dropped"),
            only_ours,
            |l| watched(l).iter().all(|x| x.0 != child) && l["targets"] == 1,
        );
        assert!(watched(&gone).iter().any(|x| x.0 == parent), "{gone}");
    }
    // The target itself exits: nothing is left, the run ends by itself.
    w.kill();
    let last = wait_line(&rx, "the final line", |_| {}, |l| l["final"] == true);
    assert_eq!(last["reason"], "targets_gone", "{last}");
    assert!(run.wait().unwrap().success());
    let err = err_text.join().unwrap();
    for c in &children {
        assert!(
            err.contains(&format!("pid {c} (madvd): descendant added")),
            "{c}: {err}"
        );
        assert!(
            err.contains(&format!("pid {c} exited: dropped")),
            "{c}: {err}"
        );
    }
    assert_eq!(err.matches("descendant added").count(), 10, "{err}");
}

#[test]
fn a_member_with_another_start_time_is_dropped_and_its_children_never_adopted() {
    let mut w = forker();
    let parent = w.pid();
    let (child, _) = w.fork_child().unwrap();
    let root = SysRoot::host();
    let st = read_identity(&root, parent).expect("the forker's stat");
    // The real identity: the child is adopted.
    let mut f = Family::new(16);
    f.insert(ProcId {
        pid: parent,
        start_time: st.start_time,
    });
    let ch = f.update(&root);
    let start = read_identity(&root, child).unwrap().start_time;
    assert_eq!(
        ch.added,
        vec![ProcId {
            pid: child,
            start_time: start
        }]
    );
    // The same pid recorded with another start time (as if the process found had exited
    // and its pid been reused): dropped, and its children are not ours.
    let mut f = Family::new(16);
    f.insert(ProcId {
        pid: parent,
        start_time: st.start_time.wrapping_sub(1),
    });
    let ch = f.update(&root);
    assert_eq!((ch.gone, ch.added), (vec![parent], vec![]));
    w.end_child(child).unwrap();
}

/// Wait (up to 30 s) until `text` holds one of `what`.
fn wait_text(text: &Mutex<String>, what: &[&str]) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        let t = text.lock().unwrap();
        if what.iter().any(|w| t.contains(w)) {
            return;
        }
        drop(t);
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no {what:?} in 30 s: {}", text.lock().unwrap());
}

#[test]
fn agent_group_with_children_takes_the_descendants_and_drops_them() {
    engine::need_root!(
        "the agent reads the pagemap and smaps of processes that are not its own children"
    );
    let mut w = forker();
    let parent = w.pid();
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("agent.ron");
    std::fs::write(
        &conf,
        format!(
            r#"(targets: [(name: "tree", select: Pid({parent}), children: true, policy: "{}",
    ops: Named("smaps"))], rescan: "1 min", listen: "off", dry_run: true)"#,
            repo("policies/stat.ron").display()
        ),
    )
    .unwrap();
    let mut agent = Command::new(exe())
        .args(["agent", "--log-format", "text", "--config"])
        .arg(&conf)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = Arc::new(Mutex::new(String::new()));
    let mut err = agent.stderr.take().unwrap();
    let t = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            t.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    wait_text(&text, &[&format!("pid {parent} (madvd) added")]);
    // The rescan (1 min) is too slow for the children: the walk between rescans finds them.
    for _ in 0..3 {
        let (child, _) = w.fork_child().unwrap();
        wait_text(&text, &[&format!("pid {child} (madvd) added")]);
        w.end_child(child).unwrap();
        // Whichever sees it first: the stages (exited) or the rescan (no longer a descendant).
        wait_text(
            &text,
            &[
                &format!("pid {child} (madvd) exited: dropped"),
                &format!("pid {child} (madvd) no longer selected: dropped"),
            ],
        );
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(agent.wait().unwrap().success());
    let text = text.lock().unwrap();
    // Only the target and its three children were ever taken.
    assert_eq!(text.matches(") added").count(), 4, "{text}");
}
