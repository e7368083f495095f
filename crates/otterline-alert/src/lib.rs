//! The `alert` exporter: turns `otterline.anomaly` / `otterline.anomaly.resolved` log
//! events (anomalies and budget breaches) into notifications, and ignores everything else.
//!
//! - **Dedup**: one notification per episode and fingerprint (type + series); repeats of
//!   an open episode are ignored.
//! - **Correlation**: alerts of one service that arrive within `group_wait` go out as one
//!   message (webhook, Slack, console, file).
//! - **Rate limiting**: at most `max_per_minute` notifications per channel; the rest are
//!   counted and logged, never silently lost from the history.
//! - **Escalation**: a rising severity re-notifies at once; an alert still open after
//!   `escalate_after` re-notifies once per that interval.
//! - **Resolution**: notified, with the time to resolve.
//! - **Alertmanager**: every alert is posted to `/api/v2/alerts` with identity labels
//!   (bounded: alertname, service, severity, operation, model, budget) and the numbers as
//!   annotations; firing alerts are re-sent every `resend_interval`; resolutions set `endsAt`.
//! - **History**: every fired, escalated and resolved alert is appended to `history_path`
//!   (NDJSON), which `otterline alerts` prints.
//! - **Delivery never stalls the pipeline**: each network channel (Alertmanager, webhook,
//!   Slack, e-mail) has its own [`Lane`], a task that sends its messages in order with the
//!   channel's timeout and retries. A slow or silent peer delays only its own lane (the
//!   exporter goes on re-sending to Alertmanager and notifying the other channels); a
//!   lane holds at most [`LANE_CAPACITY`] messages, more are counted and logged.

pub mod channels;
pub mod history;
pub mod model;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use otterline_core::component::{
    BuildContext, ComponentError, ExportError, Exporter, ExporterContext, ExporterFactory,
};
use otterline_core::config::ConfigError;
use otterline_core::health::ComponentHealth;
use otterline_core::{Batch, Signal, SignalSet};

use channels::{
    passes, AlertmanagerConfig, ConsoleConfig, EmailConfig, FileConfig, Item, Reason, SlackConfig, WebhookConfig,
};
use model::{severity_rank, Alert, SEVERITIES};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    pub console: Option<ConsoleConfig>,
    pub file: Option<FileConfig>,
    pub webhook: Option<WebhookConfig>,
    pub slack: Option<SlackConfig>,
    pub alertmanager: Option<AlertmanagerConfig>,
    pub email: Option<EmailConfig>,
    pub history_path: Option<PathBuf>,
    /// Alerts of one service arriving within this time are sent as one message.
    #[serde(with = "otterline_core::units::duration")]
    pub group_wait: Duration,
    pub max_per_minute: u32,
    #[serde(with = "otterline_core::units::duration")]
    pub escalate_after: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            console: None,
            file: None,
            webhook: None,
            slack: None,
            alertmanager: None,
            email: None,
            history_path: None,
            group_wait: Duration::from_secs(5),
            max_per_minute: 30,
            escalate_after: Duration::from_secs(1800),
        }
    }
}

/// Installs rustls' `ring` provider once (the HTTP client needs one).
pub fn install_crypto() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

pub struct AlertExporterFactory;

