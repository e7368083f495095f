//! Anomaly and budget events as the processor writes them: the suggestion text for each
//! kind of episode, the [`AnomalyEvent`] of a transition, and one logs batch per service.

use std::collections::BTreeMap;

use otterline_core::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::ExportLogsServiceRequest;
use otterline_core::Batch;
use otterline_model::attrs::{attr_text, kv_str};
use otterline_model::event::{state, AnomalyEvent, Kind};
use otterline_model::names;

use super::detect::{Check, Transition};
use super::SeriesInfo;

fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn suggestion(kind: Kind, info: &SeriesInfo, c: &Check, started: &str) -> String {
    let who = info.label();
    let times = if c.baseline.abs() > 1e-12 { c.observed / c.baseline } else { 0.0 };
    match kind {
        Kind::MeanLatency => format!("mean latency of {who} is {times:.1}× its baseline ({}s vs {}s) since {started}; check provider latency, prompt size or retries", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Latency => format!("p95 of {who} is {times:.1}× its baseline ({}s vs {}s) since {started}; check provider latency, prompt size or retries", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::ErrorRate => format!("error rate of {who} is {:.1}% (baseline {:.1}%) since {started}; check provider status, rate limits and recent deploys", c.observed * 100.0, c.baseline * 100.0),
        Kind::CostPerCall => format!("cost per call of {who} is {times:.1}× its baseline (${} vs ${}) since {started}; check for a model switch, longer prompts or outputs", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::TokensPerCall => format!("tokens per call of {who} are {times:.1}× their baseline ({} vs {}) since {started}; check prompt templates, retrieved context size or runaway outputs", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Quality => format!("quality score of {who} dropped to {} from {} since {started}; check recent prompt, model or retrieval changes", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Satisfaction => format!("user satisfaction of {who} dropped to {} from {} since {started}; review recent conversations and releases", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Throughput if c.observed < c.baseline => format!("throughput of {who} fell to {} calls/s from {} since {started}; the service or its callers may be down", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Throughput => format!("throughput of {who} surged to {} calls/s from {} since {started}; check for retry storms, loops or abuse", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Metric => format!("{} of {who} is {} against a baseline of {} since {started}, a level it has rarely or never shown before; check what changed around then", info.metric, fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Budget => {
            let dim = |k: &str| info.dims.iter().find(|(dk, _)| dk == k).map(|(_, v)| v.clone()).unwrap_or_default();
            format!("budget {}: {} of {} is {} over its limit of {} since {started} ({} mode)", dim(names::budget::NAME), dim(names::budget::METRIC), dim(names::budget::SCOPE), fmt_num(c.observed), fmt_num(c.threshold), dim(names::budget::MODE))
        }
    }
}

fn hhmm(ns: u64) -> String {
    otterline_core::time::from_unix_nanos(ns).format("%H:%M UTC").to_string()
}

/// The log record for an episode transition.
pub(super) fn event(kind: Kind, info: &SeriesInfo, t: &Transition, now: u64) -> LogRecord {
    let (ep, st) = match t {
        Transition::Started(ep) => (ep, state::FIRING),
        Transition::Escalated(ep) => (ep, state::ESCALATED),
        Transition::Resolved(ep, _) => (ep, state::RESOLVED),
    };
    let c = if matches!(t, Transition::Started(_)) { &ep.first } else { &ep.last };
    let started = hhmm(ep.started_at);
    let text = match t {
        Transition::Resolved(_, why) => {
            format!("resolved ({why}) after {} windows: {}", ep.windows, suggestion(kind, info, &ep.first, &started))
        }
        _ => suggestion(kind, info, c, &started),
    };
    let resolved = matches!(t, Transition::Resolved(..));
    AnomalyEvent {
        resolved,
        kind: kind.as_str().into(),
        severity: ep.severity.as_str().into(),
        state: st.into(),
        series: info.label(),
        metric: info.metric.clone(),
        episode_id: ep.id as i64,
        observed: Some(c.observed),
        baseline: Some(c.baseline),
        threshold: Some(c.threshold),
        score: Some(c.score),
        started_at: otterline_core::time::from_unix_nanos(ep.started_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        suggestion: text.clone(),
        resolution: match t {
            Transition::Resolved(_, why) => Some((*why).into()),
            _ => None,
        },
        duration_windows: resolved.then_some(ep.windows as i64),
        dims: info.dims.clone(),
        service: (!info.service.is_empty()).then(|| info.service.clone()),
        body: text,
        time_unix_nano: now,
        observed_time_unix_nano: otterline_core::time::now_unix_nanos(),
    }
    .to_log_record()
}

/// Groups events by service into one logs batch.
pub(super) fn events_batch(events: Vec<LogRecord>) -> Batch {
    let mut by_service: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    for e in events {
        let svc = attr_text(&e.attributes, names::attr::SERVICE_NAME);
        by_service.entry(svc).or_default().push(e);
    }
    Batch::Logs(ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(svc, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: if svc.is_empty() { vec![] } else { vec![kv_str(names::attr::SERVICE_NAME, svc)] },
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(otterline_model::otlp::scope(names::scope::ANOMALY)),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    })
}
