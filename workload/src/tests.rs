//! The workload's own tests: the hot-set rule, the page contents, the spec's JSON, and the
//! child driven in process.

use crate::child::run_child;
use crate::memory::word;
use crate::spec::{hot_pages, Event, Fill, Pattern, Verify, WorkloadSpec, PAGE};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn hot_ranges_follow_the_pattern() {
    let mut s = WorkloadSpec {
        size: 100 * PAGE,
        hot_fraction: 0.1,
        ..Default::default()
    };
    assert_eq!(hot_pages(&s, 100, Duration::from_secs(9)), (0, 10));
    s.hot_offset = 0.5;
    assert_eq!(hot_pages(&s, 100, Duration::ZERO), (50, 60));
    s.pattern = Pattern::Moving { period_ms: 1000 };
    assert_eq!(hot_pages(&s, 100, Duration::from_millis(2500)), (70, 80));
    assert_eq!(hot_pages(&s, 100, Duration::from_millis(5500)), (0, 10));
    s.pattern = Pattern::Stairs {
        steps: 4,
        step_ms: 100,
    };
    assert_eq!(hot_pages(&s, 100, Duration::from_millis(0)), (0, 25));
    assert_eq!(hot_pages(&s, 100, Duration::from_millis(350)), (0, 100));
    assert_eq!(hot_pages(&s, 100, Duration::from_millis(400)), (0, 25));
}

#[test]
fn fills_are_checkable_and_differ_by_generation() {
    for fill in [Fill::Pattern, Fill::Random] {
        let a: Vec<u64> = (0..512).map(|j| word(fill, 1, 7, 0, j)).collect();
        let b: Vec<u64> = (0..512).map(|j| word(fill, 1, 7, 1, j)).collect();
        assert_ne!(a, b);
        assert!(a.iter().any(|&w| w != a[1]), "not a same-filled page");
    }
}

