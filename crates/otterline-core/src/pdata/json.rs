//! The OTLP/JSON mapping, both ways.
//!
//! Follows <https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding>:
//! trace and span ids are hex strings, enums are integers, 64-bit integers are
//! written as strings. The decoder is lenient where the spec asks it to be and
//! where real clients differ: it accepts lowerCamelCase and snake_case keys,
//! 64-bit integers as strings or numbers, enums as integers or their names,
//! `"NaN"`/`"Infinity"` for doubles, and ignores unknown fields. Every decode
//! error names the JSON path of the offending value.
//!
//! The encoder writes straight into a `String` (no intermediate tree) and omits
//! default values, so `encode(decode(x))` is canonical and can be re-posted to
//! any OTLP/HTTP endpoint.

use std::fmt::{self, Write as _};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::common::{any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList};
use super::logs::{LogRecord, ResourceLogs, ScopeLogs};
use super::metrics::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use super::resource::Resource;
use super::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use super::{Batch, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest, Signal};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A decode error with the JSON path where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonError {
    path: Vec<String>,
    message: String,
}

impl JsonError {
    fn new(message: impl Into<String>) -> Self {
        JsonError { path: Vec::new(), message: message.into() }
    }
    fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }
    /// The path as `a.b[2].c` (empty at the document root).
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().rev() {
            if seg.starts_with('[') || out.is_empty() {
                out.push_str(seg);
            } else {
                out.push('.');
                out.push_str(seg);
            }
        }
        out
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path(), self.message)
        }
    }
}

impl std::error::Error for JsonError {}

type R<T> = Result<T, JsonError>;

trait AtExt<T> {
    fn at(self, seg: &str) -> R<T>;
    fn at_index(self, i: usize) -> R<T>;
}
impl<T> AtExt<T> for R<T> {
    fn at(self, seg: &str) -> R<T> {
        self.map_err(|e| e.at(seg))
    }
    fn at_index(self, i: usize) -> R<T> {
        self.map_err(|e| e.at(format!("[{i}]")))
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Decodes an OTLP/JSON export request of `signal`.
pub fn decode(signal: Signal, bytes: &[u8]) -> Result<Batch, JsonError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    decode_value(signal, &value)
}

/// Decodes an already parsed OTLP/JSON export request of `signal`.
pub fn decode_value(signal: Signal, value: &Value) -> Result<Batch, JsonError> {
    let o = obj(value)?;
    Ok(match signal {
        Signal::Traces => Batch::Traces(ExportTraceServiceRequest {
            resource_spans: list(o, "resourceSpans", "resource_spans", resource_spans)?,
        }),
        Signal::Metrics => Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: list(o, "resourceMetrics", "resource_metrics", resource_metrics)?,
        }),
        Signal::Logs => Batch::Logs(ExportLogsServiceRequest {
            resource_logs: list(o, "resourceLogs", "resource_logs", resource_logs)?,
        }),
    })
}

fn obj(v: &Value) -> R<&Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(JsonError::new(format!("expected an object, found {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Looks a field up by its lowerCamelCase or snake_case name; `null` is absent.
fn field<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel).or_else(|| if camel != snake { o.get(snake) } else { None }).filter(|v| !v.is_null())
}

fn list<T>(o: &Map<String, Value>, camel: &str, snake: &str, f: impl Fn(&Value) -> R<T>) -> R<Vec<T>> {
    match field(o, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            items.iter().enumerate().map(|(i, v)| f(v).at_index(i)).collect::<R<Vec<T>>>().at(camel)
        }
        Some(other) => Err(JsonError::new(format!("expected an array, found {}", kind(other))).at(camel)),
    }
}

fn opt<T>(o: &Map<String, Value>, camel: &str, snake: &str, f: impl Fn(&Value) -> R<T>) -> R<Option<T>> {
    match field(o, camel, snake) {
        None => Ok(None),
        Some(v) => f(v).map(Some).at(camel),
    }
}

fn string(o: &Map<String, Value>, camel: &str, snake: &str) -> R<String> {
    match field(o, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(JsonError::new(format!("expected a string, found {}", kind(other))).at(camel)),
    }
}

fn boolean(o: &Map<String, Value>, camel: &str, snake: &str) -> R<bool> {
    match field(o, camel, snake) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(JsonError::new(format!("expected a boolean, found {}", kind(other))).at(camel)),
    }
}

fn parse_u64(v: &Value) -> R<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64).map(|f| f as u64))
            .ok_or_else(|| JsonError::new(format!("expected an unsigned 64-bit integer, found {n}"))),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| JsonError::new(format!("expected an unsigned 64-bit integer, found {s:?}"))),
        other => Err(JsonError::new(format!("expected an unsigned integer (number or string), found {}", kind(other)))),
    }
}

fn parse_i64(v: &Value) -> R<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= i64::MAX as f64).map(|f| f as i64))
            .ok_or_else(|| JsonError::new(format!("expected a 64-bit integer, found {n}"))),
        Value::String(s) => {
            s.trim().parse::<i64>().map_err(|_| JsonError::new(format!("expected a 64-bit integer, found {s:?}")))
        }
        other => Err(JsonError::new(format!("expected an integer (number or string), found {}", kind(other)))),
    }
}

fn parse_f64(v: &Value) -> R<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| JsonError::new(format!("expected a number, found {n}"))),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.trim().parse::<f64>().map_err(|_| JsonError::new(format!("expected a number, found {s:?}"))),
        },
        other => Err(JsonError::new(format!("expected a number, found {}", kind(other)))),
    }
}

fn u64_field(o: &Map<String, Value>, camel: &str, snake: &str) -> R<u64> {
    field(o, camel, snake).map_or(Ok(0), |v| parse_u64(v).at(camel))
}

fn i64_field(o: &Map<String, Value>, camel: &str, snake: &str) -> R<i64> {
    field(o, camel, snake).map_or(Ok(0), |v| parse_i64(v).at(camel))
}

fn u32_field(o: &Map<String, Value>, camel: &str, snake: &str) -> R<u32> {
    let v = u64_field(o, camel, snake)?;
    u32::try_from(v).map_err(|_| JsonError::new(format!("{v} does not fit in 32 bits")).at(camel))
}

fn i32_field(o: &Map<String, Value>, camel: &str, snake: &str) -> R<i32> {
    let v = i64_field(o, camel, snake)?;
    i32::try_from(v).map_err(|_| JsonError::new(format!("{v} does not fit in 32 bits")).at(camel))
}

