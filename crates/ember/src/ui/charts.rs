//! The Streaming page's charts: a timeline and a histogram per measure over the retained
//! batches, drawn as SVG by plotters on the server.

use plotters::prelude::*;

use super::View;
use crate::listener::BatchInfo;
use crate::lock::lock;

const SIZE: (u32, u32) = (560, 180);

/// One measure of a batch: its value, and its unit in labels.
fn measure(name: &str, interval_ms: u64) -> Option<(Box<dyn Fn(&BatchInfo) -> Option<f64>>, &'static str)> {
    let ms = |f: fn(&BatchInfo) -> Option<u64>| -> Box<dyn Fn(&BatchInfo) -> Option<f64>> { Box::new(move |b| f(b).map(|v| v as f64)) };
    Some(match name {
        "input_rate" => (
            Box::new(move |b: &BatchInfo| Some(b.num_records() as f64 * 1000.0 / interval_ms.max(1) as f64)),
            "records/s",
        ),
        "scheduling_delay" => (ms(BatchInfo::scheduling_delay), "ms"),
        "processing_time" => (ms(BatchInfo::processing_delay), "ms"),
        "total_delay" => (ms(BatchInfo::total_delay), "ms"),
        _ => return None,
    })
}

/// `name` is `<measure>-timeline` or `<measure>-histogram`; `None` for an unknown chart.
pub(crate) fn render(view: &View, name: &str) -> Option<String> {
    let (measure_name, kind) = name.rsplit_once('-')?;
    let (value, unit) = measure(measure_name, view.interval_ms)?;
    let points: Vec<(f64, f64)> = {
        let stats = lock(&view.stats);
        stats
            .batches
            .iter()
            .filter_map(|b| Some((b.batch_time.milliseconds() as f64 / 1000.0, value(b)?)))
            .collect()
    };
    let mut svg = String::new();
    let drawn = match kind {
        "timeline" => timeline(&mut svg, &points, unit),
        "histogram" => histogram(&mut svg, &points, unit),
        _ => return None,
    };
    match drawn {
        Ok(()) => Some(svg),
        Err(e) => Some(format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\"><text x=\"10\" y=\"20\">cannot draw: {}</text></svg>",
            SIZE.0,
            SIZE.1,
            e.to_string().replace('<', "&lt;")
        )),
    }
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

fn timeline(svg: &mut String, points: &[(f64, f64)], unit: &str) -> Drawn {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = match (points.first(), points.last()) {
        (Some(first), Some(last)) if last.0 > first.0 => (first.0, last.0),
        (Some(first), _) => (first.0 - 1.0, first.0 + 1.0),
        _ => (0.0, 1.0),
    };
    let y1 = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .margin_right(32)
        .x_label_area_size(24)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, 0.0..y1)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(4)
        .x_label_formatter(&|x| format_clock(*x))
        .y_desc(unit)
        .draw()?;
    chart.draw_series(LineSeries::new(points.iter().copied(), &BLUE))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 2, BLUE.filled())))?;
    root.present()?;
    Ok(())
}

fn histogram(svg: &mut String, points: &[(f64, f64)], unit: &str) -> Drawn {
    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    const BINS: usize = 20;
    let max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let width = max / BINS as f64;
    let mut counts = [0u32; BINS];
    for &(_, v) in points {
        counts[((v / width) as usize).min(BINS - 1)] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&root)
        .margin(8)
        .margin_right(32)
        .x_label_area_size(24)
        .y_label_area_size(40)
        .build_cartesian_2d(0.0..max, 0u32..top + 1)?;
    chart
        .configure_mesh()
        .x_labels(5)
        .y_labels(4)
        .x_desc(unit)
        .y_desc("batches")
        .draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &n)| {
        let x = i as f64 * width;
        Rectangle::new([(x, 0), (x + width, n)], BLUE.mix(0.6).filled())
    }))?;
    root.present()?;
    Ok(())
}

/// Unix seconds as `HH:MM:SS` (UTC).
fn format_clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}
