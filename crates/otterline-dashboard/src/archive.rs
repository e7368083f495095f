//! Long ranges from the Parquet archive: the `metrics` files overlapping the range are
//! merged in time order and fed, batch by batch, to a temporary [`Store`] whose slots are
//! the range's buckets, so an archive answer is computed by the same code as a live one.
//!
//! At start-up [`preload`] fills the in-memory store with the retention's worth of metrics
//! and anomaly events from the archive, so a restart does not empty the 15 min – 24 h views.

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

/// Feeds the archive's metrics and anomaly events of `[from_ns, to_ns)` into the live
/// store, a chunk at a time (the lock is held per chunk, never for the whole read). Only
/// files that exist when it starts are read: this run's own files close later, so nothing
/// is counted twice.
pub fn preload(root: &str, store: &std::sync::RwLock<Store>, from_ns: u64, to_ns: u64) -> Result<ArchiveRead, String> {
    let mut read = ArchiveRead::default();
    for signal in [Signal::Metrics, Signal::Logs] {
        let dir = Path::new(root).join(signal.as_str());
        if !dir.is_dir() {
            continue;
        }
        let sel = Selection { from: Some(from_ns as i64), to: Some(to_ns as i64), signals: SignalSet::of(signal) };
        let (files, skipped) = open(&dir.to_string_lossy(), &sel)?;
        read.files += files.len();
        read.skipped_files += skipped.len();
        let mut reader = SignalReader::new(signal, files, sel, 8192, false);
        while let Some(rows) = reader.next_chunk()? {
            read.points += rows.len() as u64;
            let batch = otterline_parquet::rows::group(rows);
            let now = crate::now_ns();
            match store.write() {
                Ok(mut st) => st.ingest(&batch, now),
                Err(_) => return Err("the dashboard's store is unavailable".into()),
            }
        }
        read.skipped_files += reader.failures.len();
    }
    Ok(read)
}

/// What an archive read touched.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ArchiveRead {
    pub files: usize,
    pub skipped_files: usize,
    pub points: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::window;
    use otterline_core::component::{BuildContext, ExporterContext, ExporterFactory};

    const MIN: u64 = 60_000_000_000;
    /// 2025-11-23T05:00:00Z.
    const T0: u64 = 1_763_874_000_000_000_000;

    /// Writes `batch` to the archive under `root` as schema version `version`.
    async fn archive(root: &Path, version: u32, batch: otterline_core::Batch) {
        let yaml = format!("path: \"{}\"\nschema_version: {version}\n", root.display());
        let node = otterline_core::config::yaml::parse("test", &yaml).unwrap();
        let id = otterline_core::ComponentId::parse("parquet").unwrap();
        let ctx = BuildContext { id: &id, config: &node, path: "exporters.parquet".into(), mark: &node.mark };
        let mut e = otterline_parquet::ParquetExporterFactory.build(&ctx).unwrap();
        let health = std::sync::Arc::new(otterline_core::health::ComponentHealth::new("exporter", "parquet".into()));
        e.start(&ExporterContext { id, health, abort: Default::default() }).await.unwrap();
        e.export(&batch).await.unwrap();
        e.shutdown().await.unwrap();
    }

    /// A restart reloads the retention's history from the archive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn preload_fills_the_store_from_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let now = crate::now_ns();
        let t = now - now % MIN - 10 * MIN;
        for k in 0..3 {
            archive(dir.path(), 2, window("checkout", t + k * MIN, 60, 6, 0.2, 0.5)).await;
        }
        let store = std::sync::RwLock::new(Store::new(Limits {
            resolution_ns: MIN,
            slots: 1440,
            max_services: 10,
            events: 10,
        }));
        let read = preload(&dir.path().display().to_string(), &store, now - 3600 * 1_000_000_000, now).unwrap();
        assert_eq!(read.files, 3);
        let st = store.read().unwrap();
        let sum = st.summary(15, 10, 0);
        assert_eq!(sum.overall.calls, 180);
        assert_eq!(sum.top_by_cost[0].service, "checkout");
    }

    /// A range over an archive that holds files of both schema versions (written before and
    /// after archive v2) reads both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_range_reads_version_1_and_version_2_files_together() {
        let dir = tempfile::tempdir().unwrap();
        archive(dir.path(), 1, window("checkout", T0 + MIN, 60, 6, 0.2, 0.5)).await;
        archive(dir.path(), 2, window("checkout", T0 + 2 * MIN, 120, 0, 0.4, 1.0)).await;
        let root = dir.path().display().to_string();
        let (set, read) = series(&root, &["checkout".into()], T0, T0 + 3 * MIN, MIN, 10).unwrap();
        assert_eq!((read.files, read.skipped_files), (2, 0));
        let calls: f32 = set.series[0].calls_per_minute.iter().flatten().sum();
        assert_eq!(calls, 180.0, "{set:?}");
    }
}
