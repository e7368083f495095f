//! `otterline query | report | budget check | compare` on an archive written by the
//! embedded default pipeline, with planted facts the commands must find — and nothing else:
//!
//! 1. rag-worker's cost rises ~55 % in the last week, driven by gpt-4o output tokens;
//! 2. search-api's `vector-search` operation is slow (≈2 s against ≈0.1 s);
//! 3. support-bot's quality score degrades day by day; rag-worker's is stable;
//! 4. checkout-agent variant v2 is 10 % slower than v1 with 300 samples each;
//! 5. variant v3 has only 10 samples.
//!
//! Statistics are checked against scipy (in the test venv) on the same values.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{Instance, BIN};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

const DAY_NS: u64 = 86_400_000_000_000;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}
fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}
fn i(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}
fn d(v: f64) -> any_value::Value {
    any_value::Value::DoubleValue(v)
}

/// Deterministic uniform and normal draws.
struct Rng(u64);
impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        let (u1, u2) = (self.unit().max(1e-12), self.unit());
        mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

struct Gen {
    rng: Rng,
    next_id: u64,
    by_resource: Vec<(Vec<KeyValue>, Vec<Span>)>,
}

impl Gen {
    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        resource: Vec<KeyValue>,
        start: u64,
        ms: f64,
        name: &str,
        attrs: Vec<KeyValue>,
        error: Option<&str>,
    ) {
        self.next_id += 1;
        let span = Span {
            trace_id: self.next_id.to_be_bytes().repeat(2),
            span_id: self.next_id.to_be_bytes().to_vec(),
            name: name.into(),
            kind: 3,
            start_time_unix_nano: start,
            end_time_unix_nano: start + (ms.max(1.0) * 1e6) as u64,
            attributes: attrs,
            status: error.map(|m| Status { code: status::StatusCode::Error as i32, message: m.into() }),
            ..Default::default()
        };
        match self.by_resource.iter_mut().find(|(r, _)| *r == resource) {
            Some((_, spans)) => spans.push(span),
            None => self.by_resource.push((resource, vec![span])),
        }
    }
}

fn service(name: &str) -> Vec<KeyValue> {
    vec![kv("service.name", s(name))]
}

fn llm(model: &str, op: &str, input: i64, output: i64) -> Vec<KeyValue> {
    vec![
        kv("gen_ai.request.model", s(model)),
        kv("gen_ai.operation.name", s(op)),
        kv("gen_ai.usage.input_tokens", i(input)),
        kv("gen_ai.usage.output_tokens", i(output)),
    ]
}

