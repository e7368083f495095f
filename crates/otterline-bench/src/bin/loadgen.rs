//! `otterline-loadgen`: drives an OTLP endpoint (gRPC or HTTP/protobuf) with pre-encoded
//! requests over N connections, for a fixed time or a fixed number of requests. Every
//! response is checked (gRPC status 0 / HTTP 200, and no rejected items in the partial
//! success); it prints accepted items/s, request latency p50/p99 and (with `--pid`) the
//! target's CPU-seconds per million items and peak RSS over the run, and the target's
//! CPU-seconds when the load started (`cpu_start_s`), so that a caller that stops the
//! target afterwards can also count the work it had buffered and did while draining.
//!
//! `otterline-loadgen --grpc 127.0.0.1:4317 --signal traces --connections 4 --duration 10`
//! `otterline-loadgen --http http://127.0.0.1:4318 --signal logs --requests 10000`
//!
//! A retryable refusal (gRPC UNAVAILABLE / RESOURCE_EXHAUSTED, HTTP 429/503) is counted
//! as `refused`; any other failure stops the run with exit code 1.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http::uri::PathAndQuery;
use otterline_bench::{cpu_seconds, encoded_requests, status_kib, LoadSignal, RawCodec};

#[derive(Parser)]
struct Args {
    /// gRPC endpoint, e.g. 127.0.0.1:4317.
    #[arg(long, conflicts_with = "http", required_unless_present = "http")]
    grpc: Option<String>,
    /// OTLP/HTTP base URL, e.g. http://127.0.0.1:4318 (protobuf bodies to /v1/<signal>).
    #[arg(long)]
    http: Option<String>,
    /// What to send.
    #[arg(long, value_enum, default_value = "traces")]
    signal: LoadSignal,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight on each connection (HTTP/2 streams for gRPC, as `h2load -m`;
    /// for OTLP/HTTP each stream is a request on its own HTTP/1.1 connection of the pool).
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Seconds to run (ignored with --requests).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Send exactly this many requests instead of running for a time.
    #[arg(long)]
    requests: Option<u64>,
    /// Items (spans, data points, log records) per request.
    #[arg(long, default_value_t = 100)]
    items: usize,
    /// Process whose CPU time and memory to report.
    #[arg(long)]
    pid: Option<u32>,
    /// A label for the output line.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Default)]
struct Stats {
    ok_requests: u64,
    refused_requests: u64,
    latencies_us: Vec<u32>,
}

/// When a worker stops: at a deadline, or when the shared request budget is spent.
struct Stop {
    deadline: Option<Instant>,
    remaining: AtomicU64,
}

impl Stop {
    fn next(&self) -> bool {
        match self.deadline {
            Some(d) => Instant::now() < d,
            None => self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok(),
        }
    }
}

#[derive(Clone)]
enum Client {
    Grpc(tonic::client::Grpc<tonic::transport::Channel>, PathAndQuery),
    Http(reqwest::Client, String),
}

enum Outcome {
    Ok(Bytes),
    Refused,
}

impl Client {
    async fn connect(args: &Args) -> Result<Client, String> {
        let (grpc_path, http_path) = args.signal.paths();
        if let Some(endpoint) = &args.grpc {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| format!("connect {endpoint}: {e}"))?;
            return Ok(Client::Grpc(tonic::client::Grpc::new(channel), PathAndQuery::from_static(grpc_path)));
        }
        let base = args.http.as_deref().unwrap_or_default().trim_end_matches('/');
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(args.streams.max(1))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Client::Http(client, format!("{base}{http_path}")))
    }

