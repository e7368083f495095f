//! Builds components from a [`Config`] and runs the pipelines.
//!
//! ```text
//!  receiver ─Output─┬─> [pipeline queue] ─> pipeline task: p1 → p2 → … ─┬─> [exporter queue] ─> exporter task
//!  receiver ────────┘        (bounded)         (processors in order)     └─> [exporter queue] ─> exporter task
//! ```
//!
//! Invariants:
//! - Every queue is bounded. A full exporter queue blocks its pipelines; a full
//!   pipeline queue makes receivers refuse with a retryable error. Nothing a
//!   receiver acknowledged is dropped silently: a batch leaves the system only by
//!   being exported, or by an exporter's permanent error (logged and counted).
//! - Shutdown drains front to back: receivers stop accepting and drop their
//!   senders; each pipeline drains its queue, flushes its processors, and drops
//!   its exporter senders; each exporter drains and flushes. Channel closure is
//!   the only shutdown signal inside the engine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::{Backoff, BackoffPolicy};
use crate::component::{
    BuildContext, ComponentError, ComponentId, ComponentKind, ExportError, Exporter, ExporterContext, Extension,
    ExtensionContext, Output, Processor, Receiver, ReceiverContext,
};
use crate::config::{ComponentDecl, Config, ConfigError, Diagnostics, ServiceConfig};
use crate::health::{ComponentHealth, HealthRegistry, Phase, Status};
use crate::pdata::{Batch, SignalSet};
use crate::registry::Registry;

struct BuiltReceiver {
    id: ComponentId,
    receiver: Box<dyn Receiver>,
    /// Indexes of the pipelines fed by this receiver.
    pipelines: Vec<usize>,
    signals: SignalSet,
}

struct BuiltPipeline {
    name: String,
    signals: SignalSet,
    processors: Vec<(ComponentId, Box<dyn Processor>)>,
    /// Indexes into `exporters`.
    exporters: Vec<usize>,
}

struct BuiltExporter {
    id: ComponentId,
    exporter: Box<dyn Exporter>,
    signals: SignalSet,
}

/// A validated, built service, ready to run.
pub struct Service {
    receivers: Vec<BuiltReceiver>,
    pipelines: Vec<BuiltPipeline>,
    exporters: Vec<BuiltExporter>,
    extensions: Vec<(ComponentId, Box<dyn Extension>)>,
    pub config: ServiceConfig,
}

fn unknown_type(kind: ComponentKind, decl: &ComponentDecl, registry: &Registry) -> ConfigError {
    let names = registry.names(kind);
    let hint = closest(&decl.id.type_name, &names).map(|n| format!("did you mean `{n}`? ")).unwrap_or_default();
    ConfigError::at(
        &decl.mark,
        &decl.path(),
        format!(
            "unknown {} type `{}`; {hint}known types: {} (run `otterline components` for the list)",
            kind.as_str(),
            decl.id.type_name,
            names.join(", ")
        ),
    )
}

