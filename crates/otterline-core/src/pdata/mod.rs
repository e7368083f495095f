//! The telemetry that flows through pipelines.
//!
//! A [`Batch`] is one OTLP export request of one signal, exactly as the OTLP protobuf
//! types of `opentelemetry-proto` define it. Receivers decode a request once into a
//! batch; processors change it in place or emit new batches; exporters consume it.

pub mod encode;
pub mod json;
pub mod meter;

use std::fmt;

pub use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
pub use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
pub use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
pub use opentelemetry_proto::tonic::common::v1 as common;
pub use opentelemetry_proto::tonic::logs::v1 as logs;
pub use opentelemetry_proto::tonic::metrics::v1 as metrics;
pub use opentelemetry_proto::tonic::resource::v1 as resource;
pub use opentelemetry_proto::tonic::trace::v1 as trace;

use metrics::metric::Data;

/// One of the three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 3] = [Signal::Traces, Signal::Metrics, Signal::Logs];

    /// The lower-case name used in config, paths and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// Dense index (0..3) for per-signal arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s {
            "traces" => Some(Signal::Traces),
            "metrics" => Some(Signal::Metrics),
            "logs" => Some(Signal::Logs),
            _ => None,
        }
    }

    /// What an item of this signal is called (for counters and messages).
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Metrics => "data points",
            Signal::Logs => "log records",
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A small set of signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SignalSet(u8);

impl SignalSet {
    pub const NONE: SignalSet = SignalSet(0);
    pub const ALL: SignalSet = SignalSet(0b111);

    pub const fn of(s: Signal) -> SignalSet {
        SignalSet(1 << s as u8)
    }
    pub const fn with(self, s: Signal) -> SignalSet {
        SignalSet(self.0 | (1 << s as u8))
    }
    pub fn contains(self, s: Signal) -> bool {
        self.0 & (1 << s as u8) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::ALL.into_iter().filter(move |s| self.contains(*s))
    }
}

impl fmt::Display for SignalSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Signal::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

/// One OTLP export request of one signal: the unit that moves between stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
    Logs(ExportLogsServiceRequest),
}

impl Batch {
    pub fn signal(&self) -> Signal {
        match self {
            Batch::Traces(_) => Signal::Traces,
            Batch::Metrics(_) => Signal::Metrics,
            Batch::Logs(_) => Signal::Logs,
        }
    }

    /// Number of items: spans, metric data points, or log records.
    pub fn item_count(&self) -> usize {
        match self {
            Batch::Traces(r) => span_count(r),
            Batch::Metrics(r) => data_point_count(r),
            Batch::Logs(r) => log_record_count(r),
        }
    }

    /// Number of resource entries (`resource_spans` and friends).
    pub fn resource_count(&self) -> usize {
        match self {
            Batch::Traces(r) => r.resource_spans.len(),
            Batch::Metrics(r) => r.resource_metrics.len(),
            Batch::Logs(r) => r.resource_logs.len(),
        }
    }

    /// Encoded protobuf size in bytes (computed, not allocated).
    pub fn encoded_len(&self) -> usize {
        use prost::Message;
        match self {
            Batch::Traces(r) => r.encoded_len(),
            Batch::Metrics(r) => r.encoded_len(),
            Batch::Logs(r) => r.encoded_len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.resource_count() == 0
    }

    /// The OTLP protobuf encoding of the export request.
    pub fn encode_protobuf(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_protobuf_into(&mut out);
        out
    }

    /// Appends the OTLP protobuf encoding of the export request to `buf` ([`encode`]: each
    /// message measured once; a component encoding many batches keeps an
    /// [`encode::Encoder`] instead).
    pub fn encode_protobuf_into(&self, buf: &mut Vec<u8>) {
        encode::Encoder::new().encode(self, buf);
    }

    /// Decodes an OTLP protobuf export request of `signal`.
    pub fn decode_protobuf(signal: Signal, bytes: &[u8]) -> Result<Batch, prost::DecodeError> {
        use prost::Message;
        Ok(match signal {
            Signal::Traces => Batch::Traces(ExportTraceServiceRequest::decode(bytes)?),
            Signal::Metrics => Batch::Metrics(ExportMetricsServiceRequest::decode(bytes)?),
            Signal::Logs => Batch::Logs(ExportLogsServiceRequest::decode(bytes)?),
        })
    }
}

pub fn span_count(r: &ExportTraceServiceRequest) -> usize {
    r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).map(|ss| ss.spans.len()).sum()
}

pub fn log_record_count(r: &ExportLogsServiceRequest) -> usize {
    r.resource_logs.iter().flat_map(|rl| &rl.scope_logs).map(|sl| sl.log_records.len()).sum()
}

pub fn data_point_count(r: &ExportMetricsServiceRequest) -> usize {
    r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics).map(metric_point_count).sum()
}

/// Data points in one metric (0 for a metric without data).
pub fn metric_point_count(m: &metrics::Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// A scalar attribute value as text (strings as they are, numbers and booleans formatted);
/// empty for bytes, arrays and kvlists. For grouping keys, labels and messages.
pub fn value_text(v: &common::any_value::Value) -> String {
    use common::any_value::Value as V;
    match v {
        V::StringValue(s) => s.clone(),
        V::IntValue(i) => i.to_string(),
        V::DoubleValue(d) => d.to_string(),
        V::BoolValue(b) => b.to_string(),
        _ => String::new(),
    }
}

/// The `service.name` resource attribute, if it is a string.
pub fn service_name(resource: Option<&resource::Resource>) -> Option<&str> {
    resource.and_then(|r| {
        r.attributes.iter().find_map(|kv| {
            if kv.key == "service.name" {
                match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(common::any_value::Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                }
            } else {
                None
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_set_membership() {
        let s = SignalSet::of(Signal::Traces).with(Signal::Logs);
        assert!(s.contains(Signal::Traces));
        assert!(!s.contains(Signal::Metrics));
        assert!(s.contains(Signal::Logs));
        assert_eq!(s.to_string(), "traces, logs");
        assert_eq!(SignalSet::ALL.iter().count(), 3);
    }

    #[test]
    fn counts_items_per_signal() {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                scope_spans: vec![
                    trace::ScopeSpans { spans: vec![Default::default(); 3], ..Default::default() },
                    trace::ScopeSpans { spans: vec![Default::default(); 2], ..Default::default() },
                ],
                ..Default::default()
            }],
        };
        let b = Batch::Traces(req);
        assert_eq!(b.item_count(), 5);
        assert_eq!(b.resource_count(), 1);
        assert_eq!(b.signal(), Signal::Traces);
    }
}
