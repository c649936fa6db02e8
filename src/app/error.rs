//! Why a start failed: each variant says which setting or dependency to look at.

use crate::grpc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("catalog: {0}")]
    Catalog(#[from] crate::domain::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(
        "cannot listen on {addr} (set by {setting}): {source}; is another process, such as \
         another replica on this host, using it?"
    )]
    Bind {
        addr: String,
        /// The flag and environment variable that chose the address.
        setting: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Serve(#[from] grpc::ServeError),
}
