//! The `debug` exporter: what passes through, on stderr.
//!
//! `verbosity: basic` (default) prints one line per batch: signal, resources,
//! items. `normal` adds one line per item (span, data point group, log record).
//! `detailed` prints each batch as OTLP/JSON.

use std::fmt::Write as _;
use std::io::Write as _;

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

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DebugConfig {
    pub verbosity: Verbosity,
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
        Ok(Box::new(DebugExporter { name: ctx.id.to_string(), verbosity: cfg.verbosity, buf: String::new() }))
    }
}

struct DebugExporter {
    name: String,
    verbosity: Verbosity,
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
        self.buf.clear();
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
    fn detailed_is_otlp_json() {
        let mut out = String::new();
        render("debug", Verbosity::Detailed, &batch(), &mut out);
        let json_line = out.lines().nth(1).unwrap();
        assert_eq!(json::decode(otterline_core::Signal::Traces, json_line.as_bytes()).unwrap(), batch());
    }
}
