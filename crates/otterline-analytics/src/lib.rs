//! Analytics over Otterline's Parquet archive, with Apache DataFusion as the query engine.
//!
//! - [`archive`]: opens an archive as the tables `spans`, `metrics`, `logs` for a period.
//! - [`query`]: `otterline query` — SQL, printed as a table, CSV or JSON.
//! - [`report`]: `otterline report` — summaries, cost, bottlenecks, quality, satisfaction and
//!   errors with trends, forecasts, period-over-period changes and insight sentences, as
//!   Markdown, HTML (SVG charts, one file) or JSON.
//! - [`budget`]: `otterline budget check` — the anomaly processor's budget rules over a period.
//! - [`compare`]: `otterline compare` — A/B comparison of two variants of an attribute.
//! - [`stats`]: regression, Welch's t-test, Mann-Whitney U, effect sizes, intervals.

pub mod archive;
pub mod budget;
mod chart;
pub mod compare;
mod progress;
pub mod query;
pub mod report;
pub mod stats;

pub use datafusion;

/// What went wrong, and whose fault it is (exit code 2 for input, 1 otherwise).
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    /// The user's input: a missing archive, a bad option, a bad budgets file.
    #[error("{0}")]
    Input(String),
    /// A query failed (bad SQL, unreadable file).
    #[error("query failed: {0}")]
    Query(String),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Rows of a query as JSON objects (for aggregated results, where rows are few).
pub async fn rows(
    archive: &archive::Archive,
    sql: &str,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, AnalyticsError> {
    let batches = query::run(archive, sql).await?;
    let text = query::render(&batches, query::Format::Json)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| AnalyticsError::Query(format!("result is not JSON: {e}")))?;
    Ok(match v {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|r| match r {
                serde_json::Value::Object(m) => Some(m),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

/// A number from a JSON row (numbers, or numeric strings as arrow writes 64-bit decimals).
pub fn num(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> f64 {
    match row.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(serde_json::Value::String(s)) => s.parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// A string from a JSON row (`""` for null).
pub fn text(row: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    match row.get(key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// Quotes a string for SQL.
pub fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
