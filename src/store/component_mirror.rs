//! The catalog's mirror of each tenant's components (`tenant_components`): one row per (tenant,
//! component) with the version its storage is at and the error of its last run, written with
//! the run it mirrors. Every write is one upsert shape ([`mirror_upsert`]): a run's rows for its
//! tenant, a failed run's errors, and the shared schema's version for every SHARED tenant.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::{Alias, Expr, ExprTrait, Func, InsertStatement, OnConflict, Query},
};

use super::db_error;
use super::entity::{plan, tenant, tenant_component};
use super::provisioning::ComponentVersions;
use crate::domain::{Error, SAMPLE, TenantId};

/// Upserts the tenant's row of each component of `versions` into `tenant_components`,
/// clearing the component's error; `None` when there is nothing to write.
pub(super) fn component_rows(
    now: DateTime<Utc>,
    tenant: TenantId,
    versions: &ComponentVersions<'_>,
) -> Option<InsertStatement> {
    if versions.is_empty() {
        return None;
    }
    let mut insert = mirror_upsert(&[
        tenant_component::Column::Version,
        tenant_component::Column::LastError,
        tenant_component::Column::LastErrorTime,
        tenant_component::Column::UpdateTime,
    ]);
    for (component, version) in versions {
        insert.values_panic([
            tenant.as_uuid().into(),
            (*component).into(),
            version.map(str::to_owned).into(),
            Option::<String>::None.into(),
            Option::<DateTime<Utc>>::None.into(),
            now.into(),
        ]);
    }
    Some(insert)
}

/// Upserts the tenant's row of each of `components` with `error`, leaving an existing row's
/// version as it is; `None` when there is nothing to write.
pub(super) fn failed_rows(
    now: DateTime<Utc>,
    tenant: TenantId,
    components: &[&str],
    error: &str,
) -> Option<InsertStatement> {
    if components.is_empty() {
        return None;
    }
    let mut insert = mirror_upsert(&[
        tenant_component::Column::LastError,
        tenant_component::Column::LastErrorTime,
    ]);
    for component in components {
        insert.values_panic([
            tenant.as_uuid().into(),
            (*component).into(),
            Option::<String>::None.into(),
            error.into(),
            now.into(),
            now.into(),
        ]);
    }
    Some(insert)
}

/// Mirrors the shared schema's versions onto every provisioned SHARED tenant: the compiled
/// component's in the tenants' rows, each component's in `tenant_components` for the tenants
/// whose plan lists it.
pub async fn record_shared_version<C: ConnectionTrait>(
    conn: &C,
    now: DateTime<Utc>,
    versions: &ComponentVersions<'_>,
) -> Result<(), Error> {
    for (component, version) in versions {
        conn.execute(&shared_component_rows(now, component, *version))
            .await
            .map_err(db_error)?;
    }
    let Some((_, version)) = versions.iter().find(|(component, _)| *component == SAMPLE) else {
        return Ok(());
    };
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::MigrationVersion,
            Expr::value(version.map(str::to_owned)),
        )
        .col_expr(
            tenant::Column::Revision,
            Expr::col(tenant::Column::Revision).add(1),
        )
        .filter(tenant::Column::Isolation.eq(crate::domain::Isolation::Shared.as_str()))
        .filter(tenant::Column::ProvisionTime.is_not_null())
        .filter(
            tenant::Column::MigrationVersion
                .ne(version.unwrap_or_default())
                .or(tenant::Column::MigrationVersion.is_null()),
        )
        .exec(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// The upsert of `component` at `version` for every provisioned SHARED tenant that has a row
/// for it already or whose plan lists it.
fn shared_component_rows(
    now: DateTime<Utc>,
    component: &str,
    version: Option<&str>,
) -> InsertStatement {
    let mut select = Query::select();
    select
        .column((tenant::Entity, tenant::Column::Id))
        .expr(Expr::val(component))
        .expr(Expr::val(version.map(str::to_owned)))
        .expr(Expr::val(Option::<String>::None))
        .expr(Expr::val(Option::<DateTime<Utc>>::None))
        .expr(Expr::val(now))
        .from(tenant::Entity)
        .and_where(tenant::Column::Isolation.eq(crate::domain::Isolation::Shared.as_str()))
        .and_where(tenant::Column::ProvisionTime.is_not_null())
        .and_where(
            Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(plan::Entity)
                    .and_where(
                        Expr::col((plan::Entity, plan::Column::Id))
                            .equals((tenant::Entity, tenant::Column::Plan)),
                    )
                    .and_where(plan_lists(component))
                    .to_owned(),
            )
            .or(Expr::exists(
                Query::select()
                    .expr(Expr::val(1))
                    .from(tenant_component::Entity)
                    .and_where(
                        Expr::col((tenant_component::Entity, tenant_component::Column::TenantId))
                            .equals((tenant::Entity, tenant::Column::Id)),
                    )
                    .and_where(tenant_component::Column::Component.eq(component))
                    .to_owned(),
            )),
        );
    let mut insert = mirror_upsert(&[
        tenant_component::Column::Version,
        tenant_component::Column::UpdateTime,
    ]);
    // A SELECT built here always has as many columns as the insert: never an error.
    if let Err(e) = insert.select_from(select) {
        tracing::error!(error = %e, "shared component mirror");
    }
    insert
}

/// The upsert of rows of `tenant_components` (tenant, component, version, error, its time, update
/// time), values to be added; an existing row gets the `updated` columns.
fn mirror_upsert(updated: &[tenant_component::Column]) -> InsertStatement {
    let mut insert = Query::insert();
    insert
        .into_table(tenant_component::Entity)
        .columns([
            tenant_component::Column::TenantId,
            tenant_component::Column::Component,
            tenant_component::Column::Version,
            tenant_component::Column::LastError,
            tenant_component::Column::LastErrorTime,
            tenant_component::Column::UpdateTime,
        ])
        .on_conflict(
            OnConflict::columns([
                tenant_component::Column::TenantId,
                tenant_component::Column::Component,
            ])
            .update_columns(updated.iter().copied())
            .to_owned(),
        );
    insert
}

/// Whether a plan's `components` (a JSON array of ids) lists `component`. The array is
/// matched as text: ids are DNS labels, so `"id"` with its quotes occurs only as that element.
pub(super) fn plan_lists(component: &str) -> sea_orm::sea_query::SimpleExpr {
    Expr::expr(Func::cast_as(
        Expr::col((plan::Entity, plan::Column::Components)),
        Alias::new("text"),
    ))
    .like(format!("%\"{component}\"%"))
}
