//! The exporter both `otlp` and `otlp_http` are: an optional batcher, the sending queue,
//! N consumers, and retry with backoff around a [`Transport`] that does one attempt.
//!
//! ```text
//! export(batch) ─> [batcher] ─> encode once ─> SendQueue (memory | disk) ─> consumer × N ─> Transport::send
//!                                                       ^ full: export() waits (backpressure) or drops oldest
//! ```
//!
//! Counting (on the exporter's health entry, per signal): `sent` = items the upstream
//! accepted; `dropped` = items refused for good (400 / InvalidArgument / partial-success
//! rejections), given up on after `max_elapsed_time`, pushed out by `drop_oldest`, or
//! still in a memory queue at the shutdown timeout; `retried` = items of failed attempts
//! that were retried. Delivery is at least once: a request whose response is lost is sent
//! again, and a persistent queue re-sends what was in flight at a crash.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use otterline_core::backoff::Backoff;
use otterline_core::batching::Batcher;
use otterline_core::component::{BuildContext, ComponentError, ExportError, Exporter, ExporterContext};
use otterline_core::health::{ComponentHealth, Status};
use otterline_core::pdata::json;
use otterline_core::{Batch, Signal};

use crate::queue::{Encoding, Lease, QueueOptions, Request, SendQueue};
use crate::settings::{QueueSettings, RetrySettings};

/// The result of one attempt to send a request.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted; `rejected` items were refused in a partial success.
    Delivered { rejected: u64, message: String },
    /// Worth another attempt (`after`: the upstream's Retry-After / RetryInfo).
    Retry { reason: String, after: Option<Duration> },
    /// Retrying cannot help (malformed, unauthorized, too large).
    Permanent(String),
}

/// One protocol's way of sending an encoded request.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// How payloads are encoded for this transport.
    fn encoding(&self) -> Encoding;
    async fn send(&self, req: &Request) -> Outcome;
}

/// Encodes `batch` as `encoding`.
pub fn encode(batch: &Batch, encoding: Encoding) -> Bytes {
    match encoding {
        Encoding::Protobuf => Bytes::from(batch.encode_protobuf()),
        Encoding::Json => Bytes::from(json::encode(batch).into_bytes()),
    }
}

/// `batch` as a queue request in `encoding` (encoded once, here).
fn request(batch: &Batch, encoding: Encoding) -> Request {
    Request { signal: batch.signal(), items: batch.item_count() as u64, encoding, payload: encode(batch, encoding) }
}

/// A request in `want` encoding (persistent records written under another setting are transcoded).
fn in_encoding(req: Request, want: Encoding) -> Result<Request, String> {
    if req.encoding == want {
        return Ok(req);
    }
    let batch = match req.encoding {
        Encoding::Protobuf => Batch::decode_protobuf(req.signal, &req.payload).map_err(|e| e.to_string())?,
        Encoding::Json => json::decode(req.signal, &req.payload).map_err(|e| e.to_string())?,
    };
    Ok(Request { payload: encode(&batch, want), encoding: want, ..req })
}

/// What became of a request.
enum Fate {
    /// Delivered or refused for good (counted): acknowledge it.
    Done,
    /// Stopping while the upstream fails: a persistent queue keeps it for the next start.
    Kept,
}

struct Shared<T> {
    transport: T,
    retry: RetrySettings,
    health: Arc<ComponentHealth>,
    abort: CancellationToken,
    /// Set when the exporter is shutting down.
    draining: CancellationToken,
    persistent: bool,
    name: String,
}

pub struct Forwarder<T: Transport> {
    shared: Option<Arc<Shared<T>>>,
    transport: Option<T>,
    retry: RetrySettings,
    queue_settings: QueueSettings,
    queue: Option<Arc<SendQueue>>,
    consumers: Vec<JoinHandle<()>>,
    batcher: Option<Batcher>,
}

impl<T: Transport> Forwarder<T> {
    pub fn new(
        _ctx: &BuildContext<'_>,
        transport: T,
        retry: RetrySettings,
        queue_settings: QueueSettings,
    ) -> Forwarder<T> {
        let batcher =
            queue_settings.batch.as_ref().filter(|_| queue_settings.enabled).map(|b| Batcher::new(b.batch_config()));
        Forwarder {
            shared: None,
            transport: Some(transport),
            retry,
            queue_settings,
            queue: None,
            consumers: Vec::new(),
            batcher,
        }
    }

    fn shared(&self) -> Result<&Arc<Shared<T>>, ExportError> {
        self.shared.as_ref().ok_or_else(|| ExportError::Permanent("exporter used before start".into()))
    }

