//! Plot the quota-goal feedback loop on the simulated system of `tests/goal_feedback.rs`:
//! the measured memory stall per window against its target, and the effective quota.
//!
//! `cargo run -p schemes --example goal_curve [OUT.png]` (default: docs/quota-goal-convergence.png)

#[path = "../tests/common/goal_sim.rs"]
mod goal_sim;

use plotters::prelude::*;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/quota-goal-convergence.png")
        });
    let windows = goal_sim::run(80);
    let n = windows.len() as u32;
    let target_ms = goal_sim::TARGET_US as f64 / 1000.0;
    let max_psi = windows
        .iter()
        .map(|w| w.psi_us as f64 / 1000.0)
        .fold(target_ms * 1.5, f64::max);
    let max_quota = windows
        .iter()
        .map(|w| w.quota as f64 / (1u64 << 20) as f64)
        .fold(1.0, f64::max);

    let root = BitMapBackend::new(&out, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(280);

    let mut c = ChartBuilder::on(&top)
        .caption(
            "some_mem_psi_us goal: stall per 1 s window",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..n, 0f64..max_psi * 1.05)?;
    c.configure_mesh()
        .x_desc("charge window")
        .y_desc("stall, ms")
        .draw()?;
    c.draw_series(LineSeries::new(
        windows
            .iter()
            .map(|w| (w.index as u32, w.psi_us as f64 / 1000.0)),
        &BLUE,
    ))?
    .label("measured")
    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
    c.draw_series(LineSeries::new([(0, target_ms), (n, target_ms)], &RED))?
        .label("target 10 ms")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    for f in [0.9, 1.1] {
        c.draw_series(LineSeries::new(
            [(0, target_ms * f), (n, target_ms * f)],
            RED.mix(0.3),
        ))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let mut c = ChartBuilder::on(&bottom)
        .caption("effective size quota (log scale)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..n, (1e-6f64..max_quota * 2.0).log_scale())?;
    c.configure_mesh()
        .x_desc("charge window")
        .y_desc("MiB")
        .draw()?;
    c.draw_series(LineSeries::new(
        windows.iter().map(|w| {
            (
                w.index as u32,
                (w.quota as f64 / (1u64 << 20) as f64).max(1e-6),
            )
        }),
        &GREEN,
    ))?;
    root.present()?;
    println!("wrote {}", out.display());
    Ok(())
}
