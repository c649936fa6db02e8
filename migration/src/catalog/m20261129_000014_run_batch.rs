use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `tenant_plane_run_batch` (PostgreSQL): runs a batch of statements from inside a statement,
/// so that a tenant's first provisioning — its schema, tables, role and grants, made by the
/// batch — and the catalog's record of it (with bound values) go to the database as one
/// statement, which commits whole or not at all.
///
/// Runs with the rights of its caller, and is not callable by PUBLIC, so a tenant's role
/// cannot call it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "DROP FUNCTION IF EXISTS tenant_plane_run_batch(text)",
        )
        .await
    }
}

pub(super) const UP: &str = r#"
-- Runs statements, one or more separated by semicolons, each with a snapshot of its own, and
-- returns true. Any error fails the calling statement.
CREATE FUNCTION tenant_plane_run_batch(statements text)
RETURNS boolean
LANGUAGE plpgsql
VOLATILE
SECURITY INVOKER
AS $$
BEGIN
    EXECUTE statements;
    RETURN true;
END;
$$;

REVOKE ALL ON FUNCTION tenant_plane_run_batch(text) FROM PUBLIC;
"#;
