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

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use super::plan::Batch;
use super::sql::{Ident, check_mark, exec, lock_sql, mark_sql, missing_table, required};
use super::{
    ComponentReport, DataPlane, Report, Run, Storage, Target, TenantMigrations, Versions,
    component_report, mirrored_versions,
};
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
        sets: &[TenantMigrations],
    ) -> Result<Report, Error> {
        let name = required(&storage.schema, "schema")?;
        match (run, sets) {
            (Run::Provision { recreate }, _) => {
                self.provision_schema(txn, storage, name, *recreate, sets)
                    .await
            }
            (Run::Migrate(target), [set]) => {
                let before = self.enter(txn, storage, name, set).await?;
                let mut batch = Batch::default();
                let moved = self
                    .migrate(txn, storage, set, before.clone(), target, &mut batch)
                    .await?;
                let failed = migration_failed(&before);
                batch.push(&set.record_sql(name, &moved.applied, moved.at));
                self.close(txn, storage, name, &mut batch, &failed).await?;
                Ok(one(set, moved.after, moved.ran))
            }
            (Run::Inspect, [set]) => {
                let before = self.look(txn, storage, name, set).await?;
                exec(txn, CATALOG_SEARCH_PATH).await?;
                Ok(one(set, before, Vec::new()))
            }
            _ => Err(Error::Internal("a run of several components".into())),
        }
    }

    /// Migrates a SCHEMA tenant's component `set` toward `target` in `txn`, the caller's
    /// catalog transaction, from the version the catalog mirrors (`mirrored`) without reading
    /// its version table: for rollout targets migrated several to a transaction, where a round
    /// trip per tenant counts. The version rows are written only if the version table holds
    /// exactly the versions up to `mirrored`; anything else fails the transaction, and the
    /// caller migrates the tenant with [`DataPlane::run`], which reads the table.
    pub async fn migrate_from_mirror(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        set: &TenantMigrations,
        target: &Target,
        mirrored: Option<&str>,
    ) -> Result<ComponentReport, Error> {
        if !self.in_catalog(storage) || storage.isolation != Isolation::Schema {
            return Err(Error::Internal(
                "a migration from the catalog's mirror outside a SCHEMA tenant's schema".into(),
            ));
        }
        let name = required(&storage.schema, "schema")?;
        let before = mirrored_versions(set, mirrored)?;
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
            .migrate(txn, storage, set, before, target, &mut batch)
            .await?;
        batch.push(&set.record_checked_sql(name, &moved.applied, moved.at, &expected));
        self.close(txn, storage, name, &mut batch, &failed).await?;
        Ok(component_report(set, moved.after, moved.ran))
    }

    /// Provisions the schema `name` of a SCHEMA or SHARED tenant: makes it if it is missing
    /// (or, with `recreate`, rebuilds it; for a SHARED tenant, deletes its rows), migrates each
    /// component of `sets` to its latest version, and makes and grants the tenant's role.
    async fn provision_schema(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
        recreate: bool,
        sets: &[TenantMigrations],
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
        // meanwhile fails the provisioning), the schema's version tables are empty.
        if made_now {
            batch.push(&format!("CREATE SCHEMA {schema}"));
            batch.push(&mark_sql("SCHEMA", name, storage));
        }
        batch.push(&format!("SET LOCAL search_path TO {schema}"));
        for set in sets {
            batch.push(&set.install_sql());
        }
        // The role and its grants go before the migrations, in a batch of their own: the
        // schema's default privileges then grant what the migrations create as they create it
        // (no per-tenant statement reads the fleet-sized `pg_class`), and a refusal for want of
        // CREATEROLE is reported as such, not as a failed migration.
        let tables: Vec<&str> = sets.iter().map(TenantMigrations::table).collect();
        batch.push(&roles::before_migrations(
            storage,
            name,
            found.missing,
            made_now,
            &tables,
        ));
        roles::send_grants(txn, &found, storage.role.as_str(), &mut batch, db_error).await?;
        let befores = if made_now {
            vec![Vec::new(); sets.len()]
        } else {
            self.versions_of(txn, storage, sets).await?
        };
        let mut report = Report {
            components: Vec::with_capacity(sets.len()),
            created,
        };
        let mut failures = Vec::with_capacity(sets.len());
        for (set, before) in sets.iter().zip(befores) {
            let failed = migration_failed(&before);
            let moved = self
                .migrate(txn, storage, set, before, &Target::Latest, &mut batch)
                .await?;
            batch.push(&set.record_sql(name, &moved.applied, moved.at));
            report
                .components
                .push(component_report(set, moved.after, moved.ran));
            failures.push(failed);
        }
        if is_shared {
            // Every table the migrations made gets its tenant column and policies first.
            batch.send(txn).await.map_err(first_failure(&failures))?;
            shared::secure(txn, name).await?;
        }
        batch.push(&roles::after_migrations(storage, name));
        batch.push(CATALOG_SEARCH_PATH);
        batch.send(txn).await.map_err(first_failure(&failures))?;
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

    /// [`Self::enter`] for an inspection, which makes nothing: the tenant's lock, its schema
    /// `name` on the `search_path`, and the version table of the component `set` read if it
    /// exists (a component new to the tenant has nothing applied). A missing schema means the
    /// tenant is not provisioned.
    async fn look(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
        set: &TenantMigrations,
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
        let mut versions = self
            .versions_if_any(txn, storage, Some(name), std::slice::from_ref(set))
            .await?;
        Ok(versions.pop().unwrap_or_default())
    }

    /// Takes the tenant's lock in `txn`, puts its schema `name` on the `search_path` and makes
    /// the version table of the component `set` if it is missing (a component new to the
    /// tenant's plan), in one round trip, then reads that table, checked against the
    /// component's migrations (a statement of its own, which begins after the lock is held, so
    /// it reads what the last run committed). A missing schema means the tenant is not
    /// provisioned.
    async fn enter(
        &self,
        txn: &DatabaseTransaction,
        storage: &Storage,
        name: &str,
        set: &TenantMigrations,
    ) -> Result<Versions, Error> {
        txn.execute_unprepared(&format!(
            "{}; SET LOCAL search_path TO {}; {}; {}",
            lock_sql(storage),
            Ident::new(name),
            set.install_sql(),
            set.keep_to_owner_sql()
        ))
        .await
        .map_err(|e| missing_table(e, storage))?;
        let mut versions = self
            .versions_of(txn, storage, std::slice::from_ref(set))
            .await?;
        Ok(versions.pop().unwrap_or_default())
    }
}

/// A report of one component.
fn one(set: &TenantMigrations, applied: Versions, ran: Vec<String>) -> Report {
    Report {
        components: vec![component_report(set, applied, ran)],
        created: false,
    }
}

/// The failure of a batch holding several components' migrations: reported as the first
/// component's (the batch cannot tell which statement failed).
fn first_failure(failures: &[impl Fn(DbErr) -> Error]) -> impl Fn(DbErr) -> Error + '_ {
    move |e: DbErr| match failures.first() {
        Some(failed) => failed(e),
        None => db_error(e),
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
