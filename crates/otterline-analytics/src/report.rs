//! `otterline report`: what happened over a period, in sentences, tables and charts.
//!
//! Kinds: `daily`, `weekly`, `monthly` (summaries per period and per dimension, with
//! period-over-period change), `cost` (by model / service / operation, top drivers, cost per
//! call and per 1K tokens), `bottleneck` (operations by share of total latency, p95/p99,
//! slowest traces), `quality` and `satisfaction` (daily means and their trends), `errors`
//! (categorised by status message / `error.type`, with trends).
//!
//! Trends are least-squares lines over daily values with a t-test on the slope: `stable`
//! unless p < 0.05, else `improving` or `degrading` depending on which direction is good
//! for the metric. Forecasts extend the daily line over the next period; the interval sums
//! the daily 95 % prediction bounds (conservative). Insights are the sentences a reader
//! should not miss, most important first.
//!
//! Why one file of this size: every report kind shares the period, trend and insight
//! helpers above the renderers, and the kinds differ only in their SQL and their sentences.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::archive::Archive;
use crate::chart::{self, Chart, Series};
use crate::stats::{self, Forecast, Verdict};
use crate::{num, rows, text, AnalyticsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Daily,
    Weekly,
    Monthly,
    Cost,
    Bottleneck,
    Quality,
    Satisfaction,
    Errors,
}

