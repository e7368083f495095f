//! The `dashboard` extension: a live health dashboard served by Otterline itself
//! (default `http://127.0.0.1:13134/`), and the JSON API behind it (`/api/…`).
//!
//! ```yaml
//! extensions:
//!   dashboard:
//!     endpoint: 127.0.0.1:13134
//!     resolution: 60s        # one slot per aggregate window
//!     retention: 24h         # kept in memory; longer ranges read `archive`
//!     archive: ./otterline-data/parquet
//! service:
//!   extensions: [dashboard]
//! ```
//!
//! It watches what the pipelines hand to their exporters through a tap
//! (`otterline_core::tap`; metrics, logs, and spans for the window in progress; never
//! waiting on a pipeline), keeps
//! per-service rings of calls, errors, p95 and cost per slot plus health scores
//! ([`store`]), and answers from them ([`view`], [`api`]). Ranges beyond `retention` are
//! read from the Parquet archive ([`archive`]). The page (`assets/index.html`) is one file
//! compiled into the binary: HTML, CSS and a small hand-written SVG chart renderer, no
//! CDN and no build step; it updates from a server-sent event stream (`/api/stream`), one
//! message per `update_interval` per open page and none while no page is open.

pub mod api;
pub mod archive;
pub mod store;
pub mod testing;
pub mod view;

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::Deserialize;

use otterline_core::component::{BuildContext, ComponentError, Extension, ExtensionContext, ExtensionFactory, Task};
use otterline_core::config::ConfigError;
use otterline_core::health::HealthRegistry;
use otterline_core::net::{bind_secured, parse_endpoint};
use otterline_core::{Signal, SignalSet};

use store::{Limits, Store};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    pub endpoint: String,
    /// Slot length of the in-memory series; match the `aggregate` window.
    #[serde(with = "otterline_core::units::duration")]
    pub resolution: Duration,
    /// How much the in-memory series hold.
    #[serde(with = "otterline_core::units::duration")]
    pub retention: Duration,
    /// Services with their own series; more are counted in the overall series only.
    pub max_services: usize,
    /// The Parquet exporter's `path`, for ranges beyond `retention` (empty: none).
    pub archive: String,
    /// How often an open page gets an update.
    #[serde(with = "otterline_core::units::duration")]
    pub update_interval: Duration,
    /// The span of the summary figures and top lists.
    #[serde(with = "otterline_core::units::duration")]
    pub summary_window: Duration,
    /// Anomaly and budget events kept for "recent alerts".
    pub events: usize,
    /// Pipelines to watch (empty: all).
    pub pipelines: Vec<String>,
    /// Batches waiting for the dashboard before it skips (and counts) new ones.
    pub tap_capacity: usize,
    /// A bearer token the page and the API require (`otterline_core::auth`); the page can be
    /// opened as `/?token=…`.
    pub auth: Option<otterline_core::auth::AuthConfig>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            endpoint: "127.0.0.1:13134".into(),
            resolution: Duration::from_secs(60),
            retention: Duration::from_secs(24 * 3600),
            max_services: 1000,
            archive: String::new(),
            update_interval: Duration::from_secs(2),
            summary_window: Duration::from_secs(15 * 60),
            events: 500,
            pipelines: Vec::new(),
            tap_capacity: 1024,
            auth: None,
        }
    }
}

impl DashboardConfig {
    pub fn limits(&self) -> Limits {
        let res = self.resolution.as_nanos().max(1) as u64;
        Limits {
            resolution_ns: res,
            slots: (self.retention.as_nanos() as u64).div_ceil(res).max(1) as usize,
            max_services: self.max_services,
            events: self.events.max(1),
        }
    }
    fn slots_of(&self, d: Duration) -> u64 {
        (d.as_nanos() as u64).div_ceil(self.resolution.as_nanos().max(1) as u64).max(1)
    }
}

pub struct DashboardFactory;

