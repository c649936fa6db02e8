//! Use cases, in domain terms: no tonic and no sea-orm types cross this boundary.

mod audit;
mod credentials;
mod idempotency;
mod members;
mod migrations;
mod paging;
mod plans;
mod provisioning;
mod quotas;
mod rollout_watch;
mod rollout_worker;
mod rollouts;
mod storage_run;
mod tenants;

/// The audit row of one call, opened by the gRPC layer (see `store::audit`).
pub use crate::store::audit::Scope as AuditScope;
pub use audit::{AuditLog, ListAuditEventsInput, run_audit_prune_job};
pub use credentials::Credentials;
pub use members::{AddMemberInput, Members, parse_etag};
pub use migrations::{Direction, Migrated, MigrationStatus, Migrations};
pub use plans::{
    PlanFields, PlanLimitInput, Plans, UpsertPlanInput, parse_name as parse_plan_name,
};
pub use provisioning::{Provisioning, ProvisioningStatus, run_purge_job, storage_of};
pub use quotas::{QuotaState, Quotas, STORAGE_BYTES, USAGE_MAX_AGE};
pub use rollout_worker::RolloutWorker;
pub use rollouts::{RolloutSettings, Rollouts, SelectorInput, StartRolloutInput, WatchItem};

pub use paging::{PageSize, PageToken};
pub use tenants::{
    CreateTenantInput, DataLocation, IsolationInput, ListTenantsInput, Lookup, NewApiKeyInput,
    RequestKey, TenantChange, TenantRef, TenantSettings, Tenants, UpdateTenantInput,
};

/// Now, at the catalog's precision (microseconds), so a value returned by a write equals the
/// value a later read returns.
pub(crate) fn now() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
