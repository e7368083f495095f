//! Alerts as the exporter sees them: read from `otterline.anomaly` log events, identified
//! by a fingerprint, and remembered while open (dedup, escalation, resolution).

use std::collections::BTreeMap;

use serde::Serialize;

use otterline_core::pdata::common::{any_value, KeyValue};
use otterline_core::pdata::logs::LogRecord;

pub const EVENT: &str = "otterline.anomaly";
pub const EVENT_RESOLVED: &str = "otterline.anomaly.resolved";

/// Ordered like the processor's severities.
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];

pub fn severity_rank(s: &str) -> usize {
    SEVERITIES.iter().position(|x| *x == s).unwrap_or(0)
}

/// Dimensions that may become Alertmanager labels (bounded cardinality).
pub const LABEL_DIMENSIONS: [&str; 4] =
    ["gen_ai.operation.name", "gen_ai.request.model", "span.name", "otterline.budget.name"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Stable identity of what is alerting (type + series), across episodes.
    pub fingerprint: String,
    pub episode_id: i64,
    /// `firing`, `escalated` or `resolved`.
    pub state: String,
    pub severity: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub service: String,
    pub series: String,
    pub summary: String,
    pub observed: f64,
    pub baseline: f64,
    pub threshold: f64,
    /// RFC 3339.
    pub started_at: String,
    /// When the event happened (Unix ns of the window it judged).
    pub at_unix_nano: u64,
    /// Bounded, label-safe dimensions.
    pub labels: BTreeMap<String, String>,
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

fn s(attrs: &[KeyValue], key: &str) -> String {
    match attr(attrs, key) {
        Some(any_value::Value::StringValue(v)) => v.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn f(attrs: &[KeyValue], key: &str) -> f64 {
    match attr(attrs, key) {
        Some(any_value::Value::DoubleValue(d)) => *d,
        Some(any_value::Value::IntValue(i)) => *i as f64,
        _ => f64::NAN,
    }
}

/// An alert from an anomaly or budget event (`None` for any other log record).
pub fn from_event(r: &LogRecord, resource_service: Option<&str>) -> Option<Alert> {
    if r.event_name != EVENT && r.event_name != EVENT_RESOLVED {
        return None;
    }
    let a = &r.attributes;
    let kind = s(a, "otterline.anomaly.type");
    let series = s(a, "otterline.anomaly.series");
    let service = Some(s(a, "service.name"))
        .filter(|x| !x.is_empty())
        .or(resource_service.map(str::to_string))
        .unwrap_or_default();
    let mut labels = BTreeMap::new();
    for d in LABEL_DIMENSIONS {
        let v = s(a, d);
        if !v.is_empty() {
            labels.insert(d.replace('.', "_"), v);
        }
    }
    let episode_id = match attr(a, "otterline.anomaly.episode_id") {
        Some(any_value::Value::IntValue(i)) => *i,
        _ => 0,
    };
    Some(Alert {
        fingerprint: format!("{kind}|{series}"),
        episode_id,
        state: if r.event_name == EVENT_RESOLVED {
            "resolved".into()
        } else {
            Some(s(a, "otterline.anomaly.state")).filter(|x| !x.is_empty()).unwrap_or_else(|| "firing".into())
        },
        severity: Some(s(a, "otterline.anomaly.severity")).filter(|x| !x.is_empty()).unwrap_or_else(|| "low".into()),
        kind,
        service,
        series,
        summary: s(a, "otterline.anomaly.suggestion"),
        observed: f(a, "otterline.anomaly.observed"),
        baseline: f(a, "otterline.anomaly.baseline"),
        threshold: f(a, "otterline.anomaly.threshold"),
        started_at: s(a, "otterline.anomaly.started_at"),
        at_unix_nano: if r.time_unix_nano != 0 { r.time_unix_nano } else { r.observed_time_unix_nano },
        labels,
    })
}
