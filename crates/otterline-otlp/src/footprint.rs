//! What decoding an OTLP protobuf request will allocate, read from its bytes before it is
//! decoded.
//!
//! The body size says little about the decoded size: two bytes (`12 00`, an empty span)
//! become a `Span` of a few hundred bytes, `0a 00` inside an array a 32-byte `AnyValue`.
//! [`protobuf`] walks a request's fields with a table of the OTLP messages (which fields
//! are nested messages, strings, repeated scalars), skipping payloads, and adds up what
//! the decoders allocate for them: one element per repeated message (twice its size,
//! for the growth of a vector filled one element at a time), the bytes of every string,
//! eight bytes per repeated number, and an allocator's overhead per allocation. The
//! receivers use it for the unusual requests only (`budget::decode_protobuf`): those that
//! Otterline's metered decoder could not decode within their first share, or that need
//! prost. They grow the request's share to this figure before decoding, and refuse a
//! request that would need more than the whole budget. (Measuring every request first cost
//! a third of the receiver's CPU.)
//!
//! The walk accepts what prost accepts (unknown fields of every wire type, groups) and,
//! where the input is malformed, returns what it counted up to that point: prost stops
//! there too, so it cannot allocate more than was counted.

use std::mem::size_of;

use otterline_core::pdata::{common, logs, metrics, trace};
use otterline_core::Signal;

/// Deepest message nesting walked; prost refuses requests nested deeper than 100.
const MAX_DEPTH: usize = 100;
/// What an allocator adds to each allocation (header and rounding), roughly.
const ALLOC_OVERHEAD: usize = 16;

/// The OTLP messages, by what their fields hold.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum M {
    TracesRequest,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    LogsRequest,
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    MetricsRequest,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// Gauge, Sum, Histogram, ExponentialHistogram and Summary: field 1 is their points.
    NumberPoints,
    HistogramPoints,
    ExpHistogramPoints,
    SummaryPoints,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    /// ArrayValue and KeyValueList.
    Values,
    KeyValues,
}

/// What a field holds, as far as allocation goes.
#[derive(Clone, Copy)]
enum F {
    /// A nested message; repeated ones allocate an element each.
    Msg(M, bool),
    /// A string or bytes field (repeated ones also an element each).
    Bytes(bool),
    /// A repeated number, packed or not: eight bytes per value.
    Numbers,
}

const fn one(m: M) -> Option<F> {
    Some(F::Msg(m, false))
}
const fn many(m: M) -> Option<F> {
    Some(F::Msg(m, true))
}
const BYTES: Option<F> = Some(F::Bytes(false));

/// The allocating fields of each message; every other field is a scalar (or unknown).
fn field(m: M, tag: u32) -> Option<F> {
    use M::*;
    match (m, tag) {
        (TracesRequest, 1) => many(ResourceSpans),
        (ResourceSpans, 1) | (ResourceLogs, 1) | (ResourceMetrics, 1) => one(Resource),
        (ResourceSpans, 2) => many(ScopeSpans),
        (ScopeSpans, 1) | (ScopeLogs, 1) | (ScopeMetrics, 1) => one(Scope),
        (ScopeSpans, 2) => many(Span),
        (ResourceSpans | ScopeSpans | ResourceLogs | ScopeLogs | ResourceMetrics | ScopeMetrics, 3) => BYTES,
        (Span, 1..=5) => BYTES,
        (Span, 9) => many(KeyValue),
        (Span, 11) => many(Event),
        (Span, 13) => many(Link),
        (Span, 15) => one(Status),
        (Event, 2) => BYTES,
        (Event, 3) => many(KeyValue),
        (Link, 1..=3) => BYTES,
        (Link, 4) => many(KeyValue),
        (Status, 2) => BYTES,
        (LogsRequest, 1) => many(ResourceLogs),
        (ResourceLogs, 2) => many(ScopeLogs),
        (ScopeLogs, 2) => many(LogRecord),
        (LogRecord, 3 | 9 | 10 | 12) => BYTES,
        (LogRecord, 5) => one(AnyValue),
        (LogRecord, 6) => many(KeyValue),
        (MetricsRequest, 1) => many(ResourceMetrics),
        (ResourceMetrics, 2) => many(ScopeMetrics),
        (ScopeMetrics, 2) => many(Metric),
        (Metric, 1..=3) => BYTES,
        (Metric, 5 | 7) => one(NumberPoints),
        (Metric, 9) => one(HistogramPoints),
        (Metric, 10) => one(ExpHistogramPoints),
        (Metric, 11) => one(SummaryPoints),
        (Metric, 12) => many(KeyValue),
        (NumberPoints, 1) => many(NumberPoint),
        (HistogramPoints, 1) => many(HistogramPoint),
        (ExpHistogramPoints, 1) => many(ExpHistogramPoint),
        (SummaryPoints, 1) => many(SummaryPoint),
        (NumberPoint, 7) | (HistogramPoint, 9) | (ExpHistogramPoint, 1) | (SummaryPoint, 7) => many(KeyValue),
        (NumberPoint, 5) | (HistogramPoint, 8) | (ExpHistogramPoint, 11) => many(Exemplar),
        (HistogramPoint, 6 | 7) | (Buckets, 2) => Some(F::Numbers),
        (ExpHistogramPoint, 8 | 9) => one(Buckets),
        (SummaryPoint, 6) => many(Quantile),
        (Exemplar, 7) => many(KeyValue),
        (Exemplar, 4 | 5) => BYTES,
        (Resource, 1) | (Scope, 3) => many(KeyValue),
        (Resource, 3) => many(EntityRef),
        (Scope, 1 | 2) | (EntityRef, 1 | 2) => BYTES,
        (EntityRef, 3 | 4) => Some(F::Bytes(true)),
        (KeyValue, 1) => BYTES,
        (KeyValue, 2) => one(AnyValue),
        (AnyValue, 1 | 7) => BYTES,
        (AnyValue, 5) => one(Values),
        (AnyValue, 6) => one(KeyValues),
        (Values, 1) => many(AnyValue),
        (KeyValues, 1) => many(KeyValue),
        _ => None,
    }
}

