//! The `health` processor: a 0–100 health score per service and overall, every window.
//!
//! Place it after `aggregate` and `anomaly`. It reads what flows past and lets everything
//! through unchanged:
//! - each window of `aggregate` metrics (one batch per window): calls, errors and the p95
//!   duration per series, summed (p95 weighted by calls) per service;
//! - `otterline.anomaly` / `otterline.anomaly.resolved` events: open episodes per service
//!   and severity, and open budget breaches (type `budget`) with their mode.
//!
//! For each service seen in a window, and for services it knows that sent nothing (their
//! throughput dropped to zero), it computes five sub-scores, 0 (bad) to 100 (good):
//!
//! | factor | from | 100 at | 0 at |
//! |---|---|---|---|
//! | `errors` | errors / calls (with at least `min_calls`) | ≤ `error_rate.good` | ≥ `error_rate.bad` |
//! | `latency` | p95 / its baseline | ≤ `latency_ratio.good` | ≥ `latency_ratio.bad` |
//! | `throughput` | calls / its baseline | ≥ `throughput_ratio.good` | ≤ `throughput_ratio.bad` |
//! | `anomalies` | open episodes | none | penalties (`anomaly_penalty` per severity) reach 100 |
//! | `budget` | open budget breaches | none | a `strict` breach (`warn`: `budget_warn_score`) |
//!
//! Between the two ends a sub-score is linear. The score is the weighted mean (`weights`),
//! and its status is `healthy` (≥ `thresholds.healthy`), `degraded` (≥ `thresholds.degraded`)
//! or `critical`. Baselines are exponentially weighted means over `baseline_windows` windows,
//! updated after scoring; until a service has one, latency and throughput score 100.
//! The overall score is the calls-weighted mean of the services' scores, but never more than
//! the worst service's score plus 25, so one failing service always shows.
//!
//! Output, one metrics batch per window (scope `otterline.health`, gauges at the window's end):
//! `otterline.health.score` with `service.name` (absent for the overall score) and
//! `otterline.health.status`; `otterline.health.subscore` with `service.name` and
//! `otterline.health.factor`.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::metrics::{Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
use otterline_core::pdata::{service_name, ExportMetricsServiceRequest};
use otterline_core::Batch;

use otterline_model::aggregate::{self, Value};
use otterline_model::attrs::kv_str;
use otterline_model::event::{AnomalyEvent, Kind};
use otterline_model::names;
use otterline_model::otlp::double_point;

/// Both ends of a linear sub-score: 100 at `good`, 0 at `bad` (either order).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub good: f64,
    pub bad: f64,
}

