//! End to end: a Python SDK app sends steady GenAI traffic, then a latency spike, then an
//! error burst, then a switch to an expensive model. `cost` → `aggregate` → `anomaly` →
//! `alert` makes three episodes, each alerted once and each resolved after recovery, and
//! nothing during the steady phases.

use crate::common;

use std::process::Command;

use common::Instance;
use serde_json::Value;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
processors:
  cost:
  aggregate:
    window: 60s
    allowed_lateness: 0s
    # An operation-level series (no model dimension): a switch of model shows as a change
    # in cost per call instead of a new series.
    dimensions: [service.name, gen_ai.operation.name, status]
  anomaly:
exporters:
  alert:
    file: {path: "{{DIR}}/alerts.ndjson"}
    history_path: "{{DIR}}/history.ndjson"
    group_wait: 0s
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [cost, aggregate, anomaly], exporters: [alert]}
"#;

#[test]
fn three_incidents_three_episodes_each_alerted_once_and_resolved() {
    let mut inst = Instance::start(CONFIG);
    let t0: u64 = 1_763_874_000_000_000_000;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_phases.py");
    let out = Command::new(common::python())
        .args([script, "--endpoint", &format!("http://127.0.0.1:{}", inst.grpc), "--t0", &t0.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(inst.terminate().success(), "{}", inst.stderr());

    let history: Vec<Value> = common::read_text(&inst.path().join("history.ndjson"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fired: Vec<&Value> = history.iter().filter(|e| e["state"] == "fired").collect();
    let resolved: Vec<&Value> = history.iter().filter(|e| e["state"] == "resolved").collect();
    let kinds: Vec<&str> = fired.iter().map(|e| e["type"].as_str().unwrap()).collect();
    eprintln!(
        "history: {:?}",
        history.iter().map(|e| format!("{} {} {}", e["state"], e["type"], e["series"])).collect::<Vec<_>>()
    );
    assert_eq!(kinds, vec!["latency", "error_rate", "cost_per_call"], "one episode per incident, in order");
    assert_eq!(resolved.len(), 3, "every episode resolved after recovery");
    for f in &fired {
        assert!(resolved.iter().any(|r| r["episode_id"] == f["episode_id"]), "episode {} resolved", f["episode_id"]);
    }
    // Each alerted once: the NDJSON channel has one line per fired and per resolved alert.
    let lines = common::read_text(&inst.path().join("alerts.ndjson")).lines().count();
    assert_eq!(
        lines,
        history
            .iter()
            .filter(|e| e["state"] == "fired" || e["state"] == "resolved" || e["state"] == "escalated")
            .count()
    );
    // The steady phases (94 windows) raised nothing: 0 false alerts per series per day.
    let steady_windows: u64 = plan["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0] == "steady")
        .map(|p| p[2].as_u64().unwrap() - p[1].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(steady_windows, 100);
    assert_eq!(fired.len(), 3);
}
