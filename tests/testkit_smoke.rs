//! The test fixtures themselves: the workload child and the swap fixture.

use madvd_workload::WorkloadSpec;
use std::path::Path;

mod common;
use common::spawn;

#[test]
fn workload_child_reports_truth_and_verifies() {
    let spec = WorkloadSpec {
        size: 8 << 20,
        write_fraction: 0.2,
        ..Default::default()
    };
    let mut w = spawn(&spec);
    assert_eq!(w.mapping().len(), 8 << 20);
    assert_eq!(w.hot().start, w.mapping().start);
    w.mark().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t = w.truth().unwrap();
    assert!(t.ops > 0);
    // Only the hot 10% was touched.
    assert!(t.touched_bytes <= w.hot().len(), "{t:?}");
    assert!(t.touched_bytes > w.hot().len() / 2, "{t:?}");
    assert_eq!(w.verify().unwrap().bad_pages, 0);
    let pid = w.pid();
    w.kill();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map(|s| s.contains("State:\tZ"))
                .unwrap_or(true)
    );
}

#[test]
fn swap_fixture_makes_and_removes_zram_swap() {
    let g = engine::need_swap!(64 << 20);
    let during = std::fs::read_to_string("/proc/swaps").unwrap();
    assert!(during.lines().count() >= 2, "swap active: {during}");
    let made = g.zram_device();
    drop(g);
    // (Another user of the lock may make its own device right after we release it: only
    // ours is checked.)
    if let Some(dev) = made {
        let after = std::fs::read_to_string("/proc/swaps").unwrap();
        assert!(!after.contains(dev.to_str().unwrap()), "{after}");
    }
}