/// The planted archive, written once by the embedded default pipeline and shared by the tests.
fn archive() -> &'static Path {
    static ARCHIVE: OnceLock<(Instance, PathBuf)> = OnceLock::new();
    &ARCHIVE
        .get_or_init(|| {
            let mut inst = Instance::start_default();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            let day0 = (now / DAY_NS - 22) * DAY_NS;
            let mut g = Gen { rng: Rng(0x5eed), next_id: 0, by_resource: Vec::new() };
            for day in 0..21u64 {
                let base = day0 + day * DAY_NS + 9 * 3_600_000_000_000;
                let at = |k: u64| base + k * 60_000_000_000;
                for k in 0..40 {
                    let out = if day >= 14 { 600 } else { 300 };
                    let mut a = llm("gpt-4o", "chat", 1000, out);
                    let q = g.rng.normal(0.85, 0.02);
                    a.push(kv("quality.score", d(q)));
                    let ms = g.rng.normal(800.0, 50.0);
                    g.span(service("rag-worker"), at(k), ms, "chat gpt-4o", a, None);
                }
                for k in 0..20 {
                    let ms = g.rng.normal(300.0, 30.0);
                    g.span(
                        service("rag-worker"),
                        at(40 + k),
                        ms,
                        "chat gpt-4o-mini",
                        llm("gpt-4o-mini", "chat", 500, 100),
                        None,
                    );
                }
                for k in 0..30 {
                    let mut a = llm("gpt-4o-mini", "chat", 400, 150);
                    let q = 0.9 - 0.015 * day as f64 + g.rng.normal(0.0, 0.01);
                    a.push(kv("quality.score", d(q)));
                    a.push(kv("user.satisfaction", d(0.8 + g.rng.normal(0.0, 0.02))));
                    let err = match k {
                        0..=4 => Some("provider timeout"),
                        5..=6 => Some("rate limited"),
                        _ => None,
                    };
                    let ms = g.rng.normal(300.0, 30.0);
                    g.span(service("support-bot"), at(k), ms, "chat gpt-4o-mini", a, err);
                }
                // A model missing from the price table: unpriced, never a made-up $0.
                for k in 0..2 {
                    let ms = g.rng.normal(500.0, 20.0);
                    g.span(
                        service("labs-agent"),
                        at(k),
                        ms,
                        "chat acme-llm-9",
                        llm("acme-llm-9", "chat", 700, 50),
                        None,
                    );
                }
                for k in 0..30 {
                    let ms = g.rng.normal(2000.0, 200.0);
                    g.span(service("search-api"), at(k), ms, "vector-search", Vec::new(), None);
                    let ms = g.rng.normal(100.0, 10.0);
                    g.span(service("search-api"), at(k), ms, "rerank", Vec::new(), None);
                }
            }
            // A/B: 300 spans per variant spread over the 21 days, v2 10 % slower; v3 has 10.
            for (version, n, mean) in [("v1", 300u64, 400.0), ("v2", 300, 440.0), ("v3", 10, 400.0)] {
                let mut res = service("checkout-agent");
                res.push(kv("deployment.version", s(version)));
                for k in 0..n {
                    let start = day0 + (k * 21 / n) * DAY_NS + 10 * 3_600_000_000_000 + k * 1_000_000_000;
                    let ms = g.rng.normal(mean, 40.0).round();
                    g.span(res.clone(), start, ms, "checkout", Vec::new(), None);
                }
            }
            let client = reqwest::blocking::Client::new();
            for (resource, spans) in std::mem::take(&mut g.by_resource) {
                for chunk in spans.chunks(500) {
                    let req = ExportTraceServiceRequest {
                        resource_spans: vec![ResourceSpans {
                            resource: Some(Resource { attributes: resource.clone(), ..Default::default() }),
                            scope_spans: vec![ScopeSpans { spans: chunk.to_vec(), ..Default::default() }],
                            ..Default::default()
                        }],
                    };
                    post_traces(&client, &inst, &req);
                }
            }
            assert!(inst.terminate().success(), "{}", inst.stderr());
            let dir = inst.path().join("otterline-data/parquet");
            (inst, dir)
        })
        .1
}

