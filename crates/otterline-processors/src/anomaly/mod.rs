//! The `anomaly` processor: per-series baselines over metrics, and anomaly episodes
//! emitted as OTLP log events.
//!
//! It reads the `aggregate` processor's metrics (joined per window and series, with the
//! status dimension folded in) and runs the LLM detectors on them — latency (p95 on log
//! scale, z-score against an EWMA with a spread floor and a minimum ×2 effect), error rate
//! (a binomial test on counts, with an absolute floor and a minimum number of calls),
//! cost and tokens per call (×1.5), quality and user satisfaction (a drop of 0.2 on a 0–1
//! scale, 20 points on 0–100), and throughput (a drop to near zero, surges). Any other
//! gauge, sum or histogram a client sends is judged by how rarely the series has shown such
//! a value, or such a short-run average, before ([`GenericConfig`], [`detect::MetricModel`]).
//!
//! Every detector shares the episode rules of [`detect::Tracker`] (warm-up, 2-of-3
//! persistence, hysteresis, cooldown, acceptance of a lasting shift). Each episode start,
//! escalation and resolution becomes a log record (`event.name` `otterline.anomaly` or
//! `otterline.anomaly.resolved`) that flows down the pipeline like any log record.

pub mod detect;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::config::ConfigError;
use otterline_core::health::ComponentHealth;
use otterline_core::pdata::common::{any_value, AnyValue, InstrumentationScope, KeyValue};
use otterline_core::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
use otterline_core::pdata::metrics::{metric, number_data_point, Metric};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::ExportLogsServiceRequest;
use otterline_core::Batch;

use detect::{zscore, Baseline, Check, DensityParams, MetricModel, Policy, Tracker, Transition};

