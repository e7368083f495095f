//! `otterline validate` (and `run`) report every class of config error with
//! file, line, column and key, and exit 2.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::BIN;

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

fn validate(files: &[(&str, &str)], env: &[(&str, &str)]) -> (Outcome, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("validate");
    for (name, text) in files {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        cmd.arg("--config").arg(&p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        },
        dir,
    )
}

/// Asserts exit 2 and that stderr holds `error: <file>:<rest>` for each expected message.
fn expect_errors(text: &str, expected: &[&str]) {
    let (o, dir) = validate(&[("c.yaml", text)], &[]);
    assert_eq!(o.code, 2, "stdout:{}\nstderr:{}", o.stdout, o.stderr);
    let file = dir.path().join("c.yaml").display().to_string();
    for e in expected {
        let want = format!("error: {file}:{e}");
        assert!(o.stderr.contains(&want), "missing {want:?} in:\n{}", o.stderr);
    }
    assert!(o.stderr.contains(&format!("config is invalid: {} error(s)", expected.len())), "{}", o.stderr);
}

const GOOD: &str = "receivers:\n  otlp:\n    protocols:\n      grpc:\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n";

#[test]
fn valid_config_exits_0() {
    let (o, _d) = validate(&[("c.yaml", GOOD)], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(o.stdout.trim(), "config is valid");
    assert_eq!(o.stderr, "");
}

#[test]
fn embedded_default_is_valid() {
    let out = Command::new(BIN).arg("validate").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).arg("default-config").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("receivers:"));
}

#[test]
fn yaml_syntax_error() {
    expect_errors(
        "receivers:\n  otlp: {protocols: [grpc\nexporters: {}\n",
        &["3:10: YAML syntax error: illegal placement of ':' indicator"],
    );
}

#[test]
fn unknown_keys_at_every_level() {
    let text = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpont: 127.0.0.1:4317\nexporter:\n  debug:\nexporters:\n  debug:\n    verbose: true\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n      processor: []\n  telemetry:\n    logs: {lvl: debug}\n";
    expect_errors(
        text,
        &[
            "6:1: exporter: unknown top-level key `exporter`; expected one of: receivers, processors, exporters, extensions, service, connectors",
            "5:9: receivers.otlp.protocols.grpc.endpont: unknown field `endpont`, expected one of `endpoint`, `max_recv_msg_size_mib`, `tls`, `auth`",
            "10:5: exporters.debug.verbose: unknown field `verbose`, expected one of `verbosity`, `sampling_initial`, `sampling_thereafter`",
            "16:7: service.pipelines.traces.processor: unknown key `processor` in pipeline; expected one of: receivers, processors, exporters",
            "18:12: service.telemetry.logs.lvl: unknown field `lvl`, expected `level` or `encoding`",
        ],
    );
}

#[test]
fn unknown_component_type() {
    let text = GOOD
        .replace("  debug:\n", "  debug:\n  kafka/out:\n")
        .replace("exporters: [debug]", "exporters: [debug, kafka/out]");
    expect_errors(
        &text,
        &["7:3: exporters.kafka/out: unknown exporter type `kafka`; known types: alert, debug, json, nop, otlp, otlp_grpc, otlp_http, otlphttp, parquet"],
    );
    // A near miss gets a suggestion.
    let text = GOOD
        .replace("  debug:\n", "  debug:\n  otlp_htp:\n")
        .replace("exporters: [debug]", "exporters: [debug, otlp_htp]");
    expect_errors(
        &text,
        &["7:3: exporters.otlp_htp: unknown exporter type `otlp_htp`; did you mean `otlp_http`? known types:"],
    );
}

