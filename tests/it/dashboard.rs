//! The `dashboard` extension against the real binary: every API endpoint on a pipeline fed
//! known traffic by the Rust OpenTelemetry SDK, long ranges from the Parquet archive, and
//! the page itself in headless Chromium (driven over the DevTools protocol) on the embedded
//! default pipeline while traffic flows.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::{http_get, Instance};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::Value;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
  hostmetrics:
    collection_interval: 1s
    initial_delay: 0s
    scrapers: {cpu: {}, memory: {}, load: {}, network: {}}
processors:
  cost: {}
  aggregate: {window: 1s, allowed_lateness: 0s}
  anomaly:
    budgets:
      - {name: rag-p95, metric: p95_latency, max: 0.2, per: window, scope: {service: rag}, mode: strict}
  health: {}
exporters:
  json: {path: "{{DIR}}/json", flush_interval: 100ms}
  parquet: {path: "{{DIR}}/parquet", flush_interval: 1s}
  otlp_http/down:
    endpoint: "http://127.0.0.1:{{DOWN}}"
    retry_on_failure: {initial_interval: 50ms, max_interval: 100ms, max_elapsed_time: 300ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
  dashboard:
    endpoint: "127.0.0.1:{{DASHBOARD}}"
    resolution: 1s
    retention: {{RETENTION}}
    summary_window: 5s
    update_interval: 500ms
    archive: "{{DIR}}/parquet"
service:
  extensions: [health_check, dashboard]
  pipelines:
    traces: {receivers: [otlp], processors: [cost, aggregate, anomaly, health], exporters: [json, parquet, otlp_http/down]}
    metrics/host: {receivers: [hostmetrics], exporters: [parquet]}
"#;

fn start(retention: &str) -> Instance {
    start_with(CONFIG, retention)
}

fn start_with(config: &str, retention: &str) -> Instance {
    let down = common::free_port();
    Instance::start(&config.replace("{{RETENTION}}", retention).replace("{{DOWN}}", &down.to_string()))
}

fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (code, body) = http_get(port, path).unwrap_or_else(|| panic!("GET {path}: no answer"));
    (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}")))
}

/// Polls `path` until `ok` holds (20 s at most).
fn wait_for(port: u16, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, v) = get_json(port, path);
        if code == 200 && ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: still not there after 20 s; last {path}: {v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `n` LLM calls of `service` that all end at `end`, each `dur` long, the first `errors`
/// of them failed; sent over OTLP/HTTP by the Rust SDK.
fn send(http: u16, service: &str, n: usize, dur: Duration, errors: usize, tokens: (i64, i64), end: SystemTime) {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("http://127.0.0.1:{http}/v1/traces"))
        .build()
        .expect("span exporter");
    let provider = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service.to_string()).build())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("dashboard-test");
    for i in 0..n {
        let mut span = tracer
            .span_builder("chat gpt-4o")
            .with_kind(SpanKind::Client)
            .with_start_time(end - dur)
            .with_attributes(vec![
                KeyValue::new("gen_ai.operation.name", "chat"),
                KeyValue::new("gen_ai.request.model", "gpt-4o"),
                KeyValue::new("gen_ai.usage.input_tokens", tokens.0),
                KeyValue::new("gen_ai.usage.output_tokens", tokens.1),
            ])
            .start(&tracer);
        if i < errors {
            span.set_status(Status::error("provider timeout"));
        }
        span.end_with_timestamp(end);
    }
    provider.shutdown().expect("flush spans");
}

/// The known traffic: `checkout` 100 calls of 100 ms, 10 failed; `rag` 50 calls of 400 ms
/// with more tokens (it costs more).
fn known_traffic(inst: &Instance) {
    let end = SystemTime::now();
    send(inst.http, "checkout", 100, Duration::from_millis(100), 10, (1000, 500), end);
    send(inst.http, "rag", 50, Duration::from_millis(400), 0, (8000, 400), end);
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

fn service<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|s| s["service"] == name))
        .unwrap_or_else(|| panic!("{name} not in {list:#}"))
}

/// Σ of a per-minute series times the bucket length: the count it stands for.
fn total(series: &Value, key: &str, step_s: f64) -> f64 {
    series[key].as_array().unwrap().iter().filter_map(|v| v.as_f64()).sum::<f64>() * step_s / 60.0
}

