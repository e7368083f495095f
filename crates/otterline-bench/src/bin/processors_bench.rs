//! `otterline-processors-bench`: `cost` + `aggregate` on one thread.
//!
//! Prints spans/s through both processors beside the protobuf decode of the same
//! requests (what every receiver pays anyway; the baseline measured in the same run),
//! and the memory held per 10,000 active aggregate series.

use std::time::Instant;

use clap::Parser;
use otterline_bench::{live_bytes, status_kib, trace_request, Counting, Rng};
use otterline_core::component::{BuildContext, Processor, ProcessorFactory};
use otterline_core::pdata::ExportTraceServiceRequest;
use otterline_core::{Batch, ComponentId};
use otterline_processors::aggregate::{AggregateConfig, AggregateProcessor};
use otterline_processors::CostProcessorFactory;
use prost::Message;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 3000)]
    requests: usize,
    #[arg(long, default_value_t = 100)]
    spans: usize,
    /// Active series for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
}

fn cost_processor() -> Box<dyn Processor> {
    let node = otterline_core::config::yaml::parse("bench", "{}").expect("config");
    let id = ComponentId::parse("cost").expect("id");
    CostProcessorFactory
        .build(&BuildContext { id: &id, config: &node, path: "processors.cost".into(), mark: &node.mark })
        .expect("cost")
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let args = Args::parse();
    let mut rng = Rng::new(3);
    let encoded: Vec<Vec<u8>> =
        (0..args.requests).map(|_| trace_request(&mut rng, args.spans).encode_to_vec()).collect();
    let total = (args.requests * args.spans) as f64;

    // Baseline: decoding the requests.
    let t = Instant::now();
    let decoded: Vec<Batch> =
        encoded.iter().map(|b| Batch::Traces(ExportTraceServiceRequest::decode(&b[..]).expect("decode"))).collect();
    let decode_s = t.elapsed().as_secs_f64();

    // cost + aggregate, the default settings, 60 s windows.
    let mut cost = cost_processor();
    let mut agg = AggregateProcessor::new(AggregateConfig::default());
    let mut out = Vec::new();
    let mut metric_batches = 0usize;
    let t = Instant::now();
    for b in decoded {
        let mut mid = Vec::with_capacity(1);
        cost.process(b, &mut mid);
        for m in mid {
            agg.process(m, &mut out);
        }
        metric_batches += out.iter().filter(|b| matches!(b, Batch::Metrics(_))).count();
        out.clear();
    }
    agg.shutdown(&mut out);
    metric_batches += out.len();
    let proc_s = t.elapsed().as_secs_f64();

    // Memory per active series: one window, `series` distinct users, 20 spans each.
    let mut cfg = AggregateConfig { cardinality_limit: args.series * 2, ..Default::default() };
    cfg.dimensions.push("user.id".into());
    let mut agg = AggregateProcessor::new(cfg);
    let mut rng = Rng::new(9);
    let mut sink = Vec::new();
    // Everything allocated from here on is freed again, except what the processor keeps.
    let before = live_bytes();
    let mut reqs: Vec<Batch> = Vec::new();
    for u in 0..args.series {
        let mut r = trace_request(&mut rng, 20);
        for rs in &mut r.resource_spans {
            rs.resource = Some(otterline_core::pdata::resource::Resource { attributes: vec![], ..Default::default() });
            for ss in &mut rs.scope_spans {
                for (i, s) in ss.spans.iter_mut().enumerate() {
                    s.start_time_unix_nano = 1_763_874_000_000_000_000 + i as u64;
                    s.end_time_unix_nano = s.start_time_unix_nano + 1_000_000 * (1 + (u * 7 + i * 13) as u64 % 5000);
                    s.name = "chat".into();
                    for kv in &mut s.attributes {
                        if kv.key == "user.id" {
                            kv.value = Some(otterline_core::pdata::common::AnyValue {
                                value: Some(otterline_core::pdata::common::any_value::Value::StringValue(format!(
                                    "user-{u}"
                                ))),
                            });
                        }
                        if kv.key == "gen_ai.request.model" || kv.key == "gen_ai.operation.name" {
                            kv.value = Some(otterline_core::pdata::common::AnyValue {
                                value: Some(otterline_core::pdata::common::any_value::Value::StringValue("x".into())),
                            });
                        }
                    }
                    s.status = None;
                }
            }
        }
        reqs.push(Batch::Traces(r));
    }
    for r in reqs.into_iter() {
        agg.process(r, &mut sink);
        sink.clear();
    }
    sink.shrink_to_fit();
    let held = live_bytes().saturating_sub(before);
    let series = agg.active_series();
    let rss = status_kib(std::process::id(), "VmHWM").unwrap_or(0);

    // The anomaly processor's memory for the same 10K series: their window's aggregates.
    let mut metrics = Vec::new();
    agg.shutdown(&mut metrics);
    let mut anomaly = otterline_processors::anomaly::AnomalyProcessor::new(Default::default());
    let before_anomaly = live_bytes();
    // Clones go in and are freed; the originals stay, so the delta is what the processor keeps.
    for m in &metrics {
        let mut out = Vec::new();
        anomaly.process(m.clone(), &mut out);
    }
    let anomaly_held = live_bytes().saturating_sub(before_anomaly);
    let tracked = anomaly.tracked();

    println!("spans                               {total:.0} ({} requests of {})", args.requests, args.spans);
    println!("protobuf decode (baseline)          {:.0} spans/s", total / decode_s);
    println!(
        "cost + aggregate (1 thread)         {:.0} spans/s  ({:.2}x the decode rate; {metric_batches} metric batches)",
        total / proc_s,
        (total / proc_s) / (total / decode_s)
    );
    println!("active series                       {series}");
    println!("memory per 10K active series        {:.1} MiB ({:.0} bytes/series, 20 spans each; live heap held by the processor)", held as f64 / 1048576.0 * 10_000.0 / series as f64, held as f64 / series as f64);
    println!("anomaly state                       {tracked} detector states for {series} series: {:.0} bytes/series ({:.1} MiB per 10K)", anomaly_held as f64 / series as f64, anomaly_held as f64 / 1048576.0 * 10_000.0 / series as f64);
    let (gauges, gauge_bytes, cells) = generic_metric_memory(1_000, 500);
    println!("generic metric state                {gauges} gauge series after 500 noisy windows: {:.0} bytes/series ({cells:.1} histogram cells per series)", gauge_bytes as f64 / gauges as f64);
    println!("process peak RSS                    {:.1} MiB", rss as f64 / 1024.0);
}

