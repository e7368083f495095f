//! The `aggregate` processor: RED metrics for LLM and agent calls, per window and series.
//!
//! Spans are grouped into tumbling windows (default 60 s) by their end time and into
//! series by the configured dimensions (service, span name, operation, model, status, and
//! optional ones such as `user.id` or a task type). When a window closes, each series
//! becomes OTLP metrics (delta temporality; names and units in `docs/metrics.md`):
//! calls, errors, a duration histogram plus percentiles from a DDSketch (1 % relative
//! error), mean duration, throughput, token usage by type, cost, and mean quality and user
//! satisfaction. The metrics continue down the pipeline; the spans do too unless
//! `drop_spans` is set.
//!
//! Windows close on event time: once a span ends `allowed_lateness` after a window's end,
//! or when no span has arrived for `window + allowed_lateness` of wall-clock time, and at
//! shutdown (no window is lost at SIGTERM). Spans for an already closed window are counted
//! as `late_spans` and not aggregated.
//!
//! Event time cannot be poisoned by one bad clock: the watermark never runs ahead of the
//! wall clock (a span dated a few minutes ahead is aggregated in its own window, which
//! closes when real time gets there, and makes no other span late), and a span ending more
//! than `max_clock_skew` after it was received is set aside (`future_spans`). Late and
//! future spans are logged with their service, once per service every ten minutes. The
//! number of live series is capped by
//! `cardinality_limit`: new series beyond it go into one series labelled
//! `otel.metric.overflow = true`; series unseen for `series_idle_timeout` expire.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::health::ComponentHealth;
use otterline_core::pdata::common::{any_value, KeyValue};
use otterline_core::pdata::metrics::{
    metric, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::trace::{status::StatusCode, Span};
use otterline_core::pdata::ExportMetricsServiceRequest;
use otterline_core::Batch;

use otterline_model::attrs::{attr_f64, kv_bool, kv_str};
use otterline_model::names::{attr as an, metric as mn, scope};

use crate::cost::tokens;

/// Relative accuracy of the duration percentiles.
pub const SKETCH_ALPHA: f64 = 0.01;
/// Quantiles reported in the duration summary (0 and 1 are min and max).
pub const QUANTILES: [f64; 6] = [0.0, 0.5, 0.75, 0.95, 0.99, 1.0];
/// `gen_ai.client.operation.duration` buckets recommended by the GenAI conventions (s).
pub const DURATION_BUCKETS: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/// `gen_ai.client.token.usage` buckets recommended by the GenAI conventions.
pub const TOKEN_BUCKETS: [f64; 13] =
    [1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0];
pub const OVERFLOW_ATTRIBUTE: &str = an::OTEL_METRIC_OVERFLOW;
const TOKEN_TYPES: [&str; 5] = ["input", "output", "cache_read", "cache_creation", "reasoning"];

/// `aggregate.error_rules[]`: what else makes a call an error besides status ERROR.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub attribute: String,
    /// The attribute equals this (compared as text).
    #[serde(default)]
    pub equals: Option<String>,
    /// The attribute is a number at least this large (e.g. an HTTP status of 500).
    #[serde(default)]
    pub at_least: Option<f64>,
}

impl ErrorRule {
    fn matches(&self, span: &Span) -> bool {
        let Some(v) = span
            .attributes
            .iter()
            .find(|kv| kv.key == self.attribute)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
        else {
            return false;
        };
        match (&self.equals, self.at_least) {
            (Some(e), _) => otterline_core::pdata::value_text(v) == *e,
            (None, Some(min)) => attr_f64(&span.attributes, &self.attribute).is_some_and(|x| x >= min),
            (None, None) => true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregateConfig {
    #[serde(with = "otterline_core::units::duration")]
    pub window: Duration,
    #[serde(with = "otterline_core::units::duration")]
    pub allowed_lateness: Duration,
    /// Series dimensions. Special names: `service.name` (resource), `span.name`,
    /// `span.kind`, `status`; anything else is a span attribute, else a resource attribute.
    pub dimensions: Vec<String>,
    /// Appended to `dimensions` (e.g. `user.id`, `enduser.id`, a task-type attribute).
    pub extra_dimensions: Vec<String>,
    pub cardinality_limit: usize,
    #[serde(with = "otterline_core::units::duration")]
    pub series_idle_timeout: Duration,
    pub quality_attribute: String,
    pub satisfaction_attribute: String,
    /// The span attribute that holds the cost (written by the `cost` processor).
    pub cost_attribute: String,
    pub error_rules: Vec<ErrorRule>,
    pub drop_spans: bool,
    /// A span ending more than this after it is received is set aside (counted as
    /// `future_spans`, logged with its service), not aggregated: a wrong clock.
    #[serde(with = "otterline_core::units::duration")]
    pub max_clock_skew: Duration,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        AggregateConfig {
            window: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(30),
            dimensions: [an::SERVICE_NAME, "span.name", an::GEN_AI_OPERATION_NAME, an::GEN_AI_REQUEST_MODEL, "status"]
                .map(String::from)
                .to_vec(),
            extra_dimensions: Vec::new(),
            cardinality_limit: 10_000,
            series_idle_timeout: Duration::from_secs(600),
            quality_attribute: "quality.score".into(),
            satisfaction_attribute: "user.satisfaction".into(),
            cost_attribute: an::GEN_AI_USAGE_COST.into(),
            error_rules: Vec::new(),
            drop_spans: false,
            max_clock_skew: Duration::from_secs(600),
        }
    }
}

pub struct AggregateProcessorFactory;

impl ProcessorFactory for AggregateProcessorFactory {
    fn type_name(&self) -> &'static str {
        "aggregate"
    }
    fn description(&self) -> &'static str {
        "per-window RED metrics from spans: calls, errors, duration histogram and p50/p75/p95/p99, tokens, cost, quality"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let mut cfg: AggregateConfig = ctx.parse()?;
        if cfg.window < Duration::from_millis(100) {
            return Err(ctx.error("window", "the window must be at least 100ms"));
        }
        if cfg.cardinality_limit == 0 {
            return Err(ctx.error("cardinality_limit", "must be at least 1"));
        }
        let extra = std::mem::take(&mut cfg.extra_dimensions);
        for d in extra {
            if !cfg.dimensions.contains(&d) {
                cfg.dimensions.push(d);
            }
        }
        if cfg.dimensions.iter().any(|d| d.is_empty()) {
            return Err(ctx.error("dimensions", "dimension names must not be empty"));
        }
        Ok(Box::new(AggregateProcessor::new(cfg)))
    }
}