    /// Encodes and queues (or, without a queue, sends) what the batcher let out.
    async fn forward(&mut self, batches: Vec<Batch>) -> Result<(), ExportError> {
        let shared = self.shared()?.clone();
        let encoding = shared.transport.encoding();
        for b in batches {
            if b.is_empty() {
                continue;
            }
            self.submit(&shared, request(&b, encoding)).await?;
        }
        Ok(())
    }

    async fn submit(&self, shared: &Arc<Shared<T>>, req: Request) -> Result<(), ExportError> {
        match &self.queue {
            None => {
                deliver(shared, &req).await;
                Ok(())
            }
            Some(q) => tokio::select! {
                r = q.push(req) => r.map_err(|e| ExportError::Retryable(e.to_string())),
                _ = shared.abort.cancelled() => Err(ExportError::Retryable("shutdown timeout reached while the sending queue was full".into())),
            },
        }
    }
}

#[async_trait]
impl<T: Transport> Exporter for Forwarder<T> {
    async fn start(&mut self, ctx: &ExporterContext) -> Result<(), ComponentError> {
        let Some(transport) = self.transport.take() else {
            return Err(ComponentError::new("started twice"));
        };
        let q = &self.queue_settings;
        let mut persistent = false;
        if q.enabled {
            let dir = q.storage.as_ref().map(|d| d.join(sanitize(&ctx.id.to_string())));
            persistent = dir.is_some();
            let opts = QueueOptions {
                capacity: q.queue_size,
                sizer: q.sizer,
                on_full: q.on_full,
                dir: dir.clone(),
                fsync: q.fsync,
            };
            let queue = SendQueue::open(opts, ctx.health.clone()).map_err(|e| {
                ComponentError::new(match &dir {
                    Some(d) => format!("cannot open the persistent sending queue at {}: {e}", d.display()),
                    None => e.to_string(),
                })
            })?;
            self.queue = Some(Arc::new(queue));
        }
        let shared = Arc::new(Shared {
            transport,
            retry: self.retry.clone(),
            health: ctx.health.clone(),
            abort: ctx.abort.clone(),
            draining: CancellationToken::new(),
            persistent,
            name: ctx.id.to_string(),
        });
        if let Some(queue) = &self.queue {
            for _ in 0..q.num_consumers {
                self.consumers.push(tokio::spawn(consume(shared.clone(), queue.clone())));
            }
        }
        self.shared = Some(shared);
        Ok(())
    }

    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        match self.batcher.as_mut() {
            None => {
                let shared = self.shared()?.clone();
                let req = request(batch, shared.transport.encoding());
                self.submit(&shared, req).await
            }
            Some(b) => {
                let mut out = Vec::new();
                b.add(batch.clone(), &mut out);
                self.forward(out).await
            }
        }
    }

    fn counts_sent(&self) -> bool {
        true
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.queue_settings
            .batch
            .as_ref()
            .filter(|_| self.batcher.is_some())
            .map(|b| (b.flush_timeout / 4).max(Duration::from_millis(5)))
    }

    async fn tick(&mut self) -> Result<(), ExportError> {
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        if let Some(b) = self.batcher.as_mut() {
            if b.next_deadline().is_some_and(|d| d <= now) {
                b.flush_due(now, &mut out);
            }
        }
        self.forward(out).await
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        let mut out = Vec::new();
        if let Some(b) = self.batcher.as_mut() {
            b.flush(&mut out);
        }
        if let Err(e) = self.forward(out).await {
            warn!(error = %e, "could not queue the last batch at shutdown");
        }
        let Some(shared) = self.shared.clone() else { return Ok(()) };
        shared.draining.cancel();
        let Some(queue) = self.queue.clone() else { return Ok(()) };
        queue.close();
        for c in self.consumers.drain(..) {
            let _ = c.await;
        }
        let (requests, items) = queue.len();
        if requests > 0 {
            if queue.is_persistent() {
                info!(exporter = %shared.name, requests, items, "left in the persistent sending queue; they are sent at the next start");
            } else {
                for (signal, n) in queue.take_all() {
                    shared.health.counters.add_dropped(signal, n);
                }
                error!(exporter = %shared.name, requests, items, "the shutdown timeout was reached with data in the in-memory sending queue; it was dropped (counted). Use sending_queue.storage to keep it across restarts");
            }
        }
        Ok(())
    }
}

/// A consumer: sends queued requests until the queue is closed and empty.
async fn consume<T: Transport>(shared: Arc<Shared<T>>, queue: Arc<SendQueue>) {
    while let Some(lease) = queue.pop().await {
        let Lease { request, .. } = &lease;
        match deliver(&shared, request).await {
            Fate::Done => queue.ack(lease),
            Fate::Kept => {
                // Stopping: leave this one (and the rest) on disk for the next start.
                drop(lease);
                return;
            }
        }
    }
}

