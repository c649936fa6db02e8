//! The "messages" example: an application service serving many tenants from one process with
//! `tenant_plane_client` (API: `proto/examples/messages/v1/messages.proto`).
//!
//! The service owns its tables: they are the component "messages", the SQL files in
//! `examples/messages/migrations`, which its CI pushes to the control plane, and a plan lists:
//!
//! ```sh
//! tenant-plane migrations push --component messages --dir examples/messages/migrations \
//!   --server http://127.0.0.1:50051        # with TENANT_PLANE_TOKEN set
//! grpcurl ... -d '{"plan": {"name": "plans/free", "components": ["messages"]},
//!   "update_mask": "components"}' ... tenant.v1.PlanService/UpsertPlan
//! ```
//!
//! Run a control plane, push the component, provision a tenant on that plan, then:
//!
//! ```sh
//! DATABASE_URL=postgres://app@localhost/saas \
//! TENANT_PLANE_URL=http://127.0.0.1:50051 \
//! TENANT_PLANE_TOKEN=tpa_... \
//! MESSAGES_LISTEN=127.0.0.1:50061 \
//! cargo run --example messages
//! ```
//!
//! * `DATABASE_URL` (required): the database holding the tenants' data; the control plane's
//!   catalog database for SCHEMA and SHARED isolation, and the server on which DATABASE
//!   isolation creates the tenants' databases.
//! * `TENANT_PLANE_URL`: the control plane, default `http://127.0.0.1:50051`.
//! * `TENANT_PLANE_TOKEN`: a service-role bearer token for the control plane (`tenant-plane
//!   token --role service --name messages`); unset only against a server run with `--insecure`.
//! * `MESSAGES_LISTEN`: where this service listens, default `127.0.0.1:50061`.
//! * `TENANT_PLANE_DATA_DIR`: the control plane's data directory, when tenants live in SQLite
//!   files (`<dir>/tenants`).
//! * `RUST_LOG`: the log filter, default `info`.
//!
//! Calls name their tenant in the `x-tenant-id` metadata, for example with grpcurl:
//! `grpcurl -plaintext -import-path proto -proto examples/messages/v1/messages.proto
//! -H 'x-tenant-id: acme' -d '{"title": "Launch", "owner_email": "ann@acme.test"}'
//! 127.0.0.1:50061 examples.messages.v1.MessagesService/CreateProject`.

mod service;

use std::{env, error::Error, path::PathBuf, sync::Arc};

use sea_orm::ConnectOptions;
use tenant_plane_client::{
    ControlPlane, Quotas, ResolverSettings, TenantDb, TenantDbSettings, TenantResolver,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tracing_subscriber::EnvFilter;

use service::Messages;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let database_url = env::var("DATABASE_URL")
        .map_err(|_| "DATABASE_URL must name the database holding the tenants' data")?;
    let control_plane_url =
        env::var("TENANT_PLANE_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    let listen = env::var("MESSAGES_LISTEN").unwrap_or_else(|_| "127.0.0.1:50061".into());
    let settings = TenantDbSettings {
        sqlite_dir: env::var_os("TENANT_PLANE_DATA_DIR")
            .map(|dir| PathBuf::from(dir).join("tenants")),
        ..TenantDbSettings::default()
    };

    // One channel to the control plane, shared by the resolver and the quota client.
    let channel = Channel::from_shared(control_plane_url)?.connect_lazy();
    let control_plane = match env::var("TENANT_PLANE_TOKEN") {
        Ok(token) => ControlPlane::new(channel, &token)?,
        Err(_) => ControlPlane::from(channel),
    };
    let resolver = TenantResolver::new(control_plane.clone(), ResolverSettings::default());
    let db = TenantDb::connect(ConnectOptions::new(database_url), settings).await?;
    let messages = Messages::new(Arc::new(db), Quotas::new(control_plane));

    let listener = TcpListener::bind(&listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "messages example listening");
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    service::serve(listener, resolver, messages, shutdown).await?;
    Ok(())
}
