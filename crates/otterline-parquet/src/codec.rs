//! The archive's Arrow schema, versions 1 and 2 (documented in `docs/parquet-schema.md`),
//! and the conversion between [`Rows`] and Arrow record batches, both ways.
//!
//! The two versions differ only in how an OTLP `AnyValue` is stored (attribute values,
//! log bodies). Version 1: a struct of six typed leaves per value. Version 2: the value
//! as text (`MAP<STRING, STRING>` for attribute maps, so `attributes['user.id']` works
//! as is and numbers need one cast), plus a sibling `<column>_types` string with one type
//! letter per entry ([`TYPE_CHARS`]), NULL when every entry is a string: the common
//! case costs one null per row, and the round trip stays exact. The writer writes
//! [`Version::CURRENT`]; decoding reads either, telling them apart by column type.
//!
//! Arrays are built column by column from the rows (no row-at-a-time builders):
//! nested values (attribute maps, events, links, buckets) are flattened into one
//! child array plus offsets, recursively.
//!
//! Why one file of this size: the schema and both directions of the mapping must change
//! together, column by column.

use std::borrow::Borrow;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanArray, BooleanBufferBuilder, BooleanBuilder, Float64Array,
    Float64Builder, Int32Array, Int64Array, Int64Builder, ListArray, MapArray, RecordBatch, StringArray, StringBuilder,
    StructArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{
    DataType, Field, FieldRef, Fields, Float64Type, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit, UInt32Type,
    UInt64Type,
};
use arrow::error::ArrowError;

use otterline_core::pdata::common::{any_value, AnyValue, InstrumentationScope, KeyValue};
use otterline_core::pdata::json;
use otterline_core::pdata::logs::LogRecord;
use otterline_core::pdata::metrics::{
    exemplar, exponential_histogram_data_point::Buckets, number_data_point, summary_data_point::ValueAtQuantile,
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, NumberDataPoint, SummaryDataPoint,
};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::trace::{span, Span, Status};
use otterline_core::Signal;

use crate::rows::{Ctx, MetricHeader, MetricKind, MetricPoint, Point, Row, Rows};

/// An archive schema version, written to every file's key-value metadata as
/// `otterline.schema.version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "u32")]
pub enum Version {
    V1,
    #[default]
    V2,
}

impl TryFrom<u32> for Version {
    type Error = String;
    fn try_from(v: u32) -> Result<Self, String> {
        match v {
            1 => Ok(Version::V1),
            2 => Ok(Version::V2),
            _ => Err(format!("archive schema version {v} does not exist; use 2 (the default) or 1")),
        }
    }
}

impl Version {
    /// What the exporter writes.
    pub const CURRENT: Version = Version::V2;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "1",
            Version::V2 => "2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        match s {
            "1" => Some(Version::V1),
            "2" => Some(Version::V2),
            _ => None,
        }
    }

    /// The file name suffix: v2 files end in `.v2.parquet`, so that a glob (or a
    /// DataFusion listing table) can take one version without opening every footer.
    pub fn file_suffix(self) -> &'static str {
        match self {
            Version::V1 => ".parquet",
            Version::V2 => ".v2.parquet",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Version 2's type letters, one per map entry in `<column>_types` (and for a log body
/// in `body_type`), with how the value text is written.
pub const TYPE_CHARS: &[(u8, &str)] = &[
    (T_STRING, "string, as is"),
    (T_INT, "int, decimal"),
    (T_DOUBLE, "double, shortest text that reads back to the same bits (`NaN`, `inf`, `-inf`)"),
    (T_BOOL, "bool, `true`/`false`"),
    (T_BYTES, "bytes, base64"),
    (T_ARRAY, "array, OTLP/JSON of the AnyValue"),
    (T_KVLIST, "kvlist, OTLP/JSON of the AnyValue"),
    (T_EMPTY, "an AnyValue with no value: NULL"),
    (T_NONE, "no AnyValue at all: NULL"),
    (T_STRINDEX, "string-table index, decimal"),
];
const T_STRING: u8 = b's';
const T_INT: u8 = b'i';
const T_DOUBLE: u8 = b'd';
const T_BOOL: u8 = b'b';
const T_BYTES: u8 = b'y';
const T_ARRAY: u8 = b'a';
const T_KVLIST: u8 = b'k';
const T_EMPTY: u8 = b'e';
const T_NONE: u8 = b'n';
const T_STRINDEX: u8 = b'x';
pub const META_VERSION: &str = "otterline.schema.version";
pub const META_SIGNAL: &str = "otterline.signal";

/// Span attributes copied into their own typed columns (they stay in `attributes` too).
pub const GENAI_STRING_COLUMNS: &[(&str, &str)] = &[
    ("gen_ai_request_model", "gen_ai.request.model"),
    ("gen_ai_response_model", "gen_ai.response.model"),
    ("gen_ai_provider_name", "gen_ai.provider.name"),
    ("gen_ai_operation_name", "gen_ai.operation.name"),
    ("gen_ai_agent_name", "gen_ai.agent.name"),
];
pub const GENAI_INT_COLUMNS: &[(&str, &str)] = &[
    ("gen_ai_usage_input_tokens", "gen_ai.usage.input_tokens"),
    ("gen_ai_usage_output_tokens", "gen_ai.usage.output_tokens"),
    ("gen_ai_usage_cache_read_input_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("gen_ai_usage_cache_creation_input_tokens", "gen_ai.usage.cache_creation.input_tokens"),
    ("gen_ai_usage_reasoning_output_tokens", "gen_ai.usage.reasoning.output_tokens"),
];
pub const GENAI_COST_COLUMN: (&str, &str) = ("gen_ai_usage_cost", "gen_ai.usage.cost");

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
}

fn any_fields() -> Fields {
    Fields::from(vec![
        Field::new("type", DataType::Utf8, false),
        Field::new("string", DataType::Utf8, true),
        Field::new("int", DataType::Int64, true),
        Field::new("double", DataType::Float64, true),
        Field::new("bool", DataType::Boolean, true),
        Field::new("bytes", DataType::Binary, true),
    ])
}

fn any_type() -> DataType {
    DataType::Struct(any_fields())
}

fn map_entries_field(v: Version) -> FieldRef {
    let value = match v {
        Version::V1 => any_type(),
        Version::V2 => DataType::Utf8,
    };
    Arc::new(Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", value, true),
        ])),
        false,
    ))
}

fn map_type(v: Version) -> DataType {
    DataType::Map(map_entries_field(v), false)
}

/// The column(s) of an attribute map: the map, and in version 2 its `<name>_types`.
fn map_fields(name: &str, v: Version) -> Vec<Field> {
    let mut f = vec![Field::new(name, map_type(v), true)];
    if v == Version::V2 {
        f.push(Field::new(format!("{name}_types"), DataType::Utf8, true));
    }
    f
}

