//! Detection primitives, independent of OTLP: a per-series baseline in O(1) memory and
//! the episode state machine every detector shares.
//!
//! A [`Baseline`] is an exponentially weighted mean and variance. A [`Tracker`] turns a
//! stream of per-window checks into episodes: no alert during warm-up; an episode starts
//! when `required` of the last `of` windows deviate (or at once for an extreme
//! deviation); it escalates when its severity rises; it resolves after `recovery`
//! calm windows (hysteresis: calm means well inside the threshold, not just under it);
//! after it, `cooldown` windows pass before a new one may start; a deviation that lasts
//! `accept_after` windows is taken as the new normal (the baseline jumps to it).
//!
//! A [`Density`] is a decayed histogram of a value with a bounded number of cells; it
//! answers "how many comparable values has this series shown before?". [`MetricModel`]
//! keeps two of them per generic metric series — of the value and of its short EWMA —
//! so that both a never-seen value and a never-seen run of values stand out, while a
//! series that is bursty by nature learns its bursts as normal.

/// Exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    pub mean: f64,
    pub var: f64,
    /// Windows folded in.
    pub n: u64,
}

impl Baseline {
    pub fn update(&mut self, x: f64, alpha: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            self.mean += alpha * d;
            self.var = (1.0 - alpha) * (self.var + alpha * d * d);
        }
        self.n += 1;
    }

    pub fn std(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    /// Moves the baseline to a new level (an accepted shift), keeping the spread.
    pub fn rebase(&mut self, x: f64) {
        self.mean = x;
    }

    /// Decays the baseline's confidence after `elapsed` windows without data (restart):
    /// the spread widens so that the first windows after a long gap are judged mildly.
    pub fn decay(&mut self, elapsed_windows: f64, alpha: f64) {
        if elapsed_windows > 0.0 {
            let keep = (1.0 - alpha).powf(elapsed_windows);
            self.var /= keep.max(0.05);
        }
    }
}

/// Settings of a [`Density`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DensityParams {
    /// Width of a histogram cell, in the units of the value.
    pub resolution: f64,
    /// Values within this fraction of the long-run standard deviation (and at least the
    /// neighbouring cells) count as comparable.
    pub similarity: f64,
    /// Weight left to a sample after one more sample (0.5 per half-life).
    pub decay: f64,
    /// Most cells kept; when full, the lightest is forgotten.
    pub max_cells: usize,
    /// EWMA weight of the long-run spread.
    pub spread_alpha: f64,
}

/// Most cells on either side that a neighbourhood spans.
const MAX_REACH: i32 = 30;

/// A decayed histogram in O(`max_cells`) memory.
///
/// Weights are stored in units that grow by `1 / decay` per sample, so that learning
/// touches one cell instead of decaying all of them; they are brought back to real counts
/// (and cells that faded to nothing dropped) before the units overflow.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Density {
    /// (cell, weight in stored units), sorted by cell.
    pub cells: Vec<(i32, f32)>,
    /// The stored weight of a new sample.
    pub unit: f64,
    /// Long-run mean and variance of the value: the scale of "comparable".
    pub spread: Baseline,
}

impl Density {
    fn cell(y: f64, p: &DensityParams) -> i32 {
        (y / p.resolution).floor().clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32
    }

    /// Decayed number of samples seen.
    pub fn count(&self) -> f64 {
        if self.unit > 0.0 {
            self.cells.iter().map(|&(_, w)| f64::from(w)).sum::<f64>() / self.unit
        } else {
            0.0
        }
    }

    /// Decayed number of past samples comparable to `y`.
    pub fn similar(&self, y: f64, p: &DensityParams) -> f64 {
        if self.unit <= 0.0 || !y.is_finite() {
            return 0.0;
        }
        let reach = ((p.similarity * self.spread.std() / p.resolution) as i32).clamp(1, MAX_REACH);
        let c = Density::cell(y, p);
        let lo = self.cells.partition_point(|&(k, _)| k < c.saturating_sub(reach));
        let stored: f64 = self.cells[lo..]
            .iter()
            .take_while(|&&(k, _)| k <= c.saturating_add(reach))
            .map(|&(_, w)| f64::from(w))
            .sum();
        stored / self.unit
    }

