//! The `json` exporter: OTLP/JSON lines files.
//!
//! Each line is one `Export*ServiceRequest` in the OTLP/JSON mapping, the same
//! format the OTLP/HTTP receiver accepts, so any file can be re-posted. Files
//! live under `<path>/<signal>/` and are named
//! `<signal>-<UTC stamp>-<pid>-<seq>.jsonl[.gz|.zst]`.
//!
//! A file is written under a hidden temp name and renamed when it is closed
//! (rotation by size or age, or shutdown), so readers never see a torn file.
//! Buffered data is flushed to the temp file every `flush_interval`.
//!
//! Encoding a batch is CPU work and runs on the pipeline's task; lines gather in the
//! open file's buffer and only opening, writing out (every [`WRITE_CHUNK`] bytes),
//! flushing and rotating touch the disk, each in a blocking section.
//!
//! Leftover temp files (after a crash or `kill -9`) are recovered at start-up:
//! every complete line is kept and written to the file's final name, and the
//! torn tail, if any, is dropped with a warning naming the file.
//!
//! A write error (a full disk) loses nothing that was accepted: the file is cut back to
//! its last flush and published, the lines written since (at most [`WRITE_CHUNK`] plus one
//! batch: every chunk is flushed) are kept in memory, and new data of that signal is refused
//! (retryable) until those lines are written to a new file, tried at most once a second.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use otterline_core::component::{
    BuildContext, ComponentError, ExportError, Exporter, ExporterContext, ExporterFactory,
};
use otterline_core::config::ConfigError;
use otterline_core::fsutil::{self, PendingFile};
use otterline_core::pdata::json;
use otterline_core::{Batch, Signal, SignalSet};

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn extension(self) -> &'static str {
        match self {
            Compression::None => "jsonl",
            Compression::Gzip => "jsonl.gz",
            Compression::Zstd => "jsonl.zst",
        }
    }

    fn of_path(p: &Path) -> Compression {
        let name = p.to_string_lossy();
        if name.ends_with(".gz") || name.ends_with(".gz.tmp") {
            Compression::Gzip
        } else if name.ends_with(".zst") || name.ends_with(".zst.tmp") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rotation {
    /// Close the file once it reaches this many megabytes on disk (0: never).
    pub max_megabytes: u64,
    /// Close the file once it has been open this long (0: never).
    #[serde(with = "otterline_core::units::duration")]
    pub max_age: Duration,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_megabytes: 100, max_age: Duration::from_secs(3600) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonConfig {
    /// Directory to write into; one subdirectory per signal.
    pub path: Option<PathBuf>,
    pub compression: Compression,
    #[serde(with = "otterline_core::units::duration")]
    pub flush_interval: Duration,
    pub rotation: Rotation,
}

impl Default for JsonConfig {
    fn default() -> Self {
        JsonConfig {
            path: None,
            compression: Compression::None,
            flush_interval: Duration::from_secs(1),
            rotation: Rotation::default(),
        }
    }
}

pub struct JsonExporterFactory;

impl ExporterFactory for JsonExporterFactory {
    fn type_name(&self) -> &'static str {
        "json"
    }
    fn description(&self) -> &'static str {
        "OTLP/JSON lines files under <path>/<signal>/, rotated by size and age, optionally gzip/zstd"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
        let cfg: JsonConfig = ctx.parse()?;
        let Some(path) = cfg.path.clone().filter(|p| !p.as_os_str().is_empty()) else {
            return Err(ctx.error("path", "`path` is required: the directory to write OTLP/JSON files into"));
        };
        if cfg.flush_interval.is_zero() {
            return Err(ctx.error("flush_interval", "must be more than 0"));
        }
        Ok(Box::new(JsonExporter {
            root: path,
            cfg,
            files: [None, None, None],
            name: ctx.id.to_string(),
            broken: [None, None, None],
        }))
    }
}

/// Counts bytes that reach the file (after compression).
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type Sink = Counting<BufWriter<File>>;

