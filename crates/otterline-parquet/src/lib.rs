//! Otterline's Parquet archive.
//!
//! - [`exporter`]: the `parquet` exporter writes traces, metrics and logs as
//!   Hive-partitioned Parquet (`<path>/<signal>/date=YYYY-MM-DD/hour=HH/*.parquet`),
//!   one row per span / data point / log record, sorted by time within each file.
//! - [`receiver`]: the `parquet` receiver replays such an archive into a pipeline,
//!   in time order per signal, as fast as possible or at a multiple of real time.
//! - [`archive`]: finding and reading archive files (shared by the receiver and the CLI).
//! - [`wal`]: the exporter's write-ahead log (crash safety).
//! - [`codec`]: the Arrow schema and the OTLP ⇄ Arrow conversion; [`rows`]: items
//!   flattened out of OTLP batches and grouped back.

pub mod archive;
pub mod codec;
pub mod exporter;
pub mod receiver;
pub mod rows;
pub mod wal;

pub use exporter::ParquetExporterFactory;
pub use receiver::ParquetReceiverFactory;