#[test]
fn every_api_endpoint_reports_the_known_traffic() {
    let inst = start("24h");
    let port = inst.dashboard;
    known_traffic(&inst);

    // Summary: both services' window has closed and been read (live counts come first,
    // without a p95; the window's aggregate replaces them).
    let sum = wait_for(port, "/api/summary", "the traffic's window", |v| {
        v["overall"]["calls"] == 150 && v["overall"]["p95_ms"].is_number()
    });
    let o = &sum["overall"];
    assert_eq!(o["errors"], 10);
    assert!(close(o["error_rate"].as_f64().unwrap(), 10.0 / 150.0, 1e-9), "{o}");
    // Calls-weighted p95: (100 × 100 ms + 50 × 400 ms) / 150; DDSketch is within 1 %.
    assert!(close(o["p95_ms"].as_f64().unwrap(), 200.0, 0.011), "{o}");
    // Cost: the shipped price table's gpt-4o prices for the tokens sent.
    let (input, output) = gpt_4o_prices();
    let priced = 100.0 * (1000.0 * input + 500.0 * output) + 50.0 * (8000.0 * input + 400.0 * output);
    assert!(close(o["cost"].as_f64().unwrap(), priced, 1e-5), "dashboard cost {} vs priced {priced}", o["cost"]);
    let minutes = sum["window_minutes"].as_f64().unwrap();
    assert!(close(o["calls_per_minute"].as_f64().unwrap(), 150.0 / minutes, 1e-9));
    assert_eq!(sum["services"], 2);
    let top_cost = &sum["top_by_cost"];
    assert_eq!(top_cost[0]["service"], "rag", "rag costs more: 8000 input tokens a call");
    let top_latency = &sum["top_by_latency"];
    assert_eq!(top_latency[0]["service"], "rag");
    assert!(close(top_latency[0]["p95_ms"].as_f64().unwrap(), 400.0, 0.011), "{top_latency}");
    assert!(close(service(top_latency, "checkout")["p95_ms"].as_f64().unwrap(), 100.0, 0.011));

    // Services, with their health scores once the health processor has scored the window.
    let svcs = wait_for(port, "/api/services", "health scores", |v| {
        v["services"].as_array().is_some_and(|l| l.len() == 2 && l.iter().all(|s| s["health"].is_number()))
    });
    let checkout = service(&svcs["services"], "checkout");
    assert_eq!((checkout["calls"].as_u64(), checkout["errors"].as_u64()), (Some(100), Some(10)));
    for s in svcs["services"].as_array().unwrap() {
        let h = s["health"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&h) && s["status"] != "unknown", "{s}");
    }
    // 10 % errors is half-way down the error sub-score; the overall score shows it.
    assert!(checkout["health"].as_f64().unwrap() < 100.0, "{checkout}");
    let overall = wait_for(port, "/api/summary", "overall health", |v| v["overall"]["health"].is_number());
    assert!(overall["overall"]["health"].as_f64().unwrap() <= 100.0);

    // Series: the buckets add up to the traffic, per service and overall.
    let series = get_json(port, "/api/series?range=2m&service=checkout&service=overall").1;
    assert_eq!(series["source"], "memory");
    let step = series["step_seconds"].as_f64().unwrap();
    assert_eq!(step, 1.0, "2 minutes of 1 s slots fit in 720 buckets");
    assert_eq!(series["series"][0]["service"], "checkout");
    assert!(close(total(&series["series"][0], "calls_per_minute", step), 100.0, 1e-6), "{series}");
    assert!(close(total(&series["series"][1], "calls_per_minute", step), 150.0, 1e-6));
    let rates: Vec<f64> =
        series["series"][0]["error_rate"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(rates, [0.1]);
    let n = series["t_unix_ms"].as_array().unwrap().len();
    assert!((120..=121).contains(&n), "{n} buckets");
    // The default picks overall and the top services by cost.
    let default = get_json(port, "/api/series?range=1m").1;
    let names: Vec<&str> =
        default["series"].as_array().unwrap().iter().map(|s| s["service"].as_str().unwrap()).collect();
    assert_eq!(names, ["", "rag", "checkout"]);
    let wide = get_json(port, "/api/series?range=24h&service=rag").1;
    assert_eq!(wide["step_seconds"], 120.0, "a day of 1 s slots in at most 720 buckets");
    assert!(close(total(&wide["series"][0], "calls_per_minute", 120.0), 50.0, 1e-6));

    // The strict budget on rag's p95 is breached: an open episode, with its suggestion.
    let open =
        wait_for(port, "/api/anomalies", "the budget episode", |v| v["open"].as_array().is_some_and(|l| !l.is_empty()));
    let ep = &open["open"][0];
    assert_eq!((ep["service"].as_str(), ep["type"].as_str()), (Some("rag"), Some("budget")), "{ep}");
    assert!(ep["suggestion"].as_str().is_some_and(|s| s.contains("rag-p95")), "{ep}");
    assert!(close(ep["observed"].as_f64().unwrap(), 0.4, 0.011), "{ep}");
    let alerts = get_json(port, "/api/alerts?limit=5").1;
    assert!(
        alerts["alerts"].as_array().unwrap().iter().any(|a| a["type"] == "budget" && a["state"] == "firing"),
        "{alerts}"
    );

    // Components: the exporter to a closed port fails and drops; the receiver is fine.
    let comps = wait_for(port, "/api/components", "the failing exporter", |v| {
        v["components"].as_array().is_some_and(|l| l.iter().any(|c| c["id"] == "otlp_http/down" && c["state"] != "up"))
    });
    let down = service_like(&comps["components"], "otlp_http/down");
    assert!(down["score"].as_f64().unwrap() < 80.0 && !down["reasons"].as_array().unwrap().is_empty(), "{down}");
    let recv = service_like(&comps["components"], "otlp");
    assert_eq!((recv["kind"].as_str(), recv["state"].as_str()), (Some("receiver"), Some("up")), "{recv}");
    assert!(recv["items_per_second"].as_f64().unwrap() > 0.0);
    assert_ne!(comps["state"], "up", "the service is as healthy as its worst component");
    assert!(service_like(&comps["components"], "traces")["queue_fill"].is_number(), "pipelines show their queue fill");
    // The health endpoint carries the same assessment.
    let (_, body) = inst.health().unwrap();
    let h: Value = serde_json::from_str(&body).unwrap();
    assert!(
        h["health"]["components"].as_array().unwrap().iter().any(|c| c["id"] == "otlp_http/down" && c["state"] != "up"),
        "{h:#}"
    );

    // Host resources from the hostmetrics receiver, and the process itself.
    let host = wait_for(port, "/api/host", "host metrics", |v| v["host"]["cpu_utilization"].is_number());
    let mem = host["host"]["memory_utilization"].as_f64().unwrap();
    assert!(mem > 0.0 && mem < 1.0, "{host}");
    assert!(host["otterline"]["resident_bytes"].as_u64().unwrap() > 1 << 20);

    // The event stream's first update carries the same summary.
    let update = first_sse_update(port);
    assert_eq!(update["summary"]["overall"]["calls"], 150);
    assert!(update["components"]["components"].is_array() && update["host"]["otterline"].is_object());

    // The page: one self-contained file, nothing fetched from elsewhere.
    let (code, page) = http_get(port, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<svg") && page.contains("EventSource(withToken(\"/api/stream\"))"));
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script src"), "no CDN");
    let (_, index) = get_json(port, "/api");
    assert_eq!(index["endpoints"].as_array().unwrap().len(), 11);
}

/// gpt-4o's (input, output) USD per token in pipelines/prices.yaml.
fn gpt_4o_prices() -> (f64, f64) {
    let table = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/prices.yaml")).unwrap();
    let block: Vec<&str> =
        table.lines().skip_while(|l| *l != "  gpt-4o:").skip(1).take_while(|l| l.starts_with("    ")).collect();
    let price = |key: &str| -> f64 {
        block.iter().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':')?.trim().parse().ok()).unwrap()
    };
    (price("input_cost_per_token"), price("output_cost_per_token"))
}

