//! The data plane: each tenant's storage, created, migrated and dropped per its isolation.
//!
//! | isolation | PostgreSQL catalog | SQLite catalog |
//! |---|---|---|
//! | schema | `CREATE SCHEMA` in the catalog database | — |
//! | database | `CREATE DATABASE` on the catalog's server | one file under `<data dir>/tenants/` |
//!
//! Every run is one transaction on one connection: a PostgreSQL advisory lock keyed on the tenant
//! serialises runs on the same tenant (also across replicas), the tenant's schema is put on the
//! `search_path` with `SET LOCAL`, and the pending migrations run inside it. DDL is transactional
//! on both databases, so a failure leaves the tenant exactly at its previous version, and a failed
//! provisioning leaves no schema, database or file behind.
//!
//! The data plane only runs tenants' DDL; it never writes the catalog's tables, and it does not
//! import the catalog's store. When the tenant's schema is in the catalog database
//! ([`DataPlane::in_catalog`]), the transaction is the caller's: a use case opens it, the data
//! plane runs the tenant's DDL in it ([`DataPlane::run`]) and returns a [`Report`], the store
//! records the catalog's mirror of the version (and the audit row, and any rollout outcome) in
//! it, and the use case commits. A tenant with a database of its own is run in there, in a
//! transaction the data plane commits ([`DataPlane::run_own`]); the use case records it after.
//!
//! Provisioning on PostgreSQL also makes the tenant's least-privilege login role and grants it
//! the tenant's data ([`roles`]), in the same transaction as the tenant's tables.
//!
//! Two uses change nothing: a dry run ([`DataPlane::dry_run`]) reads a tenant's version table
//! as an inspection does (which never makes one) and records what the migrations would send; a
//! rehearsal ([`DataPlane::rehearse`]) is a migration's run, with the same code, in a
//! transaction that is rolled back.
//!
//! Schema-per-tenant runs use the caller's catalog transaction; database-per-tenant runs use a
//! bounded LRU of connections ([`handles`]). No pool is ever created per tenant.

mod drift;
mod dry_run;
mod handles;
mod in_schema;
mod measure;
mod migrator;
mod plan;
mod rehearsal;
mod roles;
mod separate;
mod shape;
mod shared;
mod sql;
mod versions;

use std::{num::NonZeroUsize, path::PathBuf, time::Duration};

use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};

use crate::clock::Clock;
use crate::db::{Backend, PoolUsage, db_error};
use crate::domain::{DbRoleName, Error, Isolation, TenantId};
pub use drift::{Applied, Attributed, Drift, DriftChecker};
pub use dry_run::{DryRun, PlannedBody, PlannedMigration};
use handles::{Address, TenantHandles};
pub use migrator::{MigrationSource, SqlMigration, Target, TenantMigrations};
use plan::Batch;
pub use rehearsal::RehearsalLimits;
pub use shape::{Column, Difference, Object, Shape, Table};
pub use shared::TENANT_SETTING;
use sql::{Ident, check_mark, exec, lock, remove_sqlite_files, required};
pub use versions::{ComponentReport, Report, Versions};
use versions::{component_report, mirrored_versions};

/// Where one tenant's data lives.
#[derive(Debug, Clone)]
pub struct Storage {
    pub tenant: TenantId,
    pub isolation: Isolation,
    pub schema: Option<String>,
    pub database: Option<String>,
    /// The tenant's login role (PostgreSQL only; see [`roles`]).
    pub role: DbRoleName,
}

/// What [`DataPlane::migrate`] did.
struct Moved {
    /// The version table afterwards.
    after: Versions,
    /// Migrations applied (up) or reverted (down), in the order they ran.
    ran: Vec<String>,
    /// Migrations applied whose version rows are still to be written, oldest first.
    applied: Vec<String>,
    /// Their time, in Unix seconds.
    at: i64,
}

/// What to do in a tenant's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// Create the storage if missing (or rebuild it) and migrate it to the latest version.
    Provision { recreate: bool },
    /// Migrate existing storage.
    Migrate(Target),
    /// Read the version table; change nothing.
    Inspect,
}

#[derive(Debug, Clone)]
pub struct DataPlaneSettings {
    pub catalog_url: String,
    pub data_dir: PathBuf,
    /// Most tenant-database connections kept open at once (DATABASE isolation).
    pub tenant_connections: NonZeroUsize,
    pub acquire_timeout: Duration,
    /// The server's clock: the time a tenant's version rows say a migration was applied.
    pub clock: Clock,
}

