//! Provisioning use cases: create a tenant's storage and migrate it to the latest version,
//! report on it, and purge it — only for a deleted tenant, only with its slug as confirmation.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::component_sets;
use super::idempotency;
use super::storage_run::run_and_record;
use super::tenants::{DataLocation, RequestKey, TenantRef, load};
use crate::dataplane::{DataPlane, Run, Storage, TenantMigrations};
use crate::domain::{
    CallContext, DbRoleName, Error, Etag, Isolation, Tenant, TenantId, TenantState,
};
use crate::store::{
    Backend, Catalog,
    provisioning::{FailedRun, Mirror, RowChange},
};

/// A tenant's storage, as GetProvisioningStatus reports it (from the catalog's mirror: no
/// tenant schema is opened to answer).
#[derive(Debug, Clone)]
pub struct ProvisioningStatus {
    pub tenant: String,
    pub storage_provisioned: bool,
    pub current_version: Option<String>,
    pub latest_version: Option<String>,
    pub last_error: Option<String>,
    pub provision_time: Option<DateTime<Utc>>,
    pub last_error_time: Option<DateTime<Utc>>,
    pub location: DataLocation,
}

impl ProvisioningStatus {
    pub fn migrations_applied(&self) -> bool {
        self.storage_provisioned && self.current_version == self.latest_version
    }
}

#[derive(Clone)]
pub struct Provisioning {
    pub(super) catalog: Catalog,
    pub(super) dataplane: Arc<DataPlane>,
}

impl Provisioning {
    pub fn new(catalog: Catalog, dataplane: Arc<DataPlane>) -> Self {
        Self { catalog, dataplane }
    }

    /// Creates the tenant's storage if it is missing (or rebuilds it with `force_recreate`) and
    /// migrates it to the latest version. Returns the tenant and whether anything changed.
    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn provision(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        force_recreate: bool,
        etag: Option<&str>,
        request: Option<&RequestKey>,
    ) -> Result<(Tenant, bool), Error> {
        let tenant = load(&self.catalog, target).await?;
        ctx.note_tenant(tenant.id);
        let expected = parse_etag(etag)?;
        if force_recreate && expected.is_none() {
            return Err(Error::invalid(
                "etag",
                "is required with force_recreate: rebuilding drops the tenant's data",
            ));
        }
        if expected.is_some_and(|e| e != tenant.etag()) {
            return Err(Error::stale_etag(&tenant.slug));
        }
        // The row provisioning returns, if it ran (a retried request's replay does not).
        let row = std::sync::Mutex::new(None);
        let changed = idempotency::once(
            &self.catalog,
            ctx,
            request,
            PROVISION_METHOD,
            tenant.id.as_uuid(),
            || async {
                let (changed, fresh) = self.provision_storage(ctx, &tenant, force_recreate).await?;
                if let Ok(mut slot) = row.lock() {
                    *slot = fresh;
                }
                Ok(changed)
            },
        )
        .await?;
        let row = row.into_inner().ok().flatten();
        Ok((self.fresh(tenant.id, row).await?, changed))
    }

    /// Provisions a tenant already loaded (CreateTenant with TENANT_AUTO_PROVISION): the
    /// tenant as it is then, and whether anything changed.
    pub(crate) async fn provision_tenant(
        &self,
        ctx: &CallContext,
        tenant: &Tenant,
        recreate: bool,
    ) -> Result<(Tenant, bool), Error> {
        let (changed, row) = self.provision_storage(ctx, tenant, recreate).await?;
        Ok((self.fresh(tenant.id, row).await?, changed))
    }

    /// The tenant as it is now: `row`, the one provisioning changed it to, or read afresh.
    async fn fresh(&self, id: TenantId, row: Option<Box<Tenant>>) -> Result<Tenant, Error> {
        match row {
            Some(row) => Ok(*row),
            None => load(&self.catalog, &TenantRef::Id(id)).await,
        }
    }

