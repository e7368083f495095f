//! The forwarding exporters against real upstreams on loopback: an upstream that is down
//! and comes back, SIGKILL with a persistent queue, permanent 400s, 10× overload under
//! `memory_limiter`, and TLS with a CA (and client certificate) made in the test; and a sidecar → gateway
//! chain of two Otterline instances with the Rust SDK as the client.
//!
//! Delivery is at least once; every test also counts duplicates, and in these scenarios
//! (no response is lost) there are none.

use crate::common::{self, upstream};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, Instance};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use upstream::{make_pki, ServerTls, Upstream};

/// `n` spans with unique ids derived from `tag`, named `<prefix>-…`, each with a `pad`-byte attribute.
fn request(prefix: &str, tag: u64, n: usize, pad: usize) -> ExportTraceServiceRequest {
    let filler = "x".repeat(pad);
    let spans = (0..n)
        .map(|i| Span {
            trace_id: tag.to_be_bytes().repeat(2),
            span_id: (i as u64 + 1).to_be_bytes().to_vec(),
            name: format!("{prefix}-{tag}-{i}"),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_100_000_000,
            attributes: if pad > 0 {
                vec![KeyValue {
                    key: "pad".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(filler.clone())) }),
                    ..Default::default()
                }]
            } else {
                Vec::new()
            },
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

/// Posts until accepted, retrying 503s like an SDK would. Returns the refusals seen.
fn post_until_accepted(client: &reqwest::blocking::Client, port: u16, body: Vec<u8>) -> u32 {
    let mut refusals = 0;
    loop {
        let r = client
            .post(format!("http://127.0.0.1:{port}/v1/traces"))
            .header("Content-Type", "application/x-protobuf")
            .body(body.clone())
            .send()
            .expect("post");
        match r.status().as_u16() {
            200 => return refusals,
            503 => {
                refusals += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            s => panic!("unexpected status {s}: {}", r.text().unwrap_or_default()),
        }
    }
}

const FORWARD: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
exporters:
  EXPORTERS
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  shutdown_timeout: 60s
  pipelines:
    traces: {receivers: [otlp], PROCESSORS exporters: [EXPORTER_IDS]}
"#;

fn forward_config(exporters: &str, ids: &str, processors: &str) -> String {
    FORWARD.replace("EXPORTERS", exporters).replace("EXPORTER_IDS", ids).replace("PROCESSORS", processors)
}

fn series(name: &str, exporter: &str) -> String {
    format!("otterline_exporter_{name}_items_total{{exporter=\"{exporter}\",signal=\"traces\"}}")
}

fn wait_metric(inst: &Instance, series: &str, want: f64, limit: Duration) -> f64 {
    let deadline = Instant::now() + limit;
    loop {
        let v = inst.metric(series).unwrap_or(0.0);
        if v >= want || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn upstream_down_then_up_every_span_is_delivered_once() {
    let port = free_port();
    let exporter = format!(
        r#"otlp:
    endpoint: "127.0.0.1:{port}"
    tls: {{insecure: true}}
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 400ms, max_elapsed_time: 120s}}
    sending_queue: {{num_consumers: 4, queue_size: 1000}}"#
    );
    let mut inst = Instance::start(&forward_config(&exporter, "otlp", ""));
    let client = reqwest::blocking::Client::new();
    for tag in 1..=40u64 {
        assert_eq!(post_until_accepted(&client, inst.http, request("down", tag, 100, 0).encode_to_vec()), 0);
    }
    // While the upstream is down: attempts fail and are retried, nothing is dropped.
    let failed = wait_metric(&inst, &series("failed", "otlp"), 1.0, Duration::from_secs(10));
    assert!(failed > 0.0, "{}", inst.metrics_text());
    assert_eq!(inst.metric(&series("exported", "otlp")).unwrap_or(0.0), 0.0);
    std::thread::sleep(Duration::from_secs(1));

    let up = Upstream::grpc(port, None, Duration::ZERO);
    let got = up.received.wait_for(4000, Duration::from_secs(30));
    assert_eq!(got, 4000, "every span arrives once the upstream is back");
    let exported = wait_metric(&inst, &series("exported", "otlp"), 4000.0, Duration::from_secs(5));
    assert_eq!(exported, 4000.0);
    assert_eq!(inst.metric(&series("dropped", "otlp")).unwrap_or(0.0), 0.0);
    let status = inst.terminate();
    assert!(status.success(), "{}", inst.stderr());
    eprintln!(
        "down/up: delivered {got} of 4000 spans, {} duplicates, {failed} items in failed attempts",
        up.received.duplicates()
    );
    assert_eq!(up.received.duplicates(), 0);
}

/// An `otlp` exporter to `127.0.0.1:port` (retrying for up to 5 minutes) with a persistent
/// sending queue of `queue_size` batches in `storage`.
fn persistent_queue_exporter(port: u16, queue_size: usize, storage: &std::path::Path) -> String {
    format!(
        r#"otlp:
    endpoint: "127.0.0.1:{port}"
    tls: {{insecure: true}}
    timeout: 2s
    retry_on_failure: {{initial_interval: 100ms, max_interval: 400ms, max_elapsed_time: 300s}}
    sending_queue: {{num_consumers: 2, queue_size: {queue_size}, storage: "{}"}}"#,
        storage.display()
    )
}

#[test]
fn sigkill_with_a_persistent_queue_then_restart_delivers_the_queued_data() {
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let exporter = persistent_queue_exporter(port, 500, storage.path());
    let config = forward_config(&exporter, "otlp", "");
    let mut first = Instance::start(&config);
    let client = reqwest::blocking::Client::new();
    for tag in 1..=30u64 {
        post_until_accepted(&client, first.http, request("kill", tag, 100, 0).encode_to_vec());
    }
    let queue_dir = storage.path().join("otlp");
    let records = || {
        std::fs::read_dir(&queue_dir)
            .map(|d| d.filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "otq")).count())
            .unwrap_or(0)
    };
    // Accepted requests pass the (in-memory, bounded) pipeline queue within milliseconds;
    // once in the sending queue they are on disk, fsynced.
    let deadline = Instant::now() + Duration::from_secs(10);
    while records() < 30 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(records(), 30);
    first.signal(libc::SIGKILL);
    let status = first.wait(Duration::from_secs(10));
    assert!(!status.success());
    assert_eq!(records(), 30, "SIGKILL loses nothing that was queued");

    let up = Upstream::grpc(port, None, Duration::ZERO);
    let mut second = Instance::start(&config);
    let got = up.received.wait_for(3000, Duration::from_secs(30));
    assert_eq!(got, 3000, "the restarted instance resumes the queue");
    let deadline = Instant::now() + Duration::from_secs(10);
    while records() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records(), 0, "acknowledged records are deleted");
    assert!(second.stderr().contains("persistent sending queue resumes where it left off"), "{}", second.stderr());
    assert!(second.terminate().success(), "{}", second.stderr());
    eprintln!("SIGKILL: delivered {got} of 3000 spans after restart, {} duplicates", up.received.duplicates());
    assert_eq!(up.received.duplicates(), 0);
}

