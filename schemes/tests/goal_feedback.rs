//! Quota-goal feedback converges on a simulated system where pressure responds to the quota.

mod common;
use common::goal_sim::{self, TARGET_US};

#[test]
fn psi_goal_settles_within_ten_percent_of_target() {
    let windows = goal_sim::run(120);
    for w in &windows {
        eprintln!(
            "window {:3}: quota {:>12} paged {:>12} psi {:>6} us",
            w.index, w.quota, w.paged_out, w.psi_us
        );
    }
    let within =
        |w: &goal_sim::Window| (w.psi_us as f64 - TARGET_US as f64).abs() <= 0.1 * TARGET_US as f64;
    // The first window from which the metric stays within 10% of the target.
    let settled = (0..windows.len()).find(|&i| windows[i..].iter().all(within));
    let settled = settled.unwrap_or_else(|| panic!("never settled within 10% of {TARGET_US} us"));
    eprintln!("settled within 10% from window {settled}");
    assert!(settled <= 60, "settled only at window {settled}");
    // And it did something: the quota is far above the 1-byte start.
    assert!(windows.last().unwrap().quota > 100 << 20);
}
