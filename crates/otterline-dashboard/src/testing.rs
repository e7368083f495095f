//! Batches shaped like the output of `aggregate` and `health`, for tests and benchmarks
//! of the store (the integration tests use the real processors).

use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::metrics::{
    metric, number_data_point, summary_data_point::ValueAtQuantile, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::ExportMetricsServiceRequest;
use otterline_core::Batch;
use otterline_model::names::metric as m;

/// One minute in ns.
pub const MIN: u64 = 60_000_000_000;

pub fn kv(k: &str, v: &str) -> KeyValue {
    otterline_model::attrs::kv_str(k, v)
}

fn point(end: u64, v: number_data_point::Value, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: end,
        start_time_unix_nano: end - MIN,
        value: Some(v),
        attributes,
        ..Default::default()
    }
}

fn sum(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(metric::Data::Sum(Sum { data_points: points, ..Default::default() })),
        ..Default::default()
    }
}

/// The metrics of one aggregate window of one service (one series).
pub fn window_metrics(end: u64, calls: i64, errors: i64, p95_s: f64, cost: f64) -> Vec<Metric> {
    vec![
        sum(m::CALLS, vec![point(end, number_data_point::Value::AsInt(calls), vec![])]),
        sum(m::ERRORS, vec![point(end, number_data_point::Value::AsInt(errors), vec![])]),
        sum(m::COST, vec![point(end, number_data_point::Value::AsDouble(cost), vec![])]),
        Metric {
            name: m::DURATION_SUMMARY.into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: end,
                    count: calls as u64,
                    quantile_values: vec![
                        ValueAtQuantile { quantile: 0.5, value: p95_s / 2.0 },
                        ValueAtQuantile { quantile: 0.95, value: p95_s },
                    ],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ]
}

/// One resource per service, as `aggregate` emits them.
pub fn resource(service: &str, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv(otterline_model::names::attr::SERVICE_NAME, service)],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
        ..Default::default()
    }
}

/// One aggregate window of one service.
pub fn window(service: &str, end: u64, calls: i64, errors: i64, p95_s: f64, cost: f64) -> Batch {
    Batch::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![resource(service, window_metrics(end, calls, errors, p95_s, cost))],
    })
}

/// `otterline.health.score` points: per service (`Some`) or overall (`None`).
pub fn health_points(end: u64, scores: &[(Option<&str>, f64, &str)]) -> Batch {
    let points = scores
        .iter()
        .map(|(service, score, status)| {
            let mut attributes = vec![kv(otterline_model::names::health::STATUS, status)];
            if let Some(s) = service {
                attributes.push(kv(otterline_model::names::attr::SERVICE_NAME, s));
            }
            point(end, number_data_point::Value::AsDouble(*score), attributes)
        })
        .collect();
    let g = Metric {
        name: m::HEALTH_SCORE.into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: points })),
        ..Default::default()
    };
    Batch::Metrics(ExportMetricsServiceRequest { resource_metrics: vec![resource("otterline", vec![g])] })
}

/// One health score.
pub fn health(service: Option<&str>, end: u64, score: f64, status: &str) -> Batch {
    health_points(end, &[(service, score, status)])
}