impl ExtensionFactory for DashboardFactory {
    fn type_name(&self) -> &'static str {
        "dashboard"
    }
    fn description(&self) -> &'static str {
        "live health dashboard and JSON API (default 127.0.0.1:13134): service health scores, RED and cost charts, anomalies, alerts, components, host"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Extension>, ConfigError> {
        let mut cfg: DashboardConfig = ctx.parse()?;
        if cfg.endpoint.trim().is_empty() {
            return Ok(Box::new(otterline_core::component::Off { reason: "its endpoint is empty" }));
        }
        cfg.endpoint = parse_endpoint(&cfg.endpoint).map_err(|m| ctx.error("endpoint", m))?;
        if cfg.resolution < Duration::from_millis(100) {
            return Err(
                ctx.error("resolution", "resolution must be at least 100ms (use the aggregate window, e.g. 60s)")
            );
        }
        if cfg.retention < cfg.resolution {
            return Err(ctx.error("retention", "retention must be at least one resolution"));
        }
        let slots = cfg.limits().slots;
        if slots > 100_000 {
            return Err(ctx.error(
                "retention",
                format!("retention / resolution is {slots} slots per service; keep it at most 100000 (e.g. 24h of 60s slots is 1440)"),
            ));
        }
        if cfg.max_services == 0 {
            return Err(ctx.error("max_services", "max_services must be at least 1"));
        }
        if cfg.update_interval < Duration::from_millis(100) {
            return Err(ctx.error("update_interval", "update_interval must be at least 100ms"));
        }
        if cfg.summary_window < cfg.resolution || cfg.summary_window > cfg.retention {
            return Err(ctx.error("summary_window", "summary_window must be between the resolution and the retention"));
        }
        if cfg.tap_capacity == 0 {
            return Err(ctx.error("tap_capacity", "tap_capacity must be at least 1"));
        }
        let token = match &cfg.auth {
            Some(a) => Some(Arc::new(a.load().map_err(|(k, m)| ctx.error(&format!("auth.{k}"), m))?)),
            None => None,
        };
        Ok(Box::new(Dashboard { cfg, token }))
    }
}

struct Dashboard {
    cfg: DashboardConfig,
    token: Option<Arc<otterline_core::auth::Token>>,
}

/// What the handlers share.
pub struct Shared {
    pub cfg: DashboardConfig,
    pub store: RwLock<Store>,
    pub registry: Arc<HealthRegistry>,
    /// One archive read at a time.
    pub archive_gate: tokio::sync::Semaphore,
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl Shared {
    pub fn summary_slots(&self) -> u64 {
        self.cfg.slots_of(self.cfg.summary_window)
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

#[async_trait]
impl Extension for Dashboard {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> Result<Task, ComponentError> {
        let listener = bind_secured(&self.cfg.endpoint, "dashboard", false, self.token.is_some()).await?;
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(endpoint = %addr, "dashboard listening: http://{addr}/");
        // Spans too: the window in progress is counted live (see `store`).
        let mut rx = ctx.taps.subscribe(
            SignalSet::of(Signal::Metrics).with(Signal::Logs).with(Signal::Traces),
            self.cfg.pipelines.clone(),
            self.cfg.tap_capacity,
            ctx.health.clone(),
        );
        let shared = Arc::new(Shared {
            store: RwLock::new(Store::new(self.cfg.limits())),
            cfg: self.cfg,
            registry: ctx.registry.clone(),
            archive_gate: tokio::sync::Semaphore::new(1),
            shutdown: ctx.shutdown.clone(),
        });
        if !shared.cfg.archive.is_empty() {
            // History from the archive, so that a restart keeps the 15 min – 24 h views.
            let shared = shared.clone();
            let now = now_ns();
            let from = now.saturating_sub(shared.cfg.retention.as_nanos() as u64);
            // Up to a day ahead: a window flushed at shutdown ends after the moment it was written.
            let to = now + 86_400_000_000_000;
            tokio::task::spawn_blocking(move || {
                let root = shared.cfg.archive.clone();
                match archive::preload(&root, &shared.store, from, to) {
                    Ok(r) if r.files > 0 => {
                        tracing::info!(archive = %root, files = r.files, points = r.points, "dashboard: history reloaded from the archive")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(archive = %root, error = %e, "dashboard: cannot reload history from the archive")
                    }
                }
            });
        }
        let app = api::router(shared.clone());
        let app = match self.token.clone() {
            Some(token) => app.layer(axum::middleware::from_fn_with_state(token, api::require_token)),
            None => app,
        };
        let shutdown = ctx.shutdown.clone();
        let ingest = {
            let shared = shared.clone();
            async move {
                while let Some(batch) = rx.recv().await {
                    if let Ok(mut store) = shared.store.write() {
                        store.ingest(&batch, now_ns());
                    }
                }
            }
        };
        Ok(Box::pin(async move {
            let ingest = tokio::spawn(ingest);
            let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
            let served = otterline_core::net::serve_with_grace(
                std::future::IntoFuture::into_future(server),
                shutdown,
                "dashboard",
            )
            .await;
            ingest.abort();
            served.map_err(|e| ComponentError::new(format!("dashboard server failed: {e}")))
        }))
    }
}