enum Encoder {
    Plain(Sink),
    Gzip(flate2::write::GzEncoder<Sink>),
    Zstd(zstd::stream::write::Encoder<'static, Sink>),
}

impl Encoder {
    fn new(c: Compression, sink: Sink) -> io::Result<Encoder> {
        Ok(match c {
            Compression::None => Encoder::Plain(sink),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(sink, flate2::Compression::fast())),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(sink, 3)?),
        })
    }
    fn writer(&mut self) -> &mut dyn Write {
        match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w,
            Encoder::Zstd(w) => w,
        }
    }
    fn on_disk(&self) -> u64 {
        match self {
            Encoder::Plain(w) => w.written,
            Encoder::Gzip(w) => w.get_ref().written,
            Encoder::Zstd(w) => w.get_ref().written,
        }
    }
    /// Writes trailers and returns the underlying file, flushed.
    fn finish(self) -> io::Result<File> {
        let sink = match self {
            Encoder::Plain(w) => w,
            Encoder::Gzip(w) => w.finish()?,
            Encoder::Zstd(w) => w.finish()?,
        };
        sink.inner.into_inner().map_err(|e| e.into_error())
    }
}

/// Lines gather in memory up to this many bytes before they are handed to the file:
/// one `write` (and one blocking section) per this much, not one per batch.
const WRITE_CHUNK: usize = 1 << 20;

struct OpenFile {
    pending: PendingFile,
    enc: Encoder,
    opened: Instant,
    /// Complete lines not yet handed to the encoder.
    buf: String,
    /// Bytes were handed to the encoder since the last flush.
    dirty: bool,
    /// Lines handed to the encoder since the last flush: what a write error would lose.
    unflushed: String,
    /// File length at the last flush (a prefix of complete lines, decodable if compressed).
    flushed_len: u64,
}

impl OpenFile {
    /// Hands the gathered lines to the encoder (and, through its buffer, the file).
    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.enc.writer().write_all(self.buf.as_bytes())?;
            self.unflushed.push_str(&self.buf);
            self.buf.clear();
            self.dirty = true;
        }
        Ok(())
    }

    /// Writes out the gathered lines and flushes them to the file: a point a write error
    /// can fall back to.
    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        if self.dirty {
            self.enc.writer().flush()?;
            self.dirty = false;
        }
        self.unflushed.clear();
        self.flushed_len = self.enc.on_disk();
        Ok(())
    }

    /// Whether the file has reached its size or age limit, counting the gathered lines.
    fn rotation_due(&self, rotation: &Rotation, compression: Compression) -> bool {
        let gathered = if compression == Compression::None { self.buf.len() as u64 } else { 0 };
        let too_big = rotation.max_megabytes > 0 && self.enc.on_disk() + gathered >= rotation.max_megabytes * 1_000_000;
        too_big || (!rotation.max_age.is_zero() && self.opened.elapsed() >= rotation.max_age)
    }
}

struct JsonExporter {
    root: PathBuf,
    cfg: JsonConfig,
    files: [Option<OpenFile>; 3],
    name: String,
    /// Per signal, after a write error: the accepted lines not yet in a file, why writing
    /// failed, and when it was last tried.
    broken: [Option<Broken>; 3],
}

struct Broken {
    lines: String,
    reason: String,
    tried: Instant,
}

impl JsonExporter {
    fn dir(&self, s: Signal) -> PathBuf {
        self.root.join(s.as_str())
    }

    fn open(&self, s: Signal) -> io::Result<OpenFile> {
        let name = otterline_core::fsutil::unique_name(s.as_str(), &format!(".{}", self.cfg.compression.extension()));
        let (pending, file) = PendingFile::create(self.dir(s).join(name))?;
        let sink = Counting { inner: BufWriter::with_capacity(256 * 1024, file), written: 0 };
        Ok(OpenFile {
            pending,
            enc: Encoder::new(self.cfg.compression, sink)?,
            opened: Instant::now(),
            buf: String::new(),
            dirty: false,
            unflushed: String::new(),
            flushed_len: 0,
        })
    }