/// The known name nearest to a mistyped one (ignoring case, `_` and `-`), if it is close.
fn closest<'a>(typed: &str, names: &[&'a str]) -> Option<&'a str> {
    let norm = |s: &str| s.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect::<Vec<_>>();
    let t = norm(typed);
    let (best, d) = names.iter().map(|n| (*n, edit_distance(&t, &norm(n)))).min_by_key(|(_, d)| *d)?;
    (d <= 2 && d < t.len()).then_some(best)
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Builds every component of `config`: their configs are parsed and checked here,
/// so `otterline validate` and a real start report the same errors.
pub fn build(config: &Config, registry: &Registry, diags: &mut Diagnostics) -> Option<Service> {
    // End-to-end acknowledgements need every processor to pass batches through: one that
    // holds them back (`batch`) would make a receiver answer before the data is durable.
    for p in &config.service.pipelines {
        let Some(buffering) = p.processors.iter().find(|r| r.id.type_name == "batch") else { continue };
        for r in &p.receivers {
            let acked = config.components.iter().any(|c| {
                c.kind == ComponentKind::Receiver
                    && c.id == r.id
                    && c.config.get("acknowledgements").and_then(|n| n.as_str()) == Some("true")
            });
            if acked {
                diags.errors.push(ConfigError::at(
                    &buffering.mark,
                    &format!("service.pipelines.{}.processors", p.name),
                    format!(
                        "receiver `{}` has acknowledgements on, which a `batch` processor would answer before the data is durable; remove `{}` from this pipeline (exporters batch for themselves) or turn acknowledgements off",
                        r.id, buffering.id
                    ),
                ));
            }
        }
    }
    // Receivers, exporters and extensions: one instance each (also validates unused ones).
    let mut receivers: Vec<BuiltReceiver> = Vec::new();
    let mut exporters: Vec<BuiltExporter> = Vec::new();
    let mut extensions = Vec::new();
    for d in &config.components {
        let bctx = BuildContext { id: &d.id, config: &d.config, path: d.path(), mark: &d.mark };
        match d.kind {
            ComponentKind::Receiver => match registry.receivers.get(d.id.type_name.as_str()) {
                None => diags.errors.push(unknown_type(d.kind, d, registry)),
                Some(f) => match f.build(&bctx) {
                    Ok(r) => receivers.push(BuiltReceiver {
                        id: d.id.clone(),
                        receiver: r,
                        pipelines: Vec::new(),
                        signals: f.signals(),
                    }),
                    Err(e) => diags.errors.push(e),
                },
            },
            ComponentKind::Exporter => match registry.exporters.get(d.id.type_name.as_str()) {
                None => diags.errors.push(unknown_type(d.kind, d, registry)),
                Some(f) => match f.build(&bctx) {
                    Ok(e) => exporters.push(BuiltExporter { id: d.id.clone(), exporter: e, signals: f.signals() }),
                    Err(e) => diags.errors.push(e),
                },
            },
            ComponentKind::Extension => match registry.extensions.get(d.id.type_name.as_str()) {
                None => diags.errors.push(unknown_type(d.kind, d, registry)),
                Some(f) => match f.build(&bctx) {
                    Ok(e) => {
                        if config.service.extensions.iter().any(|r| r.id == d.id) {
                            extensions.push((d.id.clone(), e));
                        }
                    }
                    Err(e) => diags.errors.push(e),
                },
            },
            ComponentKind::Processor => match registry.processors.get(d.id.type_name.as_str()) {
                None => diags.errors.push(unknown_type(d.kind, d, registry)),
                // Validate once here; pipelines build their own instances below.
                Some(f) => {
                    if let Err(e) = f.build(&bctx) {
                        diags.errors.push(e);
                    }
                }
            },
        }
    }

    let mut pipelines = Vec::new();
    for (pi, p) in config.service.pipelines.iter().enumerate() {
        let ppath = format!("service.pipelines.{}", p.name);
        let mut processors = Vec::new();
        for r in &p.processors {
            let Some(decl) = config.component(ComponentKind::Processor, &r.id) else { continue };
            let Some(f) = registry.processors.get(decl.id.type_name.as_str()) else { continue };
            let bctx = BuildContext { id: &decl.id, config: &decl.config, path: decl.path(), mark: &decl.mark };
            if let Ok(proc_) = f.build(&bctx) {
                processors.push((decl.id.clone(), proc_));
            }
        }
        for r in &p.receivers {
            if let Some(br) = receivers.iter_mut().find(|b| b.id == r.id) {
                let overlap =
                    SignalSet::ALL.iter().filter(|s| br.signals.contains(*s) && p.signals.contains(*s)).count();
                if overlap == 0 {
                    diags.errors.push(ConfigError::at(
                        &r.mark,
                        &format!("{ppath}.receivers"),
                        format!(
                            "receiver `{}` produces {} but pipeline `{}` takes only {}",
                            r.id, br.signals, p.name, p.signals
                        ),
                    ));
                } else {
                    br.pipelines.push(pi);
                }
            }
        }
        let mut exp_idx = Vec::new();
        for r in &p.exporters {
            if let Some(i) = exporters.iter().position(|b| b.id == r.id) {
                let handles_any = p.signals.iter().any(|s| exporters[i].signals.contains(s));
                if !handles_any && p.processors.is_empty() {
                    diags.warnings.push(ConfigError::at(
                        &r.mark,
                        &format!("{ppath}.exporters"),
                        format!(
                            "exporter `{}` handles {} but pipeline `{}` carries only {}: it will receive nothing",
                            r.id, exporters[i].signals, p.name, p.signals
                        ),
                    ));
                }
                exp_idx.push(i);
            }
        }
        pipelines.push(BuiltPipeline { name: p.name.clone(), signals: p.signals, processors, exporters: exp_idx });
    }

    if !diags.is_ok() {
        return None;
    }
    // Unused receivers and exporters are validated above but do not run.
    receivers.retain(|r| !r.pipelines.is_empty());
    let used: Vec<bool> = (0..exporters.len()).map(|i| pipelines.iter().any(|p| p.exporters.contains(&i))).collect();
    let mut remap = vec![usize::MAX; exporters.len()];
    let mut kept = Vec::new();
    for (i, e) in exporters.into_iter().enumerate() {
        if used[i] {
            remap[i] = kept.len();
            kept.push(e);
        }
    }
    for p in &mut pipelines {
        for e in &mut p.exporters {
            *e = remap[*e];
        }
    }
    Some(Service { receivers, pipelines, exporters: kept, extensions, config: config.service.clone() })
}