    pub fn learn(&mut self, y: f64, p: &DensityParams) {
        if !y.is_finite() {
            return;
        }
        self.unit = if self.unit <= 0.0 { 1.0 } else { self.unit / p.decay };
        if self.unit > 1e30 {
            self.renormalise();
        }
        self.spread.update(y, p.spread_alpha);
        let c = Density::cell(y, p);
        let w = self.unit as f32;
        match self.cells.binary_search_by_key(&c, |&(k, _)| k) {
            Ok(i) => self.cells[i].1 += w,
            Err(i) => {
                self.cells.insert(i, (c, w));
                if self.cells.len() > p.max_cells.max(1) {
                    if let Some(lightest) = (0..self.cells.len())
                        .filter(|&j| j != i)
                        .min_by(|&a, &b| self.cells[a].1.total_cmp(&self.cells[b].1))
                    {
                        self.cells.remove(lightest);
                    }
                }
            }
        }
    }

    /// Brings the stored weights back to real counts; cells worth less than a thousandth
    /// of a sample are dropped.
    fn renormalise(&mut self) {
        let unit = self.unit;
        self.cells.retain_mut(|(_, w)| {
            *w = (f64::from(*w) / unit) as f32;
            *w >= 1e-3
        });
        self.unit = 1.0;
    }
}

/// A generic metric series' model: densities of the value and of its short EWMA, and the
/// last cumulative reading (to judge cumulative counters by their increase).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricModel {
    pub point: Density,
    pub smooth: Density,
    /// Short EWMA of the value; `None` before the first value.
    pub smoothed: Option<f64>,
    /// Last cumulative (sum, count), for counters and cumulative histograms.
    pub previous: Option<(f64, f64)>,
}

impl MetricModel {
    /// Judges `y` against what came before, then learns it. Returns the decayed counts of
    /// comparable past values and of comparable past smoothed values.
    pub fn observe(&mut self, y: f64, smoothing: f64, p: &DensityParams) -> (f64, f64) {
        let s = match self.smoothed {
            Some(s) => s + smoothing * (y - s),
            None => y,
        };
        self.smoothed = Some(s);
        let seen = (self.point.similar(y, p), self.smooth.similar(s, p));
        self.point.learn(y, p);
        self.smooth.learn(s, p);
        seen
    }

    /// Turns a cumulative (sum, count) reading into the mean of what was added since the
    /// previous one (`None` for the first reading and after a reset).
    pub fn delta(&mut self, sum: f64, count: f64) -> Option<f64> {
        let prev = self.previous.replace((sum, count));
        let (ps, pc) = prev?;
        if sum < ps || count < pc {
            return None; // the counter was reset
        }
        let dc = count - pc;
        (dc > 0.0).then(|| (sum - ps) / dc)
    }
}

pub use otterline_model::event::Severity;

/// From how far past the threshold the deviation is (`excess` = score / threshold)
/// and how many windows it has lasted.
pub fn grade(excess: f64, windows: u32) -> Severity {
    let by_size = if excess >= 3.0 {
        Severity::Critical
    } else if excess >= 2.0 {
        Severity::High
    } else if excess >= 1.4 {
        Severity::Medium
    } else {
        Severity::Low
    };
    let by_time = if windows >= 30 {
        Severity::High
    } else if windows >= 10 {
        Severity::Medium
    } else {
        Severity::Low
    };
    by_size.max(by_time)
}

/// One window's verdict from a detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Check {
    pub deviating: bool,
    /// So far past the threshold that one window is enough.
    pub extreme: bool,
    /// Comfortably normal: counts towards recovery.
    pub calm: bool,
    /// Score / threshold (≥ 1 when deviating).
    pub excess: f64,
    pub observed: f64,
    pub baseline: f64,
    pub threshold: f64,
    pub score: f64,
}

impl Check {
    pub fn normal(observed: f64, baseline: f64) -> Check {
        Check {
            deviating: false,
            extreme: false,
            calm: true,
            excess: 0.0,
            observed,
            baseline,
            threshold: 0.0,
            score: 0.0,
        }
    }
}

/// Episode settings shared by the detectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub warmup: u64,
    pub required: u32,
    pub of: u32,
    pub recovery: u32,
    pub cooldown: u32,
    pub accept_after: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { warmup: 10, required: 2, of: 3, recovery: 3, cooldown: 30, accept_after: 60 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub id: u64,
    pub started_at: u64,
    pub severity: Severity,
    pub windows: u32,
    pub calm: u32,
    pub peak_excess: f64,
    pub first: Check,
    pub last: Check,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Started(Episode),
    Escalated(Episode),
    Resolved(Episode, &'static str),
}

/// The per-series episode state machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracker {
    /// Bit i set: the window i windows ago deviated.
    pub history: u32,
    pub windows: u64,
    pub episode: Option<Episode>,
    pub cooldown: u32,
}