    fn close(&mut self, s: Signal) -> io::Result<()> {
        // Flushed in place first: if that fails, the open file's lines are still known.
        if let Some(f) = self.files[s.index()].as_mut() {
            f.flush()?;
        }
        if let Some(f) = self.files[s.index()].take() {
            // Every line is in the file now; a failure from here on is salvaged whole.
            let tmp = f.pending.temp_path.clone();
            let file = match f.enc.finish() {
                Ok(file) => file,
                Err(e) => {
                    let _ = recover(&tmp);
                    return Err(e);
                }
            };
            let path = f.pending.commit(file)?;
            tracing::debug!(exporter = %self.name, file = %path.display(), "closed");
        }
        Ok(())
    }

    /// Appends the batch's line to its open file's buffer (no I/O). Returns whether the
    /// file now needs writing out or rotating; `None` if no file is open for the signal.
    fn gather(&mut self, batch: &Batch) -> Option<bool> {
        let f = self.files[batch.signal().index()].as_mut()?;
        json::encode_into(batch, &mut f.buf);
        f.buf.push('\n');
        Some(f.buf.len() >= WRITE_CHUNK || f.rotation_due(&self.cfg.rotation, self.cfg.compression))
    }

    /// Writes out and flushes a signal's gathered lines, or closes its file if it is due
    /// for rotation.
    fn write_out(&mut self, s: Signal) -> io::Result<()> {
        let Some(f) = self.files[s.index()].as_mut() else { return Ok(()) };
        if f.rotation_due(&self.cfg.rotation, self.cfg.compression) {
            self.close(s)
        } else {
            f.flush()
        }
    }

    /// Adds a batch: opens the signal's file if none is, gathers the line, and writes
    /// out or rotates when [`gather`](Self::gather) says so. Only the I/O blocks. Once the
    /// line is gathered the batch is accepted: a write error after that keeps it (with
    /// every line since the last flush) for [`repair`](Self::repair).
    async fn write_batch(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let s = batch.signal();
        if self.broken[s.index()].is_some() {
            self.repair(s, false).await?;
        }
        if self.files[s.index()].is_none() {
            let f = otterline_core::blocking(|| self.open(s))
                .map_err(|e| export_error(e, &format!("opening a {s} file in {}", self.dir(s).display())))?;
            self.files[s.index()] = Some(f);
        }
        if self.gather(batch) == Some(true) {
            if let Err(e) = otterline_core::blocking(|| self.write_out(s)) {
                self.fail(s, e);
            }
        }
        Ok(())
    }

    /// A write error: the open file is cut back to its last flush and published (a prefix
    /// of complete lines), the lines since are kept, and new data is refused until
    /// [`repair`](Self::repair) has written them.
    fn fail(&mut self, s: Signal, e: io::Error) {
        let reason = format!("writing {} to {}: {}", s, self.dir(s).display(), fsutil::describe(&e));
        let mut lines = String::new();
        if let Some(f) = self.files[s.index()].take() {
            let (tmp, keep) = (f.pending.temp_path.clone(), f.flushed_len);
            lines = f.unflushed;
            lines.push_str(&f.buf);
            // Dropping the encoder may write a trailer; the cut below removes it.
            drop(f.enc);
            let salvaged = std::fs::OpenOptions::new().write(true).open(&tmp).and_then(|file| file.set_len(keep));
            if let Err(e) = salvaged.and_then(|()| recover(&tmp).map(|_| ())) {
                tracing::error!(exporter = %self.name, file = %tmp.display(), error = %e, "could not publish the part of a file written before a write error; it is left in place (start-up recovers it)");
            }
        }
        match self.broken[s.index()].as_mut() {
            Some(b) => {
                b.lines.push_str(&lines);
                b.reason = reason;
            }
            None => {
                tracing::error!(exporter = %self.name, held_bytes = lines.len(), "{reason}; new {s} data is refused (retryable) until it can be written; nothing accepted is lost (held in memory)");
                self.broken[s.index()] = Some(Broken { lines, reason, tried: Instant::now() });
            }
        }
    }

