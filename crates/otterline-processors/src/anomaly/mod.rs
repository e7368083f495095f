//! The `anomaly` processor: per-series baselines over metrics, and anomaly episodes
//! emitted as OTLP log events.
//!
//! It reads the `aggregate` processor's metrics (joined per window and series, with the
//! status dimension folded in) and runs the LLM detectors on them — latency (p95 on log
//! scale, z-score against an EWMA with a spread floor and a minimum ×2 effect), error rate
//! (a binomial test on counts, with an absolute floor and a minimum number of calls),
//! cost and tokens per call (×1.5), quality and user satisfaction (a drop of 0.2 on a 0–1
//! scale, 20 points on 0–100), and throughput (a drop to near zero, surges). Any other
//! gauge, sum or histogram a client sends is judged by how rarely the series has shown such
//! a value, or such a short-run average, before ([`GenericConfig`], [`detect::MetricModel`]).
//!
//! Every detector shares the episode rules of [`detect::Tracker`] (warm-up, 2-of-3
//! persistence, hysteresis, cooldown, acceptance of a lasting shift). Each episode start,
//! escalation and resolution becomes a log record (`event.name` `otterline.anomaly` or
//! `otterline.anomaly.resolved`) that flows down the pipeline like any log record.

mod config;
pub mod detect;
mod events;
mod judges;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::health::ComponentHealth;
use otterline_core::pdata::common::KeyValue;
use otterline_core::Batch;
use otterline_model::aggregate::{self, Role};

pub use config::{
    AnomalyConfig, Detectors, ErrorRateConfig, GenericConfig, LatencyConfig, QualityConfig, RatioConfig,
    ThroughputConfig,
};
pub use judges::binomial_sf;
pub use otterline_model::event::Kind;

use detect::{Baseline, MetricModel, Policy, Tracker};

pub struct AnomalyProcessorFactory;

impl ProcessorFactory for AnomalyProcessorFactory {
    fn type_name(&self) -> &'static str {
        "anomaly"
    }
    fn description(&self) -> &'static str {
        "per-series baselines over metrics; latency, error-rate, cost, quality and throughput anomalies as log events"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let cfg: AnomalyConfig = ctx.parse()?;
        if !(cfg.alpha > 0.0 && cfg.alpha <= 1.0) {
            return Err(ctx.error("alpha", "must be in (0, 1]"));
        }
        if cfg.persistence_required == 0
            || cfg.persistence_required > cfg.persistence_windows
            || cfg.persistence_windows > 32
        {
            return Err(ctx.error("persistence_required", "needs 1 ≤ persistence_required ≤ persistence_windows ≤ 32"));
        }
        cfg.detectors.metrics.check().map_err(|e| ctx.error("detectors", e))?;
        otterline_model::budget::validate(&cfg.budgets).map_err(|e| ctx.error("budgets", e))?;
        if cfg.recovery_windows == 0 {
            return Err(ctx.error("recovery_windows", "must be at least 1"));
        }
        Ok(Box::new(AnomalyProcessor::new(cfg)))
    }
}

/// One detector's memory for one series: O(1).
#[derive(Debug, Clone, Default)]
struct State {
    baseline: Baseline,
    tracker: Tracker,
    /// Window end (Unix ns) last evaluated.
    last_window: u64,
    /// The series' window length (ns), learned from consecutive windows.
    window_ns: u64,
    /// Generic metrics only: what values the series has shown.
    model: Option<Box<MetricModel>>,
}

/// A series and what identifies it in events.
#[derive(Debug, Clone, PartialEq)]
struct SeriesInfo {
    service: String,
    /// Dimensions (service excluded), in order.
    dims: Vec<(String, String)>,
    metric: String,
}

impl SeriesInfo {
    fn label(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if !self.service.is_empty() {
            parts.push(&self.service);
        }
        for (_, v) in &self.dims {
            parts.push(v);
        }
        if parts.is_empty() {
            self.metric.clone()
        } else {
            parts.join(" / ")
        }
    }
}

