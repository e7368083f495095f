//! The dashboard's state: fixed-size rings of per-slot figures per service, recent anomaly
//! events, open episodes and the latest host readings, fed from pipeline output.
//!
//! What it reads (everything else is skipped after a name check):
//! - `aggregate` metrics: `otterline.operation.calls`, `.errors`, `.cost`, `.unpriced_calls`,
//!   `otterline.token.usage` (input and output) and the p95 of
//!   `otterline.operation.duration.summary`, summed per service (entry spans only for calls,
//!   errors and latency; p95 weighted by calls) and per model;
//! - spans, for the window in progress: each service's and model's current slot counts the
//!   calls, errors, cost and tokens of the spans as they arrive (no latency), so a new
//!   service shows within seconds; when the window's `aggregate` metrics arrive they replace
//!   those provisional figures (a slot is "live" until then);
//! - `health` metrics: `otterline.health.score` per service and overall;
//! - anomaly events (`otterline.anomaly`, `otterline.anomaly.resolved`, budgets included);
//! - `hostmetrics` metrics: CPU, memory, load, disk and network I/O, the process.
//!
//! Memory: one [`Slot`] (32 bytes) per slot per service and per model, allocated in full on
//! its first point, so `retention / resolution × 32 B` each (45 KiB for 24 h of minutes).
//! Services (and models) beyond `max_services` are counted in the overall series only. A point is placed
//! by its window's end (`time_unix_nano − 1`), so a window lands in the slot it started in
//! when windows and slots are the same length.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;

use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::metrics::{metric, Metric, NumberDataPoint};
use otterline_core::pdata::service_name;
use otterline_core::Batch;
use otterline_model::aggregate::{self, Value};
use otterline_model::attrs::attr_str;
use otterline_model::event::{state, AnomalyEvent};
use otterline_model::names;

/// One slot of one series. Empty: no calls, no latency weight, NaN health.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub calls: u32,
    pub errors: u32,
    /// Calls behind `p95_sum`.
    pub lat_n: u32,
    /// Σ p95 (s) × calls over the series' summaries in the slot.
    pub p95_sum: f32,
    /// USD.
    pub cost: f32,
    /// The last health score reported for the slot, NaN without one.
    pub health: f32,
    /// Input and output tokens.
    pub tokens: u32,
    /// Calls without a price (model missing from the price table).
    pub unpriced: u32,
}

impl Slot {
    pub const EMPTY: Slot =
        Slot { calls: 0, errors: 0, lat_n: 0, p95_sum: 0.0, cost: 0.0, health: f32::NAN, tokens: 0, unpriced: 0 };

    pub fn is_empty(&self) -> bool {
        self.calls == 0 && self.lat_n == 0 && self.cost == 0.0 && self.health.is_nan() && self.tokens == 0
    }

    /// Drops the figures (keeps the health score): provisional live counts being replaced.
    fn clear_figures(&mut self) {
        *self = Slot { health: self.health, ..Slot::EMPTY };
    }
}

/// A ring of slots; slot `s` lives at `s % len`. Slots between the old and a new head are
/// cleared when the head moves, so every slot within `len` of the head is current.
#[derive(Default)]
pub struct Series {
    head: u64,
    ring: Vec<Slot>,
    /// The newest health score: (slot, score, status).
    pub latest_health: Option<(u64, f32, HealthStatus)>,
    /// The newest slot with `aggregate` figures: live spans for it or older are not counted.
    agg_head: Option<u64>,
    /// Slots from here on hold provisional live counts, until their aggregate arrives.
    live_from: Option<u64>,
}

impl Series {
    fn write(&mut self, slot: u64, len: usize) -> Option<&mut Slot> {
        let n = len as u64;
        if self.ring.is_empty() {
            self.ring = vec![Slot::EMPTY; len];
            self.head = slot;
        } else if slot > self.head {
            let clear_from = self.head.saturating_add(1).max(slot.saturating_sub(n - 1));
            for s in clear_from..=slot {
                self.ring[(s % n) as usize] = Slot::EMPTY;
            }
            self.head = slot;
        } else if self.head - slot >= n {
            return None;
        }
        Some(&mut self.ring[(slot % n) as usize])
    }

