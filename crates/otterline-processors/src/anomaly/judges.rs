//! The detectors: one step of the episode tracker per series and detector, and the
//! verdicts of the LLM detectors (latency, error rate, cost and tokens per call, quality,
//! satisfaction, throughput), the budgets and the generic metric model.

use std::collections::BTreeMap;
use std::sync::Arc;

use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::logs::LogRecord;
use otterline_core::pdata::metrics::{metric, Metric};
use otterline_model::event::Kind;
use otterline_model::names;
use otterline_model::otlp::number;

use super::config::ThroughputConfig;
use super::detect::{zscore, Baseline, Check, Policy, Tracker};
use super::events::event;
use super::{value_of, AnomalyProcessor, Frame, SeriesInfo};

impl AnomalyProcessor {
    /// Runs one detector step; returns an event if the episode changed.
    fn step(
        &mut self,
        key: &str,
        kind: Kind,
        info: &Arc<SeriesInfo>,
        window_end: u64,
        check: impl FnOnce(&Baseline) -> (Check, f64),
    ) -> Option<LogRecord> {
        let policy = self.policy;
        self.step_with(key, kind, info, window_end, false, policy, check)
    }

    /// `always_learn`: fold every window into the baseline (the check returns a value
    /// already clipped to a plausible range), so that bursty-but-normal series widen
    /// their own spread instead of alerting forever.
    #[allow(clippy::too_many_arguments)]
    fn step_with(
        &mut self,
        key: &str,
        kind: Kind,
        info: &Arc<SeriesInfo>,
        window_end: u64,
        always_learn: bool,
        policy: Policy,
        check: impl FnOnce(&Baseline) -> (Check, f64),
    ) -> Option<LogRecord> {
        let alpha = self.cfg.alpha;
        let st = self.states.entry((key.to_string(), kind)).or_default();
        if window_end != 0 && window_end <= st.last_window {
            return None; // already judged (a replayed or duplicated window)
        }
        if st.last_window != 0 && window_end > st.last_window {
            st.window_ns = window_end - st.last_window;
        }
        st.last_window = window_end;
        let (c, learn_value) = check(&st.baseline);
        let (tr, learn) = st.tracker.step(c, window_end, &policy, &mut self.next_id);
        if learn || always_learn {
            st.baseline.update(learn_value, alpha);
        }
        if Tracker::accepted(&tr).is_some() {
            st.baseline.rebase(learn_value);
        }
        tr.map(|t| event(kind, info, &t, window_end))
    }

