//! The access heatmap of a recording, like `damo report heatmap`: time on x, address on y,
//! access rate (`nr_accesses / max_nr_accesses`) as colour. The address axis is the union of
//! the monitored ranges with the gaps between them collapsed (a process's three regions are
//! terabytes apart), drawn bottom (low addresses) to top. Rendered with plotters to PNG or SVG.

use crate::record::{Frame, Loaded};
use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// Most time bins (`--cols`) and most address bins (`--rows`): the image is 1200 x 720
/// pixels, and 4096 x 4096 cells are 64 MiB of grid (a bound keeps a typo from asking for
/// hundreds of GB).
pub const MAX_BINS: usize = 4096;

/// `--cols` and `--rows` within [`MAX_BINS`]: else a usage error naming the flag.
pub fn check_bins(cols: usize, rows: usize) -> Result<()> {
    for (flag, v) in [("--cols", cols), ("--rows", rows)] {
        if v > MAX_BINS {
            return Err(crate::exit::err(
                crate::exit::Code::Usage,
                format!("{flag} {v}: at most {MAX_BINS} bins (the image is 1200 x 720 pixels)"),
            ));
        }
    }
    Ok(())
}

/// Access rate per (row, column) cell. `NaN`: nothing monitored there at that time.
#[derive(Clone, Debug)]
pub struct Grid {
    pub cols: usize,
    pub rows: usize,
    /// Time of the first and last frame, µs.
    pub t0_us: u64,
    pub t1_us: u64,
    /// The collapsed address axis: disjoint spans, ascending.
    pub spans: Vec<(u64, u64)>,
    /// Sum of the span lengths.
    pub total: u64,
    /// Row-major, row 0 = lowest addresses.
    pub cells: Vec<f32>,
    pub frames: usize,
}

impl Grid {
    pub fn at(&self, row: usize, col: usize) -> f32 {
        self.cells[row * self.cols + col]
    }

    /// The address at a collapsed offset.
    pub fn addr_of(&self, off: u64) -> u64 {
        let mut acc = 0;
        for &(s, e) in &self.spans {
            if off < acc + (e - s) {
                return s + (off - acc);
            }
            acc += e - s;
        }
        self.spans.last().map_or(0, |s| s.1)
    }

    /// The collapsed offset of an address inside one of the spans.
    #[cfg(test)]
    pub fn offset_of(&self, addr: u64) -> Option<u64> {
        let mut acc = 0;
        for &(s, e) in &self.spans {
            if (s..e).contains(&addr) {
                return Some(acc + addr - s);
            }
            acc += e - s;
        }
        None
    }

    /// Mean rate of the rows covering `[lo, hi)` (addresses) in one column.
    #[cfg(test)]
    pub fn mean_rate(&self, col: usize, lo: u64, hi: u64) -> f32 {
        let (Some(a), Some(b)) = (self.offset_of(lo), self.offset_of(hi - 1)) else {
            return f32::NAN;
        };
        let ra = (a as u128 * self.rows as u128 / self.total as u128) as usize;
        let rb = (b as u128 * self.rows as u128 / self.total as u128) as usize;
        let v: Vec<f32> = (ra..=rb)
            .map(|r| self.at(r, col))
            .filter(|v| !v.is_nan())
            .collect();
        v.iter().sum::<f32>() / v.len().max(1) as f32
    }
}

