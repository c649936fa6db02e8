//! The tenant migrator: what every tenant's schema (or database) holds. Each tenant keeps its
//! own version table (`seaql_migrations`) inside its own schema or database, so tenants can be
//! at different versions.
//!
//! To add a tenant migration: add a file `mYYYYMMDD_HHMMSS_name.rs` here with a `Migration`
//! implementing `MigrationTrait` (write unqualified table names: the control plane sets the
//! tenant's schema on the connection), and append it to [`migrations`]. Then roll it out with
//! `tenant-plane migrate --all` or MigrationService.StartRollout.

use sea_orm_migration::prelude::*;

mod m20261123_100001_create_users;
mod m20261123_100002_create_projects;
mod m20261123_100003_create_messages;
mod m20261123_100004_create_audit_log;

/// The tenant migrations, oldest first.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(m20261123_100001_create_users::Migration),
        Box::new(m20261123_100002_create_projects::Migration),
        Box::new(m20261123_100003_create_messages::Migration),
        Box::new(m20261123_100004_create_audit_log::Migration),
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
