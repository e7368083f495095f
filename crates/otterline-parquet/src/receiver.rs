//! The `parquet` receiver: replays a Parquet archive into the pipelines.
//!
//! Each selected signal is read by its own thread through a time-ordered merge
//! ([`crate::archive::SignalReader`]) and handed to the pipelines in batches of
//! `batch_size` items. `speed: max` sends as fast as the pipelines accept
//! (backpressure simply slows the reader); `speed: 60x` paces items so that one
//! minute of recorded time takes one second, so time-windowed processors see
//! realistic arrival. The receiver finishes when the archive is exhausted; when
//! every receiver of a service has finished, the service drains and exits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use otterline_core::component::{
    BuildContext, ComponentError, Receiver, ReceiverContext, ReceiverFactory, Refusal, Task,
};
use otterline_core::config::ConfigError;
use otterline_core::{Batch, Signal, SignalSet};

use crate::archive::{self, ArchiveFile, Selection, SignalReader};
use crate::rows;

/// Live counters of a replay, for progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    pub total_items: AtomicU64,
    pub total_bytes: AtomicU64,
    pub done_items: AtomicU64,
    pub done_bytes: AtomicU64,
    pub skipped_files: AtomicU64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetReceiverConfig {
    /// Archive directory, glob, or file.
    pub path: Option<String>,
    /// Only items at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Only items at or before this time (RFC 3339).
    pub to: Option<String>,
    pub signals: Vec<String>,
    /// `max`, or a multiple of recorded time such as `1x`, `60x`, `0.5x`.
    pub speed: String,
    /// Fail on a foreign or corrupt file instead of skipping it.
    pub strict: bool,
    /// Items per batch handed to the pipelines.
    pub batch_size: usize,
}

impl Default for ParquetReceiverConfig {
    fn default() -> Self {
        ParquetReceiverConfig {
            path: None,
            from: None,
            to: None,
            signals: Vec::new(),
            speed: "max".into(),
            strict: false,
            batch_size: 1000,
        }
    }
}

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Max,
    Factor(f64),
}

impl Speed {
    pub fn parse(s: &str) -> Result<Speed, String> {
        let t = s.trim();
        if t == "max" {
            return Ok(Speed::Max);
        }
        let f: f64 = t
            .strip_suffix('x')
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| format!("invalid speed {s:?}: use `max` or a factor such as `1x`, `60x`, `0.5x`"))?;
        if !(f.is_finite() && f > 0.0) {
            return Err(format!("invalid speed {s:?}: the factor must be more than 0"));
        }
        Ok(Speed::Factor(f))
    }
}

/// Parses a time (RFC 3339, a date, or a duration ago) into Unix nanoseconds.
pub fn parse_time(s: &str) -> Result<i64, String> {
    otterline_core::time::parse_time_arg_nanos(s)
}

#[derive(Default)]
pub struct ParquetReceiverFactory {
    progress: Option<Arc<Progress>>,
}

impl ParquetReceiverFactory {
    /// A factory whose receivers report into `progress` (used by `otterline replay`).
    pub fn with_progress(progress: Arc<Progress>) -> Self {
        ParquetReceiverFactory { progress: Some(progress) }
    }
}

impl ReceiverFactory for ParquetReceiverFactory {
    fn type_name(&self) -> &'static str {
        "parquet"
    }
    fn description(&self) -> &'static str {
        "replays a Parquet archive (directory, glob or file) in time order, at max speed or a multiple of real time"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Receiver>, ConfigError> {
        let cfg: ParquetReceiverConfig = ctx.parse()?;
        let Some(path) = cfg.path.clone().filter(|p| !p.is_empty()) else {
            return Err(ctx.error("path", "`path` is required: an archive directory, a glob, or a file"));
        };
        let from = cfg.from.as_deref().map(parse_time).transpose().map_err(|e| ctx.error("from", e))?;
        let to = cfg.to.as_deref().map(parse_time).transpose().map_err(|e| ctx.error("to", e))?;
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(ctx.error("to", "`to` is before `from`"));
            }
        }
        let mut signals = if cfg.signals.is_empty() { SignalSet::ALL } else { SignalSet::NONE };
        for s in &cfg.signals {
            match Signal::parse(s) {
                Some(sig) => signals = signals.with(sig),
                None => return Err(ctx.error("signals", format!("unknown signal {s:?}: use traces, metrics or logs"))),
            }
        }
        let speed = Speed::parse(&cfg.speed).map_err(|e| ctx.error("speed", e))?;
        if cfg.batch_size == 0 {
            return Err(ctx.error("batch_size", "must be at least 1"));
        }
        Ok(Box::new(ParquetReceiver {
            path,
            sel: Selection { from, to, signals },
            speed,
            strict: cfg.strict,
            batch_size: cfg.batch_size,
            progress: self.progress.clone().unwrap_or_default(),
        }))
    }
}

struct ParquetReceiver {
    path: String,
    sel: Selection,
    speed: Speed,
    strict: bool,
    batch_size: usize,
    progress: Arc<Progress>,
}

/// A chunk on its way from a reader thread: the batch, its first item time, its size.
struct Chunk {
    batch: Batch,
    first_ts: i64,
    items: u64,
    bytes: u64,
}

