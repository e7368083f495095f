//! `otterline-loadgen`: drives an OTLP/gRPC trace endpoint with pre-encoded requests
//! over N connections for a fixed time, checks every response, and prints accepted
//! spans/s, request latency, and (with `--pid`) the target's CPU-seconds per million
//! spans and peak RSS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::uri::PathAndQuery;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use otterline_bench::{cpu_seconds, encoded_trace_requests, status_kib, RawCodec};
use prost::Message;

#[derive(Parser)]
struct Args {
    /// gRPC endpoint, e.g. 127.0.0.1:4317.
    #[arg(long)]
    grpc: String,
    /// Concurrent connections (one request in flight on each).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Spans per request.
    #[arg(long, default_value_t = 100)]
    spans: usize,
    /// Process whose CPU time and memory to report.
    #[arg(long)]
    pid: Option<u32>,
    /// A label for the output line.
    #[arg(long, default_value = "run")]
    label: String,
}

struct Stats {
    ok_requests: u64,
    failed_requests: u64,
    latencies_us: Vec<u32>,
}

async fn worker(
    endpoint: String,
    requests: std::sync::Arc<Vec<Bytes>>,
    offset: usize,
    deadline: Instant,
) -> Result<Stats, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect {endpoint}: {e}"))?;
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = PathAndQuery::from_static("/opentelemetry.proto.collector.trace.v1.TraceService/Export");
    let mut stats = Stats { ok_requests: 0, failed_requests: 0, latencies_us: Vec::with_capacity(100_000) };
    let mut i = offset;
    while Instant::now() < deadline {
        let body = requests[i % requests.len()].clone();
        i += 1;
        grpc.ready().await.map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        match grpc.unary(tonic::Request::new(body), path.clone(), RawCodec).await {
            Ok(resp) => {
                let r = ExportTraceServiceResponse::decode(resp.into_inner()).map_err(|e| e.to_string())?;
                if r.partial_success.as_ref().is_some_and(|p| p.rejected_spans > 0) {
                    return Err(format!("spans were rejected: {:?}", r.partial_success));
                }
                stats.ok_requests += 1;
                stats.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Err(st) if st.code() == tonic::Code::Unavailable => stats.failed_requests += 1,
            Err(st) => return Err(format!("request failed: {st}")),
        }
    }
    Ok(stats)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let requests = std::sync::Arc::new(encoded_trace_requests(256, args.spans));
    let bytes_per_request = requests.iter().map(|r| r.len()).sum::<usize>() / requests.len();
    let cpu0 = args.pid.and_then(cpu_seconds);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let tasks: Vec<_> = (0..args.connections)
        .map(|c| tokio::spawn(worker(args.grpc.clone(), requests.clone(), c * 37, deadline)))
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    let mut lat = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => {
                ok += s.ok_requests;
                refused += s.failed_requests;
                lat.extend(s.latencies_us);
            }
            Ok(Err(e)) => {
                eprintln!("otterline-loadgen: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("otterline-loadgen: worker panicked: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = args.pid.and_then(cpu_seconds);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    let spans = ok * args.spans as u64;
    let spans_per_s = spans as f64 / elapsed;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => format!("{:.3}", (b - a) / (spans as f64 / 1e6)),
        _ => "-".into(),
    };
    let hwm = args
        .pid
        .and_then(|p| status_kib(p, "VmHWM"))
        .map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into());
    println!(
        "{label}: spans/s={spans_per_s:.0} requests={ok} refused={refused} bytes/request={bytes_per_request} p50_ms={:.2} p99_ms={:.2} cpu_s_per_M_spans={cpu} peak_rss_MiB={hwm}",
        pct(0.5),
        pct(0.99),
        label = args.label
    );
}