impl ExporterFactory for AlertExporterFactory {
    fn type_name(&self) -> &'static str {
        "alert"
    }
    fn description(&self) -> &'static str {
        "anomaly and budget events → console, NDJSON file, webhook, Slack, Alertmanager; dedup, grouping, escalation, history"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::of(Signal::Logs)
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
        let cfg: AlertConfig = ctx.parse()?;
        if cfg.console.is_none()
            && cfg.file.is_none()
            && cfg.webhook.is_none()
            && cfg.slack.is_none()
            && cfg.alertmanager.is_none()
            && cfg.email.is_none()
        {
            return Err(
                ctx.error("", "configure at least one channel: console, file, webhook, slack, alertmanager or email")
            );
        }
        if let Some(e) = &cfg.email {
            if e.to.is_empty() {
                return Err(ctx.error("email", "`to` needs at least one address"));
            }
            if e.username.is_some() != e.password.is_some() {
                return Err(ctx.error("email", "give both `username` and `password`, or neither"));
            }
        }
        let sev_ok = |s: &Option<String>| s.as_deref().is_none_or(|x| SEVERITIES.contains(&x));
        for (key, min) in [
            ("console", cfg.console.as_ref().and_then(|c| c.min_severity.clone())),
            ("file", cfg.file.as_ref().and_then(|c| c.min_severity.clone())),
            ("webhook", cfg.webhook.as_ref().and_then(|c| c.min_severity.clone())),
            ("slack", cfg.slack.as_ref().and_then(|c| c.min_severity.clone())),
            ("alertmanager", cfg.alertmanager.as_ref().and_then(|c| c.min_severity.clone())),
            ("email", cfg.email.as_ref().and_then(|c| c.min_severity.clone())),
        ] {
            if !sev_ok(&min) {
                return Err(ctx.error(key, format!("min_severity must be one of {}", SEVERITIES.join(", "))));
            }
        }
        for (key, url) in [
            ("webhook", cfg.webhook.as_ref().map(|w| &w.endpoint)),
            ("slack", cfg.slack.as_ref().map(|s| &s.webhook_url)),
            ("alertmanager", cfg.alertmanager.as_ref().map(|a| &a.endpoint)),
        ] {
            if let Some(u) = url {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(ctx.error(key, format!("{u:?} is not an http(s) URL")));
                }
            }
        }
        if cfg.max_per_minute == 0 {
            return Err(ctx.error("max_per_minute", "must be at least 1"));
        }
        Ok(Box::new(AlertExporter {
            cfg,
            name: ctx.id.to_string(),
            client: None,
            lanes: Lanes::default(),
            lane_warned: HashMap::new(),
            open: HashMap::new(),
            pending: Vec::new(),
            sent: HashMap::new(),
            health: None,
        }))
    }
}

struct Open {
    alert: Alert,
    opened: Instant,
    notified_severity: usize,
    last_reminder: Instant,
    last_am_send: Instant,
}

/// Messages a lane holds while its peer is slow; more are dropped, counted and logged.
pub const LANE_CAPACITY: usize = 256;

type Delivery = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One network channel's outbox: a task that awaits its deliveries one after another, so
/// a channel keeps its order (a resolution never overtakes its firing) and a slow peer
/// holds up nothing but itself.
pub struct Lane {
    channel: &'static str,
    tx: tokio::sync::mpsc::Sender<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl Lane {
    fn spawn(channel: &'static str) -> Lane {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Delivery>(LANE_CAPACITY);
        let task = tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                d.await;
            }
        });
        Lane { channel, tx, task }
    }

    /// Queues a delivery; false when the lane is full (the peer has been slow for a while).
    fn push(&self, d: Delivery) -> bool {
        self.tx.try_send(d).is_ok()
    }
}

/// The lanes of the configured network channels.
#[derive(Default)]
struct Lanes {
    alertmanager: Option<Lane>,
    webhook: Option<Lane>,
    slack: Option<Lane>,
    email: Option<Lane>,
}

impl Lanes {
    fn all(self) -> impl Iterator<Item = Lane> {
        [self.alertmanager, self.webhook, self.slack, self.email].into_iter().flatten()
    }
}

pub struct AlertExporter {
    cfg: AlertConfig,
    name: String,
    client: Option<reqwest::Client>,
    lanes: Lanes,
    /// When each channel's full lane was last logged (at most once a minute each).
    lane_warned: HashMap<&'static str, Instant>,
    open: HashMap<String, Open>,
    /// Items waiting for their group to be sent, with when they were queued.
    pending: Vec<(Instant, Item)>,
    /// Notifications per channel in the current minute.
    sent: HashMap<&'static str, (Instant, u32)>,
    health: Option<Arc<ComponentHealth>>,
}

impl AlertExporter {
    fn count(&self, key: &str, n: u64) {
        if let Some(h) = &self.health {
            h.add_extra(key, n);
        }
    }

