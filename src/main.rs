//! The `otterline` binary: command line, logging, signals, and the run loop.

mod registry;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use otterline_core::config::{self, Config, Diagnostics, LogEncoding, Source};
use otterline_core::health::HealthRegistry;
use otterline_core::service::{self, Service};

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
}

fn main() -> ExitCode {
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
    }
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
    let sources = sources(paths)?;
    let (config, mut diags) = config::load(&sources, &|name| std::env::var(name).ok());
    let Some(config) = config else { return Err(diags) };
    let registry = registry::registry();
    match service::build(&config, &registry, &mut diags) {
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
    let (config, svc, diags) = match load(paths) {
        Ok(v) => v,
        Err(diags) => {
            report(&diags);
            eprintln!(
                "otterline: not started: the config has {} error(s); `otterline validate` lists them",
                diags.errors.len()
            );
            return ExitCode::from(2);
        }
    };
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
        match svc.run(health, shutdown).await {
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
