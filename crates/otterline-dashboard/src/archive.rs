//! Long ranges from the Parquet archive: the `metrics` files overlapping the range are
//! merged in time order and fed, batch by batch, to a temporary [`Store`] whose slots are
//! the range's buckets, so an archive answer is computed by the same code as a live one.

use std::path::Path;

use otterline_core::{Signal, SignalSet};
use otterline_parquet::archive::{open, Selection, SignalReader};

use crate::store::{Limits, Store};
use crate::view::SeriesSet;

/// Series for `names` over `[from_ns, to_ns)` in buckets of `step_ns`, read from the
/// archive under `root` (the Parquet exporter's `path`).
pub fn series(
    root: &str,
    names: &[String],
    from_ns: u64,
    to_ns: u64,
    step_ns: u64,
    max_services: usize,
) -> Result<(SeriesSet, ArchiveRead), String> {
    let step_ns = step_ns.max(1);
    let buckets = (to_ns.saturating_sub(from_ns)).div_ceil(step_ns) as usize + 1;
    let mut store = Store::new(Limits { resolution_ns: step_ns, slots: buckets + 1, max_services, events: 1 });
    let dir = Path::new(root).join("metrics");
    let mut read = ArchiveRead::default();
    if dir.is_dir() {
        let sel =
            Selection { from: Some(from_ns as i64), to: Some(to_ns as i64), signals: SignalSet::of(Signal::Metrics) };
        let (files, skipped) = open(&dir.to_string_lossy(), &sel)?;
        read.files = files.len();
        read.skipped_files = skipped.len();
        let mut reader = SignalReader::new(Signal::Metrics, files, sel, 8192, false);
        while let Some(rows) = reader.next_chunk()? {
            read.points += rows.len() as u64;
            store.ingest(&otterline_parquet::rows::group(rows), to_ns);
        }
        read.skipped_files += reader.failures.len();
    }
    let mut set = store.series(names, from_ns, to_ns, 1);
    set.source = "archive";
    Ok((set, read))
}

/// What an archive read touched.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ArchiveRead {
    pub files: usize,
    pub skipped_files: usize,
    pub points: u64,
}
