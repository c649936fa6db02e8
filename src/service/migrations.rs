//! Per-tenant migration use cases: what exists, where a tenant is, and moving it up or down.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use super::component_sets;
use super::idempotency;
use super::provisioning::storage_of;
use super::storage_run::run_and_record;
use super::tenants::{RequestKey, TenantRef, load};
use crate::dataplane::{DataPlane, Run, Target, TenantMigrations};
use crate::domain::SAMPLE;
use crate::domain::{CallContext, Error, Tenant, TenantState};
use crate::store::{
    Catalog,
    provisioning::{FailedRun, Mirror},
};

/// A tenant's migration state of one component, read from its own version table.
#[derive(Debug, Clone)]
pub struct MigrationStatus {
    pub tenant: String,
    /// The component's id.
    pub component: String,
    pub applied: Vec<(String, DateTime<Utc>)>,
    pub pending: Vec<String>,
    pub last_error: Option<String>,
}

impl MigrationStatus {
    pub fn current_version(&self) -> Option<&str> {
        self.applied.last().map(|(v, _)| v.as_str())
    }
}

/// The outcome of one MigrateTenant.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub status: MigrationStatus,
    /// Applied (up) or reverted (down) by this call, in order.
    pub ran: Vec<String>,
    pub duration: Duration,
}

/// What one migration call did, kept as the answer to its request id.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Ran {
    ran: Vec<String>,
    duration_ms: u64,
}

const MIGRATE_METHOD: &str = "tenant.v1.MigrationService/MigrateTenant";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Up,
    Down,
}

#[derive(Clone)]
pub struct Migrations {
    pub(super) catalog: Catalog,
    pub(super) dataplane: Arc<DataPlane>,
}

impl Migrations {
    pub fn new(catalog: Catalog, dataplane: Arc<DataPlane>) -> Self {
        Self { catalog, dataplane }
    }

    /// Every migration of `component` (empty: the compiled one), oldest first.
    pub async fn list(&self, component: &str) -> Result<Vec<String>, Error> {
        Ok(self.set(component).await?.names().to_vec())
    }

    /// The migration set of `component`; empty names the compiled one.
    pub(super) async fn set(&self, component: &str) -> Result<TenantMigrations, Error> {
        let component = if component.is_empty() {
            SAMPLE
        } else {
            component
        };
        component_sets::of_component(&self.catalog, &self.dataplane, component).await
    }

    /// The tenant's migration state of `component` (empty: the compiled one), read from its
    /// version table.
    pub async fn status(
        &self,
        target: &TenantRef,
        component: &str,
    ) -> Result<MigrationStatus, Error> {
        let tenant = load(&self.catalog, target).await?;
        provisioned(&tenant)?;
        let set = self.set(component).await?;
        let report = self.dataplane.inspect(&storage_of(&tenant), &set).await?;
        Ok(MigrationStatus {
            tenant: tenant.name(),
            component: report.component,
            applied: report.applied,
            pending: report.pending,
            last_error: tenant.last_error,
        })
    }

    /// Migrates one tenant, in one transaction: a failure leaves it at its previous version,
    /// with the error kept on the tenant.
    #[tracing::instrument(skip_all, fields(tenant = %target, component, ?direction, version))]
    pub async fn migrate(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        component: &str,
        version: &str,
        direction: Direction,
        request: Option<&RequestKey>,
    ) -> Result<Migrated, Error> {
        let migrations = &self.set(component).await?;
        let goal = goal(migrations, direction, version)?;
        let tenant = load(&self.catalog, target).await?;
        ctx.note_tenant(tenant.id);
        provisioned(&tenant)?;
        self.listed(&tenant, migrations.id()).await?;
        let run = idempotency::once(
            &self.catalog,
            ctx,
            request,
            MIGRATE_METHOD,
            tenant.id.as_uuid(),
            || self.run(ctx, &tenant, migrations, goal),
        )
        .await?;
        let status = self
            .status(&TenantRef::Id(tenant.id), migrations.id())
            .await?;
        Ok(Migrated {
            status,
            ran: run.ran,
            duration: Duration::from_millis(run.duration_ms),
        })
    }

    /// Whether the plan of the tenant lists `component` (empty: the compiled one), that is,
    /// whether [`Self::migrate`] would move it. [`Self::status`] answers for any registered
    /// component, since one dropped from a plan may still be installed in the tenant's
    /// storage; this lets its reader say that migrating it would be refused.
    pub async fn plan_lists(&self, target: &TenantRef, component: &str) -> Result<bool, Error> {
        let tenant = load(&self.catalog, target).await?;
        let component = if component.is_empty() {
            SAMPLE
        } else {
            component
        };
        self.lists(&tenant, component).await
    }

    async fn lists(&self, tenant: &Tenant, component: &str) -> Result<bool, Error> {
        let listed = self
            .catalog
            .plan_components(tenant.plan.as_str())
            .await?
            .unwrap_or_default();
        Ok(listed.iter().any(|c| c == component))
    }

    /// Refuses a component the tenant's plan does not list: its tables would be made in a
    /// tenant whose plan does not give them.
    pub(super) async fn listed(&self, tenant: &Tenant, component: &str) -> Result<(), Error> {
        if self.lists(tenant, component).await? {
            return Ok(());
        }
        Err(Error::FailedPrecondition {
            subject: format!("components/{component}"),
            message: format!(
                "the plan of tenant {} ({}) does not list component {component}",
                tenant.slug,
                tenant.plan.as_str()
            ),
        })
    }

    async fn run(
        &self,
        ctx: &CallContext,
        tenant: &Tenant,
        set: &TenantMigrations,
        goal: Target,
    ) -> Result<Ran, Error> {
        let started = std::time::Instant::now();
        let report = match run_and_record(
            ctx,
            &self.catalog,
            &self.dataplane,
            &storage_of(tenant),
            &Run::Migrate(goal),
            std::slice::from_ref(set),
            Mirror::Migrated,
        )
        .await
        {
            Ok((report, _)) => report.first(),
            Err(error) => {
                if matches!(error, Error::MigrationFailed { .. }) {
                    self.catalog
                        .record_failure(
                            ctx,
                            tenant.id,
                            &error.to_string(),
                            FailedRun::Later,
                            &[set.id()],
                        )
                        .await?;
                }
                return Err(error);
            }
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        if !report.ran.is_empty() {
            tracing::info!(ran = ?report.ran, elapsed_ms = duration_ms, "tenant migrated");
        }
        Ok(Ran {
            ran: report.ran,
            duration_ms,
        })
    }
}

/// Where a MigrateTenant (or its dry run) of `set` in `direction` to `version` goes.
pub(super) fn goal(
    set: &TenantMigrations,
    direction: Direction,
    version: &str,
) -> Result<Target, Error> {
    Ok(match (direction, version) {
        (Direction::Up, "") => Target::Latest,
        (Direction::Down, "") => Target::DownOne,
        (Direction::Up, v) => Target::Up(set.check_version(v, "target_version")?),
        (Direction::Down, v) => Target::Down(set.check_version(v, "target_version")?),
    })
}

/// Refuses a tenant whose storage does not exist or that is deleted.
pub(super) fn provisioned(tenant: &Tenant) -> Result<(), Error> {
    if tenant.state == TenantState::Deleted || tenant.provision_time.is_none() {
        let why = if tenant.state == TenantState::Deleted {
            "is DELETED"
        } else {
            "has no storage yet (provision it first)"
        };
        return Err(Error::FailedPrecondition {
            subject: tenant.name(),
            message: format!("tenant {} {why}", tenant.slug),
        });
    }
    Ok(())
}