/// The column(s) of one AnyValue (a log body): version 1 the typed struct, version 2
/// the text and `<name>_type`.
fn any_value_fields(name: &str, v: Version) -> Vec<Field> {
    match v {
        Version::V1 => vec![Field::new(name, any_type(), true)],
        Version::V2 => {
            vec![Field::new(name, DataType::Utf8, true), Field::new(format!("{name}_type"), DataType::Utf8, true)]
        }
    }
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

fn event_fields(v: Version) -> Fields {
    let mut f = vec![Field::new("time", ts_type(), true), Field::new("name", DataType::Utf8, true)];
    f.extend(map_fields("attributes", v));
    f.push(Field::new("dropped_attributes_count", DataType::UInt32, true));
    Fields::from(f)
}

fn link_fields(v: Version) -> Fields {
    let mut f = vec![
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
    ];
    f.extend(map_fields("attributes", v));
    f.extend([
        Field::new("dropped_attributes_count", DataType::UInt32, true),
        Field::new("flags", DataType::UInt32, true),
    ]);
    Fields::from(f)
}

fn exemplar_fields(v: Version) -> Fields {
    let mut f = vec![
        Field::new("time", ts_type(), true),
        Field::new("value_double", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
    ];
    f.extend(map_fields("filtered_attributes", v));
    Fields::from(f)
}

fn quantile_fields() -> Fields {
    Fields::from(vec![Field::new("quantile", DataType::Float64, true), Field::new("value", DataType::Float64, true)])
}

fn context_fields(v: Version) -> Vec<Field> {
    let mut f = vec![Field::new("service_name", DataType::Utf8, true)];
    f.extend(map_fields("resource_attributes", v));
    f.extend([
        Field::new("resource_dropped_attributes_count", DataType::UInt32, true),
        Field::new("resource_schema_url", DataType::Utf8, true),
        Field::new("resource_entity_refs", DataType::Utf8, true),
        Field::new("scope_name", DataType::Utf8, true),
        Field::new("scope_version", DataType::Utf8, true),
    ]);
    f.extend(map_fields("scope_attributes", v));
    f.extend([
        Field::new("scope_dropped_attributes_count", DataType::UInt32, true),
        Field::new("scope_schema_url", DataType::Utf8, true),
    ]);
    f
}

fn with_meta(fields: Vec<Field>, signal: Signal, v: Version) -> SchemaRef {
    let meta =
        [(META_VERSION.to_string(), v.as_str().to_string()), (META_SIGNAL.to_string(), signal.as_str().to_string())];
    Arc::new(Schema::new(fields).with_metadata(meta.into_iter().collect::<std::collections::HashMap<String, String>>()))
}

/// The Arrow schema of a signal's table in version `v`.
pub fn schema(signal: Signal, v: Version) -> SchemaRef {
    static SCHEMAS: OnceLock<[[SchemaRef; 3]; 2]> = OnceLock::new();
    SCHEMAS.get_or_init(|| [Version::V1, Version::V2].map(|v| [traces_schema(v), metrics_schema(v), logs_schema(v)]))
        [v.index()][signal.index()]
    .clone()
}

/// Columns the decoder does not read: copies of what other columns hold (the service name
/// of the resource attributes, a span's duration, the flat GenAI columns of its
/// attributes). A reader that only decodes (replay) leaves them out.
pub fn derived_columns(signal: Signal) -> Vec<&'static str> {
    let mut out = vec!["service_name"];
    if signal == Signal::Traces {
        out.push("duration_ns");
        out.extend(GENAI_STRING_COLUMNS.iter().chain(GENAI_INT_COLUMNS).map(|(c, _)| *c));
        out.push(GENAI_COST_COLUMN.0);
    }
    out
}

fn traces_schema(v: Version) -> SchemaRef {
    let mut f = vec![
        Field::new("start_time", ts_type(), false),
        Field::new("end_time", ts_type(), false),
        Field::new("duration_ns", DataType::Int64, false),
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("status_message", DataType::Utf8, true),
    ];
    f.extend(context_fields(v));
    f.extend(GENAI_STRING_COLUMNS.iter().map(|(c, _)| Field::new(*c, DataType::Utf8, true)));
    f.extend(GENAI_INT_COLUMNS.iter().map(|(c, _)| Field::new(*c, DataType::Int64, true)));
    f.push(Field::new(GENAI_COST_COLUMN.0, DataType::Float64, true));
    f.extend(map_fields("attributes", v));
    f.extend([
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("events", list_of(DataType::Struct(event_fields(v))), true),
        Field::new("dropped_events_count", DataType::UInt32, false),
        Field::new("links", list_of(DataType::Struct(link_fields(v))), true),
        Field::new("dropped_links_count", DataType::UInt32, false),
        Field::new("status_present", DataType::Boolean, false),
    ]);
    with_meta(f, Signal::Traces, v)
}

fn metrics_schema(v: Version) -> SchemaRef {
    let mut f = vec![
        Field::new("time", ts_type(), false),
        Field::new("start_time", ts_type(), true),
        Field::new("metric_name", DataType::Utf8, false),
        Field::new("metric_type", DataType::Utf8, false),
        Field::new("metric_unit", DataType::Utf8, true),
        Field::new("metric_description", DataType::Utf8, true),
    ];
    f.extend(map_fields("metric_metadata", v));
    f.extend([
        Field::new("aggregation_temporality", DataType::Utf8, true),
        Field::new("is_monotonic", DataType::Boolean, true),
    ]);
    f.extend(context_fields(v));
    f.extend(map_fields("attributes", v));
    f.extend([
        Field::new("flags", DataType::UInt32, false),
        Field::new("value_double", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("count", DataType::UInt64, true),
        Field::new("sum", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        Field::new("bucket_counts", list_of(DataType::UInt64), true),
        Field::new("explicit_bounds", list_of(DataType::Float64), true),
        Field::new("scale", DataType::Int32, true),
        Field::new("zero_count", DataType::UInt64, true),
        Field::new("zero_threshold", DataType::Float64, true),
        Field::new("positive_offset", DataType::Int32, true),
        Field::new("positive_bucket_counts", list_of(DataType::UInt64), true),
        Field::new("negative_offset", DataType::Int32, true),
        Field::new("negative_bucket_counts", list_of(DataType::UInt64), true),
        Field::new("quantile_values", list_of(DataType::Struct(quantile_fields())), true),
        Field::new("exemplars", list_of(DataType::Struct(exemplar_fields(v))), true),
    ]);
    with_meta(f, Signal::Metrics, v)
}

fn logs_schema(v: Version) -> SchemaRef {
    let mut f = vec![
        Field::new("time", ts_type(), false),
        Field::new("timestamp", ts_type(), true),
        Field::new("observed_timestamp", ts_type(), true),
        Field::new("severity_number", DataType::Int32, false),
        Field::new("severity_text", DataType::Utf8, true),
    ];
    f.extend(any_value_fields("body", v));
    f.extend([
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("span_id", DataType::Utf8, true),
        Field::new("event_name", DataType::Utf8, true),
    ]);
    f.extend(context_fields(v));
    f.extend(map_fields("attributes", v));
    f.extend([
        Field::new("dropped_attributes_count", DataType::UInt32, false),
        Field::new("flags", DataType::UInt32, false),
    ]);
    with_meta(f, Signal::Logs, v)
}

// ---------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(H[(x >> 4) as usize] as char);
        s.push(H[(x & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Vec<u8> {
    let d = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0,
    };
    s.as_bytes().chunks_exact(2).map(|p| d(p[0]) << 4 | d(p[1])).collect()
}

fn nonempty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn utf8<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}

fn utf8_owned(it: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(it))
}

fn ts(it: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from_iter(it).with_timezone("UTC"))
}

fn u32s(it: impl Iterator<Item = Option<u32>>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter(it))
}

fn nonzero_ts(v: u64) -> Option<i64> {
    (v != 0).then_some(v as i64)
}

/// A string column of lower-case hex ids, built without a string per id.
fn hex_col<'a>(it: impl ExactSizeIterator<Item = Option<&'a [u8]>>) -> ArrayRef {
    const H: &[u8; 16] = b"0123456789abcdef";
    let n = it.len();
    let mut b = StringBuilder::with_capacity(n, n * 32);
    let mut buf = [0u8; 64];
    for id in it {
        match id {
            Some(id) if id.len() <= 32 => {
                for (i, x) in id.iter().enumerate() {
                    buf[2 * i] = H[(x >> 4) as usize];
                    buf[2 * i + 1] = H[(x & 15) as usize];
                }
                // Only ASCII hex digits were written.
                b.append_value(std::str::from_utf8(&buf[..2 * id.len()]).unwrap_or_default());
            }
            Some(id) => b.append_value(hex(id)),
            None => b.append_null(),
        }
    }
    Arc::new(b.finish())
}

/// The typed struct of one attribute value (or log body).
fn any_struct(values: &[Option<&AnyValue>]) -> Result<StructArray, ArrowError> {
    use any_value::Value as V;
    let n = values.len();
    let mut ty = StringBuilder::with_capacity(n, n * 6);
    let mut s = StringBuilder::with_capacity(n, n * 16);
    let mut i = Int64Builder::with_capacity(n);
    let mut d = Float64Builder::with_capacity(n);
    let mut b = BooleanBuilder::with_capacity(n);
    let mut by = BinaryBuilder::with_capacity(n, 0);
    let mut valid = BooleanBufferBuilder::new(n);
    for v in values {
        valid.append(v.is_some());
        let value = v.and_then(|v| v.value.as_ref());
        ty.append_value(match value {
            None if v.is_some() => "empty",
            None => "null",
            Some(V::StringValue(_)) => "string",
            Some(V::IntValue(_)) => "int",
            Some(V::DoubleValue(_)) => "double",
            Some(V::BoolValue(_)) => "bool",
            Some(V::BytesValue(_)) => "bytes",
            Some(V::ArrayValue(_)) => "array",
            Some(V::KvlistValue(_)) => "kvlist",
            Some(V::StringValueStrindex(_)) => "strindex",
        });
        match value {
            Some(V::StringValue(x)) => s.append_value(x),
            // Arrays and kvlists are rare: their OTLP/JSON is built on its own.
            Some(V::ArrayValue(_) | V::KvlistValue(_)) => {
                s.append_value(v.map(json::encode_any_value).unwrap_or_default())
            }
            _ => s.append_null(),
        }
        match value {
            Some(V::IntValue(x)) => i.append_value(*x),
            Some(V::StringValueStrindex(x)) => i.append_value(*x as i64),
            _ => i.append_null(),
        }
        match value {
            Some(V::DoubleValue(x)) => d.append_value(*x),
            _ => d.append_null(),
        }
        match value {
            Some(V::BoolValue(x)) => b.append_value(*x),
            _ => b.append_null(),
        }
        match value {
            Some(V::BytesValue(x)) => by.append_value(x),
            _ => by.append_null(),
        }
    }
    StructArray::try_new(
        any_fields(),
        vec![
            Arc::new(ty.finish()),
            Arc::new(s.finish()),
            Arc::new(i.finish()),
            Arc::new(d.finish()),
            Arc::new(b.finish()),
            Arc::new(by.finish()),
        ],
        Some(NullBuffer::new(valid.finish())),
    )
}

/// The column(s) of an attribute map from per-row attribute lists (`None`: a null map):
/// version 1 one map of typed structs, version 2 a map of texts and its `_types`.
fn attr_cols<'a>(v: Version, lists: impl Iterator<Item = Option<&'a [KeyValue]>>) -> Result<Vec<ArrayRef>, ArrowError> {
    match v {
        Version::V1 => Ok(vec![attr_map_v1(lists)?]),
        Version::V2 => {
            let (map, types) = attr_map_v2(lists)?;
            Ok(vec![map, types])
        }
    }
}

fn attr_map_v1<'a>(lists: impl Iterator<Item = Option<&'a [KeyValue]>>) -> Result<ArrayRef, ArrowError> {
    let mut lens = Vec::new();
    let mut valid = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    let mut vals: Vec<Option<&AnyValue>> = Vec::new();
    for l in lists {
        valid.push(l.is_some());
        let l = l.unwrap_or(&[]);
        lens.push(l.len());
        for kv in l {
            keys.push(&kv.key);
            vals.push(kv.value.as_ref());
        }
    }
    let field = map_entries_field(Version::V1);
    let DataType::Struct(entry_fields) = field.data_type().clone() else { unreachable!() };
    let entries = StructArray::try_new(
        entry_fields,
        vec![Arc::new(StringArray::from(keys)), Arc::new(any_struct(&vals)?)],
        None,
    )?;
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    Ok(Arc::new(MapArray::try_new(field, OffsetBuffer::from_lengths(lens), entries, nulls, false)?))
}