    /// The slot for an `aggregate` figure: provisional live counts in it are dropped first.
    fn write_aggregate(&mut self, slot: u64, len: usize) -> Option<&mut Slot> {
        let replace = self.live_from.is_some_and(|l| slot >= l);
        self.agg_head = Some(self.agg_head.map_or(slot, |h| h.max(slot)));
        if replace {
            self.live_from = Some(slot + 1);
        }
        let s = self.write(slot, len)?;
        if replace {
            s.clear_figures();
        }
        Some(s)
    }

    /// The slot for a live span, unless its window's aggregate is already in.
    fn write_live(&mut self, slot: u64, len: usize) -> Option<&mut Slot> {
        if self.agg_head.is_some_and(|h| slot <= h) {
            return None;
        }
        self.live_from = Some(self.live_from.map_or(slot, |l| l.min(slot)));
        self.write(slot, len)
    }

    pub fn get(&self, slot: u64) -> Option<&Slot> {
        let n = self.ring.len() as u64;
        if n == 0 || slot > self.head || self.head - slot >= n {
            return None;
        }
        Some(&self.ring[(slot % n) as usize])
    }

    /// Bytes held by the ring.
    pub fn heap_bytes(&self) -> usize {
        self.ring.capacity() * std::mem::size_of::<Slot>()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Critical,
    Unknown,
}

impl HealthStatus {
    fn parse(s: Option<&str>) -> HealthStatus {
        match s {
            Some("healthy") => HealthStatus::Healthy,
            Some("degraded") => HealthStatus::Degraded,
            Some("critical") => HealthStatus::Critical,
            _ => HealthStatus::Unknown,
        }
    }
}

/// An anomaly or budget event as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Arrival order, increasing.
    pub seq: u64,
    pub time_unix_ms: u64,
    pub service: String,
    /// `otterline.anomaly` or `otterline.anomaly.resolved`.
    pub event: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub severity: String,
    pub state: String,
    pub series: String,
    pub metric: String,
    pub episode_id: i64,
    pub observed: Option<f64>,
    pub baseline: Option<f64>,
    pub threshold: Option<f64>,
    pub started_at: String,
    pub suggestion: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resolution: String,
}

/// The latest host and process readings from `hostmetrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Host {
    pub time_unix_ms: u64,
    pub host_name: String,
    /// Mean over logical CPUs, 0-1.
    pub cpu_utilization: Option<f64>,
    pub memory_utilization: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
    pub load_1m: Option<f64>,
    pub filesystem_utilization: Option<f64>,
    pub disk_bytes_per_second: Option<f64>,
    pub network_bytes_per_second: Option<f64>,
    pub process_cpu_utilization: Option<f64>,
    pub process_memory_bytes: Option<f64>,
    /// Recent CPU and memory utilisation readings, oldest first, for sparklines.
    pub cpu_history: VecDeque<f64>,
    pub memory_history: VecDeque<f64>,
    #[serde(skip)]
    counters: HashMap<&'static str, (u64, f64)>,
}

const HOST_HISTORY: usize = 120;

/// Models with their own series (at most `max_services` too): a sender inventing model names
/// cannot grow the store past this many rings.
pub const MAX_MODELS: usize = 256;

/// Limits of a [`Store`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub resolution_ns: u64,
    pub slots: usize,
    pub max_services: usize,
    pub events: usize,
}

/// Counts of what the store skipped.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Skips {
    /// Points older than the retention.
    pub old_points: u64,
    /// Points more than five minutes ahead of the clock.
    pub future_points: u64,
    /// Points of services beyond `max_services` (kept in the overall series).
    pub services_over_limit: u64,
}

pub struct Store {
    pub limits: Limits,
    pub overall: Series,
    pub services: HashMap<String, Series>,
    /// Per `gen_ai.request.model`: every call of the model, nested or not.
    pub models: HashMap<String, Series>,
    pub events: VecDeque<Event>,
    /// Open episodes by (service, series, type, episode id).
    pub open: BTreeMap<(String, String, String, i64), Event>,
    pub host: Host,
    pub skips: Skips,
    /// Bumped by every batch that changed something.
    pub version: u64,
    /// The newest slot holding aggregate data.
    pub last_slot: Option<u64>,
    seq: u64,
}

