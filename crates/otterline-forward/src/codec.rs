//! A gRPC codec that passes already-encoded protobuf bytes through: requests are encoded
//! once when queued, and every attempt (and every retry) sends those bytes as they are.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

#[derive(Debug)]
pub struct RawEncoder;

#[derive(Debug)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// The gRPC method path of a signal's OTLP export.
pub fn export_path(signal: otterline_core::Signal) -> &'static str {
    match signal {
        otterline_core::Signal::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        otterline_core::Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        otterline_core::Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    }
}

/// Rejected items and message of an OTLP export response (protobuf); `(0, "")` when absent.
pub fn partial_success(signal: otterline_core::Signal, body: &[u8]) -> (u64, String) {
    use opentelemetry_proto::tonic::collector::{logs, metrics, trace};
    use prost::Message;
    let p = match signal {
        otterline_core::Signal::Traces => trace::v1::ExportTraceServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_spans, p.error_message)),
        otterline_core::Signal::Metrics => metrics::v1::ExportMetricsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_data_points, p.error_message)),
        otterline_core::Signal::Logs => logs::v1::ExportLogsServiceResponse::decode(body)
            .ok()
            .and_then(|r| r.partial_success)
            .map(|p| (p.rejected_log_records, p.error_message)),
    };
    p.map(|(n, m)| (n.max(0) as u64, m)).unwrap_or_default()
}