/// Version 2: keys and value texts go straight into two string buffers; the row's type
/// letters are kept only when some value is not a string.
fn attr_map_v2<'a>(lists: impl Iterator<Item = Option<&'a [KeyValue]>>) -> Result<(ArrayRef, ArrayRef), ArrowError> {
    let (lo, _) = lists.size_hint();
    let mut offsets: Vec<i32> = Vec::with_capacity(lo + 1);
    offsets.push(0);
    let mut valid = BooleanBufferBuilder::new(lo);
    let mut any_null = false;
    let mut keys = StringBuilder::with_capacity(lo * 8, lo * 128);
    let mut vals = StringBuilder::with_capacity(lo * 8, lo * 128);
    let mut types = StringBuilder::with_capacity(lo, lo);
    let mut row_types: Vec<u8> = Vec::new();
    let mut n: i32 = 0;
    for l in lists {
        valid.append(l.is_some());
        any_null |= l.is_none();
        let l = l.unwrap_or(&[]);
        row_types.clear();
        let mut all_strings = true;
        for kv in l {
            keys.append_value(&kv.key);
            let t = append_value_text(kv.value.as_ref(), &mut vals);
            all_strings &= t == T_STRING;
            row_types.push(t);
        }
        n += l.len() as i32;
        offsets.push(n);
        if all_strings {
            types.append_null();
        } else {
            // Only ASCII letters were pushed.
            types.append_value(std::str::from_utf8(&row_types).unwrap_or_default());
        }
    }
    let field = map_entries_field(Version::V2);
    let DataType::Struct(entry_fields) = field.data_type().clone() else { unreachable!() };
    let entries = StructArray::try_new(entry_fields, vec![Arc::new(keys.finish()), Arc::new(vals.finish())], None)?;
    let nulls = any_null.then(|| NullBuffer::new(valid.finish()));
    let map = MapArray::try_new(field, OffsetBuffer::new(offsets.into()), entries, nulls, false)?;
    Ok((Arc::new(map), Arc::new(types.finish())))
}

/// Appends the version 2 text of one value (NULL when it has none) and returns its type letter.
fn append_value_text(v: Option<&AnyValue>, out: &mut StringBuilder) -> u8 {
    use any_value::Value as V;
    let Some(av) = v else {
        out.append_null();
        return T_NONE;
    };
    match &av.value {
        None => {
            out.append_null();
            T_EMPTY
        }
        Some(V::StringValue(s)) => {
            out.append_value(s);
            T_STRING
        }
        Some(V::IntValue(i)) => {
            out.append_value(itoa::Buffer::new().format(*i));
            T_INT
        }
        Some(V::DoubleValue(d)) => {
            out.append_value(ryu::Buffer::new().format(*d));
            T_DOUBLE
        }
        Some(V::BoolValue(b)) => {
            out.append_value(if *b { "true" } else { "false" });
            T_BOOL
        }
        Some(V::BytesValue(b)) => {
            use base64::Engine as _;
            out.append_value(base64::engine::general_purpose::STANDARD.encode(b));
            T_BYTES
        }
        Some(V::ArrayValue(_)) => {
            out.append_value(json::encode_any_value(av));
            T_ARRAY
        }
        Some(V::KvlistValue(_)) => {
            out.append_value(json::encode_any_value(av));
            T_KVLIST
        }
        Some(V::StringValueStrindex(x)) => {
            out.append_value(itoa::Buffer::new().format(*x));
            T_STRINDEX
        }
    }
}

/// A value back from its version 2 text and type letter (`None`: no AnyValue). A text
/// that does not parse as its type (a damaged or hand-edited file) comes back as a string.
fn value_from_text(t: u8, text: Option<&str>) -> Option<AnyValue> {
    use any_value::Value as V;
    let s = text.unwrap_or("");
    let as_string = || Some(V::StringValue(s.to_string()));
    let value = match t {
        T_NONE => return None,
        T_EMPTY => None,
        T_INT => s.parse().ok().map(V::IntValue).or_else(as_string),
        T_DOUBLE => s.parse().ok().map(V::DoubleValue).or_else(as_string),
        T_BOOL => match s {
            "true" => Some(V::BoolValue(true)),
            "false" => Some(V::BoolValue(false)),
            _ => as_string(),
        },
        T_BYTES => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(s).ok().map(V::BytesValue).or_else(as_string)
        }
        T_ARRAY | T_KVLIST => json::decode_any_value(s).ok().and_then(|a| a.value).or_else(as_string),
        T_STRINDEX => s.parse().ok().map(V::StringValueStrindex).or_else(as_string),
        _ => as_string(),
    };
    Some(AnyValue { value })
}

/// The column(s) of one AnyValue per row (log bodies).
fn any_cols(v: Version, values: &[Option<&AnyValue>]) -> Result<Vec<ArrayRef>, ArrowError> {
    match v {
        Version::V1 => Ok(vec![Arc::new(any_struct(values)?)]),
        Version::V2 => {
            let n = values.len();
            let mut text = StringBuilder::with_capacity(n, n * 64);
            let mut types = StringBuilder::with_capacity(n, n);
            for value in values {
                match append_value_text(*value, &mut text) {
                    T_STRING => types.append_null(),
                    t => types.append_value(std::str::from_utf8(&[t]).unwrap_or_default()),
                }
            }
            Ok(vec![Arc::new(text.finish()), Arc::new(types.finish())])
        }
    }
}

/// A list column whose items are built from the flattened children.
fn list_col(item: DataType, lens: Vec<usize>, values: ArrayRef) -> Result<ArrayRef, ArrowError> {
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", item, true)),
        OffsetBuffer::from_lengths(lens),
        values,
        None,
    )?))
}

fn opt_list_col(item: DataType, lens: Vec<Option<usize>>, values: ArrayRef) -> Result<ArrayRef, ArrowError> {
    let nulls = NullBuffer::from(lens.iter().map(Option::is_some).collect::<Vec<bool>>());
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new("item", item, true)),
        OffsetBuffer::from_lengths(lens.into_iter().map(|l| l.unwrap_or(0))),
        values,
        Some(nulls),
    )?))
}

fn span_of<S: Borrow<Span>>(r: &Row<S>) -> &Span {
    r.item.borrow()
}

fn log_of<L: Borrow<LogRecord>>(r: &Row<L>) -> &LogRecord {
    r.item.borrow()
}

fn res<T>(r: &Row<T>) -> Option<&Resource> {
    r.ctx.resource.as_ref()
}

fn scope_of<T>(r: &Row<T>) -> Option<&InstrumentationScope> {
    r.ctx.scope.as_ref()
}

fn hdr(r: &Row<MetricPoint>) -> &MetricHeader {
    &r.item.header
}

fn num(r: &Row<MetricPoint>) -> Option<&NumberDataPoint> {
    match &r.item.point {
        Point::Number(p) => Some(p),
        _ => None,
    }
}

fn hist(r: &Row<MetricPoint>) -> Option<&HistogramDataPoint> {
    match &r.item.point {
        Point::Histogram(p) => Some(p),
        _ => None,
    }
}

fn exp(r: &Row<MetricPoint>) -> Option<&ExponentialHistogramDataPoint> {
    match &r.item.point {
        Point::Exponential(p) => Some(p),
        _ => None,
    }
}

fn summ(r: &Row<MetricPoint>) -> Option<&SummaryDataPoint> {
    match &r.item.point {
        Point::Summary(p) => Some(p),
        _ => None,
    }
}

fn attrs(r: &Row<MetricPoint>) -> &[KeyValue] {
    match &r.item.point {
        Point::Number(p) => &p.attributes,
        Point::Histogram(p) => &p.attributes,
        Point::Exponential(p) => &p.attributes,
        Point::Summary(p) => &p.attributes,
    }
}

fn start_flags(r: &Row<MetricPoint>) -> (u64, u32) {
    match &r.item.point {
        Point::Number(p) => (p.start_time_unix_nano, p.flags),
        Point::Histogram(p) => (p.start_time_unix_nano, p.flags),
        Point::Exponential(p) => (p.start_time_unix_nano, p.flags),
        Point::Summary(p) => (p.start_time_unix_nano, p.flags),
    }
}

fn buckets_of(r: &Row<MetricPoint>, side: usize) -> Option<&Buckets> {
    exp(r).and_then(|p| if side == 0 { p.positive.as_ref() } else { p.negative.as_ref() })
}

fn exemplars_of(r: &Row<MetricPoint>) -> &[Exemplar] {
    match &r.item.point {
        Point::Number(p) => &p.exemplars,
        Point::Histogram(p) => &p.exemplars,
        Point::Exponential(p) => &p.exemplars,
        Point::Summary(_) => &[],
    }
}

fn context_columns<T>(v: Version, rows: &[Row<T>]) -> Result<Vec<ArrayRef>, ArrowError> {
    let mut cols = vec![utf8(rows.iter().map(|r| otterline_core::pdata::service_name(res(r))))];
    cols.extend(attr_cols(v, rows.iter().map(|r| res(r).map(|x| x.attributes.as_slice())))?);
    cols.extend([
        u32s(rows.iter().map(|r| res(r).map(|x| x.dropped_attributes_count))),
        utf8(rows.iter().map(|r| nonempty(&r.ctx.resource_schema_url))),
        utf8_owned(
            rows.iter().map(|r| {
                res(r).filter(|x| !x.entity_refs.is_empty()).map(|x| json::encode_entity_refs(&x.entity_refs))
            }),
        ),
        utf8(rows.iter().map(|r| scope_of(r).map(|s| s.name.as_str()))),
        utf8(rows.iter().map(|r| scope_of(r).map(|s| s.version.as_str()))),
    ]);
    cols.extend(attr_cols(v, rows.iter().map(|r| scope_of(r).map(|s| s.attributes.as_slice())))?);
    cols.extend([
        u32s(rows.iter().map(|r| scope_of(r).map(|s| s.dropped_attributes_count))),
        utf8(rows.iter().map(|r| nonempty(&r.ctx.scope_schema_url))),
    ]);
    Ok(cols)
}

fn value_i64(v: Option<&any_value::Value>) -> Option<i64> {
    match v {
        Some(any_value::Value::IntValue(i)) => Some(*i),
        Some(any_value::Value::DoubleValue(d)) if d.fract() == 0.0 => Some(*d as i64),
        Some(any_value::Value::StringValue(s)) => s.parse().ok(),
        _ => None,
    }
}

fn value_f64(v: Option<&any_value::Value>) -> Option<f64> {
    match v {
        Some(any_value::Value::DoubleValue(d)) => Some(*d),
        Some(any_value::Value::IntValue(i)) => Some(*i as f64),
        Some(any_value::Value::StringValue(s)) => s.parse().ok(),
        _ => None,
    }
}

