//! `otterline-dashboard-bench`: the dashboard store holding 24 h of per-minute series.
//!
//! Fills a store (60 s slots, 24 h, the defaults) with one aggregate window and one health
//! score per minute for `--services` services, then prints: the heap it holds (exact, from
//! a counting allocator) beside the raw slot data (services × slots × 24 B, the same-run
//! baseline); the ingest cost per service-window beside protobuf-decoding the same batches
//! (what every receiver pays anyway); and the time and answer size of the queries the page
//! makes (summary, and a 24 h series of overall + 5 services).

use std::time::Instant;

use clap::Parser;
use otterline_bench::{live_bytes, Counting};
use otterline_core::pdata::ExportMetricsServiceRequest;
use otterline_core::Batch;
use otterline_dashboard::store::{Limits, Store};
use otterline_dashboard::testing::{health_points, resource, window_metrics, MIN};
use prost::Message;

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Minutes of history (1440 = the default 24 h retention).
    #[arg(long, default_value_t = 1440)]
    minutes: u64,
}

fn main() {
    let args = Args::parse();
    let names: Vec<String> = (0..args.services).map(|i| format!("service-{i:04}")).collect();
    let t0 = 1_790_000_000 / 60 * 60 * 1_000_000_000u64;
    let limits = Limits { resolution_ns: MIN, slots: 1440, max_services: args.services.max(1000), events: 500 };

    let before = live_bytes();
    let mut store = Store::new(limits);
    let (mut ingest_s, mut decode_s, mut windows) = (0.0, 0.0, 0u64);
    for m in 0..args.minutes {
        let end = t0 + (m + 1) * MIN;
        // What aggregate and health emit for one minute, encoded as a receiver would see it.
        let req = ExportMetricsServiceRequest {
            resource_metrics: names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    resource(
                        n,
                        window_metrics(end, 100 + i as i64 % 50, (m % 7) as i64, 0.2 + (i % 10) as f64 * 0.1, 0.05),
                    )
                })
                .collect(),
        };
        let scores: Vec<(Option<&str>, f64, &str)> =
            names.iter().map(|n| (Some(n.as_str()), 90.0, "healthy")).chain([(None, 88.0, "healthy")]).collect();
        let bytes = [
            req.encode_to_vec(),
            match health_points(end, &scores) {
                Batch::Metrics(h) => h.encode_to_vec(),
                _ => unreachable!("health_points builds metrics"),
            },
        ];
        let t = Instant::now();
        let batches: Vec<Batch> = bytes
            .iter()
            .map(|b| Batch::Metrics(ExportMetricsServiceRequest::decode(&b[..]).expect("decode what we encoded")))
            .collect();
        decode_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        for b in &batches {
            store.ingest(b, end);
        }
        ingest_s += t.elapsed().as_secs_f64();
        windows += names.len() as u64;
    }
    let held = live_bytes() - before;
    let raw = args.services as f64 * 1440.0 * 24.0;
    let mib = |b: f64| b / (1 << 20) as f64;
    println!(
        "store: {} services x {} minutes held {:.1} MiB ({:.1} KiB per service); raw slots {:.1} MiB; ratio {:.3}",
        args.services,
        args.minutes,
        mib(held as f64),
        held as f64 / 1024.0 / args.services as f64,
        mib(raw),
        held as f64 / raw
    );
    println!(
        "ingest: {:.0} ns per service-window; protobuf decode of the same batches {:.0} ns; ratio {:.2}",
        ingest_s * 1e9 / windows as f64,
        decode_s * 1e9 / windows as f64,
        ingest_s / decode_s
    );
    let now_ms = (t0 + args.minutes * MIN) / 1_000_000;
    let t = Instant::now();
    let reps = 20;
    let mut size = 0;
    for _ in 0..reps {
        size = serde_json::to_string(&store.summary(15, 10, now_ms)).map(|s| s.len()).unwrap_or(0);
    }
    println!(
        "summary (15 min, top 10): {:.2} ms, {} bytes of JSON",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64,
        size
    );
    let mut names6 = vec![String::new()];
    names6.extend(names.iter().take(5).cloned());
    let to = t0 + args.minutes * MIN;
    let t = Instant::now();
    for _ in 0..reps {
        size = serde_json::to_string(&store.series(&names6, to - 1440 * MIN, to, 2)).map(|s| s.len()).unwrap_or(0);
    }
    println!(
        "series (24 h, overall + 5 services, 720 buckets): {:.2} ms, {} bytes of JSON",
        t.elapsed().as_secs_f64() * 1e3 / reps as f64,
        size
    );
}