/// Sends one request, retrying retryable failures with backoff; counts the result.
async fn deliver<T: Transport>(shared: &Shared<T>, req: &Request) -> Fate {
    let health = &shared.health;
    let (signal, items) = (req.signal, req.items);
    let req = match in_encoding(req.clone(), shared.transport.encoding()) {
        Ok(r) => r,
        Err(e) => {
            health.counters.add_dropped(signal, items);
            error!(exporter = %shared.name, items, error = %e, "a queued request cannot be decoded; dropped");
            return Fate::Done;
        }
    };
    let retry = &shared.retry;
    let mut backoff = Backoff::new(retry.backoff_policy());
    loop {
        if shared.abort.is_cancelled() {
            return stop(shared, signal, items);
        }
        let outcome = tokio::select! {
            o = shared.transport.send(&req) => o,
            _ = shared.abort.cancelled() => return stop(shared, signal, items),
        };
        match outcome {
            Outcome::Delivered { rejected, message } => {
                let rejected = rejected.min(items);
                health.counters.add_sent(signal, items - rejected);
                if rejected > 0 {
                    health.counters.add_dropped(signal, rejected);
                    warn!(exporter = %shared.name, rejected, message = %message, "the upstream rejected part of a request (partial success); those items are dropped");
                }
                health.recover();
                return Fate::Done;
            }
            Outcome::Permanent(msg) => {
                health.counters.add_dropped(signal, items);
                error!(exporter = %shared.name, signal = signal.as_str(), items, error = %msg, "the upstream refused a request permanently; dropped (retrying cannot help)");
                return Fate::Done;
            }
            Outcome::Retry { reason, after } => {
                if !retry.enabled {
                    health.counters.add_dropped(signal, items);
                    error!(exporter = %shared.name, items, error = %reason, "export failed and retry_on_failure is disabled; dropped");
                    return Fate::Done;
                }
                if shared.persistent && shared.draining.is_cancelled() {
                    return Fate::Kept;
                }
                let Some(wait) = backoff.next_wait(after) else {
                    health.counters.add_dropped(signal, items);
                    error!(exporter = %shared.name, items, error = %reason, elapsed = ?backoff.elapsed(), "gave up after retry_on_failure.max_elapsed_time; dropped");
                    return Fate::Done;
                };
                health.counters.add_retried(signal, items);
                health.set(Status::Degraded, reason.clone());
                warn!(exporter = %shared.name, items, error = %reason, retry_in = ?wait, "export failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shared.abort.cancelled() => return stop(shared, signal, items),
                    // A persistent queue need not wait out the backoff while stopping.
                    _ = shared.draining.cancelled(), if shared.persistent => return Fate::Kept,
                }
            }
        }
    }
}

/// The shutdown timeout hit while a request was pending.
fn stop<T>(shared: &Shared<T>, signal: Signal, items: u64) -> Fate {
    if shared.persistent {
        return Fate::Kept;
    }
    shared.health.counters.add_dropped(signal, items);
    error!(exporter = %shared.name, items, "shutdown timeout reached before the upstream accepted a request; dropped (counted)");
    Fate::Done
}

