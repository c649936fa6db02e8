//! Tenant use cases: create, read, list, change, suspend, delete, restore and resolve.

use chrono::Duration;

use super::provisioning::Provisioning;
use crate::domain::{
    CallContext, DbRoleName, Error, FieldViolation, Isolation, PlanName, Resource, StoragePrefix,
    Tenant, effective_quotas,
};
use crate::store::Catalog;

mod api_keys;
mod create;
mod input;
mod list;
mod resolve;

pub use api_keys::NewApiKeyInput;
pub(super) use input::check_display_name;
use input::parse_labels;
pub use input::{
    CreateTenantInput, DataLocation, IsolationInput, ListTenantsInput, Lookup, RequestKey,
    TenantRef, UpdateTenantInput,
};
pub use resolve::TenantChange;
pub(crate) use resolve::cached_tenant;

/// Tenant settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct TenantSettings {
    pub prefix: StoragePrefix,
    pub default_plan: PlanName,
    /// Isolation of tenants whose plan does not choose one.
    pub default_isolation: Isolation,
    pub purge_retention: Duration,
}

/// How often a read-modify-write retries when another writer got there first.
const MAX_WRITE_ATTEMPTS: usize = 5;
const MAX_SUSPEND_REASON: usize = 500;

#[derive(Clone)]
pub struct Tenants {
    catalog: Catalog,
    settings: TenantSettings,
    /// Set when TENANT_AUTO_PROVISION is on: CreateTenant provisions storage at once.
    auto_provision: Option<Provisioning>,
}

impl Tenants {
    pub fn new(
        catalog: Catalog,
        settings: TenantSettings,
        auto_provision: Option<Provisioning>,
    ) -> Self {
        Self {
            catalog,
            settings,
            auto_provision,
        }
    }

