//! The Parquet archive, checked by real readers: OTLP in → `parquet` → `otterline replay`
//! → `json` equals OTLP in → `json`; DuckDB answers questions about it; pyarrow finds the
//! schema that `docs/parquet-schema.md` documents; kill -9 leaves nothing unreadable;
//! foreign and corrupt files are skipped (or fail a strict replay).

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{attr, Instance, BIN};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use otterline_core::pdata::common::any_value::Value as V;
use otterline_core::pdata::json;
use otterline_core::pdata::{logs, metrics, trace};
use otterline_core::{Batch, Signal};

const ARCHIVE: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
exporters:
  parquet: {path: "{{DIR}}/archive", flush_interval: FLUSH, max_rows_per_file: MAXROWS}
  json: {path: "{{DIR}}/json"}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [parquet, json]}
    metrics: {receivers: [otlp], exporters: [parquet, json]}
    logs: {receivers: [otlp], exporters: [parquet, json]}
"#;

fn archive_config(flush: &str, max_rows: usize) -> String {
    ARCHIVE.replace("FLUSH", flush).replace("MAXROWS", &max_rows.to_string())
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn post_json(inst: &Instance, signal: &str, body: String) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/{signal}", inst.http))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

/// Sends generated GenAI spans over gRPC; returns what was sent.
fn send_generated(inst: &Instance, requests: usize, spans: usize, seed: u64) -> Vec<ExportTraceServiceRequest> {
    let mut rng = otterline_bench::Rng::new(seed);
    let reqs: Vec<ExportTraceServiceRequest> =
        (0..requests).map(|_| otterline_bench::trace_request(&mut rng, spans)).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{}", inst.grpc)).await.unwrap();
        for r in &reqs {
            client.export(r.clone()).await.unwrap();
        }
    });
    reqs
}

fn python(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_archive.py");
    Command::new(common::python()).arg(script).args(args).output().unwrap()
}

