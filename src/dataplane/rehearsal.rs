//! Rehearsal: a tenant's run toward a target, made with the code of a real run in a
//! transaction of the tenant's storage that is rolled back whatever happens, under short lock
//! and statement timeouts. Nothing it does is kept anywhere: it tells whether, and how fast,
//! the migrations would run on this tenant's data as it is now.

use std::time::Duration;

use sea_orm::TransactionTrait;

use super::handles::Address;
use super::sql::{check_mark, exec, lock, not_provisioned, required};
use super::{ComponentReport, DataPlane, Report, Run, Storage, Target, TenantMigrations};
use crate::db::{Backend, db_error};
use crate::domain::Error;

/// How long a rehearsal ([`DataPlane::rehearse`]) may wait for a tenant's locks and run one
/// statement, on PostgreSQL: short, so a rehearsal never queues behind live traffic (nor
/// makes live traffic queue behind it) for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RehearsalLimits {
    pub lock_timeout: Duration,
    pub statement_timeout: Duration,
}

impl RehearsalLimits {
    /// The limits, as `SET LOCAL`s of the rehearsal's transaction.
    pub(super) fn sql(&self) -> String {
        format!(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}",
            self.lock_timeout.as_millis().max(1),
            self.statement_timeout.as_millis().max(1)
        )
    }
}

impl DataPlane {
    /// Rehearses moving the component `set` of the tenant toward `target`: the run a
    /// migration would be ([`Self::run`] or [`Self::run_own`]'s code, in a transaction of the
    /// tenant's storage) rolled back whatever happens, so nothing it did is kept anywhere. It
    /// waits for the tenant's locks (the advisory lock of runs, and whatever live traffic holds
    /// on its tables) at most `limits.lock_timeout` on PostgreSQL, and each statement runs at
    /// most `limits.statement_timeout`; a rehearsal that would wait longer fails with the
    /// timeout as its error. What it returns is what the version table would say had it been
    /// committed.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant, component = set.id()))]
    pub async fn rehearse(
        &self,
        storage: &Storage,
        set: &TenantMigrations,
        target: &Target,
        limits: RehearsalLimits,
    ) -> Result<ComponentReport, Error> {
        let sets = std::slice::from_ref(set);
        let run = Run::Migrate(target.clone());
        let report = if self.in_catalog(storage) {
            let txn = self.catalog_db.begin().await.map_err(db_error)?;
            exec(&txn, &limits.sql()).await?;
            let result = self.run(&txn, storage, &run, sets).await;
            txn.rollback().await.map_err(db_error)?;
            result?
        } else {
            Box::pin(self.rehearse_own(storage, &run, sets, limits)).await?
        };
        Ok(report.first())
    }

    /// [`DataPlane::rehearse`] in a database of the tenant's own: `run` in a transaction there
    /// that is rolled back whatever happens. Storage that is missing is not provisioned (a
    /// rehearsal never creates it). On SQLite the rolled-back transaction is the scratch copy:
    /// SQLite's DDL is transactional, so a rollback leaves the file as it was; the rehearsal
    /// holds the file's write lock while it runs, as the migration itself would, and the
    /// connection's busy timeout bounds how long it waits for the tenant's writers.
    pub(super) async fn rehearse_own(
        &self,
        storage: &Storage,
        run: &Run,
        sets: &[TenantMigrations],
        limits: RehearsalLimits,
    ) -> Result<Report, Error> {
        let database = required(&storage.database, "database")?;
        let postgres = self.backend == Backend::Postgres;
        let conn = if postgres {
            if !check_mark(&self.catalog_db, "DATABASE", database, storage).await? {
                return Err(not_provisioned(storage));
            }
            self.handles.get(self.pg_address(database)).await?
        } else {
            let path = self.file_path(database);
            if !path.exists() {
                return Err(not_provisioned(storage));
            }
            self.handles.get(Address::Sqlite { path: &path }).await?
        };
        let txn = conn.begin().await.map_err(db_error)?;
        let result = async {
            if postgres {
                exec(&txn, &limits.sql()).await?;
                lock(&txn, storage).await?;
            }
            self.run_own_txn(&txn, storage, run, sets).await
        }
        .await;
        txn.rollback().await.map_err(db_error)?;
        result
    }
}
