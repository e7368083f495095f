//! Otterline's extensions (components that run beside the pipelines) and service endpoints.
//!
//! - [`health_check`]: the Collector-style health endpoint.
//! - [`collector_only`]: `pprof`, `zpages`, `memory_ballast` accepted with a warning.
//! - [`self_metrics`]: `/metrics` in the Prometheus text format (`service.telemetry.metrics`).

pub mod collector_only;
pub mod health_check;
pub mod self_metrics;

pub use collector_only::CollectorOnlyFactory;
pub use health_check::HealthCheckFactory;

/// `router` behind a bearer token, when one is configured (`otterline_core::auth`): 401
/// with `WWW-Authenticate: Bearer` without it.
pub fn require_token(router: axum::Router, token: Option<std::sync::Arc<otterline_core::auth::Token>>) -> axum::Router {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let Some(token) = token else { return router };
    router.layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
        let token = token.clone();
        async move {
            let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            if token.allows(authorization, req.uri().query()) {
                return next.run(req).await;
            }
            (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], "missing or wrong bearer token")
                .into_response()
        }
    }))
}