    pub async fn get(&self, target: &TenantRef) -> Result<Tenant, Error> {
        load(&self.catalog, target).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn update(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        etag: Option<&str>,
        changes: UpdateTenantInput,
    ) -> Result<Tenant, Error> {
        let mut violations = Vec::new();
        if let Some(name) = &changes.display_name {
            check_display_name(name, "tenant.display_name", &mut violations);
            if name.is_empty() {
                violations.push(FieldViolation::new(
                    "tenant.display_name",
                    "must not be empty",
                ));
            }
        }
        let plan = match &changes.plan {
            Some(p) if p.is_empty() => {
                violations.push(FieldViolation::new("tenant.plan", "must not be empty"));
                None
            }
            Some(p) => self
                .known_plan(p, "tenant.plan", &mut violations)
                .await?
                .map(|(plan, _)| plan),
            None => None,
        };
        let labels = changes
            .labels
            .as_ref()
            .and_then(|l| parse_labels(l, "tenant.labels", &mut violations));
        if let Some(overrides) = &changes.limit_overrides {
            // An override changes the limit of a resource the tenant's plan (the new one, if the
            // plan changes too) or the well-known list defines.
            let plan = match &plan {
                Some(plan) => Some(plan.clone()),
                None if changes.plan.is_none() => Some(load(&self.catalog, target).await?.plan),
                None => None,
            };
            let limits = match &plan {
                Some(plan) => self.catalog.cached_plan(plan.as_str()).await?,
                None => None,
            };
            let known = effective_quotas(
                limits.as_deref().map_or(&[], |l| l.limits.as_slice()),
                overrides,
            );
            for (resource, limit) in overrides {
                let field = format!("tenant.limit_overrides[{resource}]");
                if let Err(why) = Resource::parse(resource) {
                    violations.push(FieldViolation::new(field, why));
                } else if plan.is_some() && !known.contains_key(resource) {
                    violations.push(FieldViolation::new(
                        field,
                        format!("'{resource}' is neither a well-known resource nor named by the tenant's plan"),
                    ));
                } else if *limit < -1 {
                    violations.push(FieldViolation::new(field, "must be -1 (unlimited) or more"));
                }
            }
        }
        Error::check(violations)?;
        self.mutate(ctx, target, etag, |t, _| {
            t.ensure_mutable()?;
            if let Some(name) = &changes.display_name {
                t.display_name = name.clone();
            }
            if let Some(plan) = &plan {
                t.plan = plan.clone();
            }
            if let Some(labels) = &labels {
                t.labels = labels.clone();
            }
            if let Some(overrides) = &changes.limit_overrides {
                t.limit_overrides = overrides.clone();
            }
            Ok(())
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn delete(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        etag: Option<&str>,
    ) -> Result<Tenant, Error> {
        let retention = self.settings.purge_retention;
        self.mutate(ctx, target, etag, |t, now| t.delete(now, retention))
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn undelete(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        etag: Option<&str>,
    ) -> Result<Tenant, Error> {
        self.mutate(ctx, target, etag, |t, _| t.undelete()).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn suspend(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        reason: &str,
        etag: Option<&str>,
    ) -> Result<Tenant, Error> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_SUSPEND_REASON {
            return Err(Error::invalid(
                "reason",
                format!("must be 1 to {MAX_SUSPEND_REASON} characters"),
            ));
        }
        self.mutate(ctx, target, etag, |t, now| {
            t.suspend(reason.to_owned(), now)
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn resume(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        etag: Option<&str>,
    ) -> Result<Tenant, Error> {
        self.mutate(ctx, target, etag, |t, _| t.resume()).await
    }

    /// Read-modify-write with optimistic concurrency. With an etag, a concurrent change is the
    /// caller's conflict (ABORTED); without one, the change is re-applied to the fresh row.
    async fn mutate<F>(
        &self,
        ctx: &CallContext,
        target: &TenantRef,
        etag: Option<&str>,
        change: F,
    ) -> Result<Tenant, Error>
    where
        F: Fn(&mut Tenant, chrono::DateTime<chrono::Utc>) -> Result<(), Error>,
    {
        let expected = etag.filter(|e| !e.is_empty()).map(|e| {
            crate::domain::Etag::parse(e)
                .ok_or_else(|| Error::invalid("etag", "is not an etag issued by this service"))
        });
        let expected = expected.transpose()?;
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let mut tenant = self.get(target).await?;
            ctx.note_tenant(tenant.id);
            if let Some(expected) = expected
                && expected != tenant.etag()
            {
                return Err(stale(&tenant));
            }
            let revision = tenant.revision;
            let state = tenant.state;
            change(&mut tenant, self.catalog.now())?;
            // A new state may take the role's LOGIN away or give it back, in the same commit.
            let role = (tenant.state != state).then(|| DbRoleName::of(&tenant));
            match self
                .catalog
                .save_tenant(ctx, &tenant, revision, role.as_ref())
                .await?
            {
                Some(saved) => return Ok(saved),
                None if expected.is_some() => return Err(stale(&tenant)),
                None => continue,
            }
        }
        Err(Error::Aborted {
            reason: "CONCURRENT_UPDATE",
            message: format!("{target} is being changed concurrently; retry"),
        })
    }

    /// The plan named by `text` (empty = the default plan) and its default isolation.
    async fn known_plan(
        &self,
        text: &str,
        field: &str,
        violations: &mut Vec<FieldViolation>,
    ) -> Result<Option<(PlanName, Option<Isolation>)>, Error> {
        let plan = if text.is_empty() {
            self.settings.default_plan.clone()
        } else {
            match PlanName::parse(text) {
                Ok(plan) => plan,
                Err(why) => {
                    violations.push(FieldViolation::new(field, why));
                    return Ok(None);
                }
            }
        };
        match self.catalog.plan_default_isolation(&plan).await? {
            Some(isolation) => Ok(Some((plan, isolation))),
            None => {
                violations.push(FieldViolation::new(field, format!("unknown plan '{plan}'")));
                Ok(None)
            }
        }
    }
}

/// The tenant `target` names, or NOT_FOUND.
pub(crate) async fn load(catalog: &Catalog, target: &TenantRef) -> Result<Tenant, Error> {
    let found = match target {
        TenantRef::Id(id) => catalog.tenant_by_id(*id).await?,
        TenantRef::Slug(slug) => catalog.tenant_by_slug(slug).await?,
    };
    found.ok_or_else(|| Error::tenant_not_found(target.to_string()))
}

fn stale(tenant: &Tenant) -> Error {
    Error::stale_etag(&tenant.slug)
}
