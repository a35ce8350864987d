//! The refault guard on this host (root, swap fixture): `madvd run` with a page-out scheme
//! whose quota has a `refault_rate` goal, on a workload child whose hot set moves onto
//! memory the scheme paged out. The scheme's effective quota falls within 3 reset intervals
//! of the first refaults it sees, and recovers once the window has forgotten them (the hot
//! set stays put afterwards: no more refaults).

use madvd_workload::{Pattern, WorkloadSpec};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

mod common;
use common::{exe, spawn, MIB};

const SWAP: u64 = 256 << 20;
const CEILING: u64 = 32 * MIB;

const POLICY: &str = r#"(
    schemes: [(
        name: "guarded",
        pattern: (size: (min: "4 KiB"), accesses: (min: 0, max: 0), age: (min: "4 s")),
        action: pageout,
        quota: (
            size: "32 MiB",
            reset_interval: "1 s",
            weights: (size: 0, accesses: 0, age: 1),
            goals: [(metric: refault_rate, target: "2%", window: "5 s")],
        ),
    )],
)"#;

#[derive(Debug)]
struct Line {
    t_s: f64,
    esz: u64,
    rate_bp: u64,
    paged_out: u64,
    refaulted: u64,
}

#[test]
fn quota_falls_when_the_hot_set_moves_onto_paged_out_memory_and_recovers() {
    let _swap = engine::need_swap!(SWAP);
    // 64 MiB, an eighth hot; the hot set moves by its own size at 30 s of the child's clock
    // (after the cold memory was paged out: the regions split and age, 4 s, then two 32 MiB
    // windows) and again at 60 s (after the run ends).
    let w = spawn(&WorkloadSpec {
        size: 64 * MIB,
        hot_fraction: 0.125,
        pattern: Pattern::Moving { period_ms: 30_000 },
        ..WorkloadSpec::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("guarded.ron");
    std::fs::write(&policy, POLICY).unwrap();
    let mut run = Command::new(exe())
        .args(["run", "--json", "--every", "1s", "--for", "58s", "--policy"])
        .arg(&policy)
        .args(["--pid", &w.pid().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("madvd run");
    let mut lines = Vec::new();
    for l in BufReader::new(run.stdout.take().unwrap()).lines() {
        let l = l.unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let s = &v["schemes"][0];
        if s.is_null() {
            continue;
        }
        let line = Line {
            t_s: v["t_s"].as_f64().unwrap(),
            esz: s["effective_quota"].as_u64().unwrap(),
            rate_bp: s["goal_values"][0].as_u64().unwrap_or(0),
            paged_out: s["paged_out_bytes"].as_u64().unwrap(),
            refaulted: s["refaulted_bytes"].as_u64().unwrap(),
        };
        eprintln!("{line:?}");
        lines.push(line);
    }
    assert!(run.wait().unwrap().success());

    // First page-outs at the full quota, before the refaults went over the budget (a few
    // pages at the hot set's edges may come back with the first page-outs: 2 pages in the
    // same second, once, 2026-12-07).
    let first_out = lines
        .iter()
        .position(|l| l.paged_out > 0)
        .expect("the scheme paged nothing out");
    assert!(
        lines[first_out..]
            .iter()
            .take_while(|l| l.rate_bp <= 200)
            .any(|l| l.esz == CEILING),
        "the quota was not at its ceiling before refaults: {lines:?}"
    );
    // The hot set moved onto paged-out memory: the scheme's own page-outs came back, above
    // the 2% budget (a few pages at the hot set's edges may come back before, under it).
    let first_back = lines
        .iter()
        .position(|l| l.rate_bp > 200)
        .unwrap_or_else(|| {
            panic!("no refaults over the budget after the hot set moved: {lines:?}")
        });
    let t_back = lines[first_back].t_s;
    let fell = lines[first_back..]
        .iter()
        .take_while(|l| l.t_s <= t_back + 3.0)
        .position(|l| l.esz <= CEILING / 4);
    let Some(fell) = fell else {
        panic!("the quota did not fall within 3 reset intervals of the refaults: {lines:?}");
    };
    let last = lines.last().unwrap();
    // About the hot set's 8 MiB came back (not the whole cold memory, not the probe's
    // sample page-outs of the hot set before the move).
    assert!(
        (MIB..=12 * MIB).contains(&last.refaulted),
        "refaulted {} bytes: {lines:?}",
        last.refaulted
    );
    // Refaults stopped (the hot set stays put until 60 s): once the window has forgotten
    // them the quota grows back, doubling each window the scheme applies (the probe's 2 s
    // aggregation), from one page to at least 256 pages within the run.
    let low = lines[first_back + fell..]
        .iter()
        .map(|l| l.esz)
        .min()
        .unwrap();
    // Under the budget, not at 0: a page-out of the quota's few pages at the hot set's
    // edge can have a page or two back at once (0.2%).
    let recovered = lines[first_back + fell..]
        .iter()
        .find(|l| l.rate_bp <= 200 && l.esz >= 256 * low);
    assert!(
        recovered.is_some(),
        "the quota did not recover once refaults stopped (low {low}): {lines:?}"
    );
    drop(w);
}

/// The fastest refaults: paging out the hot set of a running child, the ledger's read right
/// after the page-out finds most of it present again — in other frames: each such page left
/// and was faulted back before the read, and counts as a refault at once, with no scan.
/// Paging out cold memory, nothing comes back at once. (Without frames, before, the hot
/// page-out entered nothing in the ledger: docs/performance.md, "Replay vs reality".)
#[test]
fn a_hot_page_out_is_counted_as_refaulted_at_once_by_its_frames() {
    use engine::actuator::{Actuator, ActuatorConfig, ApplyOpts, Target};
    use engine::{AdviceRequest, SysRoot, TargetId};
    use schemes::goal::SysMetrics;
    use schemes::refault::{after_pageout, before_pageout, RefaultLedger};

    let _swap = engine::need_swap!(SWAP);
    let w = spawn(&WorkloadSpec {
        size: 64 * MIB,
        hot_fraction: 0.125,
        nohugepage: true,
        ..WorkloadSpec::default()
    });
    let proc = common::open(w.pid());
    let id = TargetId(w.pid());
    let vmas: Vec<engine::AddrRange> = proc.maps().unwrap().iter().map(|v| v.range).collect();
    let target = Target::from_process(&proc, vmas).with_id(id);
    let mut act = Actuator::new(SysRoot::host(), ActuatorConfig::default());
    let env = SysMetrics::host();
    let hot = w.hot();
    let cold = engine::AddrRange::new(w.mapping().end - 8 * MIB, w.mapping().end);
    let mut seen = Vec::new();
    for range in [cold, hot] {
        let mut ledger = RefaultLedger::new(4096, 60_000_000);
        before_pageout(&mut ledger, &env, [(id, range)]);
        let req = AdviceRequest {
            target: id,
            range,
            advice: engine::Advice::Pageout,
            scheme: 0,
        };
        let r = act.apply(std::slice::from_ref(&target), &[req], ApplyOpts::default());
        assert!(r.outcomes[0].applied(), "{r:?}");
        after_pageout(&mut ledger, &env, [(id, range)], 1_000);
        eprintln!(
            "{range}: out {} pages, back at once {} pages",
            ledger.total_out_pages, ledger.total_refaulted_pages
        );
        seen.push((ledger.total_out_pages, ledger.total_refaulted_pages));
    }
    let pages = 8 * MIB / 4096;
    let (cold_out, cold_back) = seen[0];
    assert!(cold_out >= pages * 9 / 10, "cold: {seen:?}");
    assert!(
        cold_back <= pages / 100,
        "cold pages came back at once: {seen:?}"
    );
    // The hot set is read at random many times a second: a good part of it is back before
    // the read (the rest is found by the scans later).
    let (hot_out, hot_back) = seen[1];
    assert!(hot_out >= pages / 2, "hot: {seen:?}");
    assert!(
        hot_back >= pages / 10,
        "no hot page counted back at once: {seen:?}"
    );
    drop(w);
}
