//! The self-metrics endpoint: `GET /metrics` in the Prometheus text format on
//! `service.telemetry.metrics.address` (default `127.0.0.1:8888`). It is not a
//! configured extension but part of the service: it starts before the pipelines and
//! keeps answering while they drain. What it serves is documented in
//! `otterline_core::telemetry`.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use otterline_core::component::{ComponentError, Task};
use otterline_core::health::HealthRegistry;
use otterline_core::net::{bind_secured, parse_endpoint};

async fn metrics(State(reg): State<Arc<HealthRegistry>>) -> impl IntoResponse {
    let body = otterline_core::telemetry::render_prometheus(&reg);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
}

/// Binds `address` and returns the bound address and the server task, which stops when
/// `shutdown` fires.
pub async fn start(
    address: &str,
    registry: Arc<HealthRegistry>,
    token: Option<Arc<otterline_core::auth::Token>>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, Task), ComponentError> {
    let endpoint = parse_endpoint(address).map_err(ComponentError::new)?;
    let what = "self-metrics (service.telemetry.metrics.address)";
    let listener = bind_secured(&endpoint, what, false, token.is_some()).await?;
    let local = listener.local_addr().map_err(|e| ComponentError::new(e.to_string()))?;
    let app = crate::require_token(Router::new().route("/metrics", get(metrics)).with_state(registry), token);
    let task: Task = Box::pin(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        otterline_core::net::serve_with_grace(server.into_future(), shutdown, "self-metrics")
            .await
            .map_err(|e| ComponentError::new(format!("self-metrics server failed: {e}")))
    });
    Ok((local, task))
}
