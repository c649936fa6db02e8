//! Compiles `proto/` into Rust (prost + tonic) and writes the encoded file descriptor set that
//! server reflection serves. Uses protox, a pure-Rust compiler, so no system `protoc` is needed.
//!
//! `proto/tenant/v1` is the control plane's API, and the only part of the descriptor set it
//! serves; `proto/examples/` holds the APIs of the example services, compiled on their own.

use std::{
    env, fs, io,
    path::{Path, PathBuf},
};

use prost::Message;

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);

    let fds = protox::compile(protos(Path::new("proto/tenant/v1"))?, ["proto"])
        .map_err(io::Error::other)?;
    fs::write(out_dir.join("tenant_descriptor.bin"), fds.encode_to_vec())?;
    generate(fds)?;

    let examples = protos(Path::new("proto/examples"))?;
    if !examples.is_empty() {
        generate(protox::compile(examples, ["proto"]).map_err(io::Error::other)?)?;
    }
    Ok(())
}

fn generate(fds: prost_types::FileDescriptorSet) -> io::Result<()> {
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
}

/// Every `.proto` under `dir`, sorted; none when `dir` does not exist.
fn protos(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(protos(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}
