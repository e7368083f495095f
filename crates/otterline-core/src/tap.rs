//! Taps: read-only views of what pipelines hand to their exporters, for extensions.
//!
//! An extension that shows data (the dashboard) subscribes in its `start()` for the
//! signals it wants; every pipeline then offers each outgoing batch (the `Arc` the
//! exporters share, so no copy) to every matching tap with `try_send`. A tap never slows a
//! pipeline: when its queue is full the batch is skipped for that tap only and counted as
//! `tap_dropped_batches` on the extension's health entry. The pipeline's own delivery is
//! unaffected; the archive stays the record and a tap is a view.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::health::ComponentHealth;
use crate::{Batch, SignalSet};

/// The subscriptions made while extensions start; pipelines take a copy when they start.
#[derive(Default)]
pub struct Taps {
    subs: Mutex<Vec<Tap>>,
}

/// One subscription, as a pipeline sees it.
#[derive(Clone)]
pub struct Tap {
    tx: mpsc::Sender<Arc<Batch>>,
    signals: SignalSet,
    /// Pipelines to watch; empty watches every pipeline.
    pipelines: Vec<String>,
    health: Arc<ComponentHealth>,
}

impl Taps {
    /// Subscribes to batches of `signals` leaving `pipelines` (empty: all), with room for
    /// `capacity` batches in flight.
    pub fn subscribe(
        &self,
        signals: SignalSet,
        pipelines: Vec<String>,
        capacity: usize,
        health: Arc<ComponentHealth>,
    ) -> mpsc::Receiver<Arc<Batch>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        if let Ok(mut subs) = self.subs.lock() {
            subs.push(Tap { tx, signals, pipelines, health });
        }
        rx
    }

    /// The taps that watch `pipeline`.
    pub fn for_pipeline(&self, pipeline: &str) -> Vec<Tap> {
        self.subs
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|t| t.pipelines.is_empty() || t.pipelines.iter().any(|p| p == pipeline))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every subscription's sender, so that tap readers see the end once the
    /// pipelines (which hold copies) have stopped.
    pub fn close(&self) {
        if let Ok(mut subs) = self.subs.lock() {
            subs.clear();
        }
    }
}

impl Tap {
    /// Offers a batch without waiting; a full tap skips it and counts the skip.
    pub fn offer(&self, batch: &Arc<Batch>) {
        if !self.signals.contains(batch.signal()) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(batch.clone()) {
            self.health.add_extra("tap_dropped_batches", 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::{ExportLogsServiceRequest, ExportTraceServiceRequest};
    use crate::Signal;

    #[test]
    fn a_full_tap_skips_and_counts_and_filters_by_signal_and_pipeline() {
        let taps = Taps::default();
        let h = Arc::new(ComponentHealth::new("extension", "dashboard".into()));
        let mut rx = taps.subscribe(SignalSet::of(Signal::Logs), vec!["logs".into()], 1, h.clone());
        assert!(taps.for_pipeline("traces").is_empty());
        let tap = taps.for_pipeline("logs");
        assert_eq!(tap.len(), 1);
        let logs = Arc::new(Batch::Logs(ExportLogsServiceRequest::default()));
        let spans = Arc::new(Batch::Traces(ExportTraceServiceRequest::default()));
        tap[0].offer(&spans);
        tap[0].offer(&logs);
        tap[0].offer(&logs);
        assert_eq!(h.extra().get("tap_dropped_batches"), Some(&1));
        assert_eq!(rx.try_recv().map(|b| b.signal()).ok(), Some(Signal::Logs));
        assert!(rx.try_recv().is_err());
        taps.close();
        drop(tap);
        assert!(matches!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected)));
    }
}