const SPAN_KINDS: [&str; 6] = ["unspecified", "internal", "server", "client", "producer", "consumer"];
const STATUS_CODES: [&str; 3] = ["unset", "ok", "error"];
const TEMPORALITIES: [&str; 3] = ["unspecified", "delta", "cumulative"];

fn enum_name(names: &[&str], v: i32) -> String {
    names.get(v as usize).map(|s| s.to_string()).unwrap_or_else(|| v.to_string())
}

fn enum_value(names: &[&str], s: &str) -> i32 {
    names.iter().position(|n| *n == s).map(|i| i as i32).unwrap_or_else(|| s.parse().unwrap_or(0))
}

// ---------------------------------------------------------------------------
// Encoding: rows -> record batch
// ---------------------------------------------------------------------------

/// Encodes the rows in `range` (which must lie within `rows`) as one record batch of version `v`.
pub fn encode_range<S: Borrow<Span>, L: Borrow<LogRecord>>(
    rows: &Rows<S, L>,
    range: std::ops::Range<usize>,
    v: Version,
) -> Result<RecordBatch, ArrowError> {
    match rows {
        Rows::Spans(r) => encode_spans(v, &r[range]),
        Rows::Points(r) => encode_points(v, &r[range]),
        Rows::Logs(r) => encode_logs(v, &r[range]),
    }
}

/// A string column of enum names (`names[v]`, the number itself when out of range).
fn enum_col(names: &[&str], values: impl ExactSizeIterator<Item = i32>) -> ArrayRef {
    let mut b = StringBuilder::with_capacity(values.len(), values.len() * 6);
    for v in values {
        match usize::try_from(v).ok().and_then(|i| names.get(i)) {
            Some(name) => b.append_value(name),
            None => b.append_value(v.to_string()),
        }
    }
    Arc::new(b.finish())
}

/// The GenAI attributes of one span that have their own columns, found in one pass.
#[derive(Default)]
struct GenAi<'a> {
    strings: [Option<&'a str>; GENAI_STRING_COLUMNS.len()],
    ints: [Option<i64>; GENAI_INT_COLUMNS.len()],
    cost: Option<f64>,
}

/// The GenAI column slot of an attribute key: string columns first, then int columns, then
/// cost (the order of [`GENAI_STRING_COLUMNS`], [`GENAI_INT_COLUMNS`], [`GENAI_COST_COLUMN`];
/// a test checks they agree). One `match` instead of comparing against every name.
fn genai_slot(key: &str) -> Option<usize> {
    Some(match key {
        "gen_ai.request.model" => 0,
        "gen_ai.response.model" => 1,
        "gen_ai.provider.name" => 2,
        "gen_ai.operation.name" => 3,
        "gen_ai.agent.name" => 4,
        "gen_ai.usage.input_tokens" => 5,
        "gen_ai.usage.output_tokens" => 6,
        "gen_ai.usage.cache_read.input_tokens" => 7,
        "gen_ai.usage.cache_creation.input_tokens" => 8,
        "gen_ai.usage.reasoning.output_tokens" => 9,
        "gen_ai.usage.cost" => 10,
        _ => return None,
    })
}

impl<'a> GenAi<'a> {
    fn of(attrs: &'a [KeyValue]) -> Self {
        let mut g = GenAi::default();
        // The first occurrence of a key decides, as a lookup would.
        let mut seen = 0u32;
        for kv in attrs {
            if !kv.key.starts_with("gen_ai.") {
                continue;
            }
            let Some(slot) = genai_slot(&kv.key) else { continue };
            if seen & (1 << slot) != 0 {
                continue;
            }
            seen |= 1 << slot;
            let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
            let n = GENAI_STRING_COLUMNS.len();
            if slot < n {
                g.strings[slot] = match v {
                    Some(any_value::Value::StringValue(s)) => Some(s),
                    _ => None,
                };
            } else if slot < n + GENAI_INT_COLUMNS.len() {
                g.ints[slot - n] = value_i64(v);
            } else {
                g.cost = value_f64(v);
            }
        }
        g
    }
}

fn encode_spans<S: Borrow<Span>>(v: Version, rows: &[Row<S>]) -> Result<RecordBatch, ArrowError> {
    let mut cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| Some(span_of(r).start_time_unix_nano as i64))),
        ts(rows.iter().map(|r| Some(span_of(r).end_time_unix_nano as i64))),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| span_of(r).end_time_unix_nano as i64 - span_of(r).start_time_unix_nano as i64),
        )),
        hex_col(rows.iter().map(|r| Some(span_of(r).trace_id.as_slice()))),
        hex_col(rows.iter().map(|r| Some(span_of(r).span_id.as_slice()))),
        hex_col(rows.iter().map(|r| Some(span_of(r).parent_span_id.as_slice()).filter(|p| !p.is_empty()))),
        utf8(rows.iter().map(|r| nonempty(&span_of(r).trace_state))),
        u32s(rows.iter().map(|r| Some(span_of(r).flags))),
        utf8(rows.iter().map(|r| Some(span_of(r).name.as_str()))),
        enum_col(&SPAN_KINDS, rows.iter().map(|r| span_of(r).kind)),
        enum_col(&STATUS_CODES, rows.iter().map(|r| span_of(r).status.as_ref().map_or(0, |x| x.code))),
        utf8(rows.iter().map(|r| span_of(r).status.as_ref().and_then(|x| nonempty(&x.message)))),
    ];
    cols.extend(context_columns(v, rows)?);
    let genai: Vec<GenAi<'_>> = rows.iter().map(|r| GenAi::of(&span_of(r).attributes)).collect();
    for i in 0..GENAI_STRING_COLUMNS.len() {
        cols.push(utf8(genai.iter().map(|g| g.strings[i])));
    }
    for i in 0..GENAI_INT_COLUMNS.len() {
        cols.push(Arc::new(Int64Array::from_iter(genai.iter().map(|g| g.ints[i]))));
    }
    cols.push(Arc::new(Float64Array::from_iter(genai.iter().map(|g| g.cost))));
    cols.extend(attr_cols(v, rows.iter().map(|r| Some(span_of(r).attributes.as_slice())))?);
    cols.push(u32s(rows.iter().map(|r| Some(span_of(r).dropped_attributes_count))));

    let events: Vec<&span::Event> = rows.iter().flat_map(|r| &span_of(r).events).collect();
    let mut ev_cols = vec![
        ts(events.iter().map(|e| Some(e.time_unix_nano as i64))),
        utf8(events.iter().map(|e| Some(e.name.as_str()))),
    ];
    ev_cols.extend(attr_cols(v, events.iter().map(|e| Some(e.attributes.as_slice())))?);
    ev_cols.push(u32s(events.iter().map(|e| Some(e.dropped_attributes_count))));
    let ev = StructArray::try_new(event_fields(v), ev_cols, None)?;
    cols.push(list_col(
        DataType::Struct(event_fields(v)),
        rows.iter().map(|r| span_of(r).events.len()).collect(),
        Arc::new(ev),
    )?);
    cols.push(u32s(rows.iter().map(|r| Some(span_of(r).dropped_events_count))));

    let links: Vec<&span::Link> = rows.iter().flat_map(|r| &span_of(r).links).collect();
    let mut lk_cols = vec![
        hex_col(links.iter().map(|l| Some(l.trace_id.as_slice()))),
        hex_col(links.iter().map(|l| Some(l.span_id.as_slice()))),
        utf8(links.iter().map(|l| nonempty(&l.trace_state))),
    ];
    lk_cols.extend(attr_cols(v, links.iter().map(|l| Some(l.attributes.as_slice())))?);
    lk_cols.extend([
        u32s(links.iter().map(|l| Some(l.dropped_attributes_count))),
        u32s(links.iter().map(|l| Some(l.flags))),
    ]);
    let lk = StructArray::try_new(link_fields(v), lk_cols, None)?;
    cols.push(list_col(
        DataType::Struct(link_fields(v)),
        rows.iter().map(|r| span_of(r).links.len()).collect(),
        Arc::new(lk),
    )?);
    cols.push(u32s(rows.iter().map(|r| Some(span_of(r).dropped_links_count))));
    cols.push(Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(span_of(r).status.is_some())))));
    RecordBatch::try_new(schema(Signal::Traces, v), cols)
}

fn encode_logs<L: Borrow<LogRecord>>(v: Version, rows: &[Row<L>]) -> Result<RecordBatch, ArrowError> {
    let bodies: Vec<Option<&AnyValue>> = rows.iter().map(|r| log_of(r).body.as_ref()).collect();
    let mut cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| Some(r.ts))),
        ts(rows.iter().map(|r| nonzero_ts(log_of(r).time_unix_nano))),
        ts(rows.iter().map(|r| nonzero_ts(log_of(r).observed_time_unix_nano))),
        Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| log_of(r).severity_number))),
        utf8(rows.iter().map(|r| nonempty(&log_of(r).severity_text))),
    ];
    cols.extend(any_cols(v, &bodies)?);
    cols.extend([
        hex_col(rows.iter().map(|r| Some(log_of(r).trace_id.as_slice()).filter(|x| !x.is_empty()))),
        hex_col(rows.iter().map(|r| Some(log_of(r).span_id.as_slice()).filter(|x| !x.is_empty()))),
        utf8(rows.iter().map(|r| nonempty(&log_of(r).event_name))),
    ]);
    cols.extend(context_columns(v, rows)?);
    cols.extend(attr_cols(v, rows.iter().map(|r| Some(log_of(r).attributes.as_slice())))?);
    cols.push(u32s(rows.iter().map(|r| Some(log_of(r).dropped_attributes_count))));
    cols.push(u32s(rows.iter().map(|r| Some(log_of(r).flags))));
    RecordBatch::try_new(schema(Signal::Logs, v), cols)
}

