//! The catalog migrator: what the control plane's own database holds.

use sea_orm_migration::prelude::*;

mod m20261123_000001_create_plans;
mod m20261123_000002_create_tenants;
mod m20261123_000003_create_request_ids;
mod m20261123_000004_create_rollouts;
mod m20261123_000005_create_quotas_and_api_keys;
mod m20261123_000006_create_tenant_members;
mod m20261123_000007_create_auth_tokens;
mod m20261123_000008_create_audit_events;
mod m20261124_000009_rollout_events_without_foreign_key;
mod m20261125_000010_rollout_functions;
mod m20261126_000011_rollout_batch_function;
mod m20261127_000012_batch_change_notice;
mod m20261128_000013_provision_enter;
mod m20261129_000014_run_batch;
mod m20261207_000015_storage_names;
mod m20261207_000016_secret_notice_channel;
mod m20261207_000017_plain_statements;
mod m20261208_000018_components;
mod m20261208_000019_drift;
mod m20261208_000020_component_drift;
mod m20261208_000021_fleet_indexes;

/// Runs `sql` (one or more statements) on PostgreSQL; nothing on SQLite. For catalog
/// migrations that only PostgreSQL needs.
pub(crate) async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

/// Applies the catalog's migrations in order. Its version table is `catalog_migrations`, so it
/// never collides with a tenant migrator's `seaql_migrations` in a shared database.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_create_plans::Migration),
            Box::new(m20261123_000002_create_tenants::Migration),
            Box::new(m20261123_000003_create_request_ids::Migration),
            Box::new(m20261123_000004_create_rollouts::Migration),
            Box::new(m20261123_000005_create_quotas_and_api_keys::Migration),
            Box::new(m20261123_000006_create_tenant_members::Migration),
            Box::new(m20261123_000007_create_auth_tokens::Migration),
            Box::new(m20261123_000008_create_audit_events::Migration),
            Box::new(m20261124_000009_rollout_events_without_foreign_key::Migration),
            Box::new(m20261125_000010_rollout_functions::Migration),
            Box::new(m20261126_000011_rollout_batch_function::Migration),
            Box::new(m20261127_000012_batch_change_notice::Migration),
            Box::new(m20261128_000013_provision_enter::Migration),
            Box::new(m20261129_000014_run_batch::Migration),
            Box::new(m20261207_000015_storage_names::Migration),
            Box::new(m20261207_000016_secret_notice_channel::Migration),
            Box::new(m20261207_000017_plain_statements::Migration),
            Box::new(m20261208_000018_components::Migration),
            Box::new(m20261208_000019_drift::Migration),
            Box::new(m20261208_000020_component_drift::Migration),
            Box::new(m20261208_000021_fleet_indexes::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        "catalog_migrations".into_iden()
    }
}