/// The `aggregate` metrics of one series and window, statuses folded together.
#[derive(Debug, Clone, Default)]
struct Frame {
    calls: f64,
    errors: f64,
    p95_weighted: f64,
    p95_weight: f64,
    mean_weighted: f64,
    duration_sum: f64,
    cost: f64,
    cost_seen: bool,
    tokens: f64,
    tokens_seen: bool,
    quality: (f64, f64),
    satisfaction: (f64, f64),
    window_s: f64,
}

pub struct AnomalyProcessor {
    cfg: AnomalyConfig,
    policy: Policy,
    states: HashMap<(String, Kind), State>,
    infos: HashMap<String, Arc<SeriesInfo>>,
    next_id: u64,
    health: Option<Arc<ComponentHealth>>,
    next_save: Option<std::time::Instant>,
    /// Budget name → (period start, running totals) for per-hour/day sums.
    periods: HashMap<String, (u64, otterline_model::budget::Totals)>,
    /// Held while this process owns `state_path` (another process gets a clear error).
    _state_lock: Option<std::fs::File>,
}

/// A point attribute's value as text (no copy of the value).
fn value_of(kv: &KeyValue) -> String {
    otterline_model::attrs::value_of(kv).map(otterline_core::pdata::value_text).unwrap_or_default()
}

/// The `metric` of events about the `aggregate` family's series.
const OPERATION_METRIC: &str = "otterline.operation";

/// When anomaly alerts can begin, as the start-up log says it.
fn warmup_note(w: u64) -> String {
    format!("anomaly alerts begin after {w} windows of a series' data (the aggregate window × {w}: {w} min at 60s), budget alerts at once")
}

/// State files in use by a live processor of this process.
static CLAIMED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

impl Drop for AnomalyProcessor {
    fn drop(&mut self) {
        if let (Some(path), Ok(mut claimed)) = (&self.cfg.state_path, CLAIMED.lock()) {
            claimed.retain(|p| p != path);
        }
    }
}

impl AnomalyProcessor {
    pub fn new(cfg: AnomalyConfig) -> Self {
        AnomalyProcessor {
            policy: cfg.policy(),
            cfg,
            states: HashMap::new(),
            infos: HashMap::new(),
            next_id: 0,
            health: None,
            next_save: None,
            periods: HashMap::new(),
            _state_lock: None,
        }
    }

    /// Loads the saved state, if configured and present.
    fn restore(&mut self) {
        let Some(path) = self.cfg.state_path.clone() else {
            let w = self.cfg.warmup_windows;
            tracing::info!(
                warmup_windows = w,
                "anomaly: {}; without state_path a restart starts this warm-up again",
                warmup_note(w)
            );
            return;
        };
        // Each pipeline gets its own processor instance: two of them sharing a state file
        // would overwrite each other's baselines.
        if let Ok(mut claimed) = CLAIMED.lock() {
            if claimed.contains(&path) {
                tracing::error!(file = %path.display(), "anomaly: another pipeline's anomaly processor already uses this state_path; give each processor instance its own (e.g. `anomaly/metrics`) — state is not persisted for this one");
                self.cfg.state_path = None;
                return;
            }
            claimed.push(path.clone());
        }
        // Another Otterline using the same file would overwrite these baselines.
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        match otterline_core::fsutil::lock_file(
            std::path::Path::new(&lock_path),
            &path.display().to_string(),
            "give each Otterline its own state_path (OTTERLINE_DATA_DIR for the default pipeline)",
        ) {
            Ok(f) => self._state_lock = Some(f),
            Err(e) => {
                tracing::error!(file = %path.display(), "anomaly: {e} — state is not persisted for this one");
                self.cfg.state_path = None;
                return;
            }
        }
        self.next_save = Some(std::time::Instant::now() + self.cfg.save_interval);
        match state::load(&path) {
            Ok(None) => {
                let w = self.cfg.warmup_windows;
                tracing::info!(file = %path.display(), warmup_windows = w, "anomaly: no saved state yet; {}", warmup_note(w))
            }
            Ok(Some(msg)) => match state::decode(msg, otterline_core::time::now_unix_nanos(), self.cfg.alpha) {
                Some(r) => {
                    let w = self.cfg.warmup_windows;
                    tracing::info!(file = %path.display(), detectors = r.states.len(), "anomaly: restored baselines and open episodes; a series not seen before alerts after {w} windows of its data");
                    self.states = r.states;
                    self.infos = r.infos;
                    self.next_id = r.next_id;
                }
                None => {
                    tracing::warn!(file = %path.display(), "anomaly: saved state has another format version; starting fresh")
                }
            },
            Err(e) => tracing::warn!("anomaly: {e}; starting fresh"),
        }
    }

