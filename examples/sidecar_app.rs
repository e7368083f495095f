//! A small instrumented "agent" that sends its telemetry to an Otterline sidecar with the
//! Rust OpenTelemetry SDK (`opentelemetry-otlp`, OTLP/gRPC): one span per simulated LLM
//! call with GenAI attributes (model, token counts), a request counter, and a log record
//! for failures.
//!
//! ```text
//! cargo run --release                                   # Otterline on 127.0.0.1:4317
//! cargo run --example sidecar_app                       # 50 calls, then exits
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://otterline:4317 EXAMPLE_REQUESTS=0 cargo run --example sidecar_app  # forever
//! ```
//!
//! Settings (environment): `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://127.0.0.1:4317`),
//! `OTEL_SERVICE_NAME` (default `support-agent`), `EXAMPLE_REQUESTS` (default 50; 0 = run
//! until interrupted), `EXAMPLE_INTERVAL_MS` (default 100).

use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoint = env_or("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317");
    let service = env_or("OTEL_SERVICE_NAME", "support-agent");
    let requests: u64 = env_or("EXAMPLE_REQUESTS", "50").parse()?;
    let interval = Duration::from_millis(env_or("EXAMPLE_INTERVAL_MS", "100").parse()?);
    let resource = Resource::builder().with_service_name(service.clone()).build();

    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&endpoint)
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()?;
    let logs = opentelemetry_otlp::LogExporter::builder().with_tonic().with_endpoint(&endpoint).build()?;
    let metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(&endpoint).build()?;
    let tracer_provider =
        SdkTracerProvider::builder().with_resource(resource.clone()).with_batch_exporter(spans).build();
    let logger_provider =
        SdkLoggerProvider::builder().with_resource(resource.clone()).with_batch_exporter(logs).build();
    let meter_provider = SdkMeterProvider::builder().with_resource(resource).with_periodic_exporter(metrics).build();

    let tracer = tracer_provider.tracer("sidecar-app");
    let logger = logger_provider.logger("sidecar-app");
    let calls = meter_provider.meter("sidecar-app").u64_counter("agent.calls").build();
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4"];
    eprintln!("sidecar_app: sending to {endpoint} as {service}");
    let mut i: u64 = 0;
    while requests == 0 || i < requests {
        let model = models[(i % models.len() as u64) as usize];
        let input = 200 + (i * 37) % 900;
        let output = 50 + (i * 13) % 400;
        let mut span = tracer
            .span_builder(format!("chat {model}"))
            .with_kind(SpanKind::Client)
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", model),
                KeyValue::new("gen_ai.usage.input_tokens", input as i64),
                KeyValue::new("gen_ai.usage.output_tokens", output as i64),
                KeyValue::new("user.id", format!("user-{}", i % 7)),
            ])
            .start(&tracer);
        let failed = i % 25 == 24;
        if failed {
            span.set_status(Status::error("provider timeout"));
            let mut rec = logger.create_log_record();
            rec.set_severity_number(Severity::Error);
            rec.set_severity_text("ERROR");
            rec.set_body(AnyValue::String(format!("call {i} to {model} timed out").into()));
            logger.emit(rec);
        }
        span.end();
        calls.add(1, &[KeyValue::new("model", model), KeyValue::new("failed", failed)]);
        i += 1;
        tokio::time::sleep(interval).await;
    }
    tracer_provider.shutdown()?;
    logger_provider.shutdown()?;
    meter_provider.shutdown()?;
    eprintln!("sidecar_app: sent {i} calls");
    Ok(())
}