fn encode_points(v: Version, rows: &[Row<MetricPoint>]) -> Result<RecordBatch, ArrowError> {
    let has_temporality =
        |k: MetricKind| matches!(k, MetricKind::Sum | MetricKind::Histogram | MetricKind::ExponentialHistogram);

    let mut cols: Vec<ArrayRef> = vec![
        ts(rows.iter().map(|r| Some(r.ts))),
        ts(rows.iter().map(|r| nonzero_ts(start_flags(r).0))),
        utf8(rows.iter().map(|r| Some(hdr(r).name.as_str()))),
        utf8(rows.iter().map(|r| Some(hdr(r).kind.as_str()))),
        utf8(rows.iter().map(|r| nonempty(&hdr(r).unit))),
        utf8(rows.iter().map(|r| nonempty(&hdr(r).description))),
    ];
    cols.extend(attr_cols(
        v,
        rows.iter().map(|r| (!hdr(r).metadata.is_empty()).then_some(hdr(r).metadata.as_slice())),
    )?);
    cols.extend([
        utf8_owned(
            rows.iter().map(|r| has_temporality(hdr(r).kind).then(|| enum_name(&TEMPORALITIES, hdr(r).temporality))),
        ),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| (hdr(r).kind == MetricKind::Sum).then_some(hdr(r).monotonic)),
        )),
    ]);
    cols.extend(context_columns(v, rows)?);
    cols.extend(attr_cols(v, rows.iter().map(|r| Some(attrs(r))))?);
    cols.push(u32s(rows.iter().map(|r| Some(start_flags(r).1))));
    cols.push(Arc::new(Float64Array::from_iter(rows.iter().map(|r| match num(r).and_then(|p| p.value) {
        Some(number_data_point::Value::AsDouble(d)) => Some(d),
        _ => None,
    }))));
    cols.push(Arc::new(Int64Array::from_iter(rows.iter().map(|r| match num(r).and_then(|p| p.value) {
        Some(number_data_point::Value::AsInt(i)) => Some(i),
        _ => None,
    }))));
    cols.push(Arc::new(UInt64Array::from_iter(
        rows.iter().map(|r| hist(r).map(|p| p.count).or(exp(r).map(|p| p.count)).or(summ(r).map(|p| p.count))),
    )));
    cols.push(Arc::new(Float64Array::from_iter(
        rows.iter().map(|r| hist(r).and_then(|p| p.sum).or(exp(r).and_then(|p| p.sum)).or(summ(r).map(|p| p.sum))),
    )));
    cols.push(Arc::new(Float64Array::from_iter(
        rows.iter().map(|r| hist(r).and_then(|p| p.min).or(exp(r).and_then(|p| p.min))),
    )));
    cols.push(Arc::new(Float64Array::from_iter(
        rows.iter().map(|r| hist(r).and_then(|p| p.max).or(exp(r).and_then(|p| p.max))),
    )));
    // Histogram buckets.
    let bucket_lists: Vec<Option<&[u64]>> = rows.iter().map(|r| hist(r).map(|p| p.bucket_counts.as_slice())).collect();
    cols.push(u64_list(&bucket_lists)?);
    let bounds: Vec<Option<&[f64]>> = rows.iter().map(|r| hist(r).map(|p| p.explicit_bounds.as_slice())).collect();
    let flat: Vec<f64> = bounds.iter().flat_map(|b| b.unwrap_or(&[]).iter().copied()).collect();
    cols.push(opt_list_col(
        DataType::Float64,
        bounds.iter().map(|b| b.map(<[f64]>::len)).collect(),
        Arc::new(Float64Array::from(flat)),
    )?);
    // Exponential histogram.
    cols.push(Arc::new(Int32Array::from_iter(rows.iter().map(|r| exp(r).map(|p| p.scale)))));
    cols.push(Arc::new(UInt64Array::from_iter(rows.iter().map(|r| exp(r).map(|p| p.zero_count)))));
    cols.push(Arc::new(Float64Array::from_iter(rows.iter().map(|r| exp(r).map(|p| p.zero_threshold)))));
    for side in [0, 1] {
        let b = |r| buckets_of(r, side);
        cols.push(Arc::new(Int32Array::from_iter(rows.iter().map(|r| b(r).map(|x| x.offset)))));
        let lists: Vec<Option<&[u64]>> = rows.iter().map(|r| b(r).map(|x| x.bucket_counts.as_slice())).collect();
        cols.push(u64_list(&lists)?);
    }
    // Summary quantiles.
    let qs: Vec<Option<&[ValueAtQuantile]>> =
        rows.iter().map(|r| summ(r).map(|p| p.quantile_values.as_slice())).collect();
    let flat: Vec<&ValueAtQuantile> = qs.iter().flat_map(|q| q.unwrap_or(&[]).iter()).collect();
    let qv = StructArray::try_new(
        quantile_fields(),
        vec![
            Arc::new(Float64Array::from_iter_values(flat.iter().map(|q| q.quantile))),
            Arc::new(Float64Array::from_iter_values(flat.iter().map(|q| q.value))),
        ],
        None,
    )?;
    cols.push(opt_list_col(
        DataType::Struct(quantile_fields()),
        qs.iter().map(|q| q.map(<[ValueAtQuantile]>::len)).collect(),
        Arc::new(qv),
    )?);
    // Exemplars.
    let ex: Vec<&Exemplar> = rows.iter().flat_map(|r| exemplars_of(r).iter()).collect();
    let mut ex_cols: Vec<ArrayRef> = vec![
        ts(ex.iter().map(|e| Some(e.time_unix_nano as i64))),
        Arc::new(Float64Array::from_iter(ex.iter().map(|e| match e.value {
            Some(exemplar::Value::AsDouble(d)) => Some(d),
            _ => None,
        }))),
        Arc::new(Int64Array::from_iter(ex.iter().map(|e| match e.value {
            Some(exemplar::Value::AsInt(i)) => Some(i),
            _ => None,
        }))),
        hex_col(ex.iter().map(|e| Some(e.trace_id.as_slice()).filter(|x| !x.is_empty()))),
        hex_col(ex.iter().map(|e| Some(e.span_id.as_slice()).filter(|x| !x.is_empty()))),
    ];
    ex_cols.extend(attr_cols(v, ex.iter().map(|e| Some(e.filtered_attributes.as_slice())))?);
    let exa = StructArray::try_new(exemplar_fields(v), ex_cols, None)?;
    cols.push(list_col(
        DataType::Struct(exemplar_fields(v)),
        rows.iter().map(|r| exemplars_of(r).len()).collect(),
        Arc::new(exa),
    )?);
    RecordBatch::try_new(schema(Signal::Metrics, v), cols)
}

fn u64_list(lists: &[Option<&[u64]>]) -> Result<ArrayRef, ArrowError> {
    let flat: Vec<u64> = lists.iter().flat_map(|b| b.unwrap_or(&[]).iter().copied()).collect();
    opt_list_col(
        DataType::UInt64,
        lists.iter().map(|b| b.map(<[u64]>::len)).collect(),
        Arc::new(UInt64Array::from(flat)),
    )
}

// ---------------------------------------------------------------------------
// Decoding: record batch -> rows
// ---------------------------------------------------------------------------

/// A column by name, or an error naming it (a foreign or damaged file).
fn col<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    b.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("column `{name}` is missing")))
}

fn expect<'a, T: 'static>(a: &'a dyn Array, name: &str) -> Result<&'a T, ArrowError> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| ArrowError::SchemaError(format!("column `{name}` has type {}", a.data_type())))
}

struct Str<'a>(&'a StringArray);
impl Str<'_> {
    fn get(&self, i: usize) -> Option<&str> {
        self.0.is_valid(i).then(|| self.0.value(i))
    }
    fn or_empty(&self, i: usize) -> String {
        self.get(i).unwrap_or("").to_string()
    }
}

fn str_col<'a>(b: &'a RecordBatch, name: &str) -> Result<Str<'a>, ArrowError> {
    Ok(Str(expect::<StringArray>(col(b, name)?.as_ref(), name)?))
}

fn prim<T: arrow::datatypes::ArrowPrimitiveType>(a: &ArrayRef, i: usize) -> Option<T::Native> {
    let p = a.as_primitive_opt::<T>()?;
    p.is_valid(i).then(|| p.value(i))
}

fn ts_at(a: &ArrayRef, i: usize) -> Option<i64> {
    let p = a.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    p.is_valid(i).then(|| p.value(i))
}

fn read_any(s: &StructArray, i: usize) -> Option<AnyValue> {
    use any_value::Value as V;
    if s.is_null(i) {
        return None;
    }
    let ty = s.column(0).as_string::<i32>().value(i);
    let string = || s.column(1).as_string::<i32>();
    let value = match ty {
        "string" => Some(V::StringValue(string().value(i).to_string())),
        "int" => Some(V::IntValue(s.column(2).as_primitive::<Int64Type>().value(i))),
        "double" => Some(V::DoubleValue(s.column(3).as_primitive::<Float64Type>().value(i))),
        "bool" => Some(V::BoolValue(s.column(4).as_boolean().value(i))),
        "bytes" => Some(V::BytesValue(s.column(5).as_binary::<i32>().value(i).to_vec())),
        "array" | "kvlist" => json::decode_any_value(string().value(i)).ok().and_then(|a| a.value),
        "strindex" => Some(V::StringValueStrindex(s.column(2).as_primitive::<Int64Type>().value(i) as i32)),
        _ => None,
    };
    Some(AnyValue { value })
}

/// An attribute map column of either version, read row by row.
#[derive(Clone, Copy)]
enum MapReader<'a> {
    V1(&'a MapArray),
    V2 { map: &'a MapArray, types: Option<&'a StringArray> },
}

impl<'a> MapReader<'a> {
    /// `map` and its `_types` sibling (version 2); the version is told by the value type.
    fn new(name: &str, map: &'a ArrayRef, types: Option<&'a ArrayRef>) -> Result<Self, ArrowError> {
        let m = expect::<MapArray>(map.as_ref(), name)?;
        Ok(match m.values().data_type() {
            DataType::Utf8 => MapReader::V2 { map: m, types: types.and_then(|t| t.as_string_opt::<i32>()) },
            _ => MapReader::V1(m),
        })
    }

