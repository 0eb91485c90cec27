//! The drill's timeline as an SVG chart: one row per scenario (plus the
//! sandbox set-up and the cleanup), one bar per step, failed steps in red.
//! Drawn by plotters' SVG backend.

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::report::Report;

fn chart_err(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

/// The SVG document of `report`'s timeline.
pub fn timeline_svg(report: &Report) -> Result<String> {
    let mut rows: Vec<&str> = Vec::new();
    for p in &report.phases {
        if !rows.contains(&p.scenario.as_str()) {
            rows.push(&p.scenario);
        }
    }
    let at = |t: jiff::Timestamp| t.duration_since(report.started).as_secs_f64().max(0.0);
    let span = report
        .phases
        .iter()
        .map(|p| at(p.end))
        .fold(report.total_seconds, f64::max)
        .max(1.0);
    let n = rows.len().max(1);
    let height = 110 + 44 * u32::try_from(n).unwrap_or(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("DR drill {}: {}", report.id, report.status.label()),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(150)
            .build_cartesian_2d(0f64..span * 1.02, (0..n).into_segmented())
            .map_err(chart_err)?;
        let row_name = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => n
                .checked_sub(i + 1)
                .and_then(|k| rows.get(k))
                .copied()
                .unwrap_or("")
                .to_owned(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&row_name)
            .x_desc("seconds since the drill started")
            .draw()
            .map_err(chart_err)?;
        let palette = [RGBColor(52, 101, 164), RGBColor(114, 159, 207)];
        let bars = report.phases.iter().enumerate().map(|(k, p)| {
            let row = rows.iter().position(|r| *r == p.scenario).unwrap_or(0);
            let y = n - 1 - row;
            let color = if p.ok {
                palette[k % 2]
            } else {
                RGBColor(204, 0, 0)
            };
            let mut bar = Rectangle::new(
                [
                    (at(p.start), SegmentValue::Exact(y)),
                    (
                        at(p.end).max(at(p.start) + span / 800.0),
                        SegmentValue::Exact(y + 1),
                    ),
                ],
                color.filled(),
            );
            bar.set_margin(8, 8, 0, 0);
            bar
        });
        chart.draw_series(bars).map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(svg)
}
