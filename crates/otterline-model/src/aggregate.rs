//! Reading the `aggregate` processor's metric family back: the one place that knows which
//! metric carries what, for the `anomaly` and `health` processors and the dashboard.
//!
//! Points are handed out with their attributes (the series' dimensions, the status
//! dimension `otel.status_code`, and `gen_ai.token.type` on token counts) and their window.

use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::metrics::{metric, Metric};

use crate::attrs::attr;
use crate::names::{attr as an, metric as m};
use crate::otlp::number;

/// The quantile the readers judge latency by.
pub const P95: f64 = 0.95;

/// What a metric is to a reader of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Read through [`points`].
    Read,
    /// Written by `aggregate` but derived from the others (histograms, means, throughput):
    /// readers skip it.
    Derived,
    /// Not an `aggregate` metric.
    Other,
}

/// The role of a metric name.
pub fn role(name: &str) -> Role {
    match name {
        m::CALLS
        | m::ERRORS
        | m::DURATION_SUMMARY
        | m::COST
        | m::UNPRICED_CALLS
        | m::TOKEN_USAGE
        | m::QUALITY_SCORE
        | m::USER_SATISFACTION => Role::Read,
        m::DURATION_MEAN | m::THROUGHPUT | m::GEN_AI_OPERATION_DURATION | m::GEN_AI_TOKEN_USAGE => Role::Derived,
        _ => Role::Other,
    }
}

/// One point's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Calls(f64),
    Errors(f64),
    /// USD.
    Cost(f64),
    /// Calls without a price (a model missing from the price table).
    Unpriced(f64),
    /// Tokens of one `gen_ai.token.type` (`input`, `output`, …; empty when absent).
    Tokens {
        kind: &'a str,
        count: f64,
    },
    /// The duration summary: calls, total seconds and the p95 (points without a p95 are
    /// not handed out).
    Duration {
        count: u64,
        sum: f64,
        p95: f64,
    },
    Quality(f64),
    Satisfaction(f64),
}

/// One point of the family.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    pub attributes: &'a [KeyValue],
    /// Window start and end (Unix ns).
    pub start: u64,
    pub end: u64,
    pub value: Value<'a>,
}

impl Point<'_> {
    /// The series' status dimension says the calls failed.
    pub fn is_error(&self) -> bool {
        is_error(self.attributes)
    }

    /// The series' spans are entry spans of their service (what service-level RED counts).
    pub fn is_entry(&self) -> bool {
        is_entry(self.attributes)
    }
}

/// Whether a span is an entry span of its service — kind SERVER or CONSUMER, or a root
/// span: what service-level RED counts (`aggregate` marks its series with it, the dashboard
/// counts the window in progress with it).
pub fn is_entry_span(span: &otterline_core::pdata::trace::Span) -> bool {
    use otterline_core::pdata::trace::span::SpanKind;
    span.kind == SpanKind::Server as i32 || span.kind == SpanKind::Consumer as i32 || span.parent_span_id.is_empty()
}

/// Whether point attributes mark entry spans (`otterline.span.entry`, true when absent).
pub fn is_entry(attributes: &[KeyValue]) -> bool {
    match attr(attributes, an::OTTERLINE_SPAN_ENTRY) {
        Some(otterline_core::pdata::common::any_value::Value::BoolValue(b)) => *b,
        Some(v) => otterline_core::pdata::value_text(v) != "false",
        None => true,
    }
}

/// Whether point attributes carry `otel.status_code = ERROR`.
pub fn is_error(attributes: &[KeyValue]) -> bool {
    attributes.iter().any(|kv| {
        kv.key == an::OTEL_STATUS_CODE
            && crate::attrs::value_of(kv).is_some_and(|v| otterline_core::pdata::value_text(v) == "ERROR")
    })
}

/// Whether a point attribute is a series dimension (not the status, the token type or the
/// entry mark).
pub fn is_dimension(key: &str) -> bool {
    key != an::OTEL_STATUS_CODE && key != an::GEN_AI_TOKEN_TYPE && key != an::OTTERLINE_SPAN_ENTRY
}