fn service_like<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array().and_then(|l| l.iter().find(|s| s["id"] == id)).unwrap_or_else(|| panic!("{id} not in {list:#}"))
}

fn first_sse_update(port: u16) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /api/stream HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut saw_event = false;
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "the stream ended before an update");
        if line.trim_end() == "event: update" {
            saw_event = true;
        } else if let (true, Some(data)) = (saw_event, line.strip_prefix("data: ")) {
            return serde_json::from_str(data.trim_end()).unwrap();
        }
    }
}

#[test]
fn bad_requests_get_a_reason() {
    let inst = start("1h");
    let port = inst.dashboard;
    for path in
        ["/api/series?range=banana", "/api/summary?window=2h", "/api/alerts?limit=-1", "/api/series?from=yesterday"]
    {
        let (code, v) = get_json(port, path);
        assert_eq!(code, 400, "{path}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| e.len() > 10), "{path}: {v}");
    }
    let many: String = (0..51).map(|i| format!("service=s{i}&")).collect();
    assert_eq!(get_json(port, &format!("/api/series?{many}")).0, 400);
    let (code, v) = get_json(port, "/api/nope");
    assert_eq!(code, 404);
    assert!(v["error"].as_str().unwrap().contains("/api"));
    // Nothing has arrived: empty, not an error.
    let (code, sum) = get_json(port, "/api/summary");
    assert_eq!((code, sum["overall"]["calls"].as_u64()), (200, Some(0)));
    assert!(sum["window_end_unix_ms"].is_null());
}

#[test]
fn ranges_beyond_retention_are_read_from_the_archive() {
    let inst = start("5s");
    let port = inst.dashboard;
    known_traffic(&inst);
    wait_for(port, "/api/summary", "the traffic's window", |v| v["overall"]["calls"] == 150);
    // The window's metrics reach the archive (1 s files), and memory moves past them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has_parquet(&inst.path().join("parquet/metrics")) {
        assert!(Instant::now() < deadline, "no metrics in the archive");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(6));
    let recent = get_json(port, "/api/series?range=2s&service=checkout").1;
    assert_eq!(recent["source"], "memory");
    let (code, old) = get_json(port, "/api/series?range=1h&service=checkout&service=overall");
    assert_eq!(code, 200, "{old}");
    assert_eq!(old["source"], "archive", "{old}");
    assert!(old["archive"]["files"].as_u64().unwrap() >= 1, "{old}");
    let step = old["step_seconds"].as_f64().unwrap();
    assert_eq!(step, 5.0, "an hour in at most 720 buckets");
    assert!(close(total(&old["series"][0], "calls_per_minute", step), 100.0, 1e-6), "{old}");
    assert!(close(total(&old["series"][1], "calls_per_minute", step), 150.0, 1e-6), "{old}");
    let p95: Vec<f64> = old["series"][0]["p95_ms"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert_eq!(p95.len(), 1, "{p95:?}");
    assert!(close(p95[0], 100.0, 0.011), "{p95:?}");
    let health: Vec<f64> = old["series"][0]["health"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert!(!health.is_empty(), "health scores are archived metrics too");
}

fn has_parquet(dir: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else { return false };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_parquet(&p)
        } else {
            p.extension().is_some_and(|x| x == "parquet") && !e.file_name().to_string_lossy().starts_with('.')
        }
    })
}