fn f64_field(o: &Map<String, Value>, camel: &str, snake: &str) -> R<f64> {
    field(o, camel, snake).map_or(Ok(0.0), |v| parse_f64(v).at(camel))
}

fn opt_f64_field(o: &Map<String, Value>, camel: &str, snake: &str) -> R<Option<f64>> {
    opt(o, camel, snake, parse_f64)
}

/// An enum given as an integer or by its name (`names[i]` is the name of value `i`).
fn enum_field(o: &Map<String, Value>, camel: &str, snake: &str, names: &[&str]) -> R<i32> {
    match field(o, camel, snake) {
        None => Ok(0),
        Some(Value::String(s)) if s.parse::<i64>().is_err() => {
            names.iter().position(|n| n == s).map(|i| i as i32).ok_or_else(|| {
                JsonError::new(format!("unknown enum value {s:?} (expected an integer or one of {})", names.join(", ")))
                    .at(camel)
            })
        }
        Some(v) => {
            let n = parse_i64(v).at(camel)?;
            i32::try_from(n).map_err(|_| JsonError::new(format!("{n} does not fit in 32 bits")).at(camel))
        }
    }
}

fn hex_id(o: &Map<String, Value>, camel: &str, snake: &str, len: usize) -> R<Vec<u8>> {
    match field(o, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => {
            let bytes = decode_hex(s).map_err(|e| JsonError::new(e).at(camel))?;
            if bytes.len() != len {
                return Err(JsonError::new(format!("expected {} hex digits, found {}", len * 2, s.len())).at(camel));
            }
            Ok(bytes)
        }
        Some(other) => Err(JsonError::new(format!("expected a hex string, found {}", kind(other))).at(camel)),
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits in {s:?}"));
    }
    let digit = |c: u8| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!("invalid hex digit {:?} in {s:?}", c as char)),
        }
    };
    s.as_bytes().chunks_exact(2).map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

fn resource(v: &Value) -> R<Resource> {
    let o = obj(v)?;
    Ok(Resource {
        attributes: list(o, "attributes", "attributes", key_value)?,
        dropped_attributes_count: u32_field(o, "droppedAttributesCount", "dropped_attributes_count")?,
        entity_refs: list(o, "entityRefs", "entity_refs", entity_ref)?,
    })
}

fn entity_ref(v: &Value) -> R<EntityRef> {
    let o = obj(v)?;
    let strings = |camel: &str, snake: &str| {
        list(o, camel, snake, |v| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err(JsonError::new(format!("expected a string, found {}", kind(other)))),
        })
    };
    Ok(EntityRef {
        schema_url: string(o, "schemaUrl", "schema_url")?,
        r#type: string(o, "type", "type")?,
        id_keys: strings("idKeys", "id_keys")?,
        description_keys: strings("descriptionKeys", "description_keys")?,
    })
}

fn scope(v: &Value) -> R<InstrumentationScope> {
    let o = obj(v)?;
    Ok(InstrumentationScope {
        name: string(o, "name", "name")?,
        version: string(o, "version", "version")?,
        attributes: list(o, "attributes", "attributes", key_value)?,
        dropped_attributes_count: u32_field(o, "droppedAttributesCount", "dropped_attributes_count")?,
    })
}

fn key_value(v: &Value) -> R<KeyValue> {
    let o = obj(v)?;
    Ok(KeyValue { key: string(o, "key", "key")?, value: opt(o, "value", "value", any_value)?, ..Default::default() })
}

fn any_value(v: &Value) -> R<AnyValue> {
    use any_value::Value as V;
    let o = obj(v)?;
    let value = if let Some(s) = field(o, "stringValue", "string_value") {
        match s {
            Value::String(s) => Some(V::StringValue(s.clone())),
            other => return Err(JsonError::new(format!("expected a string, found {}", kind(other))).at("stringValue")),
        }
    } else if field(o, "boolValue", "bool_value").is_some() {
        Some(V::BoolValue(boolean(o, "boolValue", "bool_value")?))
    } else if field(o, "intValue", "int_value").is_some() {
        Some(V::IntValue(i64_field(o, "intValue", "int_value")?))
    } else if field(o, "doubleValue", "double_value").is_some() {
        Some(V::DoubleValue(f64_field(o, "doubleValue", "double_value")?))
    } else if let Some(a) = field(o, "arrayValue", "array_value") {
        let ao = obj(a).at("arrayValue")?;
        Some(V::ArrayValue(ArrayValue { values: list(ao, "values", "values", any_value).at("arrayValue")? }))
    } else if let Some(k) = field(o, "kvlistValue", "kvlist_value") {
        let ko = obj(k).at("kvlistValue")?;
        Some(V::KvlistValue(KeyValueList { values: list(ko, "values", "values", key_value).at("kvlistValue")? }))
    } else if let Some(b) = field(o, "bytesValue", "bytes_value") {
        match b {
            Value::String(s) => Some(V::BytesValue(decode_base64(s).map_err(|e| JsonError::new(e).at("bytesValue"))?)),
            other => {
                return Err(JsonError::new(format!("expected a base64 string, found {}", kind(other))).at("bytesValue"))
            }
        }
    } else {
        None
    };
    Ok(AnyValue { value })
}

fn decode_base64(s: &str) -> Result<Vec<u8>, String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(b) = engine.decode(s) {
            return Ok(b);
        }
    }
    Err(format!("invalid base64 {s:?}"))
}

