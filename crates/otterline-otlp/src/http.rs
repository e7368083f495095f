//! OTLP/HTTP: `POST /v1/{traces,metrics,logs}` with protobuf or JSON bodies.
//!
//! Status codes follow the OTLP spec: 400 for undecodable bodies (with the decode
//! error in a `google.rpc.Status`), 405 for other methods, 413 for bodies over
//! `max_request_body_size` (checked again after decompression, so a gzip bomb is
//! cut off at the limit), 415 for unsupported media types or encodings, 503 with
//! `Retry-After` when the pipeline is full. Responses use the request's encoding.

use std::future::IntoFuture;
use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use prost::Message;
use tokio_util::sync::CancellationToken;

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};

use otterline_core::component::{ComponentError, Output, Refusal as OutputRefusal, Task};
use otterline_core::pdata::json;
use otterline_core::{Batch, Signal};

use crate::budget::Refusal;
use crate::validate::validate;
use crate::HttpConfig;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

struct Shared {
    output: Output,
    receiver: String,
    limit: usize,
    budget: Arc<crate::budget::DecodeBudget>,
    token: Option<Arc<crate::security::Token>>,
    acknowledgements: bool,
}

pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    cfg: HttpConfig,
    output: Output,
    receiver: String,
    budget: Arc<crate::budget::DecodeBudget>,
    security: crate::security::Security,
    shutdown: CancellationToken,
) -> Result<Task, ComponentError> {
    let token = security.token.clone();
    let shared = Arc::new(Shared {
        output,
        receiver,
        limit: cfg.max_request_body_size.0 as usize,
        budget,
        token,
        acknowledgements: security.acknowledgements,
    });
    let app = Router::new()
        .route(&cfg.traces_url_path, post(|s, h, b| handle(s, h, b, Signal::Traces)))
        .route(&cfg.metrics_url_path, post(|s, h, b| handle(s, h, b, Signal::Metrics)))
        .route(&cfg.logs_url_path, post(|s, h, b| handle(s, h, b, Signal::Logs)))
        .fallback(|| async {
            error_response(
                Encoding::Json,
                StatusCode::NOT_FOUND,
                "unknown path: OTLP/HTTP accepts POST /v1/traces, /v1/metrics and /v1/logs".into(),
            )
        })
        .with_state(shared);
    if let Some(tls) = &security.tls {
        let incoming = crate::security::incoming(listener, tls.clone(), shutdown.clone(), "OTLP/HTTP");
        return Ok(Box::pin(serve_tls(incoming, app, shutdown)));
    }
    Ok(Box::pin(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
        otterline_core::net::serve_with_grace(server.into_future(), shutdown, "OTLP/HTTP")
            .await
            .map_err(|e| ComponentError::new(format!("OTLP/HTTP server failed: {e}")))
    }))
}

/// The HTTPS serving loop over connections whose TLS handshake (with the client
/// certificate check for mutual TLS) is done (`security::incoming`): HTTP/1.1 or HTTP/2
/// as negotiated by ALPN. At shutdown it stops
/// accepting, and connections still open after `CONNECTION_GRACE` are closed (their
/// requests were not acknowledged, so clients retry them).
async fn serve_tls(
    mut incoming: impl tokio_stream::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
        + Unpin,
    app: Router,
    shutdown: CancellationToken,
) -> Result<(), ComponentError> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use tokio_stream::StreamExt;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let tls = tokio::select! {
            _ = shutdown.cancelled() => break,
            c = incoming.next() => match c {
                Some(Ok(tls)) => tls,
                Some(Err(_)) => continue,
                None => break,
            },
        };
        let (app, shutdown) = (app.clone(), shutdown.clone());
        conns.spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder = Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(otterline_core::net::CONNECTION_GRACE, conn).await;
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(otterline_core::net::CONNECTION_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    Ok(())
}

