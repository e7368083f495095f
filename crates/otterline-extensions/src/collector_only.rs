//! Collector extensions that touch no data (`pprof`, `zpages`, `memory_ballast`): accepted
//! so that an existing Collector config starts, with one warning saying they do nothing here.
//!
//! Their keys are not checked (they configure nothing in Otterline); anything that affects
//! data is never accepted this way.

use async_trait::async_trait;

use otterline_core::component::{BuildContext, ComponentError, Extension, ExtensionContext, ExtensionFactory, Task};
use otterline_core::config::ConfigError;

/// One Collector-only extension type; registered once per name.
pub struct CollectorOnlyFactory {
    name: &'static str,
    /// What to use instead, for the warning.
    instead: &'static str,
}

impl CollectorOnlyFactory {
    pub const PPROF: CollectorOnlyFactory = CollectorOnlyFactory {
        name: "pprof",
        instead: "profile Otterline with `perf` or `heaptrack`; its own CPU and memory are on /metrics",
    };
    pub const ZPAGES: CollectorOnlyFactory = CollectorOnlyFactory {
        name: "zpages",
        instead: "the dashboard (:13134) and /metrics show pipelines, components and their counters",
    };
    pub const MEMORY_BALLAST: CollectorOnlyFactory = CollectorOnlyFactory {
        name: "memory_ballast",
        instead: "Otterline has no garbage collector to tune; use the memory_limiter processor to bound memory",
    };
}

impl ExtensionFactory for CollectorOnlyFactory {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        "accepted for Collector configs; does nothing in Otterline (a warning at start says so)"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Extension>, ConfigError> {
        Ok(Box::new(CollectorOnly { id: ctx.id.to_string(), instead: self.instead }))
    }
}

struct CollectorOnly {
    id: String,
    instead: &'static str,
}

#[async_trait]
impl Extension for CollectorOnly {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> Result<Task, ComponentError> {
        tracing::warn!(extension = %self.id, "a Collector extension that does nothing in Otterline (it touches no data): {}", self.instead);
        let shutdown = ctx.shutdown.clone();
        Ok(Box::pin(async move {
            shutdown.cancelled_owned().await;
            Ok(())
        }))
    }
}
