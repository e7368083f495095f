//! The Python OpenTelemetry SDK (`opentelemetry-sdk` + `opentelemetry-exporter-otlp`,
//! from the test venv) as a client over gRPC and HTTP/protobuf.

use crate::common;

use std::process::Command;

use common::{attr, logs_of, metrics_of, Instance, BASIC};
use otterline_core::pdata::common::any_value::Value as V;
use otterline_core::pdata::metrics::{metric::Data, number_data_point};
use otterline_core::Signal;

fn run(protocol: &str) {
    let mut inst = Instance::start(BASIC);
    let endpoint = match protocol {
        "grpc" => format!("http://127.0.0.1:{}", inst.grpc),
        _ => format!("http://127.0.0.1:{}", inst.http),
    };
    let service = format!("py-{protocol}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_otel.py");
    let out = Command::new(common::python())
        .args([
            script,
            "--protocol",
            protocol,
            "--endpoint",
            &endpoint,
            "--service",
            &service,
            "--spans",
            "25",
            "--logs",
            "4",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python sender failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(inst.terminate().success(), "{}", inst.stderr());

    let spans = inst.spans();
    assert_eq!(spans.len(), 25);
    let mut seen: Vec<i64> = spans
        .iter()
        .map(|s| match attr(&s.attributes, "i") {
            Some(V::IntValue(i)) => *i,
            other => panic!("{other:?}"),
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..25).collect::<Vec<i64>>());
    for s in &spans {
        let Some(V::IntValue(i)) = attr(&s.attributes, "i") else { unreachable!() };
        assert_eq!(s.name, format!("py-span-{i}"));
        assert_eq!(s.kind, 3);
        assert_eq!(attr(&s.attributes, "gen_ai.request.model"), Some(&V::StringValue("claude-sonnet-4".into())));
        assert_eq!(attr(&s.attributes, "ratio"), Some(&V::DoubleValue(*i as f64 / 10.0)));
        assert_eq!(attr(&s.attributes, "ok"), Some(&V::BoolValue(i % 2 == 0)));
        assert_eq!(s.events[0].name, "tool_call");
    }
    let batches = inst.json_batches(Signal::Traces);
    let otterline_core::Batch::Traces(r) = &batches[0] else { panic!() };
    assert_eq!(otterline_core::pdata::service_name(r.resource_spans[0].resource.as_ref()), Some(service.as_str()));

    let logs = logs_of(&inst.json_batches(Signal::Logs));
    let bodies = common::string_bodies(&logs);
    assert_eq!(bodies, vec!["py log 0", "py log 1", "py log 2", "py log 3"]);
    assert!(logs.iter().all(|l| l.severity_number == 13));

    let metrics = metrics_of(&inst.json_batches(Signal::Metrics));
    let total: i64 = metrics
        .iter()
        .filter(|m| m.name == "py.requests")
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => match s.data_points.last().and_then(|p| p.value) {
                Some(number_data_point::Value::AsInt(v)) => v,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .max()
        .expect("py.requests metric");
    assert_eq!(total, 25, "cumulative counter after 25 adds");
}

#[test]
fn python_sdk_over_grpc() {
    run("grpc");
}

#[test]
fn python_sdk_over_http_protobuf() {
    run("http");
}
