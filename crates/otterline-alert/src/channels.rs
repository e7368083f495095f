//! Where notifications go: console (the log), an NDJSON file, a generic webhook, a Slack
//! incoming webhook, and Prometheus Alertmanager's API v2.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

use otterline_core::backoff::{Backoff, BackoffPolicy};

use crate::model::{severity_rank, Alert};

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Fired,
    Escalated,
    StillFiring,
    Resolved,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Fired => "fired",
            Reason::Escalated => "escalated",
            Reason::StillFiring => "still firing",
            Reason::Resolved => "resolved",
        }
    }
}

/// One alert in a notification, with why it is there.
#[derive(Debug, Clone)]
pub struct Item {
    pub alert: Alert,
    pub reason: Reason,
    /// Seconds from start to resolution (resolutions only).
    pub time_to_resolve_s: Option<f64>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_retries() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    #[serde(default)]
    pub min_severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub min_severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub endpoint: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", with = "otterline_core::units::duration")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub min_severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub webhook_url: String,
    #[serde(default = "default_timeout", with = "otterline_core::units::duration")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default)]
    pub min_severity: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URL, e.g. `http://127.0.0.1:9093`.
    pub endpoint: String,
    /// Firing alerts are sent again this often, as Alertmanager expects.
    #[serde(default = "default_resend", with = "otterline_core::units::duration")]
    pub resend_interval: Duration,
    #[serde(default = "default_timeout", with = "otterline_core::units::duration")]
    pub timeout: Duration,
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Static labels added to every alert (e.g. `cluster`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub min_severity: Option<String>,
}

fn default_resend() -> Duration {
    Duration::from_secs(60)
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption: only for a relay on localhost.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_timeout", with = "otterline_core::units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub min_severity: Option<String>,
}

fn default_smtp_port() -> u16 {
    587
}

/// Subject and plain-text body of the email for a group of alerts of one service.
pub fn email_message(service: &str, items: &[Item]) -> (String, String) {
    let resolved = items.iter().all(|i| i.reason == Reason::Resolved);
    let top = items.iter().map(|i| severity_rank(&i.alert.severity)).max().unwrap_or(0);
    let service = clean(service);
    let subject = format!(
        "[Otterline] {}{} on {service}",
        if resolved { "resolved: ".to_string() } else { format!("{} ", crate::model::SEVERITIES[top].to_uppercase()) },
        plural(items.len(), "anomaly", "anomalies")
    );
    let body: Vec<String> = items.iter().map(line).collect();
    (subject, body.join("\n") + "\n")
}

/// Sends one email over SMTP.
pub async fn send_email(cfg: &EmailConfig, subject: &str, body: &str) -> Result<(), String> {
    use lettre::message::{header::ContentType, Mailbox};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let from: Mailbox = cfg.from.parse().map_err(|e| format!("invalid from address {:?}: {e}", cfg.from))?;
    let mut builder = Message::builder().from(from).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in &cfg.to {
        builder = builder.to(to.parse::<Mailbox>().map_err(|e| format!("invalid to address {to:?}: {e}"))?);
    }
    let msg = builder.body(body.to_string()).map_err(|e| format!("cannot build the email: {e}"))?;
    let mut transport = match cfg.tls {
        SmtpTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host).map_err(|e| e.to_string())?
        }
        SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(|e| e.to_string())?,
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
    }
    .port(cfg.port)
    .timeout(Some(cfg.timeout));
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        transport = transport.credentials(Credentials::new(u.clone(), p.clone()));
    }
    transport.build().send(msg).await.map(|_| ()).map_err(|e| format!("SMTP {}:{}: {e}", cfg.host, cfg.port))
}

/// Passes severities at or above the minimum.
pub fn passes(min: &Option<String>, severity: &str) -> bool {
    min.as_deref().is_none_or(|m| severity_rank(severity) >= severity_rank(m))
}

fn icon(item: &Item) -> &'static str {
    match (item.reason, item.alert.severity.as_str()) {
        (Reason::Resolved, _) => ":white_check_mark:",
        (_, "critical") => ":rotating_light:",
        (_, "high") => ":red_circle:",
        (_, "medium") => ":large_orange_circle:",
        _ => ":large_yellow_circle:",
    }
}

/// One human-readable line per alert.
pub fn line(item: &Item) -> String {
    let a = &item.alert;
    let ttr = item.time_to_resolve_s.map(|s| format!(" after {}", human(s))).unwrap_or_default();
    format!(
        "[{}] {} {} {}{ttr}: {}",
        clean(&a.severity.to_uppercase()),
        clean(&a.kind.replace('_', " ")),
        item.reason.as_str(),
        clean(&a.series),
        clean(&a.summary)
    )
}

/// Most characters of telemetry-controlled text put into a notification.
const MAX_TEXT: usize = 500;

/// Telemetry-controlled text made safe for a one-line notification: control characters
/// (line breaks, terminal escape sequences) become spaces, and it is cut at [`MAX_TEXT`]
/// characters. Every channel applies it; Slack escapes on top ([`slack_escape`]).
pub fn clean(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_TEXT).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().nth(MAX_TEXT).is_some() {
        out.push('…');
    }
    out
}

/// Slack's mrkdwn control characters escaped, so that text from telemetry cannot ping a
/// channel (`<!channel>`), mention a user or disguise a link (`<https://…|…>`).
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn human(secs: f64) -> String {
    if secs >= 3600.0 {
        format!("{:.1} h", secs / 3600.0)
    } else if secs >= 60.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{secs:.0} s")
    }
}

