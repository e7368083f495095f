//! The integration tests, linked as one test binary (one link of the whole stack instead
//! of one per file). Each module is one area and starts the real `otterline` binary on
//! ephemeral loopback ports; `common` is the shared harness.
//!
//! Run one area with `scripts/test --test it <module>::` (e.g. `lifecycle::`).

mod common;

mod alerting;
mod architecture;
// `otterline query | report | budget check | compare` exist only with the analytics feature.
#[cfg(feature = "analytics")]
mod analytics;
mod anomaly_e2e;
mod anomaly_restart;
mod bad_input;
mod config_validate;
mod dashboard;
mod durability;

mod forwarding;
mod genai_metrics;
mod hostmetrics;
mod http_json;
mod lifecycle;
mod parquet_archive;
mod sdk_python;
mod sdk_rust;
mod tls_auth;