/// Posts a request as OTLP/HTTP protobuf and checks it was accepted.
fn post_traces(client: &reqwest::blocking::Client, inst: &Instance, req: &ExportTraceServiceRequest) {
    let r = client
        .post(format!("http://127.0.0.1:{}/v1/traces", inst.http))
        .header("Content-Type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn otterline(args: &[&str]) -> Output {
    let out = Command::new(BIN).args(args).env_remove("RUST_LOG").output().unwrap();
    out
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let out = otterline(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn dir() -> String {
    archive().display().to_string()
}

fn insights(report: &serde_json::Value) -> Vec<String> {
    report["insights"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[test]
fn query_prints_tables_csv_and_json() {
    let dir = dir();
    let rows = ok_json(&[
        "query",
        "--archive",
        &dir,
        "--format",
        "json",
        "SELECT service_name, count(*) AS n FROM spans GROUP BY 1 ORDER BY 1",
    ]);
    let counts: Vec<(String, i64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["service_name"].as_str().unwrap().into(), r["n"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("checkout-agent".into(), 610),
            ("labs-agent".into(), 42),
            ("rag-worker".into(), 1260),
            ("search-api".into(), 1260),
            ("support-bot".into(), 630)
        ]
    );
    let out =
        otterline(&["query", "--archive", &dir, "--format", "csv", "SELECT count(*) AS n FROM spans WHERE is_error"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n147\n");
    let out = otterline(&["query", "--archive", &dir, "SELECT count(*) AS n FROM spans"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 3802 |"), "{}", String::from_utf8_lossy(&out.stdout));
    let bad = otterline(&["query", "--archive", &dir, "SELECT nope FROM spans"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"), "{}", String::from_utf8_lossy(&bad.stderr));
    let missing = otterline(&["query", "--archive", "/nonexistent/archive", "SELECT 1"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn weekly_report_finds_the_cost_rise_and_its_driver_and_nothing_else() {
    let r = ok_json(&["report", "--archive", &dir(), "--kind", "weekly", "--format", "json"]);
    let ins = insights(&r);
    let cost: Vec<&String> = ins.iter().filter(|i| i.starts_with("cost of")).collect();
    assert_eq!(cost.len(), 1, "{ins:#?}");
    assert!(cost[0].starts_with("cost of rag-worker rose"), "{}", cost[0]);
    assert!(cost[0].ends_with("week over week, driven by gpt-4o output tokens"), "{}", cost[0]);
    let pct: f64 = cost[0].split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!((40.0..=60.0).contains(&pct), "{pct}");
    assert!(ins.iter().any(|i| i.starts_with("forecast cost for the next week")), "{ins:#?}");
}

#[test]
fn cost_report_ranks_models_and_drivers() {
    let r = ok_json(&["report", "--archive", &dir(), "--kind", "cost", "--format", "json"]);
    let by_model = &r["sections"][0]["table"]["rows"];
    assert_eq!(by_model[0][0], "gpt-4o", "{by_model}");
    let ins = insights(&r);
    assert!(ins[0].starts_with("gpt-4o is the largest cost"), "{ins:#?}");
    assert_eq!(ins.iter().filter(|i| i.starts_with("cost of")).count(), 1, "{ins:#?}");
}

#[test]
fn unpriced_spend_is_null_not_zero_and_every_cost_report_says_so() {
    let rows = ok_json(&[
        "query",
        "--archive",
        &dir(),
        "--format",
        "json",
        "SELECT count(*) AS n, count(cost) AS priced, sum(cost) AS spend, count(*) FILTER (WHERE unpriced) AS unpriced \
         FROM spans WHERE gen_ai_request_model = 'acme-llm-9'",
    ]);
    // (JSON output leaves NULL columns out: no `spend` at all, not 0.)
    assert_eq!(rows, serde_json::json!([{"n": 42, "priced": 0, "unpriced": 42}]));
    for kind in ["cost", "daily"] {
        let r = ok_json(&["report", "--archive", &dir(), "--kind", kind, "--format", "json"]);
        let ins = insights(&r);
        assert!(
            ins.iter().any(|i| i.starts_with("42 calls (31500 tokens) could not be priced — acme-llm-9")),
            "{kind}: {ins:#?}"
        );
        let section =
            r["sections"].as_array().unwrap().iter().find(|s| s["title"].as_str().unwrap().starts_with("Unpriced"));
        let row = &section.unwrap()["table"]["rows"][0];
        assert_eq!(row, &serde_json::json!(["acme-llm-9", 42, 29400, 2100]), "{kind}");
    }
}

#[test]
fn bottleneck_report_finds_the_slow_operation() {
    let r = ok_json(&["report", "--archive", &dir(), "--kind", "bottleneck", "--format", "json"]);
    let ins = insights(&r);
    assert!(ins[0].starts_with("vector-search accounts for"), "{ins:#?}");
    let by_p95 = &r["sections"][1]["table"]["rows"];
    assert_eq!(by_p95[0][0], "vector-search");
    let p95 = by_p95[0][1].as_f64().unwrap();
    assert!((2100.0..2600.0).contains(&p95), "{p95}");
}

#[test]
fn quality_report_calls_only_support_bot_degrading() {
    let r = ok_json(&["report", "--archive", &dir(), "--kind", "quality", "--format", "json"]);
    let trends = r["sections"][0]["trends"].as_array().unwrap();
    let verdict =
        |s: &str| trends.iter().find(|t| t["series"] == s).map(|t| t["verdict"].as_str().unwrap().to_string());
    assert_eq!(verdict("support-bot").as_deref(), Some("degrading"));
    assert_eq!(verdict("rag-worker").as_deref(), Some("stable"));
    let ins: Vec<String> = insights(&r).into_iter().filter(|i| !i.contains("alert")).collect();
    assert_eq!(ins.len(), 1, "{ins:#?}");
    assert!(ins[0].starts_with("quality of support-bot is degrading: -0.01"), "{ins:#?}");
}

#[test]
fn every_report_kind_renders_in_every_format() {
    let dir = dir();
    for kind in ["daily", "weekly", "monthly", "cost", "bottleneck", "quality", "satisfaction", "errors"] {
        let out = otterline(&["report", "--archive", &dir, "--kind", kind, "--format", "md"]);
        assert!(out.status.success(), "{kind}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("## Key insights"));
    }
    let errors = ok_json(&["report", "--archive", &dir, "--kind", "errors", "--format", "json"]);
    assert!(insights(&errors)[0].contains("\"provider timeout\""), "{:#?}", insights(&errors));
    let bad = otterline(&["report", "--archive", &dir, "--kind", "yearly"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn html_report_renders_its_charts_in_headless_chromium() {
    let out_dir = tempfile::tempdir().unwrap();
    let html = out_dir.path().join("weekly.html");
    let out = otterline(&[
        "report",
        "--archive",
        &dir(),
        "--kind",
        "weekly",
        "--format",
        "html",
        "-o",
        html.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.contains("<svg") && text.contains("rag-worker") && !text.contains("<script"));
    let shot = out_dir.path().join("weekly.png");
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("chromium is needed for this test (Debian package `chromium`; .ci/run installs it)");
    let run = Command::new(chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,2400"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 20_000, "a page with charts is more than a blank screenshot ({} bytes)", png.len());
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(!log.contains("Uncaught") && !log.contains("ERR_FILE_NOT_FOUND"), "{log}");
    // Kept next to the test's other output for a human to look at.
    let keep = std::env::temp_dir().join("otterline-weekly-report.png");
    let _ = std::fs::copy(&shot, keep);
}

fn scipy(a: &[f64], b: &[f64]) -> serde_json::Value {
    let script = "import json,sys\nfrom scipy import stats\nd=json.load(sys.stdin)\n\
t=stats.ttest_ind(d['b'],d['a'],equal_var=False)\nm=stats.mannwhitneyu(d['a'],d['b'],method='asymptotic')\n\
print(json.dumps({'t':t.statistic,'df':t.df,'p':t.pvalue,'u':m.statistic,'mw_p':m.pvalue}))\n";
    let mut child = Command::new(common::python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::json!({"a": a, "b": b}).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn durations(version: &str) -> Vec<f64> {
    let sql = format!("SELECT duration_ms FROM spans WHERE resource_attributes['deployment.version'] = '{version}'");
    let rows = ok_json(&["query", "--archive", &dir(), "--format", "json", &sql]);
    rows.as_array().unwrap().iter().map(|r| r["duration_ms"].as_f64().unwrap()).collect()
}

#[test]
fn compare_finds_the_slower_variant_and_agrees_with_scipy() {
    let c = ok_json(&["compare", "--archive", &dir(), "--by", "deployment.version", "v1", "v2", "--format", "json"]);
    assert_eq!(c["outcome"], "a_better", "{c:#}");
    let rel = c["relative_difference_pct"].as_f64().unwrap();
    assert!((7.0..13.0).contains(&rel), "{rel}");
    assert!(c["verdict"].as_str().unwrap().starts_with("v2 is"), "{}", c["verdict"]);
    let reference = scipy(&durations("v1"), &durations("v2"));
    let close = |ours: &serde_json::Value, theirs: &serde_json::Value| {
        let (a, b) = (ours.as_f64().unwrap(), theirs.as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-300), "ours {a} vs scipy {b}");
    };
    close(&c["welch"]["t"], &reference["t"]);
    close(&c["welch"]["df"], &reference["df"]);
    close(&c["mann_whitney"]["u"], &reference["u"]);
    // p-values this small are compared on a log scale.
    let lp = |v: &serde_json::Value| v.as_f64().unwrap().log10();
    assert!((lp(&c["welch"]["p_value"]) - lp(&reference["p"])).abs() < 1e-3, "{c:#} {reference}");
    assert!((lp(&c["mann_whitney"]["p_value"]) - lp(&reference["mw_p"])).abs() < 1e-3, "{c:#} {reference}");
    assert_eq!(c["a"]["n"], 300);
}

#[test]
fn compare_refuses_a_winner_with_too_few_samples() {
    let c = ok_json(&["compare", "--archive", &dir(), "--by", "deployment.version", "v1", "v3", "--format", "json"]);
    assert_eq!(c["outcome"], "insufficient_samples");
    assert_eq!(c["b"]["n"], 10);
    let text = otterline(&["compare", "--archive", &dir(), "--by", "deployment.version", "v1", "v3"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("not enough samples to call a winner"));
}

#[test]
fn budget_check_exit_codes() {
    let dir = dir();
    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let strict = write(
        "strict.yaml",
        "budgets:\n  - name: search-p95\n    metric: p95_latency\n    max: 1.0\n    scope: {service: search-api}\n    mode: strict\n  - name: bot-errors\n    metric: error_rate\n    max: 0.5\n    scope: {service: support-bot}\n    mode: strict\n",
    );
    let out = otterline(&["budget", "check", "--archive", &dir, "--budgets", &strict]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL budget \"search-p95\": p95_latency of service search-api is"), "{text}");
    assert!(!text.contains("bot-errors\":"), "{text}");
    assert!(text.contains("2 budget(s) checked: 1 violation(s), 1 of them strict -> failing"), "{text}");

    let warn = write(
        "warn.yaml",
        "budgets:\n  - name: daily-cost\n    metric: cost\n    per: day\n    max: 0.01\n    mode: warn\n",
    );
    let out = otterline(&["budget", "check", "--archive", &dir, "--budgets", &warn]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("WARN budget \"daily-cost\"").count(), 21);
    let out = otterline(&["budget", "check", "--archive", &dir, "--budgets", &warn, "--strict"]);
    assert_eq!(out.status.code(), Some(1));

    let bad = write("bad.yaml", "budgets:\n  - name: x\n    metric: p99\n    max: 1\n");
    let out = otterline(&["budget", "check", "--archive", &dir, "--budgets", &bad]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml:3:13"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Archive v2 next to files written before it: one directory with version 1 and version 2
/// files reads as one archive in `query` (attributes by key on both), `report` and
/// `replay` (values with their types).
#[test]
fn a_directory_of_version_1_and_version_2_files_reads_as_one_archive() {
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for (version, svc) in [(1, "old-writer"), (2, "new-writer")] {
        let config = format!(
            r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
processors:
  cost: {{}}
exporters:
  parquet: {{path: "{}", schema_version: {version}}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], processors: [cost], exporters: [parquet]}}
"#,
            archive.display()
        );
        let mut inst = Instance::start(&config);
        let spans: Vec<Span> = (0..10u64)
            .map(|k| {
                let mut attributes = llm("gpt-4o-mini", "chat", 100 * (k as i64 + 1), 10);
                attributes.push(kv("user.id", s(&format!("u-{}", k % 4))));
                attributes.push(kv("quality.score", d(0.5)));
                Span {
                    trace_id: vec![version as u8; 16],
                    span_id: [k.to_be_bytes(), [version as u8; 8]].concat()[8..].to_vec(),
                    name: "chat gpt-4o-mini".into(),
                    start_time_unix_nano: now - 60_000_000_000 + k,
                    end_time_unix_nano: now - 60_000_000_000 + k + 1_000_000,
                    attributes,
                    ..Default::default()
                }
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource { attributes: service(svc), ..Default::default() }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        };
        post_traces(&reqwest::blocking::Client::new(), &inst, &req);
        assert!(inst.terminate().success(), "{}", inst.stderr());
    }
    let files: Vec<String> = glob::glob(&format!("{}/traces/**/*.parquet", archive.display()))
        .unwrap()
        .map(|p| p.unwrap().display().to_string())
        .collect();
    assert!(files.iter().any(|f| f.ends_with(".v2.parquet")) && files.iter().any(|f| !f.ends_with(".v2.parquet")));

    let dir = archive.display().to_string();
    let rows = ok_json(&[
        "query",
        "--archive",
        &dir,
        "--format",
        "json",
        "SELECT service_name, count(*) AS n, sum(CAST(attributes['gen_ai.usage.input_tokens'] AS BIGINT)) AS input, \
         count(*) FILTER (WHERE attributes['user.id'] = 'u-1') AS u1, avg(quality) AS q, \
         count(attributes_types) AS typed FROM spans GROUP BY 1 ORDER BY 1",
    ]);
    let want = serde_json::json!([
        {"service_name": "new-writer", "n": 10, "input": 5500, "u1": 3, "q": 0.5, "typed": 10},
        {"service_name": "old-writer", "n": 10, "input": 5500, "u1": 3, "q": 0.5, "typed": 10},
    ]);
    assert_eq!(rows, want);
    let cost = ok_json(&["report", "--archive", &dir, "--kind", "cost", "--format", "json"]);
    assert!(cost.to_string().contains("gpt-4o-mini"), "{cost}");

    let out = data.path().join("replayed");
    let r = common::replay_to_json(&archive, &out, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let spans = common::spans_of(&common::read_json_dir(&out.join("traces"), otterline_core::Signal::Traces));
    assert_eq!(spans.len(), 20);
    for sp in &spans {
        let tokens = sp.attributes.iter().find(|a| a.key == "gen_ai.usage.input_tokens").unwrap();
        assert!(
            matches!(
                tokens.value.as_ref().and_then(|v| v.value.as_ref()),
                Some(otterline_core::pdata::common::any_value::Value::IntValue(_))
            ),
            "an int stays an int in both versions: {tokens:?}"
        );
    }
}

/// OTLP/HTTP in, spans and logs into a Parquet archive at `archive`.
fn archive_config(archive: &std::path::Path) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  parquet: {{path: "{}"}}
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    traces: {{receivers: [otlp], exporters: [parquet]}}
    logs: {{receivers: [otlp], exporters: [parquet]}}
"#,
        archive.display()
    )
}

/// Reports carry the period's anomaly and budget alerts (the events the `anomaly`
/// processor archives as logs), and say so when none fired.
#[test]
fn reports_list_the_periods_alerts_or_say_that_none_fired() {
    common::crypto();
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let config = archive_config(&archive);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let client = reqwest::blocking::Client::new();
    let post_json = |inst: &Instance, signal: &str, body: String| {
        let r = client
            .post(format!("http://127.0.0.1:{}/v1/{signal}", inst.http))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
    };
    let log = |event: &str, attrs: &[(&str, &str)]| {
        let attrs: Vec<String> =
            attrs.iter().map(|(k, v)| format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#)).collect();
        format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"rag-worker"}}}}]}},"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{now}","eventName":"{event}","attributes":[{}]}}]}}]}}]}}"#,
            attrs.join(",")
        )
    };
    let spans = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"rag-worker"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"chat","startTimeUnixNano":"{}","endTimeUnixNano":"{now}"}}]}}]}}]}}"#,
        now - 1_000_000
    );
    let report = |kind: &str| {
        ok_json(&["report", "--archive", &archive.display().to_string(), "--kind", kind, "--format", "json"])
    };

    // Spans and an ordinary log, no anomaly event: the report says none fired.
    let mut inst = Instance::start(&config);
    post_json(&inst, "traces", spans.clone());
    post_json(&inst, "logs", log("app.started", &[]));
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let ins = insights(&report("daily"));
    assert!(ins.iter().any(|i| i == "no anomaly or budget alert fired in this period"), "{ins:#?}");

    // Two alerts fire (one escalates) and one resolves.
    let mut inst = Instance::start(&config);
    let ev = |state: &str, kind: &str, sev: &str| {
        log(
            if state == "resolved" { "otterline.anomaly.resolved" } else { "otterline.anomaly" },
            &[
                ("otterline.anomaly.state", state),
                ("otterline.anomaly.type", kind),
                ("otterline.anomaly.severity", sev),
                ("otterline.anomaly.series", "rag-worker / chat"),
                ("otterline.anomaly.suggestion", "p95 is 3x its baseline"),
            ],
        )
    };
    post_json(&inst, "logs", ev("firing", "latency", "high"));
    post_json(&inst, "logs", ev("escalated", "latency", "critical"));
    post_json(&inst, "logs", ev("firing", "budget", "medium"));
    post_json(&inst, "logs", ev("resolved", "latency", "critical"));
    assert!(inst.terminate().success(), "{}", inst.stderr());
    for kind in ["daily", "cost", "errors"] {
        let r = report(kind);
        let ins = insights(&r);
        assert!(
            ins.iter().any(|i| i.starts_with(
                "2 anomaly/budget alert(s) fired in this period (budget 1, latency 2), 1 escalation(s), 1 resolved"
            )),
            "{kind}: {ins:#?}"
        );
        assert!(!ins.iter().any(|i| i.starts_with("nothing stands out")), "{kind}: {ins:#?}");
        let section =
            r["sections"].as_array().unwrap().iter().find(|s| s["title"].as_str().unwrap().starts_with("Alerts"));
        let rows = section.unwrap()["table"]["rows"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 3, "{kind}: {rows:?}");
        assert!(rows.iter().all(|r| r[4] == "rag-worker" && r[6] == "p95 is 3x its baseline"), "{rows:?}");
    }
}