/// Which figure a metric point feeds.
#[derive(Clone, Copy)]
enum Field {
    Calls,
    Errors,
    Cost,
    Tokens,
    Unpriced,
}

/// Clock for the store, in ns since the epoch (a parameter so tests and archive reads can
/// choose it).
pub type Now = u64;

impl Store {
    pub fn new(limits: Limits) -> Store {
        Store {
            limits,
            overall: Series::default(),
            services: HashMap::new(),
            models: HashMap::new(),
            events: VecDeque::new(),
            open: BTreeMap::new(),
            host: Host::default(),
            skips: Skips::default(),
            version: 0,
            last_slot: None,
            seq: 0,
        }
    }

    pub fn slot_of(&self, ts_ns: u64) -> u64 {
        ts_ns.saturating_sub(1) / self.limits.resolution_ns.max(1)
    }

    /// Reads one batch of pipeline output.
    pub fn ingest(&mut self, batch: &Batch, now: Now) {
        let before = (self.version, self.seq);
        match batch {
            Batch::Metrics(req) => {
                for rm in &req.resource_metrics {
                    let service = service_name(rm.resource.as_ref()).unwrap_or("");
                    let res_attrs = rm.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or(&[]);
                    for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
                        self.metric(service, res_attrs, m, now);
                    }
                }
            }
            Batch::Logs(req) => {
                for rl in &req.resource_logs {
                    let service = service_name(rl.resource.as_ref()).unwrap_or("");
                    for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                        if let Some(e) = AnomalyEvent::from_log_record(r) {
                            self.event(service, e, now);
                        }
                    }
                }
            }
            Batch::Traces(req) => self.spans(req, now),
        }
        if (self.version, self.seq) != before {
            self.version = self.version.max(before.0) + 1;
        }
    }

    fn metric(&mut self, service: &str, res_attrs: &[KeyValue], m: &Metric, now: Now) {
        match (m.name.as_str(), &m.data) {
            (name, _) if aggregate::role(name) == aggregate::Role::Read => aggregate::points(m, |p| {
                let model = attr_str(p.attributes, names::attr::GEN_AI_REQUEST_MODEL);
                // Service-level calls, errors and latency count entry spans only; cost and
                // tokens count every span (they are on the LLM calls, often nested). Models
                // count every call of the model.
                let per_call = matches!(p.value, Value::Calls(_) | Value::Errors(_) | Value::Duration { .. });
                let service_too = p.is_entry() || !per_call;
                let (v, field) = match p.value {
                    Value::Calls(v) => (v, Field::Calls),
                    Value::Errors(v) => (v, Field::Errors),
                    Value::Cost(v) => (v, Field::Cost),
                    Value::Unpriced(v) => (v, Field::Unpriced),
                    Value::Tokens { kind: "input" | "output", count } => (count, Field::Tokens),
                    Value::Duration { count, p95, .. } => {
                        let n = count.min(u32::MAX as u64) as u32;
                        let v = p95 as f32 * n as f32;
                        self.at(service_too.then_some(service), model, p.end, now, |s| {
                            s.lat_n = s.lat_n.saturating_add(n);
                            s.p95_sum += v;
                        });
                        return;
                    }
                    _ => return,
                };
                self.at(service_too.then_some(service), model, p.end, now, |s| add(s, field, v));
            }),
            (names::metric::HEALTH_SCORE, Some(metric::Data::Gauge(g))) => {
                for p in &g.data_points {
                    let svc = attr_str(&p.attributes, names::attr::SERVICE_NAME);
                    let status = HealthStatus::parse(attr_str(&p.attributes, names::health::STATUS));
                    let v = value(p) as f32;
                    let slot = self.slot_of(p.time_unix_nano);
                    if !self.accept(slot, now) {
                        continue;
                    }
                    let series = match svc {
                        None => Some(&mut self.overall),
                        Some(name) => {
                            service_series(&mut self.services, &mut self.skips, self.limits.max_services, name)
                        }
                    };
                    if let Some(series) = series {
                        if let Some(s) = series.write(slot, self.limits.slots) {
                            s.health = v;
                        }
                        if series.latest_health.is_none_or(|(t, _, _)| t <= slot) {
                            series.latest_health = Some((slot, v, status));
                        }
                        self.version += 1;
                    }
                }
            }
            (name, data) if name.starts_with("system.") || name.starts_with("process.") => {
                self.host_metric(res_attrs, name, data.as_ref())
            }
            _ => {}
        }
    }

    fn accept(&mut self, slot: u64, now: Now) -> bool {
        let now_slot = self.slot_of(now);
        let ahead = 300_000_000_000u64.div_ceil(self.limits.resolution_ns.max(1));
        if slot > now_slot.saturating_add(ahead) {
            self.skips.future_points += 1;
            return false;
        }
        if slot.saturating_add(self.limits.slots as u64) <= now_slot {
            self.skips.old_points += 1;
            return false;
        }
        true
    }

    /// Applies an `aggregate` figure to the service's and the overall slot (when `service`
    /// is given) and to the model's.
    fn at(&mut self, service: Option<&str>, model: Option<&str>, ts: u64, now: Now, f: impl Fn(&mut Slot)) {
        let slot = self.slot_of(ts);
        if !self.accept(slot, now) {
            return;
        }
        let (len, max) = (self.limits.slots, self.limits.max_services);
        if let Some(service) = service {
            if let Some(s) = self.overall.write_aggregate(slot, len) {
                f(s);
            }
            if let Some(series) = service_series(&mut self.services, &mut self.skips, max, service) {
                if let Some(s) = series.write_aggregate(slot, len) {
                    f(s);
                }
            }
        }
        if let Some(model) = model {
            if let Some(series) = service_series(&mut self.models, &mut self.skips, max.min(MAX_MODELS), model) {
                if let Some(s) = series.write_aggregate(slot, len) {
                    f(s);
                }
            }
        }
        self.last_slot = Some(self.last_slot.map_or(slot, |l| l.max(slot)));
        self.version += 1;
    }

    /// Spans of the window in progress: provisional counts per service and model (one pass
    /// over each span's attributes; no latency, which only the window's summary has).
    fn spans(&mut self, req: &otterline_core::pdata::ExportTraceServiceRequest, now: Now) {
        use otterline_core::pdata::common::any_value::Value as V;
        use otterline_core::pdata::trace::status::StatusCode;
        let (len, max) = (self.limits.slots, self.limits.max_services);
        let mut changed = false;
        for rs in &req.resource_spans {
            let service = service_name(rs.resource.as_ref()).unwrap_or("");
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let slot = span.end_time_unix_nano / self.limits.resolution_ns.max(1);
                if !self.accept(slot, now) {
                    continue;
                }
                let (mut model, mut cost, mut tokens, mut unpriced) = (None, 0.0f64, 0i64, false);
                for kv in &span.attributes {
                    let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else { continue };
                    match (kv.key.as_str(), v) {
                        (names::attr::GEN_AI_REQUEST_MODEL, V::StringValue(m)) => model = Some(m.as_str()),
                        (names::attr::GEN_AI_USAGE_COST, V::DoubleValue(c)) => cost = *c,
                        (names::attr::GEN_AI_USAGE_COST, V::IntValue(c)) => cost = *c as f64,
                        (
                            names::attr::GEN_AI_USAGE_INPUT_TOKENS | names::attr::GEN_AI_USAGE_OUTPUT_TOKENS,
                            V::IntValue(n),
                        ) => tokens += (*n).max(0),
                        (names::cost::UNPRICED, V::BoolValue(b)) => unpriced = *b,
                        _ => {}
                    }
                }
                let entry = aggregate::is_entry_span(span);
                let error = span.status.as_ref().is_some_and(|s| s.code == StatusCode::Error as i32);
                let apply = |s: &mut Slot, call: bool| {
                    if call {
                        s.calls = s.calls.saturating_add(1);
                        s.errors = s.errors.saturating_add(u32::from(error));
                    }
                    s.cost += cost as f32;
                    s.tokens = s.tokens.saturating_add(tokens.min(u32::MAX as i64) as u32);
                    s.unpriced = s.unpriced.saturating_add(u32::from(unpriced));
                };
                if let Some(s) = self.overall.write_live(slot, len) {
                    apply(s, entry);
                }
                if let Some(series) = service_series(&mut self.services, &mut self.skips, max, service) {
                    if let Some(s) = series.write_live(slot, len) {
                        apply(s, entry);
                    }
                }
                if let Some(m) = model {
                    if let Some(series) = service_series(&mut self.models, &mut self.skips, max.min(MAX_MODELS), m) {
                        if let Some(s) = series.write_live(slot, len) {
                            apply(s, true);
                        }
                    }
                }
                self.last_slot = Some(self.last_slot.map_or(slot, |l| l.max(slot)));
                changed = true;
            }
        }
        if changed {
            self.version += 1;
        }
    }

    fn event(&mut self, service: &str, r: AnomalyEvent, now: Now) {
        let time = if r.time_unix_nano > 0 { r.time_unix_nano } else { r.observed_time_unix_nano.max(now) };
        self.seq += 1;
        let event = r.event_name().to_string();
        let e = Event {
            seq: self.seq,
            time_unix_ms: time / 1_000_000,
            service: service.to_string(),
            event,
            kind: r.kind,
            severity: r.severity,
            state: r.state,
            series: r.series,
            metric: r.metric,
            episode_id: r.episode_id,
            observed: r.observed,
            baseline: r.baseline,
            threshold: r.threshold,
            started_at: r.started_at,
            suggestion: if r.suggestion.is_empty() { r.body } else { r.suggestion },
            resolution: r.resolution.unwrap_or_default(),
        };
        let key = (e.service.clone(), e.series.clone(), e.kind.clone(), e.episode_id);
        if e.event == names::event::ANOMALY_RESOLVED || e.state == state::RESOLVED {
            self.open.remove(&key);
        } else {
            self.open.insert(key, e.clone());
        }
        self.events.push_back(e);
        while self.events.len() > self.limits.events {
            self.events.pop_front();
        }
    }

    fn host_metric(&mut self, res_attrs: &[KeyValue], name: &str, data: Option<&metric::Data>) {
        let points: &[NumberDataPoint] = match data {
            Some(metric::Data::Gauge(g)) => &g.data_points,
            Some(metric::Data::Sum(s)) => &s.data_points,
            _ => return,
        };
        let Some(t) = points.iter().map(|p| p.time_unix_nano).max() else { return };
        let h = &mut self.host;
        h.time_unix_ms = h.time_unix_ms.max(t / 1_000_000);
        if let Some(n) = attr_str(res_attrs, names::attr::HOST_NAME) {
            if h.host_name != n {
                h.host_name = n.to_string();
            }
        }
        let sum = || points.iter().map(value).sum::<f64>();
        let with =
            |k: &str, v: &str| points.iter().filter(|p| attr_str(&p.attributes, k) == Some(v)).map(value).sum::<f64>();
        match name {
            "system.cpu.utilization" => {
                let v = sum() / points.len().max(1) as f64;
                h.cpu_utilization = Some(v);
                push(&mut h.cpu_history, v);
            }
            "system.memory.utilization" => {
                let v = if points.len() > 1 { with("system.memory.state", "used") } else { sum() };
                h.memory_utilization = Some(v);
                push(&mut h.memory_history, v);
            }
            "system.memory.usage" => h.memory_used_bytes = Some(with("system.memory.state", "used")),
            "system.memory.limit" => h.memory_limit_bytes = Some(sum()),
            "system.cpu.load_average.1m" => h.load_1m = Some(sum()),
            "system.filesystem.utilization" => {
                h.filesystem_utilization = points.iter().map(value).reduce(f64::max);
            }
            "system.disk.io" => h.disk_bytes_per_second = rate(&mut h.counters, "disk", t, sum()),
            "system.network.io" => h.network_bytes_per_second = rate(&mut h.counters, "network", t, sum()),
            "process.cpu.utilization" => h.process_cpu_utilization = Some(sum()),
            "process.memory.usage" => h.process_memory_bytes = Some(sum()),
            _ => return,
        }
        self.version += 1;
    }

    /// Heap bytes held by the series rings (the bulk of the store).
    pub fn heap_bytes(&self) -> usize {
        let map = |m: &HashMap<String, Series>| {
            m.iter().map(|(k, s)| k.capacity() + s.heap_bytes() + 48).sum::<usize>()
                + m.capacity() * (std::mem::size_of::<String>() + std::mem::size_of::<Series>())
        };
        self.overall.heap_bytes() + map(&self.services) + map(&self.models)
    }
}

