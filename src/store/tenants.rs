//! Queries on the `tenants` table.

use std::collections::BTreeMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DbBackend, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use super::cache::Change;
use super::entity::{request_id, tenant, tenant_component};
use super::{
    Backend, Catalog, RequestRecord, audit, db_error, is_unique_violation, members, role_login,
};
use crate::domain::{
    CallContext, DbRoleName, Error, Isolation, Labels, Member, PlanName, Slug, Tenant, TenantId,
    TenantState,
};

/// What happened to an insert.
#[derive(Debug)]
pub enum NewTenant {
    Created(Box<Tenant>),
    /// Another tenant holds the slug.
    SlugTaken,
    /// Another tenant's storage has this name (one made with another prefix).
    StorageTaken(String),
    /// A concurrent call with the same request id won; this is its record.
    Replayed(RequestRecord),
}

/// One page of a tenant listing, ordered by id (UUIDv7, so creation order).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub states: Vec<TenantState>,
    pub plan: Option<PlanName>,
    pub labels: Labels,
    pub show_deleted: bool,
    /// Only tenants the catalog mirrors at this (component, version); an empty version means
    /// the component with none of its migrations applied.
    pub component_version: Option<(String, String)>,
    /// Only ids greater than this (the last id of the previous page).
    pub after: Option<TenantId>,
    pub limit: u64,
}

impl Catalog {
    pub async fn tenant_by_id(&self, id: TenantId) -> Result<Option<Tenant>, Error> {
        let row = tenant::Entity::find_by_id(id.as_uuid())
            .one(self.conn())
            .await
            .map_err(db_error)?;
        row.map(to_domain).transpose()
    }

    pub async fn tenant_by_slug(&self, slug: &Slug) -> Result<Option<Tenant>, Error> {
        let row = tenant::Entity::find()
            .filter(tenant::Column::Slug.eq(slug.as_str()))
            .one(self.conn())
            .await
            .map_err(db_error)?;
        row.map(to_domain).transpose()
    }