    /// Creates or rebuilds the storage of a tenant already loaded and migrates it; whether
    /// anything changed, and the tenant's row as provisioning changed it, where the database
    /// returned it.
    async fn provision_storage(
        &self,
        ctx: &CallContext,
        tenant: &Tenant,
        recreate: bool,
    ) -> Result<(bool, Option<Box<Tenant>>), Error> {
        if matches!(tenant.state, TenantState::Deleted | TenantState::Suspended) {
            return Err(Error::FailedPrecondition {
                subject: tenant.name(),
                message: format!(
                    "cannot provision tenant {} while it is {}",
                    tenant.slug,
                    tenant.state.as_str()
                ),
            });
        }
        let mirror = if recreate {
            Mirror::Rebuilt
        } else {
            Mirror::Provisioned
        };
        let run = Run::Provision { recreate };
        let storage = storage_of(tenant);
        let sets =
            component_sets::of_plan(&self.catalog, &self.dataplane, tenant.plan.as_str()).await?;
        let ran = run_and_record(
            ctx,
            &self.catalog,
            &self.dataplane,
            &storage,
            &run,
            &sets,
            mirror,
        )
        .await;
        let (report, recorded) = match ran {
            Ok(done) => done,
            Err(error) => {
                let failed = if tenant.provision_time.is_none() {
                    FailedRun::FirstProvisioning
                } else {
                    FailedRun::Later
                };
                let components: Vec<&str> = sets.iter().map(TenantMigrations::id).collect();
                self.catalog
                    .record_failure(ctx, tenant.id, &error.to_string(), failed, &components)
                    .await?;
                return Err(error);
            }
        };
        // Provisioning was refused to a suspended or deleted tenant, but the tenant may have
        // become one while its role was being made. A schema in the catalog database settled
        // that in its provisioning transaction; a database of its own could not.
        if tenant.isolation == Isolation::Database {
            self.catalog
                .settle_role_login(tenant.id, &DbRoleName::of(tenant))
                .await?;
        }
        // A provisioning that waited for another one of the tenant finds the work done.
        let (recorded, row) = match recorded {
            RowChange::None => (false, None),
            RowChange::Changed(row) => (true, row),
        };
        let changed = report.created || report.ran_any() || recorded;
        if changed {
            tracing::info!(
                created = report.created,
                applied = report.ran_count(),
                "tenant storage provisioned"
            );
        }
        Ok((changed, row))
    }

    pub async fn status(&self, target: &TenantRef) -> Result<ProvisioningStatus, Error> {
        let tenant = load(&self.catalog, target).await?;
        Ok(self.status_of(&tenant))
    }

    pub fn status_of(&self, tenant: &Tenant) -> ProvisioningStatus {
        ProvisioningStatus {
            tenant: tenant.name(),
            storage_provisioned: tenant.provision_time.is_some(),
            current_version: tenant.migration_version.clone(),
            latest_version: self.dataplane.migrations().latest().map(str::to_owned),
            last_error: tenant.last_error.clone(),
            provision_time: tenant.provision_time,
            last_error_time: tenant.last_error_time,
            location: location_of(tenant, self.catalog.backend()),
        }
    }

    /// Drops a DELETED tenant's storage, given its slug as confirmation. Never reached by a plain
    /// DeleteTenant.
    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn purge(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        confirm_slug: &str,
        etag: Option<&str>,
        request: Option<&RequestKey>,
    ) -> Result<Tenant, Error> {
        let tenant = load(&self.catalog, target).await?;
        ctx.note_tenant(tenant.id);
        idempotency::once(
            &self.catalog,
            ctx,
            request,
            PURGE_METHOD,
            tenant.id.as_uuid(),
            || async {
                self.purge_once(ctx, tenant.clone(), confirm_slug, etag)
                    .await
                    .map(|_| ())
            },
        )
        .await?;
        load(&self.catalog, &TenantRef::Id(tenant.id)).await
    }

