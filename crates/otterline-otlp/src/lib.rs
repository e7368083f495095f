//! The `otlp` receiver: OTLP over gRPC (tonic) and over HTTP (axum), with the
//! OpenTelemetry Collector's config keys.
//!
//! Each request is decoded once, in the connection's own task, validated
//! (items with malformed ids are rejected and reported as `partial_success`),
//! and handed to the pipelines through [`Output`]. A full pipeline answers with a
//! retryable refusal: gRPC `UNAVAILABLE` with `RetryInfo`, HTTP 503 with `Retry-After`.
//! Trace and log requests in protobuf go through [`decode`], which sizes every vector
//! before filling it and otherwise gives exactly prost's result.

pub mod budget;
pub mod decode;
pub mod footprint;
mod grpc;
mod http;
pub mod security;
mod validate;

use async_trait::async_trait;
use serde::{Deserialize, Deserializer};

use otterline_core::component::{BuildContext, ComponentError, Receiver, ReceiverContext, ReceiverFactory, Task};
use otterline_core::config::ConfigError;
use otterline_core::net::{bind_secured, parse_endpoint};
use otterline_core::units::ByteSize;
use otterline_core::SignalSet;

pub use validate::validate;

/// `receivers.otlp`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    #[serde(default)]
    pub protocols: Protocols,
    /// Memory that requests being decoded may hold at once, gRPC and HTTP together
    /// (`budget`): beyond it requests wait, then get a retryable refusal.
    #[serde(default = "default_decode_memory")]
    pub decode_memory_mib: u64,
    /// Answer a request only once every exporter on its path has made it durable (the
    /// archive's write-ahead log commit, the forward queue's fsync, a JSON flush); a failure
    /// or [`ACK_TIMEOUT`] is a retryable error (`otterline_core::ack`).
    #[serde(default)]
    pub acknowledgements: bool,
}

/// How long a request with acknowledgements waits for its exporters.
pub const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Queues `batch` and, with acknowledgements, waits until it is durable; `Err` says why not.
pub(crate) async fn queue(
    slots: otterline_core::component::Reservation<'_>,
    batch: otterline_core::Batch,
    acknowledgements: bool,
) -> Result<(), &'static str> {
    if !acknowledgements {
        slots.send(batch);
        return Ok(());
    }
    let ack = otterline_core::ack::Ack::new();
    slots.send_acked(batch, &ack);
    ack.done(true);
    match tokio::time::timeout(ACK_TIMEOUT, ack.wait()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err("an exporter could not make the data durable; retry"),
        Err(_) => Err("the data was not made durable within 30 s; retry"),
    }
}

fn default_decode_memory() -> u64 {
    160
}

/// `receivers.otlp.protocols`: a protocol is on when its key is present, even with no body.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Protocols {
    #[serde(default, deserialize_with = "present")]
    pub grpc: Option<GrpcConfig>,
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpConfig>,
}

/// `grpc:` with nothing after it means "on, with defaults".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

/// `receivers.otlp.protocols.grpc`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub endpoint: String,
    /// Largest accepted message after decompression, in MiB (Collector default: 4).
    pub max_recv_msg_size_mib: u64,
    /// TLS (and mutual TLS with `client_ca_file`), the Collector's keys.
    pub tls: Option<security::TlsConfig>,
    /// A bearer token every request must carry.
    pub auth: Option<security::AuthConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig { endpoint: "127.0.0.1:4317".into(), max_recv_msg_size_mib: 4, tls: None, auth: None }
    }
}

/// `receivers.otlp.protocols.http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub endpoint: String,
    /// Largest accepted body, before and after decompression (default 20 MiB).
    pub max_request_body_size: ByteSize,
    pub traces_url_path: String,
    pub metrics_url_path: String,
    pub logs_url_path: String,
    /// TLS (and mutual TLS with `client_ca_file`), the Collector's keys.
    pub tls: Option<security::TlsConfig>,
    /// A bearer token every request must carry.
    pub auth: Option<security::AuthConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: "127.0.0.1:4318".into(),
            max_request_body_size: ByteSize(20 * 1024 * 1024),
            traces_url_path: "/v1/traces".into(),
            metrics_url_path: "/v1/metrics".into(),
            logs_url_path: "/v1/logs".into(),
            tls: None,
            auth: None,
        }
    }
}

pub struct OtlpReceiverFactory;