/// The size of one element of a repeated field of message `m`.
fn element_size(m: M) -> usize {
    use M::*;
    match m {
        ResourceSpans => size_of::<trace::ResourceSpans>(),
        ScopeSpans => size_of::<trace::ScopeSpans>(),
        Span => size_of::<trace::Span>(),
        Event => size_of::<trace::span::Event>(),
        Link => size_of::<trace::span::Link>(),
        ResourceLogs => size_of::<logs::ResourceLogs>(),
        ScopeLogs => size_of::<logs::ScopeLogs>(),
        LogRecord => size_of::<logs::LogRecord>(),
        ResourceMetrics => size_of::<metrics::ResourceMetrics>(),
        ScopeMetrics => size_of::<metrics::ScopeMetrics>(),
        Metric => size_of::<metrics::Metric>(),
        NumberPoint => size_of::<metrics::NumberDataPoint>(),
        HistogramPoint => size_of::<metrics::HistogramDataPoint>(),
        ExpHistogramPoint => size_of::<metrics::ExponentialHistogramDataPoint>(),
        SummaryPoint => size_of::<metrics::SummaryDataPoint>(),
        Quantile => size_of::<metrics::summary_data_point::ValueAtQuantile>(),
        Exemplar => size_of::<metrics::Exemplar>(),
        EntityRef => size_of::<common::EntityRef>(),
        KeyValue => size_of::<common::KeyValue>(),
        AnyValue => size_of::<common::AnyValue>(),
        // Never repeated.
        TracesRequest | Status | LogsRequest | MetricsRequest | NumberPoints | HistogramPoints | ExpHistogramPoints
        | SummaryPoints | Buckets | Resource | Scope | Values | KeyValues => 0,
    }
}