    async fn send(&mut self, body: Bytes) -> Result<Outcome, String> {
        match self {
            Client::Grpc(grpc, path) => {
                grpc.ready().await.map_err(|e| e.to_string())?;
                match grpc.unary(tonic::Request::new(body), path.clone(), RawCodec).await {
                    Ok(resp) => Ok(Outcome::Ok(resp.into_inner())),
                    Err(st) if matches!(st.code(), tonic::Code::Unavailable | tonic::Code::ResourceExhausted) => {
                        Ok(Outcome::Refused)
                    }
                    Err(st) => Err(format!("request failed: {st}")),
                }
            }
            Client::Http(client, url) => {
                let resp = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {e}"))?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| format!("POST {url}: reading the response: {e}"))?;
                match status {
                    200 => Ok(Outcome::Ok(bytes)),
                    429 | 503 => Ok(Outcome::Refused),
                    s => Err(format!("POST {url}: HTTP {s}: {}", String::from_utf8_lossy(&bytes))),
                }
            }
        }
    }
}

async fn worker(
    args: Arc<Args>,
    mut client: Client,
    requests: Arc<Vec<Bytes>>,
    offset: usize,
    stop: Arc<Stop>,
) -> Result<Stats, String> {
    let mut stats = Stats { latencies_us: Vec::with_capacity(100_000), ..Default::default() };
    let mut i = offset;
    while stop.next() {
        let body = requests[i % requests.len()].clone();
        i += 1;
        let t0 = Instant::now();
        match client.send(body).await? {
            Outcome::Ok(resp) => {
                let rejected = args.signal.rejected(&resp).map_err(|e| format!("undecodable response: {e}"))?;
                if rejected > 0 {
                    return Err(format!("{rejected} items were rejected"));
                }
                stats.ok_requests += 1;
                stats.latencies_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Outcome::Refused => stats.refused_requests += 1,
        }
    }
    Ok(stats)
}

#[tokio::main]
async fn main() {
    let args = Arc::new(Args::parse());
    // The workspace builds reqwest without a default TLS provider; plain HTTP still asks for one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let requests = Arc::new(encoded_requests(args.signal, 256, args.items));
    let bytes_per_request = requests.iter().map(|r| r.len()).sum::<usize>() / requests.len();
    let cpu0 = args.pid.and_then(cpu_seconds);
    let started = Instant::now();
    let stop = Arc::new(Stop {
        deadline: args.requests.is_none().then(|| started + Duration::from_secs_f64(args.duration)),
        remaining: AtomicU64::new(args.requests.unwrap_or(0)),
    });
    let mut tasks = Vec::new();
    for c in 0..args.connections {
        let client = match Client::connect(&args).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("otterline-loadgen: {e}");
                std::process::exit(1);
            }
        };
        for s in 0..args.streams.max(1) {
            let offset = (c * args.streams.max(1) + s) * 37;
            tasks.push(tokio::spawn(worker(args.clone(), client.clone(), requests.clone(), offset, stop.clone())));
        }
    }
    let mut total = Stats::default();
    for t in tasks {
        match t.await {
            Ok(Ok(s)) => {
                total.ok_requests += s.ok_requests;
                total.refused_requests += s.refused_requests;
                total.latencies_us.extend(s.latencies_us);
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
    let lat = &mut total.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0) as f64
            / 1000.0
    };
    let items = total.ok_requests * args.items as u64;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) if items > 0 => format!("{:.3}", (b - a) / (items as f64 / 1e6)),
        _ => "-".into(),
    };
    let hwm = args
        .pid
        .and_then(|p| status_kib(p, "VmHWM"))
        .map(|k| format!("{:.1}", k as f64 / 1024.0))
        .unwrap_or_else(|| "-".into());
    let cpu_start = cpu0.map(|c| format!("{c:.3}")).unwrap_or_else(|| "-".into());
    println!(
        "{label}: items/s={:.0} requests={} refused={} bytes/request={bytes_per_request} p50_ms={:.2} p99_ms={:.2} cpu_s_per_M_items={cpu} peak_rss_MiB={hwm} items={items} cpu_start_s={cpu_start}",
        items as f64 / elapsed,
        total.ok_requests,
        total.refused_requests,
        pct(0.5),
        pct(0.99),
        label = args.label
    );
}
