//! Catalog writes that follow a tenant's storage: provisioned, migrated, failed, purged.
//!
//! [`record_migration`] takes any connection so the data plane can run it inside the tenant's
//! own migration transaction when the tenant's schema lives in the catalog database: the
//! mirrored version then commits together with the migration, never ahead of or behind it. It
//! records the audit row of the call that ran the migration (ProvisionTenant, MigrateTenant) in
//! that same transaction; [`Catalog::record_failure`] does so for a failed run.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, QueryTrait, TransactionTrait,
    sea_query::{Alias, CommonTableExpression, Expr, ExprTrait, Func, Query, WithClause},
};

use super::cache::Change;
use super::entity::{api_key, quota_usage, tenant, tenant_member};
use super::{Catalog, audit, db_error, sqlstate};
use crate::domain::{CallContext, Error, Tenant, TenantId, TenantState};

/// How recording a run changed the tenant's row.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum RowChange {
    /// Not at all: it said so already.
    #[default]
    None,
    /// The row as it now is, where the database returns it (PostgreSQL), or only that it changed.
    Changed(Option<Box<Tenant>>),
}

/// Records a tenant's migration version; with `provisioned`, also that its storage exists and
/// that a PROVISIONING or FAILED tenant is now ACTIVE (a suspended one will resume to ACTIVE).
/// The row's times say `now`.
pub async fn record_migration<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    now: DateTime<Utc>,
    id: TenantId,
    version: Option<&str>,
    provisioned: bool,
    rebuilt: bool,
) -> Result<RowChange, Error> {
    let mut update = mirror_update(now, id, version, provisioned, rebuilt);
    // The run's outcome, and so the audit row of the call that asked for it: on PostgreSQL in
    // the same statement (a data-modifying WITH runs whether or not the update changes a row).
    let audit = audit::success(ctx, Some(id));
    let with_update = conn.get_database_backend() == DbBackend::Postgres;
    if with_update && let Some(row) = &audit {
        QueryTrait::query(&mut update).with_cte(audit_cte(row));
    }
    // The row comes back with the change, so the caller need not read it again.
    let change = if conn.support_returning() {
        returned(update.exec_with_returning(conn).await.map_err(db_error)?)?
    } else if update.exec(conn).await.map_err(db_error)?.rows_affected > 0 {
        RowChange::Changed(None)
    } else {
        RowChange::None
    };
    if let Some(row) = audit {
        if !with_update {
            conn.execute(&row.statement).await.map_err(db_error)?;
        }
        row.sent();
    }
    Ok(change)
}

/// The name the batch's outcome goes by in [`provision_in_one_statement`].
const BATCH: &str = "tenant_plane_batch";

/// Runs `statements`, a SCHEMA tenant's first provisioning (its schema, tables, role and
/// grants), and records the tenant provisioned at `version`, with the call's audit row, as one
/// statement on `conn`, outside any transaction: it commits whole or not at all (PostgreSQL).
///
/// The tenant's row is updated only after the batch ran (the update is gated on its outcome),
/// so the batch's first statement, the tenant's lock, is taken before the row's, as every
/// provisioning and migration takes them. `None` when the database refused the statement, which
/// then changed nothing.
pub async fn provision_in_one_statement(
    conn: &DatabaseConnection,
    ctx: &CallContext,
    now: DateTime<Utc>,
    id: TenantId,
    version: Option<&str>,
    statements: String,
) -> Result<Option<RowChange>, Error> {
    let mut update = mirror_update(now, id, version, true, false)
        .filter(Expr::cust(format!("(SELECT done FROM {BATCH})")));
    let run = Query::select()
        .expr_as(
            Expr::cust_with_values("tenant_plane_run_batch($1)", [statements]),
            Alias::new("done"),
        )
        .to_owned();
    let mut with = WithClause::new();
    with.cte(
        CommonTableExpression::new()
            .query(run)
            .table_name(Alias::new(BATCH))
            .materialized(true)
            .to_owned(),
    );
    let audit = audit::success(ctx, Some(id));
    if let Some(row) = &audit {
        with.cte(audit_cte(row));
    }
    QueryTrait::query(&mut update).with_cte(with);
    let rows = match update.exec_with_returning(conn).await {
        Ok(rows) => rows,
        // The database refused the statement: it changed nothing.
        Err(error) if sqlstate(&error).is_some() => {
            tracing::info!(%error, "a first provisioning in one statement was refused");
            return Ok(None);
        }
        // No connection, or lost during the statement, which may then have committed: not a
        // case for trying again another way.
        Err(error) => return Err(db_error(error)),
    };
    if let Some(row) = audit {
        row.sent();
    }
    returned(rows).map(Some)
}

