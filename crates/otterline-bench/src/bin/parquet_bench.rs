//! `otterline-parquet-bench`: the Parquet archive on one core.
//!
//! Writes N generated GenAI spans through the real `parquet` exporter (in-process,
//! one thread), then replays them with the archive reader, and prints:
//! spans/s written, bytes per span on disk, the same data as OTLP protobuf + zstd
//! (level 3, one frame per request: the baseline measured in the same run), and
//! spans/s replayed. `--variant "key: value"` adds exporter settings to compare with the
//! defaults in the same run (write speed and size as ratios to the defaults').

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
    /// Exporter settings to compare with the defaults in the same run, as YAML lines
    /// (`--variant "compression_level: 1"`); repeatable.
    #[arg(long)]
    variant: Vec<String>,
    /// Write passes per setting; the fastest is reported.
    #[arg(long, default_value_t = 3)]
    passes: usize,
}

/// Writes `reqs` through a `parquet` exporter with `settings` under a new directory:
/// (seconds, bytes on disk).
fn write_archive(rt: &tokio::runtime::Runtime, reqs: &[Arc<Batch>], settings: &str) -> (f64, u64, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("archive");
    let t = Instant::now();
    rt.block_on(async {
        let mut exporter = otterline_bench::parquet_exporter_with(&root, settings).await;
        for b in reqs {
            exporter.export_shared(b).await.expect("export");
        }
        exporter.shutdown().await.expect("shutdown");
    });
    let secs = t.elapsed().as_secs_f64();
    let size = dir_size(&root);
    (secs, size, dir)
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

    // Parquet through the real exporter, its default settings, then each variant; passes
    // alternate between the settings so that a slow moment of the machine hits all of them.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let settings: Vec<&str> = std::iter::once("").chain(args.variant.iter().map(String::as_str)).collect();
    let mut best = vec![f64::INFINITY; settings.len()];
    let mut sizes = vec![0u64; settings.len()];
    let mut kept = None;
    for _ in 0..args.passes.max(1) {
        for (i, set) in settings.iter().enumerate() {
            let (secs, size, dir) = write_archive(&rt, &reqs, set);
            best[i] = best[i].min(secs);
            sizes[i] = size;
            if i == 0 {
                kept = Some(dir);
            }
        }
    }
    let write_s = best[0];
    let on_disk = sizes[0];
    let dir = kept.expect("one pass");
    let root = dir.path().join("archive");

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
    for (i, set) in settings.iter().enumerate().skip(1) {
        println!(
            "variant {:?}: write {:.0} spans/s ({:.2}x the defaults), {:.1} bytes/span ({:.2}x)",
            set,
            total_spans / best[i],
            best[0] / best[i],
            sizes[i] as f64 / total_spans,
            sizes[i] as f64 / sizes[0] as f64
        );
    }
}
