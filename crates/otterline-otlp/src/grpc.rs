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

use bytes::Buf;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, Body, BoxFuture, CompressionEncoding, EnabledCompressionEncodings, Service, StdError};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use otterline_core::component::{ComponentError, Output, Refusal, Task};
use otterline_core::Batch;

use crate::validate::validate;
use crate::GrpcConfig;

struct Handler {
    output: Output,
    receiver: String,
}

impl Handler {
    /// Validates and queues a batch; returns (rejected, message) for partial success.
    async fn accept(&self, mut batch: Batch) -> Result<(i64, String), Status> {
        let (rejected, message) = validate(&mut batch);
        if batch.item_count() > 0 || rejected == 0 {
            self.output.send(batch).await.map_err(|r| refusal_status(&self.receiver, r))?;
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

/// One OTLP export service: its gRPC name, messages, and how a request becomes a batch.
trait Export: Send + Sync + 'static {
    /// The gRPC service name (`package.Service`); its one method is `Export`.
    const NAME: &'static str;
    type Req: prost::Message + Default + Send + 'static;
    type Resp: prost::Message + Default + Send + 'static;
    /// Decodes a request message (prost's result, whichever decoder runs).
    fn decode(bytes: &[u8]) -> Result<Self::Req, prost::DecodeError>;
    fn batch(req: Self::Req) -> Batch;
    fn response(rejected: i64, error_message: String) -> Self::Resp;
}

/// Whether `path` is `/<E::NAME>/Export`.
fn is_export<E: Export>(path: &str) -> bool {
    path.strip_prefix('/').and_then(|p| p.strip_prefix(E::NAME)) == Some("/Export")
}

/// An [`Export`] for one signal: its marker type, batch variant, the module of its generated
/// server (for the service name), its messages and its partial-success field.
macro_rules! export {
    ($marker:ident, $variant:ident, $server:ident, $req:ident, $resp:ident, $partial:ident, $rejected:ident, $decode:expr) => {
        struct $marker;

        impl Export for $marker {
            const NAME: &'static str = $server::SERVICE_NAME;
            type Req = $req;
            type Resp = $resp;
            fn decode(bytes: &[u8]) -> Result<$req, prost::DecodeError> {
                $decode(bytes)
            }
            fn batch(req: $req) -> Batch {
                Batch::$variant(req)
            }
            fn response(rejected: i64, error_message: String) -> $resp {
                $resp { partial_success: (rejected > 0).then_some($partial { $rejected: rejected, error_message }) }
            }
        }
    };
}

export!(
    Traces,
    Traces,
    trace_service_server,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    ExportTracePartialSuccess,
    rejected_spans,
    crate::decode::traces
);
export!(
    Metrics,
    Metrics,
    metrics_service_server,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    ExportMetricsPartialSuccess,
    rejected_data_points,
    crate::decode::metrics
);
export!(
    Logs,
    Logs,
    logs_service_server,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    ExportLogsPartialSuccess,
    rejected_log_records,
    crate::decode::logs
);

/// Encodes responses with prost; decodes requests from one contiguous slice.
struct SliceCodec<E>(PhantomData<fn() -> E>);

impl<E: Export> Codec for SliceCodec<E> {
    type Encode = E::Resp;
    type Decode = E::Req;
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
    type Item = E::Req;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<E::Req>, Status> {
        let n = src.remaining();
        // tonic hands over a message it has assembled in one buffer: decode that slice
        // (prost's fast path); copy only if a future tonic ever splits it.
        let decoded = if src.chunk().len() >= n {
            let r = E::decode(&src.chunk()[..n]);
            src.advance(n);
            r
        } else {
            let bytes = src.copy_to_bytes(n);
            E::decode(&bytes[..])
        };
        decoded.map(Some).map_err(|e| Status::invalid_argument(format!("malformed OTLP protobuf {}: {e}", E::NAME)))
    }
}

/// The tonic service of one [`Export`].
struct ExportServer<E> {
    handler: Arc<Handler>,
    max_decoding: usize,
    _export: PhantomData<fn() -> E>,
}

impl<E> Clone for ExportServer<E> {
    fn clone(&self) -> Self {
        ExportServer { handler: self.handler.clone(), max_decoding: self.max_decoding, _export: PhantomData }
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

impl<E: Export> tonic::server::UnaryService<E::Req> for ExportCall<E> {
    type Response = E::Resp;
    type Future = BoxFuture<Response<E::Resp>, Status>;
    fn call(&mut self, req: Request<E::Req>) -> Self::Future {
        let handler = self.0.clone();
        Box::pin(async move {
            let (rejected, error_message) = handler.accept(E::batch(req.into_inner())).await?;
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
            Ok(grpc.unary(call, req).await)
        })
    }
}

pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    cfg: GrpcConfig,
    output: Output,
    receiver: String,
    shutdown: CancellationToken,
) -> Task {
    let handler = Arc::new(Handler { output, receiver });
    let max_decoding = (cfg.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024);
    fn server<E>(handler: &Arc<Handler>, max_decoding: usize) -> ExportServer<E> {
        ExportServer { handler: handler.clone(), max_decoding, _export: PhantomData }
    }
    let router = tonic::transport::Server::builder()
        .add_service(server::<Traces>(&handler, max_decoding))
        .add_service(server::<Metrics>(&handler, max_decoding))
        .add_service(server::<Logs>(&handler, max_decoding));
    Box::pin(async move {
        let server =
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.clone().cancelled_owned());
        otterline_core::net::serve_with_grace(server, shutdown, "OTLP/gRPC")
            .await
            .map_err(|e| ComponentError::new(format!("OTLP/gRPC server failed: {e}")))
    })
}
