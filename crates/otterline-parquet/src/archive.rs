//! Reading a Parquet archive: finding files, checking them, and streaming their
//! rows in time order.
//!
//! A path is a directory (searched recursively for `*.parquet`, hidden temp files
//! excluded), a glob (`/data/archive/traces/date=2026-11-*/**/*.parquet`), or one
//! file. Each file's footer is read first: a file without Otterline's schema
//! metadata is *foreign*, one whose footer cannot be parsed is *corrupt*; both are
//! reported with their path and skipped (or fail the replay under `strict`).
//!
//! Rows of one signal come out in time order through a k-way merge: files are
//! opened in order of their first timestamp (from the time column's statistics),
//! and only files whose time ranges overlap are open at once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::statistics::Statistics;

use otterline_core::{Signal, SignalSet};

use crate::codec::{self, Version, META_SIGNAL, META_VERSION};
use crate::rows::{MetricPoint, Row, Rows};

/// One checked archive file.
#[derive(Debug, Clone)]
pub struct ArchiveFile {
    pub path: PathBuf,
    pub signal: Signal,
    /// Archive schema version (from the file's metadata).
    pub version: Version,
    pub rows: u64,
    pub bytes: u64,
    /// Smallest and largest item timestamp (Unix ns), from the column statistics.
    pub min_ts: i64,
    pub max_ts: i64,
}

/// A file that cannot be replayed, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// Lists the `.parquet` files a path names (directory, glob, or file), sorted.
pub fn list(spec: &str) -> Result<Vec<PathBuf>, String> {
    let is_glob = spec.contains(['*', '?', '[']);
    let mut out = Vec::new();
    if is_glob {
        let paths = glob::glob(spec).map_err(|e| format!("invalid glob {spec:?}: {e}"))?;
        for p in paths {
            let p = p.map_err(|e| format!("cannot read {}: {}", e.path().display(), e.error()))?;
            if p.is_file() && is_archive_file(&p) {
                out.push(p);
            } else if p.is_dir() {
                walk(&p, &mut out).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            }
        }
    } else {
        let p = Path::new(spec);
        if p.is_dir() {
            walk(p, &mut out).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        } else if p.is_file() {
            out.push(p.to_path_buf());
        } else {
            return Err(format!("{spec}: no such file or directory"));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_archive_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".parquet") && !name.starts_with('.')
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_archive_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads a file's footer and checks that it is an Otterline archive file.
pub fn inspect(path: &Path) -> Result<ArchiveFile, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format!("corrupt or not Parquet: {e}"))?;
    let meta = builder.metadata();
    let kv = meta.file_metadata().key_value_metadata();
    let get = |k: &str| kv.and_then(|kv| kv.iter().find(|e| e.key == k)).and_then(|e| e.value.clone());
    let Some(version) = get(META_VERSION) else {
        return Err("foreign Parquet file: no otterline.schema.version metadata (not written by Otterline)".into());
    };
    let Some(version) = Version::parse(&version) else {
        return Err(format!(
            "unsupported archive schema version {version} (this Otterline reads versions 1 and 2; a newer Otterline wrote it)"
        ));
    };
    let signal =
        get(META_SIGNAL).as_deref().and_then(Signal::parse).ok_or("missing or unknown otterline.signal metadata")?;
    let time_col = if signal == Signal::Traces { "start_time" } else { "time" };
    let idx = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == time_col)
        .ok_or(format!("column {time_col} is missing"))?;
    let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
    for rg in meta.row_groups() {
        match rg.column(idx).statistics() {
            Some(Statistics::Int64(s)) => {
                if let (Some(lo), Some(hi)) = (s.min_opt(), s.max_opt()) {
                    min_ts = min_ts.min(*lo);
                    max_ts = max_ts.max(*hi);
                }
            }
            _ => {
                // No statistics: assume the file may hold anything.
                min_ts = i64::MIN;
                max_ts = i64::MAX;
            }
        }
    }
    Ok(ArchiveFile {
        path: path.to_path_buf(),
        signal,
        version,
        rows: meta.file_metadata().num_rows().max(0) as u64,
        bytes,
        min_ts,
        max_ts,
    })
}

/// What to replay.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub signals: SignalSet,
}

impl Selection {
    pub fn contains(&self, ts: i64) -> bool {
        self.from.is_none_or(|f| ts >= f) && self.to.is_none_or(|t| ts <= t)
    }
    fn overlaps(&self, f: &ArchiveFile) -> bool {
        self.signals.contains(f.signal)
            && self.from.is_none_or(|from| f.max_ts >= from)
            && self.to.is_none_or(|to| f.min_ts <= to)
    }
}

