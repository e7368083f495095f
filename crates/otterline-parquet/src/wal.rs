//! The `parquet` exporter's write-ahead log: every batch the exporter accepts, on disk
//! before `export` returns, group-committed (fdatasync) at least every `sync_interval`.
//!
//! The record format is `proto/otterline/v1/wal.proto`. A log is a directory of segment
//! files; the process that opens it writes a new *run* (its segments are named
//! `<run>-<first lsn>.wal`), and the segments of earlier runs are handed to the exporter to
//! recover (turn into Parquet) and then deleted. Within a run, records are numbered from 1
//! (the lsn). A segment is sealed (fsynced, then never written again) when it reaches the
//! size limit; a segment whose records have all reached closed Parquet files is deleted.
//!
//! A background thread syncs the open segment every `sync_interval` and publishes the last
//! lsn known to be on stable storage ([`Wal::durable_lsn`]): "durable up to here", for
//! receivers that want to acknowledge only what a power cut cannot take back.
//!
//! A failed append (disk full) is undone by truncating the segment to its previous length,
//! so a record is either whole in the log or not there; if even that fails, the segment is
//! sealed where the valid records end and the next append opens a new one.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use otterline_core::{Batch, Signal};
use otterline_proto::v1::{QueueSignal, WalRecord};

/// First bytes of every segment.
pub const MAGIC: &[u8; 8] = b"OTLWAL01";
/// [`WalRecord::version`] this Otterline writes and reads.
pub const RECORD_VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const FRAME_LEN: usize = 8;

/// A record read back from a segment.
#[derive(Debug)]
pub struct Record {
    pub run: u64,
    pub lsn: u64,
    pub signal: Signal,
    pub payload: Vec<u8>,
}

/// What reading a segment found besides its records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Bytes after the last whole record (a torn write), dropped.
    pub torn_bytes: u64,
    /// Whole records that could not be decoded or are of an unknown version, dropped.
    pub bad_records: u64,
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    first_lsn: u64,
    last_lsn: u64,
}

struct Sealed {
    path: PathBuf,
    last_lsn: u64,
}

#[derive(Default)]
struct SyncState {
    file: Option<Arc<File>>,
    /// Last lsn written to `file`.
    written: u64,
    stop: bool,
}

struct Shared {
    state: Mutex<SyncState>,
    wake: Condvar,
    durable: AtomicU64,
    /// Acknowledgements waiting for their record (lsn) to be durable.
    waiters: Mutex<Vec<(u64, otterline_core::ack::Ack)>>,
}

impl Shared {
    /// Marks everything up to `lsn` durable and completes the acknowledgements it covers.
    fn made_durable(&self, lsn: u64) {
        let durable = self.durable.fetch_max(lsn, Ordering::AcqRel).max(lsn);
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if w.is_empty() {
            return;
        }
        w.retain(|(l, ack)| {
            if *l <= durable {
                ack.done(true);
                false
            } else {
                true
            }
        });
    }
}

/// "Durable up to here", shared with the exporter outside the writer's thread.
#[derive(Clone)]
pub struct Durability(Arc<Shared>);

impl Durability {
    /// Completes `ack` once record `lsn` is on stable storage (at the next group commit).
    pub fn on_durable(&self, lsn: u64, ack: otterline_core::ack::Ack) {
        if self.0.durable.load(Ordering::Acquire) >= lsn {
            ack.done(true);
            return;
        }
        self.0.waiters.lock().unwrap_or_else(|p| p.into_inner()).push((lsn, ack));
        // It may have become durable meanwhile: check again under the same rule.
        self.0.made_durable(0);
    }
}

/// An open write-ahead log (one run).
pub struct Wal {
    dir: PathBuf,
    _lock: File,
    run: u64,
    next_lsn: u64,
    current: Option<Segment>,
    sealed: VecDeque<Sealed>,
    segment_size: u64,
    shared: Arc<Shared>,
    syncer: Option<std::thread::JoinHandle<()>>,
    frame: Vec<u8>,
    encoder: otterline_core::pdata::encode::Encoder,
}