impl ReceiverFactory for OtlpReceiverFactory {
    fn type_name(&self) -> &'static str {
        "otlp"
    }
    fn description(&self) -> &'static str {
        "OTLP over gRPC (default 127.0.0.1:4317) and HTTP (default 127.0.0.1:4318), protobuf and JSON"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Receiver>, ConfigError> {
        let mut cfg: OtlpConfig = ctx.parse()?;
        let protocols = ctx.config.get("protocols");
        let err = |proto: &str, key: &str, msg: String| {
            let node =
                protocols.and_then(|p| p.get(proto)).and_then(|n| n.get(key)).or(protocols).unwrap_or(ctx.config);
            ConfigError::at(&node.mark, &format!("{}.protocols.{proto}.{key}", ctx.path), msg)
        };
        if cfg.decode_memory_mib == 0 {
            return Err(ctx.error("decode_memory_mib", "must be at least 1"));
        }
        if cfg.protocols.grpc.is_none() && cfg.protocols.http.is_none() {
            return Err(ctx.error("protocols", "enable at least one protocol: `protocols: {grpc: {}, http: {}}`"));
        }
        if let Some(g) = &mut cfg.protocols.grpc {
            g.endpoint = parse_endpoint(&g.endpoint).map_err(|m| err("grpc", "endpoint", m))?;
            if g.max_recv_msg_size_mib == 0 {
                return Err(err("grpc", "max_recv_msg_size_mib", "must be at least 1".into()));
            }
        }
        if let Some(h) = &mut cfg.protocols.http {
            h.endpoint = parse_endpoint(&h.endpoint).map_err(|m| err("http", "endpoint", m))?;
            if h.max_request_body_size.0 == 0 {
                return Err(err("http", "max_request_body_size", "must be at least 1 byte".into()));
            }
            for (key, path) in [
                ("traces_url_path", &h.traces_url_path),
                ("metrics_url_path", &h.metrics_url_path),
                ("logs_url_path", &h.logs_url_path),
            ] {
                if !path.starts_with('/') {
                    return Err(err("http", key, format!("URL path {path:?} must start with `/`")));
                }
            }
        }
        let security = |proto: &str, tls: &Option<security::TlsConfig>, auth: &Option<security::AuthConfig>| {
            Ok::<_, ConfigError>(security::Security {
                tls: tls
                    .as_ref()
                    .map(|t| t.load().map(std::sync::Arc::new))
                    .transpose()
                    .map_err(|(k, m)| err(proto, &format!("tls.{k}"), m))?,
                token: auth
                    .as_ref()
                    .map(|a| a.load().map(std::sync::Arc::new))
                    .transpose()
                    .map_err(|(k, m)| err(proto, &format!("auth.{k}"), m))?,
                acknowledgements: cfg.acknowledgements,
            })
        };
        let grpc_security = match &cfg.protocols.grpc {
            Some(g) => security("grpc", &g.tls, &g.auth)?,
            None => Default::default(),
        };
        let http_security = match &cfg.protocols.http {
            Some(h) => security("http", &h.tls, &h.auth)?,
            None => Default::default(),
        };
        Ok(Box::new(OtlpReceiver { cfg, grpc_security, http_security }))
    }
}

struct OtlpReceiver {
    cfg: OtlpConfig,
    grpc_security: security::Security,
    http_security: security::Security,
}

#[async_trait]
impl Receiver for OtlpReceiver {
    async fn start(self: Box<Self>, ctx: ReceiverContext) -> Result<Task, ComponentError> {
        let mut tasks: Vec<Task> = Vec::new();
        let name = ctx.id.to_string();
        let budget = std::sync::Arc::new(budget::DecodeBudget::new(self.cfg.decode_memory_mib));
        if let Some(g) = &self.cfg.protocols.grpc {
            let listener = listen(&g.endpoint, "OTLP/gRPC", &self.grpc_security, &name).await?;
            tasks.push(grpc::serve(
                listener,
                g.clone(),
                ctx.output.clone(),
                name.clone(),
                budget.clone(),
                self.grpc_security.clone(),
                ctx.shutdown.clone(),
            )?);
        }
        if let Some(h) = &self.cfg.protocols.http {
            let listener = listen(&h.endpoint, "OTLP/HTTP", &self.http_security, &name).await?;
            tasks.push(http::serve(
                listener,
                h.clone(),
                ctx.output.clone(),
                name.clone(),
                budget.clone(),
                self.http_security.clone(),
                ctx.shutdown.clone(),
            )?);
        }
        Ok(Box::pin(async move {
            let results = futures::future::join_all(tasks).await;
            results.into_iter().collect::<Result<Vec<()>, _>>().map(|_| ())
        }))
    }
}

/// Binds one protocol's listener (warning when it is exposed without TLS or a token) and
/// logs what it enforces.
async fn listen(
    endpoint: &str,
    what: &'static str,
    sec: &security::Security,
    receiver: &str,
) -> Result<tokio::net::TcpListener, ComponentError> {
    let (tls, auth) = (sec.tls.is_some(), sec.token.is_some());
    let listener = bind_secured(endpoint, what, tls, auth).await?;
    let mtls = sec.tls.as_ref().is_some_and(|t| t.mutual());
    tracing::info!(receiver, endpoint = %local(&listener), tls, mtls, auth, "{what} listening");
    Ok(listener)
}

fn local(l: &tokio::net::TcpListener) -> String {
    l.local_addr().map(|a| a.to_string()).unwrap_or_default()
}
