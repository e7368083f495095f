//! Shared, lock-free-on-the-hot-path status of the service and its components.
//!
//! Every running component gets a [`ComponentHealth`] with a status and item
//! counters (atomics, bumped once per batch). The health endpoint and the logs
//! read a [`Snapshot`].

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::component::ComponentKind;

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

/// Item counters of one component (items are spans, data points or log records).
#[derive(Debug, Default)]
pub struct Counters {
    /// Received and queued (receivers).
    pub accepted: AtomicU64,
    /// Refused with a retryable error (receivers).
    pub refused: AtomicU64,
    /// Written or sent (exporters).
    pub sent: AtomicU64,
    /// Export attempts that failed and will be retried (exporters).
    pub retried: AtomicU64,
    /// Given up on, logged (exporters).
    pub dropped: AtomicU64,
}

impl Counters {
    pub fn add_accepted(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_refused(&self, n: u64) {
        self.refused.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_retried(&self, n: u64) {
        self.retried.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
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
            accepted: c.accepted.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            retried: c.retried.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            extra: self.extra(),
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
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extra: std::collections::BTreeMap<String, u64>,
}