/// Per-series aggregates of one window.
struct Series {
    dims: Arc<Vec<(String, String)>>,
    /// Entry spans of the service (SERVER / CONSUMER kind, or roots): service-level RED.
    entry: bool,
    calls: u64,
    errors: u64,
    sketch: DDSketch,
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum_s: f64,
    tokens: [i64; 5],
    token_hist: [TokenHist; 2],
    cost: f64,
    /// Calls marked unpriced by the `cost` processor.
    unpriced: u64,
    quality: (f64, u64),
    satisfaction: (f64, u64),
}

#[derive(Clone, Copy, Default)]
struct TokenHist {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    buckets: [u64; TOKEN_BUCKETS.len() + 1],
}

impl TokenHist {
    fn add(&mut self, v: f64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        self.buckets[bucket(&TOKEN_BUCKETS, v)] += 1;
    }
}

fn bucket(bounds: &[f64], v: f64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

fn sketch() -> DDSketch {
    DDSketch::new(SketchConfig::new(SKETCH_ALPHA, 2048, 1e-9))
}

impl Series {
    fn new(dims: Arc<Vec<(String, String)>>, entry: bool) -> Series {
        Series {
            dims,
            entry,
            calls: 0,
            errors: 0,
            sketch: sketch(),
            buckets: [0; DURATION_BUCKETS.len() + 1],
            sum_s: 0.0,
            tokens: [0; 5],
            token_hist: [TokenHist::default(); 2],
            cost: 0.0,
            unpriced: 0,
            quality: (0.0, 0),
            satisfaction: (0.0, 0),
        }
    }
}

const KINDS: [&str; 6] = ["unspecified", "internal", "server", "client", "producer", "consumer"];

pub struct AggregateProcessor {
    cfg: AggregateConfig,
    window_ns: i64,
    lateness_ns: i64,
    /// Window start → series key → aggregates.
    open: BTreeMap<i64, HashMap<String, Series>>,
    /// Windows starting before this are closed.
    closed_before: i64,
    watermark: i64,
    last_arrival: Option<Instant>,
    /// Live series → last window start they were seen in.
    active: HashMap<String, i64>,
    /// Interned dimension sets, shared by a series across windows.
    dims: HashMap<String, Arc<Vec<(String, String)>>>,
    key: String,
    health: Option<Arc<ComponentHealth>>,
    /// Wall clock of the batch being processed (unix ns).
    now_ns: i64,
    /// When the idle timer fires next (see [`Processor::next_deadline`]).
    idle_deadline: Option<Instant>,
    /// Services whose late or future spans were logged, and when.
    offenders: HashMap<(String, &'static str), Instant>,
}

/// How often a service's late or future spans are logged again.
const OFFENDER_LOG_EVERY: Duration = Duration::from_secs(600);
/// Services remembered for that (a bound on memory).
const OFFENDERS_MAX: usize = 1024;

impl AggregateProcessor {
    pub fn new(cfg: AggregateConfig) -> Self {
        AggregateProcessor {
            window_ns: cfg.window.as_nanos() as i64,
            lateness_ns: cfg.allowed_lateness.as_nanos() as i64,
            cfg,
            open: BTreeMap::new(),
            closed_before: i64::MIN,
            watermark: i64::MIN,
            last_arrival: None,
            active: HashMap::new(),
            dims: HashMap::new(),
            key: String::new(),
            health: None,
            now_ns: 0,
            idle_deadline: None,
            offenders: HashMap::new(),
        }
    }

    /// Counts a span that is not aggregated and logs its service (rate-limited).
    fn set_aside(&mut self, what: &'static str, span: &Span, resource: Option<&Resource>) {
        if let Some(h) = &self.health {
            h.add_extra(what, 1);
        }
        let service = resource
            .and_then(|r| otterline_model::attrs::attr(&r.attributes, an::SERVICE_NAME))
            .map(otterline_core::pdata::value_text)
            .unwrap_or_default();
        let key = (service, what);
        if self.offenders.get(&key).is_some_and(|t| t.elapsed() < OFFENDER_LOG_EVERY) {
            return;
        }
        if self.offenders.len() >= OFFENDERS_MAX {
            self.offenders.retain(|_, t| t.elapsed() < OFFENDER_LOG_EVERY);
        }
        let end = otterline_core::time::from_unix_nanos(span.end_time_unix_nano)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let now = otterline_core::time::from_unix_nanos(self.now_ns as u64)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match what {
            "future_spans" => {
                tracing::warn!(service = %key.0, span = %span.name, span_end = %end, received = %now, max_clock_skew = %otterline_core::units::format_duration(self.cfg.max_clock_skew), "aggregate: a span ends in the future (a wrong clock?); it is archived but not aggregated; more from this service are counted in future_spans")
            }
            _ => {
                tracing::warn!(service = %key.0, span = %span.name, span_end = %end, received = %now, allowed_lateness = %otterline_core::units::format_duration(self.cfg.allowed_lateness), "aggregate: a span arrived after its window closed (a clock behind, or a slow sender); it is archived but not aggregated; more from this service are counted in late_spans")
            }
        }
        if self.offenders.len() < OFFENDERS_MAX {
            self.offenders.insert(key, Instant::now());
        }
    }

    /// Live series (for benchmarks and tests).
    pub fn active_series(&self) -> usize {
        self.active.len()
    }

    /// Appends the value of `dim` to `buf`; false when the span has none.
    fn write_dim(dim: &str, span: &Span, resource: Option<&Resource>, buf: &mut String) -> bool {
        let find = |attrs: &'_ [KeyValue]| {
            attrs
                .iter()
                .find(|kv| kv.key == dim)
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.as_ref())
                .cloned()
        };
        let value = match dim {
            an::SERVICE_NAME => resource.and_then(|r| find(&r.attributes)),
            "span.name" => {
                buf.push_str(&span.name);
                return true;
            }
            "span.kind" => {
                buf.push_str(KINDS.get(span.kind as usize).unwrap_or(&"unspecified"));
                return true;
            }
            "status" => {
                buf.push_str(match span.status.as_ref().map(|s| s.code) {
                    Some(c) if c == StatusCode::Error as i32 => "ERROR",
                    Some(c) if c == StatusCode::Ok as i32 => "OK",
                    _ => "UNSET",
                });
                return true;
            }
            _ => find(&span.attributes).or_else(|| resource.and_then(|r| find(&r.attributes))),
        };
        match value {
            Some(any_value::Value::StringValue(s)) => {
                buf.push_str(&s);
                true
            }
            Some(v) => {
                buf.push_str(&otterline_core::pdata::value_text(&v));
                true
            }
            None => false,
        }
    }

    fn add(&mut self, span: &Span, resource: Option<&Resource>) {
        let end = span.end_time_unix_nano.min(i64::MAX as u64) as i64;
        if end.saturating_sub(self.now_ns) > self.cfg.max_clock_skew.as_nanos() as i64 {
            self.set_aside("future_spans", span, resource);
            return;
        }
        let start = end.div_euclid(self.window_ns) * self.window_ns;
        if start < self.closed_before {
            self.set_aside("late_spans", span, resource);
            return;
        }
        // Never ahead of the wall clock: a span from a clock running ahead keeps its own
        // window open until real time gets there, and makes no other span late.
        self.watermark = self.watermark.max(end.min(self.now_ns));
        // The series key: dimension values, each followed by a separator that never occurs
        // in them (and a marker for absent values); built in a reused buffer.
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        for d in &self.cfg.dimensions {
            if !Self::write_dim(d, span, resource, &mut key) {
                key.push('\u{0}');
            }
            key.push('\u{1f}');
        }
        // Entry spans of the service (what service-level RED counts) are their own series.
        let entry = otterline_model::aggregate::is_entry_span(span);
        key.push(if entry { 'E' } else { 'N' });
        if !self.active.contains_key(key.as_str()) && self.active.len() >= self.cfg.cardinality_limit {
            key.clear();
            key.push_str(OVERFLOW_ATTRIBUTE);
            key.push(if entry { 'E' } else { 'N' });
            if let Some(h) = &self.health {
                h.add_extra("overflow_spans", 1);
            }
        }
        // Hot path: an existing series is found by `&str`, without allocating.
        match self.active.get_mut(key.as_str()) {
            Some(last) => *last = (*last).max(start),
            None => {
                self.active.insert(key.clone(), start);
            }
        }
        let window = self.open.entry(start).or_default();
        if !window.contains_key(key.as_str()) {
            let dims = match self.dims.get(key.as_str()) {
                Some(d) => d.clone(),
                None => {
                    let d: Vec<(String, String)> = if key.starts_with(OVERFLOW_ATTRIBUTE) {
                        vec![(OVERFLOW_ATTRIBUTE.to_string(), "true".to_string())]
                    } else {
                        let mut buf = String::new();
                        self.cfg
                            .dimensions
                            .iter()
                            .filter_map(|d| {
                                buf.clear();
                                Self::write_dim(d, span, resource, &mut buf).then(|| (d.clone(), buf.clone()))
                            })
                            .collect()
                    };
                    let d = Arc::new(d);
                    self.dims.insert(key.clone(), d.clone());
                    d
                }
            };
            window.insert(key.clone(), Series::new(dims, entry));
        }
        let Some(s) = window.get_mut(key.as_str()) else { return };
        let is_error = span.status.as_ref().is_some_and(|st| st.code == StatusCode::Error as i32)
            || self.cfg.error_rules.iter().any(|r| r.matches(span));
        self.key = key;

        let duration = span.end_time_unix_nano.saturating_sub(span.start_time_unix_nano) as f64 / 1e9;
        s.calls += 1;
        if is_error {
            s.errors += 1;
        }
        s.sketch.add(duration);
        s.buckets[bucket(&DURATION_BUCKETS, duration)] += 1;
        s.sum_s += duration;
        if let Some(t) = tokens(&span.attributes) {
            for (i, v) in [t.input, t.output, t.cache_read, t.cache_creation, t.reasoning].into_iter().enumerate() {
                s.tokens[i] += v;
            }
            s.token_hist[0].add(t.input as f64);
            s.token_hist[1].add(t.output as f64);
        }
        if let Some(c) = attr_f64(&span.attributes, &self.cfg.cost_attribute) {
            s.cost += c;
        } else if matches!(
            otterline_model::attrs::attr(&span.attributes, otterline_model::names::cost::UNPRICED),
            Some(any_value::Value::BoolValue(true))
        ) {
            s.unpriced += 1;
        }
        if let Some(q) = attr_f64(&span.attributes, &self.cfg.quality_attribute) {
            s.quality.0 += q;
            s.quality.1 += 1;
        }
        if let Some(q) = attr_f64(&span.attributes, &self.cfg.satisfaction_attribute) {
            s.satisfaction.0 += q;
            s.satisfaction.1 += 1;
        }
    }

    /// Closes windows that can no longer receive spans (or all of them).
    fn close(&mut self, all: bool, out: &mut Vec<Batch>) {
        let limit =
            if all { i64::MAX } else { self.watermark.saturating_sub(self.lateness_ns).saturating_sub(self.window_ns) };
        let starts: Vec<i64> = self.open.range(..=limit).map(|(s, _)| *s).collect();
        if starts.is_empty() {
            // Nothing closed: nothing to emit and no reason to look for idle series.
            return;
        }
        for start in starts {
            if let Some(series) = self.open.remove(&start) {
                if let Some(b) = self.emit(start, series) {
                    out.push(b);
                }
            }
            self.closed_before = self.closed_before.max(start + self.window_ns);
        }
        // Expire idle series.
        let horizon = self.closed_before.saturating_sub(self.cfg.series_idle_timeout.as_nanos() as i64);
        self.active.retain(|_, last| *last >= horizon);
        let active = &self.active;
        let open = &self.open;
        self.dims.retain(|k, _| active.contains_key(k) || open.values().any(|w| w.contains_key(k)));
    }

    fn emit(&self, start: i64, series: HashMap<String, Series>) -> Option<Batch> {
        if series.is_empty() {
            return None;
        }
        let end = start + self.window_ns;
        let secs = self.window_ns as f64 / 1e9;
        // One ResourceMetrics per service.
        let mut by_service: BTreeMap<String, Vec<Series>> = BTreeMap::new();
        for s in series.into_values() {
            let svc = s.dims.iter().find(|(k, _)| k == an::SERVICE_NAME).map(|(_, v)| v.clone()).unwrap_or_default();
            by_service.entry(svc).or_default().push(s);
        }
        let mut resource_metrics = Vec::new();
        for (svc, mut list) in by_service {
            list.sort_by(|a, b| a.dims.cmp(&b.dims));
            resource_metrics.push(ResourceMetrics {
                resource: Some(Resource {
                    attributes: if svc.is_empty() { vec![] } else { vec![kv_str(an::SERVICE_NAME, svc.as_str())] },
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(otterline_model::otlp::scope(scope::AGGREGATE)),
                    metrics: metrics_for(&list, start, end, secs),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        Some(Batch::Metrics(ExportMetricsServiceRequest { resource_metrics }))
    }
}

fn point_attrs(s: &Series) -> Vec<KeyValue> {
    let attrs = s.dims.iter().filter(|(k, _)| k != an::SERVICE_NAME);
    attrs
        .map(|(k, v)| match k.as_str() {
            "status" => kv_str(an::OTEL_STATUS_CODE, v.as_str()),
            OVERFLOW_ATTRIBUTE => kv_bool(k.as_str(), true),
            _ => kv_str(k.as_str(), v.as_str()),
        })
        .chain(std::iter::once(kv_bool(an::OTTERLINE_SPAN_ENTRY, s.entry)))
        .collect()
}

fn with(mut attrs: Vec<KeyValue>, k: &str, v: &str) -> Vec<KeyValue> {
    attrs.push(kv_str(k, v));
    attrs
}

const DELTA: i32 = AggregationTemporality::Delta as i32;

fn number(attrs: Vec<KeyValue>, start: i64, end: i64, v: number_data_point::Value) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start as u64,
        time_unix_nano: end as u64,
        value: Some(v),
        ..Default::default()
    }
}

fn sum_metric(name: &str, unit: &str, desc: &str, points: Vec<NumberDataPoint>) -> Option<Metric> {
    (!points.is_empty()).then(|| Metric {
        name: name.into(),
        unit: unit.into(),
        description: desc.into(),
        data: Some(metric::Data::Sum(Sum { data_points: points, aggregation_temporality: DELTA, is_monotonic: true })),
        ..Default::default()
    })
}

fn gauge_metric(name: &str, unit: &str, desc: &str, points: Vec<NumberDataPoint>) -> Option<Metric> {
    (!points.is_empty()).then(|| Metric {
        name: name.into(),
        unit: unit.into(),
        description: desc.into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: points })),
        ..Default::default()
    })
}