impl Wal {
    /// Opens (creating) the log in `dir` for a new run. Returns it and the segments of
    /// earlier runs, oldest first, for the caller to recover and then [`Wal::remove`].
    pub fn open(dir: &Path, sync_interval: Duration, segment_size: u64) -> io::Result<(Wal, Vec<PathBuf>)> {
        fs::create_dir_all(dir)?;
        let lock = otterline_core::fsutil::lock_dir(
            dir,
            "give each parquet exporter and each Otterline its own archive path (or wal.directory)",
        )?;
        let mut old: Vec<PathBuf> = Vec::new();
        for e in fs::read_dir(dir)? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "wal") {
                old.push(p);
            }
        }
        // Names are zero-padded: lexical order is run order, then lsn order.
        old.sort();
        let mut run = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        if let Some(last) = old.last().and_then(|p| segment_run(p)) {
            // A clock set back must not reuse or precede an earlier run.
            run = run.max(last + 1);
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(SyncState::default()),
            wake: Condvar::new(),
            durable: AtomicU64::new(0),
            waiters: Mutex::new(Vec::new()),
        });
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("otterline-wal-sync".into())
                .spawn(move || sync_loop(&shared, sync_interval))?
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            _lock: lock,
            run,
            next_lsn: 1,
            current: None,
            sealed: VecDeque::new(),
            segment_size: segment_size.max(HEADER_LEN + 1),
            shared,
            syncer: Some(syncer),
            frame: Vec::new(),
            encoder: Default::default(),
        };
        Ok((wal, old))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This process's run (written into the Parquet files' `otterline.wal.run`).
    pub fn run(&self) -> u64 {
        self.run
    }

    /// The lsn the next append gets.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// A handle that completes acknowledgements as records become durable.
    pub fn durability(&self) -> Durability {
        Durability(self.shared.clone())
    }

    /// Every record up to this lsn is on stable storage.
    pub fn durable_lsn(&self) -> u64 {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Segments of this run that hold records, oldest first (for repair after a failed write).
    pub fn segments(&self) -> Vec<PathBuf> {
        self.sealed.iter().map(|s| s.path.clone()).chain(self.current.iter().map(|c| c.path.clone())).collect()
    }

    /// Appends one batch as OTLP protobuf; returns its lsn and the payload's size. On error
    /// nothing of the record stays in the log.
    pub fn append(&mut self, batch: &Batch) -> io::Result<(u64, usize)> {
        let mut encoder = std::mem::take(&mut self.encoder);
        let len = encoder.prepare(batch);
        let lsn = self.append_with(batch.signal(), len, |buf| encoder.write(batch, buf));
        self.encoder = encoder;
        Ok((lsn?, len))
    }

    /// Appends a record whose payload `write` encodes (`len` bytes), straight into the
    /// frame: the [`WalRecord`] is encoded field by field, so the payload is not copied.
    fn append_with(&mut self, signal: Signal, len: usize, write: impl FnOnce(&mut Vec<u8>)) -> io::Result<u64> {
        use prost::encoding::{encode_key, encode_varint, uint32, uint64, WireType};
        let lsn = self.next_lsn;
        self.frame.clear();
        self.frame.reserve(FRAME_LEN + 32 + len);
        self.frame.extend_from_slice(&[0; FRAME_LEN]);
        uint32::encode(1, &RECORD_VERSION, &mut self.frame);
        uint64::encode(2, &lsn, &mut self.frame);
        prost::encoding::int32::encode(3, &(QueueSignal::from_index(signal.index()) as i32), &mut self.frame);
        encode_key(4, WireType::LengthDelimited, &mut self.frame);
        encode_varint(len as u64, &mut self.frame);
        let start = self.frame.len();
        write(&mut self.frame);
        if self.frame.len() - start != len {
            return Err(io::Error::other("payload length changed while encoding"));
        }
        let body_len = (self.frame.len() - FRAME_LEN) as u32;
        let crc = crc32fast::hash(&self.frame[FRAME_LEN..]);
        self.frame[..4].copy_from_slice(&body_len.to_le_bytes());
        self.frame[4..8].copy_from_slice(&crc.to_le_bytes());

        if self
            .current
            .as_ref()
            .is_some_and(|c| c.len > HEADER_LEN && c.len + self.frame.len() as u64 > self.segment_size)
        {
            self.seal()?;
        }
        if self.current.is_none() {
            self.current = Some(self.new_segment(lsn)?);
        }
        let Some(seg) = self.current.as_mut() else { return Err(io::Error::other("no open segment")) };
        if let Err(e) = (&*seg.file).write_all(&self.frame) {
            // Undo a partial write so that no torn record sits before later ones.
            if seg.file.set_len(seg.len).is_err() {
                let _ = self.seal();
            }
            return Err(e);
        }
        seg.len += self.frame.len() as u64;
        seg.last_lsn = lsn;
        self.next_lsn += 1;
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).written = lsn;
        Ok(lsn)
    }

    fn new_segment(&mut self, first_lsn: u64) -> io::Result<Segment> {
        let path = self.dir.join(format!("{:020}-{:020}.wal", self.run, first_lsn));
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&self.run.to_le_bytes());
        if let Err(e) = file.write_all(&header) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let file = Arc::new(file);
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).file = Some(file.clone());
        Ok(Segment { path, file, len: HEADER_LEN, first_lsn, last_lsn: first_lsn.saturating_sub(1) })
    }

    /// Syncs and closes the open segment; the next append opens a new one.
    pub fn seal(&mut self) -> io::Result<()> {
        let Some(seg) = self.current.take() else { return Ok(()) };
        if seg.last_lsn < seg.first_lsn {
            // Nothing in it.
            let _ = fs::remove_file(&seg.path);
            return Ok(());
        }
        let synced = seg.file.sync_data();
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            if st.file.as_ref().is_some_and(|f| Arc::ptr_eq(f, &seg.file)) {
                st.file = None;
            }
        }
        if synced.is_ok() {
            self.shared.durable.fetch_max(seg.last_lsn, Ordering::AcqRel);
        }
        self.sealed.push_back(Sealed { path: seg.path, last_lsn: seg.last_lsn });
        synced
    }

    /// Syncs the open segment now (`sync_interval: 0s`: every batch).
    pub fn sync_now(&mut self) {
        if let Some(seg) = &self.current {
            match seg.file.sync_data() {
                Ok(()) => self.shared.made_durable(seg.last_lsn),
                Err(e) => tracing::error!(error = %e, "cannot sync the write-ahead log"),
            }
        }
    }

    /// Deletes the segments whose records are all below `lsn` (they are in closed files).
    pub fn release_below(&mut self, lsn: u64) {
        while self.sealed.front().is_some_and(|s| s.last_lsn < lsn) {
            if let Some(s) = self.sealed.pop_front() {
                remove_logged(&s.path);
            }
        }
        if self.current.as_ref().is_some_and(|c| c.last_lsn >= c.first_lsn && c.last_lsn < lsn)
            && self.sealed.is_empty()
        {
            if let Some(c) = self.current.take() {
                self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).file = None;
                self.shared.made_durable(c.last_lsn);
                remove_logged(&c.path);
            }
        }
    }

    /// Deletes segments of earlier runs once they are recovered.
    pub fn remove(&self, segments: &[PathBuf]) {
        for p in segments {
            remove_logged(p);
        }
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(seg) = &self.current {
            if seg.file.sync_data().is_ok() {
                self.shared.made_durable(seg.last_lsn);
            }
        }
        // Whatever still waits was not made durable here.
        for (_, ack) in self.shared.waiters.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            ack.done(false);
        }
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.syncer.take() {
            let _ = h.join();
        }
    }
}