/// Hands every point of `metric` to `f`, if it is one the family's readers read (a metric
/// of the wrong data type is skipped, as is any other metric). Values without a number
/// count as 0.
pub fn points<'a>(metric: &'a Metric, mut f: impl FnMut(Point<'a>)) {
    let name = metric.name.as_str();
    match (&metric.data, name) {
        (Some(metric::Data::Sum(s)), m::CALLS | m::ERRORS | m::COST | m::UNPRICED_CALLS | m::TOKEN_USAGE) => {
            for p in &s.data_points {
                let v = number(p).unwrap_or(0.0);
                let value = match name {
                    m::CALLS => Value::Calls(v),
                    m::ERRORS => Value::Errors(v),
                    m::COST => Value::Cost(v),
                    m::UNPRICED_CALLS => Value::Unpriced(v),
                    _ => {
                        let kind = match attr(&p.attributes, an::GEN_AI_TOKEN_TYPE) {
                            Some(otterline_core::pdata::common::any_value::Value::StringValue(s)) => s.as_str(),
                            _ => "",
                        };
                        Value::Tokens { kind, count: v }
                    }
                };
                f(Point { attributes: &p.attributes, start: p.start_time_unix_nano, end: p.time_unix_nano, value });
            }
        }
        (Some(metric::Data::Summary(s)), m::DURATION_SUMMARY) => {
            for p in &s.data_points {
                let Some(q) = p.quantile_values.iter().find(|q| (q.quantile - P95).abs() < 1e-9) else { continue };
                f(Point {
                    attributes: &p.attributes,
                    start: p.start_time_unix_nano,
                    end: p.time_unix_nano,
                    value: Value::Duration { count: p.count, sum: p.sum, p95: q.value },
                });
            }
        }
        (Some(metric::Data::Gauge(g)), m::QUALITY_SCORE | m::USER_SATISFACTION) => {
            for p in &g.data_points {
                let v = number(p).unwrap_or(0.0);
                let value = if name == m::QUALITY_SCORE { Value::Quality(v) } else { Value::Satisfaction(v) };
                f(Point { attributes: &p.attributes, start: p.start_time_unix_nano, end: p.time_unix_nano, value });
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attrs::kv_str;
    use crate::otlp::{double_point, gauge, int_point, sum};
    use otterline_core::pdata::metrics::AggregationTemporality::Delta;
    use otterline_core::pdata::metrics::{summary_data_point::ValueAtQuantile, Summary, SummaryDataPoint};

    fn collect(metric: &Metric) -> Vec<Value<'_>> {
        let mut out = Vec::new();
        points(metric, |p| out.push(p.value));
        out
    }

    #[test]
    fn each_metric_of_the_family_is_read_as_its_kind() {
        let status = || vec![kv_str("otel.status_code", "ERROR")];
        let calls = sum(m::CALLS, "{call}", "", Delta, true, vec![int_point(1, 2, 7, status())]);
        assert_eq!(collect(&calls), [Value::Calls(7.0)]);
        points(&calls, |p| assert!(p.is_error() && p.start == 1 && p.end == 2));
        let tokens = sum(
            m::TOKEN_USAGE,
            "{token}",
            "",
            Delta,
            true,
            vec![int_point(1, 2, 5, vec![kv_str("gen_ai.token.type", "input")])],
        );
        assert_eq!(collect(&tokens), [Value::Tokens { kind: "input", count: 5.0 }]);
        let q = gauge(m::QUALITY_SCORE, "1", "", vec![double_point(1, 2, 0.5, vec![])]);
        assert_eq!(collect(&q), [Value::Quality(0.5)]);
        // A gauge under a sum's name is not read; neither is anything outside the family.
        assert!(collect(&gauge(m::CALLS, "", "", vec![double_point(1, 2, 1.0, vec![])])).is_empty());
        assert!(collect(&gauge("system.cpu.utilization", "", "", vec![double_point(1, 2, 1.0, vec![])])).is_empty());
        assert_eq!(role(m::THROUGHPUT), Role::Derived);
        assert_eq!(role("system.cpu.utilization"), Role::Other);
    }

    #[test]
    fn summaries_need_a_p95() {
        let point = |qs: &[f64]| SummaryDataPoint {
            count: 4,
            sum: 2.0,
            quantile_values: qs.iter().map(|&q| ValueAtQuantile { quantile: q, value: q * 10.0 }).collect(),
            ..Default::default()
        };
        let metric = crate::otlp::metric(
            m::DURATION_SUMMARY,
            "s",
            "",
            metric::Data::Summary(Summary { data_points: vec![point(&[0.5, 0.95]), point(&[0.5])] }),
        );
        assert_eq!(collect(&metric), [Value::Duration { count: 4, sum: 2.0, p95: 9.5 }]);
    }
}
