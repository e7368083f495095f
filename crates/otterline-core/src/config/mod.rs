//! Collector-style configuration: `receivers`, `processors`, `exporters`,
//! `extensions` and `service`.
//!
//! Loading is two steps. [`load`] reads and merges the YAML files, expands
//! environment references and checks the layout (top-level keys, component ids,
//! pipelines). [`crate::service::build`] then hands each component's subtree to
//! its factory, which deserializes its own typed config with [`from_node`]. Both
//! steps report [`ConfigError`]s that carry `file:line:col` and the key path.

mod de;
pub mod yaml;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use de::from_node;
pub use yaml::{Mark, Node, NodeKind};

use crate::ident::{ComponentId, ComponentKind};
use crate::pdata::{Signal, SignalSet};
use crate::units;

/// A config problem at a place in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub mark: Option<Mark>,
    /// Dotted key path, e.g. `exporters.json.rotation.max_megabytes`.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(mark: &Mark, path: &str, message: impl Into<String>) -> Self {
        ConfigError { mark: Some(mark.clone()), path: path.to_string(), message: message.into() }
    }

    pub fn plain(message: impl Into<String>) -> Self {
        ConfigError { mark: None, path: String::new(), message: message.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = &self.mark {
            write!(f, "{m}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Everything found wrong with a config: errors stop it from running, warnings do not.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl Diagnostics {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// One `type[/name]:` entry under `receivers`, `processors`, `exporters` or `extensions`.
#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub id: ComponentId,
    pub kind: ComponentKind,
    /// Where the id is written.
    pub mark: Mark,
    /// The component's own config (null when empty).
    pub config: Node,
}

impl ComponentDecl {
    /// `receivers.otlp/in` — the path used in errors about this component.
    pub fn path(&self) -> String {
        format!("{}.{}", self.kind.section(), self.id)
    }
}

/// A reference to a component from `service`.
#[derive(Debug, Clone)]
pub struct ComponentRef {
    pub id: ComponentId,
    pub mark: Mark,
}

/// `service.pipelines.<id>`.
#[derive(Debug, Clone)]
pub struct PipelineDecl {
    /// The pipeline id as written, e.g. `traces/llm`.
    pub name: String,
    /// Signals this pipeline takes from its receivers.
    pub signals: SignalSet,
    pub mark: Mark,
    pub receivers: Vec<ComponentRef>,
    pub processors: Vec<ComponentRef>,
    pub exporters: Vec<ComponentRef>,
}

impl PipelineDecl {
    /// What a pipeline id says about its signals: `traces`, `traces/x` → traces;
    /// `metrics…`, `logs…` likewise; any other name → all signals.
    pub fn signals_of(name: &str) -> SignalSet {
        let ty = name.split('/').next().unwrap_or(name);
        match Signal::parse(ty) {
            Some(s) => SignalSet::of(s),
            None => SignalSet::ALL,
        }
    }
}

/// `service.telemetry`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub logs: LogsTelemetry,
    pub metrics: MetricsTelemetry,
}

/// `service.telemetry.metrics`: Otterline's own metrics, Prometheus text on `/metrics`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsTelemetry {
    /// `host:port`; unset means `127.0.0.1:8888` for `run` and off for `replay`; `""` turns it off.
    pub address: Option<String>,
    /// `none` turns the endpoint off; `basic`, `normal` and `detailed` (the Collector's levels) serve everything.
    pub level: MetricsLevel,
    /// A bearer token `/metrics` requires (`crate::auth`).
    pub auth: Option<crate::auth::AuthConfig>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsLevel {
    None,
    Basic,
    #[default]
    Normal,
    Detailed,
}

impl MetricsTelemetry {
    /// Default self-metrics address for a long-running collector.
    pub const DEFAULT_ADDRESS: &'static str = "127.0.0.1:8888";

    /// Where to serve, if at all; `default` is used when no address is configured.
    pub fn resolved(&self, default: Option<&str>) -> Option<String> {
        if self.level == MetricsLevel::None {
            return None;
        }
        match self.address.as_deref().map(str::trim) {
            Some("") => None,
            Some(a) => Some(a.to_string()),
            None => default.map(str::to_string),
        }
    }
}

/// `service.telemetry.logs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsTelemetry {
    /// `debug`, `info`, `warn` or `error`; `RUST_LOG`, when set, takes precedence.
    pub level: LogLevel,
    /// `console` (human-readable) or `json` (one JSON object per line).
    pub encoding: LogEncoding,
}

impl Default for LogsTelemetry {
    fn default() -> Self {
        LogsTelemetry { level: LogLevel::Info, encoding: LogEncoding::Console }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogEncoding {
    Console,
    Json,
}

/// `service.queues`: the bounded queues between stages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Batches (export requests) waiting in front of each pipeline.
    pub pipeline_size: usize,
    /// Batches waiting in front of each exporter.
    pub exporter_size: usize,
    /// How long a receiver waits for queue space before refusing with a retryable error.
    #[serde(with = "units::duration")]
    pub admission_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { pipeline_size: 32, exporter_size: 16, admission_timeout: Duration::from_millis(100) }
    }
}

/// `service`.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub extensions: Vec<ComponentRef>,
    pub pipelines: Vec<PipelineDecl>,
    pub telemetry: TelemetryConfig,
    pub queues: QueueConfig,
    /// Upper bound on draining at SIGTERM/SIGINT.
    pub shutdown_timeout: Duration,
}