/// A request that went wrong: status and message.
struct Reject(StatusCode, String);

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body, signal: Signal) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if shared.token.as_ref().is_some_and(|t| !t.allows_header(authorization)) {
        let mut resp = error_response(
            Encoding::Json,
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (send `Authorization: Bearer <token>`)".into(),
        );
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let encoding = match media_type(&headers) {
        Ok(e) => e,
        Err(msg) => return error_response(Encoding::Json, StatusCode::UNSUPPORTED_MEDIA_TYPE, msg),
    };
    match receive(&shared, &headers, body, signal, encoding).await {
        Ok((rejected, message)) => success_response(encoding, signal, rejected, message),
        Err(Reject(status, msg)) => {
            let mut resp = error_response(encoding, status, msg);
            if status == StatusCode::SERVICE_UNAVAILABLE {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            resp
        }
    }
}

fn media_type(headers: &HeaderMap) -> Result<Encoding, String> {
    let raw = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mt = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match mt.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        "" => Err("missing Content-Type: use application/x-protobuf or application/json".into()),
        _ => Err(format!("unsupported Content-Type {raw:?}: use application/x-protobuf or application/json")),
    }
}

async fn receive(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
    signal: Signal,
    encoding: Encoding,
) -> Result<(i64, String), Reject> {
    let limit = shared.limit;
    let content_encoding =
        headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase();
    if !matches!(content_encoding.as_str(), "" | "identity" | "gzip" | "x-gzip" | "deflate" | "zstd") {
        return Err(Reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Encoding {content_encoding:?}: use gzip, deflate, zstd or none"),
        ));
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit, "request body"));
    }
    // Decode memory is reserved before an uncompressed body with a declared length is read
    // (its bytes, or for JSON all it may take): a request over the budget waits unread.
    let refuse = |r: Refusal| match r {
        Refusal::Busy => Reject(StatusCode::SERVICE_UNAVAILABLE, format!("{}: {r}", shared.receiver)),
        Refusal::TooLarge { .. } => Reject(StatusCode::PAYLOAD_TOO_LARGE, format!("{}: {r}", shared.receiver)),
    };
    let mut memory = None;
    if let (Some(n), "" | "identity") = (declared, content_encoding.as_str()) {
        let n = n as usize;
        // Reading holds the body twice for a moment (its chunks, then one buffer).
        let before = if encoding == Encoding::Json { shared.budget.json_need(n) } else { 2 * n };
        memory = Some(shared.budget.reserve(None, before).await.map_err(refuse)?);
    }
    let raw: Bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(too_large(limit, "request body")),
        Err(e) => return Err(Reject(StatusCode::BAD_REQUEST, format!("failed to read the request body: {e}"))),
    };
    let bytes = decompress(&content_encoding, raw, limit)?;
    // Queue space first, then decode: a request waiting for space holds its bytes, not its
    // decoded batch (several times larger).
    let slots = match shared.output.reserve(signal).await {
        Ok(slots) => slots,
        Err(r) => {
            // Decoded to count what is refused only when the decode budget has room at once.
            drop(memory);
            let batch = match encoding {
                Encoding::Json => {
                    let need = shared.budget.json_need(bytes.len());
                    let room = shared.budget.try_reserve(need);
                    room.and_then(|_room| decode_json(signal, &bytes, need).ok())
                }
                Encoding::Protobuf => crate::budget::decode_protobuf_now(&shared.budget, signal, &bytes),
            };
            if let Some(batch) = batch {
                shared.output.count_refused(signal, batch.item_count() as u64);
            }
            return Err(match r {
                OutputRefusal::Full | OutputRefusal::ShuttingDown | OutputRefusal::MemoryLimit(_) => {
                    Reject(StatusCode::SERVICE_UNAVAILABLE, format!("{}: {r}", shared.receiver))
                }
                OutputRefusal::NoPipeline(_) => Reject(StatusCode::NOT_FOUND, format!("{}: {r}", shared.receiver)),
            });
        }
    };
    let mut batch = match encoding {
        Encoding::Json => {
            let need = shared.budget.json_need(bytes.len());
            let _memory = shared.budget.reserve(memory, need).await.map_err(refuse)?;
            decode_json(signal, &bytes, need)?
        }
        Encoding::Protobuf => crate::budget::decode_protobuf(&shared.budget, memory, signal, &bytes)
            .await
            .map_err(refuse)?
            .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("invalid OTLP/protobuf {signal} request: {e}")))?,
    };
    // Decoded: the budget is for decoding (the batch is bounded by the queues now).
    drop(bytes);
    let (rejected, message) = validate(&mut batch);
    if batch.item_count() > 0 || rejected == 0 {
        crate::queue(slots, batch, shared.acknowledgements)
            .await
            .map_err(|why| Reject(StatusCode::SERVICE_UNAVAILABLE, format!("{}: {why}", shared.receiver)))?;
    }
    Ok((rejected, message))
}

