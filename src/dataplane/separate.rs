//! DATABASE isolation: a PostgreSQL database or an SQLite file per tenant, reached through
//! the bounded connection LRU. The tenant's DDL commits in its own database, here; the caller
//! records the run in the catalog afterwards (two commits, so the mirror may lag the tenant,
//! never lead it).

use std::path::PathBuf;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, TransactionTrait};

use super::handles::Address;
use super::plan::Batch;
use super::roles;
use super::sql::{
    Ident, check_mark, exec, io_error, lock, mark_sql, missing_table, not_provisioned, required,
};
use super::{DataPlane, Report, Run, Storage, Target, TenantMigrations, component_report};
use crate::db::db_error;
use crate::domain::Error;

impl DataPlane {
    pub(super) async fn run_in_pg_database(
        &self,
        storage: &Storage,
        run: &Run,
        sets: &[TenantMigrations],
    ) -> Result<Report, Error> {
        let database = required(&storage.database, "database")?;
        // A database without the tenant's mark is never adopted (nor dropped to rebuild it).
        let exists = check_mark(&self.catalog_db, "DATABASE", database, storage).await?;
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
            let report = self.run_own_txn(&txn, storage, run, sets).await?;
            if matches!(run, Run::Provision { .. }) {
                roles::grant_in_database(&txn, storage, database).await?;
            }
            txn.commit().await.map_err(db_error)?;
            Ok::<_, Error>(report)
        }
        .await;
        self.finish_separate(storage, created, result).await
    }

    pub(super) async fn run_in_file(
        &self,
        storage: &Storage,
        run: &Run,
        sets: &[TenantMigrations],
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
            let report = self.run_own_txn(&txn, storage, run, sets).await?;
            txn.commit().await.map_err(db_error)?;
            Ok::<_, Error>(report)
        }
        .await;
        self.finish_separate(storage, created, result).await
    }

    /// `run` in `txn`, a transaction in the tenant's own database: the version tables of the
    /// components `sets` (made when missing, but for an inspection, which makes nothing), then each component's migrations toward the run's
    /// target and their version rows.
    pub(super) async fn run_own_txn(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        run: &Run,
        sets: &[TenantMigrations],
    ) -> Result<Report, Error> {
        if *run == Run::Inspect {
            // An inspection makes nothing: a component new to the tenant has no version table
            // yet, and reads as nothing applied.
            let befores = self.versions_if_any(txn, storage, None, sets).await?;
            let components = sets
                .iter()
                .zip(befores)
                .map(|(set, before)| component_report(set, before, Vec::new()))
                .collect();
            return Ok(Report {
                components,
                created: false,
            });
        }
        let postgres = txn.get_database_backend() == sea_orm::DbBackend::Postgres;
        let install = sets
            .iter()
            .flat_map(|set| {
                let keep = postgres.then(|| set.keep_to_owner_sql());
                std::iter::once(set.install_sql()).chain(keep)
            })
            .collect::<Vec<_>>()
            .join("; ");
        if !install.is_empty() {
            txn.execute_unprepared(&install)
                .await
                .map_err(|e| missing_table(e, storage))?;
        }
        let befores = self.versions_of(txn, storage, sets).await?;
        let target = match run {
            Run::Migrate(target) => target.clone(),
            Run::Provision { .. } | Run::Inspect => Target::Latest,
        };
        let mut report = Report::default();
        for (set, before) in sets.iter().zip(befores) {
            let version = before.last().map(|(v, _)| v.clone());
            let mut batch = Batch::default();
            let moved = self
                .migrate(txn, storage, set, before, &target, &mut batch)
                .await?;
            let failed = |e: DbErr| Error::MigrationFailed {
                message: format!("{e}"),
                version: version.clone(),
            };
            batch.send(txn).await.map_err(failed)?;
            set.record(txn, &moved.applied, moved.at)
                .await
                .map_err(failed)?;
            report
                .components
                .push(component_report(set, moved.after, moved.ran));
        }
        Ok(report)
    }

    /// After a run in a database of its own: on failure, remove storage this run created.
    async fn finish_separate(
        &self,
        storage: &Storage,
        created: bool,
        result: Result<Report, Error>,
    ) -> Result<Report, Error> {
        match result {
            Ok(mut report) => {
                report.created = created;
                Ok(report)
            }
            Err(error) => {
                if created && let Err(cleanup) = self.drop_storage(storage).await {
                    tracing::error!(error = %cleanup, "removing the storage of a failed provisioning");
                }
                Err(error)
            }
        }
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
        let conn = &self.catalog_db;
        if let Err(e) = exec(conn, &format!("CREATE DATABASE {}", Ident::new(database))).await {
            return if check_mark(conn, "DATABASE", database, storage).await? {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if let Err(e) = exec(conn, &mark_sql("DATABASE", database, storage)).await {
            // Unmarked, it could never be dropped by the control plane: drop it now.
            if let Err(cleanup) =
                exec(conn, &format!("DROP DATABASE {}", Ident::new(database))).await
            {
                tracing::error!(error = %cleanup, "dropping a database that could not be marked");
            }
            return Err(e);
        }
        Ok(true)
    }
}
