//! Malformed, oversize and unsupported requests get clear errors, lose nothing
//! else, and leave the server healthy.

use crate::common;

use std::io::Write;

use common::Instance;
use otterline_core::Signal;
use prost::Message;

const SMALL_LIMIT: &str = r#"
receivers:
  otlp:
    decode_memory_mib: 16
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}", max_recv_msg_size_mib: 1}
      http: {endpoint: "127.0.0.1:{{HTTP}}", max_request_body_size: 64KiB}
exporters:
  json: {path: "{{DIR}}/json"}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    all: {receivers: [otlp], exporters: [json]}
"#;

struct Resp {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

fn send(
    inst: &Instance,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    let client = reqwest::blocking::Client::new();
    let url = format!("http://127.0.0.1:{}{path}", inst.http);
    let mut req = client.request(method.parse().unwrap(), url).body(body);
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let r = req.send().expect("request");
    Resp {
        status: r.status().as_u16(),
        content_type: r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default(),
        body: r.bytes().unwrap().to_vec(),
    }
}

fn json_message(r: &Resp) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&r.body)));
    v["message"].as_str().unwrap().to_string()
}

fn valid_request() -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    let spans = (0..50)
        .map(|i| Span {
            trace_id: vec![7; 16],
            span_id: vec![i as u8 + 1; 8],
            name: format!("span with a reasonably long name {i}"),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[test]
fn http_rejections_have_the_right_status_and_reason() {
    let mut inst = Instance::start(SMALL_LIMIT);

    // Truncated protobuf: 400 with a google.rpc.Status in protobuf.
    let mut truncated = valid_request();
    truncated.truncate(truncated.len() - 7);
    let r = send(&inst, "POST", "/v1/traces", Some("application/x-protobuf"), None, truncated);
    assert_eq!(r.status, 400);
    assert_eq!(r.content_type, "application/x-protobuf");
    let st = tonic_types::Status::decode(&r.body[..]).expect("google.rpc.Status");
    assert_eq!(st.code, 3, "INVALID_ARGUMENT");
    assert!(st.message.starts_with("invalid OTLP/protobuf traces request:"), "{}", st.message);

    // Invalid JSON: 400 with the parser's reason, in JSON.
    let r = send(&inst, "POST", "/v1/logs", Some("application/json"), None, b"{\"resourceLogs\": [".to_vec());
    assert_eq!(r.status, 400);
    assert!(
        json_message(&r).starts_with("invalid OTLP/JSON logs request: invalid JSON: EOF while parsing"),
        "{}",
        json_message(&r)
    );

    // Valid JSON, wrong shape: the path of the bad value is named.
    let r = send(
        &inst,
        "POST",
        "/v1/metrics",
        Some("application/json"),
        None,
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"gauge":{"dataPoints":[{"timeUnixNano":"soon"}]}}]}]}]}"#
            .to_vec(),
    );
    assert_eq!(r.status, 400);
    assert_eq!(json_message(&r), "invalid OTLP/JSON metrics request: resourceMetrics[0].scopeMetrics[0].metrics[0].gauge.dataPoints[0].timeUnixNano: expected an unsigned 64-bit integer, found \"soon\"");

    // Wrong and missing content types: 415.
    let r = send(&inst, "POST", "/v1/traces", Some("text/plain"), None, b"hello".to_vec());
    assert_eq!(r.status, 415);
    assert!(json_message(&r).contains("unsupported Content-Type \"text/plain\""));
    let r = send(&inst, "POST", "/v1/traces", None, None, b"hello".to_vec());
    assert_eq!(r.status, 415);
    assert!(json_message(&r).contains("missing Content-Type"));

    // Unsupported content encoding: 415.
    let r = send(&inst, "POST", "/v1/traces", Some("application/x-protobuf"), Some("br"), valid_request());
    assert_eq!(r.status, 415);
    assert!(st_message(&r).contains("unsupported Content-Encoding \"br\""));

    // Oversize body: 413.
    let big = vec![b' '; 100 * 1024];
    let r = send(&inst, "POST", "/v1/traces", Some("application/json"), None, big);
    assert_eq!(r.status, 413);
    assert!(json_message(&r).contains("exceeds max_request_body_size (65536 bytes)"));

    // A gzip bomb (a few KiB that expand to 50 MiB) is cut off at the limit: 413.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 50 * 1024 * 1024]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb itself fits the limit");
    let r = send(&inst, "POST", "/v1/traces", Some("application/json"), Some("gzip"), bomb);
    assert_eq!(r.status, 413);
    assert!(json_message(&r).contains("decompressed request body exceeds max_request_body_size"));

    // Corrupt gzip: 400.
    let r = send(&inst, "POST", "/v1/traces", Some("application/json"), Some("gzip"), b"not gzip at all".to_vec());
    assert_eq!(r.status, 400);
    assert!(json_message(&r).contains("invalid gzip body"));

    // Wrong method: 405. Unknown path: 404.
    assert_eq!(send(&inst, "GET", "/v1/traces", None, None, vec![]).status, 405);
    assert_eq!(send(&inst, "PUT", "/v1/logs", Some("application/json"), None, b"{}".to_vec()).status, 405);
    let r = send(&inst, "POST", "/v2/traces", Some("application/json"), None, b"{}".to_vec());
    assert_eq!(r.status, 404);
    assert!(json_message(&r).contains("unknown path"));

    // Still healthy, and a good request after all that still works.
    assert_eq!(inst.health().unwrap().0, 200);
    assert_eq!(send(&inst, "POST", "/v1/traces", Some("application/x-protobuf"), None, valid_request()).status, 200);
    assert!(inst.terminate().success());
    assert_eq!(inst.spans().len(), 50, "only the good request was written");
    assert!(common::logs_of(&inst.json_batches(Signal::Logs)).is_empty());
}

