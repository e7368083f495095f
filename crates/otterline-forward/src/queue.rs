//! The sending queue between an exporter's `export()` and its consumers: bounded, in
//! memory or on disk.
//!
//! In memory, a request is the encoded payload. On disk (`sending_queue.storage`), every
//! request is one file `<seq>-<signal>-<items>.otq` (format in `proto/otterline/v1/queue.proto`),
//! written to a temp name, fsynced and renamed before `push` returns, and deleted when the
//! consumer acknowledges it; only the index (sequence, signal, item count) is held in
//! memory, so a full queue of any size costs a few bytes per request. At start the
//! directory is scanned and the queue resumes in sequence order; temp files of requests
//! that were never acknowledged to the pipeline are removed, and records that fail their
//! checksum are moved to `corrupt/` and counted as dropped. A lock file keeps two
//! processes from sharing one directory.
//!
//! Invariant: a request leaves the queue only through [`SendQueue::ack`] (delivered or
//! permanently refused) or, with `on_full: drop_oldest`, by being dropped and counted.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use prost::Message;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use otterline_core::fsutil::{leftovers, PendingFile};
use otterline_core::health::ComponentHealth;
use otterline_core::Signal;
use otterline_proto::v1::{QueueEncoding, QueueRecord, QueueSignal};

use crate::settings::{OnFull, Sizer};

const MAGIC: &[u8; 4] = b"OTQ1";
const RECORD_VERSION: u32 = 1;
const EXTENSION: &str = "otq";

/// How a request's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

/// One export request waiting to be sent.
#[derive(Debug, Clone)]
pub struct Request {
    pub signal: Signal,
    pub items: u64,
    pub encoding: Encoding,
    pub payload: Bytes,
}

/// A request handed to a consumer; give it back with [`SendQueue::ack`] once it is done with.
pub struct Lease {
    pub request: Request,
    seq: u64,
}

struct Entry {
    seq: u64,
    signal: Signal,
    items: u64,
    /// In memory; `None` when the payload is on disk.
    payload: Option<(Encoding, Bytes)>,
}

struct State {
    entries: VecDeque<Entry>,
    used: u64,
    closed: bool,
    next_seq: u64,
}

/// Why a request could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the sending queue is closed")]
    Closed,
    #[error("cannot write to the persistent queue: {0}")]
    Io(#[from] io::Error),
}

pub struct SendQueue {
    state: Mutex<State>,
    items_ready: Notify,
    space_ready: Notify,
    capacity: u64,
    sizer: Sizer,
    on_full: OnFull,
    disk: Option<Disk>,
    health: Arc<ComponentHealth>,
    size_gauge: Arc<AtomicI64>,
    items_gauge: Arc<AtomicI64>,
}

struct Disk {
    dir: PathBuf,
    fsync: bool,
    /// Held for the queue's life: the `flock` on `LOCK`.
    _lock: File,
}

/// The settings a queue is opened with.
pub struct QueueOptions {
    pub capacity: u64,
    pub sizer: Sizer,
    pub on_full: OnFull,
    /// Directory for a persistent queue.
    pub dir: Option<PathBuf>,
    pub fsync: bool,
}

impl SendQueue {
    /// Opens the queue; a persistent one loads the index of what a previous run left.
    pub fn open(opts: QueueOptions, health: Arc<ComponentHealth>) -> io::Result<SendQueue> {
        let mut state = State { entries: VecDeque::new(), used: 0, closed: false, next_seq: 1 };
        let disk = match &opts.dir {
            None => None,
            Some(dir) => {
                let (disk, entries) = Disk::open(dir, opts.fsync)?;
                for e in entries {
                    state.used += size_of(opts.sizer, e.items);
                    state.next_seq = state.next_seq.max(e.seq + 1);
                    state.entries.push_back(e);
                }
                if !state.entries.is_empty() {
                    let items: u64 = state.entries.iter().map(|e| e.items).sum();
                    info!(
                        dir = %dir.display(),
                        requests = state.entries.len(),
                        items,
                        "persistent sending queue resumes where it left off"
                    );
                }
                Some(disk)
            }
        };
        let q = SendQueue {
            state: Mutex::new(state),
            items_ready: Notify::new(),
            space_ready: Notify::new(),
            capacity: opts.capacity,
            sizer: opts.sizer,
            on_full: opts.on_full,
            disk,
            size_gauge: health.gauge("queue_size"),
            items_gauge: health.gauge("queue_items"),
            health,
        };
        q.health.gauge("queue_capacity").store(opts.capacity as i64, Ordering::Relaxed);
        q.publish(&q.lock());
        Ok(q)
    }

