//! The vocabulary of the control plane: parsed identifiers, the tenant and its state machine,
//! and the error type every use case returns. No I/O here, so all of it is unit-tested in place.

mod api_key;
mod call;
mod catalog_schema;
pub mod component;
mod credentials;
mod error;
mod member;
mod names;
mod plan;
mod quota;
mod rollout;
mod tenant;

pub use api_key::{ApiKey, NewSecret, SECRET_PREFIX, hash_secret};
pub use call::{Actor, AuditRow, CallContext, CallerRole, Principal};
pub use catalog_schema::CatalogSchema;
pub use component::{
    Component, ComponentId, ComponentMigration, LintNote, MigrationBody, MigrationVersion,
    NoteSeverity, SAMPLE, Script, version_table,
};
pub use credentials::{DbPassword, DbRoleName, ScramVerifier};
pub use error::{Error, FieldViolation, QuotaViolation};
pub use member::{Member, Role, USERS, UserId};
pub use names::{Labels, PlanName, Slug, StorageName, StoragePrefix, TenantId};
pub use plan::Plan;
pub use quota::{
    Metering, PlanLimit, Quota, QuotaKind, Resource, WELL_KNOWN, effective_quotas, well_known,
};
pub use rollout::{
    ErrorPolicy, Rollout, RolloutCounts, RolloutState, Selector, TargetState, Verdict,
};
pub use tenant::{Etag, Isolation, Tenant, TenantState};
