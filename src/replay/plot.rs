//! The replay's plot: the record's access heatmap (`heatmap::draw`, as `madvd report
//! heatmap` renders it) with, under it on the same time axis, the bytes each scheme would
//! advise (cumulative, solid) and the refault risk (cumulative, dashed).

use super::Replay;
use crate::heatmap::{self, DrawResult, Grid};
use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Render to `out` (.png or .svg).
pub fn render(grid: &Grid, title: &str, r: &Replay, out: &Path) -> Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let size = (1200u32, 1100u32);
    let drawn = match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw(&root, grid, title, r, false).and_then(|_| Ok(root.present()?))
        }
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw(&root, grid, title, r, true).and_then(|_| Ok(root.present()?))
        }
        _ => bail!("{}: plot output must end in .png or .svg", out.display()),
    };
    drawn
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("{}: cannot draw the replay plot", out.display()))
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    grid: &Grid,
    title: &str,
    r: &Replay,
    merge_runs: bool,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(720);
    heatmap::draw(&top, grid, title, merge_runs)?;
    let (plot, _bar) = bottom.split_horizontally(1200 - 110);
    let secs = |us: u64| us as f64 / 1e6;
    let (x0, x1) = (
        secs(grid.t0_us),
        secs(grid.t1_us).max(secs(grid.t0_us) + 1e-3),
    );
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let cumulative = |pick: &dyn Fn(&super::Step) -> u64| {
        let mut acc = 0u64;
        r.steps
            .iter()
            .map(|s| {
                acc += pick(s);
                (secs(s.t_us), mib(acc))
            })
            .collect::<Vec<_>>()
    };
    let ymax = mib(r.advised_bytes()).max(1.0) * 1.05;
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!(
                "what-if: bytes advised (solid) and refaulted within {} s (dashed), cumulative",
                r.refault_window_us as f64 / 1e6
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(140)
        .build_cartesian_2d(x0..x1, 0f64..ymax)?;
    chart
        .configure_mesh()
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .x_desc("time (s)")
        .y_desc("MiB")
        .x_labels(10)
        .draw()?;
    for (i, s) in r.schemes.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                cumulative(&|st| st.advised_bytes[i]),
                c.stroke_width(2),
            ))?
            .label(format!("{} ({})", s.name, s.action))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(
            cumulative(&|st| st.refaulted_bytes[i]),
            6,
            4,
            c.stroke_width(2),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}
