//! Otterline's processors for LLM and agent telemetry.
//!
//! - [`cost`]: the USD cost of each span (LLM token pricing and non-LLM rules).
//! - [`aggregate`]: per-window RED metrics with percentiles, tokens, cost, quality and
//!   satisfaction per service / operation / model / … as OTLP metrics.
//! - [`batch`]: Collector-style batching per signal (size, timeout, max size).
//! - [`anomaly`]: per-series baselines over metrics; anomaly episodes as OTLP log events.
//! - [`health`]: a 0-100 health score per service and overall from aggregates and anomaly events.

pub mod aggregate;
pub mod anomaly;
pub mod batch;
pub mod cost;
pub mod health;
pub mod memory_limiter;

pub use aggregate::AggregateProcessorFactory;
pub use anomaly::AnomalyProcessorFactory;
pub use batch::{BatchConfig, BatchProcessor, BatchProcessorFactory};
pub use cost::CostProcessorFactory;
pub use health::HealthProcessorFactory;
pub use memory_limiter::MemoryLimiterProcessorFactory;
