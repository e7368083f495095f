//! The `batch` processor, with the OpenTelemetry Collector's semantics: a
//! [`Batcher`](otterline_core::batching::Batcher) as a pipeline step (the batching itself,
//! shared with the forwarding exporters, is in `otterline_core::batching`).

use std::time::Instant;

pub use otterline_core::batching::BatchConfig;
use otterline_core::batching::Batcher;
use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::Batch;

pub struct BatchProcessorFactory;

impl ProcessorFactory for BatchProcessorFactory {
    fn type_name(&self) -> &'static str {
        "batch"
    }
    fn description(&self) -> &'static str {
        "groups data per signal into batches of send_batch_size items or timeout, split at send_batch_max_size (Collector semantics)"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let cfg: BatchConfig = ctx.parse()?;
        if cfg.send_batch_size == 0 {
            return Err(ctx.error("send_batch_size", "must be at least 1"));
        }
        if cfg.send_batch_max_size > 0 && cfg.send_batch_max_size < cfg.send_batch_size {
            return Err(ctx.error("send_batch_max_size", "must be 0 (no limit) or at least send_batch_size"));
        }
        if cfg.timeout.is_zero() {
            return Err(ctx.error("timeout", "must be more than 0"));
        }
        Ok(Box::new(BatchProcessor::new(cfg)))
    }
}

pub struct BatchProcessor(Batcher);

impl BatchProcessor {
    pub fn new(cfg: BatchConfig) -> Self {
        BatchProcessor(Batcher::new(cfg))
    }
}

impl Processor for BatchProcessor {
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        self.0.add(batch, out);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.0.next_deadline()
    }

    fn on_timer(&mut self, now: Instant, out: &mut Vec<Batch>) {
        self.0.flush_due(now, out);
    }

    fn shutdown(&mut self, out: &mut Vec<Batch>) {
        self.0.flush(out);
    }
}