/// Why the service stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{kind} `{id}` failed to start: {error}")]
    Start { kind: ComponentKind, id: ComponentId, error: ComponentError },
    #[error("{kind} `{id}` failed: {error}")]
    Failed { kind: ComponentKind, id: ComponentId, error: ComponentError },
    #[error("draining did not finish within the shutdown timeout ({0:?}); {1} batches were still queued")]
    DrainTimeout(Duration, usize),
}

impl Service {
    /// Names of the pipelines, in config order (for start-up logs).
    pub fn pipeline_names(&self) -> Vec<&str> {
        self.pipelines.iter().map(|p| p.name.as_str()).collect()
    }

    /// Runs until `shutdown` fires (or a receiver fails), then drains everything.
    pub async fn run(self, health: Arc<HealthRegistry>, shutdown: CancellationToken) -> Result<(), RunError> {
        let Service { receivers, pipelines, exporters, extensions, config } = self;
        let queues = config.queues.clone();

        // Extensions first, so the health endpoint reports start-up.
        let ext_token = CancellationToken::new();
        let taps = Arc::new(crate::tap::Taps::default());
        let mut ext_tasks: Vec<(ComponentId, JoinHandle<Result<(), ComponentError>>)> = Vec::new();
        for (id, ext) in extensions {
            let h = health.register(ComponentKind::Extension, &id.to_string());
            let ctx = ExtensionContext {
                id: id.clone(),
                registry: health.clone(),
                health: h.clone(),
                taps: taps.clone(),
                shutdown: ext_token.clone(),
            };
            match ext.start(ctx).await {
                Ok(task) => {
                    h.set(Status::Ok, "");
                    ext_tasks.push((id, tokio::spawn(task)));
                }
                Err(error) => {
                    h.set(Status::Failed, error.to_string());
                    ext_token.cancel();
                    return Err(RunError::Start { kind: ComponentKind::Extension, id, error });
                }
            }
        }

        // Exporters.
        let abort = CancellationToken::new();
        let mut exp_senders = Vec::new();
        let mut exp_tasks = Vec::new();
        let exp_signals: Vec<SignalSet> = exporters.iter().map(|e| e.signals).collect();
        for BuiltExporter { id, mut exporter, .. } in exporters {
            let h = health.register(ComponentKind::Exporter, &id.to_string());
            let ctx = ExporterContext { id: id.clone(), health: h.clone(), abort: abort.clone() };
            if let Err(error) = exporter.start(&ctx).await {
                ext_token.cancel();
                return Err(RunError::Start { kind: ComponentKind::Exporter, id, error });
            }
            h.set(Status::Ok, "");
            let (tx, rx) = mpsc::channel(queues.exporter_size);
            h.set_queue_probe(queue_probe(&tx));
            exp_senders.push(tx);
            exp_tasks.push((id.clone(), tokio::spawn(exporter_task(id, exporter, rx, h, abort.clone()))));
        }

        // Pipelines. `close_pipelines` closes their queues once the receivers have
        // stopped, even if a lingering connection still holds a sender.
        let close_pipelines = CancellationToken::new();
        let mut pipe_senders = Vec::new();
        let mut pipe_tasks = Vec::new();
        let mut pipe_gates: Vec<Vec<Arc<crate::component::Gate>>> = Vec::new();
        for p in pipelines {
            let h = health.register_named("pipeline", &p.name);
            h.set(Status::Ok, "");
            let (tx, rx) = mpsc::channel(queues.pipeline_size);
            h.set_queue_probe(queue_probe(&tx));
            pipe_senders.push((tx, p.signals));
            pipe_gates.push(p.processors.iter().filter_map(|(_, proc_)| proc_.admission_gate()).collect());
            let mut processors = p.processors;
            for (id, proc_) in processors.iter_mut() {
                let ph = health.register(ComponentKind::Processor, &format!("{id} ({})", p.name));
                ph.set(Status::Ok, "");
                proc_.attach(ph);
            }
            let routes: Vec<ExporterRoute> = p
                .exporters
                .iter()
                .map(|&i| ExporterRoute { tx: exp_senders[i].clone(), signals: exp_signals[i] })
                .collect();
            let route = Route { exporters: routes, taps: taps.for_pipeline(&p.name) };
            pipe_tasks.push(tokio::spawn(pipeline_task(p.name, rx, processors, route, h, close_pipelines.clone())));
        }
        // Only pipelines hold exporter senders (and tap senders) from now on.
        drop(exp_senders);
        taps.close();

        // Receivers last.
        let recv_token = CancellationToken::new();
        let mut recv_tasks: Vec<(ComponentId, JoinHandle<Result<(), ComponentError>>)> = Vec::new();
        let mut start_error = None;
        for r in receivers {
            let h = health.register(ComponentKind::Receiver, &r.id.to_string());
            let mut routes: [Vec<mpsc::Sender<crate::ack::Item>>; 3] = Default::default();
            let mut gates: [Vec<Arc<crate::component::Gate>>; 3] = Default::default();
            for &pi in &r.pipelines {
                let (tx, sigs) = &pipe_senders[pi];
                for s in sigs.iter().filter(|s| r.signals.contains(*s)) {
                    routes[s.index()].push(tx.clone());
                    gates[s.index()].extend(pipe_gates[pi].iter().cloned());
                }
            }
            let output = Output::with_gates(routes, gates, queues.admission_timeout, h.clone());
            let ctx = ReceiverContext { id: r.id.clone(), output, shutdown: recv_token.clone(), health: h.clone() };
            match r.receiver.start(ctx).await {
                Ok(task) => {
                    h.set(Status::Ok, "");
                    recv_tasks.push((r.id, tokio::spawn(task)));
                }
                Err(error) => {
                    h.set(Status::Failed, error.to_string());
                    start_error = Some(RunError::Start { kind: ComponentKind::Receiver, id: r.id, error });
                    break;
                }
            }
        }
        drop(pipe_senders);

        use futures::StreamExt;
        let mut watch: futures::stream::FuturesUnordered<_> =
            recv_tasks.into_iter().map(|(id, handle)| async move { (id, handle.await) }).collect();
        let mut result = Ok(());
        if let Some(e) = start_error {
            result = Err(e);
        } else {
            health.set_phase(Phase::Ready);
            info!("Everything is ready. Begin running and processing data.");
            // Run until a shutdown request, a receiver failure, or until every receiver
            // has finished its input (finite sources such as an archive replay).
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    next = watch.next() => match next {
                        None => {
                            info!("Every receiver has finished its input; draining");
                            break;
                        }
                        Some((id, res)) => {
                            let error = match res {
                                Ok(Ok(())) => {
                                    info!(receiver = %id, "receiver finished its input");
                                    continue;
                                }
                                Ok(Err(e)) => e,
                                Err(join) => ComponentError::new(format!("panicked: {join}")),
                            };
                            error!(receiver = %id, %error, "receiver failed; shutting down");
                            result = Err(RunError::Failed { kind: ComponentKind::Receiver, id, error });
                            break;
                        }
                    },
                }
            }
        }

        // Drain front to back, bounded by the shutdown timeout.
        health.set_phase(Phase::Draining);
        info!(timeout = ?config.shutdown_timeout, "Draining: receivers stop accepting; queued data is being exported");
        recv_token.cancel();
        let started = Instant::now();
        let drain = async {
            while let Some((id, r)) = watch.next().await {
                if let Ok(Err(e)) = r {
                    debug!(receiver = %id, error = %e, "receiver stopped with an error");
                }
            }
            close_pipelines.cancel();
            for t in pipe_tasks {
                let _ = t.await;
            }
            for (id, t) in exp_tasks {
                match t.await {
                    Ok(()) => {}
                    Err(e) => error!(exporter = %id, "exporter task panicked: {e}"),
                }
            }
        };
        tokio::pin!(drain);
        let timed_out = tokio::select! {
            _ = &mut drain => false,
            _ = tokio::time::sleep(config.shutdown_timeout) => true,
        };
        if timed_out {
            // Stop retrying; give exporters a moment to close their files.
            abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut drain).await;
            error!("shutdown timeout reached before every queue drained; undelivered batches were counted as dropped");
            if result.is_ok() {
                result = Err(RunError::DrainTimeout(config.shutdown_timeout, 0));
            }
        } else {
            info!(elapsed = ?started.elapsed(), "Drained; all queues are empty");
        }

        health.set_phase(Phase::Stopped);
        ext_token.cancel();
        for (id, t) in ext_tasks {
            if let Ok(Err(e)) = t.await {
                warn!(extension = %id, error = %e, "extension stopped with an error");
            }
        }
        result
    }
}