    pub fn is_persistent(&self) -> bool {
        self.disk.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-updated in a way
        // that matters more than stopping: keep going with what is there.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, st: &State) {
        self.size_gauge.store(st.entries.len() as i64, Ordering::Relaxed);
        self.items_gauge.store(st.entries.iter().map(|e| e.items as i64).sum(), Ordering::Relaxed);
    }

    /// Queues `req`. When full, waits for space (`block`) or drops the oldest request.
    pub async fn push(&self, req: Request) -> Result<(), PushError> {
        let size = size_of(self.sizer, req.items);
        let seq = loop {
            let space = self.space_ready.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.lock();
                if st.closed {
                    return Err(PushError::Closed);
                }
                // A request bigger than the whole queue still goes in when the queue is empty.
                if st.used + size <= self.capacity || st.entries.is_empty() {
                    st.used += size;
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    break seq;
                }
                if self.on_full == OnFull::DropOldest {
                    if let Some(old) = st.entries.pop_front() {
                        st.used -= size_of(self.sizer, old.items);
                        self.health.counters.add_dropped(old.signal, old.items);
                        warn!(
                            items = old.items,
                            "sending queue full: dropped the oldest request (on_full: drop_oldest)"
                        );
                        if let Some(d) = &self.disk {
                            d.remove(old.seq, old.signal, old.items);
                        }
                        self.publish(&st);
                        continue;
                    }
                }
            }
            space.await;
        };
        let payload = match &self.disk {
            Some(d) => {
                if let Err(e) = otterline_core::blocking(|| d.write(seq, &req)) {
                    self.lock().used -= size;
                    self.space_ready.notify_one();
                    return Err(e.into());
                }
                None
            }
            None => Some((req.encoding, req.payload)),
        };
        let mut st = self.lock();
        st.entries.push_back(Entry { seq, signal: req.signal, items: req.items, payload });
        self.publish(&st);
        drop(st);
        self.items_ready.notify_one();
        Ok(())
    }

    /// The next request, waiting for one; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<Lease> {
        loop {
            let ready = self.items_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let entry = {
                let mut st = self.lock();
                match st.entries.pop_front() {
                    Some(e) => {
                        st.used -= size_of(self.sizer, e.items);
                        self.publish(&st);
                        Some(e)
                    }
                    None if st.closed => return None,
                    None => None,
                }
            };
            let Some(e) = entry else {
                ready.await;
                continue;
            };
            self.space_ready.notify_one();
            // Another consumer may be waiting while more entries are queued.
            self.items_ready.notify_one();
            match e.payload {
                Some((encoding, payload)) => {
                    return Some(Lease {
                        request: Request { signal: e.signal, items: e.items, encoding, payload },
                        seq: e.seq,
                    })
                }
                None => {
                    let Some(d) = &self.disk else { continue };
                    match otterline_core::blocking(|| d.read(e.seq, e.signal, e.items)) {
                        Ok(request) => return Some(Lease { request, seq: e.seq }),
                        Err(why) => {
                            self.health.counters.add_dropped(e.signal, e.items);
                            error!(seq = e.seq, items = e.items, error = %why, "persistent queue record is unreadable; moved to corrupt/ and counted as dropped");
                            d.set_aside(e.seq, e.signal, e.items);
                        }
                    }
                }
            }
        }
    }

    /// The consumer is done with the request (delivered, or refused for good).
    pub fn ack(&self, lease: Lease) {
        if let Some(d) = &self.disk {
            otterline_core::blocking(|| d.remove(lease.seq, lease.request.signal, lease.request.items));
        }
    }

    /// No more pushes; consumers finish what is queued and then get `None`.
    pub fn close(&self) {
        self.lock().closed = true;
        self.items_ready.notify_waiters();
        self.space_ready.notify_waiters();
    }

    /// Requests and items still queued.
    pub fn len(&self) -> (usize, u64) {
        let st = self.lock();
        (st.entries.len(), st.entries.iter().map(|e| e.items).sum())
    }

    /// Empties the queue, returning what was in it per signal (for counting drops).
    pub fn take_all(&self) -> Vec<(Signal, u64)> {
        let mut st = self.lock();
        let out = st.entries.drain(..).map(|e| (e.signal, e.items)).collect();
        st.used = 0;
        self.publish(&st);
        out
    }
}

fn size_of(sizer: Sizer, items: u64) -> u64 {
    match sizer {
        Sizer::Requests => 1,
        Sizer::Items => items.max(1),
    }
}