/// A loaded, layout-checked config. Component bodies are still untyped [`Node`]s.
#[derive(Debug, Clone)]
pub struct Config {
    pub components: Vec<ComponentDecl>,
    pub service: ServiceConfig,
}

impl Config {
    pub fn component(&self, kind: ComponentKind, id: &ComponentId) -> Option<&ComponentDecl> {
        self.components.iter().find(|c| c.kind == kind && &c.id == id)
    }

    pub fn components_of(&self, kind: ComponentKind) -> impl Iterator<Item = &ComponentDecl> {
        self.components.iter().filter(move |c| c.kind == kind)
    }
}

/// A config source: a file name (for messages) and its text.
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn file(path: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::plain(format!("cannot read config file {}: {e}", path.display())))?;
        Ok(Source { name: path.display().to_string(), text })
    }
}

const TOP_LEVEL: &[&str] = &["receivers", "processors", "exporters", "extensions", "service", "connectors"];
const SERVICE_KEYS: &[&str] = &["extensions", "pipelines", "telemetry", "queues", "shutdown_timeout"];
const PIPELINE_KEYS: &[&str] = &["receivers", "processors", "exporters"];

/// How a config will be used.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// The caller supplies the receivers (`otterline replay`): pipelines may list none.
    pub receivers_supplied: bool,
}

/// Reads, merges (later sources win), expands and layout-checks config sources.
pub fn load(sources: &[Source], env: &dyn Fn(&str) -> Option<String>) -> (Option<Config>, Diagnostics) {
    load_with(sources, env, LoadOptions::default())
}

/// [`load`] with options.
pub fn load_with(
    sources: &[Source],
    env: &dyn Fn(&str) -> Option<String>,
    opts: LoadOptions,
) -> (Option<Config>, Diagnostics) {
    let mut diags = Diagnostics::default();
    let mut root: Option<Node> = None;
    for src in sources {
        match yaml::parse(&src.name, &src.text) {
            Ok(node) => match &mut root {
                None => root = Some(node),
                Some(r) => yaml::merge(r, node),
            },
            Err(e) => diags.errors.push(e),
        }
    }
    if !diags.errors.is_empty() {
        return (None, diags);
    }
    let Some(mut root) = root else {
        diags.errors.push(ConfigError::plain("no config given"));
        return (None, diags);
    };
    if let Err(e) = yaml::expand_tree(&mut root, "", env, &mut diags.warnings) {
        diags.errors.push(e);
        return (None, diags);
    }
    let config = check_layout(&root, &mut diags, opts);
    (config, diags)
}

