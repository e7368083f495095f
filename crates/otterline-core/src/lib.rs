//! Otterline's core: everything a component needs and nothing a component provides.
//!
//! - [`pdata`]: the telemetry that flows through pipelines (OTLP requests from
//!   `opentelemetry-proto`), plus the OTLP/JSON codec.
//! - [`config`]: Collector-style YAML with positions, env expansion and a serde
//!   deserializer that reports `file:line:col` and the key path on every error.
//! - [`backoff`]: exponential backoff with jitter, the one retry policy shape.
//! - [`batching`]: per-signal batching with the Collector's `batch` semantics (the `batch`
//!   processor and the forwarders' batcher).
//! - [`ident`]: component ids, kinds and errors (leaf types; `component` re-exports them).
//! - [`component`]: the receiver / processor / exporter / extension traits and their factories.
//! - [`registry`]: maps a YAML type name to a factory.
//! - [`service`]: validates a config against a registry and runs its pipelines.
//! - [`health`]: shared component status and counters, read by the health endpoint, and
//!   the components' 0-100 assessment.
//! - [`tap`]: read-only views of pipeline output for extensions (the dashboard).
//! - [`telemetry`]: self-metrics in the Prometheus text format, process RSS and CPU.
//! - [`net`]: endpoint syntax and binding for servers.
//! - [`fsutil`]: temp-then-rename files and leftover detection.
//! - [`time`]: Unix-nanosecond helpers and the one parser of time arguments.
//! - [`units`]: durations (`200ms`, `1h`, `90d`) and byte sizes.

pub mod ack;
pub mod auth;
pub mod backoff;
pub mod batching;
pub mod component;
pub mod config;
pub mod fsutil;
pub mod health;
pub mod ident;
pub mod net;
pub mod pdata;
pub mod registry;
pub mod service;
pub mod tap;
pub mod telemetry;
pub mod time;
pub mod units;
pub mod worker;

pub use ident::{ComponentId, ComponentKind};
pub use pdata::{Batch, Signal, SignalSet};

/// Runs blocking work (file I/O) from async code without stalling other tasks
/// on a multi-threaded runtime; runs it inline on a current-thread runtime.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
