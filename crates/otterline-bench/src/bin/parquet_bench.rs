//! `otterline-parquet-bench`: the Parquet archive on one core.
//!
//! Writes N generated GenAI spans through the real `parquet` exporter (in-process,
//! one thread), then replays them with the archive reader, and prints:
//! spans/s written, bytes per span on disk, the same data as OTLP protobuf + zstd
//! (level 3, one frame per request: the baseline measured in the same run), and
//! spans/s replayed.

use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use otterline_core::{Batch, Signal, SignalSet};
use otterline_parquet::archive::{self, Selection, SignalReader};
use prost::Message;

#[derive(Parser)]
struct Args {
    /// Requests of 100 spans to write.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    #[arg(long, default_value_t = 100)]
    spans: usize,
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(
                    |e| {
                        if e.path().is_dir() {
                            dir_size(&e.path())
                        } else {
                            e.metadata().map(|m| m.len()).unwrap_or(0)
                        }
                    },
                )
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args = Args::parse();
    let mut rng = otterline_bench::Rng::new(11);
    let reqs: Vec<Arc<Batch>> = (0..args.requests)
        .map(|_| Arc::new(Batch::Traces(otterline_bench::trace_request(&mut rng, args.spans))))
        .collect();
    let total_spans = (args.requests * args.spans) as f64;

    // Baseline: the same requests as OTLP protobuf, zstd level 3.
    let t = Instant::now();
    let mut proto_zstd = 0usize;
    let mut proto_raw = 0usize;
    for b in &reqs {
        let Batch::Traces(r) = &**b else { continue };
        let raw = r.encode_to_vec();
        proto_raw += raw.len();
        proto_zstd += zstd::encode_all(&raw[..], 3).map(|v| v.len()).unwrap_or(0);
    }
    let baseline_s = t.elapsed().as_secs_f64();

    // Parquet through the real exporter, its default settings.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let t = Instant::now();
    rt.block_on(async {
        let mut exporter = otterline_bench::parquet_exporter(&root).await;
        for b in &reqs {
            exporter.export_shared(b).await.expect("export");
        }
        exporter.shutdown().await.expect("shutdown");
    });
    let write_s = t.elapsed().as_secs_f64();
    let on_disk = dir_size(&root);

    // Replay: read everything back in time order.
    let t = Instant::now();
    let sel = Selection { from: None, to: None, signals: SignalSet::of(Signal::Traces) };
    let (files, _) = archive::open(&root.display().to_string(), &sel).expect("open archive");
    let mut reader = SignalReader::new(Signal::Traces, files, sel, 1000, true);
    let mut replayed = 0usize;
    while let Some(rows) = reader.next_chunk().expect("read") {
        replayed += rows.len();
        let batch = otterline_parquet::rows::group(rows);
        std::hint::black_box(&batch);
    }
    let replay_s = t.elapsed().as_secs_f64();
    assert_eq!(replayed as f64, total_spans, "every span replayed");

    println!("spans                         {total_spans:.0} ({} requests of {})", args.requests, args.spans);
    println!("parquet write (1 thread)      {:.0} spans/s", total_spans / write_s);
    println!("parquet bytes/span on disk    {:.1}", on_disk as f64 / total_spans);
    println!("OTLP protobuf bytes/span      {:.1}", proto_raw as f64 / total_spans);
    println!(
        "OTLP protobuf+zstd bytes/span {:.1}   (baseline; parquet/baseline = {:.2})",
        proto_zstd as f64 / total_spans,
        on_disk as f64 / proto_zstd as f64
    );
    println!(
        "protobuf+zstd encode          {:.0} spans/s (baseline; parquet write = {:.2}x of it)",
        total_spans / baseline_s,
        (total_spans / write_s) / (total_spans / baseline_s)
    );
    println!("replay read (1 thread)        {:.0} spans/s", total_spans / replay_s);
}