/// A component id as a directory name (`otlp/upstream` → `otlp_upstream`).
fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use otterline_core::config::yaml;
    use otterline_core::pdata::{trace, ExportTraceServiceRequest};
    use otterline_core::ComponentId;

    use crate::settings::QueueBatch;

    /// A transport that answers from a script (then `Delivered`) and records what it got.
    #[derive(Clone, Default)]
    struct Scripted {
        script: Arc<Mutex<VecDeque<Outcome>>>,
        sent: Arc<Mutex<Vec<u64>>>,
    }

    #[async_trait]
    impl Transport for Scripted {
        fn encoding(&self) -> Encoding {
            Encoding::Protobuf
        }
        async fn send(&self, req: &Request) -> Outcome {
            let next = self.script.lock().unwrap().pop_front();
            match next {
                Some(o) => o,
                None => {
                    self.sent.lock().unwrap().push(req.items);
                    Outcome::Delivered { rejected: 0, message: String::new() }
                }
            }
        }
    }

    fn traces(n: usize) -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                scope_spans: vec![trace::ScopeSpans { spans: vec![trace::Span::default(); n], ..Default::default() }],
                ..Default::default()
            }],
        })
    }

    fn retry(max_elapsed: Duration) -> RetrySettings {
        RetrySettings {
            initial_interval: Duration::from_millis(5),
            max_interval: Duration::from_millis(10),
            max_elapsed_time: max_elapsed,
            ..Default::default()
        }
    }

    async fn forwarder(
        t: Scripted,
        retry: RetrySettings,
        queue: QueueSettings,
    ) -> (Forwarder<Scripted>, Arc<ComponentHealth>, CancellationToken) {
        let id = ComponentId::parse("otlp").unwrap();
        let node = yaml::parse("t.yaml", "{}").unwrap();
        let mark = node.mark.clone();
        let ctx = BuildContext { id: &id, config: &node, path: "exporters.otlp".into(), mark: &mark };
        let mut f = Forwarder::new(&ctx, t, retry, queue);
        let health = Arc::new(ComponentHealth::new("exporter", "otlp".into()));
        let abort = CancellationToken::new();
        f.start(&ExporterContext { id, health: health.clone(), abort: abort.clone() }).await.unwrap();
        (f, health, abort)
    }

    #[tokio::test]
    async fn retryable_failures_are_retried_then_counted_as_sent() {
        let t = Scripted::default();
        t.script.lock().unwrap().extend([
            Outcome::Retry { reason: "down".into(), after: None },
            Outcome::Retry { reason: "down".into(), after: Some(Duration::from_millis(1)) },
        ]);
        let (mut f, h, _) = forwarder(t.clone(), retry(Duration::from_secs(10)), QueueSettings::default()).await;
        f.export(&traces(3)).await.unwrap();
        f.shutdown().await.unwrap();
        assert_eq!(*t.sent.lock().unwrap(), vec![3]);
        let c = h.counters.of(Signal::Traces);
        assert_eq!((c.sent, c.retried, c.dropped), (3, 6, 0));
    }

    #[tokio::test]
    async fn permanent_errors_and_exhausted_retries_drop_and_count() {
        let t = Scripted::default();
        t.script.lock().unwrap().push_back(Outcome::Permanent("400".into()));
        t.script.lock().unwrap().extend((0..1000).map(|_| Outcome::Retry { reason: "down".into(), after: None }));
        let queue = QueueSettings { num_consumers: 1, ..Default::default() };
        let (mut f, h, _) = forwarder(t.clone(), retry(Duration::from_millis(30)), queue).await;
        f.export(&traces(2)).await.unwrap();
        f.export(&traces(5)).await.unwrap();
        f.shutdown().await.unwrap();
        let c = h.counters.of(Signal::Traces);
        assert_eq!((c.sent, c.dropped), (0, 7));
    }

    #[tokio::test]
    async fn partial_success_counts_the_rejected_items_as_dropped() {
        let t = Scripted::default();
        t.script.lock().unwrap().push_back(Outcome::Delivered { rejected: 2, message: "bad ids".into() });
        let (mut f, h, _) = forwarder(t, retry(Duration::from_secs(1)), QueueSettings::default()).await;
        f.export(&traces(10)).await.unwrap();
        f.shutdown().await.unwrap();
        let c = h.counters.of(Signal::Traces);
        assert_eq!((c.sent, c.dropped), (8, 2));
    }

    #[tokio::test]
    async fn queue_batching_merges_small_requests_and_splits_big_ones() {
        let t = Scripted::default();
        let queue = QueueSettings {
            num_consumers: 1,
            batch: Some(QueueBatch { flush_timeout: Duration::from_secs(60), min_size: 10, max_size: 10 }),
            ..Default::default()
        };
        let (mut f, h, _) = forwarder(t.clone(), retry(Duration::from_secs(1)), queue).await;
        for _ in 0..4 {
            f.export(&traces(3)).await.unwrap();
        }
        f.export(&traces(25)).await.unwrap();
        f.shutdown().await.unwrap();
        let mut sent = t.sent.lock().unwrap().clone();
        sent.sort();
        // 3+3+3+3 = 12 → flushed at ≥ 10 and split at 10; then 2 + 25 = 27 → 10, 10, 7 at shutdown.
        assert_eq!(sent.iter().sum::<u64>(), 37);
        assert!(sent.iter().all(|&n| n <= 10), "{sent:?}");
        assert_eq!(h.counters.of(Signal::Traces).sent, 37);
    }

    #[tokio::test]
    async fn the_shutdown_timeout_drops_what_a_memory_queue_still_holds() {
        let t = Scripted::default();
        t.script.lock().unwrap().extend((0..100_000).map(|_| Outcome::Retry { reason: "down".into(), after: None }));
        let queue = QueueSettings { num_consumers: 1, ..Default::default() };
        let (mut f, h, abort) = forwarder(t, retry(Duration::ZERO), queue).await;
        for _ in 0..3 {
            f.export(&traces(4)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        abort.cancel();
        f.shutdown().await.unwrap();
        let c = h.counters.of(Signal::Traces);
        assert_eq!((c.sent, c.dropped), (0, 12));
    }

    #[test]
    fn ids_become_directory_names() {
        assert_eq!(sanitize("otlp/up.stream"), "otlp_up_stream");
    }
}
