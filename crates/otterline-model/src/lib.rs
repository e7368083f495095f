//! Otterline's shared vocabulary: what components say to each other through ordinary OTLP.
//!
//! Components never depend on each other; when one writes data another reads (the
//! `aggregate` metrics, anomaly and budget events, health scores), both use this crate:
//!
//! - [`names`]: every `gen_ai.*`, `otterline.*` and `otel.*` attribute, metric, scope and
//!   event name, defined once.
//! - [`attrs`]: reading attributes (`attr_str`, `attr_i64`, …) and building them (`kv_str`, …).
//! - [`otlp`]: builders for data points and metrics.
//! - [`event`]: the anomaly/budget event — one writer (`to_log_record`), one reader
//!   (`from_log_record`) — with its severities and kinds.
//! - [`aggregate`]: one reader of the `aggregate` metric family (anomaly, health, dashboard).
//! - [`budget`]: budget rules, shared by the `anomaly` processor and `otterline budget check`.
//!
//! It knows nothing of components, pipelines or configuration files: only names, values and
//! their OTLP shape. It depends on `otterline-core` for the OTLP types only.

pub mod aggregate;
pub mod attrs;
pub mod budget;
pub mod event;
pub mod names;
pub mod otlp;