    pub(super) fn judge_frame(
        &mut self,
        key: &str,
        info: Arc<SeriesInfo>,
        end: u64,
        f: &Frame,
        out: &mut Vec<LogRecord>,
    ) {
        let d = self.cfg.detectors.clone();
        if d.latency.enabled && f.p95_weight > 0.0 {
            let lc = d.latency.clone();
            // One latency verdict on a log scale: z-score with a spread floor and a minimum effect.
            let judge = |v: f64, b: &Baseline| -> (bool, f64, f64, f64) {
                let base = b.mean.exp();
                let z = zscore(v.max(1e-9).ln(), b, 0.0, lc.spread_floor);
                let ratio = v / base.max(1e-12);
                let dev = b.n > 0 && z >= lc.z_threshold && ratio >= lc.min_ratio;
                (dev, (ratio / lc.min_ratio).min(z / lc.z_threshold).max(0.0), base, z)
            };
            // The mean has its own baseline; a deviation of the mean counts for the episode too.
            let mean = f.mean_weighted / f.p95_weight;
            let mean_verdict = {
                let st = self.states.entry((key.to_string(), Kind::MeanLatency)).or_default();
                let v = judge(mean, &st.baseline);
                if !v.0 && st.last_window < end {
                    st.baseline.update(mean.max(1e-9).ln(), self.cfg.alpha);
                }
                st.last_window = end;
                v
            };
            let p95 = f.p95_weighted / f.p95_weight;
            let x = p95.max(1e-9).ln();
            if let Some(e) = self.step(key, Kind::Latency, &info, end, |b| {
                let (p_dev, p_excess, base, z) = judge(p95, b);
                let (m_dev, m_excess, m_base, m_z) = mean_verdict;
                // Report whichever deviates more (p95 unless only the mean does).
                let use_mean = m_dev && (!p_dev || m_excess > p_excess);
                let (observed, baseline, excess, score) =
                    if use_mean { (mean, m_base, m_excess, m_z) } else { (p95, base, p_excess, z) };
                let dev = p_dev || m_dev;
                let ratio = p95 / base.max(1e-12);
                let c = Check {
                    deviating: dev,
                    extreme: dev && excess >= 2.0,
                    calm: b.n == 0 || ratio < 1.0 + (lc.min_ratio - 1.0) / 2.0,
                    excess,
                    observed,
                    baseline,
                    threshold: baseline * lc.min_ratio,
                    score,
                };
                (c, x)
            }) {
                out.push(e);
            }
        }
        if d.error_rate.enabled && f.calls > 0.0 {
            let (n, k) = (f.calls.round() as u64, f.errors.round() as u64);
            let rate = k as f64 / n as f64;
            let ec = d.error_rate.clone();
            if let Some(e) = self.step(key, Kind::ErrorRate, &info, end, |b| {
                let p0 = if b.n == 0 { 0.01 } else { b.mean.max(0.001) };
                let tail = binomial_sf(k, n, p0);
                let dev = n >= ec.min_calls && rate >= ec.floor && tail < ec.p_value;
                let threshold = ec.floor.max(2.0 * p0);
                let c = Check {
                    deviating: dev,
                    extreme: dev && rate >= 2.0 * threshold,
                    calm: rate < threshold / 2.0 || n < ec.min_calls,
                    excess: rate / threshold,
                    observed: rate,
                    baseline: p0,
                    threshold,
                    score: -tail.max(1e-300).log10(),
                };
                (c, rate)
            }) {
                out.push(e);
            }
        }
        let ratio_step = |me: &mut Self, kind: Kind, enabled: bool, ratio: f64, x: f64, out: &mut Vec<LogRecord>| {
            if !enabled {
                return;
            }
            if let Some(e) = me.step(key, kind, &info, end, |b| {
                let r = x / b.mean.max(1e-12);
                let z = zscore(x, b, 0.05, 1e-12);
                let dev = b.n > 0 && r >= ratio && z >= 3.0;
                let c = Check {
                    deviating: dev,
                    extreme: dev && r >= 2.0 * ratio,
                    calm: r < 1.0 + (ratio - 1.0) / 2.0,
                    excess: r / ratio,
                    observed: x,
                    baseline: b.mean,
                    threshold: b.mean * ratio,
                    score: z,
                };
                (c, x)
            }) {
                out.push(e);
            }
        };
        if f.calls > 0.0 && f.cost_seen {
            ratio_step(self, Kind::CostPerCall, d.cost.enabled, d.cost.ratio, f.cost / f.calls, out);
        }
        if f.calls > 0.0 && f.tokens_seen {
            ratio_step(self, Kind::TokensPerCall, d.tokens.enabled, d.tokens.ratio, f.tokens / f.calls, out);
        }
        for (kind, cfg, (sum, w)) in
            [(Kind::Quality, &d.quality, f.quality), (Kind::Satisfaction, &d.satisfaction, f.satisfaction)]
        {
            if !cfg.enabled || w <= 0.0 {
                continue;
            }
            let x = sum / w;
            let drop_cfg = cfg.drop;
            if let Some(e) = self.step(key, kind, &info, end, |b| {
                let scale_drop = if b.mean <= 1.0 {
                    drop_cfg
                } else if b.mean > 10.0 {
                    drop_cfg * 100.0
                } else {
                    drop_cfg * b.mean
                };
                let drop = b.mean - x;
                let dev = b.n > 0 && drop >= scale_drop;
                let c = Check {
                    deviating: dev,
                    extreme: dev && drop >= 2.0 * scale_drop,
                    calm: drop < scale_drop / 2.0,
                    excess: drop / scale_drop,
                    observed: x,
                    baseline: b.mean,
                    threshold: b.mean - scale_drop,
                    score: drop,
                };
                (c, x)
            }) {
                out.push(e);
            }
        }
        if d.throughput.enabled && f.window_s > 0.0 {
            let x = f.calls / f.window_s;
            let tc = d.throughput.clone();
            if let Some(e) = self.step(key, Kind::Throughput, &info, end, |b| throughput_check(x, b, &tc)) {
                out.push(e);
            }
        }
    }

