//! `otterline-nab`: scores the `anomaly` processor on a Numenta Anomaly Benchmark slice.
//!
//! Each series is fed, one value per window, as a gauge through a fresh `anomaly`
//! processor with its default settings (one configuration for every file), and every
//! episode start is a detection. Detections are scored with NAB's standard profile
//! (probation, windows, scaled sigmoid, normalisation); see `otterline_bench::nab`.
//!
//! Usage: otterline-nab [NAB_DIR] (default ../shared/nab)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use otterline_bench::nab::{normalised, score_file, FileScore, STANDARD};
use otterline_core::component::Processor;
use otterline_core::pdata::metrics::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use otterline_core::pdata::ExportMetricsServiceRequest;
use otterline_core::Batch;
use otterline_model::names::event::ANOMALY as EVENT;
use otterline_processors::anomaly::{AnomalyConfig, AnomalyProcessor};

fn parse_ts(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .ok()
}

fn read_csv(path: &Path) -> Vec<(NaiveDateTime, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (t, v) = l.split_once(',')?;
            Some((parse_ts(t)?, v.trim().parse().ok()?))
        })
        .collect()
}

/// Row indices of the anomaly episodes the processor starts on `rows`.
pub fn detect(rows: &[(NaiveDateTime, f64)], cfg: &AnomalyConfig) -> Vec<usize> {
    let mut p = AnomalyProcessor::new(cfg.clone());
    let mut out = Vec::new();
    let mut hits = Vec::new();
    for (i, (t, v)) in rows.iter().enumerate() {
        let ns = t.and_utc().timestamp_nanos_opt().unwrap_or(0) as u64;
        let m = Metric {
            name: "nab.value".into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    time_unix_nano: ns,
                    value: Some(number_data_point::Value::AsDouble(*v)),
                    ..Default::default()
                }],
            })),
            ..Default::default()
        };
        let batch = Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }],
                ..Default::default()
            }],
        });
        out.clear();
        p.process(batch, &mut out);
        for b in &out {
            if let Batch::Logs(l) = b {
                let starts = l
                    .resource_logs
                    .iter()
                    .flat_map(|r| &r.scope_logs)
                    .flat_map(|s| &s.log_records)
                    .filter(|r| {
                        r.event_name == EVENT
                            && r.attributes.iter().any(|a| {
                                a.key == "otterline.anomaly.state" && format!("{:?}", a.value).contains("firing")
                            })
                    })
                    .count();
                if starts > 0 {
                    hits.push(i);
                }
            }
        }
    }
    hits
}

/// `OTTERLINE_NAB_TRY="z=4,similar=2,cooldown=30"` explores other settings; the reported
/// score is the default one unless it is set.
fn config() -> AnomalyConfig {
    let mut c = AnomalyConfig::default();
    if let Ok(spec) = std::env::var("OTTERLINE_NAB_TRY") {
        for kv in spec.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv.split_once('=').expect("key=value");
            let f: f64 = v.parse().expect("number");
            match k {
                "z" => c.detectors.metrics.z_threshold = f,
                "floor" => c.detectors.metrics.relative_floor = f,
                "similar" => c.detectors.metrics.min_similar = f,
                "memory" => c.detectors.metrics.memory_windows = f,
                "similarity" => c.detectors.metrics.similarity = f,
                "resolution" => c.detectors.metrics.resolution = f,
                "smoothing" => c.detectors.metrics.smoothing = f,
                "cells" => c.detectors.metrics.max_cells = f as usize,
                "mwarmup" => c.detectors.metrics.warmup_windows = f as u64,
                "alpha" => c.alpha = f,
                "cooldown" => c.detectors.metrics.cooldown_windows = f as u32,
                "warmup" => c.warmup_windows = f as u64,
                "required" => c.detectors.metrics.persistence_required = f as u32,
                "of" => c.detectors.metrics.persistence_windows = f as u32,
                "recovery" => c.recovery_windows = f as u32,
                "accept" => c.accept_shift_after = f as u32,
                other => panic!("unknown setting {other}"),
            }
        }
        eprintln!("non-default settings: {spec}");
    }
    c
}

fn main() {
    let cfg = config();
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "../shared/nab".into()));
    let labels: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("labels/combined_windows.json")).expect("labels"))
            .expect("labels JSON");
    let mut scores: Vec<FileScore> = Vec::new();
    println!("{:<52} {:>6} {:>4} {:>4} {:>4} {:>8}", "file", "rows", "tp", "fp", "fn", "raw");
    for (file, windows) in &labels {
        let rows = read_csv(&dir.join("data").join(file));
        if rows.is_empty() {
            continue;
        }
        let index_of = |t: &str| -> usize {
            let ts = parse_ts(t).unwrap_or_else(|| panic!("bad label time {t}"));
            rows.iter().position(|(r, _)| *r >= ts).unwrap_or(rows.len() - 1)
        };
        let win: Vec<(usize, usize)> = windows.iter().map(|w| (index_of(&w[0]), index_of(&w[1]))).collect();
        let det = detect(&rows, &cfg);
        let s = score_file(rows.len(), &win, &det, STANDARD);
        println!("{:<52} {:>6} {:>4} {:>4} {:>4} {:>8.3}", file, rows.len(), s.tp, s.fp, s.fn_, s.raw);
        scores.push(s);
    }
    println!(
        "NAB standard-profile score ({} files, default settings): {:.1}",
        scores.len(),
        normalised(&scores, STANDARD)
    );
}
