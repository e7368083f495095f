//! The statistics reports and comparisons rest on: linear trend with a significance test
//! and a forecast with a prediction interval, Welch's t-test, the Mann-Whitney U test,
//! effect size and confidence intervals. Checked against scipy in the tests.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Mean, sample variance and count.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Moments {
    pub n: usize,
    pub mean: f64,
    pub variance: f64,
}

pub fn moments(xs: &[f64]) -> Moments {
    let n = xs.len();
    if n == 0 {
        return Moments { n, mean: f64::NAN, variance: f64::NAN };
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    let variance = if n > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    Moments { n, mean, variance }
}

/// The `q` quantile (0–1) by linear interpolation between order statistics (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn t_dist(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

/// Two-sided p-value of a t statistic.
fn t_p_value(t: f64, df: f64) -> f64 {
    match t_dist(df) {
        Some(d) if t.is_finite() => 2.0 * d.sf(t.abs()),
        _ if t.is_infinite() => 0.0,
        _ => f64::NAN,
    }
}

fn t_critical(df: f64, confidence: f64) -> f64 {
    t_dist(df).map(|d| d.inverse_cdf(0.5 + confidence / 2.0)).unwrap_or(f64::NAN)
}

/// Whether a series is getting better, worse, or neither (at the 5 % level).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Improving,
    Stable,
    Degrading,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Improving => "improving",
            Verdict::Stable => "stable",
            Verdict::Degrading => "degrading",
        }
    }
}

/// Ordinary least squares of y on x, with the slope's t-test.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Trend {
    pub n: usize,
    pub slope: f64,
    pub intercept: f64,
    pub r_squared: f64,
    /// Standard error of the slope.
    pub slope_se: f64,
    /// Two-sided p-value of "slope = 0" (t-test with n − 2 degrees of freedom).
    pub p_value: f64,
    /// Residual standard error.
    residual_se: f64,
    mean_x: f64,
    sxx: f64,
}

