//! Items flattened out of OTLP batches (one per span, data point, log record) and
//! grouped back into batches.
//!
//! A [`Row`] holds its item (owned when read back from a file, borrowed from the batch
//! when flattened for writing) and shares its resource/scope context ([`Ctx`]) with the
//! other items of the same `Resource*`/`Scope*` entry. Its `ts` (Unix ns) is the
//! item's own timestamp: the partition and sort key of the archive.

use std::sync::Arc;

use otterline_core::pdata::common::InstrumentationScope;
use otterline_core::pdata::common::KeyValue;
use otterline_core::pdata::logs::{LogRecord, ResourceLogs, ScopeLogs};
use otterline_core::pdata::metrics::{
    metric, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use otterline_core::pdata::resource::Resource;
use otterline_core::pdata::trace::{ResourceSpans, ScopeSpans, Span};
use otterline_core::pdata::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
use otterline_core::Batch;

/// The resource and scope an item was sent with.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ctx {
    pub resource: Option<Resource>,
    pub resource_schema_url: String,
    pub scope: Option<InstrumentationScope>,
    pub scope_schema_url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row<T> {
    pub ts: i64,
    pub ctx: Arc<Ctx>,
    pub item: T,
}

/// Everything about a metric except its data points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricHeader {
    pub name: String,
    pub description: String,
    pub unit: String,
    pub metadata: Vec<KeyValue>,
    pub kind: MetricKind,
    pub temporality: i32,
    pub monotonic: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricKind {
    #[default]
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Sum => "sum",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
    pub fn parse(s: &str) -> Option<MetricKind> {
        Some(match s {
            "gauge" => MetricKind::Gauge,
            "sum" => MetricKind::Sum,
            "histogram" => MetricKind::Histogram,
            "exponential_histogram" => MetricKind::ExponentialHistogram,
            "summary" => MetricKind::Summary,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    Number(NumberDataPoint),
    Histogram(HistogramDataPoint),
    Exponential(ExponentialHistogramDataPoint),
    Summary(SummaryDataPoint),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub header: Arc<MetricHeader>,
    pub point: Point,
}

/// Rows of one signal: owned items by default, borrowed ones in [`RowRefs`].
#[derive(Debug, Clone, PartialEq)]
pub enum Rows<S = Span, L = LogRecord> {
    Spans(Vec<Row<S>>),
    Points(Vec<Row<MetricPoint>>),
    Logs(Vec<Row<L>>),
}

/// Rows whose spans and log records are borrowed from the batch they came in (data
/// points are copied: a row needs its metric's header next to the point).
pub type RowRefs<'a> = Rows<&'a Span, &'a LogRecord>;

impl<S, L> Rows<S, L> {
    /// Each row's timestamp, in order.
    pub fn timestamps(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            Rows::Spans(v) => Box::new(v.iter().map(|r| r.ts)),
            Rows::Points(v) => Box::new(v.iter().map(|r| r.ts)),
            Rows::Logs(v) => Box::new(v.iter().map(|r| r.ts)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rows::Spans(r) => r.len(),
            Rows::Points(r) => r.len(),
            Rows::Logs(r) => r.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `other`'s rows (of the same signal; rows of another are ignored).
    pub fn append(&mut self, other: Self) {
        match (self, other) {
            (Rows::Spans(a), Rows::Spans(b)) => a.extend(b),
            (Rows::Points(a), Rows::Points(b)) => a.extend(b),
            (Rows::Logs(a), Rows::Logs(b)) => a.extend(b),
            _ => {}
        }
    }

    /// Keeps the rows whose timestamp passes `keep`.
    pub fn retain_ts(&mut self, keep: impl Fn(i64) -> bool) {
        match self {
            Rows::Spans(v) => v.retain(|r| keep(r.ts)),
            Rows::Points(v) => v.retain(|r| keep(r.ts)),
            Rows::Logs(v) => v.retain(|r| keep(r.ts)),
        }
    }

    /// Sorts by timestamp; equal timestamps keep their order.
    pub fn sort_by_ts(&mut self) {
        match self {
            Rows::Spans(v) => v.sort_by_key(|r| r.ts),
            Rows::Points(v) => v.sort_by_key(|r| r.ts),
            Rows::Logs(v) => v.sort_by_key(|r| r.ts),
        }
    }
}

fn ctx(resource: &Option<Resource>, rurl: &str, scope: &Option<InstrumentationScope>, surl: &str) -> Arc<Ctx> {
    Arc::new(Ctx {
        resource: resource.clone(),
        resource_schema_url: rurl.to_string(),
        scope: scope.clone(),
        scope_schema_url: surl.to_string(),
    })
}

/// A span's own time: its start.
pub fn span_ts(s: &Span) -> i64 {
    s.start_time_unix_nano as i64
}

/// Every item's own timestamp ([`span_ts`], [`log_ts`], a data point's time), in batch
/// order, without flattening.
pub fn item_timestamps(batch: &Batch, mut f: impl FnMut(i64)) {
    match batch {
        Batch::Traces(r) => {
            r.resource_spans.iter().flat_map(|rs| &rs.scope_spans).flat_map(|ss| &ss.spans).for_each(|s| f(span_ts(s)))
        }
        Batch::Logs(r) => r
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .for_each(|l| f(log_ts(l))),
        Batch::Metrics(r) => {
            for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
                match &m.data {
                    Some(metric::Data::Gauge(g)) => g.data_points.iter().for_each(|p| f(p.time_unix_nano as i64)),
                    Some(metric::Data::Sum(s)) => s.data_points.iter().for_each(|p| f(p.time_unix_nano as i64)),
                    Some(metric::Data::Histogram(x)) => x.data_points.iter().for_each(|p| f(p.time_unix_nano as i64)),
                    Some(metric::Data::ExponentialHistogram(x)) => {
                        x.data_points.iter().for_each(|p| f(p.time_unix_nano as i64))
                    }
                    Some(metric::Data::Summary(x)) => x.data_points.iter().for_each(|p| f(p.time_unix_nano as i64)),
                    None => {}
                }
            }
        }
    }
}

/// A log record's own time: `time_unix_nano`, else `observed_time_unix_nano`.
pub fn log_ts(l: &LogRecord) -> i64 {
    let t = if l.time_unix_nano != 0 { l.time_unix_nano } else { l.observed_time_unix_nano };
    t as i64
}

/// Flattens a batch into rows that borrow its spans and log records.
pub fn flatten(batch: &Batch) -> RowRefs<'_> {
    match batch {
        Batch::Traces(r) => {
            let mut out = Vec::with_capacity(batch.item_count());
            for rs in &r.resource_spans {
                for ss in &rs.scope_spans {
                    let c = ctx(&rs.resource, &rs.schema_url, &ss.scope, &ss.schema_url);
                    out.extend(ss.spans.iter().map(|s| Row { ts: span_ts(s), ctx: c.clone(), item: s }));
                }
            }
            Rows::Spans(out)
        }
        Batch::Logs(r) => {
            let mut out = Vec::with_capacity(batch.item_count());
            for rl in &r.resource_logs {
                for sl in &rl.scope_logs {
                    let c = ctx(&rl.resource, &rl.schema_url, &sl.scope, &sl.schema_url);
                    out.extend(sl.log_records.iter().map(|l| Row { ts: log_ts(l), ctx: c.clone(), item: l }));
                }
            }
            Rows::Logs(out)
        }
        Batch::Metrics(r) => {
            let mut out = Vec::new();
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    let c = ctx(&rm.resource, &rm.schema_url, &sm.scope, &sm.schema_url);
                    for m in &sm.metrics {
                        flatten_metric(m, &c, &mut out);
                    }
                }
            }
            Rows::Points(out)
        }
    }
}

fn flatten_metric(m: &Metric, c: &Arc<Ctx>, out: &mut Vec<Row<MetricPoint>>) {
    let header = |kind, temporality, monotonic| {
        Arc::new(MetricHeader {
            name: m.name.clone(),
            description: m.description.clone(),
            unit: m.unit.clone(),
            metadata: m.metadata.clone(),
            kind,
            temporality,
            monotonic,
        })
    };
    let mut push = |h: &Arc<MetricHeader>, ts: u64, point: Point| {
        out.push(Row { ts: ts as i64, ctx: c.clone(), item: MetricPoint { header: h.clone(), point } })
    };
    match &m.data {
        Some(metric::Data::Gauge(g)) => {
            let h = header(MetricKind::Gauge, 0, false);
            g.data_points.iter().for_each(|p| push(&h, p.time_unix_nano, Point::Number(p.clone())));
        }
        Some(metric::Data::Sum(s)) => {
            let h = header(MetricKind::Sum, s.aggregation_temporality, s.is_monotonic);
            s.data_points.iter().for_each(|p| push(&h, p.time_unix_nano, Point::Number(p.clone())));
        }
        Some(metric::Data::Histogram(x)) => {
            let h = header(MetricKind::Histogram, x.aggregation_temporality, false);
            x.data_points.iter().for_each(|p| push(&h, p.time_unix_nano, Point::Histogram(p.clone())));
        }
        Some(metric::Data::ExponentialHistogram(x)) => {
            let h = header(MetricKind::ExponentialHistogram, x.aggregation_temporality, false);
            x.data_points.iter().for_each(|p| push(&h, p.time_unix_nano, Point::Exponential(p.clone())));
        }
        Some(metric::Data::Summary(x)) => {
            let h = header(MetricKind::Summary, 0, false);
            x.data_points.iter().for_each(|p| push(&h, p.time_unix_nano, Point::Summary(p.clone())));
        }
        // A metric without data points has no row to be.
        None => {}
    }
}

/// Groups rows back into one batch: consecutive rows with the same context share a
/// `Resource*`/`Scope*` entry (and, for metrics, the same metric).
pub fn group(rows: Rows) -> Batch {
    match rows {
        Rows::Spans(rows) => {
            let mut out: Vec<ResourceSpans> = Vec::new();
            let mut last: Option<Arc<Ctx>> = None;
            for r in rows {
                if !same(&last, &r.ctx) {
                    let c = &r.ctx;
                    out.push(ResourceSpans {
                        resource: c.resource.clone(),
                        scope_spans: vec![ScopeSpans {
                            scope: c.scope.clone(),
                            spans: Vec::new(),
                            schema_url: c.scope_schema_url.clone(),
                        }],
                        schema_url: c.resource_schema_url.clone(),
                    });
                    last = Some(r.ctx.clone());
                }
                if let Some(ss) = out.last_mut().and_then(|rs| rs.scope_spans.last_mut()) {
                    ss.spans.push(r.item);
                }
            }
            Batch::Traces(ExportTraceServiceRequest { resource_spans: out })
        }
        Rows::Logs(rows) => {
            let mut out: Vec<ResourceLogs> = Vec::new();
            let mut last: Option<Arc<Ctx>> = None;
            for r in rows {
                if !same(&last, &r.ctx) {
                    let c = &r.ctx;
                    out.push(ResourceLogs {
                        resource: c.resource.clone(),
                        scope_logs: vec![ScopeLogs {
                            scope: c.scope.clone(),
                            log_records: Vec::new(),
                            schema_url: c.scope_schema_url.clone(),
                        }],
                        schema_url: c.resource_schema_url.clone(),
                    });
                    last = Some(r.ctx.clone());
                }
                if let Some(sl) = out.last_mut().and_then(|rl| rl.scope_logs.last_mut()) {
                    sl.log_records.push(r.item);
                }
            }
            Batch::Logs(ExportLogsServiceRequest { resource_logs: out })
        }
        Rows::Points(rows) => {
            let mut out: Vec<ResourceMetrics> = Vec::new();
            let mut last: Option<Arc<Ctx>> = None;
            let mut last_header: Option<Arc<MetricHeader>> = None;
            for r in rows {
                if !same(&last, &r.ctx) {
                    let c = &r.ctx;
                    out.push(ResourceMetrics {
                        resource: c.resource.clone(),
                        scope_metrics: vec![ScopeMetrics {
                            scope: c.scope.clone(),
                            metrics: Vec::new(),
                            schema_url: c.scope_schema_url.clone(),
                        }],
                        schema_url: c.resource_schema_url.clone(),
                    });
                    last = Some(r.ctx.clone());
                    last_header = None;
                }
                let Some(sm) = out.last_mut().and_then(|rm| rm.scope_metrics.last_mut()) else { continue };
                let h = &r.item.header;
                let new_metric = !last_header.as_ref().is_some_and(|l| Arc::ptr_eq(l, h) || **l == **h);
                if new_metric {
                    sm.metrics.push(empty_metric(h));
                    last_header = Some(h.clone());
                }
                if let Some(m) = sm.metrics.last_mut() {
                    push_point(m, r.item.point);
                }
            }
            Batch::Metrics(ExportMetricsServiceRequest { resource_metrics: out })
        }
    }
}

fn same(last: &Option<Arc<Ctx>>, c: &Arc<Ctx>) -> bool {
    last.as_ref().is_some_and(|l| Arc::ptr_eq(l, c) || **l == **c)
}

fn empty_metric(h: &MetricHeader) -> Metric {
    let data = match h.kind {
        MetricKind::Gauge => metric::Data::Gauge(Gauge { data_points: Vec::new() }),
        MetricKind::Sum => metric::Data::Sum(Sum {
            data_points: Vec::new(),
            aggregation_temporality: h.temporality,
            is_monotonic: h.monotonic,
        }),
        MetricKind::Histogram => {
            metric::Data::Histogram(Histogram { data_points: Vec::new(), aggregation_temporality: h.temporality })
        }
        MetricKind::ExponentialHistogram => metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: Vec::new(),
            aggregation_temporality: h.temporality,
        }),
        MetricKind::Summary => metric::Data::Summary(Summary { data_points: Vec::new() }),
    };
    Metric {
        name: h.name.clone(),
        description: h.description.clone(),
        unit: h.unit.clone(),
        metadata: h.metadata.clone(),
        data: Some(data),
    }
}

fn push_point(m: &mut Metric, p: Point) {
    match (&mut m.data, p) {
        (Some(metric::Data::Gauge(g)), Point::Number(p)) => g.data_points.push(p),
        (Some(metric::Data::Sum(s)), Point::Number(p)) => s.data_points.push(p),
        (Some(metric::Data::Histogram(h)), Point::Histogram(p)) => h.data_points.push(p),
        (Some(metric::Data::ExponentialHistogram(h)), Point::Exponential(p)) => h.data_points.push(p),
        (Some(metric::Data::Summary(s)), Point::Summary(p)) => s.data_points.push(p),
        // The decoder builds headers and points together, so kinds always agree.
        _ => {}
    }
}
