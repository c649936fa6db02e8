//! Catalog writes that follow a tenant's storage: provisioned, migrated, failed, purged.
//!
//! [`record_run`] takes the use case's transaction: when the tenant's storage is in the catalog
//! database, the data plane has run the tenant's DDL in that same transaction, so the mirrored
//! version commits together with the migration, never ahead of or behind it. It records the
//! audit row of the call that ran the migration (ProvisionTenant, MigrateTenant) in that same
//! transaction; [`Catalog::record_failure`] does so for a failed run.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait,
    TransactionTrait,
    sea_query::{Alias, CommonTableExpression, Expr, ExprTrait, Func, WithClause},
};

use super::cache::Change;
use super::component_mirror::{component_rows, failed_rows};
use super::entity::{api_key, quota_usage, tenant, tenant_component, tenant_member};
use super::{Catalog, audit, db_error};
use chrono::{DateTime, Utc};

use crate::domain::SAMPLE;
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

/// Which run in a tenant's storage failed, for [`Catalog::record_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailedRun {
    /// The tenant's first provisioning: a PROVISIONING tenant becomes FAILED.
    FirstProvisioning,
    /// A later provisioning or a migration: the tenant's state stays as it is.
    Later,
}

/// How a run in a tenant's storage is mirrored in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirror {
    /// Migrated (up or down): the version, and that no error stands.
    Migrated,
    /// Provisioned: also that its storage exists, and that a PROVISIONING or FAILED tenant is
    /// now ACTIVE (a suspended one will resume to ACTIVE).
    Provisioned,
    /// Provisioned from scratch (its data dropped): as [`Mirror::Provisioned`], and the row
    /// changes (and its etag moves) even if nothing else about it does.
    Rebuilt,
}

impl Mirror {
    fn provisioned(self) -> bool {
        matches!(self, Self::Provisioned | Self::Rebuilt)
    }
}

/// Each component a run ran and the version it left the tenant at.
pub type ComponentVersions<'a> = [(&'a str, Option<&'a str>)];

/// Records, on `conn` (the use case's transaction, where the run's DDL is when the tenant's
/// storage is in the catalog database), a run that left the tenant's components at `versions`,
/// mirrored as `mirror`, with the audit row of the call that asked for it (ProvisionTenant,
/// MigrateTenant). Each component's version goes in `tenant_components`; the compiled
/// component's also in the tenant's row (`migration_version`), as before components.
pub async fn record_run<C: ConnectionTrait>(
    conn: &C,
    ctx: &CallContext,
    now: DateTime<Utc>,
    id: TenantId,
    versions: &ComponentVersions<'_>,
    mirror: Mirror,
) -> Result<RowChange, Error> {
    let compiled = versions
        .iter()
        .find(|(component, _)| *component == SAMPLE)
        .map(|(_, version)| *version);
    let mut update = mirror_update(now, id, compiled, mirror);
    // The run's outcome, and so the audit row of the call that asked for it: on PostgreSQL in
    // the same statement (a data-modifying WITH runs whether or not the update changes a row).
    let audit = audit::success(ctx, Some(id));
    let components = component_rows(now, id, versions);
    let with_update = conn.get_database_backend() == DbBackend::Postgres;
    if with_update {
        // One WITH clause holds both (a second `with_cte` would replace the first).
        let mut with = WithClause::new();
        if let Some(row) = &audit {
            with.cte(audit_cte(row));
        }
        if let Some(rows) = &components {
            with.cte(
                CommonTableExpression::new()
                    .query(rows.clone())
                    .table_name(Alias::new("component_rows"))
                    .to_owned(),
            );
        }
        if audit.is_some() || components.is_some() {
            QueryTrait::query(&mut update).with_cte(with);
        }
    } else if let Some(rows) = &components {
        conn.execute(rows).await.map_err(db_error)?;
    }
    // The row comes back with the change, so the caller need not read it again.
    let change = if conn.support_returning() {
        row_change(update.exec_with_returning(conn).await.map_err(db_error)?)?
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

/// How the update that returned `rows` changed the tenant's row.
fn row_change(mut rows: Vec<tenant::Model>) -> Result<RowChange, Error> {
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

/// The update of the tenant's row that mirrors a run as `mirror` says, only where that changes
/// something. Its times say `now`. `compiled` is the compiled component's version when the
/// run ran it (`None`: the run did not, and the row's version is left alone).
fn mirror_update(
    now: DateTime<Utc>,
    id: TenantId,
    compiled: Option<Option<&str>>,
    mirror: Mirror,
) -> sea_orm::UpdateMany<tenant::Entity> {
    let provisioned = mirror.provisioned();
    let mut update = tenant::Entity::update_many();
    if let Some(version) = compiled {
        update = update.col_expr(
            tenant::Column::MigrationVersion,
            Expr::value(version.map(str::to_owned)),
        );
    }
    update = update
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
    if mirror == Mirror::Rebuilt {
        changed = changed.add(tenant::Column::Id.is_not_null());
    }
    changed = match compiled {
        Some(Some(v)) => changed
            .add(tenant::Column::MigrationVersion.ne(v))
            .add(tenant::Column::MigrationVersion.is_null()),
        Some(None) => changed.add(tenant::Column::MigrationVersion.is_not_null()),
        None => changed,
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

impl Catalog {
    /// [`record_run`] in a transaction of its own: for a tenant whose storage is not in the
    /// catalog database, recorded after the storage's own commit (so the mirror may lag the
    /// tenant, never lead it).
    pub async fn record_run(
        &self,
        ctx: &CallContext,
        id: TenantId,
        versions: &ComponentVersions<'_>,
        mirror: Mirror,
    ) -> Result<RowChange, Error> {
        let txn = self.conn().begin().await.map_err(db_error)?;
        let recorded = record_run(&txn, ctx, self.now(), id, versions, mirror).await?;
        txn.commit().await.map_err(db_error)?;
        self.changed(&Change::TenantRow(id));
        Ok(recorded)
    }

    /// Keeps the error of a failed provisioning or migration. After a failed first
    /// provisioning, a tenant that was waiting for its storage becomes FAILED (and may be
    /// provisioned again).
    pub async fn record_failure(
        &self,
        ctx: &CallContext,
        id: TenantId,
        error: &str,
        run: FailedRun,
        components: &[&str],
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
        if run == FailedRun::FirstProvisioning {
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
        // The components the run was of keep the error too, their version as it was; one the
        // tenant had not installed yet gets its row now, with no version, so the fleet view
        // counts its failure.
        if let Some(failed) = failed_rows(now, id, components, error) {
            txn.execute(&failed).await.map_err(db_error)?;
        }
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
        // With its data gone, the tenant's component versions, usage counts, API keys and
        // members go too.
        tenant_component::Entity::delete_many()
            .filter(tenant_component::Column::TenantId.eq(id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(db_error)?;
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
