//! The settings both forwarding exporters share, with the Collector's names and defaults:
//! `tls`, `headers`, `compression`, `timeout`, `retry_on_failure`, `sending_queue`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use otterline_core::backoff::BackoffPolicy;
use otterline_core::batching::BatchConfig;
use otterline_core::component::BuildContext;
use otterline_core::config::ConfigError;

/// `headers`: a value that is empty or null (an unset `${env:…}`) means "not sent".
pub type Headers = BTreeMap<String, Option<String>>;

/// The headers that are sent: those with a non-empty value.
pub fn effective_headers(h: &Headers) -> impl Iterator<Item = (&str, &str)> {
    h.iter().filter_map(|(k, v)| v.as_deref().filter(|v| !v.is_empty()).map(|v| (k.as_str(), v)))
}

/// `tls`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Plain text (no TLS) for endpoints written without a scheme.
    pub insecure: bool,
    /// PEM file of the CA(s) that sign the upstream's certificate; replaces the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for upstreams that require mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name to verify the upstream's certificate against (default: the endpoint's host).
    pub server_name_override: Option<String>,
}

/// TLS material read from disk when the exporter is built, so a bad path is a config error.
#[derive(Debug, Clone, Default)]
pub struct TlsMaterial {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
    pub server_name: Option<String>,
}

impl TlsSettings {
    pub fn load(&self, ctx: &BuildContext<'_>) -> Result<TlsMaterial, ConfigError> {
        let read = |key: &str, p: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
            match p.as_ref().filter(|p| !p.as_os_str().is_empty()) {
                None => Ok(None),
                Some(p) => std::fs::read(p)
                    .map(Some)
                    .map_err(|e| ctx.error(&format!("tls.{key}"), format!("cannot read {}: {e}", p.display()))),
            }
        };
        let set = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| !p.as_os_str().is_empty());
        if set(&self.cert_file) != set(&self.key_file) {
            let key = if set(&self.cert_file) { "key_file" } else { "cert_file" };
            return Err(ctx.error("tls", format!("cert_file and key_file go together; add tls.{key}")));
        }
        Ok(TlsMaterial {
            ca_pem: read("ca_file", &self.ca_file)?,
            cert_pem: read("cert_file", &self.cert_file)?,
            key_pem: read("key_file", &self.key_file)?,
            server_name: self.server_name_override.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub fn header_value(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }
}

/// `retry_on_failure`: exponential backoff with jitter, like the Collector's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    pub enabled: bool,
    #[serde(with = "otterline_core::units::duration")]
    pub initial_interval: Duration,
    #[serde(with = "otterline_core::units::duration")]
    pub max_interval: Duration,
    /// Give up on a request after this long (0: never).
    #[serde(with = "otterline_core::units::duration")]
    pub max_elapsed_time: Duration,
    pub multiplier: f64,
    /// Each wait is drawn uniformly from interval × [1 − f, 1 + f].
    pub randomization_factor: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            enabled: true,
            initial_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
            multiplier: 1.5,
            randomization_factor: 0.5,
        }
    }
}

impl RetrySettings {
    /// The backoff these settings describe.
    pub fn backoff_policy(&self) -> BackoffPolicy {
        BackoffPolicy {
            initial: self.initial_interval,
            max: self.max_interval,
            multiplier: self.multiplier,
            randomization_factor: self.randomization_factor,
            max_elapsed: self.max_elapsed_time,
        }
    }
}

/// What `queue_size` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sizer {
    /// Export requests (batches).
    #[default]
    Requests,
    /// Spans, data points or log records.
    Items,
}

/// What happens when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFull {
    /// Wait for space: the pipeline backs up and receivers refuse with a retryable error.
    #[default]
    Block,
    /// Drop the oldest queued request (counted as dropped) to make room.
    DropOldest,
}

/// `sending_queue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    pub enabled: bool,
    pub num_consumers: usize,
    pub queue_size: u64,
    pub sizer: Sizer,
    /// A directory: the queue is kept on disk there and survives restarts and crashes.
    pub storage: Option<PathBuf>,
    /// fsync each record before acknowledging it (persistent queue only).
    pub fsync: bool,
    pub on_full: OnFull,
    /// Merge small requests and split big ones before they are queued (off by default).
    pub batch: Option<QueueBatch>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            enabled: true,
            num_consumers: 10,
            queue_size: 1000,
            sizer: Sizer::Requests,
            storage: None,
            fsync: true,
            on_full: OnFull::Block,
            batch: None,
        }
    }
}

/// `sending_queue.batch`: the batch processor's semantics, applied in front of the queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueBatch {
    #[serde(with = "otterline_core::units::duration")]
    pub flush_timeout: Duration,
    pub min_size: usize,
    /// 0: no upper limit.
    pub max_size: usize,
}

impl Default for QueueBatch {
    fn default() -> Self {
        QueueBatch { flush_timeout: Duration::from_millis(200), min_size: 8192, max_size: 0 }
    }
}

impl QueueBatch {
    pub fn batch_config(&self) -> BatchConfig {
        BatchConfig { send_batch_size: self.min_size, timeout: self.flush_timeout, send_batch_max_size: self.max_size }
    }
}

/// Checks the settings shared by both exporters; errors point at the key.
pub fn check_common(
    ctx: &BuildContext<'_>,
    timeout: Duration,
    headers: &Headers,
    retry: &RetrySettings,
    queue: &QueueSettings,
) -> Result<(), ConfigError> {
    if timeout.is_zero() {
        return Err(ctx.error("timeout", "must be more than 0"));
    }
    for (k, v) in effective_headers(headers) {
        let ok_name = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok_name {
            return Err(ctx.error(&format!("headers.{k}"), format!("{k:?} is not a valid header name")));
        }
        if v.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
            return Err(ctx.error(&format!("headers.{k}"), "the value has control characters"));
        }
    }
    if retry.enabled {
        if retry.initial_interval.is_zero() {
            return Err(ctx.error("retry_on_failure.initial_interval", "must be more than 0"));
        }
        if retry.max_interval < retry.initial_interval {
            return Err(ctx.error("retry_on_failure.max_interval", "must be at least initial_interval"));
        }
        if retry.multiplier < 1.0 || !retry.multiplier.is_finite() {
            return Err(ctx.error("retry_on_failure.multiplier", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&retry.randomization_factor) {
            return Err(ctx.error("retry_on_failure.randomization_factor", "must be between 0 and 1"));
        }
    }
    if queue.enabled {
        if queue.num_consumers == 0 {
            return Err(ctx.error("sending_queue.num_consumers", "must be at least 1"));
        }
        if queue.queue_size == 0 {
            return Err(ctx.error("sending_queue.queue_size", "must be at least 1"));
        }
        if let Some(b) = &queue.batch {
            if b.min_size == 0 || b.flush_timeout.is_zero() {
                return Err(ctx.error("sending_queue.batch", "min_size and flush_timeout must be more than 0"));
            }
            if b.max_size > 0 && b.max_size < b.min_size {
                return Err(
                    ctx.error("sending_queue.batch.max_size", "must be 0 (no limit) or at least batch.min_size")
                );
            }
        }
    } else if queue.storage.is_some() {
        return Err(ctx.error("sending_queue.storage", "needs the queue enabled (sending_queue.enabled: true)"));
    }
    Ok(())
}
