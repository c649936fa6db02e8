use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The catalog's functions that ran provisioning and rollout steps are gone (PostgreSQL): the
/// control plane sends plain statements instead, in the transaction the use case opens.
///
/// - `tenant_plane_enter` and `tenant_plane_provision_enter` (the tenant's lock, then what is
///   there, in one call): the lock, then a statement of its own that reads what is there, in
///   two round trips (a statement reads what committed before it began; each of the two begins
///   after the previous one ended).
/// - `tenant_plane_finish_target`, `tenant_plane_finish_batch` and
///   `tenant_plane_finish_batch_notify_once` (a rollout target's outcome, its event, its
///   tenant's version rows and the catalog's mirror): one statement of data-modifying CTEs,
///   each target by its primary key; the version rows go with the tenant's migration, checked
///   against the versions the catalog mirrors.
/// - `tenant_plane_run_batch` (a first provisioning as one statement): provisioning goes the
///   way every migration goes, in one transaction.
///
/// The trigger function `tenant_plane_notify_change` stays: a trigger tells the other replicas
/// of every write to the tables they cache, whichever statement (or operator) makes it, which no
/// statement of the control plane's can promise.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, UP).await
    }

    /// Makes the functions again, as the migrations that made them left them.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for sql in [
            super::m20261125_000010_rollout_functions::UP,
            super::m20261126_000011_rollout_batch_function::UP,
            super::m20261128_000013_provision_enter::UP,
            super::m20261129_000014_run_batch::UP,
        ] {
            db.execute_unprepared(sql).await?;
        }
        let schema = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT quote_ident(current_schema()) AS schema",
            ))
            .await?
            .ok_or_else(|| DbErr::Migration("no current schema".into()))?
            .try_get::<String>("", "schema")?;
        db.execute_unprepared(
            &super::m20261207_000016_secret_notice_channel::NOTIFY_ONCE
                .replace("{schema}", &schema),
        )
        .await?;
        Ok(())
    }
}

const UP: &str = r#"
DROP FUNCTION IF EXISTS tenant_plane_enter(text, text);
DROP FUNCTION IF EXISTS tenant_plane_finish_target(
    uuid, uuid, text, text, text, text, jsonb, timestamptz, boolean, boolean,
    text, text, bigint, text, text, jsonb, bigint);
DROP FUNCTION IF EXISTS tenant_plane_finish_batch_notify_once(
    uuid, text, text, text, text, timestamptz, jsonb);
DROP FUNCTION IF EXISTS tenant_plane_finish_batch(
    uuid, text, text, text, text, timestamptz, jsonb);
DROP FUNCTION IF EXISTS tenant_plane_provision_enter(text, text, text);
DROP FUNCTION IF EXISTS tenant_plane_run_batch(text);
"#;