    /// Writes the lines held since a write error to a new file (at most one try a second);
    /// refuses (retryable) while that fails.
    async fn repair(&mut self, s: Signal, now: bool) -> Result<(), ExportError> {
        let Some(b) = self.broken[s.index()].as_mut() else { return Ok(()) };
        let refuse = |b: &Broken| {
            ExportError::Retryable(format!(
                "{}; new data is refused until the {} KiB held are written",
                b.reason,
                b.lines.len().div_ceil(1024)
            ))
        };
        if !now && b.tried.elapsed() < Duration::from_secs(1) {
            return Err(refuse(b));
        }
        b.tried = Instant::now();
        let lines = std::mem::take(&mut b.lines);
        let result = otterline_core::blocking(|| -> io::Result<()> {
            if self.files[s.index()].is_none() {
                self.files[s.index()] = Some(self.open(s)?);
            }
            let Some(f) = self.files[s.index()].as_mut() else { return Ok(()) };
            f.buf.insert_str(0, &lines);
            f.flush()
        });
        match result {
            Ok(()) => {
                let held = lines.len();
                self.broken[s.index()] = None;
                tracing::info!(exporter = %self.name, signal = %s, held_bytes = held, "writes work again; the lines held since the write error are written");
                Ok(())
            }
            Err(e) => {
                let msg = fsutil::describe(&e);
                if self.files[s.index()].is_some() {
                    self.fail(s, e);
                } else if let Some(b) = self.broken[s.index()].as_mut() {
                    b.lines = lines;
                }
                match self.broken[s.index()].as_ref() {
                    Some(b) => {
                        tracing::debug!(exporter = %self.name, reason = %b.reason, "writes still fail");
                        Err(refuse(b))
                    }
                    None => Err(ExportError::Retryable(format!("writing held lines: {msg}"))),
                }
            }
        }
    }

    fn flush_and_age(&mut self) -> Result<(), (Signal, io::Error)> {
        for s in Signal::ALL {
            let max_age = self.cfg.rotation.max_age;
            if let Some(f) = self.files[s.index()].as_mut() {
                let result = if !max_age.is_zero() && f.opened.elapsed() >= max_age {
                    self.close(s)
                } else if f.dirty || !f.buf.is_empty() {
                    f.flush()
                } else {
                    Ok(())
                };
                result.map_err(|e| (s, e))?;
            }
        }
        Ok(())
    }
}

fn export_error(e: io::Error, what: &str) -> ExportError {
    // Every write error is retryable here: the batch stays queued and the receivers
    // refuse new data until the disk is writable again.
    ExportError::Retryable(format!("{what}: {}", fsutil::describe(&e)))
}

/// Salvages a leftover temp file: keeps every complete line, writes them (compressed
/// as before) under the final name, removes the temp file. Returns the lines kept.
pub fn recover(tmp: &Path) -> io::Result<usize> {
    let Some(final_path) = fsutil::final_path_of(tmp) else { return Ok(0) };
    let compression = Compression::of_path(&final_path);
    let raw = File::open(tmp)?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    };
    // Read what decodes; a torn compressed tail ends the stream with an error.
    let mut reader = BufReader::new(reader);
    let mut kept = Vec::new();
    let mut lines = 0;
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) if line.ends_with(b"\n") => {
                kept.extend_from_slice(&line);
                lines += 1;
            }
            Ok(_) | Err(_) => break,
        }
    }
    drop(reader);
    if lines == 0 {
        std::fs::remove_file(tmp)?;
        return Ok(0);
    }
    // Rewrite the temp file in place with only the complete lines, then publish it.
    // Re-running this after a crash half-way is safe: it salvages a prefix again.
    let file = std::fs::OpenOptions::new().write(true).open(tmp)?;
    match compression {
        Compression::None => file.set_len(kept.len() as u64)?,
        _ => {
            file.set_len(0)?;
            let sink = Counting { inner: BufWriter::new(file.try_clone()?), written: 0 };
            let mut enc = Encoder::new(compression, sink)?;
            enc.writer().write_all(&kept)?;
            enc.finish()?;
        }
    }
    PendingFile { final_path, temp_path: tmp.to_path_buf() }.commit(file)?;
    Ok(lines)
}