    /// Judges every budget on the frames of each window (summed over the series in scope).
    pub(super) fn judge_budgets(
        &mut self,
        frames: &BTreeMap<(u64, String), (Frame, Arc<SeriesInfo>)>,
        out: &mut Vec<LogRecord>,
    ) {
        use otterline_model::budget::{Mode, Totals};
        let ends: Vec<u64> = {
            let mut e: Vec<u64> = frames.keys().map(|(end, _)| *end).collect();
            e.dedup();
            e
        };
        let budgets = self.cfg.budgets.clone();
        for end in ends {
            for b in budgets.iter().filter(|b| b.mode != Mode::Off) {
                let mut t = Totals::default();
                let mut any = false;
                for ((_, _), (f, info)) in frames.range((end, String::new())..).take_while(|((e, _), _)| *e == end) {
                    let dim = |k: &str| info.dims.iter().find(|(dk, _)| dk == k).map(|(_, v)| v.as_str());
                    if !b.scope.matches(
                        &info.service,
                        dim(names::attr::GEN_AI_OPERATION_NAME),
                        dim(names::attr::GEN_AI_REQUEST_MODEL),
                    ) {
                        continue;
                    }
                    any = true;
                    t.add(&Totals {
                        calls: f.calls,
                        errors: f.errors,
                        p95_weighted: f.p95_weighted,
                        p95_weight: f.p95_weight,
                        duration_sum: f.duration_sum,
                        cost: f.cost,
                        tokens: f.tokens,
                    });
                }
                if !any {
                    continue;
                }
                let key = format!("budget\u{1f}{}", b.name);
                // Sums accumulate over their period; the accumulator restarts with each period.
                if let Some(period) = b.per.nanos() {
                    let start = end.saturating_sub(1) / period * period;
                    let acc = self.periods.entry(b.name.clone()).or_insert((start, Totals::default()));
                    if acc.0 != start {
                        *acc = (start, Totals::default());
                    }
                    acc.1.add(&t);
                    t = acc.1;
                }
                let Some(value) = t.value(b.metric) else { continue };
                let info = Arc::new(SeriesInfo {
                    service: b.scope.service.clone().unwrap_or_default(),
                    dims: vec![
                        (names::budget::NAME.into(), b.name.clone()),
                        (names::budget::METRIC.into(), b.metric.as_str().into()),
                        (names::budget::SCOPE.into(), b.scope.describe()),
                        (
                            names::budget::MODE.into(),
                            if b.mode == Mode::Strict { "strict".into() } else { "warn".into() },
                        ),
                    ],
                    metric: format!("budget {}", b.name),
                });
                self.infos.insert(key.clone(), info.clone());
                let policy = Policy { warmup: 0, required: 1, of: 1, recovery: 1, cooldown: 0, accept_after: u32::MAX };
                let (max, strict) = (b.max, b.mode == Mode::Strict);
                if let Some(e) = self.step_with(&key, Kind::Budget, &info, end, false, policy, |_| {
                    let over = value > max;
                    let excess = if max > 0.0 {
                        value / max
                    } else if over {
                        10.0
                    } else {
                        0.0
                    };
                    // Strict budgets are at least high severity.
                    let excess = if over && strict { excess.max(2.0) } else { excess };
                    (
                        Check {
                            deviating: over,
                            extreme: over,
                            calm: !over,
                            excess,
                            observed: value,
                            baseline: max,
                            threshold: max,
                            score: excess,
                        },
                        value,
                    )
                }) {
                    out.push(e);
                }
            }
        }
    }