    async fn purge_once(
        &self,
        ctx: &CallContext,
        tenant: Tenant,
        confirm_slug: &str,
        etag: Option<&str>,
    ) -> Result<Tenant, Error> {
        if confirm_slug != tenant.slug.as_str() {
            return Err(Error::invalid(
                "confirm_slug",
                "must equal the tenant's slug to confirm the purge",
            ));
        }
        if let Some(expected) = parse_etag(etag)?
            && expected != tenant.etag()
        {
            return Err(Error::stale_etag(&tenant.slug));
        }
        if tenant.state != TenantState::Deleted {
            return Err(Error::FailedPrecondition {
                subject: tenant.name(),
                message: format!(
                    "only a DELETED tenant can be purged; {} is {}",
                    tenant.slug,
                    tenant.state.as_str()
                ),
            });
        }
        let storage = storage_of(&tenant);
        if tenant.provision_time.is_some() {
            self.dataplane.drop_storage(&storage).await?;
        }
        // Also when the storage is gone already: a purge that stopped half-way is finished.
        self.dataplane.drop_role(&storage).await?;
        self.catalog.record_purge(ctx, tenant.id).await?;
        tracing::warn!(slug = %tenant.slug, "tenant storage purged");
        load(&self.catalog, &TenantRef::Id(tenant.id)).await
    }
}

impl Provisioning {
    /// Purges the storage of deleted tenants whose retention has run out; returns how many.
    /// Each tenant is read again just before its storage is dropped, so one undeleted in the
    /// meantime is left alone. `ctx` is the purge job's (system) context.
    pub async fn purge_due(&self, ctx: &CallContext) -> Result<usize, Error> {
        let mut purged = 0;
        let now = self.catalog.now();
        for due in self.catalog.due_purges(now, PURGE_BATCH).await? {
            let tenant = load(&self.catalog, &TenantRef::Id(due.id)).await?;
            let still_due = tenant.state == TenantState::Deleted
                && tenant.provision_time.is_some()
                && tenant.purge_time.is_some_and(|t| t <= now);
            if !still_due {
                continue;
            }
            let storage = storage_of(&tenant);
            self.dataplane.drop_storage(&storage).await?;
            self.dataplane.drop_role(&storage).await?;
            self.catalog.record_purge(ctx, tenant.id).await?;
            tracing::warn!(tenant = %tenant.id, slug = %tenant.slug, "retention ran out: tenant storage purged");
            purged += 1;
        }
        Ok(purged)
    }
}

const PROVISION_METHOD: &str = "tenant.v1.ProvisioningService/ProvisionTenant";
const PURGE_METHOD: &str = "tenant.v1.ProvisioningService/DeprovisionTenant";

/// Tenants purged per pass of the purge job: bounds one pass's work.
const PURGE_BATCH: u64 = 100;

fn parse_etag(etag: Option<&str>) -> Result<Option<Etag>, Error> {
    etag.filter(|e| !e.is_empty())
        .map(|e| {
            Etag::parse(e)
                .ok_or_else(|| Error::invalid("etag", "is not an etag issued by this service"))
        })
        .transpose()
}

/// Where the data plane finds the tenant's storage.
pub fn storage_of(tenant: &Tenant) -> Storage {
    Storage {
        tenant: tenant.id,
        isolation: tenant.isolation,
        schema: tenant.schema_name.clone(),
        database: tenant.database_name.clone(),
        role: DbRoleName::of(tenant),
    }
}

/// Where the tenant's data lives. The role is named once the tenant is provisioned on a
/// PostgreSQL catalog (an SQLite catalog has no roles).
pub(crate) fn location_of(tenant: &Tenant, backend: Backend) -> DataLocation {
    DataLocation {
        isolation: tenant.isolation,
        schema_name: tenant.schema_name.clone(),
        database_name: tenant.database_name.clone(),
        row_filter_tenant_id: (tenant.isolation == crate::domain::Isolation::Shared)
            .then(|| tenant.id.to_string()),
        role_name: (backend == Backend::Postgres && tenant.provision_time.is_some())
            .then(|| DbRoleName::of(tenant).to_string()),
    }
}