fn metrics_for(list: &[Series], start: i64, end: i64, secs: f64) -> Vec<Metric> {
    use number_data_point::Value::{AsDouble, AsInt};
    let mut calls = Vec::new();
    let mut errors = Vec::new();
    let mut hist = Vec::new();
    let mut summary = Vec::new();
    let mut mean = Vec::new();
    let mut throughput = Vec::new();
    let mut tokens = Vec::new();
    let mut token_hist = Vec::new();
    let mut cost = Vec::new();
    let mut unpriced = Vec::new();
    let mut quality = Vec::new();
    let mut satisfaction = Vec::new();
    for s in list {
        let a = point_attrs(s);
        calls.push(number(a.clone(), start, end, AsInt(s.calls as i64)));
        errors.push(number(a.clone(), start, end, AsInt(s.errors as i64)));
        let (min, max) = (s.sketch.min().unwrap_or(0.0), s.sketch.max().unwrap_or(0.0));
        hist.push(HistogramDataPoint {
            attributes: a.clone(),
            start_time_unix_nano: start as u64,
            time_unix_nano: end as u64,
            count: s.calls,
            sum: Some(s.sum_s),
            bucket_counts: s.buckets.to_vec(),
            explicit_bounds: DURATION_BUCKETS.to_vec(),
            min: Some(min),
            max: Some(max),
            ..Default::default()
        });
        summary.push(SummaryDataPoint {
            attributes: a.clone(),
            start_time_unix_nano: start as u64,
            time_unix_nano: end as u64,
            count: s.calls,
            sum: s.sum_s,
            quantile_values: QUANTILES
                .iter()
                .map(|q| ValueAtQuantile { quantile: *q, value: s.sketch.quantile(*q).ok().flatten().unwrap_or(0.0) })
                .collect(),
            ..Default::default()
        });
        mean.push(number(a.clone(), start, end, AsDouble(s.sum_s / s.calls.max(1) as f64)));
        throughput.push(number(a.clone(), start, end, AsDouble(s.calls as f64 / secs)));
        for (i, ty) in TOKEN_TYPES.iter().enumerate() {
            if s.tokens[i] != 0 {
                tokens.push(number(with(a.clone(), an::GEN_AI_TOKEN_TYPE, ty), start, end, AsInt(s.tokens[i])));
            }
        }
        for (i, ty) in ["input", "output"].iter().enumerate() {
            let t = &s.token_hist[i];
            if t.count > 0 {
                token_hist.push(HistogramDataPoint {
                    attributes: with(a.clone(), an::GEN_AI_TOKEN_TYPE, ty),
                    start_time_unix_nano: start as u64,
                    time_unix_nano: end as u64,
                    count: t.count,
                    sum: Some(t.sum),
                    bucket_counts: t.buckets.to_vec(),
                    explicit_bounds: TOKEN_BUCKETS.to_vec(),
                    min: Some(t.min),
                    max: Some(t.max),
                    ..Default::default()
                });
            }
        }
        if s.cost != 0.0 {
            cost.push(number(a.clone(), start, end, AsDouble(s.cost)));
        }
        if s.unpriced > 0 {
            unpriced.push(number(a.clone(), start, end, AsInt(s.unpriced as i64)));
        }
        if s.quality.1 > 0 {
            quality.push(number(a.clone(), start, end, AsDouble(s.quality.0 / s.quality.1 as f64)));
        }
        if s.satisfaction.1 > 0 {
            satisfaction.push(number(a, start, end, AsDouble(s.satisfaction.0 / s.satisfaction.1 as f64)));
        }
    }
    let hist_metric = |name: &str, unit: &str, desc: &str, points: Vec<HistogramDataPoint>| {
        (!points.is_empty()).then(|| Metric {
            name: name.into(),
            unit: unit.into(),
            description: desc.into(),
            data: Some(metric::Data::Histogram(Histogram { data_points: points, aggregation_temporality: DELTA })),
            ..Default::default()
        })
    };
    [
        sum_metric(mn::CALLS, "{call}", "Calls that ended in the window", calls),
        sum_metric(mn::ERRORS, "{call}", "Calls with status ERROR (or matching an error rule)", errors),
        hist_metric(mn::GEN_AI_OPERATION_DURATION, "s", "Duration of the calls", hist),
        Some(Metric {
            name: mn::DURATION_SUMMARY.into(),
            unit: "s".into(),
            description: "Duration percentiles (DDSketch, 1% relative error); quantile 0 is the minimum, 1 the maximum"
                .into(),
            data: Some(metric::Data::Summary(Summary { data_points: summary })),
            ..Default::default()
        }),
        gauge_metric(mn::DURATION_MEAN, "s", "Mean duration of the calls", mean),
        gauge_metric(mn::THROUGHPUT, "{call}/s", "Calls per second over the window", throughput),
        sum_metric(mn::TOKEN_USAGE, "{token}", "Tokens by gen_ai.token.type (input includes cached tokens)", tokens),
        hist_metric(mn::GEN_AI_TOKEN_USAGE, "{token}", "Input and output tokens per call", token_hist),
        sum_metric(mn::COST, "USD", "Cost of the calls (from the cost attribute)", cost),
        sum_metric(
            mn::UNPRICED_CALLS,
            "{call}",
            "Calls without a price (model missing from the price table)",
            unpriced,
        ),
        gauge_metric(mn::QUALITY_SCORE, "1", "Mean quality score of the calls that carry one", quality),
        gauge_metric(mn::USER_SATISFACTION, "1", "Mean user satisfaction of the calls that carry one", satisfaction),
    ]
    .into_iter()
    .flatten()
    .collect()
}