struct ExporterRoute {
    /// Exporters only read batches, so fan-out shares one batch between them.
    tx: mpsc::Sender<(Arc<Batch>, Option<crate::ack::Ack>)>,
    signals: SignalSet,
}

/// Where a pipeline's output goes: its exporters (waiting for room) and the extensions'
/// taps (never waiting).
struct Route {
    exporters: Vec<ExporterRoute>,
    taps: Vec<crate::tap::Tap>,
}

/// Reads a bounded queue's fill through a weak sender, so the probe never keeps it open.
fn queue_probe<T: Send + 'static>(tx: &mpsc::Sender<T>) -> crate::health::QueueProbe {
    let weak = tx.downgrade();
    let capacity = tx.max_capacity() as u64;
    Box::new(move || weak.upgrade().map(|tx| (capacity - tx.capacity() as u64, capacity)))
}

/// Runs a pipeline's processors over its queue and hands results to its exporters.
async fn pipeline_task(
    name: String,
    mut rx: mpsc::Receiver<crate::ack::Item>,
    mut processors: Vec<(ComponentId, Box<dyn Processor>)>,
    exporters: Route,
    health: Arc<ComponentHealth>,
    close: CancellationToken,
) {
    let mut out = Vec::new();
    // The ack of each batch in `out` (parallel to it; `None` for most).
    let mut acks: Vec<Option<crate::ack::Ack>> = Vec::new();
    let mut closed = false;
    loop {
        let deadline = processors.iter().filter_map(|(_, p)| p.next_deadline()).min();
        let next = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => Some(b),
                None => break,
            },
            _ = close.cancelled(), if !closed => {
                // No new batches from here on; what is queued is still received.
                rx.close();
                closed = true;
                continue;
            }
            _ = sleep_until(deadline) => None,
        };
        match next {
            Some((batch, ack)) => {
                let (start, signal) = (out.len(), batch.signal());
                run_chain(&mut processors, 0, batch, &mut out);
                if let Some(a) = ack {
                    // The outputs of the batch's own signal carry its ack; derived data does
                    // not (`deliver` pads `acks` to `out`).
                    acks.resize(start, None);
                    for b in &out[start..] {
                        acks.push((b.signal() == signal).then(|| a.share()));
                    }
                    // The pipeline's own hold: what it passed on now holds the ack itself (a
                    // batch the processors dropped on purpose is done here).
                    a.done(true);
                }
            }
            None => {
                let now = Instant::now();
                for i in 0..processors.len() {
                    if processors[i].1.next_deadline().is_some_and(|d| d <= now) {
                        let mut emitted = Vec::new();
                        processors[i].1.on_timer(now, &mut emitted);
                        for b in emitted {
                            run_chain(&mut processors, i + 1, b, &mut out);
                        }
                    }
                }
            }
        }
        deliver(&name, &exporters, &mut out, &mut acks, &health).await;
    }
    // Drain: flush processors front to back so that what one flushes passes the rest.
    for i in 0..processors.len() {
        let mut emitted = Vec::new();
        processors[i].1.shutdown(&mut emitted);
        for b in emitted {
            run_chain(&mut processors, i + 1, b, &mut out);
        }
    }
    deliver(&name, &exporters, &mut out, &mut acks, &health).await;
    debug!(pipeline = %name, "pipeline drained");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Passes `batch` through `processors[start..]`, appending the results to `out`.
