//! Compiles `proto/` with protox (no system protoc) into Rust types.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(
        ["otterline/v1/anomaly_state.proto", "otterline/v1/queue.proto", "otterline/v1/wal.proto"],
        [&root],
    )?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
