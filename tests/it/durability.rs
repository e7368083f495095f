//! The archive's crash and disk-full guarantees, against the real binary: SIGKILL at
//! random moments under load loses nothing the exporter had accepted (its write-ahead log
//! is replayed at the next start, without duplicates); a full disk gives retryable
//! refusals and one clear log line, and everything acknowledged is archived, once, when
//! space returns. Counts are DuckDB's, over the Parquet files.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{fill_disk, Instance, Tmpfs};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

fn config(archive: &Path, extra: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  parquet:
    path: "{}"
    flush_interval: 1s
    max_rows_per_file: 3000
    wal: {{sync_interval: 100ms{extra}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [parquet]}}
"#,
        archive.display()
    )
}

/// A request of `n` spans whose span ids are `first..first + n` (8 bytes, big-endian), with
/// a `payload` attribute of `pad` bytes.
fn request(first: u64, n: u64, pad: usize) -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let spans = (first..first + n)
        .map(|id| Span {
            trace_id: [&id.to_be_bytes()[..], &[7u8; 8]].concat(),
            span_id: id.to_be_bytes().to_vec(),
            name: "chat".into(),
            start_time_unix_nano: now,
            end_time_unix_nano: now + 1_000_000,
            attributes: vec![KeyValue {
                key: "payload".into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue("x".repeat(pad))) }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("durable".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// What a sender saw: (when the 200 came, first span id, spans) per acknowledged request,
/// and the statuses of the others.
#[derive(Default)]
struct Sent {
    acked: Vec<(Instant, u64, u64)>,
    refused: HashMap<u16, usize>,
}

/// Posts requests of `per` spans (ids from `next`), `pace` apart, until `stop`; returns
/// what happened.
fn send_until(
    port: u16,
    next: u64,
    (per, pad, pace): (u64, usize, Duration),
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Sent, u64)> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut sent = Sent::default();
        let mut id = next;
        while !stop.load(Ordering::Relaxed) {
            let r = client
                .post(format!("http://127.0.0.1:{port}/v1/traces"))
                .header("Content-Type", "application/x-protobuf")
                .body(request(id, per, pad))
                .send();
            match r {
                Ok(r) if r.status().as_u16() == 200 => sent.acked.push((Instant::now(), id, per)),
                Ok(r) => {
                    *sent.refused.entry(r.status().as_u16()).or_default() += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                // The process is gone (killed): nothing more to send. The ids of this
                // request are not reused (it may be in the log already).
                Err(_) => {
                    id += per;
                    break;
                }
            }
            id += per;
            std::thread::sleep(pace);
        }
        (sent, id)
    })
}

fn span_counts(archive: &Path) -> HashMap<u64, u64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_archive.py");
    let out = Command::new(common::python())
        .arg(script)
        .args(["span-ids", "--archive", &archive.display().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: HashMap<String, u64> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter().map(|(hex, n)| (u64::from_str_radix(&hex, 16).unwrap(), n)).collect()
}

/// Ten SIGKILLs at seeded random moments of instances that `start` starts, under steady
/// load; then one more start and a clean stop. Returns the acknowledged (first id, spans).
fn acked_kill_loop(seed: u64, start: impl Fn() -> Instance) -> Vec<(u64, u64)> {
    let mut rng = otterline_bench::Rng::new(seed);
    let mut acked: Vec<(u64, u64)> = Vec::new();
    let mut next_id = 1u64;
    for cycle in 0..10 {
        let inst = start();
        let stop = Arc::new(AtomicBool::new(false));
        let sender = send_until(inst.http, next_id, (50, 200, Duration::ZERO), stop.clone());
        let wait = 400 + rng.next_u64() % 2000;
        std::thread::sleep(Duration::from_millis(wait));
        inst.signal(libc::SIGKILL);
        stop.store(true, Ordering::Relaxed);
        let (sent, next) = sender.join().unwrap();
        next_id = next;
        assert!(!sent.acked.is_empty(), "cycle {cycle}: nothing was acknowledged in {wait} ms");
        acked.extend(sent.acked.iter().map(|&(_, first, n)| (first, n)));
        drop(inst);
    }
    let mut inst = start();
    assert!(inst.terminate().success(), "{}", inst.stderr());
    acked
}

/// Checks that every acknowledged span is in the archive once; prints the figures.
fn assert_all_archived_once(what: &str, archive: &Path, acked: &[(u64, u64)]) {
    let counts = span_counts(archive);
    let missing = acked.iter().flat_map(|&(first, n)| first..first + n).filter(|id| !counts.contains_key(id)).count();
    let duplicates: u64 = counts.values().filter(|&&n| n > 1).map(|n| n - 1).sum();
    eprintln!(
        "{what}: 10 kills, {} spans acknowledged, {} archived, {missing} missing, {duplicates} duplicates",
        acked.iter().map(|a| a.1).sum::<u64>(),
        counts.len()
    );
    assert_eq!(missing, 0, "acknowledged spans lost");
    assert_eq!(duplicates, 0, "spans archived twice");
}

/// With `acknowledgements: true` a 200 means the write-ahead log has the spans on stable
/// storage: every span acknowledged before a SIGKILL, up to the last moment, is archived.
#[test]
fn with_acknowledgements_every_acknowledged_span_survives_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let acked_config =
        config(&archive, "").replace("receivers:\n  otlp:\n", "receivers:\n  otlp:\n    acknowledgements: true\n");
    assert!(acked_config.contains("acknowledgements: true"));
    let acked = acked_kill_loop(2027, || Instance::start(&acked_config));
    assert_all_archived_once("acknowledgements", &archive, &acked);
}

/// The embedded default with `OTTERLINE_ACKNOWLEDGEMENTS=true`: SIGKILL at seeded random
/// moments loses no acknowledged span (cost, aggregate, anomaly and health on the path).
#[test]
fn the_default_pipeline_with_acknowledgements_survives_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let env = [("OTTERLINE_ACKNOWLEDGEMENTS", "true"), ("OTTERLINE_DATA_DIR", dir.to_str().unwrap())];
    let acked = acked_kill_loop(2028, || Instance::start_default_with_env(&env));
    assert_all_archived_once("default pipeline with acknowledgements", &dir.join("parquet"), &acked);
}