#[test]
fn spec_round_trips_and_validates() {
    let s = WorkloadSpec {
        pattern: Pattern::Stairs {
            steps: 5,
            step_ms: 10,
        },
        ..Default::default()
    };
    assert_eq!(WorkloadSpec::from_json(&s.to_args()[1]).unwrap(), s);
    assert!(WorkloadSpec::from_json(r#"{"size":1}"#).is_err());
    let bad = WorkloadSpec {
        hot_fraction: 0.0,
        ..Default::default()
    };
    assert!(bad.validate().is_err());
}

/// The child's stdout, kept in memory for the test.
struct W(Arc<Mutex<Vec<u8>>>);
impl Write for W {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn child_runs_in_process_and_verifies() {
    // Drive run_child directly with scripted commands (no process spawn, no sleeps
    // needed for correctness: verify pauses the loop itself).
    let spec = WorkloadSpec {
        size: 64 * PAGE,
        write_fraction: 0.5,
        ..Default::default()
    };
    let cmds = io::Cursor::new("mark\nverify\ntruth\nunmap 131072 8192\nverify\nquit\n");
    let buf = Arc::new(Mutex::new(Vec::new()));
    run_child(&spec, cmds, W(Arc::clone(&buf))).unwrap();
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let evs: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(matches!(evs[0], Event::Ready { .. }));
    assert_eq!(
        evs[2],
        Event::Verify(Verify {
            pages: 64,
            bad_pages: 0
        })
    );
    assert!(matches!(evs[4], Event::Unmapped { .. }), "{:?}", evs[4]);
    assert_eq!(
        evs[5],
        Event::Verify(Verify {
            pages: 62,
            bad_pages: 0
        })
    );
}

fn zipf_script(size: u64) -> crate::Script {
    use engine::ops::sim::{Pattern as SimPattern, ZipfKeys};
    crate::Script {
        pattern: SimPattern::Zipf(ZipfKeys {
            base: engine::AddrRange::new(0, size),
            key_bytes: PAGE,
            s: 1.0,
            lookups: 20,
            layout_seed: 3,
        }),
        interval_ms: 5,
    }
}

#[test]
fn a_script_round_trips_and_is_checked_against_the_mapping() {
    let s = WorkloadSpec {
        size: 64 * PAGE,
        script: Some(zipf_script(64 * PAGE)),
        ..Default::default()
    };
    assert_eq!(WorkloadSpec::from_json(&s.to_args()[1]).unwrap(), s);
    // A spec without `script` still reads (the field is optional).
    let plain = serde_json::to_value(WorkloadSpec::default()).unwrap();
    assert!(plain.get("script").is_none());
    let e = WorkloadSpec {
        size: 32 * PAGE,
        ..s.clone()
    }
    .validate()
    .unwrap_err();
    assert!(e.to_string().contains("outside the mapping"), "{e}");
    let mut zero = s.clone();
    zero.script.as_mut().unwrap().interval_ms = 0;
    assert!(zero
        .validate()
        .unwrap_err()
        .to_string()
        .contains("interval_ms"));
    let two = WorkloadSpec {
        two_mappings: true,
        ..s.clone()
    };
    assert!(matches!(
        two.validate(),
        Err(crate::SpecError::ScriptTwoMappings)
    ));
}

#[test]
fn a_scripted_child_touches_what_the_engine_pattern_names() {
    // The child's pages over its first intervals are a subset of the union of the
    // pattern's touched pages for those intervals (same seed), and the child touches some.
    // A Zipf space of 32 one-page keys in a 64-page mapping.
    let size = 64 * PAGE;
    let spec = WorkloadSpec {
        size,
        seed: 9,
        // Keys over the first half only: the second half must stay untouched.
        script: Some(zipf_script(size / 2)),
        ..Default::default()
    };
    let script = spec.script.clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    struct Cmds(std::sync::mpsc::Receiver<String>, Vec<u8>);
    impl io::Read for Cmds {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(s) => self.1 = s.into_bytes(),
                    Err(_) => return Ok(0),
                }
            }
            let n = b.len().min(self.1.len());
            b[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let out = W(Arc::clone(&buf));
    let child =
        std::thread::spawn(move || run_child(&spec, io::BufReader::new(Cmds(rx, vec![])), out));
    // Ask for the truth until the loop has touched something (no sleep: each answer comes
    // back through the output buffer; bounded by the child's 5 ms intervals).
    let t0 = std::time::Instant::now();
    let truth = loop {
        tx.send("truth\n".into()).unwrap();
        let got = loop {
            let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
            let last = text
                .lines()
                .rev()
                .find_map(|l| serde_json::from_str::<Event>(l).ok());
            if let Some(Event::Truth(t)) = last {
                buf.lock().unwrap().clear();
                break t;
            }
            std::thread::yield_now();
        };
        if got.touched_bytes > 0 || t0.elapsed() > Duration::from_secs(10) {
            break got;
        }
    };
    tx.send("quit\n".into()).unwrap();
    drop(tx);
    child.join().unwrap().unwrap();
    let t = &truth;
    let mut union = std::collections::BTreeSet::new();
    let intervals = t0.elapsed().as_millis() as u64 / 5 + 100;
    for i in 0..intervals {
        union.extend(crate::scripted::touched(&script.pattern, 9, i, 0, 64));
    }
    assert!(t.touched_bytes > 0, "{t:?}");
    assert!(union.iter().all(|&p| p < 32), "{union:?}");
    assert!(
        t.touched_bytes <= union.len() as u64 * PAGE,
        "{t:?} vs {} pages",
        union.len()
    );
}

#[test]
fn sparse_mappings_stay_separate_vmas() {
    use crate::spec::Sparse;
    let sp = Sparse {
        vmas: 64,
        bytes: 64 * 16 * PAGE + 5,
    };
    let r = crate::memory::map_sparse(sp).unwrap();
    assert_eq!(r.end - r.start, 64 * 16 * PAGE);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let inside: Vec<&str> = maps
        .lines()
        .filter(|l| {
            let (s, e) = l.split_once(' ').unwrap().0.split_once('-').unwrap();
            let (s, e) = (
                u64::from_str_radix(s, 16).unwrap(),
                u64::from_str_radix(e, 16).unwrap(),
            );
            s >= r.start && e <= r.end
        })
        .collect();
    assert_eq!(inside.len(), 64, "{inside:?}");
    assert!(
        inside[0].contains(" rw-p ") && inside[1].contains(" r--p "),
        "{inside:?}"
    );
    let bad = WorkloadSpec {
        sparse: Some(Sparse {
            vmas: 10,
            bytes: 9 * PAGE,
        }),
        ..Default::default()
    };
    let e = bad.validate().unwrap_err().to_string();
    assert!(e.contains("cannot make 10 mappings"), "{e}");
}

#[test]
fn thp_spec_is_checked_and_counts_touched_bytes() {
    use crate::thp::{ThpSpec, ThpSpecError, HUGE};
    let t = ThpSpec {
        dense_bytes: 4 * HUGE,
        sparse_bytes: 8 * HUGE,
        sparse_pages: 3,
        ..Default::default()
    };
    assert_eq!(t.touched_bytes(), 4 * HUGE + 8 * 3 * PAGE);
    assert_eq!(t.mapped_bytes(), 12 * HUGE);
    let spec = |t: ThpSpec| WorkloadSpec {
        thp: Some(t),
        ..Default::default()
    };
    assert!(spec(t).validate().is_ok());
    let bad = [
        (
            ThpSpec {
                dense_bytes: HUGE + PAGE,
                ..t
            },
            ThpSpecError::Dense(HUGE + PAGE),
        ),
        (
            ThpSpec {
                dense_bytes: 0,
                ..t
            },
            ThpSpecError::Dense(0),
        ),
        (
            ThpSpec {
                sparse_bytes: PAGE,
                ..t
            },
            ThpSpecError::Sparse(PAGE),
        ),
        (
            ThpSpec {
                sparse_pages: 0,
                ..t
            },
            ThpSpecError::SparsePages(0),
        ),
        (
            ThpSpec {
                sparse_pages: 513,
                ..t
            },
            ThpSpecError::SparsePages(513),
        ),
    ];
    for (b, want) in bad {
        match spec(b).validate() {
            Err(crate::SpecError::Thp(e)) => assert_eq!(e, want),
            other => panic!("{b:?}: {other:?}"),
        }
    }
    // The spec round-trips through the child's argument.
    let s = spec(t);
    assert_eq!(WorkloadSpec::from_json(&s.to_args()[1]).unwrap(), s);
}

#[test]
fn thp_sparse_pages_are_distinct_and_in_range() {
    for h in 0..50 {
        for n in [1, 4, 100, 512] {
            let p = crate::thp::sparse_page_indexes(7, h, n);
            assert_eq!(p.len(), n as usize);
            assert!(p.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert!(p.iter().all(|&i| i < 512));
        }
    }
    assert_ne!(
        crate::thp::sparse_page_indexes(7, 0, 4),
        crate::thp::sparse_page_indexes(7, 1, 4)
    );
}

#[test]
fn thp_child_runs_in_process_and_verifies() {
    use crate::thp::{ThpMode, ThpSpec, HUGE};
    // Always mode only: MADV_HUGEPAGE touches only the child's own mappings, where
    // never's prctl would change this test process.
    let t = ThpSpec {
        mode: ThpMode::Always,
        dense_bytes: 2 * HUGE,
        sparse_bytes: 2 * HUGE,
        sparse_pages: 4,
    };
    let spec = WorkloadSpec {
        thp: Some(t),
        ..Default::default()
    };
    let cmds = io::Cursor::new("mark\nverify\ntruth\nbogus\nquit\n");
    let buf = Arc::new(Mutex::new(Vec::new()));
    run_child(&spec, cmds, W(Arc::clone(&buf))).unwrap();
    let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    let evs: Vec<Event> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let Event::Ready { mappings, hot, .. } = &evs[0] else {
        panic!("{:?}", evs[0]);
    };
    assert_eq!(mappings.len(), 2);
    assert_eq!(*hot, mappings[0]);
    assert!(mappings
        .iter()
        .all(|m| m.start % HUGE == 0 && m.len() == 2 * HUGE));
    assert!(
        mappings[1].start >= mappings[0].end + HUGE,
        "a gap keeps them apart"
    );
    assert_eq!(
        evs[2],
        Event::Verify(Verify {
            pages: 2 * 512 + 2 * 4,
            bad_pages: 0
        })
    );
    let Event::Truth(truth) = &evs[3] else {
        panic!("{:?}", evs[3]);
    };
    assert_eq!(truth.touched_bytes, t.touched_bytes());
    assert_eq!(truth.untouched_bytes, 4 * HUGE - t.touched_bytes());
    assert!(truth.loop_cpu_ms.is_some());
    assert!(matches!(&evs[4], Event::Error { message } if message.contains("bogus")));
}
