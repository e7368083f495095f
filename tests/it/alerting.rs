//! The `alert` exporter against real peers: a Prometheus Alertmanager (Debian's
//! `prometheus-alertmanager`, started here on 127.0.0.1) and a loopback HTTP server that
//! records webhook and Slack posts.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, http_get, Instance, BIN};
use serde_json::Value;

type Posts = Arc<Mutex<Vec<(String, Value)>>>;

/// A tiny HTTP/1.1 server: records every POST (path, JSON body) and answers 200.
fn recorder() -> (u16, Posts) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let posts: Posts = Default::default();
    let p = posts.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if r.read_line(&mut first).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            p.lock().unwrap().push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, posts)
}

struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alertmanager() -> Alertmanager {
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} is missing: install Debian's prometheus-alertmanager (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        "route:\n  receiver: blackhole\n  group_wait: 1s\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get(port, "/-/ready").map(|(c, _)| c) != Some(200) {
        assert!(Instant::now() < deadline, "Alertmanager did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Alertmanager { child, port, _dir: dir }
}

fn am_alerts(port: u16) -> Vec<Value> {
    let (code, body) = http_get(port, "/api/v2/alerts").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Vec<Value>>(&body).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An anomaly event as the `anomaly` processor writes it, in OTLP/JSON.
fn event(state: &str, severity: &str, episode: i64) -> String {
    let name = if state == "resolved" { "otterline.anomaly.resolved" } else { "otterline.anomaly" };
    let s = |k: &str, v: &str| format!(r#"{{"key":"{k}","value":{{"stringValue":"{v}"}}}}"#);
    let d = |k: &str, v: f64| format!(r#"{{"key":"{k}","value":{{"doubleValue":{v}}}}}"#);
    let attrs = [
        s("otterline.anomaly.type", "latency"),
        s("otterline.anomaly.severity", severity),
        s("otterline.anomaly.state", state),
        s("otterline.anomaly.series", "support-agent / chat gpt-4o / chat / gpt-4o"),
        s("otterline.anomaly.metric", "otterline.operation"),
        format!(r#"{{"key":"otterline.anomaly.episode_id","value":{{"intValue":"{episode}"}}}}"#),
        d("otterline.anomaly.observed", 3.1),
        d("otterline.anomaly.baseline", 1.0),
        d("otterline.anomaly.threshold", 2.0),
        s("otterline.anomaly.started_at", "2026-11-23T05:00:00Z"),
        s("otterline.anomaly.suggestion", "p95 of support-agent / chat gpt-4o is 3.1x its baseline since 05:00 UTC; check provider latency or prompt size"),
        s("gen_ai.request.model", "gpt-4o"),
        s("gen_ai.operation.name", "chat"),
        s("service.name", "support-agent"),
    ];
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"1763874000000000000","eventName":"{name}","severityNumber":17,"attributes":[{}]}}]}}]}}]}}"#,
        attrs.join(",")
    )
}

fn post_event(inst: &Instance, body: String) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/logs", inst.http))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn anomalies_reach_alertmanager_webhooks_and_slack_once_per_episode() {
    let am = alertmanager();
    let (rec, posts) = recorder();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  alert:
    webhook: {{endpoint: "http://127.0.0.1:{rec}/webhook", timeout: 2s, retries: 1}}
    slack: {{webhook_url: "http://127.0.0.1:{rec}/slack"}}
    alertmanager: {{endpoint: "http://127.0.0.1:{}", resend_interval: 1s, labels: {{cluster: test}}}}
    file: {{path: "{{{{DIR}}}}/alerts.ndjson"}}
    history_path: "{{{{DIR}}}}/history.ndjson"
    group_wait: 0s
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [otlp], exporters: [alert]}}
"#,
        am.port
    );
    let mut inst = Instance::start(&config);
    let webhook =
        |p: &Posts| p.lock().unwrap().iter().filter(|(path, _)| path == "/webhook").cloned().collect::<Vec<_>>();
    let slack = |p: &Posts| p.lock().unwrap().iter().filter(|(path, _)| path == "/slack").cloned().collect::<Vec<_>>();

    // Fired: Alertmanager shows it with identity labels; webhook and Slack get one message.
    post_event(&inst, event("firing", "high", 7));
    wait_for("the alert in Alertmanager", || !am_alerts(am.port).is_empty());
    let a = &am_alerts(am.port)[0];
    assert_eq!(a["labels"]["alertname"], "otterline_latency");
    assert_eq!(a["labels"]["service"], "support-agent");
    assert_eq!(a["labels"]["severity"], "high");
    assert_eq!(a["labels"]["gen_ai_request_model"], "gpt-4o");
    assert_eq!(a["labels"]["cluster"], "test");
    assert!(a["labels"].get("otterline.anomaly.series").is_none(), "series is an annotation, not a label");
    assert_eq!(a["annotations"]["observed"], "3.1");
    assert_eq!(a["status"]["state"], "active");
    wait_for("the webhook post", || webhook(&posts).len() == 1 && slack(&posts).len() == 1);
    let w = &webhook(&posts)[0].1;
    assert_eq!(w["status"], "firing");
    assert_eq!(w["service"], "support-agent");
    assert_eq!(w["alerts"][0]["reason"], "fired");
    let text = slack(&posts)[0].1["text"].as_str().unwrap().to_string();
    assert!(
        text.contains("*support-agent*") && text.contains("[HIGH] latency fired support-agent / chat gpt-4o"),
        "{text}"
    );

    // The same episode again: deduplicated. A rising severity: one escalation.
    post_event(&inst, event("firing", "high", 7));
    post_event(&inst, event("escalated", "critical", 7));
    wait_for("the escalation", || webhook(&posts).len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(webhook(&posts).len(), 2, "the duplicate was not sent");
    assert_eq!(webhook(&posts)[1].1["alerts"][0]["reason"], "escalated");
    wait_for("the escalated severity in Alertmanager", || {
        am_alerts(am.port).iter().any(|a| a["labels"]["severity"] == "critical")
    });

    // Resolved: gone from Alertmanager, resolution posted.
    post_event(&inst, event("resolved", "critical", 7));
    wait_for("the resolution post", || webhook(&posts).len() == 3);
    assert_eq!(webhook(&posts)[2].1["status"], "resolved");
    assert!(webhook(&posts)[2].1["alerts"][0]["time_to_resolve_s"].as_f64().is_some());
    wait_for("the alert to leave Alertmanager", || am_alerts(am.port).iter().all(|a| a["status"]["state"] != "active"));

    assert!(inst.terminate().success(), "{}", inst.stderr());
    // The history, as `otterline alerts` prints it.
    let out = Command::new(BIN).args(["alerts", "--history"]).arg(inst.path().join("history.ndjson")).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for state in ["fired", "escalated", "resolved"] {
        assert!(table.contains(state), "{table}");
    }
    assert!(table.contains("3 entries; 1 fired, 1 resolved"), "{table}");
    assert_eq!(common::read_text(&inst.path().join("alerts.ndjson")).lines().count(), 3);
}