pub struct DataPlane {
    /// The catalog's database, where SCHEMA and SHARED tenants' schemas are and DATABASE
    /// tenants' databases are made (PostgreSQL). Never used to write the catalog's tables.
    catalog_db: DatabaseConnection,
    backend: Backend,
    settings: DataPlaneSettings,
    /// The compiled component.
    migrations: TenantMigrations,
    handles: TenantHandles,
}

impl DataPlane {
    pub fn new(
        catalog_db: DatabaseConnection,
        backend: Backend,
        settings: DataPlaneSettings,
        migrations: TenantMigrations,
    ) -> Self {
        let handles = TenantHandles::new(settings.tenant_connections, settings.acquire_timeout);
        Self {
            catalog_db,
            backend,
            settings,
            migrations,
            handles,
        }
    }

    /// The compiled component's migrations.
    pub fn migrations(&self) -> &TenantMigrations {
        &self.migrations
    }

    /// The backend tenants' storage is on (the catalog's).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Connections open to tenant databases (DATABASE isolation), for the metrics endpoint.
    pub fn tenant_connections(&self) -> PoolUsage {
        self.handles.usage()
    }

    /// Whether the tenant's storage is a schema of the catalog database (SCHEMA and SHARED
    /// isolation on PostgreSQL): its runs go in the caller's catalog transaction ([`Self::run`]).
    /// Otherwise it is a database of its own, run in with [`Self::run_own`].
    pub fn in_catalog(&self, storage: &Storage) -> bool {
        matches!(storage.isolation, Isolation::Schema | Isolation::Shared)
            && self.backend == Backend::Postgres
    }

