//! Shared, lock-free-on-the-hot-path status of the service and its components.
//!
//! Every running component gets a [`ComponentHealth`] with a status and item
//! counters (atomics, bumped once per batch). The health endpoint and the logs
//! read a [`Snapshot`].

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::ident::ComponentKind;
use crate::pdata::Signal;

/// Where the service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting = 0,
    Ready = 1,
    Draining = 2,
    Stopped = 3,
}

/// A component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Starting = 0,
    Ok = 1,
    /// Running but not well: retrying exports, refusing data.
    Degraded = 2,
    Failed = 3,
    Stopped = 4,
}

impl Status {
    fn from_u8(v: u8) -> Status {
        match v {
            0 => Status::Starting,
            1 => Status::Ok,
            2 => Status::Degraded,
            3 => Status::Failed,
            _ => Status::Stopped,
        }
    }
}

/// Item counters of one component, per signal (items are spans, data points or log records).
#[derive(Debug, Default)]
pub struct Counters {
    /// Received and queued (receivers).
    pub accepted: [AtomicU64; 3],
    /// Refused with a retryable error (receivers).
    pub refused: [AtomicU64; 3],
    /// Written or sent (exporters).
    pub sent: [AtomicU64; 3],
    /// Export attempts that failed and will be retried (exporters).
    pub retried: [AtomicU64; 3],
    /// Given up on, logged (exporters).
    pub dropped: [AtomicU64; 3],
}

fn total(a: &[AtomicU64; 3]) -> u64 {
    a.iter().map(|v| v.load(Ordering::Relaxed)).sum()
}