    /// Hands a delivery to a channel's lane; a full lane is counted and logged.
    fn enqueue(&mut self, which: fn(&Lanes) -> &Option<Lane>, d: Delivery) {
        let Some(lane) = which(&self.lanes) else { return };
        if lane.push(d) {
            return;
        }
        let channel = lane.channel;
        self.count(&format!("{channel}_dropped"), 1);
        let last = self.lane_warned.get(channel);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            self.lane_warned.insert(channel, Instant::now());
            tracing::warn!(exporter = %self.name, channel, capacity = LANE_CAPACITY, "the channel is not keeping up (its peer is slow or unreachable); notifications are dropped (counted as {channel}_dropped; they are in the alert history)");
        }
    }

    /// Takes one slot of `channel`'s per-minute budget.
    fn allow(&mut self, channel: &'static str) -> bool {
        let max = self.cfg.max_per_minute;
        let e = self.sent.entry(channel).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= Duration::from_secs(60) {
            *e = (Instant::now(), 0);
        }
        if e.1 >= max {
            return false;
        }
        e.1 += 1;
        true
    }

    fn record(&self, item: &Item) {
        let Some(path) = &self.cfg.history_path else { return };
        let a = &item.alert;
        let line = json!({
            "time": otterline_core::time::rfc3339(std::time::SystemTime::now()),
            "state": item.reason.as_str(),
            "severity": a.severity,
            "type": a.kind,
            "service": a.service,
            "series": a.series,
            "fingerprint": a.fingerprint,
            "episode_id": a.episode_id,
            "started_at": a.started_at,
            "summary": a.summary,
            "time_to_resolve_s": item.time_to_resolve_s,
        });
        if let Err(e) = channels::append_ndjson(path, &[line]) {
            tracing::error!(exporter = %self.name, file = %path.display(), error = %e, "cannot append to the alert history");
        }
    }

    /// Folds one alert event into the open set; queues what must be notified.
    fn accept(&mut self, alert: Alert) {
        let now = Instant::now();
        let item = match (alert.state.as_str(), self.open.get_mut(&alert.fingerprint)) {
            ("resolved", Some(o)) if o.alert.episode_id == alert.episode_id || alert.episode_id == 0 => {
                let ttr = o.opened.elapsed().as_secs_f64();
                self.open.remove(&alert.fingerprint);
                Some(Item { alert: alert.clone(), reason: Reason::Resolved, time_to_resolve_s: Some(ttr) })
            }
            ("resolved", _) => None, // not ours, or already resolved
            (_, Some(o)) if o.alert.episode_id == alert.episode_id => {
                // The same episode again: only a rising severity is news.
                let rank = severity_rank(&alert.severity);
                o.alert = alert.clone();
                if rank > o.notified_severity {
                    o.notified_severity = rank;
                    Some(Item { alert: alert.clone(), reason: Reason::Escalated, time_to_resolve_s: None })
                } else {
                    self.count("deduplicated", 1);
                    None
                }
            }
            _ => {
                self.open.insert(
                    alert.fingerprint.clone(),
                    Open {
                        alert: alert.clone(),
                        opened: now,
                        notified_severity: severity_rank(&alert.severity),
                        last_reminder: now,
                        last_am_send: now,
                    },
                );
                Some(Item { alert: alert.clone(), reason: Reason::Fired, time_to_resolve_s: None })
            }
        };
        let Some(item) = item else { return };
        self.record(&item);
        if self.cfg.alertmanager.is_some() {
            self.send_to_alertmanager(&[(alert, item.reason == Reason::Resolved)]);
        }
        self.pending.push((now, item));
    }

    fn send_to_alertmanager(&mut self, alerts: &[(Alert, bool)]) {
        let Some(am) = self.cfg.alertmanager.clone() else { return };
        let alerts: Vec<(Alert, bool)> =
            alerts.iter().filter(|(a, _)| passes(&am.min_severity, &a.severity)).cloned().collect();
        if alerts.is_empty() {
            return;
        }
        let body = channels::alertmanager_payload(&alerts, &am);
        let url = format!("{}/api/v2/alerts", am.endpoint.trim_end_matches('/'));
        let Some(client) = self.client.clone() else { return };
        let (health, name, n) = (self.health.clone(), self.name.clone(), alerts.len() as u64);
        self.enqueue(
            |l| &l.alertmanager,
            Box::pin(async move {
                let result = channels::post(&client, &url, &body, &Default::default(), am.timeout, am.retries).await;
                report(&health, &name, "alertmanager", n, result);
            }),
        );
    }

    /// Sends the queued items: one message per service and channel.
    fn flush(&mut self, all: bool) {
        let wait = self.cfg.group_wait;
        let ready: Vec<Item> = if all || self.pending.first().is_some_and(|(t, _)| t.elapsed() >= wait) {
            self.pending.drain(..).map(|(_, i)| i).collect()
        } else {
            return;
        };
        let mut by_service: HashMap<String, Vec<Item>> = HashMap::new();
        for i in ready {
            by_service.entry(i.alert.service.clone()).or_default().push(i);
        }
        let mut services: Vec<(String, Vec<Item>)> = by_service.into_iter().collect();
        services.sort_by(|a, b| a.0.cmp(&b.0));
        for (service, items) in services {
            self.deliver(&service, &items);
        }
    }

    fn deliver(&mut self, service: &str, items: &[Item]) {
        let pick = |min: &Option<String>| {
            items.iter().filter(|i| passes(min, &i.alert.severity)).cloned().collect::<Vec<Item>>()
        };
        if let Some(c) = self.cfg.console.clone() {
            let sel = pick(&c.min_severity);
            if !sel.is_empty() && self.allow("console") {
                for i in &sel {
                    tracing::warn!(target: "otterline::alert", service, "{}", channels::line(i));
                }
            }
        }
        if let Some(f) = self.cfg.file.clone() {
            let sel = pick(&f.min_severity);
            if !sel.is_empty() && self.allow("file") {
                let lines: Vec<serde_json::Value> = sel.iter().map(|i| json!({"reason": i.reason.as_str(), "time_to_resolve_s": i.time_to_resolve_s, "alert": i.alert})).collect();
                if let Err(e) = channels::append_ndjson(&f.path, &lines) {
                    tracing::error!(exporter = %self.name, file = %f.path.display(), error = %e, "cannot write alerts");
                }
            }
        }
        if let Some(m) = self.cfg.email.clone() {
            let sel = pick(&m.min_severity);
            if !sel.is_empty() {
                if self.allow("email") {
                    let (subject, body) = channels::email_message(service, &sel);
                    let (health, name) = (self.health.clone(), self.name.clone());
                    self.enqueue(
                        |l| &l.email,
                        Box::pin(async move {
                            let result = channels::send_email(&m, &subject, &body).await;
                            report(&health, &name, "email", 1, result);
                        }),
                    );
                } else {
                    self.count("rate_limited", 1);
                    tracing::warn!(exporter = %self.name, "email rate limit reached; notification not sent (kept in the history)");
                }
            }
        }
        let Some(client) = self.client.clone() else { return };
        if let Some(w) = self.cfg.webhook.clone() {
            let sel = pick(&w.min_severity);
            if !sel.is_empty() {
                if self.allow("webhook") {
                    let body = channels::webhook_payload(service, &sel);
                    let (health, name, client) = (self.health.clone(), self.name.clone(), client.clone());
                    self.enqueue(
                        |l| &l.webhook,
                        Box::pin(async move {
                            let result =
                                channels::post(&client, &w.endpoint, &body, &w.headers, w.timeout, w.retries).await;
                            report(&health, &name, "webhook", 1, result);
                        }),
                    );
                } else {
                    self.count("rate_limited", 1);
                    tracing::warn!(exporter = %self.name, "webhook rate limit reached; notification not sent (kept in the history)");
                }
            }
        }
        if let Some(s) = self.cfg.slack.clone() {
            let sel = pick(&s.min_severity);
            if !sel.is_empty() {
                if self.allow("slack") {
                    let body = channels::slack_payload(service, &sel);
                    let (health, name) = (self.health.clone(), self.name.clone());
                    self.enqueue(
                        |l| &l.slack,
                        Box::pin(async move {
                            let result = channels::post(
                                &client,
                                &s.webhook_url,
                                &body,
                                &Default::default(),
                                s.timeout,
                                s.retries,
                            )
                            .await;
                            report(&health, &name, "slack", 1, result);
                        }),
                    );
                } else {
                    self.count("rate_limited", 1);
                    tracing::warn!(exporter = %self.name, "Slack rate limit reached; notification not sent (kept in the history)");
                }
            }
        }
    }

    /// Re-sends firing alerts to Alertmanager and reminds of long-open ones.
    fn periodic(&mut self) {
        let mut resend = Vec::new();
        let mut remind = Vec::new();
        let resend_every = self.cfg.alertmanager.as_ref().map(|a| a.resend_interval);
        for o in self.open.values_mut() {
            if resend_every.is_some_and(|r| o.last_am_send.elapsed() >= r) {
                o.last_am_send = Instant::now();
                resend.push((o.alert.clone(), false));
            }
            if o.last_reminder.elapsed() >= self.cfg.escalate_after {
                o.last_reminder = Instant::now();
                remind.push(o.alert.clone());
            }
        }
        if !resend.is_empty() {
            self.send_to_alertmanager(&resend);
        }
        for a in remind {
            let item = Item { alert: a, reason: Reason::StillFiring, time_to_resolve_s: None };
            self.record(&item);
            self.pending.push((Instant::now(), item));
        }
    }
}

