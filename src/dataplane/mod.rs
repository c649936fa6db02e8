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
//! provisioning leaves no schema, database or file behind. When the tenant's schema is in the
//! catalog database, the catalog's mirror of the version commits in the same transaction.
//!
//! Provisioning on PostgreSQL also makes the tenant's least-privilege login role and grants it
//! the tenant's data ([`roles`]), in the same transaction as the tenant's tables.
//!
//! Schema-per-tenant runs use the one shared catalog pool; database-per-tenant runs use a bounded
//! LRU of connections ([`handles`]). No pool is ever created per tenant.

mod batch;
mod first;
mod handles;
mod in_schema;
mod measure;
mod migrator;
mod plan;
mod roles;
mod separate;
mod shared;
mod sql;

use std::{num::NonZeroUsize, path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, DbErr, TransactionTrait};

use crate::domain::{CallContext, DbRoleName, Error, Isolation, TenantId};
use crate::store::{Backend, Catalog, db_error, provisioning::RowChange};
use handles::{Address, TenantHandles};
pub use in_schema::{RolloutClaim, TargetRun};
pub use migrator::{MigrationSource, Target, TenantMigrations};
pub use shared::TENANT_SETTING;
use sql::{check_mark, exec, lock, missing_table, quote, remove_sqlite_files, required};

/// Where one tenant's data lives.
#[derive(Debug, Clone)]
pub struct Storage {
    pub tenant: TenantId,
    pub isolation: Isolation,
    pub schema: Option<String>,
    pub database: Option<String>,
    /// The tenant's login role (PostgreSQL only; see [`roles`]).
    pub role: DbRoleName,
    /// Whether the catalog records the storage as provisioned. A hint, never trusted: a first
    /// provisioning is tried in one statement ([`first`]), which fails harmlessly where it is
    /// wrong.
    pub provisioned: bool,
}

/// A version table's rows: each applied migration, oldest first, with when it was applied.
pub type Versions = Vec<(String, DateTime<Utc>)>;

/// What a tenant's version table says after a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Applied migrations, oldest first, with the time each was applied.
    pub applied: Versions,
    pub pending: Vec<String>,
    /// Migrations this run applied (up) or reverted (down), in the order it did so.
    pub ran: Vec<String>,
    /// Whether this run created the tenant's storage.
    pub created: bool,
    /// How the run changed the catalog's record of the tenant (its version, its state, its
    /// provisioning time or its last error).
    pub recorded: RowChange,
}

impl Report {
    pub fn version(&self) -> Option<&str> {
        self.applied.last().map(|(v, _)| v.as_str())
    }
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
}

pub struct DataPlane {
    catalog: Catalog,
    settings: DataPlaneSettings,
    migrations: TenantMigrations,
    handles: TenantHandles,
}

impl DataPlane {
    pub fn new(
        catalog: Catalog,
        settings: DataPlaneSettings,
        migrations: TenantMigrations,
    ) -> Self {
        let handles = TenantHandles::new(settings.tenant_connections, settings.acquire_timeout);
        Self {
            catalog,
            settings,
            migrations,
            handles,
        }
    }

    pub fn migrations(&self) -> &TenantMigrations {
        &self.migrations
    }

    /// Connections open to tenant databases (DATABASE isolation), for the metrics endpoint.
    pub fn tenant_connections(&self) -> crate::store::PoolUsage {
        self.handles.usage()
    }

