//! OTLP → OTLP/JSON: the encoder, writing straight into a `String`.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::pdata::common::{any_value, AnyValue, EntityRef, InstrumentationScope, KeyValue};
use crate::pdata::logs::{LogRecord, ResourceLogs};
use crate::pdata::metrics::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point, Exemplar,
    ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, SummaryDataPoint,
};
use crate::pdata::resource::Resource;
use crate::pdata::trace::{ResourceSpans, Span};
use crate::pdata::{Batch, Signal};

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

pub(super) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Whether any byte of `s` needs escaping, eight bytes at a time: a byte below 0x20, a
/// quote or a backslash (the classic "has a zero / has a byte less than" word tricks,
/// exact as a yes/no answer).
pub(super) fn any_needs_escape(s: &[u8]) -> bool {
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

/// Resource entity references as an OTLP/JSON array.
pub fn encode_entity_refs(refs: &[EntityRef]) -> String {
    let mut out = String::new();
    let r = Resource { entity_refs: refs.to_vec(), ..Default::default() };
    enc_resource(&r, &mut out);
    out
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
