//! The tenant migrator: what every tenant's schema (or database) holds. Each tenant keeps its
//! own version table (`seaql_migrations`) inside its own schema or database, so tenants can be
//! at different versions.
//!
//! To add a tenant migration: add a file `mYYYYMMDD_HHMMSS_name.rs` here with a `Migration`
//! implementing `MigrationTrait` (write unqualified table names: the control plane sets the
//! tenant's schema on the connection), and append it to [`migrations`]. Then roll it out with
//! `tenant-plane migrate --all` or MigrationService.StartRollout.
//!
//! ## Tables of SHARED tenants
//!
//! SHARED tenants' rows live in one schema, migrated once for all of them: after each migration
//! the control plane gives every new table a `tenant_id` column and row-level security. But
//! row-level security does not apply to unique and foreign-key checks, so in that schema **every
//! unique key (the primary key too) and every foreign key must include `tenant_id`**: a key of
//! its own tells one tenant whether a value exists in another tenant (a unique violation), and a
//! foreign key lets one tenant reference, and so pin, another tenant's row. A migration learns
//! where it runs from [`in_shared_schema`]: there it keys on `(tenant_id, ...)` (the column
//! exists by then, for every table made by an earlier migration); elsewhere the tenant's storage
//! is its own and its keys need no tenant. `m20261207_100005_tenant_scoped_keys` does this for
//! the sample tables; write a new table's keys the same way in the migration that makes it, or
//! re-key it in the next one.

use sea_orm_migration::prelude::*;

mod m20261123_100001_create_users;
mod m20261123_100002_create_projects;
mod m20261123_100003_create_messages;
mod m20261123_100004_create_audit_log;
mod m20261207_100005_tenant_scoped_keys;

tokio::task_local! {
    /// Set while migrations run in the schema every SHARED tenant shares.
    static SHARED_SCHEMA: ();
}

/// Runs `migrations` (a future that applies or reverts tenant migrations) as migrations of the
/// schema SHARED tenants share: [`in_shared_schema`] is true inside it.
pub async fn shared_schema<F: Future>(migrations: F) -> F::Output {
    SHARED_SCHEMA.scope((), migrations).await
}

/// Whether the migration running now runs in the schema SHARED tenants share, where tables hold
/// many tenants' rows and each has a `tenant_id` column (see the module's docs).
pub fn in_shared_schema() -> bool {
    SHARED_SCHEMA.try_with(|_| ()).is_ok()
}

/// The tenant migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20261123_100001_create_users::Migration),
        Box::new(m20261123_100002_create_projects::Migration),
        Box::new(m20261123_100003_create_messages::Migration),
        Box::new(m20261123_100004_create_audit_log::Migration),
        Box::new(m20261207_100005_tenant_scoped_keys::Migration),
    ]
}

/// The sample tenant schema as a static migrator, for tools that want `MigratorTrait`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        migrations()
    }
}
