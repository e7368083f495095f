//! Otterline's core: everything a component needs and nothing a component provides.
//!
//! - [`pdata`]: the telemetry that flows through pipelines (OTLP requests from
//!   `opentelemetry-proto`), plus the OTLP/JSON codec.
//! - [`config`]: Collector-style YAML with positions, env expansion and a serde
//!   deserializer that reports `file:line:col` and the key path on every error.
//! - [`component`]: the receiver / processor / exporter / extension traits and their factories.
//! - [`registry`]: maps a YAML type name to a factory.
//! - [`service`]: validates a config against a registry and runs its pipelines.
//! - [`health`]: shared component status and counters, read by the health endpoint.
//! - [`units`]: durations (`200ms`, `1h`, `90d`) and byte sizes.

pub mod component;
pub mod config;
pub mod health;
pub mod pdata;
pub mod registry;
pub mod service;
pub mod time;
pub mod units;

pub use component::{ComponentId, ComponentKind};
pub use pdata::{Batch, Signal, SignalSet};