// ---------------------------------------------------------------------------
// The page in a real browser
// ---------------------------------------------------------------------------

/// Headless Chromium with the DevTools protocol on a loopback port.
struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<TcpStream>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        common::crypto();
        let chromium = ["chromium", "chromium-browser", "google-chrome"]
            .into_iter()
            .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
            .expect("chromium is needed for this test (Debian package `chromium`; .ci/run installs it)");
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1440,1800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(p) = std::fs::read_to_string(&port_file).ok().and_then(|t| t.lines().next()?.parse().ok()) {
                break p;
            }
            assert!(Instant::now() < deadline, "chromium did not open its DevTools port");
            std::thread::sleep(Duration::from_millis(100));
        };
        let list: Value = reqwest::blocking::get(format!("http://127.0.0.1:{port}/json/list")).unwrap().json().unwrap();
        let url = list
            .as_array()
            .and_then(|l| l.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {list}"))
            .to_string();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools websocket");
        Browser { child, ws, next_id: 0, _profile: profile }
    }

    /// Sends a DevTools command and returns its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = serde_json::json!({ "id": id, "method": method, "params": params });
        self.ws.send(tungstenite::Message::text(msg.to_string())).unwrap();
        loop {
            let m = self.ws.read().unwrap();
            let Ok(text) = m.to_text() else { continue };
            let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, js: &str) -> Value {
        let r = self.call("Runtime.evaluate", serde_json::json!({ "expression": js, "returnByValue": true }));
        assert!(r["exceptionDetails"].is_null(), "{js}: {r}");
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The page's formatting rules (`fmt` in assets/index.html), for the API's numbers.
fn page_format(o: &Value) -> Value {
    let f = |k: &str| o[k].as_f64();
    serde_json::json!({
        "health": f("health").map_or("–".to_string(), |v| format!("{}", v.round() as i64)),
        "calls": f("calls_per_minute").map_or("–".to_string(), |v| format!("{v:.1}")),
        "errors": f("error_rate").map_or("–".to_string(), |v| format!("{:.2}%", v * 100.0)),
        "p95": f("p95_ms").map_or("–".to_string(), |v| format!("{v:.1} ms")),
        "cost": f("cost_per_minute").map_or("–".to_string(), |v| format!("${v:.4}")),
    })
}

/// A new service shows in `/api/services` within 5 s with its counts, long before its
/// 60 s window closes; nested spans are not extra calls; the per-model view counts every
/// call; and after a restart the history is back from the archive.
#[test]
fn a_new_service_is_live_within_seconds_and_its_history_survives_a_restart() {
    let config = CONFIG
        .replace("aggregate: {window: 1s, allowed_lateness: 0s}", "aggregate: {window: 60s, allowed_lateness: 5s}")
        .replace("resolution: 1s", "resolution: 60s")
        .replace("summary_window: 5s", "summary_window: 15m");
    let mut inst = start_with(&config, "24h");
    let port = inst.dashboard;
    let end = SystemTime::now();
    send(inst.http, "fresh-agent", 12, Duration::from_millis(80), 2, (1000, 100), end);
    let sent = Instant::now();
    let v = wait_for(port, "/api/services", "the new service", |v| {
        v["services"].as_array().is_some_and(|l| l.iter().any(|s| s["service"] == "fresh-agent"))
    });
    assert!(sent.elapsed() < Duration::from_secs(5), "listed after {:?}", sent.elapsed());
    let s = service(&v["services"], "fresh-agent");
    assert_eq!((s["calls"].as_u64(), s["errors"].as_u64()), (Some(12), Some(2)), "{s}");
    let (_, models) = get_json(port, "/api/models");
    let gpt = &models["models"].as_array().unwrap().iter().find(|m| m["model"] == "gpt-4o").unwrap().clone();
    assert_eq!(gpt["calls"], 12);
    assert_eq!(gpt["tokens"], 12 * 1100);
    assert!(gpt["cost"].as_f64().unwrap() > 0.0);
    assert!(inst.terminate().success(), "{}", inst.stderr());

    // Same directory, new process, no traffic: the 15-minute view is reloaded from the archive.
    let dir = inst.path().to_path_buf();
    let mut again = start_with(&config.replace("{{DIR}}", &dir.display().to_string()), "24h");
    let v = wait_for(again.dashboard, "/api/services", "the history after a restart", |v| {
        v["services"].as_array().is_some_and(|l| l.iter().any(|s| s["service"] == "fresh-agent" && s["calls"] == 12))
    });
    assert!(service(&v["services"], "fresh-agent")["p95_ms"].as_f64().is_some(), "{v}");
    assert!(again.terminate().success(), "{}", again.stderr());
    assert!(again.stderr().contains("dashboard: history reloaded from the archive"), "{}", again.stderr());
}

const READ_PAGE: &str = r##"(() => { try { return JSON.stringify({
  version: document.body.dataset.version || null,
  health: document.getElementById("kpi-health").textContent,
  calls: document.getElementById("kpi-calls").textContent,
  errors: document.getElementById("kpi-errors").textContent,
  p95: document.getElementById("kpi-p95").textContent,
  cost: document.getElementById("kpi-cost").textContent,
  points: Number(document.getElementById("chart-calls").dataset.points || 0),
  updated: Number(document.getElementById("chart-calls").dataset.updated || 0),
  live: document.getElementById("conn").className,
  topCost: document.querySelector("#top-cost tbody tr td") && document.querySelector("#top-cost tbody tr td").textContent,
  servicesFirst: document.querySelector("#services tbody tr td") && document.querySelector("#services tbody tr td").textContent,
  models: [...document.querySelectorAll("#models tbody tr")].map(r => r.querySelector("td").textContent),
}); } catch (e) { return JSON.stringify({ loading: String(e) }); } })()"##;