/// Union of `[start, end)` ranges, merged where they touch or overlap.
fn union_spans(frames: &[&Frame], target: u32) -> Vec<(u64, u64)> {
    let mut all: Vec<(u64, u64)> = Vec::new();
    for f in frames {
        for t in f.targets.iter().filter(|t| t.id == target) {
            // Regions are sorted and mostly contiguous: coalesce them before collecting.
            let mut cur: Option<(u64, u64)> = None;
            for r in &t.regions {
                cur = match cur {
                    Some((s, e)) if r[0] <= e => Some((s, e.max(r[1]))),
                    Some(c) => {
                        all.push(c);
                        Some((r[0], r[1]))
                    }
                    None => Some((r[0], r[1])),
                };
            }
            all.extend(cur);
        }
    }
    all.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (s, e) in all {
        match out.last_mut() {
            Some(l) if s <= l.1 => l.1 = l.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Build the grid for one target (at most `cols` time bins, `rows` address bins), over the
/// whole monitored range or only `[lo, hi)` of it.
pub fn build(
    rec: &Loaded,
    target: u32,
    cols: usize,
    rows: usize,
    range: Option<(u64, u64)>,
) -> Result<Grid> {
    let frames: Vec<&Frame> = rec
        .frames
        .iter()
        .filter(|f| f.targets.iter().any(|t| t.id == target))
        .collect();
    if frames.is_empty() {
        bail!("{}: no snapshot of target {target}", rec.path.display());
    }
    let mut spans = union_spans(&frames, target);
    if let Some((lo, hi)) = range {
        spans = spans
            .into_iter()
            .filter(|&(s, e)| s.max(lo) < e.min(hi))
            .map(|(s, e)| (s.max(lo), e.min(hi)))
            .collect();
        if spans.is_empty() {
            bail!(
                "{}: target {target} has no monitored bytes in {lo:#x}-{hi:#x}",
                rec.path.display()
            );
        }
    }
    let total: u64 = spans.iter().map(|s| s.1 - s.0).sum();
    if total == 0 {
        bail!(
            "{}: target {target} has no monitored bytes",
            rec.path.display()
        );
    }
    check_bins(cols, rows)?;
    let cols = cols.clamp(1, frames.len());
    let rows = rows.max(1);
    let max = rec.max_nr_accesses().max(1) as f64;
    let t0 = frames[0].t_us;
    let t1 = frames[frames.len() - 1].t_us;
    // Prefix sums of span lengths, for address → collapsed offset.
    let mut prefix = Vec::with_capacity(spans.len());
    let mut acc = 0u64;
    for s in &spans {
        prefix.push(acc);
        acc += s.1 - s.0;
    }
    let off = |addr: u64| -> u64 {
        let i = spans.partition_point(|s| s.1 <= addr).min(spans.len() - 1);
        prefix[i] + addr.saturating_sub(spans[i].0).min(spans[i].1 - spans[i].0)
    };
    let mut acc_rate = vec![0f64; rows * cols];
    let mut acc_w = vec![0f64; rows * cols];
    let row_len = total as f64 / rows as f64;
    for (fi, f) in frames.iter().enumerate() {
        let col = if t1 > t0 {
            (((f.t_us - t0) as u128 * cols as u128) / ((t1 - t0) as u128 + 1)) as usize
        } else {
            fi * cols / frames.len()
        };
        for t in f.targets.iter().filter(|t| t.id == target) {
            for r in &t.regions {
                let (rs, re) = match range {
                    Some((lo, hi)) if r[1] <= lo || r[0] >= hi => continue,
                    Some((lo, hi)) => (r[0].max(lo), r[1].min(hi)),
                    None => (r[0], r[1]),
                };
                let (a, b) = (off(rs) as f64, off(re - 1) as f64 + 1.0);
                let rate = r[2] as f64 / max;
                let r0 = ((a / row_len) as usize).min(rows - 1);
                let r1 = (((b - 1.0) / row_len) as usize).min(rows - 1);
                for row in r0..=r1 {
                    let lo = a.max(row as f64 * row_len);
                    let hi = b.min((row + 1) as f64 * row_len);
                    if hi > lo {
                        acc_rate[row * cols + col] += (hi - lo) * rate;
                        acc_w[row * cols + col] += hi - lo;
                    }
                }
            }
        }
    }
    let mut cells: Vec<f32> = acc_rate
        .iter()
        .zip(&acc_w)
        .map(|(r, w)| if *w > 0.0 { (r / w) as f32 } else { f32::NAN })
        .collect();
    // A column no frame fell into (uneven frame times) repeats the one before it.
    for col in 1..cols {
        if (0..rows).all(|r| acc_w[r * cols + col] == 0.0) {
            for r in 0..rows {
                cells[r * cols + col] = cells[r * cols + col - 1];
            }
        }
    }
    Ok(Grid {
        cols,
        rows,
        t0_us: t0,
        t1_us: t1,
        spans,
        total,
        cells,
        frames: frames.len(),
    })
}

/// The "inferno" colour map (matplotlib), 5 stops, linear in between: dark = cold, bright = hot.
pub fn colour(v: f32) -> RGBColor {
    if v.is_nan() {
        return RGBColor(225, 225, 225);
    }
    const STOPS: [(f32, [u8; 3]); 5] = [
        (0.0, [0, 0, 4]),
        (0.25, [87, 16, 110]),
        (0.5, [188, 55, 84]),
        (0.75, [249, 142, 9]),
        (1.0, [252, 255, 164]),
    ];
    let v = v.clamp(0.0, 1.0);
    for w in STOPS.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            let m = |i: usize| (ca[i] as f32 + t * (cb[i] as f32 - ca[i] as f32)).round() as u8;
            return RGBColor(m(0), m(1), m(2));
        }
    }
    RGBColor(252, 255, 164)
}

/// Quantise for the SVG (runs of equal colour become one rectangle).
fn level(v: f32) -> i32 {
    if v.is_nan() {
        -1
    } else {
        (v.clamp(0.0, 1.0) * 32.0).round() as i32
    }
}

/// Render to `out` (.png or .svg).
pub fn render(grid: &Grid, title: &str, out: &Path) -> Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let size = (1200u32, 720u32);
    match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw(&root, grid, title, false)
                .map_err(|e| anyhow::anyhow!("{}: cannot draw: {e}", out.display()))?;
            root.present()
                .with_context(|| format!("{}: cannot write", out.display()))?;
        }
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw(&root, grid, title, true)
                .map_err(|e| anyhow::anyhow!("{}: cannot draw: {e}", out.display()))?;
            root.present()
                .with_context(|| format!("{}: cannot write", out.display()))?;
        }
        _ => bail!("{}: output must end in .png or .svg", out.display()),
    }
    Ok(())
}