#[test]
fn sigkill_at_random_moments_loses_nothing_accepted_and_duplicates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let mut rng = otterline_bench::Rng::new(2026);
    let mut required: Vec<(u64, u64)> = Vec::new();
    let mut next_id = 1u64;
    let (mut kills, mut acked_total) = (0, 0u64);
    for cycle in 0..10 {
        let inst = Instance::start(&config(&archive, ""));
        let stop = Arc::new(AtomicBool::new(false));
        let sender = send_until(inst.http, next_id, (50, 200, Duration::ZERO), stop.clone());
        let wait = 400 + rng.next_u64() % 2000;
        std::thread::sleep(Duration::from_millis(wait));
        let killed_at = Instant::now();
        inst.signal(libc::SIGKILL);
        kills += 1;
        stop.store(true, Ordering::Relaxed);
        let (sent, next) = sender.join().unwrap();
        next_id = next;
        acked_total += sent.acked.iter().map(|a| a.2).sum::<u64>();
        // Accepted by the exporter at least sync_interval (100 ms) before the kill: the
        // receiver's 200 a second before it leaves the pipeline ample time to hand it over.
        let settled = sent.acked.iter().filter(|(at, _, _)| *at + Duration::from_secs(1) <= killed_at);
        required.extend(settled.map(|&(_, first, n)| (first, n)));
        assert!(!sent.acked.is_empty(), "cycle {cycle}: nothing was acknowledged in {wait} ms");
        drop(inst);
    }
    // One more start recovers what the last kill left; a clean stop writes everything.
    let mut inst = Instance::start(&config(&archive, ""));
    assert!(inst.terminate().success());
    let stderr = inst.stderr();
    let counts = span_counts(&archive);
    let missing: Vec<u64> =
        required.iter().flat_map(|&(first, n)| first..first + n).filter(|id| !counts.contains_key(id)).collect();
    let duplicates: u64 = counts.values().filter(|&&n| n > 1).map(|n| n - 1).sum();
    eprintln!(
        "{kills} kills, {acked_total} spans acknowledged, {} required, {} archived, {} missing, {duplicates} duplicates",
        required.iter().map(|r| r.1).sum::<u64>(),
        counts.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "{} accepted spans lost, e.g. {:?}", missing.len(), &missing[..missing.len().min(5)]);
    assert_eq!(duplicates, 0, "spans archived twice");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let temps = glob::glob(&format!("{}/**/.*.tmp", archive.display())).unwrap().count();
    assert_eq!(temps, 0, "temp files left after a clean stop");
}