    fn of_batch(b: &'a RecordBatch, name: &str) -> Result<Self, ArrowError> {
        MapReader::new(name, col(b, name)?, b.column_by_name(&format!("{name}_types")))
    }

    fn of_struct(s: &'a StructArray, name: &str) -> Result<Self, ArrowError> {
        MapReader::new(name, field(s, name)?, s.column_by_name(&format!("{name}_types")))
    }

    /// Whether rows `i` and `j` hold the same map, compared in place (version 2; a version 1
    /// map is never called equal, so its rows are always read).
    fn same(&self, i: usize, j: usize) -> bool {
        let MapReader::V2 { map, types } = self else { return false };
        if map.is_null(i) || map.is_null(j) {
            return map.is_null(i) == map.is_null(j);
        }
        let offsets = map.value_offsets();
        let (a, b) = (offsets[i] as usize..offsets[i + 1] as usize, offsets[j] as usize..offsets[j + 1] as usize);
        if a.len() != b.len() {
            return false;
        }
        let (keys, vals) = (map.keys().as_string::<i32>(), map.values().as_string::<i32>());
        fn opt(t: &StringArray, k: usize) -> Option<&str> {
            t.is_valid(k).then(|| t.value(k))
        }
        let types_same = types.is_none_or(|t| opt(t, i) == opt(t, j));
        types_same && a.zip(b).all(|(x, y)| keys.value(x) == keys.value(y) && opt(vals, x) == opt(vals, y))
    }

    fn read(&self, i: usize) -> Option<Vec<KeyValue>> {
        let m = match self {
            MapReader::V1(m) | MapReader::V2 { map: m, .. } => *m,
        };
        if m.is_null(i) {
            return None;
        }
        let offsets = m.value_offsets();
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        let keys = m.keys().as_string::<i32>();
        let kv = |j: usize, value: Option<AnyValue>| KeyValue {
            key: keys.value(j).to_string(),
            value,
            ..Default::default()
        };
        Some(match self {
            MapReader::V1(m) => {
                let vals = m.values().as_struct();
                (start..end).map(|j| kv(j, read_any(vals, j))).collect()
            }
            MapReader::V2 { map, types } => {
                let vals = map.values().as_string::<i32>();
                let row_types = types.filter(|t| t.is_valid(i)).map(|t| t.value(i).as_bytes());
                (start..end)
                    .map(|j| {
                        let t = row_types.and_then(|t| t.get(j - start).copied()).unwrap_or(T_STRING);
                        kv(j, value_from_text(t, vals.is_valid(j).then(|| vals.value(j))))
                    })
                    .collect()
            }
        })
    }
}

/// A column of one AnyValue per row (log bodies), either version.
enum AnyReader<'a> {
    V1(&'a StructArray),
    V2 { text: &'a StringArray, types: Option<&'a StringArray> },
}

impl<'a> AnyReader<'a> {
    fn of_batch(b: &'a RecordBatch, name: &str) -> Result<Self, ArrowError> {
        let c = col(b, name)?;
        Ok(match c.data_type() {
            DataType::Utf8 => AnyReader::V2 {
                text: expect::<StringArray>(c.as_ref(), name)?,
                types: b.column_by_name(&format!("{name}_type")).and_then(|t| t.as_string_opt::<i32>()),
            },
            _ => AnyReader::V1(expect::<StructArray>(c.as_ref(), name)?),
        })
    }

    fn read(&self, i: usize) -> Option<AnyValue> {
        match self {
            AnyReader::V1(s) => read_any(s, i),
            AnyReader::V2 { text, types } => {
                let t = types.filter(|t| t.is_valid(i)).and_then(|t| t.value(i).as_bytes().first().copied());
                value_from_text(t.unwrap_or(T_STRING), text.is_valid(i).then(|| text.value(i)))
            }
        }
    }
}

/// A struct's child column by name, or an error naming it.
fn field<'a>(s: &'a StructArray, name: &str) -> Result<&'a ArrayRef, ArrowError> {
    s.column_by_name(name).ok_or_else(|| ArrowError::SchemaError(format!("field `{name}` is missing")))
}

fn list_range(l: &ListArray, i: usize) -> std::ops::Range<usize> {
    let o = l.value_offsets();
    o[i] as usize..o[i + 1] as usize
}

/// Context columns of row `i`; consecutive equal contexts are shared.
struct CtxReader<'a> {
    res_attrs: MapReader<'a>,
    res_dropped: &'a ArrayRef,
    res_url: Str<'a>,
    res_refs: Str<'a>,
    scope_name: Str<'a>,
    scope_version: Str<'a>,
    scope_attrs: MapReader<'a>,
    scope_dropped: &'a ArrayRef,
    scope_url: Str<'a>,
    /// Contexts read lately, with a row that holds each, most recent last.
    recent: Vec<(usize, Arc<Ctx>)>,
}

/// Contexts a [`CtxReader`] remembers: rows sorted by time interleave a few resources.
const RECENT_CTX: usize = 8;

impl<'a> CtxReader<'a> {
    fn new(b: &'a RecordBatch) -> Result<Self, ArrowError> {
        Ok(CtxReader {
            res_attrs: MapReader::of_batch(b, "resource_attributes")?,
            res_dropped: col(b, "resource_dropped_attributes_count")?,
            res_url: str_col(b, "resource_schema_url")?,
            res_refs: str_col(b, "resource_entity_refs")?,
            scope_name: str_col(b, "scope_name")?,
            scope_version: str_col(b, "scope_version")?,
            scope_attrs: MapReader::of_batch(b, "scope_attributes")?,
            scope_dropped: col(b, "scope_dropped_attributes_count")?,
            scope_url: str_col(b, "scope_schema_url")?,
            recent: Vec::with_capacity(RECENT_CTX),
        })
    }

    /// Whether rows `i` and `j` have the same context, compared in place.
    fn same(&self, i: usize, j: usize) -> bool {
        let u32_same = |a: &ArrayRef| prim::<UInt32Type>(a, i) == prim::<UInt32Type>(a, j);
        let str_same = |s: &Str<'_>| s.get(i) == s.get(j);
        str_same(&self.scope_name)
            && str_same(&self.scope_version)
            && str_same(&self.res_url)
            && str_same(&self.scope_url)
            && str_same(&self.res_refs)
            && u32_same(self.res_dropped)
            && u32_same(self.scope_dropped)
            && self.res_attrs.same(i, j)
            && self.scope_attrs.same(i, j)
    }

    /// Row `i`'s context: a recent one when the row's columns equal its row's (no
    /// allocation), else read and remembered.
    fn get(&mut self, i: usize) -> Arc<Ctx> {
        if let Some(k) = self.recent.iter().rposition(|&(j, _)| self.same(i, j)) {
            return self.recent[k].1.clone();
        }
        let ctx = self.read(i);
        if self.recent.len() == RECENT_CTX {
            self.recent.remove(0);
        }
        self.recent.push((i, ctx.clone()));
        ctx
    }

    fn read(&mut self, i: usize) -> Arc<Ctx> {
        let resource = self.res_attrs.read(i).map(|attributes| Resource {
            attributes,
            dropped_attributes_count: prim::<UInt32Type>(self.res_dropped, i).unwrap_or(0),
            entity_refs: self.res_refs.get(i).and_then(|t| json::decode_entity_refs(t).ok()).unwrap_or_default(),
        });
        let scope = self.scope_name.get(i).map(|name| InstrumentationScope {
            name: name.to_string(),
            version: self.scope_version.or_empty(i),
            attributes: self.scope_attrs.read(i).unwrap_or_default(),
            dropped_attributes_count: prim::<UInt32Type>(self.scope_dropped, i).unwrap_or(0),
        });
        let ctx = Ctx {
            resource,
            resource_schema_url: self.res_url.or_empty(i),
            scope,
            scope_schema_url: self.scope_url.or_empty(i),
        };
        // A version 1 map is never `same`: share equal contexts all the same.
        match self.recent.iter().rev().find(|(_, c)| **c == ctx) {
            Some((_, c)) => c.clone(),
            None => Arc::new(ctx),
        }
    }
}

/// Decodes a record batch of `signal` back into rows.
pub fn decode(signal: Signal, b: &RecordBatch) -> Result<Rows, ArrowError> {
    match signal {
        Signal::Traces => decode_spans(b).map(Rows::Spans),
        Signal::Metrics => decode_points(b).map(Rows::Points),
        Signal::Logs => decode_logs(b).map(Rows::Logs),
    }
}

