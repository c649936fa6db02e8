//! # tenant-plane
//!
//! A gRPC control plane for multi-tenant SaaS databases.
//!
//! ## Layout
//! * [`config`] — every setting: a flag, an environment variable and a documented default.
//! * [`clock`] — the wall clock, injectable, so a test can run a replica whose clock is off.
//! * [`telemetry`] — logging (human or JSON), and OpenTelemetry traces and metrics over OTLP.
//! * [`metrics`] — Prometheus metrics on their own HTTP port: RPCs, pools, quotas, rollouts,
//!   tenants.
//! * [`domain`] — parsed identifiers, the tenant state machine and the error type; no I/O.
//! * [`db`] — what `store` and `dataplane` share (error classification, pool usage, storage
//!   marks), so neither imports the other.
//! * [`sql`] — the one way names and strings are written into SQL text.
//! * [`store`] — the catalog: sea-orm entities and queries.
//! * [`dataplane`] — each tenant's storage: created, migrated and dropped per its isolation.
//!   With `store`, the only modules that talk to a database.
//! * [`service`] — the use cases, in domain terms.
//! * [`grpc`] — one file per gRPC service, decode → one use case → encode; `grpc::status` is the
//!   single table from domain errors to gRPC status codes.
//! * [`client`] — for the services that call in: resolve the tenant of a request (tower layer
//!   with a cached resolver) and run its queries inside the tenant's data only.
//! * [`cli`] — `tenant-plane migrate`, the operators' command line for tenant migrations.
//! * [`app`] — wires the pieces together and runs the server until it is told to stop.

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod db;
pub mod domain;
pub mod grpc;
pub mod metrics;
pub mod service;
pub mod sql;
pub mod store;
pub mod telemetry;

/// Code generated from `proto/tenant/v1`, and under [`proto::examples`] from `proto/examples`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tenant.v1");

    /// The encoded descriptors of `proto/`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tenant_descriptor");

    /// Code generated from `proto/examples`: the APIs of the example services (not served by
    /// the control plane).
    pub mod examples {
        pub mod messages {
            pub mod v1 {
                tonic::include_proto!("examples.messages.v1");
            }
        }
    }
}
