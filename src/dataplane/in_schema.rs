//! Runs in a schema of the catalog database: a SCHEMA tenant's own, or the one every SHARED
//! tenant shares. They run in the caller's transaction on the catalog database, so whatever the
//! caller records there with them (the catalog's mirror of the version, the audit row, a rollout
//! target's outcome) commits with the tenant's DDL: a tenant is migrated, mirrored and counted
//! by one commit.
//!
//! A first provisioning and a later migration go the same way: the tenant's lock; what is there
//! (the schema and the role, or the version table); then one batch, one round trip where the
//! migrations allow it (see [`super::plan`]), with what is missing (the schema, marked as the
//! tenant's, and its version table), the pending migrations, the role and its grants when
//! provisioning, and the version rows. Every batch ends by putting the `search_path` back, so
//! the caller's statements that follow name the catalog's tables as usual.

use sea_orm::{DatabaseTransaction, DbErr};

use super::plan::Batch;
use super::sql::{Ident, check_mark, exec, lock_sql, mark_sql, required};
use super::{DataPlane, Moved, Report, Run, Storage, Target, TenantMigrations, Versions};
use super::{roles, shared};
use crate::db::db_error;
use crate::domain::{Error, Isolation};

/// Ends every batch in a tenant's schema: back to the catalog connection's own `search_path`.
const CATALOG_SEARCH_PATH: &str = "SET LOCAL search_path TO DEFAULT";

impl DataPlane {
    /// [`DataPlane::run`]: `run` in the schema of a SCHEMA or SHARED tenant.
    pub(super) async fn run_in_schema(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        run: &Run,
    ) -> Result<Report, Error> {
        let name = required(&storage.schema, "schema")?;
        match run {
            Run::Provision { recreate } => {
                self.provision_schema(txn, storage, name, *recreate).await
            }
            Run::Migrate(target) => {
                let before = self.enter(txn, storage, name).await?;
                let mut batch = Batch::default();
                let moved = self
                    .migrate(txn, storage, before.clone(), target, &mut batch)
                    .await?;
                let failed = migration_failed(&before);
                batch.push(&TenantMigrations::record_sql(
                    name,
                    &moved.applied,
                    moved.at,
                ));
                self.close(txn, storage, name, &mut batch, &failed).await?;
                Ok(self.report(moved.after, moved.ran))
            }
            Run::Inspect => {
                let before = self.enter(txn, storage, name).await?;
                exec(txn, CATALOG_SEARCH_PATH).await?;
                Ok(self.report(before, Vec::new()))
            }
        }
    }

    /// Migrates a SCHEMA tenant toward `target` in `txn`, the caller's catalog transaction,
    /// from the version the catalog mirrors (`mirrored`) without reading its version table: for
    /// rollout targets migrated several to a transaction, where a round trip per tenant counts.
    /// The version rows are written only if the version table holds exactly the versions up to
    /// `mirrored`; anything else fails the transaction, and the caller migrates the tenant with
    /// [`DataPlane::run`], which reads the table.
    pub async fn migrate_from_mirror(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        target: &Target,
        mirrored: Option<&str>,
    ) -> Result<Report, Error> {
        if !self.in_catalog(storage) || storage.isolation != Isolation::Schema {
            return Err(Error::Internal(
                "a migration from the catalog's mirror outside a SCHEMA tenant's schema".into(),
            ));
        }
        let name = required(&storage.schema, "schema")?;
        let before = self.mirrored_versions(mirrored)?;
        let mut expected: Vec<String> = before.iter().map(|(v, _)| v.clone()).collect();
        expected.sort_unstable();
        exec(
            txn,
            &format!(
                "{}; SET LOCAL search_path TO {}",
                lock_sql(storage),
                Ident::new(name)
            ),
        )
        .await?;
        let mut batch = Batch::default();
        let failed = migration_failed(&before);
        let moved = self
            .migrate(txn, storage, before, target, &mut batch)
            .await?;
        batch.push(&TenantMigrations::record_checked_sql(
            name,
            &moved.applied,
            moved.at,
            &expected,
        ));
        self.close(txn, storage, name, &mut batch, &failed).await?;
        Ok(self.report(moved.after, moved.ran))
    }

