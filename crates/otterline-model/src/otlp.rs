//! Builders for OTLP data points and metrics, so derived metrics are shaped one way.

use otterline_core::pdata::common::{InstrumentationScope, KeyValue};
use otterline_core::pdata::metrics::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum,
};

/// The instrumentation scope of what an Otterline component derives (named from
/// [`crate::names::scope`]), with Otterline's version.
pub fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope { name: name.into(), version: env!("CARGO_PKG_VERSION").into(), ..Default::default() }
}

/// A number data point over `[start, end]` (Unix ns; `start` 0 for gauges without one).
pub fn point(start: u64, end: u64, value: number_data_point::Value, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: end,
        value: Some(value),
        ..Default::default()
    }
}

/// A double data point.
pub fn double_point(start: u64, end: u64, value: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    point(start, end, number_data_point::Value::AsDouble(value), attributes)
}

/// An integer data point.
pub fn int_point(start: u64, end: u64, value: i64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    point(start, end, number_data_point::Value::AsInt(value), attributes)
}

/// A metric of any kind.
pub fn metric(name: &str, unit: &str, description: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: description.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// A gauge.
pub fn gauge(name: &str, unit: &str, description: &str, data_points: Vec<NumberDataPoint>) -> Metric {
    metric(name, unit, description, metric::Data::Gauge(Gauge { data_points }))
}

/// A sum with the given temporality.
pub fn sum(
    name: &str,
    unit: &str,
    description: &str,
    temporality: AggregationTemporality,
    monotonic: bool,
    data_points: Vec<NumberDataPoint>,
) -> Metric {
    let data = Sum { data_points, aggregation_temporality: temporality as i32, is_monotonic: monotonic };
    metric(name, unit, description, metric::Data::Sum(data))
}

/// A number data point's value as f64, if it has one.
#[inline]
pub fn number(p: &NumberDataPoint) -> Option<f64> {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    }
}