impl Counters {
    pub fn add_accepted(&self, s: Signal, n: u64) {
        self.accepted[s.index()].fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_refused(&self, s: Signal, n: u64) {
        self.refused[s.index()].fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_sent(&self, s: Signal, n: u64) {
        self.sent[s.index()].fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_retried(&self, s: Signal, n: u64) {
        self.retried[s.index()].fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_dropped(&self, s: Signal, n: u64) {
        self.dropped[s.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// The counts of one signal.
    pub fn of(&self, s: Signal) -> SignalCounts {
        let i = s.index();
        let l = |a: &[AtomicU64; 3]| a[i].load(Ordering::Relaxed);
        SignalCounts {
            accepted: l(&self.accepted),
            refused: l(&self.refused),
            sent: l(&self.sent),
            retried: l(&self.retried),
            dropped: l(&self.dropped),
        }
    }
}

/// The counters of one component for one signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SignalCounts {
    pub accepted: u64,
    pub refused: u64,
    pub sent: u64,
    pub retried: u64,
    pub dropped: u64,
}

impl SignalCounts {
    pub fn is_zero(&self) -> bool {
        *self == SignalCounts::default()
    }
}

pub struct ComponentHealth {
    /// `receiver`, `processor`, `exporter`, `extension` or `pipeline`.
    pub kind: &'static str,
    pub id: String,
    status: AtomicU8,
    message: Mutex<String>,
    pub counters: Counters,
    /// Component-specific counts (e.g. `unpriced_spans`), bumped at most once per batch.
    extra: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Current values (queue sizes), each owned and updated lock-free by the component.
    gauges: Mutex<Vec<(&'static str, Arc<AtomicI64>)>>,
    /// Reads the fill of the engine queue in front of the component: (queued, capacity).
    queue: Mutex<Option<QueueProbe>>,
}

/// Reads a queue's (queued, capacity); `None` once the queue is gone.
pub type QueueProbe = Box<dyn Fn() -> Option<(u64, u64)> + Send + Sync>;

/// How full a queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QueueFill {
    pub size: u64,
    pub capacity: u64,
}

impl ComponentHealth {
    /// Adds `n` to the component-specific counter `key`.
    pub fn add_extra(&self, key: &str, n: u64) {
        if let Ok(mut m) = self.extra.lock() {
            match m.get_mut(key) {
                Some(v) => *v += n,
                None => {
                    m.insert(key.to_string(), n);
                }
            }
        }
    }

    /// A gauge named `key` (e.g. `queue_size`): the component keeps the handle and stores
    /// into it; readers see the latest value.
    pub fn gauge(&self, key: &'static str) -> Arc<AtomicI64> {
        let g = Arc::new(AtomicI64::new(0));
        if let Ok(mut list) = self.gauges.lock() {
            list.push((key, g.clone()));
        }
        g
    }

    pub fn gauges(&self) -> std::collections::BTreeMap<String, i64> {
        self.gauges
            .lock()
            .map(|l| l.iter().map(|(k, v)| (k.to_string(), v.load(Ordering::Relaxed))).collect())
            .unwrap_or_default()
    }

    /// The component-specific counters.
    pub fn extra(&self) -> std::collections::BTreeMap<String, u64> {
        self.extra.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn new(kind: &'static str, id: String) -> Self {
        ComponentHealth {
            kind,
            id,
            status: AtomicU8::new(Status::Starting as u8),
            message: Mutex::new(String::new()),
            counters: Counters::default(),
            extra: Mutex::new(Default::default()),
            gauges: Mutex::new(Vec::new()),
            queue: Mutex::new(None),
        }
    }

    /// Lets readers see the fill of the queue that feeds this component.
    pub fn set_queue_probe(&self, probe: QueueProbe) {
        if let Ok(mut q) = self.queue.lock() {
            *q = Some(probe);
        }
    }

    /// The engine queue's fill if one is attached, else the component's own
    /// `queue_size`/`queue_capacity` gauges (the forwarders' sending queues).
    pub fn queue(&self) -> Option<QueueFill> {
        let probed = self.queue.lock().ok().and_then(|q| q.as_ref().and_then(|f| f()));
        let own = {
            let g = self.gauges();
            match (g.get("queue_size"), g.get("queue_capacity")) {
                (Some(&s), Some(&c)) if c > 0 => Some((s.max(0) as u64, c as u64)),
                _ => None,
            }
        };
        // The fuller of the two is what limits the component.
        let fill = |(s, c): (u64, u64)| if c == 0 { 0.0 } else { s as f64 / c as f64 };
        match (probed, own) {
            (Some(a), Some(b)) => Some(if fill(a) >= fill(b) { a } else { b }),
            (a, b) => a.or(b),
        }
        .map(|(size, capacity)| QueueFill { size, capacity })
    }

    pub fn status(&self) -> Status {
        Status::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Sets the status; `message` says why (empty for `Ok`).
    pub fn set(&self, status: Status, message: impl Into<String>) {
        self.status.store(status as u8, Ordering::Relaxed);
        if let Ok(mut m) = self.message.lock() {
            *m = message.into();
        }
    }

    /// Marks the component healthy again if it was degraded (cheap when it was not).
    pub fn recover(&self) {
        if self.status() == Status::Degraded {
            self.set(Status::Ok, "");
        }
    }

    fn snapshot(&self) -> ComponentSnapshot {
        let c = &self.counters;
        ComponentSnapshot {
            kind: self.kind,
            id: self.id.clone(),
            status: self.status(),
            message: self.message.lock().map(|m| m.clone()).unwrap_or_default(),
            accepted: total(&c.accepted),
            refused: total(&c.refused),
            sent: total(&c.sent),
            retried: total(&c.retried),
            dropped: total(&c.dropped),
            signals: Signal::ALL.iter().map(|s| (s.as_str(), c.of(*s))).filter(|(_, v)| !v.is_zero()).collect(),
            extra: self.extra(),
            gauges: self.gauges(),
            queue: self.queue(),
        }
    }
}

pub struct HealthRegistry {
    started: SystemTime,
    phase: AtomicU8,
    components: Mutex<Vec<Arc<ComponentHealth>>>,
    /// Counter samples for the rates in [`HealthRegistry::assess`].
    samples: Mutex<std::collections::VecDeque<Sample>>,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        HealthRegistry {
            started: SystemTime::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            components: Mutex::new(Vec::new()),
            samples: Mutex::new(Default::default()),
        }
    }
}

impl HealthRegistry {
    pub fn register(&self, kind: ComponentKind, id: &str) -> Arc<ComponentHealth> {
        self.register_named(kind.as_str(), id)
    }

    /// Registers something that is not a configured component (e.g. `pipeline`).
    pub fn register_named(&self, kind: &'static str, id: &str) -> Arc<ComponentHealth> {
        let h = Arc::new(ComponentHealth::new(kind, id.to_string()));
        if let Ok(mut list) = self.components.lock() {
            list.push(h.clone());
        }
        h
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            2 => Phase::Draining,
            _ => Phase::Stopped,
        }
    }

    /// Ready means: started, not draining, and no component failed.
    pub fn is_ready(&self) -> bool {
        self.phase() == Phase::Ready
            && self.components.lock().map(|l| l.iter().all(|c| c.status() != Status::Failed)).unwrap_or(false)
    }

    pub fn started(&self) -> SystemTime {
        self.started
    }

    pub fn snapshot(&self) -> Snapshot {
        let components = self.components.lock().map(|l| l.iter().map(|c| c.snapshot()).collect()).unwrap_or_default();
        Snapshot { phase: self.phase(), ready: self.is_ready(), components }
    }

    /// Scores every component 0-100 from its status, queue fill and the rates of refusals,
    /// failed and dropped exports over the last [`RATE_WINDOW`] (since start at first), and
    /// the service as its worst component. See [`assess_component`] for the rules.
    pub fn assess(&self) -> Assessment {
        let snap = self.snapshot();
        let now = std::time::Instant::now();
        let current: Sample = Sample {
            at: now,
            counts: snap
                .components
                .iter()
                .map(|c| (key(c), [c.accepted, c.refused, c.sent, c.retried, c.dropped]))
                .collect(),
        };
        let since_start = SystemTime::now().duration_since(self.started).unwrap_or_default();
        let (base, span) = match self.samples.lock() {
            Ok(mut samples) => {
                if samples.back().is_none_or(|b| now.duration_since(b.at) >= std::time::Duration::from_secs(1)) {
                    samples.push_back(current.clone());
                }
                // Keep the newest sample that is at least RATE_WINDOW old as the base.
                while samples.len() > 2 && samples.get(1).is_some_and(|s| now.duration_since(s.at) >= RATE_WINDOW) {
                    samples.pop_front();
                }
                match samples.front() {
                    Some(f) if now.duration_since(f.at) >= std::time::Duration::from_secs(1) => {
                        (Some(f.counts.clone()), now.duration_since(f.at))
                    }
                    _ => (None, since_start),
                }
            }
            Err(_) => (None, since_start),
        };
        let secs = span.as_secs_f64().max(1.0);
        let phase = snap.phase;
        let components: Vec<ComponentAssessment> = snap
            .components
            .iter()
            .map(|c| {
                let before = base.as_ref().and_then(|b| b.get(&key(c)).copied()).unwrap_or_default();
                let now = [c.accepted, c.refused, c.sent, c.retried, c.dropped];
                let d: Vec<f64> = now.iter().zip(before).map(|(n, b)| n.saturating_sub(b) as f64).collect();
                assess_component(
                    c,
                    phase,
                    Deltas { accepted: d[0], refused: d[1], sent: d[2], retried: d[3], dropped: d[4] },
                    secs,
                )
            })
            .collect();
        let worst = components.iter().min_by(|a, b| a.score.total_cmp(&b.score));
        let (score, state) = match worst {
            Some(w) => (w.score, w.state),
            None => (100.0, ComponentState::Up),
        };
        let state = if phase != Phase::Ready { ComponentState::Degraded.min(state) } else { state };
        Assessment { phase, score, state, window_seconds: secs, components }
    }
}

/// How far back [`HealthRegistry::assess`] looks for rates.
pub const RATE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone)]
struct Sample {
    at: std::time::Instant,
    counts: std::collections::HashMap<String, [u64; 5]>,
}

fn key(c: &ComponentSnapshot) -> String {
    format!("{}\u{0}{}", c.kind, c.id)
}

/// A component's condition, worst last (so `min` picks the worse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentState {
    Down = 0,
    Degraded = 1,
    Up = 2,
}

/// Counter increases over the assessment window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deltas {
    pub accepted: f64,
    pub refused: f64,
    pub sent: f64,
    pub retried: f64,
    pub dropped: f64,
}

/// The service's components, scored.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub phase: Phase,
    /// The worst component's score.
    pub score: f64,
    pub state: ComponentState,
    /// The span the rates are over.
    pub window_seconds: f64,
    pub components: Vec<ComponentAssessment>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentAssessment {
    pub kind: &'static str,
    pub id: String,
    pub status: Status,
    pub state: ComponentState,
    /// 0 (down) to 100 (healthy).
    pub score: f64,
    /// Why the score is below 100, one phrase each.
    pub reasons: Vec<String>,
    /// Queued / capacity of the queue in front of the component, 0-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_fill: Option<f64>,
    /// Items accepted (receivers) or sent (exporters) per second.
    pub items_per_second: f64,
    pub refused_per_second: f64,
    pub failed_per_second: f64,
    pub dropped_per_second: f64,
}

/// The rules, each a penalty on 100:
/// - status `failed` → 0; `stopped` while the service is ready → 0; `starting` → at most 50;
///   `degraded` (retrying, refusing; the component says why) → at most 60;
/// - queue fill above 50 % → up to 60 at a full queue;
/// - refusals: 30 + 160 × (refused / offered), at most 70;
/// - failed export attempts (retried): 20 + 100 × (failed / attempted), at most 50;
/// - dropped items: 40 + 200 × (dropped / attempted), at most 80.
///
/// The state is `down` below 20 (and for `failed`), `degraded` below 80, else `up` —
/// the same 0-100 model and bands as the services' health scores.
pub fn assess_component(c: &ComponentSnapshot, phase: Phase, d: Deltas, secs: f64) -> ComponentAssessment {
    let mut score: f64 = 100.0;
    let mut reasons = Vec::new();
    let mut cap = |limit: f64, why: String, reasons: &mut Vec<String>| {
        score = score.min(limit);
        reasons.push(why);
    };
    match c.status {
        Status::Failed => cap(0.0, format!("failed: {}", c.message), &mut reasons),
        Status::Stopped if phase == Phase::Ready => cap(0.0, "stopped".into(), &mut reasons),
        Status::Starting => cap(50.0, "starting".into(), &mut reasons),
        Status::Degraded => {
            let why = if c.message.is_empty() { "degraded".to_string() } else { c.message.clone() };
            cap(60.0, why, &mut reasons)
        }
        _ => {}
    }
    let mut penalty = 0.0;
    let queue_fill = c.queue.map(|q| if q.capacity == 0 { 0.0 } else { q.size as f64 / q.capacity as f64 });
    if let Some(f) = queue_fill.filter(|f| *f > 0.5) {
        penalty += ((f - 0.5) / 0.5 * 60.0).min(60.0);
        reasons.push(format!("queue {:.0}% full", f * 100.0));
    }
    if d.refused > 0.0 {
        let r = d.refused / (d.accepted + d.refused);
        penalty += (30.0 + 160.0 * r).min(70.0);
        reasons.push(format!("refusing {:.1}% of items", r * 100.0));
    }
    let attempted = d.sent + d.retried + d.dropped;
    if d.retried > 0.0 {
        let r = d.retried / attempted;
        penalty += (20.0 + 100.0 * r).min(50.0);
        reasons.push(format!("{:.1}% of export attempts failing", r * 100.0));
    }
    if d.dropped > 0.0 {
        let r = d.dropped / attempted;
        penalty += (40.0 + 200.0 * r).min(80.0);
        reasons.push(format!("dropped {:.1}% of items", r * 100.0));
    }
    let score = (score - penalty).clamp(0.0, 100.0);
    let state = if c.status == Status::Failed || score < 20.0 {
        ComponentState::Down
    } else if score < 80.0 {
        ComponentState::Degraded
    } else {
        ComponentState::Up
    };
    ComponentAssessment {
        kind: c.kind,
        id: c.id.clone(),
        status: c.status,
        state,
        score,
        reasons,
        queue_fill,
        items_per_second: (d.accepted + d.sent) / secs,
        refused_per_second: d.refused / secs,
        failed_per_second: d.retried / secs,
        dropped_per_second: d.dropped / secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(status: Status, queue: Option<(u64, u64)>) -> ComponentSnapshot {
        ComponentSnapshot {
            kind: "exporter",
            id: "otlp".into(),
            status,
            message: String::new(),
            accepted: 0,
            refused: 0,
            sent: 0,
            retried: 0,
            dropped: 0,
            signals: Default::default(),
            extra: Default::default(),
            gauges: Default::default(),
            queue: queue.map(|(size, capacity)| QueueFill { size, capacity }),
        }
    }

    #[test]
    fn a_quiet_healthy_component_is_up_at_100() {
        let a = assess_component(&snap(Status::Ok, Some((0, 100))), Phase::Ready, Deltas::default(), 60.0);
        assert_eq!((a.score, a.state), (100.0, ComponentState::Up));
        assert!(a.reasons.is_empty());
    }

    #[test]
    fn each_rule_lowers_the_score_and_says_why() {
        let full = assess_component(&snap(Status::Ok, Some((100, 100))), Phase::Ready, Deltas::default(), 60.0);
        assert_eq!((full.score, full.state), (40.0, ComponentState::Degraded));
        assert_eq!(full.reasons, ["queue 100% full"]);
        let half = assess_component(&snap(Status::Ok, Some((75, 100))), Phase::Ready, Deltas::default(), 60.0);
        assert_eq!(half.score, 70.0);

        let refusing = Deltas { accepted: 900.0, refused: 100.0, ..Default::default() };
        let r = assess_component(&snap(Status::Ok, None), Phase::Ready, refusing, 10.0);
        assert!((r.score - 54.0).abs() < 1e-9, "{}", r.score);
        assert_eq!(r.refused_per_second, 10.0);
        assert_eq!(r.items_per_second, 90.0);

        let failing = Deltas { sent: 50.0, retried: 50.0, ..Default::default() };
        let f = assess_component(&snap(Status::Degraded, None), Phase::Ready, failing, 10.0);
        // Capped at 60 by the status, then 50 off for half of the attempts failing.
        assert_eq!((f.score, f.state), (10.0, ComponentState::Down));
        assert_eq!(f.reasons.len(), 2);

        let dropping = Deltas { sent: 99.0, dropped: 1.0, ..Default::default() };
        let d = assess_component(&snap(Status::Ok, None), Phase::Ready, dropping, 10.0);
        assert!((d.score - 58.0).abs() < 1e-9, "{}", d.score);

        let failed = assess_component(&snap(Status::Failed, None), Phase::Ready, Deltas::default(), 10.0);
        assert_eq!((failed.score, failed.state), (0.0, ComponentState::Down));
        let stopped_while_draining =
            assess_component(&snap(Status::Stopped, None), Phase::Draining, Deltas::default(), 1.0);
        assert_eq!(stopped_while_draining.state, ComponentState::Up);
    }

    #[test]
    fn the_registry_scores_the_service_as_its_worst_component() {
        let reg = HealthRegistry::default();
        reg.set_phase(Phase::Ready);
        let ok = reg.register_named("receiver", "otlp");
        ok.set(Status::Ok, "");
        ok.counters.add_accepted(crate::Signal::Traces, 100);
        let bad = reg.register_named("exporter", "otlp");
        bad.set(Status::Ok, "");
        bad.counters.add_sent(crate::Signal::Traces, 50);
        bad.counters.add_dropped(crate::Signal::Traces, 50);
        bad.set_queue_probe(Box::new(|| Some((3, 10))));
        let a = reg.assess();
        assert_eq!(a.components.len(), 2);
        assert_eq!(a.components[0].state, ComponentState::Up);
        assert_eq!(a.components[1].queue_fill, Some(0.3));
        assert_eq!(a.components[1].score, 20.0);
        assert_eq!((a.score, a.state), (20.0, ComponentState::Degraded));
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub phase: Phase,
    pub ready: bool,
    pub components: Vec<ComponentSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentSnapshot {
    pub kind: &'static str,
    pub id: String,
    pub status: Status,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    pub accepted: u64,
    pub refused: u64,
    pub sent: u64,
    pub retried: u64,
    pub dropped: u64,
    /// The same counters per signal (signals with any count only).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub signals: std::collections::BTreeMap<&'static str, SignalCounts>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub gauges: std::collections::BTreeMap<String, i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueFill>,
}
