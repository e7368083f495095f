//! The `hostmetrics` receiver in the real binary: scrapes on its interval, names metrics
//! after the OpenTelemetry system conventions, and reports Otterline's own process with
//! the values `/proc` gives for it.

use crate::common;

use std::time::Duration;

use common::{metrics_of, rss_kib, Instance};
use otterline_core::pdata::common::any_value::Value as V;
use otterline_core::pdata::metrics::{metric::Data, number_data_point};
use otterline_core::Signal;

const CONFIG: &str = r#"
receivers:
  hostmetrics:
    collection_interval: 200ms
    initial_delay: 0s
    scrapers: {cpu: {}, memory: {}, load: {}, disk: {}, filesystem: {}, network: {}, process: {}}
exporters:
  json: {path: "{{DIR}}/json", flush_interval: 100ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    metrics: {receivers: [hostmetrics], exporters: [json]}
"#;

fn value(p: &otterline_core::pdata::metrics::NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

#[test]
fn host_and_process_metrics_arrive_on_the_interval() {
    let mut inst = Instance::start(CONFIG);
    let pid = inst.pid();
    std::thread::sleep(Duration::from_millis(600));
    let rss_during = rss_kib(pid) as f64 * 1024.0;
    std::thread::sleep(Duration::from_millis(900));
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let batches = inst.json_batches(Signal::Metrics);
    let metrics = metrics_of(&batches);
    let points = |name: &str| -> Vec<f64> {
        metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(Data::Gauge(g)) => g.data_points.iter().map(value).collect::<Vec<_>>(),
                Some(Data::Sum(s)) => s.data_points.iter().map(value).collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    for name in [
        "system.cpu.utilization",
        "system.memory.usage",
        "system.memory.utilization",
        "system.cpu.load_average.1m",
        "system.disk.io",
        "system.filesystem.usage",
        "system.network.io",
        "process.cpu.time",
        "process.memory.usage",
    ] {
        assert!(!points(name).is_empty(), "no {name} in {} metrics", metrics.len());
    }
    // 1.5 s at 200 ms: several scrapes, not one.
    let scrapes = metrics.iter().filter(|m| m.name == "system.memory.limit").count();
    assert!(scrapes >= 4, "only {scrapes} scrapes in 1.5 s");
    assert!(points("system.cpu.utilization").iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(points("system.memory.utilization").iter().all(|v| *v > 0.0 && *v < 1.0));
    // The process resource is this Otterline, and its RSS is what /proc said meanwhile.
    let own: Vec<_> = batches
        .iter()
        .filter_map(|b| match b {
            otterline_core::Batch::Metrics(r) => Some(r),
            _ => None,
        })
        .flat_map(|r| &r.resource_metrics)
        .filter(|rm| {
            rm.resource.as_ref().is_some_and(|r| {
                r.attributes.iter().any(|a| {
                    a.key == "process.pid"
                        && a.value.as_ref().and_then(|v| v.value.as_ref()) == Some(&V::IntValue(pid as i64))
                })
            })
        })
        .collect();
    assert!(!own.is_empty(), "no metrics with resource process.pid = {pid}");
    let rss = points("process.memory.usage");
    let median = {
        let mut r = rss.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    assert!(
        (median - rss_during).abs() / rss_during < 0.5,
        "process.memory.usage median {median} B vs VmRSS {rss_during} B during the run"
    );
    // CPU time only grows.
    let cpu = points("process.cpu.time");
    assert!(cpu.windows(2).all(|w| w[1] >= w[0]), "{cpu:?}");
}
