//! The `otterline` binary: command line, logging, signals, and the run loop.

#[cfg(feature = "analytics")]
mod analytics_cli;
mod registry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use otterline_core::config::{
    self, ComponentDecl, ComponentRef, Config, ConfigError, Diagnostics, LoadOptions, LogEncoding, MetricsTelemetry,
    Source,
};
use otterline_core::health::HealthRegistry;
use otterline_core::registry::Registry;
use otterline_core::service::{self, Service};
use otterline_core::ComponentKind;
use otterline_parquet::receiver::Progress;

/// mimalloc instead of glibc's malloc: decoding OTLP allocates a string per attribute key
/// and value, and glibc's malloc/free were 40 % of the CPU profile of OTLP → nop.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns mimalloc's free pages to the OS (used by `memory_limiter` above its soft limit).
fn release_free_memory() {
    // SAFETY: mi_collect only frees pages that no live allocation uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// The embedded default pipeline, used when no `--config` is given.
const DEFAULT_CONFIG: &str = include_str!("../pipelines/default.yaml");
const DEFAULT_CONFIG_NAME: &str = "<embedded pipelines/default.yaml>";

#[derive(Parser)]
#[command(name = "otterline", version, about = "OpenTelemetry pipelines for AI-agent and LLM services", long_about = None)]
struct Cli {
    /// Config file(s); later files override earlier ones. Without any, the embedded default pipeline runs.
    #[arg(long = "config", short = 'c', global = true, value_name = "FILE")]
    config: Vec<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines (the default command).
    Run,
    /// Check a config: prints every error with file:line:col and exits 2 if there is any.
    Validate,
    /// List the component types this binary knows.
    Components,
    /// Print the embedded default config.
    DefaultConfig,
    /// Run the pipelines of --config fed by a Parquet archive instead of their receivers.
    Replay(ReplayArgs),
    /// Print the alert history (fired, escalated, resolved, time to resolve).
    Alerts(AlertsArgs),
    /// SQL over a Parquet archive (tables spans, metrics, logs), as a table, CSV or JSON.
    #[cfg(feature = "analytics")]
    Query(analytics_cli::QueryArgs),
    /// A report over a Parquet archive: daily, weekly, monthly, cost, bottleneck, quality, satisfaction, errors.
    #[cfg(feature = "analytics")]
    Report(analytics_cli::ReportArgs),
    /// Budgets over a Parquet archive (a CI gate).
    #[cfg(feature = "analytics")]
    Budget {
        #[command(subcommand)]
        command: analytics_cli::BudgetCommand,
    },
    /// A/B comparison of two variants of an attribute (duration, cost, tokens or quality).
    #[cfg(feature = "analytics")]
    Compare(analytics_cli::CompareArgs),
    /// `query`, `report`, `budget` and `compare` in a binary built without them: an error
    /// that says how to build them, instead of "unrecognized subcommand".
    #[cfg(not(feature = "analytics"))]
    #[command(name = "query", hide = true, disable_help_flag = true, aliases = ["report", "budget", "compare"])]
    Analytics {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

#[derive(clap::Args)]
struct AlertsArgs {
    /// Only entries since this long ago (`24h`, `7d`) or this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// The alert exporter's `history_path`.
    #[arg(long, default_value = "./otterline-data/alerts/history.ndjson")]
    history: PathBuf,
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// Archive directory, glob, or single file.
    #[arg(long)]
    archive: String,
    /// Only items at or after this time (RFC 3339).
    #[arg(long)]
    from: Option<String>,
    /// Only items at or before this time (RFC 3339).
    #[arg(long)]
    to: Option<String>,
    /// `max` (default), or a multiple of recorded time such as `60x`.
    #[arg(long, default_value = "max")]
    speed: String,
    /// Signals to replay (default: all).
    #[arg(long, value_delimiter = ',')]
    signals: Vec<String>,
    /// Fail on a foreign or corrupt file instead of skipping it.
    #[arg(long)]
    strict: bool,
}

fn main() -> ExitCode {
    otterline_core::telemetry::set_release_free_memory(release_free_memory);
    otterline_alert::install_crypto();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Components => {
            print_components();
            ExitCode::SUCCESS
        }
        Command::DefaultConfig => {
            print!("{DEFAULT_CONFIG}");
            ExitCode::SUCCESS
        }
        Command::Validate => match load(&cli.config) {
            Ok((_, _, diags)) => {
                report(&diags);
                println!("config is valid");
                ExitCode::SUCCESS
            }
            Err(diags) => {
                report(&diags);
                eprintln!("config is invalid: {} error(s)", diags.errors.len());
                ExitCode::from(2)
            }
        },
        Command::Run => run(&cli.config),
        Command::Replay(args) => replay(&cli.config, &args),
        Command::Alerts(args) => alerts(&args),
        #[cfg(feature = "analytics")]
        Command::Query(args) => analytics_cli::query(&args),
        #[cfg(feature = "analytics")]
        Command::Report(args) => analytics_cli::report(&args),
        #[cfg(feature = "analytics")]
        Command::Budget { command } => analytics_cli::budget(&command),
        #[cfg(feature = "analytics")]
        Command::Compare(args) => analytics_cli::compare(&args),
        #[cfg(not(feature = "analytics"))]
        Command::Analytics { .. } => {
            eprintln!(
                "otterline: this binary was built without the archive analytics commands (query, report, budget, \
                 compare; they bring DataFusion). Build them in with `cargo build --release --features analytics` \
                 (or `--profile dist --features analytics`) and run target/<profile>/otterline."
            );
            ExitCode::from(2)
        }
    }
}

fn alerts(args: &AlertsArgs) -> ExitCode {
    let since = match args.since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("otterline alerts: {e}");
            return ExitCode::from(2);
        }
    };
    match otterline_alert::history::read(&args.history, since) {
        Ok((entries, bad)) => {
            print!("{}", otterline_alert::history::table(&entries));
            if bad > 0 {
                eprintln!("otterline alerts: {bad} unreadable line(s) in {} skipped", args.history.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("otterline alerts: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `24h`, `7d` (ago), a date or an RFC 3339 time.
fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    otterline_core::time::parse_time_arg(s, chrono::Utc::now()).map_err(|e| format!("--since: {e}"))
}

fn sources(paths: &[PathBuf]) -> Result<Vec<Source>, Diagnostics> {
    if paths.is_empty() {
        return Ok(vec![Source { name: DEFAULT_CONFIG_NAME.into(), text: DEFAULT_CONFIG.into() }]);
    }
    let mut diags = Diagnostics::default();
    let mut out = Vec::new();
    for p in paths {
        match Source::file(p) {
            Ok(s) => out.push(s),
            Err(e) => diags.errors.push(e),
        }
    }
    if diags.is_ok() {
        Ok(out)
    } else {
        Err(diags)
    }
}

/// Loads, layout-checks and builds: the same path for `validate` and `run`.
fn load(paths: &[PathBuf]) -> Result<(Config, Service, Diagnostics), Diagnostics> {
    load_with(paths, &registry::registry(), LoadOptions::default(), |_, _| {})
}

/// [`load`] with a registry of its own and a chance to rewrite the config before it is built.
fn load_with(
    paths: &[PathBuf],
    registry: &Registry,
    opts: LoadOptions,
    rewrite: impl FnOnce(&mut Config, &mut Diagnostics),
) -> Result<(Config, Service, Diagnostics), Diagnostics> {
    let sources = sources(paths)?;
    let (config, mut diags) = config::load_with(&sources, &|name| std::env::var(name).ok(), opts);
    let Some(mut config) = config else { return Err(diags) };
    rewrite(&mut config, &mut diags);
    match service::build(&config, registry, &mut diags) {
        Some(svc) if diags.is_ok() => Ok((config, svc, diags)),
        _ => Err(diags),
    }
}

fn report(diags: &Diagnostics) {
    for e in &diags.errors {
        eprintln!("error: {e}");
    }
    for w in &diags.warnings {
        eprintln!("warning: {w}");
    }
}

fn print_components() {
    let reg = registry::registry();
    let mut kind = None;
    for l in reg.list() {
        if kind != Some(l.kind) {
            println!("{}s:", l.kind);
            kind = Some(l.kind);
        }
        match l.signals {
            Some(s) => println!("  {:<14} [{s}] {}", l.type_name, l.description),
            None => println!("  {:<14} {}", l.type_name, l.description),
        }
    }
}

fn init_logging(cfg: &config::LogsTelemetry) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(format!("{},h2=warn,hyper=warn,tower=warn", cfg.level.as_str())),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match cfg.encoding {
        LogEncoding::Json => builder.json().try_init(),
        LogEncoding::Console => builder.with_target(false).try_init(),
    };
}

fn run(paths: &[PathBuf]) -> ExitCode {
    match load(paths) {
        Ok((config, svc, diags)) => run_service(paths, config, svc, diags, None),
        Err(diags) => not_started(&diags),
    }
}

fn not_started(diags: &Diagnostics) -> ExitCode {
    report(diags);
    eprintln!(
        "otterline: not started: the config has {} error(s); `otterline validate` lists them",
        diags.errors.len()
    );
    ExitCode::from(2)
}

/// `otterline replay`: the pipelines of the config, fed by one `parquet` receiver.
fn replay(paths: &[PathBuf], args: &ReplayArgs) -> ExitCode {
    let progress = Arc::new(Progress::default());
    let registry =
        registry::registry().receiver(otterline_parquet::ParquetReceiverFactory::with_progress(progress.clone()));
    let options = replay_options(args);
    let loaded = load_with(paths, &registry, LoadOptions { receivers_supplied: true }, |config, diags| {
        let node = match config::yaml::parse("<otterline replay options>", &options) {
            Ok(n) => n,
            Err(e) => {
                diags.errors.push(e);
                return;
            }
        };
        let id = otterline_core::ComponentId { type_name: "parquet".into(), name: Some("replay".into()) };
        if paths.is_empty() {
            // The embedded default asks for listeners (health, dashboard, self-metrics) that
            // a replay beside a live instance was never told about: none unless a config asks.
            config.components.retain(|c| c.kind != ComponentKind::Extension);
            config.service.extensions.clear();
            config.service.telemetry.metrics.address = Some(String::new());
        }
        // Never into the archive being read (it would read its own output).
        let archive = std::path::absolute(&args.archive).unwrap_or_else(|_| PathBuf::from(&args.archive));
        for c in config.components.iter().filter(|c| c.kind == ComponentKind::Exporter && c.id.type_name == "parquet") {
            let Some(path) = c.config.get("path").and_then(|p| p.as_str()) else { continue };
            let out = std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path));
            if out.starts_with(&archive) || archive.starts_with(&out) {
                diags.errors.push(ConfigError::at(
                    &c.mark,
                    &format!("exporters.{}", c.id),
                    format!(
                        "replay would write into the archive it reads ({}); give this exporter another `path` (or OTTERLINE_DATA_DIR for the default pipeline)",
                        out.display()
                    ),
                ));
            }
        }
        config.components.retain(|c| c.kind != ComponentKind::Receiver);
        config.components.push(ComponentDecl {
            id: id.clone(),
            kind: ComponentKind::Receiver,
            mark: node.mark.clone(),
            config: node,
        });
        for p in &mut config.service.pipelines {
            p.receivers = vec![ComponentRef { id: id.clone(), mark: p.mark.clone() }];
        }
    });
    match loaded {
        Ok((config, svc, diags)) => run_service(paths, config, svc, diags, Some(progress)),
        Err(diags) => not_started(&diags),
    }
}

/// The replay receiver's config, as YAML (every value a double-quoted string).
fn replay_options(args: &ReplayArgs) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut y = format!("path: {}\nspeed: {}\nstrict: {}\n", q(&args.archive), q(&args.speed), args.strict);
    if let Some(f) = &args.from {
        y += &format!("from: {}\n", q(f));
    }
    if let Some(t) = &args.to {
        y += &format!("to: {}\n", q(t));
    }
    if !args.signals.is_empty() {
        let list: Vec<String> = args.signals.iter().map(|s| q(s)).collect();
        y += &format!("signals: [{}]\n", list.join(", "));
    }
    y
}

fn run_service(
    paths: &[PathBuf],
    config: Config,
    svc: Service,
    diags: Diagnostics,
    progress: Option<Arc<Progress>>,
) -> ExitCode {
    init_logging(&config.service.telemetry.logs);
    for w in &diags.warnings {
        tracing::warn!("config: {w}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("otterline").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otterline: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(watch_signals(shutdown.clone()));
        let source = if paths.is_empty() { DEFAULT_CONFIG_NAME.to_string() } else { paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ") };
        tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %source, pipelines = ?svc.pipeline_names(), "Starting otterline");
        let health = Arc::new(HealthRegistry::default());
        // Self-metrics: on by default for `run`, only when configured for `replay`.
        let default_address = progress.is_none().then_some(MetricsTelemetry::DEFAULT_ADDRESS);
        let metrics_stop = CancellationToken::new();
        let mut metrics_task = None;
        if let Some(address) = config.service.telemetry.metrics.resolved(default_address) {
            let token = match config.service.telemetry.metrics.auth.as_ref().map(|a| a.load()).transpose() {
                Ok(t) => t.map(Arc::new),
                Err((key, msg)) => {
                    tracing::error!("service.telemetry.metrics.auth.{key}: {msg}");
                    return ExitCode::from(2);
                }
            };
            match otterline_extensions::self_metrics::start(&address, health.clone(), token, metrics_stop.clone()).await {
                Ok((local, task)) => {
                    tracing::info!(endpoint = %local, "self-metrics listening on /metrics");
                    metrics_task = Some(tokio::spawn(task));
                }
                Err(e) => {
                    tracing::error!("cannot serve self-metrics: {e} (set service.telemetry.metrics.address, or `level: none` to turn it off)");
                    return ExitCode::FAILURE;
                }
            }
        }
        let bar = progress.map(|p| tokio::spawn(show_progress(p)));
        tokio::spawn(release_startup_pages(health.clone()));
        let result = svc.run(health, shutdown).await;
        metrics_stop.cancel();
        if let Some(t) = metrics_task {
            let _ = t.await;
        }
        if let Some(bar) = bar {
            bar.abort();
            let _ = bar.await;
        }
        match result {
            Ok(()) => {
                tracing::info!("Shutdown complete.");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Once every component has started, gives the executable's start-up pages and the
/// allocator's free pages back to the kernel (see `telemetry::release_startup_pages`).
async fn release_startup_pages(health: Arc<HealthRegistry>) {
    use otterline_core::health::Phase;
    while health.phase() == Phase::Starting {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    if health.phase() != Phase::Ready {
        return;
    }
    let freed = tokio::task::spawn_blocking(|| {
        release_free_memory();
        otterline_core::telemetry::release_startup_pages()
    })
    .await
    .unwrap_or(0);
    tracing::debug!(freed_kib = freed / 1024, "released start-up pages");
}

/// A progress bar (items, bytes, ETA) on a terminal; a summary line at the end either way.
async fn show_progress(p: Arc<Progress>) {
    use std::sync::atomic::Ordering::Relaxed;
    let started = std::time::Instant::now();
    struct Summary(Arc<Progress>, std::time::Instant, Option<indicatif::ProgressBar>);
    impl Drop for Summary {
        fn drop(&mut self) {
            if let Some(b) = &self.2 {
                b.finish_and_clear();
            }
            let p = &self.0;
            let secs = self.1.elapsed().as_secs_f64();
            let items = p.done_items.load(Relaxed);
            eprintln!(
                "otterline replay: {items} items ({:.1} MiB of archive) in {secs:.1} s ({:.0} items/s); {} file(s) skipped",
                p.done_bytes.load(Relaxed) as f64 / 1048576.0,
                items as f64 / secs.max(1e-9),
                p.skipped_files.load(Relaxed)
            );
        }
    }
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} items  {msg}  ETA {eta}",
        ) {
            b.set_style(style);
        }
        b
    });
    let _summary = Summary(p.clone(), started, bar.clone());
    loop {
        if let Some(b) = &bar {
            b.set_length(p.total_items.load(Relaxed));
            b.set_position(p.done_items.load(Relaxed));
            b.set_message(format!(
                "{:.1}/{:.1} MiB",
                p.done_bytes.load(Relaxed) as f64 / 1048576.0,
                p.total_bytes.load(Relaxed) as f64 / 1048576.0
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// First SIGINT/SIGTERM: drain and exit. A second one: exit at once.
async fn watch_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "Received signal; draining (send it again to exit at once)");
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::warn!("Second signal: exiting without draining");
    std::process::exit(130);
}