#[test]
fn http_400_drops_those_requests_counted_and_delivers_the_rest() {
    let (up, rejected_requests) = Upstream::http_rejecting_poison(0);
    let exporter = format!(
        r#"otlp_http:
    endpoint: "http://{}"
    compression: zstd
    retry_on_failure: {{initial_interval: 100ms, max_interval: 400ms}}
    sending_queue: {{num_consumers: 2}}"#,
        up.addr
    );
    let mut inst = Instance::start(&forward_config(&exporter, "otlp_http", ""));
    let client = reqwest::blocking::Client::new();
    for tag in 1..=25u64 {
        let prefix = if tag % 5 == 0 { "poison" } else { "good" };
        post_until_accepted(&client, inst.http, request(prefix, tag, 50, 0).encode_to_vec());
    }
    assert_eq!(up.received.wait_for(1000, Duration::from_secs(20)), 1000);
    let dropped = wait_metric(&inst, &series("dropped", "otlp_http"), 250.0, Duration::from_secs(10));
    assert_eq!(dropped, 250.0, "5 requests of 50 spans refused with 400 are dropped and counted");
    assert_eq!(inst.metric(&series("exported", "otlp_http")), Some(1000.0));
    // A 400 is not retried.
    assert_eq!(rejected_requests.load(Ordering::Relaxed), 5);
    assert_eq!(inst.metric(&series("failed", "otlp_http")).unwrap_or(0.0), 0.0);
    assert!(inst.terminate().success());
    let log = inst.stderr();
    assert!(log.contains("refused a request permanently") && log.contains("400 Bad Request"), "{log}");
    eprintln!(
        "400s: delivered {} spans, dropped {dropped} (5 poisoned requests), {} duplicates",
        up.received.unique(),
        up.received.duplicates()
    );
}