    /// Saves the state, if configured.
    fn persist(&mut self) {
        let Some(path) = self.cfg.state_path.clone() else { return };
        self.next_save = Some(std::time::Instant::now() + self.cfg.save_interval);
        let msg = state::encode(&self.states, &self.infos, self.next_id, otterline_core::time::now_unix_nanos());
        if let Err(e) = state::save(&path, &msg) {
            tracing::error!(file = %path.display(), error = %e, "anomaly: cannot save state");
            if let Some(h) = &self.health {
                h.add_extra("state_save_errors", 1);
            }
        }
    }

    /// Series currently tracked (one state per series and detector).
    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    /// Histogram cells held by the generic-metric models (both features), for benchmarks.
    pub fn metric_cells(&self) -> usize {
        self.states.values().filter_map(|s| s.model.as_ref()).map(|m| m.point.cells.len() + m.smooth.cells.len()).sum()
    }

    fn info(&mut self, key: &str, service: &str, dims: &[(String, String)], metric: &str) -> Arc<SeriesInfo> {
        if let Some(i) = self.infos.get(key) {
            return i.clone();
        }
        let i = Arc::new(SeriesInfo { service: service.to_string(), dims: dims.to_vec(), metric: metric.to_string() });
        self.infos.insert(key.to_string(), i.clone());
        i
    }
}

impl Processor for AnomalyProcessor {
    fn attach(&mut self, health: Arc<ComponentHealth>) {
        self.health = Some(health);
        self.restore();
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        self.next_save
    }

    fn on_timer(&mut self, _now: std::time::Instant, _out: &mut Vec<Batch>) {
        self.persist();
    }