/// The bottleneck report blames the span that spends the time (self time), not the parent
/// that waits for it.
#[test]
fn bottleneck_report_uses_self_time_not_the_parents_total() {
    common::crypto();
    let data = tempfile::tempdir().unwrap();
    let archive = data.path().join("archive");
    let config = archive_config(&archive);
    let mut inst = Instance::start(&config);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let ms = 1_000_000u64;
    let mut spans = Vec::new();
    for t in 0..20u8 {
        let start = now - 60_000 * ms + t as u64 * 1_000 * ms;
        let sp = |id: u8, parent: Option<u8>, name: &str, from: u64, len: u64| Span {
            trace_id: vec![t + 1; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            kind: if parent.is_none() { 2 } else { 3 },
            start_time_unix_nano: from,
            end_time_unix_nano: from + len,
            ..Default::default()
        };
        // handle-request (1000 ms) waits for llm-call (900 ms); cache (300 ms) is a root.
        spans.push(sp(1, None, "handle-request", start, 1_000 * ms));
        spans.push(sp(2, Some(1), "llm-call", start + 50 * ms, 900 * ms));
        let mut cache = sp(3, None, "cache", start, 300 * ms);
        cache.trace_id = vec![t + 101; 16];
        spans.push(cache);
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: service("gateway"), ..Default::default() }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    };
    post_traces(&reqwest::blocking::Client::new(), &inst, &req);
    assert!(inst.terminate().success(), "{}", inst.stderr());
    let r =
        ok_json(&["report", "--archive", &archive.display().to_string(), "--kind", "bottleneck", "--format", "json"]);
    let ins = insights(&r);
    assert!(ins[0].starts_with("llm-call accounts for 69 %"), "{ins:#?}");
    let rows = r["sections"][0]["table"]["rows"].as_array().unwrap();
    let order: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(order, ["llm-call", "cache", "handle-request"]);
    assert_eq!(rows[2][3], 100.0, "handle-request's own time is 1000 - 900 ms");
}
