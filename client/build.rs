//! Generates the client stubs of the control plane's API (`../proto/tenant/v1`, the same files
//! the server is built from) with protox, a pure-Rust compiler, so no system `protoc` is needed.
//! Clients only: this crate calls the control plane and serves none of its services.

use std::{fs, io};

/// The control plane's API, shared with the server crate at the workspace root.
const PROTO_ROOT: &str = "../proto";
const API: &str = "../proto/tenant/v1";

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed={API}");
    let mut files = Vec::new();
    for entry in fs::read_dir(API)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    let fds = protox::compile(&files, [PROTO_ROOT]).map_err(io::Error::other)?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)
}
