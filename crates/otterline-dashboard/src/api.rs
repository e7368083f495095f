//! The HTTP side: the page and the JSON API (documented in `docs/dashboard.md`).
//!
//! | path | answer |
//! |---|---|
//! | `GET /` | the page |
//! | `GET /api` | this list |
//! | `GET /api/summary?window=15m&top=10` | overall and top services by cost and by p95 |
//! | `GET /api/services?window=15m` | every service's figures, the window in progress included |
//! | `GET /api/models?window=15m` | every model's calls, cost, tokens and unpriced calls |
//! | `GET /api/series?range=1h&service=a&service=overall` | per-minute series; `from`/`to` (RFC 3339) instead of `range`; `step` |
//! | `GET /api/anomalies` | open anomaly and budget episodes |
//! | `GET /api/alerts?limit=50` | recent anomaly and budget events, newest first |
//! | `GET /api/components` | Otterline's components scored 0-100 (up / degraded / down) |
//! | `GET /api/host` | host and process resources |
//! | `GET /api/stream` | server-sent events: `update` with summary, components, host, anomalies, alerts |

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use crate::store::{Event, Host};
use crate::view::{SeriesSet, Summary};
use crate::{now_ns, Shared};

/// The page, compiled in.
pub const PAGE: &str = include_str!("../assets/index.html");

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api", get(index))
        .route("/api/summary", get(summary))
        .route("/api/services", get(services))
        .route("/api/models", get(models))
        .route("/api/series", get(series))
        .route("/api/anomalies", get(anomalies))
        .route("/api/alerts", get(alerts))
        .route("/api/components", get(components))
        .route("/api/host", get(host))
        .route("/api/stream", get(stream))
        .fallback(not_found)
        .with_state(shared)
}

type Params = Query<Vec<(String, String)>>;

/// Lets a request through only with the dashboard's bearer token (header, or `token=` in
/// the query string for the page and its event stream).
pub async fn require_token(
    State(token): State<Arc<otterline_core::auth::Token>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if token.allows(authorization, req.uri().query()) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "the dashboard needs its token: `Authorization: Bearer <token>`, or open /?token=<token>",
    )
        .into_response()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], s).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// A request the API cannot answer as asked: 400 with `{"error": reason}`.
pub struct BadRequest(String);

impl IntoResponse for BadRequest {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.0 }).to_string();
        (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

fn bad_request(msg: impl Into<String>) -> BadRequest {
    BadRequest(msg.into())
}

async fn not_found() -> Response {
    let body = serde_json::json!({ "error": "no such page; the API is listed at /api" }).to_string();
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

async fn index() -> Response {
    let doc = module_doc_table();
    json(&serde_json::json!({ "endpoints": doc }))
}

/// The endpoint table of this module's doc, as `[{path, answer}]`.
fn module_doc_table() -> Vec<serde_json::Value> {
    const SRC: &str = include_str!("api.rs");
    SRC.lines()
        .filter_map(|l| l.strip_prefix("//! | `"))
        .filter_map(|l| {
            let (path, rest) = l.split_once("` | ")?;
            Some(serde_json::json!({ "path": path, "answer": rest.trim_end_matches(" |") }))
        })
        .collect()
}

fn duration_param(q: &[(String, String)], key: &str, default: Duration) -> Result<Duration, BadRequest> {
    match param(q, key) {
        None | Some("") => Ok(default),
        Some(v) => otterline_core::units::parse_duration(v).map_err(|e| bad_request(format!("{key}: {e}"))),
    }
}

fn count_param(q: &[(String, String)], key: &str, default: usize, max: usize) -> Result<usize, BadRequest> {
    match param(q, key) {
        None | Some("") => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(bad_request(format!("{key} must be a whole number from 0 to {max}, not {v:?}"))),
        },
    }
}

fn window_slots(s: &Shared, q: &[(String, String)]) -> Result<u64, BadRequest> {
    let w = duration_param(q, "window", s.cfg.summary_window)?;
    if w < s.cfg.resolution || w > s.cfg.retention {
        return Err(bad_request(format!(
            "window must be between the resolution ({}) and the retention ({})",
            otterline_core::units::format_duration(s.cfg.resolution),
            otterline_core::units::format_duration(s.cfg.retention)
        )));
    }
    Ok(s.cfg.slots_of(w))
}

fn read_summary(s: &Shared, slots: u64, top: usize) -> Option<Summary> {
    s.store.read().ok().map(|st| st.summary(slots, top, now_ns() / 1_000_000))
}

async fn summary(State(s): State<Arc<Shared>>, Query(q): Params) -> Result<Response, BadRequest> {
    let slots = window_slots(&s, &q)?;
    let top = count_param(&q, "top", 10, 1000)?;
    Ok(match read_summary(&s, slots, top) {
        Some(v) => json(&v),
        None => unavailable(),
    })
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "the dashboard's store is unavailable").into_response()
}