impl Processor for AggregateProcessor {
    fn attach(&mut self, health: Arc<ComponentHealth>) {
        self.health = Some(health);
    }

    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        if let Batch::Traces(r) = &batch {
            self.now_ns = otterline_core::time::now_unix_nanos() as i64;
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        self.add(span, rs.resource.as_ref());
                    }
                }
            }
            self.last_arrival = Some(Instant::now());
            self.idle_deadline = Some(Instant::now() + self.cfg.window + self.cfg.allowed_lateness);
            if !self.cfg.drop_spans {
                out.push(batch);
            }
            self.close(false, out);
        } else {
            out.push(batch);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.open.is_empty() {
            return None;
        }
        self.idle_deadline
    }

    fn on_timer(&mut self, now: Instant, out: &mut Vec<Batch>) {
        // Nothing has arrived for a whole window plus lateness: close every window that
        // real time has passed (all of them when replaying an archive); a window ahead of
        // the wall clock (a clock running ahead) closes when real time gets there.
        self.now_ns = otterline_core::time::now_unix_nanos() as i64;
        self.watermark = self.watermark.max(self.now_ns);
        self.close(false, out);
        self.idle_deadline = self.open.keys().next().map(|&start| {
            let due = start + self.window_ns + self.lateness_ns - self.now_ns;
            now + Duration::from_nanos(due.max(1_000_000_000) as u64)
        });
    }

    fn shutdown(&mut self, out: &mut Vec<Batch>) {
        self.close(true, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::common::AnyValue;
    use otterline_core::pdata::trace::{span::SpanKind, ResourceSpans, ScopeSpans, Status};
    use otterline_core::pdata::ExportTraceServiceRequest;

    const W: u64 = 60_000_000_000;
    const T0: u64 = 1_763_874_000_000_000_000; // a window boundary

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn span(end: u64, dur_ns: u64, model: &str, user: &str, error: bool) -> Span {
        Span {
            name: "chat".into(),
            start_time_unix_nano: end - dur_ns,
            end_time_unix_nano: end,
            attributes: vec![
                kv("gen_ai.operation.name", any_value::Value::StringValue("chat".into())),
                kv("gen_ai.request.model", any_value::Value::StringValue(model.into())),
                kv("user.id", any_value::Value::StringValue(user.into())),
                kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(100)),
                kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(20)),
                kv("gen_ai.usage.cost", any_value::Value::DoubleValue(0.001)),
                kv("quality.score", any_value::Value::DoubleValue(if error { 0.2 } else { 0.8 })),
            ],
            status: Some(Status { code: if error { 2 } else { 1 }, message: String::new() }),
            ..Default::default()
        }
    }

    fn batch(spans: Vec<Span>) -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![kv_str("service.name", "rag")], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        })
    }

    fn proc_with(f: impl FnOnce(&mut AggregateConfig)) -> AggregateProcessor {
        let mut cfg = AggregateConfig { allowed_lateness: Duration::from_secs(10), ..Default::default() };
        f(&mut cfg);
        let extra = std::mem::take(&mut cfg.extra_dimensions);
        cfg.dimensions.extend(extra);
        AggregateProcessor::new(cfg)
    }

    /// All metric points named `name` across `batches`: (point attributes, metric).
    fn find<'a>(batches: &'a [Batch], name: &str) -> Vec<&'a Metric> {
        batches
            .iter()
            .filter_map(|b| match b {
                Batch::Metrics(r) => Some(r),
                _ => None,
            })
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .filter(|m| m.name == name)
            .collect()
    }

    /// The values of a sum or gauge, as f64.
    fn doubles(m: &Metric) -> Vec<f64> {
        let pts = match &m.data {
            Some(metric::Data::Sum(s)) => &s.data_points,
            Some(metric::Data::Gauge(g)) => &g.data_points,
            _ => panic!("{} is not a sum or gauge", m.name),
        };
        pts.iter()
            .map(|p| match p.value {
                Some(number_data_point::Value::AsDouble(d)) => d,
                Some(number_data_point::Value::AsInt(i)) => i as f64,
                None => f64::NAN,
            })
            .collect()
    }

    /// The same, for integer counters.
    fn ints(m: &Metric) -> Vec<i64> {
        doubles(m).into_iter().map(|v| v as i64).collect()
    }

    #[test]
    fn counts_sums_exact_and_percentiles_within_the_sketch_error() {
        let mut p = proc_with(|_| {});
        // 10,000 durations with a heavy tail: 5 ms .. ~30 s, deterministic.
        let mut durs = Vec::new();
        let mut x: u64 = 12345;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x % 1_000_000) as f64 / 1_000_000.0;
            durs.push((0.005 * (u * 8.7).exp() * 1e9) as u64);
        }
        let mut out = Vec::new();
        for chunk in durs.chunks(500) {
            let spans =
                chunk.iter().enumerate().map(|(i, d)| span(T0 + 1 + i as u64, *d, "gpt-4o", "u", false)).collect();
            p.process(batch(spans), &mut out);
        }
        assert_eq!(out.len(), 20, "spans pass through; no window closed yet");
        p.shutdown(&mut out);
        let calls = find(&out, "otterline.operation.calls");
        assert_eq!(ints(calls[0]), vec![10_000]);
        assert_eq!(ints(find(&out, "otterline.operation.errors")[0]), vec![0]);
        assert_eq!(ints(find(&out, "otterline.token.usage")[0]), vec![1_000_000, 200_000]);
        assert!((doubles(find(&out, "otterline.operation.cost")[0])[0] - 10.0).abs() < 1e-9);
        assert!((doubles(find(&out, "otterline.quality.score")[0])[0] - 0.8).abs() < 1e-12);
        assert!((doubles(find(&out, "otterline.operation.throughput")[0])[0] - 10_000.0 / 60.0).abs() < 1e-9);

        let mut secs: Vec<f64> = durs.iter().map(|d| *d as f64 / 1e9).collect();
        secs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let Some(metric::Data::Histogram(h)) = &find(&out, "gen_ai.client.operation.duration")[0].data else {
            panic!()
        };
        let hp = &h.data_points[0];
        assert_eq!(hp.count, 10_000);
        assert_eq!(hp.bucket_counts.iter().sum::<u64>(), 10_000);
        assert!((hp.sum.unwrap() - secs.iter().sum::<f64>()).abs() < 1e-6);
        assert_eq!((hp.min.unwrap(), hp.max.unwrap()), (secs[0], secs[9_999]));
        let Some(metric::Data::Summary(sm)) = &find(&out, "otterline.operation.duration.summary")[0].data else {
            panic!()
        };
        for qv in &sm.data_points[0].quantile_values {
            let exact = secs[((qv.quantile * 9_999.0) as usize).min(9_999)];
            let rel = (qv.value - exact).abs() / exact;
            assert!(rel <= SKETCH_ALPHA + 1e-9, "q{}: sketch {} vs exact {exact} ({rel})", qv.quantile, qv.value);
        }
        let mean = doubles(find(&out, "otterline.operation.duration.mean")[0])[0];
        assert!((mean - secs.iter().sum::<f64>() / 10_000.0).abs() < 1e-9);
    }

    fn calls(batches: &[Batch]) -> i64 {
        find(batches, "otterline.operation.calls").iter().flat_map(|m| ints(m)).sum()
    }

    /// A millisecond ago, as a live sender's spans would end.
    fn live() -> u64 {
        otterline_core::time::now_unix_nanos() - 1_000_000
    }

    #[test]
    fn a_span_from_a_clock_years_ahead_is_set_aside_and_poisons_nothing() {
        let mut p = proc_with(|_| {});
        let health = Arc::new(ComponentHealth::new("processor", "aggregate".into()));
        p.attach(health.clone());
        let mut out = Vec::new();
        p.process(batch(vec![span(live(), 1_000_000, "m", "u", false)]), &mut out);
        let three_years = 3 * 365 * 86_400 * 1_000_000_000u64;
        p.process(batch(vec![span(live() + three_years, 1_000_000, "m", "u", false)]), &mut out);
        for _ in 0..5 {
            p.process(batch(vec![span(live(), 1_000_000, "m", "u", false)]), &mut out);
        }
        p.shutdown(&mut out);
        assert_eq!(calls(&out), 6, "every steady span is aggregated; the future one is not");
        let extra = health.extra();
        assert_eq!(extra.get("future_spans"), Some(&1));
        assert_eq!(extra.get("late_spans"), None);
        let now = otterline_core::time::now_unix_nanos();
        let starts: Vec<u64> = find(&out, "otterline.operation.calls")
            .iter()
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => Some(s.data_points.iter().map(|d| d.start_time_unix_nano)),
                _ => None,
            })
            .flatten()
            .collect();
        assert!(starts.iter().all(|&s| s <= now), "no window in the future: {starts:?}");
    }

    #[test]
    fn a_span_minutes_ahead_gets_its_own_window_and_makes_no_other_span_late() {
        let mut p = proc_with(|_| {});
        let health = Arc::new(ComponentHealth::new("processor", "aggregate".into()));
        p.attach(health.clone());
        let mut out = Vec::new();
        p.process(batch(vec![span(live() + 7 * W, 1_000_000, "ahead", "u", false)]), &mut out);
        for _ in 0..4 {
            p.process(batch(vec![span(live(), 1_000_000, "m", "u", false)]), &mut out);
        }
        // The idle timer closes only what real time has passed: the window 7 minutes
        // ahead stays open and the timer waits for real time to get there.
        p.on_timer(Instant::now(), &mut out);
        assert!(p.open.keys().any(|&s| s as u64 > otterline_core::time::now_unix_nanos()));
        assert!(p.next_deadline().is_some_and(|d| d > Instant::now()));
        p.shutdown(&mut out);
        assert_eq!(calls(&out), 5, "the span from the clock ahead is counted in its own window, the others in theirs");
        assert_eq!(health.extra().get("late_spans"), None);
    }

    #[test]
    fn windows_close_on_event_time_and_late_spans_are_counted_out() {
        let mut p = proc_with(|_| {});
        let mut out = Vec::new();
        p.process(
            batch(vec![span(T0 + 1_000, 1_000_000, "m", "u", false), span(T0 + W - 1, 1_000_000, "m", "u", true)]),
            &mut out,
        );
        // A span in the next window, but within the lateness of the first: nothing closes.
        p.process(batch(vec![span(T0 + W + 5_000_000_000, 1_000_000, "m", "u", false)]), &mut out);
        assert!(find(&out, "otterline.operation.calls").is_empty());
        // Past window end + lateness: the first window closes (two series: OK and ERROR).
        p.process(batch(vec![span(T0 + W + 11_000_000_000, 1_000_000, "m", "u", false)]), &mut out);
        let calls = find(&out, "otterline.operation.calls");
        assert_eq!(calls.len(), 1);
        let Some(metric::Data::Sum(s)) = &calls[0].data else { panic!() };
        assert_eq!(s.data_points.len(), 2);
        assert!(s.data_points.iter().all(|p| p.start_time_unix_nano == T0 && p.time_unix_nano == T0 + W));
        assert_eq!(s.aggregation_temporality, AggregationTemporality::Delta as i32);
        let err = s
            .data_points
            .iter()
            .find(|p| {
                p.attributes.iter().any(|a| {
                    a.key == "otel.status_code"
                        && a.value == Some(AnyValue { value: Some(any_value::Value::StringValue("ERROR".into())) })
                })
            })
            .unwrap();
        assert_eq!(err.value, Some(number_data_point::Value::AsInt(1)));
        // A span for the closed window is late: not aggregated.
        let mut more = Vec::new();
        p.process(batch(vec![span(T0 + 2, 1_000_000, "m", "u", false)]), &mut more);
        p.shutdown(&mut more);
        let late_calls: i64 = find(&more, "otterline.operation.calls").iter().flat_map(|m| ints(m)).sum();
        assert_eq!(late_calls, 2, "only the two spans of the second window");
    }

    #[test]
    fn cardinality_limit_sends_new_series_to_one_overflow_series() {
        let mut p = proc_with(|c| {
            c.cardinality_limit = 3;
            c.extra_dimensions = vec!["user.id".into()];
        });
        let mut out = Vec::new();
        let spans =
            (0..5).flat_map(|u| (0..2).map(move |_| span(T0 + 10, 1_000, "m", &format!("user-{u}"), false))).collect();
        p.process(batch(spans), &mut out);
        assert_eq!(p.active_series(), 4, "3 series and the overflow series");
        p.shutdown(&mut out);
        let points: Vec<&NumberDataPoint> = find(&out, "otterline.operation.calls")
            .into_iter()
            .flat_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.iter(),
                _ => [].iter(),
            })
            .collect();
        assert_eq!(points.len(), 4);
        let overflow: Vec<&&NumberDataPoint> =
            points.iter().filter(|p| p.attributes.iter().any(|a| a.key == OVERFLOW_ATTRIBUTE)).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].value, Some(number_data_point::Value::AsInt(4)));
        let keys: Vec<&str> = overflow[0].attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, [OVERFLOW_ATTRIBUTE, an::OTTERLINE_SPAN_ENTRY], "overflow drops the other dimensions");
    }

    #[test]
    fn entry_spans_are_marked_so_service_red_counts_a_nested_call_once() {
        let mut p = proc_with(|_| {});
        let mut out = Vec::new();
        // An HTTP server span around a chat client span, and a lone root chat span.
        let mut server = span(T0 + 10, 2_000, "m", "u", false);
        server.name = "POST /ask".into();
        server.kind = SpanKind::Server as i32;
        let mut nested = span(T0 + 9, 1_000, "m", "u", false);
        nested.kind = SpanKind::Client as i32;
        nested.parent_span_id = vec![1; 8];
        let mut root = span(T0 + 8, 1_000, "m", "u", false);
        root.kind = SpanKind::Client as i32;
        p.process(batch(vec![server, nested, root]), &mut out);
        p.shutdown(&mut out);
        let mut seen: Vec<(i64, bool)> = Vec::new();
        for m in find(&out, "otterline.operation.calls") {
            otterline_model::aggregate::points(m, |pt| {
                if let otterline_model::aggregate::Value::Calls(v) = pt.value {
                    seen.push((v as i64, pt.is_entry()));
                }
            });
        }
        seen.sort();
        // `chat`: 1 nested (not entry) + 1 root (entry) are two series; the server span one.
        assert_eq!(seen, vec![(1, false), (1, true), (1, true)]);
        let entry_calls: i64 = seen.iter().filter(|(_, e)| *e).map(|(n, _)| n).sum();
        assert_eq!(entry_calls, 2, "the service handled two requests, not three");
    }

    #[test]
    fn idle_timer_and_drop_spans() {
        let mut p = proc_with(|c| c.drop_spans = true);
        let mut out = Vec::new();
        assert!(p.next_deadline().is_none());
        p.process(batch(vec![span(T0 + 10, 1_000, "m", "u", false)]), &mut out);
        assert!(out.is_empty(), "spans are dropped, the window is still open");
        let deadline = p.next_deadline().expect("a deadline while a window is open");
        assert!(deadline > Instant::now() + Duration::from_secs(60));
        p.on_timer(deadline, &mut out);
        assert_eq!(ints(find(&out, "otterline.operation.calls")[0]), vec![1]);
        assert!(p.next_deadline().is_none());
    }
}
