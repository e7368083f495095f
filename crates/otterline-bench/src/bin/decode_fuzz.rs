//! `otterline-decode-fuzz`: differential fuzzing of Otterline's protobuf decoder against
//! prost over seeded mutations of valid requests (see `otterline_bench::decode_fuzz`).
//! Exits 1 on any disagreement, printing the input numbers (rerun with the same seed).

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Mutated requests to decode.
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let s = otterline_bench::decode_fuzz::run(args.seed, args.inputs);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} inputs (seed {}) in {secs:.1} s ({:.0}/s): {} decoded equal by both, {} refused by both with prost's error, {} disagreements",
        s.inputs,
        args.seed,
        s.inputs as f64 / secs,
        s.both_ok,
        s.both_err,
        s.disagreements.len()
    );
    for (i, what) in s.disagreements.iter().take(20) {
        println!("input {i}: {what}");
    }
    if s.disagreements.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