impl Range {
    /// 100 at or beyond `good`, 0 at or beyond `bad`, linear between.
    pub fn score(self, v: f64) -> f64 {
        if !v.is_finite() {
            return 0.0;
        }
        let t = ((v - self.good) / (self.bad - self.good)).clamp(0.0, 1.0);
        100.0 * (1.0 - t)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub errors: f64,
    pub latency: f64,
    pub anomalies: f64,
    pub throughput: f64,
    pub budget: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { errors: 0.30, latency: 0.25, anomalies: 0.20, throughput: 0.10, budget: 0.15 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub healthy: f64,
    pub degraded: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { healthy: 80.0, degraded: 50.0 }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Penalties {
    pub low: f64,
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

impl Default for Penalties {
    fn default() -> Self {
        Penalties { low: 10.0, medium: 25.0, high: 50.0, critical: 100.0 }
    }
}

impl Penalties {
    fn of(&self, severity: &str) -> f64 {
        match severity {
            "critical" => self.critical,
            "high" => self.high,
            "medium" => self.medium,
            _ => self.low,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    pub weights: Weights,
    pub thresholds: Thresholds,
    pub error_rate: Range,
    pub latency_ratio: Range,
    pub throughput_ratio: Range,
    pub anomaly_penalty: Penalties,
    /// The budget sub-score while a `warn`-mode budget is breached (strict: 0).
    pub budget_warn_score: f64,
    /// Fewer calls than this in a window: the error rate is not judged (sub-score 100).
    pub min_calls: u64,
    /// Span of the exponentially weighted baselines, in windows.
    pub baseline_windows: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            weights: Weights::default(),
            thresholds: Thresholds::default(),
            error_rate: Range { good: 0.01, bad: 0.20 },
            latency_ratio: Range { good: 1.5, bad: 4.0 },
            throughput_ratio: Range { good: 0.5, bad: 0.05 },
            anomaly_penalty: Penalties::default(),
            budget_warn_score: 50.0,
            min_calls: 10,
            baseline_windows: 30,
        }
    }
}

pub const FACTORS: [&str; 5] = ["errors", "latency", "anomalies", "throughput", "budget"];

/// One service's sub-scores, in [`FACTORS`] order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubScores(pub [f64; 5]);

impl SubScores {
    /// The weighted mean (equal weights if all are zero).
    pub fn weighted(&self, w: &Weights) -> f64 {
        let ws = [w.errors, w.latency, w.anomalies, w.throughput, w.budget];
        let total: f64 = ws.iter().sum();
        if total <= 0.0 {
            return self.0.iter().sum::<f64>() / 5.0;
        }
        self.0.iter().zip(ws).map(|(s, w)| s * w).sum::<f64>() / total
    }
}

/// `healthy`, `degraded` or `critical`.
pub fn status(score: f64, t: &Thresholds) -> &'static str {
    if score >= t.healthy {
        "healthy"
    } else if score >= t.degraded {
        "degraded"
    } else {
        "critical"
    }
}

/// What one window showed for one service.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub calls: u64,
    pub errors: u64,
    /// Calls-weighted p95 duration (s) over the service's series; NaN without calls.
    pub p95: f64,
}

#[derive(Debug, Default)]
struct ServiceState {
    baseline_p95: Option<f64>,
    baseline_calls: Option<f64>,
    /// Open anomaly episodes: (series, type, episode id) → severity.
    anomalies: HashMap<(String, String, i64), String>,
    /// Open budget breaches: (series, episode id) → mode.
    budgets: HashMap<(String, i64), String>,
}

pub struct HealthProcessor {
    cfg: HealthConfig,
    services: BTreeMap<String, ServiceState>,
}

impl HealthProcessor {
    pub fn new(cfg: HealthConfig) -> Self {
        HealthProcessor { cfg, services: BTreeMap::new() }
    }

    /// The sub-scores of a service for a window, against its current baselines.
    fn sub_scores(&self, st: &ServiceState, w: &WindowStats) -> SubScores {
        let c = &self.cfg;
        let errors = if w.calls >= c.min_calls { c.error_rate.score(w.errors as f64 / w.calls as f64) } else { 100.0 };
        let latency = match st.baseline_p95 {
            Some(b) if b > 0.0 && w.calls > 0 && w.p95.is_finite() => c.latency_ratio.score(w.p95 / b),
            _ => 100.0,
        };
        let throughput = match st.baseline_calls {
            Some(b) if b >= c.min_calls as f64 => c.throughput_ratio.score(w.calls as f64 / b),
            _ => 100.0,
        };
        let penalty: f64 = st.anomalies.values().map(|s| c.anomaly_penalty.of(s)).sum();
        let anomalies = (100.0 - penalty).clamp(0.0, 100.0);
        let budget = st
            .budgets
            .values()
            .map(|mode| if mode == "strict" { 0.0 } else { c.budget_warn_score })
            .fold(100.0, f64::min);
        SubScores([errors, latency, anomalies, throughput, budget])
    }

    fn observe_event(&mut self, r: &otterline_core::pdata::logs::LogRecord, resource_service: &str) {
        let Some(e) = AnomalyEvent::from_log_record(r) else { return };
        let service = e.service.clone().unwrap_or_else(|| resource_service.to_string());
        let (id, series, kind) = (e.episode_id, e.series.clone(), e.kind.clone());
        let st = self.services.entry(service).or_default();
        let resolved = e.resolved;
        if kind == Kind::Budget.as_str() {
            if resolved {
                st.budgets.remove(&(series, id));
            } else {
                st.budgets.insert((series, id), e.dim(names::budget::MODE).unwrap_or_default().to_string());
            }
        } else if resolved {
            st.anomalies.remove(&(series, kind, id));
        } else {
            st.anomalies.insert((series, kind, id), e.severity);
        }
    }

    /// Per service and window end: what the aggregate metrics of one batch say.
    fn window_stats(req: &ExportMetricsServiceRequest) -> BTreeMap<u64, BTreeMap<String, WindowStats>> {
        let mut out: BTreeMap<u64, BTreeMap<String, (WindowStats, f64, u64)>> = BTreeMap::new();
        for rm in &req.resource_metrics {
            let service = service_name(rm.resource.as_ref()).unwrap_or("").to_string();
            for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                aggregate::points(m, |p| {
                    // Service-level RED: entry spans only (a nested span is not another call).
                    if !p.is_entry() {
                        return;
                    }
                    let e = out.entry(p.end).or_default().entry(service.clone()).or_default();
                    match p.value {
                        Value::Calls(v) => e.0.calls += v.max(0.0) as u64,
                        Value::Errors(v) => e.0.errors += v.max(0.0) as u64,
                        Value::Duration { count, p95, .. } => {
                            e.1 += p95 * count as f64;
                            e.2 += count;
                        }
                        _ => {}
                    }
                });
            }
        }
        out.into_iter()
            .map(|(t, svcs)| {
                let svcs = svcs
                    .into_iter()
                    .map(|(s, (mut w, sum, n))| {
                        w.p95 = if n > 0 { sum / n as f64 } else { f64::NAN };
                        (s, w)
                    })
                    .collect();
                (t, svcs)
            })
            .collect()
    }

    /// Scores one window; services known but absent had no calls.
    pub fn score_window(&mut self, end: u64, seen: &BTreeMap<String, WindowStats>) -> ExportMetricsServiceRequest {
        let alpha = 2.0 / (self.cfg.baseline_windows.max(1) as f64 + 1.0);
        for s in seen.keys() {
            self.services.entry(s.clone()).or_default();
        }
        let mut scores = Vec::new();
        let mut subs = Vec::new();
        let mut weighted = (0.0, 0.0);
        let mut worst = f64::INFINITY;
        let names: Vec<String> = self.services.keys().cloned().collect();
        for name in names {
            let w = seen.get(&name).copied().unwrap_or(WindowStats { calls: 0, errors: 0, p95: f64::NAN });
            let Some(st) = self.services.get(&name) else { continue };
            if st.baseline_calls.is_none() && w.calls == 0 && st.anomalies.is_empty() && st.budgets.is_empty() {
                continue; // only ever seen in events, never in traffic
            }
            let sub = self.sub_scores(st, &w);
            let score = sub.weighted(&self.cfg.weights);
            let svc_attr = (!name.is_empty()).then(|| kv_str(names::attr::SERVICE_NAME, name.as_str()));
            let mut attrs: Vec<KeyValue> = svc_attr.iter().cloned().collect();
            attrs.push(kv_str(names::health::STATUS, status(score, &self.cfg.thresholds)));
            scores.push(gauge_point(end, score, attrs));
            for (f, v) in FACTORS.iter().zip(sub.0) {
                let mut a: Vec<KeyValue> = svc_attr.iter().cloned().collect();
                a.push(kv_str(names::health::FACTOR, *f));
                subs.push(gauge_point(end, v, a));
            }
            let weight = (w.calls as f64).max(1.0);
            weighted = (weighted.0 + score * weight, weighted.1 + weight);
            worst = worst.min(score);
            // Baselines move after scoring.
            if let Some(st) = self.services.get_mut(&name) {
                let ewma = |b: Option<f64>, v: f64| Some(b.map_or(v, |b| b + alpha * (v - b)));
                if w.calls > 0 && w.p95.is_finite() {
                    st.baseline_p95 = ewma(st.baseline_p95, w.p95);
                }
                st.baseline_calls = ewma(st.baseline_calls, w.calls as f64);
            }
        }
        if weighted.1 > 0.0 {
            let overall = (weighted.0 / weighted.1).min(worst + 25.0);
            scores.push(gauge_point(
                end,
                overall,
                vec![kv_str(names::health::STATUS, status(overall, &self.cfg.thresholds))],
            ));
        }
        let metrics = vec![
            gauge(
                names::metric::HEALTH_SCORE,
                "Health score, 0 (critical) to 100 (healthy), per service and overall",
                scores,
            ),
            gauge(names::metric::HEALTH_SUBSCORE, "Health sub-scores, 0 to 100, per service and factor", subs),
        ];
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Default::default()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(otterline_model::otlp::scope(names::scope::HEALTH)),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// A score point at `t`, rounded to one decimal.
fn gauge_point(t: u64, v: f64, attributes: Vec<KeyValue>) -> NumberDataPoint {
    double_point(0, t, (v * 10.0).round() / 10.0, attributes)
}

fn gauge(name: &str, description: &str, data_points: Vec<NumberDataPoint>) -> Metric {
    otterline_model::otlp::gauge(name, "1", description, data_points)
}

impl Processor for HealthProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let mut emitted = Vec::new();
        match &batch {
            Batch::Logs(req) => {
                for rl in &req.resource_logs {
                    let svc = service_name(rl.resource.as_ref()).unwrap_or("").to_string();
                    for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                        self.observe_event(r, &svc);
                    }
                }
            }
            Batch::Metrics(req) => {
                for (end, seen) in Self::window_stats(req) {
                    emitted.push(Batch::Metrics(self.score_window(end, &seen)));
                }
            }
            Batch::Traces(_) => {}
        }
        out.push(batch);
        out.append(&mut emitted);
    }
}

