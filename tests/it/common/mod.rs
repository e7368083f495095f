//! Test harness: starts the real `otterline` binary on ephemeral loopback ports
//! and reads what it wrote.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use otterline_core::pdata::json;
use otterline_core::pdata::{logs::LogRecord, metrics::Metric, trace::Span};
use otterline_core::{Batch, Signal};

pub mod upstream;

pub const BIN: &str = env!("CARGO_BIN_EXE_otterline");

/// A config with OTLP in (gRPC + HTTP), JSON files out, and the health endpoint.
/// `{{GRPC}}`, `{{HTTP}}`, `{{HEALTH}}` and `{{DIR}}` are filled in by [`Instance::start`].
pub const BASIC: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:{{GRPC}}"}
      http: {endpoint: "127.0.0.1:{{HTTP}}"}
exporters:
  json: {path: "{{DIR}}/json", flush_interval: 100ms}
extensions:
  health_check: {endpoint: "127.0.0.1:{{HEALTH}}"}
service:
  extensions: [health_check]
  pipelines:
    traces: {receivers: [otlp], exporters: [json]}
    metrics: {receivers: [otlp], exporters: [json]}
    logs: {receivers: [otlp], exporters: [json]}
"#;

/// reqwest is built with `rustls-no-provider` (for the alert exporter), which applies to
/// every client in the test binaries too: install the process-wide provider first.
pub fn crypto() {
    otterline_alert::install_crypto();
}

/// An unused loopback port (bound, then released), never the same one twice in this
/// process: all the integration tests share one binary and run on parallel threads.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("no free port on 127.0.0.1");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Instance {
    child: Option<Child>,
    pub grpc: u16,
    pub http: u16,
    pub health: u16,
    /// Self-metrics (`/metrics`) port.
    pub metrics: u16,
    /// The dashboard's port (`{{DASHBOARD}}` in templates; the default pipeline's dashboard).
    pub dashboard: u16,
    pub dir: tempfile::TempDir,
}

/// Writes `telemetry.yaml` (self-metrics on a free loopback port, instead of the default
/// 8888 that parallel tests would share) into `dir`; pass it as a second `--config`.
pub fn telemetry_config(dir: &Path) -> (PathBuf, u16) {
    let port = free_port();
    let path = dir.join("telemetry.yaml");
    std::fs::write(&path, format!("service:\n  telemetry:\n    metrics:\n      address: \"127.0.0.1:{port}\"\n"))
        .expect("write telemetry.yaml");
    (path, port)
}

impl Instance {
    /// Writes `template` as the config (placeholders filled) and starts the binary; waits until healthy.
    pub fn start(template: &str) -> Instance {
        Self::start_with_env(template, &[])
    }

