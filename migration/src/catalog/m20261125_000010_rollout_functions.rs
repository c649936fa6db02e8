use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Two functions for the rollout worker (PostgreSQL): stepping into a tenant's schema, and
/// ending a rollout target (for a migrated tenant, with its version rows and the catalog's
/// mirror of its version, in the transaction of its migration).
///
/// A statement runs with the tenant's schema on the `search_path` while a tenant is migrated,
/// and PostgreSQL plans a prepared statement again whenever the `search_path` differs from the
/// one it was planned under: with a different schema for every tenant, the catalog statements
/// of every migration were planned afresh. `tenant_plane_finish_target` keeps the catalog's own
/// `search_path` (`SET search_path FROM CURRENT`: the one the catalog is migrated with), so its
/// statements, and the tenants table's trigger, keep their plans. `tenant_plane_enter` saves a
/// round trip: the tenant's lock, its schema on the `search_path` and its version table, read
/// after the lock, in one call.
///
/// Neither is callable by PUBLIC, so a tenant's role cannot call them.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(
            manager,
            "DROP FUNCTION IF EXISTS tenant_plane_enter(text, text); \
             DROP FUNCTION IF EXISTS tenant_plane_finish_target(\
               uuid, uuid, text, text, text, text, jsonb, timestamptz, boolean, boolean, \
               text, text, bigint, text, text, jsonb, bigint)",
        )
        .await
    }
}

pub(super) const UP: &str = r#"
-- Takes the tenant's migration lock (for the transaction), puts its schema on the search_path
-- (for the transaction) and returns its version table's rows, unordered (a sort would cost
-- the planner more than its caller spends on sorting a few rows). A missing schema or version
-- table raises undefined_table (42P01).
CREATE FUNCTION tenant_plane_enter(tenant_schema text, lock_key text)
RETURNS TABLE (version varchar, applied_at bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
    PERFORM set_config('search_path', quote_ident(tenant_schema), true);
    RETURN QUERY EXECUTE format(
        'SELECT version, applied_at FROM %I.seaql_migrations', tenant_schema);
END;
$$;

-- Ends a RUNNING rollout target held by in_worker, and logs its event. The outcome's columns
-- are set where in_migrated (from, to, duration), in_skipped (to) or in_error say so.
-- With in_schema, a migrated tenant's version rows (in_versions, a JSON array of names, at
-- in_applied_at) go into that schema's version table and the catalog mirrors in_to. Returns
-- the event's seq, or NULL (and changes nothing) when in_worker does not hold the target.
CREATE FUNCTION tenant_plane_finish_target(
    in_rollout uuid, in_tenant uuid, in_worker text, in_running text,
    in_state text, in_kind text, in_detail jsonb, in_at timestamptz,
    in_migrated boolean, in_skipped boolean, in_from text, in_to text, in_duration_ms bigint,
    in_error text, in_schema text, in_versions jsonb, in_applied_at bigint)
RETURNS bigint
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    logged bigint;
BEGIN
    WITH done AS (
        UPDATE rollout_targets
        SET state = in_state, claimed_by = NULL, lease_until = NULL, update_time = in_at,
            from_version = CASE WHEN in_migrated THEN in_from ELSE from_version END,
            to_version = CASE WHEN in_migrated OR in_skipped THEN in_to ELSE to_version END,
            duration_ms = CASE WHEN in_migrated THEN in_duration_ms ELSE duration_ms END,
            error = coalesce(in_error, error)
        WHERE rollout_id = in_rollout AND tenant_id = in_tenant
          AND claimed_by = in_worker AND state = in_running
        RETURNING rollout_id, tenant_id)
    INSERT INTO rollout_events (rollout_id, kind, tenant_id, detail, event_time)
    SELECT done.rollout_id, in_kind, done.tenant_id, in_detail, in_at FROM done
    RETURNING seq INTO logged;
    IF logged IS NULL OR in_schema IS NULL THEN
        RETURN logged;
    END IF;
    EXECUTE format(
        'INSERT INTO %I.seaql_migrations (version, applied_at) '
        'SELECT value, $2 FROM jsonb_array_elements_text($1)', in_schema)
        USING in_versions, in_applied_at;
    UPDATE tenants
    SET migration_version = in_to, last_error = NULL, last_error_time = NULL,
        revision = revision + 1, update_time = in_at
    WHERE id = in_tenant
      AND (last_error IS NOT NULL OR migration_version IS NULL OR migration_version <> in_to);
    RETURN logged;
END;
$$;

REVOKE ALL ON FUNCTION tenant_plane_enter(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenant_plane_finish_target(
    uuid, uuid, text, text, text, text, jsonb, timestamptz, boolean, boolean,
    text, text, bigint, text, text, jsonb, bigint) FROM PUBLIC;
"#;
