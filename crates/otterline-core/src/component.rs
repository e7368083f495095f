//! What a component is: ids, kinds, the four component traits and their factories.
//!
//! A component type is one module that holds its config struct, a factory that
//! builds it from its config [`Node`] (validating everything it can without
//! touching the network or the disk), and the running component. The binary's
//! registry maps the YAML type name to the factory.
//!
//! - Receivers bring data in and hand it to an [`Output`], which applies backpressure.
//! - Processors are synchronous transforms run in order inside their pipeline's task;
//!   they may emit any signal (derived metrics, anomaly logs) and may keep timers.
//! - Exporters consume batches from their own bounded queue, shared by all the
//!   pipelines that list them.
//! - Extensions run beside the pipelines (health endpoint, dashboards).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use crate::ident::{ComponentError, ComponentId, ComponentKind};

use crate::config::{ConfigError, Node};
use crate::health::{ComponentHealth, HealthRegistry};
use crate::pdata::{Batch, Signal, SignalSet};

/// What a factory gets to build a component.
pub struct BuildContext<'a> {
    pub id: &'a ComponentId,
    /// The component's config (null when written as `type:` with nothing after it).
    pub config: &'a Node,
    /// Dotted path of the config, e.g. `exporters.json/archive`, for error messages.
    pub path: String,
    /// Where the component's id is written.
    pub mark: &'a crate::config::Mark,
}

impl BuildContext<'_> {
    /// Deserializes the component's typed config; errors carry file, line and key.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        crate::config::from_node(self.config, &self.path)
    }

    /// An error about a key of this component's config (e.g. a semantic check after parsing).
    pub fn error(&self, key: &str, message: impl Into<String>) -> ConfigError {
        // `key` may be dotted (`tls.ca_file`): point at the deepest part that is written.
        let mut node = None;
        if !key.is_empty() {
            let mut cur = Some(self.config);
            for part in key.split('.') {
                cur = cur.and_then(|n| n.get(part));
                if cur.is_some() {
                    node = cur;
                }
            }
        }
        let fallback = if self.config.is_null() { self.mark } else { &self.config.mark };
        let mark = node.map(|n| n.mark.clone()).unwrap_or_else(|| fallback.clone());
        let path = if key.is_empty() { self.path.clone() } else { format!("{}.{key}", self.path) };
        ConfigError::at(&mark, &path, message)
    }
}

/// A running task of a component (a server loop, a source reader).
pub type Task = BoxFuture<'static, Result<(), ComponentError>>;

// ---------------------------------------------------------------------------
// Receivers
// ---------------------------------------------------------------------------

pub trait ReceiverFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// The signals this receiver can produce.
    fn signals(&self) -> SignalSet;
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Receiver>, ConfigError>;
}

#[async_trait]
pub trait Receiver: Send {
    /// Binds listeners or opens sources, then returns the task that serves until
    /// `ctx.shutdown` fires. The task must stop accepting new data on shutdown,
    /// finish what it already accepted, and return; dropping its [`Output`] is
    /// what lets the pipelines drain.
    async fn start(self: Box<Self>, ctx: ReceiverContext) -> Result<Task, ComponentError>;
}

pub struct ReceiverContext {
    pub id: ComponentId,
    pub output: Output,
    pub shutdown: CancellationToken,
    pub health: Arc<ComponentHealth>,
}

/// Why a receiver could not hand a batch on. All are retryable by the client
/// except [`Refusal::NoPipeline`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("pipeline is full; retry later")]
    Full,
    #[error("Otterline is shutting down; retry against another instance or later")]
    ShuttingDown,
    #[error("memory limit reached ({0}); retry later")]
    MemoryLimit(String),
    #[error("no pipeline takes {0} from this receiver")]
    NoPipeline(Signal),
}

impl Refusal {
    /// Whether the client should retry (everything but a missing pipeline).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Refusal::NoPipeline(_))
    }
}

