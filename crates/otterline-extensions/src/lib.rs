//! Otterline's extensions (components that run beside the pipelines).
//!
//! - [`health_check`]: the Collector-style health endpoint.

pub mod health_check;

pub use health_check::HealthCheckFactory;
