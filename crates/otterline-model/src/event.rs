//! Anomaly and budget events: OTLP log records with `event.name` `otterline.anomaly` (an
//! episode starts or escalates) or `otterline.anomaly.resolved`. The `anomaly` processor
//! writes them with [`AnomalyEvent::to_log_record`]; the alert exporter, the dashboard and
//! the `health` processor read them with [`AnomalyEvent::from_log_record`].
//!
//! Attributes, in this order: the `otterline.anomaly.*` fields ([`names::anomaly`]), the
//! series' dimensions (budget events carry `otterline.budget.*` there), then `service.name`.

use otterline_core::pdata::common::{any_value, AnyValue, KeyValue};
use otterline_core::pdata::logs::LogRecord;

use crate::attrs::{attr_f64, attr_i64, attr_text, kv_f64, kv_i64, kv_str, scalar_text, value_of};
use crate::names::{self, anomaly as a};

/// How bad an episode is; ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Every severity, least severe first.
    pub const ALL: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// A severity by name; anything unknown is `Low`.
    pub fn parse(s: &str) -> Severity {
        match s {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            _ => Severity::Low,
        }
    }

    /// A severity by name, `None` for an unknown one (for config checks).
    pub fn from_name(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Position from least severe (0) to most severe (3).
    pub fn rank(self) -> usize {
        self as usize
    }

    /// OTLP severity number for the event's log record.
    pub fn otlp_number(self) -> i32 {
        match self {
            Severity::Low => 9,       // INFO
            Severity::Medium => 13,   // WARN
            Severity::High => 17,     // ERROR
            Severity::Critical => 21, // FATAL
        }
    }
}

/// What a detector watches, for a series (`otterline.anomaly.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Latency,
    ErrorRate,
    CostPerCall,
    TokensPerCall,
    Quality,
    Satisfaction,
    Throughput,
    Metric,
    Budget,
    /// The baseline of mean latency; it feeds the `Latency` episode, never one of its own.
    MeanLatency,
}

impl Kind {
    /// Every kind, in `index` order.
    pub const ALL: [Kind; 10] = [
        Kind::Latency,
        Kind::ErrorRate,
        Kind::CostPerCall,
        Kind::TokensPerCall,
        Kind::Quality,
        Kind::Satisfaction,
        Kind::Throughput,
        Kind::Metric,
        Kind::Budget,
        Kind::MeanLatency,
    ];

    /// Position in [`Kind::ALL`]; the exhaustive match makes a new variant a compile error
    /// here, and the test `kinds_are_all_listed` makes forgetting `ALL` a test failure.
    pub fn index(self) -> usize {
        match self {
            Kind::Latency => 0,
            Kind::ErrorRate => 1,
            Kind::CostPerCall => 2,
            Kind::TokensPerCall => 3,
            Kind::Quality => 4,
            Kind::Satisfaction => 5,
            Kind::Throughput => 6,
            Kind::Metric => 7,
            Kind::Budget => 8,
            Kind::MeanLatency => 9,
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Latency => "latency",
            Kind::ErrorRate => "error_rate",
            Kind::CostPerCall => "cost_per_call",
            Kind::TokensPerCall => "tokens_per_call",
            Kind::Quality => "quality",
            Kind::Satisfaction => "satisfaction",
            Kind::Throughput => "throughput",
            Kind::Metric => "metric",
            Kind::Budget => "budget",
            Kind::MeanLatency => "mean_latency",
        }
    }
}

/// `otterline.anomaly.state` of an episode that started, escalated or resolved.
pub mod state {
    pub const FIRING: &str = "firing";
    pub const ESCALATED: &str = "escalated";
    pub const RESOLVED: &str = "resolved";
}