/// Heap the anomaly processor holds for `series` client gauges after `windows` windows of
/// noisy values (levels and noise differ per series), and the mean number of cells.
fn generic_metric_memory(series: usize, windows: usize) -> (usize, usize, f64) {
    use otterline_core::pdata::common::{any_value, AnyValue, KeyValue};
    use otterline_core::pdata::metrics::{
        metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
    };
    use otterline_core::pdata::ExportMetricsServiceRequest;
    let mut rng = Rng::new(7);
    let mut anomaly = otterline_processors::anomaly::AnomalyProcessor::new(Default::default());
    let before = live_bytes();
    let mut out = Vec::new();
    for w in 0..windows {
        let metrics = (0..series)
            .map(|s| {
                let level = 10.0 + (s % 97) as f64 * 10.0;
                let noise = 0.01 + (s % 13) as f64 * 0.03;
                let v = level * (1.0 + noise * (rng.next_f64() * 2.0 - 1.0));
                Metric {
                    name: "queue.depth".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: vec![KeyValue {
                                key: "queue".into(),
                                value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("q{s}"))) }),
                                ..Default::default()
                            }],
                            time_unix_nano: 1_763_874_000_000_000_000 + w as u64 * 60_000_000_000,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }
            })
            .collect();
        let batch = Batch::Metrics(ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
                ..Default::default()
            }],
        });
        anomaly.process(batch, &mut out);
        out.clear();
    }
    out.shrink_to_fit();
    let held = live_bytes().saturating_sub(before);
    (series, held, anomaly.metric_cells() as f64 / series as f64)
}
