use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One change notification per rollout batch instead of one per tenant (PostgreSQL).
///
/// The `tenants` trigger notified every replica of each row a batch updated: a trigger call and
/// a message per tenant, each handled by every listening replica. Now the trigger skips the rows
/// a transaction marks as announced by itself (`tenant_plane.batch_notify` = `on`, set locally),
/// and `tenant_plane_finish_batch_notify_once` — `tenant_plane_finish_batch` under that mark —
/// sends a single `tenants:` notification naming the batch's tenants. Every other write to
/// `tenants` notifies as before.
///
/// Not callable by PUBLIC, so a tenant's role cannot call it.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        on_postgres(manager, DOWN).await
    }
}

const UP: &str = r#"
DROP TRIGGER IF EXISTS tenants_notify_change ON tenants;
CREATE TRIGGER tenants_notify_change AFTER INSERT OR UPDATE OR DELETE ON tenants
FOR EACH ROW
WHEN (current_setting('tenant_plane.batch_notify', true) IS DISTINCT FROM 'on')
EXECUTE FUNCTION tenant_plane_notify_change();

-- tenant_plane_finish_batch, with one notification for the tenants it recorded: a payload
-- 'tenants:' followed by their ids, comma-separated, at most 100 to a notification (a payload
-- must stay under 8000 bytes).
CREATE FUNCTION tenant_plane_finish_batch_notify_once(
    in_rollout uuid, in_worker text, in_running text, in_state text, in_kind text,
    in_at timestamptz, in_targets jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ended integer;
    payload text;
BEGIN
    PERFORM set_config('tenant_plane.batch_notify', 'on', true);
    ended := tenant_plane_finish_batch(
        in_rollout, in_worker, in_running, in_state, in_kind, in_at, in_targets);
    PERFORM set_config('tenant_plane.batch_notify', '', true);
    IF ended > 0 THEN
        FOR payload IN
            SELECT 'tenants:' || string_agg(target->>'tenant', ',')
            FROM jsonb_array_elements(in_targets) WITH ORDINALITY AS x(target, n)
            GROUP BY (n - 1) / 100
        LOOP
            PERFORM pg_notify('tenant_plane_catalog', payload);
        END LOOP;
    END IF;
    RETURN ended;
END;
$$;

REVOKE ALL ON FUNCTION tenant_plane_finish_batch_notify_once(
    uuid, text, text, text, text, timestamptz, jsonb) FROM PUBLIC;
"#;

const DOWN: &str = r#"
DROP FUNCTION IF EXISTS tenant_plane_finish_batch_notify_once(
    uuid, text, text, text, text, timestamptz, jsonb);
DROP TRIGGER IF EXISTS tenants_notify_change ON tenants;
CREATE TRIGGER tenants_notify_change AFTER INSERT OR UPDATE OR DELETE ON tenants
FOR EACH ROW EXECUTE FUNCTION tenant_plane_notify_change();
"#;