/// A switch a processor (`memory_limiter`) holds to make the receivers of its pipeline
/// refuse new data with a retryable error; one relaxed atomic load per batch when open.
#[derive(Debug)]
pub struct Gate {
    closed: std::sync::atomic::AtomicBool,
    owner: String,
}

impl Gate {
    pub fn new(owner: impl Into<String>) -> Gate {
        Gate { closed: Default::default(), owner: owner.into() }
    }
    pub fn set_closed(&self, closed: bool) {
        self.closed.store(closed, std::sync::atomic::Ordering::Relaxed);
    }
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Relaxed)
    }
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

/// A receiver's way into its pipelines: routes each batch to every pipeline that
/// takes its signal, all or nothing, waiting at most the admission timeout for queue space.
#[derive(Clone)]
pub struct Output {
    inner: Arc<OutputInner>,
}

struct OutputInner {
    routes: [Vec<mpsc::Sender<crate::ack::Item>>; 3],
    /// Admission gates of the pipelines each signal goes to.
    gates: [Vec<Arc<Gate>>; 3],
    admission_timeout: Duration,
    health: Arc<ComponentHealth>,
}

/// Queue slots held by [`Output::reserve`]; dropping it gives them back.
pub struct Reservation<'a> {
    output: &'a Output,
    signal: Signal,
    permits: Vec<mpsc::Permit<'a, crate::ack::Item>>,
}

impl Reservation<'_> {
    /// Queues `batch` (of the reserved signal) in the reserved slots.
    pub fn send(self, batch: Batch) {
        debug_assert_eq!(batch.signal(), self.signal);
        let items = batch.item_count() as u64;
        self.output.dispatch(self.permits, batch, None, self.signal, items);
    }

    /// Queues `batch` with `ack`, which every pipeline it is queued in holds (see
    /// [`crate::ack`]); the caller then waits on the ack.
    pub fn send_acked(self, batch: Batch, ack: &crate::ack::Ack) {
        debug_assert_eq!(batch.signal(), self.signal);
        let items = batch.item_count() as u64;
        self.output.dispatch(self.permits, batch, Some(ack), self.signal, items);
    }
}

impl Output {
    pub fn new(
        routes: [Vec<mpsc::Sender<crate::ack::Item>>; 3],
        admission_timeout: Duration,
        health: Arc<ComponentHealth>,
    ) -> Output {
        Output::with_gates(routes, Default::default(), admission_timeout, health)
    }

    pub fn with_gates(
        routes: [Vec<mpsc::Sender<crate::ack::Item>>; 3],
        gates: [Vec<Arc<Gate>>; 3],
        admission_timeout: Duration,
        health: Arc<ComponentHealth>,
    ) -> Output {
        Output { inner: Arc::new(OutputInner { routes, gates, admission_timeout, health }) }
    }

    fn closed_gate(&self, signal: Signal) -> Option<&Gate> {
        self.inner.gates[signal.index()].iter().find(|g| g.is_closed()).map(|g| g.as_ref())
    }

    /// Whether any pipeline takes `signal` from this receiver.
    pub fn accepts(&self, signal: Signal) -> bool {
        !self.inner.routes[signal.index()].is_empty()
    }

    /// Hands `batch` to every pipeline that takes its signal. `Ok` means every one
    /// of them has queued it: from here on, it is Otterline's to deliver.
    pub async fn send(&self, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        match self.reserve(signal).await {
            Ok(r) => {
                r.send(batch);
                Ok(())
            }
            Err(r) => self.refuse(signal, batch.item_count() as u64, r),
        }
    }