#[test]
fn memory_limiter_keeps_rss_under_the_limit_at_10x_overload() {
    // While loaded, the upstream takes 200 ms per request and the exporter has one consumer:
    // 5 requests/s × 500 spans = 2,500 spans/s is all it can take.
    const CAPACITY: f64 = 2_500.0;
    let up = Upstream::grpc(0, None, Duration::from_millis(200));
    let exporter = format!(
        r#"otlp:
    endpoint: "http://{}"
    compression: none
    sending_queue: {{num_consumers: 1, queue_size: 5000}}"#,
        up.addr
    );
    let limiter = "memory_limiter: {check_interval: 50ms, limit_mib: 60, spike_limit_mib: 20}";
    let config = forward_config(&exporter, "otlp", "processors: [memory_limiter],")
        .replace("exporters:\n  otlp:", &format!("processors:\n  {limiter}\nexporters:\n  otlp:"));
    let mut inst = Instance::start(&config);
    let pid = inst.pid();
    let accepted = Arc::new(AtomicU64::new(0));
    let offered = Arc::new(AtomicU64::new(0));
    let memory_refusals = Arc::new(AtomicU64::new(0));
    let other_refusals = Arc::new(AtomicU64::new(0));
    let stop_load = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut threads = Vec::new();
    for t in 0..4u64 {
        let (accepted, offered, mem, other, stop, port) = (
            accepted.clone(),
            offered.clone(),
            memory_refusals.clone(),
            other_refusals.clone(),
            stop_load.clone(),
            inst.http,
        );
        threads.push(std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let mut tag = (t + 1) * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                tag += 1;
                // ~150 KB per request.
                let body = request("load", tag, 500, 250).encode_to_vec();
                offered.fetch_add(500, Ordering::Relaxed);
                let r = client
                    .post(format!("http://127.0.0.1:{port}/v1/traces"))
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .expect("post");
                match r.status().as_u16() {
                    200 => {
                        accepted.fetch_add(500, Ordering::Relaxed);
                    }
                    503 => {
                        let st = tonic_types::Status::decode(r.bytes().unwrap()).expect("google.rpc.Status");
                        if st.message.contains("memory limit reached") {
                            mem.fetch_add(1, Ordering::Relaxed);
                        } else {
                            other.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    s => panic!("unexpected status {s}"),
                }
            }
        }));
    }
    let mut peak = 0;
    // Load for at least 6 s, and until the limiter has refused for a while (at most 30 s).
    let mut refusing_since = None;
    loop {
        peak = peak.max(common::rss_kib(pid));
        let elapsed = started.elapsed();
        if refusing_since.is_none() && memory_refusals.load(Ordering::Relaxed) > 0 {
            refusing_since = Some(Instant::now());
        }
        let refused_long = refusing_since.is_some_and(|t| t.elapsed() > Duration::from_secs(2));
        if (elapsed > Duration::from_secs(6) && refused_long) || elapsed > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    stop_load.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    peak = peak.max(common::rss_kib(pid));
    let secs = started.elapsed().as_secs_f64();
    let (acc, off) = (accepted.load(Ordering::Relaxed), offered.load(Ordering::Relaxed));
    let (mem, other) = (memory_refusals.load(Ordering::Relaxed), other_refusals.load(Ordering::Relaxed));
    let refused_metric =
        inst.metric("otterline_receiver_refused_items_total{receiver=\"otlp\",signal=\"traces\"}").unwrap_or(0.0);
    let ratio = off as f64 / (CAPACITY * secs);
    eprintln!(
        "overload: offered {off} spans in {secs:.1} s ({ratio:.1}x what the upstream takes), accepted {acc}, refused requests: {mem} memory limit + {other} other, peak RSS {peak} KiB"
    );
    assert!(ratio >= 10.0, "the load must be at least 10x what the upstream takes");
    assert!(mem > 0, "memory_limiter must refuse with a retryable error");
    assert!(refused_metric > 0.0);
    assert!(peak < 60 * 1024, "peak RSS {peak} KiB must stay under limit_mib (60 MiB)");
    // Let the upstream catch up, then drain: everything accepted arrives.
    up.set_delay(Duration::ZERO);
    let status = inst.terminate();
    assert!(status.success(), "{}", inst.stderr());
    let got = up.received.wait_for(acc as usize, Duration::from_secs(5));
    assert_eq!(got as u64, acc, "everything accepted is delivered");
    assert_eq!(up.received.duplicates(), 0);
}

