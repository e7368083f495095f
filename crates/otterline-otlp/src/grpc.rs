//! OTLP/gRPC: the three `Export` services on one tonic server.

use std::time::Duration;

use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use otterline_core::component::{ComponentError, Output, Refusal, Task};
use otterline_core::Batch;

use crate::validate::validate;
use crate::GrpcConfig;

#[derive(Clone)]
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

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let (rejected, error_message) = self.accept(Batch::Traces(req.into_inner())).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (rejected > 0)
                .then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Handler {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let (rejected, error_message) = self.accept(Batch::Metrics(req.into_inner())).await?;
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: (rejected > 0)
                .then_some(ExportMetricsPartialSuccess { rejected_data_points: rejected, error_message }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Handler {
    async fn export(
        &self,
        req: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let (rejected, error_message) = self.accept(Batch::Logs(req.into_inner())).await?;
        Ok(Response::new(ExportLogsServiceResponse {
            partial_success: (rejected > 0)
                .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message }),
        }))
    }
}

pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    cfg: GrpcConfig,
    output: Output,
    receiver: String,
    shutdown: CancellationToken,
) -> Task {
    let h = Handler { output, receiver };
    let max = (cfg.max_recv_msg_size_mib as usize).saturating_mul(1024 * 1024);
    macro_rules! configure {
        ($server:expr) => {
            $server
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max)
        };
    }
    let router = tonic::transport::Server::builder()
        .add_service(configure!(TraceServiceServer::new(h.clone())))
        .add_service(configure!(MetricsServiceServer::new(h.clone())))
        .add_service(configure!(LogsServiceServer::new(h)));
    Box::pin(async move {
        let server =
            router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.clone().cancelled_owned());
        otterline_core::net::serve_with_grace(server, shutdown, "OTLP/gRPC")
            .await
            .map_err(|e| ComponentError::new(format!("OTLP/gRPC server failed: {e}")))
    })
}
