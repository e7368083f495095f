//! Otterline's extensions (components that run beside the pipelines) and service endpoints.
//!
//! - [`health_check`]: the Collector-style health endpoint.
//! - [`self_metrics`]: `/metrics` in the Prometheus text format (`service.telemetry.metrics`).

pub mod health_check;
pub mod self_metrics;

pub use health_check::HealthCheckFactory;
