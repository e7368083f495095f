//! `otterline query`: SQL over the archive's tables, printed as a table, CSV or JSON.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::archive::Archive;
use crate::AnalyticsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "table" => Ok(Format::Table),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            o => Err(format!("unknown format {o:?}: use table, csv or json")),
        }
    }
}

/// Runs `sql` and collects the result.
pub async fn run(archive: &Archive, sql: &str) -> Result<Vec<RecordBatch>, AnalyticsError> {
    let df = archive.ctx.sql(sql).await.map_err(|e| AnalyticsError::Query(format!("{e}")))?;
    df.collect().await.map_err(|e| AnalyticsError::Query(format!("{e}")))
}

/// Renders batches in `format` (JSON: an array of row objects).
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, AnalyticsError> {
    match format {
        Format::Table => Ok(format!("{}\n", pretty_format_batches(batches)?)),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in batches {
                    w.write(b)?;
                }
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::json::ArrayWriter::new(&mut out);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs)?;
                w.finish()?;
            }
            if out.is_empty() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'\n');
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
    }
}