#[test]
fn a_full_disk_refuses_with_one_clear_line_and_archives_everything_once_space_returns() {
    let data = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&data.path().join("disk"), "24m");
    let archive = disk.0.join("archive");
    let mut inst = Instance::start(&config(&archive, ", segment_size: 1MiB"));
    let filler = fill_disk(&disk.0, 2 * 1024 * 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_until(inst.http, 1, (20, 2000, Duration::from_millis(20)), stop.clone());
    // About 1,000 spans of 2 KB a second: the 2 MiB left fill within a few seconds.
    std::thread::sleep(Duration::from_secs(6));
    let during = inst.stderr();
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = sender.join().unwrap();
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let refused: usize = sent.refused.iter().filter(|(s, _)| **s == 503).map(|(_, n)| n).sum();
    assert!(refused > 0, "a full disk must refuse (503), got {:?}", sent.refused);
    assert!(sent.refused.keys().all(|s| *s == 503 || *s == 429), "only retryable refusals: {:?}", sent.refused);
    let path = archive.display().to_string();
    let errors = during.lines().filter(|l| l.contains(" ERROR ") && l.contains(&path)).count();
    assert!(errors >= 1, "no error line names the archive path:\n{during}");
    // Every line about it, at any level (the engine's retries included): a few, not a flood.
    let lines: Vec<&str> = during.lines().filter(|l| l.contains(&path)).collect();
    assert!(lines.len() <= 4, "one clear line, not a flood: {lines:#?}");
    let counts = span_counts(&archive);
    let missing: Vec<u64> =
        sent.acked.iter().flat_map(|&(_, first, n)| first..first + n).filter(|id| !counts.contains_key(id)).collect();
    assert!(missing.is_empty(), "{} acknowledged spans missing", missing.len());
    assert!(counts.values().all(|&n| n == 1), "a span archived twice");
    eprintln!("{} spans acknowledged, {refused} requests refused while the disk was full", counts.len());
}

/// The `json` exporter on a full disk (issue: it used to drop the buffered lines of batches
/// already answered 200): refusals while the disk is full, and every acknowledged span in
/// the files, once, after space returns.
#[test]
fn a_full_disk_under_the_json_exporter_loses_no_acknowledged_span() {
    let data = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&data.path().join("disk"), "16m");
    let out = disk.0.join("json");
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  json: {{path: "{}", flush_interval: 1s}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [json]}}
"#,
        out.display()
    );
    let mut inst = Instance::start(&config);
    let filler = fill_disk(&disk.0, 1024 * 1024);
    let stop = Arc::new(AtomicBool::new(false));
    let sender = send_until(inst.http, 1, (20, 2000, Duration::from_millis(20)), stop.clone());
    std::thread::sleep(Duration::from_secs(5));
    std::fs::remove_file(&filler).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, _) = sender.join().unwrap();
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let refused: usize = sent.refused.iter().filter(|(s, _)| **s == 503).map(|(_, n)| n).sum();
    assert!(refused > 0, "a full disk must refuse (503), got {:?}", sent.refused);
    assert!(sent.refused.keys().all(|s| *s == 503 || *s == 429), "only retryable refusals: {:?}", sent.refused);
    let mut counts: HashMap<u64, u64> = HashMap::new();
    for sp in common::spans_of(&common::read_json_dir(&out.join("traces"), otterline_core::Signal::Traces)) {
        let id = u64::from_be_bytes(sp.span_id[..8].try_into().unwrap());
        *counts.entry(id).or_default() += 1;
    }
    let missing =
        sent.acked.iter().flat_map(|&(_, first, n)| first..first + n).filter(|id| !counts.contains_key(id)).count();
    assert_eq!(missing, 0, "acknowledged spans missing from the JSON files");
    assert!(counts.values().all(|&n| n == 1), "a span written twice");
    eprintln!("{} spans acknowledged, {refused} requests refused while the disk was full", counts.len());
}
