//! Shared, lock-free-on-the-hot-path status of the service and its components.
//!
//! Every running component gets a [`ComponentHealth`] with a status and item
//! counters (atomics, bumped once per batch). The health endpoint and the logs
//! read a [`Snapshot`].

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::component::ComponentKind;
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
        }
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
        }
    }
}

pub struct HealthRegistry {
    started: SystemTime,
    phase: AtomicU8,
    components: Mutex<Vec<Arc<ComponentHealth>>>,
}

impl Default for HealthRegistry {
    fn default() -> Self {
        HealthRegistry {
            started: SystemTime::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            components: Mutex::new(Vec::new()),
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
}