    /// Holds a queue slot for one batch of `signal` in every pipeline that takes it, with
    /// the same admission rules as [`Output::send`] (gates, `admission_timeout`). A receiver
    /// that reserves before it decodes keeps only the request's bytes while it waits, not
    /// the decoded batch (several times larger). A refusal is not counted: the caller
    /// counts the items it refused with [`Output::count_refused`].
    pub async fn reserve(&self, signal: Signal) -> Result<Reservation<'_>, Refusal> {
        let routes = &self.inner.routes[signal.index()];
        if routes.is_empty() {
            return Err(Refusal::NoPipeline(signal));
        }
        if let Some(g) = self.closed_gate(signal) {
            return Err(Refusal::MemoryLimit(g.owner().to_string()));
        }
        let deadline = tokio::time::Instant::now() + self.inner.admission_timeout;
        let mut permits = Vec::with_capacity(routes.len());
        for tx in routes {
            let permit = match tx.try_reserve() {
                Ok(p) => p,
                Err(mpsc::error::TrySendError::Closed(())) => return Err(Refusal::ShuttingDown),
                Err(mpsc::error::TrySendError::Full(())) => match tokio::time::timeout_at(deadline, tx.reserve()).await
                {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Refusal::ShuttingDown),
                    Err(_) => return Err(Refusal::Full),
                },
            };
            permits.push(permit);
        }
        Ok(Reservation { output: self, signal, permits })
    }

    /// Counts `items` of `signal` refused after a failed [`Output::reserve`].
    pub fn count_refused(&self, signal: Signal, items: u64) {
        self.inner.health.counters.add_refused(signal, items);
    }

    /// Like [`Output::send`], but waits as long as it takes for queue space: for
    /// sources that pull their data (replay) and can simply slow down.
    pub async fn send_waiting(&self, batch: Batch) -> Result<(), Refusal> {
        let signal = batch.signal();
        let items = batch.item_count() as u64;
        let routes = &self.inner.routes[signal.index()];
        if routes.is_empty() {
            return Err(Refusal::NoPipeline(signal));
        }
        while self.closed_gate(signal).is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut permits = Vec::with_capacity(routes.len());
        for tx in routes {
            permits.push(tx.reserve().await.map_err(|_| Refusal::ShuttingDown)?);
        }
        self.dispatch(permits, batch, None, signal, items);
        Ok(())
    }

    /// Sends on reserved slots: one clone per extra pipeline, the original to the last.
    fn dispatch(
        &self,
        mut permits: Vec<mpsc::Permit<'_, crate::ack::Item>>,
        batch: Batch,
        ack: Option<&crate::ack::Ack>,
        signal: Signal,
        items: u64,
    ) {
        let held = || ack.map(crate::ack::Ack::share);
        let last = permits.pop();
        for p in permits {
            p.send((batch.clone(), held()));
        }
        if let Some(p) = last {
            p.send((batch, held()));
        }
        self.inner.health.counters.add_accepted(signal, items);
    }

    fn refuse(&self, signal: Signal, items: u64, r: Refusal) -> Result<(), Refusal> {
        self.inner.health.counters.add_refused(signal, items);
        Err(r)
    }
}

// ---------------------------------------------------------------------------
// Processors
// ---------------------------------------------------------------------------

pub trait ProcessorFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// Builds one instance; each pipeline that lists the processor gets its own.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError>;
}

/// A synchronous step of a pipeline. Runs on the pipeline's task: keep it cheap
/// per item and never block on I/O (hand slow work to a background task).
pub trait Processor: Send {
    /// Hands the processor its health entry (for its own counters); called once before data flows.
    fn attach(&mut self, _health: Arc<ComponentHealth>) {}

    /// A gate that, while closed, makes the receivers of this pipeline refuse new data
    /// (retryable). Only admission-control processors (`memory_limiter`) have one.
    fn admission_gate(&self) -> Option<Arc<Gate>> {
        None
    }

    /// Consumes `batch` and pushes what continues down the pipeline to `out`:
    /// the batch itself (possibly changed), nothing, or more batches of any signal.
    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>);

    /// When [`Processor::on_timer`] should next run, if ever.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Called at or after [`Processor::next_deadline`] (window closes, batch timeouts).
    fn on_timer(&mut self, _now: Instant, _out: &mut Vec<Batch>) {}

    /// Called once when the pipeline drains: flush everything still held.
    fn shutdown(&mut self, _out: &mut Vec<Batch>) {}
}

