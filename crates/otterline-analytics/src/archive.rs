//! Opens an archive written by the `parquet` exporter as DataFusion tables.
//!
//! `<dir>/traces`, `<dir>/metrics` and `<dir>/logs` become the tables `spans_all`,
//! `metrics_all` and `logs_all` (Hive partitions `date` and `hour` as strings), always in
//! archive schema version 2, and the views `spans`, `metrics` and `logs` restrict them to
//! the `--from`/`--to` period (pruning partitions by `date`). `spans` adds columns the
//! reports use: `duration_ms`, `cost` (USD; NULL when unpriced), `unpriced`, `input_tokens`, `output_tokens`, `tokens`,
//! `is_error`, `quality` and `satisfaction` (span attributes `quality.score` and
//! `user.satisfaction`).
//!
//! Version 2 files (`*.v2.parquet`) are a DataFusion listing table, with partition and
//! row-group pruning. Files of version 1 (written before archive v2) are read through the
//! archive codec and converted to version 2 batches as they stream ([`LegacyFile`]), and
//! joined to the listing table with `UNION ALL`: one directory may hold both.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use otterline_core::Signal;
use otterline_parquet::codec::{self, Version};

use crate::AnalyticsError;

/// A time range `[from, to)`; either end may be open.
#[derive(Debug, Clone, Copy, Default)]
pub struct Period {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl Period {
    fn condition(&self, time_col: &str) -> String {
        let mut parts = Vec::new();
        if let Some(f) = self.from {
            parts.push(format!("date >= '{}'", f.format("%Y-%m-%d")));
            parts.push(format!("{time_col} >= {}", literal(f)));
        }
        if let Some(t) = self.to {
            parts.push(format!("date <= '{}'", t.format("%Y-%m-%d")));
            parts.push(format!("{time_col} < {}", literal(t)));
        }
        if parts.is_empty() {
            "TRUE".into()
        } else {
            parts.join(" AND ")
        }
    }
}

/// A UTC timestamp literal comparable with the archive's `timestamp[ns, UTC]` columns.
pub fn literal(t: DateTime<Utc>) -> String {
    format!("to_timestamp_nanos({})", t.timestamp_nanos_opt().unwrap_or(i64::MAX))
}

/// An archive opened for queries.
pub struct Archive {
    pub ctx: SessionContext,
    pub dir: PathBuf,
    /// Which of `spans`, `metrics`, `logs` exist.
    pub tables: Vec<&'static str>,
}

impl Archive {
    pub async fn open(dir: &Path, period: Period) -> Result<Archive, AnalyticsError> {
        if !dir.is_dir() {
            return Err(AnalyticsError::Input(format!(
                "{} is not a directory; pass the `path` of a parquet exporter (it holds traces/, metrics/ and logs/)",
                dir.display()
            )));
        }
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let config = SessionConfig::new().with_target_partitions(threads).with_information_schema(true);
        let ctx = SessionContext::new_with_config(config);
        let mut tables = Vec::new();
        for (sub, signal, table, time_col) in [
            ("traces", Signal::Traces, "spans", "start_time"),
            ("metrics", Signal::Metrics, "metrics", "time"),
            ("logs", Signal::Logs, "logs", "time"),
        ] {
            let path = dir.join(sub);
            let (has_v2, legacy) = archive_files(&path);
            if !has_v2 && legacy.is_empty() {
                continue;
            }
            let mut parts = Vec::new();
            if has_v2 {
                let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
                    .with_file_extension(Version::V2.file_suffix())
                    .with_table_partition_cols(vec![
                        ("date".to_string(), DataType::Utf8),
                        ("hour".to_string(), DataType::Utf8),
                    ]);
                let url = format!("{}/", path.canonicalize().unwrap_or(path.clone()).display());
                ctx.register_listing_table(&format!("{table}_v2"), &url, opts, None, None).await?;
                parts.push(format!("SELECT * FROM {table}_v2"));
            }
            if !legacy.is_empty() {
                let schema = legacy_schema(signal);
                let files: Vec<Arc<dyn PartitionStream>> = legacy
                    .into_iter()
                    .map(|path| {
                        Arc::new(LegacyFile { path, signal, schema: schema.clone() }) as Arc<dyn PartitionStream>
                    })
                    .collect();
                ctx.register_table(format!("{table}_v1"), Arc::new(StreamingTable::try_new(schema, files)?))?;
                parts.push(format!("SELECT * FROM {table}_v1"));
            }
            ctx.sql(&format!("CREATE VIEW {table}_all AS {}", parts.join(" UNION ALL "))).await?;
            let extra = if table == "spans" { span_columns() } else { String::new() };
            let view =
                format!("CREATE VIEW {table} AS SELECT *{extra} FROM {table}_all WHERE {}", period.condition(time_col));
            ctx.sql(&view).await?;
            tables.push(table);
        }
        if tables.is_empty() {
            return Err(AnalyticsError::Input(format!(
                "{} holds no archive files (expected traces/, metrics/ or logs/ with .parquet files written by the parquet exporter)",
                dir.display()
            )));
        }
        Ok(Archive { ctx, dir: dir.to_path_buf(), tables })
    }

