//! Generates the gRPC messages, server and client of `proto/risk.proto` into `OUT_DIR`
//! (included by `src/grpc.rs`).
//!
//! The `.proto` is parsed by protox, a protobuf compiler written in Rust, so building needs no
//! system `protoc` (CI machines have none); tonic-prost-build turns the resulting descriptor
//! set into prost messages and tonic services.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let proto = "risk.proto";
    println!("cargo::rerun-if-changed={}", dir.join(proto).display());
    let descriptors = protox::compile([proto], [&dir])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
