use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Change notices on a channel only the control plane knows, naming rows by id (PostgreSQL).
///
/// PostgreSQL checks no privilege on LISTEN or NOTIFY, and tenant roles connect to the catalog
/// database: on the fixed channel `tenant_plane_catalog` a tenant's role heard every change
/// (and the SHA-256 of every API key's secret) and could announce changes of its own. Now:
///
/// - `notice_channel` holds one row, the channel's name: `tenant_plane_` and 128 random bits
///   (from `gen_random_uuid`, PostgreSQL's strong random source), drawn once, when this
///   migration runs. PUBLIC has no privilege on it, so only the control plane's role (its
///   owner) and superusers read it; function bodies are readable by everyone, so the name is
///   read from the table when a notice is sent, never written into a function.
/// - Payloads carry ids only: `tenant:<id>`, `plan:<id>`, `api_key:<key id>`, and
///   `tenants:<id>,<id>,...` for a rollout batch. A receiver re-reads what they name.
///
/// The functions name the channel's table with the catalog's schema as it is when the migration
/// runs, so no `search_path` can substitute another table.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        let schema = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT quote_ident(current_schema()) AS schema",
            ))
            .await?
            .ok_or_else(|| DbErr::Migration("no current schema".into()))?
            .try_get::<String>("", "schema")?;
        db.execute_unprepared(
            &UP.replace("{notify_once}", NOTIFY_ONCE)
                .replace("{schema}", &schema),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(DOWN).await?;
        Ok(())
    }
}

const UP: &str = r#"
CREATE TABLE notice_channel (
    channel text NOT NULL,
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row)
);
REVOKE ALL ON notice_channel FROM PUBLIC;
INSERT INTO notice_channel (channel)
SELECT 'tenant_plane_' || substr(md5(gen_random_uuid()::text || gen_random_uuid()::text), 1, 32);

CREATE OR REPLACE FUNCTION tenant_plane_notify_change() RETURNS trigger AS $$
DECLARE
    changed record;
    payload text;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        payload := 'tenant:' || changed.id::text;
    ELSIF TG_TABLE_NAME = 'plans' THEN
        payload := 'plan:' || changed.id;
    ELSIF TG_TABLE_NAME = 'api_keys' THEN
        payload := 'api_key:' || changed.id::text;
    ELSE
        RETURN NULL;
    END IF;
    PERFORM pg_notify((SELECT channel FROM {schema}.notice_channel), payload);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

{notify_once}
REVOKE ALL ON FUNCTION tenant_plane_notify_change() FROM PUBLIC;
"#;

/// `tenant_plane_finish_batch_notify_once` as this migration left it (dropped by 000017, which
/// makes it again when reverted).
pub(super) const NOTIFY_ONCE: &str = r#"
CREATE OR REPLACE FUNCTION tenant_plane_finish_batch_notify_once(
    in_rollout uuid, in_worker text, in_running text, in_state text, in_kind text,
    in_at timestamptz, in_targets jsonb)
RETURNS integer
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    ended integer;
    payload text;
    channel text;
BEGIN
    PERFORM set_config('tenant_plane.batch_notify', 'on', true);
    ended := tenant_plane_finish_batch(
        in_rollout, in_worker, in_running, in_state, in_kind, in_at, in_targets);
    PERFORM set_config('tenant_plane.batch_notify', '', true);
    IF ended > 0 THEN
        SELECT n.channel INTO channel FROM {schema}.notice_channel n;
        FOR payload IN
            SELECT 'tenants:' || string_agg(target->>'tenant', ',')
            FROM jsonb_array_elements(in_targets) WITH ORDINALITY AS x(target, n)
            GROUP BY (n - 1) / 100
        LOOP
            PERFORM pg_notify(channel, payload);
        END LOOP;
    END IF;
    RETURN ended;
END;
$$;

REVOKE ALL ON FUNCTION tenant_plane_finish_batch_notify_once(
    uuid, text, text, text, text, timestamptz, jsonb) FROM PUBLIC;
"#;

const DOWN: &str = r#"
CREATE OR REPLACE FUNCTION tenant_plane_notify_change() RETURNS trigger AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    IF TG_TABLE_NAME = 'tenants' THEN
        PERFORM pg_notify('tenant_plane_catalog', 'tenant:' || changed.id::text || ':' || changed.slug);
    ELSIF TG_TABLE_NAME = 'plans' THEN
        PERFORM pg_notify('tenant_plane_catalog', 'plan:' || changed.id);
    ELSIF TG_TABLE_NAME = 'api_keys' THEN
        PERFORM pg_notify('tenant_plane_catalog', 'api_key:' || changed.secret_hash);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION tenant_plane_finish_batch_notify_once(
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

DROP TABLE IF EXISTS notice_channel;
"#;
