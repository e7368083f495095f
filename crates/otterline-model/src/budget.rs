//! Budgets: static limits on aggregates, scoped to everything, a service, an operation or
//! a model. The same rules serve the `anomaly` processor (live, per window) and archive
//! checks.
//!
//! ```yaml
//! budgets:
//!   - name: chat-p95
//!     metric: p95_latency        # p95_latency, mean_latency (s), error_rate (0-1),
//!                                # cost, cost_per_call (USD), tokens, tokens_per_call, calls
//!     max: 2.5
//!     per: window                # window, hour or day (sums accumulate over the period)
//!     scope: {service: rag-worker, operation: chat, model: gpt-4o}   # all optional
//!     mode: warn                 # off, warn or strict
//! ```

use serde::Deserialize;

/// What a budget limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetMetric {
    P95Latency,
    MeanLatency,
    ErrorRate,
    Cost,
    CostPerCall,
    Tokens,
    TokensPerCall,
    Calls,
}

impl BudgetMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetMetric::P95Latency => "p95_latency",
            BudgetMetric::MeanLatency => "mean_latency",
            BudgetMetric::ErrorRate => "error_rate",
            BudgetMetric::Cost => "cost",
            BudgetMetric::CostPerCall => "cost_per_call",
            BudgetMetric::Tokens => "tokens",
            BudgetMetric::TokensPerCall => "tokens_per_call",
            BudgetMetric::Calls => "calls",
        }
    }

    /// Sums accumulate over `per`; the others are judged per window.
    pub fn is_sum(self) -> bool {
        matches!(self, BudgetMetric::Cost | BudgetMetric::Tokens | BudgetMetric::Calls)
    }

    pub fn unit(self) -> &'static str {
        match self {
            BudgetMetric::P95Latency | BudgetMetric::MeanLatency => "s",
            BudgetMetric::ErrorRate => "",
            BudgetMetric::Cost | BudgetMetric::CostPerCall => "USD",
            BudgetMetric::Tokens | BudgetMetric::TokensPerCall => "tokens",
            BudgetMetric::Calls => "calls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    #[default]
    Window,
    Hour,
    Day,
}

impl Period {
    /// Length in ns (None: a single window).
    pub fn nanos(self) -> Option<u64> {
        match self {
            Period::Window => None,
            Period::Hour => Some(3_600_000_000_000),
            Period::Day => Some(86_400_000_000_000),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Off,
    #[default]
    Warn,
    Strict,
}

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Scope {
    pub service: Option<String>,
    pub operation: Option<String>,
    pub model: Option<String>,
}

impl Scope {
    /// Whether a series (its service, `gen_ai.operation.name` and `gen_ai.request.model`) is in scope.
    pub fn matches(&self, service: &str, operation: Option<&str>, model: Option<&str>) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_ref().is_none_or(|o| Some(o.as_str()) == operation)
            && self.model.as_ref().is_none_or(|m| Some(m.as_str()) == model)
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(s) = &self.service {
            parts.push(format!("service {s}"));
        }
        if let Some(o) = &self.operation {
            parts.push(format!("operation {o}"));
        }
        if let Some(m) = &self.model {
            parts.push(format!("model {m}"));
        }
        if parts.is_empty() {
            "all services".into()
        } else {
            parts.join(", ")
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub name: String,
    pub metric: BudgetMetric,
    pub max: f64,
    #[serde(default)]
    pub per: Period,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    pub mode: Mode,
}

/// The aggregates of one window (or period) that budgets are judged on.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub calls: f64,
    pub errors: f64,
    /// Σ p95 × calls and Σ calls over the series (a calls-weighted p95; percentiles of
    /// several series cannot be merged exactly from their summaries).
    pub p95_weighted: f64,
    pub p95_weight: f64,
    pub duration_sum: f64,
    pub cost: f64,
    pub tokens: f64,
}

impl Totals {
    pub fn add(&mut self, o: &Totals) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.p95_weighted += o.p95_weighted;
        self.p95_weight += o.p95_weight;
        self.duration_sum += o.duration_sum;
        self.cost += o.cost;
        self.tokens += o.tokens;
    }

    /// The value of `metric`, if defined (no calls → no per-call values).
    pub fn value(&self, metric: BudgetMetric) -> Option<f64> {
        let per_call = |x: f64| (self.calls > 0.0).then(|| x / self.calls);
        match metric {
            BudgetMetric::P95Latency => (self.p95_weight > 0.0).then(|| self.p95_weighted / self.p95_weight),
            BudgetMetric::MeanLatency => per_call(self.duration_sum),
            BudgetMetric::ErrorRate => per_call(self.errors),
            BudgetMetric::Cost => Some(self.cost),
            BudgetMetric::CostPerCall => per_call(self.cost),
            BudgetMetric::Tokens => Some(self.tokens),
            BudgetMetric::TokensPerCall => per_call(self.tokens),
            BudgetMetric::Calls => Some(self.calls),
        }
    }
}

/// Checks a list of budgets for problems a user should hear about at start-up.
pub fn validate(budgets: &[Budget]) -> Result<(), String> {
    for (i, b) in budgets.iter().enumerate() {
        if b.name.trim().is_empty() {
            return Err(format!("budgets[{i}]: `name` must not be empty"));
        }
        if !b.max.is_finite() || b.max < 0.0 {
            return Err(format!("budgets[{i}] ({}): `max` must be a non-negative number", b.name));
        }
        if !b.metric.is_sum() && b.per != Period::Window {
            return Err(format!(
                "budgets[{i}] ({}): `per: hour|day` applies to sums (cost, tokens, calls); {} is judged per window",
                b.name,
                b.metric.as_str()
            ));
        }
        if budgets[..i].iter().any(|o| o.name == b.name) {
            return Err(format!("budgets[{i}]: the name {:?} is used twice", b.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_scopes() {
        let t = Totals {
            calls: 10.0,
            errors: 2.0,
            p95_weighted: 30.0,
            p95_weight: 10.0,
            duration_sum: 12.0,
            cost: 0.5,
            tokens: 1000.0,
        };
        assert_eq!(t.value(BudgetMetric::ErrorRate), Some(0.2));
        assert_eq!(t.value(BudgetMetric::P95Latency), Some(3.0));
        assert_eq!(t.value(BudgetMetric::CostPerCall), Some(0.05));
        assert_eq!(Totals::default().value(BudgetMetric::MeanLatency), None);
        let s = Scope { service: Some("a".into()), model: Some("m".into()), operation: None };
        assert!(s.matches("a", Some("chat"), Some("m")));
        assert!(!s.matches("a", Some("chat"), Some("n")));
        assert!(Scope::default().matches("x", None, None));
    }

    #[test]
    fn validation() {
        let b =
            |metric, per| Budget { name: "b".into(), metric, max: 1.0, per, scope: Scope::default(), mode: Mode::Warn };
        assert!(validate(&[b(BudgetMetric::Cost, Period::Day)]).is_ok());
        assert!(validate(&[b(BudgetMetric::P95Latency, Period::Hour)]).unwrap_err().contains("judged per window"));
        assert!(validate(&[b(BudgetMetric::Cost, Period::Day), b(BudgetMetric::Calls, Period::Window)])
            .unwrap_err()
            .contains("used twice"));
    }
}