pub const EVENT: &str = "otterline.anomaly";
pub const EVENT_RESOLVED: &str = "otterline.anomaly.resolved";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    pub enabled: bool,
    pub z_threshold: f64,
    /// Minimum effect: observed / baseline.
    pub min_ratio: f64,
    /// Floor on the spread of log(p95).
    pub spread_floor: f64,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig { enabled: true, z_threshold: 4.0, min_ratio: 2.0, spread_floor: 0.1 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateConfig {
    pub enabled: bool,
    /// The error rate must reach at least this.
    pub floor: f64,
    pub min_calls: u64,
    /// The binomial tail probability under the baseline rate must be below this.
    pub p_value: f64,
}

impl Default for ErrorRateConfig {
    fn default() -> Self {
        ErrorRateConfig { enabled: true, floor: 0.10, min_calls: 10, p_value: 0.001 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RatioConfig {
    pub enabled: bool,
    /// Observed / baseline that counts as a deviation.
    pub ratio: f64,
}

impl Default for RatioConfig {
    fn default() -> Self {
        RatioConfig { enabled: true, ratio: 1.5 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    pub enabled: bool,
    /// The drop that counts, on a 0–1 scale (scaled ×100 for 0–100 scores, and in
    /// proportion to the baseline for other scales).
    pub drop: f64,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig { enabled: true, drop: 0.2 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThroughputConfig {
    pub enabled: bool,
    /// Observed below this fraction of the baseline is a drop.
    pub drop_ratio: f64,
    /// Observed above this multiple of the baseline is a surge.
    pub surge_ratio: f64,
    /// Baselines below this many calls per second are too quiet to judge.
    pub min_rate: f64,
}

impl Default for ThroughputConfig {
    fn default() -> Self {
        ThroughputConfig { enabled: true, drop_ratio: 0.1, surge_ratio: 3.0, min_rate: 0.05 }
    }
}

/// The detector for every other gauge, sum or histogram.
///
/// It asks of each value how many comparable values the series has shown before (a count
/// that fades with a half-life of `memory_windows`), and of the value's short average
/// likewise. Fewer than `min_similar` of either is a deviation: a value never seen, or a run
/// of values never seen together (a drift, a ramp, a burst that lasts); a never-seen value
/// must also lie `z_threshold` spreads from the baseline. Values are judged on
/// a symmetric log scale, so relative changes matter; "comparable" scales with the series'
/// own long-run spread, so a series that is bursty by nature learns its bursts as normal.
/// Cumulative counters are judged by their rate, cumulative histograms by the mean of what
/// was added.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenericConfig {
    pub enabled: bool,
    /// Fewer comparable past values than this is a deviation.
    pub min_similar: f64,
    /// Half-life of the memory of past values, in windows.
    pub memory_windows: f64,
    /// Comparable: within this fraction of the series' long-run standard deviation (on the
    /// symmetric log scale), and at least within the neighbouring cells.
    pub similarity: f64,
    /// Cell width on the symmetric log scale (0.05 ≈ steps of 5 %).
    pub resolution: f64,
    /// EWMA weight of a new value in the short average.
    pub smoothing: f64,
    /// Most cells remembered per series and feature (memory bound).
    pub max_cells: usize,
    /// Windows a series is watched before it may alert.
    pub warmup_windows: u64,
    /// A never-seen value must also be this many spreads from the baseline (a z-score on
    /// the symmetric log scale against the EWMA baseline), so that the tails of plain
    /// noise do not alert; severity grows with z beyond it.
    pub z_threshold: f64,
    /// Floor on that spread.
    pub relative_floor: f64,
    /// Arbitrary metrics are often single-sample spikes: by default one deviating
    /// sample starts an episode, and a longer cooldown keeps bursty series quiet.
    pub persistence_required: u32,
    pub persistence_windows: u32,
    pub cooldown_windows: u32,
}

impl Default for GenericConfig {
    fn default() -> Self {
        GenericConfig {
            enabled: true,
            min_similar: 3.0,
            memory_windows: 2000.0,
            similarity: 0.25,
            resolution: 0.05,
            smoothing: 0.15,
            max_cells: 128,
            warmup_windows: 100,
            z_threshold: 5.0,
            relative_floor: 0.05,
            persistence_required: 1,
            persistence_windows: 1,
            cooldown_windows: 60,
        }
    }
}

impl GenericConfig {
    fn density(&self) -> DensityParams {
        DensityParams {
            resolution: self.resolution,
            similarity: self.similarity,
            decay: 0.5f64.powf(1.0 / self.memory_windows),
            max_cells: self.max_cells,
            spread_alpha: LONG_RUN_ALPHA,
        }
    }

    fn check(&self) -> Result<(), &'static str> {
        let ok = self.min_similar > 0.0
            && self.memory_windows >= 1.0
            && self.similarity >= 0.0
            && self.resolution > 0.0
            && self.smoothing > 0.0
            && self.smoothing <= 1.0
            && self.max_cells >= 8
            && self.persistence_required >= 1
            && self.persistence_required <= self.persistence_windows
            && self.persistence_windows <= 32;
        if ok {
            Ok(())
        } else {
            Err("detectors.metrics needs min_similar > 0, memory_windows ≥ 1, similarity ≥ 0, resolution > 0, 0 < smoothing ≤ 1, max_cells ≥ 8 and 1 ≤ persistence_required ≤ persistence_windows ≤ 32")
        }
    }
}

/// EWMA weight of the long-run spread that scales "comparable".
const LONG_RUN_ALPHA: f64 = 0.005;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Detectors {
    pub latency: LatencyConfig,
    pub error_rate: ErrorRateConfig,
    pub cost: RatioConfig,
    pub tokens: RatioConfig,
    pub quality: QualityConfig,
    pub satisfaction: QualityConfig,
    pub throughput: ThroughputConfig,
    /// Every other gauge, sum or histogram.
    pub metrics: GenericConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Where baselines and open episodes are saved (periodically and at shutdown) and
    /// loaded from at start; without it, a restart starts a new warm-up.
    pub state_path: Option<std::path::PathBuf>,
    #[serde(with = "otterline_core::units::duration")]
    pub save_interval: std::time::Duration,
    pub warmup_windows: u64,
    /// Deviating windows needed…
    pub persistence_required: u32,
    /// …among this many recent ones.
    pub persistence_windows: u32,
    pub recovery_windows: u32,
    pub cooldown_windows: u32,
    /// A deviation lasting this many windows becomes the new normal.
    pub accept_shift_after: u32,
    /// EWMA weight of a new window.
    pub alpha: f64,
    pub detectors: Detectors,
    /// Static limits; a breach is an episode of type `budget`.
    pub budgets: Vec<crate::budget::Budget>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        let p = Policy::default();
        AnomalyConfig {
            state_path: None,
            save_interval: std::time::Duration::from_secs(60),
            warmup_windows: p.warmup,
            persistence_required: p.required,
            persistence_windows: p.of,
            recovery_windows: p.recovery,
            cooldown_windows: p.cooldown,
            accept_shift_after: p.accept_after,
            alpha: 0.05,
            detectors: Detectors::default(),
            budgets: Vec::new(),
        }
    }
}

impl AnomalyConfig {
    fn policy(&self) -> Policy {
        Policy {
            warmup: self.warmup_windows,
            required: self.persistence_required,
            of: self.persistence_windows,
            recovery: self.recovery_windows,
            cooldown: self.cooldown_windows,
            accept_after: self.accept_shift_after,
        }
    }
}

pub struct AnomalyProcessorFactory;

impl ProcessorFactory for AnomalyProcessorFactory {
    fn type_name(&self) -> &'static str {
        "anomaly"
    }
    fn description(&self) -> &'static str {
        "per-series baselines over metrics; latency, error-rate, cost, quality and throughput anomalies as log events"
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Processor>, ConfigError> {
        let cfg: AnomalyConfig = ctx.parse()?;
        if !(cfg.alpha > 0.0 && cfg.alpha <= 1.0) {
            return Err(ctx.error("alpha", "must be in (0, 1]"));
        }
        if cfg.persistence_required == 0
            || cfg.persistence_required > cfg.persistence_windows
            || cfg.persistence_windows > 32
        {
            return Err(ctx.error("persistence_required", "needs 1 ≤ persistence_required ≤ persistence_windows ≤ 32"));
        }
        cfg.detectors.metrics.check().map_err(|e| ctx.error("detectors", e))?;
        crate::budget::validate(&cfg.budgets).map_err(|e| ctx.error("budgets", e))?;
        if cfg.recovery_windows == 0 {
            return Err(ctx.error("recovery_windows", "must be at least 1"));
        }
        Ok(Box::new(AnomalyProcessor::new(cfg)))
    }
}

/// What a detector watches, for a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Latency,
    ErrorRate,
    CostPerCall,
    TokensPerCall,
    Quality,
    Satisfaction,
    Throughput,
    Metric,
    Budget,
    /// The baseline of mean latency; it feeds the `Latency` episode, never one of its own.
    MeanLatency,
}

impl Kind {
    /// Every kind, in `index` order.
    pub const ALL: [Kind; 10] = [
        Kind::Latency,
        Kind::ErrorRate,
        Kind::CostPerCall,
        Kind::TokensPerCall,
        Kind::Quality,
        Kind::Satisfaction,
        Kind::Throughput,
        Kind::Metric,
        Kind::Budget,
        Kind::MeanLatency,
    ];

    /// Position in [`Kind::ALL`]; the exhaustive match makes a new variant a compile error
    /// here, and the test `kinds_are_all_listed` makes forgetting `ALL` a test failure.
    pub fn index(self) -> usize {
        match self {
            Kind::Latency => 0,
            Kind::ErrorRate => 1,
            Kind::CostPerCall => 2,
            Kind::TokensPerCall => 3,
            Kind::Quality => 4,
            Kind::Satisfaction => 5,
            Kind::Throughput => 6,
            Kind::Metric => 7,
            Kind::Budget => 8,
            Kind::MeanLatency => 9,
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Latency => "latency",
            Kind::ErrorRate => "error_rate",
            Kind::CostPerCall => "cost_per_call",
            Kind::TokensPerCall => "tokens_per_call",
            Kind::Quality => "quality",
            Kind::Satisfaction => "satisfaction",
            Kind::Throughput => "throughput",
            Kind::Metric => "metric",
            Kind::Budget => "budget",
            Kind::MeanLatency => "mean_latency",
        }
    }
}

/// One detector's memory for one series: O(1).
#[derive(Debug, Clone, Default)]
struct State {
    baseline: Baseline,
    tracker: Tracker,
    /// Window end (Unix ns) last evaluated.
    last_window: u64,
    /// The series' window length (ns), learned from consecutive windows.
    window_ns: u64,
    /// Generic metrics only: what values the series has shown.
    model: Option<Box<MetricModel>>,
}

/// A series and what identifies it in events.
#[derive(Debug, Clone, PartialEq)]
struct SeriesInfo {
    service: String,
    /// Dimensions (service excluded), in order.
    dims: Vec<(String, String)>,
    metric: String,
}

impl SeriesInfo {
    fn label(&self) -> String {
        let mut parts: Vec<&str> = Vec::new();
        if !self.service.is_empty() {
            parts.push(&self.service);
        }
        for (_, v) in &self.dims {
            parts.push(v);
        }
        if parts.is_empty() {
            self.metric.clone()
        } else {
            parts.join(" / ")
        }
    }
}

/// The `aggregate` metrics of one series and window, statuses folded together.
#[derive(Debug, Clone, Default)]
struct Frame {
    calls: f64,
    errors: f64,
    p95_weighted: f64,
    p95_weight: f64,
    mean_weighted: f64,
    duration_sum: f64,
    cost: f64,
    cost_seen: bool,
    tokens: f64,
    tokens_seen: bool,
    quality: (f64, f64),
    satisfaction: (f64, f64),
    window_s: f64,
}

pub struct AnomalyProcessor {
    cfg: AnomalyConfig,
    policy: Policy,
    states: HashMap<(String, Kind), State>,
    infos: HashMap<String, Arc<SeriesInfo>>,
    next_id: u64,
    health: Option<Arc<ComponentHealth>>,
    next_save: Option<std::time::Instant>,
    /// Budget name → (period start, running totals) for per-hour/day sums.
    periods: HashMap<String, (u64, crate::budget::Totals)>,
}

fn value_of(v: &Option<any_value::Value>) -> String {
    v.as_ref().map(otterline_core::pdata::value_text).unwrap_or_default()
}

fn num(p: &otterline_core::pdata::metrics::NumberDataPoint) -> Option<f64> {
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
        None => None,
    }
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

/// State files in use by a live processor of this process.
static CLAIMED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());

impl Drop for AnomalyProcessor {
    fn drop(&mut self) {
        if let (Some(path), Ok(mut claimed)) = (&self.cfg.state_path, CLAIMED.lock()) {
            claimed.retain(|p| p != path);
        }
    }
}

impl AnomalyProcessor {
    pub fn new(cfg: AnomalyConfig) -> Self {
        AnomalyProcessor {
            policy: cfg.policy(),
            cfg,
            states: HashMap::new(),
            infos: HashMap::new(),
            next_id: 0,
            health: None,
            next_save: None,
            periods: HashMap::new(),
        }
    }

    /// Loads the saved state, if configured and present.
    fn restore(&mut self) {
        let Some(path) = self.cfg.state_path.clone() else { return };
        // Each pipeline gets its own processor instance: two of them sharing a state file
        // would overwrite each other's baselines.
        if let Ok(mut claimed) = CLAIMED.lock() {
            if claimed.contains(&path) {
                tracing::error!(file = %path.display(), "anomaly: another pipeline's anomaly processor already uses this state_path; give each processor instance its own (e.g. `anomaly/metrics`) — state is not persisted for this one");
                self.cfg.state_path = None;
                return;
            }
            claimed.push(path.clone());
        }
        self.next_save = Some(std::time::Instant::now() + self.cfg.save_interval);
        match state::load(&path) {
            Ok(None) => {
                tracing::info!(file = %path.display(), "anomaly: no saved state yet; baselines start with a warm-up")
            }
            Ok(Some(msg)) => match state::decode(msg, otterline_core::time::now_unix_nanos(), self.cfg.alpha) {
                Some(r) => {
                    tracing::info!(file = %path.display(), detectors = r.states.len(), "anomaly: restored baselines and open episodes");
                    self.states = r.states;
                    self.infos = r.infos;
                    self.next_id = r.next_id;
                }
                None => {
                    tracing::warn!(file = %path.display(), "anomaly: saved state has another format version; starting fresh")
                }
            },
            Err(e) => tracing::warn!("anomaly: {e}; starting fresh"),
        }
    }

    /// Saves the state, if configured.
    fn persist(&mut self) {
        let Some(path) = self.cfg.state_path.clone() else { return };
        self.next_save = Some(std::time::Instant::now() + self.cfg.save_interval);
        let msg = state::encode(&self.states, &self.infos, self.next_id, otterline_core::time::now_unix_nanos());
        if let Err(e) = state::save(&path, &msg) {
            tracing::error!(file = %path.display(), error = %e, "anomaly: cannot save state");
            if let Some(h) = &self.health {
                h.add_extra("state_save_errors", 1);
            }
        }
    }

    /// Series currently tracked (one state per series and detector).
    pub fn tracked(&self) -> usize {
        self.states.len()
    }

    /// Histogram cells held by the generic-metric models (both features), for benchmarks.
    pub fn metric_cells(&self) -> usize {
        self.states.values().filter_map(|s| s.model.as_ref()).map(|m| m.point.cells.len() + m.smooth.cells.len()).sum()
    }

    fn info(&mut self, key: &str, service: &str, dims: &[(String, String)], metric: &str) -> Arc<SeriesInfo> {
        if let Some(i) = self.infos.get(key) {
            return i.clone();
        }
        let i = Arc::new(SeriesInfo { service: service.to_string(), dims: dims.to_vec(), metric: metric.to_string() });
        self.infos.insert(key.to_string(), i.clone());
        i
    }

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

    fn judge_frame(&mut self, key: &str, info: Arc<SeriesInfo>, end: u64, f: &Frame, out: &mut Vec<LogRecord>) {
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
    fn judge_budgets(&mut self, frames: &BTreeMap<(u64, String), (Frame, Arc<SeriesInfo>)>, out: &mut Vec<LogRecord>) {
        use crate::budget::{Mode, Totals};
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
                    if !b.scope.matches(&info.service, dim("gen_ai.operation.name"), dim("gen_ai.request.model")) {
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
                        ("otterline.budget.name".into(), b.name.clone()),
                        ("otterline.budget.metric".into(), b.metric.as_str().into()),
                        ("otterline.budget.scope".into(), b.scope.describe()),
                        (
                            "otterline.budget.mode".into(),
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
    fn missing_windows(&mut self, end: u64, window_ns: u64, out: &mut Vec<LogRecord>) {
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

    fn judge_generic(&mut self, metric: &Metric, service: &str, out: &mut Vec<LogRecord>) {
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
                .filter_map(|p| Some((&p.attributes[..], p.time_unix_nano, Reading::Value(num(p)?))))
                .collect(),
            Some(metric::Data::Sum(s)) => {
                let counter = s.is_monotonic && cumulative(s.aggregation_temporality);
                s.data_points
                    .iter()
                    .filter_map(|p| {
                        let v = num(p)?;
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
            let dims: Vec<(String, String)> = attrs
                .iter()
                .map(|kv| (kv.key.clone(), value_of(&kv.value.as_ref().and_then(|v| v.value.clone()))))
                .collect();
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

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: k.to_string(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

fn suggestion(kind: Kind, info: &SeriesInfo, c: &Check, started: &str) -> String {
    let who = info.label();
    let times = if c.baseline.abs() > 1e-12 { c.observed / c.baseline } else { 0.0 };
    match kind {
        Kind::MeanLatency => format!("mean latency of {who} is {times:.1}× its baseline ({}s vs {}s) since {started}; check provider latency, prompt size or retries", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Latency => format!("p95 of {who} is {times:.1}× its baseline ({}s vs {}s) since {started}; check provider latency, prompt size or retries", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::ErrorRate => format!("error rate of {who} is {:.1}% (baseline {:.1}%) since {started}; check provider status, rate limits and recent deploys", c.observed * 100.0, c.baseline * 100.0),
        Kind::CostPerCall => format!("cost per call of {who} is {times:.1}× its baseline (${} vs ${}) since {started}; check for a model switch, longer prompts or outputs", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::TokensPerCall => format!("tokens per call of {who} are {times:.1}× their baseline ({} vs {}) since {started}; check prompt templates, retrieved context size or runaway outputs", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Quality => format!("quality score of {who} dropped to {} from {} since {started}; check recent prompt, model or retrieval changes", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Satisfaction => format!("user satisfaction of {who} dropped to {} from {} since {started}; review recent conversations and releases", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Throughput if c.observed < c.baseline => format!("throughput of {who} fell to {} calls/s from {} since {started}; the service or its callers may be down", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Throughput => format!("throughput of {who} surged to {} calls/s from {} since {started}; check for retry storms, loops or abuse", fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Metric => format!("{} of {who} is {} against a baseline of {} since {started}, a level it has rarely or never shown before; check what changed around then", info.metric, fmt_num(c.observed), fmt_num(c.baseline)),
        Kind::Budget => {
            let dim = |k: &str| info.dims.iter().find(|(dk, _)| dk == k).map(|(_, v)| v.clone()).unwrap_or_default();
            format!("budget {}: {} of {} is {} over its limit of {} since {started} ({} mode)", dim("otterline.budget.name"), dim("otterline.budget.metric"), dim("otterline.budget.scope"), fmt_num(c.observed), fmt_num(c.threshold), dim("otterline.budget.mode"))
        }
    }
}

fn hhmm(ns: u64) -> String {
    otterline_core::time::from_unix_nanos(ns).format("%H:%M UTC").to_string()
}

/// The log record for an episode transition.
fn event(kind: Kind, info: &SeriesInfo, t: &Transition, now: u64) -> LogRecord {
    let (ep, state, name) = match t {
        Transition::Started(ep) => (ep, "firing", EVENT),
        Transition::Escalated(ep) => (ep, "escalated", EVENT),
        Transition::Resolved(ep, _) => (ep, "resolved", EVENT_RESOLVED),
    };
    let c = if matches!(t, Transition::Resolved(..)) {
        &ep.last
    } else if matches!(t, Transition::Started(_)) {
        &ep.first
    } else {
        &ep.last
    };
    let started = hhmm(ep.started_at);
    let text = match t {
        Transition::Resolved(_, why) => {
            format!("resolved ({why}) after {} windows: {}", ep.windows, suggestion(kind, info, &ep.first, &started))
        }
        _ => suggestion(kind, info, c, &started),
    };
    use any_value::Value as V;
    let mut attributes = vec![
        kv("otterline.anomaly.type", V::StringValue(kind.as_str().into())),
        kv("otterline.anomaly.severity", V::StringValue(ep.severity.as_str().into())),
        kv("otterline.anomaly.state", V::StringValue(state.into())),
        kv("otterline.anomaly.series", V::StringValue(info.label())),
        kv("otterline.anomaly.metric", V::StringValue(info.metric.clone())),
        kv("otterline.anomaly.episode_id", V::IntValue(ep.id as i64)),
        kv("otterline.anomaly.observed", V::DoubleValue(c.observed)),
        kv("otterline.anomaly.baseline", V::DoubleValue(c.baseline)),
        kv("otterline.anomaly.threshold", V::DoubleValue(c.threshold)),
        kv("otterline.anomaly.score", V::DoubleValue(c.score)),
        kv(
            "otterline.anomaly.started_at",
            V::StringValue(otterline_core::time::from_unix_nanos(ep.started_at).to_rfc3339_opts(chrono_secs(), true)),
        ),
        kv("otterline.anomaly.suggestion", V::StringValue(text.clone())),
    ];
    if let Transition::Resolved(_, why) = t {
        attributes.push(kv("otterline.anomaly.resolution", V::StringValue((*why).into())));
        attributes.push(kv("otterline.anomaly.duration_windows", V::IntValue(ep.windows as i64)));
    }
    for (k, v) in &info.dims {
        attributes.push(kv(k, V::StringValue(v.clone())));
    }
    if !info.service.is_empty() {
        attributes.push(kv("service.name", V::StringValue(info.service.clone())));
    }
    LogRecord {
        time_unix_nano: now,
        observed_time_unix_nano: otterline_core::time::now_unix_nanos(),
        severity_number: if matches!(t, Transition::Resolved(..)) { 9 } else { ep.severity.otlp_number() },
        severity_text: if matches!(t, Transition::Resolved(..)) {
            "INFO".into()
        } else {
            ep.severity.as_str().to_uppercase()
        },
        body: Some(AnyValue { value: Some(V::StringValue(text)) }),
        attributes,
        event_name: name.into(),
        ..Default::default()
    }
}

fn chrono_secs() -> chrono::SecondsFormat {
    chrono::SecondsFormat::Secs
}

const AGG_METRICS: [&str; 8] = [
    "otterline.operation.calls",
    "otterline.operation.errors",
    "otterline.operation.duration.summary",
    "otterline.operation.duration.mean",
    "otterline.operation.cost",
    "otterline.token.usage",
    "otterline.quality.score",
    "otterline.user.satisfaction",
];
const AGG_IGNORED: [&str; 3] =
    ["gen_ai.client.operation.duration", "gen_ai.client.token.usage", "otterline.operation.throughput"];

impl Processor for AnomalyProcessor {
    fn attach(&mut self, health: Arc<ComponentHealth>) {
        self.health = Some(health);
        self.restore();
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        self.next_save
    }

    fn on_timer(&mut self, _now: std::time::Instant, _out: &mut Vec<Batch>) {
        self.persist();
    }

    fn shutdown(&mut self, _out: &mut Vec<Batch>) {
        self.persist();
    }

    fn process(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let Batch::Metrics(req) = &batch else {
            out.push(batch);
            return;
        };
        let mut events = Vec::new();
        // (series key, window end) → frame; plus the series' identity.
        let mut frames: BTreeMap<(u64, String), (Frame, Arc<SeriesInfo>)> = BTreeMap::new();
        let mut window_ns = 0u64;
        for rm in &req.resource_metrics {
            let service = otterline_core::pdata::service_name(rm.resource.as_ref()).unwrap_or("").to_string();
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    if AGG_IGNORED.contains(&m.name.as_str()) {
                        continue;
                    }
                    if !AGG_METRICS.contains(&m.name.as_str()) {
                        self.judge_generic(m, &service, &mut events);
                        continue;
                    }
                    let mut add = |attrs: &[KeyValue], start: u64, end: u64, f: &mut dyn FnMut(&mut Frame, bool)| {
                        let is_error = attrs.iter().any(|kv| {
                            kv.key == "otel.status_code"
                                && value_of(&kv.value.as_ref().and_then(|v| v.value.clone())) == "ERROR"
                        });
                        let dims: Vec<(String, String)> = attrs
                            .iter()
                            .filter(|kv| kv.key != "otel.status_code" && kv.key != "gen_ai.token.type")
                            .map(|kv| (kv.key.clone(), value_of(&kv.value.as_ref().and_then(|v| v.value.clone()))))
                            .collect();
                        let key = format!("{service}\u{1f}{dims:?}");
                        let info = self.info(&key, &service, &dims, "otterline.operation");
                        let entry = frames.entry((end, key)).or_insert_with(|| {
                            (Frame { window_s: end.saturating_sub(start) as f64 / 1e9, ..Default::default() }, info)
                        });
                        window_ns = window_ns.max(end.saturating_sub(start));
                        f(&mut entry.0, is_error);
                    };
                    match (&m.data, m.name.as_str()) {
                        (Some(metric::Data::Sum(s)), "otterline.operation.calls") => {
                            for p in &s.data_points {
                                let v = num(p).unwrap_or(0.0);
                                add(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, &mut |f, _| f.calls += v);
                            }
                        }
                        (Some(metric::Data::Sum(s)), "otterline.operation.errors") => {
                            for p in &s.data_points {
                                let v = num(p).unwrap_or(0.0);
                                add(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, &mut |f, _| f.errors += v);
                            }
                        }
                        (Some(metric::Data::Sum(s)), "otterline.operation.cost") => {
                            for p in &s.data_points {
                                let v = num(p).unwrap_or(0.0);
                                add(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, &mut |f, _| {
                                    f.cost += v;
                                    f.cost_seen = true;
                                });
                            }
                        }
                        (Some(metric::Data::Sum(s)), "otterline.token.usage") => {
                            for p in &s.data_points {
                                let ty = p
                                    .attributes
                                    .iter()
                                    .find(|kv| kv.key == "gen_ai.token.type")
                                    .map(|kv| value_of(&kv.value.as_ref().and_then(|v| v.value.clone())))
                                    .unwrap_or_default();
                                if ty != "input" && ty != "output" {
                                    continue;
                                }
                                let v = num(p).unwrap_or(0.0);
                                add(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, &mut |f, _| {
                                    f.tokens += v;
                                    f.tokens_seen = true;
                                });
                            }
                        }
                        (Some(metric::Data::Summary(s)), _) => {
                            for p in &s.data_points {
                                let Some(q) = p.quantile_values.iter().find(|q| (q.quantile - 0.95).abs() < 1e-9)
                                else {
                                    continue;
                                };
                                let (w, v, mean) =
                                    (p.count as f64, q.value, if p.count > 0 { p.sum / p.count as f64 } else { 0.0 });
                                let total = p.sum;
                                add(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, &mut |f, err| {
                                    f.duration_sum += total;
                                    // Latency is judged on the calls that did not fail.
                                    if !err {
                                        f.p95_weighted += v * w;
                                        f.p95_weight += w;
                                        f.mean_weighted += mean * w;
                                    }
                                });
                            }
                        }
                        (Some(metric::Data::Gauge(g)), "otterline.quality.score" | "otterline.user.satisfaction") => {
                            let sat = m.name == "otterline.user.satisfaction";
                            for p in &g.data_points {
                                let v = num(p).unwrap_or(0.0);
                                add(&p.attributes, p.start_time_unix_nano, p.time_unix_nano, &mut |f, _| {
                                    let slot = if sat { &mut f.satisfaction } else { &mut f.quality };
                                    slot.0 += v;
                                    slot.1 += 1.0;
                                });
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let latest = frames.keys().map(|(end, _)| *end).max().unwrap_or(0);
        if !self.cfg.budgets.is_empty() {
            self.judge_budgets(&frames, &mut events);
        }
        for ((end, key), (frame, info)) in frames {
            self.judge_frame(&key, info, end, &frame, &mut events);
        }
        if latest > 0 {
            self.missing_windows(latest, window_ns, &mut events);
        }
        out.push(batch);
        if !events.is_empty() {
            if let Some(h) = &self.health {
                h.add_extra("anomaly_events", events.len() as u64);
            }
            out.push(events_batch(events));
        }
    }
}

/// Groups events by service into one logs batch.
fn events_batch(events: Vec<LogRecord>) -> Batch {
    let mut by_service: BTreeMap<String, Vec<LogRecord>> = BTreeMap::new();
    for e in events {
        let svc = e
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .map(|kv| value_of(&kv.value.as_ref().and_then(|v| v.value.clone())))
            .unwrap_or_default();
        by_service.entry(svc).or_default().push(e);
    }
    Batch::Logs(ExportLogsServiceRequest {
        resource_logs: by_service
            .into_iter()
            .map(|(svc, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: if svc.is_empty() {
                        vec![]
                    } else {
                        vec![kv("service.name", any_value::Value::StringValue(svc))]
                    },
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "otterline.anomaly".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateConfig, AggregateProcessor};
    use otterline_core::pdata::trace::{ResourceSpans, ScopeSpans, Span, Status};
    use otterline_core::pdata::ExportTraceServiceRequest;
    use std::time::Duration;

    const T0: u64 = 1_763_874_000_000_000_000;
    const W: u64 = 60_000_000_000;

    /// One window of traffic for the `chat` operation of `model`.
    #[derive(Clone, Copy)]
    struct Traffic {
        calls: usize,
        latency_s: f64,
        error_frac: f64,
        cost: f64,
        quality: f64,
        model: &'static str,
    }

    const STEADY: Traffic =
        Traffic { calls: 60, latency_s: 0.8, error_frac: 0.02, cost: 0.002, quality: 0.85, model: "gpt-4o-mini" };

    fn spans(window: u64, t: Traffic) -> Vec<Span> {
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        (0..t.calls)
            .map(|i| {
                let end = T0 + window * W + 1_000_000 + i as u64 * (W / (t.calls as u64 + 1));
                // ±20 % deterministic jitter around the latency.
                let jitter = 0.8 + 0.4 * ((i * 7919 % 101) as f64 / 100.0);
                let dur = (t.latency_s * jitter * 1e9) as u64;
                let failed = (i as f64) < t.error_frac * t.calls as f64;
                Span {
                    name: "chat".into(),
                    start_time_unix_nano: end - dur,
                    end_time_unix_nano: end,
                    status: Some(Status { code: if failed { 2 } else { 1 }, message: String::new() }),
                    attributes: vec![
                        kv("gen_ai.operation.name", any_value::Value::StringValue("chat".into())),
                        kv("gen_ai.request.model", any_value::Value::StringValue(t.model.into())),
                        kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(500)),
                        kv("gen_ai.usage.output_tokens", any_value::Value::IntValue(100)),
                        kv("gen_ai.usage.cost", any_value::Value::DoubleValue(t.cost)),
                        kv("quality.score", any_value::Value::DoubleValue(t.quality)),
                    ],
                    ..Default::default()
                }
            })
            .collect()
    }

    fn aggregate() -> AggregateProcessor {
        AggregateProcessor::new(AggregateConfig {
            allowed_lateness: Duration::ZERO,
            dimensions: vec![
                "service.name".into(),
                "span.name".into(),
                "gen_ai.operation.name".into(),
                "status".into(),
            ],
            ..Default::default()
        })
    }

    /// Runs windows of traffic through `aggregate` (dimensions without the model, so a
    /// model switch stays one series) and then `anomaly`; returns (window, event) pairs.
    fn run(plan: &[Traffic]) -> Vec<(usize, LogRecord)> {
        let mut plan = plan.to_vec();
        plan.push(STEADY);
        feed(&mut aggregate(), &mut AnomalyProcessor::new(AnomalyConfig::default()), 0, &plan)
    }

    /// Feeds windows `first..` of traffic; each window closes the one before it.
    fn feed(
        agg: &mut AggregateProcessor,
        anomaly: &mut AnomalyProcessor,
        first: usize,
        plan: &[Traffic],
    ) -> Vec<(usize, LogRecord)> {
        let mut events = Vec::new();
        for (i, t) in plan.iter().enumerate() {
            let w = first + i;
            let batch = Batch::Traces(ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", any_value::Value::StringValue("support-agent".into()))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans { spans: spans(w as u64, *t), ..Default::default() }],
                    ..Default::default()
                }],
            });
            let mut metrics = Vec::new();
            agg.process(batch, &mut metrics);
            for m in metrics {
                let mut out = Vec::new();
                anomaly.process(m, &mut out);
                for b in out {
                    if let Batch::Logs(l) = b {
                        for r in l.resource_logs.into_iter().flat_map(|r| r.scope_logs).flat_map(|s| s.log_records) {
                            events.push((w, r));
                        }
                    }
                }
            }
        }
        events
    }

    fn attr_s(r: &LogRecord, k: &str) -> String {
        r.attributes
            .iter()
            .find(|kv| kv.key == k)
            .map(|kv| value_of(&kv.value.as_ref().and_then(|v| v.value.clone())))
            .unwrap_or_default()
    }

    fn plan(steady: usize, bad: Traffic, bad_windows: usize, after: usize) -> Vec<Traffic> {
        let mut p = vec![STEADY; steady];
        p.extend(std::iter::repeat_n(bad, bad_windows));
        p.extend(std::iter::repeat_n(STEADY, after));
        p
    }

    /// Asserts one episode of `kind`: fired within `max_delay` windows of `start`, resolved later.
    fn assert_episode(events: &[(usize, LogRecord)], kind: &str, start: usize, max_delay: usize) {
        let fired: Vec<&(usize, LogRecord)> = events
            .iter()
            .filter(|(_, r)| r.event_name == EVENT && attr_s(r, "otterline.anomaly.state") == "firing")
            .collect();
        assert_eq!(
            fired.len(),
            1,
            "one episode: {:?}",
            events
                .iter()
                .map(|(w, r)| (w, attr_s(r, "otterline.anomaly.type"), attr_s(r, "otterline.anomaly.state")))
                .collect::<Vec<_>>()
        );
        let (w, r) = fired[0];
        assert_eq!(attr_s(r, "otterline.anomaly.type"), kind);
        assert!(*w >= start && *w <= start + max_delay, "{kind} detected at window {w}, anomaly began at {start}");
        assert_eq!(attr_s(r, "service.name"), "support-agent");
        assert!(!attr_s(r, "otterline.anomaly.suggestion").is_empty());
        let resolved = events.iter().filter(|(_, r)| r.event_name == EVENT_RESOLVED).count();
        assert_eq!(resolved, 1, "the episode resolves after recovery");
    }

    #[test]
    fn steady_traffic_raises_nothing() {
        let events = run(&vec![STEADY; 80]);
        assert!(
            events.is_empty(),
            "{:?}",
            events.iter().map(|(w, r)| (w, attr_s(r, "otterline.anomaly.type"))).collect::<Vec<_>>()
        );
    }

    #[test]
    fn latency_spike() {
        let events = run(&plan(30, Traffic { latency_s: 3.2, ..STEADY }, 4, 20));
        // Aggregates reach the detector one window later (when the window closes).
        assert_episode(&events, "latency", 30, 3);
        let (_, r) = events.iter().find(|(_, r)| r.event_name == EVENT).unwrap();
        assert!(
            attr_s(r, "otterline.anomaly.suggestion").starts_with("p95 of support-agent / chat / chat is 4."),
            "{}",
            attr_s(r, "otterline.anomaly.suggestion")
        );
    }

    #[test]
    fn error_burst() {
        assert_episode(&run(&plan(30, Traffic { error_frac: 0.4, ..STEADY }, 4, 20)), "error_rate", 30, 3);
    }

    #[test]
    fn switch_to_an_expensive_model() {
        assert_episode(
            &run(&plan(30, Traffic { cost: 0.012, model: "gpt-4o", ..STEADY }, 5, 20)),
            "cost_per_call",
            30,
            3,
        );
    }

    #[test]
    fn quality_drop() {
        assert_episode(&run(&plan(30, Traffic { quality: 0.55, ..STEADY }, 5, 20)), "quality", 30, 3);
    }

    #[test]
    fn saved_state_survives_a_restart_without_a_new_warm_up() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AnomalyConfig { state_path: Some(dir.path().join("state/anomaly.pb")), ..Default::default() };
        let health = Arc::new(ComponentHealth::new("processor", "anomaly".into()));
        let mut agg = aggregate();
        let mut first = AnomalyProcessor::new(cfg.clone());
        first.attach(health.clone());
        assert!(feed(&mut agg, &mut first, 0, &[STEADY; 31]).is_empty());
        first.shutdown(&mut Vec::new());
        assert!(dir.path().join("state/anomaly.pb").exists());
        assert!(!otterline_core::fsutil::temp_path(&dir.path().join("state/anomaly.pb")).exists());

        let spike = Traffic { latency_s: 3.2, ..STEADY };
        let plan = [spike, spike, spike, STEADY];
        // Restored: the spike right after the restart is detected.
        let tracked = first.tracked();
        drop(first);
        let mut second = AnomalyProcessor::new(cfg);
        second.attach(health);
        assert_eq!(second.tracked(), tracked);
        let events = feed(&mut agg, &mut second, 31, &plan);
        assert!(
            events.iter().any(|(_, r)| attr_s(r, "otterline.anomaly.type") == "latency"
                && attr_s(r, "otterline.anomaly.state") == "firing"),
            "{}",
            events.len()
        );
        // Control: without the state, the same windows fall in a new warm-up.
        let mut fresh = AnomalyProcessor::new(AnomalyConfig::default());
        let mut agg2 = aggregate();
        assert!(feed(&mut agg2, &mut fresh, 31, &plan).is_empty());
    }

    #[test]
    fn budgets_fire_on_breach_with_their_mode_and_scope() {
        use crate::budget::{Budget, BudgetMetric, Mode, Period, Scope};
        let budgets = vec![
            // p95 ≈ 0.8 × 1.2 s in every window: breached from the first window, strict.
            Budget {
                name: "chat-p95".into(),
                metric: BudgetMetric::P95Latency,
                max: 0.5,
                per: Period::Window,
                scope: Scope { service: Some("support-agent".into()), ..Default::default() },
                mode: Mode::Strict,
            },
            // 60 calls × $0.002 = $0.12 per window: a $0.50 daily budget breaks in the 5th window.
            Budget {
                name: "daily-cost".into(),
                metric: BudgetMetric::Cost,
                max: 0.5,
                per: Period::Day,
                scope: Scope::default(),
                mode: Mode::Warn,
            },
            // Out of scope: never judged.
            Budget {
                name: "other".into(),
                metric: BudgetMetric::Calls,
                max: 0.0,
                per: Period::Window,
                scope: Scope { service: Some("nobody".into()), ..Default::default() },
                mode: Mode::Strict,
            },
        ];
        let mut p = AnomalyProcessor::new(AnomalyConfig { budgets, ..Default::default() });
        let events = feed(&mut aggregate(), &mut p, 0, &[STEADY; 8]);
        let budget_events: Vec<&(usize, LogRecord)> =
            events.iter().filter(|(_, r)| attr_s(r, "otterline.anomaly.type") == "budget").collect();
        let fired = |name: &str| {
            budget_events
                .iter()
                .filter(|(_, r)| {
                    attr_s(r, "otterline.budget.name") == name && attr_s(r, "otterline.anomaly.state") == "firing"
                })
                .map(|(w, r)| (*w, attr_s(r, "otterline.anomaly.severity")))
                .collect::<Vec<_>>()
        };
        // Aggregates arrive one window late: window 0 is judged when window 1's spans arrive.
        assert_eq!(fired("chat-p95"), vec![(1, "high".to_string())]);
        assert_eq!(fired("daily-cost"), vec![(5, "low".to_string())]);
        assert!(fired("other").is_empty());
        let (_, r) = budget_events[0];
        assert!(
            attr_s(r, "otterline.anomaly.suggestion")
                .starts_with("budget chat-p95: p95_latency of service support-agent is 0."),
            "{}",
            attr_s(r, "otterline.anomaly.suggestion")
        );
    }

    /// Deterministic standard normal samples (xorshift + Box–Muller).
    fn normals(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed.max(1);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 1_000_000 + 1) as f64 / 1_000_001.0
        };
        (0..n).map(|_| (-2.0 * next().ln()).sqrt() * (2.0 * std::f64::consts::PI * next()).cos()).collect()
    }

    /// Feeds one metric; whether an episode started.
    fn fires(p: &mut AnomalyProcessor, m: Metric) -> bool {
        use otterline_core::pdata::metrics::{ResourceMetrics, ScopeMetrics};
        use otterline_core::pdata::ExportMetricsServiceRequest;
        let mut out = Vec::new();
        p.process(
            Batch::Metrics(ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    scope_metrics: vec![ScopeMetrics { metrics: vec![m], ..Default::default() }],
                    ..Default::default()
                }],
            }),
            &mut out,
        );
        out.iter().any(|b| match b {
            Batch::Logs(l) => l
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .flat_map(|s| &s.log_records)
                .any(|r| r.event_name == EVENT && attr_s(r, "otterline.anomaly.state") == "firing"),
            _ => false,
        })
    }

    fn point(i: usize, v: f64) -> otterline_core::pdata::metrics::NumberDataPoint {
        otterline_core::pdata::metrics::NumberDataPoint {
            time_unix_nano: T0 + i as u64 * W,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn gauge(i: usize, v: f64) -> Metric {
        use otterline_core::pdata::metrics::Gauge;
        Metric {
            name: "queue.depth".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(i, v)] })),
            ..Default::default()
        }
    }

    /// A cumulative monotonic counter reading.
    fn counter(i: usize, total: f64) -> Metric {
        use otterline_core::pdata::metrics::{AggregationTemporality, Sum};
        Metric {
            name: "requests".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(i, total)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    /// Feeds a gauge series (one value per minute) and returns the indices where episodes start.
    fn gauge_episodes(values: &[f64]) -> Vec<usize> {
        let mut p = AnomalyProcessor::new(AnomalyConfig::default());
        (0..values.len()).filter(|&i| fires(&mut p, gauge(i, values[i]))).collect()
    }

    fn noisy(n: usize, level: f64, sd: f64, seed: u64) -> Vec<f64> {
        normals(n, seed).into_iter().map(|z| level + sd * z).collect()
    }

    #[test]
    fn generic_series_detection_delays() {
        // (name, series, where the anomaly starts, the largest acceptable delay)
        let mut spike = noisy(300, 100.0, 2.0, 1);
        spike[200] = 200.0;
        let mut up = noisy(300, 100.0, 2.0, 2);
        up[200..].iter_mut().for_each(|v| *v += 50.0);
        let mut down = noisy(300, 100.0, 2.0, 3);
        down[200..].iter_mut().for_each(|v| *v -= 50.0);
        let mut ramp = noisy(400, 100.0, 2.0, 4);
        ramp[200..].iter_mut().enumerate().for_each(|(i, v)| *v += 2.0 * i as f64);
        // Noise from 1 % to 40 % of the level. (The spread floor is 5 % of the level on the log
        // scale, so noise that stays within about ±25 % of a quiet series is never flagged.)
        let mut variance = noisy(400, 100.0, 1.0, 5);
        variance[200..].iter_mut().zip(normals(200, 55)).for_each(|(v, z)| *v = (100.0 + 40.0 * z).max(1.0));
        let mut flat = vec![5.0; 300];
        flat[250] = 50.0;
        for (name, series, start, max_delay) in [
            ("spike", spike, 200, 0),
            ("level shift up", up, 200, 1),
            ("level shift down", down, 200, 1),
            ("ramp", ramp, 200, 20),
            ("variance change", variance, 200, 30),
            ("flat with a rare spike", flat, 250, 0),
        ] {
            let eps = gauge_episodes(&series);
            let first = eps.first().copied().unwrap_or_else(|| panic!("{name}: not detected"));
            assert!(first >= start, "{name}: false alert at {first} before the anomaly at {start} ({eps:?})");
            assert!(first - start <= max_delay, "{name}: detected {} windows late", first - start);
        }
    }

    #[test]
    fn no_anomaly_series_stay_quiet() {
        for seed in 10..15 {
            let eps = gauge_episodes(&noisy(2000, 100.0, 5.0, seed));
            assert!(eps.is_empty(), "seed {seed}: {eps:?}");
        }
        assert!(gauge_episodes(&[0.0; 500]).is_empty(), "an all-zero series");
        // All-zero error rate on steady traffic: no error-rate alerts.
        assert!(run(&vec![Traffic { error_frac: 0.0, ..STEADY }; 60]).is_empty());
    }

    #[test]
    fn counters_are_judged_by_their_rate() {
        // A counter growing by ~600 a minute (10/s) is steady, although every reading is new.
        let rates: Vec<f64> = noisy(400, 10.0, 0.5, 21);
        let mut p = AnomalyProcessor::new(AnomalyConfig::default());
        let mut total = 0.0;
        let mut starts = Vec::new();
        for (i, r) in rates.iter().enumerate() {
            // From window 300 on, the rate is ten times higher; at 350 the counter resets.
            total = if i == 350 { 0.0 } else { total + 60.0 * r * if i >= 300 { 10.0 } else { 1.0 } };
            if fires(&mut p, counter(i, total)) {
                starts.push(i);
            }
        }
        assert_eq!(starts.first(), Some(&300), "{starts:?}");
        assert!(starts.iter().all(|&i| i >= 300), "{starts:?}");
    }

    #[test]
    fn generic_metric_model_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = AnomalyConfig { state_path: Some(dir.path().join("anomaly.pb")), ..Default::default() };
        let health = Arc::new(ComponentHealth::new("processor", "anomaly".into()));
        let values = noisy(300, 100.0, 2.0, 31);
        let mut first = AnomalyProcessor::new(cfg.clone());
        first.attach(health.clone());
        for (i, v) in values.iter().enumerate().take(200) {
            assert!(!fires(&mut first, gauge(i, *v)));
        }
        first.shutdown(&mut Vec::new());
        drop(first);
        let mut second = AnomalyProcessor::new(cfg);
        second.attach(health);
        // Normal values right after the restart are still familiar; a new level is not.
        for (i, v) in values.iter().enumerate().skip(200).take(20) {
            assert!(!fires(&mut second, gauge(i, *v)), "window {i}");
        }
        assert!(fires(&mut second, gauge(220, 160.0)));
        // Control: a fresh processor is still warming up and says nothing.
        let mut fresh = AnomalyProcessor::new(AnomalyConfig::default());
        assert!((200..221).all(|i| !fires(&mut fresh, gauge(i, if i == 220 { 160.0 } else { values[i] }))));
    }

    #[test]
    fn kinds_are_all_listed() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(Kind::parse(k.as_str()), Some(*k));
        }
        assert_eq!(Kind::ALL.iter().map(|k| k.index()).max(), Some(Kind::ALL.len() - 1));
    }

    #[test]
    fn binomial_tail() {
        // P(X ≥ 3) for Binomial(10, 0.1) = 1 − P(0) − P(1) − P(2) = 0.0701908
        assert!((binomial_sf(3, 10, 0.1) - 0.0701908).abs() < 1e-6);
        assert_eq!(binomial_sf(0, 10, 0.1), 1.0);
        assert!(binomial_sf(500, 5000, 0.05) < 1e-10);
    }
}