    /// Runs `run` in the tenant's storage and returns its version table afterwards.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant, run = ?run))]
    pub async fn run(
        &self,
        ctx: &CallContext,
        storage: &Storage,
        run: &Run,
    ) -> Result<Report, Error> {
        // Boxed: the migration futures are deep, and callers nest this one further.
        match (storage.isolation, self.catalog.backend()) {
            (Isolation::Schema | Isolation::Shared, Backend::Postgres) => {
                match Box::pin(self.run_in_schema(ctx, storage, run, None)).await? {
                    TargetRun::Ran(report) => Ok(report),
                    TargetRun::Recorded(_) | TargetRun::Lost => Err(Error::Internal(
                        "a run without a rollout claim recorded or lost one".into(),
                    )),
                }
            }
            (Isolation::Database, Backend::Postgres) => {
                Box::pin(self.run_in_pg_database(ctx, storage, run)).await
            }
            (Isolation::Database, Backend::Sqlite) => {
                Box::pin(self.run_in_file(ctx, storage, run)).await
            }
            (Isolation::Schema | Isolation::Shared, Backend::Sqlite) => Err(Error::Internal(
                "schema or shared isolation in an SQLite catalog".into(),
            )),
        }
    }

    /// Drops the tenant's storage. Dropping storage that is already gone succeeds; storage
    /// without the tenant's mark is refused and left as it is.
    #[tracing::instrument(skip_all, fields(tenant = %storage.tenant))]
    pub async fn drop_storage(&self, storage: &Storage) -> Result<(), Error> {
        match (storage.isolation, self.catalog.backend()) {
            (Isolation::Schema, Backend::Postgres) => {
                let schema = required(&storage.schema, "schema")?;
                let txn = self.catalog.conn().begin().await.map_err(db_error)?;
                lock(&txn, storage).await?;
                if check_mark(&txn, "SCHEMA", schema, storage).await? {
                    exec(&txn, &format!("DROP SCHEMA {} CASCADE", quote(schema))).await?;
                }
                txn.commit().await.map_err(db_error)
            }
            (Isolation::Shared, Backend::Postgres) => {
                let schema = required(&storage.schema, "schema")?;
                let txn = self.catalog.conn().begin().await.map_err(db_error)?;
                lock(&txn, storage).await?;
                if check_mark(&txn, "SCHEMA", schema, storage).await? {
                    shared::delete_rows(&txn, schema, storage.tenant).await?;
                }
                txn.commit().await.map_err(db_error)
            }
            (Isolation::Database, Backend::Postgres) => {
                let database = required(&storage.database, "database")?;
                if !check_mark(self.catalog.conn(), "DATABASE", database, storage).await? {
                    return Ok(());
                }
                self.handles.forget(self.pg_address(database)).await;
                exec(
                    self.catalog.conn(),
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(database)),
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

    /// Applies or reverts migrations toward the run's target inside `txn`, from `before` (the
    /// version table, when the caller has read it already). The statements `opening` go first,
    /// in the same round trip as the migrations where they were planned; with `before` unknown,
    /// they must make the version table if it is missing. The version rows of applied
    /// migrations are written in one statement after them, or, with `defer`, left to the
    /// caller: they are returned (otherwise the list is empty).
    async fn migrate(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        run: &Run,
        defer: bool,
        before: Option<Versions>,
        mut opening: Option<String>,
    ) -> Result<(Report, Vec<String>), Error> {
        let before = match before {
            Some(before) => before,
            None => {
                match opening.take() {
                    Some(opening) => exec(txn, &opening).await?,
                    None if matches!(run, Run::Provision { .. }) => {
                        self.migrations.install(txn).await.map_err(db_error)?;
                    }
                    None => {}
                }
                self.version_table(txn, storage).await?
            }
        };
        let target = match run {
            Run::Provision { .. } => Target::Latest,
            Run::Migrate(target) => target.clone(),
            Run::Inspect => {
                if let Some(opening) = opening {
                    exec(txn, &opening).await?;
                }
                return Ok((self.report(before, Vec::new()), Vec::new()));
            }
        };
        let names = self.migrations.names();
        match target {
            Target::Down(index) if index >= before.len() => {
                return Err(Error::invalid(
                    "target_version",
                    format!(
                        "'{}' is not applied to this tenant (it is at {})",
                        names[index],
                        before.last().map_or("no version", |(v, _)| v.as_str())
                    ),
                ));
            }
            Target::DownOne if before.len() <= 1 => {
                return Err(Error::FailedPrecondition {
                    subject: "target_version".into(),
                    message: "reverting a tenant's first migration is not offered: it would leave the tenant with no schema (purge the tenant instead)".into(),
                });
            }
            _ => {}
        }
        let steps = migrator::steps(before.len(), names.len(), &target);
        if steps <= 0
            && let Some(opening) = opening.take()
        {
            exec(txn, &opening).await?;
        }
        let failed = |e: DbErr| Error::MigrationFailed {
            message: format!("{e}"),
            version: before.last().map(|(v, _)| v.clone()),
        };
        let mut unrecorded = Vec::new();
        let (ran, after) = if steps > 0 {
            let to = before.len() + steps as usize;
            let now = self.catalog.now();
            if storage.isolation == Isolation::Shared {
                let schema = required(&storage.schema, "schema")?;
                let (from, opening) = (before.len(), opening.as_deref());
                shared::up(txn, &self.migrations, schema, from, to, opening, &failed).await?;
            } else {
                self.migrations
                    .up(txn, before.len(), to, opening.as_deref())
                    .await
                    .map_err(failed)?;
            }
            let ran = names[before.len()..to].to_vec();
            if defer {
                unrecorded.clone_from(&ran);
            } else {
                self.migrations
                    .record(txn, &ran, now.timestamp())
                    .await
                    .map_err(failed)?;
            }
            let mut after = before;
            after.extend(ran.iter().map(|v| (v.clone(), now)));
            (ran, after)
        } else if steps < 0 {
            let to = before.len() - steps.unsigned_abs() as usize;
            let down = self.migrations.down(txn, before.len(), to);
            if storage.isolation == Isolation::Shared {
                migration::tenant::shared_schema(down).await
            } else {
                down.await
            }
            .map_err(failed)?;
            let ran = names[to..before.len()].iter().rev().cloned().collect();
            let mut after = before;
            after.truncate(to);
            (ran, after)
        } else {
            (Vec::new(), before)
        };
        Ok((self.report(after, ran), unrecorded))
    }

    /// The version table, checked against the known migrations.
    async fn version_table(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
    ) -> Result<Versions, Error> {
        let models = self
            .migrations
            .applied(txn)
            .await
            .map_err(|e| missing_table(e, storage))?;
        self.known_versions(models.into_iter().map(|m| (m.version, m.applied_at)))
    }

    /// The versions a tenant whose catalog mirror says `version` has applied: every known
    /// migration up to it (their times unknown: the epoch). An error when no migration of this
    /// server has that name.
    fn mirrored_versions(&self, version: Option<&str>) -> Result<Versions, Error> {
        let names = self.migrations.names();
        let applied = match version {
            None => 0,
            Some(version) => names
                .iter()
                .position(|name| name == version)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "the catalog has the tenant at {version}, which this server does not know"
                    ))
                })?
                + 1,
        };
        Ok(names[..applied]
            .iter()
            .map(|name| (name.clone(), DateTime::default()))
            .collect())
    }

    /// A version table's rows (version, Unix seconds), oldest first, checked against the known
    /// migrations.
    fn known_versions(
        &self,
        rows: impl IntoIterator<Item = (String, i64)>,
    ) -> Result<Versions, Error> {
        let names = self.migrations.names();
        rows.into_iter()
            .enumerate()
            .map(|(i, (version, applied_at))| {
                if names.get(i) != Some(&version) {
                    return Err(Error::Internal(format!(
                        "tenant has migration {version} applied, which this server does not know at position {i}"
                    )));
                }
                Ok((
                    version,
                    DateTime::from_timestamp(applied_at, 0).unwrap_or_default(),
                ))
            })
            .collect()
    }

    fn report(&self, applied: Versions, ran: Vec<String>) -> Report {
        let pending = self.migrations.names()[applied.len()..].to_vec();
        Report {
            applied,
            pending,
            ran,
            created: false,
            recorded: RowChange::None,
        }
    }
}
