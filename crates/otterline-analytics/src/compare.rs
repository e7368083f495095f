//! `otterline compare`: two variants of an attribute (a `deployment.version`, a prompt id),
//! compared on duration, cost, tokens or quality per span.
//!
//! The variant is read from the span attribute, else the resource attribute, of that name.
//! Reported: count, mean, median, p95 and standard deviation per variant; Welch's t-test
//! with the confidence interval of the difference and Hedges' g; the Mann-Whitney U test.
//! The verdict calls a winner only when both variants have at least `min_samples` values and
//! the difference is significant at `alpha` — by Welch's test, and for skewed data
//! (|skewness| > 1) also by Mann-Whitney, which does not assume normality.

use datafusion::arrow::array::{Array, Float64Array};
use serde::Serialize;

use crate::archive::Archive;
use crate::stats::{self, MannWhitney, Welch};
use crate::{query, sql_string, AnalyticsError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Duration,
    Cost,
    Tokens,
    Quality,
}

impl Metric {
    pub fn parse(s: &str) -> Result<Metric, String> {
        match s {
            "duration" => Ok(Metric::Duration),
            "cost" => Ok(Metric::Cost),
            "tokens" => Ok(Metric::Tokens),
            "quality" => Ok(Metric::Quality),
            o => Err(format!("unknown metric {o:?}: use duration, cost, tokens or quality")),
        }
    }

