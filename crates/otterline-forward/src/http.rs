//! Exporter `otlp_http`: forwards to OTLP/HTTP endpoints (`/v1/traces`, `/v1/metrics`,
//! `/v1/logs`, or one URL per signal) as protobuf or JSON, over one keep-alive pool.
//!
//! Retryable per the OTLP spec: 429, 502, 503 and 504 (honouring `Retry-After` in
//! seconds), and connection errors and timeouts. Any other non-2xx drops the request,
//! counted and logged with the upstream's reason.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use serde::Deserialize;

use otterline_core::component::{BuildContext, Exporter, ExporterFactory};
use otterline_core::config::ConfigError;
use otterline_core::{Signal, SignalSet};

use crate::codec::partial_success;
use crate::forwarder::{Forwarder, Outcome, Transport};
use crate::queue::{Encoding, Request};
use crate::settings::{
    check_common, effective_headers, Compression, Headers, QueueSettings, RetrySettings, TlsSettings,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WireEncoding {
    #[default]
    Proto,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Base URL; `/v1/<signal>` is appended for signals without their own endpoint.
    pub endpoint: String,
    pub traces_endpoint: Option<String>,
    pub metrics_endpoint: Option<String>,
    pub logs_endpoint: Option<String>,
    pub encoding: WireEncoding,
    pub tls: TlsSettings,
    pub headers: Headers,
    pub compression: Compression,
    #[serde(with = "otterline_core::units::duration")]
    pub timeout: Duration,
    pub retry_on_failure: RetrySettings,
    pub sending_queue: QueueSettings,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            endpoint: String::new(),
            traces_endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            encoding: WireEncoding::Proto,
            tls: TlsSettings::default(),
            headers: BTreeMap::new(),
            compression: Compression::Gzip,
            timeout: Duration::from_secs(5),
            retry_on_failure: RetrySettings::default(),
            sending_queue: QueueSettings::default(),
        }
    }
}

/// Registered twice: `otlphttp` is the Collector's name, `otlp_http` Otterline's.
pub struct OtlpHttpExporterFactory {
    name: &'static str,
}

impl OtlpHttpExporterFactory {
    pub const OTLP_HTTP: OtlpHttpExporterFactory = OtlpHttpExporterFactory { name: "otlp_http" };
    pub const OTLPHTTP: OtlpHttpExporterFactory = OtlpHttpExporterFactory { name: "otlphttp" };
}

impl ExporterFactory for OtlpHttpExporterFactory {
    fn type_name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        "forwards to OTLP/HTTP endpoints (protobuf or JSON): TLS, headers, compression, retry, memory or persistent sending queue"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
        let cfg: HttpConfig = ctx.parse()?;
        check_common(ctx, cfg.timeout, &cfg.headers, &cfg.retry_on_failure, &cfg.sending_queue)?;
        let mut urls: [Option<reqwest::Url>; 3] = Default::default();
        for s in Signal::ALL {
            let (key, own) = match s {
                Signal::Traces => ("traces_endpoint", &cfg.traces_endpoint),
                Signal::Metrics => ("metrics_endpoint", &cfg.metrics_endpoint),
                Signal::Logs => ("logs_endpoint", &cfg.logs_endpoint),
            };
            let (key, written, text) = match own {
                Some(u) => (key, u.trim(), u.trim().to_string()),
                None if cfg.endpoint.trim().is_empty() => continue,
                None => {
                    let base = cfg.endpoint.trim();
                    ("endpoint", base, format!("{}/v1/{}", base.trim_end_matches('/'), s.as_str()))
                }
            };
            if !written.starts_with("http://") && !written.starts_with("https://") {
                return Err(
                    ctx.error(key, format!("{written:?} needs a scheme: write http://{written} or https://{written}"))
                );
            }
            let url = reqwest::Url::parse(&text).map_err(|e| ctx.error(key, format!("{text:?} is not a URL: {e}")))?;
            urls[s.index()] = Some(url);
        }
        if urls.iter().all(Option::is_none) {
            return Err(
                ctx.error("endpoint", "set the upstream's base URL, e.g. `endpoint: http://collector.example:4318`")
            );
        }
        let mut headers = HeaderMap::new();
        for (k, v) in effective_headers(&cfg.headers) {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| ctx.error("headers", format!("{k:?}: {e}")))?;
            let value =
                HeaderValue::from_str(v).map_err(|e| ctx.error("headers", format!("the value of {k:?}: {e}")))?;
            headers.insert(name, value);
        }
        let client = client(ctx, &cfg)?;
        let transport = HttpTransport {
            client,
            urls,
            headers,
            encoding: match cfg.encoding {
                WireEncoding::Proto => Encoding::Protobuf,
                WireEncoding::Json => Encoding::Json,
            },
            compression: cfg.compression,
        };
        Ok(Box::new(Forwarder::new(ctx, transport, cfg.retry_on_failure, cfg.sending_queue)))
    }
}