#[test]
fn tls_with_a_ca_and_client_certificate_made_in_the_test() {
    let pki = make_pki();
    let certs = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = certs.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (ca, cert, key) =
        (write("ca.pem", &pki.ca_pem), write("client.pem", &pki.client_cert), write("client.key", &pki.client_key));
    let up = Upstream::grpc(
        0,
        Some(ServerTls { cert_pem: pki.server_cert, key_pem: pki.server_key, client_ca_pem: Some(pki.ca_pem) }),
        Duration::ZERO,
    );
    // `otlp/trusted` trusts the test CA and presents its client certificate; `otlp/untrusted`
    // knows only the system roots, so its handshakes fail and it gives up after 1 s.
    let exporters = format!(
        r#"otlp/trusted:
    endpoint: "{addr}"
    tls: {{ca_file: "{ca}", cert_file: "{cert}", key_file: "{key}"}}
    headers: {{X-Tenant: team-a, x-unset: ""}}
    retry_on_failure: {{initial_interval: 100ms, max_interval: 400ms}}
  otlp/untrusted:
    endpoint: "https://{addr}"
    retry_on_failure: {{initial_interval: 100ms, max_interval: 200ms, max_elapsed_time: 1s}}"#,
        addr = up.addr
    );
    let mut inst = Instance::start(&forward_config(&exporters, "otlp/trusted, otlp/untrusted", ""));
    let client = reqwest::blocking::Client::new();
    for tag in 1..=10u64 {
        post_until_accepted(&client, inst.http, request("tls", tag, 100, 0).encode_to_vec());
    }
    assert_eq!(up.received.wait_for(1000, Duration::from_secs(20)), 1000);
    assert_eq!(up.received.tenant().as_deref(), Some("team-a"), "configured headers are sent");
    assert_eq!(wait_metric(&inst, &series("exported", "otlp/trusted"), 1000.0, Duration::from_secs(5)), 1000.0);
    let dropped = wait_metric(&inst, &series("dropped", "otlp/untrusted"), 1000.0, Duration::from_secs(20));
    assert_eq!(dropped, 1000.0, "{}", inst.stderr());
    assert_eq!(inst.metric(&series("exported", "otlp/untrusted")).unwrap_or(0.0), 0.0);
    assert!(inst.terminate().success(), "{}", inst.stderr());
    assert_eq!(up.received.duplicates(), 0);
}

#[test]
fn sidecar_forwards_every_signal_to_a_gateway_otterline() {
    use opentelemetry::logs::{AnyValue as LogValue, LogRecord as _, Logger as _, LoggerProvider as _};
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_otlp::WithExportConfig;
    use otterline_core::Signal;

    // The gateway: a second Otterline that writes what it receives as JSON.
    let gateway = Instance::start(common::BASIC);
    let sidecar_exporter = format!(
        r#"otlp:
    endpoint: "127.0.0.1:{}"
    tls: {{insecure: true}}
    compression: zstd
    headers: {{x-tenant: team-a, authorization: ""}}
    sending_queue: {{batch: {{min_size: 50, flush_timeout: 100ms}}}}"#,
        gateway.grpc
    );
    let sidecar_config = format!(
        "{}    metrics: {{receivers: [otlp], exporters: [otlp]}}\n    logs: {{receivers: [otlp], exporters: [otlp]}}\n",
        forward_config(&sidecar_exporter, "otlp", "")
    );
    let mut sidecar = Instance::start(&sidecar_config);
    let endpoint = format!("http://127.0.0.1:{}", sidecar.grpc);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("chain-app").build();
        let spans = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap();
        let logs = opentelemetry_otlp::LogExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap();
        let metrics =
            opentelemetry_otlp::MetricExporter::builder().with_tonic().with_endpoint(&endpoint).build().unwrap();
        let tp = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(spans)
            .build();
        let lp = opentelemetry_sdk::logs::SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_batch_exporter(logs)
            .build();
        let mp = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_resource(resource)
            .with_periodic_exporter(metrics)
            .build();
        let tracer = tp.tracer("chain");
        for i in 0..120 {
            let mut s = tracer.start(format!("chat {i}"));
            s.set_attribute(opentelemetry::KeyValue::new("gen_ai.request.model", "gpt-4o"));
            s.end();
        }
        let logger = lp.logger("chain");
        for i in 0..7 {
            let mut rec = logger.create_log_record();
            rec.set_body(LogValue::String(format!("log {i}").into()));
            logger.emit(rec);
        }
        mp.meter("chain").u64_counter("calls").build().add(5, &[]);
        tp.shutdown().unwrap();
        lp.shutdown().unwrap();
        mp.shutdown().unwrap();
    });
    // SIGTERM drains the sidecar's batcher and queue into the gateway.
    assert!(sidecar.terminate().success(), "{}", sidecar.stderr());
    let mut gateway = gateway;
    assert!(gateway.terminate().success());
    let spans = gateway.spans();
    assert_eq!(spans.len(), 120);
    assert!(spans.iter().all(|s| common::attr(&s.attributes, "gen_ai.request.model").is_some()));
    assert_eq!(common::logs_of(&gateway.json_batches(Signal::Logs)).len(), 7);
    let metrics = common::metrics_of(&gateway.json_batches(Signal::Metrics));
    assert!(metrics.iter().any(|m| m.name == "calls"), "{metrics:?}");
}

