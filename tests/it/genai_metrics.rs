//! End to end: the Python SDK sends GenAI spans → `cost` → `aggregate` → `json` and
//! `parquet`. The costs on the spans and the aggregate metrics equal what this test
//! computes from the spans it sent (prices written out by hand below).

use crate::common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{attr, metrics_of, Instance};
use otterline_core::pdata::common::any_value::Value as V;
use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::metrics::{metric::Data, number_data_point};
use otterline_core::Signal;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
processors:
  cost:
  aggregate:
    window: 60s
    allowed_lateness: 5s
exporters:
  json: {path: "{{DIR}}/json"}
  parquet: {path: "{{DIR}}/archive"}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [cost, aggregate], exporters: [json, parquet]}
"#;

#[derive(serde::Deserialize, Debug)]
struct Sent {
    name: String,
    model: String,
    start: u64,
    end: u64,
    input: i64,
    cache_read: i64,
    output: i64,
    error: bool,
    quality: f64,
    satisfaction: f64,
}

/// USD by hand: gpt-4o 2.50 / 1.25 (cached) / 10.00 per million tokens;
/// claude-sonnet-4 3.00 / 0.30 (cache read) / 15.00.
fn price(s: &Sent) -> f64 {
    let (input, cached, output) = match s.model.as_str() {
        "gpt-4o" => (2.5e-6, 1.25e-6, 10e-6),
        "claude-sonnet-4" => (3e-6, 0.3e-6, 15e-6),
        m => panic!("{m}"),
    };
    (s.input - s.cache_read) as f64 * input + s.cache_read as f64 * cached + s.output as f64 * output
}

fn attr_eq(attrs: &[KeyValue], key: &str, want: &str) -> bool {
    attr(attrs, key) == Some(&V::StringValue(want.into()))
}