/// The checked files of an archive that a selection needs, and those skipped.
pub fn open(spec: &str, sel: &Selection) -> Result<(Vec<ArchiveFile>, Vec<Skipped>), String> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in list(spec)? {
        match inspect(&p) {
            Ok(f) if sel.overlaps(&f) => files.push(f),
            Ok(_) => {}
            Err(reason) => skipped.push(Skipped { path: p, reason }),
        }
    }
    files.sort_by_key(|f| (f.signal, f.min_ts));
    Ok((files, skipped))
}

struct FileStream {
    path: PathBuf,
    /// Dropped when the file is finished: a reader holds a decompressor per column.
    reader: Option<ParquetRecordBatchReader>,
    signal: Signal,
    buf: VecDeque<Row<RowItem>>,
    done: bool,
    last_ts: i64,
    warned_unsorted: bool,
}

/// A row of any signal, for merging.
#[derive(Debug, Clone)]
enum RowItem {
    Span(otterline_core::pdata::trace::Span),
    Point(MetricPoint),
    Log(otterline_core::pdata::logs::LogRecord),
}

fn erase(rows: Rows) -> Vec<Row<RowItem>> {
    match rows {
        Rows::Spans(v) => v.into_iter().map(|r| Row { ts: r.ts, ctx: r.ctx, item: RowItem::Span(r.item) }).collect(),
        Rows::Points(v) => v.into_iter().map(|r| Row { ts: r.ts, ctx: r.ctx, item: RowItem::Point(r.item) }).collect(),
        Rows::Logs(v) => v.into_iter().map(|r| Row { ts: r.ts, ctx: r.ctx, item: RowItem::Log(r.item) }).collect(),
    }
}

fn unerase(signal: Signal, rows: Vec<Row<RowItem>>) -> Rows {
    match signal {
        Signal::Traces => Rows::Spans(
            rows.into_iter()
                .filter_map(|r| match r.item {
                    RowItem::Span(s) => Some(Row { ts: r.ts, ctx: r.ctx, item: s }),
                    _ => None,
                })
                .collect(),
        ),
        Signal::Metrics => Rows::Points(
            rows.into_iter()
                .filter_map(|r| match r.item {
                    RowItem::Point(p) => Some(Row { ts: r.ts, ctx: r.ctx, item: p }),
                    _ => None,
                })
                .collect(),
        ),
        Signal::Logs => Rows::Logs(
            rows.into_iter()
                .filter_map(|r| match r.item {
                    RowItem::Log(l) => Some(Row { ts: r.ts, ctx: r.ctx, item: l }),
                    _ => None,
                })
                .collect(),
        ),
    }
}

impl FileStream {
    fn open(f: &ArchiveFile, batch_size: usize) -> Result<FileStream, String> {
        let file = File::open(&f.path).map_err(|e| format!("cannot open: {e}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| format!("cannot read: {e}"))?;
        // The columns the decoder needs: derived copies are not even decompressed.
        let derived = codec::derived_columns(f.signal);
        let keep = builder.schema().fields().iter().enumerate().filter(|(_, c)| !derived.contains(&c.name().as_str()));
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), keep.map(|(i, _)| i));
        let reader = builder
            .with_projection(mask)
            .with_batch_size(batch_size)
            .build()
            .map_err(|e| format!("cannot read: {e}"))?;
        Ok(FileStream {
            path: f.path.clone(),
            reader: Some(reader),
            signal: f.signal,
            buf: VecDeque::new(),
            done: false,
            last_ts: i64::MIN,
            warned_unsorted: false,
        })
    }

