use sea_orm_migration::prelude::*;

use super::on_postgres;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Storage names are unique in the catalog, and the storage tenants already have carries their
/// mark.
///
/// A schema or database name is prefix + slug, and the prefix is a setting: with `tenant_` then
/// `t`, the slugs `acme` and `enant-acme` give the same name. Unique indexes refuse the second
/// tenant, whatever prefix each was made with (SHARED tenants all share one schema, so only
/// SCHEMA tenants' schema names count).
///
/// The control plane now marks the schemas and databases it makes (`COMMENT ... IS
/// 'tenant-plane tenant <id>'`, `'tenant-plane shared'` for the shared schema), adopts and
/// drops only storage with its tenant's mark, and leaves marked schemas out when it looks for
/// the catalog. PostgreSQL: storage that tenants recorded as provisioned (not purged) have,
/// unmarked, made before marks and owned by the control plane, is marked here. And the catalog's
/// functions, which kept the `search_path` they were made with, take the pinned one.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let conn = manager.get_connection();
        conn.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS tenants_schema_name_key \
               ON tenants (schema_name) WHERE isolation <> 'shared'; \
             CREATE UNIQUE INDEX IF NOT EXISTS tenants_database_name_key \
               ON tenants (database_name)",
        )
        .await?;
        on_postgres(manager, MARK_EXISTING).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX IF EXISTS tenants_schema_name_key; \
                 DROP INDEX IF EXISTS tenants_database_name_key",
            )
            .await?;
        Ok(())
    }
}

const MARK_EXISTING: &str = r#"
DO $mark$
DECLARE
    t record;
BEGIN
    -- Only storage the catalog records as provisioned, and never the catalog's own schema.
    FOR t IN
        SELECT id, isolation, schema_name, database_name FROM tenants
        WHERE state <> 'PURGED' AND provision_time IS NOT NULL
          AND schema_name IS DISTINCT FROM current_schema()
    LOOP
        BEGIN
            IF t.isolation IN ('schema', 'shared') AND EXISTS (
                SELECT 1 FROM pg_namespace
                WHERE nspname = t.schema_name AND nspowner = current_user::regrole
                  AND obj_description(oid, 'pg_namespace') IS NULL
            ) THEN
                EXECUTE format('COMMENT ON SCHEMA %I IS %L', t.schema_name,
                    CASE WHEN t.isolation = 'shared' THEN 'tenant-plane shared'
                         ELSE 'tenant-plane tenant ' || t.id END);
            ELSIF t.isolation = 'database' AND EXISTS (
                SELECT 1 FROM pg_database
                WHERE datname = t.database_name AND datdba = current_user::regrole
                  AND shobj_description(oid, 'pg_database') IS NULL
            ) THEN
                EXECUTE format('COMMENT ON DATABASE %I IS %L', t.database_name,
                    'tenant-plane tenant ' || t.id);
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE WARNING 'tenant-plane: storage of tenant % left unmarked: %', t.id, SQLERRM;
        END;
    END LOOP;
END
$mark$;

-- Catalog functions made before the catalog's schema was pinned kept the search_path they were
-- made with ("$user", public by default), where a schema named like the control plane's role
-- came first: they take the pinned one now (the only schema on this connection's search_path).
DO $pin$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = current_schema()::regnamespace
          AND p.proname LIKE 'tenant\_plane\_%'
          AND EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c LIKE 'search\_path=%')
    LOOP
        EXECUTE format('ALTER FUNCTION %s SET search_path FROM CURRENT', f);
    END LOOP;
END
$pin$;
"#;