impl Kind {
    pub fn parse(s: &str) -> Result<Kind, String> {
        Ok(match s {
            "daily" => Kind::Daily,
            "weekly" => Kind::Weekly,
            "monthly" => Kind::Monthly,
            "cost" => Kind::Cost,
            "bottleneck" => Kind::Bottleneck,
            "quality" => Kind::Quality,
            "satisfaction" => Kind::Satisfaction,
            "errors" => Kind::Errors,
            o => {
                return Err(format!(
                    "unknown report kind {o:?}: use daily, weekly, monthly, cost, bottleneck, quality, satisfaction or errors"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            o => Err(format!("unknown format {o:?}: use md, html or json")),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A series' trend over daily values.
#[derive(Debug, Clone, Serialize)]
pub struct TrendRow {
    pub series: String,
    pub metric: String,
    pub days: usize,
    pub slope_per_day: f64,
    pub p_value: f64,
    pub verdict: Verdict,
    /// The next period's total (sums) or mean (rates, latencies, scores).
    pub forecast: Option<Forecast>,
    /// Last period against the one before, in percent.
    pub change_pct: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub title: String,
    pub table: Option<Table>,
    pub chart: Option<Chart>,
    pub trends: Vec<TrendRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub title: String,
    pub kind: Kind,
    pub from: String,
    pub to: String,
    pub spans: u64,
    pub insights: Vec<String>,
    pub sections: Vec<Section>,
}

pub struct Options {
    pub kind: Kind,
    /// Dimensions (`service`, `model`, `operation`, `name`, or a span attribute key).
    pub by: Vec<String>,
}

/// SQL for a dimension name.
fn dim_expr(d: &str) -> String {
    let e = match d {
        "service" | "service_name" => "service_name".to_string(),
        "model" | "gen_ai_request_model" => "gen_ai_request_model".to_string(),
        "operation" | "gen_ai_operation_name" => "gen_ai_operation_name".to_string(),
        "name" | "span" => "name".to_string(),
        other => format!("attributes[{}]", crate::sql_string(other)),
    };
    format!("COALESCE({e}, '(none)')")
}

fn key_expr(by: &[String]) -> String {
    let parts: Vec<String> = by.iter().map(|d| dim_expr(d)).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("concat_ws(' / ', {})", parts.join(", "))
    }
}

/// Days in order, and per metric: key → value per day.
type Daily = (Vec<String>, Vec<BTreeMap<String, Vec<Option<f64>>>>);

/// Daily values of several aggregates per key, in one scan.
async fn daily_many(archive: &Archive, key: &str, values_sql: &[&str], filter: &str) -> Result<Daily, AnalyticsError> {
    let cols: Vec<String> = values_sql.iter().enumerate().map(|(i, v)| format!("{v} AS v{i}")).collect();
    let sql = format!(
        "SELECT to_char(date_trunc('day', start_time), '%Y-%m-%d') AS day, {key} AS k, {} \
         FROM spans WHERE {filter} GROUP BY 1, 2 ORDER BY 1, 2",
        cols.join(", ")
    );
    let found = rows(archive, &sql).await?;
    let mut days: Vec<String> = found.iter().map(|r| text(r, "day")).collect();
    days.sort();
    days.dedup();
    let index: BTreeMap<&str, usize> = days.iter().enumerate().map(|(i, d)| (d.as_str(), i)).collect();
    let mut out: Vec<BTreeMap<String, Vec<Option<f64>>>> = vec![BTreeMap::new(); values_sql.len()];
    for r in &found {
        let Some(&i) = index.get(text(r, "day").as_str()) else { continue };
        for (m, by_key) in out.iter_mut().enumerate() {
            let v = num(r, &format!("v{m}"));
            let slot = by_key.entry(text(r, "k")).or_insert_with(|| vec![None; days.len()]);
            slot[i] = v.is_finite().then_some(v);
        }
    }
    Ok((days, out))
}

/// Daily values of one aggregate per key.
async fn daily(
    archive: &Archive,
    key: &str,
    value_sql: &str,
    filter: &str,
) -> Result<(Vec<String>, BTreeMap<String, Vec<Option<f64>>>), AnalyticsError> {
    let (days, mut many) = daily_many(archive, key, &[value_sql], filter).await?;
    Ok((days, many.pop().unwrap_or_default()))
}

/// Trend of one daily series; `sum` says whether the forecast is a total over `horizon` days.
fn trend(
    series: &str,
    metric: &str,
    values: &[Option<f64>],
    higher_is_better: bool,
    sum: bool,
    horizon: usize,
) -> Option<TrendRow> {
    let (x, y): (Vec<f64>, Vec<f64>) = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i as f64, v))).unzip();
    let t = stats::linear_trend(&x, &y)?;
    let n = values.len() as f64;
    let forecasts: Vec<Forecast> = (0..horizon).map(|h| t.forecast(n + h as f64, 0.95)).collect();
    let forecast = if forecasts.is_empty() {
        None
    } else if sum {
        Some(Forecast {
            value: forecasts.iter().map(|f| f.value.max(0.0)).sum(),
            low: forecasts.iter().map(|f| f.low.max(0.0)).sum(),
            high: forecasts.iter().map(|f| f.high.max(0.0)).sum(),
            confidence: 0.95,
        })
    } else {
        let k = forecasts.len() as f64;
        Some(Forecast {
            value: forecasts.iter().map(|f| f.value).sum::<f64>() / k,
            low: forecasts.iter().map(|f| f.low).sum::<f64>() / k,
            high: forecasts.iter().map(|f| f.high).sum::<f64>() / k,
            confidence: 0.95,
        })
    };
    let h = horizon.max(1);
    let window = |from: usize, to: usize| -> Option<f64> {
        let vals: Vec<f64> = values.get(from..to)?.iter().flatten().copied().collect();
        if vals.is_empty() {
            return None;
        }
        Some(if sum { vals.iter().sum() } else { vals.iter().sum::<f64>() / vals.len() as f64 })
    };
    let len = values.len();
    let change_pct = if len >= 2 * h {
        match (window(len - 2 * h, len - h), window(len - h, len)) {
            (Some(a), Some(b)) => stats::pct_change(a, b),
            _ => None,
        }
    } else {
        None
    };
    Some(TrendRow {
        series: series.to_string(),
        metric: metric.to_string(),
        days: y.len(),
        slope_per_day: t.slope,
        p_value: t.p_value,
        verdict: t.verdict(higher_is_better, 0.05),
        forecast,
        change_pct,
    })
}

fn chart_of(
    title: &str,
    y_label: &str,
    days: &[String],
    by_key: &BTreeMap<String, Vec<Option<f64>>>,
    top: usize,
) -> Chart {
    // The `top` series with the largest totals, so that charts stay readable.
    let mut keys: Vec<(&String, f64)> =
        by_key.iter().map(|(k, v)| (k, v.iter().flatten().map(|x| x.abs()).sum::<f64>())).collect();
    keys.sort_by(|a, b| b.1.total_cmp(&a.1));
    Chart {
        title: title.to_string(),
        y_label: y_label.to_string(),
        x: days.to_vec(),
        series: keys
            .into_iter()
            .take(top)
            .map(|(k, _)| Series { name: k.clone(), values: by_key[k].clone() })
            .collect(),
    }
}

fn table(found: &[serde_json::Map<String, serde_json::Value>], columns: &[&str]) -> Table {
    Table {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows: found.iter().map(|r| columns.iter().map(|c| r.get(*c).cloned().unwrap_or_default()).collect()).collect(),
    }
}

fn fmt_pct(p: f64) -> String {
    format!("{:.0} %", p.abs())
}

fn horizon(kind: Kind) -> (usize, &'static str) {
    match kind {
        Kind::Daily => (1, "day over day"),
        Kind::Monthly => (30, "month over month"),
        _ => (7, "week over week"),
    }
}

/// Builds a report of `opts.kind` over the archive's period.
pub async fn build(archive: &Archive, opts: &Options) -> Result<Report, AnalyticsError> {
    archive.require("spans")?;
    let spinner = crate::progress::Spinner::start("scanning the archive");
    let overview = rows(
        archive,
        "SELECT count(*) AS n, to_char(min(start_time), '%Y-%m-%dT%H:%M:%SZ') AS first, \
         to_char(max(start_time), '%Y-%m-%dT%H:%M:%SZ') AS last FROM spans",
    )
    .await?;
    let o = overview.first().cloned().unwrap_or_default();
    let by = if opts.by.is_empty() { vec!["service".to_string()] } else { opts.by.clone() };
    let key = key_expr(&by);
    let by_label = by.join(" / ");
    let mut report = Report {
        title: String::new(),
        kind: opts.kind,
        from: text(&o, "first"),
        to: text(&o, "last"),
        spans: num(&o, "n").max(0.0) as u64,
        insights: Vec::new(),
        sections: Vec::new(),
    };
    spinner.set("computing the report");
    match opts.kind {
        Kind::Daily | Kind::Weekly | Kind::Monthly => summary(archive, opts.kind, &key, &by_label, &mut report).await?,
        Kind::Cost => cost(archive, &key, &by_label, &mut report).await?,
        Kind::Bottleneck => bottleneck(archive, &mut report).await?,
        Kind::Quality => score(archive, &key, &by_label, "quality", "quality", &mut report).await?,
        Kind::Satisfaction => score(archive, &key, &by_label, "satisfaction", "user satisfaction", &mut report).await?,
        Kind::Errors => errors(archive, &key, &by_label, &mut report).await?,
    }
    if matches!(opts.kind, Kind::Daily | Kind::Weekly | Kind::Monthly | Kind::Cost) {
        unpriced(archive, &mut report).await?;
    }
    let fired = alerts(archive, &mut report).await?;
    if report.insights.is_empty() && fired == Some(0) {
        report
            .insights
            .push("nothing stands out: every series is stable, no threshold was crossed and no alert fired".into());
    }
    Ok(report)
}

/// Calls the `cost` processor could not price (model missing from the price table), per
/// model: their spend is not in any cost total, and the report says so.
async fn unpriced(archive: &Archive, r: &mut Report) -> Result<(), AnalyticsError> {
    let found = rows(
        archive,
        &format!(
            "SELECT {} AS model, count(*) AS calls, sum(input_tokens) AS input_tokens, \
             sum(output_tokens) AS output_tokens FROM spans WHERE unpriced GROUP BY 1 ORDER BY calls DESC, model",
            dim_expr("model")
        ),
    )
    .await?;
    if found.is_empty() {
        return Ok(());
    }
    let calls: f64 = found.iter().map(|f| num(f, "calls")).sum();
    let tokens: f64 = found.iter().map(|f| num(f, "input_tokens") + num(f, "output_tokens")).sum();
    let models: Vec<String> = found.iter().map(|f| text(f, "model")).collect();
    r.insights.push(
        format!(
            "{calls:.0} calls ({tokens:.0} tokens) could not be priced — {}: their spend is NOT in the cost totals; add the model(s) to the cost processor's price_table",
            models.join(", ")
        ),
    );
    r.sections.push(Section {
        title: "Unpriced calls (no price for the model; not in the cost totals)".into(),
        table: Some(table(&found, &["model", "calls", "input_tokens", "output_tokens"])),
        chart: None,
        trends: Vec::new(),
    });
    Ok(())
}

/// The anomaly and budget alerts of the period (events the `anomaly` processor archived as
/// logs): a section listing them and an insight counting them. `None` when the archive has
/// no logs, so alerts are unknown.
async fn alerts(archive: &Archive, r: &mut Report) -> Result<Option<usize>, AnalyticsError> {
    use otterline_model::names::{anomaly as a, event};
    if !archive.has("logs") {
        r.insights.push("the archive holds no logs, so this report cannot list anomaly and budget alerts".into());
        return Ok(None);
    }
    let attr = |k: &str| format!("attributes[{}]", crate::sql_string(k));
    let found = rows(
        archive,
        &format!(
            "SELECT to_char(time, '%Y-%m-%dT%H:%M:%SZ') AS time, {state} AS state, {kind} AS type, {sev} AS severity, \
             COALESCE(service_name, '') AS service, {series} AS series, {sugg} AS summary \
             FROM logs WHERE event_name = {fired} ORDER BY time LIMIT 200",
            state = attr(a::STATE),
            kind = attr(a::TYPE),
            sev = attr(a::SEVERITY),
            series = attr(a::SERIES),
            sugg = attr(a::SUGGESTION),
            fired = crate::sql_string(event::ANOMALY),
        ),
    )
    .await?;
    let resolved = rows(
        archive,
        &format!("SELECT count(*) AS n FROM logs WHERE event_name = {}", crate::sql_string(event::ANOMALY_RESOLVED)),
    )
    .await?;
    let resolved = resolved.first().map(|f| num(f, "n")).unwrap_or(0.0);
    if found.is_empty() {
        r.insights.push("no anomaly or budget alert fired in this period".into());
        return Ok(Some(0));
    }
    let fired = found.iter().filter(|f| text(f, "state") != "escalated").count();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for f in &found {
        *by_type.entry(text(f, "type")).or_default() += 1;
    }
    let kinds: Vec<String> = by_type.iter().map(|(k, n)| format!("{k} {n}")).collect();
    r.insights.push(
        format!(
            "{fired} anomaly/budget alert(s) fired in this period ({}), {} escalation(s), {resolved:.0} resolved; see \"Alerts\"",
            kinds.join(", "),
            found.len() - fired
        ),
    );
    r.sections.push(Section {
        title: "Alerts (anomaly and budget events)".into(),
        table: Some(table(&found, &["time", "state", "type", "severity", "service", "series", "summary"])),
        chart: None,
        trends: Vec::new(),
    });
    Ok(Some(found.len()))
}

async fn summary(archive: &Archive, kind: Kind, key: &str, by: &str, r: &mut Report) -> Result<(), AnalyticsError> {
    let unit = match kind {
        Kind::Daily => "day",
        Kind::Weekly => "week",
        _ => "month",
    };
    r.title = format!(
        "{} summary",
        match kind {
            Kind::Daily => "Daily",
            Kind::Weekly => "Weekly",
            _ => "Monthly",
        }
    );
    let (h, phrase) = horizon(kind);
    let per_period = rows(
        archive,
        &format!(
            "SELECT to_char(date_trunc('{unit}', start_time), '%Y-%m-%d') AS {unit}, count(*) AS calls, \
             sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS errors, \
             round(avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END), 4) AS error_rate, \
             round(approx_percentile_cont(duration_ms, 0.5), 1) AS p50_ms, \
             round(approx_percentile_cont(duration_ms, 0.95), 1) AS p95_ms, \
             round(sum(cost), 4) AS cost_usd, sum(tokens) AS tokens FROM spans GROUP BY 1 ORDER BY 1"
        ),
    )
    .await?;
    r.sections.push(Section {
        title: format!("Per {unit}"),
        table: Some(table(
            &per_period,
            &[unit, "calls", "errors", "error_rate", "p50_ms", "p95_ms", "cost_usd", "tokens"],
        )),
        chart: None,
        trends: Vec::new(),
    });
    let per_key = rows(
        archive,
        &format!(
            "SELECT {key} AS k, count(*) AS calls, round(avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END), 4) AS error_rate, \
             round(approx_percentile_cont(duration_ms, 0.95), 1) AS p95_ms, round(sum(cost), 4) AS cost_usd, \
             sum(tokens) AS tokens FROM spans GROUP BY 1 ORDER BY cost_usd DESC, calls DESC"
        ),
    )
    .await?;
    let mut t = table(&per_key, &["k", "calls", "error_rate", "p95_ms", "cost_usd", "tokens"]);
    t.columns[0] = by.to_string();
    let mut trends = Vec::new();
    let (days, series) = daily_many(
        archive,
        key,
        &[
            "sum(cost)",
            "CAST(count(*) AS DOUBLE)",
            "approx_percentile_cont(duration_ms, 0.95)",
            "avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END)",
        ],
        "TRUE",
    )
    .await?;
    let [cost_by, calls_by, p95_by, err_by] = <[_; 4]>::try_from(series).unwrap_or_default();
    for (k, v) in &cost_by {
        trends.extend(trend(k, "cost_usd", v, false, true, h));
    }
    for (k, v) in &calls_by {
        trends.extend(trend(k, "calls", v, true, true, h));
    }
    for (k, v) in &p95_by {
        trends.extend(trend(k, "p95_ms", v, false, false, h));
    }
    for (k, v) in &err_by {
        trends.extend(trend(k, "error_rate", v, false, false, h));
    }
    for tr in &trends {
        match (tr.metric.as_str(), tr.change_pct) {
            ("cost_usd", Some(c)) if c.abs() >= 20.0 => {
                let driver = cost_driver(archive, key, &tr.series, days.len(), h).await?;
                r.insights.push(format!(
                    "cost of {} {} {} {phrase}{}",
                    tr.series,
                    if c > 0.0 { "rose" } else { "fell" },
                    fmt_pct(c),
                    driver.map(|d| format!(", driven by {d}")).unwrap_or_default()
                ));
            }
            ("calls", Some(c)) if c.abs() >= 30.0 => r.insights.push(format!(
                "traffic of {} {} {} {phrase}",
                tr.series,
                if c > 0.0 { "rose" } else { "fell" },
                fmt_pct(c)
            )),
            ("p95_ms" | "error_rate", _) if tr.verdict == Verdict::Degrading => r.insights.push(format!(
                "{} of {} is degrading: {:+.3} per day (p = {:.1e})",
                if tr.metric == "p95_ms" { "p95 latency (ms)" } else { "error rate" },
                tr.series,
                tr.slope_per_day,
                tr.p_value
            )),
            _ => {}
        }
    }
    if let Some(f) = trends.iter().filter(|t| t.metric == "cost_usd").filter_map(|t| t.forecast).reduce(|a, b| {
        Forecast { value: a.value + b.value, low: a.low + b.low, high: a.high + b.high, confidence: a.confidence }
    }) {
        r.insights.push(format!(
            "forecast cost for the next {unit}: {:.2} USD (95 % interval {:.2} to {:.2})",
            f.value, f.low, f.high
        ));
    }
    r.sections.push(Section {
        title: format!("By {by}"),
        table: Some(t),
        chart: Some(chart_of("Cost per day (USD)", "USD", &days, &cost_by, 6)),
        trends,
    });
    Ok(())
}

/// "gpt-4o output tokens": the model whose cost grew most in `series` between the last two
/// `h`-day windows, and the token kind that grew more for it.
async fn cost_driver(
    archive: &Archive,
    key: &str,
    series: &str,
    n_days: usize,
    h: usize,
) -> Result<Option<String>, AnalyticsError> {
    if n_days < 2 * h {
        return Ok(None);
    }
    let sql = format!(
        "WITH d AS (SELECT date_trunc('day', start_time) AS day, * FROM spans WHERE {key} = {s}), \
         last_day AS (SELECT max(day) AS m FROM d) \
         SELECT COALESCE(gen_ai_request_model, '(no model)') AS model, \
           CASE WHEN day > (SELECT m FROM last_day) - INTERVAL '{h} days' THEN 'now' ELSE 'before' END AS w, \
           sum(cost) AS cost, CAST(sum(input_tokens) AS DOUBLE) AS input, CAST(sum(output_tokens) AS DOUBLE) AS output \
         FROM d WHERE day > (SELECT m FROM last_day) - INTERVAL '{h2} days' GROUP BY 1, 2",
        s = crate::sql_string(series),
        h2 = 2 * h
    );
    let found = rows(archive, &sql).await?;
    let mut by_model: BTreeMap<String, [[f64; 3]; 2]> = BTreeMap::new();
    for r in &found {
        let w = if text(r, "w") == "now" { 1 } else { 0 };
        let e = by_model.entry(text(r, "model")).or_default();
        e[w] = [num(r, "cost"), num(r, "input"), num(r, "output")];
    }
    let best = by_model
        .iter()
        .map(|(m, v)| (m, v[1][0] - v[0][0], v))
        .filter(|(_, d, _)| d.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1));
    Ok(best.filter(|(_, d, _)| *d > 0.0).map(|(m, _, v)| {
        let growth = |before: f64, now: f64| {
            if before > 0.0 {
                now / before
            } else if now > 0.0 {
                f64::INFINITY
            } else {
                1.0
            }
        };
        let kind = if growth(v[0][2], v[1][2]) >= growth(v[0][1], v[1][1]) { "output" } else { "input" };
        format!("{m} {kind} tokens")
    }))
}

async fn cost(archive: &Archive, key: &str, by: &str, r: &mut Report) -> Result<(), AnalyticsError> {
    r.title = "Cost analysis".into();
    let group = |dim: &str, label: &str| {
        format!(
            "SELECT {dim} AS {label}, round(sum(cost), 4) AS cost_usd, count(*) AS calls, \
             round(sum(cost) / count(*), 6) AS cost_per_call, \
             round(CASE WHEN sum(tokens) > 0 THEN sum(cost) * 1000.0 / sum(tokens) END, 6) AS cost_per_1k_tokens, \
             round(100.0 * sum(cost) / (SELECT sum(cost) FROM spans), 1) AS share_pct \
             FROM spans GROUP BY 1 HAVING sum(cost) > 0 ORDER BY cost_usd DESC"
        )
    };
    let cols = |label: &'static str| [label, "cost_usd", "share_pct", "calls", "cost_per_call", "cost_per_1k_tokens"];
    for (title, dim, label) in [
        ("By model", dim_expr("model"), "model"),
        ("By service", dim_expr("service"), "service"),
        ("By operation (category)", dim_expr("operation"), "operation"),
    ] {
        let found = rows(archive, &group(&dim, label)).await?;
        if title == "By model" {
            if let Some(top) = found.first() {
                r.insights.push(format!(
                    "{} is the largest cost: {:.2} USD ({:.0} % of the total), {:.4} USD per call",
                    text(top, "model"),
                    num(top, "cost_usd"),
                    num(top, "share_pct"),
                    num(top, "cost_per_call")
                ));
            }
        }
        r.sections.push(Section {
            title: title.into(),
            table: Some(table(&found, &cols(label))),
            chart: None,
            trends: Vec::new(),
        });
    }
    let drivers = rows(
        archive,
        &format!(
            "SELECT {} AS service, {} AS model, round(sum(cost), 4) AS cost_usd, \
             round(100.0 * sum(cost) / (SELECT sum(cost) FROM spans), 1) AS share_pct, count(*) AS calls \
             FROM spans GROUP BY 1, 2 HAVING sum(cost) > 0 ORDER BY cost_usd DESC LIMIT 10",
            dim_expr("service"),
            dim_expr("model")
        ),
    )
    .await?;
    r.sections.push(Section {
        title: "Top cost drivers (service × model)".into(),
        table: Some(table(&drivers, &["service", "model", "cost_usd", "share_pct", "calls"])),
        chart: None,
        trends: Vec::new(),
    });
    let (days, cost_by) = daily(archive, key, "sum(cost)", "TRUE").await?;
    let mut trends = Vec::new();
    for (k, v) in &cost_by {
        if let Some(t) = trend(k, "cost_usd", v, false, true, 7) {
            if let Some(c) = t.change_pct.filter(|c| c.abs() >= 20.0) {
                let driver = cost_driver(archive, key, k, days.len(), 7).await?;
                r.insights.push(format!(
                    "cost of {k} {} {} week over week{}",
                    if c > 0.0 { "rose" } else { "fell" },
                    fmt_pct(c),
                    driver.map(|d| format!(", driven by {d}")).unwrap_or_default()
                ));
            }
            trends.push(t);
        }
    }
    r.sections.push(Section {
        title: format!("Daily cost by {by}"),
        table: None,
        chart: Some(chart_of("Cost per day (USD)", "USD", &days, &cost_by, 6)),
        trends,
    });
    Ok(())
}

async fn bottleneck(archive: &Archive, r: &mut Report) -> Result<(), AnalyticsError> {
    r.title = "Bottleneck analysis".into();
    // Self time: a span's duration minus its children's (at least 0), so a parent that
    // only waits for a slow child is not blamed for it.
    let ops = rows(
        archive,
        "WITH child AS (SELECT trace_id, parent_span_id AS id, sum(duration_ms) AS child_ms FROM spans \
           WHERE parent_span_id IS NOT NULL AND parent_span_id <> '' GROUP BY 1, 2), \
         s AS (SELECT sp.name, sp.duration_ms, \
           greatest(sp.duration_ms - COALESCE(c.child_ms, 0.0), 0.0) AS self_ms \
           FROM spans sp LEFT JOIN child c ON sp.trace_id = c.trace_id AND sp.span_id = c.id) \
         SELECT name AS operation, count(*) AS calls, \
         round(100.0 * sum(self_ms) / (SELECT sum(self_ms) FROM s), 1) AS latency_share_pct, \
         round(avg(self_ms), 1) AS mean_self_ms, \
         round(avg(duration_ms), 1) AS mean_ms, round(approx_percentile_cont(duration_ms, 0.95), 1) AS p95_ms, \
         round(approx_percentile_cont(duration_ms, 0.99), 1) AS p99_ms \
         FROM s GROUP BY 1 ORDER BY latency_share_pct DESC LIMIT 20",
    )
    .await?;
    if let Some(top) = ops.first() {
        r.insights.push(format!(
            "{} accounts for {:.0} % of all time spent in spans (self time, children excluded); its p95 is {:.0} ms and p99 {:.0} ms",
            text(top, "operation"),
            num(top, "latency_share_pct"),
            num(top, "p95_ms"),
            num(top, "p99_ms")
        ));
    }
    let mut by_p95 = ops.clone();
    by_p95.sort_by(|a, b| num(b, "p95_ms").total_cmp(&num(a, "p95_ms")));
    if let (Some(slowest), Some(top)) = (by_p95.first(), ops.first()) {
        if text(slowest, "operation") != text(top, "operation") {
            r.insights.push(format!(
                "the slowest operation by p95 is {} ({:.0} ms)",
                text(slowest, "operation"),
                num(slowest, "p95_ms")
            ));
        }
    }
    r.sections.push(Section {
        title: "Operations by share of total self time".into(),
        table: Some(table(
            &ops,
            &["operation", "latency_share_pct", "calls", "mean_self_ms", "mean_ms", "p95_ms", "p99_ms"],
        )),
        chart: None,
        trends: Vec::new(),
    });
    r.sections.push(Section {
        title: "Operations by p95".into(),
        table: Some(table(&by_p95, &["operation", "p95_ms", "p99_ms", "mean_ms", "calls"])),
        chart: None,
        trends: Vec::new(),
    });
    let traces = rows(
        archive,
        "SELECT trace_id, first_value(service_name ORDER BY start_time) AS service, \
         first_value(name ORDER BY start_time) AS root, count(*) AS spans, \
         round(CAST(max(end_time) - min(start_time) AS BIGINT) / 1e6, 1) AS duration_ms \
         FROM spans GROUP BY trace_id ORDER BY duration_ms DESC LIMIT 10",
    )
    .await?;
    r.sections.push(Section {
        title: "Slowest traces".into(),
        table: Some(table(&traces, &["trace_id", "service", "root", "spans", "duration_ms"])),
        chart: None,
        trends: Vec::new(),
    });
    Ok(())
}

async fn score(
    archive: &Archive,
    key: &str,
    by: &str,
    column: &str,
    label: &str,
    r: &mut Report,
) -> Result<(), AnalyticsError> {
    r.title = format!("{}{} trends", label[..1].to_uppercase(), &label[1..]);
    let (days, by_key) = daily(archive, key, &format!("avg({column})"), &format!("{column} IS NOT NULL")).await?;
    if by_key.is_empty() {
        r.insights.push(format!(
            "no spans carry a {label} score (span attribute `{}`)",
            if column == "quality" { "quality.score" } else { "user.satisfaction" }
        ));
    }
    let mut trends = Vec::new();
    for (k, v) in &by_key {
        if let Some(t) = trend(k, column, v, true, false, 7) {
            if t.verdict != Verdict::Stable {
                let f = t
                    .forecast
                    .map(|f| format!("; forecast for next week {:.3} ({:.3} to {:.3})", f.value, f.low, f.high));
                r.insights.push(format!(
                    "{label} of {k} is {}: {:+.4} per day (p = {:.1e}){}",
                    t.verdict.as_str(),
                    t.slope_per_day,
                    t.p_value,
                    f.unwrap_or_default()
                ));
            }
            trends.push(t);
        }
    }
    let summary = rows(
        archive,
        &format!(
            "SELECT {key} AS k, count({column}) AS scored_calls, round(avg({column}), 4) AS mean, \
             round(min({column}), 4) AS min, round(max({column}), 4) AS max FROM spans WHERE {column} IS NOT NULL \
             GROUP BY 1 ORDER BY mean"
        ),
    )
    .await?;
    let mut t = table(&summary, &["k", "scored_calls", "mean", "min", "max"]);
    t.columns[0] = by.to_string();
    r.sections.push(Section {
        title: format!("Daily mean {label} by {by}"),
        table: Some(t),
        chart: Some(chart_of(&format!("Mean {label} per day"), label, &days, &by_key, 8)),
        trends,
    });
    Ok(())
}

async fn errors(archive: &Archive, key: &str, by: &str, r: &mut Report) -> Result<(), AnalyticsError> {
    r.title = "Errors".into();
    let category = "COALESCE(attributes['error.type'], status_message, 'unknown')";
    let cats = rows(
        archive,
        &format!(
            "SELECT {category} AS category, count(*) AS errors, \
             round(100.0 * count(*) / (SELECT count(*) FROM spans WHERE is_error), 1) AS share_pct, \
             count(DISTINCT service_name) AS services FROM spans WHERE is_error GROUP BY 1 ORDER BY errors DESC LIMIT 20"
        ),
    )
    .await?;
    let total =
        rows(archive, "SELECT count(*) AS n, sum(CASE WHEN is_error THEN 1 ELSE 0 END) AS e FROM spans").await?;
    let (n, e) = total.first().map(|t| (num(t, "n"), num(t, "e"))).unwrap_or((0.0, 0.0));
    if let Some(top) = cats.first() {
        r.insights.push(format!(
            "{e:.0} of {n:.0} calls failed ({:.2} %); the most common error is {:?} ({:.0} % of errors)",
            if n > 0.0 { e / n * 100.0 } else { 0.0 },
            text(top, "category"),
            num(top, "share_pct")
        ));
    }
    r.sections.push(Section {
        title: "Error categories".into(),
        table: Some(table(&cats, &["category", "errors", "share_pct", "services"])),
        chart: None,
        trends: Vec::new(),
    });
    let (days, by_key) = daily(archive, key, "avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END)", "TRUE").await?;
    let mut trends = Vec::new();
    for (k, v) in &by_key {
        if let Some(t) = trend(k, "error_rate", v, false, false, 7) {
            if t.verdict == Verdict::Degrading {
                r.insights.push(format!(
                    "the error rate of {k} is rising: {:+.4} per day (p = {:.1e})",
                    t.slope_per_day, t.p_value
                ));
            }
            trends.push(t);
        }
    }
    let (_, cat_days) = daily(archive, category, "CAST(count(*) AS DOUBLE)", "is_error").await?;
    r.sections.push(Section {
        title: format!("Error rate by {by}"),
        table: None,
        chart: Some(chart_of("Error rate per day", "errors / calls", &days, &by_key, 6)),
        trends,
    });
    r.sections.push(Section {
        title: "Errors per day by category".into(),
        table: None,
        chart: Some(chart_of("Errors per day", "errors", &days, &cat_days, 6)),
        trends: Vec::new(),
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

fn cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        o => o.to_string(),
    }
}

fn forecast_text(f: &Option<Forecast>) -> String {
    f.map(|f| format!("{:.3} ({:.3} to {:.3})", f.value, f.low, f.high)).unwrap_or_default()
}

fn change_text(c: Option<f64>) -> String {
    c.map(|c| format!("{c:+.1} %")).unwrap_or_default()
}

pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Markdown => markdown(report),
        Format::Html => html(report),
    }
}

fn markdown(r: &Report) -> String {
    let mut s = format!("# {}\n\n{} spans from {} to {}\n\n## Key insights\n\n", r.title, r.spans, r.from, r.to);
    for i in &r.insights {
        s.push_str(&format!("- {i}\n"));
    }
    for sec in &r.sections {
        s.push_str(&format!("\n## {}\n\n", sec.title));
        if let Some(t) = &sec.table {
            s.push_str(&format!("| {} |\n|{}\n", t.columns.join(" | "), "---|".repeat(t.columns.len())));
            for row in &t.rows {
                s.push_str(&format!("| {} |\n", row.iter().map(cell).collect::<Vec<_>>().join(" | ")));
            }
        }
        if !sec.trends.is_empty() {
            s.push_str("\n| series | metric | trend | slope / day | p | change | forecast (95 %) |\n|---|---|---|---|---|---|---|\n");
            for t in &sec.trends {
                s.push_str(&format!(
                    "| {} | {} | {} | {:+.4} | {:.2e} | {} | {} |\n",
                    t.series,
                    t.metric,
                    t.verdict.as_str(),
                    t.slope_per_day,
                    t.p_value,
                    change_text(t.change_pct),
                    forecast_text(&t.forecast)
                ));
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn html(r: &Report) -> String {
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0;font-size:14px}}th,td{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}.insights li{{margin:.3em 0}}\
         .degrading{{color:#b00020;font-weight:600}}.improving{{color:#137333;font-weight:600}}figure{{margin:1em 0}}\n\
         </style></head><body>\n<h1>{t}</h1>\n<p>{} spans from {} to {}</p>\n<h2>Key insights</h2>\n<ul class=\"insights\">\n",
        r.spans,
        esc(&r.from),
        esc(&r.to),
        t = esc(&r.title)
    );
    for i in &r.insights {
        s.push_str(&format!("<li>{}</li>\n", esc(i)));
    }
    s.push_str("</ul>\n");
    for sec in &r.sections {
        s.push_str(&format!("<h2>{}</h2>\n", esc(&sec.title)));
        if let Some(c) = &sec.chart {
            let svg = chart::svg(c);
            if !svg.is_empty() {
                s.push_str(&format!("<figure class=\"chart\">{svg}</figure>\n"));
            }
        }
        if let Some(t) = &sec.table {
            s.push_str("<table><tr>");
            for c in &t.columns {
                s.push_str(&format!("<th>{}</th>", esc(c)));
            }
            s.push_str("</tr>\n");
            for row in &t.rows {
                s.push_str("<tr>");
                for v in row {
                    s.push_str(&format!("<td>{}</td>", esc(&cell(v))));
                }
                s.push_str("</tr>\n");
            }
            s.push_str("</table>\n");
        }
        if !sec.trends.is_empty() {
            s.push_str("<table><tr><th>series</th><th>metric</th><th>trend</th><th>slope / day</th><th>p</th><th>change</th><th>forecast (95 %)</th></tr>\n");
            for t in &sec.trends {
                s.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td class=\"{v}\">{v}</td><td>{:+.4}</td><td>{:.2e}</td><td>{}</td><td>{}</td></tr>\n",
                    esc(&t.series),
                    esc(&t.metric),
                    t.slope_per_day,
                    t.p_value,
                    change_text(t.change_pct),
                    forecast_text(&t.forecast),
                    v = t.verdict.as_str()
                ));
            }
            s.push_str("</table>\n");
        }
    }
    s.push_str("</body></html>\n");
    s
}
