//! The dashboard's state: fixed-size rings of per-slot figures per service, recent anomaly
//! events, open episodes and the latest host readings, fed from pipeline output.
//!
//! What it reads (everything else is skipped after a name check):
//! - `aggregate` metrics: `otterline.operation.calls`, `.errors`, `.cost`, and the p95 of
//!   `otterline.operation.duration.summary`, summed per service (p95 weighted by calls);
//! - `health` metrics: `otterline.health.score` per service and overall;
//! - anomaly events (`otterline.anomaly`, `otterline.anomaly.resolved`, budgets included);
//! - `hostmetrics` metrics: CPU, memory, load, disk and network I/O, the process.
//!
//! Memory: one [`Slot`] (24 bytes) per slot per service, allocated in full on a service's
//! first point, so `retention / resolution × 24 B` per service (34 KiB for 24 h of minutes).
//! Services beyond `max_services` are counted in the overall series only. A point is placed
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
}

impl Slot {
    pub const EMPTY: Slot = Slot { calls: 0, errors: 0, lat_n: 0, p95_sum: 0.0, cost: 0.0, health: f32::NAN };

    pub fn is_empty(&self) -> bool {
        self.calls == 0 && self.lat_n == 0 && self.cost == 0.0 && self.health.is_nan()
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
            Batch::Traces(_) => {}
        }
        if (self.version, self.seq) != before {
            self.version = self.version.max(before.0) + 1;
        }
    }

    fn metric(&mut self, service: &str, res_attrs: &[KeyValue], m: &Metric, now: Now) {
        match (m.name.as_str(), &m.data) {
            (name, _) if aggregate::role(name) == aggregate::Role::Read => aggregate::points(m, |p| {
                // Service-level calls, errors and latency count entry spans only; cost
                // counts every span (it is on the LLM calls, which are often nested).
                if !p.is_entry() && !matches!(p.value, Value::Cost(_)) {
                    return;
                }
                let (v, field) = match p.value {
                    Value::Calls(v) => (v, Field::Calls),
                    Value::Errors(v) => (v, Field::Errors),
                    Value::Cost(v) => (v, Field::Cost),
                    Value::Duration { count, p95, .. } => {
                        let n = count.min(u32::MAX as u64) as u32;
                        let v = p95 as f32 * n as f32;
                        self.at(service, p.end, now, true, |s| {
                            s.lat_n = s.lat_n.saturating_add(n);
                            s.p95_sum += v;
                        });
                        return;
                    }
                    _ => return,
                };
                self.at(service, p.end, now, true, |s| match field {
                    Field::Calls => s.calls = s.calls.saturating_add(v.max(0.0) as u32),
                    Field::Errors => s.errors = s.errors.saturating_add(v.max(0.0) as u32),
                    Field::Cost => s.cost += v as f32,
                });
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

    /// Applies `f` to the service's slot and to the overall slot.
    fn at(&mut self, service: &str, ts: u64, now: Now, data: bool, f: impl Fn(&mut Slot)) {
        let slot = self.slot_of(ts);
        if !self.accept(slot, now) {
            return;
        }
        if let Some(s) = self.overall.write(slot, self.limits.slots) {
            f(s);
        }
        if let Some(series) = service_series(&mut self.services, &mut self.skips, self.limits.max_services, service) {
            if let Some(s) = series.write(slot, self.limits.slots) {
                f(s);
            }
        }
        if data {
            self.last_slot = Some(self.last_slot.map_or(slot, |l| l.max(slot)));
        }
        self.version += 1;
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
        self.overall.heap_bytes()
            + self.services.iter().map(|(k, s)| k.capacity() + s.heap_bytes() + 48).sum::<usize>()
            + self.services.capacity() * (std::mem::size_of::<String>() + std::mem::size_of::<Series>())
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

    #[test]
    fn a_full_day_of_minutes_for_1000_services_is_24_bytes_a_slot() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        let mut s = Store::new(Limits { resolution_ns: MIN, slots: 1440, max_services: 1000, events: 10 });
        for i in 0..1000 {
            s.ingest(&window(&format!("svc-{i}"), T0 + MIN, 1, 0, 0.1, 0.0), T0 + MIN);
        }
        let mib = s.heap_bytes() as f64 / (1 << 20) as f64;
        assert!(mib > 1000.0 * 1440.0 * 24.0 / (1 << 20) as f64 && mib < 36.0, "{mib} MiB");
    }
}
