//! Hand-written OTLP/JSON fixtures posted over HTTP arrive exactly as written.
//!
//! The canonical fixtures are compared to the written JSON lines as JSON values
//! (key order aside), so this does not depend on Otterline's own decoder. The
//! lenient fixture (snake_case keys, numbers for 64-bit ints, enum names, upper-case
//! hex, an unknown field) must produce the same line as its canonical twin.

use crate::common;

use std::io::Write;

use common::{Instance, BASIC};
use otterline_core::Signal;
use serde_json::Value;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn post(inst: &Instance, path: &str, body: Vec<u8>, content_type: &str, encoding: Option<&str>) -> (u16, String) {
    let client = reqwest::blocking::Client::new();
    let mut req =
        client.post(format!("http://127.0.0.1:{}{path}", inst.http)).header("Content-Type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let resp = req.send().expect("post");
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}

/// The raw JSON lines written for `signal`, as values.
fn lines(inst: &Instance, signal: Signal) -> Vec<Value> {
    let dir = inst.path().join("json").join(signal.as_str());
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            common::read_text(f)
                .lines()
                .map(|l| serde_json::from_str(l).expect("valid JSON line"))
                .collect::<Vec<Value>>()
        })
        .collect()
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

#[test]
fn canonical_fixtures_round_trip_exactly() {
    let mut inst = Instance::start(BASIC);
    for (path, file) in [("/v1/traces", "traces.json"), ("/v1/metrics", "metrics.json"), ("/v1/logs", "logs.json")] {
        let (status, body) = post(&inst, path, fixture(file).into_bytes(), "application/json", None);
        assert_eq!((status, body.as_str()), (200, "{}"), "{file}");
    }
    assert!(inst.terminate().success());
    assert_eq!(lines(&inst, Signal::Traces), vec![value(&fixture("traces.json"))]);
    assert_eq!(lines(&inst, Signal::Metrics), vec![value(&fixture("metrics.json"))]);
    assert_eq!(lines(&inst, Signal::Logs), vec![value(&fixture("logs.json"))]);
}

#[test]
fn lenient_json_and_every_content_encoding() {
    let mut inst = Instance::start(BASIC);
    let lenient = fixture("traces_lenient.json").into_bytes();
    assert_eq!(post(&inst, "/v1/traces", lenient.clone(), "application/json; charset=utf-8", None).0, 200);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&lenient).unwrap();
    assert_eq!(post(&inst, "/v1/traces", gz.finish().unwrap(), "application/json", Some("gzip")).0, 200);

    let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zl.write_all(&lenient).unwrap();
    assert_eq!(post(&inst, "/v1/traces", zl.finish().unwrap(), "application/json", Some("deflate")).0, 200);

    let zs = zstd::encode_all(&lenient[..], 3).unwrap();
    assert_eq!(post(&inst, "/v1/traces", zs, "application/json", Some("zstd")).0, 200);

    assert!(inst.terminate().success());
    let canonical = value(&fixture("traces.json"));
    assert_eq!(lines(&inst, Signal::Traces), vec![canonical; 4]);
}

#[test]
fn protobuf_partial_success_reports_rejected_spans() {
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let mut inst = Instance::start(BASIC);
    let good = Span { trace_id: vec![1; 16], span_id: vec![2; 8], name: "good".into(), ..Default::default() };
    let bad = Span { trace_id: vec![1; 3], span_id: vec![2; 8], name: "bad".into(), ..Default::default() };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans: vec![good, bad], ..Default::default() }],
            ..Default::default()
        }],
    };
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
        .header("Content-Type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = ExportTraceServiceResponse::decode(resp.bytes().unwrap()).unwrap();
    let ps = body.partial_success.expect("partial success");
    assert_eq!(ps.rejected_spans, 1);
    assert!(ps.error_message.contains("trace_id must be 16 bytes"), "{}", ps.error_message);

    // The same over JSON: the response is JSON too.
    let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":"0102030405060708","name":"no-trace-id"}]}]}]}"#;
    let (status, text) = post(&inst, "/v1/traces", json.into(), "application/json", None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");

    assert!(inst.terminate().success());
    let names: Vec<String> = inst.spans().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["good"]);
}