impl Tracker {
    /// Feeds one window's check (at `now`, Unix ns). Returns what changed, and whether the
    /// baseline should learn from this window (not while deviating or in an episode).
    pub fn step(&mut self, check: Check, now: u64, p: &Policy, next_id: &mut u64) -> (Option<Transition>, bool) {
        self.windows += 1;
        self.history = (self.history << 1) | u32::from(check.deviating);
        let mask = if p.of >= 32 { u32::MAX } else { (1u32 << p.of) - 1 };
        let recent = (self.history & mask).count_ones();
        if let Some(ep) = &mut self.episode {
            ep.windows += 1;
            ep.last = check;
            if check.calm {
                ep.calm += 1;
            } else {
                ep.calm = 0;
            }
            if check.deviating {
                ep.peak_excess = ep.peak_excess.max(check.excess);
            }
            if ep.calm >= p.recovery {
                let done = ep.clone();
                self.episode = None;
                self.cooldown = p.cooldown;
                self.history = 0;
                return (Some(Transition::Resolved(done, "recovered")), true);
            }
            if ep.windows >= p.accept_after {
                let done = ep.clone();
                self.episode = None;
                self.cooldown = p.cooldown;
                self.history = 0;
                return (Some(Transition::Resolved(done, "accepted as the new normal")), true);
            }
            let sev = grade(ep.peak_excess, ep.windows);
            if sev > ep.severity {
                ep.severity = sev;
                return (Some(Transition::Escalated(ep.clone())), false);
            }
            return (None, false);
        }
        if self.cooldown > 0 {
            self.cooldown -= 1;
            return (None, !check.deviating);
        }
        if self.windows <= p.warmup {
            return (None, true);
        }
        if check.deviating && (check.extreme || recent >= p.required) {
            *next_id += 1;
            let ep = Episode {
                id: *next_id,
                started_at: now,
                severity: grade(check.excess, 1),
                windows: 1,
                calm: 0,
                peak_excess: check.excess,
                first: check,
                last: check,
            };
            self.episode = Some(ep.clone());
            return (Some(Transition::Started(ep)), false);
        }
        (None, !check.deviating)
    }

    /// Whether an accepted shift should move the baseline to the last observed level.
    pub fn accepted(t: &Option<Transition>) -> Option<f64> {
        match t {
            Some(Transition::Resolved(ep, "accepted as the new normal")) => Some(ep.last.observed),
            _ => None,
        }
    }
}

