//! Decoding OTLP export requests from protobuf, allocating each vector once and counting
//! what it allocates (`pdata::meter`, for [`batch_within`]).
//!
//! prost's generated decoders push repeated fields one element at a time: a request of
//! 100 spans grows (reallocates and copies) its span vector seven times, and every span
//! grows its attribute vector three times. On the receive path that was a tenth of the
//! CPU (`finish_grow`, `reserve`, `memmove` in the profile). [`traces`], [`metrics`] and
//! [`logs`] count a message's repeated fields (one walk over its tags, skipping the
//! payloads) and then fill vectors allocated at their final size. Repeated numbers
//! (histogram buckets and bounds) are read in their packed form, the encoding every SDK
//! writes; the unpacked form goes to prost. [`batch`] is the one place that picks the
//! decoder for each signal.
//!
//! Invariant: whenever this decoder returns a request, it is exactly what prost's
//! `Message::decode` returns for the same bytes. Anything it does not handle the way prost
//! does — malformed or truncated input, invalid UTF-8, a wire type that does not match
//! the field, a singular message field or a `oneof` that occurs twice (prost merges
//! those), groups, nesting deeper than [`MAX_DEPTH`] — makes it give up, and prost
//! decodes the bytes instead, so results and error messages stay prost's. The tests
//! compare both decoders on generated, hand-made and randomly corrupted requests.

use prost::{DecodeError, Message};

use otterline_core::pdata::common::{
    any_value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use otterline_core::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
use otterline_core::pdata::meter;
use otterline_core::pdata::metrics::{
    exemplar, exponential_histogram_data_point::Buckets, metric, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::trace::{span, ResourceSpans, ScopeSpans, Span, Status};
use otterline_core::pdata::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
use otterline_core::{Batch, Signal};

/// Nesting of attribute values (arrays and key-value lists inside values) handled here;
/// deeper requests go to prost, which has its own limit.
const MAX_DEPTH: u32 = 24;

/// Decodes one export request of `signal` (see the module docs).
pub fn batch(signal: Signal, bytes: &[u8]) -> Result<Batch, DecodeError> {
    match signal {
        Signal::Traces => traces(bytes).map(Batch::Traces),
        Signal::Metrics => metrics(bytes).map(Batch::Metrics),
        Signal::Logs => logs(bytes).map(Batch::Logs),
    }
}

/// Decodes a trace or log request allocating at most about `limit` bytes
/// (`pdata::meter`), without prost: `None` when that is not possible — the request needs
/// more, prost's decoder is needed, or it is a metrics request. The receivers then measure
/// the request (`footprint`), reserve that much and call [`batch`]. Ordinary requests
/// decode here, without the cost of measuring them first.
pub fn batch_within(signal: Signal, bytes: &[u8], limit: usize) -> Option<Batch> {
    let fast = match signal {
        Signal::Traces => |b: &[u8]| request(b).map(Batch::Traces),
        Signal::Logs => |b: &[u8]| logs_request(b).map(Batch::Logs),
        Signal::Metrics => |b: &[u8]| metrics_request(b).map(Batch::Metrics),
    };
    meter::within(limit, || fast(bytes)).0.ok()
}

/// Decodes an `ExportTraceServiceRequest` (see the module docs).
pub fn traces(bytes: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    or_prost(bytes, request)
}

/// Decodes an `ExportMetricsServiceRequest` (see the module docs).
pub fn metrics(bytes: &[u8]) -> Result<ExportMetricsServiceRequest, DecodeError> {
    or_prost(bytes, metrics_request)
}

/// Decodes an `ExportLogsServiceRequest` (see the module docs).
pub fn logs(bytes: &[u8]) -> Result<ExportLogsServiceRequest, DecodeError> {
    or_prost(bytes, logs_request)
}

/// `fast`'s result, or prost's where `fast` gives up.
fn or_prost<M: Message + Default>(bytes: &[u8], fast: fn(&[u8]) -> R<M>) -> Result<M, DecodeError> {
    fast(bytes).or_else(|GiveUp| M::decode(bytes))
}

/// This decoder leaves the input to prost.
#[derive(Debug)]
struct GiveUp;

type R<T> = Result<T, GiveUp>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A read position in a message body.
struct Cur<'a> {
    b: &'a [u8],
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Cur { b }
    }

    fn varint(&mut self) -> R<u64> {
        let b = self.b;
        if let Some(&x) = b.first() {
            if x < 0x80 {
                self.b = &b[1..];
                return Ok(x as u64);
            }
        }
        let mut v = 0u64;
        for (i, &x) in b.iter().enumerate().take(10) {
            v |= ((x & 0x7f) as u64) << (7 * i);
            if x < 0x80 {
                // A tenth byte may only carry the top bit of a u64.
                if i == 9 && x > 1 {
                    return Err(GiveUp);
                }
                self.b = &b[i + 1..];
                return Ok(v);
            }
        }
        Err(GiveUp)
    }

    /// The next field's (tag, wire type), or `None` at the end of the message.
    fn key(&mut self) -> R<Option<(u32, u8)>> {
        if self.b.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        if k > u32::MAX as u64 || k >> 3 == 0 {
            return Err(GiveUp);
        }
        Ok(Some(((k >> 3) as u32, (k & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.b.len() {
            return Err(GiveUp);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn len_delimited(&mut self, wt: u8) -> R<&'a [u8]> {
        expect(wt, LEN)?;
        let n = self.varint()?;
        self.take(usize::try_from(n).map_err(|_| GiveUp)?)
    }

    fn fixed64(&mut self, wt: u8) -> R<u64> {
        expect(wt, FIXED64)?;
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| GiveUp)?))
    }

    fn fixed32(&mut self, wt: u8) -> R<u32> {
        expect(wt, FIXED32)?;
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(b.try_into().map_err(|_| GiveUp)?))
    }

    fn uvarint(&mut self, wt: u8) -> R<u64> {
        expect(wt, VARINT)?;
        self.varint()
    }

    fn string(&mut self, wt: u8) -> R<String> {
        let b = self.len_delimited(wt)?;
        // Attribute keys and values are nearly always ASCII: a word-at-a-time check is
        // cheaper than full UTF-8 validation of short strings.
        if b.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            charge_bytes(b.len())?;
            return Ok(unsafe { String::from_utf8_unchecked(b.to_vec()) });
        }
        let s = std::str::from_utf8(b).map_err(|_| GiveUp)?;
        charge_bytes(b.len())?;
        Ok(s.to_owned())
    }

    fn bytes(&mut self, wt: u8) -> R<Vec<u8>> {
        let b = self.len_delimited(wt)?;
        charge_bytes(b.len())?;
        Ok(b.to_vec())
    }

    /// Skips a field this decoder does not keep (as prost skips unknown fields).
    fn skip(&mut self, wt: u8) -> R<()> {
        match wt {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => {
                let n = self.varint()?;
                self.take(usize::try_from(n).map_err(|_| GiveUp)?).map(drop)
            }
            FIXED32 => self.take(4).map(drop),
            // Groups (3, 4) and invalid wire types: prost's business.
            _ => Err(GiveUp),
        }
    }
}