    /// Feeds zero throughput for windows a known series skipped (a service gone quiet).
    pub(super) fn missing_windows(&mut self, end: u64, window_ns: u64, out: &mut Vec<LogRecord>) {
        if !self.cfg.detectors.throughput.enabled || window_ns == 0 {
            return;
        }
        let stale: Vec<(String, u64)> = self
            .states
            .iter()
            .filter(|((_, k), s)| *k == Kind::Throughput && s.last_window + window_ns < end)
            .map(|((key, _), s)| (key.clone(), s.last_window))
            .collect();
        let tc = self.cfg.detectors.throughput.clone();
        for (key, last) in stale {
            let Some(info) = self.infos.get(&key).cloned() else { continue };
            let mut w = last + window_ns;
            let mut steps = 0;
            while w < end && steps < 10 {
                if let Some(e) = self.step(&key, Kind::Throughput, &info, w, |b| throughput_check(0.0, b, &tc)) {
                    out.push(e);
                }
                w += window_ns;
                steps += 1;
            }
        }
    }

    pub(super) fn judge_generic(&mut self, metric: &Metric, service: &str, out: &mut Vec<LogRecord>) {
        use otterline_core::pdata::metrics::AggregationTemporality;
        let gc = self.cfg.detectors.metrics.clone();
        if !gc.enabled {
            return;
        }
        let cumulative = |t: i32| t == AggregationTemporality::Cumulative as i32;
        let points: Vec<(&[KeyValue], u64, Reading)> = match &metric.data {
            Some(metric::Data::Gauge(g)) => g
                .data_points
                .iter()
                .filter_map(|p| Some((&p.attributes[..], p.time_unix_nano, Reading::Value(number(p)?))))
                .collect(),
            Some(metric::Data::Sum(s)) => {
                let counter = s.is_monotonic && cumulative(s.aggregation_temporality);
                s.data_points
                    .iter()
                    .filter_map(|p| {
                        let v = number(p)?;
                        // A counter's rate per second: its increase over the time between readings.
                        let r = if counter {
                            Reading::Cumulative { sum: v, count: p.time_unix_nano as f64 / 1e9 }
                        } else {
                            Reading::Value(v)
                        };
                        Some((&p.attributes[..], p.time_unix_nano, r))
                    })
                    .collect()
            }
            Some(metric::Data::Histogram(h)) => h
                .data_points
                .iter()
                .filter_map(|p| {
                    Some((
                        &p.attributes[..],
                        p.time_unix_nano,
                        Reading::mean(p.sum?, p.count, cumulative(h.aggregation_temporality))?,
                    ))
                })
                .collect(),
            Some(metric::Data::ExponentialHistogram(h)) => h
                .data_points
                .iter()
                .filter_map(|p| {
                    Some((
                        &p.attributes[..],
                        p.time_unix_nano,
                        Reading::mean(p.sum?, p.count, cumulative(h.aggregation_temporality))?,
                    ))
                })
                .collect(),
            // Summaries are cumulative by definition.
            Some(metric::Data::Summary(s)) => s
                .data_points
                .iter()
                .filter_map(|p| Some((&p.attributes[..], p.time_unix_nano, Reading::mean(p.sum, p.count, true)?)))
                .collect(),
            None => Vec::new(),
        };
        let params = gc.density();
        let policy = Policy {
            warmup: gc.warmup_windows,
            required: gc.persistence_required,
            of: gc.persistence_windows,
            cooldown: gc.cooldown_windows,
            ..self.policy
        };
        for (attrs, t, reading) in points {
            let dims: Vec<(String, String)> = attrs.iter().map(|kv| (kv.key.clone(), value_of(kv))).collect();
            let key = format!("{}\u{1f}{service}\u{1f}{dims:?}", metric.name);
            let st = self.states.entry((key.clone(), Kind::Metric)).or_default();
            if t != 0 && t <= st.last_window {
                continue; // already judged (a replayed or duplicated point)
            }
            let model = st.model.get_or_insert_with(Default::default);
            let x = match reading {
                Reading::Value(x) => Some(x),
                Reading::Cumulative { sum, count } => model.delta(sum, count),
            };
            let Some(x) = x.filter(|x| x.is_finite()) else { continue };
            let y = slog(x);
            let (seen, seen_smooth) = model.observe(y, gc.smoothing, &params);
            let info = self.info(&key, service, &dims, &metric.name);
            let (thr, rel, min) = (gc.z_threshold, gc.relative_floor, gc.min_similar);
            if let Some(e) = self.step_with(&key, Kind::Metric, &info, t, true, policy, |b| {
                let spread = b.std().max(rel);
                let z = if b.n > 0 { (y - b.mean) / spread } else { 0.0 };
                let dev = b.n > 0 && ((seen < min && z.abs() >= thr) || seen_smooth < min);
                let c = Check {
                    deviating: dev,
                    extreme: dev,
                    calm: seen >= 3.0 * min && seen_smooth >= 3.0 * min,
                    excess: if dev { (z.abs() / thr).max(1.0) } else { z.abs() / thr },
                    observed: x,
                    baseline: unslog(b.mean),
                    threshold: unslog(b.mean + thr * z.signum() * spread),
                    score: z,
                };
                // The baseline (what events report as normal) learns from a winsorised value.
                let learn = if b.n == 0 { y } else { y.clamp(b.mean - 3.0 * spread, b.mean + 3.0 * spread) };
                (c, learn)
            }) {
                out.push(e);
            }
        }
    }
}