async fn services(State(s): State<Arc<Shared>>, Query(q): Params) -> Result<Response, BadRequest> {
    let slots = window_slots(&s, &q)?;
    Ok(match s.store.read() {
        Ok(st) => json(&serde_json::json!({ "services": st.services(slots) })),
        Err(_) => unavailable(),
    })
}

async fn models(State(s): State<Arc<Shared>>, Query(q): Params) -> Result<Response, BadRequest> {
    let slots = window_slots(&s, &q)?;
    Ok(match s.store.read() {
        Ok(st) => json(&serde_json::json!({ "models": st.models(slots) })),
        Err(_) => unavailable(),
    })
}

/// Most buckets a series answer has; the step grows to fit.
pub const MAX_BUCKETS: u64 = 720;

#[derive(Serialize)]
struct SeriesAnswer {
    from_unix_ms: u64,
    to_unix_ms: u64,
    #[serde(flatten)]
    set: SeriesSet,
    #[serde(skip_serializing_if = "Option::is_none")]
    archive: Option<crate::archive::ArchiveRead>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

fn time_param(q: &[(String, String)], key: &str) -> Result<Option<u64>, BadRequest> {
    match param(q, key) {
        None | Some("") => Ok(None),
        Some(v) => match otterline_parquet::receiver::parse_time(v) {
            Ok(t) if t >= 0 => Ok(Some(t as u64)),
            Ok(_) => Err(bad_request(format!("{key}: {v:?} is before 1970"))),
            Err(e) => Err(bad_request(format!("{key}: {e}"))),
        },
    }
}

async fn series(State(s): State<Arc<Shared>>, Query(q): Params) -> Result<Response, BadRequest> {
    let now = now_ns();
    let res = s.cfg.resolution.as_nanos().max(1) as u64;
    let (f, t) = (time_param(&q, "from")?, time_param(&q, "to")?);
    let range = duration_param(&q, "range", Duration::from_secs(3600))?.as_nanos() as u64;
    let to = t.unwrap_or(now);
    let from = f.unwrap_or(to.saturating_sub(range));
    if to <= from {
        return Err(bad_request("`from` must be before `to`"));
    }
    if to - from > 400 * 86_400_000_000_000 {
        return Err(bad_request("ranges are limited to 400 days"));
    }
    // Buckets: whole slots, at most MAX_BUCKETS of them.
    let min_step = duration_param(&q, "step", Duration::ZERO)?.as_nanos() as u64;
    let step_slots = (to - from).div_ceil(res).div_ceil(MAX_BUCKETS).max(min_step.div_ceil(res)).max(1);
    let mut names: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| if v == "overall" { String::new() } else { v.clone() })
        .collect();
    if names.is_empty() {
        names.push(String::new());
        if let Some(sum) = read_summary(&s, s.summary_slots(), 5) {
            names.extend(sum.top_by_cost.into_iter().map(|x| x.service));
        }
    }
    if names.len() > 50 {
        return Err(bad_request("at most 50 `service` parameters per request"));
    }
    let in_memory = from + s.cfg.retention.as_nanos() as u64 >= now;
    if in_memory || s.cfg.archive.is_empty() {
        let set = match s.store.read() {
            Ok(st) => st.series(&names, from, to, step_slots),
            Err(_) => return Ok(unavailable()),
        };
        let note = (!in_memory).then(|| {
            "this range starts before the in-memory retention and no `archive` is configured; older buckets are empty".to_string()
        });
        return Ok(json(&SeriesAnswer {
            from_unix_ms: from / 1_000_000,
            to_unix_ms: to / 1_000_000,
            set,
            archive: None,
            note,
        }));
    }
    let Ok(_permit) = s.archive_gate.acquire().await else { return Ok(unavailable()) };
    let root = s.cfg.archive.clone();
    let max = s.cfg.max_services;
    let step_ns = step_slots * res;
    let read = tokio::task::spawn_blocking(move || crate::archive::series(&root, &names, from, to, step_ns, max)).await;
    Ok(match read {
        Ok(Ok((set, read))) => json(&SeriesAnswer {
            from_unix_ms: from / 1_000_000,
            to_unix_ms: to / 1_000_000,
            set,
            archive: Some(read),
            note: None,
        }),
        Ok(Err(e)) => {
            let body = serde_json::json!({ "error": format!("reading the archive failed: {e}") }).to_string();
            (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("archive read panicked: {e}")).into_response(),
    })
}

fn open_anomalies(s: &Shared, limit: usize) -> Vec<Event> {
    s.store
        .read()
        .map(|st| {
            let mut v: Vec<Event> = st.open.values().cloned().collect();
            v.sort_by_key(|e| std::cmp::Reverse(e.seq));
            v.truncate(limit);
            v
        })
        .unwrap_or_default()
}

fn recent_alerts(s: &Shared, limit: usize) -> Vec<Event> {
    s.store.read().map(|st| st.events.iter().rev().take(limit).cloned().collect()).unwrap_or_default()
}

async fn anomalies(State(s): State<Arc<Shared>>) -> Response {
    json(&serde_json::json!({ "open": open_anomalies(&s, usize::MAX) }))
}

async fn alerts(State(s): State<Arc<Shared>>, Query(q): Params) -> Result<Response, BadRequest> {
    let limit = count_param(&q, "limit", 50, 10_000)?;
    Ok(json(&serde_json::json!({ "alerts": recent_alerts(&s, limit) })))
}

async fn components(State(s): State<Arc<Shared>>) -> Response {
    json(&s.registry.assess())
}

/// Host readings (from a `hostmetrics` receiver, when one feeds a watched pipeline) and
/// Otterline's own process, always.
#[derive(Serialize)]
struct HostAnswer {
    host: Option<Host>,
    otterline: Process,
}

#[derive(Serialize)]
struct Process {
    resident_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    uptime_seconds: f64,
}

fn host_answer(s: &Shared) -> HostAnswer {
    let host = s.store.read().ok().map(|st| st.host.clone()).filter(|h| h.time_unix_ms > 0);
    let uptime = std::time::SystemTime::now().duration_since(s.registry.started()).unwrap_or_default();
    HostAnswer {
        host,
        otterline: Process {
            resident_bytes: otterline_core::telemetry::resident_bytes(),
            cpu_seconds: otterline_core::telemetry::cpu_seconds(),
            uptime_seconds: uptime.as_secs_f64(),
        },
    }
}

async fn host(State(s): State<Arc<Shared>>) -> Response {
    json(&host_answer(&s))
}

/// One `update` event.
#[derive(Serialize)]
struct Update {
    summary: Option<Summary>,
    components: otterline_core::health::Assessment,
    host: HostAnswer,
    anomalies: Vec<Event>,
    alerts: Vec<Event>,
}

fn update(s: &Shared) -> String {
    let u = Update {
        summary: read_summary(s, s.summary_slots(), 10),
        components: s.registry.assess(),
        host: host_answer(s),
        anomalies: open_anomalies(s, 50),
        alerts: recent_alerts(s, 20),
    };
    serde_json::to_string(&u).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

async fn stream(State(s): State<Arc<Shared>>) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let every = s.cfg.update_interval;
    let shutdown = s.shutdown.clone();
    let ticks = {
        let mut i = tokio::time::interval(every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    };
    // One update per tick (the first at once) until the client leaves or Otterline stops.
    let events = futures::stream::unfold((s, ticks, shutdown), |(s, mut ticks, shutdown)| async move {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            _ = ticks.tick() => {
                let ev = SseEvent::default().event("update").data(update(&s));
                Some((Ok(ev), (s, ticks, shutdown)))
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_api_index_lists_every_route() {
        let doc = super::module_doc_table();
        assert_eq!(doc.len(), 11);
        assert!(doc.iter().any(|e| e["path"].as_str().is_some_and(|p| p.starts_with("GET /api/series"))));
    }
}
