//! DATABASE isolation: a PostgreSQL database or an SQLite file per tenant, reached through
//! the bounded connection LRU. The tenant's commit and the catalog's mirror are two commits here,
//! so the mirror is written after the tenant's: it may lag, never lead.

use std::path::PathBuf;

use sea_orm::TransactionTrait;

use super::handles::Address;
use super::roles;
use super::sql::{check_mark, exec, io_error, lock, mark_sql, not_provisioned, quote, required};
use super::{DataPlane, Report, Run, Storage};
use crate::domain::{CallContext, Error};
use crate::store::db_error;

impl DataPlane {
    pub(super) async fn run_in_pg_database(
        &self,
        ctx: &CallContext,
        storage: &Storage,
        run: &Run,
    ) -> Result<Report, Error> {
        let database = required(&storage.database, "database")?;
        // A database without the tenant's mark is never adopted (nor dropped to rebuild it).
        let exists = check_mark(self.catalog.conn(), "DATABASE", database, storage).await?;
        let created = match run {
            Run::Provision { recreate: true } => {
                self.drop_storage(storage).await?;
                self.create_database(database, storage).await?
            }
            Run::Provision { recreate: false } if !exists => {
                self.create_database(database, storage).await?
            }
            Run::Provision { .. } => false,
            _ if !exists => return Err(not_provisioned(storage)),
            _ => false,
        };
        let result = async {
            let conn = self.handles.get(self.pg_address(database)).await?;
            let txn = conn.begin().await.map_err(db_error)?;
            lock(&txn, storage).await?;
            let (report, _) = self.migrate(&txn, storage, run, false, None, None).await?;
            if matches!(run, Run::Provision { .. }) {
                roles::grant_in_database(&txn, storage, database).await?;
            }
            txn.commit().await.map_err(db_error)?;
            Ok::<_, Error>(report)
        }
        .await;
        self.finish_separate(ctx, storage, run, created, result)
            .await
    }

    pub(super) async fn run_in_file(
        &self,
        ctx: &CallContext,
        storage: &Storage,
        run: &Run,
    ) -> Result<Report, Error> {
        let path = self.file_path(required(&storage.database, "database")?);
        let exists = path.exists();
        let created = match run {
            Run::Provision { recreate } => {
                if *recreate {
                    self.drop_storage(storage).await?;
                }
                *recreate || !exists
            }
            _ if !exists => return Err(not_provisioned(storage)),
            _ => false,
        };
        if created {
            std::fs::create_dir_all(self.settings.data_dir.join("tenants")).map_err(io_error)?;
        }
        let result = async {
            let conn = self.handles.get(Address::Sqlite { path: &path }).await?;
            let txn = conn.begin().await.map_err(db_error)?;
            let (report, _) = self.migrate(&txn, storage, run, false, None, None).await?;
            txn.commit().await.map_err(db_error)?;
            Ok::<_, Error>(report)
        }
        .await;
        self.finish_separate(ctx, storage, run, created, result)
            .await
    }

    /// After a run in a database of its own: on failure, remove storage this run created; on
    /// success, mirror the version into the catalog (after the tenant's commit, so the mirror
    /// can lag the tenant but never lead it).
    async fn finish_separate(
        &self,
        ctx: &CallContext,
        storage: &Storage,
        run: &Run,
        created: bool,
        result: Result<Report, Error>,
    ) -> Result<Report, Error> {
        let mut report = match result {
            Ok(report) => report,
            Err(error) => {
                if created && let Err(cleanup) = self.drop_storage(storage).await {
                    tracing::error!(error = %cleanup, "removing the storage of a failed provisioning");
                }
                return Err(error);
            }
        };
        report.created = created;
        if *run != Run::Inspect {
            let provisioned = matches!(run, Run::Provision { .. });
            let rebuilt = matches!(run, Run::Provision { recreate: true });
            report.recorded = self
                .catalog
                .record_migration(ctx, storage.tenant, report.version(), provisioned, rebuilt)
                .await?;
        }
        Ok(report)
    }

    pub(super) fn pg_address<'a>(&'a self, database: &'a str) -> Address<'a> {
        Address::Postgres {
            catalog_url: &self.settings.catalog_url,
            database,
        }
    }

    pub(super) fn file_path(&self, file: &str) -> PathBuf {
        self.settings.data_dir.join("tenants").join(file)
    }

    /// Creates a database marked as the tenant's; `false` if a concurrent provisioning of the
    /// tenant created it first (a database of its name made by anyone else is refused).
    async fn create_database(&self, database: &str, storage: &Storage) -> Result<bool, Error> {
        let conn = self.catalog.conn();
        if let Err(e) = exec(conn, &format!("CREATE DATABASE {}", quote(database))).await {
            return if check_mark(conn, "DATABASE", database, storage).await? {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if let Err(e) = exec(conn, &mark_sql("DATABASE", database, storage)).await {
            // Unmarked, it could never be dropped by the control plane: drop it now.
            if let Err(cleanup) = exec(conn, &format!("DROP DATABASE {}", quote(database))).await {
                tracing::error!(error = %cleanup, "dropping a database that could not be marked");
            }
            return Err(e);
        }
        Ok(true)
    }
}
