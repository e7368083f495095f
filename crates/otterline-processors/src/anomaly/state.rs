//! Saving and loading the `anomaly` processor's state (`proto/otterline/v1/anomaly_state.proto`).
//!
//! The file is written to a temp name, fsynced and renamed over the old one, so a crash
//! leaves either the previous state or the new one. On load, each baseline's spread is
//! widened by the number of windows that passed since it was saved, so a long-stopped
//! collector judges its first windows mildly instead of trusting a stale baseline blindly.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use prost::Message;

use otterline_proto::v1 as pb;

use super::detect::{Baseline, Check, Density, Episode, MetricModel, Severity, Tracker};
use super::{Kind, SeriesInfo, State};

/// Version of the saved format this code writes and reads.
pub const VERSION: u32 = 1;

fn check_to(c: &Check) -> pb::Check {
    pb::Check {
        deviating: c.deviating,
        extreme: c.extreme,
        calm: c.calm,
        excess: c.excess,
        observed: c.observed,
        baseline: c.baseline,
        threshold: c.threshold,
        score: c.score,
    }
}

fn check_from(c: Option<pb::Check>) -> Check {
    let c = c.unwrap_or_default();
    Check {
        deviating: c.deviating,
        extreme: c.extreme,
        calm: c.calm,
        excess: c.excess,
        observed: c.observed,
        baseline: c.baseline,
        threshold: c.threshold,
        score: c.score,
    }
}

fn density_to(d: &Density) -> pb::Density {
    pb::Density {
        cells: d.cells.iter().map(|&(c, _)| c).collect(),
        weights: d.cells.iter().map(|&(_, w)| w).collect(),
        unit: d.unit,
        spread_mean: d.spread.mean,
        spread_variance: d.spread.var,
        spread_n: d.spread.n,
    }
}

fn density_from(d: Option<pb::Density>) -> Density {
    let d = d.unwrap_or_default();
    let mut cells: Vec<(i32, f32)> = d.cells.into_iter().zip(d.weights).filter(|(_, w)| w.is_finite()).collect();
    cells.sort_by_key(|&(c, _)| c);
    cells.dedup_by_key(|&mut (c, _)| c);
    Density {
        cells,
        unit: if d.unit.is_finite() && d.unit > 0.0 { d.unit } else { 0.0 },
        spread: Baseline { mean: d.spread_mean, var: d.spread_variance, n: d.spread_n },
    }
}

fn model_to(m: &MetricModel) -> pb::MetricModel {
    pb::MetricModel {
        point: Some(density_to(&m.point)),
        smooth: Some(density_to(&m.smooth)),
        smoothed: m.smoothed,
        previous_sum: m.previous.map(|(s, _)| s),
        previous_count: m.previous.map(|(_, c)| c).unwrap_or_default(),
    }
}

fn model_from(m: pb::MetricModel) -> MetricModel {
    MetricModel {
        point: density_from(m.point),
        smooth: density_from(m.smooth),
        smoothed: m.smoothed,
        previous: m.previous_sum.map(|s| (s, m.previous_count)),
    }
}

/// The processor's memory as a message.
pub fn encode(
    states: &HashMap<(String, Kind), State>,
    infos: &HashMap<String, Arc<SeriesInfo>>,
    next_id: u64,
    now: u64,
) -> pb::AnomalyState {
    let mut detectors: Vec<pb::DetectorState> = states
        .iter()
        .map(|((key, kind), st)| pb::DetectorState {
            series_key: key.clone(),
            kind: kind.as_str().to_string(),
            identity: infos.get(key).map(|i| pb::SeriesIdentity {
                service: i.service.clone(),
                dimensions: i.dims.iter().map(|(k, v)| pb::Dimension { key: k.clone(), value: v.clone() }).collect(),
                metric: i.metric.clone(),
            }),
            mean: st.baseline.mean,
            variance: st.baseline.var,
            windows_learned: st.baseline.n,
            deviation_history: st.tracker.history,
            windows_seen: st.tracker.windows,
            cooldown_left: st.tracker.cooldown,
            last_window_unix_nano: st.last_window,
            window_nanos: st.window_ns,
            metric_model: st.model.as_deref().map(model_to),
            open_episode: st.tracker.episode.as_ref().map(|e| pb::Episode {
                id: e.id,
                started_at_unix_nano: e.started_at,
                severity: e.severity.as_str().to_string(),
                windows: e.windows,
                calm_windows: e.calm,
                peak_excess: e.peak_excess,
                first: Some(check_to(&e.first)),
                last: Some(check_to(&e.last)),
            }),
        })
        .collect();
    detectors.sort_by(|a, b| (&a.series_key, &a.kind).cmp(&(&b.series_key, &b.kind)));
    pb::AnomalyState { version: VERSION, saved_at_unix_nano: now, next_episode_id: next_id, detectors }
}

/// What a saved state restores.
pub struct Restored {
    pub states: HashMap<(String, Kind), State>,
    pub infos: HashMap<String, Arc<SeriesInfo>>,
    pub next_id: u64,
}

/// Rebuilds the processor's memory, decayed by the time since `saved` (Unix ns) until `now`.
pub fn decode(msg: pb::AnomalyState, now: u64, alpha: f64) -> Option<Restored> {
    if msg.version != VERSION {
        return None;
    }
    let elapsed = now.saturating_sub(msg.saved_at_unix_nano);
    let mut states = HashMap::new();
    let mut infos = HashMap::new();
    for d in msg.detectors {
        let Some(kind) = Kind::parse(&d.kind) else { continue };
        if let Some(i) = &d.identity {
            infos.entry(d.series_key.clone()).or_insert_with(|| {
                Arc::new(SeriesInfo {
                    service: i.service.clone(),
                    dims: i.dimensions.iter().map(|x| (x.key.clone(), x.value.clone())).collect(),
                    metric: i.metric.clone(),
                })
            });
        }
        let mut baseline = Baseline { mean: d.mean, var: d.variance, n: d.windows_learned };
        if d.window_nanos > 0 {
            baseline.decay(elapsed as f64 / d.window_nanos as f64, alpha);
        }
        let episode = d.open_episode.map(|e| Episode {
            id: e.id,
            started_at: e.started_at_unix_nano,
            severity: Severity::parse(&e.severity),
            windows: e.windows,
            calm: e.calm_windows,
            peak_excess: e.peak_excess,
            first: check_from(e.first),
            last: check_from(e.last),
        });
        let tracker =
            Tracker { history: d.deviation_history, windows: d.windows_seen, episode, cooldown: d.cooldown_left };
        states.insert(
            (d.series_key, kind),
            State {
                baseline,
                tracker,
                last_window: d.last_window_unix_nano,
                window_ns: d.window_nanos,
                model: d.metric_model.map(|m| Box::new(model_from(m))),
            },
        );
    }
    Some(Restored { states, infos, next_id: msg.next_episode_id })
}

/// Writes the state atomically: temp file, fsync, rename over the old file.
pub fn save(path: &Path, msg: &pb::AnomalyState) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = otterline_core::fsutil::temp_path(path);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    f.write_all(&msg.encode_to_vec())?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Reads a saved state; `Ok(None)` when there is none yet.
pub fn load(path: &Path) -> Result<Option<pb::AnomalyState>, String> {
    match std::fs::read(path) {
        Ok(bytes) => pb::AnomalyState::decode(&bytes[..])
            .map(Some)
            .map_err(|e| format!("{} is not an anomaly state file: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
