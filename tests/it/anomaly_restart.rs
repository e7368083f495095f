//! The anomaly processor's state survives a restart of the real binary: a baseline built
//! before SIGTERM is used right after the restart, so an anomaly is detected at once.

use crate::common;

use common::{attr, logs_of, Instance};
use otterline_core::pdata::common::any_value::Value as V;
use otterline_core::Signal;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
processors:
  aggregate:
    window: 1s
    allowed_lateness: 0s
    dimensions: [service.name, span.name, status]
  anomaly:
    state_path: "{{DIR}}/state/anomaly.state"
    warmup_windows: 5
exporters:
  json: {path: "{{DIR}}/json"}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [aggregate, anomaly], exporters: [json]}
"#;

const T0: u64 = 1_763_874_000_000_000_000;
const W: u64 = 1_000_000_000;

/// 20 spans per window (1 s windows, synthetic past time) with the given latency.
fn post_windows(inst: &Instance, windows: std::ops::Range<u64>, latency_ms: u64) {
    let mut spans = Vec::new();
    for w in windows {
        for i in 0..20u64 {
            let end = T0 + w * W + 10_000_000 + i * 40_000_000;
            let dur = (latency_ms * 1_000_000) * (90 + (i * 37) % 21) / 100;
            spans.push(format!(
                r#"{{"traceId":"{:032x}","spanId":"{:016x}","name":"chat","kind":3,"startTimeUnixNano":"{}","endTimeUnixNano":"{}","status":{{"code":1}}}}"#,
                w + 1,
                w * 100 + i + 1,
                end - dur,
                end
            ));
        }
    }
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"agent"}}}}]}},"scopeSpans":[{{"spans":[{}]}}]}}]}}"#,
        spans.join(",")
    );
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn latency_events(inst: &Instance) -> usize {
    logs_of(&inst.json_batches(Signal::Logs))
        .iter()
        .filter(|l| {
            l.event_name == "otterline.anomaly"
                && attr(&l.attributes, "otterline.anomaly.type") == Some(&V::StringValue("latency".into()))
        })
        .count()
}

#[test]
fn baselines_survive_sigterm_and_restart() {
    let mut first = Instance::start(CONFIG);
    // Twenty steady windows (one post per window so that each closes the one before).
    for w in 0..20 {
        post_windows(&first, w..w + 1, 100);
    }
    assert!(first.terminate().success(), "{}", first.stderr());
    assert_eq!(latency_events(&first), 0, "steady traffic raised nothing");
    assert!(first.path().join("state/anomaly.state").exists());

    // Same directory, new process: the spike right after the restart is detected.
    let dir = first.path().to_path_buf();
    let config = CONFIG.replace("{{DIR}}", &dir.display().to_string());
    let mut second = Instance::start(&config);
    assert!(second.stderr().contains("anomaly: restored baselines and open episodes"), "{}", second.stderr());
    for w in 20..24 {
        post_windows(&second, w..w + 1, 500);
    }
    post_windows(&second, 24..25, 100);
    assert!(second.terminate().success(), "{}", second.stderr());
    let events = logs_of(&common::read_json_dir(&dir.join("json/logs"), Signal::Logs));
    let fired: Vec<_> = events.iter().filter(|l| l.event_name == "otterline.anomaly").collect();
    assert!(!fired.is_empty(), "no anomaly after the restart; stderr:\n{}", second.stderr());
    let first_event = fired[0];
    assert_eq!(attr(&first_event.attributes, "otterline.anomaly.type"), Some(&V::StringValue("latency".into())));
    // Detected within two windows of the spike (windows 20 and 21 are the first two).
    assert!(first_event.time_unix_nano <= T0 + 22 * W, "detected at {}", (first_event.time_unix_nano - T0) / W);
}