    pub fn start_with_env(template: &str, env: &[(&str, &str)]) -> Instance {
        crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let (grpc, http, health, dashboard) = (free_port(), free_port(), free_port(), free_port());
        let config = fill(template, grpc, http, health, dir.path()).replace("{{DASHBOARD}}", &dashboard.to_string());
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).expect("write config");
        let (telemetry, metrics) = telemetry_config(dir.path());
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&config_path).arg("--config").arg(telemetry).current_dir(dir.path());
        let child = spawn(cmd, dir.path(), env);
        let inst = Instance { child: Some(child), grpc, http, health, metrics, dashboard, dir };
        inst.wait_healthy();
        inst
    }

    /// Starts the binary with no `--config` (the embedded default) in a temp working directory.
    pub fn start_default() -> Instance {
        Self::start_default_with_env(&[])
    }

    /// The embedded default with extra environment (e.g. `OTTERLINE_WINDOW`).
    pub fn start_default_with_env(extra: &[(&str, &str)]) -> Instance {
        crypto();
        let dir = tempfile::tempdir().expect("tempdir");
        let (grpc, http, health, metrics, dashboard) =
            (free_port(), free_port(), free_port(), free_port(), free_port());
        let mut cmd = Command::new(BIN);
        cmd.current_dir(dir.path());
        let mut env = vec![
            ("OTTERLINE_METRICS_ADDRESS", format!("127.0.0.1:{metrics}")),
            ("OTTERLINE_GRPC_ENDPOINT", format!("127.0.0.1:{grpc}")),
            ("OTTERLINE_HTTP_ENDPOINT", format!("127.0.0.1:{http}")),
            ("OTTERLINE_HEALTH_ENDPOINT", format!("127.0.0.1:{health}")),
            ("OTTERLINE_DASHBOARD_ENDPOINT", format!("127.0.0.1:{dashboard}")),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let child = spawn(cmd, dir.path(), &env);
        let inst = Instance { child: Some(child), grpc, http, health, metrics, dashboard, dir };
        inst.wait_healthy();
        inst
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// The self-metrics text (`GET /metrics`).
    pub fn metrics_text(&self) -> String {
        http_get(self.metrics, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// The value of one Prometheus sample, e.g. `otterline_exporter_dropped_items_total{exporter="otlp",signal="traces"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        metric_value(&self.metrics_text(), series)
    }

    /// GET on the health endpoint: (status code, body).
    pub fn health(&self) -> Option<(u16, String)> {
        http_get(self.health, "/")
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some((200, _)) = self.health() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("otterline did not become healthy in 20 s; stderr:\n{}", self.stderr());
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid we spawned; no memory is touched.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGTERM, then wait (at most 60 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait(Duration::from_secs(60))
    }

    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("otterline did not exit within {limit:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every batch in the finished JSON files of `signal`, in file order.
    pub fn json_batches(&self, signal: Signal) -> Vec<Batch> {
        read_json_dir(&self.dir.path().join("json").join(signal.as_str()), signal)
    }

    pub fn spans(&self) -> Vec<Span> {
        spans_of(&self.json_batches(Signal::Traces))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(mut cmd: Command, dir: &Path, env: &[(&str, &str)]) -> Child {
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr).env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn otterline")
}

/// SIGTERM to a child started by a test, and a wait of at most 60 s.
pub fn terminate_child(child: &mut Child) -> ExitStatus {
    // SAFETY: kill(2) with a pid we spawned; no memory is touched.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn fill(template: &str, grpc: u16, http: u16, health: u16, dir: &Path) -> String {
    template
        .replace("{{GRPC}}", &grpc.to_string())
        .replace("{{HTTP}}", &http.to_string())
        .replace("{{HEALTH}}", &health.to_string())
        .replace("{{DIR}}", &dir.display().to_string())
}

/// Resident memory of a process, in KiB (`VmRSS` of `/proc/<pid>/status`; 0 when gone).
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The value of `series` (name and labels exactly as rendered) in Prometheus text.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A minimal HTTP/1.0 GET over loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let status = resp.split_whitespace().nth(1)?.parse().ok()?;
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Reads every finished (non-hidden) `.jsonl[.gz|.zst]` file in `dir`, in name order.
pub fn read_json_dir(dir: &Path, signal: Signal) -> Vec<Batch> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("dir entry").path()).collect(),
        Err(_) => return Vec::new(),
    };
    files.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    files.sort();
    let mut out = Vec::new();
    for f in files {
        for line in read_text(&f).lines() {
            out.push(json::decode(signal, line.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
        }
    }
    out
}

pub fn read_text(path: &Path) -> String {
    let f = std::fs::File::open(path).expect("open");
    let mut s = String::new();
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(f).read_to_string(&mut s).expect("gunzip");
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(f).expect("zstd").read_to_string(&mut s).expect("unzstd");
    } else {
        std::io::BufReader::new(f).read_to_string(&mut s).expect("read");
    }
    s
}

pub fn spans_of(batches: &[Batch]) -> Vec<Span> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Traces(r) = b {
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    out.extend(ss.spans.iter().cloned());
                }
            }
        }
    }
    out
}

pub fn logs_of(batches: &[Batch]) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Logs(r) = b {
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    out.extend(sl.log_records.iter().cloned());
                }
            }
        }
    }
    out
}

pub fn metrics_of(batches: &[Batch]) -> Vec<Metric> {
    let mut out = Vec::new();
    for b in batches {
        if let Batch::Metrics(r) = b {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    out.extend(sm.metrics.iter().cloned());
                }
            }
        }
    }
    out
}

/// The string value of attribute `key`.
pub fn attr<'a>(
    attrs: &'a [otterline_core::pdata::common::KeyValue],
    key: &str,
) -> Option<&'a otterline_core::pdata::common::any_value::Value> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).and_then(|v| v.value.as_ref())
}

/// Python from the test venv (`OTTERLINE_PYTHON`, else `<repo>/.venv/bin/python`).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("OTTERLINE_PYTHON") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "the Python test venv is missing at {}: run `scripts/test` (or `scripts/setup-venv`) first",
        p.display()
    );
    p
}

/// The string bodies of log records, sorted (panics on a non-string body).
pub fn string_bodies(logs: &[LogRecord]) -> Vec<String> {
    use otterline_core::pdata::common::any_value::Value as V;
    let mut out: Vec<String> = logs
        .iter()
        .map(|l| match l.body.as_ref().and_then(|b| b.value.as_ref()) {
            Some(V::StringValue(s)) => s.clone(),
            other => panic!("not a string body: {other:?}"),
        })
        .collect();
    out.sort();
    out
}

/// Replays the Parquet archive at `archive` into OTLP/JSON files under `out/<signal>/`
/// (`otterline replay`, its config written beside `out`), with `extra` arguments.
pub fn replay_to_json(archive: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let config = format!(
        "exporters:\n  json: {{path: \"{}\"}}\nservice:\n  pipelines:\n    all: {{exporters: [json]}}\n",
        out.display()
    );
    let cfg = out.with_extension("replay.yaml");
    std::fs::write(&cfg, config).expect("write the replay config");
    Command::new(BIN)
        .arg("replay")
        .arg("--archive")
        .arg(archive)
        .arg("--config")
        .arg(&cfg)
        .args(extra)
        .env_remove("RUST_LOG")
        .output()
        .expect("run otterline replay")
}

/// A tmpfs mounted for the test (CI runs as root) and unmounted when dropped.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        assert!(ok.is_ok_and(|s| s.success()), "this test mounts a small tmpfs to fill it: run it as root (CI does)");
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills `dir` until about `leave` bytes are free; returns the filler's path.
pub fn fill_disk(dir: &Path, leave: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    drop(f);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len.saturating_sub(leave)).unwrap();
    path
}