    /// Runs `run` for the components `sets` (a provisioning installs them all; a migration or
    /// an inspection is of exactly one) in the tenant's schema inside `txn`, the caller's
    /// transaction on the catalog database, and returns their version tables afterwards; the
    /// caller commits (with its record of the run) or rolls back. The `search_path` is as it
    /// was when this returns. Only for storage [`Self::in_catalog`].
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant, run = ?run))]
    pub async fn run(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        run: &Run,
        sets: &[TenantMigrations],
    ) -> Result<Report, Error> {
        check_sets(run, sets)?;
        if !self.in_catalog(storage) {
            return Err(Error::Internal(
                "a run in the catalog's transaction for storage outside it".into(),
            ));
        }
        // Boxed: the migration futures are deep, and callers nest this one further.
        Box::pin(self.run_in_schema(txn, storage, run, sets)).await
    }

    /// Runs `run` in a tenant's database of its own (DATABASE isolation: a PostgreSQL
    /// database or an SQLite file), in a transaction there that this commits; storage this run
    /// made is removed again if it fails. The caller records the run in the catalog afterwards:
    /// the catalog's mirror may lag the tenant, never lead it.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant, run = ?run))]
    pub async fn run_own(
        &self,
        storage: &Storage,
        run: &Run,
        sets: &[TenantMigrations],
    ) -> Result<Report, Error> {
        check_sets(run, sets)?;
        match (storage.isolation, self.backend) {
            (Isolation::Database, Backend::Postgres) => {
                Box::pin(self.run_in_pg_database(storage, run, sets)).await
            }
            (Isolation::Database, Backend::Sqlite) => {
                Box::pin(self.run_in_file(storage, run, sets)).await
            }
            _ => Err(Error::Internal(
                "a run in a database of its own for storage in the catalog's".into(),
            )),
        }
    }

    /// Reads the version table of the component `set` in the tenant's storage.
    pub async fn inspect(
        &self,
        storage: &Storage,
        set: &TenantMigrations,
    ) -> Result<ComponentReport, Error> {
        let sets = std::slice::from_ref(set);
        let report = if self.in_catalog(storage) {
            let txn = self.catalog_db.begin().await.map_err(db_error)?;
            let report = self.run(&txn, storage, &Run::Inspect, sets).await?;
            txn.rollback().await.map_err(db_error)?;
            report
        } else {
            self.run_own(storage, &Run::Inspect, sets).await?
        };
        Ok(report.first())
    }

    /// Drops the tenant's storage. Dropping storage that is already gone succeeds; storage
    /// without the tenant's mark is refused and left as it is.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant))]
    pub async fn drop_storage(&self, storage: &Storage) -> Result<(), Error> {
        match (storage.isolation, self.backend) {
            (Isolation::Schema, Backend::Postgres) => {
                let schema = required(&storage.schema, "schema")?;
                let txn = self.catalog_db.begin().await.map_err(db_error)?;
                lock(&txn, storage).await?;
                if check_mark(&txn, "SCHEMA", schema, storage).await? {
                    exec(&txn, &format!("DROP SCHEMA {} CASCADE", Ident::new(schema))).await?;
                }
                txn.commit().await.map_err(db_error)
            }
            (Isolation::Shared, Backend::Postgres) => {
                let schema = required(&storage.schema, "schema")?;
                let txn = self.catalog_db.begin().await.map_err(db_error)?;
                lock(&txn, storage).await?;
                if check_mark(&txn, "SCHEMA", schema, storage).await? {
                    shared::delete_rows(&txn, schema, storage.tenant).await?;
                }
                txn.commit().await.map_err(db_error)
            }
            (Isolation::Database, Backend::Postgres) => {
                let database = required(&storage.database, "database")?;
                if !check_mark(&self.catalog_db, "DATABASE", database, storage).await? {
                    return Ok(());
                }
                self.handles.forget(self.pg_address(database)).await;
                exec(
                    &self.catalog_db,
                    &format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        Ident::new(database)
                    ),
                )
                .await
            }
            (Isolation::Database, Backend::Sqlite) => {
                let path = self.file_path(required(&storage.database, "database")?);
                self.handles.forget(Address::Sqlite { path: &path }).await;
                remove_sqlite_files(&path)
            }
            (Isolation::Shared | Isolation::Schema, Backend::Sqlite) => Err(Error::Internal(
                "schema or shared isolation in an SQLite catalog".into(),
            )),
        }
    }

    /// Applies or reverts migrations inside `txn` to move a tenant whose version table is
    /// `before` toward `target`. Applied migrations go into `batch` after what the caller put
    /// there, sent as one round trip where they can be (see [`plan`]); what is left in the batch
    /// when this returns is the caller's to send, with whatever it adds (the version rows of
    /// [`Moved::applied`], in the same round trip). Reverted migrations are run, and their
    /// version rows deleted, at once.
    async fn migrate(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        set: &TenantMigrations,
        before: Versions,
        target: &Target,
        batch: &mut Batch,
    ) -> Result<Moved, Error> {
        let names = set.names();
        check_target(names, &before, target)?;
        let steps = migrator::steps(before.len(), names.len(), target);
        let failed = |e: DbErr| Error::MigrationFailed {
            message: format!("{e}"),
            version: before.last().map(|(v, _)| v.clone()),
        };
        let now = self.settings.clock.now();
        let mut moved = Moved {
            after: Vec::new(),
            ran: Vec::new(),
            applied: Vec::new(),
            at: now.timestamp(),
        };
        if steps > 0 {
            let (from, to) = (before.len(), before.len() + steps as usize);
            if storage.isolation == Isolation::Shared {
                let schema = required(&storage.schema, "schema")?;
                shared::up(txn, set, schema, from, to, batch, &failed).await?;
            } else {
                set.up(txn, from, to, batch).await.map_err(failed)?;
            }
            moved.ran = names[from..to].to_vec();
            moved.applied.clone_from(&moved.ran);
            moved.after = before;
            moved
                .after
                .extend(moved.ran.iter().map(|v| (v.clone(), now)));
        } else if steps < 0 {
            let to = before.len() - steps.unsigned_abs() as usize;
            batch.send(txn).await.map_err(failed)?;
            let down = set.down(txn, before.len(), to);
            if storage.isolation == Isolation::Shared {
                migration::tenant::shared_schema(down).await
            } else {
                down.await
            }
            .map_err(failed)?;
            moved.ran = names[to..before.len()].iter().rev().cloned().collect();
            moved.after = before;
            moved.after.truncate(to);
        } else {
            moved.after = before;
        }
        Ok(moved)
    }
}

/// Refuses a target a tenant whose version table is `before` cannot be moved to: a version
/// to go down to that is not applied, or a revert of the first migration.
fn check_target(names: &[String], before: &Versions, target: &Target) -> Result<(), Error> {
    match target {
        Target::Down(index) if *index >= before.len() => Err(Error::invalid(
            "target_version",
            format!(
                "'{}' is not applied to this tenant (it is at {})",
                names.get(*index).map_or("?", String::as_str),
                before.last().map_or("no version", |(v, _)| v.as_str())
            ),
        )),
        Target::DownOne if before.len() <= 1 => Err(Error::FailedPrecondition {
            subject: "target_version".into(),
            message: "reverting a tenant's first migration is not offered: it would leave the tenant with no schema (purge the tenant instead)".into(),
        }),
        _ => Ok(()),
    }
}

/// Refuses a run given the wrong number of components: a migration and an inspection are of
/// exactly one; a provisioning of any number (a plan may list none).
fn check_sets(run: &Run, sets: &[TenantMigrations]) -> Result<(), Error> {
    match run {
        Run::Provision { .. } => Ok(()),
        _ if sets.len() == 1 => Ok(()),
        _ => Err(Error::Internal(format!(
            "a migration or inspection of {} components at once",
            sets.len()
        ))),
    }
}