    fn shutdown(&mut self, _out: &mut Vec<Batch>) {
        self.persist();
    }

    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let Batch::Metrics(req) = &batch else {
            out.push(batch);
            return;
        };
        let mut events = Vec::new();
        // (series key, window end) → frame; plus the series' identity.
        let mut frames: BTreeMap<(u64, String), (Frame, Arc<SeriesInfo>)> = BTreeMap::new();
        let mut window_ns = 0u64;
        for rm in &req.resource_metrics {
            let service = otterline_core::pdata::service_name(rm.resource.as_ref()).unwrap_or("").to_string();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    match aggregate::role(&m.name) {
                        Role::Derived => continue,
                        Role::Other => {
                            self.judge_generic(m, &service, &mut events);
                            continue;
                        }
                        Role::Read => {}
                    }
                    aggregate::points(m, |p| {
                        let value = p.value;
                        if let aggregate::Value::Tokens { kind, .. } = value {
                            if kind != "input" && kind != "output" {
                                return;
                            }
                        }
                        let is_error = p.is_error();
                        let dims: Vec<(String, String)> = p
                            .attributes
                            .iter()
                            .filter(|kv| aggregate::is_dimension(&kv.key))
                            .map(|kv| (kv.key.clone(), value_of(kv)))
                            .collect();
                        let key = format!("{service}\u{1f}{dims:?}");
                        let info = self.info(&key, &service, &dims, OPERATION_METRIC);
                        let (start, end) = (p.start, p.end);
                        let entry = frames.entry((end, key)).or_insert_with(|| {
                            (Frame { window_s: end.saturating_sub(start) as f64 / 1e9, ..Default::default() }, info)
                        });
                        window_ns = window_ns.max(end.saturating_sub(start));
                        let f = &mut entry.0;
                        match value {
                            aggregate::Value::Calls(v) => f.calls += v,
                            aggregate::Value::Errors(v) => f.errors += v,
                            aggregate::Value::Cost(v) => {
                                f.cost += v;
                                f.cost_seen = true;
                            }
                            aggregate::Value::Tokens { count, .. } => {
                                f.tokens += count;
                                f.tokens_seen = true;
                            }
                            aggregate::Value::Duration { count, sum, p95 } => {
                                let (w, mean) = (count as f64, if count > 0 { sum / count as f64 } else { 0.0 });
                                f.duration_sum += sum;
                                // Latency is judged on the calls that did not fail.
                                if !is_error {
                                    f.p95_weighted += p95 * w;
                                    f.p95_weight += w;
                                    f.mean_weighted += mean * w;
                                }
                            }
                            aggregate::Value::Quality(v) => {
                                f.quality.0 += v;
                                f.quality.1 += 1.0;
                            }
                            aggregate::Value::Satisfaction(v) => {
                                f.satisfaction.0 += v;
                                f.satisfaction.1 += 1.0;
                            }
                            // Reported (dashboard, reports), not judged.
                            aggregate::Value::Unpriced(_) => {}
                        }
                    });
                }
            }
        }
        let latest = frames.keys().map(|(end, _)| *end).max().unwrap_or(0);
        if !self.cfg.budgets.is_empty() {
            self.judge_budgets(&frames, &mut events);
        }
        for ((end, key), (frame, info)) in frames {
            self.judge_frame(&key, info, end, &frame, &mut events);
        }
        if latest > 0 {
            self.missing_windows(latest, window_ns, &mut events);
        }
        out.push(batch);
        if !events.is_empty() {
            if let Some(h) = &self.health {
                h.add_extra("anomaly_events", events.len() as u64);
            }
            out.push(events::events_batch(events));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateConfig, AggregateProcessor};
    use otterline_core::pdata::common::{any_value, AnyValue};
    use otterline_core::pdata::logs::LogRecord;
    use otterline_core::pdata::metrics::{metric, number_data_point, Metric};
    use otterline_core::pdata::resource::Resource;
    use otterline_core::pdata::trace::{ResourceSpans, ScopeSpans, Span, Status};
    use otterline_core::pdata::ExportTraceServiceRequest;
    use otterline_model::attrs::kv;
    use otterline_model::names::event::{ANOMALY as EVENT, ANOMALY_RESOLVED as EVENT_RESOLVED};
    use std::time::Duration;

    const T0: u64 = 1_763_874_000_000_000_000;
    const W: u64 = 60_000_000_000;

    /// One window of traffic for the `chat` operation of `model`.
    #[derive(Clone, Copy)]
    struct Traffic {
        calls: usize,
        latency_s: f64,
        error_frac: f64,
        cost: f64,
        quality: f64,
        model: &'static str,
    }

    const STEADY: Traffic =
        Traffic { calls: 60, latency_s: 0.8, error_frac: 0.02, cost: 0.002, quality: 0.85, model: "gpt-4o-mini" };

    fn spans(window: u64, t: Traffic) -> Vec<Span> {
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        (0..t.calls)
            .map(|i| {
                let end = T0 + window * W + 1_000_000 + i as u64 * (W / (t.calls as u64 + 1));
                // ±20 % deterministic jitter around the latency.
                let jitter = 0.8 + 0.4 * ((i * 7919 % 101) as f64 / 100.0);
                let dur = (t.latency_s * jitter * 1e9) as u64;
                let failed = (i as f64) < t.error_frac * t.calls as f64;
                Span {
                    name: "chat".into(),
                    start_time_unix_nano: end - dur,
                    end_time_unix_nano: end,
                    status: Some(Status { code: if failed { 2 } else { 1 }, message: String::new() }),
                    attributes: vec![
                        kv("gen_ai.operation.name", any_value::Value::StringValue("chat".into())),
                        kv("gen_ai.request.model", any_value::Value::StringValue(t.model.into())),
                        kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(500)),
                        kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(100)),
                        kv("gen_ai.usage.cost", any_value::Value::DoubleValue(t.cost)),
                        kv("quality.score", any_value::Value::DoubleValue(t.quality)),
                    ],
                    ..Default::default()
                }
            })
            .collect()
    }

    fn aggregate() -> AggregateProcessor {
        AggregateProcessor::new(AggregateConfig {
            allowed_lateness: Duration::ZERO,
            dimensions: vec![
                "service.name".into(),
                "span.name".into(),
                "gen_ai.operation.name".into(),
                "status".into(),
            ],
            ..Default::default()
        })
    }

    /// Runs windows of traffic through `aggregate` (dimensions without the model, so a
    /// model switch stays one series) and then `anomaly`; returns (window, event) pairs.
    fn run(plan: &[Traffic]) -> Vec<(usize, LogRecord)> {
        let mut plan = plan.to_vec();
        plan.push(STEADY);
        feed(&mut aggregate(), &mut AnomalyProcessor::new(AnomalyConfig::default()), 0, &plan)
    }

    /// Feeds windows `first..` of traffic; each window closes the one before it.
    fn feed(
        agg: &mut AggregateProcessor,
        anomaly: &mut AnomalyProcessor,
        first: usize,
        plan: &[Traffic],
    ) -> Vec<(usize, LogRecord)> {
        let mut events = Vec::new();
        for (i, t) in plan.iter().enumerate() {
            let w = first + i;
            let batch = Batch::Traces(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", any_value::Value::StringValue("support-agent".into()))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans { spans: spans(w as u64, *t), ..Default::default() }],
                    ..Default::default()
                }],
            });
            let mut metrics = Vec::new();
            agg.process(batch, &mut metrics);
            for m in metrics {
                let mut out = Vec::new();
                anomaly.process(m, &mut out);
                for b in out {
                    if let Batch::Logs(l) = b {
                        for r in l.resource_logs.into_iter().flat_map(|r| r.scope_logs).flat_map(|s| s.log_records) {
                            events.push((w, r));
                        }
                    }
                }
            }
        }
        events
    }

    fn attr_s(r: &LogRecord, k: &str) -> String {
        r.attributes.iter().find(|kv| kv.key == k).map(value_of).unwrap_or_default()
    }

    fn plan(steady: usize, bad: Traffic, bad_windows: usize, after: usize) -> Vec<Traffic> {
        let mut p = vec![STEADY; steady];
        p.extend(std::iter::repeat_n(bad, bad_windows));
        p.extend(std::iter::repeat_n(STEADY, after));
        p
    }

    /// Asserts one episode of `kind`: fired within `max_delay` windows of `start`, resolved later.
    fn assert_episode(events: &[(usize, LogRecord)], kind: &str, start: usize, max_delay: usize) {
        let fired: Vec<&(usize, LogRecord)> = events
            .iter()
            .filter(|(_, r)| r.event_name == EVENT && attr_s(r, "otterline.anomaly.state") == "firing")
            .collect();
        assert_eq!(
            fired.len(),
            1,
            "one episode: {:?}",
            events
                .iter()
                .map(|(w, r)| (w, attr_s(r, "otterline.anomaly.type"), attr_s(r, "otterline.anomaly.state")))
                .collect::<Vec<_>>()
        );
        let (w, r) = fired[0];
        assert_eq!(attr_s(r, "otterline.anomaly.type"), kind);
        assert!(*w >= start && *w <= start + max_delay, "{kind} detected at window {w}, anomaly began at {start}");
        assert_eq!(attr_s(r, "service.name"), "support-agent");
        assert!(!attr_s(r, "otterline.anomaly.suggestion").is_empty());
        let resolved = events.iter().filter(|(_, r)| r.event_name == EVENT_RESOLVED).count();
        assert_eq!(resolved, 1, "the episode resolves after recovery");
    }

    #[test]
    fn steady_traffic_raises_nothing() {
        let events = run(&vec![STEADY; 80]);
        assert!(
            events.is_empty(),
            "{:?}",
            events.iter().map(|(w, r)| (w, attr_s(r, "otterline.anomaly.type"))).collect::<Vec<_>>()
        );
    }

    #[test]
    fn latency_spike() {
        let events = run(&plan(30, Traffic { latency_s: 3.2, ..STEADY }, 4, 20));
        // Aggregates reach the detector one window later (when the window closes).
        assert_episode(&events, "latency", 30, 3);
        let (_, r) = events.iter().find(|(_, r)| r.event_name == EVENT).unwrap();
        assert!(
            attr_s(r, "otterline.anomaly.suggestion").starts_with("p95 of support-agent / chat / chat is 4."),
            "{}",
            attr_s(r, "otterline.anomaly.suggestion")
        );
    }

    #[test]
    fn error_burst() {
        assert_episode(&run(&plan(30, Traffic { error_frac: 0.4, ..STEADY }, 4, 20)), "error_rate", 30, 3);
    }

    #[test]
    fn switch_to_an_expensive_model() {
        assert_episode(
            &run(&plan(30, Traffic { cost: 0.012, model: "gpt-4o", ..STEADY }, 5, 20)),
            "cost_per_call",
            30,
            3,
        );
    }

    #[test]
    fn quality_drop() {
        assert_episode(&run(&plan(30, Traffic { quality: 0.55, ..STEADY }, 5, 20)), "quality", 30, 3);
    }

    #[test]
    fn saved_state_survives_a_restart_without_a_new_warm_up() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AnomalyConfig { state_path: Some(dir.path().join("state/anomaly.pb")), ..Default::default() };
        let health = Arc::new(ComponentHealth::new("processor", "anomaly".into()));
        let mut agg = aggregate();
        let mut first = AnomalyProcessor::new(cfg.clone());
        first.attach(health.clone());
        assert!(feed(&mut agg, &mut first, 0, &[STEADY; 31]).is_empty());
        first.shutdown(&mut Vec::new());
        assert!(dir.path().join("state/anomaly.pb").exists());
        assert!(!otterline_core::fsutil::temp_path(&dir.path().join("state/anomaly.pb")).exists());

        let spike = Traffic { latency_s: 3.2, ..STEADY };
        let plan = [spike, spike, spike, STEADY];
        // Restored: the spike right after the restart is detected.
        let tracked = first.tracked();
        drop(first);
        let mut second = AnomalyProcessor::new(cfg);
        second.attach(health);
        assert_eq!(second.tracked(), tracked);
        let events = feed(&mut agg, &mut second, 31, &plan);
        assert!(
            events.iter().any(|(_, r)| attr_s(r, "otterline.anomaly.type") == "latency"
                && attr_s(r, "otterline.anomaly.state") == "firing"),
            "{}",
            events.len()
        );
        // Control: without the state, the same windows fall in a new warm-up.
        let mut fresh = AnomalyProcessor::new(AnomalyConfig::default());
        let mut agg2 = aggregate();
        assert!(feed(&mut agg2, &mut fresh, 31, &plan).is_empty());
    }

    #[test]
    fn budgets_fire_on_breach_with_their_mode_and_scope() {
        use otterline_model::budget::{Budget, BudgetMetric, Mode, Period, Scope};
        let budgets = vec![
            // p95 ≈ 0.8 × 1.2 s in every window: breached from the first window, strict.
            Budget {
                name: "chat-p95".into(),
                metric: BudgetMetric::P95Latency,
                max: 0.5,
                per: Period::Window,
                scope: Scope { service: Some("support-agent".into()), ..Default::default() },
                mode: Mode::Strict,
            },
            // 60 calls × $0.002 = $0.12 per window: a $0.50 daily budget breaks in the 5th window.
            Budget {
                name: "daily-cost".into(),
                metric: BudgetMetric::Cost,
                max: 0.5,
                per: Period::Day,
                scope: Scope::default(),
                mode: Mode::Warn,
            },
            // Out of scope: never judged.
            Budget {
                name: "other".into(),
                metric: BudgetMetric::Calls,
                max: 0.0,
                per: Period::Window,
                scope: Scope { service: Some("nobody".into()), ..Default::default() },
                mode: Mode::Strict,
            },
        ];
        let mut p = AnomalyProcessor::new(AnomalyConfig { budgets, ..Default::default() });
        let events = feed(&mut aggregate(), &mut p, 0, &[STEADY; 8]);
        let budget_events: Vec<&(usize, LogRecord)> =
            events.iter().filter(|(_, r)| attr_s(r, "otterline.anomaly.type") == "budget").collect();
        let fired = |name: &str| {
            budget_events
                .iter()
                .filter(|(_, r)| {
                    attr_s(r, "otterline.budget.name") == name && attr_s(r, "otterline.anomaly.state") == "firing"
                })
                .map(|(w, r)| (*w, attr_s(r, "otterline.anomaly.severity")))
                .collect::<Vec<_>>()
        };
        // Aggregates arrive one window late: window 0 is judged when window 1's spans arrive.
        assert_eq!(fired("chat-p95"), vec![(1, "high".to_string())]);
        assert_eq!(fired("daily-cost"), vec![(5, "low".to_string())]);
        assert!(fired("other").is_empty());
        let (_, r) = budget_events[0];
        assert!(
            attr_s(r, "otterline.anomaly.suggestion")
                .starts_with("budget chat-p95: p95_latency of service support-agent is 0."),
            "{}",
            attr_s(r, "otterline.anomaly.suggestion")
        );
    }

    /// Deterministic standard normal samples (xorshift + Box–Muller).
    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.max(1);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000 + 1) as f64 / 1_000_001.0
        };
        (0..n).map(|_| (-2.0 * next().ln()).sqrt() * (2.0 * std::f64::consts::PI * next()).cos()).collect()
    }

    /// Feeds one metric; whether an episode started.
    fn fires(p: &mut AnomalyProcessor, m: Metric) -> bool {
        use otterline_core::pdata::metrics::{ResourceMetrics, ScopeMetrics};
        use otterline_core::pdata::ExportMetricsServiceRequest;
        let mut out = Vec::new();
        p.process(
            Batch::Metrics(ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }],
                    ..Default::default()
                }],
            }),
            &mut out,
        );
        out.iter().any(|b| match b {
            Batch::Logs(l) => l
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .any(|r| r.event_name == EVENT && attr_s(r, "otterline.anomaly.state") == "firing"),
            _ => false,
        })
    }

    fn point(i: usize, v: f64) -> otterline_core::pdata::metrics::NumberDataPoint {
        otterline_core::pdata::metrics::NumberDataPoint {
            time_unix_nano: T0 + i as u64 * W,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn gauge(i: usize, v: f64) -> Metric {
        use otterline_core::pdata::metrics::Gauge;
        Metric {
            name: "queue.depth".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(i, v)] })),
            ..Default::default()
        }
    }

    /// A cumulative monotonic counter reading.
    fn counter(i: usize, total: f64) -> Metric {
        use otterline_core::pdata::metrics::{AggregationTemporality, Sum};
        Metric {
            name: "requests".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(i, total)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    /// Feeds a gauge series (one value per minute) and returns the indices where episodes start.
    fn gauge_episodes(values: &[f64]) -> Vec<usize> {
        let mut p = AnomalyProcessor::new(AnomalyConfig::default());
        (0..values.len()).filter(|&i| fires(&mut p, gauge(i, values[i]))).collect()
    }

    fn noisy(n: usize, level: f64, sd: f64, seed: u64) -> Vec<f64> {
        normals(n, seed).into_iter().map(|z| level + sd * z).collect()
    }

    #[test]
    fn generic_series_detection_delays() {
        // (name, series, where the anomaly starts, the largest acceptable delay)
        let mut spike = noisy(300, 100.0, 2.0, 1);
        spike[200] = 200.0;
        let mut up = noisy(300, 100.0, 2.0, 2);
        up[200..].iter_mut().for_each(|v| *v += 50.0);
        let mut down = noisy(300, 100.0, 2.0, 3);
        down[200..].iter_mut().for_each(|v| *v -= 50.0);
        let mut ramp = noisy(400, 100.0, 2.0, 4);
        ramp[200..].iter_mut().enumerate().for_each(|(i, v)| *v += 2.0 * i as f64);
        // Noise from 1 % to 40 % of the level. (The spread floor is 5 % of the level on the log
        // scale, so noise that stays within about ±25 % of a quiet series is never flagged.)
        let mut variance = noisy(400, 100.0, 1.0, 5);
        variance[200..].iter_mut().zip(normals(200, 55)).for_each(|(v, z)| *v = (100.0 + 40.0 * z).max(1.0));
        let mut flat = vec![5.0; 300];
        flat[250] = 50.0;
        for (name, series, start, max_delay) in [
            ("spike", spike, 200, 0),
            ("level shift up", up, 200, 1),
            ("level shift down", down, 200, 1),
            ("ramp", ramp, 200, 20),
            ("variance change", variance, 200, 30),
            ("flat with a rare spike", flat, 250, 0),
        ] {
            let eps = gauge_episodes(&series);
            let first = eps.first().copied().unwrap_or_else(|| panic!("{name}: not detected"));
            assert!(first >= start, "{name}: false alert at {first} before the anomaly at {start} ({eps:?})");
            assert!(first - start <= max_delay, "{name}: detected {} windows late", first - start);
        }
    }

    #[test]
    fn no_anomaly_series_stay_quiet() {
        for seed in 10..15 {
            let eps = gauge_episodes(&noisy(2000, 100.0, 5.0, seed));
            assert!(eps.is_empty(), "seed {seed}: {eps:?}");
        }
        assert!(gauge_episodes(&[0.0; 500]).is_empty(), "an all-zero series");
        // All-zero error rate on steady traffic: no error-rate alerts.
        assert!(run(&vec![Traffic { error_frac: 0.0, ..STEADY }; 60]).is_empty());
    }

    #[test]
    fn counters_are_judged_by_their_rate() {
        // A counter growing by ~600 a minute (10/s) is steady, although every reading is new.
        let rates: Vec<f64> = noisy(400, 10.0, 0.5, 21);
        let mut p = AnomalyProcessor::new(AnomalyConfig::default());
        let mut total = 0.0;
        let mut starts = Vec::new();
        for (i, r) in rates.iter().enumerate() {
            // From window 300 on, the rate is ten times higher; at 350 the counter resets.
            total = if i == 350 { 0.0 } else { total + 60.0 * r * if i >= 300 { 10.0 } else { 1.0 } };
            if fires(&mut p, counter(i, total)) {
                starts.push(i);
            }
        }
        assert_eq!(starts.first(), Some(&300), "{starts:?}");
        assert!(starts.iter().all(|&i| i >= 300), "{starts:?}");
    }

    #[test]
    fn generic_metric_model_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AnomalyConfig { state_path: Some(dir.path().join("anomaly.pb")), ..Default::default() };
        let health = Arc::new(ComponentHealth::new("processor", "anomaly".into()));
        let values = noisy(300, 100.0, 2.0, 31);
        let mut first = AnomalyProcessor::new(cfg.clone());
        first.attach(health.clone());
        for (i, v) in values.iter().enumerate().take(200) {
            assert!(!fires(&mut first, gauge(i, *v)));
        }
        first.shutdown(&mut Vec::new());
        drop(first);
        let mut second = AnomalyProcessor::new(cfg);
        second.attach(health);
        // Normal values right after the restart are still familiar; a new level is not.
        for (i, v) in values.iter().enumerate().skip(200).take(20) {
            assert!(!fires(&mut second, gauge(i, *v)), "window {i}");
        }
        assert!(fires(&mut second, gauge(220, 160.0)));
        // Control: a fresh processor is still warming up and says nothing.
        let mut fresh = AnomalyProcessor::new(AnomalyConfig::default());
        assert!((200..221).all(|i| !fires(&mut fresh, gauge(i, if i == 220 { 160.0 } else { values[i] }))));
    }

    #[test]
    fn kinds_are_all_listed() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Kind::ALL.iter().map(|k| k.index()).max(), Some(Kind::ALL.len() - 1));
    }

    #[test]
    fn binomial_tail() {
        // P(X ≥ 3) for Binomial(10, 0.1) = 1 − P(0) − P(1) − P(2) = 0.0701908
        assert!((binomial_sf(3, 10, 0.1) - 0.0701908).abs() < 1e-6);
        assert_eq!(binomial_sf(0, 10, 0.1), 1.0);
        assert!(binomial_sf(500, 5000, 0.05) < 1e-10);
    }
}