/// How the update that returned `rows` changed the tenant's row.
fn returned(mut rows: Vec<tenant::Model>) -> Result<RowChange, Error> {
    Ok(match rows.pop() {
        Some(row) => RowChange::Changed(Some(Box::new(super::tenants::to_domain(row)?))),
        None => RowChange::None,
    })
}

/// The call's success row as a data-modifying `WITH` of the statement that records its change.
fn audit_cte(row: &audit::SuccessRow) -> CommonTableExpression {
    CommonTableExpression::new()
        .query(row.statement.clone())
        .table_name(Alias::new("audit_row"))
        .to_owned()
}

/// The update of the tenant's row that mirrors a run: its version; with `provisioned`, that
/// its storage exists and that a PROVISIONING or FAILED tenant is now ACTIVE; only where that
/// changes something. Its times say `now`.
fn mirror_update(
    now: DateTime<Utc>,
    id: TenantId,
    version: Option<&str>,
    provisioned: bool,
    rebuilt: bool,
) -> sea_orm::UpdateMany<tenant::Entity> {
    let mut update = tenant::Entity::update_many()
        .col_expr(
            tenant::Column::MigrationVersion,
            Expr::value(version.map(str::to_owned)),
        )
        .col_expr(
            tenant::Column::LastError,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            tenant::Column::LastErrorTime,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(
            tenant::Column::Revision,
            Expr::col(tenant::Column::Revision).add(1),
        )
        .col_expr(tenant::Column::UpdateTime, Expr::value(now));
    if provisioned {
        let waiting = [
            TenantState::Provisioning.as_str(),
            TenantState::Failed.as_str(),
        ];
        update = update
            .col_expr(
                tenant::Column::ProvisionTime,
                Func::coalesce([Expr::col(tenant::Column::ProvisionTime), Expr::value(now)]).into(),
            )
            .col_expr(
                tenant::Column::State,
                Expr::case(
                    tenant::Column::State.is_in(waiting),
                    TenantState::Active.as_str(),
                )
                .finally(Expr::col(tenant::Column::State))
                .into(),
            )
            .col_expr(
                tenant::Column::StateBeforeSuspend,
                Expr::case(
                    tenant::Column::StateBeforeSuspend.is_in(waiting),
                    TenantState::Active.as_str(),
                )
                .finally(Expr::col(tenant::Column::StateBeforeSuspend))
                .into(),
            )
            .col_expr(
                tenant::Column::StateBeforeDelete,
                Expr::case(
                    tenant::Column::StateBeforeDelete.is_in(waiting),
                    TenantState::Active.as_str(),
                )
                .finally(Expr::col(tenant::Column::StateBeforeDelete))
                .into(),
            );
    }
    // Only a real change moves the revision (and so the etag): a run that found nothing to do
    // leaves the tenant as it was.
    // (Storage rebuilt from scratch always counts: its data is gone.)
    let mut changed = Condition::any().add(tenant::Column::LastError.is_not_null());
    if rebuilt {
        changed = changed.add(tenant::Column::Id.is_not_null());
    }
    changed = match version {
        Some(v) => changed
            .add(tenant::Column::MigrationVersion.ne(v))
            .add(tenant::Column::MigrationVersion.is_null()),
        None => changed.add(tenant::Column::MigrationVersion.is_not_null()),
    };
    if provisioned {
        changed =
            changed
                .add(tenant::Column::ProvisionTime.is_null())
                .add(tenant::Column::State.is_in([
                    TenantState::Provisioning.as_str(),
                    TenantState::Failed.as_str(),
                ]));
    }
    update
        .filter(tenant::Column::Id.eq(id.as_uuid()))
        .filter(changed)
}

/// Mirrors the shared schema's version onto every provisioned SHARED tenant.
pub async fn record_shared_version<C: ConnectionTrait>(
    conn: &C,
    version: Option<&str>,
) -> Result<(), sea_orm::DbErr> {
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
        .await?;
    Ok(())
}

impl Catalog {
    pub async fn record_migration(
        &self,
        ctx: &CallContext,
        id: TenantId,
        version: Option<&str>,
        provisioned: bool,
        rebuilt: bool,
    ) -> Result<RowChange, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let recorded =
            record_migration(&txn, ctx, self.now(), id, version, provisioned, rebuilt).await?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&Change::TenantRow(id));
        Ok(recorded)
    }

    /// Keeps the error of a failed provisioning or migration. With `provisioning`, a tenant that
    /// was waiting for its storage becomes FAILED (and may be provisioned again).
    pub async fn record_failure(
        &self,
        ctx: &CallContext,
        id: TenantId,
        error: &str,
        provisioning: bool,
    ) -> Result<(), Error> {
        let now = self.now();
        let mut update = tenant::Entity::update_many()
            .col_expr(tenant::Column::LastError, Expr::value(error.to_owned()))
            .col_expr(tenant::Column::LastErrorTime, Expr::value(now))
            .col_expr(
                tenant::Column::Revision,
                Expr::col(tenant::Column::Revision).add(1),
            )
            .col_expr(tenant::Column::UpdateTime, Expr::value(now));
        if provisioning {
            update = update.col_expr(
                tenant::Column::State,
                Expr::case(
                    tenant::Column::State.eq(TenantState::Provisioning.as_str()),
                    TenantState::Failed.as_str(),
                )
                .finally(Expr::col(tenant::Column::State))
                .into(),
            );
        }
        let txn = self.conn().begin().await.map_err(db_error)?;
        update
            .filter(tenant::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        audit::record_failure(&txn, ctx, Some(id))
            .await
            .map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&Change::TenantRow(id));
        Ok(())
    }

    /// Records that a deleted tenant's storage is gone.
    pub async fn record_purge(&self, ctx: &CallContext, id: TenantId) -> Result<(), Error> {
        let now = self.now();
        let txn = self.conn().begin().await.map_err(db_error)?;
        tenant::Entity::update_many()
            .col_expr(
                tenant::Column::ProvisionTime,
                Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
            )
            .col_expr(
                tenant::Column::MigrationVersion,
                Expr::value(Option::<String>::None),
            )
            .col_expr(
                tenant::Column::Revision,
                Expr::col(tenant::Column::Revision).add(1),
            )
            .col_expr(tenant::Column::UpdateTime, Expr::value(now))
            .filter(tenant::Column::Id.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        // With its data gone, the tenant's usage counts, API keys and members go too.
        quota_usage::Entity::delete_many()
            .filter(quota_usage::Column::TenantId.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        api_key::Entity::delete_many()
            .filter(api_key::Column::TenantId.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        tenant_member::Entity::delete_many()
            .filter(tenant_member::Column::TenantId.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
        audit::record(&txn, ctx, Some(id)).await.map_err(db_error)?;
        txn.commit().await.map_err(db_error)?;
        // The removed keys' hashes are not at hand: drop every cached key with the tenant.
        self.changed(&Change::All);
        Ok(())
    }
}