fn expect(wt: u8, want: u8) -> R<()> {
    if wt == want {
        Ok(())
    } else {
        Err(GiveUp)
    }
}

/// How many length-delimited fields of each of `tags` a message body has.
fn count<const N: usize>(body: &[u8], tags: [u32; N]) -> R<[usize; N]> {
    let mut n = [0usize; N];
    let mut c = Cur::new(body);
    while let Some((tag, wt)) = c.key()? {
        if wt == LEN {
            if let Some(i) = tags.iter().position(|&t| t == tag) {
                n[i] += 1;
            }
        }
        c.skip(wt)?;
    }
    Ok(n)
}

/// The entries of field 1 of a message whose only field is `repeated … = 1` (the
/// request envelope, array values, key-value lists), each decoded by `item`.
fn field_1_entries<T>(b: &[u8], mut item: impl FnMut(&[u8]) -> R<T>) -> R<Vec<T>> {
    let [n] = count(b, [1])?;
    let mut out = alloc(n)?;
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.push(item(c.len_delimited(wt)?)?),
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

/// A vector for `n` elements, counted against the decode's memory limit
/// (`pdata::meter`; unlimited outside [`batch_within`]).
fn alloc<T>(n: usize) -> R<Vec<T>> {
    if meter::charge_vec::<T>(n) {
        Ok(Vec::with_capacity(n))
    } else {
        Err(GiveUp)
    }
}

/// Counts a copied string or byte field (see [`alloc`]).
fn charge_bytes(len: usize) -> R<()> {
    if meter::charge_bytes(len) {
        Ok(())
    } else {
        Err(GiveUp)
    }
}

/// Sets a singular message field; a second occurrence (which prost merges) gives up.
fn once<T>(slot: &mut Option<T>, v: T) -> R<()> {
    if slot.is_some() {
        return Err(GiveUp);
    }
    *slot = Some(v);
    Ok(())
}

/// The three envelope levels every signal shares: the request (repeated resource
/// messages, field 1), the resource message (resource 1, repeated scope messages 2,
/// schema URL 3) and the scope message (scope 1, repeated items 2, schema URL 3).
macro_rules! envelopes {
    ($request_fn:ident: $Request:ident { $resources:ident }, $resource_fn:ident: $Resource:ident { $scopes:ident },
     $scope_fn:ident: $Scope:ident { $items:ident }, $item_fn:ident) => {
        fn $request_fn(b: &[u8]) -> R<$Request> {
            Ok($Request { $resources: field_1_entries(b, $resource_fn)? })
        }

        fn $resource_fn(b: &[u8]) -> R<$Resource> {
            let [n] = count(b, [2])?;
            let mut out = $Resource { $scopes: alloc(n)?, ..Default::default() };
            let mut c = Cur::new(b);
            while let Some((tag, wt)) = c.key()? {
                match tag {
                    1 => once(&mut out.resource, resource(c.len_delimited(wt)?)?)?,
                    2 => out.$scopes.push($scope_fn(c.len_delimited(wt)?)?),
                    3 => out.schema_url = c.string(wt)?,
                    _ => c.skip(wt)?,
                }
            }
            Ok(out)
        }

        fn $scope_fn(b: &[u8]) -> R<$Scope> {
            let [n] = count(b, [2])?;
            let mut out = $Scope { $items: alloc(n)?, ..Default::default() };
            let mut c = Cur::new(b);
            while let Some((tag, wt)) = c.key()? {
                match tag {
                    1 => once(&mut out.scope, scope(c.len_delimited(wt)?)?)?,
                    2 => out.$items.push($item_fn(c.len_delimited(wt)?)?),
                    3 => out.schema_url = c.string(wt)?,
                    _ => c.skip(wt)?,
                }
            }
            Ok(out)
        }
    };
}

envelopes!(
    request: ExportTraceServiceRequest { resource_spans },
    resource_spans: ResourceSpans { scope_spans },
    scope_spans: ScopeSpans { spans },
    span
);
envelopes!(
    logs_request: ExportLogsServiceRequest { resource_logs },
    resource_logs: ResourceLogs { scope_logs },
    scope_logs: ScopeLogs { log_records },
    log_record
);

envelopes!(
    metrics_request: ExportMetricsServiceRequest { resource_metrics },
    resource_metrics: ResourceMetrics { scope_metrics },
    scope_metrics: ScopeMetrics { metrics },
    metric
);

fn metric(b: &[u8]) -> R<Metric> {
    use metric::Data;
    let [n] = count(b, [12])?;
    let mut out = Metric { metadata: alloc(n)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.name = c.string(wt)?,
            2 => out.description = c.string(wt)?,
            3 => out.unit = c.string(wt)?,
            5 => once(
                &mut out.data,
                Data::Gauge(Gauge { data_points: field_1_entries(c.len_delimited(wt)?, number_point)? }),
            )?,
            7 => once(&mut out.data, Data::Sum(sum(c.len_delimited(wt)?)?))?,
            9 => once(&mut out.data, Data::Histogram(histogram(c.len_delimited(wt)?)?))?,
            10 => once(&mut out.data, Data::ExponentialHistogram(exp_histogram(c.len_delimited(wt)?)?))?,
            11 => once(
                &mut out.data,
                Data::Summary(Summary { data_points: field_1_entries(c.len_delimited(wt)?, summary_point)? }),
            )?,
            12 => out.metadata.push(key_value(c.len_delimited(wt)?, 0)?),
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

/// The body of a gauge's siblings with temporality — a sum, histogram or exponential
/// histogram: its points (field 1, each read by `point`), its aggregation temporality (2)
/// and, for a sum (`monotonic`), whether it is monotonic (3).
fn points<P>(b: &[u8], point: fn(&[u8]) -> R<P>, monotonic: bool) -> R<(Vec<P>, i32, bool)> {
    let [n] = count(b, [1])?;
    let (mut points, mut temporality, mut is_monotonic) = (alloc(n)?, 0, false);
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => points.push(point(c.len_delimited(wt)?)?),
            2 => temporality = c.uvarint(wt)? as i32,
            3 if monotonic => is_monotonic = c.uvarint(wt)? != 0,
            _ => c.skip(wt)?,
        }
    }
    Ok((points, temporality, is_monotonic))
}

fn sum(b: &[u8]) -> R<Sum> {
    let (data_points, aggregation_temporality, is_monotonic) = points(b, number_point, true)?;
    Ok(Sum { data_points, aggregation_temporality, is_monotonic })
}

fn histogram(b: &[u8]) -> R<Histogram> {
    let (data_points, aggregation_temporality, _) = points(b, histogram_point, false)?;
    Ok(Histogram { data_points, aggregation_temporality })
}

fn exp_histogram(b: &[u8]) -> R<ExponentialHistogram> {
    let (data_points, aggregation_temporality, _) = points(b, exp_histogram_point, false)?;
    Ok(ExponentialHistogram { data_points, aggregation_temporality })
}

fn double(c: &mut Cur<'_>, wt: u8) -> R<f64> {
    c.fixed64(wt).map(f64::from_bits)
}

/// A `sint32` (zigzag), truncated to 32 bits as prost does.
fn sint32(c: &mut Cur<'_>, wt: u8) -> R<i32> {
    let v = c.uvarint(wt)? as u32;
    Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// A packed repeated 64-bit field (`fixed64`, `double`) read by `f`; the unpacked form, or
/// the field twice, is left to prost.
fn packed_64<T>(c: &mut Cur<'_>, wt: u8, out: &mut Vec<T>, f: fn(u64) -> T) -> R<()> {
    let b = c.len_delimited(wt)?;
    if !out.is_empty() || !b.len().is_multiple_of(8) {
        return Err(GiveUp);
    }
    *out = alloc(b.len() / 8)?;
    for x in b.chunks_exact(8) {
        out.push(f(u64::from_le_bytes(x.try_into().map_err(|_| GiveUp)?)));
    }
    Ok(())
}

fn number_point(b: &[u8]) -> R<NumberDataPoint> {
    use number_data_point::Value as V;
    let [na, ne] = count(b, [7, 5])?;
    let mut out = NumberDataPoint { attributes: alloc(na)?, exemplars: alloc(ne)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            2 => out.start_time_unix_nano = c.fixed64(wt)?,
            3 => out.time_unix_nano = c.fixed64(wt)?,
            4 => out.value = Some(V::AsDouble(double(&mut c, wt)?)),
            5 => out.exemplars.push(exemplar(c.len_delimited(wt)?)?),
            6 => out.value = Some(V::AsInt(c.fixed64(wt)? as i64)),
            7 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            8 => out.flags = c.uvarint(wt)? as u32,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn histogram_point(b: &[u8]) -> R<HistogramDataPoint> {
    let [na, ne] = count(b, [9, 8])?;
    let mut out = HistogramDataPoint { attributes: alloc(na)?, exemplars: alloc(ne)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            2 => out.start_time_unix_nano = c.fixed64(wt)?,
            3 => out.time_unix_nano = c.fixed64(wt)?,
            4 => out.count = c.fixed64(wt)?,
            5 => out.sum = Some(double(&mut c, wt)?),
            6 => packed_64(&mut c, wt, &mut out.bucket_counts, |x| x)?,
            7 => packed_64(&mut c, wt, &mut out.explicit_bounds, f64::from_bits)?,
            8 => out.exemplars.push(exemplar(c.len_delimited(wt)?)?),
            9 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            10 => out.flags = c.uvarint(wt)? as u32,
            11 => out.min = Some(double(&mut c, wt)?),
            12 => out.max = Some(double(&mut c, wt)?),
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn exp_histogram_point(b: &[u8]) -> R<ExponentialHistogramDataPoint> {
    let [na, ne] = count(b, [1, 11])?;
    let mut out = ExponentialHistogramDataPoint { attributes: alloc(na)?, exemplars: alloc(ne)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            2 => out.start_time_unix_nano = c.fixed64(wt)?,
            3 => out.time_unix_nano = c.fixed64(wt)?,
            4 => out.count = c.fixed64(wt)?,
            5 => out.sum = Some(double(&mut c, wt)?),
            6 => out.scale = sint32(&mut c, wt)?,
            7 => out.zero_count = c.fixed64(wt)?,
            8 => once(&mut out.positive, buckets(c.len_delimited(wt)?)?)?,
            9 => once(&mut out.negative, buckets(c.len_delimited(wt)?)?)?,
            10 => out.flags = c.uvarint(wt)? as u32,
            11 => out.exemplars.push(exemplar(c.len_delimited(wt)?)?),
            12 => out.min = Some(double(&mut c, wt)?),
            13 => out.max = Some(double(&mut c, wt)?),
            14 => out.zero_threshold = double(&mut c, wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn buckets(b: &[u8]) -> R<Buckets> {
    let mut out = Buckets::default();
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.offset = sint32(&mut c, wt)?,
            2 => {
                // Packed varints only (the unpacked form, or the field twice: prost).
                let p = c.len_delimited(wt)?;
                if !out.bucket_counts.is_empty() {
                    return Err(GiveUp);
                }
                out.bucket_counts = alloc(p.iter().filter(|&&x| x < 0x80).count())?;
                let mut v = Cur::new(p);
                while !v.b.is_empty() {
                    out.bucket_counts.push(v.varint()?);
                }
            }
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn summary_point(b: &[u8]) -> R<SummaryDataPoint> {
    let [na, nq] = count(b, [7, 6])?;
    let mut out = SummaryDataPoint { attributes: alloc(na)?, quantile_values: alloc(nq)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            2 => out.start_time_unix_nano = c.fixed64(wt)?,
            3 => out.time_unix_nano = c.fixed64(wt)?,
            4 => out.count = c.fixed64(wt)?,
            5 => out.sum = double(&mut c, wt)?,
            6 => out.quantile_values.push(quantile(c.len_delimited(wt)?)?),
            7 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            8 => out.flags = c.uvarint(wt)? as u32,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn quantile(b: &[u8]) -> R<ValueAtQuantile> {
    let mut out = ValueAtQuantile::default();
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.quantile = double(&mut c, wt)?,
            2 => out.value = double(&mut c, wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn exemplar(b: &[u8]) -> R<Exemplar> {
    use exemplar::Value as V;
    let [n] = count(b, [7])?;
    let mut out = Exemplar { filtered_attributes: alloc(n)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            2 => out.time_unix_nano = c.fixed64(wt)?,
            3 => out.value = Some(V::AsDouble(double(&mut c, wt)?)),
            4 => out.span_id = c.bytes(wt)?,
            5 => out.trace_id = c.bytes(wt)?,
            6 => out.value = Some(V::AsInt(c.fixed64(wt)? as i64)),
            7 => out.filtered_attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn log_record(b: &[u8]) -> R<LogRecord> {
    let [n] = count(b, [6])?;
    let mut out = LogRecord { attributes: alloc(n)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.time_unix_nano = c.fixed64(wt)?,
            2 => out.severity_number = c.uvarint(wt)? as i32,
            3 => out.severity_text = c.string(wt)?,
            5 => once(&mut out.body, any(c.len_delimited(wt)?, 1)?)?,
            6 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            7 => out.dropped_attributes_count = c.uvarint(wt)? as u32,
            8 => out.flags = c.fixed32(wt)?,
            9 => out.trace_id = c.bytes(wt)?,
            10 => out.span_id = c.bytes(wt)?,
            11 => out.observed_time_unix_nano = c.fixed64(wt)?,
            12 => out.event_name = c.string(wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn resource(b: &[u8]) -> R<Resource> {
    let [na, ne] = count(b, [1, 3])?;
    let mut out = Resource { attributes: alloc(na)?, entity_refs: alloc(ne)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            2 => out.dropped_attributes_count = c.uvarint(wt)? as u32,
            3 => out.entity_refs.push(entity_ref(c.len_delimited(wt)?)?),
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn entity_ref(b: &[u8]) -> R<EntityRef> {
    let [ni, nd] = count(b, [3, 4])?;
    let mut out = EntityRef { id_keys: alloc(ni)?, description_keys: alloc(nd)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.schema_url = c.string(wt)?,
            2 => out.r#type = c.string(wt)?,
            3 => out.id_keys.push(c.string(wt)?),
            4 => out.description_keys.push(c.string(wt)?),
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn scope(b: &[u8]) -> R<InstrumentationScope> {
    let [n] = count(b, [3])?;
    let mut out = InstrumentationScope { attributes: alloc(n)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.name = c.string(wt)?,
            2 => out.version = c.string(wt)?,
            3 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            4 => out.dropped_attributes_count = c.uvarint(wt)? as u32,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn span(b: &[u8]) -> R<Span> {
    let [na, ne, nl] = count(b, [9, 11, 13])?;
    let mut out = Span { attributes: alloc(na)?, events: alloc(ne)?, links: alloc(nl)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.trace_id = c.bytes(wt)?,
            2 => out.span_id = c.bytes(wt)?,
            3 => out.trace_state = c.string(wt)?,
            4 => out.parent_span_id = c.bytes(wt)?,
            5 => out.name = c.string(wt)?,
            6 => out.kind = c.uvarint(wt)? as i32,
            7 => out.start_time_unix_nano = c.fixed64(wt)?,
            8 => out.end_time_unix_nano = c.fixed64(wt)?,
            9 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            10 => out.dropped_attributes_count = c.uvarint(wt)? as u32,
            11 => out.events.push(event(c.len_delimited(wt)?)?),
            12 => out.dropped_events_count = c.uvarint(wt)? as u32,
            13 => out.links.push(link(c.len_delimited(wt)?)?),
            14 => out.dropped_links_count = c.uvarint(wt)? as u32,
            15 => once(&mut out.status, status(c.len_delimited(wt)?)?)?,
            16 => out.flags = c.fixed32(wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn event(b: &[u8]) -> R<span::Event> {
    let [n] = count(b, [3])?;
    let mut out = span::Event { attributes: alloc(n)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.time_unix_nano = c.fixed64(wt)?,
            2 => out.name = c.string(wt)?,
            3 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            4 => out.dropped_attributes_count = c.uvarint(wt)? as u32,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn link(b: &[u8]) -> R<span::Link> {
    let [n] = count(b, [4])?;
    let mut out = span::Link { attributes: alloc(n)?, ..Default::default() };
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.trace_id = c.bytes(wt)?,
            2 => out.span_id = c.bytes(wt)?,
            3 => out.trace_state = c.string(wt)?,
            4 => out.attributes.push(key_value(c.len_delimited(wt)?, 0)?),
            5 => out.dropped_attributes_count = c.uvarint(wt)? as u32,
            6 => out.flags = c.fixed32(wt)?,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn status(b: &[u8]) -> R<Status> {
    let mut out = Status::default();
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            2 => out.message = c.string(wt)?,
            3 => out.code = c.uvarint(wt)? as i32,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn key_value(b: &[u8], depth: u32) -> R<KeyValue> {
    let mut out = KeyValue::default();
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        match tag {
            1 => out.key = c.string(wt)?,
            2 => once(&mut out.value, any(c.len_delimited(wt)?, depth + 1)?)?,
            3 => out.key_strindex = c.uvarint(wt)? as i32,
            _ => c.skip(wt)?,
        }
    }
    Ok(out)
}

fn any(b: &[u8], depth: u32) -> R<AnyValue> {
    use any_value::Value as V;
    if depth > MAX_DEPTH {
        return Err(GiveUp);
    }
    let mut value = None;
    let mut c = Cur::new(b);
    while let Some((tag, wt)) = c.key()? {
        let v = match tag {
            1 => V::StringValue(c.string(wt)?),
            2 => V::BoolValue(c.uvarint(wt)? != 0),
            3 => V::IntValue(c.uvarint(wt)? as i64),
            4 => V::DoubleValue(f64::from_bits(c.fixed64(wt)?)),
            5 => V::ArrayValue(ArrayValue { values: field_1_entries(c.len_delimited(wt)?, |b| any(b, depth + 1))? }),
            6 => V::KvlistValue(KeyValueList {
                values: field_1_entries(c.len_delimited(wt)?, |b| key_value(b, depth + 1))?,
            }),
            7 => V::BytesValue(c.bytes(wt)?),
            8 => V::StringValueStrindex(c.uvarint(wt)? as i32),
            _ => {
                c.skip(wt)?;
                continue;
            }
        };
        // A second member of the oneof: prost replaces or merges; leave it to prost.
        once(&mut value, v)?;
    }
    Ok(AnyValue { value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use otterline_core::pdata::trace::status::StatusCode;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    /// A request that uses every field this decoder reads.
    fn everything() -> ExportTraceServiceRequest {
        use any_value::Value as V;
        let attrs = vec![
            kv("s", V::StringValue("héllo".into())),
            kv("b", V::BoolValue(true)),
            kv("i", V::IntValue(-42)),
            kv("d", V::DoubleValue(0.25)),
            kv("bytes", V::BytesValue(vec![0, 1, 255])),
            kv(
                "arr",
                V::ArrayValue(ArrayValue {
                    values: vec![AnyValue { value: Some(V::IntValue(1)) }, AnyValue { value: None }],
                }),
            ),
            kv("kv", V::KvlistValue(KeyValueList { values: vec![kv("inner", V::StringValue("x".into()))] })),
            kv("idx", V::StringValueStrindex(7)),
            KeyValue { key: String::new(), value: None, key_strindex: 3 },
        ];
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: "a=b".into(),
            parent_span_id: vec![3; 8],
            flags: 0x301,
            name: "chat gpt-4o".into(),
            kind: 3,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: u64::MAX,
            attributes: attrs.clone(),
            dropped_attributes_count: 4,
            events: vec![span::Event {
                time_unix_nano: 5,
                name: "ev".into(),
                attributes: attrs.clone(),
                dropped_attributes_count: 1,
            }],
            dropped_events_count: 2,
            links: vec![span::Link {
                trace_id: vec![9; 16],
                span_id: vec![8; 8],
                trace_state: "k=v".into(),
                attributes: attrs.clone(),
                dropped_attributes_count: 6,
                flags: 1,
            }],
            dropped_links_count: 3,
            status: Some(Status { message: "boom".into(), code: StatusCode::Error as i32 }),
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: attrs.clone(),
                        dropped_attributes_count: 9,
                        entity_refs: vec![EntityRef {
                            schema_url: "u".into(),
                            r#type: "service".into(),
                            id_keys: vec!["service.name".into(), "x".into()],
                            description_keys: vec!["d".into()],
                        }],
                    }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: Some(InstrumentationScope {
                                name: "lib".into(),
                                version: "1.0".into(),
                                attributes: attrs,
                                dropped_attributes_count: 1,
                            }),
                            spans: vec![span.clone(), Span::default(), span],
                            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                        },
                        ScopeSpans::default(),
                    ],
                    schema_url: "rs".into(),
                },
                ResourceSpans::default(),
            ],
        }
    }

    fn fast(bytes: &[u8]) -> Option<ExportTraceServiceRequest> {
        request(bytes).ok()
    }

    #[test]
    fn decodes_every_field_as_prost_does_without_falling_back() {
        let want = everything();
        let bytes = want.encode_to_vec();
        assert_eq!(fast(&bytes).as_ref(), Some(&want), "the fast path must handle this request itself");
        assert_eq!(traces(&bytes).unwrap(), want);
        assert_eq!(fast(&[]), Some(ExportTraceServiceRequest::default()));
    }

    #[test]
    fn sizes_vectors_exactly() {
        let bytes = everything().encode_to_vec();
        let got = fast(&bytes).unwrap();
        assert_eq!(got.resource_spans.capacity(), 2);
        let spans = &got.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.capacity(), 3);
        assert_eq!(spans[0].attributes.capacity(), 9);
    }

    #[test]
    fn generated_load_decodes_as_prost_does() {
        for n in [1, 7, 100] {
            let req = otterline_bench_like_request(n);
            let bytes = req.encode_to_vec();
            assert_eq!(fast(&bytes).as_ref(), Some(&req));
        }
    }

    /// GenAI-style spans like the load generator's (no dependency on the bench crate).
    fn otterline_bench_like_request(n: usize) -> ExportTraceServiceRequest {
        use any_value::Value as V;
        let spans = (0..n)
            .map(|i| Span {
                trace_id: (0..16).map(|b| (b * 7 + i) as u8).collect(),
                span_id: (0..8).map(|b| (b * 3 + i) as u8).collect(),
                name: format!("chat op-{i}"),
                kind: 3,
                start_time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
                end_time_unix_nano: 1_700_000_000_500_000_000 + i as u64,
                attributes: vec![
                    kv("gen_ai.operation.name", V::StringValue("chat".into())),
                    kv("gen_ai.request.model", V::StringValue("gpt-4o".into())),
                    kv("gen_ai.usage.input_tokens", V::IntValue(i as i64 * 13)),
                    kv("gen_ai.request.temperature", V::DoubleValue(0.2)),
                    kv("user.id", V::StringValue(format!("user-{i}"))),
                ],
                status: (i % 3 == 0).then(|| Status { message: String::new(), code: 1 }),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", V::StringValue("svc".into()))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                ..Default::default()
            }],
        }
    }

    /// Appends a field key.
    fn key(out: &mut Vec<u8>, tag: u32, wt: u8) {
        prost::encoding::encode_varint(((tag as u64) << 3) | wt as u64, out);
    }

    fn len_field(out: &mut Vec<u8>, tag: u32, body: &[u8]) {
        key(out, tag, LEN);
        prost::encoding::encode_varint(body.len() as u64, out);
        out.extend_from_slice(body);
    }

    #[test]
    fn unknown_fields_are_skipped_like_prost() {
        let mut span = Span { name: "s".into(), ..Default::default() }.encode_to_vec();
        key(&mut span, 99, VARINT);
        prost::encoding::encode_varint(300, &mut span);
        key(&mut span, 98, FIXED32);
        span.extend_from_slice(&[1, 2, 3, 4]);
        key(&mut span, 97, FIXED64);
        span.extend_from_slice(&[0; 8]);
        len_field(&mut span, 96, b"whatever");
        let mut ss = Vec::new();
        len_field(&mut ss, 2, &span);
        let mut rs = Vec::new();
        len_field(&mut rs, 2, &ss);
        let mut req = Vec::new();
        len_field(&mut req, 1, &rs);
        let want = ExportTraceServiceRequest::decode(&req[..]).unwrap();
        assert_eq!(fast(&req).as_ref(), Some(&want));
        assert_eq!(want.resource_spans[0].scope_spans[0].spans[0].name, "s");
    }

    #[test]
    fn merged_fields_and_malformed_input_go_to_prost() {
        // A status given twice: prost merges the two messages (message from the first,
        // code from the second); the fast path gives up and the result is prost's.
        let mut span = Vec::new();
        len_field(&mut span, 15, &Status { message: "first".into(), code: 0 }.encode_to_vec());
        len_field(&mut span, 15, &Status { message: String::new(), code: 2 }.encode_to_vec());
        let mut ss = Vec::new();
        len_field(&mut ss, 2, &span);
        let mut rs = Vec::new();
        len_field(&mut rs, 2, &ss);
        let mut req = Vec::new();
        len_field(&mut req, 1, &rs);
        assert!(fast(&req).is_none());
        let got = traces(&req).unwrap();
        assert_eq!(got, ExportTraceServiceRequest::decode(&req[..]).unwrap());
        assert_eq!(
            got.resource_spans[0].scope_spans[0].spans[0].status,
            Some(Status { message: "first".into(), code: 2 })
        );

        // Truncated input and invalid UTF-8: prost's error, word for word.
        let bytes = everything().encode_to_vec();
        let cut = &bytes[..bytes.len() - 3];
        assert_eq!(
            traces(cut).unwrap_err().to_string(),
            ExportTraceServiceRequest::decode(cut).unwrap_err().to_string()
        );
        let mut bad = Vec::new();
        len_field(&mut bad, 5, &[0xff, 0xfe]);
        let mut ss = Vec::new();
        len_field(&mut ss, 2, &bad);
        let mut rs = Vec::new();
        len_field(&mut rs, 2, &ss);
        let mut req = Vec::new();
        len_field(&mut req, 1, &rs);
        let e = traces(&req).unwrap_err().to_string();
        assert_eq!(e, ExportTraceServiceRequest::decode(&req[..]).unwrap_err().to_string());
        assert!(e.contains("UTF-8") || e.contains("utf-8"), "{e}");
    }

    /// A logs request that uses every field, sharing the trace request's resource and scope.
    fn every_log_field() -> ExportLogsServiceRequest {
        let t = everything();
        let rs = &t.resource_spans[0];
        let attrs = rs.resource.as_ref().unwrap().attributes.clone();
        let record = LogRecord {
            time_unix_nano: 1,
            observed_time_unix_nano: 2,
            severity_number: 17,
            severity_text: "ERROR".into(),
            body: Some(AnyValue { value: Some(any_value::Value::StringValue("boom".into())) }),
            attributes: attrs,
            dropped_attributes_count: 3,
            flags: 1,
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            event_name: "gen_ai.client.inference.operation.details".into(),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: rs.resource.clone(),
                scope_logs: vec![
                    ScopeLogs {
                        scope: rs.scope_spans[0].scope.clone(),
                        log_records: vec![record, LogRecord::default()],
                        schema_url: "s".into(),
                    },
                    ScopeLogs::default(),
                ],
                schema_url: "r".into(),
            }],
        }
    }

    #[test]
    fn logs_decode_as_prost_does() {
        decodes_as_prost_does(every_log_field(), logs_request, logs);
    }

    /// `want` decodes by the fast path itself (`fast`), and every single-byte corruption of
    /// it decodes by `decode` to what prost gives (equal, or equal bytes: NaN), or fails
    /// with prost's error.
    fn decodes_as_prost_does<M: Message + Default + PartialEq + std::fmt::Debug>(
        want: M,
        fast: fn(&[u8]) -> R<M>,
        decode: fn(&[u8]) -> Result<M, DecodeError>,
    ) {
        let bytes = want.encode_to_vec();
        assert_eq!(fast(&bytes).ok().as_ref(), Some(&want), "the fast path must handle this request itself");
        assert_eq!(decode(&bytes).unwrap(), want);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for i in 0..bytes.len() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut m = bytes.clone();
            m[i] = state as u8;
            match (decode(&m), M::decode(&m[..])) {
                (Ok(a), Ok(b)) => assert!(a == b || a.encode_to_vec() == b.encode_to_vec(), "byte {i}"),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                (a, b) => panic!("byte {i}: ours {a:?}, prost {b:?}"),
            }
        }
    }

    /// A metrics request with every point type and every field set.
    fn every_metric_field() -> ExportMetricsServiceRequest {
        use otterline_core::pdata::metrics::exponential_histogram_data_point::Buckets;
        let attrs =
            || vec![kv("k", any_value::Value::StringValue("v".into())), kv("n", any_value::Value::IntValue(-4))];
        let exemplars = || {
            vec![
                Exemplar {
                    filtered_attributes: attrs(),
                    time_unix_nano: 9,
                    span_id: vec![1; 8],
                    trace_id: vec![2; 16],
                    value: Some(exemplar::Value::AsDouble(0.5)),
                },
                Exemplar { value: Some(exemplar::Value::AsInt(-7)), ..Default::default() },
            ]
        };
        let metric = |name: &str, data: metric::Data| Metric {
            name: name.into(),
            description: "d".into(),
            unit: "s".into(),
            metadata: attrs(),
            data: Some(data),
        };
        let number = |v: number_data_point::Value| NumberDataPoint {
            attributes: attrs(),
            start_time_unix_nano: 1,
            time_unix_nano: 2,
            exemplars: exemplars(),
            flags: 1,
            value: Some(v),
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource { attributes: attrs(), ..Default::default() }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope { name: "s".into(), ..Default::default() }),
                    metrics: vec![
                        metric(
                            "g",
                            metric::Data::Gauge(Gauge {
                                data_points: vec![number(number_data_point::Value::AsDouble(1.5))],
                            }),
                        ),
                        metric(
                            "c",
                            metric::Data::Sum(Sum {
                                data_points: vec![
                                    number(number_data_point::Value::AsInt(-3)),
                                    NumberDataPoint::default(),
                                ],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            }),
                        ),
                        metric(
                            "h",
                            metric::Data::Histogram(Histogram {
                                data_points: vec![HistogramDataPoint {
                                    attributes: attrs(),
                                    start_time_unix_nano: 1,
                                    time_unix_nano: 2,
                                    count: 6,
                                    sum: Some(3.0),
                                    bucket_counts: vec![1, 2, 3],
                                    explicit_bounds: vec![0.1, 1.0],
                                    exemplars: exemplars(),
                                    flags: 1,
                                    min: Some(0.0),
                                    max: Some(9.0),
                                }],
                                aggregation_temporality: 1,
                            }),
                        ),
                        metric(
                            "e",
                            metric::Data::ExponentialHistogram(ExponentialHistogram {
                                data_points: vec![ExponentialHistogramDataPoint {
                                    attributes: attrs(),
                                    start_time_unix_nano: 1,
                                    time_unix_nano: 2,
                                    count: 5,
                                    sum: Some(2.5),
                                    scale: -3,
                                    zero_count: 1,
                                    positive: Some(Buckets { offset: -2, bucket_counts: vec![1, 300, 0] }),
                                    negative: Some(Buckets { offset: 4, bucket_counts: vec![] }),
                                    flags: 1,
                                    exemplars: exemplars(),
                                    min: Some(-1.0),
                                    max: Some(7.0),
                                    zero_threshold: 0.001,
                                }],
                                aggregation_temporality: 2,
                            }),
                        ),
                        metric(
                            "q",
                            metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    attributes: attrs(),
                                    start_time_unix_nano: 1,
                                    time_unix_nano: 2,
                                    count: 4,
                                    sum: 8.0,
                                    quantile_values: vec![
                                        ValueAtQuantile { quantile: 0.5, value: 1.0 },
                                        ValueAtQuantile::default(),
                                    ],
                                    flags: 1,
                                }],
                            }),
                        ),
                    ],
                    schema_url: "u".into(),
                }],
                schema_url: "r".into(),
            }],
        }
    }

    #[test]
    fn metrics_decode_as_prost_does() {
        decodes_as_prost_does(every_metric_field(), metrics_request, metrics);
    }

    #[test]
    fn corrupted_requests_never_disagree_with_prost() {
        // Every single-byte change of a request that uses every field: whatever the fast
        // path returns must be what prost returns, and errors must match prost's.
        let bytes = everything().encode_to_vec();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut disagreements = 0;
        let mut fast_ok = 0;
        for i in 0..bytes.len() {
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut m = bytes.clone();
                m[i] = state as u8;
                let theirs = ExportTraceServiceRequest::decode(&m[..]);
                if let Some(ours) = fast(&m) {
                    fast_ok += 1;
                    if theirs.as_ref().ok() != Some(&ours) {
                        disagreements += 1;
                    }
                }
                match (traces(&m), theirs) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    (a, b) => panic!("byte {i}: ours {a:?}, prost {b:?}"),
                }
            }
        }
        assert_eq!(disagreements, 0);
        // Most single-byte changes of string contents still decode on the fast path.
        assert!(fast_ok > bytes.len(), "fast path handled only {fast_ok} of {} variants", bytes.len() * 4);
    }
}
