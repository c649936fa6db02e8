//! Tenant use cases: create, read, list, change, suspend, delete, restore and resolve.

use std::collections::BTreeMap;

use chrono::Duration;

use super::provisioning::Provisioning;
use crate::domain::{
    Error, FieldViolation, Isolation, PlanName, Resource, Slug, StorageName, StoragePrefix, Tenant,
    TenantId, TenantState, effective_quotas,
};
use crate::store::{Backend, Catalog, NewTenant, RequestRecord};

mod api_keys;
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

    #[tracing::instrument(skip_all, fields(slug = %input.slug))]
    pub async fn create(&self, mut input: CreateTenantInput) -> Result<Tenant, Error> {
        if let Some(key) = &input.request
            && let Some(first) = self.catalog.request_record(key.id).await?
        {
            return self.replay(&first, key).await;
        }
        let mut violations = std::mem::take(&mut input.violations);
        let slug = Slug::parse(&input.slug)
            .map_err(|why| violations.push(FieldViolation::new("tenant.slug", why)))
            .ok();
        let storage = slug.as_ref().and_then(|s| {
            StorageName::derive(&self.settings.prefix, s)
                .map_err(|why| violations.push(FieldViolation::new("tenant.slug", why)))
                .ok()
        });
        check_display_name(&input.display_name, "tenant.display_name", &mut violations);
        let plan = self
            .known_plan(&input.plan, "tenant.plan", &mut violations)
            .await?;
        let labels = parse_labels(&input.labels, "tenant.labels", &mut violations);
        let isolation = match input.isolation {
            IsolationInput::Unknown(n) => {
                violations.push(FieldViolation::new(
                    "tenant.isolation",
                    format!("unknown isolation {n}"),
                ));
                None
            }
            IsolationInput::Known(i) => Some(i),
            IsolationInput::Unspecified => match &plan {
                Some((_, Some(plan_default))) => Some(*plan_default),
                _ => Some(self.settings.default_isolation),
            },
        };
        if isolation == Some(Isolation::Shared) && self.catalog.backend() == Backend::Sqlite {
            violations.push(FieldViolation::new(
                "tenant.isolation",
                "shared isolation (row-level security) needs PostgreSQL; the embedded SQLite catalog offers database",
            ));
        }
        if isolation == Some(Isolation::Schema) && self.catalog.backend() == Backend::Sqlite {
            violations.push(FieldViolation::new(
                "tenant.isolation",
                "schema isolation needs PostgreSQL; the embedded SQLite catalog offers database isolation",
            ));
        }
        Error::check(violations)?;
        let (Some(slug), Some(storage), Some((plan, _)), Some(isolation), Some(labels)) =
            (slug, storage, plan, isolation, labels)
        else {
            return Err(Error::Internal(
                "validated create input is incomplete".into(),
            ));
        };

        let now = super::now();
        let (schema_name, database_name) = match (isolation, self.catalog.backend()) {
            (Isolation::Schema, _) => (Some(storage.to_string()), None),
            (Isolation::Database, Backend::Postgres) => (None, Some(storage.to_string())),
            (Isolation::Database, Backend::Sqlite) => (None, Some(format!("{storage}.sqlite3"))),
            (Isolation::Shared, _) => (
                Some(format!("{}shared", self.settings.prefix.as_str())),
                None,
            ),
        };
        let tenant = Tenant {
            id: TenantId::new(),
            display_name: if input.display_name.is_empty() {
                slug.to_string()
            } else {
                input.display_name
            },
            slug,
            plan,
            isolation,
            state: TenantState::Provisioning,
            state_before_suspend: None,
            state_before_delete: None,
            labels,
            limit_overrides: BTreeMap::new(),
            schema_name,
            database_name,
            suspend_reason: None,
            migration_version: None,
            last_error: None,
            last_error_time: None,
            provision_time: None,
            revision: 1,
            create_time: now,
            update_time: now,
            delete_time: None,
            purge_time: None,
            suspend_time: None,
        };
        if input.validate_only {
            if self.catalog.tenant_by_slug(&tenant.slug).await?.is_some() {
                return Err(Error::AlreadyExists {
                    kind: "tenant",
                    name: tenant.slug.to_string(),
                });
            }
            return Ok(tenant);
        }
        let record = input.request.as_ref().map(|key| RequestRecord {
            request_id: key.id,
            method: CREATE_METHOD.into(),
            request_hash: key.request_hash.clone(),
            resource_id: tenant.id.as_uuid(),
            result: None,
        });
        match self.catalog.insert_tenant(&tenant, record.as_ref()).await? {
            NewTenant::Created(created) => {
                tracing::info!(tenant = %created.id, "tenant created");
                match &self.auto_provision {
                    Some(provisioning) => {
                        match provisioning.provision_tenant(&created, false).await {
                            Ok((provisioned, _)) => Ok(provisioned),
                            // The tenant exists, FAILED with the error kept: return it as it is.
                            Err(error) => {
                                tracing::warn!(tenant = %created.id, %error, "provisioning a new tenant failed");
                                self.get(&TenantRef::Id(created.id)).await
                            }
                        }
                    }
                    None => Ok(*created),
                }
            }
            NewTenant::SlugTaken => Err(Error::AlreadyExists {
                kind: "tenant",
                name: tenant.slug.to_string(),
            }),
            NewTenant::Replayed(first) => match &input.request {
                Some(key) => self.replay(&first, key).await,
                None => Err(Error::Internal(
                    "replayed a create without a request id".into(),
                )),
            },
        }
    }

    /// The first answer to a retried create; a request id reused for another request is refused.
    async fn replay(&self, first: &RequestRecord, key: &RequestKey) -> Result<Tenant, Error> {
        if first.method != CREATE_METHOD || first.request_hash != key.request_hash {
            return Err(Error::invalid(
                "request_id",
                "was already used for a different request",
            ));
        }
        let id = TenantId::from(first.resource_id);
        self.catalog
            .tenant_by_id(id)
            .await?
            .ok_or_else(|| Error::tenant_not_found(format!("tenants/{id}")))
    }

    pub async fn get(&self, target: &TenantRef) -> Result<Tenant, Error> {
        load(&self.catalog, target).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn update(
        &self,
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
                Some(plan) => self.catalog.cached_plan_limits(plan).await?,
                None => None,
            };
            let known =
                effective_quotas(limits.as_deref().map_or(&[], |l| l.as_slice()), overrides);
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
        self.mutate(target, etag, |t, _| {
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
    pub async fn delete(&self, target: &TenantRef, etag: Option<&str>) -> Result<Tenant, Error> {
        let retention = self.settings.purge_retention;
        self.mutate(target, etag, |t, now| t.delete(now, retention))
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn undelete(&self, target: &TenantRef, etag: Option<&str>) -> Result<Tenant, Error> {
        self.mutate(target, etag, |t, _| t.undelete()).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn suspend(
        &self,
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
        self.mutate(target, etag, |t, now| t.suspend(reason.to_owned(), now))
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %target))]
    pub async fn resume(&self, target: &TenantRef, etag: Option<&str>) -> Result<Tenant, Error> {
        self.mutate(target, etag, |t, _| t.resume()).await
    }

    /// Read-modify-write with optimistic concurrency. With an etag, a concurrent change is the
    /// caller's conflict (ABORTED); without one, the change is re-applied to the fresh row.
    async fn mutate<F>(
        &self,
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
            if let Some(expected) = expected
                && expected != tenant.etag()
            {
                return Err(stale(&tenant));
            }
            let revision = tenant.revision;
            change(&mut tenant, super::now())?;
            match self.catalog.save_tenant(&tenant, revision).await? {
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

const CREATE_METHOD: &str = "tenant.v1.TenantService/CreateTenant";

fn stale(tenant: &Tenant) -> Error {
    Error::stale_etag(&tenant.slug)
}