#[test]
fn python_genai_spans_are_priced_and_aggregated() {
    let mut inst = Instance::start(CONFIG);
    let t0: u64 = 1_763_874_000_000_000_000; // 2025-11-23T05:00:00Z, a window boundary
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_genai.py");
    let out = Command::new(common::python())
        .args([script, "--endpoint", &format!("http://127.0.0.1:{}", inst.grpc), "--t0", &t0.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sent: Vec<Sent> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent.len(), 40);
    // The window is still open: it is flushed at shutdown.
    assert!(inst.terminate().success(), "{}", inst.stderr());

    // Every span carries its cost.
    let spans = inst.spans();
    assert_eq!(spans.len(), 40);
    for s in &sent {
        let span = spans.iter().find(|x| x.start_time_unix_nano == s.start).unwrap();
        let Some(V::DoubleValue(cost)) = attr(&span.attributes, "gen_ai.usage.cost") else {
            panic!("no cost on {}", s.name)
        };
        assert!((cost - price(s)).abs() < 1e-12, "{}: {cost} vs {}", s.name, price(s));
        assert!(attr_eq(&span.attributes, "otterline.cost.model", &s.model));
    }

    // Expected aggregates per series (model, status).
    #[derive(Default)]
    struct Exp {
        calls: i64,
        input: i64,
        output: i64,
        cache_read: i64,
        cost: f64,
        durations: Vec<f64>,
        quality: Vec<f64>,
        satisfaction: Vec<f64>,
    }
    let mut exp: BTreeMap<(String, &str), Exp> = BTreeMap::new();
    for s in &sent {
        let e = exp.entry((s.model.clone(), if s.error { "ERROR" } else { "UNSET" })).or_default();
        e.calls += 1;
        e.input += s.input;
        e.output += s.output;
        e.cache_read += s.cache_read;
        e.cost += price(s);
        e.durations.push((s.end - s.start) as f64 / 1e9);
        e.quality.push(s.quality);
        e.satisfaction.push(s.satisfaction);
    }
    // Derived metrics are metrics: the json exporter files them under metrics/.
    let metrics = metrics_of(&inst.json_batches(Signal::Metrics));
    let by_name = |name: &str| metrics.iter().filter(|m| m.name == name).collect::<Vec<_>>();
    let number_points = |name: &str| {
        by_name(name)
            .into_iter()
            .flat_map(|m| match &m.data {
                Some(Data::Sum(s)) => s.data_points.clone(),
                Some(Data::Gauge(g)) => g.data_points.clone(),
                other => panic!("{name}: {other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let value = |p: &otterline_core::pdata::metrics::NumberDataPoint| match p.value {
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        Some(number_data_point::Value::AsDouble(d)) => d,
        None => f64::NAN,
    };
    let series_of = |attrs: &[KeyValue], model: &str, status: &str| {
        attr_eq(attrs, "gen_ai.request.model", model)
            && attr_eq(attrs, "otel.status_code", status)
            && attr_eq(attrs, "gen_ai.operation.name", "chat")
            && attr_eq(attrs, "span.name", &format!("chat {model}"))
    };
    for ((model, status), e) in &exp {
        let pick = |name: &str| {
            number_points(name).into_iter().filter(|p| series_of(&p.attributes, model, status)).collect::<Vec<_>>()
        };
        let calls = pick("otterline.operation.calls");
        assert_eq!(calls.len(), 1, "{model} {status}");
        assert_eq!(value(&calls[0]), e.calls as f64);
        assert_eq!((calls[0].start_time_unix_nano, calls[0].time_unix_nano), (t0, t0 + 60_000_000_000));
        let errors = value(&pick("otterline.operation.errors")[0]);
        assert_eq!(errors, if *status == "ERROR" { e.calls as f64 } else { 0.0 });
        let tokens = |ty: &str| {
            pick("otterline.token.usage")
                .into_iter()
                .filter(|p| attr_eq(&p.attributes, "gen_ai.token.type", ty))
                .map(|p| value(&p))
                .sum::<f64>()
        };
        assert_eq!(tokens("input"), e.input as f64);
        assert_eq!(tokens("output"), e.output as f64);
        assert_eq!(tokens("cache_read"), e.cache_read as f64);
        assert!((value(&pick("otterline.operation.cost")[0]) - e.cost).abs() < 1e-12);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((value(&pick("otterline.quality.score")[0]) - mean(&e.quality)).abs() < 1e-9);
        assert!((value(&pick("otterline.user.satisfaction")[0]) - mean(&e.satisfaction)).abs() < 1e-9);
        assert!((value(&pick("otterline.operation.duration.mean")[0]) - mean(&e.durations)).abs() < 1e-9);
        // Percentiles: within the sketch's 1 % of the exact order statistic.
        let summary = by_name("otterline.operation.duration.summary")
            .into_iter()
            .flat_map(|m| match &m.data {
                Some(Data::Summary(s)) => s.data_points.clone(),
                _ => vec![],
            })
            .find(|p| series_of(&p.attributes, model, status))
            .unwrap();
        let mut d = e.durations.clone();
        d.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for q in &summary.quantile_values {
            let exact = d[((q.quantile * (d.len() - 1) as f64) as usize).min(d.len() - 1)];
            assert!(
                (q.value - exact).abs() <= 0.01 * exact + 1e-12,
                "{model} {status} q{}: {} vs {exact}",
                q.quantile,
                q.value
            );
        }
    }
    // The derived metrics are archived as Parquet too (read by DuckDB).
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_archive.py");
    let out = Command::new(common::python())
        .args([
            script,
            "metric-sum",
            "--archive",
            &inst.path().join("archive").display().to_string(),
            "--name",
            "otterline.operation.calls",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["sum"].as_f64(), Some(40.0));
    assert_eq!(
        v["points"].as_u64(),
        Some(exp.len() as u64),
        "one point per series: gpt-4o, claude-sonnet-4, and claude-sonnet-4 with errors"
    );
}

/// One OTLP/JSON span of `service`, ending at `end` (unix ns), as `curl` would post it.
fn json_span(service: &str, end: u64) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"chat","kind":3,"startTimeUnixNano":"{}","endTimeUnixNano":"{end}","attributes":[{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},{{"key":"gen_ai.request.model","value":{{"stringValue":"gpt-4o"}}}}]}}]}}]}}]}}"#,
        end - 50_000_000
    )
}

/// One span dated three years ahead, posted between steady live traffic, must not stop
/// aggregation: every steady span is counted, the future one is set aside, counted and
/// logged with its service.
#[test]
fn a_span_from_a_clock_years_ahead_does_not_blind_aggregation() {
    let config = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
processors:
  aggregate: {window: 1s, allowed_lateness: 1s}
exporters:
  json: {path: "{{DIR}}/json"}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [aggregate], exporters: [json]}
"#;
    common::crypto();
    let mut inst = Instance::start(config);
    let client = reqwest::blocking::Client::new();
    let post = |body: String| {
        let r = client
            .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    };
    let now = || otterline_core::time::now_unix_nanos();
    let mut steady = 0;
    for i in 0..30 {
        if i == 10 {
            post(json_span("curl-test", now() + 3 * 365 * 86_400 * 1_000_000_000));
        }
        post(json_span("support-agent", now()));
        steady += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let calls: f64 = metrics_of(&inst.json_batches(Signal::Metrics))
        .iter()
        .filter(|m| m.name == "otterline.operation.calls")
        .flat_map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.clone(),
            _ => vec![],
        })
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(i)) => i as f64,
            Some(number_data_point::Value::AsDouble(d)) => d,
            None => 0.0,
        })
        .sum();
    assert_eq!(calls, steady as f64, "every steady span is aggregated, the future one is not");
    let log = inst.stderr();
    let warned: Vec<&str> = log.lines().filter(|l| l.contains("a span ends in the future")).collect();
    assert_eq!(warned.len(), 1, "{log}");
    assert!(warned[0].contains("service=curl-test"), "{}", warned[0]);
}