    /// Provisions the schema `name` of a SCHEMA or SHARED tenant: makes it if it is missing
    /// (or, with `recreate`, rebuilds it; for a SHARED tenant, deletes its rows), migrates it to
    /// the latest version, and makes and grants the tenant's role.
    async fn provision_schema(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
        recreate: bool,
    ) -> Result<Report, Error> {
        let schema = Ident::new(name);
        let is_shared = storage.isolation == Isolation::Shared;
        let (exists, found) = roles::provision_enter(txn, storage, name).await?;
        if exists {
            // Never adopt a schema the control plane did not make for this tenant.
            check_mark(txn, "SCHEMA", name, storage).await?;
        }
        let mut batch = Batch::default();
        let rebuild = recreate && !is_shared;
        if recreate && is_shared && exists {
            shared::delete_rows(txn, name, storage.tenant).await?;
        } else if rebuild && exists {
            batch.push(&format!("DROP SCHEMA {schema} CASCADE"));
        }
        let created = recreate || !exists;
        let made_now = !exists || rebuild;
        // Made here (marked as the tenant's; not IF NOT EXISTS, so one made by anyone else
        // meanwhile fails the provisioning), the schema's version table is empty.
        if made_now {
            batch.push(&format!("CREATE SCHEMA {schema}"));
            batch.push(&mark_sql("SCHEMA", name, storage));
        }
        batch.push(&format!("SET LOCAL search_path TO {schema}"));
        batch.push(&TenantMigrations::install_sql());
        // The role and its grants go before the migrations, in a batch of their own: the
        // schema's default privileges then grant what the migrations create as they create it
        // (no per-tenant statement reads the fleet-sized `pg_class`), and a refusal for want of
        // CREATEROLE is reported as such, not as a failed migration.
        batch.push(&roles::before_migrations(
            storage,
            name,
            found.missing,
            made_now,
        ));
        roles::send_grants(txn, &found, storage.role.as_str(), &mut batch, db_error).await?;
        let before = if made_now {
            Vec::new()
        } else {
            self.version_table(txn, storage).await?
        };
        let failed = migration_failed(&before);
        let moved = self
            .migrate(txn, storage, before, &Target::Latest, &mut batch)
            .await?;
        if is_shared {
            // Every table the migrations made gets its tenant column and policies first.
            batch.send(txn).await.map_err(&failed)?;
            shared::secure(txn, name).await?;
        }
        batch.push(&roles::after_migrations(storage, name));
        batch.push(&TenantMigrations::record_sql(
            name,
            &moved.applied,
            moved.at,
        ));
        batch.push(CATALOG_SEARCH_PATH);
        batch.send(txn).await.map_err(&failed)?;
        let Moved { after, ran, .. } = moved;
        let mut report = self.report(after, ran);
        report.created = created;
        Ok(report)
    }

    /// Sends what is left of a migration's `batch` with the statements that end it: the shared
    /// schema's policies for tables it made (SHARED) and the way back to the catalog's
    /// `search_path`.
    async fn close(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
        batch: &mut Batch,
        failed: &impl Fn(DbErr) -> Error,
    ) -> Result<(), Error> {
        if storage.isolation == Isolation::Shared {
            batch.send(txn).await.map_err(failed)?;
            shared::secure(txn, name).await?;
        }
        batch.push(CATALOG_SEARCH_PATH);
        batch.send(txn).await.map_err(failed)
    }

    /// Takes the tenant's lock in `txn` and puts its schema `name` on the `search_path` (one
    /// round trip), then reads its version table, checked against the known migrations (a
    /// statement of its own, which begins after the lock is held, so it reads what the last
    /// run committed). A missing schema or table means the tenant is not provisioned.
    async fn enter(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
    ) -> Result<Versions, Error> {
        exec(
            txn,
            &format!(
                "{}; SET LOCAL search_path TO {}",
                lock_sql(storage),
                Ident::new(name)
            ),
        )
        .await?;
        self.version_table(txn, storage).await
    }
}

/// A failure of a batch that holds a tenant's migrations, run on top of `before`.
fn migration_failed(before: &Versions) -> impl Fn(DbErr) -> Error + use<> {
    let version = before.last().map(|(v, _)| v.clone());
    move |e: DbErr| Error::MigrationFailed {
        message: format!("{e}"),
        version: version.clone(),
    }
}
