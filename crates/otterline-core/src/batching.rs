//! Batching per signal, with the OpenTelemetry Collector's `batch` semantics: the one
//! implementation behind the `batch` processor and the forwarding exporters' batcher.
//!
//! Per signal, incoming batches are appended until `send_batch_size` items (spans, data
//! points, log records) are held, then let out; what is held is also let out `timeout`
//! after the first item arrived, and at [`Batcher::flush`]. With `send_batch_max_size` > 0,
//! no batch leaves larger than that: bigger ones are split at item boundaries (resource and
//! scope entries are duplicated as needed).

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::pdata::{logs, metric_point_count, metrics, trace};
use crate::pdata::{ExportLogsServiceRequest, ExportMetricsServiceRequest, ExportTraceServiceRequest};
use crate::{Batch, Signal};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub send_batch_size: usize,
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
    /// 0: no upper limit.
    pub send_batch_max_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { send_batch_size: 8192, timeout: Duration::from_millis(200), send_batch_max_size: 0 }
    }
}

struct Held {
    batch: Batch,
    items: usize,
    since: Instant,
}

pub struct Batcher {
    cfg: BatchConfig,
    held: [Option<Held>; 3],
}

impl Batcher {
    pub fn new(cfg: BatchConfig) -> Self {
        Batcher { cfg, held: [None, None, None] }
    }

    /// Takes `batch`; lets out into `out` what reached `send_batch_size`.
    pub fn add(&mut self, batch: Batch, out: &mut Vec<Batch>) {
        let s = batch.signal();
        let items = batch.item_count();
        match &mut self.held[s.index()] {
            Some(h) => {
                append(&mut h.batch, batch);
                h.items += items;
            }
            slot @ None => *slot = Some(Held { batch, items, since: Instant::now() }),
        }
        if self.held[s.index()].as_ref().is_some_and(|h| h.items >= self.cfg.send_batch_size) {
            self.emit(s, out);
        }
    }

    /// When the oldest held batch times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.iter().flatten().map(|h| h.since + self.cfg.timeout).min()
    }

    /// Lets out what has been held for `timeout` by `now`.
    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Batch>) {
        for s in Signal::ALL {
            if self.held[s.index()].as_ref().is_some_and(|h| h.since + self.cfg.timeout <= now) {
                self.emit(s, out);
            }
        }
    }

    /// Lets out everything held.
    pub fn flush(&mut self, out: &mut Vec<Batch>) {
        for s in Signal::ALL {
            self.emit(s, out);
        }
    }

    fn emit(&mut self, s: Signal, out: &mut Vec<Batch>) {
        if let Some(h) = self.held[s.index()].take() {
            let max = self.cfg.send_batch_max_size;
            if max > 0 && h.items > max {
                out.extend(split(h.batch, max));
            } else {
                out.push(h.batch);
            }
        }
    }
}

/// Appends `b`'s resource entries to `a` (same signal).
fn append(a: &mut Batch, b: Batch) {
    match (a, b) {
        (Batch::Traces(a), Batch::Traces(b)) => a.resource_spans.extend(b.resource_spans),
        (Batch::Metrics(a), Batch::Metrics(b)) => a.resource_metrics.extend(b.resource_metrics),
        (Batch::Logs(a), Batch::Logs(b)) => a.resource_logs.extend(b.resource_logs),
        _ => {}
    }
}