/// One anomaly or budget event. Text fields are empty and numbers `None` when a record
/// read back lacks them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnomalyEvent {
    /// `event.name` is `otterline.anomaly.resolved`.
    pub resolved: bool,
    /// `otterline.anomaly.type` ([`Kind::as_str`]).
    pub kind: String,
    pub severity: String,
    /// `firing`, `escalated` or `resolved` ([`state`]).
    pub state: String,
    /// The series' label, e.g. `rag-worker / chat / gpt-4o`.
    pub series: String,
    pub metric: String,
    pub episode_id: i64,
    pub observed: Option<f64>,
    pub baseline: Option<f64>,
    pub threshold: Option<f64>,
    pub score: Option<f64>,
    /// RFC 3339.
    pub started_at: String,
    pub suggestion: String,
    /// Why it resolved (resolution events).
    pub resolution: Option<String>,
    /// How many windows the episode lasted (resolution events).
    pub duration_windows: Option<i64>,
    /// The series' dimensions, in order (service excluded).
    pub dims: Vec<(String, String)>,
    /// `service.name` as an attribute of the record (the resource may carry it instead).
    pub service: Option<String>,
    /// The record's body (the suggestion, as written).
    pub body: String,
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
}

impl AnomalyEvent {
    /// Whether `r` is an anomaly or budget event.
    pub fn is_event(r: &LogRecord) -> bool {
        r.event_name == names::event::ANOMALY || r.event_name == names::event::ANOMALY_RESOLVED
    }

