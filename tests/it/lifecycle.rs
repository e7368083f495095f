//! Start-up, overload and shutdown of the real binary.

use crate::common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Instance, BIN};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// A request of `n` spans whose names carry `tag`.
fn request(tag: u64, n: usize) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| Span {
            trace_id: tag.to_be_bytes().repeat(2),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("req-{tag}-span-{i}"),
            start_time_unix_nano: 1,
            end_time_unix_nano: 2,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn post(client: &reqwest::blocking::Client, port: u16, body: Vec<u8>) -> reqwest::blocking::Response {
    client
        .post(format!("http://127.0.0.1:{port}/v1/traces"))
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .expect("post")
}

const SLOW: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
exporters:
  nop: {latency: LATENCY}
  json: {path: "{{DIR}}/json", flush_interval: 100ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  QUEUES
  pipelines:
    traces: {receivers: [otlp], exporters: [nop, json]}
"#;

#[test]
fn sigterm_drains_every_accepted_span_and_reports_not_ready() {
    let config = SLOW.replace("LATENCY", "20ms").replace("QUEUES", "queues: {pipeline_size: 64}");
    let mut inst = Instance::start(&config);
    let client = reqwest::blocking::Client::new();
    let mut accepted = 0;
    for tag in 0..50 {
        let r = post(&client, inst.http, request(tag, 100).encode_to_vec());
        assert_eq!(r.status().as_u16(), 200);
        accepted += 100;
    }
    // Most of those 50 batches are still queued behind the 20 ms exporter.
    inst.signal(libc::SIGTERM);
    // The signal is handled asynchronously: wait for the health endpoint to flip.
    let flip = Instant::now() + Duration::from_secs(5);
    let (code, body) = loop {
        let (code, body) = inst.health().expect("health endpoint still answers while draining");
        if code != 200 || Instant::now() > flip {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"status\":\"Server not available\"") && body.contains("\"phase\":\"draining\""), "{body}");
    // New data is refused while draining (the listener is closed or answers 503).
    if let Ok(r) = client
        .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
        .header("Content-Type", "application/x-protobuf")
        .body(request(999, 1).encode_to_vec())
        .send()
    {
        assert_eq!(r.status().as_u16(), 503);
    }
    let status = inst.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", inst.stderr());
    let spans = inst.spans();
    assert_eq!(spans.len(), accepted);
    let mut names: Vec<String> = spans.into_iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), accepted, "no duplicates");
    assert!(inst.stderr().contains("Drained; all queues are empty"), "{}", inst.stderr());
}

#[test]
fn overload_gets_retryable_refusals_with_bounded_memory_and_no_loss() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

    let config = SLOW
        .replace("LATENCY", "50ms")
        .replace("QUEUES", "queues: {pipeline_size: 2, exporter_size: 1, admission_timeout: 10ms}");
    let mut inst = Instance::start(&config);
    let pid = inst.pid();
    let accepted = Arc::new(AtomicU64::new(0));
    let refused_http = Arc::new(AtomicU64::new(0));
    let refused_grpc = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut threads = Vec::new();
    for t in 0..6u64 {
        let (accepted, refused, port) = (accepted.clone(), refused_http.clone(), inst.http);
        threads.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut tag = t * 1_000_000;
            while Instant::now() < deadline {
                tag += 1;
                let r = post(&client, port, request(tag, 100).encode_to_vec());
                match r.status().as_u16() {
                    200 => {
                        accepted.fetch_add(100, Ordering::Relaxed);
                    }
                    503 => {
                        assert_eq!(r.headers().get("retry-after").map(|v| v.to_str().unwrap()), Some("1"));
                        // The body is a google.rpc.Status in the request's encoding (protobuf).
                        let st = tonic_types::Status::decode(r.bytes().unwrap()).expect("google.rpc.Status");
                        assert_eq!(st.code, 14, "UNAVAILABLE: {}", st.message);
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected status {other}"),
                }
            }
        }));
    }
    {
        let (accepted, refused, port) = (accepted.clone(), refused_grpc.clone(), inst.grpc);
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut client = TraceServiceClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
                let mut tag = 9_000_000;
                while Instant::now() < deadline {
                    tag += 1;
                    match client.export(request(tag, 100)).await {
                        Ok(_) => {
                            accepted.fetch_add(100, Ordering::Relaxed);
                        }
                        Err(st) => {
                            assert_eq!(st.code(), tonic::Code::Unavailable, "{st}");
                            assert!(st.message().contains("pipeline is full; retry later"), "{}", st.message());
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }));
    }
    let mut peak = 0;
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(common::rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    for t in threads {
        t.join().expect("load thread");
    }
    stop.store(true, Ordering::Relaxed);
    peak = peak.max(sampler.join().unwrap());
    let (acc, rh, rg) =
        (accepted.load(Ordering::Relaxed), refused_http.load(Ordering::Relaxed), refused_grpc.load(Ordering::Relaxed));
    eprintln!("accepted spans {acc}, refused HTTP requests {rh}, refused gRPC requests {rg}, peak RSS {peak} KiB");
    assert!(rh > 0 && rg > 0, "overload must produce retryable refusals on both protocols");
    assert!(acc > 0);
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB: memory must stay bounded under overload");
    assert_eq!(inst.health().unwrap().0, 200, "overload is not a failure");
    let status = inst.terminate();
    assert!(status.success(), "{}", inst.stderr());
    assert_eq!(inst.spans().len() as u64, acc, "every acknowledged span is delivered, nothing else");
}

