//! Whether a tenant's database role may log in, kept in step with the tenant's state.
//!
//! The data plane makes, grants and drops tenant roles ([`crate::dataplane`]); the one thing
//! about a role that must commit with a row of `tenants` is here, so the catalog never depends
//! on the data plane. A SUSPENDED or DELETED tenant's role is `NOLOGIN`
//! ([`TenantState::admits_logins`]), set by an `ALTER ROLE` in the transaction that writes the
//! state. That holds for every isolation: roles belong to the whole PostgreSQL cluster,
//! `ALTER ROLE` is transactional, and a DATABASE tenant's database is made on the catalog's
//! server. After the commit, the role's open sessions are ended, in whichever database they are
//! (`pg_stat_activity` is cluster-wide too).
//!
//! Every transaction that alters a tenant's role holds the tenant's row first (the `UPDATE` of
//! [`Catalog::save_tenant`], or [`lock_tenant_row`]): two `ALTER ROLE`s of one role at once
//! would not wait for each other but fail ("tuple concurrently updated"), and a transaction
//! that reads the state under the lock acts on the state that stands.

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, Statement, TransactionTrait,
};

use super::{Backend, Catalog, db_error};
use crate::domain::{DbRoleName, Error, TenantId, TenantState};

/// Gives `role` LOGIN, or takes it away, in `txn`. `false`, with nothing done, when there is no
/// such role: a tenant not provisioned yet, or provisioned before tenants had roles.
pub(super) async fn set_login(
    txn: &DatabaseTransaction,
    role: &DbRoleName,
    login: bool,
) -> Result<bool, DbErr> {
    let found = txn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            [role.as_str().into()],
        ))
        .await?;
    let Some(row) = found else {
        return Ok(false);
    };
    if row.try_get::<bool>("", "rolcanlogin")? != login {
        let attribute = if login { "LOGIN" } else { "NOLOGIN" };
        // ALTER ROLE takes no parameters.
        txn.execute_unprepared(&format!("ALTER ROLE {} {attribute}", role.quoted()))
            .await?;
    }
    Ok(true)
}

/// [`Catalog::settle_role_login`] inside the transaction that provisions a tenant whose storage
/// is in the catalog database, after [`super::provisioning::record_run`] (which wrote
/// `recorded`), so it commits with the role: under the tenant's row lock (taken by that update,
/// which returned the row; or taken here), the role loses LOGIN if the tenant was suspended or
/// deleted while its role was being made. A state change that follows waits for this commit
/// and then finds the role. Whether LOGIN was taken away.
pub async fn settle_login(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    role: &DbRoleName,
    recorded: &super::provisioning::RowChange,
) -> Result<bool, Error> {
    let state = match recorded {
        super::provisioning::RowChange::Changed(Some(row)) => Some(row.state),
        _ => lock_tenant_row(txn, tenant).await?,
    };
    match state {
        Some(state) if !state.admits_logins() => {
            let revoked = set_login(txn, role, false).await.map_err(db_error)?;
            if revoked {
                tracing::warn!(
                    %tenant,
                    %role,
                    "tenant suspended or deleted during provisioning: its role may not log in"
                );
            }
            Ok(revoked)
        }
        _ => Ok(false),
    }
}

/// How [`tenant_state`] locks the tenant's row (PostgreSQL; SQLite's one writer needs none).
#[derive(Debug, Clone, Copy)]
pub(super) enum RowLock {
    /// Other transactions may share it, and none may change the row meanwhile.
    Share,
    /// Excludes other writers of the row, not the key-share locks of inserts of rows that
    /// refer to it (members, API keys).
    NoKeyUpdate,
}

/// The tenant's state, read in `txn` under `lock`; `None` when there is no such tenant.
pub(super) async fn tenant_state(
    txn: &DatabaseTransaction,
    tenant: TenantId,
    lock: RowLock,
) -> Result<Option<TenantState>, Error> {
    let backend = txn.get_database_backend();
    let sql = match (backend, lock) {
        (DbBackend::Postgres, RowLock::Share) => {
            "SELECT state FROM tenants WHERE id = $1 FOR SHARE"
        }
        (DbBackend::Postgres, RowLock::NoKeyUpdate) => {
            "SELECT state FROM tenants WHERE id = $1 FOR NO KEY UPDATE"
        }
        _ => "SELECT state FROM tenants WHERE id = ?1",
    };
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [tenant.as_uuid().into()],
        ))
        .await
        .map_err(db_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state = row.try_get::<String>("", "state").map_err(db_error)?;
    TenantState::parse(&state)
        .map(Some)
        .ok_or_else(|| Error::Internal(format!("catalog row of tenant {tenant} has state {state}")))
}

/// Locks the tenant's row in `txn` before its role is altered (see the module docs), and
/// returns its state; `None` when there is no such tenant.
pub async fn lock_tenant_row(
    txn: &DatabaseTransaction,
    tenant: TenantId,
) -> Result<Option<TenantState>, Error> {
    tenant_state(txn, tenant, RowLock::NoKeyUpdate).await
}

impl Catalog {
    /// Takes LOGIN away from the role provisioning has just made if its tenant was suspended or
    /// deleted meanwhile: the `ALTER ROLE` of that state change found no committed role yet.
    /// Under the row's lock, so a resume that follows waits for this and gives LOGIN back.
    pub async fn settle_role_login(
        &self,
        tenant: TenantId,
        role: &DbRoleName,
    ) -> Result<(), Error> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        let txn = self.conn().begin().await.map_err(db_error)?;
        let revoked = match lock_tenant_row(&txn, tenant).await? {
            Some(state) if !state.admits_logins() => {
                set_login(&txn, role, false).await.map_err(db_error)?
            }
            _ => false,
        };
        txn.commit().await.map_err(db_error)?;
        if revoked {
            tracing::warn!(
                %tenant,
                %role,
                "tenant suspended or deleted during provisioning: its role may not log in"
            );
            self.end_sessions(role).await;
        }
        Ok(())
    }

    /// Ends the open sessions of a role that has lost LOGIN, so a suspended tenant keeps no
    /// connection. Best effort, after the commit that took LOGIN away: a failure is logged, and
    /// the state change stands. (The control plane may: it is a member of every role it made.)
    pub(crate) async fn end_sessions(&self, role: &DbRoleName) {
        crate::db::end_sessions(self.conn(), role).await;
    }
}
