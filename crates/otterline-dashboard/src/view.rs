//! What the API answers, computed from a [`Store`]: summaries over recent slots and
//! time series over a range. The same code serves the in-memory store and the temporary
//! store built from the archive for long ranges.

use serde::Serialize;

use crate::store::{HealthStatus, Series, Slot, Store};

/// One service's figures over a window of slots.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSummary {
    /// `""` for the overall row.
    pub service: String,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    /// Calls-weighted mean of the windows' p95, milliseconds.
    pub p95_ms: Option<f64>,
    /// USD.
    pub cost: f64,
    pub calls_per_minute: f64,
    pub cost_per_minute: f64,
    /// The newest health score and its status.
    pub health: Option<f64>,
    pub status: HealthStatus,
    pub open_anomalies: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Changes whenever the store does.
    pub version: u64,
    pub generated_at_unix_ms: u64,
    /// The window: the `window_minutes` of slots ending with the newest slot holding data.
    pub window_minutes: f64,
    pub window_start_unix_ms: Option<u64>,
    pub window_end_unix_ms: Option<u64>,
    pub resolution_seconds: f64,
    pub overall: ServiceSummary,
    pub services: usize,
    pub top_by_cost: Vec<ServiceSummary>,
    pub top_by_latency: Vec<ServiceSummary>,
    /// Models by cost (then calls): every call of each model, nested or not.
    pub models: Vec<ModelSummary>,
    pub open_anomalies: usize,
    pub skipped: crate::store::Skips,
}

/// One model's figures over a window of slots.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub calls: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub p95_ms: Option<f64>,
    /// USD, priced calls only.
    pub cost: f64,
    pub calls_per_minute: f64,
    pub cost_per_minute: f64,
    /// Input and output tokens.
    pub tokens: u64,
    /// Calls without a price: their spend is not in `cost`.
    pub unpriced_calls: u64,
}

/// Σ over slots.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    calls: u64,
    errors: u64,
    lat_n: u64,
    p95_sum: f64,
    cost: f64,
    tokens: u64,
    unpriced: u64,
    any: bool,
    health: Option<f64>,
}

impl Acc {
    fn add(&mut self, s: &Slot) {
        if s.is_empty() {
            return;
        }
        self.any = true;
        self.calls += s.calls as u64;
        self.errors += s.errors as u64;
        self.lat_n += s.lat_n as u64;
        self.p95_sum += s.p95_sum as f64;
        self.cost += s.cost as f64;
        self.tokens += s.tokens as u64;
        self.unpriced += s.unpriced as u64;
        if !s.health.is_nan() {
            self.health = Some(s.health as f64);
        }
    }
    fn over(series: &Series, from: u64, to: u64) -> Acc {
        let mut a = Acc::default();
        for slot in from..=to {
            if let Some(s) = series.get(slot) {
                a.add(s);
            }
        }
        a
    }
    fn error_rate(&self) -> Option<f64> {
        (self.calls > 0).then(|| self.errors as f64 / self.calls as f64)
    }
    fn p95_ms(&self) -> Option<f64> {
        (self.lat_n > 0).then(|| self.p95_sum / self.lat_n as f64 * 1000.0)
    }
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

impl Store {
    fn summarize(&self, name: &str, series: &Series, from: u64, to: u64, minutes: f64) -> ServiceSummary {
        let a = Acc::over(series, from, to);
        let (health, status) = match series.latest_health {
            Some((_, v, s)) => (Some(v as f64), s),
            None => (None, HealthStatus::Unknown),
        };
        ServiceSummary {
            service: name.to_string(),
            calls: a.calls,
            errors: a.errors,
            error_rate: a.error_rate(),
            p95_ms: a.p95_ms(),
            cost: a.cost,
            calls_per_minute: a.calls as f64 / minutes,
            cost_per_minute: a.cost / minutes,
            health,
            status,
            open_anomalies: if name.is_empty() {
                self.open.len()
            } else {
                self.open.keys().filter(|k| k.0 == name).count()
            },
        }
    }

    /// The slots of the summary window: at most `window_slots`, ending at the newest slot
    /// with data and starting no earlier than the oldest slot with data (so that rates are
    /// per minute of traffic, not diluted by a window longer than the history).
    fn window(&self, window_slots: u64) -> (u64, u64) {
        let end = self.last_slot.unwrap_or(0);
        let start = end.saturating_sub(window_slots.max(1) - 1);
        let first = (start..=end).find(|s| self.overall.get(*s).is_some_and(|x| !x.is_empty())).unwrap_or(start);
        (first, end)
    }

