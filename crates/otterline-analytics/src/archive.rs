//! Opens an archive written by the `parquet` exporter as DataFusion tables.
//!
//! `<dir>/traces`, `<dir>/metrics` and `<dir>/logs` become the listing tables `spans_all`,
//! `metrics_all` and `logs_all` (Hive partitions `date` and `hour` as strings), and the views
//! `spans`, `metrics` and `logs` restrict them to the `--from`/`--to` period (pruning
//! partitions by `date`). `spans` adds columns the reports use: `duration_ms`, `cost`
//! (USD), `input_tokens`, `output_tokens`, `tokens`, `is_error`, `quality` and
//! `satisfaction` (span attributes `quality.score` and `user.satisfaction`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::prelude::{SessionConfig, SessionContext};

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
        for (sub, table, time_col) in
            [("traces", "spans", "start_time"), ("metrics", "metrics", "time"), ("logs", "logs", "time")]
        {
            let path = dir.join(sub);
            if !has_parquet(&path) {
                continue;
            }
            let opts = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(vec![
                    ("date".to_string(), DataType::Utf8),
                    ("hour".to_string(), DataType::Utf8),
                ]);
            let url = format!("{}/", path.canonicalize().unwrap_or(path.clone()).display());
            ctx.register_listing_table(&format!("{table}_all"), &url, opts, None, None).await?;
            let extra = if table == "spans" { SPAN_COLUMNS } else { "" };
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

const SPAN_COLUMNS: &str = ",
    CAST(duration_ns AS DOUBLE) / 1e6 AS duration_ms,
    COALESCE(gen_ai_usage_cost, 0.0) AS cost,
    COALESCE(gen_ai_usage_input_tokens, 0) AS input_tokens,
    COALESCE(gen_ai_usage_output_tokens, 0) AS output_tokens,
    COALESCE(gen_ai_usage_input_tokens, 0) + COALESCE(gen_ai_usage_output_tokens, 0) AS tokens,
    status_code = 'error' AS is_error,
    get_field(attributes['quality.score'], 'double') AS quality,
    get_field(attributes['user.satisfaction'], 'double') AS satisfaction";

fn has_parquet(dir: &Path) -> bool {
    fn walk(dir: &Path, depth: usize) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && depth < 3 && walk(&p, depth + 1) {
                return true;
            }
            if p.extension().is_some_and(|x| x == "parquet") {
                return true;
            }
        }
        false
    }
    walk(dir, 0)
}