fn st_message(r: &Resp) -> String {
    if r.content_type == "application/x-protobuf" {
        tonic_types::Status::decode(&r.body[..]).unwrap().message
    } else {
        json_message(r)
    }
}

#[test]
fn grpc_oversize_and_empty_requests() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    let mut inst = Instance::start(SMALL_LIMIT);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", inst.grpc)).await.unwrap();
        // 2 MiB of attributes against a 1 MiB limit.
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![1; 8],
            name: "x".repeat(2 * 1024 * 1024),
            ..Default::default()
        };
        let big = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span], ..Default::default() }],
                ..Default::default()
            }],
        };
        let err = client.export(big).await.unwrap_err();
        // RESOURCE_EXHAUSTED without RetryInfo: not retryable per the OTLP spec (tonic's own
        // OUT_OF_RANGE would make senders retry it forever).
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
        assert!(err.metadata().get_bin("grpc-status-details-bin").is_none(), "no RetryInfo");
        assert!(err.message().contains("message length too large"), "{}", err.message());

        // Within the size limit but decoding to more than the decode budget (400,000 empty
        // spans: 800 KB, over 16 MiB decoded): refused before decoding, not retryable.
        let empty = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![Span::default(); 400_000], ..Default::default() }],
                ..Default::default()
            }],
        };
        let err = client.export(empty).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
        assert!(err.metadata().get_bin("grpc-status-details-bin").is_none(), "no RetryInfo");
        assert!(err.message().contains("more than decode_memory_mib (16 MiB)"), "{}", err.message());

        // Bytes that are not an OTLP message: INVALID_ARGUMENT with the decoder's reason
        // (not INTERNAL, which a client could take for a server fault); an unknown method
        // of a known service: UNIMPLEMENTED.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", inst.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut raw = tonic::client::Grpc::new(channel);
        let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
        raw.ready().await.unwrap();
        let garbage = tonic::codegen::Bytes::from_static(b"\x0a\xff\xff\xff\xff");
        let err = raw
            .unary(tonic::Request::new(garbage), export.parse().unwrap(), otterline_bench::RawCodec)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.message().contains("malformed OTLP protobuf"), "{}", err.message());
        raw.ready().await.unwrap();
        let nope = "/opentelemetry.proto.collector.trace.v1.TraceService/Nope";
        let err = raw
            .unary(tonic::Request::new(tonic::codegen::Bytes::new()), nope.parse().unwrap(), otterline_bench::RawCodec)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented, "{err}");

        // Invalid ids: partial success, nothing invalid is written.
        let bad = Span { trace_id: vec![1; 15], span_id: vec![1; 8], name: "bad".into(), ..Default::default() };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![bad], ..Default::default() }],
                ..Default::default()
            }],
        };
        let resp = client.export(req).await.unwrap().into_inner();
        assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);
    });
    assert_eq!(inst.health().unwrap().0, 200);
    let status = inst.terminate();
    assert!(status.success(), "{status:?}\n{}", inst.stderr());
    assert!(inst.spans().is_empty());
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A protobuf length-delimited field: `tag` byte, length, payload.
fn ld(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    prost::encoding::encode_varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// Eight concurrent requests of about 18 MB (the default body limit is 20 MiB) in each of
/// the shapes that decode to the most memory per byte, at the default limits: OTLP/JSON
/// (20,000 attributes of 50-value arrays; 6M empty spans; 9M numbers) and protobuf (9M
/// empty spans; 9M empty values in one array; 9M empty data points). For each shape the
/// peak memory stays under 256 MiB and the process stays up; every answer is a 200, a
/// retryable 503 (the decode budget is in use) or a 413 saying the request would need
/// more than the whole budget.
#[test]
fn decoding_worst_case_requests_stays_within_the_memory_budget() {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    common::crypto();
    let config = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
exporters:
  nop: {}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [nop]}
    metrics: {receivers: [otlp], exporters: [nop]}
"#;
    let mut inst = Instance::start(config);
    let attrs: Vec<String> = (0..20_000)
        .map(|i| {
            format!(
                r#"{{"key":"k{i}","value":{{"arrayValue":{{"values":[{}]}}}}}}"#,
                vec![r#"{"intValue":"1"}"#; 50].join(",")
            )
        })
        .collect();
    let arrays = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{}]}}]}}]}}]}}"#,
        attrs.join(",")
    );
    let empty_spans =
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#, vec!["{}"; 6_000_000].join(","));
    let numbers = format!(r#"{{"resourceSpans":[{}]}}"#, vec!["0"; 9_000_000].join(","));
    let n = 9_000_000;
    // Request → ResourceSpans → ScopeSpans → spans (`12 00`: an empty span).
    let pb_spans = ld(0x0a, &ld(0x12, &[0x12, 0x00].repeat(n)));
    // … → one span → attribute {key "k", value: {arrayValue: {values: [`0a 00` …]}}}.
    let kv = [ld(0x0a, b"k"), ld(0x12, &ld(0x2a, &[0x0a, 0x00].repeat(n)))].concat();
    let pb_values = ld(0x0a, &ld(0x12, &ld(0x12, &ld(0x4a, &kv))));
    // Request → ResourceMetrics → ScopeMetrics → Metric → gauge → points (`0a 00`).
    let pb_points = ld(0x0a, &ld(0x12, &ld(0x12, &ld(0x2a, &[0x0a, 0x00].repeat(n)))));
    let shapes: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        ("JSON 50-value arrays", "traces", "application/json", arrays.into_bytes()),
        ("JSON empty spans", "traces", "application/json", empty_spans.into_bytes()),
        ("JSON numbers", "traces", "application/json", numbers.into_bytes()),
        ("protobuf empty spans", "traces", "application/x-protobuf", pb_spans),
        ("protobuf empty values", "traces", "application/x-protobuf", pb_values),
        ("protobuf empty points", "metrics", "application/x-protobuf", pb_points),
    ];
    let port = inst.http;
    for (name, signal, content_type, body) in shapes {
        assert!(body.len() > 17_000_000 && body.len() < 20 * 1024 * 1024, "{name}: {}", body.len());
        // Peak memory from here on (Linux: writing 5 to clear_refs resets VmHWM).
        std::fs::write(format!("/proc/{}/clear_refs", inst.pid()), "5").unwrap();
        let body = std::sync::Arc::new(body);
        let senders: Vec<_> = (0..8)
            .map(|_| {
                let body = body.clone();
                std::thread::spawn(move || {
                    let r = reqwest::blocking::Client::builder()
                        .timeout(std::time::Duration::from_secs(60))
                        .build()
                        .unwrap()
                        .post(format!("http://127.0.0.1:{port}/v1/{signal}"))
                        .header("Content-Type", content_type)
                        .body(body.as_slice().to_vec())
                        .send()
                        .unwrap();
                    let retry = r.headers().get("retry-after").is_some();
                    (r.status().as_u16(), retry, r.text().unwrap_or_default())
                })
            })
            .collect();
        let answers: Vec<(u16, bool, String)> = senders.into_iter().map(|h| h.join().unwrap()).collect();
        let peak_mib = peak_kib(inst.pid()) / 1024;
        let codes: Vec<u16> = answers.iter().map(|a| a.0).collect();
        eprintln!("{name}: peak {peak_mib} MiB; answers {codes:?}");
        for (status, retry, text) in &answers {
            match status {
                200 => {}
                503 => assert!(retry, "{name}: a 503 says when to retry"),
                413 => assert!(text.contains("decode_memory_mib") || text.contains("more memory"), "{name}: {text}"),
                _ => panic!("{name}: {status} {text}"),
            }
        }
        assert!(inst.health().is_some_and(|(c, _)| c == 200), "{name}: the process is alive and ready");
        assert!(peak_mib < 256, "{name}: peak {peak_mib} MiB");
    }
    // An ordinary request of about the same size (40,000 spans of 10 attributes) is decoded.
    let kv = |i: usize| KeyValue {
        key: format!("app.attribute.{i}"),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("value number {i}"))) }),
        ..Default::default()
    };
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "chat gpt-4o".into(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: (0..10).map(kv).collect(),
        ..Default::default()
    };
    let ordinary = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![span; 40_000], ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    assert!(ordinary.len() > 15_000_000 && ordinary.len() < 20 * 1024 * 1024, "{}", ordinary.len());
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("Content-Type", "application/x-protobuf")
        .body(ordinary)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(inst.terminate().success());
}
