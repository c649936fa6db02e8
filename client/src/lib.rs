//! # tenant-plane-client
//!
//! What an application service (a "data plane" microservice) needs to serve many tenants from
//! one process: find the tenant a request belongs to, ask the tenant-plane control plane where
//! its data lives, and run every query of that request inside the tenant's data and nowhere
//! else.
//!
//! The crate is the control plane's API seen from the calling side and nothing more: it speaks
//! to the control plane only through the gRPC API (`proto/tenant/v1`, whose client stubs it
//! generates itself, in [`proto`]), and depends on none of the server's code, so a service pulls
//! in tonic's client, tower, http and sea-orm, not the control plane's exporters, HTTP server or
//! catalog migrations.
//!
//! ## Layout
//! * [`resolver`] — [`TenantResolver`]: the generated `TenantServiceClient` behind a typed call,
//!   with a TTL cache of resolved tenants (unknown ones too, briefly) and explicit invalidation.
//! * [`clock`] — [`ClientClock`]: the time the resolver's cache ages by; the system clock, or a
//!   manual one a test advances.
//! * [`context`] — [`TenantContext`]: who the tenant is and where its data lives, parsed from
//!   `ResolveTenant`, and a task-local holding the current request's tenant.
//! * [`layer`] — [`TenantLayer`]: a tower layer for tonic (or any `http`) servers that finds the
//!   tenant (`x-tenant-id`, subdomain or `/tenants/{slug}/` path), refuses requests that name none,
//!   an unknown one or one that is not served, and hands the context to handlers.
//! * [`scoped`] — [`TenantDb`]: one shared pool whose only door is
//!   [`begin(&TenantContext)`](TenantDb::begin), a transaction inside the tenant's schema, shared
//!   rows or database.
//! * [`quota`] — consume a tenant's quota, a denial answered as `RESOURCE_EXHAUSTED`.
//! * [`credentials`] — [`ControlPlane`]: the channel to the control plane and the bearer token
//!   it is called with.
//! * [`names`] — tenant ids, slugs, states and isolations as the API defines them.
//!
//! ## Usage
//!
//! ```no_run
//! use tenant_plane_client::{ControlPlane, ResolverSettings, TenantContext, TenantDb,
//!     TenantDbSettings, TenantLayer, TenantResolver};
//! use sea_orm::{ConnectOptions, ConnectionTrait};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let channel = tonic::transport::Channel::from_static("http://tenant-plane:50051")
//!     .connect_lazy();
//! // A service-role token (`tenant-plane token --role service --name my-app`).
//! let control_plane = ControlPlane::new(channel, &std::env::var("TENANT_PLANE_TOKEN")?)?;
//! let resolver = TenantResolver::new(control_plane, ResolverSettings::default());
//! let db = TenantDb::connect(
//!     ConnectOptions::new("postgres://app@db/saas"),
//!     TenantDbSettings::default(),
//! )
//! .await?;
//!
//! // In a handler behind `TenantLayer::new(resolver)`:
//! let tenant = TenantContext::current().ok_or("no tenant")?;
//! let txn = db.begin(&tenant).await?;
//! txn.execute_unprepared("INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'x')")
//!     .await?;
//! txn.commit().await?;
//! # let _ = TenantLayer::new(resolver);
//! # Ok(())
//! # }
//! ```
//!
//! The tenant cannot be forgotten: [`TenantDb`] offers no connection, only tenant-scoped
//! transactions, so a query that names no tenant does not compile (see [`scoped`]).

pub mod clock;
pub mod context;
pub mod credentials;
pub mod layer;
pub mod names;
pub mod quota;
pub mod resolver;
pub mod scoped;

pub use clock::ClientClock;
pub use context::TenantContext;
pub use credentials::{BearerToken, ControlPlane};
pub use layer::{TENANT_HEADER, TenantKey, TenantLayer, TenantService};
pub use names::{Isolation, Slug, TenantId, TenantState};
pub use quota::Quotas;
pub use resolver::{ResolverSettings, TenantResolver};
pub use scoped::{ROW_FILTER_SETTING, TenantDb, TenantDbSettings, TenantTxn};

/// Client stubs generated from the control plane's API, `proto/tenant/v1`: the messages
/// [`Quotas`] and [`TenantResolver`] exchange, and a client for every service, to be built on
/// [`ControlPlane::service`] (`AuditServiceClient::new(control_plane.service())`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("tenant.v1");
}

use sea_orm::{DbErr, RuntimeErr};
use tonic::{Code, Status};

/// Everything the client side can fail with; [`Status`] is its one mapping to gRPC codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing in the request names a tenant.
    #[error("the request names no tenant")]
    NoTenant,
    /// The key names no tenant the control plane knows.
    #[error("no tenant {0}")]
    NotFound(String),
    /// The tenant exists but is not served in its current state.
    #[error("tenant {slug} is {}", state.as_str())]
    NotServed { slug: String, state: TenantState },
    /// The control plane refused or could not be reached.
    #[error("the control plane: {}", .0.message())]
    ControlPlane(Status),
    /// The control plane answered something this client cannot use.
    #[error("an unusable tenant from the control plane: {0}")]
    Malformed(String),
    /// The tenant's storage cannot be reached from this service as configured.
    #[error("tenant storage: {0}")]
    Unsupported(String),
    /// The tenant's database failed.
    #[error("tenant database: {0}")]
    Database(#[from] sea_orm::DbErr),
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::NoTenant => Status::unauthenticated(message),
            Error::NotFound(_) => Status::not_found(message),
            Error::NotServed {
                state: TenantState::Provisioning,
                ..
            } => Status::unavailable(message),
            Error::NotServed { .. } => Status::failed_precondition(message),
            Error::ControlPlane(status) => match status.code() {
                // The control plane's own failure is this service's dependency failing.
                Code::Internal | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled => {
                    tracing::error!(%status, "the control plane failed");
                    Status::unavailable("the tenant directory is unavailable")
                }
                _ => status,
            },
            Error::Malformed(_) | Error::Unsupported(_) => {
                tracing::error!(error = %message, "tenant context");
                Status::internal("the tenant's storage cannot be reached")
            }
            Error::Database(err) if lost_connection(&err) => {
                tracing::warn!(error = %err, "tenant database unavailable");
                Status::unavailable("the tenant's database is unavailable")
            }
            Error::Database(err) => {
                tracing::error!(error = %err, "tenant database");
                Status::internal("the tenant's database failed")
            }
        }
    }
}

/// Whether `err` means the database could not be reached (worth a retry: `UNAVAILABLE`) rather
/// than that it refused or failed a statement (`INTERNAL`). The control plane classifies its own
/// database errors the same way.
fn lost_connection(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => matches!(
            e.as_ref(),
            sea_orm::sqlx::Error::Io(_)
                | sea_orm::sqlx::Error::PoolTimedOut
                | sea_orm::sqlx::Error::PoolClosed
                | sea_orm::sqlx::Error::WorkerCrashed
        ),
        _ => false,
    }
}