    pub fn has(&self, table: &str) -> bool {
        self.tables.contains(&table)
    }

    /// An error for a report or command that needs `table`.
    pub fn require(&self, table: &str) -> Result<(), AnalyticsError> {
        if self.has(table) {
            Ok(())
        } else {
            Err(AnalyticsError::Input(format!("the archive at {} has no {table}", self.dir.display())))
        }
    }
}

/// The columns `spans` adds. `cost` is NULL where a span has none (unpriced: a model missing
/// from the price table, or not an LLM call), never a made-up 0; `unpriced` marks the spans
/// the `cost` processor could not price.
fn span_columns() -> String {
    format!(
        ",
    CAST(duration_ns AS DOUBLE) / 1e6 AS duration_ms,
    gen_ai_usage_cost AS cost,
    COALESCE(TRY_CAST(attributes[{unpriced}] AS BOOLEAN), false) AS unpriced,
    COALESCE(gen_ai_usage_input_tokens, 0) AS input_tokens,
    COALESCE(gen_ai_usage_output_tokens, 0) AS output_tokens,
    COALESCE(gen_ai_usage_input_tokens, 0) + COALESCE(gen_ai_usage_output_tokens, 0) AS tokens,
    status_code = 'error' AS is_error,
    TRY_CAST(attributes['quality.score'] AS DOUBLE) AS quality,
    TRY_CAST(attributes['user.satisfaction'] AS DOUBLE) AS satisfaction",
        unpriced = crate::sql_string(otterline_model::names::cost::UNPRICED)
    )
}

/// Whether `dir` (a signal directory) holds version 2 files, and its other archive files.
fn archive_files(dir: &Path) -> (bool, Vec<PathBuf>) {
    fn walk(dir: &Path, depth: usize, v2: &mut bool, legacy: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if p.is_dir() && depth < 3 {
                walk(&p, depth + 1, v2, legacy);
            } else if name.starts_with('.') || !name.ends_with(".parquet") {
                // Hidden files are the exporter's files being written.
            } else if name.ends_with(Version::V2.file_suffix()) {
                *v2 = true;
            } else {
                legacy.push(p);
            }
        }
    }
    let (mut v2, mut legacy) = (false, Vec::new());
    walk(dir, 0, &mut v2, &mut legacy);
    legacy.sort();
    (v2, legacy)
}

/// The version 2 table schema with the Hive partition columns, as the listing table has it.
fn legacy_schema(signal: Signal) -> SchemaRef {
    let v2 = codec::schema(signal, Version::V2);
    let mut fields: Vec<Field> = v2.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("date", DataType::Utf8, false));
    fields.push(Field::new("hour", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// An archive file that is not `*.v2.parquet` (version 1), read as version 2 batches.
#[derive(Debug)]
struct LegacyFile {
    path: PathBuf,
    signal: Signal,
    schema: SchemaRef,
}

impl LegacyFile {
    /// `date=` and `hour=` of the file's directories, as the listing table reads them.
    fn partition(&self) -> (String, String) {
        let dir = |n: usize, key: &str| -> String {
            self.path
                .ancestors()
                .nth(n)
                .and_then(|d| d.file_name())
                .and_then(|d| d.to_str())
                .and_then(|d| d.strip_prefix(key))
                .unwrap_or_default()
                .to_string()
        };
        (dir(2, "date="), dir(1, "hour="))
    }

    fn batches(&self) -> Result<impl Iterator<Item = Result<RecordBatch, DataFusionError>> + Send, DataFusionError> {
        let file = std::fs::File::open(&self.path)
            .map_err(|e| DataFusionError::Execution(format!("cannot open {}: {e}", self.path.display())))?;
        let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(8192)
            .build()?;
        let (signal, schema, path) = (self.signal, self.schema.clone(), self.path.clone());
        let (date, hour) = self.partition();
        Ok(reader.map(move |batch| {
            let batch = batch?;
            let rows = codec::decode(signal, &batch)?;
            let n = rows.len();
            let v2 = codec::encode_range(&rows, 0..n, Version::V2)
                .map_err(|e| DataFusionError::Execution(format!("{}: {e}", path.display())))?;
            let mut cols: Vec<ArrayRef> = v2.columns().to_vec();
            cols.push(Arc::new(StringArray::from(vec![date.as_str(); n])));
            cols.push(Arc::new(StringArray::from(vec![hour.as_str(); n])));
            Ok(RecordBatch::try_new(schema.clone(), cols)?)
        }))
    }
}

impl PartitionStream for LegacyFile {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches: Box<dyn Iterator<Item = Result<RecordBatch, DataFusionError>> + Send> = match self.batches() {
            Ok(it) => Box::new(it),
            Err(e) => Box::new(std::iter::once(Err(e))),
        };
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), futures::stream::iter(batches)))
    }
}
