//! The `debug` exporter: what passes through, on stderr.
//!
//! `verbosity: basic` (default) prints one line per batch: signal, resources,
//! items. `normal` adds one line per item (span, data point group, log record).
//! `detailed` prints each batch as OTLP/JSON.
//!
//! Sampling, with the Collector's keys and zap's rule: in each second, the first
//! `sampling_initial` batches (default 2) are printed, then every `sampling_thereafter`-th
//! (default 1: all of them; 0: none until the next second). One count per exporter, across
//! signals. The first line printed after skipped batches says how many batches and items
//! were not shown, so nothing passes unaccounted. The embedded default pipeline uses
//! `sampling_initial: 1, sampling_thereafter: 0`: at most one line per second under any load.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Deserialize;

use otterline_core::component::{BuildContext, ExportError, Exporter, ExporterFactory};
use otterline_core::config::ConfigError;
use otterline_core::pdata::{self, common::any_value, json, metrics::metric};
use otterline_core::{Batch, SignalSet};

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verbosity {
    #[default]
    Basic,
    Normal,
    Detailed,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
    /// Batches printed in each second before sampling starts.
    pub sampling_initial: u64,
    /// After those, every this-many-th batch in the second is printed (1: all, 0: none).
    pub sampling_thereafter: u64,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig { verbosity: Verbosity::Basic, sampling_initial: 2, sampling_thereafter: 1 }
    }
}

/// Which batches get printed: counts per one-second tick (zap's sampler, as the Collector's
/// `debug` exporter uses it), and what was skipped since the last printed line.
#[derive(Debug)]
struct Sampler {
    initial: u64,
    thereafter: u64,
    tick: Option<Instant>,
    seen: u64,
    skipped_batches: u64,
    skipped_items: u64,
}

impl Sampler {
    const TICK: Duration = Duration::from_secs(1);

    fn new(initial: u64, thereafter: u64) -> Sampler {
        Sampler { initial, thereafter, tick: None, seen: 0, skipped_batches: 0, skipped_items: 0 }
    }

    /// Whether to print a batch of `items` arriving at `now`; when printing, the batches and
    /// items skipped since the last printed one.
    fn admit(&mut self, now: Instant, items: u64) -> Option<(u64, u64)> {
        if self.tick.is_none_or(|t| now.duration_since(t) >= Self::TICK) {
            self.tick = Some(now);
            self.seen = 0;
        }
        self.seen += 1;
        let n = self.seen;
        let print = n <= self.initial || (self.thereafter > 0 && (n - self.initial).is_multiple_of(self.thereafter));
        if !print {
            self.skipped_batches += 1;
            self.skipped_items += items;
            return None;
        }
        Some((std::mem::take(&mut self.skipped_batches), std::mem::take(&mut self.skipped_items)))
    }
}

pub struct DebugExporterFactory;

impl ExporterFactory for DebugExporterFactory {
    fn type_name(&self) -> &'static str {
        "debug"
    }
    fn description(&self) -> &'static str {
        "prints a line per batch (basic), per item (normal) or the full OTLP/JSON (detailed) to stderr"
    }
    fn signals(&self) -> SignalSet {
        SignalSet::ALL
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Box<dyn Exporter>, ConfigError> {
        let cfg: DebugConfig = ctx.parse()?;
        Ok(Box::new(DebugExporter {
            name: ctx.id.to_string(),
            verbosity: cfg.verbosity,
            sampler: Sampler::new(cfg.sampling_initial, cfg.sampling_thereafter),
            buf: String::new(),
        }))
    }
}

struct DebugExporter {
    name: String,
    verbosity: Verbosity,
    sampler: Sampler,
    buf: String,
}