pub fn linear_trend(x: &[f64], y: &[f64]) -> Option<Trend> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let mx = x[..n].iter().sum::<f64>() / n as f64;
    let my = y[..n].iter().sum::<f64>() / n as f64;
    let sxx: f64 = x[..n].iter().map(|v| (v - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = x[..n].iter().zip(&y[..n]).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse: f64 = x[..n].iter().zip(&y[..n]).map(|(a, b)| (b - (intercept + slope * a)).powi(2)).sum();
    let sst: f64 = y[..n].iter().map(|b| (b - my).powi(2)).sum();
    let df = (n - 2) as f64;
    let residual_se = (sse / df).sqrt();
    let slope_se = residual_se / sxx.sqrt();
    let t = if slope_se > 0.0 {
        slope / slope_se
    } else if slope == 0.0 {
        0.0
    } else {
        f64::INFINITY
    };
    Some(Trend {
        n,
        slope,
        intercept,
        r_squared: if sst > 0.0 { 1.0 - sse / sst } else { 1.0 },
        slope_se,
        p_value: t_p_value(t, df),
        residual_se,
        mean_x: mx,
        sxx,
    })
}

impl Trend {
    /// Stable unless the slope is significant at `alpha`; the direction that is "better"
    /// depends on the metric (`higher_is_better`: quality; otherwise latency, cost, errors).
    pub fn verdict(&self, higher_is_better: bool, alpha: f64) -> Verdict {
        let significant = self.p_value < alpha;
        if !significant || self.slope == 0.0 {
            return Verdict::Stable;
        }
        if (self.slope > 0.0) == higher_is_better {
            Verdict::Improving
        } else {
            Verdict::Degrading
        }
    }

    /// Point forecast at `x` with a prediction interval at `confidence` (e.g. 0.95).
    pub fn forecast(&self, x: f64, confidence: f64) -> Forecast {
        let value = self.intercept + self.slope * x;
        let n = self.n as f64;
        let se = self.residual_se * (1.0 + 1.0 / n + (x - self.mean_x).powi(2) / self.sxx).sqrt();
        let half = t_critical(n - 2.0, confidence) * se;
        Forecast { value, low: value - half, high: value + half, confidence }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Forecast {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
}

/// Welch's unequal-variances t-test of mean(b) − mean(a).
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Welch {
    pub t: f64,
    pub df: f64,
    pub p_value: f64,
    /// mean(b) − mean(a) and its confidence interval.
    pub difference: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Hedges' g (Cohen's d with the small-sample correction), pooled standard deviation.
    pub effect_size: f64,
}

pub fn welch(a: &[f64], b: &[f64], confidence: f64) -> Option<Welch> {
    let (ma, mb) = (moments(a), moments(b));
    if ma.n < 2 || mb.n < 2 {
        return None;
    }
    let (va, vb) = (ma.variance / ma.n as f64, mb.variance / mb.n as f64);
    let se = (va + vb).sqrt();
    let difference = mb.mean - ma.mean;
    let (t, df) = if se > 0.0 {
        let df = (va + vb).powi(2) / (va.powi(2) / (ma.n - 1) as f64 + vb.powi(2) / (mb.n - 1) as f64);
        (difference / se, df)
    } else {
        (if difference == 0.0 { 0.0 } else { f64::INFINITY.copysign(difference) }, (ma.n + mb.n - 2) as f64)
    };
    let half = t_critical(df, confidence) * se;
    let pooled =
        (((ma.n - 1) as f64 * ma.variance + (mb.n - 1) as f64 * mb.variance) / (ma.n + mb.n - 2) as f64).sqrt();
    let correction = 1.0 - 3.0 / (4.0 * (ma.n + mb.n) as f64 - 9.0);
    let effect_size = if pooled > 0.0 { difference / pooled * correction } else { 0.0 };
    Some(Welch {
        t,
        df,
        p_value: t_p_value(t, df),
        difference,
        ci_low: difference - half,
        ci_high: difference + half,
        effect_size,
    })
}

/// The Mann-Whitney U test (two-sided, normal approximation with tie and continuity
/// corrections, as scipy's `mannwhitneyu(method="asymptotic")`). `u` is U of sample `a`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct MannWhitney {
    pub u: f64,
    pub z: f64,
    pub p_value: f64,
}

pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a.iter().map(|&v| (v, true)).chain(b.iter().map(|&v| (v, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut rank_sum_a = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        for item in &all[i..=j] {
            if item.1 {
                rank_sum_a += rank;
            }
        }
        i = j + 1;
    }
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_a - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let sigma = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    if sigma == 0.0 {
        return Some(MannWhitney { u, z: 0.0, p_value: 1.0 });
    }
    // Continuity correction towards the mean, as scipy does.
    let z = (u - mu - 0.5 * (u - mu).signum()) / sigma;
    let p = match Normal::new(0.0, 1.0) {
        Ok(d) => (2.0 * d.sf(z.abs())).min(1.0),
        Err(_) => f64::NAN,
    };
    Some(MannWhitney { u, z, p_value: p })
}

/// Relative change from `before` to `after` (None when `before` is 0).
pub fn pct_change(before: f64, after: f64) -> Option<f64> {
    (before != 0.0 && before.is_finite() && after.is_finite()).then(|| (after - before) / before.abs() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * b.abs().max(1e-12), "{a} vs {b}");
    }

    // Reference values from scipy 1.17.1 (stats.linregress, ttest_ind(equal_var=False),
    // mannwhitneyu(method="asymptotic")).
    #[test]
    fn linear_trend_matches_scipy_linregress() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = [1.0, 2.1, 2.9, 4.2, 4.8, 6.1, 7.0];
        let t = linear_trend(&x, &y).unwrap();
        close(t.slope, 0.9964285714285713, 1e-12);
        close(t.intercept, 1.0250000000000004, 1e-12);
        close(t.slope_se, 0.027802143508613448, 1e-9);
        close(t.p_value, 3.183088305083619e-07, 1e-6);
        assert_eq!(t.verdict(true, 0.05), Verdict::Improving);
        assert_eq!(t.verdict(false, 0.05), Verdict::Degrading);
        let flat = linear_trend(&x, &[3.0, 2.0, 3.0, 2.0, 3.0, 2.0, 3.0]).unwrap();
        assert_eq!(flat.verdict(true, 0.05), Verdict::Stable);
        let f = t.forecast(7.0, 0.95);
        close(f.value, 1.0250000000000004 + 7.0 * 0.9964285714285713, 1e-12);
        assert!(f.low < f.value && f.value < f.high);
    }

    #[test]
    fn welch_and_mann_whitney_match_scipy() {
        let a = [12.1, 11.8, 13.0, 12.6, 12.2, 11.9, 12.8, 12.4];
        let b = [13.4, 13.1, 14.2, 12.9, 13.8, 13.5, 14.0];
        let w = welch(&a, &b, 0.95).unwrap();
        close(w.t, 5.161659024053898, 1e-9);
        close(w.df, 12.281805745554037, 1e-9);
        close(w.p_value, 0.00021942828698112517, 1e-6);
        let m = mann_whitney(&a, &b).unwrap();
        assert_eq!(m.u, 1.0);
        close(m.p_value, 0.0021637871288703063, 1e-9);
        assert!(w.ci_low > 0.0 && w.effect_size > 2.0);
    }

    #[test]
    fn quantiles_and_changes() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.5), 2.5);
        assert_eq!(quantile(&s, 1.0), 4.0);
        assert_eq!(pct_change(100.0, 138.0), Some(38.0));
        assert_eq!(pct_change(0.0, 1.0), None);
    }
}