#[test]
fn a_port_in_use_fails_start_up_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = common::fill(common::BASIC, port, common::free_port(), common::free_port(), dir.path());
    std::fs::write(dir.path().join("c.yaml"), config).unwrap();
    let (telemetry, _) = common::telemetry_config(dir.path());
    let out = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("c.yaml"))
        .arg("--config")
        .arg(telemetry)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "receiver `otlp` failed to start: cannot listen on 127.0.0.1:{port} for OTLP/gRPC: Address already in use"
        )),
        "{err}"
    );
}

#[test]
fn embedded_default_accepts_python_sdk_spans_into_its_one_archive() {
    let mut inst = Instance::start_default();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/send_otel.py");
    let out = Command::new(common::python())
        .args([
            script,
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("http://127.0.0.1:{}", inst.grpc),
            "--service",
            "default-pipeline",
            "--spans",
            "12",
            "--logs",
            "2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(inst.terminate().success(), "{}", inst.stderr());
    // One copy of the data: the Parquet archive, and no OTLP/JSON files beside it.
    assert!(!inst.path().join("otterline-data/json").exists());
    let archive = inst.path().join("otterline-data/parquet");
    let replayed = inst.path().join("replayed");
    let out = common::replay_to_json(&archive, &replayed, &["--signals", "traces,logs"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spans = common::spans_of(&common::read_json_dir(&replayed.join("traces"), otterline_core::Signal::Traces));
    assert_eq!(spans.len(), 12);
    let logs = common::logs_of(&common::read_json_dir(&replayed.join("logs"), otterline_core::Signal::Logs));
    assert_eq!(logs.len(), 2);
    // Spans are under their own date/hour partition.
    let files = walk(&archive.join("traces"));
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|f| f.to_string_lossy().contains("/date=") && f.to_string_lossy().ends_with(".parquet")),
        "{files:?}"
    );
    // The debug exporter printed sampled one-line summaries (one a second at most).
    let err = inst.stderr();
    let shown = err.lines().filter(|l| l.starts_with("otterline debug: ") && !l.ends_with("(sampling)")).count();
    assert!(shown >= 1, "{err}");
    // The start-up log says where data goes (absolute path) and when anomaly alerts can begin.
    let abs = std::fs::canonicalize(&archive).unwrap();
    assert!(err.contains(&format!("path={}", abs.display())) && err.contains("Parquet archive: writing"), "{err}");
    assert!(err.contains("anomaly alerts begin after 10 windows"), "{err}");
}

#[test]
fn second_signal_exits_at_once() {
    let config = SLOW.replace("LATENCY", "1s").replace("QUEUES", "queues: {pipeline_size: 64}");
    let mut inst = Instance::start(&config);
    let client = reqwest::blocking::Client::new();
    for tag in 0..20 {
        assert_eq!(post(&client, inst.http, request(tag, 10).encode_to_vec()).status().as_u16(), 200);
    }
    inst.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    inst.signal(libc::SIGINT);
    let started = Instant::now();
    let status = inst.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn batch_processor_merges_requests_through_the_real_pipeline() {
    let config = r#"
receivers:
  otlp:
    protocols:
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
processors:
  batch: {send_batch_size: 1000, timeout: 2s}
exporters:
  json: {path: "{{DIR}}/json"}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [json]}
"#;
    let mut inst = Instance::start(config);
    let client = reqwest::blocking::Client::new();
    for tag in 0..5 {
        assert_eq!(post(&client, inst.http, request(tag, 10).encode_to_vec()).status().as_u16(), 200);
    }
    // Held by the batch processor (50 < 1000, 2 s timeout); SIGTERM flushes it.
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let batches = inst.json_batches(otterline_core::Signal::Traces);
    assert_eq!(batches.len(), 1, "five requests became one batch");
    assert_eq!(batches[0].item_count(), 50);
    assert_eq!(batches[0].resource_count(), 5);
}

/// A second Otterline on one host: the default's secondary listeners turn off with an empty
/// variable, a second instance in the same data directory is refused with the holder's pid,
/// and `replay` beside the live one starts no listener and never writes into the archive it
/// reads.
#[test]
fn a_second_instance_and_a_replay_beside_the_live_one() {
    let live = Instance::start_default();
    common::crypto();
    let pid = live.pid();
    let port = || common::free_port().to_string();
    let other = |dir: &std::path::Path, extra: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir).env_remove("RUST_LOG");
        for (k, v) in [
            ("OTTERLINE_GRPC_ENDPOINT", format!("127.0.0.1:{}", port())),
            ("OTTERLINE_HTTP_ENDPOINT", format!("127.0.0.1:{}", port())),
            ("OTTERLINE_HEALTH_ENDPOINT", "127.0.0.1:0".to_string()),
            ("OTTERLINE_DASHBOARD_ENDPOINT", String::new()),
            ("OTTERLINE_METRICS_ADDRESS", String::new()),
        ] {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    };

    // Same directory: refused, naming the live process.
    let out = other(live.path(), &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("in use by another process (pid {pid} ")), "{err}");

    // Another directory: runs beside the live one; the emptied listeners are off, the health
    // endpoint is on a free port.
    let dir = tempfile::tempdir().unwrap();
    let mut child = other(dir.path(), &[]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "the second instance stopped");
    common::terminate_child(&mut child);
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("off: its endpoint is empty extension=dashboard"), "{err}");
    assert!(!err.contains("self-metrics listening"), "{err}");
    assert!(err.contains("health_check listening endpoint=127.0.0.1:") && !err.contains("127.0.0.1:13133"), "{err}");

    // Replay beside the live one, from its directory with the embedded default: it would
    // write into the archive it reads, so it is refused; elsewhere it runs with no listener.
    let client = reqwest::blocking::Client::new();
    let now = otterline_core::time::now_unix_nanos();
    let body = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"chat","startTimeUnixNano":"{}","endTimeUnixNano":"{now}"}}]}}]}}]}}"#,
        now - 1_000_000
    );
    let r = client
        .post(format!("http://127.0.0.1:{}/v1/traces", live.http))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let archive = live.path().join("otterline-data/parquet");
    let out = Command::new(BIN)
        .args(["replay", "--archive"])
        .arg(&archive)
        .current_dir(live.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("replay would write into the archive it reads"));
    // (The live instance writes its open files at shutdown; then there is an archive to read.)
    let mut live = live;
    assert!(live.terminate().success(), "{}", live.stderr());
    let out = Command::new(BIN)
        .args(["replay", "--archive"])
        .arg(&archive)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("listening"), "replay started a listener: {err}");
}
