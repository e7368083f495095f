//! `otterline budget check`: the `anomaly` processor's budget rules, evaluated over an
//! archive period — a CI gate for latency, error-rate, cost and token budgets.
//!
//! The budgets file holds `budgets:` (the same list as the processor's, see
//! `otterline_model::budget`). Latency and per-call budgets are judged over the whole
//! period (p95 from the spans themselves, not from per-window summaries); sums (`cost`,
//! `tokens`, `calls`) are judged per `per` period: the whole period for `window`, every hour
//! or day otherwise. A violation of a `strict` budget (or of any budget with `--strict`)
//! makes the command exit 1; `warn` violations are printed and exit 0; `off` is skipped.

use std::path::Path;

use serde::{Deserialize, Serialize};

use otterline_model::budget::{self, Budget, BudgetMetric, Mode, Period};

use crate::archive::Archive;
use crate::{num, rows, sql_string, text, AnalyticsError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetsFile {
    budgets: Vec<Budget>,
}

/// Reads a budgets file; errors name the file, line and key.
pub fn load(path: &Path) -> Result<Vec<Budget>, AnalyticsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AnalyticsError::Input(format!("cannot read budgets file {}: {e}", path.display())))?;
    let name = path.display().to_string();
    let node = otterline_core::config::yaml::parse(&name, &text).map_err(|e| AnalyticsError::Input(e.to_string()))?;
    let file: BudgetsFile =
        otterline_core::config::from_node(&node, "").map_err(|e| AnalyticsError::Input(e.to_string()))?;
    budget::validate(&file.budgets).map_err(|e| AnalyticsError::Input(format!("{name}: {e}")))?;
    Ok(file.budgets)
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub budget: String,
    pub metric: &'static str,
    pub scope: String,
    /// The hour or day judged (empty for the whole period).
    pub period: String,
    pub value: f64,
    pub max: f64,
    pub unit: &'static str,
    pub strict: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub checked: usize,
    /// Budgets with no data in scope (nothing to judge).
    pub without_data: Vec<String>,
    pub violations: Vec<Violation>,
}

impl CheckResult {
    pub fn failed(&self) -> bool {
        self.violations.iter().any(|v| v.strict)
    }
}

fn value_expr(metric: BudgetMetric) -> &'static str {
    match metric {
        BudgetMetric::P95Latency => "approx_percentile_cont(duration_ms, 0.95) / 1000.0",
        BudgetMetric::MeanLatency => "avg(duration_ms) / 1000.0",
        BudgetMetric::ErrorRate => "avg(CASE WHEN is_error THEN 1.0 ELSE 0.0 END)",
        BudgetMetric::Cost => "COALESCE(sum(cost), 0.0)",
        BudgetMetric::CostPerCall => "COALESCE(sum(cost), 0.0) / count(*)",
        BudgetMetric::Tokens => "CAST(sum(tokens) AS DOUBLE)",
        BudgetMetric::TokensPerCall => "CAST(sum(tokens) AS DOUBLE) / count(*)",
        BudgetMetric::Calls => "CAST(count(*) AS DOUBLE)",
    }
}

/// Evaluates every budget over the archive's (period-restricted) spans.
pub async fn check(archive: &Archive, budgets: &[Budget], all_strict: bool) -> Result<CheckResult, AnalyticsError> {
    archive.require("spans")?;
    let mut result = CheckResult { checked: 0, without_data: Vec::new(), violations: Vec::new() };
    for b in budgets.iter().filter(|b| b.mode != Mode::Off) {
        result.checked += 1;
        let mut filters = vec!["TRUE".to_string()];
        if let Some(s) = &b.scope.service {
            filters.push(format!("service_name = {}", sql_string(s)));
        }
        if let Some(o) = &b.scope.operation {
            filters.push(format!("gen_ai_operation_name = {}", sql_string(o)));
        }
        if let Some(m) = &b.scope.model {
            filters.push(format!("gen_ai_request_model = {}", sql_string(m)));
        }
        let bucket = match (b.metric.is_sum(), b.per) {
            (true, Period::Hour) => "to_char(date_trunc('hour', start_time), '%Y-%m-%dT%H:00Z')",
            (true, Period::Day) => "to_char(date_trunc('day', start_time), '%Y-%m-%d')",
            _ => "''",
        };
        let sql = format!(
            "SELECT {bucket} AS bucket, {} AS value, count(*) AS n FROM spans WHERE {} GROUP BY 1 ORDER BY 1",
            value_expr(b.metric),
            filters.join(" AND ")
        );
        let found = rows(archive, &sql).await?;
        if found.iter().all(|r| num(r, "n") == 0.0 || num(r, "value").is_nan()) {
            result.without_data.push(b.name.clone());
            continue;
        }
        for r in &found {
            let value = num(r, "value");
            if value.is_finite() && value > b.max {
                result.violations.push(Violation {
                    budget: b.name.clone(),
                    metric: b.metric.as_str(),
                    scope: b.scope.describe(),
                    period: text(r, "bucket"),
                    value,
                    max: b.max,
                    unit: b.metric.unit(),
                    strict: all_strict || b.mode == Mode::Strict,
                });
            }
        }
    }
    Ok(result)
}

/// One line per violation and a summary, for a CI log.
pub fn render_text(r: &CheckResult) -> String {
    let mut s = String::new();
    for v in &r.violations {
        let when = if v.period.is_empty() { String::new() } else { format!(" in {}", v.period) };
        s.push_str(&format!(
            "{} budget {:?}: {} of {}{when} is {:.4} {}, over the max {} {}\n",
            if v.strict { "FAIL" } else { "WARN" },
            v.budget,
            v.metric,
            v.scope,
            v.value,
            v.unit,
            v.max,
            v.unit
        ));
    }
    for name in &r.without_data {
        s.push_str(&format!("note budget {name:?}: no spans in its scope and period; nothing to judge\n"));
    }
    let strict = r.violations.iter().filter(|v| v.strict).count();
    s.push_str(&format!(
        "{} budget(s) checked: {} violation(s), {strict} of them strict{}\n",
        r.checked,
        r.violations.len(),
        if r.failed() { " -> failing" } else { "" }
    ));
    s
}
