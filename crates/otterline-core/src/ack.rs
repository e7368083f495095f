//! End-to-end acknowledgements: a receiver that answers only once every exporter on a
//! batch's path has made it durable (the archive's write-ahead log commit, the forward
//! queue's fsync, a JSON flush).
//!
//! An [`Ack`] counts what is still pending: the receiver's own hold, then one hold per
//! pipeline the batch was queued in and per exporter delivery a pipeline makes. Each holder
//! calls [`Ack::done`] once; the receiver's [`Ack::wait`] returns when the count reaches
//! zero, `false` if any holder failed. A processor's outputs of the batch's own signal carry
//! its ack (derived data, such as aggregate metrics, carries none); a batch a processor drops
//! on purpose is done when the processor returns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Clone)]
pub struct Ack(Arc<Inner>);

struct Inner {
    pending: AtomicUsize,
    failed: AtomicBool,
    notify: Notify,
}

impl Default for Ack {
    fn default() -> Self {
        Ack::new()
    }
}

impl Ack {
    /// An ack with one hold: the creator's.
    pub fn new() -> Ack {
        Ack(Arc::new(Inner { pending: AtomicUsize::new(1), failed: AtomicBool::new(false), notify: Notify::new() }))
    }

    /// One more holder.
    pub fn hold(&self) {
        self.0.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// A handle for one more holder (a pipeline, an exporter delivery), which it completes
    /// with [`Ack::done`].
    pub fn share(&self) -> Ack {
        self.hold();
        self.clone()
    }

    /// One holder is finished: `ok` if it made the batch durable.
    pub fn done(&self, ok: bool) {
        if !ok {
            self.0.failed.store(true, Ordering::Release);
        }
        if self.0.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.notify.notify_one();
        }
    }

    /// Waits until every holder is done; whether all succeeded. Call [`Ack::done`] for
    /// the creator's own hold first.
    pub async fn wait(&self) -> bool {
        loop {
            if self.0.pending.load(Ordering::Acquire) == 0 {
                return !self.0.failed.load(Ordering::Acquire);
            }
            self.0.notify.notified().await;
        }
    }
}

/// A batch on its way through a pipeline, with the ack of the request it came from.
pub type Item = (crate::Batch, Option<Ack>);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_holder_and_reports_a_failure() {
        let a = Ack::new();
        a.hold();
        a.hold();
        let w = a.clone();
        let waiter = tokio::spawn(async move { w.wait().await });
        a.done(true);
        a.done(true);
        assert!(!waiter.is_finished());
        a.done(true);
        assert!(waiter.await.unwrap());
        let b = Ack::new();
        b.hold();
        b.done(false);
        b.done(true);
        assert!(!b.wait().await);
    }
}