fn resource_spans(v: &Value) -> R<ResourceSpans> {
    let o = obj(v)?;
    Ok(ResourceSpans {
        resource: opt(o, "resource", "resource", resource)?,
        scope_spans: list(o, "scopeSpans", "scope_spans", scope_spans)?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn scope_spans(v: &Value) -> R<ScopeSpans> {
    let o = obj(v)?;
    Ok(ScopeSpans {
        scope: opt(o, "scope", "scope", scope)?,
        spans: list(o, "spans", "spans", span_json)?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];
const TEMPORALITIES: &[&str] =
    &["AGGREGATION_TEMPORALITY_UNSPECIFIED", "AGGREGATION_TEMPORALITY_DELTA", "AGGREGATION_TEMPORALITY_CUMULATIVE"];
const SEVERITIES: &[&str] = &[
    "SEVERITY_NUMBER_UNSPECIFIED",
    "SEVERITY_NUMBER_TRACE",
    "SEVERITY_NUMBER_TRACE2",
    "SEVERITY_NUMBER_TRACE3",
    "SEVERITY_NUMBER_TRACE4",
    "SEVERITY_NUMBER_DEBUG",
    "SEVERITY_NUMBER_DEBUG2",
    "SEVERITY_NUMBER_DEBUG3",
    "SEVERITY_NUMBER_DEBUG4",
    "SEVERITY_NUMBER_INFO",
    "SEVERITY_NUMBER_INFO2",
    "SEVERITY_NUMBER_INFO3",
    "SEVERITY_NUMBER_INFO4",
    "SEVERITY_NUMBER_WARN",
    "SEVERITY_NUMBER_WARN2",
    "SEVERITY_NUMBER_WARN3",
    "SEVERITY_NUMBER_WARN4",
    "SEVERITY_NUMBER_ERROR",
    "SEVERITY_NUMBER_ERROR2",
    "SEVERITY_NUMBER_ERROR3",
    "SEVERITY_NUMBER_ERROR4",
    "SEVERITY_NUMBER_FATAL",
    "SEVERITY_NUMBER_FATAL2",
    "SEVERITY_NUMBER_FATAL3",
    "SEVERITY_NUMBER_FATAL4",
];

fn span_json(v: &Value) -> R<Span> {
    let o = obj(v)?;
    Ok(Span {
        trace_id: hex_id(o, "traceId", "trace_id", 16)?,
        span_id: hex_id(o, "spanId", "span_id", 8)?,
        trace_state: string(o, "traceState", "trace_state")?,
        parent_span_id: hex_id(o, "parentSpanId", "parent_span_id", 8)?,
        flags: u32_field(o, "flags", "flags")?,
        name: string(o, "name", "name")?,
        kind: enum_field(o, "kind", "kind", SPAN_KINDS)?,
        start_time_unix_nano: u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        end_time_unix_nano: u64_field(o, "endTimeUnixNano", "end_time_unix_nano")?,
        attributes: list(o, "attributes", "attributes", key_value)?,
        dropped_attributes_count: u32_field(o, "droppedAttributesCount", "dropped_attributes_count")?,
        events: list(o, "events", "events", span_event)?,
        dropped_events_count: u32_field(o, "droppedEventsCount", "dropped_events_count")?,
        links: list(o, "links", "links", span_link)?,
        dropped_links_count: u32_field(o, "droppedLinksCount", "dropped_links_count")?,
        status: opt(o, "status", "status", status)?,
    })
}

fn span_event(v: &Value) -> R<span::Event> {
    let o = obj(v)?;
    Ok(span::Event {
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        name: string(o, "name", "name")?,
        attributes: list(o, "attributes", "attributes", key_value)?,
        dropped_attributes_count: u32_field(o, "droppedAttributesCount", "dropped_attributes_count")?,
    })
}

fn span_link(v: &Value) -> R<span::Link> {
    let o = obj(v)?;
    Ok(span::Link {
        trace_id: hex_id(o, "traceId", "trace_id", 16)?,
        span_id: hex_id(o, "spanId", "span_id", 8)?,
        trace_state: string(o, "traceState", "trace_state")?,
        attributes: list(o, "attributes", "attributes", key_value)?,
        dropped_attributes_count: u32_field(o, "droppedAttributesCount", "dropped_attributes_count")?,
        flags: u32_field(o, "flags", "flags")?,
    })
}

fn status(v: &Value) -> R<Status> {
    let o = obj(v)?;
    Ok(Status { message: string(o, "message", "message")?, code: enum_field(o, "code", "code", STATUS_CODES)? })
}

fn resource_logs(v: &Value) -> R<ResourceLogs> {
    let o = obj(v)?;
    Ok(ResourceLogs {
        resource: opt(o, "resource", "resource", resource)?,
        scope_logs: list(o, "scopeLogs", "scope_logs", scope_logs)?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn scope_logs(v: &Value) -> R<ScopeLogs> {
    let o = obj(v)?;
    Ok(ScopeLogs {
        scope: opt(o, "scope", "scope", scope)?,
        log_records: list(o, "logRecords", "log_records", log_record)?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn log_record(v: &Value) -> R<LogRecord> {
    let o = obj(v)?;
    Ok(LogRecord {
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: u64_field(o, "observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: enum_field(o, "severityNumber", "severity_number", SEVERITIES)?,
        severity_text: string(o, "severityText", "severity_text")?,
        body: opt(o, "body", "body", any_value)?,
        attributes: list(o, "attributes", "attributes", key_value)?,
        dropped_attributes_count: u32_field(o, "droppedAttributesCount", "dropped_attributes_count")?,
        flags: u32_field(o, "flags", "flags")?,
        trace_id: hex_id(o, "traceId", "trace_id", 16)?,
        span_id: hex_id(o, "spanId", "span_id", 8)?,
        event_name: string(o, "eventName", "event_name")?,
    })
}

fn resource_metrics(v: &Value) -> R<ResourceMetrics> {
    let o = obj(v)?;
    Ok(ResourceMetrics {
        resource: opt(o, "resource", "resource", resource)?,
        scope_metrics: list(o, "scopeMetrics", "scope_metrics", scope_metrics)?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn scope_metrics(v: &Value) -> R<ScopeMetrics> {
    let o = obj(v)?;
    Ok(ScopeMetrics {
        scope: opt(o, "scope", "scope", scope)?,
        metrics: list(o, "metrics", "metrics", metric_json)?,
        schema_url: string(o, "schemaUrl", "schema_url")?,
    })
}

fn metric_json(v: &Value) -> R<Metric> {
    let o = obj(v)?;
    let data = if let Some(g) = field(o, "gauge", "gauge") {
        let go = obj(g).at("gauge")?;
        Some(metric::Data::Gauge(Gauge {
            data_points: list(go, "dataPoints", "data_points", number_point).at("gauge")?,
        }))
    } else if let Some(s) = field(o, "sum", "sum") {
        let so = obj(s).at("sum")?;
        Some(metric::Data::Sum(Sum {
            data_points: list(so, "dataPoints", "data_points", number_point).at("sum")?,
            aggregation_temporality: enum_field(so, "aggregationTemporality", "aggregation_temporality", TEMPORALITIES)
                .at("sum")?,
            is_monotonic: boolean(so, "isMonotonic", "is_monotonic").at("sum")?,
        }))
    } else if let Some(h) = field(o, "histogram", "histogram") {
        let ho = obj(h).at("histogram")?;
        Some(metric::Data::Histogram(Histogram {
            data_points: list(ho, "dataPoints", "data_points", histogram_point).at("histogram")?,
            aggregation_temporality: enum_field(ho, "aggregationTemporality", "aggregation_temporality", TEMPORALITIES)
                .at("histogram")?,
        }))
    } else if let Some(h) = field(o, "exponentialHistogram", "exponential_histogram") {
        let ho = obj(h).at("exponentialHistogram")?;
        Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: list(ho, "dataPoints", "data_points", exp_histogram_point).at("exponentialHistogram")?,
            aggregation_temporality: enum_field(ho, "aggregationTemporality", "aggregation_temporality", TEMPORALITIES)
                .at("exponentialHistogram")?,
        }))
    } else if let Some(s) = field(o, "summary", "summary") {
        let so = obj(s).at("summary")?;
        Some(metric::Data::Summary(Summary {
            data_points: list(so, "dataPoints", "data_points", summary_point).at("summary")?,
        }))
    } else {
        None
    };
    Ok(Metric {
        name: string(o, "name", "name")?,
        description: string(o, "description", "description")?,
        unit: string(o, "unit", "unit")?,
        metadata: list(o, "metadata", "metadata", key_value)?,
        data,
    })
}

fn number_point(v: &Value) -> R<NumberDataPoint> {
    let o = obj(v)?;
    let value = if field(o, "asDouble", "as_double").is_some() {
        Some(number_data_point::Value::AsDouble(f64_field(o, "asDouble", "as_double")?))
    } else if field(o, "asInt", "as_int").is_some() {
        Some(number_data_point::Value::AsInt(i64_field(o, "asInt", "as_int")?))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: list(o, "attributes", "attributes", key_value)?,
        start_time_unix_nano: u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        exemplars: list(o, "exemplars", "exemplars", exemplar_json)?,
        flags: u32_field(o, "flags", "flags")?,
        value,
    })
}

fn u64_list(o: &Map<String, Value>, camel: &str, snake: &str) -> R<Vec<u64>> {
    list(o, camel, snake, parse_u64)
}

fn histogram_point(v: &Value) -> R<HistogramDataPoint> {
    let o = obj(v)?;
    Ok(HistogramDataPoint {
        attributes: list(o, "attributes", "attributes", key_value)?,
        start_time_unix_nano: u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(o, "count", "count")?,
        sum: opt_f64_field(o, "sum", "sum")?,
        bucket_counts: u64_list(o, "bucketCounts", "bucket_counts")?,
        explicit_bounds: list(o, "explicitBounds", "explicit_bounds", parse_f64)?,
        exemplars: list(o, "exemplars", "exemplars", exemplar_json)?,
        flags: u32_field(o, "flags", "flags")?,
        min: opt_f64_field(o, "min", "min")?,
        max: opt_f64_field(o, "max", "max")?,
    })
}

fn buckets(v: &Value) -> R<Buckets> {
    let o = obj(v)?;
    Ok(Buckets {
        offset: i32_field(o, "offset", "offset")?,
        bucket_counts: u64_list(o, "bucketCounts", "bucket_counts")?,
    })
}

fn exp_histogram_point(v: &Value) -> R<ExponentialHistogramDataPoint> {
    let o = obj(v)?;
    Ok(ExponentialHistogramDataPoint {
        attributes: list(o, "attributes", "attributes", key_value)?,
        start_time_unix_nano: u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(o, "count", "count")?,
        sum: opt_f64_field(o, "sum", "sum")?,
        scale: i32_field(o, "scale", "scale")?,
        zero_count: u64_field(o, "zeroCount", "zero_count")?,
        positive: opt(o, "positive", "positive", buckets)?,
        negative: opt(o, "negative", "negative", buckets)?,
        flags: u32_field(o, "flags", "flags")?,
        exemplars: list(o, "exemplars", "exemplars", exemplar_json)?,
        min: opt_f64_field(o, "min", "min")?,
        max: opt_f64_field(o, "max", "max")?,
        zero_threshold: f64_field(o, "zeroThreshold", "zero_threshold")?,
    })
}

fn summary_point(v: &Value) -> R<SummaryDataPoint> {
    let o = obj(v)?;
    Ok(SummaryDataPoint {
        attributes: list(o, "attributes", "attributes", key_value)?,
        start_time_unix_nano: u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        count: u64_field(o, "count", "count")?,
        sum: f64_field(o, "sum", "sum")?,
        quantile_values: list(o, "quantileValues", "quantile_values", |v| {
            let q = obj(v)?;
            Ok(ValueAtQuantile {
                quantile: f64_field(q, "quantile", "quantile")?,
                value: f64_field(q, "value", "value")?,
            })
        })?,
        flags: u32_field(o, "flags", "flags")?,
    })
}

fn exemplar_json(v: &Value) -> R<Exemplar> {
    let o = obj(v)?;
    let value = if field(o, "asDouble", "as_double").is_some() {
        Some(exemplar::Value::AsDouble(f64_field(o, "asDouble", "as_double")?))
    } else if field(o, "asInt", "as_int").is_some() {
        Some(exemplar::Value::AsInt(i64_field(o, "asInt", "as_int")?))
    } else {
        None
    };
    Ok(Exemplar {
        filtered_attributes: list(o, "filteredAttributes", "filtered_attributes", key_value)?,
        time_unix_nano: u64_field(o, "timeUnixNano", "time_unix_nano")?,
        span_id: hex_id(o, "spanId", "span_id", 8)?,
        trace_id: hex_id(o, "traceId", "trace_id", 16)?,
        value,
    })
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Encodes a batch as one line of OTLP/JSON (no trailing newline).
pub fn encode(batch: &Batch) -> String {
    let mut out = String::with_capacity(256);
    encode_into(batch, &mut out);
    out
}

/// Appends the OTLP/JSON of `batch` to `out` (no trailing newline).
pub fn encode_into(batch: &Batch, out: &mut String) {
    let mut w = Obj::new(out);
    match batch {
        Batch::Traces(r) => w.list("resourceSpans", &r.resource_spans, enc_resource_spans),
        Batch::Metrics(r) => w.list("resourceMetrics", &r.resource_metrics, enc_resource_metrics),
        Batch::Logs(r) => w.list("resourceLogs", &r.resource_logs, enc_resource_logs),
    }
    w.end();
}

/// Writes one JSON object field by field, handling commas and omitting defaults.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push('"');
        self.out.push(':');
    }
    fn end(self) {
        self.out.push('}');
    }
    fn str(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.key(k);
            write_str(self.out, v);
        }
    }
    fn u64s(&mut self, k: &str, v: u64) {
        if v != 0 {
            self.key(k);
            write_quoted_int(self.out, v);
        }
    }
    fn i64s(&mut self, k: &str, v: i64) {
        if v != 0 {
            self.key(k);
            write_quoted_int(self.out, v);
        }
    }
    fn int(&mut self, k: &str, v: i64) {
        if v != 0 {
            self.key(k);
            self.out.push_str(itoa::Buffer::new().format(v));
        }
    }
    fn boolean(&mut self, k: &str, v: bool) {
        if v {
            self.key(k);
            self.out.push_str("true");
        }
    }
    fn f64(&mut self, k: &str, v: f64) {
        if v != 0.0 || v.is_sign_negative() {
            self.key(k);
            write_f64(self.out, v);
        }
    }
    fn opt_f64(&mut self, k: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.key(k);
            write_f64(self.out, v);
        }
    }
    fn hex(&mut self, k: &str, v: &[u8]) {
        if !v.is_empty() {
            self.key(k);
            self.out.push('"');
            write_hex(self.out, v);
            self.out.push('"');
        }
    }
    fn list<T>(&mut self, k: &str, items: &[T], f: impl Fn(&T, &mut String)) {
        if items.is_empty() {
            return;
        }
        self.key(k);
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            f(item, self.out);
        }
        self.out.push(']');
    }
    fn obj<T>(&mut self, k: &str, v: Option<&T>, f: impl Fn(&T, &mut String)) {
        if let Some(v) = v {
            self.key(k);
            f(v, self.out);
        }
    }
    fn attrs(&mut self, k: &str, attrs: &[KeyValue]) {
        self.list(k, attrs, enc_key_value);
    }
}

/// A 64-bit integer as a JSON string, as OTLP/JSON writes them.
fn write_quoted_int(out: &mut String, v: impl itoa::Integer) {
    out.push('"');
    out.push_str(itoa::Buffer::new().format(v));
    out.push('"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` needs escaping, eight bytes at a time: a byte below 0x20, a
/// quote or a backslash (the classic "has a zero / has a byte less than" word tricks,
/// exact as a yes/no answer).
fn any_needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = s.chunks_exact(8);
    for c in &mut words {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
        if control || has_zero(w ^ (ONES * b'"' as u64)) || has_zero(w ^ (ONES * b'\\' as u64)) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| needs_escape(b))
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escaping: one scan, one copy.
    if !any_needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

fn write_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (i, b) in chunk.iter().enumerate() {
            buf[2 * i] = HEX[(b >> 4) as usize];
            buf[2 * i + 1] = HEX[(b & 0xf) as usize];
        }
        // Only ASCII hex digits were written.
        out.push_str(std::str::from_utf8(&buf[..2 * chunk.len()]).unwrap_or_default());
    }
}

fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Integral doubles: keep them recognisably doubles without an exponent.
        let _ = write!(out, "{v:.1}");
    } else {
        // Shortest representation that reads back as the same double (`1e-7`, `0.25`).
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn enc_key_value(kv: &KeyValue, out: &mut String) {
    // The hottest object of all (every attribute): written without the `Obj` bookkeeping.
    out.push_str("{\"key\":");
    write_str(out, &kv.key);
    if let Some(v) = &kv.value {
        out.push_str(",\"value\":");
        enc_any_value(v, out);
    }
    out.push('}');
}

fn enc_any_value(v: &AnyValue, out: &mut String) {
    use any_value::Value as V;
    let mut w = Obj::new(out);
    match &v.value {
        Some(V::StringValue(s)) => {
            w.key("stringValue");
            write_str(w.out, s);
        }
        Some(V::BoolValue(b)) => {
            w.key("boolValue");
            w.out.push_str(if *b { "true" } else { "false" });
        }
        Some(V::IntValue(i)) => {
            w.key("intValue");
            write_quoted_int(w.out, *i);
        }
        Some(V::DoubleValue(d)) => {
            w.key("doubleValue");
            write_f64(w.out, *d);
        }
        Some(V::ArrayValue(a)) => {
            w.key("arrayValue");
            let mut inner = Obj::new(w.out);
            inner.list("values", &a.values, enc_any_value);
            inner.end();
        }
        Some(V::KvlistValue(kv)) => {
            w.key("kvlistValue");
            let mut inner = Obj::new(w.out);
            inner.attrs("values", &kv.values);
            inner.end();
        }
        Some(V::BytesValue(b)) => {
            w.key("bytesValue");
            write_str(w.out, &base64::engine::general_purpose::STANDARD.encode(b));
        }
        // Dictionary references only exist inside profiles; nothing to write here.
        Some(V::StringValueStrindex(_)) | None => {}
    }
    w.end();
}

fn enc_resource(r: &Resource, out: &mut String) {
    let mut w = Obj::new(out);
    w.attrs("attributes", &r.attributes);
    w.int("droppedAttributesCount", r.dropped_attributes_count as i64);
    w.list("entityRefs", &r.entity_refs, |e, out| {
        let mut w = Obj::new(out);
        w.str("schemaUrl", &e.schema_url);
        w.str("type", &e.r#type);
        w.list("idKeys", &e.id_keys, |s, out| write_str(out, s));
        w.list("descriptionKeys", &e.description_keys, |s, out| write_str(out, s));
        w.end();
    });
    w.end();
}

fn enc_scope(s: &InstrumentationScope, out: &mut String) {
    let mut w = Obj::new(out);
    w.str("name", &s.name);
    w.str("version", &s.version);
    w.attrs("attributes", &s.attributes);
    w.int("droppedAttributesCount", s.dropped_attributes_count as i64);
    w.end();
}

fn enc_resource_spans(rs: &ResourceSpans, out: &mut String) {
    let mut w = Obj::new(out);
    w.obj("resource", rs.resource.as_ref(), enc_resource);
    w.list("scopeSpans", &rs.scope_spans, |ss, out| {
        let mut w = Obj::new(out);
        w.obj("scope", ss.scope.as_ref(), enc_scope);
        w.list("spans", &ss.spans, enc_span);
        w.str("schemaUrl", &ss.schema_url);
        w.end();
    });
    w.str("schemaUrl", &rs.schema_url);
    w.end();
}

fn enc_span(s: &Span, out: &mut String) {
    let mut w = Obj::new(out);
    w.hex("traceId", &s.trace_id);
    w.hex("spanId", &s.span_id);
    w.str("traceState", &s.trace_state);
    w.hex("parentSpanId", &s.parent_span_id);
    w.int("flags", s.flags as i64);
    w.str("name", &s.name);
    w.int("kind", s.kind as i64);
    w.u64s("startTimeUnixNano", s.start_time_unix_nano);
    w.u64s("endTimeUnixNano", s.end_time_unix_nano);
    w.attrs("attributes", &s.attributes);
    w.int("droppedAttributesCount", s.dropped_attributes_count as i64);
    w.list("events", &s.events, |e, out| {
        let mut w = Obj::new(out);
        w.u64s("timeUnixNano", e.time_unix_nano);
        w.str("name", &e.name);
        w.attrs("attributes", &e.attributes);
        w.int("droppedAttributesCount", e.dropped_attributes_count as i64);
        w.end();
    });
    w.int("droppedEventsCount", s.dropped_events_count as i64);
    w.list("links", &s.links, |l, out| {
        let mut w = Obj::new(out);
        w.hex("traceId", &l.trace_id);
        w.hex("spanId", &l.span_id);
        w.str("traceState", &l.trace_state);
        w.attrs("attributes", &l.attributes);
        w.int("droppedAttributesCount", l.dropped_attributes_count as i64);
        w.int("flags", l.flags as i64);
        w.end();
    });
    w.int("droppedLinksCount", s.dropped_links_count as i64);
    w.obj("status", s.status.as_ref(), |st, out| {
        let mut w = Obj::new(out);
        w.str("message", &st.message);
        w.int("code", st.code as i64);
        w.end();
    });
    w.end();
}

fn enc_resource_logs(rl: &ResourceLogs, out: &mut String) {
    let mut w = Obj::new(out);
    w.obj("resource", rl.resource.as_ref(), enc_resource);
    w.list("scopeLogs", &rl.scope_logs, |sl, out| {
        let mut w = Obj::new(out);
        w.obj("scope", sl.scope.as_ref(), enc_scope);
        w.list("logRecords", &sl.log_records, enc_log_record);
        w.str("schemaUrl", &sl.schema_url);
        w.end();
    });
    w.str("schemaUrl", &rl.schema_url);
    w.end();
}

fn enc_log_record(l: &LogRecord, out: &mut String) {
    let mut w = Obj::new(out);
    w.u64s("timeUnixNano", l.time_unix_nano);
    w.u64s("observedTimeUnixNano", l.observed_time_unix_nano);
    w.int("severityNumber", l.severity_number as i64);
    w.str("severityText", &l.severity_text);
    w.obj("body", l.body.as_ref(), enc_any_value);
    w.attrs("attributes", &l.attributes);
    w.int("droppedAttributesCount", l.dropped_attributes_count as i64);
    w.int("flags", l.flags as i64);
    w.hex("traceId", &l.trace_id);
    w.hex("spanId", &l.span_id);
    w.str("eventName", &l.event_name);
    w.end();
}

fn enc_resource_metrics(rm: &ResourceMetrics, out: &mut String) {
    let mut w = Obj::new(out);
    w.obj("resource", rm.resource.as_ref(), enc_resource);
    w.list("scopeMetrics", &rm.scope_metrics, |sm, out| {
        let mut w = Obj::new(out);
        w.obj("scope", sm.scope.as_ref(), enc_scope);
        w.list("metrics", &sm.metrics, enc_metric);
        w.str("schemaUrl", &sm.schema_url);
        w.end();
    });
    w.str("schemaUrl", &rm.schema_url);
    w.end();
}

fn enc_metric(m: &Metric, out: &mut String) {
    let mut w = Obj::new(out);
    w.str("name", &m.name);
    w.str("description", &m.description);
    w.str("unit", &m.unit);
    match &m.data {
        Some(metric::Data::Gauge(g)) => {
            w.key("gauge");
            let mut d = Obj::new(w.out);
            d.list("dataPoints", &g.data_points, enc_number_point);
            d.end();
        }
        Some(metric::Data::Sum(s)) => {
            w.key("sum");
            let mut d = Obj::new(w.out);
            d.list("dataPoints", &s.data_points, enc_number_point);
            d.int("aggregationTemporality", s.aggregation_temporality as i64);
            d.boolean("isMonotonic", s.is_monotonic);
            d.end();
        }
        Some(metric::Data::Histogram(h)) => {
            w.key("histogram");
            let mut d = Obj::new(w.out);
            d.list("dataPoints", &h.data_points, enc_histogram_point);
            d.int("aggregationTemporality", h.aggregation_temporality as i64);
            d.end();
        }
        Some(metric::Data::ExponentialHistogram(h)) => {
            w.key("exponentialHistogram");
            let mut d = Obj::new(w.out);
            d.list("dataPoints", &h.data_points, enc_exp_histogram_point);
            d.int("aggregationTemporality", h.aggregation_temporality as i64);
            d.end();
        }
        Some(metric::Data::Summary(s)) => {
            w.key("summary");
            let mut d = Obj::new(w.out);
            d.list("dataPoints", &s.data_points, enc_summary_point);
            d.end();
        }
        None => {}
    }
    w.attrs("metadata", &m.metadata);
    w.end();
}

fn enc_u64_list(items: &[u64], out: &mut String) {
    out.push('[');
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_quoted_int(out, *v);
    }
    out.push(']');
}

fn enc_number_point(p: &NumberDataPoint, out: &mut String) {
    let mut w = Obj::new(out);
    w.attrs("attributes", &p.attributes);
    w.u64s("startTimeUnixNano", p.start_time_unix_nano);
    w.u64s("timeUnixNano", p.time_unix_nano);
    match p.value {
        Some(number_data_point::Value::AsDouble(d)) => {
            w.key("asDouble");
            write_f64(w.out, d);
        }
        Some(number_data_point::Value::AsInt(i)) => {
            w.key("asInt");
            write_quoted_int(w.out, i);
        }
        None => {}
    }
    w.list("exemplars", &p.exemplars, enc_exemplar);
    w.int("flags", p.flags as i64);
    w.end();
}

fn enc_histogram_point(p: &HistogramDataPoint, out: &mut String) {
    let mut w = Obj::new(out);
    w.attrs("attributes", &p.attributes);
    w.u64s("startTimeUnixNano", p.start_time_unix_nano);
    w.u64s("timeUnixNano", p.time_unix_nano);
    w.u64s("count", p.count);
    w.opt_f64("sum", p.sum);
    if !p.bucket_counts.is_empty() {
        w.key("bucketCounts");
        enc_u64_list(&p.bucket_counts, w.out);
    }
    w.list("explicitBounds", &p.explicit_bounds, |b, out| write_f64(out, *b));
    w.list("exemplars", &p.exemplars, enc_exemplar);
    w.int("flags", p.flags as i64);
    w.opt_f64("min", p.min);
    w.opt_f64("max", p.max);
    w.end();
}

fn enc_buckets(b: &Buckets, out: &mut String) {
    let mut w = Obj::new(out);
    w.int("offset", b.offset as i64);
    if !b.bucket_counts.is_empty() {
        w.key("bucketCounts");
        enc_u64_list(&b.bucket_counts, w.out);
    }
    w.end();
}

fn enc_exp_histogram_point(p: &ExponentialHistogramDataPoint, out: &mut String) {
    let mut w = Obj::new(out);
    w.attrs("attributes", &p.attributes);
    w.u64s("startTimeUnixNano", p.start_time_unix_nano);
    w.u64s("timeUnixNano", p.time_unix_nano);
    w.u64s("count", p.count);
    w.opt_f64("sum", p.sum);
    w.int("scale", p.scale as i64);
    w.u64s("zeroCount", p.zero_count);
    w.obj("positive", p.positive.as_ref(), enc_buckets);
    w.obj("negative", p.negative.as_ref(), enc_buckets);
    w.int("flags", p.flags as i64);
    w.list("exemplars", &p.exemplars, enc_exemplar);
    w.opt_f64("min", p.min);
    w.opt_f64("max", p.max);
    w.f64("zeroThreshold", p.zero_threshold);
    w.end();
}

fn enc_summary_point(p: &SummaryDataPoint, out: &mut String) {
    let mut w = Obj::new(out);
    w.attrs("attributes", &p.attributes);
    w.u64s("startTimeUnixNano", p.start_time_unix_nano);
    w.u64s("timeUnixNano", p.time_unix_nano);
    w.u64s("count", p.count);
    w.f64("sum", p.sum);
    w.list("quantileValues", &p.quantile_values, |q, out| {
        let mut w = Obj::new(out);
        w.f64("quantile", q.quantile);
        w.f64("value", q.value);
        w.end();
    });
    w.int("flags", p.flags as i64);
    w.end();
}

fn enc_exemplar(e: &Exemplar, out: &mut String) {
    let mut w = Obj::new(out);
    w.attrs("filteredAttributes", &e.filtered_attributes);
    w.u64s("timeUnixNano", e.time_unix_nano);
    match e.value {
        Some(exemplar::Value::AsDouble(d)) => {
            w.key("asDouble");
            write_f64(w.out, d);
        }
        Some(exemplar::Value::AsInt(i)) => {
            w.key("asInt");
            write_quoted_int(w.out, i);
        }
        None => {}
    }
    w.hex("spanId", &e.span_id);
    w.hex("traceId", &e.trace_id);
    w.end();
}

/// One `AnyValue` as OTLP/JSON (used where a nested value must fit in one text column).
pub fn encode_any_value(v: &AnyValue) -> String {
    let mut out = String::new();
    enc_any_value(v, &mut out);
    out
}

/// Parses one OTLP/JSON `AnyValue`.
pub fn decode_any_value(text: &str) -> Result<AnyValue, JsonError> {
    let value: Value = serde_json::from_str(text).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    any_value(&value)
}

/// Resource entity references as an OTLP/JSON array.
pub fn encode_entity_refs(refs: &[EntityRef]) -> String {
    let mut out = String::new();
    let r = Resource { entity_refs: refs.to_vec(), ..Default::default() };
    enc_resource(&r, &mut out);
    out
}

/// Parses what [`encode_entity_refs`] wrote.
pub fn decode_entity_refs(text: &str) -> Result<Vec<EntityRef>, JsonError> {
    let value: Value = serde_json::from_str(text).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    Ok(resource(&value)?.entity_refs)
}

/// Encodes an export response's partial success as OTLP/JSON (`{}` when nothing was rejected).
pub fn encode_partial_success(signal: Signal, rejected: i64, message: &str) -> String {
    let mut out = String::new();
    let mut w = Obj::new(&mut out);
    if rejected != 0 || !message.is_empty() {
        w.key("partialSuccess");
        let mut p = Obj::new(w.out);
        let field = match signal {
            Signal::Traces => "rejectedSpans",
            Signal::Metrics => "rejectedDataPoints",
            Signal::Logs => "rejectedLogRecords",
        };
        p.i64s(field, rejected);
        p.str("errorMessage", message);
        p.end();
    }
    w.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_scan_agrees_with_the_byte_test_at_every_position() {
        for len in 0..24 {
            for pos in 0..len {
                for b in 0u8..=255 {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    assert_eq!(any_needs_escape(&v), needs_escape(b), "len {len} pos {pos} byte {b}");
                }
            }
        }
        assert!(!any_needs_escape("héllo wörld, no escapes here".as_bytes()));
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn every_any_value() -> Vec<KeyValue> {
        use any_value::Value as V;
        vec![
            kv("s", V::StringValue("a \"quoted\"\n\u{1}é".into())),
            kv("b", V::BoolValue(true)),
            kv("i", V::IntValue(i64::MIN)),
            kv("d", V::DoubleValue(2.5)),
            kv("nan", V::DoubleValue(f64::INFINITY)),
            kv("bytes", V::BytesValue(vec![0, 1, 2, 255])),
            kv(
                "arr",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue { value: Some(V::IntValue(1)) },
                        AnyValue { value: Some(V::StringValue("x".into())) },
                    ],
                }),
            ),
            kv("kv", V::KvlistValue(KeyValueList { values: vec![kv("inner", V::DoubleValue(-0.5))] })),
            KeyValue { key: "empty".into(), value: Some(AnyValue { value: None }), ..Default::default() },
        ]
    }

    fn round_trip(batch: Batch) {
        let json = encode(&batch);
        let back = decode(batch.signal(), json.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{json}"));
        assert_eq!(back, batch, "{json}");
    }

    #[test]
    fn traces_round_trip() {
        round_trip(Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: every_any_value(),
                    dropped_attributes_count: 2,
                    entity_refs: vec![],
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: (1..=16).collect(),
                        span_id: (1..=8).collect(),
                        parent_span_id: vec![9; 8],
                        trace_state: "a=b".into(),
                        flags: 257,
                        name: "chat gpt-4o".into(),
                        kind: 3,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: u64::MAX,
                        attributes: every_any_value(),
                        events: vec![span::Event {
                            time_unix_nano: 5,
                            name: "ev".into(),
                            attributes: every_any_value(),
                            dropped_attributes_count: 1,
                        }],
                        links: vec![span::Link {
                            trace_id: vec![7; 16],
                            span_id: vec![8; 8],
                            flags: 1,
                            ..Default::default()
                        }],
                        status: Some(Status { message: "boom".into(), code: 2 }),
                        dropped_events_count: 3,
                        dropped_links_count: 4,
                        dropped_attributes_count: 5,
                    }],
                    schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
                }],
                schema_url: String::new(),
            }],
        }));
    }

    #[test]
    fn metrics_round_trip() {
        let point = NumberDataPoint {
            attributes: every_any_value(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            value: Some(number_data_point::Value::AsInt(-7)),
            exemplars: vec![Exemplar {
                filtered_attributes: vec![],
                time_unix_nano: 3,
                span_id: vec![1; 8],
                trace_id: vec![2; 16],
                value: Some(exemplar::Value::AsDouble(0.25)),
            }],
            flags: 1,
        };
        let metrics = vec![
            Metric {
                name: "g".into(),
                unit: "s".into(),
                data: Some(metric::Data::Gauge(Gauge { data_points: vec![point.clone()] })),
                ..Default::default()
            },
            Metric {
                name: "s".into(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        value: Some(number_data_point::Value::AsDouble(1e300)),
                        ..point.clone()
                    }],
                    aggregation_temporality: 1,
                    is_monotonic: true,
                })),
                ..Default::default()
            },
            Metric {
                name: "h".into(),
                description: "d".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        count: 3,
                        sum: Some(0.0),
                        bucket_counts: vec![1, 0, u64::MAX],
                        explicit_bounds: vec![0.5, 1.0],
                        min: Some(-1.0),
                        max: Some(3.0),
                        time_unix_nano: 9,
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            },
            Metric {
                name: "e".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        count: 4,
                        scale: -2,
                        zero_count: 1,
                        zero_threshold: 1e-9,
                        positive: Some(Buckets { offset: -3, bucket_counts: vec![1, 2] }),
                        negative: Some(Buckets { offset: 0, bucket_counts: vec![] }),
                        sum: Some(1.5),
                        ..Default::default()
                    }],
                    aggregation_temporality: 1,
                })),
                metadata: vec![kv("m", any_value::Value::BoolValue(false))],
                ..Default::default()
            },
            Metric {
                name: "sum".into(),
                data: Some(metric::Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        count: 2,
                        sum: 3.5,
                        quantile_values: vec![
                            ValueAtQuantile { quantile: 0.0, value: 1.0 },
                            ValueAtQuantile { quantile: 0.99, value: 2.5 },
                        ],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
            Metric { name: "nodata".into(), ..Default::default() },
        ];
        round_trip(Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: None,
                scope_metrics: vec![ScopeMetrics { scope: None, metrics, schema_url: String::new() }],
                schema_url: String::new(),
            }],
        }));
    }

    #[test]
    fn logs_round_trip_with_every_body_type() {
        let records = every_any_value()
            .into_iter()
            .map(|kv| LogRecord {
                time_unix_nano: 1,
                observed_time_unix_nano: 2,
                severity_number: 17,
                severity_text: "ERROR".into(),
                body: kv.value,
                attributes: vec![],
                dropped_attributes_count: 0,
                flags: 1,
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                event_name: "e".into(),
            })
            .collect();
        round_trip(Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: None,
                scope_logs: vec![ScopeLogs { scope: None, log_records: records, schema_url: String::new() }],
                schema_url: String::new(),
            }],
        }));
    }

    #[test]
    fn lenient_decoding_snake_case_numbers_and_enum_names() {
        let json = r#"{"resource_spans":[{"scope_spans":[{"spans":[{
            "trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174",
            "name":"x","kind":"SPAN_KIND_SERVER","start_time_unix_nano":1544712660000000000,
            "endTimeUnixNano":"1544712661000000000","status":{"code":"STATUS_CODE_ERROR"},
            "attributes":[{"key":"n","value":{"int_value":42}},{"key":"d","value":{"doubleValue":"NaN"}}],
            "unknownField":{"ignored":true}}]}]}]}"#;
        let Batch::Traces(t) = decode(Signal::Traces, json.as_bytes()).unwrap() else { panic!() };
        let span = &t.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(span.trace_id[0], 0x5b);
        assert_eq!(span.kind, 2);
        assert_eq!(span.start_time_unix_nano, 1544712660000000000);
        assert_eq!(span.end_time_unix_nano, 1544712661000000000);
        assert_eq!(span.status.as_ref().unwrap().code, 2);
        assert_eq!(span.attributes[0].value.as_ref().unwrap().value, Some(any_value::Value::IntValue(42)));
        assert!(
            matches!(span.attributes[1].value.as_ref().unwrap().value, Some(any_value::Value::DoubleValue(d)) if d.is_nan())
        );
    }

    #[test]
    fn errors_name_the_path() {
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#;
        let err = decode(Signal::Traces, json.as_bytes()).unwrap_err();
        assert_eq!(err.path(), "resourceSpans[0].scopeSpans[0].spans[0].traceId");
        assert!(err.to_string().contains("invalid hex digit"), "{err}");

        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102"}]}]}]}"#;
        let err = decode(Signal::Traces, json.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("expected 32 hex digits"), "{err}");

        let err = decode(Signal::Logs, b"{\"resourceLogs\":{}}").unwrap_err();
        assert_eq!(err.to_string(), "resourceLogs: expected an array, found an object");

        let err = decode(Signal::Metrics, b"[1,").unwrap_err();
        assert!(err.to_string().starts_with("invalid JSON"), "{err}");

        let json = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"sum":{"dataPoints":[{"asInt":"1.5"}]}}]}]}]}"#;
        let err = decode(Signal::Metrics, json.as_bytes()).unwrap_err();
        assert_eq!(err.path(), "resourceMetrics[0].scopeMetrics[0].metrics[0].sum.dataPoints[0].asInt");
    }

    #[test]
    fn partial_success_encoding() {
        assert_eq!(encode_partial_success(Signal::Traces, 0, ""), "{}");
        assert_eq!(
            encode_partial_success(Signal::Logs, 2, "bad ids"),
            r#"{"partialSuccess":{"rejectedLogRecords":"2","errorMessage":"bad ids"}}"#
        );
    }
}