// ---------------------------------------------------------------------------
// Exporters
// ---------------------------------------------------------------------------

pub trait ExporterFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// The signals this exporter handles; it silently ignores the others.
    fn signals(&self) -> SignalSet;
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError>;
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Worth retrying (disk full, upstream unavailable): the engine retries the same
    /// batch with backoff; meanwhile its queue fills and receivers refuse new data.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help: the batch is dropped, logged and counted.
    #[error("{0}")]
    Permanent(String),
}

#[async_trait]
pub trait Exporter: Send {
    /// Opens files or connections; runs before any pipeline starts.
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        Ok(())
    }

    /// Exports one batch. Borrowed, so that a retry needs no copy.
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError>;

    /// Exports one batch as the engine holds it: shared with the other exporters and
    /// immutable, so an exporter that buffers batches (the Parquet archive) keeps a
    /// reference instead of a copy. The engine calls this; it defaults to [`Exporter::export`].
    async fn export_shared(&mut self, batch: &Arc<Batch>) -> Result<(), ExportError> {
        self.export(batch).await
    }

    /// True for exporters that queue and deliver asynchronously and therefore count
    /// `sent` and `dropped` themselves; otherwise the engine counts a successful
    /// [`Exporter::export`] as sent.
    fn counts_sent(&self) -> bool {
        false
    }

    /// How often [`Exporter::tick`] runs (flush intervals, rotation by age).
    /// The batch just exported (with success) must be durable before `ack` is done
    /// (end-to-end acknowledgements, `crate::ack`). The default is done at once: what an
    /// exporter's `export` returns from is as durable as it gets (a forward queue's fsync,
    /// a delivery upstream). Exporters that buffer or commit later complete it then.
    async fn ack_when_durable(&mut self, ack: crate::ack::Ack) {
        ack.done(true);
    }

    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    async fn tick(&mut self) -> Result<(), ExportError> {
        Ok(())
    }

    /// Flushes and closes; called once after the last batch.
    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        Ok(())
    }
}

pub struct ExporterContext {
    pub id: ComponentId,
    pub health: Arc<ComponentHealth>,
    /// Fires when the shutdown timeout is reached while draining: stop retrying, keep
    /// what can be kept (a persistent queue), count the rest as dropped, and return.
    pub abort: CancellationToken,
}

// ---------------------------------------------------------------------------
// Extensions
// ---------------------------------------------------------------------------

pub trait ExtensionFactory: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Extension>, ConfigError>;
}

#[async_trait]
pub trait Extension: Send {
    /// Starts before the pipelines and stops after they have drained.
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> Result<Task, ComponentError>;
}

/// An extension switched off by its config (a listener with an empty `endpoint`, e.g.
/// `OTTERLINE_DASHBOARD_ENDPOINT=`): it says so once at start and does nothing else.
pub struct Off {
    pub reason: &'static str,
}

#[async_trait]
impl Extension for Off {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> Result<Task, ComponentError> {
        tracing::info!(extension = %ctx.id, "off: {}", self.reason);
        Ok(Box::pin(async move {
            ctx.shutdown.cancelled_owned().await;
            Ok(())
        }))
    }
}

pub struct ExtensionContext {
    pub id: ComponentId,
    pub registry: Arc<HealthRegistry>,
    /// The extension's own health entry.
    pub health: Arc<ComponentHealth>,
    /// Subscribe here (during `start`) to see what pipelines hand to their exporters.
    pub taps: Arc<crate::tap::Taps>,
    pub shutdown: CancellationToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids() {
        let id = ComponentId::parse("otlp/in").unwrap();
        assert_eq!(id.type_name, "otlp");
        assert_eq!(id.name.as_deref(), Some("in"));
        assert_eq!(id.to_string(), "otlp/in");
        assert!(ComponentId::parse("").is_err());
        assert!(ComponentId::parse("otlp/").is_err());
        assert!(ComponentId::parse("9x").is_err());
        assert!(ComponentId::parse("ot lp").is_err());
    }
}
