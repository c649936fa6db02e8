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
//! * [`domain`] — parsed identifiers, the tenant state machine, the error type and the call
//!   context every change is made under ([`domain::CallContext`]); no I/O.
//! * [`auth`] — who the caller is: bearer tokens, TLS client certificates, the first start's
//!   admin token. The layer that applies them is in [`grpc`], which imports `auth`, never the
//!   reverse.
//! * [`db`] — what `store` and `dataplane` share (error classification, pool usage, storage
//!   marks), so neither imports the other.
//! * [`sql`] — the one way names and strings are written into SQL text.
//! * [`lint`] — the lint of the tenant migrations components push: parse trees only, no I/O.
//! * [`store`] — the catalog: sea-orm entities and queries.
//! * [`dataplane`] — each tenant's storage: created, migrated and dropped per its isolation.
//!   With `store`, the only modules that talk to a database.
//! * [`service`] — the use cases, in domain terms.
//! * [`grpc`] — one file per gRPC service, decode → one use case → encode; the request layers
//!   (context, authentication, audit) and the one per-RPC policy table they read
//!   (`grpc::policy`); `grpc::status` is the single table from domain errors to gRPC status
//!   codes.
//! * [`cli`] — `tenant-plane migrate`, the operators' command line for tenant migrations, and
//!   `tenant-plane migrations push|list`, the applications' (a gRPC client).
//! * [`app`] — wires the pieces together and runs the server until it is told to stop.
//!
//! The library for the services that call in (resolve the tenant of a request with a tower
//! layer and a cached resolver, run its queries inside the tenant's data only, consume quotas)
//! is the workspace crate `tenant-plane-client` in `client/`. It talks to this server only
//! through the gRPC API and depends on none of this crate, so a service does not build the
//! control plane to call it (`docs/client.md`).

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dataplane;
pub mod db;
pub mod domain;
pub mod grpc;
pub mod lint;
pub mod metrics;
pub mod service;
pub mod sql;
pub mod store;
pub mod telemetry;

/// Code generated from `proto/tenant/v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tenant.v1");

    /// The encoded descriptors of `proto/`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tenant_descriptor");
}