fn client(ctx: &BuildContext<'_>, cfg: &HttpConfig) -> Result<reqwest::Client, ConfigError> {
    // reqwest is built without a default crypto provider; make sure one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let m = cfg.tls.load(ctx)?;
    let mut b = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_gzip()
        .no_proxy();
    if let Some(ca) = &m.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|e| ctx.error("tls.ca_file", format!("not a PEM certificate bundle: {e}")))?;
        b = b.tls_certs_only(certs);
    }
    if let (Some(c), Some(k)) = (&m.cert_pem, &m.key_pem) {
        let mut pem = c.clone();
        pem.push(b'\n');
        pem.extend_from_slice(k);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| ctx.error("tls.cert_file", format!("cannot use the client certificate and key: {e}")))?;
        b = b.identity(id);
    }
    b.build().map_err(|e| ctx.error("tls", format!("cannot build the HTTP client: {e}")))
}

struct HttpTransport {
    client: reqwest::Client,
    urls: [Option<reqwest::Url>; 3],
    headers: HeaderMap,
    encoding: Encoding,
    compression: Compression,
}

impl HttpTransport {
    fn body(&self, payload: &[u8]) -> std::io::Result<Vec<u8>> {
        match self.compression {
            Compression::None => Ok(payload.to_vec()),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::with_capacity(payload.len() / 4), flate2::Compression::fast());
                e.write_all(payload)?;
                e.finish()
            }
            Compression::Zstd => zstd::bulk::compress(payload, 3),
        }
    }
}

#[async_trait]
impl Transport for HttpTransport {
    fn encoding(&self) -> Encoding {
        self.encoding
    }

    async fn send(&self, req: &Request) -> Outcome {
        let Some(url) = &self.urls[req.signal.index()] else {
            return Outcome::Permanent(format!("no endpoint is configured for {}", req.signal));
        };
        let body = match self.body(&req.payload) {
            Ok(b) => b,
            Err(e) => return Outcome::Permanent(format!("cannot compress the request: {e}")),
        };
        let content_type = match self.encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        let mut rb = self.client.post(url.clone()).headers(self.headers.clone()).header(CONTENT_TYPE, content_type);
        if let Some(enc) = self.compression.header_value() {
            rb = rb.header(CONTENT_ENCODING, enc);
        }
        let resp = match rb.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Retry { reason: format!("{url}: {}", error_chain(&e)), after: None },
        };
        let status = resp.status();
        let after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = resp.bytes().await.unwrap_or_default();
        if status.is_success() {
            let (rejected, message) =
                if is_json { partial_success_json(req.signal, &body) } else { partial_success(req.signal, &body) };
            return Outcome::Delivered { rejected, message };
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).trim().to_string();
        let reason =
            format!("{url}: HTTP {status}{}", if text.is_empty() { String::new() } else { format!(": {text}") });
        match status.as_u16() {
            429 | 502 | 503 | 504 => Outcome::Retry { reason, after },
            _ => Outcome::Permanent(reason),
        }
    }
}

/// `{"partialSuccess": {"rejectedSpans": "2", "errorMessage": "…"}}`.
fn partial_success_json(signal: Signal, body: &[u8]) -> (u64, String) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return (0, String::new()) };
    let Some(p) = v.get("partialSuccess").or_else(|| v.get("partial_success")) else { return (0, String::new()) };
    let key = match signal {
        Signal::Traces => ["rejectedSpans", "rejected_spans"],
        Signal::Metrics => ["rejectedDataPoints", "rejected_data_points"],
        Signal::Logs => ["rejectedLogRecords", "rejected_log_records"],
    };
    let n = key
        .iter()
        .find_map(|k| p.get(*k))
        .and_then(|n| n.as_u64().or_else(|| n.as_str().and_then(|s| s.parse().ok())))
        .unwrap_or(0);
    let msg = ["errorMessage", "error_message"].iter().find_map(|k| p.get(*k)).and_then(|m| m.as_str()).unwrap_or("");
    (n, msg.to_string())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_partial_success_accepts_both_spellings() {
        let body = br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"bad ids"}}"#;
        assert_eq!(partial_success_json(Signal::Traces, body), (2, "bad ids".to_string()));
        let body = br#"{"partial_success":{"rejected_log_records":3}}"#;
        assert_eq!(partial_success_json(Signal::Logs, body), (3, String::new()));
        assert_eq!(partial_success_json(Signal::Metrics, b"{}"), (0, String::new()));
    }
}