/// A Collector config: `otlphttp` (the Collector's name for the HTTP exporter) and the
/// extensions that touch no data are accepted; the extensions warn once at start.
#[test]
fn collector_names_and_data_free_extensions_are_accepted() {
    let text = "receivers:\n  otlp:\n    protocols:\n      http: {endpoint: \"127.0.0.1:{{HTTP}}\"}\nexporters:\n  otlphttp:\n    endpoint: http://127.0.0.1:9\n    compression: gzip\nextensions:\n  health_check: {endpoint: \"127.0.0.1:{{HEALTH}}\"}\n  pprof: {endpoint: localhost:1777}\n  zpages: {endpoint: localhost:55679}\n  memory_ballast: {size_mib: 64}\nservice:\n  extensions: [health_check, pprof, zpages, memory_ballast]\n  pipelines:\n    traces: {receivers: [otlp], exporters: [otlphttp]}\n";
    let (o, _d) = validate(&[("c.yaml", &text.replace("{{HTTP}}", "4318").replace("{{HEALTH}}", "13133"))], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let mut inst = common::Instance::start(text);
    assert!(inst.terminate().success());
    let log = inst.stderr();
    for ext in ["pprof", "zpages", "memory_ballast"] {
        let lines: Vec<&str> =
            log.lines().filter(|l| l.contains("WARN") && l.contains(&format!("extension={ext}"))).collect();
        assert_eq!(lines.len(), 1, "one warning for {ext}:\n{log}");
        assert!(lines[0].contains("does nothing in Otterline"), "{}", lines[0]);
    }
}

#[test]
fn undefined_references() {
    let text = GOOD
        .replace("exporters: [debug]", "exporters: [debug, json/archive]")
        .replace("receivers: [otlp]", "receivers: [otlp]\n      processors: [batch]")
        + "  extensions: [health_check]\n";
    expect_errors(
        &text,
        &[
            "11:20: service.pipelines.traces.processors: processor `batch` is not defined under `processors`",
            "12:26: service.pipelines.traces.exporters: exporter `json/archive` is not defined under `exporters`",
            "13:16: service.extensions: extension `health_check` is not defined under `extensions`",
        ],
    );
}

#[test]
fn bad_values() {
    let text = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: localhost\n        max_request_body_size: lots\nexporters:\n  json:\n    flush_interval: 10\n    compression: brotli\nservice:\n  shutdown_timeout: soon\n  pipelines:\n    logs: {receivers: [otlp], exporters: [json]}\n";
    let (o, _d) = validate(&[("c.yaml", text)], &[]);
    assert_eq!(o.code, 2);
    // One error per component (the first bad key of each), plus the service key.
    assert!(
        o.stderr.contains("c.yaml:6:32: receivers.otlp.protocols.http.max_request_body_size: invalid size \"lots\""),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr.contains("c.yaml:9:21: exporters.json.flush_interval: duration \"10\" needs a unit, e.g. \"10s\""),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains("c.yaml:12:21: service.shutdown_timeout: invalid duration \"soon\": write a number and a unit, e.g. 30s, 200ms or 1h30m"), "{}", o.stderr);
    // A semantic check after parsing also names the key.
    let text = "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: localhost\nexporters:\n  json:\n    path: /tmp/x\nservice:\n  pipelines:\n    logs: {receivers: [otlp], exporters: [json]}\n";
    expect_errors(
        text,
        &["5:19: receivers.otlp.protocols.http.endpoint: endpoint \"localhost\" needs a port, e.g. \"127.0.0.1:4317\""],
    );
    let text = "receivers:\n  otlp:\nexporters:\n  json:\nservice:\n  pipelines:\n    logs: {receivers: [otlp], exporters: [json]}\n";
    let (o, d) = validate(&[("c.yaml", text)], &[]);
    assert_eq!(o.code, 2);
    let f = d.path().join("c.yaml").display().to_string();
    assert!(
        o.stderr.contains(&format!("{f}:2:3: receivers.otlp.protocols: enable at least one protocol")),
        "{}",
        o.stderr
    );
    assert!(o.stderr.contains(&format!("{f}:4:3: exporters.json.path: `path` is required")), "{}", o.stderr);
}

#[test]
fn forwarding_memory_and_telemetry_settings_name_their_key() {
    let text = r#"receivers:
  otlp:
    protocols:
      grpc:
processors:
  memory_limiter:
    check_interval: 1s
exporters:
  otlp:
    compression: gzip
  otlp_http:
    endpoint: "collector:4318"
  otlp/tls:
    endpoint: "collector:4317"
    tls: {ca_file: /nonexistent/ca.pem}
  otlp/retry:
    endpoint: "collector:4317"
    retry_on_failure: {multiplier: 0.5}
service:
  telemetry:
    metrics: {address: "nowhere"}
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter], exporters: [otlp, otlp_http, otlp/tls, otlp/retry]}
"#;
    expect_errors(
        text,
        &[
            "21:24: service.telemetry.metrics.address: endpoint \"nowhere\" needs a port",
            "7:5: processors.memory_limiter.limit_mib: set limit_mib (or limit_percentage of the container's memory limit)",
            "10:5: exporters.otlp.endpoint: set the upstream's address, e.g. `endpoint: collector.example:4317`",
            "12:15: exporters.otlp_http.endpoint: \"collector:4318\" needs a scheme: write http://collector:4318 or https://collector:4318",
            "15:20: exporters.otlp/tls.tls.ca_file: cannot read /nonexistent/ca.pem",
            "18:36: exporters.otlp/retry.retry_on_failure.multiplier: must be at least 1",
        ],
    );
}

