//! OTLP/gRPC: the three `Export` services on one tonic server.
//!
//! The services are Otterline's own rather than the ones `opentelemetry-proto` generates:
//! theirs decode through tonic's `ProstCodec`, which reads the message through a generic
//! buffer (a shared `Bytes` split off for every string, no inlined varint reads) and
//! answers a malformed message with INTERNAL. [`SliceCodec`] decodes the message from the
//! contiguous slice tonic has already assembled, as the HTTP receiver does, and answers
//! malformed protobuf with INVALID_ARGUMENT and the reason.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, CompressionEncoding, EnabledCompressionEncodings, Service, StdError};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};

use otterline_core::component::{ComponentError, Output, Refusal, Task};
use otterline_core::Signal;

use crate::budget;
use crate::validate::validate;
use crate::GrpcConfig;

struct Handler {
    output: Output,
    receiver: String,
    budget: Arc<crate::budget::DecodeBudget>,
    acknowledgements: bool,
}

impl Handler {
    /// Reserves queue space, then decodes, validates and queues a request; returns
    /// (rejected, message) for partial success. While it waits for space it holds the
    /// request's bytes, not its decoded batch (several times larger): 128 requests in
    /// flight against a full pipeline cost their wire size.
    async fn accept<E: Export>(&self, bytes: Bytes) -> Result<(i64, String), Status> {
        let malformed =
            |e: prost::DecodeError| Status::invalid_argument(format!("malformed OTLP protobuf {}: {e}", E::NAME));
        let refuse = |r: budget::Refusal| match r {
            // Not retryable: it would not fit at any time (RESOURCE_EXHAUSTED without RetryInfo).
            budget::Refusal::TooLarge { .. } => Status::resource_exhausted(format!("{}: {r}", self.receiver)),
            budget::Refusal::Busy => Status::with_error_details(
                Code::Unavailable,
                format!("{}: {r}", self.receiver),
                ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
            ),
        };
        let slots = match self.output.reserve(E::SIGNAL).await {
            Ok(slots) => slots,
            Err(r) => {
                // Decoded to count what is refused only when the decode budget has room at
                // once: a refusal must not cost memory that accepted requests need.
                if let Some(batch) = budget::decode_protobuf_now(&self.budget, E::SIGNAL, &bytes) {
                    self.output.count_refused(E::SIGNAL, batch.item_count() as u64);
                }
                return Err(refusal_status(&self.receiver, r));
            }
        };
        let mut batch =
            budget::decode_protobuf(&self.budget, None, E::SIGNAL, &bytes).await.map_err(refuse)?.map_err(malformed)?;
        drop(bytes);
        let (rejected, message) = validate(&mut batch);
        if batch.item_count() > 0 || rejected == 0 {
            crate::queue(slots, batch, self.acknowledgements).await.map_err(|why| {
                Status::with_error_details(
                    Code::Unavailable,
                    format!("{}: {why}", self.receiver),
                    ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
                )
            })?;
        }
        Ok((rejected, message))
    }
}

pub(crate) fn refusal_status(receiver: &str, r: Refusal) -> Status {
    match r {
        Refusal::Full | Refusal::ShuttingDown | Refusal::MemoryLimit(_) => Status::with_error_details(
            Code::Unavailable,
            format!("{receiver}: {r}"),
            ErrorDetails::with_retry_info(Some(Duration::from_secs(1))),
        ),
        Refusal::NoPipeline(_) => Status::unimplemented(format!("{receiver}: {r}")),
    }
}

/// One OTLP export service: its gRPC name, signal and response (requests are decoded by
/// signal, `budget::decode_protobuf`).
trait Export: Send + Sync + 'static {
    /// The gRPC service name (`package.Service`); its one method is `Export`.
    const NAME: &'static str;
    const SIGNAL: Signal;
    type Resp: prost::Message + Default + Send + 'static;
    fn response(rejected: i64, error_message: String) -> Self::Resp;
}

/// Whether `path` is `/<E::NAME>/Export`.
fn is_export<E: Export>(path: &str) -> bool {
    path.strip_prefix('/').and_then(|p| p.strip_prefix(E::NAME)) == Some("/Export")
}

/// An [`Export`] for one signal: its marker type, signal, the module of its generated
/// server (for the service name), its response and its partial-success field.
macro_rules! export {
    ($marker:ident, $variant:ident, $server:ident, $resp:ident, $partial:ident, $rejected:ident) => {
        struct $marker;

        impl Export for $marker {
            const NAME: &'static str = $server::SERVICE_NAME;
            const SIGNAL: Signal = Signal::$variant;
            type Resp = $resp;
            fn response(rejected: i64, error_message: String) -> $resp {
                $resp { partial_success: (rejected > 0).then_some($partial { $rejected: rejected, error_message }) }
            }
        }
    };
}

export!(Traces, Traces, trace_service_server, ExportTraceServiceResponse, ExportTracePartialSuccess, rejected_spans);
export!(
    Metrics,
    Metrics,
    metrics_service_server,
    ExportMetricsServiceResponse,
    ExportMetricsPartialSuccess,
    rejected_data_points
);
export!(Logs, Logs, logs_service_server, ExportLogsServiceResponse, ExportLogsPartialSuccess, rejected_log_records);

/// Encodes responses with prost; hands requests over as their bytes (one contiguous
/// buffer, not copied), decoded by [`Handler::accept`] once queue space is reserved.
struct SliceCodec<E>(PhantomData<fn() -> E>);

