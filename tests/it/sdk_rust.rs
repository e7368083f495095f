//! The Rust OpenTelemetry SDK (`opentelemetry-otlp`) as a client, over gRPC,
//! HTTP/protobuf and HTTP/JSON: the exact items it sends arrive in the JSON files.

use crate::common;

use common::{attr, logs_of, metrics_of, Instance, BASIC};
use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Link, Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use otterline_core::pdata::common::any_value::Value as V;
use otterline_core::pdata::metrics::metric::Data;
use otterline_core::pdata::metrics::number_data_point;
use otterline_core::Signal;

fn resource(name: &str) -> Resource {
    Resource::builder().with_service_name(name.to_string()).build()
}

/// Emits a fixed set of spans, logs and metrics through the SDK providers, then shuts them down.
fn emit(traces: SdkTracerProvider, logs: SdkLoggerProvider, metrics: SdkMeterProvider) {
    let tracer = traces.tracer("otterline-test");
    let mut first_ctx = None;
    for i in 0..5i64 {
        let mut b = tracer.span_builder(format!("chat {i}")).with_kind(SpanKind::Client).with_attributes(vec![
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.usage.input_tokens", i * 10),
            KeyValue::new("cached", i % 2 == 0),
            KeyValue::new("temperature", 0.5),
            KeyValue::new("tags", Value::Array(Array::String(vec!["a".into(), "b".into()]))),
        ]);
        if let Some(ctx) = &first_ctx {
            b = b.with_links(vec![Link::with_context(Clone::clone(ctx))]);
        }
        let mut span = b.start(&tracer);
        span.add_event("prompt", vec![KeyValue::new("chars", 42i64)]);
        if i == 4 {
            span.set_status(Status::error("provider timeout"));
        }
        if i == 0 {
            first_ctx = Some(span.span_context().clone());
        }
        span.end();
    }
    let logger = logs.logger("otterline-test");
    for i in 0..3i64 {
        let mut rec = logger.create_log_record();
        rec.set_body(LogValue::String(format!("log {i}").into()));
        rec.set_severity_number(Severity::Warn);
        rec.set_severity_text("WARN");
        rec.add_attribute("n", i);
        logger.emit(rec);
    }
    let meter = metrics.meter("otterline-test");
    let counter = meter.u64_counter("requests").build();
    let hist = meter.f64_histogram("latency").with_unit("s").build();
    for v in [0.1, 0.2, 0.7] {
        counter.add(1, &[KeyValue::new("route", "/chat")]);
        hist.record(v, &[KeyValue::new("route", "/chat")]);
    }
    traces.shutdown().expect("trace provider shutdown");
    logs.shutdown().expect("logger provider shutdown");
    metrics.shutdown().expect("meter provider shutdown");
}

