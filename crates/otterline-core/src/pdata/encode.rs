//! OTLP protobuf encoding of trace and log requests, each message's size computed once.
//!
//! A length-delimited message is written after its length, so an encoder must know every
//! nested message's size before writing it. prost computes it on the spot, recursively, for
//! every message it writes, and again for each message inside it: an attribute value six
//! levels deep is measured six times, and `encoded_len` before `encode` measures everything
//! once more. On the archive's write-ahead log that was a third of the writer's CPU.
//! [`Encoder::prepare`] measures a request once, storing each message's size in pre-order
//! (the order the write visits them), and [`Encoder::write`] writes it reading those sizes
//! back. The bytes are exactly prost's (fields in tag order, proto3 defaults left out,
//! `oneof` values always written); the tests compare both. Metrics requests go to prost.

use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;

use super::common::{any_value, AnyValue, EntityRef, InstrumentationScope, KeyValue};
use super::logs::{LogRecord, ResourceLogs, ScopeLogs};
use super::resource::Resource;
use super::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use super::Batch;

/// Encodes batches; keeps its size table between batches (no allocation once warm).
#[derive(Default)]
pub struct Encoder {
    sizes: Vec<u32>,
    at: usize,
}

fn key_len(tag: u32) -> usize {
    encoded_len_varint(u64::from(tag << 3))
}

/// A length-delimited field of `len` bytes.
fn ld_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn bytes_len(tag: u32, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        ld_len(tag, b.len())
    }
}

fn varint_field_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(v)
    }
}

/// An `int32` (or enum) field: negative values take ten bytes, as in protobuf.
fn int32_len(tag: u32, v: i32) -> usize {
    varint_field_len(tag, v as i64 as u64)
}

fn fixed64_len(tag: u32, v: u64) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + 8
    }
}

fn fixed32_len(tag: u32, v: u32) -> usize {
    if v == 0 {
        0
    } else {
        key_len(tag) + 4
    }
}

fn put_bytes(tag: u32, b: &[u8], out: &mut Vec<u8>) {
    if !b.is_empty() {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
}

fn put_varint(tag: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, out);
        encode_varint(v, out);
    }
}

fn put_int32(tag: u32, v: i32, out: &mut Vec<u8>) {
    put_varint(tag, v as i64 as u64, out);
}