impl<E: Export> Codec for SliceCodec<E> {
    type Encode = E::Resp;
    type Decode = Bytes;
    type Encoder = SliceCodec<E>;
    type Decoder = SliceCodec<E>;
    fn encoder(&mut self) -> Self::Encoder {
        SliceCodec(PhantomData)
    }
    fn decoder(&mut self) -> Self::Decoder {
        SliceCodec(PhantomData)
    }
}

impl<E: Export> Encoder for SliceCodec<E> {
    type Item = E::Resp;
    type Error = Status;
    fn encode(&mut self, item: E::Resp, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        prost::Message::encode(&item, dst).map_err(|e| Status::internal(format!("encoding the response: {e}")))
    }
}

impl<E: Export> Decoder for SliceCodec<E> {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // tonic assembles a message in one buffer: this splits it off without a copy.
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

/// The tonic service of one [`Export`].
struct ExportServer<E> {
    handler: Arc<Handler>,
    max_decoding: usize,
    token: Option<Arc<crate::security::Token>>,
    _export: PhantomData<fn() -> E>,
}

impl<E> Clone for ExportServer<E> {
    fn clone(&self) -> Self {
        ExportServer {
            handler: self.handler.clone(),
            max_decoding: self.max_decoding,
            token: self.token.clone(),
            _export: PhantomData,
        }
    }
}

impl<E> tonic::server::NamedService for ExportServer<E>
where
    E: Export,
{
    const NAME: &'static str = E::NAME;
}

/// The unary `Export` call.
struct ExportCall<E>(Arc<Handler>, PhantomData<fn() -> E>);

impl<E: Export> tonic::server::UnaryService<Bytes> for ExportCall<E> {
    type Response = E::Resp;
    type Future = BoxFuture<Response<E::Resp>, Status>;
    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move {
            let (rejected, error_message) = handler.accept::<E>(req.into_inner()).await?;
            Ok(Response::new(E::response(rejected, error_message)))
        })
    }
}

impl<E, B> Service<http::Request<B>> for ExportServer<E>
where
    E: Export,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let authorization = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        if self.token.as_ref().is_some_and(|t| !t.allows_header(authorization)) {
            let status =
                Status::unauthenticated("missing or wrong bearer token (send `authorization: Bearer <token>`)");
            return Box::pin(async move { Ok(status.into_http()) });
        }
        if !is_export::<E>(req.uri().path()) {
            let status = Status::unimplemented(format!("{} has no method {}", E::NAME, req.uri().path()));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let call = ExportCall::<E>(self.handler.clone(), PhantomData);
        let max = self.max_decoding;
        Box::pin(async move {
            let mut encodings = EnabledCompressionEncodings::default();
            encodings.enable(CompressionEncoding::Gzip);
            encodings.enable(CompressionEncoding::Zstd);
            let mut grpc = tonic::server::Grpc::new(SliceCodec::<E>(PhantomData))
                .apply_compression_config(encodings, encodings)
                .apply_max_message_size_config(Some(max), None);
            Ok(oversize_is_not_retryable(grpc.unary(call, req).await))
        })
    }
}

/// tonic answers a request over `max_recv_msg_size_mib` with `OUT_OF_RANGE`, which the
/// OTLP spec makes retryable: a sender (Otterline's forwarder among them) would retry the
/// same oversize request forever. It becomes `RESOURCE_EXHAUSTED` without `RetryInfo`, as
/// the Collector answers: not retryable, so the sender drops or splits it.
fn oversize_is_not_retryable(mut resp: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let out_of_range = (tonic::Code::OutOfRange as i32).to_string();
    let h = resp.headers_mut();
    if h.get("grpc-status").is_some_and(|v| v.as_bytes() == out_of_range.as_bytes()) {
        let exhausted = (tonic::Code::ResourceExhausted as i32).to_string();
        if let Ok(v) = http::HeaderValue::from_str(&exhausted) {
            h.insert("grpc-status", v);
        }
    }
    resp
}

pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    cfg: GrpcConfig,
    output: Output,
    receiver: String,
    budget: Arc<crate::budget::DecodeBudget>,
    security: crate::security::Security,
    shutdown: CancellationToken,
) -> Result<Task, ComponentError> {
    let handler = Arc::new(Handler { output, receiver, budget, acknowledgements: security.acknowledgements });
    let max_decoding = (cfg.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024);
    let token = &security.token;
    fn export<E>(h: &Arc<Handler>, max: usize, token: &Option<Arc<crate::security::Token>>) -> ExportServer<E> {
        ExportServer { handler: h.clone(), max_decoding: max, token: token.clone(), _export: PhantomData }
    }
    let router = tonic::transport::Server::builder()
        .add_service(export::<Traces>(&handler, max_decoding, token))
        .add_service(export::<Metrics>(&handler, max_decoding, token))
        .add_service(export::<Logs>(&handler, max_decoding, token));
    let tls = security.tls.clone();
    Ok(Box::pin(async move {
        let stop = shutdown.clone().cancelled_owned();
        let result = match tls {
            // Handshakes by the shared TLS source (certificate reload, versions; see `security`).
            Some(source) => {
                let incoming = crate::security::incoming(listener, source, shutdown.clone(), "OTLP/gRPC");
                let server = router.serve_with_incoming_shutdown(incoming, stop);
                otterline_core::net::serve_with_grace(server, shutdown, "OTLP/gRPC").await
            }
            None => {
                let server = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop);
                otterline_core::net::serve_with_grace(server, shutdown, "OTLP/gRPC").await
            }
        };
        result.map_err(|e| ComponentError::new(format!("OTLP/gRPC server failed: {e}")))
    }))
}
