//! The archive analytics commands: `query`, `report`, `budget check`, `compare`.
//! They open a Parquet archive with `otterline-analytics` (DataFusion) and exit 0 on
//! success, 1 on a failed budget check or query, 2 on bad input.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use otterline_analytics::archive::{Archive, Period};
use otterline_analytics::{budget, compare, query, report, AnalyticsError};

#[derive(clap::Args)]
pub struct ArchiveArgs {
    /// The archive: the `path` of a parquet exporter (holds traces/, metrics/, logs/).
    #[arg(long, default_value = "./otterline-data/parquet")]
    archive: PathBuf,
    /// Only data at or after this time: RFC 3339, a date (YYYY-MM-DD), or an age such as 7d.
    #[arg(long)]
    from: Option<String>,
    /// Only data before this time: RFC 3339, a date (YYYY-MM-DD, exclusive), or an age such as 1d.
    #[arg(long)]
    to: Option<String>,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// The SQL; tables `spans`, `metrics`, `logs` (restricted to --from/--to) and `*_all`.
    sql: String,
    /// `table`, `csv` or `json`.
    #[arg(long, default_value = "table")]
    format: String,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// daily, weekly, monthly, cost, bottleneck, quality, satisfaction or errors.
    #[arg(long)]
    kind: String,
    /// Dimensions to group by: service, model, operation, name, or a span attribute key.
    #[arg(long, num_args = 1..)]
    by: Vec<String>,
    /// md, html or json.
    #[arg(long, default_value = "md")]
    format: String,
    /// Write to this file (default: standard output).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum BudgetCommand {
    /// Evaluate budgets over the archive; exit 1 on a violation of a strict budget.
    Check(BudgetCheckArgs),
}

#[derive(clap::Args)]
pub struct BudgetCheckArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// YAML file with `budgets:` (the anomaly processor's rule syntax).
    #[arg(long)]
    budgets: PathBuf,
    /// Treat every budget as strict (any violation fails).
    #[arg(long)]
    strict: bool,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    format: String,
}

#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    archive: ArchiveArgs,
    /// The attribute that names the variant (span, else resource attribute), e.g. deployment.version.
    #[arg(long)]
    by: String,
    /// Variant A (the baseline).
    a: String,
    /// Variant B.
    b: String,
    /// duration, cost, tokens or quality.
    #[arg(long, default_value = "duration")]
    metric: String,
    /// No winner is called below this many values per variant.
    #[arg(long, default_value_t = 30)]
    min_samples: usize,
    /// Significance level.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// `text` or `json`.
    #[arg(long, default_value = "text")]
    format: String,
}

fn parse_time(flag: &str, s: &str) -> Result<DateTime<Utc>, AnalyticsError> {
    otterline_core::time::parse_time_arg(s, Utc::now()).map_err(|e| AnalyticsError::Input(format!("{flag}: {e}")))
}

impl ArchiveArgs {
    async fn open(&self) -> Result<Archive, AnalyticsError> {
        let period = Period {
            from: self.from.as_deref().map(|s| parse_time("--from", s)).transpose()?,
            to: self.to.as_deref().map(|s| parse_time("--to", s)).transpose()?,
        };
        Archive::open(&self.archive, period).await
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AnalyticsError> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Runs an analytics command and maps its outcome to an exit code.
fn finish(what: &str, r: Result<ExitCode, AnalyticsError>) -> ExitCode {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("otterline {what}: {e}");
            match e {
                AnalyticsError::Input(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn emit(text: &str, output: Option<&PathBuf>) -> Result<(), AnalyticsError> {
    match output {
        None => {
            print!("{text}");
            Ok(())
        }
        Some(p) => {
            let tmp = otterline_core::fsutil::temp_path(p);
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, p)?;
            eprintln!("wrote {}", p.display());
            Ok(())
        }
    }
}

pub fn query(args: &QueryArgs) -> ExitCode {
    finish(
        "query",
        (|| {
            let format = query::Format::parse(&args.format).map_err(AnalyticsError::Input)?;
            runtime()?.block_on(async {
                let archive = args.archive.open().await?;
                let batches = query::run(&archive, &args.sql).await?;
                print!("{}", query::render(&batches, format)?);
                Ok(ExitCode::SUCCESS)
            })
        })(),
    )
}

pub fn report(args: &ReportArgs) -> ExitCode {
    finish(
        "report",
        (|| {
            let kind = report::Kind::parse(&args.kind).map_err(AnalyticsError::Input)?;
            let format = report::Format::parse(&args.format).map_err(AnalyticsError::Input)?;
            runtime()?.block_on(async {
                let archive = args.archive.open().await?;
                let r = report::build(&archive, &report::Options { kind, by: args.by.clone() }).await?;
                emit(&report::render(&r, format), args.output.as_ref())?;
                Ok(ExitCode::SUCCESS)
            })
        })(),
    )
}

pub fn budget(cmd: &BudgetCommand) -> ExitCode {
    let BudgetCommand::Check(args) = cmd;
    finish(
        "budget check",
        (|| {
            let budgets = budget::load(&args.budgets)?;
            runtime()?.block_on(async {
                let archive = args.archive.open().await?;
                let r = budget::check(&archive, &budgets, args.strict).await?;
                match args.format.as_str() {
                    "json" => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
                    _ => print!("{}", budget::render_text(&r)),
                }
                Ok(if r.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
            })
        })(),
    )
}

pub fn compare(args: &CompareArgs) -> ExitCode {
    finish(
        "compare",
        (|| {
            let metric = compare::Metric::parse(&args.metric).map_err(AnalyticsError::Input)?;
            if !(0.0 < args.alpha && args.alpha < 0.5) {
                return Err(AnalyticsError::Input("--alpha must be between 0 and 0.5".into()));
            }
            let opts = compare::Options {
                by: args.by.clone(),
                a: args.a.clone(),
                b: args.b.clone(),
                metric,
                min_samples: args.min_samples.max(2),
                alpha: args.alpha,
            };
            runtime()?.block_on(async {
                let archive = args.archive.open().await?;
                let c = compare::compare(&archive, &opts).await?;
                match args.format.as_str() {
                    "json" => println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default()),
                    _ => print!("{}", compare::render_text(&c)),
                }
                Ok(ExitCode::SUCCESS)
            })
        })(),
    )
}
