//! The `health_check` extension: `GET <path>` (default `http://127.0.0.1:13133/`).
//!
//! Answers 200 with `"status": "Server available"` while the service is ready,
//! and 503 with `"Server not available"` while starting, draining or when a
//! component failed — so orchestrators stop routing to a draining sidecar. The
//! body also carries the phase, each component's status and item counters, and `health`:
//! every component scored 0-100 as up / degraded / down (queue fill, refusals, export
//! failures; `HealthRegistry::assess`), the same model the dashboard shows.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};

use otterline_core::component::{BuildContext, ComponentError, Extension, ExtensionContext, ExtensionFactory, Task};
use otterline_core::config::ConfigError;
use otterline_core::health::{Assessment, HealthRegistry, Snapshot};
use otterline_core::net::{bind_secured, parse_endpoint};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub endpoint: String,
    pub path: String,
    /// A bearer token the endpoint requires (`otterline_core::auth`).
    pub auth: Option<otterline_core::auth::AuthConfig>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig { endpoint: "127.0.0.1:13133".into(), path: "/".into(), auth: None }
    }
}

pub struct HealthCheckFactory;

impl ExtensionFactory for HealthCheckFactory {
    fn type_name(&self) -> &'static str {
        "health_check"
    }
    fn description(&self) -> &'static str {
        "HTTP health endpoint (default 127.0.0.1:13133): 200 when ready, 503 while starting or draining, per-component status"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Extension>, ConfigError> {
        let mut cfg: HealthCheckConfig = ctx.parse()?;
        if cfg.endpoint.trim().is_empty() {
            return Ok(Box::new(otterline_core::component::Off { reason: "its endpoint is empty" }));
        }
        cfg.endpoint = parse_endpoint(&cfg.endpoint).map_err(|m| ctx.error("endpoint", m))?;
        if !cfg.path.starts_with('/') {
            return Err(ctx.error("path", format!("path {:?} must start with `/`", cfg.path)));
        }
        let token = match &cfg.auth {
            Some(a) => Some(Arc::new(a.load().map_err(|(k, m)| ctx.error(&format!("auth.{k}"), m))?)),
            None => None,
        };
        Ok(Box::new(HealthCheck { cfg, token }))
    }
}

struct HealthCheck {
    cfg: HealthCheckConfig,
    token: Option<Arc<otterline_core::auth::Token>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    status: &'static str,
    up_since: String,
    uptime: String,
    #[serde(flatten)]
    snapshot: Snapshot,
    health: Assessment,
}

async fn health(State(reg): State<Arc<HealthRegistry>>) -> impl IntoResponse {
    let snapshot = reg.snapshot();
    let ready = snapshot.ready;
    let uptime = SystemTime::now().duration_since(reg.started()).unwrap_or_default();
    let body = Body {
        status: if ready { "Server available" } else { "Server not available" },
        up_since: otterline_core::time::rfc3339(reg.started()),
        uptime: format!("{:.3}s", uptime.as_secs_f64()),
        snapshot,
        health: reg.assess(),
    };
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let json = serde_json::to_string(&body).unwrap_or_else(|e| format!("{{\"status\":\"error\",\"message\":\"{e}\"}}"));
    (code, [(header::CONTENT_TYPE, "application/json")], json)
}

#[async_trait]
impl Extension for HealthCheck {
    async fn start(self: Box<Self>, ctx: ExtensionContext) -> Result<Task, ComponentError> {
        let listener = bind_secured(&self.cfg.endpoint, "health_check", false, self.token.is_some()).await?;
        tracing::info!(endpoint = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), path = %self.cfg.path, "health_check listening");
        let app = crate::require_token(
            Router::new().route(&self.cfg.path, get(health)).with_state(ctx.registry.clone()),
            self.token.clone(),
        );
        let shutdown = ctx.shutdown.clone();
        Ok(Box::pin(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
            otterline_core::net::serve_with_grace(server.into_future(), shutdown, "health_check")
                .await
                .map_err(|e| ComponentError::new(format!("health_check server failed: {e}")))
        }))
    }
}
