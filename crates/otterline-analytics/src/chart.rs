//! Line charts as standalone SVG (drawn with `plotters`), embedded in HTML reports.

use plotters::prelude::*;
use serde::Serialize;

/// One line: a value per x label (`None` where the series has no data).
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub values: Vec<Option<f64>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub title: String,
    pub y_label: String,
    pub x: Vec<String>,
    pub series: Vec<Series>,
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The chart as an SVG document (an empty string if it has nothing to draw).
pub fn svg(chart: &Chart) -> String {
    let values = chart.series.iter().flat_map(|s| s.values.iter().flatten()).copied().filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if chart.x.is_empty() || !lo.is_finite() {
        return String::new();
    }
    if lo == hi {
        lo -= 1.0;
        hi += 1.0;
    }
    let pad = (hi - lo) * 0.08;
    let (lo, hi) = (if lo >= 0.0 { (lo - pad).max(0.0) } else { lo - pad }, hi + pad);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (760, 320)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let n = chart.x.len();
            let mut c = ChartBuilder::on(&root)
                .caption(&chart.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(64)
                .build_cartesian_2d(0f64..(n.max(2) - 1) as f64, lo..hi)?;
            let labels = chart.x.clone();
            c.configure_mesh()
                .x_labels(n.min(10))
                .x_label_formatter(&|x| labels.get(x.round() as usize).cloned().unwrap_or_default())
                .y_desc(&chart.y_label)
                .light_line_style(RGBColor(235, 235, 235))
                .draw()?;
            for (i, s) in chart.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let points: Vec<(f64, f64)> =
                    s.values.iter().enumerate().filter_map(|(x, v)| v.map(|v| (x as f64, v))).collect();
                c.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                    .label(&s.name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
                c.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            if chart.series.len() > 1 {
                c.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
            }
            root.present()?;
            Ok(())
        })();
        if drawn.is_err() {
            return String::new();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_every_series() {
        let c = Chart {
            title: "cost per day".into(),
            y_label: "USD".into(),
            x: vec!["d1".into(), "d2".into(), "d3".into()],
            series: vec![
                Series { name: "rag-worker".into(), values: vec![Some(1.0), Some(2.0), None] },
                Series { name: "support-bot".into(), values: vec![Some(0.5), Some(0.7), Some(0.6)] },
            ],
        };
        let s = svg(&c);
        assert!(s.starts_with("<svg") && s.contains("rag-worker") && s.contains("support-bot"), "{s}");
        assert!(s.contains("<polyline") || s.contains("<path"));
        assert_eq!(svg(&Chart { series: vec![], ..c }), "");
    }
}