    /// Overall and per-service figures over the last `window_slots` slots with data, and
    /// the `top` services by cost and by p95.
    pub fn summary(&self, window_slots: u64, top: usize, now_ms: u64) -> Summary {
        let (from, to) = self.window(window_slots);
        let res_s = self.limits.resolution_ns as f64 / 1e9;
        let minutes = (to - from + 1) as f64 * res_s / 60.0;
        let all = self.services(window_slots);
        let mut by_cost = all.clone();
        by_cost.sort_by(|a, b| b.cost.total_cmp(&a.cost).then_with(|| a.service.cmp(&b.service)));
        by_cost.truncate(top);
        let mut by_latency: Vec<ServiceSummary> = all.into_iter().filter(|s| s.p95_ms.is_some()).collect();
        by_latency.sort_by(|a, b| {
            b.p95_ms.unwrap_or(0.0).total_cmp(&a.p95_ms.unwrap_or(0.0)).then_with(|| a.service.cmp(&b.service))
        });
        by_latency.truncate(top);
        let slot_ms = |s: u64| ms(s * self.limits.resolution_ns);
        Summary {
            version: self.version,
            generated_at_unix_ms: now_ms,
            window_minutes: minutes,
            window_start_unix_ms: self.last_slot.map(|_| slot_ms(from)),
            window_end_unix_ms: self.last_slot.map(|_| slot_ms(to + 1)),
            resolution_seconds: res_s,
            overall: self.summarize("", &self.overall, from, to, minutes),
            services: self.services.len(),
            top_by_cost: by_cost,
            top_by_latency: by_latency,
            models: {
                let mut m = self.models(window_slots);
                m.truncate(top);
                m
            },
            open_anomalies: self.open.len(),
            skipped: self.skips,
        }
    }

    /// Every service over the summary window, by name.
    pub fn services(&self, window_slots: u64) -> Vec<ServiceSummary> {
        let (from, to) = self.window(window_slots);
        let minutes = (to - from + 1) as f64 * self.limits.resolution_ns as f64 / 1e9 / 60.0;
        let mut v: Vec<ServiceSummary> =
            self.services.iter().map(|(name, s)| self.summarize(name, s, from, to, minutes)).collect();
        v.sort_by(|a, b| a.service.cmp(&b.service));
        v
    }

    /// Every model over the summary window, by cost, then calls, then name.
    pub fn models(&self, window_slots: u64) -> Vec<ModelSummary> {
        let (from, to) = self.window(window_slots);
        let minutes = (to - from + 1) as f64 * self.limits.resolution_ns as f64 / 1e9 / 60.0;
        let mut v: Vec<ModelSummary> = self
            .models
            .iter()
            .map(|(name, s)| {
                let a = Acc::over(s, from, to);
                ModelSummary {
                    model: name.clone(),
                    calls: a.calls,
                    errors: a.errors,
                    error_rate: a.error_rate(),
                    p95_ms: a.p95_ms(),
                    cost: a.cost,
                    calls_per_minute: a.calls as f64 / minutes,
                    cost_per_minute: a.cost / minutes,
                    tokens: a.tokens,
                    unpriced_calls: a.unpriced,
                }
            })
            .filter(|m| m.calls > 0 || m.tokens > 0)
            .collect();
        v.sort_by(|a, b| b.cost.total_cmp(&a.cost).then(b.calls.cmp(&a.calls)).then_with(|| a.model.cmp(&b.model)));
        v
    }

    /// Series over `[from_ns, to_ns)` in buckets of `step_slots` slots, for `names`
    /// (`""` is the overall series; unknown names come back empty).
    pub fn series(&self, names: &[String], from_ns: u64, to_ns: u64, step_slots: u64) -> SeriesSet {
        let res = self.limits.resolution_ns.max(1);
        let step = step_slots.max(1);
        let first = from_ns / res;
        let last = to_ns.saturating_sub(1) / res;
        let buckets = (last.saturating_sub(first) / step) + 1;
        let minutes = (step * res) as f64 / 60e9;
        let t: Vec<u64> = (0..buckets).map(|b| ms((first + b * step) * res)).collect();
        let empty = Series::default();
        let series = names
            .iter()
            .map(|name| {
                let s = if name.is_empty() { &self.overall } else { self.services.get(name).unwrap_or(&empty) };
                let mut out = NamedSeries { service: name.clone(), ..Default::default() };
                for b in 0..buckets {
                    let from = first + b * step;
                    let a = Acc::over(s, from, (from + step - 1).min(last));
                    let some = |v: f64| a.any.then_some(v as f32);
                    let f = |v: Option<f64>| v.map(|v| v as f32);
                    out.calls_per_minute.push(some(a.calls as f64 / minutes));
                    out.error_rate.push(f(a.error_rate()));
                    out.p95_ms.push(f(a.p95_ms()));
                    out.cost_per_minute.push(some(a.cost / minutes));
                    out.health.push(f(a.health));
                }
                out
            })
            .collect();
        SeriesSet { step_seconds: (step * res) as f64 / 1e9, t_unix_ms: t, series, source: "memory" }
    }
}

/// Time series for a set of services.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSet {
    /// `memory` or `archive`.
    pub source: &'static str,
    pub step_seconds: f64,
    /// Each bucket's start.
    pub t_unix_ms: Vec<u64>,
    pub series: Vec<NamedSeries>,
}

