//! Alerts as the exporter sees them: read from `otterline.anomaly` log events, identified
//! by a fingerprint, and remembered while open (dedup, escalation, resolution).

use std::collections::BTreeMap;

use serde::Serialize;

use otterline_core::pdata::logs::LogRecord;
use otterline_model::event::{state, AnomalyEvent, Severity};
use otterline_model::names;

/// Severity names, least severe first.
pub const SEVERITIES: [&str; 4] =
    [Severity::ALL[0].as_str(), Severity::ALL[1].as_str(), Severity::ALL[2].as_str(), Severity::ALL[3].as_str()];

/// Position of a severity name from least severe (0; also for unknown names).
pub fn severity_rank(s: &str) -> usize {
    Severity::parse(s).rank()
}

/// Dimensions that may become Alertmanager labels (bounded cardinality).
pub const LABEL_DIMENSIONS: [&str; 4] =
    [names::attr::GEN_AI_OPERATION_NAME, names::attr::GEN_AI_REQUEST_MODEL, "span.name", names::budget::NAME];

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

/// An alert from an anomaly or budget event (`None` for any other log record).
pub fn from_event(r: &LogRecord, resource_service: Option<&str>) -> Option<Alert> {
    let e = AnomalyEvent::from_log_record(r)?;
    let service =
        e.service.clone().filter(|x| !x.is_empty()).or(resource_service.map(str::to_string)).unwrap_or_default();
    let mut labels = BTreeMap::new();
    for d in LABEL_DIMENSIONS {
        if let Some(v) = e.dim(d).filter(|v| !v.is_empty()) {
            labels.insert(d.replace('.', "_"), v.to_string());
        }
    }
    Some(Alert {
        fingerprint: format!("{}|{}", e.kind, e.series),
        episode_id: e.episode_id,
        state: if e.resolved {
            state::RESOLVED.into()
        } else {
            Some(e.state).filter(|x| !x.is_empty()).unwrap_or_else(|| state::FIRING.into())
        },
        severity: Some(e.severity).filter(|x| !x.is_empty()).unwrap_or_else(|| Severity::Low.as_str().into()),
        kind: e.kind,
        service,
        series: e.series,
        summary: e.suggestion,
        observed: e.observed.unwrap_or(f64::NAN),
        baseline: e.baseline.unwrap_or(f64::NAN),
        threshold: e.threshold.unwrap_or(f64::NAN),
        started_at: e.started_at,
        at_unix_nano: if e.time_unix_nano != 0 { e.time_unix_nano } else { e.observed_time_unix_nano },
        labels,
    })
}
