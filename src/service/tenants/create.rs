//! CreateTenant: checks the request, inserts the tenant (with its owner, if one is named, as its
//! first member) and, with TENANT_AUTO_PROVISION, provisions its storage.

use std::collections::BTreeMap;

use super::input::{check_display_name, parse_labels};
use super::{CreateTenantInput, IsolationInput, RequestKey, TenantRef, Tenants};
use crate::domain::{
    CallContext, Error, FieldViolation, Isolation, Member, Role, Slug, StorageName, Tenant,
    TenantId, TenantState, UserId,
};
use crate::store::{Backend, NewTenant, RequestRecord};

const CREATE_METHOD: &str = "tenant.v1.TenantService/CreateTenant";

impl Tenants {
    #[tracing::instrument(skip_all, fields(slug = %input.slug))]
    pub async fn create(
        &self,
        ctx: &CallContext,
        mut input: CreateTenantInput,
    ) -> Result<Tenant, Error> {
        if let Some(key) = &input.request
            && let Some(first) = self.catalog.request_record(key.id).await?
        {
            return self.replay(ctx, &first, key).await;
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
        let owner = (!input.owner_user_id.is_empty())
            .then(|| {
                UserId::parse(&input.owner_user_id)
                    .map_err(|why| violations.push(FieldViolation::new("owner_user_id", why)))
                    .ok()
            })
            .flatten();
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

        let now = self.catalog.now();
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
        self.catalog.check_storage_name(&tenant).await?;
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
        let owner = owner.map(|user| Member::new(tenant.id, user, Role::Owner, now));
        match self
            .catalog
            .insert_tenant(ctx, &tenant, owner.as_ref(), record.as_ref())
            .await?
        {
            NewTenant::Created(created) => {
                tracing::info!(tenant = %created.id, "tenant created");
                match &self.auto_provision {
                    Some(provisioning) => {
                        match provisioning.provision_tenant(ctx, &created, false).await {
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
            NewTenant::StorageTaken(name) => Err(Error::AlreadyExists {
                kind: "tenant storage",
                name,
            }),
            NewTenant::Replayed(first) => match &input.request {
                Some(key) => self.replay(ctx, &first, key).await,
                None => Err(Error::Internal(
                    "replayed a create without a request id".into(),
                )),
            },
        }
    }

    /// The first answer to a retried create; a request id reused for another request is refused.
    async fn replay(
        &self,
        ctx: &CallContext,
        first: &RequestRecord,
        key: &RequestKey,
    ) -> Result<Tenant, Error> {
        if first.method != CREATE_METHOD || first.request_hash != key.request_hash {
            return Err(Error::invalid(
                "request_id",
                "was already used for a different request",
            ));
        }
        let id = TenantId::from(first.resource_id);
        ctx.replayed();
        self.catalog
            .tenant_by_id(id)
            .await?
            .ok_or_else(|| Error::tenant_not_found(format!("tenants/{id}")))
    }
}
