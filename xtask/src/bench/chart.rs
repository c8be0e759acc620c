//! The PNG chart: exits per Linux boot by reason (left) and every ratio with its spread on a
//! log scale around 1 (right). Text is drawn with ab_glyph from a TrueType file, so nothing
//! depends on the system's font configuration.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord};
use plotters::coord::types::RangedCoordusize;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Report;

const SIZE: (u32, u32) = (1600, 720);
const LEFT_WIDTH: u32 = 600;
const FONT: &str = "sans-serif";
/// The ratio axis: from a twentieth to fifty thousand times the peer (an exit under QEMU TCG
/// costs over ten thousand non-exiting loop iterations).
const RATIO_RANGE: std::ops::Range<f64> = 0.05..50_000.0;
const BAR: RGBColor = RGBColor(70, 110, 170);
const SPREAD: RGBColor = RGBColor(200, 60, 40);
/// Pixels left free above and below each bar.
const BAR_GAP: u32 = 10;

fn err(e: impl std::fmt::Debug) -> String {
    format!("drawing the chart: {e:?}")
}

/// Draws `report` into `path`, with text in the TrueType font `font`.
pub fn draw(report: &Report, path: &Path, font: &'static [u8]) -> Result<(), String> {
    plotters::style::register_font(FONT, FontStyle::Normal, font)
        .map_err(|_| "the chart's font file is not a usable TrueType font".to_owned())?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(LEFT_WIDTH);
    exits(&left, report)?;
    ratios(&right, report)?;
    root.present().map_err(err)
}

fn label_at(labels: &[String], v: &SegmentValue<usize>) -> String {
    match v {
        SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A chart of horizontal bars, one per label, along a log-scale x axis.
type BarChart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<LogCoord<f64>, SegmentedCoord<RangedCoordusize>>>;

/// How a bar chart's axes look.
struct Axes {
    x: Range<f64>,
    x_desc: &'static str,
    /// Pixels kept left of the plot for the bar labels.
    label_width: u32,
    label_px: u32,
}

/// Both charts are horizontal bars on a log scale: the chart with its caption, mesh and bar
/// labels drawn, ready for the bars.
fn bar_chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    caption: &str,
    axes: Axes,
    labels: &[String],
) -> Result<BarChart<'a, DB>, String> {
    let n = labels.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(axes.label_width)
        .build_cartesian_2d(axes.x.log_scale(), (0..n - 1).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| label_at(labels, v))
        .x_desc(axes.x_desc)
        .label_style((FONT, axes.label_px))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

fn exits<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, report: &Report) -> Result<(), String> {
    let reasons: Vec<_> = report.boot_exits.iter().take(10).collect();
    let labels: Vec<String> = reasons.iter().map(|e| e.reason.clone()).collect();
    // Log scale: one reason (port I/O) dwarfs the others by two orders of magnitude.
    let top = reasons.iter().map(|e| e.per_boot.max).fold(10.0, f64::max) * 4.0;
    let caption = match report.boot_exit_total {
        Some(t) => format!("Exits per Linux boot by reason (total {:.0})", t.median),
        None => "Exits per Linux boot (not measured)".to_owned(),
    };
    let axes = Axes {
        x: 1.0..top,
        x_desc: "exits (log scale; median over runs; red: min–max)",
        label_width: 110,
        label_px: 15,
    };
    let mut chart = bar_chart(area, &caption, axes, &labels)?;
    for (i, e) in reasons.iter().enumerate() {
        let mut bar = Rectangle::new(
            [
                (1.0, SegmentValue::Exact(i)),
                (e.per_boot.median.max(1.0), SegmentValue::Exact(i + 1)),
            ],
            BAR.mix(0.8).filled(),
        );
        bar.set_margin(BAR_GAP, BAR_GAP, 0, 0);
        chart.draw_series([bar]).map_err(err)?;
        let centre = SegmentValue::CenterOf(i);
        let spread = PathElement::new(
            vec![
                (e.per_boot.min.max(1.0), centre.clone()),
                (e.per_boot.max.max(1.0), centre.clone()),
            ],
            SPREAD.stroke_width(3),
        );
        let text = Text::new(
            format!(" {:.0} ({:.0}%)", e.per_boot.median, e.share * 100.0),
            (e.per_boot.max.max(1.0), centre),
            (FONT, 14),
        );
        chart.draw_series([spread]).map_err(err)?;
        chart.draw_series([text]).map_err(err)?;
    }
    Ok(())
}

fn ratios<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    report: &Report,
) -> Result<(), String> {
    let rows: Vec<_> = report.rows.iter().filter(|r| r.ratio.is_some()).collect();
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{}: {} ({})", r.bench, r.figure, r.compares))
        .collect();
    let clamp = |x: f64| x.clamp(RATIO_RANGE.start, RATIO_RANGE.end);
    let axes = Axes {
        x: RATIO_RANGE,
        x_desc: "ratio (log scale; 1 = same as the peer)",
        label_width: 400,
        label_px: 14,
    };
    let caption = "Ratios against the peer of the same run (median, min–max)";
    let mut chart = bar_chart(area, caption, axes, &labels)?;
    chart
        .draw_series([PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            BLACK.stroke_width(1),
        )])
        .map_err(err)?;
    for (i, r) in rows.iter().enumerate() {
        let Some(s) = r.ratio else { continue };
        let centre = SegmentValue::CenterOf(i);
        let mut bar = Rectangle::new(
            [
                (1.0, SegmentValue::Exact(i)),
                (clamp(s.median), SegmentValue::Exact(i + 1)),
            ],
            BAR.mix(0.8).filled(),
        );
        bar.set_margin(BAR_GAP, BAR_GAP, 0, 0);
        let spread = PathElement::new(
            vec![
                (clamp(s.min), centre.clone()),
                (clamp(s.max), centre.clone()),
            ],
            SPREAD.stroke_width(3),
        );
        let text = Text::new(
            format!(" {:.2}x", s.median),
            (clamp(s.max.max(1.0)), centre),
            (FONT, 14),
        );
        chart.draw_series([bar]).map_err(err)?;
        chart.draw_series([spread]).map_err(err)?;
        chart.draw_series([text]).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::parse::ExitCounts;
    use crate::bench::report;
    use crate::bench::suite::Raw;

    #[test]
    fn draws_a_png_when_the_font_is_there() {
        let Ok(font) = std::fs::read(crate::sys::FONT) else {
            eprintln!("skipped: no {}", crate::sys::FONT);
            return;
        };
        let raw = Raw {
            runs: 2,
            boot_wall_hv_s: vec![Some(20.0), Some(30.0)],
            boot_wall_plain_s: vec![Some(5.0), Some(6.0)],
            boot_exits: vec![ExitCounts {
                total: 10,
                by_reason: vec![("io".into(), 9), ("npf".into(), 1)],
            }],
            ..Raw::default()
        };
        let report = report::build(raw, None);
        let path = std::env::temp_dir().join(format!("xtask-chart-{}.png", std::process::id()));
        draw(&report, &path, Box::leak(font.into_boxed_slice())).unwrap();
        let png = std::fs::read(&path).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let _ = std::fs::remove_file(&path);
    }
}