    fn expr(self) -> &'static str {
        match self {
            Metric::Duration => "duration_ms",
            Metric::Cost => "CAST(gen_ai_usage_cost AS DOUBLE)",
            Metric::Tokens => "CAST(gen_ai_usage_input_tokens + gen_ai_usage_output_tokens AS DOUBLE)",
            Metric::Quality => "quality",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Duration => "ms",
            Metric::Cost => "USD",
            Metric::Tokens => "tokens",
            Metric::Quality => "score",
        }
    }

    fn higher_is_better(self) -> bool {
        self == Metric::Quality
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub by: String,
    pub a: String,
    pub b: String,
    pub metric: Metric,
    pub min_samples: usize,
    pub alpha: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct VariantStats {
    pub name: String,
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    pub p95: f64,
    pub stddev: f64,
    pub skewness: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// B is better than A.
    BBetter,
    /// A is better than B.
    ABetter,
    NoSignificantDifference,
    InsufficientSamples,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub by: String,
    pub metric: Metric,
    pub unit: &'static str,
    pub a: VariantStats,
    pub b: VariantStats,
    /// (mean B − mean A) / mean A, in percent.
    pub relative_difference_pct: Option<f64>,
    pub welch: Option<Welch>,
    pub mann_whitney: Option<MannWhitney>,
    pub min_samples: usize,
    pub alpha: f64,
    pub outcome: Outcome,
    pub verdict: String,
}

async fn values(archive: &Archive, opts: &Options, variant: &str) -> Result<Vec<f64>, AnalyticsError> {
    let key = sql_string(&opts.by);
    let variant_of = format!("COALESCE(attributes[{key}], resource_attributes[{key}])");
    let sql = format!(
        "SELECT CAST({m} AS DOUBLE) AS v FROM spans WHERE {variant_of} = {} AND {m} IS NOT NULL",
        sql_string(variant),
        m = opts.metric.expr()
    );
    let mut out = Vec::new();
    for batch in query::run(archive, &sql).await? {
        if let Some(col) = batch.column(0).as_any().downcast_ref::<Float64Array>() {
            out.extend((0..col.len()).filter(|&i| col.is_valid(i)).map(|i| col.value(i)).filter(|v| v.is_finite()));
        }
    }
    Ok(out)
}

fn describe(name: &str, xs: &[f64]) -> VariantStats {
    let m = stats::moments(xs);
    let mut sorted = xs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let sd = m.variance.sqrt();
    let skewness = if xs.len() > 2 && sd > 0.0 {
        xs.iter().map(|x| ((x - m.mean) / sd).powi(3)).sum::<f64>() / xs.len() as f64
    } else {
        0.0
    };
    VariantStats {
        name: name.to_string(),
        n: xs.len(),
        mean: m.mean,
        median: stats::quantile(&sorted, 0.5),
        p95: stats::quantile(&sorted, 0.95),
        stddev: sd,
        skewness,
    }
}

pub async fn compare(archive: &Archive, opts: &Options) -> Result<Comparison, AnalyticsError> {
    archive.require("spans")?;
    let (va, vb) = (values(archive, opts, &opts.a).await?, values(archive, opts, &opts.b).await?);
    let (a, b) = (describe(&opts.a, &va), describe(&opts.b, &vb));
    let welch = stats::welch(&va, &vb, 1.0 - opts.alpha);
    let mann_whitney = stats::mann_whitney(&va, &vb);
    let relative = stats::pct_change(a.mean, b.mean);
    let unit = opts.metric.unit();
    let skewed = a.skewness.abs() > 1.0 || b.skewness.abs() > 1.0;
    let (outcome, verdict) = if a.n < opts.min_samples || b.n < opts.min_samples {
        (
            Outcome::InsufficientSamples,
            format!(
                "not enough samples to call a winner: {} has {}, {} has {} (at least {} each are needed)",
                a.name, a.n, b.name, b.n, opts.min_samples
            ),
        )
    } else {
        let p_welch = welch.map(|w| w.p_value).unwrap_or(1.0);
        let p_mw = mann_whitney.map(|m| m.p_value).unwrap_or(1.0);
        let significant = p_welch < opts.alpha && (!skewed || p_mw < opts.alpha);
        let diff = b.mean - a.mean;
        if !significant {
            (
                Outcome::NoSignificantDifference,
                format!(
                    "no significant difference in {:?} between {} and {} (Welch p = {p_welch:.3}, Mann-Whitney p = {p_mw:.3}, alpha {})",
                    opts.metric, a.name, b.name, opts.alpha
                )
                .to_lowercase(),
            )
        } else {
            let b_better = (diff > 0.0) == opts.metric.higher_is_better();
            let word = match (opts.metric, diff > 0.0) {
                (Metric::Duration, true) => "slower",
                (Metric::Duration, false) => "faster",
                (Metric::Quality, true) => "better",
                (Metric::Quality, false) => "worse",
                (_, true) => "more expensive",
                (_, false) => "cheaper",
            };
            let pct =
                relative.map(|p| format!("{:.1} %", p.abs())).unwrap_or_else(|| format!("{:.3} {unit}", diff.abs()));
            (
                if b_better { Outcome::BBetter } else { Outcome::ABetter },
                format!(
                    "{} is {pct} {word} than {} (mean {:.3} vs {:.3} {unit}; Welch p = {p_welch:.2e}, Mann-Whitney p = {p_mw:.2e}); {} wins",
                    b.name,
                    a.name,
                    b.mean,
                    a.mean,
                    if b_better { &b.name } else { &a.name }
                ),
            )
        }
    };
    Ok(Comparison {
        by: opts.by.clone(),
        metric: opts.metric,
        unit,
        a,
        b,
        relative_difference_pct: relative,
        welch,
        mann_whitney,
        min_samples: opts.min_samples,
        alpha: opts.alpha,
        outcome,
        verdict,
    })
}

/// The comparison as text for a terminal.
pub fn render_text(c: &Comparison) -> String {
    let mut s = format!("A/B comparison of {:?} by {}\n\n", c.metric, c.by).to_lowercase();
    s.push_str(&format!(
        "{:<16} {:>8} {:>12} {:>12} {:>12} {:>12}\n",
        "variant", "n", "mean", "median", "p95", "stddev"
    ));
    for v in [&c.a, &c.b] {
        s.push_str(&format!(
            "{:<16} {:>8} {:>12.4} {:>12.4} {:>12.4} {:>12.4}\n",
            v.name, v.n, v.mean, v.median, v.p95, v.stddev
        ));
    }
    if let Some(w) = &c.welch {
        s.push_str(&format!(
            "\nWelch's t-test: t = {:.3}, df = {:.1}, p = {:.3e}; difference {:.4} {} ({:.0} % CI {:.4} to {:.4}); Hedges' g = {:.3}\n",
            w.t,
            w.df,
            w.p_value,
            w.difference,
            c.unit,
            (1.0 - c.alpha) * 100.0,
            w.ci_low,
            w.ci_high,
            w.effect_size
        ));
    }
    if let Some(m) = &c.mann_whitney {
        s.push_str(&format!("Mann-Whitney U: U = {:.1}, z = {:.3}, p = {:.3e}\n", m.u, m.z, m.p_value));
    }
    s.push_str(&format!("\nVerdict: {}\n", c.verdict));
    s
}