pub(crate) type DrawResult<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

pub(crate) fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    g: &Grid,
    title: &str,
    merge_runs: bool,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (w, _h) = root.dim_in_pixel();
    let (main, bar) = root.split_horizontally(w - 110);
    let secs = |us: u64| us as f64 / 1e6;
    let (x0, x1) = (secs(g.t0_us), secs(g.t1_us).max(secs(g.t0_us) + 1e-3));
    let total = g.total as f64;
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(140)
        .build_cartesian_2d(x0..x1, 0f64..total)?;
    let addr_label = |y: &f64| format!("{:#x}", g.addr_of(*y as u64));
    chart
        .configure_mesh()
        .disable_mesh()
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .x_desc("time (s)")
        .y_desc("address (gaps between mappings collapsed)")
        .y_label_formatter(&addr_label)
        .x_labels(10)
        .y_labels(12)
        .draw()?;
    let dx = (x1 - x0) / g.cols as f64;
    let dy = total / g.rows as f64;
    let mut rects = Vec::new();
    for row in 0..g.rows {
        let mut col = 0;
        while col < g.cols {
            let v = g.at(row, col);
            let mut end = col + 1;
            if merge_runs {
                while end < g.cols && level(g.at(row, end)) == level(v) {
                    end += 1;
                }
            }
            let c = colour(v);
            rects.push(Rectangle::new(
                [
                    (x0 + col as f64 * dx, row as f64 * dy),
                    (x0 + end as f64 * dx, (row + 1) as f64 * dy),
                ],
                c.filled(),
            ));
            col = end;
        }
    }
    chart.draw_series(rects)?;
    // Span boundaries (collapsed gaps) as white lines.
    let mut acc = 0f64;
    for s in &g.spans[..g.spans.len().saturating_sub(1)] {
        acc += (s.1 - s.0) as f64;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x0, acc), (x1, acc)],
            WHITE.stroke_width(2),
        )))?;
    }
    // Colour bar.
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(46)
        .margin_bottom(56)
        .margin_right(8)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..100f64)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .y_desc("access rate (% of max)")
        .y_labels(6)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    cb.draw_series((0..100).map(|i| {
        Rectangle::new(
            [(0.0, i as f64), (1.0, i as f64 + 1.0)],
            colour((i as f32 + 0.5) / 100.0).filled(),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::read_from;
    use crate::record::tests::{stairs, write_lines};

    fn loaded(n: usize) -> Loaded {
        let (h, frames) = stairs(n);
        read_from(
            Path::new("s.rec"),
            write_lines(&h, &frames, true).as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn gaps_are_collapsed_and_the_hot_window_moves() {
        let l = loaded(64);
        let g = build(&l, 42, 64, 128, None).unwrap();
        assert_eq!(g.spans.len(), 3, "{:?}", g.spans);
        assert_eq!(g.total, (1 << 20) + (64 << 20) + 0x21000);
        let base = 0x7f00_0000_0000u64;
        let eighth = 8u64 << 20;
        // Early: the first eighth of the big span is hot, the last one cold; late: reversed.
        assert!(g.mean_rate(0, base, base + eighth) > 0.8);
        assert!(g.mean_rate(0, base + 7 * eighth, base + 8 * eighth) < 0.05);
        assert!(g.mean_rate(63, base, base + eighth) < 0.05);
        assert!(g.mean_rate(63, base + 7 * eighth, base + 8 * eighth) > 0.8);
    }

    #[test]
    fn renders_png_and_svg() {
        let l = loaded(40);
        let g = build(&l, 42, 300, 150, None).unwrap();
        assert_eq!(g.cols, 40);
        let dir = tempfile::tempdir().unwrap();
        for name in ["h.png", "h.svg"] {
            let p = dir.path().join(name);
            render(&g, "test", &p).unwrap();
            assert!(std::fs::metadata(&p).unwrap().len() > 1000);
        }
        assert!(render(&g, "test", &dir.path().join("h.gif")).is_err());
    }

    #[test]
    fn unknown_target_is_an_error() {
        let l = loaded(4);
        assert!(build(&l, 7, 10, 10, None).is_err());
    }

    #[test]
    fn range_restricts_the_address_axis() {
        let l = loaded(16);
        let base = 0x7f00_0000_0000u64;
        let g = build(&l, 42, 16, 64, Some((base, base + (64 << 20)))).unwrap();
        assert_eq!(g.spans, vec![(base, base + (64 << 20))]);
        assert!(g.mean_rate(0, base, base + (8 << 20)) > 0.8);
        assert!(build(&l, 42, 16, 64, Some((1, 2))).is_err());
    }

    #[test]
    fn colour_map_ends() {
        assert_eq!(colour(0.0), RGBColor(0, 0, 4));
        assert_eq!(colour(1.0), RGBColor(252, 255, 164));
        assert_eq!(colour(f32::NAN), RGBColor(225, 225, 225));
    }
}