    /// The `event.name` this event is written with.
    pub fn event_name(&self) -> &'static str {
        if self.resolved {
            names::event::ANOMALY_RESOLVED
        } else {
            names::event::ANOMALY
        }
    }

    /// The value of a dimension (`otterline.budget.mode`, `gen_ai.request.model`, …).
    pub fn dim(&self, key: &str) -> Option<&str> {
        self.dims.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The event as the log record the pipeline carries.
    pub fn to_log_record(&self) -> LogRecord {
        use any_value::Value as V;
        let mut attributes: Vec<KeyValue> = Vec::with_capacity(16 + self.dims.len());
        attributes.push(kv_str(a::TYPE, self.kind.as_str()));
        attributes.push(kv_str(a::SEVERITY, self.severity.as_str()));
        attributes.push(kv_str(a::STATE, self.state.as_str()));
        attributes.push(kv_str(a::SERIES, self.series.as_str()));
        attributes.push(kv_str(a::METRIC, self.metric.as_str()));
        attributes.push(kv_i64(a::EPISODE_ID, self.episode_id));
        for (key, v) in [
            (a::OBSERVED, self.observed),
            (a::BASELINE, self.baseline),
            (a::THRESHOLD, self.threshold),
            (a::SCORE, self.score),
        ] {
            if let Some(v) = v {
                attributes.push(kv_f64(key, v));
            }
        }
        attributes.push(kv_str(a::STARTED_AT, self.started_at.as_str()));
        attributes.push(kv_str(a::SUGGESTION, self.suggestion.as_str()));
        if let Some(r) = &self.resolution {
            attributes.push(kv_str(a::RESOLUTION, r.as_str()));
        }
        if let Some(w) = self.duration_windows {
            attributes.push(kv_i64(a::DURATION_WINDOWS, w));
        }
        for (k, v) in &self.dims {
            attributes.push(kv_str(k.as_str(), v.as_str()));
        }
        if let Some(s) = &self.service {
            attributes.push(kv_str(names::attr::SERVICE_NAME, s.as_str()));
        }
        let severity = Severity::parse(&self.severity);
        LogRecord {
            time_unix_nano: self.time_unix_nano,
            observed_time_unix_nano: self.observed_time_unix_nano,
            severity_number: if self.resolved { 9 } else { severity.otlp_number() },
            severity_text: if self.resolved { "INFO".into() } else { severity.as_str().to_uppercase() },
            body: Some(AnyValue { value: Some(V::StringValue(self.body.clone())) }),
            attributes,
            event_name: self.event_name().into(),
            ..Default::default()
        }
    }

    /// The event a log record holds; `None` for any other log record.
    pub fn from_log_record(r: &LogRecord) -> Option<AnomalyEvent> {
        if !AnomalyEvent::is_event(r) {
            return None;
        }
        let at = &r.attributes;
        let text = |k: &str| attr_text(at, k);
        let dims = at
            .iter()
            .filter(|kv| !kv.key.starts_with(a::PREFIX) && kv.key != names::attr::SERVICE_NAME)
            .map(|kv| (kv.key.clone(), scalar_text(value_of(kv))))
            .collect();
        Some(AnomalyEvent {
            resolved: r.event_name == names::event::ANOMALY_RESOLVED,
            kind: text(a::TYPE),
            severity: text(a::SEVERITY),
            state: text(a::STATE),
            series: text(a::SERIES),
            metric: text(a::METRIC),
            episode_id: attr_i64(at, a::EPISODE_ID).unwrap_or(0),
            observed: attr_f64(at, a::OBSERVED),
            baseline: attr_f64(at, a::BASELINE),
            threshold: attr_f64(at, a::THRESHOLD),
            score: attr_f64(at, a::SCORE),
            started_at: text(a::STARTED_AT),
            suggestion: text(a::SUGGESTION),
            resolution: Some(text(a::RESOLUTION)).filter(|s| !s.is_empty()),
            duration_windows: attr_i64(at, a::DURATION_WINDOWS),
            dims,
            service: at.iter().any(|kv| kv.key == names::attr::SERVICE_NAME).then(|| text(names::attr::SERVICE_NAME)),
            body: r
                .body
                .as_ref()
                .and_then(|b| b.value.as_ref())
                .map(otterline_core::pdata::value_text)
                .unwrap_or_default(),
            time_unix_nano: r.time_unix_nano,
            observed_time_unix_nano: r.observed_time_unix_nano,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(resolved: bool) -> AnomalyEvent {
        AnomalyEvent {
            resolved,
            kind: Kind::Budget.as_str().into(),
            severity: Severity::High.as_str().into(),
            state: if resolved { state::RESOLVED } else { state::FIRING }.into(),
            series: "rag-worker / chat".into(),
            metric: "otterline.operation".into(),
            episode_id: 42,
            observed: Some(3.5),
            baseline: Some(1.0),
            threshold: Some(2.0),
            score: Some(7.0),
            started_at: "2026-12-07T10:00:00Z".into(),
            suggestion: "check it".into(),
            resolution: resolved.then(|| "recovered".into()),
            duration_windows: resolved.then_some(5),
            dims: vec![("gen_ai.operation.name".into(), "chat".into()), (names::budget::MODE.into(), "strict".into())],
            service: Some("rag-worker".into()),
            body: "check it".into(),
            time_unix_nano: 1_000,
            observed_time_unix_nano: 2_000,
        }
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        for resolved in [false, true] {
            let e = sample(resolved);
            let r = e.to_log_record();
            assert_eq!(r.event_name, if resolved { "otterline.anomaly.resolved" } else { "otterline.anomaly" });
            assert_eq!(r.severity_number, if resolved { 9 } else { 17 });
            assert_eq!(AnomalyEvent::from_log_record(&r).as_ref(), Some(&e));
            assert_eq!(e.dim(names::budget::MODE), Some("strict"));
        }
    }

    #[test]
    fn attributes_keep_their_documented_order_and_names() {
        let keys: Vec<String> = sample(true).to_log_record().attributes.into_iter().map(|kv| kv.key).collect();
        assert_eq!(
            keys,
            [
                "otterline.anomaly.type",
                "otterline.anomaly.severity",
                "otterline.anomaly.state",
                "otterline.anomaly.series",
                "otterline.anomaly.metric",
                "otterline.anomaly.episode_id",
                "otterline.anomaly.observed",
                "otterline.anomaly.baseline",
                "otterline.anomaly.threshold",
                "otterline.anomaly.score",
                "otterline.anomaly.started_at",
                "otterline.anomaly.suggestion",
                "otterline.anomaly.resolution",
                "otterline.anomaly.duration_windows",
                "gen_ai.operation.name",
                "otterline.budget.mode",
                "service.name",
            ]
        );
    }

    #[test]
    fn other_records_are_not_events_and_severities_are_ordered() {
        assert!(AnomalyEvent::from_log_record(&LogRecord::default()).is_none());
        assert!(Severity::ALL.windows(2).all(|w| w[0] < w[1] && w[0].rank() + 1 == w[1].rank()));
        assert_eq!(Severity::parse("nonsense"), Severity::Low);
        assert_eq!(Severity::from_name("nonsense"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert_eq!(Kind::ALL[k.index()], k);
        }
    }
}