#[test]
fn unused_component_is_a_warning() {
    let text = GOOD.replace("  debug:\n", "  debug:\n  nop:\n");
    let (o, d) = validate(&[("c.yaml", &text)], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let f = d.path().join("c.yaml").display().to_string();
    assert!(
        o.stderr.contains(&format!(
            "warning: {f}:7:3: exporters.nop: exporter `nop` is defined but not used in any pipeline"
        )),
        "{}",
        o.stderr
    );
}

#[test]
fn environment_expansion() {
    let text = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: ${env:OTL_TEST_ENDPOINT}\n      http:\n        endpoint: ${OTL_TEST_UNSET_X:-127.0.0.1:4318}\nexporters:\n  json:\n    path: \"$${not_expanded}/${env:OTL_TEST_UNSET_Y}\"\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [json]}\n";
    let (o, d) = validate(&[("c.yaml", text)], &[("OTL_TEST_ENDPOINT", "127.0.0.1:14317")]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let f = d.path().join("c.yaml").display().to_string();
    assert!(o.stderr.contains(&format!("warning: {f}:10:11: exporters.json.path: environment variable OTL_TEST_UNSET_Y is not set; using an empty value")), "{}", o.stderr);
    // Without the variable the endpoint is empty, which is an error at that key.
    let (o, _d) = validate(&[("c.yaml", text)], &[]);
    assert_eq!(o.code, 2);
    assert!(o.stderr.contains("receivers.otlp.protocols.grpc.endpoint"), "{}", o.stderr);
    expect_errors(
        &text.replace("${env:OTL_TEST_ENDPOINT}", "${file:/etc/x}"),
        &["5:19: receivers.otlp.protocols.grpc.endpoint: unsupported config provider `file`"],
    );
}

#[test]
fn several_files_merge_and_name_their_own_lines() {
    let base = GOOD;
    let overlay = "exporters:\n  debug:\n    verbosity: loud\n";
    let (o, d) = validate(&[("base.yaml", base), ("overlay.yaml", overlay)], &[]);
    assert_eq!(o.code, 2);
    let f = d.path().join("overlay.yaml").display().to_string();
    assert!(o.stderr.contains(&format!("error: {f}:3:16: exporters.debug.verbosity: unknown variant `loud`, expected one of `basic`, `normal`, `detailed`")), "{}", o.stderr);
    let (o, _d) =
        validate(&[("base.yaml", base), ("overlay.yaml", "exporters:\n  debug:\n    verbosity: detailed\n")], &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
}

#[test]
fn missing_file_and_run_with_a_bad_config() {
    let out = Command::new(BIN).args(["validate", "--config", "/nonexistent/otterline.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("error: cannot read config file /nonexistent/otterline.yaml: No such file or directory"));
    let out = Command::new(BIN).args(["--config", "/nonexistent/otterline.yaml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("otterline: not started: the config has 1 error(s)"));
}

#[test]
fn every_shipped_pipeline_validates() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files: Vec<std::path::PathBuf> = vec![format!("{root}/pipelines/default.yaml").into()];
    for e in std::fs::read_dir(format!("{root}/pipelines/examples")).unwrap() {
        files.push(e.unwrap().path());
    }
    files.push(format!("{root}/examples/compose/gateway.yaml").into());
    // The Kubernetes example's ConfigMap holds a config too.
    let manifest = std::fs::read_to_string(format!("{root}/examples/kubernetes/sidecar.yaml")).unwrap();
    let start = manifest.find("  config.yaml: |\n").expect("ConfigMap config.yaml") + "  config.yaml: |\n".len();
    let embedded: String = manifest[start..]
        .lines()
        .take_while(|l| !l.starts_with("---"))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("k8s-configmap.yaml");
    std::fs::write(&k8s, embedded).unwrap();
    files.push(k8s);
    assert!(files.len() >= 5);
    for f in files {
        let out = Command::new(BIN)
            .arg("validate")
            .arg("--config")
            .arg(&f)
            .env("UPSTREAM_ENDPOINT", "gateway:4317")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", f.display(), String::from_utf8_lossy(&out.stderr));
    }
}

/// Runs `otterline validate` on `text`, killing it after 10 s (a hang is a failure).
fn validate_bounded(text: &str) -> (Option<i32>, String, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(&p, text).unwrap();
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .arg("validate")
        .arg("--config")
        .arg(&p)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
            return (status.code(), err, started.elapsed());
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("validate still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A billion-laughs file, 100,000 nested sequences and 80,000 components: each a clear
/// error (or a verdict) with a position, quickly, in bounded memory.
#[test]
fn yaml_bombs_and_deep_nesting_are_refused_clearly() {
    let mut laughs = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs += &format!("a{i}: &a{i} [{refs}]\n");
    }
    let (code, err, took) = validate_bounded(&laughs);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("c.yaml:") && err.contains("expands to more than 1000000 values"), "{err}");
    eprintln!("billion laughs refused in {took:?}");

    let (code, err, took) = validate_bounded(&"- ".repeat(100_000));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("c.yaml:1:") && err.contains("nest deeper than 128 levels"), "{err}");
    eprintln!("100,000 nested sequences refused in {took:?}");

    let mut many = String::from("receivers:\n  otlp:\n    protocols: {grpc: {}}\nexporters:\n");
    for i in 0..80_000 {
        many += &format!("  nop/{i}: {{}}\n");
    }
    many += "service:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [nop/0]}\n";
    let (code, err, took) = validate_bounded(&many);
    assert_eq!(code, Some(0), "{err}");
    eprintln!("80,000 components validated in {took:?}");
}

/// Acknowledgements with a `batch` processor would answer before the data is durable.
#[test]
fn acknowledgements_refuse_a_batch_processor_in_their_pipeline() {
    let text = "receivers:\n  otlp:\n    acknowledgements: true\n    protocols:\n      grpc:\nprocessors:\n  batch:\nexporters:\n  debug:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [debug]\n";
    expect_errors(
        text,
        &["14:20: service.pipelines.traces.processors: receiver `otlp` has acknowledgements on, which a `batch` processor would answer before the data is durable"],
    );
}