fn decode_spans(b: &RecordBatch) -> Result<Vec<Row<Span>>, ArrowError> {
    let start = col(b, "start_time")?;
    let end = col(b, "end_time")?;
    let (trace_id, span_id, parent) = (str_col(b, "trace_id")?, str_col(b, "span_id")?, str_col(b, "parent_span_id")?);
    let (trace_state, name, kind) = (str_col(b, "trace_state")?, str_col(b, "name")?, str_col(b, "kind")?);
    let (status_code, status_message) = (str_col(b, "status_code")?, str_col(b, "status_message")?);
    let status_present =
        col(b, "status_present")?.as_boolean_opt().ok_or_else(|| ArrowError::SchemaError("status_present".into()))?;
    let flags = col(b, "flags")?;
    let attrs = MapReader::of_batch(b, "attributes")?;
    let (dropped_attrs, dropped_events, dropped_links) =
        (col(b, "dropped_attributes_count")?, col(b, "dropped_events_count")?, col(b, "dropped_links_count")?);
    let events = expect::<ListArray>(col(b, "events")?.as_ref(), "events")?;
    let ev = events.values().as_struct();
    let (ev_time, ev_name, ev_attrs, ev_dropped) = (
        field(ev, "time")?,
        field(ev, "name")?.as_string::<i32>(),
        MapReader::of_struct(ev, "attributes")?,
        field(ev, "dropped_attributes_count")?,
    );
    let links = expect::<ListArray>(col(b, "links")?.as_ref(), "links")?;
    let lk = links.values().as_struct();
    let (lk_tid, lk_sid, lk_state) = (
        field(lk, "trace_id")?.as_string::<i32>(),
        field(lk, "span_id")?.as_string::<i32>(),
        field(lk, "trace_state")?.as_string::<i32>(),
    );
    let (lk_attrs, lk_dropped, lk_flags) =
        (MapReader::of_struct(lk, "attributes")?, field(lk, "dropped_attributes_count")?, field(lk, "flags")?);
    let mut ctx = CtxReader::new(b)?;
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let start_ns = ts_at(start, i).unwrap_or(0);
        let span = Span {
            trace_id: unhex(trace_id.get(i).unwrap_or("")),
            span_id: unhex(span_id.get(i).unwrap_or("")),
            trace_state: trace_state.or_empty(i),
            parent_span_id: parent.get(i).map(unhex).unwrap_or_default(),
            flags: prim::<UInt32Type>(flags, i).unwrap_or(0),
            name: name.or_empty(i),
            kind: enum_value(&SPAN_KINDS, name_or(&kind, i)),
            start_time_unix_nano: start_ns as u64,
            end_time_unix_nano: ts_at(end, i).unwrap_or(0) as u64,
            attributes: attrs.read(i).unwrap_or_default(),
            dropped_attributes_count: prim::<UInt32Type>(dropped_attrs, i).unwrap_or(0),
            events: list_range(events, i)
                .map(|j| span::Event {
                    time_unix_nano: ts_at(ev_time, j).unwrap_or(0) as u64,
                    name: ev_name.value(j).to_string(),
                    attributes: ev_attrs.read(j).unwrap_or_default(),
                    dropped_attributes_count: prim::<UInt32Type>(ev_dropped, j).unwrap_or(0),
                })
                .collect(),
            dropped_events_count: prim::<UInt32Type>(dropped_events, i).unwrap_or(0),
            links: list_range(links, i)
                .map(|j| span::Link {
                    trace_id: unhex(lk_tid.value(j)),
                    span_id: unhex(lk_sid.value(j)),
                    trace_state: if lk_state.is_valid(j) { lk_state.value(j).to_string() } else { String::new() },
                    attributes: lk_attrs.read(j).unwrap_or_default(),
                    dropped_attributes_count: prim::<UInt32Type>(lk_dropped, j).unwrap_or(0),
                    flags: prim::<UInt32Type>(lk_flags, j).unwrap_or(0),
                })
                .collect(),
            dropped_links_count: prim::<UInt32Type>(dropped_links, i).unwrap_or(0),
            status: status_present.value(i).then(|| Status {
                message: status_message.or_empty(i),
                code: enum_value(&STATUS_CODES, name_or(&status_code, i)),
            }),
        };
        out.push(Row { ts: start_ns, ctx: ctx.get(i), item: span });
    }
    Ok(out)
}

fn name_or<'a>(s: &'a Str<'a>, i: usize) -> &'a str {
    s.get(i).unwrap_or("")
}

fn decode_logs(b: &RecordBatch) -> Result<Vec<Row<LogRecord>>, ArrowError> {
    let (time, timestamp, observed) = (col(b, "time")?, col(b, "timestamp")?, col(b, "observed_timestamp")?);
    let sev = col(b, "severity_number")?;
    let (sev_text, trace_id, span_id, event_name) =
        (str_col(b, "severity_text")?, str_col(b, "trace_id")?, str_col(b, "span_id")?, str_col(b, "event_name")?);
    let body = AnyReader::of_batch(b, "body")?;
    let attrs = MapReader::of_batch(b, "attributes")?;
    let (dropped, flags) = (col(b, "dropped_attributes_count")?, col(b, "flags")?);
    let mut ctx = CtxReader::new(b)?;
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let rec = LogRecord {
            time_unix_nano: ts_at(timestamp, i).unwrap_or(0) as u64,
            observed_time_unix_nano: ts_at(observed, i).unwrap_or(0) as u64,
            severity_number: prim::<Int32Type>(sev, i).unwrap_or(0),
            severity_text: sev_text.or_empty(i),
            body: body.read(i),
            attributes: attrs.read(i).unwrap_or_default(),
            dropped_attributes_count: prim::<UInt32Type>(dropped, i).unwrap_or(0),
            flags: prim::<UInt32Type>(flags, i).unwrap_or(0),
            trace_id: trace_id.get(i).map(unhex).unwrap_or_default(),
            span_id: span_id.get(i).map(unhex).unwrap_or_default(),
            event_name: event_name.or_empty(i),
        };
        out.push(Row { ts: ts_at(time, i).unwrap_or(0), ctx: ctx.get(i), item: rec });
    }
    Ok(out)
}

fn u64s_at(l: &ListArray, i: usize) -> Option<Vec<u64>> {
    if l.is_null(i) {
        return None;
    }
    let v = l.values().as_primitive::<UInt64Type>();
    Some(list_range(l, i).map(|j| v.value(j)).collect())
}

fn decode_points(b: &RecordBatch) -> Result<Vec<Row<MetricPoint>>, ArrowError> {
    let (time, start) = (col(b, "time")?, col(b, "start_time")?);
    let (name, ty, unit, desc, temporality) = (
        str_col(b, "metric_name")?,
        str_col(b, "metric_type")?,
        str_col(b, "metric_unit")?,
        str_col(b, "metric_description")?,
        str_col(b, "aggregation_temporality")?,
    );
    let metadata = MapReader::of_batch(b, "metric_metadata")?;
    let monotonic =
        col(b, "is_monotonic")?.as_boolean_opt().ok_or_else(|| ArrowError::SchemaError("is_monotonic".into()))?;
    let attrs = MapReader::of_batch(b, "attributes")?;
    let flags = col(b, "flags")?;
    let (vd, vi, count, sum, min, max) = (
        col(b, "value_double")?,
        col(b, "value_int")?,
        col(b, "count")?,
        col(b, "sum")?,
        col(b, "min")?,
        col(b, "max")?,
    );
    let lists = |n: &str| -> Result<&ListArray, ArrowError> { expect::<ListArray>(col(b, n)?.as_ref(), n) };
    let (buckets, bounds) = (lists("bucket_counts")?, lists("explicit_bounds")?);
    let (scale, zero_count, zero_threshold) = (col(b, "scale")?, col(b, "zero_count")?, col(b, "zero_threshold")?);
    let (pos_off, pos_b, neg_off, neg_b) = (
        col(b, "positive_offset")?,
        lists("positive_bucket_counts")?,
        col(b, "negative_offset")?,
        lists("negative_bucket_counts")?,
    );
    let quantiles = lists("quantile_values")?;
    let qv = quantiles.values().as_struct();
    let exemplars = lists("exemplars")?;
    let ex = exemplars.values().as_struct();
    let (ex_time, ex_double, ex_int, ex_tid, ex_sid) = (
        field(ex, "time")?,
        field(ex, "value_double")?,
        field(ex, "value_int")?,
        field(ex, "trace_id")?,
        field(ex, "span_id")?,
    );
    let ex_attrs = MapReader::of_struct(ex, "filtered_attributes")?;
    let mut ctx = CtxReader::new(b)?;
    let mut last_header: Option<Arc<MetricHeader>> = None;
    let mut out = Vec::with_capacity(b.num_rows());
    for i in 0..b.num_rows() {
        let kind = MetricKind::parse(name_or(&ty, i))
            .ok_or_else(|| ArrowError::SchemaError(format!("unknown metric_type {:?}", ty.get(i))))?;
        let header = MetricHeader {
            name: name.or_empty(i),
            description: desc.or_empty(i),
            unit: unit.or_empty(i),
            metadata: metadata.read(i).unwrap_or_default(),
            kind,
            temporality: temporality.get(i).map(|t| enum_value(&TEMPORALITIES, t)).unwrap_or(0),
            monotonic: monotonic.is_valid(i) && monotonic.value(i),
        };
        let header = match &last_header {
            Some(h) if **h == header => h.clone(),
            _ => {
                let h = Arc::new(header);
                last_header = Some(h.clone());
                h
            }
        };
        let ex_list: Vec<Exemplar> = list_range(exemplars, i)
            .map(|j| Exemplar {
                filtered_attributes: ex_attrs.read(j).unwrap_or_default(),
                time_unix_nano: ts_at(ex_time, j).unwrap_or(0) as u64,
                value: prim::<Float64Type>(ex_double, j)
                    .map(exemplar::Value::AsDouble)
                    .or(prim::<Int64Type>(ex_int, j).map(exemplar::Value::AsInt)),
                span_id: str_at(ex_sid, j).map(unhex).unwrap_or_default(),
                trace_id: str_at(ex_tid, j).map(unhex).unwrap_or_default(),
            })
            .collect();
        let attributes = attrs.read(i).unwrap_or_default();
        let t = ts_at(time, i).unwrap_or(0);
        let st = ts_at(start, i).unwrap_or(0) as u64;
        let fl = prim::<UInt32Type>(flags, i).unwrap_or(0);
        let point = match kind {
            MetricKind::Gauge | MetricKind::Sum => Point::Number(NumberDataPoint {
                attributes,
                start_time_unix_nano: st,
                time_unix_nano: t as u64,
                exemplars: ex_list,
                flags: fl,
                value: prim::<Float64Type>(vd, i)
                    .map(number_data_point::Value::AsDouble)
                    .or(prim::<Int64Type>(vi, i).map(number_data_point::Value::AsInt)),
            }),
            MetricKind::Histogram => Point::Histogram(HistogramDataPoint {
                attributes,
                start_time_unix_nano: st,
                time_unix_nano: t as u64,
                count: prim::<UInt64Type>(count, i).unwrap_or(0),
                sum: prim::<Float64Type>(sum, i),
                bucket_counts: u64s_at(buckets, i).unwrap_or_default(),
                explicit_bounds: if bounds.is_null(i) {
                    Vec::new()
                } else {
                    list_range(bounds, i).map(|j| bounds.values().as_primitive::<Float64Type>().value(j)).collect()
                },
                exemplars: ex_list,
                flags: fl,
                min: prim::<Float64Type>(min, i),
                max: prim::<Float64Type>(max, i),
            }),
            MetricKind::ExponentialHistogram => Point::Exponential(ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano: st,
                time_unix_nano: t as u64,
                count: prim::<UInt64Type>(count, i).unwrap_or(0),
                sum: prim::<Float64Type>(sum, i),
                scale: prim::<Int32Type>(scale, i).unwrap_or(0),
                zero_count: prim::<UInt64Type>(zero_count, i).unwrap_or(0),
                positive: prim::<Int32Type>(pos_off, i)
                    .map(|offset| Buckets { offset, bucket_counts: u64s_at(pos_b, i).unwrap_or_default() }),
                negative: prim::<Int32Type>(neg_off, i)
                    .map(|offset| Buckets { offset, bucket_counts: u64s_at(neg_b, i).unwrap_or_default() }),
                flags: fl,
                exemplars: ex_list,
                min: prim::<Float64Type>(min, i),
                max: prim::<Float64Type>(max, i),
                zero_threshold: prim::<Float64Type>(zero_threshold, i).unwrap_or(0.0),
            }),
            MetricKind::Summary => Point::Summary(SummaryDataPoint {
                attributes,
                start_time_unix_nano: st,
                time_unix_nano: t as u64,
                count: prim::<UInt64Type>(count, i).unwrap_or(0),
                sum: prim::<Float64Type>(sum, i).unwrap_or(0.0),
                quantile_values: list_range(quantiles, i)
                    .map(|j| ValueAtQuantile {
                        quantile: qv.column(0).as_primitive::<Float64Type>().value(j),
                        value: qv.column(1).as_primitive::<Float64Type>().value(j),
                    })
                    .collect(),
                flags: fl,
            }),
        };
        out.push(Row { ts: t, ctx: ctx.get(i), item: MetricPoint { header, point } });
    }
    Ok(out)
}