fn run_chain(processors: &mut [(ComponentId, Box<dyn Processor>)], start: usize, batch: Batch, out: &mut Vec<Batch>) {
    if start >= processors.len() {
        out.push(batch);
        return;
    }
    let mut current = vec![batch];
    for (_, p) in processors[start..].iter_mut() {
        let mut next = Vec::with_capacity(current.len());
        for b in current.drain(..) {
            p.process(b, &mut next);
        }
        current = next;
        if current.is_empty() {
            return;
        }
    }
    out.append(&mut current);
}

async fn deliver(
    pipeline: &str,
    route: &Route,
    out: &mut Vec<Batch>,
    acks: &mut Vec<Option<crate::ack::Ack>>,
    health: &ComponentHealth,
) {
    acks.resize(out.len(), None);
    for (batch, ack) in out.drain(..).zip(acks.drain(..)) {
        if batch.is_empty() {
            if let Some(a) = ack {
                a.done(true);
            }
            continue;
        }
        let signal = batch.signal();
        let items = batch.item_count() as u64;
        let batch = Arc::new(batch);
        for tap in &route.taps {
            tap.offer(&batch);
        }
        for t in route.exporters.iter().filter(|e| e.signals.contains(signal)) {
            let held = ack.as_ref().map(crate::ack::Ack::share);
            // Waits while the exporter's queue is full: this is the backpressure path.
            if let Err(e) = t.tx.send((batch.clone(), held)).await {
                if let Some(a) = e.0 .1 {
                    a.done(false);
                }
                health.counters.add_dropped(signal, items);
                error!(pipeline, items, "an exporter stopped early; a batch could not be delivered to it");
            }
        }
        if let Some(a) = ack {
            a.done(true);
        }
    }
}