/// z-score of `x` against `b`, with a floor on the spread of `rel × |mean| + abs`.
pub fn zscore(x: f64, b: &Baseline, rel_floor: f64, abs_floor: f64) -> f64 {
    let spread = b.std().max(rel_floor * b.mean.abs() + abs_floor);
    (x - b.mean) / spread
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dev: bool) -> Check {
        Check {
            deviating: dev,
            extreme: false,
            calm: !dev,
            excess: if dev { 1.5 } else { 0.0 },
            observed: 1.0,
            baseline: 0.0,
            threshold: 1.0,
            score: 1.0,
        }
    }

    #[test]
    fn baseline_tracks_mean_and_variance() {
        let mut b = Baseline::default();
        for i in 0..1000 {
            b.update(if i % 2 == 0 { 9.0 } else { 11.0 }, 0.05);
        }
        assert!((b.mean - 10.0).abs() < 0.1);
        assert!((b.std() - 1.0).abs() < 0.1);
        assert!((zscore(14.0, &b, 0.0, 0.0) - 4.0).abs() < 0.4);
    }

    #[test]
    fn warmup_persistence_recovery_and_cooldown() {
        let p = Policy { warmup: 3, required: 2, of: 3, recovery: 2, cooldown: 2, accept_after: 100 };
        let mut t = Tracker::default();
        let mut id = 0;
        // Deviations during warm-up never fire.
        for _ in 0..3 {
            assert_eq!(t.step(check(true), 0, &p, &mut id).0, None);
        }
        t.history = 0;
        // One deviating window is not enough; the second of three is.
        assert_eq!(t.step(check(true), 1, &p, &mut id).0, None);
        assert!(matches!(t.step(check(true), 2, &p, &mut id).0, Some(Transition::Started(_))));
        assert!(t.episode.is_some());
        // One calm window is not recovery; two are.
        assert_eq!(t.step(check(false), 3, &p, &mut id).0, None);
        assert!(matches!(t.step(check(false), 4, &p, &mut id).0, Some(Transition::Resolved(_, "recovered"))));
        // Cooldown: deviations right after do not fire.
        assert_eq!(t.step(check(true), 5, &p, &mut id).0, None);
        assert_eq!(t.step(check(true), 6, &p, &mut id).0, None);
        assert!(matches!(t.step(check(true), 7, &p, &mut id).0, None | Some(Transition::Started(_))));
    }

    #[test]
    fn extreme_fires_at_once_and_long_shifts_are_accepted() {
        let p = Policy { warmup: 0, required: 2, of: 3, recovery: 2, cooldown: 0, accept_after: 5 };
        let mut t = Tracker::default();
        let mut id = 0;
        let mut c = check(true);
        c.extreme = true;
        c.excess = 3.5;
        let (tr, learn) = t.step(c, 0, &p, &mut id);
        let Some(Transition::Started(ep)) = tr else { panic!() };
        assert_eq!(ep.severity, Severity::Critical);
        assert!(!learn);
        let mut last = None;
        for i in 1..5 {
            last = t.step(check(true), i, &p, &mut id).0;
        }
        assert!(matches!(&last, Some(Transition::Resolved(_, "accepted as the new normal"))), "{last:?}");
        assert_eq!(Tracker::accepted(&last), Some(1.0));
    }

    const P: DensityParams =
        DensityParams { resolution: 0.05, similarity: 0.25, decay: 0.999, max_cells: 8, spread_alpha: 0.01 };

    #[test]
    fn density_counts_comparable_values_and_forgets_slowly() {
        let mut d = Density::default();
        for i in 0..100 {
            d.learn(1.0 + 0.01 * (i % 3) as f64, &P);
        }
        // 100 samples, decayed by 0.999 per sample: Σ 0.999^k for k < 100.
        let expect = (1.0 - 0.999f64.powi(100)) / 0.001;
        assert!((d.count() - expect).abs() < 1e-3, "{}", d.count());
        assert!((d.similar(1.01, &P) - expect).abs() < 1e-3);
        // Two cells away is not comparable to values whose spread is this small.
        assert_eq!(d.similar(1.2, &P), 0.0);
        // Weights survive renormalisation.
        let before = d.similar(1.0, &P);
        d.renormalise();
        assert!((d.similar(1.0, &P) - before).abs() < 1e-3);
        // Never more than max_cells, the lightest forgotten first.
        for i in 0..20 {
            d.learn(10.0 + i as f64, &P);
        }
        assert_eq!(d.cells.len(), 8);
        assert!(d.similar(1.0, &P) > 50.0, "the heavy cell stays");
    }

    #[test]
    fn metric_model_sees_new_values_and_counter_increases() {
        let mut m = MetricModel::default();
        for i in 0..200 {
            let (point, _) = m.observe(if i % 2 == 0 { 0.0 } else { 5.0 }, 0.15, &P);
            if i >= 10 {
                assert!(point > 3.0, "a bursty value seen before is comparable ({i}: {point})");
            }
        }
        let (point, _) = m.observe(20.0, 0.15, &P);
        assert!(point < 1.0, "a value never seen: {point}");
        // Cumulative readings become the mean increase; a reset starts over.
        assert_eq!(m.delta(10.0, 2.0), None);
        assert_eq!(m.delta(16.0, 5.0), Some(2.0));
        assert_eq!(m.delta(3.0, 1.0), None);
        assert_eq!(m.delta(4.0, 2.0), Some(1.0));
        assert_eq!(m.delta(4.0, 2.0), None, "nothing added");
    }

    #[test]
    fn severity_grows_with_size_and_duration() {
        assert_eq!(grade(1.1, 1), Severity::Low);
        assert_eq!(grade(1.5, 1), Severity::Medium);
        assert_eq!(grade(2.2, 1), Severity::High);
        assert_eq!(grade(1.1, 12), Severity::Medium);
        assert_eq!(grade(4.0, 1), Severity::Critical);
    }
}