fn push(h: &mut VecDeque<f64>, v: f64) {
    h.push_back(v);
    while h.len() > HOST_HISTORY {
        h.pop_front();
    }
}

/// Per-second rate of a cumulative counter between two scrapes.
fn rate(prev: &mut HashMap<&'static str, (u64, f64)>, key: &'static str, t: u64, v: f64) -> Option<f64> {
    let r = match prev.get(key) {
        Some(&(t0, v0)) if t > t0 && v >= v0 => Some((v - v0) / ((t - t0) as f64 / 1e9)),
        _ => None,
    };
    prev.insert(key, (t, v));
    r
}

fn service_series<'a>(
    services: &'a mut HashMap<String, Series>,
    skips: &mut Skips,
    max: usize,
    name: &str,
) -> Option<&'a mut Series> {
    if !services.contains_key(name) {
        if services.len() >= max {
            skips.services_over_limit += 1;
            return None;
        }
        services.insert(name.to_string(), Series::default());
    }
    services.get_mut(name)
}

/// Adds an `aggregate` figure to a slot.
fn add(s: &mut Slot, field: Field, v: f64) {
    let n = v.max(0.0).min(u32::MAX as f64) as u32;
    match field {
        Field::Calls => s.calls = s.calls.saturating_add(n),
        Field::Errors => s.errors = s.errors.saturating_add(n),
        Field::Cost => s.cost += v as f32,
        Field::Tokens => s.tokens = s.tokens.saturating_add(n),
        Field::Unpriced => s.unpriced = s.unpriced.saturating_add(n),
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    otterline_model::otlp::number(p).unwrap_or(0.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use otterline_core::pdata::common::{any_value, AnyValue, KeyValue};
    use otterline_core::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use otterline_core::pdata::resource::Resource;
    use otterline_core::pdata::ExportLogsServiceRequest;
    use otterline_model::names::event::{ANOMALY as EVENT, ANOMALY_RESOLVED as EVENT_RESOLVED};

    pub use crate::testing::{health, kv, window, MIN};
    pub const T0: u64 = 1_700_000_000 / 60 * 60 * 1_000_000_000;

    fn kd(k: &str, v: f64) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::DoubleValue(v)) }),
            ..Default::default()
        }
    }
    fn ki(k: &str, v: i64) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::IntValue(v)) }),
            ..Default::default()
        }
    }

    pub fn anomaly(service: &str, event: &str, state: &str, id: i64, at: u64) -> Batch {
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![LogRecord {
                        time_unix_nano: at,
                        event_name: event.into(),
                        body: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("check the provider".into())),
                        }),
                        attributes: vec![
                            kv("otterline.anomaly.type", "latency"),
                            kv("otterline.anomaly.severity", "high"),
                            kv("otterline.anomaly.state", state),
                            kv("otterline.anomaly.series", "chat gpt-4o"),
                            ki("otterline.anomaly.episode_id", id),
                            kd("otterline.anomaly.observed", 2.5),
                            kd("otterline.anomaly.baseline", 0.5),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    pub fn limits(slots: usize) -> Limits {
        Limits { resolution_ns: MIN, slots, max_services: 2, events: 3 }
    }

    #[test]
    fn windows_land_in_their_slot_and_sum_per_service_and_overall() {
        let mut s = Store::new(limits(60));
        let now = T0 + 10 * MIN;
        s.ingest(&window("chat", T0 + MIN, 100, 10, 0.4, 1.0), now);
        s.ingest(&window("rag", T0 + MIN, 300, 0, 0.8, 2.0), now);
        s.ingest(&window("chat", T0 + 2 * MIN, 50, 5, 1.0, 0.5), now);
        let first = s.slot_of(T0 + MIN);
        assert_eq!(first, T0 / MIN, "a window is filed under the slot it started in");
        let o = s.overall.get(first).copied().unwrap();
        assert_eq!((o.calls, o.errors), (400, 10));
        assert!((o.p95_sum / o.lat_n as f32 - 0.7).abs() < 1e-6, "p95 weighted by calls: (0.4*100+0.8*300)/400");
        assert!((o.cost - 3.0).abs() < 1e-6);
        assert_eq!(s.services["chat"].get(first + 1).unwrap().calls, 50);
        assert!(s.services["rag"].get(first + 1).is_none_or(|x| x.is_empty()));
        assert_eq!(s.last_slot, Some(first + 1));
    }

    #[test]
    fn the_ring_forgets_what_is_older_than_retention_and_refuses_the_far_future() {
        let mut s = Store::new(limits(5));
        let now = T0 + 100 * MIN;
        s.ingest(&window("chat", T0 + 90 * MIN, 1, 0, 0.1, 0.0), T0 + 91 * MIN);
        s.ingest(&window("chat", T0 + 99 * MIN, 2, 0, 0.1, 0.0), now);
        let series = &s.services["chat"];
        assert!(series.get(s.slot_of(T0 + 90 * MIN)).is_none(), "moved out of the ring by the newer point");
        assert_eq!(series.get(s.slot_of(T0 + 99 * MIN)).unwrap().calls, 2);
        for k in 95..99 {
            assert!(series.get(s.slot_of(T0 + k * MIN)).unwrap().is_empty(), "cleared slot {k}");
        }
        let v = s.version;
        s.ingest(&window("chat", T0 + 10 * MIN, 1, 0, 0.1, 0.0), now);
        s.ingest(&window("chat", T0 + 200 * MIN, 1, 0, 0.1, 0.0), now);
        assert_eq!((s.skips.old_points, s.skips.future_points), (4, 4));
        assert_eq!(s.version, v, "nothing changed");
    }

    #[test]
    fn services_beyond_the_limit_count_in_the_overall_series_only() {
        let mut s = Store::new(limits(10));
        let now = T0 + 5 * MIN;
        for name in ["a", "b", "c"] {
            s.ingest(&window(name, T0 + MIN, 10, 0, 0.1, 0.0), now);
        }
        assert_eq!(s.services.len(), 2);
        assert!(s.skips.services_over_limit > 0);
        assert_eq!(s.overall.get(T0 / MIN).unwrap().calls, 30);
    }

    #[test]
    fn health_scores_and_anomaly_episodes() {
        let mut s = Store::new(limits(10));
        let now = T0 + 5 * MIN;
        s.ingest(&health(Some("chat"), T0 + MIN, 42.0, "critical"), now);
        s.ingest(&health(None, T0 + MIN, 61.0, "degraded"), now);
        assert_eq!(s.services["chat"].latest_health.map(|h| (h.1, h.2)), Some((42.0, HealthStatus::Critical)));
        assert_eq!(s.overall.get(T0 / MIN).unwrap().health, 61.0);
        s.ingest(&anomaly("chat", EVENT, "firing", 7, T0), now);
        s.ingest(&anomaly("chat", EVENT, "firing", 8, T0), now);
        assert_eq!(s.open.len(), 2);
        s.ingest(&anomaly("chat", EVENT_RESOLVED, "resolved", 7, T0 + MIN), now);
        assert_eq!(s.open.len(), 1);
        assert_eq!(s.open.values().next().map(|e| e.episode_id), Some(8));
        s.ingest(&anomaly("chat", EVENT, "escalated", 8, T0 + MIN), now);
        assert_eq!(s.events.len(), 3, "the oldest event falls out");
        let e = s.events.back().unwrap();
        assert_eq!((e.suggestion.as_str(), e.observed, e.severity.as_str()), ("check the provider", Some(2.5), "high"));
    }

    /// (kind, has a parent, model, cost, tokens, unpriced, error) of a test span.
    type TestSpan<'a> = (i32, bool, Option<&'a str>, f64, i64, bool, bool);

    /// Spans of `service` ending at `end`.
    fn spans(service: &str, end: u64, list: &[TestSpan<'_>]) -> Batch {
        use otterline_core::pdata::trace::{ResourceSpans, ScopeSpans, Span, Status};
        let spans = list
            .iter()
            .map(|&(kind, parent, model, cost, tokens, unpriced, error)| {
                let mut attributes = vec![ki("gen_ai.usage.input_tokens", tokens)];
                if let Some(m) = model {
                    attributes.push(kv("gen_ai.request.model", m));
                }
                if cost > 0.0 {
                    attributes.push(kd("gen_ai.usage.cost", cost));
                }
                if unpriced {
                    attributes.push(KeyValue {
                        key: "otterline.cost.unpriced".into(),
                        value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                        ..Default::default()
                    });
                }
                Span {
                    kind,
                    parent_span_id: if parent { vec![1; 8] } else { vec![] },
                    end_time_unix_nano: end,
                    start_time_unix_nano: end - 1,
                    attributes,
                    status: error.then(|| Status { code: 2, message: String::new() }),
                    ..Default::default()
                }
            })
            .collect();
        Batch::Traces(otterline_core::pdata::ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: vec![kv("service.name", service)], ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn the_window_in_progress_is_live_until_its_aggregate_replaces_it() {
        let mut s = Store::new(limits(60));
        let now = T0 + 30 * MIN;
        // Window 10 closed; window 11 in progress: a server span around a nested chat call,
        // and a root chat call with an unpriced model.
        s.ingest(&window("chat", T0 + 10 * MIN, 50, 5, 0.5, 1.0), now);
        let t = T0 + 10 * MIN + 5;
        s.ingest(
            &spans(
                "chat",
                t,
                &[
                    (2, false, None, 0.0, 0, false, true),
                    (3, true, Some("gpt-4o"), 0.01, 100, false, false),
                    (3, false, Some("acme-9"), 0.0, 40, true, false),
                ],
            ),
            now,
        );
        s.ingest(&spans("new-svc", t, &[(2, false, None, 0.0, 0, false, false)]), now);
        let svc = s.services(60);
        let chat = svc.iter().find(|x| x.service == "chat").unwrap();
        assert_eq!((chat.calls, chat.errors), (52, 6), "two entry spans live, the nested one is no call");
        assert!((chat.cost - 1.01).abs() < 1e-6);
        assert!(svc.iter().any(|x| x.service == "new-svc" && x.calls == 1), "a new service shows at once");
        let models = s.models(60);
        let acme = models.iter().find(|m| m.model == "acme-9").unwrap();
        assert_eq!((acme.calls, acme.unpriced_calls, acme.tokens), (1, 1, 40));
        assert_eq!(models[0].model, "gpt-4o", "by cost");
        // Window 11's aggregate replaces the live figures (not added to them).
        s.ingest(&window("chat", T0 + 11 * MIN, 7, 1, 0.5, 0.5), now);
        let chat = s.services(60).into_iter().find(|x| x.service == "chat").unwrap();
        assert_eq!((chat.calls, chat.errors), (57, 6));
        assert!((chat.cost - 1.5).abs() < 1e-6);
        // A late span for the closed window is not counted live.
        s.ingest(&spans("chat", t, &[(2, false, None, 0.0, 0, false, false)]), now);
        assert_eq!(s.services(60).into_iter().find(|x| x.service == "chat").unwrap().calls, 57);
    }

    #[test]
    fn a_full_day_of_minutes_for_1000_services_is_32_bytes_a_slot() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let mut s = Store::new(Limits { resolution_ns: MIN, slots: 1440, max_services: 1000, events: 10 });
        for i in 0..1000 {
            s.ingest(&window(&format!("svc-{i}"), T0 + MIN, 1, 0, 0.1, 0.0), T0 + MIN);
        }
        let mib = s.heap_bytes() as f64 / (1 << 20) as f64;
        assert!(mib > 1000.0 * 1440.0 * 32.0 / (1 << 20) as f64 && mib < 46.0, "{mib} MiB");
    }
}
