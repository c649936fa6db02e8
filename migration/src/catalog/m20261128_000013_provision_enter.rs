use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `tenant_plane_provision_enter` (PostgreSQL): the start of a provisioning in one round trip —
/// the tenant's lock, then, read after it, whether its schema exists and what its database role
/// is.
///
/// A single statement that took the lock and read `pg_namespace` read it with the snapshot the
/// statement began with, from before it waited for the lock: a provisioning that had waited for
/// another one of the same tenant did not see the schema that one had made, and built the tables
/// again on top of them. In a function each statement takes a snapshot of its own.
///
/// Not callable by PUBLIC, so a tenant's role cannot call it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "DROP FUNCTION IF EXISTS tenant_plane_provision_enter(text, text, text)",
        )
        .await
    }
}

pub(super) const UP: &str = r#"
-- Takes the migration lock lock_key (for the transaction), then says whether the schema
-- tenant_schema exists, whether the role tenant_role exists, whether it (or PUBLIC, while it
-- does not) may connect to the current database, and that database's name.
CREATE FUNCTION tenant_plane_provision_enter(tenant_schema text, lock_key text, tenant_role text)
RETURNS TABLE (schema_present boolean, role_present boolean, can_connect boolean, database text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
    -- to_regrole reads the session's catalog cache, which takes in other sessions' changes
    -- when the transaction locks a relation it had not locked yet. The provisioning's
    -- transaction begins with this call and has not touched tenants: locking it now brings
    -- in a role made while this session waited.
    PERFORM 1 FROM tenants WHERE false;
    -- Statements of their own, after the lock: each reads what committed before it began.
    schema_present := EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = tenant_schema);
    role_present := to_regrole(quote_ident(tenant_role)) IS NOT NULL;
    can_connect := has_database_privilege(
        CASE WHEN role_present THEN tenant_role ELSE 'public' END, current_database(), 'CONNECT');
    database := current_database();
    RETURN NEXT;
END;
$$;

REVOKE ALL ON FUNCTION tenant_plane_provision_enter(text, text, text) FROM PUBLIC;
"#;
