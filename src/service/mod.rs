//! Use cases, in domain terms: no tonic and no sea-orm types cross this boundary.

mod audit;
mod component_sets;
mod components;
mod credentials;
mod drift;
mod fleet;
mod idempotency;
mod jobs;
mod members;
mod migration_plan;
mod migrations;
mod paging;
mod plans;
mod provisioning;
mod quotas;
mod rehearsal;
mod rollout_watch;
mod rollout_worker;
mod rollouts;
mod storage_run;
mod tenants;

pub use audit::{AuditLog, ListAuditEventsInput, run_audit_prune_job};
pub use components::{
    Components, CreateComponentInput, LintServer, PushInput, PushOutcome, PushedMigration,
    parse_component_name, parse_migration_name,
};
pub use credentials::Credentials;
pub use drift::{
    Checked, DriftChange, DriftDifference, DriftObject, DriftScope, DriftSummary, Drifts,
    TenantDrift,
};
pub use fleet::{ComponentFleet, Fleet, FleetStatus};
pub use jobs::{Job, JobPasses, run_purge_job};
pub use members::{AddMemberInput, Members, parse_etag};
pub use migration_plan::{MigrationPlan, PlannedStep};
pub use migrations::{Direction, Migrated, MigrationStatus, Migrations};
pub use plans::{
    PlanFields, PlanLimitInput, Plans, UpsertPlanInput, parse_name as parse_plan_name,
};
pub use provisioning::{Provisioning, ProvisioningStatus, storage_of};
pub use quotas::{QuotaState, Quotas, STORAGE_BYTES, USAGE_MAX_AGE};
pub use rehearsal::{Rehearsal, RehearsedTarget};
pub use rollout_worker::RolloutWorker;
pub use rollouts::{RolloutSettings, Rollouts, SelectorInput, StartRolloutInput, WatchItem};

pub use paging::{PageSize, PageToken};
pub use tenants::{
    CreateTenantInput, DataLocation, IsolationInput, ListTenantsInput, Lookup, NewApiKeyInput,
    RequestKey, TenantChange, TenantRef, TenantSettings, Tenants, UpdateTenantInput,
};
