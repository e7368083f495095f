//! The `anomaly` processor's configuration: the episode policy, one section per detector,
//! and the budgets.

use serde::Deserialize;

use super::detect::{DensityParams, Policy};

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
    pub(super) fn density(&self) -> DensityParams {
        DensityParams {
            resolution: self.resolution,
            similarity: self.similarity,
            decay: 0.5f64.powf(1.0 / self.memory_windows),
            max_cells: self.max_cells,
            spread_alpha: LONG_RUN_ALPHA,
        }
    }

    pub(super) fn check(&self) -> Result<(), &'static str> {
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
    pub budgets: Vec<otterline_model::budget::Budget>,
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
    pub(super) fn policy(&self) -> Policy {
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