/// One reading of a generic metric point.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// A level, judged as it is.
    Value(f64),
    /// A running total: judged by `Δsum / Δcount` between readings.
    Cumulative { sum: f64, count: f64 },
}

impl Reading {
    /// A histogram's mean, of the window (delta) or of what was added since the last
    /// reading; `None` for an empty delta window.
    fn mean(sum: f64, count: u64, cumulative: bool) -> Option<Reading> {
        if cumulative {
            Some(Reading::Cumulative { sum, count: count as f64 })
        } else {
            (count > 0).then(|| Reading::Value(sum / count as f64))
        }
    }
}

/// Symmetric log: sign(x)·ln(1 + |x|).
fn slog(x: f64) -> f64 {
    x.signum() * x.abs().ln_1p()
}

fn unslog(y: f64) -> f64 {
    y.signum() * y.abs().exp_m1()
}

fn throughput_check(x: f64, b: &Baseline, tc: &ThroughputConfig) -> (Check, f64) {
    let judged = b.n > 0 && b.mean >= tc.min_rate;
    let drop = judged && x <= tc.drop_ratio * b.mean;
    let surge = judged && x >= tc.surge_ratio * b.mean && zscore(x, b, 0.1, 1e-9) >= 4.0;
    let excess = if drop {
        (tc.drop_ratio * b.mean / x.max(1e-9)).clamp(1.0, 10.0)
    } else if surge {
        x / (tc.surge_ratio * b.mean)
    } else {
        0.0
    };
    let calm = !judged || (x > 2.0 * tc.drop_ratio * b.mean && x < (1.0 + tc.surge_ratio) / 2.0 * b.mean);
    let threshold = if x < b.mean { tc.drop_ratio * b.mean } else { tc.surge_ratio * b.mean };
    (
        Check {
            deviating: drop || surge,
            extreme: drop && x == 0.0,
            calm,
            excess,
            observed: x,
            baseline: b.mean,
            threshold,
            score: if b.mean > 0.0 { x / b.mean } else { 0.0 },
        },
        x,
    )
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_sf(k: u64, n: u64, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    if n > 2000 {
        // Normal approximation with continuity correction.
        let (nf, kf) = (n as f64, k as f64);
        let z = (kf - 0.5 - nf * p) / (nf * p * (1.0 - p)).sqrt();
        return 0.5 * erfc(z / std::f64::consts::SQRT_2);
    }
    // Sum the upper tail in log space.
    let ln_fact = |m: u64| (1..=m).map(|x| (x as f64).ln()).sum::<f64>();
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    let ln_n = ln_fact(n);
    let mut ln_k = ln_fact(k);
    let mut ln_nk = ln_fact(n - k);
    let mut total = 0.0;
    for i in k..=n {
        if i > k {
            ln_k += (i as f64).ln();
            ln_nk -= ((n - i + 1) as f64).ln();
        }
        total += (ln_n - ln_k - ln_nk + i as f64 * ln_p + (n - i) as f64 * ln_q).exp();
    }
    total.min(1.0)
}

fn erfc(x: f64) -> f64 {
    // Abramowitz–Stegun 7.1.26 on |x|, reflected; enough for a significance threshold.
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = t
        * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        2.0 - y
    }
}