/// One service's buckets; `null` where the bucket holds no data. Single precision (what
/// the slots hold), which also keeps the JSON short: `0.1`, not `0.10000000149011612`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NamedSeries {
    pub service: String,
    pub calls_per_minute: Vec<Option<f32>>,
    pub error_rate: Vec<Option<f32>>,
    pub p95_ms: Vec<Option<f32>>,
    pub cost_per_minute: Vec<Option<f32>>,
    pub health: Vec<Option<f32>>,
}

#[cfg(test)]
mod tests {
    use crate::store::tests::{health, limits, window, MIN, T0};
    use crate::store::Store;

    #[test]
    fn the_summary_covers_the_window_ending_at_the_newest_data() {
        let mut s = Store::new(limits(60));
        let now = T0 + 30 * MIN;
        for k in 1..=20 {
            s.ingest(&window("chat", T0 + k * MIN, 60, 6, 0.5, 0.6), now);
        }
        s.ingest(&window("rag", T0 + 20 * MIN, 30, 0, 2.0, 3.0), now);
        s.ingest(&health(Some("chat"), T0 + 20 * MIN, 90.0, "healthy"), now);
        let sum = s.summary(10, 5, 0);
        assert_eq!(sum.window_minutes, 10.0);
        // A window longer than the history covers the history only.
        assert_eq!(s.summary(60, 5, 0).window_minutes, 20.0);
        assert_eq!(sum.overall.calls, 630);
        assert_eq!(sum.overall.errors, 60);
        assert!((sum.overall.calls_per_minute - 63.0).abs() < 1e-9);
        assert!((sum.overall.cost_per_minute - 0.9).abs() < 1e-6);
        // (0.5*600 + 2.0*30) / 630 s
        assert!((sum.overall.p95_ms.unwrap() - 360_000.0 / 630.0).abs() < 1e-3);
        assert_eq!(sum.top_by_cost[0].service, "chat");
        assert_eq!(sum.top_by_latency[0].service, "rag");
        assert_eq!(sum.top_by_cost[0].health, Some(90.0));
        assert_eq!(sum.window_end_unix_ms, Some((T0 + 20 * MIN) / 1_000_000));
    }

    #[test]
    fn series_buckets_are_sums_per_minute_with_gaps_as_null() {
        let mut s = Store::new(limits(60));
        let now = T0 + 30 * MIN;
        s.ingest(&window("chat", T0 + MIN, 60, 30, 0.5, 1.2), now);
        s.ingest(&window("chat", T0 + 2 * MIN, 120, 0, 1.0, 0.0), now);
        s.ingest(&window("chat", T0 + 5 * MIN, 10, 0, 1.0, 0.0), now);
        let set = s.series(&["chat".into(), "".into(), "nobody".into()], T0, T0 + 6 * MIN, 2);
        assert_eq!(set.t_unix_ms.len(), 3);
        assert_eq!(set.step_seconds, 120.0);
        let chat = &set.series[0];
        assert_eq!(chat.calls_per_minute, vec![Some(90.0), None, Some(5.0)]);
        assert_eq!(chat.error_rate[0], Some(30.0 / 180.0));
        assert!((chat.p95_ms[0].unwrap() - (0.5 * 60.0 + 120.0) / 180.0 * 1000.0).abs() < 1e-2);
        assert!((chat.cost_per_minute[0].unwrap() - 0.6).abs() < 1e-6);
        assert_eq!(set.series[1].calls_per_minute, chat.calls_per_minute);
        assert!(set.series[2].calls_per_minute.iter().all(|v| v.is_none()));
    }
}