/// Renders what the debug exporter prints for `batch`.
pub fn render(name: &str, verbosity: Verbosity, batch: &Batch, out: &mut String) {
    let signal = batch.signal();
    let _ = writeln!(
        out,
        "otterline {name}: {signal}: {} resource(s), {} {}",
        batch.resource_count(),
        batch.item_count(),
        signal.item_name()
    );
    match verbosity {
        Verbosity::Basic => {}
        Verbosity::Detailed => {
            json::encode_into(batch, out);
            out.push('\n');
        }
        Verbosity::Normal => match batch {
            Batch::Traces(r) => {
                for rs in &r.resource_spans {
                    let svc = pdata::service_name(rs.resource.as_ref()).unwrap_or("-");
                    for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
                        let ms = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano) as f64 / 1e6;
                        let status = s.status.as_ref().map_or(0, |st| st.code);
                        let _ = writeln!(out, "  span service={svc} name={:?} trace_id={} span_id={} duration={ms:.3}ms status={status} attributes={}", s.name, hex(&s.trace_id), hex(&s.span_id), s.attributes.len());
                    }
                }
            }
            Batch::Metrics(r) => {
                for rm in &r.resource_metrics {
                    let svc = pdata::service_name(rm.resource.as_ref()).unwrap_or("-");
                    for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
                        let kind = match &m.data {
                            Some(metric::Data::Gauge(_)) => "gauge",
                            Some(metric::Data::Sum(_)) => "sum",
                            Some(metric::Data::Histogram(_)) => "histogram",
                            Some(metric::Data::ExponentialHistogram(_)) => "exponential_histogram",
                            Some(metric::Data::Summary(_)) => "summary",
                            None => "empty",
                        };
                        let _ = writeln!(
                            out,
                            "  metric service={svc} name={:?} type={kind} unit={:?} points={}",
                            m.name,
                            m.unit,
                            pdata::metric_point_count(m)
                        );
                    }
                }
            }
            Batch::Logs(r) => {
                for rl in &r.resource_logs {
                    let svc = pdata::service_name(rl.resource.as_ref()).unwrap_or("-");
                    for l in rl.scope_logs.iter().flat_map(|sl| &sl.log_records) {
                        let body = match l.body.as_ref().and_then(|b| b.value.as_ref()) {
                            Some(any_value::Value::StringValue(s)) => format!("{s:?}"),
                            Some(_) => "(structured)".into(),
                            None => "-".into(),
                        };
                        let _ = writeln!(
                            out,
                            "  log service={svc} severity={} event={:?} body={body}",
                            l.severity_number, l.event_name
                        );
                    }
                }
            }
        },
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[async_trait]
impl Exporter for DebugExporter {
    async fn export(&mut self, batch: &Batch) -> Result<(), ExportError> {
        let Some((skipped, skipped_items)) = self.sampler.admit(Instant::now(), batch.item_count() as u64) else {
            return Ok(());
        };
        self.buf.clear();
        if skipped > 0 {
            let _ = writeln!(
                self.buf,
                "otterline {}: {skipped} batch(es) with {skipped_items} item(s) not shown (sampling)",
                self.name
            );
        }
        render(&self.name, self.verbosity, batch, &mut self.buf);
        // One write per batch keeps lines from different batches apart.
        let _ = std::io::stderr().lock().write_all(self.buf.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::{trace, ExportTraceServiceRequest};

    fn batch() -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                scope_spans: vec![trace::ScopeSpans {
                    spans: vec![trace::Span {
                        name: "chat".into(),
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        start_time_unix_nano: 0,
                        end_time_unix_nano: 2_500_000,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn basic_is_one_line() {
        let mut out = String::new();
        render("debug", Verbosity::Basic, &batch(), &mut out);
        assert_eq!(out, "otterline debug: traces: 1 resource(s), 1 spans\n");
    }

    #[test]
    fn normal_lists_items() {
        let mut out = String::new();
        render("debug", Verbosity::Normal, &batch(), &mut out);
        assert!(out.contains("span service=- name=\"chat\" trace_id=01010101010101010101010101010101 span_id=0202020202020202 duration=2.500ms"), "{out}");
    }

    #[test]
    fn sampling_follows_the_collector_keys_per_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // initial 2, thereafter 3: batches 1, 2, 5, 8 … of each second.
        let mut s = Sampler::new(2, 3);
        let printed: Vec<u64> = (1..=9).filter(|i| s.admit(at(*i), 10).is_some()).collect();
        assert_eq!(printed, [1, 2, 5, 8]);
        // A new second starts over, and says what the last one skipped (batch 9).
        assert_eq!(s.admit(at(1500), 10), Some((1, 10)));
        // thereafter 0: one line per second, whatever the load; 1: everything.
        let mut one = Sampler::new(1, 0);
        assert_eq!((0..1000).filter(|i| one.admit(at(*i / 2), 1).is_some()).count(), 1);
        assert_eq!(one.admit(at(1000), 1), Some((999, 999)));
        let mut all = Sampler::new(2, 1);
        assert!((0..100).all(|i| all.admit(at(i), 1) == Some((0, 0))));
    }

    #[test]
    fn detailed_is_otlp_json() {
        let mut out = String::new();
        render("debug", Verbosity::Detailed, &batch(), &mut out);
        let json_line = out.lines().nth(1).unwrap();
        assert_eq!(json::decode(otterline_core::Signal::Traces, json_line.as_bytes()).unwrap(), batch());
    }
}
