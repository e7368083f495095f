//! Benchmark support: realistic pre-encoded OTLP requests, a tonic codec that sends
//! bytes as they are, and process CPU/memory readings from `/proc`.

pub mod nab;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
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
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(service)),
                    kv("service.version", s("1.4.2")),
                    kv("deployment.environment", s("production")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry-instrumentation-openai".into(),
                    version: "0.52b0".into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// `count` distinct requests, encoded once.
pub fn encoded_trace_requests(count: usize, spans: usize) -> Vec<Bytes> {
    let mut rng = Rng::new(42);
    (0..count).map(|_| Bytes::from(trace_request(&mut rng, spans).encode_to_vec())).collect()
}

/// Sends already-encoded bytes as they are (shared with the forwarding exporters).
pub use otterline_forward::codec::RawCodec;

/// The real `parquet` exporter with its default settings, writing under `root`, started.
pub async fn parquet_exporter(root: &std::path::Path) -> Box<dyn otterline_core::component::Exporter> {
    use otterline_core::component::{BuildContext, ExporterContext, ExporterFactory};
    let node = otterline_core::config::yaml::parse("bench", &format!("path: \"{}\"", root.display())).expect("config");
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
