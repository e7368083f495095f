//! The `nop` exporter: accepts every batch and discards it.
//!
//! `latency` makes each export take that long, to simulate a slow backend in
//! load and backpressure tests.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use otterline_core::component::{BuildContext, ExportError, Exporter, ExporterFactory};
use otterline_core::config::ConfigError;
use otterline_core::{Batch, SignalSet};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NopConfig {
    /// Simulated time per export (default 0).
    #[serde(with = "otterline_core::units::duration")]
    pub latency: Duration,
}

pub struct NopExporterFactory;

impl ExporterFactory for NopExporterFactory {
    fn type_name(&self) -> &'static str {
        "nop"
    }
    fn description(&self) -> &'static str {
        "discards everything (benchmarks, tests); `latency` simulates a slow backend"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
        let cfg: NopConfig = ctx.parse()?;
        Ok(Box::new(NopExporter { latency: cfg.latency }))
    }
}

struct NopExporter {
    latency: Duration,
}

#[async_trait]
impl Exporter for NopExporter {
    async fn export(&mut self, _batch: &Batch) -> Result<(), ExportError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(())
    }
}
