//! Benchmark support: realistic pre-encoded OTLP requests, a tonic codec that sends
//! bytes as they are, and process CPU/memory readings from `/proc`.

pub mod decode_fuzz;
pub mod nab;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A deterministic pseudo-random generator (xorshift), so runs are comparable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const SERVICES: &[&str] = &["rag-worker", "planner-agent", "support-bot", "summarizer"];
const MODELS: &[&str] = &["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "gemini-2.0-flash"];
const OPERATIONS: &[&str] = &["chat", "embeddings", "invoke_agent", "execute_tool"];

/// One request of `spans` GenAI-flavoured spans (~9 attributes each), as the
/// OpenTelemetry GenAI conventions describe them.
pub fn trace_request(rng: &mut Rng, spans: usize) -> ExportTraceServiceRequest {
    let service = SERVICES[(rng.next_u64() % SERVICES.len() as u64) as usize];
    let now = 1_763_874_000_000_000_000u64 + rng.next_u64() % 1_000_000_000_000;
    let trace_id = [rng.next_u64().to_be_bytes(), rng.next_u64().to_be_bytes()].concat();
    let spans = (0..spans)
        .map(|i| {
            let model = MODELS[(rng.next_u64() % MODELS.len() as u64) as usize];
            let op = OPERATIONS[(rng.next_u64() % OPERATIONS.len() as u64) as usize];
            let input = (rng.next_u64() % 4000) as i64;
            let output = (rng.next_u64() % 800) as i64;
            let start = now + i as u64 * 1_000_000;
            let error = rng.next_u64().is_multiple_of(50);
            Span {
                trace_id: trace_id.clone(),
                span_id: rng.next_u64().to_be_bytes().to_vec(),
                parent_span_id: if i == 0 { Vec::new() } else { rng.next_u64().to_be_bytes().to_vec() },
                name: format!("{op} {model}"),
                kind: span::SpanKind::Client as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + 50_000_000 + rng.next_u64() % 2_000_000_000,
                attributes: vec![
                    kv("gen_ai.operation.name", s(op)),
                    kv("gen_ai.provider.name", s(if model.starts_with("gpt") { "openai" } else { "anthropic" })),
                    kv("gen_ai.request.model", s(model)),
                    kv("gen_ai.response.model", s(model)),
                    kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(input)),
                    kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(output)),
                    kv("gen_ai.request.temperature", any_value::Value::DoubleValue(0.2)),
                    kv("user.id", s(&format!("user-{}", rng.next_u64() % 500))),
                    kv("server.address", s("api.example.com")),
                ],
                status: Some(Status {
                    code: if error { status::StatusCode::Error as i32 } else { status::StatusCode::Ok as i32 },
                    message: if error { "rate limited".into() } else { String::new() },
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(service),
            scope_spans: vec![ScopeSpans { scope: scope(), spans, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s(service)),
            kv("service.version", s("1.4.2")),
            kv("deployment.environment", s("production")),
        ],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "opentelemetry-instrumentation-openai".into(),
        version: "0.52b0".into(),
        ..Default::default()
    })
}

/// One metrics request of `points` data points: the GenAI client metrics
/// (`gen_ai.client.operation.duration` histograms, `gen_ai.client.token.usage` sums)
/// with model, operation and token-type attributes, as an instrumented app exports them.
pub fn metrics_request(rng: &mut Rng, points: usize) -> ExportMetricsServiceRequest {
    let service = SERVICES[(rng.next_u64() % SERVICES.len() as u64) as usize];
    let now = 1_763_874_000_000_000_000u64 + rng.next_u64() % 1_000_000_000_000;
    let attrs = |rng: &mut Rng| {
        let model = MODELS[(rng.next_u64() % MODELS.len() as u64) as usize];
        vec![
            kv("gen_ai.operation.name", s(OPERATIONS[(rng.next_u64() % OPERATIONS.len() as u64) as usize])),
            kv("gen_ai.provider.name", s(if model.starts_with("gpt") { "openai" } else { "anthropic" })),
            kv("gen_ai.request.model", s(model)),
            kv("gen_ai.token.type", s(if rng.next_u64().is_multiple_of(2) { "input" } else { "output" })),
            kv("server.address", s("api.example.com")),
        ]
    };
    let bounds = vec![0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
    let hist_points = (0..points / 2)
        .map(|_| {
            let counts: Vec<u64> = (0..=bounds.len()).map(|_| rng.next_u64() % 20).collect();
            HistogramDataPoint {
                attributes: attrs(rng),
                start_time_unix_nano: now - 60_000_000_000,
                time_unix_nano: now,
                count: counts.iter().sum(),
                sum: Some((rng.next_u64() % 10_000) as f64 / 10.0),
                bucket_counts: counts,
                explicit_bounds: bounds.clone(),
                ..Default::default()
            }
        })
        .collect();
    let sum_points = (0..points - points / 2)
        .map(|_| NumberDataPoint {
            attributes: attrs(rng),
            start_time_unix_nano: now - 60_000_000_000,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsInt((rng.next_u64() % 100_000) as i64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(service),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    Metric {
                        name: "gen_ai.client.operation.duration".into(),
                        unit: "s".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: hist_points,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "gen_ai.client.token.usage".into(),
                        unit: "{token}".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: sum_points,
                            aggregation_temporality: AggregationTemporality::Cumulative as i32,
                            is_monotonic: true,
                        })),
                        ..Default::default()
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// One logs request of `records` log records: GenAI events and application logs with
/// trace context, severity and ~6 attributes each.
pub fn logs_request(rng: &mut Rng, records: usize) -> ExportLogsServiceRequest {
    let service = SERVICES[(rng.next_u64() % SERVICES.len() as u64) as usize];
    let now = 1_763_874_000_000_000_000u64 + rng.next_u64() % 1_000_000_000_000;
    let trace_id = [rng.next_u64().to_be_bytes(), rng.next_u64().to_be_bytes()].concat();
    let log_records = (0..records)
        .map(|i| {
            let model = MODELS[(rng.next_u64() % MODELS.len() as u64) as usize];
            let error = rng.next_u64().is_multiple_of(40);
            LogRecord {
                time_unix_nano: now + i as u64 * 1_000_000,
                observed_time_unix_nano: now + i as u64 * 1_000_000 + 500_000,
                severity_number: if error { SeverityNumber::Error as i32 } else { SeverityNumber::Info as i32 },
                severity_text: if error { "ERROR".into() } else { "INFO".into() },
                body: Some(AnyValue {
                    value: Some(s(if error {
                        "provider returned 429: rate limited, retrying in 2s"
                    } else {
                        "completion finished"
                    })),
                }),
                attributes: vec![
                    kv("event.name", s("gen_ai.client.inference.operation.details")),
                    kv("gen_ai.request.model", s(model)),
                    kv("gen_ai.usage.input_tokens", any_value::Value::IntValue((rng.next_u64() % 4000) as i64)),
                    kv("gen_ai.usage.output_tokens", any_value::Value::IntValue((rng.next_u64() % 800) as i64)),
                    kv("user.id", s(&format!("user-{}", rng.next_u64() % 500))),
                    kv("session.id", s(&format!("session-{}", rng.next_u64() % 5000))),
                ],
                trace_id: trace_id.clone(),
                span_id: rng.next_u64().to_be_bytes().to_vec(),
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(service),
            scope_logs: vec![ScopeLogs { scope: scope(), log_records, schema_url: String::new() }],
            schema_url: String::new(),
        }],
    }
}

/// A signal the load generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadSignal {
    Traces,
    Metrics,
    Logs,
}

impl LoadSignal {
    /// The OTLP/gRPC method path and the OTLP/HTTP path.
    pub fn paths(self) -> (&'static str, &'static str) {
        match self {
            LoadSignal::Traces => ("/opentelemetry.proto.collector.trace.v1.TraceService/Export", "/v1/traces"),
            LoadSignal::Metrics => ("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export", "/v1/metrics"),
            LoadSignal::Logs => ("/opentelemetry.proto.collector.logs.v1.LogsService/Export", "/v1/logs"),
        }
    }

    /// Items (spans, data points, log records) rejected according to an encoded
    /// `Export…ServiceResponse`.
    pub fn rejected(self, response: &[u8]) -> Result<i64, prost::DecodeError> {
        Ok(match self {
            LoadSignal::Traces => {
                ExportTraceServiceResponse::decode(response)?.partial_success.map_or(0, |p| p.rejected_spans)
            }
            LoadSignal::Metrics => {
                ExportMetricsServiceResponse::decode(response)?.partial_success.map_or(0, |p| p.rejected_data_points)
            }
            LoadSignal::Logs => {
                ExportLogsServiceResponse::decode(response)?.partial_success.map_or(0, |p| p.rejected_log_records)
            }
        })
    }
}

/// `count` distinct requests of `items` items each, encoded once.
pub fn encoded_requests(signal: LoadSignal, count: usize, items: usize) -> Vec<Bytes> {
    let mut rng = Rng::new(42);
    (0..count)
        .map(|_| {
            Bytes::from(match signal {
                LoadSignal::Traces => trace_request(&mut rng, items).encode_to_vec(),
                LoadSignal::Metrics => metrics_request(&mut rng, items).encode_to_vec(),
                LoadSignal::Logs => logs_request(&mut rng, items).encode_to_vec(),
            })
        })
        .collect()
}

/// `count` distinct trace requests, encoded once.
pub fn encoded_trace_requests(count: usize, spans: usize) -> Vec<Bytes> {
    encoded_requests(LoadSignal::Traces, count, spans)
}

/// Sends already-encoded bytes as they are (shared with the forwarding exporters).
pub use otterline_forward::codec::RawCodec;

/// The real `parquet` exporter with its default settings, writing under `root`, started.
pub async fn parquet_exporter(root: &std::path::Path) -> Box<dyn otterline_core::component::Exporter> {
    parquet_exporter_with(root, "").await
}

/// A started `parquet` exporter writing under `root`, with `settings` (YAML lines, e.g.
/// `compression_level: 1`) added to its config.
pub async fn parquet_exporter_with(
    root: &std::path::Path,
    settings: &str,
) -> Box<dyn otterline_core::component::Exporter> {
    use otterline_core::component::{BuildContext, ExporterContext, ExporterFactory};
    let yaml = format!("path: \"{}\"\n{settings}", root.display());
    let node = otterline_core::config::yaml::parse("bench", &yaml).expect("config");
    let id = otterline_core::ComponentId::parse("parquet").expect("id");
    let ctx = BuildContext { id: &id, config: &node, path: "exporters.parquet".into(), mark: &node.mark };
    let mut exporter = otterline_parquet::exporter::ParquetExporterFactory.build(&ctx).expect("build");
    let health = otterline_core::health::ComponentHealth::new("exporter", "parquet".into());
    let hctx = ExporterContext { id, health: std::sync::Arc::new(health), abort: Default::default() };
    exporter.start(&hctx).await.expect("start");
    exporter
}

/// CPU time (user + system) of a process, in seconds, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // /proc reports clock ticks of USER_HZ, which is 100 on every Linux platform Rust supports.
    Some((utime + stime) / 100.0)
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A global allocator that counts live heap bytes, so memory figures are exact rather than
/// RSS estimates. A bench binary installs it with
/// `#[global_allocator] static GLOBAL: Counting = Counting;` and reads [`live_bytes`].
pub struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, std::sync::atomic::Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

/// Heap bytes live now (with [`Counting`] installed).
pub fn live_bytes() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}