/// Feeds an exporter from its queue; retries retryable failures with backoff.
async fn exporter_task(
    id: ComponentId,
    mut exporter: Box<dyn Exporter>,
    mut rx: mpsc::Receiver<(Arc<Batch>, Option<crate::ack::Ack>)>,
    health: Arc<ComponentHealth>,
    abort: CancellationToken,
) {
    let tick_every = exporter.tick_interval();
    let mut retry_log = RetryLog::default();
    let mut ticker = tick_every.map(|d| {
        let mut i = tokio::time::interval_at(tokio::time::Instant::now() + d, d);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        let batch = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            _ = tick(&mut ticker) => {
                if let Err(e) = exporter.tick().await {
                    health.set(Status::Degraded, e.to_string());
                    warn!(exporter = %id, error = %e, "periodic flush failed");
                }
                continue;
            }
        };
        let (batch, ack) = batch;
        let ok = export_with_retry(&id, exporter.as_mut(), batch, (&health, &abort), &mut retry_log).await;
        if let Some(a) = ack {
            if ok {
                exporter.ack_when_durable(a).await;
            } else {
                a.done(false);
            }
        }
    }
    match exporter.shutdown().await {
        Ok(()) => health.set(Status::Stopped, ""),
        Err(e) => {
            health.set(Status::Failed, e.to_string());
            error!(exporter = %id, error = %e, "exporter failed to flush at shutdown");
        }
    }
}

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// How the engine retries an exporter's retryable failure: until it succeeds or the
/// shutdown timeout aborts it (meanwhile the queue fills, which is the backpressure).
const EXPORT_RETRY: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(5),
    multiplier: 2.0,
    randomization_factor: 0.0,
    max_elapsed: Duration::ZERO,
};

/// How often an exporter that keeps failing is logged: once when the failures start, then
/// at most every [`RetryLog::EVERY`] with the number of retries in between, and once when it
/// works again (a full disk must not flood the log with a line per retried batch).
#[derive(Default)]
struct RetryLog {
    since: Option<Instant>,
    last: Option<Instant>,
    retries: u64,
}

impl RetryLog {
    const EVERY: Duration = Duration::from_secs(30);

    /// Whether this failure is logged.
    fn failed(&mut self) -> bool {
        self.retries += 1;
        let now = Instant::now();
        self.since.get_or_insert(now);
        if self.last.is_none_or(|t| now.duration_since(t) >= Self::EVERY) {
            self.last = Some(now);
            return true;
        }
        false
    }

    /// The failures this success ends, if any: (retries, for how long).
    fn succeeded(&mut self) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        self.last = None;
        Some((std::mem::take(&mut self.retries), since.elapsed()))
    }
}