pub struct HealthProcessorFactory;

impl ProcessorFactory for HealthProcessorFactory {
    fn type_name(&self) -> &'static str {
        "health"
    }
    fn description(&self) -> &'static str {
        "0-100 health score per service and overall from error rate, p95 against baseline, open anomalies, throughput and budgets"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let cfg: HealthConfig = ctx.parse()?;
        let w = cfg.weights;
        for (k, v) in [
            ("errors", w.errors),
            ("latency", w.latency),
            ("anomalies", w.anomalies),
            ("throughput", w.throughput),
            ("budget", w.budget),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(ctx.error(&format!("weights.{k}"), "must be a number of 0 or more"));
            }
        }
        if cfg.thresholds.degraded > cfg.thresholds.healthy {
            return Err(ctx.error("thresholds.degraded", "must not be above thresholds.healthy"));
        }
        for (k, r) in [
            ("error_rate", cfg.error_rate),
            ("latency_ratio", cfg.latency_ratio),
            ("throughput_ratio", cfg.throughput_ratio),
        ] {
            if r.good == r.bad || !r.good.is_finite() || !r.bad.is_finite() {
                return Err(ctx.error(k, "`good` and `bad` must be different numbers"));
            }
        }
        if cfg.baseline_windows == 0 {
            return Err(ctx.error("baseline_windows", "must be at least 1"));
        }
        Ok(Box::new(HealthProcessor::new(cfg)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::common::{any_value, AnyValue};
    use otterline_core::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use otterline_core::pdata::metrics::{metric, number_data_point};
    use otterline_core::pdata::ExportLogsServiceRequest;
    use otterline_model::attrs::attr_str;
    use otterline_model::names::event::{ANOMALY as EVENT, ANOMALY_RESOLVED as EVENT_RESOLVED};

    fn cfg() -> HealthConfig {
        HealthConfig::default()
    }

    fn stats(calls: u64, errors: u64, p95: f64) -> BTreeMap<String, WindowStats> {
        BTreeMap::from([("chat".to_string(), WindowStats { calls, errors, p95 })])
    }

    fn scores(req: &ExportMetricsServiceRequest, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(metric::Data::Gauge(g)) => g.data_points.clone(),
                _ => vec![],
            })
            .map(|p| {
                let attrs = p
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), attr_str(std::slice::from_ref(kv), &kv.key).unwrap_or("").to_string()))
                    .collect();
                let v = match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    _ => f64::NAN,
                };
                (attrs, v)
            })
            .collect()
    }

    fn sub(req: &ExportMetricsServiceRequest, factor: &str) -> f64 {
        scores(req, "otterline.health.subscore")
            .into_iter()
            .find(|(a, _)| a.iter().any(|(k, v)| k == "otterline.health.factor" && v == factor))
            .map(|(_, v)| v)
            .expect("sub-score")
    }

    fn service_score(req: &ExportMetricsServiceRequest) -> (f64, String) {
        let s = scores(req, "otterline.health.score");
        let (a, v) = s.iter().find(|(a, _)| a.iter().any(|(k, _)| k == "service.name")).expect("service score");
        let st = a.iter().find(|(k, _)| k == "otterline.health.status").map(|(_, v)| v.clone()).unwrap_or_default();
        (*v, st)
    }

    fn event(name: &str, kind: &str, severity: &str, id: i64, mode: Option<&str>) -> Batch {
        let mut attributes = vec![
            kv_str("otterline.anomaly.type", kind),
            kv_str("otterline.anomaly.severity", severity),
            kv_str("otterline.anomaly.series", "chat/gpt-4o"),
            kv_str("service.name", "chat"),
            KeyValue {
                key: "otterline.anomaly.episode_id".into(),
                value: Some(AnyValue { value: Some(any_value::Value::IntValue(id)) }),
                ..Default::default()
            },
        ];
        if let Some(m) = mode {
            attributes.push(kv_str("otterline.budget.mode", m));
        }
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord { event_name: name.into(), attributes, ..Default::default() }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn ranges_are_linear_between_good_and_bad_in_either_direction() {
        let up = Range { good: 0.01, bad: 0.21 };
        assert_eq!(up.score(0.0), 100.0);
        assert_eq!(up.score(0.01), 100.0);
        assert!((up.score(0.11) - 50.0).abs() < 1e-9);
        assert_eq!(up.score(0.5), 0.0);
        let down = Range { good: 0.5, bad: 0.1 };
        assert_eq!(down.score(1.0), 100.0);
        assert!((down.score(0.3) - 50.0).abs() < 1e-9);
        assert_eq!(down.score(0.0), 0.0);
        assert_eq!(up.score(f64::NAN), 0.0);
    }

    #[test]
    fn weighting_and_status() {
        let s = SubScores([100.0, 0.0, 100.0, 100.0, 100.0]);
        let w = Weights { errors: 1.0, latency: 1.0, anomalies: 0.0, throughput: 0.0, budget: 0.0 };
        assert_eq!(s.weighted(&w), 50.0);
        assert!((s.weighted(&Weights::default()) - 75.0).abs() < 1e-9);
        let zero = Weights { errors: 0.0, latency: 0.0, anomalies: 0.0, throughput: 0.0, budget: 0.0 };
        assert_eq!(s.weighted(&zero), 80.0);
        let t = Thresholds::default();
        assert_eq!(
            (status(80.0, &t), status(79.9, &t), status(50.0, &t), status(49.9, &t)),
            ("healthy", "degraded", "degraded", "critical")
        );
    }

    #[test]
    fn error_sub_score_needs_enough_calls() {
        let mut p = HealthProcessor::new(cfg());
        // 3 of 5 calls failed: too few calls to judge.
        assert_eq!(sub(&p.score_window(1, &stats(5, 3, 0.5)), "errors"), 100.0);
        // 20 % errors over 100 calls: at `bad`.
        assert_eq!(sub(&p.score_window(2, &stats(100, 20, 0.5)), "errors"), 0.0);
        let r = p.score_window(3, &stats(100, 1, 0.5));
        assert_eq!(sub(&r, "errors"), 100.0);
    }

    #[test]
    fn latency_is_judged_against_the_baseline() {
        let mut p = HealthProcessor::new(cfg());
        let first = p.score_window(1, &stats(100, 0, 0.5));
        assert_eq!(sub(&first, "latency"), 100.0, "no baseline yet");
        for t in 2..10 {
            p.score_window(t, &stats(100, 0, 0.5));
        }
        // p95 at 2.75x the baseline: halfway between 1.5x and 4x.
        let slow = p.score_window(10, &stats(100, 0, 1.375));
        assert!((sub(&slow, "latency") - 50.0).abs() < 0.2, "{}", sub(&slow, "latency"));
        let (score, status) = service_score(&slow);
        assert!((score - (100.0 - 0.25 * 50.0)).abs() < 0.2 && status == "healthy", "{score} {status}");
    }

    #[test]
    fn a_silent_service_loses_its_throughput_score() {
        let mut p = HealthProcessor::new(cfg());
        for t in 1..10 {
            p.score_window(t, &stats(100, 0, 0.5));
        }
        let silent = p.score_window(10, &BTreeMap::new());
        assert_eq!(sub(&silent, "throughput"), 0.0);
        assert_eq!(sub(&silent, "latency"), 100.0, "no calls: latency not judged");
        let surge = p.score_window(11, &stats(1000, 0, 0.5));
        assert_eq!(sub(&surge, "throughput"), 100.0);
    }

    #[test]
    fn open_anomalies_and_budgets_count_until_resolved() {
        let mut p = HealthProcessor::new(cfg());
        let mut out = Vec::new();
        p.process(event(EVENT, "latency", "high", 1, None), &mut out);
        p.process(event(EVENT, "error_rate", "medium", 2, None), &mut out);
        p.process(event(EVENT, "budget", "high", 3, Some("warn")), &mut out);
        let r = p.score_window(1, &stats(100, 0, 0.5));
        assert_eq!(sub(&r, "anomalies"), 25.0);
        assert_eq!(sub(&r, "budget"), 50.0);
        p.process(event(EVENT, "budget", "critical", 4, Some("strict")), &mut out);
        // Escalation of an open episode replaces its severity.
        p.process(event(EVENT, "latency", "critical", 1, None), &mut out);
        let r = p.score_window(2, &stats(100, 0, 0.5));
        assert_eq!(sub(&r, "anomalies"), 0.0);
        assert_eq!(sub(&r, "budget"), 0.0);
        for (kind, id) in [("latency", 1), ("error_rate", 2), ("budget", 3), ("budget", 4)] {
            p.process(event(EVENT_RESOLVED, kind, "low", id, None), &mut out);
        }
        let r = p.score_window(3, &stats(100, 0, 0.5));
        assert_eq!((sub(&r, "anomalies"), sub(&r, "budget")), (100.0, 100.0));
        assert_eq!(out.len(), 9, "events pass through unchanged");
    }

    #[test]
    fn the_overall_score_shows_a_failing_small_service() {
        let mut p = HealthProcessor::new(cfg());
        let seen = BTreeMap::from([
            ("big".to_string(), WindowStats { calls: 10_000, errors: 0, p95: 0.5 }),
            ("small".to_string(), WindowStats { calls: 20, errors: 20, p95: 0.5 }),
        ]);
        let r = p.score_window(1, &seen);
        let all = scores(&r, "otterline.health.score");
        let overall = all.iter().find(|(a, _)| !a.iter().any(|(k, _)| k == "service.name")).expect("overall").1;
        let small =
            all.iter().find(|(a, _)| a.iter().any(|(k, v)| k == "service.name" && v == "small")).expect("small").1;
        assert_eq!(small, 70.0);
        assert_eq!(overall, 95.0, "capped at the worst service + 25");
    }

    #[test]
    fn aggregate_windows_are_read_from_the_metrics() {
        use crate::aggregate::AggregateProcessorFactory;
        let node = otterline_core::config::yaml::parse("t", "window: 60s\nallowed_lateness: 0s").expect("yaml");
        let id = otterline_core::ComponentId::parse("aggregate").expect("id");
        let ctx = BuildContext { id: &id, config: &node, path: "processors.aggregate".into(), mark: &node.mark };
        let mut agg = AggregateProcessorFactory.build(&ctx).expect("aggregate");
        let mut rng = 1u64;
        let spans: Vec<otterline_core::pdata::trace::Span> = (0..200)
            .map(|i| {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let start = 1_700_000_000_000_000_000u64 + i * 100_000_000;
                otterline_core::pdata::trace::Span {
                    name: "chat gpt-4o".into(),
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 100_000_000 + (rng >> 40) % 100_000_000,
                    status: Some(otterline_core::pdata::trace::Status {
                        code: if i % 10 == 0 { 2 } else { 1 },
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        let req = otterline_core::pdata::ExportTraceServiceRequest {
            resource_spans: vec![otterline_core::pdata::trace::ResourceSpans {
                resource: Some(otterline_core::pdata::resource::Resource {
                    attributes: vec![kv_str("service.name", "chat")],
                    ..Default::default()
                }),
                scope_spans: vec![otterline_core::pdata::trace::ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        };
        let mut out = Vec::new();
        agg.process(Batch::Traces(req), &mut out);
        agg.shutdown(&mut out);
        let mut p = HealthProcessor::new(cfg());
        let mut scored = Vec::new();
        for b in out {
            p.process(b, &mut scored);
        }
        let health: Vec<&ExportMetricsServiceRequest> = scored
            .iter()
            .filter_map(|b| match b {
                Batch::Metrics(r)
                    if r.resource_metrics.iter().any(|rm| {
                        rm.scope_metrics.iter().any(|s| s.scope.as_ref().is_some_and(|s| s.name == "otterline.health"))
                    }) =>
                {
                    Some(r)
                }
                _ => None,
            })
            .collect();
        assert!(!health.is_empty(), "no health scores from aggregate windows");
        // 10 % errors everywhere: errors sub-score (0.10 - 0.01) / 0.19 of the way to 0.
        for r in health {
            let e = sub(r, "errors");
            assert!((e - 100.0 * (1.0 - 0.09 / 0.19)).abs() < 1.0, "errors sub-score {e}");
        }
    }
}