fn str_at(a: &ArrayRef, i: usize) -> Option<&str> {
    let s = a.as_string_opt::<i32>()?;
    s.is_valid(i).then(|| s.value(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genai_slots_follow_the_column_tables() {
        let keys: Vec<&str> = GENAI_STRING_COLUMNS
            .iter()
            .chain(GENAI_INT_COLUMNS)
            .map(|(_, k)| *k)
            .chain([GENAI_COST_COLUMN.1])
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(genai_slot(k), Some(i), "{k}");
        }
        assert_eq!(genai_slot("gen_ai.request.temperature"), None);
        assert_eq!(genai_slot("gen_ai.request.model.x"), None);
    }

    #[test]
    fn genai_columns_take_the_first_occurrence_and_convert_numbers() {
        let kv = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let attrs = vec![
            kv("gen_ai.request.model", any_value::Value::StringValue("a".into())),
            kv("gen_ai.request.model", any_value::Value::StringValue("b".into())),
            kv("gen_ai.usage.input_tokens", any_value::Value::StringValue("12".into())),
            kv("gen_ai.usage.output_tokens", any_value::Value::DoubleValue(3.0)),
            kv("gen_ai.usage.cost", any_value::Value::IntValue(2)),
            kv("gen_ai.agent.name", any_value::Value::IntValue(7)),
        ];
        let g = GenAi::of(&attrs);
        assert_eq!(g.strings, [Some("a"), None, None, None, None]);
        assert_eq!(g.ints, [Some(12), Some(3), None, None, None]);
        assert_eq!(g.cost, Some(2.0));
    }

    /// Every kind of value, in attributes and as a log body, comes back exactly from
    /// both versions; version 2 stores strings without a type list.
    #[test]
    fn the_derived_columns_are_not_needed_to_decode() {
        let attrs = |model: &str| {
            vec![
                KeyValue {
                    key: "gen_ai.request.model".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(model.into())) }),
                    ..Default::default()
                },
                KeyValue {
                    key: "gen_ai.usage.input_tokens".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::IntValue(12)) }),
                    ..Default::default()
                },
            ]
        };
        let spans: Vec<Row<Span>> = (0..4)
            .map(|i| Row {
                ts: i,
                ctx: Arc::new(Ctx::default()),
                item: Span {
                    start_time_unix_nano: i as u64,
                    end_time_unix_nano: 9,
                    attributes: attrs("m"),
                    ..Default::default()
                },
            })
            .collect();
        for v in [Version::V1, Version::V2] {
            let rows: Rows = Rows::Spans(spans.clone());
            let full = encode_range(&rows, 0..4, v).unwrap();
            let derived = derived_columns(Signal::Traces);
            assert!(derived.len() > 10, "{derived:?}");
            let keep: Vec<usize> = (0..full.num_columns())
                .filter(|&i| !derived.contains(&full.schema().field(i).name().as_str()))
                .collect();
            let projected = full.project(&keep).unwrap();
            assert_eq!(decode(Signal::Traces, &projected).unwrap(), decode(Signal::Traces, &full).unwrap(), "{v:?}");
        }
    }

    #[test]
    fn interleaved_contexts_come_back_shared_and_right_in_both_versions() {
        use any_value::Value as V;
        let ctx = |service: &str, n: i64| {
            Arc::new(Ctx {
                resource: Some(Resource {
                    attributes: vec![
                        KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue { value: Some(V::StringValue(service.into())) }),
                            ..Default::default()
                        },
                        KeyValue {
                            key: "n".into(),
                            value: Some(AnyValue { value: Some(V::IntValue(n)) }),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                scope: Some(InstrumentationScope { name: "lib".into(), ..Default::default() }),
                ..Default::default()
            })
        };
        // Three resources, two differing only in a typed (int) value, interleaved by time.
        let ctxs = [ctx("a", 1), ctx("b", 1), ctx("a", 2)];
        let spans: Vec<Row<Span>> = (0..30)
            .map(|i| Row {
                ts: i,
                ctx: ctxs[i as usize % 3].clone(),
                item: Span { start_time_unix_nano: i as u64, ..Default::default() },
            })
            .collect();
        for v in [Version::V1, Version::V2] {
            let rows: Rows = Rows::Spans(spans.clone());
            let b = encode_range(&rows, 0..30, v).unwrap();
            let Rows::Spans(back) = decode(Signal::Traces, &b).unwrap() else { panic!() };
            for (r, want) in back.iter().zip(&spans) {
                assert_eq!(*r.ctx, *want.ctx, "{v:?} row {}", r.ts);
            }
            let mut distinct: Vec<*const Ctx> = back.iter().map(|r| Arc::as_ptr(&r.ctx)).collect();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "{v:?}: one shared context per resource");
        }
    }

    #[test]
    fn every_value_kind_round_trips_in_both_versions() {
        use any_value::Value as V;
        let values: Vec<Option<AnyValue>> = vec![
            Some(AnyValue { value: Some(V::StringValue("x".into())) }),
            Some(AnyValue { value: Some(V::StringValue(String::new())) }),
            Some(AnyValue { value: Some(V::IntValue(i64::MIN)) }),
            Some(AnyValue { value: Some(V::DoubleValue(0.1)) }),
            Some(AnyValue { value: Some(V::DoubleValue(1e300)) }),
            Some(AnyValue { value: Some(V::DoubleValue(f64::MIN_POSITIVE)) }),
            Some(AnyValue { value: Some(V::DoubleValue(f64::NEG_INFINITY)) }),
            Some(AnyValue { value: Some(V::BoolValue(false)) }),
            Some(AnyValue { value: Some(V::BytesValue(vec![0, 255, 7])) }),
            Some(AnyValue {
                value: Some(V::ArrayValue(otterline_core::pdata::common::ArrayValue {
                    values: vec![AnyValue { value: Some(V::IntValue(3)) }],
                })),
            }),
            Some(AnyValue {
                value: Some(V::KvlistValue(otterline_core::pdata::common::KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(AnyValue { value: Some(V::BoolValue(true)) }),
                        ..Default::default()
                    }],
                })),
            }),
            Some(AnyValue { value: None }),
            None,
        ];
        let attrs: Vec<KeyValue> = values
            .iter()
            .enumerate()
            .map(|(i, v)| KeyValue { key: format!("k{i}"), value: v.clone(), ..Default::default() })
            .collect();
        let strings_only = vec![KeyValue {
            key: "user.id".into(),
            value: Some(AnyValue { value: Some(V::StringValue("u-1".into())) }),
            ..Default::default()
        }];
        let ctx = Arc::new(Ctx::default());
        let spans: Vec<Row<Span>> = [attrs.clone(), strings_only.clone()]
            .into_iter()
            .map(|attributes| Row {
                ts: 5,
                ctx: ctx.clone(),
                item: Span { start_time_unix_nano: 5, attributes, ..Default::default() },
            })
            .collect();
        let logs: Vec<Row<LogRecord>> = values
            .iter()
            .map(|body| Row { ts: 7, ctx: ctx.clone(), item: LogRecord { body: body.clone(), ..Default::default() } })
            .collect();
        for v in [Version::V1, Version::V2] {
            let rows: Rows = Rows::Spans(spans.clone());
            let b = encode_range(&rows, 0..2, v).unwrap();
            assert_eq!(b.schema(), schema(Signal::Traces, v));
            let Rows::Spans(back) = decode(Signal::Traces, &b).unwrap() else { panic!() };
            assert_eq!(back[0].item.attributes, attrs, "{v:?}");
            assert_eq!(back[1].item.attributes, strings_only, "{v:?}");
            if v == Version::V2 {
                let types = b.column_by_name("attributes_types").unwrap().as_string::<i32>();
                assert_eq!(types.value(0), "ssiddddbyaken");
                assert!(types.is_null(1), "a row of strings needs no type list");
                let map = b.column_by_name("attributes").unwrap().as_map();
                assert_eq!(map.values().as_string::<i32>().value(4), "1e300");
            }
            let rows: Rows = Rows::Logs(logs.clone());
            let b = encode_range(&rows, 0..logs.len(), v).unwrap();
            let Rows::Logs(back) = decode(Signal::Logs, &b).unwrap() else { panic!() };
            let bodies: Vec<Option<AnyValue>> = back.into_iter().map(|r| r.item.body).collect();
            assert_eq!(bodies, values, "{v:?}");
        }
    }
}