/// The persistent sending queue on a full disk: retryable refusals, no half-written record
/// left behind while the disk is full, and every acknowledged span delivered once space
/// returns and the upstream is up.
#[test]
fn a_full_disk_under_the_persistent_queue_refuses_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let disk = common::Tmpfs::mount(&data.path().join("disk"), "16m");
    let port = free_port();
    let exporter = persistent_queue_exporter(port, 5000, &disk.0.join("queue"));
    let mut inst = Instance::start(&forward_config(&exporter, "otlp", ""));
    let filler = common::fill_disk(&disk.0, 1024 * 1024);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let (mut acked, mut refused) = (0usize, 0usize);
    for tag in 1..=60u64 {
        // ~100 KB a request: the 1 MiB left holds about ten.
        let r = client
            .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
            .header("Content-Type", "application/x-protobuf")
            .body(request("full", tag, 50, 2000).encode_to_vec())
            .send()
            .unwrap();
        match r.status().as_u16() {
            200 => acked += 50,
            503 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(refused > 0, "a full disk must refuse (503)");
    let temps: Vec<_> = std::fs::read_dir(disk.0.join("queue/otlp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(temps.is_empty(), "half-written records left while the disk is full: {temps:?}");
    std::fs::remove_file(&filler).unwrap();
    let up = Upstream::grpc(port, None, Duration::ZERO);
    let got = up.received.wait_for(acked, Duration::from_secs(30));
    assert_eq!(got, acked, "every acknowledged span is delivered once space returns");
    assert!(inst.terminate().success(), "{}", inst.stderr());
    assert_eq!(up.received.duplicates(), 0);
    eprintln!("persistent queue, full disk: {acked} spans acknowledged and delivered, {refused} requests refused");
}

/// otlp (acknowledgements) → otlp with a persistent queue, upstream down: SIGKILL at
/// seeded random moments, ten times; every acknowledged span reaches the upstream once it
/// is up (the queue's fsync is what a 200 waits for).
#[test]
fn with_acknowledgements_a_persistent_queue_loses_nothing_acknowledged_across_sigkills() {
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let exporter = persistent_queue_exporter(port, 100_000, storage.path());
    let config = forward_config(&exporter, "otlp", "")
        .replace("receivers:\n  otlp:\n", "receivers:\n  otlp:\n    acknowledgements: true\n");
    assert!(config.contains("acknowledgements: true"));
    let mut rng = otterline_bench::Rng::new(31);
    let mut acked: Vec<u64> = Vec::new();
    let mut tag = 0u64;
    for _ in 0..10 {
        let inst = Instance::start(&config);
        let stop = Arc::new(AtomicBool::new(false));
        let (http, stop2) = (inst.http, stop.clone());
        let first = tag + 1;
        let sender = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let (mut t, mut ok) = (first, Vec::new());
            while !stop2.load(Ordering::Relaxed) {
                let r = client
                    .post(format!("http://127.0.0.1:{http}/v1/traces"))
                    .header("Content-Type", "application/x-protobuf")
                    .body(request("ack", t, 20, 0).encode_to_vec())
                    .send();
                match r {
                    Ok(r) if r.status().as_u16() == 200 => ok.push(t),
                    Ok(_) => {}
                    Err(_) => {
                        t += 1;
                        break;
                    }
                }
                t += 1;
            }
            (ok, t)
        });
        std::thread::sleep(Duration::from_millis(300 + rng.next_u64() % 1200));
        inst.signal(libc::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        let (ok, next) = sender.join().unwrap();
        acked.extend(ok);
        tag = next;
        drop(inst);
    }
    assert!(!acked.is_empty());
    let up = Upstream::grpc(port, None, Duration::ZERO);
    let mut last = Instance::start(&config);
    let want = acked.len() * 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = || {
        acked
            .iter()
            .flat_map(|&t| (1..=20u64).map(move |i| (t, i)))
            .filter(|&(t, i)| !up.received.has(&t.to_be_bytes().repeat(2), &i.to_be_bytes()))
            .count()
    };
    while missing() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let lost = missing();
    assert!(last.terminate().success(), "{}", last.stderr());
    eprintln!(
        "persistent queue with acknowledgements: 10 kills, {want} spans acknowledged, {lost} missing, {} duplicates",
        up.received.duplicates()
    );
    assert_eq!(lost, 0, "acknowledged spans lost");
}
