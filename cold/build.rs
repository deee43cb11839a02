//! Generates the gRPC messages, servers and clients of `proto/risk.proto` and
//! `proto/execution.proto` (package `maxx.v1`) into `OUT_DIR` (included by `src/grpc.rs`), and
//! writes their encoded descriptor set to `OUT_DIR/maxx_descriptor.bin` for server reflection.
//!
//! The `.proto` files are parsed by protox, a protobuf compiler written in Rust, so building
//! needs no system `protoc` (CI machines have none); tonic-prost-build turns the resulting
//! descriptor set into prost messages and tonic services.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let protos = ["risk.proto", "execution.proto"];
    for proto in protos {
        println!("cargo::rerun-if-changed={}", dir.join(proto).display());
    }
    let descriptors = protox::compile(protos, [&dir])?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(
        out.join("maxx_descriptor.bin"),
        protox::prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