fn put_fixed64(tag: u32, v: u64, out: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::SixtyFourBit, out);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn put_fixed32(tag: u32, v: u32, out: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::ThirtyTwoBit, out);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Measures `batch`: the number of bytes [`Encoder::write`] will write for it. Call
    /// `write` next, with the same, unchanged batch.
    pub fn prepare(&mut self, batch: &Batch) -> usize {
        self.sizes.clear();
        self.at = 0;
        match batch {
            Batch::Traces(r) => r.resource_spans.iter().map(|rs| ld_len(1, self.resource_spans(rs))).sum(),
            Batch::Logs(r) => r.resource_logs.iter().map(|rl| ld_len(1, self.resource_logs(rl))).sum(),
            Batch::Metrics(r) => r.encoded_len(),
        }
    }

    /// Appends the protobuf encoding of `batch`, measured by the last [`Encoder::prepare`].
    pub fn write(&mut self, batch: &Batch, out: &mut Vec<u8>) {
        self.at = 0;
        match batch {
            Batch::Traces(r) => {
                for rs in &r.resource_spans {
                    self.head(1, out);
                    self.put_resource_spans(rs, out);
                }
            }
            Batch::Logs(r) => {
                for rl in &r.resource_logs {
                    self.head(1, out);
                    self.put_resource_logs(rl, out);
                }
            }
            // A Vec grows as needed: encoding into it cannot fail.
            Batch::Metrics(r) => {
                let _ = r.encode(out);
            }
        }
    }

    /// Appends the protobuf encoding of `batch`; returns its length.
    pub fn encode(&mut self, batch: &Batch, out: &mut Vec<u8>) -> usize {
        let n = self.prepare(batch);
        out.reserve(n);
        self.write(batch, out);
        n
    }

    // --- sizes (pre-order: a message's slot before its children's) ---

    fn slot(&mut self) -> usize {
        self.sizes.push(0);
        self.sizes.len() - 1
    }

    fn set(&mut self, slot: usize, n: usize) -> usize {
        // Messages are far below 4 GiB (receivers refuse larger requests).
        self.sizes[slot] = n as u32;
        n
    }

    fn resource_spans(&mut self, rs: &ResourceSpans) -> usize {
        let s = self.slot();
        let mut n = 0;
        if let Some(r) = &rs.resource {
            n += ld_len(1, self.resource(r));
        }
        for ss in &rs.scope_spans {
            n += ld_len(2, self.scope_spans(ss));
        }
        n += bytes_len(3, rs.schema_url.as_bytes());
        self.set(s, n)
    }

    fn scope_spans(&mut self, ss: &ScopeSpans) -> usize {
        let s = self.slot();
        let mut n = 0;
        if let Some(sc) = &ss.scope {
            n += ld_len(1, self.scope(sc));
        }
        for sp in &ss.spans {
            n += ld_len(2, self.span(sp));
        }
        n += bytes_len(3, ss.schema_url.as_bytes());
        self.set(s, n)
    }

    fn span(&mut self, sp: &Span) -> usize {
        let s = self.slot();
        let mut n = bytes_len(1, &sp.trace_id)
            + bytes_len(2, &sp.span_id)
            + bytes_len(3, sp.trace_state.as_bytes())
            + bytes_len(4, &sp.parent_span_id)
            + fixed32_len(16, sp.flags)
            + bytes_len(5, sp.name.as_bytes())
            + int32_len(6, sp.kind)
            + fixed64_len(7, sp.start_time_unix_nano)
            + fixed64_len(8, sp.end_time_unix_nano);
        n += self.key_values(9, &sp.attributes);
        n += varint_field_len(10, sp.dropped_attributes_count.into());
        for e in &sp.events {
            n += ld_len(11, self.event(e));
        }
        n += varint_field_len(12, sp.dropped_events_count.into());
        for l in &sp.links {
            n += ld_len(13, self.link(l));
        }
        n += varint_field_len(14, sp.dropped_links_count.into());
        if let Some(st) = &sp.status {
            n += ld_len(15, self.status(st));
        }
        self.set(s, n)
    }

    fn event(&mut self, e: &span::Event) -> usize {
        let s = self.slot();
        let mut n = fixed64_len(1, e.time_unix_nano) + bytes_len(2, e.name.as_bytes());
        n += self.key_values(3, &e.attributes);
        n += varint_field_len(4, e.dropped_attributes_count.into());
        self.set(s, n)
    }

    fn link(&mut self, l: &span::Link) -> usize {
        let s = self.slot();
        let mut n = bytes_len(1, &l.trace_id) + bytes_len(2, &l.span_id) + bytes_len(3, l.trace_state.as_bytes());
        n += self.key_values(4, &l.attributes);
        n += varint_field_len(5, l.dropped_attributes_count.into()) + fixed32_len(6, l.flags);
        self.set(s, n)
    }

    fn status(&mut self, st: &Status) -> usize {
        let s = self.slot();
        let n = bytes_len(2, st.message.as_bytes()) + int32_len(3, st.code);
        self.set(s, n)
    }

    fn resource_logs(&mut self, rl: &ResourceLogs) -> usize {
        let s = self.slot();
        let mut n = 0;
        if let Some(r) = &rl.resource {
            n += ld_len(1, self.resource(r));
        }
        for sl in &rl.scope_logs {
            n += ld_len(2, self.scope_logs(sl));
        }
        n += bytes_len(3, rl.schema_url.as_bytes());
        self.set(s, n)
    }

    fn scope_logs(&mut self, sl: &ScopeLogs) -> usize {
        let s = self.slot();
        let mut n = 0;
        if let Some(sc) = &sl.scope {
            n += ld_len(1, self.scope(sc));
        }
        for lr in &sl.log_records {
            n += ld_len(2, self.log_record(lr));
        }
        n += bytes_len(3, sl.schema_url.as_bytes());
        self.set(s, n)
    }

    fn log_record(&mut self, lr: &LogRecord) -> usize {
        let s = self.slot();
        let mut n = fixed64_len(1, lr.time_unix_nano)
            + fixed64_len(11, lr.observed_time_unix_nano)
            + int32_len(2, lr.severity_number)
            + bytes_len(3, lr.severity_text.as_bytes());
        if let Some(b) = &lr.body {
            n += ld_len(5, self.any_value(b));
        }
        n += self.key_values(6, &lr.attributes);
        n += varint_field_len(7, lr.dropped_attributes_count.into())
            + fixed32_len(8, lr.flags)
            + bytes_len(9, &lr.trace_id)
            + bytes_len(10, &lr.span_id)
            + bytes_len(12, lr.event_name.as_bytes());
        self.set(s, n)
    }

    fn resource(&mut self, r: &Resource) -> usize {
        let s = self.slot();
        let mut n = self.key_values(1, &r.attributes);
        n += varint_field_len(2, r.dropped_attributes_count.into());
        for e in &r.entity_refs {
            n += ld_len(3, self.entity_ref(e));
        }
        self.set(s, n)
    }

    fn entity_ref(&mut self, e: &EntityRef) -> usize {
        let s = self.slot();
        let mut n = bytes_len(1, e.schema_url.as_bytes()) + bytes_len(2, e.r#type.as_bytes());
        // Repeated strings are written even when empty.
        n += e.id_keys.iter().map(|k| ld_len(3, k.len())).sum::<usize>();
        n += e.description_keys.iter().map(|k| ld_len(4, k.len())).sum::<usize>();
        self.set(s, n)
    }

    fn scope(&mut self, sc: &InstrumentationScope) -> usize {
        let s = self.slot();
        let mut n = bytes_len(1, sc.name.as_bytes()) + bytes_len(2, sc.version.as_bytes());
        n += self.key_values(3, &sc.attributes);
        n += varint_field_len(4, sc.dropped_attributes_count.into());
        self.set(s, n)
    }

    fn key_values(&mut self, tag: u32, kvs: &[KeyValue]) -> usize {
        kvs.iter().map(|kv| ld_len(tag, self.key_value(kv))).sum()
    }

    fn key_value(&mut self, kv: &KeyValue) -> usize {
        let s = self.slot();
        let mut n = bytes_len(1, kv.key.as_bytes());
        if let Some(v) = &kv.value {
            n += ld_len(2, self.any_value(v));
        }
        n += int32_len(3, kv.key_strindex);
        self.set(s, n)
    }

    fn any_value(&mut self, v: &AnyValue) -> usize {
        use any_value::Value as V;
        let s = self.slot();
        let n = match &v.value {
            None => 0,
            Some(V::StringValue(x)) => ld_len(1, x.len()),
            Some(V::BoolValue(b)) => key_len(2) + encoded_len_varint(u64::from(*b)),
            Some(V::IntValue(i)) => key_len(3) + encoded_len_varint(*i as u64),
            Some(V::DoubleValue(_)) => key_len(4) + 8,
            Some(V::ArrayValue(a)) => {
                let s2 = self.slot();
                let inner: usize = a.values.iter().map(|x| ld_len(1, self.any_value(x))).sum();
                ld_len(5, self.set(s2, inner))
            }
            Some(V::KvlistValue(l)) => {
                let s2 = self.slot();
                let inner = self.key_values(1, &l.values);
                ld_len(6, self.set(s2, inner))
            }
            Some(V::BytesValue(b)) => ld_len(7, b.len()),
            Some(V::StringValueStrindex(i)) => key_len(8) + encoded_len_varint(*i as i64 as u64),
        };
        self.set(s, n)
    }

    // --- writing (reads the sizes back in the same order) ---

    /// Writes the key and length of the next nested message.
    fn head(&mut self, tag: u32, out: &mut Vec<u8>) {
        encode_key(tag, WireType::LengthDelimited, out);
        encode_varint(u64::from(self.sizes[self.at]), out);
        self.at += 1;
    }

    fn put_resource_spans(&mut self, rs: &ResourceSpans, out: &mut Vec<u8>) {
        if let Some(r) = &rs.resource {
            self.head(1, out);
            self.put_resource(r, out);
        }
        for ss in &rs.scope_spans {
            self.head(2, out);
            self.put_scope_spans(ss, out);
        }
        put_bytes(3, rs.schema_url.as_bytes(), out);
    }

    fn put_scope_spans(&mut self, ss: &ScopeSpans, out: &mut Vec<u8>) {
        if let Some(sc) = &ss.scope {
            self.head(1, out);
            self.put_scope(sc, out);
        }
        for sp in &ss.spans {
            self.head(2, out);
            self.put_span(sp, out);
        }
        put_bytes(3, ss.schema_url.as_bytes(), out);
    }

    fn put_span(&mut self, sp: &Span, out: &mut Vec<u8>) {
        put_bytes(1, &sp.trace_id, out);
        put_bytes(2, &sp.span_id, out);
        put_bytes(3, sp.trace_state.as_bytes(), out);
        put_bytes(4, &sp.parent_span_id, out);
        put_bytes(5, sp.name.as_bytes(), out);
        put_int32(6, sp.kind, out);
        put_fixed64(7, sp.start_time_unix_nano, out);
        put_fixed64(8, sp.end_time_unix_nano, out);
        self.put_key_values(9, &sp.attributes, out);
        put_varint(10, sp.dropped_attributes_count.into(), out);
        for e in &sp.events {
            self.head(11, out);
            put_fixed64(1, e.time_unix_nano, out);
            put_bytes(2, e.name.as_bytes(), out);
            self.put_key_values(3, &e.attributes, out);
            put_varint(4, e.dropped_attributes_count.into(), out);
        }
        put_varint(12, sp.dropped_events_count.into(), out);
        for l in &sp.links {
            self.head(13, out);
            put_bytes(1, &l.trace_id, out);
            put_bytes(2, &l.span_id, out);
            put_bytes(3, l.trace_state.as_bytes(), out);
            self.put_key_values(4, &l.attributes, out);
            put_varint(5, l.dropped_attributes_count.into(), out);
            put_fixed32(6, l.flags, out);
        }
        put_varint(14, sp.dropped_links_count.into(), out);
        if let Some(st) = &sp.status {
            self.head(15, out);
            put_bytes(2, st.message.as_bytes(), out);
            put_int32(3, st.code, out);
        }
        put_fixed32(16, sp.flags, out);
    }

    fn put_resource_logs(&mut self, rl: &ResourceLogs, out: &mut Vec<u8>) {
        if let Some(r) = &rl.resource {
            self.head(1, out);
            self.put_resource(r, out);
        }
        for sl in &rl.scope_logs {
            self.head(2, out);
            self.put_scope_logs(sl, out);
        }
        put_bytes(3, rl.schema_url.as_bytes(), out);
    }

    fn put_scope_logs(&mut self, sl: &ScopeLogs, out: &mut Vec<u8>) {
        if let Some(sc) = &sl.scope {
            self.head(1, out);
            self.put_scope(sc, out);
        }
        for lr in &sl.log_records {
            self.head(2, out);
            self.put_log_record(lr, out);
        }
        put_bytes(3, sl.schema_url.as_bytes(), out);
    }

    fn put_log_record(&mut self, lr: &LogRecord, out: &mut Vec<u8>) {
        put_fixed64(1, lr.time_unix_nano, out);
        put_int32(2, lr.severity_number, out);
        put_bytes(3, lr.severity_text.as_bytes(), out);
        if let Some(b) = &lr.body {
            self.head(5, out);
            self.put_any_value(b, out);
        }
        self.put_key_values(6, &lr.attributes, out);
        put_varint(7, lr.dropped_attributes_count.into(), out);
        put_fixed32(8, lr.flags, out);
        put_bytes(9, &lr.trace_id, out);
        put_bytes(10, &lr.span_id, out);
        put_fixed64(11, lr.observed_time_unix_nano, out);
        put_bytes(12, lr.event_name.as_bytes(), out);
    }

    fn put_resource(&mut self, r: &Resource, out: &mut Vec<u8>) {
        self.put_key_values(1, &r.attributes, out);
        put_varint(2, r.dropped_attributes_count.into(), out);
        for e in &r.entity_refs {
            self.head(3, out);
            put_bytes(1, e.schema_url.as_bytes(), out);
            put_bytes(2, e.r#type.as_bytes(), out);
            for k in &e.id_keys {
                put_string_always(3, k, out);
            }
            for k in &e.description_keys {
                put_string_always(4, k, out);
            }
        }
    }

    fn put_scope(&mut self, sc: &InstrumentationScope, out: &mut Vec<u8>) {
        put_bytes(1, sc.name.as_bytes(), out);
        put_bytes(2, sc.version.as_bytes(), out);
        self.put_key_values(3, &sc.attributes, out);
        put_varint(4, sc.dropped_attributes_count.into(), out);
    }

    fn put_key_values(&mut self, tag: u32, kvs: &[KeyValue], out: &mut Vec<u8>) {
        for kv in kvs {
            self.head(tag, out);
            put_bytes(1, kv.key.as_bytes(), out);
            if let Some(v) = &kv.value {
                self.head(2, out);
                self.put_any_value(v, out);
            }
            put_int32(3, kv.key_strindex, out);
        }
    }

    fn put_any_value(&mut self, v: &AnyValue, out: &mut Vec<u8>) {
        use any_value::Value as V;
        match &v.value {
            None => {}
            Some(V::StringValue(x)) => put_string_always(1, x, out),
            Some(V::BoolValue(b)) => {
                encode_key(2, WireType::Varint, out);
                encode_varint(u64::from(*b), out);
            }
            Some(V::IntValue(i)) => {
                encode_key(3, WireType::Varint, out);
                encode_varint(*i as u64, out);
            }
            Some(V::DoubleValue(d)) => {
                encode_key(4, WireType::SixtyFourBit, out);
                out.extend_from_slice(&d.to_le_bytes());
            }
            Some(V::ArrayValue(a)) => {
                self.head(5, out);
                for x in &a.values {
                    self.head(1, out);
                    self.put_any_value(x, out);
                }
            }
            Some(V::KvlistValue(l)) => {
                self.head(6, out);
                self.put_key_values(1, &l.values, out);
            }
            Some(V::BytesValue(b)) => {
                encode_key(7, WireType::LengthDelimited, out);
                encode_varint(b.len() as u64, out);
                out.extend_from_slice(b);
            }
            Some(V::StringValueStrindex(i)) => {
                encode_key(8, WireType::Varint, out);
                encode_varint(*i as i64 as u64, out);
            }
        }
    }
}

/// A string written even when empty (a `oneof` member or a repeated field).
fn put_string_always(tag: u32, s: &str, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::common::{ArrayValue, KeyValueList};
    use crate::pdata::{ExportLogsServiceRequest, ExportTraceServiceRequest};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn every_value() -> Vec<KeyValue> {
        use any_value::Value as V;
        vec![
            kv("s", V::StringValue("text".into())),
            kv("empty", V::StringValue(String::new())),
            kv("b", V::BoolValue(false)),
            kv("i", V::IntValue(-3)),
            kv("zero", V::IntValue(0)),
            kv("d", V::DoubleValue(0.0)),
            kv("bytes", V::BytesValue(vec![])),
            kv("idx", V::StringValueStrindex(-1)),
            kv(
                "a",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue { value: Some(V::IntValue(1)) },
                        AnyValue::default(),
                        AnyValue {
                            value: Some(V::KvlistValue(KeyValueList {
                                values: vec![kv("deep", V::DoubleValue(f64::NAN)), KeyValue::default()],
                            })),
                        },
                    ],
                }),
            ),
            KeyValue { key: "none".into(), value: None, key_strindex: 7 },
        ]
    }

    fn resource() -> Resource {
        Resource {
            attributes: every_value(),
            dropped_attributes_count: 2,
            entity_refs: vec![EntityRef {
                schema_url: "u".into(),
                r#type: "service".into(),
                id_keys: vec!["service.name".into(), String::new()],
                description_keys: vec![],
            }],
        }
    }

    fn check(batch: &Batch) {
        let mut enc = Encoder::new();
        let mut out = vec![0xAA];
        let n = enc.encode(batch, &mut out);
        let prost = match batch {
            Batch::Traces(r) => r.encode_to_vec(),
            Batch::Logs(r) => r.encode_to_vec(),
            Batch::Metrics(r) => r.encode_to_vec(),
        };
        assert_eq!(&out[1..], &prost[..], "byte for byte prost's");
        assert_eq!(n, batch.encoded_len());
        // Reused: same bytes again.
        let mut again = Vec::new();
        enc.encode(batch, &mut again);
        assert_eq!(again, out[1..]);
    }

    #[test]
    fn traces_encode_exactly_as_prost_does() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "k=v".into(),
            parent_span_id: vec![3; 8],
            flags: 0x301,
            name: "chat".into(),
            kind: 3,
            start_time_unix_nano: 1,
            end_time_unix_nano: u64::MAX,
            attributes: every_value(),
            dropped_attributes_count: 1,
            events: vec![
                span::Event {
                    time_unix_nano: 5,
                    name: "e".into(),
                    attributes: every_value(),
                    dropped_attributes_count: 3,
                },
                span::Event::default(),
            ],
            dropped_events_count: 4,
            links: vec![span::Link {
                trace_id: vec![4; 16],
                span_id: vec![5; 8],
                trace_state: String::new(),
                attributes: every_value(),
                dropped_attributes_count: 0,
                flags: 1,
            }],
            dropped_links_count: 300,
            status: Some(Status { message: "bad".into(), code: 2 }),
        };
        let batch = Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(resource()),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "lib".into(),
                                version: "1".into(),
                                attributes: every_value(),
                                dropped_attributes_count: 9,
                            }),
                            spans: vec![span, Span::default(), Span { kind: -1, ..Default::default() }],
                            schema_url: "s".into(),
                        },
                        ScopeSpans::default(),
                    ],
                    schema_url: "r".into(),
                },
                ResourceSpans { resource: Some(Resource::default()), ..Default::default() },
            ],
        });
        check(&batch);
        check(&Batch::Traces(ExportTraceServiceRequest::default()));
    }

    #[test]
    fn logs_encode_exactly_as_prost_does() {
        let record = LogRecord {
            time_unix_nano: 1,
            observed_time_unix_nano: 2,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue("hello".into())) }),
            attributes: every_value(),
            dropped_attributes_count: 1,
            flags: 1,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            event_name: "ev".into(),
        };
        let batch = Batch::Logs(ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(resource()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope::default()),
                    log_records: vec![
                        record,
                        LogRecord::default(),
                        LogRecord { body: Some(AnyValue::default()), ..Default::default() },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        });
        check(&batch);
    }
}