    /// How many tenants are in each state (states with none are left out).
    pub async fn tenants_by_state(&self) -> Result<Vec<(TenantState, i64)>, Error> {
        let rows: Vec<(String, i64)> = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::State)
            .column_as(tenant::Column::Id.count(), "n")
            .group_by(tenant::Column::State)
            .into_tuple()
            .all(self.conn())
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(state, n)| {
                let state = TenantState::parse(&state)
                    .ok_or_else(|| Error::Internal(format!("bad tenant state {state}")))?;
                Ok((state, n))
            })
            .collect()
    }

    /// Inserts a tenant and, in the same transaction, its first member (its owner, if named)
    /// and the request id that asked for it. A unique violation means either the slug is taken
    /// or a concurrent retry won the race: the request record tells which.
    pub async fn insert_tenant(
        &self,
        ctx: &CallContext,
        new: &Tenant,
        owner: Option<&Member>,
        record: Option<&RequestRecord>,
    ) -> Result<NewTenant, Error> {
        let outcome = self
            .conn()
            .transaction::<_, (), sea_orm::DbErr>(|txn| {
                let model = from_domain(new).into_active_model();
                let record = record.cloned();
                let owner = owner.cloned();
                let id = new.id;
                let ctx = ctx.clone();
                let now = self.now();
                Box::pin(async move {
                    tenant::Entity::insert(model)
                        .exec_without_returning(txn)
                        .await?;
                    audit::record(txn, &ctx, Some(id)).await?;
                    if let Some(owner) = &owner {
                        members::insert_owner(txn, owner).await?;
                    }
                    if let Some(r) = record {
                        let row = request_id::ActiveModel {
                            request_id: Set(r.request_id),
                            method: Set(r.method),
                            request_hash: Set(r.request_hash),
                            resource_id: Set(r.resource_id),
                            result: Set(None),
                            create_time: Set(now),
                        };
                        request_id::Entity::insert(row)
                            .exec_without_returning(txn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await;
        match outcome {
            Ok(()) => {
                // A cached "no such slug" must go.
                self.changed(&Change::Tenant {
                    id: new.id,
                    slug: new.slug.as_str().to_owned(),
                });
                Ok(NewTenant::Created(Box::new(new.clone())))
            }
            Err(sea_orm::TransactionError::Transaction(err)) if is_unique_violation(&err) => {
                if let Some(r) = record
                    && let Some(first) = self.request_record(r.request_id).await?
                {
                    return Ok(NewTenant::Replayed(first));
                }
                // The unique indexes of catalog migration 000015 name the column.
                let text = err.to_string();
                let storage = match (&new.schema_name, &new.database_name) {
                    (Some(schema), _) if text.contains("schema_name") => Some(schema),
                    (_, Some(database)) if text.contains("database_name") => Some(database),
                    _ => None,
                };
                Ok(match storage {
                    Some(name) => NewTenant::StorageTaken(name.clone()),
                    None => NewTenant::SlugTaken,
                })
            }
            Err(
                sea_orm::TransactionError::Transaction(err)
                | sea_orm::TransactionError::Connection(err),
            ) => Err(db_error(err)),
        }
    }

    /// Writes every mutable column of `t` if the row is still at `expected_revision`, bumping the
    /// revision. `None` when the row has moved on (or is gone): the caller re-reads and decides.
    ///
    /// `role` is the tenant's database role, given when the save changes the tenant's state: on
    /// PostgreSQL, whether it may log in then follows the new state in the same transaction, and
    /// a role that lost LOGIN has its sessions ended after the commit ([`role_login`]).
    pub async fn save_tenant(
        &self,
        ctx: &CallContext,
        t: &Tenant,
        expected_revision: i64,
        role: Option<&DbRoleName>,
    ) -> Result<Option<Tenant>, Error> {
        let mut saved = t.clone();
        saved.revision = expected_revision + 1;
        saved.update_time = self.now();
        let model = from_domain(&saved);
        // The change, its role's LOGIN and its audit row commit together.
        let txn = self.conn().begin().await.map_err(db_error)?;
        let result = tenant::Entity::update_many()
            .col_expr(tenant::Column::DisplayName, Expr::value(model.display_name))
            .col_expr(tenant::Column::Plan, Expr::value(model.plan))
            .col_expr(tenant::Column::State, Expr::value(model.state))
            .col_expr(
                tenant::Column::StateBeforeDelete,
                Expr::value(model.state_before_delete),
            )
            .col_expr(
                tenant::Column::StateBeforeSuspend,
                Expr::value(model.state_before_suspend),
            )
            .col_expr(tenant::Column::Labels, Expr::value(model.labels))
            .col_expr(
                tenant::Column::LimitOverrides,
                Expr::value(model.limit_overrides),
            )
            .col_expr(
                tenant::Column::SuspendReason,
                Expr::value(model.suspend_reason),
            )
            .col_expr(tenant::Column::SuspendTime, Expr::value(model.suspend_time))
            .col_expr(tenant::Column::DeleteTime, Expr::value(model.delete_time))
            .col_expr(tenant::Column::PurgeTime, Expr::value(model.purge_time))
            .col_expr(
                tenant::Column::MigrationVersion,
                Expr::value(model.migration_version),
            )
            .col_expr(tenant::Column::LastError, Expr::value(model.last_error))
            .col_expr(
                tenant::Column::LastErrorTime,
                Expr::value(model.last_error_time),
            )
            .col_expr(
                tenant::Column::ProvisionTime,
                Expr::value(model.provision_time),
            )
            .col_expr(tenant::Column::Revision, Expr::value(model.revision))
            .col_expr(tenant::Column::UpdateTime, Expr::value(model.update_time))
            .filter(tenant::Column::Id.eq(model.id))
            .filter(tenant::Column::Revision.eq(expected_revision))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        if result.rows_affected != 1 {
            return Ok(None);
        }
        // After the UPDATE, which holds the row: see role_login on why that comes first.
        let login = saved.state.admits_logins();
        let role = match role {
            Some(role) if self.backend() == Backend::Postgres => {
                role_login::set_login(&txn, role, login)
                    .await
                    .map_err(db_error)?
                    .then_some(role)
            }
            _ => None,
        };
        audit::record(&txn, ctx, Some(saved.id))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        if let Some(role) = role
            && !login
        {
            self.end_sessions(role).await;
        }
        self.changed(&Change::Tenant {
            id: saved.id,
            slug: saved.slug.as_str().to_owned(),
        });
        Ok(Some(saved))
    }

    /// DELETED tenants whose purge time has passed and whose storage still exists.
    pub async fn due_purges(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: u64,
    ) -> Result<Vec<Tenant>, Error> {
        let rows = tenant::Entity::find()
            .filter(tenant::Column::State.eq(TenantState::Deleted.as_str()))
            .filter(tenant::Column::PurgeTime.lte(now))
            .filter(tenant::Column::ProvisionTime.is_not_null())
            .order_by_asc(tenant::Column::PurgeTime)
            .limit(limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        rows.into_iter().map(to_domain).collect()
    }

    pub async fn list_tenants(&self, query: &ListQuery) -> Result<Vec<Tenant>, Error> {
        let mut cond = Condition::all();
        if !query.states.is_empty() {
            cond = cond.add(tenant::Column::State.is_in(query.states.iter().map(|s| s.as_str())));
        }
        if !query.show_deleted {
            cond = cond.add(tenant::Column::State.ne(TenantState::Deleted.as_str()));
        }
        if let Some(plan) = &query.plan {
            cond = cond.add(tenant::Column::Plan.eq(plan.as_str()));
        }
        if let Some(after) = query.after {
            cond = cond.add(tenant::Column::Id.gt(after.as_uuid()));
        }
        cond = cond.add(self.label_condition(&query.labels));
        if let Some((component, version)) = &query.component_version {
            let at = if version.is_empty() {
                tenant_component::Column::Version.is_null()
            } else {
                tenant_component::Column::Version.eq(version.as_str())
            };
            cond = cond.add(Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(tenant_component::Entity)
                    .and_where(
                        Expr::col((tenant_component::Entity, tenant_component::Column::TenantId))
                            .equals((tenant::Entity, tenant::Column::Id)),
                    )
                    .and_where(tenant_component::Column::Component.eq(component.as_str()))
                    .and_where(at)
                    .to_owned(),
            ));
        }
        let rows = tenant::Entity::find()
            .filter(cond)
            .order_by_asc(tenant::Column::Id)
            .limit(query.limit)
            .all(self.conn())
            .await
            .map_err(db_error)?;
        rows.into_iter().map(to_domain).collect()
    }

    /// Label selection as bound parameters: `labels @> $1` on PostgreSQL (one containment test
    /// against a JSON object), `json_extract(labels, $path) = $value` per label on SQLite.
    pub(crate) fn label_condition(&self, labels: &Labels) -> Condition {
        let mut cond = Condition::all();
        if labels.is_empty() {
            return cond;
        }
        match self.conn().get_database_backend() {
            DbBackend::Postgres => {
                let wanted = serde_json::to_value(labels.as_map()).unwrap_or_default();
                cond = cond.add(Expr::cust_with_values(
                    "\"tenants\".\"labels\" @> $1",
                    [wanted],
                ));
            }
            _ => {
                for (key, value) in labels.as_map() {
                    // Label keys are restricted to [a-z0-9._-], and the path is bound, not spliced.
                    let path = format!("$.\"{key}\"");
                    cond = cond.add(Expr::cust_with_values(
                        "json_extract(\"tenants\".\"labels\", ?) = ?",
                        [path, value.clone()],
                    ));
                }
            }
        }
        cond
    }
}

fn corrupt(field: &str, id: Uuid) -> Error {
    Error::Internal(format!("catalog row of tenant {id} has an invalid {field}"))
}

pub(super) fn to_domain(m: tenant::Model) -> Result<Tenant, Error> {
    let id = m.id;
    let state = |text: Option<&str>| -> Result<Option<TenantState>, Error> {
        text.map(|s| TenantState::parse(s).ok_or_else(|| corrupt("state", id)))
            .transpose()
    };
    let labels: BTreeMap<String, String> =
        serde_json::from_value(m.labels).map_err(|_| corrupt("labels", id))?;
    let limit_overrides: BTreeMap<String, i64> =
        serde_json::from_value(m.limit_overrides).map_err(|_| corrupt("limit_overrides", id))?;
    Ok(Tenant {
        id: TenantId::from(m.id),
        slug: Slug::parse(&m.slug).map_err(|_| corrupt("slug", id))?,
        display_name: m.display_name,
        plan: PlanName::parse(&m.plan).map_err(|_| corrupt("plan", id))?,
        isolation: Isolation::parse(&m.isolation).ok_or_else(|| corrupt("isolation", id))?,
        state: state(Some(&m.state))?.ok_or_else(|| corrupt("state", id))?,
        state_before_delete: state(m.state_before_delete.as_deref())?,
        state_before_suspend: state(m.state_before_suspend.as_deref())?,
        labels: Labels::from_trusted(labels),
        limit_overrides,
        schema_name: m.schema_name,
        database_name: m.database_name,
        suspend_reason: m.suspend_reason,
        migration_version: m.migration_version,
        last_error: m.last_error,
        last_error_time: m.last_error_time,
        provision_time: m.provision_time,
        revision: m.revision,
        create_time: m.create_time,
        update_time: m.update_time,
        delete_time: m.delete_time,
        purge_time: m.purge_time,
        suspend_time: m.suspend_time,
    })
}

fn from_domain(t: &Tenant) -> tenant::Model {
    tenant::Model {
        id: t.id.as_uuid(),
        slug: t.slug.as_str().to_owned(),
        display_name: t.display_name.clone(),
        plan: t.plan.as_str().to_owned(),
        isolation: t.isolation.as_str().to_owned(),
        state: t.state.as_str().to_owned(),
        state_before_delete: t.state_before_delete.map(|s| s.as_str().to_owned()),
        state_before_suspend: t.state_before_suspend.map(|s| s.as_str().to_owned()),
        labels: serde_json::to_value(t.labels.as_map()).unwrap_or_default(),
        limit_overrides: serde_json::to_value(&t.limit_overrides).unwrap_or_default(),
        schema_name: t.schema_name.clone(),
        database_name: t.database_name.clone(),
        suspend_reason: t.suspend_reason.clone(),
        migration_version: t.migration_version.clone(),
        last_error: t.last_error.clone(),
        last_error_time: t.last_error_time,
        provision_time: t.provision_time,
        revision: t.revision,
        create_time: t.create_time,
        update_time: t.update_time,
        delete_time: t.delete_time,
        purge_time: t.purge_time,
        suspend_time: t.suspend_time,
    }
}