/// Splits a batch into batches of at most `max` items, keeping item order.
pub fn split(batch: Batch, max: usize) -> Vec<Batch> {
    match batch {
        Batch::Traces(r) => {
            let mut out: Vec<ExportTraceServiceRequest> = vec![ExportTraceServiceRequest::default()];
            let mut n = 0;
            for rs in r.resource_spans {
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        if n == max {
                            out.push(ExportTraceServiceRequest::default());
                            n = 0;
                        }
                        let cur = out.last_mut().expect("out is never empty");
                        let same_rs = cur
                            .resource_spans
                            .last()
                            .is_some_and(|l| l.resource == rs.resource && l.schema_url == rs.schema_url);
                        if !same_rs {
                            cur.resource_spans.push(trace::ResourceSpans {
                                resource: rs.resource.clone(),
                                scope_spans: vec![],
                                schema_url: rs.schema_url.clone(),
                            });
                        }
                        let last_rs = cur.resource_spans.last_mut().expect("just ensured");
                        let same_ss = last_rs
                            .scope_spans
                            .last()
                            .is_some_and(|l| l.scope == ss.scope && l.schema_url == ss.schema_url);
                        if !same_ss {
                            last_rs.scope_spans.push(trace::ScopeSpans {
                                scope: ss.scope.clone(),
                                spans: vec![],
                                schema_url: ss.schema_url.clone(),
                            });
                        }
                        last_rs.scope_spans.last_mut().expect("just ensured").spans.push(span);
                        n += 1;
                    }
                }
            }
            out.into_iter().map(Batch::Traces).collect()
        }
        Batch::Logs(r) => {
            let mut out: Vec<ExportLogsServiceRequest> = vec![ExportLogsServiceRequest::default()];
            let mut n = 0;
            for rl in r.resource_logs {
                for sl in rl.scope_logs {
                    for rec in sl.log_records {
                        if n == max {
                            out.push(ExportLogsServiceRequest::default());
                            n = 0;
                        }
                        let cur = out.last_mut().expect("out is never empty");
                        if !cur
                            .resource_logs
                            .last()
                            .is_some_and(|l| l.resource == rl.resource && l.schema_url == rl.schema_url)
                        {
                            cur.resource_logs.push(logs::ResourceLogs {
                                resource: rl.resource.clone(),
                                scope_logs: vec![],
                                schema_url: rl.schema_url.clone(),
                            });
                        }
                        let last = cur.resource_logs.last_mut().expect("just ensured");
                        if !last.scope_logs.last().is_some_and(|l| l.scope == sl.scope && l.schema_url == sl.schema_url)
                        {
                            last.scope_logs.push(logs::ScopeLogs {
                                scope: sl.scope.clone(),
                                log_records: vec![],
                                schema_url: sl.schema_url.clone(),
                            });
                        }
                        last.scope_logs.last_mut().expect("just ensured").log_records.push(rec);
                        n += 1;
                    }
                }
            }
            out.into_iter().map(Batch::Logs).collect()
        }
        Batch::Metrics(r) => {
            // Metrics are split by whole metrics (a metric's points stay together), which is
            // what the Collector does too unless a single metric exceeds the limit.
            let mut out: Vec<ExportMetricsServiceRequest> = vec![ExportMetricsServiceRequest::default()];
            let mut n = 0;
            for rm in r.resource_metrics {
                for sm in rm.scope_metrics {
                    for m in sm.metrics {
                        let points = metric_point_count(&m);
                        if n > 0 && n + points > max {
                            out.push(ExportMetricsServiceRequest::default());
                            n = 0;
                        }
                        let cur = out.last_mut().expect("out is never empty");
                        if !cur
                            .resource_metrics
                            .last()
                            .is_some_and(|l| l.resource == rm.resource && l.schema_url == rm.schema_url)
                        {
                            cur.resource_metrics.push(metrics::ResourceMetrics {
                                resource: rm.resource.clone(),
                                scope_metrics: vec![],
                                schema_url: rm.schema_url.clone(),
                            });
                        }
                        let last = cur.resource_metrics.last_mut().expect("just ensured");
                        if !last
                            .scope_metrics
                            .last()
                            .is_some_and(|l| l.scope == sm.scope && l.schema_url == sm.schema_url)
                        {
                            last.scope_metrics.push(metrics::ScopeMetrics {
                                scope: sm.scope.clone(),
                                metrics: vec![],
                                schema_url: sm.schema_url.clone(),
                            });
                        }
                        last.scope_metrics.last_mut().expect("just ensured").metrics.push(m);
                        n += points;
                    }
                }
            }
            out.into_iter().map(Batch::Metrics).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdata::common::InstrumentationScope;
    use crate::pdata::resource::Resource;

    fn spans(resource: &str, n: usize) -> Batch {
        Batch::Traces(ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![crate::pdata::common::KeyValue {
                        key: "service.name".into(),
                        value: Some(crate::pdata::common::AnyValue {
                            value: Some(crate::pdata::common::any_value::Value::StringValue(resource.into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![trace::ScopeSpans {
                    scope: Some(InstrumentationScope { name: "s".into(), ..Default::default() }),
                    spans: (0..n)
                        .map(|i| trace::Span { name: format!("{resource}-{i}"), ..Default::default() })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    fn names(b: &Batch) -> Vec<String> {
        match b {
            Batch::Traces(r) => r
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .flat_map(|ss| &ss.spans)
                .map(|s| s.name.clone())
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn size_trigger_timeout_and_shutdown() {
        let mut p = Batcher::new(BatchConfig {
            send_batch_size: 10,
            timeout: Duration::from_millis(50),
            send_batch_max_size: 0,
        });
        let mut out = Vec::new();
        p.add(spans("a", 4), &mut out);
        p.add(spans("b", 4), &mut out);
        assert!(out.is_empty(), "8 < 10: held");
        let deadline = p.next_deadline().expect("a timer while holding");
        p.add(spans("c", 4), &mut out);
        assert_eq!(out.len(), 1, "12 ≥ 10: sent as one batch");
        assert_eq!(out[0].item_count(), 12);
        assert_eq!(out[0].resource_count(), 3, "resource entries are appended");
        assert!(p.next_deadline().is_none());
        // Timeout.
        p.add(spans("d", 1), &mut out);
        let d = p.next_deadline().unwrap();
        assert!(d > deadline);
        p.flush_due(d, &mut out);
        assert_eq!(out.len(), 2);
        // Shutdown flushes what is held, per signal.
        p.add(spans("e", 2), &mut out);
        p.flush(&mut out);
        assert_eq!(out.iter().map(Batch::item_count).sum::<usize>(), 15);
    }

    #[test]
    fn max_size_splits_at_item_boundaries_in_order() {
        let mut p =
            Batcher::new(BatchConfig { send_batch_size: 5, timeout: Duration::from_secs(1), send_batch_max_size: 5 });
        let mut out = Vec::new();
        p.add(spans("a", 3), &mut out);
        p.add(spans("b", 9), &mut out);
        assert_eq!(out.iter().map(Batch::item_count).collect::<Vec<_>>(), vec![5, 5, 2]);
        let all: Vec<String> = out.iter().flat_map(names).collect();
        let want: Vec<String> = (0..3).map(|i| format!("a-{i}")).chain((0..9).map(|i| format!("b-{i}"))).collect();
        assert_eq!(all, want);
        // The second batch starts mid-resource: its resource and scope are repeated.
        let Batch::Traces(second) = &out[1] else { panic!() };
        assert_eq!(second.resource_spans.len(), 1);
        assert_eq!(second.resource_spans[0].scope_spans[0].scope.as_ref().unwrap().name, "s");
    }
}
