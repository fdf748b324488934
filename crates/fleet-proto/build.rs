//! Compiles `proto/fleet/v1/fleet.proto` and `enroll.proto` with protox (pure Rust), so the build
//! needs no system `protoc`. The encoded descriptor set is kept in OUT_DIR for
//! server reflection.
use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [root.join("fleet/v1/fleet.proto"), root.join("fleet/v1/enroll.proto")];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("fleet_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Written by hand, so that a node can send rows it keeps encoded (src/listing.rs).
        .extern_path(".fleet.v1.ListAgentsResponse", "crate::listing::ListAgentsResponse")
        .compile_fds(fds)?;
    Ok(())
}