impl Disk {
    fn open(dir: &Path, fsync: bool) -> io::Result<(Disk, Vec<Entry>)> {
        fs::create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        for tmp in leftovers(dir)? {
            // Written but never renamed: the pipeline was never told it was queued.
            fs::remove_file(&tmp)?;
        }
        let mut entries = Vec::new();
        for e in fs::read_dir(dir)? {
            let path = e?.path();
            if path.extension().and_then(|x| x.to_str()) != Some(EXTENSION) {
                continue;
            }
            match parse_name(&path) {
                Some((seq, signal, items)) => entries.push(Entry { seq, signal, items, payload: None }),
                None => {
                    warn!(file = %path.display(), "ignoring a file in the queue directory with a name it did not write")
                }
            }
        }
        entries.sort_by_key(|e| e.seq);
        Ok((Disk { dir: dir.to_path_buf(), fsync, _lock: lock }, entries))
    }

    fn path(&self, seq: u64, signal: Signal, items: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}-{}-{items}.{EXTENSION}", signal.as_str()))
    }

    fn write(&self, seq: u64, req: &Request) -> io::Result<()> {
        let record = QueueRecord {
            version: RECORD_VERSION,
            signal: QueueSignal::from_index(req.signal.index()) as i32,
            items: req.items,
            encoding: match req.encoding {
                Encoding::Protobuf => QueueEncoding::Protobuf as i32,
                Encoding::Json => QueueEncoding::Json as i32,
            },
            payload: req.payload.to_vec(),
            enqueued_unix_nano: otterline_core::time::now_unix_nanos() as i64,
        };
        let body = record.encode_to_vec();
        let (pending, mut f) = PendingFile::create(self.path(seq, req.signal, req.items))?;
        let temp = pending.temp_path.clone();
        let written = (|| {
            f.write_all(MAGIC)?;
            f.write_all(&crc32fast::hash(&body).to_le_bytes())?;
            f.write_all(&body)?;
            if self.fsync {
                pending.commit(f)?;
            } else {
                drop(f);
                fs::rename(&pending.temp_path, &pending.final_path)?;
            }
            Ok(())
        })();
        if written.is_err() {
            // A half-written record (a full disk): its space is given back now, not at the
            // next start; the request was refused, so nothing is lost.
            let _ = fs::remove_file(&temp);
        }
        written
    }

    fn read(&self, seq: u64, signal: Signal, items: u64) -> Result<Request, String> {
        let path = self.path(seq, signal, items);
        let data = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if data.len() < 8 || &data[..4] != MAGIC {
            return Err(format!("{}: not a queue record (bad header)", path.display()));
        }
        let crc = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
        let body = &data[8..];
        if crc32fast::hash(body) != crc {
            return Err(format!("{}: checksum mismatch (torn or damaged write)", path.display()));
        }
        let r = QueueRecord::decode(body).map_err(|e| format!("{}: {e}", path.display()))?;
        if r.version != RECORD_VERSION {
            return Err(format!("{}: record version {} is not {RECORD_VERSION}", path.display(), r.version));
        }
        let encoding = match QueueEncoding::try_from(r.encoding) {
            Ok(QueueEncoding::Json) => Encoding::Json,
            _ => Encoding::Protobuf,
        };
        Ok(Request { signal, items: r.items, encoding, payload: Bytes::from(r.payload) })
    }

    fn remove(&self, seq: u64, signal: Signal, items: u64) {
        let path = self.path(seq, signal, items);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != io::ErrorKind::NotFound {
                error!(file = %path.display(), error = %e, "cannot remove an acknowledged queue record; it will be sent again at the next start");
            }
        }
    }

    fn set_aside(&self, seq: u64, signal: Signal, items: u64) {
        let path = self.path(seq, signal, items);
        let corrupt = self.dir.join("corrupt");
        let moved = fs::create_dir_all(&corrupt)
            .and_then(|_| fs::rename(&path, corrupt.join(path.file_name().unwrap_or_default())));
        if let Err(e) = moved {
            error!(file = %path.display(), error = %e, "cannot move an unreadable queue record aside");
        }
    }
}

fn parse_name(path: &Path) -> Option<(u64, Signal, u64)> {
    let stem = path.file_stem()?.to_str()?;
    let mut parts = stem.splitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let signal = Signal::parse(parts.next()?)?;
    let items = parts.next()?.parse().ok()?;
    Some((seq, signal, items))
}

