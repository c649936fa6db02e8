//! Compiles `proto/` into Rust (prost + tonic) and writes the encoded file descriptor set that
//! server reflection serves. Uses protox, a pure-Rust compiler, so no system `protoc` is needed.

use std::{env, fs, io, path::PathBuf};

use prost::Message;

fn main() -> io::Result<()> {
    let proto_dir = PathBuf::from("proto/tenant/v1");
    let mut protos: Vec<PathBuf> = fs::read_dir(&proto_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=proto");

    let fds = protox::compile(&protos, ["proto"]).map_err(io::Error::other)?;
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(io::Error::other)?);
    fs::write(out_dir.join("tenant_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
}