fn python_json(args: &[&str]) -> serde_json::Value {
    let out = python(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn replay_to_json(dir: &std::path::Path, out: &str, extra: &[&str]) -> Output {
    common::replay_to_json(&dir.join("archive"), &dir.join(out), extra)
}

/// Every item as its own one-item batch in OTLP/JSON, sorted: a normal form that ignores
/// batch boundaries and order but nothing else.
fn items(batches: &[Batch]) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        match b {
            Batch::Traces(r) => {
                for rs in &r.resource_spans {
                    for ss in &rs.scope_spans {
                        for s in &ss.spans {
                            let one = trace::ResourceSpans {
                                scope_spans: vec![trace::ScopeSpans { spans: vec![s.clone()], ..ss.clone() }],
                                ..rs.clone()
                            };
                            out.push(json::encode(&Batch::Traces(ExportTraceServiceRequest {
                                resource_spans: vec![one],
                            })));
                        }
                    }
                }
            }
            Batch::Logs(r) => {
                for rl in &r.resource_logs {
                    for sl in &rl.scope_logs {
                        for l in &sl.log_records {
                            let one = logs::ResourceLogs {
                                scope_logs: vec![logs::ScopeLogs { log_records: vec![l.clone()], ..sl.clone() }],
                                ..rl.clone()
                            };
                            out.push(json::encode(&Batch::Logs(otterline_core::pdata::ExportLogsServiceRequest {
                                resource_logs: vec![one],
                            })));
                        }
                    }
                }
            }
            Batch::Metrics(r) => {
                for rm in &r.resource_metrics {
                    for sm in &rm.scope_metrics {
                        for m in &sm.metrics {
                            for i in 0..otterline_core::pdata::metric_point_count(m) {
                                let mut one_metric = m.clone();
                                keep_point(&mut one_metric, i);
                                let one = metrics::ResourceMetrics {
                                    scope_metrics: vec![metrics::ScopeMetrics {
                                        metrics: vec![one_metric],
                                        ..sm.clone()
                                    }],
                                    ..rm.clone()
                                };
                                out.push(json::encode(&Batch::Metrics(
                                    otterline_core::pdata::ExportMetricsServiceRequest { resource_metrics: vec![one] },
                                )));
                            }
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out
}

fn keep_point(m: &mut metrics::Metric, i: usize) {
    use metrics::metric::Data;
    fn one<T: Clone>(v: &mut Vec<T>, i: usize) {
        *v = vec![v[i].clone()];
    }
    match &mut m.data {
        Some(Data::Gauge(g)) => one(&mut g.data_points, i),
        Some(Data::Sum(s)) => one(&mut s.data_points, i),
        Some(Data::Histogram(h)) => one(&mut h.data_points, i),
        Some(Data::ExponentialHistogram(h)) => one(&mut h.data_points, i),
        Some(Data::Summary(s)) => one(&mut s.data_points, i),
        None => {}
    }
}

fn quantile_cont(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

#[test]
fn archive_round_trips_and_real_readers_agree() {
    let mut inst = Instance::start(&archive_config("60s", 100_000));
    post_json(&inst, "traces", fixture("traces.json"));
    post_json(&inst, "metrics", fixture("metrics.json"));
    post_json(&inst, "logs", fixture("logs.json"));
    let generated = send_generated(&inst, 40, 50, 7);
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let dir = inst.path().to_path_buf();

    // 1. Replay equals the direct JSON, item for item.
    let out = replay_to_json(&dir, "replayed", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("otterline replay: 2010 items"), "{stderr}");
    for s in Signal::ALL {
        let direct = common::read_json_dir(&dir.join("json").join(s.as_str()), s);
        let replayed = common::read_json_dir(&dir.join("replayed").join(s.as_str()), s);
        let (d, r) = (items(&direct), items(&replayed));
        assert!(!d.is_empty());
        assert_eq!(d.len(), r.len(), "{s}");
        for (a, b) in d.iter().zip(&r) {
            assert_eq!(a, b, "{s}");
        }
    }

    // 2. pyarrow: every file opens and matches docs/parquet-schema.md.
    let doc = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/parquet-schema.md");
    let archive = dir.join("archive").display().to_string();
    let v = python_json(&["schema", "--doc", doc, "--archive", &archive]);
    assert!(v["files"].as_u64().unwrap() >= 3);

    // 3. DuckDB answers, checked against values computed from what was sent.
    let mut spans: Vec<(String, trace::Span)> = Vec::new();
    let Batch::Traces(fx) = json::decode(Signal::Traces, fixture("traces.json").as_bytes()).unwrap() else {
        unreachable!()
    };
    for r in generated.iter().chain(std::iter::once(&fx)) {
        for rs in &r.resource_spans {
            let svc = otterline_core::pdata::service_name(rs.resource.as_ref()).unwrap().to_string();
            for ss in &rs.scope_spans {
                spans.extend(ss.spans.iter().map(|s| (svc.clone(), s.clone())));
            }
        }
    }
    let mut per_service: BTreeMap<String, u64> = BTreeMap::new();
    let mut durations: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut tokens: BTreeMap<String, i64> = BTreeMap::new();
    let mut user7 = 0;
    for (svc, s) in &spans {
        *per_service.entry(svc.clone()).or_default() += 1;
        durations.entry(s.name.clone()).or_default().push((s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6);
        if let (Some(V::StringValue(m)), Some(V::IntValue(t))) =
            (attr(&s.attributes, "gen_ai.request.model"), attr(&s.attributes, "gen_ai.usage.output_tokens"))
        {
            *tokens.entry(m.clone()).or_default() += t;
        }
        if attr(&s.attributes, "user.id") == Some(&V::StringValue("user-7".into())) {
            user7 += 1;
        }
    }
    let got = python_json(&["duckdb", "--archive", &archive]);
    let got_services: BTreeMap<String, u64> = serde_json::from_value(got["spans_per_service"].clone()).unwrap();
    assert_eq!(got_services, per_service);
    let got_p95: BTreeMap<String, f64> = serde_json::from_value(got["p95_duration_ms_per_name"].clone()).unwrap();
    assert_eq!(got_p95.len(), durations.len());
    for (name, d) in durations {
        let want = quantile_cont(d, 0.95);
        assert!((got_p95[&name] - want).abs() <= 1e-9 * want.max(1.0), "{name}: {} vs {want}", got_p95[&name]);
    }
    let got_tokens: BTreeMap<String, i64> = serde_json::from_value(got["output_tokens_per_model"].clone()).unwrap();
    assert_eq!(got_tokens, tokens);
    assert_eq!(got["spans_per_user_7"].as_u64().unwrap(), user7);
    assert!(user7 > 0);
    assert_eq!(got["temperature_by_key"].as_f64(), Some(0.2));
    let mut want_parts: Vec<String> = spans
        .iter()
        .map(|(_, s)| otterline_core::time::from_unix_nanos(s.start_time_unix_nano).format("%Y-%m-%d/%H").to_string())
        .collect();
    want_parts.sort();
    want_parts.dedup();
    let got_parts: Vec<String> = serde_json::from_value(got["partitions"].clone()).unwrap();
    assert_eq!(got_parts, want_parts, "partitioned by the spans' own timestamps");
}

#[test]
fn kill_9_while_writing_leaves_only_readable_files() {
    let inst = Instance::start(&archive_config("200ms", 300));
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut seed = 1;
    while Instant::now() < deadline {
        send_generated(&inst, 5, 100, seed);
        seed += 1;
    }
    inst.signal(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    let archive = inst.path().join("archive").display().to_string();
    // DuckDB reads every *.parquet file there is (a torn one would fail the query).
    let counts = python_json(&["count", "--archive", &archive]);
    assert!(counts["traces"].as_u64().unwrap() > 0, "{counts}");
    // A restart removes incomplete temp files, if the kill left any, and says so.
    let leftovers = count_temp_files(&inst.path().join("archive"));
    let config = common::fill(
        &archive_config("200ms", 300),
        common::free_port(),
        common::free_port(),
        common::free_port(),
        inst.path(),
    );
    std::fs::write(inst.path().join("again.yaml"), config).unwrap();
    let (telemetry, _) = common::telemetry_config(inst.path());
    let again = Command::new(BIN)
        .arg("--config")
        .arg(inst.path().join("again.yaml"))
        .arg("--config")
        .arg(telemetry)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // SAFETY: signalling a child we spawned.
    unsafe { libc::kill(again.id() as i32, libc::SIGTERM) };
    let out = again.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(count_temp_files(&inst.path().join("archive")), 0);
    if leftovers > 0 {
        assert!(String::from_utf8_lossy(&out.stderr).contains("removed an incomplete Parquet file left by a crash"));
    }
}

fn count_temp_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += count_temp_files(&p);
            } else if p.to_string_lossy().ends_with(".tmp") {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn foreign_and_corrupt_files_are_skipped_or_fail_a_strict_replay() {
    let mut inst = Instance::start(&archive_config("60s", 100_000));
    post_json(&inst, "traces", fixture("traces.json"));
    assert!(inst.terminate().success());
    let dir = inst.path().to_path_buf();
    let foreign = dir.join("archive/traces/foreign.parquet");
    let out = python(&["foreign", "--out", &foreign.display().to_string()]);
    assert!(out.status.success());
    let corrupt = dir.join("archive/traces/date=2025-11-23/hour=05/corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not a parquet file at all").unwrap();

    let out = replay_to_json(&dir, "replayed", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("file={}", foreign.display())) && stderr.contains("foreign Parquet file"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("file={}", corrupt.display())) && stderr.contains("corrupt or not Parquet"),
        "{stderr}"
    );
    assert!(stderr.contains("otterline replay: 2 items") && stderr.contains("2 file(s) skipped"), "{stderr}");
    assert_eq!(inst_spans(&dir.join("replayed")), 2);

    let out = replay_to_json(&dir, "strict", &["--strict"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("strict replay: 2 unusable file(s)"), "{stderr}");
}

fn inst_spans(dir: &std::path::Path) -> usize {
    common::spans_of(&common::read_json_dir(&dir.join("traces"), Signal::Traces)).len()
}

#[test]
fn replay_selects_by_time_and_signal_and_paces_at_a_speed_factor() {
    let mut inst = Instance::start(&archive_config("60s", 100_000));
    // Three spans 1.5 s apart in recorded time, and the fixture logs.
    let base: u64 = 1_763_874_000_000_000_000; // 2025-11-23T05:00:00Z
    let spans: Vec<String> = (0..3u64)
        .map(|i| format!(r#"{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"000000000000000{i}","name":"s{i}","startTimeUnixNano":"{}","endTimeUnixNano":"{}"}}"#, base + i * 1_500_000_000, base + i * 1_500_000_000 + 1000))
        .collect();
    post_json(
        &inst,
        "traces",
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}]}}]}}]}}"#, spans.join(",")),
    );
    post_json(&inst, "logs", fixture("logs.json"));
    assert!(inst.terminate().success());
    let dir = inst.path().to_path_buf();

    let out = replay_to_json(
        &dir,
        "window",
        &["--from", "2025-11-23T05:00:01Z", "--to", "2025-11-23T05:00:03Z", "--signals", "traces"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> = common::spans_of(&common::read_json_dir(&dir.join("window/traces"), Signal::Traces))
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["s1", "s2"]);
    assert!(common::read_json_dir(&dir.join("window/logs"), Signal::Logs).is_empty(), "logs were not selected");

    // 3 s of recorded time at 2x takes at least 1.5 s; `max` does not wait.
    let started = Instant::now();
    let out = replay_to_json(&dir, "paced", &["--speed", "2x", "--signals", "traces"]);
    assert!(out.status.success());
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());
    assert_eq!(inst_spans(&dir.join("paced")), 3);

    let out = replay_to_json(&dir, "bad", &["--speed", "warp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("receivers.parquet/replay.speed: invalid speed \"warp\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