/// The Slack message for a group of alerts of one service.
pub fn slack_payload(service: &str, items: &[Item]) -> Value {
    let service = slack_escape(&clean(service));
    let head = if items.iter().all(|i| i.reason == Reason::Resolved) {
        format!("*Otterline*: {} resolved on *{service}*", plural(items.len(), "anomaly", "anomalies"))
    } else {
        format!("*Otterline*: {} on *{service}*", plural(items.len(), "anomaly", "anomalies"))
    };
    let lines: Vec<String> = items.iter().map(|i| format!("{} {}", icon(i), slack_escape(&line(i)))).collect();
    json!({ "text": format!("{head}\n{}", lines.join("\n")) })
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The generic webhook body for a group of alerts of one service.
pub fn webhook_payload(service: &str, items: &[Item]) -> Value {
    let status = if items.iter().all(|i| i.reason == Reason::Resolved) { "resolved" } else { "firing" };
    json!({
        "receiver": "otterline",
        "status": status,
        "service": service,
        "alerts": items.iter().map(|i| json!({
            "reason": i.reason.as_str(),
            "time_to_resolve_s": i.time_to_resolve_s,
            "alert": i.alert,
        })).collect::<Vec<_>>(),
        "sent_at": otterline_core::time::rfc3339(std::time::SystemTime::now()),
    })
}

/// Alertmanager v2 alert objects. Firing alerts end `4 × resend_interval` from now unless
/// re-sent; resolved ones end now.
pub fn alertmanager_payload(alerts: &[(Alert, bool)], cfg: &AlertmanagerConfig) -> Value {
    let now = chrono::Utc::now();
    let ttl = chrono::Duration::from_std(cfg.resend_interval * 4).unwrap_or(chrono::Duration::minutes(4));
    Value::Array(
        alerts
            .iter()
            .map(|(a, resolved)| {
                let mut labels: BTreeMap<String, String> = cfg.labels.clone();
                labels.insert("alertname".into(), format!("otterline_{}", a.kind));
                labels.insert("service".into(), a.service.clone());
                labels.insert("severity".into(), a.severity.clone());
                labels.extend(a.labels.clone());
                let ends = if *resolved { now } else { now + ttl };
                json!({
                    "labels": labels,
                    "annotations": {
                        "summary": a.summary,
                        "series": a.series,
                        "observed": a.observed.to_string(),
                        "baseline": a.baseline.to_string(),
                        "threshold": a.threshold.to_string(),
                        "episode_id": a.episode_id.to_string(),
                    },
                    "startsAt": if a.started_at.is_empty() { now.to_rfc3339() } else { a.started_at.clone() },
                    "endsAt": ends.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    "generatorURL": "",
                })
            })
            .collect(),
    )
}

/// How a channel retries a failed POST (up to the channel's `retries`).
const POST_RETRY: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(200),
    max: Duration::from_secs(60),
    multiplier: 2.0,
    randomization_factor: 0.0,
    max_elapsed: Duration::ZERO,
};

/// POSTs JSON with a timeout and retries with exponential backoff.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    headers: &BTreeMap<String, String>,
    timeout: Duration,
    retries: u32,
) -> Result<(), String> {
    let mut backoff = Backoff::new(POST_RETRY);
    let mut last = String::new();
    for attempt in 0..=retries {
        let mut req = client.post(url).timeout(timeout).json(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => {
                let code = r.status();
                last = format!(
                    "{url} answered {code}: {}",
                    r.text().await.unwrap_or_default().chars().take(200).collect::<String>()
                );
                // A client error will not get better by retrying.
                if code.is_client_error() && code.as_u16() != 429 {
                    return Err(last);
                }
            }
            Err(e) => last = format!("{url}: {e}"),
        }
        if attempt < retries {
            // POST_RETRY has no max_elapsed: it always has a next wait.
            tokio::time::sleep(backoff.next_wait(None).unwrap_or(POST_RETRY.max)).await;
        }
    }
    Err(last)
}

/// Appends lines to an NDJSON file (created with its directory).
pub fn append_ndjson(path: &PathBuf, lines: &[Value]) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l.to_string());
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())?;
    f.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Item {
        let evil = "<!channel> <https://evil.example/login|Otterline: click to re-authenticate>";
        Item {
            alert: Alert {
                fingerprint: "f".into(),
                episode_id: 1,
                state: "firing".into(),
                severity: "high".into(),
                kind: "latency".into(),
                service: evil.into(),
                series: format!("{evil} / chat"),
                summary: "p95 is 3x\r\nBcc: victim@example.com\u{1b}[2J".into(),
                observed: 3.0,
                baseline: 1.0,
                threshold: 2.0,
                started_at: String::new(),
                at_unix_nano: 0,
                labels: Default::default(),
            },
            reason: Reason::Fired,
            time_to_resolve_s: None,
        }
    }

    #[test]
    fn slack_text_from_telemetry_cannot_ping_or_disguise_a_link() {
        let item = hostile();
        let text =
            slack_payload(&item.alert.service, std::slice::from_ref(&item))["text"].as_str().unwrap().to_string();
        assert!(!text.contains('<') && !text.contains('>'), "{text}");
        assert!(text.contains("&lt;!channel&gt; &lt;https://evil.example/login|Otterline"), "{text}");
        assert_eq!(text.lines().count(), 2, "the summary's line break is gone: {text}");
    }

    #[test]
    fn email_subject_and_console_lines_carry_no_control_characters() {
        let item = hostile();
        let (subject, body) = email_message("svc\r\nBcc: victim@example.com", std::slice::from_ref(&item));
        assert!(!subject.chars().any(char::is_control), "{subject:?}");
        assert_eq!(body.lines().count(), 1, "{body:?}");
        assert!(!line(&item).chars().any(char::is_control));
        let long = "x".repeat(2000);
        assert_eq!(clean(&long).chars().count(), MAX_TEXT + 1);
    }
}