    /// Makes sure the buffer has a row unless the file is finished.
    fn fill(&mut self) -> Result<(), String> {
        while self.buf.is_empty() && !self.done {
            match self.reader.as_mut().and_then(|r| r.next()) {
                None => {
                    self.done = true;
                    self.reader = None;
                }
                Some(Err(e)) => return Err(format!("{}: corrupt data: {e}", self.path.display())),
                Some(Ok(batch)) => {
                    let rows =
                        codec::decode(self.signal, &batch).map_err(|e| format!("{}: {e}", self.path.display()))?;
                    for r in erase(rows) {
                        if r.ts < self.last_ts && !self.warned_unsorted {
                            self.warned_unsorted = true;
                            tracing::warn!(file = %self.path.display(), "file is not sorted by time; its rows are replayed in file order");
                        }
                        self.last_ts = r.ts;
                        self.buf.push_back(r);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Streams one signal's rows in time order, in chunks.
pub struct SignalReader {
    signal: Signal,
    files: VecDeque<ArchiveFile>,
    open: Vec<FileStream>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    sel: Selection,
    batch_size: usize,
    strict: bool,
    /// When set, a chunk spans at most this much recorded time (for paced replay).
    window: Option<i64>,
    /// Files given up on while reading (corrupt pages), with the reason.
    pub failures: Vec<Skipped>,
}

impl SignalReader {
    /// `files` must all be of `signal`.
    pub fn new(signal: Signal, files: Vec<ArchiveFile>, sel: Selection, batch_size: usize, strict: bool) -> Self {
        let mut files: Vec<ArchiveFile> = files.into_iter().filter(|f| f.signal == signal).collect();
        files.sort_by_key(|f| f.min_ts);
        SignalReader {
            signal,
            files: files.into(),
            open: Vec::new(),
            heap: BinaryHeap::new(),
            sel,
            batch_size: batch_size.max(1),
            strict,
            window: None,
            failures: Vec::new(),
        }
    }

    /// Limits each chunk to `ns` of recorded time, so that a paced replay can send
    /// every chunk at (about) the right moment.
    pub fn with_window(mut self, ns: i64) -> Self {
        self.window = Some(ns.max(1));
        self
    }

    fn admit(&mut self, f: ArchiveFile) -> Result<(), String> {
        let mut s = match FileStream::open(&f, 4096) {
            Ok(s) => s,
            Err(e) => return self.fail(&f.path, e),
        };
        if let Err(e) = s.fill() {
            return self.fail(&f.path, e);
        }
        if let Some(r) = s.buf.front() {
            self.heap.push(Reverse((r.ts, self.open.len())));
        }
        self.open.push(s);
        Ok(())
    }

    fn fail(&mut self, path: &Path, reason: String) -> Result<(), String> {
        if self.strict {
            return Err(reason);
        }
        tracing::warn!(file = %path.display(), "skipping the rest of a damaged archive file: {reason}");
        self.failures.push(Skipped { path: path.to_path_buf(), reason });
        Ok(())
    }

    /// The next chunk of rows (at most `batch_size`), in time order; `None` at the end.
    pub fn next_chunk(&mut self) -> Result<Option<Rows>, String> {
        let mut out: Vec<Row<RowItem>> = Vec::with_capacity(self.batch_size);
        while out.len() < self.batch_size {
            // Open every file that may hold a row at or before the next one in the heap
            // (with nothing open, the file that starts first and those starting with it):
            // only overlapping files are open, and decoded, at once.
            let frontier = match self.heap.peek() {
                Some(Reverse((ts, _))) => *ts,
                None => self.files.front().map_or(i64::MAX, |f| f.min_ts),
            };
            while self.files.front().is_some_and(|f| f.min_ts <= frontier) {
                if let Some(f) = self.files.pop_front() {
                    self.admit(f)?;
                }
            }
            if let (Some(w), Some(first), Some(Reverse((next, _)))) = (self.window, out.first(), self.heap.peek()) {
                if *next > first.ts.saturating_add(w) {
                    break;
                }
            }
            let Some(Reverse((_, i))) = self.heap.pop() else {
                if self.files.is_empty() {
                    break;
                }
                continue;
            };
            let Some(row) = self.open[i].buf.pop_front() else { continue };
            let refill = self.open[i].fill();
            if let Err(e) = refill {
                let path = self.open[i].path.clone();
                self.open[i].done = true;
                self.open[i].reader = None;
                self.open[i].buf.clear();
                self.fail(&path, e)?;
            }
            if let Some(next) = self.open[i].buf.front() {
                self.heap.push(Reverse((next.ts, i)));
            }
            if self.sel.contains(row.ts) {
                out.push(row);
            } else if self.sel.to.is_some_and(|to| row.ts > to) && self.heap.is_empty() && self.files.is_empty() {
                break;
            }
        }
        Ok((!out.is_empty()).then(|| unerase(self.signal, out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_bounds_are_inclusive() {
        let s = Selection { from: Some(10), to: Some(20), signals: SignalSet::ALL };
        assert!(s.contains(10) && s.contains(20) && !s.contains(9) && !s.contains(21));
    }
}