#[async_trait]
impl Receiver for ParquetReceiver {
    async fn start(self: Box<Self>, ctx: ReceiverContext) -> Result<Task, ComponentError> {
        let (path, sel) = (self.path.clone(), self.sel);
        let (files, skipped) = tokio::task::spawn_blocking(move || archive::open(&path, &sel))
            .await
            .map_err(|e| ComponentError::new(format!("archive scan panicked: {e}")))?
            .map_err(ComponentError::new)?;
        for s in &skipped {
            tracing::warn!(receiver = %ctx.id, file = %s.path.display(), "skipping: {}", s.reason);
        }
        if self.strict && !skipped.is_empty() {
            let list: Vec<String> = skipped.iter().map(|s| format!("{}: {}", s.path.display(), s.reason)).collect();
            return Err(ComponentError::new(format!(
                "strict replay: {} unusable file(s): {}",
                skipped.len(),
                list.join("; ")
            )));
        }
        let p = &self.progress;
        p.skipped_files.fetch_add(skipped.len() as u64, Ordering::Relaxed);
        p.total_items.fetch_add(files.iter().map(|f| f.rows).sum(), Ordering::Relaxed);
        p.total_bytes.fetch_add(files.iter().map(|f| f.bytes).sum(), Ordering::Relaxed);
        tracing::info!(receiver = %ctx.id, files = files.len(), skipped = skipped.len(), path = %self.path, "replaying archive");

        // Recorded time zero: the first item of any selected signal.
        let origin = files.iter().map(|f| f.min_ts.max(self.sel.from.unwrap_or(i64::MIN))).min().unwrap_or(0);
        let mut tasks = Vec::new();
        for signal in self.sel.signals.iter() {
            let mine: Vec<ArchiveFile> = files.iter().filter(|f| f.signal == signal).cloned().collect();
            if mine.is_empty() {
                continue;
            }
            if !ctx.output.accepts(signal) {
                tracing::info!(receiver = %ctx.id, signal = %signal, "no pipeline takes {signal} from this receiver; not reading them");
                continue;
            }
            let (tx, rx) = mpsc::channel::<Result<Chunk, String>>(4);
            let mut reader = SignalReader::new(signal, mine.clone(), self.sel, self.batch_size, self.strict);
            if let Speed::Factor(f) = self.speed {
                // Send at least every 10 ms of wall-clock time.
                reader = reader.with_window((10_000_000.0 * f) as i64);
            }
            let bytes_per_row: f64 = mine.iter().map(|f| f.bytes as f64).sum::<f64>()
                / mine.iter().map(|f| f.rows as f64).sum::<f64>().max(1.0);
            std::thread::Builder::new()
                .name(format!("replay-{signal}"))
                .spawn(move || read_thread(reader, tx, bytes_per_row))
                .map_err(|e| ComponentError::new(format!("cannot start a reader thread: {e}")))?;
            tasks.push(send_loop(
                rx,
                ctx.output.clone(),
                self.speed,
                origin,
                ctx.shutdown.clone(),
                self.progress.clone(),
            ));
        }
        let id = ctx.id.to_string();
        Ok(Box::pin(async move {
            // Signals are paced independently: run them concurrently.
            let results = futures::future::join_all(tasks).await;
            for r in results {
                r?;
            }
            tracing::info!(receiver = %id, "archive replay finished");
            Ok(())
        }))
    }
}

fn read_thread(mut reader: SignalReader, tx: mpsc::Sender<Result<Chunk, String>>, bytes_per_row: f64) {
    loop {
        let msg = match reader.next_chunk() {
            Ok(Some(rows)) => {
                let first_ts = match &rows {
                    rows::Rows::Spans(v) => v.first().map(|r| r.ts),
                    rows::Rows::Points(v) => v.first().map(|r| r.ts),
                    rows::Rows::Logs(v) => v.first().map(|r| r.ts),
                }
                .unwrap_or(0);
                let items = rows.len() as u64;
                Ok(Chunk { batch: rows::group(rows), first_ts, items, bytes: (items as f64 * bytes_per_row) as u64 })
            }
            Ok(None) => return,
            Err(e) => Err(e),
        };
        let stop = msg.is_err();
        if tx.blocking_send(msg).is_err() || stop {
            return;
        }
    }
}

async fn send_loop(
    mut rx: mpsc::Receiver<Result<Chunk, String>>,
    output: otterline_core::component::Output,
    speed: Speed,
    origin: i64,
    shutdown: CancellationToken,
    progress: Arc<Progress>,
) -> Result<(), ComponentError> {
    let started = tokio::time::Instant::now();
    while let Some(msg) = rx.recv().await {
        let chunk = msg.map_err(|e| ComponentError::new(format!("replay failed: {e}")))?;
        if let Speed::Factor(f) = speed {
            let offset = Duration::from_nanos(((chunk.first_ts - origin).max(0) as f64 / f) as u64);
            tokio::select! {
                _ = tokio::time::sleep_until(started + offset) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        tokio::select! {
            r = output.send_waiting(chunk.batch) => match r {
                Ok(()) => {}
                Err(Refusal::ShuttingDown) => return Ok(()),
                Err(e) => return Err(ComponentError::new(e.to_string())),
            },
            _ = shutdown.cancelled() => return Ok(()),
        }
        progress.done_items.fetch_add(chunk.items, Ordering::Relaxed);
        progress.done_bytes.fetch_add(chunk.bytes, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds() {
        assert_eq!(Speed::parse("max").unwrap(), Speed::Max);
        assert_eq!(Speed::parse("60x").unwrap(), Speed::Factor(60.0));
        assert_eq!(Speed::parse("0.5x").unwrap(), Speed::Factor(0.5));
        assert!(Speed::parse("fast").is_err());
        assert!(Speed::parse("0x").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