/// Bytes that decoding a protobuf export request of `signal` allocates, the request's own
/// bytes included (see the module docs).
pub fn protobuf(signal: Signal, body: &[u8]) -> usize {
    let root = match signal {
        Signal::Traces => M::TracesRequest,
        Signal::Metrics => M::MetricsRequest,
        Signal::Logs => M::LogsRequest,
    };
    body.len() + walk(root, body)
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const START_GROUP: u64 = 3;
const END_GROUP: u64 = 4;
const FIXED32: u64 = 5;

fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let x = *b.get(*pos)?;
        *pos += 1;
        v |= ((x & 0x7f) as u64) << (7 * i);
        if x < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The walk: an explicit stack of (message, end of its body), so depth costs no stack.
fn walk(root: M, b: &[u8]) -> usize {
    let mut total = 0usize;
    let mut stack: Vec<(M, usize)> = vec![(root, b.len())];
    let mut pos = 0usize;
    // Open groups of unknown fields being skipped.
    let mut groups = 0usize;
    while let Some(&(m, end)) = stack.last() {
        if pos >= end {
            stack.pop();
            continue;
        }
        let Some(key) = varint(b, &mut pos) else { break };
        let (tag, wt) = ((key >> 3) as u32, key & 7);
        // Inside a skipped group every field is unknown.
        let f = if groups == 0 { field(m, tag) } else { None };
        match wt {
            VARINT => {
                if varint(b, &mut pos).is_none() {
                    break;
                }
                if let Some(F::Numbers) = f {
                    total += 8;
                }
            }
            FIXED64 | FIXED32 => {
                pos += if wt == FIXED64 { 8 } else { 4 };
                if let Some(F::Numbers) = f {
                    total += 8;
                }
            }
            LEN => {
                let Some(len) = varint(b, &mut pos) else { break };
                let Some(body_end) = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) else { break };
                if body_end > end {
                    break;
                }
                match f {
                    Some(F::Msg(child, repeated)) => {
                        if repeated {
                            total += 2 * element_size(child);
                        }
                        if stack.len() < MAX_DEPTH {
                            stack.push((child, body_end));
                            continue;
                        }
                    }
                    Some(F::Bytes(repeated)) if len > 0 || repeated => {
                        total += len as usize + ALLOC_OVERHEAD + if repeated { 2 * size_of::<String>() } else { 0 };
                    }
                    // Packed numbers: at most one value per byte.
                    Some(F::Numbers) => total += 8 * len as usize + ALLOC_OVERHEAD,
                    _ => {}
                }
                pos = body_end;
            }
            START_GROUP => groups += 1,
            END_GROUP if groups > 0 => groups -= 1,
            // An invalid wire type: prost stops here.
            _ => break,
        }
        if pos > end {
            break;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::common::{any_value, AnyValue, ArrayValue, KeyValue};
    use otterline_core::pdata::trace::{ResourceSpans, ScopeSpans, Span};
    use otterline_core::pdata::ExportTraceServiceRequest;
    use prost::Message;

    fn ld(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn empty_spans_count_their_decoded_size_not_their_two_bytes() {
        let spans: Vec<u8> = [0x12, 0x00].repeat(1000);
        let body = ld(0x0a, &ld(0x12, &spans));
        let n = protobuf(Signal::Traces, &body);
        assert!(n >= body.len() + 1000 * size_of::<Span>(), "{n}");
        assert!(n < body.len() + 3000 * size_of::<Span>(), "{n}");
    }

    #[test]
    fn an_ordinary_request_counts_its_strings_and_attributes() {
        let kv = |k: &str, v: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
            ..Default::default()
        };
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "chat gpt-4o".into(),
            attributes: (0..10).map(|i| kv(&format!("key.{i}"), "some value")).collect(),
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans { spans: vec![span; 100], ..Default::default() }],
                ..Default::default()
            }],
        };
        let body = req.encode_to_vec();
        let n = protobuf(Signal::Traces, &body);
        let at_least = 100 * (size_of::<Span>() + 10 * (size_of::<KeyValue>() + 15));
        assert!(n > at_least, "{n} vs {at_least}");
        // An ordinary request decodes to a few times its size, not to the worst case.
        assert!(n < 12 * body.len(), "{n} for {} bytes", body.len());
    }

    #[test]
    fn nested_values_unknown_fields_and_groups_are_walked_like_prost_reads_them() {
        let empty_values: Vec<u8> = [0x0a, 0x00].repeat(500);
        let array = AnyValue { value: Some(any_value::Value::ArrayValue(ArrayValue::default())) };
        let mut kv_bytes = KeyValue { key: "k".into(), value: Some(array), ..Default::default() }.encode_to_vec();
        // The array's values (field 5 of the AnyValue, field 1 of ArrayValue).
        kv_bytes.truncate(3);
        let any = ld(0x2a, &empty_values);
        let kv = [kv_bytes, ld(0x12, &any)].concat();
        // An unknown group and an unknown varint before the span's attribute.
        let span = [vec![0xfb, 0x01, 0x08, 0x01, 0xfc, 0x01, 0xf8, 0x01, 0x05], ld(0x4a, &kv)].concat();
        let body = ld(0x0a, &ld(0x12, &ld(0x12, &span)));
        assert!(ExportTraceServiceRequest::decode(&body[..]).is_ok());
        let n = protobuf(Signal::Traces, &body);
        assert!(n >= 500 * size_of::<AnyValue>(), "{n}");
    }

    #[test]
    fn malformed_input_counts_what_came_before_it() {
        // 99 empty spans, then one with an invalid wire type: prost decodes the 99 first.
        let spans = [[0x12, 0x00].repeat(99), vec![0x12, 0x01, 0x0f]].concat();
        let body = ld(0x0a, &ld(0x12, &spans));
        assert!(ExportTraceServiceRequest::decode(&body[..]).is_err());
        let n = protobuf(Signal::Traces, &body);
        assert!(n >= 99 * size_of::<Span>(), "{n}");
        // A length past the end: prost refuses before decoding anything inside.
        let mut cut = ld(0x0a, &ld(0x12, &[0x12, 0x00].repeat(99)));
        cut.pop();
        assert!(protobuf(Signal::Traces, &cut) < 2 * cut.len());
    }
}
