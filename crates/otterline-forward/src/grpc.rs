//! Exporter `otlp` (alias `otlp_grpc`): forwards to an OTLP/gRPC endpoint over one
//! HTTP/2 channel (TLS by default), with the Collector's settings.
//!
//! Retryable per the OTLP spec: `Cancelled`, `DeadlineExceeded`, `Aborted`, `OutOfRange`,
//! `Unavailable`, `DataLoss`, and `ResourceExhausted` when the server sends `RetryInfo`
//! (whose delay is honoured). Every other code drops the request, counted and logged.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;
use tonic_types::StatusExt;

use otterline_core::component::{BuildContext, Exporter, ExporterFactory};
use otterline_core::config::ConfigError;
use otterline_core::SignalSet;

use crate::codec::{export_path, partial_success, RawCodec};
use crate::forwarder::{Forwarder, Outcome, Transport};
use crate::queue::{Encoding, Request};
use crate::settings::{
    check_common, effective_headers, Compression, Headers, QueueSettings, RetrySettings, TlsSettings,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// `host:port` (TLS unless `tls.insecure`), or `http://host:port` / `https://host:port`.
    pub endpoint: String,
    pub tls: TlsSettings,
    pub headers: Headers,
    pub compression: Compression,
    #[serde(with = "otterline_core::units::duration")]
    pub timeout: Duration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            endpoint: String::new(),
            tls: TlsSettings::default(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout: Duration::from_secs(5),
            retry_on_failure: RetrySettings::default(),
            sending_queue: QueueSettings::default(),
        }
    }
}

/// Builds `otlp` and its alias `otlp_grpc`.
pub struct OtlpGrpcExporterFactory {
    name: &'static str,
}

impl OtlpGrpcExporterFactory {
    pub const OTLP: OtlpGrpcExporterFactory = OtlpGrpcExporterFactory { name: "otlp" };
    pub const OTLP_GRPC: OtlpGrpcExporterFactory = OtlpGrpcExporterFactory { name: "otlp_grpc" };
}

impl ExporterFactory for OtlpGrpcExporterFactory {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        "forwards to an OTLP/gRPC endpoint: TLS, headers, compression, retry with backoff, memory or persistent sending queue"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
        let cfg: GrpcConfig = ctx.parse()?;
        check_common(ctx, cfg.timeout, &cfg.headers, &cfg.retry_on_failure, &cfg.sending_queue)?;
        let endpoint = endpoint(ctx, &cfg)?;
        let mut headers = Vec::new();
        for (k, v) in effective_headers(&cfg.headers) {
            let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|e| ctx.error("headers", format!("{k:?}: {e}")))?;
            let value: AsciiMetadataValue =
                v.parse().map_err(|_| ctx.error("headers", format!("the value of {k:?} must be printable ASCII")))?;
            headers.push((key, value));
        }
        let transport = GrpcTransport {
            endpoint,
            channel: OnceLock::new(),
            headers,
            timeout: cfg.timeout,
            compression: match cfg.compression {
                Compression::Gzip => Some(CompressionEncoding::Gzip),
                Compression::Zstd => Some(CompressionEncoding::Zstd),
                Compression::None => None,
            },
        };
        Ok(Box::new(Forwarder::new(ctx, transport, cfg.retry_on_failure, cfg.sending_queue)))
    }
}

/// The tonic endpoint: scheme from the text or `tls.insecure`, TLS material read now.
fn endpoint(ctx: &BuildContext<'_>, cfg: &GrpcConfig) -> Result<Endpoint, ConfigError> {
    let text = cfg.endpoint.trim();
    if text.is_empty() {
        return Err(ctx.error("endpoint", "set the upstream's address, e.g. `endpoint: collector.example:4317`"));
    }
    let uri = if text.starts_with("http://") || text.starts_with("https://") {
        text.to_string()
    } else if cfg.tls.insecure {
        format!("http://{text}")
    } else {
        format!("https://{text}")
    };
    let mut ep = Endpoint::from_shared(uri.clone())
        .map_err(|e| ctx.error("endpoint", format!("{text:?} is not a valid endpoint: {e}")))?
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if uri.starts_with("https://") {
        let m = cfg.tls.load(ctx)?;
        let mut tls = ClientTlsConfig::new();
        tls = match m.ca_pem {
            Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
            None => tls.with_native_roots(),
        };
        if let (Some(c), Some(k)) = (m.cert_pem, m.key_pem) {
            tls = tls.identity(Identity::from_pem(c, k));
        }
        if let Some(name) = m.server_name {
            tls = tls.domain_name(name);
        }
        ep = ep.tls_config(tls).map_err(|e| ctx.error("tls", format!("invalid TLS settings: {e}")))?;
    }
    Ok(ep)
}

struct GrpcTransport {
    endpoint: Endpoint,
    /// One HTTP/2 channel, connected on first use and reconnected by tonic as needed.
    channel: OnceLock<Channel>,
    headers: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    timeout: Duration,
    compression: Option<CompressionEncoding>,
}

#[async_trait]
impl Transport for GrpcTransport {
    fn encoding(&self) -> Encoding {
        Encoding::Protobuf
    }

    async fn send(&self, req: &Request) -> Outcome {
        let channel = self.channel.get_or_init(|| self.endpoint.connect_lazy()).clone();
        let mut grpc = tonic::client::Grpc::new(channel)
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd)
            .max_decoding_message_size(16 << 20);
        if let Some(c) = self.compression {
            grpc = grpc.send_compressed(c);
        }
        if let Err(e) = grpc.ready().await {
            return Outcome::Retry { reason: format!("upstream not reachable: {e}"), after: None };
        }
        let mut request = tonic::Request::new(req.payload.clone());
        request.set_timeout(self.timeout);
        for (k, v) in &self.headers {
            request.metadata_mut().insert(k.clone(), v.clone());
        }
        let path = http::uri::PathAndQuery::from_static(export_path(req.signal));
        match grpc.unary(request, path, RawCodec).await {
            Ok(resp) => {
                let (rejected, message) = partial_success(req.signal, resp.get_ref());
                Outcome::Delivered { rejected, message }
            }
            Err(status) => classify(&status),
        }
    }
}

fn classify(status: &tonic::Status) -> Outcome {
    let after = status.get_details_retry_info().and_then(|r| r.retry_delay);
    let reason = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Outcome::Retry { reason, after },
        Code::ResourceExhausted if after.is_some() => Outcome::Retry { reason, after },
        _ => Outcome::Permanent(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, StatusExt};

    #[test]
    fn codes_are_classified_as_the_otlp_spec_says() {
        assert!(matches!(classify(&tonic::Status::unavailable("down")), Outcome::Retry { after: None, .. }));
        assert!(matches!(classify(&tonic::Status::invalid_argument("bad")), Outcome::Permanent(_)));
        assert!(matches!(classify(&tonic::Status::resource_exhausted("quota")), Outcome::Permanent(_)));
        let throttled = tonic::Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(3))),
        );
        match classify(&throttled) {
            Outcome::Retry { after, .. } => assert_eq!(after, Some(Duration::from_secs(3))),
            o => panic!("{o:?}"),
        }
    }
}