fn lock_dir(dir: &Path) -> io::Result<File> {
    otterline_core::fsutil::lock_dir(
        dir,
        "give each exporter and each Otterline its own sending_queue.storage directory",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn health() -> Arc<ComponentHealth> {
        Arc::new(ComponentHealth::new("exporter", "otlp".into()))
    }

    fn req(items: u64, tag: u8) -> Request {
        Request { signal: Signal::Traces, items, encoding: Encoding::Protobuf, payload: Bytes::from(vec![tag; 10]) }
    }

    fn opts(dir: Option<&Path>, capacity: u64, on_full: OnFull) -> QueueOptions {
        QueueOptions { capacity, sizer: Sizer::Requests, on_full, dir: dir.map(Path::to_path_buf), fsync: true }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn persistent_queue_survives_reopen_and_acks_delete() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = SendQueue::open(opts(Some(dir.path()), 10, OnFull::Block), health()).unwrap();
            for i in 0..3 {
                q.push(req(5, i)).await.unwrap();
            }
            let first = q.pop().await.unwrap();
            assert_eq!(first.request.payload[0], 0);
            q.ack(first);
            // Popped but not acknowledged: still on disk.
            let _second = q.pop().await.unwrap();
        }
        let h = health();
        let q = SendQueue::open(opts(Some(dir.path()), 10, OnFull::Block), h).unwrap();
        assert_eq!(q.len(), (2, 10));
        let a = q.pop().await.unwrap();
        let b = q.pop().await.unwrap();
        assert_eq!((a.request.payload[0], b.request.payload[0]), (1, 2));
        q.ack(a);
        q.ack(b);
        assert!(fs::read_dir(dir.path()).unwrap().all(|e| e.unwrap().path().extension().is_none()));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_damaged_record_is_set_aside_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let q = SendQueue::open(opts(Some(dir.path()), 10, OnFull::Block), health()).unwrap();
            q.push(req(7, 1)).await.unwrap();
            q.push(req(3, 2)).await.unwrap();
        }
        let first = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "otq"))
            .min()
            .unwrap();
        let mut data = fs::read(&first).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&first, data).unwrap();
        let h = health();
        let q = SendQueue::open(opts(Some(dir.path()), 10, OnFull::Block), h.clone()).unwrap();
        let got = q.pop().await.unwrap();
        assert_eq!(got.request.items, 3);
        assert_eq!(h.counters.of(Signal::Traces).dropped, 7);
        assert!(dir.path().join("corrupt").read_dir().unwrap().count() == 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_directory_cannot_be_shared() {
        let dir = tempfile::tempdir().unwrap();
        let _q = SendQueue::open(opts(Some(dir.path()), 10, OnFull::Block), health()).unwrap();
        let err = SendQueue::open(opts(Some(dir.path()), 10, OnFull::Block), health()).err().unwrap();
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }

    #[tokio::test]
    async fn full_queue_blocks_until_a_consumer_takes_one() {
        let q = Arc::new(SendQueue::open(opts(None, 2, OnFull::Block), health()).unwrap());
        q.push(req(1, 1)).await.unwrap();
        q.push(req(1, 2)).await.unwrap();
        let q2 = q.clone();
        let pusher = tokio::spawn(async move { q2.push(req(1, 3)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pusher.is_finished(), "push must wait while the queue is full");
        let l = q.pop().await.unwrap();
        q.ack(l);
        tokio::time::timeout(Duration::from_secs(5), pusher).await.unwrap().unwrap().unwrap();
        assert_eq!(q.len().0, 2);
    }

    #[tokio::test]
    async fn drop_oldest_makes_room_and_counts() {
        let h = health();
        let q = SendQueue::open(opts(None, 2, OnFull::DropOldest), h.clone()).unwrap();
        for i in 0..4 {
            q.push(req(10, i)).await.unwrap();
        }
        assert_eq!(h.counters.of(Signal::Traces).dropped, 20);
        assert_eq!(q.pop().await.unwrap().request.payload[0], 2);
    }

    #[tokio::test]
    async fn close_wakes_consumers_after_the_last_item() {
        let q = Arc::new(SendQueue::open(opts(None, 5, OnFull::Block), health()).unwrap());
        let q2 = q.clone();
        let consumer = tokio::spawn(async move {
            let mut n = 0;
            while q2.pop().await.is_some() {
                n += 1;
            }
            n
        });
        q.push(req(1, 1)).await.unwrap();
        q.close();
        assert!(matches!(q.push(req(1, 2)).await, Err(PushError::Closed)));
        assert_eq!(tokio::time::timeout(Duration::from_secs(5), consumer).await.unwrap().unwrap(), 1);
    }
}