async fn export_with_retry(
    id: &ComponentId,
    exporter: &mut dyn Exporter,
    batch: Arc<Batch>,
    (health, abort): (&ComponentHealth, &CancellationToken),
    log: &mut RetryLog,
) -> bool {
    let items = batch.item_count() as u64;
    let signal = batch.signal();
    let mut backoff = Backoff::new(EXPORT_RETRY);
    loop {
        match exporter.export_shared(&batch).await {
            Ok(()) => {
                if !exporter.counts_sent() {
                    health.counters.add_sent(signal, items);
                }
                health.recover();
                if let Some((retries, since)) = log.succeeded() {
                    info!(exporter = %id, retries, after = ?since, "export works again");
                }
                return true;
            }
            Err(ExportError::Permanent(msg)) => {
                health.counters.add_dropped(signal, items);
                error!(exporter = %id, items, error = %msg, "export failed permanently; batch dropped");
                return false;
            }
            Err(ExportError::Retryable(msg)) => {
                // EXPORT_RETRY has no max_elapsed: it always has a next wait.
                let wait = backoff.next_wait(None).unwrap_or(EXPORT_RETRY.max);
                health.counters.add_retried(signal, items);
                health.set(Status::Degraded, msg.clone());
                if log.failed() {
                    warn!(exporter = %id, items, error = %msg, retry_in = ?wait, retries = log.retries, "export failed; will retry (new data is refused while the queue is full; logged again every 30 s while it fails)");
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = abort.cancelled() => {
                        health.counters.add_dropped(signal, items);
                        error!(exporter = %id, items, "gave up retrying at the shutdown timeout; batch dropped");
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::component::{ExporterFactory, ProcessorFactory, ReceiverFactory, Refusal, Task};
    use crate::config::{load, Source};
    use crate::pdata::{
        logs, metrics, trace, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest, Signal,
    };

    type Outputs = Arc<Mutex<Vec<Output>>>;
    type Seen = Arc<Mutex<Vec<(String, Batch)>>>;

    struct TestReceiver(Outputs);
    impl ReceiverFactory for TestReceiver {
        fn type_name(&self) -> &'static str {
            "test_in"
        }
        fn description(&self) -> &'static str {
            "test"
        }
        fn signals(&self) -> SignalSet {
            SignalSet::ALL
        }
        fn build(&self, _: &BuildContext<'_>) -> Result<Box<dyn Receiver>, ConfigError> {
            Ok(Box::new(TestReceiverInst(self.0.clone())))
        }
    }
    struct TestReceiverInst(Outputs);
    #[async_trait]
    impl Receiver for TestReceiverInst {
        async fn start(self: Box<Self>, ctx: ReceiverContext) -> Result<Task, ComponentError> {
            self.0.lock().unwrap().push(ctx.output);
            Ok(Box::pin(async move {
                ctx.shutdown.cancelled().await;
                Ok(())
            }))
        }
    }

    /// Collects what it exports; fails the first `fail_first` exports with a retryable error.
    struct TestExporter(Seen, usize, SignalSet);
    impl ExporterFactory for TestExporter {
        fn type_name(&self) -> &'static str {
            "test_out"
        }
        fn description(&self) -> &'static str {
            "test"
        }
        fn signals(&self) -> SignalSet {
            self.2
        }
        fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
            Ok(Box::new(TestExporterInst { seen: self.0.clone(), name: ctx.id.to_string(), fail: self.1 }))
        }
    }
    struct TestExporterInst {
        seen: Seen,
        name: String,
        fail: usize,
    }
    #[async_trait]
    impl Exporter for TestExporterInst {
        async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err(ExportError::Retryable("disk full".into()));
            }
            self.seen.lock().unwrap().push((self.name.clone(), batch.clone()));
            Ok(())
        }
    }

    /// Passes traces on and derives one metric batch per traces batch (a span count);
    /// holds logs back until shutdown.
    struct Derive;
    impl ProcessorFactory for Derive {
        fn type_name(&self) -> &'static str {
            "derive"
        }
        fn description(&self) -> &'static str {
            "test"
        }
        fn build(&self, _: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
            Ok(Box::new(DeriveInst(Vec::new())))
        }
    }
    struct DeriveInst(Vec<Batch>);
    impl Processor for DeriveInst {
        fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
            match batch.signal() {
                Signal::Traces => {
                    let n = batch.item_count();
                    out.push(batch);
                    out.push(metric_batch(n as i64));
                }
                Signal::Logs => self.0.push(batch),
                Signal::Metrics => out.push(batch),
            }
        }
        fn shutdown(&mut self, out: &mut Vec<Batch>) {
            out.append(&mut self.0);
        }
    }

    fn metric_batch(v: i64) -> Batch {
        Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![metrics::ResourceMetrics {
                scope_metrics: vec![metrics::ScopeMetrics {
                    metrics: vec![metrics::Metric {
                        name: "spans".into(),
                        data: Some(metrics::metric::Data::Gauge(metrics::Gauge {
                            data_points: vec![metrics::NumberDataPoint {
                                value: Some(metrics::number_data_point::Value::AsInt(v)),
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn traces(n: usize) -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                scope_spans: vec![trace::ScopeSpans { spans: vec![trace::Span::default(); n], ..Default::default() }],
                ..Default::default()
            }],
        })
    }

    fn logs_batch() -> Batch {
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![logs::ResourceLogs {
                scope_logs: vec![logs::ScopeLogs {
                    log_records: vec![logs::LogRecord::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    struct Harness {
        outputs: Outputs,
        seen: Seen,
        registry: Registry,
    }

    fn harness(fail_first: usize, out_signals: SignalSet) -> Harness {
        let outputs: Outputs = Default::default();
        let seen: Seen = Default::default();
        let registry = Registry::default()
            .receiver(TestReceiver(outputs.clone()))
            .exporter(TestExporter(seen.clone(), fail_first, out_signals))
            .processor(Derive);
        Harness { outputs, seen, registry }
    }

    async fn run_with(h: &Harness, yaml: &str, send: Vec<Batch>) -> Vec<(String, Batch)> {
        let (cfg, mut diags) = load(&[Source { name: "t.yaml".into(), text: yaml.into() }], &|_| None);
        let cfg = cfg.unwrap_or_else(|| panic!("{:?}", diags.errors));
        let svc = build(&cfg, &h.registry, &mut diags).unwrap_or_else(|| panic!("{:?}", diags.errors));
        let stop = CancellationToken::new();
        let health = Arc::new(HealthRegistry::default());
        let handle = tokio::spawn(svc.run(health.clone(), stop.clone()));
        while health.phase() != Phase::Ready {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let out = h.outputs.lock().unwrap()[0].clone();
        for b in send {
            out.send(b).await.unwrap();
        }
        drop(out);
        stop.cancel();
        handle.await.unwrap().unwrap();
        h.seen.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn routes_by_pipeline_signal_and_shares_exporters() {
        let h = harness(0, SignalSet::ALL);
        let yaml = "receivers: {test_in: }\nexporters: {test_out/a: , test_out/b: }\nservice:\n  pipelines:\n    traces: {receivers: [test_in], exporters: [test_out/a]}\n    everything: {receivers: [test_in], exporters: [test_out/a, test_out/b]}\n";
        let seen = run_with(&h, yaml, vec![traces(3), logs_batch()]).await;
        let count = |name: &str, s: Signal| seen.iter().filter(|(n, b)| n == name && b.signal() == s).count();
        // `traces` pipeline and `everything` both feed exporter a: two copies of the traces.
        assert_eq!(count("test_out/a", Signal::Traces), 2);
        assert_eq!(count("test_out/b", Signal::Traces), 1);
        // Logs only go through `everything`.
        assert_eq!(count("test_out/a", Signal::Logs), 1);
        assert_eq!(count("test_out/b", Signal::Logs), 1);
    }

    #[tokio::test]
    async fn derived_signals_continue_and_processors_flush_at_shutdown() {
        let h = harness(0, SignalSet::ALL);
        let yaml = "receivers: {test_in: }\nprocessors: {derive: }\nexporters: {test_out: }\nservice:\n  pipelines:\n    all: {receivers: [test_in], processors: [derive], exporters: [test_out]}\n";
        let seen = run_with(&h, yaml, vec![traces(4), logs_batch(), traces(2)]).await;
        let batches: Vec<&Batch> = seen.iter().map(|(_, b)| b).collect();
        assert_eq!(batches.iter().filter(|b| b.signal() == Signal::Traces).count(), 2);
        let metric_values: Vec<Batch> =
            batches.iter().filter(|b| b.signal() == Signal::Metrics).map(|b| (*b).clone()).collect();
        assert_eq!(metric_values, vec![metric_batch(4), metric_batch(2)]);
        // The held log batch came out at shutdown, last.
        assert_eq!(batches.last().unwrap().signal(), Signal::Logs);
    }

    #[tokio::test]
    async fn exporters_ignore_signals_they_do_not_handle() {
        let h = harness(0, SignalSet::of(Signal::Metrics));
        let yaml = "receivers: {test_in: }\nprocessors: {derive: }\nexporters: {test_out: }\nservice:\n  pipelines:\n    traces: {receivers: [test_in], processors: [derive], exporters: [test_out]}\n";
        let seen = run_with(&h, yaml, vec![traces(5)]).await;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, metric_batch(5));
    }

    #[tokio::test]
    async fn retryable_export_errors_are_retried_not_dropped() {
        let h = harness(2, SignalSet::ALL);
        let yaml = "receivers: {test_in: }\nexporters: {test_out: }\nservice:\n  pipelines:\n    traces: {receivers: [test_in], exporters: [test_out]}\n";
        let seen = run_with(&h, yaml, vec![traces(1), traces(2)]).await;
        assert_eq!(seen.iter().map(|(_, b)| b.item_count()).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_receiver_signal_no_pipeline_takes_is_refused() {
        let h = harness(0, SignalSet::ALL);
        let yaml = "receivers: {test_in: }\nexporters: {test_out: }\nservice:\n  pipelines:\n    metrics: {receivers: [test_in], exporters: [test_out]}\n";
        let (cfg, mut diags) = load(&[Source { name: "t.yaml".into(), text: yaml.into() }], &|_| None);
        let svc = build(&cfg.unwrap(), &h.registry, &mut diags).unwrap();
        let stop = CancellationToken::new();
        let health = Arc::new(HealthRegistry::default());
        let handle = tokio::spawn(svc.run(health.clone(), stop.clone()));
        while health.phase() != Phase::Ready {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let out = h.outputs.lock().unwrap()[0].clone();
        assert!(!out.accepts(Signal::Traces));
        assert_eq!(out.send(traces(1)).await, Err(Refusal::NoPipeline(Signal::Traces)));
        drop(out);
        stop.cancel();
        handle.await.unwrap().unwrap();
    }
}