/// A peer that accepts connections and never answers (a hung webhook endpoint).
fn silent_peer() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// Alertmanager forgets a firing alert at its `endsAt` (4 × `resend_interval` after the
/// last post), so an alert that stays active for many intervals proves the re-sends. The
/// first test never saw a gap: it looked once right after firing, well inside the first
/// `endsAt`, and once after resolving. Here a webhook that never answers sits beside
/// Alertmanager: before each channel had its own lane, the exporter waited on that webhook
/// (timeout × retries) and sent nothing to Alertmanager meanwhile.
#[test]
fn a_firing_alert_stays_active_in_alertmanager_until_resolved_even_beside_a_hung_webhook() {
    let am = alertmanager();
    let hung = silent_peer();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  alert:
    webhook: {{endpoint: "http://127.0.0.1:{hung}/hook", timeout: 3s, retries: 3}}
    alertmanager: {{endpoint: "http://127.0.0.1:{}", resend_interval: 1s}}
    group_wait: 0s
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [otlp], exporters: [alert]}}
"#,
        am.port
    );
    let mut inst = Instance::start(&config);
    let active = |port| am_alerts(port).iter().filter(|a| a["status"]["state"] == "active").count();
    post_event(&inst, event("firing", "high", 3));
    wait_for("the alert in Alertmanager", || active(am.port) == 1);
    // Eight intervals, twice the first endsAt: active at every look.
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        assert_eq!(active(am.port), 1, "the firing alert left Alertmanager: it was not re-sent");
        std::thread::sleep(Duration::from_millis(250));
    }
    post_event(&inst, event("resolved", "high", 3));
    let resolved = Instant::now();
    wait_for("the alert to leave Alertmanager", || active(am.port) == 0);
    assert!(resolved.elapsed() <= Duration::from_millis(1500), "resolution took {:?}", resolved.elapsed());
    assert!(inst.terminate().success(), "{}", inst.stderr());
}

#[test]
fn email_over_smtp_to_a_real_server() {
    // aiosmtpd (from the test venv) stores every message it receives in a maildir.
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let mut smtp = Command::new(common::python())
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(&maildir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the SMTP server", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{endpoint: "127.0.0.1:{{{{HTTP}}}}"}}
exporters:
  alert:
    email: {{host: 127.0.0.1, port: {port}, tls: none, from: "Otterline <otterline@example.com>", to: [oncall@example.com], min_severity: medium}}
    group_wait: 0s
extensions:
  health_check: {{endpoint: "127.0.0.1:{{{{HEALTH}}}}"}}
service:
  extensions: [health_check]
  pipelines:
    logs: {{receivers: [otlp], exporters: [alert]}}
"#
    );
    let mut inst = Instance::start(&config);
    post_event(&inst, event("firing", "low", 3)); // below min_severity: no email
    post_event(&inst, event("firing", "high", 4));
    post_event(&inst, event("resolved", "high", 4));
    let messages = || -> Vec<String> {
        std::fs::read_dir(maildir.join("new"))
            .map(|rd| rd.flatten().map(|e| std::fs::read_to_string(e.path()).unwrap_or_default()).collect())
            .unwrap_or_default()
    };
    wait_for("two emails", || messages().len() == 2);
    assert!(inst.terminate().success());
    let mut all = messages();
    all.sort_by_key(|m| m.contains("resolved:"));
    assert!(all[0].contains("Subject: [Otterline] HIGH 1 anomaly on support-agent"), "{}", all[0]);
    assert!(
        all[0].contains("To: oncall@example.com")
            && all[0].contains("[HIGH] latency fired support-agent / chat gpt-4o"),
        "{}",
        all[0]
    );
    assert!(all[1].contains("Subject: [Otterline] resolved: 1 anomaly on support-agent"), "{}", all[1]);
    let _ = smtp.kill();
    let _ = smtp.wait();
}