#[async_trait]
impl Exporter for JsonExporter {
    async fn start(&mut self, _ctx: &ExporterContext) -> Result<(), ComponentError> {
        for s in Signal::ALL {
            let dir = self.dir(s);
            std::fs::create_dir_all(&dir)
                .map_err(|e| ComponentError::new(format!("cannot create {}: {e}", dir.display())))?;
            let leftovers = fsutil::leftovers(&dir)
                .map_err(|e| ComponentError::new(format!("cannot list {}: {e}", dir.display())))?;
            for tmp in leftovers {
                match recover(&tmp) {
                    Ok(lines) => {
                        tracing::warn!(exporter = %self.name, file = %tmp.display(), lines, "recovered an unfinished file left by an earlier run (a torn last line, if any, was dropped)")
                    }
                    Err(e) => {
                        tracing::error!(exporter = %self.name, file = %tmp.display(), error = %e, "cannot recover an unfinished file; it is left in place")
                    }
                }
            }
        }
        let abs = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        tracing::info!(exporter = %self.name, path = %abs.display(), "OTLP/JSON lines: writing <path>/<signal>/");
        Ok(())
    }

    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        self.write_batch(batch).await
    }

    /// Durable once flushed: the open files are flushed now (lines a write error holds are
    /// not durable: refused).
    async fn ack_when_durable(&mut self, ack: otterline_core::ack::Ack) {
        let flushed = otterline_core::blocking(|| self.flush_and_age());
        let ok = match flushed {
            Ok(()) => true,
            Err((s, e)) => {
                self.fail(s, e);
                false
            }
        };
        ack.done(ok && self.broken.iter().all(Option::is_none));
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.cfg.flush_interval)
    }

    async fn tick(&mut self) -> Result<(), ExportError> {
        for s in Signal::ALL {
            if self.broken[s.index()].is_some() {
                // The held lines are written as soon as the disk takes them.
                let _ = self.repair(s, false).await;
            }
        }
        if let Err((s, e)) = otterline_core::blocking(|| self.flush_and_age()) {
            self.fail(s, e);
        }
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        let mut first_error = None;
        for s in Signal::ALL {
            if self.broken[s.index()].is_some() {
                if let Err(e) = self.repair(s, true).await {
                    first_error.get_or_insert(ComponentError::new(format!("{s}: accepted lines are lost: {e}")));
                    continue;
                }
            }
            if let Err(e) = otterline_core::blocking(|| self.close(s)) {
                first_error.get_or_insert(ComponentError::new(format!("closing the {s} file: {e}")));
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::{logs, ExportLogsServiceRequest};

    fn logs_batch(n: usize) -> Batch {
        Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![logs::ResourceLogs {
                scope_logs: vec![logs::ScopeLogs {
                    log_records: vec![
                        logs::LogRecord {
                            severity_text: "INFO".into(),
                            time_unix_nano: 7,
                            ..Default::default()
                        };
                        n
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn exporter(dir: &Path, compression: Compression, max_megabytes: u64) -> JsonExporter {
        JsonExporter {
            root: dir.to_path_buf(),
            cfg: JsonConfig {
                path: Some(dir.to_path_buf()),
                compression,
                flush_interval: Duration::from_secs(1),
                rotation: Rotation { max_megabytes, max_age: Duration::from_secs(3600) },
            },
            files: [None, None, None],
            name: "json".into(),
            broken: [None, None, None],
        }
    }

    fn read_all(path: &Path) -> String {
        let f = File::open(path).unwrap();
        let mut s = String::new();
        match Compression::of_path(path) {
            Compression::None => BufReader::new(f).read_to_string(&mut s),
            Compression::Gzip => flate2::read::MultiGzDecoder::new(f).read_to_string(&mut s),
            Compression::Zstd => zstd::stream::read::Decoder::new(f).unwrap().read_to_string(&mut s),
        }
        .unwrap();
        s
    }

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn writes_compressed_lines_and_renames_on_close() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let mut e = exporter(dir.path(), c, 100);
            e.export(&logs_batch(2)).await.unwrap();
            e.export(&logs_batch(3)).await.unwrap();
            let logs_dir = dir.path().join("logs");
            // Still open: only the hidden temp file exists.
            assert!(files(&logs_dir).iter().all(|p| p.file_name().unwrap().to_string_lossy().starts_with('.')));
            e.shutdown().await.unwrap();
            let done = files(&logs_dir);
            assert_eq!(done.len(), 1, "{done:?}");
            assert!(done[0].to_string_lossy().ends_with(c.extension()));
            let text = read_all(&done[0]);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2);
            assert_eq!(json::decode(Signal::Logs, lines[1].as_bytes()).unwrap(), logs_batch(3));
        }
    }

    #[tokio::test]
    async fn lines_gather_until_a_chunk_is_full_or_the_flush_tick() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = exporter(dir.path(), Compression::None, 100);
        e.export(&logs_batch(1)).await.unwrap();
        let tmp = e.files[Signal::Logs.index()].as_ref().unwrap().pending.temp_path.clone();
        assert_eq!(std::fs::metadata(&tmp).unwrap().len(), 0, "a small batch waits in memory");
        e.tick().await.unwrap();
        assert_eq!(read_all(&tmp).lines().count(), 1, "the flush tick writes it out");
        // A batch whose line alone exceeds the chunk is written at once.
        e.export(&logs_batch(30_000)).await.unwrap();
        let on_disk = std::fs::metadata(&tmp).unwrap().len() as usize;
        assert!(on_disk > WRITE_CHUNK, "{on_disk} bytes on disk");
        assert_eq!(read_all(&tmp).lines().count(), 2);
        e.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut e = exporter(dir.path(), Compression::None, 1);
        for _ in 0..6 {
            e.export(&logs_batch(10_000)).await.unwrap();
        }
        e.shutdown().await.unwrap();
        let done = files(&dir.path().join("logs"));
        assert!(done.len() >= 2, "{done:?}");
        let total: usize = done.iter().map(|p| read_all(p).lines().count()).sum();
        assert_eq!(total, 6);
    }

    #[tokio::test]
    async fn recovers_complete_lines_of_a_torn_file() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let dir = tempfile::tempdir().unwrap();
            let mut e = exporter(dir.path(), c, 100);
            e.export(&logs_batch(1)).await.unwrap();
            e.export(&logs_batch(1)).await.unwrap();
            e.tick().await.unwrap();
            // Simulate a crash: the file is flushed but never finished; add a torn line.
            let tmp = e.files[Signal::Logs.index()].as_ref().unwrap().pending.temp_path.clone();
            std::mem::forget(e);
            if c == Compression::None {
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&tmp)
                    .unwrap()
                    .write_all(b"{\"resourceLogs\":[{\"sco")
                    .unwrap();
            }
            let mut e2 = exporter(dir.path(), c, 100);
            e2.start(&ExporterContext {
                id: otterline_core::ComponentId::parse("json").unwrap(),
                health: std::sync::Arc::new(otterline_core::health::ComponentHealth::new("exporter", "json".into())),
                abort: Default::default(),
            })
            .await
            .unwrap();
            let done = files(&dir.path().join("logs"));
            assert_eq!(done.len(), 1, "{c:?} {done:?}");
            assert!(!done[0].file_name().unwrap().to_string_lossy().starts_with('.'));
            assert_eq!(read_all(&done[0]).lines().count(), 2, "{c:?}");
        }
    }
}