#[test]
fn the_default_pipeline_serves_a_live_dashboard_that_chromium_renders() {
    let inst = Instance::start_default_with_env(&[("OTTERLINE_WINDOW", "1s"), ("OTTERLINE_ALLOWED_LATENESS", "0s")]);
    let port = inst.dashboard;
    // Traffic flows while the page is open: a batch of calls every 300 ms.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let http = inst.http;
        std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let now = SystemTime::now();
                send(
                    http,
                    "checkout",
                    20,
                    Duration::from_millis(120 + 10 * (k % 5)),
                    (k % 3) as usize,
                    (800, 300),
                    now,
                );
                send(http, "rag", 10, Duration::from_millis(450), 0, (3000, 150), now);
                // The costliest service sorts last by name: the services table must not.
                send(http, "zeta-agent", 4, Duration::from_millis(200), 0, (20000, 900), now);
                k += 1;
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut b = Browser::launch();
    b.call("Page.enable", serde_json::json!({}));
    b.call("Page.navigate", serde_json::json!({ "url": format!("http://127.0.0.1:{port}/") }));

    // The charts update live: points appear and the chart is redrawn as new windows close.
    let deadline = Instant::now() + Duration::from_secs(40);
    let first_drawn = loop {
        let p: Value = serde_json::from_str(b.eval(READ_PAGE).as_str().unwrap()).unwrap();
        if p["points"].as_u64() > Some(0) && p["live"] == "live" {
            break p["updated"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the charts never showed data: {p}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let redrawn = loop {
        let p: Value = serde_json::from_str(b.eval(READ_PAGE).as_str().unwrap()).unwrap();
        if p["updated"].as_u64().unwrap_or(0) > first_drawn {
            break p;
        }
        assert!(Instant::now() < deadline, "the charts were not redrawn as traffic flowed: {p}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(redrawn["points"].as_u64().unwrap() >= 2, "{redrawn}");
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();

    // The numbers on the page match the API once the page has caught up (it updates every
    // 2 s; health scores keep moving for silent services, so compare a consistent pair).
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page: Value = serde_json::from_str(b.eval(READ_PAGE).as_str().unwrap()).unwrap();
        let (_, api) = get_json(port, "/api/summary");
        let want = page_format(&api["overall"]);
        let shown = serde_json::json!({
            "health": page["health"], "calls": page["calls"], "errors": page["errors"], "p95": page["p95"], "cost": page["cost"],
        });
        if shown == want
            && api["overall"]["calls"].as_u64() > Some(0)
            && page["topCost"] == api["top_by_cost"][0]["service"]
        {
            break page;
        }
        assert!(Instant::now() < deadline, "the page never matched the API: page {page} api {want}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(page["topCost"], "zeta-agent", "4 calls of 20000 + 900 tokens cost most");
    assert_eq!(page["servicesFirst"], "zeta-agent", "the services table is sorted by cost, not by name");
    assert_eq!(page["models"], serde_json::json!(["gpt-4o"]), "the per-model panel");

    let shot = b.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }));
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 50_000, "a page with charts and tables is more than a blank screenshot ({} bytes)", png.len());
    let path = inst.path().join("dashboard.png");
    std::fs::write(&path, &png).unwrap();
    // Kept for a human (and CI's artifacts) after the instance's directory is gone.
    let _ = std::fs::copy(&path, std::env::temp_dir().join("otterline-dashboard.png"));
    let mut text = String::new();
    let _ = std::fs::File::open(inst.path().join("stderr.log")).and_then(|mut f| f.read_to_string(&mut text));
    assert!(text.contains("dashboard listening"), "{text}");
}

/// Regenerates the README's screenshot from a running dashboard (not part of the suite):
/// `OTTERLINE_DASHBOARD_URL=http://127.0.0.1:13134/ OTTERLINE_SCREENSHOT=docs/dashboard.png
/// cargo test --test it dashboard::readme_screenshot -- --ignored` (with `examples/dashboard_demo.py`
/// sending traffic).
#[test]
#[ignore]
fn readme_screenshot() {
    let url = std::env::var("OTTERLINE_DASHBOARD_URL").expect("set OTTERLINE_DASHBOARD_URL");
    let out = std::env::var("OTTERLINE_SCREENSHOT").expect("set OTTERLINE_SCREENSHOT");
    let mut b = Browser::launch();
    b.call("Page.enable", serde_json::json!({}));
    let size = serde_json::json!({ "width": 1440, "height": 2250, "deviceScaleFactor": 1, "mobile": false });
    b.call("Emulation.setDeviceMetricsOverride", size);
    b.call("Page.navigate", serde_json::json!({ "url": url }));
    std::thread::sleep(Duration::from_secs(6));
    let shot = b.call("Page.captureScreenshot", serde_json::json!({ "format": "png" }));
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
    std::fs::write(out, png).unwrap();
}