fn too_large(limit: usize, what: &str) -> Reject {
    Reject(StatusCode::PAYLOAD_TOO_LARGE, format!("{what} exceeds max_request_body_size ({limit} bytes)"))
}

/// Decompresses into at most `limit` bytes; more is a 413, not an allocation.
fn decompress(content_encoding: &str, raw: Bytes, limit: usize) -> Result<Bytes, Reject> {
    fn read_limited(mut r: impl Read, limit: usize, name: &str) -> Result<Bytes, Reject> {
        let mut out = Vec::new();
        (&mut r)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("invalid {name} body: {e}")))?;
        if out.len() > limit {
            return Err(too_large(limit, "decompressed request body"));
        }
        Ok(Bytes::from(out))
    }
    match content_encoding {
        "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(&raw[..]), limit, "gzip"),
        "deflate" => read_limited(flate2::read::ZlibDecoder::new(&raw[..]), limit, "deflate"),
        "zstd" => {
            let d = zstd::stream::read::Decoder::new(&raw[..])
                .map_err(|e| Reject(StatusCode::BAD_REQUEST, format!("invalid zstd body: {e}")))?;
            read_limited(d, limit, "zstd")
        }
        _ => Ok(raw),
    }
}

/// Decodes an OTLP/JSON request whose share of the decode budget is `need` bytes (the body
/// included): the decoder stops there with a 413 (see `budget`).
fn decode_json(signal: Signal, bytes: &[u8], need: usize) -> Result<Batch, Reject> {
    json::decode_within(signal, bytes, need.saturating_sub(bytes.len())).map_err(|e| {
        let status = if e.is_over_limit() {
            // What it parsed before it was stopped goes back to the OS at once, before the
            // next large request takes its share.
            otterline_core::telemetry::release_free_memory();
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Reject(status, format!("invalid OTLP/JSON {signal} request: {e}"))
    })
}

fn success_response(encoding: Encoding, signal: Signal, rejected: i64, message: String) -> Response {
    let body = match encoding {
        Encoding::Json => json::encode_partial_success(signal, rejected, &message).into_bytes(),
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: (rejected > 0)
                    .then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: (rejected > 0)
                    .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message: message }),
            }
            .encode_to_vec(),
            Signal::Logs => ExportLogsServiceResponse {
                partial_success: (rejected > 0)
                    .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: message }),
            }
            .encode_to_vec(),
        },
    };
    ([(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

/// The gRPC code that matches an HTTP status, for the `google.rpc.Status` body.
fn grpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        StatusCode::NOT_FOUND => 12,                                       // UNIMPLEMENTED
        StatusCode::PAYLOAD_TOO_LARGE => 8,                                // RESOURCE_EXHAUSTED
        StatusCode::SERVICE_UNAVAILABLE => 14,                             // UNAVAILABLE
        _ => 2,                                                            // UNKNOWN
    }
}

fn error_response(encoding: Encoding, status: StatusCode, message: String) -> Response {
    let code = grpc_code(status);
    let body = match encoding {
        Encoding::Protobuf => tonic_types::Status { code, message, details: Vec::new() }.encode_to_vec(),
        Encoding::Json => {
            let mut s = String::from("{\"code\":");
            s.push_str(&code.to_string());
            s.push_str(",\"message\":");
            s.push_str(&serde_json_string(&message));
            s.push('}');
            s.into_bytes()
        }
    };
    (status, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

fn serde_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bomb_is_cut_at_the_limit() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 10 * 1024 * 1024]).unwrap();
        let small = enc.finish().unwrap();
        assert!(small.len() < 64 * 1024);
        let err = decompress("gzip", Bytes::from(small.clone()), 1024 * 1024).err().unwrap();
        assert_eq!(err.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(decompress("gzip", Bytes::from(small), 20 * 1024 * 1024).ok().unwrap().len(), 10 * 1024 * 1024);
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert_eq!(media_type(&h).unwrap(), Encoding::Json);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(media_type(&h).unwrap_err().contains("unsupported Content-Type"));
    }
}