fn check_layout(root: &Node, diags: &mut Diagnostics, opts: LoadOptions) -> Option<Config> {
    let Some(entries) = root.entries() else {
        diags.errors.push(ConfigError::at(
            &root.mark,
            "",
            format!("the config must be a map, found {}", root.describe()),
        ));
        return None;
    };
    if entries.is_empty() {
        diags.errors.push(ConfigError::at(
            &root.mark,
            "",
            "the config is empty: it needs `receivers`, `exporters` and `service.pipelines`",
        ));
        return None;
    }
    for (k, v) in entries {
        let key = k.as_str().unwrap_or_default();
        if !TOP_LEVEL.contains(&key) {
            diags.errors.push(ConfigError::at(
                &k.mark,
                key,
                format!("unknown top-level key `{key}`; expected one of: {}", TOP_LEVEL.join(", ")),
            ));
        } else if key == "connectors" && !v.is_null() {
            diags.errors.push(ConfigError::at(
                &k.mark,
                key,
                "connectors are not supported yet; processors can emit derived signals into their own pipeline instead",
            ));
        }
    }

    let mut components = Vec::new();
    for kind in ComponentKind::ALL {
        let section = kind.section();
        let Some(node) = root.get(section) else { continue };
        let Some(entries) = node.entries() else {
            diags.errors.push(ConfigError::at(
                &node.mark,
                section,
                format!("`{section}` must be a map of component ids, found {}", node.describe()),
            ));
            continue;
        };
        for (k, v) in entries {
            let raw = k.as_str().unwrap_or_default();
            match ComponentId::parse(raw) {
                Ok(id) => components.push(ComponentDecl { id, kind, mark: k.mark.clone(), config: v.clone() }),
                Err(msg) => diags.errors.push(ConfigError::at(&k.mark, &format!("{section}.{raw}"), msg)),
            }
        }
    }

    let service = match root.get("service") {
        Some(s) => check_service(s, diags, opts),
        None => {
            diags.errors.push(ConfigError::at(
                &root.mark,
                "service",
                "missing `service` section: it lists the pipelines to run",
            ));
            None
        }
    }?;

    // References from the service section must name declared components.
    let declared = |kind: ComponentKind, r: &ComponentRef| {
        components.iter().any(|c: &ComponentDecl| c.kind == kind && c.id == r.id)
    };
    for r in &service.extensions {
        if !declared(ComponentKind::Extension, r) {
            diags.errors.push(ConfigError::at(
                &r.mark,
                "service.extensions",
                format!("extension `{}` is not defined under `extensions`", r.id),
            ));
        }
    }
    for p in &service.pipelines {
        for (kind, refs) in [
            (ComponentKind::Receiver, &p.receivers),
            (ComponentKind::Processor, &p.processors),
            (ComponentKind::Exporter, &p.exporters),
        ] {
            for r in refs.iter() {
                if !declared(kind, r) {
                    diags.errors.push(ConfigError::at(
                        &r.mark,
                        &format!("service.pipelines.{}.{}", p.name, kind.section()),
                        format!("{} `{}` is not defined under `{}`", kind.as_str(), r.id, kind.section()),
                    ));
                }
            }
        }
    }
    // Declared but unused components are allowed, with a warning.
    for c in &components {
        let used = match c.kind {
            ComponentKind::Extension => service.extensions.iter().any(|r| r.id == c.id),
            kind => service.pipelines.iter().any(|p| {
                let refs = match kind {
                    ComponentKind::Receiver => &p.receivers,
                    ComponentKind::Processor => &p.processors,
                    _ => &p.exporters,
                };
                refs.iter().any(|r| r.id == c.id)
            }),
        };
        if !used {
            let list = if c.kind == ComponentKind::Extension { "service.extensions" } else { "any pipeline" };
            diags.warnings.push(ConfigError::at(
                &c.mark,
                &c.path(),
                format!("{} `{}` is defined but not used in {list}; it will not run", c.kind.as_str(), c.id),
            ));
        }
    }
    Some(Config { components, service })
}

fn refs(node: &Node, path: &str, diags: &mut Diagnostics) -> Vec<ComponentRef> {
    match &node.kind {
        NodeKind::Null => Vec::new(),
        NodeKind::Seq(items) => {
            let mut out: Vec<ComponentRef> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let Some(text) = item.as_str() else {
                    diags.errors.push(ConfigError::at(
                        &item.mark,
                        &p,
                        format!("expected a component id, found {}", item.describe()),
                    ));
                    continue;
                };
                match ComponentId::parse(text) {
                    Ok(id) if out.iter().any(|r| r.id == id) => {
                        diags.errors.push(ConfigError::at(&item.mark, &p, format!("`{id}` is listed twice")));
                    }
                    Ok(id) => out.push(ComponentRef { id, mark: item.mark.clone() }),
                    Err(msg) => diags.errors.push(ConfigError::at(&item.mark, &p, msg)),
                }
            }
            out
        }
        _ => {
            diags.errors.push(ConfigError::at(
                &node.mark,
                path,
                format!("expected a list of component ids, found {}", node.describe()),
            ));
            Vec::new()
        }
    }
}

