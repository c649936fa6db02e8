use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `tenant_plane_finish_batch` (PostgreSQL): ends the migrated rollout targets of one batch —
/// their outcomes, their events, each tenant's version rows and the catalog's mirror of its
/// version — in one call, in the transaction that migrated them.
///
/// `tenant_plane_finish_target` does the same for one tenant; a batch of three called it three
/// times, and each call paid its own round trip and the function's entry (which switches the
/// `search_path`).
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
            "DROP FUNCTION IF EXISTS tenant_plane_finish_batch(\
               uuid, text, text, text, text, timestamptz, jsonb)",
        )
        .await
    }
}

pub(super) const UP: &str = r#"
-- Ends, as in_state with an in_kind event each, the RUNNING targets of rollout in_rollout held
-- by in_worker that in_targets lists: a JSON array of objects with "tenant" (uuid), "schema"
-- (the tenant's schema), "from" and "to" (versions), "duration_ms", "detail" (the event's
-- detail), "before" (the versions, sorted bytewise, the tenant's migration was run on top of),
-- "versions" (names of the applied migrations) and "applied_at" (Unix seconds).
-- Returns how many targets it ended: all of them; or 0 when in_worker does not hold one of
-- them (its lease ran out and another worker took it), or a tenant's version table does not
-- hold exactly its "before". Then the caller rolls the batch back.
CREATE FUNCTION tenant_plane_finish_batch(
    in_rollout uuid, in_worker text, in_running text, in_state text, in_kind text,
    in_at timestamptz, in_targets jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    target record;
    inserted bigint;
BEGIN
    -- One tenant at a time, each statement by primary key: a set-based UPDATE ... FROM the
    -- array was planned (generically, for an array of unknown length) as a hash join over all
    -- of the rollout's targets.
    FOR target IN
        SELECT * FROM jsonb_to_recordset(in_targets)
            AS x(tenant uuid, "from" text, "to" text, duration_ms bigint, detail jsonb)
    LOOP
        UPDATE rollout_targets
        SET state = in_state, claimed_by = NULL, lease_until = NULL, update_time = in_at,
            from_version = target."from", to_version = target."to",
            duration_ms = target.duration_ms
        WHERE rollout_id = in_rollout AND tenant_id = target.tenant
          AND claimed_by = in_worker AND state = in_running;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
        INSERT INTO rollout_events (rollout_id, kind, tenant_id, detail, event_time)
        VALUES (in_rollout, in_kind, target.tenant, target.detail, in_at);
    END LOOP;
    FOR target IN
        SELECT * FROM jsonb_to_recordset(in_targets)
            AS x(tenant uuid, schema text, "to" text, before text[], versions jsonb,
                 applied_at bigint)
    LOOP
        -- The version rows go in only if the version table holds exactly the versions the
        -- migration was run on top of.
        EXECUTE format(
            'INSERT INTO %1$I.seaql_migrations (version, applied_at) '
            'SELECT value, $2 FROM jsonb_array_elements_text($1) '
            'WHERE (SELECT coalesce(array_agg(version::text ORDER BY version COLLATE "C"), '
            '''{}''::text[]) FROM %1$I.seaql_migrations) = $3', target.schema)
            USING target.versions, target.applied_at, target.before;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF inserted <> jsonb_array_length(target.versions) THEN
            RETURN 0;
        END IF;
        UPDATE tenants
        SET migration_version = target."to", last_error = NULL, last_error_time = NULL,
            revision = revision + 1, update_time = in_at
        WHERE id = target.tenant
          AND (last_error IS NOT NULL OR migration_version IS NULL
               OR migration_version <> target."to");
    END LOOP;
    RETURN jsonb_array_length(in_targets);
END;
$$;

REVOKE ALL ON FUNCTION tenant_plane_finish_batch(
    uuid, text, text, text, text, timestamptz, jsonb) FROM PUBLIC;
"#;
