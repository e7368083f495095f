//! Otterline's extensions (components that run beside the pipelines) and service endpoints.
//!
//! - [`health_check`]: the Collector-style health endpoint.
//! - [`collector_only`]: `pprof`, `zpages`, `memory_ballast` accepted with a warning.
//! - [`self_metrics`]: `/metrics` in the Prometheus text format (`service.telemetry.metrics`).

pub mod collector_only;
pub mod health_check;
pub mod self_metrics;

pub use collector_only::CollectorOnlyFactory;
pub use health_check::HealthCheckFactory;