fn check_service(node: &Node, diags: &mut Diagnostics, opts: LoadOptions) -> Option<ServiceConfig> {
    let Some(entries) = node.entries() else {
        diags.errors.push(ConfigError::at(
            &node.mark,
            "service",
            format!("`service` must be a map, found {}", node.describe()),
        ));
        return None;
    };
    for (k, _) in entries {
        let key = k.as_str().unwrap_or_default();
        if !SERVICE_KEYS.contains(&key) {
            diags.errors.push(ConfigError::at(
                &k.mark,
                &format!("service.{key}"),
                format!("unknown key `{key}` in `service`; expected one of: {}", SERVICE_KEYS.join(", ")),
            ));
        }
    }
    let extensions = node.get("extensions").map(|n| refs(n, "service.extensions", diags)).unwrap_or_default();
    let telemetry = match node.get("telemetry") {
        Some(n) => from_node(n, "service.telemetry").unwrap_or_else(|e| {
            diags.errors.push(e);
            TelemetryConfig::default()
        }),
        None => TelemetryConfig::default(),
    };
    if let Some(addr) = telemetry.metrics.address.as_deref().filter(|a| !a.trim().is_empty()) {
        if let Err(msg) = crate::net::parse_endpoint(addr) {
            let key = node.get("telemetry").and_then(|t| t.get("metrics")).and_then(|m| m.get("address"));
            let mark = key.map(|k| k.mark.clone()).unwrap_or_else(|| node.mark.clone());
            diags.errors.push(ConfigError::at(&mark, "service.telemetry.metrics.address", msg));
        }
    }
    let queues = match node.get("queues") {
        Some(n) => from_node::<QueueConfig>(n, "service.queues").unwrap_or_else(|e| {
            diags.errors.push(e);
            QueueConfig::default()
        }),
        None => QueueConfig::default(),
    };
    if queues.pipeline_size == 0 || queues.exporter_size == 0 {
        diags.errors.push(ConfigError::at(&node.mark, "service.queues", "queue sizes must be at least 1"));
    }
    let shutdown_timeout = match node.get("shutdown_timeout") {
        Some(n) => from_node::<units::Seconds>(n, "service.shutdown_timeout").map(|d| d.0).unwrap_or_else(|e| {
            diags.errors.push(e);
            Duration::from_secs(30)
        }),
        None => Duration::from_secs(30),
    };

    let mut pipelines = Vec::new();
    match node.get("pipelines") {
        None => diags.errors.push(ConfigError::at(
            &node.mark,
            "service.pipelines",
            "missing `service.pipelines`: define at least one pipeline",
        )),
        Some(pnode) => match pnode.entries() {
            None => diags.errors.push(ConfigError::at(
                &pnode.mark,
                "service.pipelines",
                format!("expected a map of pipelines, found {}", pnode.describe()),
            )),
            Some([]) => diags.errors.push(ConfigError::at(
                &pnode.mark,
                "service.pipelines",
                "no pipelines defined: define at least one",
            )),
            Some(entries) => {
                for (k, v) in entries {
                    let name = k.as_str().unwrap_or_default().to_string();
                    let path = format!("service.pipelines.{name}");
                    if let Err(msg) = ComponentId::parse(&name) {
                        diags.errors.push(ConfigError::at(&k.mark, &path, msg.replace("component id", "pipeline id")));
                        continue;
                    }
                    let Some(body) = v.entries() else {
                        diags.errors.push(ConfigError::at(
                            &v.mark,
                            &path,
                            format!("expected a map with receivers, processors and exporters, found {}", v.describe()),
                        ));
                        continue;
                    };
                    for (bk, _) in body {
                        let key = bk.as_str().unwrap_or_default();
                        if !PIPELINE_KEYS.contains(&key) {
                            diags.errors.push(ConfigError::at(
                                &bk.mark,
                                &format!("{path}.{key}"),
                                format!(
                                    "unknown key `{key}` in pipeline; expected one of: {}",
                                    PIPELINE_KEYS.join(", ")
                                ),
                            ));
                        }
                    }
                    let list = |key: &str, diags: &mut Diagnostics| {
                        v.get(key).map(|n| refs(n, &format!("{path}.{key}"), diags)).unwrap_or_default()
                    };
                    let decl = PipelineDecl {
                        signals: PipelineDecl::signals_of(&name),
                        mark: k.mark.clone(),
                        receivers: list("receivers", diags),
                        processors: list("processors", diags),
                        exporters: list("exporters", diags),
                        name,
                    };
                    if decl.receivers.is_empty() && !opts.receivers_supplied {
                        diags.errors.push(ConfigError::at(
                            &k.mark,
                            &path,
                            "pipeline has no receivers: list at least one under `receivers`",
                        ));
                    }
                    if decl.exporters.is_empty() {
                        diags.errors.push(ConfigError::at(
                            &k.mark,
                            &path,
                            "pipeline has no exporters: list at least one under `exporters`",
                        ));
                    }
                    pipelines.push(decl);
                }
            }
        },
    }
    Some(ServiceConfig { extensions, pipelines, telemetry, queues, shutdown_timeout })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> (Option<Config>, Diagnostics) {
        load(&[Source { name: "t.yaml".into(), text: text.into() }], &|n| (n == "PORT").then(|| "9999".to_string()))
    }

    const GOOD: &str = "receivers:\n  otlp:\nexporters:\n  debug:\n  json/x: {path: /tmp}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";

    #[test]
    fn good_config_loads_with_an_unused_warning() {
        let (cfg, d) = load_str(GOOD);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let cfg = cfg.unwrap();
        assert_eq!(cfg.service.pipelines[0].signals, SignalSet::of(Signal::Traces));
        assert_eq!(d.warnings.len(), 1);
        let w = d.warnings[0].to_string();
        assert!(w.starts_with("t.yaml:5:3: exporters.json/x: exporter `json/x` is defined but not used"), "{w}");
    }

    #[test]
    fn layout_errors_are_all_reported_with_positions() {
        let text = "receivers:\n  otlp:\nexportrs:\n  debug:\nservice:\n  pipelines:\n    traces/a:\n      receivers: [otlp, nope]\n      exporters: [debug]\n      procesors: []\n    whatever: {receivers: [otlp]}\n";
        let (_, d) = load_str(text);
        let msgs: Vec<String> = d.errors.iter().map(|e| e.to_string()).collect();
        let all = msgs.join("\n");
        assert!(all.contains("t.yaml:3:1: exportrs: unknown top-level key `exportrs`"), "{all}");
        assert!(
            all.contains(
                "t.yaml:8:25: service.pipelines.traces/a.receivers: receiver `nope` is not defined under `receivers`"
            ),
            "{all}"
        );
        assert!(
            all.contains("t.yaml:10:7: service.pipelines.traces/a.procesors: unknown key `procesors` in pipeline"),
            "{all}"
        );
        assert!(all.contains("t.yaml:11:5: service.pipelines.whatever: pipeline has no exporters"), "{all}");
        assert!(all.contains("exporter `debug` is not defined under `exporters`"), "{all}");
    }

    #[test]
    fn pipeline_names_select_signals() {
        assert_eq!(PipelineDecl::signals_of("traces/x"), SignalSet::of(Signal::Traces));
        assert_eq!(PipelineDecl::signals_of("logs"), SignalSet::of(Signal::Logs));
        assert_eq!(PipelineDecl::signals_of("everything"), SignalSet::ALL);
    }

    #[test]
    fn env_is_expanded_in_values() {
        let text = GOOD.replace("{path: /tmp}", "{path: \"/data/${env:PORT}\"}");
        let (cfg, _) = load_str(&text);
        let cfg = cfg.unwrap();
        let json = cfg.components.iter().find(|c| c.id.to_string() == "json/x").unwrap();
        assert_eq!(json.config.get("path").unwrap().as_str(), Some("/data/9999"));
    }

    #[test]
    fn later_sources_override_earlier_ones() {
        let extra = Source { name: "b.yaml".into(), text: "service:\n  shutdown_timeout: 5s\n".into() };
        let (cfg, d) = load(&[Source { name: "a.yaml".into(), text: GOOD.into() }, extra], &|_| None);
        assert!(d.is_ok());
        assert_eq!(cfg.unwrap().service.shutdown_timeout, Duration::from_secs(5));
    }
}