fn remove_logged(p: &Path) {
    if let Err(e) = fs::remove_file(p) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(file = %p.display(), error = %e, "cannot delete a write-ahead log segment");
        }
    }
}

fn sync_loop(shared: &Shared, interval: Duration) {
    loop {
        let (file, written) = {
            let st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            let (st, _) = shared.wake.wait_timeout_while(st, interval, |s| !s.stop).unwrap_or_else(|p| p.into_inner());
            if st.stop {
                return;
            }
            (st.file.clone(), st.written)
        };
        let Some(file) = file else { continue };
        if written <= shared.durable.load(Ordering::Acquire) {
            continue;
        }
        match file.sync_data() {
            Ok(()) => shared.made_durable(written),
            Err(e) => {
                tracing::error!(error = %e, "cannot sync the write-ahead log; records written since the last sync are not yet durable")
            }
        }
    }
}

fn signal_of(code: i32) -> Option<Signal> {
    QueueSignal::try_from(code).ok().and_then(QueueSignal::index).and_then(|i| Signal::ALL.get(i).copied())
}

/// The run a segment's name says it belongs to.
pub fn segment_run(p: &Path) -> Option<u64> {
    p.file_stem()?.to_str()?.split('-').next()?.parse().ok()
}

/// Reads every whole record of a segment, in order; what follows a torn or bad record
/// is dropped and counted.
pub fn read_segment(path: &Path) -> io::Result<(Vec<Record>, Damage)> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut damage = Damage::default();
    if data.len() < HEADER_LEN as usize || &data[..8] != MAGIC {
        // A segment whose header never reached the disk holds nothing.
        damage.torn_bytes = data.len() as u64;
        return Ok((Vec::new(), damage));
    }
    let run = u64::from_le_bytes(data[8..16].try_into().unwrap_or_default());
    let mut at = HEADER_LEN as usize;
    let mut out = Vec::new();
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < FRAME_LEN {
            damage.torn_bytes = rest.len() as u64;
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(body) = rest.get(FRAME_LEN..FRAME_LEN + len) else {
            damage.torn_bytes = rest.len() as u64;
            break;
        };
        if crc32fast::hash(body) != crc {
            damage.torn_bytes = rest.len() as u64;
            break;
        }
        at += FRAME_LEN + len;
        match WalRecord::decode(body) {
            Ok(r) if r.version == RECORD_VERSION => match signal_of(r.signal) {
                Some(signal) => out.push(Record { run, lsn: r.lsn, signal, payload: r.payload }),
                None => damage.bad_records += 1,
            },
            _ => damage.bad_records += 1,
        }
    }
    Ok((out, damage))
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Wal {
        fn append_raw(&mut self, signal: Signal, payload: &[u8]) -> io::Result<u64> {
            self.append_with(signal, payload.len(), |b| b.extend_from_slice(payload))
        }
    }

    #[test]
    fn every_signal_round_trips_through_its_code() {
        for s in Signal::ALL {
            assert_eq!(signal_of(QueueSignal::from_index(s.index()) as i32), Some(s));
        }
        assert_eq!(signal_of(QueueSignal::Unspecified as i32), None);
    }

    #[test]
    fn a_record_decodes_as_the_proto_message() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), Duration::from_millis(10), 1 << 20).unwrap();
        let batch = Batch::Logs(Default::default());
        assert_eq!(wal.append(&batch).unwrap(), (1, batch.encoded_len()));
        let (records, damage) = read_segment(&wal.segments()[0]).unwrap();
        assert_eq!(damage, Damage::default());
        assert_eq!((records[0].lsn, records[0].signal), (1, Signal::Logs));
        assert_eq!(records[0].payload, batch.encode_protobuf());
    }

    #[test]
    fn records_come_back_in_order_and_a_torn_tail_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, old) = Wal::open(dir.path(), Duration::from_millis(10), 1 << 20).unwrap();
        assert!(old.is_empty());
        for i in 0..5u8 {
            assert_eq!(wal.append_raw(Signal::Logs, &[i; 100]).unwrap(), u64::from(i) + 1);
        }
        let run = wal.run();
        let seg = wal.segments().pop().unwrap();
        drop(wal);
        // A torn write: half of a sixth record.
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[50, 0, 0, 0, 1, 2, 3, 4, 9, 9]).unwrap();
        drop(f);
        let (records, damage) = read_segment(&seg).unwrap();
        assert_eq!(records.len(), 5);
        assert!(records
            .iter()
            .enumerate()
            .all(|(i, r)| r.lsn == i as u64 + 1 && r.run == run && r.payload == vec![i as u8; 100]));
        assert_eq!(damage, Damage { torn_bytes: 10, bad_records: 0 });
        // The next run finds the old segment and starts after its run.
        let (wal, old) = Wal::open(dir.path(), Duration::from_millis(10), 1 << 20).unwrap();
        assert_eq!(old, vec![seg]);
        assert!(wal.run() > run);
    }

    #[test]
    fn segments_rotate_at_the_size_limit_and_are_released_by_lsn() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), Duration::from_millis(10), 1000).unwrap();
        for _ in 0..10 {
            wal.append_raw(Signal::Traces, &[7; 300]).unwrap();
        }
        let segs = wal.segments();
        assert!(segs.len() >= 4, "{segs:?}");
        // Sealed segments are synced: durable at least up to the last sealed record.
        assert!(wal.durable_lsn() >= 6);
        wal.release_below(5);
        let left = wal.segments();
        assert!(left.len() < segs.len());
        let first_left: Vec<u64> = left.iter().flat_map(|p| read_segment(p).unwrap().0).map(|r| r.lsn).collect();
        assert!(first_left.contains(&5) && first_left.contains(&10), "{first_left:?}");
        wal.release_below(11);
        assert!(wal.segments().is_empty());
        assert_eq!(
            fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "wal"))
                .count(),
            0
        );
    }

    #[test]
    fn the_syncer_publishes_what_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), Duration::from_millis(5), 1 << 20).unwrap();
        wal.append_raw(Signal::Metrics, b"x").unwrap();
        wal.append_raw(Signal::Metrics, b"y").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while wal.durable_lsn() < 2 {
            assert!(std::time::Instant::now() < deadline, "never synced");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn a_second_process_cannot_open_the_same_log() {
        let dir = tempfile::tempdir().unwrap();
        let (_wal, _) = Wal::open(dir.path(), Duration::from_millis(10), 1 << 20).unwrap();
        // flock is per open file description: a second open in this process conflicts too.
        let err = Wal::open(dir.path(), Duration::from_millis(10), 1 << 20).err().unwrap();
        assert!(err.to_string().contains("in use by another process"), "{err}");
    }
}
