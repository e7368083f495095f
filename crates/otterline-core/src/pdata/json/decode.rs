//! OTLP/JSON → OTLP: the lenient decoder (see the module doc of `pdata::json`).

use std::fmt;

use super::value::{Map, Value};
use base64::Engine as _;

use crate::pdata::common::{any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList};
use crate::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
use crate::pdata::metrics::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use crate::pdata::resource::Resource;
use crate::pdata::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use crate::pdata::{Batch, ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest, Signal};

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A decode error with the JSON path where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonError {
    path: Vec<String>,
    message: String,
    over_limit: bool,
}

impl JsonError {
    fn new(message: impl Into<String>) -> Self {
        JsonError { path: Vec::new(), message: message.into(), over_limit: false }
    }

    /// Decoding stopped at the memory limit of [`decode_within`].
    pub fn is_over_limit(&self) -> bool {
        self.over_limit
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
    let value = super::value::parse(bytes).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    decode_value(signal, &value)
}

/// [`decode`], taking at most about `limit` bytes of memory for the parsed document and
/// the decoded request together: past it, decoding stops with an error for which
/// [`JsonError::is_over_limit`] is true.
pub fn decode_within(signal: Signal, bytes: &[u8], limit: usize) -> Result<Batch, JsonError> {
    match crate::pdata::meter::within(limit, || decode(signal, bytes)) {
        (Err(_), true) => Err(JsonError {
            path: Vec::new(),
            message: format!("{} ({} MiB)", crate::pdata::meter::EXCEEDED_MESSAGE, limit.div_ceil(1 << 20)),
            over_limit: true,
        }),
        (result, _) => result,
    }
}

/// Decodes an already parsed OTLP/JSON export request of `signal`.
fn decode_value(signal: Signal, value: &Value) -> Result<Batch, JsonError> {
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

fn obj(v: &Value) -> R<&Map> {
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
fn field<'a>(o: &'a Map, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel).or_else(|| if camel != snake { o.get(snake) } else { None }).filter(|v| !v.is_null())
}

fn list<T>(o: &Map, camel: &str, snake: &str, f: impl Fn(&Value) -> R<T>) -> R<Vec<T>> {
    match field(o, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            if !crate::pdata::meter::charge_vec::<T>(items.len()) {
                return Err(JsonError::new(crate::pdata::meter::EXCEEDED_MESSAGE).at(camel));
            }
            items.iter().enumerate().map(|(i, v)| f(v).at_index(i)).collect::<R<Vec<T>>>().at(camel)
        }
        Some(other) => Err(JsonError::new(format!("expected an array, found {}", kind(other))).at(camel)),
    }
}

fn opt<T>(o: &Map, camel: &str, snake: &str, f: impl Fn(&Value) -> R<T>) -> R<Option<T>> {
    match field(o, camel, snake) {
        None => Ok(None),
        Some(v) => f(v).map(Some).at(camel),
    }
}

fn string(o: &Map, camel: &str, snake: &str) -> R<String> {
    match field(o, camel, snake) {
        None => Ok(String::new()),
        Some(Value::String(s)) => copy(s).at(camel),
        Some(other) => Err(JsonError::new(format!("expected a string, found {}", kind(other))).at(camel)),
    }
}

/// A copy of a string of the document, counted ([`crate::pdata::meter`]).
fn copy(s: &str) -> R<String> {
    if crate::pdata::meter::charge_bytes(s.len()) {
        Ok(s.to_owned())
    } else {
        Err(JsonError::new(crate::pdata::meter::EXCEEDED_MESSAGE))
    }
}

fn boolean(o: &Map, camel: &str, snake: &str) -> R<bool> {
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

fn u64_field(o: &Map, camel: &str, snake: &str) -> R<u64> {
    field(o, camel, snake).map_or(Ok(0), |v| parse_u64(v).at(camel))
}

fn i64_field(o: &Map, camel: &str, snake: &str) -> R<i64> {
    field(o, camel, snake).map_or(Ok(0), |v| parse_i64(v).at(camel))
}

fn u32_field(o: &Map, camel: &str, snake: &str) -> R<u32> {
    let v = u64_field(o, camel, snake)?;
    u32::try_from(v).map_err(|_| JsonError::new(format!("{v} does not fit in 32 bits")).at(camel))
}

fn i32_field(o: &Map, camel: &str, snake: &str) -> R<i32> {
    let v = i64_field(o, camel, snake)?;
    i32::try_from(v).map_err(|_| JsonError::new(format!("{v} does not fit in 32 bits")).at(camel))
}

fn f64_field(o: &Map, camel: &str, snake: &str) -> R<f64> {
    field(o, camel, snake).map_or(Ok(0.0), |v| parse_f64(v).at(camel))
}

fn opt_f64_field(o: &Map, camel: &str, snake: &str) -> R<Option<f64>> {
    opt(o, camel, snake, parse_f64)
}

/// An enum given as an integer or by its name (`names[i]` is the name of value `i`).
fn enum_field(o: &Map, camel: &str, snake: &str, names: &[&str]) -> R<i32> {
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

fn hex_id(o: &Map, camel: &str, snake: &str, len: usize) -> R<Vec<u8>> {
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
            Value::String(s) => Some(V::StringValue(copy(s).at("stringValue")?)),
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

fn u64_list(o: &Map, camel: &str, snake: &str) -> R<Vec<u64>> {
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

/// Parses one OTLP/JSON `AnyValue`.
pub fn decode_any_value(text: &str) -> Result<AnyValue, JsonError> {
    let value = super::value::parse(text.as_bytes()).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    any_value(&value)
}

/// Parses what [`super::encode_entity_refs`] wrote.
pub fn decode_entity_refs(text: &str) -> Result<Vec<EntityRef>, JsonError> {
    let value = super::value::parse(text.as_bytes()).map_err(|e| JsonError::new(format!("invalid JSON: {e}")))?;
    Ok(resource(&value)?.entity_refs)
}