fn check(inst: &Instance, service: &str) {
    let batches = inst.json_batches(Signal::Traces);
    let spans = common::spans_of(&batches);
    assert_eq!(spans.len(), 5, "{spans:?}");
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for i in 0..5 {
        assert!(names.contains(&format!("chat {i}").as_str()), "{names:?}");
    }
    // The resource came through.
    let otterline_core::Batch::Traces(r) = &batches[0] else { panic!() };
    assert_eq!(otterline_core::pdata::service_name(r.resource_spans[0].resource.as_ref()), Some(service));
    let s3 = spans.iter().find(|s| s.name == "chat 3").unwrap();
    assert_eq!(s3.kind, 3, "client");
    assert_eq!(attr(&s3.attributes, "gen_ai.request.model"), Some(&V::StringValue("gpt-4o".into())));
    assert_eq!(attr(&s3.attributes, "gen_ai.usage.input_tokens"), Some(&V::IntValue(30)));
    assert_eq!(attr(&s3.attributes, "cached"), Some(&V::BoolValue(false)));
    assert_eq!(attr(&s3.attributes, "temperature"), Some(&V::DoubleValue(0.5)));
    let Some(V::ArrayValue(tags)) = attr(&s3.attributes, "tags") else { panic!("tags") };
    assert_eq!(tags.values.len(), 2);
    assert_eq!(s3.events.len(), 1);
    assert_eq!(s3.events[0].name, "prompt");
    assert_eq!(attr(&s3.events[0].attributes, "chars"), Some(&V::IntValue(42)));
    let s0 = spans.iter().find(|s| s.name == "chat 0").unwrap();
    assert_eq!(s3.links.len(), 1);
    assert_eq!(s3.links[0].span_id, s0.span_id);
    assert_eq!(s3.links[0].trace_id, s0.trace_id);
    let s4 = spans.iter().find(|s| s.name == "chat 4").unwrap();
    let st = s4.status.as_ref().unwrap();
    assert_eq!((st.code, st.message.as_str()), (2, "provider timeout"));
    assert!(spans
        .iter()
        .all(|s| s.trace_id.len() == 16 && s.span_id.len() == 8 && s.end_time_unix_nano >= s.start_time_unix_nano));

    let logs = logs_of(&inst.json_batches(Signal::Logs));
    assert_eq!(logs.len(), 3, "{logs:?}");
    let bodies = common::string_bodies(&logs);
    assert_eq!(bodies, vec!["log 0", "log 1", "log 2"]);
    assert!(logs.iter().all(|l| l.severity_number == 13 && l.severity_text == "WARN"));

    let metrics = metrics_of(&inst.json_batches(Signal::Metrics));
    let requests = metrics.iter().find(|m| m.name == "requests").expect("requests metric");
    let Some(Data::Sum(sum)) = &requests.data else { panic!("{requests:?}") };
    assert!(sum.is_monotonic);
    assert_eq!(sum.data_points.len(), 1);
    assert_eq!(sum.data_points[0].value, Some(number_data_point::Value::AsInt(3)));
    let latency = metrics.iter().find(|m| m.name == "latency").expect("latency metric");
    assert_eq!(latency.unit, "s");
    let Some(Data::Histogram(h)) = &latency.data else { panic!("{latency:?}") };
    assert_eq!(h.data_points[0].count, 3);
    assert!((h.data_points[0].sum.unwrap() - 1.0).abs() < 1e-9);
}

#[test]
fn rust_sdk_over_grpc_with_gzip() {
    let mut inst = Instance::start(BASIC);
    let endpoint = format!("http://127.0.0.1:{}", inst.grpc);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let (t, l, m) = rt.block_on(async {
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&endpoint)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .unwrap();
        let logs = opentelemetry_otlp::LogExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap();
        let metrics =
            opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap();
        (
            SdkTracerProvider::builder().with_resource(resource("rust-grpc")).with_batch_exporter(spans).build(),
            SdkLoggerProvider::builder().with_resource(resource("rust-grpc")).with_batch_exporter(logs).build(),
            SdkMeterProvider::builder().with_resource(resource("rust-grpc")).with_periodic_exporter(metrics).build(),
        )
    });
    // The SDK's batch processors run on their own threads; tonic needs the runtime alive.
    let _guard = rt.enter();
    emit(t, l, m);
    assert!(inst.terminate().success());
    check(&inst, "rust-grpc");
}

fn http_run(protocol: opentelemetry_otlp::Protocol, service: &str) {
    let mut inst = Instance::start(BASIC);
    let base = format!("http://127.0.0.1:{}", inst.http);
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{base}/v1/traces"))
        .build()
        .unwrap();
    let logs = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{base}/v1/logs"))
        .build()
        .unwrap();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_headers(Default::default())
        .build()
        .unwrap();
    emit(
        SdkTracerProvider::builder().with_resource(resource(service)).with_batch_exporter(spans).build(),
        SdkLoggerProvider::builder().with_resource(resource(service)).with_batch_exporter(logs).build(),
        SdkMeterProvider::builder().with_resource(resource(service)).with_periodic_exporter(metrics).build(),
    );
    assert!(inst.terminate().success());
    check(&inst, service);
}

#[test]
fn rust_sdk_over_http_protobuf() {
    http_run(opentelemetry_otlp::Protocol::HttpBinary, "rust-http-proto");
}

#[test]
fn rust_sdk_over_http_json() {
    http_run(opentelemetry_otlp::Protocol::HttpJson, "rust-http-json");
}