/// Counts a delivery's outcome (`<channel>_sent` / `<channel>_failed`) and logs a failure.
fn report(health: &Option<Arc<ComponentHealth>>, name: &str, channel: &str, n: u64, result: Result<(), String>) {
    let outcome = if result.is_ok() { "sent" } else { "failed" };
    if let Some(h) = health {
        h.add_extra(&format!("{channel}_{outcome}"), n);
    }
    if let Err(e) = result {
        tracing::error!(exporter = %name, channel, error = %e, "alert delivery failed");
    }
}

/// How long shutdown waits for the lanes to send what they hold.
const LANE_DRAIN: Duration = Duration::from_secs(10);

#[async_trait]
impl Exporter for AlertExporter {
    async fn start(&mut self, ctx: &ExporterContext) -> Result<(), ComponentError> {
        self.health = Some(ctx.health.clone());
        install_crypto();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| ComponentError::new(format!("cannot build the HTTP client: {e}")))?;
        self.client = Some(client);
        let lane = |on: bool, channel| on.then(|| Lane::spawn(channel));
        self.lanes = Lanes {
            alertmanager: lane(self.cfg.alertmanager.is_some(), "alertmanager"),
            webhook: lane(self.cfg.webhook.is_some(), "webhook"),
            slack: lane(self.cfg.slack.is_some(), "slack"),
            email: lane(self.cfg.email.is_some(), "email"),
        };
        Ok(())
    }

    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let Batch::Logs(req) = batch else { return Ok(()) };
        for rl in &req.resource_logs {
            let svc = otterline_core::pdata::service_name(rl.resource.as_ref());
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    if let Some(a) = model::from_event(r, svc) {
                        self.accept(a);
                    }
                }
            }
        }
        if self.cfg.group_wait.is_zero() {
            self.flush(true);
        }
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_millis(500))
    }

    async fn tick(&mut self) -> Result<(), ExportError> {
        self.periodic();
        self.flush(false);
        Ok(())
    }

    async fn shutdown(&mut self) -> Result<(), ComponentError> {
        self.flush(true);
        // Closing the lanes lets each send what it holds, within LANE_DRAIN.
        let deadline = tokio::time::Instant::now() + LANE_DRAIN;
        for lane in std::mem::take(&mut self.lanes).all() {
            let Lane { channel, tx, mut task } = lane;
            drop(tx);
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(exporter = %self.name, channel, "shutdown: undelivered notifications dropped after {}s (the peer is not answering)", LANE_DRAIN.as_secs());
            }
        }
        Ok(())
    }
}
