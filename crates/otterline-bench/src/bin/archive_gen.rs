//! `otterline-archive-gen`: writes a synthetic archive for the analytics benchmarks.
//!
//! N generated GenAI spans (the load generator's requests of 100 spans: 4 services,
//! 4 models, ~9 attributes each), spread evenly over `--days` days ending yesterday, priced
//! by the real `cost` processor and written by the real `parquet` exporter (defaults).
//!
//! `otterline-archive-gen --spans 10000000 --days 28 --out DIR [--settings "schema_version: 1"]`

use std::time::Instant;

use clap::Parser;
use otterline_core::component::{BuildContext, ProcessorFactory};
use otterline_core::{Batch, ComponentId};
use otterline_processors::CostProcessorFactory;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000_000)]
    spans: usize,
    #[arg(long, default_value_t = 28)]
    days: u64,
    #[arg(long)]
    out: std::path::PathBuf,
    /// Exporter settings added to the defaults, as YAML lines (`schema_version: 1`).
    #[arg(long, default_value = "")]
    settings: String,
}

const DAY_NS: u64 = 86_400_000_000_000;

fn main() {
    let args = Args::parse();
    let requests = args.spans.div_ceil(100);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos() as u64;
    let first = (now / DAY_NS - args.days) * DAY_NS;
    let step = args.days * DAY_NS / requests as u64;
    let empty = otterline_core::config::yaml::parse("gen", "{}").expect("config");
    let cid = ComponentId::parse("cost").expect("id");
    let cctx = BuildContext { id: &cid, config: &empty, path: "processors.cost".into(), mark: &empty.mark };
    let mut cost = CostProcessorFactory.build(&cctx).expect("cost processor");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut rng = otterline_bench::Rng::new(7);
    let t = Instant::now();
    rt.block_on(async {
        let mut exporter = otterline_bench::parquet_exporter_with(&args.out, &args.settings).await;
        let mut out = Vec::new();
        for k in 0..requests {
            let mut req = otterline_bench::trace_request(&mut rng, 100);
            // Move the request to its slot in the period, keeping span offsets.
            let base = first + k as u64 * step;
            for rs in &mut req.resource_spans {
                for ss in &mut rs.scope_spans {
                    let t0 = ss.spans.iter().map(|s| s.start_time_unix_nano).min().unwrap_or(0);
                    for s in &mut ss.spans {
                        let len = s.end_time_unix_nano - s.start_time_unix_nano;
                        s.start_time_unix_nano = base + (s.start_time_unix_nano - t0);
                        s.end_time_unix_nano = s.start_time_unix_nano + len;
                    }
                }
            }
            cost.process(Batch::Traces(req), &mut out);
            for b in out.drain(..) {
                exporter.export_shared(&std::sync::Arc::new(b)).await.expect("export");
            }
            if k % 10_000 == 0 && k > 0 {
                eprintln!("{} spans written", k * 100);
            }
        }
        exporter.shutdown().await.expect("shutdown");
    });
    eprintln!(
        "wrote {} spans over {} days to {} in {:.1} s",
        requests * 100,
        args.days,
        args.out.display(),
        t.elapsed().as_secs_f64()
    );
}
